//! How an emulator instance is set up (listen address, credentials, TLS, where haproxy lives, how VIPs come up).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// TLS for the API listener.
#[derive(Debug, Clone, Default)]
pub enum TlsMode {
    /// Plain HTTP.
    #[default]
    Off,
    /// Generate a CA and a server certificate (SANs: the listen IP, `localhost` and these names). Tests pin the CA
    /// through [`crate::EmulatorHandle::ca_pem`].
    Generate { hostnames: Vec<String> },
    /// Use these PEM files (certificate chain, private key).
    Files { cert: PathBuf, key: PathBuf },
}

/// How a VIP address is brought up on `interfaces/vip_settings/reconfigure`.
#[derive(Debug, Clone, Default)]
pub enum VipMode {
    /// Touch no interface: rely on the address being bindable already (any 127.x address on Linux loopback).
    #[default]
    None,
    /// `ip addr add <subnet>/<bits> dev <device>` for VIPs on these OPNsense interfaces (key `lan` → device `eth0`),
    /// and `ip addr del` for VIPs that went away. Used inside the lab's load balancer network namespace.
    Interfaces(BTreeMap<String, String>),
}

/// Everything an emulator instance needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub state_file: PathBuf,
    pub api_key: String,
    pub api_secret: String,
    pub tls: TlsMode,
    /// Holds haproxy.cfg (live), haproxy.cfg.staging, the pid file and the admin socket.
    pub haproxy_dir: PathBuf,
    pub haproxy_bin: PathBuf,
    pub vip_mode: VipMode,
    /// With [`VipMode::Interfaces`]: run `ip -n <netns> addr ...` in this named network namespace (tests use a
    /// namespace they create); `None` = the emulator's own namespace.
    pub vip_netns: Option<String>,
    /// The real box pads failed logins to 2 s; tests want 0.
    pub auth_failure_delay: Duration,
    /// Interfaces of the emulated box, in config order: (key, description).
    pub interfaces: Vec<(String, String)>,
    /// Reported by `core/firmware/*`.
    pub opnsense_version: String,
    /// Reported by `core/firmware/info` as the `os-haproxy` plugin version.
    pub haproxy_plugin_version: String,
    /// `false` plays a box without os-haproxy: `haproxy/*` answers 404 and firmware lists the plugin as not
    /// installed.
    pub haproxy_plugin_installed: bool,
    /// Write one line per API call to stderr.
    pub log_calls: bool,
    /// Like a box booting: start haproxy from the saved model when HAProxy is enabled.
    pub start_haproxy_on_boot: bool,
    /// UUIDs handed out (in order) to items created by `add*` before random ones: lets a replay of a recording
    /// reproduce the recording's UUIDs, on which search order ties are broken.
    pub preset_uuids: Vec<String>,
    /// The user and password the box's `/xmlrpc.php` accepts from an HA peer (OPNsense: a local user with the
    /// XMLRPC privilege); `None` refuses every sync to this box.
    pub xmlrpc_credentials: Option<(String, String)>,
    /// Run CARP for the box's CARP VIPs (election with the peers, the address on the holder only); `None` keeps
    /// CARP VIPs as plain addresses that `reconfigure` brings up, as a box without a peer would end up holding.
    pub carp: Option<crate::carp::CarpConfig>,
}

impl Config {
    /// Defaults for tests: plain HTTP, no auth padding, haproxy files beside the state file, loopback VIPs.
    pub fn new(
        listen: SocketAddr,
        state_file: impl Into<PathBuf>,
        api_key: &str,
        api_secret: &str,
    ) -> Self {
        let state_file = state_file.into();
        let haproxy_dir = state_file
            .parent()
            .map(|p| p.join("haproxy"))
            .unwrap_or_else(|| PathBuf::from("haproxy"));
        Config {
            listen,
            state_file,
            api_key: api_key.to_string(),
            api_secret: api_secret.to_string(),
            tls: TlsMode::Off,
            haproxy_dir,
            haproxy_bin: PathBuf::from("/usr/sbin/haproxy"),
            vip_mode: VipMode::None,
            vip_netns: None,
            auth_failure_delay: Duration::ZERO,
            interfaces: vec![("wan".into(), "WAN".into()), ("lan".into(), "LAN".into())],
            opnsense_version: "26.7.2".into(),
            haproxy_plugin_version: "5.1".into(),
            haproxy_plugin_installed: true,
            log_calls: false,
            start_haproxy_on_boot: true,
            preset_uuids: Vec::new(),
            xmlrpc_credentials: None,
            carp: None,
        }
    }
}
