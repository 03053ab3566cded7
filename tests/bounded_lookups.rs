//! Lookups and enrichment against a threat API that misbehaves (issue 20, items 1, 2, 3 and 6),
//! through the real binary or the whole App: a secret echoed across the 300th character of an
//! error body reaches neither `lookup`'s stderr nor People's status; a redirect is refused by
//! `lookup` and by enrichment instead of being followed to the other server; a pretty-printed
//! summary is made compact, so that every line of the events file is one JSON object and
//! `recover` accepts the file; 15 MB summaries are left out and counted, and cost neither memory
//! nor disk. The threat API here is the simulator behind a router that answers some paths itself.
//! Every test ports unchanged to 35b0bbe, where it fails (docs/troubleshooting.md has the figures).

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::Path as UrlPath;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;
use support::daemon::{free_port, http_get, message, metric, tapfwd, Daemon};
use support::fakes::serve;
use support::*;
use tapfwd::clock::Clock;
use tapfwd::simulate::{SimConfig, Simulator};

const P: &str = "p-acme";

/// The simulator for `tenants`, on `clock`, with nothing bound yet.
fn simulator(secret: &str, per_hour: u32, seed: u64, clock: Clock) -> Simulator {
    Simulator::new(
        SimConfig {
            seed,
            tenants: vec![tenant(P, secret, per_hour)],
            ..SimConfig::default()
        },
        clock,
    )
}

/// `routes` in front of the simulator: the paths they know are answered by them, every other by
/// the simulator. The base URL.
async fn in_front_of(sim: &Simulator, routes: Router) -> String {
    let addr = serve(routes.fallback_service(sim.router())).await;
    format!("http://{addr}")
}

/// A config file for tenant `acme` (principal [`P`], `secret`) at `base_url`, writing to the file
/// sink `archive` at `dir/events.ndjson`; `top` goes before the tables, `tables` after `[poll]`,
/// `tenant` into the tenant's table.
fn write_config(
    dir: &Path,
    base_url: &str,
    secret: &str,
    top: &str,
    tables: &str,
    tenant: &str,
) -> (PathBuf, String) {
    let text = format!(
        "state_dir = {state:?}\n{top}\n[poll]\ninterval = \"5m\"\nlag = \"30m\"\n\
         initial_lookback = \"3h\"\nbatch_events = 100\n{tables}\n\
         [sinks.archive]\ntype = \"file\"\npath = {events:?}\n\
         [tenants.acme]\nbase_url = \"{base_url}\"\nprincipal = \"{P}\"\nsecret = \"{secret}\"\n\
         sinks = [\"archive\"]\n{tenant}\n",
        state = dir.join("state").display().to_string(),
        events = dir.join("events.ndjson").display().to_string(),
    );
    let path = dir.join("tapfwd.toml");
    std::fs::write(&path, &text).unwrap();
    (path, text)
}

async fn lookup(config: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = tapfwd();
    cmd.args(["lookup", "--config"]).arg(config).args(args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// The lines of the file sink, each checked to be one JSON object.
fn json_lines(path: &Path) -> Vec<Value> {
    let data = std::fs::read(path).unwrap_or_default();
    data.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_slice(l).unwrap_or_else(|e| {
                let head = String::from_utf8_lossy(&l[..l.len().min(200)]);
                panic!("line {} is not one JSON object ({e}): {head}", i + 1)
            })
        })
        .collect()
}

/// The windows the daemon asked the simulator for: from the first's start to the last's end.
fn span(sim: &Simulator) -> (i64, i64) {
    let log = sim.request_log(P);
    let windows: Vec<_> = log.iter().filter(|r| r.path == "/v2/siem/all").collect();
    let (start, _) = parse_interval(&windows[0].query).unwrap();
    let (_, end) = parse_interval(&windows.last().unwrap().query).unwrap();
    (start, end)
}

/// An error body that repeats `secret` (and `principal:secret` in Basic form) so that it
/// straddles the 300th character when it starts at `at`.
fn echo_at(at: usize, secret: &str, basic: bool) -> String {
    let echoed = if basic {
        let pair = format!("{P}:{secret}");
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    } else {
        secret.to_string()
    };
    format!(
        "{}{echoed} was the Authorization the gateway saw",
        "x".repeat(at)
    )
}

// ---------------------------------------------------------------------------------------------
// Item 1: a secret straddling the cut of an error body.

