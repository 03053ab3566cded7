//! The ITM source: one tenant's records of one ITM record type (one report), read by the
//! report's `risingValue` cursor; each record delivered as the API sent it, with the type's kind
//! (`itmAlert`, `itmUserActivity`, …).
//!
//! Each sink's stream stands at a unix second, the cursor: every record whose `risingValue` (read
//! as milliseconds since the epoch, more-feeds.md) lies before it has been delivered. A step asks
//! for the records `since` the streams that stand furthest behind and pages while a page comes
//! back full (`since` the greatest `risingValue` of the page before), at most [`MAX_PAGES`] pages
//! a step, moving the streams to the greatest `risingValue` seen (to the second below it) after
//! each step. So:
//! - **The boundary record is a duplicate, not a second event.** `since` is inclusive: the last
//!   record of a page comes first on the next, and a step begins up to a second before the
//!   greatest cursor delivered; such records are exact repeats, recognised by their key (the raw
//!   bytes' hash) and dropped. Rows out of order within a page, or sent twice, are the same.
//! - **Exactly once across failures.** A step cut short leaves its streams where they were; what
//!   it delivered is recognised when the records come again.
//! - **Rewinding** a report (`tapfwd rewind`) sets its cursor to the time given: records whose
//!   `risingValue` is from then on are asked for again (and, with `--no-dedupe`, delivered again).
//! - **One token per tenant**, shared by its reports' sources ([`crate::api::oauth`]); a
//!   refused client secret holds the tenant's reports, never a loop. No rate limit is
//!   documented: a 429 waits a minute, doubling.

use std::sync::Arc;

use async_trait::async_trait;
use tracing::Instrument;

use super::ctr::{count, Failures, Stop};
use super::plan::{SourceId, SourceKind};
use super::{Context, Next, Source};
use crate::api::itm;
use crate::api::oauth::{BearerClient, Request, SharedToken};
use crate::clock;
use crate::config::tenant::ProductSettings;
use crate::config::{ItmTenant, ItmType};
use crate::engine::{KeyHorizon, Span, Streams};
use crate::event::Batch;
use crate::sinks::Sink;
use crate::status::{TenantState, TenantStatus};

/// The most pages one step asks for; a report with more goes on at once in the next step.
pub const MAX_PAGES: u32 = 10;

/// One tenant's records of one ITM type.
pub struct ItmSource {
    /// `tenant:itm.alert`: the scheduler's and status board's key, and its streams' scope.
    id: Arc<str>,
    tenant: Arc<str>,
    kind: ItmType,
    config: Arc<ItmTenant>,
    client: Option<BearerClient>,
    tokens: SharedToken,
    streams: Streams,
    failures: Failures,
    fetched: u64,
    pages: u64,
    by_status: std::collections::BTreeMap<String, u64>,
}

/// How far a step got.
struct Reached {
    /// The last page was full: there may be more.
    more: bool,
}

