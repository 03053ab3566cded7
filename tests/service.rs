//! Running tapfwd as a service: reload, admin endpoint, metrics, sd_notify, sharding, rewind,
//! `tapfwd status` against a running daemon, the systemd unit and the deploy files.
//!
//! The TAP API here is a small stand-in ([`support::tap::FakeTap`]) so these tests need nothing
//! else: one `messagesDelivered` event per minute per tenant, at second 30, whose bytes depend only
//! on the tenant and the minute; 401 for a wrong secret. Tests wait on conditions (the status
//! board, the daemon's JSON log lines, its sd_notify datagrams), never on sleeps; a manual clock
//! moves time where a test needs the next window.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tokio_util::sync::CancellationToken;

use support::daemon::{
    free_port, http_get, message, metric, notify_socket, recv_notify, recv_notify_until, tapfwd,
    Daemon, BIN,
};
use support::tap::{service_config, tap_tenant, tenant_table, FakeTap};
use support::{all_ok, guids, sink_lines, Running};
use tapfwd::clock::Clock;
use tapfwd::config::Config;
use tapfwd::status::TenantStatus;
use tapfwd::store::Store;
use tapfwd::App;

/// A secret distinctive enough that finding it anywhere means it leaked.
const SECRET: &str = "S3cr3t-7f3a9c-never-show-me";
const WRONG_SECRET: &str = "Wr0ng-b41d2e-never-show-me";

/// The manual clock's start for these tests.
fn start_clock() -> (Clock, Arc<tapfwd::clock::ManualClock>) {
    Clock::manual(Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 5).unwrap())
}

