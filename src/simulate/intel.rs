//! The simulator's Threat, Campaign and Forensics endpoints (`proofpoint-feeds.md`, "Threat,
//! Campaign and Forensics"): `GET /v2/threat/summary/{threatId}`, `GET /v2/campaign/{id}` and
//! `GET /v2/forensics?threatId=ID[&includeCampaignForensics=true]` or `?campaignId=ID`.
//!
//! The invariant it keeps: it answers for exactly the threat and campaign ids the tenant's events
//! carry (the per-tenant pools of [`super::events`]), with a body that depends only on the seed,
//! the principal and the id (forensics' `generated` is the clock's now); any other id is a 404.
//! Auth is the SIEM endpoint's (Basic per tenant, 401, 403 when not licensed). These endpoints are
//! not metered (the summary is documented unthrottled; the others publish no limit). Faults are
//! their own: [`super::Simulator::inject_intel`] queues one per request and
//! [`super::Simulator::set_intel_fault`] fails every request until cleared, so the SIEM endpoint
//! and its fault queue are untouched.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, request::Parts, HeaderValue, Response};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::events::{mix, Rng, TenantGen, ThreatType, CAMPAIGNS, THREATS_PER_TYPE};
use super::render::{hex64, uuid, URLS};
use super::server::{basic_auth, record, status_body, text};
use super::{Fault, Simulator};

/// One of the intelligence endpoints, parsed from the path.
pub(super) enum Route {
    Threat(String),
    Campaign(String),
    Forensics,
}

pub(super) fn route(path: &str) -> Option<Route> {
    if let Some(id) = path.strip_prefix("/v2/threat/summary/") {
        return Some(Route::Threat(id.trim_end_matches('/').to_owned()));
    }
    if let Some(id) = path.strip_prefix("/v2/campaign/") {
        return Some(Route::Campaign(id.trim_end_matches('/').to_owned()));
    }
    matches!(path.trim_end_matches('/'), "/v2/forensics").then_some(Route::Forensics)
}

const TYPES: [ThreatType; 3] = [
    ThreatType::Url,
    ThreatType::Attachment,
    ThreatType::MessageText,
];
const CATEGORIES: &[&str] = &["phish", "malware", "impostor", "spam"];
const ACTORS: &[&str] = &["TA542", "TA505", "TA570", "TA577", "TA4557", "TA866"];
const FAMILIES: &[&str] = &[
    "Emotet",
    "Qbot",
    "IcedID",
    "Pikabot",
    "Lumma Stealer",
    "AsyncRAT",
];
const TECHNIQUES: &[&str] = &[
    "Malicious Link",
    "Macro-enabled Document",
    "HTML Smuggling",
    "OneNote Attachment",
    "CAPTCHA Redirect",
];
const BRANDS: &[&str] = &["Microsoft", "DocuSign", "DHL", "Adobe", "Salesforce"];

fn pick<'a>(g: &mut Rng, items: &[&'a str]) -> &'a str {
    items[g.below(items.len() as u64) as usize]
}

fn named(id: u64, name: &str) -> Value {
    json!({"id": format!("{id:016x}"), "name": name})
}

fn hex_id(a: u64, b: u64) -> String {
    String::from_utf8_lossy(hex64(&mut [0u8; 64], a, b)).into_owned()
}

fn uuid_id(a: u64, b: u64) -> String {
    String::from_utf8_lossy(uuid(&mut [0u8; 40], a, b)).into_owned()
}

