//! The HTTP surface of a server on `:6443`: the k3s supervisor routes and a Kubernetes API subset.
//!
//! In k3s, `:6443` is the supervisor; it answers `/ping` and `/cacerts` without credentials, the `/v1-k3s/*` join
//! routes with the token, and proxies everything else to the apiserver, which has anonymous auth disabled (so
//! `/readyz` is 401 without credentials). The Kubernetes subset is what the provider and a user following the seed
//! run through the real `kubectl`: discovery, `get nodes` (server-side Table with roles, versions and Ready),
//! `get node -o yaml`, `cordon`, `drain` of an empty node, `delete node` (which removes a server's etcd member, as
//! k3s's member controller does) and the `k3s-serving` Secret. Objects live in the datastore as JSON under
//! `/registry/...`, so every server answers for the whole cluster.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use serde_json::{json, Value};

use crate::etcd::EtcdClient;
use crate::paths::Paths;
use crate::pki::{sha256_hex, CertKey};
use crate::store::Store;

/// Seconds after which a node without heartbeat is NotReady.
pub const NODE_GRACE_SECS: i64 = 40;
/// Seconds after which a server without heartbeat leaves the `kubernetes` endpoints.
pub const ENDPOINT_GRACE_SECS: i64 = 15;

/// What one server shares with its handlers.
pub struct Cluster {
    /// Host paths.
    pub paths: Paths,
    /// The datastore.
    pub store: Store,
    /// Server CA.
    pub server_ca: CertKey,
    /// Client CA.
    pub client_ca: CertKey,
    /// Server token password.
    pub token_pw: String,
    /// Agent token password (= server token unless `agent-token` is set).
    pub agent_token_pw: String,
    /// etcd client when the datastore is etcd.
    pub etcd: Option<EtcdClient>,
    /// The supervisor port.
    pub https_port: u16,
    /// This server's critical settings, handed to joiners for comparison.
    pub critical: std::collections::BTreeMap<String, String>,
}

/// The TLS peer of a request, inserted per connection.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Verified client certificate subject (CN, O…).
    pub cert: Option<(String, Vec<String>)>,
    /// Remote address.
    pub remote: SocketAddr,
}

type S = State<Arc<Cluster>>;

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn unauthorized() -> Response {
    status(401, "Unauthorized", "Unauthorized")
}

fn not_found(kind: &str, name: &str) -> Response {
    status(404, "NotFound", &format!("{kind} \"{name}\" not found"))
}

fn json_ok(v: Value) -> Response {
    ([("content-type", "application/json")], v.to_string()).into_response()
}

fn internal(e: impl std::fmt::Display) -> Response {
    status(
        500,
        "InternalError",
        &format!("Internal error occurred: {e}"),
    )
}

/// Where the stand-in keeps the cluster's current server token (its SHA-256) once it has been rotated. In k3s the
/// bootstrap data in the datastore is encrypted with the token, so a rotation re-encrypts it and every server must
/// then start with the new token; the stand-in serves its bootstrap data in the clear (see the crate docs), so it
/// records the token's hash in the datastore instead, with the same effect on which token a server may start with.
pub const BOOTSTRAP_TOKEN_KEY: &str = "/k3s-sim/bootstrap/token-sha256";

/// `PUT /v1-k3s/token` `{"token": "<new>"}` with basic auth `server:<current password>`: what `k3s token rotate`
/// sends. The new token goes into the datastore (for every server) and this server's token file; this server
/// keeps serving with the old one until it is restarted, as k3s says to restart every server afterwards
/// (inferred: the running supervisor keeps the credentials it started with).
async fn token_rotate(State(c): S, h: HeaderMap, body: Bytes) -> Response {
    match basic_auth(&h) {
        Some((u, p)) if u == "server" && p == c.token_pw => {}
        _ => return unauthorized(),
    }
    let Some(new) = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_string))
    else {
        return status(
            400,
            "BadRequest",
            "token rotate: no new token in the request",
        );
    };
    let pw = crate::pki::parse_token(&new).password;
    if pw.is_empty() {
        return status(400, "BadRequest", "token rotate: the new token is empty");
    }
    if let Err(e) = c
        .store
        .put(
            BOOTSTRAP_TOKEN_KEY,
            crate::pki::sha256_hex(pw.as_bytes()).as_bytes(),
        )
        .await
    {
        return internal(e);
    }
    let file = c.paths.server().join("token");
    let line = format!("{}\n", crate::pki::secure_token(&c.server_ca.cert, &pw));
    if let Err(e) = crate::paths::write_file(&file, line.as_bytes(), 0o600) {
        return internal(e);
    }
    crate::info!("Server token rotated; restart k3s on every server with the new token");
    json_ok(json!({}))
}

