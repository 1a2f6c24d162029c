//! `k3s server`: datastore choice, bootstrap (CAs and token), etcd membership, the `:6443` listener, the
//! kubeconfig and this server's own Node.
//!
//! The decisions follow k3s (k3s.md §2–§3): an existing etcd data dir wins and makes `--server`/`--cluster-init`
//! no-ops; otherwise `--server` joins (CA pinned by the secure token, CAs fetched with the server token, etcd
//! learner added then promoted, one learner at a time as etcd enforces); otherwise `--cluster-init` starts a new
//! etcd (migrating an existing single-server store); otherwise the single-server store. With
//! `K3S_SIM_PROMOTE_DELAY_SECS` a joiner comes up while still a learner and is promoted that much later, as k3s's
//! leader does it asynchronously (the provider must wait for the promotion before the next join). READY is sent only when
//! the server serves, so `systemctl restart k3s` blocks like on a real node.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::api::{self, kubelet_may_set, Cluster, Peer};
use crate::config::Config;
use crate::etcd::{self, EtcdClient, EtcdOpts};
pub use crate::host::{hostname, node_ip, Fatal};
use crate::http::{self, Tls};
use crate::paths::{write_file, Paths};
use crate::pki::{parse_token, random_hex, secure_token, sha256_hex, subject_of, CertKey};
use crate::serving::{wanted_cns, Serving};
use crate::store::{FileStore, Store};
use crate::{error, info, warn};

/// The token from `token`/`token-file`.
pub fn configured_token(cfg: &Config, paths: &Paths, key: &str) -> Option<String> {
    cfg.str(key).or_else(|| {
        cfg.str(&format!("{key}-file"))
            .and_then(|f| std::fs::read_to_string(paths.host(&f)).ok())
            .map(|s| s.trim().to_string())
    })
}

/// The node password, created on first use (`/etc/rancher/node/password`).
pub fn node_password(paths: &Paths) -> Result<String, Fatal> {
    let p = paths.node_password();
    if let Ok(s) = std::fs::read_to_string(&p) {
        if !s.trim().is_empty() {
            return Ok(s.trim().to_string());
        }
    }
    let pw = random_hex(16);
    write_file(&p, pw.as_bytes(), 0o600).map_err(Fatal::from("write node password"))?;
    Ok(pw)
}

fn read_ck(dir: &Path, name: &str) -> Option<CertKey> {
    Some(CertKey {
        cert: std::fs::read_to_string(dir.join(format!("{name}.crt"))).ok()?,
        key: std::fs::read_to_string(dir.join(format!("{name}.key"))).ok()?,
    })
}

fn write_ck(dir: &Path, name: &str, ck: &CertKey) -> Result<(), Fatal> {
    write_file(&dir.join(format!("{name}.crt")), ck.cert.as_bytes(), 0o644)
        .map_err(Fatal::from("write cert"))?;
    write_file(&dir.join(format!("{name}.key")), ck.key.as_bytes(), 0o600)
        .map_err(Fatal::from("write key"))
}

/// Fetch `/cacerts` without verification and check it against the token's CA hash (k3s's join-time pinning).
pub async fn fetch_pinned_ca(
    base: &str,
    token: &str,
    tls_name: Option<String>,
) -> Result<String, Fatal> {
    let mut insecure = Tls::insecure();
    insecure.server_name = tls_name;
    let r = http::request(
        "GET",
        &format!("{base}/cacerts"),
        &[],
        None,
        Some(&insecure),
    )
    .await
    .map_err(|e| Fatal(format!("failed to get CA certs: {e}")))?;
    if r.status != 200 {
        return Err(Fatal(format!(
            "failed to get CA certs: {base}/cacerts: {}",
            r.status
        )));
    }
    let ca = r.text();
    let t = parse_token(token);
    match t.ca_hash {
        Some(h) => {
            let actual = sha256_hex(ca.as_bytes());
            if h != actual {
                return Err(Fatal(format!(
                    "token CA hash does not match the Cluster CA certificate hash: {h} != {actual}"
                )));
            }
        }
        None => warn!("Cluster CA certificate is not trusted by the host CA bundle, but the token does not include a CA hash. Use the full token from the server's node-token file to enable Cluster CA validation."),
    }
    Ok(ca)
}

