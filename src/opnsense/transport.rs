//! HTTP transport to the OPNsense API: auth, TLS trust, timeouts, retries, call accounting.
//!
//! Why this shape:
//! - OPNsense's web GUI certificate is self-signed with no IP SAN, so "verify against a pinned PEM" must work when
//!   the box is addressed by IP. A pinned certificate that equals the presented leaf is accepted without a hostname
//!   check (that *is* the identity check); anything else is verified as a chain to the pinned CA(s) with hostname.
//! - Retries are bounded, with exponential backoff, and only for calls the caller marks idempotent (reads, `set*`
//!   with a client-chosen UUID, deletes, service actions). A lost reply to a `set` retried later is harmless.
//!   Failures that cannot heal are never retried: a refused certificate ([`Error::Trust`], told apart from other
//!   connect errors by rustls's own error in the source chain) and 401/403 (`Error::Auth`).
//! - The secret lives only inside a sensitive `Authorization` header value; it is never formatted, and transport
//!   errors are rendered without the URL.
//! - Every request is counted per path kind so benchmarks can show refresh is O(types), not O(objects).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use serde_json::Value;

use super::error::{Error, Result};
use super::wire::short;
use crate::secret::Secret;

/// Retry policy for idempotent calls.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Total attempts including the first (1 = no retry).
    pub max_attempts: u32,
    pub min_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self.min_backoff.saturating_mul(1u32 << attempt.min(16));
        let base = exp.min(self.max_backoff);
        // Up to 25% jitter so parallel resources do not retry in lockstep.
        let jitter_ms = (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
        base + base.mul_f64(jitter_ms as f64 / 4000.0)
    }
}

/// Everything needed to reach one OPNsense. The provider's `opnsense` block resolves straight into this (there is
/// no second configuration type to copy it from), so what `terraform plan` validated is what the client uses.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL, e.g. `https://192.168.1.1` or `https://fw.lan:8443` (a trailing `/api` is accepted).
    pub url: String,
    pub api_key: String,
    /// The API secret; it only ever leaves this type inside the `Authorization` header.
    pub api_secret: Secret,
    /// PEM of the firewall's certificate (pinned leaf) or of the CA that signed it.
    pub ca_cert_pem: Option<String>,
    /// Accept any certificate (lab use only).
    pub insecure_skip_verify: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// The HA secondary (the sync peer), reached through its own API with its own key: after every HAProxy batch
    /// the primary syncs to it and its haproxy is configtested and reconfigured. Only ever one level deep.
    pub secondary: Option<Box<ClientConfig>>,
}

impl ClientConfig {
    pub fn new(
        url: impl Into<String>,
        api_key: impl Into<String>,
        api_secret: impl Into<Secret>,
    ) -> Self {
        ClientConfig {
            url: url.into(),
            api_key: api_key.into(),
            api_secret: api_secret.into(),
            ca_cert_pem: None,
            insecure_skip_verify: false,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            secondary: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }
}

/// Whether a call may be repeated after a transient failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Idempotency {
    Idempotent,
    Once,
}

/// The HTTP side of the client. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<TransportInner>,
}

