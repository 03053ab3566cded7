//! Black-box tests of the core daemon against the built-in simulator: windows, lag, dedupe,
//! restarts, API faults, throttling, bad credentials and the 7-day horizon. In-process tests run
//! the real `App` on a manual clock shared with the simulator, so hours pass in milliseconds and
//! nothing sleeps to synchronise: each step waits for every tenant to report itself idle.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use support::rig::Rig;
use support::*;
use tapfwd::simulate::Fault;
use tapfwd::simulate::SimTenant;

const POLL: &str =
    "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"6h\"\nbatch_events = 150";
const MIN5: Duration = Duration::from_secs(300);

fn lag() -> i64 {
    1800
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_is_split_into_valid_windows_and_delivered_exactly_once() {
    let (rig, running) = Rig::builder()
        .tenant("acme", "p-acme", "s-acme", 900)
        .tenant("beta", "p-beta", "s-beta", 600)
        .tenant("gamma", "p-gamma", "s-gamma", 300)
        .seed(11)
        .poll(POLL)
        .start()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    running.wait_idle(3, manual.now()).await;
    let initial = (t0().timestamp() - lag() - 6 * 3600).div_euclid(60) * 60;

    // Caught up, within one interval of now - lag.
    let cps = checkpoints(&running.board, "archive");
    for (tenant, cp) in &cps {
        let latest = (t0().timestamp() - lag()).div_euclid(60) * 60;
        assert!(
            latest - cp < 300,
            "{tenant} not caught up: {cp} vs {latest}"
        );
    }
    // Every request was a window the API accepts.
    let mut requests = 0;
    for p in ["p-acme", "p-beta", "p-gamma"] {
        for r in sim.sim.request_log(p) {
            requests += 1;
            assert_eq!(r.status, 200, "{r:?}");
            assert!(r.query.contains("format=json"), "{r:?}");
            let (s, e) = parse_interval(&r.query).unwrap_or_else(|| panic!("no interval: {r:?}"));
            assert!(
                (30..=3600).contains(&(e - s)),
                "window length {}: {r:?}",
                e - s
            );
            assert_eq!(s % 60, 0, "{r:?}");
            assert_eq!(e % 60, 0, "{r:?}");
            assert!(
                e <= r.at.timestamp() - lag(),
                "window ends inside the lag: {r:?}"
            );
        }
    }
    assert!(
        requests >= 18,
        "6 hours in 1-hour windows for 3 tenants: {requests}"
    );

    let lines = read_lines(&events);
    for (id, p) in [("acme", "p-acme"), ("beta", "p-beta"), ("gamma", "p-gamma")] {
        let want = expected(&sim.sim, p, initial, cps[id]);
        assert_exactly_once(&lines, id, &want);
    }

    // Multi-recipient messages share a GUID and all arrive; boundary events arrive once.
    let mut by_guid: HashMap<String, usize> = HashMap::new();
    for l in lines
        .iter()
        .filter(|l| l.event_type.starts_with("messages"))
    {
        let v: serde_json::Value = serde_json::from_slice(&l.raw).unwrap();
        if let Some(g) = v["GUID"].as_str() {
            *by_guid.entry(format!("{}/{g}", l.tenant)).or_default() += 1;
        }
    }
    assert!(
        by_guid.values().any(|n| *n >= 2),
        "expected multi-recipient messages sharing a GUID"
    );
    let on_boundary = sim
        .sim
        .expected_events("p-acme", support_dt(initial), support_dt(cps["acme"]))
        .into_iter()
        .filter(|e| {
            e.time.timestamp_subsec_millis() == 0 && e.time.timestamp() % 3600 == initial % 3600
        })
        .count();
    assert!(
        on_boundary > 0,
        "the simulator should put events exactly on window boundaries"
    );

    // Steady state: two more hours in 5-minute steps, one request per tenant per step.
    let before: usize = ["p-acme", "p-beta", "p-gamma"]
        .iter()
        .map(|p| sim.sim.request_log(p).len())
        .sum();
    step_clock(&running, &manual, 3, MIN5, 24).await;
    let after: usize = ["p-acme", "p-beta", "p-gamma"]
        .iter()
        .map(|p| sim.sim.request_log(p).len())
        .sum();
    assert!(
        (after - before) <= 3 * 25,
        "steady polling used {} requests for 24 steps of 3 tenants",
        after - before
    );
    let cps = checkpoints(&running.board, "archive");
    let lines = read_lines(&events);
    for (id, p) in [("acme", "p-acme"), ("beta", "p-beta"), ("gamma", "p-gamma")] {
        assert!(cps[id] >= (manual.now().timestamp() - lag() - 600));
        assert_exactly_once(&lines, id, &expected(&sim.sim, p, initial, cps[id]));
    }
    running.stop().await;
}

fn support_dt(secs: i64) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    chrono::Utc.timestamp_opt(secs, 0).unwrap()
}

