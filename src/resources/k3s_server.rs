//! `homelab_k3s_server`: a k3s server node (embedded etcd) installed and configured over SSH.
//!
//! Role `init` is the first server (`cluster-init: true`, the short token); role `join` joins through
//! `server_url` — an existing server's own address, never a load-balancer pool that already contains this node
//! (k3s#9661) — with the secure `K10…` token read back from the first server (`join_token`).
//!
//! Create and update converge the host to the configuration with the sequences of [`crate::k3s`]: write
//! config.yaml (restart only when it changed), install with skip-start (install or upgrade), start without
//! blocking, poll readiness with our own deadline, verify the wanted `tls_san`s on the live serving certificate
//! and rotate the (sticky) certificate when one is missing. Servers of one cluster converge one at a time
//! ([`crate::k3s::lock`]). Read reports the host as it is (drift): version, config.yaml, token, SANs on the wire.
//! The sqlite→etcd migration stops k3s for its backup; a rotation it needs is done inside that stop, so the server
//! restarts once.
//!
//! Delete of a joined server leaves etcd first and uninstalls only once its member is gone: a server uninstalled
//! while etcd still counts it is a dead voter, and two of those lose the survivors' quorum. etcd's refusals of a
//! removal are usually transient ("unhealthy cluster" for 5 s after a peer reconnects), so they are retried
//! within the delete timeout; a removal still refused is an error, with the node left running.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::k3s_common::*;
use super::k3s_host::*;
use crate::framework::*;
use crate::k3s::{self, Role};
use crate::ssh::Session;

pub const TYPE: &str = "homelab_k3s_server";

