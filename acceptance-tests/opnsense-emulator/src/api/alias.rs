//! Firewall aliases (`firewall/alias`), core's `AliasController` + `Alias` model.
//!
//! Quirks kept: names are unique *including* the built-in aliases (`bogons`, `__lan_network`, ...); content is
//! newline-separated and validated per type; `getItem` renders `content` as the selected entries plus every other
//! alias (with descriptions), and still answers `{"alias":{"content":{...}}}` for an unknown uuid; search rows
//! include the built-ins and a `categories_uuid` list; `toggleItem/{uuid}/{0|1}` honours the value; an alias used by
//! a filter rule cannot be deleted (HTTP 500 "Alias in use").

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{failed, Crud};
use crate::app::{App, ModelKind};
use crate::model::{self, Validations};
use crate::request::{ApiRequest, ApiResponse};
use crate::store::State;

const CRUD: Crud = Crud {
    model: ModelKind::Alias,
    section: "aliases.alias",
    wrapper: "alias",
    model_name: "Alias",
    safe_delete: false,
    toggle_honours_value: true,
    search_fields: &["name", "description", "content"],
    default_sort: &["name"],
};

/// Built-in aliases: (name, type, description).
fn builtins(app: &App) -> Vec<(String, &'static str, String)> {
    let mut v: Vec<(String, &'static str, String)> = app
        .cfg
        .interfaces
        .iter()
        .map(|(k, _)| (format!("__{k}_network"), "internal", format!("{k} net")))
        .collect();
    for (n, d) in [
        ("bogons", "bogon networks (internal)"),
        ("bogonsv6", "bogon networks IPv6 (internal)"),
        ("virusprot", "overload table for rate limiting (internal)"),
        ("sshlockout", "abuse lockout table (internal)"),
    ] {
        v.push((n.to_string(), "external", d.to_string()));
    }
    v
}

fn all_alias_names(app: &App, st: &State) -> Vec<String> {
    let mut v: Vec<String> = st
        .alias
        .items(CRUD.section)
        .iter()
        .map(|i| i.get("name").to_string())
        .collect();
    v.extend(builtins(app).into_iter().map(|b| b.0));
    v
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

fn content_messages(app: &App, st: &State, ty: &str, content: &str) -> Vec<String> {
    let names = all_alias_names(app, st);
    let mut out = Vec::new();
    for entry in content.split('\n').map(str::trim).filter(|e| !e.is_empty()) {
        let plain = entry.strip_prefix('!').unwrap_or(entry);
        let is_alias = names.iter().any(|n| n == plain);
        let ok = match ty {
            "host" => {
                is_alias
                    || model::valid_ip(plain)
                    || is_hostname(plain)
                    || plain
                        .split_once('-')
                        .is_some_and(|(a, b)| model::valid_ip(a) && model::valid_ip(b))
            }
            "network" => is_alias || model::valid_network(plain),
            "port" => {
                let port_ok = |p: &str| p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n));
                is_alias
                    || port_ok(entry)
                    || entry
                        .split_once(':')
                        .is_some_and(|(a, b)| port_ok(a) && port_ok(b))
            }
            _ => true,
        };
        if !ok {
            out.push(match ty {
                "host" => {
                    format!("Entry \"{entry}\" is not a valid hostname, IP address or range.")
                }
                "network" => format!("Entry \"{entry}\" is not a network."),
                _ => format!("Entry \"{entry}\" is not a valid port number."),
            });
        }
    }
    out
}

fn extra(app: &App) -> impl Fn(&State, &str, &BTreeMap<String, String>, &mut Validations) + '_ {
    move |st, uuid, values, v| {
        let name = values.get("name").cloned().unwrap_or_default();
        let name_invalid = v.0.iter().any(|(k, _)| k == "alias.name");
        if !name_invalid && !name.is_empty() {
            let dup_user = st
                .alias
                .items(CRUD.section)
                .iter()
                .any(|i| i.uuid != uuid && i.get("name") == name);
            let dup_builtin = builtins(app).iter().any(|b| b.0 == name);
            if dup_user || dup_builtin {
                v.add("alias.name", "An alias with this name already exists.");
            }
        }
        let ty = values.get("type").cloned().unwrap_or_default();
        for m in content_messages(
            app,
            st,
            &ty,
            values.get("content").map(String::as_str).unwrap_or(""),
        ) {
            v.add("alias.content", m);
        }
    }
}

