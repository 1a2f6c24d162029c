//! `homelab_k3s_server`: a k3s server node (embedded etcd) installed and configured over SSH.
//!
//! Role `init` is the first server (`cluster-init: true`, the short token); role `join` joins through
//! `server_url` — an existing server's own address, never a load-balancer pool that already contains this node
//! (k3s#9661) — with the secure `K10…` token read back from the first server (`join_token`).
//!
//! Create and update converge the host to the configuration with the sequences of [`crate::k3s`]: write
//! config.yaml (restart only when it changed), install with skip-start (install or upgrade), start without
//! blocking, poll readiness with our own deadline, verify the wanted `tls_san`s on the live serving certificate
//! and rotate the (sticky) certificate when one is missing. Servers of one cluster converge one at a time
//! ([`crate::k3s::lock`]). Read reports the host as it is (drift): version, config.yaml, token, SANs on the wire.
//! The sqlite→etcd migration stops k3s for its backup; a rotation it needs is done inside that stop, so the server
//! restarts once.
//!
//! The cluster token is either `token` (in state, the Terraform 1.0.3 path) or the write-only `token_wo` with
//! `token_wo_version` (Terraform ≥ 1.11): then state holds nothing secret — `token`, `join_token` and
//! `kubeconfig` stay null, read-back never reads the token, and the per-cluster lock of a delete takes its key
//! from the host's token file.
//!
//! Delete of a joined server leaves etcd first and uninstalls only once its member is gone: a server uninstalled
//! while etcd still counts it is a dead voter, and two of those lose the survivors' quorum. etcd's refusals of a
//! removal are usually transient ("unhealthy cluster" for 5 s after a peer reconnects), so they are retried
//! within the delete timeout; a removal still refused is an error, with the node left running.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::k3s_common::*;
use super::k3s_host::*;
use crate::framework::*;
use crate::k3s::server::{missing_sans, Removal, ServerWant};
use crate::k3s::{self, kube::Creds, Role};

pub const TYPE: &str = "homelab_k3s_server";

/// Keys of config.yaml the resource manages through dedicated attributes.
const MANAGED: &[&str] = &[
    "token",
    "cluster-init",
    "server",
    "node-name",
    "tls-san",
    "node-label",
    "node-taint",
    "disable",
    "etcd-snapshot-schedule-cron",
    "etcd-snapshot-retention",
    "etcd-snapshot-dir",
    "etcd-s3",
    "etcd-s3-endpoint",
    "etcd-s3-bucket",
    "etcd-s3-region",
    "etcd-s3-folder",
    "etcd-s3-access-key",
    "etcd-s3-secret-key",
];

