//! os-haproxy: typed servers, health checks, backends, frontends and general settings, and the service calls.
//!
//! Reads go through one `GET haproxy/settings/get` (the whole model, every object keyed by UUID), cached and
//! patched by this client's own confirmed writes ([`ModelCache`]), so refreshing N resources costs one call (finding
//! 10 in `opnsense-api.md`) and so does applying them. Objects are decoded lazily per item so one object with a
//! value this client does not know breaks only that object.
//!
//! Writes use `set<Kind>/<uuid>` with a client-chosen lowercase v4 UUID: it is an upsert on OPNsense ≥ 23.1
//! (finding 8), so a create retried after a lost reply updates the object it already made instead of duplicating.
//! `set` is partial, so every managed field is always sent; fields this client does not manage are left alone.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::error::{DecodeError, Error, Result};
use super::transport::{Idempotency, Transport};
use super::wire::{self, *};

/// The four HAProxy object kinds this client manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Server,
    Healthcheck,
    Backend,
    Frontend,
}

impl Kind {
    /// Wrapper key and singular name (`server`).
    pub fn wrapper(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::Healthcheck => "healthcheck",
            Kind::Backend => "backend",
            Kind::Frontend => "frontend",
        }
    }
    /// Action suffix (`Server` in `setServer`).
    pub fn action(self) -> &'static str {
        match self {
            Kind::Server => "Server",
            Kind::Healthcheck => "Healthcheck",
            Kind::Backend => "Backend",
            Kind::Frontend => "Frontend",
        }
    }
    /// Container in the whole model (`servers`).
    pub fn container(self) -> &'static str {
        match self {
            Kind::Server => "servers",
            Kind::Healthcheck => "healthchecks",
            Kind::Backend => "backends",
            Kind::Frontend => "frontends",
        }
    }
    /// Human name used in diagnostics.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Server => "HAProxy server",
            Kind::Healthcheck => "HAProxy health check",
            Kind::Backend => "HAProxy backend",
            Kind::Frontend => "HAProxy frontend",
        }
    }
}

/// A typed HAProxy object.
pub trait HaproxyObject: Sized + Clone + Send + Sync + 'static {
    const KIND: Kind;
    /// `(wire field, Terraform attribute)` for every managed field: used to encode validation errors.
    const FIELDS: &'static [(&'static str, &'static str)];
    fn from_wire(o: &Obj) -> std::result::Result<Self, DecodeError>;
    fn to_wire(&self) -> Obj;
    fn name(&self) -> &str;
    /// The Terraform attribute for a wire field name.
    fn attribute_of(field: &str) -> Option<&'static str> {
        Self::FIELDS
            .iter()
            .find(|(w, _)| *w == field)
            .map(|(_, a)| *a)
    }
}

macro_rules! obj {
    ($($k:literal => $v:expr),* $(,)?) => {{
        let mut m = Obj::new();
        $(m.insert($k.to_string(), $v);)*
        m
    }};
}

wire_enum! {
    /// Server mode.
    pub enum ServerMode { Active => "active", Backup => "backup", Disabled => "disabled" }
}
wire_enum! {
    /// Health check type.
    pub enum HealthcheckType {
        Tcp => "tcp", Http => "http", Agent => "agent", Ldap => "ldap", Mysql => "mysql", Pgsql => "pgsql",
        Redis => "redis", Smtp => "smtp", Esmtp => "esmtp", Ssl => "ssl",
    }
}
wire_enum! {
    pub enum HttpMethod {
        Options => "options", Head => "head", Get => "get", Put => "put", Post => "post", Delete => "delete",
        Trace => "trace",
    }
}
wire_enum! {
    pub enum HttpVersion { Http10 => "http10", Http11 => "http11", Http2 => "http2" }
}
wire_enum! {
    pub enum TcpMatchType { String => "string", Rstring => "rstring", Binary => "binary" }
}
wire_enum! {
    /// Backend mode.
    pub enum BackendMode { Http => "http", Tcp => "tcp" }
}
wire_enum! {
    pub enum Algorithm {
        Source => "source", Roundrobin => "roundrobin", StaticRr => "static-rr", Leastconn => "leastconn",
        Uri => "uri", Random => "random",
    }
}
wire_enum! {
    pub enum Persistence { Sticktable => "sticktable", Cookie => "cookie" }
}
wire_enum! {
    pub enum StickinessPattern {
        Binary => "binary", Cookievalue => "cookievalue", Integer => "integer", Rdpcookie => "rdpcookie",
        Sourceipv4 => "sourceipv4", Sourceipv6 => "sourceipv6", String => "string",
    }
}
wire_enum! {
    pub enum ProxyProtocol { V1 => "v1", V2 => "v2" }
}
wire_enum! {
    /// Frontend mode.
    pub enum FrontendMode { Http => "http", Ssl => "ssl", Tcp => "tcp" }
}
wire_enum! {
    pub enum ConnectionBehaviour {
        HttpKeepAlive => "http-keep-alive", Httpclose => "httpclose", HttpServerClose => "http-server-close",
    }
}

/// A real server (`servers.server`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub address: Option<String>,
    pub port: Option<u16>,
    pub checkport: Option<u16>,
    pub mode: ServerMode,
    pub weight: Option<u16>,
    pub max_connections: Option<u32>,
    pub check_interval: Option<String>,
    pub check_down_interval: Option<String>,
    pub ssl: bool,
    pub ssl_verify: bool,
    pub source: Option<String>,
    pub advanced: Option<String>,
}

impl Server {
    /// A server with OPNsense's defaults for everything but name, address and port.
    pub fn new(name: &str, address: &str, port: u16) -> Self {
        Server {
            name: name.into(),
            description: None,
            enabled: true,
            address: Some(address.into()),
            port: Some(port),
            checkport: None,
            mode: ServerMode::Active,
            weight: None,
            max_connections: None,
            check_interval: None,
            check_down_interval: None,
            ssl: false,
            ssl_verify: true,
            source: None,
            advanced: None,
        }
    }
}

