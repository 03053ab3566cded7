//! Raw events and their identity (invariants 2 and 5), for every source.
//!
//! An event is kept as the exact bytes the API sent, inside a [`Batch`] buffer shared by many
//! events; the daemon reads only its kind (which response array it came from), its own time and
//! its identity key. The key is a hash of the raw bytes: two multi-recipient copies of a message
//! share a GUID but differ in `recipient` and `id`, so they get different keys; an exact replay
//! (the same bytes in two overlapping windows) gets the same key.
//!
//! Enrichment (threat summaries, campaigns) travels beside the events in [`Batch::enrichment`],
//! never inside their bytes.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

/// What an event is; its name is the `eventType` sinks attach beside it.
///
/// Sinks map kinds to their own places (a Splunk sourcetype, a Sentinel stream, a Kafka topic)
/// through per-kind tables indexed by [`EventKind::index`], so a new kind is a variant here, its
/// name, and a default in each sink's table; no sink matches on kinds otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    // TAP SIEM (and Essentials): one per response array.
    MessagesBlocked,
    MessagesDelivered,
    ClicksBlocked,
    ClicksPermitted,
    // People snapshots: one user object per event.
    Vap,
    TopClickers,
    // The PoD log stream: one frame per event.
    PodMessage,
    PodMaillog,
    PodAudit,
    // TRAP: one incident object per event, as the API sent it (its events inside it).
    TrapIncident,
    // Isolation: one usage record per event.
    IsolationUsage,
    // CTR incidents: one incident object per event, as the API sent it.
    CtrIncident,
    // ITM reports: one record per event, a kind per record type.
    ItmUserActivity,
    ItmDbaActivity,
    ItmSystemEvent,
    ItmAlert,
    ItmAudit,
    ItmInAppElement,
}

/// The API an event kind comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// TAP SIEM windows (and Essentials, which has the same arrays).
    Siem,
    /// People snapshots (Very Attacked People, top clickers).
    People,
    /// The PoD log stream.
    Pod,
    /// TRAP incidents.
    Trap,
    /// Isolation usage data.
    Isolation,
    /// CTR incidents.
    Ctr,
    /// ITM report records.
    Itm,
}

impl EventKind {
    /// Every kind, in [`EventKind::index`] order.
    pub const ALL: [EventKind; 18] = [
        EventKind::MessagesBlocked,
        EventKind::MessagesDelivered,
        EventKind::ClicksBlocked,
        EventKind::ClicksPermitted,
        EventKind::Vap,
        EventKind::TopClickers,
        EventKind::PodMessage,
        EventKind::PodMaillog,
        EventKind::PodAudit,
        EventKind::TrapIncident,
        EventKind::IsolationUsage,
        EventKind::CtrIncident,
        EventKind::ItmUserActivity,
        EventKind::ItmDbaActivity,
        EventKind::ItmSystemEvent,
        EventKind::ItmAlert,
        EventKind::ItmAudit,
        EventKind::ItmInAppElement,
    ];

    /// The four arrays of a SIEM response, in the order the API documents them.
    pub const SIEM: [EventKind; 4] = [
        EventKind::MessagesBlocked,
        EventKind::MessagesDelivered,
        EventKind::ClicksBlocked,
        EventKind::ClicksPermitted,
    ];

