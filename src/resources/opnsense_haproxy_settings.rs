//! `homelab_opnsense_haproxy_settings`: the singleton HAProxy service settings (enable, reload behaviour, the
//! Prometheus exporter listener). One per OPNsense.
//!
//! Destroying it puts the fields it manages back to OPNsense's defaults (HAProxy disabled, hard reloads, exporter
//! off) and applies that, the state a fresh os-haproxy has. `graceful_stop` defaults to `true` here because
//! OPNsense's default hard reload (`haproxy -st`) cuts every open connection (kubectl watches) on each reconfigure.

use serde::{Deserialize, Serialize};

use super::opnsense_common::*;
use crate::framework::*;
use crate::opnsense::haproxy::Settings;

pub const TYPE: &str = "homelab_opnsense_haproxy_settings";
const ID: &str = "haproxy";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SettingsModel {
    pub id: Tf<String>,
    pub enabled: Tf<bool>,
    pub graceful_stop: Tf<bool>,
    pub seamless_reload: Tf<bool>,
    pub hard_stop_after: Tf<String>,
    pub prometheus_enabled: Tf<bool>,
    pub prometheus_bind: StrSet,
    pub prometheus_path: Tf<String>,
}

fn to_settings(m: &SettingsModel) -> Settings {
    let d = Settings::default();
    Settings {
        enabled: m.enabled.known().copied().unwrap_or(true),
        graceful_stop: m.graceful_stop.known().copied().unwrap_or(true),
        seamless_reload: m.seamless_reload.known().copied().unwrap_or(false),
        hard_stop_after: opt_str(&m.hard_stop_after),
        prometheus_enabled: m.prometheus_enabled.known().copied().unwrap_or(false),
        prometheus_bind: set_known(&m.prometheus_bind).unwrap_or(d.prometheus_bind),
        prometheus_path: m
            .prometheus_path
            .known()
            .cloned()
            .unwrap_or(d.prometheus_path),
    }
}

fn from_settings(s: &Settings, prior: Option<&SettingsModel>) -> SettingsModel {
    SettingsModel {
        id: Tf::Known(ID.into()),
        enabled: Tf::Known(s.enabled),
        graceful_stop: Tf::Known(s.graceful_stop),
        seamless_reload: Tf::Known(s.seamless_reload),
        hard_stop_after: tf_opt(s.hard_stop_after.clone()),
        prometheus_enabled: Tf::Known(s.prometheus_enabled),
        prometheus_bind: keep_set_spelling(
            prior.map(|p| &p.prometheus_bind),
            s.prometheus_bind.clone(),
        ),
        prometheus_path: Tf::Known(s.prometheus_path.clone()),
    }
}

pub fn schema() -> Schema {
    Schema::new(
        "The HAProxy service settings on OPNsense (a singleton: declare it once). Enables HAProxy, chooses how \
         reloads treat open connections, and configures the Prometheus exporter listener. Destroying it restores \
         OPNsense's defaults for these settings (which disables HAProxy).",
    )
    .attribute(
        Attribute::string("id")
            .computed()
            .use_state_for_unknown()
            .description("Always `haproxy` (there is one set of settings)."),
    )
    .attribute(
        Attribute::bool("enabled")
            .default_bool(true)
            .description("Run HAProxy. When false, every reconfigure stops the service."),
    )
    .attribute(
        Attribute::bool("graceful_stop")
            .default_bool(true)
            .description(
                "Reload with `-sf` so the old process finishes its connections. OPNsense's default (`false`) does a \
                 hard reload that drops every open connection on each change.",
            ),
    )
    .attribute(
        Attribute::bool("seamless_reload")
            .default_bool(false)
            .description("Use HAProxy's seamless reload (socket transfer)."),
    )
    .attribute(
        Attribute::string("hard_stop_after")
            .default_string("60s")
            .validate(time_validator())
            .description("How long an old process may keep serving after a graceful reload."),
    )
    .attribute(
        Attribute::bool("prometheus_enabled")
            .default_bool(false)
            .description("Run a dedicated `prometheus_exporter` frontend serving HAProxy's metrics."),
    )
    .attribute(
        Attribute::set("prometheus_bind", Type::String)
            .default_value(Value::set(vec![Value::string("*:8404")]))
            .validate(listen_set_validator())
            .description("Listen addresses of the exporter, e.g. `[\"*:8404\"]`."),
    )
    .attribute(
        Attribute::string("prometheus_path")
            .default_string("/metrics")
            .description("Path the exporter answers on."),
    )
}

