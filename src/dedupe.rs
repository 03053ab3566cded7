//! What one target of a delivery already has: the delivery engine's dedupe check (invariant 2),
//! in memory that holds whole keys only for the events that can come back from outside the
//! delivery.
//!
//! A delivery's events can repeat what its target has for two reasons. (1) An earlier delivery
//! brought them: an overlapping window, the late sweep, a delivery cut short and started again.
//! Those keys are in the store, and [`Seen::load`] reads every one a delivery of its span could
//! repeat (the engine's `KeyHorizon`); they are kept whole, as they were. (2) The delivery itself
//! brought them before: the API sending the same bytes twice in one response, or a page twice.
//! For these the delivery keeps only a 4-byte fingerprint per key ([`Seen::take_fresh`]), not
//! the 16-byte key in a set (a one-hour window of 600 MB is 380,000 keys: about 9 MiB of set,
//! 13 MiB while it grows, against under 4 MiB of fingerprints).
//!
//! The fingerprints never decide alone, so nothing is dropped that was not delivered and nothing
//! delivered is sent twice. An event whose fingerprint is new was not delivered by this
//! delivery. An event whose fingerprint is known (a repeat, or one chance in 2^32 per key
//! delivered so far, another event) is looked up exactly: among the fresh events of its own
//! batch, and among the keys this delivery's earlier batches committed to the store. Those keys
//! are there: a sink's `deliver` returns only after its commits, and a target whose sink failed
//! takes no more batches in the delivery. So the exact lookup costs one read of the delivery's
//! committed keys, for the rare batch that holds such an event.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

use crate::event::{Batch, EventKey, KeySet};
use crate::store::{Store, StoreError};

/// The keys one target of a delivery has.
pub struct Seen {
    /// Every key the store held for this target that the delivery's span could repeat.
    loaded: KeySet,
    /// A fingerprint of every key this delivery handed the target.
    own: HashSet<u32, BuildHasherDefault<FingerprintHasher>>,
    /// The lowest position this delivery's keys were filed under; `None` before its first batch.
    filed_since: Option<i64>,
}

/// Where a key lies in a batch filter's decision.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Fresh,
    Known,
    /// Its fingerprint is one the delivery handed on: looked up exactly.
    Maybe,
}

impl Seen {
    /// The keys of `sink`'s stream in `scope` filed from position `since` on.
    pub fn load(store: &Store, scope: &str, sink: &str, since: i64) -> Result<Seen, StoreError> {
        let mut loaded = KeySet::default();
        store.load_keys(scope, sink, since, &mut loaded)?;
        Ok(Seen {
            loaded,
            own: HashSet::default(),
            filed_since: None,
        })
    }

    /// Whether the target surely has `key` already (false when it may lack it): a key loaded
    /// from the store. A caller that skips events with it skips only what was delivered.
    pub fn surely_has(&self, key: &EventKey) -> bool {
        self.loaded.contains(key)
    }

    /// The events of `batch` the target does not have, which it is from then on taken to have:
    /// the caller hands them to the sink, whose commit files their keys under `end` in `sink`'s
    /// stream of `scope`.
    pub fn take_fresh(
        &mut self,
        batch: &Batch,
        end: i64,
        store: &Store,
        scope: &str,
        sink: &str,
    ) -> Result<Batch, StoreError> {
        let mut maybes = 0usize;
        let verdicts: Vec<Verdict> = batch
            .events
            .iter()
            .map(|e| {
                if self.loaded.contains(&e.key) {
                    Verdict::Known
                } else if self.own.insert(fingerprint(&e.key)) {
                    Verdict::Fresh
                } else {
                    maybes += 1;
                    Verdict::Maybe
                }
            })
            .collect();
        let verdicts = if maybes == 0 {
            verdicts
        } else {
            self.resolve(batch, verdicts, store, scope, sink)?
        };
        self.filed_since = Some(self.filed_since.map_or(end, |s| s.min(end)));
        let mut verdicts = verdicts.into_iter();
        Ok(batch.filter(|_| verdicts.next() == Some(Verdict::Fresh)))
    }

