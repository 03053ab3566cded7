//! The People source: one tenant's snapshots of one People list (Very Attacked People or top
//! clickers), one per period, every user delivered once per snapshot.
//!
//! A snapshot belongs to a period (`people.every`, aligned to the epoch). Each sink's stream
//! stands at the period of the last snapshot it has; a step takes the snapshot of the current
//! period for the streams that stand before it, page by page (`size` at the API's largest), and
//! moves them to the period once the list has ended. So:
//! - **Exactly once per snapshot.** A restart inside the period finds the streams at the period
//!   and asks nothing. A snapshot cut by a crash, a failing sink, a failing page or a 429 keeps
//!   the keys of the users already delivered (their key is the hash of the period and the user's
//!   bytes) and, with each stream, the pages it has ([`Progress`]); it goes on from the page after
//!   them, and a page asked again delivers only the users not yet delivered. A sink that was down
//!   gets the snapshot of the period it comes back in, once; a People list is a current state, so
//!   periods it missed entirely are not replayed (the API cannot serve them).
//! - **Checked against the API's totals.** A snapshot ends at the first page with fewer users
//!   than asked, or at a full page that brings its users to the list's total exactly
//!   (`totalVapUsers`, `totalTopClickers`); it never asks past the page that total makes the last
//!   plus [`PAGE_MARGIN`], nor for more than the budget allows. One whose pages
//!   hold fewer or more users than the total, or that is cut at that bound, is *partial*: the
//!   streams move on (asking again would spend the budget on the same answer), and status
//!   (`state: partial`, `snapshot`), the log and `tapfwd_people_snapshots_total{result="partial"}`
//!   say so, never `ok`. So does a snapshot that could not be finished within its period.
//! - **Its own budget** (invariant 4): each endpoint allows 50 requests per rolling 24 hours;
//!   the requests are counted in a budget of this source's own, kept in the store, never the
//!   SIEM one. A snapshot starts only when the pages it is expected to need fit in what is left;
//!   one that runs out between pages goes on when requests age out. A 429 says the quota is
//!   spent, perhaps by another tool on the credential, whose requests age out when tapfwd cannot
//!   see: a snapshot not begun waits for this source's oldest request to age out; one cut in the
//!   middle asks again after an hour, doubling up to [`THROTTLED_RETRY`], or when the oldest
//!   request ages out if that is sooner.
//! - **Its own failures** (invariant 6): bad credentials or a failing API hold this source
//!   alone; the tenant's SIEM polling is another source and does not wait for it.
//!
//! Users travel as the API sent them (invariant 5), with the response's `interval` beside them
//! (`"snapshot"` in the envelope).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::BytesMut;
use secrecy::SecretString;
use tracing::Instrument;

use super::plan::{SourceId, SourceKind};
use super::{Context, Next, Source};
use crate::api::intel::IntelClient;
use crate::api::people::{Feed, Page, REQUESTS_PER_DAY};
use crate::api::{ApiError, Disposition};
use crate::backoff;
use crate::budget::Budget;
use crate::clock;
use crate::config::{PeopleConfig, TenantConfig};
use crate::engine::{KeyHorizon, Span, Streams};
use crate::event::{Batch, EventKey, EventMeta};
use crate::sinks::Sink;
use crate::status::{TenantState, TenantStatus};
use crate::store::Progress;

/// At most this many pages make one snapshot whose list says no total (the budget could not pay
/// for more in a day).
const MAX_PAGES: u32 = REQUESTS_PER_DAY;

/// Pages a snapshot may ask past the one its list's total makes the last (a list that grew while
/// it was paged); a list still full there is cut, partial.
pub const PAGE_MARGIN: u32 = 1;

/// The longest a 429 in the middle of a snapshot is waited out (seconds) when this source's own
/// oldest request ages out later; the first wait is an hour, and each 429 after doubles it.
pub const THROTTLED_RETRY: i64 = 8 * 3600;

