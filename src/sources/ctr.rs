//! The CTR source: one tenant's Cloud Threat Response incidents, by `createdAt` windows, each
//! incident delivered as the API sent it (kind `ctrIncident`, one record per incident: an
//! incident is the unit its API pages, filters and changes; one record per event would repeat
//! the incident's fields in every event and split one update into many).
//!
//! Each sink's stream stands at a unix second: every incident created before it has been
//! delivered as it was when it was read. A step asks for the window after the streams that stand
//! furthest behind, at most `max_window` long and ending now, from its start less `clock_drift`,
//! one request per state group and page (rows of 200, oldest first), and moves those streams to
//! its end once every page of both groups is delivered. So:
//! - **Updates are new facts.** A caught-up poll asks again from `lookback` (default 1 d) before
//!   its window: an incident created within it that changed (state, events, quarantine results)
//!   comes back with other bytes, a new key, and is delivered again; one that did not change is
//!   an exact repeat, recognised by its key (the raw bytes' hash) and dropped. Updates to
//!   incidents created longer than `lookback` before a poll are not seen.
//! - **Exactly once across failures.** A step cut short (a failing page, a crash, a spent
//!   minute) leaves its streams where they were; the incidents already delivered are recognised
//!   by their keys when the window is asked again (the keys are kept for `lookback`,
//!   `clock_drift` and `max_window` past a position).
//! - **Within the API's rate** (invariant 4): at most `requests_per_minute` requests (default
//!   10), counted over the last minute in memory; a step that would go over stops and goes on
//!   when the oldest request is a minute old. A 429 waits a minute, doubling.
//! - **Inside the horizon** (invariant 3): a stream older than 30 days is moved to 30 days ago
//!   and the gap reported (log, status, `tapfwd_gap_seconds_total`).
//! - **Its own failures** (invariant 6): a refused client secret (the token endpoint's 400
//!   `invalid_client` or 401) holds this tenant alone, for `poll.max_backoff`, never a loop.

use std::collections::VecDeque;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;
use tracing::Instrument;

use super::{Context, Next, Source};
use crate::api::oauth::{BearerClient, Request, SharedToken, TokenCache};
use crate::api::{ctr, ApiError, Disposition};
use crate::backoff;
use crate::clock;
use crate::config::tenant::OAUTH_HORIZON_SECS;
use crate::config::CtrTenant;
use crate::engine::{KeyHorizon, Span, Streams};
use crate::event::{Batch, EventKind};
use crate::sinks::Sink;
use crate::status::{TenantState, TenantStatus};

/// The requests sent in the last minute, to keep a tenant under its per-minute rate.
#[derive(Debug, Default)]
pub struct MinuteRate {
    sent: VecDeque<i64>,
}

impl MinuteRate {
    /// Whether one more request may go at `now` under `limit` a minute.
    pub fn allows(&mut self, now: i64, limit: u32) -> bool {
        while self.sent.front().is_some_and(|&t| t + 60 <= now) {
            self.sent.pop_front();
        }
        self.sent.len() < limit as usize
    }

    pub fn record(&mut self, now: i64) {
        self.sent.push_back(now);
    }

    /// When the next request may go.
    pub fn next_free(&self, now: i64) -> i64 {
        self.sent.front().map_or(now, |t| t + 60).max(now + 1)
    }

    /// Requests in the last minute.
    pub fn used(&self) -> u32 {
        self.sent.len() as u32
    }
}

/// Why a step stopped before its window was delivered.
pub enum Stop {
    Api(ApiError),
    /// Every target sink failed; each retries on its own.
    Sinks,
    /// The minute's requests are spent; go on at this instant. `true`: in the middle of a
    /// window (some of its pages were asked for).
    Rate(i64, bool),
    Unreadable(String),
    Store(crate::store::StoreError),
}

/// What a source of an OAuth2 product keeps about its failures, shared by CTR and ITM.
#[derive(Default)]
pub struct Failures {
    pub state: TenantState,
    pub last_error: Option<String>,
    pub retry_at: i64,
    attempts: u32,
    throttles: u32,
}

impl Failures {
    /// A step went through.
    pub fn ok(&mut self) {
        self.attempts = 0;
        self.throttles = 0;
        self.retry_at = 0;
    }

