//! `homelab_opnsense_firewall_alias`: a firewall alias (Firewall › Aliases) holding hosts, networks or ports.
//!
//! Content is a set (OPNsense stores it newline-separated and returns it as a map). Names are unique on the box
//! (built-ins like `bogons` included) and OPNsense enforces that itself; renaming is in place (OPNsense rewrites
//! references). Changes are applied with one coalesced `firewall/alias/reconfigure` per batch.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::opnsense_common::*;
use super::opnsense_object::*;
use crate::framework::*;
use crate::opnsense::firewall::{Alias, AliasType};
use crate::opnsense::wire::WireEnum;
use crate::opnsense::Client;

pub const TYPE: &str = "homelab_opnsense_firewall_alias";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AliasModel {
    pub id: Tf<String>,
    pub name: Tf<String>,
    #[serde(rename = "type")]
    pub alias_type: Tf<String>,
    pub content: StrSet,
    pub enabled: Tf<bool>,
    pub description: Tf<String>,
}

fn to_alias(m: &AliasModel) -> Alias {
    Alias {
        name: m.name.known().cloned().unwrap_or_default(),
        enabled: m.enabled.known().copied().unwrap_or(true),
        alias_type: m
            .alias_type
            .known()
            .and_then(|s| AliasType::from_wire(s))
            .unwrap_or(AliasType::Host),
        content: set_known(&m.content).unwrap_or_default(),
        description: opt_str(&m.description),
    }
}

fn from_alias(uuid: Uuid, a: &Alias, prior: Option<&AliasModel>) -> AliasModel {
    AliasModel {
        id: Tf::Known(uuid.to_string()),
        name: Tf::Known(a.name.clone()),
        alias_type: Tf::Known(a.alias_type.as_wire().to_string()),
        content: keep_set_spelling(prior.map(|p| &p.content), a.content.clone()),
        enabled: Tf::Known(a.enabled),
        description: tf_opt(a.description.clone()),
    }
}

/// OPNsense's rule for alias names (core `AliasNameField`): one letter, or 2 to 31 characters of letters, digits
/// and `_` whose first is a letter or `_` and whose second is not `_` after a leading `_`. pf keywords and service
/// names are refused by OPNsense too; that list is OPNsense's and is left to its own validation at apply.
fn check_alias_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let word = |c: &u8| c.is_ascii_alphanumeric() || *c == b'_';
    let ok = match b {
        [] => false,
        [only] => only.is_ascii_alphabetic(),
        [first, second, rest @ ..] => {
            b.len() <= 31
                && (first.is_ascii_alphabetic() && word(second)
                    || *first == b'_' && second.is_ascii_alphanumeric())
                && rest.iter().all(word)
        }
    };
    if ok {
        return Ok(());
    }
    let why = if b.len() > 31 {
        format!("it has {} characters; OPNsense allows at most 31", b.len())
    } else if !b.iter().all(word) {
        "only letters, digits and `_` are allowed".to_string()
    } else {
        "it must start with a letter, or with `_` followed by a letter or digit".to_string()
    };
    Err(format!(
        "OPNsense refuses the alias name {s:?}: {why}. Use 1 to 31 letters, digits and `_` (e.g. \"K3s_Api_Vip\")."
    ))
}

pub fn schema() -> Schema {
    Schema::new(
        "A firewall alias on OPNsense: a named set of hosts, networks or ports that firewall rules (and other \
         aliases) can use.",
    )
    .attribute(id_attribute("alias"))
    .attribute(
        Attribute::string("name")
            .required()
            .validate(Validator::string(
                "an OPNsense alias name (1 to 31 letters, digits and `_`)",
                check_alias_name,
            ))
            .description(
                "Alias name, unique on the firewall (built-in aliases such as `bogons` included): 1 to 31 letters, \
                 digits and `_`, starting with a letter (or `_` and a letter or digit).",
            ),
    )
    .attribute(
        Attribute::string("type")
            .required()
            .validate(Validator::one_of(&["host", "network", "port"]))
            .description("`host` (addresses, ranges, names), `network` (CIDRs) or `port` (ports and ranges)."),
    )
    .attribute(
        Attribute::set("content", Type::String)
            .required()
            .description(
                "The entries: addresses or host names for `host`, CIDRs for `network`, ports or `a:b` ranges for \
                 `port`; other alias names are allowed too.",
            ),
    )
    .attribute(Attribute::bool("enabled").default_bool(true).description("Whether the alias is loaded."))
    .attribute(
        Attribute::string("description")
            .optional()
            .validate(description_validator())
            .description("Free-text description."),
    )
}

pub struct Spec;

#[async_trait]
impl ObjectSpec for Spec {
    type Obj = Alias;
    type Model = AliasModel;
    type Family = ItemFamily;
    const TYPE: &'static str = TYPE;
    const WHAT: &'static str = "firewall alias";
    const NOUN: &'static str = "alias";
    // Types this resource does not manage (url tables, geoip, …) are not listed; neither is what cannot be read.
    const SKIP_UNREADABLE: bool = true;

    fn schema() -> Schema {
        schema()
    }
    fn id(m: &AliasModel) -> &Tf<String> {
        &m.id
    }
    fn set_id(m: &mut AliasModel, id: String) {
        m.id = Tf::Known(id);
    }
    fn to_obj(m: &AliasModel) -> Result<Alias, Diagnostics> {
        Ok(to_alias(m))
    }
    fn from_obj(uuid: Uuid, o: &Alias, prior: Option<&AliasModel>) -> AliasModel {
        from_alias(uuid, o, prior)
    }

