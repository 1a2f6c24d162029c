//! `homelab-lab`: the CLI of the host lab, and (by the name it is called under) the `systemctl`, `journalctl` and
//! `systemd-notify` of every lab host, and every host's PID 1 (`host-init`). One binary so that a lab needs nothing
//! installed but this file; see the library docs for the design.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use homelab_lab::{Lab, LabSpec};

#[derive(Parser)]
#[command(
    name = "homelab-lab",
    about = "Hosts in network namespaces for the homelab provider's tests"
)]
struct Cli {
    /// Lab name (namespaces are named hl-NAME-sw / hl-NAME-ws).
    #[arg(long, global = true, default_value = "lab")]
    name: String,
    /// Directory holding labs (default $HOMELAB_LAB_ROOT or /var/lib/homelab-lab).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Bring a lab up (no-op when it is already up; cleans up a crashed one first).
    Up {
        #[arg(long, default_value_t = 3)]
        servers: u32,
        #[arg(long, default_value_t = 3)]
        agents: u32,
        /// Leave out the load balancer host running the OPNsense emulator.
        #[arg(long)]
        no_opnsense: bool,
    },
    /// Remove a lab: processes, namespaces, files.
    Down,
    /// Show the hosts and how to reach them.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Run a command inside a host (all its namespaces, as root).
    Exec {
        host: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<OsString>,
    },
    /// Run a command in the workstation network namespace.
    Ws {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<OsString>,
    },
    /// Open ssh from the workstation to a host (extra arguments are the remote command).
    Ssh {
        host: String,
        #[arg(long, default_value = "root")]
        user: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cmd: Vec<OsString>,
    },
    /// Power a host off (kills all its processes).
    Stop { host: String },
    /// Boot a stopped host.
    Start { host: String },
    /// Stop and start a host.
    Restart { host: String },
    /// Cut a host's network link.
    CutLink { host: String },
    /// Restore a host's network link.
    RestoreLink { host: String },
    /// Kill the sshd processes serving SSH sessions on a host (sessions drop mid-command).
    DropSsh { host: String },
    /// Copy a file into a host's private filesystem.
    InstallFile {
        host: String,
        src: PathBuf,
        dest: PathBuf,
        #[arg(long, default_value = "0755")]
        mode: String,
    },
    /// Remove every lab (or leftovers of crashed ones) and its namespaces and processes.
    Cleanup {
        /// All labs under the root and every hl-* namespace, not only --name.
        #[arg(long)]
        all: bool,
    },
    /// Run the OPNsense emulator (forwards to opnsense_emulator::cli::run).
    #[command(disable_help_flag = true)]
    Opnsense {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
    /// PID 1 of a lab host (internal).
    #[command(hide = true)]
    HostInit {
        #[arg(long)]
        host_dir: PathBuf,
        #[arg(long)]
        hostname: String,
    },
}

fn main() -> ExitCode {
    let argv0 = std::env::args_os()
        .next()
        .map(|a| {
            PathBuf::from(a)
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let rest: Vec<String> = std::env::args().skip(1).collect();
    let code = match argv0.as_str() {
        "systemctl" => homelab_lab::systemd::client::systemctl_main(&rest),
        "journalctl" => homelab_lab::systemd::client::journalctl_main(&rest),
        "systemd-notify" => homelab_lab::systemd::client::notify_main(&rest),
        _ => match run(Cli::parse()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("homelab-lab: {e:#}");
                1
            }
        },
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn status_code(s: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0))
}

fn run(cli: Cli) -> Result<i32> {
    let root = cli.root.as_deref();
    let open = || Lab::open_in(root, &cli.name).with_context(|| format!("lab {}", cli.name));
    match cli.cmd {
        Cmd::Up {
            servers,
            agents,
            no_opnsense,
        } => {
            let t0 = std::time::Instant::now();
            let spec = LabSpec {
                name: cli.name.clone(),
                servers,
                agents,
                opnsense: !no_opnsense,
                opnsense_pair: false,
                root: cli.root.clone(),
                bin: None,
            };
            let lab = Lab::up(&spec)?;
            print!("{}", lab.describe());
            println!("  (ready in {:.1}s)", t0.elapsed().as_secs_f64());
            Ok(0)
        }
        Cmd::Down => {
            let t0 = std::time::Instant::now();
            Lab::down_by_name(root, &cli.name)?;
            println!(
                "lab {} removed in {:.1}s",
                cli.name,
                t0.elapsed().as_secs_f64()
            );
            Ok(0)
        }
        Cmd::Status { json } => {
            let lab = open()?;
            if json {
                let mut v = serde_json::to_value(lab.state())?;
                let hosts = v["hosts"].as_array_mut().context("hosts")?;
                for (h, st) in hosts.iter_mut().zip(lab.hosts()) {
                    let running = !lab.host_processes(&st.name).is_empty();
                    h["running"] = serde_json::Value::Bool(running);
                    h["ssh"] = serde_json::json!(lab.ssh_args(&st.name, "root")?);
                }
                v["healthy"] = serde_json::Value::Bool(lab.healthy());
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", lab.describe());
            }
            Ok(0)
        }
        Cmd::Exec { host, cmd } => {
            let lab = open()?;
            let mut c = lab.host_command(&host, &cmd[0])?;
            c.args(&cmd[1..]);
            if let Ok(term) = std::env::var("TERM") {
                c.env("TERM", term);
            }
            Ok(status_code(c.status().context("run in host")?))
        }
        Cmd::Ws { cmd } => {
            let lab = open()?;
            let mut c = lab.ws_command(&cmd[0])?;
            c.args(&cmd[1..]);
            Ok(status_code(c.status().context("run in workstation")?))
        }
        Cmd::Ssh { host, user, cmd } => {
            let lab = open()?;
            let mut c = lab.ssh_command(&host, &user)?;
            if !cmd.is_empty() {
                c.arg("--").args(&cmd);
            }
            Ok(status_code(c.status().context("ssh")?))
        }
        Cmd::Stop { host } => {
            open()?.stop_host(&host)?;
            Ok(0)
        }
        Cmd::Start { host } => {
            open()?.start_host(&host)?;
            Ok(0)
        }
        Cmd::Restart { host } => {
            open()?.restart_host(&host)?;
            Ok(0)
        }
        Cmd::CutLink { host } => {
            open()?.cut_link(&host)?;
            Ok(0)
        }
        Cmd::RestoreLink { host } => {
            open()?.restore_link(&host)?;
            Ok(0)
        }
        Cmd::DropSsh { host } => {
            let n = open()?.drop_ssh_sessions(&host)?;
            println!("killed {n} sshd session process(es) on {host}");
            Ok(0)
        }
        Cmd::InstallFile {
            host,
            src,
            dest,
            mode,
        } => {
            let mode = u32::from_str_radix(mode.trim_start_matches("0o"), 8)
                .context("mode must be octal")?;
            open()?.install_file(&host, &src, &dest, mode)?;
            Ok(0)
        }
        Cmd::Cleanup { all } => {
            if all {
                let names = homelab_lab::lab::cleanup_all(root)?;
                println!(
                    "cleaned up: {}",
                    if names.is_empty() {
                        "nothing".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            } else {
                Lab::down_by_name(root, &cli.name)?;
                println!("cleaned up {}", cli.name);
            }
            Ok(0)
        }
        Cmd::Opnsense { args } => {
            run_emulator(args)?;
            Ok(0)
        }
        Cmd::HostInit { host_dir, hostname } => {
            let lab_bin = std::env::current_exe().context("current exe")?;
            homelab_lab::init::run(homelab_lab::init::InitOptions {
                host_dir,
                hostname,
                lab_bin,
            })?;
            Ok(0)
        }
    }
}

/// The shim in front of the emulator crate's CLI (built with the `emulator` feature once that crate has it).
#[cfg(feature = "emulator")]
fn run_emulator(args: Vec<OsString>) -> Result<()> {
    let mut full = vec![OsString::from("opnsense-emulator")];
    full.extend(args);
    opnsense_emulator::cli::run(full)
}

#[cfg(not(feature = "emulator"))]
fn run_emulator(_args: Vec<OsString>) -> Result<()> {
    anyhow::bail!(
        "this homelab-lab was built without the `emulator` feature (opnsense_emulator::cli::run)"
    )
}
