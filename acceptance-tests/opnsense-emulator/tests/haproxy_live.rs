//! The emulator's HAProxy side with a real haproxy: a seed-like configuration (servers, TCP health check every 10 s,
//! round-robin TCP backend, TCP frontend on a VIP:6443, Prometheus exporter on :8404) configured through the API,
//! rendered, accepted by `haproxy -c`, started and passing TCP traffic to echo backends; and a broken change that
//! `configtest` flags with ALERT lines and `reconfigure` refuses to deploy (old config and process stay, traffic
//! still flows). Each test uses its own 127.x addresses so tests run in parallel; haproxy dies with the emulator.

mod common;

use common::{echo_server, emulator, roundtrip, wait_for_traffic, Api};
use serde_json::json;

struct Seed {
    backend: String,
    healthcheck: String,
}

/// Configures the seed topology: VIP `vip`, servers at `servers`, exporter on `vip`:8404.
async fn configure_seed(api: &Api, vip: &str, servers: &[(&str, std::net::SocketAddr)]) -> Seed {
    let hc = api
        .saved(
            "haproxy/settings/addHealthcheck",
            json!({"healthcheck": {"name": "k3s_tcp", "type": "tcp", "interval": "10s"}}),
        )
        .await;
    let mut ids = Vec::new();
    for (name, addr) in servers {
        ids.push(
            api.saved(
                "haproxy/settings/addServer",
                json!({"server": {"name": name, "address": addr.ip().to_string(), "port": addr.port().to_string()}}),
            )
            .await,
        );
    }
    let be = api
        .saved(
            "haproxy/settings/addBackend",
            json!({"backend": {"name": "k3s_servers", "mode": "tcp", "algorithm": "roundrobin",
                "linkedServers": ids.join(","), "healthCheckEnabled": "1", "healthCheck": hc,
                "healthCheckLogStatus": "1", "stickiness_pattern": "", "persistence": "",
                "description": "Pool serving all K3s controlplane hosts"}}),
        )
        .await;
    api.saved(
        "haproxy/settings/addFrontend",
        json!({"frontend": {"name": "k3s_api", "bind": format!("{vip}:6443"), "mode": "tcp", "defaultBackend": be,
            "logging_detailedLog": "1", "description": "K3s controlplane hosts"}}),
    )
    .await;
    let r = api
        .post(
            "haproxy/settings/set",
            json!({"haproxy": {"general": {"enabled": "1", "gracefulStop": "1",
                "stats": {"prometheus_enabled": "1", "prometheus_bind": format!("{vip}:8404")}}}}),
        )
        .await;
    assert_eq!(r["result"], "saved", "{r}");
    api.saved("interfaces/vip_settings/addItem", json!({"vip": {"interface": "lan", "mode": "ipalias", "network": format!("{vip}/32"), "descr": "k3s api"}}))
        .await;
    assert_eq!(
        api.post("interfaces/vip_settings/reconfigure", json!({}))
            .await["status"],
        "ok"
    );
    Seed {
        backend: be,
        healthcheck: hc,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_like_config_is_rendered_accepted_live_and_passes_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path());
    let api = Api::new(&emu);
    let b1 = echo_server("127.0.2.11", "b1").await;
    let b2 = echo_server("127.0.2.12", "b2").await;
    configure_seed(&api, "127.0.2.100", &[("k3s-1", b1), ("k3s-2", b2)]).await;

    let check = api.get("haproxy/service/configtest").await;
    assert_eq!(
        check["result"], "Configuration file is valid\n\n",
        "{check}"
    );
    assert_eq!(
        api.post("haproxy/service/reconfigure", json!({})).await,
        json!({"status": "ok"})
    );

    let cfg = emu.haproxy_cfg().expect("config deployed");
    eprintln!("--- deployed haproxy.cfg ---\n{cfg}");
    for line in [
        "frontend k3s_api",
        "    bind 127.0.2.100:6443 name 127.0.2.100:6443 ",
        "    mode tcp",
        "    default_backend k3s_servers",
        "    option tcplog",
        "backend k3s_servers",
        "    option log-health-checks",
        "    # health check: k3s_tcp",
        "    balance roundrobin",
        &format!("    server k3s-1 {b1} check inter 10s "),
        &format!("    server k3s-2 {b2} check inter 10s "),
        "frontend prometheus_exporter",
        "   http-request use-service prometheus-exporter if { path /metrics }",
    ] {
        assert!(
            cfg.lines().any(|l| l == line || l.starts_with(line)),
            "missing {line:?} in\n{cfg}"
        );
    }
    assert!(
        !cfg.contains("stick-table"),
        "stickiness was switched off:\n{cfg}"
    );

    let first = wait_for_traffic("127.0.2.100:6443")
        .await
        .expect("frontend passes traffic");
    let mut seen = std::collections::BTreeSet::new();
    seen.insert(first.split(':').next().unwrap().to_string());
    for i in 0..6 {
        let r = roundtrip("127.0.2.100:6443", &format!("hello{i}"))
            .await
            .expect("traffic");
        assert!(r.ends_with(&format!("hello{i}")), "{r}");
        seen.insert(r.split(':').next().unwrap().to_string());
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        vec!["b1", "b2"],
        "round robin reaches both backends"
    );

    let metrics = reqwest::get("http://127.0.2.100:8404/metrics")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("haproxy_process_"),
        "prometheus exporter answers: {}",
        &metrics[..metrics.len().min(300)]
    );

    let status = api.get("haproxy/service/status").await;
    assert_eq!(status["status"], "running");
    let pids = emu.haproxy_pids();
    assert!(!pids.is_empty());
    drop(emu);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for p in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{p}")).exists()
                || std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .unwrap_or_default()
                    .contains(") Z"),
            "haproxy {p} left running"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_is_refused_by_configtest_and_never_deployed() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path());
    let api = Api::new(&emu);
    let b1 = echo_server("127.0.3.11", "b1").await;
    let seed = configure_seed(&api, "127.0.3.100", &[("k3s-1", b1)]).await;
    assert_eq!(
        api.post("haproxy/service/reconfigure", json!({})).await["status"],
        "ok"
    );
    assert!(wait_for_traffic("127.0.3.100:6443").await.is_some());
    let good_cfg = emu.haproxy_cfg().unwrap();
    let good_pids = emu.haproxy_pids();

    // the API accepts a second server with the same name (names are not unique server-side) ...
    let b2 = echo_server("127.0.3.12", "b2").await;
    let dup = api
        .saved("haproxy/settings/addServer", json!({"server": {"name": "k3s-1", "address": "127.0.3.12", "port": b2.port().to_string()}}))
        .await;
    let be = api
        .get(&format!("haproxy/settings/getBackend/{}", seed.backend))
        .await;
    let mut linked: Vec<String> = be["backend"]["linkedServers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(_, v)| v["selected"] == 1)
        .map(|(k, _)| k.clone())
        .collect();
    linked.push(dup);
    api.saved(
        &format!("haproxy/settings/setBackend/{}", seed.backend),
        json!({"backend": {"linkedServers": linked.join(",")}}),
    )
    .await;

    // ... but haproxy does not
    let check = api.get("haproxy/service/configtest").await;
    let out = check["result"].as_str().unwrap();
    assert!(out.contains("[ALERT]"), "{out}");
    assert!(out.contains("k3s-1"), "{out}");
    // reconfigure still says ok, as on a real box, but deploys nothing
    assert_eq!(
        api.post("haproxy/service/reconfigure", json!({})).await,
        json!({"status": "ok"})
    );
    assert_eq!(
        emu.haproxy_cfg().unwrap(),
        good_cfg,
        "broken config must not be deployed"
    );
    // as on the box (`setup.sh deploy; rc-wrapper.sh reload`), haproxy is still reloaded, with the old config
    assert_ne!(
        emu.haproxy_pids(),
        good_pids,
        "reload ran with the old live config"
    );
    let r = wait_for_traffic("127.0.3.100:6443")
        .await
        .expect("old config still passes traffic");
    assert_eq!(r, "b1:ping");
    assert_eq!(
        roundtrip("127.0.3.100:6443", "still").await.as_deref(),
        Some("b1:still")
    );
    let _ = seed.healthcheck;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_haproxy_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path());
    let api = Api::new(&emu);
    let b1 = echo_server("127.0.4.11", "b1").await;
    configure_seed(&api, "127.0.4.100", &[("k3s-1", b1)]).await;
    api.post("haproxy/service/reconfigure", json!({})).await;
    assert!(wait_for_traffic("127.0.4.100:6443").await.is_some());
    api.post(
        "haproxy/settings/set",
        json!({"haproxy": {"general": {"enabled": "0"}}}),
    )
    .await;
    api.post("haproxy/service/reconfigure", json!({})).await;
    assert!(emu.haproxy_pids().is_empty());
    assert_eq!(
        api.get("haproxy/service/status").await["status"],
        "disabled"
    );
    assert!(roundtrip("127.0.4.100:6443", "x").await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_keeps_connections_and_default_hard_reload_cuts_them() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    async fn exchange(s: &mut tokio::net::TcpStream, msg: &str) -> Option<String> {
        s.write_all(msg.as_bytes()).await.ok()?;
        let mut buf = [0u8; 256];
        match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            _ => None,
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path());
    let api = Api::new(&emu);
    let b1 = echo_server("127.0.5.11", "b1").await;
    let seed = configure_seed(&api, "127.0.5.100", &[("k3s-1", b1)]).await; // gracefulStop=1
    api.post("haproxy/service/reconfigure", json!({})).await;
    assert!(wait_for_traffic("127.0.5.100:6443").await.is_some());

    let mut conn = tokio::net::TcpStream::connect("127.0.5.100:6443")
        .await
        .unwrap();
    assert_eq!(exchange(&mut conn, "a").await.as_deref(), Some("b1:a"));
    api.saved(
        &format!("haproxy/settings/setBackend/{}", seed.backend),
        json!({"backend": {"description": "changed once"}}),
    )
    .await;
    api.post("haproxy/service/reconfigure", json!({})).await;
    assert!(emu.haproxy_cfg().unwrap().contains("changed once"));
    assert_eq!(
        exchange(&mut conn, "b").await.as_deref(),
        Some("b1:b"),
        "graceful reload keeps the connection"
    );
    drop(conn);

    api.post(
        "haproxy/settings/set",
        json!({"haproxy": {"general": {"gracefulStop": "0"}}}),
    )
    .await;
    let mut conn = tokio::net::TcpStream::connect("127.0.5.100:6443")
        .await
        .unwrap();
    assert_eq!(exchange(&mut conn, "c").await.as_deref(), Some("b1:c"));
    api.saved(
        &format!("haproxy/settings/setBackend/{}", seed.backend),
        json!({"backend": {"description": "changed twice"}}),
    )
    .await;
    api.post("haproxy/service/reconfigure", json!({})).await;
    assert!(
        exchange(&mut conn, "d").await.is_none(),
        "hard reload (-st) cuts open connections"
    );
    assert_eq!(
        roundtrip("127.0.5.100:6443", "e").await.as_deref(),
        Some("b1:e"),
        "new process serves"
    );
}
