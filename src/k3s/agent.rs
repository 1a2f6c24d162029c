//! The agent sequences behind `homelab_k3s_agent`: converge (create and update) and leaving the cluster on
//! delete.
//!
//! Why these sequences:
//! - **No kubelet newer than the API servers** (Kubernetes' version-skew policy): before installing or upgrading
//!   to a version, the servers' versions are read through the cluster (when the caller can give an admin
//!   kubeconfig) and a newer agent is refused, on the version input.
//! - **Agents use the VIP only to register**, then balance over the servers themselves: after converging, the
//!   sequence reads the agent's client-side load-balancer file back, so the state shows what it really balances.
//! - **Leaving is best effort**: an agent has no etcd member, so a failed drain or delete leaves only a stale Node
//!   (reported), never a quorum problem.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::certs::CertExpiry;
use super::converge::{self, NodeWant};
use super::kube::Creds;
use super::marks::Marks;
use super::node::{self, InstallSource, Role};
use super::step::{step, Failure, Input, Report};
use super::{cluster, etcd};
use crate::ssh::Session;

/// What an agent should be.
pub struct AgentWant<'a> {
    /// The node name; `None`: the host's name.
    pub node_name: Option<&'a str>,
    /// config.yaml without `node-name` (added once the name is known).
    pub config: BTreeMap<String, serde_json::Value>,
    pub version: Option<&'a str>,
    pub install: &'a InstallSource,
    /// An admin kubeconfig of the cluster, for the version-skew check (`None`: not checked).
    pub cluster_kubeconfig: Option<&'a str>,
    /// registries.yaml.
    pub registries: super::registries::Want<'a>,
    /// The operation's time limit.
    pub limit: Duration,
}

/// What a converged agent is.
pub struct AgentDone {
    pub node_name: String,
    pub version: Option<String>,
    /// The agent's load balancer: the server URL it registered through and the servers it balances over.
    pub lb: Option<(String, Vec<String>)>,
    /// The node's certificates and their expiry, soonest first.
    pub certs: Vec<CertExpiry>,
    /// The Node's labels and taints as read at the end (`Err`: kubectl's failure; `None`: not asked, the
    /// credentials are not on the host), for [`super::marks::sync`].
    pub node: Option<Result<Marks, String>>,
}

/// Create and update: brings the agent to `want`.
pub async fn converge(
    session: &Session,
    want: &AgentWant<'_>,
    report: &dyn Report,
    cancel: &CancellationToken,
) -> Result<AgentDone, Failure> {
    let probe = node::probe(session, Role::Agent)
        .await
        .map_err(step("Cannot inspect the host"))?;
    let node_name = want
        .node_name
        .map(str::to_string)
        .unwrap_or_else(|| probe.hostname.clone());
    let registered = probe.installed(Role::Agent) && probe.active == "active";
    if let Some(v) = want.version {
        if !probe.installed(Role::Agent) || probe.version.as_deref() != Some(v) {
            check_skew(session, v, want.cluster_kubeconfig, registered, report).await?;
        }
    }
    let node_want = NodeWant {
        role: Role::Agent,
        node_name: &node_name,
        config: &want.config,
        version: want.version,
        install: want.install,
        registries: want.registries,
        limit: want.limit,
    };
    converge::node(session, &probe, &node_want, report, cancel).await?;
    // One exec reads back the load balancer, the version, the certificates and the Node the marks sync starts
    // from (with the kubelet's credentials; a given cluster_kubeconfig is asked by the sync itself).
    let creds = match want.cluster_kubeconfig {
        Some(k) => Creds::Kubeconfig(k),
        None => Creds::Kubelet,
    };
    let wants = node::ReadWants {
        role: Role::Agent,
        server_facts: false,
        agent_lb: true,
        node: Some((creds, &node_name)),
    };
    let read_back = || async {
        node::read_node(session, &wants)
            .await
            .map_err(step("Cannot read the agent's state"))
    };
    let read = match want.version {
        Some(v) if want.cluster_kubeconfig.is_none() && !registered => {
            // A new agent has no credentials to ask with before it registers: check with the kubelet's own now,
            // and stop it if it is newer than the servers. The read-back runs beside the check (a second
            // channel; both ask the API) and is dropped if the check fails.
            let (skew, read) =
                tokio::join!(check_skew(session, v, None, true, report), read_back());
            if let Err(f) = skew {
                let _ = session
                    .exec_sudo(&format!("systemctl stop {}", Role::Agent.unit()), None)
                    .await;
                return Err(Failure {
                    detail: format!(
                        "{} The agent registered (there was no cluster_kubeconfig to check with before) and was \
                         stopped again.",
                        f.detail
                    ),
                    ..f
                });
            }
            read?
        }
        _ => read_back().await?,
    };
    Ok(AgentDone {
        node_name,
        version: read.probe.version,
        lb: read.agent_lb,
        certs: read.certs,
        node: read.node.map(|(_, n)| n),
    })
}

