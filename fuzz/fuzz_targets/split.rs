//! The streaming splitter against serde_json on the same bytes.
//!
//! The first input byte chooses how the rest, the body, is cut into chunks (0: one feed; else
//! random cut points, with events taken after some feeds); the body is split that way and also in
//! one feed. `oracle::tap_response` (the file the unit tests use too) says what serde_json makes
//! of the body as a TAP SIEM response:
//!
//! - accepted: the splitter yields exactly its events, kind and raw bytes, in order, under both
//!   cuttings (unless the body nests deeper than the splitter's limit: then a `TooDeep` error);
//! - rejected: the splitter reports an error, under both cuttings;
//! - never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfwd::api::split::{BatchBuilder, SplitError, SplitLimits, Splitter};

#[path = "../../src/api/split/oracle.rs"]
#[allow(dead_code)]
mod oracle;

type Events = Vec<(&'static str, String)>;

/// Splits `body` at `cuts` (ascending), taking events after the feeds `take` picks.
fn split(body: &[u8], cuts: &[usize], take: impl Fn(usize) -> bool) -> Result<Events, SplitError> {
    let mut splitter = Splitter::new(SplitLimits::default());
    let mut out = BatchBuilder::new();
    let mut events = Vec::new();
    let mut collect = |out: &mut BatchBuilder| {
        for (meta, raw) in out.take().iter() {
            let raw = std::str::from_utf8(raw).expect("an event that is not UTF-8 was yielded");
            events.push((meta.kind.as_str(), raw.to_string()));
        }
    };
    let mut from = 0;
    for (n, &cut) in cuts.iter().chain(std::iter::once(&body.len())).enumerate() {
        splitter.feed(&body[from..cut], &mut out)?;
        if take(n) {
            collect(&mut out);
        }
        from = cut;
    }
    splitter.finish()?;
    collect(&mut out);
    Ok(events)
}

fuzz_target!(|data: &[u8]| {
    let Some((&how, body)) = data.split_first() else {
        return;
    };
    let mut cuts = Vec::new();
    if how != 0 && !body.is_empty() {
        // xorshift from the first byte and the length: the same input always cuts the same way.
        let mut x = u64::from(how) << 32 | body.len() as u64 | 1;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let pieces = (next() % 16) as usize;
        cuts = (0..pieces)
            .map(|_| (next() % (body.len() as u64 + 1)) as usize)
            .collect();
        cuts.sort_unstable();
    }
    let cut = split(body, &cuts, |n| (n + usize::from(how)) % 3 != 0);
    let whole = split(body, &[], |_| true);
    let deep = oracle::nesting(body) > SplitLimits::default().max_depth;
    match oracle::tap_response(body) {
        Ok(expected) if !deep => {
            let text = String::from_utf8_lossy(body);
            match (&cut, &whole) {
                (Ok(c), Ok(w)) => {
                    assert_eq!(c, &expected, "cut at {cuts:?}: {text}");
                    assert_eq!(w, &expected, "one feed: {text}");
                }
                _ => panic!(
                    "serde_json accepts, the splitter refuses ({:?} / {:?}): {text}",
                    cut.err(),
                    whole.err()
                ),
            }
        }
        Ok(_) => {
            for r in [&cut, &whole] {
                assert!(
                    matches!(r, Err(SplitError::TooDeep { .. })),
                    "nested deeper than the limit: {r:?}"
                );
            }
        }
        Err(why) => {
            assert!(
                cut.is_err() && whole.is_err(),
                "serde_json refuses ({why}), the splitter accepts: {:?} / {:?}: {}",
                cut,
                whole,
                String::from_utf8_lossy(body)
            );
        }
    }
});
