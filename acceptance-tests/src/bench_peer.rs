//! "homelab vs the thinnest Go provider" (issue 16): rows whose baseline is a plugin too.
//!
//! The other rows compare against `terraform_data`, which lives inside Terraform and pays for no plugin process,
//! no handshake and no gRPC; a ratio against it mixes what any plugin costs with what ours adds. Here the baseline
//! is the Go peer of `acceptance-tests/bench/go-peer` (go-plugin + tfplugin6 + go-cty, one no-op resource
//! `peer_noop`), built by `dev bench` into `target/` and named by `HOMELAB_GO_PEER`. Both providers sit in the same
//! Terraform world (two `dev_overrides`), so the only difference between subject and baseline is the provider
//! and its resource type; the configurations are the same shape (`provider "…" {}` and N resources with a name).
//!
//! The subject's resource is `homelab_test_fixture`, which keeps its objects in a JSON file (`store_path`): each
//! create and read loads the file and each create rewrites it. `peer_noop` has no store at all. That file work is
//! ours to carry in these rows (it is small: one file of at most 50 short objects).
//!
//! When there is no peer binary (Go or its packages missing, the build failed), the section says why, from
//! `HOMELAB_GO_PEER_MISSING` which `dev bench` sets, and no rows are added.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bench::{median, RowResult};
use crate::process;
use crate::terraform::{
    hcl_string, required_providers, Error, Result, Terraform, TerraformVersion,
};

/// Ids this module answers to (`--only`); `peer` selects all of them.
pub const IDS: &[&str] = &[
    "peer",
    "peer-plan-empty",
    "peer-plan-50",
    "peer-apply-50",
    "floor",
    "floor-peer-plan-50",
    "floor-peer-apply-50",
    "floor-fixture-plan-50",
    "floor-fixture-apply-50",
];

/// Source address of the Go peer (a second `dev_overrides` entry).
pub const PEER_SOURCE: &str = "terraform.local/homelab/peer";
/// File name of the peer binary (Terraform looks for `terraform-provider-<type>`).
pub const PEER_EXE: &str = "terraform-provider-peer";
/// Target of every peer row: not slower than the Go peer.
const TARGET: f64 = 1.0;
const N: usize = 50;

const PLAN_NO_REFRESH: &[&str] = &["plan", "-no-color", "-input=false", "-refresh=false"];
const PLAN: &[&str] = &["plan", "-no-color", "-input=false"];
const APPLY: &[&str] = &["apply", "-no-color", "-input=false", "-auto-approve"];
const DESTROY: &[&str] = &["destroy", "-no-color", "-input=false", "-auto-approve"];

/// The Go peer binary `dev bench` built (`HOMELAB_GO_PEER`), or why there is none.
pub fn peer_binary() -> std::result::Result<PathBuf, String> {
    match std::env::var_os("HOMELAB_GO_PEER") {
        Some(p) if Path::new(&p).is_file() => Ok(PathBuf::from(p)),
        Some(p) => Err(format!(
            "`HOMELAB_GO_PEER` names {}, which is not a file",
            Path::new(&p).display()
        )),
        None => Err(std::env::var("HOMELAB_GO_PEER_MISSING").unwrap_or_else(|_| {
            "not built: `HOMELAB_GO_PEER` is not set (`acceptance-tests/dev bench` builds it)".into()
        })),
    }
}

fn ours(body: &str) -> String {
    format!(
        "{}\nprovider \"homelab\" {{}}\n\n{body}",
        required_providers()
    )
}

fn peer(body: &str) -> String {
    format!(
        "terraform {{\n  required_providers {{\n    peer = {{\n      source = \"{PEER_SOURCE}\"\n    }}\n  }}\n}}\n\
         \nprovider \"peer\" {{}}\n\n{body}"
    )
}

const TERRAFORM_DATA: &str = "resource \"terraform_data\" \"baseline\" {\n  input = \"x\"\n}\n";

fn fixtures(n: usize, store: &Path) -> String {
    let store = hcl_string(&store.to_string_lossy());
    (0..n)
        .map(|i| {
            format!(
                "resource \"homelab_test_fixture\" \"r{i}\" {{\n  name = \"bench-{i}\"\n  store_path = {store}\n}}\n"
            )
        })
        .collect()
}

