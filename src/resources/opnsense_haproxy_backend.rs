//! `homelab_opnsense_haproxy_backend`: an os-haproxy backend pool.
//!
//! Persistence is explicit: OPNsense's defaults make every new pool sticky (`stick on src` via
//! `persistence=sticktable`, `stickiness_pattern=sourceipv4`), which a plain TCP pool such as the k3s API must
//! not be. Here `persistence` defaults to `"none"` and the wire form sends an empty pattern for it. Linked servers
//! are a set of server ids: OPNsense's `get` does not expose their order.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::opnsense_common::*;
use super::opnsense_object::*;
use crate::framework::*;
use crate::opnsense::haproxy::{
    Algorithm, Backend, BackendMode, Kind, Persistence, ProxyProtocol, Server, StickinessPattern,
};
use crate::opnsense::wire::WireEnum;
use crate::opnsense::Client;

pub const TYPE: &str = "homelab_opnsense_haproxy_backend";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BackendModel {
    pub id: Tf<String>,
    pub name: Tf<String>,
    pub description: Tf<String>,
    pub enabled: Tf<bool>,
    pub mode: Tf<String>,
    pub algorithm: Tf<String>,
    pub servers: StrSet,
    pub health_check: Tf<String>,
    pub health_check_enabled: Tf<bool>,
    pub health_check_log_status: Tf<bool>,
    pub check_interval: Tf<String>,
    pub check_down_interval: Tf<String>,
    pub health_check_fall: Tf<i64>,
    pub health_check_rise: Tf<i64>,
    pub persistence: Tf<String>,
    pub stickiness_pattern: Tf<String>,
    pub stickiness_expire: Tf<String>,
    pub stickiness_size: Tf<String>,
    pub proxy_protocol: Tf<String>,
    pub timeout_connect: Tf<String>,
    pub timeout_check: Tf<String>,
    pub timeout_server: Tf<String>,
    pub retries: Tf<i64>,
    pub source: Tf<String>,
}

fn enum_of<E: WireEnum>(t: &Tf<String>) -> Option<E> {
    t.known().and_then(|s| E::from_wire(s))
}

pub struct Spec;

#[async_trait]
impl ObjectSpec for Spec {
    type Family = HaproxyFamily;
    type Obj = Backend;
    type Model = BackendModel;
    const TYPE: &'static str = TYPE;
    const WHAT: &'static str = "HAProxy backend";
    const NOUN: &'static str = "backend";

    fn schema() -> Schema {
        schema()
    }

    fn id(m: &BackendModel) -> &Tf<String> {
        &m.id
    }
    fn set_id(m: &mut BackendModel, id: String) {
        m.id = Tf::Known(id);
    }
    fn name(m: &BackendModel) -> Option<&Tf<String>> {
        Some(&m.name)
    }

    fn to_obj(m: &BackendModel) -> Result<Backend, Diagnostics> {
        let mut servers = BTreeSet::new();
        for s in set_known(&m.servers).into_iter().flatten() {
            servers.insert(parse_uuid(&s, "servers")?);
        }
        let health_check = m
            .health_check
            .known()
            .map(|s| parse_uuid(s, "health_check"))
            .transpose()?;
        let (persistence, pattern) =
            match m.persistence.known().map(String::as_str).unwrap_or("none") {
                "cookie" => (Some(Persistence::Cookie), None),
                "sticktable" => (
                    Some(Persistence::Sticktable),
                    Some(enum_of(&m.stickiness_pattern).unwrap_or(StickinessPattern::Sourceipv4)),
                ),
                _ => (None, None),
            };
        Ok(Backend {
            name: m.name.known().cloned().unwrap_or_default(),
            description: opt_str(&m.description),
            enabled: m.enabled.known().copied().unwrap_or(true),
            mode: enum_of(&m.mode).unwrap_or(BackendMode::Tcp),
            algorithm: enum_of(&m.algorithm).unwrap_or(Algorithm::Roundrobin),
            linked_servers: servers,
            health_check_enabled: m.health_check_enabled.known().copied().unwrap_or(true),
            health_check,
            health_check_log_status: m.health_check_log_status.known().copied().unwrap_or(false),
            check_interval: opt_str(&m.check_interval),
            check_down_interval: opt_str(&m.check_down_interval),
            health_check_fall: opt_num(&m.health_check_fall),
            health_check_rise: opt_num(&m.health_check_rise),
            persistence,
            stickiness_pattern: pattern,
            stickiness_expire: m
                .stickiness_expire
                .known()
                .cloned()
                .unwrap_or_else(|| "30m".into()),
            stickiness_size: m
                .stickiness_size
                .known()
                .cloned()
                .unwrap_or_else(|| "50k".into()),
            proxy_protocol: enum_of::<ProxyProtocol>(&m.proxy_protocol),
            tuning_timeout_connect: opt_str(&m.timeout_connect),
            tuning_timeout_check: opt_str(&m.timeout_check),
            tuning_timeout_server: opt_str(&m.timeout_server),
            tuning_retries: opt_num(&m.retries),
            source: opt_str(&m.source),
        })
    }

