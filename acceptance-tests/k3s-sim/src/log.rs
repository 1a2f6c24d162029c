//! Log lines in k3s's (logrus) text format on stderr.
//!
//! The journal of a real node shows `time="…" level=info msg="…"`; tests and users grep for those exact
//! messages (e.g. "Adding server to load balancer k3s-agent-load-balancer: …"), so we print the same shape and
//! let the lab's systemctl stand-in capture stderr for `journalctl`.

/// Current UTC time in RFC 3339 (seconds).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let fmt = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    now.format(&fmt).unwrap_or_default()
}

/// Print one log line at `level`.
pub fn line(level: &str, msg: &str) {
    let msg = msg.replace('\\', "\\\\").replace('"', "\\\"");
    eprintln!("time=\"{}\" level={} msg=\"{}\"", now_rfc3339(), level, msg);
}

/// `level=info`.
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::line("info", &format!($($t)*)) };
}
/// `level=warning`.
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::line("warning", &format!($($t)*)) };
}
/// `level=error`.
#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::line("error", &format!($($t)*)) };
}
/// `level=fatal`.
#[macro_export]
macro_rules! fatal_log {
    ($($t:tt)*) => { $crate::log::line("fatal", &format!($($t)*)) };
}
