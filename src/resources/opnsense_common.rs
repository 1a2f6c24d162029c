//! Plumbing shared by the OPNsense resources: the per-provider client, error → diagnostic mapping, attribute
//! validators for OPNsense's formats, model helpers, the UUID identity and the list-stream builder. The singletons
//! (`homelab_opnsense_haproxy_settings`) use these directly; every object type goes through the one generic
//! resource in `opnsense_object.rs`.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::framework::*;
use crate::opnsense::{Client, Error};
use crate::provider::ProviderData;

/// The OPNsense client of this provider process (built on first use from the provider's `opnsense` block).
pub fn client(ctx: &Context) -> Result<Arc<Client>, Diagnostics> {
    let pd = ProviderData::of(ctx)?;
    pd.cached::<Client>(|pd| {
        Client::new(pd.opnsense()?).map_err(|e| {
            Diagnostic::error("Invalid OPNsense connection settings", e.to_string())
                .at(attr("opnsense"))
                .into()
        })
    })
}

/// The in-process barrier for a k3s node that registers through an address HAProxy serves (the VIP): when this
/// provider process has written HAProxy changes, waits until they are live. A long stream of HAProxy changes is
/// answered once configtested and goes live in one reconfigure at its end (see `opnsense::coalesce`), so a dependent
/// could otherwise start between the two. Immediate when this process has no OPNsense client or nothing pending.
pub async fn haproxy_live_barrier(ctx: &Context, at: &str) -> Result<(), Diagnostics> {
    let Some(pd) = ProviderData::of_opt(ctx) else {
        return Ok(());
    };
    let Some(c) = pd.cached_existing::<Client>() else {
        return Ok(());
    };
    c.haproxy_settled().await.map_err(|e| {
        Diagnostic::error(
            "HAProxy changes of this apply are saved but not live",
            format!(
                "This node registers through `{at}`, which HAProxy may serve, but the reconfigure that makes this \
                 apply's HAProxy changes live failed: {e}\nFix HAProxy (Services › HAProxy › Log) and run the \
                 apply again."
            ),
        )
        .at(attr(at))
        .into()
    })
}

/// The client when the provider's OPNsense settings are known; `None` at plan time when they are not (then
/// plan-time checks against the live box are skipped and happen at apply).
pub fn client_if_ready(ctx: &Context) -> Option<Arc<Client>> {
    let pd = ProviderData::of_opt(ctx)?;
    pd.opnsense().ok()?;
    client(ctx).ok()
}

/// A secret in its two forms: the sensitive attribute kept in state (Terraform 1.0.3) and the write-only one with
/// its version (Terraform >= 1.11). Each entry is (attribute name, configured value).
pub struct SecretPair<'a> {
    pub plain: (&'a str, &'a Tf<String>),
    pub write_only: (&'a str, &'a Tf<String>),
    pub version: (&'a str, &'a Tf<i64>),
}

/// At most one form of a secret (exactly one when `required`), and the write-only form with its version; unknown
/// values count as set.
pub fn check_secret_choice(
    p: SecretPair<'_>,
    required: bool,
    missing: &str,
    diags: &mut Diagnostics,
) {
    let (plain, wo, (version, v)) = (p.plain, p.write_only, p.version);
    match (plain.1.is_null(), wo.1.is_null()) {
        (true, true) if required => diags.push(
            Diagnostic::error(
                missing,
                format!(
                    "Set `{}` (kept in state, works with every Terraform) or `{}` with `{version}` (write-only, \
                     Terraform 1.11 or newer).",
                    plain.0, wo.0
                ),
            )
            .at(attr(plain.0)),
        ),
        (false, false) => diags.push(
            Diagnostic::error(
                format!("Two forms of {}", plain.0),
                format!("Set only one of `{}` and `{}`.", plain.0, wo.0),
            )
            .at(attr(wo.0)),
        ),
        _ => {}
    }
    if !wo.1.is_null() && v.is_null() {
        diags.push(
            Diagnostic::error(
                format!("{version} is required with {}", wo.0),
                format!(
                    "Terraform keeps no trace of a write-only value, so it cannot see a new one by itself: set \
                     `{version} = 1` and raise it whenever `{}` changes.",
                    wo.0
                ),
            )
            .at(attr(version)),
        );
    }
}

/// Whether a state or plan uses the write-only form of a secret (the plain one null, a version set): then the
/// secret is never read back into it.
pub fn uses_write_only(plain: &Tf<String>, version: &Tf<i64>) -> bool {
    plain.is_null() && !version.is_null()
}

