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
//! open ([`crate::api::pod`] holds the locks and the connect), so a reconnect (or a restarted task after a reload) waits for the old socket to be
//! closed; a 409 from the service waits out the backoff helper's delay.
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

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use secrecy::SecretString;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::plan::{SourceId, SourceKind};
use super::{Context, Next, Source};
use crate::api::pod::{connect, frame_ts_ms, session_lock, stream_url, Ws, CONNECT_TIMEOUT};
use crate::api::{ApiError, Disposition};
use crate::backoff;
use crate::clock;
use crate::config::tenant::ProductSettings;
use crate::config::{PodTenant, PodType};
use crate::engine::{Delivery, KeyHorizon, Span, Streams};
use crate::event::{Batch, EventKey, EventMeta};
use crate::sinks::Sink;
use crate::status::{StreamStatus, TenantState, TenantStatus};
use crate::store::StoreError;

/// A live chunk is delivered at this many frames…
const BATCH_FRAMES: usize = 1000;
/// …or this many bytes…
const BATCH_BYTES: usize = 1 << 20;
/// …or this long after its first frame arrived.
const LINGER: Duration = Duration::from_millis(50);
/// How often (clock time) a live connection checks whether a catch-up is due, whether a
/// failed sink may join again, and publishes its status.
const CHECK_EVERY: i64 = 5;
/// A live delivery is started afresh this often (seconds), which bounds the dedupe keys it holds
/// in memory to about the replay hour.
const REBEGIN_EVERY: i64 = 600;
/// Dedupe keys are kept 3 hours behind a sink's position: longer than an archive window (an
/// hour) plus the live replay (an hour). A delivery loads them from 2 minutes before the (whole
/// hour of the) span it covers.
const KEYS: KeyHorizon = KeyHorizon {
    reach: 120,
    keep: 3 * 3600,
};
/// How long a clean close may take (connecting: [`CONNECT_TIMEOUT`]).
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

/// What the source knows of one sink's stream besides its position (memory only).
#[derive(Clone, Debug, Default)]
struct Lane {
    /// The sink has every frame up to its position and every live frame since: live chunks
    /// move its position.
    synced: bool,
    /// Out of sync: the (whole second of the) first live frame it took since it fell out.
    live_from: Option<i64>,
    /// The latest live frame it took (whole seconds).
    live_latest: Option<i64>,
}

#[derive(Default)]
struct Stats {
    connected: bool,
    connects: u64,
    reconnects: u64,
    catchups: u64,
    refused: u64,
    frames: u64,
    last_frame_ts: Option<String>,
    last_frame_at: Option<i64>,
    /// `(clock ms, frames)` at the last rate computation.
    rate_mark: (i64, u64),
    events_per_second: f64,
    /// Clock ms: when the open connection sends its next ping, and when the pong of the ping
    /// sent is due (published, so status shows the deadlines and tests can step to them).
    next_ping_at: Option<i64>,
    pong_due_at: Option<i64>,
    /// Clock ms of the next connection attempt while the stream waits out a failure.
    retry_at: Option<i64>,
    state: TenantState,
    last_error: Option<String>,
}

/// Why a live session ended.
enum LiveEnd {
    Cancelled,
    /// Closed cleanly by us for an archive catch-up.
    Pause,
    /// Lost: abnormal closure, a close by the service, a missing pong.
    Dropped(String),
    /// 409: a session of this token is still open somewhere.
    Refused,
    /// Could not connect, or the service refused the token.
    Failed(ApiError),
    Store(StoreError),
}

/// Why an archive catch-up stopped early.
#[derive(Debug, thiserror::Error)]
enum CatchUpError {
    #[error("archive session: {0}")]
    Connect(ApiError),
    #[error("archive session lost: {0}")]
    Lost(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("cancelled")]
    Cancelled,
}

