//! Test doubles: stand-ins for the world outside the provider, used by unit tests (and, for the fixture resource,
//! by the foundation's acceptance tests). Nothing here is in a release build.
//!
//! Why one module: a double beside product code reads like product code and tempts product code to use it. Here
//! they are together, named for what they stand in for, and they import nothing of the crate's clients, so any
//! module's tests may use them without tying the clients to each other (the one exception is the fixture
//! resource, which is a resource and so uses the framework).
//!
//! - [`http`]: a scripted HTTP/1.1 server (plain or TLS with an OPNsense-like certificate) for the OPNsense
//!   transport's and provider's tests: faults per request (5xx, delays, lost replies).
//! - [`opnsense`]: a small stateful fake of OPNsense's HAProxy API over [`http`], for the client's flows that span
//!   calls (cache, coalescing, revert on ALERT). The full emulator in `acceptance-tests/` is the real test world.
//! - [`recorded`]: answers recorded from the real OPNsense API code, for the decoders' tests.
//! - [`sshd`]: a real OpenSSH sshd on 127.0.0.1 and throwaway Unix users with sudo passwords, for the SSH
//!   transport's tests (plain data out: the tests build their own connection settings).
//! - [`fixture_resource`]: `homelab_test_fixture`, a resource, data source and list resource with no backend that
//!   exercise every framework feature through real Terraform (`test-fixtures` feature only).

#[cfg(feature = "test-fixtures")]
pub mod fixture_resource;
#[cfg(test)]
pub mod http;
#[cfg(test)]
pub mod opnsense;
#[cfg(test)]
pub mod recorded;
#[cfg(test)]
pub mod sshd;
