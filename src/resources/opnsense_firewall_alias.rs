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

fn check_alias_name(s: &str) -> Result<(), String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && !(s.starts_with('_') && s.len() == 1);
    if ok {
        Ok(())
    } else {
        Err("Use up to 32 letters, digits and `_`, starting with a letter or `_` (e.g. \"K3s_Control_Plane\").".into())
    }
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
            .validate(Validator::string("an alias name", check_alias_name))
            .description("Alias name, unique on the firewall (built-in aliases such as `bogons` included)."),
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
}