fn noops(n: usize) -> String {
    (0..n)
        .map(|i| format!("resource \"peer_noop\" \"r{i}\" {{\n  name = \"bench-{i}\"\n}}\n"))
        .collect()
}

/// A Terraform 1.15 world that has both providers, with `config` written and initialised.
fn world(config: &str, peer_bin: &Path) -> Result<Terraform> {
    let tf = Terraform::new(TerraformVersion::V1_15)?.with_extra_provider(PEER_SOURCE, peer_bin)?;
    tf.write_config(config)?;
    tf.init()?;
    Ok(tf)
}

fn must(out: process::Output, what: &str) -> Result<()> {
    if out.success() {
        Ok(())
    } else {
        Err(Error::Command {
            message: format!("benchmark step failed: {what}"),
            output: Box::new(out),
        })
    }
}

/// One side of a row: its world, the timed command and what (if anything) resets the world after a sample.
struct Side {
    tf: Terraform,
    args: &'static [&'static str],
    reset: Option<&'static [&'static str]>,
    /// The provider's executable name, for the RSS poll.
    exe: &'static str,
}

impl Side {
    fn timed(&self) -> Result<f64> {
        let t = Instant::now();
        let out = self.tf.run(self.args)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        must(out, &self.args.join(" "))?;
        self.reset()?;
        Ok(ms)
    }

    fn reset(&self) -> Result<()> {
        match self.reset {
            Some(args) => must(self.tf.run(args)?, "reset between samples"),
            None => Ok(()),
        }
    }

    /// Peak RSS (KiB) of the provider processes during one untimed run (the largest of them when Terraform
    /// starts several).
    fn peak_rss(&self) -> Result<Option<u64>> {
        let mut running = self.tf.spawn(self.args)?;
        let pid = running.pid();
        let mut peak: Option<u64> = None;
        running.wait_for(Duration::from_secs(180), |_| {
            for p in process::find_descendants_named(pid, self.exe) {
                if let Some(kb) = process::status_kb(p, "VmHWM") {
                    peak = Some(peak.map_or(kb, |q: u64| q.max(kb)));
                }
            }
            false
        });
        must(self.tf.wait(running)?, &self.args.join(" "))?;
        self.reset()?;
        Ok(peak)
    }
}

struct Measured {
    ours_ms: f64,
    peer_ms: f64,
    ours_rss: Option<f64>,
    peer_rss: Option<f64>,
}

/// Alternating samples after one warm-up of each side, then (untimed) RSS runs of each side.
fn measure(ours: &Side, peer: &Side, runs: usize) -> Result<Measured> {
    measure_with(ours, peer, runs, true)
}

fn measure_with(ours: &Side, peer: &Side, runs: usize, with_rss: bool) -> Result<Measured> {
    ours.timed()?;
    peer.timed()?;
    crate::bench::note_first_sample();
    let (mut o, mut p) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        o.push(ours.timed()?);
        p.push(peer.timed()?);
    }
    let (mut orss, mut prss) = (Vec::new(), Vec::new());
    for _ in 0..if with_rss { runs.min(5) } else { 0 } {
        orss.extend(ours.peak_rss()?.map(|kb| kb as f64));
        prss.extend(peer.peak_rss()?.map(|kb| kb as f64));
    }
    let med = |v: &mut Vec<f64>| (!v.is_empty()).then(|| median(v));
    Ok(Measured {
        ours_ms: median(&mut o),
        peer_ms: median(&mut p),
        ours_rss: med(&mut orss),
        peer_rss: med(&mut prss),
    })
}

fn wanted(only: &[String], id: &str) -> bool {
    let group = if id.starts_with("floor") {
        "floor"
    } else {
        "peer"
    };
    only.is_empty() || only.iter().any(|o| o == id || o == group)
}

fn mib(kib: Option<f64>) -> String {
    kib.map_or("—".into(), |k| format!("{:.1} MiB", k / 1024.0))
}

