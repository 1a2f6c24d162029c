//! The server sequences behind `homelab_k3s_server`: converge (create and update, including the seed's
//! sqlite→etcd migration and the serving-certificate rotation) and removal. Each reads top to bottom in the order
//! it touches the host; the helpers below them are the steps they name.
//!
//! Why these sequences:
//! - **A joiner returns only once it votes.** etcd admits one learner at a time, so the next server's join would be
//!   refused while this one is still a learner.
//! - **The migration is gated, backed up and verified.** A first server still on sqlite becomes embedded etcd by
//!   restarting with `cluster-init`, one way; it happens only with the user's consent, after a backup outside the
//!   data dir, and is checked afterwards (datastore is etcd, no node lost).
//! - **A new `tls-san` does not reach an existing serving certificate** (k3s keeps it in the kube-system/k3s-serving
//!   secret and a disk cache). After the restart the SANs on the wire are compared with the wanted ones; a missing
//!   one gets `k3s certificate rotate`, and if even that does not stick, the secret and cache are removed. When the
//!   migration stops k3s anyway, the rotation is done inside that stop, so the server restarts once.
//! - **Removal leaves etcd before it uninstalls**, behind a quorum guard, retrying etcd's transient refusals
//!   within the time limit; a removal still refused leaves the node running (a dead voter costs quorum).
//!
//! The caller holds the cluster's lock ([`super::lock`]) and the SSH session; the sequences know no Terraform.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::certs::CertExpiry;
use super::converge::{self, ready_budget, NodeWant};
use super::kube::Creds;
use super::marks::Marks;
use super::node::{self, InstallSource, Probe, Role, ServerFacts};
use super::paths::{DB_DIR, KUBECONFIG_PATH};
use super::step::{step, Failure, Input, Report};
use super::{cluster, etcd, snapshot, token};
use crate::ssh::Session;

/// What a server should be.
pub struct ServerWant<'a> {
    /// The cluster's first server (`cluster-init`); otherwise it joins through `server_url`.
    pub init: bool,
    /// A joiner's existing server (`https://<server>:6443`).
    pub server_url: Option<&'a str>,
    /// The node name; `None`: the host's name.
    pub node_name: Option<&'a str>,
    /// config.yaml without `node-name` (the sequence adds it once the name is known).
    pub config: BTreeMap<String, serde_json::Value>,
    /// SANs the serving certificate must present on :6443.
    pub tls_san: &'a [String],
    pub version: Option<&'a str>,
    pub install: &'a InstallSource,
    /// The user's consent to convert a sqlite datastore to embedded etcd.
    pub allow_datastore_migration: bool,
    /// Take an etcd snapshot before an upgrade (into `snapshot_dir`, k3s's default when `None`).
    pub snapshot_before_changes: bool,
    pub snapshot_dir: Option<&'a str>,
    /// Issue every k3s certificate again (`k3s certificate rotate`, the user's rotation trigger changed).
    pub rotate_certificates: bool,
    /// registries.yaml.
    pub registries: super::registries::Want<'a>,
    /// The operation's time limit.
    pub limit: Duration,
}

impl ServerWant<'_> {
    /// What can be refused before touching the host.
    pub fn check(&self) -> Result<(), Failure> {
        if !self.init && self.server_url.is_none() {
            return Err(Failure::new(
                "server_url is required to join",
                "A server with role \"join\" needs `server_url = \"https://<existing server>:6443\"`.",
            )
            .on(Input::ServerUrl));
        }
        Ok(())
    }
}

/// What a converged server is.
pub struct ServerDone {
    pub node_name: String,
    /// The host after the sequence (version, datastore).
    pub probe: Probe,
    pub facts: ServerFacts,
    /// The node's certificates and their expiry, soonest first.
    pub certs: Vec<CertExpiry>,
    /// The Node's labels and taints as read at the end (`Err`: kubectl's failure), for [`super::marks::sync`].
    pub node: Option<Result<Marks, String>>,
}

