//! Data source `homelab_opnsense_haproxy_status`: the HAProxy service state, the live state of every backend and
//! server (from os-haproxy's `haproxy/statistics/counters`, i.e. haproxy's own `show stat`), and the versions the
//! provider detected. Live state is kept out of resource attributes on purpose: it changes on its own (a health
//! check fails, a server comes back), and would make every plan noisy if it were part of a managed object.

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
    pub backends: Tf<Vec<BackendStatusModel>>,
    pub servers: Tf<Vec<ServerStatusModel>>,
    pub server_status: Tf<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendStatusModel {
    pub name: Tf<String>,
    pub status: Tf<String>,
    pub up: Tf<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerStatusModel {
    pub backend: Tf<String>,
    pub name: Tf<String>,
    pub status: Tf<String>,
    pub up: Tf<bool>,
    pub check_status: Tf<String>,
    pub check_description: Tf<String>,
    pub weight: Tf<i64>,
    pub last_change_seconds: Tf<i64>,
    pub sessions: Tf<i64>,
}

/// `UP`, and `UP 2/3` (up, but failing checks and on its way down), count as up; everything else (`DOWN`,
/// `DOWN 1/2` coming back, `MAINT`, `NOLB`, `DRAIN`) does not. Servers without checks report `no check` and are
/// used by haproxy, so they count as up too.
fn is_up(status: &str) -> bool {
    status == "UP" || status.starts_with("UP ") || status == "no check"
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
            .attribute(
                Attribute::nested(
                    "backends",
                    ObjectNesting::List,
                    vec![
                        Attribute::string("name").computed().description("Backend name."),
                        Attribute::string("status")
                            .computed()
                            .description("haproxy's status of the backend (`UP` while one server is usable, `DOWN`)."),
                        Attribute::bool("up").computed().description("Whether the backend can serve traffic."),
                    ],
                )
                .computed()
                .description("Every backend haproxy is running, in haproxy's order; empty when haproxy is not running."),
            )
            .attribute(
                Attribute::nested(
                    "servers",
                    ObjectNesting::List,
                    vec![
                        Attribute::string("backend").computed().description("Backend the server belongs to."),
                        Attribute::string("name").computed().description("Server name."),
                        Attribute::string("status").computed().description(
                            "haproxy's status: `UP`, `DOWN`, `MAINT`, `DRAIN`, `no check`, or a transition such as `UP 1/3`.",
                        ),
                        Attribute::bool("up")
                            .computed()
                            .description("Whether haproxy sends traffic to it (`UP`, `UP n/m` or `no check`)."),
                        Attribute::string("check_status").computed().description(
                            "Result of the last health check (`L4OK`, `L4CON`, `L7STS`, …); null without health checks.",
                        ),
                        Attribute::string("check_description")
                            .computed()
                            .description("haproxy's words for the last check result; null when it has none."),
                        Attribute::number("weight").computed().description("Effective weight."),
                        Attribute::number("last_change_seconds")
                            .computed()
                            .description("Seconds since the status last changed."),
                        Attribute::number("sessions").computed().description("Current sessions."),
                    ],
                )
                .computed()
                .description("Every server of every backend, in haproxy's order; empty when haproxy is not running."),
            )
            .attribute(
                Attribute::map("server_status", Type::String)
                    .computed()
                    .description("Status by `\"<backend>/<server>\"`, e.g. `server_status[\"k3s/k3s-1\"]` → `UP`."),
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
        let rows = if st == ServiceStatus::Running {
            c.haproxy()
                .statistics()
                .await
                .map_err(|e| diags(e, "Could not read the HAProxy statistics"))?
        } else {
            Vec::new()
        };
        let num = |v: Option<u64>| match v {
            Some(n) => Tf::Known(n as i64),
            None => Tf::Null,
        };
        let backends = rows
            .iter()
            .filter(|r| r.service == "BACKEND")
            .map(|r| BackendStatusModel {
                name: Tf::Known(r.proxy.clone()),
                status: Tf::Known(r.status.clone()),
                up: Tf::Known(is_up(&r.status)),
            })
            .collect();
        let server_rows: Vec<_> = rows.iter().filter(|r| r.is_server()).collect();
        let servers = server_rows
            .iter()
            .map(|r| ServerStatusModel {
                backend: Tf::Known(r.proxy.clone()),
                name: Tf::Known(r.service.clone()),
                status: Tf::Known(r.status.clone()),
                up: Tf::Known(is_up(&r.status)),
                check_status: r.check_status.clone().into(),
                check_description: r.check_description.clone().into(),
                weight: num(r.weight.map(u64::from)),
                last_change_seconds: num(r.last_change),
                sessions: num(r.sessions),
            })
            .collect();
        let server_status = server_rows
            .iter()
            .map(|r| (format!("{}/{}", r.proxy, r.service), r.status.clone()))
            .collect();
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
            backends: Tf::Known(backends),
            servers: Tf::Known(servers),
            server_status: Tf::Known(server_status),
        })
    }
}

pub fn register(r: &mut Registry) {
    r.data_source(HaproxyStatus);
}

#[cfg(test)]
mod tests {
    use super::is_up;

    #[test]
    fn up_means_haproxy_sends_traffic() {
        for s in ["UP", "UP 1/3", "no check"] {
            assert!(is_up(s), "{s}");
        }
        for s in ["DOWN", "DOWN 1/2", "MAINT", "DRAIN", "NOLB", ""] {
            assert!(!is_up(s), "{s}");
        }
    }
}
