//! The value-level service contract between the gRPC server and whatever provider it serves.
//!
//! The server (`server.rs`) converts protobuf to and from the calls here and knows nothing else: not this
//! provider's schema, not its resources, not the typed framework above. A provider hands it an
//! [`ErasedProvider`] (schema, validation, configuration, and a [`Registry`] of object-safe resources, data
//! sources, ephemeral resources and list resources over [`Value`]s). The typed framework (`crate::framework`) implements these traits
//! for typed resources; a test can implement them directly (see the toy provider in `server.rs`'s tests).
//!
//! What lives here besides the traits is what every implementation needs at value level: the per-request
//! [`Context`] (configured provider data, cancellation, warnings), decoding/encoding through the codec's serde
//! bridge, schema validators, and nulling write-only attributes.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::codec::{self, CodecError, ErrorKind, PathStep, Type, Value};
use super::diagnostics::{AttrPath, Diagnostic, Diagnostics};
use super::schema::{AttrKind, Block, BlockNesting, IdentitySchema, ObjectNesting, Schema};

/// Result of an erased operation: a value (absent on error) plus diagnostics (warnings even on success).
pub type Outcome<T> = (Option<T>, Diagnostics);

/// Decodes a value into a model, or an error diagnostic on the offending path.
pub fn decode<T: DeserializeOwned>(v: &Value, what: &str) -> Result<T, Diagnostics> {
    codec::from_value(v).map_err(|e| Diagnostic::from_codec(format!("Invalid {what}"), &e).into())
}

/// Encodes a model as a value of `ty`; failure here is a provider bug, reported as such.
pub fn encode<T: Serialize>(m: &T, ty: &Type, what: &str) -> Result<Value, Diagnostics> {
    codec::to_value(m, ty).map_err(|e| {
        Diagnostic::from_codec(format!("Provider produced an invalid {what}"), &e).into()
    })
}

/// Whether a codec error means "a model field that cannot hold unknown met an unknown" (the value is checked
/// again once it is known).
pub fn is_unknown_error(e: &CodecError) -> bool {
    matches!(e.kind, ErrorKind::Unknown)
}

/// Sets write-only attributes to null everywhere in `v` (they must never reach state).
pub fn null_write_only(block: &Block, v: &mut Value) {
    let Value::Object(map) = v else { return };
    for a in &block.attributes {
        if a.write_only {
            map.insert(a.name.clone(), Value::Null);
        } else if let (AttrKind::Nested(n), Some(slot)) = (&a.kind, map.get_mut(&a.name)) {
            let inner = Block {
                attributes: n.attributes.clone(),
                ..Default::default()
            };
            match (n.nesting, slot) {
                (ObjectNesting::Single, s) => null_write_only(&inner, s),
                (_, Value::List(items)) | (_, Value::Set(items)) => {
                    items.iter_mut().for_each(|i| null_write_only(&inner, i))
                }
                (_, Value::Map(items)) => {
                    items.values_mut().for_each(|i| null_write_only(&inner, i))
                }
                _ => {}
            }
        }
    }
    for b in &block.blocks {
        if let Some(slot) = map.get_mut(&b.name) {
            match (b.nesting, slot) {
                (BlockNesting::Single | BlockNesting::Group, s) => null_write_only(&b.block, s),
                (_, Value::List(items)) | (_, Value::Set(items)) => {
                    items.iter_mut().for_each(|i| null_write_only(&b.block, i))
                }
                (_, Value::Map(items)) => items
                    .values_mut()
                    .for_each(|i| null_write_only(&b.block, i)),
                _ => {}
            }
        }
    }
}