/// Create and update: brings the server to `want`.
pub async fn converge(
    session: &Session,
    want: &ServerWant<'_>,
    report: &dyn Report,
    cancel: &CancellationToken,
) -> Result<ServerDone, Failure> {
    let started = Instant::now();
    want.check()?;
    let mut probe = node::probe(session, Role::Server)
        .await
        .map_err(step("Cannot inspect the host"))?;
    let node_name = want
        .node_name
        .map(str::to_string)
        .unwrap_or_else(|| probe.hostname.clone());

    // An upgrade of an etcd server starts from a snapshot (the new version migrates the datastore on start).
    let upgrading = probe.installed(Role::Server)
        && probe.datastore.as_deref() == Some("etcd")
        && want
            .version
            .is_some_and(|v| probe.version.as_deref() != Some(v));
    if upgrading && want.snapshot_before_changes {
        snapshot_before(session, "upgrade", &probe, want.snapshot_dir, report).await?;
    }

    // The seed's migration: a first server still on sqlite gets cluster-init (gated, backed up, verified).
    let migrating =
        want.init && probe.installed(Role::Server) && probe.datastore.as_deref() == Some("sqlite");
    let migration = if migrating {
        let m = stop_for_migration(session, want, report).await?;
        probe.active = "inactive".into();
        Some(m)
    } else {
        None
    };

    let node_want = NodeWant {
        role: Role::Server,
        node_name: &node_name,
        config: &want.config,
        version: want.version,
        install: want.install,
        registries: want.registries,
        limit: want.limit,
    };
    let token_change = token_change(&probe, &want.config);
    if token_change {
        rotate_token_first(session, want, &probe, report).await?;
    }
    if let Err(f) = converge::node(session, &probe, &node_want, report, cancel).await {
        if token_change {
            return Err(roll_back_token(session, &probe, &node_name, f, want.limit, cancel).await);
        }
        return Err(f);
    }
    let remaining = |min: u64| {
        ready_budget(want.limit)
            .saturating_sub(started.elapsed())
            .max(Duration::from_secs(min))
    };

    // One exec reads back all the state needs (token, SANs on the wire, kubeconfig, certificates, the probe) and
    // the Node the marks sync starts from; again only after a certificate fix or rotation restarted k3s.
    let wants = node::ReadWants {
        role: Role::Server,
        server_facts: true,
        agent_lb: false,
        node: Some((Creds::ServerAdmin, &node_name)),
    };
    let read_back = || async {
        node::read_node(session, &wants)
            .await
            .map_err(step("Cannot read the server's state"))
    };
    // etcd admits one learner at a time: return only once this server votes, so the next join is not refused.
    // A joiner's read-back does not depend on its vote, so it runs beside that wait (a second channel on the
    // connection): both ask the API (~0.1 s each), and a join is on the cluster's critical path.
    let mut read = if migration.is_none() && !want.init {
        let (voter, read) = tokio::join!(
            etcd::wait_voter(session, &node_name, remaining(10), cancel),
            read_back()
        );
        voter.map_err(step("The server did not become a voting etcd member"))?;
        read?
    } else {
        if let Some(m) = &migration {
            etcd::wait_voter(session, &node_name, remaining(10), cancel)
                .await
                .map_err(step("The server did not become a voting etcd member"))?;
            verify_migration(session, &m.backup, &m.nodes_before).await?;
        }
        read_back().await?
    };
    let mut facts = read.server_facts.take().unwrap_or_default();
    let missing = missing_sans(want.tls_san, &facts.serving_sans);
    if let Some(m) = migration.as_ref().filter(|m| !m.rotated.is_empty()) {
        if missing.is_empty() {
            report.warn(
                "Rotated the k3s serving certificate",
                format!(
                    "The certificate on :6443 of {} lacked the configured tls_san {} (k3s keeps serving SANs in \
                     the kube-system/k3s-serving secret and its disk cache, so a new tls-san does not reach it by \
                     a restart alone). k3s being stopped for the migration anyway, the provider ran `k3s \
                     certificate rotate --service k3s-server` then (backup of the old certificates in \
                     /var/lib/rancher/k3s/server/tls-<unix time>); the migration's one restart serves the SAN.",
                    session.host(),
                    m.rotated.join(", ")
                ),
            );
        }
    }
    let restarted = !missing.is_empty() || want.rotate_certificates;
    if !missing.is_empty() {
        facts =
            fix_serving_cert(session, want, &node_name, &missing, remaining(20), report).await?;
    }
    if want.rotate_certificates {
        facts = rotate_certificates(session, &node_name, remaining(20), report).await?;
    }
    if restarted {
        read = read_back().await?;
    }
    Ok(ServerDone {
        node_name,
        probe: read.probe,
        facts,
        certs: read.certs,
        node: read.node.map(|(_, n)| n),
    })
}

