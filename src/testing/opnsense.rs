//! A small stateful stand-in for the HAProxy part of the OPNsense API, for the client's own unit tests of the flows
//! that span calls (cache, coalescing, revert on ALERT, lost replies). It keeps objects as flat string maps, answers
//! the whole model in the raw (search-row) shape the decoders also accept, and scripts faults per request. The
//! full-fidelity emulator (acceptance-tests/opnsense-emulator) is what the acceptance tests use.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::http::{Reply, Request, TestServer};

#[derive(Default)]
pub struct State {
    /// kind wrapper (`server`) → uuid → fields.
    pub objects: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    pub general: Map<String, Value>,
    pub reconfigures: u32,
    pub configtests: u32,
    /// The objects as of the last successful reconfigure.
    pub live: BTreeMap<String, BTreeMap<String, Map<String, Value>>>,
    /// Drop the reply of the next N `set*` calls after applying them (a lost reply).
    pub lose_next_set_replies: u32,
    /// Answer the next N requests with 503 before doing anything.
    pub fail_next: u32,
    /// The HA peer `core/hasync_status/start/haproxy` copies the HAProxy model to (it reconfigures nothing there).
    pub peer: Option<Arc<Mutex<State>>>,
    pub syncs: u32,
    /// An ALERT every configtest reports (a firewall whose haproxy rejects what the other accepts).
    pub alert: Option<String>,
}

pub struct Fake {
    pub server: TestServer,
    pub state: Arc<Mutex<State>>,
}

const KINDS: [(&str, &str, &str); 4] = [
    ("server", "Server", "servers"),
    ("healthcheck", "Healthcheck", "healthchecks"),
    ("backend", "Backend", "backends"),
    ("frontend", "Frontend", "frontends"),
];

fn referenced(st: &State, uuid: &str) -> Option<String> {
    for (kind, fields) in [
        ("backend", &["linkedServers", "healthCheck"][..]),
        ("frontend", &["defaultBackend"][..]),
    ] {
        for (u, o) in st.objects.get(kind).into_iter().flatten() {
            for f in fields {
                if o.get(*f)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .split(',')
                    .any(|x| x == uuid)
                {
                    return Some(format!("{kind} {u}"));
                }
            }
        }
    }
    None
}