/// Copies the configured values of write-only attributes from `config` into `planned`, where the plan holds
/// them as null: Terraform sends write-only values only in the configuration of an apply, and the resource
/// applies from the planned value. Top-level attributes and attributes of single and list blocks (matched by
/// index); set and map blocks cannot be matched element by element and keep null.
pub fn fill_write_only(block: &Block, config: &Value, planned: &mut Value) {
    let Value::Object(map) = planned else { return };
    for a in block.attributes.iter().filter(|a| a.write_only) {
        if let Some(v) = config.get(&a.name) {
            map.insert(a.name.clone(), v.clone());
        }
    }
    for b in &block.blocks {
        let (Some(cfg), Some(slot)) = (config.get(&b.name), map.get_mut(&b.name)) else {
            continue;
        };
        match (b.nesting, cfg, slot) {
            (BlockNesting::Single | BlockNesting::Group, c, s) => fill_write_only(&b.block, c, s),
            (BlockNesting::List, Value::List(cs), Value::List(ps)) => {
                for (c, p) in cs.iter().zip(ps.iter_mut()) {
                    fill_write_only(&b.block, c, p);
                }
            }
            _ => {}
        }
    }
}

/// Runs schema validators over known, non-null values of `config`.
pub fn run_validators(block: &Block, config: &Value, path: &mut AttrPath, diags: &mut Diagnostics) {
    for a in &block.attributes {
        let Some(v) = config.get(&a.name) else {
            continue;
        };
        path.push(PathStep::Attr(a.name.clone()));
        if v.is_known() && !v.is_null() {
            for val in &a.validators {
                val.run(v, path, diags);
            }
            if let AttrKind::Nested(n) = &a.kind {
                let inner = Block {
                    attributes: n.attributes.clone(),
                    ..Default::default()
                };
                match n.nesting {
                    ObjectNesting::Single => run_validators(&inner, v, path, diags),
                    ObjectNesting::List => {
                        for (i, e) in v.as_elements().unwrap_or(&[]).iter().enumerate() {
                            path.push(PathStep::Index(i as i64));
                            run_validators(&inner, e, path, diags);
                            path.pop();
                        }
                    }
                    ObjectNesting::Set => {
                        for e in v.as_elements().unwrap_or(&[]) {
                            run_validators(&inner, e, path, diags);
                        }
                    }
                    ObjectNesting::Map => {
                        if let Value::Map(m) = v {
                            for (k, e) in m {
                                path.push(PathStep::Key(k.clone()));
                                run_validators(&inner, e, path, diags);
                                path.pop();
                            }
                        }
                    }
                }
            }
        }
        path.pop();
    }
    for b in &block.blocks {
        let Some(v) = config.get(&b.name) else {
            continue;
        };
        if !v.is_known() || v.is_null() {
            continue;
        }
        path.push(PathStep::Attr(b.name.clone()));
        match (b.nesting, v) {
            (BlockNesting::Single | BlockNesting::Group, _) => {
                run_validators(&b.block, v, path, diags)
            }
            (BlockNesting::List, Value::List(items)) => {
                for (i, e) in items.iter().enumerate() {
                    path.push(PathStep::Index(i as i64));
                    run_validators(&b.block, e, path, diags);
                    path.pop();
                }
            }
            (BlockNesting::Set, Value::Set(items)) => {
                for e in items {
                    run_validators(&b.block, e, path, diags);
                }
            }
            (BlockNesting::Map, Value::Map(m)) => {
                for (k, e) in m {
                    path.push(PathStep::Key(k.clone()));
                    run_validators(&b.block, e, path, diags);
                    path.pop();
                }
            }
            _ => {}
        }
        path.pop();
    }
}

/// Full validation of a configuration value: schema validators, then the typed hook.
pub fn validate_typed<M: DeserializeOwned>(
    block: &Block,
    config: &Value,
    hook: impl FnOnce(&M, &mut Diagnostics),
) -> Diagnostics {
    let mut diags = Diagnostics::new();
    run_validators(block, config, &mut Vec::new(), &mut diags);
    match codec::from_value::<M>(config) {
        Ok(m) => hook(&m, &mut diags),
        // A model field that cannot hold unknown met an unknown: validate again when it is known.
        Err(e) if is_unknown_error(&e) => {}
        Err(e) => diags.push(Diagnostic::from_codec("Invalid configuration", &e)),
    }
    diags
}