impl CatchUpError {
    /// What the stream does about it: a session the service refused says why; a lost session
    /// or a failing store is retried.
    fn disposition(&self) -> Disposition {
        match self {
            CatchUpError::Connect(e) => e.disposition(),
            // Cancelled ends the stream before any wait; it is never asked.
            CatchUpError::Lost(_) | CatchUpError::Store(_) | CatchUpError::Cancelled => {
                Disposition::Transient
            }
        }
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

/// Frames waiting to be delivered as one chunk.
#[derive(Default)]
struct Pending {
    buf: BytesMut,
    events: Vec<EventMeta>,
    /// Whole seconds of the earliest and latest `ts` in the chunk.
    min: Option<i64>,
    max: Option<i64>,
}

impl Pending {
    fn push(&mut self, kind: PodType, frame: &[u8]) -> Option<i64> {
        let ts_ms = frame_ts_ms(frame);
        self.push_at(kind, frame, ts_ms);
        ts_ms
    }

    /// As [`Pending::push`], unless the frame's `ts` is before `floor` (whole seconds): an archive
    /// window starts on the hour, and the frames before every target's position were delivered
    /// already (dedupe would drop them) or precede the stream's first frame (never wanted).
    fn push_from(&mut self, kind: PodType, frame: &[u8], floor: i64) {
        let ts_ms = frame_ts_ms(frame);
        if ts_ms.is_some_and(|ms| ms.div_euclid(1000) < floor) {
            return;
        }
        self.push_at(kind, frame, ts_ms);
    }

    fn push_at(&mut self, kind: PodType, frame: &[u8], ts_ms: Option<i64>) {
        if let Some(ms) = ts_ms {
            let secs = ms.div_euclid(1000);
            self.min = Some(self.min.map_or(secs, |m| m.min(secs)));
            self.max = Some(self.max.map_or(secs, |m| m.max(secs)));
        }
        self.events.push(EventMeta {
            kind: kind.kind(),
            start: self.buf.len() as u32,
            len: frame.len() as u32,
            key: EventKey::of(frame),
            time_ms: ts_ms,
            customer: None,
        });
        self.buf.extend_from_slice(frame);
    }

    fn full(&self) -> bool {
        self.events.len() >= BATCH_FRAMES || self.buf.len() >= BATCH_BYTES
    }

    fn take(&mut self) -> (Batch, Option<i64>, Option<i64>) {
        let batch = Batch {
            buf: std::mem::take(&mut self.buf).freeze(),
            events: std::mem::take(&mut self.events),
            enrichment: None,
            snapshot: None,
        };
        (batch, self.min.take(), self.max.take())
    }
}

fn floor_hour(secs: i64) -> i64 {
    secs.div_euclid(3600) * 3600
}

impl PodStream {
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
                    self.stats.refused += 1;
                    let e = ApiError::SessionOpen;
                    self.failed(ctx, e.disposition(), e.to_string())
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
        let message = crate::secret::scrub_with(message, std::slice::from_ref(&self.token));
        let (state, base) = match disposition {
            Disposition::Credentials => (TenantState::Failed, Duration::from_secs(60)),
            Disposition::Throttled
            | Disposition::TooOld
            | Disposition::Rejected
            | Disposition::Transient => (TenantState::Retrying, Duration::from_secs(5)),
        };
        self.stats.state = state;
        let wait = backoff::delay(self.attempts, base, ctx.poll.max_backoff);
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

    fn stream_url(&self, archive: Option<(i64, i64)>) -> String {
        stream_url(&self.base, &self.cid, self.kind.as_str(), archive)
    }

    /// Fetches from the archive, hour window by hour window, what the sinks that are out of sync
    /// lack and the archive serves; clamps positions older than the horizon.
    async fn catch_up(
        &mut self,
        ctx: &Context,
        cancel: &CancellationToken,
    ) -> Result<(), CatchUpError> {
        let now = ctx.clock.now().timestamp();
        let horizon = now - self.config.archive_horizon.as_secs() as i64;
        let gaps = self.streams.clamp(ctx.engine(), |c| {
            if c != 0 && c < horizon {
                (horizon, Some((c, horizon)))
            } else {
                (c, None)
            }
        })?;
        for (sink, from, to) in gaps {
            tracing::warn!(sink = %sink, from = %clock::rfc3339(from), to = %clock::rfc3339(to), "position older than the archive horizon: this span cannot be fetched and is skipped");
            self.stats.last_error = Some(format!(
                "sink {sink}: {} to {} is past the archive horizon and was skipped",
                clock::rfc3339(from),
                clock::rfc3339(to)
            ));
        }
        let needs = needs(
            &self.lanes,
            self.config.archive_lag,
            &self.streams,
            now,
            false,
        );
        if needs.is_empty() {
            return Ok(());
        }
        self.stats.catchups += 1;
        self.stats.state = TenantState::CatchingUp;
        ctx.metrics
            .add_stream_catchup(&self.tenant, self.kind.as_str());
        let start = floor_hour(needs.iter().map(|n| n.1).min().unwrap_or(now));
        let end = needs.iter().map(|n| n.2).max().unwrap_or(now);
        tracing::info!(from = %clock::rfc3339(start), to = %clock::rfc3339(end), sinks = needs.len(), "archive catch-up");
        self.publish(ctx);
        let mut failed: Vec<usize> = Vec::new();
        let mut h = start;
        while h < end {
            if cancel.is_cancelled() {
                return Err(CatchUpError::Cancelled);
            }
            let h2 = (floor_hour(h) + 3600).min(end);
            let targets: Vec<usize> = needs
                .iter()
                .filter(|(i, from, to)| *from < h2 && *to > h && !failed.contains(i))
                .map(|n| n.0)
                .collect();
            if !targets.is_empty() {
                let floor = needs
                    .iter()
                    .filter(|n| targets.contains(&n.0))
                    .map(|n| n.1)
                    .min()
                    .unwrap_or(h);
                let alive = self
                    .archive_window(ctx, cancel, targets.clone(), h, h2, floor)
                    .await?;
                for i in targets {
                    if !alive.contains(&i) {
                        failed.push(i);
                        continue;
                    }
                    let lane = &mut self.lanes[i];
                    if lane.live_from.is_some_and(|lf| h2 > lf) {
                        lane.synced = true;
                        lane.live_from = None;
                        let to = lane.live_latest.unwrap_or(h2).max(h2);
                        self.streams.advance(i, to, ctx.engine())?;
                    }
                }
                self.publish(ctx);
            }
            h = h2;
        }
        ctx.store.flush().await?;
        self.attempts = 0;
        Ok(())
    }

    /// One archive session for `[since, to]`, delivered to `targets` from `floor` (the earliest
    /// of their positions) on; returns the targets that took all of it (their position is now
    /// `to`).
    async fn archive_window(
        &mut self,
        ctx: &Context,
        cancel: &CancellationToken,
        targets: Vec<usize>,
        since: i64,
        to: i64,
        floor: i64,
    ) -> Result<Vec<usize>, CatchUpError> {
        let _session = self.lock.clone().lock_owned().await;
        let url = self.stream_url(Some((since, to)));
        let mut ws = connect(&url, &self.token)
            .await
            .map_err(CatchUpError::Connect)?;
        let mut delivery = self.streams.begin(
            targets,
            Span {
                start: floor_hour(since),
                end: to,
            },
            &ctx.store,
        )?;
        let mut pending = Pending::default();
        let kind = self.kind;
        loop {
            let msg = tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = ws.close(None).await;
                    return Err(CatchUpError::Cancelled);
                }
                msg = tokio::time::timeout(CONNECT_TIMEOUT * 4, ws.next()) => msg,
            };
            match msg {
                Ok(Some(Ok(Message::Text(t)))) => pending.push_from(kind, t.as_bytes(), floor),
                Ok(Some(Ok(Message::Binary(b)))) => pending.push_from(kind, &b, floor),
                Ok(Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(CatchUpError::Lost(e.to_string())),
                Ok(None) => {
                    return Err(CatchUpError::Lost(
                        "connection closed before the end of the archive".into(),
                    ))
                }
                Err(_) => return Err(CatchUpError::Lost("no frame for two minutes".into())),
            }
            if pending.full() {
                let (batch, _, _) = pending.take();
                self.stats.frames += batch.len() as u64;
                delivery.send(&batch, ctx.engine()).await?;
                if !delivery.any_alive() {
                    // Every target failed: the rest of the window is not worth reading.
                    let _ = ws.close(None).await;
                    break;
                }
            }
        }
        // Let the close handshake finish, so the session is gone before the next one.
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
        drop(ws);
        if !pending.events.is_empty() && delivery.any_alive() {
            let (batch, _, _) = pending.take();
            self.stats.frames += batch.len() as u64;
            delivery.send(&batch, ctx.engine()).await?;
        }
        let alive = delivery.alive_streams();
        delivery.finish(ctx.engine()).await?;
        Ok(alive)
    }

    /// One live session: connects (after the previous session of this token is closed), reads
    /// and delivers frames, pings, and ends when the connection is lost, a catch-up is due, or
    /// the source is cancelled.
    async fn live(&mut self, ctx: &Context, cancel: &CancellationToken) -> LiveEnd {
        let session = tokio::select! {
            _ = cancel.cancelled() => return LiveEnd::Cancelled,
            s = self.lock.clone().lock_owned() => s,
        };
        let url = self.stream_url(None);
        let mut ws = match connect(&url, &self.token).await {
            Ok(ws) => ws,
            Err(ApiError::SessionOpen) => return LiveEnd::Refused,
            Err(e) => return LiveEnd::Failed(e),
        };
        if self.stats.connects > 0 {
            self.stats.reconnects += 1;
            ctx.metrics
                .add_stream_reconnect(&self.tenant, self.kind.as_str());
        }
        self.stats.connects += 1;
        self.stats.connected = true;
        self.stats.state = TenantState::Ok;
        self.stats.last_error = None;
        self.publish(ctx);
        tracing::info!(kind = self.kind.as_str(), "pod live connection open");
        let end = self.session(ctx, cancel, &mut ws).await;
        drop(ws);
        drop(session);
        self.stats.next_ping_at = None;
        self.stats.pong_due_at = None;
        end
    }

    async fn session(&mut self, ctx: &Context, cancel: &CancellationToken, ws: &mut Ws) -> LiveEnd {
        let clock = ctx.clock.clone();
        let ping_every = self.config.ping_interval;
        let pong_wait = (ping_every / 2).max(Duration::from_secs(1));
        let chrono_d = |d: Duration| chrono::Duration::from_std(d).unwrap_or_default();
        let mut next_ping = clock.now() + chrono_d(ping_every);
        let mut pong_due: Option<chrono::DateTime<chrono::Utc>> = None;
        self.stats.next_ping_at = Some(next_ping.timestamp_millis());
        self.stats.pong_due_at = None;
        let mut next_check = clock.now().timestamp() + CHECK_EVERY;
        let mut pending = Pending::default();
        let mut linger: Option<tokio::time::Instant> = None;
        let now = clock.now().timestamp();
        let mut began = now;
        let mut delivery = match begin(&mut self.streams, &mut self.lanes, now, ctx) {
            Ok(d) => d,
            Err(e) => return LiveEnd::Store(e),
        };
        let kind = self.kind;
        loop {
            let wake = pong_due
                .unwrap_or(next_ping)
                .min(clock::to_datetime(next_check));
            let lingering = async {
                match linger {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let mut flush = false;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    let end = close_cleanly(ws, &mut pending, kind).await;
                    let _ = deliver(&mut delivery, &mut self.lanes, &mut pending, ctx).await;
                    return end.map_or(LiveEnd::Cancelled, LiveEnd::Dropped);
                }
                msg = ws.next() => match msg {
                    Some(Ok(Message::Text(t))) => {
                        self.stats.note_frame(&t, &clock);
                        pending.push(kind, t.as_bytes());
                        flush = pending.full();
                    }
                    Some(Ok(Message::Binary(b))) => {
                        pending.push(kind, &b);
                        flush = pending.full();
                    }
                    Some(Ok(Message::Pong(_))) => {
                        pong_due = None;
                        self.stats.pong_due_at = None;
                    }
                    // tungstenite queued the pong; send it now.
                    Some(Ok(Message::Ping(_))) => { let _ = ws.flush().await; }
                    Some(Ok(Message::Close(frame))) => {
                        let _ = deliver(&mut delivery, &mut self.lanes, &mut pending, ctx).await;
                        let why = frame.map_or_else(|| "closed by the service".to_string(), |f| format!("closed by the service ({}: {})", u16::from(f.code), f.reason));
                        return LiveEnd::Dropped(why);
                    }
                    Some(Ok(Message::Frame(_))) => {}
                    Some(Err(e)) => {
                        let _ = deliver(&mut delivery, &mut self.lanes, &mut pending, ctx).await;
                        return LiveEnd::Dropped(e.to_string());
                    }
                    None => {
                        let _ = deliver(&mut delivery, &mut self.lanes, &mut pending, ctx).await;
                        return LiveEnd::Dropped("connection closed (1006)".into());
                    }
                },
                _ = lingering => flush = true,
                _ = clock.sleep_until(wake) => {
                    let now = clock.now();
                    if pong_due.is_some_and(|due| now >= due) {
                        let _ = deliver(&mut delivery, &mut self.lanes, &mut pending, ctx).await;
                        return LiveEnd::Dropped(format!("no pong within {} of a ping: the connection is silent", humantime::format_duration(pong_wait)));
                    }
                    if now >= next_ping {
                        if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                            let _ = deliver(&mut delivery, &mut self.lanes, &mut pending, ctx).await;
                            return LiveEnd::Dropped(e.to_string());
                        }
                        pong_due = Some(now + chrono_d(pong_wait));
                        next_ping = now + chrono_d(ping_every);
                        self.stats.pong_due_at = pong_due.map(|d| d.timestamp_millis());
                        self.stats.next_ping_at = Some(next_ping.timestamp_millis());
                        publish(&self.id, &self.tenant, self.kind, &self.stats, delivery.streams(), ctx);
                    }
                    let secs = now.timestamp();
                    if secs >= next_check {
                        next_check = secs + CHECK_EVERY;
                        if let Err(e) = deliver(&mut delivery, &mut self.lanes, &mut pending, ctx).await {
                            return LiveEnd::Store(e);
                        }
                        linger = None;
                        self.stats.rate(secs * 1000);
                        publish(&self.id, &self.tenant, self.kind, &self.stats, delivery.streams(), ctx);
                        if !needs(&self.lanes, self.config.archive_lag, delivery.streams(), secs, true).is_empty() {
                            tracing::info!("closing the live connection for an archive catch-up");
                            let end = close_cleanly(ws, &mut pending, kind).await;
                            let _ = deliver(&mut delivery, &mut self.lanes, &mut pending, ctx).await;
                            return end.map_or(LiveEnd::Pause, LiveEnd::Dropped);
                        }
                        let rejoin = delivery.streams().ready(secs).len() > delivery.alive_streams().len();
                        if rejoin || secs - began >= REBEGIN_EVERY {
                            // Dropped, not finished: a live delivery's positions move chunk by
                            // chunk in `deliver`.
                            drop(delivery);
                            began = secs;
                            delivery = match begin(&mut self.streams, &mut self.lanes, secs, ctx) {
                                Ok(d) => d,
                                Err(e) => return LiveEnd::Store(e),
                            };
                        }
                    }
                }
            }
            if pending.events.len() == 1 && linger.is_none() {
                linger = Some(tokio::time::Instant::now() + LINGER);
            }
            if flush {
                linger = None;
                if let Err(e) = deliver(&mut delivery, &mut self.lanes, &mut pending, ctx).await {
                    return LiveEnd::Store(e);
                }
                publish(
                    &self.id,
                    &self.tenant,
                    self.kind,
                    &self.stats,
                    delivery.streams(),
                    ctx,
                );
            }
        }
    }

