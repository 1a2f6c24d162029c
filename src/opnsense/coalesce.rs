//! The reconfigure coalescer: many resources' writes, one "go live" per batch stream.
//!
//! Why: a HAProxy reconfigure is a (by default hard) reload that drops every connection, and overlapping configd
//! actions interleave badly (browningluke#163). Terraform applies resources in parallel, each in its own RPC, and
//! each must return only once its change is live. So every write registers here; a single runner task waits for a
//! short quiet period, then takes the batch and deploys it once (for HAProxy: configtest → reconfigure).
//!
//! Why batches are bounded by Terraform's parallelism: Terraform holds one of its `parallelism` (default 10) slots
//! for a resource's whole node execution, `ApplyResourceChange` included (`ContextGraphWalker.Execute`). If every
//! resource returned only once its change is live, at most `parallelism` changes could wait for one deploy, and K
//! changes that need a reload at one dependency level would need ⌈K/parallelism⌉ deploys. To fill a batch even
//! when Terraform dispatches the slots slowly (a loaded machine), resources announce a planned change when
//! Terraform re-plans them in the apply walk ([`Coalescer::expect`]), right before applying, and a batch waits for
//! announced writes (bounded by `max_wait`). Changes haproxy can take at runtime (server weights) skip the deploy
//! altogether (see `Client::haproxy_put`).
//!
//! Why a long stream of writes still goes live once (≤ 2 reconfigures where it used to be ⌈K/10⌉): when a round
//! holds as many waiting writers as Terraform's default parallelism ([`Timing::release_at`]) and the deployer can
//! check a configuration without making it live ([`Deployer::checks`]: haproxy's configtest), the round is
//! *checked* (configtest; a failing change is reverted and fails as always) and every waiting writer but one is
//! answered: its change is saved and passed configtest. That frees Terraform's slots, the next writes form the next
//! round, and once the stream ends (no write in flight or announced for `quiet`, or the held writer has waited
//! [`Timing::max_hold`]) the whole saved configuration — every round of it checked, nothing written since the last
//! configtest — goes live in one reconfigure. The trade-off, and what keeps Terraform's "applied means live" as far
//! as a provider can:
//! - the whole stream is live before the apply ends: the held writer (the oldest waiting one) is answered only after
//!   the reconfigure, and Terraform cannot finish the apply without it;
//! - a resource answered early is in state before its change is live; a dependent in the same provider process that
//!   needs HAProxy live (a k3s node registering through the VIP) waits at [`Coalescer::settled`] first, which also
//!   makes the runner go live at the end of the current round instead of holding on;
//! - if the final reconfigure fails, the held writer fails with the error, and the changes answered early are undone
//!   where the API allows ([`Deployer::go_live`] gets them): an update is restored and a create removed, so the next
//!   refreshed plan shows them as needing an apply again; a delete stays saved (restoring it would leave an object
//!   no state knows) and goes live with the next reconfigure — the error names them all. [`Coalescer::settled`]
//!   reports the failure to a waiting dependent.
//!
//! Exactness: writers hold a shared permit of a gate while writing; the runner takes the gate exclusively while it
//! checks and deploys. A round therefore contains exactly the writes saved before its configtest, no write lands
//! between the last configtest and the reconfigure, and a failed change is reverted before anyone writes again.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{oneshot, Notify, OwnedRwLockReadGuard, RwLock};
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
    /// A delete: once its resource was answered (it left Terraform's state), it is never restored.
    pub removal: bool,
}

