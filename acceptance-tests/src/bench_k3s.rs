//! Cluster benchmarks (issues 7 and 8): whole-topology applies in the host lab, measured against what the
//! topology cannot avoid, in the same run and the same lab.
//!
//! Why not a ratio against `terraform_data` as the other rows: an apply of three k3s servers and three agents is
//! dominated by k3s itself (the first server's start, each join's etcd learner promotion), not by Terraform. The
//! honest yardstick is the **critical path**: the sequential waits no tool can avoid — the first server ready,
//! the joins one at a time (etcd admits one learner at a time), the agents in parallel. We measure it directly
//! by doing exactly those steps by hand over `ssh` in a fresh lab with the same k3s stand-in and install script:
//! one ssh session per node that uploads the install script, runs it (the token on stdin, never argv), and
//! polls every 100 ms until the node is Ready (servers) or its load-balancer file exists (agents, the provider's
//! own readiness signal). Its wall time is the baseline; the provider's `terraform apply` is the subject.
//!
//! The complete example (issue 8) is compared against the same critical path and against the seed's own way:
//! its Ansible roles (our playbook in `acceptance-tests/bench/ansible/`) run with ansible-core on the same lab.
//! The seed configured OPNsense by hand in the web UI once k8s-control-1 ran, so for both of those baselines the
//! HAProxy objects are created untimed right after the first server is up (with it in the pool), and the agents
//! register through the VIP as in the seed; the example's apply creates them itself (timed), a handicap the
//! subject carries.
//!
//! No-op refreshed plans are compared with what a refresh cannot avoid either: Terraform's own plan of as many
//! trivial resources (`terraform_data`) plus one parallel wave of SSH round trips, one per host (`ssh host true`,
//! OpenSSH). Both parts are measured in the same run and their medians added.
//!
//! Every sample gets a fresh lab (brought up and torn down untimed), so no sample inherits a warm cluster, and
//! subject and baselines alternate so that machine load hits them alike. These rows are heavy (a lab and a
//! cluster per sample, ~15 s each): they run only with `bench --heavy` or when selected by id
//! (`--only k3s`, `--only example`, ...); their section of `docs/benchmarks.md` is otherwise carried over.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use homelab_lab::{Lab, LabSpec};

use crate::bench::{loadavg, median};
use crate::paths;
use crate::process::{self, Output};
use crate::terraform::{
    hcl_string, required_providers, Error, Result, Terraform, TerraformVersion,
};

/// Ids this module answers to (`--only`); `k3s` and `example` select their group.
pub const IDS: &[&str] = &[
    "k3s",
    "k3s-apply-3x3",
    "k3s-plan-6",
    "k3s-scale",
    "example",
    "example-apply",
    "example-plan",
];

/// Marks the section in `docs/benchmarks.md` (so a run without these rows can carry it over).
pub const SECTION_BEGIN: &str = "<!-- bench-k3s:begin -->";
pub const SECTION_END: &str = "<!-- bench-k3s:end -->";

const VERSION: &str = "v1.31.5+k3s1";
const TOKEN: &str = "bench-cluster-secret";
const DEADLINE: Duration = Duration::from_secs(600);

fn check(msg: impl Into<String>) -> Error {
    Error::Check(msg.into())
}

fn lab_err(what: &str) -> impl FnOnce(homelab_lab::Error) -> Error + '_ {
    move |e| check(format!("{what}: {e}"))
}

/// Whether the group/row `id` runs: selected by id or group, or everything under `--heavy` with no `--only`.
pub fn wanted(only: &[String], heavy: bool, id: &str) -> bool {
    if only.is_empty() {
        return heavy;
    }
    let group = id.split('-').next().unwrap_or(id);
    only.iter().any(|o| o == id || o == group)
}

/// Anything of this module selected?
pub fn any_wanted(only: &[String], heavy: bool) -> bool {
    IDS.iter().any(|id| wanted(only, heavy, id))
}

// ----- the lab -------------------------------------------------------------------------------------------------

struct LabGuard(Option<Lab>);

impl LabGuard {
    fn lab(&self) -> &Lab {
        self.0.as_ref().expect("lab is up until drop")
    }
}

impl Drop for LabGuard {
    fn drop(&mut self) {
        if let Some(lab) = self.0.take() {
            if let Err(e) = lab.down() {
                eprintln!("bench: lab down failed: {e}");
            }
        }
    }
}

/// What every sample shares: where labs live, the artifacts install.sh copies from, the lab's name.
struct Bench {
    root: tempfile::TempDir,
    name: String,
    artifacts: PathBuf,
    install_sh: PathBuf,
}

impl Bench {
    fn new() -> Result<Bench> {
        homelab_lab::locate_binary().map_err(lab_err(
            "the homelab-lab binary (cargo build -p homelab-lab; `acceptance-tests/dev bench` builds it)",
        ))?;
        let k3s = paths::bin("k3s");
        if !k3s.is_file() {
            return Err(check(format!(
                "the k3s stand-in {} is missing (cargo build -p k3s-sim --bin k3s)",
                k3s.display()
            )));
        }
        // install.sh's offline "download" directory. Lab hosts share /opt with the machine (their /tmp, /var,
        // /home are private), so it lives there.
        let artifacts = PathBuf::from("/opt/homelab-test-artifacts/bench");
        let vdir = artifacts.join(VERSION);
        let io = |what: &str| {
            let what = what.to_string();
            move |source| Error::Io {
                context: what,
                source,
            }
        };
        std::fs::create_dir_all(&vdir).map_err(io("creating the artifact dir"))?;
        std::fs::create_dir_all(artifacts.join("channels"))
            .map_err(io("creating the artifact dir"))?;
        std::fs::copy(&k3s, vdir.join("k3s.tmp")).map_err(io("copying the k3s stand-in"))?;
        std::fs::rename(vdir.join("k3s.tmp"), vdir.join("k3s"))
            .map_err(io("renaming the k3s stand-in"))?;
        std::fs::write(artifacts.join("channels/stable"), format!("{VERSION}\n"))
            .map_err(io("writing channels/stable"))?;
        let root = tempfile::Builder::new()
            .prefix("homelab-bench-labs-")
            .tempdir()
            .map_err(io("temp dir for the bench labs"))?;
        Ok(Bench {
            root,
            name: format!("bench{}", std::process::id() % 100_000),
            artifacts,
            install_sh: paths::workspace_root().join("acceptance-tests/k3s-sim/install.sh"),
        })
    }

    fn lab(&self, opnsense: bool) -> Result<LabGuard> {
        self.lab_sized(opnsense, 3, 3)
    }

    fn lab_sized(&self, opnsense: bool, servers: u32, agents: u32) -> Result<LabGuard> {
        let mut spec = LabSpec::new(&self.name);
        spec.servers = servers;
        spec.agents = agents;
        spec.opnsense = opnsense;
        spec.root = Some(self.root.path().to_path_buf());
        Ok(LabGuard(Some(Lab::up(&spec).map_err(lab_err("lab up"))?)))
    }
}

/// (name, address) of hosts.
type Hosts = Vec<(String, String)>;

/// (name, address) of the lab's servers and agents, in order.
fn nodes(lab: &Lab) -> (Hosts, Hosts) {
    let mut servers = Vec::new();
    let mut agents = Vec::new();
    for h in lab.hosts() {
        let entry = (h.name.clone(), h.ip.to_string());
        if h.name.starts_with("k8s-control") {
            servers.push(entry);
        } else if h.name.starts_with("k8s-worker") {
            agents.push(entry);
        }
    }
    (servers, agents)
}

