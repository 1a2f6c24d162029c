//! The typed framework a resource implements: one resource = one file.
//!
//! A resource file declares a schema (with descriptions, flags, plan modifiers and validators), a serde model
//! struct whose fields mirror the schema (each attribute a [`Tf<T>`]: value, null or unknown), and the CRUD
//! methods of [`Resource`]. The framework does everything that is the same for every resource:
//!
//! - decoding Terraform's values into the model and back (every attribute, strictly, via the cty codec);
//! - validation: schema validators on known values, then [`Resource::validate`]; unknown values are skipped
//!   (Terraform validates again once they are known);
//! - planning: computed attributes left null by configuration become unknown ("known after apply") when the
//!   object is created or changes, unless marked [`Attribute::use_state_for_unknown`]; defaults are filled in;
//!   `requires_replace` paths are derived from the schema flags; then [`Resource::modify_plan`] may adjust the
//!   typed plan (custom replacement rules, computed values known at plan time);
//! - apply: dispatching to create/update/delete, checking that the result is wholly known, nulling
//!   write-only attributes, computing identity;
//! - read (a `None` result means "gone": Terraform plans to create it again), import by id or by identity,
//!   list resources for `terraform query`, data sources, ephemeral resources (opened anew in each phase, never
//!   in plan or state; private data for renew/close serialised as JSON);
//! - cancellation (`StopProvider`, i.e. Ctrl-C) and per-operation timeouts, through [`Context`].
//!
//! Nothing here knows protobuf: the server in `crate::plugin` converts wire messages to values and calls the
//! value-level traits of `plugin::service`, which `adapter.rs` implements for the typed traits here. Nothing here
//! knows this provider either: `crate::homelab` implements [`Provider`] and `main.rs` serves it.
//!
//! # Example
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use terraform_provider_homelab::framework::*;
//!
//! #[derive(Debug, Clone, Default, Serialize, Deserialize)]
//! pub struct NoteModel {
//!     pub id: Tf<String>,
//!     pub text: Tf<String>,
//! }
//!
//! #[derive(Debug, Clone, Serialize, Deserialize)]
//! pub struct NoteIdentity { pub id: String }
//!
//! pub struct Note;
//!
//! #[async_trait]
//! impl Resource for Note {
//!     type Model = NoteModel;
//!     type Identity = NoteIdentity;
//!
//!     fn type_name(&self) -> &'static str { "homelab_note" }
//!
//!     fn schema(&self) -> Schema {
//!         Schema::new("A note.")
//!             .attribute(Attribute::string("id").computed().use_state_for_unknown()
//!                 .description("Identifier assigned on create."))
//!             .attribute(Attribute::string("text").required().validate(Validator::not_empty())
//!                 .description("The text."))
//!     }
//!
//!     fn identity_schema(&self) -> Option<IdentitySchema> {
//!         Some(IdentitySchema::new().attribute(IdentityAttribute::string("id", "The note id.")))
//!     }
//!
//!     fn identity(&self, state: &NoteModel) -> Option<NoteIdentity> {
//!         state.id.known().map(|id| NoteIdentity { id: id.clone() })
//!     }
//!
//!     async fn create(&self, ctx: &Context, mut plan: NoteModel) -> Result<NoteModel, Diagnostics> {
//!         let _data = ctx.data::<()>();            // the provider's configured data, if any
//!         plan.id = Tf::Known("n-1".into());       // ... call the API here ...
//!         Ok(plan)
//!     }
//!     async fn read(&self, _ctx: &Context, state: NoteModel) -> Result<Option<NoteModel>, Diagnostics> {
//!         Ok(Some(state))                          // None when the object is gone
//!     }
//!     async fn update(&self, _ctx: &Context, _prior: NoteModel, plan: NoteModel)
//!         -> Result<NoteModel, Diagnostics> { Ok(plan) }
//!     async fn delete(&self, _ctx: &Context, _state: NoteModel) -> Result<(), Diagnostics> { Ok(()) }
//!     async fn import(&self, _ctx: &Context, id: &str) -> Result<NoteModel, Diagnostics> {
//!         Ok(NoteModel { id: Tf::Known(id.to_string()), ..Default::default() })   // then read() fills it
//!     }
//!     async fn import_identity(&self, ctx: &Context, identity: NoteIdentity)
//!         -> Result<NoteModel, Diagnostics> { self.import(ctx, &identity.id).await }
//! }
//!
//! // in src/resources/mod.rs:
//! let mut registry = Registry::new();
//! registry.resource(Note);
//! assert_eq!(registry.schemas().len(), 1);
//! ```
//!
//! Rules of thumb for resource authors:
//! - Every schema attribute and nested block is a field of the model with the same name (serde renames are
//!   fine). Attributes are `Tf<T>`; a `Single` nested block is `Option<T>`, `List`/`Set` blocks are `Vec<T>`.
//! - `create`/`update` must return a wholly known model that keeps every configured value exactly as planned.
//! - `read` returns what exists remotely (drift) but should keep the user's spelling where the API normalises.
//! - Never put attribute values into diagnostics or logs; name the attribute instead.
//! - Prefer nested blocks to nested attributes: Terraform 1.0.x crashes planning a null nested attribute.
//! - Provider configuration: `ctx.data::<T>()` gives what the provider's [`Provider::configure`] produced (for
//!   this provider `crate::provider::ProviderData::of(ctx)?`, with a diagnostic that says how to configure it).
//! - Long operations should watch `ctx.cancellation()` (Ctrl-C) — the framework also drops the future on
//!   cancel or timeout, so code after an `.await` may never run.

