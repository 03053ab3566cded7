//! ITM reports against the simulator's report API and token endpoint: each record type's
//! backlog paged by the `risingValue` cursor and delivered once (the inclusive boundary record,
//! unordered and duplicated rows all recognised), one token shared by a tenant's reports and
//! renewed when it expires, bad credentials on one tenant while another goes on, faults survived
//! exactly once, a sink down then caught up, the real binary killed with SIGKILL mid-backlog,
//! `tapfwd rewind` moving each report's cursor, and `check` naming each mistake by key.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::daemon::{any_file_holds, file_len, sigterm, spawn_run, tapfwd, wait_until};
use support::fakes::{self, Fake};
use support::*;
use tapfwd::clock::{Clock, ManualClock};
use tapfwd::simulate::itm::SimItm;
use tapfwd::simulate::{Fault, SimConfig, Simulator};

struct Itm {
    sim: Simulator,
    _server: Arc<tapfwd::simulate::SimServer>,
    scratch: Scratch,
    clock: Clock,
    manual: Option<Arc<ManualClock>>,
    text: String,
}

impl Itm {
    async fn new(accounts: Vec<SimItm>, tables: &str, system_clock: bool) -> Itm {
        let (clock, manual) = if system_clock {
            (Clock::System, None)
        } else {
            let (c, m) = Clock::manual(t0());
            (c, Some(m))
        };
        let sim = Simulator::new(
            SimConfig {
                seed: 9,
                itm: accounts,
                ..SimConfig::default()
            },
            clock.clone(),
        );
        let server = Arc::new(sim.bind("127.0.0.1:0".parse().unwrap()).await.unwrap());
        let addr = format!("http://{}", server.addr);
        let scratch = Scratch::new();
        let text = format!(
            "state_dir = {:?}\n[sinks.archive]\ntype = \"file\"\npath = {:?}\n{}",
            scratch.path("state").display().to_string(),
            scratch.path("events.ndjson").display().to_string(),
            tables.replace("{addr}", &addr)
        );
        Itm {
            sim,
            _server: server,
            scratch,
            clock,
            manual,
            text,
        }
    }

    async fn start(&self) -> Running {
        Running::start(parse_config(&self.text), self.clock.clone()).await
    }

    fn events(&self) -> std::path::PathBuf {
        self.scratch.path("events.ndjson")
    }
}

fn table(id: &str, client: &str, secret: &str, extra: &str) -> String {
    format!(
        "[tenants.{id}]\nproduct = \"itm\"\nbase_url = \"{{addr}}\"\nclient_id = \"{client}\"\nclient_secret = \"{secret}\"\ntypes = [\"alert\", \"audit\"]\npage_size = 100\nsinks = [\"archive\"]\n{extra}\n"
    )
}

/// The raw records of tenant `id` of kind `kind` in the file sink.
fn records(path: &Path, id: &str, kind: &str) -> Vec<Vec<u8>> {
    read_lines(path)
        .into_iter()
        .filter(|l| l.tenant == id && l.event_type == kind)
        .map(|l| l.raw)
        .collect()
}

fn assert_once(got: &[Vec<u8>], want: &[Vec<u8>]) {
    let set: HashSet<&Vec<u8>> = got.iter().collect();
    assert_eq!(set.len(), got.len(), "a record was delivered twice");
    let missing = want.iter().filter(|w| !set.contains(w)).count();
    assert_eq!(missing, 0, "{missing} of {} records lost", want.len());
}

fn idle(s: &[tapfwd::status::TenantStatus], id: &str, now: chrono::DateTime<chrono::Utc>) -> bool {
    s.iter().any(|t| {
        t.tenant == id
            && t.next_poll_at
                .as_deref()
                .and_then(|a| chrono::DateTime::parse_from_rfc3339(a).ok())
                .is_some_and(|a| a > now)
    })
}

