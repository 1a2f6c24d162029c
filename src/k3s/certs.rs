//! Certificate expiry on a k3s node: the files k3s keeps its certificates in, and when each expires.
//!
//! Why: k3s's leaf certificates live 365 days. k3s renews those that expire within 90 days when it starts, so a
//! node that is never restarted for a year ends up with an expired API or kubelet certificate (k3s#10865) and a
//! cluster that stops answering. The provider reads what the files really say and warns in a plan from 90 days
//! ahead; a restart or `k3s certificate rotate` renews them.
//!
//! How: one `awk` on the host prints the PEM blocks of every `*.crt` (a real k3s server has ~20), and the
//! provider parses the first certificate of each file itself. One `openssl x509 -enddate` per file cost 10-20 ms
//! of process start each, on the critical path of every refresh and create.

use super::error::K3sError;
use crate::ssh::Session;

/// Where k3s keeps certificates: server (API, etcd, clients) and agent (kubelet).
pub const CERT_DIRS: &[&str] = &[
    "/var/lib/rancher/k3s/server/tls",
    "/var/lib/rancher/k3s/server/tls/etcd",
    "/var/lib/rancher/k3s/agent",
];

/// Days ahead of an expiry from which a plan warns (k3s renews from the same point, at its next start).
pub const WARN_DAYS: i64 = 90;

/// One certificate file and the end of its validity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertExpiry {
    pub path: String,
    /// `notAfter`, seconds since the epoch.
    pub not_after: i64,
}

/// Every `*.crt` in [`CERT_DIRS`] with its expiry, soonest first (files that hold no readable certificate are
/// left out).
pub async fn expiries(session: &Session) -> Result<Vec<CertExpiry>, K3sError> {
    let out = session
        .run_sudo(&format!("{}\nexit 0\n", dump_script()), None)
        .await?;
    Ok(parse_dump(&out.stdout_str()))
}

/// Marks the start of one file's PEM text in [`dump_script`]'s output: `@@cert:<path>`.
pub const DUMP_MARK: &str = "@@cert:";

/// The shell text that prints [`DUMP_MARK`]`<path>` and then the certificate blocks of every `*.crt` (PEM text
/// only: nothing outside `BEGIN`/`END CERTIFICATE` lines leaves the host). One process for all files. It is
/// part of larger scripts, so its variables have names of their own and it leaves `$@` empty.
pub fn dump_script() -> String {
    let dirs = CERT_DIRS.join(" ");
    format!(
        "set --; for hl_cd in {dirs}; do for hl_cf in \"$hl_cd\"/*.crt; do [ -f \"$hl_cf\" ] && set -- \"$@\" \"$hl_cf\"; done; done; \
         if [ $# -gt 0 ]; then awk 'FNR==1{{print \"{DUMP_MARK}\" FILENAME}} \
         /-----BEGIN CERTIFICATE-----/,/-----END CERTIFICATE-----/{{print}}' \"$@\" 2>/dev/null; fi; set --"
    )
}

/// Parses [`dump_script`]'s output (it may be one part of a larger script's output: lines before the first
/// mark and after a line starting with `@@` that is not a mark are not certificates), soonest first.
pub fn parse_dump(text: &str) -> Vec<CertExpiry> {
    let mut files: Vec<(String, String)> = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        if let Some(path) = line.strip_prefix(DUMP_MARK) {
            files.push((path.trim().to_string(), String::new()));
            inside = true;
        } else if line.starts_with("@@") {
            inside = false;
        } else if inside {
            if let Some((_, pem)) = files.last_mut() {
                pem.push_str(line);
                pem.push('\n');
            }
        }
    }
    let mut v: Vec<CertExpiry> = files
        .into_iter()
        .filter_map(|(path, pem)| {
            Some(CertExpiry {
                not_after: not_after(&pem)?,
                path,
            })
        })
        .collect();
    v.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.path.cmp(&b.path)));
    v
}

/// `notAfter` (epoch seconds) of the first certificate in `pem`, as `openssl x509 -enddate` reads a file.
pub fn not_after(pem: &str) -> Option<i64> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = block.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// The certificates that expire within `days` of `now` (already expired ones included).
pub fn expiring(certs: &[CertExpiry], now: i64, days: i64) -> Vec<&CertExpiry> {
    certs
        .iter()
        .filter(|c| c.not_after - now < days * 86_400)
        .collect()
}

/// Seconds since the epoch as RFC 3339 (UTC).
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_epoch_seconds() {
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    /// A self-signed certificate (PEM) valid until `not_after` (epoch seconds).
    fn cert_until(not_after: i64) -> String {
        let mut p = rcgen::CertificateParams::new(vec!["node".to_string()]).unwrap();
        p.not_before = time::OffsetDateTime::from_unix_timestamp(not_after - 86_400 * 400).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn soonest_first_and_the_90_day_window() {
        let (a, b) = (cert_until(1_731_622_400), cert_until(1_700_000_000));
        // b.crt holds a chain (its own certificate first, as openssl reads it); bad.crt no certificate; the
        // block after a foreign `@@` section is not a file's.
        let out = format!(
            "noise\n{DUMP_MARK}/t/a.crt\n{a}{DUMP_MARK}/t/b.crt\n{b}{a}{DUMP_MARK}/t/bad.crt\n\
             -----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n@@token\n{b}"
        );
        let l = parse_dump(&out);
        assert_eq!(
            l,
            vec![
                CertExpiry {
                    path: "/t/b.crt".into(),
                    not_after: 1_700_000_000
                },
                CertExpiry {
                    path: "/t/a.crt".into(),
                    not_after: 1_731_622_400
                },
            ]
        );
        let now = 1_700_000_000 - 30 * 86_400;
        let soon = expiring(&l, now, WARN_DAYS);
        assert_eq!(soon.len(), 1);
        assert_eq!(soon[0].path, "/t/b.crt");
        assert!(parse_dump("").is_empty());
    }

    /// The dump runs under `sh` on the host: here on this machine's own `sh` and `awk`, against files in a
    /// temporary directory standing in for [`CERT_DIRS`].
    #[test]
    fn the_dump_script_prints_each_file_s_certificate_blocks() {
        let dir = std::env::temp_dir().join(format!("homelab-certs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tls")).unwrap();
        let c = cert_until(1_700_000_000);
        std::fs::write(
            dir.join("tls/a.crt"),
            format!("junk before\n{c}junk after\n"),
        )
        .unwrap();
        std::fs::write(dir.join("tls/b.key"), "-----BEGIN PRIVATE KEY-----\nx\n").unwrap();
        std::fs::write(dir.join("tls/empty.crt"), "").unwrap();
        let script = dump_script().replace(
            &CERT_DIRS.join(" "),
            &format!("{0}/tls {0}/none", dir.display()),
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .output()
            .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            !text.contains("junk") && !text.contains("PRIVATE"),
            "{text}"
        );
        assert_eq!(
            parse_dump(&text),
            vec![CertExpiry {
                path: format!("{}/tls/a.crt", dir.display()),
                not_after: 1_700_000_000
            }]
        );
    }
}
