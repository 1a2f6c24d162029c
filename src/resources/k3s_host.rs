//! The host-side plumbing `homelab_k3s_server` and `homelab_k3s_agent` share: the id and import model derived from
//! `host.address`, the address identity, checks that recur in validate/plan (extra_config keys owned by dedicated
//! attributes, the version change rules, a changed address replaces), reading config back (config.yaml merged with
//! a hand install's exec-line flags and env file), and the install/start/readiness sequence.
//!
//! Why a separate file: both resources did all of this line for line; one place keeps the two in step. (The SSH
//! connection itself and the `host { }` block live in `k3s_common`.)

use std::collections::BTreeMap;

use super::k3s_common::*;
use crate::framework::*;
use crate::k3s::{self, Probe, Role};
use crate::ssh::Session;

/// The resource id: the host address.
pub fn host_id(host: Option<&ConnectionModel>) -> Tf<String> {
    host.map(|c| c.address.clone()).unwrap_or(Tf::Null)
}

/// The `host` block an import (or a listed node) starts from: only the address; the rest comes from the
/// provider's `ssh { }` defaults.
pub fn host_for(address: &str) -> Option<ConnectionModel> {
    Some(ConnectionModel {
        address: Tf::Known(address.to_string()),
        ..Default::default()
    })
}

/// The identity of a k3s node: its host address.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct HostIdentity {
    pub address: String,
}

/// The identity of a node whose id (the address) is known.
pub fn host_identity(id: &Tf<String>) -> Option<HostIdentity> {
    id.known().map(|a| HostIdentity { address: a.clone() })
}

/// The identity schema of both resources: the host address.
pub fn address_identity_schema() -> IdentitySchema {
    IdentitySchema::new().attribute(IdentityAttribute::string(
        "address",
        "The host address (`host.address`).",
    ))
}

/// Refuses `extra_config` keys that a dedicated attribute manages.
pub fn check_managed_keys(
    extra: &Tf<BTreeMap<String, String>>,
    managed: &[&str],
    diags: &mut Diagnostics,
) {
    if let Some(m) = extra.known() {
        for k in m.keys() {
            if managed.contains(&k.as_str()) {
                diags.push(
                    Diagnostic::error(
                        "Key managed by a dedicated attribute",
                        format!("Set `{k}` through its attribute, not extra_config."),
                    )
                    .at(attr("extra_config")),
                );
            }
        }
    }
}

/// Plan-time rules shared by both resources: a version change must be an allowed upgrade, and a new host address
/// replaces the node.
pub fn plan_common<M>(
    plan: &mut Plan<M>,
    version: impl Fn(&M) -> &Tf<String>,
    host: impl Fn(&M) -> Option<&ConnectionModel>,
) -> Result<(), Diagnostics> {
    let Some(prior) = plan.prior.as_ref() else {
        return Ok(());
    };
    if let (Some(from), Some(to)) = (version(prior).known(), version(&plan.planned).known()) {
        if from != to {
            k3s::check_upgrade(from, to).map_err(|detail| {
                Diagnostics::from(
                    Diagnostic::error("Unsupported k3s version change", detail).at(attr("version")),
                )
            })?;
        }
    }
    let pa = host(prior).map(|c| c.address.clone());
    let na = host(&plan.planned).map(|c| c.address.clone());
    if pa != na {
        plan.require_replace(attr("host"));
    }
    Ok(())
}

/// A config value as a string.
pub fn cfg_str(cfg: &BTreeMap<String, serde_json::Value>, key: &str) -> Option<String> {
    match cfg.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `extra_config` read back: every key not managed by a dedicated attribute; the user's null stays null when the
/// host has none.
pub fn extra_back(
    cfg: &BTreeMap<String, serde_json::Value>,
    managed: &[&str],
    prior: &Tf<BTreeMap<String, String>>,
) -> Tf<BTreeMap<String, String>> {
    let extra: BTreeMap<String, String> = cfg
        .iter()
        .filter(|(k, _)| !managed.contains(&k.as_str()))
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string()),
            )
        })
        .collect();
    if extra.is_empty() && !matches!(prior, Tf::Known(e) if !e.is_empty()) {
        prior.clone()
    } else {
        Tf::Known(extra)
    }
}

