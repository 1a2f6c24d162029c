//! What the example tests (`complete_example`, `migration_example`, `firewall_failover`) share: a lab with the emulated OPNsense,
//! Terraform running in the lab's workstation namespace, and the observations the seed made by hand (kubectl
//! through the VIP, HAProxy's exporter, the agents' load-balancer files, the emulator's saved state, what is left
//! on a host).
//!
//! Why a thread per Terraform phase: the harness spawns Terraform itself and a child inherits the network
//! namespace of the thread that forks it, so Terraform runs from a thread that joined the workstation namespace.
//! Lab operations that create namespaces (booting a stopped host) stay on the test's main thread, and every other
//! command is started with [`Lab::ws_command`] / [`Lab::exec`], which pick their namespace explicitly.
//!
//! Secrets stay out of argv: the kubeconfig's client key is written to a 0600 file that curl reads, the API
//! secret and the k3s token reach Terraform through `TF_VAR_*`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use homelab_acceptance::lab_support;
use homelab_acceptance::terraform::hcl_string;
use homelab_acceptance::Terraform;
use homelab_lab::{EmulatorInfo, Lab, LabSpec};

/// The k3s release every example installs.
pub const VERSION: &str = "v1.31.5+k3s1";
/// The lab's install script (our stand-in for get.k3s.io).
pub const INSTALL_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/k3s-sim/install.sh");
/// Paths a k3s install leaves on a host (binary, config, data, units, scripts).
pub const K3S_PATHS: &[&str] = &[
    "/usr/local/bin/k3s",
    "/usr/local/bin/k3s-killall.sh",
    "/usr/local/bin/k3s-uninstall.sh",
    "/usr/local/bin/k3s-agent-uninstall.sh",
    "/etc/rancher/k3s",
    "/var/lib/rancher/k3s",
    "/etc/systemd/system/k3s.service",
    "/etc/systemd/system/k3s.service.env",
    "/etc/systemd/system/k3s-agent.service",
    "/etc/systemd/system/k3s-agent.service.env",
];

/// Takes the lab down when the test ends, however it ends (the lab's own guard; `.lab()`, `.keep()`).
pub use homelab_lab::LabGuard;

/// Builds the lab binary and the k3s stand-in if missing, and lays out install.sh's offline "download"
/// directory (under /opt: lab hosts privatise /tmp, /var, /home, so a checkout there would hide target/).
pub fn artifacts(name: &str) -> PathBuf {
    lab_support::lab_binary();
    lab_support::k3s_artifacts(name, VERSION, &[(VERSION, None)])
}

/// Brings up the seed's lab (emulated OPNsense + 3 servers + 3 agents) under `root`.
pub fn lab_up(name: &str, root: &Path) -> LabGuard {
    assert_eq!(unsafe { libc::geteuid() }, 0, "the lab needs root");
    let mut spec = LabSpec::new(name);
    spec.servers = 3;
    spec.agents = 3;
    spec.root = Some(root.to_path_buf());
    Lab::up_guarded(&spec).expect("lab up")
}

/// The lab's (first) emulator's API key and secret.
pub fn api_credentials(lab: &Lab) -> (String, String) {
    emulator_credentials(lab.emulator().expect("the lab runs the OPNsense emulator"))
}

/// An emulator's API key and secret (the secret from its credentials file).
pub fn emulator_credentials(emu: &EmulatorInfo) -> (String, String) {
    let creds = std::fs::read_to_string(&emu.credentials_file).unwrap();
    let secret = creds
        .lines()
        .find_map(|l| l.strip_prefix("secret="))
        .expect("secret= in the credentials file")
        .to_string();
    (emu.api_key.clone(), secret)
}

/// The lab's values for the variables the examples share (the primary firewall's URL and CA, ssh, the address
/// prefix of the lab network, the k3s version and our install script with its offline artifacts in `art`), as
/// `*.auto.tfvars` lines.
pub fn lab_tfvars(lab: &Lab, art: &Path) -> String {
    let emu = lab.emulator().expect("the lab runs the OPNsense emulator");
    let vip = lab.state().vip.expect("lab VIP").to_string();
    let prefix = vip.rsplit_once('.').unwrap().0;
    format!(
        "opnsense_url = {}\nopnsense_ca_cert_file = {}\nssh_private_key_file = {}\nssh_known_hosts_file = {}\n\
         address_prefix = {}\nk3s_version = \"{VERSION}\"\ninstall_script_file = {}\n\
         install_env = {{ INSTALL_K3S_SIM_ARTIFACTS = {} }}\n",
        hcl_string(&emu.url),
        hcl_string(&emu.ca_file.display().to_string()),
        hcl_string(&lab.ssh_key().display().to_string()),
        hcl_string(&lab.known_hosts().display().to_string()),
        hcl_string(prefix),
        hcl_string(INSTALL_SH),
        hcl_string(&art.display().to_string()),
    )
}

