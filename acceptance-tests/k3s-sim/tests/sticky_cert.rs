//! k8s-control-1's part of the seed, on loopback: a single sqlite-style server is reinstalled with
//! `--cluster-init --tls-san <VIP>` (migrating its datastore to a real etcd, keeping its node), real kubectl
//! through the VIP then fails with Go's `x509: certificate is valid for …, not <VIP>`, a restart with the SAN in
//! `config.yaml` does not help, and deleting `kube-system/k3s-serving` plus moving `dynamic-cert.json` aside then
//! restarting does. Then `k3s certificate rotate` adds a SAN that a restart alone did not.

mod common;
use common::*;

fn cache_sans(node: &Node) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(node.path("/var/lib/rancher/k3s/server/tls/dynamic-cert.json")).unwrap(),
    )
    .unwrap();
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(v["data"]["tls.crt"].as_str().unwrap())
        .unwrap();
    k3s_sim::pki::cert_sans(&String::from_utf8(pem).unwrap()).unwrap()
}

#[test]
fn tls_san_surprise_and_cure_after_sqlite_to_etcd_migration() {
    let net = "127.11.1";
    let vip = format!("{net}.100");
    let mut s1 = Node::new("k8s-control-1", &format!("{net}.2"));
    s1.start(
        "server",
        &[],
        &[("K3S_TOKEN", "X"), ("K3S_KUBECONFIG_MODE", "644")],
    );
    s1.wait_ready(30);
    let kc = s1.kubeconfig();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kc).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644);
    let out = kubectl_ok(&kc, &["get", "nodes"]);
    assert!(
        out.contains("control-plane,master") && !out.contains("etcd"),
        "{out}"
    );
    assert!(s1.path("/var/lib/rancher/k3s/server/db/state.db").exists());
    let created = kubectl_ok(
        &kc,
        &[
            "get",
            "node",
            "k8s-control-1",
            "-o",
            "jsonpath={.metadata.creationTimestamp}",
        ],
    );
    s1.stop();

    // Reinstall with --cluster-init and the VIP as tls-san (the seed's INSTALL_K3S_EXEC).
    std::fs::write(
        s1.path("/etc/rancher/k3s/config.yaml"),
        format!("token: X\ntls-san:\n  - {vip}\n"),
    )
    .unwrap();
    s1.start(
        "server",
        &[
            "--disable",
            "servicelb",
            "--tls-san",
            &vip,
            "--cluster-init",
        ],
        &[("K3S_TOKEN", "X")],
    );
    s1.wait_ready(60);
    assert!(
        s1.log().contains("Migrating content from sqlite to etcd"),
        "{}",
        s1.log()
    );
    assert!(s1.path("/var/lib/rancher/k3s/server/db/etcd/name").exists());
    let out = kubectl_ok(&kc, &["get", "nodes"]);
    assert!(out.contains("control-plane,etcd,master"), "{out}");
    let again = kubectl_ok(
        &kc,
        &[
            "get",
            "node",
            "k8s-control-1",
            "-o",
            "jsonpath={.metadata.creationTimestamp}",
        ],
    );
    assert_eq!(created, again, "the node was kept across the migration");

    // kubectl through the VIP: the cached serving cert does not carry it.
    let _fwd = Forwarder::start(&format!("{vip}:6443"), &format!("{net}.2:6443"));
    let vip_kc = s1.root().join("vip.yaml");
    kubeconfig_for(&kc, &format!("https://{vip}:6443"), &vip_kc);
    let o = kubectl(&vip_kc, &["get", "nodes"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(&format!(
            "x509: certificate is valid for 10.43.0.1, 127.0.0.1, {net}.2, ::1, not {vip}"
        )),
        "{err}"
    );

    // A plain restart with the SAN configured changes nothing.
    s1.stop();
    s1.start(
        "server",
        &["--cluster-init", "--tls-san", &vip],
        &[("K3S_TOKEN", "X"), ("K3S_URL", "https://192.0.2.222:6443")],
    );
    s1.wait_ready(60);
    assert!(s1.log().contains("ignoring --cluster-init and --server"));
    assert!(!kubectl(&vip_kc, &["get", "nodes"]).status.success());
    assert!(!cache_sans(&s1).contains(&vip));

    // The seed's cure: delete the Secret (through `k3s kubectl`), move the cache aside, restart.
    let o = s1.k3s(&[
        "kubectl",
        "-n",
        "kube-system",
        "delete",
        "secrets/k3s-serving",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::rename(
        s1.path("/var/lib/rancher/k3s/server/tls/dynamic-cert.json"),
        s1.root().join("dynamic-cert.json.aside"),
    )
    .unwrap();
    s1.stop();
    s1.start(
        "server",
        &["--cluster-init", "--tls-san", &vip],
        &[("K3S_TOKEN", "X")],
    );
    s1.wait_ready(60);
    let out = kubectl_ok(&vip_kc, &["get", "nodes"]);
    assert!(out.contains("k8s-control-1"), "{out}");
    assert!(
        kubectl_ok(&kc, &["-n", "kube-system", "get", "secret", "k3s-serving"])
            .contains("kubernetes.io/tls")
    );

    // A new SAN in a drop-in does not reach the cert on restart; `certificate rotate` (k3s stopped) does.
    std::fs::create_dir_all(s1.path("/etc/rancher/k3s/config.yaml.d")).unwrap();
    std::fs::write(
        s1.path("/etc/rancher/k3s/config.yaml.d/50-san.yaml"),
        "tls-san+:\n  - k3s.lab.example\n",
    )
    .unwrap();
    s1.stop();
    s1.start("server", &[], &[]);
    s1.wait_ready(60);
    assert!(!cache_sans(&s1).contains(&"k3s.lab.example".to_string()));
    s1.stop();
    let o = s1.k3s(&["certificate", "rotate", "--service", "k3s-server"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Successfully backed up certificates"),
        "{}",
        stderr(&o)
    );
    s1.start("server", &[], &[]);
    s1.wait_ready(60);
    let sans = cache_sans(&s1);
    assert!(
        sans.contains(&"k3s.lab.example".to_string()) && sans.contains(&vip),
        "{sans:?}"
    );
    // The old list is kept: rotation adds, never drops.
    assert!(sans.contains(&format!("{net}.2")));
    assert!(kubectl(&vip_kc, &["get", "nodes"]).status.success());
}
