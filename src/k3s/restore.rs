//! Restoring an etcd snapshot to a k3s cluster: the one operation that takes the whole control plane down on
//! purpose, so it is its own sequence and its steps are told in the plan before it runs ([`steps`]).
//!
//! k3s documents the order (`docs/cli/etcd-snapshot.md`; k3s.md §3.5): stop k3s on every server; on one server run
//! `k3s server --cluster-reset --cluster-reset-restore-path=<snapshot>`, which restores the data, makes that server
//! the only etcd member and exits; start it; then on each other server back up and delete `server/db` and start
//! k3s, so that it joins the restored cluster as a new member. Agents are not touched: they reconnect to the
//! servers by themselves once the API answers again.
//!
//! What the provider adds around that:
//! - **Checks before anything stops.** Every host is a k3s server on embedded etcd, the snapshot file exists on the
//!   server that resets, and every other server joins through a URL (`server` in its configuration): a server
//!   that initialised the cluster and has no `server` would, with its data deleted, start a *new* cluster beside
//!   the restored one, so it must be the one that resets.
//! - **One server at a time**, under the per-cluster lock, each rejoiner waited for until it is a voting etcd
//!   member before the next one starts (etcd admits one learner at a time).
//! - **Nothing deleted:** the peers' `server/db` is moved to `/var/backups/k3s/<time>-pre-restore/db`, not removed,
//!   and k3s itself keeps the reset server's old data beside the restored one.
//! - **A failure midway** leaves the servers already restored running; the resource is not recorded, so the next
//!   apply runs the whole restore again from the same snapshot, which converges to the same result.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::error::K3sError;
use super::node::{self, Role};
use super::paths::{BACKUP_DIR, DB_DIR, K3S_BIN};
use super::step::{step, Failure, Input};
use super::{etcd, lock, snapshot};
use crate::ssh::{quote, Session};

/// One server of the cluster as the restore sees it.
struct Server<'a> {
    session: &'a Session,
    node_name: String,
    /// The URL it joins through (`server` in its effective configuration).
    joins_through: Option<String>,
    /// `etcd-snapshot-dir` in its configuration.
    snapshot_dir: Option<String>,
}

/// What was done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The snapshot file restored, as a path on the reset server.
    pub snapshot_path: String,
    /// Where each rejoined server's old datastore went (host, path).
    pub backups: Vec<(String, String)>,
}

/// The steps [`restore`] takes, in words, for the plan (known before anything runs).
pub fn steps(reset_host: &str, snapshot: &str, rejoin: &[String]) -> Vec<String> {
    let mut all: Vec<String> = rejoin.to_vec();
    all.push(reset_host.to_string());
    let mut s = vec![
        format!(
            "check: every host is a k3s server on embedded etcd, snapshot {snapshot} exists on {reset_host}, and \
             every server but {reset_host} joins through a server URL"
        ),
        format!(
            "stop k3s on {} (the Kubernetes API is unavailable from here until {reset_host} is up again; agents \
             are not touched)",
            all.join(", ")
        ),
        format!(
            "{reset_host}: k3s server --cluster-reset --cluster-reset-restore-path=<{snapshot}> (the etcd data \
             becomes the snapshot's; {reset_host} becomes the only etcd member)"
        ),
        format!("{reset_host}: start k3s and wait until it is Ready and an etcd voter"),
    ];
    for h in rejoin {
        s.push(format!(
            "{h}: move {DB_DIR} to {BACKUP_DIR}/<time>-pre-restore/db, start k3s, wait until it has rejoined as an \
             etcd voter"
        ));
    }
    s
}

