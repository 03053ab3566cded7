//! Reading an event's time fields and `customerEid`, without copying.
//!
//! The splitter's scan validates an event and notes where its own keys that may name a field
//! read lie, and their values ([`FieldSpan`]); [`EventTimes::from_fields`] reads just those. The
//! three time fields (`messageTime`, `clickTime`, `threatTime`) are kept when they are strings
//! (borrowed unless escaped). Nothing here changes the event's bytes (invariant 5); a missing or
//! unparsable time is `None`, never an error: only JSON syntax can fail an event (the scan), never
//! a value this module reads. A key or value that is valid JSON but not readable as text (a lone
//! surrogate escape, `"\ud800"`) is simply not read.
//!
//! An event sent over several lines is compacted first and read by serde_json instead
//! ([`EventTimes::read`]): every field checked, the kept ones as above and every other value
//! skipped as [`IgnoredAny`]. Its fast pass reads keys and the kept fields as text, which serde_json
//! refuses for valid JSON such as a lone surrogate escape or a number beyond `f64` (`1e400`);
//! an event that fails it is read again leniently, keys and kept fields taken as raw JSON first,
//! so both ways read the same fields the same way.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::clock;
use crate::event::EventKind;

/// The three time fields of an event and the Essentials `customerEid` (the child organisation an
/// event belongs to); every other field is validated and ignored.
#[derive(Default)]
pub(super) struct EventTimes<'a> {
    message_time: Option<Cow<'a, str>>,
    click_time: Option<Cow<'a, str>>,
    threat_time: Option<Cow<'a, str>>,
    /// What `customerEid` says.
    pub(super) customer: Customer<'a>,
}

/// What an event's `customerEid` says. Only a JSON string is an id: a number never matches a
/// configured id, whatever its digits (`4711` and `4711.0` are not `"4711"`).
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) enum Customer<'a> {
    /// Absent, `null` or `""`: the event belongs to no child organisation.
    #[default]
    None,
    /// A string holding a customer id ([`crate::event::is_customer_id`]), unescaped.
    Id(Cow<'a, str>),
    /// Anything else: a number, another type, a string over 64 bytes or with a space, a control
    /// character or a non-ASCII one, a value that cannot be read. The event is forwarded as sent
    /// and goes where events without a customer go; the splitter counts it.
    Invalid,
}

impl<'a> Customer<'a> {
    fn of(value: Scalar<'a>) -> Customer<'a> {
        match value {
            Scalar::Null => Customer::None,
            Scalar::Str(s) if s.is_empty() => Customer::None,
            Scalar::Str(s) if crate::event::is_customer_id(&s) => Customer::Id(s),
            Scalar::Str(_) | Scalar::Other => Customer::Invalid,
        }
    }
}

/// Where one of an event's own keys and its value lie in the event's bytes, as byte ranges: the
/// key with its quotes, the value as sent up to the `,` or `}` after it (whitespace included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FieldSpan {
    pub(super) key: (usize, usize),
    pub(super) value: (usize, usize),
}

impl<'a> EventTimes<'a> {
    /// Reads the fields `fields` of the valid event `text` (in order: a later duplicate key
    /// wins, as it does for serde_json).
    pub(super) fn from_fields(text: &'a str, fields: &[FieldSpan]) -> EventTimes<'a> {
        let mut times = EventTimes::default();
        for f in fields {
            let (Some(key), Some(value)) =
                (text.get(f.key.0..f.key.1), text.get(f.value.0..f.value.1))
            else {
                continue;
            };
            let value = value.trim_end_matches([' ', '\t', '\n', '\r']);
            let scalar = || Scalar::of_raw(value);
            match Field::of_raw(key) {
                Field::MessageTime => times.message_time = scalar().time(),
                Field::ClickTime => times.click_time = scalar().time(),
                Field::ThreatTime => times.threat_time = scalar().time(),
                Field::CustomerEid => times.customer = Customer::of(scalar()),
                Field::Other => {}
            }
        }
        times
    }
}

impl EventTimes<'_> {
    /// `clickTime` for clicks, `messageTime` for messages, else `threatTime`, in ms since the epoch.
    pub(super) fn time_ms(&self, kind: EventKind) -> Option<i64> {
        let own = if kind.is_click() {
            &self.click_time
        } else {
            &self.message_time
        };
        own.as_deref()
            .and_then(clock::parse_rfc3339_ms)
            .or_else(|| {
                self.threat_time
                    .as_deref()
                    .and_then(clock::parse_rfc3339_ms)
            })
    }
}

