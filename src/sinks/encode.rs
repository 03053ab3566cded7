//! Encodings more than one sink writes: the envelope of the line-oriented sinks
//! (`{"tenant":..,"eventType":..,"event":RAW}`), the Splunk HEC event (Splunk's collector and
//! LogScale's HEC API), JSON strings, and the per-kind tables that map an event kind to a sink's
//! own place for it (a sourcetype, a stream).
//!
//! Invariant 5: the raw event goes in byte for byte; tenant, kind and time travel beside it, never
//! inside. Kinds are mapped only through tables indexed by [`EventKind::index`], so a new kind is
//! a default in each sink's table and no special case anywhere.

use std::collections::BTreeMap;

use crate::event::{Batch, EventKind, EventMeta};

/// Writes the envelope every line-oriented sink uses:
/// `{"tenant":"acme","eventType":"messagesDelivered","event":RAW}`. Tenant ids are validated to
/// characters that need no JSON escaping, and the event's bytes go in untouched (invariant 5).
pub fn write_envelope(out: &mut Vec<u8>, tenant: &str, kind: EventKind, raw: &[u8]) {
    write_envelope_with(out, tenant, kind, raw, Beside::default());
}

/// What travels beside an event besides its tenant and kind: the Essentials child organisation
/// it belongs to (`customerEid`) and what threat enrichment found for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Beside<'a> {
    /// `Batch::customer`.
    pub customer: Option<&'a str>,
    /// `Batch::enrichment`: members of a JSON object, without the braces.
    pub enrichment: Option<&'a [u8]>,
    /// `Batch::snapshot`: the span a People snapshot covers.
    pub snapshot: Option<&'a str>,
}

impl<'a> Beside<'a> {
    /// What `batch` has beside `event`.
    pub fn of(batch: &'a Batch, event: &'a EventMeta) -> Beside<'a> {
        Beside {
            customer: batch.customer(event),
            enrichment: batch.enrichment(event).filter(|m| !m.is_empty()),
            snapshot: batch.snapshot.as_deref(),
        }
    }
}

/// [`write_envelope`] with what travels beside the event: the customer after the event type and
/// the enrichment after the event,
/// `{"tenant":"partner","eventType":"messagesDelivered","customer":"4711","event":RAW,"threats":{…}}`.
/// Without either the line is byte for byte [`write_envelope`]'s.
pub fn write_envelope_with(
    out: &mut Vec<u8>,
    tenant: &str,
    kind: EventKind,
    raw: &[u8],
    beside: Beside<'_>,
) {
    out.extend_from_slice(b"{\"tenant\":\"");
    out.extend_from_slice(tenant.as_bytes());
    out.extend_from_slice(b"\",\"eventType\":\"");
    out.extend_from_slice(kind.as_str().as_bytes());
    out.push(b'"');
    if let Some(customer) = beside.customer {
        out.extend_from_slice(b",\"customer\":");
        json_str(out, customer);
    }
    if let Some(snapshot) = beside.snapshot {
        out.extend_from_slice(b",\"snapshot\":");
        json_str(out, snapshot);
    }
    out.extend_from_slice(b",\"event\":");
    out.extend_from_slice(raw);
    if let Some(members) = beside.enrichment.filter(|m| !m.is_empty()) {
        out.push(b',');
        out.extend_from_slice(members);
    }
    out.push(b'}');
}

