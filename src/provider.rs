//! The provider's own configuration: `provider "homelab" { opnsense { ... } ssh { ... } }`.
//!
//! Both blocks are optional (at most one each): a configuration that manages only k3s hosts needs no OPNsense
//! credentials and vice versa. OPNsense settings fall back to the environment variables the de facto OPNsense
//! provider uses (`OPNSENSE_URI`, `OPNSENSE_API_KEY`, `OPNSENSE_API_SECRET`, `OPNSENSE_ALLOW_INSECURE`), so
//! secrets can stay out of `.tf` files and both providers can share one environment.
//!
//! Terraform may configure the provider with values that are unknown during plan (a URL taken from another
//! resource). Validation skips unknowns; configuration records that a value was unknown and resources that need
//! it get a clear error only if they actually call the API during that plan.
//!
//! A wrong CA or API secret cannot heal by retrying, so configure checks them once, with one authenticated call,
//! when an `opnsense` block is configured and fully known (see `check_opnsense`): the user gets ONE error on the
//! setting to fix instead of a retried error per resource, and the call's answer (the versions) is kept.
//!
//! Configure resolves the `opnsense` block straight into the client's [`ClientConfig`] (one type, nothing copied
//! field by field). Secrets (`api_secret`, `private_key`, `sudo_password`) are held in the crate's one
//! [`Secret`], whose `Debug` is redacted and which is wiped on drop; they never appear in diagnostics or logs.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::framework::{
    attr, parse_duration, Attribute, Block, Context, Diagnostic, Diagnostics, NestedBlock, PathExt,
    Schema, Tf, Validator,
};
use crate::opnsense::ClientConfig;
use crate::secret::Secret;

/// Default OPNsense API timeout.
pub const DEFAULT_OPNSENSE_TIMEOUT: Duration = Duration::from_secs(30);

/// SSH defaults for hosts (used by the k3s resources; each resource may override them).
#[derive(Clone, Debug, Default)]
pub struct SshDefaults {
    /// Login user.
    pub user: Option<String>,
    /// Port (default 22 when unset).
    pub port: Option<u16>,
    /// Private key (OpenSSH or PEM format).
    pub private_key: Option<Secret>,
    /// Use the SSH agent (`SSH_AUTH_SOCK`).
    pub agent: Option<bool>,
    /// known_hosts content used to verify host keys.
    pub known_hosts: Option<String>,
    /// Password for `sudo` on the hosts.
    pub sudo_password: Option<Secret>,
    /// Jump host.
    pub bastion_host: Option<String>,
    /// Jump host port.
    pub bastion_port: Option<u16>,
    /// Jump host user.
    pub bastion_user: Option<String>,
    /// Jump host private key (defaults to `private_key`).
    pub bastion_private_key: Option<Secret>,
    /// Pinned host key(s) of the jump host.
    pub bastion_host_key: Option<String>,
    /// Trust a host's key on first use (then pinned in state) when nothing else verifies it.
    pub trust_on_first_use: Option<bool>,
}

/// Why the OPNsense settings are not available.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpnsenseStatus {
    /// Fully known.
    Ready,
    /// Neither configuration nor environment gave a URL/credentials.
    NotConfigured,
    /// Some setting was unknown when Terraform configured the provider (plan-time dependency).
    Unknown,
}

/// What resources receive after `ConfigureProvider`.
pub struct ProviderData {
    /// Terraform's version, as reported by Terraform.
    pub terraform_version: String,
    /// OPNsense settings, when [`OpnsenseStatus::Ready`].
    opnsense: Option<ClientConfig>,
    opnsense_status: OpnsenseStatus,
    /// SSH defaults (unknown values are left unset).
    pub ssh: SshDefaults,
    cache: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl fmt::Debug for ProviderData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderData")
            .field("terraform_version", &self.terraform_version)
            .field("opnsense", &self.opnsense)
            .field("opnsense_status", &self.opnsense_status)
            .field("ssh", &self.ssh)
            .finish_non_exhaustive()
    }
}

impl ProviderData {
    /// This provider's configured data in an operation's context, or a diagnostic saying why there is none.
    pub fn of(ctx: &Context) -> Result<&ProviderData, Diagnostics> {
        ctx.data::<ProviderData>().ok_or_else(|| {
            Diagnostic::error(
                "Provider not configured",
                "The homelab provider has not been configured yet, or its configuration depends on values \
                 that are only known after apply. Apply the resources it depends on first \
                 (`terraform apply -target=...`), or set the provider configuration statically.",
            )
            .into()
        })
    }

    /// This provider's configured data, if configured.
    pub fn of_opt(ctx: &Context) -> Option<&ProviderData> {
        ctx.data::<ProviderData>()
    }

