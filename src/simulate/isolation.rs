//! The simulated Proofpoint Isolation usage-data API (more-feeds.md):
//! `GET /api/v2/reporting/usage-data?key=KEY&pageSize=N&from=ISO&to=ISO`.
//!
//! - **Auth**: the `key` query parameter; missing or unknown → 401.
//! - **Records**: `records_per_hour` an hour, deterministic from the seed and the key, each with
//!   `date`, `userId`, `userName`, `url`, `classification`, `disposition` and a few more fields;
//!   a record exists from its `date` on. Both ends of `[from, to]` are inclusive.
//! - **Horizon**: 30 days: a `from` older than that is a 400.
//! - **Pages**: at most `pageSize` (1 to 10000, else 400) records, an arbitrary subset when there
//!   are more (paging beyond `pageSize` is not documented: `pages_beyond = true` would be the
//!   switch for a server that pages, and is not modelled, so a client must split a full window).
//! - **Unordered**, and with `duplicate_rows` one record of each answer twice.
//! - **Faults**: queued per key ([`Simulator::inject_isolation`]), one per request; a
//!   [`Fault::EchoCredentials`] page and a [`Fault::Redirect`] carry the request URL with its
//!   key, as a debug proxy's page or a misrouting gateway would.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{request::Parts, Response};
use chrono::SecondsFormat;
use tokio::sync::Notify;

use super::events::mix;
use super::keyed::{faulty, instant, json, param, query, Live};
use super::server::text;
use super::trap::fault_status;
use super::{Fault, LoggedRequest, Simulator};

/// The path served.
pub(super) const PATH: &str = "/api/v2/reporting/usage-data";

/// How far back records are served, in seconds.
pub const HORIZON_SECS: i64 = 30 * 86_400;

/// One simulated Isolation tenant (one API key).
#[derive(Clone, Debug)]
pub struct SimIsolation {
    pub key: String,
    pub records_per_hour: u32,
    /// One record of each non-empty answer comes twice. Default false.
    pub duplicate_rows: bool,
}

impl SimIsolation {
    pub fn new(key: &str, records_per_hour: u32) -> SimIsolation {
        SimIsolation {
            key: key.to_string(),
            records_per_hour,
            duplicate_rows: false,
        }
    }
}

pub(super) struct IsolationSim {
    cfg: SimIsolation,
    seed: u64,
    live: Mutex<Live>,
}

/// The Isolation tenants, by key.
pub(super) type IsolationTenants = Mutex<HashMap<String, Arc<IsolationSim>>>;

const CLASSES: [&str; 4] = ["news", "business", "uncategorized", "malicious"];
const DISPOSITIONS: [&str; 3] = ["isolated", "allowed", "blocked"];

impl IsolationSim {
    /// `(number, date)` of the records dated in `[start, end]`, in generation order.
    fn dated_in(&self, start: i64, end: i64) -> Vec<(u64, i64)> {
        let mut out = Vec::new();
        let per_hour = u64::from(self.cfg.records_per_hour);
        if per_hour == 0 || end < start {
            return out;
        }
        let key_hash = self
            .cfg
            .key
            .bytes()
            .fold(self.seed ^ 0x150, |h, b| mix(h ^ u64::from(b)));
        for hour in start.div_euclid(3600)..=end.div_euclid(3600) {
            for i in 0..per_hour {
                let h = mix(key_hash ^ mix(hour as u64) ^ i);
                let date = hour * 3600 + (h % 3600) as i64;
                if (start..=end).contains(&date) {
                    out.push(((hour as u64 % 1_000_000) * 100_000 + i, date));
                }
            }
        }
        out
    }

    fn render(&self, n: u64, date: i64) -> String {
        let when = crate::clock::to_datetime(date).to_rfc3339_opts(SecondsFormat::Secs, true);
        let h = mix(n ^ 0x1501);
        format!(
            "{{\"date\":\"{when}\",\"userId\":\"u-{}\",\"userName\":\"user{}@acme.example\",\
             \"url\":\"https://site{}.example/page/{n}\",\"classification\":\"{}\",\
             \"disposition\":\"{}\",\"browser\":\"Chrome\",\"country\":\"US\"}}",
            h % 40,
            h % 40,
            h % 300,
            CLASSES[(h % 4) as usize],
            DISPOSITIONS[(h / 4 % 3) as usize]
        )
    }
}