/// The simulator publishes events up to 25 minutes late. With the default 30-minute lag none is
/// lost; the same run with a 1-minute lag loses some, which shows the test can fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_keeps_late_events_and_a_short_lag_loses_them() {
    for (lag_text, lag_secs, expect_loss) in [("30m", 1800, false), ("1m", 60, true)] {
        let poll = format!("interval = \"5m\"\nlag = \"{lag_text}\"\ninitial_lookback = \"1h\"");
        let (rig, running) = Rig::builder()
            .tenant("late", "p-late", "s-late", 1200)
            .seed(3)
            .poll(&poll)
            .start()
            .await;
        let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
        running.wait_idle(1, manual.now()).await;
        step_clock(&running, &manual, 1, MIN5, 18).await;
        let initial = (t0().timestamp() - lag_secs - 3600).div_euclid(60) * 60;
        let cp = checkpoints(&running.board, "archive")["late"];
        running.stop().await;
        let lines = read_lines(&events);
        let want = expected(&sim.sim, "p-late", initial, cp);
        if expect_loss {
            let got: std::collections::HashSet<&[u8]> =
                lines.iter().map(|l| l.raw.as_slice()).collect();
            let lost = want
                .iter()
                .filter(|(_, r)| !got.contains(r.as_slice()))
                .count();
            assert!(
                lost > 0,
                "a 1-minute lag should lose late events; the simulator must publish late"
            );
        } else {
            assert_exactly_once(&lines, "late", &want);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_checkpoint_without_loss_or_duplicates() {
    let rig = Rig::builder()
        .tenant("r", "p-r", "s-r", 1500)
        .seed(5)
        .poll(POLL)
        .build()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    let initial = (t0().timestamp() - lag() - 6 * 3600).div_euclid(60) * 60;
    // First run: stop as soon as a few windows are in.
    let running = rig.start().await;
    running
        .wait_for("two windows delivered", |s| {
            s.iter().any(|t| t.windows_fetched >= 2)
        })
        .await;
    running.stop().await;
    let partial = read_lines(&events).len();
    assert!(partial > 0);
    // Second run continues; an hour later still nothing is repeated.
    let running = rig.start().await;
    running.wait_idle(1, manual.now()).await;
    step_clock(&running, &manual, 1, MIN5, 12).await;
    let cp = checkpoints(&running.board, "archive")["r"];
    running.stop().await;
    let lines = read_lines(&events);
    assert!(lines.len() > partial);
    assert_exactly_once(&lines, "r", &expected(&sim.sim, "p-r", initial, cp));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_resets_and_malformed_bodies_are_retried_without_loss() {
    let rig = Rig::builder()
        .tenant("f", "p-f", "s-f", 2000)
        .seed(9)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"3h\"\nbatch_events = 50\nmax_backoff = \"1m\"")
        .build()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    sim.sim.inject(
        "p-f",
        [
            Fault::Status(500),
            Fault::Status(503),
            Fault::ResetBeforeHeaders,
            Fault::ResetMidBody,
            Fault::TruncatedBody,
            Fault::MalformedBody,
            Fault::Status(502),
            Fault::ResetMidBody,
        ],
    );
    let running = rig.start().await;
    // Backoff waits are on the manual clock: step it until the backlog is done.
    let latest = (t0().timestamp() - lag()).div_euclid(60) * 60;
    for _ in 0..60 {
        running.wait_idle(1, manual.now()).await;
        let cp = checkpoints(&running.board, "archive")["f"];
        if latest - cp < 300 {
            break;
        }
        manual.advance(Duration::from_secs(60));
    }
    let status = running.board.get("f").unwrap();
    let cp = checkpoints(&running.board, "archive")["f"];
    running.stop().await;
    let failures = sim
        .sim
        .request_log("p-f")
        .iter()
        .filter(|r| r.status != 200)
        .count();
    assert!(failures >= 4, "the injected faults were seen: {failures}");
    assert!(status.requests_by_status.len() > 1, "{status:?}");
    let initial = (t0().timestamp() - lag() - 3 * 3600).div_euclid(60) * 60;
    assert!(
        cp >= t0().timestamp() - lag() - 600,
        "caught up after the faults"
    );
    assert_exactly_once(
        &read_lines(&events),
        "f",
        &expected(&sim.sim, "p-f", initial, cp),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_one_tenant_and_the_others_continue() {
    let mut unlicensed = tenant("p-nolicense", "s-nolicense", 100);
    unlicensed.licensed = false;
    let (rig, running) = Rig::builder()
        .tenant("good", "p-good", "s-good", 600)
        .sim_tenant(tenant("p-bad", "s-bad", 600))
        .config_tenant("bad", "p-bad", "wrong-secret")
        .tenant_from("nolicense", unlicensed)
        .seed(2)
        .poll(POLL)
        .start()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    running.wait_idle(3, manual.now()).await;
    step_clock(&running, &manual, 3, MIN5, 6).await;
    let bad = running.board.get("bad").unwrap();
    assert_eq!(bad.state, "failed", "{bad:?}");
    assert!(
        bad.last_error.as_deref().unwrap_or("").contains("401"),
        "{bad:?}"
    );
    let nolicense = running.board.get("nolicense").unwrap();
    assert_eq!(nolicense.state, "failed");
    assert!(nolicense
        .last_error
        .as_deref()
        .unwrap_or("")
        .contains("403"));
    // A failed tenant is not retried in a loop: one attempt, then an hour's wait.
    assert!(sim.sim.request_log("p-bad").len() <= 2);
    let good = running.board.get("good").unwrap();
    assert_eq!(good.state, "ok", "{good:?}");
    let cp = checkpoints(&running.board, "archive")["good"];
    running.stop().await;
    let lines = read_lines(&events);
    assert!(lines.iter().all(|l| l.tenant == "good"));
    let initial = (t0().timestamp() - lag() - 6 * 3600).div_euclid(60) * 60;
    assert_exactly_once(&lines, "good", &expected(&sim.sim, "p-good", initial, cp));
}

/// The API's quota is smaller than the daemon thinks (another client shares the credential):
/// 429s make the tenant wait for budget, not retry in a loop, and it finishes a day later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_tenant_waits_for_budget_and_then_completes() {
    let mut t = tenant("p-q", "s-q", 300);
    t.daily_limit = 8;
    let (rig, running) = Rig::builder()
        .tenant_from("q", t)
        .seed(4)
        .poll("interval = \"1h\"\nlag = \"30m\"\ninitial_lookback = \"12h\"")
        .start()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    running.wait_idle(1, manual.now()).await;
    let st = running.board.get("q").unwrap();
    assert_eq!(st.state, "throttled", "{st:?}");
    let stuck_at = checkpoints(&running.board, "archive")["q"];
    // A day in 30-minute steps: the tenant probes at most about hourly.
    step_clock(&running, &manual, 1, Duration::from_secs(1800), 50).await;
    let throttled = sim
        .sim
        .request_log("p-q")
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert!(
        throttled <= 30,
        "429s should be waited out, got {throttled}"
    );
    let cp = checkpoints(&running.board, "archive")["q"];
    running.stop().await;
    assert!(
        cp >= stuck_at + 4 * 3600,
        "moved on once the quota released: {stuck_at} -> {cp}"
    );
    let initial = (t0().timestamp() - lag() - 12 * 3600).div_euclid(60) * 60;
    assert_exactly_once(
        &read_lines(&events),
        "q",
        &expected(&sim.sim, "p-q", initial, cp),
    );
}

/// The daemon's own budget stops a backfill before the API has to: it keeps a day of steady
/// polls in reserve and never sees a 429.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_budget_reserves_steady_polls_and_avoids_429() {
    let mut t = tenant("p-b", "s-b", 100);
    t.daily_limit = 40;
    let (rig, running) = Rig::builder()
        .tenant_from("b", t)
        .tenant_toml("b", "requests_per_day = 40")
        .seed(4)
        .poll("interval = \"1h\"\nlag = \"30m\"\ninitial_lookback = \"6d\"")
        .start()
        .await;
    let (sim, manual) = (rig.sim.clone(), rig.manual());
    running.wait_idle(1, manual.now()).await;
    let st = running.board.get("b").unwrap();
    assert_eq!(st.state, "waiting_for_budget", "{st:?}");
    assert_eq!(
        st.requests_24h,
        40 - 24,
        "backlog stops where a day of hourly polls is left"
    );
    step_clock(&running, &manual, 1, Duration::from_secs(3600), 30).await;
    running.stop().await;
    assert!(sim.sim.request_log("p-b").iter().all(|r| r.status == 200));
}

/// A checkpoint older than the API's 7 days is clamped (the gap reported), never a 400 loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_past_seven_days_is_clamped_and_gap_reported() {
    let (rig, running) = Rig::builder()
        .tenant("old", "p-old", "s-old", 60)
        .seed(8)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"")
        .start()
        .await;
    let (sim, manual) = (rig.sim.clone(), rig.manual());
    running.wait_idle(1, manual.now()).await;
    running.stop().await;
    // Nine days offline.
    manual.advance(Duration::from_secs(9 * 86_400));
    let running = rig.start().await;
    running
        .wait_for("the first window after the clamp", |s| {
            s.iter().any(|t| t.windows_fetched >= 1)
        })
        .await;
    let st = running.board.get("old").unwrap();
    running.stop().await;
    let gap = st.sinks[0].gap_seconds;
    assert!(gap > 86_400, "the skipped span is reported: {st:?}");
    assert!(sim.sim.request_log("p-old").iter().all(|r| r.status != 400));
}

