//! The live WebSocket session of a PoD stream: connect under the session lock of its token and
//! type (invariant 3), read frames into chunks and deliver each to every sink that may be tried
//! (invariants 1, 2), ping and expect the pong, and end when the connection is lost or silent, a
//! catch-up is due (the connection is then closed cleanly, and the service resumes a clean
//! reconnect where the session stopped), or the source is cancelled.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::chunk::{Pending, LINGER};
use super::heartbeat::Heartbeat;
use super::lanes::{begin, deliver, needs, Lane};
use super::status::{publish, Stats};
use super::{PodStream, CLOSE_TIMEOUT};
use crate::api::pod::{connect, Ws};
use crate::api::ApiError;
use crate::clock;
use crate::config::PodType;
use crate::engine::{Delivery, Streams};
use crate::sources::Context;
use crate::status::TenantState;
use crate::store::StoreError;

/// How often (clock time) a live connection checks whether a catch-up is due, whether a
/// failed sink may join again, and publishes its status.
const CHECK_EVERY: i64 = 5;
/// A live delivery is started afresh this often (seconds), which bounds the dedupe keys it holds
/// in memory to about the replay hour.
const REBEGIN_EVERY: i64 = 600;

/// Why a live session ended.
pub(super) enum LiveEnd {
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

impl PodStream {
    /// One live session: connects (after the previous session of this token is closed), reads
    /// and delivers frames, pings, and ends when the connection is lost, a catch-up is due, or
    /// the source is cancelled.
    pub(super) async fn live(&mut self, ctx: &Context, cancel: &CancellationToken) -> LiveEnd {
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

    /// Reads the open connection until the session ends: each event (a message, the linger of
    /// the pending chunk running out, a timer) is one step of [`Live`]. The delivery borrows the
    /// stream's sink streams, so it is begun here, and begun afresh when a step asks for it.
    async fn session(&mut self, ctx: &Context, cancel: &CancellationToken, ws: &mut Ws) -> LiveEnd {
        let PodStream {
            id,
            tenant,
            kind,
            config,
            streams,
            lanes,
            stats,
            ..
        } = self;
        let heartbeat = Heartbeat::new(&ctx.clock, config.ping_interval);
        stats.next_ping_at = Some(heartbeat.next_ping.timestamp_millis());
        stats.pong_due_at = None;
        let mut live = Live {
            ctx,
            id,
            tenant,
            kind: *kind,
            archive_lag: config.archive_lag,
            disorder: super::disorder_secs(config.max_disorder),
            lanes,
            stats,
            heartbeat,
            next_check: ctx.clock.now().timestamp() + CHECK_EVERY,
            pending: Pending::default(),
            linger: None,
            began: ctx.clock.now().timestamp(),
        };
        let mut delivery = match begin(streams, live.lanes, live.began, ctx) {
            Ok(d) => d,
            Err(e) => return LiveEnd::Store(e),
        };
        loop {
            let wake = live.wake();
            let lingering = linger_until(live.linger);
            // While a chunk lingers the socket is not read: its frames wait in the kernel's
            // buffer and are read together when the linger ends, one wake-up a chunk instead
            // of one a frame.
            let reading = live.linger.is_none();
            let step = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    Step::End(live.close(ws, &mut delivery, LiveEnd::Cancelled).await)
                }
                msg = ws.next(), if reading => live.read(msg, ws, &mut delivery).await,
                _ = lingering => live.drain(ws, &mut delivery).await,
                _ = ctx.clock.sleep_until(wake) => live.tick(ws, &mut delivery).await,
            };
            let flush = match step {
                Step::Wait => false,
                Step::Flush => true,
                Step::Renew => {
                    // Dropped, not finished: a live delivery's positions move chunk by chunk
                    // in `deliver`.
                    drop(delivery);
                    delivery = match begin(streams, live.lanes, live.began, ctx) {
                        Ok(d) => d,
                        Err(e) => return LiveEnd::Store(e),
                    };
                    false
                }
                Step::End(end) => return end,
            };
            live.linger_from_first_frame();
            if flush {
                if let Err(e) = live.flush(&mut delivery).await {
                    return LiveEnd::Store(e);
                }
            }
        }
    }
}

/// What a step of a live session asks for next.
enum Step {
    /// Nothing: wait for the next event.
    Wait,
    /// Deliver the pending chunk now.
    Flush,
    /// Begin the live delivery afresh (at [`Live::began`]).
    Renew,
    End(LiveEnd),
}