fn upsert(app: &App, st: &mut State, req: &ApiRequest, uuid: Option<&str>) -> (ApiResponse, bool) {
    let Some(input) = CRUD.wrapped(req) else {
        return (failed(), false);
    };
    let sec = CRUD.section_def();
    let existing = uuid.and_then(|u| st.alias.find(CRUD.section, u).cloned());
    let (id, mut values, partial) = match (uuid, existing) {
        (None, _) => (String::new(), model::defaults(sec), false),
        (Some(u), Some(item)) => (u.to_string(), item.values, true),
        (Some(u), None) if model::is_lower_v4_uuid(u) => {
            (u.to_string(), model::defaults(sec), false)
        }
        (Some(_), None) => return (failed(), false),
    };
    let old_name = values.get("name").cloned().unwrap_or_default();
    let changed = match model::apply_input(sec, &mut values, input) {
        Ok(c) => c,
        Err(_) => return (ApiResponse::unexpected(), false),
    };
    let ctx = CRUD.ctx(st, app);
    let mut v = model::validate(
        sec,
        &values,
        if partial {
            Some(changed.as_slice())
        } else {
            None
        },
        &ctx,
        "alias",
    );
    extra(app)(st, &id, &values, &mut v);
    if !v.is_empty() {
        return (
            ApiResponse::json(json!({"result": "failed", "validations": v.to_json()})),
            false,
        );
    }
    let new_name = values.get("name").cloned().unwrap_or_default();
    let id = if id.is_empty() { app.next_uuid() } else { id };
    let items = st.alias.items_mut(CRUD.section);
    let created = if let Some(i) = items.iter_mut().find(|i| i.uuid == id) {
        i.values = values;
        false
    } else {
        items.push(crate::store::Item {
            uuid: id.clone(),
            values,
        });
        true
    };
    // renaming rewrites references in rules (`refactor()`)
    if partial && !old_name.is_empty() && old_name != new_name {
        for r in st.filter.items_mut("rules.rule") {
            for f in [
                "source_net",
                "destination_net",
                "source_port",
                "destination_port",
            ] {
                if r.get(f) == old_name {
                    r.values.insert(f.into(), new_name.clone());
                }
            }
        }
    }
    if created && uuid.is_none() {
        (
            ApiResponse::json(json!({"result": "saved", "uuid": id})),
            true,
        )
    } else {
        (ApiResponse::json(json!({"result": "saved"})), true)
    }
}

fn get_item(app: &App, st: &State, uuid: Option<&str>) -> ApiResponse {
    let sec = CRUD.section_def();
    let ctx = CRUD.ctx(st, app);
    let found = uuid.and_then(|u| st.alias.find(CRUD.section, u));
    let values = match (uuid, found) {
        (None, _) => model::defaults(sec),
        (Some(_), Some(i)) => i.values.clone(),
        (Some(_), None) => BTreeMap::new(),
    };
    let content = values.get("content").cloned().unwrap_or_default();
    let mut cmap = Map::new();
    let entries: Vec<&str> = content.split('\n').filter(|e| !e.is_empty()).collect();
    if entries.is_empty() && (uuid.is_none() || found.is_some()) {
        cmap.insert(
            String::new(),
            json!({"value": "", "selected": 1, "description": ""}),
        );
    }
    for e in &entries {
        cmap.insert(e.to_string(), json!({"value": e, "selected": 1}));
    }
    let mut others: Vec<(String, String)> = st
        .alias
        .items(CRUD.section)
        .iter()
        .map(|i| (i.get("name").to_string(), i.get("description").to_string()))
        .collect();
    others.extend(builtins(app).into_iter().map(|(n, _, d)| (n, d)));
    for (n, d) in others {
        if !cmap.contains_key(&n) {
            cmap.insert(
                n.clone(),
                json!({"selected": 0, "value": n, "description": d}),
            );
        }
    }
    if uuid.is_some() && found.is_none() {
        return ApiResponse::json(json!({"alias": {"content": Value::Object(cmap)}}));
    }
    let mut m = model::render_item(sec, &values, &ctx);
    m.insert("content".into(), Value::Object(cmap));
    ApiResponse::json(json!({"alias": Value::Object(m)}))
}

