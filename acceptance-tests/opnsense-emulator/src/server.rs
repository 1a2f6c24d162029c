//! HTTP(S) front door: auth, faults, logging, and the emulator's own admin endpoints.
//!
//! hyper is driven directly (one HTTP/1.1 connection task per client) rather than through a router, because the
//! emulator needs control a router hides: closing a connection without an answer (the "lost reply" faults: the
//! service returns an error and hyper drops the connection), OPNsense's own route matching, and byte-exact bodies.
//!
//! Auth as on the box: no `Authorization` header → 302 to `/?url=<uri>` (the session login path); a wrong key or
//! secret → 401 `{"status":401,"message":"Authentication Failed"}` after the configured padding (2 s on a real box).
//!
//! Admin endpoints (no auth; the emulator only listens where tests put it):
//! - `GET /__emulator/faults` → rules; `POST /__emulator/faults` with a [`crate::faults::FaultRule`] as JSON, e.g.
//!   `{"endpoint":"haproxy/settings/addServer","kind":"drop_after","times":1}` or `{"kind":"delay","ms":500}`
//!   (kinds: `status500`, `delay`, `drop_before`, `drop_after`, `restart` with `down_ms`); `DELETE
//!   /__emulator/faults` clears them.
//! - `POST /__emulator/restart` with `{"down_ms": N}`: restart the API now (see [`FaultKind::Restart`]).
//! - `GET /__emulator/haproxy.cfg` → the live (deployed) haproxy configuration.
//! - `GET /__emulator/calls` → every API call so far (`method`, `path`, `status`); `DELETE` clears the list.
//! - `GET /__emulator/state` → the saved state as JSON.
//! - `POST /__emulator/hasync/sync` → the plain HA sync the box runs by itself after changes (sections copied to
//!   the peer, no service reconfigured there); `POST /xmlrpc.php` is the peer's side of it (see `api::hasync`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::app::{App, CallRecord};
use crate::faults::{FaultKind, FaultRule};
use crate::request::{self, ApiRequest, ApiResponse, Method};

/// Error returned to hyper to make it close the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by fault injection")
    }
}

impl std::error::Error for DropConnection {}

