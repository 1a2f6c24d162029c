//! Interfaces › Virtual IPs (`interfaces/vip_settings`), core's `VipSettingsController` + `Vip` model.
//!
//! Quirks kept: the API speaks `network` ("ip/bits") while the model stores `subnet` + `subnet_bits`; every add/set
//! must carry the address (the overlay blanks it otherwise); subnet errors are re-keyed to `vip.network` as a list;
//! CARP needs password and VHID; `getItem` of an unknown uuid is `[]`; nothing touches an interface until
//! `reconfigure`, which (in [`crate::VipMode::Interfaces`]) adds and removes the addresses with `ip addr`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{failed, Crud};
use crate::app::{App, ModelKind};
use crate::config::VipMode;
use crate::model::{self, Validations};
use crate::request::{ApiRequest, ApiResponse};
use crate::store::State;

const CRUD: Crud = Crud {
    model: ModelKind::Vip,
    section: "vip",
    wrapper: "vip",
    model_name: "Vip",
    safe_delete: false,
    toggle_honours_value: false,
    search_fields: &["interface", "mode", "subnet", "descr", "address"],
    default_sort: &[],
};

/// Replaces `network` by `subnet`/`subnet_bits` (the controller's overlay).
fn overlay(input: &Map<String, Value>) -> Map<String, Value> {
    let mut m = input.clone();
    let network = m.remove("network");
    let has_split = m.get("subnet").is_some_and(|v| !v.is_null())
        && m.get("subnet_bits").is_some_and(|v| !v.is_null());
    match network
        .as_ref()
        .and_then(|v| model::php_string(v).ok().flatten())
    {
        Some(n) => {
            let (ip, bits) = match n.split_once('/') {
                Some((a, b)) => (a.to_string(), b.to_string()),
                None => (n.clone(), String::new()),
            };
            m.insert("subnet".into(), Value::String(ip));
            m.insert("subnet_bits".into(), Value::String(bits));
        }
        None if has_split => {}
        None => {
            m.insert("subnet".into(), Value::String(String::new()));
            m.insert("subnet_bits".into(), Value::String(String::new()));
        }
    }
    m
}

/// `Vip::performValidation` (the checks a client meets) plus the `vip.network` re-keying.
fn finish_validation(
    st: &State,
    uuid: &str,
    values: &BTreeMap<String, String>,
    field: Validations,
    interfaces: &[(String, String)],
) -> Validations {
    let mut out = Validations::default();
    let mut network_msgs: Vec<String> = Vec::new();
    for (k, msgs) in field.0 {
        if k == "vip.subnet" || k == "vip.subnet_bits" {
            for m in msgs {
                if !network_msgs.contains(&m) {
                    network_msgs.push(m);
                }
            }
        } else {
            out.0.push((k, msgs));
        }
    }
    let get = |k: &str| values.get(k).map(String::as_str).unwrap_or("");
    let (mode, iface, vhid) = (get("mode"), get("interface"), get("vhid"));
    let subnet = get("subnet");
    if let (Ok(ip), Ok(bits)) = (
        subnet.parse::<std::net::IpAddr>(),
        get("subnet_bits").parse::<u8>(),
    ) {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if bits > max {
            network_msgs.push("A valid network address is required.".into());
        } else if let std::net::IpAddr::V4(v4) = ip {
            if (mode == "ipalias" || mode == "carp") && bits <= 30 {
                let ipn = u32::from(v4);
                let mask = if bits == 0 {
                    0
                } else {
                    u32::MAX << (32 - bits)
                };
                if ipn == ipn & mask {
                    network_msgs.push("The network address cannot be used for this VIP".into());
                } else if ipn == (ipn | !mask) {
                    network_msgs.push("The broadcast address cannot be used for this VIP".into());
                }
            }
        }
    }
    if mode == "carp" {
        if get("password").is_empty() {
            out.add(
                "vip.password",
                "You must specify a CARP password that is shared between the two VHID members.",
            );
        }
        if vhid.is_empty() {
            out.add("vip.vhid", "A VHID must be selected for this CARP VIP.");
        } else if st.vip.items("vip").iter().any(|i| {
            i.uuid != uuid
                && i.get("mode") == "carp"
                && i.get("interface") == iface
                && i.get("vhid") == vhid
        }) {
            let descr = interfaces
                .iter()
                .find(|(k, _)| k == iface)
                .map(|(_, d)| d.as_str())
                .unwrap_or(iface);
            out.add(
                "vip.vhid",
                format!("VHID {vhid} is already in use on interface {descr}. Pick a unique number on this interface."),
            );
        }
    } else if mode == "ipalias"
        && !vhid.is_empty()
        && !st.vip.items("vip").iter().any(|i| {
            i.get("mode") == "carp" && i.get("interface") == iface && i.get("vhid") == vhid
        })
    {
        out.add(
            "vip.vhid",
            format!("VHID {vhid} must be defined on interface {iface} as a CARP VIP first."),
        );
    }
    if !subnet.is_empty()
        && st
            .vip
            .items("vip")
            .iter()
            .any(|i| i.uuid != uuid && i.get("subnet") == subnet && i.get("interface") == iface)
    {
        out.add("vip.network", "Address already assigned.");
    }
    if subnet.is_empty() || get("subnet_bits").is_empty() {
        let m = "A valid network address is required.".to_string();
        if !network_msgs.contains(&m) {
            network_msgs.push(m);
        }
    }
    if !network_msgs.is_empty() {
        // always a list on the wire, even with one message
        if network_msgs.len() == 1 {
            network_msgs.push(network_msgs[0].clone());
        }
        out.0.retain(|(k, _)| k != "vip.network");
        out.0.push(("vip.network".into(), network_msgs));
    }
    out
}

