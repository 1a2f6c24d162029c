//! The client resources use: one per provider instance, shared by every resource of a Terraform run.
//!
//! It owns the transport, the HAProxy whole-model cache and one reconfigure coalescer per service, and offers the
//! "write then go live" operations resources need, so no resource has to know about batching, configtest or
//! reverting a change that did not pass.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::coalesce::{Change, Coalescer, Deployer, Revert, Target, Timing};
use super::error::{Error, Result};
use super::firewall::Aliases;
use super::haproxy::{
    configtest_failed, Haproxy, HaproxyObject, Kind, Model, ModelCache, ServiceStatus, Settings,
};
use super::item::{service_ok, Item, Items};
use super::transport::{ClientConfig, Idempotency, Transport};
use super::vip::Vips;
use super::wire::flatten_for_set;

/// How long the clean-up of a failed create keeps retrying a box that does not answer (its API restarting: a
/// firmware update, a web GUI restart). The create itself already spent its own retries, so a restart that
/// outlasted those is likely still going on; giving up then would leave an object state does not know about.
pub const CLEANUP_BUDGET: Duration = Duration::from_secs(45);

/// Once Terraform cancels (Ctrl-C, a timeout), what is left of [`CLEANUP_BUDGET`] shrinks to this: the framework
/// waits 10 s for an operation to wind down, and the diagnostic must still go out within it.
pub const CLEANUP_AFTER_CANCEL: Duration = Duration::from_secs(8);

/// Pause between clean-up attempts.
const CLEANUP_PAUSE: Duration = Duration::from_millis(750);

/// How long a batch's deploy calls (model read, configtest, reconfigure, service apply) keep retrying a box whose
/// API went away mid-batch. They are all safe to repeat, and giving up is worse than waiting: a reconfigure whose
/// reply was lost to an API restart has already reloaded haproxy, so failing the batch would have its creates
/// cleaned up from the saved config while haproxy keeps serving them. Shorter than [`CLEANUP_BUDGET`] because
/// the waiting resources hold Terraform's slots meanwhile.
pub const DEPLOY_BUDGET: Duration = Duration::from_secs(30);

/// Runs one idempotent deploy call through an API outage within [`DEPLOY_BUDGET`]. The coalescer's batch belongs
/// to no single request, so no request's cancellation applies; the budget bounds it.
async fn through_outage<T, F, Fut>(op: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    retry_through_outage(&CancellationToken::new(), DEPLOY_BUDGET, op).await
}

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
    /// One coalescer per item service, keyed by its apply path (made on first use).
    service_co: Arc<std::sync::Mutex<BTreeMap<&'static str, Coalescer>>>,
    timing: Timing,
    versions: Arc<OnceCell<Versions>>,
    /// Names claimed by writes of this process, so two resources of one apply cannot both take a name before
    /// either is visible in the model.
    names: Arc<std::sync::Mutex<HashMap<(Kind, String), Uuid>>>,
    /// HAProxy objects this process read by UUID: the ones Terraform's state holds (see [`Client::read_by_id`]).
    read_by_id: Arc<std::sync::Mutex<HashSet<(Kind, Uuid)>>>,
    /// Held while a pool membership is read from the model and written back ([`Client::haproxy_link`]), so two
    /// members added to one backend at once cannot both write the list they read before the other's write.
    links: Arc<tokio::sync::Mutex<()>>,
    secondary: Option<Secondary>,
}