impl Simulator {
    /// Serves Isolation tenant `cfg` (at `/api/v2/reporting/usage-data`) from now on.
    pub fn serve_isolation(&self, cfg: SimIsolation) {
        let sim = Arc::new(IsolationSim {
            seed: self.seed(),
            cfg,
            live: Mutex::new(Live::default()),
        });
        lock(&self.inner.isolation).insert(sim.cfg.key.clone(), sim);
    }

    /// Queues faults for the Isolation tenant of `key`; each request consumes the next one.
    pub fn inject_isolation(&self, key: &str, faults: impl IntoIterator<Item = Fault>) {
        if let Some(t) = lock(&self.inner.isolation).get(key) {
            lock(&t.live).faults.extend(faults);
        }
    }

    /// Every request made with `key` (rejected ones too), oldest first.
    pub fn isolation_requests(&self, key: &str) -> Vec<LoggedRequest> {
        lock(&self.inner.isolation)
            .get(key)
            .map(|t| lock(&t.live).log.clone())
            .unwrap_or_default()
    }

    /// Ground truth: the bytes of every record of `key` dated in `[start, end)`, by date.
    pub fn isolation_records(&self, key: &str, start: i64, end: i64) -> Vec<String> {
        let Some(t) = lock(&self.inner.isolation).get(key).cloned() else {
            return Vec::new();
        };
        let mut list: Vec<(u64, i64)> = t
            .dated_in(start, end)
            .into_iter()
            .filter(|(_, d)| *d < end)
            .collect();
        list.sort_by_key(|(n, d)| (*d, *n));
        list.into_iter().map(|(n, d)| t.render(n, d)).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Answers one request to [`PATH`].
pub(super) async fn handle(
    sim: &Simulator,
    parts: &Parts,
    kill: Option<Arc<Notify>>,
) -> Response<Body> {
    let now = sim.inner.clock.now();
    let pairs = match query(parts) {
        Ok(p) => p,
        Err(msg) => return text(400, msg),
    };
    let key = param(&pairs, "key").unwrap_or("");
    let Some(t) = lock(&sim.inner.isolation).get(key).cloned() else {
        return text(401, "{\"error\":\"invalid API key\"}");
    };
    let fault = lock(&t.live).faults.pop_front();
    let (status, body) = match answer(&t, &pairs, now.timestamp()) {
        Ok(b) => (200, b),
        Err(msg) => (400, msg.into_bytes()),
    };
    if let Some(fault) = fault {
        lock(&t.live).record(parts, fault_status(&fault), now, Some(fault.clone()));
        let echo = format!("GET {}", parts.uri);
        return faulty(&fault, body, echo, kill).await;
    }
    lock(&t.live).record(parts, status, now, None);
    if status == 200 {
        json(body)
    } else {
        text(status, body)
    }
}

fn answer(t: &IsolationSim, pairs: &[(String, String)], now: i64) -> Result<Vec<u8>, String> {
    let page_size: usize = param(pairs, "pageSize")
        .unwrap_or("100")
        .parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or("{\"error\":\"pageSize must be between 1 and 10000\"}")?;
    let bound = |name: &str| -> Result<i64, String> {
        let v =
            param(pairs, name).ok_or_else(|| format!("{{\"error\":\"{name} is required\"}}"))?;
        instant(v).ok_or_else(|| format!("{{\"error\":\"{name} is not an ISO 8601 time\"}}"))
    };
    let (start, end) = (bound("from")?, bound("to")?);
    if end < start {
        return Err("{\"error\":\"to is before from\"}".into());
    }
    if start < now - HORIZON_SECS {
        return Err("{\"error\":\"from is outside the 30-day retention period\"}".into());
    }
    let mut list: Vec<(u64, i64)> = t
        .dated_in(start, end)
        .into_iter()
        .filter(|(_, d)| *d <= now)
        .collect();
    // Not in date order, and a full page is any subset of what matched.
    list.sort_by_key(|(n, _)| mix(n ^ 0x0dd));
    list.truncate(page_size);
    if t.cfg.duplicate_rows {
        if let Some(first) = list.first().copied() {
            list.push(first);
        }
    }
    let mut body = Vec::from(&b"{\"data\":["[..]);
    for (i, (n, d)) in list.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(t.render(*n, *d).as_bytes());
    }
    body.extend_from_slice(b"],\"pageSize\":");
    body.extend_from_slice(page_size.to_string().as_bytes());
    body.push(b'}');
    Ok(body)
}
