//! etcd membership as k3s exposes it, seen from one server: who votes, who is still a learner, whether removing a
//! server keeps quorum, and taking a node out of its cluster before it is uninstalled.
//!
//! Why these exist:
//! - **Voter, not only Ready.** A joining server is an etcd *learner* until promoted; etcd admits one learner at a
//!   time, so the next join is refused ("too many learner members") if we return while this one is still a
//!   learner. `/db/info` on the node's own `:6443` lists members with `isLearner`.
//! - **Quorum is counted over voters**, not over Nodes: a member whose Node is gone still counts and cannot vote.
//! - **Leave before uninstall**: a server uninstalled while etcd still counts it is a dead voter; two of those lose
//!   the survivors' quorum.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::error::K3sError;
use super::node::{journal_tail, Role};
use super::paths::K3S_BIN;
use crate::ssh::{quote, Session};

/// One etcd member as `/db/info` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// etcd member name (`<node-name>-<suffix>` on k3s).
    pub name: String,
    /// Still a learner (not yet promoted to voter).
    pub is_learner: bool,
}

/// Parses `/db/info` (etcd's MemberListResponse as JSON).
pub fn parse_members(raw: &[u8]) -> Option<Vec<Member>> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
    Some(
        v["members"]
            .as_array()?
            .iter()
            .map(|m| Member {
                name: m["name"].as_str().unwrap_or_default().to_string(),
                is_learner: m["isLearner"].as_bool().unwrap_or(false),
            })
            .collect(),
    )
}