/// The members of an event's enrichment (`"threats":{…},"campaigns":{…}`, as
/// `Batch::enrichment` gives them), each as its name and its value's compact JSON text: for sinks
/// whose place beside the event takes only flat string values (HEC indexed fields, syslog
/// structured data). Members that do not parse are left out (enrichment never fails a delivery).
pub fn enrichment_members(members: &[u8]) -> Vec<(String, String)> {
    let mut object = Vec::with_capacity(members.len() + 2);
    object.push(b'{');
    object.extend_from_slice(members);
    object.push(b'}');
    match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&object) {
        Ok(map) => map
            .into_iter()
            .map(|(name, value)| (name, value.to_string()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Writes `s` as a JSON string.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Now, in milliseconds since the epoch: the time of an event that carries none.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Checks a `{ eventType = value }` map's keys.
pub fn check_kind_map(key: &str, map: &BTreeMap<String, String>) -> Result<(), String> {
    for (k, v) in map {
        if EventKind::from_name(k).is_none() {
            let names: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(format!(
                "{key}: `{k}` is not an event type ({})",
                names.join(", ")
            ));
        }
        if v.is_empty() {
            return Err(format!("{key}.{k} is empty"));
        }
    }
    Ok(())
}

/// The per-kind table of a `{ eventType = value }` map (checked by [`check_kind_map`]), in
/// [`EventKind::ALL`] order: the map's value for each kind it names, else `default(kind)`.
pub fn kind_table<S: AsRef<str>>(
    map: &BTreeMap<String, String>,
    default: impl Fn(EventKind) -> S,
) -> [String; EventKind::ALL.len()] {
    EventKind::ALL.map(|k| match map.get(k.as_str()) {
        Some(v) => v.clone(),
        None => default(k).as_ref().to_string(),
    })
}

/// What goes around each raw event in the HEC format; shared by Splunk HEC and the LogScale HEC
/// API.
pub struct HecFields {
    /// The `"host":..,"source":..,"index":..,` part, already JSON, same for every event.
    fixed: Vec<u8>,
    /// `"sourcetype":"..",` per kind, in [`EventKind::ALL`] order; empty when not sent.
    sourcetypes: [Vec<u8>; EventKind::ALL.len()],
}

impl HecFields {
    pub fn new(
        host: Option<&str>,
        source: Option<&str>,
        index: Option<&str>,
        sourcetype: impl Fn(EventKind) -> Option<String>,
    ) -> HecFields {
        let mut fixed = Vec::new();
        for (k, v) in [("host", host), ("source", source), ("index", index)] {
            if let Some(v) = v {
                fixed.push(b'"');
                fixed.extend_from_slice(k.as_bytes());
                fixed.extend_from_slice(b"\":");
                json_str(&mut fixed, v);
                fixed.push(b',');
            }
        }
        let sourcetypes = EventKind::ALL.map(|k| match sourcetype(k) {
            None => Vec::new(),
            Some(s) => {
                let mut out = b"\"sourcetype\":".to_vec();
                json_str(&mut out, &s);
                out.push(b',');
                out
            }
        });
        HecFields { fixed, sourcetypes }
    }

    /// Appends one HEC event for `raw`, followed by a newline (HEC accepts any whitespace between
    /// events; the newline keeps bodies readable).
    ///
    /// The customer (`Batch::customer`) goes into `fields` as `customer`, and the enrichment
    /// (`Batch::enrichment`) beside tenant and event type, one
    /// field per member (`"threats"`, `"campaigns"`) whose value is that member's JSON as a string:
    /// HEC indexed fields take only strings (or arrays of them), and a nested object is refused
    /// with code 15. In Splunk, `| spath input=threats` opens it.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        tenant: &str,
        meta: &EventMeta,
        raw: &[u8],
        beside: Beside<'_>,
    ) {
        let ms = meta.time_ms.unwrap_or_else(now_ms).max(0);
        out.extend_from_slice(b"{\"time\":");
        let mut secs = itoa::Buffer::new();
        out.extend_from_slice(secs.format(ms.div_euclid(1000)).as_bytes());
        let frac = ms.rem_euclid(1000);
        out.extend_from_slice(&[
            b'.',
            b'0' + (frac / 100) as u8,
            b'0' + (frac / 10 % 10) as u8,
            b'0' + (frac % 10) as u8,
            b',',
        ]);
        out.extend_from_slice(&self.fixed);
        out.extend_from_slice(&self.sourcetypes[meta.kind.index()]);
        out.extend_from_slice(b"\"fields\":{\"tenant\":");
        json_str(out, tenant);
        out.extend_from_slice(b",\"eventType\":\"");
        out.extend_from_slice(meta.kind.as_str().as_bytes());
        out.push(b'"');
        if let Some(customer) = beside.customer {
            out.extend_from_slice(b",\"customer\":");
            json_str(out, customer);
        }
        if let Some(snapshot) = beside.snapshot {
            out.extend_from_slice(b",\"snapshot\":");
            json_str(out, snapshot);
        }
        if let Some(members) = beside.enrichment {
            for (name, json) in enrichment_members(members) {
                out.push(b',');
                json_str(out, &name);
                out.push(b':');
                json_str(out, &json);
            }
        }
        out.extend_from_slice(b"},\"event\":");
        out.extend_from_slice(raw);
        out.extend_from_slice(b"}\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_tables_take_the_map_then_the_default() {
        let map = BTreeMap::from([("clicksBlocked".to_string(), "clicks".to_string())]);
        assert_eq!(check_kind_map("streams", &map), Ok(()));
        let table = kind_table(&map, |_| "all");
        for kind in EventKind::ALL {
            let want = if kind == EventKind::ClicksBlocked {
                "clicks"
            } else {
                "all"
            };
            assert_eq!(table[kind.index()], want, "{kind}");
        }
        let bad = BTreeMap::from([("clicks".to_string(), "x".to_string())]);
        assert!(check_kind_map("streams", &bad)
            .unwrap_err()
            .starts_with("streams: `clicks` is not an event type (messagesBlocked, "));
    }
}