impl<'a> EventTimes<'a> {
    /// Reads the event `text`: the fast pass, and the lenient one when the fast one fails. The
    /// error is the lenient pass's, which only syntax fails.
    pub(super) fn read(text: &'a str) -> Result<EventTimes<'a>, serde_json::Error> {
        fn pass<'a>(text: &'a str, lenient: bool) -> Result<EventTimes<'a>, serde_json::Error> {
            let mut de = serde_json::Deserializer::from_str(text);
            let times = de.deserialize_map(EventTimesVisitor { lenient })?;
            de.end()?;
            Ok(times)
        }
        pass(text, false).or_else(|_| pass(text, true))
    }
}

/// Reads an event object; `lenient` takes keys and kept fields as raw JSON first.
struct EventTimesVisitor {
    lenient: bool,
}

impl<'de> Visitor<'de> for EventTimesVisitor {
    type Value = EventTimes<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut times = EventTimes::default();
        loop {
            let field = if self.lenient {
                map.next_key::<&'de RawValue>()?
                    .map(|raw| Field::of_raw(raw.get()))
            } else {
                map.next_key::<Field>()?
            };
            let Some(field) = field else {
                break;
            };
            if let Field::Other = field {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = if self.lenient {
                // A value serde_json can skip but not read is no time (and no customer id), not
                // an invalid event.
                let raw = map.next_value::<&'de RawValue>()?;
                serde_json::from_str::<Scalar<'de>>(raw.get()).unwrap_or(Scalar::Other)
            } else {
                map.next_value::<Scalar<'de>>()?
            };
            let slot = match field {
                Field::MessageTime => &mut times.message_time,
                Field::ClickTime => &mut times.click_time,
                Field::ThreatTime => &mut times.threat_time,
                Field::CustomerEid => {
                    times.customer = Customer::of(value);
                    continue;
                }
                Field::Other => continue,
            };
            *slot = match value {
                Scalar::Str(s) if !s.is_empty() => Some(s),
                _ => None,
            };
        }
        Ok(times)
    }
}

/// A key of an event object.
enum Field {
    MessageTime,
    ClickTime,
    ThreatTime,
    CustomerEid,
    Other,
}

impl<'de> Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_identifier(FieldVisitor)
    }
}

struct FieldVisitor;

impl Visitor<'_> for FieldVisitor {
    type Value = Field;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
        Ok(Field::of(name))
    }
}

impl Field {
    fn of(name: &str) -> Field {
        match name {
            "messageTime" => Field::MessageTime,
            "clickTime" => Field::ClickTime,
            "threatTime" => Field::ThreatTime,
            "customerEid" => Field::CustomerEid,
            _ => Field::Other,
        }
    }

    /// The field a key names, from its JSON text (quotes included). A key whose escapes do not
    /// decode (a lone surrogate) is just another key.
    fn of_raw(quoted: &str) -> Field {
        let inner = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(quoted);
        if !inner.contains('\\') {
            return Field::of(inner);
        }
        match serde_json::from_str::<String>(quoted) {
            Ok(name) => Field::of(&name),
            Err(_) => Field::Other,
        }
    }
}

impl<'a> Scalar<'a> {
    /// The valid JSON value `raw`: a string unescaped (borrowed when it holds no escape), `null`,
    /// or anything else, an unreadable string (a lone surrogate escape) included.
    fn of_raw(raw: &'a str) -> Scalar<'a> {
        if raw == "null" {
            return Scalar::Null;
        }
        let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
            return Scalar::Other;
        };
        if !inner.contains('\\') {
            return Scalar::Str(Cow::Borrowed(inner));
        }
        match serde_json::from_str::<String>(raw) {
            Ok(s) => Scalar::Str(Cow::Owned(s)),
            Err(_) => Scalar::Other,
        }
    }

    /// A time field's text: a string that is not empty.
    fn time(self) -> Option<Cow<'a, str>> {
        match self {
            Scalar::Str(s) if !s.is_empty() => Some(s),
            _ => None,
        }
    }
}

/// Any JSON value, kept only if it is a string (borrowed unless escaped); `null` told apart from
/// the other kinds.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Null,
    Other,
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}