impl HaproxyObject for Server {
    const KIND: Kind = Kind::Server;
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("name", "name"),
        ("description", "description"),
        ("enabled", "enabled"),
        ("address", "address"),
        ("port", "port"),
        ("checkport", "check_port"),
        ("mode", "mode"),
        ("weight", "weight"),
        ("maxConnections", "max_connections"),
        ("checkInterval", "check_interval"),
        ("checkDownInterval", "check_down_interval"),
        ("ssl", "ssl"),
        ("sslVerify", "ssl_verify"),
        ("source", "source"),
        ("advanced", "advanced"),
    ];
    fn from_wire(o: &Obj) -> std::result::Result<Self, DecodeError> {
        Ok(Server {
            name: text(o, "name"),
            description: opt_text(o, "description"),
            enabled: boolean(o, "enabled")?,
            address: opt_text(o, "address"),
            port: opt_int(o, "port")?,
            checkport: opt_int(o, "checkport")?,
            mode: enum_or(o, "mode", ServerMode::Active)?,
            weight: opt_int(o, "weight")?,
            max_connections: opt_int(o, "maxConnections")?,
            check_interval: opt_text(o, "checkInterval"),
            check_down_interval: opt_text(o, "checkDownInterval"),
            ssl: boolean(o, "ssl")?,
            ssl_verify: boolean(o, "sslVerify")?,
            source: opt_text(o, "source"),
            advanced: opt_text(o, "advanced"),
        })
    }
    fn to_wire(&self) -> Obj {
        obj! {
            "name" => enc_text(&self.name),
            "description" => enc_opt_text(&self.description),
            "enabled" => enc_bool(self.enabled),
            "address" => enc_opt_text(&self.address),
            "port" => enc_opt(&self.port),
            "checkport" => enc_opt(&self.checkport),
            "mode" => enc_enum(&self.mode),
            "weight" => enc_opt(&self.weight),
            "maxConnections" => enc_opt(&self.max_connections),
            "checkInterval" => enc_opt_text(&self.check_interval),
            "checkDownInterval" => enc_opt_text(&self.check_down_interval),
            "ssl" => enc_bool(self.ssl),
            "sslVerify" => enc_bool(self.ssl_verify),
            "source" => enc_opt_text(&self.source),
            "advanced" => enc_opt_text(&self.advanced),
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A health monitor (`healthchecks.healthcheck`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    pub name: String,
    pub description: Option<String>,
    pub check_type: HealthcheckType,
    pub interval: String,
    pub checkport: Option<u16>,
    pub http_method: Option<HttpMethod>,
    pub http_uri: Option<String>,
    pub http_version: Option<HttpVersion>,
    pub http_host: Option<String>,
    pub tcp_enabled: bool,
    pub tcp_send_value: Option<String>,
    pub tcp_match_type: Option<TcpMatchType>,
    pub tcp_match_value: Option<String>,
    pub tcp_negate: bool,
}

impl Healthcheck {
    /// A TCP connect check with OPNsense's defaults for the HTTP fields.
    pub fn tcp(name: &str, interval: &str) -> Self {
        Healthcheck {
            name: name.into(),
            description: None,
            check_type: HealthcheckType::Tcp,
            interval: interval.into(),
            checkport: None,
            http_method: Some(HttpMethod::Options),
            http_uri: Some("/".into()),
            http_version: Some(HttpVersion::Http10),
            http_host: Some("localhost".into()),
            tcp_enabled: false,
            tcp_send_value: None,
            tcp_match_type: Some(TcpMatchType::String),
            tcp_match_value: None,
            tcp_negate: false,
        }
    }
}

impl HaproxyObject for Healthcheck {
    const KIND: Kind = Kind::Healthcheck;
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("name", "name"),
        ("description", "description"),
        ("type", "type"),
        ("interval", "interval"),
        ("checkport", "check_port"),
        ("http_method", "http_method"),
        ("http_uri", "http_uri"),
        ("http_version", "http_version"),
        ("http_host", "http_host"),
        ("tcp_enabled", "tcp_enabled"),
        ("tcp_sendValue", "tcp_send_value"),
        ("tcp_matchType", "tcp_match_type"),
        ("tcp_matchValue", "tcp_match_value"),
        ("tcp_negate", "tcp_negate"),
    ];
    fn from_wire(o: &Obj) -> std::result::Result<Self, DecodeError> {
        Ok(Healthcheck {
            name: text(o, "name"),
            description: opt_text(o, "description"),
            check_type: enum_or(o, "type", HealthcheckType::Http)?,
            interval: text(o, "interval"),
            checkport: opt_int(o, "checkport")?,
            http_method: opt_enum(o, "http_method")?,
            http_uri: opt_text(o, "http_uri"),
            http_version: opt_enum(o, "http_version")?,
            http_host: opt_text(o, "http_host"),
            tcp_enabled: boolean(o, "tcp_enabled")?,
            tcp_send_value: opt_text(o, "tcp_sendValue"),
            tcp_match_type: opt_enum(o, "tcp_matchType")?,
            tcp_match_value: opt_text(o, "tcp_matchValue"),
            tcp_negate: boolean(o, "tcp_negate")?,
        })
    }
    fn to_wire(&self) -> Obj {
        obj! {
            "name" => enc_text(&self.name),
            "description" => enc_opt_text(&self.description),
            "type" => enc_enum(&self.check_type),
            "interval" => enc_text(&self.interval),
            "checkport" => enc_opt(&self.checkport),
            "http_method" => enc_opt_enum(&self.http_method),
            "http_uri" => enc_opt_text(&self.http_uri),
            "http_version" => enc_opt_enum(&self.http_version),
            "http_host" => enc_opt_text(&self.http_host),
            "tcp_enabled" => enc_bool(self.tcp_enabled),
            "tcp_sendValue" => enc_opt_text(&self.tcp_send_value),
            "tcp_matchType" => enc_opt_enum(&self.tcp_match_type),
            "tcp_matchValue" => enc_opt_text(&self.tcp_match_value),
            "tcp_negate" => enc_bool(self.tcp_negate),
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A backend pool (`backends.backend`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    pub mode: BackendMode,
    pub algorithm: Algorithm,
    pub linked_servers: BTreeSet<Uuid>,
    pub health_check_enabled: bool,
    pub health_check: Option<Uuid>,
    pub health_check_log_status: bool,
    pub check_interval: Option<String>,
    pub check_down_interval: Option<String>,
    pub health_check_fall: Option<u16>,
    pub health_check_rise: Option<u16>,
    /// `None` together with `stickiness_pattern: None` = no persistence at all (a plain pool).
    pub persistence: Option<Persistence>,
    pub stickiness_pattern: Option<StickinessPattern>,
    pub stickiness_expire: String,
    pub stickiness_size: String,
    pub proxy_protocol: Option<ProxyProtocol>,
    pub tuning_timeout_connect: Option<String>,
    pub tuning_timeout_check: Option<String>,
    pub tuning_timeout_server: Option<String>,
    pub tuning_retries: Option<u16>,
    pub source: Option<String>,
}

impl Backend {
    /// A plain (non-sticky) pool with the given mode and algorithm.
    pub fn new(name: &str, mode: BackendMode, algorithm: Algorithm) -> Self {
        Backend {
            name: name.into(),
            description: None,
            enabled: true,
            mode,
            algorithm,
            linked_servers: BTreeSet::new(),
            health_check_enabled: true,
            health_check: None,
            health_check_log_status: false,
            check_interval: None,
            check_down_interval: None,
            health_check_fall: None,
            health_check_rise: None,
            persistence: None,
            stickiness_pattern: None,
            stickiness_expire: "30m".into(),
            stickiness_size: "50k".into(),
            proxy_protocol: None,
            tuning_timeout_connect: None,
            tuning_timeout_check: None,
            tuning_timeout_server: None,
            tuning_retries: None,
            source: None,
        }
    }
}

impl HaproxyObject for Backend {
    const KIND: Kind = Kind::Backend;
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("name", "name"),
        ("description", "description"),
        ("enabled", "enabled"),
        ("mode", "mode"),
        ("algorithm", "algorithm"),
        ("linkedServers", "servers"),
        ("healthCheckEnabled", "health_check_enabled"),
        ("healthCheck", "health_check"),
        ("healthCheckLogStatus", "health_check_log_status"),
        ("checkInterval", "check_interval"),
        ("checkDownInterval", "check_down_interval"),
        ("healthCheckFall", "health_check_fall"),
        ("healthCheckRise", "health_check_rise"),
        ("persistence", "persistence"),
        ("stickiness_pattern", "stickiness_pattern"),
        ("stickiness_expire", "stickiness_expire"),
        ("stickiness_size", "stickiness_size"),
        ("proxyProtocol", "proxy_protocol"),
        ("tuning_timeoutConnect", "timeout_connect"),
        ("tuning_timeoutCheck", "timeout_check"),
        ("tuning_timeoutServer", "timeout_server"),
        ("tuning_retries", "retries"),
        ("source", "source"),
    ];
    fn from_wire(o: &Obj) -> std::result::Result<Self, DecodeError> {
        Ok(Backend {
            name: text(o, "name"),
            description: opt_text(o, "description"),
            enabled: boolean(o, "enabled")?,
            mode: enum_or(o, "mode", BackendMode::Http)?,
            algorithm: enum_or(o, "algorithm", Algorithm::Source)?,
            linked_servers: uuid_set(o, "linkedServers")?,
            health_check_enabled: boolean(o, "healthCheckEnabled")?,
            health_check: opt_uuid(o, "healthCheck")?,
            health_check_log_status: boolean(o, "healthCheckLogStatus")?,
            check_interval: opt_text(o, "checkInterval"),
            check_down_interval: opt_text(o, "checkDownInterval"),
            health_check_fall: opt_int(o, "healthCheckFall")?,
            health_check_rise: opt_int(o, "healthCheckRise")?,
            persistence: opt_enum(o, "persistence")?,
            stickiness_pattern: opt_enum(o, "stickiness_pattern")?,
            stickiness_expire: text(o, "stickiness_expire"),
            stickiness_size: text(o, "stickiness_size"),
            proxy_protocol: opt_enum(o, "proxyProtocol")?,
            tuning_timeout_connect: opt_text(o, "tuning_timeoutConnect"),
            tuning_timeout_check: opt_text(o, "tuning_timeoutCheck"),
            tuning_timeout_server: opt_text(o, "tuning_timeoutServer"),
            tuning_retries: opt_int(o, "tuning_retries")?,
            source: opt_text(o, "source"),
        })
    }
    fn to_wire(&self) -> Obj {
        obj! {
            "name" => enc_text(&self.name),
            "description" => enc_opt_text(&self.description),
            "enabled" => enc_bool(self.enabled),
            "mode" => enc_enum(&self.mode),
            "algorithm" => enc_enum(&self.algorithm),
            "linkedServers" => enc_list(&self.linked_servers),
            "healthCheckEnabled" => enc_bool(self.health_check_enabled),
            "healthCheck" => enc_opt(&self.health_check),
            "healthCheckLogStatus" => enc_bool(self.health_check_log_status),
            "checkInterval" => enc_opt_text(&self.check_interval),
            "checkDownInterval" => enc_opt_text(&self.check_down_interval),
            "healthCheckFall" => enc_opt(&self.health_check_fall),
            "healthCheckRise" => enc_opt(&self.health_check_rise),
            "persistence" => enc_opt_enum(&self.persistence),
            "stickiness_pattern" => enc_opt_enum(&self.stickiness_pattern),
            "stickiness_expire" => enc_text(&self.stickiness_expire),
            "stickiness_size" => enc_text(&self.stickiness_size),
            "proxyProtocol" => enc_opt_enum(&self.proxy_protocol),
            "tuning_timeoutConnect" => enc_opt_text(&self.tuning_timeout_connect),
            "tuning_timeoutCheck" => enc_opt_text(&self.tuning_timeout_check),
            "tuning_timeoutServer" => enc_opt_text(&self.tuning_timeout_server),
            "tuning_retries" => enc_opt(&self.tuning_retries),
            "source" => enc_opt_text(&self.source),
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// A public service (`frontends.frontend`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    pub name: String,
    pub description: Option<String>,
    pub enabled: bool,
    /// Listen addresses `host:port` (a set; OPNsense lower-cases them).
    pub bind: BTreeSet<String>,
    pub bind_options: Option<String>,
    pub mode: FrontendMode,
    pub default_backend: Option<Uuid>,
    pub forward_for: bool,
    pub connection_behaviour: ConnectionBehaviour,
    pub prometheus_enabled: bool,
    pub prometheus_path: String,
    pub max_connections: Option<u32>,
    pub timeout_client: Option<String>,
    pub logging_dont_log_null: bool,
    pub logging_dont_log_normal: bool,
    pub logging_log_separate_errors: bool,
    pub logging_detailed_log: bool,
    pub logging_socket_stats: bool,
}

impl Frontend {
    pub fn new(name: &str, mode: FrontendMode, bind: &[&str]) -> Self {
        Frontend {
            name: name.into(),
            description: None,
            enabled: true,
            bind: bind.iter().map(|s| s.to_string()).collect(),
            bind_options: None,
            mode,
            default_backend: None,
            forward_for: false,
            connection_behaviour: ConnectionBehaviour::HttpKeepAlive,
            prometheus_enabled: false,
            prometheus_path: "/metrics".into(),
            max_connections: None,
            timeout_client: None,
            logging_dont_log_null: false,
            logging_dont_log_normal: false,
            logging_log_separate_errors: false,
            logging_detailed_log: false,
            logging_socket_stats: false,
        }
    }
}

impl HaproxyObject for Frontend {
    const KIND: Kind = Kind::Frontend;
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("name", "name"),
        ("description", "description"),
        ("enabled", "enabled"),
        ("bind", "bind"),
        ("bindOptions", "bind_options"),
        ("mode", "mode"),
        ("defaultBackend", "default_backend"),
        ("forwardFor", "forward_for"),
        ("connectionBehaviour", "connection_behaviour"),
        ("prometheus_enabled", "prometheus_enabled"),
        ("prometheus_path", "prometheus_path"),
        ("tuning_maxConnections", "max_connections"),
        ("tuning_timeoutClient", "timeout_client"),
        ("logging_dontLogNull", "log_dont_log_null"),
        ("logging_dontLogNormal", "log_dont_log_normal"),
        ("logging_logSeparateErrors", "log_separate_errors"),
        ("logging_detailedLog", "log_detailed"),
        ("logging_socketStats", "log_socket_stats"),
    ];
    fn from_wire(o: &Obj) -> std::result::Result<Self, DecodeError> {
        Ok(Frontend {
            name: text(o, "name"),
            description: opt_text(o, "description"),
            enabled: boolean(o, "enabled")?,
            bind: selected_all(o, "bind").into_iter().collect(),
            bind_options: opt_text(o, "bindOptions"),
            mode: enum_or(o, "mode", FrontendMode::Http)?,
            default_backend: opt_uuid(o, "defaultBackend")?,
            forward_for: boolean(o, "forwardFor")?,
            connection_behaviour: enum_or(
                o,
                "connectionBehaviour",
                ConnectionBehaviour::HttpKeepAlive,
            )?,
            prometheus_enabled: boolean(o, "prometheus_enabled")?,
            prometheus_path: text(o, "prometheus_path"),
            max_connections: opt_int(o, "tuning_maxConnections")?,
            timeout_client: opt_text(o, "tuning_timeoutClient"),
            logging_dont_log_null: boolean(o, "logging_dontLogNull")?,
            logging_dont_log_normal: boolean(o, "logging_dontLogNormal")?,
            logging_log_separate_errors: boolean(o, "logging_logSeparateErrors")?,
            logging_detailed_log: boolean(o, "logging_detailedLog")?,
            logging_socket_stats: boolean(o, "logging_socketStats")?,
        })
    }
    fn to_wire(&self) -> Obj {
        obj! {
            "name" => enc_text(&self.name),
            "description" => enc_opt_text(&self.description),
            "enabled" => enc_bool(self.enabled),
            "bind" => enc_list(&self.bind),
            "bindOptions" => enc_opt_text(&self.bind_options),
            "mode" => enc_enum(&self.mode),
            "defaultBackend" => enc_opt(&self.default_backend),
            "forwardFor" => enc_bool(self.forward_for),
            "connectionBehaviour" => enc_enum(&self.connection_behaviour),
            "prometheus_enabled" => enc_bool(self.prometheus_enabled),
            "prometheus_path" => enc_text(&self.prometheus_path),
            "tuning_maxConnections" => enc_opt(&self.max_connections),
            "tuning_timeoutClient" => enc_opt_text(&self.timeout_client),
            "logging_dontLogNull" => enc_bool(self.logging_dont_log_null),
            "logging_dontLogNormal" => enc_bool(self.logging_dont_log_normal),
            "logging_logSeparateErrors" => enc_bool(self.logging_log_separate_errors),
            "logging_detailedLog" => enc_bool(self.logging_detailed_log),
            "logging_socketStats" => enc_bool(self.logging_socket_stats),
        }
    }
    fn name(&self) -> &str {
        &self.name
    }
}

/// The singleton `general` section fields this client manages (incl. the Prometheus exporter in `general.stats`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub enabled: bool,
    pub graceful_stop: bool,
    pub seamless_reload: bool,
    pub hard_stop_after: Option<String>,
    pub prometheus_enabled: bool,
    pub prometheus_bind: BTreeSet<String>,
    pub prometheus_path: String,
}

impl Default for Settings {
    /// OPNsense's defaults (what a fresh os-haproxy has; destroy restores these).
    fn default() -> Self {
        Settings {
            enabled: false,
            graceful_stop: false,
            seamless_reload: false,
            hard_stop_after: Some("60s".into()),
            prometheus_enabled: false,
            prometheus_bind: ["*:8404".to_string()].into_iter().collect(),
            prometheus_path: "/metrics".into(),
        }
    }
}

impl Settings {
    pub const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("general.enabled", "enabled"),
        ("general.gracefulStop", "graceful_stop"),
        ("general.seamlessReload", "seamless_reload"),
        ("general.hardStopAfter", "hard_stop_after"),
        ("general.stats.prometheus_enabled", "prometheus_enabled"),
        ("general.stats.prometheus_bind", "prometheus_bind"),
        ("general.stats.prometheus_path", "prometheus_path"),
    ];

    pub fn attribute_of(field: &str) -> Option<&'static str> {
        Self::FIELDS
            .iter()
            .find(|(w, _)| *w == field)
            .map(|(_, a)| *a)
    }

    fn from_general(g: &Obj) -> std::result::Result<Self, DecodeError> {
        let empty = Obj::new();
        let stats = g.get("stats").and_then(Value::as_object).unwrap_or(&empty);
        Ok(Settings {
            enabled: boolean(g, "enabled")?,
            graceful_stop: boolean(g, "gracefulStop")?,
            seamless_reload: boolean(g, "seamlessReload")?,
            hard_stop_after: opt_text(g, "hardStopAfter"),
            prometheus_enabled: boolean(stats, "prometheus_enabled")?,
            prometheus_bind: selected_all(stats, "prometheus_bind").into_iter().collect(),
            prometheus_path: text(stats, "prometheus_path"),
        })
    }

    /// The `settings/set` body for the managed fields.
    pub fn wire(&self) -> Value {
        json!({"haproxy": {"general": {
            "enabled": enc_bool(self.enabled),
            "gracefulStop": enc_bool(self.graceful_stop),
            "seamlessReload": enc_bool(self.seamless_reload),
            "hardStopAfter": enc_opt_text(&self.hard_stop_after),
            "stats": {
                "prometheus_enabled": enc_bool(self.prometheus_enabled),
                "prometheus_bind": enc_list(&self.prometheus_bind),
                "prometheus_path": enc_text(&self.prometheus_path),
            }
        }}})
    }
}

/// One snapshot of the whole HAProxy model (`GET haproxy/settings/get`).
#[derive(Debug, Clone)]
pub struct Model {
    raw: Value,
}

impl Model {
    pub fn from_response(body: Value) -> Result<Self> {
        match body.get("haproxy") {
            Some(Value::Object(_)) => Ok(Model {
                raw: body["haproxy"].clone(),
            }),
            _ => Err(Error::Decode {
                path: "haproxy/settings/get".into(),
                detail: "missing \"haproxy\" object".into(),
            }),
        }
    }

    fn items(&self, kind: Kind) -> Vec<(Uuid, &Obj)> {
        array_items(self.raw.get(kind.container()), kind.wrapper())
    }

    /// The raw (get-shaped) object, for snapshots.
    ///
    /// Looked up by the key OPNsense writes (lower-case, hyphenated) first: a plan or apply of N objects asks for
    /// each of them, and parsing every key of the list on each call made that N². Any other spelling of the key
    /// still matches (compared without case, not parsed).
    pub fn raw_object(&self, kind: Kind, uuid: Uuid) -> Option<&Obj> {
        let items = self
            .raw
            .get(kind.container())?
            .get(kind.wrapper())?
            .as_object()?;
        let key = uuid.hyphenated().to_string();
        match items.get(&key) {
            Some(v) => v.as_object(),
            None => items
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                .and_then(|(_, v)| v.as_object()),
        }
    }

    pub fn contains(&self, kind: Kind, uuid: Uuid) -> bool {
        self.raw_object(kind, uuid).is_some()
    }

    /// One typed object, `Ok(None)` when absent.
    pub fn get<T: HaproxyObject>(&self, uuid: Uuid) -> Result<Option<T>> {
        self.raw_object(T::KIND, uuid)
            .map(|o| T::from_wire(o).map_err(|e| decode_err(T::KIND, uuid, e)))
            .transpose()
    }

    /// All objects of a kind, each decoded on its own.
    pub fn list<T: HaproxyObject>(&self) -> Vec<(Uuid, Result<T>)> {
        self.items(T::KIND)
            .into_iter()
            .map(|(u, o)| (u, T::from_wire(o).map_err(|e| decode_err(T::KIND, u, e))))
            .collect()
    }

    /// UUID and name of every object of a kind (names read raw, so this never fails).
    pub fn names(&self, kind: Kind) -> Vec<(Uuid, String)> {
        self.items(kind)
            .into_iter()
            .map(|(u, o)| (u, text(o, "name")))
            .collect()
    }

    /// Objects of `kind` other than `except` named `name`.
    pub fn others_named(&self, kind: Kind, name: &str, except: Option<Uuid>) -> Vec<Uuid> {
        self.names(kind)
            .into_iter()
            .filter(|(u, n)| n == name && Some(*u) != except)
            .map(|(u, _)| u)
            .collect()
    }

    pub fn settings(&self) -> Result<Settings> {
        let empty = Obj::new();
        let g = self
            .raw
            .get("general")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        Settings::from_general(g).map_err(|e| Error::Decode {
            path: "haproxy/settings/get".into(),
            detail: format!("general: {e}"),
        })
    }

    /// Whether the object appears in the rendered haproxy.conf at all. Servers and health checks are rendered only
    /// inside the backends that link them, so an unreferenced one needs no reconfigure to be "live".
    pub fn is_rendered(&self, kind: Kind, uuid: Uuid) -> bool {
        let needle = uuid.to_string();
        match kind {
            Kind::Server | Kind::Healthcheck => {
                let field = if kind == Kind::Server {
                    "linkedServers"
                } else {
                    "healthCheck"
                };
                self.items(Kind::Backend)
                    .iter()
                    .any(|(_, b)| selected_all(b, field).iter().any(|s| s == &needle))
            }
            Kind::Backend | Kind::Frontend => true,
        }
    }

    /// Names of the enabled backends that link server `uuid` (where haproxy runs it under the backend's name).
    pub fn backends_rendering_server(&self, uuid: Uuid) -> Vec<String> {
        let needle = uuid.to_string();
        self.items(Kind::Backend)
            .into_iter()
            .filter(|(_, b)| text(b, "enabled") != "0")
            .filter(|(_, b)| {
                selected_all(b, "linkedServers")
                    .iter()
                    .any(|s| s == &needle)
            })
            .map(|(_, b)| text(b, "name"))
            .collect()
    }

    /// Backends and frontends that reference `uuid` (for "in use" diagnostics).
    pub fn referrers(&self, uuid: Uuid) -> Vec<(Kind, Uuid, String)> {
        let needle = uuid.to_string();
        let mut out = Vec::new();
        for (kind, fields) in [
            (Kind::Backend, &["linkedServers", "healthCheck"][..]),
            (Kind::Frontend, &["defaultBackend"][..]),
        ] {
            for (u, o) in self.items(kind) {
                if fields
                    .iter()
                    .any(|f| selected_all(o, f).iter().any(|s| s == &needle))
                {
                    out.push((kind, u, text(o, "name")));
                }
            }
        }
        out
    }
}

impl Model {
    /// Records a successful `set<Kind>/<uuid>` of `body` (the flat form `set*` takes): the object's fields are
    /// replaced by what was written, fields the write did not carry are kept, a new object is added. The decoders
    /// read the flat strings as they read option maps, so the patched model answers like a fresh read would
    /// (OPNsense stores managed fields as sent; see `put_raw`).
    fn record_put(&mut self, kind: Kind, uuid: Uuid, body: &Obj) {
        let items = self.items_mut(kind);
        let key = items
            .keys()
            .find(|k| Uuid::parse_str(k).ok() == Some(uuid))
            .cloned()
            .unwrap_or_else(|| uuid.to_string());
        let item = items
            .entry(key)
            .or_insert_with(|| Value::Object(Obj::new()));
        if !item.is_object() {
            *item = Value::Object(Obj::new());
        }
        if let Value::Object(o) = item {
            for (k, v) in body {
                o.insert(k.clone(), v.clone());
            }
        }
    }

    /// Records a delete (or an object found already gone).
    fn record_delete(&mut self, kind: Kind, uuid: Uuid) {
        self.items_mut(kind)
            .retain(|k, _| Uuid::parse_str(k).ok() != Some(uuid));
    }

    /// The `{uuid: object}` map of a kind, created when the model has none yet (OPNsense renders an empty one as
    /// `[]`).
    fn items_mut(&mut self, kind: Kind) -> &mut Obj {
        let root = ensure_object(&mut self.raw);
        let container = ensure_object(
            root.entry(kind.container())
                .or_insert_with(|| Value::Object(Obj::new())),
        );
        ensure_object(
            container
                .entry(kind.wrapper())
                .or_insert_with(|| Value::Object(Obj::new())),
        )
    }
}

fn ensure_object(v: &mut Value) -> &mut Obj {
    if !v.is_object() {
        *v = Value::Object(Obj::new());
    }
    match v {
        Value::Object(o) => o,
        _ => unreachable!("just made an object"),
    }
}

fn decode_err(kind: Kind, uuid: Uuid, e: DecodeError) -> Error {
    Error::Decode {
        path: format!("haproxy/settings/get ({} {uuid})", kind.wrapper()),
        detail: e.to_string(),
    }
}

/// Caches the whole model. Single-flight: concurrent readers share one request.
///
/// Why writes patch it instead of dropping it: an apply writes many objects in parallel and each write reads the
/// model first (duplicate names, references, revert snapshots). Dropping the model on every write made each of
/// those reads a whole-model GET, so creating N objects cost N reads of a model that grows with N. A successful
/// write is recorded in the cached model instead ([`ModelCache::record`]); anything whose effect is not known
/// exactly (a failed or unanswered write, a settings write, a revert after configtest) drops it.
#[derive(Debug, Default)]
pub struct ModelCache {
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    model: Option<Arc<Model>>,
}

impl ModelCache {
    pub async fn get(&self, t: &Transport) -> Result<Arc<Model>> {
        let mut st = self.state.lock().await;
        if let Some(m) = &st.model {
            return Ok(m.clone());
        }
        let m = Arc::new(Model::from_response(t.get("haproxy/settings/get").await?)?);
        st.model = Some(m.clone());
        Ok(m)
    }

    /// Forget the cached model (after any HAProxy write). Waits for an in-flight fetch, so a fetch that started
    /// before the write can never be stored after it.
    pub async fn invalidate(&self) {
        self.state.lock().await.model = None;
    }

    /// Apply a write that OPNsense confirmed to the cached model, if one is cached. Takes the same lock as
    /// [`ModelCache::get`], so a fetch in flight during the write is stored first and then patched: whether or not
    /// that fetch saw the write, the result shows it.
    async fn record(&self, f: impl FnOnce(&mut Model)) {
        let mut st = self.state.lock().await;
        if let Some(m) = st.model.as_mut() {
            // Readers holding the old snapshot keep it; the cache gets a patched copy.
            f(Arc::make_mut(m));
        }
    }
}

/// Parsed `haproxy/service/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceStatus {
    Running,
    Stopped,
    Disabled,
    Other(String),
}

