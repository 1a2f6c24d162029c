//! The sticky serving certificate on `:6443` (what dynamiclistener does in k3s, as users experience it).
//!
//! The certificate's SANs ("CNs") are kept in two places: the shared Secret `kube-system/k3s-serving` in the
//! datastore (one for the whole cluster, every server merges into it) and the per-server disk cache
//! `server/tls/dynamic-cert.json` (a JSON `v1.Secret`, mode 0600). The rules we reproduce, from k3s.md §2.4 and the
//! seed's story:
//! - A server **with a cache** serves the cached CN list merged with the Secret's on restart; a `tls-san` added to
//!   `config.yaml` since the cache was written does **not** reach the certificate. That is the surprise users
//!   report (k3s-io/k3s#2856, #3369, #4149, #12500 and the seed's `x509: certificate is valid for …, not <VIP>`).
//! - A server **without a cache** (first start, or the cache moved aside) builds its list from the Secret (if any)
//!   plus its own addresses and configured `tls-san`s. So deleting the Secret and moving the cache aside, then
//!   restarting, is the cure, and the only way to *drop* a SAN.
//! - Lists only grow (union). Running servers pick up other servers' additions from the Secret.
//! - A deleted Secret is not re-created by a running server until its own certificate changes (otherwise the
//!   seed's delete-then-restart cure could not work).
//! - `k3s certificate rotate` leaves `dynamic-cert-regenerate`; the next start re-signs the *old* list plus the
//!   configured SANs (adds, never drops) and removes the trigger.
//!
//! CN lists are sorted like dynamiclistener sorts them, so `x509` errors list IPs in the same order as on k3s.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use base64::Engine;
use serde_json::{json, Value};

use crate::pki::{cert_sans, sha256_hex, CertKey, PkiError};
use crate::store::{Store, StoreError};

/// Datastore key of the shared Secret.
pub const SECRET_KEY: &str = "/registry/secrets/kube-system/k3s-serving";

/// A serving-cert error.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// PKI.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// Datastore.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Disk.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// TLS key material.
    #[error("tls: {0}")]
    Tls(String),
}

/// The annotation key dynamiclistener uses for a CN.
pub fn annotation_key(cn: &str) -> String {
    let k = format!("listener.cattle.io/cn-{}", cn.replace(':', "_"));
    if k.len() < 64 && !cn.contains('*') {
        k
    } else {
        format!("listener.cattle.io/cn-{}", &sha256_hex(cn.as_bytes())[..40])
    }
}

/// The CNs recorded in a Secret's annotations.
pub fn secret_cns(secret: &Value) -> BTreeSet<String> {
    secret["metadata"]["annotations"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with("listener.cattle.io/cn-"))
                .filter_map(|(_, v)| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn b64(v: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}
fn b64d(v: &Value) -> Option<String> {
    v.as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Build the `v1.Secret` document for a cert and its CN list.
pub fn to_secret(ck: &CertKey, cns: &BTreeSet<String>) -> Value {
    let mut ann = serde_json::Map::new();
    for cn in cns {
        ann.insert(annotation_key(cn), json!(cn));
    }
    ann.insert(
        "listener.cattle.io/fingerprint".into(),
        json!(format!(
            "SHA256={}",
            sha256_hex(ck.cert.as_bytes()).to_uppercase()
        )),
    );
    json!({
        "kind": "Secret",
        "apiVersion": "v1",
        "metadata": {
            "name": "k3s-serving",
            "namespace": "kube-system",
            "creationTimestamp": crate::log::now_rfc3339(),
            "annotations": ann,
        },
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(&ck.cert), "tls.key": b64(&ck.key)},
    })
}

fn from_secret(v: &Value) -> Option<CertKey> {
    Some(CertKey {
        cert: b64d(&v["data"]["tls.crt"])?,
        key: b64d(&v["data"]["tls.key"])?,
    })
}

/// rustls resolver whose certificate can be swapped while serving.
#[derive(Debug)]
pub struct DynResolver(RwLock<Arc<rustls::sign::CertifiedKey>>);

impl rustls::server::ResolvesServerCert for DynResolver {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.0.read().ok().map(|g| g.clone())
    }
}

fn certified(ck: &CertKey, ca: &CertKey) -> Result<Arc<rustls::sign::CertifiedKey>, ServingError> {
    let mut chain = crate::pki::pem_certs(&ck.cert)?;
    chain.extend(crate::pki::pem_certs(&ca.cert)?);
    let key = rustls_pemfile::private_key(&mut ck.key.as_bytes())
        .map_err(|e| ServingError::Tls(e.to_string()))?
        .ok_or_else(|| ServingError::Tls("no key".into()))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| ServingError::Tls(e.to_string()))?;
    Ok(Arc::new(rustls::sign::CertifiedKey::new(chain, signer)))
}

