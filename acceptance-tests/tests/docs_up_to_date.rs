//! `docs/` matches what `docgen` renders from the provider's current schema and `examples/`.
//!
//! Why a test: the registry pages are generated and committed; a schema change (a new attribute, a reworded
//! description) or a new example without regenerating them would publish stale documentation. CI runs the whole
//! test suite, so this makes a stale `docs/` a red build with the list of files to regenerate.

use std::process::Command;

use anyhow::{bail, Context, Result};
use homelab_acceptance::terraform::required_providers;
use homelab_acceptance::{Terraform, TerraformVersion};

#[test]
fn docs_are_up_to_date() -> Result<()> {
    // The schema through the harness (Terraform 1.15.5 + the provider under test via dev_overrides), handed to
    // docgen as a file so the check itself is offline and deterministic.
    let tf = Terraform::new(TerraformVersion::V1_15)?;
    tf.require_provider()?;
    tf.write_config(&required_providers())?;
    let schema = tf.providers_schema()?;
    let file = tf.root().join("schema.json");
    std::fs::write(&file, serde_json::to_string(&schema.0)?)?;

    let out = Command::new(env!("CARGO_BIN_EXE_docgen"))
        .args(["check", "--schema"])
        .arg(&file)
        .output()
        .context("running docgen")?;
    if !out.status.success() {
        bail!(
            "docgen check failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}
