//! What a PoD stream knows of each sink besides its position: whether the sink is in sync (it
//! has every frame since its position, so live chunks move it) and, once out of sync, where its
//! live coverage restarted; from these, which spans the archive must fill (invariants 1, 2).
//!
//! **Frames out of `ts` order.** The stream is not ordered: a frame's `ts` may run up to the
//! tenant's `max_disorder` (`d`) behind the frames sent before it. So a position `p` (the latest
//! `ts` of the chunks a sink took in sync) promises every frame with `ts` up to `p - d`, not up to
//! `p`: a frame a little older than `p` may still be on its way, or lost in flight with a dropped
//! connection. Each span the archive fills therefore starts at `p - d` and ends `d` past the first
//! live frame that restarted coverage (a frame lost just before the restart was sent before that
//! frame, so its `ts` is at most `d` past it). Every position keeps that one meaning, whoever set
//! it: a sink that has never had a frame starts at `d` past the second before the first frame
//! (nothing before the first frame is wanted, so its first catch-up starts there, not `d` earlier),
//! and an archive session that brought every frame before `to` leaves its sinks at `to + d`.

use std::time::Duration;

use super::chunk::Pending;
use super::{floor_hour, KEYS};
use crate::engine::{Delivery, Span, Streams};
use crate::sources::Context;
use crate::store::StoreError;

/// What the source knows of one sink's stream besides its position (memory only).
#[derive(Clone, Debug, Default)]
pub(super) struct Lane {
    /// The sink has every frame up to its position and every live frame since: live chunks
    /// move its position.
    pub(super) synced: bool,
    /// Out of sync: the (whole second of the) first live frame it took since it fell out.
    pub(super) live_from: Option<i64>,
    /// The latest live frame it took (whole seconds).
    pub(super) live_latest: Option<i64>,
}

impl Lane {
    /// Out of sync: where the archive must reach (exclusive) before the sink is in sync again,
    /// `disorder` past the first live frame it took since it fell out (see the module header).
    pub(super) fn archive_to(&self, disorder: i64) -> Option<i64> {
        self.live_from.map(|lf| lf + disorder + 1)
    }
}

/// The sinks that need the archive now: `(stream, from, to)`, from `disorder` before their
/// position to `disorder` past where their live coverage restarted (or the archive's edge, if
/// sooner). Only spans the archive serves whole are due while connected (`whole`); before
/// connecting, whatever it serves is.
pub(super) fn needs(
    lanes: &[Lane],
    archive_lag: Duration,
    disorder: i64,
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
            let position = streams.position(i);
            if lane.synced || position == 0 {
                return None;
            }
            let from = position - disorder;
            let to = match lane.archive_to(disorder) {
                Some(to) if to - 1 <= avail => to,
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
pub(super) fn begin<'a>(
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
    // Each chunk's send is followed by the advance of the positions: one store flush for both.
    delivery.defer_flushes();
    Ok(delivery)
}

/// Delivers the pending chunk and moves the positions of the sinks in sync to its latest `ts`.
pub(super) async fn deliver(
    delivery: &mut Delivery<'_>,
    lanes: &mut [Lane],
    pending: &mut Pending,
    disorder: i64,
    ctx: &Context,
) -> Result<(), StoreError> {
    if pending.events.is_empty() {
        return Ok(());
    }
    let (batch, min, max) = pending.take();
    let (Some(min), Some(max)) = (min, max) else {
        // Frames without a readable `ts` still travel (raw in, raw out), moving no position.
        delivery.set_end(ctx.clock.now().timestamp());
        delivery.send(&batch, ctx.engine()).await?;
        return ctx.store.flush().await;
    };
    // A sink that has never had a frame starts here: its position is set before the chunk is
    // delivered, so a crash in between cannot leave it "new" with frames already delivered. It
    // promises the frames up to `disorder` before it: none, as nothing before the first frame is
    // wanted (see the module header).
    let fresh: Vec<usize> = delivery
        .alive_streams()
        .into_iter()
        .filter(|&i| delivery.streams().position(i) == 0)
        .collect();
    if !fresh.is_empty() {
        delivery
            .advance(
                |i| fresh.contains(&i).then_some(min - 1 + disorder),
                ctx.engine(),
            )
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
        // The archive already reached far enough past where live coverage restarted: in sync
        // again.
        if !lane.synced
            && lane
                .archive_to(disorder)
                .is_some_and(|to| delivery.streams().position(i) - disorder >= to)
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
