//! `bench`: runs the benchmark rows of [`homelab_acceptance::bench`] (and the OPNsense, Go peer, Go-provider
//! start and cluster modules) and writes `docs/benchmarks.md`.
//!
//! Usage: `bench [--runs N] [--heavy] [--heavy-runs N] [--only ID]... [--output FILE]` (normally through
//! `acceptance-tests/dev bench`, which builds the provider in release mode and points `HOMELAB_PROVIDER_DIR` at
//! it). The default run stays affordable (a few minutes); the cluster rows (a lab and a k3s cluster per sample)
//! run with `--heavy` or when selected by id (`--only k3s`, `--only example`). When they do not run, their section
//! of the output file is carried over from the existing file, so a default run never erases them. Progress goes
//! to stderr.

use anyhow::{bail, Context, Result};
use homelab_acceptance::{bench, bench_k3s, bench_opnsense, bench_peer, bench_start};

const USAGE: &str =
    "usage: bench [--runs N] [--heavy] [--heavy-runs N] [--only ID]... [--output FILE]";

fn main() -> Result<()> {
    let mut runs = 11usize;
    let mut heavy_runs = 3usize;
    let mut heavy = false;
    let mut only: Vec<String> = Vec::new();
    let mut output: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => {
                runs = args
                    .next()
                    .context("--runs needs a number")?
                    .parse()
                    .context("--runs")?
            }
            "--heavy-runs" => {
                heavy_runs = args
                    .next()
                    .context("--heavy-runs needs a number")?
                    .parse()
                    .context("--heavy-runs")?
            }
            "--heavy" => heavy = true,
            "--only" => only.push(args.next().context("--only needs a row id")?),
            "--output" => output = Some(args.next().context("--output needs a file")?),
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} ({USAGE})"),
        }
    }
    if runs == 0 || heavy_runs == 0 {
        bail!("--runs and --heavy-runs must be at least 1");
    }
    let rows: Vec<_> = bench::comparisons()
        .into_iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.id))
        .collect();
    let known = |o: &String| {
        rows.iter().any(|c| c.id == o)
            || bench_opnsense::IDS.contains(&o.as_str())
            || bench_peer::IDS.contains(&o.as_str())
            || bench_start::IDS.contains(&o.as_str())
            || bench_k3s::IDS.contains(&o.as_str())
    };
    if let Some(bad) = only.iter().find(|o| !known(o)) {
        bail!("no benchmark row matches {bad:?}");
    }
    let mut results = Vec::new();
    for c in &rows {
        eprintln!("bench: {} ({} runs per side)...", c.id, runs);
        let r = bench::measure(c, runs).with_context(|| format!("benchmark {}", c.id))?;
        eprintln!(
            "bench: {}: subject {:.1} ms, baseline {:.1} ms, ratio {:.2}x{}",
            r.id,
            r.subject_ms,
            r.baseline_ms,
            r.ratio(),
            r.provider_rss_kib
                .map(|k| format!(", provider peak RSS {:.1} MiB", k as f64 / 1024.0))
                .unwrap_or_default()
        );
        results.push(r);
    }
    // OPNsense rows and counts (issue 5): see acceptance-tests/src/bench_opnsense.rs.
    let (opnsense_rows, opnsense_md) =
        bench_opnsense::run(runs, &only).context("OPNsense benchmarks")?;
    results.extend(opnsense_rows);
    // Against the thinnest Go provider (issue 16): see acceptance-tests/src/bench_peer.rs.
    let (peer_rows, peer_md) = bench_peer::run(runs, &only).context("Go peer benchmarks")?;
    results.extend(peer_rows);
    let start_md = bench_start::run(runs, &only).context("provider start vs a Go provider")?;
    let cluster = bench_k3s::run(heavy_runs, &only, heavy).context("cluster benchmarks")?;
    let failed = cluster
        .as_ref()
        .map(|c| c.failed.clone())
        .unwrap_or_default();
    let cluster_md = cluster.map(|c| c.markdown);
    // A run without the cluster rows keeps the section the output file already has.
    let cluster_md = cluster_md.or_else(|| {
        let old = std::fs::read_to_string(output.as_deref()?).ok()?;
        bench_k3s::carry_over(&old).inspect(|_| {
            eprintln!("bench: cluster rows not run (use --heavy): their section is carried over unchanged");
        })
    });
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let md = bench::render_markdown(&results, &date, &bench::machine_description());
    // Taken just before the first timed sample (after the builds and the package installs `dev bench` does first).
    let load_start = bench::first_sample_load().unwrap_or_else(|| "? (no timed sample)".into());
    // Other work on the machine shifts absolute times (the ratios are taken within the run): say how loaded it was.
    let md = md.replacen(
        "- Samples:",
        &format!(
            "- Load average (1/5/15 min) at the first timed sample: {load_start}; at the end of the run: {} (other work ran on \
             the machine; medians of alternating samples keep the ratios comparable)\n- Samples:",
            bench::loadavg()
        ),
        1,
    );
    let extra = format!(
        "{opnsense_md}{peer_md}{}\n{}",
        start_md.unwrap_or_default(),
        cluster_md.unwrap_or_default()
    );
    let md = md.replacen("\n## Reproduce", &format!("{extra}\n## Reproduce"), 1);
    match output {
        Some(path) => {
            std::fs::write(&path, md).with_context(|| format!("writing {path}"))?;
            eprintln!("bench: wrote {path}");
        }
        None => print!("{md}"),
    }
    if !failed.is_empty() {
        bail!("cluster benchmarks failed: {}", failed.join(", "));
    }
    Ok(())
}
