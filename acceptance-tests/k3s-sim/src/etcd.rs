//! The embedded etcd: a real etcd 3.4 child process, driven like k3s drives its in-process etcd.
//!
//! k3s embeds etcd; we cannot, but Debian's `etcd` is the same server, so quorum loss, learners ("too many learner
//! members in cluster"), promotion and member removal behave exactly as on a real cluster. The server starts
//! etcd as a child (peer `:2380`, client `:2379` on the node address and on the host's loopback), adds joiners as
//! learners and promotes them, and removes a member when its Node is deleted. We use plain HTTP between members:
//! the lab's network exists only inside its namespaces, and TLS between etcd peers would add nothing to what the
//! provider can observe. The child gets `PR_SET_PDEATHSIG` so it never outlives the k3s process (the unit has
//! `KillMode=process`, which would otherwise leave it running).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};

use crate::http;

/// etcd said no or could not be reached (its message). Its own type, so the datastore ([`crate::store`]) builds on
/// this client without the client knowing the datastore.
#[derive(Debug, thiserror::Error)]
#[error("etcd: {0}")]
pub struct EtcdError(pub String);

/// The etcd binary (override with `K3S_SIM_ETCD`).
pub fn etcd_bin() -> String {
    std::env::var("K3S_SIM_ETCD").unwrap_or_else(|_| "/usr/bin/etcd".into())
}

/// A member as etcd reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Member ID.
    pub id: u64,
    /// Name (empty until started).
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs.
    pub client_urls: Vec<String>,
    /// Learner?
    pub is_learner: bool,
}

fn as_u64(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        Value::Number(n) => n.as_u64().unwrap_or(0),
        _ => 0,
    }
}

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Member {
    fn from_json(v: &Value) -> Member {
        Member {
            id: as_u64(&v["ID"]),
            name: v["name"].as_str().unwrap_or_default().to_string(),
            peer_urls: strs(&v["peerURLs"]),
            client_urls: strs(&v["clientURLs"]),
            is_learner: v["isLearner"].as_bool().unwrap_or(false),
        }
    }
}

