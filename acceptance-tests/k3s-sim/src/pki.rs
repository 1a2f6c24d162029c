//! The cluster's certificate authorities, leaf certificates and join tokens.
//!
//! A k3s cluster has (among others) a server CA that signs the serving certificates and a client CA that signs
//! client certificates (admin kubeconfig, kubelets). All servers share both CAs: a joining server downloads them in
//! the bootstrap data, which is what makes a cert issued by one server trusted when an agent talks to another.
//!
//! The secure token `K10<sha256 of the CA bundle>::server:<password>` pins the server CA: a joiner fetches
//! `/cacerts` without verification and compares its SHA-256 with the hash in the token before trusting anything.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use sha2::{Digest, Sha256};

/// A PKI error.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen failed.
    #[error("certificate generation: {0}")]
    Gen(#[from] rcgen::Error),
    /// A PEM or DER document could not be parsed.
    #[error("invalid certificate: {0}")]
    Parse(String),
}

/// A certificate and its private key, both PEM.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct CertKey {
    /// Certificate PEM.
    pub cert: String,
    /// Private key PEM (PKCS#8).
    pub key: String,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl CertKey {
    /// A new self-signed CA named `<prefix>@<unix time>` as k3s names its CAs.
    pub fn new_ca(prefix: &str) -> Result<CertKey, PkiError> {
        let key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name
            .push(DnType::CommonName, format!("{prefix}@{}", unix_now()));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::CrlSign,
        ];
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(3650);
        let cert = p.self_signed(&key)?;
        Ok(CertKey {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    fn issue(&self, mut p: CertificateParams) -> Result<CertKey, PkiError> {
        let ca_key = KeyPair::from_pem(&self.key)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert, ca_key)?;
        let key = KeyPair::generate()?;
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - time::Duration::hours(1);
        p.not_after = now + time::Duration::days(365);
        let mut serial = [0u8; 16];
        rand::Rng::fill(&mut rand::thread_rng(), &mut serial[..]);
        serial[0] &= 0x7f;
        p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let cert = p.signed_by(&key, &issuer)?;
        Ok(CertKey {
            cert: cert.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A serving certificate for `sans` (IPs become IP SANs, the rest DNS SANs), in the given order.
    pub fn issue_server(&self, cn: &str, sans: &[String]) -> Result<CertKey, PkiError> {
        let mut p = CertificateParams::new(sans.to_vec())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name.push(DnType::OrganizationName, "k3s");
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(p)
    }

    /// A client certificate `CN=cn, O=orgs…`.
    pub fn issue_client(&self, cn: &str, orgs: &[&str]) -> Result<CertKey, PkiError> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        for o in orgs {
            p.distinguished_name.push(DnType::OrganizationName, *o);
        }
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(p)
    }
}

/// Hex SHA-256 of a byte string.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The DER documents in a PEM bundle.
pub fn pem_certs(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, PkiError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Parse(e.to_string()))
}

/// Seconds from now until the first certificate in `pem` expires (negative when it has).
pub fn cert_seconds_left(pem: &str) -> Result<i64, PkiError> {
    let ders = pem_certs(pem)?;
    let der = ders
        .first()
        .ok_or_else(|| PkiError::Parse("no certificate".into()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(cert.validity().not_after.timestamp() - now)
}

/// The SANs of the first certificate in `pem`, in certificate order (IPs printed as Go prints them).
pub fn cert_sans(pem: &str) -> Result<Vec<String>, PkiError> {
    let ders = pem_certs(pem)?;
    let der = ders
        .first()
        .ok_or_else(|| PkiError::Parse("no certificate".into()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Parse(e.to_string()))?;
    let mut out = vec![];
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for n in &ext.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => out.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if b.len() == 4 {
                        out.push(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string());
                    } else if b.len() == 16 {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(b);
                        out.push(std::net::Ipv6Addr::from(a).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// The subject CN and O values of a DER certificate (client identity).
pub fn subject_of(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let orgs = cert
        .subject()
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Some((cn, orgs))
}

/// A join token in one of its forms.
#[derive(Clone, Debug, PartialEq)]
pub struct Token {
    /// The CA hash of a secure token.
    pub ca_hash: Option<String>,
    /// `server` or `node` (absent in the short form).
    pub username: Option<String>,
    /// The password (the short form is the password alone).
    pub password: String,
}

/// Parse a short (`<password>`) or secure (`K10<hash>::<user>:<password>`) token.
pub fn parse_token(s: &str) -> Token {
    let s = s.trim();
    if let Some(rest) = s.strip_prefix("K10") {
        if let Some((hash, creds)) = rest.split_once("::") {
            let (user, pw) = match creds.split_once(':') {
                Some((u, p)) => (Some(u.to_string()), p.to_string()),
                None => (None, creds.to_string()),
            };
            return Token {
                ca_hash: Some(hash.to_string()),
                username: user,
                password: pw,
            };
        }
    }
    Token {
        ca_hash: None,
        username: None,
        password: s.to_string(),
    }
}

/// The secure server token for a CA bundle and password.
pub fn secure_token(ca_pem: &str, password: &str) -> String {
    format!("K10{}::server:{}", sha256_hex(ca_pem.as_bytes()), password)
}

/// A random hex secret of `n` bytes.
pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    rand::Rng::fill(&mut rand::thread_rng(), &mut b[..]);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_forms() {
        let t = parse_token("secret");
        assert_eq!(t.ca_hash, None);
        assert_eq!(t.password, "secret");
        let t = parse_token("K10abcd::server:pw:with:colons");
        assert_eq!(t.ca_hash.as_deref(), Some("abcd"));
        assert_eq!(t.username.as_deref(), Some("server"));
        assert_eq!(t.password, "pw:with:colons");
    }

    #[test]
    fn server_cert_carries_sans_in_order_and_secure_token_pins_ca() {
        let ca = CertKey::new_ca("k3s-server-ca").unwrap();
        let leaf = ca
            .issue_server(
                "k3s",
                &[
                    "10.0.3.2".into(),
                    "10.43.0.1".into(),
                    "127.0.0.1".into(),
                    "kubernetes".into(),
                ],
            )
            .unwrap();
        assert_eq!(
            cert_sans(&leaf.cert).unwrap(),
            vec!["10.0.3.2", "10.43.0.1", "127.0.0.1", "kubernetes"]
        );
        let tok = secure_token(&ca.cert, "pw");
        assert_eq!(
            parse_token(&tok).ca_hash.unwrap(),
            sha256_hex(ca.cert.as_bytes())
        );
        let client = ca
            .issue_client("system:admin", &["system:masters"])
            .unwrap();
        let der = pem_certs(&client.cert).unwrap();
        assert_eq!(
            subject_of(&der[0]).unwrap(),
            ("system:admin".into(), vec!["system:masters".into()])
        );
    }
}
