//! ephemeral `homelab_k3s_kubeconfig`: the admin kubeconfig of a k3s server host, read over SSH with its server
//! rewritten, that Terraform (≥ 1.10) never writes to plan or state.
//!
//! Why beside the data source of the same name: the data source (and `homelab_k3s_server.kubeconfig`) keep the
//! admin client key in `terraform.tfstate`, which is all Terraform 1.0.3 can do. The ephemeral resource is the
//! way to hand the kubeconfig to a `kubernetes`/`helm` provider block, a provisioner or a write-only attribute
//! without persisting it; it reads exactly what the data source reads (`k3s_kubeconfig::fetch`), in every phase
//! that needs it. Nothing is leased on the host, so there is nothing to renew or close.

use super::k3s_kubeconfig::{fetch, schema as data_schema, KubeconfigModel, TYPE};
use crate::framework::*;

pub fn schema() -> Schema {
    let mut s = data_schema();
    s.block.description = "The admin kubeconfig of a k3s server host (`/etc/rancher/k3s/k3s.yaml`, read over \
        SSH) with its server rewritten to `server`, never stored in plan or state (Terraform 1.10 or newer). \
        Opened in each plan and apply that needs it; use it where Terraform accepts ephemeral values: provider \
        blocks, provisioners and connection blocks, write-only attributes, ephemeral outputs and locals."
        .into();
    s
}

pub struct K3sKubeconfigEphemeral;

#[async_trait]
impl EphemeralResource for K3sKubeconfigEphemeral {
    type Model = KubeconfigModel;
    type Private = ();

    fn type_name(&self) -> &'static str {
        TYPE
    }
    fn schema(&self) -> Schema {
        schema()
    }
    async fn open(
        &self,
        ctx: &Context,
        config: KubeconfigModel,
    ) -> Result<Opened<KubeconfigModel, ()>, Diagnostics> {
        Ok(Opened::result(fetch(ctx, config).await?))
    }
}

pub fn register(r: &mut Registry) {
    r.ephemeral_resource(K3sKubeconfigEphemeral);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid_and_says_it_is_ephemeral() {
        let s = schema();
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert!(s
            .block
            .description
            .contains("never stored in plan or state"));
    }
}