/// A client of etcd's `/v3` JSON gateway that tries its endpoints in order.
#[derive(Clone, Debug)]
pub struct EtcdClient {
    endpoints: Arc<Vec<String>>,
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}
fn b64d(v: &Value) -> Vec<u8> {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl EtcdClient {
    /// A client for these `http://host:2379` endpoints.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdClient {
            endpoints: Arc::new(endpoints),
        }
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// POST a gateway call, retrying the transient errors of a leader election (as the apiserver's etcd client
    /// does) for up to ~8 s.
    pub async fn call(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let mut attempt = 0;
        loop {
            match self.call_once(path, body).await {
                Err(EtcdError(m))
                    if attempt < 16
                        && (m.contains("leader changed")
                            || m.contains("no leader")
                            || m.contains("timed out")
                            || m.contains("too many requests")) =>
                {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    /// One gateway call; the first endpoint that answers decides.
    async fn call_once(&self, path: &str, body: &Value) -> Result<Value, EtcdError> {
        let mut last = String::from("no etcd endpoints");
        for ep in self.endpoints.iter() {
            let url = format!("{ep}{path}");
            match http::request(
                "POST",
                &url,
                &[("content-type", "application/json".into())],
                Some(body.to_string().into_bytes()),
                None,
            )
            .await
            {
                Ok(r) => {
                    let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                    if r.status == 200 {
                        return Ok(v);
                    }
                    let msg = v["message"]
                        .as_str()
                        .or(v["error"].as_str())
                        .map(str::to_string)
                        .unwrap_or_else(|| r.text());
                    return Err(EtcdError(msg));
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(EtcdError(last))
    }

    /// Range over one key or a prefix.
    pub async fn range(
        &self,
        key: &str,
        prefix: bool,
    ) -> Result<Vec<(String, Vec<u8>)>, EtcdError> {
        let mut req = json!({"key": b64(key.as_bytes())});
        if prefix {
            req["range_end"] = json!(b64(&prefix_end(key.as_bytes())));
        }
        let v = self.call("/v3/kv/range", &req).await?;
        Ok(v["kvs"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|kv| {
                        (
                            String::from_utf8_lossy(&b64d(&kv["key"])).into_owned(),
                            b64d(&kv["value"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Put a key.
    pub async fn put(&self, key: &str, val: &[u8]) -> Result<(), EtcdError> {
        self.call(
            "/v3/kv/put",
            &json!({"key": b64(key.as_bytes()), "value": b64(val)}),
        )
        .await
        .map(|_| ())
    }

    /// Delete a key.
    pub async fn delete(&self, key: &str) -> Result<bool, EtcdError> {
        let v = self
            .call("/v3/kv/deleterange", &json!({"key": b64(key.as_bytes())}))
            .await?;
        Ok(as_u64(&v["deleted"]) > 0)
    }

    /// The raw member list (what `/db/info` returns).
    pub async fn member_list_raw(&self) -> Result<Value, EtcdError> {
        self.call("/v3/cluster/member/list", &json!({})).await
    }

    /// The member list.
    pub async fn member_list(&self) -> Result<Vec<Member>, EtcdError> {
        Ok(members_of(&self.member_list_raw().await?))
    }

    /// Add a member (as a learner if asked); returns its ID.
    pub async fn member_add(&self, peer_url: &str, learner: bool) -> Result<u64, EtcdError> {
        let v = self
            .call(
                "/v3/cluster/member/add",
                &json!({"peerURLs": [peer_url], "isLearner": learner}),
            )
            .await?;
        Ok(as_u64(&v["member"]["ID"]))
    }

    /// Remove a member.
    pub async fn member_remove(&self, id: u64) -> Result<(), EtcdError> {
        self.call("/v3/cluster/member/remove", &json!({"ID": id.to_string()}))
            .await
            .map(|_| ())
    }

    /// Promote a learner.
    pub async fn member_promote(&self, id: u64) -> Result<(), EtcdError> {
        self.call("/v3/cluster/member/promote", &json!({"ID": id.to_string()}))
            .await
            .map(|_| ())
    }
}

/// Members of a member-list response.
pub fn members_of(v: &Value) -> Vec<Member> {
    v["members"]
        .as_array()
        .map(|a| a.iter().map(Member::from_json).collect())
        .unwrap_or_default()
}

/// How to start the etcd child.
#[derive(Clone, Debug)]
pub struct EtcdOpts {
    /// Member name.
    pub name: String,
    /// `server/db/etcd`.
    pub data_dir: PathBuf,
    /// The node address (peer and client URLs).
    pub node_ip: String,
    /// The host's loopback address (an extra client URL).
    pub localhost: String,
    /// `--initial-cluster` and `--initial-cluster-state` for a first start.
    pub initial: Option<(String, &'static str)>,
    /// Where etcd's own log goes.
    pub log_file: PathBuf,
    /// `--force-new-cluster`: start as the only member of the data dir's cluster (the cluster reset).
    pub force_new_cluster: bool,
}

impl EtcdOpts {
    /// This member's peer URL.
    pub fn peer_url(&self) -> String {
        format!("http://{}:2380", self.node_ip)
    }
    /// This member's client URL on the node address.
    pub fn client_url(&self) -> String {
        format!("http://{}:2379", self.node_ip)
    }
}

/// Start etcd as a child that dies with us.
pub fn spawn(opts: &EtcdOpts) -> std::io::Result<tokio::process::Child> {
    std::fs::create_dir_all(&opts.data_dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&opts.data_dir, std::fs::Permissions::from_mode(0o700))?;
    let mut listen = vec![opts.client_url()];
    let local = format!("http://{}:2379", opts.localhost);
    if !listen.contains(&local) {
        listen.push(local);
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&opts.log_file)?;
    let mut cmd = tokio::process::Command::new(etcd_bin());
    cmd.arg("--name")
        .arg(&opts.name)
        .arg("--data-dir")
        .arg(&opts.data_dir)
        .arg("--listen-client-urls")
        .arg(listen.join(","))
        .arg("--advertise-client-urls")
        .arg(opts.client_url())
        .arg("--listen-peer-urls")
        .arg(opts.peer_url())
        .arg("--initial-advertise-peer-urls")
        .arg(opts.peer_url())
        .arg("--heartbeat-interval")
        .arg("300")
        .arg("--election-timeout")
        .arg("3000")
        .arg("--listen-metrics-urls")
        .arg("")
        .env_remove("ETCD_NAME")
        // etcd speaks sd_notify itself; READY must come from k3s, not from its datastore.
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    if opts.force_new_cluster {
        cmd.arg("--force-new-cluster");
    }
    if let Some((cluster, state)) = &opts.initial {
        cmd.arg("--initial-cluster")
            .arg(cluster)
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--initial-cluster-token")
            .arg("k3s-sim");
    }
    // SAFETY: prctl is async-signal-safe; we only set the parent-death signal in the forked child.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn()
}

/// Wait until etcd answers `/health` with `"health":"true"` (a voting member with quorum).
pub async fn wait_healthy(client_url: &str, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if let Ok(r) = http::request("GET", &format!("{client_url}/health"), &[], None, None).await
        {
            if r.status == 200 && r.text().contains("true") {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    false
}

/// `server/db/etcd/name`: the member name k3s records for this node.
pub fn name_file(db: &Path) -> PathBuf {
    db.join("etcd").join("name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_byte() {
        assert_eq!(prefix_end(b"/registry/"), b"/registry0".to_vec());
        assert_eq!(prefix_end(&[0x61, 0xff]), vec![0x62]);
    }

    #[test]
    fn member_json_with_string_ids() {
        let v = json!({"members":[{"ID":"123","name":"a","peerURLs":["http://x:2380"],"isLearner":true}]});
        let m = members_of(&v);
        assert_eq!(m[0].id, 123);
        assert!(m[0].is_learner);
    }
}
