//! What `homelab_k3s_server` and `homelab_k3s_agent` share: the `host` block (how to reach the host over
//! SSH, falling back to the provider's `ssh { }` defaults), the install source attributes, and turning
//! [`K3sError`]s into diagnostics.
//!
//! Host keys are always verified: a pinned `host_key`, or known_hosts content (the resource's or the provider's).
//! Trust-on-first-use happens only when asked for (`trust_on_first_use = true` on the block or in the provider),
//! and the key learnt on that first connection is pinned in state: `host_key` is optional *and* computed, so a
//! create plans it unknown, the apply fills it with what the host presented, and every later connection (refresh,
//! update, destroy) verifies against it. A host whose key changed afterwards fails with a diagnostic that says so.
//!
//! How the learnt key reaches state without every resource having to copy it: [`connect`] records it in the
//! block's model ([`ConnectionModel::learned`], shared by clones), and the model serialises an *unknown*
//! `host_key` as that key (or as null when the connection needed no pinning). A null `host_key` becomes the key
//! only when it was trusted on first use, which happens on a refresh (an imported node; the schema-driven plan
//! never leaves a changing object's `host_key` null, so applies only ever see unknown or known values). A known
//! value (configuration, prior state) is never touched, so plans stay consistent.
//!
//! The bastion (jump host) comes from the block's `bastion_*` attributes, else from the provider's; an empty
//! `bastion_host` on the block means "connect directly" even when the provider has a default. The bastion's own
//! host key is verified by `bastion_host_key` or known_hosts; it is never trusted on first use (there is no state
//! to pin it in). known_hosts content is written to a file under the temp directory (it is public data) because
//! the SSH layer reads known_hosts from a path.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::framework::*;
use crate::k3s::{check_install_env_name, Failure, Input, InstallSource, K3sError, Report};
use crate::provider::ProviderData;
use crate::provider::SshDefaults;
use crate::ssh::{
    connect_with_retry, Auth, HostConnection, HostKeyPolicy, RetryPolicy, Secret, Session, SshError,
};

/// SSH keepalive interval of resource connections: a link that died mid-command is noticed after about three
/// intervals, so an apply fails within ~15 s instead of hanging until the command's own timeout.
pub const KEEPALIVE: Duration = Duration::from_secs(5);

/// What a connection learnt about the host key, shared by the clones of one [`ConnectionModel`].
///
/// `None`: no connection yet (leave an unknown `host_key` unknown). `Some(None)`: connected, nothing to pin (the
/// key was pinned or verified by known_hosts). `Some(Some(line))`: trusted on first use, pin `line`.
#[derive(Debug, Clone, Default)]
pub struct LearnedHostKey(Arc<Mutex<Option<Option<String>>>>);

