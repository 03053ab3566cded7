//! Reading an event's time while serde_json validates it, in one pass and without copying.
//!
//! [`EventTimes`] is deserialized from the raw event: every field is checked by serde_json, the
//! three time fields (`messageTime`, `clickTime`, `threatTime`) are kept when they are strings
//! (borrowed unless escaped), and every other value is skipped as [`IgnoredAny`]. Nothing here
//! changes the event's bytes (invariant 5); a missing or unparsable time is `None`, never an error.
//!
//! Only JSON syntax can fail an event, never a value this module reads. The fast pass reads keys
//! and the kept fields as text, which serde_json refuses for valid JSON such as a lone surrogate
//! escape (`"\ud800"`) or a number beyond `f64` (`1e400`); an event that fails it is read again
//! leniently ([`EventTimes::read`]), keys and kept fields taken as raw JSON first, so such a field
//! is simply unread instead of failing the window on every retry. The fast pass stays what it
//! was: reading every event leniently cost 14–49 % more per event (a 2.2 KB event, measured on
//! a loaded machine), so only the odd event that fails the fast pass pays for it.

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