/// What to import from.
pub enum ImportFrom {
    /// An import ID string.
    Id(String),
    /// An identity value (of the identity schema's type).
    Identity(Value),
}

/// The result of a plan.
pub struct PlannedChange {
    pub planned: Value,
    pub requires_replace: Vec<AttrPath>,
}

/// An object-safe managed resource.
#[async_trait::async_trait]
pub trait ErasedResource: Send + Sync {
    fn schema(&self) -> &Schema;
    fn value_type(&self) -> &Type;
    fn identity_schema(&self) -> Option<&IdentitySchema>;
    fn identity_type(&self) -> Option<&Type>;
    fn validate(&self, config: &Value) -> Diagnostics;
    async fn plan(
        &self,
        ctx: &Context,
        prior: &Value,
        proposed: &Value,
        config: &Value,
    ) -> Outcome<PlannedChange>;
    /// Returns (new state, new identity). `planned` carries the configured values of write-only attributes
    /// (Terraform sends them only in the request's configuration; the server copies them in); the new state
    /// must hold them as null.
    async fn apply(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
    ) -> Outcome<(Value, Option<Value>)>;
    /// Returns (new state or null when gone, identity).
    async fn read(&self, ctx: &Context, state: &Value) -> Outcome<(Value, Option<Value>)>;
    async fn import(&self, ctx: &Context, from: ImportFrom) -> Outcome<(Value, Option<Value>)>;
    fn upgrade_state(&self, version: i64, json: &[u8]) -> Outcome<Value>;
    fn upgrade_identity(&self, version: i64, json: &[u8]) -> Outcome<Value>;
}

// ---------------------------------------------------------------------------------------------------------------

/// An object-safe data source.
#[async_trait::async_trait]
pub trait ErasedDataSource: Send + Sync {
    fn schema(&self) -> &Schema;
    fn value_type(&self) -> &Type;
    fn validate(&self, config: &Value) -> Diagnostics;
    async fn read(&self, ctx: &Context, config: &Value) -> Outcome<Value>;
}

// ---------------------------------------------------------------------------------------------------------------

/// What opening an ephemeral resource produced.
///
/// Terraform (≥ 1.10) opens an ephemeral resource in every phase that needs its value (plan and apply each open
/// it anew), never stores `result` in plan or state, calls renew at `renew_at` while it still needs the value,
/// and close once it is done. `private` is the provider's own handle (opaque to Terraform) handed back to renew
/// and close; it travels through Terraform's memory only, but keep secrets out of it anyway.
pub struct EphemeralOpened {
    /// The result object (of the schema's type): configuration echoed, computed attributes filled in.
    pub result: Value,
    /// When Terraform should call renew, if the value expires while Terraform may still use it.
    pub renew_at: Option<std::time::SystemTime>,
    /// Opaque data for renew and close.
    pub private: Option<Vec<u8>>,
}

/// What renewing an ephemeral resource produced.
pub struct EphemeralRenewed {
    /// The next renewal time, if any.
    pub renew_at: Option<std::time::SystemTime>,
    /// Replacement private data for the next renew and close.
    pub private: Option<Vec<u8>>,
}

/// An object-safe ephemeral resource. Terraform never sends an open with unknown configuration (it defers the
/// resource itself), so `open` sees wholly known values.
#[async_trait::async_trait]
pub trait ErasedEphemeralResource: Send + Sync {
    fn schema(&self) -> &Schema;
    fn value_type(&self) -> &Type;
    fn validate(&self, config: &Value) -> Diagnostics;
    async fn open(&self, ctx: &Context, config: &Value) -> Outcome<EphemeralOpened>;
    async fn renew(&self, ctx: &Context, private: Option<&[u8]>) -> Outcome<EphemeralRenewed>;
    async fn close(&self, ctx: &Context, private: Option<&[u8]>) -> Diagnostics;
}