/// Turns a client error into diagnostics; validation messages land on the attributes they concern.
pub fn diags(e: Error, summary: &str) -> Diagnostics {
    match e {
        Error::Validation { object, fields } => fields
            .into_iter()
            .map(|f| {
                let detail = format!(
                    "OPNsense's validation of the {object} said: {}",
                    f.messages.join(" ")
                );
                match f.attribute {
                    Some(a) => Diagnostic::error(summary, detail).at(attr(a)),
                    None => {
                        Diagnostic::error(summary, format!("{detail} (OPNsense field `{}`)", f.key))
                    }
                }
            })
            .collect(),
        other => Diagnostic::error(summary, other.to_string()).into(),
    }
}

pub fn parse_uuid(s: &str, attribute: &str) -> Result<Uuid, Diagnostics> {
    Uuid::parse_str(s).map_err(|_| {
        Diagnostic::error(
            "Invalid OPNsense UUID",
            format!("`{attribute}` must be an OPNsense object UUID like 4d773370-0f46-4492-9aeb-eabae52b9231."),
        )
        .at(attr(attribute))
        .into()
    })
}

// ---- validators for OPNsense formats ----

/// HAProxy object names: `[0-9a-zA-Z._-]{1,255}`.
pub fn name_validator() -> Validator {
    Validator::string("1 to 255 letters, digits, `.`, `_` or `-`", |s| {
        if !s.is_empty()
            && s.len() <= 255
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            Ok(())
        } else {
            Err("Use 1 to 255 characters from a-z, A-Z, 0-9, `.`, `_` and `-` (haproxy section names).".into())
        }
    })
}

/// HAProxy durations: digits with an optional unit us, ms, s, m, h, d.
pub fn time_validator() -> Validator {
    Validator::string("a duration like `10s`, `500ms` or `2m`", |s| {
        let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
        let unit = &s[digits.len()..];
        if !digits.is_empty()
            && digits.len() <= 8
            && ["", "us", "ms", "s", "m", "h", "d"].contains(&unit)
        {
            Ok(())
        } else {
            Err(
                "Use a number followed by an optional unit us, ms, s, m, h or d, e.g. \"10s\"."
                    .into(),
            )
        }
    })
}

/// Descriptions: 1 to 255 characters without line breaks.
pub fn description_validator() -> Validator {
    Validator::string("1 to 255 characters on one line", |s| {
        if !s.is_empty() && s.chars().count() <= 255 && !s.contains(['\n', '\r', '\0']) {
            Ok(())
        } else {
            Err("Use 1 to 255 characters without line breaks, or leave the attribute out.".into())
        }
    })
}

/// A host name or IP address (HAProxy server address).
pub fn host_validator() -> Validator {
    Validator::string("an IP address or host name", |s| {
        if s.parse::<IpAddr>().is_ok() || is_hostname(s) {
            Ok(())
        } else {
            Err("Use an IPv4/IPv6 address (without brackets) or a DNS name.".into())
        }
    })
}

pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// `host:port` listen addresses (`*:8404`, `10.0.3.100:6443`, `[::1]:443`, `:::80`).
pub fn check_listen(s: &str) -> Result<(), String> {
    let fix = || format!("Use host:port, e.g. \"10.0.3.100:6443\" or \"*:8404\" (got {s:?}).");
    let (host, port) = s.rsplit_once(':').ok_or_else(fix)?;
    let port_ok = port.parse::<u16>().map(|p| p > 0).unwrap_or(false);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host_ok = host == "*"
        || host.is_empty()
        || host == "::"
        || host.parse::<IpAddr>().is_ok()
        || is_hostname(host);
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(fix())
    }
}

/// Validates every element of a set of listen addresses.
pub fn listen_set_validator() -> Validator {
    Validator::new("a set of host:port listen addresses", |v, path, d| {
        for e in v.as_elements().unwrap_or(&[]) {
            if let Some(s) = e.as_str() {
                if let Err(fix) = check_listen(s) {
                    d.push(Diagnostic::error("Invalid listen address", fix).at(path.clone()));
                }
            }
        }
    })
}

/// Validates that every element of a set is a UUID (references to other OPNsense objects by `id`).
pub fn uuid_set_validator() -> Validator {
    Validator::new("a set of OPNsense object ids (UUIDs)", |v, path, d| {
        for e in v.as_elements().unwrap_or(&[]) {
            if let Some(s) = e.as_str() {
                if Uuid::parse_str(s).is_err() {
                    d.push(
                        Diagnostic::error(
                            "Invalid object reference",
                            format!("{s:?} is not an OPNsense object id; reference another resource's `id`."),
                        )
                        .at(path.clone()),
                    );
                }
            }
        }
    })
}

pub fn uuid_validator() -> Validator {
    Validator::string("an OPNsense object id (UUID)", |s| {
        Uuid::parse_str(s)
            .map(|_| ())
            .map_err(|_| "Reference another resource's `id` (a UUID).".to_string())
    })
}

// ---- small model helpers ----

pub fn opt_str(t: &Tf<String>) -> Option<String> {
    t.known().cloned()
}

