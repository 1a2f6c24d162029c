//! Plumbing shared by the OPNsense resources: the per-provider client, error → diagnostic mapping, attribute
//! validators for OPNsense's formats, and the one generic managed + list resource every HAProxy object kind is.
//!
//! Why generic: the four HAProxy object resources differ only in their fields. What they share — client-chosen
//! UUIDs, duplicate-name refusal, the coalesced "go live" step, waiting out "in use" on delete, import by UUID or
//! name, listing from the one cached whole-model read, the `Resource` and `ListResource` impls themselves — lives
//! here once ([`HaproxyResource`], [`HaproxyList`]); a resource file is a [`HaproxySpec`]: schema, model, field
//! mapping and its own checks.

use std::collections::BTreeSet;
use std::marker::PhantomData;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::framework::*;
use crate::opnsense::haproxy::{HaproxyObject, Kind, Model};
use crate::opnsense::{Client, Error};

/// The OPNsense client of this provider process (built on first use from the provider's `opnsense` block).
pub fn client(ctx: &Context) -> Result<Arc<Client>, Diagnostics> {
    let pd = ctx.provider()?;
    pd.cached::<Client>(|pd| {
        Client::new(pd.opnsense()?).map_err(|e| {
            Diagnostic::error("Invalid OPNsense connection settings", e.to_string())
                .at(attr("opnsense"))
                .into()
        })
    })
}

/// The client when the provider's OPNsense settings are known; `None` at plan time when they are not (then
/// plan-time checks against the live box are skipped and happen at apply).
pub fn client_if_ready(ctx: &Context) -> Option<Arc<Client>> {
    let pd = ctx.provider_opt()?;
    pd.opnsense().ok()?;
    client(ctx).ok()
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

// ---- the generic HAProxy object resource ----

/// What a HAProxy object resource is made of: its schema, its model, the mapping between the model and the API
/// object, and any checks of its own. [`HaproxyResource`] and [`HaproxyList`] turn a spec into the managed and the
/// list resource, so the resource files hold nothing else.
pub trait HaproxySpec: Send + Sync + 'static {
    type Obj: HaproxyObject;
    type Model: Serialize + DeserializeOwned + Clone + Default + Send + Sync + 'static;
    /// The resource type name, e.g. `homelab_opnsense_haproxy_server`.
    const TYPE: &'static str;
    /// Human name, `HAProxy <noun>`, e.g. "HAProxy server" (the noun alone names it in ids and identities).
    const WHAT: &'static str;

    fn schema() -> Schema;
    fn id(m: &Self::Model) -> &Tf<String>;
    fn set_id(m: &mut Self::Model, id: String);
    fn name(m: &Self::Model) -> &Tf<String>;
    /// A wholly known planned model → the API object.
    fn to_obj(m: &Self::Model) -> Result<Self::Obj, Diagnostics>;
    /// The API object → a wholly known model, keeping `prior`'s spelling where the meaning is the same.
    fn from_obj(uuid: Uuid, o: &Self::Obj, prior: Option<&Self::Model>) -> Self::Model;
    /// Configuration checks beyond the schema's validators (values may be unknown: skip them).
    fn validate(_config: &Self::Model, _diags: &mut Diagnostics) {}
    /// Plan values that follow from other attributes, set before the shared plan-time checks.
    fn adjust_plan(_plan: &mut Plan<Self::Model>) {}
    /// Plan-time warnings against the live model (after the shared checks passed; only where it is reachable).
    fn warn_plan(_ctx: &Context, _planned: &Self::Model, _model: &Model) {}
    /// Apply-time checks against the current model (references exist, modes match).
    fn check(_o: &Self::Obj, _model: &Model) -> Result<(), Diagnostics> {
        Ok(())
    }
}

/// The managed resource of a [`HaproxySpec`].
pub struct HaproxyResource<S>(PhantomData<fn() -> S>);

