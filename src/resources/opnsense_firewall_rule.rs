//! `homelab_opnsense_firewall_rule`: a filter rule of Firewall › Rules (the MVC rules of core ≥ 24.1, formerly
//! Firewall › Automation › Filter).
//!
//! Applied with one coalesced plain `firewall/filter/apply` per batch: the savepoint/rollback flow was removed in
//! 26.7 and its timer never fired before (see `opnsense-api.md` §4.2), so the provider does not pretend to offer a
//! rollback. Sources and destinations take `any`, an address/CIDR, an interface network (`lan`) or an alias name.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::opnsense_common::*;
use super::opnsense_object::*;
use crate::framework::*;
use crate::opnsense::firewall::{Direction, IpProtocol, Rule, RuleAction};
use crate::opnsense::wire::WireEnum;
use crate::opnsense::Client;

pub const TYPE: &str = "homelab_opnsense_firewall_rule";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleModel {
    pub id: Tf<String>,
    pub description: Tf<String>,
    pub enabled: Tf<bool>,
    pub sequence: Tf<i64>,
    pub action: Tf<String>,
    pub quick: Tf<bool>,
    pub interfaces: StrSet,
    pub direction: Tf<String>,
    pub ip_protocol: Tf<String>,
    pub protocol: Tf<String>,
    pub source: Tf<String>,
    pub source_not: Tf<bool>,
    pub source_port: Tf<String>,
    pub destination: Tf<String>,
    pub destination_not: Tf<bool>,
    pub destination_port: Tf<String>,
    pub log: Tf<bool>,
}

fn e<E: WireEnum>(t: &Tf<String>, d: E) -> E {
    t.known().and_then(|s| E::from_wire(s)).unwrap_or(d)
}

fn to_rule(m: &RuleModel) -> Rule {
    Rule {
        enabled: m.enabled.known().copied().unwrap_or(true),
        sequence: opt_num(&m.sequence),
        action: e(&m.action, RuleAction::Pass),
        quick: m.quick.known().copied().unwrap_or(true),
        interface: set_known(&m.interfaces).unwrap_or_default(),
        direction: e(&m.direction, Direction::In),
        ip_protocol: e(&m.ip_protocol, IpProtocol::Inet),
        protocol: m.protocol.known().cloned().unwrap_or_else(|| "any".into()),
        source_net: m.source.known().cloned().unwrap_or_else(|| "any".into()),
        source_not: m.source_not.known().copied().unwrap_or(false),
        source_port: opt_str(&m.source_port),
        destination_net: m
            .destination
            .known()
            .cloned()
            .unwrap_or_else(|| "any".into()),
        destination_not: m.destination_not.known().copied().unwrap_or(false),
        destination_port: opt_str(&m.destination_port),
        log: m.log.known().copied().unwrap_or(false),
        description: opt_str(&m.description),
    }
}

fn from_rule(uuid: Uuid, r: &Rule, prior: Option<&RuleModel>) -> RuleModel {
    RuleModel {
        id: Tf::Known(uuid.to_string()),
        description: tf_opt(r.description.clone()),
        enabled: Tf::Known(r.enabled),
        sequence: tf_num(r.sequence.map(i64::from)),
        action: Tf::Known(r.action.as_wire().to_string()),
        quick: Tf::Known(r.quick),
        interfaces: if r.interface.is_empty() {
            Tf::Null
        } else {
            keep_set_spelling(prior.map(|p| &p.interfaces), r.interface.clone())
        },
        direction: Tf::Known(r.direction.as_wire().to_string()),
        ip_protocol: Tf::Known(r.ip_protocol.as_wire().to_string()),
        protocol: keep_spelling(prior.map(|p| &p.protocol), Some(r.protocol.clone())),
        source: keep_spelling(prior.map(|p| &p.source), Some(r.source_net.clone())),
        source_not: Tf::Known(r.source_not),
        source_port: tf_opt(r.source_port.clone()),
        destination: keep_spelling(
            prior.map(|p| &p.destination),
            Some(r.destination_net.clone()),
        ),
        destination_not: Tf::Known(r.destination_not),
        destination_port: tf_opt(r.destination_port.clone()),
        log: Tf::Known(r.log),
    }
}

