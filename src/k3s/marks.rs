//! Node labels and taints, applied to the Node through the API and read back from it.
//!
//! Why not config.yaml alone: k3s passes `node-label`/`node-taint` to the kubelet, which applies them only when the
//! node first registers (k3s's docs: "only add labels and/or taints at registration time … use kubectl" to change
//! them afterwards). So config.yaml keeps the wanted values (a re-registered node gets them, and a change there
//! needs no restart), while the Node object is where they are applied and read: a `kubectl label` by hand shows in
//! the plan, and a changed list is patched onto the Node in place.
//!
//! Only what the resource manages is compared: the label keys it was given (other controllers label nodes too),
//! and every taint except those Kubernetes sets itself (`node.kubernetes.io/*`, e.g. not-ready), since any taint
//! decides where pods run.
//!
//! Credentials ([`super::kube::Creds`]): a kubelet's may not change taints or `kubernetes.io`/`k8s.io` labels
//! outside NodeRestriction's allowed set, and the kubelet refuses such labels at registration too; both are
//! checked here (and at plan) rather than discovered as a 403.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::error::K3sError;
use super::kube::{self, Creds};
use super::step::{Failure, Input};
use crate::ssh::{quote, Session};

/// One taint, `key[=value]:Effect`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: Option<String>,
    pub effect: String,
}

impl Taint {
    /// Parses `key=value:Effect` or `key:Effect`; `None` when the form or the effect is wrong.
    pub fn parse(s: &str) -> Option<Taint> {
        let (kv, effect) = s.rsplit_once(':')?;
        if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            return None;
        }
        let (key, value) = match kv.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (kv, None),
        };
        if key.is_empty() {
            return None;
        }
        Some(Taint {
            key: key.to_string(),
            value,
            effect: effect.to_string(),
        })
    }

    /// The `key[=value]:Effect` form.
    pub fn text(&self) -> String {
        match &self.value {
            Some(v) => format!("{}={v}:{}", self.key, self.effect),
            None => format!("{}:{}", self.key, self.effect),
        }
    }

    fn json(&self) -> Value {
        let mut t = json!({"key": self.key, "effect": self.effect});
        if let Some(v) = &self.value {
            t["value"] = json!(v);
        }
        t
    }

    /// A taint Kubernetes manages itself (not-ready, unreachable, unschedulable...).
    fn automatic(&self) -> bool {
        self.key.starts_with("node.kubernetes.io/")
            || self.key.starts_with("node.cloudprovider.kubernetes.io/")
    }
}

/// The labels and taints a Node has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Marks {
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