/// Whether the wanted config.yaml changes the token of an installed server (its password, not only its form).
fn token_change(probe: &Probe, config: &BTreeMap<String, serde_json::Value>) -> bool {
    let old = probe.effective().and_then(|e| {
        e.config
            .get("token")
            .and_then(|v| v.as_str().map(str::to_string))
    });
    let new = config.get("token").and_then(|v| v.as_str());
    match (old, new) {
        (Some(o), Some(n)) => {
            probe.installed(Role::Server) && node::token_password(&o) != node::token_password(n)
        }
        _ => false,
    }
}

/// A token change: on the first server it rotates the cluster's token before the restart with it (k3s's `token
/// rotate`); a joining server only restarts with it, which works once the first server has rotated it.
async fn rotate_token_first(
    session: &Session,
    want: &ServerWant<'_>,
    probe: &Probe,
    report: &dyn Report,
) -> Result<(), Failure> {
    if probe.datastore.as_deref() != Some("etcd") {
        return Err(Failure::new(
            "Token rotation needs embedded etcd",
            format!(
                "{} runs on {}; k3s rotates the token of embedded-etcd clusters. Keep the old token, or migrate \
                 the server to etcd first.",
                session.host(),
                probe.datastore.as_deref().unwrap_or("no datastore")
            ),
        )
        .on(Input::Token));
    }
    if !want.init {
        // Ask the server it joins through before restarting with a token it would refuse.
        let new = want
            .config
            .get("token")
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        let Some(url) = want.server_url else {
            return Ok(());
        };
        let verdict = token::accepted(session, url, new)
            .await
            .map_err(step("Cannot check the new token"))?;
        if verdict == Some(false) {
            return Err(Failure::new(
                "The cluster does not accept the new token",
                format!(
                    "{url} refuses the new token, so {} would not start with it; nothing was changed there. To \
                     rotate the cluster's token, change it on the `init` server first (it rotates the cluster; \
                     with `token_wo` add `depends_on` on it), then give the other servers its new token.",
                    session.host()
                ),
            )
            .on(Input::Token));
        }
        return Ok(());
    }
    if probe.active != "active" {
        return Err(Failure::new(
            "Cannot rotate the token: k3s is not running",
            format!(
                "The token is rotated through the running server on {} (k3s is {}). Start k3s there and apply \
                 again.",
                session.host(),
                probe.active
            ),
        )
        .on(Input::Token));
    }
    let new = want
        .config
        .get("token")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let done = token::rotate(session, new)
        .await
        .map_err(|e| step("Cannot rotate the cluster token")(e).on(Input::Token))?;
    if done == token::Rotated::Now {
        tracing::info!(host = session.host(), "cluster token rotated");
        report.warn(
            "Cluster token rotated",
            format!(
                "{} rotated the cluster's token (`k3s token rotate`) and restarts with it now. Every other server \
                 and every agent that uses the old token restarts with the new one as its resource is updated, one \
                 server at a time. etcd snapshots taken before now need the old token to be restored.",
                session.host()
            ),
        );
    }
    Ok(())
}

/// A server that did not come back with a new token (the cluster does not accept it: it was not rotated, or it
/// is mistyped) is put back on its previous config.yaml and restarted, so it keeps serving; the failure says why.
async fn roll_back_token(
    session: &Session,
    probe: &Probe,
    node_name: &str,
    failed: Failure,
    limit: Duration,
    cancel: &CancellationToken,
) -> Failure {
    let journal = node::journal_tail(session, Role::Server, 30).await;
    if !journal.contains("different token") {
        return failed;
    }
    let Some(previous) = probe.config.as_deref() else {
        return failed;
    };
    let restored = async {
        node::write_config(session, previous, None).await?;
        node::start(session, Role::Server, true).await?;
        node::wait_ready(
            session,
            Role::Server,
            node_name,
            ready_budget(limit),
            cancel,
        )
        .await
    }
    .await;
    let back = match restored {
        Ok(()) => format!(
            "{} was restarted with its previous token and is serving again.",
            session.host()
        ),
        Err(e) => format!(
            "Putting {} back on its previous token failed too: {e}",
            session.host()
        ),
    };
    Failure::new(
        "The cluster does not accept the new token",
        format!(
            "k3s on {} refused to start with the new token (\"bootstrap data already found and encrypted with \
             different token\"). {back} To rotate the cluster's token, change it on the `init` server first (it \
             rotates the cluster), and give the other servers its new `join_token`.",
            session.host()
        ),
    )
    .on(Input::Token)
}

