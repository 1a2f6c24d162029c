//! Certificate expiry on a k3s node: the files k3s keeps its certificates in, and when each expires.
//!
//! Why: k3s's leaf certificates live 365 days. k3s renews those that expire within 90 days when it starts, so a
//! node that is never restarted for a year ends up with an expired API or kubelet certificate (k3s#10865) and a
//! cluster that stops answering. The provider reads the dates with `openssl x509 -enddate` on the host (what the
//! files really say) and warns in a plan from 90 days ahead; a restart or `k3s certificate rotate` renews them.

use super::node::K3sError;
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

/// Every `*.crt` in [`CERT_DIRS`] with its expiry, soonest first (files openssl cannot read are left out).
pub async fn expiries(session: &Session) -> Result<Vec<CertExpiry>, K3sError> {
    let out = session.run_sudo(&listing_script(), None).await?;
    Ok(parse_listing(&out.stdout_str()))
}

/// The shell text that prints `path\tnotAfter` for every certificate (one openssl per file).
pub fn listing_script() -> String {
    let dirs = CERT_DIRS.join(" ");
    format!(
        "for d in {dirs}; do for f in \"$d\"/*.crt; do [ -f \"$f\" ] || continue; \
         e=$(openssl x509 -noout -enddate -in \"$f\" 2>/dev/null) || continue; \
         printf '%s\\t%s\\n' \"$f\" \"${{e#notAfter=}}\"; done; done"
    )
}

/// Parses `path\tnotAfter` lines, soonest first.
pub fn parse_listing(text: &str) -> Vec<CertExpiry> {
    let mut v: Vec<CertExpiry> = text
        .lines()
        .filter_map(|l| {
            let (path, date) = l.split_once('\t')?;
            Some(CertExpiry {
                path: path.to_string(),
                not_after: parse_openssl_date(date)?,
            })
        })
        .collect();
    v.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.path.cmp(&b.path)));
    v
}

/// OpenSSL's default date form, `Nov 14 22:13:20 2026 GMT` (the day padded with a space), as epoch seconds.
pub fn parse_openssl_date(s: &str) -> Option<i64> {
    let f: Vec<&str> = s.split_whitespace().collect();
    let [mon, day, hms, year, "GMT"] = f.as_slice() else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| m == mon)? as u8 + 1;
    let mut t = hms.split(':').map(|x| x.parse::<u8>().ok());
    let (h, m, sec) = (t.next()??, t.next()??, t.next()??);
    let date = time::Date::from_calendar_date(
        year.parse().ok()?,
        time::Month::try_from(month).ok()?,
        day.parse().ok()?,
    )
    .ok()?;
    let at = date.with_hms(h, m, sec).ok()?.assume_utc();
    Some(at.unix_timestamp())
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
    fn openssl_dates() {
        assert_eq!(
            parse_openssl_date("Nov 14 22:13:20 2023 GMT"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_openssl_date("Jan  1 00:00:00 1970 GMT"), Some(0));
        assert_eq!(parse_openssl_date("2023-11-14"), None);
        assert_eq!(parse_openssl_date("Foo 14 22:13:20 2023 GMT"), None);
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn soonest_first_and_the_90_day_window() {
        let l = parse_listing(
            "/t/a.crt\tNov 14 22:13:20 2024 GMT\n/t/b.crt\tNov 14 22:13:20 2023 GMT\n/t/bad.crt\tnever\n",
        );
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].path, "/t/b.crt");
        let now = 1_700_000_000 - 30 * 86_400;
        let soon = expiring(&l, now, WARN_DAYS);
        assert_eq!(soon.len(), 1);
        assert_eq!(soon[0].path, "/t/b.crt");
    }
}
