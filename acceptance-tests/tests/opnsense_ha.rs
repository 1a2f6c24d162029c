//! The HA pair through real Terraform: two OPNsense emulators, `homelab_opnsense_hasync` on the primary pointing at
//! the secondary, and the provider's `opnsense { secondary { } }` block naming the secondary's own API and key. The
//! settings land on the primary (password in state, sensitive, on 1.0.3; write-only and out of state on 1.15),
//! refresh and plan stay empty although OPNsense returns the password, and the provider itself drives the sync:
//! after apply the secondary's real haproxy runs the primary's HAProxy configuration, with no call by the test.
//! A change of several objects costs one sync on the primary and one configtest + reconfigure on the secondary
//! (counted in the emulators' call logs), and a server edited by hand on the secondary is planned back (with a
//! warning naming it and the secondary), and applying that syncs the primary's copy over it again. Every address
//! is on loopback.

use std::net::SocketAddr;

use homelab_acceptance::emulator_api::AdminApi;
use homelab_acceptance::ha_pair::*;
use homelab_acceptance::terraform::required_providers;
use homelab_acceptance::{Action, Step, TerraformVersion, TestCase};
use serde_json::Value;

/// A second frontend on the same pool: created alone, so its create is the one that waits for the batch to go live.
const SECOND_FRONTEND: &str = r#"
resource "homelab_opnsense_haproxy_frontend" "k3s2" {
  name            = "k3s_api2"
  bind            = ["127.0.6.100:6445"]
  mode            = "tcp"
  default_backend = homelab_opnsense_haproxy_backend.k3s.id
}
"#;

/// An admin's access to the firewall at `addr` (`secondary`: with the secondary's key).
fn admin(addr: SocketAddr, secondary: bool) -> AdminApi {
    if secondary {
        AdminApi::new(addr, SECONDARY_KEY, SECONDARY_SECRET)
    } else {
        AdminApi::new(addr, PRIMARY_KEY, PRIMARY_SECRET)
    }
}

/// One API call with the key of the firewall at `addr`.
fn api(addr: SocketAddr, secondary: bool, method: &str, path: &str) -> Value {
    admin(addr, secondary).call(method, path, None)
}

fn api_with(addr: SocketAddr, secondary: bool, method: &str, path: &str, post: &str) -> Value {
    let body: Value = serde_json::from_str(post).expect("a JSON body");
    admin(addr, secondary).call(method, path, Some(&body))
}

/// Adds a fault rule (JSON, see the emulator's faults module) on the secondary.
fn secondary_fault(b: SocketAddr, rule: &str) -> Result<(), String> {
    let rule: Value = serde_json::from_str(rule).expect("a JSON rule");
    let r = admin(b, true).emulator("POST", "faults", Some(&rule));
    if r["status"] != "ok" {
        return Err(format!("adding the fault failed: {r}"));
    }
    Ok(())
}

fn clear_secondary_faults(b: SocketAddr) {
    admin(b, true).emulator("DELETE", "faults", None);
}

/// How many logged calls of the emulator at `addr` were `POST <path>`.
fn posts(addr: SocketAddr, secondary: bool, path: &str) -> usize {
    admin(addr, secondary)
        .emulator("GET", "calls", None)
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["method"] == "POST" && c["path"] == path)
        .count()
}

fn clear_calls(addr: SocketAddr, secondary: bool) {
    admin(addr, secondary).emulator("DELETE", "calls", None);
}

/// The secondary's live haproxy.cfg (what its real haproxy runs).
fn live_cfg(addr: SocketAddr) -> String {
    admin(addr, true).emulator_text("haproxy.cfg")
}