/// The API's clock runs two hours ahead of ours, so a start we think is inside the 7 days is too
/// old for it: the 400 makes the daemon step further inside the horizon, not loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_too_old_for_a_skewed_api_clock_is_clamped_not_looped() {
    let (rig, running) = Rig::builder()
        .tenant("skew", "p-skew", "s-skew", 60)
        .seed(8)
        .api_clock_ahead(chrono::Duration::hours(2))
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"")
        .start()
        .await;
    let (sim, manual, api_manual) = (rig.sim.clone(), rig.manual(), rig.api_manual());
    running.wait_idle(1, manual.now()).await;
    running.stop().await;
    let ten_days = Duration::from_secs(10 * 86_400);
    manual.advance(ten_days);
    api_manual.advance(ten_days);
    let running = rig.start().await;
    running
        .wait_for("a window accepted after the clamp", |s| {
            s.iter().any(|t| t.windows_fetched >= 1)
        })
        .await;
    running.stop().await;
    let log = sim.sim.request_log("p-skew");
    let too_old = log.iter().filter(|r| r.status == 400).count();
    assert!(
        too_old >= 1,
        "the skew should cause at least one 400: {log:?}"
    );
    assert!(
        too_old <= 3,
        "clamped after a few 400s, not a loop: {too_old}"
    );
}