/// Keys of config.yaml the resource manages through dedicated attributes.
const MANAGED: &[&str] = &[
    "token",
    "cluster-init",
    "server",
    "node-name",
    "tls-san",
    "node-label",
    "node-taint",
    "disable",
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerModel {
    pub id: Tf<String>,
    pub role: Tf<String>,
    pub server_url: Tf<String>,
    pub token: Tf<String>,
    pub version: Tf<String>,
    pub node_name: Tf<String>,
    pub tls_san: Tf<Vec<String>>,
    pub node_labels: Tf<Vec<String>>,
    pub node_taints: Tf<Vec<String>>,
    pub disable: Tf<Vec<String>>,
    pub extra_config: Tf<BTreeMap<String, String>>,
    pub kubeconfig_server: Tf<String>,
    pub install_script: Tf<String>,
    pub install_script_url: Tf<String>,
    pub install_env: Tf<BTreeMap<String, String>>,
    pub airgap_binary_path: Tf<String>,
    pub join_token: Tf<String>,
    pub ca_hash: Tf<String>,
    pub serving_cert_sans: Tf<Vec<String>>,
    pub kubeconfig: Tf<String>,
    pub datastore: Tf<String>,
    pub allow_datastore_migration: Tf<bool>,
    pub host: Option<ConnectionModel>,
    pub timeouts: Option<TimeoutsModel>,
}

/// The node's identity: its host address.
pub type ServerIdentity = HostIdentity;

fn list_attr(name: &str, desc: &str) -> Attribute {
    Attribute::list(name, Type::String)
        .optional()
        .description(desc)
}

pub fn schema() -> Schema {
    let s = Schema::new(
        "A k3s server (control plane + embedded etcd) on a host reached over SSH. `role = \"init\"` creates the \
         cluster; `role = \"join\"` joins it through `server_url`. Installs never block on the unit: the provider \
         starts k3s without waiting and polls readiness itself (the `timeouts` block bounds it), returning the \
         unit's last journal lines on failure. The token is written only to config.yaml (0600), never to a \
         command line.",
    )
    .attribute(
        Attribute::string("id")
            .computed()
            .use_state_for_unknown()
            .description("The host address (`host.address`)."),
    )
    .attribute(
        Attribute::string("role")
            .required()
            .requires_replace()
            .validate(Validator::one_of(&["init", "join"]))
            .description("`init`: the first server (`cluster-init`). `join`: joins through `server_url`."),
    )
    .attribute(Attribute::string("server_url").optional().description(
        "For `join`: `https://<existing server address>:6443`. Use a server's own address, not a load-balancer \
         pool that contains this node (a node joining itself breaks, k3s#9661). Ignored by k3s after bootstrap.",
    ))
    .attribute(
        Attribute::string("token")
            .required()
            .sensitive()
            .requires_replace()
            .validate(Validator::not_empty())
            .description(
                "Cluster token. `init`: a short secret you choose. `join`: the first server's `join_token` (the \
                 secure CA-pinned form). Written to config.yaml only.",
            ),
    )
    .attribute(
        Attribute::string("version")
            .optional_computed()
            .use_state_for_unknown()
            .description(
                "k3s version, e.g. `v1.31.5+k3s1`. Changing it upgrades in place (one server at a time). Unset: \
                 the install script's default channel; reads back the installed version.",
            ),
    )
    .attribute(
        Attribute::string("node_name")
            .optional_computed()
            .use_state_for_unknown()
            .requires_replace()
            .description("Kubernetes node name (default: the host name)."),
    )
    .attribute(list_attr(
        "tls_san",
        "Extra SANs for the serving certificate on :6443 (e.g. the VIP). Verified on the live certificate; \
         when k3s keeps serving the old (sticky) certificate, the provider rotates it.",
    ))
    .attribute(list_attr("node_labels", "Node labels, `key=value` (`node-label`)."))
    .attribute(list_attr("node_taints", "Node taints, `key=value:Effect` (`node-taint`)."))
    .attribute(list_attr("disable", "Packaged components to disable, e.g. `servicelb`, `traefik`."))
    .attribute(
        Attribute::map("extra_config", Type::String)
            .optional()
            .description("Further config.yaml keys (string values), e.g. `{ \"write-kubeconfig-mode\" = \"0600\" }`."),
    )
    .attribute(Attribute::string("kubeconfig_server").optional().description(
        "Server URL written into the `kubeconfig` output, e.g. `https://<VIP>:6443`. Default \
         `https://<address>:6443`.",
    ))
    .attribute(
        Attribute::string("join_token")
            .computed()
            .sensitive()
            .use_state_for_unknown()
            .description("The secure `K10<ca-hash>::server:<password>` token for further servers and agents."),
    )
    .attribute(
        Attribute::string("ca_hash")
            .computed()
            .use_state_for_unknown()
            .description("SHA-256 of the cluster CA bundle, as pinned by `join_token`."),
    )
    .attribute(
        Attribute::list("serving_cert_sans", Type::String)
            .computed()
            .description("SANs of the certificate this server presents on :6443, read with a TLS handshake."),
    )
    .attribute(
        Attribute::string("kubeconfig")
            .computed()
            .sensitive()
            .description("Admin kubeconfig with its server set to `kubeconfig_server`."),
    )
    .attribute(Attribute::string("datastore").computed().description(
        "The datastore the server runs on, read from the host: `etcd` (embedded etcd, HA-capable) or `sqlite` \
         (the single-server default of a plain install). A `role = \"init\"` server found on `sqlite` plans an \
         in-place change to `etcd`: the seed's migration, which needs `allow_datastore_migration = true`.",
    ))
    .attribute(Attribute::bool("allow_datastore_migration").optional().description(
        "Allow converting this server from sqlite to embedded etcd in place (default false). The provider stops \
         k3s, copies the datastore directory and the token to `/var/backups/k3s/<UTC time>-sqlite-to-etcd/` on \
         the host, adds `cluster-init` to config.yaml, starts k3s (which migrates the data) and checks that the \
         datastore is etcd and every node is still there. One way: k3s cannot go back to sqlite.",
    ));
    install_attributes(s)
        .block(connection_block())
        .block(timeouts_block())
}

fn role_of(m: &ServerModel) -> &str {
    m.role.known().map(String::as_str).unwrap_or("init")
}

/// config.yaml wanted by the model.
fn desired_config(m: &ServerModel, node_name: &str) -> BTreeMap<String, serde_json::Value> {
    use serde_json::json;
    let mut c = BTreeMap::new();
    for (k, v) in m.extra_config.known().cloned().unwrap_or_default() {
        c.insert(k, json!(v));
    }
    if let Some(t) = m.token.known() {
        c.insert("token".into(), json!(t));
    }
    if role_of(m) == "init" {
        c.insert("cluster-init".into(), json!(true));
    } else if let Some(u) = m.server_url.known() {
        c.insert("server".into(), json!(u));
    }
    c.insert("node-name".into(), json!(node_name));
    for (key, list) in [
        ("tls-san", &m.tls_san),
        ("node-label", &m.node_labels),
        ("node-taint", &m.node_taints),
        ("disable", &m.disable),
    ] {
        let l = list_or_empty(list);
        if !l.is_empty() {
            c.insert(key.into(), json!(l));
        }
    }
    c
}

fn kube_server(m: &ServerModel) -> String {
    m.kubeconfig_server.known().cloned().unwrap_or_else(|| {
        let a = m
            .host
            .as_ref()
            .and_then(|c| c.address.known().cloned())
            .unwrap_or_default();
        if a.contains(':') {
            format!("https://[{a}]:6443")
        } else {
            format!("https://{a}:6443")
        }
    })
}

fn missing_sans(m: &ServerModel, sans: &[String]) -> Vec<String> {
    list_or_empty(&m.tls_san)
        .into_iter()
        .filter(|s| !sans.contains(s))
        .collect()
}

#[derive(Default)]
pub struct K3sServer;

impl K3sServer {
    /// Brings the host to the planned state (create and update).
    async fn converge(
        &self,
        ctx: &Context,
        mut plan: ServerModel,
        limit: std::time::Duration,
    ) -> Result<ServerModel, Diagnostics> {
        let started = std::time::Instant::now();
        if role_of(&plan) == "join" && plan.server_url.is_null() {
            return Err(Diagnostic::error(
                "server_url is required to join",
                "A server with role \"join\" needs `server_url = \"https://<existing server>:6443\"`.",
            )
            .at(attr("server_url"))
            .into());
        }
        let token = plan.token.known().cloned().unwrap_or_default();
        let _guard = k3s::lock::cluster_lock(&token).await;
        let session = connect(ctx, plan.host.as_ref()).await?;
        let mut probe = k3s::probe(&session, Role::Server)
            .await
            .map_err(|e| k3s_diag("Cannot inspect the host", e))?;
        let node_name = plan
            .node_name
            .known()
            .cloned()
            .unwrap_or_else(|| probe.hostname.clone());
        // The seed's migration: a first server still on sqlite gets cluster-init (gated, backed up, verified).
        let migrating = role_of(&plan) == "init"
            && probe.installed(Role::Server)
            && probe.datastore.as_deref() == Some("sqlite");
        let mut migration: Option<(String, Vec<String>)> = None;
        // SANs the migration's stop rotated the certificate for (reported once they are seen on the wire).
        let mut rotated: Vec<String> = Vec::new();
        if migrating {
            if plan.allow_datastore_migration.known() != Some(&true) {
                return Err(migration_gate(session.host()).into());
            }
            let before = k3s::cluster::node_names(&session)
                .await
                .map_err(|e| k3s_diag("Cannot list the cluster's nodes before the migration", e))?;
            // The SANs served now (k3s still runs): a wanted one missing would not stick through the restart
            // (the sticky certificate), so the rotation is done inside the migration's stop: one restart.
            let served = k3s::server_facts(&session)
                .await
                .map_err(|e| k3s_diag("Cannot read the server's state", e))?
                .serving_sans;
            let rotate = missing_sans(&plan, &served);
            let backup = k3s::cluster::stop_and_backup(&session, "sqlite-to-etcd")
                .await
                .map_err(|e| k3s_diag("Backing up the sqlite datastore failed", e))?;
            tracing::info!(
                host = session.host(),
                backup = backup.as_str(),
                "k3s datastore backed up before the sqlite to etcd migration"
            );
            ctx.warn(
                "Migrating the k3s datastore from sqlite to embedded etcd",
                format!(
                    "{} ran on sqlite. The provider stopped k3s, backed up the datastore directory and the token \
                     to {backup} on the host, added cluster-init to config.yaml and restarted k3s. Nodes before: \
                     {}.",
                    session.host(),
                    before.join(", ")
                ),
            );
            if !rotate.is_empty() {
                k3s::cluster::certificate_rotate_stopped(&session)
                    .await
                    .map_err(|e| k3s_diag("Cannot rotate the serving certificate", e))?;
                tracing::info!(
                    host = session.host(),
                    sans = rotate.join(",").as_str(),
                    "serving certificate rotated while k3s is stopped for the migration"
                );
                rotated = rotate;
            }
            probe.active = "inactive".into();
            migration = Some((backup, before));
        }
        let cfg = k3s::render_config(&desired_config(&plan, &node_name));
        converge_node(
            ctx,
            &session,
            Role::Server,
            &probe,
            &node_name,
            &cfg,
            plan.version.known().map(String::as_str),
            InstallAttrs {
                script: &plan.install_script,
                url: &plan.install_script_url,
                env: &plan.install_env,
                binary_path: &plan.airgap_binary_path,
            },
            limit,
        )
        .await?;
        let remaining = |min: u64| {
            ready_budget(limit)
                .saturating_sub(started.elapsed())
                .max(std::time::Duration::from_secs(min))
        };
        // etcd admits one learner at a time: return only once this server votes, so the next join is not refused.
        if role_of(&plan) == "join" || migration.is_some() {
            k3s::cluster::wait_voter(&session, &node_name, remaining(10), ctx.cancellation())
                .await
                .map_err(|e| k3s_diag("The server did not become a voting etcd member", e))?;
        }
        if let Some((backup, before)) = &migration {
            verify_migration(&session, backup, before).await?;
        }
        let mut facts = k3s::server_facts(&session)
            .await
            .map_err(|e| k3s_diag("Cannot read the server's state", e))?;
        let missing = missing_sans(&plan, &facts.serving_sans);
        if !rotated.is_empty() && missing.is_empty() {
            ctx.warn(
                "Rotated the k3s serving certificate",
                format!(
                    "The certificate on :6443 of {} lacked the configured tls_san {} (k3s keeps serving SANs in the \
                     kube-system/k3s-serving secret and its disk cache, so a new tls-san does not reach it by a \
                     restart alone). k3s being stopped for the migration anyway, the provider ran `k3s certificate \
                     rotate --service k3s-server` then (backup of the old certificates in \
                     /var/lib/rancher/k3s/server/tls-<unix time>); the migration's one restart serves the SAN.",
                    session.host(),
                    rotated.join(", ")
                ),
            );
        }
        if !missing.is_empty() {
            facts =
                fix_serving_cert(ctx, &session, &plan, &node_name, &missing, remaining(20)).await?;
        }
        let probe = k3s::probe(&session, Role::Server)
            .await
            .map_err(|e| k3s_diag("Cannot inspect the host", e))?;
        plan.id = host_id(plan.host.as_ref());
        plan.node_name = Tf::Known(node_name);
        plan.version = match probe.version {
            Some(v) => Tf::Known(v),
            None => Tf::Null,
        };
        plan.datastore = probe.datastore.map(Tf::Known).unwrap_or(Tf::Null);
        fill_facts(&mut plan, facts);
        Ok(plan)
    }
}

/// The error of a migration that was not allowed.
fn migration_gate(host: &str) -> Diagnostic {
    Diagnostic::error(
        "sqlite to etcd migration not allowed",
        format!(
            "{host} runs k3s on sqlite, and role \"init\" needs embedded etcd (cluster-init). Applying converts the \
             datastore in place, one way: the provider stops k3s, backs up the datastore directory and the token \
             to /var/backups/k3s/<UTC time>-sqlite-to-etcd/ on the host, adds cluster-init to config.yaml and \
             restarts k3s, then checks that the datastore is etcd and every node is still there. To allow it, set \
             `allow_datastore_migration = true` on this resource."
        ),
    )
    .at(attr("allow_datastore_migration"))
}

/// After the migration: the datastore must be etcd and no node may be missing.
async fn verify_migration(
    session: &Session,
    backup: &str,
    before: &[String],
) -> Result<(), Diagnostics> {
    let probe = k3s::probe(session, Role::Server)
        .await
        .map_err(|e| k3s_diag("Cannot inspect the host after the migration", e))?;
    let after = k3s::cluster::node_names(session)
        .await
        .map_err(|e| k3s_diag("Cannot list the cluster's nodes after the migration", e))?;
    let lost: Vec<&String> = before.iter().filter(|n| !after.contains(n)).collect();
    if probe.datastore.as_deref() != Some("etcd") || !lost.is_empty() {
        return Err(Diagnostic::error(
            "The sqlite to etcd migration did not check out",
            format!(
                "After the restart {} reports datastore {:?} and nodes [{}] (before: [{}]; missing: [{}]). The \
                 pre-migration datastore and token are in {backup} on the host: to go back, stop k3s, remove \
                 cluster-init from config.yaml, replace {} with the backup's db directory and start k3s.",
                session.host(),
                probe.datastore.as_deref().unwrap_or("none"),
                after.join(", "),
                before.join(", "),
                lost.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                k3s::DB_DIR,
            ),
        )
        .into());
    }
    tracing::info!(
        host = session.host(),
        nodes = after.len(),
        "k3s datastore migrated to etcd; every node is still there"
    );
    Ok(())
}

/// A wanted `tls-san` is missing on the wire after the restart (the sticky certificate). First the documented
/// cure, `k3s certificate rotate --service k3s-server`; if the SAN is still missing, the blunt one (delete the
/// shared secret and the disk cache). Says which was done.
async fn fix_serving_cert(
    ctx: &Context,
    session: &Session,
    plan: &ServerModel,
    node_name: &str,
    missing: &[String],
    budget: std::time::Duration,
) -> Result<k3s::ServerFacts, Diagnostics> {
    let cancel = CancellationToken::new();
    k3s::cluster::certificate_rotate(session)
        .await
        .map_err(|e| k3s_diag("Cannot rotate the serving certificate", e))?;
    k3s::wait_ready(session, Role::Server, node_name, budget, &cancel)
        .await
        .map_err(|e| k3s_diag("k3s server did not become ready after rotation", e))?;
    let facts = k3s::server_facts(session)
        .await
        .map_err(|e| k3s_diag("Cannot read the server's state", e))?;
    let still = missing_sans(plan, &facts.serving_sans);
    if still.is_empty() {
        tracing::info!(
            host = session.host(),
            sans = missing.join(",").as_str(),
            "tls-san missing after restart; fixed with k3s certificate rotate"
        );
        ctx.warn(
            "Rotated the k3s serving certificate",
            format!(
                "The certificate on :6443 of {} lacked the configured tls_san {} after the restart (k3s keeps \
                 serving SANs in the kube-system/k3s-serving secret and its disk cache). The provider ran `k3s \
                 certificate rotate --service k3s-server` (backup of the old certificates in \
                 /var/lib/rancher/k3s/server/tls-<unix time>) and restarted k3s; the SAN is now served.",
                session.host(),
                missing.join(", ")
            ),
        );
        return Ok(facts);
    }
    ctx.warn(
        "Regenerated the k3s serving certificate",
        format!(
            "The certificate on :6443 of {} still lacked {} after `k3s certificate rotate`. The provider deleted the \
             kube-system/k3s-serving secret, moved the disk cache dynamic-cert.json aside and restarted k3s so the \
             certificate is generated again.",
            session.host(),
            still.join(", ")
        ),
    );
    tracing::info!(
        host = session.host(),
        sans = still.join(",").as_str(),
        "tls-san still missing after k3s certificate rotate; deleting the k3s-serving secret and cache"
    );
    rotate_serving_cert(session, node_name, budget).await?;
    let facts = k3s::server_facts(session)
        .await
        .map_err(|e| k3s_diag("Cannot read the server's state", e))?;
    let still = missing_sans(plan, &facts.serving_sans);
    if !still.is_empty() {
        return Err(Diagnostic::error(
            "tls_san not served",
            format!(
                "After rotating the serving certificate, {} still does not present {} on :6443.",
                session.host(),
                still.join(", ")
            ),
        )
        .at(attr("tls_san"))
        .into());
    }
    Ok(facts)
}

fn fill_facts(m: &mut ServerModel, facts: k3s::ServerFacts) {
    m.ca_hash = facts
        .token
        .as_deref()
        .and_then(k3s::token_ca_hash)
        .map(Tf::Known)
        .unwrap_or(Tf::Null);
    m.join_token = facts.token.map(Tf::Known).unwrap_or(Tf::Null);
    m.serving_cert_sans = Tf::Known(facts.serving_sans);
    let server = kube_server(m);
    m.kubeconfig = facts
        .kubeconfig
        .map(|k| Tf::Known(k3s::rewrite_kubeconfig(&k, &server)))
        .unwrap_or(Tf::Null);
}

/// The blunt cure that works when `tls-san` does not stick: delete the shared secret and the disk cache, restart.
async fn rotate_serving_cert(
    session: &Session,
    node_name: &str,
    budget: std::time::Duration,
) -> Result<(), Diagnostics> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let script = format!(
        "k3s kubectl -n kube-system delete secret k3s-serving --ignore-not-found >/dev/null 2>&1; \
         f=/var/lib/rancher/k3s/server/tls/dynamic-cert.json; if [ -f $f ]; then mv -f $f $f.bak-{ts}; fi; \
         systemctl restart --no-block k3s"
    );
    session
        .run_sudo(&script, None)
        .await
        .map_err(|e| k3s_diag("Cannot rotate the serving certificate", e.into()))?;
    let cancel = CancellationToken::new();
    k3s::wait_ready(session, Role::Server, node_name, budget, &cancel)
        .await
        .map_err(|e| k3s_diag("k3s server did not become ready after rotation", e))
}