impl LearnedHostKey {
    fn set(&self, v: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
    }
    fn get(&self) -> Option<Option<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl PartialEq for LearnedHostKey {
    /// Bookkeeping, not part of the value.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The `host { }` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(into = "ConnectionWire")]
pub struct ConnectionModel {
    pub address: Tf<String>,
    pub port: Tf<i64>,
    pub user: Tf<String>,
    pub private_key: Tf<String>,
    pub sudo_password: Tf<String>,
    pub host_key: Tf<String>,
    pub known_hosts: Tf<String>,
    pub trust_on_first_use: Tf<bool>,
    pub bastion_host: Tf<String>,
    pub bastion_port: Tf<i64>,
    pub bastion_user: Tf<String>,
    pub bastion_private_key: Tf<String>,
    pub bastion_host_key: Tf<String>,
    /// Filled by [`connect`]; see the module docs.
    #[serde(skip)]
    pub learned: LearnedHostKey,
}

/// The serialised form of [`ConnectionModel`]: the same attributes, with an unknown `host_key` resolved from what
/// the connection learnt.
#[derive(Serialize)]
struct ConnectionWire {
    address: Tf<String>,
    port: Tf<i64>,
    user: Tf<String>,
    private_key: Tf<String>,
    sudo_password: Tf<String>,
    host_key: Tf<String>,
    known_hosts: Tf<String>,
    trust_on_first_use: Tf<bool>,
    bastion_host: Tf<String>,
    bastion_port: Tf<i64>,
    bastion_user: Tf<String>,
    bastion_private_key: Tf<String>,
    bastion_host_key: Tf<String>,
}

impl From<ConnectionModel> for ConnectionWire {
    fn from(m: ConnectionModel) -> Self {
        let host_key = match (&m.host_key, m.learned.get()) {
            (Tf::Unknown, Some(learned)) => Tf::from(learned),
            // A refresh of an imported node: nothing pinned yet, the key was trusted on first use now.
            (Tf::Null, Some(Some(key))) => Tf::Known(key),
            _ => m.host_key,
        };
        ConnectionWire {
            address: m.address,
            port: m.port,
            user: m.user,
            private_key: m.private_key,
            sudo_password: m.sudo_password,
            host_key,
            known_hosts: m.known_hosts,
            trust_on_first_use: m.trust_on_first_use,
            bastion_host: m.bastion_host,
            bastion_port: m.bastion_port,
            bastion_user: m.bastion_user,
            bastion_private_key: m.bastion_private_key,
            bastion_host_key: m.bastion_host_key,
        }
    }
}

/// The `host` block schema (exactly one).
pub fn connection_block() -> NestedBlock {
    NestedBlock::single(
        "host",
        Block::new(
            "How to reach the host over SSH. Unset values fall back to the provider's `ssh { }` block. The host \
             key is always verified: pinned `host_key`, or `known_hosts` here or in the provider; trust on first \
             use only with `trust_on_first_use = true`, and then the learnt key is pinned in state.",
        )
        .attribute(
            Attribute::string("address")
                .required()
                .validate(Validator::not_empty())
                .description("Host name or IP address of the node. Changing it replaces the resource."),
        )
        .attribute(
            Attribute::number("port")
                .optional()
                .validate(Validator::int_between(1, 65535))
                .description("SSH port (default: provider `ssh.port`, else 22)."),
        )
        .attribute(
            Attribute::string("user")
                .optional()
                .description("Login user (default: provider `ssh.user`, else `root`). Non-root users use sudo."),
        )
        .attribute(
            Attribute::string("private_key")
                .optional()
                .sensitive()
                .description("Private key (OpenSSH/PEM content, e.g. `file(...)`). Default: the provider's, else the SSH agent."),
        )
        .attribute(
            Attribute::string("sudo_password")
                .optional()
                .sensitive()
                .description("Password for sudo (sent on stdin, never on a command line)."),
        )
        .attribute(
            Attribute::string("host_key")
                .optional()
                .computed()
                .use_state_for_unknown()
                .description(
                    "Pinned host key(s): OpenSSH public-key lines or `SHA256:` fingerprints, one per line. When \
                     unset and the key was trusted on first use, the key the host presented is recorded here \
                     (and verified on every later connection); otherwise it stays null.",
                ),
        )
        .attribute(
            Attribute::string("known_hosts")
                .optional()
                .description("known_hosts content used to verify the host key (default: the provider's `ssh.known_hosts`)."),
        )
        .attribute(Attribute::bool("trust_on_first_use").optional().description(
            "Accept the key the host presents on the first connection when neither `host_key` nor known_hosts \
             (here or in the provider) can verify it, and pin it in state (`host_key`). Default: the \
             provider's `ssh.trust_on_first_use`, else `false`.",
        ))
        .attribute(Attribute::string("bastion_host").optional().description(
            "Jump host (`host` or `host:port`) to reach this host through. Default: the provider's \
             `ssh.bastion_host`; `\"\"` connects directly even when the provider sets one.",
        ))
        .attribute(
            Attribute::number("bastion_port")
                .optional()
                .validate(Validator::int_between(1, 65535))
                .description("Jump host SSH port (default: provider `ssh.bastion_port`, else 22)."),
        )
        .attribute(Attribute::string("bastion_user").optional().description(
            "Jump host login user (default: provider `ssh.bastion_user`, else this block's user).",
        ))
        .attribute(
            Attribute::string("bastion_private_key")
                .optional()
                .sensitive()
                .description(
                    "Jump host private key (default: provider `ssh.bastion_private_key`, else this block's key).",
                ),
        )
        .attribute(Attribute::string("bastion_host_key").optional().description(
            "Pinned host key(s) of the jump host (default: provider `ssh.bastion_host_key`, else known_hosts). \
             A jump host is never trusted on first use.",
        )),
    )
    .items(1, 1)
}

/// A repeated block of `host`-like connections (e.g. the servers a restore rejoins), in order.
pub fn connection_list_block(name: &str, description: &str) -> NestedBlock {
    let mut block = connection_block().block;
    block.description = description.to_string();
    NestedBlock::list(name, block)
}

fn known_hosts_file(content: &str) -> Result<PathBuf, Diagnostics> {
    let mut h = DefaultHasher::new();
    content.hash(&mut h);
    let path = std::env::temp_dir().join(format!("homelab-known-hosts-{:016x}", h.finish()));
    if path.is_file() {
        return Ok(path);
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, content)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| {
            Diagnostic::error(
                "Cannot prepare known_hosts",
                format!("Writing the known_hosts content to {}: {e}", path.display()),
            )
        })?;
    Ok(path)
}

/// Splits `host:port` (or `[v6]:port`); a bare host (or an unbracketed IPv6 literal) has no port.
fn split_host_port(s: &str) -> (String, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (h.to_string(), port);
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_string(), Some(port)),
            Err(_) => (s.to_string(), None),
        },
        _ => (s.to_string(), None),
    }
}