/// The list resource (`terraform query`) of a [`HaproxySpec`].
pub struct HaproxyList<S>(PhantomData<fn() -> S>);

/// Registers the managed and the list resource of a HAProxy object kind.
pub fn register_haproxy<S: HaproxySpec>(r: &mut Registry) {
    r.resource(HaproxyResource::<S>(PhantomData));
    r.list_resource(HaproxyList::<S>(PhantomData));
}

fn noun<S: HaproxySpec>() -> &'static str {
    S::WHAT.trim_start_matches("HAProxy ")
}

#[async_trait]
impl<S: HaproxySpec> Resource for HaproxyResource<S> {
    type Model = S::Model;
    type Identity = UuidIdentity;

    fn type_name(&self) -> &'static str {
        S::TYPE
    }
    fn schema(&self) -> Schema {
        S::schema()
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(uuid_identity_schema(noun::<S>()))
    }
    fn identity(&self, state: &S::Model) -> Option<UuidIdentity> {
        S::id(state)
            .known()
            .map(|id| UuidIdentity { id: id.clone() })
    }
    fn validate(&self, config: &S::Model, diags: &mut Diagnostics) {
        S::validate(config, diags)
    }
    async fn modify_plan(
        &self,
        ctx: &Context,
        plan: &mut Plan<S::Model>,
    ) -> Result<(), Diagnostics> {
        S::adjust_plan(plan);
        hx_modify_plan::<S>(ctx, plan).await
    }
    async fn create(&self, ctx: &Context, plan: S::Model) -> Result<S::Model, Diagnostics> {
        write::<S>(ctx, Uuid::new_v4(), &plan, false).await
    }
    async fn read(&self, ctx: &Context, state: S::Model) -> Result<Option<S::Model>, Diagnostics> {
        hx_read::<S>(ctx, state).await
    }
    async fn update(
        &self,
        ctx: &Context,
        prior: S::Model,
        plan: S::Model,
    ) -> Result<S::Model, Diagnostics> {
        let uuid = parse_uuid(S::id(&prior).known().map_or("", String::as_str), "id")?;
        write::<S>(ctx, uuid, &plan, true).await
    }
    async fn delete(&self, ctx: &Context, state: S::Model) -> Result<(), Diagnostics> {
        hx_delete::<S>(ctx, state).await
    }
    async fn import(&self, ctx: &Context, id: &str) -> Result<S::Model, Diagnostics> {
        hx_import::<S>(ctx, id).await
    }
    async fn import_identity(
        &self,
        ctx: &Context,
        identity: UuidIdentity,
    ) -> Result<S::Model, Diagnostics> {
        hx_import::<S>(ctx, &identity.id).await
    }
}

#[async_trait]
impl<S: HaproxySpec> ListResource for HaproxyList<S> {
    type Resource = HaproxyResource<S>;
    type Config = NoConfig;
    fn type_name(&self) -> &'static str {
        S::TYPE
    }
    fn schema(&self) -> Schema {
        Schema::new(format!(
            "Lists every {} on the OPNsense, including ones made in the UI.",
            S::WHAT
        ))
    }
    async fn list(
        &self,
        ctx: &Context,
        _config: NoConfig,
        req: ListRequest,
    ) -> Result<ListStream<HaproxyResource<S>>, Diagnostics> {
        Ok(list_stream::<HaproxyResource<S>>(
            hx_list::<S>(ctx, req).await?,
            req.limit,
        ))
    }
}

fn kind<S: HaproxySpec>() -> Kind {
    <S::Obj as HaproxyObject>::KIND
}

