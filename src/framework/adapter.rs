//! Type erasure between the typed framework traits and the value-level service of the protocol layer.
//!
//! [`Resource`] has associated model types, so it cannot be a trait object. Each registered resource is wrapped
//! in an adapter implementing `plugin::service`'s object-safe traits over [`Value`]s: it decodes values into the
//! model (codec serde bridge), runs the schema-driven plan (`plugin::plan`), validators, timeouts and
//! cancellation, calls the typed method, and encodes the result back. The same is done for data sources,
//! ephemeral resources, list resources and the provider itself ([`ProviderAdapter`]). The server only converts protobuf to and from these
//! calls and never sees a typed model.
//!
//! Logging here names types, operations and paths — never values (they may be secret).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::{
    DataSource, EphemeralResource, ListResource, Plan, Provider, Registry, Resource, Timeouts,
};
use crate::plugin::codec::{self, CodecError, Type, Value};
use crate::plugin::diagnostics::{Diagnostic, Diagnostics};
use crate::plugin::plan::{self, SchemaPlan};
use crate::plugin::schema::{IdentitySchema, Schema};
use crate::plugin::service::{
    decode, encode, is_unknown_error, null_write_only, validate_typed, Configured, Context,
    EphemeralOpened, EphemeralRenewed, ErasedDataSource, ErasedEphemeralResource,
    ErasedListResource, ErasedProvider, ErasedResource, ImportFrom, ListEvent, ListRequest,
    Outcome, PlannedChange,
};

fn fail<T>(d: impl Into<Diagnostics>) -> Outcome<T> {
    (None, d.into())
}

/// How long a cancelled or timed-out operation gets to wind down (close SSH channels, stop remote commands,
/// finish a half-done API write) before the provider answers Terraform without it.
const WIND_DOWN: Duration = Duration::from_secs(10);

/// Runs `fut` under a timeout and the context's cancellation.
///
/// On timeout or interrupt the context is cancelled and the operation itself is still polled for up to
/// [`WIND_DOWN`]: dropping it at once would skip its own clean-up (aborting remote commands, reporting a write
/// that did land). If it finishes in that window its own result is returned, so state records what really
/// happened; otherwise the timeout/cancel diagnostic is (followed by the operation's own error, if any).
async fn guarded<T>(
    ctx: &Context,
    limit: Duration,
    what: &str,
    fut: impl Future<Output = Result<T, Diagnostics>>,
) -> Result<T, Diagnostics> {
    let token = ctx.cancellation().clone();
    tokio::pin!(fut);
    let diag: Diagnostics = tokio::select! {
        r = &mut fut => return r,
        _ = tokio::time::sleep(limit) => Diagnostic::error(
            format!("Timed out while {what}"),
            format!("The operation did not finish within {}s. Raise the limit in the resource's \
                     `timeouts` attribute if the system is just slow.", limit.as_secs()),
        ).into(),
        _ = token.cancelled() => Diagnostic::error(
            format!("Cancelled while {what}"),
            "Terraform asked the provider to stop (interrupt). The remote object may be partially changed; \
             run `terraform plan` to see its state.",
        ).into(),
    };
    token.cancel();
    match tokio::time::timeout(WIND_DOWN, &mut fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(own)) => {
            let mut all = diag;
            all.extend(own);
            Err(all)
        }
        Err(_) => Err(diag),
    }
}

pub struct ResourceAdapter<R: Resource> {
    inner: R,
    schema: Schema,
    ty: Type,
    identity: Option<(IdentitySchema, Type)>,
}

impl<R: Resource> ResourceAdapter<R> {
    pub fn new(inner: R) -> Self {
        let schema = inner.schema();
        let ty = schema.value_type();
        let identity = inner.identity_schema().map(|s| {
            let t = s.value_type();
            (s, t)
        });
        Self {
            inner,
            schema,
            ty,
            identity,
        }
    }

