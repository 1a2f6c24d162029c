//! Generated protobuf/gRPC types (see `build.rs` and `proto/README.md`).
//!
//! Kept in one module so that nothing outside `src/plugin/` can name a prost type by accident.

#![allow(missing_docs, dead_code, clippy::all, clippy::pedantic)]

/// Terraform plugin protocol 6.10.
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// go-plugin host services (controller, stdio, broker).
pub mod goplugin {
    tonic::include_proto!("plugin");
}
