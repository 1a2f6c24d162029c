//! The reconfigure coalescer: many resources' writes, one "go live" per batch.
//!
//! Why: a HAProxy reconfigure is a (by default hard) reload that drops every connection, and overlapping configd
//! actions interleave badly (browningluke#163). Terraform applies resources in parallel, each in its own RPC, and
//! each must return only once its change is live. So every write registers here; a single runner task waits for a
//! short quiet period, then takes the batch and deploys it once (for HAProxy: configtest → reconfigure).
//!
//! Why batches are bounded by Terraform's parallelism: Terraform holds one of its `parallelism` (default 10) slots
//! for a resource's whole node execution, `ApplyResourceChange` included (`ContextGraphWalker.Execute`), and a
//! resource returns only once its change is live. So at most `parallelism` changes can wait for one deploy, and K
//! changes that need a reload at one dependency level need at least ⌈K/parallelism⌉ deploys. To reach that bound
//! even when Terraform dispatches the slots slowly (a loaded machine), resources announce a planned change when
//! Terraform re-plans them in the apply walk ([`Coalescer::expect`]), right before applying, and a batch waits for
//! announced writes (bounded by `max_wait`). Changes haproxy can take at runtime (server weights) skip the deploy
//! altogether (see `Client::haproxy_put`).
//!
//! Exactness: writers hold a shared permit of a gate while writing; the runner takes the gate exclusively while it
//! deploys. A batch therefore contains exactly the writes saved before its configtest, no write lands between
//! configtest and reconfigure, and a failed batch can be reverted before anyone writes again.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{oneshot, OwnedRwLockReadGuard, RwLock};
use uuid::Uuid;

use super::error::{Error, Result};
use super::haproxy::Kind;

/// What a change touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Haproxy(Kind, Uuid),
    HaproxySettings,
    Other(&'static str, Uuid),
}

/// How to undo a saved change that could not be deployed: one POST (a `set` with the previous object — an upsert,
/// so it also recreates a deleted one — or a `del` of a created one).
#[derive(Debug, Clone, PartialEq)]
pub enum Revert {
    Nothing,
    Post { path: String, body: Value },
}

#[derive(Debug, Clone)]
pub struct Change {
    pub target: Target,
    pub revert: Revert,
}

/// Deploys a batch. Returns one result per change, in order.
#[async_trait::async_trait]
pub trait Deployer: Send + Sync + 'static {
    async fn deploy(&self, batch: &[Change]) -> Vec<Result<()>>;
}

/// Batching parameters.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Start the batch once no new change arrived for this long.
    pub quiet: Duration,
    /// Never wait longer than this after the first change of a batch.
    pub max_wait: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            quiet: Duration::from_millis(150),
            max_wait: Duration::from_secs(2),
        }
    }
}

#[derive(Clone)]
pub struct Coalescer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("batches", &self.batches())
            .finish_non_exhaustive()
    }
}

struct Inner {
    gate: Arc<RwLock<()>>,
    pending: Mutex<Pending>,
    deployer: Arc<dyn Deployer>,
    timing: Timing,
    batches: AtomicU64,
    /// Writes announced by [`Coalescer::expect`] that have not arrived yet.
    expected: AtomicUsize,
}

#[derive(Default)]
struct Pending {
    items: Vec<(Change, oneshot::Sender<Result<()>>)>,
    running: bool,
}

/// Held while writing; turn it into a [`Ticket`] with [`WritePermit::commit`] once the write is saved.
pub struct WritePermit {
    inner: Arc<Inner>,
    _guard: OwnedRwLockReadGuard<()>,
}

/// Resolves once the committed change is live (or its batch failed).
pub struct Ticket {
    rx: oneshot::Receiver<Result<()>>,
}

impl Coalescer {
    pub fn new(deployer: Arc<dyn Deployer>, timing: Timing) -> Self {
        Coalescer {
            inner: Arc::new(Inner {
                gate: Arc::new(RwLock::new(())),
                pending: Mutex::new(Pending::default()),
                deployer,
                timing,
                batches: AtomicU64::new(0),
                expected: AtomicUsize::new(0),
            }),
        }
    }

    /// Wait until no batch is deploying, then allow one write.
    pub async fn begin(&self) -> WritePermit {
        WritePermit {
            inner: self.inner.clone(),
            _guard: self.inner.gate.clone().read_owned().await,
        }
    }

    /// Announce a write that is about to come (Terraform planned a change and will apply it next): the batch being
    /// collected waits for it (up to `max_wait`) instead of deploying without it.
    pub fn expect(&self) {
        self.inner.expected.fetch_add(1, Ordering::SeqCst);
    }

    /// An announced write has arrived (or will not come). Never goes below zero.
    pub fn arrived(&self) {
        let _ = self
            .inner
            .expected
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Batches deployed so far.
    pub fn batches(&self) -> u64 {
        self.inner.batches.load(Ordering::SeqCst)
    }
}

impl WritePermit {
    /// Register the saved change; the permit is released so the batch can start.
    pub fn commit(self, change: Change) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let spawn = {
            let mut p = self.inner.pending.lock().unwrap();
            p.items.push((change, tx));
            !std::mem::replace(&mut p.running, true)
        };
        if spawn {
            tokio::spawn(run(self.inner.clone()));
        }
        Ticket { rx }
    }
}

impl Ticket {
    pub async fn live(self) -> Result<()> {
        self.rx.await.unwrap_or_else(|_| {
            Err(Error::Service {
                service: "coalescer",
                message: "the deploy task stopped before finishing".into(),
            })
        })
    }
}

