//! `haproxy/maintenance/{serverWeight,serverState}`: os-haproxy's runtime changes, sent to the running haproxy's
//! admin socket (`set server <backend>/<server> weight|state …`) without a reload, as the plugin's
//! `socketCommand.py` does. Answers `{"status":"ok"}`, or `{"status":"error","message":…}` with haproxy's words when
//! the socket refuses, and `{"status":"unavailable",…}` on anything but POST (`MaintenanceController::saveData`).

use serde_json::{json, Value};

use super::statistics::socket_command;
use crate::app::App;
use crate::request::{ApiRequest, ApiResponse};

fn post_str(req: &ApiRequest, key: &str) -> String {
    match req.post.get(key) {
        Some(Value::String(s)) => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

pub async fn handle(app: &App, req: &ApiRequest, action: &str) -> ApiResponse {
    let (what, value_key) = match action {
        "serverweight" => ("weight", "weight"),
        "serverstate" => ("state", "state"),
        _ => return ApiResponse::not_found(),
    };
    if !req.is_post() {
        return ApiResponse::json(
            json!({"status": "unavailable", "message": "only accept POST Requests."}),
        );
    }
    let (backend, server, value) = (
        post_str(req, "backend"),
        post_str(req, "server"),
        post_str(req, value_key),
    );
    let bad = |s: &str| s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == ';');
    if bad(&backend) || bad(&server) || bad(&value) {
        return ApiResponse::json(
            json!({"status": "error", "message": "backend, server and value are required"}),
        );
    }
    let sock = app.runner.dir().join("haproxy.sock");
    let command = format!("set server {backend}/{server} {what} {value}");
    match socket_command(&sock, &command).await {
        Some(out) if out.trim().is_empty() => ApiResponse::json(json!({"status": "ok"})),
        Some(out) => ApiResponse::json(json!({"status": "error", "message": out.trim()})),
        None => ApiResponse::json(
            json!({"status": "error", "message": "HAProxy socket does not exist, service may be stopped"}),
        ),
    }
}