/// Checks and deploys batches of changes.
#[async_trait::async_trait]
pub trait Deployer: Send + Sync + 'static {
    /// Checks the saved configuration with `batch` in it, without making it live. One result per change, in order:
    /// `Ok(true)` the change must go live, `Ok(false)` it is live as saved (nothing renders it), `Err` it failed and
    /// was undone, so the saved configuration is again one that passed.
    async fn check(&self, batch: &[Change]) -> Vec<Result<bool>>;
    /// Makes the saved, checked configuration live. `released` are changes whose writers were already answered
    /// (see the module docs): if the configuration cannot go live, the deployer undoes them where it can and says
    /// so in the error.
    async fn go_live(&self, released: &[Change]) -> Result<()>;
    /// Whether [`Deployer::check`] really checks the configuration (haproxy's configtest), so that checked changes
    /// may be answered before they go live. A deployer that only applies does not.
    fn checks(&self) -> bool {
        false
    }
}

/// Batching parameters.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Start the batch once no new change arrived, and none was announced or in flight, for this long. It only
    /// has to cover the gap between siblings Terraform starts at the same moment (their announcements arrive within
    /// a few milliseconds of each other): a resource that depends on this batch cannot start before it is live, so
    /// waiting longer never lets more into the batch, and the wait is on every dependency chain through HAProxy
    /// (twice on the complete example's critical path: the pool, then the frontend). It was 150 ms.
    pub quiet: Duration,
    /// Never wait longer than this after the first change of a batch.
    pub max_wait: Duration,
    /// With this many writers waiting (Terraform's default parallelism, 10), Terraform may have no slot left to
    /// start another write: the round is checked and all writers but one are answered (see the module docs).
    pub release_at: usize,
    /// The longest a held writer waits for more rounds before the saved configuration goes live anyway.
    pub max_hold: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            quiet: Duration::from_millis(40),
            max_wait: Duration::from_secs(2),
            release_at: 10,
            max_hold: Duration::from_secs(20),
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
    /// Batches checked; rounds checked without going live, and writers answered before their change went live.
    checked: AtomicU64,
    rounds: AtomicU64,
    released: AtomicU64,
    /// Writes announced by [`Coalescer::expect`] that have not arrived yet.
    expected: AtomicUsize,
    /// Permits held right now (writes in progress).
    writing: AtomicUsize,
    /// Callers waiting in [`Coalescer::settled`]: the runner goes live at the end of its round for them.
    barrier: AtomicUsize,
    /// Writers answered before their change went live, since the last go-live (zero again once it ran).
    early: AtomicUsize,
    /// Signalled whenever the runner ends (nothing pending, nothing held).
    idle: Notify,
    /// The last go-live that failed although some of its writers had been answered; cleared by the next success.
    unlive: Mutex<Option<Error>>,
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

/// Resolves once the committed change is live, checked as part of a longer stream (see the module docs), or its
/// batch failed.
pub struct Ticket {
    rx: oneshot::Receiver<Result<()>>,
}

/// Counts a caller of [`Coalescer::settled`] while it waits.
struct BarrierGuard<'a>(&'a AtomicUsize);