/// Basic-auth credentials `(user, password)`.
fn basic_auth(h: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let v = h.get("authorization")?.to_str().ok()?;
    let b = base64::engine::general_purpose::STANDARD
        .decode(v.strip_prefix("Basic ")?)
        .ok()?;
    let s = String::from_utf8(b).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Kubernetes API access: a client certificate signed by the cluster client CA.
#[allow(clippy::result_large_err)]
fn kube_auth(peer: &Peer) -> Result<(), Response> {
    match &peer.cert {
        Some(_) => Ok(()),
        None => Err(unauthorized()),
    }
}

/// The router of one server.
pub fn router(c: Arc<Cluster>) -> Router {
    Router::new()
        .route("/ping", get(|| async { "pong" }))
        .route("/cacerts", get(cacerts))
        .route("/db/info", get(db_info))
        .route("/v1-k3s/server-bootstrap", get(server_bootstrap))
        .route("/v1-k3s/client-kubelet.crt", get(client_kubelet))
        .route("/v1-k3s/token", axum::routing::put(token_rotate))
        .route("/v1-k3s/readyz", get(readyz))
        .route("/v1-k3s/sim/heartbeat", axum::routing::post(heartbeat))
        .route("/readyz", get(readyz))
        .route("/livez", get(readyz))
        .route("/healthz", get(readyz))
        .route("/version", get(version))
        .route("/api", get(api_versions))
        .route("/apis", get(api_groups))
        .route("/api/v1", get(api_resources))
        .route("/api/v1/nodes", get(list_nodes))
        .route(
            "/api/v1/nodes/{name}",
            get(get_node).patch(patch_node).delete(delete_node),
        )
        .route("/api/v1/pods", get(list_pods))
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
        .route("/api/v1/secrets", get(list_all_secrets))
        .route(
            "/api/v1/namespaces/{ns}/secrets",
            get(list_secrets).post(create_secret),
        )
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(get_secret).delete(delete_secret),
        )
        .route(
            "/api/v1/namespaces/{ns}/endpoints/{name}",
            get(get_endpoints),
        )
        .route("/api/v1/namespaces/{ns}", get(get_namespace))
        .fallback(fallback)
        .with_state(c)
}

async fn fallback(Extension(peer): Extension<Peer>) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    status(
        404,
        "NotFound",
        "the server could not find the requested resource",
    )
}

async fn cacerts(State(c): S) -> Response {
    c.server_ca.cert.clone().into_response()
}

async fn readyz(Extension(peer): Extension<Peer>, h: HeaderMap, State(c): S) -> Response {
    let token_ok = basic_auth(&h)
        .map(|(_, p)| p == c.token_pw || p == c.agent_token_pw)
        .unwrap_or(false);
    if peer.cert.is_none() && !token_ok {
        return unauthorized();
    }
    "ok".into_response()
}

async fn db_info(Extension(peer): Extension<Peer>, h: HeaderMap, State(c): S) -> Response {
    let local = peer.remote.ip().is_loopback() || peer.remote.ip().to_string() == c.paths.localhost;
    let server_token = basic_auth(&h)
        .map(|(_, p)| p == c.token_pw)
        .unwrap_or(false);
    if !local && !server_token && peer.cert.is_none() {
        return unauthorized();
    }
    match &c.etcd {
        None => status(400, "BadRequest", "etcd datastore disabled"),
        Some(e) => match e.member_list_raw().await {
            Ok(v) => json_ok(v),
            Err(err) => internal(err),
        },
    }
}

/// The bootstrap data a joining server downloads: the shared CAs (k3s encrypts them with the token; we only
/// serve them to a caller presenting the server token over TLS).
async fn server_bootstrap(h: HeaderMap, State(c): S) -> Response {
    match basic_auth(&h) {
        Some((u, p)) if u == "server" && p == c.token_pw => json_ok(json!({
            "serverCA": c.server_ca, "clientCA": c.client_ca,
            "etcd": c.etcd.is_some(), "critical": c.critical,
        })),
        _ => unauthorized(),
    }
}

/// Node secret key for a node's password hash.
fn node_password_key(name: &str) -> String {
    format!("/registry/secrets/kube-system/{name}.node-password.k3s")
}