/// Advances the clock `steps` times by `step`, each time waiting for the sources `ids`.
async fn steps(running: &Running, manual: &ManualClock, ids: &[&str], step: Duration, n: usize) {
    for _ in 0..n {
        manual.advance(step);
        let now = manual.now();
        running
            .wait_for("the reports to wait for their next step", |s| {
                ids.iter().all(|id| idle(s, id, now))
            })
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_report_is_paged_by_its_cursor_once_and_bad_credentials_hold_one_tenant() {
    let mut messy = SimItm::new("c-acme", "s-acme-secret", 120);
    messy.unordered = true;
    messy.duplicates = true;
    messy.client.token_lifetime = Duration::from_secs(600);
    let itm = Itm::new(
        vec![messy, SimItm::new("c-bad", "s-bad-right", 10)],
        &format!(
            "{}{}",
            table("acme", "c-acme", "s-acme-secret", ""),
            table("bad", "c-bad", "s-bad-wrong", "")
        ),
        false,
    )
    .await;
    let (sim, manual) = (itm.sim.clone(), itm.manual.clone().unwrap());
    let running = itm.start().await;
    let ids = ["acme:itm.alert", "acme:itm.audit"];
    running
        .wait_for("both reports ok and bad failed", |s| {
            ids.iter()
                .all(|id| s.iter().any(|t| t.tenant == *id && t.state == "ok"))
                && s.iter()
                    .filter(|t| t.tenant.starts_with("bad:"))
                    .all(|t| t.state == "failed")
        })
        .await;
    steps(&running, &manual, &ids, Duration::from_secs(60), 3).await;
    let since = (t0().timestamp() - 86_400) * 1000;
    for (kind, report) in [("itmAlert", "alerts"), ("itmAudit", "audit")] {
        let got = records(&itm.events(), "acme", kind);
        let want = sim.itm_records("c-acme", report, since, manual.now());
        assert!(want.len() > 2800, "{}", want.len());
        assert_once(&got, &want);
    }
    // Pages of 100 from the cursor: each next `since` is the greatest risingValue before it.
    let log = sim.oauth_log("c-acme");
    let pages = log
        .iter()
        .filter(|r| r.path.ends_with("/alerts/data"))
        .count();
    assert!(pages >= 29, "{pages} pages");
    assert!(log.iter().all(|r| r.status == 200), "{log:?}");
    // One token for both reports, renewed as it expires (every 10 minutes).
    let issued = sim.tokens_issued("c-acme");
    assert!(
        (1..=2).contains(&issued),
        "{issued} tokens for a few minutes"
    );
    steps(&running, &manual, &ids, Duration::from_secs(300), 6).await;
    assert!(sim.tokens_issued("c-acme") >= 3);
    let bad = running.board.get("bad:itm.alert").unwrap();
    let e = bad.last_error.unwrap();
    assert!(
        e.contains("refused the client id and secret") && !e.contains("s-bad-wrong"),
        "{e}"
    );
    assert_eq!(sim.tokens_issued("c-bad"), 0);
    let board = running.board.snapshot();
    running.stop().await;
    // Neither the secret nor a token reached the store, status or the output.
    for needle in [&b"s-acme-secret"[..], b"s-bad-wrong", b"tok-"] {
        assert!(!any_file_holds(&itm.scratch.path("state"), needle));
    }
    let status = serde_json::to_string(&board).unwrap();
    assert!(
        !status.contains("tok-") && !status.contains("s-bad-wrong"),
        "{status}"
    );
    assert!(
        status.contains("refused the client id and secret"),
        "{status}"
    );
    for (kind, report) in [("itmAlert", "alerts"), ("itmAudit", "audit")] {
        let got = records(&itm.events(), "acme", kind);
        let want = sim.itm_records(
            "c-acme",
            report,
            since,
            manual.now() - chrono::Duration::minutes(5),
        );
        assert_once(&got, &want);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_a_sink_down_end_with_every_record_once() {
    let fake = Fake::default();
    for _ in 0..10_000 {
        fake.push_fault(fakes::Fault::new(503, "down for maintenance"));
    }
    let addr = fakes::plain(&fake).await;
    let tables = table("acme", "c-acme", "s-acme-secret", "types = [\"alert\"]")
        .replace("types = [\"alert\", \"audit\"]\n", "")
        .replace("sinks = [\"archive\"]", "sinks = [\"archive\", \"siem\"]");
    let itm = Itm::new(
        vec![SimItm::new("c-acme", "s-acme-secret", 60)],
        &format!(
            "{tables}[sinks.siem]\ntype = \"http\"\nurl = \"http://{addr}/ingest\"\nretry = {{ initial_backoff = \"10ms\", max_backoff = \"20ms\", max_time = \"100ms\" }}\n"
        ),
        false,
    )
    .await;
    let (sim, manual) = (itm.sim.clone(), itm.manual.clone().unwrap());
    sim.inject_oauth(
        "c-acme",
        [
            Fault::Status(503),
            Fault::ResetBeforeHeaders,
            Fault::ResetMidBody,
            Fault::TruncatedBody,
            Fault::MalformedBody,
            Fault::Status(429),
        ],
    );
    let running = itm.start().await;
    let id = ["acme:itm.alert"];
    steps(&running, &manual, &id, Duration::from_secs(120), 30).await;
    assert!(fake.events().is_empty());
    fake.with(|s| s.faults.clear());
    steps(&running, &manual, &id, Duration::from_secs(600), 6).await;
    running
        .wait_for("siem to catch up", |s| {
            s.iter()
                .any(|t| t.tenant == id[0] && t.sinks.iter().all(|k| !k.failing))
        })
        .await;
    running.stop().await;
    let want = sim.itm_records("c-acme", "alerts", (t0().timestamp() - 86_400) * 1000, t0());
    assert_once(&records(&itm.events(), "acme", "itmAlert"), &want);
    let siem: Vec<Vec<u8>> = fake
        .events()
        .iter()
        .map(|e| serde_json::to_vec(&e["event"]).unwrap())
        .collect();
    let want: Vec<Vec<u8>> = want
        .iter()
        .map(|w| serde_json::to_vec(&serde_json::from_slice::<Value>(w).unwrap()).unwrap())
        .collect();
    assert_once(&siem, &want);
    let faults = sim
        .oauth_log("c-acme")
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert_eq!(faults, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_backlog_then_every_record_once_and_rewind_moves_each_cursor() {
    let itm = Itm::new(
        vec![SimItm::new("c-acme", "s-acme-secret", 600)],
        &table(
            "acme",
            "c-acme",
            "s-acme-secret",
            "initial_lookback = \"5d\"\ninterval = \"10s\"",
        ),
        true,
    )
    .await;
    let config = itm.scratch.path("tapfwd.toml");
    std::fs::write(&config, &itm.text).unwrap();
    let events = itm.events();
    let started = chrono::Utc::now().timestamp();
    for threshold in [300_000u64, 3_000_000] {
        let mut child = spawn_run(&config, &itm.scratch.path("run.log"));
        let e = events.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("the file to grow", Duration::from_secs(120), || {
                file_len(&e) >= threshold
            })
        })
        .await
        .unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let mut child = spawn_run(&config, &itm.scratch.path("run.log"));
    let since = (started - 5 * 86_400) * 1000;
    let want = itm
        .sim
        .itm_records("c-acme", "alerts", since + 60_000, chrono::Utc::now());
    let e = events.clone();
    let w = want.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("every record", Duration::from_secs(300), || {
            let got: HashSet<Vec<u8>> = records(&e, "acme", "itmAlert").into_iter().collect();
            w.iter().all(|r| got.contains(r))
        })
    })
    .await
    .unwrap();
    sigterm(&mut child);
    let got = records(&events, "acme", "itmAlert");
    assert_once(&got, &want);

    // Rewind: each report's cursor goes back; with --no-dedupe the hour comes again.
    let out = tapfwd()
        .args(["rewind", "--config"])
        .arg(&config)
        .args(["--tenant", "acme", "--to", "1h", "--no-dedupe"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("acme:itm.alert -> archive: checkpoint moved"),
        "{text}"
    );
    assert!(
        text.contains("acme:itm.audit -> archive: checkpoint moved"),
        "{text}"
    );
    let before = got.len();
    let mut child = spawn_run(&config, &itm.scratch.path("run2.log"));
    let e = events.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("the hour again", Duration::from_secs(120), || {
            records(&e, "acme", "itmAlert").len() >= before + 500
        })
    })
    .await
    .unwrap();
    sigterm(&mut child);
    let log = std::fs::read_to_string(itm.scratch.path("run.log")).unwrap();
    assert!(
        !log.contains("s-acme-secret") && !log.contains("tok-"),
        "a secret in the log"
    );
}

#[test]
fn check_names_the_key_of_each_itm_mistake() {
    let base = "state_dir = \"s\"\n[sinks.archive]\ntype = \"file\"\npath = \"e\"\n";
    let t = "[tenants.i]\nproduct = \"itm\"\nsinks = [\"archive\"]\nclient_id = \"x\"\n";
    let url = "base_url = \"https://acme.explore.proofpoint.com\"\n";
    let cases = [
        (format!("{t}client_secret = \"y\"\n"), "tenants.i.base_url"),
        (format!("{t}{url}"), "tenants.i.client_secret"),
        (
            format!("{t}client_secret = \"y\"\nbase_url = \"https://acme.explore.proofpoint.com/v2/apis\"\n"),
            "tenants.i.base_url",
        ),
        (format!("{t}{url}client_secret = \"y\"\ntypes = []\n"), "tenants.i.types"),
        (format!("{t}{url}client_secret = \"y\"\ntypes = [\"alerts\"]\n"), "tenants.i.types"),
        (format!("{t}{url}client_secret = \"y\"\npage_size = 5\n"), "tenants.i.page_size"),
        (
            format!("{t}{url}client_secret = \"y\"\n[tenants.i.reports]\nalert = \"a/b\"\n"),
            "tenants.i.reports.alert",
        ),
        (format!("{t}{url}client_secret = \"y\"\nlookback = \"1d\"\n"), "tenants.i.lookback"),
    ];
    for (tenant, key) in cases {
        let text = format!("{base}{tenant}");
        let e = tapfwd::Config::from_toml_with_env(&text, std::iter::empty())
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{key}: {e}");
    }
    let ok = format!(
        "{base}{t}{url}client_secret = \"y\"\n[tenants.i.reports]\nalert = \"alerts_v2\"\n"
    );
    let c = tapfwd::Config::from_toml_with_env(&ok, std::iter::empty()).unwrap();
    assert_eq!(
        tapfwd::sources::plan("i", &c.tenants["i"])
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        [
            "i:itm.user_activity",
            "i:itm.alert",
            "i:itm.audit",
            "i:itm.system_event"
        ]
    );
}

/// `tapfwd recover` after the store is lost: each report's records are read back from the file
/// sink (their keys and cursor), and the reports go on without delivering any of them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_reads_each_reports_cursor_back_and_nothing_comes_twice() {
    let itm = Itm::new(
        vec![SimItm::new("c-acme", "s-acme-secret", 120)],
        &table("acme", "c-acme", "s-acme-secret", ""),
        false,
    )
    .await;
    let manual = itm.manual.clone().unwrap();
    let ids = ["acme:itm.alert", "acme:itm.audit"];
    let running = itm.start().await;
    steps(&running, &manual, &ids, Duration::from_secs(60), 2).await;
    running.stop().await;
    let before = records(&itm.events(), "acme", "itmAlert").len();
    std::fs::remove_dir_all(itm.scratch.path("state")).unwrap();
    let config = itm.scratch.path("tapfwd.toml");
    std::fs::write(&config, &itm.text).unwrap();
    let out = tapfwd()
        .args(["recover", "--config"])
        .arg(&config)
        .args(["--sink", "archive"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(&format!(
            "acme:itm.alert -> archive: {before} event(s) in the file"
        )),
        "{text}"
    );
    let running = itm.start().await;
    steps(&running, &manual, &ids, Duration::from_secs(60), 3).await;
    running.stop().await;
    for (kind, report) in [("itmAlert", "alerts"), ("itmAudit", "audit")] {
        let want = itm.sim.itm_records(
            "c-acme",
            report,
            (t0().timestamp() - 86_400) * 1000,
            manual.now() - chrono::Duration::minutes(3),
        );
        assert_once(&records(&itm.events(), "acme", kind), &want);
    }
}