fn known_str(t: &Tf<String>) -> Option<String> {
    t.known().cloned()
}

fn known_port(t: &Tf<i64>) -> Option<u16> {
    t.known().and_then(|p| u16::try_from(*p).ok())
}

/// The jump host connection, if any (block values first, then the provider's).
fn bastion_connection(
    c: &ConnectionModel,
    d: &SshDefaults,
    user: &str,
    auth: &Auth,
) -> Result<Option<HostConnection>, Diagnostics> {
    let spec = match known_str(&c.bastion_host) {
        Some(h) if h.trim().is_empty() => return Ok(None),
        Some(h) => h,
        None => match &d.bastion_host {
            Some(h) if !h.trim().is_empty() => h.clone(),
            _ => return Ok(None),
        },
    };
    let (address, port_in_spec) = split_host_port(spec.trim());
    let port = known_port(&c.bastion_port)
        .or(port_in_spec)
        .or(d.bastion_port)
        .unwrap_or(22);
    let b_user = known_str(&c.bastion_user)
        .or(d.bastion_user.clone())
        .unwrap_or_else(|| user.to_string());
    let b_auth = match known_str(&c.bastion_private_key).or(d
        .bastion_private_key
        .as_ref()
        .map(|s| s.expose().to_string()))
    {
        Some(key) => Auth::PrivateKey {
            key: Secret::new(key),
            passphrase: None,
        },
        None => auth.clone(),
    };
    let policy = if let Some(pin) = known_str(&c.bastion_host_key).or(d.bastion_host_key.clone()) {
        HostKeyPolicy::Pinned(pin)
    } else if let Some(kh) = known_str(&c.known_hosts).or(d.known_hosts.clone()) {
        HostKeyPolicy::KnownHosts(known_hosts_file(&kh)?)
    } else {
        return Err(Diagnostic::error(
            "No way to verify the bastion's host key",
            format!(
                "The jump host {address} needs `bastion_host_key` (in the host block or the provider's ssh \
                 block) or known_hosts content that lists it. A jump host is never trusted on first use."
            ),
        )
        .at(attr("host"))
        .into());
    };
    let mut b = HostConnection::new(address, b_user, b_auth, policy);
    b.port = port;
    b.connect_timeout = Duration::from_secs(15);
    b.keepalive = Some(KEEPALIVE);
    Ok(Some(b))
}

