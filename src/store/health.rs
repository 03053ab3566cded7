//! The store's health: what its writes and flushes have shown, read by the admin endpoint,
//! the metrics and the store-failure exit without touching the store (invariant 1: a failing
//! store holds every position; the daemon exits for the service manager to restart it).

use super::*;

/// A fault-injection seam for the black-box tests (`tests/store.rs`), read once when the store
/// opens and never set in production: when this environment variable names a file, every
/// `apply_batch` blocks its thread, every flush waits, and every read blocks the thread that
/// calls it (a worker of the async runtime, as sled's reads are called), for as long as that
/// file exists, as sled's calls did after a disk error (a flush that never returned held a lock
/// that every other call then waited for). It lets a test check that such a store shows as
/// failing, that the admin endpoint still answers, and that the store-failure exit and SIGTERM
/// still end the process in time.
pub const STALL_ENV: &str = "TAPFWD_TEST_STORE_STALL_FILE";

/// A write or flush that has not returned after this long counts as a store failure.
pub(super) const STUCK_SECS: i64 = 10;

/// What the store's writes and flushes have shown (times are unix seconds, 0 for none).
#[derive(Default)]
pub(super) struct Health {
    pub(super) errors_total: AtomicU64,
    /// When the current run of failures began: set by a failed write or flush, cleared only by a
    /// flush that works (a write that works may only have reached memory).
    pub(super) failing_since: AtomicI64,
    /// Writes and flushes in progress: an id and when each began.
    pub(super) in_progress: std::sync::Mutex<Vec<(u64, i64)>>,
    pub(super) next_id: AtomicU64,
    pub(super) last_error: std::sync::Mutex<Option<String>>,
}

/// A write or flush in progress, for [`Store::health`]; ends when dropped.
pub(super) struct Busy<'a>(&'a Health, u64);

impl Busy<'_> {
    pub(super) fn start(health: &Health) -> Busy<'_> {
        let id = health.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut v) = health.in_progress.lock() {
            v.push((id, unix_now()));
        }
        Busy(health, id)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        if let Ok(mut v) = self.0.in_progress.lock() {
            v.retain(|(id, _)| *id != self.1);
        }
    }
}

/// The store's health as the admin endpoint, `tapfwd status` and the metrics show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// False while writes or flushes fail, or one has not returned for 10 s.
    pub healthy: bool,
    /// Failed writes and flushes since start.
    pub errors_total: u64,
    /// Seconds since the current failure began.
    pub failing_for_seconds: Option<i64>,
    /// The last failure (an I/O error; the store never holds a secret).
    pub last_error: Option<String>,
}

/// A handle on the store's health and nothing else: reading it takes atomics and a lock held
/// only for a push or a pop, never across a sled call, so a thread that must not wait on the
/// store (`tapfwd run`'s store-failure exit) can read it whatever sled's threads are doing.
#[derive(Clone)]
pub struct HealthWatch(pub(super) std::sync::Arc<Health>);

impl HealthWatch {
    /// Whether writes and flushes work. One that has not returned for 10 s counts as a failure
    /// from then on (sled's could block forever after a disk error).
    pub fn health(&self) -> StoreHealth {
        let health = &self.0;
        let now = unix_now();
        let oldest = health
            .in_progress
            .lock()
            .ok()
            .and_then(|v| v.iter().map(|(_, at)| *at).min());
        let stuck = oldest
            .filter(|at| now - at > STUCK_SECS)
            .map(|at| at + STUCK_SECS);
        let since = Some(health.failing_since.load(Ordering::Acquire)).filter(|s| *s != 0);
        let failing = match (since, stuck) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut last_error = health.last_error.lock().ok().and_then(|l| l.clone());
        if let (Some(at), None) = (stuck, since) {
            last_error = Some(format!(
                "a store write or flush has not returned for {} s",
                now - at + STUCK_SECS
            ));
        }
        StoreHealth {
            healthy: failing.is_none(),
            errors_total: health.errors_total.load(Ordering::Acquire),
            failing_for_seconds: failing.map(|f| (now - f).max(0)),
            last_error,
        }
    }
}

/// Runs a sled call that may block its thread for a long time (after a disk error sled's could
/// block forever) without taking a worker of a multi-threaded runtime away from the other tasks:
/// the admin endpoint, the store's watch and the other tenants keep running.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