    /// Provider data from parts (tests and the configure step).
    pub fn new(
        terraform_version: impl Into<String>,
        opnsense: Result<ClientConfig, OpnsenseStatus>,
        ssh: SshDefaults,
    ) -> Self {
        let (opnsense, opnsense_status) = match opnsense {
            Ok(c) => (Some(c), OpnsenseStatus::Ready),
            Err(s) => (None, s),
        };
        Self {
            terraform_version: terraform_version.into(),
            opnsense,
            opnsense_status,
            ssh,
            cache: Mutex::default(),
        }
    }

    /// The OPNsense settings, or an error diagnostic explaining how to provide them.
    pub fn opnsense(&self) -> Result<&ClientConfig, Diagnostics> {
        match (&self.opnsense, &self.opnsense_status) {
            (Some(c), _) => Ok(c),
            (None, OpnsenseStatus::Unknown) => Err(Diagnostic::error(
                "OPNsense connection settings are not known yet",
                "The provider's `opnsense` block depends on values that are only known after apply. Apply \
                 the resources it depends on first (`terraform apply -target=...`), set the values \
                 statically, or use the OPNSENSE_URI / OPNSENSE_API_KEY / OPNSENSE_API_SECRET environment \
                 variables.",
            )
            .at(attr("opnsense"))
            .into()),
            (None, _) => Err(Diagnostic::error(
                "OPNsense is not configured",
                "This resource talks to the OPNsense API. Add an `opnsense { url = ..., api_key = ..., \
                 api_secret = ... }` block to the `provider \"homelab\"` configuration, or set the \
                 OPNSENSE_URI, OPNSENSE_API_KEY and OPNSENSE_API_SECRET environment variables.",
            )
            .into()),
        }
    }

    /// Whether OPNsense settings are known, missing or unknown.
    pub fn opnsense_status(&self) -> &OpnsenseStatus {
        &self.opnsense_status
    }

    /// A per-provider-process singleton (e.g. the OPNsense client), built on first use by `init`.
    pub fn cached<T: Send + Sync + 'static>(
        &self,
        init: impl FnOnce(&ProviderData) -> Result<T, Diagnostics>,
    ) -> Result<Arc<T>, Diagnostics> {
        let key = TypeId::of::<T>();
        if let Some(v) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            if let Ok(t) = v.downcast::<T>() {
                return Ok(t);
            }
        }
        let value = Arc::new(init(self)?);
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, value.clone());
        }
        Ok(value)
    }

    /// The value [`ProviderData::cached`] made for `T`, if any was made yet in this provider process.
    pub fn cached_existing<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let v = self.cache.lock().ok()?.get(&TypeId::of::<T>()).cloned()?;
        v.downcast::<T>().ok()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Schema and model

/// The `opnsense` block model.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct OpnsenseModel {
    /// URL.
    pub url: Tf<String>,
    /// API key.
    pub api_key: Tf<String>,
    /// API secret.
    pub api_secret: Tf<String>,
    /// CA bundle.
    pub ca_cert_pem: Tf<String>,
    /// Skip TLS verification.
    pub insecure_skip_verify: Tf<bool>,
    /// Timeout.
    pub timeout: Tf<String>,
    /// `secondary { }`: the HA peer (same fields; only in the primary's block).
    #[serde(default)]
    pub secondary: Option<Box<OpnsenseModel>>,
}

/// The `ssh` block model.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SshModel {
    /// User.
    pub user: Tf<String>,
    /// Port.
    pub port: Tf<i64>,
    /// Private key.
    pub private_key: Tf<String>,
    /// Agent.
    pub agent: Tf<bool>,
    /// known_hosts content.
    pub known_hosts: Tf<String>,
    /// sudo password.
    pub sudo_password: Tf<String>,
    /// Bastion host.
    pub bastion_host: Tf<String>,
    /// Bastion port.
    pub bastion_port: Tf<i64>,
    /// Bastion user.
    pub bastion_user: Tf<String>,
    /// Bastion key.
    pub bastion_private_key: Tf<String>,
    /// Bastion host key.
    pub bastion_host_key: Tf<String>,
    /// Trust on first use.
    pub trust_on_first_use: Tf<bool>,
}

/// The provider configuration model.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ProviderModel {
    /// `opnsense { }`.
    pub opnsense: Option<OpnsenseModel>,
    /// `ssh { }`.
    pub ssh: Option<SshModel>,
}

fn url_validator() -> Validator {
    Validator::string("an http(s) URL", check_url)
}

/// Checks an OPNsense base URL: `http(s)://host[:port][/path]`.
pub fn check_url(s: &str) -> Result<(), String> {
    let fix = "Use the base URL of the OPNsense web interface, e.g. \"https://192.168.1.1\" or \
               \"https://opnsense.lan:8443\".";
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("The URL must start with https:// or http://. {fix}"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') || host.contains(char::is_whitespace) {
        return Err(format!("The URL has no host name. {fix}"));
    }
    if let Some((_, port)) = host.rsplit_once(':').filter(|_| !host.ends_with(']')) {
        if port.parse::<u16>().is_err() {
            return Err(format!(
                "The URL's port is not a number from 1 to 65535. {fix}"
            ));
        }
    }
    if s.contains('?') || s.contains('#') {
        return Err(format!(
            "The URL must not contain a query or fragment. {fix}"
        ));
    }
    Ok(())
}