fn basic(user: &str, pw: &str) -> (&'static str, String) {
    use base64::Engine;
    (
        "authorization",
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"))
        ),
    )
}

enum Mode {
    File,
    EtcdRestart,
    EtcdNew { migrate: bool },
    Join(String),
}

/// Run `k3s server` until SIGTERM (Ok) or a fatal error.
pub async fn run(cfg: Config, paths: Paths) -> Result<(), Fatal> {
    check_node_labels(&cfg)?;
    crate::registries::apply(&paths)?;
    let node_name = cfg.str("node-name").unwrap_or_else(hostname);
    let ip = node_ip(&cfg)?;
    let port: u16 = cfg
        .str("https-listen-port")
        .and_then(|p| p.parse().ok())
        .unwrap_or(6443);
    info!("Starting k3s {} (k3s-sim)", crate::VERSION);
    if cfg.bool("cluster-reset") {
        return crate::reset::run(&cfg, &paths, &node_name, &ip).await;
    }
    let db = paths.db();
    let tls_dir = paths.tls();
    let etcd_exists = etcd::name_file(&db).exists();
    let sqlite_exists = db.join("state.db").exists();
    let mode = if etcd_exists {
        if cfg.str("server").is_some() || cfg.bool("cluster-init") {
            info!(
                "etcd data store found in {}, ignoring --cluster-init and --server",
                db.join("etcd").display()
            );
        }
        Mode::EtcdRestart
    } else if let Some(url) = cfg.str("server").filter(|_| !sqlite_exists) {
        Mode::Join(url)
    } else if cfg.bool("cluster-init") {
        Mode::EtcdNew {
            migrate: sqlite_exists,
        }
    } else {
        Mode::File
    };
    let token_cfg = configured_token(&cfg, &paths, "token");

    // --- CAs ---
    let (server_ca, client_ca) = match &mode {
        Mode::Join(url) => {
            let token = token_cfg
                .clone()
                .ok_or_else(|| Fatal("--token is required to join a cluster".into()))?;
            let ca = fetch_pinned_ca(url, &token, None).await?;
            let pw = parse_token(&token).password;
            let r = http::request(
                "GET",
                &format!("{url}/v1-k3s/server-bootstrap"),
                &[basic("server", &pw)],
                None,
                Some(&Tls::ca(&ca, None)),
            )
            .await
            .map_err(|e| Fatal(format!("failed to bootstrap cluster data from {url}: {e}")))?;
            if r.status != 200 {
                return Err(Fatal(format!(
                    "failed to bootstrap cluster data from {url}: {url}/v1-k3s/server-bootstrap: {} {}",
                    r.status,
                    if r.status == 401 { "Unauthorized" } else { "" }
                )));
            }
            let b: Value =
                serde_json::from_slice(&r.body).map_err(Fatal::from("bootstrap data"))?;
            let theirs: BTreeMap<String, String> =
                serde_json::from_value(b["critical"].clone()).unwrap_or_default();
            let ours = critical_config(&cfg);
            if let Some((k, _)) = ours
                .iter()
                .find(|(k, v)| theirs.get(*k).is_some_and(|t| t != *v))
            {
                return Err(Fatal(format!(
                    "failed to validate server configuration: critical configuration value mismatch between servers: {k}"
                )));
            }
            let s: CertKey = serde_json::from_value(b["serverCA"].clone())
                .map_err(Fatal::from("bootstrap data"))?;
            let c: CertKey = serde_json::from_value(b["clientCA"].clone())
                .map_err(Fatal::from("bootstrap data"))?;
            write_ck(&tls_dir, "server-ca", &s)?;
            write_ck(&tls_dir, "client-ca", &c)?;
            (s, c)
        }
        _ => match (
            read_ck(&tls_dir, "server-ca"),
            read_ck(&tls_dir, "client-ca"),
        ) {
            (Some(s), Some(c)) => (s, c),
            _ => {
                let s = CertKey::new_ca("k3s-server-ca").map_err(Fatal::from("server CA"))?;
                let c = CertKey::new_ca("k3s-client-ca").map_err(Fatal::from("client CA"))?;
                if let Some(h) = token_cfg.as_deref().and_then(|t| parse_token(t).ca_hash) {
                    return Err(Fatal(format!(
                        "token CA hash does not match the Cluster CA certificate hash: {h} != {}",
                        sha256_hex(s.cert.as_bytes())
                    )));
                }
                write_ck(&tls_dir, "server-ca", &s)?;
                write_ck(&tls_dir, "client-ca", &c)?;
                (s, c)
            }
        },
    };

    // --- token files ---
    let token_file = paths.server().join("token");
    let stored_pw = std::fs::read_to_string(&token_file)
        .ok()
        .map(|t| parse_token(&t).password);
    // A configured token that differs from the local token file is refused — unless the cluster's token was
    // rotated (`k3s token rotate`): then the datastore's bootstrap data decides, once etcd is up (below).
    let mut rotated_check = false;
    let token_pw = match (
        token_cfg.as_deref().map(|t| parse_token(t).password),
        stored_pw,
    ) {
        (Some(cfgpw), Some(stored)) if cfgpw != stored => {
            if !matches!(mode, Mode::EtcdRestart) {
                return Err(Fatal(
                    "bootstrap data already found and encrypted with different token".into(),
                ));
            }
            rotated_check = true;
            cfgpw
        }
        (Some(p), _) | (None, Some(p)) => p,
        (None, None) => random_hex(16),
    };
    let write_token = |pw: &str| {
        write_file(
            &token_file,
            format!("{}\n", secure_token(&server_ca.cert, pw)).as_bytes(),
            0o600,
        )
        .map_err(Fatal::from("write token"))
    };
    if !rotated_check {
        write_token(&token_pw)?;
    }
    let relink = |name: &str| {
        let p = paths.server().join(name);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink("token", &p)
    };
    relink("node-token").map_err(Fatal::from("node-token"))?;
    let agent_token_pw = match configured_token(&cfg, &paths, "agent-token") {
        Some(t) => {
            let pw = parse_token(&t).password;
            let p = paths.server().join("agent-token");
            let _ = std::fs::remove_file(&p);
            write_file(
                &p,
                format!("K10{}::node:{pw}\n", sha256_hex(server_ca.cert.as_bytes())).as_bytes(),
                0o600,
            )
            .map_err(Fatal::from("write agent-token"))?;
            pw
        }
        None => {
            relink("agent-token").map_err(Fatal::from("agent-token"))?;
            token_pw.clone()
        }
    };

    // --- datastore ---
    let log_file = paths.server().join("db").join("etcd.log");
    let _ = std::fs::create_dir_all(&db);
    let mut etcd_child = None;
    let mut member_name = None;
    let store = match &mode {
        Mode::File => {
            info!(
                "Database tables and indexes are up to date (single-server datastore {})",
                db.join("state.db").display()
            );
            Store::File(FileStore::open(db.join("state.db")).map_err(Fatal::from("datastore"))?)
        }
        Mode::EtcdNew { migrate } => {
            let name = format!("{node_name}-{}", &random_hex(4));
            let opts = EtcdOpts {
                name: name.clone(),
                data_dir: db.join("etcd"),
                node_ip: ip.clone(),
                localhost: paths.localhost.clone(),
                initial: Some((format!("{name}=http://{ip}:2380"), "new")),
                log_file: log_file.clone(),
                force_new_cluster: false,
            };
            etcd_child = Some(etcd::spawn(&opts).map_err(Fatal::from("starting etcd"))?);
            write_file(&etcd::name_file(&db), name.as_bytes(), 0o600)
                .map_err(Fatal::from("etcd name"))?;
            if !etcd::wait_healthy(&opts.client_url(), Duration::from_secs(60)).await {
                return Err(Fatal("etcd did not become healthy".into()));
            }
            info!("Starting etcd for new cluster, member name {name}");
            let client = EtcdClient::new(vec![opts.client_url()]);
            if *migrate {
                info!("Migrating content from sqlite to etcd");
                let old = FileStore::open(db.join("state.db")).map_err(Fatal::from("datastore"))?;
                for (k, v) in old.dump().await {
                    client.put(&k, &v).await.map_err(Fatal::from("migrate"))?;
                }
            }
            member_name = Some(name);
            Store::Etcd(client)
        }
        Mode::EtcdRestart => {
            let name = std::fs::read_to_string(etcd::name_file(&db))
                .map_err(Fatal::from("etcd name"))?
                .trim()
                .to_string();
            let opts = EtcdOpts {
                name: name.clone(),
                data_dir: db.join("etcd"),
                node_ip: ip.clone(),
                localhost: paths.localhost.clone(),
                initial: None,
                log_file: log_file.clone(),
                force_new_cluster: false,
            };
            let mut child = etcd::spawn(&opts).map_err(Fatal::from("starting etcd"))?;
            loop {
                if etcd::wait_healthy(&opts.client_url(), Duration::from_secs(10)).await {
                    break;
                }
                if let Ok(Some(_)) = child.try_wait() {
                    return Err(etcd_exit_error(&log_file));
                }
                info!("Waiting for etcd server to become available (quorum)");
            }
            etcd_child = Some(child);
            member_name = Some(name);
            Store::Etcd(EtcdClient::new(vec![opts.client_url()]))
        }
        Mode::Join(url) => {
            // A join that died half-way leaves an etcd dir without a name: start over, as a fresh member.
            let _ = std::fs::remove_dir_all(db.join("etcd"));
            let name = format!("{node_name}-{}", &random_hex(4));
            let (child, client) =
                join_etcd(url, &token_pw, &server_ca, &name, &ip, &paths, &log_file).await?;
            write_file(&etcd::name_file(&db), name.as_bytes(), 0o600)
                .map_err(Fatal::from("etcd name"))?;
            etcd_child = Some(child);
            member_name = Some(name);
            Store::Etcd(client)
        }
    };
    let etcd_client = match &store {
        Store::Etcd(c) => Some(c.clone()),
        Store::File(_) => None,
    };
    if etcd_client.is_some() {
        let recorded = store
            .get(crate::api::BOOTSTRAP_TOKEN_KEY)
            .await
            .map_err(Fatal::from("bootstrap data"))?;
        let ours = sha256_hex(token_pw.as_bytes());
        match recorded {
            Some(h) if h != ours.as_bytes() => {
                return Err(Fatal(
                    "bootstrap data already found and encrypted with different token".into(),
                ))
            }
            None if rotated_check => {
                return Err(Fatal(
                    "bootstrap data already found and encrypted with different token".into(),
                ))
            }
            _ => {}
        }
        if rotated_check {
            write_token(&token_pw)?;
            info!("Server token updated to the cluster's rotated token");
        }
    }

    // --- node password ---
    let npw = node_password(&paths)?;
    if !api::check_node_password(&store, &node_name, &npw)
        .await
        .map_err(Fatal::from("node password"))?
    {
        return Err(Fatal(format!("Node password rejected, duplicate hostname or contents of '/etc/rancher/node/password' may not match server node-passwd entry, try enabling a unique node name with the --with-node-id flag ({node_name})")));
    }

    // --- serving cert, kubeconfig ---
    let serving = Serving::init(
        &store,
        tls_dir.clone(),
        server_ca.clone(),
        wanted_cns(&node_name, std::slice::from_ref(&ip), &cfg.list("tls-san")),
    )
    .await
    .map_err(Fatal::from("serving certificate"))?;
    // Like k3s (its certificate renewal at start): a client certificate expiring within 90 days, or one that
    // cannot be read, is issued again; the CA stays.
    let fresh =
        |ck: &CertKey| crate::pki::cert_seconds_left(&ck.cert).is_ok_and(|left| left > 90 * 86_400);
    let admin = match read_ck(&tls_dir, "client-admin").filter(fresh) {
        Some(ck) => ck,
        None => {
            let ck = client_ca
                .issue_client("system:admin", &["system:masters"])
                .map_err(Fatal::from("admin cert"))?;
            write_ck(&tls_dir, "client-admin", &ck)?;
            ck
        }
    };
    write_kubeconfig(&cfg, &paths, port, &server_ca, &admin)?;

    let cluster = Arc::new(Cluster {
        paths: paths.clone(),
        store: store.clone(),
        server_ca: server_ca.clone(),
        client_ca: client_ca.clone(),
        token_pw,
        agent_token_pw,
        critical: critical_config(&cfg),
        etcd: etcd_client,
        https_port: port,
    });

    // --- listener ---
    let bind = cfg.str("bind-address").unwrap_or_else(|| "0.0.0.0".into());
    let listener = tokio::net::TcpListener::bind((bind.as_str(), port))
        .await
        .map_err(Fatal::from(&format!("listen tcp {bind}:{port}")))?;
    let tls_cfg = server_tls(&client_ca, serving.resolver.clone())?;
    tokio::spawn(serve(listener, tls_cfg, api::router(cluster.clone())));
    info!("Running k3s supervisor and kube-apiserver subset on {bind}:{port}");

    // --- own node ---
    let node = server_node(&cfg, &node_name, &ip, port, member_name.as_deref());
    api::upsert_node(&store, node.clone())
        .await
        .map_err(Fatal::from("register node"))?;
    let serving = Arc::new(serving);
    {
        let (store, serving, node) = (store.clone(), serving.clone(), node.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                if let Err(e) = api::upsert_node(&store, refresh(node.clone())).await {
                    error!(
                        "Failed to update node {}: {e}",
                        node["metadata"]["name"].as_str().unwrap_or("")
                    );
                }
                if let Err(e) = serving.sync(&store).await {
                    error!("Failed to sync serving certificate: {e}");
                }
            }
        });
    }
    spawn_kubelet_healthz(&paths.localhost).await;
    crate::notify::notify("READY=1");
    info!("k3s is up and running");
    wait_for_end(etcd_child, &log_file).await
}