/// Refuses an agent version newer than the servers. The servers' versions are read with the admin kubeconfig
/// when given, else with the agent's own kubelet credentials once it is registered (Kubernetes lets a kubelet
/// read every Node); when neither can be asked yet (`Ok`, checked again after registering) or the versions cannot
/// be read (said so), it does not refuse.
async fn check_skew(
    session: &Session,
    version: &str,
    kubeconfig: Option<&str>,
    registered: bool,
    report: &dyn Report,
) -> Result<(), Failure> {
    let versions = match kubeconfig {
        Some(kc) => cluster::node_versions(session, kc).await,
        None if registered => cluster::node_versions_as_kubelet(session).await,
        None => return Ok(()),
    };
    let detail = match versions {
        Ok(Ok(nodes)) => {
            return cluster::check_agent_skew(version, &nodes).map_err(|why| {
                Failure::new("Agent newer than the servers", why).on(Input::Version)
            })
        }
        Ok(Err(detail)) => detail,
        Err(e) => e.to_string(),
    };
    report.warn(
        "k3s version skew not checked",
        format!("The servers' versions could not be read: {detail}"),
    );
    Ok(())
}

/// Where the admin kubeconfig is uploaded for the leave (next to config.yaml, which the uninstall removes).
const LEAVE_KUBECONFIG: &str = "/etc/rancher/k3s/homelab-admin.kubeconfig";

/// Delete: drains and deletes the Node through the cluster with the given admin kubeconfig (uploaded 0600, removed
/// afterwards), stops the agent, then uninstalls it. A failed leave is reported, not fatal.
pub async fn remove(
    session: &Session,
    leave: Option<(&str, &str)>,
    report: &dyn Report,
    cancel: &CancellationToken,
) -> Result<(), Failure> {
    if let Some((kubeconfig, name)) = leave {
        leave_cluster(session, kubeconfig, name, report, cancel).await;
    }
    node::uninstall(session, Role::Agent)
        .await
        .map_err(step("k3s agent uninstall failed"))
}

async fn leave_cluster(
    session: &Session,
    kubeconfig: &str,
    name: &str,
    report: &dyn Report,
    cancel: &CancellationToken,
) {
    let Some(url) = node::kubeconfig_server(kubeconfig) else {
        report.warn(
            "cluster_kubeconfig has no server",
            "The node was not removed from the cluster.".into(),
        );
        return;
    };
    let run = async {
        session
            .run_sudo("install -d -m 0755 /etc/rancher/k3s", None)
            .await?;
        session
            .upload(kubeconfig.as_bytes(), LEAVE_KUBECONFIG, 0o600)
            .await?;
        let r = etcd::leave_cluster(
            session,
            Role::Agent,
            LEAVE_KUBECONFIG,
            &url,
            name,
            Duration::from_secs(60),
            cancel,
        )
        .await;
        let _ = session
            .exec_sudo(&format!("rm -f {LEAVE_KUBECONFIG}"), None)
            .await;
        r
    };
    let failed = match run.await {
        Ok(Ok(_)) => return,
        Ok(Err(detail)) => detail,
        Err(e) => e.to_string(),
    };
    report.warn(
        "Node not removed from the cluster",
        format!("Deleting node {name} through {url} failed: {failed}"),
    );
}