/// The S3 settings of the scheduled snapshots: attribute → config.yaml key (the secret is handled apart).
const S3_KEYS: &[(&str, &str)] = &[
    ("etcd_s3_endpoint", "etcd-s3-endpoint"),
    ("etcd_s3_bucket", "etcd-s3-bucket"),
    ("etcd_s3_region", "etcd-s3-region"),
    ("etcd_s3_folder", "etcd-s3-folder"),
    ("etcd_s3_access_key", "etcd-s3-access-key"),
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerModel {
    pub id: Tf<String>,
    pub role: Tf<String>,
    pub server_url: Tf<String>,
    pub token: Tf<String>,
    pub token_wo: Tf<String>,
    pub token_wo_version: Tf<i64>,
    pub version: Tf<String>,
    pub node_name: Tf<String>,
    pub tls_san: Tf<Vec<String>>,
    pub node_labels: Tf<Vec<String>>,
    pub node_taints: Tf<Vec<String>>,
    pub disable: Tf<Vec<String>>,
    pub extra_config: Tf<BTreeMap<String, String>>,
    pub kubeconfig_server: Tf<String>,
    pub install_script: Tf<String>,
    pub install_script_url: Tf<String>,
    pub install_env: Tf<BTreeMap<String, String>>,
    pub airgap_binary_path: Tf<String>,
    pub join_token: Tf<String>,
    pub ca_hash: Tf<String>,
    pub serving_cert_sans: Tf<Vec<String>>,
    pub kubeconfig: Tf<String>,
    pub datastore: Tf<String>,
    pub allow_datastore_migration: Tf<bool>,
    pub etcd_snapshot_schedule_cron: Tf<String>,
    pub etcd_snapshot_retention: Tf<i64>,
    pub etcd_snapshot_dir: Tf<String>,
    pub etcd_s3_endpoint: Tf<String>,
    pub etcd_s3_bucket: Tf<String>,
    pub etcd_s3_region: Tf<String>,
    pub etcd_s3_folder: Tf<String>,
    pub etcd_s3_access_key: Tf<String>,
    pub etcd_s3_secret_key: Tf<String>,
    pub etcd_s3_secret_key_wo: Tf<String>,
    pub etcd_s3_secret_key_wo_version: Tf<i64>,
    pub snapshot_before_changes: Tf<bool>,
    pub certificate_rotation: Tf<String>,
    pub certificates_expire: Tf<String>,
    #[serde(default)]
    pub registry_mirror: Vec<RegistryMirrorModel>,
    #[serde(default)]
    pub registry_config: Vec<RegistryConfigModel>,
    pub host: Option<ConnectionModel>,
    pub timeouts: Option<TimeoutsModel>,
}

/// The node's identity: its host address.
pub type ServerIdentity = HostIdentity;

fn list_attr(name: &str, desc: &str) -> Attribute {
    Attribute::list(name, Type::String)
        .optional()
        .description(desc)
}

pub fn schema() -> Schema {
    let s = Schema::new(
        "A k3s server (control plane + embedded etcd) on a host reached over SSH. `role = \"init\"` creates the \
         cluster; `role = \"join\"` joins it through `server_url`. Installs never block on the unit: the provider \
         starts k3s without waiting and polls readiness itself (the `timeouts` block bounds it), returning the \
         unit's last journal lines on failure. The token is written only to config.yaml (0600), never to a \
         command line.",
    )
    .attribute(
        Attribute::string("id")
            .computed()
            .use_state_for_unknown()
            .description("The host address (`host.address`)."),
    )
    .attribute(
        Attribute::string("role")
            .required()
            .requires_replace()
            .validate(Validator::one_of(&["init", "join"]))
            .description("`init`: the first server (`cluster-init`). `join`: joins through `server_url`."),
    )
    .attribute(Attribute::string("server_url").optional().description(
        "For `join`: `https://<existing server address>:6443`. Use a server's own address, not a load-balancer \
         pool that contains this node (a node joining itself breaks, k3s#9661). Ignored by k3s after bootstrap.",
    ))
    .attribute(
        Attribute::string("token")
            .optional()
            .sensitive()
            .validate(token_format())
            .description(
                "Cluster token, kept in state (the Terraform 1.0.3 path; `token_wo` keeps it out of state). \
                 `init`: a short secret you choose. `join`: the first server's `join_token` (the secure CA-pinned \
                 form). Written to config.yaml only. Set exactly one of `token` and `token_wo`. Changing it on \
                 the `init` server rotates the cluster's token in place (`k3s token rotate`, then a restart); the \
                 servers and agents that take its `join_token` restart with the new one, one server at a time. A \
                 joining server given a token the cluster does not accept is put back on its old one.",
            ),
    )
    .attribute(
        Attribute::string("version")
            .optional_computed()
            .use_state_for_unknown()
            .description(
                "k3s version, e.g. `v1.31.5+k3s1`. Changing it upgrades in place (one server at a time). Unset: \
                 the install script's default channel; reads back the installed version.",
            ),
    )
    .attribute(
        Attribute::string("node_name")
            .optional_computed()
            .use_state_for_unknown()
            .requires_replace()
            .description("Kubernetes node name (default: the host name)."),
    )
    .attribute(list_attr(
        "tls_san",
        "Extra SANs for the serving certificate on :6443 (e.g. the VIP). Verified on the live certificate; \
         when k3s keeps serving the old (sticky) certificate, the provider rotates it.",
    ))
    .attribute(list_attr(
        "node_labels",
        "Node labels, `key=value`. Set on the Node through the API (k3s applies config.yaml's `node-label` only \
         when a node registers) and read back from it: a label changed by hand shows in the plan; labels other \
         controllers add are left alone. Changing them restarts nothing.",
    ))
    .attribute(list_attr(
        "node_taints",
        "Node taints, `key=value:Effect` or `key:Effect` (NoSchedule, PreferNoSchedule, NoExecute), e.g. \
         `CriticalAddonsOnly=true:NoExecute`. Set on the Node through the API and read back from it (every taint \
         but Kubernetes' own `node.kubernetes.io/*`); also in config.yaml for registration. Changing them restarts \
         nothing.",
    ))
    .attribute(list_attr("disable", "Packaged components to disable, e.g. `servicelb`, `traefik`."))
    .attribute(
        Attribute::map("extra_config", Type::String)
            .optional()
            .description("Further config.yaml keys (string values), e.g. `{ \"write-kubeconfig-mode\" = \"0600\" }`."),
    )
    .attribute(Attribute::string("kubeconfig_server").optional().description(
        "Server URL written into the `kubeconfig` output, e.g. `https://<VIP>:6443`. Default \
         `https://<address>:6443`.",
    ))
    .attribute(
        Attribute::string("join_token")
            .computed()
            .sensitive()
            .use_state_for_unknown()
            .description(
                "The secure `K10<ca-hash>::server:<password>` token for further servers and agents. Null with \
                 `token_wo` (compose it from `ca_hash` instead).",
            ),
    )
    .attribute(
        Attribute::string("ca_hash")
            .computed()
            .use_state_for_unknown()
            .description("SHA-256 of the cluster CA bundle, as pinned by `join_token`."),
    )
    .attribute(
        Attribute::list("serving_cert_sans", Type::String)
            .computed()
            .description("SANs of the certificate this server presents on :6443, read with a TLS handshake."),
    )
    .attribute(
        Attribute::string("kubeconfig")
            .computed()
            .sensitive()
            .description(
                "Admin kubeconfig with its server set to `kubeconfig_server`. Null with `token_wo`: take the \
                 ephemeral `homelab_k3s_kubeconfig` instead, which stays out of state.",
            ),
    )
    .attribute(Attribute::string("datastore").computed().description(
        "The datastore the server runs on, read from the host: `etcd` (embedded etcd, HA-capable) or `sqlite` \
         (the single-server default of a plain install). A `role = \"init\"` server found on `sqlite` plans an \
         in-place change to `etcd`: the seed's migration, which needs `allow_datastore_migration = true`.",
    ))
    .attribute(Attribute::bool("allow_datastore_migration").optional().description(
        "Allow converting this server from sqlite to embedded etcd in place (default false). The provider stops \
         k3s, copies the datastore directory and the token to `/var/backups/k3s/<UTC time>-sqlite-to-etcd/` on \
         the host, adds `cluster-init` to config.yaml, starts k3s (which migrates the data) and checks that the \
         datastore is etcd and every node is still there. One way: k3s cannot go back to sqlite.",
    ))
    .attribute(
        Attribute::string("etcd_snapshot_schedule_cron")
            .optional()
            .validate(Validator::string("a cron schedule of five fields", check_cron))
            .description(
                "When k3s takes its scheduled etcd snapshots, as a five-field cron expression \
                 (`etcd-snapshot-schedule-cron`; k3s's default: `0 */12 * * *`).",
            ),
    )
    .attribute(
        Attribute::number("etcd_snapshot_retention")
            .optional()
            .validate(Validator::int_between(1, 10_000))
            .description("How many scheduled snapshots k3s keeps (`etcd-snapshot-retention`; k3s's default: 5)."),
    )
    .attribute(
        Attribute::string("etcd_snapshot_dir")
            .optional()
            .validate(Validator::string("an absolute path", |p| {
                if p.starts_with('/') && !p.contains("..") {
                    Ok(())
                } else {
                    Err(format!("{p:?} is not an absolute path without `..` segments, e.g. \"/var/lib/k3s-snapshots\"."))
                }
            }))
            .description(
                "Directory of the snapshots on the host (`etcd-snapshot-dir`; k3s's default: \
                 `/var/lib/rancher/k3s/server/db/snapshots`). The provider's own snapshots before an upgrade go \
                 here too.",
            ),
    )
    .attribute(Attribute::string("etcd_s3_bucket").optional().validate(Validator::not_empty()).description(
        "S3 bucket k3s also uploads its scheduled and on-demand etcd snapshots to (`etcd-s3` + \
         `etcd-s3-bucket`). Unset: snapshots stay on the host only.",
    ))
    .attribute(Attribute::string("etcd_s3_endpoint").optional().description(
        "S3 endpoint host (`etcd-s3-endpoint`; k3s's default: `s3.amazonaws.com`), e.g. a MinIO on the NAS.",
    ))
    .attribute(
        Attribute::string("etcd_s3_region")
            .optional()
            .description("S3 region (`etcd-s3-region`; k3s's default: `us-east-1`)."),
    )
    .attribute(
        Attribute::string("etcd_s3_folder")
            .optional()
            .description("Folder in the bucket for this cluster's snapshots (`etcd-s3-folder`)."),
    )
    .attribute(
        Attribute::string("etcd_s3_access_key")
            .optional()
            .description("S3 access key id (`etcd-s3-access-key`)."),
    )
    .attribute(
        Attribute::string("etcd_s3_secret_key")
            .optional()
            .sensitive()
            .validate(Validator::not_empty())
            .description(
                "S3 secret key (`etcd-s3-secret-key`), kept in state (sensitive): the Terraform 1.0.3 path. On \
                 Terraform 1.11 or newer use `etcd_s3_secret_key_wo`, which keeps it out of state.",
            ),
    )
    .attribute(
        Attribute::string("etcd_s3_secret_key_wo")
            .optional()
            .sensitive()
            .write_only()
            .validate(Validator::not_empty())
            .description(
                "S3 secret key, write-only (Terraform 1.11 or newer): written to config.yaml, never stored in \
                 plan or state and never read back. Set it with `etcd_s3_secret_key_wo_version`; raise the \
                 version to write a new secret.",
            ),
    )
    .attribute(Attribute::number("etcd_s3_secret_key_wo_version").optional().description(
        "Required with `etcd_s3_secret_key_wo`: a change of this number is what writes the write-only secret \
         again (config.yaml rewritten, k3s restarted).",
    ))
    .attribute(
        Attribute::bool("snapshot_before_changes")
            .default_bool(true)
            .description(
                "Take an on-demand etcd snapshot before the destructive changes the provider makes: an upgrade \
                 (`homelab-pre-upgrade-<node>-<time>` in the snapshot directory; the upgrade does not start if it \
                 cannot be taken) and a joined server's removal (`homelab-pre-remove-<node>-<time>` in \
                 `/var/backups/k3s/snapshots`, which the uninstall keeps). Each snapshot is reported in a \
                 warning with its path. The sqlite to etcd migration keeps its own file backup instead.",
            ),
    )
    .attribute(Attribute::string("certificate_rotation").optional().description(
        "Any value; changing it rotates this server's certificates on the next apply (`k3s certificate rotate`: \
         every certificate k3s issues is issued again, the CAs are kept; one restart, one server at a time). Use \
         it when a plan warns that certificates expire soon, e.g. `certificate_rotation = \"2026-12\"`. Setting \
         it on a new server rotates nothing.",
    ))
    .attribute(Attribute::string("certificates_expire").computed().description(
        "When the first of this node's k3s certificates expires (RFC 3339, UTC; read with `openssl x509 -enddate` \
         from the server and agent certificate directories). A refresh warns from 90 days before; k3s renews \
         such certificates when it restarts.",
    ));
    registry_blocks(install_attributes(token_wo_attributes(s)))
        .block(connection_block())
        .block(timeouts_block())
}

/// A five-field cron expression (k3s's robfig/cron parser also takes `@every` descriptors; they are accepted too).
fn check_cron(s: &str) -> Result<(), String> {
    let fields = s.split_whitespace().count();
    if s.trim_start().starts_with('@') || fields == 5 {
        Ok(())
    } else {
        Err(format!(
            "{s:?} has {fields} fields; k3s wants five (minute hour day-of-month month day-of-week), e.g. \
             \"0 */6 * * *\"."
        ))
    }
}

fn role_of(m: &ServerModel) -> &str {
    m.role.known().map(String::as_str).unwrap_or("init")
}

/// The S3 setting named `attribute` (one of [`S3_KEYS`]).
fn s3_field<'m>(m: &'m ServerModel, attribute: &str) -> &'m Tf<String> {
    match attribute {
        "etcd_s3_endpoint" => &m.etcd_s3_endpoint,
        "etcd_s3_bucket" => &m.etcd_s3_bucket,
        "etcd_s3_region" => &m.etcd_s3_region,
        "etcd_s3_folder" => &m.etcd_s3_folder,
        _ => &m.etcd_s3_access_key,
    }
}

