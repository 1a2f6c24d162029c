//! `k3s server --cluster-reset [--cluster-reset-restore-path=FILE]`: make this server the only member of its etcd
//! cluster, optionally from a snapshot, then exit.
//!
//! What k3s documents (`docs/cli/etcd-snapshot.md`, `docs/backup-restore`): with k3s stopped on every server, run
//! `k3s server --cluster-reset --cluster-reset-restore-path=<snapshot>` on one server; it restores the snapshot,
//! resets the membership to that single member and tells the operator to restart it without `--cluster-reset`
//! and to back up and delete `${data-dir}/server/db` on each peer before rejoining them. Without a restore path the
//! current data is kept and only the membership is reset. What the stand-in infers: the old data directory is
//! kept beside the new one as `db/etcd-old-<unix time>` (k3s moves it aside the same way), the member keeps its
//! recorded name, and the process exits with status 0 after printing k3s's message (recent k3s exits after a reset
//! instead of serving on). It refuses to run while the server is running (the `:6443` port or etcd's client port
//! is taken), as a restore on a live member would fork the cluster.

use std::time::Duration;

use crate::config::Config;
use crate::etcd::{self, EtcdOpts};
use crate::host::Fatal;
use crate::info;
use crate::paths::{write_file, Paths};
use crate::pki::random_hex;

/// Runs the reset; `Ok` means "restart without --cluster-reset now".
pub async fn run(cfg: &Config, paths: &Paths, node_name: &str, ip: &str) -> Result<(), Fatal> {
    let db = paths.db();
    let data_dir = db.join("etcd");
    let log_file = db.join("etcd.log");
    if std::net::TcpListener::bind((ip, 2379)).is_err() {
        return Err(Fatal(
            "cluster-reset: etcd is still running on this node (port 2379 in use); stop k3s first"
                .into(),
        ));
    }
    let name = std::fs::read_to_string(etcd::name_file(&db))
        .ok()
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| format!("{node_name}-{}", random_hex(4)));
    let peer_url = format!("http://{ip}:2380");
    let restore = cfg.str("cluster-reset-restore-path");
    if let Some(file) = &restore {
        let snap = paths.host(file);
        if !snap.is_file() {
            return Err(Fatal(format!(
                "cluster-reset-restore-path {file}: no such snapshot file"
            )));
        }
        let staging = db.join("etcd-restore");
        let _ = std::fs::remove_dir_all(&staging);
        let etcdctl =
            std::env::var("K3S_SIM_ETCDCTL").unwrap_or_else(|_| "/usr/bin/etcdctl".into());
        let out = std::process::Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg("snapshot")
            .arg("restore")
            .arg(&snap)
            .arg("--data-dir")
            .arg(&staging)
            .arg("--name")
            .arg(&name)
            .arg("--initial-cluster")
            .arg(format!("{name}={peer_url}"))
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster-token")
            .arg("k3s-sim")
            .output()
            .map_err(Fatal::from("etcdctl"))?;
        if !out.status.success() {
            return Err(Fatal(format!(
                "failed to restore etcd snapshot {file}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if data_dir.exists() {
            let old = db.join(format!("etcd-old-{}", unix_now()));
            std::fs::rename(&data_dir, &old).map_err(Fatal::from("moving etcd aside"))?;
            info!("Moved the old etcd data directory to {}", old.display());
        }
        std::fs::rename(&staging, &data_dir).map_err(Fatal::from("restored data"))?;
        write_file(&etcd::name_file(&db), name.as_bytes(), 0o600)
            .map_err(Fatal::from("etcd name"))?;
        info!("Restored etcd snapshot {file} as member {name}");
    } else if !data_dir.exists() {
        return Err(Fatal(
            "cluster-reset: no etcd data directory on this node; nothing to reset".into(),
        ));
    }
    // Start the member once, alone (a restored data dir is single-member already; an in-place reset needs
    // --force-new-cluster), check it answers, and stop it.
    let opts = EtcdOpts {
        name: name.clone(),
        data_dir,
        node_ip: ip.to_string(),
        localhost: paths.localhost.clone(),
        initial: None,
        log_file,
        force_new_cluster: restore.is_none(),
    };
    let mut child = etcd::spawn(&opts).map_err(Fatal::from("starting etcd"))?;
    let healthy = etcd::wait_healthy(&opts.client_url(), Duration::from_secs(60)).await;
    let _ = child.kill().await;
    if !healthy {
        return Err(Fatal(format!(
            "etcd did not become healthy after the reset; see {}",
            opts.log_file.display()
        )));
    }
    info!(
        "Managed etcd cluster membership has been reset, restart without --cluster-reset flag now. Backup and \
         delete ${{datadir}}/server/db on each peer etcd server and rejoin the nodes"
    );
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