fn search(app: &App, st: &State, req: &ApiRequest) -> ApiResponse {
    let sec = CRUD.section_def();
    let ctx = CRUD.ctx(st, app);
    let mut rows: Vec<Map<String, Value>> = st
        .alias
        .items(CRUD.section)
        .iter()
        .map(|i| {
            let mut r = model::search_row(sec, i, &ctx);
            r.insert("categories_uuid".into(), json!([]));
            r
        })
        .collect();
    for (name, ty, descr) in builtins(app) {
        let mut values = model::defaults(sec);
        values.insert("name".into(), name.clone());
        values.insert("type".into(), ty.into());
        values.insert("description".into(), descr);
        let mut r = model::search_row(sec, &crate::store::Item { uuid: name, values }, &ctx);
        r.insert("categories_uuid".into(), json!([]));
        rows.push(r);
    }
    let params = model::SearchParams::from_request(&req.query, &req.post);
    ApiResponse::json(model::search(
        rows,
        &params,
        CRUD.search_fields,
        CRUD.default_sort,
    ))
}

fn delete(st: &mut State, req: &ApiRequest, uuid: &str) -> (ApiResponse, bool) {
    if !req.is_post() {
        return (failed(), false);
    }
    let Some(item) = st.alias.find(CRUD.section, uuid).cloned() else {
        return (ApiResponse::json(json!({"result": "not found"})), false);
    };
    let name = item.get("name");
    let mut users: Vec<String> = Vec::new();
    for r in st.filter.items("rules.rule") {
        if [
            "source_net",
            "destination_net",
            "source_port",
            "destination_port",
        ]
        .iter()
        .any(|f| r.get(f).split(',').any(|x| x == name))
        {
            users.push(format!(
                "Rule {}",
                if r.get("description").is_empty() {
                    &r.uuid
                } else {
                    r.get("description")
                }
            ));
        }
    }
    for a in st.alias.items(CRUD.section) {
        if a.uuid != uuid && a.get("content").split('\n').any(|x| x == name) {
            users.push(format!("Alias {}", a.get("name")));
        }
    }
    if !users.is_empty() {
        return (
            ApiResponse::user_error(
                &format!(
                    "Cannot delete alias. Currently in use by {}",
                    users.join(", ")
                ),
                "Alias in use",
            ),
            false,
        );
    }
    CRUD.del(st, req, uuid)
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
        "toggleitem" => match uuid {
            Some(u) => {
                app.write(|st| CRUD.toggle(st, req, u, params.get(1).map(String::as_str)))
                    .await
            }
            None => ApiResponse::not_found(),
        },
        "getaliasuuid" => match uuid {
            Some(name) => {
                app.read(|st| {
                    match st
                        .alias
                        .items(CRUD.section)
                        .iter()
                        .find(|i| i.get("name") == name)
                    {
                        Some(i) => ApiResponse::json(json!({"uuid": i.uuid})),
                        None => ApiResponse::json(json!([])),
                    }
                })
                .await
            }
            None => ApiResponse::not_found(),
        },
        "reconfigure" => {
            if !req.is_post() {
                return ApiResponse::json(json!({"status": "failed"}));
            }
            ApiResponse::json(json!({"status": "ok"}))
        }
        _ => ApiResponse::not_found(),
    }
}