struct TransportInner {
    http: reqwest::Client,
    base: String,
    retry: RetryPolicy,
    calls: Mutex<BTreeMap<String, u64>>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

fn normalize_base(url: &str) -> Result<String> {
    let parsed = reqwest::Url::parse(url.trim()).map_err(|e| Error::Config(format!("url: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err(Error::Config(format!(
            "url: scheme must be https or http, not {:?}",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::Config(
            "url: must not contain credentials; use api_key/api_secret".into(),
        ));
    }
    if parsed.host_str().is_none() {
        return Err(Error::Config("url: missing host".into()));
    }
    let mut s = parsed.as_str().trim_end_matches('/').to_string();
    if let Some(stripped) = s.strip_suffix("/api") {
        s = stripped.to_string();
    }
    Ok(s)
}

impl Transport {
    pub fn new(cfg: &ClientConfig) -> Result<Self> {
        let base = normalize_base(&cfg.url)?;
        if cfg.api_key.is_empty() || cfg.api_secret.expose().is_empty() {
            return Err(Error::Config(
                "api_key and api_secret must not be empty".into(),
            ));
        }
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            cfg.api_key,
            cfg.api_secret.expose()
        ));
        let mut auth = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| {
            Error::Config("api_key/api_secret contain characters not allowed in a header".into())
        })?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);

        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "terraform-provider-homelab/",
                env!("CARGO_PKG_VERSION")
            ));
        if cfg.insecure_skip_verify {
            builder = builder.danger_accept_invalid_certs(true);
        } else if let Some(pem) = &cfg.ca_cert_pem {
            builder = builder.use_preconfigured_tls(pinned::client_config(pem)?);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Config(format!("http client: {}", e.without_url())))?;
        Ok(Transport {
            inner: Arc::new(TransportInner {
                http,
                base,
                retry: cfg.retry.clone(),
                calls: Mutex::new(BTreeMap::new()),
            }),
        })
    }

    /// Base URL without `/api`.
    pub fn base(&self) -> &str {
        &self.inner.base
    }

    /// Requests sent so far, keyed by `METHOD module/controller/action` (UUIDs stripped), attempts included.
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        self.inner.calls.lock().unwrap().clone()
    }

    /// Total requests sent so far.
    pub fn total_calls(&self) -> u64 {
        self.inner.calls.lock().unwrap().values().sum()
    }

    fn count(&self, method: Method, path: &str) {
        let key: Vec<&str> = path.split('/').take(3).collect();
        let key = format!("{} {}", method.as_str(), key.join("/"));
        *self.inner.calls.lock().unwrap().entry(key).or_default() += 1;
    }

    /// GET `/api/<path>` (always idempotent).
    pub async fn get(&self, path: &str) -> Result<Value> {
        self.call(Method::Get, path, None, Idempotency::Idempotent)
            .await
    }

    /// GET `/api/<path>` once, with its own `timeout` (no retry): for the configure-time probe.
    pub async fn get_once(&self, path: &str, timeout: Duration) -> Result<Value> {
        self.send(Method::Get, path, None, 1, Some(timeout)).await
    }

    /// POST `/api/<path>` with a JSON body (`{}` when none: OPNsense answers an empty JSON body with 400).
    pub async fn post(&self, path: &str, body: Option<&Value>, idem: Idempotency) -> Result<Value> {
        self.call(Method::Post, path, body, idem).await
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        idem: Idempotency,
    ) -> Result<Value> {
        let policy = &self.inner.retry;
        let max = if idem == Idempotency::Idempotent {
            policy.max_attempts.max(1)
        } else {
            1
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let res = self.send(method, path, body, attempt, None).await;
            match res {
                Err(e) if e.is_transient() && attempt < max => {
                    let wait = policy.backoff(attempt - 1);
                    tracing::debug!(path, attempt, ?wait, error = %e, "retrying OPNsense call");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        attempt: u32,
        timeout: Option<Duration>,
    ) -> Result<Value> {
        let url = format!("{}/api/{}", self.inner.base, path.trim_start_matches('/'));
        self.count(method, path);
        let req = match method {
            Method::Get => self.inner.http.get(&url),
            Method::Post => {
                let empty = Value::Object(Default::default());
                let bytes = serde_json::to_vec(body.unwrap_or(&empty)).expect("json");
                self.inner
                    .http
                    .post(&url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(bytes)
            }
        };
        let req = match timeout {
            Some(t) => req.timeout(t),
            None => req,
        };
        let resp = req.send().await.map_err(|e| match trust_failure(&e) {
            Some(message) => Error::Trust {
                method: method.as_str(),
                path: path.to_string(),
                message,
            },
            None => Error::Transport {
                method: method.as_str(),
                path: path.to_string(),
                attempts: attempt,
                message: describe_reqwest(&e),
            },
        })?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| Error::Transport {
            method: method.as_str(),
            path: path.to_string(),
            attempts: attempt,
            message: describe_reqwest(&e),
        })?;
        let json: Option<Value> = serde_json::from_slice(&bytes).ok();
        classify(path, status, json, &bytes)
    }
}

fn describe_reqwest(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    // Walk the sources (they carry the TLS/IO reason) but never the URL.
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// When the request failed because the server's certificate was refused, rustls's reason (with a hint), else
/// `None`. rustls's error sits in the source chain inside `io::Error`s (nested, here), whose `source()` skips the
/// error they wrap, so each one is also opened with `get_ref`.
fn trust_failure(e: &reqwest::Error) -> Option<String> {
    use std::error::Error as _;
    fn find_rustls<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        let inner = e.downcast_ref::<std::io::Error>()?.get_ref()?;
        find_rustls(inner)
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = src {
        let tls = find_rustls(s);
        if let Some(rustls::Error::InvalidCertificate(cert)) = tls {
            let hint = match cert {
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. } => {
                    "the certificate does not name the URL's host"
                }
                rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. }
                | rustls::CertificateError::NotValidYet
                | rustls::CertificateError::NotValidYetContext { .. } => {
                    "the certificate is outside its validity period (or this machine's clock is wrong)"
                }
                _ => "the certificate is neither the pinned one nor issued by a trusted CA",
            };
            return Some(format!("invalid peer certificate: {cert:?} ({hint})"));
        }
        src = s.source();
    }
    None
}

/// Map an HTTP answer to a value or a typed error.
fn classify(path: &str, status: u16, json: Option<Value>, raw: &[u8]) -> Result<Value> {
    let message = || match &json {
        Some(v) => v
            .get("errorMessage")
            .or_else(|| v.get("message"))
            .and_then(Value::as_str)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| short(v)),
        None => String::from_utf8_lossy(&raw[..raw.len().min(300)])
            .trim()
            .to_string(),
    };
    match status {
        200..=299 => json.ok_or_else(|| Error::Decode {
            path: path.to_string(),
            detail: format!(
                "not JSON: {}",
                String::from_utf8_lossy(&raw[..raw.len().min(200)])
            ),
        }),
        301 | 302 | 303 | 307 | 308 => Err(Error::Auth {
            status,
            path: path.to_string(),
            message: "redirected to the login page (no or unusable credentials)".into(),
        }),
        401 | 403 => Err(Error::Auth {
            status,
            path: path.to_string(),
            message: message(),
        }),
        404 => Err(Error::EndpointMissing {
            path: path.to_string(),
        }),
        _ => {
            // A UserException (errorTitle present) is OPNsense's own deliberate refusal: keep title and message.
            if let Some(title) = json
                .as_ref()
                .and_then(|v| v.get("errorTitle"))
                .and_then(Value::as_str)
            {
                if status == 500 && title.to_ascii_lowercase().contains("in use") {
                    return Err(Error::InUse {
                        object: "",
                        uuid: String::new(),
                        title: title.trim().to_string(),
                        message: message(),
                    });
                }
                // A deliberate refusal is not transient: never retried.
                return Err(Error::Api {
                    status,
                    path: path.to_string(),
                    message: format!("{}: {}", title.trim(), message()),
                    retryable: false,
                });
            }
            Err(Error::Api {
                status,
                path: path.to_string(),
                message: message(),
                retryable: status >= 500 || status == 429,
            })
        }
    }
}

