//! Robustness of the k3s resources through real Terraform against the host lab (issue 7): how the provider
//! reaches hosts (bastion from the provider's `ssh { }` defaults, trust on first use pinned in state, a changed host
//! key refused), and what happens when things go wrong mid-apply (a link cut during an install, Ctrl-C, a server
//! removal that would lose etcd quorum).
//!
//! Each test drives Terraform step by step (not through `TestCase`) because the faults must hit *while* an apply
//! runs: the test watches the host until the install has begun and then cuts its link or interrupts Terraform.
//! Terraform runs in the lab's workstation network namespace (the test thread joins it with `setns`, see
//! `k3s_resources.rs`); lab operations (link cuts, power, exec) use explicit namespace handles and work from there.
//!
//! Needs root (namespaces) and the `homelab-lab` binary (built on demand).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use homelab_acceptance::lab_support::{enter_netns, k3s_artifacts, lab_binary};
use homelab_acceptance::terraform::{
    hcl_string, normalize_diagnostics, required_providers, PlanOutcome, State, Terraform,
};
use homelab_acceptance::TerraformVersion;
use homelab_lab::{Lab, LabGuard, LabSpec};

const VERSION: &str = "v1.31.5+k3s1";
const TOKEN: &str = "robustness-cluster-secret";
const INSTALL_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k3s-sim/install.sh");

/// Terraform 1.15 when selected, else the first selected version (these tests run one version: they are about
/// the provider's behaviour under faults, which does not depend on Terraform's).
fn version(prefer: TerraformVersion) -> TerraformVersion {
    let sel = TerraformVersion::selected();
    if sel.contains(&prefer) {
        prefer
    } else {
        sel[0]
    }
}

fn lab_up(name: &str, servers: u32, agents: u32, root: &Path) -> LabGuard {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    lab_binary();
    let mut spec = LabSpec::new(name);
    spec.servers = servers;
    spec.agents = agents;
    spec.opnsense = false;
    spec.root = Some(root.join("labs"));
    Lab::up_guarded(&spec).unwrap()
}

fn ip(lab: &Lab, host: &str) -> String {
    lab.host(host).unwrap().ip.to_string()
}

fn install_attrs(artifacts: &Path) -> String {
    install_attrs_with(Path::new(INSTALL_SH), artifacts)
}

fn install_attrs_with(script: &Path, artifacts: &Path) -> String {
    format!(
        "  install_script = file({})\n  install_env = {{ INSTALL_K3S_SIM_ARTIFACTS = {} }}\n",
        hcl_string(&script.display().to_string()),
        hcl_string(&artifacts.display().to_string()),
    )
}

/// The install script with a pause first, like a slow download: faults injected once the install has begun
/// land inside it.
fn slow_install_script(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(INSTALL_SH).unwrap();
    let body = text.strip_prefix("#!/bin/sh\n").unwrap_or(&text);
    let path = dir.join("install-slow.sh");
    std::fs::write(&path, format!("#!/bin/sh\nsleep 3\n{body}")).unwrap();
    path
}