fn s3_field_mut<'m>(m: &'m mut ServerModel, attribute: &str) -> &'m mut Tf<String> {
    match attribute {
        "etcd_s3_endpoint" => &mut m.etcd_s3_endpoint,
        "etcd_s3_bucket" => &mut m.etcd_s3_bucket,
        "etcd_s3_region" => &mut m.etcd_s3_region,
        "etcd_s3_folder" => &mut m.etcd_s3_folder,
        _ => &mut m.etcd_s3_access_key,
    }
}

/// config.yaml wanted by the model (the sequence adds `node-name` once it knows the host's name).
fn desired_config(m: &ServerModel) -> BTreeMap<String, serde_json::Value> {
    use serde_json::json;
    let mut c = BTreeMap::new();
    for (k, v) in m.extra_config.known().cloned().unwrap_or_default() {
        c.insert(k, json!(v));
    }
    if let Some(t) = wanted_token(&m.token, &m.token_wo) {
        c.insert("token".into(), json!(t));
    }
    if role_of(m) == "init" {
        c.insert("cluster-init".into(), json!(true));
    } else if let Some(u) = m.server_url.known() {
        c.insert("server".into(), json!(u));
    }
    for (key, v) in [
        (
            "etcd-snapshot-schedule-cron",
            &m.etcd_snapshot_schedule_cron,
        ),
        ("etcd-snapshot-dir", &m.etcd_snapshot_dir),
    ] {
        if let Some(v) = v.known() {
            c.insert(key.into(), json!(v));
        }
    }
    if let Some(n) = m.etcd_snapshot_retention.known() {
        c.insert("etcd-snapshot-retention".into(), json!(n));
    }
    if m.etcd_s3_bucket.is_known() {
        c.insert("etcd-s3".into(), json!(true));
        for (attribute, key) in S3_KEYS {
            if let Some(v) = s3_field(m, attribute).known() {
                c.insert((*key).into(), json!(v));
            }
        }
        if let Some(k) = m
            .etcd_s3_secret_key
            .known()
            .or(m.etcd_s3_secret_key_wo.known())
        {
            c.insert("etcd-s3-secret-key".into(), json!(k));
        }
    }
    for (key, l) in [
        ("tls-san", list_or_empty(&m.tls_san)),
        ("node-label", registrable_labels(&m.node_labels)),
        ("node-taint", list_or_empty(&m.node_taints)),
        ("disable", list_or_empty(&m.disable)),
    ] {
        if !l.is_empty() {
            c.insert(key.into(), json!(l));
        }
    }
    c
}