    pub fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }

    /// Encodes the identity of a state model, if the resource has an identity schema.
    fn identity_of(&self, m: &R::Model) -> Result<Option<Value>, Diagnostics> {
        let Some((_, ity)) = &self.identity else {
            return Ok(None);
        };
        match self.inner.identity(m) {
            Some(id) => encode(&id, ity, "identity").map(Some),
            None => Err(Diagnostic::error(
                "Provider produced no identity",
                format!(
                    "The resource type {} declares an identity but returned none for an existing object. \
                     This is a bug in the provider.",
                    self.type_name()
                ),
            )
            .into()),
        }
    }

    /// Encodes a state model: wholly known, write-only attributes null.
    fn finish_state(
        &self,
        m: &R::Model,
        what: &str,
    ) -> Result<(Value, Option<Value>), Diagnostics> {
        let mut v = encode(m, &self.ty, what)?;
        null_write_only(&self.schema.block, &mut v);
        if !v.is_wholly_known() {
            return Err(Diagnostic::error(
                format!("Provider produced an incomplete {what}"),
                format!(
                    "The {} resource returned unknown values after {what}. This is a bug in the provider.",
                    self.type_name()
                ),
            )
            .into());
        }
        let id = self.identity_of(m)?;
        Ok((v, id))
    }
}

#[async_trait::async_trait]
impl<R: Resource> ErasedResource for ResourceAdapter<R> {
    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn value_type(&self) -> &Type {
        &self.ty
    }

    fn identity_schema(&self) -> Option<&IdentitySchema> {
        self.identity.as_ref().map(|(s, _)| s)
    }

    fn identity_type(&self) -> Option<&Type> {
        self.identity.as_ref().map(|(_, t)| t)
    }

    fn validate(&self, config: &Value) -> Diagnostics {
        validate_typed::<R::Model>(&self.schema.block, config, |m, d| self.inner.validate(m, d))
    }

    async fn plan(
        &self,
        ctx: &Context,
        prior: &Value,
        proposed: &Value,
        config: &Value,
    ) -> Outcome<PlannedChange> {
        let SchemaPlan {
            planned,
            requires_replace,
        } = plan::plan(&self.schema.block, prior, proposed, config);
        if planned.is_null() {
            return (
                Some(PlannedChange {
                    planned,
                    requires_replace,
                }),
                ctx.take_warnings(),
            );
        }
        // The typed hook. Values that the model cannot represent (rare: unknown whole blocks) skip it.
        let decoded = (|| -> Result<_, CodecError> {
            let prior_m = if prior.is_null() {
                None
            } else {
                Some(codec::from_value::<R::Model>(prior)?)
            };
            Ok((
                prior_m,
                codec::from_value::<R::Model>(config)?,
                codec::from_value::<R::Model>(&planned)?,
            ))
        })();
        let (prior_m, config_m, planned_m) = match decoded {
            Ok(t) => t,
            Err(e) if is_unknown_error(&e) => {
                tracing::debug!(
                    tf_resource_type = self.type_name(),
                    path = %e.path_string(),
                    "plan hook skipped: the model cannot hold an unknown value there"
                );
                return (
                    Some(PlannedChange {
                        planned,
                        requires_replace,
                    }),
                    ctx.take_warnings(),
                );
            }
            Err(e) => return fail(Diagnostic::from_codec("Invalid planned value", &e)),
        };
        let mut p = Plan {
            prior: prior_m,
            config: config_m,
            planned: planned_m,
            requires_replace,
        };
        if let Err(d) = self.inner.modify_plan(ctx, &mut p).await {
            let mut all = ctx.take_warnings();
            all.extend(d);
            return (None, all);
        }
        let mut planned = match encode(&p.planned, &self.ty, "plan") {
            Ok(v) => v,
            Err(d) => return fail(d),
        };
        null_write_only(&self.schema.block, &mut planned);
        (
            Some(PlannedChange {
                planned,
                requires_replace: p.requires_replace,
            }),
            ctx.take_warnings(),
        )
    }