/// Verify (or record) a node's password as k3s does with `<node>.node-password.k3s`.
pub async fn check_node_password(
    store: &Store,
    name: &str,
    password: &str,
) -> Result<bool, crate::store::StoreError> {
    let key = node_password_key(name);
    let hash = sha256_hex(password.as_bytes());
    match store.get_json(&key).await? {
        Some(s) => Ok(s["data"]["hash"].as_str() == Some(&b64(&hash))),
        None => {
            let secret = json!({
                "kind": "Secret", "apiVersion": "v1",
                "metadata": {"name": format!("{name}.node-password.k3s"), "namespace": "kube-system",
                              "creationTimestamp": crate::log::now_rfc3339()},
                "type": "k3s.cattle.io/node-password",
                "immutable": true,
                "data": {"hash": b64(&hash)},
            });
            store.put_json(&key, &secret).await?;
            Ok(true)
        }
    }
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// An agent's kubelet client certificate, after token and node-password checks.
async fn client_kubelet(h: HeaderMap, State(c): S) -> Response {
    let Some((_, pw)) = basic_auth(&h) else {
        return unauthorized();
    };
    if pw != c.token_pw && pw != c.agent_token_pw {
        return unauthorized();
    }
    let name = h
        .get("k3s-node-name")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let npw = h
        .get("k3s-node-password")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if name.is_empty() || npw.is_empty() {
        return status(400, "BadRequest", "missing node name or password");
    }
    match check_node_password(&c.store, name, npw).await {
        Ok(true) => {}
        Ok(false) => {
            return status(
                403,
                "Forbidden",
                &format!("Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag ({name})"),
            )
        }
        Err(e) => return internal(e),
    }
    match c
        .client_ca
        .issue_client(&format!("system:node:{name}"), &["system:nodes"])
    {
        Ok(ck) => json_ok(json!({"cert": ck.cert, "key": ck.key})),
        Err(e) => internal(e),
    }
}

async fn version(Extension(peer): Extension<Peer>) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    let v = crate::VERSION;
    let minor = v
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .unwrap_or("31")
        .to_string();
    json_ok(json!({
        "major": "1", "minor": minor, "gitVersion": v, "gitCommit": "k3s-sim",
        "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64",
    }))
}

async fn api_versions(Extension(peer): Extension<Peer>) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    json_ok(json!({"kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}))
}

async fn api_groups(Extension(peer): Extension<Peer>) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    json_ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
}

async fn api_resources(Extension(peer): Extension<Peer>) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    let res = |name: &str, kind: &str, ns: bool, short: &[&str], verbs: &[&str]| {
        json!({"name": name, "singularName": kind.to_lowercase(), "namespaced": ns, "kind": kind,
               "verbs": verbs, "shortNames": short})
    };
    let rw = ["delete", "get", "list", "patch"];
    let secret_verbs = ["create", "delete", "get", "list"];
    json_ok(
        json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": [
            res("nodes", "Node", false, &["no"], &rw),
            res("nodes/status", "Node", false, &[], &["get", "patch"]),
            res("pods", "Pod", true, &["po"], &["get", "list"]),
            res("pods/eviction", "Eviction", true, &[], &["create"]),
            res("secrets", "Secret", true, &[], &secret_verbs),
            res("endpoints", "Endpoints", true, &["ep"], &["get", "list"]),
            res("namespaces", "Namespace", false, &["ns"], &["get", "list"]),
        ]}),
    )
}

fn wants_table(h: &HeaderMap) -> bool {
    h.get("accept")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.contains("as=Table"))
        .unwrap_or(false)
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

fn age_secs(ts: &str) -> i64 {
    parse_time(ts)
        .map(|t| (time::OffsetDateTime::now_utc() - t).whole_seconds())
        .unwrap_or(0)
}

/// Kubernetes' short human duration (`5s`, `3m12s`, `4h`, `2d3h`, `296d`).
pub fn human_age(secs: i64) -> String {
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if d < 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else {
        format!("{}y", d / 365)
    }
}

/// A node as served: Ready computed from the heartbeat age.
pub fn present_node(mut n: Value) -> Value {
    let hb = n["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["lastHeartbeatTime"].as_str())
        .map(age_secs)
        .unwrap_or(i64::MAX);
    if hb > NODE_GRACE_SECS {
        if let Some(conds) = n["status"]["conditions"].as_array_mut() {
            for c in conds.iter_mut().filter(|c| c["type"] == "Ready") {
                c["status"] = json!("Unknown");
                c["reason"] = json!("NodeStatusUnknown");
                c["message"] = json!("Kubelet stopped posting node status.");
            }
        }
    }
    n
}

/// `control-plane,etcd,master` from the `node-role.kubernetes.io/*` labels.
pub fn roles(n: &Value) -> String {
    let mut r: Vec<String> = n["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.keys()
                .filter_map(|k| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    r.sort();
    if r.is_empty() {
        "<none>".into()
    } else {
        r.join(",")
    }
}

fn node_status_cell(n: &Value) -> String {
    let ready = n["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
        .map(|c| c["status"] == "True")
        .unwrap_or(false);
    let mut s = if ready { "Ready" } else { "NotReady" }.to_string();
    if n["spec"]["unschedulable"].as_bool() == Some(true) {
        s.push_str(",SchedulingDisabled");
    }
    s
}

fn addr(n: &Value, t: &str) -> String {
    n["status"]["addresses"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["type"] == t))
        .and_then(|x| x["address"].as_str())
        .unwrap_or("<none>")
        .to_string()
}

fn col(name: &str, prio: u8) -> Value {
    json!({"name": name, "type": "string", "format": if name == "Name" {"name"} else {""}, "description": name, "priority": prio})
}

fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]})
}

