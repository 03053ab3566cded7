//! The chunk of frames a PoD stream delivers as one batch: each frame keyed by its hash (so the
//! engine drops the service's duplicates and the overlaps of archive windows, invariant 2) with
//! the range of the `ts` it holds, from which the sinks' positions move.

use std::time::Duration;

use bytes::BytesMut;

use crate::api::pod::frame_ts_ms;
use crate::config::PodType;
use crate::event::{Batch, EventKey, EventMeta};

/// A live chunk is delivered at this many frames…
const BATCH_FRAMES: usize = 1000;
/// …or this many bytes…
const BATCH_BYTES: usize = 1 << 20;
/// …or this long after its first frame arrived. The socket is not read meanwhile: the frames
/// that arrive in the linger are read together at its end (one wake-up a chunk, not one a
/// frame). Every chunk costs a store flush and a sync of the file sink; a longer linger would
/// cost fewer (200 ms: 45 against 109-121 CPU-s per million events in `tapfwd bench --case pod`) but
/// made the PoD test suite, which waits for chunks on real time, twice as slow.
pub(super) const LINGER: Duration = Duration::from_millis(50);

/// Frames waiting to be delivered as one chunk.
#[derive(Default)]
pub(super) struct Pending {
    buf: BytesMut,
    pub(super) events: Vec<EventMeta>,
    /// Whole seconds of the earliest and latest `ts` in the chunk.
    min: Option<i64>,
    max: Option<i64>,
}

impl Pending {
    pub(super) fn push(&mut self, kind: PodType, frame: &[u8]) -> Option<i64> {
        let ts_ms = frame_ts_ms(frame);
        self.push_at(kind, frame, ts_ms);
        ts_ms
    }

    /// As [`Pending::push`], unless the frame's `ts` is before `floor` (whole seconds): an archive
    /// window starts on the hour, and the frames before where every target's catch-up starts
    /// (`max_disorder` before its position) were delivered already (dedupe would drop them) or
    /// precede the stream's first frame (never wanted).
    pub(super) fn push_from(&mut self, kind: PodType, frame: &[u8], floor: i64) {
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

    pub(super) fn full(&self) -> bool {
        self.events.len() >= BATCH_FRAMES || self.buf.len() >= BATCH_BYTES
    }

    pub(super) fn take(&mut self) -> (Batch, Option<i64>, Option<i64>) {
        let batch = Batch {
            buf: std::mem::take(&mut self.buf).freeze(),
            events: std::mem::take(&mut self.events),
            enrichment: None,
            snapshot: None,
        };
        (batch, self.min.take(), self.max.take())
    }
}