    fn from_obj(uuid: Uuid, o: &Backend, prior: Option<&BackendModel>) -> BackendModel {
        let (persistence, pattern) = match (o.persistence, o.stickiness_pattern) {
            (Some(Persistence::Cookie), _) => ("cookie", None),
            (_, Some(p)) => ("sticktable", Some(p.as_wire().to_string())),
            _ => ("none", None),
        };
        BackendModel {
            id: Tf::Known(uuid.to_string()),
            name: Tf::Known(o.name.clone()),
            description: tf_opt(o.description.clone()),
            enabled: Tf::Known(o.enabled),
            mode: Tf::Known(o.mode.as_wire().to_string()),
            algorithm: Tf::Known(o.algorithm.as_wire().to_string()),
            servers: set_of(o.linked_servers.iter().map(|u| u.to_string())),
            health_check: tf_opt(o.health_check.map(|u| u.to_string())),
            health_check_enabled: Tf::Known(o.health_check_enabled),
            health_check_log_status: Tf::Known(o.health_check_log_status),
            check_interval: tf_opt(o.check_interval.clone()),
            check_down_interval: tf_opt(o.check_down_interval.clone()),
            health_check_fall: tf_num(o.health_check_fall),
            health_check_rise: tf_num(o.health_check_rise),
            persistence: Tf::Known(persistence.to_string()),
            stickiness_pattern: tf_opt(pattern),
            stickiness_expire: Tf::Known(o.stickiness_expire.clone()),
            stickiness_size: Tf::Known(o.stickiness_size.clone()),
            proxy_protocol: tf_opt(o.proxy_protocol.map(|p| p.as_wire().to_string())),
            timeout_connect: tf_opt(o.tuning_timeout_connect.clone()),
            timeout_check: tf_opt(o.tuning_timeout_check.clone()),
            timeout_server: tf_opt(o.tuning_timeout_server.clone()),
            retries: tf_num(o.tuning_retries),
            source: keep_spelling(prior.map(|p| &p.source), o.source.clone()),
        }
    }

    fn validate(config: &BackendModel, diags: &mut Diagnostics) {
        let persistence = config
            .persistence
            .known()
            .map(String::as_str)
            .unwrap_or("none");
        if config.stickiness_pattern.is_known()
            && persistence != "sticktable"
            && config.persistence.is_known()
        {
            diags.push(
                Diagnostic::error(
                    "stickiness_pattern needs persistence = \"sticktable\"",
                    "A stickiness pattern only applies to stick-table persistence; remove it or set \
                     persistence = \"sticktable\".",
                )
                .at(attr("stickiness_pattern")),
            );
        }
        if config.mode.known().map(String::as_str) == Some("tcp")
            && config.algorithm.known().map(String::as_str) == Some("uri")
        {
            diags.push(
                Diagnostic::error(
                    "algorithm \"uri\" needs mode = \"http\"",
                    "URI hashing works on HTTP requests only.",
                )
                .at(attr("algorithm")),
            );
        }
    }
    fn adjust_plan(plan: &mut Plan<BackendModel>) {
        // The pattern is known at plan time from persistence, so it never shows as "(known after apply)".
        if plan.config.stickiness_pattern.is_null() {
            match plan.planned.persistence.known().map(String::as_str) {
                Some("sticktable") => {
                    plan.planned.stickiness_pattern = Tf::Known("sourceipv4".into())
                }
                Some(_) => plan.planned.stickiness_pattern = Tf::Null,
                None => {}
            }
        }
    }

    /// `servers` unset: the members on the firewall stay as they are (they belong to
    /// `homelab_opnsense_haproxy_backend_member`s), so the write sends the pool the model holds now — not the list
    /// refreshed into state, which a member added since would be missing from.
    async fn prepare(c: &Client, plan: &mut BackendModel) -> Result<(), Diagnostics> {
        if plan.servers.is_known() {
            return Ok(());
        }
        let current = match plan.id.known().and_then(|id| Uuid::parse_str(id).ok()) {
            Some(uuid) => c
                .haproxy()
                .model()
                .await
                .map_err(|e| diags(e, "Could not read the HAProxy backends"))?
                .get::<Backend>(uuid)
                .map_err(|e| diags(e, "Could not read the HAProxy backend"))?
                .map(|b| b.linked_servers)
                .unwrap_or_default(),
            None => BTreeSet::new(),
        };
        plan.servers = set_of(current.iter().map(Uuid::to_string));
        Ok(())
    }

