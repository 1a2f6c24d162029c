//! The go-plugin handshake: how Terraform starts us, finds our socket and trusts our certificate.
//!
//! Terraform runs the binary with no arguments and a handful of environment variables, then reads exactly
//! one line from our stdout: `1|6|unix|<socket>|grpc|<base64 DER server cert>`. Everything after that is gRPC
//! over the socket. The rules this module enforces, and why:
//!
//! - **Magic cookie.** Without `TF_PLUGIN_MAGIC_COOKIE` we were started by a human, not Terraform: print a
//!   hint and exit 1 instead of hanging on a socket nobody will dial.
//! - **Protocol version.** `PLUGIN_PROTOCOL_VERSIONS` lists what the host speaks, in any order (it comes from
//!   a Go map). We speak only 6.
//! - **Unix socket** in a fresh 0700 directory (under `PLUGIN_UNIX_SOCKET_DIR` if set): no port scanning, no
//!   Nagle stalls, and the file system keeps other users out.
//! - **AutoMTLS.** When `PLUGIN_CLIENT_CERT` is set the host expects TLS with the self-signed certificate we
//!   print. The host's own client certificate (go-plugin: ECDSA P-521, CA:TRUE) cannot be verified by
//!   rustls+ring, so Go usually sends none; we do not require one, and if one *is* presented we accept only
//!   the exact certificate the host announced.
//! - **stdout is sacred.** Exactly one line, flushed; logs go to stderr (see [`super::log`]).
//! - **Shutdown** (`plugin.GRPCController`) answers and exits the process at once; otherwise Terraform waits
//!   two seconds per provider process before killing it.
//!
//! `--debug` serves plaintext (reattached providers get no TLS) and prints a `TF_REATTACH_PROVIDERS` value.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use base64::Engine;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// Environment variable carrying the go-plugin magic cookie.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// The value Terraform (and OpenTofu) put in [`MAGIC_COOKIE_KEY`].
pub const MAGIC_COOKIE_VALUE: &str =
    "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// go-plugin core protocol version (first field of the handshake line).
pub const CORE_PROTOCOL_VERSION: u32 = 1;
/// Terraform plugin protocol major version we speak.
pub const APP_PROTOCOL_VERSION: u32 = 6;
/// The provider source address used in reattach/debug output and messages, for a provider named `name`.
pub fn provider_address(name: &str) -> String {
    format!("terraform.local/{name}/{name}")
}

/// Why the plugin cannot start.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Started without the magic cookie (by a human, most likely).
    #[error(
        "This binary is a plugin for Terraform and is not meant to be run directly.\n\
         Terraform starts it on demand; configure it in a `required_providers` block with\n\
         source \"{address}\". To debug it, run it with `--debug` and follow the instructions."
    )]
    MissingCookie {
        /// The provider's source address, for the message.
        address: String,
    },
    /// The host does not offer protocol 6.
    #[error(
        "The host offered plugin protocol versions {offered:?}, but this provider only speaks protocol 6 \
         (Terraform 1.0 or newer). Upgrade Terraform."
    )]
    UnsupportedProtocol {
        /// The raw `PLUGIN_PROTOCOL_VERSIONS` value.
        offered: String,
    },
    /// `PLUGIN_CLIENT_CERT` is not a PEM certificate.
    #[error("PLUGIN_CLIENT_CERT does not contain a PEM certificate: {0}")]
    ClientCert(String),
    /// Certificate generation or TLS setup failed.
    #[error("could not set up TLS: {0}")]
    Tls(String),
    /// Socket or directory setup failed.
    #[error("could not create the plugin socket: {0}")]
    Io(#[from] std::io::Error),
}

/// What the environment told us about how to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEnv {
    /// DER of the host's client certificate when AutoMTLS is on.
    pub client_cert: Option<Vec<u8>>,
    /// Parent directory for the socket directory.
    pub socket_dir: Option<PathBuf>,
}