    /// Decides each [`Verdict::Maybe`] of `batch` exactly: known when this delivery committed
    /// its key before or an earlier event of the batch is fresh with it.
    fn resolve(
        &self,
        batch: &Batch,
        mut verdicts: Vec<Verdict>,
        store: &Store,
        scope: &str,
        sink: &str,
    ) -> Result<Vec<Verdict>, StoreError> {
        let maybe_keys: KeySet = batch
            .events
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v == Verdict::Maybe)
            .map(|(e, _)| e.key)
            .collect();
        let mut committed = Committed {
            wanted: &maybe_keys,
            found: KeySet::default(),
        };
        if let Some(since) = self.filed_since {
            store.load_keys(scope, sink, since, &mut committed)?;
        }
        // A fresh event's fingerprint was new, so an event with the same key after it is a
        // `Maybe`: the fresh keys of the whole batch are the ones that can come earlier.
        let mut fresh: KeySet = batch
            .events
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| **v == Verdict::Fresh)
            .map(|(e, _)| e.key)
            .collect();
        for (e, v) in batch.events.iter().zip(verdicts.iter_mut()) {
            if *v != Verdict::Maybe {
                continue;
            }
            *v = if committed.found.contains(&e.key) || !fresh.insert(e.key) {
                Verdict::Known
            } else {
                Verdict::Fresh
            };
        }
        Ok(verdicts)
    }

    /// Keys held whole, fingerprints held: what the target's check costs in memory, for tests.
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        (self.loaded.len(), self.own.len())
    }
}

/// Collects, from the keys the store reads out, those that are `wanted`.
struct Committed<'a> {
    wanted: &'a KeySet,
    found: KeySet,
}

impl Extend<EventKey> for Committed<'_> {
    fn extend<I: IntoIterator<Item = EventKey>>(&mut self, keys: I) {
        for key in keys {
            if self.wanted.contains(&key) {
                self.found.insert(key);
            }
        }
    }
}

/// 4 bytes of `key` that the hash table of keys ([`crate::event::KeyHasher`]) does not use.
fn fingerprint(key: &EventKey) -> u32 {
    u32::from_le_bytes([key.0[8], key.0[9], key.0[10], key.0[11]])
}