    fn publish(&self, ctx: &Context) {
        publish(
            &self.id,
            &self.tenant,
            self.kind,
            &self.stats,
            &self.streams,
            ctx,
        );
    }
}

/// The sinks that need the archive now: `(stream, from, to)`, where `to` is where their live
/// coverage starts (or the archive's edge, if sooner). Only spans the archive serves whole
/// are due while connected (`whole`); before connecting, whatever it serves is.
fn needs(
    lanes: &[Lane],
    archive_lag: Duration,
    streams: &Streams,
    now: i64,
    whole: bool,
) -> Vec<(usize, i64, i64)> {
    let avail = now - archive_lag.as_secs() as i64;
    streams
        .ready(now)
        .into_iter()
        .filter_map(|i| {
            let lane = &lanes[i];
            let from = streams.position(i);
            if lane.synced || from == 0 {
                return None;
            }
            let to = match lane.live_from {
                Some(lf) if lf <= avail => lf + 1,
                // Connected, a span is fetched once the archive serves it whole, and only for
                // a sink that took a live chunk since it fell out: one that is still failing
                // is not worth an archive session (nor closing the live connection for).
                _ if whole => return None,
                _ => avail,
            };
            (from < to).then_some((i, from, to))
        })
        .collect()
}

/// A live delivery to every sink that may be tried now, with the dedupe keys of the last
/// hours (the replay and archive overlaps reach that far back).
fn begin<'a>(
    streams: &'a mut Streams,
    lanes: &mut [Lane],
    now: i64,
    ctx: &Context,
) -> Result<Delivery<'a>, StoreError> {
    let targets = streams.ready(now);
    for (i, lane) in lanes.iter_mut().enumerate() {
        if !targets.contains(&i) {
            *lane = Lane::default();
        }
    }
    let oldest = targets
        .iter()
        .map(|&i| streams.position(i))
        .filter(|&p| p != 0)
        .min()
        .unwrap_or(now)
        .max(now - KEYS.keep);
    // The finish of a live delivery never moves a position: `advance` does, chunk by chunk.
    let span = Span {
        start: floor_hour(oldest.min(now - 2 * 3600)),
        end: i64::MIN,
    };
    let mut delivery = streams.begin(targets, span, &ctx.store)?;
    // Every sink waits for the slowest before the next chunk: a sink that is down gets one try
    // per rejoin, not its retries, so the others keep up with the stream meanwhile.
    delivery.probe_failing_sinks();
    Ok(delivery)
}