fn etcd_exit_error(log: &Path) -> Fatal {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if text.contains("permanently removed") || text.contains("member has been removed") {
        Fatal("etcd cluster join failed: the member has been permanently removed from the cluster; data-dir used by this member must be removed".into())
    } else {
        Fatal(format!("etcd exited; see {}", log.display()))
    }
}

async fn wait_for_end(child: Option<tokio::process::Child>, log: &Path) -> Result<(), Fatal> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).map_err(Fatal::from("signal"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(Fatal::from("signal"))?;
    match child {
        Some(mut child) => {
            tokio::select! {
                _ = term.recv() => { let _ = child.kill().await; info!("Received SIGTERM, shutting down"); Ok(()) }
                _ = int.recv() => { let _ = child.kill().await; Ok(()) }
                _ = child.wait() => Err(etcd_exit_error(log)),
            }
        }
        None => {
            tokio::select! {
                _ = term.recv() => { info!("Received SIGTERM, shutting down"); Ok(()) }
                _ = int.recv() => Ok(()),
            }
        }
    }
}

/// Join an existing etcd cluster: member list from `/db/info`, add as learner, start, promote.
async fn join_etcd(
    url: &str,
    token_pw: &str,
    ca: &CertKey,
    name: &str,
    ip: &str,
    paths: &Paths,
    log_file: &Path,
) -> Result<(tokio::process::Child, EtcdClient), Fatal> {
    let peer_url = format!("http://{ip}:2380");
    loop {
        let r = http::request(
            "GET",
            &format!("{url}/db/info"),
            &[basic("server", token_pw)],
            None,
            Some(&Tls::ca(&ca.cert, None)),
        )
        .await
        .map_err(|e| Fatal(format!("failed to get etcd member list from {url}: {e}")))?;
        if r.status != 200 {
            return Err(Fatal(format!(
                "failed to get etcd member list from {url}: {} {}",
                r.status,
                r.text()
            )));
        }
        let members = etcd::members_of(&serde_json::from_slice(&r.body).unwrap_or(Value::Null));
        let voters: Vec<String> = members
            .iter()
            .filter(|m| !m.is_learner)
            .flat_map(|m| m.client_urls.clone())
            .collect();
        let client = EtcdClient::new(voters);
        // A previous failed attempt may have left us in the list: remove it first.
        if let Some(stale) = members.iter().find(|m| m.peer_urls.contains(&peer_url)) {
            info!(
                "Removing stale etcd member {} ({peer_url}) before joining",
                stale.id
            );
            client
                .member_remove(stale.id)
                .await
                .map_err(Fatal::from("remove stale member"))?;
            continue;
        }
        info!(
            "Adding member {name}={peer_url} to etcd cluster [{}]",
            members
                .iter()
                .map(|m| format!("{}={}", m.name, m.peer_urls.join(",")))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let id = match client.member_add(&peer_url, true).await {
            Ok(id) => id,
            Err(e) => {
                error!("Failed to get etcd cluster membership: {e}");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        let mut initial: Vec<String> = members
            .iter()
            .filter(|m| !m.name.is_empty())
            .flat_map(|m| m.peer_urls.iter().map(move |p| format!("{}={p}", m.name)))
            .collect();
        initial.push(format!("{name}={peer_url}"));
        let opts = EtcdOpts {
            name: name.to_string(),
            data_dir: paths.db().join("etcd"),
            node_ip: ip.to_string(),
            localhost: paths.localhost.clone(),
            initial: Some((initial.join(","), "existing")),
            log_file: log_file.to_path_buf(),
            force_new_cluster: false,
        };
        let mut child = etcd::spawn(&opts).map_err(Fatal::from("starting etcd"))?;
        info!("Starting etcd to join cluster as learner, member name {name}");
        if let Some(delay) = promote_delay() {
            // Like k3s: the server comes up while its member is still a learner; the promotion happens later.
            return delayed_promotion(child, client, id, name, &peer_url, &opts, delay).await;
        }
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(etcd_exit_error(log_file));
            }
            match client.member_promote(id).await {
                Ok(()) => break,
                Err(e) => {
                    info!("Waiting for learner {name} to catch up before promotion: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        info!("Promoted etcd learner {name} to voting member");
        let mut eps = vec![opts.client_url()];
        eps.extend(client.endpoints().iter().cloned());
        if !etcd::wait_healthy(&opts.client_url(), Duration::from_secs(60)).await {
            return Err(Fatal("etcd did not become healthy after join".into()));
        }
        return Ok((child, EtcdClient::new(vec![opts.client_url()])));
    }
}

/// `K3S_SIM_PROMOTE_DELAY_SECS`: promote a joining learner only this long after the server is up (as k3s's
/// leader does asynchronously), instead of before READY. Unset or 0: promote before READY.
fn promote_delay() -> Option<Duration> {
    std::env::var("K3S_SIM_PROMOTE_DELAY_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// The learner is started; wait until etcd lists it as started, promote it in the background after `delay`, and
/// serve through the voters meanwhile (a learner answers no client requests).
async fn delayed_promotion(
    mut child: tokio::process::Child,
    client: EtcdClient,
    id: u64,
    name: &str,
    peer_url: &str,
    opts: &EtcdOpts,
    delay: Duration,
) -> Result<(tokio::process::Child, EtcdClient), Fatal> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return Err(etcd_exit_error(&opts.log_file));
        }
        if let Ok(ms) = client.member_list().await {
            if ms
                .iter()
                .any(|m| m.peer_urls.iter().any(|p| p == peer_url) && !m.name.is_empty())
            {
                break;
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(Fatal("the etcd learner did not start".into()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let promoter = client.clone();
    let learner = name.to_string();
    info!("etcd learner {learner} started; promotion in {delay:?}");
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        loop {
            match promoter.member_promote(id).await {
                Ok(()) => break,
                Err(e) => {
                    info!("Waiting for learner {learner} to catch up before promotion: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        info!("Promoted etcd learner {learner} to voting member");
    });
    let mut eps: Vec<String> = client.endpoints().to_vec();
    eps.push(opts.client_url());
    Ok((child, EtcdClient::new(eps)))
}

fn write_kubeconfig(
    cfg: &Config,
    paths: &Paths,
    port: u16,
    ca: &CertKey,
    admin: &CertKey,
) -> Result<(), Fatal> {
    use base64::Engine;
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let text = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: https://{}:{}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {{}}\nusers:\n- name: default\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b(&ca.cert), paths.localhost, port, b(&admin.cert), b(&admin.key)
    );
    let path = match cfg.str("write-kubeconfig") {
        Some(p) => paths.host(&p),
        None => paths.etc().join("k3s.yaml"),
    };
    let mode = cfg
        .str("write-kubeconfig-mode")
        .and_then(|m| u32::from_str_radix(m.trim_start_matches("0o"), 8).ok())
        .unwrap_or(0o600);
    write_file(&path, text.as_bytes(), mode).map_err(Fatal::from("write kubeconfig"))?;
    info!("Wrote kubeconfig {}", path.display());
    Ok(())
}

fn server_tls(
    client_ca: &CertKey,
    resolver: Arc<crate::serving::DynResolver>,
) -> Result<Arc<rustls::ServerConfig>, Fatal> {
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::pki::pem_certs(&client_ca.cert).map_err(Fatal::from("client CA"))? {
        roots.add(c).map_err(Fatal::from("client CA"))?;
    }
    let provider = http::provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(Fatal::from("client verifier"))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Fatal::from("tls"))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serve TLS connections on `listener` with `router`, passing each connection's verified client identity.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: axum::Router,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, remote)) = listener.accept().await else {
            continue;
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let cert = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|d| subject_of(d));
            let peer = Peer { cert, remote };
            let svc = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(peer.clone());
                    router.clone().oneshot(req)
                },
            );
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// The Node document a node posts for itself (servers and agents).
pub fn node_doc(
    name: &str,
    ip: &str,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    taints: &[String],
) -> Value {
    let now = crate::log::now_rfc3339();
    let taints: Vec<Value> = taints
        .iter()
        .filter_map(|t| {
            let (kv, effect) = t.rsplit_once(':')?;
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some(json!({"key": k, "value": v, "effect": effect}))
        })
        .collect();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut spec = json!({"podCIDR": "10.42.0.0/24", "providerID": format!("k3s://{name}")});
    if !taints.is_empty() {
        spec["taints"] = json!(taints);
    }
    json!({
        "kind": "Node", "apiVersion": "v1",
        "metadata": {"name": name, "labels": labels, "annotations": annotations},
        "spec": spec,
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "nodeInfo": {"kubeletVersion": crate::VERSION, "kubeProxyVersion": crate::VERSION,
                "osImage": "k3s-sim lab host", "kernelVersion": kernel.trim(), "operatingSystem": "linux",
                "architecture": "amd64", "containerRuntimeVersion": "containerd://1.7.23-k3s-sim"},
        }
    })
}

/// Refresh the heartbeat time of a Node document.
pub fn refresh(mut node: Value) -> Value {
    let now = crate::log::now_rfc3339();
    if let Some(c) = node["status"]["conditions"].as_array_mut() {
        for c in c.iter_mut() {
            c["lastHeartbeatTime"] = json!(now);
        }
    }
    node
}

/// The kubelet refuses to start with `--node-labels` it may not set (its error, as the kubelet words it).
pub fn check_node_labels(cfg: &Config) -> Result<(), Fatal> {
    let bad: Vec<String> = cfg
        .list("node-label")
        .into_iter()
        .map(|kv| kv.split_once('=').map(|(k, _)| k.to_string()).unwrap_or(kv))
        .filter(|k| !kubelet_may_set(k))
        .collect();
    if bad.is_empty() {
        return Ok(());
    }
    Err(Fatal(format!(
        "unknown 'kubernetes.io' or 'k8s.io' labels specified with --node-labels: [{}]; --node-labels in the \
         'kubernetes.io' namespace must begin with an allowed prefix (kubelet.kubernetes.io, node.kubernetes.io) \
         or be in the specifically allowed set",
        bad.join(" ")
    )))
}

/// Labels common to every node plus `--node-label`s.
pub fn base_labels(cfg: &Config, name: &str) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("kubernetes.io/hostname".into(), name.to_string());
    l.insert("kubernetes.io/os".into(), "linux".into());
    l.insert("kubernetes.io/arch".into(), "amd64".into());
    l.insert("beta.kubernetes.io/os".into(), "linux".into());
    l.insert("beta.kubernetes.io/arch".into(), "amd64".into());
    l.insert("node.kubernetes.io/instance-type".into(), "k3s".into());
    for kv in cfg.list("node-label") {
        let (k, v) = kv.split_once('=').unwrap_or((&kv, ""));
        l.insert(k.to_string(), v.to_string());
    }
    l
}

fn server_node(cfg: &Config, name: &str, ip: &str, port: u16, member: Option<&str>) -> Value {
    let mut labels = base_labels(cfg, name);
    labels.insert(
        "node-role.kubernetes.io/control-plane".into(),
        "true".into(),
    );
    labels.insert("node-role.kubernetes.io/master".into(), "true".into());
    let mut ann = BTreeMap::new();
    ann.insert("k3s-sim/https-port".to_string(), port.to_string());
    ann.insert("k3s.io/internal-ip".to_string(), ip.to_string());
    if let Some(m) = member {
        labels.insert("node-role.kubernetes.io/etcd".into(), "true".into());
        ann.insert("etcd.k3s.cattle.io/node-name".into(), m.to_string());
        ann.insert("etcd.k3s.cattle.io/node-address".into(), ip.to_string());
    }
    node_doc(name, ip, labels, ann, &cfg.list("node-taint"))
}

/// The kubelet's `http://127.0.0.1:10248/healthz` ("ok"), which the provider polls on agents. There is no
/// kubelet in the stand-in; the endpoint answers once the node has registered.
pub async fn spawn_kubelet_healthz(localhost: &str) {
    let addr = format!("{localhost}:10248");
    match tokio::net::TcpListener::bind(&addr).await {
        Ok(l) => {
            let router =
                axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
            tokio::spawn(async move {
                let _ = axum::serve(l, router).await;
            });
        }
        Err(e) => warn!("kubelet healthz on {addr}: {e}"),
    }
}

/// The "critical" settings that must be equal on every server (k3s.md §2.1), normalised for comparison.
pub fn critical_config(cfg: &Config) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for k in ["cluster-cidr", "service-cidr", "cluster-dns"] {
        m.insert(k.to_string(), cfg.list(k).join(","));
    }
    for k in [
        "cluster-domain",
        "flannel-backend",
        "egress-selector-mode",
        "secrets-encryption-provider",
    ] {
        m.insert(k.to_string(), cfg.str(k).unwrap_or_default());
    }
    for k in [
        "disable-cloud-controller",
        "disable-helm-controller",
        "disable-network-policy",
        "embedded-registry",
        "flannel-ipv6-masq",
        "flannel-external-ip",
        "secrets-encryption",
    ] {
        m.insert(k.to_string(), cfg.bool(k).to_string());
    }
    m.insert(
        "disable=servicelb".into(),
        cfg.list("disable")
            .iter()
            .any(|d| d == "servicelb")
            .to_string(),
    );
    m.insert(
        "agent-token".into(),
        cfg.str("agent-token")
            .map(|t| sha256_hex(parse_token(&t).password.as_bytes()))
            .unwrap_or_default(),
    );
    m
}

/// Unused-address guard for tests: is `addr` accepting connections?
pub async fn is_listening(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_ok()
}
