//! High availability: `core/hasync` (the settings), `core/hasync_status` (sync and remote service actions) and the
//! backup's side of the sync, `/xmlrpc.php`.
//!
//! What a client can observe on a real pair, and what this reproduces:
//!
//! - `core/hasync/get|set` is a plain MVC model (`Hasync.xml`: peer address, user, password, the list of items to
//!   sync); `core/hasync/reconfigure` applies pfsync and answers `{"status": "ok"}`.
//! - The sync is `rc.filter_synchronize`: for every chosen item it sends the item's config sections to the peer's
//!   `xmlrpc.php` (`opnsense.restore_config_section`), which REPLACES those sections there. It does not reconfigure
//!   any service on the peer: after a plain sync the backup's haproxy still runs the old configuration until
//!   something reconfigures it (what users report in opnsense/core #7498). The box runs that plain sync on its own
//!   after changes; here a test asks for it with `POST /__emulator/hasync/sync`.
//! - `virtualip`: only CARP VIPs are sent, each with its `advskew` raised by 100 (at most 254) unless it is 0, so
//!   the backup loses the election to the master; VIPs marked `nosync` stay local. The backup keeps its own
//!   non-CARP VIPs.
//! - `core/hasync_status/restart/<service>` (and `restartAll`) first runs that sync, then restarts the service on
//!   the peer (configd `system ha exec`). `start/<service>` syncs the same way and then starts the service on the
//!   peer, which leaves a running one alone: the provider uses it as "sync now" and then configtests and
//!   reconfigures the peer's HAProxy through the peer's own API.
//!
//! The wire format between the two emulators is JSON over HTTP or HTTPS (the real one is XML-RPC over the web
//! GUI's HTTPS): no client of the API sees it. With an `https://` peer the certificate is not checked unless
//! `verifypeer` is set, as on OPNsense (whose default is off); checking it is not emulated and is refused. The peer checks the user and password like the real `xmlrpc.php`.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::app::App;
use crate::model::{self, Ctx, Validations};
use crate::request::{ApiRequest, ApiResponse, Method};
use crate::schema;
use crate::store::{ModelData, State};

const SECTION: &str = "hasync";

fn values(st: &State) -> BTreeMap<String, String> {
    let sec = schema::hasync().section(SECTION).expect("hasync section");
    let mut m = model::defaults(sec);
    for f in &sec.fields {
        if let Some(v) = st.hasync.values.get(&format!("{SECTION}.{}", f.name)) {
            m.insert(f.name.clone(), v.clone());
        }
    }
    m
}

fn failed() -> ApiResponse {
    ApiResponse::json(json!({"result": "failed"}))
}

/// `core/hasync/{get,set,reconfigure}`.
pub async fn settings(app: &App, req: &ApiRequest, action: &str) -> ApiResponse {
    let sec = schema::hasync().section(SECTION).expect("hasync section");
    match action {
        "get" => {
            app.read(|st| {
                let ctx = Ctx {
                    data: &st.hasync,
                    interfaces: &app.cfg.interfaces,
                };
                ApiResponse::json(
                    json!({ SECTION: Value::Object(model::render_item(sec, &values(st), &ctx)) }),
                )
            })
            .await
        }
        "set" => {
            app.write(|st| {
                if !req.is_post() {
                    return (failed(), false);
                }
                let Some(Value::Object(input)) = req.post.get(SECTION) else {
                    return (failed(), false);
                };
                let mut vals = values(st);
                let Ok(changed) = model::apply_input(sec, &mut vals, input) else {
                    return (ApiResponse::unexpected(), false);
                };
                let snapshot = st.hasync.clone();
                let ctx = Ctx {
                    data: &snapshot,
                    interfaces: &app.cfg.interfaces,
                };
                let v: Validations = model::validate(sec, &vals, Some(&changed), &ctx, SECTION);
                if !v.is_empty() {
                    return (
                        ApiResponse::json(json!({"result": "failed", "validations": v.to_json()})),
                        false,
                    );
                }
                for f in &changed {
                    let val = vals.get(f).cloned().unwrap_or_default();
                    st.hasync.values.insert(format!("{SECTION}.{f}"), val);
                }
                (ApiResponse::json(json!({"result": "saved"})), true)
            })
            .await
        }
        "reconfigure" => {
            if !req.is_post() {
                return ApiResponse::json(json!({"status": "failed"}));
            }
            ApiResponse::json(json!({"status": "ok"}))
        }
        _ => ApiResponse::not_found(),
    }
}