/// HAProxy API calls. Cheap to clone; shares the cache of the [`super::Client`] it came from.
#[derive(Debug, Clone)]
pub struct Haproxy {
    pub(crate) t: Transport,
    pub(crate) cache: Arc<ModelCache>,
}

impl Haproxy {
    /// The whole model (cached; this client's confirmed writes are patched in).
    pub async fn model(&self) -> Result<Arc<Model>> {
        self.cache.get(&self.t).await
    }

    /// A fresh read of the whole model, bypassing the cache.
    pub async fn model_fresh(&self) -> Result<Arc<Model>> {
        self.cache.invalidate().await;
        self.cache.get(&self.t).await
    }

    pub async fn get<T: HaproxyObject>(&self, uuid: Uuid) -> Result<Option<T>> {
        self.model().await?.get(uuid)
    }

    pub async fn list<T: HaproxyObject>(&self) -> Result<Vec<(Uuid, Result<T>)>> {
        Ok(self.model().await?.list())
    }

    /// Create or update with a client-chosen UUID (`set<Kind>/<uuid>`; upsert on OPNsense ≥ 23.1). Retried on
    /// transient faults: the fixed UUID makes a repeat an update of the same object, never a duplicate.
    pub async fn put<T: HaproxyObject>(&self, uuid: Uuid, obj: &T) -> Result<()> {
        self.put_raw(T::KIND, uuid, obj.to_wire(), T::attribute_of)
            .await
    }