/// The HA secondary: its own API (own key), named by its URL in messages.
#[derive(Clone, Debug)]
struct Secondary {
    firewall: String,
    hx: Haproxy,
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
        let secondary = match &cfg.secondary {
            Some(sc) => Some(Secondary {
                firewall: sc.url.clone(),
                hx: Haproxy {
                    t: Transport::new(sc)?,
                    cache: Arc::new(ModelCache::default()),
                },
            }),
            None => None,
        };
        Ok(Client {
            haproxy_co: Coalescer::new(
                Arc::new(HaproxyDeployer {
                    hx: haproxy.clone(),
                    secondary: secondary.clone(),
                }),
                timing,
            ),
            service_co: Arc::default(),
            timing,
            haproxy,
            t,
            versions: Arc::new(OnceCell::new()),
            names: Arc::default(),
            read_by_id: Arc::default(),
            links: Arc::default(),
            secondary,
        })
    }

    /// The HA secondary's HAProxy model and its URL, when the provider has a `secondary` block.
    pub fn secondary(&self) -> Option<(&str, &Haproxy)> {
        self.secondary
            .as_ref()
            .map(|s| (s.firewall.as_str(), &s.hx))
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

    /// System › High Availability › Settings.
    pub fn hasync(&self) -> super::hasync::HaSyncApi {
        super::hasync::HaSyncApi { t: self.t.clone() }
    }

    pub fn aliases(&self) -> Aliases {
        Aliases { t: self.t.clone() }
    }

    /// The generic calls of one item type (virtual IPs, aliases, rules, …).
    pub fn items<T: Item>(&self) -> Items<T> {
        Items::new(self.t.clone())
    }

    /// The coalescer of the service that makes `T`'s changes live.
    fn service_coalescer<T: Item>(&self) -> Coalescer {
        let service = T::ENDPOINT.service;
        self.service_co
            .lock()
            .unwrap()
            .entry(service.apply)
            .or_insert_with(|| {
                Coalescer::new(
                    Arc::new(ServiceDeployer {
                        t: self.t.clone(),
                        path: service.apply,
                        service: service.name,
                    }),
                    self.timing,
                )
            })
            .clone()
    }

    /// A HAProxy write is coming (Terraform planned a create or update of a HAProxy object): the batch being collected
    /// waits for it. Paired with [`Client::haproxy_write_arrived`].
    pub fn expect_haproxy_write(&self) {
        self.haproxy_co.expect();
    }

    /// The announced HAProxy write arrived (called when a create or update starts, whatever its outcome).
    pub fn haproxy_write_arrived(&self) {
        self.haproxy_co.arrived();
    }

    /// Batches checked so far: `haproxy`, and each item service by its apply path (for tests and benchmarks).
    pub fn checked_batches(&self) -> BTreeMap<&'static str, u64> {
        let mut out: BTreeMap<&'static str, u64> = self
            .service_co
            .lock()
            .unwrap()
            .iter()
            .map(|(path, co)| (*path, co.checked()))
            .collect();
        out.insert("haproxy", self.haproxy_co.checked());
        out
    }

    /// The in-process barrier for work that needs HAProxy live (a k3s node registering through the VIP): returns
    /// once every HAProxy change this process saved is live. A HAProxy write of a long stream may be answered once
    /// checked, before its reconfigure (see [`super::coalesce`]); this waits for that reconfigure. `Err` when it
    /// failed after such writes were answered.
    pub async fn haproxy_settled(&self) -> Result<()> {
        self.haproxy_co.settled().await
    }

    /// Claim `name` for the object `uuid` of `kind`: refused with the other objects' UUIDs when another object
    /// has that name in `model` or was given it by this process.
    pub fn claim_name(
        &self,
        kind: Kind,
        name: &str,
        uuid: Uuid,
        model: &Model,
    ) -> Result<(), Vec<Uuid>> {
        let mut others = model.others_named(kind, name, Some(uuid));
        let mut claims = self.names.lock().unwrap();
        if let Some(u) = claims.get(&(kind, name.to_string())) {
            if *u != uuid && !others.contains(u) {
                others.push(*u);
            }
        }
        if !others.is_empty() {
            return Err(others);
        }
        claims.retain(|(k, _), u| !(*k == kind && *u == uuid));
        claims.insert((kind, name.to_string()), uuid);
        Ok(())
    }

    /// With an HA secondary: whether its haproxy runs the configuration saved on it. A sync can arrive without being
    /// applied (opnsense/core #7498: the secondary keeps running its old configuration), and then the saved copies
    /// agree while the running one does not. Checked the way OPNsense shows it: a configtest on the secondary
    /// renders its saved configuration to the staging file, `export/diff` compares that with the running file; a
    /// secondary whose HAProxy is disabled runs nothing and is current. `Ok(Err(why))` when it is not current.
    /// The configtest only renders and checks; nothing on the secondary is reloaded.
    pub async fn secondary_haproxy_current(
        &self,
    ) -> Option<Result<std::result::Result<(), String>>> {
        let sec = self.secondary.as_ref()?;
        Some(
            async {
                let output = sec.hx.configtest().await?;
                if configtest_failed(&output) {
                    return Ok(Err(format!(
                        "its saved configuration does not pass haproxy's configtest:\n{output}"
                    )));
                }
                match sec.hx.status().await? {
                    ServiceStatus::Disabled => return Ok(Ok(())),
                    ServiceStatus::Running => {}
                    other => {
                        return Ok(Err(format!(
                            "HAProxy is enabled there but its service is {other:?}"
                        )))
                    }
                }
                let diff = sec.hx.export_diff().await?;
                if diff.trim().is_empty() {
                    Ok(Ok(()))
                } else {
                    let lines: Vec<&str> = diff.lines().take(12).collect();
                    Ok(Err(format!(
                        "the running haproxy.conf differs from the saved configuration:\n{}",
                        lines.join("\n")
                    )))
                }
            }
            .await,
        )
    }

    /// With an HA secondary: sync the primary's HAProxy sections to it and configtest → reconfigure there (what a
    /// deployed batch does after the primary's reconfigure). `None` without a secondary.
    pub async fn deploy_secondary(&self) -> Option<Result<()>> {
        let sec = self.secondary.as_ref()?;
        Some(sec.deploy(&self.haproxy.t).await)
    }

    /// Notes that the object `uuid` of `kind` was read by its UUID (a refresh: Terraform's state holds it).
    pub fn note_read_by_id(&self, kind: Kind, uuid: Uuid) {
        self.read_by_id.lock().unwrap().insert((kind, uuid));
    }

    /// Whether every one of `uuids` was read by its UUID in this process ([`Client::note_read_by_id`]): objects
    /// Terraform's state holds, e.g. a tainted one that the plan replaces (Terraform plans the new object as a create
    /// without telling the provider which object it replaces).
    pub fn read_by_id(&self, kind: Kind, uuids: &[Uuid]) -> bool {
        let read = self.read_by_id.lock().unwrap();
        uuids.iter().all(|u| read.contains(&(kind, *u)))
    }

    /// Forget the name claimed for `uuid` (after a delete or a failed write).
    pub fn release_name(&self, kind: Kind, uuid: Uuid) {
        self.names
            .lock()
            .unwrap()
            .retain(|(k, _), u| !(*k == kind && *u == uuid));
    }

    /// OPNsense and os-haproxy versions, read once.
    pub async fn versions(&self) -> Result<Versions> {
        self.versions
            .get_or_try_init(|| async {
                match self.t.get("core/firmware/info").await {
                    Ok(v) => Ok(parse_versions(&v)),
                    // Not readable with this key's privileges or not present: adapt by probing instead.
                    Err(Error::Auth { .. } | Error::EndpointMissing { .. }) => {
                        Ok(Versions::default())
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .cloned()
    }

    /// One cheap authenticated call (`core/firmware/info`, the call [`Client::versions`] makes) to find, before
    /// any resource runs, a failure only the provider's settings can fix: `Err` with [`Error::settings_problem`]
    /// set (untrusted certificate, HTTP 401). Anything else is not the probe's business: a readable answer (or a
    /// 403/404, which `versions` reads as "unknown") is kept as the versions, so no resource asks again; a
    /// failure that may heal (connection refused, timeout, 5xx) is logged and left to the resources, which
    /// retry as always. One attempt, with `timeout`, so a firewall that is down delays configure only that long.
    pub async fn probe(&self, timeout: std::time::Duration) -> Result<()> {
        let res = self
            .t
            .get_once("core/firmware/info", timeout)
            .await
            .map(|v| parse_versions(&v));
        let versions = match res {
            Ok(v) => v,
            Err(e) if e.settings_problem().is_some() => return Err(e),
            Err(Error::Auth { .. } | Error::EndpointMissing { .. }) => Versions::default(),
            Err(e) => {
                tracing::debug!(error = %e, "OPNsense probe failed; the resources will retry");
                return Ok(());
            }
        };
        let _ = self.versions.set(versions);
        Ok(())
    }

    /// Refuse early, with a clear message, when the box cannot do what a write needs: client-chosen UUIDs need
    /// OPNsense 23.1 (`setX` upsert, and the VIP API itself), HAProxy objects need the os-haproxy plugin. Unknown
    /// versions (a key without firmware privileges) are not refused; the calls themselves then decide.
    pub async fn preflight(&self, needs_haproxy: bool) -> Result<()> {
        let v = self.versions().await?;
        if let Some(o) = &v.opnsense {
            // A version that does not start with a number (`"unknown"` on some builds) is unknown too.
            let Some(older) = version_lt(o, &[23, 1]) else {
                return Ok(());
            };
            if older {
                return Err(Error::Unsupported(format!(
                    "OPNsense {o} is older than 23.1, which this provider needs (upsert by UUID and the virtual IP API)"
                )));
            }
            if needs_haproxy && v.os_haproxy.is_none() {
                return Err(Error::Unsupported(
                    "the os-haproxy plugin is not installed (System › Firmware › Plugins)".into(),
                ));
            }
        }
        Ok(())
    }

    // ---- undoing a failed create ----

    /// Removes the HAProxy object a failed create may have saved (no reconfigure: it never went live), retrying
    /// through an API outage within [`CLEANUP_BUDGET`] (see [`retry_through_outage`]). `Ok(false)`: nothing was there.
    pub async fn discard_haproxy(
        &self,
        kind: Kind,
        uuid: Uuid,
        cancel: &CancellationToken,
    ) -> Result<bool> {
        retry_through_outage(cancel, CLEANUP_BUDGET, || self.haproxy.delete(kind, uuid)).await
    }

    /// Like [`Client::discard_haproxy`] for an item (virtual IP, alias, rule).
    pub async fn discard_item<T: Item>(
        &self,
        uuid: Uuid,
        cancel: &CancellationToken,
    ) -> Result<bool> {
        let items = self.items::<T>();
        retry_through_outage(cancel, CLEANUP_BUDGET, || items.delete(uuid)).await
    }

    // ---- HAProxy: write, then go live through the coalescer ----

    /// Create or update a HAProxy object and return once the change is live. `existed_before` is false for a
    /// fresh create (its revert is a delete), true for an update (its revert restores the snapshot).
    pub async fn haproxy_put<T: HaproxyObject>(
        &self,
        uuid: Uuid,
        obj: &T,
        existed_before: bool,
    ) -> Result<()> {
        let kind = T::KIND;
        self.preflight(true).await?;
        let revert = if existed_before {
            match self.haproxy.model().await?.raw_object(kind, uuid) {
                Some(prev) => restore(kind, uuid, prev),
                None => delete_path(kind, uuid),
            }
        } else {
            delete_path(kind, uuid)
        };
        let permit = self.haproxy_co.begin().await;
        // With an HA secondary a weight change takes the normal path too: only a deployed batch is synced to the
        // secondary, and a runtime-only change would leave the pair disagreeing (planned again at every refresh).
        let runtime = if existed_before && kind == Kind::Server && self.secondary.is_none() {
            self.weight_only_change(uuid, &obj.to_wire()).await
        } else {
            None
        };
        self.haproxy.put(uuid, obj).await?;
        if !existed_before && matches!(kind, Kind::Server | Kind::Healthcheck) {
            // A server or health check is rendered only inside a backend that links it, and nothing can link a
            // UUID that did not exist until now (Terraform creates the backend after it): live as saved.
            return Ok(());
        }
        if let Some(targets) = runtime {
            // Live through the runtime API; the permit still holds deploys off, so no reload of the old rendering
            // can undo it. Any refusal falls back to the normal configtest → reconfigure below.
            if self.set_runtime_weights(&targets).await {
                return Ok(());
            }
        }
        permit
            .commit(Change {
                target: Target::Haproxy(kind, uuid),
                revert,
                removal: false,
            })
            .live()
            .await
    }

    /// Links server `server` into backend `backend`'s pool (`link`) or unlinks it, and returns once that is live.
    /// `Ok(None)` when the backend does not exist; `Ok(Some(false))` when nothing had to change.
    ///
    /// Why a separate write path: a pool's members live in the backend's `linkedServers`, one field of one object,
    /// so a membership is a read-modify-write of that object. Reading and saving happen under one lock of this
    /// process (members of one backend are usually added together, by `for_each`); the wait for going live does
    /// not, so members added at once still share one configtest → reconfigure.
    pub async fn haproxy_link(
        &self,
        backend: Uuid,
        server: Uuid,
        link: bool,
    ) -> Result<Option<bool>> {
        use super::haproxy::Backend;
        self.preflight(true).await?;
        let guard = self.links.lock().await;
        let model = self.haproxy.model().await?;
        let (Some(prev), Some(mut obj)) = (
            model.raw_object(Kind::Backend, backend).cloned(),
            model.get::<Backend>(backend)?,
        ) else {
            return Ok(None);
        };
        let changed = if link {
            obj.linked_servers.insert(server)
        } else {
            obj.linked_servers.remove(&server)
        };
        if !changed {
            return Ok(Some(false));
        }
        let permit = self.haproxy_co.begin().await;
        self.haproxy.put(backend, &obj).await?;
        drop(guard);
        permit
            .commit(Change {
                target: Target::Haproxy(Kind::Backend, backend),
                revert: restore(Kind::Backend, backend, &prev),
                removal: false,
            })
            .live()
            .await?;
        Ok(Some(true))
    }

    /// When the update of server `uuid` to `new` changes nothing but its weight and the server is rendered, the
    /// `(backend, server, weight)` runtime calls that make it live without a reload: haproxy applies a weight at
    /// runtime, and os-haproxy exposes that as `haproxy/maintenance/serverWeight` (its maintenance page). This keeps
    /// bulk weight changes (draining, rebalancing) free of reconfigures, which matter because Terraform's
    /// parallelism bounds how many changes one reconfigure can carry (see [`super::coalesce`]).
    async fn weight_only_change(
        &self,
        uuid: Uuid,
        new: &serde_json::Map<String, Value>,
    ) -> Option<Vec<(String, String, u16)>> {
        use super::haproxy::Server;
        let model = self.haproxy.model().await.ok()?;
        if !model.settings().ok()?.enabled {
            return None;
        }
        let prev: Server = model.get(uuid).ok()??;
        let next = Server::from_wire(new).ok()?;
        let same_but_weight = Server {
            weight: next.weight,
            ..prev.clone()
        } == next;
        if prev.weight == next.weight || !same_but_weight || !next.enabled {
            return None;
        }
        let backends = model.backends_rendering_server(uuid);
        if backends.is_empty() {
            return None;
        }
        // haproxy's default weight is 1, which is what OPNsense renders for an unset weight.
        let weight = next.weight.unwrap_or(1);
        Some(
            backends
                .into_iter()
                .map(|b| (b, next.name.clone(), weight))
                .collect(),
        )
    }

    async fn set_runtime_weights(&self, targets: &[(String, String, u16)]) -> bool {
        for (backend, server, weight) in targets {
            let body = json!({"backend": backend, "server": server, "weight": weight.to_string()});
            match self
                .t
                .post(
                    "haproxy/maintenance/serverWeight",
                    Some(&body),
                    Idempotency::Idempotent,
                )
                .await
            {
                Ok(v) if v.get("status").and_then(Value::as_str) == Some("ok") => {}
                other => {
                    tracing::debug!(
                        ?other,
                        backend,
                        server,
                        "runtime weight refused; reconfiguring instead"
                    );
                    return false;
                }
            }
        }
        true
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
                let message = if names.is_empty() {
                    message
                } else {
                    format!("{} — used by {}", message.trim(), names.join(", "))
                };
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
                removal: true,
            })
            .live()
            .await?;
        Ok(deleted)
    }

    /// Write the general settings and return once they are live.
    pub async fn haproxy_put_settings(&self, s: &Settings) -> Result<()> {
        self.preflight(true).await?;
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
                removal: false,
            })
            .live()
            .await
    }

    // ---- items (VIPs, aliases, rules, …): write, then one service action per batch ----

    /// Create or update an item and return once the change is live (its service applied).
    pub async fn item_put<T: Item>(&self, uuid: Uuid, obj: &T) -> Result<()> {
        if T::ENDPOINT.needs_23_1 {
            self.preflight(false).await?;
        }
        let permit = self.service_coalescer::<T>().begin().await;
        self.items::<T>().put(uuid, obj).await?;
        permit.commit(other(T::ENDPOINT.wrapper, uuid)).live().await
    }

    /// Delete an item and return once the removal is live. `Ok(false)` when it was already gone.
    pub async fn item_delete<T: Item>(&self, uuid: Uuid) -> Result<bool> {
        let permit = self.service_coalescer::<T>().begin().await;
        let deleted = self.items::<T>().delete(uuid).await?;
        permit
            .commit(other(T::ENDPOINT.wrapper, uuid))
            .live()
            .await?;
        Ok(deleted)
    }
}