impl Marks {
    /// From a Node object (`kubectl get node -o json`).
    pub fn from_node(node: &Value) -> Marks {
        let labels = node["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let taints = node["spec"]["taints"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| {
                        Some(Taint {
                            key: t["key"].as_str()?.to_string(),
                            value: t["value"].as_str().map(str::to_string),
                            effect: t["effect"].as_str()?.to_string(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        Marks { labels, taints }
    }

    /// The `key=value` labels for `keys` (in that order) that the Node has.
    pub fn labels_for(&self, keys: &[String]) -> Vec<String> {
        let mut seen = std::collections::BTreeSet::new();
        keys.iter()
            .filter(|k| seen.insert(k.as_str()))
            .filter_map(|k| self.labels.get(k).map(|v| format!("{k}={v}")))
            .collect()
    }

    /// The taints a user may manage, as `key[=value]:Effect`.
    pub fn managed_taints(&self) -> Vec<String> {
        self.taints
            .iter()
            .filter(|t| !t.automatic())
            .map(Taint::text)
            .collect()
    }
}

/// The key of a `key=value` label (the whole text when there is no `=`).
pub fn label_key(kv: &str) -> &str {
    kv.split_once('=').map(|(k, _)| k).unwrap_or(kv)
}

/// Whether a kubelet may set this label on its own Node (NodeRestriction; the kubelet's `--node-labels` rule):
/// anything outside the `kubernetes.io`/`k8s.io` namespaces, the `kubelet.kubernetes.io`/`node.kubernetes.io`
/// namespaces, and a fixed set of well-known labels.
pub fn kubelet_may_set(key: &str) -> bool {
    const ALLOWED: &[&str] = &[
        "kubernetes.io/hostname",
        "kubernetes.io/arch",
        "kubernetes.io/os",
        "beta.kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "failure-domain.beta.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "topology.kubernetes.io/zone",
    ];
    if ALLOWED.contains(&key) {
        return true;
    }
    let Some((domain, _)) = key.split_once('/') else {
        return true;
    };
    let under = |ns: &str| domain == ns || domain.ends_with(&format!(".{ns}"));
    if under("node-restriction.kubernetes.io") {
        return false;
    }
    if under("kubelet.kubernetes.io") || under("node.kubernetes.io") {
        return true;
    }
    !(under("kubernetes.io") || under("k8s.io"))
}

/// What the Node should carry: the wanted labels and taints, and the ones the resource managed before and no
/// longer wants (removed).
#[derive(Clone, Debug, Default)]
pub struct Want {
    pub labels: Vec<String>,
    pub taints: Vec<String>,
    pub dropped_labels: Vec<String>,
    pub dropped_taints: Vec<String>,
}

/// The merge patch that brings `current` to `want` (`None`: nothing to change). Taints are one list in the API,
/// so a change sends the whole list: the Node's other taints kept, dropped and re-specified ones (by key and
/// effect) replaced.
pub fn patch(current: &Marks, want: &Want) -> Option<Value> {
    let mut labels = serde_json::Map::new();
    let wanted: BTreeMap<&str, &str> = want
        .labels
        .iter()
        .map(|kv| kv.split_once('=').unwrap_or((kv.as_str(), "")))
        .collect();
    for (k, v) in &wanted {
        if current.labels.get(*k).map(String::as_str) != Some(*v) {
            labels.insert((*k).to_string(), json!(v));
        }
    }
    for kv in &want.dropped_labels {
        let k = label_key(kv);
        if !wanted.contains_key(k) && current.labels.contains_key(k) {
            labels.insert(k.to_string(), Value::Null);
        }
    }
    let wanted_taints: Vec<Taint> = want.taints.iter().filter_map(|t| Taint::parse(t)).collect();
    let dropped: Vec<Taint> = want
        .dropped_taints
        .iter()
        .filter_map(|t| Taint::parse(t))
        .collect();
    let same_slot = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect;
    let mut taints: Vec<Taint> = current
        .taints
        .iter()
        .filter(|t| {
            !wanted_taints.iter().any(|w| same_slot(w, t))
                && !dropped.iter().any(|d| same_slot(d, t))
        })
        .cloned()
        .collect();
    taints.extend(wanted_taints);
    let taints_change = {
        let mut a: Vec<String> = taints.iter().map(Taint::text).collect();
        let mut b: Vec<String> = current.taints.iter().map(Taint::text).collect();
        a.sort();
        b.sort();
        a != b
    };
    let mut p = json!({});
    if !labels.is_empty() {
        p["metadata"] = json!({ "labels": labels });
    }
    if taints_change {
        p["spec"] = json!({ "taints": taints.iter().map(Taint::json).collect::<Vec<_>>() });
    }
    (p != json!({})).then_some(p)
}

/// What the credentials may not do of `want`: an error on the input concerned.
pub fn check_creds(creds: Creds<'_>, want: &Want, current: &Marks) -> Result<(), Failure> {
    if creds.is_admin() {
        return Ok(());
    }
    let Some(p) = patch(current, want) else {
        return Ok(());
    };
    if p.get("spec").is_some() {
        return Err(Failure::new(
            "Taints cannot be changed with the agent's own credentials",
            "Kubernetes lets a kubelet change its Node's labels but not its taints (NodeRestriction). Set \
             cluster_kubeconfig (an admin kubeconfig, e.g. a server's `kubeconfig`) so the provider can change them.",
        )
        .on(Input::NodeTaints));
    }
    let refused: Vec<&str> = p["metadata"]["labels"]
        .as_object()
        .map(|m| {
            m.keys()
                .map(String::as_str)
                .filter(|k| !kubelet_may_set(k))
                .collect()
        })
        .unwrap_or_default();
    if !refused.is_empty() {
        return Err(Failure::new(
            "Labels a kubelet may not set",
            format!(
                "{} are in the kubernetes.io/k8s.io namespaces, which a kubelet may not set on its own Node. Set \
                 cluster_kubeconfig (an admin kubeconfig) so the provider sets them through the API.",
                refused.join(", ")
            ),
        )
        .on(Input::NodeLabels));
    }
    Ok(())
}

/// Reads the Node's labels and taints (`Ok(None)`: no such Node, or the API could not be asked — the detail).
pub async fn read(
    session: &Session,
    creds: Creds<'_>,
    node: &str,
) -> Result<Result<Marks, String>, K3sError> {
    let out = kube::kubectl(session, creds, &get_args(node)).await?;
    if !out.success() {
        return Ok(Err(kube::failure_text(&out)));
    }
    Ok(parse(&out.stdout))
}

/// kubectl's arguments that read the Node `node`.
pub fn get_args(node: &str) -> String {
    format!("get node {} -o json", quote(node))
}

/// The Node's marks from kubectl's JSON answer.
pub fn parse(json: &[u8]) -> Result<Marks, String> {
    serde_json::from_slice::<Value>(json)
        .map(|n| Marks::from_node(&n))
        .map_err(|e| format!("the Node is not JSON: {e}"))
}

/// Brings the Node's labels and taints to `want`; returns whether it changed anything. `known`: the Node as the
/// caller's last exec read it (a create's read-back), which saves asking again; `None` or a failed read asks
/// here.
pub async fn sync(
    session: &Session,
    creds: Creds<'_>,
    node: &str,
    want: &Want,
    known: Option<Result<Marks, String>>,
) -> Result<bool, Failure> {
    let current = match known {
        Some(Ok(k)) => Ok(k),
        _ => read(session, creds, node)
            .await
            .map_err(|e| Failure::new("Cannot read the Node's labels and taints", e.to_string()))?,
    };
    let current = current.map_err(|e| {
        Failure::new(
            "Cannot read the Node's labels and taints",
            format!("Asking for node {node} on {}: {e}", session.host()),
        )
    })?;
    check_creds(creds, want, &current)?;
    let Some(p) = patch(&current, want) else {
        return Ok(false);
    };
    let out = kube::kubectl(
        session,
        creds,
        &format!(
            "patch node {} --type merge -p {}",
            quote(node),
            quote(&p.to_string())
        ),
    )
    .await
    .map_err(|e| Failure::new("Cannot set the Node's labels and taints", e.to_string()))?;
    if !out.success() {
        let input = if p.get("spec").is_some() {
            Input::NodeTaints
        } else {
            Input::NodeLabels
        };
        return Err(Failure::new(
            "Cannot set the Node's labels and taints",
            format!(
                "Patching node {node} from {} failed: {}",
                session.host(),
                kube::failure_text(&out)
            ),
        )
        .on(input));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marks(labels: &[(&str, &str)], taints: &[&str]) -> Marks {
        Marks {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            taints: taints.iter().map(|t| Taint::parse(t).unwrap()).collect(),
        }
    }
    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn taints_parse_and_print() {
        let t = Taint::parse("dedicated=db:NoSchedule").unwrap();
        assert_eq!(
            (t.key.as_str(), t.value.as_deref()),
            ("dedicated", Some("db"))
        );
        assert_eq!(t.text(), "dedicated=db:NoSchedule");
        assert_eq!(
            Taint::parse("gpu:NoExecute").unwrap().text(),
            "gpu:NoExecute"
        );
        assert!(Taint::parse("gpu=yes").is_none());
        assert!(Taint::parse("gpu:Sometimes").is_none());
        assert!(Taint::parse("=x:NoSchedule").is_none());
    }

    #[test]
    fn the_patch_sets_changes_and_removes_only_what_is_managed() {
        let current = marks(
            &[
                ("tier", "web"),
                ("old", "1"),
                ("kubernetes.io/hostname", "n1"),
            ],
            &["node.kubernetes.io/not-ready:NoSchedule", "gone:NoExecute"],
        );
        let want = Want {
            labels: strs(&["tier=db", "zone=a"]),
            taints: strs(&["dedicated=db:NoSchedule"]),
            dropped_labels: strs(&["old=1", "tier=web"]),
            dropped_taints: strs(&["gone:NoExecute"]),
        };
        let p = patch(&current, &want).unwrap();
        assert_eq!(
            p["metadata"]["labels"],
            json!({"tier": "db", "zone": "a", "old": null})
        );
        assert_eq!(
            p["spec"]["taints"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"},
                {"key": "dedicated", "value": "db", "effect": "NoSchedule"}
            ])
        );
        let done = marks(
            &[("tier", "db"), ("zone", "a")],
            &[
                "node.kubernetes.io/not-ready:NoSchedule",
                "dedicated=db:NoSchedule",
            ],
        );
        assert_eq!(patch(&done, &want), None);
        assert_eq!(
            done.labels_for(&strs(&["zone", "tier", "missing", "zone"])),
            ["zone=a", "tier=db"]
        );
        assert_eq!(done.managed_taints(), ["dedicated=db:NoSchedule"]);
    }

    #[test]
    fn a_kubelet_may_not_taint_or_set_kubernetes_io_labels() {
        assert!(kubelet_may_set("tier"));
        assert!(kubelet_may_set("example.com/rack"));
        assert!(kubelet_may_set("topology.kubernetes.io/zone"));
        assert!(kubelet_may_set("node.kubernetes.io/pool"));
        assert!(!kubelet_may_set("node-role.kubernetes.io/worker"));
        assert!(!kubelet_may_set("node-restriction.kubernetes.io/x"));
        assert!(!kubelet_may_set("k8s.io/x"));
        let current = marks(&[], &[]);
        let labels = Want {
            labels: strs(&["node-role.kubernetes.io/worker=true"]),
            ..Default::default()
        };
        let e = check_creds(Creds::Kubelet, &labels, &current).unwrap_err();
        assert_eq!(e.input, Some(Input::NodeLabels));
        assert!(check_creds(Creds::Kubeconfig("x"), &labels, &current).is_ok());
        let taints = Want {
            taints: strs(&["gpu:NoSchedule"]),
            ..Default::default()
        };
        let e = check_creds(Creds::Kubelet, &taints, &current).unwrap_err();
        assert_eq!(e.input, Some(Input::NodeTaints));
        let fine = Want {
            labels: strs(&["tier=x"]),
            ..Default::default()
        };
        assert!(check_creds(Creds::Kubelet, &fine, &current).is_ok());
    }
}