    async fn check(c: &Client, o: &Backend) -> Result<(), Diagnostics> {
        let model = c
            .haproxy()
            .model()
            .await
            .map_err(|e| diags(e, "Could not read the HAProxy backends"))?;
        let mut d = Diagnostics::new();
        for s in &o.linked_servers {
            if !model.contains(Kind::Server, *s) {
                d.push(
                    Diagnostic::error(
                        "Unknown HAProxy server",
                        format!("No HAProxy server has the id {s}; reference a `homelab_opnsense_haproxy_server`'s id."),
                    )
                    .at(attr("servers")),
                );
            }
        }
        if let Some(h) = o.health_check {
            if !model.contains(Kind::Healthcheck, h) {
                d.push(
                    Diagnostic::error(
                        "Unknown HAProxy health check",
                        format!("No HAProxy health check has the id {h}."),
                    )
                    .at(attr("health_check")),
                );
            }
        }
        // Servers must have distinct names within a backend (haproxy refuses the config otherwise).
        let mut seen = BTreeSet::new();
        for s in &o.linked_servers {
            if let Ok(Some(srv)) = model.get::<Server>(*s) {
                if !seen.insert(srv.name.clone()) {
                    d.push(
                        Diagnostic::error(
                            "Two servers with the same name",
                            format!("More than one linked server is named {:?}; haproxy would refuse the pool.", srv.name),
                        )
                        .at(attr("servers")),
                    );
                }
            }
        }
        d.into_result()
    }
}

pub fn schema() -> Schema {
    Schema::new(
        "A HAProxy backend pool on OPNsense: the servers traffic is balanced over, how, and how they are health \
         checked. Unlike the OPNsense UI default, a pool is not sticky unless `persistence` says so.",
    )
    .attribute(id_attribute("backend"))
    .attribute(
        Attribute::string("name")
            .required()
            .validate(name_validator())
            .description("Backend name in haproxy.conf (`backend <name>`). Unique among backends."),
    )
    .attribute(
        Attribute::string("description")
            .optional()
            .validate(description_validator())
            .description("Free-text description."),
    )
    .attribute(Attribute::bool("enabled").default_bool(true).description("Whether the backend is rendered."))
    .attribute(
        Attribute::string("mode")
            .required()
            .validate(Validator::one_of(&["tcp", "http"]))
            .description(
                "`tcp` (layer 4, e.g. the k3s API) or `http` (layer 7). Must match the frontends using this pool \
                 (`http` frontends need `http` pools; `tcp` and `ssl` frontends need `tcp` pools).",
            ),
    )
    .attribute(
        Attribute::string("algorithm")
            .default_string("roundrobin")
            .validate(Validator::one_of(&["source", "roundrobin", "static-rr", "leastconn", "uri", "random"]))
            .description("Balancing algorithm (`balance`): `roundrobin` (default here), `static-rr`, `leastconn`, \
                          `source` (OPNsense's UI default), `uri` (http only) or `random`."),
    )
    .attribute(
        Attribute::set("servers", Type::String)
            .optional_computed()
            .validate(uuid_set_validator())
            .description(
                "Ids of the `homelab_opnsense_haproxy_server`s in the pool: the whole pool, written at once. Leave it \
                 unset to add servers one by one with `homelab_opnsense_haproxy_backend_member` instead (then this \
                 shows the members the firewall has, and the backend's own changes keep them); don't use both for \
                 one backend.",
            ),
    )
    .attribute(
        Attribute::string("health_check")
            .optional()
            .validate(uuid_validator())
            .description(
                "Id of the `homelab_opnsense_haproxy_healthcheck` used for the pool's servers. Without it the \
                 servers get no `check` and are never marked down.",
            ),
    )
    .attribute(
        Attribute::bool("health_check_enabled")
            .default_bool(true)
            .description("Whether `health_check` is used."),
    )
    .attribute(
        Attribute::bool("health_check_log_status")
            .default_bool(false)
            .description("Log health check status changes (`option log-health-checks`)."),
    )
    .attribute(
        Attribute::string("check_interval")
            .optional()
            .validate(time_validator())
            .description("Check interval for every server of the pool (`inter`), e.g. `10s`; wins over the \
                          server's and the health check's interval."),
    )
    .attribute(
        Attribute::string("check_down_interval")
            .optional()
            .validate(time_validator())
            .description("Check interval while a server is down (`downinter`)."),
    )
    .attribute(
        Attribute::number("health_check_fall")
            .optional()
            .validate(Validator::int_between(1, 100))
            .description("Failed checks before a server is marked down (`fall`)."),
    )
    .attribute(
        Attribute::number("health_check_rise")
            .optional()
            .validate(Validator::int_between(1, 100))
            .description("Passed checks before a server is marked up (`rise`)."),
    )
    .attribute(
        Attribute::string("persistence")
            .default_string("none")
            .validate(Validator::one_of(&["none", "sticktable", "cookie"]))
            .description(
                "Session persistence: `none` (default: a plain pool), `sticktable` (stick clients to a server by \
                 `stickiness_pattern`, OPNsense's UI default) or `cookie` (HTTP cookie).",
            ),
    )
    .attribute(
        Attribute::string("stickiness_pattern")
            .optional_computed()
            .validate(Validator::one_of(&[
                "binary", "cookievalue", "integer", "rdpcookie", "sourceipv4", "sourceipv6", "string",
            ]))
            .description("What a stick table keys on when `persistence = \"sticktable\"` (default `sourceipv4`). \
                          Null otherwise."),
    )
    .attribute(
        Attribute::string("stickiness_expire")
            .default_string("30m")
            .description("How long a stick-table entry lives."),
    )
    .attribute(
        Attribute::string("stickiness_size")
            .default_string("50k")
            .description("Stick-table size, e.g. `50k`."),
    )
    .attribute(
        Attribute::string("proxy_protocol")
            .optional()
            .validate(Validator::one_of(&["v1", "v2"]))
            .description("Send the PROXY protocol (`v1` or `v2`) to the servers."),
    )
    .attribute(Attribute::string("timeout_connect").optional().validate(time_validator()).description("`timeout connect`."))
    .attribute(Attribute::string("timeout_check").optional().validate(time_validator()).description("`timeout check`."))
    .attribute(Attribute::string("timeout_server").optional().validate(time_validator()).description("`timeout server`."))
    .attribute(
        Attribute::number("retries")
            .optional()
            .validate(Validator::int_between(0, 100))
            .description("Connection retries (`retries`)."),
    )
    .attribute(Attribute::string("source").optional().description("Source address for connections to the servers."))
}