const SECRET: &str = "TOPSECRET-lookup-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_never_prints_a_secret_echoed_across_the_cut_of_an_error_body() {
    // `/v2/threat/summary/AT` echoes the secret at character AT, `/v2/campaign/AT` the Basic
    // credentials.
    let routes = Router::new()
        .route(
            "/v2/threat/summary/:at",
            get(|UrlPath(at): UrlPath<usize>| async move {
                (StatusCode::BAD_GATEWAY, echo_at(at, SECRET, false))
            }),
        )
        .route(
            "/v2/campaign/:at",
            get(|UrlPath(at): UrlPath<usize>| async move {
                (StatusCode::BAD_GATEWAY, echo_at(at, SECRET, true))
            }),
        );
    let addr = serve(routes).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(dir.path(), &format!("http://{addr}"), SECRET, "", "", "");
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{P}:{SECRET}"));
    for (what, at) in [
        ("threat", 280),
        ("threat", 286),
        ("threat", 292),
        ("campaign", 280),
        ("campaign", 285),
    ] {
        let out = lookup(&config, &["--tenant", "acme", what, &at.to_string()]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what} {at}: {stderr}");
        assert!(
            stderr.contains("server error (502): xxx"),
            "{what} {at}: {stderr}"
        );
        assert!(!stderr.contains("TOPSEC"), "{what} {at}: {stderr}");
        assert!(!stderr.contains(&b64[..8]), "{what} {at}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peoples_status_never_shows_a_secret_echoed_across_the_cut_of_an_error_body() {
    const PEOPLE_SECRET: &str = "TOPSECRET-people-0123456789";
    let (clock, _manual) = Clock::manual(t0());
    let sim = simulator(PEOPLE_SECRET, 60, 31, clock.clone());
    let routes = Router::new().route(
        "/v2/people/vap",
        get(|| async { (StatusCode::BAD_GATEWAY, echo_at(290, PEOPLE_SECRET, false)) }),
    );
    let base_url = in_front_of(&sim, routes).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, text) = write_config(
        dir.path(),
        &base_url,
        PEOPLE_SECRET,
        "",
        "",
        "[tenants.acme.people]\nfeeds = [\"vap\"]",
    );
    let running = Running::start(parse_config(&text), clock).await;
    running
        .wait_for("the vap snapshot to fail", |s| {
            s.iter()
                .any(|t| t.tenant == "acme:people.vap" && t.last_error.is_some())
        })
        .await;
    let status = running.board.snapshot();
    running.stop().await;
    let vap = status
        .iter()
        .find(|t| t.tenant == "acme:people.vap")
        .unwrap();
    let error = vap.last_error.as_deref().unwrap();
    assert!(error.contains("502"), "{error}");
    assert!(!error.contains("TOPSEC"), "{error}");
}

// ---------------------------------------------------------------------------------------------
// Item 6: redirects are refused, not followed.

/// A server that answers every request with a JSON object, counting them.
async fn elsewhere() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let routes = Router::new().fallback(move || {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"from":"elsewhere","verdict":"benign"}"#,
            )
        }
    });
    (serve(routes).await, hits)
}