    /// Decides what `stop` means at `now`: the state to show, the error and when to run again.
    pub fn stopped(&mut self, ctx: &Context, streams: &Streams, stop: Stop, what: &str) -> Next {
        let now = ctx.clock.now().timestamp();
        let max = ctx.poll.max_backoff;
        let (state, at, message) = match stop {
            Stop::Sinks => {
                self.state = TenantState::Retrying;
                return Next::At(streams.next_retry().unwrap_or(now + 60).max(now + 1));
            }
            Stop::Rate(at, _) => {
                return Next::At(at.max(now + 1));
            }
            Stop::Api(e) => match e.disposition() {
                Disposition::Throttled => {
                    let wait = backoff::delay(
                        self.throttles,
                        std::time::Duration::from_secs(60),
                        max.max(std::time::Duration::from_secs(60)),
                    );
                    self.throttles += 1;
                    let at = now + wait.as_secs().max(60) as i64;
                    (
                        TenantState::Throttled,
                        at,
                        format!(
                            "the API answered 429; asking again at {}",
                            clock::rfc3339(at)
                        ),
                    )
                }
                Disposition::Credentials => (
                    TenantState::Failed,
                    now + max.as_secs() as i64,
                    e.to_string(),
                ),
                Disposition::TooOld | Disposition::Rejected | Disposition::Transient => {
                    self.attempts += 1;
                    let wait =
                        backoff::delay(self.attempts, std::time::Duration::from_secs(5), max);
                    (
                        TenantState::Retrying,
                        now + wait.as_secs().max(1) as i64,
                        e.to_string(),
                    )
                }
            },
            Stop::Unreadable(m) => {
                self.attempts += 1;
                let wait = backoff::delay(self.attempts, std::time::Duration::from_secs(30), max);
                (TenantState::Retrying, now + wait.as_secs().max(1) as i64, m)
            }
            Stop::Store(e) => (
                TenantState::Retrying,
                now + 60,
                format!("state store failed: {e}"),
            ),
        };
        tracing::warn!(error = %message, retry_at = %clock::rfc3339(at), "{what} stopped");
        self.state = state;
        self.last_error = Some(message);
        self.retry_at = at;
        Next::At(at)
    }
}

/// One tenant's CTR incidents.
pub struct CtrSource {
    tenant: Arc<str>,
    config: Arc<CtrTenant>,
    client: Option<BearerClient>,
    tokens: SharedToken,
    streams: Streams,
    rate: MinuteRate,
    /// The longest span asked for after a window ran out of the minute's requests: halved each
    /// time, so a window too large for the rate is cut until it fits; `None` after a success.
    cap: Option<i64>,
    failures: Failures,
    fetched: u64,
    windows: u64,
    by_status: std::collections::BTreeMap<String, u64>,
}

impl CtrSource {
    pub fn new(
        tenant: &str,
        config: Arc<CtrTenant>,
        secret: SecretString,
        sinks: Vec<Arc<dyn Sink>>,
        ctx: &Context,
    ) -> Result<CtrSource, crate::store::StoreError> {
        let now = ctx.clock.now().timestamp();
        let initial = now - config.initial_lookback.as_secs() as i64;
        let reach = (config.lookback + config.clock_drift + config.max_window).as_secs() as i64;
        let streams = Streams::open(
            tenant,
            sinks,
            initial,
            KeyHorizon {
                reach: reach + 60,
                keep: reach + 3600,
            },
            &ctx.store,
        )?;
        let tokens = Arc::new(tokio::sync::Mutex::new(TokenCache::new(
            config.token_url(),
            &config.client_id,
            secret,
            None,
        )));
        // A client that cannot be built (no TLS roots) fails each step, named in status.
        let client = BearerClient::new(ctx.poll.read_timeout).ok();
        let source = CtrSource {
            tenant: Arc::from(tenant),
            config,
            client,
            tokens,
            streams,
            rate: MinuteRate::default(),
            cap: None,
            failures: Failures::default(),
            fetched: 0,
            windows: 0,
            by_status: Default::default(),
        };
        source.publish(ctx, None);
        Ok(source)
    }

