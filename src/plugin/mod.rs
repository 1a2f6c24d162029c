//! The protocol layer: the only code that knows protobuf, msgpack and go-plugin. It serves any provider handed
//! to it and imports nothing else of this crate.
//!
//! - [`handshake`]: how Terraform starts the plugin (cookie, socket, AutoMTLS, the stdout line);
//! - [`server`]: the `tfplugin6.Provider` gRPC service, routing RPCs to registered resources;
//! - [`service`]: the value-level contract a provider implements to be served ([`service::ErasedProvider`] and
//!   its registry), the per-request context; [`plan`]: schema-driven planning;
//! - [`schema`], [`diagnostics`]: the plain-Rust schema and diagnostic types (and their protobuf forms);
//! - [`codec`]: cty values and their msgpack/JSON encodings;
//! - [`log`]: the JSON log lines Terraform parses from stderr.

pub mod codec;
pub mod diagnostics;
pub mod handshake;
pub mod log;
pub mod plan;
pub(crate) mod proto;
pub mod schema;
pub mod serve;
pub mod server;
pub mod service;
