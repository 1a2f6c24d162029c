//! The client resources use: one per provider instance, shared by every resource of a Terraform run.
//!
//! It owns the transport, the HAProxy whole-model cache and one reconfigure coalescer per service, and offers the
//! "write then go live" operations resources need, so no resource has to know about batching, configtest or
//! reverting a change that did not pass.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::coalesce::{Change, Coalescer, Deployer, Revert, Target, Timing};
use super::error::{Error, Result};
use super::firewall::{Alias, Aliases, Rule, Rules};
use super::haproxy::{configtest_failed, Haproxy, HaproxyObject, Kind, ModelCache, Settings};
use super::transport::{ClientConfig, Idempotency, Transport};
use super::vip::{Vip, Vips};
use super::wire::{flatten_for_set, short};

/// Versions read once per client (`core/firmware/info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Versions {
    /// e.g. `26.7.2`; `None` when the endpoint is not readable with this key.
    pub opnsense: Option<String>,
    /// e.g. `5.1`; `None` when unknown.
    pub os_haproxy: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Client {
    t: Transport,
    haproxy: Haproxy,
    haproxy_co: Coalescer,
    vip_co: Coalescer,
    alias_co: Coalescer,
    filter_co: Coalescer,
    versions: Arc<OnceCell<Versions>>,
}

impl Client {
    pub fn new(cfg: &ClientConfig) -> Result<Self> {
        Self::with_timing(cfg, Timing::default())
    }

    pub fn with_timing(cfg: &ClientConfig, timing: Timing) -> Result<Self> {
        let t = Transport::new(cfg)?;
        let haproxy = Haproxy {
            t: t.clone(),
            cache: Arc::new(ModelCache::default()),
        };
        let simple = |path: &'static str, service: &'static str| {
            Coalescer::new(
                Arc::new(ServiceDeployer {
                    t: t.clone(),
                    path,
                    service,
                }),
                timing,
            )
        };
        Ok(Client {
            haproxy_co: Coalescer::new(Arc::new(HaproxyDeployer { hx: haproxy.clone() }), timing),
            vip_co: simple("interfaces/vip_settings/reconfigure", "virtual IP"),
            alias_co: simple("firewall/alias/reconfigure", "firewall alias"),
            filter_co: simple("firewall/filter/apply", "firewall filter"),
            haproxy,
            t,
            versions: Arc::new(OnceCell::new()),
        })
    }

    pub fn transport(&self) -> &Transport {
        &self.t
    }

    pub fn haproxy(&self) -> &Haproxy {
        &self.haproxy
    }

    pub fn vips(&self) -> Vips {
        Vips { t: self.t.clone() }
    }

    pub fn aliases(&self) -> Aliases {
        Aliases { t: self.t.clone() }
    }

    pub fn rules(&self) -> Rules {
        Rules { t: self.t.clone() }
    }

