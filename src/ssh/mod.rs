//! SSH transport for the k3s resources.
//!
//! The k3s resources install, configure, upgrade and remove k3s by running shell scripts on hosts over SSH. This
//! module is that transport, built on `russh` (pure Rust, async, `ring` crypto) rather than on the `ssh` binary:
//!
//! - **Hermetic.** No dependency on the user's `~/.ssh/config`, on OpenSSH being installed where Terraform runs, or
//!   on its version; the same attributes give the same connection everywhere.
//! - **Secrets never on argv.** The sudo password and file contents are written to the channel's stdin; with the
//!   `ssh` binary, a password would need `sshpass` (argv or env) and a key passphrase an askpass helper.
//! - **Host-key policy in our hands.** Pinned key, known_hosts (hashed entries too) or explicit trust-on-first-use
//!   that returns the key for Terraform state; never silently "accept anything".
//! - **Typed errors** ([`SshError`]) that the resources turn into precise diagnostics, and clean cancellation.
//! - **Nothing left running.** Cancellation and timeouts kill the remote command's process group; a remote
//!   watchdog does the same when the connection itself goes away (provider killed, operation dropped), so an
//!   interrupted install never keeps changing a host behind the next apply.
//!
//! Typical use by a resource (secrets only ever in [`Secret`]s, stdin and uploaded files):
//!
//! ```no_run
//! # async fn f(key_pem: String, sudo_pw: String, token: &[u8]) -> Result<(), terraform_provider_homelab::ssh::SshError> {
//! use terraform_provider_homelab::ssh::*;
//! use tokio_util::sync::CancellationToken;
//! let mut conn = HostConnection::new(
//!     "10.0.0.11",
//!     "debian",
//!     Auth::PrivateKey { key: Secret::new(key_pem), passphrase: None },
//!     HostKeyPolicy::Pinned("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKFbE8e4ST2Y/PCLIYxgI7UOaiMYcyfeR+AuPmoes1VA".into()),
//! );
//! conn.sudo_password = Some(Secret::new(sudo_pw));
//! let cancel = CancellationToken::new(); // cancelled on Terraform's StopProvider
//! let session = connect_with_retry(&conn, &RetryPolicy::default(), &cancel).await?;
//! session.run_sudo("install -d -m 0755 /etc/rancher/k3s", None).await?;
//! session.upload(token, "/etc/rancher/k3s/config.yaml", 0o600).await?;
//! let version = session.run_sudo("k3s --version", None).await?.stdout_str();
//! # let _ = version; Ok(()) }
//! ```
//!
//! Map: [`config`] (what to connect to), [`hostkey`] (verification), [`session`] (connect, exec, sudo, upload,
//! download), [`retry`] (bounded reconnects), [`quote`] (shell quoting); secrets are
//! the crate's one [`Secret`] (`crate::secret`), re-exported here because the SSH types carry it.

pub mod config;
pub mod error;
pub mod hostkey;
pub mod quote;
pub mod retry;
pub mod session;

#[cfg(test)]
mod tests;

pub use crate::secret::Secret;
pub use config::{Auth, HostConnection, HostKeyPolicy};
pub use error::SshError;
pub use quote::{join as quote_join, quote};
pub use retry::{connect_with_retry, retry, Connector, RetryPolicy};
pub use session::{ExecOptions, Output, Session};
