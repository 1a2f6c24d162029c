//! Day-2 operations on a cluster of three servers and an agent, through real Terraform 1.15.5 in the host lab
//! (issue 14, items 2 and 3).
//!
//! Guided restore: a Secret is created with the real kubectl, a snapshot is taken, the Secret is deleted; then
//! `homelab_k3s_etcd_restore` restores the snapshot (found through `data.homelab_k3s_snapshots`). The plan must
//! tell every step before it runs; afterwards the Secret is back, all three servers are etcd voters again, the
//! agent is Ready and its k3s was not restarted. Raising `restore_version` then plans an in-place update.
//!
//! Token rotation: a new `token` on the init server plans in-place updates of every server and the agent (no
//! replacement), rotates the cluster's token and restarts each node with it; afterwards every server holds the new
//! token, a join with the old one is refused (401) and with the new one accepted. A joining server then given a
//! token the cluster does not accept is refused before anything on it changes, and the cluster stays whole.
//! A `config.yaml.d` drop-in written by hand on a server then shows in the refreshed plan (k3s merges it).
//!
//! Labels and taints (issue 14, item 5), on the same cluster afterwards: set on the Nodes through the API without
//! restarting k3s (a `node-role.kubernetes.io` label only through the API, never in config.yaml, where the kubelet
//! would refuse it); changed by hand with kubectl, the refreshed plan shows it and an apply puts it back; an
//! agent's taint change without `cluster_kubeconfig` is refused at plan, and with it applied.
//!
//! The harness checks both the refreshed and the `-refresh=false` plan after each step.
//!
//! Needs root (namespaces) and the `homelab-lab` binary (built on demand).

use std::process::Command;

use homelab_acceptance::lab_support::{enter_netns, k3s_artifacts, lab_binary};
use homelab_acceptance::terraform::{hcl_string, required_providers};
use homelab_acceptance::{Action, Step, TerraformVersion, TestCase};
use homelab_lab::{Lab, LabGuard, LabSpec};

const VERSION: &str = "v1.31.5+k3s1";
const INSTALL_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k3s-sim/install.sh");
const PROBE: &str = "restore-probe";
const FIRST_TOKEN: &str = "restore-cluster-secret";
const ROTATED_TOKEN: &str = "rotated-cluster-secret-2";

#[derive(Clone)]
struct World {
    ips: Vec<String>,
    key: String,
    known_hosts: String,
    art: String,
    ops_pw: String,
}

impl World {
    fn cluster(&self) -> String {
        self.cluster_with(FIRST_TOKEN, "homelab_k3s_server.init.join_token")
    }

