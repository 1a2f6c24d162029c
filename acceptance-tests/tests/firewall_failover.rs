//! Issue 15's failover, as the seed did it by hand for a k3s server but for the firewall: `examples/complete` in its
//! HA form (a CARP VIP, the HA sync, the provider's `secondary` block) applied on a lab with two emulated OPNsense
//! boxes (`opnsense` 192.0.2.1 and `opnsense2` 192.0.2.3), then the primary powered off while `kubectl get nodes`
//! runs through the VIP in a loop. What it proves, with real Terraform, real haproxy on both boxes, real ssh and
//! the real kubectl:
//!
//! 1. one apply builds the pair; both `plan -refresh=false` and a refreshed plan are empty (the refresh reads both
//!    firewalls);
//! 2. with the primary off, the VIP moves to the secondary (CARP) and the secondary's haproxy, running the
//!    configuration the provider synced and deployed there, serves the k3s API: kubectl through the VIP recovers.
//!    The outage window (first failed kubectl to the first one that works again) is printed, not gated on;
//!    the test fails only if kubectl never recovers within a generous bound;
//! 3. the seed's own check while the secondary serves: k8s-control-1 drained and powered off, the agents keep
//!    posting heartbeats through the VIP; it comes back and every node is Ready again;
//! 4. the primary powered on again takes the VIP back (preemption, the HA settings' default), kubectl keeps
//!    working and the plans are empty again;
//! 5. destroy succeeds.

mod example_lab;

use std::time::{Duration, Instant};

use example_lab::*;
use homelab_acceptance::terraform::hcl_string;
use homelab_acceptance::{Terraform, TerraformVersion};
use homelab_lab::{Lab, LabSpec};

/// Whether `host` holds the VIP on its LAN interface (CARP adds the address on the MASTER only).
fn holds_vip(lab: &Lab, host: &str, vip: &str) -> bool {
    lab.exec(host, "ip -4 -o addr show eth0")
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{vip}/")))
        .unwrap_or(false)
}

/// Waits until the CARP VIP is on `holder` and not on the other load-balancer host.
fn wait_vip_on(lab: &Lab, vip: &str, holder: &str, what: &str) {
    let other = if holder == "opnsense" {
        "opnsense2"
    } else {
        "opnsense"
    };
    wait_for(what, Duration::from_secs(30), || {
        match (holds_vip(lab, holder, vip), holds_vip(lab, other, vip)) {
            (true, false) => Ok(()),
            held => Err(format!("({holder}, {other}) hold the VIP: {held:?}")),
        }
    });
}

