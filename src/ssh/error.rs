//! Error kinds of the SSH transport.
//!
//! The k3s resources turn these into Terraform diagnostics, so each kind says what the user must do: a host that is
//! down (retry later, or re-create), wrong credentials, a host key that changed (possible MITM; re-pin on purpose), a
//! command that failed (exit code and the tail of stderr). None of them carries a secret: passwords and keys never
//! enter a command line, and the sudo error names the user, not the password.

use std::time::Duration;

/// Errors of the SSH transport.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// TCP connect failed, timed out, or the SSH handshake did not complete (host down, port closed, network).
    #[error("cannot reach {host}: {reason}")]
    Unreachable { host: String, reason: String },

    /// The server refused every credential we offered.
    #[error("authentication as user {user} on {host} failed ({method})")]
    AuthFailed {
        host: String,
        user: String,
        method: String,
    },

    /// The host presented a key different from the pinned or recorded one.
    #[error(
        "host key mismatch for {host}: expected {}, but the host presented {presented}; if the host was \
         re-installed on purpose, update the pinned host key / known_hosts entry",
        expected.join(" or ")
    )]
    HostKeyMismatch {
        host: String,
        expected: Vec<String>,
        presented: String,
    },

    /// known_hosts has no entry for the host (and trust-on-first-use was not requested).
    #[error(
        "host {host} is not in known_hosts file {path}; it presented {presented} (pin it, add it to known_hosts, \
         or explicitly enable trust on first use)"
    )]
    HostKeyUnknown {
        host: String,
        path: String,
        presented: String,
    },

    /// The remote command ran and exited non-zero (or was killed by a signal).
    #[error("command `{label}` on {host} failed with {}: {stderr_tail}", describe_exit(*exit_status))]
    CommandFailed {
        host: String,
        label: String,
        exit_status: Option<u32>,
        stderr_tail: String,
    },

    /// sudo asked for the password a second time: the configured one is wrong.
    #[error("sudo rejected the password for user {user} on {host}")]
    SudoAuthFailed { host: String, user: String },

    /// sudo wants a password and none is configured.
    #[error(
        "sudo on {host} requires a password for user {user}, but no sudo password is configured"
    )]
    SudoPasswordRequired { host: String, user: String },

    /// sudo refused for another reason (user not in sudoers, sudo missing, ...).
    #[error("sudo failed for user {user} on {host}: {detail}")]
    SudoFailed {
        host: String,
        user: String,
        detail: String,
    },

    /// The command did not finish within its timeout (it was signalled and its channel closed).
    #[error("command `{label}` on {host} timed out after {timeout:?}")]
    Timeout {
        host: String,
        label: String,
        timeout: Duration,
    },

    /// The caller's cancellation token fired (Terraform's Ctrl-C).
    #[error("cancelled while {during} on {host}")]
    Cancelled { host: String, during: String },

    /// The connection dropped after it was established (sshd killed, reboot, network reset).
    #[error("connection to {host} was lost: {reason}")]
    ConnectionLost { host: String, reason: String },

    /// The configuration is invalid (bad private key, bad pinned key, no agent, ...).
    #[error("invalid SSH configuration for {host}: {reason}")]
    Config { host: String, reason: String },

    /// Any other SSH protocol error.
    #[error("SSH protocol error with {host}: {source}")]
    Protocol {
        host: String,
        #[source]
        source: russh::Error,
    },
}

fn describe_exit(status: Option<u32>) -> String {
    match status {
        Some(code) => format!("exit status {code}"),
        None => "no exit status (killed by a signal or channel closed)".to_owned(),
    }
}

impl SshError {
    /// True for errors worth retrying after a reconnect: the host was unreachable or the connection dropped.
    /// Authentication, host key and command failures are never transient.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SshError::Unreachable { .. } | SshError::ConnectionLost { .. }
        )
    }

    /// The host (as `address:port`) the error is about.
    pub fn host(&self) -> &str {
        match self {
            SshError::Unreachable { host, .. }
            | SshError::AuthFailed { host, .. }
            | SshError::HostKeyMismatch { host, .. }
            | SshError::HostKeyUnknown { host, .. }
            | SshError::CommandFailed { host, .. }
            | SshError::SudoAuthFailed { host, .. }
            | SshError::SudoPasswordRequired { host, .. }
            | SshError::SudoFailed { host, .. }
            | SshError::Timeout { host, .. }
            | SshError::Cancelled { host, .. }
            | SshError::ConnectionLost { host, .. }
            | SshError::Config { host, .. }
            | SshError::Protocol { host, .. } => host,
        }
    }
}

/// The last `max_lines` lines of a command's stderr, lossily decoded, for error messages.
pub fn stderr_tail(stderr: &[u8], max_lines: usize) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(max_lines);
    let tail = lines[start..].join("\n");
    if tail.is_empty() {
        "(no stderr output)".to_owned()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_last_lines() {
        assert_eq!(stderr_tail(b"a\nb\n\nc\nd\n", 2), "c\nd");
        assert_eq!(stderr_tail(b"", 3), "(no stderr output)");
    }

    #[test]
    fn transient_kinds() {
        let h = || "h:22".to_owned();
        assert!(SshError::Unreachable {
            host: h(),
            reason: "x".into()
        }
        .is_transient());
        assert!(SshError::ConnectionLost {
            host: h(),
            reason: "x".into()
        }
        .is_transient());
        assert!(!SshError::AuthFailed {
            host: h(),
            user: "u".into(),
            method: "m".into()
        }
        .is_transient());
        assert!(!SshError::Cancelled {
            host: h(),
            during: "x".into()
        }
        .is_transient());
    }
}