/// One tenant, two sinks: `archive` works, `full` writes to /dev/full (ENOSPC on every write).
/// The broken sink holds its own checkpoint, shows its backlog and error, and causes no
/// duplicates in the working one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sink_holds_its_checkpoint_without_duplicates_elsewhere() {
    let (rig, running) = Rig::builder()
        .tenant("two", "p-two", "s-two", 900)
        .sink("full", "type = \"file\"\npath = \"/dev/full\"\n")
        .seed(6)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"3h\"\nmax_backoff = \"2m\"")
        .start()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    running.wait_idle(1, manual.now()).await;
    step_clock(&running, &manual, 1, Duration::from_secs(60), 30).await;
    let st = running.board.get("two").unwrap();
    let cps = checkpoints(&running.board, "archive");
    let full_cp = checkpoints(&running.board, "full")["two"];
    running.stop().await;
    let initial = (t0().timestamp() - lag() - 3 * 3600).div_euclid(60) * 60;
    assert_eq!(full_cp, initial, "the broken sink never advanced");
    let full = st.sinks.iter().find(|s| s.sink == "full").unwrap();
    assert!(full.failing, "{st:?}");
    assert!(full.backlog_seconds >= 3 * 3600, "{st:?}");
    assert!(
        full.last_error
            .as_deref()
            .unwrap_or("")
            .contains("/dev/full"),
        "{st:?}"
    );
    let archive = st.sinks.iter().find(|s| s.sink == "archive").unwrap();
    assert!(!archive.failing);
    assert_eq!(
        st.state, "degraded",
        "a tenant with a failing sink is not ok: {st:?}"
    );
    assert_exactly_once(
        &read_lines(&events),
        "two",
        &expected(&sim.sim, "p-two", initial, cps["two"]),
    );
}

