//! terraform-provider-homelab: a Terraform provider (plugin protocol 6.10) for a homelab k3s HA control plane
//! behind OPNsense HAProxy. See ARCHITECTURE.md for the map of the code.

pub mod framework;
pub mod homelab;
pub mod k3s;
pub mod opnsense;
pub mod plugin;
pub mod provider;
pub mod resources;
pub mod secret;
pub mod ssh;
#[cfg(any(test, feature = "test-fixtures"))]
pub mod testing;
