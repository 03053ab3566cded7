//! TRAP incidents against the simulator's TRAP server: a backlog in slices, every incident once,
//! updates delivered as new facts by the look-back while exact repeats (and duplicated rows) are
//! not; slices that time out or come back too large split; 429, 5xx, resets, truncated and
//! garbled answers retried without loss or repeat; a refused key failing its tenant alone; a
//! sink down then caught up once; the real binary killed with SIGKILL mid-backlog; `check`
//! naming each mistake by key and `check --connect` asking once.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use support::daemon::{file_len, metric, sigterm, tapfwd, wait_for_tenant_lines, wait_until};
use support::fakes::{self, Fake};
use support::rig::Rig;
use support::*;
use tapfwd::simulate::trap::SimTrap;
use tapfwd::simulate::Fault;

const KEY: &str = "trap-key-acme-0001";

/// A rig on the manual clock with no TAP tenant; the TRAP tenants are added to its config.
async fn rig(poll: &str) -> Rig {
    Rig::builder().poll(poll).build().await
}

/// A `[tenants.ID]` table of a TRAP tenant on the rig's simulator.
fn trap_table(rig: &Rig, id: &str, key: &str, sinks: &str, extra: &str) -> String {
    format!(
        "[tenants.{id}]\nproduct = \"trap\"\nbase_url = \"{}\"\napi_key = \"{key}\"\nsinks = [{sinks}]\n{extra}\n",
        rig.sim.base_url()
    )
}

/// The raw incidents of tenant `id` in the file sink, in order.
fn incidents(rig: &Rig, id: &str) -> Vec<String> {
    read_lines(&rig.events)
        .into_iter()
        .filter(|l| l.tenant == id)
        .map(|l| {
            assert_eq!(l.event_type, "trapIncident");
            String::from_utf8(l.raw).unwrap()
        })
        .collect()
}

fn id_of(raw: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
    v["id"].as_u64().unwrap()
}

/// The first `created_after` the source asked for.
fn first_start(rig: &Rig, key: &str) -> i64 {
    rig.sim
        .sim
        .trap_requests(key)
        .iter()
        .filter_map(|r| query_instant(&r.query, "created_after"))
        .min()
        .expect("the source asked")
}

