//! System › High Availability › Settings (`core/hasync/*`, OPNsense ≥ 24.7): the HA sync peer and what is synced.
//!
//! A singleton MVC model (`Hasync.xml`): `set` then `reconfigure` (which applies pfsync). The sync itself is
//! `core/hasync_status/restart/<service>`: OPNsense copies the chosen sections to the peer (`xmlrpc.php`,
//! replacing them there) and then restarts that service on the peer; a plain sync alone would leave the peer's
//! haproxy on its old configuration (opnsense/core #7498). The password is returned in clear text on read.

use std::collections::BTreeSet;

use serde_json::Value;

use super::error::Result;
use super::transport::{Idempotency, Transport};
use super::wire::{self, *};

/// The HA sync settings this provider manages.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct HaSync {
    /// `synchronizetoip`: the peer's address or URL (empty on the secondary).
    pub peer: String,
    pub username: Option<String>,
    /// Never formatted by `Debug`.
    pub password: Option<String>,
    /// `syncitems`: `haproxy`, `aliases`, `rules`, `virtualip`, …
    pub items: BTreeSet<String>,
    pub disable_preempt: bool,
    pub pfsync_interface: Option<String>,
    pub pfsync_peer: Option<String>,
}

impl std::fmt::Debug for HaSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HaSync")
            .field("peer", &self.peer)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("items", &self.items)
            .finish_non_exhaustive()
    }
}

impl HaSync {
    fn from_wire(o: &Obj) -> std::result::Result<Self, super::error::DecodeError> {
        Ok(HaSync {
            peer: opt_text(o, "synchronizetoip").unwrap_or_default(),
            username: opt_text(o, "username"),
            password: opt_text(o, "password"),
            items: selected_all(o, "syncitems").into_iter().collect(),
            disable_preempt: boolean(o, "disablepreempt")?,
            pfsync_interface: selected(o, "pfsyncinterface"),
            pfsync_peer: opt_text(o, "pfsyncpeerip"),
        })
    }

    fn to_wire(&self) -> Value {
        let mut m = Obj::new();
        m.insert("synchronizetoip".into(), enc_text(&self.peer));
        m.insert("username".into(), enc_opt_text(&self.username));
        m.insert("password".into(), enc_opt_text(&self.password));
        m.insert("syncitems".into(), enc_list(self.items.iter()));
        m.insert("disablepreempt".into(), enc_bool(self.disable_preempt));
        m.insert(
            "pfsyncinterface".into(),
            enc_opt_text(&self.pfsync_interface),
        );
        m.insert("pfsyncpeerip".into(), enc_opt_text(&self.pfsync_peer));
        serde_json::json!({ "hasync": Value::Object(m) })
    }

    fn attribute_of(field: &str) -> Option<&'static str> {
        Some(match field {
            "synchronizetoip" => "peer",
            "username" => "username",
            "password" => "password",
            "syncitems" => "sync_items",
            "disablepreempt" => "disable_preempt",
            "pfsyncinterface" => "pfsync_interface",
            "pfsyncpeerip" => "pfsync_peer",
            _ => return None,
        })
    }
}

/// The HA calls.
#[derive(Debug, Clone)]
pub struct HaSyncApi {
    pub(crate) t: Transport,
}

impl HaSyncApi {
    /// `core/hasync/get`.
    pub async fn get(&self) -> Result<HaSync> {
        let path = "core/hasync/get";
        let body = self.t.get(path).await?;
        let o = wire::unwrap_object(path, &body, "hasync")?.ok_or_else(|| {
            super::error::Error::Decode {
                path: path.into(),
                detail: "no hasync settings".into(),
            }
        })?;
        HaSync::from_wire(o).map_err(|e| super::error::Error::Decode {
            path: path.into(),
            detail: e.to_string(),
        })
    }

    /// `core/hasync/set`, then `core/hasync/reconfigure`.
    pub async fn put(&self, s: &HaSync) -> Result<()> {
        let path = "core/hasync/set";
        let res = self
            .t
            .post(path, Some(&s.to_wire()), Idempotency::Idempotent)
            .await?;
        wire::interpret_save(path, "HA sync settings", &res, &HaSync::attribute_of)?;
        self.t
            .post("core/hasync/reconfigure", None, Idempotency::Idempotent)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_round_trip_and_no_password_in_debug() {
        let s = HaSync {
            peer: "http://10.0.9.2".into(),
            username: Some("hasync".into()),
            password: Some("s3cret".into()),
            items: ["haproxy".to_string(), "virtualip".to_string()].into(),
            ..HaSync::default()
        };
        let w = s.to_wire();
        assert_eq!(w["hasync"]["syncitems"], "haproxy,virtualip");
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
