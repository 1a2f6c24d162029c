//! Every example under `examples/` is valid configuration for the provider as built, under Terraform 1.15.5.
//!
//! Why: the examples are rendered into the registry docs (`docgen`), and a copy-pasted example that fails
//! `terraform validate` is the first thing a new user meets. Each `examples/resources/<type>/` and
//! `examples/data-sources/<type>/`, `examples/list-resources/<type>/` directory (and `examples/provider/`) is validated on its own, as a user would
//! paste it: `resource.tf` / `data-source.tf` / `list-resource.tfquery.hcl` plus the harness's `required_providers` block, then once more with
//! each `import-*.tf` next to it (the import examples target the same address, so they cannot be validated
//! together). Nothing is skipped: an example directory without its main file fails, and the files must be
//! `terraform fmt` clean.
//!
//! The compositions — the reusable module `examples/modules/k3s-ha`, the seed's topology `examples/complete` that
//! calls it, and the seed's migration `examples/migration` — are validated as the directories they are (the
//! module on its own; the examples with the module beside them at `../modules/k3s-ha`, as `terraform get`
//! installs it) under both Terraform versions: the module and the complete example promise `>= 1.0`. The
//! migration example uses `import {}` blocks with `for_each`, so it requires 1.7 and is validated under 1.15.5
//! only; under 1.0.3 it must be refused for those blocks or its `required_version`, not for anything else.

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
        ("ephemeral-resources", "ephemeral-resource.tf"),
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
        ("ephemeral_resource_schemas", "ephemeral-resources"),
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
        // `resource-write-only.tf` (Terraform >= 1.11 attributes) is a second, standalone example of the type.
        let (write_only, all): (Vec<_>, Vec<_>) = all
            .into_iter()
            .partition(|(n, _)| n == "resource-write-only.tf");
        let (imports, base): (Vec<_>, Vec<_>) =
            all.into_iter().partition(|(n, _)| n.starts_with("import-"));
        for (name, text) in &write_only {
            let tf = Terraform::new(TerraformVersion::V1_15)?;
            tf.write_file("zz_required_providers.tf", &required_providers())?;
            tf.write_file(name, text)?;
            if let Err(e) = validate(&tf, &format!("{rel}/{name}")) {
                failures.push(format!("{e:#}"));
            }
            validated += 1;
        }
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

