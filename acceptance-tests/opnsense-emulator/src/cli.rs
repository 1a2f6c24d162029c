//! `homelab-lab opnsense ...`: run the emulator in the foreground so a person (or the lab) can point the provider
//! or curl at it. Logs one line per API call on stderr; stops on Ctrl-C or SIGTERM and then kills its haproxy.
//!
//! The API secret can be given as `--api-secret` (as the lab asked), but `--api-secret-file` or the environment
//! variable `OPNSENSE_EMULATOR_API_SECRET` keep it out of the process list.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use crate::config::{Config, TlsMode, VipMode};
use crate::emulator::Emulator;

#[derive(Debug, Parser)]
#[command(
    name = "opnsense",
    about = "OPNsense REST API emulator (HAProxy, VIPs, aliases, filter rules)"
)]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:8443.
    #[arg(long)]
    listen: SocketAddr,
    /// State file (the emulator's config.xml); created when missing, reloaded on restart.
    #[arg(long)]
    state: PathBuf,
    #[arg(long)]
    api_key: String,
    /// API secret (prefer --api-secret-file or OPNSENSE_EMULATOR_API_SECRET).
    #[arg(long)]
    api_secret: Option<String>,
    #[arg(long)]
    api_secret_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a freshly generated CA + certificate; the CA PEM is written to this file.
    #[arg(long, conflicts_with = "tls_cert")]
    tls_generate_ca_out: Option<PathBuf>,
    /// Where haproxy.cfg, the pid file and the admin socket live (default: `haproxy/` beside the state file).
    #[arg(long)]
    haproxy_dir: Option<PathBuf>,
    #[arg(long, default_value = "/usr/sbin/haproxy")]
    haproxy_bin: PathBuf,
    /// Padding of failed logins (the real box: 2000 ms).
    #[arg(long, default_value_t = 2000)]
    auth_delay_ms: u64,
    /// Bring VIPs up with `ip addr add` on these devices: `lan=eth0` (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    vip_interface_map: Vec<String>,
    /// Run `ip addr` for VIPs inside this named network namespace (`ip -n NS`) instead of the current one.
    #[arg(long)]
    vip_netns: Option<String>,
    /// Interfaces of the emulated box as key=Description (default: wan=WAN,lan=LAN).
    #[arg(long, value_delimiter = ',')]
    interface: Vec<String>,
    #[arg(long, default_value = "26.7.2")]
    opnsense_version: String,
    #[arg(long, default_value = "5.1")]
    haproxy_plugin_version: String,
    /// Do not start haproxy at boot even when the saved model has it enabled.
    #[arg(long)]
    no_boot_haproxy: bool,
    /// Do not log API calls.
    #[arg(long)]
    quiet: bool,
    /// Accept HA syncs on `/xmlrpc.php` from a peer logging in as this user; the password comes from
    /// OPNSENSE_EMULATOR_XMLRPC_PASSWORD (never on the command line).
    #[arg(long)]
    xmlrpc_user: Option<String>,
    /// Run CARP for the box's CARP VIPs, advertising from this UDP address (e.g. `192.0.2.1:1112`).
    #[arg(long)]
    carp_listen: Option<std::net::SocketAddr>,
    /// Where CARP advertisements go (the peer's `--carp-listen`); repeatable or comma-separated.
    #[arg(long, value_delimiter = ',', requires = "carp_listen")]
    carp_peer: Vec<std::net::SocketAddr>,
}

fn pairs(items: &[String], what: &str) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => bail!("{what}: expected key=value, got {s:?}"),
        })
        .collect()
}