/// Delivers the pending chunk and moves the positions of the sinks in sync to its latest `ts`.
async fn deliver(
    delivery: &mut Delivery<'_>,
    lanes: &mut [Lane],
    pending: &mut Pending,
    ctx: &Context,
) -> Result<(), StoreError> {
    if pending.events.is_empty() {
        return Ok(());
    }
    let (batch, min, max) = pending.take();
    let (Some(min), Some(max)) = (min, max) else {
        // Frames without a readable `ts` still travel (raw in, raw out), moving no position.
        delivery.set_end(ctx.clock.now().timestamp());
        return delivery.send(&batch, ctx.engine()).await;
    };
    // A sink that has never had a frame starts here: its position is set before the chunk is
    // delivered, so a crash in between cannot leave it "new" with frames already delivered.
    let fresh: Vec<usize> = delivery
        .alive_streams()
        .into_iter()
        .filter(|&i| delivery.streams().position(i) == 0)
        .collect();
    if !fresh.is_empty() {
        delivery
            .advance(|i| fresh.contains(&i).then_some(min - 1), ctx.engine())
            .await?;
        for &i in &fresh {
            lanes[i] = Lane {
                synced: true,
                ..Lane::default()
            };
        }
    }
    delivery.set_end(max);
    delivery.send(&batch, ctx.engine()).await?;
    let alive = delivery.alive_streams();
    for (i, lane) in lanes.iter_mut().enumerate() {
        if !alive.contains(&i) {
            *lane = Lane::default();
            continue;
        }
        lane.live_latest = Some(lane.live_latest.map_or(max, |l| l.max(max)));
        if !lane.synced && lane.live_from.is_none() {
            lane.live_from = Some(min);
        }
        // The archive already reached past where live coverage restarted: in sync again.
        if !lane.synced
            && lane
                .live_from
                .is_some_and(|lf| delivery.streams().position(i) > lf)
        {
            lane.synced = true;
            lane.live_from = None;
        }
    }
    delivery
        .advance(
            |i| Some(if lanes[i].synced { max } else { i64::MIN }),
            ctx.engine(),
        )
        .await
}

