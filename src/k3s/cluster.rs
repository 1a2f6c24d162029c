//! Cluster-level steps on one server: the cluster's node names, the backup stop of the sqlite→etcd migration, the
//! serving certificate rotation, and the versions the cluster's nodes run. (etcd membership is in
//! [`super::etcd`]; the sequences that use these steps are in [`super::server`].)
//!
//! Why these exist:
//! - **The seed's migration** (k3s.md §3.1): restarting a single sqlite server with `cluster-init` converts it to
//!   embedded etcd, one way. We stop k3s, copy the datastore and token to a timestamped directory outside the data
//!   dir (an uninstall would delete a backup kept inside it), write the new config, start, then check that the
//!   datastore really is etcd and that every node the cluster had is still there.
//! - **Certificate rotation**: `k3s certificate rotate --service k3s-server` is the documented cure when a new
//!   `tls-san` does not reach the serving certificate (k3s.md §2.4). It runs with k3s stopped; the migration
//!   already stops k3s for its backup, so when it also adds SANs the rotation happens inside that stop and the
//!   server restarts once, not twice.
//! - **Versions**: an agent must not run a newer kubelet than the servers (Kubernetes version-skew policy).

use super::error::K3sError;
use super::paths::{BACKUP_DIR, DB_DIR, K3S_BIN, TOKEN_PATH};
use crate::ssh::{quote, Session};

/// Node names the server's cluster has (through the local admin kubeconfig).
pub async fn node_names(session: &Session) -> Result<Vec<String>, K3sError> {
    let out = session
        .run_sudo(
            &format!(
                "{K3S_BIN} kubectl --request-timeout=20s get nodes -o jsonpath='{{.items[*].metadata.name}}'"
            ),
            None,
        )
        .await?;
    let mut names: Vec<String> = out
        .stdout_str()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    names.sort();
    Ok(names)
}

/// Stops k3s and copies the datastore directory and the token to `BACKUP_DIR/<UTC timestamp>-<tag>/` (0700).
/// Returns the backup path. k3s stays stopped (the caller starts it with the new configuration).
pub async fn stop_and_backup(session: &Session, tag: &str) -> Result<String, K3sError> {
    let script = format!(
        "set -e\n\
         systemctl stop k3s\n\
         d={BACKUP_DIR}/$(date -u +%Y%m%dT%H%M%SZ)-{tag}\n\
         install -d -m 0700 {BACKUP_DIR} \"$d\"\n\
         cp -a {DB_DIR} \"$d/db\"\n\
         if [ -f {TOKEN_PATH} ]; then cp -a {TOKEN_PATH} \"$d/token\"; fi\n\
         echo \"$d\"\n",
        tag = quote(tag),
    );
    let out = session.exec_sudo(&script, None).await?;
    if !out.success() {
        return Err(K3sError::Unexpected {
            host: session.host().to_string(),
            detail: format!("backing up {DB_DIR} failed: {}", out.stderr_str().trim()),
        });
    }
    let path = out
        .stdout_str()
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .to_string();
    Ok(path)
}

/// `systemctl stop k3s; k3s certificate rotate --service k3s-server; systemctl start --no-block k3s`: the
/// documented way to have the serving certificate regenerated with the configured `tls-san`s.
pub async fn certificate_rotate(session: &Session) -> Result<(), K3sError> {
    rotate(session, true, Some("k3s-server")).await
}

/// `systemctl stop k3s; k3s certificate rotate; systemctl start --no-block k3s`: every certificate k3s issues
/// (API server, kubelet, admin and the other clients) is issued again; the CAs stay. Backups of the old ones are
/// in `/var/lib/rancher/k3s/server/tls-<unix time>`.
pub async fn certificate_rotate_all(session: &Session) -> Result<(), K3sError> {
    rotate(session, true, None).await
}

