//! `homelab_opnsense_haproxy_server`: an os-haproxy real server (Services › HAProxy › Real Servers).
//!
//! A server is rendered into haproxy.conf only inside the backends that link it, so creating one that no backend
//! uses needs no reconfigure; changing one that is linked goes live with the next coalesced configtest →
//! reconfigure. Everything OPNsense can change in place is updated in place (names included).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::opnsense_common::*;
use super::opnsense_object::*;
use crate::framework::*;
use crate::opnsense::haproxy::{Server, ServerMode};
use crate::opnsense::wire::WireEnum;

pub const TYPE: &str = "homelab_opnsense_haproxy_server";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerModel {
    pub id: Tf<String>,
    pub name: Tf<String>,
    pub description: Tf<String>,
    pub enabled: Tf<bool>,
    pub address: Tf<String>,
    pub port: Tf<i64>,
    pub mode: Tf<String>,
    pub weight: Tf<i64>,
    pub max_connections: Tf<i64>,
    pub check_interval: Tf<String>,
    pub check_down_interval: Tf<String>,
    pub check_port: Tf<i64>,
    pub ssl: Tf<bool>,
    pub ssl_verify: Tf<bool>,
    pub source: Tf<String>,
    pub advanced: Tf<String>,
}

pub struct Spec;

#[async_trait]
impl ObjectSpec for Spec {
    type Family = HaproxyFamily;
    type Obj = Server;
    type Model = ServerModel;
    const TYPE: &'static str = TYPE;
    const WHAT: &'static str = "HAProxy server";
    const NOUN: &'static str = "server";

    fn schema() -> Schema {
        schema()
    }

    fn id(m: &ServerModel) -> &Tf<String> {
        &m.id
    }
    fn set_id(m: &mut ServerModel, id: String) {
        m.id = Tf::Known(id);
    }
    fn name(m: &ServerModel) -> Option<&Tf<String>> {
        Some(&m.name)
    }

    fn to_obj(m: &ServerModel) -> Result<Server, Diagnostics> {
        Ok(Server {
            name: m.name.known().cloned().unwrap_or_default(),
            description: opt_str(&m.description),
            enabled: m.enabled.known().copied().unwrap_or(true),
            address: opt_str(&m.address),
            port: opt_num(&m.port),
            checkport: opt_num(&m.check_port),
            mode: m
                .mode
                .known()
                .and_then(|s| ServerMode::from_wire(s))
                .unwrap_or(ServerMode::Active),
            weight: opt_num(&m.weight),
            max_connections: opt_num(&m.max_connections),
            check_interval: opt_str(&m.check_interval),
            check_down_interval: opt_str(&m.check_down_interval),
            ssl: m.ssl.known().copied().unwrap_or(false),
            ssl_verify: m.ssl_verify.known().copied().unwrap_or(true),
            source: opt_str(&m.source),
            advanced: opt_str(&m.advanced),
        })
    }

    fn from_obj(uuid: Uuid, o: &Server, prior: Option<&ServerModel>) -> ServerModel {
        ServerModel {
            id: Tf::Known(uuid.to_string()),
            name: Tf::Known(o.name.clone()),
            description: tf_opt(o.description.clone()),
            enabled: Tf::Known(o.enabled),
            address: keep_spelling(prior.map(|p| &p.address), o.address.clone()),
            port: tf_num(o.port),
            mode: Tf::Known(o.mode.as_wire().to_string()),
            weight: tf_num(o.weight),
            max_connections: tf_num(o.max_connections),
            check_interval: tf_opt(o.check_interval.clone()),
            check_down_interval: tf_opt(o.check_down_interval.clone()),
            check_port: tf_num(o.checkport),
            ssl: Tf::Known(o.ssl),
            ssl_verify: Tf::Known(o.ssl_verify),
            source: keep_spelling(prior.map(|p| &p.source), o.source.clone()),
            advanced: tf_opt(o.advanced.clone()),
        }
    }
}