/// `examples/complete` in `tf`'s working directory, with the module where it looks for it (`../modules/k3s-ha`).
pub fn copy_complete_example(tf: &Terraform) {
    let root = homelab_acceptance::paths::workspace_root();
    let base = tf.workdir().parent().unwrap().to_path_buf();
    copy_tf(
        &root.join("examples/modules/k3s-ha"),
        &base.join("modules/k3s-ha"),
    );
    copy_tf(&root.join("examples/complete"), tf.workdir());
}

/// Runs `f` on a thread that joined the lab's workstation network namespace (Terraform and everything it starts
/// run there) and returns its result; a panic in `f` fails the test with its message.
pub fn in_ws<T: Send + 'static>(lab: &Lab, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = homelab_lab::ns::named_netns(&lab.state().ws_netns);
    let h = std::thread::spawn(move || {
        lab_support::enter_netns(&ns);
        f()
    });
    match h.join() {
        Ok(v) => v,
        Err(e) => std::panic::resume_unwind(e),
    }
}

/// Copies the `*.tf` files of `from` into `to`.
pub fn copy_tf(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "tf") {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a command in the workstation namespace.
pub fn ws(lab: &Lab, program: &str, args: &[&str]) -> Output {
    lab.ws_command(program)
        .unwrap()
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Runs a command in the workstation namespace and returns its stdout; panics with the output on failure.
pub fn ws_ok(lab: &Lab, program: &str, args: &[&str]) -> String {
    let o = ws(lab, program, args);
    assert!(
        o.status.success(),
        "{program} {args:?} failed:\n{}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `kubectl --kubeconfig KC ARGS` from the workstation (through whatever server the kubeconfig names).
pub fn kubectl(lab: &Lab, kc: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "--kubeconfig",
        kc.to_str().unwrap(),
        "--request-timeout=10s",
    ];
    all.extend_from_slice(args);
    ws(lab, "/usr/bin/kubectl", &all)
}

/// Node name → Ready condition status ("True"/"False"/"Unknown") through the kubeconfig's server.
pub fn node_ready(lab: &Lab, kc: &Path) -> Result<BTreeMap<String, String>, String> {
    let o = kubectl(
        lab,
        kc,
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ],
    );
    if !o.status.success() {
        return Err(text(&o));
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect())
}

/// Node name → the Ready condition's lastHeartbeatTime (RFC 3339; agents post it every few seconds). `Err` with
/// kubectl's output when the call fails (through a VIP whose pool still lists a server just powered off, a call
/// can time out until the health check marks it DOWN).
pub fn heartbeats(lab: &Lab, kc: &Path) -> Result<BTreeMap<String, String>, String> {
    let o = kubectl(
        lab,
        kc,
        &[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].lastHeartbeatTime}{\"\\n\"}{end}",
        ],
    );
    if !o.status.success() {
        return Err(format!("kubectl get nodes: {}", text(&o)));
    }
    Ok(String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect())
}

/// Client credentials of a kubeconfig, as files curl can use (0600), plus the server URL.
pub struct ClientCreds {
    pub server: String,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn b64_field(kubeconfig: &str, field: &str) -> Vec<u8> {
    let v = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} missing in the kubeconfig"))
        .trim()
        .trim_matches('"')
        .to_string();
    let mut child = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(v.as_bytes()).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{field} is not base64");
    o.stdout
}

/// Splits a kubeconfig into CA / client certificate / client key files under `dir`.
pub fn client_creds(kubeconfig: &str, dir: &Path) -> ClientCreds {
    std::fs::create_dir_all(dir).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server:"))
        .expect("server in the kubeconfig")
        .trim()
        .to_string();
    let c = ClientCreds {
        server,
        ca: dir.join("ca.pem"),
        cert: dir.join("client.pem"),
        key: dir.join("client-key.pem"),
    };
    homelab_lab::write_secret(&c.ca, &b64_field(kubeconfig, "certificate-authority-data")).unwrap();
    homelab_lab::write_secret(&c.cert, &b64_field(kubeconfig, "client-certificate-data")).unwrap();
    homelab_lab::write_secret(&c.key, &b64_field(kubeconfig, "client-key-data")).unwrap();
    c
}

/// One authenticated API request (a new TCP connection each time) to `url`, verifying the server certificate
/// against the cluster CA only when `verify` (before the VIP is a SAN, the seed's x509 error would hide the
/// question "does the API answer").
pub fn api_get(lab: &Lab, creds: &ClientCreds, url: &str, verify: bool) -> Result<String, String> {
    api_get_within(lab, creds, url, verify, Duration::from_secs(3))
}

/// [`api_get`] that gives up after `limit` (an availability probe: a slower answer counts as none).
pub fn api_get_within(
    lab: &Lab,
    creds: &ClientCreds,
    url: &str,
    verify: bool,
    limit: Duration,
) -> Result<String, String> {
    let mut args = vec![
        "-sS".to_string(),
        "--fail".into(),
        "--max-time".into(),
        format!("{:.1}", limit.as_secs_f64()),
        "--cert".into(),
        creds.cert.display().to_string(),
        "--key".into(),
        creds.key.display().to_string(),
    ];
    if verify {
        args.push("--cacert".into());
        args.push(creds.ca.display().to_string());
    } else {
        args.push("-k".into());
    }
    args.push(url.to_string());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = ws(lab, "curl", &argv);
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(text(&o))
    }
}