// ------------------------------------------------------------------------------- late sweep

const HOUR: Duration = Duration::from_secs(3600);

/// The long-tail tenant of the late-sweep tests: `per_hour` events an hour, `per_mille` of them
/// published between 25 minutes and 2 hours after their time (the rest within 25 minutes).
fn long_tail(principal: &str, secret: &str, per_hour: u32, per_mille: u32) -> SimTenant {
    tenant(principal, secret, per_hour).long_tail(per_mille, 2 * HOUR)
}

fn sweep_poll(sweep: &str) -> String {
    format!("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"\nlate_sweep = \"{sweep}\"")
}

fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp()
}

/// How many of `want` (distinct events: the API can send the same bytes twice, a replay) the
/// tenant's `lines` lack. Fails the test on an event delivered twice or
/// one that is not in `within` (every event of the span polled).
fn missing_once(
    lines: &[Line],
    tenant: &str,
    want: &[(String, Vec<u8>)],
    within: &[(String, Vec<u8>)],
) -> usize {
    let mut got: HashMap<&[u8], usize> = HashMap::new();
    for l in lines.iter().filter(|l| l.tenant == tenant) {
        *got.entry(l.raw.as_slice()).or_default() += 1;
    }
    let twice = got.values().filter(|n| **n > 1).count();
    assert_eq!(
        twice, 0,
        "{tenant}: {twice} events delivered more than once"
    );
    let within: std::collections::HashSet<&[u8]> =
        within.iter().map(|(_, r)| r.as_slice()).collect();
    let foreign = got.keys().filter(|r| !within.contains(*r)).count();
    assert_eq!(
        foreign, 0,
        "{tenant}: {foreign} events that the API never served"
    );
    assert!(
        !want.is_empty(),
        "{tenant}: no events expected proves nothing"
    );
    let want: std::collections::HashSet<&[u8]> = want.iter().map(|(_, r)| r.as_slice()).collect();
    want.iter().filter(|r| !got.contains_key(*r)).count()
}

/// Events published up to 2 hours after their time (the simulator's own delay, raised from 25
/// minutes): with the default configuration, every event of the windows that ended more than
/// 5 hours ago (the late sweep's 3 hours, its 1-hour windows and the rounding) arrives exactly
/// once. Written with nothing but what 35b0bbe had, where it fails: each window was queried once,
/// 30 minutes after its end, and the events published later were lost for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_hours_after_their_time_are_not_lost() {
    let (clock, manual) = tapfwd::clock::Clock::manual(t0());
    let mut slow = tenant("p-slow", "s-slow", 1200);
    slow.max_visibility_delay = 2 * HOUR;
    let sim = Sim::start(vec![slow], 17, clock.clone()).await;
    let scratch = Scratch::new();
    let events = scratch.path("events.ndjson");
    let text = config_text(
        &scratch.path("state"),
        &events,
        &sim.base_url(),
        &[("slow", "p-slow", "s-slow")],
        "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"",
    );
    let running = Running::start(parse_config(&text), clock.clone()).await;
    running.wait_idle(1, manual.now()).await;
    step_clock(&running, &manual, 1, MIN5, 7 * 12).await;
    let cp = checkpoints(&running.board, "archive")["slow"];
    running.stop().await;
    let initial = (t0().timestamp() - lag() - 3600).div_euclid(60) * 60;
    let settled = (manual.now().timestamp() - 5 * 3600).div_euclid(60) * 60;
    let lines = read_lines(&events);
    let polled = expected(&sim.sim, "p-slow", initial, cp);
    let want = expected(&sim.sim, "p-slow", initial, settled);
    let missing = missing_once(&lines, "slow", &want, &polled);
    assert_eq!(
        missing,
        0,
        "{missing} of {} events published late were lost",
        want.len()
    );
}