/// Resets `running` if the runner ends in any way (including a panic in a deployer).
struct RunningGuard {
    inner: Arc<Inner>,
    armed: bool,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut p = self.inner.pending.lock().unwrap();
        p.running = false;
        // Anything left is failed rather than left hanging.
        for (_, tx) in p.items.drain(..) {
            let _ = tx.send(Err(Error::Service {
                service: "coalescer",
                message: "the deploy task stopped".into(),
            }));
        }
    }
}

async fn run(inner: Arc<Inner>) {
    let mut guard = RunningGuard {
        inner: inner.clone(),
        armed: true,
    };
    loop {
        let len = || inner.pending.lock().unwrap().items.len();
        let start = Instant::now();
        let mut last = len();
        loop {
            tokio::time::sleep(inner.timing.quiet).await;
            let now = len();
            let announced = inner.expected.load(Ordering::SeqCst) > 0;
            if (now == last && !announced) || start.elapsed() >= inner.timing.max_wait {
                break;
            }
            last = now;
        }
        let gate = inner.gate.write().await;
        let batch = {
            let mut p = inner.pending.lock().unwrap();
            if p.items.is_empty() {
                p.running = false;
                guard.armed = false;
                return;
            }
            std::mem::take(&mut p.items)
        };
        let (changes, senders): (Vec<Change>, Vec<_>) = batch.into_iter().unzip();
        tracing::debug!(changes = changes.len(), "deploying a batch");
        let mut results = inner.deployer.deploy(&changes).await;
        inner.batches.fetch_add(1, Ordering::SeqCst);
        drop(gate);
        results.resize_with(senders.len(), || {
            Err(Error::Service {
                service: "coalescer",
                message: "no result for this change".into(),
            })
        });
        for (tx, r) in senders.into_iter().zip(results) {
            let _ = tx.send(r);
        }
        let mut p = inner.pending.lock().unwrap();
        if p.items.is_empty() {
            p.running = false;
            guard.armed = false;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Recorder {
        batches: Mutex<Vec<usize>>,
        fail: bool,
        inside: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Deployer for Recorder {
        async fn deploy(&self, batch: &[Change]) -> Vec<Result<()>> {
            self.inside.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.batches.lock().unwrap().push(batch.len());
            self.inside.fetch_sub(1, Ordering::SeqCst);
            batch
                .iter()
                .map(|_| {
                    if self.fail {
                        Err(Error::ConfigTest {
                            output: "[ALERT] bad".into(),
                        })
                    } else {
                        Ok(())
                    }
                })
                .collect()
        }
    }

    fn change() -> Change {
        Change {
            target: Target::HaproxySettings,
            revert: Revert::Nothing,
        }
    }

    fn timing() -> Timing {
        Timing {
            quiet: Duration::from_millis(40),
            max_wait: Duration::from_millis(400),
        }
    }

    #[tokio::test]
    async fn concurrent_changes_share_one_deploy() {
        let rec = Arc::new(Recorder {
            batches: Mutex::new(vec![]),
            fail: false,
            inside: AtomicUsize::new(0),
        });
        let co = Coalescer::new(rec.clone(), timing());
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let co = co.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(i)).await;
                    let p = co.begin().await;
                    tokio::time::sleep(Duration::from_millis(5)).await; // the write
                    p.commit(change()).live().await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert_eq!(*rec.batches.lock().unwrap(), vec![20]);
        assert_eq!(co.batches(), 1);
    }

    #[tokio::test]
    async fn writes_during_a_deploy_go_to_the_next_batch_and_failures_reach_everyone() {
        let rec = Arc::new(Recorder {
            batches: Mutex::new(vec![]),
            fail: true,
            inside: AtomicUsize::new(0),
        });
        let co = Coalescer::new(rec.clone(), timing());
        let t1 = co.begin().await.commit(change());
        let t2 = co.begin().await.commit(change());
        // Wait until the first batch is deploying, then write: the permit waits for the deploy to end.
        while rec.inside.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let p = co.begin().await;
        assert_eq!(
            rec.inside.load(Ordering::SeqCst),
            0,
            "no write while deploying"
        );
        let t3 = p.commit(change());
        for t in [t1, t2, t3] {
            assert!(matches!(t.live().await, Err(Error::ConfigTest { .. })));
        }
        assert_eq!(*rec.batches.lock().unwrap(), vec![2, 1]);
    }

    #[tokio::test]
    async fn a_batch_waits_for_announced_writes() {
        let rec = Arc::new(Recorder {
            batches: Mutex::new(vec![]),
            fail: false,
            inside: AtomicUsize::new(0),
        });
        let co = Coalescer::new(rec.clone(), timing());
        // Two writes announced; the second arrives well after the quiet period (40 ms) but within max_wait.
        co.expect();
        co.expect();
        co.arrived();
        let t1 = co.begin().await.commit(change());
        tokio::time::sleep(Duration::from_millis(150)).await;
        co.arrived();
        let t2 = co.begin().await.commit(change());
        t1.live().await.unwrap();
        t2.live().await.unwrap();
        assert_eq!(*rec.batches.lock().unwrap(), vec![2]);
        // Never below zero: an extra arrival does not make later batches wait.
        co.arrived();
        co.begin().await.commit(change()).live().await.unwrap();
        assert_eq!(*rec.batches.lock().unwrap(), vec![2, 1]);
    }

    #[tokio::test]
    async fn a_dropped_permit_registers_nothing() {
        let rec = Arc::new(Recorder {
            batches: Mutex::new(vec![]),
            fail: false,
            inside: AtomicUsize::new(0),
        });
        let co = Coalescer::new(rec.clone(), timing());
        drop(co.begin().await);
        co.begin().await.commit(change()).live().await.unwrap();
        assert_eq!(*rec.batches.lock().unwrap(), vec![1]);
    }
}
