//! `homelab_k3s_etcd_restore`: restore an etcd snapshot to a k3s cluster, written in HCL and reviewed as a plan.
//!
//! Why a dedicated resource and not an attribute on `homelab_k3s_server`: a restore is one operation across every
//! server of the cluster (all stopped, one reset, the others wiped and rejoined in order), and a per-server
//! attribute would have each server resource do its part at a different time of the apply. As a resource it runs
//! once, names every host it touches, and its `steps` attribute is known at plan time, so the reviewer of the pull
//! request reads exactly what will happen (the sequence itself is `crate::k3s::restore`).
//!
//! The lifecycle is that of an action: creating it restores; changing `snapshot`, `restore_version`, the reset host
//! or the rejoining hosts restores again (in place, `~ update`); anything else (connection details) is only
//! recorded. Deleting it forgets it and touches nothing. Nothing to refresh: a restore has no live object that
//! could drift, so read keeps the state; nothing to import either.

use serde::{Deserialize, Serialize};

use super::k3s_common::*;
use crate::framework::*;
use crate::k3s::{certs, restore};

pub const TYPE: &str = "homelab_k3s_etcd_restore";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreModel {
    pub id: Tf<String>,
    pub snapshot: Tf<String>,
    pub restore_version: Tf<i64>,
    pub steps: Tf<Vec<String>>,
    pub snapshot_path: Tf<String>,
    pub restored_at: Tf<String>,
    pub host: Option<ConnectionModel>,
    #[serde(default)]
    pub rejoin: Vec<ConnectionModel>,
    pub timeouts: Option<TimeoutsModel>,
}

impl RestoreModel {
    fn reset_address(&self) -> Option<&String> {
        self.host.as_ref().and_then(|h| h.address.known())
    }
    fn rejoin_addresses(&self) -> Option<Vec<String>> {
        self.rejoin
            .iter()
            .map(|h| h.address.known().cloned())
            .collect()
    }
    /// The inputs whose change means "restore again".
    fn trigger(&self) -> (Tf<String>, Tf<i64>, Option<String>, Option<Vec<String>>) {
        (
            self.snapshot.clone(),
            self.restore_version,
            self.reset_address().cloned(),
            self.rejoin_addresses(),
        )
    }
}

pub fn schema() -> Schema {
    Schema::new(
        "Restores an etcd snapshot to a k3s cluster: k3s is stopped on every server, the server in `host` is \
         reset from the snapshot (`k3s server --cluster-reset --cluster-reset-restore-path`) and becomes the only \
         etcd member, then each server in `rejoin` has its datastore moved aside and rejoins, one at a time. Agents \
         are not touched. The Kubernetes API is down from the first stop until `host` is up again. `steps` shows \
         in the plan what the apply will do. Creating the resource restores; changing `snapshot` or \
         `restore_version` restores again; destroying it does nothing to the cluster.",
    )
    .attribute(
        Attribute::string("id")
            .computed()
            .use_state_for_unknown()
            .description("The address of the server that was reset."),
    )
    .attribute(
        Attribute::string("snapshot")
            .required()
            .validate(Validator::not_empty())
            .description(
                "The snapshot to restore: a file name from `data.homelab_k3s_snapshots` (looked up in the \
                 server's `etcd-snapshot-dir`, k3s's default directory and the provider's removal snapshots \
                 directory on `host`) or an absolute path on `host`.",
            ),
    )
    .attribute(
        Attribute::number("restore_version")
            .optional()
            .computed()
            .default_int(1)
            .validate(Validator::int_between(1, i64::MAX))
            .description(
                "Raise it to restore again (the same or another snapshot) without replacing the resource. \
                 Default 1.",
            ),
    )
    .attribute(
        Attribute::list("steps", Type::String)
            .computed()
            .description(
                "What the apply does, step by step, in order (known at plan time so that a reviewer sees it).",
            ),
    )
    .attribute(
        Attribute::string("snapshot_path")
            .computed()
            .description("The snapshot file that was restored, as a path on `host`."),
    )
    .attribute(
        Attribute::string("restored_at")
            .computed()
            .description("When the last restore finished (RFC 3339, UTC)."),
    )
    .block(connection_block())
    .block(connection_list_block(
        "rejoin",
        "The other servers of the cluster, in the order they rejoin (each joins through the `server` URL in its \
         own k3s configuration, so the server that initialised the cluster belongs in `host`). Same settings as \
         `host`.",
    ))
    .block(timeouts_block())
}

