//! The remote command sequences for one k3s node (server or agent), each idempotent.
//!
//! Every function takes an open [`Session`]; privileged commands go through `run_sudo`/`exec_sudo` (root runs them
//! directly). Secrets (the token inside `config.yaml`, the install binary) travel on stdin via
//! [`Session::upload`]; what we put on command lines is only non-secret (version, unit names, node names).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::error::K3sError;
use super::paths::*;
use crate::ssh::{quote, Session};

/// Server or agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    /// The systemd unit the install script creates.
    pub fn unit(self) -> &'static str {
        match self {
            Role::Server => "k3s",
            Role::Agent => "k3s-agent",
        }
    }
    /// The k3s sub-command (first word of `INSTALL_K3S_EXEC`).
    pub fn command(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }
    /// The uninstall script the install script writes.
    pub fn uninstall_script(self) -> &'static str {
        match self {
            Role::Server => "/usr/local/bin/k3s-uninstall.sh",
            Role::Agent => "/usr/local/bin/k3s-agent-uninstall.sh",
        }
    }
}

/// Where the install script (and optionally the binary) comes from.
#[derive(Clone, Debug, Default)]
pub struct InstallSource {
    /// The script's content, uploaded to the host. `None`: the host downloads `script_url` with curl.
    pub script: Option<Vec<u8>>,
    /// URL the host downloads the script from when `script` is `None` (default `https://get.k3s.io`).
    pub script_url: Option<String>,
    /// Local path (where Terraform runs) of a k3s binary uploaded to the host (air-gap install; implies
    /// `INSTALL_K3S_SKIP_DOWNLOAD=true`). Read only when an install actually runs.
    pub binary_path: Option<std::path::PathBuf>,
    /// Extra non-secret `INSTALL_K3S_*` environment for the script (e.g. a mirror).
    pub env: BTreeMap<String, String>,
}

/// Validates an extra install environment variable name: `INSTALL_K3S_*` only (secrets belong in config.yaml).
pub fn check_install_env_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && name.starts_with("INSTALL_K3S_");
    if !ok {
        return Err(format!(
            "{name:?} is not allowed: only INSTALL_K3S_* variables (upper case) can be passed to the install \
             script; k3s settings (token, server, ...) belong in config.yaml"
        ));
    }
    if matches!(
        name,
        "INSTALL_K3S_EXEC" | "INSTALL_K3S_SKIP_START" | "INSTALL_K3S_VERSION"
    ) {
        return Err(format!(
            "{name} is set by the provider (use the resource's attributes instead)"
        ));
    }
    Ok(())
}

/// What a quick look at the host finds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Probe {
    /// `k3s --version` field 3 (e.g. `v1.31.5+k3s1`), if the binary is installed.
    pub version: Option<String>,
    /// Units present (`k3s`, `k3s-agent`).
    pub units: Vec<String>,
    /// `systemctl is-active` of the role's unit.
    pub active: String,
    /// `systemctl is-enabled` of the role's unit.
    pub enabled: String,
    /// The raw config.yaml, if present.
    pub config: Option<Vec<u8>>,
    /// The host name.
    pub hostname: String,
    /// The role's unit file, if present (its `ExecStart` may carry flags of a hand install).
    pub unit_file: Option<String>,
    /// The role's env file (`K3S_*` of a hand install; may hold the token: never logged).
    pub env_file: Option<String>,
    /// The server's datastore on disk: `etcd`, `sqlite`, or `None` (no server data).
    pub datastore: Option<String>,
    /// `config.yaml.d/*.yaml` drop-ins (file name, content): k3s merges them over config.yaml.
    pub dropins: Vec<(String, Vec<u8>)>,
    /// `registries.yaml` (`None`: absent).
    pub registries: Option<Vec<u8>>,
}

impl Probe {
    /// Whether k3s in this role is installed at all.
    pub fn installed(&self, role: Role) -> bool {
        self.version.is_some() && self.units.iter().any(|u| u == role.unit())
    }

    /// The settings the node runs with: config.yaml merged with the unit's flags and env file. `None` when
    /// config.yaml exists but is not a YAML mapping.
    pub fn effective(&self) -> Option<super::config::Effective> {
        super::config::effective(
            self.config.as_deref(),
            &self.dropins,
            self.unit_file.as_deref(),
            self.env_file.as_deref(),
        )
    }
}