/// Checks the handshake environment. `get` looks up an environment variable (injectable for tests); `address`
/// is the provider's source address, named in the message for a human who started the binary by hand.
pub fn check_env(
    get: impl Fn(&str) -> Option<String>,
    address: &str,
) -> Result<PluginEnv, HandshakeError> {
    if get(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
        return Err(HandshakeError::MissingCookie {
            address: address.to_string(),
        });
    }
    // An absent list means "the host did not negotiate" (very old go-plugin); a present one must contain 6.
    if let Some(offered) = get("PLUGIN_PROTOCOL_VERSIONS") {
        let has6 = offered
            .split(',')
            .any(|v| v.trim().parse::<u32>() == Ok(APP_PROTOCOL_VERSION));
        if !has6 {
            return Err(HandshakeError::UnsupportedProtocol { offered });
        }
    }
    let client_cert = match get("PLUGIN_CLIENT_CERT").filter(|s| !s.trim().is_empty()) {
        None => None,
        Some(pem) => Some(pem_to_der(&pem)?),
    };
    let socket_dir = get("PLUGIN_UNIX_SOCKET_DIR")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from);
    Ok(PluginEnv {
        client_cert,
        socket_dir,
    })
}

fn pem_to_der(pem: &str) -> Result<Vec<u8>, HandshakeError> {
    let mut reader = std::io::BufReader::new(pem.as_bytes());
    let first = rustls_pemfile::certs(&mut reader)
        .next()
        .ok_or_else(|| HandshakeError::ClientCert("no CERTIFICATE block".into()))?
        .map_err(|e| HandshakeError::ClientCert(e.to_string()))?;
    Ok(first.as_ref().to_vec())
}

/// The handshake line Terraform reads from stdout.
pub fn handshake_line(socket: &Path, server_cert_der: Option<&[u8]>) -> String {
    let cert = server_cert_der
        .map(|der| base64::engine::general_purpose::STANDARD_NO_PAD.encode(der))
        .unwrap_or_default();
    format!(
        "{CORE_PROTOCOL_VERSION}|{APP_PROTOCOL_VERSION}|unix|{}|grpc|{cert}",
        socket.display()
    )
}

/// The `TF_REATTACH_PROVIDERS` value for debug mode.
pub fn reattach_json(socket: &Path, pid: u32, address: &str) -> String {
    serde_json::json!({
        address: {
            "Protocol": "grpc",
            "ProtocolVersion": APP_PROTOCOL_VERSION,
            "Pid": pid,
            "Test": true,
            "Addr": {"Network": "unix", "String": socket.display().to_string()},
        }
    })
    .to_string()
}

static SOCKET_DIR: OnceLock<PathBuf> = OnceLock::new();

/// Removes the socket directory and exits the process immediately (no destructors, no waiting).
pub fn exit_now(code: i32) -> ! {
    if let Some(dir) = SOCKET_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
    std::process::exit(code)
}

