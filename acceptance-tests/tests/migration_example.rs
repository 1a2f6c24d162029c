//! The seed's migration, on `examples/migration`, with real Terraform, real haproxy (the emulated OPNsense), real
//! ssh and the real kubectl:
//!
//! 0. by hand, as the seed's cluster was made: k8s-control-1 installed with the install script over ssh (a single
//!    server, so SQLite), the three workers joined to its own address;
//! 1. `migrate = false`, the seed's first section: the HAProxy VIP in front of k8s-control-1 (by its address). The
//!    plan only creates OPNsense objects; no k3s process restarts; plans are empty afterwards. Through the VIP the
//!    API answers, but the certificate lacks the VIP (the seed's x509 error);
//! 2. `migrate = true`: the import blocks adopt the four nodes and the same apply converts k8s-control-1 to
//!    embedded etcd behind `allow_datastore_migration` (a backup of the SQLite datastore is left on the host), its
//!    certificate gains the VIP (read on the wire before and after), k8s-control-2 and -3 join, the agents are
//!    re-pointed at the VIP. The plan imports, updates in place and creates, never replaces; the cluster's objects
//!    survive; plans are empty afterwards.
//!
//! During step 2 a poller sends an authenticated API request through the VIP every 200 ms (a new connection each
//! time, like a workload's client after a disconnect; an answer slower than 1 s counts as none) and the outage
//! windows are reported. The bound, from the seed's story: its only API interruptions were the restarts of its
//! *only* server — the reinstall with `--cluster-init` that converted the datastore, then the restart after it
//! deleted the stale serving certificate. Joining the servers, growing the HAProxy pool and reinstalling the
//! workers were invisible ("none of the workloads seemed to have been impacted"). So the migration may interrupt
//! the API at most twice, for no longer in total than those two restarts of the sole server — measured in the lab
//! with the same probe and a plain `systemctl restart k3s` of k8s-control-1, once on SQLite before the migration
//! and once on etcd after it — each with the provider's SSH sequence around it (`SEQUENCE_SLACK`), plus the probe's
//! granularity; and once HAProxy has a second server UP nothing may fail. Numbers: the test's
//! `migration example:` lines.

mod example_lab;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use example_lab::*;
use homelab_acceptance::terraform::Action;
use homelab_acceptance::{paths, Terraform, TerraformVersion};
use homelab_lab::Lab;

