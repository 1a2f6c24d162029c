//! The one generic OPNsense object resource (and its list resource) every OPNsense object type is: HAProxy servers,
//! health checks, backends and frontends, virtual IPs, firewall aliases and firewall rules.
//!
//! Why generic: these resources differ in their fields and a few checks of their own, not in how they behave. What
//! they share — a client-chosen UUID on create (a retried create never duplicates), the state being what was
//! written, no half-made object left behind by a failed create, read and refresh by UUID, import by UUID or by a
//! per-type key, the UUID identity, listing for `terraform query`, the `Resource` and `ListResource` impls
//! themselves — lives here once ([`ObjectResource`], [`ObjectList`]). A resource file is an [`ObjectSpec`]: schema,
//! model, the mapping between the model and the client's object, and its own checks.
//!
//! How a change goes live differs by *family*, so that is the one other choice a spec makes ([`Family`]):
//! - [`HaproxyFamily`]: objects of the whole HAProxy model. Names must be unique (haproxy refuses duplicates at
//!   configtest, OPNsense does not), writes are announced at plan time to the reconfigure coalescer, a delete waits
//!   briefly while a dependent being changed in the same apply still references the object, import by name.
//! - [`ItemFamily`]: plain MVC items of one service ([`crate::opnsense::item`]): saved, then one service action per
//!   batch; import by UUID unless the spec says how else ([`ObjectSpec::find`]).

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use super::opnsense_common::*;
use crate::framework::*;
use crate::opnsense::haproxy::{HaproxyObject, Kind};
use crate::opnsense::item::Item;
use crate::opnsense::{Client, Error};

/// What one OPNsense object resource is made of. [`ObjectResource`] and [`ObjectList`] turn a spec into the managed
/// and the list resource, so the resource files hold nothing else. Hooks with a default do nothing (or what the
/// family does) unless the type needs more.
#[async_trait]
pub trait ObjectSpec: Sized + Send + Sync + 'static {
    /// The client's typed object (`crate::opnsense::haproxy::Server`, `crate::opnsense::vip::Vip`, …).
    type Obj: Clone + Send + Sync + 'static;
    type Model: Serialize + DeserializeOwned + Clone + Default + Send + Sync + 'static;
    /// How its changes go live: [`HaproxyFamily`] or [`ItemFamily`].
    type Family: Family<Self>;
    /// The resource type name, e.g. `homelab_opnsense_haproxy_server`.
    const TYPE: &'static str;
    /// Human name in diagnostics, e.g. "HAProxy server", "virtual IP".
    const WHAT: &'static str;
    /// The noun of the identity's description, e.g. "server", "virtual IP".
    const NOUN: &'static str;
    /// Whether `terraform query` lists objects sorted by display name (else in OPNsense's order).
    const SORT_LIST: bool = true;
    /// Whether `terraform query` leaves out objects the client cannot decode (else the list fails).
    const SKIP_UNREADABLE: bool = false;

    fn schema() -> Schema;
    fn id(m: &Self::Model) -> &Tf<String>;
    fn set_id(m: &mut Self::Model, id: String);
    /// The `name` attribute, for types whose names the provider keeps unique (the HAProxy family).
    fn name(_m: &Self::Model) -> Option<&Tf<String>> {
        None
    }
    /// A wholly known planned model → the client's object.
    fn to_obj(m: &Self::Model) -> Result<Self::Obj, Diagnostics>;
    /// The client's object → a wholly known model, keeping `prior`'s spelling where the meaning is the same.
    fn from_obj(uuid: Uuid, o: &Self::Obj, prior: Option<&Self::Model>) -> Self::Model;

    /// Configuration checks beyond the schema's validators (values may be unknown: skip them).
    fn validate(_config: &Self::Model, _diags: &mut Diagnostics) {}
    /// Plan values that follow from other attributes, set before anything asks the firewall.
    fn adjust_plan(_plan: &mut Plan<Self::Model>) {}
    /// Plan-time checks and warnings against the live box (only where it is reachable; after the family's own
    /// checks passed).
    async fn plan_check(
        _ctx: &Context,
        _c: &Client,
        _plan: &Plan<Self::Model>,
    ) -> Result<(), Diagnostics> {
        Ok(())
    }
    /// Values chosen at apply, before the write (a free CARP vhid, the next rule sequence).
    async fn prepare(_c: &Client, _plan: &mut Self::Model) -> Result<(), Diagnostics> {
        Ok(())
    }
    /// Apply-time checks of the object about to be written (references exist, modes match).
    async fn check(_c: &Client, _o: &Self::Obj) -> Result<(), Diagnostics> {
        Ok(())
    }
    /// The UUID an import id that is not a UUID names (default: the family's way).
    async fn find(c: &Client, id: &str) -> Result<Uuid, Diagnostics> {
        <Self::Family as Family<Self>>::find(c, id).await
    }
    /// The name `terraform query` shows; `None` leaves the object out (default: the family's way).
    fn display_name(uuid: Uuid, o: &Self::Obj) -> Option<String> {
        <Self::Family as Family<Self>>::display_name(uuid, o)
    }
    /// The list resource's description (default: the family's).
    fn list_description() -> String {
        <Self::Family as Family<Self>>::list_description()
    }
    /// Plural for list diagnostics ("Could not list the …").
    fn plural() -> String {
        format!("{}s", Self::WHAT)
    }
}

