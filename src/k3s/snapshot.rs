//! etcd snapshots on a server: taking one on demand (`k3s etcd-snapshot save`) and listing what a server holds.
//!
//! Why these exist: every destructive change the provider makes to a cluster (a server upgrade, a server's
//! removal) is preceded by an on-demand snapshot, named so a user can find it (`homelab-pre-<operation>-<node>-<unix
//! time>`: k3s appends the node name and the time to the name it is given). A removal's snapshot goes to
//! [`REMOVAL_DIR`], outside k3s's data directory, because the uninstall that follows deletes the data directory and
//! any snapshot kept in it. The sqlite→etcd migration has no etcd to snapshot; it keeps its file backup instead
//! (see [`super::cluster::stop_and_backup`]).
//!
//! Listing reads the snapshot directory itself (name, size, time of each file) instead of parsing `k3s
//! etcd-snapshot ls`, whose table differs between k3s versions: the files are what a restore needs. Snapshots
//! uploaded to S3 are not listed here.

use super::error::K3sError;
use super::paths::K3S_BIN;
use crate::ssh::{quote, Session};

/// k3s's default snapshot directory (`${data-dir}/server/db/snapshots`).
pub const DEFAULT_DIR: &str = "/var/lib/rancher/k3s/server/db/snapshots";

/// Where the snapshot taken before a server's removal goes: survives the uninstall.
pub const REMOVAL_DIR: &str = "/var/backups/k3s/snapshots";

/// One snapshot file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The file name (`<name>-<node>-<unix time>`), as `--cluster-reset-restore-path` takes it.
    pub name: String,
    /// The full path on the host.
    pub path: String,
    pub size: u64,
    /// Modification time (seconds since the epoch).
    pub created: i64,
}

/// Takes an on-demand snapshot named `name` (k3s appends `-<node>-<time>`) into `dir` (k3s's configured or
/// default directory when `None`); returns the snapshot k3s wrote. Needs k3s (its etcd) running.
pub async fn save(session: &Session, name: &str, dir: Option<&str>) -> Result<Snapshot, K3sError> {
    let mut cmd = format!("{K3S_BIN} etcd-snapshot save --name {}", quote(name));
    if let Some(d) = dir {
        cmd.push_str(&format!(" --etcd-snapshot-dir {}", quote(d)));
        session
            .run_sudo(&format!("install -d -m 0700 {}", quote(d)), None)
            .await?;
    }
    let out = session.exec_sudo(&format!("{cmd} 2>&1"), None).await?;
    if !out.success() {
        return Err(K3sError::Unexpected {
            host: session.host().to_string(),
            detail: format!(
                "`k3s etcd-snapshot save` failed (exit {}): {}",
                out.exit_status,
                out.stdout_str().trim()
            ),
        });
    }
    let taken = list(session, dir.unwrap_or(DEFAULT_DIR)).await?;
    taken
        .into_iter()
        .filter(|s| s.name.starts_with(&format!("{name}-")))
        .max_by_key(|s| s.created)
        .ok_or_else(|| K3sError::Unexpected {
            host: session.host().to_string(),
            detail: format!(
                "`k3s etcd-snapshot save --name {name}` succeeded but no {name}-* file is in {}",
                dir.unwrap_or(DEFAULT_DIR)
            ),
        })
}

/// The snapshot files in `dir`, newest first (none when the directory does not exist).
pub async fn list(session: &Session, dir: &str) -> Result<Vec<Snapshot>, K3sError> {
    let out = session
        .run_sudo(
            &format!(
                "if [ -d {d} ]; then find {d} -maxdepth 1 -type f -printf '%f\\t%s\\t%T@\\n'; fi",
                d = quote(dir)
            ),
            None,
        )
        .await?;
    Ok(parse_listing(&out.stdout_str(), dir))
}

/// Parses `find -printf '%f\t%s\t%T@\n'` lines, newest first.
pub fn parse_listing(text: &str, dir: &str) -> Vec<Snapshot> {
    let mut v: Vec<Snapshot> = text
        .lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let name = f.next()?.to_string();
            let size = f.next()?.parse().ok()?;
            let created = f.next()?.split('.').next()?.parse().ok()?;
            Some(Snapshot {
                path: format!("{}/{name}", dir.trim_end_matches('/')),
                name,
                size,
                created,
            })
        })
        .collect();
    v.sort_by(|a, b| b.created.cmp(&a.created).then(a.name.cmp(&b.name)));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k3s::paths::BACKUP_DIR;

    #[test]
    fn listing_newest_first_with_paths() {
        let s = parse_listing(
            "on-demand-a-100\t1024\t100.5\nhomelab-pre-upgrade-a-200\t2048\t200.25\nbroken line\n",
            "/snap/",
        );
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "homelab-pre-upgrade-a-200");
        assert_eq!(s[0].path, "/snap/homelab-pre-upgrade-a-200");
        assert_eq!((s[0].size, s[0].created), (2048, 200));
        assert_eq!(s[1].created, 100);
        assert!(parse_listing("", "/x").is_empty());
    }

    #[test]
    fn removal_snapshots_survive_the_uninstall() {
        assert!(REMOVAL_DIR.starts_with(BACKUP_DIR));
        assert!(!REMOVAL_DIR.starts_with("/var/lib/rancher"));
    }
}