    pub(crate) async fn put_raw(
        &self,
        kind: Kind,
        uuid: Uuid,
        body: Obj,
        attribute_of: fn(&str) -> Option<&'static str>,
    ) -> Result<()> {
        let path = format!(
            "haproxy/settings/set{}/{}",
            kind.action(),
            uuid.as_hyphenated()
        );
        let wrapped = json!({ kind.wrapper(): body.clone() });
        let saved = self
            .t
            .post(&path, Some(&wrapped), Idempotency::Idempotent)
            .await
            .and_then(|v| wire::interpret_save(&path, kind.wrapper(), &v, &attribute_of));
        if saved.is_ok() {
            self.cache.record(|m| m.record_put(kind, uuid, &body)).await;
        } else {
            // Refused, failed or unanswered: what OPNsense now holds is not known exactly.
            self.cache.invalidate().await;
        }
        match saved {
            Err(Error::Failed { .. }) if !self.model_fresh().await?.contains(kind, uuid) => {
                Err(Error::Unsupported(format!(
                    "{} {uuid} could not be created with a client-chosen UUID (needs OPNsense 23.1 or later)",
                    kind.label()
                )))
            }
            other => other.map(|_| ()),
        }
    }

    /// Delete; `Ok(false)` when it was already gone. "In use" comes back as [`Error::InUse`] naming the referrers.
    pub async fn delete(&self, kind: Kind, uuid: Uuid) -> Result<bool> {
        let path = format!(
            "haproxy/settings/del{}/{}",
            kind.action(),
            uuid.as_hyphenated()
        );
        let res = self
            .t
            .post(&path, None, Idempotency::Idempotent)
            .await
            .and_then(|v| match v.get("result").and_then(Value::as_str) {
                Some("deleted") => Ok(true),
                Some("not found") => Ok(false),
                _ => Err(Error::Decode {
                    path,
                    detail: format!("expected deleted or not found, got {}", short(&v)),
                }),
            });
        match res {
            Ok(_) => self.cache.record(|m| m.record_delete(kind, uuid)).await,
            // In use, refused or unanswered: drop the model rather than guess.
            Err(_) => self.cache.invalidate().await,
        }
        res.map_err(|e| match e {
            Error::InUse { title, message, .. } => Error::InUse {
                object: kind.label(),
                uuid: uuid.to_string(),
                title,
                message,
            },
            e => e,
        })
    }