fn ts(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// 2026-01-01T00:00:00Z, the earliest `identifiedAt` / `startDate`.
const EPOCH_MS: i64 = 1_767_225_600_000;

/// Every threat index of the tenant (`0..3 * THREATS_PER_TYPE`).
fn threat_indices() -> std::ops::Range<u64> {
    0..TYPES.len() as u64 * THREATS_PER_TYPE
}

fn threat_index(gen: &TenantGen, id: &str) -> Option<u64> {
    threat_indices().find(|&i| {
        let (a, b) = gen.threat_words(i);
        hex_id(a, b) == id
    })
}

fn campaign_index(gen: &TenantGen, id: &str) -> Option<u64> {
    (0..CAMPAIGNS).find(|&c| {
        let (a, b) = gen.campaign_words(c);
        uuid_id(a, b) == id
    })
}

/// What a threat is, decided from its words alone.
struct Threat {
    id: String,
    kind: ThreatType,
    name: String,
    category: &'static str,
    identified_ms: i64,
    rng: Rng,
}

fn threat(gen: &TenantGen, i: u64) -> Threat {
    let (a, b) = gen.threat_words(i);
    let kind = TYPES[(i / THREATS_PER_TYPE) as usize];
    let mut rng = Rng::new(mix(a ^ b.rotate_left(17)));
    let name = match kind {
        ThreatType::Url => URLS[rng.below(URLS.len() as u64) as usize].to_owned(),
        ThreatType::Attachment => hex_id(b, a),
        ThreatType::MessageText => "Impostor: executive impersonation".to_owned(),
    };
    let category = match kind {
        ThreatType::MessageText => "impostor",
        _ => pick(&mut rng, CATEGORIES),
    };
    let identified_ms = EPOCH_MS + rng.below(300 * 86_400_000) as i64;
    Threat {
        id: hex_id(a, b),
        kind,
        name,
        category,
        identified_ms,
        rng,
    }
}

/// The API's `type` of a threat (the summary spells message text with a space).
fn type_name(t: ThreatType) -> &'static str {
    match t {
        ThreatType::Url => "url",
        ThreatType::Attachment => "attachment",
        ThreatType::MessageText => "message text",
    }
}

/// The body of `/v2/threat/summary/{id}` for threat `i`.
fn threat_summary(gen: &TenantGen, i: u64) -> Value {
    let mut t = threat(gen, i);
    let g = &mut t.rng;
    let actor = pick(g, ACTORS);
    let family = pick(g, FAMILIES);
    let technique = pick(g, TECHNIQUES);
    let brand = pick(g, BRANDS);
    json!({
        "id": t.id,
        "identifiedAt": ts(t.identified_ms),
        "name": t.name,
        "type": type_name(t.kind),
        "category": t.category,
        "status": "active",
        "detectionType": if t.kind == ThreatType::Attachment { "sandbox" } else { "reputation" },
        "severity": 100 + g.below(900),
        "attackSpread": 1 + g.below(400),
        "notable": g.below(10) == 0,
        "verticals": 1 + g.below(20),
        "geographies": 1 + g.below(30),
        "actors": [named(g.next_u64(), actor)],
        "families": [named(g.next_u64(), family)],
        "malware": if t.category == "malware" { json!([named(g.next_u64(), family)]) } else { json!([]) },
        "techniques": [named(g.next_u64(), technique)],
        "brands": [named(g.next_u64(), brand)],
    })
}

/// The body of `/v2/campaign/{id}` for campaign `c`: its members are the threats `i` with
/// `i % CAMPAIGNS == c`.
fn campaign(gen: &TenantGen, c: u64) -> Value {
    let (a, b) = gen.campaign_words(c);
    let mut g = Rng::new(mix(a ^ b.rotate_left(29)));
    let actor = pick(&mut g, ACTORS);
    let family = pick(&mut g, FAMILIES);
    let technique = pick(&mut g, TECHNIQUES);
    let members: Vec<Value> = threat_indices()
        .filter(|i| i % CAMPAIGNS == c)
        .map(|i| {
            let t = threat(gen, i);
            json!({
                "id": t.id,
                "threat": t.name,
                "threatStatus": "active",
                "type": "threat",
                "subType": t.kind.as_str().to_ascii_uppercase(),
                "threatTime": ts(t.identified_ms),
            })
        })
        .collect();
    json!({
        "id": uuid_id(a, b),
        "name": format!("{actor} {family} campaign {}", c + 1),
        "description": format!("{actor} delivers {family} through {technique}."),
        "startDate": ts(EPOCH_MS + g.below(300 * 86_400_000) as i64),
        "campaignMembers": members,
        "actors": [named(g.next_u64(), actor)],
        "malware": [named(g.next_u64(), family)],
        "techniques": [named(g.next_u64(), technique)],
        "families": [named(g.next_u64(), family)],
    })
}

