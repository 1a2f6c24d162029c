//! Two emulated OPNsense firewalls forming an HA pair, for the tests that drive the provider's `secondary` block:
//! the primary, and a secondary that accepts the primary's sync as user [`HA_USER`], each with its own API key and
//! call log, plus the HCL that addresses both.
//!
//! Why one fixture: the pair tests (`tests/opnsense_ha.rs`) and the fault matrix's HA case
//! (`tests/reliability.rs`) need the same two boxes and the same provider block; built twice, the two copies
//! drifted apart in keys and settings.

use opnsense_emulator::{Config, Emulator, EmulatorHandle};

use crate::terraform::hcl_string;

/// The primary's API key and secret.
pub const PRIMARY_KEY: &str = "ha-key-primary";
pub const PRIMARY_SECRET: &str = "ha-secret-primary-0c41";
/// The secondary's own API key and secret (the provider's `secondary` block).
pub const SECONDARY_KEY: &str = "ha-key-secondary";
pub const SECONDARY_SECRET: &str = "ha-secret-secondary-5e02";
/// The user on the secondary that accepts the sync, and its password.
pub const HA_USER: &str = "hasync";
pub const HA_PASSWORD: &str = "ha-user-pass-77d1";

/// A running pair; dropping it stops both emulators and their haproxy processes.
pub struct HaPair {
    pub primary: EmulatorHandle,
    pub secondary: EmulatorHandle,
    primary_key: (String, String),
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl HaPair {
    /// Starts both emulators on free loopback ports, with call logs.
    pub fn start() -> HaPair {
        HaPair::start_keyed(PRIMARY_KEY, PRIMARY_SECRET)
    }

    /// [`HaPair::start`] with the primary's API key and secret given (a test whose helpers use their own).
    pub fn start_keyed(primary_key: &str, primary_secret: &str) -> HaPair {
        let start = |key: &str, secret: &str, sync_user: bool| {
            let dir = tempfile::tempdir().expect("temp dir");
            let mut cfg = Config::new(
                "127.0.0.1:0".parse().unwrap(),
                dir.path().join("config.json"),
                key,
                secret,
            );
            cfg.log_calls = true;
            if sync_user {
                cfg.xmlrpc_credentials = Some((HA_USER.into(), HA_PASSWORD.into()));
            }
            (Emulator::start(cfg).expect("emulator starts"), dir)
        };
        let (primary, d1) = start(primary_key, primary_secret, false);
        let (secondary, d2) = start(SECONDARY_KEY, SECONDARY_SECRET, true);
        HaPair {
            primary,
            secondary,
            primary_key: (primary_key.to_string(), primary_secret.to_string()),
            _dirs: (d1, d2),
        }
    }

    /// The provider block: the primary, with the secondary's API in its `secondary` block.
    pub fn provider_hcl(&self) -> String {
        format!(
            r#"provider "homelab" {{
  opnsense {{
    url        = {}
    api_key    = {}
    api_secret = {}
    secondary {{
      url        = {}
      api_key    = {}
      api_secret = {}
    }}
  }}
}}
"#,
            hcl_string(&self.primary.url()),
            hcl_string(&self.primary_key.0),
            hcl_string(&self.primary_key.1),
            hcl_string(&self.secondary.url()),
            hcl_string(SECONDARY_KEY),
            hcl_string(SECONDARY_SECRET),
        )
    }

    /// `homelab_opnsense_hasync.this` on the primary, syncing `items` to the secondary; `password` is the HCL line(s)
    /// that set the HA user's password (`password = "…"`, or the write-only pair).
    pub fn hasync_hcl(&self, password: &str, items: &[&str]) -> String {
        let items: Vec<String> = items.iter().map(|i| hcl_string(i)).collect();
        format!(
            r#"resource "homelab_opnsense_hasync" "this" {{
  peer       = {}
  username   = {}
  {password}
  sync_items = [{}]
}}
"#,
            hcl_string(&self.secondary.url()),
            hcl_string(HA_USER),
            items.join(", "),
        )
    }
}
