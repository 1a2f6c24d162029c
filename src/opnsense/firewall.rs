//! Firewall aliases (`firewall/alias/*`) and filter rules (`firewall/filter/*`, core ≥ 24.1).
//!
//! Aliases: content is newline-separated on the wire and a set here; `getItem` of an unknown UUID does not answer
//! `[]` but a template whose content lists every other alias, so "not found" is detected by a missing name. Names
//! are unique server-side (built-ins included). Filter rules: applied with a plain `apply` (the savepoint/rollback
//! flow was removed in 26.7 and never fired before), `source_net`/`destination_net` are plain strings.

use std::collections::BTreeSet;

use serde_json::Value;
use uuid::Uuid;

use super::error::{DecodeError, Result};
use super::item::{Endpoint, Item, Service};
use super::transport::Transport;
use super::wire::*;

wire_enum! {
    pub enum AliasType {
        Host => "host", Network => "network", Port => "port", Url => "url", UrlTable => "urltable",
        UrlJson => "urljson", GeoIp => "geoip", NetworkGroup => "networkgroup", Mac => "mac", Asn => "asn",
        DynIpv6Host => "dynipv6host", AuthGroup => "authgroup", Internal => "internal", External => "external",
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub name: String,
    pub enabled: bool,
    pub alias_type: AliasType,
    pub content: BTreeSet<String>,
    pub description: Option<String>,
}

impl Item for Alias {
    const ENDPOINT: Endpoint = Endpoint {
        get: "firewall/alias/getItem",
        search: "firewall/alias/searchItem",
        set: "firewall/alias/setItem",
        del: "firewall/alias/delItem",
        wrapper: "alias",
        label: "firewall alias",
        service: Service {
            apply: "firewall/alias/reconfigure",
            name: "firewall alias",
        },
        needs_23_1: false,
    };
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("name", "name"),
        ("enabled", "enabled"),
        ("type", "type"),
        ("content", "content"),
        ("description", "description"),
    ];

    /// `getItem` of an unknown UUID answers a template (whose content lists every other alias) instead of `[]`.
    fn exists(o: &Obj) -> bool {
        !text(o, "name").is_empty()
    }

    fn from_wire(o: &Obj) -> std::result::Result<Self, DecodeError> {
        let content = match o.get("content") {
            // Search rows and raw models: newline- (or comma-) separated text.
            Some(Value::String(s)) => s
                .split(['\n', ','])
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
            _ => selected_all(o, "content").into_iter().collect(),
        };
        Ok(Alias {
            name: text(o, "name"),
            enabled: boolean(o, "enabled")?,
            alias_type: opt_enum(o, "type")?.ok_or_else(|| DecodeError::new("type", "missing"))?,
            content,
            description: opt_text(o, "description"),
        })
    }

    fn to_wire(&self) -> Obj {
        let mut m = Obj::new();
        m.insert("name".into(), enc_text(&self.name));
        m.insert("enabled".into(), enc_bool(self.enabled));
        m.insert("type".into(), enc_enum(&self.alias_type));
        m.insert(
            "content".into(),
            Value::String(self.content.iter().cloned().collect::<Vec<_>>().join("\n")),
        );
        m.insert("description".into(), enc_opt_text(&self.description));
        m
    }
}

wire_enum! {
    pub enum RuleAction { Pass => "pass", Block => "block", Reject => "reject" }
}
wire_enum! {
    pub enum Direction { In => "in", Out => "out", Any => "any" }
}
wire_enum! {
    pub enum IpProtocol { Inet => "inet", Inet6 => "inet6", Inet46 => "inet46" }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub enabled: bool,
    pub sequence: Option<u32>,
    pub action: RuleAction,
    pub quick: bool,
    pub interface: BTreeSet<String>,
    pub direction: Direction,
    pub ip_protocol: IpProtocol,
    /// `any`, `TCP`, `UDP`, `TCP/UDP`, `ICMP`, …
    pub protocol: String,
    pub source_net: String,
    pub source_not: bool,
    pub source_port: Option<String>,
    pub destination_net: String,
    pub destination_not: bool,
    pub destination_port: Option<String>,
    pub log: bool,
    pub description: Option<String>,
}

