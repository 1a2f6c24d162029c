//! OPNsense benchmarks (issue 5), kept apart from [`crate::bench`]'s generic rows because every sample needs a
//! running OPNsense emulator and several measurements are counts (API calls, reconfigures), not times.
//!
//! What is measured, all in one run:
//! - time rows (ratios against `terraform_data` in the same run, alternating samples): `plan` (refreshing) and
//!   `apply` (create; every sample is destroyed again, untimed) of 50 `homelab_opnsense_haproxy_server`s against
//!   50 `terraform_data`; a no-op refreshed plan of the seed's OPNsense objects with 50 ms injected latency on every
//!   API call against the same plan without latency (the target is an absolute < 1 s);
//! - counts: API calls per refreshed plan as N grows (expected flat per type: one whole-model read serves every
//!   HAProxy object), and haproxy reconfigures per apply as N grows (creating a pool of N servers; changing the
//!   weight of all N, which goes live through os-haproxy's runtime API without any reconfigure; changing the port of
//!   all N, which needs configtest → reconfigure, at the default parallelism and with `-parallelism` above N).
//!
//! Why the port-change count no longer grows with N at Terraform's default parallelism: Terraform holds one of its
//! `parallelism` (10) slots for the whole execution of a resource node, `ApplyResourceChange` included
//! (`ContextGraphWalker.Execute` in `internal/terraform/graph_walk_context.go`). Answering each resource only once
//! its change is live would bound one reconfigure to 10 changes (⌈N/10⌉ for N); the coalescer instead configtests a
//! full round, answers all its writers but one, and makes the whole stream live in one reconfigure the held writer
//! waits for (see `src/opnsense/coalesce.rs`), so the column should read ≤ 2 for every N.

use std::collections::BTreeMap;
use std::time::Instant;

use opnsense_emulator::{Config, Emulator, EmulatorHandle, FaultKind, FaultRule};

use crate::bench::{median, RowResult};
use crate::terraform::{
    hcl_string, required_providers, Error, Result, Terraform, TerraformVersion,
};

const KEY: &str = "bench-key-0000000000000000000000000000000000000000";
const SECRET: &str = "bench-secret-000000000000000000000000000000000000000";

/// An emulator with its state in `dir`, interfaces as in the seed (`opt1` = K3S).
fn emulator(dir: &std::path::Path) -> Result<EmulatorHandle> {
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().expect("literal address"),
        dir.join("config.json"),
        KEY,
        SECRET,
    );
    cfg.interfaces = vec![
        ("wan".into(), "WAN".into()),
        ("lan".into(), "LAN".into()),
        ("opt1".into(), "K3S".into()),
    ];
    Emulator::start(cfg).map_err(|e| Error::Check(format!("starting the OPNsense emulator: {e}")))
}

fn provider(emu: &EmulatorHandle) -> String {
    format!(
        "{}\nprovider \"homelab\" {{\n  opnsense {{\n    url = {}\n    api_key = {}\n    api_secret = {}\n  }}\n}}\n",
        required_providers(),
        hcl_string(&emu.url()),
        hcl_string(KEY),
        hcl_string(SECRET),
    )
}

fn servers(n: usize, weight: u32) -> String {
    servers_on(n, weight, 80)
}

fn servers_on(n: usize, weight: u32, port: u16) -> String {
    (0..n)
        .map(|i| {
            format!(
                "resource \"homelab_opnsense_haproxy_server\" \"s{i}\" {{\n  name = \"s-{i}\"\n  address = \"127.0.{}.{}\"\n  port = {port}\n  weight = {weight}\n}}\n",
                1 + i / 250,
                1 + i % 250
            )
        })
        .collect()
}

fn terraform_data(n: usize) -> String {
    (0..n)
        .map(|i| format!("resource \"terraform_data\" \"d{i}\" {{\n  input = \"{i}\"\n}}\n"))
        .collect()
}

/// A pool linking servers `s0..s{n-1}`, a frontend on it, and haproxy enabled (so reconfigures reload haproxy).
fn pool(n: usize, fe_port: u16) -> String {
    let ids: Vec<String> = (0..n)
        .map(|i| format!("homelab_opnsense_haproxy_server.s{i}.id"))
        .collect();
    format!(
        "resource \"homelab_opnsense_haproxy_backend\" \"b\" {{\n  name = \"pool\"\n  mode = \"tcp\"\n  servers = [{}]\n}}\n\
resource \"homelab_opnsense_haproxy_frontend\" \"f\" {{\n  name = \"pool\"\n  mode = \"tcp\"\n  bind = [\"127.0.0.1:{fe_port}\"]\n  default_backend = homelab_opnsense_haproxy_backend.b.id\n}}\n\
resource \"homelab_opnsense_haproxy_settings\" \"s\" {{\n  enabled = true\n}}\n",
        ids.join(", ")
    )
}