/// Runs the selected peer rows. Returns the rows for the main table and a markdown section (peak RSS of both
/// sides, or why there is no peer).
pub fn run(runs: usize, only: &[String]) -> Result<(Vec<RowResult>, String)> {
    let mut rows = Vec::new();
    if !IDS.iter().any(|id| wanted(only, id)) {
        return Ok((rows, String::new()));
    }
    let mut md = String::from("\n## Against the thinnest Go provider (issue 16)\n\n");
    let peer_bin = match peer_binary() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("bench: peer rows skipped: the Go peer provider is {why}");
            let _ = writeln!(
                md,
                "No rows: the Go peer provider (`acceptance-tests/bench/go-peer`) is {why}. The start and memory \
                 comparison below uses whatever Go provider binary is at hand instead."
            );
            return Ok((rows, md));
        }
    };
    let store_dir = tempfile::tempdir().map_err(|source| Error::Io {
        context: "temp dir for the fixture store".into(),
        source,
    })?;
    let store = store_dir.path().join("fixtures.json");
    let _ = writeln!(
        md,
        "Baseline: the Go peer (`acceptance-tests/bench/go-peer`: go-plugin {}, tfplugin6 stubs generated from \
         `proto/`, go-cty's msgpack codec; {:.1} MiB static binary), built offline by `dev bench` from Debian's \
         packages. Subject and baseline run in the same kind of Terraform 1.15.5 world with both providers \
         available; alternating samples. `homelab_test_fixture` keeps its objects in a JSON file (read on every \
         read and create, rewritten on every create); `peer_noop` stores nothing.\n",
        go_plugin_version(),
        std::fs::metadata(&peer_bin).map_or(0.0, |m| m.len() as f64 / 1048576.0),
    );
    if IDS
        .iter()
        .any(|id| id.starts_with("peer-") && wanted(only, id))
    {
        md.push_str(
            "| Row | Provider peak RSS, ours | Provider peak RSS, Go peer |\n|---|---:|---:|\n",
        );
    }

    type Case = (
        &'static str,
        &'static str,
        String,
        String,
        &'static [&'static str],
        Option<&'static [&'static str]>,
        bool,
    );
    let cases: Vec<Case> = vec![
        (
            "peer-plan-empty",
            "`plan -refresh=false`: empty `provider \"homelab\" {}` + `terraform_data` vs empty `provider \"peer\" {}` + \
             `terraform_data` (Go peer)",
            ours(TERRAFORM_DATA),
            peer(TERRAFORM_DATA),
            PLAN_NO_REFRESH,
            None,
            false,
        ),
        (
            "peer-plan-50",
            "refreshing no-op `plan` of 50 `homelab_test_fixture` vs 50 `peer_noop` (Go peer)",
            ours(&fixtures(N, &store)),
            peer(&noops(N)),
            PLAN,
            None,
            true,
        ),
        (
            "peer-apply-50",
            "`apply` creating 50 `homelab_test_fixture` vs 50 `peer_noop` (Go peer); destroyed between samples, \
             untimed",
            ours(&fixtures(N, &store)),
            peer(&noops(N)),
            APPLY,
            Some(DESTROY),
            false,
        ),
    ];
    for (id, what, ours_cfg, peer_cfg, args, reset, pre_apply) in cases {
        if !wanted(only, id) {
            continue;
        }
        eprintln!("bench: {id} ({runs} runs per side)...");
        let ours = Side {
            tf: world(&ours_cfg, &peer_bin)?,
            args,
            reset,
            exe: crate::paths::PROVIDER_EXE,
        };
        let peer = Side {
            tf: world(&peer_cfg, &peer_bin)?,
            args,
            reset,
            exe: PEER_EXE,
        };
        if pre_apply {
            must(ours.tf.run(APPLY)?, "apply before the plan samples")?;
            must(peer.tf.run(APPLY)?, "apply before the plan samples")?;
        }
        let m = measure(&ours, &peer, runs)?;
        if pre_apply {
            must(ours.tf.run(DESTROY)?, "destroy after the plan samples")?;
            must(peer.tf.run(DESTROY)?, "destroy after the plan samples")?;
        }
        eprintln!(
            "bench: {id}: ours {:.1} ms, Go peer {:.1} ms, ratio {:.2}x; peak RSS {} vs {}",
            m.ours_ms,
            m.peer_ms,
            m.ours_ms / m.peer_ms,
            mib(m.ours_rss),
            mib(m.peer_rss)
        );
        let _ = writeln!(md, "| `{id}` | {} | {} |", mib(m.ours_rss), mib(m.peer_rss));
        rows.push(RowResult {
            id: id.into(),
            what: what.into(),
            subject_ms: m.ours_ms,
            baseline_ms: m.peer_ms,
            target: Some(TARGET),
            provider_rss_kib: m.ours_rss.map(|k| k as u64),
            runs,
        });
    }
    if rows.iter().any(|r| r.id.starts_with("peer")) {
        md.push_str(WHERE_THE_TIME_GOES);
    }
    floor(
        runs,
        only,
        &peer_bin,
        &store_dir.path().join("floor.json"),
        &mut rows,
        &mut md,
    )?;
    Ok((rows, md))
}

