//! `[poll]` and `[log]`: how and when every tenant's sources run, and the daemon's log format.
//! Shared by all products; each product's own keys are in its file beside this one.

use std::time::Duration;

use serde::Deserialize;

use super::MAX_WINDOW;

/// Polling schedule and limits, shared by all tenants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// How often a caught-up tenant asks for the next window. Default `5m`; at least `1m`.
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub interval: Duration,
    /// Availability lag: windows end at least this long before now, because the API publishes
    /// events up to about 30 minutes late. Default `30m`; at least `1m`. Lower values lose late
    /// events.
    #[serde(with = "humantime_serde", default = "default_lag")]
    pub lag: Duration,
    /// Longest window asked for in one request, between `30s` and `1h`. Default `1h`.
    #[serde(with = "humantime_serde", default = "default_max_window")]
    pub max_window: Duration,
    /// Where a tenant with no checkpoint starts: this long before `now - lag`. Default `1h`, at
    /// most `7d` (the API's horizon).
    #[serde(with = "humantime_serde", default = "default_initial_lookback")]
    pub initial_lookback: Duration,
    /// Windows fetched at once across all tenants. Default `16`.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long dedupe keys are remembered after the window that delivered them. It must cover
    /// every overlap the daemon can produce (the inclusive window end, a window retried after a
    /// partial delivery). Default `2h`. A TAP or Essentials tenant with a late sweep keeps its
    /// keys for at least `late_sweep + max_window` whatever this says, so that the sweep
    /// recognises everything delivered before it.
    #[serde(with = "humantime_serde", default = "default_dedupe_horizon")]
    pub dedupe_horizon: Duration,
    /// The late sweep of TAP and Essentials tenants: every window is queried once more when its
    /// end is this long ago, and the events it finds that were published after the first query
    /// (later than `lag`) are delivered; those already delivered are recognised by their dedupe
    /// keys. Its requests come out of what steady polling leaves, before a backfill's. Default
    /// `3h`; `0s` turns it off; otherwise more than `lag` and at most `1d`. A tenant's
    /// `late_sweep` overrides it.
    #[serde(with = "humantime_serde", default = "default_late_sweep")]
    pub late_sweep: Duration,
    /// Largest number of events handed to a sink at once. Default `10000`.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// Largest number of raw event bytes handed to a sink at once. Default `1048576` (1 MiB;
    /// 8 MiB before issue 13: larger batches saved no measurable CPU and cost memory per window
    /// in flight).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Most raw event bytes that the batches of all windows together may hold between the
    /// response readers and the sinks (waiting to be delivered or being delivered), in bytes. A
    /// reader whose next batch does not fit waits, its response unread (the server waits too),
    /// so peak memory is about `buffer_bytes + concurrency × batch_bytes` above idle whatever
    /// the size of the responses. Default `8388608` (8 MiB); at least `batch_bytes`.
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: usize,
    /// Longest wait for the next bytes of a response (not for the whole response, which may be
    /// hundreds of MB). Default `60s`; at least `1s`.
    #[serde(with = "humantime_serde", default = "default_read_timeout")]
    pub read_timeout: Duration,
    /// Longest a whole window may take, from the request to its last event, before it fails and
    /// is retried with backoff (releasing its concurrency permit): a response that trickles a
    /// byte at a time under `read_timeout`, or never ends, cannot hold a tenant or a permit
    /// forever. Default `30m`, far above a large real hour (hundreds of MB in a few minutes);
    /// at least `1s`.
    #[serde(with = "humantime_serde", default = "default_window_deadline")]
    pub window_deadline: Duration,
    /// Most events one window may hold; a response with more fails (`window over
    /// poll.max_window_events`) and is retried after `max_backoff`, loudly. The largest real
    /// hours are hundreds of thousands of events. Default `5000000`; at least `1000`.
    #[serde(default = "default_max_window_events")]
    pub max_window_events: u64,
    /// Most raw event bytes one window may hold, as `max_window_events`. Default `8589934592`
    /// (8 GiB; a large real hour is about 600 MB); at least `1048576`.
    #[serde(default = "default_max_window_bytes")]
    pub max_window_bytes: u64,
    /// Longest wait between retries of a failing window or sink. Default `10m`; at least `1s`.
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// How long a stopping daemon waits for in-flight windows. Default `20s`; at least `1s`.
    #[serde(with = "humantime_serde", default = "default_shutdown_grace")]
    pub shutdown_grace: Duration,
    /// How long the state store may keep failing (writes or flushes erroring, a disk full, a
    /// flush that does not return) before the daemon exits non-zero, so that the service manager
    /// restarts it and the store is opened afresh (sled does not recover from an I/O error in a
    /// running process). Meanwhile `/readyz` answers 503 and the store is retried. Default `2m`;
    /// at least `5s`.
    #[serde(with = "humantime_serde", default = "default_store_failure_exit")]
    pub store_failure_exit: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_lag() -> Duration {
    Duration::from_secs(1800)
}
fn default_max_window() -> Duration {
    MAX_WINDOW
}
fn default_initial_lookback() -> Duration {
    Duration::from_secs(3600)
}
fn default_concurrency() -> usize {
    16
}
fn default_dedupe_horizon() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_late_sweep() -> Duration {
    Duration::from_secs(3 * 3600)
}
fn default_batch_events() -> usize {
    10_000
}
fn default_batch_bytes() -> usize {
    1 << 20
}
fn default_buffer_bytes() -> usize {
    8 << 20
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_window_deadline() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_max_window_events() -> u64 {
    5_000_000
}
fn default_max_window_bytes() -> u64 {
    8 << 30
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(600)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(20)
}
fn default_store_failure_exit() -> Duration {
    Duration::from_secs(120)
}

/// The longest `late_sweep`: a sweep older than a day costs a day of dedupe keys per tenant and
/// would come near the Essentials API's 3-day horizon.
pub const MAX_LATE_SWEEP: Duration = Duration::from_secs(86_400);

impl PollConfig {
    /// Why `sweep` (the `late_sweep` of `[poll]` or of a tenant) cannot be used with this
    /// `lag`, if it cannot: it is `0s` (off), or more than `lag` (a sweep no older than the
    /// first query finds nothing new) and at most [`MAX_LATE_SWEEP`].
    pub fn late_sweep_problem(&self, sweep: Duration) -> Option<String> {
        if sweep.is_zero() || (sweep > self.lag && sweep <= MAX_LATE_SWEEP) {
            return None;
        }
        Some(format!(
            "must be 0s (off), or more than poll.lag ({}) and at most 1d, got {}",
            humantime::format_duration(self.lag),
            humantime::format_duration(sweep)
        ))
    }
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: default_interval(),
            lag: default_lag(),
            max_window: default_max_window(),
            initial_lookback: default_initial_lookback(),
            concurrency: default_concurrency(),
            dedupe_horizon: default_dedupe_horizon(),
            late_sweep: default_late_sweep(),
            batch_events: default_batch_events(),
            batch_bytes: default_batch_bytes(),
            buffer_bytes: default_buffer_bytes(),
            read_timeout: default_read_timeout(),
            window_deadline: default_window_deadline(),
            max_window_events: default_max_window_events(),
            max_window_bytes: default_max_window_bytes(),
            max_backoff: default_max_backoff(),
            shutdown_grace: default_shutdown_grace(),
            store_failure_exit: default_store_failure_exit(),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default; human-readable) or `json` (one object per line, for journald or a log
    /// shipper). `RUST_LOG` sets the level filter (default `info`).
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}