    async fn apply(
        &self,
        ctx: &Context,
        prior: &Value,
        planned: &Value,
    ) -> Outcome<(Value, Option<Value>)> {
        let mut kept = None;
        let r = async {
            if planned.is_null() {
                let state: R::Model = decode(prior, "prior state")?;
                let limit = self.inner.timeouts(&state).delete;
                guarded(ctx, limit, "deleting", self.inner.delete(ctx, state)).await?;
                return Ok((Value::Null, None));
            }
            let plan_m: R::Model = decode(planned, "planned state")?;
            if prior.is_null() {
                let limit = self.inner.timeouts(&plan_m).create;
                match guarded(ctx, limit, "creating", self.inner.create(ctx, plan_m)).await {
                    Ok(new) => self.finish_state(&new, "new state"),
                    Err(d) => {
                        // The create failed after making the object: it goes into state with the error.
                        if let Some(made) = ctx.take_created::<R::Model>() {
                            kept = Some(self.finish_state(&made, "new state")?);
                        }
                        Err(d)
                    }
                }
            } else {
                let prior_m: R::Model = decode(prior, "prior state")?;
                let limit = self.inner.timeouts(&plan_m).update;
                let new = guarded(
                    ctx,
                    limit,
                    "updating",
                    self.inner.update(ctx, prior_m, plan_m),
                )
                .await?;
                self.finish_state(&new, "new state")
            }
        }
        .await;
        match (r, kept) {
            (Err(d), Some(state)) => {
                let mut diags = ctx.take_warnings();
                diags.extend(d);
                (Some(state), diags)
            }
            (r, _) => outcome(ctx, r),
        }
    }

    async fn read(&self, ctx: &Context, state: &Value) -> Outcome<(Value, Option<Value>)> {
        if state.is_null() {
            return (Some((Value::Null, None)), Diagnostics::new());
        }
        let r = async {
            let m: R::Model = decode(state, "state")?;
            let limit = self.inner.timeouts(&m).read;
            match guarded(ctx, limit, "reading", self.inner.read(ctx, m)).await? {
                None => Ok((Value::Null, None)),
                Some(m) => self.finish_state(&m, "state"),
            }
        }
        .await;
        outcome(ctx, r)
    }

    async fn import(&self, ctx: &Context, from: ImportFrom) -> Outcome<(Value, Option<Value>)> {
        let r = async {
            let limit = Timeouts::default().read;
            let (m, given_identity) = match from {
                ImportFrom::Id(id) => (
                    guarded(ctx, limit, "importing", self.inner.import(ctx, &id)).await?,
                    None,
                ),
                ImportFrom::Identity(v) => {
                    let ident: R::Identity = decode(&v, "identity")?;
                    (
                        guarded(
                            ctx,
                            limit,
                            "importing",
                            self.inner.import_identity(ctx, ident),
                        )
                        .await?,
                        Some(v),
                    )
                }
            };
            let mut v = encode(&m, &self.ty, "imported state")?;
            null_write_only(&self.schema.block, &mut v);
            // The imported object is partial until Terraform's read; an identity may not be computable yet.
            let identity = match given_identity {
                Some(i) => Some(i),
                None => match &self.identity {
                    Some((_, ity)) => match self.inner.identity(&m) {
                        Some(id) => Some(encode(&id, ity, "identity")?),
                        None => None,
                    },
                    None => None,
                },
            };
            Ok((v, identity))
        }
        .await;
        outcome(ctx, r)
    }

