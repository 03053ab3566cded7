//! Random identifiers in GUID form (version 4 layout), such as a Splunk HEC channel.
//!
//! They come from a tiny generator of their own: BLAKE3 over a caller's seed, the wall-clock
//! nanoseconds, the process id and a per-process draw counter. The counter keeps two ids drawn
//! by one process distinct even within one clock tick; the other inputs keep processes apart. It
//! is not for secrets, and shares no state with the backoff jitter.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many ids this process has drawn.
static DRAWS: AtomicU64 = AtomicU64::new(0);

/// A fresh identifier in UUID form (random, version 4 layout); `seed` (e.g. the sink's name) is
/// mixed in.
pub fn random_v4(seed: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut h = blake3::Hasher::new();
    h.update(seed.as_bytes());
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(&DRAWS.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ids_are_well_formed() {
        assert_eq!(
            crate::clock::rfc3339_ms(1_767_225_600_123),
            "2026-01-01T00:00:00.123Z"
        );
        let a = random_v4("x");
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, random_v4("x"));
    }
}
