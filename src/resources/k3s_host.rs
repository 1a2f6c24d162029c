//! The host-side plumbing `homelab_k3s_server` and `homelab_k3s_agent` share: the id and import model derived from
//! `host.address`, the address identity, checks that recur in validate/plan (extra_config keys owned by dedicated
//! attributes, the version change rules, a changed address replaces), reading config back (config.yaml merged with
//! a hand install's exec-line flags and env file), and the install/start/readiness sequence.
//!
//! Why a separate file: both resources did all of this line for line; one place keeps the two in step. (The SSH
//! connection itself and the `host { }` block live in `k3s_common`.)

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// `token_wo` + `token_wo_version`: the cluster token as a write-only attribute (Terraform ≥ 1.11), so that
/// neither the token nor anything derived from it reaches plan or state. Terraform 1.0.3 ignores the
/// write-only flag, so the server refuses `token_wo` from a Terraform that does not announce write-only support
/// (`ValidateResourceConfig`); 1.0.3 users keep `token`.
pub fn token_wo_attributes(s: Schema) -> Schema {
    s.attribute(
        Attribute::string("token_wo")
            .optional()
            .sensitive()
            .write_only()
            .validate(token_format())
            .description(
                "The cluster token, write-only (Terraform 1.11 or newer): written to config.yaml like `token`, but \
                 never stored in plan or state, and never read back. Set exactly one of `token` and `token_wo`; \
                 with `token_wo` set `token_wo_version` too. A new token with a raised `token_wo_version` on the \
                 `init` server rotates the cluster's token, like a change of `token`.",
            ),
    )
    .attribute(
        Attribute::number("token_wo_version")
            .optional()
            .description(
                "Required with `token_wo`. Terraform cannot compare a write-only value with anything, so a change \
                 of this number is what re-applies `token_wo` (config.yaml rewritten, k3s restarted).",
            ),
    )
}

/// The token format check at plan (`crate::k3s::token::check_format`), for `token` and `token_wo`.
pub fn token_format() -> Validator {
    Validator::string(
        "a k3s token: `K10<64 hex digits>::server:<password>` or a plain password",
        k3s::token::check_format,
    )
}

/// Exactly one of `token` and `token_wo`, and `token_wo_version` with `token_wo` (unknown values count as set).
pub fn check_token_choice(
    token: &Tf<String>,
    token_wo: &Tf<String>,
    version: &Tf<i64>,
    diags: &mut Diagnostics,
) {
    match (token.is_null(), token_wo.is_null()) {
        (true, true) => diags.push(
            Diagnostic::error(
                "Missing cluster token",
                "Set `token` (kept in state, works with every Terraform) or `token_wo` with `token_wo_version` \
                 (write-only, Terraform 1.11 or newer).",
            )
            .at(attr("token")),
        ),
        (false, false) => diags.push(
            Diagnostic::error(
                "Conflicting cluster tokens",
                "Set only one of `token` and `token_wo`.",
            )
            .at(attr("token_wo")),
        ),
        _ => {}
    }
    if !token_wo.is_null() && version.is_null() {
        diags.push(
            Diagnostic::error(
                "token_wo_version is required with token_wo",
                "Terraform keeps no trace of a write-only value, so it cannot see a new token by itself: set \
                 `token_wo_version = 1` and raise it whenever `token_wo` changes.",
            )
            .at(attr("token_wo_version")),
        );
    }
}

/// The token to write into config.yaml: `token`, else the write-only `token_wo` (present only during apply).
pub fn wanted_token<'m>(token: &'m Tf<String>, token_wo: &'m Tf<String>) -> Option<&'m String> {
    token.known().or_else(|| token_wo.known())
}

/// Whether a state or plan uses the write-only token: then nothing secret is read back into it.
pub fn uses_token_wo(token: &Tf<String>, version: &Tf<i64>) -> bool {
    token.is_null() && !version.is_null()
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

/// A refresh's one read of a node ([`k3s::read_node`]): `None` when k3s in that role is not installed.
pub async fn read_installed(
    ctx: &Context,
    host: Option<&ConnectionModel>,
    wants: &k3s::ReadWants<'_>,
) -> Result<Option<(Session, k3s::NodeRead)>, Diagnostics> {
    let session = connect(ctx, host).await?;
    let read = k3s::read_node(&session, wants)
        .await
        .map_err(|e| k3s_diag("Cannot inspect the host", e))?;
    if !read.probe.installed(wants.role) {
        return Ok(None);
    }
    Ok(Some((session, read)))
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

/// A `registry_mirror { }` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistryMirrorModel {
    pub registry: Tf<String>,
    pub endpoints: Tf<Vec<String>>,
}

/// A `registry_config { }` block.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegistryConfigModel {
    pub host: Tf<String>,
    pub username: Tf<String>,
    pub password: Tf<String>,
    pub password_wo: Tf<String>,
    pub password_wo_version: Tf<i64>,
    pub insecure_skip_verify: Tf<bool>,
    pub ca_file: Tf<String>,
}