    async fn step_once(&mut self, ctx: &Context) -> Next {
        let now = ctx.clock.now().timestamp();
        if now < self.failures.retry_at {
            return Next::At(self.failures.retry_at);
        }
        // Inside the horizon: a stream left older is moved, and the gap reported.
        let earliest = now - OAUTH_HORIZON_SECS;
        match self.streams.clamp(ctx.engine(), |p| {
            if p < earliest {
                (earliest, Some((p, earliest)))
            } else {
                (p, None)
            }
        }) {
            Ok(gaps) => {
                for (sink, from, to) in gaps {
                    tracing::warn!(sink = %sink, from = %clock::rfc3339(from), to = %clock::rfc3339(to), "checkpoint older than the 30 days tapfwd asks CTR for; the gap is skipped");
                }
            }
            Err(e) => {
                return self
                    .failures
                    .stopped(ctx, &self.streams, Stop::Store(e), "ctr window")
            }
        }
        let ready = self.streams.ready(now);
        let Some(start) = ready.iter().map(|&i| self.streams.position(i)).min() else {
            return Next::At(self.streams.next_retry().unwrap_or(now + 60).max(now + 1));
        };
        let interval = self.config.interval.as_secs() as i64;
        if now - start < interval {
            if !self.streams.any_failing() {
                self.failures.state = TenantState::Ok;
            }
            return Next::At(start + interval);
        }
        let targets: Vec<usize> = ready
            .into_iter()
            .filter(|&i| self.streams.position(i) == start)
            .collect();
        let span = self.cap.unwrap_or(i64::MAX);
        let end = (start + (self.config.max_window.as_secs() as i64).min(span)).min(now);
        // Caught up: ask again from `lookback` before, for the updates.
        let from = if end == now {
            start.min(end - self.config.lookback.as_secs() as i64)
        } else {
            start
        };
        let from = (from - self.config.clock_drift.as_secs() as i64)
            .max(now - OAUTH_HORIZON_SECS)
            .max(end.saturating_sub(span));
        match self.window(ctx, targets, start, end, from).await {
            Ok(()) => {
                self.cap = None;
                self.failures.ok();
                self.windows += 1;
                self.failures.state = if self.streams.any_failing() {
                    TenantState::Retrying
                } else {
                    self.failures.last_error = None;
                    TenantState::Ok
                };
                if end < now {
                    Next::Now
                } else {
                    Next::At(end + interval)
                }
            }
            Err(stop) => {
                if let Stop::Rate(_, true) = stop {
                    self.cap = Some(((end - from) / 2).max(60));
                }
                self.failures
                    .stopped(ctx, &self.streams, stop, "ctr window")
            }
        }
    }

    /// Delivers the incidents created in `[from, end]` to `targets`, and moves them from `start`
    /// to `end`.
    async fn window(
        &mut self,
        ctx: &Context,
        targets: Vec<usize>,
        start: i64,
        end: i64,
        from: i64,
    ) -> Result<(), Stop> {
        let url = ctr::url(crate::config::tenant::ProductSettings::base_url(
            &*self.config,
        ))
        .map_err(Stop::Api)?;
        let client = self.client.clone().ok_or_else(|| {
            Stop::Unreadable("the HTTP client could not be built (TLS roots?)".into())
        })?;
        let mut delivery = self
            .streams
            .begin(targets, Span { start, end }, &ctx.store)
            .map_err(Stop::Store)?;
        let mut asked = false;
        for group in ctr::STATE_GROUPS {
            let mut row = 0u32;
            loop {
                let now = ctx.clock.now().timestamp();
                if !self.rate.allows(now, self.config.requests_per_minute) {
                    return Err(Stop::Rate(self.rate.next_free(now), asked));
                }
                self.rate.record(now);
                asked = true;
                let request = Request::Post(url.clone(), ctr::body(group, from, end, row));
                let body = match client.call(&self.tokens, now, &request).await {
                    Ok(b) => {
                        count(&mut self.by_status, ctx, &self.tenant, "200");
                        b
                    }
                    Err(e) => {
                        count(&mut self.by_status, ctx, &self.tenant, e.class());
                        return Err(Stop::Api(e));
                    }
                };
                let page = ctr::page(&body).map_err(|m| {
                    count(&mut self.by_status, ctx, &self.tenant, "malformed");
                    Stop::Unreadable(format!("the incidents API's answer is {m}"))
                })?;
                let n = page.incidents.len();
                self.fetched += n as u64;
                ctx.metrics.add_fetched(&self.tenant, n as u64);
                let batch = batch_of(page.incidents.iter().map(|r| r.get()));
                delivery
                    .send(&batch, ctx.engine())
                    .await
                    .map_err(Stop::Store)?;
                if !delivery.any_alive() {
                    return Err(Stop::Sinks);
                }
                if n < ctr::PAGE_ROWS as usize {
                    break;
                }
                row += ctr::PAGE_ROWS;
            }
        }
        delivery.finish(ctx.engine()).await.map_err(Stop::Store)?;
        Ok(())
    }

