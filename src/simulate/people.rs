//! The People API (proofpoint-feeds.md): `/v2/people/vap` and `/v2/people/top-clickers`.
//!
//! Each tenant has a fixed list of users per endpoint (its size set by `vap_users` and
//! `top_clickers`), deterministic from the seed, ordered by attack index or clicks. `window` must
//! be 14, 30 or 90 (400 otherwise); `size` defaults to 1000 (vap) or 100 (top clickers, at most
//! 200: 400 above); `page` starts at 1. The answer holds that page's `users`, the total and the
//! `interval` (`now - window` to now, to the minute). Each endpoint allows 50 requests per
//! rolling 24 hours per principal, counted whatever the answer (429 over it, not counted);
//! faults queued with [`super::Simulator::inject_people`] hit the first request for their page.
//! A tenant's [`super::SimPeople`] makes every page full past the end of the list (`endless`)
//! or states another total than the list's size (`stated_total`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::Response;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::events::{mix, Rng};
use super::server::{basic_auth, record, status_body, text};
use super::{Fault, Simulator};

/// Requests each endpoint allows per rolling 24 hours.
pub const DAILY_LIMIT: usize = 50;

/// Which list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum List {
    Vap,
    TopClickers,
}

impl List {
    fn index(self) -> usize {
        match self {
            List::Vap => 0,
            List::TopClickers => 1,
        }
    }
}

pub(super) fn route(path: &str) -> Option<List> {
    match path.trim_end_matches('/') {
        "/v2/people/vap" => Some(List::Vap),
        "/v2/people/top-clickers" => Some(List::TopClickers),
        _ => None,
    }
}

const NAMES: &[&str] = &[
    "Ann", "Bob", "Carla", "Dev", "Eve", "Farid", "Greta", "Hiro",
];
const DEPARTMENTS: &[&str] = &["Finance", "HR", "Engineering", "Sales", "Executive"];
const FAMILIES: &[&str] = &["Credential Phishing", "Emotet", "Qbot", "Impostor", "Lumma"];

/// User `i` of the list: the same bytes for the same seed, principal and index.
fn user(key: u64, list: List, i: u64) -> Value {
    let mut g = Rng::new(mix(key ^ mix(i + 1) ^ (list.index() as u64 + 7)));
    let name = NAMES[g.below(NAMES.len() as u64) as usize];
    let email = format!("{}.{i}@corp{}.example", name.to_lowercase(), key % 1000);
    let identity = json!({
        "guid": format!("{:016x}{:016x}", g.next_u64(), g.next_u64()),
        "customerUserId": null,
        "emails": [email],
        "name": format!("{name} {i}"),
        "department": DEPARTMENTS[g.below(DEPARTMENTS.len() as u64) as usize],
        "location": "HQ",
        "title": "Staff",
        "vip": g.below(10) == 0,
    });
    let family = FAMILIES[g.below(FAMILIES.len() as u64) as usize];
    match list {
        List::Vap => {
            // Ordered by attack index: user 0 is the most attacked.
            let index = 10_000u64.saturating_sub(i * 7);
            json!({"identity": identity, "threatStatistics": {
                "attackIndex": index, "families": [{"name": family, "score": index}]}})
        }
        List::TopClickers => {
            let clicks = 500u64.saturating_sub(i);
            json!({"identity": identity, "clickStatistics": {
                "clickCount": clicks, "families": [{"name": family, "clicks": clicks}]}})
        }
    }
}

/// The `page` a query asks for (1 when absent or unreadable).
fn page_of(query: &str) -> u64 {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("page="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

pub(super) async fn handle(
    sim: &Simulator,
    parts: &Parts,
    list: List,
    _kill: Option<Arc<Notify>>,
) -> Response<Body> {
    let now = sim.inner.clock.now();
    let creds = basic_auth(parts);
    let Some(t) = creds
        .as_ref()
        .and_then(|(user, _)| sim.inner.tenants.get(user))
    else {
        return text(401, status_body(401));
    };
    if creds.as_ref().map(|(_, p)| p.as_str()) != Some(t.cfg.secret.as_str()) {
        record(t, parts, 401, now, None);
        return text(401, status_body(401));
    }
    let fault = {
        let mut live = t.live.lock().unwrap_or_else(|e| e.into_inner());
        let pool = &mut live.people_quota[list.index()];
        while pool
            .front()
            .is_some_and(|&at| at + chrono::Duration::hours(24) <= now)
        {
            pool.pop_front();
        }
        if pool.len() >= DAILY_LIMIT {
            drop(live);
            record(t, parts, 429, now, None);
            return text(
                429,
                "Too many requests: 50 requests per 24 hours per endpoint",
            );
        }
        pool.push_back(now);
        let asked = page_of(parts.uri.query().unwrap_or(""));
        let at = live.people_faults.iter().position(|(p, _)| *p == asked);
        at.and_then(|i| live.people_faults.remove(i))
            .map(|(_, f)| f)
    };
    match fault {
        // A slow answer: wait (tokio time), then answer normally.
        Some(Fault::SlowHeaders(d)) => tokio::time::sleep(d).await,
        Some(fault) => {
            let status = match fault {
                Fault::Status(s) => s,
                _ => 500,
            };
            record(t, parts, status, now, Some(fault));
            return text(status, status_body(status));
        }
        None => {}
    }
    let mut window = None;
    let mut size = match list {
        List::Vap => 1000,
        List::TopClickers => 100,
    };
    let mut page = 1u64;
    for pair in parts.uri.query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "window" => window = v.parse::<u64>().ok(),
            "size" => match v.parse::<u64>() {
                Ok(n) if n >= 1 => size = n,
                _ => {
                    record(t, parts, 400, now, None);
                    return text(400, format!("Invalid size value: {v}"));
                }
            },
            "page" => match v.parse::<u64>() {
                Ok(n) if n >= 1 => page = n,
                _ => {
                    record(t, parts, 400, now, None);
                    return text(400, format!("Invalid page value: {v}"));
                }
            },
            _ => {}
        }
    }
    let Some(window) = window.filter(|w| [14, 30, 90].contains(w)) else {
        record(t, parts, 400, now, None);
        return text(400, "The window parameter must be one of 14, 30 or 90");
    };
    if list == List::TopClickers && size > 200 {
        record(t, parts, 400, now, None);
        return text(400, "The size parameter must be at most 200");
    }
    let len = match list {
        List::Vap => t.cfg.vap_users,
        List::TopClickers => t.cfg.top_clickers,
    };
    let quirks = &t.cfg.people;
    let key = t.gen.key();
    let from = (page - 1).saturating_mul(size);
    let to = if quirks.endless {
        from + size
    } else {
        (from + size).min(len)
    };
    let users: Vec<Value> = (from..to).map(|i| user(key, list, i)).collect();
    let total = quirks.stated_total.unwrap_or(len);
    let end = now.timestamp().div_euclid(60) * 60;
    let interval = format!(
        "{}/{}",
        crate::clock::rfc3339(end - window as i64 * 86_400),
        crate::clock::rfc3339(end)
    );
    let body = match list {
        List::Vap => json!({"users": users, "totalVapUsers": total, "interval": interval,
            "averageAttackIndex": 4_200, "vapAttackIndexThreshold": 9_000}),
        List::TopClickers => {
            json!({"users": users, "totalTopClickers": total, "interval": interval})
        }
    };
    record(t, parts, 200, now, None);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| text(500, status_body(500)))
}
