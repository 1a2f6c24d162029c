//! `homelab_opnsense_haproxy_healthcheck`: an os-haproxy health monitor (Services › HAProxy › Rules & Checks ›
//! Health Monitors). Like servers, a health check is rendered only inside the backends that link it.
//!
//! The HTTP and TCP option attributes carry OPNsense's defaults so a plain `type = "tcp"` check plans empty after
//! apply and after import.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::opnsense_common::*;
use super::opnsense_object::*;
use crate::framework::*;
use crate::opnsense::haproxy::{
    Healthcheck, HealthcheckType, HttpMethod, HttpVersion, TcpMatchType,
};
use crate::opnsense::wire::WireEnum;

pub const TYPE: &str = "homelab_opnsense_haproxy_healthcheck";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthcheckModel {
    pub id: Tf<String>,
    pub name: Tf<String>,
    pub description: Tf<String>,
    #[serde(rename = "type")]
    pub check_type: Tf<String>,
    pub interval: Tf<String>,
    pub check_port: Tf<i64>,
    pub http_method: Tf<String>,
    pub http_uri: Tf<String>,
    pub http_version: Tf<String>,
    pub http_host: Tf<String>,
    pub tcp_enabled: Tf<bool>,
    pub tcp_send_value: Tf<String>,
    pub tcp_match_type: Tf<String>,
    pub tcp_match_value: Tf<String>,
    pub tcp_negate: Tf<bool>,
}

fn enum_of<E: WireEnum>(t: &Tf<String>) -> Option<E> {
    t.known().and_then(|s| E::from_wire(s))
}

fn enum_str<E: WireEnum>(e: Option<E>) -> Tf<String> {
    e.map(|x| x.as_wire().to_string()).into()
}

pub struct Spec;

#[async_trait]
impl ObjectSpec for Spec {
    type Family = HaproxyFamily;
    type Obj = Healthcheck;
    type Model = HealthcheckModel;
    const TYPE: &'static str = TYPE;
    const WHAT: &'static str = "HAProxy health check";
    const NOUN: &'static str = "health check";

    fn schema() -> Schema {
        schema()
    }

    fn id(m: &HealthcheckModel) -> &Tf<String> {
        &m.id
    }
    fn set_id(m: &mut HealthcheckModel, id: String) {
        m.id = Tf::Known(id);
    }
    fn name(m: &HealthcheckModel) -> Option<&Tf<String>> {
        Some(&m.name)
    }

    fn to_obj(m: &HealthcheckModel) -> Result<Healthcheck, Diagnostics> {
        Ok(Healthcheck {
            name: m.name.known().cloned().unwrap_or_default(),
            description: opt_str(&m.description),
            check_type: enum_of(&m.check_type).unwrap_or(HealthcheckType::Tcp),
            interval: m.interval.known().cloned().unwrap_or_else(|| "2s".into()),
            checkport: opt_num(&m.check_port),
            http_method: enum_of::<HttpMethod>(&m.http_method),
            http_uri: opt_str(&m.http_uri),
            http_version: enum_of::<HttpVersion>(&m.http_version),
            http_host: opt_str(&m.http_host),
            tcp_enabled: m.tcp_enabled.known().copied().unwrap_or(false),
            tcp_send_value: opt_str(&m.tcp_send_value),
            tcp_match_type: enum_of::<TcpMatchType>(&m.tcp_match_type),
            tcp_match_value: opt_str(&m.tcp_match_value),
            tcp_negate: m.tcp_negate.known().copied().unwrap_or(false),
        })
    }

    fn from_obj(
        uuid: Uuid,
        o: &Healthcheck,
        _prior: Option<&HealthcheckModel>,
    ) -> HealthcheckModel {
        HealthcheckModel {
            id: Tf::Known(uuid.to_string()),
            name: Tf::Known(o.name.clone()),
            description: tf_opt(o.description.clone()),
            check_type: Tf::Known(o.check_type.as_wire().to_string()),
            interval: Tf::Known(o.interval.clone()),
            check_port: tf_num(o.checkport),
            http_method: enum_str(o.http_method),
            http_uri: tf_opt(o.http_uri.clone()),
            http_version: enum_str(o.http_version),
            http_host: tf_opt(o.http_host.clone()),
            tcp_enabled: Tf::Known(o.tcp_enabled),
            tcp_send_value: tf_opt(o.tcp_send_value.clone()),
            tcp_match_type: enum_str(o.tcp_match_type),
            tcp_match_value: tf_opt(o.tcp_match_value.clone()),
            tcp_negate: Tf::Known(o.tcp_negate),
        }
    }
}

