//! The journal: one append-only file of JSON lines per unit under `/var/log/lab-journal/` on the host.
//!
//! Files rather than an in-memory ring because the journal must survive a crash of the supervisor and a host
//! restart (like a persistent journald), and because `journalctl` (and the lab from outside the host) can then read
//! it without asking the supervisor, so `journalctl -u k3s` still answers when the supervisor is busy.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Where the journal lives inside a host.
pub const JOURNAL_DIR: &str = "/var/log/lab-journal";

/// One journal line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    /// Microseconds since the epoch.
    pub ts: u64,
    /// Syslog identifier (`k3s`, `systemd`, `sshd`).
    pub ident: String,
    pub pid: i32,
    pub msg: String,
}

/// Microseconds since the epoch, now.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The file holding `unit`'s journal under `dir`.
pub fn file_for(dir: &Path, unit: &str) -> PathBuf {
    dir.join(format!("{unit}.jsonl"))
}

/// Appends one record; errors are ignored (a full disk must not take the supervisor down).
pub fn append(dir: &Path, unit: &str, ident: &str, pid: i32, msg: &str) {
    let rec = Record {
        ts: now_micros(),
        ident: ident.to_string(),
        pid,
        msg: msg.to_string(),
    };
    if let Ok(mut line) = serde_json::to_string(&rec) {
        line.push('\n');
        let _ = std::fs::create_dir_all(dir);
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(file_for(dir, unit))
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Reads all records of `unit` (missing file = empty).
pub fn read(dir: &Path, unit: &str) -> Vec<Record> {
    read_file(&file_for(dir, unit))
}

/// Reads all records of one journal file.
pub fn read_file(path: &Path) -> Vec<Record> {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Formats a record like `journalctl`'s default `short` output: `Nov 24 14:00:00 host ident[pid]: msg`.
pub fn format_short(rec: &Record, hostname: &str) -> String {
    let secs = (rec.ts / 1_000_000) as i64;
    let (_, mon, day, h, m, s) = civil(secs);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {:02} {:02}:{:02}:{:02} {} {}[{}]: {}",
        MONTHS[(mon - 1) as usize],
        day,
        h,
        m,
        s,
        hostname,
        rec.ident,
        rec.pid,
        rec.msg
    )
}

/// `YYYY-MM-DD HH:MM:SS UTC` for `systemctl status`/`show`.
pub fn format_timestamp(micros: u64) -> String {
    let (y, mon, d, h, m, s) = civil((micros / 1_000_000) as i64);
    format!("{y:04}-{mon:02}-{d:02} {h:02}:{m:02}:{s:02} UTC")
}

/// Seconds since the epoch to (year, month, day, hour, minute, second) in UTC (days-from-civil inverse).
fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, (rem % 3600) / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_journalctl() {
        let rec = Record {
            ts: 1_795_960_800_000_000, // 2026-11-29 14:00:00 UTC
            ident: "k3s".into(),
            pid: 42,
            msg: "hello".into(),
        };
        assert_eq!(
            format_short(&rec, "k8s-control-1"),
            "Nov 29 14:00:00 k8s-control-1 k3s[42]: hello"
        );
        assert_eq!(format_timestamp(rec.ts), "2026-11-29 14:00:00 UTC");
    }

    #[test]
    fn append_and_read_back() {
        let dir = std::env::temp_dir().join(format!("lab-journal-test-{}", std::process::id()));
        append(&dir, "a.service", "a", 1, "one");
        append(&dir, "a.service", "a", 1, "two\"quoted\"");
        let recs = read(&dir, "a.service");
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].msg, "two\"quoted\"");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
