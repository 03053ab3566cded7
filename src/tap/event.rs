//! Raw TAP events and their identity (invariants 2 and 5).
//!
//! An event is kept as the exact bytes the API sent, inside a [`Batch`] buffer shared by many
//! events; the daemon reads only its kind (which response array it came from), its own time and
//! its identity key. The key is a hash of the raw bytes: two multi-recipient copies of a message
//! share a GUID but differ in `recipient` and `id`, so they get different keys; an exact replay
//! (the same bytes in two overlapping windows) gets the same key.

use std::fmt;
use std::ops::Range;

use bytes::Bytes;

/// The response array an event came from; also the `eventType` sinks attach beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    MessagesBlocked,
    MessagesDelivered,
    ClicksBlocked,
    ClicksPermitted,
}

impl EventKind {
    /// Every kind, in the order the API documents them.
    pub const ALL: [EventKind; 4] = [
        EventKind::MessagesBlocked,
        EventKind::MessagesDelivered,
        EventKind::ClicksBlocked,
        EventKind::ClicksPermitted,
    ];

    /// The name of the response array, which is also the `eventType` label.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MessagesBlocked => "messagesBlocked",
            EventKind::MessagesDelivered => "messagesDelivered",
            EventKind::ClicksBlocked => "clicksBlocked",
            EventKind::ClicksPermitted => "clicksPermitted",
        }
    }

    /// The kind whose response array is called `name`, if any.
    pub fn from_array_name(name: &[u8]) -> Option<EventKind> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str().as_bytes() == name)
    }

    /// Whether this is a click event (`clickTime`) rather than a message event (`messageTime`).
    pub fn is_click(self) -> bool {
        matches!(self, EventKind::ClicksBlocked | EventKind::ClicksPermitted)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity of an event: the first 16 bytes of the BLAKE3 hash of its raw bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey(pub [u8; 16]);

impl EventKey {
    /// The key of the raw event bytes `raw`.
    pub fn of(raw: &[u8]) -> EventKey {
        let hash = blake3::hash(raw);
        let mut key = [0u8; 16];
        key.copy_from_slice(&hash.as_bytes()[..16]);
        EventKey(key)
    }
}

/// What the daemon knows about one event of a batch besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMeta {
    pub kind: EventKind,
    /// Where the raw bytes sit in [`Batch::buf`].
    pub start: u32,
    pub len: u32,
    pub key: EventKey,
    /// The event's own time in milliseconds since the epoch: `messageTime` or `clickTime`,
    /// falling back to `threatTime`; `None` when the event carries none that parses.
    pub time_ms: Option<i64>,
}

impl EventMeta {
    pub fn range(&self) -> Range<usize> {
        self.start as usize..(self.start + self.len) as usize
    }
}

/// A run of events cut from one response, stored back to back in one buffer.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub buf: Bytes,
    pub events: Vec<EventMeta>,
}

impl Batch {
    /// The raw bytes of `event`, exactly as the API sent them.
    pub fn raw(&self, event: &EventMeta) -> &[u8] {
        &self.buf[event.range()]
    }

    /// Events with their raw bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&EventMeta, &[u8])> + '_ {
        self.events.iter().map(move |e| (e, self.raw(e)))
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// A batch holding only the events for which `keep` is true (shares the buffer, no copy).
    pub fn filter(&self, mut keep: impl FnMut(&EventMeta) -> bool) -> Batch {
        Batch {
            buf: self.buf.clone(),
            events: self.events.iter().filter(|e| keep(e)).cloned().collect(),
        }
    }

    /// Total raw bytes of the events in this batch.
    pub fn raw_bytes(&self) -> usize {
        self.events.iter().map(|e| e.len as usize).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_differs_for_multi_recipient_copies_and_matches_replays() {
        let a = br#"{"GUID":"g1","recipient":["a@x"],"id":"1"}"#;
        let b = br#"{"GUID":"g1","recipient":["b@x"],"id":"2"}"#;
        assert_ne!(EventKey::of(a), EventKey::of(b));
        let replay = a.to_vec();
        assert_eq!(EventKey::of(a), EventKey::of(&replay));
    }

    #[test]
    fn kind_names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_array_name(k.as_str().as_bytes()), Some(k));
        }
        assert_eq!(EventKind::from_array_name(b"queryEndTime"), None);
    }
}