/// The floor rows: what N resources of a plugin cost against N `terraform_data` when the plugin does (next to)
/// nothing: the Go peer's `peer_noop` (what any plugin pays: process starts, handshakes, one gRPC call per resource
/// and step inside Terraform) and our `homelab_test_fixture` (the same plus our codec, framework and the fixture's
/// small JSON store). The OPNsense rows' ratio minus the fixture row's is what our OPNsense code and the emulator
/// add per object.
fn floor(
    runs: usize,
    only: &[String],
    peer_bin: &Path,
    store: &Path,
    rows: &mut Vec<RowResult>,
    md: &mut String,
) -> Result<()> {
    type Case = (
        &'static str,
        &'static str,
        String,
        &'static [&'static str],
        Option<&'static [&'static str]>,
        bool,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "floor-peer-plan-50",
            "refreshing no-op `plan` of 50 `peer_noop` (Go peer) vs 50 `terraform_data`: any plugin's floor",
            peer(&noops(N)),
            PLAN,
            None,
            true,
            PEER_EXE,
        ),
        (
            "floor-peer-apply-50",
            "`apply` creating 50 `peer_noop` (Go peer) vs 50 `terraform_data`: any plugin's floor",
            peer(&noops(N)),
            APPLY,
            Some(DESTROY),
            false,
            PEER_EXE,
        ),
        (
            "floor-fixture-plan-50",
            "refreshing no-op `plan` of 50 `homelab_test_fixture` vs 50 `terraform_data`: our plugin's floor",
            ours(&fixtures(N, store)),
            PLAN,
            None,
            true,
            crate::paths::PROVIDER_EXE,
        ),
        (
            "floor-fixture-apply-50",
            "`apply` creating 50 `homelab_test_fixture` vs 50 `terraform_data`: our plugin's floor",
            ours(&fixtures(N, store)),
            APPLY,
            Some(DESTROY),
            false,
            crate::paths::PROVIDER_EXE,
        ),
    ];
    let data: String = (0..N)
        .map(|i| format!("resource \"terraform_data\" \"d{i}\" {{\n  input = \"{i}\"\n}}\n"))
        .collect();
    let mut any = false;
    for (id, what, cfg, args, reset, pre_apply, exe) in cases {
        if !wanted(only, id) {
            continue;
        }
        any = true;
        eprintln!("bench: {id} ({runs} runs per side)...");
        let subject = Side {
            tf: world(&cfg, peer_bin)?,
            args,
            reset,
            exe,
        };
        let baseline = Side {
            tf: world(&data, peer_bin)?,
            args,
            reset,
            exe: "terraform-provider-none",
        };
        if pre_apply {
            must(subject.tf.run(APPLY)?, "apply before the plan samples")?;
            must(baseline.tf.run(APPLY)?, "apply before the plan samples")?;
        }
        let m = measure_with(&subject, &baseline, runs, false)?;
        if pre_apply {
            must(subject.tf.run(DESTROY)?, "destroy after the plan samples")?;
        }
        eprintln!(
            "bench: {id}: subject {:.1} ms, terraform_data {:.1} ms, ratio {:.2}x",
            m.ours_ms,
            m.peer_ms,
            m.ours_ms / m.peer_ms
        );
        rows.push(RowResult {
            id: id.into(),
            what: what.into(),
            subject_ms: m.ours_ms,
            baseline_ms: m.peer_ms,
            target: None,
            provider_rss_kib: None,
            runs,
        });
    }
    if any {
        md.push_str(FLOOR_TEXT);
    }
    Ok(())
}

