//! The homelab provider as a whole: its `provider "homelab"` block (`crate::provider`) and everything it serves
//! (`crate::resources::registry`), put together as one [`framework::Provider`](crate::framework::Provider).
//!
//! This is the top of the house: nothing imports it but `main.rs`. The protocol layer below serves whatever
//! provider it is handed and knows nothing of this one; the framework knows resources only through its traits.

use crate::framework::{self, Diagnostics, Registry, Schema};
use crate::provider::{self, ProviderData, ProviderModel};

/// The homelab provider.
pub struct Homelab;

impl framework::Provider for Homelab {
    type Model = ProviderModel;
    type Data = ProviderData;

    fn name(&self) -> &'static str {
        "homelab"
    }

    fn schema(&self) -> Schema {
        provider::schema()
    }

    fn validate(&self, config: &ProviderModel, diags: &mut Diagnostics) {
        provider::validate(config, diags)
    }

    fn configure(
        &self,
        terraform_version: &str,
        config: ProviderModel,
    ) -> Result<ProviderData, Diagnostics> {
        let data = provider::configure(terraform_version, &config, |k| std::env::var(k).ok())?;
        tracing::info!(
            tf_rpc = "ConfigureProvider",
            opnsense = ?data.opnsense_status(),
            "homelab provider settings resolved"
        );
        Ok(data)
    }

    fn registry(&self) -> Registry {
        crate::resources::registry()
    }
}

/// The homelab provider as the protocol layer serves it (what `main.rs` hands to `plugin::serve`).
pub fn erased() -> std::sync::Arc<dyn crate::plugin::service::ErasedProvider> {
    framework::erase(Homelab)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Provider as _;
    use crate::plugin::codec::{PathStep, Value};

    #[test]
    fn every_registered_schema_is_described_and_consistent() {
        let registry = Homelab.registry();
        let registry = registry.erased();
        let mut problems = Vec::new();
        for (name, schema) in registry.schemas() {
            problems.extend(
                schema
                    .problems()
                    .into_iter()
                    .map(|p| format!("{name}: {p}")),
            );
        }
        for (name, r) in &registry.resources {
            if let Some(id) = r.identity_schema() {
                for a in &id.attributes {
                    if a.description.trim().is_empty() {
                        problems.push(format!(
                            "resource {name}: identity attribute {} has no description",
                            a.name
                        ));
                    }
                }
            }
        }
        for (name, l) in &registry.list_resources {
            match registry.resources.get(name) {
                Some(r) if r.identity_schema().is_some() => {}
                _ => problems.push(format!(
                    "list resource {name}: needs a managed resource of the same name with an identity ({})",
                    l.schema().block.description
                )),
            }
        }
        problems.extend(
            Homelab
                .schema()
                .problems()
                .into_iter()
                .map(|p| format!("provider: {p}")),
        );
        assert!(
            problems.is_empty(),
            "schema problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn provider_block_has_opnsense_and_ssh() {
        let names: Vec<_> = Homelab
            .schema()
            .block
            .blocks
            .iter()
            .map(|b| b.name.clone())
            .collect();
        assert_eq!(names, ["opnsense", "ssh"]);
    }

    fn config(url: Value) -> Value {
        Value::object([
            (
                "opnsense",
                Value::object([
                    ("url", url),
                    ("api_key", Value::Null),
                    ("api_secret", Value::Null),
                    ("ca_cert_pem", Value::Null),
                    ("insecure_skip_verify", Value::Null),
                    ("timeout", Value::Null),
                ]),
            ),
            ("ssh", Value::Null),
        ])
    }

    #[test]
    fn provider_validation_reports_paths_and_tolerates_unknowns() {
        let p = erased();
        let d = p.validate(&config(Value::from("fw.lan")));
        let first = d
            .iter()
            .next()
            .expect("a diagnostic for a URL without scheme");
        assert_eq!(
            first.path,
            Some(vec![
                PathStep::Attr("opnsense".into()),
                PathStep::Attr("url".into())
            ])
        );
        assert!(p.validate(&config(Value::Unknown)).is_empty());
        // Unknown settings configure (resources that need them say so when they call the API).
        let data = p
            .configure("1.15.5", &config(Value::Unknown))
            .expect("configure with unknowns");
        let pd = data.downcast_ref::<ProviderData>().expect("homelab data");
        assert!(pd.opnsense().is_err());
    }
}
