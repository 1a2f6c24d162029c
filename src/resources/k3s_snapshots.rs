//! data `homelab_k3s_snapshots`: the etcd snapshots a k3s server holds, read over SSH — to find the one to restore
//! (the provider's own `homelab-pre-upgrade-*` / `homelab-pre-remove-*` ones included) or to check in a plan that
//! scheduled snapshots are being taken.
//!
//! It reads the snapshot directories themselves (see `crate::k3s::snapshot` for why): by default k3s's snapshot
//! directory and the one the provider keeps removal snapshots in; snapshots on S3 are not listed.

use serde::{Deserialize, Serialize};

use super::k3s_common::*;
use crate::framework::*;
use crate::k3s::{certs, snapshot};

pub const TYPE: &str = "homelab_k3s_snapshots";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotModel {
    pub name: Tf<String>,
    pub path: Tf<String>,
    pub size: Tf<i64>,
    pub created: Tf<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SnapshotsModel {
    pub directories: Tf<Vec<String>>,
    pub snapshots: Tf<Vec<SnapshotModel>>,
    pub host: Option<ConnectionModel>,
}

pub fn schema() -> Schema {
    Schema::new(
        "The etcd snapshot files on a k3s server host (read over SSH), newest first: scheduled ones, on-demand \
         ones, and the provider's own snapshots before upgrades and removals.",
    )
    .attribute(
        Attribute::list("directories", Type::String)
            .optional()
            .description(
                "Directories to list (default: k3s's `/var/lib/rancher/k3s/server/db/snapshots` and the \
                 provider's `/var/backups/k3s/snapshots`). Set it when the server uses `etcd_snapshot_dir`.",
            ),
    )
    .attribute(
        Attribute::nested(
            "snapshots",
            ObjectNesting::List,
            vec![
                Attribute::string("name")
                    .computed()
                    .description("File name (`<name>-<node>-<unix time>`)."),
                Attribute::string("path")
                    .computed()
                    .description("Full path on the host, as `--cluster-reset-restore-path` takes it."),
                Attribute::number("size").computed().description("Size in bytes."),
                Attribute::string("created")
                    .computed()
                    .description("When the file was written (RFC 3339, UTC)."),
            ],
        )
        .computed()
        .description("Every snapshot file found, newest first."),
    )
    .block(connection_block())
}

pub struct K3sSnapshots;

#[async_trait]
impl DataSource for K3sSnapshots {
    type Model = SnapshotsModel;

    fn type_name(&self) -> &'static str {
        TYPE
    }
    fn schema(&self) -> Schema {
        schema()
    }
    async fn read(
        &self,
        ctx: &Context,
        mut config: SnapshotsModel,
    ) -> Result<SnapshotsModel, Diagnostics> {
        let session = connect(ctx, config.host.as_ref()).await?;
        let dirs = config.directories.known().cloned().unwrap_or_else(|| {
            vec![
                snapshot::DEFAULT_DIR.to_string(),
                snapshot::REMOVAL_DIR.to_string(),
            ]
        });
        let mut all = Vec::new();
        for d in &dirs {
            all.extend(
                snapshot::list(&session, d)
                    .await
                    .map_err(|e| k3s_diag("Cannot list the etcd snapshots", e))?,
            );
        }
        all.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
        config.snapshots = Tf::Known(
            all.into_iter()
                .map(|s| SnapshotModel {
                    name: Tf::Known(s.name),
                    path: Tf::Known(s.path),
                    size: Tf::Known(s.size as i64),
                    created: Tf::Known(certs::rfc3339(s.created)),
                })
                .collect(),
        );
        Ok(config)
    }
}

pub fn register(r: &mut Registry) {
    r.data_source(K3sSnapshots);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid() {
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }
}
