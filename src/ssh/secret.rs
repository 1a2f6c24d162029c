//! A string that must never be printed.
//!
//! Private keys, passphrases and sudo passwords travel through this crate inside [`Secret`]. Its `Debug` and
//! `Display` print a fixed placeholder, so a stray `{:?}` in a log line, a `tracing` field or an error built from a
//! config struct cannot leak the value. Reading the value requires the explicit [`Secret::expose`] call, which makes
//! every place that handles the clear text easy to find with grep.

use std::fmt;

use zeroize::Zeroize;

/// A secret string (private key text, passphrase, sudo password). Redacted in `Debug` and `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear text. Only for writing it to a channel's stdin or handing it to a key decoder.
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
        // Best effort: wipe the heap buffer before it is freed so the value does not linger in freed memory.
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
    }
}