fn other(what: &'static str, uuid: Uuid) -> Change {
    Change {
        target: Target::Other(what, uuid),
        revert: Revert::Nothing,
        removal: false,
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

/// `"24.7.3_1"` < `[23, 1]`? (numeric comparison of the leading dotted numbers). `None` when `v` does not start
/// with a number (`"unknown"`, `""`): such a version is unknown, not old.
fn version_lt(v: &str, min: &[u32]) -> Option<bool> {
    let v = v.trim();
    if !v.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let parts: Vec<u32> = v
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(min.len())
        .map(|s| s.parse().unwrap_or(u32::MAX))
        .collect();
    Some(parts.as_slice() < min)
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
                let installed = matches!(
                    it.get("installed").and_then(Value::as_str),
                    Some("1") | None
                );
                if it.get("name").and_then(Value::as_str) == Some("os-haproxy") && installed {
                    os_haproxy = it
                        .get("version")
                        .and_then(Value::as_str)
                        .map(str::to_string);
                }
            }
        }
    }
    Versions {
        opnsense,
        os_haproxy,
    }
}

/// Runs `op` until it succeeds or fails for good: a transient failure (no answer, connection refused, a retryable
/// HTTP status) is retried every [`CLEANUP_PAUSE`] until `budget` is spent, and once `cancel` fires for at most
/// [`CLEANUP_AFTER_CANCEL`] more. Each attempt keeps the transport's own retries.
pub async fn retry_through_outage<T, F, Fut>(
    cancel: &CancellationToken,
    budget: Duration,
    mut op: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let start = tokio::time::Instant::now();
    let mut deadline = start + budget;
    let mut cancelled = cancel.is_cancelled();
    if cancelled {
        deadline = deadline.min(start + CLEANUP_AFTER_CANCEL);
    }
    loop {
        let attempt = op();
        tokio::pin!(attempt);
        let res = loop {
            tokio::select! {
                r = &mut attempt => break r,
                _ = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    deadline = deadline.min(tokio::time::Instant::now() + CLEANUP_AFTER_CANCEL);
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Transport {
                        method: "POST",
                        path: "(clean-up)".into(),
                        attempts: 0,
                        message: format!("no answer within {} s", (deadline - start).as_secs()),
                    });
                }
            }
        };
        match res {
            Err(e)
                if e.is_transient() && tokio::time::Instant::now() + CLEANUP_PAUSE < deadline =>
            {
                tracing::debug!(error = %e, "clean-up: OPNsense not answering, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(CLEANUP_PAUSE) => {}
                    _ = cancel.cancelled(), if !cancelled => {
                        cancelled = true;
                        deadline = deadline.min(tokio::time::Instant::now() + CLEANUP_AFTER_CANCEL);
                    }
                }
            }
            other => return other,
        }
    }
}

