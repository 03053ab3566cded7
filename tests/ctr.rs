//! CTR incidents against the simulator's Threat Protection API and token endpoint: a backlog
//! delivered once with every request inside the API's rules (one state group each, pages of at
//! most 200, the filter's time layout), updates collected as new facts and exact repeats
//! dropped, bad credentials on one tenant while another goes on (no retry loop), tokens renewed
//! before expiry and after a revocation, the per-minute budget kept without a 429, faults
//! (429, 5xx, resets, truncated and garbled bodies) survived exactly once, a sink down then
//! caught up, the real binary killed with SIGKILL mid-backlog, `check` naming each mistake by
//! key, and `check --connect` with an echoing proxy that never shows the secret or the token.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::daemon::{any_file_holds, file_len, sigterm, spawn_run, tapfwd, wait_until};
use support::fakes::{self, Fake};
use support::*;
use tapfwd::clock::{Clock, ManualClock};
use tapfwd::simulate::ctr::SimCtr;
use tapfwd::simulate::{Fault, SimConfig, Simulator};

/// A simulator of CTR accounts, a scratch directory and a config for them.
struct Ctr {
    sim: Simulator,
    _server: Arc<tapfwd::simulate::SimServer>,
    addr: String,
    scratch: Scratch,
    clock: Clock,
    manual: Option<Arc<ManualClock>>,
    text: String,
}