    /// The `eventType` label; for SIEM kinds also the name of the response array.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::MessagesBlocked => "messagesBlocked",
            EventKind::MessagesDelivered => "messagesDelivered",
            EventKind::ClicksBlocked => "clicksBlocked",
            EventKind::ClicksPermitted => "clicksPermitted",
            EventKind::Vap => "vap",
            EventKind::TopClickers => "topClickers",
            EventKind::PodMessage => "podMessage",
            EventKind::PodMaillog => "podMaillog",
            EventKind::PodAudit => "podAudit",
            EventKind::TrapIncident => "trapIncident",
            EventKind::IsolationUsage => "isolationUsage",
            EventKind::CtrIncident => "ctrIncident",
            EventKind::ItmUserActivity => "itmUserActivity",
            EventKind::ItmDbaActivity => "itmDbaActivity",
            EventKind::ItmSystemEvent => "itmSystemEvent",
            EventKind::ItmAlert => "itmAlert",
            EventKind::ItmAudit => "itmAudit",
            EventKind::ItmInAppElement => "itmInAppElement",
        }
    }

    /// The sourcetype Splunk content for this kind expects, the Splunk HEC sink's default. TAP
    /// SIEM events get the Proofpoint TAP add-on's (Splunkbase 3681) `proofpoint_tap_siem`, on
    /// which its field extractions and the CIM extensions (Email, IDS, Malware) key; PoD events
    /// the Proofpoint on Demand add-on's (Splunkbase 4327) `pps_messagelog`, `pps_maillog` and
    /// `pps_auditlog`. No add-on indexes the People API, so its snapshots get sourcetypes of the
    /// same family named after the endpoint. No add-on indexes CTR or ITM through their APIs
    /// either: `proofpoint:ctr:incident` and `proofpoint:itm:<type>` are tapfwd's choice.
    pub fn splunk_sourcetype(self) -> &'static str {
        match self {
            EventKind::MessagesBlocked
            | EventKind::MessagesDelivered
            | EventKind::ClicksBlocked
            | EventKind::ClicksPermitted => "proofpoint_tap_siem",
            EventKind::Vap => "proofpoint_tap_vap",
            EventKind::TopClickers => "proofpoint_tap_top_clickers",
            EventKind::PodMessage => "pps_messagelog",
            EventKind::PodMaillog => "pps_maillog",
            EventKind::PodAudit => "pps_auditlog",
            // Splunk's CCX add-on for TRAP reads this sourcetype.
            EventKind::TrapIncident => "ccx:proofpoint:trap:hec",
            // No Splunk add-on reads Isolation data: tapfwd's own name.
            EventKind::IsolationUsage => "proofpoint:isolation",
            EventKind::CtrIncident => "proofpoint:ctr:incident",
            EventKind::ItmUserActivity => "proofpoint:itm:user_activity",
            EventKind::ItmDbaActivity => "proofpoint:itm:dba_activity",
            EventKind::ItmSystemEvent => "proofpoint:itm:system_event",
            EventKind::ItmAlert => "proofpoint:itm:alert",
            EventKind::ItmAudit => "proofpoint:itm:audit",
            EventKind::ItmInAppElement => "proofpoint:itm:in_app_element",
        }
    }

    /// Position in [`EventKind::ALL`], for per-kind tables (`[T; EventKind::ALL.len()]`).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Which API this kind comes from.
    pub fn family(self) -> Family {
        match self {
            EventKind::MessagesBlocked
            | EventKind::MessagesDelivered
            | EventKind::ClicksBlocked
            | EventKind::ClicksPermitted => Family::Siem,
            EventKind::Vap | EventKind::TopClickers => Family::People,
            EventKind::PodMessage | EventKind::PodMaillog | EventKind::PodAudit => Family::Pod,
            EventKind::TrapIncident => Family::Trap,
            EventKind::IsolationUsage => Family::Isolation,
            EventKind::CtrIncident => Family::Ctr,
            EventKind::ItmUserActivity
            | EventKind::ItmDbaActivity
            | EventKind::ItmSystemEvent
            | EventKind::ItmAlert
            | EventKind::ItmAudit
            | EventKind::ItmInAppElement => Family::Itm,
        }
    }

    /// The SIEM kind whose response array is called `name`, if any.
    pub fn from_array_name(name: &[u8]) -> Option<EventKind> {
        EventKind::SIEM
            .into_iter()
            .find(|k| k.as_str().as_bytes() == name)
    }

    /// The kind whose `eventType` label is `name`, if any (config keys such as `sourcetypes`).
    pub fn from_name(name: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The one field a record of this kind is filed under by its API (a time-slice source's
    /// position), for the kinds read that way: `tapfwd recover` reads it back from a file sink.
    /// `None` for SIEM kinds (their time rules are the splitter's) and snapshots and streams.
    pub fn time_field(self) -> Option<&'static str> {
        match self {
            EventKind::TrapIncident => Some("created_at"),
            EventKind::IsolationUsage => Some("date"),
            EventKind::MessagesBlocked
            | EventKind::MessagesDelivered
            | EventKind::ClicksBlocked
            | EventKind::ClicksPermitted
            | EventKind::Vap
            | EventKind::TopClickers
            | EventKind::PodMessage
            | EventKind::PodMaillog
            | EventKind::PodAudit => None,
            // CTR and ITM positions are set by `recover --start-at`, not read back from a file.
            EventKind::CtrIncident
            | EventKind::ItmUserActivity
            | EventKind::ItmDbaActivity
            | EventKind::ItmSystemEvent
            | EventKind::ItmAlert
            | EventKind::ItmAudit
            | EventKind::ItmInAppElement => None,
        }
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventKey(pub [u8; 16]);

impl EventKey {
    /// The key of the raw event bytes `raw`.
    pub fn of(raw: &[u8]) -> EventKey {
        EventKey::of_hash(&blake3::hash(raw))
    }

    /// The key of the event whose bytes hashed to `hash` (fed to a [`blake3::Hasher`] piece by
    /// piece as they arrive).
    pub fn of_hash(hash: &blake3::Hash) -> EventKey {
        let mut key = [0u8; 16];
        key.copy_from_slice(&hash.as_bytes()[..16]);
        EventKey(key)
    }
}

/// A key is already a uniform hash: its first 8 bytes are all a hash table needs. With
/// [`KeyHasher`] (a [`KeySet`]) they are the table's hash as they are, without hashing them again.
impl std::hash::Hash for EventKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut word = [0u8; 8];
        word.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(word));
    }
}