// ---------------------------------------------------------------------------------------------------------------

/// One encoded list event.
pub struct ListEvent {
    pub identity: Option<Value>,
    pub display_name: String,
    pub object: Option<Value>,
    pub diagnostics: Diagnostics,
}

/// An object-safe list resource.
#[async_trait::async_trait]
pub trait ErasedListResource: Send + Sync {
    fn schema(&self) -> &Schema;
    fn value_type(&self) -> &Type;
    fn validate(&self, config: &Value) -> Diagnostics;
    /// Lists; `resource` is the managed resource of the same type name (for encoding).
    async fn list(
        &self,
        ctx: &Context,
        config: &Value,
        req: ListRequest,
        resource: Arc<dyn ErasedResource>,
    ) -> Result<futures::stream::BoxStream<'static, ListEvent>, Diagnostics>;
}

// ---------------------------------------------------------------------------------------------------------------
// Context

/// What every handler gets: configured provider data, cancellation, and a place for warnings.
#[derive(Clone)]
pub struct Context {
    provider: Option<Configured>,
    cancel: CancellationToken,
    warnings: Arc<Mutex<Diagnostics>>,
    /// See [`Context::keep_created`]: the resource's own model type, boxed (only the framework's adapter, which
    /// knows that type, takes it back).
    created: Arc<Mutex<Option<Box<dyn Any + Send>>>>,
}

impl Context {
    /// A context (the server builds these; tests may too).
    pub fn new(provider: Option<Configured>, cancel: CancellationToken) -> Self {
        Self {
            provider,
            cancel,
            warnings: Arc::default(),
            created: Arc::default(),
        }
    }

    /// What `ConfigureProvider` produced, as the provider's own type `T`. `None` if the provider has not been
    /// configured (configuration deferred because it held unknown values) or `T` is not what it produced.
    pub fn data<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.provider.as_ref()?.downcast_ref::<T>()
    }

    /// Cancelled when Terraform asks the provider to stop (Ctrl-C) or the operation times out.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the operation should stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Adds a warning shown with the result of this operation.
    pub fn warn(&self, summary: impl Into<String>, detail: impl Into<String>) {
        if let Ok(mut w) = self.warnings.lock() {
            w.warning(summary, detail);
        }
    }

    /// Adds a warning on an attribute (shown by Terraform under that attribute of the resource's configuration).
    pub fn warn_at(&self, path: AttrPath, summary: impl Into<String>, detail: impl Into<String>) {
        if let Ok(mut w) = self.warnings.lock() {
            w.push(Diagnostic::warning(summary, detail).at(path));
        }
    }

    /// Takes the warnings collected so far (the framework does this at the end of an operation).
    pub fn take_warnings(&self) -> Diagnostics {
        self.warnings
            .lock()
            .map(|mut w| std::mem::take(&mut *w))
            .unwrap_or_default()
    }

    /// Records that a create which is about to return an error did make the remote object (`state` is the
    /// resource's model of it). The framework then answers with this state next to the error, so Terraform keeps
    /// the object (marked tainted: the next plan replaces it) instead of losing track of something that exists.
    pub fn keep_created<M: Any + Send>(&self, state: M) {
        if let Ok(mut c) = self.created.lock() {
            *c = Some(Box::new(state));
        }
    }

    /// Takes what [`Context::keep_created`] recorded, if it was a `M`.
    pub fn take_created<M: Any>(&self) -> Option<M> {
        let b = self.created.lock().ok()?.take()?;
        b.downcast::<M>().ok().map(|m| *m)
    }

    /// A child context sharing provider data, warnings and a kept create, with a child cancellation token.
    pub fn child(&self) -> Self {
        Self {
            provider: self.provider.clone(),
            cancel: self.cancel.child_token(),
            warnings: self.warnings.clone(),
            created: self.created.clone(),
        }
    }
}

