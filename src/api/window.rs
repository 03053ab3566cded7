//! Window planning (invariant 3): which `interval=START/END` to ask for next.
//!
//! Windows start at the stream's checkpoint, are aligned to the minute, last between 30 s and
//! `max_window` (at most the API's 1 h), and end no later than `now - lag`. A start older than
//! the API's 7-day horizon (minus a safety margin for the request's own travel time and clock
//! skew) is clamped forward and the skipped span is reported, instead of looping on 400.
//! All instants are unix seconds.

use crate::budget::Demand;
use crate::clock::{ceil_minute, floor_minute, rfc3339};

/// The API's shortest window, in seconds.
pub const MIN_WINDOW_SECS: i64 = 30;
/// The API's longest window, in seconds.
pub const MAX_WINDOW_SECS: i64 = 3600;
/// The TAP SIEM API's horizon, in seconds.
pub const HORIZON_SECS: i64 = 7 * 86_400;
/// The Proofpoint Essentials Threat API's horizon, in seconds.
pub const ESSENTIALS_HORIZON_SECS: i64 = 3 * 86_400;
/// How far inside the horizon a clamped start lands.
pub const HORIZON_MARGIN_SECS: i64 = 600;

/// `[start, end]` in unix seconds; the API includes both ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The `interval` query parameter: `2026-11-23T10:00:00Z/2026-11-23T11:00:00Z`.
    pub fn interval_param(&self) -> String {
        format!("{}/{}", rfc3339(self.start), rfc3339(self.end))
    }

    pub fn len_secs(&self) -> i64 {
        self.end - self.start
    }
}

/// Polling parameters in seconds.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    pub interval: i64,
    pub lag: i64,
    pub max_window: i64,
}

/// What to do next for a stream set whose lowest checkpoint is `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Fetch this window now; `demand` says whether it is the steady poll or backlog.
    Fetch { window: Window, demand: Demand },
    /// Caught up: nothing to fetch before this instant.
    WaitUntil(i64),
}

/// Plans the window after `start`. `cap` is the next checkpoint of another stream of the same
/// tenant, so that a window never straddles one (streams behind it get it, streams at it skip).
/// `phase` (0..interval) spreads tenants' poll instants so that thousands do not fire at once.
pub fn plan(start: i64, now: i64, cap: Option<i64>, c: Cadence, phase: i64) -> Plan {
    let latest_end = floor_minute(now - c.lag);
    if latest_end - start < c.interval {
        // The next full interval becomes available at start + interval + lag; poll at the first
        // instant from then on that falls on this tenant's phase.
        let due = start + c.interval + c.lag;
        let offset = (phase - due).rem_euclid(c.interval.max(1));
        return Plan::WaitUntil(due + offset);
    }
    let mut end = (start + c.max_window).min(latest_end);
    if let Some(cap) = cap.filter(|&cap| cap > start) {
        end = end.min(cap);
    }
    let end = floor_minute(end).max(start);
    if end - start < MIN_WINDOW_SECS {
        return Plan::WaitUntil(start + MIN_WINDOW_SECS + c.lag);
    }
    let demand = if latest_end - end < c.interval {
        Demand::Steady
    } else {
        Demand::Backlog
    };
    Plan::Fetch {
        window: Window { start, end },
        demand,
    }
}

/// The earliest start the TAP API accepts at `now`, with `margin` to spare, aligned to the minute.
pub fn earliest_start(now: i64, margin: i64) -> i64 {
    earliest_within(HORIZON_SECS, now, margin)
}

/// The earliest start an API with `horizon` seconds accepts at `now`, with `margin` to spare.
pub fn earliest_within(horizon: i64, now: i64, margin: i64) -> i64 {
    ceil_minute(now - horizon + margin)
}

/// Clamps `start` into an API's `horizon` (seconds); returns the new start and the skipped span.
pub fn clamp_to_horizon(
    start: i64,
    now: i64,
    horizon: i64,
    margin: i64,
) -> (i64, Option<(i64, i64)>) {
    let earliest = earliest_within(horizon, now, margin);
    if start < earliest {
        (earliest, Some((start, earliest)))
    } else {
        (start, None)
    }
}