pub fn register(r: &mut Registry) {
    register_object::<Spec>(r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec;

    fn seed() -> BackendModel {
        BackendModel {
            id: Tf::Known(Uuid::nil().to_string()),
            name: Tf::Known("k3s-controlplane".into()),
            enabled: Tf::Known(true),
            mode: Tf::Known("tcp".into()),
            algorithm: Tf::Known("roundrobin".into()),
            servers: set_of([Uuid::new_v4().to_string(), Uuid::new_v4().to_string()]),
            health_check: Tf::Known(Uuid::new_v4().to_string()),
            health_check_enabled: Tf::Known(true),
            health_check_log_status: Tf::Known(true),
            check_interval: Tf::Known("10s".into()),
            persistence: Tf::Known("none".into()),
            stickiness_pattern: Tf::Null,
            stickiness_expire: Tf::Known("30m".into()),
            stickiness_size: Tf::Known("50k".into()),
            ..Default::default()
        }
    }

    #[test]
    fn plain_pool_is_not_sticky_and_round_trips() {
        let m = seed();
        let o = Spec::to_obj(&m).unwrap();
        assert_eq!(o.persistence, None);
        assert_eq!(o.stickiness_pattern, None);
        assert_eq!(Spec::from_obj(Uuid::nil(), &o, Some(&m)), m);
        let v = codec::to_value(&m, &schema().value_type()).unwrap();
        assert_eq!(codec::from_value::<BackendModel>(&v).unwrap(), m);
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }

    #[test]
    fn opnsense_default_backend_reads_as_sticky() {
        let mut o = Backend::new("x", BackendMode::Http, Algorithm::Source);
        o.persistence = Some(Persistence::Sticktable);
        o.stickiness_pattern = Some(StickinessPattern::Sourceipv4);
        let m = Spec::from_obj(Uuid::nil(), &o, None);
        assert_eq!(m.persistence, Tf::Known("sticktable".into()));
        assert_eq!(m.stickiness_pattern, Tf::Known("sourceipv4".into()));
        assert_eq!(Spec::to_obj(&m).unwrap(), o);
    }

    #[test]
    fn bad_references_are_attribute_errors() {
        let mut m = seed();
        m.servers = set_of(["nope".to_string()]);
        let e = Spec::to_obj(&m).unwrap_err();
        assert_eq!(e.iter().next().unwrap().path, Some(attr("servers")));
    }
}
