//! The time-slice poller that TRAP incidents and Isolation usage data share: APIs that answer
//! "everything created in `[start, end]`" in one unordered, unpaged (or page-capped) answer.
//!
//! Each sink's stream stands at the end of the last slice it has. A step asks for the next
//! slice after the streams furthest behind (at most the product's `slice` long, ending `lag`
//! before now, and no later than the next stream's position), delivers its records through the
//! engine and moves those streams to its end. So:
//! - **Split when too big** (invariant 3): a slice whose request times out, whose answer is over
//!   the size bound, or (Isolation) whose page is full ("there may be more") is halved and asked
//!   again at once, down to one second; after an answer that fits, slices grow back (doubling)
//!   to the product's `slice`. A one-second window that is still full is delivered as it came,
//!   and the step says so (state `partial`, the log): records past that page cannot be asked
//!   for.
//! - **Updates as new facts** (TRAP): an incident changes after creation (state, events added,
//!   quarantine results). Every `update_every`, the slices of the last `update_lookback` before
//!   the streams' position are asked again; the engine delivers what no sink has yet, i.e. the
//!   incidents whose bytes changed, and recognises exact repeats by their key (invariant 2). The
//!   dedupe keys are kept at least `update_lookback` plus a slice past the position, so a repeat
//!   is always recognised. Updates to incidents created before the look-back are not collected.
//! - **The horizon** (invariant 3): a position older than the API's horizon (Isolation 30 days;
//!   TRAP 30 days by tapfwd's choice) is moved inside it, and the skipped span reported as a gap
//!   in the log, status and metrics.
//! - **Its own failures** (invariant 6): every API error is judged by [`ApiError::disposition`]:
//!   a refused key fails this source alone (retried hourly and on reload), 429 and 5xx back off,
//!   a failing sink holds only its own stream.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::Instrument;

use super::{Context, Next, Source};
use crate::api::{ApiError, Disposition};
use crate::backoff;
use crate::clock;
use crate::engine::{KeyHorizon, Span, Streams};
use crate::event::Batch;
use crate::sinks::Sink;
use crate::status::{TenantState, TenantStatus};
use crate::store::{StoreError, TenantRecord};

pub use crate::api::records::HORIZON_SECS;

/// How far inside the horizon a clamped position lands, so that the request that follows is not
/// refused for a start that aged out on the way.
pub const HORIZON_MARGIN_SECS: i64 = 3600;

/// The shortest slice: the APIs take times to the second.
pub const MIN_SLICE: i64 = 1;

/// One slice's answer.
pub struct Fetched {
    pub batch: Batch,
    /// The answer may not hold every record of the slice (a full page): split it.
    pub full: bool,
}

/// One product's wire side of the poller.
#[async_trait]
pub trait SliceApi: Send + Sync {
    /// The product, for logs (`trap`, `isolation`).
    fn product(&self) -> &'static str;
    /// Every record created in `[start, end]` (unix seconds).
    async fn fetch(&self, start: i64, end: i64) -> Result<Fetched, ApiError>;
}

/// How a product's slices are planned, in seconds.
#[derive(Debug, Clone, Copy)]
pub struct SliceSettings {
    /// The longest slice.
    pub max_slice: i64,
    /// How far behind now a slice ends.
    pub lag: i64,
    /// A slice is asked for once it can be at least this long (`poll.interval`).
    pub interval: i64,
    /// How far before the position the look-back for updates reaches; 0: none.
    pub update_lookback: i64,
    pub update_every: i64,
}

/// The look-back for updates in progress: the next slice starts at `next`; the streams it goes
/// to stand at `until`.
#[derive(Debug, Clone, Copy)]
struct Revisit {
    next: i64,
    until: i64,
}

/// What one step asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// New records: the targets move to the slice's end.
    First,
    /// The look-back for updates: the targets stay where they are.
    Update,
}

/// One tenant's time-slice source.
pub struct SlicePoller {
    /// The tenant id: the scheduler's and the status board's key, and the store scope.
    id: Arc<str>,
    api: Box<dyn SliceApi>,
    settings: SliceSettings,
    streams: Streams,
    /// The current slice length (halved on a split, doubled back after answers that fit).
    slice: i64,
    attempts: u32,
    /// Unix seconds before which no request is sent (backoff, 429, a refused key).
    retry_at: i64,
    record: TenantRecord,
    state: TenantState,
    events_fetched: u64,
    slices_fetched: u64,
    by_status: BTreeMap<String, u64>,
    revisit: Option<Revisit>,
    /// Unix seconds at which the next look-back for updates starts.
    revisit_due: i64,
}

