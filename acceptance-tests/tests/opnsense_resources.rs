//! Acceptance tests of the OPNsense resources (issue 5): real Terraform drives the provider against the OPNsense
//! emulator, whose HAProxy side renders the configuration and runs the real haproxy, so the seed topology is
//! checked by pushing TCP traffic through it.
//!
//! Each test owns an emulator (its own port, state file and haproxy directory) and uses 127.x addresses only.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use homelab_acceptance::emulator_api::{free_port, AdminApi};
use homelab_acceptance::terraform::{hcl_string, required_providers};
use homelab_acceptance::{Action, ImportKind, Step, Terraform, TerraformVersion, TestCase};
use opnsense_emulator::{Config, Emulator, EmulatorHandle, FaultKind, TlsMode};
use serde_json::Value;

const KEY: &str = "w86XNZob/8Oq8aC5r0kbNarNtdpoQU781fyoeaOBQsBwkXUt";
const SECRET: &str = "XeD26XVrJ5ilAc/EmglCRC+0j2e57tRsjHwFepOseySWLM53pJASeTA3";

/// An emulator with its state under a fresh temp dir.
fn emulator(tls: bool) -> (EmulatorHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("config.json"),
        KEY,
        SECRET,
    );
    cfg.interfaces = vec![
        ("wan".into(), "WAN".into()),
        ("lan".into(), "LAN".into()),
        ("opt1".into(), "K3S".into()),
    ];
    if tls {
        cfg.tls = TlsMode::Generate {
            hostnames: vec!["opnsense.lan".into()],
        };
    }
    (Emulator::start(cfg).unwrap(), dir)
}

/// `terraform { required_providers }` + the provider block pointing at `emu`.
fn provider(emu: &EmulatorHandle) -> String {
    let tls = match emu.ca_pem() {
        Some(pem) => format!("    ca_cert_pem = {}\n", hcl_string(pem)),
        None => String::new(),
    };
    format!(
        "{}\nprovider \"homelab\" {{\n  opnsense {{\n    url = {}\n    api_key = {}\n    api_secret = {}\n{tls}  }}\n}}\n",
        required_providers(),
        hcl_string(&emu.url()),
        hcl_string(KEY),
        hcl_string(SECRET),
    )
}