use std::sync::Arc;
use std::time::Duration;

pub use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
pub use tokio_util::sync::CancellationToken;

pub use crate::plugin::codec::{PathStep, Tf, Type, Value};
pub use crate::plugin::diagnostics::{
    attr, AttrPath, Diagnostic, Diagnostics, OrDiag, PathExt, Severity,
};
pub use crate::plugin::schema::{
    AttrKind, Attribute, Block, BlockNesting, IdentityAttribute, IdentitySchema, NestedAttributes,
    NestedBlock, ObjectNesting, RequiresReplace, Schema, Validator,
};
pub use crate::plugin::service::{Context, ListRequest};

pub mod adapter;
pub use adapter::ProviderAdapter;

// ---------------------------------------------------------------------------------------------------------------
// Timeouts

/// Per-operation time limits. When one elapses the operation is cancelled and fails with a clear error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Limit for create.
    pub create: Duration,
    /// Limit for read (refresh, import read-back, data sources, list).
    pub read: Duration,
    /// Limit for update.
    pub update: Duration,
    /// Limit for delete.
    pub delete: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            create: Duration::from_secs(20 * 60),
            read: Duration::from_secs(5 * 60),
            update: Duration::from_secs(20 * 60),
            delete: Duration::from_secs(20 * 60),
        }
    }
}

/// The model of an optional `timeouts { create = "30m" ... }` block (see [`timeouts_block`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeoutsModel {
    /// Create limit, e.g. "30m".
    pub create: Tf<String>,
    /// Read limit.
    pub read: Tf<String>,
    /// Update limit.
    pub update: Tf<String>,
    /// Delete limit.
    pub delete: Tf<String>,
}

/// The `timeouts` block; pair it with a `timeouts: Option<TimeoutsModel>` model field and override
/// [`Resource::timeouts`] with [`Timeouts::from_model`].
///
/// A block rather than the nested attribute (`timeouts = {...}`) the plugin framework recommends: Terraform
/// 1.0.x crashes in `objchange.ProposedNew` on a null nested attribute (measured with 1.0.3), so this provider
/// avoids nested attributes altogether.
pub fn timeouts_block() -> NestedBlock {
    let d = |op: &str| {
        Attribute::string(op.to_string())
            .optional()
            .validate(Validator::string(
                "a duration like \"90s\", \"30m\" or \"2h\"",
                |s| {
                    parse_duration(s).map(|_| ()).map_err(|e| {
                        format!("{e} Use a number followed by s, m or h, e.g. \"30m\".")
                    })
                },
            ))
            .description(format!(
                "Time limit for {op} operations, e.g. `\"30m\"` (units `s`, `m`, `h`)."
            ))
    };
    NestedBlock::single(
        "timeouts",
        Block::new("Time limits for the operations on this resource. Unset limits use the provider defaults.")
            .attribute(d("create"))
            .attribute(d("read"))
            .attribute(d("update"))
            .attribute(d("delete")),
    )
}

