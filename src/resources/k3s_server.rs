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

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::k3s_common::*;
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
    pub host: Option<ConnectionModel>,
    pub timeouts: Option<TimeoutsModel>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerIdentity {
    pub address: String,
}

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
    );
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

pub struct K3sServer;

impl K3sServer {
    /// Brings the host to the planned state (create and update).
    async fn converge(
        &self,
        ctx: &Context,
        mut plan: ServerModel,
        limit: std::time::Duration,
    ) -> Result<ServerModel, Diagnostics> {
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
        let probe = k3s::probe(&session, Role::Server)
            .await
            .map_err(|e| k3s_diag("Cannot inspect the host", e))?;
        let node_name = plan
            .node_name
            .known()
            .cloned()
            .unwrap_or_else(|| probe.hostname.clone());
        let cfg = k3s::render_config(&desired_config(&plan, &node_name));
        let changed = k3s::write_config(&session, &cfg, probe.config.as_deref())
            .await
            .map_err(|e| k3s_diag("Cannot write config.yaml", e))?;
        let want_version = plan.version.known().cloned();
        let needs_install = !probe.installed(Role::Server)
            || (want_version.is_some() && want_version != probe.version);
        if needs_install {
            let src = install_source(
                &plan.install_script,
                &plan.install_script_url,
                &plan.install_env,
                &plan.airgap_binary_path,
            )?;
            k3s::install(&session, Role::Server, want_version.as_deref(), &src)
                .await
                .map_err(|e| k3s_diag("k3s install failed", e))?;
        }
        let running = probe.active == "active";
        if !running || changed || needs_install {
            k3s::start(&session, Role::Server, running)
                .await
                .map_err(|e| k3s_diag("Cannot start k3s", e))?;
        }
        k3s::wait_ready(
            &session,
            Role::Server,
            &node_name,
            ready_budget(limit),
            ctx.cancellation(),
        )
        .await
        .map_err(|e| k3s_diag("k3s server did not become ready", e))?;
        let mut facts = k3s::server_facts(&session)
            .await
            .map_err(|e| k3s_diag("Cannot read the server's state", e))?;
        let missing = missing_sans(&plan, &facts.serving_sans);
        if !missing.is_empty() {
            ctx.warn(
                "Rotating the k3s serving certificate",
                format!(
                    "The certificate on :6443 of {} lacks the configured tls_san {} after the restart (k3s keeps \
                     serving SANs in the kube-system/k3s-serving secret and its disk cache). The provider deleted \
                     both and restarted k3s so the certificate is generated again.",
                    session.host(),
                    missing.join(", ")
                ),
            );
            rotate_serving_cert(&session, &node_name, limit).await?;
            facts = k3s::server_facts(&session)
                .await
                .map_err(|e| k3s_diag("Cannot read the server's state", e))?;
            let still = missing_sans(&plan, &facts.serving_sans);
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
        }
        let probe = k3s::probe(&session, Role::Server)
            .await
            .map_err(|e| k3s_diag("Cannot inspect the host", e))?;
        plan.id = plan
            .host
            .as_ref()
            .map(|c| c.address.clone())
            .unwrap_or(Tf::Null);
        plan.node_name = Tf::Known(node_name);
        plan.version = match probe.version {
            Some(v) => Tf::Known(v),
            None => Tf::Null,
        };
        fill_facts(&mut plan, facts);
        Ok(plan)
    }
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
    limit: std::time::Duration,
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
    k3s::wait_ready(
        session,
        Role::Server,
        node_name,
        ready_budget(limit),
        &cancel,
    )
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
        Some(IdentitySchema::new().attribute(IdentityAttribute::string(
            "address",
            "The host address (`host.address`).",
        )))
    }
    fn identity(&self, state: &ServerModel) -> Option<ServerIdentity> {
        state
            .id
            .known()
            .map(|a| ServerIdentity { address: a.clone() })
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
        if let Some(m) = config.extra_config.known() {
            for k in m.keys() {
                if MANAGED.contains(&k.as_str()) {
                    diags.push(
                        Diagnostic::error(
                            "Key managed by a dedicated attribute",
                            format!("Set `{k}` through its attribute, not extra_config."),
                        )
                        .at(attr("extra_config")),
                    );
                }
            }
        }
    }
    async fn modify_plan(
        &self,
        _ctx: &Context,
        plan: &mut Plan<ServerModel>,
    ) -> Result<(), Diagnostics> {
        let Some(prior) = plan.prior.clone() else {
            return Ok(());
        };
        if let (Some(from), Some(to)) = (prior.version.known(), plan.planned.version.known()) {
            if from != to {
                k3s::check_upgrade(from, to).map_err(|detail| {
                    Diagnostics::from(
                        Diagnostic::error("Unsupported k3s version change", detail)
                            .at(attr("version")),
                    )
                })?;
            }
        }
        let pa = prior.host.as_ref().map(|c| c.address.clone());
        let na = plan.planned.host.as_ref().map(|c| c.address.clone());
        if pa != na {
            plan.require_replace(attr("host"));
        }
        // A wanted SAN missing on the wire is drift: plan an update that restarts/rotates.
        if let Tf::Known(sans) = &prior.serving_cert_sans {
            if !missing_sans(&plan.planned, sans).is_empty() {
                plan.planned.serving_cert_sans = Tf::Unknown;
                plan.planned.kubeconfig = Tf::Unknown;
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
        let session = connect(ctx, state.host.as_ref()).await?;
        let probe = k3s::probe(&session, Role::Server)
            .await
            .map_err(|e| k3s_diag("Cannot inspect the host", e))?;
        if !probe.installed(Role::Server) {
            return Ok(None);
        }
        let mut m = state.clone();
        m.id = state
            .host
            .as_ref()
            .map(|c| c.address.clone())
            .unwrap_or(Tf::Null);
        m.version = probe.version.clone().map(Tf::Known).unwrap_or(Tf::Null);
        match probe.config.as_deref().and_then(k3s::parse_config) {
            Some(cfg) => {
                let s = |k: &str| cfg.get(k).and_then(|v| v.as_str()).map(str::to_string);
                if let Some(t) = s("token") {
                    m.token = Tf::Known(t);
                }
                if cfg.get("cluster-init").and_then(|v| v.as_bool()) == Some(true) {
                    m.role = Tf::Known("init".into());
                } else if let Some(u) = s("server") {
                    m.role = Tf::Known("join".into());
                    m.server_url = Tf::Known(u);
                }
                if let Some(n) = s("node-name") {
                    m.node_name = Tf::Known(n);
                }
                m.tls_san = list_back(strings_of(cfg.get("tls-san")), &state.tls_san);
                m.node_labels = list_back(strings_of(cfg.get("node-label")), &state.node_labels);
                m.node_taints = list_back(strings_of(cfg.get("node-taint")), &state.node_taints);
                m.disable = list_back(strings_of(cfg.get("disable")), &state.disable);
                let extra: BTreeMap<String, String> = cfg
                    .iter()
                    .filter(|(k, _)| !MANAGED.contains(&k.as_str()))
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect();
                m.extra_config = if extra.is_empty()
                    && !matches!(&state.extra_config, Tf::Known(e) if !e.is_empty())
                {
                    state.extra_config.clone()
                } else {
                    Tf::Known(extra)
                };
            }
            None => {
                // Not our file (hand-edited YAML or missing): make it differ so the plan rewrites it.
                m.extra_config = Tf::Known(BTreeMap::from([(
                    "# config.yaml".to_string(),
                    "not written by this provider".to_string(),
                )]));
            }
        }
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
        let token = state.token.known().cloned().unwrap_or_default();
        let _guard = k3s::lock::cluster_lock(&token).await;
        let session = connect(ctx, state.host.as_ref()).await?;
        if role_of(&state) == "join" {
            // Leave the cluster through the peer (`server_url`) with this server's admin credentials: the Node
            // deletion removes its etcd member, so the remaining servers keep their quorum.
            if let (Some(url), Some(name)) = (state.server_url.known(), state.node_name.known()) {
                // Quorum guard: refuse when the servers left could not keep etcd quorum. A cluster that cannot be
                // asked (e.g. everything is being destroyed) does not block the removal.
                match k3s::etcd_servers(&session, k3s::KUBECONFIG_PATH, url).await {
                    Ok(servers) => {
                        if let Err(why) = k3s::quorum_after_removal(&servers, name) {
                            return Err(Diagnostic::error(
                                "Removing this server would lose etcd quorum",
                                why,
                            )
                            .into());
                        }
                    }
                    Err(e) => ctx.warn(
                        "Cluster membership not checked",
                        format!(
                            "Listing the servers through {url} failed ({e}); removing {name} without the quorum \
                             check."
                        ),
                    ),
                }
                let left =
                    k3s::leave_cluster(&session, Role::Server, k3s::KUBECONFIG_PATH, url, name)
                        .await
                        .map_err(|e| k3s_diag("Cannot remove the node from the cluster", e))?;
                if let Err(detail) = left {
                    ctx.warn(
                        "Node not removed from the cluster",
                        format!(
                            "Deleting node {name} through {url} failed: {detail}. Its etcd member may remain; \
                             remove it with `kubectl delete node {name}` from a healthy server."
                        ),
                    );
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
            host: Some(ConnectionModel {
                address: Tf::Known(id.to_string()),
                ..Default::default()
            }),
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
