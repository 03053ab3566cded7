//! The Proofpoint on Demand (PoD) log stream: one source per (tenant, log type), a live
//! WebSocket connection plus archive catch-ups that close every gap.
//!
//! **A long-lived task, not scheduler steps.** A stream is read continuously, so the scheduler
//! holds a [`PodSource`] handle whose first step spawns the stream's task (under a child of the
//! app's shutdown token) and whose later steps only check on it; dropping the handle (a reload
//! removing the tenant, the scheduler ending) cancels the task, which closes its connection
//! cleanly. The task takes no scheduler permit, so a stream never holds back polled tenants.
//!
//! **Never two sessions on one token** (invariant 3): every connection, live or archive, holds
//! the process-wide lock of its (base URL, cluster, token, type) for as long as its socket is
//! open ([`crate::api::pod`] holds the locks and the connect), so a reconnect (or a restarted
//! task after a reload) waits for the old socket to be closed; a 409 from the service waits out
//! the backoff helper's delay.
//!
//! **Delivery** (invariants 1, 2): frames are batched (count, bytes, a short linger) and handed
//! to the shared engine, keyed by a hash of the frame, so the service's duplicate frames and the
//! overlaps of hour-rounded archive windows never reach a sink twice. Each sink's position is the
//! latest `ts` (whole seconds) up to which it has *every* frame; it moves with each live chunk only
//! while that sink is *in sync* (it has had every frame since its position).
//!
//! **No gaps.** A sink falls out of sync when the live connection drops abnormally (frames in
//! flight are lost with it), at a restart, or when the sink fails. The first live chunk it takes
//! again marks where its live coverage restarts (`live_from`); the span from its position to
//! there is fetched in archive mode (`sinceTime`/`toTime`, hour windows, one session at a time)
//! once the archive serves it (`archive_lag`, 30 minutes by default). The live connection is
//! closed cleanly for the catch-up (the service resumes a clean reconnect where the session
//! stopped) and reopened after it. A position older than `archive_horizon` is moved to the
//! horizon and the skipped span reported (log, status `gap_seconds`, `tapfwd_gap_seconds_total`).
//!
//! **Back-pressure**: nothing is buffered for a failing sink; it holds its position and catches
//! up from the archive when it accepts again, so memory stays bounded however long it is down.
//! Every sink takes a chunk before the next goes, so after its first failure a sink is tried
//! with a single attempt (the engine's `probe_failing_sinks`) each time its backoff allows: a
//! down HTTP sink does not hold the others for its `retry.max_time` at every try.
//!
//! **Where it lives.** This file: the scheduler's handle and the stream's task (catch up, go
//! live, wait out failures). `session.rs`: the live connection (connect, read, ping and pong,
//! deliver chunk by chunk), with its ping timing in `heartbeat.rs`. `catchup.rs`: archive sessions and the horizon clamp. `lanes.rs`:
//! each sink's sync state, the spans the archive must fill and how live chunks move positions.
//! `chunk.rs`: frames batched into a chunk. `status.rs`: what the stream publishes to the status
//! board and metrics. The wire (URL, connect, session locks) is [`crate::api::pod`].

mod catchup;
mod chunk;
mod heartbeat;
mod lanes;
mod session;
mod status;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::catchup::CatchUpError;
use self::lanes::Lane;
use self::session::LiveEnd;
use self::status::Stats;
use super::plan::{SourceId, SourceKind};
use super::{Context, Next, Source};
use crate::api::pod::{session_lock, stream_url};
use crate::api::{ApiError, Disposition};
use crate::backoff;
use crate::config::tenant::ProductSettings;
use crate::config::{PodTenant, PodType};
use crate::engine::{KeyHorizon, Streams};
use crate::sinks::Sink;
use crate::status::TenantState;
use crate::store::StoreError;