/// How the objects of one family are read, written, deleted and found (see the module docs).
#[async_trait]
pub trait Family<S: ObjectSpec>: Send + Sync + 'static {
    /// The family's plan-time part (the client is reachable); runs [`ObjectSpec::plan_check`].
    async fn plan(ctx: &Context, c: &Client, plan: &Plan<S::Model>) -> Result<(), Diagnostics>;
    async fn get(c: &Client, uuid: Uuid) -> Result<Option<S::Obj>, Error>;
    async fn list(c: &Client) -> Result<Vec<(Uuid, Result<S::Obj, Error>)>, Error>;
    /// Prepares, checks and writes the plan; returns the object written once it is live.
    async fn write(
        ctx: &Context,
        c: &Client,
        uuid: Uuid,
        plan: &mut S::Model,
        existed: bool,
    ) -> Result<S::Obj, Diagnostics>;
    async fn delete(c: &Client, uuid: Uuid) -> Result<(), Diagnostics>;
    async fn find(c: &Client, id: &str) -> Result<Uuid, Diagnostics>;
    fn display_name(uuid: Uuid, o: &S::Obj) -> Option<String>;
    fn list_description() -> String;
    /// On refresh, with an HA secondary: the secondary's copy of the object when it differs from the primary's
    /// (only the HAProxy family is synced and deployed there by the provider), so the refreshed state shows what
    /// the pair does not agree on and the plan updates it; the apply then syncs the primary's configuration over
    /// the secondary. A copy that is missing or unreadable is a warning only.
    async fn secondary_view(
        _ctx: &Context,
        _c: &Client,
        _uuid: Uuid,
        _primary: &S::Obj,
    ) -> Option<S::Obj> {
        None
    }
}

/// The managed resource of an [`ObjectSpec`].
pub struct ObjectResource<S>(PhantomData<fn() -> S>);

/// The list resource (`terraform query`) of an [`ObjectSpec`].
pub struct ObjectList<S>(PhantomData<fn() -> S>);

/// Registers the managed and the list resource of an OPNsense object type.
pub fn register_object<S: ObjectSpec>(r: &mut Registry) {
    r.resource(ObjectResource::<S>(PhantomData));
    r.list_resource(ObjectList::<S>(PhantomData));
}

fn uuid_of<S: ObjectSpec>(m: &S::Model) -> Result<Uuid, Diagnostics> {
    parse_uuid(S::id(m).known().map_or("", String::as_str), "id")
}