/// What Terraform asked of a list.
#[derive(Clone, Copy, Debug)]
pub struct ListRequest {
    /// Whether each item should carry the full object.
    pub include_resource_object: bool,
    /// Maximum number of items Terraform will read (it stops reading after that).
    pub limit: i64,
}

// ---------------------------------------------------------------------------------------------------------------
// Registry and provider

/// Everything a provider serves, by type name, at value level.
#[derive(Default, Clone)]
pub struct Registry {
    /// Managed resources.
    pub resources: BTreeMap<String, Arc<dyn ErasedResource>>,
    /// Data sources.
    pub data_sources: BTreeMap<String, Arc<dyn ErasedDataSource>>,
    /// Ephemeral resources (Terraform ≥ 1.10: `ephemeral "type" "name" {}`; never in plan or state).
    pub ephemeral_resources: BTreeMap<String, Arc<dyn ErasedEphemeralResource>>,
    /// List resources (each lists the managed resource of the same name).
    pub list_resources: BTreeMap<String, Arc<dyn ErasedListResource>>,
}

impl Registry {
    /// Names and schemas of everything registered (for docs and schema checks).
    pub fn schemas(&self) -> Vec<(String, Schema)> {
        let mut out = Vec::new();
        for (n, r) in &self.resources {
            out.push((format!("resource {n}"), r.schema().clone()));
        }
        for (n, d) in &self.data_sources {
            out.push((format!("data source {n}"), d.schema().clone()));
        }
        for (n, e) in &self.ephemeral_resources {
            out.push((format!("ephemeral resource {n}"), e.schema().clone()));
        }
        for (n, l) in &self.list_resources {
            out.push((format!("list resource {n}"), l.schema().clone()));
        }
        out
    }
}

/// What `ConfigureProvider` produced: handed to every later operation through [`Context`], read back with
/// [`Context::data`] as the provider's own type.
pub type Configured = Arc<dyn Any + Send + Sync>;

/// A provider the server can serve: its own schema and configuration, and its registry.
pub trait ErasedProvider: Send + Sync {
    /// The provider's name as users write it (`homelab` in `provider "homelab"`), for messages.
    fn name(&self) -> &str;
    /// The schema of the `provider` block.
    fn schema(&self) -> &Schema;
    /// Validates a provider configuration (values may be unknown: skip them).
    fn validate(&self, config: &Value) -> Diagnostics;
    /// Configures the provider (values may be unknown during plan). Warnings go into `diags`.
    fn configure(&self, terraform_version: &str, config: &Value)
        -> Result<Configured, Diagnostics>;
    /// What the provider serves. Called once, when the server starts.
    fn registry(&self) -> Registry;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::schema::{Attribute, NestedBlock};

    #[test]
    fn write_only_values_come_from_the_configuration_and_leave_again() {
        let block = Block::new("b")
            .attribute(Attribute::string("name").optional().description("n"))
            .attribute(
                Attribute::string("secret_wo")
                    .optional()
                    .write_only()
                    .description("s"),
            )
            .block(NestedBlock::list(
                "items",
                Block::new("i").attribute(
                    Attribute::string("key_wo")
                        .optional()
                        .write_only()
                        .description("k"),
                ),
            ));
        let item = |k: Value| Value::object([("key_wo", k)]);
        let config = Value::object([
            ("name", Value::from("a")),
            ("secret_wo", Value::from("s3")),
            ("items", Value::List(vec![item(Value::from("k1"))])),
        ]);
        let mut planned = Value::object([
            ("name", Value::from("a")),
            ("secret_wo", Value::Null),
            ("items", Value::List(vec![item(Value::Null)])),
        ]);
        fill_write_only(&block, &config, &mut planned);
        assert_eq!(planned, config);
        null_write_only(&block, &mut planned);
        assert_eq!(planned.get("secret_wo"), Some(&Value::Null));
        assert_eq!(
            planned.get("items"),
            Some(&Value::List(vec![item(Value::Null)]))
        );
    }
}