fn duration_validator() -> Validator {
    Validator::string("a duration like \"30s\" or \"2m\"", |s| {
        parse_duration(s)
            .and_then(|d| {
                if d.is_zero() {
                    Err("The duration must be positive.".into())
                } else {
                    Ok(())
                }
            })
            .map_err(|e| format!("{e} Use a number followed by s, m or h, e.g. \"30s\"."))
    })
}

/// The connection settings of one firewall (`env` names its environment variables, e.g. `OPNSENSE` or
/// `OPNSENSE_SECONDARY`), shared by the `opnsense` block and its `secondary` block.
fn connection_block(description: &str, env: &str) -> Block {
    Block::new(description)
    .attribute(
        Attribute::string("url")
            .optional()
            .validate(url_validator())
            .description(format!(
                "Base URL of the OPNsense web interface, e.g. `https://192.168.1.1`. Environment: `{env}_URI`."
            )),
    )
    .attribute(
        Attribute::string("api_key")
            .optional()
            .sensitive()
            .description(format!("API key. Environment: `{env}_API_KEY`.")),
    )
    .attribute(
        Attribute::string("api_secret")
            .optional()
            .sensitive()
            .description(format!(
                "API secret belonging to `api_key`. Environment: `{env}_API_SECRET`."
            )),
    )
    .attribute(
        Attribute::string("ca_cert_pem")
            .optional()
            .description(
                "PEM-encoded CA certificate(s) to trust for the OPNsense web interface, e.g. its self-signed \
                 certificate. Default: the system trust store.",
            ),
    )
    .attribute(
        Attribute::bool("insecure_skip_verify")
            .optional()
            .description(format!(
                "Skip TLS certificate verification. Only for throw-away labs; prefer `ca_cert_pem`. Default \
                 `false`. Environment: `{env}_ALLOW_INSECURE`."
            )),
    )
    .attribute(
        Attribute::string("timeout")
            .optional()
            .validate(duration_validator())
            .description("Timeout of one API request, e.g. `\"30s\"`. Default `\"30s\"`."),
    )
}

/// The provider schema.
pub fn schema() -> Schema {
    let opnsense = connection_block(
        "Connection to the OPNsense API (System > Access > Users > API keys). Every setting may instead come from \
         the environment; configuration wins over the environment.",
        "OPNSENSE",
    )
    .block(
        NestedBlock::single(
            "secondary",
            connection_block(
                "The HA secondary firewall (the peer `homelab_opnsense_hasync` syncs to), through its own API and \
                 key. When set, every HAProxy change that went live on the primary is followed, in the same batch, \
                 by one HA sync on the primary (`core/hasync_status/start/haproxy`) and one configtest and \
                 reconfigure of HAProxy on the secondary, so its haproxy runs the synced configuration (a plain \
                 sync leaves it on the old one). A configtest failure there is an error naming the secondary; the \
                 primary keeps the change. On refresh, a HAProxy object whose copy on the secondary differs (a \
                 hand change there) is a plan warning. When `homelab_opnsense_hasync` is created in the same apply, make the \
                 HAProxy resources `depends_on` it (the sync needs its peer settings). Settings may come from the \
                 `OPNSENSE_SECONDARY_*` environment variables.",
                "OPNSENSE_SECONDARY",
            ),
        )
        .items(0, 1),
    );

    let ssh = Block::new(
        "Defaults for SSH connections to hosts managed by the k3s resources. Each resource can override them.",
    )
    .attribute(Attribute::string("user").optional().description("Login user. Default `root`."))
    .attribute(
        Attribute::number("port")
            .optional()
            .validate(Validator::int_between(1, 65535))
            .description("SSH port. Default `22`."),
    )
    .attribute(
        Attribute::string("private_key")
            .optional()
            .sensitive()
            .description("Private key in OpenSSH or PEM format (the key itself, not a path; use `file()`)."),
    )
    .attribute(
        Attribute::bool("agent")
            .optional()
            .description("Authenticate with the SSH agent at `SSH_AUTH_SOCK`. Default `true` when no key is set."),
    )
    .attribute(Attribute::string("known_hosts").optional().description(
        "known_hosts lines used to verify host keys (e.g. `file(\"~/.ssh/known_hosts\")`). Hosts not listed \
         are rejected unless a resource pins its host key.",
    ))
    .attribute(
        Attribute::string("sudo_password")
            .optional()
            .sensitive()
            .description("Password for `sudo` when the user is not root. Sent on stdin, never on a command line."),
    )
    .attribute(
        Attribute::string("bastion_host")
            .optional()
            .description("Jump host to reach the hosts through (`host` or `host:port`)."),
    )
    .attribute(
        Attribute::number("bastion_port")
            .optional()
            .validate(Validator::int_between(1, 65535))
            .description("Jump host SSH port. Default `22`."),
    )
    .attribute(
        Attribute::string("bastion_user")
            .optional()
            .description("Jump host user. Default: `user`."),
    )
    .attribute(
        Attribute::string("bastion_private_key")
            .optional()
            .sensitive()
            .description("Jump host private key. Default: `private_key`."),
    )
    .attribute(Attribute::string("bastion_host_key").optional().description(
        "Pinned host key(s) of the jump host: OpenSSH public-key lines or `SHA256:` fingerprints, one per line. \
         Default: verify it with `known_hosts`. A jump host is never trusted on first use.",
    ))
    .attribute(Attribute::bool("trust_on_first_use").optional().description(
        "Accept a host's key on the first connection when neither a pinned `host_key` nor known_hosts can \
         verify it; the key is then pinned in the resource's state and verified on every later connection. \
         Default `false`. Resources can override it.",
    ));

    Schema::new(
        "The homelab provider manages an HA k3s control plane behind OPNsense HAProxy: OPNsense objects over its \
         REST API, k3s nodes over SSH.",
    )
    .block(NestedBlock::single("opnsense", opnsense).items(0, 1))
    .block(NestedBlock::single("ssh", ssh).items(0, 1))
}