    fn upgrade_state(&self, version: i64, json: &[u8]) -> Outcome<Value> {
        let current = self.schema.version;
        if version > current {
            return fail(Diagnostic::error(
                "State written by a newer provider",
                format!(
                    "This {} was stored with schema version {version}, but this provider only knows version \
                     {current}. Use the provider version that wrote the state (or newer).",
                    self.type_name()
                ),
            ));
        }
        let bytes = if version < current {
            let parsed: serde_json::Value = match serde_json::from_slice(json) {
                Ok(v) => v,
                Err(e) => {
                    return fail(Diagnostic::error(
                        "Stored state is not valid JSON",
                        e.to_string(),
                    ))
                }
            };
            match self.inner.upgrade_state(version, parsed) {
                Ok(v) => v.to_string().into_bytes(),
                Err(d) => return fail(d),
            }
        } else {
            json.to_vec()
        };
        match codec::decode_json(&bytes, &self.ty) {
            Ok(mut v) => {
                null_write_only(&self.schema.block, &mut v);
                (Some(v), Diagnostics::new())
            }
            Err(e) => fail(Diagnostic::from_codec(
                "Stored state does not match the resource schema",
                &e,
            )),
        }
    }

    fn upgrade_identity(&self, version: i64, json: &[u8]) -> Outcome<Value> {
        let Some((s, ty)) = &self.identity else {
            return fail(Diagnostic::error(
                "Resource has no identity",
                format!(
                    "The resource type {} has no identity schema.",
                    self.type_name()
                ),
            ));
        };
        if version != s.version {
            return fail(Diagnostic::error(
                "Unsupported identity version",
                format!(
                    "The stored identity has version {version}; this provider knows version {}.",
                    s.version
                ),
            ));
        }
        match codec::decode_json(json, ty) {
            Ok(v) => (Some(v), Diagnostics::new()),
            Err(e) => fail(Diagnostic::from_codec(
                "Stored identity does not match the identity schema",
                &e,
            )),
        }
    }
}

fn outcome<T>(ctx: &Context, r: Result<T, Diagnostics>) -> Outcome<T> {
    let mut diags = ctx.take_warnings();
    match r {
        Ok(v) => (Some(v), diags),
        Err(d) => {
            diags.extend(d);
            (None, diags)
        }
    }
}

pub struct DataSourceAdapter<D: DataSource> {
    inner: D,
    schema: Schema,
    ty: Type,
}

impl<D: DataSource> DataSourceAdapter<D> {
    pub fn new(inner: D) -> Self {
        let schema = inner.schema();
        let ty = schema.value_type();
        Self { inner, schema, ty }
    }

    pub fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
}

#[async_trait::async_trait]
impl<D: DataSource> ErasedDataSource for DataSourceAdapter<D> {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn value_type(&self) -> &Type {
        &self.ty
    }
    fn validate(&self, config: &Value) -> Diagnostics {
        validate_typed::<D::Model>(&self.schema.block, config, |m, d| self.inner.validate(m, d))
    }
    async fn read(&self, ctx: &Context, config: &Value) -> Outcome<Value> {
        let r = async {
            let m: D::Model = decode(config, "data source configuration")?;
            let out = guarded(ctx, self.inner.timeout(), "reading", self.inner.read(ctx, m)).await?;
            let v = encode(&out, &self.ty, "data source result")?;
            if !v.is_wholly_known() {
                return Err(Diagnostic::error(
                    "Provider produced an incomplete data source result",
                    format!(
                        "The {} data source returned unknown values. This is a bug in the provider.",
                        self.type_name()
                    ),
                )
                .into());
            }
            Ok(v)
        }
        .await;
        outcome(ctx, r)
    }
}

pub struct EphemeralAdapter<E: EphemeralResource> {
    inner: E,
    schema: Schema,
    ty: Type,
}

impl<E: EphemeralResource> EphemeralAdapter<E> {
    pub fn new(inner: E) -> Self {
        let schema = inner.schema();
        let ty = schema.value_type();
        Self { inner, schema, ty }
    }

