//! Typed OPNsense REST client.
//!
//! Resources talk to OPNsense only through this module, in typed Rust values: OPNsense's string forms
//! (`"0"`/`"1"`, `""` for unset, comma-joined UUIDs, option maps) are converted in [`wire`] and never leave it.
//! The module also owns the cross-resource machinery one Terraform run needs: the whole-model cache that makes
//! refresh O(types) ([`haproxy::ModelCache`]) and the reconfigure coalescer that deploys a batch of changes with one
//! configtest → reconfigure ([`coalesce`]).
//!
//! Map: [`transport`] (HTTP, auth, TLS pinning, retries) → [`wire`] (string forms, result shapes) →
//! [`haproxy`] (the whole-model family) and [`item`] (the generic get/search/set/del of one service's items,
//! whose models are [`vip`] and [`firewall`]) (typed models and calls) → [`client::Client`] (what resources hold).

pub mod client;
pub mod coalesce;
pub mod error;
pub mod firewall;
pub mod haproxy;
pub mod hasync;
pub mod item;
pub mod transport;
pub mod vip;
pub mod wire;

pub use client::{Client, Versions};
pub use error::{Error, FieldError, Result, SettingsProblem};
pub use transport::{ClientConfig, RetryPolicy, Transport};