fn to_hyper(r: ApiResponse) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(r.status)
        .header("content-type", r.content_type);
    if let Some(l) = &r.location {
        b = b.header("location", l);
    }
    b.body(Full::new(Bytes::from(r.body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn plain(status: u16, ct: &'static str, body: Vec<u8>) -> ApiResponse {
    ApiResponse {
        status,
        content_type: ct,
        body,
        location: None,
    }
}

/// Constant-time-ish comparison so the emulator does not leak which part of a secret matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

enum Auth {
    Ok,
    Missing,
    Bad,
}

fn check_auth(app: &App, header: Option<&str>) -> Auth {
    let Some(h) = header else {
        return Auth::Missing;
    };
    let Some((_, token)) = h.split_once(' ') else {
        return Auth::Bad;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
        return Auth::Bad;
    };
    let Some(pos) = decoded.iter().position(|b| *b == b':') else {
        return Auth::Bad;
    };
    let (key, secret) = (&decoded[..pos], &decoded[pos + 1..]);
    if same(key, app.cfg.api_key.as_bytes()) & same(secret, app.cfg.api_secret.as_bytes()) {
        Auth::Ok
    } else {
        Auth::Bad
    }
}

async fn admin(app: &App, method: &hyper::Method, path: &str, body: &[u8]) -> ApiResponse {
    match (method.as_str(), path) {
        ("GET", "/__emulator/faults") => ApiResponse::json(json!(app.faults.list())),
        ("POST", "/__emulator/faults") => match serde_json::from_slice::<FaultRule>(body) {
            Ok(rule) => {
                app.faults.add(rule);
                ApiResponse::json(json!({"status": "ok"}))
            }
            Err(e) => {
                ApiResponse::with_status(400, json!({"status": "error", "message": e.to_string()}))
            }
        },
        ("POST", "/__emulator/restart") => {
            let ms = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("down_ms").and_then(Value::as_u64))
                .unwrap_or(1000);
            let _ = app.restarts.send(Duration::from_millis(ms));
            ApiResponse::json(json!({"status": "restarting", "down_ms": ms}))
        }
        ("DELETE", "/__emulator/faults") => {
            app.faults.clear();
            ApiResponse::json(json!({"status": "ok"}))
        }
        ("GET", "/__emulator/haproxy.cfg") => match std::fs::read(app.runner.live_path()) {
            Ok(b) => plain(200, "text/plain; charset=UTF-8", b),
            Err(_) => plain(
                404,
                "text/plain; charset=UTF-8",
                b"no haproxy configuration deployed\n".to_vec(),
            ),
        },
        ("GET", "/__emulator/calls") => {
            let calls = app.calls.lock().unwrap_or_else(|e| e.into_inner()).clone();
            ApiResponse::json(json!(calls))
        }
        ("DELETE", "/__emulator/calls") => {
            app.calls.lock().unwrap_or_else(|e| e.into_inner()).clear();
            ApiResponse::json(json!({"status": "ok"}))
        }
        ("POST", "/__emulator/hasync/sync") => match crate::api::hasync::sync(app).await {
            Ok(sections) => ApiResponse::json(json!({"synced": sections})),
            Err(e) => ApiResponse::with_status(502, json!({"error": e})),
        },
        ("GET", "/__emulator/state") => {
            let st = app.snapshot().await;
            ApiResponse::json(serde_json::to_value(&st).unwrap_or(Value::Null))
        }
        _ => ApiResponse::not_found(),
    }
}

async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let path = uri.path().to_string();
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let auth_header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = match Limited::new(req.into_body(), 16 * 1024 * 1024)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(DropConnection),
    };

    if path.starts_with("/__emulator/") {
        return Ok(to_hyper(admin(&app, &method, &path, &body).await));
    }
    let faults = app.faults.take(&path);
    let mut drop_after = false;
    let mut restart = None;
    for f in &faults {
        match f {
            FaultKind::Delay { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
            FaultKind::DropBefore => {
                log_call(
                    &app,
                    &method,
                    &path_and_query,
                    0,
                    started,
                    "dropped before handling",
                );
                return Err(DropConnection);
            }
            FaultKind::DropAfter => drop_after = true,
            FaultKind::Restart { down_ms } => {
                drop_after = true;
                restart = Some(Duration::from_millis(*down_ms));
            }
            FaultKind::Status500 => {}
        }
    }
    // The HA peer's side of the sync: faults reach it like any call (an unreachable peer drops the push too).
    if path == "/xmlrpc.php" && method == hyper::Method::POST {
        let resp = if faults.contains(&FaultKind::Status500) {
            ApiResponse::unexpected()
        } else {
            crate::api::hasync::xmlrpc(&app, auth_header.as_deref(), &body).await
        };
        log_call(&app, &method, &path_and_query, resp.status, started, "");
        if let Some(down) = restart {
            let _ = app.restarts.send(down);
        }
        if drop_after {
            return Err(DropConnection);
        }
        return Ok(to_hyper(resp));
    }
    let resp = if faults.contains(&FaultKind::Status500) {
        ApiResponse::unexpected()
    } else {
        match check_auth(&app, auth_header.as_deref()) {
            Auth::Missing => ApiResponse {
                status: 302,
                content_type: "text/html; charset=UTF-8",
                body: Vec::new(),
                location: Some(format!("/?url={path_and_query}")),
            },
            Auth::Bad => {
                tokio::time::sleep(app.cfg.auth_failure_delay).await;
                ApiResponse::with_status(
                    401,
                    json!({"status": 401, "message": "Authentication Failed"}),
                )
            }
            Auth::Ok => {
                let m = match method.as_str() {
                    "GET" => Method::Get,
                    "POST" => Method::Post,
                    _ => Method::Other,
                };
                match request::parse_body(content_type.as_deref(), &body) {
                    Err(r) => r,
                    Ok(post) => {
                        let query = request::parse_urlencoded(uri.query().unwrap_or("").as_bytes());
                        let api = ApiRequest {
                            method: m,
                            path: path.clone(),
                            uri: path_and_query.clone(),
                            query,
                            post,
                        };
                        crate::api::dispatch(&app, &api).await
                    }
                }
            }
        }
    };
    if drop_after {
        log_call(
            &app,
            &method,
            &path_and_query,
            resp.status,
            started,
            if restart.is_some() {
                "reply lost: the API restarts"
            } else {
                "reply dropped after handling"
            },
        );
        if let Some(down) = restart {
            let _ = app.restarts.send(down);
        }
        return Err(DropConnection);
    }
    log_call(&app, &method, &path_and_query, resp.status, started, "");
    Ok(to_hyper(resp))
}

fn log_call(
    app: &App,
    method: &hyper::Method,
    uri: &str,
    status: u16,
    started: Instant,
    note: &str,
) {
    app.calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(CallRecord {
            method: method.to_string(),
            path: uri.to_string(),
            status,
        });
    if app.cfg.log_calls {
        let ms = started.elapsed().as_millis();
        if note.is_empty() {
            eprintln!("opnsense-emulator: {method} {uri} -> {status} ({ms} ms)");
        } else {
            eprintln!("opnsense-emulator: {method} {uri} -> {status} ({ms} ms, {note})");
        }
    }
}

/// Accepts connections until `shutdown` turns true; then aborts every open connection. A restart request
/// ([`FaultKind::Restart`]) cuts every open connection, closes the listener for its down time (new connections are
/// refused) and binds the same address again.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut restarts = app.take_restart_requests();
    let mut listener = Some(listener);
    let mut conns = JoinSet::new();
    while let Some(l) = listener.as_ref() {
        let accepted = tokio::select! {
            a = l.accept() => a,
            down = async {
                match restarts.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                let down = down.unwrap_or_default();
                let addr = match l.local_addr() {
                    Ok(a) => a,
                    Err(_) => break,
                };
                // Closed for the down time: new connections are refused.
                drop(listener.take());
                conns.abort_all();
                if app.cfg.log_calls {
                    eprintln!("opnsense-emulator: API restarting, down for {} ms", down.as_millis());
                }
                tokio::select! {
                    _ = tokio::time::sleep(down) => {}
                    _ = shutdown.changed() => break,
                }
                // Drain restart requests that came in while down (one restart at a time).
                if let Some(r) = restarts.as_mut() {
                    while r.try_recv().is_ok() {}
                }
                listener = rebind(addr, &mut shutdown).await;
                continue;
            }
            _ = shutdown.changed() => break,
        };
        let Ok((stream, _peer)) = accepted else {
            continue;
        };
        let app = app.clone();
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(app.clone(), req));
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acc) => {
                    if let Ok(tls_stream) = acc.accept(stream).await {
                        let _ = builder
                            .serve_connection(TokioIo::new(tls_stream), svc)
                            .await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                }
            }
        });
        while conns.try_join_next().is_some() {}
    }
    conns.abort_all();
}

/// Binds `addr` again after a restart (retrying briefly: the old socket may linger for a moment).
async fn rebind(
    addr: std::net::SocketAddr,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<TcpListener> {
    for _ in 0..100 {
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(e) => tracing::warn!("rebinding {addr} after restart: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = shutdown.changed() => return None,
        }
    }
    None
}