/// Extra validation beyond the schema validators (values may be unknown: skipped).
pub fn validate(m: &ProviderModel, diags: &mut Diagnostics) {
    if let Some(o) = &m.opnsense {
        if o.api_key.is_known() != o.api_secret.is_known()
            && !o.api_key.is_unknown()
            && !o.api_secret.is_unknown()
        {
            let (missing, path) = if o.api_key.is_known() {
                ("api_secret", attr("opnsense").attr("api_secret"))
            } else {
                ("api_key", attr("opnsense").attr("api_key"))
            };
            diags.push(
                Diagnostic::warning(
                    format!("`{missing}` is not set"),
                    format!(
                        "Set `{missing}` too, or leave both to the OPNSENSE_API_KEY / OPNSENSE_API_SECRET \
                         environment variables."
                    ),
                )
                .at(path),
            );
        }
        if o.insecure_skip_verify.known() == Some(&true) && o.ca_cert_pem.is_known() {
            diags.push(
                Diagnostic::warning(
                    "`ca_cert_pem` is ignored",
                    "`insecure_skip_verify = true` disables certificate checks, so `ca_cert_pem` has no effect. \
                     Remove one of them.",
                )
                .at(attr("opnsense").attr("insecure_skip_verify")),
            );
        }
    }
}

/// Builds provider data from the configuration and the environment (`env` is injectable for tests).
pub fn configure(
    terraform_version: &str,
    m: &ProviderModel,
    env: impl Fn(&str) -> Option<String>,
) -> Result<ProviderData, Diagnostics> {
    let mut diags = Diagnostics::new();
    let opnsense = resolve_opnsense(m.opnsense.as_ref(), &env, &mut diags);
    let ssh = resolve_ssh(m.ssh.as_ref());
    diags.clone().into_result()?;
    let data = ProviderData::new(terraform_version, opnsense, ssh);
    if let (Some(block), Some(o)) = (&m.opnsense, &data.opnsense) {
        check_opnsense(&data, o, block)?;
    }
    Ok(data)
}

// ---------------------------------------------------------------------------------------------------------------
// Fail fast on trust and credentials