/// Routes answering every threat summary and campaign with a 302 to `target`.
fn redirecting(target: SocketAddr) -> Router {
    let to = move |UrlPath(id): UrlPath<String>| async move {
        (
            StatusCode::FOUND,
            [(header::LOCATION, format!("http://{target}/v2/x/{id}"))],
        )
            .into_response()
    };
    Router::new()
        .route("/v2/threat/summary/:id", get(to))
        .route("/v2/campaign/:id", get(to))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_refuses_a_redirect_to_another_server() {
    let (target, hits) = elsewhere().await;
    let addr = serve(redirecting(target)).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = write_config(dir.path(), &format!("http://{addr}"), "s-acme", "", "", "");
    let out = lookup(&config, &["--tenant", "acme", "threat", "t1"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.contains("redirected (302)"), "{stderr}");
    assert!(stderr.contains(&target.to_string()), "{stderr}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the other server was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrichment_refuses_a_redirect_and_the_events_go_without_it() {
    let (clock, manual) = Clock::manual(t0());
    let sim = simulator("s-acme", 60, 5, clock.clone());
    let (target, hits) = elsewhere().await;
    let base_url = in_front_of(&sim, redirecting(target)).await;
    let dir = tempfile::tempdir().unwrap();
    let (_, text) = write_config(
        dir.path(),
        &base_url,
        "s-acme",
        "",
        "",
        "enrich = [\"threats\", \"campaigns\"]",
    );
    let app = tapfwd::App::build(parse_config(&text), clock.clone())
        .await
        .unwrap();
    let metrics = app.metrics();
    let running = Running::run(app);
    running.wait_idle(1, manual.now()).await;
    running.stop().await;

    let (start, end) = span(&sim);
    let lines = json_lines(&dir.path().join("events.ndjson"));
    assert_eq!(lines.len(), expected(&sim, P, start, end).len());
    for l in &lines {
        assert!(
            l.get("threats").is_none() && l.get("campaigns").is_none(),
            "the other server's answer travels beside an event: {l}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the other server was asked");
    let text = metrics.render();
    assert!(
        text.contains(
            "tapfwd_enrichment_lookups_total{tenant=\"acme\",kind=\"threats\",status=\"redirect\"}"
        ),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 2: a pretty-printed summary.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pretty_printed_summary_keeps_one_event_per_line_and_recover_accepts_the_file() {
    let (clock, manual) = Clock::manual(t0());
    let sim = simulator("s-acme", 60, 5, clock.clone());
    let pretty = |body: Option<Vec<u8>>| match body {
        Some(b) => {
            let v: Value = serde_json::from_slice(&b).unwrap();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                serde_json::to_string_pretty(&v).unwrap() + "\n",
            )
                .into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    };
    let (s1, s2) = (sim.clone(), sim.clone());
    let routes =
        Router::new()
            .route(
                "/v2/threat/summary/:id",
                get(move |UrlPath(id): UrlPath<String>| async move {
                    pretty(s1.threat_summary(P, &id))
                }),
            )
            .route(
                "/v2/campaign/:id",
                get(move |UrlPath(id): UrlPath<String>| async move { pretty(s2.campaign(P, &id)) }),
            );
    let base_url = in_front_of(&sim, routes).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, text) = write_config(
        dir.path(),
        &base_url,
        "s-acme",
        "",
        "",
        "enrich = [\"threats\", \"campaigns\"]",
    );
    let running = Running::start(parse_config(&text), clock.clone()).await;
    running.wait_idle(1, manual.now()).await;
    running.stop().await;

    let (start, end) = span(&sim);
    let expected = expected(&sim, P, start, end);
    let events = dir.path().join("events.ndjson");
    let lines = json_lines(&events);
    assert_eq!(lines.len(), expected.len(), "one line per event");
    let mut enriched = 0;
    for l in &lines {
        for (id, summary) in l
            .get("threats")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let want: Value = serde_json::from_slice(&sim.threat_summary(P, id).unwrap()).unwrap();
            assert_eq!(summary, &want, "the summary, as the API sent it");
            enriched += 1;
        }
    }
    assert!(
        enriched >= lines.len(),
        "{enriched} summaries beside {} events",
        lines.len()
    );
    eprintln!(
        "{} events on one line each, {enriched} pretty-printed summaries beside them",
        lines.len()
    );

    // The store is lost: `recover` reads the file back.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let out = tapfwd()
        .args(["recover", "--sink", "archive", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "recover refused the file: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// Item 3: summaries of 15 MB.

/// The peak resident memory of process `pid`, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summaries_of_15_mb_are_left_out_counted_and_cost_neither_memory_nor_disk() {
    const MB15: usize = 15 << 20;
    // A valid summary of 15 MB, the same bytes for every threat.
    let mut huge = br#"{"id":"huge","name":"padding","notes":""#.to_vec();
    huge.resize(MB15 - 2, b'x');
    huge.extend_from_slice(b"\"}");
    let huge = Bytes::from(huge);
    let asked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let sim = simulator("s-acme", 4, 7, Clock::System);
    let routes = Router::new().route(
        "/v2/threat/summary/:id",
        get({
            let asked = asked.clone();
            move |UrlPath(id): UrlPath<String>| {
                let (huge, asked) = (huge.clone(), asked.clone());
                async move {
                    asked.lock().unwrap().insert(id);
                    ([(header::CONTENT_TYPE, "application/json")], huge)
                }
            }
        }),
    );
    let base_url = in_front_of(&sim, routes).await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (config, _) = write_config(
        dir.path(),
        &base_url,
        "s-acme",
        &format!("admin_listen = \"127.0.0.1:{port}\"\n[log]\nformat = \"json\""),
        "[enrichment]\ntimeout = \"60s\"\nwait = \"30s\"",
        "enrich = [\"threats\"]",
    );
    let mut daemon = Daemon::start(&config, &[], &[]);
    daemon
        .wait_log("the backlog to be caught up", |v| message(v) == "caught up")
        .await;
    let admin = format!("http://127.0.0.1:{port}");
    // The "caught up" line is logged before the tenant's status is published: read the status
    // once it says so too.
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = loop {
        let (_, status) = http_get(&format!("{admin}/status")).await;
        if status.contains("\"state\":\"ok\"") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the status never said ok: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let (_, metrics) = http_get(&format!("{admin}/metrics")).await;
    let peak = peak_rss(daemon.pid());
    let store = dir_size(&dir.path().join("state"));
    let (exit, log) = daemon.stop().await;
    assert!(exit.success(), "{log}");

    let asked = asked.lock().unwrap().len();
    let events = dir.path().join("events.ndjson");
    let file = std::fs::metadata(&events).unwrap().len();
    eprintln!(
        "{asked} summaries of 15 MB asked for: events file {file} bytes, store {store} bytes, peak memory {} MiB",
        peak >> 20
    );
    assert!(asked > 0, "no summary was asked for");
    assert!(file < 1 << 20, "the events file is {file} bytes");
    assert!(store < 4 << 20, "the store is {store} bytes");
    assert!(
        peak < 200 << 20,
        "the daemon's peak memory was {} MiB",
        peak >> 20
    );
    let (start, end) = span(&sim);
    let lines = json_lines(&events);
    assert_eq!(
        lines.len(),
        expected(&sim, P, start, end).len(),
        "every event, once"
    );
    assert!(lines.iter().all(|l| l.get("threats").is_none()));
    let dropped = metric(
        &metrics,
        "tapfwd_enrichment_dropped_total{tenant=\"acme\",kind=\"threats\",reason=\"too_large\"}",
    );
    assert_eq!(dropped, Some(asked as f64), "{metrics}");
    let status: Value = serde_json::from_str(&status).unwrap();
    let acme = status["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme")
        .unwrap()
        .clone();
    assert_eq!(acme["enrichment_dropped"], asked, "{acme}");
}
