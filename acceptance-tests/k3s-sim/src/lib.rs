//! `k3s-sim`: a k3s stand-in for the host lab.
//!
//! No k3s binary can run here, yet the provider's k3s resources must be tested against the behaviour that bites
//! real users (see `shared/reference/k3s.md` §0 and its appendix). This crate is a `k3s` binary that keeps k3s's
//! contract where the provider can observe it: files and modes, flags and `config.yaml`, the token forms and CA
//! pinning, a TLS supervisor on `:6443` with the sticky serving certificate, a real etcd for HA membership, a
//! Kubernetes API subset that the real `kubectl` works against, and the agent's client-side load balancer. It is
//! not Kubernetes: there are no pods, no kubelet and no CNI.
//!
//! Knobs (all optional; none exists in k3s):
//! - `K3S_SIM_VERSION` (build time, read with `option_env!`): the version `k3s --version` and the Nodes report,
//!   default `v1.31.5+k3s1`. `build-artifacts.sh DIR v1 v2 …` builds one binary per version into the layout
//!   `install.sh` copies from (`INSTALL_K3S_SIM_ARTIFACTS=DIR`), so upgrades can be tested.
//! - `K3S_SIM_ROOT`: prefix of every host path (loopback tests where "hosts" share one filesystem).
//! - `K3S_SIM_LOCALHOST`: the address standing for `127.0.0.1` (kubeconfig server, etcd's local client URL, the
//!   agent's `:6444` load balancer, the kubelet healthz) when hosts share one loopback.
//! - `K3S_SIM_ETCD`, `K3S_SIM_ETCDCTL`, `K3S_SIM_KUBECTL`: the real binaries (default `/usr/bin/...`).
//!
//! Where the stand-in is simpler than k3s, on purpose: etcd peers and clients talk plain HTTP inside the lab;
//! the bootstrap data is served (to the server token, over TLS) rather than stored encrypted; the single-server
//! datastore `server/db/state.db` is a JSON document, not SQLite; agents post their own Node (through the load
//! balancer) instead of running a kubelet; the Kubernetes API is the subset the provider and the seed use.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod etcd;
pub mod host;
pub mod http;
pub mod log;
pub mod notify;
pub mod paths;
pub mod pki;
pub mod registries;
pub mod reset;
pub mod server;
pub mod serving;
pub mod store;

/// The k3s version of this build, set at build time with `K3S_SIM_VERSION` (default `v1.31.5+k3s1`).
pub const VERSION: &str = match option_env!("K3S_SIM_VERSION") {
    Some(v) => v,
    None => "v1.31.5+k3s1",
};