pub struct K3sEtcdRestore;

impl K3sEtcdRestore {
    async fn run(
        &self,
        ctx: &Context,
        mut plan: RestoreModel,
    ) -> Result<RestoreModel, Diagnostics> {
        let limit = self.timeouts(&plan).create;
        let snapshot = plan.snapshot.known().cloned().unwrap_or_default();
        let reset = connect(ctx, plan.host.as_ref()).await?;
        let mut others = Vec::new();
        for (i, h) in plan.rejoin.iter().enumerate() {
            others.push(connect(ctx, Some(h)).await.map_err(|d| on_rejoin(d, i))?);
        }
        let refs: Vec<_> = others.iter().collect();
        let done = restore::restore(&reset, &refs, &snapshot, limit, ctx.cancellation())
            .await
            .map_err(failure_diag)?;
        for (host, moved) in &done.backups {
            tracing::info!(host = %host, backup = %moved, "datastore moved aside before rejoining");
        }
        plan.id = Tf::Known(reset.host().to_string());
        plan.snapshot_path = Tf::Known(done.snapshot_path);
        plan.restored_at = Tf::Known(certs::rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
        ));
        Ok(plan)
    }
}

#[async_trait]
impl Resource for K3sEtcdRestore {
    type Model = RestoreModel;
    type Identity = NoIdentity;

    fn type_name(&self) -> &'static str {
        TYPE
    }
    fn schema(&self) -> Schema {
        schema()
    }
    fn timeouts(&self, m: &RestoreModel) -> Timeouts {
        Timeouts::from_model(Timeouts::default(), m.timeouts.as_ref())
    }
    fn validate(&self, config: &RestoreModel, diags: &mut Diagnostics) {
        let mut seen: Vec<&String> = config.reset_address().into_iter().collect();
        for (i, h) in config.rejoin.iter().enumerate() {
            if let Some(a) = h.address.known() {
                if seen.contains(&a) {
                    diags.push(
                        Diagnostic::error(
                            "A server is listed twice",
                            format!(
                                "{a} appears more than once in `host` and `rejoin`; list each server of the \
                                 cluster once."
                            ),
                        )
                        .at(attr("rejoin").index(i as i64)),
                    );
                }
                seen.push(a);
            }
        }
    }
    async fn modify_plan(
        &self,
        _ctx: &Context,
        plan: &mut Plan<RestoreModel>,
    ) -> Result<(), Diagnostics> {
        let again = plan
            .prior
            .as_ref()
            .is_none_or(|p| p.trigger() != plan.planned.trigger());
        let p = &mut plan.planned;
        p.steps = match (p.reset_address(), p.snapshot.known(), p.rejoin_addresses()) {
            (Some(h), Some(s), Some(r)) if again => Tf::Known(restore::steps(h, s, &r)),
            _ if again => Tf::Unknown,
            _ => plan
                .prior
                .as_ref()
                .map(|p| p.steps.clone())
                .unwrap_or(Tf::Unknown),
        };
        if again {
            p.snapshot_path = Tf::Unknown;
            p.restored_at = Tf::Unknown;
        } else if let Some(prior) = &plan.prior {
            p.snapshot_path = prior.snapshot_path.clone();
            p.restored_at = prior.restored_at.clone();
        }
        Ok(())
    }
    async fn create(&self, ctx: &Context, plan: RestoreModel) -> Result<RestoreModel, Diagnostics> {
        self.run(ctx, plan).await
    }
    async fn read(
        &self,
        _ctx: &Context,
        state: RestoreModel,
    ) -> Result<Option<RestoreModel>, Diagnostics> {
        Ok(Some(state))
    }
    async fn update(
        &self,
        ctx: &Context,
        prior: RestoreModel,
        mut plan: RestoreModel,
    ) -> Result<RestoreModel, Diagnostics> {
        if prior.trigger() != plan.trigger() {
            return self.run(ctx, plan).await;
        }
        plan.id = prior.id;
        Ok(plan)
    }
    async fn delete(&self, _ctx: &Context, _state: RestoreModel) -> Result<(), Diagnostics> {
        Ok(())
    }
}

