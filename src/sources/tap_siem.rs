//! The TAP SIEM source: one tenant's window poller. Plans the next window after the streams'
//! positions, fetches it within the tenant's budget, and hands its events to the delivery engine
//! as the response streams in.
//!
//! Keeps invariants 3, 4 and 6 for its tenant (the engine keeps 1 and 2):
//! - Windows come from [`crate::api::window::plan`] and are clamped into the API's horizon (TAP
//!   7 days, Essentials 3);
//!   a skipped span is reported, and a 400 for a start the API finds too old moves further
//!   inside the horizon instead of looping (3).
//! - Requests are counted in the tenant's rolling 24 h [`Budget`]; backlog yields to steady
//!   polling, and a 429 waits for budget to be released (4).
//! - A window goes to the streams whose position is its start, ends no later than the next
//!   stream's position, and moves each stream to its end only once that stream's sink has it.
//! - A poller owns nothing shared but the store, the HTTP client and a concurrency permit held by
//!   the scheduler; its failures end in its own backoff ([`ApiError::disposition`]), and a window
//!   that is not complete within `poll.window_deadline` fails at its next wait for the API, so a
//!   trickling or endless response gives its permit back (6).
//! - With `enrich`, each batch passes through the tenant's [`TenantEnricher`] on its way to the
//!   engine: what it finds travels beside the events, and it never holds a batch longer than
//!   `enrichment.wait` nor fails one.
//! - The late sweep (`late_sweep`, default 3 h) queries every window once more when its end is
//!   that old, so that events the API published later than `lag` are not lost (3). Each stream
//!   has a sweep position beside its checkpoint ([`crate::store::StreamState::swept`]); a sweep
//!   window ends no later than its targets' checkpoints, is delivered through the engine's
//!   dedupe keys (kept for `late_sweep + max_window`), so only what the first query missed
//!   reaches a sink, and moves only the sweep positions. A window first fetched when it was
//!   already that old counts as swept. The budget asks steady polls first, then the sweep, then
//!   backlog (4); a failing sweep window has its own backoff and holds back nothing else (6).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use tracing::Instrument;

use super::{Context, Next, Source};
use crate::api::siem::{BatchLimits, WindowItem};
use crate::api::split::SplitSummary;
use crate::api::window::{self, Window};
use crate::api::{ApiError, Disposition};
use crate::backoff;
use crate::budget::{Budget, Demand};
use crate::clock;
use crate::config::TenantConfig;
use crate::engine::{KeyHorizon, Span, Streams};
use crate::enrich::TenantEnricher;
use crate::sinks::Sink;
use crate::status::{TenantState, TenantStatus, WindowProgress};
use crate::store::{StoreError, TenantRecord};

mod plan;
mod sweep;
use plan::{Job, Pass};
use sweep::{sweep_budget_key, Sweep, SweepPlan};

/// A backfill logs its progress once per this many windows (a day of 1-hour windows).
pub const CATCH_UP_LOG_EVERY: u64 = 24;

/// Why a window stopped before it was complete.
#[derive(Debug, thiserror::Error)]
enum WindowError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stopped for shutdown")]
    Shutdown,
}

/// One tenant's poller.
pub struct Poller {
    id: Arc<str>,
    config: Arc<TenantConfig>,
    secret: SecretString,
    /// The tenant's sinks and how far each has the events.
    streams: Streams,
    budget: Budget,
    /// Seconds into each interval at which this tenant polls (spreads tenants over the interval).
    phase: i64,
    /// Consecutive failed fetches.
    attempts: u32,
    /// Unix seconds before which no request is sent (backoff, 429, bad credentials).
    retry_at: i64,
    /// Extra margin inside the API's horizon, grown when the API says a start is too old.
    horizon_margin: i64,
    /// The last error and whether the credentials are refused, as kept in the store.
    record: TenantRecord,
    state: TenantState,
    events_fetched: u64,
    windows_fetched: u64,
    /// The window in flight and how far it has come, published while it streams in.
    progress: Option<WindowProgress>,
    /// What this tenant's responses held that the daemon does not use, warned about once.
    oddities: Oddities,
    by_status: std::collections::BTreeMap<String, u64>,
    /// Threat enrichment, when the tenant sets `enrich` (it never holds a window back).
    enricher: Option<TenantEnricher>,
    /// Essentials: events received per child organisation since start, for status.
    customers: std::collections::BTreeMap<String, u64>,
    /// How old a window is when the late sweep queries it again, in seconds; `None`: off.
    sweep_age: Option<i64>,
    sweep: Sweep,
}

