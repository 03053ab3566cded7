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
        [200, 500, 200, 200],
        "page 1, page 2 failing, then on from page 2: {pages:?}"
    );
    assert!(pages[2].1.contains("page=2"), "{pages:?}");
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

/// The status of source `id` as `/status` serialises it.
fn status_json(running: &support::Running, id: &str) -> Value {
    let st = running.board.get(id).expect("the source in status");
    serde_json::to_value(&st).unwrap()
}

/// The value of the metric line that starts with `series` (name and labels).
fn metric(app_metrics: &str, series: &str) -> Option<f64> {
    app_metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

const TC: &str = "acme:people.top_clickers";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_never_ends_is_cut_at_its_total_and_reported_partial() {
    // Every page comes back full while the total says 450 (three pages of 200, the third short).
    let mut t = tenant(P, "s-acme", 60);
    t.people.endless = true;
    let rig = Rig::builder()
        .tenant_from("acme", t)
        .toml("[tenants.acme.people]\nfeeds = [\"top_clickers\"]\n")
        .poll(POLL)
        .seed(37)
        .build()
        .await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    let app = rig.app().await;
    let metrics = app.metrics();
    let running = support::Running::run(app);
    running.wait_idle(2, manual.now()).await;
    // An hour on, inside the same period: nothing more is asked.
    step_clock(&running, &manual, 2, Duration::from_secs(600), 6).await;
    let st = status_json(&running, TC);
    let text = metrics.render();
    running.stop().await;

    // The page the total makes the last, one more for a list that grew, then the cut: not the
    // whole day's 50 requests.
    let pages = people_requests(&sim, "/v2/people/top-clickers");
    assert_eq!(pages.len(), 4, "{pages:?}");
    assert_eq!(st["state"], "partial", "{st:#}");
    let snap = &st["sinks"][0]["snapshot"];
    assert_eq!(snap["result"], "partial", "{st:#}");
    assert_eq!(
        (snap["users"].as_u64(), snap["expected"].as_u64()),
        (Some(800), Some(450))
    );
    assert!(
        snap["reason"]
            .as_str()
            .unwrap_or("")
            .contains("did not end within 4 pages"),
        "{st:#}"
    );
    assert!(
        st["last_error"].as_str().unwrap_or("").contains("450"),
        "{st:#}"
    );
    assert_eq!(
        metric(
            &text,
            "tapfwd_people_snapshots_total{tenant=\"acme\",feed=\"top_clickers\",result=\"partial\"}"
        ),
        Some(1.0),
        "{text}"
    );
    // What the pages held is delivered, each user once.
    let c = counts(&people_lines(&scratch.path("events.ndjson")));
    assert_eq!(c.len(), 800);
    assert!(c.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totals_that_disagree_with_the_pages_make_the_snapshot_partial_never_ok() {
    // Both lists state a total of 300: VAP's 120 users end short of it, the 450 top clickers
    // run past it.
    let mut t = tenant(P, "s-acme", 60);
    t.people.stated_total = Some(300);
    let rig = Rig::builder()
        .tenant_from("acme", t)
        .toml("[tenants.acme.people]\n")
        .poll(POLL)
        .seed(38)
        .build()
        .await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    let app = rig.app().await;
    let metrics = app.metrics();
    let running = support::Running::run(app);
    running.wait_idle(3, manual.now()).await;
    step_clock(&running, &manual, 3, Duration::from_secs(600), 3).await;
    let vap = status_json(&running, "acme:people.vap");
    let tc = status_json(&running, TC);
    let text = metrics.render();
    running.stop().await;

    for (st, users) in [(&vap, 120), (&tc, 450)] {
        assert_eq!(st["state"], "partial", "{st:#}");
        let snap = &st["sinks"][0]["snapshot"];
        assert_eq!(snap["result"], "partial", "{st:#}");
        assert_eq!(
            (snap["users"].as_u64(), snap["expected"].as_u64()),
            (Some(users), Some(300))
        );
    }
    assert!(vap["last_error"]
        .as_str()
        .unwrap_or("")
        .contains("short of the API's total of 300"));
    assert!(tc["last_error"]
        .as_str()
        .unwrap_or("")
        .contains("more than the API's total of 300"));
    for feed in ["vap", "top_clickers"] {
        let series = format!(
            "tapfwd_people_snapshots_total{{tenant=\"acme\",feed=\"{feed}\",result=\"partial\"}}"
        );
        assert_eq!(metric(&text, &series), Some(1.0), "{text}");
    }
    // The lists are delivered as the pages had them, once, and not asked for again.
    let c = counts(&people_lines(&scratch.path("events.ndjson")));
    assert_eq!(c.len(), 570);
    assert!(c.values().all(|n| *n == 1));
    assert_eq!(people_requests(&sim, "/v2/people/top-clickers").len(), 3);
    assert_eq!(people_requests(&sim, "/v2/people/vap").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_that_never_ends_spends_no_more_than_the_budget_and_its_snapshot_stays_partial() {
    // Full pages forever and a total that says so: the budget is the bound.
    let mut t = tenant(P, "s-acme", 60);
    t.people.endless = true;
    t.people.stated_total = Some(1_000_000);
    let rig = Rig::builder()
        .tenant_from("acme", t)
        .toml("[tenants.acme.people]\nfeeds = [\"top_clickers\"]\n")
        .poll(POLL)
        .seed(39)
        .build()
        .await;
    let (sim, manual) = (rig.sim.clone(), rig.manual());
    let app = rig.app().await;
    let metrics = app.metrics();
    let running = support::Running::run(app);
    running.wait_idle(2, manual.now()).await;
    let during = status_json(&running, TC);
    // Into the next period (midnight UTC is 12 h after t0): the unfinished snapshot is partial.
    step_clock(&running, &manual, 2, Duration::from_secs(3600), 13).await;
    let after = status_json(&running, TC);
    let text = metrics.render();
    running.stop().await;

    let pages = people_requests(&sim, "/v2/people/top-clickers");
    assert_eq!(pages.len(), 50, "the budget, never more");
    assert!(pages.iter().all(|(s, _)| *s == 200), "never a 429");
    assert_eq!(during["state"], "throttled", "{during:#}");
    let snap = &during["sinks"][0]["snapshot"];
    assert_eq!(snap["result"], "partial", "{during:#}");
    assert_eq!(
        (snap["users"].as_u64(), snap["resume_page"].as_u64()),
        (Some(10_000), Some(51))
    );
    assert_eq!(
        metric(
            &text,
            "tapfwd_people_snapshots_total{tenant=\"acme\",feed=\"top_clickers\",result=\"partial\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_ne!(after["state"], "ok", "{after:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_mid_snapshot_is_finished_from_its_page_within_the_period() {
    let rig = with_people("feeds = [\"top_clickers\"]")
        .seed(40)
        .build()
        .await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    // Page 2 of the first snapshot answers 429 (the quota spent elsewhere for a while).
    sim.sim.inject_people(P, [(2, Fault::Status(429))]);
    let app = rig.app().await;
    let metrics = app.metrics();
    let running = support::Running::run(app);
    running.wait_idle(2, manual.now()).await;
    let st = status_json(&running, TC);
    assert_eq!(st["state"], "throttled", "{st:#}");
    assert_eq!(st["requests_24h"], 2, "{st:#}");
    // It asks again in an hour, not in the day its first request takes to age out.
    let next = chrono::DateTime::parse_from_rfc3339(st["next_poll_at"].as_str().unwrap()).unwrap();
    assert!(next.timestamp() <= t0().timestamp() + 3600, "{st:#}");
    let snap = &st["sinks"][0]["snapshot"];
    assert_eq!(snap["result"], "partial", "{st:#}");
    assert_eq!(
        (
            snap["users"].as_u64(),
            snap["expected"].as_u64(),
            snap["resume_page"].as_u64()
        ),
        (Some(200), Some(450), Some(2)),
        "{st:#}"
    );
    assert_eq!(people_lines(&scratch.path("events.ndjson")).len(), 200);

    // Eight hours of 10-minute steps, still 2026-11-20 (UTC): the snapshot is finished, once.
    step_clock(&running, &manual, 2, Duration::from_secs(600), 48).await;
    let st = status_json(&running, TC);
    let text = metrics.render();
    running.stop().await;
    let pages = people_requests(&sim, "/v2/people/top-clickers");
    assert_eq!(
        pages.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [200, 429, 200, 200],
        "{pages:?}"
    );
    assert!(
        pages[2].1.contains("page=2") && pages[3].1.contains("page=3"),
        "{pages:?}"
    );
    let lines = people_lines(&scratch.path("events.ndjson"));
    let c = counts(&lines);
    assert_eq!(c.len(), 450);
    assert!(c.values().all(|n| *n == 1), "each user once");
    assert!(
        lines.iter().all(|(_, s, _)| s.contains("/2026-11-20T")),
        "one period's snapshot"
    );
    assert_eq!(st["state"], "ok", "{st:#}");
    assert_eq!(st["sinks"][0]["snapshot"]["result"], "complete", "{st:#}");
    assert_eq!(
        metric(
            &text,
            "tapfwd_people_snapshots_total{tenant=\"acme\",feed=\"top_clickers\",result=\"complete\"}"
        ),
        Some(1.0),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_cut_by_a_429_goes_on_from_its_page_after_a_restart() {
    let rig = with_people("feeds = [\"top_clickers\"]")
        .seed(41)
        .build()
        .await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    sim.sim.inject_people(P, [(2, Fault::Status(429))]);
    let running = rig.start().await;
    running.wait_idle(2, manual.now()).await;
    running.stop().await;
    assert_eq!(people_lines(&scratch.path("events.ndjson")).len(), 200);

    // A restart an hour later, same period: page 2 and page 3, not page 1 again.
    manual.advance(Duration::from_secs(3600));
    let running = rig.start().await;
    running.wait_idle(2, manual.now()).await;
    let st = status_json(&running, TC);
    running.stop().await;
    let pages = people_requests(&sim, "/v2/people/top-clickers");
    assert_eq!(
        pages
            .iter()
            .map(|(s, q)| (*s, q.contains("page=1")))
            .collect::<Vec<_>>(),
        [(200, true), (429, false), (200, false), (200, false)],
        "{pages:?}"
    );
    let c = counts(&people_lines(&scratch.path("events.ndjson")));
    assert_eq!(c.len(), 450);
    assert!(c.values().all(|n| *n == 1), "each user once");
    assert_eq!(st["state"], "ok", "{st:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_spent_elsewhere_mid_snapshot_is_probed_sparingly_and_the_cut_snapshot_flagged() {
    let rig = with_people("feeds = [\"top_clickers\"]")
        .seed(42)
        .build()
        .await;
    let (sim, manual, scratch) = (rig.sim.clone(), rig.manual(), &rig.scratch);
    // Another tool on the credential made 48 requests just now: the snapshot gets two pages,
    // then 429s until those age out, a day later.
    sim.sim.spend_people_quota(P, 48);
    let app = rig.app().await;
    let metrics = app.metrics();
    let running = support::Running::run(app);
    running.wait_idle(2, manual.now()).await;
    step_clock(&running, &manual, 2, Duration::from_secs(600), 151).await;
    let st = status_json(&running, TC);
    let text = metrics.render();
    running.stop().await;

    let log: Vec<_> = sim
        .sim
        .request_log(P)
        .into_iter()
        .filter(|r| r.path == "/v2/people/top-clickers")
        .collect();
    let midnight = t0().timestamp() + 12 * 3600 - 7;
    let (before, after): (Vec<_>, Vec<_>) = log.iter().partition(|r| r.at.timestamp() < midnight);
    // Pages 1 and 2, then page 3 refused and asked for again after an hour, then at growing
    // intervals: never twice within the hour, a handful of times before the period ended.
    assert_eq!(
        before.iter().take(3).map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 429]
    );
    let probes: Vec<_> = before[2..].iter().collect();
    assert!(
        probes
            .iter()
            .all(|r| r.status == 429 && r.query.contains("page=3")),
        "{probes:?}"
    );
    assert!((3..=11).contains(&probes.len()), "{probes:?}");
    assert_eq!(
        (probes[1].at - probes[0].at).num_seconds(),
        3600,
        "{probes:?}"
    );
    assert!(
        probes
            .windows(2)
            .all(|w| (w[1].at - w[0].at).num_seconds() >= 3600),
        "{probes:?}"
    );
    // The next period's snapshot: refused at page 1, it waits for the day to pass, then is
    // taken whole.
    let statuses: Vec<u16> = after.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200, 200, 200], "{after:?}");
    // The cut snapshot was flagged when its period ended; the next one is complete.
    for (result, n) in [("partial", 1.0), ("complete", 1.0)] {
        let series = format!(
            "tapfwd_people_snapshots_total{{tenant=\"acme\",feed=\"top_clickers\",result=\"{result}\"}}"
        );
        assert_eq!(metric(&text, &series), Some(n), "{text}");
    }
    assert_eq!(st["state"], "ok", "{st:#}");
    let c = counts(&people_lines(&scratch.path("events.ndjson")));
    assert_eq!(c.len(), 450);
    assert_eq!(
        c.values().filter(|n| **n == 2).count(),
        400,
        "the cut snapshot's 400, again"
    );
}