    /// Reconfigure batches per service so far (for tests and benchmarks).
    pub fn deploy_batches(&self) -> BTreeMap<&'static str, u64> {
        [
            ("haproxy", self.haproxy_co.batches()),
            ("vip", self.vip_co.batches()),
            ("alias", self.alias_co.batches()),
            ("filter", self.filter_co.batches()),
        ]
        .into_iter()
        .collect()
    }

    /// OPNsense and os-haproxy versions, read once.
    pub async fn versions(&self) -> Result<Versions> {
        self.versions
            .get_or_try_init(|| async {
                match self.t.get("core/firmware/info").await {
                    Ok(v) => Ok(parse_versions(&v)),
                    // Not readable with this key's privileges or not present: adapt by probing instead.
                    Err(Error::Auth { .. } | Error::EndpointMissing { .. }) => Ok(Versions::default()),
                    Err(e) => Err(e),
                }
            })
            .await
            .cloned()
    }

    // ---- HAProxy: write, then go live through the coalescer ----

    /// Create or update a HAProxy object and return once the change is live. `existed_before` is false for a
    /// fresh create (its revert is a delete), true for an update (its revert restores the snapshot).
    pub async fn haproxy_put<T: HaproxyObject>(&self, uuid: Uuid, obj: &T, existed_before: bool) -> Result<()> {
        let kind = T::KIND;
        let revert = if existed_before {
            match self.haproxy.model().await?.raw_object(kind, uuid) {
                Some(prev) => restore(kind, uuid, prev),
                None => delete_path(kind, uuid),
            }
        } else {
            delete_path(kind, uuid)
        };
        let permit = self.haproxy_co.begin().await;
        self.haproxy.put(uuid, obj).await?;
        permit
            .commit(Change {
                target: Target::Haproxy(kind, uuid),
                revert,
            })
            .live()
            .await
    }

    /// Delete a HAProxy object and return once the removal is live. `Ok(false)` when it was already gone.
    pub async fn haproxy_delete(&self, kind: Kind, uuid: Uuid) -> Result<bool> {
        let model = self.haproxy.model().await?;
        let Some(prev) = model.raw_object(kind, uuid).cloned() else {
            // Maybe created since the snapshot; the delete call decides.
            return self.haproxy.delete(kind, uuid).await;
        };
        let permit = self.haproxy_co.begin().await;
        let deleted = match self.haproxy.delete(kind, uuid).await {
            Err(Error::InUse {
                object,
                uuid: u,
                title,
                message,
            }) => {
                // Name the referrers from the model, which is clearer than OPNsense's message.
                let names: Vec<String> = model
                    .referrers(uuid)
                    .into_iter()
                    .map(|(k, ru, n)| format!("{} {n:?} ({ru})", k.label()))
                    .collect();
                let message = if names.is_empty() { message } else { format!("{} — used by {}", message.trim(), names.join(", ")) };
                return Err(Error::InUse {
                    object,
                    uuid: u,
                    title,
                    message,
                });
            }
            other => other?,
        };
        permit
            .commit(Change {
                target: Target::Haproxy(kind, uuid),
                revert: restore(kind, uuid, &prev),
            })
            .live()
            .await?;
        Ok(deleted)
    }

    /// Write the general settings and return once they are live.
    pub async fn haproxy_put_settings(&self, s: &Settings) -> Result<()> {
        let prev = self.haproxy.settings().await?;
        let permit = self.haproxy_co.begin().await;
        self.haproxy.put_settings(s).await?;
        permit
            .commit(Change {
                target: Target::HaproxySettings,
                revert: Revert::Post {
                    path: "haproxy/settings/set".into(),
                    body: settings_body(&prev),
                },
            })
            .live()
            .await
    }

    // ---- VIPs, aliases, rules: write, then one reconfigure per batch ----

    pub async fn vip_put(&self, uuid: Uuid, vip: &Vip) -> Result<()> {
        let permit = self.vip_co.begin().await;
        self.vips().put(uuid, vip).await?;
        permit.commit(other("vip", uuid)).live().await
    }

    pub async fn vip_delete(&self, uuid: Uuid) -> Result<bool> {
        let permit = self.vip_co.begin().await;
        let deleted = self.vips().delete(uuid).await?;
        permit.commit(other("vip", uuid)).live().await?;
        Ok(deleted)
    }

    pub async fn alias_put(&self, uuid: Uuid, a: &Alias) -> Result<()> {
        let permit = self.alias_co.begin().await;
        self.aliases().put(uuid, a).await?;
        permit.commit(other("alias", uuid)).live().await
    }

    pub async fn alias_delete(&self, uuid: Uuid) -> Result<bool> {
        let permit = self.alias_co.begin().await;
        let deleted = self.aliases().delete(uuid).await?;
        permit.commit(other("alias", uuid)).live().await?;
        Ok(deleted)
    }

    pub async fn rule_put(&self, uuid: Uuid, r: &Rule) -> Result<()> {
        let permit = self.filter_co.begin().await;
        self.rules().put(uuid, r).await?;
        permit.commit(other("rule", uuid)).live().await
    }

    pub async fn rule_delete(&self, uuid: Uuid) -> Result<bool> {
        let permit = self.filter_co.begin().await;
        let deleted = self.rules().delete(uuid).await?;
        permit.commit(other("rule", uuid)).live().await?;
        Ok(deleted)
    }
}