/// The hasher of the fingerprint set: the fingerprint is uniform already, but a hash table takes
/// its probe tags from the top bits of a 64-bit hash, so it is spread over all 64.
#[derive(Default, Clone, Copy)]
struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u32(&mut self, fp: u32) {
        self.0 = u64::from(fp).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, EventMeta};
    use bytes::Bytes;

    const SCOPE: &str = "t";
    const SINK: &str = "file";

    /// A batch of events with the given keys, each event's bytes its index.
    fn batch(keys: &[EventKey]) -> Batch {
        let mut buf = Vec::new();
        let mut events = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            let raw = format!("{{\"i\":{i:04}}}");
            events.push(EventMeta {
                kind: EventKind::MessagesBlocked,
                start: buf.len() as u32,
                len: raw.len() as u32,
                key: *key,
                time_ms: None,
                customer: None,
            });
            buf.extend_from_slice(raw.as_bytes());
        }
        Batch {
            buf: Bytes::from(buf),
            events,
            enrichment: None,
            snapshot: None,
        }
    }

    fn key(n: u8) -> EventKey {
        EventKey::of(&[n])
    }

    /// A key with `of`'s fingerprint but different bytes elsewhere: another event whose
    /// fingerprint collides.
    fn twin(of: EventKey) -> EventKey {
        let mut k = of;
        k.0[0] ^= 0xff;
        k.0[15] ^= 0x01;
        assert_eq!(fingerprint(&k), fingerprint(&of));
        k
    }

    fn keys(b: &Batch) -> Vec<EventKey> {
        b.events.iter().map(|e| e.key).collect()
    }

    /// Hands `batch` on as the engine does: the fresh events, their keys committed under `end`.
    fn deliver(seen: &mut Seen, store: &Store, b: &Batch, end: i64) -> Vec<EventKey> {
        let fresh = seen.take_fresh(b, end, store, SCOPE, SINK).unwrap();
        let got = keys(&fresh);
        store.commit_chunk(SCOPE, SINK, end, &got, None).unwrap();
        got
    }

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_repeat_in_the_same_batch_or_a_later_one_is_handed_on_once() {
        let (_dir, store) = store();
        let mut seen = Seen::load(&store, SCOPE, SINK, 0).unwrap();
        let (a, b, c) = (key(1), key(2), key(3));
        assert_eq!(deliver(&mut seen, &store, &batch(&[a, b, a]), 100), [a, b]);
        assert_eq!(deliver(&mut seen, &store, &batch(&[c, b, a, c]), 100), [c]);
        assert_eq!(deliver(&mut seen, &store, &batch(&[a, b, c]), 100), []);
    }

    #[test]
    fn another_event_with_a_known_fingerprint_is_still_handed_on() {
        let (_dir, store) = store();
        let mut seen = Seen::load(&store, SCOPE, SINK, 0).unwrap();
        let a = key(1);
        let a2 = twin(a);
        // In the same batch, before anything was committed, and in a later batch.
        assert_eq!(
            deliver(&mut seen, &store, &batch(&[a, a2, a]), 100),
            [a, a2]
        );
        let a3 = twin(key(9));
        let b = twin(a3);
        assert_eq!(deliver(&mut seen, &store, &batch(&[a3]), 100), [a3]);
        assert_eq!(deliver(&mut seen, &store, &batch(&[b, a3, a2]), 100), [b]);
        // A twin of a key that was never delivered, after its fingerprint came in a batch.
        let c = twin(key(20));
        let mut late = Seen::load(&store, SCOPE, SINK, 0).unwrap();
        assert_eq!(
            deliver(&mut late, &store, &batch(&[key(20)]), 300),
            [key(20)]
        );
        assert_eq!(deliver(&mut late, &store, &batch(&[c, key(20)]), 300), [c]);
    }

    #[test]
    fn keys_loaded_from_the_store_are_whole_and_the_delivery_keeps_fingerprints() {
        let (_dir, store) = store();
        let earlier: Vec<EventKey> = (0..50).map(key).collect();
        store.commit_chunk(SCOPE, SINK, 50, &earlier, None).unwrap();
        let mut seen = Seen::load(&store, SCOPE, SINK, 0).unwrap();
        assert!(seen.surely_has(&key(7)));
        let new: Vec<EventKey> = (40..140).map(key).collect();
        let got = deliver(&mut seen, &store, &batch(&new), 100);
        assert_eq!(got, (50..140).map(key).collect::<Vec<_>>());
        // Only the loaded keys are held whole; the delivery's own are fingerprints.
        assert_eq!(seen.sizes(), (50, 90));
        assert!(
            !seen.surely_has(&key(60)),
            "its own keys are not surely had"
        );
        // A twin of a loaded key is another event.
        assert_eq!(
            deliver(&mut seen, &store, &batch(&[twin(key(3))]), 100).len(),
            1
        );
    }

    #[test]
    fn a_delivery_started_again_recognises_what_its_cut_short_run_committed() {
        let (_dir, store) = store();
        let all: Vec<EventKey> = (0..30).map(key).collect();
        let mut first = Seen::load(&store, SCOPE, SINK, 0).unwrap();
        assert_eq!(
            deliver(&mut first, &store, &batch(&all[..10]), 100),
            &all[..10]
        );
        drop(first);
        let mut again = Seen::load(&store, SCOPE, SINK, 0).unwrap();
        assert_eq!(deliver(&mut again, &store, &batch(&all), 100), &all[10..]);
    }
}