/// A connection diagnostic of `rejoin[i]`: placed there instead of on `host` (or nowhere).
fn on_rejoin(d: Diagnostics, i: usize) -> Diagnostics {
    let mut out = Diagnostics::new();
    for x in d.iter() {
        let mut x = x.clone();
        let rest = match &x.path {
            Some(p) if p.first() == Some(&PathStep::Attr("host".into())) => p[1..].to_vec(),
            Some(_) => {
                out.push(x);
                continue;
            }
            None => vec![],
        };
        let mut path = attr("rejoin").index(i as i64);
        path.extend(rest);
        x.path = Some(path);
        out.push(x);
    }
    out
}

pub fn register(r: &mut Registry) {
    r.resource(K3sEtcdRestore);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(a: &str) -> ConnectionModel {
        ConnectionModel {
            address: Tf::Known(a.into()),
            ..Default::default()
        }
    }

    fn model(snap: &str, version: i64) -> RestoreModel {
        RestoreModel {
            snapshot: Tf::Known(snap.into()),
            restore_version: Tf::Known(version),
            host: Some(host("10.0.0.11")),
            rejoin: vec![host("10.0.0.12"), host("10.0.0.13")],
            ..Default::default()
        }
    }

    fn planned(prior: Option<RestoreModel>, planned: RestoreModel) -> RestoreModel {
        let mut plan = Plan {
            prior,
            config: planned.clone(),
            planned,
            requires_replace: vec![],
        };
        futures::executor::block_on(
            K3sEtcdRestore.modify_plan(&Context::new(None, CancellationToken::new()), &mut plan),
        )
        .unwrap();
        plan.planned
    }

    #[test]
    fn the_plan_tells_the_steps_of_a_new_restore() {
        let p = planned(None, model("snap-1", 1));
        let steps = p.steps.known().unwrap();
        assert!(steps[2].starts_with("10.0.0.11: k3s server --cluster-reset"));
        assert!(steps.last().unwrap().starts_with("10.0.0.13:"));
        assert_eq!(p.restored_at, Tf::Unknown);
    }

    #[test]
    fn only_snapshot_version_or_hosts_restore_again() {
        let mut prior = model("snap-1", 1);
        prior.steps = Tf::Known(vec!["old".into()]);
        prior.restored_at = Tf::Known("2026-12-06T00:00:00Z".into());
        prior.snapshot_path = Tf::Known("/x/snap-1".into());
        let mut same = model("snap-1", 1);
        same.host.as_mut().unwrap().user = Tf::Known("ops".into());
        let p = planned(Some(prior.clone()), same);
        assert_eq!(p.steps, prior.steps);
        assert_eq!(p.restored_at, prior.restored_at);
        let p = planned(Some(prior.clone()), model("snap-1", 2));
        assert_eq!(p.restored_at, Tf::Unknown);
        assert_ne!(p.steps, prior.steps);
        let p = planned(Some(prior), model("snap-2", 1));
        assert!(p.steps.known().unwrap()[0].contains("snap-2"));
    }

    #[test]
    fn a_server_listed_twice_is_refused() {
        let mut m = model("s", 1);
        m.rejoin.push(host("10.0.0.11"));
        let mut d = Diagnostics::default();
        K3sEtcdRestore.validate(&m, &mut d);
        assert!(d.has_errors());
    }
}
