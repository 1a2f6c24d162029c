//! Errors of the emulator library (the CLI wraps them in `anyhow` at the edge).

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("I/O error on {0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("state file: {0}")]
    Store(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("haproxy: {0}")]
    Haproxy(String),
}
