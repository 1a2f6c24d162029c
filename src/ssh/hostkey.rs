//! Host-key verification: pinned keys, known_hosts, or explicit trust-on-first-use.
//!
//! russh calls our handler with the key the server proved it holds; accepting it is our decision. Verification is on
//! by default (unlike Terraform's `connection` block) because a provider that pushes a cluster token and a sudo
//! password to a host must know it is the right host. A mismatch names both fingerprints (they are public) so the
//! user can tell a re-installed host from an attack.

use std::path::Path;

use russh::keys::{Algorithm, HashAlg, PublicKey};

use super::config::HostKeyPolicy;
use super::error::SshError;

/// SHA256 fingerprint of a key in OpenSSH's notation (`SHA256:…`).
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The key as an OpenSSH public-key line without comment (`ssh-ed25519 AAAA…`), fit for pinning.
pub fn openssh_line(key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    k.to_openssh()
        .unwrap_or_else(|_| fingerprint(key))
        .trim()
        .to_owned()
}

/// One entry of a pinned-key list.
#[derive(Debug, Clone)]
enum Pin {
    Key(Box<PublicKey>),
    Fingerprint(String),
}

impl Pin {
    fn matches(&self, presented: &PublicKey) -> bool {
        match self {
            Pin::Key(k) => k.key_data() == presented.key_data(),
            Pin::Fingerprint(fp) => *fp == fingerprint(presented),
        }
    }
    fn describe(&self) -> String {
        match self {
            Pin::Key(k) => format!("{} {}", k.algorithm().as_str(), fingerprint(k)),
            Pin::Fingerprint(fp) => fp.clone(),
        }
    }
}

fn parse_pins(text: &str, host: &str) -> Result<Vec<Pin>, SshError> {
    let mut pins = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if line.starts_with("SHA256:") {
            pins.push(Pin::Fingerprint(
                line.split_whitespace().next().unwrap_or(line).to_owned(),
            ));
            continue;
        }
        // Accept `algo base64 [comment]`, and also a known_hosts-style `hostpattern algo base64`.
        let parsed =
            PublicKey::from_openssh(line).or_else(|e| match line.split_once(char::is_whitespace) {
                Some((_, rest)) => PublicKey::from_openssh(rest.trim()),
                None => Err(e),
            });
        match parsed {
            Ok(k) => pins.push(Pin::Key(Box::new(k))),
            Err(_) => {
                return Err(SshError::Config {
                    host: host.to_owned(),
                    reason: format!(
                        "pinned host key {line:?} is neither an OpenSSH public-key line nor a SHA256: fingerprint"
                    ),
                })
            }
        }
    }
    if pins.is_empty() {
        return Err(SshError::Config {
            host: host.to_owned(),
            reason: "the pinned host key is empty".to_owned(),
        });
    }
    Ok(pins)
}

fn known_hosts_entries(
    path: &Path,
    address: &str,
    port: u16,
    host: &str,
) -> Result<Vec<PublicKey>, SshError> {
    if !path.exists() {
        return Err(SshError::Config {
            host: host.to_owned(),
            reason: format!("known_hosts file {} does not exist", path.display()),
        });
    }
    russh::keys::known_hosts::known_host_keys_path(address, port, path)
        .map(|v| v.into_iter().map(|(_, k)| k).collect())
        .map_err(|e| SshError::Config {
            host: host.to_owned(),
            reason: format!("cannot read known_hosts file {}: {e}", path.display()),
        })
}