/// The simulator's long tail: 5 % of the events published between 25 minutes and 2 hours late.
/// With the late sweep (3 h) every event of the swept span arrives exactly once, and status and
/// metrics show what the sweep cost and found; with `late_sweep = "0s"` (each window queried
/// once, as before the sweep) the late ones are lost for good, about as many as the sweep found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_late_sweep_delivers_events_published_after_the_lag_exactly_once() {
    let mut swept_to = None;
    let mut found_late = 0;
    for sweep in ["3h", "0s"] {
        let rig = Rig::builder()
            .tenant_from("tail", long_tail("p-tail", "s-tail", 1200, 50))
            .seed(13)
            .poll(&sweep_poll(sweep))
            .build()
            .await;
        let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
        let app = rig.app().await;
        let metrics = app.metrics();
        let running = Running::run(app);
        running.wait_idle(1, manual.now()).await;
        step_clock(&running, &manual, 1, MIN5, 7 * 12).await;
        let st = running.board.get("tail").unwrap();
        let cp = checkpoints(&running.board, "archive")["tail"];
        let text = metrics.render();
        running.stop().await;

        let initial = (t0().timestamp() - lag() - 3600).div_euclid(60) * 60;
        let lines = read_lines(&events);
        let polled = expected(&sim.sim, "p-tail", initial, cp);
        let end = *swept_to.get_or_insert_with(|| {
            let sweep = st.late_sweep.as_ref().expect("status shows the sweep");
            unix(sweep.swept_to.as_deref().unwrap())
        });
        let want = expected(&sim.sim, "p-tail", initial, end);
        let missing = missing_once(&lines, "tail", &want, &polled);
        if sweep == "3h" {
            let now = manual.now().timestamp();
            assert!(
                end >= now - 5 * 3600 - 600 && end <= now - 3 * 3600,
                "swept to {end}, now {now}: {st:?}"
            );
            assert_eq!(missing, 0, "with the sweep nothing is lost");
            let ls = st.late_sweep.clone().unwrap();
            assert_eq!(ls.age_seconds, 3 * 3600);
            assert!(ls.windows >= 3, "{ls:?}");
            assert_eq!(ls.requests_24h as u64, ls.windows, "{ls:?}");
            assert_eq!(
                u64::from(st.requests_24h),
                st.windows_fetched + ls.windows,
                "the sweep's requests are in the tenant's 24 h too: {st:?}"
            );
            assert!(ls.events_found_late > 0, "{ls:?}");
            assert!(ls.events_fetched > ls.events_found_late, "{ls:?}");
            assert_eq!(ls.last_error, None);
            found_late = ls.events_found_late;
            for series in [
                format!("tapfwd_late_events_total{{tenant=\"tail\"}} {found_late}"),
                format!(
                    "tapfwd_late_sweep_requests_total{{tenant=\"tail\",status=\"200\"}} {}",
                    ls.windows
                ),
            ] {
                assert!(text.contains(&series), "{series} in\n{text}");
            }
            eprintln!(
                "late sweep: {} events in {} swept hours, {found_late} found late, {} sweep requests",
                want.len(),
                (end - initial) / 3600,
                ls.requests_24h
            );
        } else {
            assert!(st.late_sweep.is_none(), "{st:?}");
            assert!(!text.contains("tapfwd_late_events_total{"), "{text}");
            assert!(missing > 0, "without the sweep the late events are lost");
            // About what the sweep found: the first queries of the two runs need not be at the
            // same instants (the sweep wakes the tenant at its own times).
            assert!(
                (missing as u64).abs_diff(found_late) <= found_late / 20 + 2,
                "{missing} lost, {found_late} found late"
            );
            eprintln!("without the sweep: {missing} of {} events lost", want.len());
        }
    }
}