async fn write<S: ObjectSpec>(
    ctx: &Context,
    uuid: Uuid,
    mut plan: S::Model,
    existed: bool,
) -> Result<S::Model, Diagnostics> {
    let c = client(ctx)?;
    let obj = match S::Family::write(ctx, &c, uuid, &mut plan, existed).await {
        Ok(obj) => obj,
        Err(d) => {
            // A create that failed but left the object on the firewall (the primary took it and the HA secondary
            // did not, or its clean-up failed too) goes into state with the error: Terraform marks it tainted and
            // the next plan replaces it, instead of the object blocking the retry as an unknown duplicate.
            if !existed {
                if let Ok(Some(left)) = S::Family::get(&c, uuid).await {
                    ctx.keep_created(S::from_obj(uuid, &left, Some(&plan)));
                    let mut d = d;
                    d.push(Diagnostic::warning(
                        format!("The {} is kept in state, tainted", S::WHAT),
                        format!(
                            "The create failed after OPNsense saved the {} ({uuid}), so Terraform keeps it and \
                             marks it tainted: once the cause above is fixed, the next apply replaces it, which \
                             repeats every step that failed.",
                            S::WHAT
                        ),
                    ));
                    return Err(d);
                }
            }
            return Err(d);
        }
    };
    // The state is what was written (OPNsense stores it as sent), so the result matches the plan exactly.
    Ok(S::from_obj(uuid, &obj, Some(&plan)))
}

#[async_trait]
impl<S: ObjectSpec> Resource for ObjectResource<S> {
    type Model = S::Model;
    type Identity = UuidIdentity;

    fn type_name(&self) -> &'static str {
        S::TYPE
    }
    fn schema(&self) -> Schema {
        S::schema()
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(uuid_identity_schema(S::NOUN))
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
        let Some(c) = client_if_ready(ctx) else {
            return Ok(());
        };
        S::Family::plan(ctx, &c, plan).await
    }
    async fn create(&self, ctx: &Context, plan: S::Model) -> Result<S::Model, Diagnostics> {
        write::<S>(ctx, Uuid::new_v4(), plan, false).await
    }
    async fn read(&self, ctx: &Context, state: S::Model) -> Result<Option<S::Model>, Diagnostics> {
        let c = client(ctx)?;
        let uuid = uuid_of::<S>(&state)?;
        let got = S::Family::get(&c, uuid)
            .await
            .map_err(|e| diags(e, &format!("Could not read the {}", S::WHAT)))?;
        let got = match got {
            Some(o) => Some(
                S::Family::secondary_view(ctx, &c, uuid, &o)
                    .await
                    .unwrap_or(o),
            ),
            None => None,
        };
        Ok(got.map(|o| S::from_obj(uuid, &o, Some(&state))))
    }
    async fn update(
        &self,
        ctx: &Context,
        prior: S::Model,
        plan: S::Model,
    ) -> Result<S::Model, Diagnostics> {
        write::<S>(ctx, uuid_of::<S>(&prior)?, plan, true).await
    }
    async fn delete(&self, ctx: &Context, state: S::Model) -> Result<(), Diagnostics> {
        let c = client(ctx)?;
        S::Family::delete(&c, uuid_of::<S>(&state)?).await
    }
    async fn import(&self, ctx: &Context, id: &str) -> Result<S::Model, Diagnostics> {
        let uuid = match Uuid::parse_str(id.trim()) {
            Ok(u) => u,
            Err(_) => S::find(&*client(ctx)?, id).await?,
        };
        let mut m = S::Model::default();
        S::set_id(&mut m, uuid.to_string());
        Ok(m)
    }
    async fn import_identity(
        &self,
        ctx: &Context,
        identity: UuidIdentity,
    ) -> Result<S::Model, Diagnostics> {
        self.import(ctx, &identity.id).await
    }
}