/// What a host's configuration reads back as, for drift: `None` when config.yaml exists but cannot be read as a
/// YAML mapping (the caller then plans a rewrite).
pub fn read_config(probe: &Probe) -> Option<BTreeMap<String, serde_json::Value>> {
    probe.effective().map(|e| e.config)
}

/// The marker put into `extra_config` when config.yaml cannot be parsed, so the plan rewrites it.
pub fn unreadable_config_marker() -> Tf<BTreeMap<String, String>> {
    Tf::Known(BTreeMap::from([(
        "# config.yaml".to_string(),
        "not a YAML mapping; the provider rewrites it".to_string(),
    )]))
}

/// Opens a session and probes `role`: `None` when k3s in that role is not installed (the node is gone).
pub async fn open_installed(
    ctx: &Context,
    host: Option<&ConnectionModel>,
    role: Role,
) -> Result<Option<(Session, Probe)>, Diagnostics> {
    let session = connect(ctx, host).await?;
    let probe = k3s::probe(&session, role)
        .await
        .map_err(|e| k3s_diag("Cannot inspect the host", e))?;
    if !probe.installed(role) {
        return Ok(None);
    }
    Ok(Some((session, probe)))
}

/// The settings both resources read back from a node's configuration the same way.
pub struct NodeFields<'a> {
    pub token: &'a mut Tf<String>,
    pub node_name: &'a mut Tf<String>,
    pub node_labels: &'a mut Tf<Vec<String>>,
    pub node_taints: &'a mut Tf<Vec<String>>,
    pub extra_config: &'a mut Tf<BTreeMap<String, String>>,
}

impl NodeFields<'_> {
    /// Fills the fields from `cfg` (`None`: config.yaml unreadable, which marks `extra_config` so the plan
    /// rewrites it). Lists and `extra_config` keep the user's null when the host has nothing.
    pub fn read_back(self, cfg: Option<&BTreeMap<String, serde_json::Value>>, managed: &[&str]) {
        let Some(cfg) = cfg else {
            *self.extra_config = unreadable_config_marker();
            return;
        };
        if let Some(t) = cfg_str(cfg, "token") {
            *self.token = Tf::Known(t);
        }
        if let Some(n) = cfg_str(cfg, "node-name") {
            *self.node_name = Tf::Known(n);
        }
        *self.node_labels = list_back(strings_of(cfg.get("node-label")), self.node_labels);
        *self.node_taints = list_back(strings_of(cfg.get("node-taint")), self.node_taints);
        *self.extra_config = extra_back(cfg, managed, self.extra_config);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_keeps_unmanaged_keys_and_user_nulls() {
        let cfg = BTreeMap::from([
            ("token".to_string(), json!("t")),
            ("write-kubeconfig-mode".to_string(), json!("0644")),
            ("flannel-backend".to_string(), json!(null)),
        ]);
        let e = extra_back(&cfg, &["token"], &Tf::Null);
        let Tf::Known(m) = e else { panic!() };
        assert_eq!(m["write-kubeconfig-mode"], "0644");
        assert!(!m.contains_key("token"));
        let only_managed = BTreeMap::from([("token".to_string(), json!("t"))]);
        assert_eq!(extra_back(&only_managed, &["token"], &Tf::Null), Tf::Null);
    }

    #[test]
    fn managed_keys_are_refused_in_extra_config() {
        let mut d = Diagnostics::new();
        check_managed_keys(
            &Tf::Known(BTreeMap::from([("token".to_string(), "x".to_string())])),
            &["token"],
            &mut d,
        );
        assert!(d.has_errors());
    }
}
