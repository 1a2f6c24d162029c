//! The seed's claims about its finished topology, proven on `examples/complete` (through
//! `examples/modules/k3s-ha`) with real Terraform, a real haproxy (the emulated OPNsense on the lab's load
//! balancer host), real ssh and the real kubectl:
//!
//! 1. one apply builds it, and both `plan -refresh=false` and a refreshed plan are empty afterwards;
//! 2. `kubectl get nodes` through the VIP shows the six nodes Ready, the agents' client-side load balancers list
//!    the three servers, HAProxy's pool is UP;
//! 3. the exporter's `/metrics` counts the VIP traffic: N API requests through the VIP raise the frontend's
//!    connection counter by N;
//! 4. powering k8s-control-1 off (the seed drained and shut it down): HAProxy marks it DOWN, kubectl through the
//!    VIP keeps working, the agents keep posting heartbeats and drop it from their load-balancer list;
//! 5. powering it on heals: UP again, the agents list it again (read the way the provider reads it: a refresh),
//!    plans empty again;
//! 6. destroy leaves OPNsense as it found it (the emulator's saved configuration equals the fresh box's) and the
//!    hosts without k3s files, units or processes.
//!
//! Why a test and not only `acceptance-tests/dev example`: the example is what a new user runs first; it must not
//! rot when resources change. The test shortens HAProxy's health-check interval to 2 s (the module's
//! `health_check_interval`; the seed used 10 s) so that DOWN/UP take seconds, not half a minute. It runs under
//! Terraform 1.15.5; the same story under 1.0.3 (the module's oldest promised version) runs with the soak tests.

mod example_lab;

use std::time::{Duration, Instant};

use example_lab::*;
use homelab_acceptance::{paths, Terraform, TerraformVersion};
use homelab_lab::Lab;

const SERVERS: [&str; 3] = ["k8s-control-1", "k8s-control-2", "k8s-control-3"];
const AGENTS: [&str; 3] = ["k8s-worker-1", "k8s-worker-2", "k8s-worker-3"];
/// The frontend's name in haproxy (and so the exporter's `proxy` label): the module's `<prefix>-controlplane`.
const FRONTEND: &str = "k3s-controlplane";

fn all_ready(lab: &Lab, kc: &std::path::Path) -> Result<(), String> {
    let nodes = node_ready(lab, kc)?;
    for n in SERVERS.iter().chain(AGENTS.iter()) {
        if nodes.get(*n).map(String::as_str) != Some("True") {
            return Err(format!("{n} not Ready: {nodes:?}"));
        }
    }
    Ok(())
}

#[test]
fn complete_example_builds_fails_over_heals_and_destroys_clean() {
    if TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        complete_example(TerraformVersion::V1_15, "cplex");
    }
}

/// The module and the example promise Terraform >= 1.0: the same story under 1.0.3. About as long again as the
/// 1.15.5 run, so it runs with the long tests (`acceptance-tests/dev test --soak`).
#[test]
fn complete_example_under_terraform_1_0() {
    if paths::soak() && TerraformVersion::selected().contains(&TerraformVersion::V1_0) {
        complete_example(TerraformVersion::V1_0, "cplex10");
    }
}

