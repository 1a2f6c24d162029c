//! Guided restore of an etcd snapshot (issue 14, item 2), through real Terraform 1.15.5 in the host lab: three
//! servers on embedded etcd and an agent; a Secret is created with the real kubectl, a snapshot is taken, the
//! Secret is deleted; then `homelab_k3s_etcd_restore` restores the snapshot (found through
//! `data.homelab_k3s_snapshots`). The plan must tell every step before it runs; afterwards the Secret is back,
//! all three servers are etcd voters again, the agent is Ready and its k3s was not restarted, and every plan is
//! empty (the harness checks both the refreshed and the `-refresh=false` plan after each step). Raising
//! `restore_version` then plans an in-place update that would restore again.
//!
//! Needs root (namespaces) and the `homelab-lab` binary (built on demand).

use std::process::Command;

use homelab_acceptance::lab_support::{enter_netns, k3s_artifacts, lab_binary};
use homelab_acceptance::terraform::{hcl_string, required_providers};
use homelab_acceptance::{Action, Step, TerraformVersion, TestCase};
use homelab_lab::{Lab, LabSpec};

const VERSION: &str = "v1.31.5+k3s1";
const INSTALL_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k3s-sim/install.sh");
const PROBE: &str = "restore-probe";

struct World {
    ips: Vec<String>,
    key: String,
    known_hosts: String,
    art: String,
    ops_pw: String,
}

impl World {
    fn cluster(&self) -> String {
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
  token = \"restore-cluster-secret\"
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
  token = homelab_k3s_server.init.join_token
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

#[test]
fn restore_brings_a_deleted_object_back_and_three_voters() {
    if !TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        return;
    }
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    lab_binary();
    let lab_name = format!("k3srs{}", std::process::id() % 100_000);
    let art = k3s_artifacts(
        &format!("k3s-restore-artifacts-{lab_name}"),
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
        ips: ips.clone(),
        key: lab.ssh_key().display().to_string(),
        known_hosts: lab.known_hosts().display().to_string(),
        art: art.display().to_string(),
        ops_pw: lab.state().ops_password_file.display().to_string(),
    };
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
        for h in ["k8s-control-1", "k8s-control-2", "k8s-control-3"] {
            eprintln!("--- journal of k3s on {h}:");
            for l in lab.journal(h, "k3s").iter().rev().take(40).rev() {
                eprintln!("{l}");
            }
        }
        panic!("restore test failed");
    }
}
