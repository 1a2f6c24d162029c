//! Errors of the OPNsense client.
//!
//! OPNsense reports most failures with HTTP 200 and a JSON body (`{"result":"failed", …}`), a few with HTTP 500
//! (`errorTitle`/`errorMessage`), and transport problems never reach it at all. Every shape ends up here as one
//! typed variant, so resources can turn them into diagnostics without looking at JSON. Errors are `Clone` because
//! the reconfigure coalescer hands one outcome to every resource of a batch; they hold only strings, never the API
//! secret (the `Authorization` header is never formatted, and transport errors are rendered without the URL).

use std::fmt;

/// One validation message set for one field, as OPNsense reported it (`"server.port": "Please specify …"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The key as OPNsense sent it, e.g. `server.port` or `haproxy.general.stats.prometheus_bind`.
    pub key: String,
    /// The Terraform attribute the key maps to, when the model knows it (e.g. `port`).
    pub attribute: Option<&'static str>,
    /// The messages (OPNsense sends a string or a list; both become a list here).
    pub messages: Vec<String>,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.attribute.unwrap_or(&self.key);
        write!(f, "{name}: {}", self.messages.join("; "))
    }
}

/// Everything the client can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The client configuration is unusable (bad URL, unreadable CA PEM, …). Never retried.
    #[error("invalid OPNsense client configuration: {0}")]
    Config(String),

    /// The request never got an HTTP answer (connect error, TLS failure, timeout), after all retries.
    #[error("OPNsense request {method} {path} failed after {attempts} attempt(s): {message}")]
    Transport {
        method: &'static str,
        path: String,
        attempts: u32,
        message: String,
    },

    /// The TLS handshake failed because OPNsense's certificate is not trusted: unknown issuer, a bad, expired or
    /// revoked certificate, or one not valid for the URL's host name. Retrying cannot help, so it never is.
    #[error("OPNsense's TLS certificate is not trusted ({method} {path}): {message}")]
    Trust {
        method: &'static str,
        path: String,
        message: String,
    },

    /// 401/403/302: the key/secret is wrong, or the user lacks the privilege for this endpoint.
    #[error("OPNsense refused {path} (HTTP {status}): {message}")]
    Auth {
        status: u16,
        path: String,
        message: String,
    },

    /// 404 `Endpoint not found`: the endpoint does not exist on this OPNsense (plugin missing or too old/new).
    #[error(
        "OPNsense has no endpoint {path} (is the plugin installed and the version supported?)"
    )]
    EndpointMissing { path: String },

    /// `{"result":"failed","validations":{…}}`: OPNsense rejected the values.
    #[error("OPNsense rejected the {object}: {}", join_fields(.fields))]
    Validation {
        object: &'static str,
        fields: Vec<FieldError>,
    },

    /// `{"result":"failed"}` without validations (wrong wrapper, wrong verb, non-v4 UUID on set, …).
    #[error("OPNsense answered {path} with a bare failure")]
    Failed { path: String },

    /// HTTP 500 from a safe delete: the object is still referenced.
    #[error("OPNsense refused to delete {object} {uuid}: {title} {message}")]
    InUse {
        object: &'static str,
        uuid: String,
        title: String,
        message: String,
    },

    /// Any other HTTP error with OPNsense's own message (UserException → 500, 400 invalid JSON, …).
    #[error("OPNsense {path} failed (HTTP {status}): {message}")]
    Api {
        status: u16,
        path: String,
        message: String,
        /// Whether retrying may help (5xx without OPNsense's own error title).
        retryable: bool,
    },

    /// The answer did not have the expected shape.
    #[error("unexpected answer from OPNsense {path}: {detail}")]
    Decode { path: String, detail: String },

    /// `haproxy -c` (service/configtest) reported ALERT: nothing was deployed, the previous live config stays.
    #[error("HAProxy configtest failed, nothing was deployed and the previous configuration stays live:\n{output}")]
    ConfigTest { output: String },

    /// The primary's batch is live, but the HA sync to the secondary or the secondary's HAProxy deploy failed: the
    /// secondary keeps running its previous configuration, the primary stays as it is.
    #[error(
        "the HA secondary {firewall} did not take the change (the primary has it live): {message}"
    )]
    Secondary { firewall: String, message: String },

    /// A service action (reconfigure/apply) did not report success.
    #[error("OPNsense {service} reconfigure failed: {message}")]
    Service {
        service: &'static str,
        message: String,
    },

    /// The OPNsense or plugin version does not support what was asked.
    #[error("unsupported by this OPNsense: {0}")]
    Unsupported(String),
}

fn join_fields(fields: &[FieldError]) -> String {
    fields
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// Whether the failure may go away on its own (used by the retry loop).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Transport { .. }
                | Error::Api {
                    retryable: true,
                    ..
                }
        )
    }
}

/// A failure that only a change of the provider's settings can fix, whatever is retried: what the provider
/// reports once, at configure, on the setting to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingsProblem {
    /// The certificate is not trusted ([`Error::Trust`]): `ca_cert_pem` (or the URL's host name).
    Trust,
    /// HTTP 401: the API key or secret is wrong. (403 is not: the key is valid and lacks a privilege for one
    /// endpoint, which other endpoints may not need.)
    Credentials,
}

impl Error {
    /// Whether this failure can only be fixed in the provider's settings (see [`SettingsProblem`]).
    pub fn settings_problem(&self) -> Option<SettingsProblem> {
        match self {
            Error::Trust { .. } => Some(SettingsProblem::Trust),
            Error::Auth { status: 401, .. } => Some(SettingsProblem::Credentials),
            _ => None,
        }
    }
}

/// A decoding problem inside one object (a field with a value the typed model cannot represent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {detail}")]
pub struct DecodeError {
    pub field: String,
    pub detail: String,
}

impl DecodeError {
    pub fn new(field: &str, detail: impl Into<String>) -> Self {
        DecodeError {
            field: field.to_string(),
            detail: detail.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