/// The private-registry blocks both resources have (`registries.yaml`, see [`k3s::registries`]).
pub fn registry_blocks(s: Schema) -> Schema {
    s.block(NestedBlock::list(
        "registry_mirror",
        Block::new(
            "A registry mirror in /etc/rancher/k3s/registries.yaml: pulls from `registry` try `endpoints` first. \
             k3s reads the file when it starts, so a change restarts k3s on this node.",
        )
        .attribute(Attribute::string("registry").required().validate(Validator::not_empty()).description(
            "The registry whose pulls are mirrored, e.g. `docker.io`, `registry.k8s.io`, or `*` for every one.",
        ))
        .attribute(
            Attribute::list("endpoints", Type::String)
                .required()
                .description("Mirror URLs tried in order, e.g. `https://mirror.lan:5000`."),
        ),
    ))
    .block(NestedBlock::list(
        "registry_config",
        Block::new(
            "How k3s talks to one registry host (credentials, TLS) in /etc/rancher/k3s/registries.yaml (written \
             0600). The password is write-only with `password_wo` (Terraform 1.11 or newer), or `password`, \
             sensitive and in state, on Terraform 1.0.3.",
        )
        .attribute(Attribute::string("host").required().validate(Validator::not_empty()).description(
            "The registry host as pulls name it, with its port if any, e.g. `mirror.lan:5000` or `docker.io`.",
        ))
        .attribute(Attribute::string("username").optional().description("User name for the registry."))
        .attribute(Attribute::string("password").optional().sensitive().description(
            "Password for the registry, kept in state (the Terraform 1.0.3 path; `password_wo` keeps it out of \
             state). Read back from the node.",
        ))
        .attribute(
            Attribute::string("password_wo")
                .optional()
                .sensitive()
                .write_only()
                .description(
                    "Password for the registry, write-only (Terraform 1.11 or newer): written to the node, never \
                     in plan or state, never read back. Set `password_wo_version` with it.",
                ),
        )
        .attribute(Attribute::number("password_wo_version").optional().description(
            "Required with `password_wo`; raise it to write a new `password_wo` (Terraform cannot compare \
             write-only values).",
        ))
        .attribute(
            Attribute::bool("insecure_skip_verify")
                .optional()
                .description("Skip verifying the registry's TLS certificate."),
        )
        .attribute(
            Attribute::string("ca_file")
                .optional()
                .description("Path on the node of a CA bundle that signs the registry's certificate."),
        ),
    ))
}

/// Plan-time rules of the registry blocks: one password choice per host, and the version with `password_wo`.
pub fn check_registries(configs: &[RegistryConfigModel], diags: &mut Diagnostics) {
    for (i, c) in configs.iter().enumerate() {
        let at = |d: Diagnostic, a: &str| d.at(attr("registry_config").index(i as i64).attr(a));
        if !c.password.is_null() && !c.password_wo.is_null() {
            diags.push(at(
                Diagnostic::error(
                    "Conflicting registry passwords",
                    "Set `password` (Terraform 1.0.3) or `password_wo` (Terraform 1.11 or newer), not both.",
                ),
                "password_wo",
            ));
        }
        if !c.password_wo.is_null() && c.password_wo_version.is_null() {
            diags.push(at(
                Diagnostic::error(
                    "password_wo_version is required with password_wo",
                    "Terraform cannot compare write-only values: set `password_wo_version` (any number) and raise \
                     it whenever the password changes."
                        ,
                ),
                "password_wo_version",
            ));
        }
    }
}

