//! The seed's HA story on loopback: a first server with `--cluster-init` (real etcd), two joins with `server`
//! first through the first server (secure token, CA pinned), an agent registering through a "VIP" that is no
//! server (a TCP forwarder), real `kubectl get nodes`, the agent's load-balancer list, and the cluster surviving
//! the loss of the first server and of the VIP; then `delete node` removing the etcd member.

mod common;
use common::*;

use k3s_sim::pki::{parse_token, sha256_hex};

fn get(url: &str) -> (u16, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt
        .block_on(k3s_sim::http::request(
            "GET",
            url,
            &[],
            None,
            Some(&k3s_sim::http::Tls::insecure()),
        ))
        .unwrap();
    (r.status, r.text())
}

fn members(node: &Node) -> Vec<(String, bool)> {
    let (code, body) = get(&format!("{}/db/info", node.url()));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    k3s_sim::etcd::members_of(&v)
        .into_iter()
        .map(|m| (m.name, m.is_learner))
        .collect()
}

#[test]
fn seed_ha_story_on_loopback() {
    let net = "127.10.1";
    let mut s1 = Node::new("k8s-control-1", &format!("{net}.2"));
    s1.start(
        "server",
        &["--cluster-init", "--tls-san", &format!("{net}.100")],
        &[("K3S_TOKEN", "short-secret")],
    );
    s1.wait_ready(60);

    // Token forms, unauthenticated /ping and /cacerts, 401 elsewhere.
    let token = s1.token();
    let (code, ca) = get(&format!("{}/cacerts", s1.url()));
    assert_eq!(code, 200);
    assert_eq!(
        token,
        format!("K10{}::server:short-secret", sha256_hex(ca.as_bytes()))
    );
    assert_eq!(get(&format!("{}/ping", s1.url())), (200, "pong".into()));
    assert_eq!(get(&format!("{}/readyz", s1.url())).0, 401);
    assert_eq!(get(&format!("{}/api/v1/nodes", s1.url())).0, 401);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(s1.kubeconfig()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    assert!(s1.path("/var/lib/rancher/k3s/server/db/etcd/name").exists());

    // A wrong CA hash is refused before anything is trusted.
    let mut bad = Node::new("intruder", &format!("{net}.9"));
    let forged = format!("K10{}::server:short-secret", "0".repeat(64));
    bad.start(
        "server",
        &["--server", &s1.url()],
        &[("K3S_TOKEN", &forged)],
    );
    assert_eq!(bad.wait_exit(30), 1);
    assert!(
        bad.log()
            .contains("token CA hash does not match the Cluster CA certificate hash"),
        "{}",
        bad.log()
    );

    // A joiner whose critical settings differ is refused.
    let mut odd = Node::new("odd", &format!("{net}.10"));
    odd.start(
        "server",
        &["--server", &s1.url(), "--disable", "servicelb"],
        &[("K3S_TOKEN", &token)],
    );
    assert_eq!(odd.wait_exit(30), 1);
    assert!(
        odd.log()
            .contains("critical configuration value mismatch between servers: disable=servicelb"),
        "{}",
        odd.log()
    );

    // Two joins, one at a time, with the secure token, through the first server.
    let mut s2 = Node::new("k8s-control-2", &format!("{net}.7"));
    s2.start(
        "server",
        &["--tls-san", &format!("{net}.100")],
        &[("K3S_TOKEN", &token), ("K3S_URL", &s1.url())],
    );
    s2.wait_ready(90);
    let mut s3 = Node::new("k8s-control-3", &format!("{net}.8"));
    s3.start(
        "server",
        &["--server", &s1.url(), "--tls-san", &format!("{net}.100")],
        &[("K3S_TOKEN", &token)],
    );
    s3.wait_ready(90);
    let m = members(&s1);
    assert_eq!(m.len(), 3, "{m:?}");
    assert!(m.iter().all(|(_, learner)| !learner), "{m:?}");
    assert!(s2.log().contains("to etcd cluster"), "{}", s2.log());
    let o = s2.k3s(&["etcd-snapshot", "save", "--name", "pre-upgrade"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let snaps: Vec<_> = std::fs::read_dir(s2.path("/var/lib/rancher/k3s/server/db/snapshots"))
        .unwrap()
        .collect();
    assert_eq!(snaps.len(), 1);

    let kc = s1.kubeconfig();
    let out = kubectl_ok(&kc, &["get", "nodes"]);
    for n in ["k8s-control-1", "k8s-control-2", "k8s-control-3"] {
        let line = out
            .lines()
            .find(|l| l.starts_with(n))
            .unwrap_or_else(|| panic!("{n} missing:\n{out}"));
        assert!(
            line.contains(" Ready ")
                && line.contains("control-plane,etcd,master")
                && line.contains(k3s_sim::VERSION),
            "{line}"
        );
    }

    // An agent registers through the VIP (a forwarder to the first server only).
    let vip = format!("{net}.100:6443");
    let fwd = Forwarder::start(&vip, &format!("{net}.2:6443"));
    let mut a1 = Node::new("k8s-worker-1", &format!("{net}.21"));
    a1.start(
        "agent",
        &[],
        &[
            ("K3S_TOKEN", &token),
            ("K3S_URL", &format!("https://{vip}")),
        ],
    );
    a1.wait_ready(60);
    let lb_file = a1.path("/var/lib/rancher/k3s/agent/etc/k3s-agent-load-balancer.json");
    let lb: serde_json::Value = serde_json::from_slice(&std::fs::read(&lb_file).unwrap()).unwrap();
    assert_eq!(lb["ServerURL"], format!("https://{vip}"));
    let servers: Vec<String> = ["2", "7", "8"]
        .iter()
        .map(|o| format!("{net}.{o}:6443"))
        .collect();
    assert_eq!(lb["ServerAddresses"], serde_json::json!(servers));
    let log = a1.log();
    assert!(
        log.contains(&format!(
            "Adding server to load balancer k3s-agent-load-balancer: {vip}"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Adding server to load balancer k3s-agent-load-balancer: {net}.7:6443"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Removing server from load balancer k3s-agent-load-balancer: {vip}"
        )),
        "{log}"
    );
    assert!(a1.path("/etc/rancher/node/password").exists());
    let out = kubectl_ok(&kc, &["get", "nodes"]);
    let line = out
        .lines()
        .find(|l| l.starts_with("k8s-worker-1"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains("<none>") && line.contains("Ready"), "{line}");
    // Another host claiming the same node name has another node password: rejected.
    let mut dup = Node::new("k8s-worker-1", &format!("{net}.22"));
    dup.start("agent", &["--server", &s1.url()], &[("K3S_TOKEN", &token)]);
    eventually(20, "the duplicate to be rejected", || {
        dup.log().contains("Node password rejected")
    });
    dup.stop();
    let secrets = kubectl_ok(&kc, &["-n", "kube-system", "get", "secrets"]);
    assert!(
        secrets.contains("k8s-worker-1.node-password.k3s") && secrets.contains("k3s-serving"),
        "{secrets}"
    );

    // Lose the VIP and the first server: the agent keeps talking to the others and drops the dead one.
    fwd.stop();
    s1.stop();
    let kc2 = s2.kubeconfig();
    let hb = |kc: &std::path::Path| {
        kubectl_ok(
            kc,
            &[
                "get",
                "node",
                "k8s-worker-1",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].lastHeartbeatTime}",
            ],
        )
    };
    let before = hb(&kc2);
    eventually(40, "agent to drop the first server", || {
        a1.log().contains(&format!(
            "Removing server from load balancer k3s-agent-load-balancer: {net}.2:6443"
        ))
    });
    eventually(20, "a heartbeat through the remaining servers", || {
        hb(&kc2) != before
    });
    let lb: serde_json::Value = serde_json::from_slice(&std::fs::read(&lb_file).unwrap()).unwrap();
    assert_eq!(lb["ServerAddresses"], serde_json::json!(servers[1..]));

    // A restarted agent comes up from its cache although the VIP is gone.
    a1.stop();
    a1.start(
        "agent",
        &[],
        &[
            ("K3S_TOKEN", &token),
            ("K3S_URL", &format!("https://{vip}")),
        ],
    );
    a1.wait_ready(30);

    // cordon + drain of an empty node, then delete the dead server: its etcd member goes too.
    kubectl_ok(&kc2, &["cordon", "k8s-worker-1"]);
    let out = kubectl_ok(
        &kc2,
        &[
            "drain",
            "k8s-worker-1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=30s",
        ],
    );
    assert!(out.contains("drained"), "{out}");
    assert!(kubectl_ok(&kc2, &["get", "nodes"]).contains("Ready,SchedulingDisabled"));
    let out = kubectl_ok(&kc2, &["delete", "node", "k8s-control-1"]);
    assert!(out.contains("node \"k8s-control-1\" deleted"), "{out}");
    let m = members(&s2);
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(
        m.iter().all(|(n, _)| !n.starts_with("k8s-control-1")),
        "{m:?}"
    );

    // Deleting a running agent's Node: it registers again (k3s-io/k3s#2770).
    kubectl_ok(&kc2, &["delete", "node", "k8s-worker-1"]);
    eventually(20, "the running agent to re-register", || {
        kubectl_ok(&kc2, &["get", "nodes"]).contains("k8s-worker-1")
    });

    // The removed member cannot come back with its old data (k3s-io/k3s#13498).
    s1.start(
        "server",
        &["--cluster-init"],
        &[("K3S_TOKEN", "short-secret")],
    );
    assert_eq!(s1.wait_exit(40), 1);
    assert!(s1.log().contains("permanently removed"), "{}", s1.log());
    assert!(
        s1.log().contains("ignoring --cluster-init and --server"),
        "{}",
        s1.log()
    );
    assert_eq!(parse_token(&token).password, "short-secret");
}

/// Only one learner at a time: while another learner is pending, etcd refuses the join with "too many learner
/// members in cluster" and the joiner keeps retrying (as k3s since #7351); it joins once the learner is gone.
#[test]
fn one_learner_at_a_time() {
    let net = "127.10.2";
    let mut s1 = Node::new("c1", &format!("{net}.2"));
    s1.start("server", &["--cluster-init"], &[("K3S_TOKEN", "t")]);
    s1.wait_ready(60);
    let etcd = k3s_sim::etcd::EtcdClient::new(vec![format!("http://{net}.2:2379")]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A learner that never starts (another node stuck mid-join).
    let stuck = rt
        .block_on(etcd.member_add(&format!("http://{net}.50:2380"), true))
        .unwrap();
    let mut s2 = Node::new("c2", &format!("{net}.7"));
    s2.start(
        "server",
        &["--server", &s1.url()],
        &[("K3S_TOKEN", &s1.token())],
    );
    eventually(30, "the learner limit to be hit", || {
        s2.log().contains("too many learner members in cluster")
    });
    assert!(s2.running());
    rt.block_on(etcd.member_remove(stuck)).unwrap();
    s2.wait_ready(60);
    assert_eq!(members(&s1).len(), 2);
    // The remove annotation takes the member out without deleting the Node (k3s-io/k3s#9817); c2's etcd stops.
    // etcd may refuse ("unhealthy cluster") while the new member is too fresh; k3s retries, so do we.
    eventually(40, "the member removal", || {
        let o = kubectl(
            &s1.kubeconfig(),
            &[
                "annotate",
                "--overwrite",
                "node",
                "c2",
                "etcd.k3s.cattle.io/remove=true",
            ],
        );
        if !o.status.success() {
            eprintln!("{}", stderr(&o));
        }
        o.status.success()
    });
    assert_eq!(members(&s1).len(), 1);
    assert_eq!(s2.wait_exit(30), 1);
    assert!(kubectl_ok(&s1.kubeconfig(), &["get", "nodes"]).contains("c2"));
}