/// Sends a close frame and reads until the service's answer, keeping the frames that were
/// still on their way; `Some(reason)` when the connection was lost instead.
async fn close_cleanly(ws: &mut Ws, pending: &mut Pending, kind: PodType) -> Option<String> {
    if let Err(e) = ws.close(None).await {
        return Some(e.to_string());
    }
    let read = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    pending.push(kind, t.as_bytes());
                }
                Some(Ok(Message::Binary(b))) => {
                    pending.push(kind, &b);
                }
                Some(Ok(Message::Close(_))) | None => return None,
                Some(Ok(_)) => {}
                Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) => return None,
                Some(Err(e)) => return Some(e.to_string()),
            }
        }
    };
    tokio::time::timeout(CLOSE_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Some("the service did not answer the close".into()))
}

impl Stats {
    fn note_frame(&mut self, frame: &str, clock: &clock::Clock) {
        self.frames += 1;
        self.last_frame_at = Some(clock.now().timestamp());
        // The `ts` text, for status; cheap enough once per frame as it is a short scan.
        if let Some(at) = frame.find("\"ts\":\"") {
            let rest = &frame[at + 6..];
            if let Some(end) = rest.find('"') {
                self.last_frame_ts = Some(rest[..end].to_string());
            }
        }
    }

    fn rate(&mut self, now_ms: i64) {
        let (at, frames) = self.rate_mark;
        if at > 0 && now_ms > at {
            self.events_per_second = (self.frames - frames) as f64 * 1000.0 / (now_ms - at) as f64;
        }
        self.rate_mark = (now_ms, self.frames);
    }
}

