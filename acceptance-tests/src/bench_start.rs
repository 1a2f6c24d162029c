//! Provider start time and memory against Go providers (issues 8 and 16): "is a Rust provider lighter than the
//! Go ones Terraform users run every day?"
//!
//! The like-for-like comparison is the Go peer (`acceptance-tests/bench/go-peer`, see [`crate::bench_peer`]): the
//! thinnest go-plugin provider, built by `dev bench`. A real Go provider, when one is on the machine, is measured
//! as a second reference: here HashiCorp's AWS provider 5.100.0 (a 700 MB statically linked go-plugin binary,
//! found under `/opt/tf-plugins`; `HOMELAB_GO_PROVIDER` names another one). Every binary is started exactly as
//! Terraform starts a plugin (magic cookie, protocol versions, AutoMTLS client certificate in
//! `PLUGIN_CLIENT_CERT`) and timed from spawn to the go-plugin handshake line on stdout; the resident memory
//! (`VmRSS`, `VmHWM`) is read from `/proc` at that moment, before the process is killed. Samples alternate.
//!
//! When neither is found, the row says so and Terraform 1.0.3's own Go binary (`terraform
//! version`, spawn to exit, peak RSS from `wait4`) is measured instead as a clearly labelled reference: it is
//! not a provider, only the cost of starting a Go program of that size on this machine.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::bench::median;
use crate::paths;
use crate::terraform::{Error, Result, TerraformVersion};

/// Ids this module answers to (`--only`).
pub const IDS: &[&str] = &["provider-start-go"];

const MAGIC_COOKIE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";

/// A Go provider binary on this machine, if any: `HOMELAB_GO_PROVIDER`, else the first
/// `terraform-provider-*` under `/opt/tf-plugins` (a Terraform plugin cache layout).
pub fn go_provider() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("HOMELAB_GO_PROVIDER") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    fn walk(dir: &Path, depth: usize) -> Option<PathBuf> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name()?.to_string_lossy().into_owned();
            if p.is_file() && name.starts_with("terraform-provider-") {
                return Some(p);
            }
            if p.is_dir() && depth > 0 {
                if let Some(found) = walk(&p, depth - 1) {
                    return Some(found);
                }
            }
        }
        None
    }
    walk(Path::new("/opt/tf-plugins"), 6)
}

/// One start: (ms to the handshake line, VmRSS KiB, VmHWM KiB) read at that moment.
fn start_once(program: &Path, protocols: &str, client_cert: &str) -> Result<(f64, u64, u64)> {
    let tmp = tempfile::tempdir().map_err(|source| Error::Io {
        context: "temp dir for a plugin start".into(),
        source,
    })?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .env_clear()
        .env("TF_PLUGIN_MAGIC_COOKIE", MAGIC_COOKIE)
        .env("PLUGIN_PROTOCOL_VERSIONS", protocols)
        .env("PLUGIN_CLIENT_CERT", client_cert)
        .env("TMPDIR", tmp.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Check(format!("starting {}: {e}", program.display())))?;
    let mut line = String::new();
    let read = std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line);
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    let status = format!("/proc/{}/status", child.id());
    let rss = crate::process::status_kb_file(&status, "VmRSS").unwrap_or(0);
    let hwm = crate::process::status_kb_file(&status, "VmHWM").unwrap_or(0);
    let _ = child.kill();
    let _ = child.wait();
    match read {
        Ok(n) if n > 0 && line.contains('|') => Ok((elapsed, rss, hwm)),
        _ => Err(Error::Check(format!(
            "{} printed no go-plugin handshake line (got {line:?})",
            program.display()
        ))),
    }
}

/// `terraform version` of the Go Terraform 1.0.3 binary: (ms spawn to exit, peak RSS KiB from wait4).
fn terraform_version_once(tf: &Path) -> Result<(f64, u64)> {
    use std::os::unix::process::ExitStatusExt as _;
    let started = Instant::now();
    let child = Command::new(tf)
        .arg("version")
        .env_clear()
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_CLI_CONFIG_FILE", "/dev/null")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| Error::Check(format!("starting {}: {e}", tf.display())))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 on our own child's pid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed().as_secs_f64() * 1000.0;
    std::mem::forget(child); // reaped by wait4 above
    if rc != pid || !std::process::ExitStatus::from_raw(status).success() {
        return Err(Error::Check(format!("{} version failed", tf.display())));
    }
    Ok((elapsed, usage.ru_maxrss as u64))
}

