//! A minimal HTTP/1.1 client (plain or TLS) for the stand-in's own traffic.
//!
//! Joining servers and agents must fetch `/cacerts` *without* verification (to check its hash against the token),
//! then talk to the supervisor trusting only the cluster CA, sometimes with a client certificate; the server talks
//! to etcd's JSON gateway in plain HTTP. One small function over hyper's connection API covers all of it and keeps
//! us in control of trust (no system roots, no proxies from the environment).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::pki::{pem_certs, CertKey};

/// A client error.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Bad URL.
    #[error("invalid URL {0}")]
    Url(String),
    /// Connect / TLS / protocol error.
    #[error("{0}")]
    Transport(String),
    /// Timeout.
    #[error("request to {0} timed out")]
    Timeout(String),
}

/// How to trust the server's certificate.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Accept any certificate (only to fetch `/cacerts` before pinning it).
    Insecure,
    /// Trust exactly this CA bundle (PEM).
    Ca(String),
}

/// TLS settings of a request.
#[derive(Clone, Debug)]
pub struct Tls {
    /// Server trust.
    pub trust: Trust,
    /// Client certificate, if any.
    pub client: Option<CertKey>,
    /// Name to verify instead of the URL's host (an agent dialing its `:6444` proxy verifies `127.0.0.1`).
    pub server_name: Option<String>,
}

impl Tls {
    /// Trust a CA bundle, optionally with a client certificate.
    pub fn ca(pem: &str, client: Option<CertKey>) -> Tls {
        Tls {
            trust: Trust::Ca(pem.to_string()),
            client,
            server_name: None,
        }
    }
    /// Accept any server certificate.
    pub fn insecure() -> Tls {
        Tls {
            trust: Trust::Insecure,
            client: None,
            server_name: None,
        }
    }
}

/// A response.
#[derive(Debug)]
pub struct Resp {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The ring crypto provider (we build rustls without aws-lc).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(tls: &Tls) -> Result<rustls::ClientConfig, HttpError> {
    let p = provider();
    let b = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Transport(e.to_string()))?;
    let b = match &tls.trust {
        Trust::Insecure => b
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(p))),
        Trust::Ca(pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in pem_certs(pem).map_err(|e| HttpError::Transport(e.to_string()))? {
                roots
                    .add(c)
                    .map_err(|e| HttpError::Transport(e.to_string()))?;
            }
            b.with_root_certificates(roots)
        }
    };
    match &tls.client {
        None => Ok(b.with_no_client_auth()),
        Some(ck) => {
            let certs = pem_certs(&ck.cert).map_err(|e| HttpError::Transport(e.to_string()))?;
            let key = rustls_pemfile::private_key(&mut ck.key.as_bytes())
                .map_err(|e| HttpError::Transport(e.to_string()))?
                .ok_or_else(|| HttpError::Transport("no private key".into()))?;
            b.with_client_auth_cert(certs, key)
                .map_err(|e| HttpError::Transport(e.to_string()))
        }
    }
}

/// Split `scheme://host:port/path` into its parts.
pub fn split_url(url: &str) -> Result<(bool, String, u16, String), HttpError> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(HttpError::Url(url.to_string()));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (
            h.trim_start_matches('[').trim_end_matches(']').to_string(),
            p.parse().map_err(|_| HttpError::Url(url.to_string()))?,
        ),
        _ => (hostport.to_string(), if tls { 443 } else { 80 }),
    };
    Ok((tls, host, port, path))
}

/// Send one request (connection closed afterwards) with a 10 s timeout.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
    tls: Option<&Tls>,
) -> Result<Resp, HttpError> {
    tokio::time::timeout(
        Duration::from_secs(10),
        request_inner(method, url, headers, body, tls),
    )
    .await
    .map_err(|_| HttpError::Timeout(url.to_string()))?
}

async fn request_inner(
    method: &str,
    url: &str,
    headers: &[(&str, String)],
    body: Option<Vec<u8>>,
    tls: Option<&Tls>,
) -> Result<Resp, HttpError> {
    let (is_tls, host, port, path) = split_url(url)?;
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| HttpError::Transport(format!("dial tcp {host}:{port}: {e}")))?;
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("{host}:{port}"))
        .header("connection", "close");
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| HttpError::Transport(e.to_string()))?;
    let t = |e: hyper::Error| HttpError::Transport(e.to_string());
    let resp = if is_tls {
        let default = Tls::insecure();
        let tls = tls.unwrap_or(&default);
        let cfg = client_config(tls)?;
        let name = ServerName::try_from(tls.server_name.clone().unwrap_or_else(|| host.clone()))
            .map_err(|e| HttpError::Transport(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| HttpError::Transport(format!("tls: {e}")))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(t)?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(t)?
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(t)?;
        tokio::spawn(conn);
        send.send_request(req).await.map_err(t)?
    };
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(t)?
        .to_bytes()
        .to_vec();
    Ok(Resp { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("https://10.0.3.100:6443/cacerts").unwrap(),
            (true, "10.0.3.100".into(), 6443, "/cacerts".into())
        );
        assert_eq!(
            split_url("http://h").unwrap(),
            (false, "h".into(), 80, "/".into())
        );
        assert!(split_url("ftp://x").is_err());
    }
}