/// The live serving certificate of one server.
pub struct Serving {
    /// The rustls resolver (shared with the listener).
    pub resolver: Arc<DynResolver>,
    ca: CertKey,
    cache: PathBuf,
    current: tokio::sync::Mutex<(CertKey, BTreeSet<String>)>,
}

/// The default CNs k3s puts on the supervisor cert, plus this server's addresses and configured SANs.
pub fn wanted_cns(node_name: &str, node_ips: &[String], tls_sans: &[String]) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        "::1",
        "10.43.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    s.insert(node_name.to_string());
    s.extend(node_ips.iter().cloned());
    s.extend(tls_sans.iter().cloned());
    s
}

fn cns_of_cert(ck: &CertKey) -> BTreeSet<String> {
    cert_sans(&ck.cert)
        .map(|v| v.into_iter().collect())
        .unwrap_or_default()
}

impl Serving {
    /// Decide this start's certificate (see the module docs), write cache and Secret.
    pub async fn init(
        store: &Store,
        tls_dir: PathBuf,
        ca: CertKey,
        wanted: BTreeSet<String>,
    ) -> Result<Serving, ServingError> {
        let cache_path = tls_dir.join("dynamic-cert.json");
        let trigger = tls_dir.join("dynamic-cert-regenerate");
        let cached: Option<Value> = std::fs::read(&cache_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let secret = store.get_json(SECRET_KEY).await?;
        let regenerate = trigger.exists();
        let mut cns: BTreeSet<String> = BTreeSet::new();
        if let Some(c) = &cached {
            cns.extend(secret_cns(c));
        }
        if let Some(s) = &secret {
            cns.extend(secret_cns(s));
        }
        if cached.is_none() || regenerate {
            cns.extend(wanted);
        }
        // Reuse the cached/secret cert when its CNs already cover the list and it was issued by our CA.
        let reusable = cached
            .iter()
            .chain(secret.iter())
            .filter_map(from_secret)
            .find(|ck| cns_of_cert(ck) == cns && issued_by(ck, &ca));
        let ck = match (reusable, regenerate) {
            (Some(ck), false) => ck,
            _ => ca.issue_server("k3s", &ordered(&cns))?,
        };
        if regenerate {
            let _ = std::fs::remove_file(&trigger);
            crate::info!("Regenerating serving certificate (dynamic-cert-regenerate found)");
        }
        let s = Serving {
            resolver: Arc::new(DynResolver(RwLock::new(certified(&ck, &ca)?))),
            ca,
            cache: cache_path,
            current: tokio::sync::Mutex::new((ck.clone(), cns.clone())),
        };
        let doc = to_secret(&ck, &cns);
        crate::paths::write_file(&s.cache, doc.to_string().as_bytes(), 0o600)?;
        let secret_matches = secret
            .as_ref()
            .map(|v| secret_cns(v) == cns && from_secret(v).as_ref() == Some(&ck))
            .unwrap_or(false);
        if !secret_matches {
            store.put_json(SECRET_KEY, &doc).await?;
        }
        crate::info!("Serving certificate SANs: [{}]", ordered(&cns).join(" "));
        Ok(s)
    }

    /// Merge additions other servers made to the Secret (union only; a missing Secret is left missing).
    pub async fn sync(&self, store: &Store) -> Result<(), ServingError> {
        let Some(secret) = store.get_json(SECRET_KEY).await? else {
            return Ok(());
        };
        let theirs = secret_cns(&secret);
        let mut cur = self.current.lock().await;
        if theirs.is_subset(&cur.1) {
            if !cur.1.is_subset(&theirs) {
                // We know more than the Secret: write our union back.
                store
                    .put_json(SECRET_KEY, &to_secret(&cur.0, &cur.1))
                    .await?;
            }
            return Ok(());
        }
        let mut cns = cur.1.clone();
        cns.extend(theirs);
        let ck = match from_secret(&secret) {
            Some(ck) if cns_of_cert(&ck) == cns && issued_by(&ck, &self.ca) => ck,
            _ => self.ca.issue_server("k3s", &ordered(&cns))?,
        };
        let doc = to_secret(&ck, &cns);
        crate::paths::write_file(&self.cache, doc.to_string().as_bytes(), 0o600)?;
        if secret_cns(&secret) != cns {
            store.put_json(SECRET_KEY, &doc).await?;
        }
        if let Ok(mut g) = self.resolver.0.write() {
            *g = certified(&ck, &self.ca)?;
        }
        crate::info!(
            "Updated serving certificate SANs: [{}]",
            ordered(&cns).join(" ")
        );
        *cur = (ck, cns);
        Ok(())
    }
}

fn issued_by(ck: &CertKey, ca: &CertKey) -> bool {
    let (Ok(leaf), Ok(cas)) = (
        crate::pki::pem_certs(&ck.cert),
        crate::pki::pem_certs(&ca.cert),
    ) else {
        return false;
    };
    let (Some(leaf), Some(ca)) = (leaf.first(), cas.first()) else {
        return false;
    };
    let (Ok((_, l)), Ok((_, c))) = (
        x509_parser::parse_x509_certificate(leaf),
        x509_parser::parse_x509_certificate(ca),
    ) else {
        return false;
    };
    // The CA's subject carries its creation time, so issuer == subject identifies it.
    l.issuer().as_raw() == c.subject().as_raw() && l.validity().is_valid()
}

/// CNs in certificate order: sorted, as dynamiclistener sorts them.
pub fn ordered(cns: &BTreeSet<String>) -> Vec<String> {
    cns.iter().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FileStore;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn new_tls_san_is_sticky_until_secret_and_cache_go() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let store = Store::File(FileStore::open(dir.path().join("state.db")).unwrap());
        let ca = CertKey::new_ca("k3s-server-ca").unwrap();
        let first = Serving::init(
            &store,
            tls.clone(),
            ca.clone(),
            wanted_cns("n1", &["10.0.3.2".into()], &[]),
        )
        .await
        .unwrap();
        let sans = cns_of_cert(&first.current.lock().await.0);
        assert!(sans.contains("10.0.3.2") && !sans.contains("10.0.3.100"));
        // Restart with a new tls-san: not added.
        let vip = ["10.0.3.100".to_string()];
        let again = Serving::init(
            &store,
            tls.clone(),
            ca.clone(),
            wanted_cns("n1", &["10.0.3.2".into()], &vip),
        )
        .await
        .unwrap();
        assert!(!cns_of_cert(&again.current.lock().await.0).contains("10.0.3.100"));
        // The cure: delete the Secret, move the cache aside, restart.
        store.delete(SECRET_KEY).await.unwrap();
        std::fs::rename(tls.join("dynamic-cert.json"), dir.path().join("aside.json")).unwrap();
        let cured = Serving::init(
            &store,
            tls.clone(),
            ca.clone(),
            wanted_cns("n1", &["10.0.3.2".into()], &vip),
        )
        .await
        .unwrap();
        assert!(cns_of_cert(&cured.current.lock().await.0).contains("10.0.3.100"));
        // Rotation trigger re-signs the old list plus the configured SANs.
        std::fs::write(tls.join("dynamic-cert-regenerate"), "").unwrap();
        let rot = Serving::init(
            &store,
            tls.clone(),
            ca.clone(),
            wanted_cns("n1", &["10.0.3.2".into()], &["x.lan".into()]),
        )
        .await
        .unwrap();
        let got = cns_of_cert(&rot.current.lock().await.0);
        assert!(got.is_superset(&set(&["10.0.3.100", "x.lan", "10.0.3.2"])));
        assert!(!tls.join("dynamic-cert-regenerate").exists());
    }

    #[tokio::test]
    async fn sync_merges_other_servers_sans() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::File(FileStore::open(dir.path().join("state.db")).unwrap());
        let ca = CertKey::new_ca("k3s-server-ca").unwrap();
        let a = Serving::init(
            &store,
            dir.path().join("a"),
            ca.clone(),
            wanted_cns("a", &["10.0.3.2".into()], &[]),
        )
        .await
        .unwrap();
        let _b = Serving::init(
            &store,
            dir.path().join("b"),
            ca.clone(),
            wanted_cns("b", &["10.0.3.7".into()], &[]),
        )
        .await
        .unwrap();
        a.sync(&store).await.unwrap();
        let got = cns_of_cert(&a.current.lock().await.0);
        assert!(got.contains("10.0.3.7") && got.contains("10.0.3.2"));
        assert_eq!(annotation_key("::1"), "listener.cattle.io/cn-__1");
    }
}