/// Resolves the SSH connection from the block and the provider defaults.
pub fn host_connection(
    ctx: &Context,
    c: Option<&ConnectionModel>,
) -> Result<HostConnection, Diagnostics> {
    let Some(c) = c else {
        return Err(Diagnostic::error(
            "Missing host block",
            "Add a `host { address = ... }` block.",
        )
        .into());
    };
    let d = ProviderData::of_opt(ctx)
        .map(|p| p.ssh.clone())
        .unwrap_or_default();
    resolve_connection(c, &d)
}

/// [`host_connection`] on explicit provider defaults.
pub fn resolve_connection(
    c: &ConnectionModel,
    d: &SshDefaults,
) -> Result<HostConnection, Diagnostics> {
    let address = c.address.known().cloned().ok_or_else(|| {
        Diagnostics::from(Diagnostic::error(
            "Unknown host address",
            "host.address must be known to connect.",
        ))
    })?;
    let user = c
        .user
        .known()
        .cloned()
        .or(d.user.clone())
        .unwrap_or_else(|| "root".into());
    let auth = match c
        .private_key
        .known()
        .cloned()
        .or(d.private_key.as_ref().map(|s| s.expose().to_string()))
    {
        Some(key) => Auth::PrivateKey {
            key: Secret::new(key),
            passphrase: None,
        },
        None => Auth::Agent { socket: None },
    };
    // The most specific setting wins: a pin, then the block's known_hosts, the block's TOFU, the provider's
    // known_hosts, the provider's TOFU.
    let host_key = if let Some(pin) = c.host_key.known().filter(|p| !p.trim().is_empty()) {
        HostKeyPolicy::Pinned(pin.clone())
    } else if let Some(kh) = known_str(&c.known_hosts) {
        HostKeyPolicy::KnownHosts(known_hosts_file(&kh)?)
    } else if c.trust_on_first_use.known() == Some(&true) {
        HostKeyPolicy::TrustOnFirstUse
    } else if let Some(kh) = d.known_hosts.clone() {
        HostKeyPolicy::KnownHosts(known_hosts_file(&kh)?)
    } else if d.trust_on_first_use == Some(true) && c.trust_on_first_use.known() != Some(&false) {
        HostKeyPolicy::TrustOnFirstUse
    } else {
        return Err(Diagnostic::error(
            "No way to verify the host key",
            "Set host.host_key (pinned key) or host.known_hosts, or `known_hosts` in the provider's \
             ssh block, or explicitly allow `trust_on_first_use` (the learnt key is then pinned in state). The \
             provider never trusts an unknown host key silently.",
        )
        .at(attr("host"))
        .into());
    };
    let bastion = bastion_connection(c, d, &user, &auth)?;
    let mut conn = HostConnection::new(address, user, auth, host_key);
    if let Some(p) = known_port(&c.port).or(d.port) {
        conn.port = p;
    }
    conn.sudo_password = c
        .sudo_password
        .known()
        .map(|s| Secret::new(s.clone()))
        .or(d.sudo_password.as_ref().map(|s| Secret::new(s.expose())));
    conn.connect_timeout = Duration::from_secs(15);
    conn.keepalive = Some(KEEPALIVE);
    conn.bastion = bastion.map(Box::new);
    Ok(conn)
}

/// The diagnostic of a failed connection.
fn connect_diag(e: &SshError) -> Diagnostics {
    let (summary, advice) = match e {
        SshError::HostKeyMismatch { .. } => (
            "Host key verification failed",
            "This can mean a man-in-the-middle. A key trusted on first use is pinned in state (host.host_key); \
             to accept a new key on purpose, set `host.host_key` to it in the configuration.",
        ),
        SshError::HostKeyUnknown { .. } => (
            "Host key verification failed",
            "Add the host to known_hosts, pin `host.host_key`, or explicitly allow `trust_on_first_use`.",
        ),
        _ => (
            "Cannot connect to the host",
            "The resource is kept in state; fix connectivity and retry.",
        ),
    };
    Diagnostic::error(summary, format!("{e}. {advice}")).into()
}