impl Drop for BarrierGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
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
                checked: AtomicU64::new(0),
                rounds: AtomicU64::new(0),
                released: AtomicU64::new(0),
                expected: AtomicUsize::new(0),
                writing: AtomicUsize::new(0),
                barrier: AtomicUsize::new(0),
                early: AtomicUsize::new(0),
                idle: Notify::new(),
                unlive: Mutex::new(None),
            }),
        }
    }

    /// Wait until no batch is deploying, then allow one write.
    pub async fn begin(&self) -> WritePermit {
        let guard = self.inner.gate.clone().read_owned().await;
        self.inner.writing.fetch_add(1, Ordering::SeqCst);
        WritePermit {
            inner: self.inner.clone(),
            _guard: guard,
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

    /// The in-process barrier for work that needs the changes it depends on to be live (a k3s node that registers
    /// through HAProxy): when some writer was answered before its change went live, returns once nothing is pending
    /// or held. While someone waits here the runner answers no writer early, so this waits for at most the current
    /// round and its reconfigure. `Err` when the last go-live failed after some of its writers had been answered
    /// (their changes are saved but not live).
    ///
    /// Why not wait for every pending change: the caller's dependencies have all been answered (Terraform starts a
    /// resource only after them), so the only ones that can still be on their way are those answered early. A change
    /// still waiting for its own answer belongs to a resource that is not among them — in the complete example, the
    /// joiners' pool members, which the agents need not wait for.
    pub async fn settled(&self) -> Result<()> {
        if self.inner.early.load(Ordering::SeqCst) == 0 {
            return match self.inner.unlive.lock().unwrap().clone() {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        self.inner.barrier.fetch_add(1, Ordering::SeqCst);
        let _counted = BarrierGuard(&self.inner.barrier);
        loop {
            let notified = self.inner.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !self.inner.pending.lock().unwrap().running {
                break;
            }
            notified.await;
        }
        match self.inner.unlive.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Batches deployed (gone live) so far.
    pub fn batches(&self) -> u64 {
        self.inner.batches.load(Ordering::SeqCst)
    }

    /// Batches checked so far (each reads the whole model afresh).
    pub fn checked(&self) -> u64 {
        self.inner.checked.load(Ordering::SeqCst)
    }

    /// Rounds checked without going live, and writers answered before going live, so far.
    pub fn rounds_released(&self) -> (u64, u64) {
        (
            self.inner.rounds.load(Ordering::SeqCst),
            self.inner.released.load(Ordering::SeqCst),
        )
    }
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        self.inner.writing.fetch_sub(1, Ordering::SeqCst);
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
        {
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
        self.inner.idle.notify_waiters();
    }
}

type Waiter = oneshot::Sender<Result<()>>;

/// Ends the runner when nothing is left (under the pending lock, so a concurrent commit spawns a new one).
fn finish(inner: &Inner, guard: &mut RunningGuard) -> bool {
    {
        let mut p = inner.pending.lock().unwrap();
        if !p.items.is_empty() {
            return false;
        }
        p.running = false;
    }
    guard.armed = false;
    inner.idle.notify_waiters();
    true
}

async fn run(inner: Arc<Inner>) {
    let mut guard = RunningGuard {
        inner: inner.clone(),
        armed: true,
    };
    // The writer whose change passed a check and waits to go live (at most one is held across rounds once the others
    // are answered), since when the oldest waits, and the changes whose writers were answered before going live.
    let mut held: Vec<Waiter> = Vec::new();
    let mut held_since: Option<Instant> = None;
    let mut released: Vec<Change> = Vec::new();
    let timing = inner.timing;
    let tick = timing.quiet.min(Duration::from_millis(10));
    loop {
        let len = || inner.pending.lock().unwrap().items.len();
        let start = Instant::now();
        let mut changed = Instant::now();
        let mut last = len();
        loop {
            tokio::time::sleep(tick).await;
            let now = len();
            let busy = inner.expected.load(Ordering::SeqCst) > 0
                || inner.writing.load(Ordering::SeqCst) > 0;
            if now != last || busy {
                changed = Instant::now();
            }
            last = now;
            // Every default slot of Terraform's waits on us (or someone waits at the barrier) and nothing else is on
            // its way: no need to wait longer.
            let full = (now + held.len() >= timing.release_at
                || inner.barrier.load(Ordering::SeqCst) > 0)
                && !busy;
            if (changed.elapsed() >= timing.quiet && !busy)
                || full
                || start.elapsed() >= timing.max_wait
            {
                break;
            }
        }
        let gate = inner.gate.write().await;
        let batch = {
            let mut p = inner.pending.lock().unwrap();
            if p.items.is_empty() && held.is_empty() {
                drop(p);
                drop(gate);
                if finish(&inner, &mut guard) {
                    return;
                }
                continue;
            }
            std::mem::take(&mut p.items)
        };
        let (changes, senders): (Vec<Change>, Vec<Waiter>) = batch.into_iter().unzip();
        // Writers waiting on us when the round started: Terraform's slots they hold.
        let waiting = held.len() + senders.len();
        let mut results = if changes.is_empty() {
            Vec::new()
        } else {
            tracing::debug!(
                changes = changes.len(),
                held = held.len(),
                "checking a batch"
            );
            inner.checked.fetch_add(1, Ordering::SeqCst);
            inner.deployer.check(&changes).await
        };
        results.resize_with(senders.len(), || {
            Err(Error::Service {
                service: "coalescer",
                message: "no result for this change".into(),
            })
        });
        // Checked changes that must go live, in the order they were written.
        let mut round: Vec<(Change, Waiter)> = Vec::new();
        for ((change, tx), r) in changes.into_iter().zip(senders).zip(results) {
            match r {
                Ok(true) => round.push((change, tx)),
                Ok(false) => {
                    let _ = tx.send(Ok(()));
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        }
        let hold_on = inner.deployer.checks()
            && waiting >= timing.release_at
            && held.len() + round.len() > 0
            && inner.barrier.load(Ordering::SeqCst) == 0
            && held_since.is_none_or(|t| t.elapsed() < timing.max_hold);
        if hold_on {
            // Saved and checked: answer all but the oldest, which waits for the reconfigure that makes them live.
            held_since.get_or_insert_with(Instant::now);
            let mut answered = 0u64;
            for (change, tx) in round {
                if held.is_empty() {
                    held.push(tx);
                } else {
                    inner.early.fetch_add(1, Ordering::SeqCst);
                    let _ = tx.send(Ok(()));
                    released.push(change);
                    answered += 1;
                }
            }
            inner.rounds.fetch_add(1, Ordering::SeqCst);
            inner.released.fetch_add(answered, Ordering::SeqCst);
            tracing::debug!(released = answered, "checked a round; going live later");
            drop(gate);
            continue;
        }
        held.extend(round.into_iter().map(|(_, tx)| tx));
        if !held.is_empty() {
            tracing::debug!(
                waiting = held.len(),
                answered_early = released.len(),
                "deploying"
            );
            let r = inner.deployer.go_live(&released).await;
            inner.batches.fetch_add(1, Ordering::SeqCst);
            {
                let mut unlive = inner.unlive.lock().unwrap();
                match &r {
                    Ok(()) => *unlive = None,
                    Err(e) if !released.is_empty() => *unlive = Some(e.clone()),
                    Err(_) => {}
                }
            }
            inner.early.store(0, Ordering::SeqCst);
            for tx in held.drain(..) {
                let _ = tx.send(r.clone());
            }
        }
        released.clear();
        held_since = None;
        drop(gate);
        if finish(&inner, &mut guard) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Records the size of every checked batch, counts go-lives and the released changes each was handed. `fail`:
    /// every check fails; `fail_target`: changes to that target fail their check; `fail_live`: going live fails.
    #[derive(Default)]
    struct Recorder {
        batches: Mutex<Vec<usize>>,
        fail: bool,
        fail_target: Option<Target>,
        fail_live: std::sync::atomic::AtomicBool,
        inside: AtomicUsize,
        lives: AtomicUsize,
        released: Mutex<Vec<usize>>,
    }

    #[async_trait::async_trait]
    impl Deployer for Recorder {
        async fn check(&self, batch: &[Change]) -> Vec<Result<bool>> {
            self.inside.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(30)).await;
            self.batches.lock().unwrap().push(batch.len());
            self.inside.fetch_sub(1, Ordering::SeqCst);
            batch
                .iter()
                .map(|c| {
                    if self.fail || self.fail_target.as_ref() == Some(&c.target) {
                        Err(Error::ConfigTest {
                            output: "[ALERT] bad".into(),
                        })
                    } else {
                        Ok(true)
                    }
                })
                .collect()
        }
        async fn go_live(&self, released: &[Change]) -> Result<()> {
            self.inside.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.released.lock().unwrap().push(released.len());
            self.lives.fetch_add(1, Ordering::SeqCst);
            self.inside.fetch_sub(1, Ordering::SeqCst);
            if self.fail_live.load(Ordering::SeqCst) {
                return Err(Error::Service {
                    service: "haproxy",
                    message: "reload failed".into(),
                });
            }
            Ok(())
        }
        fn checks(&self) -> bool {
            true
        }
    }

    fn change() -> Change {
        Change {
            target: Target::HaproxySettings,
            revert: Revert::Nothing,
            removal: false,
        }
    }

    fn timing() -> Timing {
        Timing {
            quiet: Duration::from_millis(40),
            max_wait: Duration::from_millis(400),
            release_at: 1000,
            max_hold: Duration::from_secs(5),
        }
    }

    /// `n` writers through `slots` slots, each holding its slot until its ticket resolves (as Terraform holds a
    /// parallelism slot for a resource's whole apply). Returns each writer's target, result, and how many go-lives
    /// the deployer had done when the writer was answered.
    async fn through_slots(
        co: &Coalescer,
        rec: &Arc<Recorder>,
        n: usize,
        slots: usize,
        target: impl Fn(usize) -> Target,
    ) -> Vec<(Target, Result<()>, usize)> {
        let sem = Arc::new(tokio::sync::Semaphore::new(slots));
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let co = co.clone();
                let sem = sem.clone();
                let rec = rec.clone();
                let t = target(i);
                tokio::spawn(async move {
                    let _slot = sem.acquire_owned().await.unwrap();
                    let p = co.begin().await;
                    tokio::time::sleep(Duration::from_millis(2)).await; // the write
                    let r = p
                        .commit(Change {
                            target: t.clone(),
                            revert: Revert::Nothing,
                            removal: false,
                        })
                        .live()
                        .await;
                    (t, r, rec.lives.load(Ordering::SeqCst))
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    fn server(i: usize) -> Target {
        Target::Haproxy(Kind::Server, Uuid::from_u128(i as u128 + 1))
    }

    fn slotted(release_at: usize, rec: &Arc<Recorder>) -> Coalescer {
        Coalescer::new(
            rec.clone(),
            Timing {
                release_at,
                ..timing()
            },
        )
    }

    #[tokio::test]
    async fn a_stream_longer_than_the_slots_goes_live_once_before_its_last_writer_returns() {
        let rec = Arc::new(Recorder::default());
        let co = slotted(5, &rec);
        // 23 writers, 5 slots: answering every writer only once live would need ⌈23/5⌉ = 5 deploys.
        let out = through_slots(&co, &rec, 23, 5, server).await;
        assert!(out.iter().all(|(_, r, _)| r.is_ok()));
        assert_eq!(
            rec.lives.load(Ordering::SeqCst),
            1,
            "checked: {:?}",
            rec.batches.lock().unwrap()
        );
        // The held writer is answered only after the one go-live: the stream is live before it ends.
        let after: Vec<_> = out.iter().filter(|(_, _, lives)| *lives == 1).collect();
        assert!(!after.is_empty(), "one writer waits for the go-live");
        let (rounds, released) = co.rounds_released();
        assert!(rounds >= 4, "{rounds} rounds checked before going live");
        // Every writer was checked: the batches add up to all of them; the go-live was handed the answered ones.
        assert_eq!(rec.batches.lock().unwrap().iter().sum::<usize>(), 23);
        assert_eq!(*rec.released.lock().unwrap(), vec![released as usize]);
        assert_eq!(released as usize + after.len(), 23);
        co.settled().await.unwrap();
    }

    #[tokio::test]
    async fn a_failing_change_in_a_later_round_fails_alone() {
        let rec = Arc::new(Recorder {
            fail_target: Some(Target::HaproxySettings),
            ..Recorder::default()
        });
        let co = slotted(4, &rec);
        // The 10th write fails its check; everyone else is answered Ok and the rest goes live once.
        let out = through_slots(&co, &rec, 12, 4, |i| {
            if i == 9 {
                Target::HaproxySettings
            } else {
                server(i)
            }
        })
        .await;
        for (t, r, _) in out {
            assert_eq!(r.is_err(), t == Target::HaproxySettings, "{t:?}: {r:?}");
        }
        assert_eq!(rec.lives.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_go_live_fails_the_held_writer_hands_over_the_answered_and_is_reported_at_the_barrier(
    ) {
        let rec = Arc::new(Recorder::default());
        rec.fail_live.store(true, Ordering::SeqCst);
        let co = slotted(4, &rec);
        let out = through_slots(&co, &rec, 12, 4, server).await;
        let failed = out.iter().filter(|(_, r, _)| r.is_err()).count();
        assert!(failed >= 1, "the held writer reports the failed reload");
        // The go-live was handed every change answered early, so it can undo them.
        assert_eq!(*rec.released.lock().unwrap(), vec![12 - failed]);
        assert!(
            co.settled().await.is_err(),
            "a dependent that needs HAProxy live is told"
        );
        // The next successful go-live clears it.
        rec.fail_live.store(false, Ordering::SeqCst);
        co.begin().await.commit(change()).live().await.unwrap();
        co.settled().await.unwrap();
    }

    #[tokio::test]
    async fn the_barrier_waits_for_the_held_writer_and_stops_the_holding() {
        let rec = Arc::new(Recorder::default());
        let co = slotted(5, &rec);
        let stream = {
            let (co, rec) = (co.clone(), rec.clone());
            tokio::spawn(async move { through_slots(&co, &rec, 40, 5, server).await })
        };
        // Once writers have been answered early, a dependent arrives at the barrier.
        while co.rounds_released().0 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let released_then = co.rounds_released().1;
        co.settled().await.unwrap();
        assert!(
            rec.lives.load(Ordering::SeqCst) >= 1,
            "the barrier returns only after a go-live"
        );
        assert!(rec.released.lock().unwrap()[0] as u64 >= released_then);
        let out = stream.await.unwrap();
        assert!(out.iter().all(|(_, r, _)| r.is_ok()));
        co.settled().await.unwrap();
        // Idle: returns at once.
        tokio::time::timeout(Duration::from_millis(50), co.settled())
            .await
            .unwrap()
            .unwrap();
    }

    // Paused time: nothing advances while the test runs, so "returned before the go-live" is exact.
    #[tokio::test(start_paused = true)]
    async fn the_barrier_does_not_wait_for_a_change_whose_writer_waits_itself() {
        let rec = Arc::new(Recorder::default());
        let co = Coalescer::new(rec.clone(), timing());
        // A write on its way to going live, its writer not answered yet (no dependent can exist).
        let ticket = co.begin().await.commit(change());
        co.settled().await.unwrap();
        assert_eq!(
            rec.lives.load(Ordering::SeqCst),
            0,
            "the barrier waited for a change nobody depends on yet"
        );
        ticket.live().await.unwrap();
        assert_eq!(rec.lives.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_held_writer_goes_live_by_max_hold() {
        let rec = Arc::new(Recorder::default());
        let co = Coalescer::new(
            rec.clone(),
            Timing {
                release_at: 2,
                max_hold: Duration::from_millis(1),
                ..timing()
            },
        );
        // With every round past max_hold, each goes live: no writer waits longer than one round.
        through_slots(&co, &rec, 6, 2, server).await;
        assert!(rec.lives.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn concurrent_changes_share_one_deploy() {
        let rec = Arc::new(Recorder::default());
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
            fail: true,
            ..Recorder::default()
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
        let rec = Arc::new(Recorder::default());
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
        let rec = Arc::new(Recorder::default());
        let co = Coalescer::new(rec.clone(), timing());
        drop(co.begin().await);
        co.begin().await.commit(change()).live().await.unwrap();
        assert_eq!(*rec.batches.lock().unwrap(), vec![1]);
    }
}