/// Resolves at `at` (tokio time), never when there is none.
async fn linger_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What one live session keeps between its steps besides the socket and the delivery: the
/// pending chunk, the timers, and the parts of the stream it updates.
struct Live<'s> {
    ctx: &'s Context,
    id: &'s str,
    tenant: &'s str,
    kind: PodType,
    archive_lag: Duration,
    /// The tenant's `max_disorder` (whole seconds).
    disorder: i64,
    lanes: &'s mut [Lane],
    stats: &'s mut Stats,
    heartbeat: Heartbeat,
    /// Clock seconds of the next check (a catch-up due, sinks to rejoin, status).
    next_check: i64,
    pending: Pending,
    /// When the pending chunk goes however small it is ([`LINGER`] after its first frame).
    linger: Option<tokio::time::Instant>,
    /// Clock seconds when the current delivery began.
    began: i64,
}

impl Live<'_> {
    /// When the next timer step is due: the heartbeat's deadline or the next check.
    fn wake(&self) -> DateTime<Utc> {
        self.heartbeat
            .deadline()
            .min(clock::to_datetime(self.next_check))
    }

    /// One message, or the end of the connection: a frame joins the pending chunk (which goes
    /// when full), a pong clears the pong due, a ping's answer is sent; a close, an error or the
    /// end of the stream loses the connection.
    async fn read(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        ws: &mut Ws,
        delivery: &mut Delivery<'_>,
    ) -> Step {
        match msg {
            Some(Ok(Message::Text(t))) => {
                self.take(t.as_bytes());
                self.flush_if_full()
            }
            Some(Ok(Message::Binary(b))) => {
                self.take(&b);
                self.flush_if_full()
            }
            Some(Ok(Message::Pong(_))) => {
                self.heartbeat.ponged();
                self.stats.pong_due_at = None;
                Step::Wait
            }
            // tungstenite queued the pong; send it now.
            Some(Ok(Message::Ping(_))) => {
                let _ = ws.flush().await;
                Step::Wait
            }
            Some(Ok(Message::Close(frame))) => {
                let why = match frame {
                    Some(f) => format!(
                        "closed by the service ({}: {})",
                        u16::from(f.code),
                        f.reason
                    ),
                    None => "closed by the service".to_string(),
                };
                self.lost(delivery, why).await
            }
            Some(Ok(Message::Frame(_))) => Step::Wait,
            Some(Err(e)) => self.lost(delivery, e.to_string()).await,
            None => self.lost(delivery, "connection closed (1006)".into()).await,
        }
    }

    /// The linger ran out: reads the messages the socket already holds until the chunk is
    /// full or none is left, then asks for the pending chunk to go.
    async fn drain(&mut self, ws: &mut Ws, delivery: &mut Delivery<'_>) -> Step {
        while let Some(msg) = ws.next().now_or_never() {
            match self.read(msg, ws, delivery).await {
                Step::Wait => {}
                other => return other,
            }
        }
        Step::Flush
    }

    /// A live frame: counted and noted for status (its `ts`, when it came), and added to the
    /// pending chunk. Every live frame comes through here, those read while closing too, so
    /// status never shows an older last frame than the one delivered.
    fn take(&mut self, frame: &[u8]) {
        self.stats.note_frame(frame, &self.ctx.clock);
        self.pending.push(self.kind, frame);
    }

    fn flush_if_full(&self) -> Step {
        if self.pending.full() {
            Step::Flush
        } else {
            Step::Wait
        }
    }

    /// A timer: a pong overdue loses the connection; a ping due is sent (its deadlines
    /// published); then, every [`CHECK_EVERY`] seconds, [`Live::check`].
    async fn tick(&mut self, ws: &mut Ws, delivery: &mut Delivery<'_>) -> Step {
        let now = self.ctx.clock.now();
        if self.heartbeat.silent(now) {
            let why = format!(
                "no pong within {} of a ping: the connection is silent",
                humantime::format_duration(self.heartbeat.pong_wait)
            );
            return self.lost(delivery, why).await;
        }
        if now >= self.heartbeat.next_ping {
            if let Err(e) = ws.send(Message::Ping(Vec::new().into())).await {
                return self.lost(delivery, e.to_string()).await;
            }
            self.heartbeat.pinged(now);
            self.stats.pong_due_at = self.heartbeat.pong_due.map(|d| d.timestamp_millis());
            self.stats.next_ping_at = Some(self.heartbeat.next_ping.timestamp_millis());
            self.publish(delivery.streams());
        }
        let secs = now.timestamp();
        if secs < self.next_check {
            return Step::Wait;
        }
        self.check(secs, ws, delivery).await
    }

    /// The periodic check: delivers the pending chunk, publishes the rate and status, closes
    /// the connection for a catch-up that is due, and renews the delivery when a failed sink
    /// may join again or it is [`REBEGIN_EVERY`] old.
    async fn check(&mut self, secs: i64, ws: &mut Ws, delivery: &mut Delivery<'_>) -> Step {
        self.next_check = secs + CHECK_EVERY;
        if let Err(e) = self.deliver(delivery).await {
            return Step::End(LiveEnd::Store(e));
        }
        self.linger = None;
        self.stats.rate(secs * 1000);
        self.publish(delivery.streams());
        if self.catch_up_due(secs, delivery.streams()) {
            tracing::info!("closing the live connection for an archive catch-up");
            return Step::End(self.close(ws, delivery, LiveEnd::Pause).await);
        }
        let rejoin = delivery.streams().ready(secs).len() > delivery.alive_streams().len();
        if rejoin || secs - self.began >= REBEGIN_EVERY {
            self.began = secs;
            return Step::Renew;
        }
        Step::Wait
    }

    /// Some sink needs a span the archive now serves whole ([`needs`]).
    fn catch_up_due(&self, secs: i64, streams: &Streams) -> bool {
        let due = needs(
            self.lanes,
            self.archive_lag,
            self.disorder,
            streams,
            secs,
            true,
        );
        !due.is_empty()
    }

    /// The connection is lost (`why`): what is pending is delivered, if it can be, and the
    /// session ends.
    async fn lost(&mut self, delivery: &mut Delivery<'_>, why: String) -> Step {
        let _ = self.deliver(delivery).await;
        Step::End(LiveEnd::Dropped(why))
    }

    /// Closes the connection cleanly and delivers the frames it still brought; the session
    /// ends as `end`, or as dropped if the connection was lost meanwhile.
    async fn close(&mut self, ws: &mut Ws, delivery: &mut Delivery<'_>, end: LiveEnd) -> LiveEnd {
        let lost = self.close_cleanly(ws).await;
        let _ = self.deliver(delivery).await;
        lost.map_or(end, LiveEnd::Dropped)
    }

    /// The linger of a chunk starts at its first frame.
    fn linger_from_first_frame(&mut self) {
        if self.pending.events.len() == 1 && self.linger.is_none() {
            self.linger = Some(tokio::time::Instant::now() + LINGER);
        }
    }

    /// Delivers the pending chunk ([`deliver`]), moving the positions of the sinks in sync.
    async fn deliver(&mut self, delivery: &mut Delivery<'_>) -> Result<(), StoreError> {
        deliver(
            delivery,
            self.lanes,
            &mut self.pending,
            self.disorder,
            self.ctx,
        )
        .await
    }

    /// Delivers the pending chunk and publishes the status it leaves.
    async fn flush(&mut self, delivery: &mut Delivery<'_>) -> Result<(), StoreError> {
        self.linger = None;
        self.deliver(delivery).await?;
        self.publish(delivery.streams());
        Ok(())
    }

    fn publish(&self, streams: &Streams) {
        publish(
            self.id,
            self.tenant,
            self.kind,
            self.stats,
            streams,
            self.ctx,
        );
    }

    /// Sends a close frame and reads until the service's answer, taking the frames that were
    /// still on their way; `Some(reason)` when the connection was lost instead.
    async fn close_cleanly(&mut self, ws: &mut Ws) -> Option<String> {
        if let Err(e) = ws.close(None).await {
            return Some(e.to_string());
        }
        let read = async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) => self.take(t.as_bytes()),
                    Some(Ok(Message::Binary(b))) => self.take(&b),
                    Some(Ok(Message::Close(_))) | None => return None,
                    Some(Ok(_)) => {}
                    Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) => {
                        return None
                    }
                    Some(Err(e)) => return Some(e.to_string()),
                }
            }
        };
        tokio::time::timeout(CLOSE_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Some("the service did not answer the close".into()))
    }
}