/// What the floor rows mean for issue 16's OPNsense targets (apply ≤ 1.5×, refreshing plan ≤ 1.4× of N
/// `terraform_data`).
const FLOOR_TEXT: &str = "\n### The floor under the OPNsense rows\n\n\
The `floor-*` rows put 50 resources of a plugin that does (next to) nothing against 50 `terraform_data` in the \
same run: `floor-peer-*` with the Go peer's `peer_noop` (what any plugin pays: Terraform starts the plugin \
several times per command, and makes one gRPC call per resource and step), `floor-fixture-*` with our \
`homelab_test_fixture` (the same plus our codec and framework). An OPNsense row's ratio can only be as low as \
the floor's; the OPNsense ratio minus the fixture floor is what the OPNsense resources, the REST client and the \
emulator add.\n\n\
Measured by hand on 2026-12-07 (not regenerated by the runner), one run each of `dev bench --runs 7 --only \
opnsense-plan-50 --only opnsense-apply-50 --only floor-fixture-plan-50 --only floor-fixture-apply-50` before and \
after the changes below, load ~3.9–4.4 both times: refreshing plan of 50 — OPNsense servers 1.94× → 1.62×, our \
fixture 1.77× → 1.74×; apply of 50 — OPNsense servers 2.36× → 1.64×, our fixture 1.76× → 1.75× (an earlier \
hand run at load ~1.2 had the Go peer at 2.04× and 1.95×). So the OPNsense rows now sit on our own floor: what \
the OPNsense code adds over the no-op fixture is within the noise of one run, and issue 16's targets for 50 \
OPNsense objects (apply ≤ 1.5×, refreshing plan ≤ 1.4× of 50 `terraform_data`) stay out of reach because they \
are below the floor of any plugin on this machine, ours or the thinnest Go provider, before a single API call. \
They are reachable only against the Go peer as baseline (the `peer-*` rows, where we are faster).\n\n\
### Where the OPNsense rows' time went\n\n\
Profiled by hand on 2026-12-07 with 50 and 200 `homelab_opnsense_haproxy_server`s against the emulator and the \
same numbers of `homelab_test_fixture`s: `perf record` of the provider processes and of the emulator, \
`strace -T` of the emulator's fsyncs, the provider's per-RPC durations from `TF_LOG=DEBUG`, and sequential \
writes timed against the emulator alone. API calls were already minimal (plan: 2 calls for any N; apply: N + 4).\n\n\
- **The provider's own share is small.** CPU of the provider processes (perf samples): refreshing plan of 200 \
servers ~72–84 ms against the fixture's ~71 ms; apply of 200 ~135–195 ms against ~153–166 ms, while Terraform \
itself spends ~430 ms and ~1.2–1.3 s of CPU in the same commands. One cut: each create held its snapshot of \
the cached model across its POST, so recording the write in the cache copied the whole model whenever one of \
the other parallel writers held a snapshot too (O(N) per create, O(N²) per apply); the generic object now \
releases it before writing and before `plan_check` (`src/resources/opnsense_object.rs`), which halved the \
copy/allocation share of the provider's samples at 200 creates (one run each: ~1.7% → ~0.8% of the command's \
samples, ~10 ms of CPU). The model lookups by UUID were linear scans that parsed every key (N² UUID parses for N reads or writes; ~0.2% \
of the samples of an apply of 200, ~3 ms); a lookup now goes straight to the key OPNsense writes (lower-case, \
hyphenated): one map lookup instead of a parse of every key. No lock of ours is held across an HTTP call on these paths, and the reconfigure coalescer \
costs nothing here: a server create takes its write permit (a read lock that no deploy holds while HAProxy is \
disabled) and returns at once without configtest or reconfigure. Connection set-up is once per process (one \
reqwest client per provider instance, kept alive; the firmware probe is the configure's only call).\n\
- **Most of what the rows counted as ours was the emulator as the runner built it.** The bench runner hosts \
the emulator in-process and was a debug build. A debug emulator answered the 79 KB whole-model read of 50 \
servers in ~9.6 ms (release ~1.6 ms); the first wave of a refreshing plan's reads waits for that read \
(`ReadResource` ~8 ms each in the provider's log, 0 ms after it). Its writes, serialised under its state lock \
as OPNsense serialises config.xml with `flock`, took ~1.3 ms each in a row (release ~0.6 ms). In one \
interleaved hand run (9 samples, load ~3.2), a refreshing plan of 50: `terraform_data` 87 ms, fixture 136 ms, \
servers against a release emulator 142 ms, against the debug one 176 ms. `dev bench` now builds the runner in \
release.\n\
- **The emulator flushed the disk on every write.** Each save fsynced its temp file inside the state lock \
(strace: 50 fsyncs of ~0.9 ms median, up to 8 ms, in one 50-server apply). The real box does not: \
OPNsense's `Config::save` rewrites config.xml under `flock` and ends with PHP's `fflush`, and a killed process \
(how tests and the lab crash or power off a box) loses nothing the kernel holds, so no test can observe the \
fsync. The save keeps its temp file + rename (a write stays all-or-nothing) without it \
(`opnsense-emulator/src/store.rs`): 50 sequential creates 0.62 → 0.40 ms each.\n\
- **What is left.** Plan: the one whole-model read (~2 ms against the release emulator) the first reads wait \
for, and decoding the objects. Apply: the emulator answering the creates one at a time; each write clones its \
whole state and serialises all of it, so a write costs O(N) (~0.4 ms at 50 objects, ~0.7 ms at 200, mostly \
allocation of the cloned records and JSON output). That is the test world and is not ours to cut further: \
the clone is what keeps a failed save from changing the state, and a real OPNsense write rewrites its whole \
config.xml too.\n";

