//! Runs every polled [`Source`] on one timer heap.
//!
//! A source is a plain struct, not a task: while it waits for its next step it costs its own
//! size and one heap entry, which is what lets one daemon hold thousands of tenants. When one is
//! due, the scheduler moves it into a task that waits for one of `poll.concurrency` permits (a
//! FIFO semaphore, so a tenant with a long backlog takes turns with everyone else: each step is
//! one window), runs one step, and sends it back with the time it wants to run again.
//! Keeps invariant 6: a tenant's slowness holds only its own permit.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::task::TaskTracker;

use crate::clock;
use crate::sources::{Context, Next, Source};

/// Longest wait for the store's final flush at shutdown.
const FINAL_FLUSH: std::time::Duration = std::time::Duration::from_secs(5);

/// A source as the scheduler holds it.
pub type Poller = Box<dyn Source>;

/// A change to the set of tenants, sent by a config reload.
pub enum Command {
    /// Adds the tenant, or replaces it once its current step (if any) ends.
    Put(Poller),
    /// Removes the tenant once its current step (if any) ends.
    Remove(String),
    /// Removes these tenants like `Remove`, then answers once none of their pollers is running
    /// any more, so nothing of theirs holds a sink or is about to write a checkpoint. A reload
    /// drains the tenants it replaces before it restarts their sinks or re-reads their state.
    Drain(Vec<String>, oneshot::Sender<()>),
    /// Answered at once by a scheduler loop that is alive; the systemd watchdog pings only then.
    Heartbeat(oneshot::Sender<()>),
}

/// A heap entry: (due unix seconds, sequence, tenant, generation).
type Due = (i64, u64, Arc<str>, u64);

enum Slot {
    Idle(Poller),
    Running,
}

struct Entry {
    slot: Slot,
    /// Bumped on every replacement, so heap entries of an older poller are ignored.
    generation: u64,
    /// What a reload asked for while the poller was running.
    pending: Option<Option<Poller>>,
}

pub struct Scheduler {
    ctx: Context,
    entries: HashMap<Arc<str>, Entry>,
    heap: BinaryHeap<Reverse<Due>>,
    seq: u64,
    next_generation: u64,
    /// `Drain` commands still waiting for running pollers to return.
    drains: Vec<(HashSet<Arc<str>>, oneshot::Sender<()>)>,
}

impl Scheduler {
    pub fn new(ctx: Context, pollers: Vec<Poller>) -> Scheduler {
        let mut s = Scheduler {
            ctx,
            entries: HashMap::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            next_generation: 0,
            drains: Vec::new(),
        };
        let now = s.ctx.clock.now().timestamp();
        for p in pollers {
            s.insert(p, now);
        }
        s
    }

    fn push(&mut self, due: i64, id: Arc<str>, generation: u64) {
        self.seq += 1;
        self.heap.push(Reverse((due, self.seq, id, generation)));
    }

    fn insert(&mut self, poller: Poller, due: i64) {
        let id: Arc<str> = Arc::from(poller.id());
        self.next_generation += 1;
        let generation = self.next_generation;
        self.entries.insert(
            id.clone(),
            Entry {
                slot: Slot::Idle(poller),
                generation,
                pending: None,
            },
        );
        self.push(due, id, generation);
    }

    /// The scheduled sources of tenant `tenant`: its own id and `tenant:…` (its other sources,
    /// such as People snapshots).
    fn sources_of(&self, tenant: &str) -> Vec<Arc<str>> {
        self.entries
            .keys()
            .filter(|k| {
                k.as_ref() == tenant
                    || k.strip_prefix(tenant)
                        .is_some_and(|rest| rest.starts_with(':'))
            })
            .cloned()
            .collect()
    }

    fn apply(&mut self, command: Command) {
        let now = self.ctx.clock.now().timestamp();
        match command {
            Command::Put(p) => {
                let id: Arc<str> = Arc::from(p.id());
                self.replace(id, Some(p), now);
            }
            Command::Remove(tenant) => {
                let ids = self.sources_of(&tenant);
                if ids.is_empty() {
                    self.remove(&tenant);
                }
                for id in ids {
                    self.replace(id, None, now);
                }
            }
            Command::Heartbeat(reply) => {
                let _ = reply.send(());
            }
            Command::Drain(tenants, done) => {
                let mut running = HashSet::new();
                for tenant in tenants {
                    for id in self.sources_of(&tenant) {
                        match self.entries.get_mut(&id) {
                            Some(entry) if matches!(entry.slot, Slot::Running) => {
                                entry.pending = Some(None);
                                running.insert(id);
                            }
                            Some(_) => self.remove(&id),
                            None => {}
                        }
                    }
                }
                if running.is_empty() {
                    let _ = done.send(());
                } else {
                    self.drains.push((running, done));
                }
            }
        }
    }