#[async_trait]
impl<S: ObjectSpec> ListResource for ObjectList<S> {
    type Resource = ObjectResource<S>;
    type Config = NoConfig;
    fn type_name(&self) -> &'static str {
        S::TYPE
    }
    fn schema(&self) -> Schema {
        Schema::new(S::list_description())
    }
    async fn list(
        &self,
        ctx: &Context,
        _config: NoConfig,
        req: ListRequest,
    ) -> Result<ListStream<ObjectResource<S>>, Diagnostics> {
        let c = client(ctx)?;
        let all = S::Family::list(&c)
            .await
            .map_err(|e| diags(e, &format!("Could not list the {}", S::plural())))?;
        let mut items = Vec::new();
        for (uuid, obj) in all {
            let obj = match obj {
                Ok(o) => o,
                Err(_) if S::SKIP_UNREADABLE => continue,
                Err(e) => return Err(diags(e, &format!("Could not read a {}", S::WHAT))),
            };
            let Some(name) = S::display_name(uuid, &obj) else {
                continue;
            };
            let model = req
                .include_resource_object
                .then(|| S::from_obj(uuid, &obj, None));
            items.push((
                UuidIdentity {
                    id: uuid.to_string(),
                },
                name,
                model,
            ));
        }
        if S::SORT_LIST {
            items.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.id.cmp(&b.0.id)));
        }
        Ok(list_stream::<ObjectResource<S>>(items, req.limit))
    }
}

// ---- the HAProxy family ----

/// Objects of the whole HAProxy model ([`crate::opnsense::haproxy`]): unique names, announced writes, configtest →
/// reconfigure per batch.
pub struct HaproxyFamily;