fn ws_ns(lab: &Lab) -> Result<std::os::fd::OwnedFd> {
    homelab_lab::ns::open_ns(&homelab_lab::ns::named_netns(&lab.state().ws_netns))
        .map_err(lab_err("opening the workstation netns"))
}

fn must(out: Output, what: &str) -> Result<Output> {
    if out.success() {
        Ok(out)
    } else {
        Err(Error::Command {
            message: format!("benchmark step failed: {what}"),
            output: Box::new(out),
        })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs `terraform ARGS` in the lab's workstation namespace; returns (milliseconds, provider peak RSS in KiB).
fn tf_in_lab(
    tf: &Terraform,
    lab: &Lab,
    args: &[&str],
    watch_rss: bool,
) -> Result<(f64, Option<u64>)> {
    tf_in_lab_out(tf, lab, args, watch_rss).map(|(t, rss, _)| (t, rss))
}

/// [`tf_in_lab`], also returning the resource spans of an `apply -json` (empty for other commands).
fn tf_in_lab_out(
    tf: &Terraform,
    lab: &Lab,
    args: &[&str],
    watch_rss: bool,
) -> Result<(f64, Option<u64>, Vec<Span>)> {
    let mut cmd = tf.command(args);
    homelab_lab::ns::in_netns(&mut cmd, ws_ns(lab)?);
    let spawned = unix_now();
    let started = Instant::now();
    let mut running = process::spawn(cmd, None)?;
    let mut peak: Option<u64> = None;
    if watch_rss {
        let pid = running.pid();
        let mut last = Instant::now() - Duration::from_secs(1);
        // Scans /proc at most every 200 ms (the scan costs CPU); VmHWM is a high-water mark, so a sparse poll
        // only misses growth in a provider's last 200 ms.
        running.wait_for(DEADLINE, |_| {
            if last.elapsed() >= Duration::from_millis(200) {
                last = Instant::now();
                for p in process::find_descendants_named(pid, paths::PROVIDER_EXE) {
                    if let Some(kb) = process::status_kb(p, "VmHWM") {
                        peak = Some(peak.map_or(kb, |x: u64| x.max(kb)));
                    }
                }
            }
            false
        });
    }
    let out = running.wait(DEADLINE)?;
    let elapsed = ms(started.elapsed());
    let out = must(out, &format!("terraform {}", args.join(" ")))?;
    let spans = if args.contains(&"-json") {
        timeline(&out.stdout, spawned)
    } else {
        Vec::new()
    };
    Ok((elapsed, peak, spans))
}

const APPLY: &[&str] = &["apply", "-auto-approve", "-input=false", "-no-color"];
/// The timed applies print Terraform's machine-readable UI, whose timestamps give each resource's span.
const APPLY_JSON: &[&str] = &["apply", "-auto-approve", "-input=false", "-json"];
const PLAN: &[&str] = &["plan", "-input=false", "-no-color", "-detailed-exitcode"];

// ----- by hand: the critical path ------------------------------------------------------------------------------

/// The wall times of the critical path's steps, measured by doing them by hand.
#[derive(Clone, Debug, Default)]
pub struct CriticalPath {
    pub first_server_ms: f64,
    pub joins_ms: Vec<f64>,
    /// The three agents installed in parallel: until the last is ready.
    pub agents_ms: f64,
}

impl CriticalPath {
    pub fn total_ms(&self) -> f64 {
        self.first_server_ms + self.joins_ms.iter().sum::<f64>() + self.agents_ms
    }
}

/// The script one ssh session runs on a node: install script from the heredoc, the install, then the readiness
/// poll. It travels on stdin (`sh -s`), so the token is never on a command line.
fn node_script(install_sh: &str, node: &str, env: &str, ready: &str, after: &str) -> String {
    format!(
        "set -e\nK3S_TOKEN=$(cat <<'HOMELAB_TOKEN_EOF'\n{{TOKEN}}\nHOMELAB_TOKEN_EOF\n)\nexport K3S_TOKEN\n\
         NODE={node}\n\
         cat > /usr/local/bin/k3s-install.sh <<'HOMELAB_INSTALL_EOF'\n{install_sh}\nHOMELAB_INSTALL_EOF\n\
         chmod 755 /usr/local/bin/k3s-install.sh\n\
         env K3S_NODE_NAME=$NODE {env} sh /usr/local/bin/k3s-install.sh >/tmp/k3s-install.log 2>&1 || {{ cat /tmp/k3s-install.log >&2; exit 1; }}\n\
         end=$(($(date +%s) + 180))\n\
         until {ready}; do [ \"$(date +%s)\" -lt \"$end\" ] || {{ echo \"$NODE not ready after 180 s\" >&2; exit 1; }}; sleep 0.1; done\n{after}\n"
    )
}

const SERVER_READY: &str = "[ \"$(k3s kubectl get node \"$NODE\" -o 'jsonpath={.status.conditions[?(@.type==\"Ready\")].status}' 2>/dev/null)\" = True ]";
const AGENT_READY: &str = "test -s /var/lib/rancher/k3s/agent/etc/k3s-agent-load-balancer.json";

fn ssh_script(lab: &Lab, host: &str, script: String) -> Result<process::Running> {
    let mut cmd = lab
        .ssh_command(host, "root")
        .map_err(lab_err("ssh command"))?;
    cmd.args(["sh", "-s"]);
    Ok(process::spawn(cmd, Some(script.into_bytes()))?)
}

/// Installs the cluster by hand: the first server, the joins one after the other (through the first server's
/// address), then the agents in parallel through `agent_url`.
/// `between` runs after the first server is ready, untimed (the example's baselines create the HAProxy pool there).
fn by_hand(
    b: &Bench,
    lab: &Lab,
    agent_url: Option<&str>,
    tls_san: &str,
    between: &mut dyn FnMut() -> Result<()>,
) -> Result<CriticalPath> {
    let install_sh = std::fs::read_to_string(&b.install_sh).map_err(|source| Error::Io {
        context: format!("reading {}", b.install_sh.display()),
        source,
    })?;
    let (servers, agents) = nodes(lab);
    let (first, first_ip) = &servers[0];
    let common = format!(
        "INSTALL_K3S_SIM_ARTIFACTS={} INSTALL_K3S_VERSION={VERSION}",
        b.artifacts.display()
    );
    let server_url = format!("https://{first_ip}:6443");
    let mut cp = CriticalPath::default();

    let t = Instant::now();
    let script = node_script(
        &install_sh,
        first,
        &format!(
            "{} INSTALL_K3S_EXEC='server --cluster-init --disable servicelb --tls-san {tls_san}'",
            common
        ),
        SERVER_READY,
        "cat /var/lib/rancher/k3s/server/token",
    )
    .replace("{TOKEN}", TOKEN);
    let out = must(ssh_script(lab, first, script)?.wait(DEADLINE)?, first)?;
    cp.first_server_ms = ms(t.elapsed());
    let token = out.stdout.trim().to_string();
    if !token.starts_with("K10") {
        return Err(check("the first server printed no secure token"));
    }
    between()?;

    for (name, _) in &servers[1..] {
        let t = Instant::now();
        let script = node_script(
            &install_sh,
            name,
            &format!(
                "{} K3S_URL={server_url} INSTALL_K3S_EXEC='server --disable servicelb --tls-san {tls_san}'",
                common
            ),
            SERVER_READY,
            "",
        )
        .replace("{TOKEN}", &token);
        must(ssh_script(lab, name, script)?.wait(DEADLINE)?, name)?;
        cp.joins_ms.push(ms(t.elapsed()));
    }

    let url = agent_url.unwrap_or(&server_url);
    let t = Instant::now();
    let running = agents
        .iter()
        .map(|(name, _)| {
            let script = node_script(
                &install_sh,
                name,
                &format!("{} K3S_URL={url}", common),
                AGENT_READY,
                "",
            )
            .replace("{TOKEN}", &token);
            ssh_script(lab, name, script)
        })
        .collect::<Result<Vec<_>>>()?;
    for (r, (name, _)) in running.into_iter().zip(&agents) {
        must(r.wait(DEADLINE)?, name)?;
    }
    cp.agents_ms = ms(t.elapsed());
    Ok(cp)
}

/// One parallel wave of `ssh host true` to every k3s host: the least a refresh over SSH costs.
fn ssh_wave(lab: &Lab) -> Result<f64> {
    let (servers, agents) = nodes(lab);
    let t = Instant::now();
    let running = servers
        .iter()
        .chain(&agents)
        .map(|(name, _)| {
            let mut cmd = lab
                .ssh_command(name, "root")
                .map_err(lab_err("ssh command"))?;
            cmd.arg("true");
            Ok(process::spawn(cmd, None)?)
        })
        .collect::<Result<Vec<_>>>()?;
    for r in running {
        must(r.wait(Duration::from_secs(30))?, "ssh true")?;
    }
    Ok(ms(t.elapsed()))
}

// ----- Terraform configurations ----------------------------------------------------------------------------------

fn ssh_provider_block(lab: &Lab) -> String {
    format!(
        "  ssh {{\n    user        = \"root\"\n    private_key = file({})\n    known_hosts = file({})\n  }}\n",
        hcl_string(&lab.ssh_key().display().to_string()),
        hcl_string(&lab.known_hosts().display().to_string()),
    )
}

/// Issue 7's topology: one init server, two joins through its address, three agents after the joins.
fn k3s_config(b: &Bench, lab: &Lab) -> String {
    let (servers, agents) = nodes(lab);
    let map = |v: &[(String, String)]| {
        v.iter()
            .map(|(n, ip)| format!("    {} = {}\n", hcl_string(n), hcl_string(ip)))
            .collect::<String>()
    };
    format!(
        "{req}
provider \"homelab\" {{
{ssh}}}

variable \"token\" {{
  type      = string
  sensitive = true
}}

