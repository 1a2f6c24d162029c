//! `k3s agent`: registration through the given server URL, then the client-side load balancer.
//!
//! The fact the seed discovered (k3s.md §3.3): agents use the fixed registration address (the VIP) only to
//! register. A TCP proxy on `127.0.0.1:6444` (`k3s-agent-load-balancer`) starts with that address as its only
//! server; once the agent reaches the cluster it learns the apiserver endpoints (`default/kubernetes`) and from
//! then on dials servers directly, keeping the `--server` address only as the last-resort default. The list is
//! cached in `agent/etc/k3s-agent-load-balancer.json` (`ServerURL`, `ServerAddresses`); the cache is used on the
//! next start only if `ServerURL` is unchanged, so a restarted agent comes up even with the VIP down. All later
//! traffic (heartbeats, endpoint refresh) goes through the proxy, so losing one server or the VIP does not matter.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;
use crate::http::{self, Tls};
use crate::paths::{write_file, Paths};
use crate::pki::CertKey;
use crate::server::{
    base_labels, configured_token, fetch_pinned_ca, hostname, node_doc, node_ip, node_password,
    refresh, Fatal,
};
use crate::{error, info};

/// The LB's service name in logs and file names.
pub const LB_NAME: &str = "k3s-agent-load-balancer";

/// The state file `k3s-agent-load-balancer.json`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LbFile {
    /// The configured `--server` URL.
    #[serde(rename = "ServerURL")]
    pub server_url: String,
    /// The learned server addresses (`ip:port`).
    #[serde(rename = "ServerAddresses")]
    pub server_addresses: Vec<String>,
}

/// The client-side load balancer.
pub struct LoadBalancer {
    /// The `--server` address (`host:port`), used only when every server fails.
    pub default: String,
    servers: Mutex<Vec<String>>,
    next: Mutex<usize>,
    file: std::path::PathBuf,
    server_url: String,
}

/// `host:port` of a URL.
pub fn url_addr(url: &str) -> Result<String, Fatal> {
    let (_, host, port, _) = http::split_url(url).map_err(|e| Fatal(e.to_string()))?;
    Ok(if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

impl LoadBalancer {
    /// Create the LB from the cache (if its `ServerURL` matches) or the default alone, logging like k3s.
    pub fn new(paths: &Paths, server_url: &str) -> Result<Arc<LoadBalancer>, Fatal> {
        let default = url_addr(server_url)?;
        let file = paths.agent().join("etc").join(format!("{LB_NAME}.json"));
        let cached: Option<LbFile> = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        info!("Adding server to load balancer {LB_NAME}: {default}");
        let lb = Arc::new(LoadBalancer {
            default: default.clone(),
            servers: Mutex::new(vec![default.clone()]),
            next: Mutex::new(0),
            file,
            server_url: server_url.to_string(),
        });
        match cached {
            Some(c) if c.server_url == server_url && !c.server_addresses.is_empty() => {
                lb.update(c.server_addresses);
            }
            _ => lb.write()?,
        }
        let servers = lb.servers();
        info!(
            "Running load balancer {LB_NAME} {}:6444 -> [{}] [default: {default}]",
            paths.localhost,
            servers.join(" ")
        );
        Ok(lb)
    }

    /// The current server list.
    pub fn servers(&self) -> Vec<String> {
        self.servers.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn write(&self) -> Result<(), Fatal> {
        let f = LbFile {
            server_url: self.server_url.clone(),
            server_addresses: self.servers(),
        };
        let text = serde_json::to_string_pretty(&f).map_err(Fatal::from_display)?;
        write_file(&self.file, text.as_bytes(), 0o600).map_err(Fatal::from_display)
    }

    /// Replace the server list with `new` (the default stays only as fallback), logging additions/removals.
    pub fn update(&self, mut new: Vec<String>) {
        new.sort();
        new.dedup();
        if new.is_empty() {
            return;
        }
        let changed = {
            let Ok(mut cur) = self.servers.lock() else {
                return;
            };
            for a in new.iter().filter(|a| !cur.contains(a)) {
                info!("Adding server to load balancer {LB_NAME}: {a}");
            }
            for r in cur.iter().filter(|r| !new.contains(r)) {
                info!("Removing server from load balancer {LB_NAME}: {r}");
            }
            let changed = *cur != new;
            *cur = new;
            changed
        };
        if changed {
            if let Err(e) = self.write() {
                error!("Error updating load balancer config: {e}");
            }
        }
    }

    /// Dial a server: round-robin over the list, the default last.
    pub async fn dial(&self) -> Option<tokio::net::TcpStream> {
        let servers = self.servers();
        let start = self.next.lock().map(|n| *n).unwrap_or(0);
        for i in 0..servers.len() {
            let idx = (start + i) % servers.len();
            let addr = &servers[idx];
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(addr.as_str()),
            )
            .await
            {
                if let Ok(mut n) = self.next.lock() {
                    *n = idx;
                }
                return Some(s);
            }
        }
        if !servers.contains(&self.default) {
            if let Ok(Ok(s)) = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(self.default.as_str()),
            )
            .await
            {
                return Some(s);
            }
        }
        None
    }

    /// Proxy connections from `listener` to the servers.
    pub async fn run(self: Arc<Self>, listener: tokio::net::TcpListener) {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let lb = self.clone();
            tokio::spawn(async move {
                if let Some(mut out) = lb.dial().await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                }
            });
        }
    }
}