/// Parses "90s", "30m", "2h", "1h30m".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("The duration is empty.".into());
    }
    let mut total = 0u64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| "The duration must start with a number.".to_string())?;
        num.clear();
        total += match c {
            's' => n,
            'm' => n * 60,
            'h' => n * 3600,
            _ => return Err(format!("Unknown duration unit {c:?}.")),
        };
    }
    if !num.is_empty() {
        return Err("The duration needs a unit (s, m or h).".into());
    }
    Ok(Duration::from_secs(total))
}

impl Timeouts {
    /// Defaults overridden by whatever the `timeouts` attribute sets.
    pub fn from_model(defaults: Timeouts, model: Option<&TimeoutsModel>) -> Timeouts {
        let Some(m) = model else { return defaults };
        let pick = |t: &Tf<String>, d: Duration| {
            t.known().and_then(|s| parse_duration(s).ok()).unwrap_or(d)
        };
        Timeouts {
            create: pick(&m.create, defaults.create),
            read: pick(&m.read, defaults.read),
            update: pick(&m.update, defaults.update),
            delete: pick(&m.delete, defaults.delete),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Resources

/// Used as `type Identity = NoIdentity` by resources without an identity schema.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoIdentity {}

/// The planning state handed to [`Resource::modify_plan`].
#[derive(Clone, Debug)]
pub struct Plan<M> {
    /// Prior state; `None` when the object is being created.
    pub prior: Option<M>,
    /// The configuration (may contain unknowns).
    pub config: M,
    /// The plan so far (framework modifiers applied). Edit it to set values known at plan time.
    pub planned: M,
    /// Attribute paths whose change forces replacement; the framework has filled in the schema-driven ones.
    pub requires_replace: Vec<AttrPath>,
}

impl<M> Plan<M> {
    /// Whether this plan creates the object.
    pub fn is_create(&self) -> bool {
        self.prior.is_none()
    }

    /// Adds a replacement path (deduplicated).
    pub fn require_replace(&mut self, path: AttrPath) {
        if !self.requires_replace.contains(&path) {
            self.requires_replace.push(path);
        }
    }
}

/// A managed resource. See the module docs for an example.
#[async_trait]
pub trait Resource: Send + Sync + 'static {
    /// The typed object: one field per attribute and nested block.
    type Model: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// The typed identity (`NoIdentity` if none).
    type Identity: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// The resource type name, e.g. `homelab_haproxy_backend`.
    fn type_name(&self) -> &'static str;

    /// The schema. Called once at registration.
    fn schema(&self) -> Schema;

    /// The identity schema (Terraform ≥ 1.12: `import { identity = {...} }`, `terraform query`).
    fn identity_schema(&self) -> Option<IdentitySchema> {
        None
    }

    /// The identity of a (wholly known) object. Required when [`Resource::identity_schema`] is `Some`.
    fn identity(&self, _state: &Self::Model) -> Option<Self::Identity> {
        None
    }

    /// Extra validation of configuration after the schema validators ran. Values may be unknown: skip them.
    fn validate(&self, _config: &Self::Model, _diags: &mut Diagnostics) {}

    /// Adjusts the plan after the framework applied defaults, unknowns and schema replacement rules.
    /// Not called for destroy plans.
    async fn modify_plan(
        &self,
        _ctx: &Context,
        _plan: &mut Plan<Self::Model>,
    ) -> Result<(), Diagnostics> {
        Ok(())
    }

    /// Creates the object. `plan` has unknowns for computed attributes; return a wholly known model.
    async fn create(&self, ctx: &Context, plan: Self::Model) -> Result<Self::Model, Diagnostics>;

    /// Reads the object. `Ok(None)` means it no longer exists.
    async fn read(
        &self,
        ctx: &Context,
        state: Self::Model,
    ) -> Result<Option<Self::Model>, Diagnostics>;

    /// Updates the object in place.
    async fn update(
        &self,
        ctx: &Context,
        prior: Self::Model,
        plan: Self::Model,
    ) -> Result<Self::Model, Diagnostics>;

    /// Deletes the object. Deleting an object that is already gone is success.
    async fn delete(&self, ctx: &Context, state: Self::Model) -> Result<(), Diagnostics>;

    /// `terraform import` / `import { id = ... }`: a model with at least what `read` needs. Terraform calls
    /// `read` right after.
    async fn import(&self, _ctx: &Context, _id: &str) -> Result<Self::Model, Diagnostics> {
        Err(Diagnostic::error(
            "Import not supported",
            format!("The resource type {} cannot be imported.", self.type_name()),
        )
        .into())
    }

    /// `import { identity = {...} }`: like [`Resource::import`], starting from an identity.
    async fn import_identity(
        &self,
        _ctx: &Context,
        _identity: Self::Identity,
    ) -> Result<Self::Model, Diagnostics> {
        Err(Diagnostic::error(
            "Import by identity not supported",
            format!(
                "The resource type {} cannot be imported by identity; use an import ID.",
                self.type_name()
            ),
        )
        .into())
    }

    /// Migrates stored state written by schema version `from_version` (JSON as stored) to the current
    /// schema's JSON shape. Only called when the stored version is older than [`Schema::version`].
    fn upgrade_state(
        &self,
        from_version: i64,
        _state: serde_json::Value,
    ) -> Result<serde_json::Value, Diagnostics> {
        Err(Diagnostic::error(
            "Unsupported state version",
            format!(
                "The state of this {} was written by schema version {from_version}, which this provider \
                 version cannot upgrade. Remove it from state and import it again.",
                self.type_name()
            ),
        )
        .into())
    }

    /// Time limits for an operation on `model` (plan for create/update, state for read/delete).
    fn timeouts(&self, _model: &Self::Model) -> Timeouts {
        Timeouts::default()
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Data sources

/// A data source: configuration in, state out.
#[async_trait]
pub trait DataSource: Send + Sync + 'static {
    /// The typed object (configuration plus computed results).
    type Model: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// The type name, e.g. `homelab_opnsense_haproxy_servers`.
    fn type_name(&self) -> &'static str;

    /// The schema.
    fn schema(&self) -> Schema;

    /// Extra validation (values may be unknown).
    fn validate(&self, _config: &Self::Model, _diags: &mut Diagnostics) {}

    /// Reads: fill in the computed attributes and return a wholly known model.
    async fn read(&self, ctx: &Context, config: Self::Model) -> Result<Self::Model, Diagnostics>;

    /// Time limit for `read`.
    fn timeout(&self) -> Duration {
        Timeouts::default().read
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Ephemeral resources (Terraform ≥ 1.10)

/// What [`EphemeralResource::open`] returns: the result model plus, optionally, when to renew it and the
/// private data renew and close get back.
#[derive(Clone, Debug)]
pub struct Opened<M, P> {
    /// The configuration with the computed attributes filled in (wholly known).
    pub result: M,
    /// When Terraform should call [`EphemeralResource::renew`] (a lease that expires mid-run).
    pub renew_at: Option<std::time::SystemTime>,
    /// Handed back to renew and close. Opaque to Terraform and never in plan or state — but it passes through
    /// Terraform's memory, so keep secrets out of it.
    pub private: Option<P>,
}

impl<M, P> Opened<M, P> {
    /// A result that needs neither renewal nor clean-up.
    pub fn result(result: M) -> Self {
        Self {
            result,
            renew_at: None,
            private: None,
        }
    }
}

/// An ephemeral resource (`ephemeral "type" "name" {}`): a value Terraform opens in each phase that needs it
/// and never writes to plan or state — the way to hand a secret (a kubeconfig, a token) to a provider block, a
/// write-only attribute or a provisioner without persisting it. Terraform does not open it while its
/// configuration is still unknown (it defers it to apply), so `open` sees known values.
#[async_trait]
pub trait EphemeralResource: Send + Sync + 'static {
    /// The typed object (configuration plus computed results).
    type Model: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;
    /// What renew and close need to find what open made (`()` if nothing).
    type Private: Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The type name, e.g. `homelab_k3s_kubeconfig`.
    fn type_name(&self) -> &'static str;

    /// The schema.
    fn schema(&self) -> Schema;

    /// Extra validation (values may be unknown).
    fn validate(&self, _config: &Self::Model, _diags: &mut Diagnostics) {}

    /// Opens: fill in the computed attributes.
    async fn open(
        &self,
        ctx: &Context,
        config: Self::Model,
    ) -> Result<Opened<Self::Model, Self::Private>, Diagnostics>;

    /// Renews what open made; returns the next renewal time and private data, if any.
    async fn renew(
        &self,
        _ctx: &Context,
        _private: Option<Self::Private>,
    ) -> Result<(Option<std::time::SystemTime>, Option<Self::Private>), Diagnostics> {
        Ok((None, None))
    }

    /// Releases what open made (a lease, a temporary credential). Default: nothing to release.
    async fn close(
        &self,
        _ctx: &Context,
        _private: Option<Self::Private>,
    ) -> Result<(), Diagnostics> {
        Ok(())
    }

    /// Time limit for each of open, renew and close.
    fn timeout(&self) -> Duration {
        Timeouts::default().read
    }
}

// ---------------------------------------------------------------------------------------------------------------
// List resources (`terraform query`, Terraform ≥ 1.14)

/// One listed object.
#[derive(Clone, Debug)]
pub struct ListItem<I, M> {
    /// Its identity (required).
    pub identity: I,
    /// A human-readable name.
    pub display_name: String,
    /// The full object, when requested.
    pub object: Option<M>,
}

/// The stream a list resource returns.
pub type ListStream<R> = BoxStream<
    'static,
    Result<ListItem<<R as Resource>::Identity, <R as Resource>::Model>, Diagnostic>,
>;

/// A list resource: enumerates existing objects of the managed resource with the same type name.
#[async_trait]
pub trait ListResource: Send + Sync + 'static {
    /// The managed resource whose objects are listed (same type name, must have an identity).
    type Resource: Resource;
    /// The typed `config { ... }` block of a `list` block.
    type Config: Serialize + DeserializeOwned + Clone + Send + Sync + 'static;

    /// The type name (the managed resource's).
    fn type_name(&self) -> &'static str;

    /// The schema of the `config` block.
    fn schema(&self) -> Schema;

    /// Extra validation (values may be unknown).
    fn validate(&self, _config: &Self::Config, _diags: &mut Diagnostics) {}

    /// Lists objects. Return items in a stable order; Terraform stops reading at `req.limit`.
    async fn list(
        &self,
        ctx: &Context,
        config: Self::Config,
        req: ListRequest,
    ) -> Result<ListStream<Self::Resource>, Diagnostics>;
}

// ---------------------------------------------------------------------------------------------------------------
// Registry

/// Everything a provider serves, built from typed resources (see `crate::resources::registry()`).
#[derive(Default, Clone)]
pub struct Registry {
    inner: crate::plugin::service::Registry,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a managed resource.
    pub fn resource<R: Resource>(&mut self, r: R) -> &mut Self {
        let e = adapter::ResourceAdapter::new(r);
        self.inner
            .resources
            .insert(e.type_name().to_string(), Arc::new(e));
        self
    }

    /// Registers a data source.
    pub fn data_source<D: DataSource>(&mut self, d: D) -> &mut Self {
        let e = adapter::DataSourceAdapter::new(d);
        self.inner
            .data_sources
            .insert(e.type_name().to_string(), Arc::new(e));
        self
    }

    /// Registers an ephemeral resource.
    pub fn ephemeral_resource<E: EphemeralResource>(&mut self, e: E) -> &mut Self {
        let a = adapter::EphemeralAdapter::new(e);
        self.inner
            .ephemeral_resources
            .insert(a.type_name().to_string(), Arc::new(a));
        self
    }

    /// Registers a list resource.
    pub fn list_resource<L: ListResource>(&mut self, l: L) -> &mut Self {
        let e = adapter::ListAdapter::new(l);
        self.inner
            .list_resources
            .insert(e.type_name().to_string(), Arc::new(e));
        self
    }

    /// Names and schemas of everything registered (for docs and schema checks).
    pub fn schemas(&self) -> Vec<(String, Schema)> {
        self.inner.schemas()
    }

    /// The value-level registry the server routes by.
    pub fn erased(&self) -> &crate::plugin::service::Registry {
        &self.inner
    }

    /// Consumes the builder, giving the value-level registry.
    pub fn into_inner(self) -> crate::plugin::service::Registry {
        self.inner
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The provider itself

/// A provider: the `provider "name" { ... }` block, its configuration, and what it serves. `main.rs` hands one
/// to the protocol layer
/// through [`erase`].
pub trait Provider: Send + Sync + 'static {
    /// The typed provider configuration.
    type Model: DeserializeOwned + Send + Sync + 'static;
    /// What configuration produces; resources read it with `ctx.data::<Data>()`.
    type Data: Send + Sync + 'static;

    /// The provider's name as users write it (`provider "homelab"`).
    fn name(&self) -> &'static str;

    /// The schema of the provider block.
    fn schema(&self) -> Schema;

    /// Extra validation after the schema validators ran (values may be unknown: skip them).
    fn validate(&self, _config: &Self::Model, _diags: &mut Diagnostics) {}

    /// Resolves the configuration (environment fallbacks, defaults) into what resources use.
    fn configure(
        &self,
        terraform_version: &str,
        config: Self::Model,
    ) -> Result<Self::Data, Diagnostics>;

    /// Everything the provider serves.
    fn registry(&self) -> Registry;
}

/// A typed provider as the protocol layer's value-level provider.
pub fn erase<P: Provider>(p: P) -> Arc<dyn crate::plugin::service::ErasedProvider> {
    Arc::new(ProviderAdapter::new(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_catch_missing_descriptions_and_bad_flags() {
        let s = Schema::new("x")
            .attribute(Attribute::string("a").optional())
            .attribute(Attribute::string("b").description("b"))
            .attribute(
                Attribute::string("c")
                    .required()
                    .computed()
                    .description("c"),
            )
            .attribute(
                Attribute::string("d")
                    .optional()
                    .use_state_for_unknown()
                    .description("d"),
            )
            .block(NestedBlock::single("blk", Block::new("")));
        let p = s.problems();
        assert!(
            p.iter().any(|x| x == "a: attribute has no description"),
            "{p:?}"
        );
        assert!(p.iter().any(|x| x.starts_with("b: must be")), "{p:?}");
        assert!(
            p.iter().any(|x| x.starts_with("c: required excludes")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|x| x.starts_with("d: use_state_for_unknown")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|x| x == "blk: block has no description"),
            "{p:?}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("30").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("5d").is_err());
        let t = Timeouts::from_model(
            Timeouts::default(),
            Some(&TimeoutsModel {
                create: Tf::Known("2m".into()),
                ..Default::default()
            }),
        );
        assert_eq!(t.create, Duration::from_secs(120));
        assert_eq!(t.delete, Timeouts::default().delete);
    }

    #[tokio::test]
    async fn context_cancellation_and_warnings() {
        let parent = CancellationToken::new();
        let ctx = Context::new(None, parent.child_token());
        assert!(ctx.data::<()>().is_none());
        ctx.warn("w", "d");
        assert_eq!(ctx.take_warnings().len(), 1);
        assert!(ctx.take_warnings().is_empty());
        parent.cancel();
        assert!(ctx.is_cancelled());
    }
}
