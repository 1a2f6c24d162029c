//! The load balancer host: the OPNsense emulator runs inside it, reachable from the workstation over TLS pinned to
//! its CA, and the VIP is up on its lab interface. Uses curl (the real client a person would use).

mod common;

use std::time::Duration;

use common::*;

fn firmware_status(lab: &homelab_lab::Lab) -> std::process::Output {
    let e = lab.emulator().expect("emulator info");
    // Credentials go to curl through a netrc file (0600), not through argv.
    let creds = std::fs::read_to_string(&e.credentials_file).unwrap();
    let secret = creds
        .lines()
        .find_map(|l| l.strip_prefix("secret="))
        .unwrap();
    let netrc = lab.state().dir.join("netrc");
    std::fs::write(
        &netrc,
        format!("machine 192.0.2.1 login {} password {secret}\n", e.api_key),
    )
    .unwrap();
    lab.ws_command("curl")
        .unwrap()
        .args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&e.ca_file)
        .arg("--netrc-file")
        .arg(&netrc)
        .arg(format!("{}/api/core/firmware/status", e.url))
        .output()
        .expect("curl")
}

#[test]
fn emulator_on_the_load_balancer_host() {
    let mut s = spec("lb", 1, 0);
    s.opnsense = true;
    let mut lab = up(&s);
    let e = lab.emulator().unwrap().clone();
    assert_eq!(e.url, "https://192.0.2.1");
    let o = firmware_status(&lab);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"product_name\":\"OPNsense\""));

    // The VIP is on the load balancer's lab interface and reachable from the workstation.
    let o = sh(&lab, "opnsense", "ip -4 -o addr show eth0");
    assert!(text(&o).contains("192.0.2.100/24"), "{}", text(&o));
    let o = lab
        .ws_command("bash")
        .unwrap()
        .args(["-c", "exec 3<>/dev/tcp/192.0.2.100/22 && head -c 7 <&3"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "SSH-2.0");

    // The emulator is a unit of the host: it comes back (with a fresh CA) after a host restart.
    assert_eq!(
        text(&sh(
            &lab,
            "opnsense",
            "systemctl is-active opnsense-emulator"
        )),
        "active"
    );
    let old_ca = std::fs::read_to_string(&e.ca_file).unwrap();
    lab.restart_host("opnsense").unwrap();
    assert!(wait_for(Duration::from_secs(10), || firmware_status(&lab)
        .status
        .success()));
    assert_ne!(std::fs::read_to_string(&e.ca_file).unwrap(), old_ca);
}

/// One API call to an emulator of `lab` from the workstation (curl, credentials through a netrc file).
fn api_call(
    lab: &homelab_lab::Lab,
    e: &homelab_lab::EmulatorInfo,
    path: &str,
    body: Option<&str>,
) -> String {
    let creds = std::fs::read_to_string(&e.credentials_file).unwrap();
    let secret = creds
        .lines()
        .find_map(|l| l.strip_prefix("secret="))
        .unwrap();
    let host = e.url.trim_start_matches("https://");
    let netrc = lab.state().dir.join(format!("netrc-{host}"));
    std::fs::write(
        &netrc,
        format!("machine {host} login {} password {secret}\n", e.api_key),
    )
    .unwrap();
    let mut c = lab.ws_command("curl").unwrap();
    c.args(["-sS", "--max-time", "10", "--cacert"])
        .arg(&e.ca_file)
        .arg("--netrc-file")
        .arg(&netrc);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "--data", b]);
    }
    let o = c
        .arg(format!("{}/api/{path}", e.url))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn holds_vip(lab: &homelab_lab::Lab, host: &str) -> bool {
    text(&sh(lab, host, "ip -4 -o addr show eth0")).contains("192.0.2.100/32")
}