impl ItmSource {
    pub fn new(
        tenant: &str,
        kind: ItmType,
        config: Arc<ItmTenant>,
        tokens: SharedToken,
        sinks: Vec<Arc<dyn Sink>>,
        ctx: &Context,
    ) -> Result<ItmSource, crate::store::StoreError> {
        let id: Arc<str> = Arc::from(SourceId::new(tenant, SourceKind::Itm(kind)).to_string());
        let now = ctx.clock.now().timestamp();
        let initial = now - config.initial_lookback.as_secs() as i64;
        // A step starts at most a second before the cursor it delivered: a minute covers it.
        let streams = Streams::open_scoped(
            tenant,
            &id,
            sinks,
            initial,
            KeyHorizon {
                reach: 60,
                keep: 3600,
            },
            &ctx.store,
        )?;
        let source = ItmSource {
            id,
            tenant: Arc::from(tenant),
            kind,
            config,
            client: BearerClient::new(ctx.poll.read_timeout).ok(),
            tokens,
            streams,
            failures: Failures::default(),
            fetched: 0,
            pages: 0,
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
        let ready = self.streams.ready(now);
        let Some(start) = ready.iter().map(|&i| self.streams.position(i)).min() else {
            return Next::At(self.streams.next_retry().unwrap_or(now + 60).max(now + 1));
        };
        let targets: Vec<usize> = ready
            .into_iter()
            .filter(|&i| self.streams.position(i) == start)
            .collect();
        let interval = self.config.interval.as_secs() as i64;
        match self.pages(ctx, targets, start).await {
            Ok(reached) => {
                self.failures.ok();
                self.failures.state = if self.streams.any_failing() {
                    TenantState::Retrying
                } else {
                    self.failures.last_error = None;
                    TenantState::Ok
                };
                if reached.more {
                    Next::Now
                } else {
                    Next::At(now + interval)
                }
            }
            Err(stop) => self
                .failures
                .stopped(ctx, &self.streams, stop, "itm report"),
        }
    }

    /// Delivers the records from `start` (unix seconds) to `targets`, page after page.
    async fn pages(
        &mut self,
        ctx: &Context,
        targets: Vec<usize>,
        start: i64,
    ) -> Result<Reached, Stop> {
        let client = self.client.clone().ok_or_else(|| {
            Stop::Unreadable("the HTTP client could not be built (TLS roots?)".into())
        })?;
        let limit = self.config.page_size;
        let report = self.config.report(self.kind).to_string();
        let mut since = start.saturating_mul(1000);
        let mut delivery = self
            .streams
            .begin(targets, Span { start, end: start }, &ctx.store)
            .map_err(Stop::Store)?;
        let mut more = false;
        for _ in 0..MAX_PAGES {
            let url = itm::url(self.config.base_url(), &report, since, limit).map_err(Stop::Api)?;
            let now = ctx.clock.now().timestamp();
            let body = match client.call(&self.tokens, now, &Request::Get(url)).await {
                Ok(b) => {
                    count(&mut self.by_status, ctx, &self.id, "200");
                    b
                }
                Err(e) => {
                    count(&mut self.by_status, ctx, &self.id, e.class());
                    return Err(Stop::Api(e));
                }
            };
            let records = itm::page(&body).map_err(|m| {
                count(&mut self.by_status, ctx, &self.id, "malformed");
                Stop::Unreadable(format!("the `{report}` report's answer is {m}"))
            })?;
            let n = records.len();
            self.pages += 1;
            self.fetched += n as u64;
            ctx.metrics.add_fetched(&self.id, n as u64);
            let top = records.iter().map(|r| r.rising).max().unwrap_or(since);
            delivery.set_end(top.max(since).div_euclid(1000).max(start));
            let batch = batch_of(self.kind, &records);
            delivery
                .send(&batch, ctx.engine())
                .await
                .map_err(Stop::Store)?;
            if !delivery.any_alive() {
                return Err(Stop::Sinks);
            }
            more = n >= limit as usize;
            if !more {
                break;
            }
            if top <= since {
                return Err(Stop::Unreadable(format!(
                    "a full page of the `{report}` report whose records all have risingValue {since}: raise page_size"
                )));
            }
            since = top;
        }
        delivery.finish(ctx.engine()).await.map_err(Stop::Store)?;
        Ok(Reached { more })
    }

    fn publish(&self, ctx: &Context, next_at: Option<i64>) {
        let now = ctx.clock.now().timestamp();
        ctx.status.put(TenantStatus {
            tenant: self.id.to_string(),
            state: self.failures.state,
            last_error: self.failures.last_error.clone(),
            next_poll_at: next_at.map(clock::rfc3339),
            events_fetched: self.fetched,
            windows_fetched: self.pages,
            requests_by_status: self.by_status.clone(),
            sinks: self.streams.statuses(now, 0),
            ..TenantStatus::default()
        });
    }
}

/// One token and one page of one record of the tenant's first report (`tapfwd check --connect`).
pub async fn probe(
    config: &ItmTenant,
    secret: &secrecy::SecretString,
    timeout: std::time::Duration,
) -> Result<(), crate::api::ApiError> {
    let client = BearerClient::new(timeout)?;
    let tokens = Arc::new(tokio::sync::Mutex::new(crate::api::oauth::TokenCache::new(
        &config.token_url(),
        &config.client_id,
        secret.clone(),
        Some(itm::SCOPE),
    )));
    let now = chrono::Utc::now().timestamp();
    let kind = config.types.first().copied().unwrap_or(ItmType::Alert);
    let url = itm::url(config.base_url(), config.report(kind), (now - 60) * 1000, 1)?;
    let body = client.call(&tokens, now, &Request::Get(url)).await?;
    itm::page(&body)
        .map(|_| ())
        .map_err(|m| crate::api::ApiError::InvalidJson(format!("the report's answer is {m}")))
}

/// A page's records as a batch, each keyed by its bytes, its time its `risingValue`.
fn batch_of(kind: ItmType, records: &[itm::Record<'_>]) -> Batch {
    Batch::of_records(
        kind.kind(),
        records
            .iter()
            .map(|r| (r.raw.get().as_bytes(), Some(r.rising))),
    )
}

#[async_trait]
impl Source for ItmSource {
    fn id(&self) -> &str {
        &self.id
    }

    async fn step(&mut self, ctx: &Context) -> Next {
        let span = tracing::info_span!("tenant", tenant = %self.tenant, source = %self.id);
        let next = self.step_once(ctx).instrument(span).await;
        self.publish(ctx, next.at());
        next
    }
}
