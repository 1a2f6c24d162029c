//! Interfaces › Virtual IPs › Status: `diagnostics/interface/get_vip_status` and `diagnostics/interface/carp_status/
//! {maintenance,disable,enable}`, the paths of core's `Diagnostics\Api\InterfaceController` (getVipStatusAction,
//! CarpStatusAction) that OPNsense's own status page uses.
//!
//! `get_vip_status` is a search over one row per VIP with a vhid: `interface` (its description), `vhid`,
//! `advbase`, `advskew`, `subnet`, `mode`, `status` (MASTER, BACKUP, INIT; DISABLED when CARP does not run it),
//! `status_txt`, `vhid_txt` (`"3 (freq. 1/0)"` for CARP VIPs), plus `carp` = carp_global_status.php's
//! `{demotion, allow, maintenancemode, status_msg}`. A box without a CARP engine reports its CARP VIPs DISABLED.

use serde_json::{json, Map, Value};

use crate::app::App;
use crate::model;
use crate::request::{ApiRequest, ApiResponse};

fn rows(app: &App, st: &crate::store::State) -> Vec<Map<String, Value>> {
    let states = app.carp.states();
    st.vip
        .items("vip")
        .iter()
        .filter(|i| !i.get("vhid").is_empty())
        .map(|i| {
            let iface = i.get("interface");
            let descr = app
                .cfg
                .interfaces
                .iter()
                .find(|(k, _)| k == iface)
                .map(|(_, d)| d.clone())
                .unwrap_or_else(|| iface.to_uppercase());
            let status = if i.get("mode") == "carp" {
                i.get("vhid")
                    .parse::<u32>()
                    .ok()
                    .and_then(|v| states.get(&v))
                    .map(|s| s.as_str())
                    .unwrap_or("DISABLED")
            } else {
                // an IP alias on a vhid follows its CARP VIP
                st.vip
                    .items("vip")
                    .iter()
                    .find(|c| c.get("mode") == "carp" && c.get("vhid") == i.get("vhid"))
                    .and_then(|c| c.get("vhid").parse::<u32>().ok())
                    .and_then(|v| states.get(&v))
                    .map(|s| s.as_str())
                    .unwrap_or("DISABLED")
            };
            let vhid_txt = if i.get("mode") == "carp" {
                format!(
                    "{} (freq. {}/{})",
                    i.get("vhid"),
                    i.get("advbase"),
                    i.get("advskew")
                )
            } else {
                i.get("vhid").to_string()
            };
            let mut m = Map::new();
            for (k, v) in [
                ("interface", descr.as_str()),
                ("vhid", i.get("vhid")),
                ("advbase", i.get("advbase")),
                ("advskew", i.get("advskew")),
                ("subnet", i.get("subnet")),
                ("mode", i.get("mode")),
                ("status", status),
                ("status_txt", status),
                ("vhid_txt", vhid_txt.as_str()),
            ] {
                m.insert(k.into(), Value::String(v.to_string()));
            }
            m
        })
        .collect()
}

pub async fn handle(app: &App, req: &ApiRequest, action: &str, params: &[String]) -> ApiResponse {
    match action {
        "getvipstatus" => {
            app.read(|st| {
                let params = model::SearchParams::from_request(&req.query, &req.post);
                let mut out = model::search(
                    rows(app, st),
                    &params,
                    &["interface", "subnet", "status"],
                    &[],
                );
                let has_carp = st.vip.items("vip").iter().any(|i| i.get("mode") == "carp");
                let maintenance = app.carp.in_maintenance();
                let status_msg = if !has_carp {
                    "Could not locate any defined CARP interfaces."
                } else {
                    ""
                };
                out["carp"] = json!({
                    "demotion": if maintenance { "240" } else { "0" },
                    "allow": if app.carp.allowed() { "1" } else { "0" },
                    "maintenancemode": maintenance,
                    "status_msg": status_msg,
                });
                ApiResponse::json(out)
            })
            .await
        }
        "carpstatus" => {
            if !req.is_post() {
                return ApiResponse::json(json!({"message": "error"}));
            }
            let what = params.first().map(|s| s.to_lowercase()).unwrap_or_default();
            match app.carp.set_status(&what) {
                Some(done) => ApiResponse::json(json!({"status": "ok", "action": done})),
                None => ApiResponse::json(json!({"status": "failed"})),
            }
        }
        _ => super::core::handle(app, req, "interface", action).await,
    }
}
