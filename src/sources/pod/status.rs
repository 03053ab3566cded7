//! What a PoD stream shows of itself: its tenant record on the status board (state, last error,
//! the next attempt, each sink's lag, the connection's ping and pong deadlines) and its metrics
//! (connected, last frame, rate, each sink's lag). Invariant 7: an error text that may carry the
//! token is scrubbed of it before it is stored here (`PodStream::failed`).

use super::PodStream;
use crate::clock;
use crate::config::PodType;
use crate::engine::Streams;
use crate::sources::Context;
use crate::status::{StreamStatus, TenantState, TenantStatus};

/// What the stream counts and last saw, for status and metrics (memory only).
#[derive(Default)]
pub(super) struct Stats {
    pub(super) connected: bool,
    pub(super) connects: u64,
    pub(super) reconnects: u64,
    pub(super) catchups: u64,
    pub(super) refused: u64,
    pub(super) frames: u64,
    last_frame_ts: Option<String>,
    last_frame_at: Option<i64>,
    /// `(clock ms, frames)` at the last rate computation.
    rate_mark: (i64, u64),
    events_per_second: f64,
    /// Clock ms: when the open connection sends its next ping, and when the pong of the ping
    /// sent is due (published, so status shows the deadlines and tests can step to them).
    pub(super) next_ping_at: Option<i64>,
    pub(super) pong_due_at: Option<i64>,
    /// Clock ms of the next connection attempt while the stream waits out a failure.
    pub(super) retry_at: Option<i64>,
    pub(super) state: TenantState,
    pub(super) last_error: Option<String>,
}

impl Stats {
    /// A live frame came: counted, with its arrival time and its `ts` text.
    pub(super) fn note_frame(&mut self, frame: &[u8], clock: &clock::Clock) {
        self.frames += 1;
        self.last_frame_at = Some(clock.now().timestamp());
        // The `ts` text, for status; cheap enough once per frame as it is a short scan.
        const TS: &[u8] = b"\"ts\":\"";
        if let Some(at) = memchr::memmem::find(frame, TS) {
            let rest = &frame[at + TS.len()..];
            if let Some(end) = memchr::memchr(b'"', rest) {
                self.last_frame_ts = Some(String::from_utf8_lossy(&rest[..end]).into_owned());
            }
        }
    }

    pub(super) fn rate(&mut self, now_ms: i64) {
        let (at, frames) = self.rate_mark;
        if at > 0 && now_ms > at {
            self.events_per_second = (self.frames - frames) as f64 * 1000.0 / (now_ms - at) as f64;
        }
        self.rate_mark = (now_ms, self.frames);
    }
}

impl PodStream {
    pub(super) fn publish(&self, ctx: &Context) {
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

/// The state a stream shows: its connection's, unless that is `ok` while sinks fail. Frames
/// still arrive then, but a failing sink holds its position: `degraded` while another sink takes
/// them, `retrying` when none does (a sink that always rejects the stream's events never shows
/// as `ok`), as a TAP source says of the same.
fn shown_state(state: TenantState, sinks: &[crate::status::SinkStatus]) -> TenantState {
    let failing = sinks.iter().filter(|s| s.failing).count();
    match state {
        TenantState::Ok if failing > 0 && failing == sinks.len() => TenantState::Retrying,
        TenantState::Ok if failing > 0 => TenantState::Degraded,
        state => state,
    }
}

/// Puts the stream's record on the status board and sets its metrics.
pub(super) fn publish(
    id: &str,
    tenant: &str,
    kind: PodType,
    stats: &Stats,
    streams: &Streams,
    ctx: &Context,
) {
    let now = ctx.clock.now().timestamp();
    let mut sinks = streams.statuses(now, 0);
    for s in &mut sinks {
        // A checkpoint may read up to `max_disorder` ahead of the clock (a new stream's, or one
        // an archive session just set): it promises the frames up to that much before it.
        s.behind_seconds = s.behind_seconds.max(0);
    }
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
        state: shown_state(stats.state, &sinks),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::SinkStatus;

    #[test]
    fn a_connected_stream_whose_sinks_fail_is_not_shown_ok() {
        let sink = |failing: bool| SinkStatus {
            failing,
            ..SinkStatus::default()
        };
        let ok = TenantState::Ok;
        assert_eq!(shown_state(ok, &[sink(false), sink(false)]), ok);
        assert_eq!(
            shown_state(ok, &[sink(false), sink(true)]),
            TenantState::Degraded
        );
        assert_eq!(shown_state(ok, &[sink(true)]), TenantState::Retrying);
        assert_eq!(
            shown_state(TenantState::Failed, &[sink(true)]),
            TenantState::Failed
        );
    }
}