/// Adds the events of `batch` per customer (runs of one customer counted at once).
fn count_customers(
    counts: &mut std::collections::BTreeMap<String, u64>,
    batch: &crate::event::Batch,
) {
    let mut run: Option<(&str, u64)> = None;
    for e in &batch.events {
        let Some(c) = e.customer.as_deref() else {
            continue;
        };
        match &mut run {
            Some((last, n)) if *last == c => *n += 1,
            _ => {
                if let Some((last, n)) = run {
                    crate::status::count_customer(counts, last, n);
                }
                run = Some((c, 1));
            }
        }
    }
    if let Some((last, n)) = run {
        crate::status::count_customer(counts, last, n);
    }
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
        let enricher = if config.enrich().is_empty() {
            None
        } else {
            Some(ctx.enricher.for_tenant(
                id,
                config.base_url(),
                config.principal(),
                secret.clone(),
                config.enrich(),
                &ctx.store,
            )?)
        };
        let sweep_age = config.late_sweep(&ctx.poll);
        let mut horizon = KeyHorizon::windows(ctx.poll.dedupe_horizon);
        if let Some(age) = sweep_age {
            horizon = horizon.kept_for(age + ctx.poll.max_window);
        }
        let mut streams = Streams::open(id, sinks, initial, horizon, &ctx.store)?;
        if config.customer_sinks().is_some_and(|c| !c.is_empty()) {
            // An Essentials partner: each child organisation's events go to its own sinks.
            streams.route(|sink| {
                let (config, sink) = (config.clone(), sink.to_string());
                Arc::new(move |customer| config.routes(&sink, customer))
            });
        }
        let poller = Poller {
            enricher,
            id: Arc::from(id),
            phase: window::phase_of(id, ctx.poll.interval.as_secs() as i64),
            streams,
            budget: ctx.store.budget(id)?.unwrap_or_default(),
            record: ctx.store.tenant_record(id)?.unwrap_or_default(),
            config,
            secret,
            attempts: 0,
            retry_at: 0,
            horizon_margin: window::HORIZON_MARGIN_SECS,
            state: TenantState::CatchingUp,
            events_fetched: 0,
            windows_fetched: 0,
            progress: None,
            oddities: Oddities::default(),
            by_status: Default::default(),
            customers: Default::default(),
            sweep_age: sweep_age.map(|d| d.as_secs() as i64),
            sweep: Sweep {
                budget: ctx.store.budget(&sweep_budget_key(id))?.unwrap_or_default(),
                ..Default::default()
            },
        };
        poller.publish(ctx, None);
        Ok(poller)
    }

    /// Does at most one window of work; says when to run again.
    async fn step_once(&mut self, ctx: &Context) -> Next {
        let now = ctx.clock.now().timestamp();
        if now < self.retry_at {
            return Next::At(self.retry_at);
        }
        if let Err(e) = self.clamp_to_horizon(ctx, now) {
            return self.store_failed(ctx, now, e);
        }
        let job = match self.next_job(ctx, now) {
            Ok(job) => job,
            Err(next) => return next,
        };
        let Job {
            window,
            pass,
            targets,
        } = job;
        self.budget.record(now);
        if let Err(e) = ctx.store.put_budget(&self.id, &self.budget) {
            return self.store_failed(ctx, now, e);
        }
        if pass == Pass::Sweep {
            self.sweep.budget.record(now);
            if let Err(e) = ctx
                .store
                .put_budget(&sweep_budget_key(&self.id), &self.sweep.budget)
            {
                return self.store_failed(ctx, now, e);
            }
        }
        let started = std::time::Instant::now();
        let result = self.fetch_window(ctx, window, targets, pass).await;
        self.progress = None;
        ctx.metrics.set_window_progress(&self.id, 0, 0, 0);
        ctx.metrics
            .observe_fetch(&self.id, started.elapsed().as_secs_f64());
        let now = ctx.clock.now().timestamp();
        match (result, pass) {
            (Ok(0), Pass::Sweep) => {
                // Every sink failed the sweep's window; each stream has its own retry time.
                self.count_request(ctx, pass, "200".into());
                Next::Now
            }
            (Ok(0), Pass::First { .. }) => {
                // The API answered but every sink failed; each stream has its own retry time.
                self.count_request(ctx, pass, "200".into());
                self.state = TenantState::Retrying;
                Next::Now
            }
            (Ok(_), Pass::Sweep) => {
                self.count_request(ctx, pass, "200".into());
                self.sweep_done(ctx, now)
            }
            (Ok(_), Pass::First { demand, .. }) => {
                self.count_request(ctx, pass, "200".into());
                self.window_done(ctx, now, demand)
            }
            (Err(WindowError::Shutdown), _) => Next::At(now),
            (Err(WindowError::Store(e)), _) => self.store_failed(ctx, now, e),
            (Err(WindowError::Api(e)), pass) => {
                let label = e
                    .status()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| e.class().to_string());
                self.count_request(ctx, pass, label);
                let whole_tenant = matches!(
                    e.disposition(),
                    Disposition::Credentials | Disposition::Throttled
                );
                if pass == Pass::Sweep && !whole_tenant {
                    self.sweep_failed(ctx, now, window, e)
                } else {
                    self.fetch_failed(ctx, now, window, e)
                }
            }
        }
    }

    /// Bookkeeping after a window reached at least one sink: clear errors, set the state, log a
    /// backfill's progress (one line per [`CATCH_UP_LOG_EVERY`] windows and one when it ends;
    /// never per event).
    fn window_done(&mut self, ctx: &Context, now: i64, demand: Demand) -> Next {
        self.windows_fetched += 1;
        self.attempts = 0;
        if let Err(e) = self.api_answered(ctx) {
            return self.store_failed(ctx, now, e);
        }
        let was_catching_up = self.state == TenantState::CatchingUp;
        self.state = match demand {
            Demand::Backlog => TenantState::CatchingUp,
            Demand::Steady => TenantState::Ok,
            Demand::Sweep => self.state,
        };
        match demand {
            Demand::Backlog if self.windows_fetched % CATCH_UP_LOG_EVERY == 0 => {
                if let Some(behind) = self.streams.behind(now) {
                    tracing::info!(windows = self.windows_fetched, events = self.events_fetched, behind = %humantime::format_duration(Duration::from_secs(behind.max(0) as u64)), "catching up");
                }
            }
            Demand::Steady if was_catching_up => {
                tracing::info!(
                    windows = self.windows_fetched,
                    events = self.events_fetched,
                    "caught up"
                );
            }
            _ => {}
        }
        Next::Now
    }

    /// The API answered a window: the tenant's last error is cleared (and a tenant whose
    /// credentials were refused has recovered).
    fn api_answered(&mut self, ctx: &Context) -> Result<(), StoreError> {
        if self.record.failed || self.record.last_error.is_some() {
            if self.record.failed {
                tracing::info!("credentials accepted again; tenant recovered");
            }
            self.record.failed = false;
            self.record.last_error = None;
            ctx.store.put_tenant_record(&self.id, &self.record)?;
        }
        Ok(())
    }

    /// Counts one API response by status (`200`, `429`, `transport`, ...) in the status board
    /// and the metrics (a sweep's also under its own metric).
    fn count_request(&mut self, ctx: &Context, pass: Pass, label: String) {
        ctx.metrics.add_request(&self.id, &label);
        if pass == Pass::Sweep {
            ctx.metrics.add_sweep_request(&self.id, &label);
        }
        *self.by_status.entry(label).or_default() += 1;
    }

    fn clamp_to_horizon(&mut self, ctx: &Context, now: i64) -> Result<(), StoreError> {
        let margin = self.horizon_margin;
        let horizon = self.config.product().horizon_secs();
        let gaps = self.streams.clamp(ctx.engine(), |checkpoint| {
            window::clamp_to_horizon(checkpoint, now, horizon, margin)
        })?;
        for (sink, from, to) in gaps {
            tracing::warn!(sink = %sink, from = %clock::rfc3339(from), to = %clock::rfc3339(to),
                horizon_hours = horizon / 3600, product = self.config.product().as_str(),
                "checkpoint fell past the API's horizon; events in this span can no longer be fetched and are skipped");
        }
        Ok(())
    }

    fn fetch_failed(&mut self, ctx: &Context, now: i64, window: Window, e: ApiError) -> Next {
        let poll = &ctx.poll;
        let message = e.to_string();
        let (state, retry_at) = match e.disposition() {
            Disposition::Credentials => {
                if !self.record.failed {
                    tracing::error!(error = %message, "tenant failed: the API refuses its credentials; other tenants continue. Fix the credentials and reload");
                }
                self.record.failed = true;
                (TenantState::Failed, now + 3600)
            }
            Disposition::Throttled => {
                let release = self.budget.next_release(now).unwrap_or(now);
                let wait = backoff::delay(
                    self.attempts,
                    Duration::from_secs(300),
                    Duration::from_secs(3600),
                );
                tracing::warn!("API quota exhausted (429); waiting for budget");
                (
                    TenantState::Throttled,
                    release.min(now + 3600).max(now + wait.as_secs() as i64),
                )
            }
            Disposition::TooOld => {
                // Our clock or the API's disagree about the horizon: step further inside it.
                self.horizon_margin = (self.horizon_margin + 3600).min(86_400);
                tracing::warn!(error = %message, margin_secs = self.horizon_margin, "start too old for the API; clamping further inside the horizon");
                (TenantState::Retrying, now)
            }
            Disposition::Rejected => {
                tracing::error!(window = %window.interval_param(), error = %message, "the API rejected a window; retrying later");
                (
                    TenantState::Retrying,
                    now + poll.max_backoff.as_secs() as i64,
                )
            }
            Disposition::Transient => {
                let wait = backoff::delay(self.attempts, Duration::from_secs(5), poll.max_backoff);
                tracing::warn!(window = %window.interval_param(), error = %message, retry_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())), "window failed; retrying");
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
        if retry_at <= now {
            Next::Now
        } else {
            Next::At(retry_at)
        }
    }

    fn store_failed(&mut self, ctx: &Context, now: i64, e: StoreError) -> Next {
        tracing::error!(error = %e, "state store failed; holding this tenant");
        self.state = TenantState::Retrying;
        self.record.last_error = Some(e.to_string());
        self.record.last_error_at = Some(now);
        self.retry_at = now + ctx.poll.max_backoff.as_secs() as i64;
        Next::At(self.retry_at)
    }

    /// Fetches `window` and delivers it to the streams `targets` (the late sweep's second query
    /// only what they lack); returns how many of them now have the whole window (the others
    /// failed and wait for their own retry).
    async fn fetch_window(
        &mut self,
        ctx: &Context,
        window: Window,
        targets: Vec<usize>,
        pass: Pass,
    ) -> Result<usize, WindowError> {
        let creds = self.config.credentials(&self.secret);
        let limits = BatchLimits {
            events: ctx.poll.batch_events,
            bytes: ctx.poll.batch_bytes,
        };
        // The window's overall deadline (invariant 6): checked around every wait for the API, never
        // around a delivery or a commit, so a window that runs out stops at a safe point.
        let budget = ctx.poll.window_deadline;
        let deadline = tokio::time::Instant::now() + budget;
        let mut rx = tokio::time::timeout_at(
            deadline,
            ctx.client
                .fetch_window(self.config.base_url(), &creds, window, limits),
        )
        .await
        .map_err(|_| ApiError::Deadline(budget))??;
        let started = std::time::Instant::now();
        let mut published: Option<std::time::Instant> = None;
        self.progress = Some(WindowProgress {
            start: clock::rfc3339(window.start),
            end: clock::rfc3339(window.end),
            ..Default::default()
        });
        let span = Span {
            start: window.start,
            end: window.end,
        };
        let mut delivery = match pass {
            Pass::Sweep => self.streams.begin_sweep(targets, span, &ctx.store)?,
            Pass::First { swept, .. } => {
                let mut d = self.streams.begin(targets, span, &ctx.store)?;
                if self.sweep_age.is_some() {
                    d.track_sweep(swept);
                }
                d
            }
        };
        loop {
            let item = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Err(ApiError::Deadline(budget).into()),
                Ok(Some(item)) => item?,
                Ok(None) => {
                    return Err(ApiError::Transport("response reader stopped early".into()).into())
                }
            };
            let batch = match item {
                WindowItem::Batch(b) => b,
                WindowItem::Done(summary) => {
                    self.oddities.note(ctx, &self.id, window, &summary);
                    crate::status::count_invalid_customers(
                        &mut self.customers,
                        summary.invalid_customers,
                    );
                    break;
                }
            };
            window_grew(
                ctx,
                &self.id,
                &mut self.progress,
                self.events_fetched,
                &batch,
                started,
                &mut published,
            )?;
            let batch = if pass == Pass::Sweep {
                // A second query: its events were counted when first received; only those no
                // sink has (published late) go on.
                self.sweep.events_fetched += batch.len() as u64;
                delivery.lacked(&batch)
            } else {
                self.events_fetched += batch.len() as u64;
                ctx.metrics.add_fetched(&self.id, batch.len() as u64);
                count_customers(&mut self.customers, &batch);
                batch
            };
            if !batch.is_empty() {
                let batch = match self.enricher.as_mut() {
                    Some(e) => e.enrich(batch, &ctx.store).await,
                    None => batch,
                };
                let found = delivery.found();
                delivery.send(&batch, ctx.engine()).await?;
                if delivery.found() > found {
                    let late = delivery.found() - found;
                    self.sweep.found += late;
                    ctx.metrics.add_late_events(&self.id, late);
                }
            }
            if ctx.shutdown.is_cancelled() {
                return Err(WindowError::Shutdown);
            }
            if !delivery.any_alive() {
                // Every target failed: stop reading; the window is retried per stream.
                return Ok(0);
            }
        }
        Ok(delivery.finish(ctx.engine()).await?)
    }

    /// Puts this tenant's state on the status board and its gauges into the metrics.
    fn publish(&self, ctx: &Context, next_at: Option<i64>) {
        let now = ctx.clock.now().timestamp();
        let lag = ctx.poll.lag.as_secs() as i64;
        let mut budget = self.budget.clone();
        let used = budget.used(now);
        let sinks = self.streams.statuses(now, lag);
        for s in &sinks {
            ctx.metrics
                .set_stream_gauges(&self.id, &s.sink, s.behind_seconds, s.backlog_seconds);
        }
        ctx.metrics.set_budget(
            &self.id,
            i64::from(self.config.requests_per_day().unwrap_or_default()) - i64::from(used),
            self.record.failed,
        );
        ctx.status.put(TenantStatus {
            tenant: self.id.to_string(),
            state: self.state,
            last_error: self.record.last_error.clone(),
            last_error_at: self.record.last_error_at.map(clock::rfc3339),
            requests_24h: used,
            requests_limit: self.config.requests_per_day().unwrap_or_default(),
            next_poll_at: next_at.map(clock::rfc3339),
            events_fetched: self.events_fetched,
            windows_fetched: self.windows_fetched,
            requests_by_status: self.by_status.clone(),
            sinks,
            window: self.progress.clone(),
            events_enriched: self.enricher.as_ref().map_or(0, |e| e.enriched),
            enrichment_misses: self.enricher.as_ref().map_or(0, |e| e.misses),
            enrichment_dropped: self.enricher.as_ref().map_or(0, |e| e.dropped()),
            customers: self.customers.clone(),
            stream: None,
            late_sweep: self.late_sweep_status(now),
        });
    }
}