/// Host-key algorithms to offer first so that the server presents the kind of key we already know (as the OpenSSH
/// client does): with an RSA key pinned, a server that also has an ed25519 key must still show the RSA one.
pub(crate) fn preferred_algorithms(
    policy: &HostKeyPolicy,
    address: &str,
    port: u16,
) -> Vec<Algorithm> {
    let known: Vec<Algorithm> = match policy {
        HostKeyPolicy::Pinned(text) => parse_pins(text, "")
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| match p {
                Pin::Key(k) => Some(k.algorithm()),
                Pin::Fingerprint(_) => None,
            })
            .collect(),
        HostKeyPolicy::KnownHosts(path) => known_hosts_entries(path, address, port, "")
            .unwrap_or_default()
            .iter()
            .map(|k| k.algorithm())
            .collect(),
        HostKeyPolicy::TrustOnFirstUse => Vec::new(),
    };
    let defaults: Vec<Algorithm> = russh::Preferred::DEFAULT.key.to_vec();
    let family = |a: &Algorithm, b: &Algorithm| match (a, b) {
        (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
        _ => a == b,
    };
    let mut out: Vec<Algorithm> = Vec::new();
    for k in &known {
        for d in &defaults {
            if family(k, d) && !out.contains(d) {
                out.push(d.clone());
            }
        }
    }
    for d in defaults {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// Decides whether `presented` is acceptable for the host under `policy`.
pub(crate) fn verify(
    policy: &HostKeyPolicy,
    address: &str,
    port: u16,
    host: &str,
    presented: &PublicKey,
) -> Result<(), SshError> {
    match policy {
        HostKeyPolicy::TrustOnFirstUse => Ok(()),
        HostKeyPolicy::Pinned(text) => {
            let pins = parse_pins(text, host)?;
            if pins.iter().any(|p| p.matches(presented)) {
                Ok(())
            } else {
                Err(SshError::HostKeyMismatch {
                    host: host.to_owned(),
                    expected: pins.iter().map(Pin::describe).collect(),
                    presented: format!(
                        "{} {}",
                        presented.algorithm().as_str(),
                        fingerprint(presented)
                    ),
                })
            }
        }
        HostKeyPolicy::KnownHosts(path) => {
            let entries = known_hosts_entries(path, address, port, host)?;
            if entries.iter().any(|k| k.key_data() == presented.key_data()) {
                Ok(())
            } else if entries.is_empty() {
                Err(SshError::HostKeyUnknown {
                    host: host.to_owned(),
                    path: path.display().to_string(),
                    presented: format!(
                        "{} {}",
                        presented.algorithm().as_str(),
                        fingerprint(presented)
                    ),
                })
            } else {
                Err(SshError::HostKeyMismatch {
                    host: host.to_owned(),
                    expected: entries
                        .iter()
                        .map(|k| format!("{} {}", k.algorithm().as_str(), fingerprint(k)))
                        .collect(),
                    presented: format!(
                        "{} {}",
                        presented.algorithm().as_str(),
                        fingerprint(presented)
                    ),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two throwaway public keys (public halves only; not secrets).
    const K1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKFbE8e4ST2Y/PCLIYxgI7UOaiMYcyfeR+AuPmoes1VA one";
    const K2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIdpAQileV8VApDkX8krAjXAu0xSy8ja5J2PnrqBbrl2 two";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    #[test]
    fn pinned_line_fingerprint_and_mismatch() {
        let k1 = key(K1);
        let k2 = key(K2);
        let pol = HostKeyPolicy::Pinned(K1.to_owned());
        assert!(verify(&pol, "h", 22, "h:22", &k1).is_ok());
        let pol_fp = HostKeyPolicy::Pinned(fingerprint(&k1));
        assert!(verify(&pol_fp, "h", 22, "h:22", &k1).is_ok());
        // comment and known_hosts-style prefix are ignored
        let pol_kh = HostKeyPolicy::Pinned(format!("[h]:2222 {}", openssh_line(&k1)));
        assert!(verify(&pol_kh, "h", 2222, "h:2222", &k1).is_ok());
        match verify(&pol, "h", 22, "h:22", &k2) {
            Err(SshError::HostKeyMismatch {
                expected,
                presented,
                ..
            }) => {
                assert_eq!(expected, vec![format!("ssh-ed25519 {}", fingerprint(&k1))]);
                assert_eq!(presented, format!("ssh-ed25519 {}", fingerprint(&k2)));
            }
            other => panic!("expected mismatch, got {other:?}"),
        }
        assert!(matches!(
            verify(
                &HostKeyPolicy::Pinned("garbage".into()),
                "h",
                22,
                "h:22",
                &k1
            ),
            Err(SshError::Config { .. })
        ));
    }

    #[test]
    fn openssh_line_drops_comment() {
        assert_eq!(openssh_line(&key(K1)), K1.trim_end_matches(" one"));
    }
}
