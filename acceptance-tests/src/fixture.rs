//! HCL and store helpers for the provider's test-only resource `homelab_test_fixture` (root crate feature
//! `test-fixtures`, see `src/testing/fixture_resource.rs`).
//!
//! The fixture keeps its objects in a JSON file named by `store_path` or `$HOMELAB_TEST_FIXTURE_STORE`; tests
//! point that variable at a file inside their own [`Terraform`] world ([`use_private_store`]), so parallel tests
//! never share objects, and can read or change the "remote system" out of band ([`Store`]).
//! Attribute names live here once, so the tests read as intent rather than HCL.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::terraform::{hcl_string, Terraform};

/// The fixture's type name (resource, data source and list resource share it).
pub const FIXTURE: &str = "homelab_test_fixture";

/// The environment variable naming the fixture store file.
pub const STORE_ENV: &str = "HOMELAB_TEST_FIXTURE_STORE";

/// `provider "homelab" { BODY }`.
pub fn provider_block(body: &str) -> String {
    format!("provider \"homelab\" {{\n  {body}\n}}\n")
}

/// `homelab_test_fixture.LABEL` with `name = LABEL` and an in-place updatable `description`.
pub fn fixture_config(label: &str, description: &str) -> String {
    fixture_resource(
        label,
        &[
            ("name", hcl_string(label)),
            ("description", hcl_string(description)),
        ],
    )
}

/// `homelab_test_fixture.LABEL` with the given attributes (values are HCL expressions).
pub fn fixture_resource(label: &str, attributes: &[(&str, String)]) -> String {
    let mut hcl = format!("resource \"{FIXTURE}\" \"{label}\" {{\n");
    for (name, value) in attributes {
        hcl.push_str(&format!("  {name} = {value}\n"));
    }
    hcl.push_str("}\n");
    hcl
}

/// A fixture whose sensitive attribute `secret` holds `secret`.
pub fn fixture_with_secret(label: &str, secret: &str) -> String {
    fixture_resource(
        label,
        &[("name", hcl_string(label)), ("secret", hcl_string(secret))],
    )
}

/// A fixture whose create and update sleep `delay_ms` milliseconds (interrupted by `StopProvider`).
pub fn slow_fixture(label: &str, delay_ms: u64) -> String {
    fixture_resource(
        label,
        &[
            ("name", hcl_string(label)),
            ("description", hcl_string("x")),
            ("apply_delay_ms", delay_ms.to_string()),
        ],
    )
}

/// Points the world's fixture store at `ROOT/fixture-store.json` and returns it.
pub fn use_private_store(tf: &mut Terraform) -> Store {
    let path = tf.root().join("fixture-store.json");
    tf.set_env(STORE_ENV, path.to_string_lossy().into_owned());
    Store { path }
}

/// The fixture's backing store, read and changed directly (out of band).
#[derive(Debug, Clone)]
pub struct Store {
    pub path: PathBuf,
}

impl Store {
    pub fn at(path: &Path) -> Store {
        Store {
            path: path.to_path_buf(),
        }
    }

    /// The whole file (`{"objects": {id: object}}`); an absent file is an empty store.
    pub fn read(&self) -> Value {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).expect("fixture store is JSON"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                serde_json::json!({"objects": {}})
            }
            Err(e) => panic!("reading {}: {e}", self.path.display()),
        }
    }

    /// Ids of all stored objects.
    pub fn ids(&self) -> Vec<String> {
        self.read()["objects"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// One stored object.
    pub fn object(&self, id: &str) -> Option<Value> {
        self.read()["objects"].get(id).cloned()
    }

    /// Writes the whole store back.
    pub fn write(&self, store: &Value) {
        std::fs::write(&self.path, serde_json::to_vec_pretty(store).unwrap())
            .unwrap_or_else(|e| panic!("writing {}: {e}", self.path.display()));
    }

    /// Deletes an object behind Terraform's back; returns whether it existed.
    pub fn delete(&self, id: &str) -> bool {
        let mut store = self.read();
        let existed = store["objects"]
            .as_object_mut()
            .and_then(|m| m.remove(id))
            .is_some();
        self.write(&store);
        existed
    }
}