/// `terraform validate -json` for either version (1.0.3 has no `-query`).
fn validate_any(tf: &Terraform, what: &str) -> Result<()> {
    let out = tf.run(&["validate", "-json", "-no-color"])?;
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

/// Copies the `*.tf` files of `from` into `to`.
fn copy_tf(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for (name, text) in files(from)? {
        std::fs::write(to.join(name), text)?;
    }
    Ok(())
}

#[test]
fn module_and_composed_examples_validate_under_both_versions() -> Result<()> {
    let root = paths::workspace_root().join("examples");
    let mut failures = Vec::new();
    for dir in ["modules/k3s-ha", "complete", "migration"] {
        let fmt = Terraform::new(TerraformVersion::V1_15)?.run(&[
            "fmt",
            "-check",
            "-diff",
            "-no-color",
            "-recursive",
            root.join(dir).to_str().unwrap(),
        ])?;
        if !fmt.success() {
            failures.push(format!(
                "examples/{dir}: not `terraform fmt` clean:\n{}",
                fmt.stdout
            ));
        }
    }
    for version in TerraformVersion::selected() {
        for dir in ["modules/k3s-ha", "complete", "migration"] {
            let what = format!("examples/{dir} (Terraform {version})");
            let tf = Terraform::new(version)?;
            tf.require_provider()?;
            copy_tf(&root.join(dir), tf.workdir())?;
            // The examples call the module as ../modules/k3s-ha.
            copy_tf(
                &root.join("modules/k3s-ha"),
                &tf.workdir().parent().unwrap().join("modules/k3s-ha"),
            )?;
            if !files(tf.workdir())?.iter().any(|(n, _)| n == "versions.tf") {
                failures.push(format!("{what}: no versions.tf"));
                continue;
            }
            if dir == "migration" && !version.has_import_blocks() {
                let out = tf.run(&["validate", "-no-color"])?;
                // 1.0.3 refuses the unknown import blocks (or, were they parsed, the required_version).
                let refused = out.stderr.contains("Unsupported Terraform Core version")
                    || (out.stderr.contains("Unsupported block type")
                        && out.stderr.contains("\"import\""));
                if out.success() || !refused {
                    failures.push(format!(
                        "{what}: expected a refusal for required_version, got:\n{}{}",
                        out.stdout, out.stderr
                    ));
                }
                continue;
            }
            if dir != "modules/k3s-ha" {
                if let Err(e) = tf.run_ok(&["get", "-no-color"]) {
                    failures.push(format!("{what}: terraform get: {e}"));
                    continue;
                }
            }
            if let Err(e) = validate_any(&tf, &what) {
                failures.push(format!("{e:#}"));
            }
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} composed example check(s) failed:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
    Ok(())
}

/// The module's HA form (a secondary firewall) through the complete example's own wiring: with
/// `secondary_firewall` set the plan holds a CARP VIP and one HA sync resource, and every HAProxy object waits
/// for that sync resource; the single form stays the default (no hasync, an IP alias).
#[test]
fn complete_example_plans_its_ha_form_under_both_versions() -> Result<()> {
    let root = paths::workspace_root().join("examples");
    let mut failures = Vec::new();
    for version in TerraformVersion::selected() {
        let what = format!("examples/complete HA form (Terraform {version})");
        let tf = Terraform::new(version)?;
        tf.require_provider()?;
        copy_tf(&root.join("complete"), tf.workdir())?;
        copy_tf(
            &root.join("modules/k3s-ha"),
            &tf.workdir().parent().unwrap().join("modules/k3s-ha"),
        )?;
        let key = tf.workdir().join("id_test");
        std::fs::write(&key, "not a key: plan never connects\n")?;
        std::fs::write(tf.workdir().join("known_hosts"), "")?;
        std::fs::write(
            tf.workdir().join("ha.auto.tfvars"),
            format!(
                r#"opnsense_url          = "https://192.0.2.2"
opnsense_api_key      = "key"
opnsense_api_secret   = "secret"
k3s_token             = "token-for-plan-only"
ssh_private_key_file  = "{key}"
ssh_known_hosts_file  = "{kh}"
vip_subnet_bits       = 24
secondary_firewall = {{
  url          = "https://192.0.2.3"
  ca_cert_file = null
  peer         = "192.0.2.3"
  username     = "hasync"
  vhid         = 7
}}
secondary_api_key           = "key2"
secondary_api_secret        = "secret2"
secondary_firewall_password = "sync-pass"
carp_password               = "carp-pass"
"#,
                key = key.display(),
                kh = tf.workdir().join("known_hosts").display(),
            ),
        )?;
        if let Err(e) = tf.run_ok(&["get", "-no-color"]) {
            failures.push(format!("{what}: terraform get: {e}"));
            continue;
        }
        let out = tf.run(&["plan", "-no-color", "-input=false"])?;
        let text = format!("{}{}", out.stdout, out.stderr);
        if !out.success() {
            failures.push(format!("{what}: plan failed:\n{text}"));
            continue;
        }
        for needle in [
            "module.k3s_ha.homelab_opnsense_hasync.pair[0] will be created",
            "mode        = \"carp\"",
            "vhid        = 7",
        ] {
            if !text.contains(needle) {
                failures.push(format!("{what}: plan lacks {needle:?}:\n{text}"));
            }
        }
        if text.contains("carp-pass") || text.contains("sync-pass") || text.contains("secret2") {
            failures.push(format!("{what}: a secret is in the plan output"));
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("\n\n"));
    }
    Ok(())
}
