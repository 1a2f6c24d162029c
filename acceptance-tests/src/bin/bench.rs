//! `bench`: runs the benchmark rows of [`homelab_acceptance::bench`] and writes `docs/benchmarks.md`.
//!
//! Usage: `bench [--runs N] [--only ID]... [--output FILE]` (normally through `acceptance-tests/dev bench`, which
//! builds the provider in release mode and points `HOMELAB_PROVIDER_DIR` at it). Progress goes to stderr.

use anyhow::{bail, Context, Result};
use homelab_acceptance::bench;

fn main() -> Result<()> {
    let mut runs = 11usize;
    let mut only: Vec<String> = Vec::new();
    let mut output: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().context("--runs needs a number")?.parse().context("--runs")?,
            "--only" => only.push(args.next().context("--only needs a row id")?),
            "--output" => output = Some(args.next().context("--output needs a file")?),
            "-h" | "--help" => {
                eprintln!("usage: bench [--runs N] [--only ID]... [--output FILE]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (usage: bench [--runs N] [--only ID]... [--output FILE])"),
        }
    }
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let rows: Vec<_> = bench::comparisons()
        .into_iter()
        .filter(|c| only.is_empty() || only.iter().any(|o| o == c.id))
        .collect();
    if rows.is_empty()
        && !only
            .iter()
            .any(|o| homelab_acceptance::bench_opnsense::IDS.contains(&o.as_str()))
    {
        bail!("no benchmark row matches {only:?}");
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
    // OPNsense rows and counts (helper H, issue 5): see acceptance-tests/src/bench_opnsense.rs.
    let (opnsense_rows, opnsense_md) =
        homelab_acceptance::bench_opnsense::run(runs, &only).context("OPNsense benchmarks")?;
    results.extend(opnsense_rows);
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let md = bench::render_markdown(&results, &date, &bench::machine_description());
    let md = md.replacen("\n## Reproduce", &format!("{opnsense_md}\n## Reproduce"), 1);
    match output {
        Some(path) => {
            std::fs::write(&path, md).with_context(|| format!("writing {path}"))?;
            eprintln!("bench: wrote {path}");
        }
        None => print!("{md}"),
    }
    Ok(())
}
