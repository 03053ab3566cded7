//! Black-box tests of the built-in TAP SIEM simulator over real HTTP, driven by a manual clock.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use tapfwd::clock::{Clock, ManualClock};
use tapfwd::simulate::{Fault, SimConfig, SimServer, SimTenant, Simulator};

const P: &str = "tenant-0001";
const S: &str = "secret-0001";

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap()
}

fn mins(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

struct Harness {
    sim: Simulator,
    manual: Arc<ManualClock>,
    server: SimServer,
    client: reqwest::Client,
}

impl Harness {
    async fn new(cfg: SimConfig, now: DateTime<Utc>) -> Harness {
        let (clock, manual) = Clock::manual(now);
        let sim = Simulator::new(cfg, clock);
        let server = sim.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let client = reqwest::Client::builder().no_gzip().build().unwrap();
        Harness {
            sim,
            manual,
            server,
            client,
        }
    }

    async fn default(now: DateTime<Utc>) -> Harness {
        Harness::new(SimConfig::generated(2, 600, 42), now).await
    }

    fn url(&self, path: &str, query: &str) -> String {
        format!("http://{}{path}?{query}", self.server.addr)
    }

    async fn get_as(
        &self,
        user: &str,
        pass: &str,
        path: &str,
        query: &str,
    ) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        let resp = self
            .client
            .get(self.url(path, query))
            .basic_auth(user, Some(pass))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        (status, headers, resp.bytes().await.unwrap().to_vec())
    }

    async fn get(&self, path: &str, query: &str) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
        self.get_as(P, S, path, query).await
    }

    /// `/v2/siem/all` JSON for `[a, b]` (with any extra query), as parsed JSON.
    async fn window(&self, a: DateTime<Utc>, b: DateTime<Utc>, extra: &str) -> Value {
        let q = format!("format=json&interval={}/{}{extra}", ts(a), ts(b));
        let (status, _, body) = self.get("/v2/siem/all", &q).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

/// Every event of a JSON response in a canonical text form.
fn events_of(v: &Value) -> Vec<String> {
    [
        "messagesBlocked",
        "messagesDelivered",
        "clicksBlocked",
        "clicksPermitted",
    ]
    .iter()
    .flat_map(|k| v[*k].as_array().unwrap().iter().map(|e| e.to_string()))
    .collect()
}

fn canon(raw: &[u8]) -> String {
    serde_json::from_slice::<Value>(raw).unwrap().to_string()
}

#[tokio::test]
async fn same_seed_gives_same_events_and_other_seed_differs() {
    let (clock, _m) = Clock::manual(t0());
    let a = Simulator::new(SimConfig::generated(1, 600, 7), clock.clone());
    let b = Simulator::new(SimConfig::generated(1, 600, 7), clock.clone());
    let c = Simulator::new(SimConfig::generated(1, 600, 8), clock);
    let (s, e) = (t0() - mins(120), t0() - mins(60));
    let ea = a.expected_events(P, s, e);
    assert!(ea.len() > 50);
    assert_eq!(ea, b.expected_events(P, s, e));
    assert_ne!(ea, c.expected_events(P, s, e));
}

#[tokio::test]
async fn the_request_log_can_be_turned_off_and_on() {
    let h = Harness::default(t0()).await;
    let (a, b) = (t0() - mins(120), t0() - mins(119));
    h.window(a, b, "").await;
    assert_eq!(h.sim.request_log(P).len(), 1);
    h.sim.keep_request_log(false);
    h.window(a, b, "").await;
    let (status, _, _) = h.get_as(P, "wrong", "/v2/siem/all", "format=json").await;
    assert_eq!(status, 401);
    assert_eq!(h.sim.request_log(P).len(), 1, "logged while turned off");
    h.sim.keep_request_log(true);
    h.window(a, b, "").await;
    let log = h.sim.request_log(P);
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].status, 200);
}

