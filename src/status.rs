//! What the daemon reports about each tenant and sink: the `tapfwd status` output, the admin
//! endpoint's `/status`, and the source of its `/metrics`. Built from checkpoints, counters and
//! error texts only; secrets have no path into it (invariant 7).

use std::collections::BTreeMap;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::clock;
use crate::store::Progress;

/// What a tenant is doing, as `tapfwd status` and `/status` spell it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    /// Fetching a backlog, one window after another (also the state before the first poll).
    #[default]
    CatchingUp,
    /// Caught up: polling once per interval.
    Ok,
    /// Caught up where it can be, but a sink is failing and holds its backlog.
    Degraded,
    /// The last fetch failed, or every sink failed it; retrying with backoff.
    Retrying,
    /// The API answered 429; waiting for budget.
    Throttled,
    /// The rolling 24-hour budget is spent; waiting for requests to age out.
    WaitingForBudget,
    /// The API refuses the credentials (401/403); retried hourly and on reload.
    Failed,
    /// A People source whose snapshot of this period is partial: the list did not end within
    /// the pages its total allows, or the pages disagree with the total (see `snapshot`).
    Partial,
    /// Not running: `tapfwd status` read the store of a daemon that is not running.
    Stopped,
    /// Never polled: `tapfwd status` found no stream of this tenant in the store.
    NotStarted,
}

impl TenantState {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantState::CatchingUp => "catching_up",
            TenantState::Ok => "ok",
            TenantState::Degraded => "degraded",
            TenantState::Retrying => "retrying",
            TenantState::Throttled => "throttled",
            TenantState::WaitingForBudget => "waiting_for_budget",
            TenantState::Failed => "failed",
            TenantState::Partial => "partial",
            TenantState::Stopped => "stopped",
            TenantState::NotStarted => "not_started",
        }
    }
}

impl std::fmt::Display for TenantState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<str> for TenantState {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TenantState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// One tenant's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantStatus {
    pub tenant: String,
    pub state: TenantState,
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
    /// The window being fetched right now, while it streams in; absent between windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowProgress>,
    /// Events delivered with threat enrichment beside them, since start (0 without `enrich`).
    #[serde(default)]
    pub events_enriched: u64,
    /// Ids an event went without because their lookup failed or was too slow, since start.
    #[serde(default)]
    pub enrichment_misses: u64,
    /// Summaries and campaigns left out because they were larger than
    /// `enrichment.max_summary_bytes`, since start (the events naming them count as misses).
    #[serde(default)]
    pub enrichment_dropped: u64,
    /// Essentials partner tenants: events received per child organisation (`customerEid`) since
    /// start; at most [`MAX_CUSTOMERS`] ids (each at most 64 bytes), the events of the ids after
    /// them counted under [`OTHER_CUSTOMERS`], and the events whose `customerEid` is not an id (a
    /// number, a string over 64 bytes or with control characters) under [`INVALID_CUSTOMERS`].
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub customers: BTreeMap<String, u64>,
    /// A streaming source (PoD): its connection; absent for polled sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamStatus>,
    /// TAP and Essentials: the late sweep's position, cost and finds; absent while it is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late_sweep: Option<LateSweepStatus>,
}

/// The late sweep of a TAP or Essentials tenant: how far it has come, what it costs and what it
/// found, so that users see how often it matters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LateSweepStatus {
    /// How old a window is when it is queried again (`late_sweep`), in seconds.
    pub age_seconds: i64,
    /// Every window up to this instant (RFC 3339) has been queried again, over all sinks.
    pub swept_to: Option<String>,
    /// The sweep's requests in the rolling 24 hours (part of the tenant's `requests_24h`).
    pub requests_24h: u32,
    /// Sweep windows completed, since start.
    pub windows: u64,
    /// Events the sweep's windows held (most of them already delivered), since start.
    pub events_fetched: u64,
    /// Events the sweep delivered that no sink had: published after the first query of their
    /// window, since start.
    pub events_found_late: u64,
    /// Seconds of windows the sweep skipped because it fell further behind than the dedupe keys
    /// are kept (budget or failures), since start.
    pub skipped_seconds: i64,
    /// Why the last sweep window failed; absent once one works.
    pub last_error: Option<String>,
    /// When the next sweep window is due (RFC 3339): when its end is `late_sweep` old, or its
    /// retry after a failure. Absent while the sweep waits for polling to fetch its windows
    /// first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_at: Option<String>,
}