/// `k3s certificate rotate --service k3s-server` on a server whose k3s is already stopped (the migration's stop):
/// the next start serves the configured `tls-san`s, so adding SANs costs no restart of its own.
pub async fn certificate_rotate_stopped(session: &Session) -> Result<(), K3sError> {
    rotate(session, false, Some("k3s-server")).await
}

async fn rotate(session: &Session, restart: bool, service: Option<&str>) -> Result<(), K3sError> {
    let cmd = match service {
        Some(s) => format!("{K3S_BIN} certificate rotate --service {s} 2>&1"),
        None => format!("{K3S_BIN} certificate rotate 2>&1"),
    };
    let cmd = if restart {
        format!("systemctl stop k3s && {cmd}; rc=$?; systemctl start --no-block k3s; exit $rc")
    } else {
        cmd
    };
    let out = session.exec_sudo(&cmd, None).await?;
    if !out.success() {
        return Err(K3sError::Unexpected {
            host: session.host().to_string(),
            detail: format!("k3s certificate rotate failed: {}", out.stdout_str().trim()),
        });
    }
    Ok(())
}

/// A node's name, kubelet version and whether it is a server (control plane).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeVersion {
    pub name: String,
    pub version: String,
    pub server: bool,
}

/// Parses `kubectl get nodes -o json` / `GET /api/v1/nodes` into versions.
pub fn parse_node_versions(raw: &[u8]) -> Option<Vec<NodeVersion>> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    Some(
        v["items"]
            .as_array()?
            .iter()
            .map(|n| {
                let labels = &n["metadata"]["labels"];
                NodeVersion {
                    name: n["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    version: n["status"]["nodeInfo"]["kubeletVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    server: labels["node-role.kubernetes.io/control-plane"].as_str()
                        == Some("true")
                        || labels["node-role.kubernetes.io/master"].as_str() == Some("true"),
                }
            })
            .collect(),
    )
}

/// The cluster's node versions, asked from `host` with an admin kubeconfig (the kubeconfig's credentials are
/// written to a private temporary directory on the host, used by curl through file paths only, then removed).
pub async fn node_versions(
    session: &Session,
    kubeconfig: &str,
) -> Result<Result<Vec<NodeVersion>, String>, K3sError> {
    let Some(kc) = KubeCreds::parse(kubeconfig) else {
        return Ok(Err("the kubeconfig has no server/client certificate".into()));
    };
    let (script, stdin) = super::kube::with_private_files(
        &[
            ("ca.crt", &kc.ca),
            ("client.crt", &kc.cert),
            ("client.key", &kc.key),
        ],
        &format!(
            "curl -sS --max-time 20 --cacert \"$hl_kc/ca.crt\" --cert \"$hl_kc/client.crt\" --key \"$hl_kc/client.key\" {}",
            quote(&format!("{}/api/v1/nodes", kc.server.trim_end_matches('/')))
        ),
    );
    let out = session.exec_sudo(&script, Some(&stdin)).await;
    let out = out?;
    if !out.success() {
        return Ok(Err(format!(
            "asking {} for its nodes failed: {}",
            kc.server,
            out.stderr_str().trim()
        )));
    }
    Ok(parse_node_versions(&out.stdout).ok_or_else(|| "the node list is not JSON".to_string()))
}

/// The cluster's node versions, asked on an agent with its kubelet's credentials (the Node authorizer lets a
/// kubelet list Nodes).
pub async fn node_versions_as_kubelet(
    session: &Session,
) -> Result<Result<Vec<NodeVersion>, String>, K3sError> {
    let out =
        super::kube::kubectl(session, super::kube::Creds::Kubelet, "get nodes -o json").await?;
    if !out.success() {
        return Ok(Err(format!(
            "asking for the nodes with the kubelet's credentials failed: {}",
            super::kube::failure_text(&out)
        )));
    }
    Ok(parse_node_versions(&out.stdout).ok_or_else(|| "the node list is not JSON".to_string()))
}