#[tokio::test]
async fn bad_credentials_get_401_unlicensed_403_unknown_path_404() {
    let mut cfg = SimConfig::generated(1, 600, 1);
    let mut unlicensed = SimTenant::new("nolicense", "pw", 600);
    unlicensed.licensed = false;
    cfg.tenants.push(unlicensed);
    let h = Harness::new(cfg, t0()).await;
    let q = format!(
        "format=json&interval={}/{}",
        ts(t0() - mins(60)),
        ts(t0() - mins(50))
    );
    let resp = h
        .client
        .get(h.url("/v2/siem/all", &q))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(h.get_as(P, "wrong", "/v2/siem/all", &q).await.0, 401);
    assert_eq!(h.get_as("nobody", S, "/v2/siem/all", &q).await.0, 401);
    assert_eq!(h.get_as("nolicense", "pw", "/v2/siem/all", &q).await.0, 403);
    assert_eq!(h.get("/v2/siem/nope", &q).await.0, 404);
    assert_eq!(h.get("/v2/siem/all", &q).await.0, 200);
    let log = h.sim.request_log(P);
    let statuses: Vec<u16> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![401, 404, 200]);
    assert_eq!(log[2].path, "/v2/siem/all");
    assert_eq!(log[2].query, q);
    assert_eq!(log[2].at, t0());
}

#[tokio::test]
async fn validation_errors_have_the_documented_texts() {
    let h = Harness::default(t0()).await;
    let now = t0();
    let cases = [
        (
            format!("format=json&interval={}/{}", ts(now - mins(60)), ts(now - mins(60) + chrono::Duration::seconds(29))),
            "The requested interval is too short. Requests must be for at least 30.00s of data",
        ),
        (
            format!("format=json&interval={}/{}", ts(now - mins(120)), ts(now - mins(59))),
            "The requested interval is too long. Requests must be for at most 1.00h of data",
        ),
        (
            format!("format=json&interval={}/{}", ts(now - chrono::Duration::days(7) - mins(1)), ts(now - chrono::Duration::days(7) + mins(10))),
            "The requested start time is too far into the past. Requests for information up to 7.00d are accepted",
        ),
        (
            format!("format=json&interval={}/{}", ts(now - mins(10)), ts(now - mins(20))),
            "The requested interval is invalid: end is before start",
        ),
    ];
    for (q, want) in cases {
        let (status, _, body) = h.get("/v2/siem/all", &q).await;
        assert_eq!(status, 400);
        assert_eq!(String::from_utf8(body).unwrap(), want);
    }
    for q in [
        "format=json".to_owned(),
        format!(
            "format=json&sinceSeconds=600&interval={}/{}",
            ts(now - mins(20)),
            ts(now - mins(10))
        ),
        "format=json&interval=yesterday/today".to_owned(),
        "format=json&sinceSeconds=abc".to_owned(),
        format!(
            "format=json&interval={}/{}&threatStatus=bogus",
            ts(now - mins(20)),
            ts(now - mins(10))
        ),
    ] {
        let (status, _, body) = h.get("/v2/siem/all", &q).await;
        assert_eq!(status, 400, "{q}");
        assert!(!body.is_empty());
    }
}

#[tokio::test]
async fn all_interval_forms_and_since_parameters_are_accepted() {
    let now = t0() + chrono::Duration::seconds(42);
    let h = Harness::default(now).await;
    let end = t0() - mins(30);
    for q in [
        format!("interval={}/{}", ts(end - mins(30)), ts(end)),
        format!("interval=PT30M/{}", ts(end)),
        format!("interval={}/PT30M", ts(end - mins(30))),
        format!("interval=PT1H/{}", "2026-03-02T12:30:00%2B01:00"),
        format!("interval={}/PT29M60S", ts(end - mins(30))),
    ] {
        let v = h.window_q(&q).await;
        assert_eq!(v["queryEndTime"], "2026-03-02T11:30:00Z", "{q}");
    }
    for q in [
        "sinceSeconds=600".to_owned(),
        format!("sinceTime={}", ts(t0() - mins(10))),
    ] {
        let v = h.window_q(&q).await;
        // `now` rounded down to the minute.
        assert_eq!(v["queryEndTime"], "2026-03-02T12:00:00Z", "{q}");
    }
}

