//! Secrets out of state (issue 14, item 4), through real Terraform 1.15.5 in the host lab: an init server, a
//! joining server and an agent that all take the cluster token write-only (`token_wo`), and the ephemeral
//! `homelab_k3s_kubeconfig` handed to a `terraform_data` provisioner that runs the real kubectl with it. After
//! apply both plans are empty (the harness checks), and `terraform.tfstate` itself is searched: no token, no
//! client key, no PEM private key.
//!
//! Why a provisioner: ephemeral values may only go where Terraform never persists them (provider blocks,
//! provisioners and connection blocks, write-only attributes); `local-exec`'s `environment` is one such place
//! that needs no other provider. The ephemeral resource's host is the init server's `id`, unknown until the
//! server exists, so Terraform defers opening it to apply on the first run instead of failing at plan.
//!
//! Needs root (namespaces) and the `homelab-lab` binary (built on demand). Terraform 1.0.3 has neither
//! write-only attributes nor ephemeral resources; its path (`token`) is covered by `k3s_resources.rs`.

use homelab_acceptance::lab_support::{enter_netns, k3s_artifacts, lab_binary};
use homelab_acceptance::terraform::{hcl_string, required_providers};
use homelab_acceptance::{Action, Step, TerraformVersion, TestCase};
use homelab_lab::{Lab, LabSpec};

const VERSION: &str = "v1.31.5+k3s1";
/// The cluster password: must not appear anywhere in the state file.
const SECRET: &str = "wo-cluster-secret-7f3a";
/// The S3 secret key of the snapshots: on the host's config.yaml, nowhere in the state file.
const S3_SECRET: &str = "s3-secret-key-9c1e";
const INSTALL_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k3s-sim/install.sh");

fn config(ips: &[String], key: &str, known_hosts: &str, art: &str, ops_pw_file: &str) -> String {
    let install = format!(
        "  install_script = file({})\n  install_env = {{ INSTALL_K3S_SIM_ARTIFACTS = {} }}\n",
        hcl_string(INSTALL_SH),
        hcl_string(art),
    );
    let init_url = format!("https://{}:6443", ips[0]);
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
  token_wo = \"{SECRET}\"
  token_wo_version = 1
  version = \"{VERSION}\"
  disable = [\"servicelb\"]
  etcd_s3_bucket = \"k3s-snapshots\"
  etcd_s3_endpoint = \"minio.lab.invalid:9000\"
  etcd_s3_access_key = \"homelab\"
  etcd_s3_secret_key_wo = \"{S3_SECRET}\"
  etcd_s3_secret_key_wo_version = 1
{install}  host {{ address = \"{a0}\" }}
  timeouts {{ create = \"90s\" }}
}}

resource \"homelab_k3s_server\" \"join\" {{
  role = \"join\"
  server_url = \"{init_url}\"
  token_wo = \"K10${{homelab_k3s_server.init.ca_hash}}::server:{SECRET}\"
  token_wo_version = 1
  version = \"{VERSION}\"
  disable = [\"servicelb\"]
{install}  host {{ address = \"{a1}\" }}
  timeouts {{ create = \"90s\" }}
}}

resource \"homelab_k3s_agent\" \"worker\" {{
  server_url = \"{init_url}\"
  token_wo = \"K10${{homelab_k3s_server.init.ca_hash}}::server:{SECRET}\"
  token_wo_version = 1
  version = \"{VERSION}\"
  depends_on = [homelab_k3s_server.join]
{install}  host {{
    address = \"{a2}\"
    user = \"ops\"
    sudo_password = trimspace(file({ops_pw}))
  }}
  timeouts {{ create = \"90s\" }}
}}

ephemeral \"homelab_k3s_kubeconfig\" \"admin\" {{
  server = \"{init_url}\"
  host {{ address = homelab_k3s_server.init.id }}
}}

resource \"terraform_data\" \"kubectl\" {{
  input = homelab_k3s_agent.worker.id
  provisioner \"local-exec\" {{
    environment = {{ KC = ephemeral.homelab_k3s_kubeconfig.admin.kubeconfig }}
    command = \"f=$(mktemp) && printf '%s' \\\"$KC\\\" > $f && /usr/bin/kubectl --kubeconfig $f get nodes --no-headers | grep -c ' Ready ' | grep -qx 3; r=$?; rm -f $f; exit $r\"
  }}
}}
",
        providers = required_providers(),
        key = hcl_string(key),
        known_hosts = hcl_string(known_hosts),
        a0 = ips[0],
        a1 = ips[1],
        a2 = ips[2],
        ops_pw = hcl_string(ops_pw_file),
    )
}

/// What must never be in `terraform.tfstate`.
fn secrets_in(state: &str) -> Vec<&'static str> {
    [
        SECRET,
        S3_SECRET,
        "::server:",
        "client-key-data",
        "PRIVATE KEY",
        "-----BEGIN",
    ]
    .into_iter()
    .filter(|s| state.contains(s))
    .collect()
}