/// Median (ms, peak RSS KiB) of `terraform version` with the Go Terraform 1.0.3 binary, after a warm-up.
fn terraform_reference(runs: usize) -> Result<(f64, f64)> {
    let tf = TerraformVersion::V1_0.cli();
    terraform_version_once(&tf)?;
    let (mut t, mut r) = (Vec::new(), Vec::new());
    crate::bench::note_first_sample();
    for _ in 0..runs {
        let (a, b) = terraform_version_once(&tf)?;
        t.push(a);
        r.push(b as f64);
    }
    Ok((median(&mut t), median(&mut r)))
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// Measures the selected rows (`runs` samples per side after a warm-up); returns a markdown section, or `None`.
pub fn run(runs: usize, only: &[String]) -> Result<Option<String>> {
    if !(only.is_empty() || only.iter().any(|o| IDS.contains(&o.as_str()))) {
        return Ok(None);
    }
    eprintln!("bench: provider-start-go ({runs} runs per side)...");
    let cert = crate::bench::client_cert_pem()?;
    let ours = paths::provider_binary();
    let mut md =
        String::from("\n## Provider start and memory against Go providers (issues 8, 16)\n\n");
    // The Go peer first (like for like: the thinnest go-plugin provider), then a real Go provider if one is on
    // the machine, as a second reference.
    let mut go: Vec<(String, PathBuf)> = Vec::new();
    match crate::bench_peer::peer_binary() {
        Ok(p) => go.push(("Go peer".into(), p)),
        Err(why) => {
            let _ = writeln!(md, "The Go peer provider is {why}.\n");
        }
    }
    if let Some(p) = go_provider() {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        go.push((format!("`{name}`"), p));
    }
    if go.is_empty() {
        let (mut ot, _, mut oh) = sample_one(&ours, "6,5", &cert, runs)?;
        let (t, r) = terraform_reference(runs)?;
        let _ = writeln!(
            md,
            "No Go provider binary was found on this machine (no Go peer, nothing in `/opt/tf-plugins` or \
             `HOMELAB_GO_PROVIDER`). **Reference only, not a provider:** Terraform 1.0.3's own Go binary running \
             `terraform version` (spawn to exit, peak RSS from `wait4`): {t:.1} ms, {}. Ours, start → handshake: \
             {:.1} ms, peak {}.",
            mib(r),
            median(&mut ot),
            mib(median(&mut oh))
        );
        return Ok(Some(md));
    }
    // Alternate: one start of ours, then one of each Go binary, `runs` times, after one warm-up each.
    start_once(&ours, "6,5", &cert)?;
    for (_, p) in &go {
        start_once(p, "5,6", &cert)?;
    }
    let mut samples: Vec<[Vec<f64>; 3]> = vec![Default::default(); go.len() + 1];
    crate::bench::note_first_sample();
    for _ in 0..runs {
        for (i, p) in std::iter::once(&ours)
            .chain(go.iter().map(|(_, p)| p))
            .enumerate()
        {
            let proto = if i == 0 { "6,5" } else { "5,6" };
            let (a, b, c) = start_once(p, proto, &cert)?;
            samples[i][0].push(a);
            samples[i][1].push(b as f64);
            samples[i][2].push(c as f64);
        }
    }
    let medians: Vec<[f64; 3]> = samples
        .iter_mut()
        .map(|[t, r, h]| [median(t), median(r), median(h)])
        .collect();
    let size = |p: &Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1048576.0);
    let binaries: Vec<String> = go
        .iter()
        .map(|(name, p)| format!("{name}: {:.0} MiB binary, `{}`", size(p), p.display()))
        .collect();
    let _ = writeln!(
        md,
        "Every binary started as Terraform starts a plugin (AutoMTLS), timed to the handshake line; memory read \
         from `/proc` at that moment. Ours: the release build ({:.0} MiB). {}. Median of {runs} alternating starts \
         after one warm-up each.\n",
        size(&ours),
        binaries.join("; ")
    );
    md.push_str("| Provider | Start → handshake | RSS at handshake | Peak RSS (VmHWM) |\n|---|---:|---:|---:|\n");
    let [a, b, c] = medians[0];
    let _ = writeln!(
        md,
        "| terraform-provider-homelab (Rust) | {a:.1} ms | {} | {} |",
        mib(b),
        mib(c)
    );
    for ((name, _), [x, y, z]) in go.iter().zip(&medians[1..]) {
        let _ = writeln!(
            md,
            "| {name} (Go) | {x:.1} ms | {} | {} |",
            mib(*y),
            mib(*z)
        );
    }
    for ((name, _), [x, y, z]) in go.iter().zip(&medians[1..]) {
        let target = if name.starts_with("Go peer") {
            " (target ≤ 1.0×)"
        } else {
            ""
        };
        let _ = writeln!(
            md,
            "| ratio ours / {name}{target} | {:.3}× | {:.3}× | {:.3}× |",
            a / x,
            b / y,
            c / z
        );
    }
    let (t, r) = terraform_reference(runs)?;
    let _ = writeln!(
        md,
        "| reference, not a provider: Terraform 1.0.3's Go binary, `terraform version` (spawn → exit; peak RSS from `wait4`) | {t:.1} ms | — | {} |",
        mib(r)
    );
    md.push_str(
        "\nThe Go peer is the like-for-like comparison: the same plugin machinery (go-plugin handshake, AutoMTLS \
         server certificate, gRPC) and almost nothing else. A real Go provider such as AWS's is a far larger \
         program (see the binary sizes) and bounds what a widely used provider costs per start. Terraform starts \
         a provider process two or three times per command (see the first table), so the start time counts \
         that often.\n",
    );
    Ok(Some(md))
}

/// `runs` starts of one binary after a warm-up: (ms, VmRSS KiB, VmHWM KiB) each.
fn sample_one(
    p: &Path,
    proto: &str,
    cert: &str,
    runs: usize,
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let _ = start_once(p, proto, cert)?; // warm-up (page cache)
    let (mut t, mut r, mut h) = (Vec::new(), Vec::new(), Vec::new());
    crate::bench::note_first_sample();
    for _ in 0..runs {
        let (a, b, c) = start_once(p, proto, cert)?;
        t.push(a);
        r.push(b as f64);
        h.push(c as f64);
    }
    Ok((t, r, h))
}
