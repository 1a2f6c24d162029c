//! The datastore: a single-server file store, or the real etcd through its JSON gateway.
//!
//! k3s keeps the cluster (nodes, secrets, bootstrap data) in kine/sqlite for a single server and in embedded etcd
//! with `--cluster-init`. What matters to the provider is *which* one a node uses (files on disk, `/db/info`),
//! that HA membership, quorum and member removal are real, and that converting sqlite to etcd keeps the objects.
//! So the single-server store is an honest JSON document (kept at `server/db/state.db`, the path the provider
//! probes for "sqlite"; it is not SQLite) and the HA store is a real etcd 3.4 reached over its `/v3` JSON gateway.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use tokio::sync::Mutex;

use crate::etcd::EtcdClient;

/// A datastore error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// File store I/O.
    #[error("datastore file: {0}")]
    Io(#[from] std::io::Error),
    /// etcd said no or could not be reached.
    #[error("etcd: {0}")]
    Etcd(String),
    /// Stored data is not what we wrote.
    #[error("datastore corrupt: {0}")]
    Corrupt(String),
}

impl From<crate::etcd::EtcdError> for StoreError {
    fn from(e: crate::etcd::EtcdError) -> Self {
        StoreError::Etcd(e.0)
    }
}

/// The single-server store: a JSON object of base64 values, rewritten atomically on every change.
#[derive(Clone)]
pub struct FileStore {
    path: PathBuf,
    data: Arc<Mutex<BTreeMap<String, String>>>,
}

impl FileStore {
    /// Open (or create) the store at `path`.
    pub fn open(path: PathBuf) -> Result<FileStore, StoreError> {
        let data = if path.exists() {
            let text = std::fs::read_to_string(&path)?;
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?
        } else {
            BTreeMap::new()
        };
        let s = FileStore {
            path,
            data: Arc::new(Mutex::new(data)),
        };
        Ok(s)
    }

    fn save(&self, data: &BTreeMap<String, String>) -> Result<(), StoreError> {
        let text =
            serde_json::to_vec_pretty(data).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        crate::paths::write_file(&self.path, &text, 0o600)?;
        Ok(())
    }

    /// Every key and value (migration to etcd).
    pub async fn dump(&self) -> Vec<(String, Vec<u8>)> {
        let d = self.data.lock().await;
        d.iter()
            .filter_map(|(k, v)| b64d(v).map(|v| (k.clone(), v)))
            .collect()
    }
}

fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}
fn b64d(v: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(v).ok()
}

/// The datastore of one server.
#[derive(Clone)]
pub enum Store {
    /// Single server.
    File(FileStore),
    /// Embedded (real) etcd.
    Etcd(EtcdClient),
}

impl Store {
    /// Read a key.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::File(f) => Ok(f.data.lock().await.get(key).and_then(|v| b64d(v))),
            Store::Etcd(e) => Ok(e
                .range(key, false)
                .await?
                .into_iter()
                .next()
                .map(|(_, v)| v)),
        }
    }

    /// Write a key.
    pub async fn put(&self, key: &str, val: &[u8]) -> Result<(), StoreError> {
        match self {
            Store::File(f) => {
                let mut d = f.data.lock().await;
                d.insert(key.to_string(), b64(val));
                f.save(&d)
            }
            Store::Etcd(e) => Ok(e.put(key, val).await?),
        }
    }

    /// Delete a key; true if it existed.
    pub async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        match self {
            Store::File(f) => {
                let mut d = f.data.lock().await;
                let had = d.remove(key).is_some();
                if had {
                    f.save(&d)?;
                }
                Ok(had)
            }
            Store::Etcd(e) => Ok(e.delete(key).await?),
        }
    }

    /// All keys under `prefix`, sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        match self {
            Store::File(f) => Ok(f
                .data
                .lock()
                .await
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .filter_map(|(k, v)| b64d(v).map(|v| (k.clone(), v)))
                .collect()),
            Store::Etcd(e) => Ok(e.range(prefix, true).await?),
        }
    }

    /// Read a JSON document.
    pub async fn get_json(&self, key: &str) -> Result<Option<serde_json::Value>, StoreError> {
        match self.get(key).await? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StoreError::Corrupt(format!("{key}: {e}"))),
        }
    }

    /// Write a JSON document.
    pub async fn put_json(&self, key: &str, v: &serde_json::Value) -> Result<(), StoreError> {
        let b = serde_json::to_vec(v).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        self.put(key, &b).await
    }

    /// All JSON documents under `prefix`.
    pub async fn list_json(&self, prefix: &str) -> Result<Vec<serde_json::Value>, StoreError> {
        Ok(self
            .list(prefix)
            .await?
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_slice(&v).ok())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_persists_and_lists_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("db/state.db");
        let s = Store::File(FileStore::open(p.clone()).unwrap());
        s.put("/registry/minions/a", b"1").await.unwrap();
        s.put("/registry/minions/b", b"2").await.unwrap();
        s.put("/registry/secrets/x", b"3").await.unwrap();
        assert!(s.delete("/registry/minions/b").await.unwrap());
        let s2 = Store::File(FileStore::open(p).unwrap());
        let l = s2.list("/registry/minions/").await.unwrap();
        assert_eq!(l, vec![("/registry/minions/a".to_string(), b"1".to_vec())]);
        assert_eq!(s2.get("/registry/secrets/x").await.unwrap().unwrap(), b"3");
    }
}