pub fn schema() -> Schema {
    Schema::new(
        "A HAProxy real server on OPNsense (os-haproxy: Services › HAProxy › Settings › Real Servers). Link it to \
         a pool with `homelab_opnsense_haproxy_backend.servers`. Names must be unique: the provider refuses a \
         duplicate (OPNsense would accept it and haproxy would then reject the whole configuration).",
    )
    .attribute(id_attribute("server"))
    .attribute(
        Attribute::string("name")
            .required()
            .validate(name_validator())
            .description("Server name as it appears in haproxy.conf (`server <name> ...`). Unique among servers."),
    )
    .attribute(
        Attribute::string("description")
            .optional()
            .validate(description_validator())
            .description("Free-text description shown in the OPNsense UI."),
    )
    .attribute(
        Attribute::bool("enabled")
            .default_bool(true)
            .description("Whether the server is used. A disabled server is left out of every backend."),
    )
    .attribute(
        Attribute::string("address")
            .required()
            .validate(host_validator())
            .description("IP address or DNS name of the server (e.g. `10.0.3.2`)."),
    )
    .attribute(
        Attribute::number("port")
            .optional()
            .validate(Validator::int_between(1, 65535))
            .description("Port on the server (e.g. `6443`). Unset: the port the client connected to."),
    )
    .attribute(
        Attribute::string("mode")
            .default_string("active")
            .validate(Validator::one_of(&["active", "backup", "disabled"]))
            .description(
                "`active` (takes traffic), `backup` (only when all active servers are down) or `disabled` \
                 (kept in the config, marked down).",
            ),
    )
    .attribute(
        Attribute::number("weight")
            .optional()
            .validate(Validator::int_between(0, 256))
            .description("Load-balancing weight 0..256 (haproxy's default 1 when unset)."),
    )
    .attribute(
        Attribute::number("max_connections")
            .optional()
            .validate(Validator::int_between(0, 10_000_000))
            .description("Maximum concurrent connections to this server (`maxconn`)."),
    )
    .attribute(
        Attribute::string("check_interval")
            .optional()
            .validate(time_validator())
            .description(
                "Health check interval for this server (`inter`), e.g. `10s`. The backend's `check_interval` wins \
                 over it; both need a health check linked in the backend.",
            ),
    )
    .attribute(
        Attribute::string("check_down_interval")
            .optional()
            .validate(time_validator())
            .description("Check interval while the server is down (`downinter`)."),
    )
    .attribute(
        Attribute::number("check_port")
            .optional()
            .validate(Validator::int_between(1, 65535))
            .description("Port to run health checks against, if not `port`."),
    )
    .attribute(
        Attribute::bool("ssl")
            .default_bool(false)
            .description("Connect to the server with TLS."),
    )
    .attribute(
        Attribute::bool("ssl_verify")
            .default_bool(true)
            .description("Verify the server's certificate when `ssl` is on."),
    )
    .attribute(
        Attribute::string("source")
            .optional()
            .description("Source address for connections to this server (`source`)."),
    )
    .attribute(
        Attribute::string("advanced")
            .optional()
            .description("Extra options appended verbatim to the `server` line."),
    )
}

pub fn register(r: &mut Registry) {
    register_object::<Spec>(r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec;

    #[test]
    fn model_round_trips_through_api_object_and_codec() {
        let m = ServerModel {
            id: Tf::Known(Uuid::nil().to_string()),
            name: Tf::Known("k8s-control-1".into()),
            description: Tf::Null,
            enabled: Tf::Known(true),
            address: Tf::Known("10.0.3.2".into()),
            port: Tf::Known(6443),
            mode: Tf::Known("active".into()),
            weight: Tf::Null,
            max_connections: Tf::Null,
            check_interval: Tf::Known("10s".into()),
            check_down_interval: Tf::Null,
            check_port: Tf::Null,
            ssl: Tf::Known(false),
            ssl_verify: Tf::Known(true),
            source: Tf::Null,
            advanced: Tf::Null,
        };
        let o = Spec::to_obj(&m).unwrap();
        assert_eq!(Spec::from_obj(Uuid::nil(), &o, Some(&m)), m);
        assert_eq!(Spec::from_obj(Uuid::nil(), &o, None), m);
        let ty = schema().value_type();
        let v = codec::to_value(&m, &ty).unwrap();
        let back: ServerModel = codec::from_value(&v).unwrap();
        assert_eq!(back, m);
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }
}