pub fn opt_num<T: TryFrom<i64>>(t: &Tf<i64>) -> Option<T> {
    t.known().and_then(|n| T::try_from(*n).ok())
}

pub fn tf_opt<T>(v: Option<T>) -> Tf<T> {
    v.into()
}

pub fn tf_num<T: Into<i64>>(v: Option<T>) -> Tf<i64> {
    v.map(Into::into).into()
}

/// The prior value when it means the same as `new` (case-insensitive), so OPNsense's lower-casing never shows
/// up as a diff.
pub fn keep_spelling(prior: Option<&Tf<String>>, new: Option<String>) -> Tf<String> {
    match (prior.and_then(|p| p.known()), new) {
        (Some(p), Some(n)) if p.eq_ignore_ascii_case(&n) => Tf::Known(p.clone()),
        (_, n) => n.into(),
    }
}

/// A set-of-strings attribute. Elements stay `Tf` because a configured set may hold unknown elements at plan
/// time (ids of resources not created yet); a `BTreeSet<String>` would collapse them.
pub type StrSet = Tf<Vec<Tf<String>>>;

/// The elements when every one is known.
pub fn set_known(s: &StrSet) -> Option<BTreeSet<String>> {
    s.known()?.iter().map(|e| e.known().cloned()).collect()
}

/// A known set attribute (elements in sorted order, duplicates removed).
pub fn set_of(items: impl IntoIterator<Item = String>) -> StrSet {
    let sorted: BTreeSet<String> = items.into_iter().collect();
    Tf::Known(sorted.into_iter().map(Tf::Known).collect())
}

/// `new` as a set attribute, keeping `prior`'s spelling when it names the same items case-insensitively.
pub fn keep_set_spelling(prior: Option<&StrSet>, new: BTreeSet<String>) -> StrSet {
    if let Some(p) = prior.and_then(set_known) {
        let lower = |s: &BTreeSet<String>| {
            s.iter()
                .map(|x| x.to_ascii_lowercase())
                .collect::<BTreeSet<_>>()
        };
        if lower(&p) == lower(&new) {
            return set_of(p);
        }
    }
    set_of(new)
}

/// Identity of every OPNsense object resource: its UUID.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UuidIdentity {
    pub id: String,
}

pub fn uuid_identity_schema(what: &str) -> IdentitySchema {
    IdentitySchema::new().attribute(IdentityAttribute::string(
        "id",
        format!("The UUID OPNsense gave the {what} (shown in the OPNsense UI and API)."),
    ))
}

/// The `id` attribute all object resources share.
pub fn id_attribute(what: &str) -> Attribute {
    Attribute::string("id")
        .computed()
        .use_state_for_unknown()
        .description(format!(
            "The {what}'s UUID in OPNsense. Chosen by the provider on create (so a retried create never makes a \
             duplicate); use it to reference the object from other resources."
        ))
}

/// Config of the list resources (no filters).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NoConfig {}

/// The one object an import id names when it is not a UUID: exactly one match, else `none` (no match) or the
/// diagnostic `many` builds from the matches.
pub fn single_match(
    hits: &[Uuid],
    none: Diagnostic,
    many: impl FnOnce(&[Uuid]) -> Diagnostic,
) -> Result<Uuid, Diagnostics> {
    match hits {
        [u] => Ok(*u),
        [] => Err(none.into()),
        _ => Err(many(hits).into()),
    }
}

/// Builds the stream a list resource returns.
pub fn list_stream<R: Resource<Identity = UuidIdentity>>(
    items: Vec<(UuidIdentity, String, Option<R::Model>)>,
    limit: i64,
) -> ListStream<R> {
    let limit = if limit <= 0 {
        usize::MAX
    } else {
        limit as usize
    };
    let items: Vec<_> = items
        .into_iter()
        .take(limit)
        .map(|(identity, display_name, object)| {
            Ok(ListItem {
                identity,
                display_name,
                object,
            })
        })
        .collect();
    Box::pin(futures::stream::iter(items))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        for ok in [
            "10.0.3.100:6443",
            "*:8404",
            "[::1]:443",
            ":::80",
            "fw.lan:80",
            "127.0.0.1:1",
        ] {
            assert!(check_listen(ok).is_ok(), "{ok}");
        }
        for bad in [
            "10.0.3.100",
            "10.0.3.100:0",
            "10.0.3.100:99999",
            "bad host:80",
            "",
        ] {
            assert!(check_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spelling_is_kept_only_when_equivalent() {
        let prior = Tf::Known("Web.LAN".to_string());
        assert_eq!(keep_spelling(Some(&prior), Some("web.lan".into())), prior);
        assert_eq!(
            keep_spelling(Some(&prior), Some("other".into())),
            Tf::Known("other".to_string())
        );
        assert_eq!(keep_spelling(None, None), Tf::Null);
    }
}
