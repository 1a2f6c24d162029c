//! What every lab-backed acceptance test needs before its first Terraform run: the lab binary and the k3s
//! stand-in built, install.sh's offline "download" directory laid out, and a way into the lab's workstation
//! network namespace.
//!
//! Why a shared module: the k3s resource, robustness and example tests each grew their own copy of these steps;
//! one copy keeps the artifact layout (which install.sh reads) in one place.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::paths;

/// Where install.sh's artifacts live. Lab hosts privatise `/tmp`, `/run`, `/var`, `/home`, `/root` and `/etc`, so
/// a checkout under `/tmp` (as CI may use) would hide `target/`; `/opt` is shared with the machine.
pub const ARTIFACTS_ROOT: &str = "/opt/homelab-test-artifacts";

/// Builds `bin` of `pkg` (debug) if the workspace's target dir does not have it yet.
pub fn build_if_missing(pkg: &str, bin: &str) {
    if paths::bin(bin).is_file() {
        return;
    }
    let st = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", pkg, "--bin", bin])
        .status()
        .unwrap();
    assert!(st.success(), "cargo build -p {pkg} --bin {bin} failed");
}

/// Makes sure the `homelab-lab` binary can be found (built if it cannot).
pub fn lab_binary() {
    if homelab_lab::locate_binary().is_ok() {
        return;
    }
    build_if_missing("homelab-lab", "homelab-lab");
}

/// Lays out install.sh's offline download directory `ARTIFACTS_ROOT/name`: one `<version>/k3s` per entry of
/// `builds` (`None` = the k3s stand-in as built) and `channels/stable` naming `stable`. Builds the stand-in
/// if missing. Files are written then renamed, so a host never runs a half-written binary.
pub fn k3s_artifacts(name: &str, stable: &str, builds: &[(&str, Option<Vec<u8>>)]) -> PathBuf {
    build_if_missing("k3s-sim", "k3s");
    let k3s = paths::bin("k3s");
    let dir = PathBuf::from(ARTIFACTS_ROOT).join(name);
    for (version, data) in builds {
        let d = dir.join(version);
        std::fs::create_dir_all(&d).unwrap();
        match data {
            Some(bytes) => std::fs::write(d.join("k3s.tmp"), bytes).unwrap(),
            None => {
                std::fs::copy(&k3s, d.join("k3s.tmp")).unwrap();
            }
        }
        std::fs::rename(d.join("k3s.tmp"), d.join("k3s")).unwrap();
    }
    std::fs::create_dir_all(dir.join("channels")).unwrap();
    std::fs::write(dir.join("channels/stable"), format!("{stable}\n")).unwrap();
    dir
}

/// Moves the calling thread into the network namespace at `path` (children it spawns inherit it).
pub fn enter_netns(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: setns on the current thread only; the fd is valid for the call.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}
