//! k3s node operations over SSH: the command sequences behind `homelab_k3s_server` and `homelab_k3s_agent`.
//!
//! Why these sequences and not simply `curl get.k3s.io | sh` (see `shared/reference/k3s.md` §0, §8):
//!
//! - **Installs never hang.** `install.sh` runs `systemctl restart` on a `Type=notify` unit with
//!   `TimeoutStartSec=0`, which blocks forever when a joiner cannot reach its server. We always install with
//!   `INSTALL_K3S_SKIP_START=true`, start with `systemctl start --no-block`, and poll readiness with our own
//!   deadline; a failed wait returns the last journal lines of the unit.
//! - **We own `config.yaml`.** The install script ignores config changes, so the provider writes
//!   `/etc/rancher/k3s/config.yaml` itself (0600, content on stdin — the token never touches a command line) and
//!   restarts the unit when, and only when, its content changed. The file is rendered as JSON, which is valid
//!   YAML, so it can be parsed back without a YAML parser and compared for drift.
//! - **No `K3S_*` variables in the install environment**, so the unit's env file stays empty and stable; the
//!   command word (`server`/`agent`) is passed explicitly (`INSTALL_K3S_EXEC`), avoiding the "joining server
//!   became an agent" trap.
//! - **Read-back is what the host really does**: `k3s --version`, the unit state, the node token, the serving
//!   certificate SANs as presented on `:6443` (TLS handshake from the host with `openssl s_client`), the agent's
//!   client-side load-balancer file.
//! - **Servers change one at a time** per cluster ([`lock::cluster_lock`]): etcd allows one learner at a time,
//!   and restarting two servers of three at once loses quorum.

pub mod agent;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod converge;
pub mod error;
pub mod etcd;
pub mod kube;
pub mod lock;
pub mod marks;
pub mod node;
pub mod paths;
pub mod registries;
pub mod restore;
pub mod server;
pub mod snapshot;
pub mod step;
pub mod token;

pub use error::K3sError;
pub use etcd::{etcd_servers, leave_cluster, quorum_after_removal, Left};
pub use node::*;
pub use paths::*;
pub use step::{Failure, Input, Report};