/// One tenant's snapshots of one People list.
pub struct PeopleSource {
    /// `tenant:people.vap`: the scheduler's and the status board's key, and the store scope of
    /// its streams and budget.
    id: Arc<str>,
    tenant: Arc<str>,
    feed: Feed,
    config: Arc<TenantConfig>,
    people: PeopleConfig,
    secret: SecretString,
    client: IntelClient,
    streams: Streams,
    budget: Budget,
    /// Unix seconds before which no request is sent (429, backoff, bad credentials).
    retry_at: i64,
    attempts: u32,
    /// 429s in the middle of a snapshot since it last went on: each doubles the next wait.
    throttles: u32,
    /// Pages the last snapshot took: what the next one is expected to need.
    last_pages: u32,
    state: TenantState,
    last_error: Option<String>,
    users_fetched: u64,
    snapshots: u64,
    by_status: std::collections::BTreeMap<String, u64>,
}

/// How a snapshot that reached its end went.
struct Taken {
    pages: u32,
    users: u64,
    /// Why it is partial; `None` when it is complete.
    short: Option<String>,
}

/// Why a snapshot stopped before it was complete.
enum Stop {
    /// The API said no or failed; the disposition decides the wait. `true`: in the middle of
    /// the snapshot (pages of it are delivered).
    Api(ApiError, bool),
    /// Every target sink failed; each retries on its own.
    Sinks,
    /// The budget ran out between pages.
    Budget,
    Store(crate::store::StoreError),
    Unreadable(String),
}

impl PeopleSource {
    pub fn new(
        tenant: &str,
        feed: Feed,
        config: Arc<TenantConfig>,
        people: PeopleConfig,
        secret: SecretString,
        sinks: Vec<Arc<dyn Sink>>,
        ctx: &Context,
    ) -> Result<PeopleSource, crate::store::StoreError> {
        let id: Arc<str> = Arc::from(SourceId::new(tenant, SourceKind::People(feed)).to_string());
        let every = people.every.as_secs() as i64;
        let now = ctx.clock.now().timestamp();
        // A new stream stands at the previous period: the current period's snapshot is due.
        let initial = period_of(now, every) - every;
        let streams = Streams::open_scoped(
            tenant,
            &id,
            sinks,
            initial,
            KeyHorizon::SNAPSHOTS,
            &ctx.store,
        )?;
        let budget = ctx.store.budget(&id)?.unwrap_or_default();
        let client = ctx.intel.clone();
        let source = PeopleSource {
            id,
            tenant: Arc::from(tenant),
            feed,
            config,
            people,
            secret,
            client,
            streams,
            budget,
            retry_at: 0,
            attempts: 0,
            throttles: 0,
            last_pages: 1,
            state: TenantState::NotStarted,
            last_error: None,
            users_fetched: 0,
            snapshots: 0,
            by_status: Default::default(),
        };
        source.publish(ctx, None);
        Ok(source)
    }

    fn every(&self) -> i64 {
        self.people.every.as_secs() as i64
    }

    fn page_size(&self) -> u32 {
        self.feed.page_size()
    }

    /// Where the snapshot of `period` stands for the streams `targets`: the pages all of them
    /// have (the fewest), the users those pages held and the API's total, from their
    /// [`Progress`]; `(0, 0, None)` for a snapshot not begun.
    fn resume_point(&self, targets: &[usize], period: i64) -> (u32, u64, Option<u64>) {
        targets
            .iter()
            .map(|&i| match self.streams.progress(i) {
                Some(p) if p.end == period && p.short.is_none() => (p.pages, p.events, p.expected),
                _ => (0, 0, None),
            })
            .min_by_key(|r| r.0)
            .unwrap_or((0, 0, None))
    }

    /// Closes, as partial, the snapshot of an earlier period that a stream never finished: its
    /// period passed (a budget or a 429 that lasted it out). Counted and logged once: the note
    /// with the stream says so from then on.
    fn close_abandoned(&mut self, ctx: &Context, period: i64) -> Result<(), Stop> {
        for i in 0..self.streams.len() {
            let Some(p) = self.streams.progress(i) else {
                continue;
            };
            if p.short.is_some() || p.end >= period || self.streams.position(i) >= p.end {
                continue;
            }
            let reason = format!(
                "the snapshot of {} was not finished within its period ({} users in {} pages)",
                clock::rfc3339(p.end),
                p.events,
                p.pages
            );
            tracing::warn!(feed = self.feed.as_str(), expected = ?p.expected, "{reason}");
            ctx.metrics
                .add_people_snapshot(&self.tenant, self.feed.as_str(), "partial");
            let closed = Progress {
                short: Some(reason),
                ..p.clone()
            };
            self.streams
                .set_progress(i, Some(closed), &ctx.store)
                .map_err(Stop::Store)?;
        }
        Ok(())
    }