    pub fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }

    /// Private data as JSON bytes (it is ours; Terraform only hands it back).
    fn private_out(&self, p: Option<E::Private>) -> Result<Option<Vec<u8>>, Diagnostics> {
        p.map(|p| {
            serde_json::to_vec(&p).map_err(|e| {
                Diagnostic::error(
                    "Provider produced invalid private data",
                    format!("{}: {e}. This is a bug in the provider.", self.type_name()),
                )
                .into()
            })
        })
        .transpose()
    }

    fn private_in(&self, raw: Option<&[u8]>) -> Result<Option<E::Private>, Diagnostics> {
        match raw {
            None | Some([]) => Ok(None),
            Some(b) => serde_json::from_slice(b).map(Some).map_err(|_| {
                Diagnostic::error(
                    "Terraform returned unreadable private data",
                    format!(
                        "The private data of this {} is not what the provider wrote.",
                        self.type_name()
                    ),
                )
                .into()
            }),
        }
    }
}

#[async_trait::async_trait]
impl<E: EphemeralResource> ErasedEphemeralResource for EphemeralAdapter<E> {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn value_type(&self) -> &Type {
        &self.ty
    }
    fn validate(&self, config: &Value) -> Diagnostics {
        validate_typed::<E::Model>(&self.schema.block, config, |m, d| self.inner.validate(m, d))
    }
    async fn open(&self, ctx: &Context, config: &Value) -> Outcome<EphemeralOpened> {
        let r = async {
            let m: E::Model = decode(config, "ephemeral resource configuration")?;
            let o = guarded(ctx, self.inner.timeout(), "opening", self.inner.open(ctx, m)).await?;
            let result = encode(&o.result, &self.ty, "ephemeral resource result")?;
            if !result.is_wholly_known() {
                return Err(Diagnostic::error(
                    "Provider produced an incomplete ephemeral resource result",
                    format!(
                        "The {} ephemeral resource returned unknown values. This is a bug in the provider.",
                        self.type_name()
                    ),
                )
                .into());
            }
            Ok(EphemeralOpened {
                result,
                renew_at: o.renew_at,
                private: self.private_out(o.private)?,
            })
        }
        .await;
        outcome(ctx, r)
    }
    async fn renew(&self, ctx: &Context, private: Option<&[u8]>) -> Outcome<EphemeralRenewed> {
        let r = async {
            let p = self.private_in(private)?;
            let (renew_at, p) = guarded(
                ctx,
                self.inner.timeout(),
                "renewing",
                self.inner.renew(ctx, p),
            )
            .await?;
            Ok(EphemeralRenewed {
                renew_at,
                private: self.private_out(p)?,
            })
        }
        .await;
        outcome(ctx, r)
    }
    async fn close(&self, ctx: &Context, private: Option<&[u8]>) -> Diagnostics {
        let r = async {
            let p = self.private_in(private)?;
            guarded(
                ctx,
                self.inner.timeout(),
                "closing",
                self.inner.close(ctx, p),
            )
            .await
        }
        .await;
        outcome(ctx, r).1
    }
}

pub struct ListAdapter<L: ListResource> {
    inner: L,
    schema: Schema,
    ty: Type,
}

impl<L: ListResource> ListAdapter<L> {
    pub fn new(inner: L) -> Self {
        let schema = inner.schema();
        let ty = schema.value_type();
        Self { inner, schema, ty }
    }

    pub fn type_name(&self) -> &'static str {
        self.inner.type_name()
    }
}