mod pinned {
    //! rustls configuration that trusts exactly the pinned PEM(s).
    use super::*;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct Pinned {
        certs: Vec<CertificateDer<'static>>,
        chain: Option<Arc<dyn ServerCertVerifier>>,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            server_name: &ServerName<'_>,
            ocsp: &[u8],
            now: UnixTime,
        ) -> std::result::Result<ServerCertVerified, rustls::Error> {
            if self.certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
                return Ok(ServerCertVerified::assertion());
            }
            match &self.chain {
                Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
                None => Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer,
                )),
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    pub fn client_config(pem: &str) -> Result<rustls::ClientConfig> {
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut pem.as_bytes())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Config(format!("ca_cert_pem: {e}")))?;
        if certs.is_empty() {
            return Err(Error::Config(
                "ca_cert_pem: no CERTIFICATE block found".into(),
            ));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in &certs {
            // A self-signed leaf may not be acceptable as a trust anchor; it is still pinned exactly.
            let _ = roots.add(c.clone());
        }
        let chain: Option<Arc<dyn ServerCertVerifier>> = if roots.is_empty() {
            None
        } else {
            rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .ok()
            .map(|v| v as Arc<dyn ServerCertVerifier>)
        };
        let verifier = Arc::new(Pinned {
            certs,
            chain,
            provider: provider.clone(),
        });
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Config(format!("tls: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opnsense::error::SettingsProblem;
    use crate::testing::http::{Reply, TestServer};
    use serde_json::json;

    fn cfg(url: &str) -> ClientConfig {
        let mut c = ClientConfig::new(url, "key+/", "s3cr3t+/value");
        c.timeout = Duration::from_millis(500);
        c.retry = RetryPolicy {
            max_attempts: 3,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(20),
        };
        c
    }

    #[test]
    fn base_url_rules() {
        assert_eq!(normalize_base("https://fw.lan/").unwrap(), "https://fw.lan");
        assert_eq!(
            normalize_base("https://fw.lan:8443/api").unwrap(),
            "https://fw.lan:8443"
        );
        assert!(normalize_base("ftp://fw").is_err());
        let e = normalize_base("https://key:supersecret@fw.lan")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("supersecret"), "{e}");
        assert!(normalize_base("not a url").is_err());
    }

    #[test]
    fn secret_is_never_formatted() {
        let c = cfg("https://fw.lan");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("s3cr3t"), "{dbg}");
    }

    #[tokio::test]
    async fn sends_basic_auth_and_json() {
        let srv = TestServer::start(|req| {
            let auth = req.header("authorization").unwrap_or_default();
            let expect = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("key+/:s3cr3t+/value")
            );
            assert_eq!(auth, expect);
            if req.method == "POST" {
                assert_eq!(
                    req.header("content-type").as_deref(),
                    Some("application/json")
                );
                assert_eq!(req.body, b"{}");
            }
            Reply::json(200, json!({"ok": req.path}))
        })
        .await;
        let t = Transport::new(&cfg(&srv.url())).unwrap();
        assert_eq!(
            t.get("core/x/y").await.unwrap(),
            json!({"ok": "/api/core/x/y"})
        );
        t.post("haproxy/service/reconfigure", None, Idempotency::Once)
            .await
            .unwrap();
        assert_eq!(t.total_calls(), 2);
        assert_eq!(t.call_counts().get("GET core/x/y"), Some(&1));
    }

    #[tokio::test]
    async fn retries_transient_errors_with_a_bound() {
        let srv = TestServer::start(|req| {
            if req.seq < 2 {
                Reply::json(503, json!({"errorMessage": "busy"}))
            } else {
                Reply::json(200, json!({"result": "saved"}))
            }
        })
        .await;
        let t = Transport::new(&cfg(&srv.url())).unwrap();
        assert_eq!(
            t.post("a/b/setX/1", None, Idempotency::Idempotent)
                .await
                .unwrap()["result"],
            "saved"
        );
        assert_eq!(srv.requests(), 3);

        // Never more than max_attempts, and a non-idempotent call is tried once.
        let srv = TestServer::start(|_| {
            Reply::json(
                500,
                json!({"errorMessage": "Unexpected error, check log for details"}),
            )
        })
        .await;
        let t = Transport::new(&cfg(&srv.url())).unwrap();
        let e = t.get("a/b/c").await.unwrap_err();
        assert!(matches!(e, Error::Api { status: 500, .. }), "{e:?}");
        assert_eq!(srv.requests(), 3);
        t.post("a/b/addX", None, Idempotency::Once)
            .await
            .unwrap_err();
        assert_eq!(srv.requests(), 4);
    }

    #[tokio::test]
    async fn timeouts_are_transient_and_bounded() {
        let srv =
            TestServer::start(|_| Reply::json(200, json!({})).delay(Duration::from_secs(3))).await;
        let t = Transport::new(&cfg(&srv.url())).unwrap();
        let started = std::time::Instant::now();
        let e = t.get("a/b/c").await.unwrap_err();
        assert!(matches!(e, Error::Transport { attempts: 3, .. }), "{e:?}");
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[tokio::test]
    async fn connection_refused_is_a_transport_error_without_secret() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let t = Transport::new(&cfg(&format!("http://127.0.0.1:{port}"))).unwrap();
        let e = t.get("a/b/c").await.unwrap_err();
        assert!(matches!(e, Error::Transport { .. }), "{e:?}");
        assert!(!format!("{e} {e:?}").contains("s3cr3t"));
    }

    #[tokio::test]
    async fn error_shapes() {
        let srv = TestServer::start(|req| match req.path.as_str() {
            "/api/auth" => Reply::json(401, json!({"status":401,"message":"Authentication Failed"})),
            "/api/noauth" => Reply::raw(302, "", "").header("Location", "/?url=/api/noauth"),
            "/api/missing" => Reply::json(404, json!({"errorMessage":"Endpoint not found"})),
            "/api/inuse" => Reply::json(500, json!({"errorMessage":"HAProxy - web pool {HAProxy.backends.backend.x}\n","errorTitle":"Item servers.server {first server} in use by:","errorLevel":"error"})),
            "/api/user" => Reply::json(500, json!({"errorMessage":"denied","errorTitle":"Access","errorLevel":"error"})),
            "/api/html" => Reply::raw(200, "text/html", "<html>"),
            _ => Reply::json(400, json!({"status":400,"message":"Invalid JSON syntax"})),
        })
        .await;
        let t = Transport::new(&cfg(&srv.url())).unwrap();
        let before = srv.requests();
        let e = t.get("auth").await.unwrap_err();
        assert!(
            matches!(&e, Error::Auth { status: 401, message, .. } if message == "Authentication Failed"),
            "{e:?}"
        );
        assert_eq!(e.settings_problem(), Some(SettingsProblem::Credentials));
        assert_eq!(srv.requests(), before + 1, "a 401 is not retried");
        assert!(matches!(
            t.get("noauth").await.unwrap_err(),
            Error::Auth { status: 302, .. }
        ));
        assert!(matches!(
            t.get("missing").await.unwrap_err(),
            Error::EndpointMissing { .. }
        ));
        let e = t.get("inuse").await.unwrap_err();
        assert!(
            matches!(&e, Error::InUse { title, .. } if title.contains("in use by")),
            "{e:?}"
        );
        let before = srv.requests();
        assert!(matches!(
            t.get("user").await.unwrap_err(),
            Error::Api {
                status: 500,
                retryable: false,
                ..
            }
        ));
        assert_eq!(
            srv.requests(),
            before + 1,
            "a deliberate refusal is not retried"
        );
        assert!(matches!(
            t.get("html").await.unwrap_err(),
            Error::Decode { .. }
        ));
        assert!(matches!(
            t.get("other").await.unwrap_err(),
            Error::Api { status: 400, .. }
        ));
    }

    #[tokio::test]
    async fn tls_pinning() {
        let (srv, pem) = TestServer::start_tls(|_| Reply::json(200, json!({"tls": true}))).await;
        let url = srv.url().replace("127.0.0.1", "localhost");
        // Pinned leaf, connected by IP: accepted although the cert has no IP SAN.
        let mut c = cfg(&srv.url());
        c.ca_cert_pem = Some(pem.clone());
        assert_eq!(
            Transport::new(&c).unwrap().get("x/y/z").await.unwrap()["tls"],
            true
        );
        // Not pinned, default roots: refused, as a trust failure, once (a retry cannot help).
        let before = srv.requests();
        let c = cfg(&url);
        let t = Transport::new(&c).unwrap();
        let e = t.get("x/y/z").await.unwrap_err();
        assert!(matches!(e, Error::Trust { .. }), "{e:?}");
        assert_eq!(e.settings_problem(), Some(SettingsProblem::Trust));
        assert_eq!(t.total_calls(), 1, "a trust failure is not retried");
        assert_eq!(srv.requests(), before, "no request got through");
        // A different pinned certificate: refused as a trust failure, not retried.
        let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
        let mut c = cfg(&url);
        c.ca_cert_pem = Some(other.cert.pem());
        let t = Transport::new(&c).unwrap();
        let e = t.get("x/y/z").await.unwrap_err();
        assert!(
            matches!(&e, Error::Trust { message, .. } if message.contains("invalid peer certificate")),
            "{e:?}"
        );
        assert_eq!(t.total_calls(), 1);
        // Insecure: accepted.
        let mut c = cfg(&url);
        c.insecure_skip_verify = true;
        assert!(Transport::new(&c).unwrap().get("x/y/z").await.is_ok());
        // Garbage PEM: a config error.
        let mut c = cfg(&url);
        c.ca_cert_pem = Some("nope".into());
        assert!(matches!(Transport::new(&c), Err(Error::Config(_))));
    }
}
