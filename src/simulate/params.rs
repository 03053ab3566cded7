//! The simulator's request parameters: `interval`, `sinceTime`, `sinceSeconds`, `format`,
//! `threatStatus`, `threatType`, validated with the API's own error texts (tap-api.md).

use chrono::{DateTime, Utc};

use super::events::{Filter, ThreatType, MINUTE_MS};
use crate::api::ThreatStatus;
use crate::clock;

/// A validated request.
pub(super) struct Params {
    pub(super) filter: Filter,
    pub(super) json: bool,
}

/// Decodes `%XX` escapes; `+` stays `+` (timestamps carry offsets like `+02:00`).
pub(super) fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("Invalid percent-encoding in query: {s}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "Query is not valid UTF-8".to_owned())
}

/// `PnDTnHnMnS` (each part optional, seconds may be fractional) in milliseconds.
pub(super) fn parse_duration(s: &str) -> Option<i64> {
    let rest = s.strip_prefix('P')?;
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, t),
        None => (rest, ""),
    };
    let mut ms = 0f64;
    if !days.is_empty() {
        ms += days.strip_suffix('D')?.parse::<u32>().ok()? as f64 * 86_400_000.0;
    }
    if rest.contains('T') && time.is_empty() {
        return None;
    }
    let mut num = String::new();
    for c in time.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'H' | 'M' | 'S' => {
                let v: f64 = num.parse().ok()?;
                num.clear();
                ms += v * match c {
                    'H' => 3_600_000.0,
                    'M' => 60_000.0,
                    _ => 1000.0,
                };
            }
            _ => return None,
        }
    }
    if !num.is_empty() || (days.is_empty() && time.is_empty()) {
        return None;
    }
    Some(ms.round() as i64)
}

pub(super) fn parse_params(
    query: &str,
    now: DateTime<Utc>,
    kinds: [bool; 4],
    essentials: bool,
) -> Result<Params, String> {
    let (mut own_data, mut customer_data) = (true, false);
    let (mut interval, mut since_time, mut since_seconds, mut format) = (None, None, None, None);
    let mut statuses: Option<[bool; 3]> = None;
    let mut types: Option<[bool; 3]> = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v)?;
        match k {
            "interval" => interval = Some(v),
            "sinceTime" => since_time = Some(v),
            "sinceSeconds" => since_seconds = Some(v),
            "format" => format = Some(v),
            "threatStatus" => {
                let s = ThreatStatus::parse(&v)
                    .ok_or_else(|| format!("Invalid threatStatus value: {v}"))?;
                let set = statuses.get_or_insert([false; 3]);
                set[s as usize] = true;
            }
            "ownData" | "customerData" if essentials => {
                let flag = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("Invalid {k} value: {v}")),
                };
                if k == "ownData" {
                    own_data = flag;
                } else {
                    customer_data = flag;
                }
            }
            "threatType" => {
                let t = ThreatType::parse(&v)
                    .ok_or_else(|| format!("Invalid threatType value: {v}"))?;
                let set = types.get_or_insert([false; 3]);
                set[t as usize] = true;
            }
            _ => {}
        }
    }
    let json = match format.as_deref() {
        None | Some("syslog") => false,
        Some("json") => true,
        Some(other) => return Err(format!("Invalid format value: {other}")),
    };
    let now_ms = now.timestamp_millis();
    let now_minute = now_ms.div_euclid(MINUTE_MS) * MINUTE_MS;
    let given = [&interval, &since_time, &since_seconds]
        .iter()
        .filter(|v| v.is_some())
        .count();
    if given != 1 {
        return Err(
            "Exactly one of the parameters interval, sinceTime or sinceSeconds must be given"
                .to_owned(),
        );
    }
    let (start, end) = if let Some(iv) = interval {
        let (a, b) = iv
            .split_once('/')
            .ok_or_else(|| format!("The interval is not in the form START/END: {iv}"))?;
        let bad = || format!("The interval could not be parsed: {iv}");
        if a.starts_with('P') {
            let end = clock::parse_rfc3339_ms(b).ok_or_else(bad)?;
            (end - parse_duration(a).ok_or_else(bad)?, end)
        } else if b.starts_with('P') {
            let start = clock::parse_rfc3339_ms(a).ok_or_else(bad)?;
            (start, start + parse_duration(b).ok_or_else(bad)?)
        } else {
            (
                clock::parse_rfc3339_ms(a).ok_or_else(bad)?,
                clock::parse_rfc3339_ms(b).ok_or_else(bad)?,
            )
        }
    } else if let Some(ts) = since_time {
        let start = clock::parse_rfc3339_ms(&ts)
            .ok_or_else(|| format!("The sinceTime could not be parsed: {ts}"))?;
        (start, now_minute)
    } else {
        let s = since_seconds.unwrap_or_default();
        let secs: i64 = s
            .parse()
            .map_err(|_| format!("The sinceSeconds could not be parsed: {s}"))?;
        (now_minute - secs.saturating_mul(1000), now_minute)
    };
    if end < start {
        return Err("The requested interval is invalid: end is before start".to_owned());
    }
    if end - start < 30_000 {
        return Err(
            "The requested interval is too short. Requests must be for at least 30.00s of data"
                .to_owned(),
        );
    }
    if end - start > 3_600_000 {
        return Err(
            "The requested interval is too long. Requests must be for at most 1.00h of data"
                .to_owned(),
        );
    }
    let horizon_days = if essentials { 3 } else { 7 };
    if start < now_ms - horizon_days * 86_400_000 {
        return Err(format!("The requested start time is too far into the past. Requests for information up to {horizon_days}.00d are accepted"));
    }
    Ok(Params {
        filter: Filter {
            kinds,
            // TAP leaves out falsePositive unless asked; the Essentials API has no such filter.
            statuses: statuses.unwrap_or(if essentials {
                [true; 3]
            } else {
                [true, true, false]
            }),
            threat_types: types,
            orgs: [own_data, customer_data],
            start_ms: start,
            end_ms: end,
            visible_at_ms: Some(now_ms),
        },
        json,
    })
}
