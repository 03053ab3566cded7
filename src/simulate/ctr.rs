//! The simulated CTR incidents API (more-feeds.md): `POST /api/v1/tric/incidents`.
//!
//! Each account has incidents created at `incidents_per_hour` (deterministic from the seed and
//! the client id). An incident is `open` when created and `closed` `close_after` later (its
//! `state` and `updatedAt` change: an update, new bytes). A request's body says
//! `filters.time_range_filter {start, end}` (`"%Y-%m-%d %H:%M:%S"`, UTC, both ends inclusive, on
//! `createdAt`; anything else is 400), `state_group_filter` (`open_incidents`,
//! `closed_incidents`; both in one filter answers nothing, as the real API does, unless
//! `both_groups_empty = false`), and rows `startRow` to `endRow` (more than 200 is 400), sorted
//! on `createdAt`. Switches: `unordered` (each page's rows reversed), `duplicates` (each page's
//! first row sent twice), `requests_per_minute` (429 above it; default none).

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::events::{mix, Rng};
use super::oauth::{Account, SimClient};

pub(super) const PATH: &str = "/api/v1/tric/incidents";

/// One simulated CTR account.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct SimCtr {
    #[serde(flatten)]
    pub client: SimClient,
    /// Average incidents created an hour. Default 6.
    #[serde(default = "default_per_hour")]
    pub incidents_per_hour: u32,
    /// How long after its creation an incident is closed (an update). Default 2h.
    #[serde(default = "default_close_after", with = "humantime_serde")]
    pub close_after: std::time::Duration,
    #[serde(default)]
    pub unordered: bool,
    #[serde(default)]
    pub duplicates: bool,
    /// Both state groups in one filter answer nothing. Default true.
    #[serde(default = "default_true")]
    pub both_groups_empty: bool,
    /// Requests a minute before 429. Default: no limit.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
}

fn default_per_hour() -> u32 {
    6
}
fn default_close_after() -> std::time::Duration {
    std::time::Duration::from_secs(7200)
}
fn default_true() -> bool {
    true
}

impl SimCtr {
    pub fn new(client_id: &str, client_secret: &str, incidents_per_hour: u32) -> SimCtr {
        SimCtr {
            client: SimClient::new(client_id, client_secret),
            incidents_per_hour,
            close_after: default_close_after(),
            unordered: false,
            duplicates: false,
            both_groups_empty: true,
            requests_per_minute: None,
        }
    }
}

/// The incidents created in `[start_ms, end_ms]` and before `now`, as they are at `now`, oldest
/// first: `(createdAt ms, closed, bytes)`.
pub(super) fn incidents(
    key: u64,
    c: &SimCtr,
    start_ms: i64,
    end_ms: i64,
    now: DateTime<Utc>,
) -> Vec<(i64, bool, Vec<u8>)> {
    let per_hour = i64::from(c.incidents_per_hour.max(1));
    let step = 3_600_000 / per_hour;
    let now_ms = now.timestamp_millis();
    let close_ms = c.close_after.as_millis() as i64;
    let mut out = Vec::new();
    for slot in start_ms.div_euclid(step) - 1..=end_ms.div_euclid(step) + 1 {
        let mut g = Rng::new(mix(key ^ mix(slot as u64)));
        // Created on a whole second, as the filter's layout can name it.
        let created = (slot * step + g.below(step as u64) as i64).div_euclid(1000) * 1000;
        if created < start_ms || created > end_ms || created > now_ms {
            continue;
        }
        let closed = created + close_ms <= now_ms;
        let updated = if closed { created + close_ms } else { created };
        let time = |ms: i64| {
            DateTime::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        };
        let messages = 1 + g.below(5);
        let incident = json!({
            "id": slot,
            "displayId": slot.rem_euclid(100_000),
            "summary": format!("Malicious message reported ({})", g.below(1000)),
            "score": g.below(100),
            "state": if closed { "closed" } else { "open" },
            "createdAt": time(created),
            "updatedAt": time(updated),
            "messageCount": messages,
            "sourcesData": [{"source": "TAP", "count": messages}],
        });
        out.push((created, closed, incident.to_string().into_bytes()));
    }
    out
}

fn parse_time(v: &Value) -> Option<i64> {
    NaiveDateTime::parse_from_str(v.as_str()?, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t.and_utc().timestamp_millis())
}

/// The answer to one list request: its status and body.
pub(super) fn answer(
    account: &Account,
    c: &SimCtr,
    body: &[u8],
    now: DateTime<Utc>,
) -> (u16, String) {
    if let Some(limit) = c.requests_per_minute {
        let mut live = account.lock();
        while live
            .minute
            .front()
            .is_some_and(|t| *t + chrono::Duration::seconds(60) <= now)
        {
            live.minute.pop_front();
        }
        if live.minute.len() >= limit as usize {
            return (429, r#"{"error":"rate limit exceeded"}"#.into());
        }
        live.minute.push_back(now);
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return (400, r#"{"error":"the body is not JSON"}"#.into());
    };
    let range = &req["filters"]["time_range_filter"];
    let (Some(start), Some(end)) = (parse_time(&range["start"]), parse_time(&range["end"])) else {
        return (
            400,
            r#"{"error":"time_range_filter start and end must be \"%Y-%m-%d %H:%M:%S\""}"#.into(),
        );
    };
    let (Some(from), Some(to)) = (req["startRow"].as_u64(), req["endRow"].as_u64()) else {
        return (
            400,
            r#"{"error":"startRow and endRow are required"}"#.into(),
        );
    };
    if to < from || to - from > 200 {
        return (400, r#"{"error":"at most 200 rows a page"}"#.into());
    }
    let groups: Vec<&str> = req["filters"]["state_group_filter"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let (open, closed) = (
        groups.contains(&"open_incidents"),
        groups.contains(&"closed_incidents"),
    );
    let all = incidents(account.key, c, start, end + 999, now);
    let mut rows: Vec<&Vec<u8>> = if open && closed && c.both_groups_empty {
        Vec::new()
    } else {
        all.iter()
            .filter(|(_, is_closed, _)| {
                groups.is_empty() || (*is_closed && closed) || (!*is_closed && open)
            })
            .map(|(_, _, b)| b)
            .collect()
    };
    let total = rows.len();
    rows = rows
        .into_iter()
        .skip(from as usize)
        .take((to - from) as usize)
        .collect();
    if c.unordered {
        rows.reverse();
    }
    if c.duplicates {
        if let Some(first) = rows.first().copied() {
            rows.push(first);
        }
    }
    let mut out = String::from("{\"incidents\":[");
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&String::from_utf8_lossy(r));
    }
    out.push_str(&format!("],\"totalCount\":{total}}}"));
    (200, out)
}