/// The seed's OPNsense objects: VIP, 3 servers, TCP health check every 10s, round-robin TCP pool, frontend on the
/// VIP, haproxy enabled with the Prometheus exporter.
fn seed(fe_port: u16, exporter_port: u16) -> String {
    let mut hcl = String::from(
        "resource \"homelab_opnsense_vip\" \"k3s\" {\n  interface = \"opt1\"\n  address = \"127.0.3.100/32\"\n}\n\
resource \"homelab_opnsense_haproxy_healthcheck\" \"k3s\" {\n  name = \"k3s-controlplane\"\n  type = \"tcp\"\n  interval = \"10s\"\n}\n",
    );
    for i in 1..=3 {
        hcl.push_str(&format!(
            "resource \"homelab_opnsense_haproxy_server\" \"k3s_{i}\" {{\n  name = \"k8s-control-{i}\"\n  address = \"127.0.2.{i}\"\n  port = 6443\n}}\n"
        ));
    }
    hcl.push_str(&format!(
        "resource \"homelab_opnsense_haproxy_backend\" \"k3s\" {{\n  name = \"k3s-controlplane\"\n  mode = \"tcp\"\n  algorithm = \"roundrobin\"\n  servers = [homelab_opnsense_haproxy_server.k3s_1.id, homelab_opnsense_haproxy_server.k3s_2.id, homelab_opnsense_haproxy_server.k3s_3.id]\n  health_check = homelab_opnsense_haproxy_healthcheck.k3s.id\n}}\n\
resource \"homelab_opnsense_haproxy_frontend\" \"k3s\" {{\n  name = \"k3s-controlplane\"\n  mode = \"tcp\"\n  bind = [\"127.0.3.100:{fe_port}\"]\n  default_backend = homelab_opnsense_haproxy_backend.k3s.id\n}}\n\
resource \"homelab_opnsense_haproxy_settings\" \"this\" {{\n  enabled = true\n  prometheus_enabled = true\n  prometheus_bind = [\"127.0.0.1:{exporter_port}\"]\n}}\n"
    ));
    hcl
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|source| Error::Io {
            context: "finding a free port".into(),
            source,
        })
}

/// A Terraform world with `config` written and initialised.
fn world(config: &str) -> Result<Terraform> {
    let tf = Terraform::new(TerraformVersion::V1_15)?;
    tf.write_config(config)?;
    tf.init()?;
    Ok(tf)
}

fn must(out: crate::process::Output, what: &str) -> Result<()> {
    if out.success() {
        Ok(())
    } else {
        Err(Error::Command {
            message: format!("benchmark step failed: {what}"),
            output: Box::new(out),
        })
    }
}

/// Milliseconds of one run of `terraform ARGS` (which must succeed).
fn timed(tf: &Terraform, args: &[&str]) -> Result<f64> {
    let t = Instant::now();
    let out = tf.run(args)?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    must(out, &args.join(" "))?;
    Ok(ms)
}

const PLAN: &[&str] = &["plan", "-no-color", "-input=false"];
const APPLY: &[&str] = &["apply", "-no-color", "-input=false", "-auto-approve"];
const DESTROY: &[&str] = &["destroy", "-no-color", "-input=false", "-auto-approve"];

/// Alternating subject/baseline samples of `sample`, after one warm-up of each.
fn alternate(
    runs: usize,
    mut subject: impl FnMut() -> Result<f64>,
    mut baseline: impl FnMut() -> Result<f64>,
) -> Result<(f64, f64)> {
    subject()?;
    baseline()?;
    crate::bench::note_first_sample();
    let (mut s, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        s.push(subject()?);
        b.push(baseline()?);
    }
    Ok((median(&mut s), median(&mut b)))
}

fn row(id: &str, what: &str, (s, b): (f64, f64), target: Option<f64>, runs: usize) -> RowResult {
    RowResult {
        id: id.into(),
        what: what.into(),
        subject_ms: s,
        baseline_ms: b,
        target,
        provider_rss_kib: None,
        runs,
    }
}

