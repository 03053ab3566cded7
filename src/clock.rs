//! Wall-clock time, injectable.
//!
//! The daemon reasons about wall-clock instants (window ends, the 30-minute availability lag, the
//! 7-day horizon, the rolling 24-hour budget), which `tokio::time::pause` cannot move. Everything
//! that reads "now" or waits for an instant goes through [`Clock`], so tests and the simulator can
//! share a manual clock and step it forward instead of sleeping.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use tokio::sync::watch;

/// A source of "now" and a way to wait for an instant.
#[derive(Clone, Debug, Default)]
pub enum Clock {
    /// The operating system's clock; waits use tokio timers.
    #[default]
    System,
    /// A clock that only moves when a test moves it.
    Manual(Arc<ManualClock>),
}

/// A clock that a test steps forward; waiters wake when it passes their instant.
#[derive(Debug)]
pub struct ManualClock {
    /// Milliseconds since the Unix epoch.
    now_ms: watch::Sender<i64>,
}

impl Clock {
    /// A manual clock starting at `start`.
    pub fn manual(start: DateTime<Utc>) -> (Clock, Arc<ManualClock>) {
        let (tx, _rx) = watch::channel(start.timestamp_millis());
        let manual = Arc::new(ManualClock { now_ms: tx });
        (Clock::Manual(manual.clone()), manual)
    }

    /// The current instant.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// Waits until the clock reads `at` or later.
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        match self {
            Clock::System => {
                let wait = (at - Utc::now()).to_std().unwrap_or_default();
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            Clock::Manual(m) => {
                let mut rx = m.now_ms.subscribe();
                let target = at.timestamp_millis();
                // `wait_for` returns at once if the condition already holds; an error means the
                // clock was dropped, and then nothing will ever wake us: pend forever.
                if rx.wait_for(|now| *now >= target).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    /// Waits for `d` of clock time.
    pub async fn sleep(&self, d: std::time::Duration) {
        let at = self.now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        self.sleep_until(at).await;
    }
}

impl ManualClock {
    /// The current instant.
    pub fn now(&self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(*self.now_ms.borrow())
            .single()
            .unwrap_or_default()
    }

    /// Moves the clock forward by `d` and wakes every waiter whose instant has come.
    pub fn advance(&self, d: std::time::Duration) {
        let step = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        self.now_ms
            .send_modify(|now| *now = now.saturating_add(step));
    }

    /// Sets the clock to `at` (which may be earlier: tests of clock skew use that).
    pub fn set(&self, at: DateTime<Utc>) {
        self.now_ms.send_replace(at.timestamp_millis());
    }
}

// Instants as the API and the status output write them. All are unix seconds unless named `_ms`.

/// `secs` as `2026-11-23T10:00:00Z`.
pub fn rfc3339(secs: i64) -> String {
    to_datetime(secs).to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub fn to_datetime(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

pub fn floor_minute(secs: i64) -> i64 {
    secs.div_euclid(60) * 60
}

pub fn ceil_minute(secs: i64) -> i64 {
    floor_minute(secs + 59)
}

/// `ms` since the epoch as RFC 3339 with milliseconds in UTC (`2026-01-01T00:00:00.000Z`).
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// RFC 3339 text (any offset) as milliseconds since the epoch; `None` when it does not parse.
pub fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A response's `queryEndTime`, in Unix seconds: RFC 3339 (TAP, `2026-12-02T10:00:00Z`) or Go's
/// default time layout (Essentials, `2026-12-02 10:00:00 +0000 UTC`, fractional seconds allowed).
pub fn parse_query_end_time(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp());
    }
    // Go appends the zone's abbreviation after the offset; the offset alone says the instant.
    let (rest, last) = s.trim().rsplit_once(' ')?;
    let text = if last.starts_with(['+', '-']) {
        s.trim()
    } else {
        rest
    };
    chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f %z")
        .ok()
        .map(|t| t.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleep_wakes_when_clock_passes_instant() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let (clock, manual) = Clock::manual(start);
        let target = start + chrono::Duration::minutes(5);
        let waiter = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(target).await }
        });
        manual.advance(std::time::Duration::from_secs(60));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        manual.advance(std::time::Duration::from_secs(240));
        waiter.await.unwrap();
        assert_eq!(clock.now(), target);
    }

    #[test]
    fn query_end_time_reads_rfc3339_and_the_go_layout() {
        let want = Some(1_796_205_600); // 2026-12-02T10:00:00Z
        assert_eq!(parse_query_end_time("2026-12-02T10:00:00Z"), want);
        assert_eq!(parse_query_end_time("2026-12-02 10:00:00 +0000 UTC"), want);
        assert_eq!(
            parse_query_end_time("2026-12-02 11:00:00.123456 +0100 CET"),
            want
        );
        assert_eq!(parse_query_end_time("2026-12-02 10:00:00 +0000"), want);
        assert_eq!(parse_query_end_time("2026-12-02 10:00:00"), None);
        assert_eq!(parse_query_end_time("yesterday"), None);
    }
}