fn node_table(nodes: &[Value]) -> Value {
    let rows: Vec<Value> = nodes
        .iter()
        .map(|n| {
            let info = &n["status"]["nodeInfo"];
            json!({"cells": [
                n["metadata"]["name"], node_status_cell(n), roles(n),
                human_age(age_secs(n["metadata"]["creationTimestamp"].as_str().unwrap_or(""))),
                info["kubeletVersion"], addr(n, "InternalIP"), addr(n, "ExternalIP"),
                info["osImage"], info["kernelVersion"], info["containerRuntimeVersion"],
            ], "object": partial(n)})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1"},
        "columnDefinitions": [col("Name", 0), col("Status", 0), col("Roles", 0), col("Age", 0), col("Version", 0),
            col("Internal-IP", 1), col("External-IP", 1), col("OS-Image", 1), col("Kernel-Version", 1),
            col("Container-Runtime", 1)],
        "rows": rows})
}

fn secret_table(items: &[Value]) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|s| {
            let n = s["data"].as_object().map(|m| m.len()).unwrap_or(0);
            json!({"cells": [s["metadata"]["name"], s["type"], n,
                human_age(age_secs(s["metadata"]["creationTimestamp"].as_str().unwrap_or("")))],
                "object": partial(s)})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1"},
        "columnDefinitions": [col("Name", 0), col("Type", 0), col("Data", 0), col("Age", 0)], "rows": rows})
}

/// Apply `fieldSelector=metadata.name=X` (kubectl delete/wait use it) and `labelSelector=k=v,k`.
fn select(items: Vec<Value>, q: &std::collections::HashMap<String, String>) -> Vec<Value> {
    let mut items = items;
    if let Some(fs) = q.get("fieldSelector") {
        for term in fs.split(',') {
            if let Some(name) = term.strip_prefix("metadata.name=") {
                items.retain(|i| i["metadata"]["name"] == name);
            }
        }
    }
    if let Some(ls) = q.get("labelSelector") {
        for term in ls.split(',').filter(|t| !t.is_empty()) {
            let (k, v) = match term.split_once('=') {
                Some((k, v)) => (k.trim_end_matches('='), Some(v)),
                None => (term, None),
            };
            items.retain(|i| match (&i["metadata"]["labels"][k], v) {
                (Value::String(s), Some(v)) => s == v,
                (Value::String(_), None) => true,
                _ => false,
            });
        }
    }
    items
}

#[allow(clippy::result_large_err)]
async fn all_nodes(c: &Cluster) -> Result<Vec<Value>, Response> {
    let v: Vec<Value> = load_nodes(&c.store)
        .await
        .map_err(internal)?
        .into_iter()
        .map(present_node)
        .collect();
    Ok(v)
}

async fn list_nodes(
    Extension(peer): Extension<Peer>,
    h: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
    State(c): S,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    if q.get("watch")
        .map(|w| w == "true" || w == "1")
        .unwrap_or(false)
    {
        return watch_nothing().await;
    }
    let nodes = match all_nodes(&c).await {
        Ok(n) => select(n, &q),
        Err(r) => return r,
    };
    if wants_table(&h) {
        return json_ok(node_table(&nodes));
    }
    json_ok(
        json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": nodes}),
    )
}

/// A watch that reports nothing (kubectl's `delete --wait` falls back to it after an empty list).
async fn watch_nothing() -> Response {
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    ([("content-type", "application/json")], "").into_response()
}

fn node_key(name: &str) -> String {
    format!("/registry/minions/{name}")
}

async fn get_node(
    Extension(peer): Extension<Peer>,
    h: HeaderMap,
    Path(name): Path<String>,
    State(c): S,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    match load_node(&c.store, &name).await {
        Ok(Some(n)) => {
            let n = present_node(n);
            if wants_table(&h) {
                json_ok(node_table(&[n]))
            } else {
                json_ok(n)
            }
        }
        Ok(None) => not_found("nodes", &name),
        Err(e) => internal(e),
    }
}