impl Fatal {
    /// Wrap any displayable error.
    pub fn from_display<E: std::fmt::Display>(e: E) -> Fatal {
        Fatal(e.to_string())
    }
}

/// Run `k3s agent` until SIGTERM.
pub async fn run(cfg: Config, paths: Paths) -> Result<(), Fatal> {
    let server_url = cfg
        .str("server")
        .ok_or_else(|| Fatal("--server is required".into()))?;
    if !server_url.starts_with("https://") {
        return Err(Fatal(format!(
            "server url must begin with https://, got {server_url}"
        )));
    }
    let token = configured_token(&cfg, &paths, "token")
        .ok_or_else(|| Fatal("--token is required".into()))?;
    let name = cfg.str("node-name").unwrap_or_else(hostname);
    let ip = node_ip(&cfg)?;
    info!("Starting k3s agent {} (k3s-sim)", crate::VERSION);
    crate::server::check_node_labels(&cfg)?;
    crate::registries::apply(&paths)?;
    let npw = node_password(&paths)?;

    let lb = LoadBalancer::new(&paths, &server_url)?;
    let lb_addr = format!("{}:6444", paths.localhost);
    let listener = tokio::net::TcpListener::bind(&lb_addr)
        .await
        .map_err(|e| Fatal(format!("listen tcp {lb_addr}: {e}")))?;
    tokio::spawn(lb.clone().run(listener));
    let base = format!("https://{lb_addr}");
    let loopback_name = Some("127.0.0.1".to_string());

    // CA (pinned by the token), then our kubelet client certificate; retry like k3s while the server is not ready.
    let (ca, kubelet) = loop {
        match bootstrap(&base, &token, &name, &npw, loopback_name.clone()).await {
            Ok(v) => break v,
            Err(e) if e.0.contains("token CA hash does not match") => return Err(e),
            Err(e) => {
                error!("Waiting to retrieve agent configuration; server is not ready: {e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    };
    write_kubelet_kubeconfig(&paths, &lb_addr, &ca, &kubelet)?;
    let tls = Tls {
        trust: http::Trust::Ca(ca),
        client: Some(kubelet),
        server_name: loopback_name,
    };

    let node = node_doc(
        &name,
        &ip,
        base_labels(&cfg, &name),
        Default::default(),
        &cfg.list("node-taint"),
    );
    loop {
        match post_node(&base, &tls, &node).await {
            Ok(()) => break,
            Err(e) => {
                error!("Failed to register node {name}: {e}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
    refresh_servers(&base, &tls, &lb).await;
    crate::server::spawn_kubelet_healthz(&paths.localhost).await;
    crate::notify::notify("READY=1");
    info!("k3s agent is up and running");
    {
        let (base, tls, lb) = (base.clone(), tls.clone(), lb.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if let Err(e) = post_node(&base, &tls, &refresh(node.clone())).await {
                    error!("Failed to update node status: {e}");
                }
                refresh_servers(&base, &tls, &lb).await;
            }
        });
    }
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(Fatal::from_display)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Fatal::from_display)?;
    tokio::select! {
        _ = term.recv() => info!("Received SIGTERM, shutting down"),
        _ = int.recv() => {},
    }
    Ok(())
}

/// The kubelet's credentials on disk, where k3s keeps them (`<data-dir>/agent/`): its client certificate and key,
/// the server CA and `kubelet.kubeconfig` pointing at the agent's load balancer. `k3s kubectl --kubeconfig` with
/// it acts as `system:node:<name>` (what the provider uses on agents without an admin kubeconfig).
fn write_kubelet_kubeconfig(
    paths: &Paths,
    lb_addr: &str,
    ca: &str,
    kubelet: &CertKey,
) -> Result<(), Fatal> {
    let dir = paths.data_dir.join("agent");
    let write = |name: &str, data: &[u8], mode: u32| {
        crate::paths::write_file(&dir.join(name), data, mode)
            .map_err(|e| Fatal(format!("writing {}: {e}", dir.join(name).display())))
    };
    write("server-ca.crt", ca.as_bytes(), 0o644)?;
    write("client-kubelet.crt", kubelet.cert.as_bytes(), 0o644)?;
    write("client-kubelet.key", kubelet.key.as_bytes(), 0o600)?;
    let d = dir.display();
    // The serving certificate names 127.0.0.1; on a shared loopback the agent's address differs.
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: {d}/server-ca.crt\n    \
         server: https://{lb_addr}\n    tls-server-name: 127.0.0.1\n  name: local\ncontexts:\n- context:\n    \
         cluster: local\n    namespace: default\n    user: user\n  name: Default\ncurrent-context: Default\n\
         preferences: {{}}\nusers:\n- name: user\n  user:\n    client-certificate: {d}/client-kubelet.crt\n    \
         client-key: {d}/client-kubelet.key\n"
    );
    write("kubelet.kubeconfig", kubeconfig.as_bytes(), 0o600)
}

async fn bootstrap(
    base: &str,
    token: &str,
    name: &str,
    npw: &str,
    tls_name: Option<String>,
) -> Result<(String, CertKey), Fatal> {
    use base64::Engine;
    let ca = fetch_pinned_ca(base, token, tls_name.clone()).await?;
    let pw = crate::pki::parse_token(token).password;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("node:{pw}"))
    );
    let mut tls = Tls::ca(&ca, None);
    tls.server_name = tls_name;
    let r = http::request(
        "GET",
        &format!("{base}/v1-k3s/client-kubelet.crt"),
        &[
            ("authorization", auth),
            ("k3s-node-name", name.to_string()),
            ("k3s-node-password", npw.to_string()),
        ],
        None,
        Some(&tls),
    )
    .await
    .map_err(Fatal::from_display)?;
    if r.status != 200 {
        let msg: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        return Err(Fatal(format!(
            "{base}/v1-k3s/client-kubelet.crt: {} {}",
            r.status,
            msg["message"].as_str().unwrap_or("")
        )));
    }
    let ck: CertKey = serde_json::from_slice(&r.body).map_err(Fatal::from_display)?;
    Ok((ca, ck))
}

async fn post_node(base: &str, tls: &Tls, node: &Value) -> Result<(), Fatal> {
    let r = http::request(
        "POST",
        &format!("{base}/v1-k3s/sim/heartbeat"),
        &[("content-type", "application/json".into())],
        Some(node.to_string().into_bytes()),
        Some(tls),
    )
    .await
    .map_err(Fatal::from_display)?;
    if r.status != 200 {
        return Err(Fatal(format!("{} {}", r.status, r.text())));
    }
    Ok(())
}

async fn refresh_servers(base: &str, tls: &Tls, lb: &LoadBalancer) {
    let Ok(r) = http::request(
        "GET",
        &format!("{base}/api/v1/namespaces/default/endpoints/kubernetes"),
        &[],
        None,
        Some(tls),
    )
    .await
    else {
        return;
    };
    if r.status != 200 {
        return;
    }
    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let port = v["subsets"][0]["ports"][0]["port"].as_u64().unwrap_or(6443);
    let addrs: Vec<String> = v["subsets"][0]["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["ip"].as_str().map(|ip| format!("{ip}:{port}")))
                .collect()
        })
        .unwrap_or_default();
    lb.update(addrs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_reused_only_for_the_same_server_url() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path().to_str().unwrap(), "127.0.0.1", None);
        let lb = LoadBalancer::new(&paths, "https://10.0.3.100:6443").unwrap();
        assert_eq!(lb.servers(), vec!["10.0.3.100:6443"]);
        lb.update(vec!["10.0.3.7:6443".into(), "10.0.3.2:6443".into()]);
        let again = LoadBalancer::new(&paths, "https://10.0.3.100:6443").unwrap();
        assert_eq!(again.servers(), vec!["10.0.3.2:6443", "10.0.3.7:6443"]);
        let text = std::fs::read_to_string(
            dir.path()
                .join("var/lib/rancher/k3s/agent/etc/k3s-agent-load-balancer.json"),
        )
        .unwrap();
        assert!(
            text.contains("\"ServerURL\": \"https://10.0.3.100:6443\""),
            "{text}"
        );
        let other = LoadBalancer::new(&paths, "https://10.0.3.2:6443").unwrap();
        assert_eq!(other.servers(), vec!["10.0.3.2:6443"]);
    }
}