/// Longest the configure-time probe waits for OPNsense (the configured `timeout` when shorter).
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// At configure, when an `opnsense` block is configured and fully known: one authenticated call, so that a
/// failure only the settings can fix (an untrusted certificate, a wrong key or secret) is ONE error on the setting
/// to change, in the time of one call, instead of a retried error per resource. The client it builds (with the
/// versions that call read) becomes the provider's client, so the call is not repeated later. Failures that may
/// heal (refused connection, timeout, 5xx) do not fail configure: the resources meet them and retry as always.
///
/// Only with an `opnsense` block (settings from the environment alone are not probed), so `validate` and plans
/// of configurations without one stay free of network calls. The probe needs the server's multi-threaded runtime
/// (it blocks this synchronous step on it); elsewhere (unit tests of the resolution above) it is skipped.
fn check_opnsense(
    data: &ProviderData,
    o: &crate::opnsense::ClientConfig,
    block: &OpnsenseModel,
) -> Result<(), Diagnostics> {
    use crate::opnsense::{Client, Error, SettingsProblem};
    use tokio::runtime::{Handle, RuntimeFlavor};

    let Ok(rt) = Handle::try_current() else {
        return Ok(());
    };
    if rt.runtime_flavor() != RuntimeFlavor::MultiThread {
        return Ok(());
    }
    let client = match Client::new(o) {
        Ok(c) => c,
        Err(e) => {
            return Err(
                Diagnostic::error("Invalid OPNsense connection settings", e.to_string())
                    .at(attr("opnsense"))
                    .into(),
            )
        }
    };
    let timeout = o.timeout.min(PROBE_TIMEOUT);
    let probed = tokio::task::block_in_place(|| rt.block_on(client.probe(timeout)));
    let e = match probed {
        Ok(()) => {
            // Resources take this client (and its versions) instead of building their own.
            let _ = data.cached::<Client>(|_| Ok(client));
            return Ok(());
        }
        Err(e) => e,
    };
    let base = attr("opnsense");
    // Where a setting came from, as the user would look for it.
    let source = |t: &Tf<String>, name: &str, var: &str| {
        if t.is_known() {
            format!("`{name}` in the provider's `opnsense` block")
        } else {
            format!("the {var} environment variable")
        }
    };
    let diag = match e.settings_problem() {
        Some(SettingsProblem::Trust) => {
            let message = match &e {
                Error::Trust { message, .. } => message.clone(),
                other => other.to_string(),
            };
            let fix = if o.ca_cert_pem.is_some() {
                "`ca_cert_pem` in the provider's `opnsense` block holds neither this certificate nor the CA that \
                 signed it. Set it to the firewall's web GUI certificate (System › Trust › Certificates) or its CA."
            } else {
                "No `ca_cert_pem` is set, so the system trust store was used, and it does not trust this \
                 certificate. Set `ca_cert_pem` in the provider's `opnsense` block to the firewall's web GUI \
                 certificate (System › Trust › Certificates) or the CA that signed it."
            };
            let host = if message.contains("does not name the URL's host") {
                format!(
                    " Or address the firewall by a name the certificate holds ({}); a pinned certificate is \
                     accepted for any host name.",
                    source(&block.url, "url", "OPNSENSE_URI")
                )
            } else {
                String::new()
            };
            Diagnostic::error(
                "OPNsense's TLS certificate is not trusted",
                format!(
                    "Connecting to {} failed: {message}. {fix}{host} Nothing was retried: this cannot heal on \
                     its own.",
                    o.url
                ),
            )
            .at(base.attr("ca_cert_pem"))
        }
        Some(SettingsProblem::Credentials) => {
            let path = if block.api_secret.is_known() {
                base.attr("api_secret")
            } else if block.api_key.is_known() {
                base.attr("api_key")
            } else {
                base
            };
            Diagnostic::error(
                "OPNsense refused the API key and secret",
                format!(
                    "{} answered HTTP 401 (Authentication Failed): the API key ({}) or its secret ({}) is \
                     wrong, or the key was deleted. Check both, or create a new key under System › Access › \
                     Users › API keys. Nothing was retried.",
                    o.url,
                    source(&block.api_key, "api_key", "OPNSENSE_API_KEY"),
                    source(&block.api_secret, "api_secret", "OPNSENSE_API_SECRET"),
                ),
            )
            .at(path)
        }
        None => return Ok(()),
    };
    Err(diag.into())
}

fn resolve_opnsense(
    o: Option<&OpnsenseModel>,
    env: &impl Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
) -> Result<ClientConfig, OpnsenseStatus> {
    let empty = OpnsenseModel::default();
    let o = o.unwrap_or(&empty);
    let mut cfg = resolve_connection(o, env, diags, "OPNSENSE", "opnsense", attr("opnsense"))?;
    if let Some(sec) = &o.secondary {
        let base = attr("opnsense").attr("secondary");
        match resolve_connection(
            sec,
            env,
            diags,
            "OPNSENSE_SECONDARY",
            "opnsense.secondary",
            base.clone(),
        ) {
            Ok(c) => cfg.secondary = Some(Box::new(c)),
            Err(OpnsenseStatus::Unknown) => return Err(OpnsenseStatus::Unknown),
            Err(_) => {
                if diags.is_empty() {
                    diags.push(
                        Diagnostic::error(
                            "The `secondary` block has no settings",
                            "Set `url`, `api_key` and `api_secret` of the HA secondary firewall in the \
                             `secondary` block (or the OPNSENSE_SECONDARY_URI, OPNSENSE_SECONDARY_API_KEY and \
                             OPNSENSE_SECONDARY_API_SECRET environment variables), or remove the block.",
                        )
                        .at(base),
                    );
                }
                return Err(OpnsenseStatus::NotConfigured);
            }
        }
    }
    Ok(cfg)
}

