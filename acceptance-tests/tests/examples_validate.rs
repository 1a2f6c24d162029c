//! Every example under `examples/` is valid configuration for the provider as built, under Terraform 1.15.5.
//!
//! Why: the examples are rendered into the registry docs (`docgen`), and a copy-pasted example that fails
//! `terraform validate` is the first thing a new user meets. Each `examples/resources/<type>/` and
//! `examples/data-sources/<type>/`, `examples/list-resources/<type>/` directory (and `examples/provider/`) is validated on its own, as a user would
//! paste it: `resource.tf` / `data-source.tf` / `list-resource.tfquery.hcl` plus the harness's `required_providers` block, then once more with
//! each `import-*.tf` next to it (the import examples target the same address, so they cannot be validated
//! together). Nothing is skipped: an example directory without its main file fails, and the files must be
//! `terraform fmt` clean.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use homelab_acceptance::paths;
use homelab_acceptance::terraform::required_providers;
use homelab_acceptance::{Terraform, TerraformVersion};

fn example_dirs() -> Result<Vec<(PathBuf, &'static str)>> {
    let root = paths::workspace_root().join("examples");
    let mut dirs = vec![(root.join("provider"), "provider.tf")];
    for (sub, main) in [
        ("resources", "resource.tf"),
        ("data-sources", "data-source.tf"),
        ("list-resources", "list-resource.tfquery.hcl"),
    ] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root.join(sub))
            .with_context(|| format!("reading examples/{sub}"))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        dirs.extend(found.into_iter().map(|d| (d, main)));
    }
    Ok(dirs)
}

fn files(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".tf") || name.ends_with(".tfquery.hcl") {
            out.push((name, std::fs::read_to_string(e.path())?));
        }
    }
    out.sort();
    Ok(out)
}

/// `terraform validate -json`: valid, and no warnings other than the harness's own dev_overrides notice.
fn validate(tf: &Terraform, what: &str) -> Result<()> {
    // `-query` also validates `*.tfquery.hcl` files (list blocks); harmless where there are none.
    let out = tf.run(&["validate", "-query", "-json", "-no-color"])?;
    let v: serde_json::Value = serde_json::from_str(&out.stdout).with_context(|| {
        format!(
            "{what}: validate -json printed no JSON: {}{}",
            out.stdout, out.stderr
        )
    })?;
    let diags: Vec<String> = v["diagnostics"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["summary"] != "Provider development overrides are in effect")
        .map(|d| format!("{}: {}: {}", d["severity"], d["summary"], d["detail"]))
        .collect();
    if v["valid"] != true || !diags.is_empty() || !out.success() {
        bail!(
            "{what}: terraform validate failed:\n{}\n{}",
            diags.join("\n"),
            out.stderr
        );
    }
    Ok(())
}

#[test]
fn every_example_validates() -> Result<()> {
    let dirs = example_dirs()?;
    // Resources and data sources registered in src/resources/ must each have an example directory: compare with
    // the provider's schema, so a new resource without an example fails here.
    let schema = {
        let tf = Terraform::new(TerraformVersion::V1_15)?;
        tf.require_provider()?;
        tf.write_config(&required_providers())?;
        tf.providers_schema()?
    };
    let homelab = schema
        .homelab()
        .context("no homelab provider in the schema")?;
    let mut missing = Vec::new();
    for (key, sub) in [
        ("resource_schemas", "resources"),
        ("data_source_schemas", "data-sources"),
        ("list_resource_schemas", "list-resources"),
    ] {
        for name in homelab
            .get(key)
            .and_then(|v| v.as_object())
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
        {
            if name == "homelab_test_fixture" {
                continue;
            }
            if !paths::workspace_root()
                .join("examples")
                .join(sub)
                .join(&name)
                .is_dir()
            {
                missing.push(format!("examples/{sub}/{name}/"));
            }
        }
    }
    if !missing.is_empty() {
        bail!("types without an example: {}", missing.join(", "));
    }

    let mut failures = Vec::new();
    let mut validated = 0;
    for (dir, main) in dirs {
        let rel = dir
            .strip_prefix(paths::workspace_root())
            .unwrap_or(&dir)
            .display()
            .to_string();
        let all = files(&dir)?;
        if !all.iter().any(|(n, _)| n == main) {
            failures.push(format!("{rel}: no {main}"));
            continue;
        }
        let (imports, base): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|(n, _)| n.starts_with("import-"));
        let tf = Terraform::new(TerraformVersion::V1_15)?;
        tf.write_file("zz_required_providers.tf", &required_providers())?;
        for (name, text) in &base {
            tf.write_file(name, text)?;
        }
        let fmt = tf.run(&[
            "fmt",
            "-check",
            "-diff",
            "-no-color",
            "-recursive",
            dir.to_str().unwrap(),
        ])?;
        if !fmt.success() {
            failures.push(format!("{rel}: not `terraform fmt` clean:\n{}", fmt.stdout));
        }
        if let Err(e) = validate(&tf, &rel) {
            failures.push(format!("{e:#}"));
        }
        validated += 1;
        for (name, text) in &imports {
            tf.write_file(name, text)?;
            if let Err(e) = validate(&tf, &format!("{rel} with {name}")) {
                failures.push(format!("{e:#}"));
            }
            tf.remove_file(name)?;
            validated += 1;
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} example(s) failed:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
    assert!(
        validated > 10,
        "only {validated} example configurations found"
    );
    Ok(())
}
