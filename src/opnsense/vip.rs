//! Interfaces › Virtual IPs (`interfaces/vip_settings/*`, OPNsense ≥ 23.1): IP aliases and CARP.
//!
//! Quirks handled here (see `opnsense-api.md` §3): the API takes `network` (`addr/bits`) instead of
//! `subnet`+`subnet_bits` and every write must carry it; `getItem` answers `network`, search rows answer the two
//! parts; validation errors on the parts come back under `vip.network`; unknown UUID → `[]`. The interface list for
//! the `homelab_opnsense_interfaces` data source is read from the blank `getItem` template, which needs only the
//! VIP privilege.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use uuid::Uuid;

use super::error::{DecodeError, Error, Result};
use super::transport::{Idempotency, Transport};
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
    pub const FIELDS: &'static [(&'static str, &'static str)] = &[
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

    pub fn attribute_of(field: &str) -> Option<&'static str> {
        Self::FIELDS
            .iter()
            .find(|(w, _)| *w == field)
            .map(|(_, a)| *a)
    }

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

    pub fn from_wire(o: &Obj) -> std::result::Result<Self, DecodeError> {
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

    pub fn to_wire(&self) -> Obj {
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

/// VIP API calls.
#[derive(Debug, Clone)]
pub struct Vips {
    pub(crate) t: Transport,
}

impl Vips {
    pub async fn get(&self, uuid: Uuid) -> Result<Option<Vip>> {
        let path = format!("interfaces/vip_settings/getItem/{uuid}");
        let body = self.t.get(&path).await?;
        match wire::unwrap_object(&path, &body, "vip")? {
            None => Ok(None),
            Some(o) => Vip::from_wire(o).map(Some).map_err(|e| Error::Decode {
                path,
                detail: e.to_string(),
            }),
        }
    }

    /// Every VIP (one search call).
    pub async fn list(&self) -> Result<Vec<(Uuid, Result<Vip>)>> {
        let path = "interfaces/vip_settings/searchItem";
        let body = self.t.get(path).await?;
        Ok(rows(path, &body)?
            .into_iter()
            .map(|(u, o)| {
                (
                    u,
                    Vip::from_wire(o).map_err(|e| Error::Decode {
                        path: path.into(),
                        detail: e.to_string(),
                    }),
                )
            })
            .collect())
    }

    /// Create or update with a client-chosen UUID (upsert).
    pub async fn put(&self, uuid: Uuid, vip: &Vip) -> Result<()> {
        let path = format!("interfaces/vip_settings/setItem/{uuid}");
        let body = json!({ "vip": vip.to_wire() });
        let res = self
            .t
            .post(&path, Some(&body), Idempotency::Idempotent)
            .await?;
        match wire::interpret_save(&path, "vip", &res, &Vip::attribute_of) {
            Err(Error::Failed { .. }) if self.get(uuid).await?.is_none() => Err(Error::Unsupported(format!(
                "virtual IP {uuid} could not be created with a client-chosen UUID (needs OPNsense 23.1 or later)"
            ))),
            other => other.map(|_| ()),
        }
    }

    pub async fn delete(&self, uuid: Uuid) -> Result<bool> {
        del(
            &self.t,
            &format!("interfaces/vip_settings/delItem/{uuid}"),
            "virtual IP",
            uuid,
        )
        .await
    }

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

    pub async fn reconfigure(&self) -> Result<()> {
        service_ok(&self.t, "interfaces/vip_settings/reconfigure", "virtual IP").await
    }
}

/// Rows of a `search*` answer, keyed by UUID (rows without a UUID, like built-in aliases, are skipped).
pub(crate) fn rows<'a>(path: &str, body: &'a Value) -> Result<Vec<(Uuid, &'a Obj)>> {
    let rows = body
        .get("rows")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Decode {
            path: path.into(),
            detail: "no rows".into(),
        })?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let o = r.as_object()?;
            Some((Uuid::parse_str(o.get("uuid")?.as_str()?).ok()?, o))
        })
        .collect())
}

/// A `del*` call: `deleted` → true, `not found` → false, "in use" → [`Error::InUse`].
pub(crate) async fn del(
    t: &Transport,
    path: &str,
    object: &'static str,
    uuid: Uuid,
) -> Result<bool> {
    match t.post(path, None, Idempotency::Idempotent).await {
        Ok(v) => match v.get("result").and_then(Value::as_str) {
            Some("deleted") => Ok(true),
            Some("not found") => Ok(false),
            _ => Err(Error::Decode {
                path: path.into(),
                detail: format!("expected deleted or not found, got {}", short(&v)),
            }),
        },
        Err(Error::InUse { title, message, .. }) => Err(Error::InUse {
            object,
            uuid: uuid.to_string(),
            title,
            message,
        }),
        // Alias deletes refuse with title "Alias in use" through the same path; other refusals stay as they are.
        Err(e) => Err(e),
    }
}

/// A service action answering `{"status":"ok"}` (any case, trailing newlines allowed).
pub(crate) async fn service_ok(t: &Transport, path: &str, service: &'static str) -> Result<()> {
    let v = t.post(path, None, Idempotency::Idempotent).await?;
    match v.get("status").and_then(Value::as_str) {
        Some(s) if s.trim().eq_ignore_ascii_case("ok") => Ok(()),
        _ => Err(Error::Service {
            service,
            message: short(&v),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::opnsense::fixtures as fx;

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
        let rows = rows("p", &body).unwrap();
        assert_eq!(rows.len(), 3);
        let first = Vip::from_wire(rows[0].1).unwrap();
        assert_eq!(first, v);
        let w = first.to_wire();
        assert_eq!(w["network"], "203.0.113.10/24");
        assert_eq!(w["vhid"], "5");
        assert_eq!(Vip::from_wire(&w).unwrap(), first);
    }
}