fn sh(lab: &Lab, host: &str, script: &str) -> String {
    let o = lab.exec(host, script).unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Polls `cond` every 100 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// `host.host_key` of the TOFU test's server (a single nested block: an object, or a one-element list).
fn pinned_key(st: &State) -> Option<String> {
    let addr = "homelab_k3s_server.tofu";
    st.attr(addr, "host.host_key")
        .or_else(|| st.attr(addr, "host.0.host_key"))
        .and_then(|v| v.as_str().map(str::to_string))
}

/// A text for matching diagnostics: Terraform's boxes and line wrapping removed, whitespace collapsed.
fn flat(out: &homelab_acceptance::process::Output) -> String {
    normalize_diagnostics(&out.combined())
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

// ------------------------------------------------------------------------------------------------------------
// 1. Bastion from the provider's ssh block + trust on first use pinned in state + a changed host key refused.

#[test]
fn bastion_and_trust_on_first_use() {
    let version = version(TerraformVersion::V1_0);
    let tmp = tempfile::tempdir().unwrap();
    let guard = lab_up("k3srobssh", 1, 1, tmp.path());
    let lab: &Lab = &guard;
    let art = k3s_artifacts("k3s-robustness-ssh", VERSION, &[(VERSION, None)]);
    let (server, jump) = ("k8s-control-1", "k8s-worker-1");
    let (server_ip, jump_ip) = (ip(lab, server), ip(lab, jump));
    // The jump host's key, pinned for the bastion (taken from the lab's known_hosts).
    let kh = std::fs::read_to_string(lab.known_hosts()).unwrap();
    let key_of = |addr: &str| -> String {
        kh.lines()
            .find_map(|l| {
                let mut f = l.split_whitespace();
                let hosts = f.next()?;
                hosts
                    .split(',')
                    .any(|h| h == addr)
                    .then(|| f.take(2).collect::<Vec<_>>().join(" "))
            })
            .unwrap_or_else(|| panic!("{addr} not in the lab's known_hosts:\n{kh}"))
    };
    let jump_key = key_of(&jump_ip);
    let server_key = key_of(&server_ip);

    // Only through the jump host: the workstation has no route to the server any more.
    let st = lab
        .ws_command("ip")
        .unwrap()
        .args(["route", "add", "blackhole", &format!("{server_ip}/32")])
        .status()
        .unwrap();
    assert!(
        st.success(),
        "cannot blackhole the server from the workstation"
    );
    let direct = lab
        .ws_command("ssh")
        .unwrap()
        .args(lab.ssh_args(server, "root").unwrap())
        .args(["-o", "ConnectTimeout=3", "true"])
        .output()
        .unwrap();
    assert!(
        !direct.status.success(),
        "the server is still directly reachable from the workstation"
    );

    let config = format!(
        "{req}
provider \"homelab\" {{
  ssh {{
    user = \"root\"
    private_key = file({key})
    bastion_host = \"{jump_ip}\"
    bastion_host_key = \"{jump_key}\"
  }}
}}

resource \"homelab_k3s_server\" \"tofu\" {{
  role = \"init\"
  token = \"{TOKEN}\"
  version = \"{VERSION}\"
{install}  host {{
    address = \"{server_ip}\"
    trust_on_first_use = true
  }}
  timeouts {{ create = \"90s\" }}
}}
",
        req = required_providers(),
        key = hcl_string(&lab.ssh_key().display().to_string()),
        install = install_attrs(&art),
    );
    let ws = homelab_lab::ns::named_netns(&lab.state().ws_netns);
    let journal_before = sh(
        lab,
        jump,
        "journalctl -u ssh --no-pager 2>/dev/null | wc -l",
    );
    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<(), String> {
            enter_netns(&ws);
            let tf = Terraform::new(version).map_err(|e| e.to_string())?;
            tf.write_config(&config).unwrap();
            tf.init().map_err(|e| e.to_string())?;
            let out = tf.apply(&[]).unwrap();
            if !out.success() {
                return Err(format!("TOFU apply through the bastion failed:\n{out}"));
            }
            eprintln!("TOFU apply through the bastion:\n{out}");
            let text = flat(&out);
            if !text.contains("Host key trusted on first use") {
                return Err(format!("the apply did not say it trusted a key:\n{out}"));
            }
            let st = tf.state().unwrap();
            let pinned = pinned_key(&st).ok_or("host.host_key not in state")?;
            if pinned.trim() != server_key {
                return Err(format!(
                    "the pinned key is not the server's: {pinned} vs {server_key}"
                ));
            }
            tf.plans_empty().unwrap_or_else(|e| panic!("after the TOFU apply: {e}"));

            // The host is re-keyed behind our back: a refresh must refuse it, saying why.
            let rekey = sh(
                lab,
                server,
                "set -e; cd /etc/ssh; cp -a ssh_host_ed25519_key /root/hk; cp -a ssh_host_ed25519_key.pub /root/hk.pub; \
                 rm -f ssh_host_ed25519_key ssh_host_ed25519_key.pub; \
                 ssh-keygen -q -t ed25519 -N '' -f ssh_host_ed25519_key; systemctl restart ssh; echo rekeyed",
            );
            if !rekey.contains("rekeyed") {
                return Err(format!("re-keying the server failed: {rekey}"));
            }
            let check = match tf.plan(&[]).unwrap() {
                PlanOutcome::Failed(out) => {
                    eprintln!("plan against the re-keyed host:\n{out}");
                    let text = flat(&out);
                    if text.contains("Host key verification failed") && text.contains("host key mismatch") {
                        Ok(())
                    } else {
                        Err(format!("unclear diagnostic for a changed host key:\n{out}"))
                    }
                }
                other => Err(format!(
                    "a changed host key was accepted:\n{}",
                    other.output()
                )),
            };
            // Put the original key back so the destroy (and a failing test's cleanup) can connect.
            sh(
                lab,
                server,
                "cd /etc/ssh; cp -a /root/hk ssh_host_ed25519_key; cp -a /root/hk.pub ssh_host_ed25519_key.pub; \
                 systemctl restart ssh",
            );
            // Import of a node by address with the provider's trust_on_first_use: the first refresh pins the key.
            let imported = (|| -> Result<(), String> {
                check.clone()?;
                let out = tf.run(&["state", "rm", "homelab_k3s_server.tofu"]).unwrap();
                if !out.success() {
                    return Err(format!("state rm failed:\n{out}"));
                }
                tf.write_config(&config.replace(
                    "    bastion_host_key",
                    "    trust_on_first_use = true\n    bastion_host_key",
                ))
                .unwrap();
                let out = tf.import("homelab_k3s_server.tofu", &server_ip).unwrap();
                if !out.success() {
                    return Err(format!("import with trust on first use failed:\n{out}"));
                }
                let st = tf.state().unwrap();
                let pinned = pinned_key(&st).unwrap_or_default();
                if pinned.trim() != server_key {
                    return Err(format!(
                        "the import did not pin the server's key: {pinned:?}\n{out}"
                    ));
                }
                Ok(())
            })();
            let destroyed = tf.destroy().unwrap();
            check?;
            imported?;
            if !destroyed.success() {
                return Err(format!("destroy through the bastion failed:\n{destroyed}"));
            }
            Ok(())
        })
        .join()
        .unwrap()
    });
    if let Err(e) = result {
        eprintln!(
            "--- server journal:\n{}",
            sh(lab, server, "journalctl -u k3s -n 30 --no-pager")
        );
        panic!("{e}");
    }
    // The jump host's sshd logged the sessions that carried ours (one per Terraform operation at least).
    let journal_after = sh(
        lab,
        jump,
        "journalctl -u ssh --no-pager 2>/dev/null | wc -l",
    );
    let jlog = sh(
        lab,
        jump,
        "journalctl -u ssh --no-pager 2>/dev/null | tail -n 200",
    );
    assert!(
        jlog.contains("Accepted publickey for root"),
        "no session on the jump host's sshd ({journal_before} -> {journal_after} lines):\n{jlog}"
    );
    let left = sh(
        lab,
        server,
        "ls -d /usr/local/bin/k3s /etc/rancher/k3s /var/lib/rancher/k3s 2>/dev/null",
    );
    assert!(
        left.trim().is_empty(),
        "server not clean after destroy: {left}"
    );
}