impl Harness {
    async fn window_q(&self, q: &str) -> Value {
        let (status, _, body) = self.get("/v2/siem/all", &format!("format=json&{q}")).await;
        assert_eq!(status, 200, "{q}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

#[tokio::test]
async fn default_format_is_syslog_text() {
    let h = Harness::default(t0()).await;
    let (a, b) = (t0() - mins(90), t0() - mins(60));
    let q = format!("interval={}/{}", ts(a), ts(b));
    let (status, headers, body) = h.get("/v2/siem/all", &q).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(body).unwrap();
    let json = h.window(a, b, "").await;
    assert_eq!(text.lines().count(), events_of(&json).len());
    assert!(text
        .lines()
        .all(|l| l.starts_with("<14>1 ") && l.contains("GUID=\"")));
}

#[tokio::test]
async fn end_is_inclusive_so_boundary_events_come_twice() {
    let now = t0();
    let h = Harness::default(now).await;
    let all = h
        .sim
        .expected_events(P, now - mins(24 * 60), now - mins(60));
    let on_minute = all
        .iter()
        .find(|e| e.time.timestamp_millis() % 60_000 == 0 && e.visible_at < now)
        .expect("an event on a whole minute");
    let m = on_minute.time;
    let left = events_of(
        &h.window(
            m - mins(1),
            m,
            "&threatStatus=active&threatStatus=cleared&threatStatus=falsePositive",
        )
        .await,
    );
    let right = events_of(
        &h.window(
            m,
            m + mins(1),
            "&threatStatus=active&threatStatus=cleared&threatStatus=falsePositive",
        )
        .await,
    );
    let want = canon(&on_minute.raw);
    assert!(left.contains(&want));
    assert!(right.contains(&want));
}

#[tokio::test]
async fn late_events_appear_only_after_they_become_visible() {
    let now = t0();
    let h = Harness::default(now).await;
    let all = h.sim.expected_events(P, now - mins(600), now - mins(60));
    let late = all
        .iter()
        .find(|e| {
            e.visible_at - e.time > mins(5) && !e.raw.windows(15).any(|w| w == b"\"falsePositive\"")
        })
        .expect("a late event");
    let (a, b) = (late.time - mins(1), late.time + mins(1));
    let want = canon(&late.raw);
    h.manual.set(late.visible_at - chrono::Duration::seconds(1));
    assert!(!events_of(&h.window(a, b, "").await).contains(&want));
    h.manual.advance(Duration::from_secs(1));
    assert!(events_of(&h.window(a, b, "").await).contains(&want));
}

/// A long tail: a share of the events is published between `max_visibility_delay` and two hours
/// late; every other event keeps the delay it has without the tail, and a tail event is served
/// only once it is visible.
#[tokio::test]
async fn a_long_tail_publishes_a_share_of_events_hours_late_and_leaves_the_rest_alone() {
    let now = t0();
    let plain = SimConfig::generated(1, 1200, 42);
    let mut tailed = plain.clone();
    tailed.tenants[0] = tailed.tenants[0]
        .clone()
        .long_tail(50, Duration::from_secs(2 * 3600));
    let (clock, _m) = Clock::manual(now);
    let without = Simulator::new(plain, clock.clone()).expected_events(P, now - mins(600), now);
    let h = Harness::new(tailed, now).await;
    let with = h.sim.expected_events(P, now - mins(600), now);
    assert_eq!(
        with.len(),
        without.len(),
        "the tail changes no event, only when it is seen"
    );
    let (mut tail, mut longest) = (0usize, chrono::Duration::zero());
    for (a, b) in with.iter().zip(&without) {
        assert_eq!((&a.raw, a.time), (&b.raw, b.time));
        if a.visible_at != b.visible_at {
            tail += 1;
            let delay = a.visible_at - a.time;
            assert!(delay > mins(25) && delay <= mins(120), "{delay}");
            longest = longest.max(delay);
        }
    }
    let share = tail as f64 / with.len() as f64;
    assert!(
        (0.03..0.07).contains(&share),
        "{tail} of {} in the tail",
        with.len()
    );
    assert!(
        longest > mins(90),
        "the tail reaches towards two hours: {longest}"
    );

    // A tail event is not served a minute before it is visible, and is served from then on.
    let late = with
        .iter()
        .find(|e| {
            e.visible_at - e.time > mins(60)
                && !e.raw.windows(15).any(|w| w == b"\"falsePositive\"")
        })
        .expect("an event over an hour late");
    let (a, b) = (late.time - mins(1), late.time + mins(1));
    let want = canon(&late.raw);
    h.manual.set(late.visible_at - mins(1));
    assert!(!events_of(&h.window(a, b, "").await).contains(&want));
    h.manual.set(late.visible_at);
    assert!(events_of(&h.window(a, b, "").await).contains(&want));
}

#[tokio::test]
async fn a_day_has_multi_recipient_reemissions_drift_and_escapes() {
    let (clock, _m) = Clock::manual(t0());
    let sim = Simulator::new(SimConfig::generated(1, 600, 3), clock);
    let day = sim.expected_events(P, t0() - mins(24 * 60), t0());
    let mut by_guid: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for e in &day {
        let v: Value = serde_json::from_slice(&e.raw).unwrap();
        by_guid
            .entry(v["GUID"].as_str().unwrap().to_owned())
            .or_default()
            .push(v);
    }
    // Multi-recipient: same GUID and messageTime, different recipient and id.
    assert!(by_guid.values().any(|vs| {
        vs.len() > 1
            && vs[0]["messageTime"] == vs[1]["messageTime"]
            && vs[0]["recipient"] != vs[1]["recipient"]
            && vs[0]["id"] != vs[1]["id"]
    }));
    // Re-emission: same GUID and recipient, different threat info.
    let reemitted = by_guid.values().any(|vs| {
        vs.iter().enumerate().any(|(i, a)| {
            vs[i + 1..].iter().any(|b| {
                a["recipient"] == b["recipient"]
                    && a["QID"] == b["QID"]
                    && a["threatsInfoMap"][0]["threatTime"] != b["threatsInfoMap"][0]["threatTime"]
            })
        })
    });
    assert!(reemitted);
    let text: String = day
        .iter()
        .map(|e| String::from_utf8_lossy(&e.raw).into_owned())
        .collect();
    for needle in [
        "\"campaignId\"",
        "\"campaignID\"",
        "\"threatUrl\"",
        "\"threatURL\"",
        "\"TOAD\"",
        "\"phish\"",
        "\"PHISH\"",
        "xTapExperimentalField",
        "\\\"",
        "\\\\",
        "\\t",
        "Überweisung",
        "📦",
        "\"falsePositive\"",
        "\"cleared\"",
        "\"completelyRewritten\":\"na\"",
    ] {
        assert!(text.contains(needle), "{needle}");
    }
    let kinds: BTreeSet<_> = day.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.len(), 4);
}

#[tokio::test]
async fn false_positives_only_when_asked_and_threat_type_filters() {
    let now = t0();
    let h = Harness::new(SimConfig::generated(1, 6000, 9), now).await;
    let (a, b) = (now - mins(120), now - mins(60));
    let default = h.window(a, b, "").await.to_string();
    assert!(!default.contains("\"threatStatus\":\"falsePositive\""));
    let fp = h
        .window(a, b, "&threatStatus=falsePositive")
        .await
        .to_string();
    assert!(fp.contains("\"threatStatus\":\"falsePositive\""));
    assert!(!fp.contains("\"threatStatus\":\"active\""));
    let att = h.window(a, b, "&threatType=attachment").await;
    assert!(att["clicksBlocked"].as_array().unwrap().is_empty());
    assert!(!att["messagesDelivered"].as_array().unwrap().is_empty());
    assert!(att.to_string().contains("\"threatType\":\"attachment\""));
    assert!(!att.to_string().contains("\"threatType\":\"url\""));
}

#[tokio::test]
async fn quota_gives_429_without_retry_after_and_recovers_after_24h() {
    let now = t0();
    let mut cfg = SimConfig::generated(1, 60, 1);
    cfg.tenants[0].daily_limit = 3;
    cfg.tenants[0].clicks_permitted_limit = 1;
    let h = Harness::new(cfg, now).await;
    let q = format!(
        "format=json&interval={}/{}",
        ts(now - mins(60)),
        ts(now - mins(50))
    );
    assert_eq!(h.get("/v2/siem/all", &q).await.0, 200);
    h.manual.advance(Duration::from_secs(3600));
    assert_eq!(h.get("/v2/siem/all", &q).await.0, 200);
    assert_eq!(h.get("/v2/siem/issues", &q).await.0, 200);
    let (status, headers, body) = h.get("/v2/siem/all", &q).await;
    assert_eq!(status, 429);
    assert!(headers.get("retry-after").is_none());
    assert!(!body.is_empty());
    // The separate clicks/permitted pool is untouched.
    assert_eq!(h.get("/v2/siem/clicks/permitted", &q).await.0, 200);
    assert_eq!(h.get("/v2/siem/clicks/permitted", &q).await.0, 429);
    // 24 h after the oldest request one slot frees (the 429s did not count).
    h.manual
        .set(now + chrono::Duration::hours(24) - chrono::Duration::milliseconds(1));
    let q2 = format!(
        "format=json&interval={}/{}",
        ts(now + mins(600)),
        ts(now + mins(610))
    );
    assert_eq!(h.get("/v2/siem/all", &q2).await.0, 429);
    h.manual.set(now + chrono::Duration::hours(24));
    assert_eq!(h.get("/v2/siem/all", &q2).await.0, 200);
    assert_eq!(h.get("/v2/siem/all", &q2).await.0, 429);
}

#[tokio::test]
async fn injected_faults_behave_as_described() {
    let now = t0();
    let h = Harness::new(SimConfig::generated(1, 6000, 5), now).await;
    let q = format!(
        "format=json&interval={}/{}",
        ts(now - mins(120)),
        ts(now - mins(60))
    );
    let (_, _, good) = h.get("/v2/siem/all", &q).await;
    h.sim.inject(
        P,
        [
            Fault::Status(503),
            Fault::NoContent,
            Fault::ResetBeforeHeaders,
            Fault::ResetMidBody,
            Fault::TruncatedBody,
            Fault::MalformedBody,
            Fault::SlowHeaders(Duration::from_secs(5)),
            Fault::StallMidBody(Duration::from_millis(300)),
        ],
    );
    let (s, _, body) = h.get("/v2/siem/all", &q).await;
    assert_eq!(s, 503);
    assert!(!body.is_empty());
    let (s, _, body) = h.get("/v2/siem/all", &q).await;
    assert_eq!(s, 204);
    assert!(body.is_empty());
    // Reset before headers: the request itself fails.
    let err = h
        .client
        .get(h.url("/v2/siem/all", &q))
        .basic_auth(P, Some(S))
        .send()
        .await;
    assert!(err.is_err());
    // Reset mid body: headers arrive, the body fails.
    let resp = h
        .client
        .get(h.url("/v2/siem/all", &q))
        .basic_auth(P, Some(S))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.bytes().await.is_err());
    // Truncated: the body ends cleanly but is not valid JSON, and is a prefix of the real one.
    let (s, _, body) = h.get("/v2/siem/all", &q).await;
    assert_eq!(s, 200);
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert!(good.starts_with(&body) && body.len() > 30);
    // Malformed: complete but invalid.
    let (s, _, body) = h.get("/v2/siem/all", &q).await;
    assert_eq!(s, 200);
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    // Slow headers trip the client's timeout.
    let slow = h
        .client
        .get(h.url("/v2/siem/all", &q))
        .basic_auth(P, Some(S))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(slow.unwrap_err().is_timeout());
    // Stall mid body: slow, but the full body arrives.
    let started = std::time::Instant::now();
    let (s, _, body) = h.get("/v2/siem/all", &q).await;
    assert_eq!(s, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(body, good);
    // The queue is empty again.
    assert_eq!(h.get("/v2/siem/all", &q).await.2, good);
    let faults: Vec<_> = h
        .sim
        .request_log(P)
        .iter()
        .map(|r| r.fault.is_some())
        .collect();
    assert_eq!(faults.iter().filter(|f| **f).count(), 8);
}

#[tokio::test]
async fn gzip_body_decodes_to_the_same_bytes() {
    let now = t0();
    let h = Harness::new(SimConfig::generated(1, 20_000, 5), now).await;
    let q = format!(
        "format=json&interval={}/{}",
        ts(now - mins(120)),
        ts(now - mins(60))
    );
    let (_, _, plain) = h.get("/v2/siem/all", &q).await;
    let resp = h
        .client
        .get(h.url("/v2/siem/all", &q))
        .basic_auth(P, Some(S))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    let gz = resp.bytes().await.unwrap();
    assert!(gz.len() < plain.len() / 2);
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, plain);
    assert!(plain.len() > 1_000_000);
}

#[tokio::test]
async fn expected_events_equal_union_of_back_to_back_windows() {
    let now = t0();
    let h = Harness::default(now).await;
    let (s, e) = (now - mins(300), now - mins(60));
    let expected: BTreeSet<String> = h
        .sim
        .expected_events(P, s, e)
        .iter()
        .map(|ev| canon(&ev.raw))
        .collect();
    let mut got = BTreeSet::new();
    let all_statuses = "&threatStatus=active&threatStatus=cleared&threatStatus=falsePositive";
    let mut a = s;
    while a < e {
        let b = a + mins(60);
        let v = h.window(a, b, all_statuses).await;
        for ev in events_of(&v) {
            let t = event_time(&ev);
            if t < e {
                got.insert(ev);
            }
        }
        a = b;
    }
    assert!(expected.len() > 1000);
    assert_eq!(got, expected);
}

/// The API time of a canonical event: the later of its own time and its threat time.
fn event_time(ev: &str) -> DateTime<Utc> {
    let v: Value = serde_json::from_str(ev).unwrap();
    let own = v.get("messageTime").or_else(|| v.get("clickTime")).unwrap();
    let threat = v
        .get("threatTime")
        .or_else(|| v["threatsInfoMap"][0].get("threatTime"))
        .unwrap();
    let p = |x: &Value| x.as_str().unwrap().parse::<DateTime<Utc>>().unwrap();
    p(own).max(p(threat))
}

#[tokio::test]
async fn empty_window_is_200_with_four_empty_arrays() {
    let now = t0();
    let h = Harness::new(SimConfig::generated(1, 0, 1), now).await;
    let q = format!(
        "format=json&interval={}/{}",
        ts(now - mins(60)),
        ts(now - mins(30))
    );
    let (status, headers, body) = h.get("/v2/siem/all", &q).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"queryEndTime":"2026-03-02T11:30:00Z","messagesBlocked":[],"messagesDelivered":[],"clicksBlocked":[],"clicksPermitted":[]}"#
    );
}