#[test]
fn the_k3s_api_survives_the_primary_firewall_powering_off() {
    if !TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        return;
    }
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    let art = artifacts("firewall-failover");
    let tmp = tempfile::tempdir().unwrap();
    let mut spec = LabSpec::new("fwfail");
    spec.servers = 3;
    spec.agents = 3;
    spec.opnsense_pair = true;
    spec.root = Some(tmp.path().join("labs"));
    let guard = Lab::up_guarded(&spec).expect("lab up");
    let lab = guard.lab().clone();
    let emu = lab.emulator().unwrap().clone();
    let emu2 = lab.emulator2().unwrap().clone();
    assert_eq!(emu.url, "https://192.0.2.1");
    let (key, secret) = api_credentials(&lab);
    let (key2, secret2) = emulator_credentials(&emu2);
    let ha_password = std::fs::read_to_string(
        lab.state()
            .hasync_password_file
            .as_ref()
            .expect("the pair's HA sync password file"),
    )
    .unwrap()
    .trim()
    .to_string();
    let vip = lab.state().vip.expect("lab VIP").to_string();

    let mut tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    tf.set_env("TF_VAR_opnsense_api_key", key)
        .set_env("TF_VAR_opnsense_api_secret", secret)
        .set_env("TF_VAR_secondary_api_key", key2)
        .set_env("TF_VAR_secondary_api_secret", secret2)
        .set_env("TF_VAR_secondary_firewall_password", ha_password)
        .set_env("TF_VAR_carp_password", "failover-carp-pass")
        .set_env("TF_VAR_k3s_token", "failover-cluster-secret")
        .set_timeout(Duration::from_secs(600));
    copy_complete_example(&tf);
    tf.write_file(
        "lab.auto.tfvars",
        &format!(
            "{}health_check_interval = \"2s\"\n\
             secondary_firewall = {{\n  url = {}\n  ca_cert_file = {}\n  peer = {}\n  username = \"hasync\"\n  vhid = 3\n}}\n",
            lab_tfvars(&lab, &art),
            hcl_string(&emu2.url),
            hcl_string(&emu2.ca_file.display().to_string()),
            hcl_string(&emu2.url),
        ),
    )
    .unwrap();

    // 1. One apply builds the pair; plans are empty.
    let (tf, kubeconfig) = in_ws(&lab, move || {
        tf.run_ok(&["get", "-no-color"]).unwrap();
        tf.run_ok(&["apply", "-input=false", "-no-color", "-auto-approve"])
            .unwrap();
        tf.plans_empty()
            .unwrap_or_else(|e| panic!("after the apply: {e}"));
        let kc = tf.run_ok(&["output", "-raw", "kubeconfig"]).unwrap().stdout;
        (tf, kc)
    });
    let kc = tmp.path().join("kubeconfig.yaml");
    std::fs::write(&kc, &kubeconfig).unwrap();
    let nodes = node_ready(&lab, &kc).expect("kubectl through the VIP");
    assert_eq!(nodes.len(), 6, "{nodes:?}");

    wait_vip_on(
        &lab,
        &vip,
        "opnsense",
        "the primary holds the CARP VIP, the secondary does not",
    );

    // 2. Power the primary firewall off; kubectl through the VIP in a loop. A kubectl started while the VIP is
    // moving may fail, or may only be slow (its TCP connect is retried until the secondary answers): the outage
    // window is from the power-off to the end of the last call that failed or took over a second.
    let mut ctl = Lab::open_in(Some(&tmp.path().join("labs")), lab.name()).unwrap();
    let t_off = Instant::now();
    ctl.stop_host("opnsense").unwrap();
    let mut last_bad: Option<Duration> = None;
    let mut failures = 0;
    let mut tries = 0;
    let mut good_in_a_row = 0;
    while t_off.elapsed() < Duration::from_secs(90) && good_in_a_row < 8 {
        tries += 1;
        let t = Instant::now();
        let ok = node_ready(&lab, &kc).is_ok_and(|n| n.len() == 6);
        let took = t.elapsed();
        if !ok {
            failures += 1;
        }
        if !ok || took > Duration::from_secs(1) {
            last_bad = Some(t_off.elapsed());
            good_in_a_row = 0;
        } else {
            good_in_a_row += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        good_in_a_row >= 8,
        "kubectl through the VIP did not recover within 90 s of the primary's power-off ({failures} failures)"
    );
    eprintln!(
        "firewall failover: kubectl through the VIP was out or slow for {:?} after the primary's power-off \
         ({failures} failed calls of {tries})",
        last_bad.unwrap_or_default()
    );
    assert!(
        holds_vip(&lab, "opnsense2", &vip),
        "kubectl works but opnsense2 does not hold the VIP"
    );
    // Still answering, through the secondary.
    for _ in 0..3 {
        let nodes = node_ready(&lab, &kc).expect("kubectl through the VIP on the secondary");
        assert_eq!(nodes.len(), 6, "{nodes:?}");
    }

    // The seed's own check, now on the secondary firewall: drain and stop k8s-control-1; kubectl through the VIP
    // keeps working and the agents keep posting heartbeats; then it comes back and every node is Ready.
    let o = kubectl(
        &lab,
        &kc,
        &[
            "drain",
            "k8s-control-1",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=60s",
        ],
    );
    assert!(o.status.success(), "kubectl drain: {}", text(&o));
    let beats_before = heartbeats(&lab, &kc).expect("heartbeats before the power-off");
    ctl.stop_host("k8s-control-1").unwrap();
    let agents = ["k8s-worker-1", "k8s-worker-2", "k8s-worker-3"];
    wait_heartbeats_after(
        "agents post heartbeats with k8s-control-1 off, through the secondary",
        Duration::from_secs(60),
        &lab,
        &kc,
        &agents,
        &beats_before,
    );
    ctl.start_host("k8s-control-1").unwrap();
    let o = kubectl(&lab, &kc, &["uncordon", "k8s-control-1"]);
    assert!(o.status.success(), "kubectl uncordon: {}", text(&o));
    wait_for(
        "all six nodes Ready again",
        Duration::from_secs(90),
        || match node_ready(&lab, &kc) {
            Ok(n) if n.len() == 6 && n.values().all(|v| v == "True") => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // The agents relist it in their load balancers (the provider's refresh reads those lists, so the plans below
    // depend on it).
    let servers = ["k8s-control-1", "k8s-control-2", "k8s-control-3"];
    let server_addrs: Vec<String> = servers
        .iter()
        .map(|s| format!("{}:6443", lab.host(s).unwrap().ip))
        .collect();
    wait_agents_list(
        "every agent lists k8s-control-1 again",
        Duration::from_secs(60),
        &lab,
        &agents,
        &server_addrs,
    );

    // 3. The primary comes back: kubectl keeps working, the plans are empty (the refresh reads both boxes).
    ctl.start_host("opnsense").unwrap();
    wait_for(
        "the primary's API answers again",
        Duration::from_secs(60),
        || {
            let o = ws(&lab, "bash", &["-c", "exec 3<>/dev/tcp/192.0.2.1/443"]);
            if o.status.success() {
                Ok(())
            } else {
                Err("not answering".to_string())
            }
        },
    );
    wait_for(
        "kubectl through the VIP after the primary is back",
        Duration::from_secs(60),
        || node_ready(&lab, &kc).map(|_| ()),
    );
    // Preemption is on (the HA settings' default): the primary takes the VIP back.
    wait_vip_on(&lab, &vip, "opnsense", "the primary takes the VIP back");
    let tf = in_ws(&lab, move || {
        tf.plans_empty()
            .unwrap_or_else(|e| panic!("after the primary came back: {e}"));
        tf
    });

    // 4. Destroy.
    in_ws(&lab, move || {
        tf.run_ok(&["destroy", "-input=false", "-no-color", "-auto-approve"])
            .unwrap();
    });
    drop(guard);
}