/// A TCP echo server on 127.0.0.1 that prefixes its answers with `tag`, running until dropped.
struct Echo {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Echo {
    fn start(tag: &'static str) -> Echo {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        std::thread::spawn(move || {
            while !s2.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        std::thread::spawn(move || {
                            c.set_nonblocking(false).ok();
                            let mut buf = [0u8; 512];
                            if let Ok(n) = c.read(&mut buf) {
                                let _ = c.write_all(format!("{tag}:").as_bytes());
                                let _ = c.write_all(&buf[..n]);
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Echo { addr, stop }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Sends `msg` to `addr`, returns the answer (retrying while haproxy comes up).
fn roundtrip(addr: &str, msg: &str, within: Duration) -> Result<String, String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok();
                let _ = s.write_all(msg.as_bytes());
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if !out.is_empty() {
                    return Ok(out);
                }
                last = "empty answer".into();
            }
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("no answer from {addr}: {last}"))
}

/// A plain HTTP GET, returning (status line, body).
fn http_get(addr: &str, path: &str) -> Result<(String, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Ok((
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    ))
}

/// Calls the emulator's API like an admin in the UI would (plain HTTP emulators only).
fn api(emu: &EmulatorHandle, method: &str, path: &str, body: Option<&Value>) -> Value {
    api_at(emu.addr(), method, path, body)
}

/// [`api`] by the emulator's address (for checks that outlive a borrow of the handle).
fn api_at(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    AdminApi::new(addr, KEY, SECRET).call(method, path, body)
}

fn server_hcl(label: &str, name: &str, addr: SocketAddr) -> String {
    format!(
        "resource \"homelab_opnsense_haproxy_server\" \"{label}\" {{\n  name    = \"{name}\"\n  address = \"{}\"\n  port    = {}\n}}\n",
        addr.ip(),
        addr.port()
    )
}

/// The seed topology as separate resource blocks: three servers, a TCP health check every 10s, a round-robin TCP
/// backend, a frontend on the VIP, the Prometheus exporter, and the VIP itself.
struct Seed {
    servers: Vec<String>,
    vip: String,
    healthcheck: String,
    backend: String,
    frontend: String,
    settings: String,
}

impl Seed {
    fn new(echoes: &[Echo], vip: &str, fe_port: u16, exporter_port: u16) -> Seed {
        let servers: Vec<String> = echoes
            .iter()
            .enumerate()
            .map(|(i, e)| {
                server_hcl(
                    &format!("k3s_{}", i + 1),
                    &format!("k8s-control-{}", i + 1),
                    e.addr,
                )
            })
            .collect();
        let refs: Vec<String> = (1..=echoes.len())
            .map(|i| format!("homelab_opnsense_haproxy_server.k3s_{i}.id"))
            .collect();
        Seed {
            servers,
            vip: format!(
                "resource \"homelab_opnsense_vip\" \"k3s\" {{\n  interface   = \"opt1\"\n  address     = \"{vip}/32\"\n  description = \"K3s control plane VIP\"\n}}\n"
            ),
            healthcheck: "resource \"homelab_opnsense_haproxy_healthcheck\" \"k3s\" {\n  name     = \"k3s-controlplane\"\n  type     = \"tcp\"\n  interval = \"10s\"\n}\n".into(),
            backend: format!(
                "resource \"homelab_opnsense_haproxy_backend\" \"k3s\" {{\n  name                    = \"k3s-controlplane\"\n  description             = \"Pool serving all K3s controlplane hosts\"\n  mode                    = \"tcp\"\n  algorithm               = \"roundrobin\"\n  servers                 = [{}]\n  health_check            = homelab_opnsense_haproxy_healthcheck.k3s.id\n  health_check_log_status = true\n}}\n",
                refs.join(", ")
            ),
            frontend: format!(
                "resource \"homelab_opnsense_haproxy_frontend\" \"k3s\" {{\n  name            = \"k3s-controlplane\"\n  description     = \"K3s controlplane hosts\"\n  bind            = [\"${{split(\"/\", homelab_opnsense_vip.k3s.address)[0]}}:{fe_port}\"]\n  mode            = \"tcp\"\n  default_backend = homelab_opnsense_haproxy_backend.k3s.id\n  log_detailed    = true\n}}\n"
            ),
            settings: format!(
                "resource \"homelab_opnsense_haproxy_settings\" \"this\" {{\n  enabled            = true\n  graceful_stop      = true\n  prometheus_enabled = true\n  prometheus_bind    = [\"127.0.0.1:{exporter_port}\"]\n}}\n"
            ),
        }
    }

    /// Everything the pool references (servers, check, VIP, settings).
    fn base(&self) -> String {
        format!(
            "{}{}{}{}",
            self.servers.concat(),
            self.vip,
            self.healthcheck,
            self.settings
        )
    }

    fn all(&self) -> String {
        format!("{}{}{}", self.base(), self.backend, self.frontend)
    }
}

/// Imports `address` (with `block` as the only resource) into a fresh world and requires an empty plan.
fn import_alone(
    version: TerraformVersion,
    provider: &str,
    block: &str,
    address: &str,
    id: &str,
) -> Result<(), String> {
    let tf = Terraform::new(version).map_err(|e| e.to_string())?;
    tf.require_provider().map_err(|e| e.to_string())?;
    tf.write_config(&format!("{provider}{block}"))
        .map_err(|e| e.to_string())?;
    tf.init().map_err(|e| e.to_string())?;
    tf.import(address, id).map_err(|e| e.to_string())?;
    match tf.plan(&[]).map_err(|e| e.to_string())? {
        homelab_acceptance::terraform::PlanOutcome::Empty(_) => Ok(()),
        other => Err(format!(
            "plan after importing {address} as {id:?} is not empty:\n{}",
            other.output()
        )),
    }
}

/// The seed: apply the HAProxy configuration of the blog post, then TCP traffic must reach all three servers
/// through the real haproxy, the exporter must answer, the pool must not be sticky, and one apply must not
/// reconfigure haproxy more than 3 times. Plans after apply are empty (the harness checks); every object imports
/// (by UUID and by name) with an empty plan; destroy leaves the emulator empty.
#[test]
fn seed_haproxy_configuration_passes_tcp_traffic() {
    for version in TerraformVersion::ALL {
        let (emu, _dir) = emulator(false);
        let echoes = [
            Echo::start("k8s-control-1"),
            Echo::start("k8s-control-2"),
            Echo::start("k8s-control-3"),
        ];
        let (fe_port, exporter_port) = (free_port(), free_port());
        let vip = "127.0.3.100";
        let seed = Seed::new(&echoes, vip, fe_port, exporter_port);
        let prov = provider(&emu);
        let frontend = format!("{vip}:{fe_port}");
        let exporter = format!("127.0.0.1:{exporter_port}");
        let emu = Arc::new(emu);
        let emu2 = emu.clone();
        let checked = Arc::new(AtomicBool::new(false));
        let checked2 = checked.clone();
        let (prov2, backend_block, frontend_block) =
            (prov.clone(), seed.backend.clone(), seed.frontend.clone());
        TestCase::new(version)
            // The pool's `servers` must be known at plan time: see the report (codec collapses unknown set
            // elements), so what it references is created first.
            .step(
                Step::config(format!("{prov}{}", seed.base()))
                    .expect_action("homelab_opnsense_haproxy_server.k3s_1", Action::Create),
            )
            .step(
                Step::config(format!("{prov}{}", seed.all()))
                    .expect_action("homelab_opnsense_haproxy_backend.k3s", Action::Create)
                    .expect_action("homelab_opnsense_haproxy_frontend.k3s", Action::Create)
                    .check_attr(
                        "homelab_opnsense_haproxy_backend.k3s",
                        "persistence",
                        "none",
                    )
                    .check(move |state| {
                        let mut seen = std::collections::BTreeSet::new();
                        for i in 0..9 {
                            let answer =
                                roundtrip(&frontend, &format!("ping{i}"), Duration::from_secs(10))?;
                            seen.insert(answer.split(':').next().unwrap_or("").to_string());
                        }
                        if seen.len() != 3 {
                            return Err(format!(
                                "expected all three servers to answer, got {seen:?}"
                            ));
                        }
                        let (status, body) = http_get(&exporter, "/metrics")?;
                        if !status.contains("200") || !body.contains("haproxy_") {
                            return Err(format!(
                                "exporter answered {status}: {}",
                                &body[..body.len().min(200)]
                            ));
                        }
                        let cfg = emu2.haproxy_cfg().unwrap_or_default();
                        if !cfg.contains("balance roundrobin")
                            || cfg.contains("stick on")
                            || !cfg.contains("inter 10s")
                        {
                            return Err(format!("unexpected live haproxy.cfg:\n{cfg}"));
                        }
                        let reconfigures = emu2
                            .calls()
                            .iter()
                            .filter(|c| c.contains("service/reconfigure"))
                            .count();
                        if reconfigures > 4 {
                            return Err(format!(
                                "{reconfigures} haproxy reconfigures over two applies"
                            ));
                        }
                        // Backend and frontend import alone, with the references spelled as literal ids.
                        let id = |a: &str| {
                            state
                                .attr(a, "id")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string()
                        };
                        let ids = |s: &str| {
                            let mut s = s.to_string();
                            for i in 1..=3 {
                                let r = format!("homelab_opnsense_haproxy_server.k3s_{i}.id");
                                s = s.replace(
                                    &r,
                                    &format!(
                                        "\"{}\"",
                                        id(&format!("homelab_opnsense_haproxy_server.k3s_{i}"))
                                    ),
                                );
                            }
                            s = s.replace(
                                "homelab_opnsense_haproxy_healthcheck.k3s.id",
                                &format!("\"{}\"", id("homelab_opnsense_haproxy_healthcheck.k3s")),
                            );
                            s = s.replace(
                                "homelab_opnsense_haproxy_backend.k3s.id",
                                &format!("\"{}\"", id("homelab_opnsense_haproxy_backend.k3s")),
                            );
                            s.replace(
                                "${split(\"/\", homelab_opnsense_vip.k3s.address)[0]}",
                                "127.0.3.100",
                            )
                        };
                        import_alone(
                            version,
                            &prov2,
                            &ids(&backend_block),
                            "homelab_opnsense_haproxy_backend.k3s",
                            "k3s-controlplane",
                        )?;
                        import_alone(
                            version,
                            &prov2,
                            &ids(&frontend_block),
                            "homelab_opnsense_haproxy_frontend.k3s",
                            &id("homelab_opnsense_haproxy_frontend.k3s"),
                        )?;
                        checked2.store(true, Ordering::SeqCst);
                        Ok(())
                    }),
            )
            .step(
                Step::import(ImportKind::Command, "homelab_opnsense_haproxy_server.k3s_1")
                    .import_id("k8s-control-1")
                    .with_config(format!("{prov}{}", seed.servers[0])),
            )
            .step(
                Step::import(
                    ImportKind::Command,
                    "homelab_opnsense_haproxy_healthcheck.k3s",
                )
                .with_config(format!("{prov}{}", seed.healthcheck)),
            )
            .step(
                Step::import(ImportKind::Command, "homelab_opnsense_vip.k3s")
                    .with_config(format!("{prov}{}", seed.vip)),
            )
            .step(
                Step::import(
                    ImportKind::Command,
                    "homelab_opnsense_haproxy_settings.this",
                )
                .with_config(format!("{prov}{}", seed.settings)),
            )
            .run();
        assert!(checked.load(Ordering::SeqCst));
        // Destroy removed every object.
        let model = api(&emu, "GET", "haproxy/settings/get", None);
        for (container, item) in [
            ("servers", "server"),
            ("backends", "backend"),
            ("frontends", "frontend"),
        ] {
            let items = &model["haproxy"][container][item];
            assert!(
                items.as_object().map(|m| m.is_empty()).unwrap_or(true),
                "{container} left after destroy on {version}: {items}"
            );
        }
        assert_eq!(
            model["haproxy"]["general"]["enabled"], "0",
            "destroying the settings restores the defaults"
        );
    }
}

/// A duplicate name made in the UI is refused at plan with a diagnostic naming the other object (drift of a
/// managed object — changed or deleted by hand — is a case of the fault matrix, `tests/reliability.rs`).
#[test]
fn duplicate_name_made_in_the_ui_is_refused_at_plan() {
    for version in TerraformVersion::ALL {
        let (emu, _dir) = emulator(false);
        let emu = Arc::new(emu);
        let cfg = format!(
            "{}{}",
            provider(&emu),
            server_hcl("web", "web-1", "127.0.0.11:8080".parse().unwrap())
        );
        let e3 = emu.clone();
        let addr = "homelab_opnsense_haproxy_server.web";
        TestCase::new(version)
            .step(Step::config(cfg.clone()).expect_action(addr, Action::Create))
            .step(
                Step::config(format!("{cfg}{}", server_hcl("dup", "web-2", "127.0.0.12:8080".parse().unwrap())))
                    .before(move |_, _| {
                        let r = api(&e3, "POST", "haproxy/settings/addServer", Some(&serde_json::json!({"server": {"name": "web-2", "address": "127.0.0.99", "port": "1"}})));
                        (r["result"] == "saved").then_some(()).ok_or(format!("out-of-band add failed: {r}"))
                    })
                    .expect_error(r#"Duplicate HAProxy server name.*Another HAProxy server is already named "web-2""#),
            )
            .run();
    }
}

/// `terraform query` lists HAProxy servers and health checks made in the UI; the generated configuration imports
/// them with no change and plans empty afterwards.
#[test]
fn query_lists_ui_objects_and_generated_config_imports_cleanly() {
    use homelab_acceptance::terraform::PlanOutcome;
    let version = TerraformVersion::V1_15;
    let (emu, _dir) = emulator(false);
    for (name, port) in [("ui-web-1", "8081"), ("ui-web-2", "8082")] {
        let r = api(
            &emu,
            "POST",
            "haproxy/settings/addServer",
            Some(
                &serde_json::json!({"server": {"name": name, "address": "127.0.0.21", "port": port}}),
            ),
        );
        assert_eq!(r["result"], "saved", "{r}");
    }
    let r = api(
        &emu,
        "POST",
        "haproxy/settings/addHealthcheck",
        Some(
            &serde_json::json!({"healthcheck": {"name": "ui_check", "type": "tcp", "interval": "5s"}}),
        ),
    );
    assert_eq!(r["result"], "saved", "{r}");
    let tf = Terraform::new(version).unwrap();
    tf.require_provider().unwrap();
    tf.write_config(&provider(&emu)).unwrap();
    tf.write_file(
        "all.tfquery.hcl",
        "list \"homelab_opnsense_haproxy_server\" \"servers\" {\n  provider = homelab\n  include_resource = true\n}\n\
         list \"homelab_opnsense_haproxy_healthcheck\" \"checks\" {\n  provider = homelab\n  include_resource = true\n}\n",
    )
    .unwrap();
    tf.init().unwrap();
    let listed = tf.query(&[]).unwrap();
    assert!(listed.success(), "{listed}");
    for name in ["ui-web-1", "ui-web-2", "ui_check"] {
        assert!(
            listed.stdout.contains(name),
            "query must list {name}:\n{listed}"
        );
    }
    let generated = tf.query(&["-generate-config-out=generated.tf"]).unwrap();
    assert!(generated.success(), "{generated}");
    tf.remove_file("all.tfquery.hcl").unwrap();
    let plan = tf.plan(&["-out=import.tfplan"]).unwrap();
    let saved = tf.show_plan("import.tfplan").unwrap();
    let changes = saved.changes();
    assert_eq!(
        changes
            .iter()
            .filter(|c| c.pointer("/change/importing").is_some())
            .count(),
        3,
        "{}\n{}",
        plan.output(),
        tf.read_file("generated.tf").unwrap_or_default()
    );
    assert!(
        changes
            .iter()
            .all(|c| c.pointer("/change/actions") == Some(&serde_json::json!(["no-op"]))),
        "importing generated config must not change anything:\n{}\n{}",
        plan.output(),
        tf.read_file("generated.tf").unwrap_or_default()
    );
    assert!(tf
        .run(&["apply", "-no-color", "-input=false", "import.tfplan"])
        .unwrap()
        .success());
    assert!(
        matches!(tf.plan(&[]).unwrap(), PlanOutcome::Empty(_)),
        "plan after generated import not empty"
    );
    assert!(tf.destroy().unwrap().success());
    let model = api(&emu, "GET", "haproxy/settings/get", None);
    assert!(model["haproxy"]["servers"]["server"]
        .as_object()
        .map(|m| m.is_empty())
        .unwrap_or(true));
}

const OLD_SOURCE: &str = "source           = \"127.0.0.0/8\"";

/// The firewall side of the seed: the VIP in a host alias, a rule letting the workers reach it, plus a CARP VIP
/// whose vhid the firewall picks. Create, update, import, destroy; an interface network
/// (`opt1`) as source; unknown interfaces are refused at plan.
#[test]
fn vip_alias_and_rule_lifecycle() {
    for version in TerraformVersion::ALL {
        let (emu, _dir) = emulator(false);
        let prov = provider(&emu);
        let body = |port: &str| {
            format!(
                r#"
resource "homelab_opnsense_vip" "k3s" {{
  interface = "opt1"
  address   = "127.0.3.100/32"
}}
resource "homelab_opnsense_vip" "carp" {{
  interface = "lan"
  mode      = "carp"
  address   = "127.0.4.1/24"
  password  = "s3cret"
}}
resource "homelab_opnsense_firewall_alias" "lb" {{
  name        = "K3s_Control_Plane_Loadbalancer"
  type        = "host"
  content     = [split("/", homelab_opnsense_vip.k3s.address)[0]]
  description = "k3s API VIP"
}}
resource "homelab_opnsense_firewall_rule" "api" {{
  description      = "workers to the k3s API"
  interfaces       = ["opt1"]
  protocol         = "TCP"
  source           = "127.0.0.0/8"
  destination      = homelab_opnsense_firewall_alias.lb.name
  destination_port = "{port}"
}}
"#
            )
        };
        TestCase::new(version)
            .step(
                Step::config(format!("{prov}{}", body("6443")))
                    .expect_action("homelab_opnsense_firewall_rule.api", Action::Create)
                    .check_attr_set("homelab_opnsense_vip.carp", "vhid")
                    .check_attr_set("homelab_opnsense_firewall_rule.api", "sequence"),
            )
            // An interface network as source (core's NetworkAliasField accepts every interface key of the box).
            .step(
                Step::config(format!("{prov}{}", body("6444").replace(OLD_SOURCE, "source           = \"opt1\"")))
                    .expect_action("homelab_opnsense_firewall_rule.api", Action::Update)
                    .check_attr("homelab_opnsense_firewall_rule.api", "source", "opt1"),
            )
            .step(
                Step::config(format!("{prov}{}", body("6444").replace(OLD_SOURCE, "source           = \"opt9\"")))
                    .expect_error(r#"Unknown interface network.*"opt9""#),
            )
            .step(
                Step::import(ImportKind::Command, "homelab_opnsense_firewall_alias.lb")
                    .import_id("K3s_Control_Plane_Loadbalancer")
                    .with_config(format!(
                        "{prov}resource \"homelab_opnsense_firewall_alias\" \"lb\" {{\n  name = \"K3s_Control_Plane_Loadbalancer\"\n  type = \"host\"\n  content = [\"127.0.3.100\"]\n  description = \"k3s API VIP\"\n}}\n"
                    )),
            )
            .step(
                Step::import(ImportKind::Command, "homelab_opnsense_vip.carp").with_config(format!(
                    "{prov}resource \"homelab_opnsense_vip\" \"carp\" {{\n  interface = \"lan\"\n  mode = \"carp\"\n  address = \"127.0.4.1/24\"\n  password = \"s3cret\"\n}}\n"
                )),
            )
            .step(
                Step::config(format!("{prov}{}", body("6444").replace("interface = \"opt1\"", "interface = \"opt9\"")))
                    .expect_error(r#"Unknown interface.*no interface "opt9""#),
            )
            .run();
    }
}

/// Refresh costs O(types), not O(objects): a refreshed plan of N servers reads the whole HAProxy model a constant
/// number of times (one per provider process walk), and creating N unlinked servers needs no reconfigure at all.
#[test]
fn refresh_is_flat_in_the_number_of_objects() {
    let version = TerraformVersion::V1_15;
    let mut reads = Vec::new();
    for n in [3usize, 24] {
        let (emu, _dir) = emulator(false);
        let mut cfg = provider(&emu);
        for i in 0..n {
            cfg.push_str(&server_hcl(
                &format!("s{i}"),
                &format!("s-{i}"),
                format!("127.0.1.{}:80", i + 1).parse().unwrap(),
            ));
        }
        let tf = Terraform::new(version).unwrap();
        tf.require_provider().unwrap();
        tf.write_config(&cfg).unwrap();
        tf.init().unwrap();
        assert!(tf.apply(&[]).unwrap().success());
        let count = |what: &str| emu.calls().iter().filter(|c| c.contains(what)).count();
        assert_eq!(
            count("service/reconfigure"),
            0,
            "unlinked servers need no reconfigure"
        );
        let before = count("haproxy/settings/get ");
        let plan = tf.plan(&[]).unwrap();
        assert!(
            matches!(plan, homelab_acceptance::terraform::PlanOutcome::Empty(_)),
            "{}",
            plan.output()
        );
        let during = count("haproxy/settings/get ") - before;
        let per_object = emu
            .calls()
            .iter()
            .filter(|c| c.contains("getServer"))
            .count();
        assert_eq!(per_object, 0, "no per-object reads");
        reads.push(during);
        assert!(tf.destroy().unwrap().success());
    }
    eprintln!(
        "whole-model reads per refreshed plan: N=3 → {}, N=24 → {}",
        reads[0], reads[1]
    );
    assert!(
        reads[1] <= reads[0] + 1 && reads[1] <= 3,
        "refresh reads grow with N: {reads:?}"
    );
}

/// Over HTTPS with the firewall's certificate authority pinned through `ca_cert_pem`; with `TF_LOG=trace` the API
/// secret appears nowhere in Terraform's output or logs.
#[test]
fn tls_with_pinned_ca_and_secret_never_logged() {
    let version = TerraformVersion::V1_15;
    let (emu, _dir) = emulator(true);
    assert!(emu.url().starts_with("https://"));
    let cfg = format!(
        "{}{}",
        provider(&emu),
        server_hcl("web", "tls-1", "127.0.0.31:443".parse().unwrap())
    );
    let mut tf = Terraform::new(version).unwrap();
    tf.require_provider().unwrap();
    tf.set_env("TF_LOG", "trace");
    tf.write_config(&cfg).unwrap();
    tf.init().unwrap();
    let apply = tf.apply(&[]).unwrap();
    assert!(apply.success(), "{apply}");
    let text = format!("{}{}", apply.stdout, apply.stderr);
    assert!(
        text.contains("homelab_opnsense_haproxy_server.web: Creation complete"),
        "{apply}"
    );
    assert!(
        !text.contains(SECRET),
        "the API secret leaked into Terraform's output"
    );
    let destroy = tf.destroy().unwrap();
    assert!(destroy.success(), "{destroy}");
    assert!(!format!("{}{}", destroy.stdout, destroy.stderr).contains(SECRET));
}

/// Version awareness: a firewall older than 23.1 (no upsert by UUID, no VIP API) is refused with a clear message
/// before anything is written.
#[test]
fn old_opnsense_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("config.json"),
        KEY,
        SECRET,
    );
    cfg.opnsense_version = "22.7.11".into();
    let emu = Emulator::start(cfg).unwrap();
    let hcl = format!(
        "{}{}",
        provider(&emu),
        server_hcl("web", "old-1", "127.0.0.41:80".parse().unwrap())
    );
    TestCase::new(TerraformVersion::V1_15)
        .step(Step::config(hcl).expect_error(r"OPNsense 22\.7\.11 is older than 23\.1"))
        .run();
    let model = api(&emu, "GET", "haproxy/settings/get", None);
    assert!(model["haproxy"]["servers"]["server"]
        .as_object()
        .map(|m| m.is_empty())
        .unwrap_or(true));
}

/// Reconfigures per apply (issue 5: "at most 3 per apply") and a no-op refreshed plan of the seed's OPNsense
/// objects with 50 ms injected latency on every API call. N servers all linked to one live pool:
/// - a weight change of all N goes live through os-haproxy's runtime API: no reconfigure at all, and haproxy runs the
///   new weight;
/// - a port change of all N needs configtest → reconfigure; each resource returns only once its change is live, and
///   Terraform keeps at most `parallelism` (10) resources in flight, so ⌈N/10⌉ is the least possible and is what the
///   coalescer must reach (3 for N = 30).
#[test]
fn measurements_reconfigures_and_latency() {
    let version = TerraformVersion::V1_15;
    for n in [10usize, 30] {
        let (emu, _dir) = emulator(false);
        let servers = |weight: u32, port: u16| {
            let mut hcl = String::new();
            for i in 0..n {
                hcl.push_str(&format!(
                    "resource \"homelab_opnsense_haproxy_server\" \"s{i}\" {{\n  name = \"s-{i}\"\n  address = \"127.0.1.{}\"\n  port = {port}\n  weight = {weight}\n}}\n",
                    i + 1
                ));
            }
            hcl
        };
        let ids: Vec<String> = (0..n)
            .map(|i| format!("homelab_opnsense_haproxy_server.s{i}.id"))
            .collect();
        let pool = format!(
            "resource \"homelab_opnsense_haproxy_backend\" \"b\" {{\n  name = \"pool\"\n  mode = \"tcp\"\n  servers = [{}]\n}}\n\
resource \"homelab_opnsense_haproxy_frontend\" \"f\" {{\n  name = \"pool\"\n  mode = \"tcp\"\n  bind = [\"127.0.0.1:{}\"]\n  default_backend = homelab_opnsense_haproxy_backend.b.id\n}}\n\
resource \"homelab_opnsense_haproxy_settings\" \"s\" {{\n  enabled = true\n}}\n",
            ids.join(", "),
            free_port()
        );
        let tf = Terraform::new(version).unwrap();
        tf.require_provider().unwrap();
        tf.write_config(&format!("{}{}{pool}", provider(&emu), servers(1, 80)))
            .unwrap();
        tf.init().unwrap();
        let out = tf.apply(&[]).unwrap();
        assert!(out.success(), "{out}");
        let count = || {
            emu.calls()
                .iter()
                .filter(|c| c.contains("service/reconfigure"))
                .count()
        };
        assert!(count() <= 3, "{} reconfigures creating the pool", count());

        let before = count();
        tf.write_config(&format!("{}{}{pool}", provider(&emu), servers(2, 80)))
            .unwrap();
        let out = tf.apply(&[]).unwrap();
        assert!(out.success(), "{out}");
        assert_eq!(count() - before, 0, "weight changes need no reconfigure");
        let stats = api(&emu, "GET", "haproxy/statistics/counters", None);
        let row = stats
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["id"] == "pool/s-0")
            .cloned()
            .unwrap_or_default();
        assert_eq!(row["weight"], "2", "haproxy runs the new weight: {row}");

        let before = count();
        tf.write_config(&format!("{}{}{pool}", provider(&emu), servers(2, 81)))
            .unwrap();
        let started = Instant::now();
        let out = tf.apply(&[]).unwrap();
        assert!(out.success(), "{out}");
        let took = started.elapsed();
        let reconfigures = count() - before;
        eprintln!("MEASURE port change of {n} linked servers: {reconfigures} haproxy reconfigures, apply {took:?}");
        assert!(
            reconfigures >= 1 && reconfigures <= n.div_ceil(10),
            "{reconfigures} reconfigures for {n} servers (least possible: {})",
            n.div_ceil(10)
        );
        let destroy = tf.destroy().unwrap();
        assert!(destroy.success(), "{destroy}");
    }

    // The seed's OPNsense objects, refreshed with 50 ms latency on every call.
    let (emu, _dir) = emulator(false);
    let echoes = [Echo::start("a"), Echo::start("b"), Echo::start("c")];
    let seed = Seed::new(&echoes, "127.0.3.101", free_port(), free_port());
    let tf = Terraform::new(version).unwrap();
    tf.require_provider().unwrap();
    tf.write_config(&format!("{}{}", provider(&emu), seed.base()))
        .unwrap();
    tf.init().unwrap();
    assert!(tf.apply(&[]).unwrap().success());
    tf.write_config(&format!("{}{}", provider(&emu), seed.all()))
        .unwrap();
    assert!(tf.apply(&[]).unwrap().success());
    let baseline = {
        let t = Instant::now();
        assert!(matches!(
            tf.plan(&[]).unwrap(),
            homelab_acceptance::terraform::PlanOutcome::Empty(_)
        ));
        t.elapsed()
    };
    emu.add_fault(opnsense_emulator::FaultRule::new(
        None,
        FaultKind::Delay { ms: 50 },
    ));
    let calls_before = emu.calls().len();
    let t = Instant::now();
    let plan = tf.plan(&[]).unwrap();
    let took = t.elapsed();
    let calls = emu.calls().len() - calls_before;
    emu.clear_faults();
    assert!(
        matches!(plan, homelab_acceptance::terraform::PlanOutcome::Empty(_)),
        "{}",
        plan.output()
    );
    eprintln!("MEASURE no-op refreshed plan of the seed (8 objects): {baseline:?} without latency, {took:?} with 50 ms per call, {calls} API calls");
    assert!(
        took < Duration::from_secs(5),
        "refreshed plan took {took:?}"
    );
    assert!(tf.destroy().unwrap().success());
}

/// The seed in a single apply (the pool references servers created in the same apply, so its `servers` set holds
/// unknown elements at plan time, and cty keeps every unknown element of a set).
#[test]
fn seed_in_one_apply() {
    let (emu, _dir) = emulator(false);
    let echoes = [Echo::start("a"), Echo::start("b"), Echo::start("c")];
    let seed = Seed::new(&echoes, "127.0.3.102", free_port(), free_port());
    let emu = Arc::new(emu);
    let e = emu.clone();
    TestCase::new(TerraformVersion::V1_15)
        .step(
            Step::config(format!("{}{}", provider(&emu), seed.all())).check(move |_| {
                let reconfigures = e
                    .calls()
                    .iter()
                    .filter(|c| c.contains("service/reconfigure"))
                    .count();
                (reconfigures <= 3)
                    .then_some(())
                    .ok_or(format!("{reconfigures} reconfigures in one apply"))
            }),
        )
        .run();
}

/// One server through create, in-place update (port), import by UUID and by name (and on 1.15 by import block
/// and by resource identity), data sources, destroy.
#[test]
fn server_lifecycle_import_and_data_sources() {
    for version in TerraformVersion::ALL {
        let (emu, _dir) = emulator(false);
        let addr = "homelab_opnsense_haproxy_server.web";
        let cfg = format!(
            "{}{}{}",
            provider(&emu),
            server_hcl("web", "web-1", "127.0.0.11:6443".parse().unwrap()),
            "data \"homelab_opnsense_interfaces\" \"all\" {}\ndata \"homelab_opnsense_haproxy_status\" \"s\" {}\n"
        );
        let cfg2 = cfg.replace("6443", "6444");
        let mut case = TestCase::new(version)
            .step(
                Step::config(cfg)
                    .expect_action(addr, Action::Create)
                    .check_attr(addr, "mode", "active")
                    .check_attr(addr, "port", 6443)
                    .check_attr_set(addr, "id")
                    .check_attr(
                        "data.homelab_opnsense_interfaces.all",
                        "by_description.K3S",
                        "opt1",
                    )
                    .check_attr(
                        "data.homelab_opnsense_haproxy_status.s",
                        "opnsense_version",
                        "26.7.2",
                    )
                    .check_attr(
                        "data.homelab_opnsense_haproxy_status.s",
                        "haproxy_plugin_version",
                        "5.1",
                    ),
            )
            .step(
                Step::config(cfg2)
                    .expect_action(addr, Action::Update)
                    .check_attr(addr, "port", 6444),
            )
            .step(Step::import(ImportKind::Command, addr))
            .step(Step::import(ImportKind::Command, addr).import_id("web-1"));
        if version.has_import_blocks() {
            case = case.step(Step::import(ImportKind::BlockWithId, addr));
        }
        if version.has_identity() {
            case = case.step(Step::import(ImportKind::BlockWithIdentity, addr));
        }
        case.run();
    }
}

/// Safe delete: a server a UI-made backend still uses is not deleted; destroy fails with a diagnostic naming the
/// backend, the server stays (in OPNsense and in state), and destroy succeeds once the reference is gone.
#[test]
fn refused_delete_is_a_clear_diagnostic_and_loses_nothing() {
    let version = TerraformVersion::V1_15;
    let (emu, _dir) = emulator(false);
    let tf = Terraform::new(version).unwrap();
    tf.require_provider().unwrap();
    tf.write_config(&format!(
        "{}{}",
        provider(&emu),
        server_hcl("web", "web-1", "127.0.0.51:80".parse().unwrap())
    ))
    .unwrap();
    tf.init().unwrap();
    assert!(tf.apply(&[]).unwrap().success());
    let id = tf
        .state()
        .unwrap()
        .attr("homelab_opnsense_haproxy_server.web", "id")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let r = api(
        &emu,
        "POST",
        "haproxy/settings/addBackend",
        Some(
            &serde_json::json!({"backend": {"name": "ui_pool", "mode": "tcp", "linkedServers": id}}),
        ),
    );
    assert_eq!(r["result"], "saved", "{r}");
    let destroy = tf.destroy().unwrap();
    assert!(!destroy.success(), "{destroy}");
    let text = homelab_acceptance::terraform::normalize_diagnostics(&destroy.stderr);
    assert!(
        text.contains("The HAProxy server is still in use") && text.contains("ui_pool"),
        "{destroy}"
    );
    assert!(tf
        .state()
        .unwrap()
        .attr("homelab_opnsense_haproxy_server.web", "id")
        .is_some());
    let model = api(&emu, "GET", "haproxy/settings/get", None);
    assert!(
        model["haproxy"]["servers"]["server"].get(&id).is_some(),
        "the server must still exist"
    );
    let backend = r["uuid"].as_str().unwrap();
    assert_eq!(
        api(
            &emu,
            "POST",
            &format!("haproxy/settings/delBackend/{backend}"),
            None
        )["result"],
        "deleted"
    );
    assert!(tf.destroy().unwrap().success());
}

/// `homelab_opnsense_haproxy_status` shows haproxy's live view (os-haproxy's `haproxy/statistics/counters`, served
/// from the real haproxy's admin socket): in a pool with a TCP health check, a server whose port is closed is DOWN
/// with a failed L4 check, and a listening one is UP.
#[test]
fn status_data_source_shows_a_down_server() {
    let (emu, _dir) = emulator(false);
    let echo = Echo::start("up");
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let fe_port = free_port();
    let cfg = format!(
        "{}{}{}resource \"homelab_opnsense_haproxy_healthcheck\" \"c\" {{\n  name = \"fast\"\n  type = \"tcp\"\n  interval = \"500ms\"\n}}\n\
resource \"homelab_opnsense_haproxy_backend\" \"b\" {{\n  name = \"pool\"\n  mode = \"tcp\"\n  servers = [homelab_opnsense_haproxy_server.alive.id, homelab_opnsense_haproxy_server.dead.id]\n  health_check = homelab_opnsense_haproxy_healthcheck.c.id\n}}\n\
resource \"homelab_opnsense_haproxy_frontend\" \"f\" {{\n  name = \"pool\"\n  mode = \"tcp\"\n  bind = [\"127.0.0.1:{fe_port}\"]\n  default_backend = homelab_opnsense_haproxy_backend.b.id\n}}\n\
resource \"homelab_opnsense_haproxy_settings\" \"s\" {{\n  enabled = true\n}}\n",
        provider(&emu),
        server_hcl("alive", "alive", echo.addr),
        server_hcl("dead", "dead", dead),
    );
    let tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    tf.require_provider().unwrap();
    tf.write_config(&cfg).unwrap();
    tf.init().unwrap();
    let out = tf.apply(&[]).unwrap();
    assert!(out.success(), "{out}");
    // haproxy marks the server DOWN after `fall` (3) failed checks.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rows = api(&emu, "GET", "haproxy/statistics/counters", None);
        let dead_row = rows
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["id"] == "pool/dead");
        if dead_row.is_some_and(|r| r["status"] == "DOWN") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "haproxy never marked the dead server DOWN: {rows}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let with_ds = format!("{cfg}data \"homelab_opnsense_haproxy_status\" \"s\" {{\n  depends_on = [homelab_opnsense_haproxy_frontend.f]\n}}\n");
    tf.write_config(&with_ds).unwrap();
    let out = tf.apply(&[]).unwrap();
    assert!(out.success(), "{out}");
    let state = tf.state().unwrap();
    let ds = "data.homelab_opnsense_haproxy_status.s";
    assert_eq!(state.attr(ds, "running"), Some(&Value::Bool(true)));
    assert_eq!(
        state
            .attr(ds, "server_status.pool/dead")
            .and_then(Value::as_str),
        Some("DOWN"),
        "{:?}",
        state.values(ds)
    );
    // `UP`, or `UP 1/3` should one check have failed while haproxy reloaded.
    assert!(
        state
            .attr(ds, "server_status.pool/alive")
            .and_then(Value::as_str)
            .is_some_and(|s| s.starts_with("UP")),
        "{:?}",
        state.values(ds)
    );
    let servers = state.attr(ds, "servers").and_then(Value::as_array).unwrap();
    let dead_row = servers.iter().find(|s| s["name"] == "dead").unwrap();
    assert_eq!(dead_row["up"], Value::Bool(false));
    assert_eq!(dead_row["backend"], "pool");
    assert!(
        dead_row["check_status"]
            .as_str()
            .is_some_and(|c| c.contains("L4CON")),
        "{dead_row}"
    );
    let backends = state
        .attr(ds, "backends")
        .and_then(Value::as_array)
        .unwrap();
    assert!(backends
        .iter()
        .any(|b| b["name"] == "pool" && b["up"] == Value::Bool(true)));