/// `core/hasync_status/{restart,restartAll,start}`: sync, then the service action on the peer.
pub async fn status(app: &App, req: &ApiRequest, action: &str, params: &[String]) -> ApiResponse {
    match action {
        "restart" | "restartall" | "start" => {
            if !req.is_post() {
                return ApiResponse::json(json!({"status": "failed"}));
            }
            let services: Vec<String> = if action == "restartall" {
                vec!["haproxy".into()]
            } else {
                params.first().cloned().into_iter().collect()
            };
            if let Err(e) = sync(app).await {
                tracing::warn!("HA sync failed: {e}");
                return ApiResponse::json(json!({"status": "failed", "message": e}));
            }
            for s in &services {
                // `start` of a running service does nothing on the peer (rc.d); `restart` reloads it.
                let verb = if action == "start" {
                    "start"
                } else {
                    "restart"
                };
                if let Err(e) = call_peer(
                    app,
                    "opnsense.restart_service",
                    json!({"service": s, "action": verb}),
                )
                .await
                {
                    tracing::warn!("HA restart of {s} failed: {e}");
                    return ApiResponse::json(json!({"status": "failed", "message": e}));
                }
            }
            ApiResponse::json(json!({"status": "ok", "count": services.len()}))
        }
        _ => ApiResponse::not_found(),
    }
}

/// The sections of the chosen sync items, as `rc.filter_synchronize` sends them.
fn transport_data(st: &State) -> Map<String, Value> {
    let vals = values(st);
    let items: Vec<&str> = vals
        .get("syncitems")
        .map(|s| s.split(',').filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    let mut out = Map::new();
    for item in items {
        let (key, data) = match item {
            "haproxy" => ("haproxy", st.haproxy.clone()),
            "aliases" => ("alias", st.alias.clone()),
            "rules" => ("filter", st.filter.clone()),
            "virtualip" => ("vip", carp_vips_for_backup(&st.vip)),
            _ => continue,
        };
        out.insert(
            key.into(),
            serde_json::to_value(data).expect("model data serialises"),
        );
    }
    out
}

/// Only CARP VIPs, not `nosync`, `advskew` + 100 (max 254) unless 0.
fn carp_vips_for_backup(vip: &ModelData) -> ModelData {
    let mut out = ModelData::default();
    for (section, items) in &vip.arrays {
        let kept: Vec<_> = items
            .iter()
            .filter(|i| i.get("mode") == "carp" && i.get("nosync") != "1")
            .cloned()
            .map(|mut i| {
                if let Ok(skew) = i.get("advskew").parse::<u32>() {
                    if skew != 0 {
                        i.values
                            .insert("advskew".into(), (skew + 100).min(254).to_string());
                    }
                }
                i
            })
            .collect();
        out.arrays.insert(section.clone(), kept);
    }
    out
}

/// The plain sync: the chosen sections replace the peer's. Errors are the words the box would log.
pub async fn sync(app: &App) -> Result<Vec<String>, String> {
    let st = app.snapshot().await;
    let data = transport_data(&st);
    if data.is_empty() {
        return Err("Nothing has been configured to be synched.".into());
    }
    let names = data.keys().cloned().collect();
    call_peer(app, "opnsense.restore_config_section", Value::Object(data)).await?;
    Ok(names)
}

/// `host:port` of the peer's web GUI from `synchronizetoip` (an address, `addr:port` or an `http://` or
/// `https://` URL), and whether it is HTTPS.
fn peer_addr(target: &str) -> Result<(String, bool), String> {
    if target.is_empty() {
        return Err("Config sync not being done because of missing sync IP.".into());
    }
    let (rest, tls) = match target.strip_prefix("https://") {
        Some(r) => (r, true),
        None => (target.strip_prefix("http://").unwrap_or(target), false),
    };
    let host = rest.split('/').next().unwrap_or(rest);
    let port = if tls { 443 } else { 80 };
    Ok(if host.contains(':') {
        (host.to_string(), tls)
    } else {
        (format!("{host}:{port}"), tls)
    })
}

/// verifypeer off: any certificate is accepted (OPNsense's default for the sync).
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

async fn tls_stream(tcp: tokio::net::TcpStream, addr: &str) -> std::io::Result<Box<dyn Stream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    let name =
        rustls::pki_types::ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    Ok(Box::new(s))
}

