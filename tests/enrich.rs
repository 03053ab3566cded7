//! Threat enrichment against the simulator's threat and campaign endpoints: summaries and
//! campaigns travel beside the events in the file sink's envelope, one request per id; with the
//! threat API failing or slow, every event still arrives exactly once, on time, without them,
//! and the misses are counted.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::rig::{Rig, RigBuilder};
use support::*;
use tapfwd::simulate::Fault;

const P: &str = "p-acme";
const POLL: &str =
    "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"3h\"\nbatch_events = 100";

/// One tenant enriching its events with threats and campaigns; `enrichment` is the lines of the
/// `[enrichment]` table.
fn enriching(enrichment: &str) -> RigBuilder {
    Rig::builder()
        .tenant("acme", P, "s-acme", 600)
        .tenant_toml("acme", "enrich = [\"threats\", \"campaigns\"]")
        .toml(&format!("[enrichment]\n{enrichment}\n"))
        .seed(5)
        .poll(POLL)
}

/// One line of the file sink: the event's raw bytes (checked to sit in the envelope untouched)
/// and what is beside it.
struct Enriched {
    raw: Vec<u8>,
    threats: Option<Value>,
    campaigns: Option<Value>,
}

/// Reads the file sink, matching each line's event to its ground-truth bytes.
fn read_enriched(path: &Path, expected: &[(String, Vec<u8>)]) -> Vec<Enriched> {
    let by_value: HashMap<String, &Vec<u8>> = expected
        .iter()
        .map(|(_, raw)| {
            (
                serde_json::from_slice::<Value>(raw).unwrap().to_string(),
                raw,
            )
        })
        .collect();
    let data = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        let raw = by_value
            .get(&v["event"].to_string())
            .unwrap_or_else(|| panic!("unexpected event {}", v["event"]));
        let prefix = format!(
            "{{\"tenant\":\"acme\",\"eventType\":\"{}\",\"event\":",
            v["eventType"].as_str().unwrap()
        );
        let mut head = prefix.into_bytes();
        head.extend_from_slice(raw);
        assert!(line.starts_with(&head), "the event's bytes are untouched");
        let rest = &line[head.len()..];
        assert!(
            rest == b"}" || rest.starts_with(b",\""),
            "{}",
            String::from_utf8_lossy(rest)
        );
        out.push(Enriched {
            raw: raw.to_vec(),
            threats: v.get("threats").cloned(),
            campaigns: v.get("campaigns").cloned(),
        });
    }
    out
}

/// The threat and campaign ids an event carries.
fn ids(raw: &[u8]) -> (BTreeSet<String>, BTreeSet<String>) {
    let v: Value = serde_json::from_slice(raw).unwrap();
    let infos = v["threatsInfoMap"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| vec![v.clone()]);
    let (mut t, mut c) = (BTreeSet::new(), BTreeSet::new());
    for i in infos {
        t.insert(i["threatID"].as_str().unwrap().to_owned());
        if let Some(id) = i["campaignID"].as_str().or(i["campaignId"].as_str()) {
            c.insert(id.to_owned());
        }
    }
    (t, c)
}