/// The threat and campaign ids of a window's events, as the events carry them.
fn intel_ids(v: &Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut threats, mut campaigns) = (BTreeSet::new(), BTreeSet::new());
    for ev in events_of(v) {
        let ev: Value = serde_json::from_str(&ev).unwrap();
        let infos = ev["threatsInfoMap"].as_array().cloned();
        for t in infos.unwrap_or_else(|| vec![ev.clone()]) {
            threats.insert(t["threatID"].as_str().unwrap().to_owned());
            for k in ["campaignID", "campaignId"] {
                if let Some(c) = t[k].as_str() {
                    campaigns.insert(c.to_owned());
                }
            }
        }
    }
    (threats, campaigns)
}

#[tokio::test]
async fn threat_campaign_and_forensics_answer_for_the_ids_events_carry() {
    let now = t0();
    let h = Harness::default(now).await;
    let v = h.window(now - mins(120), now - mins(60), "").await;
    let (threats, campaigns) = intel_ids(&v);
    let events = events_of(&v).len();
    assert!(!campaigns.is_empty());
    assert!(
        threats.len() * 2 < events,
        "{} threats over {events} events: events share threats",
        threats.len()
    );
    for id in &threats {
        let (status, headers, body) = h.get(&format!("/v2/threat/summary/{id}"), "").await;
        assert_eq!(status, 200, "{id}");
        assert_eq!(headers[reqwest::header::CONTENT_TYPE], "application/json");
        assert_eq!(Some(body.clone()), h.sim.threat_summary(P, id));
        let s: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(s["id"], id.as_str());
        let (status, _, body) = h.get("/v2/forensics", &format!("threatId={id}")).await;
        assert_eq!(status, 200);
        let f: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(f["reports"][0]["id"], id.as_str());
    }
    for id in &campaigns {
        let (status, _, body) = h.get(&format!("/v2/campaign/{id}"), "").await;
        assert_eq!(status, 200, "{id}");
        assert_eq!(Some(body.clone()), h.sim.campaign(P, id));
        let c: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(c["id"], id.as_str());
        assert!(!c["campaignMembers"].as_array().unwrap().is_empty());
        let (status, _, _) = h.get("/v2/forensics", &format!("campaignId={id}")).await;
        assert_eq!(status, 200);
    }
    // Deterministic from the seed: another simulator with the same seed answers the same.
    let (clock, _m) = Clock::manual(now);
    let twin = Simulator::new(SimConfig::generated(2, 600, 42), clock);
    let id = threats.iter().next().unwrap();
    assert_eq!(twin.threat_summary(P, id), h.sim.threat_summary(P, id));
    // Unknown ids, another tenant's ids, bad auth, bad forensics queries.
    assert_eq!(h.get("/v2/threat/summary/0123abcd", "").await.0, 404);
    assert_eq!(h.get("/v2/campaign/ids", "interval=x").await.0, 404);
    assert_eq!(
        h.get_as(
            "tenant-0002",
            "secret-0002",
            &format!("/v2/threat/summary/{id}"),
            ""
        )
        .await
        .0,
        404
    );
    assert_eq!(
        h.get_as(P, "wrong", &format!("/v2/threat/summary/{id}"), "")
            .await
            .0,
        401
    );
    assert_eq!(h.get("/v2/forensics", "").await.0, 400);
    assert_eq!(h.get("/v2/forensics", "threatId=0123abcd").await.0, 404);
}

