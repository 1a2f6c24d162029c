//! What `homelab_k3s_server` and `homelab_k3s_agent` share: the `host` block (how to reach the host over
//! SSH, falling back to the provider's `ssh { }` defaults), the install source attributes, and turning
//! [`K3sError`]s into diagnostics.
//!
//! Host keys are always verified: a pinned `host_key`, or known_hosts content (the resource's or the provider's).
//! There is no silent trust-on-first-use. known_hosts content is written to a file under the temp directory
//! (it is public data) because the SSH layer reads known_hosts from a path.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::framework::*;
use crate::k3s::{check_install_env_name, InstallSource, K3sError};
use crate::ssh::{
    connect_with_retry, Auth, HostConnection, HostKeyPolicy, RetryPolicy, Secret, Session,
};

/// The `host { }` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionModel {
    pub address: Tf<String>,
    pub port: Tf<i64>,
    pub user: Tf<String>,
    pub private_key: Tf<String>,
    pub sudo_password: Tf<String>,
    pub host_key: Tf<String>,
    pub known_hosts: Tf<String>,
}

/// The `host` block schema (exactly one).
pub fn connection_block() -> NestedBlock {
    NestedBlock::single(
        "host",
        Block::new(
            "How to reach the host over SSH. Unset values fall back to the provider's `ssh { }` block. The host \
             key is always verified (pinned `host_key`, or `known_hosts` here or in the provider).",
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
                .description("Pinned host key(s): OpenSSH public-key lines or `SHA256:` fingerprints, one per line."),
        )
        .attribute(
            Attribute::string("known_hosts")
                .optional()
                .description("known_hosts content used to verify the host key (default: the provider's `ssh.known_hosts`)."),
        ),
    )
    .items(1, 1)
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
    let d = ctx
        .provider_opt()
        .map(|p| p.ssh.clone())
        .unwrap_or_default();
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
    let host_key = if let Some(pin) = c.host_key.known() {
        HostKeyPolicy::Pinned(pin.clone())
    } else if let Some(kh) = c.known_hosts.known().cloned().or(d.known_hosts.clone()) {
        HostKeyPolicy::KnownHosts(known_hosts_file(&kh)?)
    } else {
        return Err(Diagnostic::error(
            "No way to verify the host key",
            "Set host.host_key (pinned key) or host.known_hosts, or `known_hosts` in the provider's \
             ssh block. The provider never trusts an unknown host key silently.",
        )
        .at(attr("host"))
        .into());
    };
    let mut conn = HostConnection::new(address, user, auth, host_key);
    if let Some(p) = c
        .port
        .known()
        .and_then(|p| u16::try_from(*p).ok())
        .or(d.port)
    {
        conn.port = p;
    }
    conn.sudo_password = c
        .sudo_password
        .known()
        .map(|s| Secret::new(s.clone()))
        .or(d.sudo_password.as_ref().map(|s| Secret::new(s.expose())));
    conn.connect_timeout = Duration::from_secs(15);
    Ok(conn)
}

/// Opens a session (with bounded retries for transient failures).
pub async fn connect(ctx: &Context, c: Option<&ConnectionModel>) -> Result<Session, Diagnostics> {
    let conn = host_connection(ctx, c)?;
    let policy = RetryPolicy {
        attempts: 3,
        ..RetryPolicy::default()
    };
    connect_with_retry(&conn, &policy, ctx.cancellation())
        .await
        .map_err(|e| {
            Diagnostic::error(
                "Cannot connect to the host",
                format!("{e}. The resource is kept in state; fix connectivity and retry."),
            )
            .into()
        })
}

/// A k3s error as a diagnostic.
pub fn k3s_diag(summary: &str, e: K3sError) -> Diagnostics {
    Diagnostic::error(summary, e.to_string()).into()
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

/// Builds the install source from the flat attributes.
pub fn install_source(
    script: &Tf<String>,
    url: &Tf<String>,
    env: &Tf<BTreeMap<String, String>>,
    binary_path: &Tf<String>,
) -> Result<InstallSource, Diagnostics> {
    let binary = match binary_path.known() {
        Some(p) => Some(std::fs::read(p).map_err(|e| {
            Diagnostics::from(
                Diagnostic::error(
                    "Cannot read the air-gap binary",
                    format!("Reading {p}: {e}"),
                )
                .at(attr("airgap_binary_path")),
            )
        })?),
        None => None,
    };
    Ok(InstallSource {
        script: script.known().map(|s| s.as_bytes().to_vec()),
        script_url: url.known().cloned(),
        binary,
        env: env.known().cloned().unwrap_or_default(),
    })
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

/// The unit-poll deadline for an operation limit: leave time for the journal diagnostic.
pub fn ready_budget(limit: Duration) -> Duration {
    limit
        .saturating_sub(Duration::from_secs(15))
        .max(Duration::from_secs(10))
}