impl Ctr {
    /// `accounts` served; the config's tenants are `tables` (with `{addr}` for the simulator).
    async fn new(accounts: Vec<SimCtr>, tables: &str, system_clock: bool) -> Ctr {
        let (clock, manual) = if system_clock {
            (Clock::System, None)
        } else {
            let (c, m) = Clock::manual(t0());
            (c, Some(m))
        };
        let sim = Simulator::new(
            SimConfig {
                seed: 5,
                ctr: accounts,
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
        Ctr {
            sim,
            _server: server,
            addr,
            scratch,
            clock,
            manual,
            text,
        }
    }

    fn manual(&self) -> Arc<ManualClock> {
        self.manual.clone().unwrap()
    }

    async fn start(&self) -> Running {
        Running::start(parse_config(&self.text), self.clock.clone()).await
    }

    fn events(&self) -> std::path::PathBuf {
        self.scratch.path("events.ndjson")
    }
}

/// A `[tenants.ID]` table of a CTR tenant on the simulator.
fn table(id: &str, client: &str, secret: &str, extra: &str) -> String {
    format!(
        "[tenants.{id}]\nproduct = \"ctr\"\nbase_url = \"{{addr}}\"\ntoken_url = \"{{addr}}/v1/token\"\nclient_id = \"{client}\"\nclient_secret = \"{secret}\"\ninitial_lookback = \"2d\"\nsinks = [\"archive\"]\n{extra}\n"
    )
}

/// The raw incidents of tenant `id` in the file sink, in order.
fn incidents(path: &Path, id: &str) -> Vec<Vec<u8>> {
    read_lines(path)
        .into_iter()
        .filter(|l| l.tenant == id)
        .map(|l| {
            assert_eq!(l.event_type, "ctrIncident");
            l.raw
        })
        .collect()
}

/// The incidents' ids.
fn ids(raws: &[Vec<u8>]) -> HashSet<i64> {
    raws.iter()
        .map(|r| {
            serde_json::from_slice::<Value>(r).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

fn assert_no_repeats(got: &[Vec<u8>]) {
    let set: HashSet<&Vec<u8>> = got.iter().collect();
    assert_eq!(set.len(), got.len(), "an incident was delivered twice");
}

/// Waits until tenant `id` is `ok` and its next poll is after the clock's now.
async fn caught_up(running: &Running, id: &str, now: chrono::DateTime<chrono::Utc>) {
    running
        .wait_for(&format!("{id} to be caught up"), |s| {
            s.iter().any(|t| {
                t.tenant == id
                    && t.state == "ok"
                    && t.next_poll_at
                        .as_deref()
                        .and_then(|a| chrono::DateTime::parse_from_rfc3339(a).ok())
                        .is_some_and(|a| a > now)
            })
        })
        .await;
}

/// Advances the manual clock in `step`s until `id` is caught up at the new instant.
async fn run_until_caught_up(
    running: &Running,
    manual: &ManualClock,
    id: &str,
    step: Duration,
    steps: usize,
) {
    for _ in 0..steps {
        manual.advance(step);
        let now = manual.now();
        let ok = running.board.snapshot().iter().any(|t| {
            t.tenant == id
                && t.state == "ok"
                && t.next_poll_at
                    .as_deref()
                    .and_then(|a| chrono::DateTime::parse_from_rfc3339(a).ok())
                    .is_some_and(|a| a > now)
        });
        if ok {
            continue;
        }
        running
            .wait_for("the tenant to wait for its next step", |s| {
                s.iter().any(|t| {
                    t.tenant == id
                        && t.next_poll_at
                            .as_deref()
                            .and_then(|a| chrono::DateTime::parse_from_rfc3339(a).ok())
                            .is_some_and(|a| a > now)
                })
            })
            .await;
    }
    caught_up(running, id, manual.now()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_is_delivered_once_updates_are_new_facts_and_bad_credentials_hold_one_tenant() {
    let ctr = Ctr::new(
        vec![
            SimCtr::new("c-acme", "s-acme-secret", 120),
            SimCtr::new("c-bad", "s-bad-right", 6),
        ],
        &format!(
            "{}{}",
            table(
                "acme",
                "c-acme",
                "s-acme-secret",
                "requests_per_minute = 1000"
            ),
            table("bad", "c-bad", "s-bad-wrong-secret", "")
        ),
        false,
    )
    .await;
    let (sim, manual) = (ctr.sim.clone(), ctr.manual());
    let running = ctr.start().await;
    caught_up(&running, "acme", manual.now()).await;
    running
        .wait_for("bad to fail on its credentials", |s| {
            s.iter().any(|t| t.tenant == "bad" && t.state == "failed")
        })
        .await;
    let t0s = t0().timestamp();

    // Every incident of the two days, as it was, once.
    let got = incidents(&ctr.events(), "acme");
    assert_no_repeats(&got);
    let want = sim.ctr_incidents("c-acme", t0s - 2 * 86_400, t0s, t0());
    assert!(want.len() > 5000, "{}", want.len());
    let set: HashSet<&Vec<u8>> = got.iter().collect();
    let missing = want.iter().filter(|w| !set.contains(w)).count();
    assert_eq!(missing, 0, "{missing} of {} incidents lost", want.len());

    // Every request within the API's rules: one state group, at most 200 rows, the layout.
    let log = sim.oauth_log("c-acme");
    let api: Vec<Value> = log
        .iter()
        .filter(|r| r.path == "/api/v1/tric/incidents")
        .map(|r| {
            assert_eq!(r.status, 200, "{r:?}");
            serde_json::from_str(&r.query).unwrap()
        })
        .collect();
    assert!(api.len() > 20, "{} requests: pages of 200", api.len());
    for b in &api {
        assert_eq!(
            b["filters"]["state_group_filter"].as_array().unwrap().len(),
            1,
            "{b}"
        );
        assert!(b["endRow"].as_u64().unwrap() - b["startRow"].as_u64().unwrap() <= 200);
        let start = b["filters"]["time_range_filter"]["start"].as_str().unwrap();
        assert!(
            chrono::NaiveDateTime::parse_from_str(start, "%Y-%m-%d %H:%M:%S").is_ok(),
            "{start}"
        );
    }
    assert_eq!(sim.tokens_issued("c-acme"), 1, "one token, cached");

    // The bad tenant: a credentials failure named without its secret, and no retry loop.
    let bad = running.board.get("bad").unwrap();
    let e = bad.last_error.clone().unwrap();
    assert!(e.contains("refused the client id and secret"), "{e}");
    assert!(!e.contains("s-bad-wrong-secret"), "{e}");

    // Three hours on: the incidents that were open are closed, each update delivered once.
    run_until_caught_up(&running, &manual, "acme", Duration::from_secs(300), 36).await;
    let got = incidents(&ctr.events(), "acme");
    assert_no_repeats(&got);
    let now = manual.now();
    let set: HashSet<&Vec<u8>> = got.iter().collect();
    let updated = sim.ctr_incidents(
        "c-acme",
        now.timestamp() - 86_400,
        now.timestamp() - 600,
        now,
    );
    let missing = updated.iter().filter(|w| !set.contains(w)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} incidents' current state lost",
        updated.len()
    );
    let mut states: HashMap<i64, Vec<String>> = HashMap::new();
    for raw in &got {
        let v: Value = serde_json::from_slice(raw).unwrap();
        states
            .entry(v["id"].as_i64().unwrap())
            .or_default()
            .push(v["state"].as_str().unwrap().to_string());
    }
    let changed = states
        .values()
        .filter(|s| s.as_slice() == ["open", "closed"])
        .count();
    assert!(changed > 100, "{changed} incidents seen open then closed");
    assert!(
        states.values().all(|s| s.len() <= 2),
        "an exact repeat was delivered"
    );

    // Still no token for the bad tenant, and its token requests did not loop: one per
    // poll.max_backoff (10 minutes), as a TAP tenant's refused credentials.
    let tries: Vec<i64> = sim
        .oauth_log("c-bad")
        .iter()
        .filter(|r| r.query == "token")
        .map(|r| r.at.timestamp())
        .collect();
    assert!(
        tries.len() <= 19,
        "{} token requests in three hours",
        tries.len()
    );
    assert!(tries.windows(2).all(|w| w[1] - w[0] >= 600), "{tries:?}");
    let board = serde_json::to_string(&running.board.snapshot()).unwrap();
    assert!(
        !board.contains("tok-") && !board.contains("s-bad-wrong-secret"),
        "{board}"
    );
    assert_eq!(sim.tokens_issued("c-bad"), 0);
    running.stop().await;
    // Neither a secret nor a token reached the store.
    for needle in [&b"s-acme-secret"[..], b"s-bad-wrong-secret", b"tok-"] {
        assert!(!any_file_holds(&ctr.scratch.path("state"), needle));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minute_budget_keeps_ctr_from_429s_and_tokens_are_renewed() {
    let mut account = SimCtr::new("c-acme", "s-acme-secret", 120);
    account.requests_per_minute = Some(10);
    account.client.token_lifetime = Duration::from_secs(600);
    let ctr = Ctr::new(
        vec![account],
        &table("acme", "c-acme", "s-acme-secret", ""),
        false,
    )
    .await;
    let (sim, manual) = (ctr.sim.clone(), ctr.manual());
    let running = ctr.start().await;
    running
        .wait_for("the first minute's requests to be spent", |s| {
            s.iter().any(|t| t.tenant == "acme" && t.requests_24h == 10)
        })
        .await;
    run_until_caught_up(&running, &manual, "acme", Duration::from_secs(60), 60).await;
    // A revoked token (an expiry not foreseen) is replaced after one 401.
    sim.revoke_tokens("c-acme");
    run_until_caught_up(&running, &manual, "acme", Duration::from_secs(300), 4).await;
    let board = running.board.get("acme").unwrap();
    assert_eq!(board.state, "ok", "{board:?}");
    running.stop().await;

    let log = sim.oauth_log("c-acme");
    assert!(log.iter().all(|r| r.status != 429), "no 429: {log:?}");
    let got = incidents(&ctr.events(), "acme");
    assert_no_repeats(&got);
    let want = sim.ctr_incidents(
        "c-acme",
        t0().timestamp() - 2 * 86_400,
        t0().timestamp(),
        t0(),
    );
    let (got_ids, want_ids) = (ids(&got), ids(&want));
    assert!(
        want_ids.is_subset(&got_ids),
        "{} lost",
        want_ids.difference(&got_ids).count()
    );
    // Tokens of 10 minutes were renewed before they expired, and after the revocation.
    let issued = sim.tokens_issued("c-acme");
    assert!(issued >= 3, "{issued} tokens");
    let unauthorized = log.iter().filter(|r| r.status == 401).count();
    assert!(unauthorized <= 1, "{unauthorized} requests refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_retried_and_every_incident_arrives_once() {
    let ctr = Ctr::new(
        vec![SimCtr::new("c-acme", "s-acme-secret", 60)],
        &table(
            "acme",
            "c-acme",
            "s-acme-secret",
            "requests_per_minute = 1000",
        ),
        false,
    )
    .await;
    let (sim, manual) = (ctr.sim.clone(), ctr.manual());
    sim.inject_oauth(
        "c-acme",
        [
            Fault::Status(503),
            Fault::ResetBeforeHeaders,
            Fault::ResetMidBody,
            Fault::TruncatedBody,
            Fault::MalformedBody,
            Fault::Status(429),
            Fault::Status(500),
        ],
    );
    sim.inject_token("c-acme", [Fault::Status(502)]);
    let running = ctr.start().await;
    run_until_caught_up(&running, &manual, "acme", Duration::from_secs(120), 60).await;
    running.stop().await;
    let got = incidents(&ctr.events(), "acme");
    assert_no_repeats(&got);
    let want = sim.ctr_incidents(
        "c-acme",
        t0().timestamp() - 2 * 86_400,
        t0().timestamp(),
        t0(),
    );
    let (got_ids, want_ids) = (ids(&got), ids(&want));
    assert!(
        want_ids.is_subset(&got_ids),
        "{} lost",
        want_ids.difference(&got_ids).count()
    );
    let faults = sim
        .oauth_log("c-acme")
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert_eq!(faults, 8, "every fault was met");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_holds_its_checkpoint_then_catches_up_once() {
    let fake = Fake::default();
    for _ in 0..10_000 {
        fake.push_fault(fakes::Fault::new(503, "down for maintenance"));
    }
    let addr = fakes::plain(&fake).await;
    let tables = table(
        "acme",
        "c-acme",
        "s-acme-secret",
        "requests_per_minute = 1000",
    )
    .replace("sinks = [\"archive\"]", "sinks = [\"archive\", \"siem\"]");
    let ctr = Ctr::new(
        vec![SimCtr::new("c-acme", "s-acme-secret", 30)],
        &format!(
            "{tables}[sinks.siem]\ntype = \"http\"\nurl = \"http://{addr}/ingest\"\nretry = {{ initial_backoff = \"10ms\", max_backoff = \"20ms\", max_time = \"100ms\" }}\n"
        ),
        false,
    )
    .await;
    let (sim, manual) = (ctr.sim.clone(), ctr.manual());
    let running = ctr.start().await;
    running
        .wait_for("the archive to catch up while siem is down", |s| {
            s.iter().any(|t| {
                t.tenant == "acme"
                    && t.sinks
                        .iter()
                        .any(|k| k.sink == "archive" && k.backlog_seconds < 600)
                    && t.sinks.iter().any(|k| k.sink == "siem" && k.failing)
            })
        })
        .await;
    let archived = incidents(&ctr.events(), "acme").len();
    assert!(archived > 1000);
    assert!(fake.events().is_empty());
    fake.with(|s| s.faults.clear());
    run_until_caught_up(&running, &manual, "acme", Duration::from_secs(600), 12).await;
    running
        .wait_for("siem to catch up", |s| {
            s.iter().any(|t| {
                t.tenant == "acme"
                    && t.sinks
                        .iter()
                        .all(|k| !k.failing && k.backlog_seconds < 1200)
            })
        })
        .await;
    running.stop().await;
    let archive = incidents(&ctr.events(), "acme");
    assert_no_repeats(&archive);
    let siem: Vec<Vec<u8>> = fake
        .events()
        .iter()
        .map(|e| serde_json::to_vec(&e["event"]).unwrap())
        .collect();
    let siem_set: HashSet<Vec<u8>> = siem.iter().cloned().collect();
    assert_eq!(siem_set.len(), siem.len(), "the siem got an incident twice");
    // Every incident of the backlog reached the sink that was down.
    let want = sim.ctr_incidents(
        "c-acme",
        t0().timestamp() - 2 * 86_400,
        t0().timestamp() - 7200,
        t0(),
    );
    for w in &want {
        let v: Value = serde_json::from_slice(w).unwrap();
        assert!(
            siem_set.contains(&serde_json::to_vec(&v).unwrap()),
            "lost in siem: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_backlog_then_every_incident_once() {
    let ctr = Ctr::new(
        vec![SimCtr::new("c-acme", "s-acme-secret", 240)],
        &table(
            "acme",
            "c-acme",
            "s-acme-secret",
            "requests_per_minute = 10000\nmax_window = \"6h\"",
        )
        .replace("initial_lookback = \"2d\"", "initial_lookback = \"10d\""),
        true,
    )
    .await;
    let config = ctr.scratch.path("tapfwd.toml");
    std::fs::write(&config, &ctr.text).unwrap();
    let events = ctr.events();
    let started = chrono::Utc::now().timestamp();
    for threshold in [200_000u64, 2_000_000] {
        let mut child = spawn_run(&config, &ctr.scratch.path("run.log"));
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
    let mut child = spawn_run(&config, &ctr.scratch.path("run.log"));
    let want = ctr.sim.ctr_incidents(
        "c-acme",
        started - 10 * 86_400 + 600,
        started - 7200,
        chrono::Utc::now(),
    );
    let want_ids: HashSet<i64> = want
        .iter()
        .map(|r| {
            serde_json::from_slice::<Value>(r).unwrap()["id"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let e = events.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("every incident", Duration::from_secs(300), || {
            let ids: HashSet<i64> = incidents(&e, "acme")
                .iter()
                .map(|r| {
                    serde_json::from_slice::<Value>(r).unwrap()["id"]
                        .as_i64()
                        .unwrap()
                })
                .collect();
            want_ids.is_subset(&ids)
        })
    })
    .await
    .unwrap();
    sigterm(&mut child);
    assert_no_repeats(&incidents(&events, "acme"));
    let log = std::fs::read_to_string(ctr.scratch.path("run.log")).unwrap();
    assert!(
        !log.contains("s-acme-secret") && !log.contains("tok-"),
        "a secret in the log"
    );
}

#[test]
fn check_names_the_key_of_each_ctr_mistake() {
    let base = "state_dir = \"s\"\n[sinks.archive]\ntype = \"file\"\npath = \"e\"\n";
    let t = "[tenants.c]\nproduct = \"ctr\"\nsinks = [\"archive\"]\n";
    let cases = [
        (format!("{t}client_id = \"x\"\n"), "tenants.c.client_secret"),
        (format!("{t}client_secret = \"y\"\n"), "tenants.c.client_id"),
        (
            format!("{t}client_id = \"x\"\nclient_secret = \"y\"\nclient_secret_env = \"Y\"\n"),
            "tenants.c.client_secret",
        ),
        (
            format!("{t}client_id = \"x\"\nclient_secret = \"y\"\nbase_url = \"https://threatprotection-api.proofpoint.com/api/v1/tric\"\n"),
            "tenants.c.base_url",
        ),
        (
            format!("{t}client_id = \"x\"\nclient_secret = \"y\"\ntoken_url = \"http://auth.example.com/v1/token\"\n"),
            "tenants.c.token_url",
        ),
        (
            format!("{t}client_id = \"x\"\nclient_secret = \"y\"\nrequests_per_minute = 1\n"),
            "tenants.c.requests_per_minute",
        ),
        (
            format!("{t}client_id = \"x\"\nclient_secret = \"y\"\nlookback = \"30d\"\n"),
            "tenants.c.lookback",
        ),
        (
            format!("{t}client_id = \"x\"\nclient_secret = \"y\"\nprincipal = \"p\"\n"),
            "tenants.c.principal",
        ),
        (format!("{t}client_id = \"x\"\nclient_secret = \"y\"\ncolour = 1\n"), "colour"),
    ];
    for (tenant, key) in cases {
        let text = format!("{base}{tenant}");
        let e = tapfwd::Config::from_toml_with_env(&text, std::iter::empty())
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{key}: {e}");
        assert!(!e.contains("\"y\""), "{e}");
    }
    let ok = format!("{base}{t}client_id = \"x\"\nclient_secret_env = \"CTR_SECRET\"\n");
    tapfwd::Config::from_toml_with_env(&ok, [("CTR_SECRET".to_string(), "v".to_string())])
        .map(|_| ())
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_tries_a_token_and_one_request_and_never_shows_the_secret() {
    let ctr = Ctr::new(
        vec![SimCtr::new("c-acme", "s-acme-secret", 6)],
        &format!(
            "{}{}",
            table("acme", "c-acme", "s-acme-secret", ""),
            table("bad", "c-acme", "s-acme-wrong-secret", "")
        ),
        true,
    )
    .await;
    let config = ctr.scratch.path("tapfwd.toml");
    std::fs::write(&config, &ctr.text).unwrap();
    let check = move || {
        let out = tapfwd()
            .args(["check", "--connect", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = tokio::task::spawn_blocking(check.clone()).await.unwrap();
    assert!(!ok, "{text}");
    assert!(text.contains("tenant acme: credentials accepted"), "{text}");
    assert!(
        text.contains("tenant bad: the token endpoint refused the client id and secret"),
        "{text}"
    );
    assert!(
        !text.contains("s-acme-wrong-secret") && !text.contains("s-acme-secret"),
        "{text}"
    );
    // A proxy that echoes the request's Authorization header and the secret: scrubbed.
    ctr.sim
        .inject_oauth("c-acme", [Fault::EchoCredentials(500)]);
    let (_, text) = tokio::task::spawn_blocking(check).await.unwrap();
    assert!(text.contains("tenant acme: server error (500)"), "{text}");
    assert!(text.contains("[redacted]"), "{text}");
    assert!(
        !text.contains("tok-") && !text.contains("s-acme-secret"),
        "{text}"
    );
    let _ = &ctr.addr;
}

/// The shipped Sentinel template has a custom table per source, CTR's and ITM's, each declaring
/// the columns the sink's default layout sends (those of `azuredeploy.json`), fed by its stream.
#[test]
fn the_sentinel_template_declares_a_table_per_source_with_the_sinks_columns() {
    let read = |name: &str| -> Value {
        let path = format!("{}/deploy/sentinel/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let envelope = read("azuredeploy.json");
    let names = |cols: &Value| -> Vec<String> {
        cols.as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{}:{}", c["name"], c["type"]))
            .collect()
    };
    let want = names(&envelope["variables"]["columns"]);
    let t = read("proofpoint-ctr-itm.json");
    assert_eq!(names(&t["variables"]["ctrColumns"]), want);
    assert_eq!(names(&t["variables"]["itmColumns"]), want);
    let dcr = t["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Microsoft.Insights/dataCollectionRules")
        .unwrap();
    for (stream, table) in [
        ("Custom-ProofpointCTR", "Custom-ProofpointCTR_CL"),
        ("Custom-ProofpointITM", "Custom-ProofpointITM_CL"),
    ] {
        assert_eq!(
            names(&dcr["properties"]["streamDeclarations"][stream]["columns"]),
            want
        );
        assert!(dcr["properties"]["dataFlows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["streams"][0] == stream && f["outputStream"] == table));
    }
}

/// `tapfwd recover` after the store is lost: the file sink's incidents are read back (their keys,
/// as far back as the tenant's lookback reads again), and the tenant goes on without delivering
/// any of them twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_reads_the_incidents_back_and_nothing_comes_twice() {
    let ctr = Ctr::new(
        vec![SimCtr::new("c-acme", "s-acme-secret", 60)],
        &table(
            "acme",
            "c-acme",
            "s-acme-secret",
            "requests_per_minute = 1000",
        ),
        false,
    )
    .await;
    let manual = ctr.manual();
    let running = ctr.start().await;
    caught_up(&running, "acme", manual.now()).await;
    running.stop().await;
    let before = incidents(&ctr.events(), "acme").len();
    std::fs::remove_dir_all(ctr.scratch.path("state")).unwrap();
    let config = ctr.scratch.path("tapfwd.toml");
    std::fs::write(&config, &ctr.text).unwrap();
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
        text.contains(&format!("acme -> archive: {before} event(s) in the file")),
        "{text}"
    );
    let running = ctr.start().await;
    run_until_caught_up(&running, &manual, "acme", Duration::from_secs(300), 3).await;
    running.stop().await;
    let got = incidents(&ctr.events(), "acme");
    assert_no_repeats(&got);
    assert!(got.len() >= before);
}