/// configtest for a batch (on ALERT every change that would be rendered is reverted and fails with haproxy's output,
/// so the saved config goes back to one that passed), reconfigure to go live (then the HA secondary, if any).
struct HaproxyDeployer {
    hx: Haproxy,
    /// With an HA secondary, a batch that went live on the primary is synced and deployed there too.
    secondary: Option<Secondary>,
}

/// The HA sync that carries the primary's HAProxy sections to the secondary: `core/hasync_status/start/haproxy`
/// (OPNsense's `HasyncStatusController`: run the XMLRPC sync, then `start` the service on the peer, which leaves an
/// already running haproxy alone). Not `restart`: that would reload the peer before its configtest.
pub const HA_SYNC_PATH: &str = "core/hasync_status/start/haproxy";

impl Secondary {
    /// Sync from the primary, then configtest → reconfigure on the secondary through its own API.
    async fn deploy(&self, primary: &Transport) -> Result<()> {
        let fail = |message: String| Error::Secondary {
            firewall: self.firewall.clone(),
            message,
        };
        let v = primary
            .post(HA_SYNC_PATH, None, Idempotency::Idempotent)
            .await
            .map_err(|e| {
                fail(format!(
                    "the primary's HA sync ({HA_SYNC_PATH}) failed: {e}"
                ))
            })?;
        if v.get("status").and_then(Value::as_str) != Some("ok") {
            return Err(fail(format!(
                "the primary's HA sync ({HA_SYNC_PATH}) answered {}. Check System › High Availability ›                  Settings on the primary (peer address, user, password, `haproxy` among the synced items).",
                super::wire::short(&v)
            )));
        }
        let output = self
            .hx
            .configtest()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if configtest_failed(&output) {
            return Err(fail(format!(
                "HAProxy's configtest on the secondary failed, so it was not reconfigured and keeps its previous                  configuration:\n{output}"
            )));
        }
        self.hx.reconfigure().await.map_err(|e| fail(e.to_string()))
    }
}

