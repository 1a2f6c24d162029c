//! The seed's story end to end in the host lab, through real ssh, real sudo-less root sessions, the lab's systemd
//! stand-in (Type=notify, journal), real HAProxy as the VIP (in the workstation namespace, the seed's config) and
//! real kubectl: k8s-control-1 installed as a single server, reinstalled with `--cluster-init --tls-san <VIP>`
//! (migrated to etcd), the x509 surprise through the VIP and its cure, two joins with `server` first through
//! k8s-control-1, workers through the VIP, the agents' load-balancer list and journal lines, and the cluster
//! (and the workers) surviving the loss of k8s-control-1.
//!
//! Needs root (namespaces) and the `homelab-lab` binary (built on demand).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use homelab_lab::{Lab, LabSpec};

mod common;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/install.sh");
const VIP: &str = "192.0.2.50";
/// The version k8s-control-2 is upgraded to.
const NEXT: &str = "v1.31.6+k3s1";

struct Guard {
    lab: Option<Lab>,
    haproxy: Option<Child>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut h) = self.haproxy.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        if let Some(lab) = self.lab.take() {
            let _ = lab.down();
        }
    }
}

fn ssh(lab: &Lab, host: &str, script: &str, stdin: &str) -> Output {
    let mut child = lab
        .ssh_command(host, "root")
        .unwrap()
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ssh_ok(lab: &Lab, host: &str, script: &str, stdin: &str) -> String {
    let o = ssh(lab, host, script, stdin);
    assert!(o.status.success(), "{host}: {script}\n{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("timed out after {secs}s waiting for {what}");
}

fn kubectl(lab: &Lab, kubeconfig: &Path, args: &[&str]) -> Output {
    lab.ws_command("/usr/bin/kubectl")
        .unwrap()
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap()
}

fn haproxy(lab: &Lab, dir: &Path, servers: &[(&str, &str)]) -> Child {
    let mut cfg = String::from(
        "defaults\n  mode tcp\n  timeout connect 2s\n  timeout client 60s\n  timeout server 60s\n\
         frontend k3s-controlplane\n  bind 192.0.2.50:6443\n  default_backend k3s-controlplane\n\
         backend k3s-controlplane\n  balance roundrobin\n",
    );
    for (name, ip) in servers {
        cfg.push_str(&format!(
            "  server {name} {ip}:6443 check inter 1s fall 1 rise 1\n"
        ));
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, cfg).unwrap();
    lab.ws_command("/usr/sbin/haproxy")
        .unwrap()
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The artifact directory install.sh "downloads" from: under the target dir, which lab hosts can read.
fn artifacts() -> PathBuf {
    let target = Path::new(common::K3S).parent().unwrap().parent().unwrap();
    let dir = target.join("k3s-sim-lab-artifacts");
    let v = dir.join(k3s_sim::VERSION);
    std::fs::create_dir_all(&v).unwrap();
    std::fs::create_dir_all(dir.join("channels")).unwrap();
    let tmp = v.join("k3s.tmp");
    std::fs::copy(common::K3S, &tmp).unwrap();
    std::fs::rename(&tmp, v.join("k3s")).unwrap();
    std::fs::write(
        dir.join("channels/stable"),
        format!("{}\n", k3s_sim::VERSION),
    )
    .unwrap();
    let next = dir.join(NEXT);
    std::fs::create_dir_all(&next).unwrap();
    std::fs::write(next.join("k3s.tmp"), common::with_version(NEXT)).unwrap();
    std::fs::rename(next.join("k3s.tmp"), next.join("k3s")).unwrap();
    dir
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

#[test]
fn seed_story_in_the_lab() {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    lab_binary();
    let art = artifacts();
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = LabSpec::new("k3ssim");
    spec.agents = 2;
    spec.opnsense = false;
    spec.root = Some(tmp.path().join("labs"));
    let mut g = Guard {
        lab: Some(Lab::up(&spec).unwrap()),
        haproxy: None,
    };
    let lab = g.lab.as_ref().unwrap();
    let hosts = [
        "k8s-control-1",
        "k8s-control-2",
        "k8s-control-3",
        "k8s-worker-1",
        "k8s-worker-2",
    ];
    let script = std::fs::read_to_string(SCRIPT).unwrap();
    for h in hosts {
        ssh_ok(
            lab,
            h,
            "cat > /usr/local/bin/k3s-install.sh && chmod 755 /usr/local/bin/k3s-install.sh",
            &script,
        );
    }
    let install = |host: &str, env: &str, token: &str| {
        // The token travels on stdin, never in argv.
        let cmd = format!(
            "read -r K3S_TOKEN; export K3S_TOKEN; INSTALL_K3S_SIM_ARTIFACTS={} {env} K3S_NODE_NAME={host} sh /usr/local/bin/k3s-install.sh",
            art.display()
        );
        ssh_ok(lab, host, &cmd, &format!("{token}\n"))
    };

    // k8s-control-1 as it was: a single server.
    install("k8s-control-1", "", "X");
    let nodes = ssh_ok(lab, "k8s-control-1", "k3s kubectl get nodes", "");
    assert!(nodes.contains("control-plane,master"), "{nodes}");

    // The seed's reinstall with cluster-init and the VIP as tls-san.
    g.haproxy = Some(haproxy(lab, tmp.path(), &[("k8s-control-1", "192.0.2.2")]));
    let lab = g.lab.as_ref().unwrap();
    let out = install(
        "k8s-control-1",
        "INSTALL_K3S_EXEC='--disable servicelb --tls-san 192.0.2.50 --cluster-init'",
        "X",
    );
    assert!(out.contains("systemd: Starting k3s"), "{out}");
    let nodes = ssh_ok(lab, "k8s-control-1", "k3s kubectl get nodes", "");
    assert!(nodes.contains("control-plane,etcd,master"), "{nodes}");
    ssh_ok(
        lab,
        "k8s-control-1",
        "printf 'token: X\\ntls-san:\\n  - 192.0.2.50\\n' > /etc/rancher/k3s/config.yaml",
        "",
    );

    // Through the VIP: the surprise.
    let kc = tmp.path().join("vip.yaml");
    let raw = ssh_ok(lab, "k8s-control-1", "cat /etc/rancher/k3s/k3s.yaml", "");
    std::fs::write(
        &kc,
        raw.replace("https://127.0.0.1:6443", &format!("https://{VIP}:6443")),
    )
    .unwrap();
    let o = kubectl(lab, &kc, &["get", "nodes"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(
            "x509: certificate is valid for 10.43.0.1, 127.0.0.1, 192.0.2.2, ::1, not 192.0.2.50"
        ),
        "{}",
        text(&o)
    );
    // The cure from the seed.
    ssh_ok(
        lab,
        "k8s-control-1",
        "k3s kubectl -n kube-system delete secrets/k3s-serving && mv /var/lib/rancher/k3s/server/tls/dynamic-cert.json /tmp/dynamic-cert.json && systemctl restart k3s",
        "",
    );
    let o = kubectl(lab, &kc, &["get", "nodes"]);
    assert!(o.status.success(), "{}", text(&o));

    // Joins with `server` first, through k8s-control-1.
    let token = ssh_ok(
        lab,
        "k8s-control-1",
        "cat /var/lib/rancher/k3s/server/token",
        "",
    )
    .trim()
    .to_string();
    assert!(
        token.starts_with("K10") && token.ends_with("::server:X"),
        "token form"
    );
    for h in ["k8s-control-2", "k8s-control-3"] {
        install(h, "K3S_URL=https://192.0.2.2:6443 INSTALL_K3S_EXEC='server --disable servicelb --tls-san 192.0.2.50'", &token);
    }
    let mut hp = g.haproxy.take().unwrap();
    let _ = hp.kill();
    let _ = hp.wait();
    let lab = g.lab.as_ref().unwrap();
    g.haproxy = Some(haproxy(
        lab,
        tmp.path(),
        &[
            ("k8s-control-1", "192.0.2.2"),
            ("k8s-control-2", "192.0.2.7"),
            ("k8s-control-3", "192.0.2.8"),
        ],
    ));
    let lab = g.lab.as_ref().unwrap();

    // Workers through the VIP.
    for h in ["k8s-worker-1", "k8s-worker-2"] {
        install(h, "K3S_URL=https://192.0.2.50:6443", &token);
    }
    let env = ssh_ok(
        lab,
        "k8s-worker-1",
        "cat /etc/systemd/system/k3s-agent.service.env",
        "",
    );
    assert!(
        env.contains("K3S_URL='https://192.0.2.50:6443'"),
        "env file"
    );
    let o = kubectl(lab, &kc, &["get", "nodes"]);
    let nodes = text(&o);
    for h in hosts {
        assert!(nodes.contains(h), "{nodes}");
    }
    assert_eq!(
        nodes.matches("control-plane,etcd,master").count(),
        3,
        "{nodes}"
    );
    assert_eq!(nodes.matches("<none>").count(), 2, "{nodes}");

    // What the seed saw after restarting a worker.
    ssh_ok(lab, "k8s-worker-1", "systemctl restart k3s-agent", "");
    let journal = ssh_ok(lab, "k8s-worker-1", "journalctl -u k3s-agent", "");
    for line in [
        "Adding server to load balancer k3s-agent-load-balancer: 192.0.2.50:6443",
        "Adding server to load balancer k3s-agent-load-balancer: 192.0.2.7:6443",
        "Removing server from load balancer k3s-agent-load-balancer: 192.0.2.50:6443",
        "Running load balancer k3s-agent-load-balancer 127.0.0.1:6444 -> [192.0.2.2:6443 192.0.2.7:6443 192.0.2.8:6443] [default: 192.0.2.50:6443]",
    ] {
        assert!(journal.contains(line), "missing {line:?} in\n{journal}");
    }
    let lbjson = ssh_ok(
        lab,
        "k8s-worker-1",
        "cat /var/lib/rancher/k3s/agent/etc/k3s-agent-load-balancer.json",
        "",
    );
    assert!(
        lbjson.contains("\"ServerURL\": \"https://192.0.2.50:6443\""),
        "{lbjson}"
    );

    // Upgrade k8s-control-2 by re-running the installer with the same settings and a new version.
    let out = install(
        "k8s-control-2",
        &format!("INSTALL_K3S_VERSION={NEXT} K3S_URL=https://192.0.2.2:6443 INSTALL_K3S_EXEC='server --disable servicelb --tls-san 192.0.2.50'"),
        &token,
    );
    assert!(
        out.contains("Installing k3s to /usr/local/bin/k3s"),
        "{out}"
    );
    let nodes = text(&kubectl(lab, &kc, &["get", "nodes"]));
    let line = nodes
        .lines()
        .find(|l| l.starts_with("k8s-control-2"))
        .unwrap_or_default()
        .to_string();
    assert!(line.contains(NEXT) && line.contains(" Ready "), "{nodes}");

    // Lose k8s-control-1: the cluster and the workers keep working.
    g.lab.as_mut().unwrap().stop_host("k8s-control-1").unwrap();
    let lab = g.lab.as_ref().unwrap();
    eventually(60, "the workers to drop k8s-control-1", || {
        text(&ssh(lab, "k8s-worker-1", "journalctl -u k3s-agent", ""))
            .contains("Removing server from load balancer k3s-agent-load-balancer: 192.0.2.2:6443")
    });
    let o = kubectl(lab, &kc, &["get", "nodes"]);
    assert!(o.status.success(), "{}", text(&o));
    let hb = || {
        let o = kubectl(
            lab,
            &kc,
            &[
                "get",
                "node",
                "k8s-worker-2",
                "-o",
                "jsonpath={.status.conditions[0].lastHeartbeatTime}",
            ],
        );
        text(&o)
    };
    let before = hb();
    eventually(20, "worker heartbeats without k8s-control-1", || {
        hb() != before
    });

    // k8s-control-1 boots again: its enabled unit starts, it rejoins etcd with its data, the workers take it back.
    g.lab.as_mut().unwrap().start_host("k8s-control-1").unwrap();
    let lab = g.lab.as_ref().unwrap();
    eventually(
        90,
        "k8s-control-1 back in the workers' load balancer",
        || {
            let j = text(&ssh(lab, "k8s-worker-1", "journalctl -u k3s-agent", ""));
            let removed = j.rfind(
                "Removing server from load balancer k3s-agent-load-balancer: 192.0.2.2:6443",
            );
            let added =
                j.rfind("Adding server to load balancer k3s-agent-load-balancer: 192.0.2.2:6443");
            matches!((removed, added), (Some(r), Some(a)) if a > r)
        },
    );
    let nodes = text(&kubectl(lab, &kc, &["get", "nodes"]));
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("k8s-control-1") && l.contains(" Ready ")),
        "{nodes}"
    );

    // Uninstall really removes a worker's k3s.
    ssh_ok(
        lab,
        "k8s-worker-2",
        "/usr/local/bin/k3s-agent-uninstall.sh",
        "",
    );
    let left = ssh(
        lab,
        "k8s-worker-2",
        "ls /usr/local/bin/k3s /etc/systemd/system/k3s-agent.service /var/lib/rancher/k3s",
        "",
    );
    assert!(!left.status.success(), "{}", text(&left));
}