    // A weight-only change of a live server goes live through os-haproxy's runtime API (no reload), and the data
    // source shows the running weight; a port change needs configtest → reconfigure.
    let reconfigures = || {
        emu.calls()
            .iter()
            .filter(|c| c.contains("service/reconfigure"))
            .count()
    };
    let before = reconfigures();
    let weighted = with_ds.replacen(
        "  name    = \"alive\"\n",
        "  name    = \"alive\"\n  weight  = 7\n",
        1,
    );
    assert_ne!(weighted, with_ds);
    tf.write_config(&weighted).unwrap();
    let out = tf.apply(&[]).unwrap();
    assert!(out.success(), "{out}");
    assert_eq!(reconfigures(), before, "a weight change needs no reload");
    assert!(tf.apply(&[]).unwrap().success());
    let state = tf.state().unwrap();
    let servers = state.attr(ds, "servers").and_then(Value::as_array).unwrap();
    let alive = servers.iter().find(|s| s["name"] == "alive").unwrap();
    assert_eq!(alive["weight"], 7, "{alive}");
    let moved = weighted.replace(
        &format!("port    = {}", dead.port()),
        &format!("port    = {}", free_port()),
    );
    assert_ne!(moved, weighted);
    tf.write_config(&moved).unwrap();
    assert!(tf.apply(&[]).unwrap().success());
    assert_eq!(
        reconfigures(),
        before + 1,
        "a port change is one reconfigure"
    );
    assert!(tf.destroy().unwrap().success());
}

/// Plan-time checks a user meets before anything reaches the firewall: an alias name OPNsense would refuse
/// (32 characters) is an error on `name` at plan, and a frontend binding an address:port another frontend already
/// binds is a warning on `bind` naming the other one — whether that one is on the firewall or planned alongside.
#[test]
fn plan_refuses_long_alias_names_and_warns_on_shared_binds() {
    for version in TerraformVersion::ALL {
        let (emu, _dir) = emulator(false);
        let prov = provider(&emu);
        let tf = Terraform::new(version).unwrap();
        tf.require_provider().unwrap();
        let frontend = |label: &str, name: &str, bind: &str| {
            format!(
                "resource \"homelab_opnsense_haproxy_frontend\" \"{label}\" {{\n  name = \"{name}\"\n  mode = \"tcp\"\n  \
                 bind = [\"{bind}\"]\n}}\n"
            )
        };
        // 32 characters: one more than OPNsense allows.
        tf.write_config(&format!(
            "{prov}resource \"homelab_opnsense_firewall_alias\" \"long\" {{\n  name = \"{}\"\n  type = \"host\"\n  \
             content = [\"127.0.3.100\"]\n}}\n",
            "k3s_cluster_a_Control_Plane_LB_x"
        ))
        .unwrap();
        tf.init().unwrap();
        let out = tf.plan(&[]).unwrap();
        let text = words(&out.output().to_string());
        assert!(
            matches!(out, homelab_acceptance::terraform::PlanOutcome::Failed(_))
                && text.contains("32 characters")
                && text.contains("at most 31")
                && text.contains("name"),
            "a 32-character alias name must be refused at plan, on `name`:\n{text}"
        );
        assert!(api(&emu, "GET", "firewall/alias/searchItem", None)["rows"]
            .as_array()
            .is_none_or(|r| !r
                .iter()
                .any(|a| a["name"] == "k3s_cluster_a_Control_Plane_LB_x")));

        // Free ports, so a test run elsewhere on the machine cannot hold the sockets.
        let (pa, pc) = (free_port(), free_port());
        let (sock_a, sock_any, sock_c) = (
            format!("127.0.3.102:{pa}"),
            format!("0.0.0.0:{pa}"),
            format!("127.0.3.102:{pc}"),
        );
        // One frontend on the firewall, then a second on the same socket: a warning on `bind` naming the first.
        tf.write_config(&format!("{prov}{}", frontend("a", "fe_a", &sock_a)))
            .unwrap();
        let applied = tf.apply(&[]).unwrap();
        assert!(applied.success(), "{applied}");
        assert!(
            !applied.to_string().contains("binds the same address"),
            "one frontend alone shares nothing:\n{applied}"
        );
        tf.write_config(&format!(
            "{prov}{}{}",
            frontend("a", "fe_a", &sock_a),
            frontend("b", "fe_b", &sock_any)
        ))
        .unwrap();
        let text = words(&tf.plan(&[]).unwrap().output().to_string());
        assert!(
            text.contains("Another HAProxy frontend binds the same address")
                && text.contains(
                    "Frontend \"fe_b\" takes the same socket as frontend \"fe_a\" (on the firewall"
                ),
            "a second frontend on the same port must be warned about, naming fe_a:\n{text}"
        );
        // Two new frontends in one plan on one socket: whichever plans second names the other.
        tf.write_config(&format!(
            "{prov}{}{}{}",
            frontend("a", "fe_a", &sock_a),
            frontend("c", "fe_c", &sock_c),
            frontend("d", "fe_d", &sock_c)
        ))
        .unwrap();
        let text = words(&tf.plan(&[]).unwrap().output().to_string());
        assert!(
            text.contains("Another HAProxy frontend binds the same address")
                && text.contains("in this plan"),
            "two planned frontends on one port must be warned about:\n{text}"
        );
        assert!(
            !text.contains("frontend \"fe_a\" (") && !text.contains("similar warning"),
            "fe_a binds another port and must not be named, and only one warning is due:\n{text}"
        );
    }
}

/// Terraform wraps diagnostic text to its own width: compare words, not lines.
fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The "HAProxy is disabled" warning is true when it is given: the seed in one apply, whose
/// `homelab_opnsense_haproxy_settings` enables HAProxy (saved slowly, while the backend is written), does not warn, while a backend and frontend on a box where
/// nothing enables HAProxy do.
#[test]
fn haproxy_disabled_warning_only_when_nothing_enables_it() {
    let echoes = [Echo::start("a")];
    let seed = Seed::new(&echoes, "127.0.3.103", free_port(), free_port());
    for (with_settings, warns) in [(true, false), (false, true)] {
        let (emu, _dir) = emulator(false);
        let tf = Terraform::new(TerraformVersion::V1_15).unwrap();
        tf.require_provider().unwrap();
        let body = if with_settings {
            // A slow box (as the real one is): the settings are not saved yet when the backend is written.
            emu.fail_next("haproxy/settings/set", FaultKind::Delay { ms: 1500 }, 1);
            seed.all()
        } else {
            seed.all().replace(&seed.settings, "")
        };
        tf.write_config(&format!("{}{body}", provider(&emu)))
            .unwrap();
        tf.init().unwrap();
        let out = tf.apply(&[]).unwrap();
        assert!(out.success(), "{out}");
        let text = homelab_acceptance::terraform::normalize_diagnostics(&out.combined());
        assert_eq!(
            text.contains("HAProxy is disabled on the firewall"),
            warns,
            "settings in the configuration: {with_settings}\n{out}"
        );
        assert!(tf.destroy().unwrap().success());
    }
}

/// The CARP password as a write-only attribute (Terraform 1.15): the firewall gets it, state never holds it, a
/// raised `password_wo_version` sends the new one, and a refreshed plan stays empty although OPNsense returns the
/// password on every read. Terraform 1.0.3 is told to use `password` instead.
#[test]
fn carp_password_write_only_reaches_the_firewall_not_the_state() {
    let vip_hcl = |password: &str, version: u32| {
        format!(
            "resource \"homelab_opnsense_vip\" \"carp\" {{\n  interface = \"lan\"\n  mode = \"carp\"\n  address = \"127.0.4.1/24\"\n  vhid = 7\n  advskew = 100\n  password_wo = \"{password}\"\n  password_wo_version = {version}\n}}\n"
        )
    };
    if TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        let (emu, _dir) = emulator(false);
        let prov = provider(&emu);
        let password_on_box = {
            let addr = emu.addr();
            move |st: &homelab_acceptance::terraform::State| -> Result<String, String> {
                let uuid = st
                    .attr("homelab_opnsense_vip.carp", "id")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .ok_or("no id in state")?;
                let got = api_at(
                    addr,
                    "GET",
                    &format!("interfaces/vip_settings/getItem/{uuid}"),
                    None,
                );
                Ok(got["vip"]["password"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string())
            }
        };
        let (first, second) = (password_on_box, password_on_box);
        TestCase::new(TerraformVersion::V1_15)
            .step(
                Step::config(format!("{prov}{}", vip_hcl("carp-one-5e1", 1)))
                    .named("password_wo on create")
                    .check(move |st| {
                        for path in ["password", "password_wo"] {
                            if !matches!(
                                st.attr("homelab_opnsense_vip.carp", path),
                                None | Some(Value::Null)
                            ) {
                                return Err(format!("{path} is not null in state"));
                            }
                        }
                        match first(st)?.as_str() {
                            "carp-one-5e1" => Ok(()),
                            other => Err(format!("the firewall has CARP password {other:?}")),
                        }
                    }),
            )
            .step(
                Step::config(format!("{prov}{}", vip_hcl("carp-two-9b2", 2)))
                    .named("a raised version sends the new password")
                    .expect_action("homelab_opnsense_vip.carp", Action::Update)
                    .before(|tf, _| {
                        let raw = tf
                            .read_file("terraform.tfstate")
                            .map_err(|e| e.to_string())?;
                        if raw.contains("carp-one-5e1") {
                            return Err("terraform.tfstate holds the CARP password".into());
                        }
                        Ok(())
                    })
                    .check(move |st| match second(st)?.as_str() {
                        "carp-two-9b2" => Ok(()),
                        other => Err(format!("the firewall has CARP password {other:?}")),
                    }),
            )
            .run();
    }
    if TerraformVersion::selected().contains(&TerraformVersion::V1_0) {
        let (emu, _dir) = emulator(false);
        TestCase::new(TerraformVersion::V1_0)
            .step(
                Step::config(format!("{}{}", provider(&emu), vip_hcl("carp-one-5e1", 1)))
                    .named("password_wo under 1.0.3")
                    .expect_error(
                        "Write-only attribute not supported by this Terraform.*password_wo",
                    ),
            )
            .run();
    }
}

/// The servers linked into backend `uuid`, as the API shows them (`linkedServers` is an option map with `selected`).
fn linked_servers(emu: SocketAddr, uuid: &str) -> Vec<String> {
    let model = api_at(emu, "GET", "haproxy/settings/get", None);
    let linked = &model["haproxy"]["backends"]["backend"][uuid]["linkedServers"];
    let mut out: Vec<String> = linked
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v["selected"] == 1 || v["selected"] == "1")
        .map(|(k, _)| k.clone())
        .collect();
    out.sort();
    out
}