// ---------------------------------------------------------------------------------------------
// Reload.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_removes_and_changes_tenants_and_rejects_a_broken_config() {
    let tap = FakeTap::start(&[("a", "s-a"), ("b", "s-b"), ("c", "s-c"), ("d", "s-d")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    let first = service_config(
        dir.path(),
        tap.addr,
        "",
        "2h",
        &["out1"],
        &[
            tap_tenant("a", "s-a", &["out1"]),
            tap_tenant("b", "s-b", &["out1"]),
            tap_tenant("d", "s-d", &["out1"]),
        ],
    );
    std::fs::write(&path, &first).unwrap();
    let (clock, manual) = start_clock();
    let app = App::build(Config::load(&path).unwrap(), clock)
        .await
        .unwrap();
    let board = app.status();
    let metrics = app.metrics();
    let reloader = app.reloader();
    let running = Running::run(app);
    running
        .wait_for("a, b and d caught up", all_ok(&["a", "b", "d"]))
        .await;
    let a_windows = board.get("a").unwrap().windows_fetched;
    assert!(a_windows > 0);

    // b removed, c added, d moved to a new sink, a untouched.
    let second = service_config(
        dir.path(),
        tap.addr,
        "",
        "2h",
        &["out1", "out2"],
        &[
            tap_tenant("a", "s-a", &["out1"]),
            tap_tenant("c", "s-c", &["out1"]),
            tap_tenant("d", "s-d", &["out2"]),
        ],
    );
    std::fs::write(&path, &second).unwrap();
    let summary = reloader.reload_file(&path, None).await.unwrap();
    assert_eq!(summary.tenants_added, ["c"]);
    assert_eq!(summary.tenants_removed, ["b"]);
    assert_eq!(summary.tenants_changed, ["d"]);
    assert_eq!(summary.sinks_added, ["out2"]);
    assert!(summary.tenants_restarted.is_empty(), "{summary:?}");
    running
        .wait_for("c and d caught up after the reload", |s| {
            all_ok(&["a", "c", "d"])(s) && !s.iter().any(|t| t.tenant == "b")
        })
        .await;
    // a's poller was not replaced: a new one would start counting windows from zero.
    assert_eq!(board.get("a").unwrap().windows_fetched, a_windows);
    let d = board.get("d").unwrap();
    assert_eq!(
        d.sinks.iter().map(|s| s.sink.as_str()).collect::<Vec<_>>(),
        ["out2"]
    );
    let out1 = sink_lines(&dir.path().join("out1.ndjson"));
    let out2 = sink_lines(&dir.path().join("out2.ndjson"));
    assert_eq!(
        out1.iter().collect::<BTreeSet<_>>().len(),
        out1.len(),
        "duplicates in out1"
    );
    assert!(!guids(&out1, "c").is_empty(), "c's events reached out1");
    // out2 is new to d, so it gets d's history from the same starting point out1 got it from.
    assert_eq!(guids(&out2, "d"), guids(&out1, "d"));
    assert!(guids(&out2, "a").is_empty());
    assert!(metrics
        .render()
        .lines()
        .all(|l| !l.contains("tenant=\"b\"")));

    // A broken config is rejected with the key named; the running one keeps going.
    let broken = second.replace(
        "principal = \"a\"\nsecret = \"s-a\"\nsinks = [\"out1\"]",
        "principal = \"a\"\nsecret = \"s-a\"\nsinks = [\"nope\"]",
    );
    assert_ne!(broken, second);
    std::fs::write(&path, &broken).unwrap();
    let e = format!("{:#}", reloader.reload_file(&path, None).await.unwrap_err());
    assert!(e.contains("tenants.a.sinks"), "{e}");
    assert!(e.contains("undefined sink `nope`"), "{e}");
    let text = metrics.render();
    assert_eq!(
        metric(&text, "tapfwd_config_reloads_total{result=\"rejected\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "tapfwd_config_last_reload_successful"),
        Some(0.0)
    );
    let before: BTreeMap<String, u64> = board
        .snapshot()
        .into_iter()
        .map(|t| (t.tenant, t.windows_fetched))
        .collect();
    assert_eq!(before.keys().collect::<Vec<_>>(), ["a", "c", "d"]);
    manual.advance(Duration::from_secs(300));
    running
        .wait_for("every tenant polls the next window", |s| {
            s.len() == 3
                && s.iter()
                    .all(|t| t.windows_fetched > before[&t.tenant] && t.state == "ok")
        })
        .await;

    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rebuilds_a_changed_sink_and_restarts_only_its_tenants() {
    let tap = FakeTap::start(&[("a", "s-a"), ("b", "s-b")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    let text = service_config(
        dir.path(),
        tap.addr,
        "",
        "1h",
        &["one", "two"],
        &[
            tap_tenant("a", "s-a", &["one"]),
            tap_tenant("b", "s-b", &["two"]),
        ],
    );
    std::fs::write(&path, &text).unwrap();
    let (clock, _manual) = start_clock();
    let app = App::build(Config::load(&path).unwrap(), clock)
        .await
        .unwrap();
    let board = app.status();
    let reloader = app.reloader();
    let running = Running::run(app);
    running
        .wait_for("a and b caught up", all_ok(&["a", "b"]))
        .await;
    let b_windows = board.get("b").unwrap().windows_fetched;

    // Sink `one` now writes elsewhere: a restarts on it (same checkpoint), b is untouched.
    let moved = dir.path().join("one-moved.ndjson");
    let changed = text.replace(
        &format!("{:?}", dir.path().join("one.ndjson").display().to_string()),
        &format!("{:?}", moved.display().to_string()),
    );
    assert_ne!(changed, text);
    std::fs::write(&path, &changed).unwrap();
    let summary = reloader.reload_file(&path, None).await.unwrap();
    assert_eq!(summary.sinks_changed, ["one"]);
    assert_eq!(summary.tenants_restarted, ["a"]);
    assert!(summary.tenants_changed.is_empty());
    running
        .wait_for("a back on the rebuilt sink", all_ok(&["a", "b"]))
        .await;
    assert_eq!(board.get("b").unwrap().windows_fetched, b_windows);
    // a's checkpoint is kept, so the moved file gets nothing old again.
    assert!(sink_lines(&moved).is_empty());

    // Reloading the same file again changes nothing.
    let summary = reloader.reload_file(&path, None).await.unwrap();
    assert!(summary.is_noop(), "{summary:?}");

    // A new sink that cannot start rejects the whole reload: nothing else changes either.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "a file, not a directory").unwrap();
    let unopenable = format!("{:?}", blocker.join("x.ndjson").display().to_string());
    let with_bad_sink = format!(
        "{changed}\n[sinks.bad]\ntype = \"file\"\npath = {unopenable}\n\n[tenants.c]\nbase_url = \"http://{}\"\nprincipal = \"c\"\nsecret = \"s-c\"\nsinks = [\"bad\"]\n",
        tap.addr
    );
    std::fs::write(&path, &with_bad_sink).unwrap();
    let e = format!("{:#}", reloader.reload_file(&path, None).await.unwrap_err());
    assert!(e.contains("sinks.bad") && e.contains("cannot start"), "{e}");
    assert!(board.get("c").is_none());

    // A changed sink whose new settings cannot start keeps its old instance; its tenant resumes
    // on it, and the next reload tries the new settings again.
    let two = format!("{:?}", dir.path().join("two.ndjson").display().to_string());
    let broken_two = changed.replace(&two, &unopenable);
    assert_ne!(broken_two, changed);
    std::fs::write(&path, &broken_two).unwrap();
    let summary = reloader.reload_file(&path, None).await.unwrap();
    assert_eq!(summary.sinks_changed, ["two"]);
    assert_eq!(summary.sinks_kept_old, ["two"]);
    assert_eq!(summary.tenants_restarted, ["b"]);
    running
        .wait_for("b back on its old sink", all_ok(&["a", "b"]))
        .await;
    let summary = reloader.reload_file(&path, None).await.unwrap();
    assert_eq!(
        summary.sinks_kept_old,
        ["two"],
        "retried on the next reload"
    );

    // Settings that need a restart are reported, not half-applied.
    std::fs::write(
        &path,
        broken_two.replace("interval = \"1m\"", "interval = \"2m\""),
    )
    .unwrap();
    let summary = reloader.reload_file(&path, None).await.unwrap();
    assert_eq!(summary.restart_needed, ["poll"]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_running_binary_from_tenants_dir_and_keeps_old_config_on_error() {
    let tap = FakeTap::start(&[("a", "s-a"), ("b", "s-b")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    let tdir = dir.path().join("tenants.d");
    std::fs::create_dir(&tdir).unwrap();
    let port = free_port();
    let text = service_config(
        dir.path(),
        tap.addr,
        &format!("admin_listen = \"127.0.0.1:{port}\"\ntenants_dir = \"tenants.d\""),
        "1h",
        &["out"],
        &[tap_tenant("a", "s-a", &["out"])],
    );
    std::fs::write(&path, &text).unwrap();
    let mut daemon = Daemon::start(&path, &[], &[]);
    daemon
        .wait_log("tapfwd running", |v| message(v) == "tapfwd running")
        .await;

    // Add a tenant by dropping a file into tenants.d.
    std::fs::write(
        tdir.join("b.toml"),
        tenant_table(&tap_tenant("b", "s-b", &["out"]), tap.addr, false),
    )
    .unwrap();
    daemon.signal("HUP");
    let v = daemon
        .wait_log("config reloaded", |v| message(v) == "config reloaded")
        .await;
    assert!(
        v["changes"].as_str().unwrap().contains("tenants added: b"),
        "{v}"
    );
    daemon
        .wait_log("b caught up", |v| {
            message(v) == "caught up" && v["tenant"] == "b"
        })
        .await;

    // A broken tenant file: rejected, naming the file and the key; a and b keep running.
    std::fs::write(
        tdir.join("c.toml"),
        "principal = \"c\"\nsecret = \"x\"\nsinkz = [\"out\"]\n",
    )
    .unwrap();
    daemon.signal("HUP");
    let v = daemon
        .wait_log("reload rejected", |v| {
            message(v).starts_with("config reload rejected")
        })
        .await;
    let error = v["error"].as_str().unwrap();
    assert!(error.contains("c.toml"), "{error}");
    assert!(error.contains("sinkz"), "{error}");
    let (code, body) = http_get(&format!("http://127.0.0.1:{port}/status")).await;
    assert_eq!(code, 200);
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = status["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    let (_, metrics) = http_get(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(
        metric(&metrics, "tapfwd_config_reloads_total{result=\"applied\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&metrics, "tapfwd_config_reloads_total{result=\"rejected\"}"),
        Some(1.0)
    );
    let (status, _) = daemon.stop().await;
    assert!(status.success(), "{status}");
}

// ---------------------------------------------------------------------------------------------
// Admin endpoint, metrics, status.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_report_progress_per_tenant_and_sink() {
    let tap = FakeTap::start(&[("a", SECRET), ("bad", "the-right-one")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    std::fs::write(
        &path,
        service_config(
            dir.path(),
            tap.addr,
            "admin_listen = \"127.0.0.1:0\"",
            "1h",
            &["out"],
            &[
                tap_tenant("a", SECRET, &["out"]),
                tap_tenant("bad", WRONG_SECRET, &["out"]),
            ],
        ),
    )
    .unwrap();
    let (clock, manual) = start_clock();
    let app = App::build(Config::load(&path).unwrap(), clock)
        .await
        .unwrap();
    let addr = app.admin_addr().unwrap();
    let board = app.status();
    let store = app.store();
    let running = Running::run(app);
    running
        .wait_for("a caught up and bad failed", |s| {
            s.iter().any(|t| t.tenant == "a" && t.state == "ok")
                && s.iter().any(|t| t.tenant == "bad" && t.state == "failed")
        })
        .await;
    let base = format!("http://{addr}");
    assert_eq!(http_get(&format!("{base}/healthz")).await.0, 200);
    assert_eq!(http_get(&format!("{base}/readyz")).await.0, 200);

    let (code, text) = http_get(&format!("{base}/metrics")).await;
    assert_eq!(code, 200);
    let a = board.get("a").unwrap();
    let fetched = metric(&text, "tapfwd_events_fetched_total{tenant=\"a\"}").unwrap();
    assert_eq!(fetched, a.events_fetched as f64);
    assert!(fetched >= 60.0, "an hour of one event a minute: {fetched}");
    assert_eq!(
        metric(
            &text,
            "tapfwd_events_delivered_total{tenant=\"a\",sink=\"out\"}"
        ),
        Some(fetched)
    );
    let ok_requests = metric(
        &text,
        "tapfwd_api_requests_total{tenant=\"a\",status=\"200\"}",
    )
    .unwrap();
    assert_eq!(ok_requests, a.windows_fetched as f64);
    assert!(
        metric(
            &text,
            "tapfwd_api_requests_total{tenant=\"bad\",status=\"401\"}"
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        metric(&text, "tapfwd_tenant_failed{tenant=\"bad\"}"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "tapfwd_tenant_failed{tenant=\"a\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "tapfwd_budget_remaining_requests{tenant=\"a\"}"),
        Some(f64::from(a.requests_limit - a.requests_24h))
    );
    let lag = metric(
        &text,
        "tapfwd_checkpoint_lag_seconds{tenant=\"a\",sink=\"out\"}",
    )
    .unwrap();
    assert!((1800.0..=1800.0 + 120.0).contains(&lag), "lag {lag}");
    assert!(metric(
        &text,
        "tapfwd_sink_backlog_seconds{tenant=\"a\",sink=\"out\"}"
    )
    .is_some());
    assert!(metric(&text, "tapfwd_store_size_bytes").unwrap() > 0.0);
    assert_eq!(metric(&text, "tapfwd_tenants"), Some(2.0));
    let count = metric(&text, "tapfwd_window_fetch_duration_seconds_count").unwrap();
    assert!(count >= a.windows_fetched as f64);
    // Labels are bounded: tenant, sink, kind, status, result, le; nothing else.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some(labels) = line
            .split_once('{')
            .map(|(_, r)| r.split_once('}').unwrap().0)
        {
            for pair in labels.split(',') {
                let key = pair.split_once('=').unwrap().0;
                assert!(
                    ["tenant", "sink", "kind", "status", "result", "le"].contains(&key),
                    "unexpected label in {line}"
                );
            }
        }
    }

    let (code, body) = http_get(&format!("{base}/status")).await;
    assert_eq!(code, 200);
    let status: tapfwd::admin::StatusBody = serde_json::from_str(&body).unwrap();
    let sa = status.tenants.iter().find(|t| t.tenant == "a").unwrap();
    assert_eq!(sa.sinks[0].delivered as f64, fetched);
    let sb = status.tenants.iter().find(|t| t.tenant == "bad").unwrap();
    assert_eq!(sb.state, "failed");
    assert!(sb.last_error.as_deref().unwrap().contains("401"));

    // Values move after the next window.
    manual.advance(Duration::from_secs(300));
    let windows = a.windows_fetched;
    running
        .wait_for("a's next window", |s| {
            s.iter()
                .any(|t| t.tenant == "a" && t.windows_fetched > windows)
        })
        .await;
    let (_, text2) = http_get(&format!("{base}/metrics")).await;
    let fetched2 = metric(&text2, "tapfwd_events_fetched_total{tenant=\"a\"}").unwrap();
    assert!(fetched2 >= fetched + 4.0, "{fetched} -> {fetched2}");
    assert!(
        metric(
            &text2,
            "tapfwd_api_requests_total{tenant=\"a\",status=\"200\"}"
        )
        .unwrap()
            > ok_requests
    );
    assert!(
        metric(&text2, "tapfwd_budget_remaining_requests{tenant=\"a\"}").unwrap()
            < f64::from(a.requests_limit - a.requests_24h)
    );

    // Invariant 7 on every surface the endpoint has, and in the store.
    for surface in [&text, &text2, &body] {
        assert!(!surface.contains(SECRET) && !surface.contains(WRONG_SECRET));
    }
    for (k, v) in store.dump() {
        for bytes in [&k, &v] {
            let s = String::from_utf8_lossy(bytes);
            assert!(!s.contains(SECRET) && !s.contains(WRONG_SECRET));
        }
    }
    drop(store);
    running.stop().await;
}

#[tokio::test]
async fn readyz_answers_503_until_ready() {
    let dir = tempfile::tempdir().unwrap();
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = tapfwd::admin::AdminState {
        metrics: Arc::default(),
        status: Arc::default(),
        store: Store::open(dir.path()).unwrap(),
        ready: ready.clone(),
        token: None,
    };
    let listener = tapfwd::admin::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(tapfwd::admin::serve(listener, state, stop.clone()));
    assert_eq!(http_get(&format!("http://{addr}/readyz")).await.0, 503);
    assert_eq!(http_get(&format!("http://{addr}/healthz")).await.0, 200);
    let (code, body) = http_get(&format!("http://{addr}/status")).await;
    assert_eq!(
        (code, body.as_str()),
        (
            200,
            "{\"tenants\":[],\"store\":{\"healthy\":true,\"errors_total\":0,\"failing_for_seconds\":null,\"last_error\":null}}"
        )
    );
    ready.store(true, std::sync::atomic::Ordering::Release);
    assert_eq!(http_get(&format!("http://{addr}/readyz")).await.0, 200);
    assert_eq!(http_get(&format!("http://{addr}/nope")).await.0, 404);
    stop.cancel();
    server.await.unwrap().unwrap();
}

/// Whether the server has closed `stream`: reads (discarding anything sent first) until the end
/// of the stream, or gives up at `deadline`.
async fn closed_within(stream: &mut tokio::net::TcpStream, deadline: tokio::time::Instant) -> bool {
    use tokio::io::AsyncReadExt as _;
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// One `GET PATH` on a connection of its own: the status line of the answer.
async fn raw_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(support::PATIENCE, stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The admin endpoint's own bounds, with small ones: a connection that sends nothing, one that
/// stops half-way through its headers and one idle after a request are each closed once idle for
/// the bound; at the cap of connections, the oldest is closed at once for a newcomer, which is
/// answered.
#[tokio::test]
async fn admin_endpoint_closes_idle_connections_and_the_oldest_at_its_cap() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let state = tapfwd::admin::AdminState {
        metrics: Arc::default(),
        status: Arc::default(),
        store: Store::open(dir.path()).unwrap(),
        ready: Arc::default(),
        token: None,
    };
    let serve = |limits: tapfwd::admin::Limits, stop: &CancellationToken| {
        let (state, stop) = (state.clone(), stop.clone());
        async move {
            let listener = tapfwd::admin::bind("127.0.0.1:0".parse().unwrap())
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(tapfwd::admin::serve_with(listener, state, limits, stop));
            (addr, server)
        }
    };
    let stop = CancellationToken::new();

    // Idle bound 300 ms.
    let idle = Duration::from_millis(300);
    let (addr, server) = serve(
        tapfwd::admin::Limits {
            max_connections: 64,
            idle,
        },
        &stop,
    )
    .await;
    let silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 256];
    let n = kept.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "{answer:?}");
    let opened = tokio::time::Instant::now();
    let deadline = opened + Duration::from_secs(30);
    for (what, mut stream) in [
        ("silent", silent),
        ("half a request", half),
        ("kept alive", kept),
    ] {
        assert!(
            closed_within(&mut stream, deadline).await,
            "{what}: still open after 30 s"
        );
    }
    assert!(opened.elapsed() >= idle - Duration::from_millis(50));
    stop.cancel();
    server.await.unwrap().unwrap();

    // At most 4 connections, idle bound a minute: the 5th closes the 1st at once.
    let stop = CancellationToken::new();
    let (addr, server) = serve(
        tapfwd::admin::Limits {
            max_connections: 4,
            idle: Duration::from_secs(60),
        },
        &stop,
    )
    .await;
    let mut idle_ones = Vec::new();
    for _ in 0..4 {
        idle_ones.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    assert_eq!(raw_get(addr, "/healthz").await, "HTTP/1.1 200 OK");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    assert!(
        closed_within(&mut idle_ones[0], deadline).await,
        "the oldest connection is still open"
    );
    // The three others are still served: each answers a request.
    for stream in &mut idle_ones[1..] {
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let n = stream.read(&mut answer).await.unwrap();
        assert!(answer[..n].starts_with(b"HTTP/1.1 503"), "{answer:?}");
    }
    stop.cancel();
    server.await.unwrap().unwrap();
}

/// Hundreds of idle connections to the admin port of a daemon limited to 256 open files: the
/// endpoint holds at most 64 of them (closing the oldest for each newcomer, and the rest after
/// 10 s idle), so `/healthz` answers and a tenant added afterwards polls (its sockets and files
/// still open). Before the bound, the daemon ran out of descriptors: `/healthz` never answered and
/// every poll failed with "Too many open files".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoint_survives_300_idle_connections_under_256_descriptors() {
    let tap = FakeTap::start(&[("a", "s-a"), ("b", "s-b")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    let tdir = dir.path().join("tenants.d");
    std::fs::create_dir(&tdir).unwrap();
    let port = free_port();
    std::fs::write(
        &path,
        service_config(
            dir.path(),
            tap.addr,
            &format!("admin_listen = \"127.0.0.1:{port}\"\ntenants_dir = \"tenants.d\""),
            "1h",
            &["out"],
            &[tap_tenant("a", "s-a", &["out"])],
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start_under_ulimit(&path, "-n 256");
    daemon
        .wait_log("a caught up", |v| {
            message(v) == "caught up" && v["tenant"] == "a"
        })
        .await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let flooded = tokio::time::Instant::now();
    let probe = tokio::time::timeout(Duration::from_secs(20), raw_get(addr, "/healthz")).await;
    assert_eq!(
        probe.as_deref().ok(),
        Some("HTTP/1.1 200 OK"),
        "/healthz with 300 idle connections open; log:\n{}",
        daemon.log_text()
    );
    // A poll after the flood: tenant b, added by a reload, fetches its hour.
    std::fs::write(
        tdir.join("b.toml"),
        tenant_table(&tap_tenant("b", "s-b", &["out"]), tap.addr, false),
    )
    .unwrap();
    daemon.signal("HUP");
    daemon
        .wait_log("b caught up", |v| {
            message(v) == "caught up" && v["tenant"] == "b"
        })
        .await;
    // The endpoint held at most 64: the others were closed as newer ones came, and the rest go
    // after 10 s idle.
    let deadline = flooded + Duration::from_secs(5);
    let closes: Vec<bool> =
        futures_util::future::join_all(idle.iter_mut().map(|s| closed_within(s, deadline))).await;
    let early = closes.iter().filter(|c| **c).count();
    assert!(early >= 300 - 64, "{early} of 300 closed within 5 s");
    let deadline = flooded + Duration::from_secs(40);
    let closes: Vec<bool> =
        futures_util::future::join_all(idle.iter_mut().map(|s| closed_within(s, deadline))).await;
    assert!(
        closes.iter().all(|c| *c),
        "an idle connection still open after 40 s"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    assert!(
        limits
            .lines()
            .any(|l| l.starts_with("Max open files") && l.split_whitespace().nth(3) == Some("256")),
        "{limits}"
    );
    let (status, log) = daemon.stop().await;
    assert!(status.success(), "{log}");
    assert!(!log.contains("Too many open files"), "{log}");
}

/// `tapfwd run` raises its soft limit on open files to the hard limit at start, and logs both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_raises_the_open_files_soft_limit_to_the_hard_limit() {
    let tap = FakeTap::start(&[("a", "s-a")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    std::fs::write(
        &path,
        service_config(
            dir.path(),
            tap.addr,
            "",
            "1h",
            &["out"],
            &[tap_tenant("a", "s-a", &["out"])],
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start_under_ulimit(&path, "-S -n 256");
    let raised = daemon
        .wait_log("the limit raised", |v| {
            message(v) == "open files limit raised"
        })
        .await;
    daemon
        .wait_log("tapfwd running", |v| message(v) == "tapfwd running")
        .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let (soft, hard) = limits
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix("Max open files")?;
            let mut n = rest.split_whitespace();
            Some((n.next()?.to_string(), n.next()?.to_string()))
        })
        .unwrap_or_else(|| panic!("{limits}"));
    assert_ne!(
        hard, "256",
        "the hard limit of this machine is 256: nothing to raise"
    );
    assert_eq!(soft, hard, "{limits}");
    assert_eq!(raised["was"], 256, "{raised}");
    assert_eq!(raised["soft"].to_string(), hard, "{raised}");
    assert_eq!(raised["hard"].to_string(), hard, "{raised}");
    let (status, log) = daemon.stop().await;
    assert!(status.success(), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_metrics_or_status_of_the_running_binary() {
    let tap = FakeTap::start(&[("good", SECRET), ("bad", "the-right-one")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    let port = free_port();
    std::fs::write(
        &path,
        service_config(
            dir.path(),
            tap.addr,
            &format!("admin_listen = \"127.0.0.1:{port}\""),
            "2h",
            &["out"],
            &[
                tap_tenant("good", SECRET, &["out"]),
                tap_tenant("bad", WRONG_SECRET, &["out"]),
            ],
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&path, &[], &[("RUST_LOG", "debug")]);
    daemon
        .wait_log("good caught up", |v| {
            message(v) == "caught up" && v["tenant"] == "good"
        })
        .await;
    daemon
        .wait_log("bad failed", |v| {
            message(v).starts_with("tenant failed") && v["tenant"] == "bad"
        })
        .await;
    let base = format!("http://127.0.0.1:{port}");
    let (_, metrics) = http_get(&format!("{base}/metrics")).await;
    let (_, status) = http_get(&format!("{base}/status")).await;
    assert!(status.contains("\"bad\"") && metrics.contains("tenant=\"good\""));
    let (exit, log) = daemon.stop().await;
    assert!(exit.success());
    assert!(log.contains("401"), "the failure is logged: {log}");
    for (what, text) in [("metrics", &metrics), ("status", &status), ("log", &log)] {
        assert!(!text.contains(SECRET), "secret in {what}");
        assert!(!text.contains(WRONG_SECRET), "wrong secret in {what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Logs.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_logs_progress_every_24_windows_not_per_event() {
    let tap = FakeTap::start(&[("slow", "s")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    std::fs::write(
        &path,
        service_config(
            dir.path(),
            tap.addr,
            "",
            "50h",
            &["out"],
            &[tap_tenant("slow", "s", &["out"])],
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&path, &[], &[]);
    let done = daemon
        .wait_log("caught up", |v| message(v) == "caught up")
        .await;
    let (_, log) = daemon.stop().await;
    let windows = done["windows"].as_u64().unwrap();
    let events = done["events"].as_u64().unwrap();
    assert!(windows >= 50, "{windows}");
    assert!(events >= 50 * 60, "{events}");
    let progress: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| message(v) == "catching up")
        .collect();
    // One line per 24 backfill windows (the last window or two may be steady ones).
    assert!(
        (1..=(windows / 24) as usize).contains(&progress.len()),
        "{} progress lines for {windows} windows",
        progress.len()
    );
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(p["windows"].as_u64(), Some(24 * (i as u64 + 1)), "{p}");
        assert_eq!(p["tenant"], "slow");
        assert_eq!(p["level"], "INFO");
    }
    // Lifecycle lines only: nowhere near one per event.
    assert!(log.lines().count() < 20, "{log}");
}

// ---------------------------------------------------------------------------------------------
// systemd.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_watchdog_and_stopping_reach_the_notify_socket() {
    let tap = FakeTap::start(&[("a", "s-a")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    let port = free_port();
    std::fs::write(
        &path,
        service_config(
            dir.path(),
            tap.addr,
            &format!("admin_listen = \"127.0.0.1:{port}\""),
            "1h",
            &["out"],
            &[tap_tenant("a", "s-a", &["out"])],
        ),
    )
    .unwrap();
    let (sock_path, socket) = notify_socket(dir.path());
    let daemon = Daemon::start(
        &path,
        &[],
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            // 200 ms: a ping every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let first = recv_notify(&socket, "READY=1").await;
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    assert!(first.contains("STATUS=polling 1 tenant"), "{first}");
    // Ready means ready: the admin endpoint answers /readyz with 200 from here on.
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{port}/readyz")).await.0,
        200
    );
    let pings = recv_notify_until(&socket, "WATCHDOG=1").await;
    assert!(!pings.is_empty());
    let stopping = tokio::spawn(async move { recv_notify_until(&socket, "STOPPING=1").await });
    let (exit, log) = daemon.stop().await;
    assert!(exit.success(), "{log}");
    let got = stopping.await.unwrap();
    assert!(got.last().unwrap().contains("STOPPING=1"));
}

/// The unit file with ExecStart pointing at the binary under test, in a temp dir.
fn unit_for_test(dir: &Path) -> PathBuf {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/tapfwd.service"
    ))
    .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/tapfwd "), "{unit}");
    let unit = unit.replace("/usr/bin/tapfwd ", &format!("{BIN} "));
    let path = dir.join("tapfwd.service");
    std::fs::write(&path, unit).unwrap();
    path
}

fn systemd_analyze() -> Command {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "systemd-analyze is not installed: run the test-services setup (it installs the Debian `systemd` package), e.g. `apt-get install -y systemd`"
    );
    Command::new("systemd-analyze")
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let out = systemd_analyze()
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "verify failed:\n{stderr}");
    // verify also reports problems it does not fail on; none may mention our unit.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("tapfwd.service"))
        .collect();
    assert!(ours.is_empty(), "{stderr}");
}

#[test]
fn systemd_unit_security_exposure_is_low() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_test(dir.path());
    let out = systemd_analyze()
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            let rest = l.split("Overall exposure level for ").nth(1)?;
            rest.split(": ")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "no exposure score in:\n{text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    // docs/operations.md records the score; keep it honest when the unit changes.
    assert!(score <= 2.0, "exposure {score}:\n{text}");
}

// ---------------------------------------------------------------------------------------------
// Sharding.

#[test]
fn shards_of_the_binary_cover_every_tenant_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let tdir = dir.path().join("tenants.d");
    std::fs::create_dir(&tdir).unwrap();
    let tap: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let ids: Vec<String> = (0..40).map(|i| format!("client-{i:02}")).collect();
    for id in &ids {
        std::fs::write(
            tdir.join(format!("{id}.toml")),
            tenant_table(&tap_tenant(id, "x", &["out"]), tap, false),
        )
        .unwrap();
    }
    let path = dir.path().join("tapfwd.toml");
    std::fs::write(
        &path,
        service_config(
            dir.path(),
            tap,
            "tenants_dir = \"tenants.d\"",
            "1h",
            &["out"],
            &[],
        ),
    )
    .unwrap();
    for n in 1..=8 {
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for i in 0..n {
            let out = tapfwd()
                .args(["check", "--config"])
                .arg(&path)
                .args(["--shard", &format!("{i}/{n}")])
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&format!("shard {i}/{n} polls")))
                .unwrap();
            for id in line.split_once(": ").unwrap().1.split_whitespace() {
                *seen.entry(id.to_string()).or_default() += 1;
            }
        }
        assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), ids, "n = {n}");
        assert!(seen.values().all(|c| *c == 1), "n = {n}: {seen:?}");
    }
    let bad = tapfwd()
        .args(["run", "--config"])
        .arg(&path)
        .args(["--shard", "3/3"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("I/N"));
}

// ---------------------------------------------------------------------------------------------
// Rewind and status.

/// Runs the app (system clock) until every tenant is caught up, then stops it.
async fn run_until_caught_up(path: &Path, ids: &'static [&'static str]) {
    let running = Running::start(Config::load(path).unwrap(), Clock::System).await;
    running.wait_for("caught up", all_ok(ids)).await;
    running.stop().await;
}

fn rewind(path: &Path, args: &[&str]) -> (bool, String) {
    let out = tapfwd()
        .args(["rewind", "--config"])
        .arg(path)
        .args(args)
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewind_moves_the_checkpoint_and_no_dedupe_delivers_again() {
    let tap = FakeTap::start(&[("a", "s-a"), ("b", "s-b")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    std::fs::write(
        &path,
        service_config(
            dir.path(),
            tap.addr,
            "",
            "3h",
            &["out"],
            &[
                tap_tenant("a", "s-a", &["out"]),
                tap_tenant("b", "s-b", &["out"]),
            ],
        ),
    )
    .unwrap();
    let out = dir.path().join("out.ndjson");

    // While the daemon holds the store, rewind refuses and says why.
    {
        let app = App::build(Config::load(&path).unwrap(), Clock::System)
            .await
            .unwrap();
        let (ok, text) = rewind(&path, &["--tenant", "a", "--to", "1h"]);
        assert!(!ok);
        assert!(text.contains("the daemon is running"), "{text}");
        assert!(text.contains("stop it first"), "{text}");
        drop(app);
    }
    run_until_caught_up(&path, &["a", "b"]).await;
    let first = sink_lines(&out);
    let a_first = guids(&first, "a");
    assert!(a_first.len() >= 150, "{}", a_first.len());

    // Unknown tenant or sink: refused.
    let (ok, text) = rewind(&path, &["--tenant", "zz", "--to", "1h"]);
    assert!(
        !ok && text.contains("tenant `zz` is not configured"),
        "{text}"
    );
    let (ok, text) = rewind(&path, &["--tenant", "a", "--to", "1h", "--sink", "x"]);
    assert!(!ok && text.contains("does not send to sink `x`"), "{text}");

    // Rewind a by 90 minutes: its checkpoint moves back, floored to the minute.
    let before = Utc::now().timestamp();
    let (ok, text) = rewind(&path, &["--tenant", "a", "--to", "90m"]);
    assert!(ok, "{text}");
    assert!(text.contains("checkpoint moved from"), "{text}");
    let target = {
        let store = Store::open(&dir.path().join("state")).unwrap();
        let a = store.stream("a", "out").unwrap().unwrap();
        let b = store.stream("b", "out").unwrap().unwrap();
        assert_eq!(a.checkpoint % 60, 0);
        assert!(a.checkpoint <= before - 5400 && a.checkpoint > before - 5400 - 120);
        assert!(b.checkpoint > a.checkpoint, "b is untouched");
        a.checkpoint
    };
    // Fetched again, but the dedupe keys remember these events: nothing is delivered twice.
    run_until_caught_up(&path, &["a", "b"]).await;
    let second = sink_lines(&out);
    assert_eq!(
        second.iter().collect::<BTreeSet<_>>().len(),
        second.len(),
        "duplicates after a rewind with dedupe"
    );

    // With --no-dedupe the rewound span is delivered again; b is untouched.
    let (ok, text) = rewind(&path, &["--tenant", "a", "--to", "90m", "--no-dedupe"]);
    assert!(ok, "{text}");
    assert!(text.contains("dedupe keys forgotten"), "{text}");
    run_until_caught_up(&path, &["a", "b"]).await;
    let third = sink_lines(&out);
    let mut count: BTreeMap<&String, u32> = BTreeMap::new();
    for l in &third {
        *count.entry(l).or_default() += 1;
    }
    let again: Vec<&String> = count
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(l, _)| *l)
        .collect();
    assert!(again.len() >= 55, "about an hour again: {}", again.len());
    for l in again {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["tenant"], "a");
        let t: i64 = v["event"]["GUID"]
            .as_str()
            .unwrap()
            .trim_start_matches("a-")
            .parse()
            .unwrap();
        assert!(
            t >= target - 3600,
            "only the rewound span (and its dedupe horizon) again"
        );
    }
    assert_eq!(
        guids(&third, "b").len(),
        guids(&third, "b").iter().collect::<BTreeSet<_>>().len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_command_asks_the_running_daemon_when_the_store_is_locked() {
    let tap = FakeTap::start(&[("a", "s-a"), ("b", "s-b")]).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    let port = free_port();
    std::fs::write(
        &path,
        service_config(
            dir.path(),
            tap.addr,
            &format!("admin_listen = \"127.0.0.1:{port}\""),
            "1h",
            &["out"],
            &[
                tap_tenant("a", "s-a", &["out"]),
                tap_tenant("b", "s-b", &["out"]),
            ],
        ),
    )
    .unwrap();
    let mut daemon = Daemon::start(&path, &[], &[]);
    for id in ["a", "b"] {
        daemon
            .wait_log("caught up", |v| {
                message(v) == "caught up" && v["tenant"] == id
            })
            .await;
    }
    let status = |json: bool| {
        let mut cmd = tapfwd();
        cmd.args(["status", "--config"]).arg(&path);
        if json {
            cmd.arg("--json");
        }
        cmd.output().unwrap()
    };
    let out = status(true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tenants: Vec<TenantStatus> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(tenants.len(), 2);
    for t in &tenants {
        assert_eq!(t.state, "ok", "{t:?}");
        assert!(
            t.windows_fetched > 0,
            "live counters, not the store's: {t:?}"
        );
        assert_eq!(t.sinks[0].sink, "out");
    }
    let out = status(false);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("TENANT"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("a ") && l.contains(" ok ")),
        "{table}"
    );
    let (exit, _) = daemon.stop().await;
    assert!(exit.success());

    // Stopped: status reads the store instead.
    let out = status(true);
    assert!(out.status.success());
    let tenants: Vec<TenantStatus> = serde_json::from_slice(&out.stdout).unwrap();
    assert!(tenants.iter().all(|t| t.state == "stopped"), "{tenants:?}");
}

// ---------------------------------------------------------------------------------------------
// Deploy files.

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Every `tapfwd_*` metric name the daemon renders.
fn rendered_metric_names() -> BTreeSet<String> {
    tapfwd::metrics::Metrics::default()
        .render()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// Metric names mentioned in `text`, with histogram suffixes removed.
fn mentioned_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("tapfwd_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(name.to_string());
        i = end;
    }
    out
}

#[test]
fn deploy_yaml_parses_and_alerts_and_dashboard_use_real_metrics() {
    let python = Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        python,
        "python3 with PyYAML is needed to lint the deploy YAML: run the test-services setup (apt-get install -y python3-yaml)"
    );
    let check = r#"
import sys, yaml
for path in sys.argv[1:]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    assert docs, path + ": empty"
    for d in docs:
        if path.endswith("tapfwd-alerts.yml"):
            names = set()
            for g in d["groups"]:
                for r in g["rules"]:
                    assert r["alert"] and r["expr"] and r["labels"]["severity"], r
                    assert "summary" in r["annotations"], r
                    names.add(r["alert"])
            for need in ["TapfwdTenantStale", "TapfwdTenantFailed", "TapfwdSinkStuck", "TapfwdBudgetLow"]:
                assert need in names, need
        elif "kubernetes" in path:
            assert d["apiVersion"] and d["kind"] and d["metadata"]["name"], path
print("ok")
"#;
    let mut files: Vec<PathBuf> = vec![repo("deploy/prometheus/tapfwd-alerts.yml")];
    for e in std::fs::read_dir(repo("deploy/kubernetes")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            files.push(p);
        }
    }
    assert!(files.len() >= 5, "{files:?}");
    let out = Command::new("python3")
        .arg("-c")
        .arg(check)
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let known = rendered_metric_names();
    let alerts = std::fs::read_to_string(repo("deploy/prometheus/tapfwd-alerts.yml")).unwrap();
    let dashboard = std::fs::read_to_string(repo("deploy/grafana/tapfwd-dashboard.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(parsed["panels"].as_array().unwrap().len() >= 6);
    for (what, text) in [("alerts", &alerts), ("dashboard", &dashboard)] {
        let used = mentioned_metrics(text);
        assert!(!used.is_empty());
        let unknown: Vec<_> = used.difference(&known).collect();
        assert!(
            unknown.is_empty(),
            "{what} uses metrics the daemon does not export: {unknown:?}"
        );
    }
    // The StatefulSet takes its shard from the pod ordinal.
    let sts = std::fs::read_to_string(repo("deploy/kubernetes/statefulset.yaml")).unwrap();
    assert!(sts.contains("apps.kubernetes.io/pod-index"), "{sts}");
    assert!(sts.contains("--shard"), "{sts}");
}