fn other(what: &'static str, uuid: Uuid) -> Change {
    Change {
        target: Target::Other(what, uuid),
        revert: Revert::Nothing,
    }
}

fn delete_path(kind: Kind, uuid: Uuid) -> Revert {
    Revert::Post {
        path: format!("haproxy/settings/del{}/{uuid}", kind.action()),
        body: json!({}),
    }
}

fn restore(kind: Kind, uuid: Uuid, prev: &serde_json::Map<String, Value>) -> Revert {
    Revert::Post {
        path: format!("haproxy/settings/set{}/{uuid}", kind.action()),
        body: json!({ kind.wrapper(): flatten_for_set(prev) }),
    }
}

fn settings_body(s: &Settings) -> Value {
    s.wire()
}

fn parse_versions(v: &Value) -> Versions {
    let opnsense = v
        .get("product_version")
        .or_else(|| v.get("product").and_then(|p| p.get("product_version")))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut os_haproxy = None;
    for list in ["plugin", "package"] {
        if let Some(items) = v.get(list).and_then(Value::as_array) {
            for it in items {
                let installed = matches!(it.get("installed").and_then(Value::as_str), Some("1") | None);
                if it.get("name").and_then(Value::as_str) == Some("os-haproxy") && installed {
                    os_haproxy = it.get("version").and_then(Value::as_str).map(str::to_string);
                }
            }
        }
    }
    Versions { opnsense, os_haproxy }
}

/// configtest → (no ALERT) reconfigure for a batch; on ALERT every change that would be rendered is reverted and
/// fails with haproxy's output, so the saved config goes back to what is live.
struct HaproxyDeployer {
    hx: Haproxy,
}

#[async_trait::async_trait]
impl Deployer for HaproxyDeployer {
    async fn deploy(&self, batch: &[Change]) -> Vec<Result<()>> {
        let n = batch.len();
        let model = match self.hx.model_fresh().await {
            Ok(m) => m,
            Err(e) => return vec![Err(e); n],
        };
        // Servers and health checks no backend links are not in haproxy.conf: already "live" as saved.
        let needs: Vec<bool> = batch
            .iter()
            .map(|c| match c.target {
                Target::Haproxy(kind, uuid) => model.is_rendered(kind, uuid),
                _ => true,
            })
            .collect();
        if !needs.iter().any(|x| *x) {
            return vec![Ok(()); n];
        }
        let outcome: Result<()> = async {
            let output = self.hx.configtest().await?;
            if configtest_failed(&output) {
                let mut output = output;
                for (c, needed) in batch.iter().zip(&needs).rev() {
                    if !needed {
                        continue;
                    }
                    if let Revert::Post { path, body } = &c.revert {
                        if let Err(e) = self.hx.t.post(path, Some(body), Idempotency::Idempotent).await {
                            output.push_str(&format!("\n(reverting {path} failed too: {e})"));
                        }
                    }
                }
                self.hx.cache.invalidate().await;
                return Err(Error::ConfigTest { output });
            }
            self.hx.reconfigure().await
        }
        .await;
        needs
            .iter()
            .map(|needed| if *needed { outcome.clone() } else { Ok(()) })
            .collect()
    }
}

/// One service action per batch (VIP reconfigure, alias reconfigure, filter apply).
struct ServiceDeployer {
    t: Transport,
    path: &'static str,
    service: &'static str,
}

#[async_trait::async_trait]
impl Deployer for ServiceDeployer {
    async fn deploy(&self, batch: &[Change]) -> Vec<Result<()>> {
        let r = match self.t.post(self.path, None, Idempotency::Idempotent).await {
            Ok(v) => match v.get("status").and_then(Value::as_str) {
                Some(s) if s.trim().eq_ignore_ascii_case("ok") => Ok(()),
                _ => Err(Error::Service {
                    service: self.service,
                    message: short(&v),
                }),
            },
            Err(e) => Err(e),
        };
        vec![r; batch.len()]
    }
}
