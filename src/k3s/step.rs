//! What a k3s sequence hands back besides its result: a [`Failure`] that says which step stopped it and which of
//! the caller's inputs is at fault, and the [`Report`] it tells what it did along the way.
//!
//! Why not the framework's diagnostics: this module is a client of the hosts, below the Terraform layer, and must
//! not know Terraform's types (attribute paths, `Context`). The sequences name the input concerned ([`Input`]);
//! the resource that called them turns that into an attribute path, and implements [`Report`] with its warnings.

use super::error::K3sError;

/// The input of a sequence that a failure concerns (the caller places its error there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// The URL of the existing server a joining server registers through.
    ServerUrl,
    /// The consent to convert a sqlite datastore to embedded etcd.
    AllowDatastoreMigration,
    /// The wanted serving-certificate SANs.
    TlsSan,
    /// The local path of the air-gap k3s binary.
    AirgapBinary,
    /// The wanted k3s version.
    Version,
    /// The choice to take an etcd snapshot before destructive changes.
    SnapshotBeforeChanges,
    /// The snapshot a restore restores.
    Snapshot,
    /// The servers a restore rejoins to the restored one.
    RestoreRejoin,
    /// The cluster token.
    Token,
    /// The wanted node labels.
    NodeLabels,
    /// The wanted node taints.
    NodeTaints,
}

/// Why a sequence stopped: a one-line summary of the step that failed, the detail (what the host said, what to
/// do), and the input concerned if one is. Never carries a secret (the details come from [`K3sError`], which
/// carries none, or from text the sequences write).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{summary}: {detail}")]
pub struct Failure {
    pub summary: String,
    pub detail: String,
    pub input: Option<Input>,
}

impl Failure {
    pub fn new(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Failure {
            summary: summary.into(),
            detail: detail.into(),
            input: None,
        }
    }

    /// The same failure, placed on `input`.
    pub fn on(mut self, input: Input) -> Self {
        self.input = Some(input);
        self
    }
}

/// `map_err(step("k3s install failed"))`: a host error as the failure of the named step.
pub fn step(summary: &str) -> impl FnOnce(K3sError) -> Failure + '_ {
    move |e| Failure::new(summary, e.to_string())
}

/// Where a sequence tells what it did that the user should know (a rotation, a retried removal, a check that
/// could not run). The resources implement it with their Terraform warnings.
pub trait Report: Send + Sync {
    fn warn(&self, summary: &str, detail: String);
}
