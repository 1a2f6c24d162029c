//! The load balancer host: the OPNsense emulator as a unit on `opnsense` (192.0.2.1, VIP 192.0.2.100).
//!
//! The emulator runs inside the host's namespaces so that the real haproxy it drives binds the VIP on the lab
//! network and agents really register through it. It is a unit of the host's supervisor (started at boot, so it
//! comes back after a host restart), running `homelab-lab opnsense ...`, which forwards to
//! `opnsense_emulator::cli::run` (see `main.rs`). The lab brings the VIP up at boot and also lets the emulator
//! manage VIPs on `eth0` (`--vip-interface-map lan=eth0`), so VIPs created through the API appear too.
//!
//! With [`crate::LabSpec::opnsense_pair`] a second host, `opnsense2` (192.0.2.3), runs a second emulator; the two
//! accept the first one's HA sync (user `hasync`, password in the lab's `keys/hasync-password`) and run CARP
//! between them (`--carp-listen`/`--carp-peer`, see the emulator's `carp` module), so a CARP VIP is up on
//! whichever is MASTER and moves when that host is powered off.
//!
//! The API secret is generated per lab and passed as a file (`--api-secret-file`), never on a command line.

use std::path::{Path, PathBuf};

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::{write_secret, Error};

/// UDP port of the emulators' CARP advertisements on the lab network.
pub const CARP_PORT: u16 = 1112;

/// How to reach the OPNsense emulator of a lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmulatorInfo {
    /// `https://192.0.2.1` (reachable from the workstation namespace).
    pub url: String,
    /// The API key (not secret by itself; the secret is in `credentials_file`).
    pub api_key: String,
    /// File with `key=...` and `secret=...` lines, mode 0600 (OPNsense's apikey.txt format).
    pub credentials_file: PathBuf,
    /// PEM of the CA that signed the emulator's certificate.
    pub ca_file: PathBuf,
}

/// Where the emulator keeps its state inside the host.
pub const STATE_DIR: &str = "/var/lib/opnsense-emulator";
/// Unit name of the emulator on the load balancer host.
pub const UNIT: &str = "opnsense-emulator.service";

fn state_dir(host_dir: &Path) -> PathBuf {
    host_dir.join("var/lib/opnsense-emulator")
}

/// Where the emulator's URL, credentials and CA can be found from outside the host.
pub fn emulator_info(host_dir: &Path, ip: Ipv4Addr, api_key: &str) -> EmulatorInfo {
    let state = state_dir(host_dir);
    EmulatorInfo {
        url: format!("https://{ip}"),
        api_key: api_key.to_string(),
        credentials_file: state.join("apikey.txt"),
        ca_file: state.join("ca.pem"),
    }
}

/// The unit that runs the emulator on the load balancer host at `ip`; `carp` = (own address, peer address) of an HA
/// pair, whose emulators elect the CARP VIPs' holder.
pub fn unit_text(
    bin: &Path,
    ip: Ipv4Addr,
    api_key: &str,
    carp: Option<(Ipv4Addr, Ipv4Addr)>,
    xmlrpc: bool,
) -> String {
    let (env, xmlrpc) = if xmlrpc {
        (
            format!("EnvironmentFile={STATE_DIR}/xmlrpc.env\n"),
            " --xmlrpc-user hasync",
        )
    } else {
        (String::new(), "")
    };
    let carp = carp
        .map(|(me, peer)| {
            format!(" \\\n  --carp-listen {me}:{CARP_PORT} --carp-peer {peer}:{CARP_PORT}")
        })
        .unwrap_or_default();
    format!(
        "[Unit]\nDescription=OPNsense API emulator (homelab lab)\n\n[Service]\nType=simple\n\
         {env}ExecStartPre=/bin/rm -f {STATE_DIR}/ca.pem\n\
         ExecStart={bin} opnsense --listen {ip}:443 --state {STATE_DIR}/config.json \\\n  \
         --api-key {api_key} --api-secret-file {STATE_DIR}/api-secret \\\n  \
         --tls-generate-ca-out {STATE_DIR}/ca.pem --vip-interface-map lan=eth0{carp}{xmlrpc}\n\
         Restart=on-failure\nRestartSec=1s\n\n[Install]\nWantedBy=multi-user.target\n",
        bin = bin.display()
    )
}

/// Installs and enables the emulator unit and its credentials in a fresh load balancer host directory.
pub fn prepare_host(
    host_dir: &Path,
    bin: &Path,
    ip: Ipv4Addr,
    api_key: &str,
    api_secret: &str,
    carp: Option<(Ipv4Addr, Ipv4Addr)>,
    xmlrpc_password: Option<&str>,
) -> Result<(), Error> {
    let sysd = host_dir.join("etc/systemd/system");
    std::fs::write(
        sysd.join(UNIT),
        unit_text(bin, ip, api_key, carp, xmlrpc_password.is_some()),
    )
    .map_err(|e| Error::io("write emulator unit", e))?;
    std::os::unix::fs::symlink(
        format!("/etc/systemd/system/{UNIT}"),
        sysd.join(format!("multi-user.target.wants/{UNIT}")),
    )
    .map_err(|e| Error::io("enable emulator unit", e))?;
    let state = state_dir(host_dir);
    std::fs::create_dir_all(&state).map_err(|e| Error::io("emulator state dir", e))?;
    write_secret(
        &state.join("api-secret"),
        format!("{api_secret}\n").as_bytes(),
    )?;
    if let Some(pw) = xmlrpc_password {
        write_secret(
            &state.join("xmlrpc.env"),
            format!("OPNSENSE_EMULATOR_XMLRPC_PASSWORD={pw}\n").as_bytes(),
        )?;
    }
    write_secret(
        &state.join("apikey.txt"),
        format!("key={api_key}\nsecret={api_secret}\n").as_bytes(),
    )?;
    Ok(())
}

/// Waits until the emulator has written its CA (it does so once it listens).
pub fn wait_ready(host_dir: &Path, timeout: std::time::Duration) -> bool {
    let ca = state_dir(host_dir).join("ca.pem");
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if ca.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    false
}