locals {{
  install_script = file({install})
  install_env    = {{ INSTALL_K3S_SIM_ARTIFACTS = {art} }}
  joiners = {{
{joiners}  }}
  agents = {{
{agents}  }}
}}

resource \"homelab_k3s_server\" \"first\" {{
  role           = \"init\"
  token          = var.token
  version        = \"{VERSION}\"
  node_name      = {first}
  tls_san        = [{first_ip}]
  disable        = [\"servicelb\"]
  install_script = local.install_script
  install_env    = local.install_env
  host {{
    address = {first_ip}
  }}
}}

resource \"homelab_k3s_server\" \"join\" {{
  for_each       = local.joiners
  role           = \"join\"
  server_url     = \"https://${{homelab_k3s_server.first.id}}:6443\"
  token          = homelab_k3s_server.first.join_token
  version        = \"{VERSION}\"
  node_name      = each.key
  tls_san        = [{first_ip}]
  disable        = [\"servicelb\"]
  install_script = local.install_script
  install_env    = local.install_env
  host {{
    address = each.value
  }}
}}

resource \"homelab_k3s_agent\" \"worker\" {{
  for_each       = local.agents
  server_url     = \"https://${{homelab_k3s_server.first.id}}:6443\"
  token          = homelab_k3s_server.first.join_token
  version        = \"{VERSION}\"
  node_name      = each.key
  install_script = local.install_script
  install_env    = local.install_env
  host {{
    address = each.value
  }}
  depends_on = [homelab_k3s_server.join]
}}
",
        req = required_providers(),
        ssh = ssh_provider_block(lab),
        install = hcl_string(&b.install_sh.display().to_string()),
        art = hcl_string(&b.artifacts.display().to_string()),
        joiners = map(&servers[1..]),
        agents = map(&agents),
        first = hcl_string(&servers[0].0),
        first_ip = hcl_string(&servers[0].1),
    )
}

/// The lab's emulator: (url, CA file, key, secret).
fn emulator(lab: &Lab) -> Result<(String, PathBuf, String, String)> {
    let emu = lab
        .emulator()
        .ok_or_else(|| check("the lab runs no OPNsense emulator"))?;
    let creds = std::fs::read_to_string(&emu.credentials_file).map_err(|source| Error::Io {
        context: "reading the emulator's credentials".into(),
        source,
    })?;
    let field = |k: &str| {
        creds
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_string)
            .ok_or_else(|| check(format!("no {k} in the emulator's credentials file")))
    };
    Ok((
        emu.url.clone(),
        emu.ca_file.clone(),
        field("key=")?,
        field("secret=")?,
    ))
}

/// The HAProxy objects the seed clicked together in OPNsense's UI, for the baselines (created untimed before
/// them): VIP, TCP health check, the first server, the pool, the frontend on VIP:6443, haproxy enabled.
fn opnsense_prep_config(lab: &Lab, vip: &str) -> Result<String> {
    let (url, ca, _, _) = emulator(lab)?;
    let (servers, _) = nodes(lab);
    let mut hcl = format!(
        "{req}
variable \"api_key\" {{
  type = string
}}
variable \"api_secret\" {{
  type      = string
  sensitive = true
}}
provider \"homelab\" {{
  opnsense {{
    url         = {url}
    api_key     = var.api_key
    api_secret  = var.api_secret
    ca_cert_pem = file({ca})
  }}
}}
resource \"homelab_opnsense_vip\" \"api\" {{
  interface = \"lan\"
  mode      = \"ipalias\"
  address   = \"{vip}/32\"
}}
resource \"homelab_opnsense_haproxy_healthcheck\" \"api\" {{
  name     = \"k3s-controlplane\"
  type     = \"tcp\"
  interval = \"10s\"
}}
",
        req = required_providers(),
        url = hcl_string(&url),
        ca = hcl_string(&ca.display().to_string()),
    );
    // Only the first server in the pool, as in the seed's first HAProxy export: agents need one API server behind
    // the VIP to register (they learn the others themselves). Entries for servers that do not run yet would be
    // health-checked DOWN before they join and come back only after `rise` checks at 10 s, stalling the agents.
    for (i, (name, ip)) in servers.iter().take(1).enumerate() {
        let _ = write!(
            hcl,
            "resource \"homelab_opnsense_haproxy_server\" \"s{i}\" {{\n  name = {}\n  address = {}\n  port = 6443\n  check_interval = \"10s\"\n}}\n",
            hcl_string(name),
            hcl_string(ip)
        );
    }
    let ids: Vec<String> = (0..1)
        .map(|i| format!("homelab_opnsense_haproxy_server.s{i}.id"))
        .collect();
    let _ = write!(
        hcl,
        "resource \"homelab_opnsense_haproxy_backend\" \"api\" {{
  name         = \"k3s-controlplane\"
  mode         = \"tcp\"
  algorithm    = \"roundrobin\"
  servers      = [{}]
  health_check = homelab_opnsense_haproxy_healthcheck.api.id
}}
resource \"homelab_opnsense_haproxy_frontend\" \"api\" {{
  name            = \"k3s-controlplane\"
  bind            = [\"{vip}:6443\"]
  mode            = \"tcp\"
  default_backend = homelab_opnsense_haproxy_backend.api.id
  timeout_client  = \"10m\"
  depends_on      = [homelab_opnsense_vip.api]
}}
resource \"homelab_opnsense_haproxy_settings\" \"this\" {{
  enabled    = true
  depends_on = [homelab_opnsense_vip.api]
}}
",
        ids.join(", ")
    );
    Ok(hcl)
}

