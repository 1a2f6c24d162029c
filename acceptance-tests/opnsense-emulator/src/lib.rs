//! An OPNsense REST API emulator for testing the homelab provider's OPNsense side.
//!
//! No OPNsense image can be had in this project's test world, so the provider is tested against this emulator. It is
//! only as good as its faithfulness, so it reproduces what a client can observe on a real box (OPNsense 26.7 with
//! os-haproxy 5.1, the versions the recorded samples in `testdata/opnsense-samples/` come from): the real paths,
//! API-key auth with the 401/302 answers, request wrappers, `get`/`search` shapes, defaults, validation messages,
//! upsert on `setX`, safe delete, and the service actions. Its HAProxy side is real: `reconfigure` renders
//! haproxy.cfg from the model, checks it with the real `haproxy -c`, deploys only a config that passes and starts or
//! reloads a real haproxy, so tests can push TCP traffic through what the provider configured.
//!
//! Map: [`config`] (setup), [`emulator`] (start/stop from tests), [`server`] (HTTP, auth, faults, admin endpoints),
//! [`api`] (controllers), [`model`] + [`schema`] (the generic model engine and field tables), [`store`] (the saved
//! state), [`haproxy`] (render + run haproxy), [`faults`], [`carp`] (the CARP election of a pair), [`tls`], [`cli`].

pub mod api;
pub mod app;
pub mod carp;
pub mod carp_engine;
pub mod cli;
pub mod config;
pub mod emulator;
pub mod error;
pub mod faults;
pub mod haproxy;
pub mod model;
pub mod natsort;
pub mod request;
pub mod schema;
pub mod server;
pub mod store;
pub mod tls;

pub use config::{Config, TlsMode, VipMode};
pub use emulator::{Emulator, EmulatorHandle};
pub use error::Error;
pub use faults::{FaultKind, FaultRule};
