//! The sequence every node goes through on create and update, server or agent: write config.yaml, install when
//! missing or at another version, (re)start when anything changed, wait for readiness.
//!
//! Why in this order: config.yaml is written first so that the install (which starts nothing, see the module docs
//! of [`crate::k3s`]) and the one start that follows both see the final settings; the restart happens only when
//! the file, the binary or the unit's state changed, so a no-op apply restarts nothing. A node whose settings also
//! live on the unit's command line or in its env file (a hand install) is re-installed when config.yaml changes:
//! otherwise the old flags would keep overriding the new file.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::K3sError;
use super::node::{self, InstallSource, Probe, Role};
use super::step::{step, Failure, Input, Report};
use crate::ssh::Session;

/// What a node should be, as the sequence needs it.
pub struct NodeWant<'a> {
    pub role: Role,
    pub node_name: &'a str,
    /// config.yaml without `node-name` (added here from `node_name`, so the file always names the node).
    pub config: &'a BTreeMap<String, serde_json::Value>,
    /// The wanted version (`None`: whatever the install script installs, and no reinstall for a version).
    pub version: Option<&'a str>,
    pub install: &'a InstallSource,
    /// registries.yaml (k3s reads it at start: a change restarts the node).
    pub registries: super::registries::Want<'a>,
    /// The operation's time limit (create or update timeout); see [`ready_budget`].
    pub limit: Duration,
}

/// Brings the node to `want`, starting from what `probe` found on the host.
pub async fn node(
    session: &Session,
    probe: &Probe,
    want: &NodeWant<'_>,
    report: &dyn Report,
    cancel: &CancellationToken,
) -> Result<(), Failure> {
    let role = want.role;
    let mut config = want.config.clone();
    config.insert("node-name".into(), serde_json::json!(want.node_name));
    let changed = node::write_config(
        session,
        &node::render_config(&config),
        probe.config.as_deref(),
    )
    .await
    .map_err(step("Cannot write config.yaml"))?;
    let registries_changed = write_registries(session, probe, want.registries)
        .await
        .map_err(step("Cannot write registries.yaml"))?;
    let outside = probe
        .effective()
        .map(|e| e.outside_config_file)
        .unwrap_or(false);
    warn_dropin_overrides(session, probe, &config, report);
    let installed = probe.installed(role);
    let normalise = installed && changed && outside;
    if normalise {
        report.warn(
            "Moving k3s settings into config.yaml",
            format!(
                "{} was installed with settings on the {} unit's command line or in its env file. The provider \
                 re-runs the installer so the unit carries none and config.yaml is the only source of settings.",
                session.host(),
                role.unit()
            ),
        );
    }
    let needs_install = !installed
        || normalise
        || (want.version.is_some() && want.version.map(str::to_string) != probe.version);
    if needs_install {
        node::install(session, role, want.version, want.install)
            .await
            .map_err(|e| match e {
                K3sError::AirgapBinary { .. } => {
                    Failure::new("Cannot read the air-gap binary", e.to_string())
                        .on(Input::AirgapBinary)
                }
                e => step("k3s install failed")(e),
            })?;
    }
    let running = probe.active == "active";
    let restart = registries_changed
        || (changed && differs_beyond_registration(probe.config.as_deref(), &config));
    if !running || restart || needs_install {
        node::start(session, role, running)
            .await
            .map_err(step(&format!("Cannot start {}", role.unit())))?;
    }
    node::wait_ready(
        session,
        role,
        want.node_name,
        ready_budget(want.limit),
        cancel,
    )
    .await
    .map_err(step(match role {
        Role::Server => "k3s server did not become ready",
        Role::Agent => "k3s agent did not become ready",
    }))
}

/// A `config.yaml.d/*.yaml` drop-in that sets a key the provider writes into config.yaml wins over it (k3s
/// merges drop-ins after config.yaml): say so, naming the file, since the plan will keep showing the difference.
fn warn_dropin_overrides(
    session: &Session,
    probe: &Probe,
    config: &BTreeMap<String, serde_json::Value>,
    report: &dyn Report,
) {
    let Some(eff) = probe.effective() else {
        return;
    };
    let overridden: Vec<String> = eff
        .from_dropins
        .iter()
        .filter(|(k, _)| {
            config.contains_key(k.as_str()) && eff.config.get(k.as_str()) != config.get(k.as_str())
        })
        .map(|(k, f)| format!("`{k}` ({f})"))
        .collect();
    if overridden.is_empty() {
        return;
    }
    report.warn(
        "config.yaml.d overrides the provider's settings",
        format!(
            "On {}, drop-ins in /etc/rancher/k3s/config.yaml.d/ set {}, and k3s applies them after config.yaml, \
             so they win over what this resource writes. Remove those keys from the drop-ins (or set the \
             resource to match): until then the plan keeps showing the difference.",
            session.host(),
            overridden.join(", ")
        ),
    );
}

/// Writes (0600, content on stdin) or removes registries.yaml as wanted; returns whether it changed.
async fn write_registries(
    session: &Session,
    probe: &Probe,
    want: super::registries::Want<'_>,
) -> Result<bool, K3sError> {
    use super::registries::{Want, REGISTRIES_PATH};
    match want {
        Want::Leave => Ok(false),
        Want::Write(text) if probe.registries.as_deref() == Some(text.as_bytes()) => Ok(false),
        Want::Write(text) => {
            session
                .upload_creating_dir(text.as_bytes(), REGISTRIES_PATH, 0o600, 0o755)
                .await?;
            Ok(true)
        }
        Want::Remove if probe.registries.is_none() => Ok(false),
        Want::Remove => {
            session
                .run_sudo(&format!("rm -f {REGISTRIES_PATH}"), None)
                .await?;
            Ok(true)
        }
    }
}

/// Keys k3s reads only when the node registers (its docs: labels and taints are added at registration, and
/// changed afterwards through the API): a change to them alone needs no restart.
const REGISTRATION_ONLY: &[&str] = &["node-label", "node-taint"];

/// Whether the new config.yaml differs from the old one in more than [`REGISTRATION_ONLY`] keys (an unreadable
/// old file counts as different).
fn differs_beyond_registration(
    old: Option<&[u8]>,
    new: &BTreeMap<String, serde_json::Value>,
) -> bool {
    let Some(mut old) = old.and_then(super::config::parse_config) else {
        return true;
    };
    let mut new = new.clone();
    for k in REGISTRATION_ONLY {
        old.remove(*k);
        new.remove(*k);
    }
    old != new
}

/// The unit-poll deadline for an operation limit: leave time for the journal diagnostic.
pub fn ready_budget(limit: Duration) -> Duration {
    limit
        .saturating_sub(Duration::from_secs(15))
        .max(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_label_or_taint_change_alone_needs_no_restart() {
        let old = br#"{"node-label":["tier=a"],"node-name":"n1","token":"t"}"#;
        let mut new = BTreeMap::from([
            ("node-label".to_string(), json!(["tier=b"])),
            ("node-taint".to_string(), json!(["gpu:NoSchedule"])),
            ("node-name".to_string(), json!("n1")),
            ("token".to_string(), json!("t")),
        ]);
        assert!(!differs_beyond_registration(Some(old), &new));
        new.insert("token".into(), json!("u"));
        assert!(differs_beyond_registration(Some(old), &new));
        assert!(differs_beyond_registration(None, &new));
    }
}