    fn publish(&self, ctx: &Context, next_at: Option<i64>) {
        let now = ctx.clock.now().timestamp();
        ctx.status.put(TenantStatus {
            tenant: self.tenant.to_string(),
            state: self.failures.state,
            last_error: self.failures.last_error.clone(),
            requests_24h: self.rate.used(),
            requests_limit: self.config.requests_per_minute,
            next_poll_at: next_at.map(clock::rfc3339),
            events_fetched: self.fetched,
            windows_fetched: self.windows,
            requests_by_status: self.by_status.clone(),
            sinks: self.streams.statuses(now, 0),
            ..TenantStatus::default()
        });
    }
}

/// One token and one request of a minute's incidents (`tapfwd check --connect`).
pub async fn probe(
    config: &CtrTenant,
    secret: &SecretString,
    timeout: std::time::Duration,
) -> Result<(), ApiError> {
    use crate::config::tenant::ProductSettings;
    let client = BearerClient::new(timeout)?;
    let tokens = Arc::new(tokio::sync::Mutex::new(TokenCache::new(
        config.token_url(),
        &config.client_id,
        secret.clone(),
        None,
    )));
    let now = chrono::Utc::now().timestamp();
    let request = Request::Post(
        ctr::url(config.base_url())?,
        ctr::body(ctr::STATE_GROUPS[0], now - 60, now, 0),
    );
    let body = client.call(&tokens, now, &request).await?;
    ctr::page(&body)
        .map(|_| ())
        .map_err(|m| ApiError::InvalidJson(format!("the incidents API's answer is {m}")))
}

/// Counts a request's answer (`200`, or its error's class) in status and metrics.
pub(super) fn count(
    by_status: &mut std::collections::BTreeMap<String, u64>,
    ctx: &Context,
    source: &str,
    status: &str,
) {
    *by_status.entry(status.to_string()).or_default() += 1;
    ctx.metrics.add_request(source, status);
}

/// Incidents (each a JSON object as sent) as a batch, keyed by their bytes.
fn batch_of<'a>(incidents: impl ExactSizeIterator<Item = &'a str>) -> Batch {
    Batch::of_records(
        EventKind::CtrIncident,
        incidents.map(|raw| (raw.as_bytes(), ctr::created_ms(raw))),
    )
}

#[async_trait]
impl Source for CtrSource {
    fn id(&self) -> &str {
        &self.tenant
    }

    async fn step(&mut self, ctx: &Context) -> Next {
        let span = tracing::info_span!("tenant", tenant = %self.tenant, source = "ctr");
        let next = self.step_once(ctx).instrument(span).await;
        self.publish(ctx, next.at());
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minute_rate_frees_a_request_a_minute_after_it_was_sent() {
        let mut r = MinuteRate::default();
        for t in 0..10 {
            assert!(r.allows(100 + t, 10));
            r.record(100 + t);
        }
        assert!(!r.allows(150, 10));
        assert_eq!(r.next_free(150), 160);
        assert!(r.allows(160, 10));
    }

    #[test]
    fn an_incident_is_keyed_by_its_bytes_so_an_update_is_a_new_fact() {
        let a = r#"{"id":1,"state":"open","createdAt":"2026-11-20T12:00:07Z"}"#;
        let b = r#"{"id":1,"state":"closed","createdAt":"2026-11-20T12:00:07Z"}"#;
        let batch = batch_of([a, b, a].into_iter());
        assert_ne!(batch.events[0].key, batch.events[1].key);
        assert_eq!(batch.events[0].key, batch.events[2].key);
        assert_eq!(batch.raw(&batch.events[1]), b.as_bytes());
        assert_eq!(batch.events[0].time_ms, Some(1_795_176_007_000));
    }
}