/// Restores `snapshot` (a file name in the server's snapshot directories, or an absolute path) on `reset`, then
/// rejoins `rejoin` one at a time. `limit` bounds the whole operation.
pub async fn restore(
    reset: &Session,
    rejoin: &[&Session],
    snapshot: &str,
    limit: Duration,
    cancel: &CancellationToken,
) -> Result<Restored, Failure> {
    let started = Instant::now();
    let remaining = |margin: u64| {
        limit
            .saturating_sub(started.elapsed() + Duration::from_secs(margin))
            .max(Duration::from_secs(30))
    };
    let first = inspect(reset).await?;
    let mut others = Vec::new();
    for s in rejoin {
        let o = inspect(s).await?;
        if o.joins_through.is_none() {
            return Err(Failure::new(
                "A rejoining server has no server URL",
                format!(
                    "{} has no `server` in its k3s configuration (it initialised the cluster): with its datastore \
                     moved aside it would start a new cluster instead of joining the restored one. Put it in \
                     `host` (the server that resets) and {} in `rejoin`.",
                    s.host(),
                    reset.host()
                ),
            )
            .on(Input::RestoreRejoin));
        }
        others.push(o);
    }
    let path = find_snapshot(&first, snapshot).await?;

    // The cluster's lock, keyed by its token, so that no server resource of the same cluster changes meanwhile.
    let facts = node::server_facts(reset)
        .await
        .map_err(step("Cannot read the server's token"))?;
    let _guard = match facts.token.as_deref() {
        Some(t) => Some(lock::cluster_lock(t).await),
        None => None,
    };

    for o in others.iter().chain(std::iter::once(&first)) {
        stop(o.session).await?;
    }
    cluster_reset(reset, &path, remaining(60)).await?;
    node::start(reset, Role::Server, false)
        .await
        .map_err(step("Cannot start k3s after the reset"))?;
    node::wait_ready(reset, Role::Server, &first.node_name, remaining(30), cancel)
        .await
        .map_err(step("The restored server did not become ready"))?;
    etcd::wait_voter(reset, &first.node_name, remaining(30), cancel)
        .await
        .map_err(step("The restored server is not an etcd voter"))?;

    let mut backups = Vec::new();
    for o in &others {
        let moved = move_datastore(o.session).await?;
        backups.push((o.session.host().to_string(), moved));
        node::start(o.session, Role::Server, false)
            .await
            .map_err(step("Cannot start k3s on a rejoining server"))?;
        node::wait_ready(o.session, Role::Server, &o.node_name, remaining(20), cancel)
            .await
            .map_err(step("A rejoining server did not become ready"))?;
        etcd::wait_voter(reset, &o.node_name, remaining(10), cancel)
            .await
            .map_err(step("A rejoining server did not become an etcd voter"))?;
    }
    Ok(Restored {
        snapshot_path: path,
        backups,
    })
}

async fn inspect(session: &Session) -> Result<Server<'_>, Failure> {
    let probe = node::probe(session, Role::Server)
        .await
        .map_err(step("Cannot inspect the host"))?;
    if !probe.installed(Role::Server) {
        return Err(Failure::new(
            "Not a k3s server",
            format!(
                "{} has no k3s server installed; a restore works on the servers of an existing cluster.",
                session.host()
            ),
        ));
    }
    if probe.datastore.as_deref() != Some("etcd") {
        return Err(Failure::new(
            "Not on embedded etcd",
            format!(
                "{} has no embedded etcd datastore ({}); only etcd snapshots can be restored.",
                session.host(),
                probe.datastore.as_deref().unwrap_or("none")
            ),
        ));
    }
    let eff = probe.effective().map(|e| e.config).unwrap_or_default();
    let text = |k: &str| {
        eff.get(k)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Ok(Server {
        session,
        node_name: text("node-name").unwrap_or_else(|| probe.hostname.clone()),
        joins_through: text("server"),
        snapshot_dir: text("etcd-snapshot-dir"),
    })
}