#[async_trait]
impl Source for Poller {
    fn id(&self) -> &str {
        &self.id
    }

    /// One window of work inside the tenant's span, so every line it logs names the tenant.
    async fn step(&mut self, ctx: &Context) -> Next {
        let span = tracing::info_span!("tenant", tenant = %self.id);
        let next = self.step_once(ctx).instrument(span).await;
        self.publish(ctx, next.at());
        next
    }
}

/// Counts `batch` into the window in flight (`progress`); fails the window past
/// `poll.max_window_events` or `poll.max_window_bytes` (a response that does not end like a real
/// one), and publishes its progress on the first batch and then at most once a second.
fn window_grew(
    ctx: &Context,
    id: &str,
    progress: &mut Option<WindowProgress>,
    fetched_before: u64,
    batch: &crate::event::Batch,
    started: std::time::Instant,
    published: &mut Option<std::time::Instant>,
) -> Result<(), ApiError> {
    let Some(p) = progress.as_mut() else {
        return Ok(());
    };
    let (events, bytes) = (
        p.events + batch.len() as u64,
        p.bytes + batch.raw_bytes() as u64,
    );
    let over = if events > ctx.poll.max_window_events {
        Some("max_window_events")
    } else if bytes > ctx.poll.max_window_bytes {
        Some("max_window_bytes")
    } else {
        None
    };
    if let Some(limit) = over {
        return Err(ApiError::TooLarge {
            limit,
            events,
            bytes,
        });
    }
    p.events = events;
    p.bytes = bytes;
    p.seconds = started.elapsed().as_secs();
    if !matches!(published, Some(at) if at.elapsed() < Duration::from_secs(1)) {
        *published = Some(std::time::Instant::now());
        ctx.metrics
            .set_window_progress(id, events, bytes, p.seconds);
        // The streams are busy with the delivery: update the tenant's last status in place.
        if let Some(mut status) = ctx.status.get(id) {
            status.window = Some(p.clone());
            status.events_fetched = fetched_before + batch.len() as u64;
            status.next_poll_at = None;
            ctx.status.put(status);
        }
    }
    Ok(())
}