/// The token the hand-made cluster was installed with (the operator's K3S_TOKEN; TF_VAR_k3s_token later).
const TOKEN: &str = "seed-homelab-cluster-token";
const AGENTS: [&str; 3] = ["k8s-worker-1", "k8s-worker-2", "k8s-worker-3"];
const SERVERS: [&str; 3] = ["k8s-control-1", "k8s-control-2", "k8s-control-3"];
/// Poll period of the availability probe.
const POLL: Duration = Duration::from_millis(200);
/// What the provider adds around one restart, over SSH: stop, copy of the datastore, re-running the installer (a
/// hand install's settings move into config.yaml), config write, start (conversion); stop, `certificate rotate`,
/// start (certificate). A handful of round trips and a script run; generous for a loaded 2-core machine.
const SEQUENCE_SLACK: Duration = Duration::from_secs(4);
/// An API answer slower than this counts as an outage (and bounds the probe's own contribution to a window).
const PROBE_LIMIT: Duration = Duration::from_secs(1);

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Installs k3s on `host` the way the seed's cluster was made: the install script piped into `sh` over ssh, with
/// K3S_* / INSTALL_K3S_* in its environment. The script and the token travel on ssh's stdin, never in argv.
fn hand_install(lab: &Lab, host: &str, env: &[(&str, &str)], art: &std::path::Path) {
    let mut script = String::from("set -e\n");
    script.push_str(&format!(
        "export INSTALL_K3S_VERSION={}\nexport INSTALL_K3S_SIM_ARTIFACTS={}\n",
        sh_quote(VERSION),
        sh_quote(&art.display().to_string())
    ));
    for (k, v) in env {
        script.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    script.push_str("cat > /tmp/k3s-install.sh <<'K3S_INSTALL_SCRIPT_EOF'\n");
    script.push_str(&std::fs::read_to_string(INSTALL_SH).unwrap());
    script.push_str("K3S_INSTALL_SCRIPT_EOF\nsh /tmp/k3s-install.sh\nrm -f /tmp/k3s-install.sh\n");
    let mut child = lab
        .ssh_command(host, "root")
        .unwrap()
        .args(["sh", "-s"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "hand install on {host} failed:\n{}",
        text(&out)
    );
}

fn main_pid(lab: &Lab, host: &str, unit: &str) -> String {
    lab.systemctl(host, &["show", "-p", "MainPID", "--value", unit])
        .unwrap()
        .stdout
        .trim()
        .to_string()
}

/// One probe of the availability poller.
#[derive(Clone, Copy)]
struct Probe {
    at: Duration,
    ok: bool,
}

/// Outage windows (start, length) of a probe series: from the first failed probe to the next successful one.
fn windows(probes: &[Probe]) -> Vec<(Duration, Duration)> {
    let mut out = Vec::new();
    let mut start = None;
    for p in probes {
        match (p.ok, start) {
            (false, None) => start = Some(p.at),
            (true, Some(s)) => {
                out.push((s, p.at - s));
                start = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some(last)) = (start, probes.last()) {
        out.push((s, last.at - s));
    }
    out
}

/// Polls `url` through the workstation until stopped; returns the probes.
fn start_poller(
    lab: &Lab,
    creds: Arc<ClientCreds>,
    url: String,
    t0: Instant,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<Vec<Probe>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let lab = lab.clone();
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut probes = Vec::new();
        while !s.load(Ordering::Relaxed) {
            let at = t0.elapsed();
            let ok = api_get_within(&lab, &creds, &url, false, PROBE_LIMIT).is_ok();
            probes.push(Probe { at, ok });
            let spent = t0.elapsed() - at;
            std::thread::sleep(POLL.saturating_sub(spent));
        }
        probes
    });
    (stop, h)
}

/// How long the API at `url` is unavailable while k3s restarts on k8s-control-1 (`systemctl restart k3s` over
/// ssh, which returns once k3s reports ready), probed like the migration is.
fn restart_outage(lab: &Lab, creds: &Arc<ClientCreds>, url: &str) -> Duration {
    let t0 = Instant::now();
    let (stop, poller) = start_poller(lab, creds.clone(), url.to_string(), t0);
    std::thread::sleep(Duration::from_millis(600));
    let o = lab
        .ssh_command("k8s-control-1", "root")
        .unwrap()
        .args(["systemctl", "restart", "k3s"])
        .output()
        .unwrap();
    assert!(o.status.success(), "restart: {}", text(&o));
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    windows(&poller.join().unwrap()).iter().map(|w| w.1).sum()
}

/// Attributes whose planned value differs from the prior one (for the report of an update).
fn changed_attrs(plan: &homelab_acceptance::terraform::Plan, address: &str) -> Vec<String> {
    let Some(c) = plan.change(address) else {
        return vec![];
    };
    let before = c.pointer("/change/before").cloned().unwrap_or_default();
    let after = c.pointer("/change/after").cloned().unwrap_or_default();
    let unknown = c
        .pointer("/change/after_unknown")
        .cloned()
        .unwrap_or_default();
    let mut keys: Vec<String> = after
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| {
            before.get(k.as_str()) != Some(v) || unknown.get(k.as_str()) == Some(&true.into())
        })
        .map(|(k, _)| k.clone())
        .collect();
    keys.sort();
    keys
}

#[test]
fn migration_example_imports_converts_and_grows_without_more_outage_than_the_seed() {
    if !TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        return;
    }
    let t_all = Instant::now();
    let root = paths::workspace_root();
    let art = artifacts("migration-example");
    let tmp = tempfile::tempdir().unwrap();
    let guard = lab_up("migex", &tmp.path().join("labs"));
    let lab = guard.lab().clone();
    let (key, secret) = api_credentials(&lab);
    let vip = lab.state().vip.expect("lab VIP").to_string();
    let c1 = lab.host("k8s-control-1").unwrap().ip.to_string();

    // 0. The seed's starting point, made by hand: one SQLite server, three agents joined to its address.
    let t0 = Instant::now();
    hand_install(
        &lab,
        "k8s-control-1",
        &[
            ("K3S_TOKEN", TOKEN),
            ("K3S_NODE_NAME", "k8s-control-1"),
            ("INSTALL_K3S_EXEC", "server --disable servicelb"),
        ],
        &art,
    );
    std::thread::scope(|s| {
        for a in AGENTS {
            let (lab, art, url) = (&lab, &art, format!("https://{c1}:6443"));
            s.spawn(move || {
                hand_install(
                    lab,
                    a,
                    &[
                        ("K3S_TOKEN", TOKEN),
                        ("K3S_URL", &url),
                        ("K3S_NODE_NAME", a),
                    ],
                    art,
                )
            });
        }
    });
    eprintln!("migration example: hand-made cluster in {:?}", t0.elapsed());
    let db = lab
        .exec("k8s-control-1", "ls /var/lib/rancher/k3s/server/db")
        .unwrap();
    let db = String::from_utf8_lossy(&db.stdout).into_owned();
    assert!(
        db.lines().any(|l| l == "state.db") && !db.lines().any(|l| l == "etcd"),
        "the hand-made server does not run on SQLite: {db}"
    );
    // The seed downloaded the kubeconfig from k8s-control-1 (its server is 127.0.0.1 there).
    let raw_kc = String::from_utf8(
        lab.exec("k8s-control-1", "cat /etc/rancher/k3s/k3s.yaml")
            .unwrap()
            .stdout,
    )
    .unwrap();
    let direct_kc = raw_kc.replace("https://127.0.0.1:6443", &format!("https://{c1}:6443"));
    let kc_direct = tmp.path().join("direct.yaml");
    std::fs::write(&kc_direct, &direct_kc).unwrap();
    let (nodes, _) = wait_for(
        "4 nodes Ready on the hand-made cluster",
        Duration::from_secs(60),
        || {
            let n = node_ready(&lab, &kc_direct)?;
            if n.len() == 4 && n.values().all(|s| s == "True") {
                Ok(n)
            } else {
                Err(format!("{n:?}"))
            }
        },
    );
    assert!(nodes.contains_key("k8s-control-1"));
    let creds = Arc::new(client_creds(&direct_kc, &tmp.path().join("creds")));
    let created = |kc: &std::path::Path| {
        let o = kubectl(
            &lab,
            kc,
            &["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.creationTimestamp}{\"\\n\"}{end}"],
        );
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.starts_with("k8s-worker"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let workers_created = created(&kc_direct);
    assert_eq!(workers_created.len(), 3);

    // The seed's outage unit: one restart of its only server, measured on the wire (SQLite now; on etcd below).
    let c1_api = format!("https://{c1}:6443/api/v1/nodes?limit=1");
    let restart_sqlite = restart_outage(&lab, &creds, &c1_api);
    eprintln!("migration example: one restart of the sole server on SQLite = {restart_sqlite:?} of API outage");

    // 1. The load balancer in front of the existing server (nothing on the nodes changes).
    let mut tf = Terraform::new(TerraformVersion::V1_15).unwrap();
    tf.set_env("TF_VAR_opnsense_api_key", key)
        .set_env("TF_VAR_opnsense_api_secret", secret)
        .set_env("TF_VAR_k3s_token", TOKEN)
        .set_timeout(Duration::from_secs(600));
    copy_tf(&root.join("examples/migration"), tf.workdir());
    let tfvars = |migrate: bool| format!("migrate = {migrate}\n{}", lab_tfvars(&lab, &art));
    tf.write_file("lab.auto.tfvars", &tfvars(false)).unwrap();
    let pids = || -> Vec<String> {
        std::iter::once(main_pid(&lab, "k8s-control-1", "k3s"))
            .chain(AGENTS.iter().map(|a| main_pid(&lab, a, "k3s-agent")))
            .collect()
    };
    let pids_before = pids();
    let (tf, lb_plan) = in_ws(&lab, move || {
        tf.run_ok(&["plan", "-input=false", "-no-color", "-out=lb.tfplan"])
            .unwrap();
        let plan = tf.show_plan("lb.tfplan").unwrap();
        let t = Instant::now();
        tf.run_ok(&["apply", "-input=false", "-no-color", "lb.tfplan"])
            .unwrap();
        eprintln!(
            "migration example: step 1 (load balancer) apply took {:?}",
            t.elapsed()
        );
        tf.plans_empty()
            .unwrap_or_else(|e| panic!("after step 1: {e}"));
        (tf, plan)
    });
    for c in lb_plan.changes() {
        let addr = c["address"].as_str().unwrap_or_default();
        assert!(
            addr.starts_with("homelab_opnsense_") && lb_plan.action(addr) == Some(Action::Create),
            "step 1 should only create OPNsense objects, plans {:?} for {addr}",
            lb_plan.action(addr)
        );
    }
    assert_eq!(lb_plan.changes().len(), 9, "step 1's objects");
    assert_eq!(pids(), pids_before, "step 1 restarted k3s somewhere");
    let nodes_addr = |a: &str| format!("homelab_k3s_agent.worker[\"{a}\"]");
    let out = |tf: &Terraform, name: &str| tf.run_ok(&["output", "-raw", name]).unwrap().stdout;
    // Through the VIP the API answers, but the certificate does not name the VIP yet: the seed's x509 error.
    let vip_api = format!("https://{vip}:6443/api/v1/nodes?limit=1");
    api_get(&lab, &creds, &vip_api, false).expect("the API through the VIP (no verification)");
    let err =
        api_get(&lab, &creds, &vip_api, true).expect_err("the certificate should lack the VIP");
    eprintln!(
        "migration example: before: {}",
        err.lines().next().unwrap_or_default()
    );
    let sans_before = wire_sans(&lab, &format!("{vip}:6443"));
    assert!(!sans_before.contains(&vip), "{sans_before:?}");

    // 2. Migrate, with the API through the VIP polled all along.
    let tf = {
        let mut tf = tf;
        tf.write_file("lab.auto.tfvars", &tfvars(true)).unwrap();
        tf.set_timeout(Duration::from_secs(900));
        tf
    };
    let t_mig = Instant::now();
    let (stop, poller) = start_poller(&lab, creds.clone(), vip_api.clone(), t_mig);
    // HAProxy's view of the pool during the migration: when does a second server serve?
    let pool = Arc::new(Mutex::new(Vec::<(Duration, usize)>::new()));
    let watch = {
        let (lab, pool, stop, url) = (
            lab.clone(),
            pool.clone(),
            stop.clone(),
            format!("http://{vip}:8404/metrics"),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let o = ws(&lab, "curl", &["-fsS", "--max-time", "2", &url]);
                let up = servers_in_state(&String::from_utf8_lossy(&o.stdout), "UP").len();
                pool.lock().unwrap().push((t_mig.elapsed(), up));
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let (tf, migrate, apply_took) = in_ws(&lab, move || {
        tf.run_ok(&["plan", "-input=false", "-no-color", "-out=migrate.tfplan"])
            .unwrap();
        let plan = tf.show_plan("migrate.tfplan").unwrap();
        let t = Instant::now();
        let applied = tf
            .run_ok(&["apply", "-input=false", "-no-color", "migrate.tfplan"])
            .unwrap();
        let took = t.elapsed();
        // What the operator is told (summaries only: where the backup went, which certificate cure ran).
        for l in applied
            .stdout
            .lines()
            .filter(|l| l.starts_with("Warning: "))
        {
            eprintln!("migration example: apply says {l}");
        }
        (tf, plan, took)
    });
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let probes = poller.join().unwrap();
    watch.join().unwrap();
    let ha_since = pool
        .lock()
        .unwrap()
        .iter()
        .find(|(_, up)| *up >= 2)
        .map(|(at, _)| *at);
    let outages = windows(&probes);
    let total: Duration = outages.iter().map(|w| w.1).sum();
    eprintln!(
        "migration example: migrate apply took {apply_took:?}; {} probes through the VIP, {} failed; outage windows \
         (start, length): {outages:?}; total {total:?}",
        probes.len(),
        probes.iter().filter(|p| !p.ok).count()
    );
    // The reviewed plan: four imports, in-place updates, the new servers created, nothing replaced or deleted.
    for (addr, want) in [
        ("homelab_k3s_server.k8s_control_1[0]", Action::Update),
        ("homelab_k3s_server.new[\"k8s-control-2\"]", Action::Create),
        ("homelab_k3s_server.new[\"k8s-control-3\"]", Action::Create),
        ("homelab_opnsense_haproxy_backend.api", Action::Update),
    ] {
        assert_eq!(migrate.action(addr), Some(want), "migrate plan for {addr}");
    }
    assert!(migrate.imports("homelab_k3s_server.k8s_control_1[0]"));
    for a in AGENTS {
        assert!(migrate.imports(&nodes_addr(a)), "{a} not imported");
        assert_eq!(
            migrate.action(&nodes_addr(a)),
            Some(Action::Update),
            "migrate plan for {a}"
        );
    }
    for c in migrate.changes() {
        let addr = c["address"].as_str().unwrap_or_default();
        let action = migrate.action(addr);
        assert!(
            !matches!(action, Some(Action::Delete | Action::Replace)),
            "the migrate plan would {action:?} {addr}"
        );
    }
    assert_eq!(
        migrate.after("homelab_k3s_server.k8s_control_1[0]", "datastore"),
        Some(&serde_json::json!("etcd")),
        "the plan shows the datastore change"
    );
    for a in std::iter::once("homelab_k3s_server.k8s_control_1[0]".to_string())
        .chain(AGENTS.iter().map(|a| nodes_addr(a)))
    {
        eprintln!(
            "migration example: migrate plan {a} changes {:?}",
            changed_attrs(&migrate, &a)
        );
    }

    // The result: etcd (with a backup of the SQLite datastore), the VIP in the certificate on the wire, three
    // servers in etcd and in the pool, the agents behind the VIP, the cluster's objects kept.
    let tf = in_ws(&lab, move || {
        assert_eq!(out(&tf, "datastore"), "etcd");
        tf.plans_empty()
            .unwrap_or_else(|e| panic!("after the migration: {e}"));
        tf
    });
    let db = lab
        .exec(
            "k8s-control-1",
            "ls /var/lib/rancher/k3s/server/db; echo ---; ls -A /var/backups/k3s",
        )
        .unwrap();
    let db = String::from_utf8_lossy(&db.stdout).into_owned();
    let (data, backups) = db.split_once("---").unwrap();
    assert!(
        data.lines().any(|l| l == "etcd"),
        "no etcd datastore: {data}"
    );
    assert!(
        !backups.trim().is_empty(),
        "no backup of the SQLite datastore under /var/backups/k3s"
    );
    eprintln!(
        "migration example: backups on k8s-control-1: {}",
        backups.trim().replace('\n', " ")
    );
    // The backup is the SQLite datastore and the token, readable by root only (what the guide promises).
    let b = lab
        .exec(
            "k8s-control-1",
            "cd /var/backups/k3s/*-sqlite-to-etcd && stat -c %a . && ls db && test -s token && echo token",
        )
        .unwrap();
    let b = String::from_utf8_lossy(&b.stdout).into_owned();
    let mut lines = b.lines();
    assert_eq!(lines.next(), Some("700"), "backup directory mode: {b}");
    assert!(
        b.lines().any(|l| l == "state.db") && b.lines().any(|l| l == "token"),
        "the backup lacks state.db or the token: {b}"
    );
    let sans_after = wire_sans(&lab, &format!("{vip}:6443"));
    assert!(
        sans_after.contains(&vip),
        "the certificate through the VIP still lacks it: {sans_after:?}"
    );
    eprintln!("migration example: SANs on the wire before {sans_before:?}, after {sans_after:?}");
    let kc = tmp.path().join("vip.yaml");
    let tf = in_ws(&lab, move || {
        let k = out(&tf, "kubeconfig");
        std::fs::write(&kc, &k).unwrap();
        (tf, kc)
    });
    let (tf, kc) = tf;
    assert!(std::fs::read_to_string(&kc)
        .unwrap()
        .contains(&format!("server: https://{vip}:6443")));
    api_get(&lab, &creds, &vip_api, true).expect("the API through the VIP, certificate verified");
    let ready = node_ready(&lab, &kc).expect("kubectl through the VIP");
    for n in SERVERS.iter().chain(AGENTS.iter()) {
        assert_eq!(
            ready.get(*n).map(String::as_str),
            Some("True"),
            "{n}: {ready:?}"
        );
    }
    let etcd_nodes = kubectl(
        &lab,
        &kc,
        &[
            "get",
            "nodes",
            "-l",
            "node-role.kubernetes.io/etcd",
            "-o",
            "name",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&etcd_nodes.stdout).lines().count(),
        3,
        "etcd members: {}",
        text(&etcd_nodes)
    );
    assert_eq!(
        created(&kc),
        workers_created,
        "the workers' Node objects did not survive the conversion"
    );
    let servers: Vec<String> = ["k8s-control-1", "k8s-control-2", "k8s-control-3"]
        .iter()
        .map(|s| format!("{}:6443", lab.host(s).unwrap().ip))
        .collect();
    for a in AGENTS {
        let (url, addrs) = agent_lb(&lab, a).expect("agent LB file");
        assert_eq!(
            url,
            format!("https://{vip}:6443"),
            "{a} is not re-pointed at the VIP"
        );
        assert_eq!(addrs, servers, "{a}'s load balancer");
    }
    let m = metrics(&lab, &format!("http://{vip}:8404/metrics"));
    assert_eq!(servers_in_state(&m, "UP"), SERVERS.to_vec(), "pool:\n{m}");

    // The second restart of the seed's story ran on etcd: measure one on the migrated server, on its own address.
    let restart_etcd = restart_outage(&lab, &creds, &c1_api);
    eprintln!(
        "migration example: one restart of k8s-control-1 on etcd = {restart_etcd:?} of API outage"
    );

    // The outage bound (see the module docs): at most two windows, and no more unavailability than the seed's two
    // restarts of the sole server (the conversion from SQLite, the certificate on etcd), each with the provider's
    // SSH sequence around it, plus the probe's granularity (a failing probe takes up to PROBE_LIMIT, the next
    // starts POLL later). The two restarts may follow each other closely enough to make one window.
    let bound = restart_sqlite + restart_etcd + 2 * SEQUENCE_SLACK + PROBE_LIMIT + POLL;
    eprintln!(
        "migration example: outage {total:?} in {} window(s); bound <= 2 windows, <= {bound:?} in total; whole test \
         {:?}",
        outages.len(),
        t_all.elapsed()
    );
    let ha_since = ha_since.expect("HAProxy never had two servers UP during the migration");
    eprintln!("migration example: two servers UP in the pool from {ha_since:?} on");
    let late: Vec<Duration> = probes
        .iter()
        .filter(|p| !p.ok && p.at > ha_since)
        .map(|p| p.at)
        .collect();
    assert!(
        late.is_empty(),
        "the API through the VIP failed after the pool had two servers (at {late:?}): joins, pool changes and \
         agent re-pointing must be invisible, as in the seed"
    );
    assert!(
        outages.len() <= 2,
        "{} outage windows through the VIP (the seed had at most 2): {outages:?}",
        outages.len()
    );
    assert!(
        total <= bound,
        "the API was unavailable through the VIP for {total:?} ({outages:?}), more than {bound:?}"
    );
    drop(tf);
    drop(guard);
}
