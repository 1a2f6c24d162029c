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
/// The cluster token of the test (must never show up in argv or logs).
const SECRET: &str = "lab-cluster-secret";
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

/// The directory install.sh "downloads" from (`INSTALL_K3S_SIM_ARTIFACTS`). It must be visible inside lab hosts,
/// whose `/tmp`, `/run`, `/var`, `/home`, `/root` and `/etc` are private: a checkout under `/tmp` (as CI may use)
/// would hide `target/`, so the builds go under `/opt`, which hosts share with the machine.
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
    let dir = PathBuf::from("/opt/homelab-test-artifacts").join(name);
    for (v, data) in [(VERSION, bin.clone()), (NEXT, with_version(&bin, NEXT))] {
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
    /// The `ops` user's sudo password file: the agent is managed as `ops` through sudo.
    ops_password_file: PathBuf,
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
        self.config_with(version, sans, true)
    }

    /// The first server alone, without install attributes: what an import of a hand-installed node looks like.
    fn import_config(&self, version: &str, sans: &[&str]) -> String {
        let sans = sans
            .iter()
            .map(|s| hcl_string(s))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{}
resource \"homelab_k3s_server\" \"init\" {{
  role = \"init\"
  token = \"lab-cluster-secret\"
  version = \"{version}\"
  tls_san = [{sans}]
  disable = [\"servicelb\"]
  host {{ address = \"{}\" }}
}}
",
            self.provider(),
            self.ips[0]
        )
    }

    /// A server that joins through an address where nothing listens: the unit never becomes ready.
    fn stuck_config(&self) -> String {
        format!(
            "{provider}
resource \"homelab_k3s_server\" \"stuck\" {{
  role = \"join\"
  server_url = \"https://192.0.2.99:6443\"
  token = \"{SECRET}\"
{install}  host {{ address = \"{a1}\" }}
  timeouts {{ create = \"25s\" }}
}}
",
            provider = self.provider(),
            install = self.install(),
            a1 = self.ips[1],
        )
    }

    fn config_with(&self, version: &str, sans: &[&str], join: bool) -> String {
        let sans = sans
            .iter()
            .map(|s| hcl_string(s))
            .collect::<Vec<_>>()
            .join(", ");
        let init_url = format!("https://{}:6443", self.ips[0]);
        let agent_deps = if join {
            "depends_on = [homelab_k3s_server.join]"
        } else {
            ""
        };
        let text = format!(
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
  cluster_kubeconfig = homelab_k3s_server.init.kubeconfig
  {agent_deps}
{install}  host {{
    address = \"{a2}\"
    user = \"ops\"
    sudo_password = trimspace(file({ops_pw}))
  }}
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
            ops_pw = hcl_string(&self.ops_password_file.display().to_string()),
        );
        if join {
            return format!(
                "{text}
data \"homelab_k3s_kubeconfig\" \"second\" {{
  server = \"{init_url}\"
  host {{ address = \"{}\" }}
  depends_on = [homelab_k3s_server.join]
}}
",
                self.ips[1]
            );
        }
        // Drop the join resource block.
        let start = text
            .find("resource \"homelab_k3s_server\" \"join\"")
            .unwrap();
        let end = start + text[start..].find("\n}\n").unwrap() + 3;
        format!("{}{}", &text[..start], &text[end..])
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

/// `ssh` options reaching `root@ip` with the lab's key and known_hosts (strict host key checking).
fn ssh_args(key: &Path, known_hosts: &Path, ip: &str) -> Vec<String> {
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-i".into(),
        key.display().to_string(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        format!("root@{ip}"),
    ]
}

/// Runs `cmd` on a lab host as root over ssh (from a thread in the workstation namespace).
fn ssh_run(args: &[String], cmd: &str) -> Result<String, String> {
    let out = Command::new("ssh")
        .args(args)
        .arg(cmd)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn enter_netns(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: setns on the current thread only; the fd is valid for the call.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

#[test]
fn cluster_lifecycle_terraform_1_15() {
    if TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        cluster_lifecycle(TerraformVersion::V1_15, "k3sprov15");
    }
}

#[test]
fn cluster_lifecycle_terraform_1_0() {
    if TerraformVersion::selected().contains(&TerraformVersion::V1_0) {
        cluster_lifecycle(TerraformVersion::V1_0, "k3sprov10");
    }
}

/// First server + join + agent, SAN change, upgrade, import, drift repair, server removal, destroy; with the
/// token never on a command line nor in Terraform's trace log.
fn cluster_lifecycle(version: TerraformVersion, lab_name: &str) {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    lab_binary();
    let started = Instant::now();
    let art = artifacts(&format!("k3s-provider-artifacts-{lab_name}"));
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = LabSpec::new(lab_name);
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
        ops_password_file: lab.state().ops_password_file.clone(),
        artifacts: art,
    };
    let ws = homelab_lab::ns::named_netns(&lab.state().ws_netns);
    let kdir = tmp.path().to_path_buf();
    let first = world.config(VERSION, &["k3s.lab.internal"]);
    let sans2 = world.config(VERSION, &["k3s.lab.internal", "192.0.2.50"]);
    let upgraded = world.config(NEXT, &["k3s.lab.internal", "192.0.2.50"]);
    let downgrade = world.config(VERSION, &["k3s.lab.internal", "192.0.2.50"]);
    let import = world.import_config(NEXT, &["k3s.lab.internal", "192.0.2.50"]);
    let shrunk = world.config_with(NEXT, &["k3s.lab.internal", "192.0.2.50"], false);
    let stuck = world.stuck_config();
    let ssh_first = ssh_args(&world.key, &world.known_hosts, &world.ips[0]);
    let ssh_worker = ssh_args(&world.key, &world.known_hosts, &world.ips[2]);
    let ssh_worker2 = ssh_worker.clone();
    let kdir3 = tmp.path().to_path_buf();
    let ips = world.ips.clone();
    let ips2 = world.ips.clone();

    let ops_pw = lab.ops_password().unwrap().trim().to_string();
    assert!(
        ops_pw.len() >= 8,
        "the ops password is too short to search for"
    );
    let tf_log = tmp.path().join("tf-trace.log");
    let tf_log2 = tf_log.display().to_string();
    let worker = std::thread::spawn(move || {
        enter_netns(&ws);
        let kdir2 = kdir.clone();
        TestCase::new(version)
            .env("TF_LOG", "trace")
            .env("TF_LOG_PATH", &tf_log2)
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
                        let dkc = attr(st, "data.homelab_k3s_kubeconfig.second", "kubeconfig")?;
                        if !dkc
                            .to_string()
                            .contains(&format!("server: https://{}:6443", ips[0]))
                        {
                            return Err(
                                "the data source's kubeconfig does not point at the first server"
                                    .into(),
                            );
                        }
                        let nodes = kubectl_nodes(st, &kdir)?;
                        for n in ["k8s-control-1", "k8s-control-2", "k8s-worker-1"] {
                            if !nodes
                                .lines()
                                .any(|l| l.starts_with(n) && l.contains(" Ready "))
                            {
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
                        // The restart alone did not add the SAN (sticky certificate): the provider rotated it.
                        let tls = ssh_run(&ssh_first, "ls /var/lib/rancher/k3s/server/tls")?;
                        if !tls.contains("dynamic-cert.json.bak-") {
                            return Err(format!("serving certificate cache not rotated:\n{tls}"));
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
                Step::config(upgraded.clone())
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
            .step(
                Step::config(downgrade)
                    .named("downgrade refused at plan time")
                    .expect_error("Unsupported k3s version change.*Downgrading k3s"),
            )
            .step(
                Step::import(
                    homelab_acceptance::ImportKind::Command,
                    "homelab_k3s_server.init",
                )
                .named("import the first server by address")
                .with_config(import)
                .ignore(&[
                    "install_script",
                    "install_env",
                    "kubeconfig_server",
                    "timeouts",
                ]),
            )
            .step(
                Step::config(upgraded.clone())
                    .named("out-of-band config change on the agent is drift, repaired in place")
                    .before(move |_, _| {
                        // Edit the agent's config.yaml behind Terraform's back (this thread is in the lab's
                        // workstation namespace, so plain ssh reaches the host).
                        ssh_run(
                            &ssh_worker,
                            "sed -i 's/tier=worker/tier=other/' /etc/rancher/k3s/config.yaml",
                        )?;
                        Ok(())
                    })
                    .plan_check(|plan| {
                        let c = plan
                            .change("homelab_k3s_agent.worker")
                            .ok_or("no change for the agent")?;
                        let before = c["change"]["before"]["node_labels"].to_string();
                        if !before.contains("tier=other") {
                            return Err(format!("drift not read back: {before}"));
                        }
                        Ok(())
                    })
                    .expect_action("homelab_k3s_agent.worker", Action::Update),
            )
            .step(
                Step::config(upgraded.clone())
                    .named("an agent uninstalled out of band is planned for re-creation")
                    .before(move |_, _| {
                        ssh_run(
                            &ssh_worker2,
                            "/usr/local/bin/k3s-agent-uninstall.sh >/dev/null 2>&1",
                        )
                        .map(|_| ())
                    })
                    .expect_action("homelab_k3s_agent.worker", Action::Create),
            )
            .step(
                Step::config(shrunk)
                    .named("remove the joined server: the cluster keeps working")
                    .expect_action("homelab_k3s_server.join", Action::Delete)
                    .check(move |st| {
                        let nodes = kubectl_nodes(st, &kdir3)?;
                        if nodes.contains("k8s-control-2") {
                            return Err(format!("k8s-control-2 still a node:\n{nodes}"));
                        }
                        Ok(())
                    }),
            )
            .try_run()
            .map(|_| ())
            .map_err(|e| e.to_string())?;
        // An install that can never become ready fails within the time limit, with the unit's journal.
        TestCase::new(version)
            .step(Step::config(stuck).named("join through a dead address").expect_error(
                "k3s server did not become ready.*k3s on .* did not become ready within .*last journal lines",
            ))
            .try_run()
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    // While Terraform runs: no process anywhere (hosts' PID namespaces are nested in ours) may carry the token
    // on its command line.
    let mut scans = 0u32;
    let mut leaks = Vec::new();
    while !worker.is_finished() {
        scans += 1;
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            if let Ok(raw) = std::fs::read(e.path().join("cmdline")) {
                let argv = String::from_utf8_lossy(&raw).replace('\0', " ");
                if argv.contains(SECRET) || argv.contains(&ops_pw) {
                    leaks.push(argv);
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(40));
    }
    let result = worker.join().unwrap();
    if let Err(e) = result {
        for n in names {
            let j = lab
                .exec(
                    n,
                    "journalctl -u k3s -n 20 --no-pager; journalctl -u k3s-agent -n 20 --no-pager",
                )
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            eprintln!("--- {n} journal:\n{j}");
        }
        panic!("{e}");
    }
    assert!(leaks.is_empty(), "token on a command line: {leaks:?}");
    assert!(scans > 50, "the argv sampler barely ran ({scans} scans)");
    let log = std::fs::read_to_string(&tf_log).unwrap();
    assert!(log.len() > 10_000, "TF_LOG=trace wrote almost nothing");
    assert!(
        !log.contains(SECRET),
        "the token appears in the TF_LOG=trace output"
    );
    // The stuck server is not in any state: uninstall it by hand.
    lab.exec(
        "k8s-control-2",
        "/usr/local/bin/k3s-uninstall.sh >/dev/null 2>&1",
    )
    .unwrap();
    // Destroy left the hosts clean.
    for n in names {
        let o = lab
            .exec(
                n,
                "ls -d /usr/local/bin/k3s /etc/rancher/k3s /var/lib/rancher/k3s /etc/systemd/system/k3s.service /etc/systemd/system/k3s-agent.service 2>/dev/null",
            )
            .unwrap();
        let left = String::from_utf8_lossy(&o.stdout);
        assert!(
            left.trim().is_empty(),
            "{n} not clean after destroy: {left}"
        );
    }
    eprintln!(
        "k3s lifecycle with Terraform {version:?} took {:?}",
        started.elapsed()
    );
}
