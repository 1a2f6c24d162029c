//! Acceptance tests of `homelab_k3s_server` and `homelab_k3s_agent` (issue 7): real Terraform, run in the host
//! lab's workstation network namespace, drives the provider over real SSH to lab hosts running the k3s stand-in
//! (installed by our `install.sh` from an artifact directory), and the result is checked with the real kubectl.
//!
//! Why a per-thread `setns`: the step API spawns Terraform itself; a child process inherits the network namespace
//! of the thread that forks it, so the test thread joins the lab's workstation namespace and everything Terraform
//! (and the provider it launches) does happens there — the only place the 192.0.2.x lab hosts are reachable.
//!
//! Needs root (namespaces) and the `homelab-lab` binary (built on demand).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use homelab_acceptance::lab_support::{build_if_missing, enter_netns, k3s_artifacts, lab_binary};
use homelab_acceptance::terraform::{hcl_string, required_providers, State};
use homelab_acceptance::{paths, Action, Step, TerraformVersion, TestCase};
use homelab_lab::{Lab, LabSpec};

const VERSION: &str = "v1.31.5+k3s1";
/// The version the upgrade step moves to (same length as VERSION: the stand-in's version is patched in place).
const NEXT: &str = "v1.31.6+k3s1";
/// A version newer than the servers', for the agent-skew refusal (same length again).
const NEWER: &str = "v1.31.7+k3s1";
/// The cluster token of the test (must never show up in argv or logs).
const SECRET: &str = "lab-cluster-secret";
const INSTALL_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k3s-sim/install.sh");

/// A lab name unique to this test process (≤ 20 characters): labs own global network namespaces
/// (`hl-<name>-*`), so two runs of these tests at once (two checkouts, two helpers) must not share a name.
fn unique(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

/// Removes a per-run artifact directory when the test ends, however it ends.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
    build_if_missing("k3s-sim", "k3s");
    let bin = std::fs::read(paths::bin("k3s")).unwrap();
    k3s_artifacts(
        name,
        VERSION,
        &[
            (VERSION, None),
            (NEXT, Some(with_version(&bin, NEXT))),
            (NEWER, Some(with_version(&bin, NEWER))),
        ],
    )
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
        // The shrunk cluster also lists the first server's etcd snapshots (the upgrade's among them).
        format!(
            "{}{}
data \"homelab_k3s_snapshots\" \"first\" {{
  host {{ address = \"{}\" }}
  depends_on = [homelab_k3s_server.init]
}}
",
            &text[..start],
            &text[end..],
            self.ips[0]
        )
    }
}

fn attr<'s>(st: &'s State, addr: &str, path: &str) -> Result<&'s serde_json::Value, String> {
    st.attr(addr, path)
        .ok_or_else(|| format!("{addr}.{path} missing from state"))
}