#[async_trait::async_trait]
impl Deployer for HaproxyDeployer {
    async fn check(&self, batch: &[Change]) -> Vec<Result<bool>> {
        let n = batch.len();
        let model = match through_outage(|| self.hx.model_fresh()).await {
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
            return vec![Ok(false); n];
        }
        let outcome: Result<()> = async {
            let output = through_outage(|| self.hx.configtest()).await?;
            if configtest_failed(&output) {
                let mut output = output;
                for (c, needed) in batch.iter().zip(&needs).rev() {
                    if !needed {
                        continue;
                    }
                    if let Err(e) = self.revert(c).await {
                        output.push_str(&format!("\n({e})"));
                    }
                }
                self.hx.cache.invalidate().await;
                return Err(Error::ConfigTest { output });
            }
            Ok(())
        }
        .await;
        needs
            .iter()
            .map(|needed| match (&outcome, needed) {
                (_, false) => Ok(false),
                (Ok(()), true) => Ok(true),
                (Err(e), true) => Err(e.clone()),
            })
            .collect()
    }

    async fn go_live(&self, released: &[Change]) -> Result<()> {
        if let Err(e) = through_outage(|| self.hx.reconfigure()).await {
            if released.is_empty() {
                return Err(e);
            }
            return Err(self.undo_released(e, released).await);
        }
        // The primary is live: a failure on the secondary leaves it so (nothing to undo).
        match &self.secondary {
            Some(sec) => sec.deploy(&self.hx.t).await,
            None => Ok(()),
        }
    }

    fn checks(&self) -> bool {
        true
    }
}

impl HaproxyDeployer {
    async fn revert(&self, c: &Change) -> std::result::Result<(), String> {
        match &c.revert {
            Revert::Post { path, body } => self
                .hx
                .t
                .post(path, Some(body), Idempotency::Idempotent)
                .await
                .map(|_| ())
                .map_err(|e| format!("reverting {path} failed too: {e}")),
            Revert::Nothing => Ok(()),
        }
    }

    /// The reconfigure failed after the writers of `released` were answered (their changes saved and checked, not
    /// live): undo each update and create (newest first) so the saved configuration is again what was live and the
    /// next refreshed plan shows them as needing an apply; a delete stays saved (its resource already left the
    /// state, restoring it would leave an object nobody manages) and goes live with the next reconfigure.
    async fn undo_released(&self, e: Error, released: &[Change]) -> Error {
        let name = |c: &Change| match c.target {
            Target::Haproxy(kind, uuid) => format!("{} {uuid}", kind.label()),
            Target::HaproxySettings => "the HAProxy settings".to_string(),
            Target::Other(what, uuid) => format!("{what} {uuid}"),
        };
        let (mut undone, mut kept, mut failed) = (Vec::new(), Vec::new(), Vec::new());
        for c in released.iter().rev() {
            if c.removal {
                kept.push(name(c));
                continue;
            }
            match self.revert(c).await {
                Ok(()) => undone.push(name(c)),
                Err(why) => failed.push(format!("{} ({why})", name(c))),
            }
        }
        self.hx.cache.invalidate().await;
        let mut message = format!(
            "{e}. {} other change(s) of this apply had passed configtest and were answered before this reconfigure \
             (a long stream of HAProxy changes goes live in one reload).",
            released.len()
        );
        if !undone.is_empty() {
            message.push_str(&format!(
                " Undone, so the next plan shows them as needing an apply again: {}.",
                undone.join(", ")
            ));
        }
        if !kept.is_empty() {
            message.push_str(&format!(
                " Deleted and saved, live with the next successful reconfigure (any HAProxy change, or Services › \
                 HAProxy › Apply): {}.",
                kept.join(", ")
            ));
        }
        if !failed.is_empty() {
            message.push_str(&format!(
                " Saved but NOT live and could not be undone (re-apply them with `terraform apply -replace=...`): {}.",
                failed.join(", ")
            ));
        }
        Error::Service {
            service: "haproxy",
            message,
        }
    }
}