// ------------------------------------------------------------------------------------------------------------
// 2. Ctrl-C mid-install, a link cut mid-install, and a removal that would lose etcd quorum.

fn ha_config(lab: &Lab, script: &Path, art: &Path, servers: &[&str]) -> String {
    let init_ip = ip(lab, "k8s-control-1");
    let mut text = format!(
        "{req}
provider \"homelab\" {{
  ssh {{
    user = \"root\"
    private_key = file({key})
    known_hosts = file({kh})
  }}
}}

resource \"homelab_k3s_server\" \"s1\" {{
  role = \"init\"
  token = \"{TOKEN}\"
  version = \"{VERSION}\"
  kubeconfig_server = \"https://{init_ip}:6443\"
{install}  host {{ address = \"{init_ip}\" }}
  timeouts {{ create = \"90s\" }}
}}
",
        req = required_providers(),
        key = hcl_string(&lab.ssh_key().display().to_string()),
        kh = hcl_string(&lab.known_hosts().display().to_string()),
        install = install_attrs_with(script, art),
    );
    // Resource `sN` manages host `k8s-control-N`, whichever subset is configured.
    for host in servers.iter().skip(1) {
        text.push_str(&format!(
            "
resource \"homelab_k3s_server\" \"s{n}\" {{
  role = \"join\"
  server_url = \"https://{init_ip}:6443\"
  token = homelab_k3s_server.s1.join_token
  version = \"{VERSION}\"
{install}  host {{ address = \"{a}\" }}
  timeouts {{ create = \"90s\" }}
}}
",
            n = host.rsplit('-').next().unwrap(),
            a = ip(lab, host),
            install = install_attrs_with(script, art),
        ));
    }
    text
}

/// `kubectl get nodes` on the first server (k3s's own kubectl, admin kubeconfig).
fn nodes(lab: &Lab) -> String {
    sh(
        lab,
        "k8s-control-1",
        "k3s kubectl get nodes --no-headers 2>&1",
    )
}

fn ready(nodes: &str, name: &str) -> bool {
    nodes.lines().any(|l| {
        l.split_whitespace().next() == Some(name) && l.split_whitespace().nth(1) == Some("Ready")
    })
}

#[test]
fn interrupted_and_broken_applies_converge_and_quorum_is_kept() {
    let version = version(TerraformVersion::V1_15);
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut guard = lab_up("k3srobha", 3, 0, tmp.path());
    let art = k3s_artifacts("k3s-robustness-ha", VERSION, &[(VERSION, None)]);
    let script = slow_install_script(tmp.path());
    let names = ["k8s-control-1", "k8s-control-2", "k8s-control-3"];
    let (all, two) = {
        let lab = guard.lab();
        (
            ha_config(lab, &script, &art, &names),
            ha_config(lab, &script, &art, &["k8s-control-1", "k8s-control-3"]),
        )
    };
    let one = ha_config(guard.lab(), &script, &art, &["k8s-control-1"]);
    let ws = homelab_lab::ns::named_netns(&guard.lab().state().ws_netns);
    let lab = guard.lab_mut();
    let config_written = |lab: &Lab, host: &str| {
        lab.exec(host, "test -e /etc/rancher/k3s/config.yaml")
            .is_ok_and(|o| o.status.success())
    };

    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<(), String> {
            enter_netns(&ws);
            let mut tf = Terraform::new(version).map_err(|e| e.to_string())?;
            tf.set_timeout(Duration::from_secs(240));
            tf.write_config(&all).unwrap();
            tf.init().map_err(|e| e.to_string())?;
            let apply_args = ["apply", "-input=false", "-no-color", "-auto-approve"];

            eprintln!("[{:?}] (a)", started.elapsed());
            // (a) Ctrl-C while the first server installs.
            let t = Instant::now();
            let running = tf.spawn(&apply_args).unwrap();
            if !wait_until(Duration::from_secs(60), || config_written(lab, names[0])) {
                return Err(format!(
                    "the first server's install never began:\n{}",
                    tf.wait(running).unwrap()
                ));
            }
            running.signal(libc::SIGINT).unwrap();
            let out = tf.wait(running).unwrap();
            eprintln!("Ctrl-C apply ({:?}):\n{out}", t.elapsed());
            let text = flat(&out);
            if out.success() || !text.contains("Interrupt received") {
                return Err(format!(
                    "the interrupted apply did not stop as interrupted:\n{out}"
                ));
            }
            if !text.to_lowercase().contains("cancel") {
                return Err(format!(
                    "the provider did not report the cancellation (StopProvider):\n{out}"
                ));
            }
            if text.contains("plugin exited") || text.contains("Plugin did not respond") {
                return Err(format!("the provider died on Ctrl-C:\n{out}"));
            }
            // The install the interrupt hit does not go on behind the next apply's back.
            let running_install = || {
                sh(
                    lab,
                    names[0],
                    "ps -eo args | grep '[k]3s-install.sh' || true",
                )
            };
            if !wait_until(Duration::from_secs(5), || {
                running_install().trim().is_empty()
            }) {
                return Err(format!(
                    "the install script kept running after Ctrl-C: {}",
                    running_install()
                ));
            }

            eprintln!("[{:?}] (b)", started.elapsed());
            // (b) The second server's link is cut while it installs: the apply fails with a clear error.
            let t = Instant::now();
            let running = tf.spawn(&apply_args).unwrap();
            if !wait_until(Duration::from_secs(120), || config_written(lab, names[1])) {
                return Err(format!(
                    "the second server's install never began:\n{}",
                    tf.wait(running).unwrap()
                ));
            }
            lab.cut_link(names[1]).map_err(|e| e.to_string())?;
            let out = tf.wait(running).unwrap();
            lab.restore_link(names[1]).map_err(|e| e.to_string())?;
            eprintln!("apply with a cut link ({:?}):\n{out}", t.elapsed());
            let text = flat(&out);
            if out.success() {
                return Err(format!(
                    "the apply succeeded although the link was cut:\n{out}"
                ));
            }
            if !(text.contains("was lost")
                || text.contains("cannot reach")
                || text.contains("Cannot connect"))
            {
                return Err(format!("unclear error for a cut link:\n{out}"));
            }
            if t.elapsed() > Duration::from_secs(100) {
                return Err(format!(
                    "a cut link took {:?} to fail the apply",
                    t.elapsed()
                ));
            }

            eprintln!("[{:?}] (c)", started.elapsed());
            // (c) The next apply converges; plans are empty afterwards.
            let out = tf.apply(&[]).unwrap();
            if !out.success() {
                return Err(format!(
                    "the apply after the faults did not converge:\n{out}"
                ));
            }
            tf.plans_empty()
                .unwrap_or_else(|e| panic!("after the faults: {e}"));
            let n = nodes(lab);
            if !names.iter().all(|name| ready(&n, name)) {
                return Err(format!("not every server is Ready:\n{n}"));
            }

            eprintln!("[{:?}] (d)", started.elapsed());
            // (d) A server is down: removing another one would leave 1 of 2 members healthy. Refused, and why.
            lab.stop_host(names[2]).map_err(|e| e.to_string())?;
            if !wait_until(Duration::from_secs(70), || !ready(&nodes(lab), names[2])) {
                return Err(format!(
                    "k8s-control-3 never became NotReady:\n{}",
                    nodes(lab)
                ));
            }
            tf.write_config(&two).unwrap();
            // -refresh=false: a refresh would (rightly) stop at the unreachable third server first.
            let out = tf.apply(&["-refresh=false"]).unwrap();
            eprintln!("removal while a server is down:\n{out}");
            let text = flat(&out);
            if out.success()
                || !text.contains("Removing this server would lose etcd quorum")
                || !text.contains("k8s-control-3")
            {
                return Err(format!(
                    "the quorum-losing removal was not refused clearly:\n{out}"
                ));
            }
            let n = nodes(lab);
            if !ready(&n, names[0]) || !ready(&n, names[1]) {
                return Err(format!(
                    "the cluster is not healthy after the refusal:\n{n}"
                ));
            }
            let st = tf.state().unwrap();
            if st.resource("homelab_k3s_server.s2").is_none() {
                return Err("the refused server left the state".into());
            }

            eprintln!("[{:?}] (e)", started.elapsed());
            // (e) The server is back: removing two servers in one apply is done one at a time and keeps the
            // cluster (3 → 2 → 1 members, each step with quorum).
            lab.start_host(names[2]).map_err(|e| e.to_string())?;
            if !wait_until(Duration::from_secs(60), || ready(&nodes(lab), names[2])) {
                return Err(format!("k8s-control-3 did not come back:\n{}", nodes(lab)));
            }
            // At once: etcd refuses to remove a member while a voter has been connected for less than its health
            // interval (5 s: "etcdserver: unhealthy cluster"), and the returning server has just reconnected. The
            // provider must wait that refusal out (retrying within the delete timeout), never stop a server whose
            // removal was refused: two such removals would leave the survivor without quorum. `-refresh=false`
            // keeps the removal inside those 5 s.
            tf.write_config(&one).unwrap();
            let t = Instant::now();
            let out = tf.apply(&["-refresh=false"]).unwrap();
            eprintln!(
                "[{:?}] removing two servers (apply took {:?}):\n{out}",
                started.elapsed(),
                t.elapsed()
            );
            let text = flat(&out);
            if text.contains("Node not removed from the cluster") {
                return Err(format!(
                    "a server was uninstalled without leaving etcd:\n{out}"
                ));
            }
            // When the refusal happened it was reported and waited out. Whether it happens is timing: on a loaded
            // machine the Node can show Ready after etcd's 5 s window has passed, and then this step only checks
            // the one-at-a-time removal (the run says so rather than failing on the test's own timing).
            let refused = text.contains("unhealthy cluster");
            if refused && !text.contains("etcd refused the member removal at first") {
                return Err(format!(
                    "etcd's transient refusal was met but not reported as such:\n{out}"
                ));
            }
            if !refused {
                eprintln!(
                    "note: the removal came after etcd's health window this run; the refusal's retry was not exercised"
                );
            }
            if !out.success() {
                return Err(format!("removing two servers failed:\n{out}"));
            }
            tf.plans_empty()
                .unwrap_or_else(|e| panic!("after removing two servers: {e}"));
            let n = nodes(lab);
            if !ready(&n, names[0]) || n.contains(names[1]) || n.contains(names[2]) {
                return Err(format!("the remaining cluster is wrong:\n{n}"));
            }
            let out = tf.destroy().unwrap();
            if !out.success() {
                return Err(format!("destroy failed:\n{out}"));
            }
            Ok(())
        })
        .join()
        .unwrap()
    });
    let lab = guard.lab();
    if let Err(e) = result {
        for n in names {
            eprintln!(
                "--- {n} journal:\n{}",
                sh(lab, n, "journalctl -u k3s -n 20 --no-pager 2>&1")
            );
        }
        panic!("{e}");
    }
    for n in names {
        let left = sh(
            lab,
            n,
            "ls -d /usr/local/bin/k3s /etc/rancher/k3s /var/lib/rancher/k3s /etc/systemd/system/k3s.service 2>/dev/null",
        );
        assert!(
            left.trim().is_empty(),
            "{n} not clean after destroy: {left}"
        );
    }
    eprintln!("robustness scenario took {:?}", started.elapsed());
}