/// NodeRestriction for a kubelet (`system:node:<name>`): it may change only its own Node, not its taints, and
/// only labels it may set (Kubernetes' admission plugin, as documented; messages worded like the plugin's).
#[allow(clippy::result_large_err)]
fn node_restriction(
    peer: &Peer,
    name: &str,
    before: &Value,
    after: &Value,
) -> Result<(), Response> {
    let Some(node) = peer
        .cert
        .as_ref()
        .and_then(|(cn, _)| cn.strip_prefix("system:node:"))
    else {
        return Ok(());
    };
    let forbidden = |why: String| {
        Err(status(
            403,
            "Forbidden",
            &format!("nodes \"{name}\" is forbidden: {why}"),
        ))
    };
    if node != name {
        return forbidden(format!(
            "node \"{node}\" is not allowed to modify node \"{name}\""
        ));
    }
    let taints = |n: &Value| n["spec"]["taints"].as_array().cloned().unwrap_or_default();
    if taints(before) != taints(after) {
        return forbidden(format!("node \"{node}\" is not allowed to modify taints"));
    }
    let labels = |n: &Value| {
        n["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let (old, new) = (labels(before), labels(after));
    let mut changed: Vec<&String> = old
        .keys()
        .chain(new.keys())
        .filter(|k| old.get(*k) != new.get(*k))
        .filter(|k| !kubelet_may_set(k))
        .collect();
    changed.dedup();
    if !changed.is_empty() {
        let list: Vec<&str> = changed.iter().map(|k| k.as_str()).collect();
        return forbidden(format!(
            "is not allowed to modify labels: {}",
            list.join(", ")
        ));
    }
    Ok(())
}

/// JSON merge patch (RFC 7386); also used for strategic merge patches, which for the fields kubectl cordon
/// and label touch (scalars and maps) are the same thing.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

async fn patch_node(
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
    State(c): S,
    body: Bytes,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    let Ok(patch) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "invalid patch");
    };
    let key = node_key(&name);
    let mut node = match c.store.get_json(&key).await {
        Ok(Some(n)) => n,
        Ok(None) => return not_found("nodes", &name),
        Err(e) => return internal(e),
    };
    let before = node.clone();
    if let Value::Array(ops) = &patch {
        // JSON patch: support add/replace/remove of simple paths.
        for op in ops {
            let path: Vec<String> = op["path"]
                .as_str()
                .unwrap_or("")
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect();
            let mut p = json!({});
            let mut cur = &mut p;
            for (i, seg) in path.iter().enumerate() {
                if i + 1 == path.len() {
                    cur[seg] = if op["op"] == "remove" {
                        Value::Null
                    } else {
                        op["value"].clone()
                    };
                } else {
                    cur[seg] = json!({});
                    cur = &mut cur[seg];
                }
            }
            merge_patch(&mut node, &p);
        }
    } else {
        merge_patch(&mut node, &patch);
    }
    if let Some(o) = node.as_object_mut() {
        o.remove("status");
    }
    if let Err(r) = node_restriction(&peer, &name, &before, &node) {
        return r;
    }
    if node["metadata"]["annotations"]["etcd.k3s.cattle.io/remove"] == "true" {
        if let Err(e) = remove_etcd_member(&c, &node).await {
            return internal(e);
        }
        let name_ann = node["metadata"]["annotations"]["etcd.k3s.cattle.io/node-name"].clone();
        node["metadata"]["annotations"]["etcd.k3s.cattle.io/removed-node-name"] = name_ann;
    }
    if let Err(e) = c.store.put_json(&key, &node).await {
        return internal(e);
    }
    match load_node(&c.store, &name).await {
        Ok(Some(n)) => json_ok(present_node(n)),
        Ok(None) => not_found("nodes", &name),
        Err(e) => internal(e),
    }
}

/// Delete a Node; for a server with an etcd member, remove the member first (k3s's member controller), and
/// drop the node-password Secret.
async fn delete_node(
    Extension(peer): Extension<Peer>,
    Path(name): Path<String>,
    State(c): S,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    let key = node_key(&name);
    let node = match c.store.get_json(&key).await {
        Ok(Some(n)) => n,
        Ok(None) => return not_found("nodes", &name),
        Err(e) => return internal(e),
    };
    if let Err(e) = remove_etcd_member(&c, &node).await {
        return internal(e);
    }
    let _ = c.store.delete(&node_password_key(&name)).await;
    let _ = c.store.delete(&node_status_key(&name)).await;
    if let Err(e) = c.store.delete(&key).await {
        return internal(e);
    }
    json_ok(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": name, "kind": "nodes", "uid": node["metadata"]["uid"]}}),
    )
}

/// Remove the etcd member a server Node carries in its annotations (what k3s's member controller does on Node
/// deletion or on the `etcd.k3s.cattle.io/remove=true` annotation). No member, no etcd: nothing to do.
async fn remove_etcd_member(c: &Cluster, node: &Value) -> Result<(), String> {
    let ann = &node["metadata"]["annotations"];
    let (Some(etcd), Some(member)) = (&c.etcd, ann["etcd.k3s.cattle.io/node-name"].as_str()) else {
        return Ok(());
    };
    let members = etcd.member_list().await.map_err(|e| e.to_string())?;
    if let Some(m) = members.iter().find(|m| m.name == member) {
        crate::info!(
            "Removing name={} id={} address={} from etcd",
            m.name,
            m.id,
            ann["etcd.k3s.cattle.io/node-address"]
                .as_str()
                .unwrap_or("")
        );
        etcd.member_remove(m.id)
            .await
            .map_err(|e| format!("failed to remove etcd member {member}: {e}"))?;
    }
    Ok(())
}

