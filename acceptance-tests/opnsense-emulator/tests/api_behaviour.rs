//! Behaviour beyond the recorded samples: fault injection (lib handle and admin endpoint), state surviving a
//! restart, serialised concurrent writers, upsert, HTTPS with a pinned CA, auth padding, version reporting.

mod common;

use std::time::{Duration, Instant};

use common::{emulator, Api};
use opnsense_emulator::{Config, Emulator, FaultKind, TlsMode};
use serde_json::json;

async fn server_names(api: &Api) -> Vec<String> {
    let r = api.get("haproxy/settings/searchServers").await;
    r["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_injectable_per_endpoint_and_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path());
    let api = Api::new(&emu);
    let add = |name: &str| json!({"server": {"name": name, "address": "10.0.0.1", "port": "80"}});

    // HTTP 500: nothing is saved
    emu.fail_next("haproxy/settings/addServer", FaultKind::Status500, 1);
    let r = api
        .post_raw("haproxy/settings/addServer", add("s500"))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 500);
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap(),
        json!({"errorMessage": "Unexpected error, check log for details"})
    );
    assert!(server_names(&api).await.is_empty());

    // dropped before: no answer, nothing saved
    emu.fail_next("haproxy/settings/add_server", FaultKind::DropBefore, 1);
    assert!(api
        .post_raw("haproxy/settings/addServer", add("before"))
        .await
        .is_err());
    assert!(server_names(&api).await.is_empty());

    // lost reply: no answer, but the change was applied
    emu.fail_next("haproxy/settings/addServer", FaultKind::DropAfter, 1);
    assert!(api
        .post_raw("haproxy/settings/addServer", add("after"))
        .await
        .is_err());
    assert_eq!(server_names(&api).await, vec!["after"]);

    // rules are counted: the next call is normal again
    api.saved("haproxy/settings/addServer", add("normal")).await;

    // delay, switched on through the admin endpoint, global (every endpoint)
    let c = reqwest::Client::new();
    let r = c
        .post(format!("{}/__emulator/faults", emu.url()))
        .json(&json!({"kind": "delay", "ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let t = Instant::now();
    api.get("haproxy/settings/searchServers").await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    let rules: serde_json::Value = c
        .get(format!("{}/__emulator/faults", emu.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        rules,
        json!([{"endpoint": null, "kind": "delay", "ms": 300, "times": null}])
    );
    c.delete(format!("{}/__emulator/faults", emu.url()))
        .send()
        .await
        .unwrap();
    let t = Instant::now();
    api.get("haproxy/settings/searchServers").await;
    assert!(t.elapsed() < Duration::from_millis(300));
    // the call log saw every call, including the dropped ones
    assert!(emu
        .calls()
        .iter()
        .any(|c| c == "POST /api/haproxy/settings/addServer -> 200"));
}

/// A restart in the middle of a call: the change is saved, its reply lost, the port refuses connections for the
/// down time, then the same address answers again with the saved state (and no fault left over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_fault_loses_the_reply_refuses_then_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path());
    let api = Api::new(&emu);
    emu.fail_next(
        "haproxy/settings/addServer",
        FaultKind::Restart { down_ms: 1500 },
        1,
    );
    let add = json!({"server": {"name": "during", "address": "10.0.0.1", "port": "80"}});
    assert!(api
        .post_raw("haproxy/settings/addServer", add)
        .await
        .is_err());
    let t = Instant::now();
    // The lost reply can reach the client a moment before the listener is closed: allow that moment.
    let mut refused = false;
    while t.elapsed() < Duration::from_millis(500) {
        if tokio::net::TcpStream::connect(emu.addr()).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the port must refuse connections while down");
    // Back within the down time plus a little, same address, the change saved before the restart kept.
    let mut up = false;
    while t.elapsed() < Duration::from_secs(5) {
        if tokio::net::TcpStream::connect(emu.addr()).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the API did not come back");
    assert!(
        t.elapsed() >= Duration::from_millis(1200),
        "down for {:?} only",
        t.elapsed()
    );
    assert_eq!(server_names(&api).await, vec!["during"]);
    // The admin endpoint restarts on demand too.
    reqwest::Client::new()
        .post(format!("{}/__emulator/restart", emu.url()))
        .json(&json!({"down_ms": 300}))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(tokio::net::TcpStream::connect(emu.addr()).await.is_err());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(server_names(&api).await, vec!["during"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_restart_and_upsert_creates_with_client_uuid() {
    let dir = tempfile::tempdir().unwrap();
    let uuid = "3f0c1c1e-8d2a-4c55-9b1e-2a8f6e0d7c41";
    let before = {
        let emu = emulator(dir.path());
        let api = Api::new(&emu);
        let r = api
            .post(
                &format!("haproxy/settings/setServer/{uuid}"),
                json!({"server": {"name": "k3s-1", "address": "10.0.3.2", "port": 6443}}),
            )
            .await;
        assert_eq!(r, json!({"result": "saved"}));
        api.saved(
            "firewall/alias/addItem",
            json!({"alias": {"name": "k3s_vip", "type": "host", "content": "10.0.3.100"}}),
        )
        .await;
        let whole = api.get("haproxy/settings/get").await;
        emu.shutdown();
        whole
    };
    let emu = emulator(dir.path());
    let api = Api::new(&emu);
    let s = api.get(&format!("haproxy/settings/getServer/{uuid}")).await;
    assert_eq!(s["server"]["name"], "k3s-1");
    assert_eq!(s["server"]["port"], "6443", "numbers are stored as strings");
    assert_eq!(api.get("haproxy/settings/get").await, before);
    assert_eq!(
        api.get("firewall/alias/getAliasUUID/k3s_vip").await["uuid"]
            .as_str()
            .map(str::len),
        Some(36)
    );
    // an unknown uuid that is not lowercase v4 is not upserted
    let r = api
        .post(
            "haproxy/settings/setServer/3F0C1C1E-8D2A-4C55-9B1E-2A8F6E0D7C42",
            json!({"server": {"name": "x"}}),
        )
        .await;
    assert_eq!(r, json!({"result": "failed"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_serialised_without_lost_updates() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path());
    let api = std::sync::Arc::new(Api::new(&emu));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            api.saved(
                "haproxy/settings/addServer",
                json!({"server": {"name": format!("s{i}"), "address": "10.0.0.1"}}),
            )
            .await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let names = server_names(&api).await;
    assert_eq!(names.len(), 20);
    assert_eq!(names[..3], ["s0", "s1", "s2"], "natural sort");
    assert_eq!(names[19], "s19");
    // and all of them are on disk
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state.json")).unwrap()).unwrap();
    assert_eq!(
        saved["haproxy"]["arrays"]["servers.server"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_pinned_ca_auth_padding_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("state.json"),
        "k+/ey",
        "s3cr+/et",
    );
    cfg.tls = TlsMode::Generate { hostnames: vec![] };
    cfg.auth_failure_delay = Duration::from_millis(250);
    cfg.opnsense_version = "26.1.2".into();
    cfg.haproxy_plugin_version = "5.0".into();
    let emu = Emulator::start(cfg).unwrap();
    assert!(emu.url().starts_with("https://127.0.0.1:"));
    let ca = reqwest::Certificate::from_pem(emu.ca_pem().unwrap().as_bytes()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .tls_built_in_root_certs(false)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}/api/core/firmware/info", emu.url());
    let info: serde_json::Value = client
        .get(&url)
        .basic_auth("k+/ey", Some("s3cr+/et"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["product_version"], "26.1.2");
    assert_eq!(info["package"][0]["name"], "os-haproxy");
    assert_eq!(info["package"][0]["version"], "5.0");

    let t = Instant::now();
    let r = client
        .get(&url)
        .basic_auth("k+/ey", Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "failed logins are padded"
    );
    let r = client.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 302);
    assert_eq!(r.headers()["location"], "/?url=/api/core/firmware/info");

    // a client without the CA refuses the connection
    let plain = reqwest::Client::builder()
        .tls_built_in_root_certs(true)
        .build()
        .unwrap();
    assert!(plain.get(&url).send().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_rules_and_alias_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path());
    let api = Api::new(&emu);
    let alias = api
        .saved(
            "firewall/alias/addItem",
            json!({"alias": {"name": "k3s_lb", "type": "host", "content": "10.0.3.100"}}),
        )
        .await;
    let r = api
        .post("firewall/filter/addRule", json!({"rule": {"interface": "lan", "protocol": "ICMP", "destination_net": "k3s_lb", "destination_port": "6443"}}))
        .await;
    assert_eq!(
        r["validations"]["rule.destination_port"],
        "Destination ports are only valid for tcp or udp type rules."
    );
    let rule = api
        .saved("firewall/filter/addRule", json!({"rule": {"interface": "lan", "protocol": "TCP", "destination_net": "k3s_lb", "destination_port": "6443", "description": "k3s api"}}))
        .await;
    let got = api.get(&format!("firewall/filter/getRule/{rule}")).await;
    assert_eq!(got["rule"]["sequence"], "100");
    let del = api
        .post_raw(&format!("firewall/alias/delItem/{alias}"), json!({}))
        .await
        .unwrap();
    assert_eq!(del.status().as_u16(), 500);
    assert_eq!(
        del.json::<serde_json::Value>().await.unwrap()["errorTitle"],
        "Alias in use"
    );
    assert_eq!(
        api.post(&format!("firewall/filter/toggleRule/{rule}/0"), json!({}))
            .await,
        json!({"result": "Disabled", "changed": true})
    );
    assert_eq!(
        api.post(&format!("firewall/filter/toggleRule/{rule}/0"), json!({}))
            .await,
        json!({"result": "Disabled", "changed": false})
    );
    assert_eq!(
        api.post("firewall/filter/apply", json!({})).await,
        json!({"status": "OK\n\n"})
    );
    assert_eq!(
        api.post(&format!("firewall/filter/delRule/{rule}"), json!({}))
            .await,
        json!({"result": "deleted"})
    );
    assert_eq!(
        api.post(&format!("firewall/alias/delItem/{alias}"), json!({}))
            .await,
        json!({"result": "deleted"})
    );
}

/// A network namespace for the test, removed on drop.
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Netns {
        let run = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(st.success(), "ip {args:?}");
        };
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", name])
            .status();
        run(&["netns", "add", name]);
        let ns = Netns(name.to_string());
        run(&["-n", name, "link", "set", "lo", "up"]);
        ns
    }

    fn addrs(&self) -> String {
        let o = std::process::Command::new("ip")
            .args(["-n", &self.0, "-o", "addr", "show", "dev", "lo"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.0])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_reconfigure_brings_addresses_up_and_down_on_mapped_interfaces() {
    let ns = Netns::new(&format!("hlemu-vip-{}", std::process::id()));
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("state.json"),
        "key",
        "secret",
    );
    cfg.vip_mode = opnsense_emulator::VipMode::Interfaces(
        [("lan".to_string(), "lo".to_string())]
            .into_iter()
            .collect(),
    );
    cfg.vip_netns = Some(ns.0.clone());
    let emu = Emulator::start(cfg).unwrap();
    let api = Api::new(&emu);
    let vip = api
        .saved(
            "interfaces/vip_settings/addItem",
            json!({"vip": {"interface": "lan", "mode": "ipalias", "network": "10.99.0.100/32"}}),
        )
        .await;
    assert!(
        !ns.addrs().contains("10.99.0.100"),
        "nothing changes before reconfigure"
    );
    assert_eq!(
        api.post("interfaces/vip_settings/reconfigure", json!({}))
            .await,
        json!({"status": "ok"})
    );
    assert!(ns.addrs().contains("10.99.0.100/32"), "{}", ns.addrs());
    assert_eq!(
        api.post(&format!("interfaces/vip_settings/delItem/{vip}"), json!({}))
            .await,
        json!({"result": "deleted"})
    );
    assert!(ns.addrs().contains("10.99.0.100/32"), "removal is deferred");
    api.post("interfaces/vip_settings/reconfigure", json!({}))
        .await;
    assert!(!ns.addrs().contains("10.99.0.100"), "{}", ns.addrs());
    // CARP validation
    let r = api
        .post(
            "interfaces/vip_settings/addItem",
            json!({"vip": {"interface": "lan", "mode": "carp", "network": "10.99.0.101/24"}}),
        )
        .await;
    assert_eq!(
        r["validations"]["vip.vhid"],
        "A VHID must be selected for this CARP VIP."
    );
    assert_eq!(
        api.get("interfaces/vip_settings/getUnusedVhid").await,
        json!({"vhid": 1, "status": "ok"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn box_without_os_haproxy() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("state.json"),
        "key",
        "secret",
    );
    cfg.haproxy_plugin_installed = false;
    let emu = Emulator::start(cfg).unwrap();
    let api = Api::new(&emu);
    assert_eq!(
        api.get("haproxy/settings/get").await,
        json!({"errorMessage": "Endpoint not found"})
    );
    assert_eq!(
        api.get("core/firmware/info").await["plugin"][0]["installed"],
        "0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_model_checks() {
    let dir = tempfile::tempdir().unwrap();
    let emu = emulator(dir.path());
    let api = Api::new(&emu);
    let carp = json!({"vip": {"interface": "wan", "mode": "carp", "network": "203.0.113.10/24", "vhid": "7", "password": "p"}});
    api.saved("interfaces/vip_settings/addItem", carp.clone())
        .await;
    let mut dup = carp.clone();
    dup["vip"]["network"] = json!("203.0.113.11/24");
    let r = api.post("interfaces/vip_settings/addItem", dup).await;
    assert_eq!(
        r["validations"]["vip.vhid"],
        "VHID 7 is already in use on interface WAN. Pick a unique number on this interface."
    );
    let r = api
        .post(
            "interfaces/vip_settings/addItem",
            json!({"vip": {"interface": "lan", "mode": "ipalias", "network": "192.168.1.0/24"}}),
        )
        .await;
    assert_eq!(
        r["validations"]["vip.network"],
        json!(["The network address cannot be used for this VIP"])
    );
    let r = api.post("interfaces/vip_settings/addItem", json!({"vip": {"interface": "lan", "mode": "ipalias", "network": "192.168.1.9/32", "vhid": "9"}})).await;
    assert!(
        r["validations"]["vip.vhid"]
            .as_str()
            .unwrap()
            .contains("VHID 9"),
        "{r}"
    );
    assert_eq!(
        api.get("interfaces/vip_settings/getUnusedVhid").await,
        json!({"vhid": 1, "status": "ok"})
    );
    // the address is required on every set (the overlay blanks it otherwise)
    let uuid = api
        .saved(
            "interfaces/vip_settings/addItem",
            json!({"vip": {"interface": "lan", "mode": "ipalias", "network": "192.168.1.9/32"}}),
        )
        .await;
    let r = api
        .post(
            &format!("interfaces/vip_settings/setItem/{uuid}"),
            json!({"vip": {"descr": "x"}}),
        )
        .await;
    assert_eq!(
        r["validations"]["vip.network"],
        json!(["A valid network address is required."])
    );
}

/// Sources and destinations accept what core's `NetworkAliasField` accepts (`Firewall/Filter.xml`): `any`,
/// `(self)`, every interface of this box by key (its network) or `<key>ip` (its address), non-port aliases, and
/// addresses/CIDRs; an interface the box does not have and a port alias are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_sources_are_the_boxs_interfaces_aliases_and_networks() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = opnsense_emulator::Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("state.json"),
        "key",
        "secret",
    );
    cfg.interfaces = vec![
        ("wan".into(), "WAN".into()),
        ("lan".into(), "LAN".into()),
        ("opt1".into(), "K3S".into()),
    ];
    let emu = opnsense_emulator::Emulator::start(cfg).unwrap();
    let api = Api::new(&emu);
    api.saved(
        "firewall/alias/addItem",
        json!({"alias": {"name": "api_ports", "type": "port", "content": "6443"}}),
    )
    .await;
    for ok in ["opt1", "opt1ip", "lan", "(self)", "any", "10.0.3.0/24"] {
        api.saved(
            "firewall/filter/addRule",
            json!({"rule": {"interface": "opt1", "source_net": ok, "destination_net": "opt1ip"}}),
        )
        .await;
    }
    for bad in ["opt9", "api_ports"] {
        let r = api
            .post(
                "firewall/filter/addRule",
                json!({"rule": {"interface": "opt1", "source_net": bad}}),
            )
            .await;
        assert_eq!(
            r["validations"]["rule.source_net"],
            format!("{bad} is not a valid source IP address or alias."),
            "{r}"
        );
    }
}
