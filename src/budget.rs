//! A tenant's rolling 24-hour request log (invariant 4).
//!
//! The TAP SIEM endpoints allow 1,800 requests per credential in any rolling 24 hours, and a 429
//! lasts until the oldest request ages out; no `Retry-After` says when. The log counts requests
//! in 5-minute buckets (288 of them: 576 bytes a tenant, in memory and in the store), which is
//! conservative: a request is taken to age out at the end of its bucket plus 24 hours.
//!
//! Steady polling is reserved first: a late-sweep or backlog window may be fetched only while the
//! requests used plus one day of steady polls stay under the quota, so neither a long backfill nor
//! the late sweep can ever take a request from the polls that keep a tenant fresh. Between the
//! two, the source asks for the sweep's window first.

use serde::{Deserialize, Serialize};

/// Width of one bucket, in seconds.
pub const BUCKET_SECS: i64 = 300;
/// Buckets in 24 hours.
pub const BUCKETS: usize = (86_400 / BUCKET_SECS) as usize;

/// Requests per 5-minute bucket over the last 24 hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// Index (unix seconds / BUCKET_SECS) of the newest bucket.
    head: i64,
    /// `counts[i]` is bucket `head - i`.
    counts: Vec<u16>,
}

/// What kind of request is asking for budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demand {
    /// The one window that keeps a caught-up tenant fresh.
    Steady,
    /// The late sweep's second query of an old window: only from what steady polling leaves,
    /// and before backlog.
    Sweep,
    /// Backlog, retries: only from what steady polling leaves.
    Backlog,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            head: 0,
            counts: vec![0; BUCKETS],
        }
    }
}

impl Budget {
    fn advance(&mut self, now_secs: i64) {
        if self.counts.len() != BUCKETS {
            self.counts.resize(BUCKETS, 0);
        }
        let idx = now_secs.div_euclid(BUCKET_SECS);
        if idx <= self.head {
            return;
        }
        let shift = (idx - self.head).min(BUCKETS as i64) as usize;
        self.counts.rotate_right(shift);
        self.counts[..shift].fill(0);
        self.head = idx;
    }

    /// Requests counted in the 24 hours before `now_secs`.
    pub fn used(&mut self, now_secs: i64) -> u32 {
        self.advance(now_secs);
        self.counts.iter().map(|&c| u32::from(c)).sum()
    }

    /// Counts one request at `now_secs`.
    pub fn record(&mut self, now_secs: i64) {
        self.advance(now_secs);
        self.counts[0] = self.counts[0].saturating_add(1);
    }

    /// Whether a request of this kind may be sent now, with `limit` requests per day and a
    /// steady cadence of `steady_per_day` requests.
    pub fn allows(
        &mut self,
        now_secs: i64,
        demand: Demand,
        limit: u32,
        steady_per_day: u32,
    ) -> bool {
        let used = self.used(now_secs);
        match demand {
            Demand::Steady => used < limit,
            Demand::Sweep | Demand::Backlog => used.saturating_add(steady_per_day) < limit,
        }
    }

    /// The earliest instant (unix seconds) at which the oldest counted request ages out, or
    /// `None` when nothing is counted.
    pub fn next_release(&mut self, now_secs: i64) -> Option<i64> {
        self.advance(now_secs);
        let oldest = self.counts.iter().rposition(|&c| c > 0)?;
        let bucket = self.head - oldest as i64;
        Some((bucket + 1) * BUCKET_SECS + 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_age_out_after_a_day() {
        let mut b = Budget::default();
        let t0 = 1_700_000_000;
        for i in 0..10 {
            b.record(t0 + i * 60);
        }
        assert_eq!(b.used(t0 + 3600), 10);
        assert_eq!(b.used(t0 + 86_400 - 600), 10);
        assert_eq!(b.used(t0 + 86_400 + 1200), 0);
    }

    #[test]
    fn backlog_leaves_room_for_steady_polls() {
        let mut b = Budget::default();
        let t0 = 1_700_000_000;
        for _ in 0..(1800 - 288 - 1) {
            b.record(t0);
        }
        assert!(b.allows(t0, Demand::Backlog, 1800, 288));
        assert!(b.allows(t0, Demand::Sweep, 1800, 288));
        b.record(t0);
        assert!(!b.allows(t0, Demand::Backlog, 1800, 288));
        assert!(
            !b.allows(t0, Demand::Sweep, 1800, 288),
            "the sweep never takes a steady poll's request"
        );
        assert!(b.allows(t0, Demand::Steady, 1800, 288));
    }

    #[test]
    fn next_release_is_end_of_oldest_bucket_plus_a_day() {
        let mut b = Budget::default();
        let t0 = 1_700_000_100; // inside bucket 5_666_667
        b.record(t0);
        b.record(t0 + 7200);
        let release = b.next_release(t0 + 7200).unwrap();
        assert_eq!(release, (t0.div_euclid(300) + 1) * 300 + 86_400);
        assert!(release > t0 + 86_400);
        assert_eq!(Budget::default().next_release(t0), None);
    }

    #[test]
    fn survives_serde_round_trip() {
        let mut b = Budget::default();
        b.record(1_700_000_000);
        let text = serde_json::to_string(&b).unwrap();
        let mut back: Budget = serde_json::from_str(&text).unwrap();
        assert_eq!(back.used(1_700_000_000), 1);
    }
}
