//! Firewall filter rules (`firewall/filter`), core's `FilterController` as of 26.7 (no savepoint/rollback:
//! `apply` just reloads and answers `{"status":"OK\n\n"}`).
//!
//! The model is a subset of the 58 fields of 26.7 (the ones a client managing pass rules to a VIP needs); checks
//! kept: interface keys, ports only for TCP/UDP, `sequence` defaulting to max + 100, toggle honouring `/{0|1}`.

use std::collections::BTreeMap;

use serde_json::json;

use super::Crud;
use crate::app::{App, ModelKind};
use crate::model::Validations;
use crate::request::{ApiRequest, ApiResponse};
use crate::store::State;

const CRUD: Crud = Crud {
    model: ModelKind::Filter,
    section: "rules.rule",
    wrapper: "rule",
    model_name: "Filter",
    safe_delete: false,
    toggle_honours_value: true,
    search_fields: &["description", "source_net", "destination_net", "interface"],
    default_sort: &["sequence"],
};

/// What core's `NetworkAliasField` (`source_net`/`destination_net` in `Firewall/Filter.xml`) accepts: `any`,
/// `(self)`, every interface of the box by key (`lan`, `opt1`: its network) and `<key>ip` (its address), the name
/// of any non-port alias, and an address or CIDR.
fn valid_target(st: &State, interfaces: &[(String, String)], v: &str) -> bool {
    let plain = v;
    plain == "any"
        || plain == "(self)"
        || crate::model::valid_network(plain)
        || interfaces
            .iter()
            .any(|(k, _)| plain == k || plain == format!("{k}ip"))
        || st
            .alias
            .items("aliases.alias")
            .iter()
            .any(|a| a.get("name") == plain && a.get("type") != "port")
        || ["bogons", "bogonsv6", "virusprot", "sshlockout"].contains(&plain)
}

fn extra(
    app: &App,
    st: &State,
    _c: &Crud,
    _uuid: &str,
    values: &BTreeMap<String, String>,
    v: &mut Validations,
) {
    let get = |k: &str| values.get(k).map(String::as_str).unwrap_or("");
    let proto = get("protocol");
    let tcp_udp = matches!(proto, "TCP" | "UDP" | "TCP/UDP");
    if !get("source_port").is_empty() && !tcp_udp {
        v.add(
            "rule.source_port",
            "Source ports are only valid for tcp or udp type rules.",
        );
    }
    if !get("destination_port").is_empty() && !tcp_udp {
        v.add(
            "rule.destination_port",
            "Destination ports are only valid for tcp or udp type rules.",
        );
    }
    for (f, what) in [("source_net", "source"), ("destination_net", "destination")] {
        for item in get(f).split(',').filter(|s| !s.is_empty()) {
            if !valid_target(st, &app.cfg.interfaces, item) {
                v.add(
                    format!("rule.{f}"),
                    format!("{item} is not a valid {what} IP address or alias."),
                );
            }
        }
    }
}

pub async fn handle(app: &App, req: &ApiRequest, action: &str, params: &[String]) -> ApiResponse {
    let uuid = params.first().map(String::as_str);
    match action {
        "searchrule" => app.read(|st| CRUD.search(app, st, req)).await,
        "getrule" => app.read(|st| CRUD.get(app, st, uuid)).await,
        "addrule" => {
            app.write(|st| {
                let next = st
                    .filter
                    .items("rules.rule")
                    .iter()
                    .filter_map(|r| r.get("sequence").parse::<i64>().ok())
                    .max()
                    .unwrap_or(0)
                    + 100;
                let mut req = req.clone();
                if let Some(serde_json::Value::Object(rule)) = req.post.get_mut("rule") {
                    rule.entry("sequence")
                        .or_insert_with(|| json!(next.to_string()));
                }
                CRUD.add(app, st, &req, Some(extra))
            })
            .await
        }
        "setrule" => match uuid {
            Some(u) => app.write(|st| CRUD.set(app, st, req, u, Some(extra))).await,
            None => ApiResponse::not_found(),
        },
        "delrule" => match uuid {
            Some(u) => app.write(|st| CRUD.del(st, req, u)).await,
            None => ApiResponse::not_found(),
        },
        "togglerule" => match uuid {
            Some(u) => {
                app.write(|st| CRUD.toggle(st, req, u, params.get(1).map(String::as_str)))
                    .await
            }
            None => ApiResponse::not_found(),
        },
        "apply" => {
            if !req.is_post() {
                return ApiResponse::json(json!({"status": "error"}));
            }
            ApiResponse::json(json!({"status": "OK\n\n"}))
        }
        _ => ApiResponse::not_found(),
    }
}
