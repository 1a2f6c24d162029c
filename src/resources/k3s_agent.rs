//! `homelab_k3s_agent`: a k3s agent (worker) installed and configured over SSH.
//!
//! The agent registers through `server_url` — the fixed registration address, typically the VIP — and then talks
//! to the servers directly through its client-side load balancer on `127.0.0.1:6444`. That load balancer's state
//! file is read back into `lb_server_url` / `lb_server_addresses`, so state shows that the VIP is only used for
//! registration (and as a last-resort default). Agents converge in parallel (no cluster lock).
//!
//! The token is `token` (in state; Terraform 1.0.3) or the write-only `token_wo` + `token_wo_version`
//! (Terraform ≥ 1.11), which is written to config.yaml but never kept in, or read back into, state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::k3s_common::*;
use super::k3s_host::*;
use crate::framework::*;
use crate::k3s::{self, agent::AgentWant, kube::Creds, Role};

pub const TYPE: &str = "homelab_k3s_agent";

const MANAGED: &[&str] = &["token", "server", "node-name", "node-label", "node-taint"];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentModel {
    pub id: Tf<String>,
    pub server_url: Tf<String>,
    pub token: Tf<String>,
    pub token_wo: Tf<String>,
    pub token_wo_version: Tf<i64>,
    pub version: Tf<String>,
    pub node_name: Tf<String>,
    pub node_labels: Tf<Vec<String>>,
    pub node_taints: Tf<Vec<String>>,
    pub extra_config: Tf<BTreeMap<String, String>>,
    pub install_script: Tf<String>,
    pub install_script_url: Tf<String>,
    pub install_env: Tf<BTreeMap<String, String>>,
    pub airgap_binary_path: Tf<String>,
    pub cluster_kubeconfig: Tf<String>,
    pub lb_server_url: Tf<String>,
    pub lb_server_addresses: Tf<Vec<String>>,
    pub certificates_expire: Tf<String>,
    #[serde(default)]
    pub registry_mirror: Vec<RegistryMirrorModel>,
    #[serde(default)]
    pub registry_config: Vec<RegistryConfigModel>,
    pub host: Option<ConnectionModel>,
    pub timeouts: Option<TimeoutsModel>,
}

/// The node's identity: its host address.
pub type AgentIdentity = HostIdentity;

pub fn schema() -> Schema {
    let s = Schema::new(
        "A k3s agent on a host reached over SSH, registering through `server_url` (the fixed registration \
         address, e.g. the VIP). Installs never block on the unit; readiness is polled by the provider.",
    )
    .attribute(
        Attribute::string("id")
            .computed()
            .use_state_for_unknown()
            .description("The host address (`host.address`)."),
    )
    .attribute(
        Attribute::string("server_url")
            .required()
            .validate(Validator::not_empty())
            .description("Registration address, e.g. `https://<VIP>:6443`."),
    )
    .attribute(
        Attribute::string("token")
            .optional()
            .sensitive()
            .validate(token_format())
            .description(
                "The servers' `join_token` (secure, CA-pinned form), kept in state (the Terraform 1.0.3 path). \
                 Written to config.yaml only. Set exactly one of `token` and `token_wo`.",
            ),
    )
    .attribute(
        Attribute::string("version")
            .optional_computed()
            .use_state_for_unknown()
            .description(
                "k3s version; changing it upgrades in place. Unset: the install script's default. An agent may not \
                 run a newer version than the servers (Kubernetes forbids a kubelet newer than the API servers): \
                 the apply refuses such a version, reading the servers' versions with `cluster_kubeconfig` when \
                 set, else with the agent's own kubelet credentials (a new agent is checked right after it \
                 registers, and stopped again if it is too new). Upgrade servers first, then \
                 agents: in one apply Terraform orders the updates that way when the agent references the servers \
                 (e.g. `token = homelab_k3s_server.init.join_token` plus `depends_on` on the other servers).",
            ),
    )
    .attribute(
        Attribute::string("node_name")
            .optional_computed()
            .use_state_for_unknown()
            .requires_replace()
            .description("Kubernetes node name (default: the host name)."),
    )
    .attribute(
        Attribute::list("node_labels", Type::String)
            .optional()
            .description(
                "Node labels, `key=value`. Set on the Node through the API and read back from it (a label \
                 changed by hand shows in the plan; labels other controllers add are left alone); also in \
                 config.yaml for registration, except `kubernetes.io`/`k8s.io` ones such as \
                 `node-role.kubernetes.io/worker`, which a kubelet may not set: those need `cluster_kubeconfig`.",
            ),
    )
    .attribute(
        Attribute::list("node_taints", Type::String)
            .optional()
            .description(
                "Node taints, `key=value:Effect` or `key:Effect` (NoSchedule, PreferNoSchedule, NoExecute). Given \
                 at registration through config.yaml; changing them later needs `cluster_kubeconfig` (a kubelet \
                 may not change its own taints). Read back from the Node: every taint but Kubernetes' own \
                 `node.kubernetes.io/*`.",
            ),
    )
    .attribute(
        Attribute::map("extra_config", Type::String)
            .optional()
            .description("Further config.yaml keys (string values)."),
    )
    .attribute(
        Attribute::string("cluster_kubeconfig")
            .optional()
            .sensitive()
            .description(
                "An admin kubeconfig (e.g. a server's `kubeconfig`), used before installing or upgrading to check \
                 that the servers are not older than this agent's `version`, to change its taints and \
                 `kubernetes.io` labels, and on destroy to cordon, drain and \
                 delete this node from the cluster before uninstalling. Unset: the agent is only uninstalled and its Node \
                 stays behind (NotReady).",
            ),
    )
    .attribute(Attribute::string("certificates_expire").computed().description(
        "When the first of this agent's k3s certificates expires (RFC 3339, UTC; read with `openssl x509 -enddate` \
         from /var/lib/rancher/k3s/agent). A refresh warns from 90 days before; k3s renews such certificates when \
         the agent restarts.",
    ))
    .attribute(
        Attribute::string("lb_server_url")
            .computed()
            .description("`ServerURL` of the agent's client-side load balancer (the registration address)."),
    )
    .attribute(
        Attribute::list("lb_server_addresses", Type::String)
            .computed()
            .description(
                "The servers the agent really talks to (`ServerAddresses` of its client-side load balancer).",
            ),
    );
    registry_blocks(install_attributes(token_wo_attributes(s)))
        .block(connection_block())
        .block(timeouts_block())
}