/// A deterministic phase in `0..interval` for `tenant`.
pub fn phase_of(tenant: &str, interval: i64) -> i64 {
    let h = blake3::hash(tenant.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(b) % interval.max(1) as u64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Cadence = Cadence {
        interval: 300,
        lag: 1800,
        max_window: 3600,
    };
    const NOW: i64 = 1_795_000_000; // 2026-11-17

    fn fetch(p: Plan) -> (Window, Demand) {
        match p {
            Plan::Fetch { window, demand } => (window, demand),
            other => panic!("expected a fetch, got {other:?}"),
        }
    }

    #[test]
    fn backlog_is_split_into_valid_aligned_windows() {
        let mut start = floor_minute(NOW - 1800 - 7 * 3600 - 17 * 60);
        let latest = floor_minute(NOW - 1800);
        let mut windows = Vec::new();
        while let Plan::Fetch { window, .. } = plan(start, NOW, None, C, 0) {
            windows.push(window);
            start = window.end;
        }
        assert!(windows.len() >= 7);
        for w in &windows {
            assert!(w.len_secs() >= 30 && w.len_secs() <= 3600, "{w:?}");
            assert_eq!(w.start % 60, 0);
            assert_eq!(w.end % 60, 0);
            assert!(w.end <= NOW - 1800);
        }
        for pair in windows.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "windows must be contiguous");
        }
        assert!(latest - windows.last().unwrap().end < C.interval);
    }

    #[test]
    fn last_window_of_backlog_is_steady() {
        let latest = floor_minute(NOW - 1800);
        let (w, d) = fetch(plan(latest - 3 * 3600, NOW, None, C, 0));
        assert_eq!(w.len_secs(), 3600);
        assert_eq!(d, Demand::Backlog);
        let (w, d) = fetch(plan(latest - 600, NOW, None, C, 0));
        assert_eq!(w.end, latest);
        assert_eq!(d, Demand::Steady);
    }

    #[test]
    fn caught_up_waits_for_next_interval_on_its_phase() {
        let latest = floor_minute(NOW - 1800);
        match plan(latest - 60, NOW, None, C, 17) {
            Plan::WaitUntil(t) => {
                assert!(t >= latest - 60 + 300 + 1800);
                assert_eq!(t.rem_euclid(300), 17);
                assert!(t < latest - 60 + 300 + 1800 + 300);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn window_never_straddles_another_streams_checkpoint() {
        let latest = floor_minute(NOW - 1800);
        let start = latest - 5 * 3600;
        let (w, _) = fetch(plan(start, NOW, Some(start + 1200), C, 0));
        assert_eq!(w.end, start + 1200);
    }

    #[test]
    fn start_past_horizon_is_clamped_and_gap_reported() {
        let old = NOW - 9 * 86_400;
        let (start, gap) = clamp_to_horizon(old, NOW, HORIZON_SECS, HORIZON_MARGIN_SECS);
        assert!(start >= NOW - HORIZON_SECS + HORIZON_MARGIN_SECS);
        assert_eq!(start % 60, 0);
        assert_eq!(gap, Some((old, start)));
        assert_eq!(
            clamp_to_horizon(NOW - 86_400, NOW, HORIZON_SECS, 600),
            (NOW - 86_400, None)
        );
    }

    #[test]
    fn interval_param_is_iso8601() {
        let w = Window {
            start: 1_795_000_020,
            end: 1_795_003_620,
        };
        assert_eq!(
            w.interval_param(),
            "2026-11-18T11:07:00Z/2026-11-18T12:07:00Z"
        );
    }

    #[test]
    fn phases_spread_over_interval() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..1000 {
            let p = phase_of(&format!("tenant-{i}"), 300);
            assert!((0..300).contains(&p));
            seen.insert(p);
        }
        assert!(seen.len() > 200);
    }
}