    pub async fn settings(&self) -> Result<Settings> {
        self.model().await?.settings()
    }

    pub async fn put_settings(&self, s: &Settings) -> Result<()> {
        let path = "haproxy/settings/set";
        let res = self
            .t
            .post(path, Some(&s.wire()), Idempotency::Idempotent)
            .await;
        // Settings are written rarely (one singleton): re-read rather than patch the nested general section.
        self.cache.invalidate().await;
        wire::interpret_save(path, "settings", &res?, &Settings::attribute_of).map(|_| ())
    }

    /// `service/configtest`: haproxy's own `-c` output.
    pub async fn configtest(&self) -> Result<String> {
        let path = "haproxy/service/configtest";
        let v = self.t.post(path, None, Idempotency::Idempotent).await?;
        v.get("result")
            .and_then(Value::as_str)
            .map(|s| s.trim_end().to_string())
            .ok_or_else(|| Error::Decode {
                path: path.into(),
                detail: format!("no result in {}", short(&v)),
            })
    }

    /// `service/reconfigure` (render + reload/start/stop as configured).
    pub async fn reconfigure(&self) -> Result<()> {
        let path = "haproxy/service/reconfigure";
        let v = self.t.post(path, None, Idempotency::Idempotent).await?;
        match v.get("status").and_then(Value::as_str) {
            Some(s) if s.trim().eq_ignore_ascii_case("ok") => Ok(()),
            _ => Err(Error::Service {
                service: "haproxy",
                message: short(&v),
            }),
        }
    }