fn computed(values: &BTreeMap<String, String>) -> (String, String) {
    let get = |k: &str| values.get(k).cloned().unwrap_or_default();
    let address = if get("subnet").is_empty() {
        String::new()
    } else {
        format!("{}/{}", get("subnet"), get("subnet_bits"))
    };
    let vhid_txt = if get("vhid").is_empty() {
        String::new()
    } else {
        format!(
            "{} (freq. {}/{})",
            get("vhid"),
            get("advbase"),
            get("advskew")
        )
    };
    (address, vhid_txt)
}

fn get_item(app: &App, st: &State, uuid: Option<&str>) -> ApiResponse {
    let sec = CRUD.section_def();
    let values = match uuid {
        None => model::defaults(sec),
        Some(u) => match st.vip.find("vip", u) {
            Some(i) => i.values.clone(),
            None => return ApiResponse::json(json!([])),
        },
    };
    let ctx = CRUD.ctx(st, app);
    let mut m = model::render_item(sec, &values, &ctx);
    let (address, vhid_txt) = computed(&values);
    m.remove("subnet");
    m.remove("subnet_bits");
    m.insert("address".into(), Value::String(address.clone()));
    m.insert("vhid_txt".into(), Value::String(vhid_txt));
    m.insert("network".into(), Value::String(address));
    ApiResponse::json(json!({"vip": Value::Object(m)}))
}

fn search(app: &App, st: &State, req: &ApiRequest) -> ApiResponse {
    let sec = CRUD.section_def();
    let ctx = CRUD.ctx(st, app);
    let rows = st
        .vip
        .items("vip")
        .iter()
        .map(|i| {
            let mut r = model::search_row(sec, i, &ctx);
            let (address, vhid_txt) = computed(&i.values);
            r.insert("address".into(), Value::String(address));
            r.insert("vhid_txt".into(), Value::String(vhid_txt));
            r
        })
        .collect();
    let params = model::SearchParams::from_request(&req.query, &req.post);
    ApiResponse::json(model::search(
        rows,
        &params,
        CRUD.search_fields,
        CRUD.default_sort,
    ))
}

fn upsert(app: &App, st: &mut State, req: &ApiRequest, uuid: Option<&str>) -> (ApiResponse, bool) {
    let Some(input) = CRUD.wrapped(req) else {
        return (failed(), false);
    };
    let input = overlay(input);
    let sec = CRUD.section_def();
    let existing = uuid.and_then(|u| st.vip.find("vip", u).cloned());
    let (new_uuid, mut values, only) = match (uuid, existing) {
        (None, _) => (String::new(), model::defaults(sec), None),
        (Some(u), Some(item)) => (u.to_string(), item.values, Some(())),
        (Some(u), None) if model::is_lower_v4_uuid(u) => {
            (u.to_string(), model::defaults(sec), None)
        }
        (Some(_), None) => return (failed(), false),
    };
    let changed = match model::apply_input(sec, &mut values, &input) {
        Ok(c) => c,
        Err(_) => return (ApiResponse::unexpected(), false),
    };
    let ctx = CRUD.ctx(st, app);
    let mut only_fields = changed.clone();
    // the overlay always writes the address, so it is always validated
    for f in ["subnet", "subnet_bits"] {
        if !only_fields.iter().any(|x| x == f) {
            only_fields.push(f.to_string());
        }
    }
    let field_v = model::validate(
        sec,
        &values,
        only.map(|_| only_fields.as_slice()),
        &ctx,
        "vip",
    );
    let v = finish_validation(st, &new_uuid, &values, field_v, &app.cfg.interfaces);
    if !v.is_empty() {
        return (
            ApiResponse::json(json!({"result": "failed", "validations": v.to_json()})),
            false,
        );
    }
    let new_uuid = if new_uuid.is_empty() {
        app.next_uuid()
    } else {
        new_uuid
    };
    let items = st.vip.items_mut("vip");
    if let Some(i) = items.iter_mut().find(|i| i.uuid == new_uuid) {
        i.values = values;
        return (ApiResponse::json(json!({"result": "saved"})), true);
    }
    items.push(crate::store::Item {
        uuid: new_uuid.clone(),
        values,
    });
    if uuid.is_none() {
        (
            ApiResponse::json(json!({"result": "saved", "uuid": new_uuid})),
            true,
        )
    } else {
        (ApiResponse::json(json!({"result": "saved"})), true)
    }
}