/// One firewall's connection settings: configuration first, then the `{prefix}_*` environment variables.
fn resolve_connection(
    o: &OpnsenseModel,
    env: &impl Fn(&str) -> Option<String>,
    diags: &mut Diagnostics,
    prefix: &str,
    block: &str,
    base: crate::framework::AttrPath,
) -> Result<ClientConfig, OpnsenseStatus> {
    let fields = [
        &o.url,
        &o.api_key,
        &o.api_secret,
        &o.ca_cert_pem,
        &o.timeout,
    ];
    if fields.iter().any(|f| f.is_unknown()) || o.insecure_skip_verify.is_unknown() {
        return Err(OpnsenseStatus::Unknown);
    }
    let pick = |t: &Tf<String>, var: &str| {
        t.known()
            .cloned()
            .or_else(|| env(var).filter(|v| !v.is_empty()))
    };
    let (v_url, v_key, v_secret) = (
        format!("{prefix}_URI"),
        format!("{prefix}_API_KEY"),
        format!("{prefix}_API_SECRET"),
    );
    let url = pick(&o.url, &v_url);
    let key = pick(&o.api_key, &v_key);
    let secret = pick(&o.api_secret, &v_secret);
    if url.is_none() && key.is_none() && secret.is_none() {
        return Err(OpnsenseStatus::NotConfigured);
    }
    let mut missing = |name: &str, var: &str| {
        diags.push(
            Diagnostic::error(
                format!("Missing OPNsense `{name}`"),
                format!("Set `{name}` in the provider's `{block}` block or the {var} environment variable."),
            )
            .at(base.clone().attr(name)),
        );
    };
    if url.is_none() {
        missing("url", &v_url);
    }
    if key.is_none() {
        missing("api_key", &v_key);
    }
    if secret.is_none() {
        missing("api_secret", &v_secret);
    }
    let (Some(url), Some(api_key), Some(secret)) = (url, key, secret) else {
        return Err(OpnsenseStatus::NotConfigured);
    };
    if let Err(fix) = check_url(&url) {
        let from_env = o.url.is_null();
        diags.push(
            Diagnostic::error(
                if from_env {
                    format!("Invalid {v_url} environment variable")
                } else {
                    "Invalid OPNsense URL".to_string()
                },
                fix,
            )
            .at(base.clone().attr("url")),
        );
        return Err(OpnsenseStatus::NotConfigured);
    }
    let insecure = match o.insecure_skip_verify.known() {
        Some(b) => *b,
        None => env(&format!("{prefix}_ALLOW_INSECURE"))
            .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
            .unwrap_or(false),
    };
    let timeout = o
        .timeout
        .known()
        .and_then(|t| parse_duration(t).ok())
        .unwrap_or(DEFAULT_OPNSENSE_TIMEOUT);
    let mut cfg = ClientConfig::new(url.trim_end_matches('/'), api_key, secret);
    cfg.ca_cert_pem = o.ca_cert_pem.known().cloned();
    cfg.insecure_skip_verify = insecure;
    cfg.timeout = timeout;
    Ok(cfg)
}

