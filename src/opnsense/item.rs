//! Objects that are plain MVC items of one OPNsense service: virtual IPs, firewall aliases, filter rules — and
//! whatever such object comes next.
//!
//! Why one generic shape: these APIs differ only in their paths, their wrapper key and the service action that
//! makes a batch live. Every one answers `get…/<uuid>` with the wrapped object (or `[]` when unknown), `search…` with
//! rows keyed by UUID, takes `set…/<uuid>` as an upsert with a client-chosen UUID and `del…/<uuid>` as an
//! idempotent delete. So an object type is an [`Item`]: its [`Endpoint`] (those paths, as OPNsense spells them)
//! plus its wire conversion, and [`Items`] is the one implementation of the calls. The quirks of one type (the
//! alias `getItem` template, VIP's `network` field) stay with its model in [`super::vip`] / [`super::firewall`].

use std::marker::PhantomData;

use serde_json::{json, Value};
use uuid::Uuid;

use super::error::{DecodeError, Error, Result};
use super::transport::{Idempotency, Transport};
use super::wire::{self, short, Obj};

/// The service action that makes a batch of changes live (one call per batch, see [`super::coalesce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// `interfaces/vip_settings/reconfigure`.
    pub apply: &'static str,
    /// Human name in errors: `virtual IP`.
    pub name: &'static str,
}

/// Where one item type lives in the API. The paths are OPNsense's own; nothing here is derived from names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// `getItem/<uuid>` path without the UUID, e.g. `interfaces/vip_settings/getItem`.
    pub get: &'static str,
    /// `searchItem` path.
    pub search: &'static str,
    /// `setItem/<uuid>` path without the UUID.
    pub set: &'static str,
    /// `delItem/<uuid>` path without the UUID.
    pub del: &'static str,
    /// Key the object is wrapped in (`{"vip": {...}}`).
    pub wrapper: &'static str,
    /// Human name in errors: `virtual IP`.
    pub label: &'static str,
    /// The action that makes changes of this type live.
    pub service: Service,
    /// The API exists only from OPNsense 23.1 on: writes run the version preflight, and a failed upsert of an
    /// object that is then absent is reported as unsupported.
    pub needs_23_1: bool,
}

/// A typed item of an [`Endpoint`].
pub trait Item: Sized + Clone + Send + Sync + 'static {
    const ENDPOINT: Endpoint;
    /// `(wire field, Terraform attribute)` for every managed field: used to place validation errors.
    const FIELDS: &'static [(&'static str, &'static str)];
    fn from_wire(o: &Obj) -> std::result::Result<Self, DecodeError>;
    fn to_wire(&self) -> Obj;
    /// Whether a `get` answer is an object (some endpoints answer a blank template for an unknown UUID).
    fn exists(_o: &Obj) -> bool {
        true
    }
    /// The Terraform attribute for a wire field name.
    fn attribute_of(field: &str) -> Option<&'static str> {
        Self::FIELDS
            .iter()
            .find(|(w, _)| *w == field)
            .map(|(_, a)| *a)
    }
}

/// The calls of one item type. Writes here are saved, not live: [`super::Client::item_put`] adds the go-live step.
#[derive(Debug, Clone)]
pub struct Items<T> {
    pub(crate) t: Transport,
    pub(crate) _of: PhantomData<fn() -> T>,
}

impl<T: Item> Items<T> {
    pub(crate) fn new(t: Transport) -> Self {
        Items {
            t,
            _of: PhantomData,
        }
    }

    /// One object, `Ok(None)` when OPNsense does not have it.
    pub async fn get(&self, uuid: Uuid) -> Result<Option<T>> {
        let ep = T::ENDPOINT;
        let path = format!("{}/{uuid}", ep.get);
        let body = self.t.get(&path).await?;
        match wire::unwrap_object(&path, &body, ep.wrapper)? {
            Some(o) if T::exists(o) => T::from_wire(o).map(Some).map_err(|e| Error::Decode {
                path,
                detail: e.to_string(),
            }),
            _ => Ok(None),
        }
    }

    /// Every object (one search call), each decoded on its own.
    pub async fn list(&self) -> Result<Vec<(Uuid, Result<T>)>> {
        let path = T::ENDPOINT.search;
        let body = self.t.get(path).await?;
        Ok(rows(path, &body)?
            .into_iter()
            .map(|(u, o)| {
                (
                    u,
                    T::from_wire(o).map_err(|e| Error::Decode {
                        path: path.into(),
                        detail: e.to_string(),
                    }),
                )
            })
            .collect())
    }

    /// Create or update with a client-chosen UUID (upsert).
    pub async fn put(&self, uuid: Uuid, obj: &T) -> Result<()> {
        let ep = T::ENDPOINT;
        let path = format!("{}/{uuid}", ep.set);
        let body = json!({ ep.wrapper: obj.to_wire() });
        let res = self
            .t
            .post(&path, Some(&body), Idempotency::Idempotent)
            .await?;
        match wire::interpret_save(&path, ep.wrapper, &res, &T::attribute_of) {
            Err(Error::Failed { .. }) if ep.needs_23_1 && self.get(uuid).await?.is_none() => {
                Err(Error::Unsupported(format!(
                    "{} {uuid} could not be created with a client-chosen UUID (needs OPNsense 23.1 or later)",
                    ep.label
                )))
            }
            other => other.map(|_| ()),
        }
    }

    /// Delete; `Ok(false)` when it was already gone.
    pub async fn delete(&self, uuid: Uuid) -> Result<bool> {
        let ep = T::ENDPOINT;
        del(&self.t, &format!("{}/{uuid}", ep.del), ep.label, uuid).await
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