fn delete(st: &mut State, req: &ApiRequest, uuid: &str) -> (ApiResponse, bool) {
    if !req.is_post() {
        return (failed(), false);
    }
    let Some(item) = st.vip.find("vip", uuid).cloned() else {
        return (ApiResponse::json(json!({"result": "not found"})), false);
    };
    if item.get("mode") == "carp" {
        let users: Vec<String> = st
            .vip
            .items("vip")
            .iter()
            .filter(|i| {
                i.get("mode") == "ipalias"
                    && i.get("interface") == item.get("interface")
                    && i.get("vhid") == item.get("vhid")
            })
            .map(|i| format!("{}/{}", i.get("subnet"), i.get("subnet_bits")))
            .collect();
        if !users.is_empty() {
            return (
                ApiResponse::user_error(&users.join("\n"), "Item in use by"),
                false,
            );
        }
    }
    CRUD.del(st, req, uuid)
}

/// Desired `ip addr` entries: "address/bits dev".
fn desired(app: &App, st: &State) -> Vec<String> {
    let VipMode::Interfaces(map) = &app.cfg.vip_mode else {
        return Vec::new();
    };
    st.vip
        .items("vip")
        .iter()
        .filter(|i| i.get("mode") != "proxyarp")
        // with a CARP engine, CARP addresses are up only where the election made the box MASTER (crate::carp)
        .filter(|i| !(app.carp.is_running() && i.get("mode") == "carp"))
        .filter_map(|i| {
            map.get(i.get("interface"))
                .map(|dev| format!("{}/{} {dev}", i.get("subnet"), i.get("subnet_bits")))
        })
        .collect()
}

pub(crate) async fn ip_addr(netns: Option<&str>, op: &str, entry: &str) -> bool {
    let Some((addr, dev)) = entry.split_once(' ') else {
        return false;
    };
    let mut cmd = tokio::process::Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    match cmd.args(["addr", op, addr, "dev", dev]).output().await {
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let ok = o.status.success() || (op == "add" && err.contains("File exists"));
            if !ok {
                tracing::warn!("ip addr {op} {entry}: {}", err.trim());
            }
            ok
        }
        Err(e) => {
            tracing::warn!("ip addr {op} {entry}: {e}");
            false
        }
    }
}

async fn reconfigure(app: &App) -> ApiResponse {
    let st = app.snapshot().await;
    let want = desired(app, &st);
    let mut applied = st.applied_vips.clone();
    for old in st.applied_vips.iter().filter(|a| !want.contains(a)) {
        ip_addr(app.cfg.vip_netns.as_deref(), "del", old).await;
        applied.retain(|a| a != old);
    }
    for new in want.iter().filter(|w| !st.applied_vips.contains(w)) {
        if ip_addr(app.cfg.vip_netns.as_deref(), "add", new).await {
            applied.push(new.clone());
        }
    }
    if applied != st.applied_vips {
        app.write(|s| {
            s.applied_vips = applied;
            (ApiResponse::json(json!({})), true)
        })
        .await;
    }
    ApiResponse::json(json!({"status": "ok"}))
}

pub async fn handle(app: &App, req: &ApiRequest, action: &str, params: &[String]) -> ApiResponse {
    let uuid = params.first().map(String::as_str);
    match action {
        "searchitem" => app.read(|st| search(app, st, req)).await,
        "getitem" => app.read(|st| get_item(app, st, uuid)).await,
        "additem" => app.write(|st| upsert(app, st, req, None)).await,
        "setitem" => match uuid {
            Some(u) => app.write(|st| upsert(app, st, req, Some(u))).await,
            None => ApiResponse::not_found(),
        },
        "delitem" => match uuid {
            Some(u) => app.write(|st| delete(st, req, u)).await,
            None => ApiResponse::not_found(),
        },
        "reconfigure" => {
            if !req.is_post() {
                return ApiResponse::json(json!({"status": "failed"}));
            }
            reconfigure(app).await
        }
        "getunusedvhid" => {
            app.read(|st| {
                let used: Vec<String> = st
                    .vip
                    .items("vip")
                    .iter()
                    .filter(|i| i.get("mode") == "carp")
                    .map(|i| i.get("vhid").to_string())
                    .collect();
                match (1..=255).find(|n| !used.contains(&n.to_string())) {
                    Some(n) => ApiResponse::json(json!({"vhid": n, "status": "ok"})),
                    None => ApiResponse::json(json!({"vhid": -1, "status": "error"})),
                }
            })
            .await
        }
        "get" => {
            app.read(|st| {
                let sec = CRUD.section_def();
                let ctx = CRUD.ctx(st, app);
                let items: Map<String, Value> = st
                    .vip
                    .items("vip")
                    .iter()
                    .map(|i| {
                        (
                            i.uuid.clone(),
                            Value::Object(model::render_item(sec, &i.values, &ctx)),
                        )
                    })
                    .collect();
                let vip = if items.is_empty() {
                    Value::Array(Vec::new())
                } else {
                    Value::Object(items)
                };
                ApiResponse::json(json!({"vip": {"vip": vip}}))
            })
            .await
        }
        _ => ApiResponse::not_found(),
    }
}