/// One forensics report for threat `i`, in `scope` (`THREAT` or `CAMPAIGN`).
fn report(gen: &TenantGen, i: u64, scope: &str) -> Value {
    let mut t = threat(gen, i);
    let g = &mut t.rng;
    let time = t.identified_ms;
    let evidence = match t.kind {
        ThreatType::Url => json!([
            {"type": "url", "display": format!("Visited {}", t.name), "engine": "iee",
             "malicious": true, "time": 0, "what": {"url": t.name}, "platforms": [platform()]},
            {"type": "dns", "display": "DNS lookup of the landing host", "engine": "iee",
             "malicious": false, "time": 1, "what": {"host": "cdn.evil.example", "cnames": []},
             "platforms": [platform()]},
        ]),
        ThreatType::Attachment => json!([
            {"type": "attachment", "display": "Macro drops a second stage", "engine": "sandbox",
             "malicious": true, "time": 0, "what": {"sha256": t.name, "size": 20_000 + g.below(400_000)},
             "platforms": [platform()]},
            {"type": "network", "display": "Connects to its command server", "engine": "sandbox",
             "malicious": true, "time": 3, "what": {"action": "connect", "ip": "203.0.113.7", "port": 443, "type": "tcp"},
             "platforms": [platform()]},
        ]),
        ThreatType::MessageText => json!([
            {"type": "behavior", "display": "Impersonates an executive", "engine": "iee",
             "malicious": true, "time": 0, "what": {"rule": "impostor_display_name"},
             "platforms": []},
        ]),
    };
    json!({
        "scope": scope,
        "id": t.id,
        "name": t.name,
        "threatStatus": "active",
        "time": ts(time),
        "forensics": evidence,
    })
}

fn platform() -> Value {
    json!({"name": "windows10", "os": "windows", "version": "10"})
}

/// The body of `/v2/forensics` for `query`, or the status and text to answer instead.
fn forensics(gen: &TenantGen, query: &str, now: DateTime<Utc>) -> Result<Value, (u16, String)> {
    let (mut threat_id, mut campaign_id, mut include) = (None, None, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "threatId" => threat_id = Some(v.to_owned()),
            "campaignId" => campaign_id = Some(v.to_owned()),
            "includeCampaignForensics" => include = v == "true",
            _ => {}
        }
    }
    let reports = match (threat_id, campaign_id) {
        (Some(id), None) => {
            let i = threat_index(gen, &id).ok_or((404, status_body(404).to_owned()))?;
            let mut reports = vec![report(gen, i, "THREAT")];
            if include {
                let c = i % CAMPAIGNS;
                reports.extend(
                    threat_indices()
                        .filter(|&j| j % CAMPAIGNS == c && j != i)
                        .map(|j| report(gen, j, "CAMPAIGN")),
                );
            }
            reports
        }
        (None, Some(id)) => {
            let c = campaign_index(gen, &id).ok_or((404, status_body(404).to_owned()))?;
            threat_indices()
                .filter(|&j| j % CAMPAIGNS == c)
                .map(|j| report(gen, j, "CAMPAIGN"))
                .collect()
        }
        _ => {
            return Err((
                400,
                "Exactly one of the parameters threatId or campaignId must be given".to_owned(),
            ))
        }
    };
    Ok(json!({
        "generated": now.to_rfc3339_opts(SecondsFormat::Millis, true),
        "reports": reports,
    }))
}