pub fn schema() -> Schema {
    Schema::new(
        "A firewall filter rule on OPNsense (Firewall › Rules). Changes are applied with one filter reload per \
         batch. OPNsense has no automatic rollback any more: test rules that could lock you out from a console.",
    )
    .attribute(id_attribute("rule"))
    .attribute(
        Attribute::string("description")
            .optional()
            .validate(description_validator())
            .description("Free-text description (shown in the rule list and logs)."),
    )
    .attribute(Attribute::bool("enabled").default_bool(true).description("Whether the rule is active."))
    .attribute(
        Attribute::number("sequence")
            .optional_computed()
            .use_state_for_unknown()
            .validate(Validator::int_between(1, 999_999))
            .description("Evaluation order (lower first). Unset: OPNsense appends the rule."),
    )
    .attribute(
        Attribute::string("action")
            .default_string("pass")
            .validate(Validator::one_of(&["pass", "block", "reject"]))
            .description("`pass`, `block` (drop silently) or `reject`."),
    )
    .attribute(
        Attribute::bool("quick")
            .default_bool(true)
            .description("Stop evaluating at the first match (OPNsense's default)."),
    )
    .attribute(
        Attribute::set("interfaces", Type::String)
            .optional()
            .description("Interface keys the rule applies to (`lan`, `opt1`, …). Unset: a floating rule."),
    )
    .attribute(
        Attribute::string("direction")
            .default_string("in")
            .validate(Validator::one_of(&["in", "out", "any"]))
            .description("Traffic direction: `in`, `out` or `any` (26.1+)."),
    )
    .attribute(
        Attribute::string("ip_protocol")
            .default_string("inet")
            .validate(Validator::one_of(&["inet", "inet6", "inet46"]))
            .description("`inet` (IPv4), `inet6` (IPv6) or `inet46` (both, 25.1+)."),
    )
    .attribute(
        Attribute::string("protocol")
            .default_string("any")
            .description("`any`, `TCP`, `UDP`, `TCP/UDP`, `ICMP`, … (names from /etc/protocols)."),
    )
    .attribute(
        Attribute::string("source")
            .default_string("any")
            .description("`any`, an address or CIDR, an interface network (`lan`) or an alias name."),
    )
    .attribute(Attribute::bool("source_not").default_bool(false).description("Invert `source`."))
    .attribute(
        Attribute::string("source_port")
            .optional()
            .description("Source port, range `a-b`, or port alias (TCP/UDP only)."),
    )
    .attribute(
        Attribute::string("destination")
            .default_string("any")
            .description("`any`, an address or CIDR, an interface network (`lan`) or an alias name."),
    )
    .attribute(Attribute::bool("destination_not").default_bool(false).description("Invert `destination`."))
    .attribute(
        Attribute::string("destination_port")
            .optional()
            .description("Destination port, range `a-b`, or port alias (TCP/UDP only), e.g. `6443`."),
    )
    .attribute(Attribute::bool("log").default_bool(false).description("Log packets matching the rule."))
}

pub struct Spec;

#[async_trait]
impl ObjectSpec for Spec {
    type Obj = Rule;
    type Model = RuleModel;
    type Family = ItemFamily;
    const TYPE: &'static str = TYPE;
    const WHAT: &'static str = "firewall rule";
    const NOUN: &'static str = "rule";
    const SORT_LIST: bool = false;
    const SKIP_UNREADABLE: bool = true;

    fn schema() -> Schema {
        schema()
    }
    fn id(m: &RuleModel) -> &Tf<String> {
        &m.id
    }
    fn set_id(m: &mut RuleModel, id: String) {
        m.id = Tf::Known(id);
    }
    fn to_obj(m: &RuleModel) -> Result<Rule, Diagnostics> {
        Ok(to_rule(m))
    }
    fn from_obj(uuid: Uuid, o: &Rule, prior: Option<&RuleModel>) -> RuleModel {
        from_rule(uuid, o, prior)
    }