/// A tight quota: 30 requests a day, 24 of them for hourly polls. The sweep takes only what the
/// polls leave: every hour's poll is made on time and the API never answers 429, while the sweep
/// runs when there is room and reports the span it had to skip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_late_sweep_never_takes_a_steady_polls_request() {
    let mut t = long_tail("p-tight", "s-tight", 300, 50);
    t.daily_limit = 30;
    let (rig, running) = Rig::builder()
        .tenant_from("tight", t)
        .tenant_toml("tight", "requests_per_day = 30")
        .seed(14)
        .poll("interval = \"1h\"\nlag = \"30m\"\ninitial_lookback = \"1h\"\nlate_sweep = \"3h\"")
        .start()
        .await;
    let (sim, manual) = (rig.sim.clone(), rig.manual());
    running.wait_idle(1, manual.now()).await;
    for _ in 0..48 * 12 {
        manual.advance(MIN5);
        running.wait_idle(1, manual.now()).await;
        let st = running.board.get("tight").unwrap();
        let cp = checkpoints(&running.board, "archive")["tight"];
        let now = manual.now().timestamp();
        let latest = (now - lag()).div_euclid(60) * 60;
        // Each hour's poll is made at the tenant's minute of the hour, never later, and the
        // next is at most an hour away (a poll waiting for budget would wait for a day).
        assert!(latest - cp < 2 * 3600, "the hour's poll was made: {st:?}");
        assert!(
            unix(st.next_poll_at.as_deref().unwrap()) - now < 2 * 3600,
            "{st:?}"
        );
        assert_eq!(st.state, "ok", "{st:?}");
        assert!(st.requests_24h <= 30, "{st:?}");
    }
    let st = running.board.get("tight").unwrap();
    running.stop().await;
    let sweep = st.late_sweep.unwrap();
    assert!(
        sweep.windows >= 1,
        "the sweep ran with what the polls left: {sweep:?}"
    );
    assert!(
        sweep.skipped_seconds > 0,
        "and says what it had to skip: {sweep:?}"
    );
    assert!(sim
        .sim
        .request_log("p-tight")
        .iter()
        .all(|r| r.status == 200));
}

/// The API cuts the sweep's response after its first events (found late and delivered), and the
/// daemon stops there, in the middle of the sweep window. Started again, it asks for the same
/// window, and nothing is delivered twice or lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_sweep_window_resumes_it_without_duplicates() {
    let rig = Rig::builder()
        .tenant_from("mid", long_tail("p-mid", "s-mid", 600, 500))
        .seed(15)
        .poll(&format!("{}\nbatch_events = 1", sweep_poll("3h")))
        .build()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    let running = rig.start().await;
    running.wait_idle(1, manual.now()).await;
    // Up to the step in which the third sweep window is due (the first two were first asked
    // for in the backlog of the first start, longer after their time).
    for _ in 0..200 {
        let st = running.board.get("mid").unwrap();
        let sweep = st.late_sweep.unwrap();
        let due = sweep.next_at.map(|t| unix(&t));
        if sweep.windows >= 2 && due.is_some_and(|t| t <= manual.now().timestamp() + 300) {
            break;
        }
        manual.advance(MIN5);
        running.wait_idle(1, manual.now()).await;
    }
    // The step's poll comes first and is answered whole; the sweep's response is cut.
    sim.sim.inject(
        "p-mid",
        [Fault::StallMidBody(Duration::ZERO), Fault::ResetMidBody],
    );
    manual.advance(MIN5);
    running
        .wait_for("the sweep window to fail", |s| {
            s.iter().any(|t| {
                t.late_sweep
                    .as_ref()
                    .is_some_and(|l| l.last_error.is_some())
            })
        })
        .await;
    let st = running.board.get("mid").unwrap();
    running.stop().await;
    let cut = st.late_sweep.unwrap();
    assert_eq!(cut.windows, 2, "{cut:?}");
    assert!(
        cut.events_found_late >= 1,
        "the cut response's first events were found late and delivered: {cut:?}"
    );
    let delivered_before = read_lines(&events).len();

    let running = rig.start().await;
    running.wait_idle(1, manual.now()).await;
    step_clock(&running, &manual, 1, MIN5, 3 * 12).await;
    let st = running.board.get("mid").unwrap();
    let cp = checkpoints(&running.board, "archive")["mid"];
    running.stop().await;
    let resumed = st.late_sweep.unwrap();
    let end = unix(resumed.swept_to.as_deref().unwrap());
    assert!(
        end > unix(cut.swept_to.as_deref().unwrap()) && resumed.windows >= 2,
        "{resumed:?}"
    );
    // The window cut short was asked for again after the restart.
    let log = sim.sim.request_log("p-mid");
    let at = log
        .iter()
        .position(|r| r.fault == Some(Fault::ResetMidBody))
        .unwrap();
    let again = log[at + 1..]
        .iter()
        .find(|r| r.query == log[at].query)
        .expect("the cut window asked for again");
    assert_eq!(again.status, 200);

    let initial = (t0().timestamp() - lag() - 3600).div_euclid(60) * 60;
    let lines = read_lines(&events);
    assert!(lines.len() > delivered_before);
    let polled = expected(&sim.sim, "p-mid", initial, cp);
    let want = expected(&sim.sim, "p-mid", initial, end);
    assert_eq!(missing_once(&lines, "mid", &want, &polled), 0);
}