fn kube_server(m: &ServerModel) -> String {
    m.kubeconfig_server.known().cloned().unwrap_or_else(|| {
        let a = m
            .host
            .as_ref()
            .and_then(|c| c.address.known().cloned())
            .unwrap_or_default();
        if a.contains(':') {
            format!("https://[{a}]:6443")
        } else {
            format!("https://{a}:6443")
        }
    })
}

/// S3 settings come with a bucket; at most one form of the secret, and the write-only one with its version.
fn check_s3(m: &ServerModel, diags: &mut Diagnostics) {
    let any = S3_KEYS
        .iter()
        .any(|(a, _)| *a != "etcd_s3_bucket" && !s3_field(m, a).is_null())
        || !m.etcd_s3_secret_key.is_null()
        || !m.etcd_s3_secret_key_wo.is_null();
    if any && m.etcd_s3_bucket.is_null() {
        diags.push(
            Diagnostic::error(
                "S3 settings without a bucket",
                "Set `etcd_s3_bucket` to upload snapshots to S3, or remove the other `etcd_s3_*` settings.",
            )
            .at(attr("etcd_s3_bucket")),
        );
    }
    if !m.etcd_s3_secret_key.is_null() && !m.etcd_s3_secret_key_wo.is_null() {
        diags.push(
            Diagnostic::error(
                "Two S3 secrets",
                "Set either `etcd_s3_secret_key` (kept in state) or `etcd_s3_secret_key_wo` (write-only), not both.",
            )
            .at(attr("etcd_s3_secret_key_wo")),
        );
    }
    if !m.etcd_s3_secret_key_wo.is_null() && m.etcd_s3_secret_key_wo_version.is_null() {
        diags.push(
            Diagnostic::error(
                "etcd_s3_secret_key_wo_version is required",
                "Terraform cannot compare a write-only value, so `etcd_s3_secret_key_wo` needs \
                 `etcd_s3_secret_key_wo_version = 1`; raise it whenever the secret changes.",
            )
            .at(attr("etcd_s3_secret_key_wo_version")),
        );
    }
}

