//! One tenant's poller: plan the next window, fetch it, drop what each sink already has, deliver
//! the rest, and move each sink's checkpoint only when that sink has the whole window.
//!
//! Keeps invariants 1–4 and 6 for its tenant:
//! - Each sink has its own checkpoint (a *stream*). A window goes to the streams whose checkpoint
//!   is its start; a stream that fails drops out of that window and retries on its own schedule,
//!   so a sink that is down never causes duplicates in the sinks that are up (1, 2).
//! - Events are delivered in batches as the response streams in. After each batch a sink
//!   confirms, its dedupe keys are committed; the checkpoint moves after the last batch. A window
//!   that fails half way is fetched again and the delivered half is recognised by its keys (2).
//! - Windows come from [`crate::tap::window::plan`] and are clamped into the API's horizon (3).
//! - Requests are counted in the tenant's rolling 24 h [`Budget`]; backlog yields to steady
//!   polling, and a 429 waits for budget to be released (4).
//! - A poller owns nothing shared but the store, the HTTP client and a concurrency permit held by
//!   the scheduler; its failures end in its own backoff (6).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::backoff;
use crate::budget::{Budget, Demand};
use crate::clock::{self, Clock};
use crate::config::{PollConfig, TenantConfig};
use crate::event::EventKey;
use crate::metrics::Metrics;
use crate::sinks::{Sink, SinkError};
use crate::status::{SinkStatus, StatusBoard, TenantStatus};
use crate::store::{Store, StoreError, StreamState, TenantRecord};
use crate::tap::client::{BatchLimits, Credentials, TapClient, TapError, WindowItem};
use crate::tap::window::{self, Cadence, Plan, Window};

/// A backfill logs its progress once per this many windows (a day of 1-hour windows).
pub const CATCH_UP_LOG_EVERY: u64 = 24;

/// What every poller shares.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub client: TapClient,
    pub clock: Clock,
    pub poll: Arc<PollConfig>,
    pub status: Arc<StatusBoard>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

/// One sink's progress for this tenant.
struct Stream {
    sink: Arc<dyn Sink>,
    state: StreamState,
    /// Consecutive failed deliveries.
    attempts: u32,
    /// Unix seconds before which this stream is not retried.
    retry_at: i64,
    last_error: Option<String>,
    delivered: u64,
    deduplicated: u64,
}

/// Why a window stopped before it was complete.
#[derive(Debug, thiserror::Error)]
enum WindowError {
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stopped for shutdown")]
    Shutdown,
}

/// When the scheduler should run this poller again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// More work is ready now (a backlog): requeue behind the tenants already waiting.
    Now,
    /// Unix seconds.
    At(i64),
}

/// Whether two settings of a tenant poll the same way (a reload keeps the running poller when they
/// do). Compares everything a poller uses: where, who, how often, and into which sinks.
pub fn same_setup(
    a: &TenantConfig,
    a_secret: &SecretString,
    b: &TenantConfig,
    b_secret: &SecretString,
) -> bool {
    use secrecy::ExposeSecret;
    a.base_url == b.base_url
        && a.principal == b.principal
        && a.requests_per_day == b.requests_per_day
        && a.sinks == b.sinks
        && a.threat_status == b.threat_status
        && a_secret.expose_secret() == b_secret.expose_secret()
}

/// One tenant's poller.
pub struct Poller {
    id: Arc<str>,
    config: Arc<TenantConfig>,
    secret: SecretString,
    streams: Vec<Stream>,
    budget: Budget,
    phase: i64,
    /// Consecutive failed fetches.
    attempts: u32,
    /// Unix seconds before which no request is sent (backoff, 429, bad credentials).
    retry_at: i64,
    /// Extra margin inside the 7-day horizon, grown when the API says a start is too old.
    horizon_margin: i64,
    record: TenantRecord,
    state: &'static str,
    events_fetched: u64,
    windows_fetched: u64,
    by_status: std::collections::BTreeMap<String, u64>,
}

