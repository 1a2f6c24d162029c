//! The fault matrix (issue 17): each case provokes one fault a homelab really has, through real Terraform 1.15
//! against the OPNsense emulator (whose HAProxy side is a real haproxy), asserts what must hold and writes its row
//! of `docs/reliability.md` ([`homelab_acceptance::reliability`]). For every case: the error names what failed,
//! no object on OPNsense is left that state does not know about (counted through the API), none is duplicated,
//! HAProxy's running configuration stays valid, and a plain re-apply converges to an empty plan.
//!
//! The host faults (sshd killed, power-off, link cut, reboot, full disk) and two applies on one cluster need the
//! host lab and live in the k3s test files that already build one (`k3s_robustness.rs`), which write their rows
//! the same way. `./acceptance-tests/dev reliability` runs them all and regenerates the document.
//!
//! Each test owns an emulator (its own port, state file and haproxy directory) and uses 127.x addresses only.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use homelab_acceptance::emulator_api::{free_port, AdminApi};
use homelab_acceptance::ha_pair::{HaPair, HA_PASSWORD};
use homelab_acceptance::reliability::{apply_summary, first_error, Group, Row};
use homelab_acceptance::terraform::{hcl_string, required_providers, PlanOutcome};
use homelab_acceptance::{Terraform, TerraformVersion};
use opnsense_emulator::{Config, Emulator, EmulatorHandle, FaultKind, FaultRule};
use serde_json::Value;

const KEY: &str = "rel1XNZob/8Oq8aC5r0kbNarNtdpoQU781fyoeaOBQsBwkXUt";
const SECRET: &str = "rel26XVrJ5ilAc/EmglCRC+0j2e57tRsjHwFepOseySWLM53pJASeTA3";

/// An emulator (plain HTTP) with its state under a fresh temp dir; its calls are logged to stderr.
fn emulator() -> (Arc<EmulatorHandle>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("config.json"),
        KEY,
        SECRET,
    );
    cfg.log_calls = true;
    (Arc::new(Emulator::start(cfg).unwrap()), dir)
}

fn provider(emu: &EmulatorHandle) -> String {
    format!(
        "{}\nprovider \"homelab\" {{\n  opnsense {{\n    url        = {}\n    api_key    = {}\n    api_secret = {}\n  }}\n}}\n",
        required_providers(),
        hcl_string(&emu.url()),
        hcl_string(KEY),
        hcl_string(SECRET),
    )
}

/// The seed's shape in small: two servers, a TCP check, a backend, a frontend on 127.0.0.1, HAProxy enabled,
/// a firewall alias, a VIP and a rule to it (item-family objects: each its own service, its own clean-up path).
fn topology(fe_port: u16, server_port: u16) -> String {
    format!(
        r#"
resource "homelab_opnsense_haproxy_server" "a" {{
  name    = "rel-a"
  address = "127.0.0.21"
  port    = {server_port}
}}
resource "homelab_opnsense_haproxy_server" "b" {{
  name    = "rel-b"
  address = "127.0.0.22"
  port    = {server_port}
}}
resource "homelab_opnsense_haproxy_healthcheck" "tcp" {{
  name     = "rel-tcp"
  type     = "tcp"
  interval = "10s"
}}
resource "homelab_opnsense_haproxy_backend" "pool" {{
  name         = "rel-pool"
  mode         = "tcp"
  servers      = [homelab_opnsense_haproxy_server.a.id, homelab_opnsense_haproxy_server.b.id]
  health_check = homelab_opnsense_haproxy_healthcheck.tcp.id
}}
resource "homelab_opnsense_haproxy_frontend" "api" {{
  name            = "rel-api"
  mode            = "tcp"
  bind            = ["127.0.0.1:{fe_port}"]
  default_backend = homelab_opnsense_haproxy_backend.pool.id
}}
resource "homelab_opnsense_haproxy_settings" "this" {{
  enabled = true
}}
resource "homelab_opnsense_firewall_alias" "lb" {{
  name    = "rel_lb"
  type    = "host"
  content = ["127.0.0.1"]
}}
resource "homelab_opnsense_vip" "api" {{
  interface   = "lan"
  mode        = "ipalias"
  address     = "192.0.2.250/32"
  description = "rel vip"
}}
resource "homelab_opnsense_firewall_rule" "to_vip" {{
  description      = "rel rule"
  interfaces       = ["lan"]
  action           = "pass"
  protocol         = "TCP"
  destination      = homelab_opnsense_firewall_alias.lb.name
  destination_port = "{fe_port}"
}}
"#
    )
}

/// Calls the emulator's API as an admin would (for counting and out-of-band edits); after a restart fault the
/// API may still be down, so a refused connection is retried for a while.
fn api(emu: &EmulatorHandle, method: &str, path: &str, body: Option<&Value>) -> Value {
    AdminApi::new(emu.addr(), KEY, SECRET)
        .waiting(Duration::from_secs(30))
        .call(method, path, body)
}

/// The managed objects on the box, as `type/name` (HAProxy servers, checks, backends, frontends; our aliases,
/// VIPs and rules, the last two by description).
fn objects_on_box(emu: &EmulatorHandle) -> Vec<String> {
    let model = api(emu, "GET", "haproxy/settings/get", None);
    let mut out = Vec::new();
    for (kind, path) in [
        ("homelab_opnsense_haproxy_server", ["servers", "server"]),
        (
            "homelab_opnsense_haproxy_healthcheck",
            ["healthchecks", "healthcheck"],
        ),
        ("homelab_opnsense_haproxy_backend", ["backends", "backend"]),
        (
            "homelab_opnsense_haproxy_frontend",
            ["frontends", "frontend"],
        ),
    ] {
        if let Some(m) = model["haproxy"][path[0]][path[1]].as_object() {
            for o in m.values() {
                out.push(format!("{kind}/{}", o["name"].as_str().unwrap_or("?")));
            }
        }
    }
    for (kind, path, field, ours) in [
        (
            "homelab_opnsense_firewall_alias",
            "firewall/alias/searchItem",
            "name",
            "rel_",
        ),
        (
            "homelab_opnsense_vip",
            "interfaces/vip_settings/searchItem",
            "descr",
            "rel ",
        ),
        (
            "homelab_opnsense_firewall_rule",
            "firewall/filter/searchRule",
            "description",
            "rel ",
        ),
    ] {
        let rows = api(emu, "GET", path, None);
        for r in rows["rows"].as_array().into_iter().flatten() {
            let name = r[field].as_str().unwrap_or("");
            if name.starts_with(ours) {
                out.push(format!("{kind}/{name}"));
            }
        }
    }
    out.sort();
    out
}

