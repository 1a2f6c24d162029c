//! os-haproxy's `SettingsController`, `ServiceController` and `ExportController`.
//!
//! Settings: no name uniqueness (only `haproxy -c` catches duplicates), safe delete on, toggle ignores an explicit
//! value. Service: see [`crate::haproxy`]; `reconfigure` answers `{"status":"ok"}` even when the config was refused.

use serde_json::{json, Map, Value};

use super::{failed, Crud};
use crate::app::{App, ModelKind};
use crate::model::{self, Ctx, Validations};
use crate::request::{ApiRequest, ApiResponse};
use crate::schema;
use crate::store::State;

/// (wrapper, section, search action suffix, has toggle, search fields)
const TYPES: &[(&str, &str, &str, bool, &[&str])] = &[
    (
        "frontend",
        "frontends.frontend",
        "frontends",
        true,
        &["enabled", "name", "description"],
    ),
    (
        "backend",
        "backends.backend",
        "backends",
        true,
        &["enabled", "name", "description"],
    ),
    (
        "server",
        "servers.server",
        "servers",
        true,
        &[
            "enabled",
            "name",
            "type",
            "mode",
            "address",
            "port",
            "description",
        ],
    ),
    (
        "healthcheck",
        "healthchecks.healthcheck",
        "healthchecks",
        false,
        &["name", "description"],
    ),
    ("acl", "acls.acl", "acls", false, &["name", "description"]),
    (
        "action",
        "actions.action",
        "actions",
        true,
        &["name", "description"],
    ),
    ("lua", "luas.lua", "luas", true, &["name", "description"]),
    (
        "fcgi",
        "fcgis.fcgi",
        "fcgis",
        false,
        &["name", "description"],
    ),
    (
        "errorfile",
        "errorfiles.errorfile",
        "errorfiles",
        false,
        &["name", "description"],
    ),
    (
        "mapfile",
        "mapfiles.mapfile",
        "mapfiles",
        false,
        &["name", "description"],
    ),
    ("cpu", "cpus.cpu", "cpus", true, &["name"]),
    (
        "group",
        "groups.group",
        "groups",
        true,
        &["name", "description"],
    ),
    (
        "user",
        "users.user",
        "users",
        true,
        &["name", "description"],
    ),
    (
        "resolver",
        "resolvers.resolver",
        "resolvers",
        true,
        &["name"],
    ),
    ("mailer", "mailers.mailer", "mailers", true, &["name"]),
];

fn crud(
    wrapper: &'static str,
    section: &'static str,
    search_fields: &'static [&'static str],
) -> Crud {
    Crud {
        model: ModelKind::Haproxy,
        section,
        wrapper,
        model_name: "HAProxy",
        safe_delete: true,
        toggle_honours_value: false,
        search_fields,
        default_sort: &["name"],
    }
}