fn copy_tf(from: &Path, to: &Path) -> Result<()> {
    let io = |source| Error::Io {
        context: format!("copying {} to {}", from.display(), to.display()),
        source,
    };
    std::fs::create_dir_all(to).map_err(io)?;
    for e in std::fs::read_dir(from).map_err(io)? {
        let p = e.map_err(io)?.path();
        if p.extension().is_some_and(|x| x == "tf") {
            std::fs::copy(&p, to.join(p.file_name().expect("file name"))).map_err(io)?;
        }
    }
    Ok(())
}

/// A Terraform world holding `examples/complete` (and `../modules/k3s-ha`) with the lab's inputs, as
/// `acceptance-tests/dev example` prepares it; `terraform get` done.
fn example_world(b: &Bench, lab: &Lab) -> Result<Terraform> {
    let (url, ca, key, secret) = emulator(lab)?;
    let vip = lab
        .state()
        .vip
        .ok_or_else(|| check("the lab has no VIP"))?
        .to_string();
    let prefix = vip.rsplit_once('.').map_or("", |p| p.0).to_string();
    let root = paths::workspace_root();
    let mut tf = Terraform::new(TerraformVersion::V1_15)?;
    tf.set_env("TF_VAR_opnsense_api_key", key)
        .set_env("TF_VAR_opnsense_api_secret", secret)
        .set_env("TF_VAR_k3s_token", TOKEN)
        .set_timeout(DEADLINE);
    let base = tf
        .workdir()
        .parent()
        .ok_or_else(|| check("work dir has no parent"))?
        .to_path_buf();
    copy_tf(
        &root.join("examples/modules/k3s-ha"),
        &base.join("modules/k3s-ha"),
    )?;
    copy_tf(&root.join("examples/complete"), tf.workdir())?;
    tf.write_file(
        "lab.auto.tfvars",
        &format!(
            "opnsense_url = {}\nopnsense_ca_cert_file = {}\nssh_private_key_file = {}\nssh_known_hosts_file = {}\n\
             address_prefix = {}\nk3s_version = \"{VERSION}\"\ninstall_script_file = {}\n\
             install_env = {{ INSTALL_K3S_SIM_ARTIFACTS = {} }}\n",
            hcl_string(&url),
            hcl_string(&ca.display().to_string()),
            hcl_string(&lab.ssh_key().display().to_string()),
            hcl_string(&lab.known_hosts().display().to_string()),
            hcl_string(&prefix),
            hcl_string(&b.install_sh.display().to_string()),
            hcl_string(&b.artifacts.display().to_string()),
        ),
    )?;
    tf_in_lab(&tf, lab, &["get", "-no-color"], false)?;
    Ok(tf)
}

fn lab_vip(lab: &Lab) -> Result<String> {
    Ok(lab
        .state()
        .vip
        .ok_or_else(|| check("the lab has no VIP"))?
        .to_string())
}

/// Creates the seed's hand-made OPNsense objects, untimed, once the first server is up (as the seed did: its
/// k8s-control-1 ran before HAProxy was configured). A pool entry created before its server runs is health-checked
/// DOWN and needs `rise` checks at 10 s to come back, which stalled the agents registering through the VIP.
fn prepare_opnsense(lab: &Lab) -> Result<()> {
    let vip = lab_vip(lab)?;
    let (_, _, key, secret) = emulator(lab)?;
    let mut tf = Terraform::new(TerraformVersion::V1_15)?;
    tf.set_env("TF_VAR_api_key", key)
        .set_env("TF_VAR_api_secret", secret);
    tf.write_config(&opnsense_prep_config(lab, &vip)?)?;
    tf_in_lab(&tf, lab, APPLY, false)?;
    Ok(())
}

// ----- Ansible ----------------------------------------------------------------------------------------------------

/// The ansible-core venv (`HOMELAB_ANSIBLE_VENV`, default `/opt/ansible-venv`; `dev bench` installs it).
pub fn ansible_playbook() -> Option<PathBuf> {
    let venv = std::env::var_os("HOMELAB_ANSIBLE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/ansible-venv"));
    let p = venv.join("bin/ansible-playbook");
    p.is_file().then_some(p)
}

/// Runs our playbook of the seed's roles against the lab (from the workstation namespace); milliseconds.
///
/// Two invocations: the first server, then (after `between`, untimed: the HAProxy pool) everything else. The seed
/// also ran its roles per group and configured HAProxy in between; Ansible's own start-up is paid twice.
fn ansible(
    b: &Bench,
    lab: &Lab,
    playbook: &Path,
    vip: &str,
    dir: &Path,
    between: &mut dyn FnMut() -> Result<()>,
) -> Result<f64> {
    let io = |what: &'static str| {
        move |source| Error::Io {
            context: what.to_string(),
            source,
        }
    };
    let cp = dir.join("cp");
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&cp).map_err(io("creating the ControlPath dir"))?;
    std::fs::create_dir_all(&tmp).map_err(io("creating ansible's local temp dir"))?;
    let vars = serde_json::json!({
        "k3s_version": VERSION,
        "k3s_install_script_src": b.install_sh,
        "k3s_sim_artifacts": b.artifacts,
        "k3s_control_plane_vip": vip,
        "ansible_ssh_private_key_file": lab.ssh_key(),
        "ansible_ssh_common_args": format!(
            "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
            lab.known_hosts().display()
        ),
    });
    let vars_file = dir.join("vars.json");
    std::fs::write(&vars_file, vars.to_string()).map_err(io("writing vars.json"))?;
    let pb_dir = paths::workspace_root().join("acceptance-tests/bench/ansible");
    let run = |limit: &str| -> Result<f64> {
        let mut cmd = lab.ws_command(playbook).map_err(lab_err("ws command"))?;
        cmd.current_dir(&pb_dir)
            .args(["-i", "inventory.ini", "site.yml", "--limit", limit, "-e"])
            .arg(format!("@{}", vars_file.display()))
            .env("K3S_BENCH_TOKEN", TOKEN)
            .env("ANSIBLE_PIPELINING", "True")
            .env("ANSIBLE_HOST_KEY_CHECKING", "True")
            .env("ANSIBLE_SSH_CONTROL_PATH_DIR", &cp)
            .env("ANSIBLE_LOCAL_TEMP", &tmp)
            .env("ANSIBLE_NOCOLOR", "1")
            .env("ANSIBLE_RETRY_FILES_ENABLED", "False")
            .env_remove("ANSIBLE_CONFIG");
        let t = Instant::now();
        let out = process::run(cmd, None, DEADLINE)?;
        let elapsed = ms(t.elapsed());
        must(out, &format!("ansible-playbook site.yml --limit {limit}"))?;
        Ok(elapsed)
    };
    let result = run("initial_k3s_server").and_then(|first| {
        between()?;
        Ok(first + run("all:!initial_k3s_server")?)
    });
    // Ansible leaves its ControlPersist masters running; ask each to exit (no kill by name).
    if let Ok(entries) = std::fs::read_dir(&cp) {
        for e in entries.flatten() {
            if let Ok(mut c) = lab.ws_command("ssh") {
                c.arg("-o")
                    .arg(format!("ControlPath={}", e.path().display()))
                    .args(["-O", "exit", "bench-master"]);
                let _ = process::run(c, None, Duration::from_secs(10));
            }
        }
    }
    result
}

// ----- where the time goes: the apply's timeline from `terraform apply -json` ------------------------------------