#[tokio::test]
async fn intel_faults_fail_only_the_intel_endpoints() {
    let now = t0();
    let h = Harness::default(now).await;
    let v = h.window(now - mins(120), now - mins(60), "").await;
    let (threats, _) = intel_ids(&v);
    let path = format!("/v2/threat/summary/{}", threats.iter().next().unwrap());
    h.sim
        .inject_intel(P, [Fault::Status(503), Fault::TruncatedBody]);
    assert_eq!(h.get(&path, "").await.0, 503);
    let (status, _, body) = h.get(&path, "").await;
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<Value>(&body).is_err());
    assert_eq!(h.get(&path, "").await.0, 200);
    h.sim.set_intel_fault(P, Some(Fault::Status(500)));
    for _ in 0..3 {
        assert_eq!(h.get(&path, "").await.0, 500);
    }
    // The SIEM endpoint is not affected.
    h.window(now - mins(120), now - mins(60), "").await;
    h.sim.set_intel_fault(P, None);
    assert_eq!(h.get(&path, "").await.0, 200);
    let faults: Vec<Option<Fault>> = h
        .sim
        .request_log(P)
        .into_iter()
        .filter(|r| r.path == path)
        .map(|r| r.fault)
        .collect();
    assert_eq!(faults.len(), 7);
    assert_eq!(faults[0], Some(Fault::Status(503)));
    assert_eq!(faults[3], Some(Fault::Status(500)));
    assert_eq!(faults[6], None);
}