async fn list_pods(
    Extension(peer): Extension<Peer>,
    h: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    if q.contains_key("watch") {
        return watch_nothing().await;
    }
    if wants_table(&h) {
        return json_ok(
            json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": "1"},
            "columnDefinitions": [col("Name", 0), col("Ready", 0), col("Status", 0), col("Restarts", 0), col("Age", 0)],
            "rows": []}),
        );
    }
    json_ok(
        json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []}),
    )
}

#[allow(clippy::result_large_err)]
async fn secrets_under(c: &Cluster, prefix: &str) -> Result<Vec<Value>, Response> {
    c.store.list_json(prefix).await.map_err(internal)
}

async fn list_all_secrets(
    Extension(peer): Extension<Peer>,
    h: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
    State(c): S,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    match secrets_under(&c, "/registry/secrets/").await {
        Ok(items) => secret_list(select(items, &q), &h),
        Err(r) => r,
    }
}

async fn list_secrets(
    Extension(peer): Extension<Peer>,
    h: HeaderMap,
    Path(ns): Path<String>,
    Query(q): Query<std::collections::HashMap<String, String>>,
    State(c): S,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    if q.contains_key("watch") {
        return watch_nothing().await;
    }
    match secrets_under(&c, &format!("/registry/secrets/{ns}/")).await {
        Ok(items) => secret_list(select(items, &q), &h),
        Err(r) => r,
    }
}

fn secret_list(items: Vec<Value>, h: &HeaderMap) -> Response {
    if wants_table(h) {
        return json_ok(secret_table(&items));
    }
    json_ok(
        json!({"kind": "SecretList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

async fn get_secret(
    Extension(peer): Extension<Peer>,
    h: HeaderMap,
    Path((ns, name)): Path<(String, String)>,
    State(c): S,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    match c
        .store
        .get_json(&format!("/registry/secrets/{ns}/{name}"))
        .await
    {
        Ok(Some(s)) if wants_table(&h) => json_ok(secret_table(&[s])),
        Ok(Some(s)) => json_ok(s),
        Ok(None) => not_found("secrets", &name),
        Err(e) => internal(e),
    }
}

/// `POST /api/v1/namespaces/{ns}/secrets` (`kubectl create secret`): stored as given, with the metadata the
/// API server adds; 409 when the name is taken. Lets tests put an object of their own into the datastore (e.g.
/// to see it come back with an etcd restore).
async fn create_secret(
    Extension(peer): Extension<Peer>,
    Path(ns): Path<String>,
    State(c): S,
    body: Bytes,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    let Ok(mut secret) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "invalid Secret");
    };
    let Some(name) = secret["metadata"]["name"].as_str().map(str::to_string) else {
        return status(
            422,
            "Invalid",
            "Secret \"\" is invalid: metadata.name: Required value",
        );
    };
    let key = format!("/registry/secrets/{ns}/{name}");
    match c.store.get(&key).await {
        Ok(Some(_)) => {
            return status(
                409,
                "AlreadyExists",
                &format!("secrets \"{name}\" already exists"),
            )
        }
        Ok(None) => {}
        Err(e) => return internal(e),
    }
    let meta = &mut secret["metadata"];
    meta["namespace"] = json!(ns);
    meta["uid"] = json!(crate::pki::random_hex(16));
    meta["resourceVersion"] = json!("1");
    meta["creationTimestamp"] = json!(crate::log::now_rfc3339());
    secret["kind"] = json!("Secret");
    secret["apiVersion"] = json!("v1");
    if secret.get("type").is_none() {
        secret["type"] = json!("Opaque");
    }
    match c.store.put_json(&key, &secret).await {
        Ok(()) => (
            axum::http::StatusCode::CREATED,
            [("content-type", "application/json")],
            secret.to_string(),
        )
            .into_response(),
        Err(e) => internal(e),
    }
}

async fn delete_secret(
    Extension(peer): Extension<Peer>,
    Path((ns, name)): Path<(String, String)>,
    State(c): S,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    match c
        .store
        .delete(&format!("/registry/secrets/{ns}/{name}"))
        .await
    {
        Ok(true) => json_ok(
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "kind": "secrets"}}),
        ),
        Ok(false) => not_found("secrets", &name),
        Err(e) => internal(e),
    }
}