/// The same objects as state holds them (`type/name`; the singleton settings are not counted).
fn objects_in_state(tf: &Terraform) -> Vec<String> {
    let Ok(st) = tf.state() else {
        return Vec::new();
    };
    let mut out: Vec<String> = st
        .resources()
        .into_iter()
        .filter_map(|r| {
            let ty = r["type"].as_str()?;
            if ty == "homelab_opnsense_haproxy_settings" {
                return None;
            }
            // VIPs and rules have no name: they are told apart by their description, as in the UI.
            let label = match ty {
                "homelab_opnsense_vip" | "homelab_opnsense_firewall_rule" => "description",
                _ => "name",
            };
            Some(format!("{ty}/{}", r["values"][label].as_str()?))
        })
        .collect();
    out.sort();
    out
}

/// Box and state agree (no orphan, no duplicate, nothing missing); the row's `objects` text, or why not.
fn objects_match(emu: &EmulatorHandle, tf: &Terraform) -> Result<String, String> {
    let on_box = objects_on_box(emu);
    let in_state = objects_in_state(tf);
    let unique: BTreeSet<&String> = on_box.iter().collect();
    if unique.len() != on_box.len() {
        return Err(format!("duplicates on the box: {on_box:?}"));
    }
    if on_box != in_state {
        return Err(format!(
            "the box and state differ:\n  on the box: {on_box:?}\n  in state:   {in_state:?}"
        ));
    }
    Ok(format!("{} / {}", on_box.len(), in_state.len()))
}