impl SlicePoller {
    /// Loads the tenant's streams from the store; a new stream starts `poll.initial_lookback`
    /// before now − `lag`.
    pub fn new(
        id: &str,
        api: Box<dyn SliceApi>,
        settings: SliceSettings,
        sinks: Vec<Arc<dyn Sink>>,
        ctx: &Context,
    ) -> Result<SlicePoller, StoreError> {
        let now = ctx.clock.now().timestamp();
        let initial = now - settings.lag - ctx.poll.initial_lookback.as_secs() as i64;
        let reach = Duration::from_secs((settings.update_lookback + settings.max_slice) as u64);
        let horizon = KeyHorizon::windows(ctx.poll.dedupe_horizon.max(reach)).kept_for(reach);
        let streams = Streams::open(id, sinks, initial, horizon, &ctx.store)?;
        let poller = SlicePoller {
            id: Arc::from(id),
            api,
            slice: settings.max_slice,
            settings,
            streams,
            attempts: 0,
            retry_at: 0,
            record: ctx.store.tenant_record(id)?.unwrap_or_default(),
            state: TenantState::CatchingUp,
            events_fetched: 0,
            slices_fetched: 0,
            by_status: BTreeMap::new(),
            revisit: None,
            revisit_due: now + settings.update_every,
        };
        poller.publish(ctx, None);
        Ok(poller)
    }