#[async_trait]
impl Resource for K3sServer {
    type Model = ServerModel;
    type Identity = ServerIdentity;

    fn type_name(&self) -> &'static str {
        TYPE
    }
    fn schema(&self) -> Schema {
        schema()
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(address_identity_schema())
    }
    fn identity(&self, state: &ServerModel) -> Option<ServerIdentity> {
        host_identity(&state.id)
    }
    fn timeouts(&self, m: &ServerModel) -> Timeouts {
        Timeouts::from_model(Timeouts::default(), m.timeouts.as_ref())
    }
    fn validate(&self, config: &ServerModel, diags: &mut Diagnostics) {
        if config.role.known().map(String::as_str) == Some("join") && config.server_url.is_null() {
            diags.push(
                Diagnostic::error(
                    "server_url is required to join",
                    "A server with role \"join\" needs `server_url = \"https://<existing server>:6443\"`.",
                )
                .at(attr("server_url")),
            );
        }
        check_managed_keys(&config.extra_config, MANAGED, diags);
    }
    async fn modify_plan(
        &self,
        ctx: &Context,
        plan: &mut Plan<ServerModel>,
    ) -> Result<(), Diagnostics> {
        plan_common(plan, |m| &m.version, |m| m.host.as_ref())?;
        let Some(prior) = plan.prior.clone() else {
            return Ok(());
        };
        // The seed's migration: the first server found on sqlite moves to etcd in place.
        let migrating = role_of(&plan.planned) == "init"
            && prior.datastore.known().map(String::as_str) == Some("sqlite");
        if migrating {
            plan.planned.datastore = Tf::Known("etcd".into());
            if plan.planned.allow_datastore_migration.known() != Some(&true) {
                let host = prior
                    .host
                    .as_ref()
                    .and_then(|h| h.address.known().cloned())
                    .unwrap_or_default();
                ctx.warn(
                    "sqlite to etcd migration planned but not allowed",
                    migration_gate(&host).detail,
                );
            }
        } else {
            plan.planned.datastore = prior.datastore.clone();
        }
        // A wanted SAN missing on the wire is drift: plan an update that restarts/rotates.
        if let Tf::Known(sans) = &prior.serving_cert_sans {
            let missing = missing_sans(&plan.planned, sans);
            if !missing.is_empty() {
                plan.planned.serving_cert_sans = Tf::Unknown;
                plan.planned.kubeconfig = Tf::Unknown;
                let how = if migrating
                    && plan.planned.allow_datastore_migration.known() == Some(&true)
                {
                    "Applying migrates the datastore, which stops k3s anyway: while it is stopped the provider \
                     also runs `k3s certificate rotate --service k3s-server` (k3s keeps the certificate sticky), \
                     so the one restart serves the new SAN."
                } else {
                    "Applying restarts k3s with the new config.yaml; if the certificate still lacks it (k3s keeps \
                     it sticky), the provider runs `k3s certificate rotate --service k3s-server` and restarts k3s \
                     again."
                };
                ctx.warn(
                    "tls_san not yet on the serving certificate",
                    format!(
                        "{} is not on the certificate this server presents on :6443. {how}",
                        missing.join(", ")
                    ),
                );
            }
        }
        // A version change reinstalls; everything read back may change.
        if plan.planned.version.is_known()
            && plan.planned.version != prior.version
            && prior.version.is_known()
        {
            plan.planned.serving_cert_sans = Tf::Unknown;
            plan.planned.kubeconfig = Tf::Unknown;
        }
        if plan.planned.kubeconfig_server != prior.kubeconfig_server {
            plan.planned.kubeconfig = Tf::Unknown;
        }
        Ok(())
    }
    async fn create(&self, ctx: &Context, plan: ServerModel) -> Result<ServerModel, Diagnostics> {
        let limit = self.timeouts(&plan).create;
        self.converge(ctx, plan, limit).await
    }
    async fn read(
        &self,
        ctx: &Context,
        state: ServerModel,
    ) -> Result<Option<ServerModel>, Diagnostics> {
        let Some((session, probe)) = open_installed(ctx, state.host.as_ref(), Role::Server).await?
        else {
            return Ok(None);
        };
        let mut m = state.clone();
        m.id = host_id(state.host.as_ref());
        m.version = probe.version.clone().map(Tf::Known).unwrap_or(Tf::Null);
        m.datastore = probe.datastore.clone().map(Tf::Known).unwrap_or(Tf::Null);
        let cfg = read_config(&probe);
        if let Some(cfg) = &cfg {
            let s = |k: &str| cfg_str(cfg, k);
            let cluster_init =
                matches!(cfg.get("cluster-init"), Some(serde_json::Value::Bool(true)))
                    || s("cluster-init").as_deref() == Some("true");
            if cluster_init {
                m.role = Tf::Known("init".into());
            } else if let Some(u) = s("server") {
                m.role = Tf::Known("join".into());
                m.server_url = Tf::Known(u);
            } else {
                // A single server without cluster-init (sqlite, or etcd already): the cluster's first server.
                m.role = Tf::Known("init".into());
            }
            m.tls_san = list_back(strings_of(cfg.get("tls-san")), &state.tls_san);
            m.disable = list_back(strings_of(cfg.get("disable")), &state.disable);
        }
        NodeFields {
            token: &mut m.token,
            node_name: &mut m.node_name,
            node_labels: &mut m.node_labels,
            node_taints: &mut m.node_taints,
            extra_config: &mut m.extra_config,
        }
        .read_back(cfg.as_ref(), MANAGED);
        if m.node_name.is_null() {
            m.node_name = Tf::Known(probe.hostname.clone());
        }
        if m.role.is_null() {
            m.role = Tf::Known("init".into());
        }
        let facts = k3s::server_facts(&session)
            .await
            .map_err(|e| k3s_diag("Cannot read the server's state", e))?;
        fill_facts(&mut m, facts);
        if probe.active != "active" {
            ctx.warn(
                "k3s is not running",
                format!(
                    "The k3s unit on {} is {:?}; the next apply restarts it.",
                    session.host(),
                    probe.active
                ),
            );
            m.serving_cert_sans = Tf::Known(vec![]);
        }
        Ok(Some(m))
    }
    async fn update(
        &self,
        ctx: &Context,
        _prior: ServerModel,
        plan: ServerModel,
    ) -> Result<ServerModel, Diagnostics> {
        let limit = self.timeouts(&plan).update;
        self.converge(ctx, plan, limit).await
    }
    async fn delete(&self, ctx: &Context, state: ServerModel) -> Result<(), Diagnostics> {
        let started = std::time::Instant::now();
        let token = state.token.known().cloned().unwrap_or_default();
        let _guard = k3s::lock::cluster_lock(&token).await;
        let session = connect(ctx, state.host.as_ref()).await?;
        if role_of(&state) == "join" {
            // Leave the cluster through the peer (`server_url`) with this server's admin credentials: the Node
            // deletion removes its etcd member, so the remaining servers keep their quorum.
            if let (Some(url), Some(name)) = (state.server_url.known(), state.node_name.known()) {
                // Quorum guard: refuse when the servers left could not keep etcd quorum. A cluster that cannot be
                // asked (e.g. everything is being destroyed) does not block the removal.
                let reachable = match k3s::etcd_servers(&session, k3s::KUBECONFIG_PATH, url).await {
                    Ok(servers) => {
                        if let Err(why) = k3s::quorum_after_removal(&servers, name) {
                            return Err(Diagnostic::error(
                                "Removing this server would lose etcd quorum",
                                why,
                            )
                            .into());
                        }
                        true
                    }
                    Err(e) => {
                        ctx.warn(
                            "Cluster membership not checked",
                            format!(
                                "Listing the servers through {url} failed ({e}); removing {name} without the \
                                 quorum check."
                            ),
                        );
                        false
                    }
                };
                // etcd's refusals are transient (a peer that reconnected < 5 s ago): retried until the delete
                // timeout, keeping a margin for the uninstall. A removal still refused leaves the node running.
                let limit = self.timeouts(&state).delete;
                // A cluster that could not even be listed gets one short attempt (nothing to keep quorum for
                // through `url`), as before.
                let budget = if reachable {
                    limit
                        .saturating_sub(started.elapsed() + std::time::Duration::from_secs(30))
                        .max(std::time::Duration::from_secs(10))
                } else {
                    std::time::Duration::from_secs(5)
                };
                let left = k3s::leave_cluster(
                    &session,
                    Role::Server,
                    k3s::KUBECONFIG_PATH,
                    url,
                    name,
                    budget,
                    ctx.cancellation(),
                )
                .await
                .map_err(|e| k3s_diag("Cannot remove the node from the cluster", e))?;
                match left {
                    Ok(left) if left.refused > 0 => {
                        tracing::info!(
                            host = session.host(),
                            refused = left.refused,
                            "etcd member removal refused at first; removed on a retry"
                        );
                        ctx.warn(
                            "etcd refused the member removal at first",
                            format!(
                                "etcd refused to remove the member of {name} {} time(s) (last answer: {}); this \
                                 is transient (etcd refuses removals while the cluster is unhealthy or a peer \
                                 reconnected less than 5 s ago). The provider retried: the member left, then k3s \
                                 was uninstalled.",
                                left.refused, left.last_refusal
                            ),
                        );
                    }
                    Ok(_) => {}
                    Err(detail) if !reachable => ctx.warn(
                        "Node not removed from the cluster",
                        format!(
                            "Deleting node {name} through {url} failed: {detail}. The cluster could not be asked \
                             before either; k3s is uninstalled. If the cluster lives on, remove the node with \
                             `kubectl delete node {name}` from a healthy server."
                        ),
                    ),
                    Err(detail) => {
                        return Err(Diagnostic::error(
                            "etcd refused to remove the member",
                            format!(
                                "etcd refused to remove the member of {name} through {url}: {detail}. The node is \
                                 still in the cluster and k3s still runs on it; nothing was uninstalled, so the \
                                 cluster keeps its quorum. Retry the apply once every server is healthy (or raise \
                                 `timeouts {{ delete }}`)."
                            ),
                        )
                        .into());
                    }
                }
            }
        }
        k3s::uninstall(&session, Role::Server)
            .await
            .map_err(|e| k3s_diag("k3s uninstall failed", e))
    }
    async fn import(&self, _ctx: &Context, id: &str) -> Result<ServerModel, Diagnostics> {
        Ok(ServerModel {
            id: Tf::Known(id.to_string()),
            host: host_for(id),
            ..Default::default()
        })
    }
    async fn import_identity(
        &self,
        ctx: &Context,
        identity: ServerIdentity,
    ) -> Result<ServerModel, Diagnostics> {
        self.import(ctx, &identity.address).await
    }
}

pub fn register(r: &mut Registry) {
    r.resource(K3sServer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid() {
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }

    #[test]
    fn init_and_join_configs() {
        let mut m = ServerModel {
            role: Tf::Known("init".into()),
            token: Tf::Known("pw".into()),
            tls_san: Tf::Known(vec!["192.0.2.50".into()]),
            ..Default::default()
        };
        let c = desired_config(&m, "n1");
        assert_eq!(c["cluster-init"], serde_json::json!(true));
        assert!(!c.contains_key("server"));
        assert_eq!(c["tls-san"], serde_json::json!(["192.0.2.50"]));
        m.role = Tf::Known("join".into());
        m.server_url = Tf::Known("https://192.0.2.2:6443".into());
        let c = desired_config(&m, "n2");
        assert!(!c.contains_key("cluster-init"));
        assert_eq!(c["server"], serde_json::json!("https://192.0.2.2:6443"));
        assert_eq!(c["node-name"], serde_json::json!("n2"));
    }
}
