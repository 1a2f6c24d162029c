//! `registries.yaml`, read once when k3s starts (k3s's docs: changes take effect on restart), rendered into
//! containerd's configuration the way k3s does: one `certs.d/<registry>/hosts.toml` per mirror (k3s 1.26+ writes
//! these; the stand-in writes only the endpoint lines) and each `configs` entry's credentials and TLS into
//! `config.toml`'s `registry.configs."<host>"` tables. There is no containerd here: these files are what a test
//! can look at to see which registry settings the node started with. A file that is not valid YAML stops k3s,
//! as it does for real k3s.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::host::Fatal;
use crate::paths::{write_file, Paths};
use crate::{info, warn};

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    configs: BTreeMap<String, Config>,
}

#[derive(Deserialize, Default)]
struct Mirror {
    #[serde(default)]
    endpoint: Vec<String>,
}

#[derive(Deserialize, Default)]
struct Config {
    #[serde(default)]
    auth: Option<Auth>,
    #[serde(default)]
    tls: Option<Tls>,
}

#[derive(Deserialize, Default)]
struct Auth {
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize, Default)]
struct Tls {
    insecure_skip_verify: Option<bool>,
    ca_file: Option<String>,
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Reads `/etc/rancher/k3s/registries.yaml` (if any) and writes containerd's files under
/// `<data-dir>/agent/etc/containerd/`. Old `certs.d` entries are removed first, as k3s regenerates them.
pub fn apply(paths: &Paths) -> Result<(), Fatal> {
    let file = paths.etc().join("registries.yaml");
    let base = paths.data_dir.join("agent/etc/containerd");
    let _ = std::fs::remove_dir_all(base.join("certs.d"));
    let raw = match std::fs::read(&file) {
        Ok(r) => r,
        Err(_) => {
            let _ = std::fs::remove_file(base.join("config.toml"));
            return Ok(());
        }
    };
    info!("Using private registry config file at {}", file.display());
    let f: File = serde_yaml::from_slice(&raw)
        .map_err(|e| Fatal(format!("failed to parse {}: {e}", file.display())))?;
    for (registry, m) in &f.mirrors {
        let mut hosts = String::new();
        if registry != "*" {
            hosts.push_str(&format!(
                "server = {}\n",
                toml_str(&format!("https://{registry}"))
            ));
        }
        for e in &m.endpoint {
            hosts.push_str(&format!(
                "\n[host.{}]\n  capabilities = [\"pull\", \"resolve\"]\n",
                toml_str(e)
            ));
        }
        let dir = if registry == "*" {
            "_default"
        } else {
            registry
        };
        write_file(
            &base.join("certs.d").join(dir).join("hosts.toml"),
            hosts.as_bytes(),
            0o600,
        )
        .map_err(Fatal::from("writing hosts.toml"))?;
    }
    let mut toml = String::from("version = 2\n");
    for (host, c) in &f.configs {
        let table = format!(
            "plugins.\"io.containerd.grpc.v1.cri\".registry.configs.{}",
            toml_str(host)
        );
        if let Some(a) = &c.auth {
            toml.push_str(&format!("\n[{table}.auth]\n"));
            if let Some(u) = &a.username {
                toml.push_str(&format!("  username = {}\n", toml_str(u)));
            }
            if let Some(p) = &a.password {
                toml.push_str(&format!("  password = {}\n", toml_str(p)));
            }
        }
        if let Some(t) = &c.tls {
            toml.push_str(&format!("\n[{table}.tls]\n"));
            if let Some(i) = t.insecure_skip_verify {
                toml.push_str(&format!("  insecure_skip_verify = {i}\n"));
            }
            if let Some(ca) = &t.ca_file {
                toml.push_str(&format!("  ca_file = {}\n", toml_str(ca)));
            }
        }
    }
    if let Err(e) = write_file(&base.join("config.toml"), toml.as_bytes(), 0o600) {
        warn!("writing containerd config.toml: {e}");
    }
    Ok(())
}