/// registries.yaml for the planned blocks (`None`: no blocks).
pub fn registries_text(
    mirrors: &[RegistryMirrorModel],
    configs: &[RegistryConfigModel],
) -> Option<String> {
    if mirrors.is_empty() && configs.is_empty() {
        return None;
    }
    let mirrors: Vec<k3s::registries::Mirror> = mirrors
        .iter()
        .map(|m| k3s::registries::Mirror {
            registry: m.registry.known().cloned().unwrap_or_default(),
            endpoints: list_or_empty(&m.endpoints),
        })
        .collect();
    let endpoints: Vec<k3s::registries::Endpoint> = configs
        .iter()
        .map(|c| k3s::registries::Endpoint {
            host: c.host.known().cloned().unwrap_or_default(),
            username: c.username.known().cloned(),
            password: c.password.known().or(c.password_wo.known()).cloned(),
            insecure_skip_verify: c.insecure_skip_verify.known().copied(),
            ca_file: c.ca_file.known().cloned(),
        })
        .collect();
    Some(k3s::registries::render(&mirrors, &endpoints))
}

/// What to do with registries.yaml: write the planned text; remove the file when the prior state had blocks
/// and the plan has none; else leave it alone (a hand-written file on a node that never managed it).
pub fn registries_want<'a>(
    text: &'a Option<String>,
    managed_before: bool,
) -> k3s::registries::Want<'a> {
    match text {
        Some(t) => k3s::registries::Want::Write(t),
        None if managed_before => k3s::registries::Want::Remove,
        None => k3s::registries::Want::Leave,
    }
}

/// Reads the blocks back from the node's registries.yaml. Passwords: read back where state keeps `password`;
/// with `password_wo` neither is read (the version stays the state's). Order follows the state's blocks.
pub fn read_registries_back(
    probe: &Probe,
    mirrors: &mut Vec<RegistryMirrorModel>,
    configs: &mut Vec<RegistryConfigModel>,
) {
    let Some((m, e)) = probe.registries.as_deref().map(|raw| {
        k3s::registries::parse(raw).unwrap_or_else(|| {
            // Unparseable: plan a rewrite by showing no blocks.
            (vec![], vec![])
        })
    }) else {
        mirrors.clear();
        configs.clear();
        return;
    };
    let order =
        |name: &str, known: &[String]| known.iter().position(|k| k == name).unwrap_or(usize::MAX);
    let known_m: Vec<String> = mirrors
        .iter()
        .filter_map(|x| x.registry.known().cloned())
        .collect();
    let mut new_m: Vec<RegistryMirrorModel> = m
        .into_iter()
        .map(|x| RegistryMirrorModel {
            registry: Tf::Known(x.registry),
            endpoints: Tf::Known(x.endpoints),
        })
        .collect();
    new_m.sort_by_key(|x| {
        order(
            x.registry.known().map(String::as_str).unwrap_or(""),
            &known_m,
        )
    });
    *mirrors = new_m;
    let prior: Vec<RegistryConfigModel> = std::mem::take(configs);
    let known_c: Vec<String> = prior
        .iter()
        .filter_map(|x| x.host.known().cloned())
        .collect();
    let mut new_c: Vec<RegistryConfigModel> = e
        .into_iter()
        .map(|x| {
            let before = prior.iter().find(|p| p.host.known() == Some(&x.host));
            let write_only =
                before.is_some_and(|p| p.password.is_null() && !p.password_wo_version.is_null());
            RegistryConfigModel {
                host: Tf::Known(x.host),
                username: x.username.map(Tf::Known).unwrap_or(Tf::Null),
                password: if write_only {
                    Tf::Null
                } else {
                    x.password.map(Tf::Known).unwrap_or(Tf::Null)
                },
                password_wo: Tf::Null,
                password_wo_version: before.map(|p| p.password_wo_version).unwrap_or(Tf::Null),
                insecure_skip_verify: x.insecure_skip_verify.map(Tf::Known).unwrap_or(Tf::Null),
                ca_file: x.ca_file.map(Tf::Known).unwrap_or(Tf::Null),
            }
        })
        .collect();
    new_c.sort_by_key(|x| order(x.host.known().map(String::as_str).unwrap_or(""), &known_c));
    *configs = new_c;
}