impl Poller {
    /// Loads the tenant's streams and budget from the store; a new stream starts
    /// `initial_lookback` before `now - lag`.
    pub fn new(
        id: &str,
        config: Arc<TenantConfig>,
        secret: SecretString,
        sinks: Vec<Arc<dyn Sink>>,
        ctx: &Context,
    ) -> Result<Poller, StoreError> {
        let now = ctx.clock.now().timestamp();
        let initial = clock::floor_minute(
            now - ctx.poll.lag.as_secs() as i64 - ctx.poll.initial_lookback.as_secs() as i64,
        );
        let mut streams = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let state = match ctx.store.stream(id, sink.name())? {
                Some(s) => s,
                None => {
                    let s = StreamState {
                        checkpoint: initial,
                        ..Default::default()
                    };
                    ctx.store.put_stream(id, sink.name(), &s)?;
                    s
                }
            };
            streams.push(Stream {
                sink,
                state,
                attempts: 0,
                retry_at: 0,
                last_error: None,
                delivered: 0,
                deduplicated: 0,
            });
        }
        let poller = Poller {
            id: Arc::from(id),
            phase: window::phase_of(id, ctx.poll.interval.as_secs() as i64),
            budget: ctx.store.budget(id)?.unwrap_or_default(),
            record: ctx.store.tenant_record(id)?.unwrap_or_default(),
            config,
            secret,
            streams,
            attempts: 0,
            retry_at: 0,
            horizon_margin: window::HORIZON_MARGIN_SECS,
            state: "catching_up",
            events_fetched: 0,
            windows_fetched: 0,
            by_status: Default::default(),
        };
        poller.publish(ctx, None);
        Ok(poller)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether this poller was built from the same settings (reload keeps it when true).
    pub fn same_setup(&self, config: &TenantConfig, secret: &SecretString) -> bool {
        same_setup(&self.config, &self.secret, config, secret)
    }

    fn cadence(ctx: &Context) -> Cadence {
        Cadence {
            interval: ctx.poll.interval.as_secs() as i64,
            lag: ctx.poll.lag.as_secs() as i64,
            max_window: ctx.poll.max_window.as_secs() as i64,
        }
    }

    /// Does at most one window of work; says when to run again.
    pub async fn step(&mut self, ctx: &Context) -> Next {
        let next = self.step_inner(ctx).await;
        let at = match next {
            Next::Now => None,
            Next::At(t) => Some(t),
        };
        self.publish(ctx, at);
        next
    }