/// An on-demand snapshot before `operation` (`upgrade`, `remove`), reported with where it is and how to restore
/// it. A server whose k3s is not running cannot take one: that is a failure before an upgrade (the user decides,
/// see [`Input::SnapshotBeforeChanges`]) and a warning before a removal (a broken node must stay removable; its
/// data lives on in the other servers). `dir`: where it goes — the server's snapshot directory before an upgrade
/// (`None`: k3s's), [`snapshot::REMOVAL_DIR`] before a removal (the uninstall keeps it).
async fn snapshot_before(
    session: &Session,
    operation: &str,
    probe: &Probe,
    dir: Option<&str>,
    report: &dyn Report,
) -> Result<(), Failure> {
    let taken = if probe.active == "active" {
        snapshot::save(session, &format!("homelab-pre-{operation}"), dir)
            .await
            .map_err(|e| e.to_string())
    } else {
        Err(format!(
            "k3s is {:?} on {}, so its etcd cannot be snapshotted",
            probe.active,
            session.host()
        ))
    };
    match taken {
        Ok(s) => {
            tracing::info!(host = session.host(), snapshot = s.path.as_str(), "etcd snapshot taken before {operation}");
            report.warn(
                &format!("etcd snapshot taken before the {operation}"),
                format!(
                    "{} saved the etcd snapshot {} ({} bytes) before the {operation}. To return the cluster to it, \
                     restore it with a homelab_k3s_etcd_restore resource (snapshot = \"{}\").",
                    session.host(),
                    s.path,
                    s.size,
                    s.name
                ),
            );
            Ok(())
        }
        Err(why) if operation == "remove" => {
            report.warn(
                "No etcd snapshot before the removal",
                format!("{why}. The server is removed without one; the cluster's data lives on in the other servers."),
            );
            Ok(())
        }
        Err(why) => Err(Failure::new(
            format!("Cannot take the etcd snapshot before the {operation}"),
            format!(
                "{why}. Nothing was changed. Fix the cause and apply again, or set `snapshot_before_changes = false` \
                 to {operation} without a snapshot."
            ),
        )
        .on(Input::SnapshotBeforeChanges)),
    }
}

/// The user's rotation: every certificate issued again (one restart), then ready again.
async fn rotate_certificates(
    session: &Session,
    node_name: &str,
    budget: Duration,
    report: &dyn Report,
) -> Result<ServerFacts, Failure> {
    cluster::certificate_rotate_all(session)
        .await
        .map_err(step("Cannot rotate the certificates"))?;
    let cancel = CancellationToken::new();
    node::wait_ready(session, Role::Server, node_name, budget, &cancel)
        .await
        .map_err(step(
            "k3s server did not become ready after the certificate rotation",
        ))?;
    report.warn(
        "Rotated the k3s certificates",
        format!(
            "{} issued its certificates again with `k3s certificate rotate` and restarted k3s (the CAs are kept, \
             so agents and kubeconfigs stay valid; the old certificates are backed up in \
             /var/lib/rancher/k3s/server/tls-<unix time>).",
            session.host()
        ),
    );
    node::server_facts(session)
        .await
        .map_err(step("Cannot read the server's state"))
}

/// The wanted SANs the certificate does not present.
pub fn missing_sans(wanted: &[String], served: &[String]) -> Vec<String> {
    wanted
        .iter()
        .filter(|s| !served.contains(s))
        .cloned()
        .collect()
}

/// The refusal of a migration that was not allowed (also the plan's warning when one is planned).
pub fn migration_not_allowed(host: &str) -> Failure {
    Failure::new(
        "sqlite to etcd migration not allowed",
        format!(
            "{host} runs k3s on sqlite, and role \"init\" needs embedded etcd (cluster-init). Applying converts the \
             datastore in place, one way: the provider stops k3s, backs up the datastore directory and the token \
             to /var/backups/k3s/<UTC time>-sqlite-to-etcd/ on the host, adds cluster-init to config.yaml and \
             restarts k3s, then checks that the datastore is etcd and every node is still there. To allow it, set \
             `allow_datastore_migration = true` on this resource."
        ),
    )
    .on(Input::AllowDatastoreMigration)
}