    /// Whether the snapshot of `period` ended partial for some stream.
    fn partial_in(&self, period: i64) -> bool {
        (0..self.streams.len()).any(|i| {
            self.streams
                .progress(i)
                .is_some_and(|p| p.end == period && p.short.is_some())
        })
    }

    async fn step_once(&mut self, ctx: &Context) -> Next {
        let now = ctx.clock.now().timestamp();
        let period = period_of(now, self.every());
        let next_period = period + self.every();
        if let Err(stop) = self.close_abandoned(ctx, period) {
            return self.stopped(ctx, stop);
        }
        if now < self.retry_at {
            return Next::At(self.retry_at.min(next_period));
        }
        let targets: Vec<usize> = self
            .streams
            .ready(now)
            .into_iter()
            .filter(|&i| self.streams.position(i) < period)
            .collect();
        if targets.is_empty() {
            if !self.streams.any_failing() {
                self.state = if self.partial_in(period) {
                    TenantState::Partial
                } else {
                    TenantState::Ok
                };
            }
            let at = self
                .streams
                .next_retry()
                .map_or(next_period, |r| r.min(next_period));
            return Next::At(at.max(now + 1));
        }
        // Start (or go on with) a snapshot only when the budget can pay for the pages it is
        // expected to need: the rest of what the list's total says, else as many as the last.
        let (pages, _, expected) = self.resume_point(&targets, period);
        let need = match expected {
            Some(total) => pages_for(total, self.page_size()).saturating_sub(pages),
            None if pages > 0 => 1,
            None => self.last_pages,
        }
        .clamp(1, MAX_PAGES);
        let used = self.budget.used(now);
        if used + need > REQUESTS_PER_DAY {
            let at = self.budget.next_release(now).unwrap_or(now + 3600);
            self.state = TenantState::Throttled;
            self.last_error = Some(format!(
                "{} of {REQUESTS_PER_DAY} requests used in 24 h; the snapshot waits until {}",
                used,
                clock::rfc3339(at)
            ));
            // At the period's end a snapshot left unfinished is closed partial.
            return Next::At(at.min(next_period).max(now + 1));
        }
        match self.snapshot(ctx, period, targets).await {
            Ok(taken) => {
                self.last_pages = taken.pages;
                self.snapshots += 1;
                self.attempts = 0;
                self.throttles = 0;
                let result = if taken.short.is_some() {
                    "partial"
                } else {
                    "complete"
                };
                ctx.metrics
                    .add_people_snapshot(&self.tenant, self.feed.as_str(), result);
                self.state = if self.streams.any_failing() {
                    TenantState::Retrying
                } else if taken.short.is_some() {
                    TenantState::Partial
                } else {
                    TenantState::Ok
                };
                match &taken.short {
                    None => {
                        tracing::info!(feed = self.feed.as_str(), pages = taken.pages, users = taken.users, period = %clock::rfc3339(period), "people snapshot delivered")
                    }
                    Some(reason) => {
                        tracing::warn!(feed = self.feed.as_str(), pages = taken.pages, users = taken.users, period = %clock::rfc3339(period), reason = %reason, "people snapshot delivered partial")
                    }
                }
                self.last_error = taken.short;
                Next::Now
            }
            Err(stop) => self.stopped(ctx, stop),
        }
    }

