//! The one type every secret of this crate travels in: OPNsense API secrets, SSH private keys and passphrases,
//! sudo passwords.
//!
//! Why one type at the bottom of the crate: the rule "a secret is never printed" is only as strong as the weakest
//! copy of it. With one [`Secret`] that imports nothing from the crate, every layer (provider configuration, the
//! OPNsense client, the SSH transport) uses the same redaction and the same wiping, and `expose()` is the single
//! grep-able place where clear text is handed to its destination (an `Authorization` header, a channel's stdin, a
//! key decoder).
//!
//! - `Debug` and `Display` print a fixed placeholder, so a stray `{:?}` in a log line, a `tracing` field or an
//!   error built from a config struct cannot leak the value.
//! - The buffer is wiped when the value is dropped (best effort: copies made by `expose()` callers are theirs).

use std::fmt;

use zeroize::Zeroize;

/// A secret string. Redacted in `Debug` and `Display`, wiped on drop; read it with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear text. Call it only where the value is sent to its destination.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True if the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

impl From<&String> for Secret {
    fn from(value: &String) -> Self {
        Secret(value.clone())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Wipe the heap buffer before it is freed so the value does not linger in freed memory.
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(s.expose(), "hunter2-very-secret");
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Holder {
            pw: Secret,
        }
        let h = Holder { pw: s.clone() };
        assert!(!format!("{h:?}").contains("hunter2"));
        assert!(Secret::default().is_empty());
    }
}