/// Opens a session (with bounded retries for transient failures). With trust on first use, the key the host
/// presented is recorded in the block's model so that it is pinned in state (see the module docs).
pub async fn connect(ctx: &Context, c: Option<&ConnectionModel>) -> Result<Session, Diagnostics> {
    let conn = host_connection(ctx, c)?;
    let policy = RetryPolicy {
        attempts: 3,
        ..RetryPolicy::default()
    };
    let session = connect_with_retry(&conn, &policy, ctx.cancellation())
        .await
        .map_err(|e| connect_diag(&e))?;
    if let Some(c) = c {
        if matches!(conn.host_key, HostKeyPolicy::TrustOnFirstUse) {
            c.learned.set(Some(session.host_key_openssh()));
            if !c.host_key.is_known() {
                tracing::info!(
                    host = %session.host(),
                    fingerprint = %session.host_key_fingerprint(),
                    "host key trusted on first use; pinned in state"
                );
                ctx.warn(
                    "Host key trusted on first use",
                    format!(
                        "{} presented {}; it is now pinned in state (host.host_key) and verified on every later \
                         connection.",
                        session.host(),
                        session.host_key_fingerprint()
                    ),
                );
            }
        } else {
            c.learned.set(None);
        }
    }
    Ok(session)
}

/// A k3s error as a diagnostic.
pub fn k3s_diag(summary: &str, e: K3sError) -> Diagnostics {
    Diagnostic::error(summary, e.to_string()).into()
}

/// A k3s sequence's failure as a diagnostic, on the attribute of the input it concerns (server and agent name
/// their inputs alike).
pub fn failure_diag(f: Failure) -> Diagnostics {
    let d = Diagnostic::error(f.summary, f.detail);
    let d = match f.input {
        None => d,
        Some(Input::ServerUrl) => d.at(attr("server_url")),
        Some(Input::AllowDatastoreMigration) => d.at(attr("allow_datastore_migration")),
        Some(Input::TlsSan) => d.at(attr("tls_san")),
        Some(Input::AirgapBinary) => d.at(attr("airgap_binary_path")),
        Some(Input::Version) => d.at(attr("version")),
        Some(Input::SnapshotBeforeChanges) => d.at(attr("snapshot_before_changes")),
        Some(Input::Snapshot) => d.at(attr("snapshot")),
        Some(Input::RestoreRejoin) => d.at(attr("rejoin")),
        Some(Input::Token) => d.at(attr("token")),
        Some(Input::NodeLabels) => d.at(attr("node_labels")),
        Some(Input::NodeTaints) => d.at(attr("node_taints")),
    };
    d.into()
}

/// The sequences' warnings become the operation's Terraform warnings.
impl Report for Context {
    fn warn(&self, summary: &str, detail: String) {
        Context::warn(self, summary, detail);
    }
}

/// The install-source attributes (flat, shared by server and agent).
pub fn install_attributes(schema: Schema) -> Schema {
    schema
        .attribute(Attribute::string("install_script").optional().description(
            "Content of the k3s install script to upload (e.g. `file(\"install.sh\")`). Unset: the host downloads \
             `install_script_url` with curl.",
        ))
        .attribute(Attribute::string("install_script_url").optional().description(
            "URL the host downloads the install script from when `install_script` is unset. Default \
             `https://get.k3s.io`.",
        ))
        .attribute(
            Attribute::map("install_env", Type::String)
                .optional()
                .validate(Validator::new(
                    "INSTALL_K3S_* variable names",
                    |v, path, diags| {
                        if let Value::Map(m) = v {
                            for k in m.keys() {
                                if let Err(fix) = check_install_env_name(k) {
                                    diags.push(
                                        Diagnostic::error("Invalid install_env key", fix)
                                            .at(path.clone()),
                                    );
                                }
                            }
                        }
                    },
                ))
                .description(
                    "Extra non-secret `INSTALL_K3S_*` variables for the install script (e.g. a mirror). Never \
                     put secrets here: the token goes into config.yaml.",
                ),
        )
        .attribute(Attribute::string("airgap_binary_path").optional().description(
            "Path (where Terraform runs) of a k3s binary to upload to the host instead of downloading it \
             (air-gap install, `INSTALL_K3S_SKIP_DOWNLOAD=true`).",
        ))
}

