//! Reading an event's time while serde_json validates it, in one pass and without copying.
//!
//! [`EventTimes`] is deserialized from the raw event: every field is checked by serde_json, the
//! three time fields (`messageTime`, `clickTime`, `threatTime`) are kept when they are strings
//! (borrowed unless escaped), and every other value is skipped as [`IgnoredAny`]. Nothing here
//! changes the event's bytes (invariant 5); a missing or unparsable time is `None`, never an error.
//!
//! Only JSON syntax can fail an event here, never a value this module reads: keys and the fields
//! it keeps are taken as raw JSON first, so a lone surrogate escape
//! (`"\ud800"`) or a number beyond `f64` in a key or a time field (valid JSON, which the event is
//! forwarded as) leaves that field unread instead of failing the window over and over.

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
    /// `customerEid`, a string or an integer, as text; `None` when absent, empty or another type.
    pub(super) customer: Option<Cow<'a, str>>,
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

impl<'de> Deserialize<'de> for EventTimes<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EventTimesVisitor)
    }
}

struct EventTimesVisitor;

impl<'de> Visitor<'de> for EventTimesVisitor {
    type Value = EventTimes<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut times = EventTimes::default();
        while let Some(field) = map.next_key::<Field>()? {
            let slot = match field {
                Field::MessageTime => &mut times.message_time,
                Field::ClickTime => &mut times.click_time,
                Field::ThreatTime => &mut times.threat_time,
                Field::CustomerEid => &mut times.customer,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            // Raw first: a value serde_json can skip but not read (a lone surrogate, 1e400) is
            // no time, not an invalid event.
            let raw = map.next_value::<&'de RawValue>()?;
            *slot = serde_json::from_str::<MaybeStr<'de>>(raw.get())
                .ok()
                .and_then(|v| v.0)
                .filter(|v| !v.is_empty());
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
        // Raw, so that serde_json checks the key's syntax (a raw control character is an error)
        // without insisting that its escapes decode to valid Unicode.
        let raw = <&'de RawValue>::deserialize(deserializer)?;
        Ok(Field::of(raw.get()))
    }
}

impl Field {
    /// The field a key names, from its JSON text (quotes included). A key whose escapes do not
    /// decode (a lone surrogate) is just another key.
    fn of(quoted: &str) -> Field {
        let inner = quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(quoted);
        let unescaped;
        let name = if inner.contains('\\') {
            match serde_json::from_str::<String>(quoted) {
                Ok(n) => {
                    unescaped = n;
                    unescaped.as_str()
                }
                Err(_) => return Field::Other,
            }
        } else {
            inner
        };
        match name {
            "messageTime" => Field::MessageTime,
            "clickTime" => Field::ClickTime,
            "threatTime" => Field::ThreatTime,
            "customerEid" => Field::CustomerEid,
            _ => Field::Other,
        }
    }
}

/// Any JSON value; keeps it only if it is a string or an integer (as its decimal text).
struct MaybeStr<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for MaybeStr<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(MaybeStrVisitor)
    }
}

struct MaybeStrVisitor;

impl<'de> Visitor<'de> for MaybeStrVisitor {
    type Value = MaybeStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(MaybeStr(Some(Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(MaybeStr(Some(Cow::Owned(v.to_owned()))))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(MaybeStr(Some(Cow::Owned(v.to_string()))))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(MaybeStr(Some(Cow::Owned(v.to_string()))))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(MaybeStr(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeStr(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(MaybeStr(None))
    }
}