/// `haproxy -c` stand-in: duplicate server names and binds containing `bad` are ALERTs.
fn configtest(st: &State) -> String {
    let mut alerts: Vec<String> = st.alert.iter().cloned().collect();
    let mut names = std::collections::BTreeSet::new();
    for o in st
        .objects
        .get("server")
        .into_iter()
        .flat_map(|m| m.values())
    {
        let n = o
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !names.insert(n.clone()) {
            alerts.push(format!(
                "[ALERT]    (1) : another server named '{n}' was already defined"
            ));
        }
    }
    for o in st
        .objects
        .get("frontend")
        .into_iter()
        .flat_map(|m| m.values())
    {
        if o.get("bind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .contains("bad")
        {
            alerts.push(
                "[ALERT]    (1) : parsing [/usr/local/etc/haproxy.conf.staging:12] : 'bind' : invalid address".into(),
            );
        }
    }
    if alerts.is_empty() {
        "Configuration file is valid\n\n".into()
    } else {
        alerts.push("[ALERT]    (1) : Fatal errors found in configuration.".into());
        alerts.join("\n") + "\n\n"
    }
}

fn handle(state: &Arc<Mutex<State>>, req: &Request) -> Reply {
    let mut st = state.lock().unwrap();
    if st.fail_next > 0 {
        st.fail_next -= 1;
        return Reply::json(503, json!({"errorMessage": "busy"}));
    }
    if req.method == "POST" && req.path == "/api/core/hasync_status/start/haproxy" {
        st.syncs += 1;
        let Some(peer) = st.peer.clone() else {
            return Reply::json(200, json!({"status": "failed"}));
        };
        let mut p = peer.lock().unwrap();
        p.objects = st.objects.clone();
        p.general = st.general.clone();
        return Reply::json(200, json!({"status": "ok"}));
    }
    let path = req.path.trim_start_matches("/api/haproxy/").to_string();
    let parts: Vec<&str> = path.split('/').collect();
    match (req.method.as_str(), parts.as_slice()) {
        ("GET", ["settings", "get"]) => {
            let mut model = Map::new();
            model.insert("general".into(), Value::Object(st.general.clone()));
            for (w, _, c) in KINDS {
                let items: Map<String, Value> = st
                    .objects
                    .get(w)
                    .into_iter()
                    .flatten()
                    .map(|(u, o)| (u.clone(), Value::Object(o.clone())))
                    .collect();
                let inner = if items.is_empty() {
                    json!([])
                } else {
                    Value::Object(items)
                };
                model.insert(c.into(), json!({ w: inner }));
            }
            Reply::json(200, json!({ "haproxy": model }))
        }
        ("POST", ["settings", "set"]) => {
            let body = req.json();
            if let Some(g) = body["haproxy"]["general"].as_object() {
                for (k, v) in g {
                    st.general.insert(k.clone(), v.clone());
                }
            }
            Reply::json(200, json!({"result": "saved"}))
        }
        ("POST", ["settings", action, uuid]) => {
            let Some((w, _, _)) = KINDS.iter().find(|(_, a, _)| action.ends_with(a)) else {
                return Reply::json(404, json!({"errorMessage": "Endpoint not found"}));
            };
            if action.starts_with("set") {
                let body = req.json();
                let Some(fields) = body[*w].as_object() else {
                    return Reply::json(200, json!({"result": "failed"}));
                };
                if fields
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .contains(' ')
                {
                    return Reply::json(
                        200,
                        json!({"result":"failed","validations":{format!("{w}.name"): "Should be a string between 1 and 255 characters."}}),
                    );
                }
                let item = st
                    .objects
                    .entry(w.to_string())
                    .or_default()
                    .entry(uuid.to_string())
                    .or_default();
                for (k, v) in fields {
                    item.insert(k.clone(), v.clone());
                }
                if st.lose_next_set_replies > 0 {
                    st.lose_next_set_replies -= 1;
                    return Reply::json(200, json!({})).lost();
                }
                Reply::json(200, json!({"result": "saved"}))
            } else if action.starts_with("del") {
                if let Some(by) = referenced(&st, uuid) {
                    return Reply::json(
                        500,
                        json!({"errorMessage": format!("{by}\n"), "errorTitle": format!("Item {w} in use by:"), "errorLevel": "error"}),
                    );
                }
                let gone = st
                    .objects
                    .entry(w.to_string())
                    .or_default()
                    .remove(*uuid)
                    .is_some();
                Reply::json(
                    200,
                    json!({"result": if gone { "deleted" } else { "not found" }}),
                )
            } else {
                Reply::json(404, json!({"errorMessage": "Endpoint not found"}))
            }
        }
        ("POST", ["service", "configtest"]) => {
            st.configtests += 1;
            Reply::json(200, json!({"result": configtest(&st)}))
        }
        ("POST", ["service", "reconfigure"]) => {
            st.reconfigures += 1;
            if !configtest(&st).contains("ALERT") {
                st.live = st.objects.clone();
            }
            Reply::json(200, json!({"status": "ok"}))
        }
        _ => Reply::json(404, json!({"errorMessage": "Endpoint not found"})),
    }
}

impl Fake {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        {
            let mut st = state.lock().unwrap();
            st.general = json!({"enabled": "0", "gracefulStop": "0", "seamlessReload": "0", "hardStopAfter": "60s",
                "stats": {"prometheus_enabled": "0", "prometheus_bind": "*:8404", "prometheus_path": "/metrics"}})
            .as_object()
            .unwrap()
            .clone();
        }
        let s2 = state.clone();
        let server = TestServer::start(move |req| handle(&s2, req)).await;
        Fake { server, state }
    }

    pub fn count(&self, kind: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .objects
            .get(kind)
            .map(|m| m.len())
            .unwrap_or(0)
    }
}
