//! Acceptance tests of `homelab_k3s_server` and `homelab_k3s_agent` (issue 7): real Terraform, run in the host
//! lab's workstation network namespace, drives the provider over real SSH to lab hosts running the k3s stand-in
//! (installed by our `install.sh` from an artifact directory), and the result is checked with the real kubectl.
//!
//! Why a per-thread `setns`: the step API spawns Terraform itself; a child process inherits the network namespace
//! of the thread that forks it, so the test thread joins the lab's workstation namespace and everything Terraform
//! (and the provider it launches) does happens there — the only place the 192.0.2.x lab hosts are reachable.
//!
//! Needs root (namespaces) and the `homelab-lab` binary (built on demand).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use homelab_acceptance::terraform::{hcl_string, required_providers, State};
use homelab_acceptance::{paths, Action, Step, TerraformVersion, TestCase};
use homelab_lab::{Lab, LabSpec};

const VERSION: &str = "v1.31.5+k3s1";
/// The version the upgrade step moves to (same length as VERSION: the stand-in's version is patched in place).
const NEXT: &str = "v1.31.6+k3s1";
const INSTALL_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k3s-sim/install.sh");

struct LabGuard(Option<Lab>);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            let _ = lab.down();
        }
    }
}

fn lab_binary() {
    if homelab_lab::locate_binary().is_ok() {
        return;
    }
    let st = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "homelab-lab"])
        .status()
        .unwrap();
    assert!(st.success(), "cargo build -p homelab-lab failed");
}

/// The k3s stand-in with its version string replaced (same length), like a build of another release.
fn with_version(bin: &[u8], v: &str) -> Vec<u8> {
    assert_eq!(VERSION.len(), v.len());
    let from = VERSION.as_bytes();
    let mut out = Vec::with_capacity(bin.len());
    let mut i = 0;
    while i < bin.len() {
        if bin[i..].starts_with(from) {
            out.extend_from_slice(v.as_bytes());
            i += from.len();
        } else {
            out.push(bin[i]);
            i += 1;
        }
    }
    out
}

/// The directory install.sh "downloads" from (`INSTALL_K3S_SIM_ARTIFACTS`): lab hosts can read the target dir.
fn artifacts(name: &str) -> PathBuf {
    let k3s = paths::bin("k3s");
    if !k3s.is_file() {
        let st = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "k3s-sim", "--bin", "k3s"])
            .status()
            .unwrap();
        assert!(st.success(), "cargo build -p k3s-sim failed");
    }
    let bin = std::fs::read(&k3s).unwrap();
    let dir = paths::workspace_root().join("target").join(name);
    for (v, data) in [
        (VERSION, bin.clone()),
        (NEXT, with_version(&bin, NEXT)),
    ] {
        let d = dir.join(v);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("k3s.tmp"), data).unwrap();
        std::fs::rename(d.join("k3s.tmp"), d.join("k3s")).unwrap();
    }
    std::fs::create_dir_all(dir.join("channels")).unwrap();
    std::fs::write(dir.join("channels/stable"), format!("{VERSION}\n")).unwrap();
    dir
}

struct World {
    ips: Vec<String>,
    key: PathBuf,
    known_hosts: PathBuf,
    artifacts: PathBuf,
}

impl World {
    fn provider(&self) -> String {
        format!(
            "{}\nprovider \"homelab\" {{\n  ssh {{\n    user = \"root\"\n    private_key = file({})\n    known_hosts = file({})\n  }}\n}}\n",
            required_providers(),
            hcl_string(&self.key.display().to_string()),
            hcl_string(&self.known_hosts.display().to_string()),
        )
    }

    fn install(&self) -> String {
        format!(
            "  install_script = file({})\n  install_env = {{ INSTALL_K3S_SIM_ARTIFACTS = {} }}\n",
            hcl_string(INSTALL_SH),
            hcl_string(&self.artifacts.display().to_string()),
        )
    }

