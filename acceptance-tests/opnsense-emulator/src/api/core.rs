//! Enough of `core/firmware` and `core/system` for a client to learn the OPNsense and os-haproxy versions.
//!
//! Both versions come from [`crate::Config`] so tests can play an older or newer box and check a client's version
//! awareness (e.g. refusing os-haproxy versions whose API differs).

use serde_json::json;

use crate::app::App;
use crate::request::{ApiRequest, ApiResponse};

fn product(app: &App) -> serde_json::Value {
    let v = &app.cfg.opnsense_version;
    let series: String = v.split('.').take(2).collect::<Vec<_>>().join(".");
    json!({
        "product_abi": series,
        "product_arch": "amd64",
        "product_copyright_owner": "Deciso B.V.",
        "product_flavour": "OpenSSL",
        "product_id": "opnsense",
        "product_name": "OPNsense",
        "product_series": series,
        "product_version": v,
        "product_nickname": "emulated",
    })
}

fn haproxy_package(app: &App) -> serde_json::Value {
    json!({
        "name": "os-haproxy",
        "version": app.cfg.haproxy_plugin_version,
        "comment": "Reliable, high performance TCP/HTTP load balancer",
        "flatsize": "1.00MiB",
        "locked": "0",
        "automatic": "0",
        "license": "BSD2CLAUSE",
        "repository": "OPNsense",
        "origin": "opnsense/os-haproxy",
        "provided": "1",
        "installed": if app.cfg.haproxy_plugin_installed { "1" } else { "0" },
        "path": "OPNsense/opnsense/os-haproxy",
        "configured": "1",
        "tier": "2",
    })
}

pub async fn handle(app: &App, _req: &ApiRequest, controller: &str, action: &str) -> ApiResponse {
    match (controller, action) {
        ("firmware", "status") => ApiResponse::json(json!({
            "product": product(app),
            "status_msg": "There are no updates available on the selected mirror.",
            "status": "none",
        })),
        ("firmware", "info") => {
            let mut p = product(app);
            if let Some(o) = p.as_object_mut() {
                o.insert("product_version".into(), json!(app.cfg.opnsense_version));
            }
            ApiResponse::json(json!({
                "product_version": app.cfg.opnsense_version,
                "product_name": "OPNsense",
                "product": p,
                "package": [haproxy_package(app)],
                "plugin": [haproxy_package(app)],
                "changelog": [],
            }))
        }
        ("system", "status") => ApiResponse::json(
            json!({"metadata": {"system": {"status": 2, "message": "No pending messages"}}}),
        ),
        ("system", "systeminformation") => ApiResponse::json(json!({
            "name": "opnsense.emulated",
            "versions": [format!("OPNsense {}", app.cfg.opnsense_version), "FreeBSD 14.3-RELEASE-p1"],
        })),
        _ => ApiResponse::not_found(),
    }
}