/// What a tenant's complete responses held besides their events that the daemon does not use:
/// top-level arrays it does not know (counted in `tapfwd_unknown_array_elements_total`, warned
/// about once per tenant and name), a `queryEndTime` that disagrees with the window asked for
/// (warned about once until it agrees again) and events whose `customerEid` is not a customer id
/// (counted in status as `(invalid)`, warned about once per tenant).
#[derive(Debug, Default)]
struct Oddities {
    /// Unknown array names already warned about (at most [`Oddities::MAX_NAMES`]).
    warned: std::collections::BTreeSet<String>,
    /// Whether the last response's `queryEndTime` disagreed (and was warned about).
    end_disagrees: bool,
    /// Whether events with a `customerEid` that is not a customer id were warned about.
    invalid_customers: bool,
}

impl Oddities {
    const MAX_NAMES: usize = 64;
    /// How far `queryEndTime` may be from the window's end before it is said to disagree.
    const END_TOLERANCE_SECS: i64 = 60;

    fn note(&mut self, ctx: &Context, tenant: &str, window: Window, summary: &SplitSummary) {
        for (name, elements) in &summary.unknown_arrays {
            ctx.metrics.add_unknown_array_elements(tenant, *elements);
            if self.warned.len() < Self::MAX_NAMES && self.warned.insert(name.clone()) {
                tracing::warn!(array = %name, elements, window = %window.interval_param(),
                    "the response holds an array this daemon does not know; its elements are not forwarded (warned once per tenant and array)");
            }
        }
        if summary.invalid_customers > 0 && !self.invalid_customers {
            self.invalid_customers = true;
            tracing::warn!(events = summary.invalid_customers, window = %window.interval_param(),
                "events carry a customerEid that is not a customer id (a number, or a string over 64 bytes or with a space or a control character): they go to the tenant's own sinks without a customer beside them and are counted as (invalid) in status (warned once per tenant)");
        }
        let Some(end) = summary
            .query_end_time
            .as_deref()
            .and_then(clock::parse_query_end_time)
        else {
            return;
        };
        let disagrees = (end - window.end).abs() > Self::END_TOLERANCE_SECS;
        if disagrees && !self.end_disagrees {
            tracing::warn!(query_end_time = %clock::rfc3339(end), window = %window.interval_param(),
                "the response's queryEndTime disagrees with the window asked for; its events were taken as the window's");
        }
        self.end_disagrees = disagrees;
    }
}