#[derive(Default)]
pub struct K3sServer;

impl K3sServer {
    /// Create and update: the plan as the sequence's wants, [`k3s::server::converge`], the result mapped back.
    async fn converge(
        &self,
        ctx: &Context,
        mut plan: ServerModel,
        limit: std::time::Duration,
        rotate_certificates: bool,
        prior: Option<&ServerModel>,
    ) -> Result<ServerModel, Diagnostics> {
        if plan.server_url.is_known() {
            // A joining server registers through `server_url`, which may be served by HAProxy: this process's
            // HAProxy changes must be live first.
            crate::resources::opnsense_common::haproxy_live_barrier(ctx, "server_url").await?;
        }
        let install = install_source(
            &plan.install_script,
            &plan.install_script_url,
            &plan.install_env,
            &plan.airgap_binary_path,
        );
        let tls_san = list_or_empty(&plan.tls_san);
        let registries = registries_text(&plan.registry_mirror, &plan.registry_config);
        let managed_before =
            prior.is_some_and(|p| !p.registry_mirror.is_empty() || !p.registry_config.is_empty());
        let want = ServerWant {
            registries: registries_want(&registries, managed_before),
            init: role_of(&plan) == "init",
            server_url: plan.server_url.known().map(String::as_str),
            node_name: plan.node_name.known().map(String::as_str),
            config: desired_config(&plan),
            tls_san: &tls_san,
            version: plan.version.known().map(String::as_str),
            install: &install,
            allow_datastore_migration: plan.allow_datastore_migration.known() == Some(&true),
            snapshot_before_changes: plan.snapshot_before_changes.known() != Some(&false),
            snapshot_dir: plan.etcd_snapshot_dir.known().map(String::as_str),
            rotate_certificates,
            limit,
        };
        want.check().map_err(failure_diag)?;
        let token = wanted_token(&plan.token, &plan.token_wo)
            .cloned()
            .unwrap_or_default();
        let _guard = k3s::lock::cluster_lock(&token).await;
        let session = connect(ctx, plan.host.as_ref()).await?;
        let done = k3s::server::converge(&session, &want, ctx, ctx.cancellation())
            .await
            .map_err(failure_diag)?;
        let marks = marks_want(
            &plan.node_labels,
            &plan.node_taints,
            prior.map(|p| (&p.node_labels, &p.node_taints)),
        );
        k3s::marks::sync(
            &session,
            Creds::ServerAdmin,
            &done.node_name,
            &marks,
            done.node,
        )
        .await
        .map_err(failure_diag)?;
        plan.id = host_id(plan.host.as_ref());
        plan.node_name = Tf::Known(done.node_name);
        plan.version = done.probe.version.map(Tf::Known).unwrap_or(Tf::Null);
        plan.datastore = done.probe.datastore.map(Tf::Known).unwrap_or(Tf::Null);
        fill_facts(&mut plan, done.facts);
        plan.certificates_expire = first_expiry(&done.certs);
        Ok(plan)
    }
}

fn fill_facts(m: &mut ServerModel, facts: k3s::ServerFacts) {
    m.ca_hash = facts
        .token
        .as_deref()
        .and_then(k3s::token_ca_hash)
        .map(Tf::Known)
        .unwrap_or(Tf::Null);
    m.serving_cert_sans = Tf::Known(facts.serving_sans);
    // With the write-only token nothing secret goes into state: no join token, no admin kubeconfig.
    if uses_token_wo(&m.token, &m.token_wo_version) {
        m.join_token = Tf::Null;
        m.kubeconfig = Tf::Null;
        return;
    }
    m.join_token = facts.token.map(Tf::Known).unwrap_or(Tf::Null);
    let server = kube_server(m);
    m.kubeconfig = facts
        .kubeconfig
        .map(|k| Tf::Known(k3s::rewrite_kubeconfig(&k, &server)))
        .unwrap_or(Tf::Null);
}

#[async_trait]
impl Resource for K3sServer {
    type Model = ServerModel;
    type Identity = ServerIdentity;

