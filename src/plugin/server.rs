//! The `tfplugin6.Provider` gRPC service: decodes requests, routes them by type name to the registered
//! resources (through `adapter.rs`), and encodes responses.
//!
//! Invariants kept here:
//! - every response value is msgpack of exactly the schema type (the codec enforces it);
//! - every RPC Terraform may call answers — RPCs for features we do not offer (actions, state stores,
//!   functions, moves, config generation) return an error *diagnostic* saying so, never a hang
//!   and never a bare gRPC error that Terraform would print as "rpc error: Unimplemented";
//! - `StopProvider` cancels the token handed to in-flight handlers and installs a fresh one; the server keeps
//!   serving (Terraform still calls Shutdown afterwards);
//! - logs carry the RPC, resource type and a request id, never attribute values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::codec::{self, Type, Value};
use super::diagnostics::{path_to_proto, Diagnostic, Diagnostics};
use super::proto::tfplugin6 as pb;
use super::schema;
use super::service::{
    fill_write_only, Configured, Context, ErasedEphemeralResource, ErasedProvider, ErasedResource,
    ImportFrom, ListRequest, Registry,
};

type Resp<T> = Result<Response<T>, Status>;
type BoxStream<T> = std::pin::Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// The provider service.
pub struct ProviderService {
    provider: Arc<dyn ErasedProvider>,
    registry: Registry,
    provider_ty: Type,
    data: RwLock<Option<Configured>>,
    stop: Mutex<CancellationToken>,
    schema_response: pb::get_provider_schema::Response,
}

fn dv_decode(dv: Option<&pb::DynamicValue>, ty: &Type, what: &str) -> Result<Value, Diagnostics> {
    let r = match dv {
        None => return Ok(Value::Null),
        Some(d) if !d.msgpack.is_empty() => codec::decode_msgpack(&d.msgpack, ty),
        Some(d) if !d.json.is_empty() => codec::decode_json(&d.json, ty),
        Some(_) => return Ok(Value::Null),
    };
    r.map_err(|e| Diagnostic::from_codec(format!("Terraform sent an invalid {what}"), &e).into())
}

fn dv_encode(v: &Value, ty: &Type, what: &str) -> Result<pb::DynamicValue, Diagnostics> {
    codec::encode_msgpack(v, ty)
        .map(|msgpack| pb::DynamicValue {
            msgpack,
            json: Vec::new(),
        })
        .map_err(|e| {
            Diagnostic::from_codec(format!("Provider produced an invalid {what}"), &e).into()
        })
}

fn identity_data(
    v: Option<Value>,
    ty: Option<&Type>,
) -> Result<Option<pb::ResourceIdentityData>, Diagnostics> {
    match (v, ty) {
        (Some(v), Some(ty)) if !v.is_null() => Ok(Some(pb::ResourceIdentityData {
            identity_data: Some(dv_encode(&v, ty, "identity")?),
        })),
        _ => Ok(None),
    }
}

fn unknown_type(provider: &str, kind: &str, name: &str) -> Diagnostics {
    Diagnostic::error(
        format!("Unknown {kind} type"),
        format!("The {provider} provider has no {kind} type named {name:?}. Check the spelling, or upgrade the provider."),
    )
    .into()
}

fn unsupported(provider: &str, feature: &str) -> Diagnostics {
    Diagnostic::error(
        format!("{feature} not supported"),
        format!("The {provider} provider does not implement {feature}."),
    )
    .into()
}

fn log_done(rpc: &'static str, type_name: &str, started: Instant, diags: &Diagnostics) {
    tracing::debug!(
        tf_rpc = rpc,
        tf_resource_type = type_name,
        tf_req_duration_ms = started.elapsed().as_millis() as u64,
        diagnostic_error_count = diags.iter().filter(|d| d.is_error()).count() as u64,
        diagnostic_warning_count = diags.iter().filter(|d| !d.is_error()).count() as u64,
        "served"
    );
    for d in diags.iter() {
        // Summaries and paths only: details may quote remote error text.
        tracing::info!(
            tf_rpc = rpc,
            tf_resource_type = type_name,
            diagnostic_severity = if d.is_error() { "ERROR" } else { "WARNING" },
            diagnostic_summary = %d.summary,
            diagnostic_attribute = %d.path.as_deref().map(codec::format_path).unwrap_or_default(),
            "diagnostic"
        );
    }
}

impl ProviderService {
    /// A service serving `provider`.
    pub fn new(provider: Arc<dyn ErasedProvider>) -> Self {
        let registry = provider.registry();
        let provider_ty = provider.schema().value_type();
        let schema_response = Self::build_schema_response(&registry, provider.schema());
        Self {
            provider,
            registry,
            provider_ty,
            data: RwLock::new(None),
            stop: Mutex::new(CancellationToken::new()),
            schema_response,
        }
    }

    /// `get_provider_schema_optional`: our schema is fixed at build time and no RPC depends on GetProviderSchema
    /// having been called first, so Terraform (1.6+) may hand later provider instances of the same command the
    /// schema it cached from the first one — each such instance then skips GetProviderSchema and
    /// GetResourceIdentitySchemas (a ~20 KiB encode here and a decode plus conversion in Terraform).
    fn capabilities() -> pb::ServerCapabilities {
        pb::ServerCapabilities {
            plan_destroy: true,
            get_provider_schema_optional: true,
            move_resource_state: false,
            generate_resource_config: false,
        }
    }

    fn build_schema_response(
        registry: &Registry,
        provider_schema: &schema::Schema,
    ) -> pb::get_provider_schema::Response {
        pb::get_provider_schema::Response {
            provider: Some(schema::to_proto(provider_schema)),
            resource_schemas: registry
                .resources
                .iter()
                .map(|(n, r)| (n.clone(), schema::to_proto(r.schema())))
                .collect(),
            data_source_schemas: registry
                .data_sources
                .iter()
                .map(|(n, d)| (n.clone(), schema::to_proto(d.schema())))
                .collect(),
            list_resource_schemas: registry
                .list_resources
                .iter()
                .map(|(n, l)| (n.clone(), schema::to_proto(l.schema())))
                .collect(),
            functions: HashMap::new(),
            ephemeral_resource_schemas: registry
                .ephemeral_resources
                .iter()
                .map(|(n, e)| (n.clone(), schema::to_proto(e.schema())))
                .collect(),
            state_store_schemas: HashMap::new(),
            action_schemas: HashMap::new(),
            diagnostics: Vec::new(),
            provider_meta: None,
            server_capabilities: Some(Self::capabilities()),
        }
    }