fn duplicate_diag(what: &str, name: &str, others: &[Uuid]) -> Diagnostics {
    let list = others
        .iter()
        .map(|u| u.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Diagnostic::error(
        format!("Duplicate {what} name"),
        format!(
            "Another {what} is already named {name:?} (id {list}). OPNsense accepts duplicate names but haproxy \
             refuses them at configtest, so the provider does too: rename one of them, or import the existing \
             object (`terraform import <address> {name}`) instead of creating a new one."
        ),
    )
    .at(attr("name"))
    .into()
}

/// Plan-time duplicate check (where the live box is reachable and the name is known). Also announces a planned
/// create or update to the reconfigure coalescer: in the apply walk Terraform re-plans a resource right before
/// applying it, so the batch being collected can wait for this write instead of going live without it.
async fn hx_modify_plan<S: HaproxySpec>(
    ctx: &Context,
    plan: &mut Plan<S::Model>,
) -> Result<(), Diagnostics> {
    let Some(c) = client_if_ready(ctx) else {
        return Ok(());
    };
    let changes = match &plan.prior {
        None => true,
        Some(prior) => serde_json::to_value(prior).ok() != serde_json::to_value(&plan.planned).ok(),
    };
    if changes {
        c.expect_haproxy_write();
    }
    // An unreachable box is not a plan error here: refresh already reported it, or apply will.
    let Ok(model) = c.haproxy().model().await else {
        return Ok(());
    };
    if let Some(name) = S::name(&plan.planned).known() {
        let own = plan
            .prior
            .as_ref()
            .and_then(|p| S::id(p).known())
            .and_then(|s| Uuid::parse_str(s).ok());
        let others = model.others_named(kind::<S>(), name, own);
        if !others.is_empty() {
            return Err(duplicate_diag(S::WHAT, name, &others));
        }
    }
    S::warn_plan(ctx, &plan.planned, &model);
    Ok(())
}

async fn write<S: HaproxySpec>(
    ctx: &Context,
    uuid: Uuid,
    plan: &S::Model,
    existed: bool,
) -> Result<S::Model, Diagnostics> {
    let c = client(ctx)?;
    c.haproxy_write_arrived();
    let obj = S::to_obj(plan)?;
    let name = <S::Obj as HaproxyObject>::name(&obj).to_string();
    let model = c
        .haproxy()
        .model()
        .await
        .map_err(|e| diags(e, &format!("Could not read the {}s", S::WHAT)))?;
    if let Err(others) = c.claim_name(kind::<S>(), &name, uuid, &model) {
        return Err(duplicate_diag(S::WHAT, &name, &others));
    }
    S::check(&obj, &model)?;
    if matches!(kind::<S>(), Kind::Backend | Kind::Frontend)
        && model.settings().is_ok_and(|g| !g.enabled)
    {
        ctx.warn(
            "HAProxy is disabled on the firewall",
            "The change is saved, but HAProxy's service is disabled, so nothing serves it (and every reconfigure \
             keeps it stopped). Enable it with a `homelab_opnsense_haproxy_settings` resource.",
        );
    }
    let verb = if existed { "update" } else { "create" };
    if let Err(e) = c.haproxy_put(uuid, &obj, existed).await {
        if !existed {
            c.release_name(kind::<S>(), uuid);
            // A failed create must not leave an object Terraform does not know about (it would block the next
            // attempt as a duplicate). Validation failures saved nothing; a configtest failure was reverted.
            if !matches!(
                e,
                Error::Validation { .. } | Error::Failed { .. } | Error::ConfigTest { .. }
            ) {
                let _ = c.haproxy().delete(kind::<S>(), uuid).await;
            }
        }
        return Err(diags(e, &format!("Could not {verb} the {}", S::WHAT)));
    }
    // The state is what was written (OPNsense stores it as sent), so the result matches the plan exactly.
    Ok(S::from_obj(uuid, &obj, Some(plan)))
}

async fn hx_read<S: HaproxySpec>(
    ctx: &Context,
    state: S::Model,
) -> Result<Option<S::Model>, Diagnostics> {
    let c = client(ctx)?;
    let id = S::id(&state).known().cloned().unwrap_or_default();
    let uuid = parse_uuid(&id, "id")?;
    let got = c
        .haproxy()
        .get::<S::Obj>(uuid)
        .await
        .map_err(|e| diags(e, &format!("Could not read the {}", S::WHAT)))?;
    Ok(got.map(|o| S::from_obj(uuid, &o, Some(&state))))
}

async fn hx_delete<S: HaproxySpec>(ctx: &Context, state: S::Model) -> Result<(), Diagnostics> {
    let c = client(ctx)?;
    let id = S::id(&state).known().cloned().unwrap_or_default();
    let uuid = parse_uuid(&id, "id")?;
    // A dependent being changed in the same apply may still hold a reference: wait a little for it. Briefly: a
    // waiting delete holds one of Terraform's parallelism slots, which the dependent's own change may need.
    let mut wait = Duration::from_millis(200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    loop {
        match c.haproxy_delete(kind::<S>(), uuid).await {
            Ok(_) => {
                c.release_name(kind::<S>(), uuid);
                return Ok(());
            }
            Err(Error::InUse { message, .. }) if tokio::time::Instant::now() + wait > deadline => {
                return Err(Diagnostic::error(
                    format!("The {} is still in use", S::WHAT),
                    format!(
                        "OPNsense refused to delete it because other objects reference it: {}. Remove those \
                         references (or the objects) first; nothing was deleted.",
                        message.trim()
                    ),
                )
                .into());
            }
            Err(Error::InUse { .. }) => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(3));
            }
            Err(e) => return Err(diags(e, &format!("Could not delete the {}", S::WHAT))),
        }
    }
}