/// Whether the first server's `certificates_expire` (RFC 3339) is less than `days` away.
fn expires_within(st: &State, days: u64) -> Result<bool, String> {
    let at = attr(st, "homelab_k3s_server.init", "certificates_expire")?
        .as_str()
        .ok_or("certificates_expire is not a string")?;
    let out = Command::new("date")
        .args(["-u", "-d", at, "+%s"])
        .output()
        .map_err(|e| e.to_string())?;
    let t: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("{at} is not a date"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    Ok(t < now + days * 86_400)
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
    let lab_name = &unique(lab_name);
    let art = artifacts(&format!("k3s-provider-artifacts-{lab_name}"));
    let _art_cleanup = RemoveDir(art.clone());
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = LabSpec::new(lab_name);
    spec.servers = 2;
    spec.agents = 1;
    spec.opnsense = false;
    spec.root = Some(tmp.path().join("labs"));
    let guard = Lab::up_guarded(&spec).unwrap();
    let lab: &Lab = &guard;
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
    // The agent alone moves past the servers: refused at apply, servers first.
    let skewed = {
        let text = upgraded.clone();
        let at = text.find("resource \"homelab_k3s_agent\"").unwrap();
        let (head, tail) = text.split_at(at);
        format!(
            "{head}{}",
            tail.replacen(
                &format!("version = \"{NEXT}\""),
                &format!("version = \"{NEWER}\""),
                1
            )
        )
    };
    assert!(skewed.contains(NEWER));
    // The same refusal without an admin kubeconfig: the registered agent asks with its kubelet's credentials.
    let skewed_own_creds = skewed.replacen(
        "  cluster_kubeconfig = homelab_k3s_server.init.kubeconfig\n",
        "",
        1,
    );
    assert_ne!(skewed_own_creds, skewed);
    let import = world.import_config(NEXT, &["k3s.lab.internal", "192.0.2.50"]);
    let shrunk = world.config_with(NEXT, &["k3s.lab.internal", "192.0.2.50"], false);
    let rotated = shrunk.replacen(
        "role = \"init\"\n",
        "role = \"init\"\n  certificate_rotation = \"renew-1\"\n",
        1,
    );
    assert_ne!(rotated, shrunk);
    let stuck = world.stuck_config();
    let ssh_first = ssh_args(&world.key, &world.known_hosts, &world.ips[0]);
    let ssh_first0 = ssh_first.clone();
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
    let ssh_second = ssh_args(&world.key, &world.known_hosts, &world.ips[1]);
    let ssh_second_snap = ssh_second.clone();
    let ssh_first_snap = ssh_first.clone();
    let ssh_first_cert = ssh_first.clone();
    let ssh_worker_cert = ssh_worker.clone();
    let worker = std::thread::spawn(move || {
        enter_netns(&ws);
        // The joiner comes up as an etcd learner and is promoted 8 s later (as k3s's leader does it): the join
        // must not return before that, or the voter check of the first step fails.
        ssh_run(
            &ssh_second,
            "mkdir -p /etc/default && echo K3S_SIM_PROMOTE_DELAY_SECS=8 > /etc/default/k3s",
        )?;
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
                        // The join returned only once its etcd member votes (no learner left behind).
                        let info = ssh_run(&ssh_first0, "k3s kubectl get --raw /db/info")?;
                        let v: serde_json::Value =
                            serde_json::from_str(&info).map_err(|e| format!("{e}: {info}"))?;
                        let members = v["members"].as_array().cloned().unwrap_or_default();
                        if members.len() != 2
                            || members
                                .iter()
                                .any(|m| m["isLearner"].as_bool() == Some(true))
                        {
                            return Err(format!("expected two voting etcd members: {info}"));
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
                        // The restart alone did not add the SAN (sticky certificate): the provider ran
                        // `k3s certificate rotate` (it backs up server/tls to server/tls-<time>), which was enough:
                        // the blunt cure (moving the cache aside) was not needed.
                        let server = ssh_run(&ssh_first, "ls /var/lib/rancher/k3s/server")?;
                        if !server.lines().any(|l| l.starts_with("tls-")) {
                            return Err(format!("serving certificate not rotated:\n{server}"));
                        }
                        let tls = ssh_run(&ssh_first, "ls /var/lib/rancher/k3s/server/tls")?;
                        if tls.contains("dynamic-cert.json.bak-") {
                            return Err(format!(
                                "the blunt cure ran although rotate sufficed:\n{tls}"
                            ));
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
                        // Each server took an etcd snapshot before its upgrade, in k3s's snapshot directory.
                        let snaps = ssh_run(
                            &ssh_first_snap,
                            "ls /var/lib/rancher/k3s/server/db/snapshots",
                        )?;
                        if !snaps
                            .lines()
                            .any(|l| l.starts_with("homelab-pre-upgrade-k8s-control-1-"))
                        {
                            return Err(format!(
                                "no pre-upgrade snapshot on k8s-control-1:\n{snaps}"
                            ));
                        }
                        Ok(())
                    }),
            )
            .step(
                Step::config(skewed)
                    .named("an agent newer than the servers is refused")
                    .expect_error("Agent newer than the servers.*upgrade the servers first"),
            )
            .step(
                Step::config(skewed_own_creds)
                    .named("without cluster_kubeconfig too, through the kubelet's credentials")
                    .expect_error("Agent newer than the servers.*upgrade the servers first"),
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
                    .named("out-of-band label change on the agent's Node is drift, repaired in place")
                    .before(move |_, _| {
                        // Relabel the agent's Node behind Terraform's back, with the kubelet's own credentials
                        // (this thread is in the lab's workstation namespace, so plain ssh reaches the host).
                        ssh_run(
                            &ssh_worker,
                            "k3s kubectl --kubeconfig /var/lib/rancher/k3s/agent/kubelet.kubeconfig \
                             label node \"$(hostname)\" tier=other --overwrite",
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
                Step::config(shrunk.clone())
                    .named("remove the joined server: the cluster keeps working")
                    .expect_action("homelab_k3s_server.join", Action::Delete)
                    .check(move |st| {
                        let nodes = kubectl_nodes(st, &kdir3)?;
                        if nodes.contains("k8s-control-2") {
                            return Err(format!("k8s-control-2 still a node:\n{nodes}"));
                        }
                        // The removed server snapshotted etcd first, where its uninstall does not reach.
                        let kept = ssh_run(&ssh_second_snap, "ls /var/backups/k3s/snapshots")?;
                        if !kept
                            .lines()
                            .any(|l| l.starts_with("homelab-pre-remove-k8s-control-2-"))
                        {
                            return Err(format!(
                                "no pre-remove snapshot kept on k8s-control-2:\n{kept}"
                            ));
                        }
                        // The data source lists the first server's snapshots, newest first.
                        let listed = attr(st, "data.homelab_k3s_snapshots.first", "snapshots")?;
                        let names: Vec<&str> = listed
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|s| s["name"].as_str())
                            .collect();
                        if !names
                            .iter()
                            .any(|n| n.starts_with("homelab-pre-upgrade-k8s-control-1-"))
                        {
                            return Err(format!(
                                "the snapshots data source misses the upgrade's: {listed}"
                            ));
                        }
                        Ok(())
                    }),
            )
            .step(
                Step::config(shrunk.clone())
                    .named("a certificate expiring within 90 days is warned about at plan")
                    .before(move |_, _| {
                        // A 30-day admin client certificate in k3s's directory (the provider only reads dates; the
                        // running k3s keeps its kubeconfig).
                        ssh_run(
                            &ssh_first_cert,
                            "cd /var/lib/rancher/k3s/server/tls && openssl req -x509 -newkey rsa:2048 -nodes \
                             -keyout /root/soon.key -out client-admin.crt -days 30 -subj /CN=system:admin \
                             >/dev/null 2>&1",
                        )
                        .map(|_| ())?;
                        // And one in the agent's directory: the agent warns too, with its own fix.
                        ssh_run(
                            &ssh_worker_cert,
                            "cd /var/lib/rancher/k3s/agent && openssl req -x509 -newkey rsa:2048 -nodes \
                             -keyout /root/soon.key -out client-soon.crt -days 30 -subj /CN=soon \
                             >/dev/null 2>&1",
                        )
                        .map(|_| ())
                    })
                    .expect_warning(
                        "(?s)(k3s certificates expire within 90 days.*client-admin.crt.*k3s agent certificates \
                         expire within 90 days.*agent/client-soon.crt.*systemctl restart k3s-agent|k3s agent \
                         certificates expire within 90 days.*agent/client-soon.crt.*systemctl restart \
                         k3s-agent.*k3s certificates expire within 90 days.*client-admin.crt)",
                    )
                    .check(|st| expires_within(st, 31).and_then(|soon| {
                        soon.then_some(()).ok_or("certificates_expire is not the 30-day one".into())
                    })),
            )
            .step(
                Step::config(rotated)
                    .named("certificate_rotation renews them in place")
                    .expect_action("homelab_k3s_server.init", Action::Update)
                    .check(|st| expires_within(st, 300).and_then(|soon| {
                        (!soon).then_some(()).ok_or("certificates_expire was not renewed".into())
                    })),
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
        dump_journals(lab, &names);
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
    assert_clean(lab, &names);
    eprintln!(
        "k3s lifecycle with Terraform {version:?} took {:?}",
        started.elapsed()
    );
}

#[test]
fn hand_installed_migration_terraform_1_15() {
    if TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        hand_installed_migration(TerraformVersion::V1_15, "k3smig15");
    }
}

#[test]
fn hand_installed_migration_terraform_1_0() {
    if TerraformVersion::selected().contains(&TerraformVersion::V1_0) {
        hand_installed_migration(TerraformVersion::V1_0, "k3smig10");
    }
}

/// Runs `script` on a lab host as root through `sh -s` (the script, which may carry the token, goes on stdin).
fn ssh_script(args: &[String], script: &str) -> Result<String, String> {
    use std::io::Write;
    let mut child = Command::new("ssh")
        .args(args)
        .arg("sh -s")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        return Err(format!("remote script failed:\n{text}"));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The seed's story: a single sqlite server and an agent installed by hand with the install script (a hand-written
/// YAML config.yaml on the server; flags and `K3S_*` variables on the agent), imported, planned (the only change is
/// the datastore), refused without `allow_datastore_migration`, converted with it (backup on the host, every node
/// still there), then empty plans; `terraform query` finds both nodes (1.15).
fn hand_installed_migration(version: TerraformVersion, lab_name: &str) {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    lab_binary();
    let started = Instant::now();
    let lab_name = &unique(lab_name);
    let art = artifacts(&format!("k3s-provider-artifacts-{lab_name}"));
    let _art_cleanup = RemoveDir(art.clone());
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = LabSpec::new(lab_name);
    spec.servers = 1;
    spec.agents = 1;
    spec.opnsense = false;
    spec.root = Some(tmp.path().join("labs"));
    let guard = Lab::up_guarded(&spec).unwrap();
    let lab: &Lab = &guard;
    let names = ["k8s-control-1", "k8s-worker-1"];
    let ips: Vec<String> = names
        .iter()
        .map(|n| lab.host(n).unwrap().ip.to_string())
        .collect();
    let world = World {
        ips: ips.clone(),
        key: lab.ssh_key().to_path_buf(),
        known_hosts: lab.known_hosts().to_path_buf(),
        ops_password_file: lab.state().ops_password_file.clone(),
        artifacts: art.clone(),
    };
    let ws = homelab_lab::ns::named_netns(&lab.state().ws_netns);
    let server_ssh = ssh_args(&world.key, &world.known_hosts, &ips[0]);
    let agent_ssh = ssh_args(&world.key, &world.known_hosts, &ips[1]);
    let url = format!("https://{}:6443", ips[0]);
    let config = |allow: bool| {
        format!(
            "{provider}
resource \"homelab_k3s_server\" \"init\" {{
  role = \"init\"
  token = \"{SECRET}\"
  version = \"{VERSION}\"
  tls_san = [\"k3s.lab.internal\"]
  disable = [\"servicelb\"]
  node_labels = [\"tier=control\"]
  extra_config = {{ \"write-kubeconfig-mode\" = \"0644\" }}
  {allow}
  host {{ address = \"{a0}\" }}
}}

resource \"homelab_k3s_agent\" \"worker\" {{
  server_url = \"{url}\"
  token = homelab_k3s_server.init.join_token
  version = \"{VERSION}\"
  node_labels = [\"tier=hand\"]
  host {{ address = \"{a1}\" }}
}}
",
            provider = world.provider(),
            allow = if allow {
                "allow_datastore_migration = true"
            } else {
                ""
            },
            a0 = ips[0],
            a1 = ips[1],
        )
    };
    let (plain, allowed) = (config(false), config(true));
    // A change to the hand-installed agent: the provider moves its exec-line flags and env file into config.yaml.
    let relabelled = allowed.replace(
        "  node_labels = [\"tier=hand\"]\n",
        &format!(
            "  node_labels = [\"tier=hand\", \"zone=a\"]\n{}",
            world.install()
        ),
    );
    assert_ne!(relabelled, allowed);
    let query = format!(
        "list \"homelab_k3s_server\" \"servers\" {{\n  provider = homelab\n  include_resource = true\n  config {{\n    addresses = [\"{a0}\", \"{a1}\", \"192.0.2.99\"]\n  }}\n}}\n\
         list \"homelab_k3s_agent\" \"agents\" {{\n  provider = homelab\n  config {{\n    addresses = [\"{a0}\", \"{a1}\"]\n  }}\n}}\n",
        a0 = ips[0],
        a1 = ips[1]
    );
    let art_dir = art.display().to_string();
    let worker = std::thread::spawn(move || -> Result<(), String> {
        enter_netns(&ws);
        // --- By hand, like the seed: the install script with a hand-written config.yaml on the server. ---
        ssh_script(
            &server_ssh,
            &format!(
                "set -e\nmkdir -p /etc/rancher/k3s\ncat > /etc/rancher/k3s/config.yaml <<'YAML'\n\
                 # written by hand\ntoken: {SECRET}\ntls-san:\n  - k3s.lab.internal\ndisable: servicelb\n\
                 node-label:\n  - \"tier=control\"\nwrite-kubeconfig-mode: \"0644\"\nYAML\n\
                 INSTALL_K3S_SIM_ARTIFACTS={art_dir} INSTALL_K3S_VERSION={VERSION} sh {INSTALL_SH} >/dev/null\n"
            ),
        )?;
        let secure = ssh_run(&server_ssh, "cat /var/lib/rancher/k3s/server/token")?
            .trim()
            .to_string();
        // The agent: settings on the exec line and K3S_* variables (the env file), no config.yaml.
        ssh_script(
            &agent_ssh,
            &format!(
                "set -e\nexport K3S_URL={url} K3S_TOKEN='{secure}'\n\
                 INSTALL_K3S_SIM_ARTIFACTS={art_dir} INSTALL_K3S_VERSION={VERSION} \
                 INSTALL_K3S_EXEC='agent --node-label tier=hand' sh {INSTALL_SH} >/dev/null\n"
            ),
        )?;
        let nodes_before = wait_nodes(&server_ssh, 2)?;
        let before_db = ssh_run(&server_ssh, "ls /var/lib/rancher/k3s/server/db")?;
        if !before_db.contains("state.db") || before_db.contains("etcd") {
            return Err(format!("the hand install is not on sqlite: {before_db}"));
        }

        let mut tf =
            homelab_acceptance::terraform::Terraform::new(version).map_err(|e| e.to_string())?;
        let trace = tf.root().join("tf-trace.log");
        tf.set_env("TF_LOG", "trace");
        tf.set_env("TF_LOG_PATH", trace.display().to_string());
        tf.write_config(&plain).map_err(|e| e.to_string())?;
        tf.init().map_err(|e| e.to_string())?;
        for (addr, ip) in [
            ("homelab_k3s_server.init", &ips[0]),
            ("homelab_k3s_agent.worker", &ips[1]),
        ] {
            let out = tf.import(addr, ip).map_err(|e| e.to_string())?;
            if !out.success() {
                return Err(format!("import {addr} failed:\n{out}"));
            }
        }
        // Plan: the agent reads back as configured (flags + env file); the server's only change is the datastore.
        let plan = tf.plan(&["-out=mig.tfplan"]).map_err(|e| e.to_string())?;
        let plan_text = plan.output().combined();
        let saved = tf.show_plan("mig.tfplan").map_err(|e| e.to_string())?;
        // Terraform 1.0 plans a marks-only update when a sensitive reference (`join_token`) feeds an imported
        // attribute ("will be marked as sensitive... The value is unchanged"): equal values are what counts.
        let agent = saved
            .change("homelab_k3s_agent.worker")
            .ok_or("no plan entry for the agent")?;
        let same = agent.pointer("/change/before") == agent.pointer("/change/after");
        if !(saved.action("homelab_k3s_agent.worker") == Some(Action::NoOp)
            || (version == TerraformVersion::V1_0 && same))
        {
            return Err(format!(
                "the hand-installed agent does not read back as configured:\n{plan_text}"
            ));
        }
        let c = saved
            .change("homelab_k3s_server.init")
            .ok_or("no change for the server")?;
        if c.pointer("/change/before/datastore") != Some(&serde_json::json!("sqlite"))
            || c.pointer("/change/after/datastore") != Some(&serde_json::json!("etcd"))
        {
            return Err(format!(
                "the plan does not move the datastore to etcd:\n{plan_text}"
            ));
        }
        for a in [
            "role",
            "token",
            "version",
            "tls_san",
            "disable",
            "node_labels",
            "extra_config",
            "node_name",
        ] {
            let (b, af) = (
                c.pointer(&format!("/change/before/{a}")),
                c.pointer(&format!("/change/after/{a}")),
            );
            if b != af {
                return Err(format!(
                    "hand-written config.yaml not read back: {a} {b:?} -> {af:?}\n{plan_text}"
                ));
            }
        }
        if !plan_text.contains("allow_datastore_migration") {
            return Err(format!(
                "the plan does not warn about the gate:\n{plan_text}"
            ));
        }
        // Apply without the gate: refused, nothing touched.
        let refused = tf
            .run(&["apply", "-input=false", "-no-color", "mig.tfplan"])
            .map_err(|e| e.to_string())?;
        let text = homelab_acceptance::terraform::normalize_diagnostics(&refused.combined());
        if refused.success()
            || !text.contains("sqlite to etcd migration not allowed")
            || !text.contains("allow_datastore_migration = true")
        {
            return Err(format!(
                "apply without the gate was not refused:\n{refused}"
            ));
        }
        let db = ssh_run(&server_ssh, "ls /var/lib/rancher/k3s/server/db")?;
        if db.contains("etcd") {
            return Err(format!("a refused migration touched the datastore: {db}"));
        }
        // With the gate: converted, backed up, every node still there.
        tf.write_config(&allowed).map_err(|e| e.to_string())?;
        let out = tf.apply(&[]).map_err(|e| e.to_string())?;
        let text = homelab_acceptance::terraform::normalize_diagnostics(&out.combined());
        if !out.success() || !text.contains("/var/backups/k3s/") {
            return Err(format!(
                "the migration failed or did not name its backup:\n{out}"
            ));
        }
        let st = tf.state().map_err(|e| e.to_string())?;
        if attr(&st, "homelab_k3s_server.init", "datastore")? != "etcd" {
            return Err("state does not say etcd".into());
        }
        let db = ssh_run(&server_ssh, "ls /var/lib/rancher/k3s/server/db")?;
        if !db.contains("etcd") {
            return Err(format!("the server is not on etcd: {db}"));
        }
        let backup = ssh_run(&server_ssh, "ls -d /var/backups/k3s/*-sqlite-to-etcd/db/state.db /var/backups/k3s/*-sqlite-to-etcd/token")?;
        if backup.lines().count() != 2 {
            return Err(format!("backup incomplete: {backup}"));
        }
        let nodes_after = wait_nodes(&server_ssh, 2)?;
        if nodes_after != nodes_before {
            return Err(format!(
                "nodes changed: {nodes_before:?} -> {nodes_after:?}"
            ));
        }
        tf.plans_empty()
            .map_err(|e| format!("after the migration: {e}"))?;
        // Changing the hand-installed agent: the unit loses its flags and env file, config.yaml holds everything.
        tf.write_config(&relabelled).map_err(|e| e.to_string())?;
        let out = tf.apply(&[]).map_err(|e| e.to_string())?;
        if !out.success()
            || !out
                .combined()
                .contains("Moving k3s settings into config.yaml")
        {
            return Err(format!("relabelling the hand-installed agent:\n{out}"));
        }
        let unit = ssh_run(
            &agent_ssh,
            "cat /etc/systemd/system/k3s-agent.service; wc -c < /etc/systemd/system/k3s-agent.service.env; cat /etc/rancher/k3s/config.yaml",
        )?;
        if unit.contains("--node-label") || !unit.contains("zone=a") || !unit.contains("\n0\n") {
            return Err(format!(
                "flags or env file left behind, or config.yaml not written:\n{}",
                unit.replace(&secure, "<token>")
            ));
        }
        match tf.plan(&[]).map_err(|e| e.to_string())? {
            homelab_acceptance::terraform::PlanOutcome::Empty(_) => {}
            other => {
                return Err(format!(
                    "plan after relabelling not empty:\n{}",
                    other.output()
                ))
            }
        }
        // terraform query finds the server on one address and the agent on the other; a host that does not answer
        // is a warning, not a failure.
        if version.has_query() {
            tf.write_file("nodes.tfquery.hcl", &query)
                .map_err(|e| e.to_string())?;
            let listed = tf.query(&[]).map_err(|e| e.to_string())?;
            let text = listed.combined();
            let server_line = text
                .lines()
                .find(|l| l.contains("list.homelab_k3s_server.servers"));
            let agent_line = text
                .lines()
                .find(|l| l.contains("list.homelab_k3s_agent.agents"));
            if !listed.success()
                || !server_line.is_some_and(|l| l.contains("k8s-control-1"))
                || !agent_line.is_some_and(|l| l.contains("k8s-worker-1"))
                || text.lines().filter(|l| l.contains("k8s-")).count() != 2
                || !text.contains("192.0.2.99 not listed")
            {
                return Err(format!(
                    "terraform query did not list exactly the two nodes:\n{listed}"
                ));
            }
            tf.remove_file("nodes.tfquery.hcl")
                .map_err(|e| e.to_string())?;
        }
        let out = tf.destroy().map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(format!("destroy failed:\n{out}"));
        }
        // The hand install kept the token in config.yaml and the agent's env file: read back, never logged.
        let log = std::fs::read_to_string(&trace).map_err(|e| e.to_string())?;
        if log.len() < 10_000 || log.contains(SECRET) {
            return Err(format!(
                "TF_LOG=trace wrote {} bytes; token in it: {}",
                log.len(),
                log.contains(SECRET)
            ));
        }
        Ok(())
    });
    let result = worker.join().unwrap();
    if let Err(e) = result {
        dump_journals(lab, &names);
        for n in names {
            let _ = lab.exec(
                n,
                "/usr/local/bin/k3s-agent-uninstall.sh >/dev/null 2>&1; /usr/local/bin/k3s-uninstall.sh >/dev/null 2>&1",
            );
        }
        panic!("{e}");
    }
    assert_clean(lab, &names);
    eprintln!(
        "k3s hand-installed migration with Terraform {version:?} took {:?}",
        started.elapsed()
    );
}

/// Polls `k3s kubectl get nodes` on a server until `n` nodes are Ready; returns the sorted names.
fn wait_nodes(server: &[String], n: usize) -> Result<Vec<String>, String> {
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = ssh_run(server, "k3s kubectl get nodes --no-headers 2>&1").unwrap_or_default();
        let mut ready: Vec<String> = out
            .lines()
            .filter(|l| l.split_whitespace().nth(1) == Some("Ready"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        ready.sort();
        if ready.len() == n {
            return Ok(ready);
        }
        if Instant::now() > deadline {
            return Err(format!("expected {n} Ready nodes:\n{out}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// No k3s file is left on the hosts (after a destroy).
fn assert_clean(lab: &Lab, names: &[&str]) {
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
}

/// The k3s units' last journal lines of every host, for a failure report.
fn dump_journals(lab: &Lab, names: &[&str]) {
    for n in names {
        let j = lab
            .exec(
                n,
                "journalctl -u k3s -n 30 --no-pager; journalctl -u k3s-agent -n 20 --no-pager",
            )
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        eprintln!("--- {n} journal:\n{j}");
    }
}
