//! The cluster's Kubernetes API, asked from a node over SSH with `k3s kubectl` and one of the credentials a node
//! really has.
//!
//! Why from the node and with these credentials: the provider holds no Kubernetes client and needs no route to the
//! API from where Terraform runs. A server has the admin kubeconfig k3s writes (`/etc/rancher/k3s/k3s.yaml`). An
//! agent has only its kubelet's (`/var/lib/rancher/k3s/agent/kubelet.kubeconfig`), which Kubernetes' Node
//! authorizer lets read every Node and NodeRestriction lets change its own Node's labels outside the
//! `kubernetes.io`/`k8s.io` namespaces, but not its taints. An admin kubeconfig given by the user
//! (`cluster_kubeconfig`) is uploaded 0600 into a private temporary directory for the one command and removed.

use super::error::K3sError;
use super::paths::{K3S_BIN, KUBECONFIG_PATH};
use crate::ssh::{quote, Output, Session};

/// The kubelet's kubeconfig on an agent (k3s writes it when the agent bootstraps).
pub const KUBELET_KUBECONFIG_PATH: &str = "/var/lib/rancher/k3s/agent/kubelet.kubeconfig";

/// Which credentials a command runs with.
#[derive(Clone, Copy, Debug)]
pub enum Creds<'a> {
    /// A server's own admin kubeconfig.
    ServerAdmin,
    /// An agent's kubelet credentials: read Nodes, label its own Node (NodeRestriction's limits).
    Kubelet,
    /// An admin kubeconfig's text (uploaded for the command, then removed).
    Kubeconfig(&'a str),
}

impl Creds<'_> {
    /// Whether these credentials may change taints and `kubernetes.io` labels.
    pub fn is_admin(&self) -> bool {
        !matches!(self, Creds::Kubelet)
    }
}

/// Runs `k3s kubectl --kubeconfig <creds> <args>` (args already shell-quoted) on the host.
pub async fn kubectl(session: &Session, creds: Creds<'_>, args: &str) -> Result<Output, K3sError> {
    let path = match creds {
        Creds::ServerAdmin => KUBECONFIG_PATH.to_string(),
        Creds::Kubelet => KUBELET_KUBECONFIG_PATH.to_string(),
        Creds::Kubeconfig(text) => {
            let dir = private_tmpdir(session).await?;
            let path = format!("{dir}/kubeconfig");
            let out = match session.upload(text.as_bytes(), &path, 0o600).await {
                Ok(()) => run(session, &path, args).await,
                Err(e) => Err(e.into()),
            };
            let _ = session
                .exec_sudo(&format!("rm -rf {}", quote(&dir)), None)
                .await;
            return out;
        }
    };
    run(session, &path, args).await
}

/// A private (0700, root's) temporary directory on the host for credentials used by one command; the caller
/// removes it (`rm -rf`) afterwards.
pub async fn private_tmpdir(session: &Session) -> Result<String, K3sError> {
    let dir = session
        .run_sudo("mktemp -d /tmp/homelab-kc.XXXXXXXX", None)
        .await?
        .stdout_str()
        .trim()
        .to_string();
    if !dir.starts_with("/tmp/homelab-kc.") {
        return Err(K3sError::Unexpected {
            host: session.host().to_string(),
            detail: format!("mktemp gave {dir:?}"),
        });
    }
    Ok(dir)
}

async fn run(session: &Session, path: &str, args: &str) -> Result<Output, K3sError> {
    Ok(session.exec_sudo(&command(path, args), None).await?)
}

fn command(path: &str, args: &str) -> String {
    format!(
        "{K3S_BIN} kubectl --kubeconfig {} --request-timeout=20s {args}",
        quote(path)
    )
}

/// The kubectl command line for credentials already on the host (`None` for an uploaded kubeconfig, which
/// needs its own private directory first), so a caller can put it into a larger script.
pub fn host_command(creds: Creds<'_>, args: &str) -> Option<String> {
    match creds {
        Creds::ServerAdmin => Some(command(KUBECONFIG_PATH, args)),
        Creds::Kubelet => Some(command(KUBELET_KUBECONFIG_PATH, args)),
        Creds::Kubeconfig(_) => None,
    }
}

/// The failure of a kubectl command as one line: its stderr, or its exit status.
pub fn failure_text(out: &Output) -> String {
    let err = out.stderr_str();
    let err = err.trim();
    if err.is_empty() {
        format!("kubectl exited with {}", out.exit_status)
    } else {
        err.lines().last().unwrap_or(err).to_string()
    }
}