/// Entry point for `homelab-lab opnsense`. `args[0]` is the program name (as with `std::env::args_os()`); if it
/// already looks like an option it is treated as the first option.
pub fn run(args: Vec<OsString>) -> anyhow::Result<()> {
    let mut args = args;
    if args
        .first()
        .map(|a| a.to_string_lossy().starts_with("--"))
        .unwrap_or(true)
    {
        args.insert(0, OsString::from("opnsense"));
    }
    let a = Args::try_parse_from(args)?;
    let secret = match (&a.api_secret, &a.api_secret_file, std::env::var("OPNSENSE_EMULATOR_API_SECRET").ok()) {
        (Some(s), _, _) => s.clone(),
        (None, Some(f), _) => std::fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim_end()
            .to_string(),
        (None, None, Some(s)) => s,
        (None, None, None) => bail!("an API secret is required (--api-secret, --api-secret-file or OPNSENSE_EMULATOR_API_SECRET)"),
    };
    let mut cfg = Config::new(a.listen, a.state.clone(), &a.api_key, &secret);
    cfg.tls = match (&a.tls_cert, &a.tls_key, &a.tls_generate_ca_out) {
        (Some(c), Some(k), _) => TlsMode::Files {
            cert: c.clone(),
            key: k.clone(),
        },
        (None, None, Some(_)) => TlsMode::Generate {
            hostnames: vec!["OPNsense.localdomain".into()],
        },
        (None, None, None) => TlsMode::Off,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    if let Some(d) = &a.haproxy_dir {
        cfg.haproxy_dir = d.clone();
    }
    cfg.haproxy_bin = a.haproxy_bin.clone();
    cfg.auth_failure_delay = Duration::from_millis(a.auth_delay_ms);
    let map = pairs(&a.vip_interface_map, "--vip-interface-map")?;
    if !map.is_empty() {
        cfg.vip_mode = VipMode::Interfaces(map.into_iter().collect::<BTreeMap<_, _>>());
    }
    cfg.vip_netns = a.vip_netns.clone();
    if let Some(user) = &a.xmlrpc_user {
        let pw = std::env::var("OPNSENSE_EMULATOR_XMLRPC_PASSWORD")
            .context("--xmlrpc-user needs OPNSENSE_EMULATOR_XMLRPC_PASSWORD")?;
        cfg.xmlrpc_credentials = Some((user.clone(), pw));
    }
    if let Some(listen) = a.carp_listen {
        cfg.carp = Some(crate::carp::CarpConfig {
            listen,
            peers: a.carp_peer.clone(),
        });
    }
    let ifaces = pairs(&a.interface, "--interface")?;
    if !ifaces.is_empty() {
        cfg.interfaces = ifaces;
    }
    cfg.opnsense_version = a.opnsense_version.clone();
    cfg.haproxy_plugin_version = a.haproxy_plugin_version.clone();
    cfg.start_haproxy_on_boot = !a.no_boot_haproxy;
    cfg.log_calls = !a.quiet;

    // warnings (refused haproxy configs, haproxy start failures, ip addr errors) go to stderr with the call log
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPNSENSE_EMULATOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("opnsense_emulator=info")),
        )
        .try_init();
    let handle = Emulator::start(cfg).context("starting the emulator")?;
    if let (Some(out), Some(ca)) = (&a.tls_generate_ca_out, handle.ca_pem()) {
        // atomically: the lab waits for this file to appear and reads it right away
        let tmp = out.with_extension("tmp");
        std::fs::write(&tmp, ca).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    }
    eprintln!(
        "opnsense-emulator: listening on {} (state {})",
        handle.url(),
        a.state.display()
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        anyhow::Ok(())
    })?;
    eprintln!("opnsense-emulator: stopping");
    handle.shutdown();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_lab_command_line() {
        let args: Vec<OsString> = [
            "opnsense-emulator",
            "--listen",
            "192.0.2.1:443",
            "--state",
            "/var/lib/opnsense-emulator/config.json",
            "--api-key",
            "k",
            "--api-secret-file",
            "/var/lib/opnsense-emulator/api-secret",
            "--tls-generate-ca-out",
            "/var/lib/opnsense-emulator/ca.pem",
            "--vip-interface-map",
            "lan=eth0",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let a = Args::try_parse_from(args).unwrap();
        assert_eq!(a.listen.port(), 443);
        assert_eq!(
            pairs(&a.vip_interface_map, "m").unwrap(),
            vec![("lan".to_string(), "eth0".to_string())]
        );
        assert_eq!(a.auth_delay_ms, 2000);
        assert!(pairs(&["lan".to_string()], "m").is_err());
    }

    #[test]
    fn refuses_to_start_without_a_secret() {
        std::env::remove_var("OPNSENSE_EMULATOR_API_SECRET");
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--state",
            "/nonexistent/x.json",
            "--api-key",
            "k",
        ];
        let err = run(args.iter().map(OsString::from).collect()).unwrap_err();
        assert!(err.to_string().contains("API secret"), "{err}");
    }
}
