//! The small offline subcommands: `kubectl`, `certificate rotate`, `etcd-snapshot save`, `token`.
//!
//! They act on the node's files like k3s's own CLI does (rotation backs up `server/tls` and leaves the
//! `dynamic-cert-regenerate` trigger for the next start; snapshots go to `server/db/snapshots`), so the provider's
//! command sequences can be exercised as written.

use std::process::Command;

use crate::config::{parse_flags, Value};
use crate::paths::Paths;
use crate::pki::parse_token;

/// A CLI error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

fn flag(args: &[String], name: &str) -> Result<Option<String>, CliError> {
    let f = parse_flags(args).map_err(|e| CliError(e.to_string()))?;
    Ok(f.into_iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| match v {
            Value::Str(s) => s,
            Value::List(l) => l.join(","),
            Value::Bool(b) => b.to_string(),
        }))
}

/// The real kubectl (override with `K3S_SIM_KUBECTL`).
pub fn kubectl_bin() -> String {
    std::env::var("K3S_SIM_KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".into())
}

/// `k3s kubectl …`: the real kubectl with the admin kubeconfig unless `KUBECONFIG`/`--kubeconfig` say otherwise.
pub fn kubectl(args: &[String], paths: &Paths) -> Result<i32, CliError> {
    let mut cmd = Command::new(kubectl_bin());
    let explicit = args
        .iter()
        .any(|a| a == "--kubeconfig" || a.starts_with("--kubeconfig="));
    if !explicit && std::env::var_os("KUBECONFIG").is_none() {
        cmd.arg("--kubeconfig").arg(paths.etc().join("k3s.yaml"));
    }
    cmd.args(args);
    let st = cmd
        .status()
        .map_err(|e| CliError(format!("{}: {e}", kubectl_bin())))?;
    Ok(st.code().unwrap_or(1))
}

const SERVICES: &[&str] = &[
    "admin",
    "api-server",
    "controller-manager",
    "scheduler",
    "k3s-controller",
    "k3s-server",
    "cloud-controller",
    "etcd",
    "auth-proxy",
    "kubelet",
    "kube-proxy",
];

/// `k3s certificate rotate [--service a,b] [--data-dir D]`.
pub fn certificate_rotate(args: &[String]) -> Result<(), CliError> {
    let paths = Paths::from_env(flag(args, "data-dir")?.as_deref());
    let tls = paths.tls();
    if !tls.exists() {
        return Err(CliError(format!(
            "{} does not exist, is this a server?",
            tls.display()
        )));
    }
    let services: Vec<String> = match flag(args, "service")? {
        Some(s) => s.split(',').map(|x| x.trim().to_string()).collect(),
        None => SERVICES.iter().map(|s| s.to_string()).collect(),
    };
    for s in &services {
        if !SERVICES.contains(&s.as_str()) {
            return Err(CliError(format!("{s} is not a recognized service")));
        }
    }
    crate::info!("Server detected, rotating server certificates");
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let backup = paths.server().join(format!("tls-{ts}"));
    copy_dir(&tls, &backup).map_err(|e| CliError(format!("backup: {e}")))?;
    for s in &services {
        match s.as_str() {
            "admin" => {
                let _ = std::fs::remove_file(tls.join("client-admin.crt"));
                let _ = std::fs::remove_file(tls.join("client-admin.key"));
            }
            "k3s-server" => {
                std::fs::write(tls.join("dynamic-cert-regenerate"), b"")
                    .map_err(|e| CliError(e.to_string()))?;
            }
            _ => {}
        }
        crate::info!("Rotating certificates for {s} service");
    }
    crate::info!(
        "Successfully backed up certificates to {}, please restart k3s server or agent to rotate certificates",
        backup.display()
    );
    Ok(())
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let t = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_dir(&e.path(), &t)?;
        } else {
            std::fs::copy(e.path(), t)?;
        }
    }
    Ok(())
}