/// config.yaml wanted by the model (the sequence adds `node-name` once it knows the host's name).
fn desired_config(m: &AgentModel) -> BTreeMap<String, serde_json::Value> {
    use serde_json::json;
    let mut c = BTreeMap::new();
    for (k, v) in m.extra_config.known().cloned().unwrap_or_default() {
        c.insert(k, json!(v));
    }
    if let Some(t) = wanted_token(&m.token, &m.token_wo) {
        c.insert("token".into(), json!(t));
    }
    if let Some(u) = m.server_url.known() {
        c.insert("server".into(), json!(u));
    }
    for (key, l) in [
        ("node-label", registrable_labels(&m.node_labels)),
        ("node-taint", list_or_empty(&m.node_taints)),
    ] {
        if !l.is_empty() {
            c.insert(key.into(), json!(l));
        }
    }
    c
}

/// Without `cluster_kubeconfig` the agent's Node is changed with the kubelet's credentials, which Kubernetes lets
/// set labels outside `kubernetes.io`/`k8s.io` and never change taints: refuse at plan what would fail at apply.
fn check_marks_creds(plan: &Plan<AgentModel>) -> Result<(), Diagnostics> {
    if !plan.planned.cluster_kubeconfig.is_null() {
        return Ok(());
    }
    let mut d = Diagnostics::new();
    let refused: Vec<String> = list_or_empty(&plan.planned.node_labels)
        .into_iter()
        .filter(|kv| !k3s::marks::kubelet_may_set(k3s::marks::label_key(kv)))
        .collect();
    if !refused.is_empty() {
        d.push(
            Diagnostic::error(
                "Labels a kubelet may not set",
                format!(
                    "{} are in the kubernetes.io/k8s.io namespaces: the kubelet refuses them at registration and \
                     may not set them on its Node later. Set cluster_kubeconfig (an admin kubeconfig, e.g. a \
                     server's `kubeconfig` or the homelab_k3s_kubeconfig ephemeral resource) so the provider sets \
                     them through the API.",
                    refused.join(", ")
                ),
            )
            .at(attr("node_labels")),
        );
    }
    let taints_change = plan.prior.as_ref().is_some_and(|p| {
        let mut a = list_or_empty(&p.node_taints);
        let mut b = list_or_empty(&plan.planned.node_taints);
        a.sort();
        b.sort();
        a != b
    });
    if taints_change {
        d.push(
            Diagnostic::error(
                "Taints of a registered agent need cluster_kubeconfig",
                "A node gets config.yaml's taints only when it registers, and Kubernetes does not let a kubelet \
                 change its own taints afterwards (NodeRestriction). Set cluster_kubeconfig (an admin kubeconfig) \
                 so the provider changes them through the API, or replace the agent."
                    .to_string(),
            )
            .at(attr("node_taints")),
        );
    }
    if d.has_errors() {
        return Err(d);
    }
    Ok(())
}

/// The credentials the agent's Node is read and changed with: the admin kubeconfig when given, else the
/// kubelet's own (see [`k3s::kube`]).
fn agent_creds(m: &AgentModel) -> Creds<'_> {
    match m.cluster_kubeconfig.known() {
        Some(k) => Creds::Kubeconfig(k),
        None => Creds::Kubelet,
    }
}