fn complete_example(version: TerraformVersion, lab_name: &str) {
    let t_all = Instant::now();
    let art = artifacts(&format!("complete-example-{lab_name}"));
    let tmp = tempfile::tempdir().unwrap();
    let guard = lab_up(lab_name, &tmp.path().join("labs"));
    let lab = guard.lab().clone();
    let (key, secret) = api_credentials(&lab);
    let vip = lab.state().vip.expect("lab VIP").to_string();
    let ip_of = |host: &str| lab.host(host).unwrap().ip.to_string();

    let mut tf = Terraform::new(version).unwrap();
    tf.set_env("TF_VAR_opnsense_api_key", key)
        .set_env("TF_VAR_opnsense_api_secret", secret)
        .set_env("TF_VAR_k3s_token", "complete-example-cluster-secret")
        .set_timeout(Duration::from_secs(600));
    copy_complete_example(&tf);
    tf.write_file(
        "lab.auto.tfvars",
        &format!("{}health_check_interval = \"2s\"\n", lab_tfvars(&lab, &art)),
    )
    .unwrap();

    // The fresh box, to compare with after destroy.
    let fresh_opnsense = emulator_config(&lab);

    // 1. One apply builds it; plans are empty afterwards.
    let (tf, apply_time, kubeconfig) = in_ws(&lab, move || {
        tf.run_ok(&["get", "-no-color"]).unwrap();
        let t0 = Instant::now();
        tf.run_ok(&["apply", "-input=false", "-no-color", "-auto-approve"])
            .unwrap();
        let took = t0.elapsed();
        tf.plans_empty()
            .unwrap_or_else(|e| panic!("after the apply: {e}"));
        let kc = tf.run_ok(&["output", "-raw", "kubeconfig"]).unwrap().stdout;
        (tf, took, kc)
    });
    eprintln!("complete example ({version}): apply took {apply_time:?}");
    assert!(
        kubeconfig.contains(&format!("server: https://{vip}:6443")),
        "the kubeconfig output does not point at the VIP"
    );
    let kc = tmp.path().join("kubeconfig.yaml");
    std::fs::write(&kc, &kubeconfig).unwrap();
    let creds = client_creds(&kubeconfig, &tmp.path().join("creds"));

    // 2. kubectl through the VIP, the agents' LB lists, the pool UP.
    all_ready(&lab, &kc).unwrap();
    let server_addrs: Vec<String> = SERVERS
        .iter()
        .map(|s| format!("{}:6443", ip_of(s)))
        .collect();
    for a in AGENTS {
        let (url, addrs) = agent_lb(&lab, a).expect("agent LB file");
        assert_eq!(
            url,
            format!("https://{vip}:6443"),
            "{a} registers through the VIP"
        );
        assert_eq!(addrs, server_addrs, "{a}'s load balancer");
    }
    let exporter = format!("http://{vip}:8404/metrics");
    let m = metrics(&lab, &exporter);
    assert_eq!(servers_in_state(&m, "UP"), SERVERS.to_vec(), "pool:\n{m}");

    // 3. The exporter counts the VIP traffic: N requests = N new connections through the frontend.
    let counter = |m: &str| {
        metric(
            m,
            "haproxy_frontend_connections_total",
            &[&format!("proxy=\"{FRONTEND}\"")],
        )
        .unwrap_or_else(|| panic!("no connection counter for {FRONTEND}:\n{m}"))
    };
    let before = counter(&metrics(&lab, &exporter));
    const N: u32 = 7;
    for _ in 0..N {
        api_get(&lab, &creds, &format!("https://{vip}:6443/version"), true).unwrap();
    }
    let after = counter(&metrics(&lab, &exporter));
    assert_eq!(
        after - before,
        f64::from(N),
        "{N} requests through the VIP moved haproxy_frontend_connections_total from {before} to {after}"
    );

    // 4. Power k8s-control-1 off.
    let beats_before = heartbeats(&lab, &kc).expect("heartbeats before the power-off");
    let mut ctl = Lab::open_in(Some(&tmp.path().join("labs")), lab.name()).unwrap();
    let t_stop = Instant::now();
    ctl.stop_host("k8s-control-1").unwrap();
    let (_, down_after) = wait_for(
        "HAProxy marks k8s-control-1 DOWN",
        Duration::from_secs(40),
        || {
            let m = try_metrics(&lab, &exporter)?;
            if servers_in_state(&m, "DOWN") == ["k8s-control-1"] {
                Ok(())
            } else {
                Err(format!("UP {:?}", servers_in_state(&m, "UP")))
            }
        },
    );
    eprintln!("complete example ({version}): k8s-control-1 DOWN in HAProxy {down_after:?} after power-off");
    // kubectl through the VIP keeps working, every time.
    for _ in 0..3 {
        let nodes = node_ready(&lab, &kc).expect("kubectl through the VIP with k8s-control-1 off");
        assert!(nodes.len() == 6, "{nodes:?}");
    }
    let gone = format!("{}:6443", ip_of("k8s-control-1"));
    wait_for(
        "every agent drops k8s-control-1 from its load balancer",
        Duration::from_secs(60),
        || {
            for a in AGENTS {
                let (_, addrs) = agent_lb(&lab, a).ok_or(format!("{a}: no LB file"))?;
                if addrs.contains(&gone) {
                    return Err(format!("{a} still lists {gone}: {addrs:?}"));
                }
                if addrs.len() != 2 {
                    return Err(format!("{a} lists {addrs:?}"));
                }
            }
            Ok(())
        },
    );
    eprintln!(
        "complete example ({version}): agents dropped k8s-control-1 {:?} after power-off",
        t_stop.elapsed()
    );
    // (The provider reads the same file; a refresh cannot run now: the agents' resources depend on k8s-control-1's,
    // which cannot be reached. After the heal below, the refreshed state is checked.)
    // The agents keep working: their heartbeats (posted through their own load balancer) move on.
    wait_heartbeats_after(
        "agents post heartbeats with k8s-control-1 off",
        Duration::from_secs(30),
        &lab,
        &kc,
        &AGENTS,
        &beats_before,
    );
    for a in AGENTS {
        assert_eq!(
            lab.systemctl(a, &["is-active", "k3s-agent"])
                .unwrap()
                .stdout
                .trim(),
            "active",
            "{a}'s agent"
        );
    }

    // 5. Power it back on: HAProxy UP again, the agents list it again, the cluster is whole, plans empty.
    let t_start = Instant::now();
    ctl.start_host("k8s-control-1").unwrap();
    let (_, up_after) = wait_for(
        "HAProxy marks k8s-control-1 UP",
        Duration::from_secs(60),
        || {
            let m = try_metrics(&lab, &exporter)?;
            let up = servers_in_state(&m, "UP");
            if up == SERVERS.to_vec() {
                Ok(())
            } else {
                Err(format!("UP {up:?}"))
            }
        },
    );
    let listed_after = wait_agents_list(
        "every agent lists k8s-control-1 again",
        Duration::from_secs(60),
        &lab,
        &AGENTS,
        &server_addrs,
    );
    wait_for(
        "all six nodes Ready through the VIP",
        Duration::from_secs(60),
        || all_ready(&lab, &kc),
    );
    eprintln!(
        "complete example ({version}): after power-on, UP in {up_after:?}, agents relisted it in {:?} (total {:?})",
        listed_after,
        t_start.elapsed()
    );

    let tf = in_ws(&lab, move || {
        // What the provider reads: the refreshed state's agent LB lists name all three servers again.
        tf.run_ok(&[
            "apply",
            "-refresh-only",
            "-auto-approve",
            "-input=false",
            "-no-color",
        ])
        .unwrap();
        let lb = tf
            .run_ok(&["output", "-json", "agent_lb_server_addresses"])
            .unwrap()
            .stdout;
        let lb: serde_json::Value = serde_json::from_str(&lb).unwrap();
        for a in AGENTS {
            let got: Vec<String> = lb[a]
                .as_array()
                .unwrap_or_else(|| panic!("no LB list for {a}: {lb}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            assert_eq!(got.len(), 3, "{a}: {got:?}");
        }
        tf.plans_empty()
            .unwrap_or_else(|e| panic!("after the heal: {e}"));
        tf
    });

    // 6. Destroy leaves OPNsense and the hosts clean. First, what there is to clean.
    let built = emulator_config(&lab);
    for (model, list, n) in [
        ("haproxy", "servers.server", 3),
        ("haproxy", "backends.backend", 1),
        ("haproxy", "frontends.frontend", 1),
        ("haproxy", "healthchecks.healthcheck", 1),
        ("vip", "vip", 1),
        ("alias", "aliases.alias", 2),
        ("filter", "rules.rule", 1),
    ] {
        let got = built[model]["arrays"][list].as_array().map_or(0, Vec::len);
        assert_eq!(got, n, "{model} {list} before destroy: {built}");
    }
    assert_eq!(
        built["haproxy"]["values"]["general.stats.prometheus_enabled"], "1",
        "exporter enabled: {built}"
    );
    let tf = in_ws(&lab, move || {
        tf.run_ok(&["destroy", "-input=false", "-no-color", "-auto-approve"])
            .unwrap();
        tf
    });
    drop(tf);
    let after = emulator_config(&lab);
    assert_eq!(
        after, fresh_opnsense,
        "OPNsense after destroy differs from the fresh box"
    );
    // The provider's last SSH command may still be winding down (its session watchdog polls once a second).
    for h in SERVERS.iter().chain(AGENTS.iter()) {
        wait_for(
            &format!("{h} clean after destroy"),
            Duration::from_secs(5),
            || {
                let left = k3s_leftovers(&lab, h);
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("{left:?}"))
                }
            },
        );
    }
    drop(guard);
    eprintln!(
        "complete example ({version}): whole test {:?}",
        t_all.elapsed()
    );
}