/// Import by UUID or by name (names must be unique for this to work).
async fn hx_import<S: HaproxySpec>(ctx: &Context, id: &str) -> Result<S::Model, Diagnostics> {
    let uuid = match Uuid::parse_str(id.trim()) {
        Ok(u) => u,
        Err(_) => {
            let c = client(ctx)?;
            let model = c
                .haproxy()
                .model()
                .await
                .map_err(|e| diags(e, &format!("Could not read the {}s", S::WHAT)))?;
            let found: Vec<Uuid> = model
                .names(kind::<S>())
                .into_iter()
                .filter(|(_, n)| n == id.trim())
                .map(|(u, _)| u)
                .collect();
            single_match(
                &found,
                Diagnostic::error(
                    format!("No {} to import", S::WHAT),
                    format!("There is no {} with the UUID or name {id:?}.", S::WHAT),
                ),
                |many| {
                    Diagnostic::error(
                        format!("Ambiguous {} name", S::WHAT),
                        format!(
                            "Several {}s are named {id:?} ({}); import one by its UUID.",
                            S::WHAT,
                            many.iter()
                                .map(|u| u.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                },
            )?
        }
    };
    let mut m = S::Model::default();
    S::set_id(&mut m, uuid.to_string());
    Ok(m)
}

/// All objects of the kind, for `terraform query`.
async fn hx_list<S: HaproxySpec>(
    ctx: &Context,
    req: ListRequest,
) -> Result<Vec<(UuidIdentity, String, Option<S::Model>)>, Diagnostics> {
    let c = client(ctx)?;
    let items = c
        .haproxy()
        .list::<S::Obj>()
        .await
        .map_err(|e| diags(e, &format!("Could not list the {}s", S::WHAT)))?;
    let mut out = Vec::new();
    for (uuid, obj) in items {
        let obj = obj.map_err(|e| diags(e, &format!("Could not read a {}", S::WHAT)))?;
        let name = <S::Obj as HaproxyObject>::name(&obj).to_string();
        let model = req
            .include_resource_object
            .then(|| S::from_obj(uuid, &obj, None));
        out.push((
            UuidIdentity {
                id: uuid.to_string(),
            },
            name,
            model,
        ));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.id.cmp(&b.0.id)));
    Ok(out)
}

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