/// Labels are `key=value` with a key; taints `key[=value]:Effect` with one of Kubernetes' three effects.
pub fn check_marks_format(
    labels: &Tf<Vec<String>>,
    taints: &Tf<Vec<String>>,
    diags: &mut Diagnostics,
) {
    if let Some(l) = labels.known() {
        for kv in l
            .iter()
            .filter(|kv| !kv.contains('=') || kv.starts_with('='))
        {
            diags.push(
                Diagnostic::error(
                    "Invalid node label",
                    format!("`{kv}` is not `key=value` (the value may be empty: `key=`)."),
                )
                .at(attr("node_labels")),
            );
        }
    }
    if let Some(t) = taints.known() {
        for t in t.iter().filter(|t| k3s::marks::Taint::parse(t).is_none()) {
            diags.push(
                Diagnostic::error(
                    "Invalid node taint",
                    format!(
                        "`{t}` is not `key=value:Effect` or `key:Effect` with Effect NoSchedule, \
                         PreferNoSchedule or NoExecute."
                    ),
                )
                .at(attr("node_taints")),
            );
        }
    }
}

/// The labels that go into config.yaml's `node-label` (applied by the kubelet when it registers): those a kubelet
/// may set. The others (`node-role.kubernetes.io/...`) would stop the kubelet from starting; they are set through
/// the API only ([`k3s::marks`]).
pub fn registrable_labels(labels: &Tf<Vec<String>>) -> Vec<String> {
    list_or_empty(labels)
        .into_iter()
        .filter(|kv| k3s::marks::kubelet_may_set(k3s::marks::label_key(kv)))
        .collect()
}

/// A pair of string lists (labels, taints) of a model.
pub type Lists<'a> = (&'a Tf<Vec<String>>, &'a Tf<Vec<String>>);

/// What the Node should carry after an apply: the planned labels and taints, and what the prior state managed
/// that the plan no longer has (removed from the Node).
pub fn marks_want(
    labels: &Tf<Vec<String>>,
    taints: &Tf<Vec<String>>,
    prior: Option<Lists<'_>>,
) -> k3s::marks::Want {
    let (dropped_labels, dropped_taints) = prior
        .map(|(l, t)| (list_or_empty(l), list_or_empty(t)))
        .unwrap_or_default();
    k3s::marks::Want {
        labels: list_or_empty(labels),
        taints: list_or_empty(taints),
        dropped_labels,
        dropped_taints,
    }
}

/// Reads labels and taints back from the Node (where they are applied), over what config.yaml said: keys the
/// state or config.yaml manage, every taint but Kubernetes' own. When the Node cannot be asked (the node is
/// stopped or not registered), config.yaml's values stay. `pre` is the Node already read with the rest of the
/// refresh ([`k3s::read_node`]); it counts only when it is the same Node, else the Node is asked here.
pub async fn read_marks_back(
    session: &Session,
    creds: k3s::kube::Creds<'_>,
    node_name: &str,
    pre: Option<(String, Result<k3s::marks::Marks, String>)>,
    labels: &mut Tf<Vec<String>>,
    taints: &mut Tf<Vec<String>>,
    state: (&Tf<Vec<String>>, &Tf<Vec<String>>),
) {
    let answer = match pre {
        Some((name, answer)) if name == node_name => answer,
        _ => match k3s::marks::read(session, creds, node_name).await {
            Ok(a) => a,
            Err(_) => return,
        },
    };
    let Ok(marks) = answer else {
        return;
    };
    let keys: Vec<String> = list_or_empty(state.0)
        .iter()
        .chain(list_or_empty(labels).iter())
        .map(|kv| k3s::marks::label_key(kv).to_string())
        .collect();
    *labels = list_back(marks.labels_for(&keys), state.0);
    let on_node = marks.managed_taints();
    let known = list_or_empty(state.1);
    let mut ordered: Vec<String> = known
        .iter()
        .filter(|t| on_node.contains(t))
        .cloned()
        .collect();
    ordered.extend(on_node.into_iter().filter(|t| !known.contains(t)));
    *taints = list_back(ordered, state.1);
}

/// The first expiry of a node's certificates (null when none could be read).
pub fn first_expiry(certs: &[k3s::certs::CertExpiry]) -> Tf<String> {
    certs
        .first()
        .map(|c| Tf::Known(k3s::certs::rfc3339(c.not_after)))
        .unwrap_or(Tf::Null)
}