/// One call to the peer's `/xmlrpc.php` with the HA user and password.
async fn call_peer(app: &App, method: &str, params: Value) -> Result<Value, String> {
    let vals = {
        let st = app.snapshot().await;
        values(&st)
    };
    let (addr, tls) = peer_addr(
        vals.get("synchronizetoip")
            .map(String::as_str)
            .unwrap_or(""),
    )?;
    if tls && vals.get("verifypeer").map(String::as_str) == Some("1") {
        return Err(
            "verifying the peer's certificate is not emulated (set verifypeer to 0)".into(),
        );
    }
    let user = match vals.get("username").map(String::as_str) {
        Some("") | None => "root",
        Some(u) => u,
    };
    let password = vals.get("password").cloned().unwrap_or_default();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let body = json!({"method": method, "params": params}).to_string();
    let fail = |e: &dyn std::fmt::Display| {
        format!(
            "An error occurred while attempting XMLRPC sync with username {user} and {addr}: {e}"
        )
    };
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    .map_err(|e| fail(&e))?
    .map_err(|e| fail(&e))?;
    let mut s: Box<dyn Stream> = if tls {
        tls_stream(tcp, &addr).await.map_err(|e| fail(&e))?
    } else {
        Box::new(tcp)
    };
    let head = format!(
        "POST /xmlrpc.php HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.map_err(|e| fail(&e))?;
    s.write_all(body.as_bytes()).await.map_err(|e| fail(&e))?;
    let mut out = Vec::new();
    match tokio::time::timeout(std::time::Duration::from_secs(60), s.read_to_end(&mut out))
        .await
        .map_err(|e| fail(&e))?
    {
        Ok(_) => {}
        // a TLS peer that closes without close_notify after a whole answer
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => return Err(fail(&e)),
    }
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "An authentication failure occurred while trying to access {addr} ({method})."
        ));
    }
    serde_json::from_str(body).map_err(|e| fail(&e))
}

/// The backup's `/xmlrpc.php`: checks the HA user, then restores sections or runs a service action.
pub async fn xmlrpc(app: &App, auth_header: Option<&str>, body: &[u8]) -> ApiResponse {
    let ok = (|| {
        let (want_user, want_pw) = app.cfg.xmlrpc_credentials.as_ref()?;
        let token = auth_header?.strip_prefix("Basic ")?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (u, p) = text.split_once(':')?;
        (u == want_user && p == want_pw).then_some(())
    })()
    .is_some();
    if !ok {
        return ApiResponse::with_status(401, json!("Authentication failed"));
    }
    let Ok(call) = serde_json::from_slice::<Value>(body) else {
        return ApiResponse::with_status(400, json!("bad request"));
    };
    match call["method"].as_str() {
        Some("opnsense.restore_config_section") => {
            let params = call["params"].clone();
            app.write(|st| {
                let mut restored = Vec::new();
                for (key, data) in params.as_object().into_iter().flatten() {
                    let Ok(data) = serde_json::from_value::<ModelData>(data.clone()) else {
                        continue;
                    };
                    match key.as_str() {
                        "haproxy" => st.haproxy = data,
                        "alias" => st.alias = data,
                        "filter" => st.filter = data,
                        "vip" => {
                            for (section, carp) in data.arrays {
                                let items = st.vip.items_mut(&section);
                                items.retain(|i| i.get("mode") != "carp");
                                items.extend(carp);
                            }
                        }
                        _ => continue,
                    }
                    restored.push(key.clone());
                }
                (ApiResponse::json(json!({"restored": restored})), true)
            })
            .await
        }
        Some("opnsense.restart_service") => {
            let service = call["params"]["service"].as_str().unwrap_or_default();
            if service != "haproxy" {
                return ApiResponse::json(json!({"response": "unknown service"}));
            }
            let verb = match call["params"]["action"].as_str() {
                Some("start") => "start",
                _ => "restart",
            };
            let path = format!("/api/haproxy/service/{verb}");
            let req = ApiRequest {
                method: Method::Post,
                path: path.clone(),
                uri: path,
                query: Map::new(),
                post: Map::new(),
            };
            super::haproxy::service(app, &req, verb).await
        }
        _ => ApiResponse::with_status(400, json!("unknown method")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Item;

    fn vip(mode: &str, skew: &str, nosync: &str) -> Item {
        Item {
            uuid: format!("{mode}-{skew}-{nosync}"),
            values: [("mode", mode), ("advskew", skew), ("nosync", nosync)]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn only_carp_vips_go_to_the_backup_with_a_higher_skew() {
        let mut d = ModelData::default();
        d.items_mut("vip").extend([
            vip("carp", "0", "0"),
            vip("carp", "20", "0"),
            vip("carp", "200", "0"),
            vip("carp", "5", "1"),
            vip("ipalias", "0", "0"),
        ]);
        let out = carp_vips_for_backup(&d);
        let skews: Vec<&str> = out.items("vip").iter().map(|i| i.get("advskew")).collect();
        assert_eq!(skews, ["0", "120", "254"]);
    }

    #[test]
    fn peer_addresses() {
        assert_eq!(
            peer_addr("http://127.0.0.1:8443/").unwrap(),
            ("127.0.0.1:8443".to_string(), false)
        );
        assert_eq!(
            peer_addr("10.0.9.2").unwrap(),
            ("10.0.9.2:80".to_string(), false)
        );
        assert!(peer_addr("").is_err());
        assert_eq!(
            peer_addr("https://10.0.9.2").unwrap(),
            ("10.0.9.2:443".to_string(), true)
        );
    }
}