/// The SANs of the certificate presented at `addr` (`ip:port`), read with a TLS handshake from the workstation.
pub fn wire_sans(lab: &Lab, addr: &str) -> Vec<String> {
    let o = lab
        .ws_command("sh")
        .unwrap()
        .args([
            "-c",
            "openssl s_client -connect \"$1\" </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName",
            "sh",
            addr,
        ])
        .output()
        .unwrap();
    let mut out: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.contains("Subject Alternative Name"))
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.strip_prefix("IP Address:")
                .or_else(|| x.strip_prefix("DNS:"))
                .unwrap_or(x)
                .to_string()
        })
        .collect();
    out.sort();
    out
}

/// HAProxy's Prometheus exporter, scraped from the workstation.
pub fn metrics(lab: &Lab, url: &str) -> String {
    ws_ok(lab, "curl", &["-fsS", "--max-time", "5", url])
}

/// [`metrics`] for waits: a failed scrape is returned, so the wait retries it (right after a host of the lab is
/// powered off, the lab's switch may briefly not answer ARP for the VIP).
pub fn try_metrics(lab: &Lab, url: &str) -> Result<String, String> {
    let o = ws(lab, "curl", &["-fsS", "--max-time", "5", url]);
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!("curl {url} failed: {}", text(&o)))
    }
}

/// The value of the first sample of `name` whose labels contain every `label="value"` in `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Names of the servers whose `haproxy_server_status{state="STATE"}` is 1.
pub fn servers_in_state(text: &str, state: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("haproxy_server_status{"))
        .filter(|l| l.contains(&format!("state=\"{state}\"")) && l.ends_with(" 1"))
        .filter_map(|l| {
            l.split("server=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_string)
        })
        .collect();
    v.sort();
    v
}

/// Waits until every agent in `agents` posted a heartbeat newer than in `before` (a [`heartbeats`] reading).
pub fn wait_heartbeats_after(
    what: &str,
    timeout: Duration,
    lab: &Lab,
    kc: &Path,
    agents: &[&str],
    before: &BTreeMap<String, String>,
) {
    wait_for(what, timeout, || {
        let now = heartbeats(lab, kc)?;
        for a in agents {
            if now.get(*a) <= before.get(*a) {
                return Err(format!(
                    "{a}: heartbeat {:?} not after {:?}",
                    now.get(*a),
                    before.get(*a)
                ));
            }
        }
        Ok(())
    });
}

/// Waits until every agent in `agents` lists exactly `servers` (`ip:6443`) in its load balancer ([`agent_lb`]).
pub fn wait_agents_list(
    what: &str,
    timeout: Duration,
    lab: &Lab,
    agents: &[&str],
    servers: &[String],
) -> Duration {
    let (_, took) = wait_for(what, timeout, || {
        for a in agents {
            let (_, addrs) = agent_lb(lab, a).ok_or(format!("{a}: no LB file"))?;
            if addrs != servers {
                return Err(format!("{a} lists {addrs:?}"));
            }
        }
        Ok(())
    });
    took
}