/// Builds the install source from the flat attributes (the air-gap binary is read only if an install runs).
pub fn install_source(
    script: &Tf<String>,
    url: &Tf<String>,
    env: &Tf<BTreeMap<String, String>>,
    binary_path: &Tf<String>,
) -> InstallSource {
    InstallSource {
        script: script.known().map(|s| s.as_bytes().to_vec()),
        script_url: url.known().cloned(),
        binary_path: binary_path.known().map(PathBuf::from),
        env: env.known().cloned().unwrap_or_default(),
    }
}

/// A list attribute read back from the host, keeping the user's null where the host has nothing.
pub fn list_back(host: Vec<String>, prior: &Tf<Vec<String>>) -> Tf<Vec<String>> {
    if host.is_empty() && !matches!(prior, Tf::Known(v) if !v.is_empty()) {
        return prior.clone();
    }
    Tf::Known(host)
}

/// The strings of a config value (a string or a list of strings).
pub fn strings_of(v: Option<&serde_json::Value>) -> Vec<String> {
    match v {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(serde_json::Value::String(s)) => vec![s.clone()],
        Some(serde_json::Value::Null) | None => vec![],
        Some(other) => vec![other.to_string()],
    }
}

/// Known list or empty.
pub fn list_or_empty(t: &Tf<Vec<String>>) -> Vec<String> {
    t.known().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec;
    use crate::secret::Secret as ProviderSecret;

    fn block(address: &str) -> ConnectionModel {
        ConnectionModel {
            address: Tf::Known(address.into()),
            ..Default::default()
        }
    }

    const PIN: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKFbE8e4ST2Y/PCLIYxgI7UOaiMYcyfeR+AuPmoes1VA";

    #[test]
    fn host_key_policy_precedence_and_no_silent_tofu() {
        let d = SshDefaults::default();
        let e = resolve_connection(&block("h"), &d).unwrap_err();
        assert!(e
            .iter()
            .next()
            .unwrap()
            .summary
            .contains("No way to verify"));

        let mut c = block("h");
        c.trust_on_first_use = Tf::Known(true);
        let conn = resolve_connection(&c, &d).unwrap();
        assert!(matches!(conn.host_key, HostKeyPolicy::TrustOnFirstUse));
        assert_eq!(conn.keepalive, Some(KEEPALIVE));

        // A key pinned in state (after TOFU) wins over the TOFU flag.
        c.host_key = Tf::Known(PIN.into());
        assert!(matches!(
            resolve_connection(&c, &d).unwrap().host_key,
            HostKeyPolicy::Pinned(p) if p == PIN
        ));

        // Block TOFU beats provider known_hosts; provider TOFU does not beat provider known_hosts.
        let d = SshDefaults {
            known_hosts: Some("h ssh-ed25519 AAAA\n".into()),
            trust_on_first_use: Some(true),
            ..Default::default()
        };
        let mut c = block("h");
        assert!(matches!(
            resolve_connection(&c, &d).unwrap().host_key,
            HostKeyPolicy::KnownHosts(_)
        ));
        c.trust_on_first_use = Tf::Known(true);
        assert!(matches!(
            resolve_connection(&c, &d).unwrap().host_key,
            HostKeyPolicy::TrustOnFirstUse
        ));
        // Provider TOFU alone applies unless the block says false.
        let d = SshDefaults {
            trust_on_first_use: Some(true),
            ..Default::default()
        };
        assert!(matches!(
            resolve_connection(&block("h"), &d).unwrap().host_key,
            HostKeyPolicy::TrustOnFirstUse
        ));
        let mut c = block("h");
        c.trust_on_first_use = Tf::Known(false);
        assert!(resolve_connection(&c, &d).is_err());
    }

    #[test]
    fn bastion_defaults_from_the_provider_and_block_overrides() {
        let d = SshDefaults {
            user: Some("debian".into()),
            private_key: Some(ProviderSecret::new("KEY")),
            bastion_host: Some("jump.lan:2222".into()),
            bastion_host_key: Some(PIN.into()),
            ..Default::default()
        };
        let mut c = block("10.0.0.5");
        c.host_key = Tf::Known(PIN.into());
        let conn = resolve_connection(&c, &d).unwrap();
        let b = conn.bastion.as_deref().expect("provider bastion ignored");
        assert_eq!((b.address.as_str(), b.port), ("jump.lan", 2222));
        assert_eq!(b.user, "debian");
        assert!(matches!(&b.auth, Auth::PrivateKey { key, .. } if key.expose() == "KEY"));
        assert!(matches!(&b.host_key, HostKeyPolicy::Pinned(p) if p == PIN));
        assert!(b.bastion.is_none());

        // Block values win; bastion_port beats the port in the spec.
        c.bastion_user = Tf::Known("jumper".into());
        c.bastion_port = Tf::Known(22022);
        c.bastion_private_key = Tf::Known("JKEY".into());
        let conn = resolve_connection(&c, &d).unwrap();
        let b = conn.bastion.as_deref().unwrap();
        assert_eq!((b.user.as_str(), b.port), ("jumper", 22022));
        assert!(matches!(&b.auth, Auth::PrivateKey { key, .. } if key.expose() == "JKEY"));

        // An empty bastion_host on the block means direct.
        c.bastion_host = Tf::Known(String::new());
        assert!(resolve_connection(&c, &d).unwrap().bastion.is_none());

        // A bastion whose key cannot be verified is refused (never TOFU).
        let d = SshDefaults {
            bastion_host: Some("jump".into()),
            trust_on_first_use: Some(true),
            ..Default::default()
        };
        let e = resolve_connection(&block("h"), &d).unwrap_err();
        assert!(e.iter().next().unwrap().summary.contains("bastion"));
    }

    #[test]
    fn host_port_split() {
        assert_eq!(split_host_port("a:22"), ("a".into(), Some(22)));
        assert_eq!(split_host_port("a"), ("a".into(), None));
        assert_eq!(split_host_port("[::1]:2200"), ("::1".into(), Some(2200)));
        assert_eq!(split_host_port("fe80::1"), ("fe80::1".into(), None));
    }

    #[test]
    fn an_unknown_host_key_serialises_as_what_the_connection_learnt() {
        let ty = connection_block().block.value_type();
        let mut c = block("h");
        c.host_key = Tf::Unknown;
        // Before any connection (plan time): stays unknown.
        let v = codec::to_value(&c, &ty).unwrap();
        assert!(v.get("host_key").unwrap().is_unknown());
        // A clone shares what is learnt (resources clone models around).
        let copy = c.clone();
        c.learned.set(None);
        let v = codec::to_value(&copy, &ty).unwrap();
        assert!(v.get("host_key").unwrap().is_null());
        c.learned.set(Some(PIN.into()));
        let back: ConnectionModel =
            codec::from_value(&codec::to_value(&copy, &ty).unwrap()).unwrap();
        assert_eq!(back.host_key, Tf::Known(PIN.into()));
        // Known and null values are never rewritten.
        let mut known = block("h");
        known.host_key = Tf::Known("SHA256:x".into());
        known.learned.set(Some(PIN.into()));
        let back: ConnectionModel =
            codec::from_value(&codec::to_value(&known, &ty).unwrap()).unwrap();
        assert_eq!(back.host_key, Tf::Known("SHA256:x".into()));
        // Null (a refresh after import): pinned only when trusted on first use.
        let null = block("h");
        null.learned.set(None);
        let v = codec::to_value(&null, &ty).unwrap();
        assert!(v.get("host_key").unwrap().is_null());
        null.learned.set(Some(PIN.into()));
        let back: ConnectionModel =
            codec::from_value(&codec::to_value(&null, &ty).unwrap()).unwrap();
        assert_eq!(back.host_key, Tf::Known(PIN.into()));
    }
}