fn fill_lb(m: &mut AgentModel, lb: Option<(String, Vec<String>)>) {
    match lb {
        Some((url, addrs)) => {
            m.lb_server_url = Tf::Known(url);
            m.lb_server_addresses = Tf::Known(addrs);
        }
        None => {
            m.lb_server_url = Tf::Null;
            m.lb_server_addresses = Tf::Known(vec![]);
        }
    }
}

#[derive(Default)]
pub struct K3sAgent;

impl K3sAgent {
    /// Create and update: the plan as the sequence's wants, [`k3s::agent::converge`], the result mapped back.
    async fn converge(
        &self,
        ctx: &Context,
        mut plan: AgentModel,
        limit: std::time::Duration,
        prior: Option<&AgentModel>,
    ) -> Result<AgentModel, Diagnostics> {
        // It registers through `server_url`, typically the VIP: HAProxy changes of this process must be live.
        crate::resources::opnsense_common::haproxy_live_barrier(ctx, "server_url").await?;
        let install = install_source(
            &plan.install_script,
            &plan.install_script_url,
            &plan.install_env,
            &plan.airgap_binary_path,
        );
        let registries = registries_text(&plan.registry_mirror, &plan.registry_config);
        let managed_before =
            prior.is_some_and(|p| !p.registry_mirror.is_empty() || !p.registry_config.is_empty());
        let want = AgentWant {
            registries: registries_want(&registries, managed_before),
            node_name: plan.node_name.known().map(String::as_str),
            config: desired_config(&plan),
            version: plan.version.known().map(String::as_str),
            install: &install,
            cluster_kubeconfig: plan.cluster_kubeconfig.known().map(String::as_str),
            limit,
        };
        let session = connect(ctx, plan.host.as_ref()).await?;
        let done = k3s::agent::converge(&session, &want, ctx, ctx.cancellation())
            .await
            .map_err(failure_diag)?;
        let marks = marks_want(
            &plan.node_labels,
            &plan.node_taints,
            prior.map(|p| (&p.node_labels, &p.node_taints)),
        );
        k3s::marks::sync(
            &session,
            agent_creds(&plan),
            &done.node_name,
            &marks,
            done.node,
        )
        .await
        .map_err(failure_diag)?;
        plan.id = host_id(plan.host.as_ref());
        plan.node_name = Tf::Known(done.node_name);
        plan.version = done.version.map(Tf::Known).unwrap_or(Tf::Null);
        fill_lb(&mut plan, done.lb);
        plan.certificates_expire = first_expiry(&done.certs);
        Ok(plan)
    }
}

#[async_trait]
impl Resource for K3sAgent {
    type Model = AgentModel;
    type Identity = AgentIdentity;