    /// `export/diff`: the unified diff from the running `haproxy.conf` to the staging file the last configtest
    /// rendered from the saved configuration (empty when haproxy runs what is saved).
    pub async fn export_diff(&self) -> Result<String> {
        let path = "haproxy/export/diff";
        let v = self.t.get(path).await?;
        v.get("response")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::Decode {
                path: path.into(),
                detail: format!("no response in {}", short(&v)),
            })
    }

    /// Live counters of every proxy and server (`haproxy/statistics/counters`). Empty when haproxy is not running.
    pub async fn statistics(&self) -> Result<Vec<StatRow>> {
        Ok(parse_counters(
            &self.t.get("haproxy/statistics/counters").await?,
        ))
    }

    pub async fn status(&self) -> Result<ServiceStatus> {
        let v = self.t.get("haproxy/service/status").await?;
        Ok(
            match v.get("status").and_then(Value::as_str).unwrap_or("") {
                "running" => ServiceStatus::Running,
                "stopped" => ServiceStatus::Stopped,
                "disabled" => ServiceStatus::Disabled,
                other => ServiceStatus::Other(other.to_string()),
            },
        )
    }
}

/// One row of `haproxy/statistics/counters` (haproxy's `show stat`): a frontend, a backend or a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatRow {
    /// Proxy name (the frontend or backend name).
    pub proxy: String,
    /// `FRONTEND`, `BACKEND` or the server name.
    pub service: String,
    /// haproxy's status: `UP`, `DOWN`, `MAINT`, `no check`, `OPEN`, `UP 1/3` (going down), …
    pub status: String,
    /// Last health check result (`L4OK`, `L4CON`, `L7STS`, …; a leading `* ` while a check is running), `None`
    /// without checks.
    pub check_status: Option<String>,
    /// haproxy's words for the last check (`check_desc`), `None` when empty.
    pub check_description: Option<String>,
    pub weight: Option<u32>,
    /// Seconds since the last status change.
    pub last_change: Option<u64>,
    /// Current sessions.
    pub sessions: Option<u64>,
}