#[test]
fn write_only_tokens_and_ephemeral_kubeconfig_keep_state_clean() {
    if !TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        return;
    }
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    lab_binary();
    let lab_name = format!("k3swo{}", std::process::id() % 100_000);
    let art = k3s_artifacts(
        &format!("k3s-wo-artifacts-{lab_name}"),
        VERSION,
        &[(VERSION, None)],
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = LabSpec::new(&lab_name);
    spec.servers = 2;
    spec.agents = 1;
    spec.opnsense = false;
    spec.root = Some(tmp.path().join("labs"));
    let guard = Lab::up_guarded(&spec).unwrap();
    let lab: &Lab = &guard;
    let ips: Vec<String> = ["k8s-control-1", "k8s-control-2", "k8s-worker-1"]
        .iter()
        .map(|n| lab.host(n).unwrap().ip.to_string())
        .collect();
    let hcl = config(
        &ips,
        &lab.ssh_key().display().to_string(),
        &lab.known_hosts().display().to_string(),
        &art.display().to_string(),
        &lab.state().ops_password_file.display().to_string(),
    );
    let ssh_to_init = {
        let (key, kh, ip) = (
            lab.ssh_key().display().to_string(),
            lab.known_hosts().display().to_string(),
            ips[0].clone(),
        );
        move |cmd: &str| -> Result<String, String> {
            let out = std::process::Command::new("ssh")
                .args(["-F", "/dev/null", "-i", &key, "-o"])
                .arg(format!("UserKnownHostsFile={kh}"))
                .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"])
                .arg(format!("root@{ip}"))
                .arg(cmd)
                .output()
                .map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        }
    };
    // Raising the init server's token_wo_version re-applies its token in place (same token: nothing else moves).
    let bumped = {
        let at = hcl.find("token_wo_version = 1").unwrap();
        format!(
            "{}token_wo_version = 2{}",
            &hcl[..at],
            &hcl[at + "token_wo_version = 1".len()..]
        )
    };
    let ws = homelab_lab::ns::named_netns(&lab.state().ws_netns);
    let result = std::thread::spawn(move || {
        enter_netns(&ws);
        TestCase::new(TerraformVersion::V1_15)
            .step(
                Step::config(hcl.clone())
                    .named("write-only tokens, ephemeral kubeconfig")
                    .check(|st| {
                        for (addr, path) in [
                            ("homelab_k3s_server.init", "token"),
                            ("homelab_k3s_server.init", "token_wo"),
                            ("homelab_k3s_server.init", "join_token"),
                            ("homelab_k3s_server.init", "kubeconfig"),
                            ("homelab_k3s_server.join", "token"),
                            ("homelab_k3s_agent.worker", "token"),
                        ] {
                            match st.attr(addr, path) {
                                None | Some(serde_json::Value::Null) => {}
                                Some(_) => {
                                    return Err(format!("{addr}.{path} is not null in state"))
                                }
                            }
                        }
                        let ca = st
                            .attr("homelab_k3s_server.init", "ca_hash")
                            .and_then(|v| v.as_str())
                            .unwrap_or_default();
                        if ca.len() != 64 {
                            return Err(format!("ca_hash is not a SHA-256: {ca:?}"));
                        }
                        Ok(())
                    }),
            )
            .step(
                Step::config(hcl.clone())
                    .named("the state file holds no secret")
                    .before(move |tf, _| {
                        let on_host = ssh_to_init("cat /etc/rancher/k3s/config.yaml")?;
                        if !on_host.contains(S3_SECRET) || !on_host.contains("\"etcd-s3\": true") {
                            return Err(format!(
                                "config.yaml on the init server lacks the S3 settings:\n{}",
                                on_host
                                    .replace(S3_SECRET, "<s3 secret>")
                                    .replace(SECRET, "<token>")
                            ));
                        }
                        let raw = tf
                            .read_file("terraform.tfstate")
                            .map_err(|e| e.to_string())?;
                        let found = secrets_in(&raw);
                        if !found.is_empty() {
                            return Err(format!("terraform.tfstate contains {found:?}"));
                        }
                        if !raw.contains("homelab_k3s_agent") {
                            return Err("terraform.tfstate does not hold the cluster".into());
                        }
                        Ok(())
                    }),
            )
            .step(
                Step::config(bumped)
                    .named("token_wo_version raised: the token is re-applied in place")
                    .expect_action("homelab_k3s_server.init", Action::Update)
                    .expect_action("homelab_k3s_server.join", Action::NoOp),
            )
            .try_run()
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap();
    let _ = std::fs::remove_dir_all(&art);
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Terraform 1.0.3 knows nothing of write-only attributes (it would store `token_wo` in state like any other
/// attribute), so the provider refuses it there, at validate, on the attribute, saying what to do.
#[test]
fn terraform_1_0_is_told_to_keep_token() {
    if !TerraformVersion::selected().contains(&TerraformVersion::V1_0) {
        return;
    }
    let hcl = format!(
        "{}
resource \"homelab_k3s_server\" \"init\" {{
  role = \"init\"
  token_wo = \"{SECRET}\"
  token_wo_version = 1
  host {{ address = \"192.0.2.10\" }}
}}
",
        required_providers()
    );
    TestCase::new(TerraformVersion::V1_0)
        .step(
            Step::config(hcl)
                .named("token_wo under 1.0.3")
                .expect_error(
                "Write-only attribute not supported by this Terraform.*token_wo.*Terraform 1.11",
            ),
        )
        .run();
}