    /// First server + one join + one agent, at `version`, with `sans` as the servers' tls_san.
    fn config(&self, version: &str, sans: &[&str]) -> String {
        let sans = sans
            .iter()
            .map(|s| hcl_string(s))
            .collect::<Vec<_>>()
            .join(", ");
        let init_url = format!("https://{}:6443", self.ips[0]);
        format!(
            "{provider}
resource \"homelab_k3s_server\" \"init\" {{
  role = \"init\"
  token = \"lab-cluster-secret\"
  version = \"{version}\"
  tls_san = [{sans}]
  disable = [\"servicelb\"]
  kubeconfig_server = \"{init_url}\"
{install}  host {{ address = \"{a0}\" }}
  timeouts {{ create = \"90s\" }}
}}

resource \"homelab_k3s_server\" \"join\" {{
  role = \"join\"
  server_url = \"{init_url}\"
  token = homelab_k3s_server.init.join_token
  version = \"{version}\"
  tls_san = [{sans}]
  disable = [\"servicelb\"]
{install}  host {{ address = \"{a1}\" }}
  timeouts {{ create = \"90s\" }}
}}

resource \"homelab_k3s_agent\" \"worker\" {{
  server_url = \"{init_url}\"
  token = homelab_k3s_server.init.join_token
  version = \"{version}\"
  node_labels = [\"tier=worker\"]
  depends_on = [homelab_k3s_server.join]
{install}  host {{ address = \"{a2}\" }}
  timeouts {{ create = \"90s\" }}
}}

output \"kubeconfig\" {{
  value = homelab_k3s_server.init.kubeconfig
  sensitive = true
}}
",
            provider = self.provider(),
            install = self.install(),
            a0 = self.ips[0],
            a1 = self.ips[1],
            a2 = self.ips[2],
        )
    }
}

fn attr<'s>(st: &'s State, addr: &str, path: &str) -> Result<&'s serde_json::Value, String> {
    st.attr(addr, path)
        .ok_or_else(|| format!("{addr}.{path} missing from state"))
}

/// Real kubectl with the `kubeconfig` attribute (runs in the caller thread's namespace: the lab's workstation).
fn kubectl_nodes(st: &State, dir: &Path) -> Result<String, String> {
    let kc = attr(st, "homelab_k3s_server.init", "kubeconfig")?
        .as_str()
        .ok_or("kubeconfig is not a string")?;
    let path = dir.join("kubeconfig.yaml");
    std::fs::write(&path, kc).map_err(|e| e.to_string())?;
    let out = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&path)
        .args(["get", "nodes", "-o", "wide"])
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("kubectl get nodes failed:\n{text}"));
    }
    Ok(text)
}

fn enter_netns(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: setns on the current thread only; the fd is valid for the call.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

#[test]
fn cluster_of_init_join_and_agent_through_terraform() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    lab_binary();
    let started = Instant::now();
    let art = artifacts("k3s-provider-artifacts");
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = LabSpec::new("k3sprov");
    spec.servers = 2;
    spec.agents = 1;
    spec.opnsense = false;
    spec.root = Some(tmp.path().join("labs"));
    let guard = LabGuard(Some(Lab::up(&spec).unwrap()));
    let lab = guard.0.as_ref().unwrap();
    let names = ["k8s-control-1", "k8s-control-2", "k8s-worker-1"];
    let world = World {
        ips: names
            .iter()
            .map(|n| lab.host(n).unwrap().ip.to_string())
            .collect(),
        key: lab.ssh_key().to_path_buf(),
        known_hosts: lab.known_hosts().to_path_buf(),
        artifacts: art,
    };
    let ws = homelab_lab::ns::named_netns(&lab.state().ws_netns);
    let kdir = tmp.path().to_path_buf();
    let first = world.config(VERSION, &["k3s.lab.internal"]);
    let sans2 = world.config(VERSION, &["k3s.lab.internal", "192.0.2.50"]);
    let upgraded = world.config(NEXT, &["k3s.lab.internal", "192.0.2.50"]);
    let ips = world.ips.clone();
    let ips2 = world.ips.clone();

    let result = std::thread::spawn(move || {
        enter_netns(&ws);
        let kdir2 = kdir.clone();
        TestCase::new(TerraformVersion::V1_15)
            .step(
                Step::config(first)
                    .named("init + join + agent")
                    .check_attr("homelab_k3s_server.init", "version", VERSION)
                    .check_attr("homelab_k3s_server.join", "role", "join")
                    .check(move |st| {
                        let jt = attr(st, "homelab_k3s_server.init", "join_token")?
                            .as_str()
                            .unwrap_or_default();
                        if !(jt.starts_with("K10") && jt.ends_with("::server:lab-cluster-secret")) {
                            return Err("join_token is not the secure K10 form".into());
                        }
                        let ca = attr(st, "homelab_k3s_server.init", "ca_hash")?;
                        if !jt.contains(ca.as_str().unwrap_or("?")) {
                            return Err("ca_hash is not the token's CA hash".into());
                        }
                        let sans = attr(st, "homelab_k3s_server.init", "serving_cert_sans")?;
                        if !sans.to_string().contains("k3s.lab.internal") {
                            return Err(format!("serving_cert_sans lacks the tls_san: {sans}"));
                        }
                        let lb = attr(st, "homelab_k3s_agent.worker", "lb_server_addresses")?;
                        if !lb.to_string().contains(&format!("{}:6443", ips[0])) {
                            return Err(format!("agent LB lacks the first server: {lb}"));
                        }
                        let nodes = kubectl_nodes(st, &kdir)?;
                        for n in ["k8s-control-1", "k8s-control-2", "k8s-worker-1"] {
                            if !nodes.lines().any(|l| l.starts_with(n) && l.contains(" Ready ")) {
                                return Err(format!("{n} not Ready:\n{nodes}"));
                            }
                        }
                        Ok(())
                    }),
            )
            .step(
                Step::config(sans2)
                    .named("tls_san added: in place, reaches the wire")
                    .expect_action("homelab_k3s_server.init", Action::Update)
                    .check(move |st| {
                        // Refreshed before this step's plan: the agent has learnt every server by now.
                        let lb = attr(st, "homelab_k3s_agent.worker", "lb_server_addresses")?;
                        for ip in &ips2[..2] {
                            if !lb.to_string().contains(&format!("{ip}:6443")) {
                                return Err(format!("agent LB lacks server {ip}: {lb}"));
                            }
                        }
                        for a in ["homelab_k3s_server.init", "homelab_k3s_server.join"] {
                            let sans = attr(st, a, "serving_cert_sans")?.to_string();
                            if !sans.contains("192.0.2.50") {
                                return Err(format!("{a}: new SAN not on the wire: {sans}"));
                            }
                        }
                        Ok(())
                    }),
            )
            .step(
                Step::config(upgraded)
                    .named("upgrade in place")
                    .expect_action("homelab_k3s_server.init", Action::Update)
                    .expect_action("homelab_k3s_agent.worker", Action::Update)
                    .check_attr("homelab_k3s_server.init", "version", NEXT)
                    .check_attr("homelab_k3s_server.join", "version", NEXT)
                    .check_attr("homelab_k3s_agent.worker", "version", NEXT)
                    .check(move |st| {
                        let nodes = kubectl_nodes(st, &kdir2)?;
                        let n = nodes.lines().filter(|l| l.contains(NEXT)).count();
                        if n != 3 {
                            return Err(format!("not every node reports {NEXT}:\n{nodes}"));
                        }
                        Ok(())
                    }),
            )
            .try_run()
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap();
    if let Err(e) = result {
        for n in names {
            let j = lab
                .exec(n, "journalctl -u k3s -n 20 --no-pager; journalctl -u k3s-agent -n 20 --no-pager")
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            eprintln!("--- {n} journal:\n{j}");
        }
        panic!("{e}");
    }
    // Destroy left the hosts clean.
    for n in names {
        let o = lab
            .exec(
                n,
                "ls -d /usr/local/bin/k3s /etc/rancher/k3s /var/lib/rancher/k3s /etc/systemd/system/k3s.service /etc/systemd/system/k3s-agent.service 2>/dev/null",
            )
            .unwrap();
        let left = String::from_utf8_lossy(&o.stdout);
        assert!(left.trim().is_empty(), "{n} not clean after destroy: {left}");
    }
    eprintln!("k3s lifecycle took {:?}", started.elapsed());
}