/// Every incident of the ground truth between the first start and the checkpoint, once each,
/// as the server sent it at `at`; nothing else.
fn assert_once(got: &[String], want: &[(u64, String)]) {
    let mut seen = HashSet::new();
    for raw in got {
        assert!(seen.insert(raw.as_str()), "delivered twice: {raw}");
    }
    let want_set: HashSet<&str> = want.iter().map(|(_, r)| r.as_str()).collect();
    let missing = want_set.difference(&seen).count();
    assert_eq!(missing, 0, "{missing} of {} incidents lost", want.len());
    assert_eq!(got.len(), want.len(), "only the ground truth's incidents");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_arrives_once_and_updates_arrive_as_new_facts() {
    let mut rig = rig("interval = \"1m\"\ninitial_lookback = \"6h\"").await;
    let mut trap = SimTrap::new(KEY, 30);
    trap.duplicate_rows = true;
    rig.sim.sim.serve_trap(trap);
    rig.text.push_str(&trap_table(
        &rig,
        "acme",
        KEY,
        "\"archive\"",
        "slice = \"2h\"\nupdate_lookback = \"2h\"\nupdate_every = \"15m\"",
    ));
    let running = rig.start().await;
    running.wait_for("the backlog", all_ok(&["acme"])).await;
    let manual = rig.manual();
    let t0 = manual.now().timestamp();
    let start = first_start(&rig, KEY);
    let cp = checkpoint(&running.board, "acme", "archive");
    assert_eq!(cp, t0 - 60, "caught up to now - lag");
    // Unordered, duplicated rows: each incident once, as the server sent it.
    let want = rig.sim.sim.trap_incidents(KEY, start, cp + 1, t0);
    assert!(want.len() > 100, "{}", want.len());
    assert_once(&incidents(&rig, "acme"), &want);
    let st = running.board.get("acme").unwrap();
    assert!(
        st.sinks[0].deduplicated > 0,
        "duplicated rows recognised: {st:?}"
    );
    // 6 hours in slices of 2 hours, one request per state: 15 requests, all answered.
    assert_eq!(st.requests_by_status.get("200"), Some(&3), "{st:?}");
    assert_eq!(rig.sim.sim.trap_requests(KEY).len(), 15);

    // An hour on, in steps of 15 minutes: the look-back asks again.
    step_clock(&running, &manual, 1, Duration::from_secs(900), 4).await;
    let t1 = manual.now().timestamp();
    running.stop().await;
    let got = incidents(&rig, "acme");
    let mut per_id: BTreeMap<u64, Vec<&String>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for raw in &got {
        assert!(seen.insert(raw), "an exact repeat was delivered: {raw}");
        per_id.entry(id_of(raw)).or_default().push(raw);
    }
    assert!(
        per_id.values().all(|v| v.len() <= 2),
        "at most a version and its update"
    );
    // Incidents already updated at t0 came once: asking again found the same bytes.
    for (id, _) in rig.sim.sim.trap_incidents(KEY, start, t0 - 32 * 60, t0) {
        assert_eq!(per_id[&id].len(), 1, "incident {id}");
    }
    // Incidents still new at t0 came as they were then, and again once updated.
    let young_then = rig.sim.sim.trap_incidents(KEY, t0 - 29 * 60, t0 - 120, t0);
    let young_now = rig.sim.sim.trap_incidents(KEY, t0 - 29 * 60, t0 - 120, t1);
    assert!(!young_then.is_empty());
    for ((id, then), (_, now)) in young_then.iter().zip(&young_now) {
        assert_ne!(then, now, "incident {id} was updated");
        assert!(seen.contains(then) && seen.contains(now), "incident {id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_that_time_out_or_come_back_too_large_are_split() {
    let mut rig = rig("interval = \"1m\"\ninitial_lookback = \"4h\"").await;
    let mut trap = SimTrap::new(KEY, 60);
    trap.update_after = None;
    trap.timeout_above = Some(Duration::from_secs(40 * 60));
    rig.sim.sim.serve_trap(trap);
    rig.text.push_str(&trap_table(
        &rig,
        "acme",
        KEY,
        "\"archive\"",
        "states = [\"new\"]\nslice = \"2h\"\nslice_timeout = \"1s\"\nmax_slice_bytes = 30000\nupdate_lookback = \"0s\"",
    ));
    let running = rig.start().await;
    running.wait_for("the backlog", all_ok(&["acme"])).await;
    let now = rig.manual().now().timestamp();
    let st = running.board.get("acme").unwrap();
    let cp = checkpoint(&running.board, "acme", "archive");
    running.stop().await;
    let requests = rig.sim.sim.trap_requests(KEY);
    assert!(
        st.requests_by_status.get("timeout").is_some_and(|n| *n > 0),
        "{st:?}"
    );
    assert!(
        st.requests_by_status
            .get("too_large")
            .is_some_and(|n| *n > 0),
        "{st:?}"
    );
    // Every slice answered was at most 40 minutes long.
    for r in requests.iter().filter(|r| r.status == 200) {
        let (a, b) = (
            query_instant(&r.query, "created_after").unwrap(),
            query_instant(&r.query, "created_before").unwrap(),
        );
        assert!(b - a <= 40 * 60, "{}", r.query);
    }
    let start = first_start(&rig, KEY);
    let want = rig.sim.sim.trap_incidents(KEY, start, cp + 1, now);
    assert_once(&incidents(&rig, "acme"), &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_server_errors_resets_and_broken_answers_lose_and_repeat_nothing() {
    let mut rig = rig("interval = \"1m\"\ninitial_lookback = \"3h\"").await;
    let mut trap = SimTrap::new(KEY, 40);
    trap.update_after = None;
    rig.sim.sim.serve_trap(trap);
    rig.sim.sim.inject_trap(
        KEY,
        [
            Fault::Status(429),
            Fault::Status(503),
            Fault::ResetBeforeHeaders,
            Fault::ResetMidBody,
            Fault::TruncatedBody,
            Fault::MalformedBody,
            Fault::Status(500),
        ],
    );
    rig.text.push_str(&trap_table(
        &rig,
        "acme",
        KEY,
        "\"archive\"",
        "states = [\"new\", \"open\"]\nslice = \"1h\"\nupdate_lookback = \"0s\"",
    ));
    let manual = rig.manual();
    let running = rig.start().await;
    for _ in 0..200 {
        if running.board.get("acme").is_some_and(|t| t.state == "ok") {
            break;
        }
        step_clock(&running, &manual, 1, Duration::from_secs(30), 1).await;
    }
    let st = running.board.get("acme").unwrap();
    assert_eq!(st.state, "ok", "{st:?}");
    let cp = checkpoint(&running.board, "acme", "archive");
    running.stop().await;
    for label in ["429", "503", "500", "transport", "not_json"] {
        assert!(st.requests_by_status.contains_key(label), "{label}: {st:?}");
    }
    let start = first_start(&rig, KEY);
    let at = manual.now().timestamp();
    let want = rig.sim.sim.trap_incidents(KEY, start, cp + 1, at);
    assert_once(&incidents(&rig, "acme"), &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_fails_its_tenant_alone_and_is_never_shown() {
    let mut rig = rig("interval = \"1m\"\ninitial_lookback = \"2h\"").await;
    let mut trap = SimTrap::new(KEY, 20);
    trap.update_after = None;
    rig.sim.sim.serve_trap(trap);
    let wrong = "wrong-trap-key-5f3a9c";
    let tables = format!(
        "{}{}",
        trap_table(&rig, "acme", KEY, "\"archive\"", ""),
        trap_table(&rig, "other", wrong, "\"archive\"", "")
    );
    rig.text.push_str(&tables);
    let app = rig.app().await;
    let metrics = app.metrics();
    let running = Running::run(app);
    running
        .wait_for("acme ok and other failed", |s| {
            s.iter().any(|t| t.tenant == "acme" && t.state == "ok")
                && s.iter().any(|t| t.tenant == "other" && t.state == "failed")
        })
        .await;
    let other = running.board.get("other").unwrap();
    let now = rig.manual().now().timestamp();
    let cp = checkpoint(&running.board, "acme", "archive");
    running.stop().await;
    // The refused tenant is flagged for alerting, the other is not; neither has a budget gauge.
    let text = metrics.render();
    assert_eq!(
        metric(&text, "tapfwd_tenant_failed{tenant=\"other\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "tapfwd_tenant_failed{tenant=\"acme\"}"),
        Some(0.0)
    );
    assert!(!text.contains("tapfwd_budget_remaining_requests{tenant=\"acme\"}"));
    let error = other.last_error.clone().unwrap();
    assert!(error.contains("401"), "{error}");
    assert!(!format!("{other:?}").contains(wrong));
    assert!(incidents(&rig, "other").is_empty());
    let start = first_start(&rig, KEY);
    let want = rig.sim.sim.trap_incidents(KEY, start, cp + 1, now);
    assert_once(&incidents(&rig, "acme"), &want);
    let state = std::fs::read_dir(rig.state()).unwrap();
    for f in state.flatten() {
        if f.path().is_file() {
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains(wrong));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_holds_its_incidents_then_gets_each_once() {
    let fake = Fake::default();
    for _ in 0..10_000 {
        fake.push_fault(fakes::Fault::new(503, "down for maintenance"));
    }
    let addr = fakes::plain(&fake).await;
    let mut rig = Rig::builder()
        .poll("interval = \"1m\"\ninitial_lookback = \"3h\"")
        .sink(
            "siem",
            &format!("type = \"http\"\nurl = \"http://{addr}/ingest\"\nretry = {{ initial_backoff = \"10ms\", max_backoff = \"20ms\", max_time = \"100ms\" }}\n"),
        )
        .build()
        .await;
    let mut trap = SimTrap::new(KEY, 30);
    trap.update_after = None;
    rig.sim.sim.serve_trap(trap);
    rig.text.push_str(&trap_table(
        &rig,
        "acme",
        KEY,
        "\"archive\", \"siem\"",
        "update_lookback = \"0s\"",
    ));
    let manual = rig.manual();
    let running = rig.start().await;
    running
        .wait_for("the archive caught up while siem is down", |s| {
            s.iter().any(|t| {
                t.tenant == "acme"
                    && t.sinks
                        .iter()
                        .any(|k| k.sink == "archive" && k.backlog_seconds < 120)
                    && t.sinks.iter().any(|k| k.sink == "siem" && k.failing)
            })
        })
        .await;
    let t0 = manual.now().timestamp();
    let start = first_start(&rig, KEY);
    let want = rig.sim.sim.trap_incidents(KEY, start, t0 - 59, t0);
    assert_once(&incidents(&rig, "acme"), &want);
    assert!(fake.events().is_empty());

    // The SIEM comes back: it gets every incident, once.
    fake.with(|s| s.faults.clear());
    for _ in 0..60 {
        step_clock(&running, &manual, 1, Duration::from_secs(60), 1).await;
        let st = running.board.get("acme").unwrap();
        if st
            .sinks
            .iter()
            .all(|k| !k.failing && k.backlog_seconds < 120)
        {
            break;
        }
    }
    let st = running.board.get("acme").unwrap();
    let cp = checkpoint(&running.board, "acme", "siem");
    running.stop().await;
    assert!(st.sinks.iter().all(|k| !k.failing), "{st:?}");
    let got: Vec<String> = fake
        .events()
        .iter()
        .map(|e| {
            assert_eq!(e["tenant"], "acme");
            assert_eq!(e["eventType"], "trapIncident");
            serde_json::to_string(&e["event"]).unwrap()
        })
        .collect();
    let want: Vec<(u64, String)> = rig
        .sim
        .sim
        .trap_incidents(KEY, start, cp + 1, cp)
        .into_iter()
        .map(|(id, raw)| {
            let v: serde_json::Value = serde_json::from_str(&raw).unwrap();
            (id, serde_json::to_string(&v).unwrap())
        })
        .collect();
    assert_once(&got, &want);
}

#[test]
fn check_names_the_key_of_each_trap_mistake() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let base = "state_dir = \"s\"\n[sinks.archive]\ntype = \"file\"\npath = \"e\"\n";
    let cases = [
        (
            "[tenants.t]\nproduct = \"trap\"\nbase_url = \"https://trap.example.com\"\nsinks = [\"archive\"]\n".to_string(),
            "tenants.t.api_key",
            "exactly one of api_key",
        ),
        (
            "[tenants.t]\nproduct = \"trap\"\nbase_url = \"https://trap.example.com/api/incidents\"\napi_key = \"k\"\nsinks = [\"archive\"]\n".to_string(),
            "tenants.t.base_url",
            "has a path",
        ),
        (
            "[tenants.t]\nproduct = \"trap\"\napi_key = \"k\"\nsinks = [\"archive\"]\n".to_string(),
            "tenants.t.base_url",
            "needs its TRAP server",
        ),
        (
            "[tenants.t]\nproduct = \"trap\"\nbase_url = \"https://trap.example.com\"\napi_key = \"k\"\nca_file = \"/nonexistent/ca.pem\"\nsinks = [\"archive\"]\n".to_string(),
            "tenants.t.ca_file",
            "cannot read",
        ),
        (
            format!("[tenants.t]\nproduct = \"trap\"\nbase_url = \"https://trap.example.com\"\napi_key = \"k\"\nca_file = {:?}\nsinks = [\"archive\"]\n", junk.display().to_string()),
            "tenants.t.ca_file",
            "PEM",
        ),
        (
            "[tenants.t]\nproduct = \"trap\"\nbase_url = \"https://trap.example.com\"\napi_key = \"k\"\nprincipal = \"p\"\nsinks = [\"archive\"]\n".to_string(),
            "tenants.t.principal",
            "is not a TRAP setting",
        ),
        (
            "[tenants.t]\nproduct = \"trap\"\nbase_url = \"https://trap.example.com\"\napi_key = \"k\"\nstates = [\"new\", \"new\"]\nsinks = [\"archive\"]\n".to_string(),
            "tenants.t.states",
            "twice",
        ),
        (
            "[tenants.t]\nprincipal = \"p\"\nsecret = \"s\"\nca_file = \"/x.pem\"\nsinks = [\"archive\"]\n".to_string(),
            "tenants.t.ca_file",
            "is a TRAP setting",
        ),
    ];
    for (tenant, key, words) in cases {
        let text = format!("{base}{tenant}");
        let e = tapfwd::Config::from_toml_with_env(&text, std::iter::empty())
            .unwrap_err()
            .to_string();
        assert!(e.contains(key) && e.contains(words), "{key}: {e}");
    }
    let ok = format!("{base}[tenants.t]\nproduct = \"trap\"\nbase_url = \"https://trap.example.com/\"\napi_key_env = \"ACME_TRAP_KEY\"\nsinks = [\"archive\"]\n");
    let c = tapfwd::Config::from_toml_with_env(&ok, std::iter::empty()).unwrap();
    assert_eq!(c.tenants["t"].base_url(), "https://trap.example.com");
}

/// `tapfwd check --connect` asks each TRAP tenant once: the right key is accepted, a wrong one
/// named as refused (and never printed); the missing environment variable is named by key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_asks_each_trap_tenant_once() {
    let mut rig = Rig::builder().system_clock().build().await;
    rig.sim.sim.serve_trap(SimTrap::new(KEY, 10));
    let wrong = "wrong-trap-key-77aa";
    let tables = format!(
        "{}{}",
        trap_table(&rig, "good", KEY, "\"archive\"", ""),
        trap_table(&rig, "bad", wrong, "\"archive\"", "")
    );
    rig.text.push_str(&tables);
    let config = rig.write_config();
    let out = tokio::task::spawn_blocking(move || {
        tapfwd()
            .args(["check", "--connect", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(!out.status.success());
    assert!(
        stdout.contains("tenant good: credentials accepted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tenant bad: credentials rejected (401)"),
        "{stdout}"
    );
    assert!(!stdout.contains(wrong), "{stdout}");
    let asked = rig.sim.sim.trap_requests(KEY);
    assert_eq!(asked.len(), 1, "one request for the good tenant");

    // A key from the environment that is not set is named by its key.
    let env_text = rig.text.replace(
        &format!("api_key = \"{wrong}\""),
        "api_key_env = \"TAPFWD_TEST_UNSET_TRAP_KEY\"",
    );
    let path = rig.scratch.path("env.toml");
    std::fs::write(&path, env_text).unwrap();
    let out = tapfwd()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("tenants.bad.api_key_env"), "{stderr}");
}

/// The real binary, killed with SIGKILL twice in the middle of a TRAP backlog, then run to the
/// end: every incident in the file once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_trap_backlog_then_every_incident_once() {
    let mut rig = Rig::builder()
        .system_clock()
        .poll("interval = \"1m\"\ninitial_lookback = \"72h\"")
        .build()
        .await;
    let mut trap = SimTrap::new(KEY, 400);
    trap.update_after = None;
    rig.sim.sim.serve_trap(trap);
    rig.text.push_str(&trap_table(
        &rig,
        "acme",
        KEY,
        "\"archive\"",
        "states = [\"new\"]\nslice = \"1h\"\nupdate_lookback = \"0s\"",
    ));
    let config = rig.write_config();
    let log = rig.scratch.path("run.log");
    let spawn = || {
        tapfwd()
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap()
    };
    for threshold in [2_000_000u64, 12_000_000] {
        let mut child = spawn();
        let events = rig.events.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("the file to grow", Duration::from_secs(120), || {
                file_len(&events) >= threshold
            })
        })
        .await
        .unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut child = spawn();
    let start = first_start(&rig, KEY);
    let target = chrono::Utc::now().timestamp() - 120;
    let n = rig.sim.sim.trap_incidents(KEY, start, target, target).len();
    wait_for_tenant_lines(&rig.events, [("acme".to_string(), n)].into()).await;
    sigterm(&mut child);
    let got = incidents(&rig, "acme");
    let latest = got
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            chrono::DateTime::parse_from_rfc3339(v["created_at"].as_str().unwrap())
                .unwrap()
                .timestamp()
        })
        .max()
        .unwrap();
    let want = rig.sim.sim.trap_incidents(KEY, start, latest + 1, latest);
    let mut seen = HashSet::new();
    for raw in &got {
        assert!(seen.insert(raw.as_str()), "delivered twice: {raw}");
    }
    for (id, raw) in &want {
        assert!(seen.contains(raw.as_str()), "incident {id} lost");
    }
    assert_eq!(got.len(), want.len());
}

/// `tapfwd rewind` takes a TRAP tenant back (the slices are asked again, and nothing reaches the
/// sink twice); after the state store is lost, `tapfwd recover` rebuilds the file sink's state
/// from the incidents in its file (by `created_at`, a slice plus the look-back back) and the
/// daemon goes on with every incident still once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_and_recover_after_a_lost_store_deliver_nothing_twice() {
    // On the system's clock: `rewind` and `recover` judge instants against it.
    let mut rig = Rig::builder()
        .system_clock()
        .poll("interval = \"1m\"\ninitial_lookback = \"6h\"")
        .build()
        .await;
    let mut trap = SimTrap::new(KEY, 30);
    trap.update_after = None;
    rig.sim.sim.serve_trap(trap);
    rig.text.push_str(&trap_table(
        &rig,
        "acme",
        KEY,
        "\"archive\"",
        "states = [\"new\"]\nslice = \"2h\"\nupdate_lookback = \"2h\"",
    ));
    let config = rig.write_config();
    let running = rig.start().await;
    running.wait_for("the backlog", all_ok(&["acme"])).await;
    let cp = checkpoint(&running.board, "acme", "archive");
    running.stop().await;
    let t0 = cp;
    let start = first_start(&rig, KEY);
    // The incidents up to `cp` (their bytes do not change with time here).
    let upto = |cp: i64| rig.sim.sim.trap_incidents(KEY, start, cp + 1, cp);
    assert_once(&incidents(&rig, "acme"), &upto(cp));

    // Rewind three hours: asked again, delivered once.
    let to = tapfwd::clock::rfc3339(t0 - 3 * 3600);
    let out = tapfwd()
        .args(["rewind", "--tenant", "acme", "--to", &to, "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("acme -> archive: checkpoint moved"), "{text}");
    let asked = rig.sim.sim.trap_requests(KEY).len();
    let running = rig.start().await;
    running
        .wait_for("the rewound span", all_ok(&["acme"]))
        .await;
    let cp = checkpoint(&running.board, "acme", "archive");
    running.stop().await;
    let again = &rig.sim.sim.trap_requests(KEY)[asked..];
    assert_eq!(
        again
            .iter()
            .filter_map(|r| query_instant(&r.query, "created_after"))
            .min(),
        Some((t0 - 3 * 3600).div_euclid(60) * 60)
    );
    assert_once(&incidents(&rig, "acme"), &upto(cp));

    // The store is lost: recover the file sink from its file, then go on.
    std::fs::remove_dir_all(rig.state()).unwrap();
    let out = tapfwd()
        .args(["recover", "--sink", "archive", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n = incidents(&rig, "acme").len();
    assert!(
        text.contains(&format!("acme -> archive: {n} event(s) in the file")),
        "{text}"
    );
    let asked = rig.sim.sim.trap_requests(KEY).len();
    let running = rig.start().await;
    running
        .wait_for("the recovered span", all_ok(&["acme"]))
        .await;
    let last = checkpoint(&running.board, "acme", "archive");
    running.stop().await;
    let again = &rig.sim.sim.trap_requests(KEY)[asked..];
    let from = again
        .iter()
        .filter_map(|r| query_instant(&r.query, "created_after"))
        .min()
        .unwrap();
    assert!(from <= cp - 4 * 3600, "went back a slice and the look-back");
    assert_once(&incidents(&rig, "acme"), &upto(last));
}
