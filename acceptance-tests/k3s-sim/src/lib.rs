//! `k3s-sim`: a k3s stand-in for the host lab.
//!
//! No k3s binary can run here, yet the provider's k3s resources must be tested against the behaviour that bites
//! real users (see `shared/reference/k3s.md` §0 and its appendix). This crate is a `k3s` binary that keeps k3s's
//! contract where the provider can observe it: files and modes, flags and `config.yaml`, the token forms and CA
//! pinning, a TLS supervisor on `:6443` with the sticky serving certificate, a real etcd for HA membership, a
//! Kubernetes API subset that the real `kubectl` works against, and the agent's client-side load balancer. It is
//! not Kubernetes: there are no pods, no kubelet and no CNI.

pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod etcd;
pub mod http;
pub mod log;
pub mod notify;
pub mod paths;
pub mod pki;
pub mod server;
pub mod serving;
pub mod store;

/// The k3s version of this build, set at build time with `K3S_SIM_VERSION` (default `v1.31.5+k3s1`).
pub const VERSION: &str = match option_env!("K3S_SIM_VERSION") {
    Some(v) => v,
    None => "v1.31.5+k3s1",
};