    fn validate(config: &AliasModel, diags: &mut Diagnostics) {
        let (Some(t), Some(items)) = (config.alias_type.known(), set_known(&config.content)) else {
            return;
        };
        for item in items {
            let ok = match t.as_str() {
                "port" => {
                    item.split(':').all(|p| p.parse::<u16>().is_ok())
                        || check_alias_name(&item).is_ok()
                }
                "network" => {
                    let addr = item.trim_start_matches('!');
                    addr.split_once('/')
                        .map(|(a, b)| {
                            a.parse::<std::net::IpAddr>().is_ok() && b.parse::<u8>().is_ok()
                        })
                        .unwrap_or(false)
                        || addr.parse::<std::net::IpAddr>().is_ok()
                        || check_alias_name(addr).is_ok()
                }
                _ => true,
            };
            if !ok {
                diags.push(
                    Diagnostic::error(
                        "Invalid alias entry",
                        format!("{item:?} is not valid in a {t} alias."),
                    )
                    .at(attr("content")),
                );
            }
        }
    }
    /// Duplicate names are refused by OPNsense too, but only at apply; say it at plan where we can see it.
    async fn plan_check(
        _ctx: &Context,
        c: &Client,
        plan: &Plan<AliasModel>,
    ) -> Result<(), Diagnostics> {
        let Some(name) = plan.planned.name.known() else {
            return Ok(());
        };
        let own = plan.prior.as_ref().and_then(|p| p.id.known().cloned());
        if let Ok(Some(u)) = c.aliases().uuid_of(name).await {
            if Some(u.to_string()) != own {
                return Err(Diagnostic::error(
                    "Duplicate alias name",
                    format!("An alias named {name:?} already exists (id {u}); import it or choose another name."),
                )
                .at(attr("name"))
                .into());
            }
        }
        Ok(())
    }

    /// By name.
    async fn find(c: &Client, id: &str) -> Result<Uuid, Diagnostics> {
        c.aliases()
            .uuid_of(id.trim())
            .await
            .map_err(|e| diags(e, "Could not look the alias up"))?
            .ok_or_else(|| {
                Diagnostics::from(Diagnostic::error(
                    "No alias to import",
                    format!("No alias has the UUID or name {id:?}."),
                ))
            })
    }

    fn display_name(_uuid: Uuid, a: &Alias) -> Option<String> {
        matches!(
            a.alias_type,
            AliasType::Host | AliasType::Network | AliasType::Port
        )
        .then(|| a.name.clone())
    }

    fn list_description() -> String {
        "Lists the user-defined firewall aliases (built-ins are left out).".into()
    }

    fn plural() -> String {
        "aliases".into()
    }
}

pub fn register(r: &mut Registry) {
    register_object::<Spec>(r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec;

    #[test]
    fn names_and_round_trip() {
        assert!(check_alias_name("K3s_Control_Plane_Loadbalancer").is_ok());
        assert!(check_alias_name("1abc").is_err());
        assert!(check_alias_name("a-b").is_err());
        // OPNsense's AliasNameField: at most 31 characters; `_` may lead only before a letter or digit.
        assert!(check_alias_name(&"a".repeat(31)).is_ok());
        let e = check_alias_name(&"a".repeat(32)).unwrap_err();
        assert!(
            e.contains("32 characters") && e.contains("at most 31"),
            "{e}"
        );
        assert!(
            check_alias_name("a").is_ok()
                && check_alias_name("_a").is_ok()
                && check_alias_name("a_").is_ok()
        );
        assert!(
            check_alias_name("_").is_err()
                && check_alias_name("__a").is_err()
                && check_alias_name("").is_err()
        );
        assert!(check_alias_name("1abc")
            .unwrap_err()
            .contains("start with a letter"));
        let m = AliasModel {
            id: Tf::Known(Uuid::nil().to_string()),
            name: Tf::Known("K3s_Control_Plane".into()),
            alias_type: Tf::Known("host".into()),
            content: set_of(["10.0.3.100".to_string()]),
            enabled: Tf::Known(true),
            description: Tf::Null,
        };
        assert_eq!(from_alias(Uuid::nil(), &to_alias(&m), Some(&m)), m);
        let v = codec::to_value(&m, &schema().value_type()).unwrap();
        assert_eq!(codec::from_value::<AliasModel>(&v).unwrap(), m);
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }

    /// The k3s-ha module derives alias names from `name_prefix`: with the longest prefix its validation allows
    /// (21 characters), every derived name must still be one OPNsense accepts.
    #[test]
    fn the_modules_alias_names_fit_for_every_allowed_prefix() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/modules/k3s-ha");
        let vars = std::fs::read_to_string(format!("{dir}/variables.tf")).unwrap();
        assert!(
            vars.contains(r#"regex("^[A-Za-z][A-Za-z0-9_-]{0,20}$", var.name_prefix)"#),
            "the prefix rule changed: update this test"
        );
        let main = std::fs::read_to_string(format!("{dir}/main.tf")).unwrap();
        let mut seen = 0;
        for block in main
            .split("resource \"homelab_opnsense_firewall_alias\"")
            .skip(1)
        {
            let line = block
                .lines()
                .find(|l| l.trim_start().starts_with("name "))
                .unwrap();
            let template = line.split('"').nth(1).unwrap();
            for prefix in ["k", "k3s", "a-very-long-prefix-21"] {
                assert_eq!(prefix.len().min(21), prefix.len());
                let name = template.replace("${local.alias_prefix}", &prefix.replace('-', "_"));
                assert!(
                    check_alias_name(&name).is_ok(),
                    "{name}: {:?}",
                    check_alias_name(&name)
                );
            }
            seen += 1;
        }
        assert_eq!(seen, 2, "the module's aliases");
    }
}