/// Whether `member` is the etcd member of node `node` (k3s names members `<node>-<hex suffix>`).
pub fn member_of(member: &str, node: &str) -> bool {
    member
        .strip_prefix(node)
        .and_then(|r| r.strip_prefix('-'))
        .map(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or(false)
}

/// The etcd members as this server sees them (`None`: no etcd, or the API does not answer yet).
pub async fn members(session: &Session) -> Result<Option<Vec<Member>>, K3sError> {
    let out = session
        .exec_sudo(
            &format!("{K3S_BIN} kubectl --request-timeout=10s get --raw /db/info 2>/dev/null"),
            None,
        )
        .await?;
    if !out.success() {
        return Ok(None);
    }
    Ok(parse_members(&out.stdout))
}

/// Waits until node `node` is a voting etcd member (promoted from learner), bounded by `timeout`.
pub async fn wait_voter(
    session: &Session,
    node: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<(), K3sError> {
    let started = Instant::now();
    let mut last = "no member list yet".to_string();
    loop {
        if let Some(ms) = members(session).await? {
            match ms.iter().find(|m| member_of(&m.name, node)) {
                Some(m) if !m.is_learner => return Ok(()),
                Some(m) => last = format!("{} is still a learner", m.name),
                None => {
                    last = format!(
                        "{node} is not an etcd member (members: {})",
                        ms.iter()
                            .map(|m| m.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            }
        }
        if started.elapsed() >= timeout || cancel.is_cancelled() {
            return Err(K3sError::NotReady {
                host: session.host().to_string(),
                unit: format!("the etcd member of {node}"),
                waited: started.elapsed(),
                state: last,
                journal: journal_tail(session, Role::Server, 20).await,
            });
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_millis(700)) => {}
        }
    }
}

/// The etcd voters a cluster reports, each with whether it is healthy, asked through `url` with the admin
/// `kubeconfig`: the server Nodes (`kubectl get nodes`) joined with etcd's member list (`/db/info`).
///
/// Quorum is counted over etcd's *voting members*, not over Nodes: a member whose Node is gone (a removal that
/// half-happened) still counts towards the quorum size and cannot vote, and a learner does not count at all. A
/// member is healthy when its Node is Ready. Without `/db/info` (an old server, a refused request) the server
/// Nodes are used alone.
pub async fn etcd_servers(
    session: &Session,
    kubeconfig: &str,
    url: &str,
) -> Result<Vec<(String, bool)>, K3sError> {
    let k = format!(
        "{K3S_BIN} kubectl --kubeconfig {} --server {} --request-timeout=20s",
        quote(kubeconfig),
        quote(url)
    );
    let out = session
        .run_sudo(&format!("{k} get nodes -o json"), None)
        .await?;
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| K3sError::Unexpected {
            host: session.host().to_string(),
            detail: format!("node list is not JSON: {e}"),
        })?;
    let mut servers = Vec::new();
    for n in v["items"].as_array().into_iter().flatten() {
        let labels = &n["metadata"]["labels"];
        if labels["node-role.kubernetes.io/etcd"].as_str() != Some("true") {
            continue;
        }
        let ready = n["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        servers.push((
            n["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ready,
        ));
    }
    let info = session
        .exec_sudo(&format!("{k} get --raw /db/info 2>/dev/null"), None)
        .await?;
    let members = if info.success() {
        parse_members(&info.stdout)
    } else {
        None
    };
    Ok(match members {
        Some(ms) if !ms.is_empty() => voters(&servers, &ms),
        _ => servers,
    })
}

/// Joins server Nodes (name, Ready) with etcd members: one entry per voting member, named after its Node (or
/// `<member> (no Node)`), healthy when that Node is Ready.
pub fn voters(nodes: &[(String, bool)], members: &[Member]) -> Vec<(String, bool)> {
    members
        .iter()
        .filter(|m| !m.is_learner)
        .map(
            |m| match nodes.iter().find(|(n, _)| member_of(&m.name, n)) {
                Some((n, ready)) => (n.clone(), *ready),
                None => (format!("{} (no Node)", m.name), false),
            },
        )
        .collect()
}

/// Refuses removing `node` when the servers left would not hold etcd quorum: after removal there are n-1 members
/// and ⌊(n-1)/2⌋+1 of them must be healthy. `servers` are the voters of [`etcd_servers`].
pub fn quorum_after_removal(servers: &[(String, bool)], node: &str) -> Result<(), String> {
    let others: Vec<&(String, bool)> = servers.iter().filter(|(n, _)| n != node).collect();
    if others.is_empty() {
        return Ok(());
    }
    let healthy = others.iter().filter(|(_, r)| *r).count();
    let need = others.len() / 2 + 1;
    if healthy < need {
        let down: Vec<&str> = others
            .iter()
            .filter(|(_, r)| !*r)
            .map(|(n, _)| n.as_str())
            .collect();
        return Err(format!(
            "Removing {node} would leave {} etcd members of which only {healthy} are Ready (quorum needs {need}); \
             not Ready: {}. Bring those servers back first.",
            others.len(),
            down.join(", ")
        ));
    }
    Ok(())
}

/// Takes a node out of its cluster before uninstalling it, with admin credentials against a live server `url`:
/// cordon, drain (bounded), `delete node` (on a server this removes its etcd member — k3s's member controller),
/// wait until `/db/info` no longer lists the member, then stop the unit. Deleting before stopping matters with
/// two servers: once this one stops, the survivor alone has no etcd quorum to commit the member removal.
///
/// Servers: etcd refuses a member removal while the cluster is unhealthy, including for 5 s after a peer
/// (re)connects ("etcdserver: unhealthy cluster"). That refusal is transient, so the deletion is retried until
/// `timeout`; the wait for `/db/info` to drop the member has the same deadline (an erroring `/db/info` is waited
/// out, not taken as success). If the member is still there at the deadline, the unit is **not** stopped and
/// `Ok(Err(detail))` is returned: stopping a server whose removal was refused takes a voter away from a cluster
/// that still counts it, and two such removals lose quorum. Agents have no member: one attempt, and the unit is
/// stopped whatever the outcome (a stale agent Node costs nothing).
///
/// `kubeconfig` is the remote path of an admin kubeconfig. On success returns how many refusals were waited out.
pub async fn leave_cluster(
    session: &Session,
    role: Role,
    kubeconfig: &str,
    url: &str,
    node_name: &str,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<Result<Left, String>, K3sError> {
    let started = Instant::now();
    let k = format!(
        "{K3S_BIN} kubectl --kubeconfig {kc} --server {url} --request-timeout=20s",
        kc = quote(kubeconfig),
        url = quote(url),
    );
    let n = quote(node_name);
    session
        .exec_sudo(
            &format!(
                "{k} cordon {n} >/dev/null 2>&1\n\
                 {k} drain {n} --ignore-daemonsets --delete-emptydir-data --timeout=60s >/dev/null 2>&1\n\
                 exit 0\n"
            ),
            None,
        )
        .await?;
    let stop = format!("systemctl stop {} >/dev/null 2>&1; exit 0", role.unit());
    let delete = format!("{k} delete node {n} --ignore-not-found 2>&1");
    let mut left = Left::default();
    loop {
        let out = session.exec_sudo(&delete, None).await?;
        if out.success() {
            break;
        }
        let text = out.stdout_str();
        let detail = text.trim().lines().rev().take(3).collect::<Vec<_>>();
        let detail = detail.into_iter().rev().collect::<Vec<_>>().join(" ");
        if role == Role::Agent {
            session.exec_sudo(&stop, None).await?;
            return Ok(Err(detail));
        }
        left.refused += 1;
        left.last_refusal = detail.clone();
        if started.elapsed() >= timeout || cancel.is_cancelled() {
            return Ok(Err(format!(
                "deleting node {node_name} was refused {} time(s) over {:?}; last answer: {detail}",
                left.refused,
                started.elapsed()
            )));
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    if role == Role::Server {
        let info = format!("{k} get --raw /db/info 2>&1");
        loop {
            let out = session.exec_sudo(&info, None).await?;
            let state = if out.success() {
                match parse_members(&out.stdout) {
                    Some(ms) => match ms.iter().find(|m| member_of(&m.name, node_name)) {
                        None => break,
                        Some(m) => format!("/db/info still lists member {}", m.name),
                    },
                    None => "/db/info is not a member list".to_string(),
                }
            } else {
                format!(
                    "/db/info failed: {}",
                    out.stdout_str().trim().lines().last().unwrap_or("")
                )
            };
            if started.elapsed() >= timeout || cancel.is_cancelled() {
                return Ok(Err(format!(
                    "node {node_name} was deleted but its etcd member was not seen leaving within {:?} ({state})",
                    started.elapsed()
                )));
            }
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
    session.exec_sudo(&stop, None).await?;
    Ok(Ok(left))
}

/// How a successful [`leave_cluster`] went: refusals it waited out (etcd's transient "unhealthy cluster").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// Deletion attempts refused before one succeeded.
    pub refused: u32,
    /// The last refusal's text (kubectl's last lines).
    pub last_refusal: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_learners() {
        let raw = br#"{"header":{},"members":[{"ID":"1","name":"k8s-control-1-1a2b3c4d","isLearner":false},{"ID":2,"name":"k8s-control-2-00ff00ff","isLearner":true}]}"#;
        let m = parse_members(raw).unwrap();
        assert_eq!(m.len(), 2);
        assert!(m[1].is_learner && !m[0].is_learner);
        assert!(member_of("k8s-control-1-1a2b3c4d", "k8s-control-1"));
        assert!(!member_of("k8s-control-10-1a2b3c4d", "k8s-control-1"));
        assert!(!member_of("k8s-control-1", "k8s-control-1"));
        assert_eq!(parse_members(b"oops"), None);
    }

    #[test]
    fn quorum_guard() {
        let s = |v: &[(&str, bool)]| -> Vec<(String, bool)> {
            v.iter().map(|(n, r)| (n.to_string(), *r)).collect()
        };
        // 2 → 1: the survivor alone is a quorum.
        assert!(quorum_after_removal(&s(&[("a", true), ("b", true)]), "b").is_ok());
        // 3 → 2 with one of the two left down: refused.
        let e =
            quorum_after_removal(&s(&[("a", true), ("b", false), ("c", true)]), "c").unwrap_err();
        assert!(e.contains("not Ready: b"), "{e}");
        // 3 → 2 removing the down one: fine.
        assert!(quorum_after_removal(&s(&[("a", true), ("b", false), ("c", true)]), "b").is_ok());
        // The last server.
        assert!(quorum_after_removal(&s(&[("a", true)]), "a").is_ok());
    }

    #[test]
    fn quorum_counts_etcd_voters_not_nodes() {
        let m = |name: &str, learner: bool| Member {
            name: name.into(),
            is_learner: learner,
        };
        let nodes = vec![("a".to_string(), true), ("c".to_string(), true)];
        // b's Node is gone but its member is still voting: 3 voters, and b cannot vote.
        let v = voters(
            &nodes,
            &[
                m("a-0a0a0a0a", false),
                m("b-0b0b0b0b", false),
                m("c-0c0c0c0c", false),
            ],
        );
        assert_eq!(v.len(), 3);
        assert!(v.contains(&("b-0b0b0b0b (no Node)".to_string(), false)));
        // Node Ready alone would allow removing c (a stays, Ready); etcd would be left with a and a dead b.
        assert!(quorum_after_removal(&nodes, "c").is_ok());
        let e = quorum_after_removal(&v, "c").unwrap_err();
        assert!(e.contains("b-0b0b0b0b (no Node)"), "{e}");
        // A learner neither counts towards the quorum size nor needs to be healthy.
        let v = voters(&nodes, &[m("a-0a0a0a0a", false), m("c-0c0c0c0c", true)]);
        assert_eq!(v, vec![("a".to_string(), true)]);
    }
}
