//! What the daemon reports about each tenant and sink: the `tapfwd status` output, the admin
//! endpoint's `/status`, and the source of its `/metrics`. Built from checkpoints, counters and
//! error texts only; secrets have no path into it (invariant 7).

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::clock;

/// One tenant's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantStatus {
    pub tenant: String,
    /// `ok`, `catching_up`, `degraded` (a sink is failing), `retrying`, `throttled`,
    /// `waiting_for_budget` or `failed`.
    pub state: String,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// Requests counted in the rolling 24 hours, and the quota.
    pub requests_24h: u32,
    pub requests_limit: u32,
    pub next_poll_at: Option<String>,
    /// Events received from the API (before dedupe), since start.
    pub events_fetched: u64,
    /// Windows fetched, since start.
    pub windows_fetched: u64,
    /// API responses by status class (`200`, `429`, `transport`, ...), since start.
    pub requests_by_status: BTreeMap<String, u64>,
    pub sinks: Vec<SinkStatus>,
}

/// One tenant's progress into one sink.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SinkStatus {
    pub sink: String,
    /// Every event up to this instant was delivered.
    pub checkpoint: String,
    /// How far the checkpoint is behind now, in seconds (includes the configured lag).
    pub behind_seconds: i64,
    /// Seconds not yet delivered beyond the configured lag: the sink's backlog.
    pub backlog_seconds: i64,
    pub delivered: u64,
    pub deduplicated: u64,
    pub failing: bool,
    pub last_error: Option<String>,
    /// API history skipped because the checkpoint fell past the 7-day horizon.
    pub gap_seconds: i64,
}

impl SinkStatus {
    /// The progress part of a sink's status, from its stream state at `now` (unix seconds) with
    /// the configured `lag` (seconds); counters and errors are left for the caller.
    pub fn from_stream(sink: &str, state: &crate::store::StreamState, now: i64, lag: i64) -> Self {
        let behind = now - state.checkpoint;
        SinkStatus {
            sink: sink.to_string(),
            checkpoint: clock::rfc3339(state.checkpoint),
            behind_seconds: behind,
            backlog_seconds: (behind - lag).max(0),
            gap_seconds: state.gap_seconds,
            ..Default::default()
        }
    }
}

/// The latest status of every tenant, shared by the pollers and the admin endpoint.
#[derive(Debug)]
pub struct StatusBoard {
    tenants: RwLock<BTreeMap<String, TenantStatus>>,
    /// Bumped on every change, so waiters (tests, `tapfwd demo`) wake on changes instead of polling.
    version: tokio::sync::watch::Sender<u64>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard {
            tenants: RwLock::default(),
            version: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl StatusBoard {
    pub fn put(&self, status: TenantStatus) {
        if let Ok(mut t) = self.tenants.write() {
            t.insert(status.tenant.clone(), status);
        }
        self.version.send_modify(|v| *v += 1);
    }

    pub fn remove(&self, tenant: &str) {
        if let Ok(mut t) = self.tenants.write() {
            t.remove(tenant);
        }
        self.version.send_modify(|v| *v += 1);
    }

    /// Waits until `done` holds for the snapshot of every tenant; checks after every change.
    pub async fn wait_until(&self, mut done: impl FnMut(&[TenantStatus]) -> bool) {
        let mut rx = self.version.subscribe();
        loop {
            rx.borrow_and_update();
            if done(&self.snapshot()) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn snapshot(&self) -> Vec<TenantStatus> {
        self.tenants
            .read()
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Calls `f` on every tenant's status without cloning it (the benchmark's checks over
    /// thousands of tenants); returns the number of tenants.
    pub fn for_each(&self, mut f: impl FnMut(&TenantStatus)) -> usize {
        self.tenants
            .read()
            .map(|t| {
                t.values().for_each(&mut f);
                t.len()
            })
            .unwrap_or(0)
    }

    pub fn get(&self, tenant: &str) -> Option<TenantStatus> {
        self.tenants.read().ok()?.get(tenant).cloned()
    }
}