/// The whole model in `settings/get` shape.
pub fn whole_model(app: &App, st: &State) -> Value {
    let data = &st.haproxy;
    let ctx = Ctx {
        data,
        interfaces: &app.cfg.interfaces,
    };
    let mut root = Map::new();
    for sec in &schema::haproxy().sections {
        let parts: Vec<&str> = sec.path.split('.').collect();
        let rendered = if sec.array {
            let items = data.items(&sec.path);
            if items.is_empty() {
                Value::Array(Vec::new())
            } else {
                let mut m = Map::new();
                for i in items {
                    m.insert(
                        i.uuid.clone(),
                        Value::Object(model::render_item(sec, &i.values, &ctx)),
                    );
                }
                Value::Object(m)
            }
        } else {
            let values = singleton_values(data, &sec.path);
            Value::Object(model::render_item(sec, &values, &ctx))
        };
        let mut cur = &mut root;
        for p in &parts[..parts.len() - 1] {
            let e = cur
                .entry(p.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            cur = e.as_object_mut().expect("model path nodes are objects");
        }
        let last = parts[parts.len() - 1].to_string();
        match (cur.get_mut(&last), rendered) {
            (Some(Value::Object(existing)), Value::Object(fields)) => {
                // subsections rendered earlier go after the section's own fields
                let subs = std::mem::take(existing);
                *existing = fields;
                existing.extend(subs);
            }
            (_, r) => {
                cur.insert(last, r);
            }
        }
    }
    json!({ "haproxy": Value::Object(root) })
}

/// Saved values of a singleton section (defaults for anything never saved).
fn singleton_values(
    data: &crate::store::ModelData,
    path: &str,
) -> std::collections::BTreeMap<String, String> {
    let sec = schema::haproxy().section(path).expect("section");
    let mut m = model::defaults(sec);
    for f in &sec.fields {
        if let Some(v) = data.values.get(&format!("{path}.{}", f.name)) {
            m.insert(f.name.clone(), v.clone());
        }
    }
    m
}

fn set_model(app: &App, st: &mut State, req: &ApiRequest) -> (ApiResponse, bool) {
    if !req.is_post() {
        return (failed(), false);
    }
    let Some(Value::Object(input)) = req.post.get("haproxy") else {
        return (failed(), false);
    };
    let mut v = Validations::default();
    let mut changed_any = false;
    let snapshot = st.haproxy.clone();
    for sec in &schema::haproxy().sections {
        let mut node = Some(input);
        for p in sec.path.split('.') {
            node = node.and_then(|n| n.get(p)).and_then(Value::as_object);
        }
        let Some(node) = node else { continue };
        let ctx = Ctx {
            data: &snapshot,
            interfaces: &app.cfg.interfaces,
        };
        if sec.array {
            for (uuid, item_input) in node {
                let Some(Value::Object(item_input)) = Some(item_input) else {
                    continue;
                };
                let Some(item) = st
                    .haproxy
                    .items_mut(&sec.path)
                    .iter_mut()
                    .find(|i| &i.uuid == uuid)
                else {
                    continue;
                };
                let mut values = item.values.clone();
                let Ok(changed) = model::apply_input(sec, &mut values, item_input) else {
                    return (ApiResponse::unexpected(), false);
                };
                let vv = model::validate(
                    sec,
                    &values,
                    Some(&changed),
                    &ctx,
                    &format!("haproxy.{}.{uuid}", sec.path),
                );
                v.0.extend(vv.0);
                changed_any |= !changed.is_empty();
                item.values = values;
            }
        } else {
            let mut values = singleton_values(&st.haproxy, &sec.path);
            let Ok(changed) = model::apply_input(sec, &mut values, node) else {
                return (ApiResponse::unexpected(), false);
            };
            let vv = model::validate(
                sec,
                &values,
                Some(&changed),
                &ctx,
                &format!("haproxy.{}", sec.path),
            );
            v.0.extend(vv.0);
            for f in changed {
                let val = values.get(&f).cloned().unwrap_or_default();
                st.haproxy.values.insert(format!("{}.{f}", sec.path), val);
                changed_any = true;
            }
        }
    }
    if !v.is_empty() {
        return (
            ApiResponse::json(json!({"result": "failed", "validations": v.to_json()})),
            false,
        );
    }
    let _ = changed_any;
    (ApiResponse::json(json!({"result": "saved"})), true)
}

pub async fn settings(app: &App, req: &ApiRequest, action: &str, params: &[String]) -> ApiResponse {
    match action {
        "get" => {
            if req.is_post() {
                return ApiResponse::json(json!([]));
            }
            return app.read(|st| ApiResponse::json(whole_model(app, st))).await;
        }
        "set" => return app.write(|st| set_model(app, st, req)).await,
        _ => {}
    }
    for (wrapper, section, plural, has_toggle, fields) in TYPES {
        let c = crud(wrapper, section, fields);
        let uuid = params.first().map(String::as_str);
        if action == format!("search{plural}") {
            return app.read(|st| c.search(app, st, req)).await;
        }
        if action == format!("get{wrapper}") {
            return app.read(|st| c.get(app, st, uuid)).await;
        }
        if action == format!("add{wrapper}") {
            return app.write(|st| c.add(app, st, req, None)).await;
        }
        if action == format!("set{wrapper}") {
            let Some(uuid) = uuid else {
                return ApiResponse::not_found();
            };
            return app.write(|st| c.set(app, st, req, uuid, None)).await;
        }
        if action == format!("del{wrapper}") {
            let Some(uuid) = uuid else {
                return ApiResponse::not_found();
            };
            return app.write(|st| c.del(st, req, uuid)).await;
        }
        if *has_toggle && action == format!("toggle{wrapper}") {
            let Some(uuid) = uuid else {
                return ApiResponse::not_found();
            };
            let explicit = params.get(1).map(String::as_str);
            return app.write(|st| c.toggle(st, req, uuid, explicit)).await;
        }
    }
    ApiResponse::not_found()
}

fn general(st: &State, field: &str) -> String {
    st.haproxy
        .values
        .get(&format!("general.{field}"))
        .cloned()
        .unwrap_or_else(|| "0".into())
}

pub async fn service(app: &App, req: &ApiRequest, action: &str) -> ApiResponse {
    match action {
        "configtest" => {
            let st = app.snapshot().await;
            if let Err(e) = app.runner.render_staging(&st.haproxy) {
                tracing::error!("{e}");
                return ApiResponse::user_error("Template generation failed", "HAProxy");
            }
            match app.runner.check(&app.runner.staging_path()).await {
                Ok(r) => {
                    ApiResponse::json(json!({"result": format!("{}\n\n", r.output.trim_end())}))
                }
                Err(e) => ApiResponse::json(json!({"result": format!("{e}\n\n")})),
            }
        }
        "reconfigure" => {
            if !req.is_post() {
                return ApiResponse::json(json!({"status": "failed"}));
            }
            let st = app.snapshot().await;
            let enabled = general(&st, "enabled") == "1";
            if !enabled {
                app.runner.stop().await;
            }
            if let Err(e) = app.runner.render_staging(&st.haproxy) {
                tracing::error!("{e}");
                return ApiResponse::user_error("Template generation failed", "HAProxy");
            }
            if enabled {
                let result = if app.runner.is_running() {
                    app.runner.reload(general(&st, "gracefulStop") == "1").await
                } else {
                    app.runner.start().await
                };
                if let Err(e) = result {
                    tracing::warn!("{e}");
                }
            }
            ApiResponse::json(json!({"status": "ok"}))
        }
        "status" => {
            let st = app.snapshot().await;
            let status = if general(&st, "enabled") != "1" {
                "disabled"
            } else if app.runner.is_running() {
                "running"
            } else {
                "stopped"
            };
            ApiResponse::json(json!({"status": status, "widget": {
                "caption_restart": "Restart", "caption_start": "Start", "caption_stop": "Stop"}}))
        }
        "start" | "restart" => {
            if !req.is_post() {
                return ApiResponse::json(json!({"response": []}));
            }
            // rc.d: `start` of a running haproxy says so and changes nothing.
            if action == "start" && app.runner.is_running() {
                return ApiResponse::json(json!({"response": "OK"}));
            }
            let st = app.snapshot().await;
            if action == "restart" {
                app.runner.stop().await;
            }
            let _ = app.runner.render_staging(&st.haproxy);
            if let Err(e) = app.runner.start().await {
                tracing::warn!("{e}");
            }
            ApiResponse::json(json!({"response": "OK"}))
        }
        "stop" => {
            if !req.is_post() {
                return ApiResponse::json(json!({"response": []}));
            }
            app.runner.stop().await;
            ApiResponse::json(json!({"response": "OK"}))
        }
        _ => ApiResponse::not_found(),
    }
}

pub async fn export(app: &App, _req: &ApiRequest, action: &str, _params: &[String]) -> ApiResponse {
    match action {
        "config" => {
            let text = std::fs::read_to_string(app.runner.staging_path()).unwrap_or_default();
            ApiResponse::json(json!({"response": text}))
        }
        "diff" => {
            let live = std::fs::read_to_string(app.runner.live_path()).unwrap_or_default();
            let staging = std::fs::read_to_string(app.runner.staging_path()).unwrap_or_default();
            ApiResponse::json(json!({"response": simple_diff(&live, &staging)}))
        }
        _ => ApiResponse::not_found(),
    }
}

/// A minimal line diff (`-` live only, `+` staging only); enough to show a reviewer what would change.
fn simple_diff(a: &str, b: &str) -> String {
    let al: Vec<&str> = a.lines().collect();
    let bl: Vec<&str> = b.lines().collect();
    let mut out = String::new();
    for l in &al {
        if !bl.contains(l) {
            out.push_str(&format!("-{l}\n"));
        }
    }
    for l in &bl {
        if !al.contains(l) {
            out.push_str(&format!("+{l}\n"));
        }
    }
    out
}