/// Longest socket path the kernel accepts (`sun_path` is 108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Creates a private (0700) directory holding `plugin.sock` and binds it.
///
/// The directory goes under `parent` (`PLUGIN_UNIX_SOCKET_DIR`) or the temp dir; if that would make the socket
/// path longer than a unix socket allows (a deep `TMPDIR`), it falls back to `/tmp`.
///
/// `name` (the provider's name) goes into the directory name, so a leftover directory says whose it was.
pub fn bind_socket(
    parent: Option<&Path>,
    name: &str,
) -> Result<(UnixListener, PathBuf), HandshakeError> {
    use std::os::unix::fs::DirBuilderExt;
    let mut parent = parent
        .map(Path::to_path_buf)
        .unwrap_or_else(std::env::temp_dir);
    // "tf-<name>-" + pid (≤ 10) + "-" + 12 hex + "/plugin.sock"
    if parent.as_os_str().len() + 1 + (name.len() + 4) + 10 + 1 + 12 + 12 > MAX_SOCKET_PATH {
        parent = PathBuf::from("/tmp");
    }
    let mut attempt = 0u32;
    let dir = loop {
        let rand = uuid::Uuid::new_v4().simple().to_string();
        let candidate = parent.join(format!("tf-{name}-{}-{}", std::process::id(), &rand[..12]));
        match std::fs::DirBuilder::new().mode(0o700).create(&candidate) {
            Ok(()) => break candidate,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 5 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    };
    let _ = SOCKET_DIR.set(dir.clone());
    let path = dir.join("plugin.sock");
    let listener = UnixListener::bind(&path)?;
    Ok((listener, path))
}

/// A self-signed server certificate for AutoMTLS: DER certificate and PKCS#8 key.
pub struct ServerCert {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

/// Generates the server certificate: SAN `localhost`, CA:TRUE (the host uses it as its own root).
pub fn generate_server_cert() -> Result<ServerCert, HandshakeError> {
    let tls = |e: rcgen::Error| HandshakeError::Tls(e.to_string());
    let key = rcgen::KeyPair::generate().map_err(tls)?;
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(tls)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "terraform-plugin");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
        rcgen::KeyUsagePurpose::KeyAgreement,
        rcgen::KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
        rcgen::ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::seconds(30);
    params.not_after = now + time::Duration::days(365);
    let cert = params.self_signed(&key).map_err(tls)?;
    Ok(ServerCert {
        cert_der: cert.der().as_ref().to_vec(),
        key_der: key.serialize_der(),
    })
}

/// Client-certificate policy for AutoMTLS: optional, and if present it must be exactly the announced one.
#[derive(Debug)]
struct PinnedClientCert {
    expected: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.expected.as_slice() {
            Ok(ClientCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The server config allows TLS 1.3 only (see `tls_config`).
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The certificate is the pinned one (checked in `verify_client_cert`). Verify with its raw public key:
        // webpki's end-entity parsing would reject go-plugin's CA:TRUE certificate outright.
        let spki = spki_of(cert.as_ref()).ok_or(rustls::Error::InvalidCertificate(
            rustls::CertificateError::BadEncoding,
        ))?;
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &rustls::pki_types::SubjectPublicKeyInfoDer::from(spki),
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

/// Reads one DER TLV at the start of `b`: (tag, whole TLV, content).
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    Some((tag, b.get(..end)?, b.get(hdr..end)?))
}

/// The DER SubjectPublicKeyInfo of an X.509 certificate (seventh element of tbsCertificate when the version
/// is present, sixth otherwise).
fn spki_of(cert: &[u8]) -> Option<&[u8]> {
    let (_, _, certificate) = der_tlv(cert)?;
    let (_, _, tbs) = der_tlv(certificate)?;
    let mut elements = Vec::new();
    let mut rest = tbs;
    while !rest.is_empty() {
        let (tag, whole, _) = der_tlv(rest)?;
        elements.push((tag, whole));
        rest = &rest[whole.len()..];
    }
    let skip = if elements.first()?.0 == 0xa0 { 6 } else { 5 };
    let (tag, spki) = *elements.get(skip)?;
    (tag == 0x30).then_some(spki)
}

/// Builds the rustls server configuration (TLS 1.3, ALPN h2) for AutoMTLS.
pub fn tls_config(
    server: &ServerCert,
    client_cert_der: Vec<u8>,
) -> Result<Arc<rustls::ServerConfig>, HandshakeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedClientCert {
        expected: client_cert_der,
        provider: provider.clone(),
    });
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server.key_der.clone()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| HandshakeError::Tls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![CertificateDer::from(server.cert_der.clone())], key)
        .map_err(|e| HandshakeError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

/// One accepted connection, plaintext or TLS, as tonic wants it.
pub enum Conn {
    /// Reattach/debug, or no AutoMTLS.
    Plain(UnixStream),
    /// AutoMTLS.
    Tls(Box<TlsStream<UnixStream>>),
}

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Accepts connections (TLS handshakes run concurrently, off the accept loop) and yields them to tonic.
pub fn incoming(
    listener: UnixListener,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<Conn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::error!(error = %e, "accepting a plugin connection failed");
                    continue;
                }
            };
            let tx = tx.clone();
            match &acceptor {
                None => {
                    if tx.send(Ok(Conn::Plain(stream))).await.is_err() {
                        return;
                    }
                }
                Some(acceptor) => {
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        match acceptor.accept(stream).await {
                            Ok(tls) => {
                                let _ = tx.send(Ok(Conn::Tls(Box::new(tls)))).await;
                            }
                            // A failed handshake concerns one connection only; keep serving.
                            Err(e) => {
                                tracing::warn!(error = %e, "TLS handshake with the host failed")
                            }
                        }
                    });
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Writes the one handshake line to stdout and flushes it.
pub fn announce(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn refuses_without_cookie_or_with_wrong_cookie() {
        assert!(matches!(
            check_env(env(&[("PLUGIN_PROTOCOL_VERSIONS", "6")]), "x"),
            Err(HandshakeError::MissingCookie { .. })
        ));
        assert!(matches!(
            check_env(env(&[(MAGIC_COOKIE_KEY, "nope")]), "x"),
            Err(HandshakeError::MissingCookie { .. })
        ));
        let msg = HandshakeError::MissingCookie {
            address: provider_address("x"),
        }
        .to_string();
        assert!(msg.contains("plugin for Terraform"), "{msg}");
        assert!(msg.contains("terraform.local/x/x"), "{msg}");
    }

    #[test]
    fn protocol_6_in_any_order() {
        for offered in ["6,5", "5,6", "6", " 5 , 6 "] {
            let e = env(&[
                (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
                ("PLUGIN_PROTOCOL_VERSIONS", offered),
            ]);
            assert!(check_env(e, "x").is_ok(), "{offered}");
        }
        for offered in ["5", "4,5", "", "66"] {
            let e = env(&[
                (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
                ("PLUGIN_PROTOCOL_VERSIONS", offered),
            ]);
            match check_env(e, "x") {
                Err(HandshakeError::UnsupportedProtocol { offered: o }) => assert_eq!(o, offered),
                other => panic!("{offered}: {other:?}"),
            }
        }
    }

    #[test]
    fn client_cert_and_socket_dir_are_read() {
        let cert = generate_server_cert().unwrap();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(&cert.cert_der)
        );
        let e = env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_PROTOCOL_VERSIONS", "6,5"),
            ("PLUGIN_CLIENT_CERT", &pem),
            ("PLUGIN_UNIX_SOCKET_DIR", "/run/x"),
        ]);
        let got = check_env(e, "x").unwrap();
        assert_eq!(got.client_cert.as_deref(), Some(cert.cert_der.as_slice()));
        assert_eq!(got.socket_dir, Some(PathBuf::from("/run/x")));
        let bad = env(&[
            (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE),
            ("PLUGIN_CLIENT_CERT", "garbage"),
        ]);
        assert!(matches!(
            check_env(bad, "x"),
            Err(HandshakeError::ClientCert(_))
        ));
    }

    #[test]
    fn handshake_line_format() {
        let line = handshake_line(
            Path::new("/tmp/d/plugin.sock"),
            Some(&[0xde, 0xad, 0xbe, 0xef]),
        );
        // STANDARD alphabet, no padding.
        assert_eq!(line, "1|6|unix|/tmp/d/plugin.sock|grpc|3q2+7w");
        assert_eq!(handshake_line(Path::new("/s"), None), "1|6|unix|/s|grpc|");
    }

    #[test]
    fn reattach_json_shape() {
        let v: serde_json::Value = serde_json::from_str(&reattach_json(
            Path::new("/tmp/s.sock"),
            42,
            "terraform.local/x/x",
        ))
        .unwrap();
        let p = &v["terraform.local/x/x"];
        assert_eq!(p["ProtocolVersion"], 6);
        assert_eq!(p["Pid"], 42);
        assert_eq!(p["Addr"]["Network"], "unix");
        assert_eq!(p["Addr"]["String"], "/tmp/s.sock");
    }

    #[tokio::test]
    async fn socket_dir_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let parent = std::env::temp_dir();
        let (_l, path) = bind_socket(Some(&parent), "homelab").unwrap();
        let dir = path.parent().unwrap();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::remove_dir_all(dir).unwrap();

        let deep = std::env::temp_dir().join("x".repeat(100));
        let (_l, path) = bind_socket(Some(&deep), "homelab").unwrap();
        assert!(
            path.to_string_lossy().starts_with("/tmp/tf-homelab-"),
            "{}",
            path.display()
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn pinned_verifier_accepts_only_the_announced_cert() {
        let a = generate_server_cert().unwrap();
        let b = generate_server_cert().unwrap();
        let v = PinnedClientCert {
            expected: a.cert_der.clone(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        assert!(!v.client_auth_mandatory());
        let now = UnixTime::now();
        assert!(v
            .verify_client_cert(&CertificateDer::from(a.cert_der.clone()), &[], now)
            .is_ok());
        assert!(v
            .verify_client_cert(&CertificateDer::from(b.cert_der.clone()), &[], now)
            .is_err());
        assert!(tls_config(&a, b.cert_der).is_ok());
    }

    #[derive(Debug)]
    struct PinnedServer {
        der: Vec<u8>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    }

    impl rustls::client::danger::ServerCertVerifier for PinnedServer {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &rustls::pki_types::ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            if end_entity.as_ref() == self.der.as_slice() {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(
                    "unexpected server certificate".into(),
                ))
            }
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.provider.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.provider.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    /// A real TLS handshake against our acceptor: no client certificate is fine, the announced one is fine,
    /// any other is refused.
    #[tokio::test]
    async fn tls_client_auth_is_optional_but_pinned() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let server = generate_server_cert().unwrap();
        let host_cert = generate_server_cert().unwrap(); // stands in for the host's client certificate
        let stranger = generate_server_cert().unwrap();
        let cfg = tls_config(&server, host_cert.cert_der.clone()).unwrap();
        let parent = std::env::temp_dir();
        let (listener, path) = bind_socket(Some(&parent), "homelab").unwrap();
        let mut conns = incoming(listener, Some(cfg));
        // Echo one byte on every accepted connection.
        tokio::spawn(async move {
            use futures::StreamExt;
            while let Some(Ok(mut c)) = conns.next().await {
                tokio::spawn(async move {
                    let mut b = [0u8; 1];
                    if c.read_exact(&mut b).await.is_ok() {
                        let _ = c.write_all(&b).await;
                        let _ = c.flush().await;
                    }
                });
            }
        });

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // Go trusts our CA:TRUE self-signed cert as its own root; rustls' webpki client would refuse a CA as an end
        // entity, so the test client pins the exact server certificate instead (what go-plugin effectively does).
        let pinned = Arc::new(PinnedServer {
            der: server.cert_der.clone(),
            provider: provider.clone(),
        });
        let client = |cert: Option<&ServerCert>| {
            let b = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(pinned.clone());
            let mut c = match cert {
                None => b.with_no_client_auth(),
                Some(c) => b
                    .with_client_auth_cert(
                        vec![CertificateDer::from(c.cert_der.clone())],
                        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone())),
                    )
                    .unwrap(),
            };
            c.alpn_protocols = vec![b"h2".to_vec()];
            tokio_rustls::TlsConnector::from(Arc::new(c))
        };
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let echo = |connector: tokio_rustls::TlsConnector| {
            let path = path.clone();
            let name = name.clone();
            async move {
                let sock = UnixStream::connect(&path).await?;
                let mut tls = connector.connect(name, sock).await?;
                tls.write_all(b"x").await?;
                tls.flush().await?;
                let mut b = [0u8; 1];
                tls.read_exact(&mut b).await?;
                Ok::<_, std::io::Error>(b[0])
            }
        };
        assert_eq!(
            echo(client(None)).await.unwrap(),
            b'x',
            "no client cert must work"
        );
        assert_eq!(
            echo(client(Some(&host_cert))).await.unwrap(),
            b'x',
            "the announced cert must work"
        );
        assert!(
            echo(client(Some(&stranger))).await.is_err(),
            "another cert must be refused"
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
