//! The README's main job as a test: `examples/complete` (through `examples/modules/k3s-ha`) applied in one go
//! against a full lab (emulated OPNsense running real HAProxy + 3 k3s-sim servers + 3 agents), then an empty plan,
//! `kubectl get nodes` through the VIP, and the exporter reporting every pool member UP.
//!
//! Why a test and not only `acceptance-tests/dev example`: the example is what a new user runs first; it must not
//! rot when resources change. Terraform runs from a thread inside the lab's workstation namespace, the only place
//! the 192.0.2.x lab addresses are reachable; secrets go in through `TF_VAR_*`, never argv.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Command;

use homelab_acceptance::terraform::{hcl_string, Terraform};
use homelab_acceptance::{paths, TerraformVersion};
use homelab_lab::{Lab, LabSpec};

const VERSION: &str = "v1.31.5+k3s1";

struct LabGuard(Option<Lab>);

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            let _ = lab.down();
        }
    }
}

fn enter_netns(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: setns on the current thread only; the fd is valid for the call.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

fn copy_tf(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "tf") {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn complete_example_applies_and_serves_through_the_vip() {
    if !TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        return;
    }
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    let root = paths::workspace_root();
    for (pkg, bin) in [("homelab-lab", "homelab-lab"), ("k3s-sim", "k3s")] {
        if !paths::bin(bin).is_file() {
            let st = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", pkg, "--bin", bin])
                .status()
                .unwrap();
            assert!(st.success(), "cargo build -p {pkg} failed");
        }
    }
    // install.sh's offline "download" directory.
    let art = root.join("target/k3s-complete-example-artifacts");
    std::fs::create_dir_all(art.join(VERSION)).unwrap();
    std::fs::create_dir_all(art.join("channels")).unwrap();
    std::fs::copy(paths::bin("k3s"), art.join(VERSION).join("k3s")).unwrap();
    std::fs::write(art.join("channels/stable"), format!("{VERSION}\n")).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let mut spec = LabSpec::new("cplex");
    spec.servers = 3;
    spec.agents = 3;
    spec.root = Some(tmp.path().join("labs"));
    let guard = LabGuard(Some(Lab::up(&spec).unwrap()));
    let lab = guard.0.as_ref().unwrap();
    let emu = lab
        .emulator()
        .expect("the lab runs the OPNsense emulator")
        .clone();
    let creds = std::fs::read_to_string(&emu.credentials_file).unwrap();
    let secret = creds
        .lines()
        .find_map(|l| l.strip_prefix("secret="))
        .expect("secret= in the credentials file")
        .to_string();
    let vip = lab.state().vip.expect("lab VIP").to_string();
    let prefix = vip.rsplit_once('.').unwrap().0.to_string();

    let mut tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    tf.set_env("TF_VAR_opnsense_api_key", emu.api_key.clone())
        .set_env("TF_VAR_opnsense_api_secret", secret)
        .set_env("TF_VAR_k3s_token", "complete-example-cluster-secret")
        .set_timeout(std::time::Duration::from_secs(600));
    // The module is referenced as ../modules/k3s-ha from the example.
    let base = tf.workdir().parent().unwrap().to_path_buf();
    copy_tf(
        &root.join("examples/modules/k3s-ha"),
        &base.join("modules/k3s-ha"),
    );
    copy_tf(&root.join("examples/complete"), tf.workdir());
    tf.write_file(
        "lab.auto.tfvars",
        &format!(
            "opnsense_url = {}\nopnsense_ca_cert_file = {}\nssh_private_key_file = {}\nssh_known_hosts_file = {}\n\
             address_prefix = {}\nk3s_version = \"{VERSION}\"\ninstall_script_file = {}\n\
             install_env = {{ INSTALL_K3S_SIM_ARTIFACTS = {} }}\n",
            hcl_string(&emu.url),
            hcl_string(&emu.ca_file.display().to_string()),
            hcl_string(&lab.ssh_key().display().to_string()),
            hcl_string(&lab.known_hosts().display().to_string()),
            hcl_string(&prefix),
            hcl_string(&root.join("acceptance-tests/k3s-sim/install.sh").display().to_string()),
            hcl_string(&art.display().to_string()),
        ),
    )
    .unwrap();

    let ws = homelab_lab::ns::named_netns(&lab.state().ws_netns);
    let kc = tmp.path().join("kubeconfig.yaml");
    let worker = std::thread::spawn(move || {
        enter_netns(&ws);
        tf.run_ok(&["get", "-no-color"]).unwrap();
        let started = std::time::Instant::now();
        tf.apply(&[]).unwrap();
        eprintln!("complete example: apply took {:?}", started.elapsed());
        let plan = tf
            .run(&["plan", "-detailed-exitcode", "-no-color", "-input=false"])
            .unwrap();
        assert_eq!(
            plan.code,
            Some(0),
            "plan after apply is not empty:\n{}",
            plan.stdout
        );
        let out = tf.run_ok(&["output", "-raw", "kubeconfig"]).unwrap();
        std::fs::write(&kc, &out.stdout).unwrap();
        let text = out.stdout.clone();
        assert!(
            text.contains(&format!("server: https://{vip}:6443")),
            "kubeconfig server is not the VIP"
        );
        let nodes = run(
            Command::new("/usr/bin/kubectl")
                .arg("--kubeconfig")
                .arg(&kc)
                .args(["get", "nodes"]),
            "kubectl get nodes through the VIP",
        );
        for n in [
            "k8s-control-1",
            "k8s-control-2",
            "k8s-control-3",
            "k8s-worker-1",
            "k8s-worker-2",
            "k8s-worker-3",
        ] {
            assert!(
                nodes
                    .lines()
                    .any(|l| l.starts_with(n) && l.contains(" Ready ")),
                "{n} not Ready through the VIP:\n{nodes}"
            );
        }
        let lb = tf
            .run_ok(&["output", "-json", "agent_lb_server_addresses"])
            .unwrap();
        let lb = lb.stdout.clone();
        for ip in [".2:6443", ".7:6443", ".8:6443"] {
            assert!(
                lb.contains(&format!("{prefix}{ip}")),
                "agent LB lacks {prefix}{ip}: {lb}"
            );
        }
        let metrics = run(
            Command::new("curl")
                .args(["-fsS", "--max-time", "10"])
                .arg(format!("http://{vip}:8404/metrics")),
            "the HAProxy exporter",
        );
        let up = metrics
            .lines()
            .filter(|l| {
                l.starts_with("haproxy_server_status{")
                    && l.contains("state=\"UP\"")
                    && l.ends_with(" 1")
            })
            .count();
        assert_eq!(up, 3, "not every pool member is UP:\n{metrics}");
        tf.destroy().unwrap();
    });
    worker.join().expect("the complete example failed");
    drop(guard);
}