/// A refresh's warning when certificates expire within 90 days (k3s renews them only when it starts).
/// `role` names the node in the summary ("k3s", "k3s agent"): Terraform folds warnings with the same summary
/// into one, and a server's and an agent's need different fixes.
pub fn warn_expiring(
    ctx: &Context,
    role: &str,
    host: &str,
    certs: &[k3s::certs::CertExpiry],
    fix: &str,
) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let soon = k3s::certs::expiring(certs, now, k3s::certs::WARN_DAYS);
    if soon.is_empty() {
        return;
    }
    let list = soon
        .iter()
        .map(|c| format!("{} ({})", c.path, k3s::certs::rfc3339(c.not_after)))
        .collect::<Vec<_>>()
        .join(", ");
    ctx.warn(
        format!("{role} certificates expire within 90 days"),
        format!(
            "On {host}: {list}. k3s renews such certificates only when it starts; a node that is not restarted \
             stops working when they expire. {fix}"
        ),
    );
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
    fn exactly_one_token_and_a_version_with_the_write_only_one() {
        let k = |s: &str| Tf::Known(s.to_string());
        let summaries = |t: Tf<String>, wo: Tf<String>, v: Tf<i64>| {
            let mut d = Diagnostics::new();
            check_token_choice(&t, &wo, &v, &mut d);
            d.iter().map(|x| x.summary.clone()).collect::<Vec<_>>()
        };
        assert!(summaries(k("t"), Tf::Null, Tf::Null).is_empty());
        assert!(summaries(Tf::Null, Tf::Unknown, Tf::Known(1)).is_empty());
        assert_eq!(
            summaries(Tf::Null, Tf::Null, Tf::Null),
            ["Missing cluster token"]
        );
        assert_eq!(
            summaries(k("t"), k("u"), Tf::Known(1)),
            ["Conflicting cluster tokens"]
        );
        assert_eq!(
            summaries(Tf::Null, k("u"), Tf::Null),
            ["token_wo_version is required with token_wo"]
        );
        assert_eq!(wanted_token(&Tf::Null, &k("u")), Some(&"u".to_string()));
        assert!(uses_token_wo(&Tf::Null, &Tf::Known(1)));
        assert!(!uses_token_wo(&Tf::Null, &Tf::Null));
    }

    #[test]
    fn registries_round_trip_and_passwords_are_read_back_only_outside_write_only() {
        let k = |s: &str| Tf::Known(s.to_string());
        let mirrors = vec![RegistryMirrorModel {
            registry: k("docker.io"),
            endpoints: Tf::Known(vec!["https://m:5000".into()]),
        }];
        let sensitive = RegistryConfigModel {
            host: k("m:5000"),
            username: k("u"),
            password: k("p1"),
            ..Default::default()
        };
        let write_only = RegistryConfigModel {
            host: k("w:5000"),
            password_wo: k("p2"),
            password_wo_version: Tf::Known(3),
            ..Default::default()
        };
        let text = registries_text(&mirrors, &[sensitive.clone(), write_only.clone()]).unwrap();
        assert!(text.contains("p1") && text.contains("p2"));
        let probe = Probe {
            registries: Some(text.into_bytes()),
            ..Default::default()
        };
        let (mut m, mut c) = (mirrors.clone(), vec![write_only.clone(), sensitive.clone()]);
        read_registries_back(&probe, &mut m, &mut c);
        assert_eq!(m, mirrors);
        // The state's order; the 1.0.3 password read back, the write-only one not (its version kept).
        assert_eq!(c[1], sensitive);
        assert_eq!(
            c[0],
            RegistryConfigModel {
                password_wo: Tf::Null,
                ..write_only
            }
        );
        let absent = Probe::default();
        read_registries_back(&absent, &mut m, &mut c);
        assert!(m.is_empty() && c.is_empty());
        assert_eq!(registries_text(&[], &[]), None);
        assert_eq!(registries_want(&None, true), k3s::registries::Want::Remove);
        assert_eq!(registries_want(&None, false), k3s::registries::Want::Leave);
    }

    #[test]
    fn labels_and_taints_are_checked_at_plan() {
        let l = |v: &[&str]| Tf::Known(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut d = Diagnostics::new();
        check_marks_format(
            &l(&["tier=a", "empty="]),
            &l(&["a=b:NoSchedule", "c:NoExecute"]),
            &mut d,
        );
        assert!(!d.has_errors());
        check_marks_format(&l(&["novalue", "=x"]), &l(&["a=b", "c:Never"]), &mut d);
        assert_eq!(
            d.iter()
                .filter(|x| x.summary == "Invalid node label")
                .count(),
            2
        );
        assert_eq!(
            d.iter()
                .filter(|x| x.summary == "Invalid node taint")
                .count(),
            2
        );
        assert_eq!(
            registrable_labels(&l(&["tier=a", "node-role.kubernetes.io/worker=true"])),
            ["tier=a"]
        );
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