pub fn schema() -> Schema {
    Schema::new(
        "A HAProxy health monitor on OPNsense. Link it to a pool with \
         `homelab_opnsense_haproxy_backend.health_check`; servers get `check` lines only through such a link.",
    )
    .attribute(id_attribute("health check"))
    .attribute(
        Attribute::string("name")
            .required()
            .validate(Validator::string("1 to 255 characters without tabs, `,`, `;`, `.`, brackets or braces", |s| {
                if !s.is_empty() && s.len() <= 255 && !s.contains(['\t', ',', ';', '.', '[', ']', '{', '}']) {
                    Ok(())
                } else {
                    Err("Health check names may not contain tabs, `,`, `;`, `.`, `[`, `]`, `{` or `}`.".into())
                }
            }))
            .description("Name of the health check. Unique among health checks."),
    )
    .attribute(
        Attribute::string("description")
            .optional()
            .validate(description_validator())
            .description("Free-text description."),
    )
    .attribute(
        Attribute::string("type")
            .required()
            .validate(Validator::one_of(&[
                "tcp", "http", "agent", "ldap", "mysql", "pgsql", "redis", "smtp", "esmtp", "ssl",
            ]))
            .description("Check type: `tcp` (connect, optionally send/expect), `http`, `agent`, `ldap`, `mysql`, \
                          `pgsql`, `redis`, `smtp`, `esmtp` or `ssl`."),
    )
    .attribute(
        Attribute::string("interval")
            .default_string("2s")
            .validate(time_validator())
            .description("Time between checks, e.g. `10s` (OPNsense's default `2s`)."),
    )
    .attribute(
        Attribute::number("check_port")
            .optional()
            .validate(Validator::int_between(1, 65535))
            .description("Port to check instead of the server's port (wins over the server's `check_port`)."),
    )
    .attribute(
        Attribute::string("http_method")
            .default_string("options")
            .validate(Validator::one_of(&["options", "head", "get", "put", "post", "delete", "trace"]))
            .description("HTTP method for `type = \"http\"`."),
    )
    .attribute(
        Attribute::string("http_uri")
            .default_string("/")
            .description("Request URI for `type = \"http\"`."),
    )
    .attribute(
        Attribute::string("http_version")
            .default_string("http10")
            .validate(Validator::one_of(&["http10", "http11", "http2"]))
            .description("HTTP version for `type = \"http\"`: `http10`, `http11` or `http2`."),
    )
    .attribute(
        Attribute::string("http_host")
            .default_string("localhost")
            .validate(name_validator())
            .description("Host header for `type = \"http\"` with HTTP/1.1."),
    )
    .attribute(
        Attribute::bool("tcp_enabled")
            .default_bool(false)
            .description("For `type = \"tcp\"`: send `tcp_send_value` and expect `tcp_match_value` instead of a \
                          plain connect check."),
    )
    .attribute(Attribute::string("tcp_send_value").optional().description("Data to send for a TCP send/expect check."))
    .attribute(
        Attribute::string("tcp_match_type")
            .default_string("string")
            .validate(Validator::one_of(&["string", "rstring", "binary"]))
            .description("How `tcp_match_value` is matched: `string`, `rstring` (regex) or `binary` (hex)."),
    )
    .attribute(Attribute::string("tcp_match_value").optional().description("Expected response for a TCP send/expect check."))
    .attribute(Attribute::bool("tcp_negate").default_bool(false).description("Invert the TCP match."))
}

pub fn register(r: &mut Registry) {
    register_object::<Spec>(r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec;

    #[test]
    fn defaults_match_opnsense_and_round_trip() {
        let o = Healthcheck::tcp("k3s-controlplane", "10s");
        let m = Spec::from_obj(Uuid::nil(), &o, None);
        assert_eq!(m.check_type, Tf::Known("tcp".into()));
        assert_eq!(m.http_method, Tf::Known("options".into()));
        assert_eq!(m.http_uri, Tf::Known("/".into()));
        assert_eq!(Spec::to_obj(&m).unwrap(), o);
        let v = codec::to_value(&m, &schema().value_type()).unwrap();
        assert_eq!(codec::from_value::<HealthcheckModel>(&v).unwrap(), m);
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }
}