/// Addresses (`ip:port`) of servers whose heartbeat is fresh: the `default/kubernetes` endpoints.
pub async fn server_endpoints(c: &Cluster) -> Result<Vec<String>, crate::store::StoreError> {
    let nodes = load_nodes(&c.store).await?;
    let mut out = vec![];
    for n in nodes {
        if n["metadata"]["labels"]["node-role.kubernetes.io/control-plane"] != "true" {
            continue;
        }
        let hb = n["status"]["conditions"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["lastHeartbeatTime"].as_str())
            .map(age_secs)
            .unwrap_or(i64::MAX);
        if hb > ENDPOINT_GRACE_SECS {
            continue;
        }
        let ip = addr(&n, "InternalIP");
        let port = n["metadata"]["annotations"]["k3s-sim/https-port"]
            .as_str()
            .unwrap_or("6443")
            .to_string();
        out.push(format!("{ip}:{port}"));
    }
    out.sort();
    Ok(out)
}

async fn get_endpoints(
    Extension(peer): Extension<Peer>,
    Path((ns, name)): Path<(String, String)>,
    State(c): S,
) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    if ns != "default" || name != "kubernetes" {
        return not_found("endpoints", &name);
    }
    match server_endpoints(&c).await {
        Ok(eps) => {
            let addrs: Vec<Value> = eps
                .iter()
                .filter_map(|e| e.rsplit_once(':'))
                .map(|(ip, _)| json!({"ip": ip}))
                .collect();
            let port = eps
                .first()
                .and_then(|e| e.rsplit_once(':'))
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .unwrap_or(c.https_port);
            json_ok(json!({"kind": "Endpoints", "apiVersion": "v1",
                "metadata": {"name": "kubernetes", "namespace": "default"},
                "subsets": [{"addresses": addrs, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]}))
        }
        Err(e) => internal(e),
    }
}

async fn get_namespace(Extension(peer): Extension<Peer>, Path(ns): Path<String>) -> Response {
    if let Err(r) = kube_auth(&peer) {
        return r;
    }
    if !["default", "kube-system", "kube-public", "kube-node-lease"].contains(&ns.as_str()) {
        return not_found("namespaces", &ns);
    }
    json_ok(
        json!({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": ns},
        "status": {"phase": "Active"}}),
    )
}

/// A node's self-registration / heartbeat: upsert the Node object (spec fields such as `unschedulable`
/// and user labels set through the API are kept; status is replaced).
async fn heartbeat(Extension(peer): Extension<Peer>, State(c): S, body: Bytes) -> Response {
    let Some((cn, _)) = &peer.cert else {
        return unauthorized();
    };
    let Ok(node) = serde_json::from_slice::<Value>(&body) else {
        return status(400, "BadRequest", "invalid node");
    };
    let name = node["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if cn != &format!("system:node:{name}") && cn != "system:admin" {
        return status(403, "Forbidden", "node may only update itself");
    }
    match upsert_node(&c.store, node).await {
        Ok(v) => json_ok(v),
        Err(e) => internal(e),
    }
}

fn node_status_key(name: &str) -> String {
    format!("/registry/minions-status/{name}")
}

/// A Node with its status, which lives under its own key: heartbeats write only the status key, so they never
/// race with a `kubectl cordon`/`label` that rewrites the object on another server.
pub async fn load_node(
    store: &Store,
    name: &str,
) -> Result<Option<Value>, crate::store::StoreError> {
    let Some(mut n) = store.get_json(&node_key(name)).await? else {
        return Ok(None);
    };
    if let Some(st) = store.get_json(&node_status_key(name)).await? {
        n["status"] = st;
    }
    Ok(Some(n))
}

/// All Nodes with their status, sorted by name.
pub async fn load_nodes(store: &Store) -> Result<Vec<Value>, crate::store::StoreError> {
    let mut statuses: std::collections::HashMap<String, Value> = store
        .list("/registry/minions-status/")
        .await?
        .into_iter()
        .filter_map(|(k, v)| {
            let name = k.rsplit('/').next()?.to_string();
            Some((name, serde_json::from_slice(&v).ok()?))
        })
        .collect();
    let mut nodes = store.list_json("/registry/minions/").await?;
    for n in nodes.iter_mut() {
        let name = n["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(st) = statuses.remove(&name) {
            n["status"] = st;
        }
    }
    nodes.sort_by(|a, b| {
        a["metadata"]["name"]
            .as_str()
            .cmp(&b["metadata"]["name"].as_str())
    });
    Ok(nodes)
}

/// A label the kubelet or k3s keeps up to date on every start (inferred: the kubelet reconciles its default
/// labels, k3s its role labels; both live in the kubernetes.io/k8s.io namespaces).
fn system_label(key: &str) -> bool {
    key.split_once('/').is_some_and(|(domain, _)| {
        ["kubernetes.io", "k8s.io"]
            .iter()
            .any(|ns| domain == *ns || domain.ends_with(&format!(".{ns}")))
    })
}