    fn type_name(&self) -> &'static str {
        TYPE
    }
    fn schema(&self) -> Schema {
        schema()
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(address_identity_schema())
    }
    fn identity(&self, state: &AgentModel) -> Option<AgentIdentity> {
        host_identity(&state.id)
    }
    fn timeouts(&self, m: &AgentModel) -> Timeouts {
        Timeouts::from_model(Timeouts::default(), m.timeouts.as_ref())
    }
    fn validate(&self, config: &AgentModel, diags: &mut Diagnostics) {
        check_managed_keys(&config.extra_config, MANAGED, diags);
        check_marks_format(&config.node_labels, &config.node_taints, diags);
        check_registries(&config.registry_config, diags);
        check_token_choice(
            &config.token,
            &config.token_wo,
            &config.token_wo_version,
            diags,
        );
    }
    async fn modify_plan(
        &self,
        _ctx: &Context,
        plan: &mut Plan<AgentModel>,
    ) -> Result<(), Diagnostics> {
        plan_common(plan, |m| &m.version, |m| m.host.as_ref())?;
        check_marks_creds(plan)?;
        let Some(prior) = plan.prior.clone() else {
            return Ok(());
        };
        // The LB view is only worth re-reading when something the agent runs with changes; otherwise keep it.
        let same = prior.server_url == plan.planned.server_url
            && prior.token == plan.planned.token
            && prior.token_wo_version == plan.planned.token_wo_version
            && prior.version == plan.planned.version
            && prior.node_labels == plan.planned.node_labels
            && prior.node_taints == plan.planned.node_taints
            && prior.extra_config == plan.planned.extra_config
            && prior.registry_mirror == plan.planned.registry_mirror
            && prior.registry_config == plan.planned.registry_config
            // An unknown or new admin kubeconfig (a server being rotated or replaced in the same apply) means
            // the servers may be restarting: the LB view read after the apply can differ.
            && prior.cluster_kubeconfig == plan.planned.cluster_kubeconfig;
        if same {
            plan.planned.lb_server_url = prior.lb_server_url.clone();
            plan.planned.lb_server_addresses = prior.lb_server_addresses.clone();
        }
        Ok(())
    }
    async fn create(&self, ctx: &Context, plan: AgentModel) -> Result<AgentModel, Diagnostics> {
        let limit = self.timeouts(&plan).create;
        self.converge(ctx, plan, limit, None).await
    }
    async fn read(
        &self,
        ctx: &Context,
        state: AgentModel,
    ) -> Result<Option<AgentModel>, Diagnostics> {
        let creds = agent_creds(&state);
        let wants = k3s::ReadWants {
            role: Role::Agent,
            server_facts: false,
            agent_lb: true,
            node: state.node_name.known().map(|n| (creds, n.as_str())),
        };
        let Some((session, read)) = read_installed(ctx, state.host.as_ref(), &wants).await? else {
            return Ok(None);
        };
        let k3s::NodeRead {
            probe,
            certs,
            agent_lb: lb,
            node: pre_node,
            ..
        } = read;
        let mut m = state.clone();
        m.id = host_id(state.host.as_ref());
        m.version = probe.version.clone().map(Tf::Known).unwrap_or(Tf::Null);
        let cfg = read_config(&probe);
        if let Some(u) = cfg.as_ref().and_then(|c| cfg_str(c, "server")) {
            m.server_url = Tf::Known(u);
        }
        // With the write-only token, the host's token is never read back.
        let write_only = uses_token_wo(&state.token, &state.token_wo_version);
        let mut not_kept = Tf::Null;
        NodeFields {
            token: if write_only {
                &mut not_kept
            } else {
                &mut m.token
            },
            node_name: &mut m.node_name,
            node_labels: &mut m.node_labels,
            node_taints: &mut m.node_taints,
            extra_config: &mut m.extra_config,
        }
        .read_back(cfg.as_ref(), MANAGED);
        if m.node_name.is_null() {
            m.node_name = Tf::Known(probe.hostname.clone());
        }
        if !state.registry_mirror.is_empty() || !state.registry_config.is_empty() {
            read_registries_back(&probe, &mut m.registry_mirror, &mut m.registry_config);
        }
        if let (Some(name), "active") = (m.node_name.known().cloned(), probe.active.as_str()) {
            read_marks_back(
                &session,
                creds,
                &name,
                pre_node,
                &mut m.node_labels,
                &mut m.node_taints,
                (&state.node_labels, &state.node_taints),
            )
            .await;
        }
        fill_lb(&mut m, lb);
        m.certificates_expire = first_expiry(&certs);
        warn_expiring(
            ctx,
            "k3s agent",
            session.host(),
            &certs,
            "Restart k3s-agent on the host (`systemctl restart k3s-agent`): k3s renews them when it starts.",
        );
        if probe.active != "active" {
            ctx.warn(
                "k3s-agent is not running",
                format!(
                    "The k3s-agent unit on {} is {:?}.",
                    session.host(),
                    probe.active
                ),
            );
        }
        Ok(Some(m))
    }
    async fn update(
        &self,
        ctx: &Context,
        prior: AgentModel,
        plan: AgentModel,
    ) -> Result<AgentModel, Diagnostics> {
        let limit = self.timeouts(&plan).update;
        self.converge(ctx, plan, limit, Some(&prior)).await
    }
    async fn delete(&self, ctx: &Context, state: AgentModel) -> Result<(), Diagnostics> {
        let session = connect(ctx, state.host.as_ref()).await?;
        let leave = match (state.cluster_kubeconfig.known(), state.node_name.known()) {
            (Some(kc), Some(name)) => Some((kc.as_str(), name.as_str())),
            _ => None,
        };
        k3s::agent::remove(&session, leave, ctx, ctx.cancellation())
            .await
            .map_err(failure_diag)
    }
    async fn import(&self, _ctx: &Context, id: &str) -> Result<AgentModel, Diagnostics> {
        Ok(AgentModel {
            id: Tf::Known(id.to_string()),
            host: host_for(id),
            ..Default::default()
        })
    }
    async fn import_identity(
        &self,
        ctx: &Context,
        identity: AgentIdentity,
    ) -> Result<AgentModel, Diagnostics> {
        self.import(ctx, &identity.address).await
    }
}

pub fn register(r: &mut Registry) {
    r.resource(K3sAgent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid() {
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }

    #[test]
    fn agent_config_has_no_server_only_keys() {
        let m = AgentModel {
            server_url: Tf::Known("https://192.0.2.50:6443".into()),
            token: Tf::Known("K10x::server:pw".into()),
            ..Default::default()
        };
        let c = desired_config(&m);
        assert_eq!(c["server"], serde_json::json!("https://192.0.2.50:6443"));
        assert!(!c.contains_key("cluster-init") && !c.contains_key("tls-san"));
    }
}
