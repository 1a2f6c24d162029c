//! Our install script's contract (k3s.md §1): the command-word rule, files and modes, the env file, the
//! hash-based restart decision that ignores `config.yaml`, SKIP_START / SKIP_ENABLE / FORCE_RESTART /
//! SKIP_DOWNLOAD, version changes from the artifact directory, and uninstall scripts that really remove things.
//! `systemctl` is a recording stub on PATH here (the real stand-in lives in the lab); what is tested is which calls
//! the script makes and what it leaves on disk.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh");
const K3S: &str = env!("CARGO_BIN_EXE_k3s");

/// The version the test "upgrades" to (same length as the default build's).
const NEXT: &str = "v1.32.1+k3s1";

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let w = World {
            dir: tempfile::tempdir().unwrap(),
        };
        let stub = w.dir.path().join("stub");
        std::fs::create_dir_all(&stub).unwrap();
        let calls = w.dir.path().join("calls");
        std::fs::write(
            stub.join("systemctl"),
            format!("#!/bin/sh\necho \"$*\" >> {}\n", calls.display()),
        )
        .unwrap();
        std::fs::set_permissions(
            stub.join("systemctl"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // Two "releases": this build, and a copy whose compiled-in version string is swapped for one of the
        // same length (what build-artifacts.sh would produce with K3S_SIM_VERSION, without a second build).
        let art = w.dir.path().join("art");
        for v in [k3s_sim::VERSION, NEXT] {
            std::fs::create_dir_all(art.join(v)).unwrap();
            std::fs::write(art.join(v).join("k3s"), common::with_version(v)).unwrap();
        }
        std::fs::create_dir_all(art.join("channels")).unwrap();
        std::fs::write(
            art.join("channels/stable"),
            format!("{}\n", k3s_sim::VERSION),
        )
        .unwrap();
        w
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn p(&self, abs: &str) -> PathBuf {
        self.root().join(abs.trim_start_matches('/'))
    }

    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let path = format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            self.dir.path().join("stub").display()
        );
        let _ = std::fs::remove_file(self.dir.path().join("calls"));
        Command::new("sh")
            .arg(SCRIPT)
            .args(args)
            .env_clear()
            .env("PATH", path)
            .env("K3S_SIM_ROOT", self.root())
            .env("INSTALL_K3S_SIM_ARTIFACTS", self.dir.path().join("art"))
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

fn out(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn server_install_rerun_and_restart_decision() {
    let w = World::new();
    let o = w.run(
        &[
            ("K3S_TOKEN", "secret"),
            ("INSTALL_K3S_EXEC", "--cluster-init"),
        ],
        &["--tls-san", "10.0.3.100"],
    );
    assert!(o.status.success(), "{}", out(&o));
    let text = out(&o);
    assert!(
        text.contains(&format!("[INFO]  Using {} as release", k3s_sim::VERSION)),
        "{text}"
    );
    assert!(text.contains("[INFO]  systemd: Starting k3s"), "{text}");
    assert_eq!(mode(&w.p("/usr/local/bin/k3s")), 0o755);
    assert_eq!(mode(&w.p("/etc/systemd/system/k3s.service.env")), 0o600);
    assert_eq!(mode(&w.p("/usr/local/bin/k3s-killall.sh")), 0o755);
    assert_eq!(mode(&w.p("/usr/local/bin/k3s-uninstall.sh")), 0o755);
    let unit = std::fs::read_to_string(w.p("/etc/systemd/system/k3s.service")).unwrap();
    assert!(
        unit.contains("Type=notify")
            && unit.contains("TimeoutStartSec=0")
            && unit.contains("KillMode=process")
    );
    assert!(
        unit.contains("'server' \\\n    '--cluster-init' \\\n    '--tls-san' \\\n    '10.0.3.100'"),
        "{unit}"
    );
    let env = std::fs::read_to_string(w.p("/etc/systemd/system/k3s.service.env")).unwrap();
    assert!(env.contains("K3S_TOKEN='secret'"), "{env}");
    assert!(!env.contains("INSTALL_K3S"), "{env}");
    assert_eq!(
        w.calls(),
        vec!["disable k3s", "enable k3s", "daemon-reload", "restart k3s"]
    );
    // kubectl exists in PATH (/usr/bin/kubectl) so it is not linked; crictl/ctr are.
    assert!(w
        .p("/usr/local/bin/crictl")
        .symlink_metadata()
        .unwrap()
        .file_type()
        .is_symlink());

    // Same inputs: no restart.
    let o = w.run(
        &[
            ("K3S_TOKEN", "secret"),
            ("INSTALL_K3S_EXEC", "--cluster-init"),
        ],
        &["--tls-san", "10.0.3.100"],
    );
    assert!(
        out(&o).contains("Skipping binary downloaded, installed k3s matches hash"),
        "{}",
        out(&o)
    );
    assert!(
        out(&o).contains("[INFO]  No change detected so skipping service start"),
        "{}",
        out(&o)
    );
    assert!(!w.calls().contains(&"restart k3s".to_string()));

    // config.yaml is invisible to the decision.
    std::fs::create_dir_all(w.p("/etc/rancher/k3s")).unwrap();
    std::fs::write(w.p("/etc/rancher/k3s/config.yaml"), "tls-san: [vip.lan]\n").unwrap();
    let o = w.run(
        &[
            ("K3S_TOKEN", "secret"),
            ("INSTALL_K3S_EXEC", "--cluster-init"),
        ],
        &["--tls-san", "10.0.3.100"],
    );
    assert!(out(&o).contains("No change detected"), "{}", out(&o));

    // An env change restarts; so does FORCE_RESTART; SKIP_START never starts.
    let o = w.run(
        &[
            ("K3S_TOKEN", "secret"),
            ("K3S_NODE_NAME", "n1"),
            ("INSTALL_K3S_EXEC", "--cluster-init"),
        ],
        &["--tls-san", "10.0.3.100"],
    );
    assert!(
        w.calls().contains(&"restart k3s".to_string()),
        "{}",
        out(&o)
    );
    let o = w.run(
        &[
            ("K3S_TOKEN", "secret"),
            ("K3S_NODE_NAME", "n1"),
            ("INSTALL_K3S_EXEC", "--cluster-init"),
            ("INSTALL_K3S_FORCE_RESTART", "true"),
        ],
        &["--tls-san", "10.0.3.100"],
    );
    assert!(
        w.calls().contains(&"restart k3s".to_string()),
        "{}",
        out(&o)
    );
    let o = w.run(
        &[("K3S_TOKEN", "other"), ("INSTALL_K3S_SKIP_START", "true")],
        &[],
    );
    assert_eq!(
        w.calls(),
        vec!["disable k3s", "enable k3s", "daemon-reload"],
        "{}",
        out(&o)
    );
    let o = w.run(&[("INSTALL_K3S_SKIP_ENABLE", "true")], &[]);
    assert_eq!(w.calls(), vec!["disable k3s"], "{}", out(&o));

    // A version change downloads and restarts.
    let o = w.run(&[("INSTALL_K3S_VERSION", "v1.32.1+k3s1")], &[]);
    let t = out(&o);
    assert!(
        t.contains("Installing k3s to") && t.contains("systemd: Starting k3s"),
        "{t}"
    );
    let o = w.run(&[("INSTALL_K3S_VERSION", "v9.9.9+k3s1")], &[]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));

    // Uninstall really removes everything (our stub systemctl stops nothing, the files are what we check).
    std::fs::create_dir_all(w.p("/var/lib/rancher/k3s/server/db")).unwrap();
    let o = Command::new("sh")
        .arg(w.p("/usr/local/bin/k3s-uninstall.sh"))
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", w.dir.path().join("stub").display()),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out(&o));
    for gone in [
        "/usr/local/bin/k3s",
        "/usr/local/bin/k3s-uninstall.sh",
        "/usr/local/bin/k3s-killall.sh",
        "/usr/local/bin/crictl",
        "/etc/systemd/system/k3s.service",
        "/etc/systemd/system/k3s.service.env",
        "/etc/rancher/k3s",
        "/var/lib/rancher/k3s",
    ] {
        assert!(w.p(gone).symlink_metadata().is_err(), "{gone} left behind");
    }
}

#[test]
fn command_word_rule_and_fatal_cases() {
    let w = World::new();
    // K3S_URL + flags only: an agent (the seed's trap).
    let o = w.run(
        &[
            ("K3S_URL", "https://10.0.3.2:6443"),
            ("K3S_TOKEN", "t"),
            ("INSTALL_K3S_EXEC", "--tls-san 10.0.3.100"),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(w.p("/etc/systemd/system/k3s-agent.service").exists());
    assert!(w.p("/usr/local/bin/k3s-agent-uninstall.sh").exists());
    assert!(
        std::fs::read_to_string(w.p("/etc/systemd/system/k3s-agent.service"))
            .unwrap()
            .contains("'agent'")
    );
    // With `server` first: a server.
    let o = w.run(
        &[
            ("K3S_URL", "https://10.0.3.2:6443"),
            ("K3S_TOKEN", "t"),
            ("INSTALL_K3S_EXEC", "server --tls-san 10.0.3.100"),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(
        std::fs::read_to_string(w.p("/etc/systemd/system/k3s.service"))
            .unwrap()
            .contains("'server'")
    );
    // Two k3s units: uninstalling the agent keeps the server's files.
    let o = Command::new("sh")
        .arg(w.p("/usr/local/bin/k3s-agent-uninstall.sh"))
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", w.dir.path().join("stub").display()),
        )
        .output()
        .unwrap();
    assert!(
        out(&o).contains("Additional k3s services installed, skipping uninstall of k3s"),
        "{}",
        out(&o)
    );
    assert!(
        w.p("/usr/local/bin/k3s").exists()
            && !w.p("/etc/systemd/system/k3s-agent.service").exists()
    );

    let o = w.run(&[("K3S_URL", "https://10.0.3.2:6443")], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("[ERROR]  Defaulted k3s exec command to 'agent' because K3S_URL is defined, but K3S_TOKEN or K3S_TOKEN_FILE is not defined."));
    let o = w.run(
        &[("K3S_URL", "http://10.0.3.2:6443"), ("K3S_TOKEN", "t")],
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(out(&o).contains("Only https:// URLs are supported for K3S_URL"));
    // INSTALL_K3S_NAME picks the unit name.
    let o = w.run(&[("INSTALL_K3S_NAME", "extra")], &["server"]);
    assert!(o.status.success(), "{}", out(&o));
    assert!(w.p("/etc/systemd/system/k3s-extra.service").exists());
}

#[test]
fn air_gap_skip_download() {
    let w = World::new();
    let o = w.run(&[("INSTALL_K3S_SKIP_DOWNLOAD", "true")], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("Executable k3s binary not found at"),
        "{}",
        out(&o)
    );
    std::fs::create_dir_all(w.p("/usr/local/bin")).unwrap();
    std::fs::copy(K3S, w.p("/usr/local/bin/k3s")).unwrap();
    let o = w.run(
        &[
            ("INSTALL_K3S_SKIP_DOWNLOAD", "true"),
            ("INSTALL_K3S_BIN_DIR", "/usr/local/bin"),
            ("INSTALL_K3S_SYMLINK", "skip"),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", out(&o));
    assert!(out(&o).contains("Skipping k3s download and verify"));
    assert!(!w.p("/usr/local/bin/crictl").exists());
    // The installed binary answers --version like k3s.
    let v = Command::new(w.p("/usr/local/bin/k3s"))
        .arg("--version")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&v.stdout).into_owned();
    assert_eq!(
        v.lines().next().unwrap().split_whitespace().nth(2),
        Some(k3s_sim::VERSION),
        "{v}"
    );
}
