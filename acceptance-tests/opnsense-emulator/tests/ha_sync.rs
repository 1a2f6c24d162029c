//! The HA pair: two emulators, the primary's `core/hasync` pointing at the secondary. A plain sync (what the box
//! runs by itself after changes) replaces the chosen sections on the secondary but leaves its haproxy on the old
//! configuration; `core/hasync_status/restart/haproxy` syncs and restarts haproxy there, so the real haproxy of
//! the secondary serves the synced frontend. CARP VIPs reach the backup with the higher skew; a wrong HA password
//! is refused by the peer.

mod common;

use common::{emulator, Api};
use opnsense_emulator::{Config, Emulator};
use serde_json::json;

fn secondary(dir: &std::path::Path, password: &str) -> opnsense_emulator::EmulatorHandle {
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.join("state.json"),
        "key2",
        "secret2",
    );
    cfg.xmlrpc_credentials = Some(("hasync".into(), password.into()));
    Emulator::start(cfg).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_copies_sections_and_only_the_restart_makes_them_live() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = emulator(d1.path());
    let backup = secondary(d2.path(), "ha-pass-1");
    let (p, b) = (Api::new(&primary), Api::new(&backup));

    let r = p
        .post(
            "core/hasync/set",
            json!({"hasync": {"synchronizetoip": backup.url(), "username": "hasync", "password": "ha-pass-1",
                "syncitems": "haproxy,virtualip"}}),
        )
        .await;
    assert_eq!(r["result"], "saved", "{r}");
    let got = p.get("core/hasync/get").await;
    assert_eq!(
        got["hasync"]["syncitems"]["haproxy"]["selected"], 1,
        "{got}"
    );
    assert_eq!(
        got["hasync"]["pfsyncversion"]["1400"]["selected"], 1,
        "{got}"
    );

    // The primary: one server, backend, frontend on 127.0.5.100:6443, HAProxy enabled and live.
    let srv = p
        .saved(
            "haproxy/settings/addServer",
            json!({"server": {"name": "k3s-1", "address": "127.0.5.11", "port": "6443"}}),
        )
        .await;
    let be = p
        .saved(
            "haproxy/settings/addBackend",
            json!({"backend": {"name": "k3s_servers", "mode": "tcp", "linkedServers": srv,
                "stickiness_pattern": "", "persistence": ""}}),
        )
        .await;
    p.saved(
        "haproxy/settings/addFrontend",
        json!({"frontend": {"name": "k3s_api", "bind": "127.0.5.100:6443", "mode": "tcp", "defaultBackend": be}}),
    )
    .await;
    assert_eq!(
        p.post(
            "haproxy/settings/set",
            json!({"haproxy": {"general": {"enabled": "1"}}})
        )
        .await["result"],
        "saved"
    );
    assert_eq!(
        p.post("haproxy/service/reconfigure", json!({})).await["status"],
        "ok"
    );
    p.saved(
        "interfaces/vip_settings/addItem",
        json!({"vip": {"interface": "lan", "mode": "carp", "network": "127.0.5.100/24", "vhid": "5",
            "advskew": "20", "password": "carp"}}),
    )
    .await;

    // Plain sync: the sections are on the backup, its haproxy is not reconfigured.
    let r = reqwest::Client::new()
        .post(format!("{}/__emulator/hasync/sync", primary.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let fe = b.get("haproxy/settings/searchFrontends").await;
    assert_eq!(fe["rows"][0]["name"], "k3s_api", "{fe}");
    let vip = b.get("interfaces/vip_settings/searchItem").await;
    assert_eq!(vip["rows"][0]["advskew"], "120", "{vip}");
    assert!(
        backup.haproxy_cfg().is_none_or(|c| !c.contains("k3s_api")),
        "a plain sync must not reconfigure the backup's haproxy"
    );

    // The API's sync + restart makes the backup's real haproxy serve it.
    let r = p
        .post("core/hasync_status/restart/haproxy", json!({}))
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    let live = backup
        .haproxy_cfg()
        .expect("haproxy deployed on the backup");
    assert!(live.contains("127.0.5.100:6443"), "{live}");
    assert_eq!(b.get("haproxy/service/status").await["status"], "running");

    // A wrong HA password is refused by the peer, and nothing changes there.
    p.post("core/hasync/set", json!({"hasync": {"password": "wrong"}}))
        .await;
    let r = p
        .post("core/hasync_status/restart/haproxy", json!({}))
        .await;
    assert_eq!(r["status"], "failed", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("authentication failure"),
        "{r}"
    );
}