/// The body an intelligence endpoint answers for `principal`'s `route`, without auth or faults
/// (for [`Simulator::intel_body`]): `Err` carries the status and text otherwise sent.
pub(super) fn body(
    gen: &TenantGen,
    route: &Route,
    query: &str,
    now: DateTime<Utc>,
) -> Result<Vec<u8>, (u16, String)> {
    let not_found = || (404, status_body(404).to_owned());
    let value = match route {
        Route::Threat(id) => threat_summary(gen, threat_index(gen, id).ok_or_else(not_found)?),
        Route::Campaign(id) => campaign(gen, campaign_index(gen, id).ok_or_else(not_found)?),
        Route::Forensics => forensics(gen, query, now)?,
    };
    Ok(serde_json::to_vec(&value).unwrap_or_default())
}

pub(super) async fn handle(
    sim: &Simulator,
    parts: &Parts,
    route: Route,
    kill: Option<Arc<Notify>>,
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
    if !t.cfg.licensed {
        record(t, parts, 403, now, None);
        return text(403, status_body(403));
    }
    let fault = {
        let mut live = t.live.lock().unwrap_or_else(|e| e.into_inner());
        live.intel_faults
            .pop_front()
            .or_else(|| live.intel_down.clone())
    };
    let result = body(&t.gen, &route, parts.uri.query().unwrap_or(""), now);
    let Some(fault) = fault else {
        return match result {
            Ok(json) => {
                record(t, parts, 200, now, None);
                json_response(json, None)
            }
            Err((status, msg)) => {
                record(t, parts, status, now, None);
                text(status, msg)
            }
        };
    };
    let json = result.unwrap_or_else(|_| b"{\"id\":\"unknown\",\"name\":\"unknown\"}".to_vec());
    let logged = |status| record(t, parts, status, now, Some(fault.clone()));
    match fault {
        Fault::Status(s) => {
            logged(s);
            text(s, status_body(s))
        }
        Fault::NoContent => {
            logged(204);
            text(204, Body::empty())
        }
        Fault::ResetBeforeHeaders => {
            logged(0);
            match kill {
                Some(kill) => {
                    kill.notify_one();
                    std::future::pending().await
                }
                None => json_response(json, Some(Cut::Reset)),
            }
        }
        Fault::ResetMidBody => {
            logged(200);
            json_response(json, Some(Cut::Reset))
        }
        Fault::TruncatedBody => {
            logged(200);
            json_response(json, Some(Cut::Truncate))
        }
        Fault::MalformedBody => {
            logged(200);
            json_response(
                b"{\"id\":<html><body>502 Bad Gateway</body></html>".to_vec(),
                None,
            )
        }
        Fault::SlowHeaders(d) => {
            logged(200);
            tokio::time::sleep(d).await;
            json_response(json, None)
        }
        Fault::StallMidBody(d) | Fault::Trickle(d) => {
            logged(200);
            json_response(json, Some(Cut::Stall(d)))
        }
        Fault::OddArrays => {
            // SIEM arrays mean nothing to a lookup: the normal answer.
            logged(200);
            json_response(json, None)
        }
        Fault::Redirect(s, ref location) => {
            logged(s);
            let mut resp = text(s, Body::empty());
            if let Ok(v) = HeaderValue::from_str(location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Fault::Endless => {
            // An endless body of a lookup is a stall that never ends: no more bytes.
            logged(200);
            json_response(json, Some(Cut::Stall(Duration::from_secs(86_400))))
        }
        Fault::EchoCredentials(s) => {
            logged(s);
            let auth = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            text(s, format!("request rejected; Authorization: {auth}"))
        }
    }
}

/// How a fault cuts a body after its first half.
#[derive(Clone, Copy)]
enum Cut {
    Reset,
    Truncate,
    Stall(Duration),
}

fn json_response(json: Vec<u8>, cut: Option<Cut>) -> Response<Body> {
    let mut resp = match cut {
        None => Response::new(Body::from(json)),
        Some(cut) => {
            let mut json = json;
            let second = json.split_off(json.len() / 2);
            let parts = futures_util::stream::unfold(
                (Some(json), Some(second)),
                move |(first, second)| async move {
                    if let Some(first) = first {
                        return Some((Ok(Bytes::from(first)), (None, second)));
                    }
                    let second = second?;
                    match cut {
                        Cut::Truncate => None,
                        Cut::Reset => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let err = std::io::Error::new(
                                std::io::ErrorKind::ConnectionReset,
                                "injected reset",
                            );
                            Some((Err(err), (None, None)))
                        }
                        Cut::Stall(d) => {
                            tokio::time::sleep(d).await;
                            Some((Ok(Bytes::from(second)), (None, None)))
                        }
                    }
                },
            );
            Response::new(Body::from_stream(parts))
        }
    };
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen() -> TenantGen {
        TenantGen::new(7, "tenant-0001", 600, 0)
    }

    #[test]
    fn every_pooled_threat_and_campaign_is_found_by_its_id_and_nothing_else() {
        let g = gen();
        for i in threat_indices() {
            let (a, b) = g.threat_words(i);
            assert_eq!(threat_index(&g, &hex_id(a, b)), Some(i));
        }
        for c in 0..CAMPAIGNS {
            let (a, b) = g.campaign_words(c);
            assert_eq!(campaign_index(&g, &uuid_id(a, b)), Some(c));
        }
        assert_eq!(threat_index(&g, "00"), None);
        assert_eq!(campaign_index(&g, "ids"), None);
        // Another tenant's threat is unknown here.
        let other = TenantGen::new(7, "tenant-0002", 600, 0);
        let (a, b) = other.threat_words(0);
        assert_eq!(threat_index(&g, &hex_id(a, b)), None);
    }

    #[test]
    fn bodies_are_deterministic_and_carry_the_documented_fields() {
        let now = Utc::now();
        let g = gen();
        let (a, b) = g.threat_words(THREATS_PER_TYPE + 3);
        let id = hex_id(a, b);
        let one = body(&g, &Route::Threat(id.clone()), "", now).unwrap();
        assert_eq!(
            one,
            body(&gen(), &Route::Threat(id.clone()), "", now).unwrap()
        );
        let v: Value = serde_json::from_slice(&one).unwrap();
        for k in [
            "id",
            "identifiedAt",
            "name",
            "type",
            "category",
            "status",
            "detectionType",
            "severity",
            "attackSpread",
            "notable",
            "verticals",
            "geographies",
            "actors",
            "families",
            "malware",
            "techniques",
            "brands",
        ] {
            assert!(v.get(k).is_some(), "{k} in {v}");
        }
        assert_eq!(
            (v["id"].as_str(), v["type"].as_str()),
            (Some(id.as_str()), Some("attachment"))
        );

        let (a, b) = g.campaign_words(3);
        let cid = uuid_id(a, b);
        let c: Value =
            serde_json::from_slice(&body(&g, &Route::Campaign(cid.clone()), "", now).unwrap())
                .unwrap();
        assert_eq!(c["id"], cid.as_str());
        let members = c["campaignMembers"].as_array().unwrap();
        assert_eq!(members.len(), 6);
        assert!(c["name"].as_str().unwrap().contains("campaign 4"));

        let f: Value = serde_json::from_slice(
            &body(&g, &Route::Forensics, &format!("campaignId={cid}"), now).unwrap(),
        )
        .unwrap();
        assert_eq!(f["reports"].as_array().unwrap().len(), 6);
        let f: Value = serde_json::from_slice(
            &body(&g, &Route::Forensics, &format!("threatId={id}"), now).unwrap(),
        )
        .unwrap();
        assert_eq!(f["reports"][0]["id"], id.as_str());
        assert_eq!(f["reports"].as_array().unwrap().len(), 1);
        assert_eq!(body(&g, &Route::Forensics, "", now).unwrap_err().0, 400);
        assert_eq!(
            body(&g, &Route::Threat("nope".into()), "", now)
                .unwrap_err()
                .0,
            404
        );
    }
}