    async fn step_once(&mut self, ctx: &Context) -> Next {
        let now = ctx.clock.now().timestamp();
        if now < self.retry_at {
            return Next::At(self.retry_at);
        }
        if let Err(e) = self.clamp_to_horizon(ctx, now) {
            return self.store_failed(ctx, now, e);
        }
        let ready = self.streams.ready(now);
        let Some(start) = ready.iter().map(|&i| self.streams.position(i)).min() else {
            let at = self.streams.next_retry().unwrap_or(now + 1);
            return Next::At(at.max(now + 1));
        };
        let edge = now - self.settings.lag;
        let (pass, span, targets) = if edge - start >= self.settings.interval.min(self.slice) {
            let next_position = (0..self.streams.len())
                .map(|i| self.streams.position(i))
                .filter(|&p| p > start)
                .min()
                .unwrap_or(i64::MAX);
            let end = (start + self.slice).min(edge).min(next_position);
            let targets = at_position(&self.streams, &ready, start);
            (Pass::First, Span { start, end }, targets)
        } else if let Some((span, targets)) = self.next_revisit(&ready, now) {
            (Pass::Update, span, targets)
        } else {
            if !self.streams.any_failing() && self.state != TenantState::Partial {
                self.state = TenantState::Ok;
            }
            let mut at = start + self.settings.interval.min(self.slice) + self.settings.lag;
            if self.settings.update_lookback > 0 {
                at = at.min(self.revisit_due);
            }
            if let Some(r) = self.streams.blocked_until(now) {
                at = at.min(r);
            }
            return Next::At(at.max(now + 1));
        };
        // An update pass asks for `[next, next + slice]` and delivers it as reaching `until`.
        let asked = match pass {
            Pass::First => span,
            Pass::Update => Span {
                start: span.start,
                end: (span.start + self.slice).min(span.end),
            },
        };
        let started = std::time::Instant::now();
        let result = self.api.fetch(asked.start, asked.end).await;
        ctx.metrics
            .observe_fetch(&self.id, started.elapsed().as_secs_f64());
        let now = ctx.clock.now().timestamp();
        let splittable = asked.end - asked.start > MIN_SLICE;
        match result {
            Ok(f) if f.full && splittable => {
                self.count(ctx, "full");
                self.split(asked, "the answer was a full page");
                Next::Now
            }
            Err(e @ (ApiError::Timeout(_) | ApiError::BodyTooLarge(_))) if splittable => {
                self.count(ctx, e.class());
                self.split(asked, &e.to_string());
                Next::Now
            }
            Ok(f) => {
                // A one-second window still full is counted apart: what it left out is lost.
                self.count(ctx, if f.full { "partial" } else { "200" });
                if f.full {
                    let message = format!(
                        "the one-second slice at {} came back full: records past that page cannot be asked for",
                        clock::rfc3339(asked.start)
                    );
                    tracing::warn!(product = self.api.product(), "{message}");
                    self.state = TenantState::Partial;
                    self.record.last_error = Some(message);
                    self.record.last_error_at = Some(now);
                } else if self.state == TenantState::Partial {
                    self.state = TenantState::CatchingUp;
                }
                self.events_fetched += f.batch.len() as u64;
                ctx.metrics.add_fetched(&self.id, f.batch.len() as u64);
                let span = Span {
                    start: asked.start,
                    end: span.end,
                };
                match self.deliver(ctx, targets, span, &f.batch).await {
                    Err(e) => self.store_failed(ctx, now, e),
                    Ok(0) => {
                        self.state = TenantState::Retrying;
                        Next::Now
                    }
                    Ok(_) => self.slice_done(ctx, now, pass, asked, edge),
                }
            }
            Err(e) => {
                let label = e
                    .status()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.class().to_string());
                self.count(ctx, &label);
                self.fetch_failed(ctx, now, asked, e)
            }
        }
    }

    /// The next slice of the look-back for updates, and the streams it goes to, when one is
    /// due: the ready streams at the furthest position.
    fn next_revisit(&mut self, ready: &[usize], now: i64) -> Option<(Span, Vec<usize>)> {
        if self.settings.update_lookback <= 0 {
            return None;
        }
        let until = ready.iter().map(|&i| self.streams.position(i)).max()?;
        let floor = now - HORIZON_SECS + HORIZON_MARGIN_SECS;
        let revisit = match self.revisit {
            Some(r) if r.until == until => r,
            // The streams moved on since: the look-back goes on to their new position.
            Some(r) => Revisit {
                next: r.next,
                until,
            },
            None if now >= self.revisit_due => Revisit {
                next: (until - self.settings.update_lookback).max(floor),
                until,
            },
            None => return None,
        };
        if revisit.next >= until {
            self.revisit = None;
            self.revisit_due = now + self.settings.update_every;
            return None;
        }
        self.revisit = Some(revisit);
        let targets = at_position(&self.streams, ready, until);
        Some((
            Span {
                start: revisit.next,
                end: until,
            },
            targets,
        ))
    }

    /// Halves the slice after `asked` was too big for one answer.
    fn split(&mut self, asked: Span, why: &str) {
        let before = asked.end - asked.start;
        self.slice = (before / 2).max(MIN_SLICE);
        tracing::info!(product = self.api.product(), from = %clock::rfc3339(asked.start), to = %clock::rfc3339(asked.end), slice_secs = self.slice, reason = %why, "slice split");
    }

    async fn deliver(
        &mut self,
        ctx: &Context,
        targets: Vec<usize>,
        span: Span,
        batch: &Batch,
    ) -> Result<usize, StoreError> {
        let mut delivery = self.streams.begin(targets, span, &ctx.store)?;
        if !batch.is_empty() {
            delivery.send(batch, ctx.engine()).await?;
            if !delivery.any_alive() {
                return Ok(0);
            }
        }
        delivery.finish(ctx.engine()).await
    }

    /// Bookkeeping after a slice reached at least one sink.
    fn slice_done(&mut self, ctx: &Context, now: i64, pass: Pass, asked: Span, edge: i64) -> Next {
        self.slices_fetched += 1;
        self.attempts = 0;
        self.slice = (self.slice.saturating_mul(2)).min(self.settings.max_slice);
        if self.record.failed
            || (self.record.last_error.is_some() && self.state != TenantState::Partial)
        {
            if self.record.failed {
                tracing::info!("credentials accepted again; tenant recovered");
            }
            self.record.failed = false;
            self.record.last_error = None;
            if let Err(e) = ctx.store.put_tenant_record(&self.id, &self.record) {
                return self.store_failed(ctx, now, e);
            }
        }
        match pass {
            Pass::First => {
                if self.state != TenantState::Partial {
                    self.state = if edge - asked.end >= self.settings.interval {
                        TenantState::CatchingUp
                    } else {
                        TenantState::Ok
                    };
                }
            }
            Pass::Update => {
                if let Some(r) = &mut self.revisit {
                    r.next = asked.end;
                }
            }
        }
        Next::Now
    }

    fn count(&mut self, ctx: &Context, label: &str) {
        ctx.metrics.add_request(&self.id, label);
        *self.by_status.entry(label.to_string()).or_default() += 1;
    }

    fn clamp_to_horizon(&mut self, ctx: &Context, now: i64) -> Result<(), StoreError> {
        let earliest = now - HORIZON_SECS + HORIZON_MARGIN_SECS;
        let gaps = self.streams.clamp(ctx.engine(), |checkpoint| {
            if checkpoint < earliest - HORIZON_MARGIN_SECS {
                (earliest, Some((checkpoint, earliest)))
            } else {
                (checkpoint, None)
            }
        })?;
        for (sink, from, to) in gaps {
            tracing::warn!(sink = %sink, from = %clock::rfc3339(from), to = %clock::rfc3339(to),
                horizon_days = HORIZON_SECS / 86_400, product = self.api.product(),
                "checkpoint fell past the API's horizon; records in this span can no longer be fetched and are skipped");
        }
        Ok(())
    }

    fn fetch_failed(&mut self, ctx: &Context, now: i64, asked: Span, e: ApiError) -> Next {
        let max_backoff = ctx.poll.max_backoff;
        let message = e.to_string();
        let slice = format!(
            "{}/{}",
            clock::rfc3339(asked.start),
            clock::rfc3339(asked.end)
        );
        let (state, retry_at) = match e.disposition() {
            Disposition::Credentials => {
                if !self.record.failed {
                    tracing::error!(error = %message, "tenant failed: the API refuses its key; other tenants continue. Fix the key and reload");
                }
                self.record.failed = true;
                (TenantState::Failed, now + 3600)
            }
            Disposition::Throttled => {
                let wait = backoff::delay(
                    self.attempts,
                    Duration::from_secs(60),
                    Duration::from_secs(3600),
                );
                tracing::warn!(
                    retry_in_secs = wait.as_secs(),
                    "API throttled (429); waiting"
                );
                (TenantState::Throttled, now + wait.as_secs().max(1) as i64)
            }
            Disposition::TooOld | Disposition::Rejected => {
                tracing::error!(slice = %slice, error = %message, "the API rejected a slice; retrying later");
                (TenantState::Retrying, now + max_backoff.as_secs() as i64)
            }
            Disposition::Transient => {
                let wait = backoff::delay(self.attempts, Duration::from_secs(5), max_backoff);
                tracing::warn!(slice = %slice, error = %message, retry_in_secs = wait.as_secs(), "slice failed; retrying");
                (TenantState::Retrying, now + wait.as_secs().max(1) as i64)
            }
        };
        self.attempts = self.attempts.saturating_add(1);
        self.state = state;
        self.retry_at = retry_at;
        self.record.last_error = Some(message);
        self.record.last_error_at = Some(now);
        if let Err(e) = ctx.store.put_tenant_record(&self.id, &self.record) {
            return self.store_failed(ctx, now, e);
        }
        Next::At(retry_at)
    }

    fn store_failed(&mut self, ctx: &Context, now: i64, e: StoreError) -> Next {
        tracing::error!(error = %e, "state store failed; holding this tenant");
        self.state = TenantState::Retrying;
        self.record.last_error = Some(e.to_string());
        self.record.last_error_at = Some(now);
        self.retry_at = now + ctx.poll.max_backoff.as_secs() as i64;
        Next::At(self.retry_at)
    }

    /// Puts this source's state on the status board and its gauges into the metrics.
    fn publish(&self, ctx: &Context, next_at: Option<i64>) {
        let now = ctx.clock.now().timestamp();
        let sinks = self.streams.statuses(now, self.settings.lag);
        for s in &sinks {
            ctx.metrics
                .set_stream_gauges(&self.id, &s.sink, s.behind_seconds, s.backlog_seconds);
        }
        // No request budget: only the refused-credentials gauge (a budget of 0 would page).
        ctx.metrics.set_tenant_failed(&self.id, self.record.failed);
        ctx.status.put(TenantStatus {
            tenant: self.id.to_string(),
            state: self.state,
            last_error: self.record.last_error.clone(),
            last_error_at: self.record.last_error_at.map(clock::rfc3339),
            next_poll_at: next_at.map(clock::rfc3339),
            events_fetched: self.events_fetched,
            windows_fetched: self.slices_fetched,
            requests_by_status: self.by_status.clone(),
            sinks,
            ..Default::default()
        });
    }
}

/// The streams of `ready` that stand at `position`.
fn at_position(streams: &Streams, ready: &[usize], position: i64) -> Vec<usize> {
    ready
        .iter()
        .copied()
        .filter(|&i| streams.position(i) == position)
        .collect()
}

#[async_trait]
impl Source for SlicePoller {
    fn id(&self) -> &str {
        &self.id
    }

    /// One slice of work inside the tenant's span, so every line it logs names the tenant.
    async fn step(&mut self, ctx: &Context) -> Next {
        let span = tracing::info_span!("tenant", tenant = %self.id);
        let next = self.step_once(ctx).instrument(span).await;
        self.publish(ctx, next.at());
        next
    }
}