/// The MAC the workstation has for the VIP (after a connection attempt).
fn vip_mac(lab: &homelab_lab::Lab) -> String {
    let o = lab
        .ws_command("ip")
        .unwrap()
        .args(["neigh", "show", "192.0.2.100"])
        .output()
        .unwrap();
    text(&o)
}

fn vip_ssh_banner(lab: &homelab_lab::Lab) -> bool {
    let o = lab
        .ws_command("timeout")
        .unwrap()
        .args([
            "1",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/192.0.2.100/22 && head -c 7 <&3",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout) == "SSH-2.0"
}

/// The HA pair of load balancers: a CARP VIP (vhid 3, skew 0 on `opnsense`, 100 on `opnsense2`) is up on exactly
/// the MASTER, `opnsense`; powering it off moves the address to `opnsense2` within a few seconds, and the
/// workstation follows at once (its neighbour entry names opnsense2's MAC: the gratuitous ARP); powering it on
/// again takes it back (preempt is on by default).
#[test]
fn carp_pair_moves_the_vip_when_the_master_is_powered_off() {
    let mut s = spec("carp", 0, 0);
    s.opnsense = true;
    s.opnsense_pair = true;
    let mut lab = up(&s);
    let e1 = lab.emulator().unwrap().clone();
    let e2 = lab.emulator2().unwrap().clone();
    assert_eq!(e2.url, "https://192.0.2.3");
    assert!(
        !holds_vip(&lab, "opnsense") && !holds_vip(&lab, "opnsense2"),
        "no VIP before it is configured"
    );
    for (e, skew) in [(&e2, 100), (&e1, 0)] {
        let r = api_call(
            &lab,
            e,
            "interfaces/vip_settings/addItem",
            Some(&format!(
                r#"{{"vip": {{"interface": "lan", "mode": "carp", "network": "192.0.2.100/32", "vhid": "3",
                    "advbase": "1", "advskew": "{skew}", "password": "lab-carp-pass"}}}}"#
            )),
        );
        assert!(r.contains("saved"), "{r}");
    }
    assert!(
        wait_for(Duration::from_secs(15), || holds_vip(&lab, "opnsense")),
        "opnsense never became MASTER: {}",
        api_call(&lab, &e1, "diagnostics/interface/get_vip_status", None)
    );
    assert!(!holds_vip(&lab, "opnsense2"), "both hold the VIP");
    let st = api_call(&lab, &e2, "diagnostics/interface/get_vip_status", None);
    assert!(st.contains("\"status\":\"BACKUP\""), "{st}");
    assert!(vip_ssh_banner(&lab));
    assert!(
        vip_mac(&lab).contains("02:1a:c0:00:02:01"),
        "{}",
        vip_mac(&lab)
    );

    // Power the master off: the backup takes the address; the workstation reaches the VIP through it.
    let t0 = std::time::Instant::now();
    lab.stop_host("opnsense").unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || vip_ssh_banner(&lab)),
        "the VIP did not come back through opnsense2"
    );
    let outage = t0.elapsed();
    eprintln!(
        "carp lab: the VIP answered through opnsense2 {outage:?} after opnsense was powered off"
    );
    assert!(holds_vip(&lab, "opnsense2"));
    assert!(
        vip_mac(&lab).contains("02:1a:c0:00:02:03"),
        "{}",
        vip_mac(&lab)
    );
    let st = api_call(&lab, &e2, "diagnostics/interface/get_vip_status", None);
    assert!(st.contains("\"status\":\"MASTER\""), "{st}");

    // Power it on: with preempt it takes the VIP back and the backup lets go of it.
    lab.start_host("opnsense").unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || holds_vip(&lab, "opnsense")
            && !holds_vip(&lab, "opnsense2")),
        "opnsense did not take the VIP back: {}",
        api_call(&lab, &e2, "diagnostics/interface/get_vip_status", None)
    );
    assert!(wait_for(Duration::from_secs(10), || vip_ssh_banner(&lab)
        && vip_mac(&lab).contains("02:1a:c0:00:02:01")));
}