/// `k3s etcd-snapshot save [--name N]`: a real etcd snapshot through `etcdctl`.
pub fn etcd_snapshot(args: &[String]) -> Result<(), CliError> {
    let (sub, rest) = match args.first().map(String::as_str) {
        Some("save") => ("save", &args[1..]),
        Some(s) if !s.starts_with('-') => {
            return Err(CliError(format!(
                "etcd-snapshot {s}: not supported by k3s-sim"
            )))
        }
        _ => ("save", args),
    };
    let _ = sub;
    let paths = Paths::from_env(flag(rest, "data-dir")?.as_deref());
    let name_file = crate::etcd::name_file(&paths.db());
    let member = std::fs::read_to_string(&name_file)
        .map_err(|_| CliError("etcd datastore disabled".into()))?;
    // Like k3s, the subcommand reads config.yaml (and its drop-ins) too: a server's `etcd-snapshot-dir` applies
    // to on-demand snapshots without repeating it on the command line; the flag wins.
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let configured = match flag(rest, "etcd-snapshot-dir")? {
        Some(d) => Some(d),
        None => crate::config::Config::load(&[], &env, &paths)
            .ok()
            .and_then(|c| c.str("etcd-snapshot-dir")),
    };
    let dir = configured
        .map(|d| paths.host(&d))
        .unwrap_or_else(|| paths.db().join("snapshots"));
    std::fs::create_dir_all(&dir).map_err(|e| CliError(e.to_string()))?;
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let node = member
        .trim()
        .rsplit_once('-')
        .map(|(n, _)| n.to_string())
        .unwrap_or_default();
    let name = flag(rest, "name")?.unwrap_or_else(|| "on-demand".into());
    let file = dir.join(format!("{name}-{node}-{ts}"));
    let etcdctl = std::env::var("K3S_SIM_ETCDCTL").unwrap_or_else(|_| "/usr/bin/etcdctl".into());
    let out = Command::new(etcdctl)
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(format!("http://{}:2379", paths.localhost))
        .arg("snapshot")
        .arg("save")
        .arg(&file)
        .output()
        .map_err(|e| CliError(format!("etcdctl: {e}")))?;
    if !out.status.success() {
        return Err(CliError(format!(
            "snapshot failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    crate::info!(
        "Snapshot {} saved.",
        file.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    Ok(())
}

/// `k3s token rotate --token OLD --new-token NEW` (local server files; restart servers afterwards, as k3s says)
/// and `k3s token list` (no bootstrap tokens in the stand-in).
pub fn token(args: &[String]) -> Result<(), CliError> {
    let paths = Paths::from_env(flag(&args[1.min(args.len())..], "data-dir")?.as_deref());
    match args.first().map(String::as_str) {
        Some("list") => {
            println!("TOKEN   TTL   EXPIRES   USAGES   DESCRIPTION   EXTRA GROUPS");
            Ok(())
        }
        Some("rotate") => {
            // What k3s's CLI does: PUT the new token to the supervisor (`--server`, default the local one) with
            // the existing token as credentials; the server records it for the whole cluster. Without
            // `--token`/`K3S_TOKEN` the stand-in uses the local token file (inferred convenience).
            let rest = &args[1..];
            let new = flag(rest, "new-token")?
                .ok_or_else(|| CliError("--new-token is required".into()))?;
            let old = match flag(rest, "token")?.or_else(|| std::env::var("K3S_TOKEN").ok()) {
                Some(t) => t,
                None => {
                    let file = paths.server().join("token");
                    std::fs::read_to_string(&file)
                        .map_err(|e| CliError(format!("{}: {e}", file.display())))?
                }
            };
            let url = flag(rest, "server")?
                .or_else(|| std::env::var("K3S_URL").ok())
                .unwrap_or_else(|| format!("https://{}:6443", paths.localhost));
            let ca = std::fs::read_to_string(paths.tls().join("server-ca.crt"))
                .map_err(|e| CliError(e.to_string()))?;
            let auth = {
                use base64::Engine;
                let pw = parse_token(old.trim()).password;
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("server:{pw}"))
                )
            };
            let body = serde_json::json!({ "token": new }).to_string().into_bytes();
            let rt = tokio::runtime::Runtime::new().map_err(|e| CliError(e.to_string()))?;
            let r = rt
                .block_on(crate::http::request(
                    "PUT",
                    &format!("{}/v1-k3s/token", url.trim_end_matches('/')),
                    &[("authorization", auth)],
                    Some(body),
                    Some(&crate::http::Tls::ca(&ca, None)),
                ))
                .map_err(|e| CliError(format!("token rotate: {e}")))?;
            if r.status != 200 {
                return Err(CliError(format!(
                    "token rotate: server returned {}: {}",
                    r.status,
                    r.text().trim()
                )));
            }
            println!("Token rotated, restart k3s nodes with new token");
            Ok(())
        }
        Some(other) => Err(CliError(format!("token {other}: not supported by k3s-sim"))),
        None => Err(CliError("usage: k3s token list|rotate".into())),
    }
}
