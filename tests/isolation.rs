//! Isolation usage data against the simulator's Isolation API: a backlog in windows, every record
//! once; a full page split until no window is full; the 30-day horizon clamped with the gap
//! reported and no 400; faults retried without loss or repeat; a refused key failing its tenant
//! alone; a sink down then caught up once; **the key, which travels in the query string, never in
//! a log, status, metric, the store or an error text** (a 5xx page, a redirect and a transport
//! error that all carry the URL); the real binary killed mid-backlog; `check` by key.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use support::daemon::{file_len, files_under, sigterm, tapfwd, wait_for_tenant_lines, wait_until};
use support::fakes::{self, Fake};
use support::rig::Rig;
use support::*;
use tapfwd::simulate::isolation::SimIsolation;
use tapfwd::simulate::Fault;

/// A key with characters a query string encodes (`/`, `+`, `=`), as real keys have.
const KEY: &str = "iso/K3y+acme=0001";

async fn rig(poll: &str) -> Rig {
    Rig::builder().poll(poll).build().await
}

fn iso_table(rig: &Rig, id: &str, key: &str, sinks: &str, extra: &str) -> String {
    format!(
        "[tenants.{id}]\nproduct = \"isolation\"\nbase_url = \"{}\"\napi_key = \"{key}\"\nsinks = [{sinks}]\n{extra}\n",
        rig.sim.base_url()
    )
}

fn records(rig: &Rig, id: &str) -> Vec<String> {
    read_lines(&rig.events)
        .into_iter()
        .filter(|l| l.tenant == id)
        .map(|l| {
            assert_eq!(l.event_type, "isolationUsage");
            String::from_utf8(l.raw).unwrap()
        })
        .collect()
}

fn first_start(rig: &Rig, key: &str) -> i64 {
    rig.sim
        .sim
        .isolation_requests(key)
        .iter()
        .filter(|r| r.status == 200)
        .filter_map(|r| query_instant(&r.query, "from"))
        .min()
        .expect("the source asked")
}

fn assert_once(got: &[String], want: &[String]) {
    let mut seen = HashSet::new();
    for raw in got {
        assert!(seen.insert(raw.as_str()), "delivered twice: {raw}");
    }
    let missing = want.iter().filter(|r| !seen.contains(r.as_str())).count();
    assert_eq!(missing, 0, "{missing} of {} records lost", want.len());
    assert_eq!(got.len(), want.len(), "only the ground truth's records");
}

