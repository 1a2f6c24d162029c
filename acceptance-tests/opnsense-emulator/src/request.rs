//! One API call as the controllers see it, and the answer they give.
//!
//! Kept separate from the HTTP plumbing so the controllers are plain functions of (state, request) and the
//! transport-level quirks (JSON vs form bodies, the empty-JSON 400, invalid JSON = empty POST, `\/` escaping, the two
//! content types) are decided in one place, as `ApiControllerBase` and `www/api.php` do on the real box.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Other,
}

/// A parsed API request.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// Path without query string, e.g. `/api/haproxy/settings/getServer/<uuid>`.
    pub path: String,
    /// Path plus query, as the client sent it.
    pub uri: String,
    /// Query string parameters (bracket keys expanded into objects).
    pub query: Map<String, Value>,
    /// The POST data (`$_POST`): a JSON object body or form fields; empty when there was no usable body.
    pub post: Map<String, Value>,
}

impl ApiRequest {
    pub fn is_post(&self) -> bool {
        self.method == Method::Post
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    pub location: Option<String>,
}

/// Content type of normal controller output.
pub const CT_JSON: &str = "application/json; charset=UTF-8";
/// Content type of error bodies written by `api.php`.
pub const CT_ERROR: &str = "application/json;charset=utf-8";

/// `json_encode` as PHP does it by default: slashes escaped as `\/`.
pub fn php_json(v: &Value) -> Vec<u8> {
    let s = serde_json::to_string(v).unwrap_or_else(|_| "null".into());
    s.replace('/', "\\/").into_bytes()
}

impl ApiResponse {
    pub fn json(v: Value) -> Self {
        ApiResponse {
            status: 200,
            content_type: CT_JSON,
            body: php_json(&v),
            location: None,
        }
    }

    pub fn with_status(status: u16, v: Value) -> Self {
        ApiResponse {
            status,
            content_type: CT_JSON,
            body: php_json(&v),
            location: None,
        }
    }

    pub fn error(status: u16, v: Value) -> Self {
        ApiResponse {
            status,
            content_type: CT_ERROR,
            body: php_json(&v),
            location: None,
        }
    }

    pub fn not_found() -> Self {
        Self::error(
            404,
            serde_json::json!({"errorMessage": "Endpoint not found"}),
        )
    }

    pub fn unexpected() -> Self {
        Self::error(
            500,
            serde_json::json!({"errorMessage": "Unexpected error, check log for details"}),
        )
    }

    /// A UserException (HTTP 500 with title and level).
    pub fn user_error(message: &str, title: &str) -> Self {
        Self::error(
            500,
            serde_json::json!({"errorMessage": message, "errorTitle": title, "errorLevel": "error"}),
        )
    }
}

/// Expands `a[b][c]=v` style keys (PHP's `$_POST` / `$_GET` parsing) into nested objects.
pub fn parse_urlencoded(data: &[u8]) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in form_urlencoded::parse(data) {
        let mut parts: Vec<String> = Vec::new();
        match k.find('[') {
            Some(i) if k.ends_with(']') => {
                parts.push(k[..i].to_string());
                for p in k[i + 1..k.len() - 1].split("][") {
                    parts.push(p.to_string());
                }
            }
            _ => parts.push(k.to_string()),
        }
        insert_path(&mut out, &parts, Value::String(v.into_owned()));
    }
    out
}

fn insert_path(map: &mut Map<String, Value>, parts: &[String], v: Value) {
    if parts.len() == 1 {
        map.insert(parts[0].clone(), v);
        return;
    }
    let entry = map
        .entry(parts[0].clone())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(m) = entry {
        insert_path(m, &parts[1..], v);
    }
}

/// Outcome of reading a body: the `$_POST` map, or the 400 that an empty JSON body earns.
pub fn parse_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiResponse> {
    let ct = content_type.unwrap_or("").to_ascii_lowercase();
    if ct.contains("application/json") {
        if body.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(ApiResponse::with_status(
                400,
                serde_json::json!({"status": 400, "message": "Invalid JSON syntax"}),
            ));
        }
        return Ok(match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        });
    }
    if ct.contains("application/x-www-form-urlencoded") {
        return Ok(parse_urlencoded(body));
    }
    Ok(Map::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_brackets_nest_and_json_quirks_hold() {
        let m = parse_urlencoded(
            b"server%5Bname%5D=web_form&server[port]=81&sort[name]=desc&current=1",
        );
        assert_eq!(m["server"]["name"], "web_form");
        assert_eq!(m["server"]["port"], "81");
        assert_eq!(m["sort"]["name"], "desc");
        assert_eq!(m["current"], "1");
        assert_eq!(
            parse_body(Some("application/json"), b"")
                .unwrap_err()
                .status,
            400
        );
        assert!(parse_body(Some("application/json"), b"{\"server\": {")
            .unwrap()
            .is_empty());
        assert_eq!(
            php_json(&serde_json::json!({"a": "/x"})),
            b"{\"a\":\"\\/x\"}".to_vec()
        );
    }
}
