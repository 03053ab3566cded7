//! The reference the splitter is tested against: serde_json reading the same bytes whole.
//!
//! Used by the differential property test (`tests.rs`) and by the fuzz target
//! (`fuzz/fuzz_targets/split.rs`, which includes this file by path), so both hold the splitter to
//! one definition of a TAP SIEM response, written without any of the splitter's code:
//!
//! - the body is UTF-8 JSON text (`serde_json::from_str`) holding one object;
//! - a top-level key whose unescaped text is one of the four event arrays holds an array of
//!   objects or `null`; every element is kept as serde_json's raw slice (`RawValue`), in order,
//!   duplicate keys included;
//! - every other value is only checked for syntax (`IgnoredAny`), as is every value inside an
//!   event: a lone surrogate escape (`"\ud800"`) or a number too large for an `f64` is valid
//!   JSON syntax, and the splitter forwards events raw, so it must accept them too;
//! - the expected bytes of an event are its raw slice, with the whitespace outside strings removed
//!   when the slice has a line break outside strings (the one documented change, invariant 5).
//!
//! Nesting deeper than the splitter's limit is the one place the splitter may refuse what
//! serde_json accepts; [`nesting`] measures it so that callers can expect the error.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

/// The four event arrays of a TAP SIEM response.
pub const ARRAYS: [&str; 4] = [
    "messagesBlocked",
    "messagesDelivered",
    "clicksBlocked",
    "clicksPermitted",
];

/// What serde_json makes of a body: the events it holds (array name, expected raw bytes), or why
/// it is not a TAP SIEM response.
pub fn tap_response(body: &[u8]) -> Result<Vec<(&'static str, String)>, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("not UTF-8: {e}"))?;
    let response: Response<'_> = serde_json::from_str(text).map_err(|e| e.to_string())?;
    Ok(response
        .0
        .into_iter()
        .map(|(name, raw)| (name, expected_raw(raw.get())))
        .collect())
}

/// The deepest nesting of arrays and objects in `body`, counting the outermost as 1 (brackets
/// inside strings do not count).
pub fn nesting(body: &[u8]) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escape) = (false, false);
    for &b in body {
        if in_string {
            if escape {
                escape = false;
            } else if b == b'\\' {
                escape = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The bytes the splitter must give for the raw event `raw`: `raw` itself, or without its
/// whitespace outside strings when it has a line break outside strings.
pub fn expected_raw(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut multiline = false;
    let (mut in_string, mut escape) = (false, false);
    for c in raw.chars() {
        if in_string {
            if escape {
                escape = false;
            } else if c == '\\' {
                escape = true;
            } else if c == '"' {
                in_string = false;
            }
        } else {
            match c {
                '\n' | '\r' => {
                    multiline = true;
                    continue;
                }
                ' ' | '\t' => continue,
                '"' => in_string = true,
                _ => {}
            }
        }
        out.push(c);
    }
    if multiline {
        out
    } else {
        raw.to_string()
    }
}

/// The events of a response, in body order.
struct Response<'a>(Vec<(&'static str, &'a RawValue)>);

impl<'de> Deserialize<'de> for Response<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ResponseVisitor)
    }
}

struct ResponseVisitor;

impl<'de> Visitor<'de> for ResponseVisitor {
    type Value = Response<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TAP SIEM response object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut events = Vec::new();
        while let Some(key) = map.next_key::<&'de RawValue>()? {
            // A key whose escapes do not decode (a lone surrogate) names no array.
            let name = serde_json::from_str::<String>(key.get()).ok();
            let known = ARRAYS.into_iter().find(|a| Some(*a) == name.as_deref());
            let Some(array) = known else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let elements: Option<Vec<&'de RawValue>> = map.next_value()?;
            for e in elements.unwrap_or_default() {
                if !e.get().starts_with('{') {
                    return Err(de::Error::custom(format!(
                        "an element of {array} is not an object"
                    )));
                }
                events.push((array, e));
            }
        }
        Ok(Response(events))
    }
}
