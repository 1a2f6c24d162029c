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
//! - [`mod@bench`]: the benchmark rows behind `acceptance-tests/dev bench` and `docs/benchmarks.md` (with
//!   [`bench_opnsense`], [`bench_k3s`] for whole-cluster applies in the lab, [`bench_start`] against a Go provider);
//! - [`reliability`]: the fault matrix's rows and the generated part of `docs/reliability.md`
//!   (`acceptance-tests/dev reliability`);
//! - [`emulator_api`]: an admin's plain-HTTP calls to an OPNsense emulator and [`emulator_api::free_port`];
//! - [`fixture`]: HCL for the provider's test-only resource `homelab_test_fixture`;
//! - [`steps`]: the terraform-plugin-testing–style step API (plan → apply → empty plans → import → destroy).
//!
//! Writing a new acceptance test: add `acceptance-tests/tests/<area>.rs`, loop over
//! [`terraform::TerraformVersion::selected`] (both versions unless narrowed while debugging; use the
//! `has_*` methods to skip features a version lacks) and build a [`steps::TestCase`] — or drive a
//! [`terraform::Terraform`] directly for anything the step API does not cover. Helpers for other areas (emulator,
//! lab) live in their own modules here, one per area (add `pub mod <area>;` below).
//!
//! Rules every test follows: its own [`terraform::Terraform`] world (never a shared directory), no fixed ports or
//! paths outside that world (so tests run in parallel), a deadline on every process (the helpers have one), and
//! failure messages that carry Terraform's full output (the helpers' errors do).
//!
//! Environment (all set by `acceptance-tests/dev test`, see [`paths::vars`]): `HOMELAB_TERRAFORM_1_15`,
//! `HOMELAB_TERRAFORM_1_0`, `HOMELAB_PROVIDER_DIR`, `HOMELAB_BIN_DIR`, `HOMELAB_SOAK`; for debugging
//! `HOMELAB_KEEP_WORKDIRS=1` and `HOMELAB_TERRAFORM_VERSIONS=1.15`.

pub mod bench;
pub mod bench_k3s;
pub mod bench_opnsense;
pub mod bench_peer;
pub mod bench_start;
pub mod emulator_api;
pub mod fixture;
pub mod ha_pair;
pub mod lab_support;
pub mod paths;
pub mod process;
pub mod reliability;
pub mod steps;
pub mod terraform;

pub use steps::{ImportKind, Step, TestCase};
pub use terraform::{Action, Terraform, TerraformVersion, PROVIDER_SOURCE};