/// A migration under way: where the backup is, the nodes it must keep, the SANs rotated inside its stop.
struct Migration {
    backup: String,
    nodes_before: Vec<String>,
    rotated: Vec<String>,
}

/// The migration's stop: gate, record the nodes, stop k3s and back up, and rotate the certificate while it is
/// stopped when a wanted SAN is missing (a rotation later would cost a second restart).
async fn stop_for_migration(
    session: &Session,
    want: &ServerWant<'_>,
    report: &dyn Report,
) -> Result<Migration, Failure> {
    if !want.allow_datastore_migration {
        return Err(migration_not_allowed(session.host()));
    }
    let nodes_before = cluster::node_names(session)
        .await
        .map_err(step("Cannot list the cluster's nodes before the migration"))?;
    // The SANs served now (k3s still runs): a wanted one missing would not stick through the restart.
    let served = node::server_facts(session)
        .await
        .map_err(step("Cannot read the server's state"))?
        .serving_sans;
    let rotate = missing_sans(want.tls_san, &served);
    let backup = cluster::stop_and_backup(session, "sqlite-to-etcd")
        .await
        .map_err(step("Backing up the sqlite datastore failed"))?;
    tracing::info!(
        host = session.host(),
        backup = backup.as_str(),
        "k3s datastore backed up before the sqlite to etcd migration"
    );
    report.warn(
        "Migrating the k3s datastore from sqlite to embedded etcd",
        format!(
            "{} ran on sqlite. The provider stopped k3s, backed up the datastore directory and the token to \
             {backup} on the host, added cluster-init to config.yaml and restarted k3s. Nodes before: {}.",
            session.host(),
            nodes_before.join(", ")
        ),
    );
    if !rotate.is_empty() {
        cluster::certificate_rotate_stopped(session)
            .await
            .map_err(step("Cannot rotate the serving certificate"))?;
        tracing::info!(
            host = session.host(),
            sans = rotate.join(",").as_str(),
            "serving certificate rotated while k3s is stopped for the migration"
        );
    }
    Ok(Migration {
        backup,
        nodes_before,
        rotated: rotate,
    })
}

/// After the migration: the datastore must be etcd and no node may be missing.
async fn verify_migration(
    session: &Session,
    backup: &str,
    before: &[String],
) -> Result<(), Failure> {
    let probe = node::probe(session, Role::Server)
        .await
        .map_err(step("Cannot inspect the host after the migration"))?;
    let after = cluster::node_names(session)
        .await
        .map_err(step("Cannot list the cluster's nodes after the migration"))?;
    let lost: Vec<&str> = before
        .iter()
        .filter(|n| !after.contains(n))
        .map(String::as_str)
        .collect();
    if probe.datastore.as_deref() != Some("etcd") || !lost.is_empty() {
        return Err(Failure::new(
            "The sqlite to etcd migration did not check out",
            format!(
                "After the restart {} reports datastore {:?} and nodes [{}] (before: [{}]; missing: [{}]). The \
                 pre-migration datastore and token are in {backup} on the host: to go back, stop k3s, remove \
                 cluster-init from config.yaml, replace {DB_DIR} with the backup's db directory and start k3s.",
                session.host(),
                probe.datastore.as_deref().unwrap_or("none"),
                after.join(", "),
                before.join(", "),
                lost.join(", "),
            ),
        ));
    }
    tracing::info!(
        host = session.host(),
        nodes = after.len(),
        "k3s datastore migrated to etcd; every node is still there"
    );
    Ok(())
}