/// Every form the key can take in a text: as is, and percent-encoded.
fn key_forms() -> [String; 3] {
    [
        KEY.to_string(),
        "iso%2FK3y%2Bacme%3D0001".to_string(),
        "iso%2fK3y%2bacme%3d0001".to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_arrives_once_and_full_pages_are_split() {
    let mut rig = rig("interval = \"1m\"\ninitial_lookback = \"6h\"").await;
    let mut iso = SimIsolation::new(KEY, 120);
    iso.duplicate_rows = true;
    rig.sim.sim.serve_isolation(iso);
    rig.text.push_str(&iso_table(
        &rig,
        "acme",
        KEY,
        "\"archive\"",
        "page_size = 100\nslice = \"2h\"",
    ));
    let running = rig.start().await;
    running.wait_for("the backlog", all_ok(&["acme"])).await;
    let now = rig.manual().now().timestamp();
    let cp = checkpoint(&running.board, "acme", "archive");
    let st = running.board.get("acme").unwrap();
    running.stop().await;
    assert_eq!(cp, now - 300, "caught up to now - lag");
    // 240 records in 2 hours do not fit a page of 100: windows were split until none was full.
    assert!(
        st.requests_by_status.get("full").is_some_and(|n| *n > 0),
        "{st:?}"
    );
    for r in rig.sim.sim.isolation_requests(KEY) {
        assert!(r.query.contains("pageSize=100"), "{}", r.query);
    }
    let start = first_start(&rig, KEY);
    let want = rig.sim.sim.isolation_records(KEY, start, cp + 1);
    assert!(want.len() > 600, "{}", want.len());
    assert_once(&records(&rig, "acme"), &want);
    assert!(st.sinks[0].deduplicated > 0, "duplicated rows recognised");
}

/// A one-second window that is still a full page cannot be split further: its page is
/// delivered, and the source says records were left out (never `ok` about it silently).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_one_second_window_is_delivered_and_reported_partial() {
    let mut rig = rig("interval = \"1m\"\ninitial_lookback = \"2m\"").await;
    rig.sim.sim.serve_isolation(SimIsolation::new(KEY, 36_000));
    rig.text.push_str(&iso_table(
        &rig,
        "acme",
        KEY,
        "\"archive\"",
        "page_size = 3\nslice = \"1m\"",
    ));
    let running = rig.start().await;
    running
        .wait_for("the backlog", |s| {
            s.iter()
                .any(|t| t.tenant == "acme" && t.requests_by_status.contains_key("partial"))
        })
        .await;
    // Caught up to now - lag, and still saying so: `partial` until an answer fits.
    let now = rig.manual().now();
    running.wait_idle(1, now).await;
    // (The last second or two wait until they make a window as long as the current slice.)
    let behind = now.timestamp() - 300 - checkpoint(&running.board, "acme", "archive");
    assert!((0..=2).contains(&behind), "{behind}");
    let st = running.board.get("acme").unwrap();
    running.stop().await;
    let partial = st.requests_by_status["partial"];
    assert!(partial > 0, "{st:?}");
    assert_eq!(st.state, "partial", "{st:?}");
    assert!(st.last_error.as_deref().unwrap().contains("came back full"));
    // Each partial window gave its page of 3, as the API sent it; nothing was delivered twice.
    let got = records(&rig, "acme");
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len());
    // (Windows include both ends, so neighbouring pages can share a record.)
    assert!(
        got.len() >= 3 && got.len() <= 3 * st.requests_by_status.values().sum::<u64>() as usize
    );
    let start = first_start(&rig, KEY);
    let truth: HashSet<String> = rig
        .sim
        .sim
        .isolation_records(KEY, start, now.timestamp())
        .into_iter()
        .collect();
    assert!(
        got.iter().all(|r| truth.contains(r)),
        "records as the API sent them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_position_past_30_days_is_clamped_with_the_gap_reported_and_no_400() {
    let mut rig = rig("interval = \"1m\"\ninitial_lookback = \"1h\"").await;
    rig.sim.sim.serve_isolation(SimIsolation::new(KEY, 2));
    rig.text.push_str(&iso_table(
        &rig,
        "acme",
        KEY,
        "\"archive\"",
        "slice = \"24h\"",
    ));
    let running = rig.start().await;
    running.wait_for("the first hour", all_ok(&["acme"])).await;
    running.stop().await;
    // Stopped for 35 days: the position is 5 days past the API's 30.
    let manual = rig.manual();
    manual.advance(Duration::from_secs(35 * 86_400));
    let running = rig.start().await;
    running.wait_for("the backlog", all_ok(&["acme"])).await;
    let st = running.board.get("acme").unwrap();
    running.stop().await;
    let sink = &st.sinks[0];
    assert!(sink.gap_seconds >= 5 * 86_400, "{sink:?}");
    assert!(sink.gap_seconds <= 5 * 86_400 + 2 * 3600, "{sink:?}");
    let asked = rig.sim.sim.isolation_requests(KEY);
    assert!(asked.iter().all(|r| r.status == 200), "no 400: {asked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_key_in_the_query_string_never_reaches_a_log_status_metric_or_the_store() {
    let mut rig = rig("interval = \"1m\"\ninitial_lookback = \"2h\"").await;
    rig.sim.sim.serve_isolation(SimIsolation::new(KEY, 30));
    rig.text
        .push_str(&iso_table(&rig, "acme", KEY, "\"archive\"", ""));
    // A second tenant whose server does not answer at all: a transport error, whose text
    // reqwest words with the URL.
    rig.text.push_str(&format!(
        "[tenants.gone]\nproduct = \"isolation\"\nbase_url = \"http://127.0.0.1:9\"\napi_key = \"{KEY}\"\nsinks = [\"archive\"]\n"
    ));
    let manual = rig.manual();
    let app = rig.app().await;
    let metrics = app.metrics();
    let running = Running::run(app);
    running
        .wait_for("acme caught up, gone failing", |s| {
            s.iter().any(|t| t.tenant == "acme" && t.state == "ok")
                && s.iter()
                    .any(|t| t.tenant == "gone" && t.last_error.is_some())
        })
        .await;
    let gone = running.board.get("gone").unwrap();
    let mut texts = vec![format!("{gone:?}")];
    assert!(
        gone.last_error
            .as_deref()
            .unwrap()
            .contains("connection failed"),
        "{gone:?}"
    );
    // A proxy's error page that quotes the request URL, a redirect that carries it, and a
    // gateway's 5xx page that quotes it in lower-case hex: one per poll, each error read off
    // the status board while it is the tenant's last error.
    let base = rig.sim.base_url();
    let faults = [
        (Fault::EchoCredentials(502), true),
        (
            Fault::Redirect(
                302,
                format!("{base}/login?next=%2Fapi%3Fkey%3D{}&x=1", key_forms()[1]),
            ),
            true,
        ),
        (Fault::ResetBeforeHeaders, false),
        (Fault::TruncatedBody, false),
        (Fault::Status(429), false),
        (Fault::Status(503), false),
    ];
    for (fault, quotes_url) in faults {
        rig.sim.sim.inject_isolation(KEY, [fault.clone()]);
        step_clock(&running, &manual, 2, Duration::from_secs(60), 1).await;
        let acme = running.board.get("acme").unwrap();
        let error = acme.last_error.clone().unwrap_or_default();
        assert!(!error.is_empty(), "{fault:?}: {acme:?}");
        if quotes_url {
            assert!(error.contains("[redacted]"), "{fault:?}: {error}");
        }
        texts.push(format!("{acme:?}"));
        texts.push(serde_json::to_string(&acme).unwrap());
        // The polls after the fault go on (a redirect is waited out longest).
        for _ in 0..30 {
            if running.board.get("acme").is_some_and(|t| t.state == "ok") {
                break;
            }
            step_clock(&running, &manual, 2, Duration::from_secs(60), 1).await;
        }
    }
    let acme = running.board.get("acme").unwrap();
    texts.push(metrics.render());
    running.stop().await;
    assert_eq!(acme.state, "ok", "{acme:?}");
    for label in ["502", "302", "transport", "not_json", "429", "503"] {
        assert!(
            acme.requests_by_status.contains_key(label),
            "{label}: {acme:?}"
        );
    }
    // Every text shown anywhere, and every file of the store, holds no form of the key.
    for f in files_under(&rig.scratch.path("")) {
        texts.push(String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned());
    }
    for text in &texts {
        for form in key_forms() {
            assert!(!text.contains(&form), "the key ({form}) in: {text}");
        }
    }
    // And every record was collected despite it all.
    let start = first_start(&rig, KEY);
    let cp = rig.manual().now().timestamp() - 300;
    let want = rig.sim.sim.isolation_records(KEY, start, cp + 1);
    assert_once(&records(&rig, "acme"), &want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_key_fails_its_tenant_alone() {
    let mut rig = rig("interval = \"1m\"\ninitial_lookback = \"2h\"").await;
    rig.sim.sim.serve_isolation(SimIsolation::new(KEY, 30));
    let wrong = "wrong-iso-key-3e1f";
    let tables = format!(
        "{}{}",
        iso_table(&rig, "acme", KEY, "\"archive\"", ""),
        iso_table(&rig, "other", wrong, "\"archive\"", "")
    );
    rig.text.push_str(&tables);
    let running = rig.start().await;
    running
        .wait_for("acme ok and other failed", |s| {
            s.iter().any(|t| t.tenant == "acme" && t.state == "ok")
                && s.iter().any(|t| t.tenant == "other" && t.state == "failed")
        })
        .await;
    let other = running.board.get("other").unwrap();
    let cp = checkpoint(&running.board, "acme", "archive");
    running.stop().await;
    assert!(other.last_error.as_deref().unwrap().contains("401"));
    assert!(!format!("{other:?}").contains(wrong));
    assert!(records(&rig, "other").is_empty());
    let start = first_start(&rig, KEY);
    assert_once(
        &records(&rig, "acme"),
        &rig.sim.sim.isolation_records(KEY, start, cp + 1),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_holds_its_records_then_gets_each_once() {
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
    rig.sim.sim.serve_isolation(SimIsolation::new(KEY, 60));
    rig.text
        .push_str(&iso_table(&rig, "acme", KEY, "\"archive\", \"siem\"", ""));
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
    assert!(fake.events().is_empty());
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
            assert_eq!(e["eventType"], "isolationUsage");
            serde_json::to_string(&e["event"]).unwrap()
        })
        .collect();
    let start = first_start(&rig, KEY);
    let want: Vec<String> = rig
        .sim
        .sim
        .isolation_records(KEY, start, cp + 1)
        .into_iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r).unwrap();
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    assert_once(&got, &want);
}

#[test]
fn check_names_the_key_of_each_isolation_mistake() {
    let base = "state_dir = \"s\"\n[sinks.archive]\ntype = \"file\"\npath = \"e\"\n";
    let cases = [
        (
            "[tenants.i]\nproduct = \"isolation\"\nsinks = [\"archive\"]\n",
            "tenants.i.api_key",
            "exactly one of api_key",
        ),
        (
            "[tenants.i]\nproduct = \"isolation\"\napi_key = \"k\"\nbase_url = \"https://proofpointisolation.com/api/v2/reporting/usage-data?key=k\"\nsinks = [\"archive\"]\n",
            "tenants.i.base_url",
            "has a path",
        ),
        (
            "[tenants.i]\nproduct = \"isolation\"\napi_key = \"k\"\npage_size = 20000\nsinks = [\"archive\"]\n",
            "tenants.i.page_size",
            "between 1 and 10000",
        ),
        (
            "[tenants.i]\nproduct = \"isolation\"\napi_key = \"k\"\nca_file = \"/x.pem\"\nsinks = [\"archive\"]\n",
            "tenants.i.ca_file",
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
    let ok = format!("{base}[tenants.i]\nproduct = \"isolation\"\napi_key_env = \"ACME_ISOLATION_KEY\"\nsinks = [\"archive\"]\n");
    let c = tapfwd::Config::from_toml_with_env(&ok, std::iter::empty()).unwrap();
    assert_eq!(c.tenants["i"].base_url(), "https://proofpointisolation.com");
}

/// The real binary, killed with SIGKILL in the middle of an Isolation backlog, then run to the
/// end: every record once, and the key in none of its log lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_isolation_backlog_then_every_record_once() {
    let mut rig = Rig::builder()
        .system_clock()
        .poll("interval = \"1m\"\ninitial_lookback = \"7d\"")
        .build()
        .await;
    rig.sim.sim.serve_isolation(SimIsolation::new(KEY, 300));
    rig.text.push_str(&iso_table(
        &rig,
        "acme",
        KEY,
        "\"archive\"",
        "slice = \"2h\"",
    ));
    // Errors that quote the URL, logged by the real binary.
    rig.sim.sim.inject_isolation(
        KEY,
        [Fault::EchoCredentials(502), Fault::EchoCredentials(503)],
    );
    let config = rig.write_config();
    let log = rig.scratch.path("run.log");
    let spawn = || {
        tapfwd()
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "debug")
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log)
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    for threshold in [2_000_000u64, 8_000_000] {
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
    let target = chrono::Utc::now().timestamp() - 400;
    let n = rig.sim.sim.isolation_records(KEY, start, target).len();
    wait_for_tenant_lines(&rig.events, [("acme".to_string(), n)].into()).await;
    sigterm(&mut child);
    let got = records(&rig, "acme");
    let latest = got
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_str(r).unwrap();
            chrono::DateTime::parse_from_rfc3339(v["date"].as_str().unwrap())
                .unwrap()
                .timestamp()
        })
        .max()
        .unwrap();
    assert_once(&got, &rig.sim.sim.isolation_records(KEY, start, latest + 1));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("[redacted]"), "the quoted URL's key, scrubbed");
    for form in key_forms() {
        assert!(!log.contains(&form), "the key in the log");
    }
}