/// `module/controller/action` of each call since `from` (a `METHOD /api/a/b/c/params -> status` record).
fn calls_by_type(emu: &EmulatorHandle, from: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for c in emu.calls().into_iter().skip(from) {
        let mut parts = c.split_whitespace();
        let method = parts.next().unwrap_or("");
        let path = parts.next().unwrap_or("");
        let segs: Vec<&str> = path
            .trim_start_matches('/')
            .trim_start_matches("api/")
            .split('/')
            .take(3)
            .collect();
        *out.entry(format!("{method} {}", segs.join("/")))
            .or_default() += 1;
    }
    out
}

fn reconfigures(emu: &EmulatorHandle, from: usize) -> usize {
    emu.calls()
        .iter()
        .skip(from)
        .filter(|c| c.contains("haproxy/service/reconfigure"))
        .count()
}

/// Medians of a refreshing no-op plan of `n` servers and of `n` `terraform_data` (alternating samples).
fn plan_pair(dir: &std::path::Path, n: usize, runs: usize) -> Result<(f64, f64)> {
    let emu = emulator(dir)?;
    let subject = world(&format!("{}{}", provider(&emu), servers(n, 1)))?;
    must(subject.run(APPLY)?, "apply of the servers")?;
    let baseline = world(&terraform_data(n))?;
    must(baseline.run(APPLY)?, "apply of the terraform_data")?;
    let r = alternate(runs, || timed(&subject, PLAN), || timed(&baseline, PLAN))?;
    must(subject.run(DESTROY)?, "destroy")?;
    Ok(r)
}

/// Medians of an apply creating `n` servers and `n` `terraform_data` (each sample destroyed again, untimed).
fn apply_pair(dir: &std::path::Path, n: usize, runs: usize) -> Result<(f64, f64)> {
    let emu = emulator(dir)?;
    let subject = world(&format!("{}{}", provider(&emu), servers(n, 1)))?;
    let baseline = world(&terraform_data(n))?;
    let create_then_destroy = |tf: &Terraform| -> Result<f64> {
        let ms = timed(tf, APPLY)?;
        must(tf.run(DESTROY)?, "destroy between samples")?;
        Ok(ms)
    };
    alternate(
        runs,
        || create_then_destroy(&subject),
        || create_then_destroy(&baseline),
    )
}

/// Rows whose id is selected by `only` (empty = all).
fn wanted(only: &[String], id: &str) -> bool {
    only.is_empty() || only.iter().any(|o| o == id || o == "opnsense")
}