fn config(pair: &HaPair, password: &str, port: u16) -> String {
    let n = 3;
    let servers: String = (1..=n)
        .map(|i| {
            format!(
                r#"
resource "homelab_opnsense_haproxy_server" "k3s{i}" {{
  name       = "k3s-control-{i}"
  address    = "127.0.6.1{i}"
  port       = {port}
  depends_on = [homelab_opnsense_hasync.this]
}}"#
            )
        })
        .collect();
    let pool = (1..=n)
        .map(|i| format!("homelab_opnsense_haproxy_server.k3s{i}.id"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"{}
{}
{}
resource "homelab_opnsense_haproxy_settings" "this" {{
  enabled    = true
  depends_on = [homelab_opnsense_hasync.this]
}}
{servers}
resource "homelab_opnsense_haproxy_backend" "k3s" {{
  name    = "k3s_servers"
  mode    = "tcp"
  servers = [{pool}]
}}
resource "homelab_opnsense_haproxy_frontend" "k3s" {{
  name            = "k3s_api"
  bind            = ["127.0.6.100:6443"]
  mode            = "tcp"
  default_backend = homelab_opnsense_haproxy_backend.k3s.id
}}
"#,
        required_providers(),
        pair.provider_hcl(),
        pair.hasync_hcl(password, &["haproxy", "virtualip"]),
    )
}

/// The secondary's haproxy runs `port` for every server and the synced frontend, and its API has the objects.
fn secondary_runs(b: SocketAddr, port: u16) -> Result<(), String> {
    let live = live_cfg(b);
    for i in 1..=3 {
        if !live.contains(&format!("127.0.6.1{i}:{port}")) {
            return Err(format!(
                "the secondary's live haproxy.cfg lacks server {i} on port {port}:\n{live}"
            ));
        }
    }
    if !live.contains("127.0.6.100:6443") {
        return Err(format!(
            "the secondary's live haproxy.cfg lacks the frontend:\n{live}"
        ));
    }
    let fe = api(b, true, "GET", "haproxy/settings/searchFrontends");
    if fe["rows"][0]["name"] != "k3s_api" {
        return Err(format!("the secondary has no synced frontend: {fe}"));
    }
    let st = api(b, true, "GET", "haproxy/service/status");
    if st["status"] != "running" {
        return Err(format!("the secondary's haproxy is {st}"));
    }
    Ok(())
}

const SYNC: &str = "/api/core/hasync_status/start/haproxy";
const CONFIGTEST: &str = "/api/haproxy/service/configtest";
const RECONFIGURE: &str = "/api/haproxy/service/reconfigure";

fn pair_case(version: TerraformVersion, password: &str, write_only: bool) {
    let pair = HaPair::start();
    let (p, b) = (pair.primary.addr(), pair.secondary.addr());
    TestCase::new(version)
        .step(
            Step::config(config(&pair, password, 6443))
                .named("HA sync settings on the primary; the provider syncs and deploys the secondary")
                .expect_action("homelab_opnsense_hasync.this", Action::Create)
                .check(move |st| {
                    let got = api(p, false, "GET", "core/hasync/get");
                    let h = &got["hasync"];
                    if h["password"] != HA_PASSWORD || h["syncitems"]["haproxy"]["selected"] != 1 {
                        return Err(format!("the primary's HA settings are {}", h["syncitems"]));
                    }
                    let in_state = st.attr("homelab_opnsense_hasync.this", "password").cloned();
                    match (write_only, in_state) {
                        (true, Some(Value::Null) | None) => Ok(()),
                        (false, Some(Value::String(s))) if s == HA_PASSWORD => Ok(()),
                        (w, other) => {
                            Err(format!("write_only={w}: password in state is {other:?}"))
                        }
                    }?;
                    secondary_runs(b, 6443)
                }),
        )
        .step(
            Step::config(config(&pair, password, 6444))
                .named("three servers change: one sync, one configtest and one reconfigure on the secondary (and the refresh's check)")
                .before(move |tf, _| {
                    if write_only {
                        let raw = tf
                            .read_file("terraform.tfstate")
                            .map_err(|e| e.to_string())?;
                        if raw.contains(HA_PASSWORD) {
                            return Err("terraform.tfstate holds the HA password".into());
                        }
                    }
                    clear_calls(p, false);
                    clear_calls(b, true);
                    Ok(())
                })
                .expect_action("homelab_opnsense_haproxy_server.k3s2", Action::Update)
                .check(move |_| {
                    secondary_runs(b, 6444)?;
                    let counts = (
                        posts(p, false, RECONFIGURE),
                        posts(p, false, SYNC),
                        posts(b, true, CONFIGTEST),
                        posts(b, true, RECONFIGURE),
                    );
                    // Two configtests on the secondary: the batch's, and the plan's refresh checking that the
                    // secondary runs its saved configuration (`secondary_haproxy_current`), which only renders.
                    if counts != (1, 1, 2, 1) {
                        return Err(format!(
                            "(primary reconfigures, syncs, secondary configtests, reconfigures) = {counts:?}, \
                             want (1, 1, 2, 1)"
                        ));
                    }
                    Ok(())
                }),
        )
        .step(
            Step::config(config(&pair, password, 6444))
                .named("a server edited by hand on the secondary is planned back, with a warning naming it and the secondary")
                .plan_only()
                .expect_non_empty_plan()
                .expect_action("homelab_opnsense_haproxy_server.k3s2", Action::Update)
                .before(move |_, st| {
                    let id = st
                        .and_then(|s| s.attr("homelab_opnsense_haproxy_server.k3s2", "id"))
                        .and_then(Value::as_str)
                        .ok_or("no server id in state")?
                        .to_string();
                    let r = api_with(
                        b,
                        true,
                        "POST",
                        &format!("haproxy/settings/setServer/{id}"),
                        r#"{"server": {"port": "7777"}}"#,
                    );
                    if r["result"] != "saved" {
                        return Err(format!("editing the secondary failed: {r}"));
                    }
                    Ok(())
                })
                .expect_warning(r"server `k3s-control-2` differs on the HA secondary(.|\n)*127\.0\.0\.1"),
        )
        .step(
            Step::config(config(&pair, password, 6444))
                .named("applying that plan syncs the primary's configuration back over the secondary")
                .check(move |_| {
                    let rows = api(b, true, "GET", "haproxy/settings/searchServers");
                    let port = rows["rows"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|r| r["name"] == "k3s-control-2")
                        .map(|r| r["port"].clone());
                    if port != Some(Value::from("6444")) {
                        return Err(format!("the secondary's copy was not synced back: {rows}"));
                    }
                    secondary_runs(b, 6444)
                }),
        )
        .step(
            Step::config(config(&pair, password, 6446))
                .named("the sync reaches the secondary but its reconfigure does not (opnsense/core #7498): the apply fails naming it")
                .before(move |_, _| {
                    secondary_fault(
                        b,
                        r#"{"kind":"drop_before","endpoint":"haproxy/service/reconfigure"}"#,
                    )
                })
                .expect_error(r"(?s)HA secondary.*127\.0\.0\.1"),
        )
        .step(
            Step::config(config(&pair, password, 6446))
                .named("its saved copies agree with the primary, yet the refresh sees it is not running them: the plan updates secondary_haproxy_current")
                .plan_only()
                .expect_non_empty_plan()
                .before(move |_, _| {
                    clear_secondary_faults(b);
                    let rows = api(b, true, "GET", "haproxy/settings/searchServers");
                    if !rows.to_string().contains("\"6446\"") {
                        return Err(format!("the sync should have reached the secondary: {rows}"));
                    }
                    if secondary_runs(b, 6446).is_ok() {
                        return Err("the secondary should still run the old ports".into());
                    }
                    Ok(())
                })
                .expect_action("homelab_opnsense_hasync.this", Action::Update)
                .expect_action("homelab_opnsense_haproxy_server.k3s1", Action::NoOp)
                .expect_warning(r"HAProxy on the HA secondary does not run its saved configuration"),
        )
        .step(
            Step::config(config(&pair, password, 6446))
                .named("applying it makes the secondary run its configuration")
                .check(move |_| secondary_runs(b, 6446)),
        )
        .step(
            Step::config(format!("{}{SECOND_FRONTEND}", config(&pair, password, 6446)))
                .named("a frontend created while the secondary is unreachable: the apply fails naming it, the frontend is kept in state, tainted")
                .before(move |_, _| {
                    secondary_fault(b, r#"{"kind":"drop_before"}"#)
                })
                .expect_error(r"(?s)HA secondary.*127\.0\.0\.1")
                .check(move |_| {
                    let rows = api(p, false, "GET", "haproxy/settings/searchFrontends");
                    if !rows.to_string().contains("k3s_api2") {
                        return Err(format!("the primary should hold the new frontend: {rows}"));
                    }
                    Ok(())
                }),
        )
        .step(
            Step::config(format!("{}{SECOND_FRONTEND}", config(&pair, password, 6446)))
                .named("with the secondary back, the tainted frontend is replaced and reaches the secondary")
                .before(move |tf, _| {
                    let raw = tf
                        .read_file("terraform.tfstate")
                        .map_err(|e| e.to_string())?;
                    let state: Value = serde_json::from_str(&raw).map_err(|e| e.to_string())?;
                    let status = state["resources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|r| r["type"] == "homelab_opnsense_haproxy_frontend" && r["name"] == "k3s2")
                        .map(|r| r["instances"][0]["status"].clone());
                    if status != Some(Value::from("tainted")) {
                        return Err(format!("the second frontend in state: {status:?}, want tainted"));
                    }
                    clear_secondary_faults(b);
                    Ok(())
                })
                .expect_action("homelab_opnsense_haproxy_frontend.k3s2", Action::Replace)
                .check(move |_| {
                    let on = |addr, secondary| {
                        let rows = api(addr, secondary, "GET", "haproxy/settings/searchFrontends");
                        rows["rows"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter(|r| r["name"] == "k3s_api2")
                            .count()
                    };
                    match (on(p, false), on(b, true)) {
                        (1, 1) => Ok(()),
                        n => Err(format!("copies of k3s_api2 (primary, secondary): {n:?}, want one each")),
                    }
                }),
        )
        .run();
    // The destroy went through the same path: the secondary no longer serves the frontend either.
    let live = pair
        .secondary
        .haproxy_cfg()
        .expect("haproxy deployed on the secondary");
    assert!(!live.contains("127.0.6.100:6443"), "{live}");
}

#[test]
fn hasync_settings_and_the_sync_they_drive_terraform_1_15_write_only() {
    if TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        pair_case(
            TerraformVersion::V1_15,
            &format!("password_wo = \"{HA_PASSWORD}\"\n  password_wo_version = 1"),
            true,
        );
    }
}

#[test]
fn hasync_settings_and_the_sync_they_drive_terraform_1_0_sensitive() {
    if TerraformVersion::selected().contains(&TerraformVersion::V1_0) {
        pair_case(
            TerraformVersion::V1_0,
            &format!("password = \"{HA_PASSWORD}\""),
            false,
        );
    }
}
