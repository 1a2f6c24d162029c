//! `homelab_opnsense_vip`: a virtual IP (Interfaces › Virtual IPs): IP alias, CARP or proxy ARP.
//!
//! Every write carries the address (OPNsense blanks it otherwise), changes are applied with one coalesced
//! `reconfigure` per batch, the interface is checked against the box's interfaces at plan time, and a CARP VIP
//! without `vhid` gets the box's first unused one. OPNsense can change every field in place, so nothing forces
//! replacement. The CARP password comes in two forms: `password` is stored in state (sensitive; the Terraform 1.0.3
//! path): OPNsense returns it in clear text on read, which is what lets drift on it be detected. `password_wo` +
//! `password_wo_version` (Terraform >= 1.11) keep it out of plan and state with the framework's write-only
//! machinery (the same as `token_wo` on the k3s resources); then it is never read back, and raising the version is
//! what writes it again.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::opnsense_common::*;
use super::opnsense_object::*;
use crate::framework::*;
use crate::opnsense::vip::{Vip, VipMode};
use crate::opnsense::wire::WireEnum;
use crate::opnsense::Client;

pub const TYPE: &str = "homelab_opnsense_vip";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VipModel {
    pub id: Tf<String>,
    pub interface: Tf<String>,
    pub mode: Tf<String>,
    pub address: Tf<String>,
    pub vhid: Tf<i64>,
    pub password: Tf<String>,
    #[serde(default)]
    pub password_wo: Tf<String>,
    #[serde(default)]
    pub password_wo_version: Tf<i64>,
    pub advbase: Tf<i64>,
    pub advskew: Tf<i64>,
    pub gateway: Tf<String>,
    pub noexpand: Tf<bool>,
    pub nobind: Tf<bool>,
    pub description: Tf<String>,
}

fn check_cidr(s: &str) -> Result<(), String> {
    let fix = || format!("Use address/prefix, e.g. \"10.0.3.100/32\" (got {s:?}).");
    let (a, b) = s.split_once('/').ok_or_else(fix)?;
    let ip: IpAddr = a.parse().map_err(|_| fix())?;
    let bits: u8 = b.parse().map_err(|_| fix())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits == 0 || bits > max {
        return Err(fix());
    }
    Ok(())
}

fn to_vip(m: &VipModel) -> Vip {
    Vip {
        interface: m.interface.known().cloned().unwrap_or_default(),
        mode: m
            .mode
            .known()
            .and_then(|s| VipMode::from_wire(s))
            .unwrap_or(VipMode::IpAlias),
        network: m.address.known().cloned().unwrap_or_default(),
        gateway: opt_str(&m.gateway),
        noexpand: m.noexpand.known().copied().unwrap_or(false),
        nobind: m.nobind.known().copied().unwrap_or(false),
        password: opt_str(&m.password).or_else(|| opt_str(&m.password_wo)),
        vhid: opt_num(&m.vhid),
        advbase: opt_num(&m.advbase),
        advskew: opt_num(&m.advskew),
        description: opt_str(&m.description),
    }
}

fn from_vip(uuid: Uuid, v: &Vip, prior: Option<&VipModel>) -> VipModel {
    let write_only = prior.is_some_and(|p| uses_write_only(&p.password, &p.password_wo_version));
    VipModel {
        id: Tf::Known(uuid.to_string()),
        interface: Tf::Known(v.interface.clone()),
        mode: Tf::Known(v.mode.as_wire().to_string()),
        address: keep_spelling(prior.map(|p| &p.address), Some(v.network.clone())),
        vhid: tf_num(v.vhid),
        password: if write_only {
            Tf::Null
        } else {
            tf_opt(v.password.clone())
        },
        password_wo: Tf::Null,
        password_wo_version: prior.map_or(Tf::Null, |p| p.password_wo_version),
        advbase: tf_num(v.advbase),
        advskew: tf_num(v.advskew),
        gateway: keep_spelling(prior.map(|p| &p.gateway), v.gateway.clone()),
        noexpand: Tf::Known(v.noexpand),
        nobind: Tf::Known(v.nobind),
        description: tf_opt(v.description.clone()),
    }
}