/// Splits `@@name` sections of a probe script's output.
fn sections(out: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    let mut cur: Option<String> = None;
    let mut buf = String::new();
    for line in out.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("@@") {
            if let Some(c) = cur.take() {
                map.insert(c, std::mem::take(&mut buf));
            }
            cur = Some(name.trim().to_string());
            continue;
        }
        if cur.is_some() {
            buf.push_str(line);
        }
    }
    if let Some(c) = cur {
        map.insert(c, buf);
    }
    map
}

/// Parses `k3s version v1.31.5+k3s1 (56ec5dd4)` → `v1.31.5+k3s1`.
pub fn parse_version(s: &str) -> Option<String> {
    let line = s.lines().next()?;
    let mut w = line.split_whitespace();
    (w.next()? == "k3s" && w.next()? == "version").then_some(())?;
    w.next().map(str::to_string)
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if t.is_empty() {
        return None;
    }
    base64::engine::general_purpose::STANDARD.decode(t).ok()
}

/// Reads the node's basic state in one round trip.
pub async fn probe(session: &Session, role: Role) -> Result<Probe, K3sError> {
    let script = format!("{}exit 0\n", probe_script(role));
    let out = session.run_sudo(&script, None).await?.stdout_str();
    Ok(parse_probe(&sections(&out)))
}

/// The probe's shell text, without the closing `exit 0`, so more sections can follow it in the same exec.
fn probe_script(role: Role) -> String {
    let unit = role.unit();
    format!(
        "echo @@version; test -x {K3S_BIN} && {K3S_BIN} --version 2>/dev/null | head -n1\n\
         echo @@units; for u in k3s k3s-agent; do test -f /etc/systemd/system/$u.service && echo $u; done\n\
         echo @@active; systemctl is-active {unit} 2>/dev/null\n\
         echo @@enabled; systemctl is-enabled {unit} 2>/dev/null\n\
         echo @@config; test -f {CONFIG_PATH} && base64 -w0 {CONFIG_PATH} && echo\n\
         echo @@hostname; hostname\n\
         echo @@unit; test -f /etc/systemd/system/{unit}.service && base64 -w0 /etc/systemd/system/{unit}.service && echo\n\
         echo @@envfile; test -f /etc/systemd/system/{unit}.service.env && base64 -w0 /etc/systemd/system/{unit}.service.env && echo\n\
         echo @@datastore; if [ -d {DB_DIR}/etcd ]; then echo etcd; elif [ -f {DB_DIR}/state.db ]; then echo sqlite; fi\n\
         echo @@registries; test -f {REGISTRIES} && base64 -w0 {REGISTRIES} && echo\n\
         for f in {CONFIG_PATH}.d/*.yaml; do [ -f \"$f\" ] && echo \"@@dropin:${{f##*/}}\" && base64 -w0 \"$f\" && echo; done\n",
        REGISTRIES = super::registries::REGISTRIES_PATH,
    )
}

fn parse_probe(s: &BTreeMap<String, String>) -> Probe {
    let get = |k: &str| s.get(k).map(|v| v.trim().to_string()).unwrap_or_default();
    Probe {
        version: parse_version(&get("version")),
        units: get("units").lines().map(str::to_string).collect(),
        active: get("active"),
        enabled: get("enabled"),
        config: s.get("config").and_then(|c| decode_b64(c)),
        hostname: get("hostname"),
        unit_file: s
            .get("unit")
            .and_then(|c| decode_b64(c))
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
        env_file: s
            .get("envfile")
            .and_then(|c| decode_b64(c))
            .map(|b| String::from_utf8_lossy(&b).into_owned()),
        datastore: Some(get("datastore")).filter(|d| !d.is_empty()),
        registries: s.get("registries").and_then(|c| decode_b64(c)),
        dropins: s
            .iter()
            .filter_map(|(k, v)| {
                let name = k.strip_prefix("dropin:")?;
                Some((name.to_string(), decode_b64(v).unwrap_or_default()))
            })
            .collect(),
    }
}

