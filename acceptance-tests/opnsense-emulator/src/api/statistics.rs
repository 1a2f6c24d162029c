//! `haproxy/statistics/{counters,info,tables}`: os-haproxy's live statistics, read from the running haproxy's
//! admin socket, shaped the way the plugin's `queryStats.php` shapes them.
//!
//! Why the odd shapes are kept: clients must survive the real box, so the emulator reproduces what the plugin's
//! script does to haproxy's output rather than a tidy API — `show stat` becomes a JSON array of objects keyed by the
//! CSV header (every value a string, the trailing comma giving an extra `""` column, an added `id` =
//! `pxname/svname`), followed by `[null]` entries for the blank lines at the end of the socket answer; `show info`
//! becomes an object cut at the first `:` of each line; `show table` an array of `key: value` objects. When the
//! socket is absent (haproxy stopped) the script prints a sentence instead of JSON, so the controller answers
//! `null`.

use std::path::Path;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::App;
use crate::request::{ApiRequest, ApiResponse};

/// One admin-socket command, its raw answer, or `None` when haproxy is not there to answer.
pub(crate) async fn socket_command(sock: &Path, command: &str) -> Option<String> {
    let run = async {
        let mut s = tokio::net::UnixStream::connect(sock).await.ok()?;
        s.write_all(format!("{command}\n").as_bytes()).await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    tokio::time::timeout(Duration::from_secs(3), run)
        .await
        .ok()
        .flatten()
}

/// The lines as the script reads them: `#` removed, trimmed, plus the final empty read at end of stream.
fn script_lines(raw: &str) -> Vec<String> {
    let mut lines: Vec<String> = raw
        .split_inclusive('\n')
        .map(|l| l.replace('#', "").trim().to_string())
        .collect();
    lines.push(String::new());
    lines
}

/// Splits one CSV line (haproxy's `show stat` never quotes, but quoted fields are honoured anyway).
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

pub fn counters_from(raw: &str) -> Value {
    let lines = script_lines(raw);
    let Some((header, rows)) = lines.split_first() else {
        return Value::Array(vec![]);
    };
    let header = csv_fields(header);
    let mut out = Vec::new();
    for line in rows {
        if line.is_empty() {
            out.push(Value::Array(vec![Value::Null]));
            continue;
        }
        let fields = csv_fields(line);
        if fields.len() != header.len() {
            // array_combine fails on a length mismatch; the script would keep the bare list.
            out.push(Value::Array(
                fields.into_iter().map(Value::String).collect(),
            ));
            continue;
        }
        let mut obj: Map<String, Value> = header
            .iter()
            .cloned()
            .zip(fields.into_iter().map(Value::String))
            .collect();
        let px = obj.get("pxname").and_then(Value::as_str).unwrap_or("");
        if !px.is_empty() {
            let sv = obj.get("svname").and_then(Value::as_str).unwrap_or("");
            let id = format!("{px}/{sv}");
            obj.insert("id".into(), Value::String(id));
        }
        out.push(Value::Object(obj));
    }
    Value::Array(out)
}

pub fn info_from(raw: &str) -> Value {
    let mut out = Map::new();
    for line in script_lines(raw) {
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split(':');
        let key = parts.next().unwrap_or("").trim().to_string();
        let value = parts.next().unwrap_or("").trim().to_string();
        out.insert(key, Value::String(value));
    }
    Value::Object(out)
}

pub fn tables_from(raw: &str) -> Value {
    let mut out = Vec::new();
    for line in script_lines(raw) {
        if line.is_empty() {
            continue;
        }
        let mut items = Map::new();
        for value in line.split(',') {
            let mut kv = value.trim().splitn(3, ':');
            let k = kv.next().unwrap_or("").to_string();
            let v = kv.next().unwrap_or("").trim().to_string();
            items.insert(k, Value::String(v));
        }
        out.push(Value::Object(items));
    }
    Value::Array(out)
}

pub async fn handle(app: &App, _req: &ApiRequest, action: &str) -> ApiResponse {
    let (command, shape): (&str, fn(&str) -> Value) = match action {
        "counters" => ("show stat", counters_from),
        "info" => ("show info", info_from),
        "tables" => ("show table", tables_from),
        _ => return ApiResponse::not_found(),
    };
    let sock = app.runner.dir().join("haproxy.sock");
    match socket_command(&sock, command).await {
        Some(raw) => ApiResponse::json(shape(&raw)),
        None => ApiResponse::json(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_stat_is_shaped_like_the_plugin_script() {
        let raw = "# pxname,svname,status,check_status,\nk3s,k3s-1,UP,L4OK,\nk3s,BACKEND,UP,,\n\n";
        let v = counters_from(raw);
        let a = v.as_array().unwrap();
        assert_eq!(a[0]["id"], "k3s/k3s-1");
        assert_eq!(a[0]["status"], "UP");
        assert_eq!(a[0][""], "");
        assert_eq!(a[1]["check_status"], "");
        assert_eq!(a[2], serde_json::json!([null]));
        assert_eq!(a.len(), 4);
    }

    #[test]
    fn show_info_cuts_at_the_first_colon() {
        let v = info_from("Name: HAProxy\nVersion: 2.6.12\nUptime: 0d 0h00m05s\n\n");
        assert_eq!(v["Name"], "HAProxy");
        assert_eq!(v["Uptime"], "0d 0h00m05s");
        let t = tables_from("# table: fe, type: ip, size:100, used:0\n\n");
        assert_eq!(t[0]["table"], "fe");
        assert_eq!(t[0]["size"], "100");
    }
}