/// Runs the OPNsense benchmarks selected by `only` (row ids, or `opnsense` for all of them; empty = all). Returns
/// the time rows for the table and a markdown section with the counts.
pub fn run(runs: usize, only: &[String]) -> Result<(Vec<RowResult>, String)> {
    let mut rows = Vec::new();
    if !IDS.iter().any(|id| wanted(only, id)) {
        return Ok((rows, String::new()));
    }
    let mut md = String::from("\n## OPNsense (issue 5)\n");
    let dir = tempfile::tempdir().map_err(|source| Error::Io {
        context: "temp dir for the OPNsense benchmarks".into(),
        source,
    })?;
    const N: usize = 50;

    if wanted(only, "opnsense-plan-50") {
        eprintln!("bench: opnsense-plan-50 ({runs} runs per side)...");
        let emu = emulator(&dir.path().join("plan"))?;
        let subject = world(&format!("{}{}", provider(&emu), servers(N, 1)))?;
        must(subject.run(APPLY)?, "apply of 50 servers")?;
        let baseline = world(&terraform_data(N))?;
        must(baseline.run(APPLY)?, "apply of 50 terraform_data")?;
        let r = alternate(runs, || timed(&subject, PLAN), || timed(&baseline, PLAN))?;
        rows.push(row(
            "opnsense-plan-50",
            "refreshing no-op `plan` of 50 `homelab_opnsense_haproxy_server` (emulator) vs 50 `terraform_data`",
            r,
            None,
            runs,
        ));
        must(subject.run(DESTROY)?, "destroy")?;
    }

    if wanted(only, "opnsense-apply-50") {
        eprintln!("bench: opnsense-apply-50 ({runs} runs per side)...");
        let emu = emulator(&dir.path().join("apply"))?;
        let subject = world(&format!("{}{}", provider(&emu), servers(N, 1)))?;
        let baseline = world(&terraform_data(N))?;
        let create_then_destroy = |tf: &Terraform| -> Result<f64> {
            let ms = timed(tf, APPLY)?;
            must(tf.run(DESTROY)?, "destroy between samples")?;
            Ok(ms)
        };
        let r = alternate(
            runs,
            || create_then_destroy(&subject),
            || create_then_destroy(&baseline),
        )?;
        rows.push(row(
            "opnsense-apply-50",
            "`apply` creating 50 `homelab_opnsense_haproxy_server` (emulator) vs 50 `terraform_data`",
            r,
            None,
            runs,
        ));
    }

    {
        let n = 200usize;
        let (plan_id, apply_id) = (format!("opnsense-plan-{n}"), format!("opnsense-apply-{n}"));
        if wanted(only, &plan_id) {
            eprintln!("bench: {plan_id} ({runs} runs per side)...");
            let r = plan_pair(&dir.path().join(&plan_id), n, runs)?;
            rows.push(row(
                &plan_id,
                &format!("refreshing no-op `plan` of {n} `homelab_opnsense_haproxy_server` (emulator) vs {n} `terraform_data`"),
                r,
                None,
                runs,
            ));
        }
        if wanted(only, &apply_id) {
            eprintln!("bench: {apply_id} ({runs} runs per side)...");
            let r = apply_pair(&dir.path().join(&apply_id), n, runs)?;
            rows.push(row(
                &apply_id,
                &format!("`apply` creating {n} `homelab_opnsense_haproxy_server` (emulator) vs {n} `terraform_data`"),
                r,
                None,
                runs,
            ));
        }
    }

    if wanted(only, "opnsense-scale") {
        eprintln!("bench: opnsense-scale...");
        md.push_str("\n### Time against N (OPNsense objects)\n\nMedian ms of a refreshing no-op `plan` and of an `apply` creating N `homelab_opnsense_haproxy_server` (emulator), each against N `terraform_data` in the same run (servers only: every object kind is one whole-model read at plan and one write at apply, so the kind does not change the curve's shape). Terraform's default parallelism.\n\n| N | plan ms | `terraform_data` plan ms | plan ratio | apply ms | `terraform_data` apply ms | apply ratio |\n|---:|---:|---:|---:|---:|---:|---:|\n");
        let scale_runs = runs.clamp(1, 3);
        for n in [10usize, 50, 100, 200] {
            let p = plan_pair(&dir.path().join(format!("scale-plan-{n}")), n, scale_runs)?;
            let a = apply_pair(&dir.path().join(format!("scale-apply-{n}")), n, scale_runs)?;
            md.push_str(&format!(
                "| {n} | {:.0} | {:.0} | {:.2}× | {:.0} | {:.0} | {:.2}× |\n",
                p.0,
                p.1,
                p.0 / p.1,
                a.0,
                a.1,
                a.0 / a.1
            ));
        }
    }

    if wanted(only, "opnsense-seed-refresh-50ms") {
        eprintln!("bench: opnsense-seed-refresh-50ms ({runs} runs per side)...");
        let emu = emulator(&dir.path().join("seed"))?;
        let tf = world(&format!(
            "{}{}",
            provider(&emu),
            seed(free_port()?, free_port()?)
        ))?;
        must(tf.run(APPLY)?, "apply of the seed")?;
        let calls_before = emu.calls().len();
        let delayed = || {
            emu.add_fault(FaultRule::new(None, FaultKind::Delay { ms: 50 }));
            let r = timed(&tf, PLAN);
            emu.clear_faults();
            r
        };
        let plain = || timed(&tf, PLAN);
        let r = alternate(runs, delayed, plain)?;
        let calls = (emu.calls().len() - calls_before) as f64 / (2 * (runs + 1)) as f64;
        rows.push(row(
            "opnsense-seed-refresh-50ms",
            "refreshing no-op `plan` of the seed's 8 OPNsense objects with 50 ms latency per API call vs without latency (target: < 1 s absolute)",
            r,
            None,
            runs,
        ));
        let _ = std::fmt::Write::write_fmt(
            &mut md,
            format_args!(
                "\n### No-op refreshed plan of the seed with 50 ms API latency\n\n\
Median {:.0} ms with 50 ms added to every API call ({:.0} ms without), target < 1000 ms: {}. \
{calls:.1} API calls per plan on average.\n",
                r.0,
                r.1,
                if r.0 < 1000.0 { "✔" } else { "✘" }
            ),
        );
        must(tf.run(DESTROY)?, "destroy of the seed")?;
    }

    if wanted(only, "opnsense-counts") {
        eprintln!("bench: opnsense-counts...");
        md.push_str("\n### API calls per refreshed plan as N grows\n\nCalls the provider made during one refreshing no-op `plan` of N servers, by endpoint (expected flat: one whole-model read serves every HAProxy object).\n\n| N servers | Calls | By endpoint |\n|---:|---:|---|\n");
        let mut creates = String::from("\n### API calls per apply as N grows\n\nCalls the provider made during the `apply` creating the N servers of the table above (no pool, haproxy not enabled), by endpoint: what each create costs in HTTP round trips to the emulator.\n\n| N servers | Calls | Per server | By endpoint |\n|---:|---:|---:|---|\n");
        for n in [1usize, 10, 50] {
            let emu = emulator(&dir.path().join(format!("refresh-{n}")))?;
            let tf = world(&format!("{}{}", provider(&emu), servers(n, 1)))?;
            let from = emu.calls().len();
            must(tf.run(APPLY)?, "apply")?;
            let by = calls_by_type(&emu, from);
            let total: usize = by.values().sum();
            let list: Vec<String> = by.iter().map(|(k, v)| format!("`{k}` × {v}")).collect();
            creates.push_str(&format!(
                "| {n} | {total} | {:.1} | {} |\n",
                total as f64 / n as f64,
                list.join(", ")
            ));
            let from = emu.calls().len();
            must(tf.run(PLAN)?, "plan")?;
            let by = calls_by_type(&emu, from);
            let total: usize = by.values().sum();
            let list: Vec<String> = by.iter().map(|(k, v)| format!("`{k}` × {v}")).collect();
            md.push_str(&format!("| {n} | {total} | {} |\n", list.join(", ")));
            must(tf.run(DESTROY)?, "destroy")?;
        }
        md.push_str(&creates);

        md.push_str("\n### haproxy reconfigures per apply as N grows\n\nOne pool of N servers behind one frontend, haproxy enabled. \"Create\" applies servers, pool, frontend and settings at once; \"weight\" changes the weight of all N servers (live through os-haproxy's runtime API, `haproxy/maintenance/serverWeight`, no reload); \"port\" changes the port of all N servers (needs configtest → reconfigure), at Terraform's default parallelism and again with `-parallelism=N+1`. Terraform holds one of its 10 parallelism slots while a resource waits, which would need ⌈N/10⌉ reconfigures if every resource were answered only once live; the coalescer configtests each full round, answers all but one writer and makes the stream live in one reconfigure before the apply ends (target ≤ 2; see `src/opnsense/coalesce.rs`).\n\n| N servers | Create | Weight update | Port update (parallelism 10) | ⌈N/10⌉ | Port update (`-parallelism=N+1`) |\n|---:|---:|---:|---:|---:|---:|\n");
        for n in [1usize, 10, 30, 50] {
            let emu = emulator(&dir.path().join(format!("reconf-{n}")))?;
            let fe = free_port()?;
            let cfg = |weight: u32, port: u16| {
                format!(
                    "{}{}{}",
                    provider(&emu),
                    servers_on(n, weight, port),
                    pool(n, fe)
                )
            };
            let tf = world(&cfg(1, 80))?;
            let mut counts = Vec::new();
            for (weight, port, extra) in [
                (1, 80, None),
                (2, 80, None),
                (2, 81, None),
                (2, 82, Some(format!("-parallelism={}", n + 1))),
            ] {
                tf.write_config(&cfg(weight, port))?;
                let mut args = APPLY.to_vec();
                args.extend(extra.as_deref());
                let from = emu.calls().len();
                must(tf.run(&args)?, "apply")?;
                counts.push(reconfigures(&emu, from));
            }
            md.push_str(&format!(
                "| {n} | {} | {} | {} | {} | {} |\n",
                counts[0],
                counts[1],
                counts[2],
                n.div_ceil(10),
                counts[3]
            ));
            must(tf.run(DESTROY)?, "destroy")?;
        }
    }
    Ok((rows, md))
}

/// Ids this module answers to (for `--only`).
pub const IDS: &[&str] = &[
    "opnsense",
    "opnsense-plan-50",
    "opnsense-apply-50",
    "opnsense-seed-refresh-50ms",
    "opnsense-counts",
    "opnsense-plan-200",
    "opnsense-apply-200",
    "opnsense-scale",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_hcl_has_unique_names_and_addresses() {
        let hcl = servers(300, 1);
        assert_eq!(hcl.matches("resource ").count(), 300);
        assert!(hcl.contains("name = \"s-299\""));
        assert!(hcl.contains("127.0.2.50"));
        assert!(pool(2, 80).contains("servers = [homelab_opnsense_haproxy_server.s0.id, homelab_opnsense_haproxy_server.s1.id]"));
        assert!(
            wanted(&[], "x") && wanted(&["opnsense".into()], "x") && !wanted(&["y".into()], "x")
        );
    }
}