/// The snapshot's path on the reset server: an absolute path as given, else the file of that name in the
/// server's snapshot directory, k3s's default one, or the provider's removal directory.
async fn find_snapshot(server: &Server<'_>, snapshot: &str) -> Result<String, Failure> {
    let mut dirs: Vec<String> = Vec::new();
    if let Some((dir, _)) = snapshot
        .rsplit_once('/')
        .filter(|_| snapshot.starts_with('/'))
    {
        dirs.push(if dir.is_empty() {
            "/".into()
        } else {
            dir.into()
        });
    } else {
        dirs.extend(server.snapshot_dir.clone());
        dirs.push(snapshot::DEFAULT_DIR.into());
        dirs.push(snapshot::REMOVAL_DIR.into());
    }
    let wanted = snapshot.rsplit('/').next().unwrap_or(snapshot);
    let mut seen = Vec::new();
    for d in &dirs {
        let files = snapshot::list(server.session, d)
            .await
            .map_err(step("Cannot list the etcd snapshots"))?;
        if let Some(f) = files.iter().find(|f| f.name == wanted) {
            return Ok(f.path.clone());
        }
        seen.extend(files.into_iter().map(|f| f.name));
    }
    let known = if seen.is_empty() {
        "none".to_string()
    } else {
        seen.iter().take(5).cloned().collect::<Vec<_>>().join(", ")
    };
    Err(Failure::new(
        "Snapshot not found",
        format!(
            "{wanted} is not in {} on {}. Snapshots there (newest first): {known}. The data source \
             homelab_k3s_snapshots lists them with their paths.",
            dirs.join(", "),
            server.session.host()
        ),
    )
    .on(Input::Snapshot))
}

async fn stop(session: &Session) -> Result<(), Failure> {
    let out = session
        .exec_sudo("systemctl stop k3s 2>&1", None)
        .await
        .map_err(K3sError::from)
        .map_err(step("Cannot stop k3s"))?;
    if !out.success() {
        return Err(Failure::new(
            "Cannot stop k3s",
            format!("{}: {}", session.host(), out.stdout_str().trim()),
        ));
    }
    Ok(())
}

/// `k3s server --cluster-reset --cluster-reset-restore-path=PATH`, in the foreground with k3s's configuration;
/// it exits by itself once the membership is reset.
async fn cluster_reset(session: &Session, path: &str, limit: Duration) -> Result<(), Failure> {
    let cmd = format!(
        "timeout {} {K3S_BIN} server --cluster-reset --cluster-reset-restore-path={} 2>&1",
        limit.as_secs().max(30),
        quote(path)
    );
    let out = session
        .exec_sudo(&cmd, None)
        .await
        .map_err(K3sError::from)
        .map_err(step("The cluster reset failed"))?;
    let text = out.stdout_str();
    if !out.success() || !text.contains("membership has been reset") {
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        return Err(Failure::new(
            "The cluster reset failed",
            format!(
                "`k3s server --cluster-reset` on {} exited with {}: {}\nk3s is stopped on every server; fix the \
                 cause and apply again (the restore starts over).",
                session.host(),
                out.exit_status,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ),
        ));
    }
    Ok(())
}

/// Moves `server/db` aside (k3s's "back up and delete") and returns where it went.
async fn move_datastore(session: &Session) -> Result<String, Failure> {
    let script = format!(
        "set -e\n\
         d={BACKUP_DIR}/$(date -u +%Y%m%dT%H%M%SZ)-pre-restore\n\
         install -d -m 0700 {BACKUP_DIR} \"$d\"\n\
         if [ -d {DB_DIR} ]; then mv {DB_DIR} \"$d/db\"; fi\n\
         echo \"$d/db\"\n"
    );
    let out = session
        .exec_sudo(&script, None)
        .await
        .map_err(K3sError::from)
        .map_err(step("Cannot move the datastore aside"))?;
    if !out.success() {
        return Err(Failure::new(
            "Cannot move the datastore aside",
            format!("{}: {}", session.host(), out.stderr_str().trim()),
        ));
    }
    Ok(out
        .stdout_str()
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_name_every_host_in_order() {
        let s = steps(
            "10.0.0.11",
            "snap-a-1",
            &["10.0.0.12".into(), "10.0.0.13".into()],
        );
        assert_eq!(s.len(), 6);
        assert!(s[1].contains("stop k3s on 10.0.0.12, 10.0.0.13, 10.0.0.11"));
        assert!(s[2].starts_with("10.0.0.11: k3s server --cluster-reset"));
        assert!(s[4].starts_with("10.0.0.12: move"));
        assert!(s[5].starts_with("10.0.0.13: move"));
        assert!(s.iter().all(|l| !l.contains("token")));
    }
}