/// The pass-through hasher of a [`KeySet`]: an [`EventKey`] hashes to its own first 8 bytes.
/// Only for keys: anything else written to it is folded in with a multiply, no better than that.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = word;
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
}

/// A set of dedupe keys, hashed by [`KeyHasher`] (the keys are BLAKE3 output already).
pub type KeySet = std::collections::HashSet<EventKey, std::hash::BuildHasherDefault<KeyHasher>>;

/// Longest Essentials customer id (`customerEid`) taken as one, in bytes.
pub const MAX_CUSTOMER_ID_BYTES: usize = 64;

/// Whether `id` is an Essentials customer id as tapfwd takes one: 1 to [`MAX_CUSTOMER_ID_BYTES`]
/// printable ASCII characters without spaces (`4711`, `C-0042`). The one rule for the ids of
/// `customer_sinks` and those read from events: only such an id is routed, counted by name in
/// status and written beside an event, so none carries a control character, a line break or a
/// NUL into a sink's format, and none makes status grow without bound. The API's ids are decimal
/// strings (`"1234567"`).
pub fn is_customer_id(id: &str) -> bool {
    (1..=MAX_CUSTOMER_ID_BYTES).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic())
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
    /// The Essentials child organisation the event belongs to: its `customerEid` when that is a
    /// JSON string holding a customer id ([`is_customer_id`]); `None` for TAP events, events
    /// without one and events whose `customerEid` is anything else (a number, `4711.0`, an id over
    /// 64 bytes or with control characters, which the splitter counts instead). Shared by the
    /// events of a batch with the same one.
    pub customer: Option<Arc<str>>,
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
    /// What enrichment found for some of the events, beside them: per event (keyed by its
    /// [`EventMeta::start`]), the members of a JSON object, e.g.
    /// `"threats":{"ID":{…summary…}},"campaigns":{"ID":{…}}`. `None` when nothing was enriched.
    /// Read it with [`Batch::enrichment`].
    pub enrichment: Option<Arc<HashMap<u32, Bytes>>>,
    /// For a People snapshot's users: the span the list covers, as the API gave it (`interval`),
    /// which travels beside each user. `None` for every other source.
    pub snapshot: Option<Arc<str>>,
}