/// A People source's latest snapshot into one sink: whether it holds every user the API said
/// the list has.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotStatus {
    /// The start of the period the snapshot belongs to (RFC 3339).
    pub period: String,
    /// `complete`: the list ended where the API's total says. `partial`: not (yet): the snapshot
    /// stopped at a 429, the budget or a failing sink and is finished from `resume_page`, or it
    /// ended short of or past the total, or it was cut at the page bound (`reason`).
    pub result: String,
    /// Users the snapshot's pages held (before dedupe).
    pub users: u64,
    /// The API's total (`totalVapUsers`, `totalTopClickers`), when it said.
    pub expected: Option<u64>,
    /// Pages fetched.
    pub pages: u32,
    /// While the snapshot is still to be finished: the page it goes on from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_page: Option<u32>,
    /// Why a snapshot is partial.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl SnapshotStatus {
    /// The status of the snapshot `progress` records, for a stream at `checkpoint`.
    pub fn of(progress: &Progress, checkpoint: i64) -> Self {
        let unfinished = progress.short.is_none() && checkpoint < progress.end;
        SnapshotStatus {
            period: clock::rfc3339(progress.end),
            result: if unfinished || progress.short.is_some() {
                "partial"
            } else {
                "complete"
            }
            .to_string(),
            users: progress.events,
            expected: progress.expected,
            pages: progress.pages,
            resume_page: unfinished.then_some(progress.pages.saturating_add(1)),
            reason: progress.short.clone(),
        }
    }
}

/// A streaming source's connection (one PoD log type of one tenant).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    /// Whether the live connection is open.
    pub connected: bool,
    /// The `ts` of the last frame received (as sent), if any since start.
    pub last_frame_ts: Option<String>,
    /// When the last frame arrived (RFC 3339).
    pub last_frame_at: Option<String>,
    /// Live connections opened after the first, since start.
    pub reconnects: u64,
    /// Archive catch-ups run (each one or more hour windows), since start.
    pub archive_catchups: u64,
    /// Frames received per second over the last status interval.
    pub events_per_second: f64,
    /// Connections the service refused with 409 (a session of this token was still open),
    /// since start.
    pub sessions_refused: u64,
    /// While connected: when the next ping is sent (RFC 3339, ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_ping_at: Option<String>,
    /// While a ping waits for its pong: when the connection counts as silent and is replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pong_due_at: Option<String>,
}

/// How many customer ids a tenant's status lists one by one: with ids of at most 64 bytes, a
/// tenant's `customers` stays under 10 KB of `/status` however many its API names.
pub const MAX_CUSTOMERS: usize = 100;

/// The `customers` entry counting the events of the ids beyond the first [`MAX_CUSTOMERS`].
pub const OTHER_CUSTOMERS: &str = "(other)";

/// The `customers` entry counting the events whose `customerEid` is not a customer id.
pub const INVALID_CUSTOMERS: &str = "(invalid)";

/// Counts `n` events of `customer` into `counts`: by name for the first [`MAX_CUSTOMERS`] ids,
/// under [`OTHER_CUSTOMERS`] after them.
pub fn count_customer(counts: &mut BTreeMap<String, u64>, customer: &str, n: u64) {
    if let Some(c) = counts.get_mut(customer) {
        *c += n;
        return;
    }
    let named = counts
        .keys()
        .filter(|k| *k != OTHER_CUSTOMERS && *k != INVALID_CUSTOMERS)
        .count();
    let key = if named < MAX_CUSTOMERS {
        customer
    } else {
        OTHER_CUSTOMERS
    };
    *counts.entry(key.to_string()).or_default() += n;
}

/// Counts `n` events whose `customerEid` is not a customer id, under [`INVALID_CUSTOMERS`].
pub fn count_invalid_customers(counts: &mut BTreeMap<String, u64>, n: u64) {
    if n > 0 {
        *counts.entry(INVALID_CUSTOMERS.to_string()).or_default() += n;
    }
}

/// How far the window in flight has come: published while it streams in, so that a large
/// backfill (or a response that does not end) is seen to move.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowProgress {
    /// The window's start and end (RFC 3339).
    pub start: String,
    pub end: String,
    /// Events and raw event bytes received so far in this window.
    pub events: u64,
    pub bytes: u64,
    /// Seconds since the window's request was sent.
    pub seconds: u64,
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
    /// API history skipped because the checkpoint fell past the API's horizon (TAP 7 days,
    /// Essentials 3).
    pub gap_seconds: i64,
    /// A People source: its latest snapshot into this sink; absent for other sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotStatus>,
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
            snapshot: state
                .progress
                .as_ref()
                .map(|p| SnapshotStatus::of(p, state.checkpoint)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_are_listed_up_to_the_bound_then_counted_together() {
        let mut counts = BTreeMap::new();
        count_invalid_customers(&mut counts, 0);
        assert!(counts.is_empty());
        count_invalid_customers(&mut counts, 7);
        for i in 0..MAX_CUSTOMERS + 50 {
            count_customer(&mut counts, &format!("{i:064}"), 2);
        }
        count_customer(&mut counts, &format!("{:064}", 3), 1);
        count_customer(&mut counts, &format!("{:064}", MAX_CUSTOMERS + 1), 1);
        count_invalid_customers(&mut counts, 1);
        assert_eq!(counts.len(), MAX_CUSTOMERS + 2);
        assert_eq!(counts[&format!("{:064}", 3)], 3);
        assert_eq!(counts[OTHER_CUSTOMERS], 50 * 2 + 1);
        assert_eq!(counts[INVALID_CUSTOMERS], 8);
    }
}
