//! Interfaces › Virtual IPs (`interfaces/vip_settings/*`, OPNsense ≥ 23.1): IP aliases and CARP.
//!
//! Quirks handled here (see `opnsense-api.md` §3): the API takes `network` (`addr/bits`) instead of
//! `subnet`+`subnet_bits` and every write must carry it; `getItem` answers `network`, search rows answer the two
//! parts; validation errors on the parts come back under `vip.network`; unknown UUID → `[]`. The interface list for
//! the `homelab_opnsense_interfaces` data source is read from the blank `getItem` template, which needs only the
//! VIP privilege.

use std::collections::BTreeMap;

use serde_json::Value;

use super::error::{DecodeError, Error, Result};
use super::item::{Endpoint, Item, Service};
use super::transport::Transport;
use super::wire::{self, *};

wire_enum! {
    /// VIP mode (`other` was removed in 25.7 and is not offered).
    pub enum VipMode { IpAlias => "ipalias", Carp => "carp", ProxyArp => "proxyarp" }
}

/// One virtual IP.
#[derive(Clone, PartialEq, Eq)]
pub struct Vip {
    pub interface: String,
    pub mode: VipMode,
    /// `address/bits`, e.g. `10.0.3.100/32`.
    pub network: String,
    pub gateway: Option<String>,
    pub noexpand: bool,
    pub nobind: bool,
    /// CARP password (returned in clear text by OPNsense; never formatted by `Debug`).
    pub password: Option<String>,
    pub vhid: Option<u8>,
    pub advbase: Option<u8>,
    pub advskew: Option<u8>,
    pub description: Option<String>,
}

impl std::fmt::Debug for Vip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vip")
            .field("interface", &self.interface)
            .field("mode", &self.mode)
            .field("network", &self.network)
            .field("vhid", &self.vhid)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Vip {
    pub fn ip_alias(interface: &str, network: &str) -> Self {
        Vip {
            interface: interface.into(),
            mode: VipMode::IpAlias,
            network: network.into(),
            gateway: None,
            noexpand: false,
            nobind: false,
            password: None,
            vhid: None,
            advbase: Some(1),
            advskew: Some(0),
            description: None,
        }
    }
}

impl Item for Vip {
    const ENDPOINT: Endpoint = Endpoint {
        get: "interfaces/vip_settings/getItem",
        search: "interfaces/vip_settings/searchItem",
        set: "interfaces/vip_settings/setItem",
        del: "interfaces/vip_settings/delItem",
        wrapper: "vip",
        label: "virtual IP",
        service: Service {
            apply: "interfaces/vip_settings/reconfigure",
            name: "virtual IP",
        },
        needs_23_1: true,
    };
    const FIELDS: &'static [(&'static str, &'static str)] = &[
        ("interface", "interface"),
        ("mode", "mode"),
        ("network", "address"),
        ("subnet", "address"),
        ("subnet_bits", "address"),
        ("gateway", "gateway"),
        ("noexpand", "noexpand"),
        ("nobind", "nobind"),
        ("password", "password"),
        ("vhid", "vhid"),
        ("advbase", "advbase"),
        ("advskew", "advskew"),
        ("descr", "description"),
    ];

    fn from_wire(o: &Obj) -> std::result::Result<Self, DecodeError> {
        let network = match opt_text(o, "network") {
            Some(n) => n,
            None => match (opt_text(o, "subnet"), opt_text(o, "subnet_bits")) {
                (Some(a), Some(b)) => format!("{a}/{b}"),
                (Some(a), None) => a,
                _ => String::new(),
            },
        };
        Ok(Vip {
            interface: selected(o, "interface").unwrap_or_default(),
            mode: enum_or(o, "mode", VipMode::IpAlias)?,
            network,
            gateway: opt_text(o, "gateway"),
            noexpand: boolean(o, "noexpand")?,
            nobind: boolean(o, "nobind")?,
            password: opt_text(o, "password"),
            vhid: opt_int(o, "vhid")?,
            advbase: opt_int(o, "advbase")?,
            advskew: opt_int(o, "advskew")?,
            description: opt_text(o, "descr"),
        })
    }

    fn to_wire(&self) -> Obj {
        let mut m = Obj::new();
        m.insert("interface".into(), enc_text(&self.interface));
        m.insert("mode".into(), enc_enum(&self.mode));
        m.insert("network".into(), enc_text(&self.network));
        m.insert("gateway".into(), enc_opt_text(&self.gateway));
        m.insert("noexpand".into(), enc_bool(self.noexpand));
        m.insert("nobind".into(), enc_bool(self.nobind));
        m.insert("password".into(), enc_opt_text(&self.password));
        m.insert("vhid".into(), enc_opt(&self.vhid));
        m.insert("advbase".into(), enc_opt(&self.advbase));
        m.insert("advskew".into(), enc_opt(&self.advskew));
        m.insert("descr".into(), enc_opt_text(&self.description));
        m
    }
}

/// The VIP calls beyond the generic item ones ([`super::item::Items`]).
#[derive(Debug, Clone)]
pub struct Vips {
    pub(crate) t: Transport,
}

impl Vips {
    /// `getUnusedVhid`.
    pub async fn unused_vhid(&self) -> Result<u8> {
        let path = "interfaces/vip_settings/getUnusedVhid";
        let v = self.t.get(path).await?;
        v.get("vhid")
            .and_then(|x| {
                x.as_u64()
                    .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
            })
            .and_then(|x| u8::try_from(x).ok())
            .ok_or_else(|| Error::Decode {
                path: path.into(),
                detail: format!("no vhid in {}", short(&v)),
            })
    }

    /// Interfaces that can carry a VIP: key (`lan`, `opt1`) → description (`LAN`).
    pub async fn interfaces(&self) -> Result<BTreeMap<String, String>> {
        let path = "interfaces/vip_settings/getItem";
        let body = self.t.get(path).await?;
        let o = wire::unwrap_object(path, &body, "vip")?.ok_or_else(|| Error::Decode {
            path: path.into(),
            detail: "no template".into(),
        })?;
        let mut out = BTreeMap::new();
        if let Some(Value::Object(m)) = o.get("interface") {
            for (k, v) in m {
                if k.is_empty() {
                    continue;
                }
                let label = v
                    .get("value")
                    .and_then(Value::as_str)
                    .unwrap_or(k)
                    .to_string();
                out.insert(k.clone(), label);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::recorded as fx;

    fn sample(name: &str) -> Value {
        fx::json(match name {
            "vip_getItem_carp" => fx::VIP_GET_CARP,
            "vip_searchItem" => fx::VIP_SEARCH,
            other => panic!("no fixture {other}"),
        })
    }

    #[test]
    fn decodes_get_and_search_shapes() {
        let v = Vip::from_wire(sample("vip_getItem_carp")["vip"].as_object().unwrap()).unwrap();
        assert_eq!(v.mode, VipMode::Carp);
        assert_eq!(v.interface, "wan");
        assert_eq!(v.network, "203.0.113.10/24");
        assert_eq!(v.vhid, Some(5));
        assert!(!format!("{v:?}").contains("s3cret"));
        let body = sample("vip_searchItem");
        let rows = crate::opnsense::item::rows("p", &body).unwrap();
        assert_eq!(rows.len(), 3);
        let first = Vip::from_wire(rows[0].1).unwrap();
        assert_eq!(first, v);
        let w = first.to_wire();
        assert_eq!(w["network"], "203.0.113.10/24");
        assert_eq!(w["vhid"], "5");
        assert_eq!(Vip::from_wire(&w).unwrap(), first);
    }
}