fn kind<S: ObjectSpec>() -> Kind
where
    S::Obj: HaproxyObject,
{
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

/// Warns when HAProxy's service is disabled once a backend or frontend change is live (nothing serves it).
///
/// Why after the write and not before: a `homelab_opnsense_haproxy_settings` resource in the same configuration
/// that enables HAProxy is applied in parallel with this resource (nothing orders them), and a resource cannot see
/// other resources' plans. Checked before the write, the settings were often not saved yet, so the warning told
/// users to add a resource they already had. Once this change is live, a settings write saved in the meantime —
/// in particular one in the same reconfigure batch, which the settings resource makes likely by announcing its
/// write at plan — is in the model we read here. One case remains where HAProxy is disabled here and enabled a
/// moment later: the settings resource applied after this one. The text says so, so that it is true either way.
async fn warn_if_haproxy_disabled(ctx: &Context, c: &Client, what: &str) {
    let Ok(model) = c.haproxy().model().await else {
        return;
    };
    if model.settings().is_ok_and(|g| !g.enabled) {
        ctx.warn(
            "HAProxy is disabled on the firewall",
            format!(
                "The {what} is saved and applied, but HAProxy's service was disabled when the change went live, so \
                 nothing serves it yet (every reconfigure keeps the service stopped). If a \
                 `homelab_opnsense_haproxy_settings` resource with `enabled = true` in this configuration is applied \
                 after this one, it starts HAProxy and nothing else is needed; otherwise enable HAProxy with one."
            ),
        );
    }
}

#[async_trait]
impl<S: ObjectSpec> Family<S> for HaproxyFamily
where
    S::Obj: HaproxyObject,
{
    /// Duplicate-name check (where the name is known). Also announces a planned create or update to the
    /// reconfigure coalescer: in the apply walk Terraform re-plans a resource right before applying it, so the batch
    /// being collected can wait for this write instead of going live without it.
    async fn plan(ctx: &Context, c: &Client, plan: &Plan<S::Model>) -> Result<(), Diagnostics> {
        let changes = match &plan.prior {
            None => true,
            Some(prior) => {
                serde_json::to_value(prior).ok() != serde_json::to_value(&plan.planned).ok()
            }
        };
        if changes {
            c.expect_haproxy_write();
        }
        // An unreachable box is not a plan error here: refresh already reported it, or apply will.
        let Ok(model) = c.haproxy().model().await else {
            return Ok(());
        };
        if let Some(name) = S::name(&plan.planned).and_then(Tf::known) {
            let own = plan
                .prior
                .as_ref()
                .and_then(|p| S::id(p).known())
                .and_then(|s| Uuid::parse_str(s).ok());
            let others = model.others_named(kind::<S>(), name, own);
            // A create whose name is held only by objects refreshed from state in this run is, in the usual case,
            // the replacement of a tainted object (Terraform plans it as a create with no prior state and deletes
            // the old object first). Two resources of the configuration naming one object still fail, at apply,
            // when the name is claimed.
            let replacing = plan.prior.is_none() && c.read_by_id(kind::<S>(), &others);
            if !others.is_empty() && !replacing {
                return Err(duplicate_diag(S::WHAT, name, &others));
            }
        }
        // Not held across an await: a write recorded in the cache while a snapshot is shared copies the whole model
        // (see `ModelCache::record`), and in an apply Terraform re-plans resources while others are being written.
        drop(model);
        S::plan_check(ctx, c, plan).await
    }

    async fn get(c: &Client, uuid: Uuid) -> Result<Option<S::Obj>, Error> {
        c.note_read_by_id(kind::<S>(), uuid);
        c.haproxy().get::<S::Obj>(uuid).await
    }

    /// The secondary's model is read once per run (its cache). A copy that differs in any managed field is
    /// returned (the refreshed state takes it, so the plan shows the difference as an update, and applying it
    /// writes the primary's value and syncs the pair), with a warning naming the firewall; this is also how a
    /// batch whose secondary step failed is retried by the next plan. A missing copy cannot be planned (the
    /// object exists where Terraform manages it): it is a warning with the fix.
    async fn secondary_view(
        ctx: &Context,
        c: &Client,
        uuid: Uuid,
        primary: &S::Obj,
    ) -> Option<S::Obj> {
        let (firewall, hx) = c.secondary()?;
        let name = primary.name().to_string();
        match hx.get::<S::Obj>(uuid).await {
            Ok(Some(o)) if o.to_wire() == primary.to_wire() => None,
            Ok(Some(o)) => {
                ctx.warn(
                    format!("The {} `{name}` differs on the HA secondary", S::WHAT),
                    format!(
                        "The secondary firewall {firewall} holds a different copy of the {} `{name}` ({uuid}) \
                         than the primary: a change made by hand there, or a sync that failed. The plan shows the \
                         secondary's values; applying it syncs the primary's configuration over the secondary and \
                         deploys it there.",
                        S::WHAT
                    ),
                );
                Some(o)
            }
            Ok(None) => {
                ctx.warn(
                    format!("The {} `{name}` differs on the HA secondary", S::WHAT),
                    format!(
                        "The secondary firewall {firewall} has no copy of the {} `{name}` ({uuid}). The next apply \
                         that changes a HAProxy object syncs the primary's configuration over it and deploys it \
                         there; to sync now without a change, POST core/hasync_status/restart/haproxy on the \
                         primary.",
                        S::WHAT
                    ),
                );
                None
            }
            Err(e) => {
                ctx.warn(
                    format!("Could not read the {} on the HA secondary", S::WHAT),
                    format!("Reading `{name}` on the secondary firewall {firewall} failed: {e}"),
                );
                None
            }
        }
    }

    async fn list(c: &Client) -> Result<Vec<(Uuid, Result<S::Obj, Error>)>, Error> {
        c.haproxy().list::<S::Obj>().await
    }

    async fn write(
        ctx: &Context,
        c: &Client,
        uuid: Uuid,
        plan: &mut S::Model,
        existed: bool,
    ) -> Result<S::Obj, Diagnostics> {
        // First, whatever follows: the coalescer stops waiting for this announced write.
        c.haproxy_write_arrived();
        S::prepare(c, plan).await?;
        let obj = S::to_obj(plan)?;
        let name = obj.name().to_string();
        let model = c
            .haproxy()
            .model()
            .await
            .map_err(|e| diags(e, &format!("Could not read the {}s", S::WHAT)))?;
        let claimed = c.claim_name(kind::<S>(), &name, uuid, &model);
        // Released before the write: the write records itself in the cached model, and a snapshot still held here
        // (and by the other writers of a parallel apply) would make that a copy of the whole model per write,
        // O(N) each and O(N²) for N creates.
        drop(model);
        if let Err(others) = claimed {
            return Err(duplicate_diag(S::WHAT, &name, &others));
        }
        S::check(c, &obj).await?;
        let verb = if existed { "update" } else { "create" };
        if let Err(e) = c.haproxy_put(uuid, &obj, existed).await {
            if !existed {
                c.release_name(kind::<S>(), uuid);
                // A failed create must not leave an object Terraform does not know about (it would block the next
                // attempt as a duplicate). Validation failures saved nothing; a configtest failure was reverted.
                // The clean-up retries through an API restart (within its budget and Terraform's cancellation).
                // A failure on the HA secondary leaves the primary as it is (live there).
                if !matches!(
                    e,
                    Error::Validation { .. }
                        | Error::Failed { .. }
                        | Error::ConfigTest { .. }
                        | Error::Secondary { .. }
                ) {
                    let left = c
                        .discard_haproxy(kind::<S>(), uuid, ctx.cancellation())
                        .await;
                    let mut d = diags(e, &format!("Could not {verb} the {}", S::WHAT));
                    if let Err(left) = left {
                        d.push(orphan_diag(S::WHAT, uuid, &left));
                    }
                    return Err(d);
                }
            }
            return Err(diags(e, &format!("Could not {verb} the {}", S::WHAT)));
        }
        if matches!(kind::<S>(), Kind::Backend | Kind::Frontend) {
            warn_if_haproxy_disabled(ctx, c, S::WHAT).await;
        }
        Ok(obj)
    }

    async fn delete(c: &Client, uuid: Uuid) -> Result<(), Diagnostics> {
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
                Err(Error::InUse { message, .. })
                    if tokio::time::Instant::now() + wait > deadline =>
                {
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

    /// Import by name (names must be unique for this to work).
    async fn find(c: &Client, id: &str) -> Result<Uuid, Diagnostics> {
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
        )
    }

    fn display_name(_uuid: Uuid, o: &S::Obj) -> Option<String> {
        Some(o.name().to_string())
    }

    fn list_description() -> String {
        format!(
            "Lists every {} on the OPNsense, including ones made in the UI.",
            S::WHAT
        )
    }
}

/// The failed create's object could not be removed either: say which one, so the user can delete or import it.
fn orphan_diag(what: &str, uuid: Uuid, e: &Error) -> Diagnostic {
    Diagnostic::error(
        format!("A half-created {what} may be left on the OPNsense"),
        format!(
            "The create failed and removing what it may have saved failed too ({e}). If the {what} is in state \
             as tainted, the next apply replaces it; otherwise check for the {what} with UUID {uuid}: delete it \
             in the UI, or import it (`terraform import <address> {uuid}`) before applying again."
        ),
    )
}

// ---- the item family ----

/// Plain MVC items of one service ([`crate::opnsense::item`]): saved, then one service action per batch.
pub struct ItemFamily;

#[async_trait]
impl<S: ObjectSpec> Family<S> for ItemFamily
where
    S::Obj: Item,
{
    async fn plan(ctx: &Context, c: &Client, plan: &Plan<S::Model>) -> Result<(), Diagnostics> {
        S::plan_check(ctx, c, plan).await
    }

    async fn get(c: &Client, uuid: Uuid) -> Result<Option<S::Obj>, Error> {
        c.items::<S::Obj>().get(uuid).await
    }

    async fn list(c: &Client) -> Result<Vec<(Uuid, Result<S::Obj, Error>)>, Error> {
        c.items::<S::Obj>().list().await
    }

    async fn write(
        ctx: &Context,
        c: &Client,
        uuid: Uuid,
        plan: &mut S::Model,
        existed: bool,
    ) -> Result<S::Obj, Diagnostics> {
        S::prepare(c, plan).await?;
        let obj = S::to_obj(plan)?;
        S::check(c, &obj).await?;
        if let Err(e) = c.item_put(uuid, &obj).await {
            if !existed && !matches!(e, Error::Validation { .. } | Error::Failed { .. }) {
                // No object Terraform does not know about, even across an API restart.
                let left = c.discard_item::<S::Obj>(uuid, ctx.cancellation()).await;
                let mut d = diags(e, &format!("Could not apply the {}", S::WHAT));
                if let Err(left) = left {
                    d.push(orphan_diag(S::WHAT, uuid, &left));
                }
                return Err(d);
            }
            return Err(diags(e, &format!("Could not apply the {}", S::WHAT)));
        }
        Ok(obj)
    }

    async fn delete(c: &Client, uuid: Uuid) -> Result<(), Diagnostics> {
        c.item_delete::<S::Obj>(uuid)
            .await
            .map(|_| ())
            .map_err(|e| diags(e, &format!("Could not delete the {}", S::WHAT)))
    }

    /// Import by UUID only (a spec with a natural key overrides [`ObjectSpec::find`]).
    async fn find(_c: &Client, id: &str) -> Result<Uuid, Diagnostics> {
        Err(Diagnostic::error(
            format!("No {} to import", S::WHAT),
            format!("{id:?} is not a UUID; import the {} by its UUID.", S::WHAT),
        )
        .into())
    }

    fn display_name(uuid: Uuid, _o: &S::Obj) -> Option<String> {
        Some(uuid.to_string())
    }

    fn list_description() -> String {
        format!("Lists every {} on the OPNsense.", S::WHAT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opnsense::coalesce::Timing;
    use crate::opnsense::haproxy::Settings;
    use crate::opnsense::ClientConfig;
    use crate::resources::opnsense_haproxy_frontend::{FrontendModel, Spec as FrontendSpec};
    use crate::testing::opnsense::Fake;
    use tokio_util::sync::CancellationToken;

    fn client(url: &str) -> Client {
        let mut cfg = ClientConfig::new(url, "key", "secret");
        cfg.timeout = Duration::from_millis(800);
        let timing = Timing {
            quiet: Duration::from_millis(60),
            max_wait: Duration::from_millis(1500),
            ..Timing::default()
        };
        Client::with_timing(&cfg, timing).unwrap()
    }

    fn frontend(name: &str) -> FrontendModel {
        FrontendModel {
            name: Tf::Known(name.into()),
            enabled: Tf::Known(true),
            bind: set_of(["127.0.0.1:6443".to_string()]),
            mode: Tf::Known("tcp".into()),
            ..Default::default()
        }
    }

    fn disabled_warnings(ctx: &Context) -> usize {
        ctx.take_warnings()
            .iter()
            .filter(|d| d.summary == "HAProxy is disabled on the firewall")
            .count()
    }

    /// The warning is true when it is given: HAProxy still disabled once the frontend is live warns; a settings
    /// write that lands in the same batch (announced at plan, saved after the frontend's write started, the case of
    /// a first apply) does not.
    #[tokio::test]
    async fn haproxy_disabled_warning_only_when_still_disabled_once_live() {
        let fake = Fake::start().await;
        let c = client(&fake.server.url());
        let ctx = Context::new(None, CancellationToken::new());
        let mut m = frontend("alone");
        <HaproxyFamily as Family<FrontendSpec>>::write(&ctx, &c, Uuid::new_v4(), &mut m, false)
            .await
            .unwrap();
        assert_eq!(disabled_warnings(&ctx), 1);

        // Both were re-planned (each announced its write); the settings' write comes a little after the frontend's.
        c.expect_haproxy_write();
        c.expect_haproxy_write();
        let enable = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.haproxy_write_arrived();
            c.haproxy_put_settings(&Settings {
                enabled: true,
                ..Settings::default()
            })
            .await
        };
        let mut m = frontend("with_settings");
        let (fe, settings) = tokio::join!(
            <HaproxyFamily as Family<FrontendSpec>>::write(&ctx, &c, Uuid::new_v4(), &mut m, false),
            enable
        );
        fe.unwrap();
        settings.unwrap();
        assert_eq!(disabled_warnings(&ctx), 0);
        assert_eq!(fake.state.lock().unwrap().reconfigures, 2, "one batch each");
    }
}
