//! People snapshots against the simulator's People endpoints: every user once per snapshot
//! across pages, no second snapshot after a restart inside the period, a snapshot cut by a
//! failing page completed without repeating users, the 50-a-day budget waited for without
//! a 429 while the tenant's SIEM polling goes on, and a 429 (the quota spent by another tool on
//! the same credential) waited out without hammering.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::rig::{Rig, RigBuilder};
use support::*;
use tapfwd::simulate::Fault;

const P: &str = "p-acme";

const POLL: &str = "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"";

/// One tenant with People; `people` is the lines of its `[tenants.acme.people]` table.
fn with_people(people: &str) -> RigBuilder {
    Rig::builder()
        .tenant("acme", P, "s-acme", 60)
        .toml(&format!("[tenants.acme.people]\n{people}\n"))
        .poll(POLL)
}

/// The People lines of the file sink: (eventType, snapshot, user) per line, the user's bytes
/// checked to sit in the envelope as sent.
fn people_lines(path: &Path) -> Vec<(String, String, Value)> {
    let data = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        let kind = v["eventType"].as_str().unwrap().to_string();
        if kind != "vap" && kind != "topClickers" {
            continue;
        }
        let snapshot = v["snapshot"].as_str().expect("snapshot beside the user");
        let prefix = format!(
            "{{\"tenant\":\"acme\",\"eventType\":\"{kind}\",\"snapshot\":\"{snapshot}\",\"event\":"
        );
        assert!(line.starts_with(prefix.as_bytes()));
        out.push((kind, snapshot.to_string(), v["event"].clone()));
    }
    out
}

fn people_requests(sim: &Sim, path: &str) -> Vec<(u16, String)> {
    sim.sim
        .request_log(P)
        .into_iter()
        .filter(|r| r.path == path)
        .map(|r| (r.status, r.query))
        .collect()
}