fn keys(v: &Option<Value>) -> BTreeSet<String> {
    v.as_ref()
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every expected event exactly once (compared by raw bytes; kinds are checked by the envelope).
fn assert_once(lines: &[Enriched], expected: &[(String, Vec<u8>)]) {
    let mut got: Vec<&[u8]> = lines.iter().map(|l| l.raw.as_slice()).collect();
    let mut want: Vec<&[u8]> = expected.iter().map(|(_, r)| r.as_slice()).collect();
    got.sort();
    want.sort();
    assert_eq!(got.len(), want.len(), "events delivered vs expected");
    assert!(got == want, "every expected event exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_and_campaigns_travel_beside_the_events_one_request_per_id() {
    let (rig, running) = enriching("").start().await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    running.wait_idle(1, manual.now()).await;
    let status = running.board.snapshot();
    running.stop().await;

    let log = sim.sim.request_log(P);
    let windows: Vec<_> = log.iter().filter(|r| r.path == "/v2/siem/all").collect();
    let (start, _) = parse_interval(&windows[0].query).unwrap();
    let (_, end) = parse_interval(&windows.last().unwrap().query).unwrap();
    let expected = expected(&sim.sim, P, start, end);
    let lines = read_enriched(&scratch.path("events.ndjson"), &expected);
    assert_once(&lines, &expected);

    let (mut all_threats, mut all_campaigns) = (BTreeSet::new(), BTreeSet::new());
    for l in &lines {
        let (threats, campaigns) = ids(&l.raw);
        assert_eq!(
            keys(&l.threats),
            threats,
            "every threat of the event is beside it"
        );
        assert_eq!(keys(&l.campaigns), campaigns);
        for id in &threats {
            let want: Value =
                serde_json::from_slice(&sim.sim.threat_summary(P, id).unwrap()).unwrap();
            assert_eq!(l.threats.as_ref().unwrap()[id], want);
        }
        for id in &campaigns {
            let want: Value = serde_json::from_slice(&sim.sim.campaign(P, id).unwrap()).unwrap();
            assert_eq!(l.campaigns.as_ref().unwrap()[id], want);
        }
        all_threats.extend(threats);
        all_campaigns.extend(campaigns);
    }
    // One request per distinct id, however many events share it.
    let threat_requests = log
        .iter()
        .filter(|r| r.path.starts_with("/v2/threat/"))
        .count();
    let campaign_requests = log
        .iter()
        .filter(|r| r.path.starts_with("/v2/campaign/"))
        .count();
    assert_eq!(threat_requests, all_threats.len());
    assert_eq!(campaign_requests, all_campaigns.len());
    assert!(all_threats.len() * 2 < lines.len(), "events share threats");
    let acme = status.iter().find(|s| s.tenant == "acme").unwrap();
    assert_eq!(acme.events_enriched, lines.len() as u64);
    assert_eq!(acme.enrichment_misses, 0);

    // A restart asks nothing again: the cache is in the store.
    let before = sim.sim.request_log(P).len();
    let running = rig.start().await;
    step_clock(&running, &manual, 1, Duration::from_secs(3600), 1).await;
    running.stop().await;
    let after = sim.sim.request_log(P);
    let new_intel: Vec<_> = after[before..]
        .iter()
        .filter(|r| !r.path.starts_with("/v2/siem"))
        .map(|r| r.path.clone())
        .collect();
    let new_ids: BTreeSet<String> = new_intel
        .iter()
        .map(|p| p.rsplit('/').next().unwrap().to_owned())
        .collect();
    assert_eq!(new_ids.len(), new_intel.len(), "still one request per id");
    assert!(
        new_ids
            .iter()
            .all(|id| !all_threats.contains(id) && !all_campaigns.contains(id)),
        "ids cached before the restart are not asked again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_threat_api_delays_and_loses_nothing_and_the_misses_are_counted() {
    let rig = enriching("").build().await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    sim.sim.set_intel_fault(P, Some(Fault::Status(500)));
    let app = rig.app().await;
    let metrics = app.metrics();
    let running = Running::run(app);
    running.wait_idle(1, manual.now()).await;
    let status = running.board.snapshot();
    running.stop().await;

    let log = sim.sim.request_log(P);
    let windows: Vec<_> = log.iter().filter(|r| r.path == "/v2/siem/all").collect();
    assert!(windows.iter().all(|r| r.status == 200));
    let (start, _) = parse_interval(&windows[0].query).unwrap();
    let (_, end) = parse_interval(&windows.last().unwrap().query).unwrap();
    let expected = expected(&sim.sim, P, start, end);
    let lines = read_enriched(&scratch.path("events.ndjson"), &expected);
    assert_once(&lines, &expected);
    assert!(lines
        .iter()
        .all(|l| l.threats.is_none() && l.campaigns.is_none()));
    // Each id was asked once and not again within retry_after.
    let intel: Vec<_> = log
        .iter()
        .filter(|r| !r.path.starts_with("/v2/siem"))
        .collect();
    let distinct: BTreeSet<_> = intel.iter().map(|r| r.path.clone()).collect();
    assert_eq!(intel.len(), distinct.len());
    assert!(intel.iter().all(|r| r.status == 500));
    let acme = status.iter().find(|s| s.tenant == "acme").unwrap();
    assert_eq!(acme.events_enriched, 0);
    assert!(acme.enrichment_misses >= lines.len() as u64, "{acme:?}");
    let text = metrics.render();
    assert!(
        text.contains("tapfwd_enrichment_misses_total{tenant=\"acme\",kind=\"threats\"}"),
        "{text}"
    );
    assert!(
        text.contains(
            "tapfwd_enrichment_lookups_total{tenant=\"acme\",kind=\"threats\",status=\"server_error\"}"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_threat_api_costs_at_most_the_wait() {
    let rig = enriching("wait = \"300ms\"\ntimeout = \"20s\"")
        .build()
        .await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    sim.sim
        .set_intel_fault(P, Some(Fault::SlowHeaders(Duration::from_secs(30))));
    let started = Instant::now();
    let running = rig.start().await;
    running.wait_idle(1, manual.now()).await;
    let took = started.elapsed();
    let status = running.board.snapshot();
    running.stop().await;
    let windows = sim
        .sim
        .request_log(P)
        .iter()
        .filter(|r| r.path == "/v2/siem/all")
        .count();
    // Every lookup hangs for 30 s; each batch waits at most 300 ms after a lookup started, and
    // no lookup is waited for twice past that.
    assert!(
        took < Duration::from_secs(15),
        "catching up {windows} windows took {took:?}"
    );
    let log = sim.sim.request_log(P);
    let ws: Vec<_> = log.iter().filter(|r| r.path == "/v2/siem/all").collect();
    let (start, _) = parse_interval(&ws[0].query).unwrap();
    let (_, end) = parse_interval(&ws.last().unwrap().query).unwrap();
    let expected = expected(&sim.sim, P, start, end);
    let lines = read_enriched(&scratch.path("events.ndjson"), &expected);
    assert_once(&lines, &expected);
    let acme = status.iter().find(|s| s.tenant == "acme").unwrap();
    assert!(acme.enrichment_misses > 0);
}