    /// Puts `replacement` in the place of source `id` (or removes it), once its current step
    /// (if any) ends.
    fn replace(&mut self, id: Arc<str>, replacement: Option<Poller>, now: i64) {
        match self.entries.get_mut(&id) {
            Some(entry) if matches!(entry.slot, Slot::Running) => entry.pending = Some(replacement),
            _ => match replacement {
                Some(p) => self.insert(p, now),
                None => self.remove(&id),
            },
        }
    }

    fn remove(&mut self, id: &str) {
        self.entries.remove(id);
        self.ctx.status.remove(id);
        self.ctx.metrics.forget_tenant(id);
    }

    /// Number of sources scheduled: each tenant's own, and its others (`tenant:…`, such as People
    /// snapshots).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Number of tenants scheduled (a tenant with People snapshots counts once).
    pub fn tenants(&self) -> usize {
        self.entries
            .keys()
            .map(|k| k.split(':').next().unwrap_or(k))
            .collect::<HashSet<_>>()
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Runs until `ctx.shutdown` is cancelled, then waits up to `poll.shutdown_grace` for steps
    /// in flight (they stop at the next batch boundary) and flushes the store.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let permits = Arc::new(Semaphore::new(self.ctx.poll.concurrency));
        let tracker = TaskTracker::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(Poller, Next)>();
        let mut commands_open = true;
        loop {
            let now = self.ctx.clock.now().timestamp();
            while let Some(Reverse((due, _, _, _))) = self.heap.peek() {
                if *due > now {
                    break;
                }
                let Some(Reverse((_, _, id, generation))) = self.heap.pop() else {
                    break;
                };
                let Some(entry) = self.entries.get_mut(&id) else {
                    continue;
                };
                if entry.generation != generation {
                    continue;
                }
                let Slot::Idle(mut poller) = std::mem::replace(&mut entry.slot, Slot::Running)
                else {
                    continue;
                };
                let ctx = self.ctx.clone();
                let permits = permits.clone();
                let done = done_tx.clone();
                tracker.spawn(async move {
                    let next = match permits.acquire_owned().await {
                        Ok(_permit) => {
                            if ctx.shutdown.is_cancelled() {
                                Next::At(0)
                            } else {
                                poller.step(&ctx).await
                            }
                        }
                        Err(_) => Next::At(0),
                    };
                    let _ = done.send((poller, next));
                });
            }
            let next_due = self.heap.peek().map(|Reverse((due, ..))| *due);
            let clock = self.ctx.clock.clone();
            let sleep = async move {
                match next_due {
                    Some(due) => clock.sleep_until(clock::to_datetime(due)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => break,
                Some((poller, next)) = done_rx.recv() => self.returned(poller, next),
                command = commands.recv(), if commands_open => match command {
                    Some(c) => self.apply(c),
                    None => commands_open = false,
                },
                _ = sleep => {}
            }
        }
        // Streaming sources (PoD) stop on the same shutdown token: they close their connections
        // and commit their last chunk. One grace period for both.
        tracker.close();
        self.ctx.streams.close();
        let grace = self.ctx.poll.shutdown_grace;
        let both = futures_util::future::join(tracker.wait(), self.ctx.streams.wait());
        if tokio::time::timeout(grace, both).await.is_err() {
            tracing::warn!(grace = ?grace, "windows or streams still in flight at the end of the grace period were abandoned; they will be fetched again");
        }
        // Bounded: after a disk error sled's flush can wait forever, and the daemon must still
        // stop. What it did not flush is fetched again (invariant 1), and recognised by its keys.
        match tokio::time::timeout(FINAL_FLUSH, self.ctx.store.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "final store flush failed"),
            Err(_) => tracing::error!(
                wait = ?FINAL_FLUSH,
                "final store flush did not return; stopping without it"
            ),
        }
    }

    /// A running poller of `id` returned: answer the drains that were waiting only for it.
    fn drained(&mut self, id: &Arc<str>) {
        if self.drains.is_empty() {
            return;
        }
        for (waiting, _) in &mut self.drains {
            waiting.remove(id);
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.drains)
            .into_iter()
            .partition(|(w, _)| w.is_empty());
        self.drains = waiting;
        for (_, tx) in done {
            let _ = tx.send(());
        }
    }

    fn returned(&mut self, poller: Poller, next: Next) {
        let now = self.ctx.clock.now().timestamp();
        let id: Arc<str> = Arc::from(poller.id());
        let Some(entry) = self.entries.get_mut(&id) else {
            drop(poller);
            self.drained(&id);
            return;
        };
        if let Some(pending) = entry.pending.take() {
            drop(poller);
            match pending {
                Some(p) => self.insert(p, now),
                None => self.remove(&id),
            }
            self.drained(&id);
            return;
        }
        entry.slot = Slot::Idle(poller);
        let generation = entry.generation;
        let due = match next {
            Next::Now => now,
            Next::At(t) => t.max(now),
        };
        self.push(due, id, generation);
    }
}