impl Item for Rule {
    const ENDPOINT: Endpoint = Endpoint {
        get: "firewall/filter/getRule",
        search: "firewall/filter/searchRule",
        set: "firewall/filter/setRule",
        del: "firewall/filter/delRule",
        wrapper: "rule",
        label: "firewall rule",
        service: Service {
            apply: "firewall/filter/apply",
            name: "firewall filter",
        },
        needs_23_1: false,
    };
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("enabled", "enabled"),
        ("sequence", "sequence"),
        ("action", "action"),
        ("quick", "quick"),
        ("interface", "interfaces"),
        ("direction", "direction"),
        ("ipprotocol", "ip_protocol"),
        ("protocol", "protocol"),
        ("source_net", "source"),
        ("source_not", "source_not"),
        ("source_port", "source_port"),
        ("destination_net", "destination"),
        ("destination_not", "destination_not"),
        ("destination_port", "destination_port"),
        ("log", "log"),
        ("description", "description"),
    ];

    fn from_wire(o: &Obj) -> std::result::Result<Self, DecodeError> {
        Ok(Rule {
            enabled: boolean(o, "enabled")?,
            sequence: opt_int(o, "sequence")?,
            action: enum_or(o, "action", RuleAction::Pass)?,
            quick: boolean(o, "quick")?,
            interface: selected_all(o, "interface").into_iter().collect(),
            direction: enum_or(o, "direction", Direction::In)?,
            ip_protocol: enum_or(o, "ipprotocol", IpProtocol::Inet)?,
            protocol: selected(o, "protocol").unwrap_or_else(|| "any".into()),
            source_net: opt_text(o, "source_net").unwrap_or_else(|| "any".into()),
            source_not: boolean(o, "source_not")?,
            source_port: opt_text(o, "source_port"),
            destination_net: opt_text(o, "destination_net").unwrap_or_else(|| "any".into()),
            destination_not: boolean(o, "destination_not")?,
            destination_port: opt_text(o, "destination_port"),
            log: boolean(o, "log")?,
            description: opt_text(o, "description"),
        })
    }

    fn to_wire(&self) -> Obj {
        let mut m = Obj::new();
        m.insert("enabled".into(), enc_bool(self.enabled));
        if let Some(s) = self.sequence {
            m.insert("sequence".into(), Value::String(s.to_string()));
        }
        m.insert("action".into(), enc_enum(&self.action));
        m.insert("quick".into(), enc_bool(self.quick));
        m.insert("interface".into(), enc_list(&self.interface));
        m.insert("direction".into(), enc_enum(&self.direction));
        m.insert("ipprotocol".into(), enc_enum(&self.ip_protocol));
        m.insert("protocol".into(), enc_text(&self.protocol));
        m.insert("source_net".into(), enc_text(&self.source_net));
        m.insert("source_not".into(), enc_bool(self.source_not));
        m.insert("source_port".into(), enc_opt_text(&self.source_port));
        m.insert("destination_net".into(), enc_text(&self.destination_net));
        m.insert("destination_not".into(), enc_bool(self.destination_not));
        m.insert(
            "destination_port".into(),
            enc_opt_text(&self.destination_port),
        );
        m.insert("log".into(), enc_bool(self.log));
        m.insert("description".into(), enc_opt_text(&self.description));
        m
    }
}

/// The alias calls beyond the generic item ones ([`super::item::Items`]).
#[derive(Debug, Clone)]
pub struct Aliases {
    pub(crate) t: Transport,
}

impl Aliases {
    /// `getAliasUUID/{name}`.
    pub async fn uuid_of(&self, name: &str) -> Result<Option<Uuid>> {
        let path = format!("firewall/alias/getAliasUUID/{name}");
        let body = self.t.get(&path).await?;
        Ok(body
            .get("uuid")
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_content_from_get_map_and_raw_rows() {
        let get: Value = serde_json::from_str(
            r#"{"enabled":"1","name":"web_servers","type":{"host":{"value":"Host(s)","selected":1},"port":{"value":"Port(s)","selected":0}},
            "content":{"10.0.0.5":{"value":"10.0.0.5","selected":1},"10.0.0.6":{"value":"10.0.0.6","selected":1},
            "bogons":{"selected":0,"value":"bogons","description":"bogon networks (internal)"}},"description":"webs"}"#,
        )
        .unwrap();
        let a = Alias::from_wire(get.as_object().unwrap()).unwrap();
        assert_eq!(a.alias_type, AliasType::Host);
        assert_eq!(
            a.content.iter().collect::<Vec<_>>(),
            vec!["10.0.0.5", "10.0.0.6"]
        );
        let w = a.to_wire();
        assert_eq!(w["content"], "10.0.0.5\n10.0.0.6");
        assert_eq!(Alias::from_wire(&w).unwrap(), a);
    }

    #[test]
    fn rule_round_trip() {
        let r = Rule {
            enabled: true,
            sequence: Some(100),
            action: RuleAction::Pass,
            quick: true,
            interface: ["opt1".to_string()].into_iter().collect(),
            direction: Direction::In,
            ip_protocol: IpProtocol::Inet,
            protocol: "TCP".into(),
            source_net: "opt1".into(),
            source_not: false,
            source_port: None,
            destination_net: "K3s_Control_Plane_Loadbalancer".into(),
            destination_not: false,
            destination_port: Some("6443".into()),
            log: false,
            description: Some("k3s api".into()),
        };
        assert_eq!(Rule::from_wire(&r.to_wire()).unwrap(), r);
    }
}
