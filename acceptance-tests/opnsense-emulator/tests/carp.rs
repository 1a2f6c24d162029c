//! CARP between two emulators: one CARP VIP (same vhid and password on both, advskew 0 on the primary and 100 on
//! the secondary, as the HA sync leaves it). Exactly one box is MASTER, and it is the one advertising more often;
//! when the master dies the backup takes over after about three missed advertisements; the primary coming back
//! takes the VIP back with preempt (the default) and stays BACKUP with `disablepreempt`; maintenance mode hands
//! the VIP to the peer. The state is read where OPNsense shows it, `diagnostics/interface/get_vip_status`.

mod common;

use std::time::{Duration, Instant};

use common::Api;
use opnsense_emulator::carp::CarpConfig;
use opnsense_emulator::{Config, Emulator, EmulatorHandle};
use serde_json::json;

fn carp_box(dir: &std::path::Path) -> EmulatorHandle {
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.join("state.json"),
        "key",
        "secret",
    );
    cfg.carp = Some(CarpConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        peers: Vec::new(),
    });
    Emulator::start(cfg).unwrap()
}

fn pair(a: &EmulatorHandle, b: &EmulatorHandle) {
    a.set_carp_peers(vec![b.carp_addr().unwrap()]);
    b.set_carp_peers(vec![a.carp_addr().unwrap()]);
}

async fn add_carp_vip(api: &Api, advskew: u32) {
    let r = api
        .post(
            "interfaces/vip_settings/addItem",
            json!({"vip": {"interface": "lan", "mode": "carp", "network": "127.0.9.100/32", "vhid": "7",
                "advbase": "1", "advskew": advskew.to_string(), "password": "carp-pass-1",
                "descr": "k3s api"}}),
        )
        .await;
    assert_eq!(r["result"], "saved", "{r}");
}

/// The status of vhid 7 as `get_vip_status` reports it.
async fn status(api: &Api) -> String {
    let r = api.get("diagnostics/interface/get_vip_status").await;
    r["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["vhid"] == "7"))
        .and_then(|r| r["status"].as_str())
        .unwrap_or("missing")
        .to_string()
}

async fn wait_status(api: &Api, want: &str, within: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let got = status(api).await;
        if got == want {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < within,
            "status {got}, not {want}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_master_takeover_and_preempt() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = carp_box(d1.path());
    let secondary = carp_box(d2.path());
    pair(&primary, &secondary);
    let (p, s) = (Api::new(&primary), Api::new(&secondary));
    add_carp_vip(&s, 100).await;
    add_carp_vip(&p, 0).await;

    // The election: the primary (skew 0) is MASTER, the secondary BACKUP, and it stays that way.
    wait_status(&p, "MASTER", Duration::from_secs(10)).await;
    wait_status(&s, "BACKUP", Duration::from_secs(10)).await;
    for _ in 0..10 {
        assert_eq!(
            (status(&p).await, status(&s).await),
            ("MASTER".into(), "BACKUP".into())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = p.get("diagnostics/interface/get_vip_status").await;
    assert_eq!(r["rows"][0]["vhid_txt"], "7 (freq. 1/0)", "{r}");
    assert_eq!(r["carp"]["allow"], "1", "{r}");

    // The master dies: the backup takes over after about three missed advertisements (advbase 1 s).
    drop(primary);
    let took = wait_status(&s, "MASTER", Duration::from_secs(15)).await;
    eprintln!("carp: the backup took over {took:?} after the master stopped");
    assert!(
        took >= Duration::from_secs(2),
        "took over after {took:?}: before three advertisements were missed"
    );

    // The primary comes back (same saved configuration): with preempt it takes the VIP back.
    let primary = carp_box(d1.path());
    pair(&primary, &secondary);
    let p = Api::new(&primary);
    wait_status(&p, "MASTER", Duration::from_secs(10)).await;
    wait_status(&s, "BACKUP", Duration::from_secs(10)).await;

    // Maintenance mode on the primary hands the VIP to the secondary; leaving it takes it back.
    let r = p
        .post("diagnostics/interface/carp_status/maintenance", json!({}))
        .await;
    assert_eq!(r["action"], "enter_maintenance", "{r}");
    wait_status(&s, "MASTER", Duration::from_secs(10)).await;
    wait_status(&p, "BACKUP", Duration::from_secs(10)).await;
    let r = p.get("diagnostics/interface/get_vip_status").await;
    assert_eq!(r["carp"]["maintenancemode"], true, "{r}");
    p.post("diagnostics/interface/carp_status/maintenance", json!({}))
        .await;
    wait_status(&p, "MASTER", Duration::from_secs(10)).await;

    // Without preempt the primary that comes back stays BACKUP while the secondary advertises.
    let r = p
        .post(
            "core/hasync/set",
            json!({"hasync": {"disablepreempt": "1"}}),
        )
        .await;
    assert_eq!(r["result"], "saved", "{r}");
    drop(primary);
    wait_status(&s, "MASTER", Duration::from_secs(15)).await;
    let primary = carp_box(d1.path());
    pair(&primary, &secondary);
    let p = Api::new(&primary);
    wait_status(&p, "BACKUP", Duration::from_secs(10)).await;
    for _ in 0..15 {
        assert_eq!(
            (status(&p).await, status(&s).await),
            ("BACKUP".into(), "MASTER".into())
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_not_heard_and_disable_drops_out() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = carp_box(d1.path());
    let b = carp_box(d2.path());
    pair(&a, &b);
    let (pa, pb) = (Api::new(&a), Api::new(&b));
    add_carp_vip(&pa, 0).await;
    let r = pb
        .post(
            "interfaces/vip_settings/addItem",
            json!({"vip": {"interface": "lan", "mode": "carp", "network": "127.0.9.100/32", "vhid": "7",
                "advbase": "1", "advskew": "100", "password": "another-password"}}),
        )
        .await;
    assert_eq!(r["result"], "saved", "{r}");
    // Neither hears the other: both end MASTER (carp(4) ignores advertisements with a bad HMAC).
    wait_status(&pa, "MASTER", Duration::from_secs(10)).await;
    wait_status(&pb, "MASTER", Duration::from_secs(10)).await;
    // Disable: the VIP is DISABLED there.
    let r = pb
        .post("diagnostics/interface/carp_status/disable", json!({}))
        .await;
    assert_eq!(r["status"], "ok", "{r}");
    wait_status(&pb, "DISABLED", Duration::from_secs(5)).await;
    let r = pb.get("diagnostics/interface/get_vip_status").await;
    assert_eq!(r["carp"]["allow"], "0", "{r}");
}
