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