    fn type_name(&self) -> &'static str {
        TYPE
    }
    fn schema(&self) -> Schema {
        schema()
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(address_identity_schema())
    }
    fn identity(&self, state: &ServerModel) -> Option<ServerIdentity> {
        host_identity(&state.id)
    }
    fn timeouts(&self, m: &ServerModel) -> Timeouts {
        Timeouts::from_model(Timeouts::default(), m.timeouts.as_ref())
    }
    fn validate(&self, config: &ServerModel, diags: &mut Diagnostics) {
        check_s3(config, diags);
        check_marks_format(&config.node_labels, &config.node_taints, diags);
        check_registries(&config.registry_config, diags);
        if config.role.known().map(String::as_str) == Some("join") && config.server_url.is_null() {
            diags.push(
                Diagnostic::error(
                    "server_url is required to join",
                    "A server with role \"join\" needs `server_url = \"https://<existing server>:6443\"`.",
                )
                .at(attr("server_url")),
            );
        }
        check_managed_keys(&config.extra_config, MANAGED, diags);
        check_token_choice(
            &config.token,
            &config.token_wo,
            &config.token_wo_version,
            diags,
        );
    }
    async fn modify_plan(
        &self,
        ctx: &Context,
        plan: &mut Plan<ServerModel>,
    ) -> Result<(), Diagnostics> {
        plan_common(plan, |m| &m.version, |m| m.host.as_ref())?;
        let write_only = !plan.config.token_wo.is_null();
        if write_only {
            // Known at plan: nothing secret is kept with the write-only token.
            plan.planned.join_token = Tf::Null;
            plan.planned.kubeconfig = Tf::Null;
            // Moving from `token` (or an import, which reads it back) to `token_wo` drops the token from state;
            // the host keeps its token, so that is no replacement.
            plan.requires_replace.retain(|p| p != &attr("token"));
        }
        let Some(prior) = plan.prior.clone() else {
            return Ok(());
        };
        // A new token on the first server rotates the cluster's token: its join token changes with it.
        let token_changed = prior.token != plan.planned.token
            || prior.token_wo_version != plan.planned.token_wo_version;
        if token_changed && !write_only {
            // Every server's join token is its own token file, rewritten by the restart with the new token.
            plan.planned.join_token = Tf::Unknown;
        }
        if token_changed && role_of(&plan.planned) == "init" && prior.datastore.is_known() {
            ctx.warn(
                "The cluster token will be rotated",
                "The token of this init server changes: applying rotates the cluster's token (`k3s token rotate` \
                 semantics) and restarts this server with it; the servers and agents given its new join token \
                 restart with it next, one server at a time. If the new token is the one the cluster already has \
                 (an earlier apply rotated it), nothing is rotated again.",
            );
        }
        // The seed's migration: the first server found on sqlite moves to etcd in place.
        let migrating = role_of(&plan.planned) == "init"
            && prior.datastore.known().map(String::as_str) == Some("sqlite");
        if migrating {
            plan.planned.datastore = Tf::Known("etcd".into());
            if plan.planned.allow_datastore_migration.known() != Some(&true) {
                let host = prior
                    .host
                    .as_ref()
                    .and_then(|h| h.address.known().cloned())
                    .unwrap_or_default();
                ctx.warn(
                    "sqlite to etcd migration planned but not allowed",
                    k3s::server::migration_not_allowed(&host).detail,
                );
            }
        } else {
            plan.planned.datastore = prior.datastore.clone();
        }
        // A wanted SAN missing on the wire is drift: plan an update that restarts/rotates.
        if let Tf::Known(sans) = &prior.serving_cert_sans {
            let missing = missing_sans(&list_or_empty(&plan.planned.tls_san), sans);
            if !missing.is_empty() {
                plan.planned.serving_cert_sans = Tf::Unknown;
                plan.planned.kubeconfig = Tf::Unknown;
                let how = if migrating
                    && plan.planned.allow_datastore_migration.known() == Some(&true)
                {
                    "Applying migrates the datastore, which stops k3s anyway: while it is stopped the provider \
                     also runs `k3s certificate rotate --service k3s-server` (k3s keeps the certificate sticky), \
                     so the one restart serves the new SAN."
                } else {
                    "Applying restarts k3s with the new config.yaml; if the certificate still lacks it (k3s keeps \
                     it sticky), the provider runs `k3s certificate rotate --service k3s-server` and restarts k3s \
                     again."
                };
                ctx.warn(
                    "tls_san not yet on the serving certificate",
                    format!(
                        "{} is not on the certificate this server presents on :6443. {how}",
                        missing.join(", ")
                    ),
                );
            }
        }
        // A version change reinstalls; everything read back may change.
        if plan.planned.version.is_known()
            && plan.planned.version != prior.version
            && prior.version.is_known()
        {
            plan.planned.serving_cert_sans = Tf::Unknown;
            plan.planned.kubeconfig = Tf::Unknown;
        }
        if plan.planned.kubeconfig_server != prior.kubeconfig_server {
            plan.planned.kubeconfig = Tf::Unknown;
        }
        if write_only {
            plan.planned.kubeconfig = Tf::Null;
        }
        Ok(())
    }
    async fn create(&self, ctx: &Context, plan: ServerModel) -> Result<ServerModel, Diagnostics> {
        let limit = self.timeouts(&plan).create;
        self.converge(ctx, plan, limit, false, None).await
    }
    async fn read(
        &self,
        ctx: &Context,
        state: ServerModel,
    ) -> Result<Option<ServerModel>, Diagnostics> {
        let wants = k3s::ReadWants {
            role: Role::Server,
            server_facts: true,
            agent_lb: false,
            node: state
                .node_name
                .known()
                .map(|n| (Creds::ServerAdmin, n.as_str())),
        };
        let Some((session, read)) = read_installed(ctx, state.host.as_ref(), &wants).await? else {
            return Ok(None);
        };
        let k3s::NodeRead {
            probe,
            certs,
            server_facts,
            node: pre_node,
            ..
        } = read;
        let mut m = state.clone();
        m.id = host_id(state.host.as_ref());
        m.version = probe.version.clone().map(Tf::Known).unwrap_or(Tf::Null);
        m.datastore = probe.datastore.clone().map(Tf::Known).unwrap_or(Tf::Null);
        let cfg = read_config(&probe);
        if let Some(cfg) = &cfg {
            let s = |k: &str| cfg_str(cfg, k);
            let cluster_init =
                matches!(cfg.get("cluster-init"), Some(serde_json::Value::Bool(true)))
                    || s("cluster-init").as_deref() == Some("true");
            if cluster_init {
                m.role = Tf::Known("init".into());
            } else if let Some(u) = s("server") {
                m.role = Tf::Known("join".into());
                m.server_url = Tf::Known(u);
            } else {
                // A single server without cluster-init (sqlite, or etcd already): the cluster's first server.
                m.role = Tf::Known("init".into());
            }
            m.tls_san = list_back(strings_of(cfg.get("tls-san")), &state.tls_san);
            m.etcd_snapshot_schedule_cron = s("etcd-snapshot-schedule-cron")
                .map(Tf::Known)
                .unwrap_or(Tf::Null);
            m.etcd_snapshot_dir = s("etcd-snapshot-dir").map(Tf::Known).unwrap_or(Tf::Null);
            m.etcd_snapshot_retention = s("etcd-snapshot-retention")
                .and_then(|n| n.parse().ok())
                .map(Tf::Known)
                .unwrap_or(Tf::Null);
            m.disable = list_back(strings_of(cfg.get("disable")), &state.disable);
            for (attribute, key) in S3_KEYS {
                *s3_field_mut(&mut m, attribute) = s(key).map(Tf::Known).unwrap_or(Tf::Null);
            }
            // The write-only secret is never read back (its drift shows only through its version).
            let s3_write_only = state.etcd_s3_secret_key.is_null()
                && !state.etcd_s3_secret_key_wo_version.is_null();
            if !s3_write_only {
                m.etcd_s3_secret_key = s("etcd-s3-secret-key").map(Tf::Known).unwrap_or(Tf::Null);
            }
        }
        // With the write-only token, the host's token is never read back (its drift shows only through
        // `token_wo_version`).
        let write_only = uses_token_wo(&state.token, &state.token_wo_version);
        let mut not_kept = Tf::Null;
        NodeFields {
            token: if write_only {
                &mut not_kept
            } else {
                &mut m.token
            },
            node_name: &mut m.node_name,
            node_labels: &mut m.node_labels,
            node_taints: &mut m.node_taints,
            extra_config: &mut m.extra_config,
        }
        .read_back(cfg.as_ref(), MANAGED);
        if m.node_name.is_null() {
            m.node_name = Tf::Known(probe.hostname.clone());
        }
        if !state.registry_mirror.is_empty() || !state.registry_config.is_empty() {
            read_registries_back(&probe, &mut m.registry_mirror, &mut m.registry_config);
        }
        if let (Some(name), "active") = (m.node_name.known().cloned(), probe.active.as_str()) {
            read_marks_back(
                &session,
                Creds::ServerAdmin,
                &name,
                pre_node,
                &mut m.node_labels,
                &mut m.node_taints,
                (&state.node_labels, &state.node_taints),
            )
            .await;
        }
        if m.role.is_null() {
            m.role = Tf::Known("init".into());
        }
        // Not on the host: a provider choice (after an import, its default).
        if m.snapshot_before_changes.is_null() {
            m.snapshot_before_changes = Tf::Known(true);
        }
        if let Some(facts) = server_facts {
            fill_facts(&mut m, facts);
        }
        m.certificates_expire = first_expiry(&certs);
        warn_expiring(
            ctx,
            "k3s",
            session.host(),
            &certs,
            "Change `certificate_rotation` on this server (any new value) to rotate them in the next apply, or \
             restart k3s on the host.",
        );
        if probe.active != "active" {
            ctx.warn(
                "k3s is not running",
                format!(
                    "The k3s unit on {} is {:?}; the next apply restarts it.",
                    session.host(),
                    probe.active
                ),
            );
            m.serving_cert_sans = Tf::Known(vec![]);
        }
        Ok(Some(m))
    }
    async fn update(
        &self,
        ctx: &Context,
        prior: ServerModel,
        plan: ServerModel,
    ) -> Result<ServerModel, Diagnostics> {
        let limit = self.timeouts(&plan).update;
        let rotate = plan.certificate_rotation.is_known()
            && plan.certificate_rotation != prior.certificate_rotation;
        self.converge(ctx, plan, limit, rotate, Some(&prior)).await
    }
    async fn delete(&self, ctx: &Context, state: ServerModel) -> Result<(), Diagnostics> {
        let removal = Removal {
            // Only a joined server has a peer to leave through; the first server is the cluster.
            peer: match (
                role_of(&state),
                state.server_url.known(),
                state.node_name.known(),
            ) {
                ("join", Some(url), Some(name)) => Some((url.as_str(), name.as_str())),
                _ => None,
            },
            started: std::time::Instant::now(),
            limit: self.timeouts(&state).delete,
            snapshot_before_changes: state.snapshot_before_changes.known() != Some(&false),
        };
        let session = connect(ctx, state.host.as_ref()).await?;
        // The lock is keyed by the cluster's token; with `token_wo` state has none, so the host's own token
        // file gives the same key (it is held in memory only).
        let token = match state.token.known() {
            Some(t) => t.clone(),
            None => k3s::server_facts(&session)
                .await
                .ok()
                .and_then(|f| f.token)
                .unwrap_or_default(),
        };
        let _guard = k3s::lock::cluster_lock(&token).await;
        k3s::server::remove(&session, &removal, ctx, ctx.cancellation())
            .await
            .map_err(failure_diag)
    }
    async fn import(&self, _ctx: &Context, id: &str) -> Result<ServerModel, Diagnostics> {
        Ok(ServerModel {
            id: Tf::Known(id.to_string()),
            host: host_for(id),
            ..Default::default()
        })
    }
    async fn import_identity(
        &self,
        ctx: &Context,
        identity: ServerIdentity,
    ) -> Result<ServerModel, Diagnostics> {
        self.import(ctx, &identity.address).await
    }
}

