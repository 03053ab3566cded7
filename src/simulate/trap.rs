//! The simulated TRAP incidents API (more-feeds.md): `GET /api/incidents?state=STATE&
//! created_after=ISO&created_before=ISO` with the raw API key in `Authorization`.
//!
//! - **Incidents**: `incidents_per_hour` an hour, deterministic from the seed and the key; each
//!   with `id`, `summary`, `score`, `state`, `created_at`, `updated_at`, `event_count`, `hosts`,
//!   `incident_field_values[]`, `events[]` (with `emails[]`) and `quarantine_results[]`. An
//!   incident exists from its `created_at` on.
//! - **Updates**: `update_after` after creation (default 30m; `None`: never) an incident is
//!   `open`, has a second event and a quarantine result, and a new `updated_at`: the same id,
//!   other bytes. A request for `state=new` no longer finds it, one for `open` does.
//! - **Unordered and unpaged**: the answer is every matching incident, in an order that is not
//!   `created_at`'s; with `duplicate_rows` one incident of each answer comes twice.
//! - **Both ends inclusive** (uncertain: the switch `inclusive_end = false` makes
//!   `created_before` exclusive).
//! - **States**: `state` may be omitted (uncertain: then every state is answered), an unknown
//!   one is a 400.
//! - **Slice timeouts**: a request whose slice is longer than `timeout_above` never answers (the
//!   server's query is too slow), as large slices do on real servers.
//! - **Faults**: queued per key ([`Simulator::inject_trap`]), one per request: any [`Fault`].
//! - **Rate limits**: none documented (uncertain), so none is enforced; a queued
//!   [`Fault::Status`]`(429)` stands for one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, request::Parts, Response};
use chrono::SecondsFormat;
use tokio::sync::Notify;

use super::events::mix;
use super::keyed::{faulty, instant, json, param, query, Live};
use super::server::text;
use super::{Fault, LoggedRequest, Simulator};

/// The path served.
pub(super) const PATH: &str = "/api/incidents";

const STATES: [&str; 5] = ["new", "open", "assigned", "closed", "ignored"];

/// One simulated TRAP server's tenant (one API key).
#[derive(Clone, Debug)]
pub struct SimTrap {
    pub key: String,
    pub incidents_per_hour: u32,
    /// How long after creation an incident is updated (opened, an event and a quarantine result
    /// added); `None`: never. Default 30m.
    pub update_after: Option<Duration>,
    /// Requests over a slice longer than this never answer. Default: none do.
    pub timeout_above: Option<Duration>,
    /// One incident of each non-empty answer comes twice. Default false.
    pub duplicate_rows: bool,
    /// `created_before` includes its instant. Default true (uncertain).
    pub inclusive_end: bool,
}

impl SimTrap {
    pub fn new(key: &str, incidents_per_hour: u32) -> SimTrap {
        SimTrap {
            key: key.to_string(),
            incidents_per_hour,
            update_after: Some(Duration::from_secs(1800)),
            timeout_above: None,
            duplicate_rows: false,
            inclusive_end: true,
        }
    }
}

pub(super) struct TrapSim {
    cfg: SimTrap,
    seed: u64,
    live: Mutex<Live>,
}

/// The TRAP tenants, by key.
pub(super) type TrapTenants = Mutex<HashMap<String, Arc<TrapSim>>>;

/// One generated incident: its id and creation time (unix seconds).
#[derive(Clone, Copy)]
struct Incident {
    id: u64,
    created: i64,
}

impl TrapSim {
    /// The incidents created in `[start, end]` (or `[start, end)`), in generation order.
    fn created_in(&self, start: i64, end: i64) -> Vec<Incident> {
        let mut out = Vec::new();
        let per_hour = u64::from(self.cfg.incidents_per_hour);
        if per_hour == 0 || end < start {
            return out;
        }
        let key_hash = self
            .cfg
            .key
            .bytes()
            .fold(self.seed, |h, b| mix(h ^ u64::from(b)));
        for hour in start.div_euclid(3600)..=end.div_euclid(3600) {
            for i in 0..per_hour {
                let h = mix(key_hash ^ mix(hour as u64) ^ i);
                let created = hour * 3600 + (h % 3600) as i64;
                let inside = created >= start
                    && (created < end || (self.cfg.inclusive_end && created == end));
                if inside {
                    out.push(Incident {
                        id: (hour as u64 % 1_000_000) * 1000 + i,
                        created,
                    });
                }
            }
        }
        out
    }