/// Where the difference goes. Measured by hand on 2026-12-06 (not regenerated by the runner): update it when the
/// peer, go-plugin or the provider's start-up changes.
const WHERE_THE_TIME_GOES: &str = "\n### Where the time goes (peer rows)\n\n\
Measured by hand on 2026-12-06 (not regenerated by the runner). Terraform starts each provider once for the \
empty plan and several times for the plans and applies of 50 (schema, validate, plan, apply), so the start-up \
difference of the table below counts that often. The Go peer needs ~38 ms from spawn to its handshake line \
with AutoMTLS and ~5 ms without `PLUGIN_CLIENT_CERT` (median of 9 starts each): go-plugin makes a fresh ECDSA \
P-521 server key and certificate at every start, which Go 1.19 takes ~33 ms for on this machine (ours makes a \
P-256 one in well under a millisecond). That accounts for the empty plan's whole difference (~32 ms in the run \
above). With 50 resources the rest of the gap is per-RPC work, where the two are close: the Go peer's \
go-cty codec and grpc-go against our codec and tonic, and `homelab_test_fixture` loading (create: and rewriting) \
its JSON store under one lock per read or create, which `peer_noop` does not do. The apply row is the closest \
(0.81×–0.94× across two runs under different load): 50 serialised store rewrites are on our side only; this \
was not profiled further.\n";

/// go-plugin's Debian package version, for the text (the peer is built against it).
fn go_plugin_version() -> String {
    std::process::Command::new("dpkg-query")
        .args([
            "-W",
            "-f=${Version}",
            "golang-github-hashicorp-go-plugin-dev",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_have_the_same_shape() {
        let store = Path::new("/tmp/store.json");
        let (a, b) = (fixtures(N, store), noops(N));
        assert_eq!(a.matches("resource \"").count(), N);
        assert_eq!(b.matches("resource \"").count(), N);
        assert!(peer("").contains(PEER_SOURCE));
        assert!(ours("").contains("provider \"homelab\" {}"));
    }
}
