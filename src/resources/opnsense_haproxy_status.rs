//! Data source `homelab_opnsense_haproxy_status`: the HAProxy service state and the versions the provider
//! detected. Live state is kept out of resource attributes on purpose: it changes on its own, and would make every
//! plan noisy if it were part of a managed object.

use serde::{Deserialize, Serialize};

use super::opnsense_common::*;
use crate::framework::*;
use crate::opnsense::haproxy::ServiceStatus;

pub const TYPE: &str = "homelab_opnsense_haproxy_status";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusModel {
    pub status: Tf<String>,
    pub running: Tf<bool>,
    pub opnsense_version: Tf<String>,
    pub haproxy_plugin_version: Tf<String>,
}

pub struct HaproxyStatus;

#[async_trait]
impl DataSource for HaproxyStatus {
    type Model = StatusModel;

    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn schema(&self) -> Schema {
        Schema::new("The live state of the HAProxy service on the OPNsense.")
            .attribute(Attribute::string("status").computed().description(
                "`running`, `stopped`, `disabled` or what OPNsense reports otherwise.",
            ))
            .attribute(
                Attribute::bool("running")
                    .computed()
                    .description("Whether HAProxy is running."),
            )
            .attribute(
                Attribute::string("opnsense_version")
                    .computed()
                    .description(
                        "OPNsense version (null when the API key may not read `core/firmware`).",
                    ),
            )
            .attribute(
                Attribute::string("haproxy_plugin_version")
                    .computed()
                    .description("os-haproxy plugin version (null when unknown)."),
            )
    }

    async fn read(&self, ctx: &Context, _config: StatusModel) -> Result<StatusModel, Diagnostics> {
        let c = client(ctx)?;
        let st = c
            .haproxy()
            .status()
            .await
            .map_err(|e| diags(e, "Could not read the HAProxy service status"))?;
        let v = c
            .versions()
            .await
            .map_err(|e| diags(e, "Could not read the OPNsense version"))?;
        let status = match &st {
            ServiceStatus::Running => "running".to_string(),
            ServiceStatus::Stopped => "stopped".to_string(),
            ServiceStatus::Disabled => "disabled".to_string(),
            ServiceStatus::Other(s) => s.clone(),
        };
        Ok(StatusModel {
            running: Tf::Known(st == ServiceStatus::Running),
            status: Tf::Known(status),
            opnsense_version: v.opnsense.into(),
            haproxy_plugin_version: v.os_haproxy.into(),
        })
    }
}

pub fn register(r: &mut Registry) {
    r.data_source(HaproxyStatus);
}