pub struct HaproxySettings;

async fn write(ctx: &Context, plan: SettingsModel) -> Result<SettingsModel, Diagnostics> {
    let c = client(ctx)?;
    // First, whatever follows: the coalescer stops waiting for the write announced at plan.
    c.haproxy_write_arrived();
    let s = to_settings(&plan);
    c.haproxy_put_settings(&s)
        .await
        .map_err(|e| diags(e, "Could not apply the HAProxy settings"))?;
    Ok(from_settings(&s, Some(&plan)))
}

#[async_trait]
impl Resource for HaproxySettings {
    type Model = SettingsModel;
    type Identity = UuidIdentity;

    fn type_name(&self) -> &'static str {
        TYPE
    }
    fn schema(&self) -> Schema {
        schema()
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema::new().attribute(IdentityAttribute::string("id", "Always `haproxy`.")))
    }
    fn identity(&self, state: &SettingsModel) -> Option<UuidIdentity> {
        state.id.known().map(|id| UuidIdentity { id: id.clone() })
    }
    /// Announces a planned change to the reconfigure coalescer, as the HAProxy objects do: in the apply walk
    /// Terraform re-plans a resource right before applying it, so the batch being collected waits for the settings
    /// too, and a backend or frontend created in the same apply goes live in the same reconfigure as
    /// `enabled = true` (one reload fewer, and no "HAProxy is disabled" warning for it).
    async fn modify_plan(
        &self,
        ctx: &Context,
        plan: &mut Plan<SettingsModel>,
    ) -> Result<(), Diagnostics> {
        if plan.prior.as_ref() != Some(&plan.planned) {
            if let Some(c) = client_if_ready(ctx) {
                c.expect_haproxy_write();
            }
        }
        Ok(())
    }
    async fn create(
        &self,
        ctx: &Context,
        plan: SettingsModel,
    ) -> Result<SettingsModel, Diagnostics> {
        write(ctx, plan).await
    }
    async fn read(
        &self,
        ctx: &Context,
        state: SettingsModel,
    ) -> Result<Option<SettingsModel>, Diagnostics> {
        let c = client(ctx)?;
        let s = c
            .haproxy()
            .settings()
            .await
            .map_err(|e| diags(e, "Could not read the HAProxy settings"))?;
        Ok(Some(from_settings(&s, Some(&state))))
    }
    async fn update(
        &self,
        ctx: &Context,
        _prior: SettingsModel,
        plan: SettingsModel,
    ) -> Result<SettingsModel, Diagnostics> {
        write(ctx, plan).await
    }
    async fn delete(&self, ctx: &Context, _state: SettingsModel) -> Result<(), Diagnostics> {
        let c = client(ctx)?;
        c.haproxy_put_settings(&Settings::default())
            .await
            .map_err(|e| diags(e, "Could not restore the default HAProxy settings"))
    }
    async fn import(&self, _ctx: &Context, _id: &str) -> Result<SettingsModel, Diagnostics> {
        Ok(SettingsModel {
            id: Tf::Known(ID.into()),
            ..Default::default()
        })
    }
    async fn import_identity(
        &self,
        ctx: &Context,
        identity: UuidIdentity,
    ) -> Result<SettingsModel, Diagnostics> {
        self.import(ctx, &identity.id).await
    }
}

pub fn register(r: &mut Registry) {
    r.resource(HaproxySettings);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec;

    #[test]
    fn round_trip_and_defaults() {
        let s = Settings {
            enabled: true,
            graceful_stop: true,
            prometheus_enabled: true,
            ..Settings::default()
        };
        let m = from_settings(&s, None);
        assert_eq!(to_settings(&m), s);
        let v = codec::to_value(&m, &schema().value_type()).unwrap();
        assert_eq!(codec::from_value::<SettingsModel>(&v).unwrap(), m);
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }
}
