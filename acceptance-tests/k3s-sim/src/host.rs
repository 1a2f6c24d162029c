//! What the stand-in knows of the host it runs on (its name, its node address) and its fatal error, shared by
//! the server, the agent and the helpers they run (registries, reset), so none of those reaches into another.

use crate::config::Config;

/// A fatal server/agent error (printed as `level=fatal`, exit 1).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Fatal(pub String);

impl Fatal {
    /// `map_err` helper: `ctx: error`.
    pub(crate) fn from<E: std::fmt::Display>(ctx: &str) -> impl FnOnce(E) -> Fatal + '_ {
        move |e| Fatal(format!("{ctx}: {e}"))
    }
}

/// This host's name (`/proc/sys/kernel/hostname`).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// The node address: `--node-ip`, else the first global IPv4 address (`ip -4 -o addr show scope global`).
pub fn node_ip(cfg: &Config) -> Result<String, Fatal> {
    if let Some(ip) = cfg.list("node-ip").first() {
        return Ok(ip.clone());
    }
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .map_err(Fatal::from("ip addr"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.find(|w| *w == "inet")?;
            it.next()?.split('/').next().map(str::to_string)
        })
        .next()
        .ok_or_else(|| Fatal("unable to find an IPv4 address for the node; set --node-ip".into()))
}