    /// The cluster with `token` on the first server and `join2` given `join2_token` (an HCL expression).
    fn cluster_with(&self, token: &str, join2_token: &str) -> String {
        let install = format!(
            "  install_script = file({})\n  install_env = {{ INSTALL_K3S_SIM_ARTIFACTS = {} }}\n",
            hcl_string(INSTALL_SH),
            hcl_string(&self.art),
        );
        let init_url = format!("https://{}:6443", self.ips[0]);
        format!(
            "{providers}
provider \"homelab\" {{
  ssh {{
    user = \"root\"
    private_key = file({key})
    known_hosts = file({known_hosts})
  }}
}}

resource \"homelab_k3s_server\" \"init\" {{
  role = \"init\"
  token = \"{token}\"
  version = \"{VERSION}\"
  disable = [\"servicelb\"]
{install}  host {{ address = \"{a0}\" }}
  timeouts {{ create = \"90s\" }}
}}

resource \"homelab_k3s_server\" \"join1\" {{
  role = \"join\"
  server_url = \"{init_url}\"
  token = homelab_k3s_server.init.join_token
  version = \"{VERSION}\"
  disable = [\"servicelb\"]
{install}  host {{ address = \"{a1}\" }}
  timeouts {{ create = \"90s\" }}
}}

resource \"homelab_k3s_server\" \"join2\" {{
  role = \"join\"
  server_url = \"{init_url}\"
  token = {join2_token}
  version = \"{VERSION}\"
  disable = [\"servicelb\"]
  depends_on = [homelab_k3s_server.join1]
{install}  host {{ address = \"{a2}\" }}
  timeouts {{ create = \"90s\" }}
}}

resource \"homelab_k3s_agent\" \"worker\" {{
  server_url = \"{init_url}\"
  token = homelab_k3s_server.init.join_token
  version = \"{VERSION}\"
  depends_on = [homelab_k3s_server.join2]
{install}  host {{
    address = \"{a3}\"
    user = \"ops\"
    sudo_password = trimspace(file({ops_pw}))
  }}
  timeouts {{ create = \"90s\" }}
}}
",
            providers = required_providers(),
            key = hcl_string(&self.key),
            known_hosts = hcl_string(&self.known_hosts),
            a0 = self.ips[0],
            a1 = self.ips[1],
            a2 = self.ips[2],
            a3 = self.ips[3],
            ops_pw = hcl_string(&self.ops_pw),
        )
    }

    fn with_restore(&self, version: i64) -> String {
        format!(
            "{}
data \"homelab_k3s_snapshots\" \"first\" {{
  host {{ address = homelab_k3s_server.init.id }}
}}

resource \"homelab_k3s_etcd_restore\" \"before_delete\" {{
  snapshot = [for s in data.homelab_k3s_snapshots.first.snapshots : s.name if startswith(s.name, \"before-delete-\")][0]
  restore_version = {version}
  host {{ address = homelab_k3s_server.init.id }}
  rejoin {{ address = homelab_k3s_server.join1.id }}
  rejoin {{ address = homelab_k3s_server.join2.id }}
  timeouts {{ create = \"5m\" }}
}}
",
            self.cluster()
        )
    }
}

fn ssh(key: &str, known_hosts: &str, ip: &str, cmd: &str) -> Result<String, String> {
    let out = Command::new("ssh")
        .args(["-F", "/dev/null", "-i", key])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={known_hosts}"))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
        .arg(format!("root@{ip}"))
        .arg(cmd)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "`{cmd}` on {ip} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The etcd members `/db/info` reports on `ip`, as (name, is_learner).
fn members(key: &str, kh: &str, ip: &str) -> Result<Vec<(String, bool)>, String> {
    let raw = ssh(key, kh, ip, "k3s kubectl get --raw /db/info")?;
    let v: serde_json::Value = serde_json::from_str(&raw).map_err(|e| format!("{e}: {raw}"))?;
    Ok(v["members"]
        .as_array()
        .ok_or(format!("no members in {raw}"))?
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["isLearner"].as_bool().unwrap_or(false),
            )
        })
        .collect())
}

/// Three servers and an agent in a lab of their own; `None` when Terraform 1.15 is not selected.
fn lab_world(tag: &str) -> Option<(LabGuard, World, tempfile::TempDir)> {
    if !TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        return None;
    }
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    lab_binary();
    let lab_name = format!("{tag}{}", std::process::id() % 100_000);
    let art = k3s_artifacts(
        &format!("k3s-day2-artifacts-{lab_name}"),
        VERSION,
        &[(VERSION, None)],
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = LabSpec::new(&lab_name);
    spec.servers = 3;
    spec.agents = 1;
    spec.opnsense = false;
    spec.root = Some(tmp.path().join("labs"));
    let guard = Lab::up_guarded(&spec).unwrap();
    let lab: &Lab = &guard;
    let ips: Vec<String> = [
        "k8s-control-1",
        "k8s-control-2",
        "k8s-control-3",
        "k8s-worker-1",
    ]
    .iter()
    .map(|n| lab.host(n).unwrap().ip.to_string())
    .collect();
    let w = World {
        ips,
        key: lab.ssh_key().display().to_string(),
        known_hosts: lab.known_hosts().display().to_string(),
        art: art.display().to_string(),
        ops_pw: lab.state().ops_password_file.display().to_string(),
    };
    Some((guard, w, tmp))
}

fn dump_server_journals(lab: &Lab) {
    for h in ["k8s-control-1", "k8s-control-2", "k8s-control-3"] {
        eprintln!("--- journal of k3s on {h}:");
        for l in lab.journal(h, "k3s").iter().rev().take(40).rev() {
            eprintln!("{l}");
        }
    }
}

#[test]
fn restore_brings_a_deleted_object_back_and_three_voters() {
    let Some((guard, w, _tmp)) = lab_world("k3srs") else {
        return;
    };
    let lab: &Lab = &guard;
    let ips = w.ips.clone();
    let (cluster, restore1, restore2) = (w.cluster(), w.with_restore(1), w.with_restore(2));
    let (key, kh) = (w.key.clone(), w.known_hosts.clone());
    // The agent's k3s must not be restarted by the restore: its unit's main PID before and after.
    let agent_pid = {
        let (key, kh, ip) = (w.key.clone(), w.known_hosts.clone(), w.ips[3].clone());
        move || {
            ssh(&key, &kh, &ip, "systemctl show -p MainPID k3s-agent").map(|s| s.trim().to_string())
        }
    };
    let pid_before = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let ws = homelab_lab::ns::named_netns(&lab.state().ws_netns);
    let result = std::thread::spawn(move || {
        enter_netns(&ws);
        let (k1, h1, i1) = (key.clone(), kh.clone(), ips[0].clone());
        let (k2, h2, ips2) = (key.clone(), kh.clone(), ips.clone());
        let (pid_a, pid_b) = (pid_before.clone(), pid_before.clone());
        let (agent_pid_a, agent_pid_b) = (agent_pid.clone(), agent_pid);
        TestCase::new(TerraformVersion::V1_15)
            .step(Step::config(cluster).named("three servers and an agent"))
            .step(
                Step::config(restore1)
                    .named("snapshot, delete, restore")
                    .before(move |_, _| {
                        ssh(
                            &k1,
                            &h1,
                            &i1,
                            &format!(
                                "k3s kubectl create secret generic {PROBE} --from-literal=k=v"
                            ),
                        )?;
                        ssh(&k1, &h1, &i1, "k3s etcd-snapshot save --name before-delete")?;
                        ssh(&k1, &h1, &i1, &format!("k3s kubectl delete secret {PROBE}"))?;
                        if ssh(&k1, &h1, &i1, &format!("k3s kubectl get secret {PROBE}")).is_ok() {
                            return Err("the probe Secret was not deleted".into());
                        }
                        *pid_a.lock().unwrap() = agent_pid_a()?;
                        Ok(())
                    })
                    .expect_action("homelab_k3s_etcd_restore.before_delete", Action::Create)
                    .plan_check(|plan| {
                        let steps = plan
                            .change("homelab_k3s_etcd_restore.before_delete")
                            .and_then(|c| c.pointer("/change/after/steps"))
                            .and_then(|s| s.as_array())
                            .ok_or("the plan does not show the restore's steps")?;
                        let text: Vec<&str> = steps.iter().filter_map(|s| s.as_str()).collect();
                        if text.len() != 6
                            || !text[2].contains("--cluster-reset")
                            || !text[1].contains("agents are not touched")
                        {
                            return Err(format!("unexpected steps in the plan: {text:#?}"));
                        }
                        Ok(())
                    })
                    .check(move |st| {
                        ssh(
                            &k2,
                            &h2,
                            &ips2[0],
                            &format!("k3s kubectl get secret {PROBE}"),
                        )
                        .map_err(|e| format!("the Secret is not back after the restore: {e}"))?;
                        let ms = members(&k2, &h2, &ips2[0])?;
                        let voters = ms.iter().filter(|(_, learner)| !learner).count();
                        if ms.len() != 3 || voters != 3 {
                            return Err(format!("expected 3 etcd voters, got {ms:?}"));
                        }
                        let nodes = ssh(&k2, &h2, &ips2[0], "k3s kubectl get nodes --no-headers")?;
                        let ready = nodes.lines().filter(|l| l.contains(" Ready ")).count();
                        if ready != 4 {
                            return Err(format!("expected 4 Ready nodes:\n{nodes}"));
                        }
                        let after = agent_pid_b()?;
                        if *pid_b.lock().unwrap() != after {
                            return Err(format!(
                                "the agent's k3s was restarted ({} → {after})",
                                pid_b.lock().unwrap()
                            ));
                        }
                        let path = st
                            .attr("homelab_k3s_etcd_restore.before_delete", "snapshot_path")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default();
                        if !path.contains("/before-delete-") {
                            return Err(format!("snapshot_path is {path:?}"));
                        }
                        Ok(())
                    }),
            )
            .step(
                Step::config(restore2)
                    .named("raising restore_version plans a restore in place")
                    .plan_only()
                    .expect_non_empty_plan()
                    .expect_action("homelab_k3s_etcd_restore.before_delete", Action::Update),
            )
            .run();
    })
    .join();
    if result.is_err() {
        dump_server_journals(lab);
        panic!("restore test failed");
    }
}

/// The HTTP status a server's supervisor answers a join request (`/v1-k3s/server-bootstrap`) made with `password`.
fn join_status(ip: &str, password: &str) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-u"])
        .arg(format!("server:{password}"))
        .arg(format!("https://{ip}:6443/v1-k3s/server-bootstrap"))
        .output()
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn token_rotation_restarts_every_node_and_a_wrong_token_is_rolled_back() {
    let Some((guard, w, _tmp)) = lab_world("k3stk") else {
        return;
    };
    let lab: &Lab = &guard;
    let first = w.cluster();
    let rotated = w.cluster_with(ROTATED_TOKEN, "homelab_k3s_server.init.join_token");
    let wrong = w.cluster_with(
        ROTATED_TOKEN,
        "\"K10${homelab_k3s_server.init.ca_hash}::server:not-the-cluster-token\"",
    );
    let (key, kh, ips) = (w.key.clone(), w.known_hosts.clone(), w.ips.clone());
    let w2 = w.clone();
    let ws = homelab_lab::ns::named_netns(&lab.state().ws_netns);
    let result = std::thread::spawn(move || {
        enter_netns(&ws);
        let label_steps = label_steps(&w2);
        let (k2, h2, ips2) = (key.clone(), kh.clone(), ips.clone());
        let (k3, h3, ips3) = (key.clone(), kh.clone(), ips.clone());
        let (k4, h4, ip4) = (key.clone(), kh.clone(), ips[1].clone());
        let (k5, h5, ip5) = (key.clone(), kh.clone(), ips[1].clone());
        let healthy = move |k: &str, h: &str, ips: &[String]| -> Result<(), String> {
            let ms = members(k, h, &ips[0])?;
            if ms.len() != 3 || ms.iter().any(|(_, learner)| *learner) {
                return Err(format!("expected 3 etcd voters, got {ms:?}"));
            }
            let nodes = ssh(k, h, &ips[0], "k3s kubectl get nodes --no-headers")?;
            if nodes.lines().filter(|l| l.contains(" Ready ")).count() != 4 {
                return Err(format!("expected 4 Ready nodes:\n{nodes}"));
            }
            Ok(())
        };
        let healthy2 = healthy;
        let case = TestCase::new(TerraformVersion::V1_15)
            .step(Step::config(first).named("three servers and an agent"))
            .step(
                Step::config(rotated.clone())
                    .named("a new token on the init server rotates the cluster's token")
                    .expect_warning("cluster token will be rotated")
                    .expect_action("homelab_k3s_server.init", Action::Update)
                    .expect_action("homelab_k3s_server.join1", Action::Update)
                    .expect_action("homelab_k3s_server.join2", Action::Update)
                    .expect_action("homelab_k3s_agent.worker", Action::Update)
                    .check(move |_| {
                        healthy(&k2, &h2, &ips2)?;
                        for ip in &ips2[..3] {
                            let t = ssh(&k2, &h2, ip, "cat /var/lib/rancher/k3s/server/token")?;
                            if !t.trim().ends_with(&format!("::server:{ROTATED_TOKEN}")) {
                                return Err(format!("{ip} does not hold the rotated token"));
                            }
                            let old = join_status(ip, FIRST_TOKEN)?;
                            let new = join_status(ip, ROTATED_TOKEN)?;
                            if (old.as_str(), new.as_str()) != ("401", "200") {
                                return Err(format!(
                                    "{ip}: a join with the old token got {old}, with the new one {new}"
                                ));
                            }
                        }
                        Ok(())
                    }),
            )
            .step(
                Step::config(wrong)
                    .named("a token the cluster does not accept is refused and rolled back")
                    .expect_error("does not accept the new token"),
            )
            .step(
                Step::config(rotated.clone())
                    .named("a config.yaml.d drop-in on a server shows as drift")
                    .before(move |_, _| {
                        ssh(
                            &k4,
                            &h4,
                            &ip4,
                            "mkdir -p /etc/rancher/k3s/config.yaml.d && printf 'etcd-snapshot-retention: 9\\n' \
                             > /etc/rancher/k3s/config.yaml.d/50-extra.yaml",
                        )
                        .map(|_| ())
                    })
                    .plan_only()
                    .expect_non_empty_plan()
                    .plan_check(|plan| {
                        let before = plan
                            .change("homelab_k3s_server.join1")
                            .and_then(|c| c.pointer("/change/before/etcd_snapshot_retention"))
                            .cloned()
                            .unwrap_or_default();
                        if before != serde_json::json!(9) {
                            return Err(format!("join1's refreshed etcd_snapshot_retention: {before}"));
                        }
                        Ok(())
                    }),
            )
            .step(
                Step::config(rotated)
                    .named("the cluster is whole and the plan converges")
                    .before(move |_, _| {
                        ssh(&k5, &h5, &ip5, "rm -f /etc/rancher/k3s/config.yaml.d/50-extra.yaml")?;
                        healthy2(&k3, &h3, &ips3)
                    }),
            );
        label_steps.into_iter().fold(case, TestCase::step).run();
    })
    .join();
    if result.is_err() {
        dump_server_journals(lab);
        panic!("token rotation test failed");
    }
}

/// `config` with node labels/taints on the init server (`server`) and the agent (`agent`): HCL attribute lines.
fn marked(config: &str, server: &str, agent: &str) -> String {
    config
        .replacen(
            "  role = \"init\"\n",
            &format!("  role = \"init\"\n{server}"),
            1,
        )
        .replacen(
            "  depends_on = [homelab_k3s_server.join2]\n",
            &format!("  depends_on = [homelab_k3s_server.join2]\n{agent}"),
            1,
        )
}

/// The labels and taints of Node `name`, asked on the init server.
fn node_marks(k: &str, h: &str, ip: &str, name: &str) -> Result<serde_json::Value, String> {
    let raw = ssh(k, h, ip, &format!("k3s kubectl get node {name} -o json"))?;
    let n: serde_json::Value = serde_json::from_str(&raw).map_err(|e| format!("{e}: {raw}"))?;
    Ok(serde_json::json!({"labels": n["metadata"]["labels"], "taints": n["spec"]["taints"]}))
}

/// The label and taint steps, run on the rotated cluster (called inside the workstation namespace).
fn label_steps(w: &World) -> Vec<Step> {
    let base = w.cluster_with(ROTATED_TOKEN, "homelab_k3s_server.init.join_token");
    let server = "  node_labels = [\"tier=control\", \"node-role.kubernetes.io/worker=true\"]\n  \
                  node_taints = [\"dedicated=control:PreferNoSchedule\"]\n";
    let first = marked(&base, server, "  node_labels = [\"tier=worker\"]\n");
    let agent_taint = marked(
        &base,
        server,
        "  node_labels = [\"tier=worker\"]\n  node_taints = [\"gpu=yes:NoSchedule\"]\n",
    );
    let with_admin = marked(
        &base,
        server,
        "  node_labels = [\"tier=worker\", \"node-role.kubernetes.io/worker=true\"]\n  \
         node_taints = [\"gpu=yes:NoSchedule\"]\n  cluster_kubeconfig = homelab_k3s_server.init.kubeconfig\n",
    );
    let registry = "  registry_mirror {\n    registry = \"docker.io\"\n    endpoints = [\"https://mirror.lab:5000\"]\n  }\n  \
                    registry_config {\n    host = \"mirror.lab:5000\"\n    username = \"puller\"\n    \
                    password_wo = \"registry-pass-1\"\n    password_wo_version = 1\n  }\n";
    let with_registry = with_admin.replacen(
        "  cluster_kubeconfig = homelab_k3s_server.init.kubeconfig\n",
        &format!("  cluster_kubeconfig = homelab_k3s_server.init.kubeconfig\n{registry}"),
        1,
    );
    let (key, kh, ip0) = (w.key.clone(), w.known_hosts.clone(), w.ips[0].clone());
    let (k9, h9, ip3) = (w.key.clone(), w.known_hosts.clone(), w.ips[3].clone());
    let (k8, h8, ip8) = (w.key.clone(), w.known_hosts.clone(), w.ips[3].clone());
    {
        let pid = {
            let (k, h, ip) = (key.clone(), kh.clone(), ip0.clone());
            move || ssh(&k, &h, &ip, "systemctl show -p MainPID k3s").map(|s| s.trim().to_string())
        };
        let pid_before = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (pa, pb, pid_a, pid_b) = (pid_before.clone(), pid_before, pid.clone(), pid);
        let marks = {
            let (k, h, ip) = (key.clone(), kh.clone(), ip0.clone());
            move |name: &str| node_marks(&k, &h, &ip, name)
        };
        let (m1, m2, m3) = (marks.clone(), marks.clone(), marks);
        let (k1, h1, i1) = (key.clone(), kh.clone(), ip0.clone());
        let (k2, h2, i2) = (key.clone(), kh.clone(), ip0.clone());
        vec![
                Step::config(base)
                    .named("the rotated cluster, k3s's PID on the init server noted")
                    .check(move |_| {
                        *pa.lock().unwrap() = pid_a()?;
                        Ok(())
                    }),
                Step::config(first.clone())
                    .named("labels and taints are set on the Nodes, k3s not restarted")
                    .expect_action("homelab_k3s_server.init", Action::Update)
                    .expect_action("homelab_k3s_agent.worker", Action::Update)
                    .check(move |_| {
                        let s = m1("k8s-control-1")?;
                        if s["labels"]["tier"] != "control"
                            || s["labels"]["node-role.kubernetes.io/worker"] != "true"
                            || s["taints"]
                                != serde_json::json!([{"key": "dedicated", "value": "control", "effect": "PreferNoSchedule"}])
                        {
                            return Err(format!("k8s-control-1's Node: {s}"));
                        }
                        let a = m1("k8s-worker-1")?;
                        if a["labels"]["tier"] != "worker" {
                            return Err(format!("k8s-worker-1's Node: {a}"));
                        }
                        let cfg = ssh(&k1, &h1, &i1, "cat /etc/rancher/k3s/config.yaml")?;
                        if !cfg.contains("tier=control") || cfg.contains("node-role.kubernetes.io") {
                            return Err(format!("config.yaml on k8s-control-1:\n{cfg}"));
                        }
                        let now = pid_b()?;
                        if *pb.lock().unwrap() != now {
                            return Err(format!("k3s was restarted for a label change ({} → {now})", pb.lock().unwrap()));
                        }
                        Ok(())
                    }),

                Step::config(first.clone())
                    .named("labels and taints changed by hand show in the refreshed plan")
                    .before(move |_, _| {
                        ssh(
                            &k2,
                            &h2,
                            &i2,
                            "k3s kubectl label node k8s-worker-1 tier=hand --overwrite && \
                             k3s kubectl taint node k8s-control-1 dedicated-",
                        )
                        .map(|_| ())
                    })
                    .plan_only()
                    .expect_non_empty_plan()
                    .plan_check(|plan| {
                        let before = |a: &str, f: &str| {
                            plan.change(a)
                                .and_then(|c| c.pointer(&format!("/change/before/{f}")))
                                .cloned()
                                .unwrap_or_default()
                        };
                        let labels = before("homelab_k3s_agent.worker", "node_labels");
                        let taints = before("homelab_k3s_server.init", "node_taints");
                        if labels != serde_json::json!(["tier=hand"]) || taints != serde_json::json!([]) {
                            return Err(format!("refreshed: agent labels {labels}, server taints {taints}"));
                        }
                        Ok(())
                    }),

                Step::config(first)
                    .named("an apply puts them back")
                    .expect_action("homelab_k3s_agent.worker", Action::Update)
                    .check(move |_| {
                        let (s, a) = (m2("k8s-control-1")?, m2("k8s-worker-1")?);
                        if a["labels"]["tier"] != "worker" || s["taints"].as_array().map(Vec::len) != Some(1) {
                            return Err(format!("not put back: {s} {a}"));
                        }
                        Ok(())
                    }),

                Step::config(agent_taint)
                    .named("an agent's taints cannot change with its own credentials")
                    .expect_error("Taints of a registered agent need cluster_kubeconfig"),

                Step::config(with_admin.clone())
                    .named("with cluster_kubeconfig the agent gets the taint and the node-role label")
                    .check(move |_| {
                        let a = m3("k8s-worker-1")?;
                        if a["labels"]["node-role.kubernetes.io/worker"] != "true"
                            || a["taints"] != serde_json::json!([{"key": "gpu", "value": "yes", "effect": "NoSchedule"}])
                        {
                            return Err(format!("k8s-worker-1's Node: {a}"));
                        }
                        Ok(())
                    }),
                Step::config(with_registry)
                    .named("a registry mirror with a write-only password reaches the agent's containerd")
                    .expect_action("homelab_k3s_agent.worker", Action::Update)
                    .check(move |_| {
                        let files = ssh(
                            &k9,
                            &h9,
                            &ip3,
                            "stat -c %a /etc/rancher/k3s/registries.yaml; \
                             cat /var/lib/rancher/k3s/agent/etc/containerd/certs.d/docker.io/hosts.toml \
                                 /var/lib/rancher/k3s/agent/etc/containerd/config.toml",
                        )?;
                        if !files.starts_with("600\n")
                            || !files.contains("[host.\"https://mirror.lab:5000\"]")
                            || !files.contains("username = \"puller\"")
                            || !files.contains("password = \"registry-pass-1\"")
                        {
                            return Err(format!("the agent did not start with the registry settings:\n{files}"));
                        }
                        Ok(())
                    })
                    ,
                Step::config(with_admin)
                    .named("the state holds no registry password; without the blocks registries.yaml goes")
                    .before(|tf, _| {
                        let raw = tf.read_file("terraform.tfstate").map_err(|e| e.to_string())?;
                        if raw.contains("registry-pass-1") || !raw.contains("mirror.lab:5000") {
                            return Err("terraform.tfstate holds the registry password, or no registry".into());
                        }
                        Ok(())
                    })
                    .expect_action("homelab_k3s_agent.worker", Action::Update)
                    .check(move |_| {
                        let left = ssh(&k8, &h8, &ip8, "ls /etc/rancher/k3s/")?;
                        if left.contains("registries.yaml") {
                            return Err(format!("registries.yaml is still there: {left}"));
                        }
                        Ok(())
                    }),
        ]
    }
}