    /// Whether `incident` has been updated at `now`.
    fn updated(&self, incident: Incident, now: i64) -> bool {
        self.cfg
            .update_after
            .is_some_and(|d| now >= incident.created + d.as_secs() as i64)
    }

    fn state(&self, incident: Incident, now: i64) -> &'static str {
        if self.updated(incident, now) {
            "open"
        } else {
            "new"
        }
    }

    /// The incident's JSON as the server sends it at `now`.
    fn render(&self, incident: Incident, now: i64) -> String {
        let t = |s: i64| crate::clock::to_datetime(s).to_rfc3339_opts(SecondsFormat::Secs, true);
        let updated = self.updated(incident, now);
        let id = incident.id;
        let created = t(incident.created);
        let updated_at = match self.cfg.update_after {
            Some(d) if updated => t(incident.created + d.as_secs() as i64),
            _ => created.clone(),
        };
        let event = |n: u64| {
            format!(
                "{{\"id\":{},\"category\":\"malware\",\"severity\":\"Critical\",\"source\":\"Proofpoint TAP\",\
                 \"threatname\":\"Infection.PDF.File.Exploit.CVE-2026-{id:04}\",\"state\":\"Linked\",\
                 \"attackDirection\":\"inbound\",\"received\":\"{created}\",\"emails\":[{{\"sender\":{{\"email\":\"attacker{n}@evil.example\"}},\
                 \"recipient\":{{\"email\":\"user{}@acme.example\"}},\"subject\":\"Invoice \\\"{id}\\\"\",\"messageId\":\"<{id}.{n}@evil.example>\"}}]}}",
                id * 10 + n,
                id % 97
            )
        };
        let (events, quarantine) = if updated {
            (
                format!("{},{}", event(1), event(2)),
                format!(
                    "[{{\"alertSource\":\"Proofpoint TAP\",\"status\":\"successful\",\"messageId\":\"<{id}.1@evil.example>\",\"recipient\":\"user{}@acme.example\"}}]",
                    id % 97
                ),
            )
        } else {
            (event(1), "[]".to_string())
        };
        format!(
            "{{\"id\":{id},\"summary\":\"Malicious attachment to user{}@acme.example\",\"score\":{},\"state\":\"{}\",\
             \"created_at\":\"{created}\",\"updated_at\":\"{updated_at}\",\"event_count\":{},\
             \"hosts\":{{\"attacker\":[\"198.51.100.{}\"],\"forensics\":[\"evil.example\"]}},\
             \"incident_field_values\":[{{\"name\":\"Classification\",\"value\":\"Malware\"}},{{\"name\":\"Severity\",\"value\":\"Critical\"}}],\
             \"events\":[{events}],\"quarantine_results\":{quarantine}}}",
            id % 97,
            50 + id % 50,
            self.state(incident, now),
            if updated { 2 } else { 1 },
            id % 250
        )
    }
}

impl Simulator {
    /// Serves TRAP tenant `cfg` (at `/api/incidents`) from now on.
    pub fn serve_trap(&self, cfg: SimTrap) {
        let sim = Arc::new(TrapSim {
            seed: self.seed(),
            cfg,
            live: Mutex::new(Live::default()),
        });
        lock(&self.inner.trap).insert(sim.cfg.key.clone(), sim);
    }

    /// Queues faults for the TRAP tenant of `key`; each request consumes the next one.
    pub fn inject_trap(&self, key: &str, faults: impl IntoIterator<Item = Fault>) {
        if let Some(t) = lock(&self.inner.trap).get(key) {
            lock(&t.live).faults.extend(faults);
        }
    }