impl Batch {
    /// A batch of `kind` from whole records, each `(bytes, time in ms)`: the bytes exactly as
    /// they came (invariant 5), each keyed by a hash of them (invariant 2). For sources whose API
    /// answers with a list of records rather than a stream to split.
    pub fn of_records<'a>(
        kind: EventKind,
        records: impl ExactSizeIterator<Item = (&'a [u8], Option<i64>)>,
    ) -> Batch {
        let mut buf = Vec::new();
        let mut events = Vec::with_capacity(records.len());
        for (bytes, time_ms) in records {
            let start = buf.len() as u32;
            buf.extend_from_slice(bytes);
            events.push(EventMeta {
                kind,
                start,
                len: bytes.len() as u32,
                key: EventKey::of(bytes),
                time_ms,
                customer: None,
            });
        }
        Batch {
            buf: Bytes::from(buf),
            events,
            ..Batch::default()
        }
    }

    /// The raw bytes of `event`, exactly as the API sent them.
    pub fn raw(&self, event: &EventMeta) -> &[u8] {
        &self.buf[event.range()]
    }

    /// The enrichment of `event` (members of a JSON object, without the braces), if any.
    pub fn enrichment(&self, event: &EventMeta) -> Option<&[u8]> {
        self.enrichment
            .as_ref()?
            .get(&event.start)
            .map(|b| b.as_ref())
    }

    /// The Essentials child organisation (`customerEid`) `event` belongs to, if any.
    pub fn customer<'a>(&self, event: &'a EventMeta) -> Option<&'a str> {
        event.customer.as_deref()
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
            enrichment: self.enrichment.clone(),
            snapshot: self.snapshot.clone(),
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
    fn a_key_set_hashes_a_key_to_its_first_eight_bytes_and_tells_keys_apart() {
        use std::hash::BuildHasher;
        let key = EventKey::of(b"{}");
        let build = std::hash::BuildHasherDefault::<KeyHasher>::default();
        assert_eq!(
            build.hash_one(key),
            u64::from_le_bytes(key.0[..8].try_into().unwrap())
        );
        // Keys equal in their first 8 bytes are still two keys.
        let mut twin = key;
        twin.0[15] ^= 1;
        let mut set = KeySet::default();
        assert!(set.insert(key));
        assert!(set.insert(twin));
        assert!(!set.insert(key));
        assert_eq!(set.len(), 2);
        let many: KeySet = (0..10_000u32)
            .map(|i| EventKey::of(&i.to_le_bytes()))
            .collect();
        assert_eq!(many.len(), 10_000);
        assert!(many.contains(&EventKey::of(&77u32.to_le_bytes())));
    }

    #[test]
    fn customer_ids_are_short_printable_ascii() {
        for id in ["4711", "1234567", "C-0042", "a\"b\\c]d=e", &"9".repeat(64)] {
            assert!(is_customer_id(id), "{id}");
        }
        for id in [
            "",
            "47 11",
            "47\u{0}11",
            "47\n11",
            "4711\t",
            "Zürich",
            &"9".repeat(65),
        ] {
            assert!(!is_customer_id(id), "{id:?}");
        }
    }

    #[test]
    fn kind_names_round_trip() {
        for k in EventKind::SIEM {
            assert_eq!(EventKind::from_array_name(k.as_str().as_bytes()), Some(k));
        }
        assert_eq!(EventKind::from_array_name(b"queryEndTime"), None);
        assert_eq!(EventKind::from_array_name(b"vap"), None);
        for (i, k) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(EventKind::from_name(k.as_str()), Some(k));
        }
    }
}