/// Renders config.yaml (as JSON, which YAML parsers accept) from its keys. Deterministic: keys sorted.
pub fn render_config(cfg: &BTreeMap<String, serde_json::Value>) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(cfg).unwrap_or_default();
    v.push(b'\n');
    v
}

/// Parses a config.yaml: ours (JSON) or hand-written YAML. `None` when it is not a mapping.
pub fn parse_config(raw: &[u8]) -> Option<BTreeMap<String, serde_json::Value>> {
    super::config::parse_config(raw)
}

/// Writes config.yaml (0600, atomically) if its content differs. Returns whether it changed.
pub async fn write_config(
    session: &Session,
    content: &[u8],
    current: Option<&[u8]>,
) -> Result<bool, K3sError> {
    if current == Some(content) {
        return Ok(false);
    }
    session
        .upload_creating_dir(content, CONFIG_PATH, 0o600, 0o755)
        .await?;
    Ok(true)
}

/// Runs the install script with `INSTALL_K3S_SKIP_START=true` (the unit is started by [`start`]).
pub async fn install(
    session: &Session,
    role: Role,
    version: Option<&str>,
    source: &InstallSource,
) -> Result<(), K3sError> {
    let mut env: Vec<(String, String)> = vec![
        ("INSTALL_K3S_SKIP_START".into(), "true".into()),
        ("INSTALL_K3S_EXEC".into(), role.command().into()),
    ];
    if let Some(v) = version {
        env.push(("INSTALL_K3S_VERSION".into(), v.into()));
    }
    if let Some(path) = &source.binary_path {
        let bin = tokio::fs::read(path)
            .await
            .map_err(|e| K3sError::AirgapBinary {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        session
            .upload_creating_dir(&bin, K3S_BIN, 0o755, 0o755)
            .await?;
        env.push(("INSTALL_K3S_SKIP_DOWNLOAD".into(), "true".into()));
    }
    for (k, v) in &source.env {
        env.push((k.clone(), v.clone()));
    }
    match &source.script {
        Some(script) => {
            session
                .upload_creating_dir(script, INSTALL_SCRIPT_PATH, 0o755, 0o755)
                .await?;
        }
        None => {
            let url = source
                .script_url
                .clone()
                .unwrap_or_else(|| "https://get.k3s.io".into());
            session
                .run_sudo(
                    &format!(
                        "set -e; install -d -m 0755 /usr/local/bin; curl -sfL {} -o {INSTALL_SCRIPT_PATH}.tmp; \
                         chmod 755 {INSTALL_SCRIPT_PATH}.tmp; mv -f {INSTALL_SCRIPT_PATH}.tmp {INSTALL_SCRIPT_PATH}",
                        quote(&url)
                    ),
                    None,
                )
                .await?;
        }
    }
    let assignments: Vec<String> = env
        .iter()
        .map(|(k, v)| format!("{k}={}", quote(v)))
        .collect();
    // `env -u` keeps any K3S_* the login environment might carry out of the unit's env file.
    let cmd = format!(
        "env -u K3S_TOKEN -u K3S_URL {} sh {INSTALL_SCRIPT_PATH} 2>&1",
        assignments.join(" ")
    );
    let out = session.exec_sudo(&cmd, None).await?;
    if !out.success() {
        let text = out.stdout_str();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        return Err(K3sError::Install {
            host: session.host().to_string(),
            status: out.exit_status,
            output: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(())
}

/// Starts (or restarts) the unit without waiting for it (`--no-block`).
pub async fn start(session: &Session, role: Role, restart: bool) -> Result<(), K3sError> {
    let verb = if restart { "restart" } else { "start" };
    session
        .run_sudo(
            &format!(
                "systemctl daemon-reload; systemctl enable {u} >/dev/null 2>&1; systemctl {verb} --no-block {u}",
                u = role.unit()
            ),
            None,
        )
        .await?;
    Ok(())
}

/// The last `n` journal lines of the unit (best effort).
pub async fn journal_tail(session: &Session, role: Role, n: u32) -> String {
    match session
        .exec_sudo(
            &format!("journalctl -u {} -n {n} --no-pager 2>&1", role.unit()),
            None,
        )
        .await
    {
        Ok(o) => o.stdout_str(),
        Err(e) => format!("(journal unavailable: {e})"),
    }
}

/// Waits until the unit is active and (servers) the node reports Ready, or (agents) the load balancer file exists.
///
/// Why the loop runs on the host: polling over SSH costs a round trip and an exec per probe, and a coarse interval
/// between them (it was 700 ms) lands on the critical path of every node of an apply. One remote exec polls every
/// 100 ms (as a hand-written loop would; it was 200 ms, ~50 ms more per wait on average) for a slice of at most
/// 15 s and returns as soon as the node is ready; the provider loops over slices only so that Terraform's
/// cancellation and the timeout are checked between them.
pub async fn wait_ready(
    session: &Session,
    role: Role,
    node_name: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(), K3sError> {
    let unit = role.unit();
    let check = match role {
        Role::Server => format!(
            "s=$(systemctl is-active {unit} 2>/dev/null); echo \"unit=$s\"; [ \"$s\" = active ] || exit 0\n\
             r=$({K3S_BIN} kubectl get node {n} -o 'jsonpath={{.status.conditions[?(@.type==\"Ready\")].status}}' 2>/dev/null)\n\
             echo \"ready=$r\"\n",
            n = quote(node_name)
        ),
        Role::Agent => format!(
            "s=$(systemctl is-active {unit} 2>/dev/null); echo \"unit=$s\"; [ \"$s\" = active ] || exit 0\n\
             test -s {AGENT_LB_PATH} && echo ready=True\nexit 0\n"
        ),
    };
    let started = Instant::now();
    let mut state;
    loop {
        let slice = timeout
            .saturating_sub(started.elapsed())
            .min(Duration::from_secs(15))
            .as_secs()
            .max(1);
        let script = format!(
            "end=$(( $(date +%s) + {slice} ))\nwhile :; do\n  out=$( {{\n{check}}} 2>/dev/null )\n  \
             case \"$out\" in *ready=True*) echo \"$out\"; exit 0;; esac\n  \
             if [ \"$(date +%s)\" -ge \"$end\" ]; then echo \"$out\"; exit 0; fi\n  sleep 0.1\ndone\n"
        );
        let out = tokio::select! {
            r = session.exec_sudo(&script, None) => r?.stdout_str(),
            _ = cancel.cancelled() => String::new(),
        };
        if out.lines().any(|l| l.trim() == "ready=True") {
            return Ok(());
        }
        if !out.is_empty() {
            state = out
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(", ");
        } else {
            state = "cancelled while waiting".to_string();
        }
        if started.elapsed() >= timeout || cancel.is_cancelled() {
            break;
        }
    }
    Err(K3sError::NotReady {
        host: session.host().to_string(),
        unit: unit.to_string(),
        waited: started.elapsed(),
        state,
        journal: journal_tail(session, role, 30).await,
    })
}

/// What a server reports about its cluster.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerFacts {
    /// The secure `K10<ca-hash>::server:<password>` token.
    pub token: Option<String>,
    /// SANs of the certificate presented on `127.0.0.1:6443`, as openssl prints them (prefix stripped).
    pub serving_sans: Vec<String>,
    /// The admin kubeconfig as written by k3s.
    pub kubeconfig: Option<String>,
}

/// Parses `openssl x509 -ext subjectAltName` output into names.
pub fn parse_sans(s: &str) -> Vec<String> {
    let mut out: Vec<String> = s
        .lines()
        .filter(|l| !l.contains("Subject Alternative Name"))
        .flat_map(|l| l.split(','))
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| {
            x.strip_prefix("DNS:")
                .or_else(|| x.strip_prefix("IP Address:"))
                .unwrap_or(x)
                .to_string()
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Reads the token, the SANs on the wire and the kubeconfig of a server.
pub async fn server_facts(session: &Session) -> Result<ServerFacts, K3sError> {
    let script = format!("{}exit 0\n", facts_script());
    let out = session.run_sudo(&script, None).await?.stdout_str();
    Ok(parse_facts(&sections(&out)))
}

/// The SANs of the certificate the API serves on :6443, as openssl prints them (what clients see, not the files).
const SANS_CMD: &str = "openssl s_client -connect 127.0.0.1:6443 </dev/null 2>/dev/null | openssl x509 -noout -ext subjectAltName 2>/dev/null";

fn facts_script() -> String {
    format!(
        "echo @@token; cat {TOKEN_PATH} 2>/dev/null; echo\n\
         echo @@sans; {SANS_CMD}\n\
         echo @@kubeconfig; cat {KUBECONFIG_PATH} 2>/dev/null\n"
    )
}

fn parse_facts(s: &BTreeMap<String, String>) -> ServerFacts {
    let token = s
        .get("token")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    let kubeconfig = s
        .get("kubeconfig")
        .filter(|k| !k.trim().is_empty())
        .cloned();
    ServerFacts {
        token,
        serving_sans: parse_sans(s.get("sans").map(String::as_str).unwrap_or("")),
        kubeconfig,
    }
}

/// Reads the agent's load-balancer file: (`ServerURL`, `ServerAddresses`).
pub async fn agent_lb(session: &Session) -> Result<Option<(String, Vec<String>)>, K3sError> {
    let Some(raw) = session.download_if_exists(AGENT_LB_PATH).await? else {
        return Ok(None);
    };
    parse_lb(session.host(), &raw).map(Some)
}

fn parse_lb(host: &str, raw: &[u8]) -> Result<(String, Vec<String>), K3sError> {
    let v: serde_json::Value = serde_json::from_slice(raw).map_err(|e| K3sError::Unexpected {
        host: host.to_string(),
        detail: format!("{AGENT_LB_PATH} is not JSON: {e}"),
    })?;
    let url = v["ServerURL"].as_str().unwrap_or_default().to_string();
    let mut addrs: Vec<String> = v["ServerAddresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    addrs.sort();
    Ok((url, addrs))
}

/// What a refresh asks of a node besides the probe.
pub struct ReadWants<'a> {
    pub role: Role,
    /// The server's token, serving SANs and admin kubeconfig ([`server_facts`]).
    pub server_facts: bool,
    /// The agent's load-balancer file ([`agent_lb`]).
    pub agent_lb: bool,
    /// The Node to read labels and taints from, with credentials on the host (the name the state holds; the
    /// caller uses the answer only when the name read back is the same).
    pub node: Option<(super::kube::Creds<'a>, &'a str)>,
}

/// A refresh's reading of a node.
pub struct NodeRead {
    pub probe: Probe,
    pub certs: Vec<super::certs::CertExpiry>,
    pub server_facts: Option<ServerFacts>,
    pub agent_lb: Option<(String, Vec<String>)>,
    /// The Node asked for (its name) and what the API said: its marks, or why it could not answer (a stopped
    /// or unregistered node). `None` when it was not asked.
    pub node: Option<(String, Result<super::marks::Marks, String>)>,
}

/// The Node name whose labels and taints [`read_script`] asks for (`None`: no credentials on the host to ask with).
fn node_read_name<'a>(wants: &ReadWants<'a>) -> Option<&'a str> {
    let (creds, name) = wants.node?;
    super::kube::host_command(creds, "")?;
    Some(name)
}

/// The one script of [`read_node`]. The two slow readers, kubectl (~0.1 s for the stand-in, more for a real
/// k3s) and the TLS handshake on :6443 (two openssl processes), start first in the background into a private
/// temp directory (`$hl_tmp`: a name no other part of the script uses, since the exit trap removes it), and the
/// file reads run meanwhile; their answers are printed after `wait`. Waiting on their
/// pids only: under sudo the connection guard is a child of the same shell and lives as long as the session.
pub fn read_script(wants: &ReadWants<'_>) -> String {
    let mut script = String::from(
        "hl_tmp=$(mktemp -d) || exit 1\nreadonly hl_tmp\ntrap 'rm -rf -- \"$hl_tmp\"' EXIT\nhl_bg=\n",
    );
    let node_cmd = wants
        .node
        .and_then(|(creds, name)| super::kube::host_command(creds, &super::marks::get_args(name)));
    if let Some(cmd) = &node_cmd {
        let unit = wants.role.unit();
        script.push_str(&format!(
            "if systemctl is-active -q {unit} 2>/dev/null; then \
             (if o=$({cmd} 2>&1); then echo @@node-ok; else echo @@node-err; fi; \
             printf '%s' \"$o\" | base64 -w0; echo) >\"$hl_tmp/node\" 2>/dev/null & hl_bg=\"$hl_bg $!\"; fi\n"
        ));
    }
    if wants.server_facts {
        script.push_str(&format!(
            "({SANS_CMD}) >\"$hl_tmp/sans\" 2>/dev/null & hl_bg=\"$hl_bg $!\"\n"
        ));
    }
    script.push_str(&probe_script(wants.role));
    if wants.server_facts {
        script.push_str(&format!(
            "echo @@token; cat {TOKEN_PATH} 2>/dev/null; echo\n\
             echo @@kubeconfig; cat {KUBECONFIG_PATH} 2>/dev/null\n"
        ));
    }
    if wants.agent_lb {
        let p = quote(AGENT_LB_PATH);
        script.push_str(&format!(
            "if [ -e {p} ]; then echo @@lb; base64 -w0 {p}; echo; fi\n"
        ));
    }
    script.push_str(&super::certs::dump_script());
    script.push_str("\n[ -z \"$hl_bg\" ] || wait $hl_bg\n");
    if wants.server_facts {
        script.push_str("echo @@sans; cat \"$hl_tmp/sans\" 2>/dev/null\n");
    }
    if node_cmd.is_some() {
        script.push_str("cat \"$hl_tmp/node\" 2>/dev/null\n");
    }
    script.push_str("exit 0\n");
    script
}

/// Everything a refresh reads from a node in one exec: a refresh of many nodes is dominated by SSH round trips
/// (each exec is a channel open, a sudo and a shell), so the probe, the certificates' expiry, the server facts
/// or the agent's load-balancer file and the Node's marks travel in one script instead of four or five.
pub async fn read_node(session: &Session, wants: &ReadWants<'_>) -> Result<NodeRead, K3sError> {
    let out = session
        .run_sudo(&read_script(wants), None)
        .await?
        .stdout_str();
    let s = sections(&out);
    let agent_lb = match s.get("lb") {
        Some(b64) if wants.agent_lb => {
            let raw = decode_b64(b64).unwrap_or_default();
            Some(parse_lb(session.host(), &raw)?)
        }
        _ => None,
    };
    let node = node_read_name(wants).and_then(|name| {
        let answer = if let Some(ok) = s.get("node-ok") {
            super::marks::parse(&decode_b64(ok).unwrap_or_default())
        } else {
            let err = decode_b64(s.get("node-err")?).unwrap_or_default();
            let text = String::from_utf8_lossy(&err);
            let text = text.trim();
            Err(text.lines().last().unwrap_or("kubectl failed").to_string())
        };
        Some((name.to_string(), answer))
    });
    Ok(NodeRead {
        probe: parse_probe(&s),
        certs: super::certs::parse_dump(&out),
        server_facts: wants.server_facts.then(|| parse_facts(&s)),
        agent_lb,
        node,
    })
}

/// Stops and removes k3s in this role (the uninstall script; absent script = already gone).
pub async fn uninstall(session: &Session, role: Role) -> Result<(), K3sError> {
    let s = role.uninstall_script();
    session
        .run_sudo(
            &format!("if [ -x {s} ]; then {s} >/dev/null 2>&1; fi; exit 0"),
            None,
        )
        .await?;
    let left = session
        .exec_sudo(
            &format!("test -e /etc/systemd/system/{}.service", role.unit()),
            None,
        )
        .await?;
    if left.success() {
        return Err(K3sError::Unexpected {
            host: session.host().to_string(),
            detail: format!("{} still exists after running {s}", role.unit()),
        });
    }
    Ok(())
}

/// Rewrites every `server:` entry of a kubeconfig to `server` (line-based: k3s writes a fixed layout).
pub fn rewrite_kubeconfig(text: &str, server: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("server:") {
            if rest.trim().starts_with("https://") {
                let indent = &line[..line.len() - trimmed.len()];
                let nl = if line.ends_with('\n') { "\n" } else { "" };
                out.push_str(&format!("{indent}server: {server}{nl}"));
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

/// Parses `v1.31.5+k3s1` into (major, minor, patch, k3s revision).
pub fn parse_k3s_version(s: &str) -> Option<(u64, u64, u64, u64)> {
    let s = s.strip_prefix('v').unwrap_or(s);
    let (core, rev) = match s.split_once('+') {
        Some((c, r)) => (c, r.strip_prefix("k3s")?.parse().ok()?),
        None => (s, 0),
    };
    let mut it = core.split('.').map(|p| p.parse::<u64>().ok());
    let v = (it.next()??, it.next()??, it.next()??, rev);
    it.next().is_none().then_some(v)
}

/// Whether moving a node from version `from` to `to` is allowed: no downgrade (k3s does not support it) and no
/// skipped minor version (Kubernetes version-skew policy: upgrade one minor at a time).
pub fn check_upgrade(from: &str, to: &str) -> Result<(), String> {
    let (Some(a), Some(b)) = (parse_k3s_version(from), parse_k3s_version(to)) else {
        return Ok(());
    };
    if b < a {
        return Err(format!(
            "Downgrading k3s from {from} to {to} is not supported (k3s and Kubernetes only upgrade). Restore from \
             an etcd snapshot or re-create the node instead."
        ));
    }
    if b.0 != a.0 || b.1 > a.1 + 1 {
        return Err(format!(
            "Upgrading k3s from {from} to {to} skips a minor version; Kubernetes supports one minor at a time. \
             Upgrade to the next minor first."
        ));
    }
    Ok(())
}

/// The first `server:` URL of a kubeconfig.
pub fn kubeconfig_server(text: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix("server:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .find(|v| v.starts_with("https://"))
}

/// The password part of a token (`K10<hash>::server:<pw>` → `<pw>`; a short token is all password).
pub fn token_password(token: &str) -> &str {
    match token.rsplit_once("::") {
        Some((_, rest)) => rest.split_once(':').map(|(_, pw)| pw).unwrap_or(rest),
        None => token,
    }
}

/// The CA hash a secure token pins (`K10<hash>::...`).
pub fn token_ca_hash(token: &str) -> Option<String> {
    let rest = token.strip_prefix("K10")?;
    let (hash, _) = rest.split_once("::")?;
    Some(hash.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_field_three() {
        assert_eq!(
            parse_version("k3s version v1.31.5+k3s1 (56ec5dd4)\ngo version go1.22\n").as_deref(),
            Some("v1.31.5+k3s1")
        );
        assert_eq!(parse_version("sh: k3s: not found"), None);
    }

    #[test]
    fn the_read_script_starts_the_slow_readers_first_and_waits_only_for_them() {
        let wants = ReadWants {
            role: Role::Server,
            server_facts: true,
            agent_lb: false,
            node: Some((super::super::kube::Creds::ServerAdmin, "n1")),
        };
        let s = read_script(&wants);
        let at = |needle: &str| {
            s.find(needle)
                .unwrap_or_else(|| panic!("{needle} missing in {s}"))
        };
        // kubectl and the TLS handshake run in the background while the files are read.
        assert!(at("kubectl") < at("echo @@version"));
        assert!(at("openssl s_client") < at("echo @@version"));
        assert!(at("echo @@version") < at("wait $hl_bg") && at("wait $hl_bg") < at("echo @@sans"));
        // The exit trap removes $hl_tmp: nothing else may assign it (the certificate loop once did, with `d`).
        assert_eq!(s.matches("hl_tmp=").count(), 1, "{s}");
        assert!(s.contains("readonly hl_tmp"));
        // A bare `wait` would also wait for the sudo connection guard, a child of the same shell.
        assert!(
            !s.lines()
                .any(|l| l.trim() == "wait" || l.ends_with("; wait")),
            "{s}"
        );
        // Without a Node to read and without server facts nothing runs in the background.
        let plain = read_script(&ReadWants {
            role: Role::Agent,
            server_facts: false,
            agent_lb: true,
            node: None,
        });
        assert!(
            !plain.contains(" & ") && !plain.contains("kubectl"),
            "{plain}"
        );
    }

    /// On this machine's own `sh` (no k3s here: the readers find nothing): the script ends well, prints its
    /// sections and removes its temp directory, and only that.
    #[test]
    fn the_read_script_cleans_up_only_its_temp_dir() {
        let tmp = std::env::temp_dir().join(format!("homelab-read-{}", std::process::id()));
        std::fs::create_dir_all(tmp.join("keep")).unwrap();
        let wants = ReadWants {
            role: Role::Server,
            server_facts: true,
            agent_lb: true,
            node: Some((super::super::kube::Creds::ServerAdmin, "n1")),
        };
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(read_script(&wants))
            .env("TMPDIR", &tmp)
            .output()
            .unwrap();
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        std::fs::remove_dir_all(&tmp).unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(left, vec![std::ffi::OsString::from("keep")]);
        let s = sections(&String::from_utf8_lossy(&out.stdout));
        for k in ["version", "hostname", "token", "kubeconfig", "sans"] {
            assert!(s.contains_key(k), "{k} missing: {s:?}");
        }
    }

    #[test]
    fn sections_split_on_markers() {
        let s = sections("noise\n@@a\n1\n2\n@@b\n@@c\nx");
        assert_eq!(s["a"], "1\n2\n");
        assert_eq!(s["b"], "");
        assert_eq!(s["c"], "x");
    }

    #[test]
    fn sans_from_openssl() {
        let out = "X509v3 Subject Alternative Name: \n    DNS:kubernetes, DNS:localhost, IP Address:10.43.0.1, IP Address:192.0.2.50\n";
        assert_eq!(
            parse_sans(out),
            vec!["10.43.0.1", "192.0.2.50", "kubernetes", "localhost"]
        );
    }

    #[test]
    fn kubeconfig_server_rewritten_only_on_server_lines() {
        let kc = "clusters:\n- cluster:\n    certificate-authority-data: AAA\n    server: https://127.0.0.1:6443\n  name: default\n";
        let r = rewrite_kubeconfig(kc, "https://192.0.2.50:6443");
        assert!(r.contains("    server: https://192.0.2.50:6443\n"));
        assert!(!r.contains("127.0.0.1"));
        assert!(r.contains("certificate-authority-data: AAA"));
        assert_eq!(
            kubeconfig_server(&r).as_deref(),
            Some("https://192.0.2.50:6443")
        );
    }

    #[test]
    fn upgrades_only_forward_one_minor_at_a_time() {
        assert_eq!(parse_k3s_version("v1.31.5+k3s1"), Some((1, 31, 5, 1)));
        assert_eq!(parse_k3s_version("stable"), None);
        assert!(check_upgrade("v1.31.5+k3s1", "v1.31.6+k3s1").is_ok());
        assert!(check_upgrade("v1.31.5+k3s1", "v1.31.5+k3s2").is_ok());
        assert!(check_upgrade("v1.31.5+k3s1", "v1.32.0+k3s1").is_ok());
        assert!(check_upgrade("v1.31.5+k3s1", "v1.33.0+k3s1").is_err());
        assert!(check_upgrade("v1.31.6+k3s1", "v1.31.5+k3s1").is_err());
    }

    #[test]
    fn token_parts() {
        assert_eq!(token_password("K10abc::server:pw"), "pw");
        assert_eq!(token_password("pw"), "pw");
        assert_eq!(token_ca_hash("K10abc::server:pw").as_deref(), Some("abc"));
        assert_eq!(token_ca_hash("pw"), None);
    }

    #[test]
    fn config_round_trips_and_is_yaml_friendly() {
        let mut c = BTreeMap::new();
        c.insert("cluster-init".to_string(), serde_json::json!(true));
        c.insert("tls-san".to_string(), serde_json::json!(["192.0.2.50"]));
        let raw = render_config(&c);
        assert_eq!(parse_config(&raw), Some(c));
        assert_eq!(
            parse_config(b"token: x\n").and_then(|c| c.get("token").cloned()),
            Some(serde_json::json!("x"))
        );
        assert_eq!(parse_config(b"just a string"), None);
    }

    #[test]
    fn install_env_names_are_restricted() {
        assert!(check_install_env_name("INSTALL_K3S_SIM_ARTIFACTS").is_ok());
        assert!(check_install_env_name("K3S_TOKEN").is_err());
        assert!(check_install_env_name("INSTALL_K3S_EXEC").is_err());
        assert!(check_install_env_name("install_k3s_x").is_err());
    }
}
