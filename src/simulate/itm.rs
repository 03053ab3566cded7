//! The simulated ITM report API (more-feeds.md):
//! `GET /v2/apis/report;realm=observeit/reports/<report>/data?since=N&limit=N`.
//!
//! Each account has, per report it serves (`reports`, default the six tapfwd reads by default),
//! records at `records_per_hour`, each a JSON object with a GUID `id` and a `risingValue` (its
//! time in epoch milliseconds; no two equal). A page holds the records with `risingValue >=
//! since` (`> since` with `since_inclusive = false`) that exist at the simulator's now, oldest
//! first, at most `limit` (above `max_limit`, 400); an unknown report is 404. Switches:
//! `unordered` (each page's rows reversed), `duplicates` (each page's first row sent twice).

use axum::http::request::Parts;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

use super::events::{mix, Rng};
use super::oauth::{Account, SimClient};

pub(super) const PREFIX: &str = "/v2/apis/report;realm=observeit/reports/";

/// One simulated ITM account.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct SimItm {
    #[serde(flatten)]
    pub client: SimClient,
    /// Average records an hour, per report. Default 60.
    #[serde(default = "default_per_hour")]
    pub records_per_hour: u32,
    /// The reports served. Default tapfwd's default report of every record type.
    #[serde(default = "default_reports")]
    pub reports: Vec<String>,
    /// Whether `since` includes the record at it. Default true.
    #[serde(default = "default_true")]
    pub since_inclusive: bool,
    #[serde(default)]
    pub unordered: bool,
    #[serde(default)]
    pub duplicates: bool,
    /// The largest `limit`. Default 10000.
    #[serde(default = "default_max_limit")]
    pub max_limit: u32,
}

fn default_per_hour() -> u32 {
    60
}
fn default_reports() -> Vec<String> {
    crate::config::ItmType::ALL
        .iter()
        .map(|t| t.default_report().to_string())
        .collect()
}
fn default_true() -> bool {
    true
}
fn default_max_limit() -> u32 {
    10_000
}

impl SimItm {
    pub fn new(client_id: &str, client_secret: &str, records_per_hour: u32) -> SimItm {
        SimItm {
            client: SimClient::new(client_id, client_secret),
            records_per_hour,
            reports: default_reports(),
            since_inclusive: true,
            unordered: false,
            duplicates: false,
            max_limit: default_max_limit(),
        }
    }
}

/// Up to `limit` records of `report` from `since` (by the account's rules) that exist at `now`,
/// oldest first: `(risingValue, bytes)`.
pub(super) fn records(
    key: u64,
    i: &SimItm,
    report: &str,
    since: i64,
    limit: usize,
    now: DateTime<Utc>,
) -> Vec<(i64, Vec<u8>)> {
    let step = 3_600_000 / i64::from(i.records_per_hour.max(1));
    let rkey = mix(key ^ report.bytes().fold(11u64, |h, b| mix(h ^ u64::from(b))));
    let now_ms = now.timestamp_millis();
    let mut out = Vec::new();
    let mut slot = since.div_euclid(step);
    while out.len() < limit && slot * step <= now_ms {
        let mut g = Rng::new(mix(rkey ^ mix(slot as u64)));
        let rising = slot * step + g.below(step as u64) as i64;
        slot += 1;
        let after = if i.since_inclusive {
            rising >= since
        } else {
            rising > since
        };
        if !after || rising > now_ms {
            continue;
        }
        let time = DateTime::from_timestamp_millis(rising)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true);
        let record = json!({
            "id": format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", g.next_u64() as u32, g.below(0xffff), g.below(0xfff), g.below(0xfff), g.next_u64() & 0xffff_ffff_ffff),
            "risingValue": rising,
            "reportName": report,
            "collectedAt": time,
            "userName": format!("user{}", g.below(50)),
            "endpointName": format!("WS-{}", g.below(200)),
            "details": {"application": "explorer.exe", "severity": g.below(5)},
        });
        out.push((rising, record.to_string().into_bytes()));
    }
    out
}

fn param(query: &str, name: &str) -> Option<i64> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// The answer to one page request.
pub(super) fn answer(
    account: &Account,
    i: &SimItm,
    parts: &Parts,
    now: DateTime<Utc>,
) -> (u16, String) {
    let path = parts.uri.path();
    let Some(report) = path
        .strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix("/data"))
    else {
        return (404, r#"{"error":"not found"}"#.into());
    };
    if !i.reports.iter().any(|r| r == report) {
        return (404, r#"{"error":"no such report"}"#.into());
    }
    let query = parts.uri.query().unwrap_or("");
    let (Some(since), Some(limit)) = (param(query, "since"), param(query, "limit")) else {
        return (400, r#"{"error":"since and limit are required"}"#.into());
    };
    if limit < 1 || limit > i64::from(i.max_limit) {
        return (
            400,
            format!(r#"{{"error":"limit must be 1 to {}"}}"#, i.max_limit),
        );
    }
    let mut rows = records(account.key, i, report, since, limit as usize, now);
    if i.unordered {
        rows.reverse();
    }
    if i.duplicates {
        if let Some(first) = rows.first().cloned() {
            rows.push(first);
        }
    }
    let mut out = String::from("{\"data\":[");
    for (n, (_, r)) in rows.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push_str(&String::from_utf8_lossy(r));
    }
    out.push_str("]}");
    (200, out)
}