pub fn schema() -> Schema {
    Schema::new(
        "A virtual IP on OPNsense (Interfaces › Virtual IPs): an extra address on an interface, as a plain IP alias, \
         a CARP address shared with a peer firewall, or proxy ARP. Changes are applied right away (one \
         reconfigure per batch of VIP changes).",
    )
    .attribute(id_attribute("virtual IP"))
    .attribute(
        Attribute::string("interface")
            .required()
            .description(
                "Interface key as OPNsense names it: `lan`, `wan`, `opt1`, … (see the `homelab_opnsense_interfaces` \
                 data source). Checked against the firewall at plan time.",
            ),
    )
    .attribute(
        Attribute::string("mode")
            .default_string("ipalias")
            .validate(Validator::one_of(&["ipalias", "carp", "proxyarp"]))
            .description(
                "`ipalias` (default), `carp` (needs `password` or `password_wo`; `vhid` is picked if unset) or \
                 `proxyarp`.",
            ),
    )
    .attribute(
        Attribute::string("address")
            .required()
            .validate(Validator::string("an address with prefix length", check_cidr))
            .description("Address with prefix length, e.g. `10.0.3.100/32` (the interface's subnet length for CARP)."),
    )
    .attribute(
        Attribute::number("vhid")
            .optional_computed()
            .use_state_for_unknown()
            .validate(Validator::int_between(1, 255))
            .description("CARP virtual host id 1..255, unique per interface. Unset for CARP: the firewall's first \
                          unused id is taken. Null for other modes."),
    )
    .attribute(
        Attribute::string("password")
            .optional()
            .sensitive()
            .description(
                "CARP password (`mode = \"carp\"` needs it or `password_wo`). Stored in state, marked sensitive: \
                 the Terraform 1.0.3 path. Read back from the firewall, so a change made there shows in the plan.",
            ),
    )
    .attribute(
        Attribute::string("password_wo")
            .optional()
            .sensitive()
            .write_only()
            .validate(Validator::not_empty())
            .description(
                "CARP password, write-only (Terraform 1.11 or newer): sent to the firewall but never stored in plan \
                 or state and never read back. Set exactly one of `password` and `password_wo`; with \
                 `password_wo` set `password_wo_version` too.",
            ),
    )
    .attribute(Attribute::number("password_wo_version").optional().description(
        "Required with `password_wo`. Terraform cannot compare a write-only value, so a change of this number is \
         what sends `password_wo` to the firewall again.",
    ))
    .attribute(
        Attribute::number("advbase")
            .default_int(1)
            .validate(Validator::int_between(1, 254))
            .description("CARP advertisement base in seconds."),
    )
    .attribute(
        Attribute::number("advskew")
            .default_int(0)
            .validate(Validator::int_between(0, 254))
            .description("CARP advertisement skew (higher = less preferred master)."),
    )
    .attribute(Attribute::string("gateway").optional().description("Gateway for the VIP (rarely needed)."))
    .attribute(
        Attribute::bool("noexpand")
            .default_bool(false)
            .description("Proxy ARP only: do not expand the subnet into single addresses."),
    )
    .attribute(
        Attribute::bool("nobind")
            .default_bool(false)
            .description("Do not let services bind to this address automatically."),
    )
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
    type Obj = Vip;
    type Model = VipModel;
    type Family = ItemFamily;
    const TYPE: &'static str = TYPE;
    const WHAT: &'static str = "virtual IP";
    const NOUN: &'static str = "virtual IP";
    const SORT_LIST: bool = false;

    fn schema() -> Schema {
        schema()
    }
    fn id(m: &VipModel) -> &Tf<String> {
        &m.id
    }
    fn set_id(m: &mut VipModel, id: String) {
        m.id = Tf::Known(id);
    }
    fn to_obj(m: &VipModel) -> Result<Vip, Diagnostics> {
        Ok(to_vip(m))
    }
    fn from_obj(uuid: Uuid, o: &Vip, prior: Option<&VipModel>) -> VipModel {
        from_vip(uuid, o, prior)
    }

    fn validate(config: &VipModel, diags: &mut Diagnostics) {
        let carp = config.mode.known().map(String::as_str) == Some("carp");
        check_secret_choice(
            SecretPair {
                plain: ("password", &config.password),
                write_only: ("password_wo", &config.password_wo),
                version: ("password_wo_version", &config.password_wo_version),
            },
            carp,
            "CARP needs a password",
            diags,
        );
        if config.mode.known().is_some_and(|m| m != "carp") && config.vhid.is_known() {
            diags.push(
                Diagnostic::error(
                    "vhid is for CARP",
                    "Remove `vhid` or set `mode = \"carp\"`.",
                )
                .at(attr("vhid")),
            );
        }
    }

    fn adjust_plan(plan: &mut Plan<VipModel>) {
        // vhid is only computed for CARP; other modes have none.
        if plan.planned.mode.known().is_some_and(|m| m != "carp") && plan.config.vhid.is_null() {
            plan.planned.vhid = Tf::Null;
        }
    }

    /// The interface must exist on the box.
    async fn plan_check(
        _ctx: &Context,
        c: &Client,
        plan: &Plan<VipModel>,
    ) -> Result<(), Diagnostics> {
        let Some(iface) = plan.planned.interface.known() else {
            return Ok(());
        };
        if let Ok(ifaces) = c.vips().interfaces().await {
            if !ifaces.contains_key(iface) {
                let known = ifaces
                    .iter()
                    .map(|(k, v)| format!("{k} ({v})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(Diagnostic::error(
                    "Unknown interface",
                    format!("The firewall has no interface {iface:?}. Known interfaces: {known}."),
                )
                .at(attr("interface"))
                .into());
            }
        }
        Ok(())
    }

    /// A CARP VIP without `vhid` gets the box's first unused one.
    async fn prepare(c: &Client, plan: &mut VipModel) -> Result<(), Diagnostics> {
        if plan.mode.known().map(String::as_str) == Some("carp") && !plan.vhid.is_known() {
            let vhid = c
                .vips()
                .unused_vhid()
                .await
                .map_err(|e| diags(e, "Could not pick a free CARP vhid"))?;
            plan.vhid = Tf::Known(vhid.into());
        }
        Ok(())
    }

    /// By address (`10.0.3.100/32` or `10.0.3.100`) or description.
    async fn find(c: &Client, id: &str) -> Result<Uuid, Diagnostics> {
        let all = c
            .items::<Vip>()
            .list()
            .await
            .map_err(|e| diags(e, "Could not list the virtual IPs"))?;
        let hits: Vec<Uuid> = all
            .iter()
            .filter(|(_, v)| {
                v.as_ref().is_ok_and(|v| {
                    v.network == id
                        || v.network.split('/').next() == Some(id)
                        || v.description.as_deref() == Some(id)
                })
            })
            .map(|(u, _)| *u)
            .collect();
        single_match(
            &hits,
            Diagnostic::error(
                "No virtual IP to import",
                format!("No virtual IP has the UUID, address or description {id:?}."),
            ),
            |_| {
                Diagnostic::error(
                    "Ambiguous virtual IP",
                    format!("Several virtual IPs match {id:?}; import by UUID."),
                )
            },
        )
    }

    fn display_name(_uuid: Uuid, v: &Vip) -> Option<String> {
        Some(match &v.description {
            Some(d) => format!("{} ({d})", v.network),
            None => v.network.clone(),
        })
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
    fn cidr_rules() {
        assert!(check_cidr("10.0.3.100/32").is_ok());
        assert!(check_cidr("fd00::1/64").is_ok());
        assert!(check_cidr("10.0.3.100").is_err());
        assert!(check_cidr("10.0.3.100/33").is_err());
        assert!(check_cidr("host/24").is_err());
    }

    #[test]
    fn round_trip() {
        let m = VipModel {
            id: Tf::Known(Uuid::nil().to_string()),
            interface: Tf::Known("opt1".into()),
            mode: Tf::Known("ipalias".into()),
            address: Tf::Known("10.0.3.100/32".into()),
            vhid: Tf::Null,
            password: Tf::Null,
            password_wo: Tf::Null,
            password_wo_version: Tf::Null,
            advbase: Tf::Known(1),
            advskew: Tf::Known(0),
            gateway: Tf::Null,
            noexpand: Tf::Known(false),
            nobind: Tf::Known(false),
            description: Tf::Known("k3s control plane".into()),
        };
        assert_eq!(from_vip(Uuid::nil(), &to_vip(&m), Some(&m)), m);
        let v = codec::to_value(&m, &schema().value_type()).unwrap();
        assert_eq!(codec::from_value::<VipModel>(&v).unwrap(), m);
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }

    fn carp(password: Tf<String>, wo: Tf<String>, version: Tf<i64>) -> VipModel {
        VipModel {
            mode: Tf::Known("carp".into()),
            password,
            password_wo: wo,
            password_wo_version: version,
            ..VipModel::default()
        }
    }

    fn problems(m: &VipModel) -> Vec<String> {
        let mut d = Diagnostics::new();
        Spec::validate(m, &mut d);
        d.iter().map(|d| d.summary.clone()).collect()
    }

    #[test]
    fn one_password_form_and_its_version() {
        let pw = || Tf::Known("s3cret".to_string());
        assert!(problems(&carp(pw(), Tf::Null, Tf::Null)).is_empty());
        assert!(problems(&carp(Tf::Null, pw(), Tf::Known(1))).is_empty());
        assert_eq!(
            problems(&carp(Tf::Null, Tf::Null, Tf::Null)),
            ["CARP needs a password"]
        );
        assert_eq!(
            problems(&carp(pw(), pw(), Tf::Known(1))),
            ["Two forms of password"]
        );
        assert_eq!(
            problems(&carp(Tf::Null, pw(), Tf::Null)),
            ["password_wo_version is required with password_wo"]
        );
    }

    #[test]
    fn the_write_only_password_is_never_read_back() {
        let m = carp(Tf::Null, Tf::Known("s3cret".into()), Tf::Known(2));
        let v = to_vip(&m);
        assert_eq!(v.password.as_deref(), Some("s3cret"));
        let back = from_vip(Uuid::nil(), &v, Some(&m));
        assert_eq!(back.password, Tf::Null);
        assert_eq!(back.password_wo, Tf::Null);
        assert_eq!(back.password_wo_version, Tf::Known(2));
        // The 1.0.3 form reads it back (drift on the password shows).
        let plain = carp(Tf::Known("old".into()), Tf::Null, Tf::Null);
        assert_eq!(
            from_vip(Uuid::nil(), &v, Some(&plain)).password,
            Tf::Known("s3cret".into())
        );
    }
}
