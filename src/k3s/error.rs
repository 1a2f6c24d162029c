//! The one error type of the k3s node operations, below every command sequence that returns it (so none of
//! them has to import another sequence's module for its error).

use std::time::Duration;

use crate::ssh::SshError;

/// Errors of node operations. None carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum K3sError {
    /// The SSH transport failed (or a command exited non-zero).
    #[error(transparent)]
    Ssh(#[from] SshError),
    /// The unit or node did not become ready in time.
    #[error("{unit} on {host} did not become ready within {waited:?} (last state: {state}); last journal lines:\n{journal}")]
    NotReady {
        host: String,
        unit: String,
        waited: Duration,
        state: String,
        journal: String,
    },
    /// The install script failed.
    #[error("installing k3s on {host} failed (exit {status}):\n{output}")]
    Install {
        host: String,
        status: u32,
        output: String,
    },
    /// The air-gap binary cannot be read where Terraform runs.
    #[error("Reading {path}: {message}")]
    AirgapBinary { path: String, message: String },
    /// The host says something we cannot interpret.
    #[error("unexpected answer from {host}: {detail}")]
    Unexpected { host: String, detail: String },
}
