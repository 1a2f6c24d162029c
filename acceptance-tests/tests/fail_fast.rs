//! Fail fast on trust and credentials (issue 17), through real Terraform against the OPNsense emulator.
//!
//! A wrong CA or a wrong API secret cannot heal by retrying. After an apply of six OPNsense objects, a plan with
//! either mistake must give exactly ONE error diagnostic, naming the setting to fix, after one request: the
//! provider's configure-time probe, not a retried call per resource. Requests are counted where they arrive:
//! TCP connections at a counting forwarder in front of the emulator (a refused certificate never becomes an HTTP
//! request, and rustls does not reuse a connection whose handshake failed) and the emulator's own call log.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use homelab_acceptance::terraform::{hcl_string, required_providers};
use homelab_acceptance::{Terraform, TerraformVersion};
use opnsense_emulator::{Config, Emulator, EmulatorHandle, TlsMode};
use serde_json::Value;

const KEY: &str = "w86XNZob/8Oq8aC5r0kbNarNtdpoQU781fyoeaOBQsBwkXUt";
const SECRET: &str = "XeD26XVrJ5ilAc/EmglCRC+0j2e57tRsjHwFepOseySWLM53pJASeTA3";
const WRONG_SECRET: &str = "not-the-secret-0123456789";

/// A TLS emulator with OPNsense's 2 s penalty for a bad secret.
fn emulator() -> (EmulatorHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.path().join("config.json"),
        KEY,
        SECRET,
    );
    cfg.tls = TlsMode::Generate {
        hostnames: vec!["opnsense.lan".into()],
    };
    cfg.auth_failure_delay = Duration::from_secs(2);
    (Emulator::start(cfg).unwrap(), dir)
}

/// Forwards TCP connections on 127.0.0.1 to `target`, counting them.
struct Forwarder {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Forwarder {
    fn start(target: SocketAddr) -> Forwarder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let connections = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, s) = (connections.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((client, _)) => {
                        n.fetch_add(1, Ordering::SeqCst);
                        client.set_nonblocking(false).ok();
                        let Ok(upstream) = TcpStream::connect(target) else {
                            continue;
                        };
                        pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                        pipe(upstream, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Forwarder {
            addr,
            connections,
            stop,
        }
    }

    fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

/// The provider block (URL through the forwarder) plus six HAProxy servers.
fn config(url: &str, ca_pem: &str, secret: &str) -> String {
    let mut hcl = format!(
        "{}\nprovider \"homelab\" {{\n  opnsense {{\n    url = {}\n    api_key = {}\n    api_secret = {}\n    ca_cert_pem = {}\n  }}\n}}\n",
        required_providers(),
        hcl_string(url),
        hcl_string(KEY),
        hcl_string(secret),
        hcl_string(ca_pem),
    );
    for i in 0..6 {
        hcl.push_str(&format!(
            "resource \"homelab_opnsense_haproxy_server\" \"s{i}\" {{\n  name    = \"ff-{i}\"\n  address = \"127.0.0.{}\"\n  port    = 6443\n}}\n",
            51 + i
        ));
    }
    hcl
}

/// The error diagnostics of a `-json` run.
fn errors(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "diagnostic" && v["diagnostic"]["severity"] == "error")
        .map(|v| v["diagnostic"].clone())
        .collect()
}

/// `terraform plan -json`: (error diagnostics, elapsed, output text).
fn plan_json(tf: &Terraform) -> (Vec<Value>, Duration, String) {
    let t0 = Instant::now();
    let out = tf
        .run(&["plan", "-input=false", "-no-color", "-json"])
        .unwrap();
    let elapsed = t0.elapsed();
    assert!(!out.success(), "the plan should fail:\n{out}");
    (errors(&out.stdout), elapsed, format!("{out}"))
}

#[test]
fn wrong_ca_and_wrong_secret_fail_once_naming_the_setting() {
    let (emu, _dir) = emulator();
    // Another emulator's CA: a well-formed PEM that did not sign this emulator's certificate.
    let (other, _other_dir) = emulator();
    let wrong_ca = other.ca_pem().unwrap().to_string();
    let ca = emu.ca_pem().unwrap().to_string();
    let fwd = Forwarder::start(emu.addr());
    // The certificate names 127.0.0.1, so the forwarder's address passes the host name check.
    let url = format!("https://{}", fwd.addr);

    let tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    tf.require_provider().unwrap();
    tf.write_config(&config(&url, &ca, SECRET)).unwrap();
    tf.init().unwrap();
    let apply = tf.apply(&[]).unwrap();
    assert!(apply.success(), "{apply}");

    // Wrong CA: one error, on ca_cert_pem, after one connection (no retries).
    tf.write_config(&config(&url, &wrong_ca, SECRET)).unwrap();
    let before = fwd.connections();
    let (errs, elapsed, out) = plan_json(&tf);
    let conns = fwd.connections() - before;
    eprintln!(
        "wrong CA: {} error(s), {conns} connection(s), {elapsed:?}",
        errs.len()
    );
    assert_eq!(errs.len(), 1, "exactly one error diagnostic:\n{out}");
    let d = &errs[0];
    let detail = d["detail"].as_str().unwrap_or_default();
    assert!(
        d["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("certificate is not trusted"),
        "{d}"
    );
    assert!(detail.contains("`ca_cert_pem`"), "names the setting: {d}");
    assert!(detail.contains("invalid peer certificate"), "{d}");
    assert_eq!(conns, 1, "one connection: the probe, never retried\n{out}");

    // Wrong secret: one error, on api_secret, after one request (OPNsense's 2 s penalty is paid once).
    tf.write_config(&config(&url, &ca, WRONG_SECRET)).unwrap();
    let calls_before = emu.calls().len();
    let (errs, elapsed, out) = plan_json(&tf);
    let calls: Vec<String> = emu.calls()[calls_before..].to_vec();
    eprintln!(
        "wrong secret: {} error(s), {} request(s) {calls:?}, {elapsed:?}",
        errs.len(),
        calls.len()
    );
    assert_eq!(errs.len(), 1, "exactly one error diagnostic:\n{out}");
    let d = &errs[0];
    let detail = d["detail"].as_str().unwrap_or_default();
    assert!(
        d["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("refused the API key and secret"),
        "{d}"
    );
    assert!(detail.contains("`api_secret`"), "names the setting: {d}");
    // (Terraform's own snippet of main.tf shows the literal; what the provider says must not.)
    let said = format!("{} {detail}", d["summary"]);
    assert!(
        !said.contains(WRONG_SECRET) && !said.contains(SECRET),
        "a secret leaked: {d}"
    );
    assert_eq!(calls.len(), 1, "one request, never retried: {calls:?}");
    assert!(calls[0].ends_with("-> 401"), "{calls:?}");

    // Fixed settings: back to an empty plan, then clean up.
    tf.write_config(&config(&url, &ca, SECRET)).unwrap();
    tf.plans_empty().unwrap();
    let destroy = tf.destroy().unwrap();
    assert!(destroy.success(), "{destroy}");
}