/// A string attribute of the state, or why not.
fn attr_str(
    s: &homelab_acceptance::terraform::State,
    address: &str,
    path: &str,
) -> Result<String, String> {
    s.attr(address, path)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or(format!("no {address}.{path} in state"))
}

/// Pool members as resources: a backend without `servers` and a frontend exist first, each
/// `homelab_opnsense_haproxy_backend_member` adds its server (real haproxy then balances over it), a change of the
/// backend itself keeps the members, a member imports (by id and identity) with an empty plan, one removed out of
/// band is planned again, and a destroyed one leaves the pool.
#[test]
fn backend_members_join_the_pool_one_by_one() {
    for version in TerraformVersion::ALL {
        let (emu, _dir) = emulator(false);
        let (a, b) = (Echo::start("a"), Echo::start("b"));
        let fe = free_port();
        let base = format!(
            "{}{}{}\
resource \"homelab_opnsense_haproxy_settings\" \"this\" {{\n  enabled = true\n}}\n\
resource \"homelab_opnsense_haproxy_backend\" \"pool\" {{\n  name = \"pool\"\n  mode = \"tcp\"\n  description = \"DESC\"\n}}\n\
resource \"homelab_opnsense_haproxy_frontend\" \"fe\" {{\n  name = \"fe\"\n  mode = \"tcp\"\n  bind = [\"127.0.0.1:{fe}\"]\n  default_backend = homelab_opnsense_haproxy_backend.pool.id\n}}\n\
resource \"homelab_opnsense_haproxy_backend_member\" \"a\" {{\n  backend = homelab_opnsense_haproxy_backend.pool.id\n  server  = homelab_opnsense_haproxy_server.a.id\n}}\n",
            provider(&emu),
            server_hcl("a", "srv-a", a.addr),
            server_hcl("b", "srv-b", b.addr),
        );
        let member_b = "resource \"homelab_opnsense_haproxy_backend_member\" \"b\" {\n  backend = homelab_opnsense_haproxy_backend.pool.id\n  server  = homelab_opnsense_haproxy_server.b.id\n}\n";
        let one = base.replace("DESC", "pool");
        let two = format!("{one}{member_b}");
        let two_desc = format!("{}{member_b}", base.replace("DESC", "pool, described"));
        let front = format!("127.0.0.1:{fe}");
        let answers = move |want: &'static [&'static str]| {
            let front = front.clone();
            move |_: &homelab_acceptance::terraform::State| {
                let mut seen = std::collections::BTreeSet::new();
                for i in 0..12 {
                    let out = roundtrip(&front, &format!("hello{i}"), Duration::from_secs(10))?;
                    seen.insert(out.split(':').next().unwrap_or("").to_string());
                }
                let want: std::collections::BTreeSet<String> =
                    want.iter().map(|s| s.to_string()).collect();
                if seen == want {
                    Ok(())
                } else {
                    Err(format!("haproxy answered from {seen:?}, expected {want:?}"))
                }
            }
        };
        let (emu_a, emu_b, emu_c) = (emu.addr(), emu.addr(), emu.addr());
        let pool = "homelab_opnsense_haproxy_backend.pool";
        let ma = "homelab_opnsense_haproxy_backend_member.a";
        let mb = "homelab_opnsense_haproxy_backend_member.b";
        let prov = provider(&emu);
        let case = TestCase::new(version)
            .step(
                Step::config(one.clone())
                    .expect_action(ma, Action::Create)
                    .check(answers(&["a"]))
                    .check(move |s| {
                        let (b, srv) = (attr_str(s, pool, "id")?, attr_str(s, "homelab_opnsense_haproxy_server.a", "id")?);
                        let id = attr_str(s, ma, "id")?;
                        (id == format!("{b}/{srv}"))
                            .then_some(())
                            .ok_or(format!("member id {id:?}, expected {b}/{srv}"))
                    }),
            )
            .step(
                Step::config(two.clone())
                    .expect_action(mb, Action::Create)
                    .expect_action(pool, Action::NoOp)
                    .check(answers(&["a", "b"])),
            )
            .step(
                Step::config(two_desc.clone())
                    .expect_action(pool, Action::Update)
                    .check(move |s| {
                        let linked = linked_servers(emu_a, &attr_str(s, pool, "id")?);
                        (linked.len() == 2)
                            .then_some(())
                            .ok_or(format!("the backend's update dropped members: {linked:?}"))
                    }),
            )
            .step(Step::config(two_desc.clone()).check(move |s| {
                // Import into a world of its own (the member alone, its ends as literal ids): empty plan.
                let (b, srv) = (
                    attr_str(s, pool, "id")?,
                    attr_str(s, "homelab_opnsense_haproxy_server.b", "id")?,
                );
                let block = format!(
                    "resource \"homelab_opnsense_haproxy_backend_member\" \"b\" {{\n  backend = \"{b}\"\n  server  = \"{srv}\"\n}}\n"
                );
                import_alone(version, &prov, &block, mb, &format!("{b}/{srv}"))
            }))
            .step(
                Step::config(two_desc.clone())
                    .before(move |_, state| {
                        let s = state.ok_or("no state")?;
                        let uuid = attr_str(s, pool, "id")?;
                        let keep = attr_str(s, "homelab_opnsense_haproxy_server.a", "id")?;
                        api_at(
                            emu_b,
                            "POST",
                            &format!("haproxy/settings/setBackend/{uuid}"),
                            Some(&serde_json::json!({"backend": {"linkedServers": keep}})),
                        );
                        Ok(())
                    })
                    .expect_action(mb, Action::Create)
                    .check(answers(&["a", "b"])),
            )
            .step(
                Step::config(base.replace("DESC", "pool, described"))
                    .expect_action(mb, Action::Delete)
                    .check(answers(&["a"]))
                    .check(move |s| {
                        let linked = linked_servers(emu_c, &attr_str(s, pool, "id")?);
                        (linked.len() == 1)
                            .then_some(())
                            .ok_or(format!("after the member's destroy the pool holds {linked:?}"))
                    }),
            );
        case.run();
    }
}