#[async_trait::async_trait]
impl<L: ListResource> ErasedListResource for ListAdapter<L> {
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn value_type(&self) -> &Type {
        &self.ty
    }
    fn validate(&self, config: &Value) -> Diagnostics {
        validate_typed::<L::Config>(&self.schema.block, config, |m, d| self.inner.validate(m, d))
    }
    async fn list(
        &self,
        ctx: &Context,
        config: &Value,
        req: ListRequest,
        resource: Arc<dyn ErasedResource>,
    ) -> Result<futures::stream::BoxStream<'static, ListEvent>, Diagnostics> {
        let cfg: L::Config = decode(config, "list configuration")?;
        let Some(ity) = resource.identity_type().cloned() else {
            return Err(Diagnostic::error(
                "List resource without identity",
                format!(
                    "The resource type {} has no identity schema, so it cannot be listed. This is a bug in \
                     the provider.",
                    self.type_name()
                ),
            )
            .into());
        };
        let rty = resource.value_type().clone();
        let block = resource.schema().block.clone();
        let stream = self.inner.list(ctx, cfg, req).await?;
        let include = req.include_resource_object;
        Ok(stream
            .map(move |item| match item {
                Err(d) => ListEvent {
                    identity: None,
                    display_name: String::new(),
                    object: None,
                    diagnostics: d.into(),
                },
                Ok(item) => {
                    let mut diagnostics = Diagnostics::new();
                    let identity = match encode(&item.identity, &ity, "identity") {
                        Ok(v) => Some(v),
                        Err(d) => {
                            diagnostics.extend(d);
                            None
                        }
                    };
                    let object = match item.object.filter(|_| include) {
                        None => None,
                        Some(m) => match encode(&m, &rty, "listed object") {
                            Ok(mut v) => {
                                null_write_only(&block, &mut v);
                                Some(v)
                            }
                            Err(d) => {
                                diagnostics.extend(d);
                                None
                            }
                        },
                    };
                    ListEvent {
                        identity,
                        display_name: item.display_name,
                        object,
                        diagnostics,
                    }
                }
            })
            .boxed())
    }
}

// ---------------------------------------------------------------------------------------------------------------

/// The typed [`Provider`] as the server's [`ErasedProvider`].
pub struct ProviderAdapter<P: Provider> {
    inner: P,
    schema: Schema,
}

impl<P: Provider> ProviderAdapter<P> {
    /// Wraps a typed provider.
    pub fn new(inner: P) -> Self {
        let schema = inner.schema();
        Self { inner, schema }
    }
}