/// `ServerAddresses` of an agent's client-side load balancer, read from the file k3s keeps (the provider reads the
/// same file), or `None` when it does not exist.
pub fn agent_lb(lab: &Lab, host: &str) -> Option<(String, Vec<String>)> {
    let o = lab
        .exec(
            host,
            "cat /var/lib/rancher/k3s/agent/etc/k3s-agent-load-balancer.json 2>/dev/null",
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
    let url = v["ServerURL"].as_str().unwrap_or_default().to_string();
    let mut addrs: Vec<String> = v["ServerAddresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    addrs.sort();
    Some((url, addrs))
}

/// Polls `check` every 250 ms until it returns `Some`, up to `timeout`; panics with `what` and the last failure.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let t0 = Instant::now();
    let mut last;
    loop {
        match check() {
            Ok(v) => return (v, t0.elapsed()),
            Err(e) => last = e,
        }
        if t0.elapsed() >= timeout {
            panic!("{what}: not reached within {timeout:?}; last: {last}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The emulator's saved configuration (`/__emulator/state`) as the box's *effective* configuration: without the
/// revision counter, empty lists and values equal to the model's default (a fresh box stores nothing; a box whose
/// settings were put back stores the defaults explicitly — the same configuration).
pub fn emulator_config(lab: &Lab) -> serde_json::Value {
    let mut v = emulator_state(lab);
    v.as_object_mut().unwrap().remove("revision");
    for (model, schema) in [
        ("haproxy", opnsense_emulator::schema::haproxy()),
        ("vip", opnsense_emulator::schema::vip()),
        ("alias", opnsense_emulator::schema::alias()),
        ("filter", opnsense_emulator::schema::filter()),
    ] {
        let Some(m) = v.get_mut(model).and_then(|m| m.as_object_mut()) else {
            continue;
        };
        if let Some(a) = m.get_mut("arrays").and_then(|a| a.as_object_mut()) {
            a.retain(|_, list| list.as_array().is_none_or(|l| !l.is_empty()));
        }
        if let Some(vals) = m.get_mut("values").and_then(|a| a.as_object_mut()) {
            vals.retain(|key, val| {
                let (section, field) = key.rsplit_once('.').unwrap_or(("", key));
                let default = schema
                    .section(section)
                    .and_then(|s| s.field(field))
                    .map(|f| f.default.as_str());
                default != val.as_str()
            });
        }
    }
    v
}

/// The emulator's saved state, raw (`/__emulator/state`).
pub fn emulator_state(lab: &Lab) -> serde_json::Value {
    let emu = lab.emulator().unwrap();
    let out = ws_ok(
        lab,
        "curl",
        &[
            "-fsS",
            "--max-time",
            "5",
            "--cacert",
            emu.ca_file.to_str().unwrap(),
            &format!("{}/__emulator/state", emu.url),
        ],
    );
    serde_json::from_str(&out).unwrap()
}

/// What k3s left on `host`: existing k3s paths and k3s processes. Empty = clean.
pub fn k3s_leftovers(lab: &Lab, host: &str) -> Vec<String> {
    let mut left = Vec::new();
    for p in K3S_PATHS {
        let o = lab.exec(host, &format!("test -e {p}")).unwrap();
        if o.status.success() {
            left.push(p.to_string());
        }
    }
    for pid in lab.host_processes(host) {
        let args = homelab_lab::ns::cmdline(pid);
        // The program's name, not its path: a checkout under a directory named after k3s would match the
        // lab's own host-init.
        let prog = args
            .first()
            .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
            .unwrap_or_default();
        let argv = args.join(" ");
        if prog.contains("k3s") || prog.contains("etcd") {
            left.push(format!("process {pid}: {argv}"));
        }
    }
    let units = lab
        .systemctl(host, &["list-units", "--all"])
        .unwrap()
        .stdout;
    // The unit files are checked above; k3s's uninstall script reloads systemd *before* it deletes them (as the
    // real script does), so a removed unit may linger in the manager's memory as "inactive dead" until the next
    // reload. Anything else (active, activating, failed) is a leftover.
    for l in units.lines().filter(|l| l.contains("k3s")) {
        let active = l.split_whitespace().nth(2).unwrap_or_default();
        if active != "inactive" {
            left.push(format!("unit: {}", l.trim()));
        }
    }
    left
}