pub fn register(r: &mut Registry) {
    r.resource(K3sServer);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_valid() {
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }

    #[test]
    fn s3_settings_reach_config_yaml_only_with_a_bucket() {
        let mut m = ServerModel {
            role: Tf::Known("init".into()),
            etcd_s3_endpoint: Tf::Known("minio:9000".into()),
            etcd_s3_secret_key_wo: Tf::Known("s3pw".into()),
            ..Default::default()
        };
        let mut d = Diagnostics::default();
        check_s3(&m, &mut d);
        assert!(d.has_errors(), "S3 settings without a bucket are refused");
        assert!(!desired_config(&m).contains_key("etcd-s3-endpoint"));
        m.etcd_s3_bucket = Tf::Known("snaps".into());
        let mut d = Diagnostics::default();
        check_s3(&m, &mut d);
        assert!(d.has_errors(), "the write-only secret needs its version");
        m.etcd_s3_secret_key_wo_version = Tf::Known(1);
        let mut d = Diagnostics::default();
        check_s3(&m, &mut d);
        assert!(!d.has_errors());
        let c = desired_config(&m);
        assert_eq!(c["etcd-s3"], serde_json::json!(true));
        assert_eq!(c["etcd-s3-bucket"], serde_json::json!("snaps"));
        assert_eq!(c["etcd-s3-secret-key"], serde_json::json!("s3pw"));
    }

    #[test]
    fn the_write_only_token_reaches_config_yaml_but_nothing_secret_reaches_state() {
        let mut m = ServerModel {
            role: Tf::Known("init".into()),
            token_wo: Tf::Known("pw".into()),
            token_wo_version: Tf::Known(1),
            ..Default::default()
        };
        assert_eq!(desired_config(&m)["token"], serde_json::json!("pw"));
        fill_facts(
            &mut m,
            k3s::ServerFacts {
                token: Some("K10abc::server:pw".into()),
                serving_sans: vec![],
                kubeconfig: Some("client-key-data: x\n".into()),
            },
        );
        assert_eq!(m.ca_hash, Tf::Known("abc".into()));
        assert_eq!((m.join_token, m.kubeconfig), (Tf::Null, Tf::Null));
    }

    #[test]
    fn init_and_join_configs() {
        let mut m = ServerModel {
            role: Tf::Known("init".into()),
            token: Tf::Known("pw".into()),
            tls_san: Tf::Known(vec!["192.0.2.50".into()]),
            ..Default::default()
        };
        let c = desired_config(&m);
        assert_eq!(c["cluster-init"], serde_json::json!(true));
        assert!(!c.contains_key("server"));
        assert_eq!(c["tls-san"], serde_json::json!(["192.0.2.50"]));
        m.role = Tf::Known("join".into());
        m.server_url = Tf::Known("https://192.0.2.2:6443".into());
        let c = desired_config(&m);
        assert!(!c.contains_key("cluster-init"));
        assert_eq!(c["server"], serde_json::json!("https://192.0.2.2:6443"));
        assert!(
            !c.contains_key("node-name"),
            "the sequence adds the node name"
        );
    }
}