    async fn step_inner(&mut self, ctx: &Context) -> Next {
        let now = ctx.clock.now().timestamp();
        if now < self.retry_at {
            return Next::At(self.retry_at);
        }
        if let Err(e) = self.clamp_to_horizon(ctx, now) {
            return self.store_failed(ctx, now, e);
        }
        let ready: Vec<usize> = (0..self.streams.len())
            .filter(|&i| self.streams[i].retry_at <= now)
            .collect();
        let Some(start) = ready
            .iter()
            .map(|&i| self.streams[i].state.checkpoint)
            .min()
        else {
            let t = self
                .streams
                .iter()
                .map(|s| s.retry_at)
                .min()
                .unwrap_or(now + 60);
            return Next::At(t);
        };
        let cap = ready
            .iter()
            .map(|&i| self.streams[i].state.checkpoint)
            .filter(|&c| c > start)
            .min();
        let cadence = Self::cadence(ctx);
        let (window, demand) = match window::plan(start, now, cap, cadence, self.phase) {
            Plan::WaitUntil(t) => {
                if self.state == "catching_up" && self.windows_fetched > 0 {
                    tracing::info!(tenant = %self.id, windows = self.windows_fetched, events = self.events_fetched, "caught up");
                }
                self.state = if self.record.failed {
                    "failed"
                } else if self.streams.iter().any(|s| s.last_error.is_some()) {
                    // Caught up where it can be, but a sink is failing and holds its backlog.
                    "degraded"
                } else {
                    "ok"
                };
                let blocked = self
                    .streams
                    .iter()
                    .map(|s| s.retry_at)
                    .filter(|&r| r > now)
                    .min();
                return Next::At(blocked.map_or(t, |b| b.min(t)));
            }
            Plan::Fetch { window, demand } => (window, demand),
        };
        let steady_per_day = (86_400 / cadence.interval.max(60)) as u32;
        if !self
            .budget
            .allows(now, demand, self.config.requests_per_day, steady_per_day)
        {
            self.state = "waiting_for_budget";
            let at = self
                .budget
                .next_release(now)
                .unwrap_or(now + 300)
                .max(now + 1);
            tracing::debug!(tenant = %self.id, until = %clock::rfc3339(at), "request budget spent; waiting");
            return Next::At(at);
        }
        self.budget.record(now);
        if let Err(e) = ctx.store.put_budget(&self.id, &self.budget) {
            return self.store_failed(ctx, now, e);
        }
        let targets: Vec<usize> = ready
            .into_iter()
            .filter(|&i| self.streams[i].state.checkpoint == start)
            .collect();
        let started = std::time::Instant::now();
        let result = self.fetch_window(ctx, window, &targets).await;
        ctx.metrics
            .observe_fetch(&self.id, started.elapsed().as_secs_f64());
        let now = ctx.clock.now().timestamp();
        match result {
            Ok(0) => {
                // The API answered but every sink failed; each stream has its own retry time.
                self.count_request(ctx, "200".into());
                self.state = "retrying";
                Next::Now
            }
            Ok(_) => {
                self.count_request(ctx, "200".into());
                self.windows_fetched += 1;
                self.attempts = 0;
                if self.record.failed || self.record.last_error.is_some() {
                    if self.record.failed {
                        tracing::info!(tenant = %self.id, "credentials accepted again; tenant recovered");
                    }
                    self.record.failed = false;
                    self.record.last_error = None;
                    let _ = ctx.store.put_tenant_record(&self.id, &self.record);
                }
                let was_catching_up = self.state == "catching_up";
                self.state = match demand {
                    Demand::Backlog => "catching_up",
                    Demand::Steady => "ok",
                };
                // Progress of a long backfill: one line per CATCH_UP_LOG_EVERY windows, and one
                // when it ends; never per event.
                match demand {
                    Demand::Backlog if self.windows_fetched % CATCH_UP_LOG_EVERY == 0 => {
                        if let Some(behind) = self.behind(now) {
                            tracing::info!(tenant = %self.id, windows = self.windows_fetched, events = self.events_fetched, behind = %humantime::format_duration(Duration::from_secs(behind.max(0) as u64)), "catching up");
                        }
                    }
                    Demand::Steady if was_catching_up => {
                        tracing::info!(tenant = %self.id, windows = self.windows_fetched, events = self.events_fetched, "caught up");
                    }
                    _ => {}
                }
                Next::Now
            }
            Err(WindowError::Shutdown) => Next::At(now),
            Err(WindowError::Store(e)) => self.store_failed(ctx, now, e),
            Err(WindowError::Tap(e)) => {
                let label = e
                    .status()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.class().to_string());
                self.count_request(ctx, label);
                self.fetch_failed(ctx, now, window, e)
            }
        }
    }

    /// Counts one API response by status (`200`, `429`, `transport`, ...) in the status board
    /// and the metrics.
    fn count_request(&mut self, ctx: &Context, label: String) {
        ctx.metrics.add_request(&self.id, &label);
        *self.by_status.entry(label).or_default() += 1;
    }

    fn behind(&self, now: i64) -> Option<i64> {
        self.streams.iter().map(|s| now - s.state.checkpoint).max()
    }

    fn clamp_to_horizon(&mut self, ctx: &Context, now: i64) -> Result<(), StoreError> {
        for s in &mut self.streams {
            let (start, gap) =
                window::clamp_to_horizon(s.state.checkpoint, now, self.horizon_margin);
            if let Some((from, to)) = gap {
                s.state.checkpoint = start;
                s.state.gap_seconds += to - from;
                s.state.last_gap = Some((from, to));
                ctx.store.put_stream(&self.id, s.sink.name(), &s.state)?;
                ctx.metrics.add_gap(&self.id, s.sink.name(), to - from);
                tracing::warn!(tenant = %self.id, sink = %s.sink.name(), from = %clock::rfc3339(from), to = %clock::rfc3339(to),
                    "checkpoint fell past the API's 7-day horizon; events in this span can no longer be fetched and are skipped");
            }
        }
        Ok(())
    }

    fn fetch_failed(&mut self, ctx: &Context, now: i64, window: Window, e: TapError) -> Next {
        let poll = &ctx.poll;
        let message = e.to_string();
        let (state, retry_at) = match &e {
            TapError::Unauthorized | TapError::Forbidden => {
                if !self.record.failed {
                    tracing::error!(tenant = %self.id, error = %message, "tenant failed: the API refuses its credentials; other tenants continue. Fix the credentials and reload");
                }
                self.record.failed = true;
                ("failed", now + 3600)
            }
            TapError::Throttled => {
                let release = self.budget.next_release(now).unwrap_or(now);
                let wait = backoff::delay(
                    self.attempts,
                    Duration::from_secs(300),
                    Duration::from_secs(3600),
                );
                tracing::warn!(tenant = %self.id, "API quota exhausted (429); waiting for budget");
                (
                    "throttled",
                    release.min(now + 3600).max(now + wait.as_secs() as i64),
                )
            }
            TapError::TooOld(_) => {
                // Our clock or the API's disagree about the horizon: step further inside it.
                self.horizon_margin = (self.horizon_margin + 3600).min(86_400);
                tracing::warn!(tenant = %self.id, error = %message, margin_secs = self.horizon_margin, "start too old for the API; clamping further inside the horizon");
                ("retrying", now)
            }
            TapError::BadRequest(_) => {
                tracing::error!(tenant = %self.id, window = %window.interval_param(), error = %message, "the API rejected a window; retrying later");
                ("retrying", now + poll.max_backoff.as_secs() as i64)
            }
            _ => {
                let wait = backoff::delay(self.attempts, Duration::from_secs(5), poll.max_backoff);
                tracing::warn!(tenant = %self.id, window = %window.interval_param(), error = %message, retry_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())), "window failed; retrying");
                ("retrying", now + wait.as_secs().max(1) as i64)
            }
        };
        self.attempts = self.attempts.saturating_add(1);
        self.state = state;
        self.retry_at = retry_at;
        self.record.last_error = Some(message);
        self.record.last_error_at = Some(now);
        let _ = ctx.store.put_tenant_record(&self.id, &self.record);
        if retry_at <= now {
            Next::Now
        } else {
            Next::At(retry_at)
        }
    }

    fn store_failed(&mut self, ctx: &Context, now: i64, e: StoreError) -> Next {
        tracing::error!(tenant = %self.id, error = %e, "state store failed; holding this tenant");
        self.state = "retrying";
        self.record.last_error = Some(e.to_string());
        self.record.last_error_at = Some(now);
        self.retry_at = now + ctx.poll.max_backoff.as_secs() as i64;
        Next::At(self.retry_at)
    }

    /// Fetches `window` and delivers it to the streams `targets`; returns how many of them now
    /// have the whole window (the others failed and wait for their own retry).
    async fn fetch_window(
        &mut self,
        ctx: &Context,
        window: Window,
        targets: &[usize],
    ) -> Result<usize, WindowError> {
        let creds = Credentials {
            principal: &self.config.principal,
            secret: &self.secret,
            threat_status: &self.config.threat_status,
        };
        let limits = BatchLimits {
            events: ctx.poll.batch_events,
            bytes: ctx.poll.batch_bytes,
        };
        let mut rx = ctx
            .client
            .fetch_window(&self.config.base_url, &creds, window, limits)
            .await?;
        let horizon = ctx.poll.dedupe_horizon.as_secs() as i64;
        let mut seen: Vec<HashSet<EventKey>> = Vec::with_capacity(targets.len());
        for &i in targets {
            let mut set = HashSet::new();
            ctx.store.load_keys(
                &self.id,
                self.streams[i].sink.name(),
                window.start - horizon,
                &mut set,
            )?;
            seen.push(set);
        }
        let mut alive: Vec<bool> = vec![true; targets.len()];
        let tenant: &str = &self.id;
        loop {
            let item = match rx.recv().await {
                Some(item) => item?,
                None => {
                    return Err(TapError::Transport("response reader stopped early".into()).into())
                }
            };
            let batch = match item {
                WindowItem::Batch(b) => b,
                WindowItem::Done(_) => break,
            };
            self.events_fetched += batch.len() as u64;
            ctx.metrics.add_fetched(tenant, batch.len() as u64);
            let mut work = Vec::new();
            for (slot, &i) in targets.iter().enumerate() {
                if !alive[slot] {
                    continue;
                }
                let set = &mut seen[slot];
                let fresh = batch.filter(|e| set.insert(e.key));
                let dups = (batch.len() - fresh.len()) as u64;
                let stream = &self.streams[i];
                let sink = stream.sink.clone();
                let store = ctx.store.clone();
                work.push(async move {
                    if fresh.is_empty() {
                        return (slot, dups, 0, Ok(()));
                    }
                    let keys: Vec<EventKey> = fresh.events.iter().map(|e| e.key).collect();
                    let sink_name = sink.name().to_string();
                    let result = sink
                        .deliver(
                            tenant,
                            &fresh,
                            Box::new(move |pos| {
                                store.commit_chunk(tenant, &sink_name, window.end, &keys, pos)
                            }),
                        )
                        .await;
                    (slot, dups, fresh.len() as u64, result)
                });
            }
            for (slot, dups, delivered, result) in join_all(work).await {
                let i = targets[slot];
                let stream = &mut self.streams[i];
                stream.deduplicated += dups;
                ctx.metrics
                    .add_deduplicated(tenant, stream.sink.name(), dups);
                match result {
                    Ok(()) => {
                        stream.delivered += delivered;
                        ctx.metrics
                            .add_delivered(tenant, stream.sink.name(), delivered);
                    }
                    Err(e) => {
                        alive[slot] = false;
                        Self::sink_failed(stream, ctx, tenant, e);
                    }
                }
            }
            ctx.store.flush().await?;
            if ctx.shutdown.is_cancelled() {
                return Err(WindowError::Shutdown);
            }
            if !alive.iter().any(|a| *a) {
                // Every target failed: stop reading; the window is retried per stream.
                return Ok(0);
            }
        }
        for (slot, &i) in targets.iter().enumerate() {
            if !alive[slot] {
                continue;
            }
            let stream = &mut self.streams[i];
            let mut state = stream.state.clone();
            state.checkpoint = window.end;
            ctx.store
                .commit_window(tenant, stream.sink.name(), &state, window.end - horizon)?;
            stream.state = state;
            if stream.attempts > 0 {
                tracing::info!(tenant = %tenant, sink = %stream.sink.name(), "sink recovered");
            }
            stream.attempts = 0;
            stream.last_error = None;
        }
        ctx.store.flush().await?;
        Ok(alive.iter().filter(|a| **a).count())
    }

    fn sink_failed(stream: &mut Stream, ctx: &Context, tenant: &str, e: SinkError) {
        let now = ctx.clock.now().timestamp();
        let base = if e.is_retryable() {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(30)
        };
        let wait = backoff::delay(stream.attempts, base, ctx.poll.max_backoff);
        stream.attempts = stream.attempts.saturating_add(1);
        stream.retry_at = now + wait.as_secs().max(1) as i64;
        ctx.metrics
            .add_sink_error(tenant, stream.sink.name(), e.class());
        if e.is_retryable() {
            tracing::warn!(tenant = %tenant, sink = %stream.sink.name(), error = %e, retry_in_secs = wait.as_secs(), "sink unavailable; holding its checkpoint");
        } else {
            tracing::error!(tenant = %tenant, sink = %stream.sink.name(), error = %e, retry_in_secs = wait.as_secs(), "sink rejected events; holding its checkpoint until it accepts them");
        }
        stream.last_error = Some(e.to_string());
    }

    /// Puts this tenant's state on the status board and its gauges into the metrics.
    fn publish(&self, ctx: &Context, next_at: Option<i64>) {
        let now = ctx.clock.now().timestamp();
        let lag = ctx.poll.lag.as_secs() as i64;
        let mut budget = self.budget.clone();
        let used = budget.used(now);
        let sinks: Vec<SinkStatus> = self
            .streams
            .iter()
            .map(|s| SinkStatus {
                delivered: s.delivered,
                deduplicated: s.deduplicated,
                failing: s.last_error.is_some(),
                last_error: s.last_error.clone(),
                ..SinkStatus::from_stream(s.sink.name(), &s.state, now, lag)
            })
            .collect();
        for s in &sinks {
            ctx.metrics
                .set_stream_gauges(&self.id, &s.sink, s.behind_seconds, s.backlog_seconds);
        }
        ctx.metrics.set_budget(
            &self.id,
            i64::from(self.config.requests_per_day) - i64::from(used),
            self.record.failed,
        );
        ctx.status.put(TenantStatus {
            tenant: self.id.to_string(),
            state: self.state.to_string(),
            last_error: self.record.last_error.clone(),
            last_error_at: self.record.last_error_at.map(clock::rfc3339),
            requests_24h: used,
            requests_limit: self.config.requests_per_day,
            next_poll_at: next_at.map(clock::rfc3339),
            events_fetched: self.events_fetched,
            windows_fetched: self.windows_fetched,
            requests_by_status: self.by_status.clone(),
            sinks,
        });
    }
}