/// Users per (kind, email), to see that each is there exactly `n` times.
fn counts(lines: &[(String, String, Value)]) -> BTreeMap<(String, String), usize> {
    let mut out = BTreeMap::new();
    for (kind, _, user) in lines {
        let email = user["identity"]["emails"][0].as_str().unwrap().to_string();
        *out.entry((kind.clone(), email)).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_user_once_per_snapshot_across_pages_and_no_second_snapshot_after_a_restart() {
    let (rig, running) = with_people("window_days = 30").seed(31).start().await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    running.wait_idle(3, manual.now()).await;
    let board = running.board.snapshot();
    running.stop().await;

    let lines = people_lines(&scratch.path("events.ndjson"));
    let c = counts(&lines);
    assert_eq!(c.keys().filter(|(k, _)| k == "vap").count(), 120);
    assert_eq!(c.keys().filter(|(k, _)| k == "topClickers").count(), 450);
    assert!(c.values().all(|n| *n == 1), "each user once");
    // Top clickers came in three pages of 200; VAP in one; nothing was refused.
    let tc = people_requests(&sim, "/v2/people/top-clickers");
    assert_eq!(tc.len(), 3, "{tc:?}");
    assert!(tc
        .iter()
        .all(|(s, q)| *s == 200 && q.contains("window=30") && q.contains("size=200")));
    assert!(tc[2].1.contains("page=3"));
    assert_eq!(people_requests(&sim, "/v2/people/vap").len(), 1);
    // The snapshot is the response's interval; status shows the budget.
    assert!(lines
        .iter()
        .all(|(_, s, _)| s.ends_with('Z') && s.contains('/')));
    let vap = board
        .iter()
        .find(|t| t.tenant == "acme:people.vap")
        .unwrap();
    assert_eq!((vap.requests_24h, vap.requests_limit), (1, 50), "{vap:?}");
    assert_eq!(vap.state, "ok");

    // A restart inside the same period asks nothing and delivers nothing.
    let running = rig.start().await;
    running.wait_idle(3, manual.now()).await;
    running.stop().await;
    assert_eq!(people_requests(&sim, "/v2/people/top-clickers").len(), 3);
    assert_eq!(people_lines(&scratch.path("events.ndjson")).len(), 570);

    // The next period takes the next snapshot, once.
    let running = rig.start().await;
    step_clock(&running, &manual, 3, Duration::from_secs(86_400), 1).await;
    running.stop().await;
    let c = counts(&people_lines(&scratch.path("events.ndjson")));
    assert!(c.values().all(|n| *n == 2), "each user once per snapshot");
    assert_eq!(people_requests(&sim, "/v2/people/top-clickers").len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_cut_by_a_failing_page_is_completed_without_repeating_users() {
    let rig = with_people("feeds = [\"top_clickers\"]")
        .seed(32)
        .build()
        .await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    sim.sim.inject_people(P, [(2, Fault::Status(500))]);
    let running = rig.start().await;
    running
        .wait_for("the snapshot to stop at page 2", |s| {
            s.iter()
                .any(|t| t.tenant == "acme:people.top_clickers" && t.last_error.is_some())
        })
        .await;
    // Page 1's users are delivered; the rest wait for the retry.
    assert_eq!(people_lines(&scratch.path("events.ndjson")).len(), 200);
    for _ in 0..20 {
        manual.advance(Duration::from_secs(60));
        running.wait_idle(2, manual.now()).await;
        if people_lines(&scratch.path("events.ndjson")).len() >= 450 {
            break;
        }
    }
    running.stop().await;
    let c = counts(&people_lines(&scratch.path("events.ndjson")));
    assert_eq!(c.len(), 450);
    assert!(c.values().all(|n| *n == 1), "no user twice");
    let pages: Vec<_> = people_requests(&sim, "/v2/people/top-clickers");
    assert_eq!(
        pages.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [200, 500, 200, 200, 200],
        "page 1, page 2 failing, then the whole snapshot again: {pages:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_budget_is_waited_for_without_a_429_and_siem_polling_goes_on() {
    // Ten pages a snapshot, a snapshot an hour: the 50 requests a day last five snapshots.
    let mut t = tenant(P, "s-acme", 60);
    t.top_clickers = 1900;
    let (rig, running) = Rig::builder()
        .tenant_from("acme", t)
        .toml("[tenants.acme.people]\nfeeds = [\"top_clickers\"]\nevery = \"1h\"\n")
        .poll(POLL)
        .seed(33)
        .start()
        .await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    running.wait_idle(2, manual.now()).await;
    step_clock(&running, &manual, 2, Duration::from_secs(3600), 7).await;
    let st = running.board.get("acme:people.top_clickers").unwrap();
    let siem = running.board.get("acme").unwrap();
    running.stop().await;

    let pages = people_requests(&sim, "/v2/people/top-clickers");
    assert_eq!(pages.len(), 50, "exactly the budget");
    assert!(pages.iter().all(|(s, _)| *s == 200), "never a 429");
    assert_eq!(st.state, "throttled", "{st:?}");
    assert_eq!(st.requests_24h, 50);
    let c = counts(&people_lines(&scratch.path("events.ndjson")));
    assert_eq!(c.len(), 1900);
    assert!(c.values().all(|n| *n == 5), "five whole snapshots");
    // The SIEM source kept polling through it: a window at every step, caught up at the end.
    assert_eq!(siem.state, "ok", "{siem:?}");
    assert!(siem.sinks[0].backlog_seconds < 3600, "{siem:?}");
    let siem_requests = sim
        .sim
        .request_log(P)
        .iter()
        .filter(|r| r.path == "/v2/siem/all")
        .count();
    assert!(siem_requests > 7, "{siem_requests}");
    assert!(sim
        .sim
        .request_log(P)
        .iter()
        .filter(|r| r.path == "/v2/siem/all")
        .all(|r| r.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_on_one_source_do_not_stop_the_others() {
    let (rig, running) = with_people("")
        .sim_tenant(tenant("p-partner", "the-real-secret", 60).essentials("1000", &["4711"]))
        .config_tenant("partner", "p-partner", "a-wrong-secret")
        .tenant_toml("partner", "product = \"essentials\"\ncustomer_data = true")
        .seed(34)
        .start()
        .await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    running
        .wait_for("acme's three sources ok and the partner failed", |s| {
            let state = |id: &str| s.iter().find(|t| t.tenant == id).map(|t| t.state);
            ["acme", "acme:people.vap", "acme:people.top_clickers"]
                .iter()
                .all(|id| state(id).is_some_and(|st| st == "ok"))
                && state("partner").is_some_and(|st| st == "failed")
        })
        .await;
    manual.advance(Duration::from_secs(600));
    running.wait_idle(4, manual.now()).await;
    let acme = running.board.get("acme").unwrap();
    running.stop().await;
    assert_eq!(acme.state, "ok");
    assert_eq!(people_lines(&scratch.path("events.ndjson")).len(), 570);
    assert!(sim
        .sim
        .request_log("p-partner")
        .iter()
        .all(|r| r.status == 401));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_that_was_down_gets_the_snapshot_once_when_it_comes_back() {
    let fake = support::fakes::Fake::default();
    for _ in 0..10_000 {
        fake.push_fault(support::fakes::Fault::new(503, "maintenance"));
    }
    let addr = support::fakes::plain(&fake).await;
    let (rig, running) = with_people("sinks = [\"siem\"]")
        .toml(&format!(
            "[sinks.siem]\ntype = \"http\"\nurl = \"http://{addr}/ingest\"\nretry = {{ initial_backoff = \"10ms\", max_backoff = \"20ms\", max_time = \"100ms\" }}\n"
        ))
        .seed(35)
        .start()
        .await;
    let manual = rig.manual();
    running
        .wait_for("the People sink to fail", |s| {
            s.iter()
                .any(|t| t.tenant == "acme:people.vap" && t.sinks.iter().any(|k| k.failing))
        })
        .await;
    fake.with(|s| s.faults.clear());
    for _ in 0..30 {
        manual.advance(Duration::from_secs(60));
        running.wait_idle(3, manual.now()).await;
        let snap = running.board.snapshot();
        if snap
            .iter()
            .filter(|t| t.tenant.contains(":people."))
            .all(|t| t.state == "ok")
        {
            break;
        }
    }
    running.stop().await;
    let mut users: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in fake.events() {
        let kind = e["eventType"].as_str().unwrap().to_string();
        let email = e["event"]["identity"]["emails"][0]
            .as_str()
            .unwrap()
            .to_string();
        *users.entry((kind, email)).or_default() += 1;
    }
    assert_eq!(users.len(), 570, "both lists, every user");
    assert!(users.values().all(|n| *n == 1), "once each");
}

#[test]
fn people_config_errors_name_the_key() {
    let base = "state_dir = \"s\"\n[sinks.archive]\ntype = \"file\"\npath = \"e\"\n[tenants.acme]\nprincipal = \"x\"\nsecret = \"y\"\nsinks = [\"archive\"]\n[tenants.acme.people]\n";
    for (people, key) in [
        ("window_days = 7", "tenants.acme.people.window_days"),
        ("every = \"10m\"", "tenants.acme.people.every"),
        ("feeds = []", "tenants.acme.people.feeds"),
        ("feeds = [\"vips\"]", "feeds"),
        ("sinks = [\"nowhere\"]", "tenants.acme.people.sinks"),
    ] {
        let text = format!("{base}{people}\n");
        let e = tapfwd::Config::from_toml_with_env(&text, std::iter::empty())
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_from_a_quota_spent_elsewhere_waits_without_hammering_and_siem_goes_on() {
    let rig = with_people("feeds = [\"top_clickers\"]")
        .seed(36)
        .build()
        .await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    // Another tool on the same credential spent the quota: page 1 answers 429.
    sim.sim.inject_people(P, [(1, Fault::Status(429))]);
    let running = rig.start().await;
    running.wait_idle(2, manual.now()).await;
    // Six hours of 5-minute polls: the SIEM source polls on, the People source asks nothing more.
    step_clock(&running, &manual, 2, Duration::from_secs(300), 72).await;
    let st = running.board.get("acme:people.top_clickers").unwrap();
    let siem = running.board.get("acme").unwrap();
    assert_eq!(
        people_requests(&sim, "/v2/people/top-clickers")
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
        [429],
        "one refused request, then a wait"
    );
    assert_eq!(st.state, "throttled", "{st:?}");
    assert!(
        st.last_error.as_deref().unwrap_or("").contains("429"),
        "{st:?}"
    );
    assert_eq!(siem.state, "ok", "{siem:?}");
    assert!(siem.sinks[0].backlog_seconds < 600, "{siem:?}");
    assert!(people_lines(&scratch.path("events.ndjson")).is_empty());

    // Once the refused request has aged out, a snapshot is taken whole, each user once.
    step_clock(&running, &manual, 2, Duration::from_secs(3600), 19).await;
    running.stop().await;
    let c = counts(&people_lines(&scratch.path("events.ndjson")));
    assert_eq!(c.len(), 450);
    assert!(c.values().all(|n| *n == 1), "each user once");
    let statuses: Vec<u16> = people_requests(&sim, "/v2/people/top-clickers")
        .iter()
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(statuses, [429, 200, 200, 200], "{statuses:?}");
}
