//! How to reach a host: address, user, credentials, host-key policy, optional bastion.
//!
//! This is plain data that the k3s resources fill from Terraform attributes. It derives `Debug` safely because every
//! secret inside is a [`Secret`].

use std::path::PathBuf;
use std::time::Duration;

use crate::secret::Secret;

/// Client authentication.
#[derive(Debug, Clone)]
pub enum Auth {
    /// A private key in OpenSSH or PEM (PKCS#1/PKCS#8) format, optionally encrypted with a passphrase.
    PrivateKey {
        key: Secret,
        passphrase: Option<Secret>,
    },
    /// The keys held by the ssh-agent at `SSH_AUTH_SOCK` (or at the given socket path).
    Agent { socket: Option<PathBuf> },
}

/// How the server's host key is verified. There is deliberately no "accept anything" variant.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// One or more pinned keys, one per line: an OpenSSH public-key line (`ssh-ed25519 AAAA… [comment]`) or a
    /// fingerprint (`SHA256:…`). The host must present one of them.
    Pinned(String),
    /// An OpenSSH known_hosts file (plain and hashed `|1|` entries; `[host]:port` for ports other than 22).
    /// A host absent from the file is rejected.
    KnownHosts(PathBuf),
    /// Accept whatever key the host presents on this connection; the caller must read
    /// [`Session::host_key`](super::Session::host_key) and pin it (in Terraform state) for later connections.
    /// Only used when the user asked for it explicitly.
    TrustOnFirstUse,
}

/// Everything needed to open an SSH session to one host.
#[derive(Debug, Clone)]
pub struct HostConnection {
    /// Host name or IP address.
    pub address: String,
    /// TCP port (22 by default).
    pub port: u16,
    /// Login user. `root` runs commands directly; any other user goes through sudo for privileged commands.
    pub user: String,
    pub auth: Auth,
    pub host_key: HostKeyPolicy,
    /// Password for `sudo -S` when `user` is not root (None: passwordless sudo is expected).
    pub sudo_password: Option<Secret>,
    /// Jump host reached first; the connection to this host is tunnelled through a direct-tcpip channel on it.
    pub bastion: Option<Box<HostConnection>>,
    /// Bound on TCP connect plus SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// Interval of SSH keepalive requests (None: no keepalives). Three missed replies close the connection.
    pub keepalive: Option<Duration>,
    /// Default bound on each command (overridable per call).
    pub command_timeout: Duration,
}

impl HostConnection {
    /// A connection with the defaults: port 22, 30 s connect timeout, 15 s keepalive, 10 min command timeout.
    pub fn new(
        address: impl Into<String>,
        user: impl Into<String>,
        auth: Auth,
        host_key: HostKeyPolicy,
    ) -> Self {
        HostConnection {
            address: address.into(),
            port: 22,
            user: user.into(),
            auth,
            host_key,
            sudo_password: None,
            bastion: None,
            connect_timeout: Duration::from_secs(30),
            keepalive: Some(Duration::from_secs(15)),
            command_timeout: Duration::from_secs(600),
        }
    }

    /// `address:port` as used in messages (IPv6 literals bracketed).
    pub fn display_host(&self) -> String {
        if self.address.contains(':') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }

    /// True if commands run as root without sudo.
    pub fn is_root(&self) -> bool {
        self.user == "root"
    }
}