/// Seconds since the Unix epoch of an RFC 3339 timestamp as Terraform's `-json` UI prints it
/// (`2026-11-24T16:41:00.123456+00:00` or `...Z`).
fn rfc3339_secs(ts: &str) -> Option<f64> {
    let (date, rest) = ts.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let (time, offset) = match rest.find(['Z', '+', '-']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "Z"),
    };
    let mut t = time.split(':');
    let (h, mi, s) = (
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
        t.next()?.parse::<f64>().ok()?,
    );
    let off = if offset == "Z" {
        0.0
    } else {
        let sign = if offset.starts_with('-') { -1.0 } else { 1.0 };
        let mut o = offset[1..].split(':');
        let oh = o.next()?.parse::<f64>().ok()?;
        let om = o.next().unwrap_or("0").parse::<f64>().ok()?;
        sign * (oh * 3600.0 + om * 60.0)
    };
    Some(days as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + s - off)
}

/// One resource's apply, in ms since the command was started.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub addr: String,
    pub start_ms: f64,
    pub end_ms: f64,
}

/// The resource spans of an `apply -json` output, relative to `spawned` (seconds since the epoch).
fn timeline(stdout: &str, spawned: f64) -> Vec<Span> {
    let mut starts = std::collections::BTreeMap::new();
    let mut spans = Vec::new();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let kind = v["type"].as_str().unwrap_or("");
        let addr = v["hook"]["resource"]["addr"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let Some(at) = v["@timestamp"].as_str().and_then(rfc3339_secs) else {
            continue;
        };
        let rel = (at - spawned) * 1000.0;
        match kind {
            "apply_start" => {
                starts.insert(addr, rel);
            }
            "apply_complete" => {
                if let Some(start_ms) = starts.remove(&addr) {
                    spans.push(Span {
                        addr,
                        start_ms,
                        end_ms: rel,
                    });
                }
            }
            _ => {}
        }
    }
    spans.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    spans
}

/// The timeline of the sample whose time is the median (the lower one of an even count).
fn median_timeline(samples: &[(f64, Vec<Span>)], what: &str) -> String {
    let mut sorted: Vec<&(f64, Vec<Span>)> = samples.iter().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    match sorted.get(sorted.len().saturating_sub(1) / 2) {
        Some((t, spans)) if !spans.is_empty() => format!(
            "\nTimeline of the median {what} (from `terraform apply -json`; times since the command was started):\n\n{}",
            timeline_table(spans, *t)
        ),
        _ => String::new(),
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A markdown table of one apply's spans (k3s and their HAProxy entries; `[...]`-less addresses shortened).
fn timeline_table(spans: &[Span], total_ms: f64) -> String {
    let mut md =
        String::from("| Resource | Start (s) | End (s) | Took (s) |\n|---|---:|---:|---:|\n");
    for s in spans {
        let _ = writeln!(
            md,
            "| `{}` | {:.2} | {:.2} | {:.2} |",
            s.addr.trim_start_matches("module.k3s_ha."),
            s.start_ms / 1000.0,
            s.end_ms / 1000.0,
            (s.end_ms - s.start_ms) / 1000.0
        );
    }
    let first = spans
        .iter()
        .map(|s| s.start_ms)
        .fold(f64::INFINITY, f64::min);
    let last = spans.iter().map(|s| s.end_ms).fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "\nBefore the first resource starts (Terraform start, provider starts, refresh, plan): {:.2} s; after the last \
         completes (state written, providers stopped, exit): {:.2} s; whole command {:.2} s.",
        first / 1000.0,
        (total_ms - last) / 1000.0,
        total_ms / 1000.0
    );
    md
}

// ----- rows -------------------------------------------------------------------------------------------------------

fn med(v: &[f64]) -> f64 {
    median(&mut v.to_vec())
}

fn fmt_s(msv: f64) -> String {
    format!("{:.2} s", msv / 1000.0)
}

fn verdict(ratio: f64, target: f64) -> &'static str {
    if ratio <= target {
        "✔"
    } else {
        "✘"
    }
}

struct CpSamples(Vec<CriticalPath>);

impl CpSamples {
    fn totals(&self) -> Vec<f64> {
        self.0.iter().map(CriticalPath::total_ms).collect()
    }
    fn breakdown(&self) -> String {
        let first = med(&self.0.iter().map(|c| c.first_server_ms).collect::<Vec<_>>());
        let joins: Vec<String> = (0..self.0.first().map_or(0, |c| c.joins_ms.len()))
            .map(|i| {
                fmt_s(med(&self
                    .0
                    .iter()
                    .map(|c| c.joins_ms[i])
                    .collect::<Vec<_>>()))
            })
            .collect();
        let agents = med(&self.0.iter().map(|c| c.agents_ms).collect::<Vec<_>>());
        format!(
            "first server {}, joins {}, agents (parallel) {}",
            fmt_s(first),
            joins.join(" + "),
            fmt_s(agents)
        )
    }
}

/// The cluster section and the groups that failed (their error is in the text).
pub struct Section {
    pub markdown: String,
    pub failed: Vec<String>,
}

