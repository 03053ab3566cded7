//! The one backoff rule for the TAP client and every sink: exponential from `base`, capped at
//! `cap`, with full jitter above `base` so that thousands of tenants that failed together do not
//! retry together.

use std::cell::Cell;
use std::time::Duration;

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    t ^ (std::process::id() as u64).rotate_left(32) | 1
}

/// A uniformly distributed value in `0..=1` (xorshift64*, good enough for jitter).
fn unit() -> f64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
}

/// How long to wait before retry number `attempt` (0 for the first retry).
pub fn delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base
        .checked_mul(1u32 << attempt.min(20))
        .unwrap_or(cap)
        .min(cap)
        .max(base);
    base + (ceiling - base).mul_f64(unit())
}

/// As [`delay`], but at least half the exponential step: for a retry known to be useless for
/// a while (a PoD session the service still holds ends only at its idle timeout), so the waits
/// surely grow instead of drawing the base again and again.
pub fn growing_delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base
        .checked_mul(1u32 << attempt.min(20))
        .unwrap_or(cap)
        .min(cap)
        .max(base);
    let half = (ceiling / 2).max(base);
    half + (ceiling - half).mul_f64(unit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_delay_is_at_least_half_its_step() {
        let base = Duration::from_secs(5);
        let cap = Duration::from_secs(60);
        for attempt in 0..30 {
            let ceiling = (base * (1 << attempt.min(20))).min(cap);
            for _ in 0..20 {
                let d = growing_delay(attempt, base, cap);
                assert!(d >= base && d >= ceiling / 2, "{attempt}: {d:?}");
                assert!(d <= ceiling.max(base), "{attempt}: {d:?}");
            }
        }
        let spread: std::collections::HashSet<u128> = (0..50)
            .map(|_| growing_delay(10, base, cap).as_millis())
            .collect();
        assert!(spread.len() > 10, "jitter must spread retries");
    }

    #[test]
    fn grows_exponentially_within_bounds_and_caps() {
        let base = Duration::from_secs(5);
        let cap = Duration::from_secs(600);
        for attempt in 0..30 {
            let d = delay(attempt, base, cap);
            assert!(d >= base, "{attempt}: {d:?}");
            assert!(d <= cap, "{attempt}: {d:?}");
            let ceiling = base * (1 << attempt.min(20));
            assert!(d <= ceiling.max(base), "{attempt}: {d:?}");
        }
        let spread: std::collections::HashSet<u128> =
            (0..50).map(|_| delay(10, base, cap).as_millis()).collect();
        assert!(spread.len() > 10, "jitter must spread retries");
    }
}