/// haproxy is running and its live configuration passes `haproxy -c`.
fn haproxy_valid(emu: &EmulatorHandle) -> Result<String, String> {
    let Some(cfg) = emu.haproxy_cfg() else {
        return Ok("none deployed yet".into());
    };
    if emu.haproxy_pids().is_empty() {
        return Err("haproxy is not running".into());
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("live.cfg");
    std::fs::write(&f, cfg).unwrap();
    let out = std::process::Command::new(&emu.config().haproxy_bin)
        .arg("-c")
        .arg("-f")
        .arg(&f)
        .output()
        .map_err(|e| format!("running haproxy -c: {e}"))?;
    if out.status.success() {
        Ok("valid, running".into())
    } else {
        Err(format!(
            "haproxy -c refused the live config: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn describe_state(tf: &Terraform, total: usize) -> String {
    let n = tf.state().map(|s| s.resources().len()).unwrap_or(0);
    if n == total {
        format!("all {total} resources")
    } else {
        format!("{n} of {total} resources (the rest not created)")
    }
}

fn world(emu: &EmulatorHandle, body: &str) -> Terraform {
    let tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    tf.write_config(&format!("{}{body}", provider(emu)))
        .unwrap();
    tf.init().unwrap();
    tf
}

/// The common tail of a case: checks after the faulty apply, a plain re-apply with the faults cleared, both
/// empty plans; returns the row with its observed columns filled.
struct Observed {
    reported: String,
    state: String,
    objects: String,
    haproxy: String,
}

fn observe(
    emu: &EmulatorHandle,
    tf: &Terraform,
    first: &homelab_acceptance::process::Output,
    total: usize,
) -> Observed {
    Observed {
        reported: first_error(first),
        state: describe_state(tf, total),
        objects: objects_match(emu, tf)
            .unwrap_or_else(|e| panic!("after the faulty apply: {e}\n{first}")),
        haproxy: haproxy_valid(emu).unwrap_or_else(|e| panic!("after the faulty apply: {e}")),
    }
}

fn reapply(emu: &EmulatorHandle, tf: &Terraform) -> String {
    emu.clear_faults();
    let second = tf.apply(&[]).unwrap();
    assert!(second.success(), "the plain re-apply failed:\n{second}");
    tf.plans_empty()
        .unwrap_or_else(|e| panic!("not converged: {e}"));
    objects_match(emu, tf).unwrap_or_else(|e| panic!("after the re-apply: {e}"));
    haproxy_valid(emu).unwrap_or_else(|e| panic!("after the re-apply: {e}"));
    apply_summary(&second)
}

#[allow(clippy::too_many_arguments)]
fn row(
    id: &str,
    group: Group,
    order: u32,
    fault: &str,
    when: &str,
    o: Observed,
    next: String,
) -> Row {
    Row {
        id: id.into(),
        group,
        order,
        fault: fault.into(),
        when: when.into(),
        reported: o.reported,
        state: o.state,
        next_apply: next,
        objects: o.objects,
        haproxy: o.haproxy,
        etcd: "—".into(),
        converged: true,
        nothing_lost: true,
    }
}

const TOTAL: usize = 9;

/// HTTP 500 on writes and on the reconfigure: the retried writes land once; a reconfigure is not repeated blindly
/// (it is not idempotent on a busy box), so its batch fails with the API's error and the next apply deploys it.
#[test]
fn opnsense_http_500() {
    let (emu, _d) = emulator();
    let tf = world(&emu, &topology(free_port(), 6443));
    emu.fail_next("haproxy/settings/setServer", FaultKind::Status500, 2);
    emu.fail_next("firewall/alias/setItem", FaultKind::Status500, 1);
    emu.fail_next("haproxy/service/reconfigure", FaultKind::Status500, 1);
    let first = tf.apply(&[]).unwrap();
    let o = observe(&emu, &tf, &first, TOTAL);
    let next = reapply(&emu, &tf);
    row(
        "opnsense-http-500",
        Group::Opnsense,
        1,
        "HTTP 500 from the API (2× on server writes, 1× on an alias write, 1× on the HAProxy reconfigure)",
        "first apply, creating the seed-like topology",
        o,
        next,
    )
    .record();
}

/// Dropped connections: a write whose reply is lost (saved on the box), a write dropped before anything happened,
/// the configtest dropped. The retried upsert by client-chosen UUID never duplicates.
#[test]
fn opnsense_dropped_connections() {
    let (emu, _d) = emulator();
    let tf = world(&emu, &topology(free_port(), 6443));
    emu.fail_next("haproxy/settings/setServer", FaultKind::DropAfter, 2);
    emu.fail_next("haproxy/settings/setBackend", FaultKind::DropBefore, 1);
    emu.fail_next("haproxy/service/configtest", FaultKind::DropBefore, 1);
    let first = tf.apply(&[]).unwrap();
    let o = observe(&emu, &tf, &first, TOTAL);
    let next = reapply(&emu, &tf);
    row(
        "opnsense-dropped-connections",
        Group::Opnsense,
        2,
        "Dropped connections: 2 server writes lose their reply (saved), the backend write and one configtest are \
         cut before anything happens",
        "first apply",
        o,
        next,
    )
    .record();
}

/// 5 s stalls on the frontend write and on the reconfigure: slow, not broken (the per-request timeout is 30 s).
#[test]
fn opnsense_stalls() {
    let (emu, _d) = emulator();
    let tf = world(&emu, &topology(free_port(), 6443));
    emu.fail_next(
        "haproxy/settings/setFrontend",
        FaultKind::Delay { ms: 5000 },
        1,
    );
    emu.fail_next(
        "haproxy/service/reconfigure",
        FaultKind::Delay { ms: 5000 },
        1,
    );
    let t = Instant::now();
    let first = tf.apply(&[]).unwrap();
    let took = t.elapsed();
    assert!(
        first.success(),
        "a stall must only slow the apply down:\n{first}"
    );
    let mut o = observe(&emu, &tf, &first, TOTAL);
    o.reported = format!("{} (in {} s)", o.reported, took.as_secs());
    let next = reapply(&emu, &tf);
    row(
        "opnsense-stalls",
        Group::Opnsense,
        3,
        "5 s stalls (the frontend write and the reconfigure each answer after 5 s)",
        "first apply",
        o,
        next,
    )
    .record();
}

/// The API restarts in the middle of an apply and stays down for 9 s — longer than one call's retries — after
/// saving the first server. The failed creates must remove what they saved (their clean-up retries through the
/// restart), so the box holds only what state knows; the next apply creates the rest.
#[test]
fn opnsense_api_restart_mid_apply() {
    let (emu, _d) = emulator();
    let tf = world(&emu, &topology(free_port(), 6443));
    emu.fail_next(
        "haproxy/settings/setServer",
        FaultKind::Restart { down_ms: 9000 },
        1,
    );
    let first = tf.apply(&[]).unwrap();
    assert!(
        !first.success(),
        "the apply cannot succeed through a 9 s outage:\n{first}"
    );
    let text = first.combined();
    assert!(
        text.contains("connection failed") || text.contains("Could not"),
        "the error must say what failed:\n{text}"
    );
    assert!(
        !text.contains("half-created"),
        "the clean-up must outlast the restart:\n{text}"
    );
    let o = observe(&emu, &tf, &first, TOTAL);
    let next = reapply(&emu, &tf);
    row(
        "opnsense-api-restart",
        Group::Opnsense,
        4,
        "API restart: the reply to the first server write is lost, then the API refuses connections for 9 s",
        "first apply, right after the first object was saved",
        o,
        next,
    )
    .record();
}

/// The API restarts while the HAProxy reconfigure runs: haproxy is reloaded with the batch, the reply is lost and
/// the port refuses connections for a while. The batch must not be given up as failed (its objects are live), and
/// nothing may be left that state does not know about.
#[test]
fn opnsense_api_restart_during_reconfigure() {
    let (emu, _d) = emulator();
    let tf = world(&emu, &topology(free_port(), 6443));
    emu.fail_next(
        "haproxy/service/reconfigure",
        FaultKind::Restart { down_ms: 9000 },
        1,
    );
    let t = Instant::now();
    let first = tf.apply(&[]).unwrap();
    let took = t.elapsed();
    eprintln!("apply through the reconfigure restart: {:?}\n{first}", took);
    let o = observe(&emu, &tf, &first, TOTAL);
    let next = reapply(&emu, &tf);
    row(
        "opnsense-api-restart-reconfigure",
        Group::Opnsense,
        5,
        "API restart during the HAProxy reconfigure: haproxy reloads, the reply is lost, the API refuses connections for 9 s",
        "first apply, the batch's reconfigure",
        o,
        next,
    )
    .record();
}

/// A change haproxy's configtest refuses: nothing is deployed, the running config is untouched and keeps
/// serving, the saved change is reverted; the same apply fails again until the config is fixed.
#[test]
fn opnsense_configtest_failure() {
    let (emu, _d) = emulator();
    let fe = free_port();
    let good = topology(fe, 6443);
    let tf = world(&emu, &good);
    let ok = tf.apply(&[]).unwrap();
    assert!(ok.success(), "{ok}");
    let live = emu.haproxy_cfg().unwrap();
    let bad = good.replacen(
        "  port    = 6443\n}",
        "  port    = 6443\n  advanced = \"bogus-keyword\"\n}",
        1,
    );
    tf.write_config(&format!("{}{bad}", provider(&emu)))
        .unwrap();
    let first = tf.apply(&[]).unwrap();
    let text = first.combined();
    assert!(
        text.contains("HAProxy configtest failed") && text.contains("bogus-keyword"),
        "the error must carry haproxy's own message:\n{text}"
    );
    assert_eq!(emu.haproxy_cfg().unwrap(), live, "the live config changed");
    let mut o = observe(&emu, &tf, &first, TOTAL);
    o.state = "the previous (live) values; the refused change not recorded".into();
    // The same config fails the same way (nothing half-applied); fixed, it converges.
    let again = tf.apply(&[]).unwrap();
    assert!(!again.success() && again.combined().contains("HAProxy configtest failed"));
    assert_eq!(emu.haproxy_cfg().unwrap(), live);
    tf.write_config(&format!("{}{good}", provider(&emu)))
        .unwrap();
    tf.plans_empty()
        .unwrap_or_else(|e| panic!("the old config must plan empty: {e}"));
    row(
        "opnsense-configtest-failure",
        Group::Opnsense,
        6,
        "configtest failure on reconfigure (a server's `advanced` option haproxy does not know)",
        "an update apply",
        o,
        "the same error again until the configuration is fixed; with it reverted: nothing to do (empty plan)"
            .into(),
    )
    .record();
}

/// Objects changed and deleted by hand between applies: a refresh sees both, the plan updates one back and
/// re-creates the other, and the apply repairs them without touching the rest.
#[test]
fn opnsense_changed_or_deleted_by_hand() {
    let (emu, _d) = emulator();
    let tf = world(&emu, &topology(free_port(), 6443));
    let ok = tf.apply(&[]).unwrap();
    assert!(ok.success(), "{ok}");
    let st = tf.state().unwrap();
    let id = |a: &str| {
        st.attr(a, "id")
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    };
    let a = id("homelab_opnsense_haproxy_server.a");
    let hc = id("homelab_opnsense_haproxy_healthcheck.tcp");
    let r = api(
        &emu,
        "POST",
        &format!("haproxy/settings/setServer/{a}"),
        Some(&serde_json::json!({"server": {"port": "9999"}})),
    );
    assert_eq!(r["result"], "saved", "{r}");
    // The check is in use by the backend: unlink it in the UI first, then delete it (as a user would).
    let be = id("homelab_opnsense_haproxy_backend.pool");
    api(
        &emu,
        "POST",
        &format!("haproxy/settings/setBackend/{be}"),
        Some(&serde_json::json!({"backend": {"healthCheck": ""}})),
    );
    let r = api(
        &emu,
        "POST",
        &format!("haproxy/settings/delHealthcheck/{hc}"),
        None,
    );
    assert_eq!(r["result"], "deleted", "{r}");
    let plan = tf.plan(&[]).unwrap();
    let PlanOutcome::Changes(p) = &plan else {
        panic!("drift must plan changes:\n{}", plan.output());
    };
    let text = p.combined();
    assert!(
        text.contains("homelab_opnsense_haproxy_server.a will be updated in-place"),
        "{text}"
    );
    assert!(
        text.contains("homelab_opnsense_haproxy_healthcheck.tcp will be created"),
        "{text}"
    );
    let o = Observed {
        reported: "no error: the refresh plans 1 to create (the deleted check), 2 to update in place (the edited \
                   server, the backend's link)"
            .into(),
        state: "the applied values until the refresh; the deleted object then drops out".into(),
        objects: format!(
            "{} / {} (the check deleted by hand is still in state until a refresh)",
            objects_on_box(&emu).len(),
            objects_in_state(&tf).len()
        ),
        haproxy: haproxy_valid(&emu).unwrap(),
    };
    let next = reapply(&emu, &tf);
    row(
        "opnsense-drift",
        Group::Opnsense,
        7,
        "An object changed by hand (a server's port) and one deleted by hand (the health check) between applies",
        "between two applies",
        o,
        next,
    )
    .record();
}

// ---- Terraform ----

/// The HA secondary unreachable while a batch goes live: the primary takes the change (configtest, reconfigure),
/// the secondary drops every call (the sync's push included), so the apply fails naming the secondary. The next plain apply,
/// with the secondary back, must bring the pair together again: its refresh reads the secondary's stale copies, so
/// the plan updates them and the apply syncs and deploys the primary's configuration there.
#[test]
fn opnsense_ha_secondary_unreachable_mid_batch() {
    let pair = HaPair::start_keyed(KEY, SECRET);
    let (primary, backup) = (&pair.primary, &pair.secondary);
    let (fe, port) = (free_port(), free_port());
    let body = |server_port: u16| {
        format!(
            r#"{req}
{provider}
{hasync}
resource "homelab_opnsense_haproxy_settings" "this" {{
  enabled    = true
  depends_on = [homelab_opnsense_hasync.this]
}}
resource "homelab_opnsense_haproxy_server" "a" {{
  name       = "rel-ha-a"
  address    = "127.0.0.31"
  port       = {server_port}
  depends_on = [homelab_opnsense_hasync.this]
}}
resource "homelab_opnsense_haproxy_server" "b" {{
  name       = "rel-ha-b"
  address    = "127.0.0.32"
  port       = {server_port}
  depends_on = [homelab_opnsense_hasync.this]
}}
resource "homelab_opnsense_haproxy_backend" "pool" {{
  name    = "rel-ha-pool"
  mode    = "tcp"
  servers = [homelab_opnsense_haproxy_server.a.id, homelab_opnsense_haproxy_server.b.id]
}}
resource "homelab_opnsense_haproxy_frontend" "api" {{
  name            = "rel-ha-api"
  mode            = "tcp"
  bind            = ["127.0.0.1:{fe}"]
  default_backend = homelab_opnsense_haproxy_backend.pool.id
}}
"#,
            req = required_providers(),
            provider = pair.provider_hcl(),
            hasync = pair.hasync_hcl(
                &format!("password = {}", hcl_string(HA_PASSWORD)),
                &["haproxy"]
            ),
        )
    };
    let tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    tf.write_config(&body(port)).unwrap();
    tf.init().unwrap();
    let ok = tf.apply(&[]).unwrap();
    assert!(ok.success(), "{ok}");
    let live_on = |emu: &EmulatorHandle, p: u16| {
        emu.haproxy_cfg().is_some_and(|c| {
            c.contains(&format!("127.0.0.31:{p}")) && c.contains(&format!("127.0.0.32:{p}"))
        })
    };
    assert!(
        live_on(backup, port),
        "the secondary does not run the pair's config"
    );

    // The servers move to a new port; every call to the secondary is dropped meanwhile (the primary's sync push
    // and the provider's configtest alike), as when the box is unreachable.
    let new_port = free_port();
    tf.write_config(&body(new_port)).unwrap();
    backup.add_fault(FaultRule::new(None, FaultKind::DropBefore));
    let first = tf.apply(&[]).unwrap();
    assert!(
        !first.success(),
        "the apply cannot succeed with the secondary unreachable:\n{first}"
    );
    let text = first.combined();
    assert!(
        text.contains(&backup.url()) || text.contains(&backup.addr().to_string()),
        "the error must name the secondary:\n{text}"
    );
    assert!(
        live_on(primary, new_port),
        "the primary must run the change"
    );
    assert!(
        live_on(backup, port),
        "the secondary keeps its previous config"
    );
    let haproxy = haproxy_valid(primary).unwrap_or_else(|e| panic!("the primary: {e}"));
    let n_state = tf.state().map(|s| s.resources().len()).unwrap_or(0);
    let state = format!("all {n_state} resources; the servers' update not recorded (Terraform keeps the prior values of a failed update)");
    let objects = format!(
        "{} (the primary; the secondary holds the same objects, with the old ports)",
        objects_match(primary, &tf).unwrap_or_else(|e| panic!("after the faulty apply: {e}"))
    );
    let reported = first_error(&first);

    backup.clear_faults();
    let second = tf.apply(&[]).unwrap();
    assert!(second.success(), "the plain re-apply failed:\n{second}");
    assert!(
        live_on(backup, new_port),
        "the re-apply must bring the secondary up to date:\n{second}"
    );
    tf.plans_empty()
        .unwrap_or_else(|e| panic!("not converged: {e}"));
    haproxy_valid(backup).unwrap_or_else(|e| panic!("the secondary after the re-apply: {e}"));
    Row {
        id: "opnsense-ha-secondary-unreachable".into(),
        group: Group::Opnsense,
        order: 8,
        fault: "The HA secondary unreachable (every call to it dropped, the sync's push included) while a batch goes live".into(),
        when: "an update apply (two servers change port), after the primary's reconfigure".into(),
        reported: format!("{reported}: the detail names the secondary"),
        state,
        next_apply: format!(
            "{} (the refresh reads the secondary's old ports, so the plan updates them and the apply deploys there)",
            apply_summary(&second)
        ),
        objects,
        haproxy: format!("{haproxy} on both"),
        etcd: "—".into(),
        converged: true,
        nothing_lost: true,
    }
    .record();
}

/// SIGINT (Ctrl-C) while a reconfigure is under way (it stalls 6 s): Terraform asks the provider to stop, the
/// provider lets the write in flight finish within its 10 s wind-down and reports what landed, so state records
/// what was done; nothing is left behind and the next apply finishes the rest.
#[test]
fn terraform_sigint_mid_apply() {
    let (emu, _d) = emulator();
    let tf = world(&emu, &topology(free_port(), 6443));
    emu.fail_next(
        "haproxy/service/reconfigure",
        FaultKind::Delay { ms: 6000 },
        1,
    );
    let mut running = tf
        .spawn(&["apply", "-input=false", "-no-color", "-auto-approve"])
        .unwrap();
    let configtest_done = |_: &homelab_acceptance::process::Running| {
        emu.calls()
            .iter()
            .any(|c| c.contains("haproxy/service/configtest"))
    };
    assert!(
        running.wait_for(Duration::from_secs(60), configtest_done),
        "the apply never reached the reconfigure"
    );
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    running.signal(libc::SIGINT).unwrap();
    let first = tf.wait(running).unwrap();
    let stopped_in = t.elapsed();
    let text = first.combined();
    assert!(
        !first.success(),
        "an interrupted apply must not report success:\n{text}"
    );
    assert!(text.contains("Interrupt received"), "{text}");
    assert!(
        !text.contains("plugin exited") && !text.contains("Plugin did not respond"),
        "the provider died on Ctrl-C:\n{text}"
    );
    assert!(
        stopped_in < Duration::from_secs(15),
        "the provider took {stopped_in:?} to stop (its grace period is 10 s)"
    );
    let mut o = observe(&emu, &tf, &first, TOTAL);
    o.reported = format!(
        "{} (Terraform exited {} s after SIGINT)",
        o.reported,
        stopped_in.as_secs()
    );
    let next = reapply(&emu, &tf);
    row(
        "terraform-sigint",
        Group::Terraform,
        1,
        "SIGINT (Ctrl-C) in the middle of an apply",
        "while the HAProxy reconfigure of the first batch runs (stalled 6 s)",
        o,
        next,
    )
    .record();
}

/// Two applies at once on the same configuration and state: Terraform's state lock lets one run and refuses the
/// other at once, so the objects are never written twice. (Two runs with separate states on one cluster are
/// outside what a lock in one provider process can see: see the preface.)
#[test]
fn terraform_two_applies_at_once() {
    let (emu, _d) = emulator();
    let tf = world(&emu, &topology(free_port(), 6443));
    emu.fail_next(
        "haproxy/service/reconfigure",
        FaultKind::Delay { ms: 4000 },
        1,
    );
    let mut first = tf
        .spawn(&["apply", "-input=false", "-no-color", "-auto-approve"])
        .unwrap();
    assert!(
        first.wait_for(Duration::from_secs(60), |_| emu
            .calls()
            .iter()
            .any(|c| c.contains("haproxy/settings/set"))),
        "the first apply never started writing"
    );
    let second = tf.apply(&[]).unwrap();
    let text = second.combined();
    assert!(
        !second.success(),
        "the second apply must be refused:\n{text}"
    );
    assert!(text.contains("Error acquiring the state lock"), "{text}");
    let first = tf.wait(first).unwrap();
    assert!(first.success(), "the first apply must finish:\n{first}");
    let mut o = observe(&emu, &tf, &first, TOTAL);
    o.reported = format!(
        "the second: {} (the first finished normally)",
        first_error(&second)
    );
    let next = reapply(&emu, &tf);
    row(
        "terraform-two-applies",
        Group::Terraform,
        2,
        "Two applies at once on the same configuration and state",
        "the second starts while the first writes",
        o,
        next,
    )
    .record();
}

/// `-parallelism=50` on 90 OPNsense objects (30 servers, 30 backends, 30 frontends): no duplicate; few reconfigures
/// (a level of 30 waiting writers is configtested and answered but one, so the levels go live together: see
/// `src/opnsense/coalesce.rs`), and every reconfigure follows a configtest of the same saved configuration (no
/// HAProxy write between them).
#[test]
fn terraform_parallelism_50() {
    let (emu, _d) = emulator();
    let n = 30;
    let mut body = String::from(
        "resource \"homelab_opnsense_haproxy_settings\" \"this\" {\n  enabled = true\n}\n",
    );
    for i in 0..n {
        let port = free_port();
        body.push_str(&format!(
            r#"
resource "homelab_opnsense_haproxy_server" "s{i}" {{
  name    = "par-s{i}"
  address = "127.0.1.{}"
  port    = 8080
}}
resource "homelab_opnsense_haproxy_backend" "b{i}" {{
  name    = "par-b{i}"
  mode    = "tcp"
  servers = [homelab_opnsense_haproxy_server.s{i}.id]
}}
resource "homelab_opnsense_haproxy_frontend" "f{i}" {{
  name            = "par-f{i}"
  mode            = "tcp"
  bind            = ["127.0.0.1:{port}"]
  default_backend = homelab_opnsense_haproxy_backend.b{i}.id
}}
"#,
            i + 1
        ));
    }
    let tf = world(&emu, &body);
    let first = tf.apply(&["-parallelism=50"]).unwrap();
    assert!(first.success(), "{first}");
    let calls = emu.calls();
    let count = |p: &str| {
        calls
            .iter()
            .filter(|c| c.contains(p) && c.ends_with("-> 200"))
            .count()
    };
    let (tests, reconfigures) = (
        count("haproxy/service/configtest"),
        count("haproxy/service/reconfigure"),
    );
    // Walk the call log in order: a reconfigure must come after a passing configtest with no HAProxy write since.
    let mut tested_since_write = false;
    for c in &calls {
        if c.starts_with("POST") && c.contains("/api/haproxy/settings/") {
            tested_since_write = false;
        } else if c.contains("haproxy/service/configtest") && c.ends_with("-> 200") {
            tested_since_write = true;
        } else if c.contains("haproxy/service/reconfigure") {
            assert!(
                tested_since_write,
                "a reconfigure without a configtest of the same configuration before it: {calls:#?}"
            );
        }
    }
    assert!(
        tests >= reconfigures,
        "{tests} configtests, {reconfigures} reconfigures"
    );
    assert!(
        (1..=3).contains(&reconfigures),
        "{reconfigures} reconfigures for 3 dependency levels of 30 objects at -parallelism=50"
    );
    let on_box = objects_on_box(&emu);
    assert_eq!(on_box.len(), 3 * n, "{on_box:?}");
    let mut o = observe(&emu, &tf, &first, 3 * n + 1);
    o.reported = format!(
        "{} ({reconfigures} reconfigures, each after a configtest of the same configuration; {tests} configtests; for {} objects)",
        o.reported,
        3 * n
    );
    let next = reapply(&emu, &tf);
    row(
        "terraform-parallelism-50",
        Group::Terraform,
        3,
        "`-parallelism=50` on 90 OPNsense objects",
        "first apply",
        o,
        next,
    )
    .record();
}

// ---- Hosts (soak: one lab of 5 servers + 1 agent shared by every host case, in order) ----

mod hosts {
    use super::*;
    use homelab_acceptance::lab_support::{enter_netns, k3s_artifacts, lab_binary};
    use homelab_acceptance::process::Output;
    use homelab_acceptance::terraform::normalize_diagnostics;
    use homelab_lab::{Lab, LabSpec};
    use std::path::{Path, PathBuf};

    const VERSION: &str = "v1.31.5+k3s1";
    const TOKEN: &str = "reliability-cluster-secret";
    const INSTALL_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k3s-sim/install.sh");
    const SERVERS: [&str; 5] = [
        "k8s-control-1",
        "k8s-control-2",
        "k8s-control-3",
        "k8s-control-4",
        "k8s-control-5",
    ];
    const AGENT: &str = "k8s-worker-1";

    fn ip(lab: &Lab, host: &str) -> String {
        lab.host(host).unwrap().ip.to_string()
    }

    /// The install script with a pause first (a slow download), so a fault injected once it began lands inside.
    fn slow_install_script(dir: &Path) -> PathBuf {
        let text = std::fs::read_to_string(INSTALL_SH).unwrap();
        let body = text.strip_prefix("#!/bin/sh\n").unwrap_or(&text);
        let path = dir.join("install-slow.sh");
        std::fs::write(&path, format!("#!/bin/sh\nsleep 3\n{body}")).unwrap();
        path
    }

    fn install(script: &Path, art: &Path) -> String {
        format!(
            "  install_script = file({})\n  install_env = {{ INSTALL_K3S_SIM_ARTIFACTS = {} }}\n",
            hcl_string(&script.display().to_string()),
            hcl_string(&art.display().to_string()),
        )
    }

    /// `servers` of the cluster (1 = the init server) and, with `agent`, the worker joining through the first
    /// server.
    fn cluster(lab: &Lab, script: &Path, art: &Path, servers: usize, agent: bool) -> String {
        let init_ip = ip(lab, SERVERS[0]);
        let inst = install(script, art);
        let mut text = format!(
            "{req}
provider \"homelab\" {{
  ssh {{
    user        = \"root\"
    private_key = file({key})
    known_hosts = file({kh})
  }}
}}
resource \"homelab_k3s_server\" \"s1\" {{
  role              = \"init\"
  token             = \"{TOKEN}\"
  version           = \"{VERSION}\"
  kubeconfig_server = \"https://{init_ip}:6443\"
{inst}  host {{ address = \"{init_ip}\" }}
  timeouts {{ create = \"90s\" }}
}}
",
            req = required_providers(),
            key = hcl_string(&lab.ssh_key().display().to_string()),
            kh = hcl_string(&lab.known_hosts().display().to_string()),
        );
        for (i, host) in SERVERS.iter().enumerate().take(servers).skip(1) {
            text.push_str(&format!(
                "resource \"homelab_k3s_server\" \"s{n}\" {{
  role       = \"join\"
  server_url = \"https://{init_ip}:6443\"
  token      = homelab_k3s_server.s1.join_token
  version    = \"{VERSION}\"
{inst}  host {{ address = \"{a}\" }}
  timeouts {{ create = \"90s\" }}
}}
",
                n = i + 1,
                a = ip(lab, host),
            ));
        }
        if agent {
            text.push_str(&format!(
                "resource \"homelab_k3s_agent\" \"a1\" {{
  server_url = \"https://{init_ip}:6443\"
  token      = homelab_k3s_server.s1.join_token
  version    = \"{VERSION}\"
{inst}  host {{ address = \"{a}\" }}
  timeouts {{ create = \"45s\" }}
}}
",
                a = ip(lab, AGENT),
            ));
        }
        text
    }

    fn sh(lab: &Lab, host: &str, script: &str) -> String {
        match lab.exec(host, script) {
            Ok(o) => {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            }
            Err(e) => format!("({host}: {e})"),
        }
    }

    fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let t = Instant::now();
        while t.elapsed() < limit {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn install_began(lab: &Lab, host: &str) -> bool {
        lab.exec(host, "test -e /etc/rancher/k3s/config.yaml")
            .is_ok_and(|o| o.status.success())
    }

    /// etcd's voters and learners as the first server sees them (`/db/info`).
    fn etcd(lab: &Lab) -> (usize, usize) {
        let raw = sh(
            lab,
            SERVERS[0],
            "k3s kubectl --request-timeout=10s get --raw /db/info 2>/dev/null",
        );
        let v: Value = serde_json::from_str(raw.trim()).unwrap_or(Value::Null);
        let members = v["members"].as_array().cloned().unwrap_or_default();
        let learners = members.iter().filter(|m| m["isLearner"] == true).count();
        (members.len() - learners, learners)
    }

    fn etcd_text(lab: &Lab) -> String {
        let (v, l) = etcd(lab);
        let voters = if v == 1 { "voter" } else { "voters" };
        if l == 0 {
            format!("{v} {voters}")
        } else {
            format!("{v} {voters}, {l} learner(s)")
        }
    }

    fn flat(out: &Output) -> String {
        normalize_diagnostics(&out.combined())
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The first diagnostic, and whether its output names the host (by address).
    fn named(out: &Output, host_ip: &str) -> String {
        if out.success() {
            return first_error(out);
        }
        let named = flat(out).contains(host_ip);
        format!(
            "{}{}",
            first_error(out),
            if named {
                format!(": the detail names {host_ip}:22")
            } else {
                String::new()
            }
        )
    }

    fn state_text(tf: &Terraform) -> String {
        let st = tf.state().map(|s| s.addresses()).unwrap_or_default();
        let short: Vec<String> = st
            .iter()
            .map(|a| a.rsplit('.').next().unwrap_or(a).to_string())
            .collect();
        format!("{} ({})", short.len(), short.join(", "))
    }

    /// The re-apply with the fault gone converges (both plans empty) and etcd has `voters` voters, no learner.
    fn converge(tf: &Terraform, lab: &Lab, voters: usize) -> Result<String, String> {
        let out = tf.apply(&[]).map_err(|e| e.to_string())?;
        if !out.success() {
            return Err(format!("the plain re-apply failed:\n{out}"));
        }
        tf.plans_empty()?;
        if !wait_until(Duration::from_secs(30), || etcd(lab) == (voters, 0)) {
            return Err(format!(
                "etcd after the re-apply: {} (want {voters} voters)",
                etcd_text(lab)
            ));
        }
        Ok(apply_summary(&out))
    }

    #[allow(clippy::too_many_arguments)]
    fn host_row(
        id: &str,
        order: u32,
        fault: &str,
        when: &str,
        reported: String,
        state: String,
        next: String,
        etcd: String,
    ) -> Row {
        Row {
            id: id.into(),
            group: if id.starts_with("terraform") {
                Group::Terraform
            } else {
                Group::Hosts
            },
            order,
            fault: fault.into(),
            when: when.into(),
            reported,
            state,
            next_apply: next,
            objects: "—".into(),
            haproxy: "—".into(),
            etcd,
            converged: true,
            nothing_lost: true,
        }
    }

    /// Spawns an apply, waits until `host`'s install began, runs `fault`, and returns the apply's output.
    fn apply_with_fault(
        tf: &Terraform,
        lab: &mut Lab,
        host: &str,
        fault: impl FnOnce(&mut Lab),
    ) -> Result<Output, String> {
        let running = tf
            .spawn(&["apply", "-input=false", "-no-color", "-auto-approve"])
            .map_err(|e| e.to_string())?;
        if !wait_until(Duration::from_secs(120), || install_began(lab, host)) {
            return Err(format!(
                "{host}'s install never began:\n{}",
                tf.wait(running).unwrap()
            ));
        }
        std::thread::sleep(Duration::from_millis(800));
        fault(lab);
        tf.wait(running).map_err(|e| e.to_string())
    }

    #[test]
    fn hosts_faults_on_one_cluster() {
        if !homelab_acceptance::paths::soak() {
            eprintln!(
                "skipped: the host cases of the fault matrix run with --soak (or dev reliability)"
            );
            return;
        }
        assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
        lab_binary();
        let tmp = tempfile::tempdir().unwrap();
        let mut spec = LabSpec::new("hlrel");
        spec.servers = 5;
        spec.agents = 1;
        spec.opnsense = false;
        spec.root = Some(tmp.path().join("labs"));
        let mut guard = Lab::up_guarded(&spec).unwrap();
        let art = k3s_artifacts("reliability-hosts", VERSION, &[(VERSION, None)]);
        let script = slow_install_script(tmp.path());
        let cfg = |lab: &Lab, n: usize, agent: bool| cluster(lab, &script, &art, n, agent);
        let ws = homelab_lab::ns::named_netns(&guard.lab().state().ws_netns);
        let lab = guard.lab_mut();
        let result = std::thread::scope(|s| {
            s.spawn(|| -> Result<(), String> {
                enter_netns(&ws);
                let mut tf = Terraform::new(TerraformVersion::V1_15).map_err(|e| e.to_string())?;
                tf.set_timeout(Duration::from_secs(300));
                tf.write_config(&cfg(lab, 1, false)).unwrap();
                tf.init().map_err(|e| e.to_string())?;
                let out = tf.apply(&[]).map_err(|e| e.to_string())?;
                if !out.success() {
                    return Err(format!("the first server did not come up:\n{out}"));
                }

                // 1. sshd killed mid-command on a joining server.
                tf.write_config(&cfg(lab, 2, false)).unwrap();
                let out = apply_with_fault(&tf, lab, SERVERS[1], |lab| {
                    let n = lab.drop_ssh_sessions(SERVERS[1]).unwrap();
                    eprintln!("killed {n} sshd session processes on {}", SERVERS[1]);
                })?;
                eprintln!("sshd killed:\n{out}");
                let text = flat(&out);
                if !out.success() && !text.contains(&ip(lab, SERVERS[1])) && !text.contains(SERVERS[1]) {
                    return Err(format!("the error does not name the host:\n{out}"));
                }
                let reported = named(&out, &ip(lab, SERVERS[1]));
                let (state, etcd_after) = (state_text(&tf), etcd_text(lab));
                let next = converge(&tf, lab, 2)?;
                host_row("hosts-sshd-killed", 1, "sshd killed mid-command (every session process of the joining server)",
                    "while the second server's install runs", reported, state, next, etcd_after).record();

                // 2. A server powered off during its join.
                tf.write_config(&cfg(lab, 3, false)).unwrap();
                let out = apply_with_fault(&tf, lab, SERVERS[2], |lab| lab.stop_host(SERVERS[2]).unwrap())?;
                eprintln!("powered off:\n{out}");
                if out.success() {
                    return Err(format!("the apply succeeded although the joining server was off:\n{out}"));
                }
                let text = flat(&out);
                if !text.contains(&ip(lab, SERVERS[2])) && !text.contains(SERVERS[2]) {
                    return Err(format!("the error does not name the host:\n{out}"));
                }
                let reported = named(&out, &ip(lab, SERVERS[2]));
                let (state, etcd_after) = (state_text(&tf), etcd_text(lab));
                let (v, _) = etcd(lab);
                if v < 2 {
                    return Err(format!("quorum lost with the joiner off: {etcd_after}"));
                }
                lab.start_host(SERVERS[2]).map_err(|e| e.to_string())?;
                let next = converge(&tf, lab, 3)?;
                host_row("hosts-power-off-during-join", 2, "A server powered off during its join",
                    "while the third server's install runs", reported, state,
                    format!("(after power-on) {next}"), etcd_after).record();

                // 3. The first server's link cut after it is up, before the agent joins through it.
                tf.write_config(&cfg(lab, 3, true)).unwrap();
                let out = apply_with_fault(&tf, lab, AGENT, |lab| lab.cut_link(SERVERS[0]).unwrap())?;
                lab.restore_link(SERVERS[0]).map_err(|e| e.to_string())?;
                eprintln!("link cut:\n{out}");
                if out.success() {
                    return Err(format!("the agent joined through a server with no link:\n{out}"));
                }
                let reported = named(&out, &ip(lab, AGENT));
                let (state, etcd_after) = (state_text(&tf), etcd_text(lab));
                let next = converge(&tf, lab, 3)?;
                host_row("hosts-link-cut-before-agents", 3, "The first server's link cut after the servers are up, before the agent joins through it",
                    "while the agent's install runs", reported, state, format!("(link back) {next}"), etcd_after).record();

                // 4. A host rebooted between applies.
                lab.restart_host(SERVERS[1]).map_err(|e| e.to_string())?;
                if !wait_until(Duration::from_secs(60), || etcd(lab) == (3, 0)) {
                    return Err(format!("the rebooted server did not rejoin: {}", etcd_text(lab)));
                }
                let plan = tf.plan(&[]).map_err(|e| e.to_string())?;
                let reported = match &plan {
                    PlanOutcome::Empty(_) => "nothing: the refreshed plan is empty".to_string(),
                    other => return Err(format!("a reboot must not plan changes:\n{}", other.output())),
                };
                let (state, etcd_after) = (state_text(&tf), etcd_text(lab));
                let next = converge(&tf, lab, 3)?;
                host_row("hosts-reboot-between-applies", 4, "A server rebooted between applies",
                    "between two applies", reported, state, next, etcd_after).record();

                // 5. A full disk on a host: the install cannot write the k3s binary. The agent is removed first
                // (uninstalled), then added back onto a full /usr/local/bin (a 512 KiB tmpfs over it).
                tf.write_config(&cfg(lab, 3, false)).unwrap();
                let out = tf.apply(&[]).map_err(|e| e.to_string())?;
                if !out.success() {
                    return Err(format!("removing the agent failed:\n{out}"));
                }
                let full = sh(lab, AGENT, "mount -t tmpfs -o size=512k tmpfs /usr/local/bin && echo mounted");
                if !full.contains("mounted") {
                    return Err(format!("could not fill the agent's disk: {full}"));
                }
                tf.write_config(&cfg(lab, 3, true)).unwrap();
                let out = tf.apply(&[]).map_err(|e| e.to_string())?;
                eprintln!("full disk:\n{out}");
                if out.success() {
                    return Err(format!("the install succeeded on a full disk:\n{out}"));
                }
                let text = flat(&out);
                if !text.contains(&ip(lab, AGENT)) || !text.contains("No space left on device") {
                    return Err(format!("the error does not name the host and the full disk:\n{out}"));
                }
                let reported = format!(
                    "{}: the detail names {}:22 and the install's own \"No space left on device\"",
                    first_error(&out),
                    ip(lab, AGENT)
                );
                let (state, etcd_after) = (state_text(&tf), etcd_text(lab));
                let freed = sh(lab, AGENT, "umount /usr/local/bin && echo freed");
                if !freed.contains("freed") {
                    return Err(format!("could not free the agent's disk: {freed}"));
                }
                let next = converge(&tf, lab, 3)?;
                host_row("hosts-full-disk", 5, "A full disk on a host (the agent's /usr/local/bin has no room for k3s)",
                    "while the agent installs", reported, state, format!("(space freed) {next}"), etcd_after).record();

                // 6. A host rebooted during an apply: the agent is removed again and re-added, and the host
                // reboots (powered off and straight back on) while its install runs.
                tf.write_config(&cfg(lab, 3, false)).unwrap();
                let out = tf.apply(&[]).map_err(|e| e.to_string())?;
                if !out.success() {
                    return Err(format!("removing the agent failed:\n{out}"));
                }
                if install_began(lab, AGENT) {
                    return Err("the agent's removal left its config.yaml behind".into());
                }
                tf.write_config(&cfg(lab, 3, true)).unwrap();
                let out = apply_with_fault(&tf, lab, AGENT, |lab| lab.restart_host(AGENT).unwrap())?;
                eprintln!("rebooted during the apply:\n{out}");
                let text = flat(&out);
                if !out.success() && !text.contains(&ip(lab, AGENT)) && !text.contains(AGENT) {
                    return Err(format!("the error does not name the host:\n{out}"));
                }
                let reported = named(&out, &ip(lab, AGENT));
                let (state, etcd_after) = (state_text(&tf), etcd_text(lab));
                let (v, _) = etcd(lab);
                if v != 3 {
                    return Err(format!("the servers' etcd changed while an agent rebooted: {etcd_after}"));
                }
                let next = converge(&tf, lab, 3)?;
                host_row("hosts-reboot-during-apply", 6, "A host rebooted during an apply (the joining agent, powered off and straight back on)",
                    "while the agent's install runs", reported, state, next, etcd_after).record();

                // 7. Two applies at once on one cluster from two states: this one adds the fourth server, a second
                // working directory with its own state adds the fifth, both joining through the first server at
                // the same moment. The per-cluster lock lives in one provider process and cannot see the other
                // run; what keeps the joins apart is etcd's one-learner rule, which k3s waits out.
                let token = tf
                    .state()
                    .map_err(|e| e.to_string())?
                    .attr("homelab_k3s_server.s1", "join_token")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .ok_or("no join_token in state")?;
                let init_ip = ip(lab, SERVERS[0]);
                let other = Terraform::new(TerraformVersion::V1_15).map_err(|e| e.to_string())?;
                let mut other = other;
                other.set_timeout(Duration::from_secs(300));
                other
                    .write_config(&format!(
                        "{req}
variable \"token\" {{
  type      = string
  sensitive = true
}}
provider \"homelab\" {{
  ssh {{
    user        = \"root\"
    private_key = file({key})
    known_hosts = file({kh})
  }}
}}
resource \"homelab_k3s_server\" \"s5\" {{
  role       = \"join\"
  server_url = \"https://{init_ip}:6443\"
  token      = var.token
  version    = \"{VERSION}\"
{inst}  host {{ address = \"{a}\" }}
  timeouts {{ create = \"120s\" }}
}}
",
                        req = required_providers(),
                        key = hcl_string(&lab.ssh_key().display().to_string()),
                        kh = hcl_string(&lab.known_hosts().display().to_string()),
                        inst = install(&script, &art),
                        a = ip(lab, SERVERS[4]),
                    ))
                    .unwrap();
                other.set_env("TF_VAR_token", token);
                other.init().map_err(|e| e.to_string())?;
                tf.write_config(&cfg(lab, 4, true)).unwrap();
                let args = ["apply", "-input=false", "-no-color", "-auto-approve"];
                let a = tf.spawn(&args).map_err(|e| e.to_string())?;
                let b = other.spawn(&args).map_err(|e| e.to_string())?;
                let (a, b) = (tf.wait(a).map_err(|e| e.to_string())?, other.wait(b).map_err(|e| e.to_string())?);
                eprintln!("two applies at once:\n{a}\n{b}");
                let reported = format!("this one: {}; the other: {}", first_error(&a), first_error(&b));
                let etcd_after = etcd_text(lab);
                let state = format!("this one: {}; the other: {}", state_text(&tf), state_text(&other));
                let mut nexts = Vec::new();
                for w in [&tf, &other] {
                    let out = w.apply(&[]).map_err(|e| e.to_string())?;
                    if !out.success() {
                        return Err(format!("the re-apply after two at once failed:\n{out}"));
                    }
                    w.plans_empty()?;
                    nexts.push(apply_summary(&out));
                }
                if !wait_until(Duration::from_secs(30), || etcd(lab) == (5, 0)) {
                    return Err(format!("etcd after two joins at once: {}", etcd_text(lab)));
                }
                let mut r = host_row("terraform-two-applies-one-cluster", 4,
                    "Two applies at once on one cluster from two states (each joins one server through the first)",
                    "both joins start together", reported, state,
                    format!("this one: {}; the other: {}", nexts[0], nexts[1]), etcd_after);
                r.group = Group::Terraform;
                r.record();
                Ok(())
            })
            .join()
            .unwrap()
        });
        if let Err(e) = result {
            eprintln!("{}", guard.lab().describe());
            panic!("{e}");
        }
    }
}