/// Runs the selected cluster benchmarks with `runs` samples per side (after one warm-up sample each); returns
/// the markdown section (with its markers), or `None` when nothing of this module was selected.
pub fn run(runs: usize, only: &[String], heavy: bool) -> Result<Option<Section>> {
    if !any_wanted(only, heavy) {
        return Ok(None);
    }
    let b = Bench::new()?;
    let load_start = loadavg();
    let mut md = format!(
        "{SECTION_BEGIN}\n## Cluster (issues 7 and 8)\n\n\
         Whole-topology applies in the host lab (3 servers, 3 agents, the k3s stand-in `{VERSION}` installed by our \
         `install.sh`), each sample in a fresh lab, samples alternating, median of {runs} runs per side after one \
         warm-up run. Measured {date} on this machine while other engineers' builds and tests ran on it (load: \
         absolute times vary, the ratios are taken within one run). Method: `acceptance-tests/src/bench_k3s.rs`.\n",
        date = now_utc(),
    );

    // A failing group is reported in the section (and by the runner's exit code) without losing the others.
    let mut failed = Vec::new();
    // Each group waits, bounded, for a quiet machine first (the one before it leaves the 2 cores busy for a
    // minute: the 40-host lab's teardown above all) and says at what load it started.
    let quiet = crate::bench::quiet_load;
    let mut group = |name: &str, load: String, r: Result<String>| match r {
        Ok(text) => {
            md.push_str(&text);
            let _ = writeln!(
                md,
                "\nLoad average (1/5/15 min) at the start of this group: {load}."
            );
        }
        Err(e) => {
            eprintln!("bench: {name} failed: {e}");
            let first: String = e.to_string().lines().take(3).collect::<Vec<_>>().join(" ");
            let _ = writeln!(md, "\n### {name}\n\n**Not measured in this run:** {first}");
            failed.push(name.to_string());
        }
    };
    if wanted(only, heavy, "k3s-apply-3x3") || wanted(only, heavy, "k3s-plan-6") {
        let load = quiet();
        group(
            "k3s: 3 servers + 3 agents (issue 7)",
            load,
            k3s_rows(&b, runs),
        );
    }
    if wanted(only, heavy, "k3s-scale") {
        let load = quiet();
        group(
            "k3s: time against the cluster's size (issue 16)",
            load,
            scale_rows(&b),
        );
    }
    if wanted(only, heavy, "example-apply") || wanted(only, heavy, "example-plan") {
        let load = quiet();
        group(
            "The complete example (issue 8)",
            load,
            example_rows(&b, runs),
        );
    }
    let _ = writeln!(
        md,
        "\nLoad average (1/5/15 min) at the start of these rows: {load_start}; at their end: {}.",
        loadavg()
    );
    md.push_str(&analysis());
    Ok(Some(Section {
        markdown: md,
        failed,
    }))
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The cluster sizes of the scale curve: (servers, agents).
const SCALE: &[(u32, u32)] = &[(3, 3), (5, 10), (10, 30)];

/// Issue 16's scale row: one apply and the refreshing no-op plan of the issue-7 topology (one init server, the
/// other servers joining through it, the agents after the joins) for each size of [`SCALE`], one sample per size in
/// a fresh lab (a 40-host apply takes minutes on two cores). Baselines in the same lab: the plan against N
/// `terraform_data` plus one parallel wave of `ssh host true` to every node; the apply against the joins'
/// serialisation floor, which is not measured by hand here, so the apply column is an absolute time per size,
/// with its time per node.
fn scale_rows(b: &Bench) -> Result<String> {
    let mut md = String::from(
        "\n### k3s: time against the cluster's size (issue 16)\n\n\
         One sample per size, each in a fresh lab (network namespaces with real sshd and the k3s stand-in), \
         Terraform's default parallelism (10). Plan baseline: `plan` of N `terraform_data` + one parallel wave of \
         N `ssh host true`, in the same lab.\n\n\
         | Servers + agents | Hosts | `apply` | per node | refreshing `plan` | baseline | plan ratio |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for &(servers, agents) in SCALE {
        let n = (servers + agents) as usize;
        eprintln!("bench: k3s-scale {servers}+{agents}...");
        let g = b.lab_sized(false, servers, agents)?;
        let lab = g.lab();
        let mut tf = Terraform::new(TerraformVersion::V1_15)?;
        tf.set_env("TF_VAR_token", TOKEN).set_timeout(DEADLINE);
        tf.write_config(&k3s_config(b, lab))?;
        tf.init()?;
        let (apply, _) = tf_in_lab(&tf, lab, APPLY, false)?;
        eprintln!("bench:   apply {:.1} s", apply / 1000.0);
        let _warm = tf_in_lab(&tf, lab, PLAN, false)?;
        let (plan, _) = tf_in_lab(&tf, lab, PLAN, false)?;
        let base_world = Terraform::new(TerraformVersion::V1_15)?;
        base_world.write_config(
            &(0..n)
                .map(|i| {
                    format!("resource \"terraform_data\" \"n{i}\" {{\n  input = \"{i}\"\n}}\n")
                })
                .collect::<String>(),
        )?;
        base_world.init()?;
        must(base_world.run(APPLY)?, "apply of terraform_data")?;
        let t = Instant::now();
        must(base_world.run(PLAN)?, "plan of terraform_data")?;
        let tfdata = ms(t.elapsed());
        let wave = ssh_wave(lab)?;
        eprintln!(
            "bench:   plan {plan:.0} ms vs {tfdata:.0} ms terraform_data + {wave:.0} ms ssh wave"
        );
        let _ = writeln!(
            md,
            "| {servers} + {agents} | {n} | {} | {:.2} s | {plan:.0} ms | {:.0} ms ({tfdata:.0} + {wave:.0}) | {:.2}× |",
            fmt_s(apply),
            apply / 1000.0 / n as f64,
            tfdata + wave,
            plan / (tfdata + wave),
        );
    }
    md.push_str(
        "\nWhat shapes the curve: the joins are serialised (etcd, in the real k3s and in the stand-in alike, takes \
         one learner at a time), and the agents install ten at a time (Terraform's parallelism) after the last \
         join; the refreshing plan reads every node over SSH, ten at a time. The lab's limit: hosts are network \
         namespaces on one machine, all sharing its 2 cores; 10 + 30 is the size the issue names and the largest \
         measured here.\n",
    );
    Ok(md)
}

/// Issue 7: the 3+3 apply against the critical path, and the no-op refreshed plan of the 6 nodes.
fn k3s_rows(b: &Bench, runs: usize) -> Result<String> {
    eprintln!(
        "bench: k3s-apply-3x3 and k3s-plan-6 ({runs} runs per side, a fresh lab per sample)..."
    );
    let (mut subject, mut cps, mut plans, mut tfdata, mut waves) = (
        Vec::new(),
        CpSamples(Vec::new()),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut rss: Vec<f64> = Vec::new();
    let mut spans: Vec<(f64, Vec<Span>)> = Vec::new();
    let baseline_world = Terraform::new(TerraformVersion::V1_15)?;
    baseline_world.write_config(
        &(0..6)
            .map(|i| format!("resource \"terraform_data\" \"n{i}\" {{\n  input = \"{i}\"\n}}\n"))
            .collect::<String>(),
    )?;
    baseline_world.init()?;
    must(baseline_world.run(APPLY)?, "apply of 6 terraform_data")?;
    for i in 0..=runs {
        let warm = i == 0;
        // Baseline: the critical path by hand.
        {
            let g = b.lab(false)?;
            let cp = by_hand(b, g.lab(), None, &nodes(g.lab()).0[0].1, &mut || Ok(()))?;
            eprintln!(
                "bench:   by hand {:.1} s ({})",
                cp.total_ms() / 1000.0,
                if warm { "warm-up" } else { "sample" }
            );
            if !warm {
                cps.0.push(cp);
            }
        }
        // Subject: terraform apply of the same topology.
        {
            let g = b.lab(false)?;
            let lab = g.lab();
            let mut tf = Terraform::new(TerraformVersion::V1_15)?;
            tf.set_env("TF_VAR_token", TOKEN).set_timeout(DEADLINE);
            tf.write_config(&k3s_config(b, lab))?;
            tf.init()?;
            let (t, peak, sp) = tf_in_lab_out(&tf, lab, APPLY_JSON, true)?;
            eprintln!("bench:   terraform apply {:.1} s", t / 1000.0);
            if !warm {
                subject.push(t);
                spans.push((t, sp));
                rss.extend(peak.map(|k| k as f64));
            }
            if i == runs {
                // The no-op refreshed plan of the 6 nodes, in this lab, alternating with its baseline parts.
                let (t0, _) = tf_in_lab(&tf, lab, PLAN, false)?;
                let _ = t0;
                for _ in 0..runs.max(5) {
                    plans.push(tf_in_lab(&tf, lab, PLAN, false)?.0);
                    let t = Instant::now();
                    must(baseline_world.run(PLAN)?, "plan of 6 terraform_data")?;
                    tfdata.push(ms(t.elapsed()));
                    waves.push(ssh_wave(lab)?);
                }
            }
        }
    }
    let s = med(&subject);
    let c = med(&cps.totals());
    let (p, d, w) = (med(&plans), med(&tfdata), med(&waves));
    let mut md = String::from("\n### k3s: 3 servers + 3 agents (issue 7)\n\n");
    md.push_str("| Benchmark | Subject | Baseline | Ratio | Target |\n|---|---:|---:|---:|---:|\n");
    let _ = writeln!(
        md,
        "| `k3s-apply-3x3`: `terraform apply` of 1 init server + 2 joins + 3 agents (through the first server) vs the critical path by hand over ssh ({}) | {} | {} | {:.2}× | ≤ 1.20× {} |",
        cps.breakdown(),
        fmt_s(s),
        fmt_s(c),
        s / c,
        verdict(s / c, 1.2)
    );
    let _ = writeln!(
        md,
        "| `k3s-plan-6`: refreshing no-op `plan` of the 6 nodes vs `plan` of 6 `terraform_data` ({:.0} ms) + one parallel wave of 6 `ssh host true` ({:.0} ms) | {:.0} ms | {:.0} ms | {:.2}× | — |",
        d,
        w,
        p,
        d + w,
        p / (d + w)
    );
    if !rss.is_empty() {
        let _ = writeln!(
            md,
            "\nProvider peak RSS during the apply (median of the largest `VmHWM` over the provider processes Terraform started): {:.1} MiB.",
            med(&rss) / 1024.0
        );
    }
    let _ = writeln!(
        md,
        "\nSamples (s): apply {}; by hand {}.",
        list_s(&subject),
        list_s(&cps.totals())
    );
    md.push_str(&median_timeline(&spans, "3+3 apply"));
    Ok(md)
}

fn list_s(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{:.1}", x / 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Issue 8: the complete example's apply vs the critical path and vs the seed's Ansible run; the no-op plan of
/// the whole topology.
fn example_rows(b: &Bench, runs: usize) -> Result<String> {
    eprintln!(
        "bench: example-apply and example-plan ({runs} runs per side, a fresh lab per sample)..."
    );
    let playbook = ansible_playbook();
    if playbook.is_none() {
        eprintln!(
            "bench:   no ansible-core venv (/opt/ansible-venv): the Ansible baseline is skipped"
        );
    }
    let work = tempfile::tempdir().map_err(|source| Error::Io {
        context: "temp dir".into(),
        source,
    })?;
    let (mut subject, mut cps, mut ans, mut plans, mut tfdata, mut waves) = (
        Vec::new(),
        CpSamples(Vec::new()),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut rss: Vec<f64> = Vec::new();
    let mut spans: Vec<(f64, Vec<Span>)> = Vec::new();
    let mut resources = 0usize;
    let mut baseline_world: Option<Terraform> = None;
    for i in 0..=runs {
        let warm = i == 0;
        {
            let g = b.lab(true)?;
            let lab = g.lab();
            let vip = lab_vip(lab)?;
            let url = format!("https://{vip}:6443");
            let cp = by_hand(b, lab, Some(&url), &vip, &mut || prepare_opnsense(lab))?;
            eprintln!("bench:   by hand {:.1} s", cp.total_ms() / 1000.0);
            if !warm {
                cps.0.push(cp);
            }
        }
        if let Some(pb) = &playbook {
            let g = b.lab(true)?;
            let lab = g.lab();
            let t = ansible(
                b,
                lab,
                pb,
                &lab_vip(lab)?,
                &work.path().join(format!("ansible-{i}")),
                &mut || prepare_opnsense(lab),
            )?;
            eprintln!("bench:   ansible-playbook {:.1} s", t / 1000.0);
            if !warm {
                ans.push(t);
            }
        }
        {
            let g = b.lab(true)?;
            let lab = g.lab();
            let tf = example_world(b, lab)?;
            let (t, peak, sp) = tf_in_lab_out(&tf, lab, APPLY_JSON, true)?;
            eprintln!("bench:   terraform apply {:.1} s", t / 1000.0);
            if !warm {
                subject.push(t);
                spans.push((t, sp));
                rss.extend(peak.map(|k| k as f64));
            }
            if i == runs {
                let list = must(tf.run(&["state", "list"])?, "state list")?;
                resources = list
                    .stdout
                    .lines()
                    .filter(|l| !l.starts_with("module.k3s_ha.data.") && !l.trim().is_empty())
                    .count();
                let bw = Terraform::new(TerraformVersion::V1_15)?;
                bw.write_config(
                    &(0..resources)
                        .map(|i| {
                            format!(
                                "resource \"terraform_data\" \"n{i}\" {{\n  input = \"{i}\"\n}}\n"
                            )
                        })
                        .collect::<String>(),
                )?;
                bw.init()?;
                must(bw.run(APPLY)?, "apply of terraform_data")?;
                tf_in_lab(&tf, lab, PLAN, false)?;
                for _ in 0..runs.max(5) {
                    plans.push(tf_in_lab(&tf, lab, PLAN, false)?.0);
                    let t = Instant::now();
                    must(bw.run(PLAN)?, "plan of terraform_data")?;
                    tfdata.push(ms(t.elapsed()));
                    waves.push(ssh_wave(lab)?);
                }
                baseline_world = Some(bw);
            }
        }
    }
    drop(baseline_world);
    let s = med(&subject);
    let c = med(&cps.totals());
    let mut md = String::from("\n### The complete example (issue 8)\n\n");
    md.push_str("| Benchmark | Subject | Baseline | Ratio | Target |\n|---|---:|---:|---:|---:|\n");
    let _ = writeln!(
        md,
        "| `example-apply` vs critical path: `terraform apply` of `examples/complete` (VIP, firewall alias + rule, HAProxy health check, 3 servers, pool, frontend, exporter, 3 k3s servers, 3 agents through the VIP) vs the critical path by hand over ssh, the HAProxy objects created untimed once the first server is up, with it in the pool ({}) | {} | {} | {:.2}× | ≤ 1.10× (issue 16's) {} |",
        cps.breakdown(),
        fmt_s(s),
        fmt_s(c),
        s / c,
        verdict(s / c, 1.1)
    );
    if !ans.is_empty() {
        let a = med(&ans);
        let _ = writeln!(
            md,
            "| `example-apply` vs Ansible: the same apply vs `ansible-playbook` of the seed's three roles (ansible-core {}, `acceptance-tests/bench/ansible/`), HAProxy prepared as for the critical path | {} | {} | {:.2}× | — |",
            ansible_version(playbook.as_deref()),
            fmt_s(s),
            fmt_s(a),
            s / a
        );
    }
    let (p, d, w) = (med(&plans), med(&tfdata), med(&waves));
    let _ = writeln!(
        md,
        "| `example-plan`: refreshing no-op `plan` of the whole topology ({resources} resources) vs `plan` of {resources} `terraform_data` ({:.0} ms) + one parallel wave of 6 `ssh host true` ({:.0} ms) | {:.0} ms | {:.0} ms | {:.2}× | — |",
        d,
        w,
        p,
        d + w,
        p / (d + w)
    );
    if !rss.is_empty() {
        let _ = writeln!(
            md,
            "\nProvider peak RSS during the example's apply: {:.1} MiB.",
            med(&rss) / 1024.0
        );
    }
    let _ = writeln!(
        md,
        "\nSamples (s): apply {}; by hand {}{}.",
        list_s(&subject),
        list_s(&cps.totals()),
        if ans.is_empty() {
            "; Ansible not run (no /opt/ansible-venv)".to_string()
        } else {
            format!("; Ansible {}", list_s(&ans))
        }
    );
    md.push_str(&median_timeline(&spans, "example's apply"));
    Ok(md)
}

fn ansible_version(playbook: Option<&Path>) -> String {
    playbook
        .and_then(|p| std::process::Command::new(p).arg("--version").output().ok())
        .and_then(|o| {
            let s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.lines()
                .next()
                .and_then(|l| l.split("core ").nth(1))
                .map(|v| v.trim_end_matches(']').to_string())
        })
        .unwrap_or_else(|| "?".into())
}

/// The reading of the measurements, written by hand from the timelines (update it when the sequences change).
const WHERE_THE_TIME_GOES: &str = "\n### Where the time goes (cluster rows)\n\n\
Read by hand from the timelines above, the provider's debug log (`TF_LOG_PROVIDER=debug ./acceptance-tests/dev \
example`) and the emulator's request log; last revised 2026-12-07 (second stop of the day), not regenerated by the runner.\n\n\
- **The stand-in's own waits dominate every apply, and both sides pay them.** The first server needs ~1.3–3.3 s to \
start (etcd, certificates; it varies with the machine's load), a join ~1.6–2.4 s, and the *second* join ~6.5–7 s: \
etcd (the real etcd 3.4) answers `unhealthy cluster` to a member add right after the previous learner's \
promotion (its strict reconfiguration check), and the stand-in retries after 5 s. The agents take ~0.7–1.5 s in \
parallel. Hence a ~12 s critical path although each step is short.\n\
- **Terraform itself costs ~0.15–0.25 s before the first resource starts** (start, provider starts, plan) and \
~0.02 s after the last one completes. The joins cost nothing extra: Terraform starts both at once and the \
provider's per-cluster lock runs them one after the other, like the by-hand sequence.\n\
- **Per node, the provider waits for readiness on the host in one exec** (a loop polling every 100 ms, as the \
by-hand sequence does; it was a 700 ms poll over SSH, then 200 ms on the host), uploads each file with its \
directory in one exec, and reads a node back (token, SANs on the wire, certificates, the Node's labels and \
taints) in one exec whose slow readers (kubectl, the TLS handshake) run in the background.\n\
- **The example's HAProxy work is off the agents' path (module change of 2026-12-07).** Terraform orders by \
resource block, not by instance (checked with `for_each` resources and `for_each` modules alike: every instance \
of a dependent waits for every instance of what it references), so a pool listing the joiners in `servers` could \
only be written after the last join, and the frontend after it: ~0.55 s of configtest → reconfigure between the \
last join and the agents. The module now creates the pool (without `servers`) and the frontend at the start, adds \
the first server as a `homelab_opnsense_haproxy_backend_member` once its node is Ready, and the agents wait for \
that member (and, as before, for the joins); the joiners' members are added beside the agents. The coalescer's \
quiet period before a batch goes live is 40 ms (it was 150 ms, paid on every HAProxy dependency chain), and its \
barrier for nodes registering through the VIP waits only for changes answered before going live, not for the \
joiners' members. The invariant stays: the VIP never sends traffic to a node still joining. The baselines get \
their HAProxy objects untimed once the first server is up, with it in the pool (as the seed did in the UI).\n\
- **The firewall's objects start after the first server (module change of stop 27).** Created at the \
start, the VIP, aliases, rule, health check, settings, pool and frontend (each haproxy reload real) shared the 2 \
cores with the first server's start (2.07 s against 1.14 s by hand in that stop's bench of record); only the \
agents need them, and the agents wait for the joins anyway, so the module's firewall objects now depend on \
`homelab_k3s_server.first` and run in ~0.4 s while the second joiner waits for etcd (timeline above). Single \
runs after the change: 1.09× and 1.09× (was 1.16×).\n\
- **An uploaded admin kubeconfig costs one exec** (the agents' version-skew check before the install and their \
marks sync after it): the credentials arrive on stdin into a private directory that the same script removes (it \
was mktemp, one upload per file, the command, rm: four to six round trips, ~0.15–0.2 s per agent in the debug \
log). What the agents still pay beyond the by-hand path: the skew check itself and the read-back of the Node \
(the by-hand agents stop at a non-empty load-balancer file).\n\
- **Ansible pays per task, per host.** It runs as two invocations here (the first server; then, after the untimed \
HAProxy step, the rest), so its start-up (~1 s) is paid twice. Every task starts a Python interpreter on the host \
and sends the module over SSH (pipelining and ControlPersist on, no fact gathering), ~0.5–1 s per task and play \
on this machine. The seed's own play joined both servers at once; in the lab that made a join fail (etcd admits \
one learner at a time), so our playbook joins with `serial: 1` (see `acceptance-tests/bench/ansible/README.md`).\n\
- **No-op plans**: a refresh costs one SSH connection and one exec per node (russh in the provider against OpenSSH \
clients in the baseline's `ssh host true`, which does no work on the host), in Terraform's waves (the first \
server, the joins, the agents: three waves, against the baseline's one), plus the OPNsense objects' API reads \
(one whole-model read serves every HAProxy object).\n";

/// Separates the measured part of the section from the hand-written analysis that follows it.
const ANALYSIS_MARK: &str = "<!-- bench-k3s:analysis -->";

/// The hand-written reading of the measurements (from the code, so a carried-over section gets the current text),
/// with the section's end marker.
fn analysis() -> String {
    format!("{ANALYSIS_MARK}\n{WHERE_THE_TIME_GOES}{SECTION_END}\n")
}

/// The cluster section of an earlier `docs/benchmarks.md`, for a run that did not measure it: its measured part
/// verbatim, the analysis as the code has it now.
pub fn carry_over(old: &str) -> Option<String> {
    let start = old.find(SECTION_BEGIN)?;
    let end = old[start..].find(SECTION_END)? + start;
    let measured = &old[start..end];
    let measured = measured
        .find(ANALYSIS_MARK)
        .map_or(measured, |i| &measured[..i]);
    Some(format!(
        "{}{}",
        measured.trim_end_matches('\n').to_string() + "\n",
        analysis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_by_id_group_and_heavy() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!wanted(&[], false, "k3s-apply-3x3"));
        assert!(wanted(&[], true, "k3s-apply-3x3"));
        assert!(wanted(&o(&["k3s"]), false, "k3s-plan-6"));
        assert!(!wanted(&o(&["k3s"]), true, "example-apply"));
        assert!(wanted(&o(&["example-plan"]), false, "example-plan"));
        assert!(!wanted(&o(&["example-plan"]), false, "example-apply"));
        assert!(!any_wanted(&o(&["plan-fixture"]), true));
    }

    #[test]
    fn carry_over_keeps_exactly_the_section() {
        let doc =
            format!("# B\n\nx\n{SECTION_BEGIN}\n## Cluster\nrow\n{SECTION_END}\n## Reproduce\n");
        let s = carry_over(&doc).unwrap();
        assert!(
            s.starts_with(SECTION_BEGIN) && s.trim_end().ends_with(SECTION_END),
            "{s}"
        );
        assert!(s.contains("row") && !s.contains("Reproduce"));
        assert_eq!(carry_over("# nothing"), None);
    }

    #[test]
    fn timestamps_and_spans() {
        let t0 = rfc3339_secs("2026-11-24T16:41:00.000000Z").unwrap();
        assert_eq!(t0, 1_795_538_460.0);
        assert_eq!(
            rfc3339_secs("2026-11-24T17:41:00.5+01:00").unwrap(),
            t0 + 0.5
        );
        let out = concat!(
            r#"{"@timestamp":"2026-11-24T16:41:01.000000Z","type":"apply_start","hook":{"resource":{"addr":"a.b"}}}"#,
            "\nnot json\n",
            r#"{"@timestamp":"2026-11-24T16:41:03.250000Z","type":"apply_complete","hook":{"resource":{"addr":"a.b"}}}"#,
        );
        assert_eq!(
            timeline(out, t0),
            vec![Span {
                addr: "a.b".into(),
                start_ms: 1000.0,
                end_ms: 3250.0
            }]
        );
        assert!(
            timeline_table(&timeline(out, t0), 4000.0).contains("| `a.b` | 1.00 | 3.25 | 2.25 |")
        );
    }

    #[test]
    fn node_script_keeps_the_token_off_the_command_line() {
        let s = node_script("echo install", "n1", "A=1", "true", "").replace("{TOKEN}", "sekrit");
        // The token is inside a quoted heredoc of the script (stdin), and appears nowhere else.
        assert_eq!(s.matches("sekrit").count(), 1);
        assert!(s.contains("<<'HOMELAB_TOKEN_EOF'\nsekrit\nHOMELAB_TOKEN_EOF"));
        assert!(s.contains("env K3S_NODE_NAME=$NODE A=1 sh /usr/local/bin/k3s-install.sh"));
    }
}