    fn context(&self) -> Context {
        let data = self.data.read().ok().and_then(|d| d.clone());
        let token = self
            .stop
            .lock()
            .map(|t| t.child_token())
            .unwrap_or_default();
        Context::new(data, token)
    }

    fn resource(&self, name: &str) -> Result<Arc<dyn ErasedResource>, Diagnostics> {
        self.registry
            .resources
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_type(self.provider.name(), "resource", name))
    }

    fn ephemeral(&self, name: &str) -> Result<Arc<dyn ErasedEphemeralResource>, Diagnostics> {
        self.registry
            .ephemeral_resources
            .get(name)
            .cloned()
            .ok_or_else(|| unknown_type(self.provider.name(), "ephemeral resource", name))
    }

    /// Cancels in-flight work (StopProvider) and arms a fresh token for later requests.
    pub fn stop(&self) {
        if let Ok(mut t) = self.stop.lock() {
            t.cancel();
            *t = CancellationToken::new();
        }
    }

    fn validate_provider(&self, config: &pb::DynamicValue) -> Diagnostics {
        match dv_decode(Some(config), &self.provider_ty, "provider configuration") {
            Ok(v) => self.provider.validate(&v),
            Err(d) => d,
        }
    }
}

#[tonic::async_trait]
impl pb::provider_server::Provider for ProviderService {
    async fn get_metadata(
        &self,
        _r: Request<pb::get_metadata::Request>,
    ) -> Resp<pb::get_metadata::Response> {
        use pb::get_metadata as gm;
        Ok(Response::new(gm::Response {
            server_capabilities: Some(Self::capabilities()),
            diagnostics: Vec::new(),
            data_sources: self
                .registry
                .data_sources
                .keys()
                .map(|n| gm::DataSourceMetadata {
                    type_name: n.clone(),
                })
                .collect(),
            resources: self
                .registry
                .resources
                .keys()
                .map(|n| gm::ResourceMetadata {
                    type_name: n.clone(),
                })
                .collect(),
            functions: Vec::new(),
            ephemeral_resources: self
                .registry
                .ephemeral_resources
                .keys()
                .map(|n| gm::EphemeralMetadata {
                    type_name: n.clone(),
                })
                .collect(),
            list_resources: self
                .registry
                .list_resources
                .keys()
                .map(|n| gm::ListResourceMetadata {
                    type_name: n.clone(),
                })
                .collect(),
            state_stores: Vec::new(),
            actions: Vec::new(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _r: Request<pb::get_provider_schema::Request>,
    ) -> Resp<pb::get_provider_schema::Response> {
        tracing::debug!(tf_rpc = "GetProviderSchema", "served");
        Ok(Response::new(self.schema_response.clone()))
    }

    async fn validate_provider_config(
        &self,
        r: Request<pb::validate_provider_config::Request>,
    ) -> Resp<pb::validate_provider_config::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let diags = self.validate_provider(&req.config.unwrap_or_default());
        log_done("ValidateProviderConfig", "", started, &diags);
        Ok(Response::new(pb::validate_provider_config::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn configure_provider(
        &self,
        r: Request<pb::configure_provider::Request>,
    ) -> Resp<pb::configure_provider::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let mut diags = Diagnostics::new();
        match dv_decode(
            req.config.as_ref(),
            &self.provider_ty,
            "provider configuration",
        )
        .and_then(|v| self.provider.configure(&req.terraform_version, &v))
        {
            Err(d) => diags.extend(d),
            Ok(data) => {
                tracing::info!(
                    tf_rpc = "ConfigureProvider",
                    terraform_version = %req.terraform_version,
                    "provider configured"
                );
                if let Ok(mut slot) = self.data.write() {
                    *slot = Some(data);
                }
            }
        }
        log_done("ConfigureProvider", "", started, &diags);
        Ok(Response::new(pb::configure_provider::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn validate_resource_config(
        &self,
        r: Request<pb::validate_resource_config::Request>,
    ) -> Resp<pb::validate_resource_config::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let diags = (|| {
            let res = self.resource(&req.type_name)?;
            let v = dv_decode(req.config.as_ref(), res.value_type(), "resource configuration")?;
            let mut diags = res.validate(&v);
            let wo_allowed = req
                .client_capabilities
                .as_ref()
                .is_some_and(|c| c.write_only_attributes_allowed);
            if !wo_allowed {
                for a in res.schema().block.attributes.iter().filter(|a| a.write_only) {
                    if v.get(&a.name).is_some_and(|x| !x.is_null()) {
                        diags.push(
                            Diagnostic::error(
                                "Write-only attribute not supported by this Terraform",
                                format!(
                                    "`{}` is write-only, which needs Terraform 1.11 or newer. Upgrade \
                                     Terraform or remove the attribute.",
                                    a.name
                                ),
                            )
                            .at(vec![codec::PathStep::Attr(a.name.clone())]),
                        );
                    }
                }
            }
            Ok::<_, Diagnostics>(diags)
        })()
        .unwrap_or_else(|d| d);
        log_done("ValidateResourceConfig", &req.type_name, started, &diags);
        Ok(Response::new(pb::validate_resource_config::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn validate_data_resource_config(
        &self,
        r: Request<pb::validate_data_resource_config::Request>,
    ) -> Resp<pb::validate_data_resource_config::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let diags = match self.registry.data_sources.get(&req.type_name) {
            None => unknown_type(self.provider.name(), "data source", &req.type_name),
            Some(ds) => match dv_decode(
                req.config.as_ref(),
                ds.value_type(),
                "data source configuration",
            ) {
                Ok(v) => ds.validate(&v),
                Err(d) => d,
            },
        };
        log_done(
            "ValidateDataResourceConfig",
            &req.type_name,
            started,
            &diags,
        );
        Ok(Response::new(pb::validate_data_resource_config::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn upgrade_resource_state(
        &self,
        r: Request<pb::upgrade_resource_state::Request>,
    ) -> Resp<pb::upgrade_resource_state::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let result = (|| {
            let res = self.resource(&req.type_name)?;
            let raw = req.raw_state.unwrap_or_default();
            if raw.json.is_empty() {
                if !raw.flatmap.is_empty() {
                    return Err(Diagnostics::from(Diagnostic::error(
                        "Legacy state format not supported",
                        format!(
                            "This state was written in the pre-0.12 flatmap format, which the {} provider \
                             never produced. Remove it from state (`terraform state rm`) and import the object \
                             again.",
                            self.provider.name()
                        ),
                    )));
                }
                return Ok((None, Diagnostics::new()));
            }
            let (v, diags) = res.upgrade_state(req.version, &raw.json);
            match v {
                Some(v) => Ok((
                    Some(dv_encode(&v, res.value_type(), "upgraded state")?),
                    diags,
                )),
                None => Err(diags),
            }
        })();
        let (upgraded_state, diags) = result.unwrap_or_else(|d| (None, d));
        log_done("UpgradeResourceState", &req.type_name, started, &diags);
        Ok(Response::new(pb::upgrade_resource_state::Response {
            upgraded_state,
            diagnostics: diags.to_proto(),
        }))
    }

    async fn get_resource_identity_schemas(
        &self,
        _r: Request<pb::get_resource_identity_schemas::Request>,
    ) -> Resp<pb::get_resource_identity_schemas::Response> {
        Ok(Response::new(pb::get_resource_identity_schemas::Response {
            identity_schemas: self
                .registry
                .resources
                .iter()
                .filter_map(|(n, r)| {
                    r.identity_schema()
                        .map(|s| (n.clone(), schema::identity_to_proto(s)))
                })
                .collect(),
            diagnostics: Vec::new(),
        }))
    }

    async fn upgrade_resource_identity(
        &self,
        r: Request<pb::upgrade_resource_identity::Request>,
    ) -> Resp<pb::upgrade_resource_identity::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let result = (|| {
            let res = self.resource(&req.type_name)?;
            let raw = req.raw_identity.unwrap_or_default();
            let (v, diags) = res.upgrade_identity(req.version, &raw.json);
            match (v, res.identity_type()) {
                (Some(v), Some(ty)) => Ok((
                    Some(pb::ResourceIdentityData {
                        identity_data: Some(dv_encode(&v, ty, "identity")?),
                    }),
                    diags,
                )),
                _ => Err(diags),
            }
        })();
        let (upgraded_identity, diags) = result.unwrap_or_else(|d| (None, d));
        log_done("UpgradeResourceIdentity", &req.type_name, started, &diags);
        Ok(Response::new(pb::upgrade_resource_identity::Response {
            upgraded_identity,
            diagnostics: diags.to_proto(),
        }))
    }

    async fn read_resource(
        &self,
        r: Request<pb::read_resource::Request>,
    ) -> Resp<pb::read_resource::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let ctx = self.context();
        let mut resp = pb::read_resource::Response {
            new_state: req.current_state.clone(),
            diagnostics: Vec::new(),
            private: req.private.clone(),
            deferred: None,
            new_identity: req.current_identity.clone(),
        };
        let diags = async {
            let res = self.resource(&req.type_name)?;
            let state = dv_decode(req.current_state.as_ref(), res.value_type(), "state")?;
            let (out, mut diags) = res.read(&ctx, &state).await;
            if let Some((v, ident)) = out {
                match dv_encode(&v, res.value_type(), "state")
                    .and_then(|s| Ok((s, identity_data(ident, res.identity_type())?)))
                {
                    Ok((s, i)) => {
                        resp.new_state = Some(s);
                        resp.new_identity = i;
                    }
                    Err(d) => diags.extend(d),
                }
            }
            Ok::<_, Diagnostics>(diags)
        }
        .await
        .unwrap_or_else(|d| d);
        log_done("ReadResource", &req.type_name, started, &diags);
        resp.diagnostics = diags.to_proto();
        Ok(Response::new(resp))
    }

    async fn plan_resource_change(
        &self,
        r: Request<pb::plan_resource_change::Request>,
    ) -> Resp<pb::plan_resource_change::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let ctx = self.context();
        let mut resp = pb::plan_resource_change::Response {
            planned_state: None,
            requires_replace: Vec::new(),
            planned_private: req.prior_private.clone(),
            diagnostics: Vec::new(),
            legacy_type_system: false,
            deferred: None,
            planned_identity: None,
        };
        let diags = async {
            let res = self.resource(&req.type_name)?;
            let ty = res.value_type();
            let prior = dv_decode(req.prior_state.as_ref(), ty, "prior state")?;
            let proposed = dv_decode(req.proposed_new_state.as_ref(), ty, "proposed new state")?;
            let config = dv_decode(req.config.as_ref(), ty, "configuration")?;
            let (out, mut diags) = res.plan(&ctx, &prior, &proposed, &config).await;
            if let Some(p) = out {
                match dv_encode(&p.planned, ty, "plan") {
                    Ok(s) => resp.planned_state = Some(s),
                    Err(d) => diags.extend(d),
                }
                // Identity stays the same unless the object is created or replaced.
                if !prior.is_null() && !p.planned.is_null() && p.requires_replace.is_empty() {
                    resp.planned_identity = req.prior_identity.clone();
                }
                resp.requires_replace = p
                    .requires_replace
                    .iter()
                    .map(|x| path_to_proto(x))
                    .collect();
            }
            Ok::<_, Diagnostics>(diags)
        }
        .await
        .unwrap_or_else(|d| d);
        log_done("PlanResourceChange", &req.type_name, started, &diags);
        resp.diagnostics = diags.to_proto();
        Ok(Response::new(resp))
    }

    async fn apply_resource_change(
        &self,
        r: Request<pb::apply_resource_change::Request>,
    ) -> Resp<pb::apply_resource_change::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let ctx = self.context();
        let mut resp = pb::apply_resource_change::Response {
            new_state: None,
            private: req.planned_private.clone(),
            diagnostics: Vec::new(),
            legacy_type_system: false,
            new_identity: None,
        };
        let diags = async {
            let res = self.resource(&req.type_name)?;
            let ty = res.value_type();
            let prior = dv_decode(req.prior_state.as_ref(), ty, "prior state")?;
            let mut planned = dv_decode(req.planned_state.as_ref(), ty, "planned state")?;
            // Write-only values are null in the plan; Terraform sends them in the configuration only.
            if !planned.is_null() {
                let config = dv_decode(req.config.as_ref(), ty, "configuration")?;
                fill_write_only(&res.schema().block, &config, &mut planned);
            }
            let (out, mut diags) = res.apply(&ctx, &prior, &planned).await;
            match out {
                Some((v, ident)) => match dv_encode(&v, ty, "new state")
                    .and_then(|s| Ok((s, identity_data(ident, res.identity_type())?)))
                {
                    Ok((s, i)) => {
                        resp.new_state = Some(s);
                        resp.new_identity = i;
                    }
                    Err(d) => diags.extend(d),
                },
                // On failure keep the prior object in state (null for a failed create).
                None => resp.new_state = req.prior_state.clone(),
            }
            Ok::<_, Diagnostics>(diags)
        }
        .await
        .unwrap_or_else(|d| d);
        log_done("ApplyResourceChange", &req.type_name, started, &diags);
        resp.diagnostics = diags.to_proto();
        Ok(Response::new(resp))
    }

    async fn import_resource_state(
        &self,
        r: Request<pb::import_resource_state::Request>,
    ) -> Resp<pb::import_resource_state::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let ctx = self.context();
        let mut imported = Vec::new();
        let diags = async {
            let res = self.resource(&req.type_name)?;
            let from = match req.identity.as_ref().and_then(|i| i.identity_data.as_ref()) {
                Some(dv) => {
                    let Some(ity) = res.identity_type() else {
                        return Err(Diagnostic::error(
                            "Import by identity not supported",
                            format!(
                                "The resource type {} has no identity; import it by ID.",
                                req.type_name
                            ),
                        )
                        .into());
                    };
                    ImportFrom::Identity(dv_decode(Some(dv), ity, "identity")?)
                }
                None => ImportFrom::Id(req.id.clone()),
            };
            let (out, mut diags) = res.import(&ctx, from).await;
            if let Some((v, ident)) = out {
                match dv_encode(&v, res.value_type(), "imported state")
                    .and_then(|s| Ok((s, identity_data(ident, res.identity_type())?)))
                {
                    Ok((state, identity)) => {
                        imported.push(pb::import_resource_state::ImportedResource {
                            type_name: req.type_name.clone(),
                            state: Some(state),
                            private: Vec::new(),
                            identity,
                        })
                    }
                    Err(d) => diags.extend(d),
                }
            }
            Ok::<_, Diagnostics>(diags)
        }
        .await
        .unwrap_or_else(|d| d);
        log_done("ImportResourceState", &req.type_name, started, &diags);
        Ok(Response::new(pb::import_resource_state::Response {
            imported_resources: imported,
            diagnostics: diags.to_proto(),
            deferred: None,
        }))
    }

    async fn move_resource_state(
        &self,
        r: Request<pb::move_resource_state::Request>,
    ) -> Resp<pb::move_resource_state::Response> {
        let req = r.into_inner();
        let diags: Diagnostics = Diagnostic::error(
            "Moving resource state is not supported",
            format!(
                "The {} provider cannot move state from {} ({}) to {}. Remove the old object from state \
                 (`terraform state rm`) and import it as the new type instead.",
                self.provider.name(),
                req.source_type_name, req.source_provider_address, req.target_type_name
            ),
        )
        .into();
        Ok(Response::new(pb::move_resource_state::Response {
            target_state: None,
            diagnostics: diags.to_proto(),
            target_private: Vec::new(),
            target_identity: None,
        }))
    }

    async fn read_data_source(
        &self,
        r: Request<pb::read_data_source::Request>,
    ) -> Resp<pb::read_data_source::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let ctx = self.context();
        let mut state = None;
        let diags = async {
            let ds = self
                .registry
                .data_sources
                .get(&req.type_name)
                .cloned()
                .ok_or_else(|| unknown_type(self.provider.name(), "data source", &req.type_name))?;
            let config = dv_decode(
                req.config.as_ref(),
                ds.value_type(),
                "data source configuration",
            )?;
            let (out, mut diags) = ds.read(&ctx, &config).await;
            if let Some(v) = out {
                match dv_encode(&v, ds.value_type(), "data source result") {
                    Ok(s) => state = Some(s),
                    Err(d) => diags.extend(d),
                }
            }
            Ok::<_, Diagnostics>(diags)
        }
        .await
        .unwrap_or_else(|d| d);
        log_done("ReadDataSource", &req.type_name, started, &diags);
        Ok(Response::new(pb::read_data_source::Response {
            state,
            diagnostics: diags.to_proto(),
            deferred: None,
        }))
    }

    async fn generate_resource_config(
        &self,
        _r: Request<pb::generate_resource_config::Request>,
    ) -> Resp<pb::generate_resource_config::Response> {
        Ok(Response::new(pb::generate_resource_config::Response {
            config: None,
            diagnostics: unsupported(self.provider.name(), "Generating resource configuration")
                .to_proto(),
        }))
    }

    async fn validate_ephemeral_resource_config(
        &self,
        r: Request<pb::validate_ephemeral_resource_config::Request>,
    ) -> Resp<pb::validate_ephemeral_resource_config::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let diags = self
            .ephemeral(&req.type_name)
            .and_then(|e| {
                let v = dv_decode(
                    req.config.as_ref(),
                    e.value_type(),
                    "ephemeral resource configuration",
                )?;
                Ok(e.validate(&v))
            })
            .unwrap_or_else(|d| d);
        log_done(
            "ValidateEphemeralResourceConfig",
            &req.type_name,
            started,
            &diags,
        );
        Ok(Response::new(
            pb::validate_ephemeral_resource_config::Response {
                diagnostics: diags.to_proto(),
            },
        ))
    }

    async fn open_ephemeral_resource(
        &self,
        r: Request<pb::open_ephemeral_resource::Request>,
    ) -> Resp<pb::open_ephemeral_resource::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let ctx = self.context();
        let mut resp = pb::open_ephemeral_resource::Response::default();
        let diags = async {
            let e = self.ephemeral(&req.type_name)?;
            let config = dv_decode(
                req.config.as_ref(),
                e.value_type(),
                "ephemeral resource configuration",
            )?;
            let (out, mut diags) = e.open(&ctx, &config).await;
            if let Some(o) = out {
                match dv_encode(&o.result, e.value_type(), "ephemeral resource result") {
                    Ok(v) => {
                        resp.result = Some(v);
                        resp.renew_at = o.renew_at.map(prost_types::Timestamp::from);
                        resp.private = o.private;
                    }
                    Err(d) => diags.extend(d),
                }
            }
            Ok::<_, Diagnostics>(diags)
        }
        .await
        .unwrap_or_else(|d| d);
        log_done("OpenEphemeralResource", &req.type_name, started, &diags);
        resp.diagnostics = diags.to_proto();
        Ok(Response::new(resp))
    }

    async fn renew_ephemeral_resource(
        &self,
        r: Request<pb::renew_ephemeral_resource::Request>,
    ) -> Resp<pb::renew_ephemeral_resource::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let ctx = self.context();
        let mut resp = pb::renew_ephemeral_resource::Response::default();
        let diags = async {
            let e = self.ephemeral(&req.type_name)?;
            let (out, diags) = e.renew(&ctx, req.private.as_deref()).await;
            if let Some(o) = out {
                resp.renew_at = o.renew_at.map(prost_types::Timestamp::from);
                resp.private = o.private;
            }
            Ok::<_, Diagnostics>(diags)
        }
        .await
        .unwrap_or_else(|d| d);
        log_done("RenewEphemeralResource", &req.type_name, started, &diags);
        resp.diagnostics = diags.to_proto();
        Ok(Response::new(resp))
    }

    async fn close_ephemeral_resource(
        &self,
        r: Request<pb::close_ephemeral_resource::Request>,
    ) -> Resp<pb::close_ephemeral_resource::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let ctx = self.context();
        let diags = match self.ephemeral(&req.type_name) {
            Ok(e) => e.close(&ctx, req.private.as_deref()).await,
            Err(d) => d,
        };
        log_done("CloseEphemeralResource", &req.type_name, started, &diags);
        Ok(Response::new(pb::close_ephemeral_resource::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn list_resource(
        &self,
        r: Request<pb::list_resource::Request>,
    ) -> Resp<BoxStream<pb::list_resource::Event>> {
        let started = Instant::now();
        let req = r.into_inner();
        let ctx = self.context();
        let error_stream = |d: Diagnostics| -> BoxStream<pb::list_resource::Event> {
            futures::stream::iter(vec![Ok(pb::list_resource::Event {
                identity: None,
                display_name: String::new(),
                resource_object: None,
                diagnostic: d.to_proto(),
            })])
            .boxed()
        };
        let setup = async {
            let lr = self
                .registry
                .list_resources
                .get(&req.type_name)
                .cloned()
                .ok_or_else(|| {
                    unknown_type(self.provider.name(), "list resource", &req.type_name)
                })?;
            let res = self.resource(&req.type_name)?;
            let config = dv_decode(req.config.as_ref(), lr.value_type(), "list configuration")?;
            let list_req = ListRequest {
                include_resource_object: req.include_resource_object,
                limit: req.limit,
            };
            let stream = lr.list(&ctx, &config, list_req, res.clone()).await?;
            Ok::<_, Diagnostics>((stream, res))
        }
        .await;
        let (stream, res) = match setup {
            Ok(s) => s,
            Err(d) => {
                log_done("ListResource", &req.type_name, started, &d);
                return Ok(Response::new(error_stream(d)));
            }
        };
        let limit = if req.limit > 0 {
            usize::try_from(req.limit).unwrap_or(usize::MAX)
        } else {
            usize::MAX
        };
        let ity = res.identity_type().cloned();
        let rty = res.value_type().clone();
        log_done("ListResource", &req.type_name, started, &Diagnostics::new());
        let out = stream
            .take(limit)
            .map(move |ev| {
                let mut diags = ev.diagnostics;
                let identity = match identity_data(ev.identity, ity.as_ref()) {
                    Ok(i) => i,
                    Err(d) => {
                        diags.extend(d);
                        None
                    }
                };
                let resource_object = match ev.object.map(|o| dv_encode(&o, &rty, "listed object"))
                {
                    None => None,
                    Some(Ok(o)) => Some(o),
                    Some(Err(d)) => {
                        diags.extend(d);
                        None
                    }
                };
                Ok(pb::list_resource::Event {
                    identity,
                    display_name: ev.display_name,
                    resource_object,
                    diagnostic: diags.to_proto(),
                })
            })
            .boxed();
        Ok(Response::new(out))
    }

    async fn validate_list_resource_config(
        &self,
        r: Request<pb::validate_list_resource_config::Request>,
    ) -> Resp<pb::validate_list_resource_config::Response> {
        let started = Instant::now();
        let req = r.into_inner();
        let diags = match self.registry.list_resources.get(&req.type_name) {
            None => unknown_type(self.provider.name(), "list resource", &req.type_name),
            Some(lr) => match dv_decode(req.config.as_ref(), lr.value_type(), "list configuration")
            {
                Ok(v) => lr.validate(&v),
                Err(d) => d,
            },
        };
        log_done(
            "ValidateListResourceConfig",
            &req.type_name,
            started,
            &diags,
        );
        Ok(Response::new(pb::validate_list_resource_config::Response {
            diagnostics: diags.to_proto(),
        }))
    }

    async fn get_functions(
        &self,
        _r: Request<pb::get_functions::Request>,
    ) -> Resp<pb::get_functions::Response> {
        Ok(Response::new(pb::get_functions::Response::default()))
    }

    async fn call_function(
        &self,
        r: Request<pb::call_function::Request>,
    ) -> Resp<pb::call_function::Response> {
        let name = r.into_inner().name;
        Ok(Response::new(pb::call_function::Response {
            result: None,
            error: Some(pb::FunctionError {
                text: format!(
                    "The {} provider defines no function named {name:?}.",
                    self.provider.name()
                ),
                function_argument: None,
            }),
        }))
    }

    async fn validate_state_store_config(
        &self,
        _r: Request<pb::validate_state_store::Request>,
    ) -> Resp<pb::validate_state_store::Response> {
        Ok(Response::new(pb::validate_state_store::Response {
            diagnostics: unsupported(self.provider.name(), "State storage").to_proto(),
        }))
    }

    async fn configure_state_store(
        &self,
        _r: Request<pb::configure_state_store::Request>,
    ) -> Resp<pb::configure_state_store::Response> {
        Ok(Response::new(pb::configure_state_store::Response {
            diagnostics: unsupported(self.provider.name(), "State storage").to_proto(),
            capabilities: None,
        }))
    }

    async fn read_state_bytes(
        &self,
        _r: Request<pb::read_state_bytes::Request>,
    ) -> Resp<BoxStream<pb::read_state_bytes::Response>> {
        let ev = pb::read_state_bytes::Response {
            diagnostics: unsupported(self.provider.name(), "State storage").to_proto(),
            ..Default::default()
        };
        Ok(Response::new(futures::stream::iter(vec![Ok(ev)]).boxed()))
    }

    async fn write_state_bytes(
        &self,
        _r: Request<tonic::Streaming<pb::write_state_bytes::RequestChunk>>,
    ) -> Resp<pb::write_state_bytes::Response> {
        Ok(Response::new(pb::write_state_bytes::Response {
            diagnostics: unsupported(self.provider.name(), "State storage").to_proto(),
        }))
    }

    async fn lock_state(
        &self,
        _r: Request<pb::lock_state::Request>,
    ) -> Resp<pb::lock_state::Response> {
        Ok(Response::new(pb::lock_state::Response {
            lock_id: String::new(),
            diagnostics: unsupported(self.provider.name(), "State storage").to_proto(),
        }))
    }

    async fn unlock_state(
        &self,
        _r: Request<pb::unlock_state::Request>,
    ) -> Resp<pb::unlock_state::Response> {
        Ok(Response::new(pb::unlock_state::Response {
            diagnostics: unsupported(self.provider.name(), "State storage").to_proto(),
        }))
    }

    async fn get_states(
        &self,
        _r: Request<pb::get_states::Request>,
    ) -> Resp<pb::get_states::Response> {
        Ok(Response::new(pb::get_states::Response {
            state_id: Vec::new(),
            diagnostics: unsupported(self.provider.name(), "State storage").to_proto(),
        }))
    }

    async fn delete_state(
        &self,
        _r: Request<pb::delete_state::Request>,
    ) -> Resp<pb::delete_state::Response> {
        Ok(Response::new(pb::delete_state::Response {
            diagnostics: unsupported(self.provider.name(), "State storage").to_proto(),
        }))
    }

    async fn plan_action(
        &self,
        _r: Request<pb::plan_action::Request>,
    ) -> Resp<pb::plan_action::Response> {
        Ok(Response::new(pb::plan_action::Response {
            diagnostics: unsupported(self.provider.name(), "Actions").to_proto(),
            deferred: None,
        }))
    }

    async fn invoke_action(
        &self,
        _r: Request<pb::invoke_action::Request>,
    ) -> Resp<BoxStream<pb::invoke_action::Event>> {
        use pb::invoke_action::event;
        let ev = pb::invoke_action::Event {
            r#type: Some(event::Type::Completed(event::Completed {
                diagnostics: unsupported(self.provider.name(), "Actions").to_proto(),
            })),
        };
        Ok(Response::new(futures::stream::iter(vec![Ok(ev)]).boxed()))
    }

    async fn validate_action_config(
        &self,
        _r: Request<pb::validate_action_config::Request>,
    ) -> Resp<pb::validate_action_config::Response> {
        Ok(Response::new(pb::validate_action_config::Response {
            diagnostics: unsupported(self.provider.name(), "Actions").to_proto(),
        }))
    }

    async fn stop_provider(
        &self,
        _r: Request<pb::stop_provider::Request>,
    ) -> Resp<pb::stop_provider::Response> {
        tracing::info!(
            tf_rpc = "StopProvider",
            "stop requested: cancelling in-flight operations"
        );
        self.stop();
        Ok(Response::new(pb::stop_provider::Response {
            error: String::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::provider_server::Provider as _;

    use crate::plugin::schema::{Attribute, Block, NestedBlock, Schema};
    use crate::plugin::service::{Outcome, PlannedChange};

    /// A toy provider, written against the value-level service only: a provider block with one `greeting`
    /// attribute (validated: not "bad") and one resource `toy_echo` whose plan is the proposed value and whose
    /// apply returns the plan. It proves the server serves any provider, not just this crate's.
    struct Toy {
        schema: Schema,
        closed: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    struct Echo {
        schema: Schema,
        ty: Type,
    }

    #[async_trait::async_trait]
    impl ErasedResource for Echo {
        fn schema(&self) -> &Schema {
            &self.schema
        }
        fn value_type(&self) -> &Type {
            &self.ty
        }
        fn identity_schema(&self) -> Option<&crate::plugin::schema::IdentitySchema> {
            None
        }
        fn identity_type(&self) -> Option<&Type> {
            None
        }
        fn validate(&self, _config: &Value) -> Diagnostics {
            Diagnostics::new()
        }
        async fn plan(
            &self,
            _ctx: &Context,
            _prior: &Value,
            proposed: &Value,
            _config: &Value,
        ) -> Outcome<PlannedChange> {
            (
                Some(PlannedChange {
                    planned: proposed.clone(),
                    requires_replace: vec![],
                }),
                Diagnostics::new(),
            )
        }
        async fn apply(
            &self,
            ctx: &Context,
            _prior: &Value,
            planned: &Value,
        ) -> Outcome<(Value, Option<Value>)> {
            // The configured data is the toy's own type.
            let greeting = ctx.data::<String>().cloned().unwrap_or_default();
            let mut v = planned.clone();
            if let Value::Object(m) = &mut v {
                m.insert("greeting".into(), Value::from(greeting.as_str()));
            }
            (Some((v, None)), Diagnostics::new())
        }
        async fn read(&self, _ctx: &Context, state: &Value) -> Outcome<(Value, Option<Value>)> {
            (Some((state.clone(), None)), Diagnostics::new())
        }
        async fn import(
            &self,
            _ctx: &Context,
            _from: ImportFrom,
        ) -> Outcome<(Value, Option<Value>)> {
            (None, Diagnostic::error("no import", "toy").into())
        }
        fn upgrade_state(&self, _version: i64, json: &[u8]) -> Outcome<Value> {
            match codec::decode_json(json, &self.ty) {
                Ok(v) => (Some(v), Diagnostics::new()),
                Err(e) => (None, Diagnostic::from_codec("bad", &e).into()),
            }
        }
        fn upgrade_identity(&self, _version: i64, _json: &[u8]) -> Outcome<Value> {
            (None, Diagnostic::error("no identity", "toy").into())
        }
    }

    /// `toy_secret`: an ephemeral resource whose result is a computed `value` derived from `seed`, with a
    /// renewal time and private data that renew and close must get back.
    struct Secret {
        schema: Schema,
        ty: Type,
        closed: Arc<Mutex<Vec<Vec<u8>>>>,
    }

    #[async_trait::async_trait]
    impl ErasedEphemeralResource for Secret {
        fn schema(&self) -> &Schema {
            &self.schema
        }
        fn value_type(&self) -> &Type {
            &self.ty
        }
        fn validate(&self, config: &Value) -> Diagnostics {
            let mut d = Diagnostics::new();
            if config.get("seed") == Some(&Value::from("")) {
                d.push(
                    Diagnostic::error("Empty seed", "Give a seed.")
                        .at(vec![codec::PathStep::Attr("seed".into())]),
                );
            }
            d
        }
        async fn open(
            &self,
            _ctx: &Context,
            config: &Value,
        ) -> Outcome<crate::plugin::service::EphemeralOpened> {
            let seed = match config.get("seed") {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            let mut v = config.clone();
            if let Value::Object(m) = &mut v {
                m.insert(
                    "value".into(),
                    Value::from(format!("secret-{seed}").as_str()),
                );
            }
            (
                Some(crate::plugin::service::EphemeralOpened {
                    result: v,
                    renew_at: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(100)),
                    private: Some(seed.into_bytes()),
                }),
                Diagnostics::new(),
            )
        }
        async fn renew(
            &self,
            _ctx: &Context,
            private: Option<&[u8]>,
        ) -> Outcome<crate::plugin::service::EphemeralRenewed> {
            let mut p = private.unwrap_or_default().to_vec();
            p.extend_from_slice(b"+renewed");
            (
                Some(crate::plugin::service::EphemeralRenewed {
                    renew_at: None,
                    private: Some(p),
                }),
                Diagnostics::new(),
            )
        }
        async fn close(&self, _ctx: &Context, private: Option<&[u8]>) -> Diagnostics {
            self.closed
                .lock()
                .unwrap()
                .push(private.unwrap_or_default().to_vec());
            Diagnostics::new()
        }
    }

    impl ErasedProvider for Toy {
        fn name(&self) -> &str {
            "toy"
        }
        fn schema(&self) -> &Schema {
            &self.schema
        }
        fn validate(&self, config: &Value) -> Diagnostics {
            let mut d = Diagnostics::new();
            if config.get("greeting") == Some(&Value::from("bad")) {
                d.push(
                    Diagnostic::error("Bad greeting", "Say something nicer.")
                        .at(vec![codec::PathStep::Attr("greeting".into())]),
                );
            }
            d
        }
        fn configure(&self, _tf: &str, config: &Value) -> Result<Configured, Diagnostics> {
            let g = match config.get("greeting") {
                Some(Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            Ok(Arc::new(g))
        }
        fn registry(&self) -> Registry {
            let schema = Schema::new("An echo.")
                .attribute(Attribute::string("text").optional().description("Echoed."))
                .attribute(
                    Attribute::string("greeting")
                        .computed()
                        .description("From the provider."),
                );
            let ty = schema.value_type();
            let mut r = Registry::default();
            r.resources
                .insert("toy_echo".into(), Arc::new(Echo { schema, ty }));
            let schema = Schema::new("A secret.")
                .attribute(Attribute::string("seed").required().description("Seed."))
                .attribute(
                    Attribute::string("value")
                        .computed()
                        .sensitive()
                        .description("The secret."),
                );
            let ty = schema.value_type();
            r.ephemeral_resources.insert(
                "toy_secret".into(),
                Arc::new(Secret {
                    schema,
                    ty,
                    closed: self.closed.clone(),
                }),
            );
            r
        }
    }

    fn toy() -> Arc<dyn ErasedProvider> {
        toy_closing_into(Arc::default())
    }

    /// The toy provider; its ephemeral resource records the private data each close gets into `closed`.
    fn toy_closing_into(closed: Arc<Mutex<Vec<Vec<u8>>>>) -> Arc<dyn ErasedProvider> {
        Arc::new(Toy {
            closed,
            schema: Schema::new("The toy provider.")
                .attribute(
                    Attribute::string("greeting")
                        .optional()
                        .description("A greeting."),
                )
                .block(NestedBlock::single("extra", Block::new("An extra block."))),
        })
    }

    fn svc() -> ProviderService {
        ProviderService::new(toy())
    }

    fn dv(v: &Value, ty: &Type) -> pb::DynamicValue {
        pb::DynamicValue {
            msgpack: codec::encode_msgpack(v, ty).unwrap(),
            json: vec![],
        }
    }

    #[tokio::test]
    async fn serves_a_provider_it_was_handed() {
        let s = svc();
        let bad = Value::object([("greeting", Value::from("bad")), ("extra", Value::Null)]);
        let d = s.validate_provider(&dv(&bad, &s.provider_ty));
        assert_eq!(d.iter().next().unwrap().summary, "Bad greeting");
        let good = Value::object([("greeting", Value::from("hi")), ("extra", Value::Null)]);
        let r = s
            .configure_provider(Request::new(pb::configure_provider::Request {
                terraform_version: "1.15.5".into(),
                config: Some(dv(&good, &s.provider_ty)),
                client_capabilities: None,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(errors(&r.diagnostics).is_empty());
        assert_eq!(s.context().data::<String>().map(String::as_str), Some("hi"));
        let ty = s.resource("toy_echo").unwrap().value_type().clone();
        let planned = Value::object([("text", Value::from("x")), ("greeting", Value::Unknown)]);
        let r = s
            .apply_resource_change(Request::new(pb::apply_resource_change::Request {
                type_name: "toy_echo".into(),
                prior_state: Some(dv(&Value::Null, &ty)),
                planned_state: Some(dv(&planned, &ty)),
                config: Some(dv(&planned, &ty)),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(errors(&r.diagnostics).is_empty(), "{:?}", r.diagnostics);
        let new = codec::decode_msgpack(&r.new_state.unwrap().msgpack, &ty).unwrap();
        assert_eq!(new.get("greeting"), Some(&Value::from("hi")));
        // Messages name the provider served, not this crate's.
        let d = s
            .validate_resource_config(Request::new(pb::validate_resource_config::Request {
                type_name: "toy_nope".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .diagnostics;
        assert!(
            d[0].detail
                .contains("The toy provider has no resource type"),
            "{}",
            d[0].detail
        );
    }

    fn errors(d: &[pb::Diagnostic]) -> Vec<String> {
        d.iter()
            .filter(|x| x.severity == pb::diagnostic::Severity::Error as i32)
            .map(|x| x.summary.clone())
            .collect()
    }

    #[tokio::test]
    async fn capabilities_and_schema() {
        let s = svc();
        let r = s
            .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
            .await
            .unwrap()
            .into_inner();
        let caps = r.server_capabilities.unwrap();
        assert!(
            caps.plan_destroy && caps.get_provider_schema_optional && !caps.move_resource_state
        );
        let provider = r.provider.unwrap().block.unwrap();
        let names: Vec<_> = provider
            .block_types
            .iter()
            .map(|b| b.type_name.as_str())
            .collect();
        assert_eq!(names, ["extra"]);
        let m = s
            .get_metadata(Request::new(pb::get_metadata::Request {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(m.resources.len(), r.resource_schemas.len());
    }

    #[tokio::test]
    async fn unsupported_features_answer_with_diagnostics() {
        let s = svc();
        let d = s
            .move_resource_state(Request::new(pb::move_resource_state::Request {
                source_type_name: "x".into(),
                target_type_name: "y".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .diagnostics;
        assert_eq!(errors(&d), ["Moving resource state is not supported"]);
        let mut st = s
            .invoke_action(Request::new(Default::default()))
            .await
            .unwrap()
            .into_inner();
        assert!(st.next().await.unwrap().is_ok());
        assert!(st.next().await.is_none());
        let f = s
            .call_function(Request::new(pb::call_function::Request {
                name: "nope".into(),
                arguments: vec![],
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(f.error.unwrap().text.contains("nope"));
    }

    #[tokio::test]
    async fn ephemeral_resources_validate_open_renew_and_close() {
        let closed = Arc::new(Mutex::new(Vec::new()));
        let s = ProviderService::new(toy_closing_into(closed.clone()));
        let schema = s
            .get_provider_schema(Request::new(pb::get_provider_schema::Request {}))
            .await
            .unwrap()
            .into_inner();
        assert!(schema.ephemeral_resource_schemas.contains_key("toy_secret"));
        let m = s
            .get_metadata(Request::new(pb::get_metadata::Request {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(m.ephemeral_resources[0].type_name, "toy_secret");
        let ty = s.ephemeral("toy_secret").unwrap().value_type().clone();
        let bad = Value::object([("seed", Value::from("")), ("value", Value::Null)]);
        let d = s
            .validate_ephemeral_resource_config(Request::new(
                pb::validate_ephemeral_resource_config::Request {
                    type_name: "toy_secret".into(),
                    config: Some(dv(&bad, &ty)),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .diagnostics;
        assert_eq!(errors(&d), ["Empty seed"]);
        let cfg = Value::object([("seed", Value::from("s1")), ("value", Value::Null)]);
        let r = s
            .open_ephemeral_resource(Request::new(pb::open_ephemeral_resource::Request {
                type_name: "toy_secret".into(),
                config: Some(dv(&cfg, &ty)),
                client_capabilities: None,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(errors(&r.diagnostics).is_empty(), "{:?}", r.diagnostics);
        let v = codec::decode_msgpack(&r.result.unwrap().msgpack, &ty).unwrap();
        assert_eq!(v.get("value"), Some(&Value::from("secret-s1")));
        assert_eq!(r.renew_at.unwrap().seconds, 100);
        assert_eq!(r.private.as_deref(), Some(&b"s1"[..]));
        let r = s
            .renew_ephemeral_resource(Request::new(pb::renew_ephemeral_resource::Request {
                type_name: "toy_secret".into(),
                private: r.private,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(r.renew_at.is_none());
        let c = s
            .close_ephemeral_resource(Request::new(pb::close_ephemeral_resource::Request {
                type_name: "toy_secret".into(),
                private: r.private,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(c.diagnostics.is_empty());
        assert_eq!(*closed.lock().unwrap(), [b"s1+renewed".to_vec()]);
        let d = s
            .open_ephemeral_resource(Request::new(pb::open_ephemeral_resource::Request {
                type_name: "toy_nope".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .diagnostics;
        assert_eq!(errors(&d), ["Unknown ephemeral resource type"]);
    }

    #[tokio::test]
    async fn unknown_types_and_flatmap_state_are_clear_errors() {
        let s = svc();
        let d = s
            .validate_resource_config(Request::new(pb::validate_resource_config::Request {
                type_name: "homelab_nope".into(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .diagnostics;
        assert_eq!(errors(&d), ["Unknown resource type"]);
        if let Some(name) = s.registry.resources.keys().next().cloned() {
            let d = s
                .upgrade_resource_state(Request::new(pb::upgrade_resource_state::Request {
                    type_name: name,
                    version: 0,
                    raw_state: Some(pb::RawState {
                        json: vec![],
                        flatmap: [("id".to_string(), "x".to_string())].into(),
                    }),
                }))
                .await
                .unwrap()
                .into_inner()
                .diagnostics;
            assert_eq!(errors(&d), ["Legacy state format not supported"]);
        }
    }

    #[tokio::test]
    async fn stop_cancels_in_flight_contexts_but_not_later_ones() {
        let s = svc();
        let before = s.context();
        s.stop_provider(Request::new(pb::stop_provider::Request {}))
            .await
            .unwrap();
        assert!(before.is_cancelled());
        assert!(!s.context().is_cancelled());
    }
}
