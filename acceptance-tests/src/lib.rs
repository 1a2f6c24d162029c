//! `homelab-acceptance`: the test-support crate of terraform-provider-homelab and home of the cross-crate
//! acceptance tests (`acceptance-tests/tests/*.rs`).
//!
//! Everything here drives the real thing: real Terraform 1.15.5 and 1.0.3 (see [`terraform`]), the real provider
//! binary, real processes. The pieces:
//!
//! - [`paths`]: where the Terraform CLIs, the provider under test and the workspace binaries are (the environment
//!   `acceptance-tests/dev test` exports);
//! - [`process`]: running programs with deadlines, signals, process groups and `/proc` inspection;
//! - [`terraform`]: one isolated Terraform world per test (working dir, CLI config with `dev_overrides`), commands
//!   and the JSON documents Terraform prints (state, plan, schemas);
//! - [`bench`]: the benchmark rows behind `acceptance-tests/dev bench` and `docs/benchmarks.md`;
//! - [`fixture`]: HCL for the provider's test-only resource `homelab_test_fixture`;
//! - [`steps`]: the terraform-plugin-testing–style step API (plan → apply → empty plans → import → destroy).
//!
//! Writing a new acceptance test: add `acceptance-tests/tests/<area>.rs`, loop over
//! [`terraform::TerraformVersion::ALL`] (or pick the versions that have the feature), and build a
//! [`steps::TestCase`]. Helpers for other areas (emulator, lab) live in their own modules here, one per area.

pub mod bench;
pub mod fixture;
pub mod paths;
pub mod process;
pub mod steps;
pub mod terraform;

pub use steps::{ImportKind, Step, TestCase};
pub use terraform::{Action, Terraform, TerraformVersion, PROVIDER_SOURCE};
