//! Private registries: `/etc/rancher/k3s/registries.yaml`, which k3s reads when it starts and turns into
//! containerd's mirror (`hosts.toml`) and credential configuration.
//!
//! Why the provider writes the file itself (0600, content on stdin) and restarts k3s when it changed: k3s reads it
//! only at start (its docs: "in order for the registry changes to take effect, you need to restart K3s on each
//! node"), and the file carries registry passwords, which never go on a command line. It is rendered as JSON (valid
//! YAML), like config.yaml, and parsed back for drift with the same YAML parser k3s users write it with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where k3s reads its registry configuration.
pub const REGISTRIES_PATH: &str = "/etc/rancher/k3s/registries.yaml";

/// A mirror: pulls of `registry` (e.g. `docker.io`, or `*` for every registry) go to `endpoints` first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mirror {
    pub registry: String,
    pub endpoints: Vec<String>,
}

/// How to talk to one registry host (e.g. `mirror.lan:5000`): credentials and TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub username: Option<String>,
    /// The password in clear (only ever written into the 0600 file).
    pub password: Option<String>,
    pub insecure_skip_verify: Option<bool>,
    /// A CA bundle on the node.
    pub ca_file: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct File {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    mirrors: BTreeMap<String, MirrorEntry>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    configs: BTreeMap<String, ConfigEntry>,
}

#[derive(Serialize, Deserialize, Default)]
struct MirrorEntry {
    #[serde(default)]
    endpoint: Vec<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct ConfigEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<Auth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tls: Option<Tls>,
}

#[derive(Serialize, Deserialize, Default)]
struct Auth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    password: Option<String>,
}

#[derive(Serialize, Deserialize, Default)]
struct Tls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    insecure_skip_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
}

/// The file's text for these mirrors and endpoints (stable: keys sorted).
pub fn render(mirrors: &[Mirror], endpoints: &[Endpoint]) -> String {
    let mut f = File::default();
    for m in mirrors {
        f.mirrors.insert(
            m.registry.clone(),
            MirrorEntry {
                endpoint: m.endpoints.clone(),
            },
        );
    }
    for e in endpoints {
        let auth = (e.username.is_some() || e.password.is_some()).then(|| Auth {
            username: e.username.clone(),
            password: e.password.clone(),
        });
        let tls = (e.insecure_skip_verify.is_some() || e.ca_file.is_some()).then(|| Tls {
            insecure_skip_verify: e.insecure_skip_verify,
            ca_file: e.ca_file.clone(),
        });
        f.configs.insert(e.host.clone(), ConfigEntry { auth, tls });
    }
    let mut s = serde_json::to_string_pretty(&f).unwrap_or_default();
    s.push('\n');
    s
}

/// Mirrors and endpoints of a registries.yaml (`None`: not YAML of that shape).
pub fn parse(raw: &[u8]) -> Option<(Vec<Mirror>, Vec<Endpoint>)> {
    let f: File = serde_yaml_ng::from_slice(raw).ok()?;
    let mirrors = f
        .mirrors
        .into_iter()
        .map(|(registry, m)| Mirror {
            registry,
            endpoints: m.endpoint,
        })
        .collect();
    let endpoints = f
        .configs
        .into_iter()
        .map(|(host, c)| {
            let (username, password) = c.auth.map(|a| (a.username, a.password)).unwrap_or_default();
            let (insecure_skip_verify, ca_file) = c
                .tls
                .map(|t| (t.insecure_skip_verify, t.ca_file))
                .unwrap_or_default();
            Endpoint {
                host,
                username,
                password,
                insecure_skip_verify,
                ca_file,
            }
        })
        .collect();
    Some((mirrors, endpoints))
}

/// What the node's registries.yaml should become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want<'a> {
    /// Not managed: leave whatever is there.
    Leave,
    /// Write this content.
    Write(&'a str),
    /// Managed before, nothing wanted now: remove the file.
    Remove,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_then_parse_is_the_same_and_hand_written_yaml_parses() {
        let mirrors = vec![Mirror {
            registry: "docker.io".into(),
            endpoints: vec!["https://mirror.lan:5000".into()],
        }];
        let endpoints = vec![Endpoint {
            host: "mirror.lan:5000".into(),
            username: Some("pull".into()),
            password: Some("s3cret".into()),
            insecure_skip_verify: Some(true),
            ca_file: None,
        }];
        let text = render(&mirrors, &endpoints);
        assert_eq!(parse(text.as_bytes()), Some((mirrors, endpoints)));
        let hand = b"mirrors:\n  docker.io:\n    endpoint:\n      - \"https://m:5000\"\nconfigs:\n  \"m:5000\":\n    tls:\n      ca_file: /etc/ssl/m.pem\n";
        let (m, e) = parse(hand).unwrap();
        assert_eq!(m[0].endpoints, ["https://m:5000"]);
        assert_eq!(e[0].ca_file.as_deref(), Some("/etc/ssl/m.pem"));
        assert_eq!(e[0].username, None);
        assert_eq!(parse(b"- not a map\n"), None);
        assert_eq!(render(&[], &[]), "{}\n");
    }
}