/// One service action per batch (VIP reconfigure, alias reconfigure, filter apply); nothing to check first, so its
/// writers are always answered only once live.
struct ServiceDeployer {
    t: Transport,
    path: &'static str,
    service: &'static str,
}

#[async_trait::async_trait]
impl Deployer for ServiceDeployer {
    async fn check(&self, batch: &[Change]) -> Vec<Result<bool>> {
        vec![Ok(true); batch.len()]
    }

    async fn go_live(&self, _released: &[Change]) -> Result<()> {
        through_outage(|| service_ok(&self.t, self.path, self.service)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::opnsense::haproxy::*;
    use crate::opnsense::transport::RetryPolicy;
    use crate::testing::opnsense::Fake;
    use std::time::Duration;

    fn client(url: &str) -> Client {
        let mut cfg = ClientConfig::new(url, "key", "secret");
        cfg.timeout = Duration::from_millis(800);
        cfg.retry = RetryPolicy {
            max_attempts: 4,
            min_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        };
        Client::with_timing(
            &cfg,
            Timing {
                quiet: Duration::from_millis(60),
                max_wait: Duration::from_millis(600),
                ..Timing::default()
            },
        )
        .unwrap()
    }

    /// The seed's HAProxy objects; returns (servers, healthcheck, backend, frontend) UUIDs.
    async fn seed(c: &Client) -> (Vec<Uuid>, Uuid, Uuid, Uuid) {
        let servers: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        let hc = Uuid::new_v4();
        let mut tasks = Vec::new();
        for (i, u) in servers.iter().enumerate() {
            let c = c.clone();
            let u = *u;
            tasks.push(tokio::spawn(async move {
                c.haproxy_put(
                    u,
                    &Server::new(&format!("k3s-{i}"), &format!("127.0.0.{}", 11 + i), 6443),
                    false,
                )
                .await
            }));
        }
        let c2 = c.clone();
        tasks.push(tokio::spawn(async move {
            c2.haproxy_put(hc, &Healthcheck::tcp("k3s_tcp", "10s"), false)
                .await
        }));
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let be = Uuid::new_v4();
        let mut b = Backend::new("k3s_servers", BackendMode::Tcp, Algorithm::Roundrobin);
        b.linked_servers = servers.iter().copied().collect();
        b.health_check = Some(hc);
        c.haproxy_put(be, &b, false).await.unwrap();
        let fe = Uuid::new_v4();
        let mut f = Frontend::new("k3s_api", FrontendMode::Tcp, &["127.0.3.100:6443"]);
        f.default_backend = Some(be);
        c.haproxy_put(fe, &f, false).await.unwrap();
        (servers, hc, be, fe)
    }

    #[tokio::test]
    async fn seed_apply_needs_one_reconfigure_per_dependency_level_and_reads_once() {
        let fake = Fake::start().await;
        let c = client(&fake.server.url());
        let (servers, _, be, fe) = seed(&c).await;
        {
            let st = fake.state.lock().unwrap();
            // Unreferenced servers/health check: live without a reconfigure; backend and frontend: one each.
            assert_eq!(st.reconfigures, 2);
            assert_eq!(st.configtests, 2);
            assert_eq!(st.live.get("frontend").map(|m| m.len()), Some(1));
        }
        // Refresh of every object: one whole-model read.
        let before = c
            .transport()
            .call_counts()
            .get("GET haproxy/settings/get")
            .copied()
            .unwrap_or(0);
        for u in &servers {
            assert!(c.haproxy().get::<Server>(*u).await.unwrap().is_some());
        }
        let b: Backend = c.haproxy().get(be).await.unwrap().unwrap();
        assert_eq!(b.linked_servers.len(), 3);
        assert_eq!(b.stickiness_pattern, None);
        let f: Frontend = c.haproxy().get(fe).await.unwrap().unwrap();
        assert_eq!(f.default_backend, Some(be));
        let after = c.transport().call_counts()["GET haproxy/settings/get"];
        assert!(after - before <= 1, "{before} → {after}");
    }

    #[tokio::test]
    async fn writes_patch_the_cached_model_and_failures_drop_it() {
        let fake = Fake::start().await;
        let c = client(&fake.server.url());
        let reads = |c: &Client| {
            c.transport()
                .call_counts()
                .get("GET haproxy/settings/get")
                .copied()
                .unwrap_or(0)
        };
        c.haproxy().model().await.unwrap();
        let before = reads(&c);
        // What a resource's create does: read the model (names, references), then write. 20 parallel creates and
        // an update of each: no further whole-model read of their own.
        let servers: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
        let put_all = |weight: Option<u16>, existed: bool| {
            let tasks: Vec<_> = servers
                .iter()
                .enumerate()
                .map(|(i, u)| {
                    let (c, u) = (c.clone(), *u);
                    tokio::spawn(async move {
                        let model = c.haproxy().model().await.unwrap();
                        assert_eq!(model.contains(Kind::Server, u), existed);
                        let mut s = Server::new(&format!("s{i}"), "127.0.0.9", 80);
                        s.weight = weight;
                        c.haproxy_put(u, &s, existed).await
                    })
                })
                .collect::<Vec<_>>();
            async move {
                for t in tasks {
                    t.await.unwrap().unwrap();
                }
            }
        };
        put_all(None, false).await;
        assert_eq!(reads(&c), before, "creates re-read the model");
        // Updates go through the coalescer, whose batch reads the model fresh once (to see what is rendered).
        let batches = c.checked_batches()["haproxy"];
        put_all(Some(5), true).await;
        let batches = c.checked_batches()["haproxy"] - batches;
        assert!(batches >= 1);
        assert_eq!(reads(&c), before + batches, "updates re-read the model");
        // The patched model reads like a fresh one.
        let cached = c.haproxy().model().await.unwrap();
        let fresh = c.haproxy().model_fresh().await.unwrap();
        let decoded = |m: &Model| {
            let mut v: Vec<(Uuid, Server)> = m
                .list::<Server>()
                .into_iter()
                .map(|(u, s)| (u, s.unwrap()))
                .collect();
            v.sort_by_key(|x| x.0);
            v
        };
        assert_eq!(decoded(&cached), decoded(&fresh));
        assert_eq!(decoded(&cached).len(), 20);
        assert!(decoded(&cached).iter().all(|(_, s)| s.weight == Some(5)));
        // A delete is patched out (the coalescer's own fresh read for the batch is the one read).
        let before = reads(&c);
        assert!(c.haproxy_delete(Kind::Server, servers[0]).await.unwrap());
        assert!(!c
            .haproxy()
            .model()
            .await
            .unwrap()
            .contains(Kind::Server, servers[0]));
        assert_eq!(reads(&c), before + 1);
        // A refused write drops the model: the next read goes to OPNsense.
        let before = reads(&c);
        c.haproxy_put(
            Uuid::new_v4(),
            &Server::new("bad name", "1.2.3.4", 80),
            false,
        )
        .await
        .unwrap_err();
        c.haproxy().model().await.unwrap();
        assert_eq!(reads(&c), before + 1);
    }

    #[tokio::test]
    async fn parallel_updates_of_referenced_servers_share_one_reconfigure() {
        let fake = Fake::start().await;
        let c = client(&fake.server.url());
        let (servers, ..) = seed(&c).await;
        let before = fake.state.lock().unwrap().reconfigures;
        let tasks: Vec<_> = servers
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let c = c.clone();
                let u = *u;
                tokio::spawn(async move {
                    let mut s =
                        Server::new(&format!("k3s-{i}"), &format!("127.0.0.{}", 11 + i), 6443);
                    s.weight = Some(10);
                    c.haproxy_put(u, &s, true).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(fake.state.lock().unwrap().reconfigures, before + 1);
    }

    #[tokio::test]
    async fn alert_fails_the_change_reverts_it_and_keeps_live() {
        let fake = Fake::start().await;
        let c = client(&fake.server.url());
        let (_, _, be, fe) = seed(&c).await;
        let (reconf, live) = {
            let st = fake.state.lock().unwrap();
            (st.reconfigures, st.live.clone())
        };
        let mut f = Frontend::new("k3s_api", FrontendMode::Tcp, &["bad:6443"]);
        f.default_backend = Some(be);
        let e = c.haproxy_put(fe, &f, true).await.unwrap_err();
        assert!(
            matches!(&e, Error::ConfigTest { output } if output.contains("ALERT")),
            "{e}"
        );
        assert!(e.to_string().contains("previous configuration stays live"));
        {
            let st = fake.state.lock().unwrap();
            assert_eq!(st.reconfigures, reconf, "nothing deployed");
            assert_eq!(st.live, live);
            // The saved config is back to what is live.
            assert_eq!(
                st.objects["frontend"][&fe.to_string()]["bind"],
                "127.0.3.100:6443"
            );
        }
        // A create that fails configtest is removed again.
        let dup = Uuid::new_v4();
        let mut b = Backend::new("dup", BackendMode::Tcp, Algorithm::Roundrobin);
        let s2 = Uuid::new_v4();
        c.haproxy_put(s2, &Server::new("k3s-0", "127.0.0.99", 6443), false)
            .await
            .unwrap();
        b.linked_servers.insert(s2);
        assert!(matches!(
            c.haproxy_put(dup, &b, false).await,
            Err(Error::ConfigTest { .. })
        ));
        assert!(!fake.state.lock().unwrap().objects["backend"].contains_key(&dup.to_string()));
    }

    #[tokio::test]
    async fn a_batch_is_synced_and_deployed_on_the_secondary_and_its_configtest_failure_names_it() {
        let second = Fake::start().await;
        let first = Fake::start().await;
        first.state.lock().unwrap().peer = Some(second.state.clone());
        let mut cfg = ClientConfig::new(first.server.url(), "key", "secret");
        cfg.retry.max_attempts = 1;
        let mut sc = ClientConfig::new(second.server.url(), "key2", "secret2");
        sc.retry.max_attempts = 1;
        cfg.secondary = Some(Box::new(sc));
        let c = Client::with_timing(
            &cfg,
            Timing {
                quiet: Duration::from_millis(60),
                max_wait: Duration::from_millis(600),
                ..Timing::default()
            },
        )
        .unwrap();
        // Three rendered backends in parallel: one batch, one sync, one configtest + reconfigure on each side.
        let tasks: Vec<_> = (0..3)
            .map(|i| {
                let c = c.clone();
                tokio::spawn(async move {
                    let b = Backend::new(&format!("b{i}"), BackendMode::Tcp, Algorithm::Roundrobin);
                    c.haproxy_put(Uuid::new_v4(), &b, false).await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let counts = |f: &Fake| {
            let st = f.state.lock().unwrap();
            (st.syncs, st.configtests, st.reconfigures)
        };
        assert_eq!(counts(&first), (1, 1, 1));
        assert_eq!(counts(&second), (0, 1, 1));
        assert_eq!(second.state.lock().unwrap().live["backend"].len(), 3);

        // The secondary's haproxy refuses: an error naming the secondary; the primary keeps the change live.
        second.state.lock().unwrap().alert = Some("[ALERT] (1) : only here".into());
        let u = Uuid::new_v4();
        let e = c
            .haproxy_put(
                u,
                &Backend::new("b9", BackendMode::Tcp, Algorithm::Roundrobin),
                false,
            )
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, Error::Secondary { .. }), "{e:?}");
        assert!(
            text.contains(&second.server.url()) && text.contains("only here"),
            "{text}"
        );
        assert!(first.state.lock().unwrap().live["backend"].contains_key(&u.to_string()));
        assert_eq!(
            counts(&second),
            (0, 2, 1),
            "not reconfigured after a failed configtest"
        );
    }

    #[tokio::test]
    async fn lost_replies_and_5xx_never_duplicate() {
        let fake = Fake::start().await;
        let c = client(&fake.server.url());
        fake.state.lock().unwrap().lose_next_set_replies = 2;
        let u = Uuid::new_v4();
        c.haproxy_put(u, &Server::new("web", "127.0.0.5", 80), false)
            .await
            .unwrap();
        assert_eq!(fake.count("server"), 1);
        fake.state.lock().unwrap().fail_next = 2;
        let s: Server = c.haproxy().get(u).await.unwrap().unwrap();
        assert_eq!(s.address.as_deref(), Some("127.0.0.5"));
    }

    #[tokio::test]
    async fn validation_and_in_use_errors_are_typed() {
        let fake = Fake::start().await;
        let c = client(&fake.server.url());
        let e = c
            .haproxy_put(
                Uuid::new_v4(),
                &Server::new("bad name", "1.2.3.4", 80),
                false,
            )
            .await
            .unwrap_err();
        let Error::Validation { fields, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(fields[0].attribute, Some("name"));
        assert_eq!(fake.count("server"), 0);
        let (servers, ..) = seed(&c).await;
        let e = c
            .haproxy_delete(Kind::Server, servers[0])
            .await
            .unwrap_err();
        assert!(matches!(&e, Error::InUse { .. }), "{e:?}");
        assert!(e.to_string().contains("k3s_servers"), "{e}");
        assert_eq!(fake.count("server"), 3);
        // Delete order frontend → backend → servers works and counts no reconfigure for the servers.
        let st = fake.state.lock().unwrap().reconfigures;
        let model = c.haproxy().model().await.unwrap();
        let fe = model.names(Kind::Frontend)[0].0;
        let be = model.names(Kind::Backend)[0].0;
        assert!(c.haproxy_delete(Kind::Frontend, fe).await.unwrap());
        assert!(c.haproxy_delete(Kind::Backend, be).await.unwrap());
        for s in servers {
            assert!(c.haproxy_delete(Kind::Server, s).await.unwrap());
        }
        assert!(!c
            .haproxy_delete(Kind::Server, Uuid::new_v4())
            .await
            .unwrap());
        assert_eq!(fake.state.lock().unwrap().reconfigures, st + 2);
    }

    #[test]
    fn versions() {
        assert_eq!(version_lt("22.7.11", &[23, 1]), Some(true));
        assert_eq!(version_lt("23.1", &[23, 1]), Some(false));
        assert_eq!(version_lt("26.7.2", &[23, 1]), Some(false));
        assert_eq!(version_lt("24.7.3_1", &[23, 1]), Some(false));
        assert_eq!(version_lt("23", &[23, 1]), Some(true));
        // Not a number: unknown, not older than anything.
        assert_eq!(version_lt("unknown", &[23, 1]), None);
        assert_eq!(version_lt("", &[23, 1]), None);
        assert_eq!(version_lt("v24.1", &[23, 1]), None);
        let v = parse_versions(&serde_json::json!({"product_version": "26.7.2",
            "plugin": [{"name": "os-haproxy", "version": "5.1", "installed": "1"}]}));
        assert_eq!(v.opnsense.as_deref(), Some("26.7.2"));
        assert_eq!(v.os_haproxy.as_deref(), Some("5.1"));
        let v = parse_versions(&serde_json::json!({"product_version": "26.7.2",
            "plugin": [{"name": "os-haproxy", "version": "5.1", "installed": "0"}]}));
        assert_eq!(v.os_haproxy, None);
    }

    #[tokio::test]
    async fn preflight_refuses_only_known_old_versions() {
        use crate::testing::http::{Reply, TestServer};
        for (version, haproxy, refused) in [
            ("unknown", false, false),
            ("unknown", true, false),
            ("", false, false),
            ("22.7.11", true, true),
            ("26.7.2", true, false),
            ("26.7.2", false, true),
        ] {
            let plugins = if haproxy {
                serde_json::json!([{"name": "os-haproxy", "version": "5.1", "installed": "1"}])
            } else {
                serde_json::json!([])
            };
            let srv = TestServer::start(move |_| {
                Reply::json(
                    200,
                    serde_json::json!({"product_version": version, "plugin": plugins.clone()}),
                )
            })
            .await;
            let c = client(&srv.url());
            let r = c.preflight(true).await;
            assert_eq!(r.is_err(), refused, "{version} haproxy={haproxy}: {r:?}");
            // The VIP and firewall objects do not need the plugin.
            let r = c.preflight(false).await;
            assert_eq!(
                r.is_err(),
                refused && version.starts_with("22"),
                "{version}: {r:?}"
            );
        }
    }

    #[tokio::test]
    async fn settings_round_trip() {
        let fake = Fake::start().await;
        let c = client(&fake.server.url());
        assert_eq!(c.haproxy().settings().await.unwrap(), Settings::default());
        let s = Settings {
            enabled: true,
            graceful_stop: true,
            prometheus_enabled: true,
            ..Settings::default()
        };
        c.haproxy_put_settings(&s).await.unwrap();
        assert_eq!(c.haproxy().settings().await.unwrap(), s);
        assert_eq!(fake.state.lock().unwrap().reconfigures, 1);
    }
}