    /// Fetches and delivers the snapshot of `period` to the streams `targets`, from the page
    /// after those they all have; says how it went once it reached its end.
    async fn snapshot(
        &mut self,
        ctx: &Context,
        period: i64,
        targets: Vec<usize>,
    ) -> Result<Taken, Stop> {
        let (mut pages, mut users, mut expected) = self.resume_point(&targets, period);
        let size = self.page_size();
        // The last page worth asking for, from the first total the list gave.
        let mut bound = expected.map(|t| pages_for(t, size).saturating_add(PAGE_MARGIN));
        if pages > 0 {
            tracing::info!(
                feed = self.feed.as_str(),
                page = pages + 1,
                users,
                "people snapshot goes on"
            );
        }
        let mut delivery = self
            .streams
            .begin(
                targets,
                Span {
                    start: period,
                    end: period,
                },
                &ctx.store,
            )
            .map_err(Stop::Store)?;
        let ended = loop {
            let page = pages + 1;
            if page > bound.unwrap_or(MAX_PAGES) {
                break false;
            }
            let now = ctx.clock.now().timestamp();
            if self.budget.used(now) >= REQUESTS_PER_DAY {
                return Err(Stop::Budget);
            }
            self.budget.record(now);
            ctx.store
                .put_budget(&self.id, &self.budget)
                .map_err(Stop::Store)?;
            let url = self
                .feed
                .url(self.config.base_url(), self.people.window_days, page)
                .ok_or_else(|| Stop::Unreadable("base_url is not a URL".into()))?;
            let body = match self
                .client
                .get_url(url, self.config.principal(), &self.secret)
                .await
            {
                Ok(b) => {
                    *self.by_status.entry("200".into()).or_default() += 1;
                    b
                }
                Err(e) => {
                    *self.by_status.entry(e.class().into()).or_default() += 1;
                    return Err(Stop::Api(e, pages > 0));
                }
            };
            let parsed: Page<'_> = serde_json::from_slice(&body).map_err(|e| {
                Stop::Unreadable(format!("page {page} is not a People answer: {e}"))
            })?;
            let n = parsed.users.len();
            if let Some(total) = parsed.total() {
                expected = Some(total);
                bound.get_or_insert(pages_for(total, size).saturating_add(PAGE_MARGIN));
            }
            self.users_fetched += n as u64;
            let batch = batch_of(self.feed, &parsed, period, now);
            delivery
                .send(&batch, ctx.engine())
                .await
                .map_err(Stop::Store)?;
            if !delivery.any_alive() {
                return Err(Stop::Sinks);
            }
            pages = page;
            users += n as u64;
            let progress = Progress {
                end: period,
                pages,
                events: users,
                expected,
                short: None,
            };
            delivery
                .record_progress(&progress, ctx.engine())
                .await
                .map_err(Stop::Store)?;
            // The list ends at a short page, or where its total says (a full last page).
            if n < size as usize || expected == Some(users) {
                break true;
            }
        };
        let short = match expected {
            Some(t) if !ended => Some(format!(
                "the list did not end within {pages} pages, the most its total of {t} allows ({users} users)"
            )),
            None if !ended => Some(format!(
                "the list did not end within {pages} pages and said no total ({users} users)"
            )),
            Some(t) if users < t => Some(format!(
                "the list ended at {users} users, short of the API's total of {t}"
            )),
            Some(t) if users > t => Some(format!(
                "the pages held {users} users, more than the API's total of {t}"
            )),
            _ => None,
        };
        let progress = Progress {
            end: period,
            pages,
            events: users,
            expected,
            short: short.clone(),
        };
        delivery
            .finish_with(Some(progress), ctx.engine())
            .await
            .map_err(Stop::Store)?;
        Ok(Taken {
            pages,
            users,
            short,
        })
    }

    fn stopped(&mut self, ctx: &Context, stop: Stop) -> Next {
        let now = ctx.clock.now().timestamp();
        let max = ctx.poll.max_backoff;
        let (state, at, message) = match stop {
            Stop::Sinks => {
                // Each stream waits for its own retry; the snapshot is completed then.
                self.state = TenantState::Retrying;
                return Next::At(self.streams.next_retry().unwrap_or(now + 60).max(now + 1));
            }
            Stop::Budget => (
                TenantState::Throttled,
                self.budget.next_release(now).unwrap_or(now + 3600),
                "request budget spent in the middle of a snapshot; it goes on from where it stopped when requests age out".to_string(),
            ),
            Stop::Api(e, begun) => match e.disposition() {
                // The quota is spent, by this source or another tool on the credential. A
                // snapshot not begun waits for this source's oldest request to age out; one
                // half delivered is worth asking again sooner (another tool's requests age out
                // when we cannot see): after an hour, doubling to THROTTLED_RETRY, or when the
                // oldest request ages out if that comes first.
                Disposition::Throttled => {
                    let release = self.budget.next_release(now);
                    let at = if begun {
                        let wait = backoff::delay(
                            self.throttles,
                            std::time::Duration::from_secs(3600),
                            std::time::Duration::from_secs(THROTTLED_RETRY as u64),
                        );
                        self.throttles += 1;
                        let probe = now + wait.as_secs() as i64;
                        release.map_or(probe, |r| r.min(probe))
                    } else {
                        release.unwrap_or(now + 3600)
                    }
                    .max(now + 60);
                    (
                        TenantState::Throttled,
                        at,
                        format!(
                            "the People API answered 429 (the endpoint's quota is spent, by this source or another tool on the credential); asking again at {}",
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
                        backoff::delay(self.attempts, std::time::Duration::from_secs(30), max);
                    (TenantState::Retrying, now + wait.as_secs().max(1) as i64, e.to_string())
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
        tracing::warn!(feed = self.feed.as_str(), error = %message, retry_at = %clock::rfc3339(at), "people snapshot stopped");
        self.state = state;
        self.last_error = Some(message);
        self.retry_at = at;
        // Wake at the period's end as well: a snapshot it leaves unfinished is closed partial.
        let next_period = period_of(now, self.every()) + self.every();
        Next::At(at.min(next_period))
    }

    fn publish(&self, ctx: &Context, next_at: Option<i64>) {
        let now = ctx.clock.now().timestamp();
        let mut budget = self.budget.clone();
        ctx.status.put(TenantStatus {
            tenant: self.id.to_string(),
            state: self.state,
            last_error: self.last_error.clone(),
            requests_24h: budget.used(now),
            requests_limit: REQUESTS_PER_DAY,
            next_poll_at: next_at.map(clock::rfc3339),
            events_fetched: self.users_fetched,
            windows_fetched: self.snapshots,
            requests_by_status: self.by_status.clone(),
            sinks: self.streams.statuses(now, 0),
            ..TenantStatus::default()
        });
    }
}

/// The users of one page as a batch: each user's bytes as sent, keyed by the period and those
/// bytes, with the list's `interval` beside them.
fn batch_of(feed: Feed, page: &Page<'_>, period: i64, now: i64) -> Batch {
    let mut buf = BytesMut::new();
    let mut events = Vec::with_capacity(page.users.len());
    let prefix = period.to_be_bytes();
    for user in &page.users {
        let raw = user.get().as_bytes();
        let start = buf.len() as u32;
        buf.extend_from_slice(raw);
        let mut hashed = Vec::with_capacity(prefix.len() + raw.len());
        hashed.extend_from_slice(&prefix);
        hashed.extend_from_slice(raw);
        events.push(EventMeta {
            kind: feed.kind(),
            start,
            len: raw.len() as u32,
            key: EventKey::of(&hashed),
            time_ms: Some(now * 1000),
            customer: None,
        });
    }
    Batch {
        buf: buf.freeze(),
        events,
        enrichment: None,
        snapshot: page.interval.as_deref().map(Arc::from),
    }
}

/// The pages a list of `total` users takes at `size` a page: up to the first that comes back
/// short (empty, when `total` is a multiple of `size`).
fn pages_for(total: u64, size: u32) -> u32 {
    u32::try_from((total / u64::from(size.max(1))).saturating_add(1)).unwrap_or(u32::MAX)
}

/// The start of the period `now` falls in (periods of `every` seconds from the epoch).
fn period_of(now: i64, every: i64) -> i64 {
    now.div_euclid(every.max(1)) * every.max(1)
}

#[async_trait]
impl Source for PeopleSource {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_for_counts_up_to_the_page_that_comes_back_short() {
        assert_eq!(pages_for(450, 200), 3);
        assert_eq!(pages_for(400, 200), 3, "page 3 comes back empty");
        assert_eq!(pages_for(120, 1000), 1);
        assert_eq!(pages_for(0, 200), 1);
        assert_eq!(pages_for(u64::MAX, 1), u32::MAX);
    }
}
