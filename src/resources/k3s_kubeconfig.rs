//! data `homelab_k3s_kubeconfig`: the admin kubeconfig of a k3s server, read over SSH, with its server address
//! rewritten (e.g. to the VIP) — to feed the kubernetes/helm providers without managing the server here (nodes
//! installed by hand, or by another workspace).

use serde::{Deserialize, Serialize};

use super::k3s_common::*;
use crate::framework::*;
use crate::k3s;

pub const TYPE: &str = "homelab_k3s_kubeconfig";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KubeconfigModel {
    pub server: Tf<String>,
    pub kubeconfig: Tf<String>,
    pub ca_hash: Tf<String>,
    pub host: Option<ConnectionModel>,
}

pub fn schema() -> Schema {
    Schema::new(
        "The admin kubeconfig of a k3s server host (`/etc/rancher/k3s/k3s.yaml`, read over SSH) with its server \
         rewritten to `server`.",
    )
    .attribute(Attribute::string("server").optional().description(
        "Server URL to write into the kubeconfig, e.g. `https://<VIP>:6443`. Default `https://<address>:6443`.",
    ))
    .attribute(
        Attribute::string("kubeconfig")
            .computed()
            .sensitive()
            .description("The kubeconfig."),
    )
    .attribute(
        Attribute::string("ca_hash")
            .computed()
            .description("SHA-256 of the cluster CA bundle, from the server's secure token."),
    )
    .block(connection_block())
}

pub struct K3sKubeconfig;

#[async_trait]
impl DataSource for K3sKubeconfig {
    type Model = KubeconfigModel;

    fn type_name(&self) -> &'static str {
        TYPE
    }
    fn schema(&self) -> Schema {
        schema()
    }
    async fn read(
        &self,
        ctx: &Context,
        config: KubeconfigModel,
    ) -> Result<KubeconfigModel, Diagnostics> {
        fetch(ctx, config).await
    }
}

/// Reads the kubeconfig and CA hash of the server `config.host` names, with the server URL rewritten (shared
/// with the ephemeral resource of the same name).
pub async fn fetch(
    ctx: &Context,
    mut config: KubeconfigModel,
) -> Result<KubeconfigModel, Diagnostics> {
    let session = connect(ctx, config.host.as_ref()).await?;
    let facts = k3s::server_facts(&session)
        .await
        .map_err(|e| k3s_diag("Cannot read the server's state", e))?;
    let Some(kc) = facts.kubeconfig else {
        return Err(Diagnostic::error(
            "No kubeconfig on the host",
            format!(
                "{} has no {}: is it a k3s server?",
                session.host(),
                k3s::KUBECONFIG_PATH
            ),
        )
        .into());
    };
    let address = config
        .host
        .as_ref()
        .and_then(|h| h.address.known().cloned())
        .unwrap_or_default();
    let server = config
        .server
        .known()
        .cloned()
        .unwrap_or_else(|| format!("https://{address}:6443"));
    config.kubeconfig = Tf::Known(k3s::rewrite_kubeconfig(&kc, &server));
    config.ca_hash = facts
        .token
        .as_deref()
        .and_then(k3s::token_ca_hash)
        .map(Tf::Known)
        .unwrap_or(Tf::Null);
    Ok(config)
}

pub fn register(r: &mut Registry) {
    r.data_source(K3sKubeconfig);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid() {
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }
}