impl<P: Provider> ErasedProvider for ProviderAdapter<P> {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn schema(&self) -> &Schema {
        &self.schema
    }
    fn validate(&self, config: &Value) -> Diagnostics {
        validate_typed::<P::Model>(&self.schema.block, config, |m, d| self.inner.validate(m, d))
    }
    fn configure(
        &self,
        terraform_version: &str,
        config: &Value,
    ) -> Result<Configured, Diagnostics> {
        let m: P::Model = decode(config, "provider configuration")?;
        let data = self.inner.configure(terraform_version, m)?;
        Ok(Arc::new(data))
    }
    fn registry(&self) -> crate::plugin::service::Registry {
        let r: Registry = self.inner.registry();
        r.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{
        Attribute, Block, Context, Diagnostics, IdentityAttribute, NestedBlock, Resource, Schema,
        Tf, Validator,
    };
    use crate::plugin::codec::PathStep;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, Debug, Default, Serialize, Deserialize)]
    struct M {
        id: Tf<String>,
        name: Tf<String>,
        token: Tf<String>,
        items: Vec<Item>,
    }

    #[derive(Clone, Debug, Default, Serialize, Deserialize)]
    struct Item {
        port: Tf<i64>,
    }

    #[derive(Clone, Debug, Serialize, Deserialize)]
    struct Id {
        id: String,
    }

    /// Schema version 2; version 1 called `name` `title`.
    struct R;

    #[async_trait::async_trait]
    impl Resource for R {
        type Model = M;
        type Identity = Id;
        fn type_name(&self) -> &'static str {
            "homelab_t"
        }
        fn schema(&self) -> Schema {
            Schema::new("t")
                .version(2)
                .attribute(Attribute::string("id").computed().description("d"))
                .attribute(Attribute::string("name").optional().description("d"))
                .attribute(
                    Attribute::string("token")
                        .optional()
                        .write_only()
                        .description("d"),
                )
                .block(NestedBlock::list(
                    "items",
                    Block::new("d").attribute(
                        Attribute::number("port")
                            .optional()
                            .validate(Validator::int_between(1, 10))
                            .description("d"),
                    ),
                ))
        }
        fn identity_schema(&self) -> Option<IdentitySchema> {
            Some(IdentitySchema::new().attribute(IdentityAttribute::string("id", "d")))
        }
        fn identity(&self, m: &M) -> Option<Id> {
            m.id.known().map(|id| Id { id: id.clone() })
        }
        fn upgrade_state(
            &self,
            from: i64,
            mut v: serde_json::Value,
        ) -> Result<serde_json::Value, Diagnostics> {
            assert_eq!(from, 1);
            let title = v["title"].take();
            v["name"] = title;
            Ok(v)
        }
        async fn create(&self, c: &Context, mut m: M) -> Result<M, Diagnostics> {
            m.id = Tf::Known("new".into());
            if m.name.known().map(String::as_str) == Some("half") {
                // Made the remote object, then a later step failed.
                c.keep_created(m);
                return Err(Diagnostic::error("the second step failed", "").into());
            }
            Ok(m)
        }
        async fn read(&self, _c: &Context, m: M) -> Result<Option<M>, Diagnostics> {
            Ok(Some(m))
        }
        async fn update(&self, _c: &Context, _p: M, m: M) -> Result<M, Diagnostics> {
            Ok(m)
        }
        async fn delete(&self, _c: &Context, _m: M) -> Result<(), Diagnostics> {
            Ok(())
        }
    }

    #[test]
    fn upgrade_current_old_and_future_versions() {
        let r = ResourceAdapter::new(R);
        let (v, d) = r.upgrade_state(2, br#"{"id":"a","name":"n","items":[{"port":3}]}"#);
        assert!(d.is_empty(), "{d}");
        let v = v.unwrap();
        assert_eq!(v.get("name"), Some(&Value::from("n")));
        assert_eq!(v.get("token"), Some(&Value::Null));
        let (v, d) = r.upgrade_state(1, br#"{"id":"a","title":"old","items":[]}"#);
        assert!(d.is_empty(), "{d}");
        assert_eq!(v.unwrap().get("name"), Some(&Value::from("old")));
        let (v, d) = r.upgrade_state(3, br#"{}"#);
        assert!(v.is_none());
        assert_eq!(
            d.iter().next().unwrap().summary,
            "State written by a newer provider"
        );
        let (v, d) = r.upgrade_identity(0, br#"{"id":"a"}"#);
        assert!(d.is_empty());
        assert_eq!(v.unwrap().get("id"), Some(&Value::from("a")));
    }

    #[test]
    fn validators_point_into_list_blocks() {
        let r = ResourceAdapter::new(R);
        let cfg = codec::to_value(
            &M {
                items: vec![
                    Item { port: Tf::Known(5) },
                    Item {
                        port: Tf::Known(50),
                    },
                    Item { port: Tf::Unknown },
                ],
                ..Default::default()
            },
            r.value_type(),
        )
        .unwrap();
        let d = r.validate(&cfg);
        assert_eq!(d.len(), 1, "{d}");
        assert_eq!(
            d.iter().next().unwrap().path,
            Some(vec![
                PathStep::Attr("items".into()),
                PathStep::Index(1),
                PathStep::Attr("port".into())
            ])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancelled_operations_get_to_clean_up() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let cancel = tokio_util::sync::CancellationToken::new();
        let ctx = Context::new(None, cancel.clone());
        let cleaned = Arc::new(AtomicBool::new(false));
        let c2 = cleaned.clone();
        let token = cancel.clone();
        let op = async move {
            token.cancelled().await;
            tokio::time::sleep(Duration::from_secs(2)).await; // e.g. killing the remote command
            c2.store(true, Ordering::SeqCst);
            Err::<(), _>(Diagnostic::error("remote command aborted", "").into())
        };
        let stopper = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cancel.cancel();
        };
        let (r, ()) = tokio::join!(
            guarded(&ctx, Duration::from_secs(60), "creating", op),
            stopper
        );
        assert!(
            cleaned.load(Ordering::SeqCst),
            "the operation was dropped before its clean-up"
        );
        let d = r.unwrap_err();
        let summaries: Vec<_> = d.iter().map(|d| d.summary.clone()).collect();
        assert_eq!(
            summaries,
            ["Cancelled while creating", "remote command aborted"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn timed_out_operations_are_not_waited_for_forever() {
        let ctx = Context::new(None, tokio_util::sync::CancellationToken::new());
        // Ignores cancellation entirely.
        let op = async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Diagnostics>(())
        };
        let started = tokio::time::Instant::now();
        let d = guarded(&ctx, Duration::from_secs(5), "reading", op)
            .await
            .unwrap_err();
        assert_eq!(d.iter().next().unwrap().summary, "Timed out while reading");
        assert!(ctx.is_cancelled());
        assert_eq!(started.elapsed(), Duration::from_secs(5) + WIND_DOWN);
    }

    #[tokio::test(start_paused = true)]
    async fn an_operation_that_lands_during_wind_down_reports_its_result() {
        let cancel = tokio_util::sync::CancellationToken::new();
        let ctx = Context::new(None, cancel.clone());
        cancel.cancel();
        let op = async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<_, Diagnostics>(42)
        };
        assert_eq!(
            guarded(&ctx, Duration::from_secs(60), "creating", op)
                .await
                .unwrap(),
            42
        );
    }

    #[tokio::test]
    async fn write_only_values_never_reach_plan_or_state() {
        let r = ResourceAdapter::new(R);
        let ctx = Context::new(None, tokio_util::sync::CancellationToken::new());
        let cfg = codec::to_value(
            &M {
                token: Tf::Known("secret-token".into()),
                ..Default::default()
            },
            r.value_type(),
        )
        .unwrap();
        let (p, d) = r.plan(&ctx, &Value::Null, &cfg, &cfg).await;
        assert!(!d.has_errors(), "{d}");
        let planned = p.unwrap().planned;
        assert_eq!(planned.get("token"), Some(&Value::Null));
        // Even if a resource echoed it back, the framework nulls it in the new state.
        let mut with_token = planned.clone();
        if let Value::Object(m) = &mut with_token {
            m.insert("token".into(), Value::from("secret-token"));
        }
        let (out, d) = r.apply(&ctx, &Value::Null, &with_token).await;
        assert!(!d.has_errors(), "{d}");
        let (state, identity) = out.unwrap();
        assert_eq!(state.get("token"), Some(&Value::Null));
        assert_eq!(identity.unwrap().get("id"), Some(&Value::from("new")));
    }

    #[tokio::test]
    async fn a_create_that_made_its_object_before_failing_reports_state_and_error() {
        let r = ResourceAdapter::new(R);
        let ctx = Context::new(None, tokio_util::sync::CancellationToken::new());
        let planned = |name: &str| {
            codec::to_value(
                &M {
                    name: Tf::Known(name.into()),
                    ..Default::default()
                },
                r.value_type(),
            )
            .unwrap()
        };
        let (out, d) = r.apply(&ctx, &Value::Null, &planned("half")).await;
        assert!(d.has_errors(), "the error must reach Terraform");
        let (state, _) = out.expect("the object made goes into state (Terraform taints it)");
        assert_eq!(state.get("id"), Some(&Value::from("new")));
        // A later create in the same process does not inherit it.
        let (out, d) = r.apply(&ctx, &Value::Null, &planned("whole")).await;
        assert!(!d.has_errors(), "{d}");
        assert_eq!(out.unwrap().0.get("name"), Some(&Value::from("whole")));
    }
}