    /// Every request made with `key` (rejected ones too), oldest first.
    pub fn trap_requests(&self, key: &str) -> Vec<LoggedRequest> {
        lock(&self.inner.trap)
            .get(key)
            .map(|t| lock(&t.live).log.clone())
            .unwrap_or_default()
    }

    /// Ground truth: the bytes of every incident of `key` created in `[start, end)` as the
    /// server sends it at `at` (unix seconds), in creation order.
    pub fn trap_incidents(&self, key: &str, start: i64, end: i64, at: i64) -> Vec<(u64, String)> {
        let Some(t) = lock(&self.inner.trap).get(key).cloned() else {
            return Vec::new();
        };
        let mut list: Vec<Incident> = t
            .created_in(start, end)
            .into_iter()
            .filter(|i| i.created < end && i.created <= at)
            .collect();
        list.sort_by_key(|i| (i.created, i.id));
        list.into_iter().map(|i| (i.id, t.render(i, at))).collect()
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
    let key = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(t) = lock(&sim.inner.trap).get(key).cloned() else {
        return text(401, "{\"error\":\"Unauthorized\"}");
    };
    let fault = lock(&t.live).faults.pop_front();
    let answer = answer(&t, parts, now.timestamp());
    let (status, body) = match answer {
        Err(msg) => (400, msg.into_bytes()),
        Ok(Hang) => {
            lock(&t.live).record(parts, 0, now, fault);
            return std::future::pending().await;
        }
        Ok(Body200(b)) => (200, b),
    };
    if let Some(fault) = fault {
        lock(&t.live).record(parts, fault_status(&fault), now, Some(fault.clone()));
        let echo = format!("GET {} Authorization: {key}", parts.uri);
        return faulty(&fault, body, echo, kill).await;
    }
    lock(&t.live).record(parts, status, now, None);
    if status == 200 {
        json(body)
    } else {
        text(status, body)
    }
}

/// The status a fault is logged with.
pub(super) fn fault_status(fault: &Fault) -> u16 {
    match fault {
        Fault::Status(s) | Fault::EchoCredentials(s) | Fault::Redirect(s, _) => *s,
        Fault::NoContent => 204,
        Fault::ResetBeforeHeaders => 0,
        _ => 200,
    }
}

enum Answered {
    Hang,
    Body200(Vec<u8>),
}
use Answered::{Body200, Hang};

fn answer(t: &TrapSim, parts: &Parts, now: i64) -> Result<Answered, String> {
    let pairs = query(parts)?;
    let state = param(&pairs, "state");
    if let Some(s) = state {
        if !STATES.contains(&s) {
            return Err(format!("{{\"error\":\"invalid state '{s}'\"}}"));
        }
    }
    let bound = |name: &str| -> Result<i64, String> {
        let v =
            param(&pairs, name).ok_or_else(|| format!("{{\"error\":\"{name} is required\"}}"))?;
        instant(v).ok_or_else(|| format!("{{\"error\":\"{name} is not an ISO 8601 time\"}}"))
    };
    let (start, end) = (bound("created_after")?, bound("created_before")?);
    if end < start {
        return Err("{\"error\":\"created_before is before created_after\"}".into());
    }
    if t.cfg
        .timeout_above
        .is_some_and(|d| end - start > d.as_secs() as i64)
    {
        return Ok(Hang);
    }
    let mut list: Vec<Incident> = t
        .created_in(start, end)
        .into_iter()
        .filter(|i| i.created <= now)
        .filter(|i| state.map_or(true, |s| t.state(*i, now) == s))
        .collect();
    // Not in `created_at` order: the API promises none.
    list.sort_by_key(|i| mix(i.id ^ 0x5eed));
    if t.cfg.duplicate_rows {
        if let Some(first) = list.first().copied() {
            list.push(first);
        }
    }
    let mut body = Vec::from(&b"["[..]);
    for (n, i) in list.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        body.extend_from_slice(t.render(*i, now).as_bytes());
    }
    body.push(b']');
    Ok(Body200(body))
}