/// Dedupe keys are kept 3 hours behind a sink's position: longer than an archive window (an
/// hour) plus the live replay (an hour). A delivery loads them from 2 minutes before the (whole
/// hour of the) span it covers.
const KEYS: KeyHorizon = KeyHorizon {
    reach: 120,
    keep: 3 * 3600,
};
// A catch-up starts `max_disorder` before a position, on the hour before that: the keys it loads
// from there must not have been forgotten yet.
const _: () = assert!(
    KEYS.keep >= 3600 + KEYS.reach + crate::config::pod::MAX_DISORDER_LIMIT.as_secs() as i64
);
/// How long a clean close may take (connecting: [`crate::api::pod::CONNECT_TIMEOUT`]).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// The scheduler's handle of one (tenant, type) stream; see the module header.
pub struct PodSource {
    /// `tenant:pod.message`.
    id: Arc<str>,
    /// The stream, until the first step moves it into its task.
    stream: Option<Box<PodStream>>,
    cancel: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for PodSource {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl PodSource {
    pub fn new(
        tenant: &str,
        kind: PodType,
        config: Arc<PodTenant>,
        token: SecretString,
        sinks: Vec<Arc<dyn Sink>>,
        ctx: &Context,
    ) -> Result<PodSource, StoreError> {
        let id: Arc<str> = Arc::from(SourceId::new(tenant, SourceKind::Pod(kind)).to_string());
        // A new stream starts at 0: "nothing wanted before the first frame" (see `deliver`).
        let streams = Streams::open_scoped(tenant, &id, sinks, 0, KEYS, &ctx.store)?;
        let lanes = vec![Lane::default(); streams.len()];
        let base = config.base_url().trim_end_matches('/').to_string();
        let cid = config.cluster_id.clone().unwrap_or_default();
        let lock = session_lock(&base, &cid, &token, kind.as_str());
        let stream = PodStream {
            id: id.clone(),
            tenant: Arc::from(tenant),
            kind,
            base,
            cid,
            token,
            config,
            streams,
            lanes,
            lock,
            stats: Stats::default(),
            attempts: 0,
        };
        stream.publish(ctx);
        Ok(PodSource {
            id,
            stream: Some(Box::new(stream)),
            cancel: ctx.shutdown.child_token(),
            task: None,
        })
    }
}

#[async_trait]
impl Source for PodSource {
    fn id(&self) -> &str {
        &self.id
    }

    async fn step(&mut self, ctx: &Context) -> Next {
        let now = ctx.clock.now().timestamp();
        if let Some(stream) = self.stream.take() {
            let span = tracing::info_span!("tenant", tenant = %stream.tenant, source = %self.id);
            // Tracked, so that the app's shutdown waits for the stream to close and commit.
            let tasks = ctx.streams.clone();
            let (ctx, cancel) = (ctx.clone(), self.cancel.clone());
            let run = async move { stream.run(&ctx, &cancel).await }.instrument(span);
            self.task = Some(tasks.spawn(run));
        } else if self.task.as_ref().is_some_and(|t| t.is_finished()) && !self.cancel.is_cancelled()
        {
            tracing::error!(source = %self.id, "the stream's task ended; the tenant needs a reload or a restart");
        }
        Next::At(now + 3600)
    }
}

/// One (tenant, type) stream, owned by its task.
struct PodStream {
    id: Arc<str>,
    tenant: Arc<str>,
    kind: PodType,
    /// `wss://host[:port]`, without a trailing slash.
    base: String,
    cid: String,
    token: SecretString,
    config: Arc<PodTenant>,
    streams: Streams,
    lanes: Vec<Lane>,
    lock: Arc<tokio::sync::Mutex<()>>,
    stats: Stats,
    /// Consecutive failed connections.
    attempts: u32,
}

/// `max_disorder` in whole seconds, rounded up (positions are whole seconds).
fn disorder_secs(d: Duration) -> i64 {
    d.as_millis().div_ceil(1000) as i64
}

/// The start of the hour `secs` falls in (archive windows and key spans are whole hours).
fn floor_hour(secs: i64) -> i64 {
    secs.div_euclid(3600) * 3600
}

impl PodStream {
    /// The stream's task until it is cancelled: catch up from the archive what the sinks lack,
    /// then go live until the session ends; wait out each failure.
    async fn run(mut self, ctx: &Context, cancel: &CancellationToken) {
        tracing::info!(kind = self.kind.as_str(), "pod stream starting");
        loop {
            if cancel.is_cancelled() {
                break;
            }
            match self.catch_up(ctx, cancel).await {
                Ok(()) => {}
                Err(CatchUpError::Cancelled) => break,
                Err(e) => {
                    let wait = self.failed(ctx, e.disposition(), e.to_string());
                    if self.wait(ctx, cancel, wait).await {
                        break;
                    }
                    continue;
                }
            }
            let end = self.live(ctx, cancel).await;
            self.stats.connected = false;
            let wait = match end {
                LiveEnd::Cancelled => break,
                LiveEnd::Pause => continue,
                LiveEnd::Dropped(reason) => {
                    // Frames in flight may be lost with the connection: every sink is out of
                    // sync until the archive has covered the span.
                    for lane in &mut self.lanes {
                        *lane = Lane::default();
                    }
                    tracing::warn!(reason = %reason, "pod live connection lost; reconnecting");
                    self.stats.last_error = Some(format!("connection lost: {reason}"));
                    self.stats.state = TenantState::Retrying;
                    let wait =
                        backoff::delay(self.attempts, Duration::from_secs(1), ctx.poll.max_backoff);
                    self.attempts = self.attempts.saturating_add(1);
                    wait
                }
                LiveEnd::Refused => {
                    // The service holds the other session until it times out (about 5 minutes
                    // idle): a retry soon after a 409 is as useless as the first, so the waits
                    // surely grow.
                    self.stats.refused += 1;
                    let e = ApiError::SessionOpen;
                    self.failed_with(ctx, e.disposition(), e.to_string(), backoff::growing_delay)
                }
                LiveEnd::Failed(e) => self.failed(ctx, e.disposition(), e.to_string()),
                LiveEnd::Store(e) => self.failed(
                    ctx,
                    Disposition::Transient,
                    format!("state store failed: {e}"),
                ),
            };
            if self.wait(ctx, cancel, wait).await {
                break;
            }
        }
        self.stats.connected = false;
        self.publish(ctx);
        tracing::info!(kind = self.kind.as_str(), "pod stream stopped");
    }

    /// Records a failure; returns how long to wait before the next attempt: refused credentials
    /// fail the stream and wait longer, anything else is retried.
    fn failed(&mut self, ctx: &Context, disposition: Disposition, message: String) -> Duration {
        self.failed_with(ctx, disposition, message, backoff::delay)
    }

    /// [`PodStream::failed`], with the wait drawn by `delay` (attempt, base, cap).
    fn failed_with(
        &mut self,
        ctx: &Context,
        disposition: Disposition,
        message: String,
        delay: fn(u32, Duration, Duration) -> Duration,
    ) -> Duration {
        let message = crate::secret::scrub_with(message, std::slice::from_ref(&self.token));
        let (state, base) = match disposition {
            Disposition::Credentials => (TenantState::Failed, Duration::from_secs(60)),
            Disposition::Throttled
            | Disposition::TooOld
            | Disposition::Rejected
            | Disposition::Transient => (TenantState::Retrying, Duration::from_secs(5)),
        };
        self.stats.state = state;
        let wait = delay(self.attempts, base, ctx.poll.max_backoff);
        self.attempts = self.attempts.saturating_add(1);
        tracing::warn!(error = %message, retry_in_secs = wait.as_secs(), "pod stream waiting to retry");
        self.stats.last_error = Some(message);
        // Published by `wait`, with the time of the next attempt.
        wait
    }

    /// Waits `d` of clock time, with the next attempt's time in status; true when cancelled
    /// meanwhile.
    async fn wait(&mut self, ctx: &Context, cancel: &CancellationToken, d: Duration) -> bool {
        let at = ctx.clock.now() + chrono::Duration::from_std(d).unwrap_or_default();
        self.stats.retry_at = Some(at.timestamp_millis());
        self.publish(ctx);
        let cancelled = tokio::select! {
            _ = cancel.cancelled() => true,
            _ = ctx.clock.sleep_until(at) => false,
        };
        self.stats.retry_at = None;
        cancelled
    }

    /// The tenant's `max_disorder`, in whole seconds rounded up (see [`lanes`]).
    fn disorder(&self) -> i64 {
        disorder_secs(self.config.max_disorder)
    }

    fn stream_url(&self, archive: Option<(i64, i64)>) -> String {
        stream_url(&self.base, &self.cid, self.kind.as_str(), archive)
    }
}