/// The parts of a kubeconfig needed to call the API with a client certificate.
struct KubeCreds {
    server: String,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl KubeCreds {
    fn parse(text: &str) -> Option<KubeCreds> {
        use base64::Engine;
        let v: serde_json::Value = serde_yaml_ng::from_str(text).ok()?;
        let b64 = |s: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(s.as_str()?.trim())
                .ok()
        };
        let cluster = &v["clusters"][0]["cluster"];
        let user = &v["users"][0]["user"];
        Some(KubeCreds {
            server: cluster["server"].as_str()?.to_string(),
            ca: b64(&cluster["certificate-authority-data"])?,
            cert: b64(&user["client-certificate-data"])?,
            key: b64(&user["client-key-data"])?,
        })
    }
}

/// Refuses an agent version newer than the oldest server (the kubelet must not be newer than the apiserver).
pub fn check_agent_skew(agent_version: &str, nodes: &[NodeVersion]) -> Result<(), String> {
    let Some(want) = super::node::parse_k3s_version(agent_version) else {
        return Ok(());
    };
    let oldest = nodes
        .iter()
        .filter(|n| n.server)
        .filter_map(|n| super::node::parse_k3s_version(&n.version).map(|v| (v, n)))
        .min_by_key(|(v, _)| (v.0, v.1, v.2, v.3));
    let Some((v, n)) = oldest else {
        return Ok(());
    };
    if (want.0, want.1, want.2) > (v.0, v.1, v.2) {
        return Err(format!(
            "This agent would run k3s {agent_version}, newer than server {} ({}). Kubernetes does not allow a \
             kubelet newer than the API servers: upgrade the servers first, then the agents. In one apply, \
             Terraform orders the updates when the agent references the servers (e.g. `token = \
             homelab_k3s_server.init.join_token`, or `depends_on` on every server resource).",
            n.name, n.version
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_newer_than_servers_is_refused() {
        let nodes = vec![
            NodeVersion {
                name: "s1".into(),
                version: "v1.31.6+k3s1".into(),
                server: true,
            },
            NodeVersion {
                name: "s2".into(),
                version: "v1.31.5+k3s1".into(),
                server: true,
            },
            NodeVersion {
                name: "w1".into(),
                version: "v1.31.9+k3s1".into(),
                server: false,
            },
        ];
        let e = check_agent_skew("v1.31.6+k3s1", &nodes).unwrap_err();
        assert!(e.contains("s2") && e.contains("servers first"), "{e}");
        assert!(check_agent_skew("v1.31.5+k3s1", &nodes).is_ok());
        assert!(check_agent_skew("v1.31.5+k3s2", &nodes).is_ok());
        assert!(check_agent_skew("v1.30.0+k3s1", &nodes).is_ok());
        assert!(check_agent_skew("stable", &nodes).is_ok());
    }

    #[test]
    fn node_versions_from_the_api() {
        let raw = br#"{"items":[{"metadata":{"name":"a","labels":{"node-role.kubernetes.io/control-plane":"true"}},"status":{"nodeInfo":{"kubeletVersion":"v1.31.5+k3s1"}}},{"metadata":{"name":"w","labels":{}},"status":{"nodeInfo":{"kubeletVersion":"v1.31.5+k3s1"}}}]}"#;
        let n = parse_node_versions(raw).unwrap();
        assert!(n[0].server && !n[1].server);
        assert_eq!(n[0].version, "v1.31.5+k3s1");
    }

    #[test]
    fn kubeconfig_credentials() {
        let kc = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: Q0E=\n    server: https://192.0.2.2:6443\n  name: default\nusers:\n- name: default\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";
        let c = KubeCreds::parse(kc).unwrap();
        assert_eq!(c.server, "https://192.0.2.2:6443");
        assert_eq!(c.ca, b"CA");
        assert_eq!(c.cert, b"CERT");
        assert_eq!(c.key, b"KEY");
    }
}