fn resolve_ssh(s: Option<&SshModel>) -> SshDefaults {
    let Some(s) = s else {
        return SshDefaults::default();
    };
    let port = |t: &Tf<i64>| t.known().and_then(|p| u16::try_from(*p).ok());
    SshDefaults {
        user: s.user.known().cloned(),
        port: port(&s.port),
        private_key: s.private_key.known().cloned().map(Secret::new),
        agent: s.agent.known().copied(),
        known_hosts: s.known_hosts.known().cloned(),
        sudo_password: s.sudo_password.known().cloned().map(Secret::new),
        bastion_host: s.bastion_host.known().cloned(),
        bastion_port: port(&s.bastion_port),
        bastion_user: s.bastion_user.known().cloned(),
        bastion_private_key: s.bastion_private_key.known().cloned().map(Secret::new),
        bastion_host_key: s.bastion_host_key.known().cloned(),
        trust_on_first_use: s.trust_on_first_use.known().copied(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn model(url: Tf<String>, key: Tf<String>, secret: Tf<String>) -> ProviderModel {
        ProviderModel {
            opnsense: Some(OpnsenseModel {
                url,
                api_key: key,
                api_secret: secret,
                ..Default::default()
            }),
            ssh: None,
        }
    }

    #[test]
    fn schema_is_described() {
        assert_eq!(schema().problems(), Vec::<String>::new());
    }

    #[test]
    fn url_checks() {
        assert!(check_url("https://192.168.1.1").is_ok());
        assert!(check_url("https://opnsense.lan:8443/").is_ok());
        assert!(check_url("http://[::1]:80").is_ok());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("192.168.1.1").is_err());
        assert!(check_url("https://").is_err());
        assert!(check_url("https://h:99999").is_err());
        assert!(check_url("https://h/?a=b").is_err());
    }

    #[test]
    fn configure_from_config_and_env() {
        let m = model(
            Tf::Known("https://fw/".into()),
            Tf::Known("k".into()),
            Tf::Null,
        );
        let env = |k: &str| (k == "OPNSENSE_API_SECRET").then(|| "s3cr3t".to_string());
        let d = configure("1.15.5", &m, env).unwrap();
        let o = d.opnsense().unwrap();
        assert_eq!(o.url, "https://fw");
        assert_eq!(o.api_secret.expose(), "s3cr3t");
        assert!(
            !format!("{d:?}").contains("s3cr3t"),
            "secret leaked into Debug"
        );
        assert_eq!(o.timeout, DEFAULT_OPNSENSE_TIMEOUT);
        assert!(!o.insecure_skip_verify);
    }

    #[test]
    fn secondary_resolves_into_the_same_config_type_with_its_own_env() {
        let mut m = model(
            Tf::Known("https://fw1".into()),
            Tf::Known("k1".into()),
            Tf::Known("s1".into()),
        );
        m.opnsense.as_mut().unwrap().secondary = Some(Box::new(OpnsenseModel {
            url: Tf::Known("https://fw2/".into()),
            api_key: Tf::Known("k2".into()),
            ..Default::default()
        }));
        let env = |k: &str| match k {
            "OPNSENSE_SECONDARY_API_SECRET" => Some("sec0nd".to_string()),
            "OPNSENSE_SECONDARY_ALLOW_INSECURE" => Some("true".to_string()),
            _ => None,
        };
        let d = configure("1.15.5", &m, env).unwrap();
        let o = d.opnsense().unwrap();
        let sec = o.secondary.as_ref().expect("secondary");
        assert_eq!(
            (sec.url.as_str(), sec.api_key.as_str()),
            ("https://fw2", "k2")
        );
        assert_eq!(sec.api_secret.expose(), "sec0nd");
        assert!(sec.insecure_skip_verify && !o.insecure_skip_verify);
        assert!(!format!("{d:?}").contains("sec0nd"));

        // A secondary missing its secret is an error on the secondary's attribute; an empty one on the block.
        let d = configure("1.15.5", &m, no_env).unwrap_err();
        let paths: Vec<_> = d.iter().map(|x| x.path.clone().unwrap()).collect();
        assert_eq!(
            paths,
            vec![attr("opnsense").attr("secondary").attr("api_secret")]
        );
        m.opnsense.as_mut().unwrap().secondary = Some(Box::default());
        let d = configure("1.15.5", &m, no_env).unwrap_err();
        let paths: Vec<_> = d.iter().map(|x| x.path.clone().unwrap()).collect();
        assert_eq!(paths, vec![attr("opnsense").attr("secondary")]);

        // Without the block, the secondary's environment variables do nothing.
        m.opnsense.as_mut().unwrap().secondary = None;
        let d = configure("1.15.5", &m, env).unwrap();
        assert!(d.opnsense().unwrap().secondary.is_none());
    }

    #[test]
    fn missing_parts_are_errors_on_paths() {
        let m = model(Tf::Known("https://fw".into()), Tf::Null, Tf::Null);
        let d = configure("1.15.5", &m, no_env).unwrap_err();
        let paths: Vec<_> = d.iter().map(|x| x.path.clone().unwrap()).collect();
        assert_eq!(
            paths,
            vec![
                attr("opnsense").attr("api_key"),
                attr("opnsense").attr("api_secret")
            ]
        );
    }

    #[test]
    fn bad_url_is_an_error_on_url() {
        let m = model(
            Tf::Known("fw.lan".into()),
            Tf::Known("k".into()),
            Tf::Known("s".into()),
        );
        let d = configure("1.15.5", &m, no_env).unwrap_err();
        let first = d.iter().next().unwrap();
        assert_eq!(first.path, Some(attr("opnsense").attr("url")));
        assert!(first.detail.contains("https://"), "{}", first.detail);
    }

    #[test]
    fn unknowns_defer_and_nothing_is_not_configured() {
        let m = model(Tf::Unknown, Tf::Known("k".into()), Tf::Known("s".into()));
        let d = configure("1.15.5", &m, no_env).unwrap();
        assert_eq!(d.opnsense_status(), &OpnsenseStatus::Unknown);
        let e = d.opnsense().unwrap_err();
        assert!(e.iter().next().unwrap().summary.contains("not known yet"));

        let d = configure("1.15.5", &ProviderModel::default(), no_env).unwrap();
        assert_eq!(d.opnsense_status(), &OpnsenseStatus::NotConfigured);
    }

    #[test]
    fn ssh_defaults_reach_provider_data() {
        let m = ProviderModel {
            opnsense: None,
            ssh: Some(SshModel {
                user: Tf::Known("debian".into()),
                bastion_host: Tf::Known("jump:2222".into()),
                bastion_port: Tf::Null,
                bastion_user: Tf::Known("j".into()),
                bastion_private_key: Tf::Known("JKEY".into()),
                bastion_host_key: Tf::Known("SHA256:abc".into()),
                trust_on_first_use: Tf::Known(true),
                sudo_password: Tf::Unknown,
                ..Default::default()
            }),
        };
        let d = configure("1.15.5", &m, no_env).unwrap();
        let s = &d.ssh;
        assert_eq!(s.user.as_deref(), Some("debian"));
        assert_eq!(s.bastion_host.as_deref(), Some("jump:2222"));
        assert_eq!(s.bastion_user.as_deref(), Some("j"));
        assert_eq!(
            s.bastion_private_key.as_ref().map(Secret::expose),
            Some("JKEY")
        );
        assert_eq!(s.bastion_host_key.as_deref(), Some("SHA256:abc"));
        assert_eq!(s.trust_on_first_use, Some(true));
        // Unknown values are left unset.
        assert!(s.sudo_password.is_none());
        assert!(!format!("{d:?}").contains("JKEY"), "key leaked into Debug");
    }

    /// An `opnsense` block pointing at `url` with key `k` and `secret`.
    fn block(url: &str, secret: &str, ca: Option<&str>) -> ProviderModel {
        let mut m = model(
            Tf::Known(url.into()),
            Tf::Known("k".into()),
            Tf::Known(secret.into()),
        );
        if let Some(ca) = ca {
            m.opnsense.as_mut().unwrap().ca_cert_pem = Tf::Known(ca.into());
        }
        m
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn configure_fails_once_on_a_wrong_secret_naming_it() {
        use crate::testing::http::{Reply, TestServer};
        let srv = TestServer::start(|_| {
            Reply::json(
                401,
                serde_json::json!({"status": 401, "message": "Authentication Failed"}),
            )
        })
        .await;
        let d = configure("1.15.5", &block(&srv.url(), "s3cr3t-wrong", None), no_env).unwrap_err();
        assert_eq!(d.iter().count(), 1, "{d:?}");
        let x = d.iter().next().unwrap();
        assert_eq!(x.path, Some(attr("opnsense").attr("api_secret")));
        assert!(x.detail.contains("`api_secret`"), "{}", x.detail);
        assert!(!format!("{d:?}").contains("s3cr3t"), "secret leaked");
        assert_eq!(srv.requests(), 1, "one call, no retry");

        // From the environment: the variables are named.
        let mut m = block(&srv.url(), "x", None);
        let o = m.opnsense.as_mut().unwrap();
        o.api_key = Tf::Null;
        o.api_secret = Tf::Null;
        let env = |k: &str| match k {
            "OPNSENSE_API_KEY" => Some("k".to_string()),
            "OPNSENSE_API_SECRET" => Some("s3cr3t-env".to_string()),
            _ => None,
        };
        let d = configure("1.15.5", &m, env).unwrap_err();
        let x = d.iter().next().unwrap();
        assert!(x.detail.contains("OPNSENSE_API_SECRET"), "{}", x.detail);
        assert_eq!(x.path, Some(attr("opnsense")));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn configure_fails_once_on_an_untrusted_certificate() {
        use crate::testing::http::{Reply, TestServer};
        let (srv, pem) = TestServer::start_tls(|_| Reply::json(200, serde_json::json!({}))).await;
        let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
        let url = srv.url().replace("127.0.0.1", "localhost");
        let d =
            configure("1.15.5", &block(&url, "s", Some(&other.cert.pem())), no_env).unwrap_err();
        assert_eq!(d.iter().count(), 1, "{d:?}");
        let x = d.iter().next().unwrap();
        assert_eq!(x.path, Some(attr("opnsense").attr("ca_cert_pem")));
        assert!(
            x.detail.contains("invalid peer certificate"),
            "{}",
            x.detail
        );
        assert!(x.detail.contains("`ca_cert_pem`"), "{}", x.detail);
        // The right certificate: configured, and the probe's client is the provider's client.
        let d = configure("1.15.5", &block(&url, "s", Some(&pem)), no_env).unwrap();
        let c = d
            .cached::<crate::opnsense::Client>(|_| panic!("the probe's client is reused"))
            .unwrap();
        assert_eq!(c.transport().total_calls(), 1);
        c.versions().await.unwrap();
        assert_eq!(
            c.transport().total_calls(),
            1,
            "versions were read by the probe"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn configure_does_not_fail_on_errors_that_may_heal() {
        use crate::testing::http::{Reply, TestServer};
        let srv =
            TestServer::start(|_| Reply::json(503, serde_json::json!({"errorMessage": "busy"})))
                .await;
        let d = configure("1.15.5", &block(&srv.url(), "s", None), no_env).unwrap();
        assert_eq!(d.opnsense_status(), &OpnsenseStatus::Ready);
        assert_eq!(srv.requests(), 1, "the probe tries once");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        assert!(configure("1.15.5", &block(&url, "s", None), no_env).is_ok());
        // No opnsense block: no probe at all (settings from the environment alone are not checked here).
        let env = |k: &str| match k {
            "OPNSENSE_URI" => Some(srv.url()),
            "OPNSENSE_API_KEY" | "OPNSENSE_API_SECRET" => Some("x".to_string()),
            _ => None,
        };
        let before = srv.requests();
        configure("1.15.5", &ProviderModel::default(), env).unwrap();
        assert_eq!(srv.requests(), before);
    }

    #[test]
    fn cached_builds_once() {
        let d = ProviderData::new(
            "x",
            Err(OpnsenseStatus::NotConfigured),
            SshDefaults::default(),
        );
        let a = d.cached(|_| Ok(5u32)).unwrap();
        let b = d.cached::<u32>(|_| panic!("built twice")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
    }
}