    fn validate(config: &RuleModel, diags: &mut Diagnostics) {
        let proto = config.protocol.known().map(|s| s.to_ascii_uppercase());
        let ports = config.source_port.is_known() || config.destination_port.is_known();
        if ports
            && proto
                .as_deref()
                .is_some_and(|p| !matches!(p, "TCP" | "UDP" | "TCP/UDP"))
        {
            diags.push(
                Diagnostic::error(
                    "Ports need protocol TCP, UDP or TCP/UDP",
                    "Set `protocol = \"TCP\"` (or UDP, TCP/UDP), or remove the ports.",
                )
                .at(attr("protocol")),
            );
        }
    }
    /// Interfaces, and interface networks used as source or destination, must exist on the box.
    async fn plan_check(
        _ctx: &Context,
        c: &Client,
        plan: &Plan<RuleModel>,
    ) -> Result<(), Diagnostics> {
        let Some(ifaces) = set_known(&plan.planned.interfaces) else {
            return Ok(());
        };
        if let Ok(known) = c.vips().interfaces().await {
            let unknown: Vec<&String> = ifaces.iter().filter(|i| !known.contains_key(*i)).collect();
            let names = || known.keys().cloned().collect::<Vec<_>>().join(", ");
            if !unknown.is_empty() {
                return Err(Diagnostic::error(
                    "Unknown interface",
                    format!(
                        "The firewall has no interface {unknown:?}; known: {}.",
                        names()
                    ),
                )
                .at(attr("interfaces"))
                .into());
            }
            // Interface networks (`opt1`) and addresses (`opt1ip`) are valid sources/destinations only for
            // interfaces the box has (core's NetworkAliasField); anything else is an address or an alias name.
            for (field, value) in [
                ("source", &plan.planned.source),
                ("destination", &plan.planned.destination),
            ] {
                let Some(v) = value.known() else { continue };
                let base = v.strip_suffix("ip").unwrap_or(v);
                if looks_like_interface(base) && !known.contains_key(base) {
                    return Err(Diagnostic::error(
                        "Unknown interface network",
                        format!(
                            "{v:?} names an interface network the firewall does not have; known interfaces: {}.",
                            names()
                        ),
                    )
                    .at(attr(field))
                    .into());
                }
            }
        }
        Ok(())
    }

    async fn prepare(c: &Client, plan: &mut RuleModel) -> Result<(), Diagnostics> {
        if !plan.sequence.is_known() {
            // Append like the UI does (max + 100). Chosen here rather than left to OPNsense because an upsert by UUID
            // does not get the add-time default on every version.
            let all = c
                .items::<Rule>()
                .list()
                .await
                .map_err(|e| diags(e, "Could not list the firewall rules"))?;
            let max = all
                .iter()
                .filter_map(|(_, r)| r.as_ref().ok().and_then(|r| r.sequence))
                .max()
                .unwrap_or(0);
            plan.sequence = Tf::Known(i64::from((max + 100).min(999_999)));
        }
        Ok(())
    }

    /// By description.
    async fn find(c: &Client, id: &str) -> Result<Uuid, Diagnostics> {
        let all = c
            .items::<Rule>()
            .list()
            .await
            .map_err(|e| diags(e, "Could not list the rules"))?;
        let hits: Vec<Uuid> = all
            .iter()
            .filter(|(_, r)| {
                r.as_ref()
                    .is_ok_and(|r| r.description.as_deref() == Some(id.trim()))
            })
            .map(|(u, _)| *u)
            .collect();
        single_match(
            &hits,
            Diagnostic::error(
                "No rule to import",
                format!("No rule has the UUID or description {id:?}."),
            ),
            |_| {
                Diagnostic::error(
                    "Ambiguous rule description",
                    format!("Several rules are described {id:?}; import by UUID."),
                )
            },
        )
    }

    fn display_name(uuid: Uuid, r: &Rule) -> Option<String> {
        Some(r.description.clone().unwrap_or_else(|| uuid.to_string()))
    }

    fn list_description() -> String {
        "Lists the firewall rules managed through the MVC API (legacy and automatic rules are left out).".into()
    }

    fn plural() -> String {
        "rules".into()
    }
}

/// OPNsense's interface keys: `lan`, `wan` and `opt<N>`.
fn looks_like_interface(s: &str) -> bool {
    s == "lan"
        || s == "wan"
        || s.strip_prefix("opt")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

pub fn register(r: &mut Registry) {
    register_object::<Spec>(r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec;

    #[test]
    fn round_trip() {
        let m = RuleModel {
            id: Tf::Known(Uuid::nil().to_string()),
            description: Tf::Known("workers to k3s API".into()),
            enabled: Tf::Known(true),
            sequence: Tf::Known(100),
            action: Tf::Known("pass".into()),
            quick: Tf::Known(true),
            interfaces: set_of(["opt1".to_string()]),
            direction: Tf::Known("in".into()),
            ip_protocol: Tf::Known("inet".into()),
            protocol: Tf::Known("TCP".into()),
            source: Tf::Known("opt1".into()),
            source_not: Tf::Known(false),
            source_port: Tf::Null,
            destination: Tf::Known("K3s_Control_Plane_Loadbalancer".into()),
            destination_not: Tf::Known(false),
            destination_port: Tf::Known("6443".into()),
            log: Tf::Known(false),
        };
        assert_eq!(from_rule(Uuid::nil(), &to_rule(&m), Some(&m)), m);
        let v = codec::to_value(&m, &schema().value_type()).unwrap();
        assert_eq!(codec::from_value::<RuleModel>(&v).unwrap(), m);
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }
}