fn publish(id: &str, tenant: &str, kind: PodType, stats: &Stats, streams: &Streams, ctx: &Context) {
    let now = ctx.clock.now().timestamp();
    let sinks = streams.statuses(now, 0);
    for s in &sinks {
        ctx.metrics
            .set_stream_gauges(id, &s.sink, s.behind_seconds, s.backlog_seconds);
    }
    ctx.metrics.set_stream(
        tenant,
        kind.as_str(),
        stats.connected,
        stats.last_frame_at,
        stats.events_per_second,
    );
    let ms = |t: Option<i64>| t.map(clock::rfc3339_ms);
    ctx.status.put(TenantStatus {
        tenant: id.to_string(),
        state: stats.state,
        next_poll_at: ms(stats.retry_at),
        last_error: stats.last_error.clone(),
        events_fetched: stats.frames,
        windows_fetched: stats.catchups,
        sinks,
        stream: Some(StreamStatus {
            connected: stats.connected,
            last_frame_ts: stats.last_frame_ts.clone(),
            last_frame_at: stats.last_frame_at.map(clock::rfc3339),
            reconnects: stats.reconnects,
            archive_catchups: stats.catchups,
            events_per_second: stats.events_per_second,
            sessions_refused: stats.refused,
            next_ping_at: ms(stats.next_ping_at),
            pong_due_at: ms(stats.pong_due_at),
        }),
        ..TenantStatus::default()
    });
}