impl StatRow {
    pub fn is_server(&self) -> bool {
        self.service != "FRONTEND" && self.service != "BACKEND"
    }
}

/// Parses `haproxy/statistics/counters`. The plugin's script returns the CSV rows as objects and `[null]` for blank
/// lines, and `null` (no JSON) when haproxy is not running; only complete rows are kept.
pub fn parse_counters(v: &Value) -> Vec<StatRow> {
    let Some(rows) = v.as_array() else {
        return Vec::new();
    };
    let field = |o: &Obj, k: &str| {
        o.get(k)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    rows.iter()
        .filter_map(Value::as_object)
        .filter_map(|o| {
            Some(StatRow {
                proxy: field(o, "pxname")?,
                service: field(o, "svname")?,
                status: field(o, "status").unwrap_or_default(),
                check_status: field(o, "check_status"),
                check_description: field(o, "check_desc"),
                weight: field(o, "weight").and_then(|s| s.parse().ok()),
                last_change: field(o, "lastchg").and_then(|s| s.parse().ok()),
                sessions: field(o, "scur").and_then(|s| s.parse().ok()),
            })
        })
        .collect()
}

/// Whether configtest output means "do not deploy" (the UI's rule: any `ALERT`).
pub fn configtest_failed(output: &str) -> bool {
    output.contains("ALERT")
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::recorded as fx;

    fn sample(name: &str) -> Value {
        fx::json(match name {
            "haproxy_getServer" => fx::GET_SERVER,
            "haproxy_getBackend" => fx::GET_BACKEND,
            "haproxy_getFrontend" => fx::GET_FRONTEND,
            "haproxy_getHealthcheck" => fx::GET_HEALTHCHECK,
            "haproxy_settings_get_whole_model" => fx::WHOLE_MODEL,
            "haproxy_searchBackends" => fx::SEARCH_BACKENDS,
            other => panic!("no fixture {other}"),
        })
    }

    #[test]
    fn decodes_recorded_get_shapes() {
        let s =
            Server::from_wire(sample("haproxy_getServer")["server"].as_object().unwrap()).unwrap();
        assert_eq!(s.name, "web1");
        assert_eq!(s.address.as_deref(), Some("10.0.0.5"));
        assert_eq!(s.port, Some(8080));
        assert_eq!(s.mode, ServerMode::Active);
        assert_eq!(s.weight, None);
        assert!(s.enabled && s.ssl_verify && !s.ssl);

        let b = Backend::from_wire(sample("haproxy_getBackend")["backend"].as_object().unwrap())
            .unwrap();
        assert_eq!(b.algorithm, Algorithm::Roundrobin);
        assert_eq!(b.mode, BackendMode::Http);
        assert_eq!(b.linked_servers.len(), 2);
        assert!(b.health_check.is_some());
        assert_eq!(b.persistence, Some(Persistence::Sticktable));

        let f = Frontend::from_wire(
            sample("haproxy_getFrontend")["frontend"]
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(f.bind.iter().collect::<Vec<_>>(), vec!["0.0.0.0:8080"]);
        assert!(f.default_backend.is_some());

        let h = Healthcheck::from_wire(
            sample("haproxy_getHealthcheck")["healthcheck"]
                .as_object()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(h.check_type, HealthcheckType::Http);
        assert_eq!(h.http_method, Some(HttpMethod::Get));
        assert_eq!(h.interval, "2s");
    }

    #[test]
    fn whole_model_and_search_rows() {
        let m = Model::from_response(sample("haproxy_settings_get_whole_model")).unwrap();
        let servers = m.list::<Server>();
        assert!(servers.len() >= 3);
        assert!(servers.iter().all(|(_, s)| s.is_ok()));
        assert!(m.list::<Backend>().iter().all(|(_, b)| b.is_ok()));
        assert!(m.list::<Frontend>().iter().all(|(_, f)| f.is_ok()));
        let st = m.settings().unwrap();
        assert_eq!(st, Settings::default());
        // Duplicate names exist in the recorded model (OPNsense does not check): both are found.
        let (u, _) = m
            .names(Kind::Server)
            .into_iter()
            .find(|(_, n)| n == "web1")
            .unwrap();
        assert!(!m.others_named(Kind::Server, "web1", Some(u)).is_empty());
        // A linked server is rendered, a server no backend links is not.
        let be = m.list::<Backend>().into_iter().next().unwrap().1.unwrap();
        let linked = *be.linked_servers.iter().next().unwrap();
        assert!(m.is_rendered(Kind::Server, linked));
        assert!(!m.referrers(linked).is_empty());
        let unlinked = servers
            .iter()
            .map(|(u, _)| *u)
            .find(|u| !m.is_rendered(Kind::Server, *u));
        assert!(unlinked.is_some());

        // The same decoder reads search rows (raw values, comma-joined relations).
        let rows = sample("haproxy_searchBackends");
        let row = rows["rows"][0].as_object().unwrap();
        let b2 = Backend::from_wire(row).unwrap();
        assert_eq!(b2.name, be.name);
    }

    #[test]
    fn recorded_writes_read_back_like_a_fresh_model() {
        let mut m = Model::from_response(sample("haproxy_settings_get_whole_model")).unwrap();
        // Update of a recorded (option-map shaped) backend: the flat write replaces what it carries.
        let (bu, be) = m.list::<Backend>().into_iter().next().unwrap();
        let mut be = be.unwrap();
        be.mode = BackendMode::Tcp;
        be.linked_servers.clear();
        be.health_check = None;
        m.record_put(Kind::Backend, bu, &be.to_wire());
        assert_eq!(m.get::<Backend>(bu).unwrap(), Some(be));
        // Rendering follows the written relations (the one backend now links no server).
        assert!(m
            .names(Kind::Server)
            .iter()
            .all(|(u, _)| !m.is_rendered(Kind::Server, *u)));
        // A field the write does not carry stays as it was.
        assert_eq!(
            m.raw_object(Kind::Backend, bu).unwrap()["id"],
            "6b04e797667164.73768393"
        );
        // A create lands in the map, also when OPNsense rendered the kind as `[]`.
        let mut empty =
            Model::from_response(json!({"haproxy": {"servers": {"server": []}}})).unwrap();
        let u = Uuid::new_v4();
        let s = Server::new("k3s-1", "10.0.0.11", 6443);
        empty.record_put(Kind::Server, u, &s.to_wire());
        empty.record_put(
            Kind::Healthcheck,
            u,
            &Healthcheck::tcp("t", "10s").to_wire(),
        );
        assert_eq!(empty.get::<Server>(u).unwrap(), Some(s));
        assert_eq!(empty.names(Kind::Healthcheck), vec![(u, "t".to_string())]);
        // A delete removes it, whatever the case of the stored key.
        empty.record_delete(Kind::Server, u);
        assert!(!empty.contains(Kind::Server, u));
        assert!(empty.contains(Kind::Healthcheck, u));
        let upper = u.to_string().to_uppercase();
        let mut m2 = Model::from_response(
            json!({"haproxy": {"servers": {"server": {upper: {"name": "x"}}}}}),
        )
        .unwrap();
        m2.record_put(Kind::Server, u, &Server::new("y", "10.0.0.1", 1).to_wire());
        assert_eq!(m2.names(Kind::Server), vec![(u, "y".to_string())]);
        m2.record_delete(Kind::Server, u);
        assert!(m2.names(Kind::Server).is_empty());
    }

    #[test]
    fn round_trip_through_wire() {
        let mut b = Backend::new("k3s", BackendMode::Tcp, Algorithm::Roundrobin);
        b.linked_servers.insert(Uuid::new_v4());
        b.linked_servers.insert(Uuid::new_v4());
        b.health_check = Some(Uuid::new_v4());
        b.check_interval = Some("10s".into());
        let w = b.to_wire();
        assert_eq!(w["stickiness_pattern"], "");
        assert_eq!(w["persistence"], "");
        assert_eq!(w["mode"], "tcp");
        assert_eq!(Backend::from_wire(&w).unwrap(), b);

        let s = Server::new("k3s-1", "10.0.0.11", 6443);
        assert_eq!(Server::from_wire(&s.to_wire()).unwrap(), s);
        let h = Healthcheck::tcp("k3s_tcp", "10s");
        assert_eq!(Healthcheck::from_wire(&h.to_wire()).unwrap(), h);
        let mut f = Frontend::new("k3s_api", FrontendMode::Tcp, &["10.0.3.100:6443"]);
        f.default_backend = Some(Uuid::new_v4());
        assert_eq!(Frontend::from_wire(&f.to_wire()).unwrap(), f);
        assert_eq!(
            Server::attribute_of("checkInterval"),
            Some("check_interval")
        );
    }

    #[test]
    fn statistics_rows() {
        let v = serde_json::json!([
            {"pxname": "k3s", "svname": "k3s-1", "status": "DOWN", "check_status": "L4CON",
             "check_desc": "Connection refused", "weight": "1", "lastchg": "4", "scur": "0", "": "",
             "id": "k3s/k3s-1"},
            {"pxname": "k3s", "svname": "BACKEND", "status": "DOWN", "check_status": "", "weight": "0"},
            [null], [null]
        ]);
        let rows = parse_counters(&v);
        assert_eq!(rows.len(), 2);
        assert!(rows[0].is_server() && !rows[1].is_server());
        assert_eq!(rows[0].status, "DOWN");
        assert_eq!(rows[0].check_status.as_deref(), Some("L4CON"));
        assert_eq!(rows[0].last_change, Some(4));
        assert_eq!(rows[1].check_status, None);
        assert!(parse_counters(&Value::Null).is_empty());
    }

    #[test]
    fn alert_detection() {
        assert!(!configtest_failed("Configuration file is valid"));
        assert!(!configtest_failed(
            "[WARNING]  (1) : parsing [x:3] : something\nConfiguration file is valid"
        ));
        assert!(configtest_failed("[ALERT]    (1) : config : parsing [x:10] : unknown keyword 'foo'\n[ALERT] Fatal errors found in configuration."));
    }
}
