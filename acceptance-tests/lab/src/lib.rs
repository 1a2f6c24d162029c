//! The host lab: a small datacenter of Linux "hosts" in namespaces, for end-to-end tests of the k3s resources.
//!
//! No VM or container runtime is available in CI, yet the provider must be tested against real SSH, real sudo and a
//! service manager that behaves like systemd. So each host is a set of Linux namespaces (network, UTS, mount, PID,
//! IPC) held by its own PID 1 — our systemd stand-in ([`systemd`]) — with a private `/etc`, `/usr/local/bin`,
//! `/home`, `/root` and `/var` (so `/var/lib/rancher` is per host), a fresh `/run` and `/tmp`, and Debian's real
//! OpenSSH sshd started as a unit. Hosts sit on a bridge inside a per-lab "switch" namespace with TEST-NET-1
//! addresses (192.0.2.0/24) that exist nowhere else; a workstation namespace (`ws`, 192.0.2.50) is where Terraform,
//! kubectl and ssh run in tests. Nothing in a lab has a route out, and several labs can run at once because each has
//! its own switch.
//!
//! Start with [`Lab::up_guarded`] (tests: the lab is taken down when the returned [`LabGuard`] is dropped, also on
//! panic) or [`Lab::up`] / `homelab-lab up` (the caller takes it down), then use [`Lab::ssh_command`],
//! [`Lab::host_command`], [`Lab::ws_command`], [`Lab::install_file`], the fault injectors ([`Lab::stop_host`],
//! [`Lab::cut_link`], [`Lab::drop_ssh_sessions`], ...) and finally [`Lab::down`] or [`LabGuard::down`].
//!
//! Typical use in a test:
//!
//! ```no_run
//! use homelab_lab::{Lab, LabSpec};
//! # fn main() -> Result<(), homelab_lab::Error> {
//! let lab = Lab::up_guarded(&LabSpec { servers: 1, agents: 1, opnsense: false, ..LabSpec::new("mytest") })?;
//! lab.install_file("k8s-control-1", "target/debug/k3s".as_ref(), "/usr/local/bin/k3s".as_ref(), 0o755)?;
//! let out = lab.ssh_command("k8s-control-1", "root")?.args(["--", "systemctl is-active k3s"]).output();
//! let tf = lab.ws_command("terraform")?; // runs in the workstation's network namespace
//! # let _ = (out, tf);
//! lab.down()?; // or let the guard drop; `HOMELAB_KEEP_LABS=1` keeps labs for debugging
//! # Ok(()) }
//! ```
//!
//! The same from a shell: `homelab-lab --name mytest up --servers 1 --agents 1 --no-opnsense`,
//! `homelab-lab --name mytest ssh k8s-control-1 -- systemctl status ssh`, `homelab-lab --name mytest status --json`,
//! `homelab-lab --name mytest down` (see `homelab-lab --help`).
//!
//! The `homelab-lab` binary is needed at run time (it is every host's PID 1 and its `systemctl`); see
//! [`locate_binary`].

pub mod init;
pub mod lab;
pub mod ns;
pub mod opnsense;
pub mod systemd;

pub use lab::{
    CtlOutput, HostState, Lab, LabGuard, LabSpec, LabState, Role, DEFAULT_ROOT, KEEP_LABS_ENV,
};
pub use opnsense::EmulatorInfo;

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} failed with exit code {status}: {stderr}")]
    Command {
        what: String,
        status: i32,
        stderr: String,
    },
    #[error("invalid lab name {0:?}: use 1-20 characters a-z, 0-9 and '-'")]
    InvalidName(String),
    #[error("no lab named {0:?} (no state file)")]
    NoSuchLab(String),
    #[error("no host named {0:?} in this lab")]
    NoSuchHost(String),
    #[error("host {0} is stopped")]
    HostDown(String),
    #[error("host {0} did not boot: {1}")]
    Boot(String, String),
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error(
        "the homelab-lab binary was not found (set HOMELAB_LAB_BIN or run `cargo build -p homelab-lab`); looked at: {0}"
    )]
    BinaryNotFound(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub(crate) fn io(what: &str, source: std::io::Error) -> Self {
        Error::Io {
            what: what.to_string(),
            source,
        }
    }
}

/// Finds the `homelab-lab` binary: `$HOMELAB_LAB_BIN`; else the running executable if it is `homelab-lab`; else
/// builds it with `cargo build -p homelab-lab` (a no-op when up to date) when this crate's sources are present, so
/// tests of other crates always get a binary that matches this library; else `homelab-lab` next to the running
/// executable or one directory up (test binaries live in `target/*/deps`).
pub fn locate_binary() -> Result<PathBuf, Error> {
    let mut tried = Vec::new();
    if let Some(p) = std::env::var_os("HOMELAB_LAB_BIN") {
        let p = PathBuf::from(p);
        if p.is_file() {
            return p
                .canonicalize()
                .map_err(|e| Error::io("canonicalize HOMELAB_LAB_BIN", e));
        }
        tried.push(p.display().to_string());
    }
    let exe = std::env::current_exe().ok();
    if let Some(exe) = &exe {
        if exe.file_name().is_some_and(|n| n == "homelab-lab") {
            return Ok(exe.clone());
        }
    }
    match build_binary() {
        Ok(p) => return Ok(p),
        Err(e) => tried.push(format!("cargo build ({e})")),
    }
    if let Some(dir) = exe.as_ref().and_then(|e| e.parent()) {
        for cand in [dir.join("homelab-lab"), dir.join("../homelab-lab")] {
            if cand.is_file() {
                return cand
                    .canonicalize()
                    .map_err(|e| Error::io("canonicalize", e));
            }
            tried.push(cand.display().to_string());
        }
    }
    Err(Error::BinaryNotFound(tried.join(", ")))
}

/// Runs `cargo build -p homelab-lab --bin homelab-lab` once per process and returns the built executable.
pub fn build_binary() -> Result<PathBuf, Error> {
    static BUILT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
            if !manifest.is_file() {
                return Err(format!("{} not found", manifest.display()));
            }
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let out = std::process::Command::new(cargo)
                .args([
                    "build",
                    "--quiet",
                    "--message-format=json",
                    "-p",
                    "homelab-lab",
                    "--bin",
                    "homelab-lab",
                ])
                .arg("--manifest-path")
                .arg(&manifest)
                .stderr(std::process::Stdio::inherit())
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!("cargo build failed ({})", out.status));
            }
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| {
                    v.get("executable")
                        .and_then(|e| e.as_str())
                        .map(PathBuf::from)
                })
                .find(|p| p.file_name().is_some_and(|n| n == "homelab-lab"))
                .ok_or_else(|| "cargo did not report the executable".to_string())
        })
        .clone()
        .map_err(Error::Other)
}

/// Writes `content` to `path` with mode 0600 from the start (keys, passwords, API secrets).
pub fn write_secret(path: &Path, content: &[u8]) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(&format!("write {}", path.display()), e))?;
    f.write_all(content)
        .map_err(|e| Error::io(&format!("write {}", path.display()), e))
}