/// A wanted `tls-san` is missing on the wire after the restart (the sticky certificate). First the documented
/// cure, `k3s certificate rotate --service k3s-server`; if the SAN is still missing, the blunt one (delete the
/// shared secret and the disk cache). Says which was done.
async fn fix_serving_cert(
    session: &Session,
    want: &ServerWant<'_>,
    node_name: &str,
    missing: &[String],
    budget: Duration,
    report: &dyn Report,
) -> Result<ServerFacts, Failure> {
    let cancel = CancellationToken::new();
    cluster::certificate_rotate(session)
        .await
        .map_err(step("Cannot rotate the serving certificate"))?;
    node::wait_ready(session, Role::Server, node_name, budget, &cancel)
        .await
        .map_err(step("k3s server did not become ready after rotation"))?;
    let facts = node::server_facts(session)
        .await
        .map_err(step("Cannot read the server's state"))?;
    let still = missing_sans(want.tls_san, &facts.serving_sans);
    if still.is_empty() {
        tracing::info!(
            host = session.host(),
            sans = missing.join(",").as_str(),
            "tls-san missing after restart; fixed with k3s certificate rotate"
        );
        report.warn(
            "Rotated the k3s serving certificate",
            format!(
                "The certificate on :6443 of {} lacked the configured tls_san {} after the restart (k3s keeps \
                 serving SANs in the kube-system/k3s-serving secret and its disk cache). The provider ran `k3s \
                 certificate rotate --service k3s-server` (backup of the old certificates in \
                 /var/lib/rancher/k3s/server/tls-<unix time>) and restarted k3s; the SAN is now served.",
                session.host(),
                missing.join(", ")
            ),
        );
        return Ok(facts);
    }
    report.warn(
        "Regenerated the k3s serving certificate",
        format!(
            "The certificate on :6443 of {} still lacked {} after `k3s certificate rotate`. The provider deleted the \
             kube-system/k3s-serving secret, moved the disk cache dynamic-cert.json aside and restarted k3s so the \
             certificate is generated again.",
            session.host(),
            still.join(", ")
        ),
    );
    tracing::info!(
        host = session.host(),
        sans = still.join(",").as_str(),
        "tls-san still missing after k3s certificate rotate; deleting the k3s-serving secret and cache"
    );
    regenerate_serving_cert(session, node_name, budget).await?;
    let facts = node::server_facts(session)
        .await
        .map_err(step("Cannot read the server's state"))?;
    let still = missing_sans(want.tls_san, &facts.serving_sans);
    if !still.is_empty() {
        return Err(Failure::new(
            "tls_san not served",
            format!(
                "After rotating the serving certificate, {} still does not present {} on :6443.",
                session.host(),
                still.join(", ")
            ),
        )
        .on(Input::TlsSan));
    }
    Ok(facts)
}

/// The blunt cure that works when `tls-san` does not stick: delete the shared secret and the disk cache, restart.
async fn regenerate_serving_cert(
    session: &Session,
    node_name: &str,
    budget: Duration,
) -> Result<(), Failure> {
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let script = format!(
        "k3s kubectl -n kube-system delete secret k3s-serving --ignore-not-found >/dev/null 2>&1; \
         f=/var/lib/rancher/k3s/server/tls/dynamic-cert.json; if [ -f $f ]; then mv -f $f $f.bak-{ts}; fi; \
         systemctl restart --no-block k3s"
    );
    session
        .run_sudo(&script, None)
        .await
        .map_err(|e| step("Cannot rotate the serving certificate")(e.into()))?;
    let cancel = CancellationToken::new();
    node::wait_ready(session, Role::Server, node_name, budget, &cancel)
        .await
        .map_err(step("k3s server did not become ready after rotation"))
}

/// How a server leaves: through which peer, under which name, within which time.
pub struct Removal<'a> {
    /// A joined server's existing peer (`server_url`) and its node name; `None` (the first server, or a name not
    /// known): nothing to leave, only the uninstall.
    pub peer: Option<(&'a str, &'a str)>,
    /// When the delete began, and its time limit.
    pub started: Instant,
    pub limit: Duration,
    /// Take an etcd snapshot (into [`snapshot::REMOVAL_DIR`], which the uninstall keeps) before leaving.
    pub snapshot_before_changes: bool,
}

/// Delete: leave etcd first (behind the quorum guard), uninstall only once the member is gone.
pub async fn remove(
    session: &Session,
    removal: &Removal<'_>,
    report: &dyn Report,
    cancel: &CancellationToken,
) -> Result<(), Failure> {
    if let Some((url, name)) = removal.peer {
        if removal.snapshot_before_changes {
            let probe = node::probe(session, Role::Server)
                .await
                .map_err(step("Cannot inspect the host"))?;
            snapshot_before(
                session,
                "remove",
                &probe,
                Some(snapshot::REMOVAL_DIR),
                report,
            )
            .await?;
        }
        leave_etcd(session, url, name, removal, report, cancel).await?;
    }
    node::uninstall(session, Role::Server)
        .await
        .map_err(step("k3s uninstall failed"))
}

