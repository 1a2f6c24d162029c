//! A per-cluster serialising lock inside the provider process.
//!
//! Terraform runs independent resources in parallel (10 at a time by default), but k3s servers must join,
//! restart, upgrade and leave one at a time: etcd admits a single learner, and restarting a majority at once
//! loses quorum. Every server of one cluster shares the same token password (the part after `::server:` of the
//! secure token, or the whole short token of the first server), so that password keys the lock. The key is only
//! held in memory (hashed with the std hasher), never logged.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::OwnedMutexGuard;

use super::node::token_password;

fn locks() -> &'static Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>> {
    static LOCKS: OnceLock<Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    LOCKS.get_or_init(Default::default)
}

/// The lock key of the cluster a token belongs to (short or secure form give the same key).
pub fn cluster_key(token: &str) -> u64 {
    let mut h = DefaultHasher::new();
    token_password(token).hash(&mut h);
    h.finish()
}

/// Waits for and takes the cluster's lock; released when the guard drops.
pub async fn cluster_lock(token: &str) -> OwnedMutexGuard<()> {
    let key = cluster_key(token);
    let m = {
        let mut map = locks().lock().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().clone()
    };
    m.lock_owned().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn short_and_secure_forms_share_a_key() {
        assert_eq!(
            cluster_key("s3cret"),
            cluster_key("K10abcdef::server:s3cret")
        );
        assert_ne!(cluster_key("s3cret"), cluster_key("other"));
    }

    #[tokio::test]
    async fn holders_of_one_cluster_are_serialised_others_are_not() {
        let g = cluster_lock("pw").await;
        let blocked =
            tokio::time::timeout(Duration::from_millis(50), cluster_lock("K10aa::server:pw")).await;
        assert!(blocked.is_err(), "same cluster must wait");
        let other = tokio::time::timeout(Duration::from_millis(50), cluster_lock("another")).await;
        assert!(other.is_ok(), "another cluster must not wait");
        drop(g);
        let after = tokio::time::timeout(Duration::from_millis(50), cluster_lock("pw")).await;
        assert!(after.is_ok());
    }
}