/// Create a Node, or refresh one: its status always; its annotations when the node brings new ones; of its
/// labels only those in the `kubernetes.io`/`k8s.io` namespaces (the kubelet's own and k3s's, reconciled on
/// start). `--node-label`s and `--node-taint`s count only when the Node is created: k3s's docs say they are added
/// at registration and changed afterwards with kubectl. Spec, creation time and uid are kept.
pub async fn upsert_node(
    store: &Store,
    mut node: Value,
) -> Result<Value, crate::store::StoreError> {
    let name = node["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let key = node_key(&name);
    let status = node
        .as_object_mut()
        .and_then(|o| o.remove("status"))
        .unwrap_or(Value::Null);
    let mut obj = match store.get_json(&key).await? {
        Some(mut old) => {
            let before = old.clone();
            if let Some(labels) = node["metadata"]["labels"].as_object_mut() {
                labels.retain(|k, _| system_label(k));
            }
            for field in ["labels", "annotations"] {
                if !node["metadata"][field].is_object() {
                    continue;
                }
                let mut merged = old["metadata"][field].clone();
                merge_patch(&mut merged, &node["metadata"][field]);
                old["metadata"][field] = merged;
            }
            if old != before {
                store.put_json(&key, &old).await?;
            }
            old
        }
        None => {
            node["metadata"]["creationTimestamp"] = json!(crate::log::now_rfc3339());
            node["metadata"]["uid"] = json!(crate::pki::random_hex(16));
            store.put_json(&key, &node).await?;
            crate::info!("Registered node {name}");
            node
        }
    };
    store.put_json(&node_status_key(&name), &status).await?;
    obj["status"] = status;
    Ok(obj)
}

/// The kubelet's rule for `--node-labels` (and NodeRestriction's for a kubelet labelling its own Node): keys
/// in the `kubernetes.io`/`k8s.io` namespaces only under `kubelet.kubernetes.io`/`node.kubernetes.io` or from a
/// fixed well-known set. Written from Kubernetes' documentation of NodeRestriction and the kubelet's flag.
pub fn kubelet_may_set(key: &str) -> bool {
    const WELL_KNOWN: &[&str] = &[
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    ];
    if WELL_KNOWN.contains(&key) {
        return true;
    }
    let Some((domain, _)) = key.split_once('/') else {
        return true;
    };
    let within = |ns: &str| domain == ns || domain.ends_with(&format!(".{ns}"));
    if within("node-restriction.kubernetes.io") {
        return false;
    }
    if within("kubelet.kubernetes.io") || within("node.kubernetes.io") {
        return true;
    }
    !(within("kubernetes.io") || within("k8s.io"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_roles() {
        assert_eq!(human_age(5), "5s");
        assert_eq!(human_age(192), "3m12s");
        assert_eq!(human_age(3600 * 40), "40h");
        assert_eq!(human_age(86400 * 296), "296d");
        let n = json!({"metadata": {"labels": {"node-role.kubernetes.io/master": "true",
            "node-role.kubernetes.io/control-plane": "true", "node-role.kubernetes.io/etcd": "true"}}});
        assert_eq!(roles(&n), "control-plane,etcd,master");
        assert_eq!(roles(&json!({"metadata": {}})), "<none>");
    }

    #[tokio::test]
    async fn heartbeats_touch_only_the_status_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::File(crate::store::FileStore::open(dir.path().join("s.db")).unwrap());
        let node = json!({"metadata": {"name": "w1", "labels": {"a": "1"}}, "spec": {},
            "status": {"conditions": [{"type": "Ready", "lastHeartbeatTime": "t1"}]}});
        upsert_node(&store, node.clone()).await.unwrap();
        // kubectl cordon on another server rewrites the object...
        let mut obj = store
            .get_json("/registry/minions/w1")
            .await
            .unwrap()
            .unwrap();
        obj["spec"]["unschedulable"] = json!(true);
        store.put_json("/registry/minions/w1", &obj).await.unwrap();
        let before = store.get("/registry/minions/w1").await.unwrap();
        // ...and a heartbeat computed from older data must not undo it.
        let mut hb = node.clone();
        hb["status"]["conditions"][0]["lastHeartbeatTime"] = json!("t2");
        upsert_node(&store, hb).await.unwrap();
        assert_eq!(store.get("/registry/minions/w1").await.unwrap(), before);
        let n = load_node(&store, "w1").await.unwrap().unwrap();
        assert_eq!(n["spec"]["unschedulable"], json!(true));
        assert_eq!(
            n["status"]["conditions"][0]["lastHeartbeatTime"],
            json!("t2")
        );
        assert_eq!(load_nodes(&store).await.unwrap().len(), 1);
    }

    #[test]
    fn merge_patch_sets_and_removes() {
        let mut n = json!({"spec": {"podCIDR": "x"}, "metadata": {"labels": {"a": "1"}}});
        merge_patch(
            &mut n,
            &json!({"spec": {"unschedulable": true}, "metadata": {"labels": {"a": null}}}),
        );
        assert_eq!(
            n,
            json!({"spec": {"podCIDR": "x", "unschedulable": true}, "metadata": {"labels": {}}})
        );
    }
}