/// Leave the cluster through the peer `url` with this server's admin credentials: the Node deletion removes its
/// etcd member, so the remaining servers keep their quorum.
async fn leave_etcd(
    session: &Session,
    url: &str,
    name: &str,
    removal: &Removal<'_>,
    report: &dyn Report,
    cancel: &CancellationToken,
) -> Result<(), Failure> {
    // Quorum guard: refuse when the servers left could not keep etcd quorum. A cluster that cannot be asked (e.g.
    // everything is being destroyed) does not block the removal.
    let reachable = match etcd::etcd_servers(session, KUBECONFIG_PATH, url).await {
        Ok(servers) => {
            etcd::quorum_after_removal(&servers, name)
                .map_err(|why| Failure::new("Removing this server would lose etcd quorum", why))?;
            true
        }
        Err(e) => {
            report.warn(
                "Cluster membership not checked",
                format!(
                    "Listing the servers through {url} failed ({e}); removing {name} without the quorum check."
                ),
            );
            false
        }
    };
    // etcd's refusals are transient (a peer that reconnected < 5 s ago): retried until the delete timeout, keeping
    // a margin for the uninstall. A cluster that could not even be listed gets one short attempt.
    let budget = if reachable {
        removal
            .limit
            .saturating_sub(removal.started.elapsed() + Duration::from_secs(30))
            .max(Duration::from_secs(10))
    } else {
        Duration::from_secs(5)
    };
    let left = etcd::leave_cluster(
        session,
        Role::Server,
        KUBECONFIG_PATH,
        url,
        name,
        budget,
        cancel,
    )
    .await
    .map_err(step("Cannot remove the node from the cluster"))?;
    match left {
        Ok(left) if left.refused > 0 => {
            tracing::info!(
                host = session.host(),
                refused = left.refused,
                "etcd member removal refused at first; removed on a retry"
            );
            report.warn(
                "etcd refused the member removal at first",
                format!(
                    "etcd refused to remove the member of {name} {} time(s) (last answer: {}); this is transient \
                     (etcd refuses removals while the cluster is unhealthy or a peer reconnected less than 5 s \
                     ago). The provider retried: the member left, then k3s was uninstalled.",
                    left.refused, left.last_refusal
                ),
            );
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(detail) if !reachable => {
            report.warn(
                "Node not removed from the cluster",
                format!(
                    "Deleting node {name} through {url} failed: {detail}. The cluster could not be asked before \
                     either; k3s is uninstalled. If the cluster lives on, remove the node with `kubectl delete \
                     node {name}` from a healthy server."
                ),
            );
            Ok(())
        }
        Err(detail) => Err(Failure::new(
            "etcd refused to remove the member",
            format!(
                "etcd refused to remove the member of {name} through {url}: {detail}. The node is still in the \
                 cluster and k3s still runs on it; nothing was uninstalled, so the cluster keeps its quorum. Retry \
                 the apply once every server is healthy (or raise `timeouts {{ delete }}`)."
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_sans_are_the_wanted_ones_not_served() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            missing_sans(&s(&["vip", "a"]), &s(&["a", "b"])),
            s(&["vip"])
        );
        assert!(missing_sans(&[], &s(&["a"])).is_empty());
    }

    #[test]
    fn a_joiner_without_server_url_is_refused_on_that_input() {
        let src = InstallSource::default();
        let want = ServerWant {
            init: false,
            server_url: None,
            node_name: None,
            config: BTreeMap::new(),
            tls_san: &[],
            version: None,
            install: &src,
            allow_datastore_migration: false,
            snapshot_before_changes: true,
            snapshot_dir: None,
            rotate_certificates: false,
            registries: super::super::registries::Want::Leave,
            limit: Duration::from_secs(60),
        };
        assert_eq!(want.check().unwrap_err().input, Some(Input::ServerUrl));
        let f = migration_not_allowed("h");
        assert_eq!(f.input, Some(Input::AllowDatastoreMigration));
        assert!(f.detail.contains("allow_datastore_migration = true"));
    }
}
