//! Black-box tests of hostile responses and damaged state (issue 14): a TAP server that echoes
//! credentials, trickles or never ends, redirects or answers with arrays it should not have; a
//! state directory that is damaged or lost. In-process tests run the real `App` against the
//! simulator on a manual clock; nothing sleeps to synchronise.

mod support;

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use support::rig::Rig;
use support::*;
use tapfwd::simulate::Fault;

fn lag() -> i64 {
    1800
}

/// Every file under `dir`, read whole.
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(b) = std::fs::read(&p) {
                out.push((p.display().to_string(), b));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Issue 14, item 1: a 500/400/503 whose body repeats the Authorization header, the
/// `principal:secret` pair and the secret leaves no trace of them in the status board or the
/// store, while the error itself is still reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credentials_are_scrubbed_from_status_and_store() {
    const SECRET: &str = "s-echo-7f3a9c21";
    let rig = Rig::builder()
        .tenant("echo", "p-echo", SECRET, 600)
        .seed(4)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"2h\"\nmax_backoff = \"1m\"")
        .build()
        .await;
    let (sim, manual, state) = (rig.sim.clone(), rig.manual(), rig.state());
    sim.sim.inject(
        "p-echo",
        [
            Fault::EchoCredentials(500),
            Fault::EchoCredentials(400),
            Fault::EchoCredentials(503),
        ],
    );
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("p-echo:{SECRET}"));
    let forbidden = [SECRET.to_string(), b64.clone(), format!("p-echo:{SECRET}")];
    let running = rig.start().await;
    let latest = (t0().timestamp() - lag()).div_euclid(60) * 60;
    let mut errors = Vec::new();
    for _ in 0..30 {
        running.wait_idle(1, manual.now()).await;
        let status = running.board.get("echo").unwrap();
        if let Some(e) = status.last_error.clone() {
            errors.push(e);
        }
        if latest - checkpoints(&running.board, "archive")["echo"] < 300 {
            break;
        }
        manual.advance(Duration::from_secs(60));
    }
    running.stop().await;
    assert!(
        errors.iter().any(|e| e.contains("[redacted]")),
        "the echoed error was reported, scrubbed: {errors:?}"
    );
    for e in &errors {
        for f in &forbidden {
            assert!(!e.contains(f.as_str()), "secret in last_error: {e}");
        }
    }
    for (path, bytes) in all_bytes(&state) {
        for f in &forbidden {
            assert!(
                !contains(&bytes, f),
                "secret form {f:?} in the store file {path}"
            );
        }
    }
}

/// Steps the manual clock a minute at a time until every tenant's checkpoint into `archive` is
/// within 5 minutes of `now - lag`; returns every `last_error` seen on the way, per tenant.
async fn run_until_caught_up(
    running: &Running,
    manual: &tapfwd::clock::ManualClock,
    ids: &[&str],
) -> std::collections::BTreeMap<String, Vec<String>> {
    let latest = (t0().timestamp() - lag()).div_euclid(60) * 60;
    let mut errors: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for _ in 0..60 {
        running.wait_idle(ids.len(), manual.now()).await;
        for id in ids {
            if let Some(e) = running.board.get(id).and_then(|s| s.last_error) {
                errors.entry(id.to_string()).or_default().push(e);
            }
        }
        let cps = checkpoints(&running.board, "archive");
        if ids.iter().all(|id| latest - cps[*id] < 300) {
            return errors;
        }
        manual.advance(Duration::from_secs(60));
    }
    panic!("not caught up: {:#?}", running.board.snapshot());
}

/// Issue 14, item 4: a response that trickles a byte at a time under `read_timeout` fails at
/// `poll.window_deadline` and is retried with backoff; with `concurrency = 1` the other tenant is
/// not held behind it, and both end up with every event exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickling_window_fails_at_its_deadline_and_frees_the_permit() {
    let rig = Rig::builder()
        .tenant("slow", "p-slow", "s-slow", 300)
        .tenant("fast", "p-fast", "s-fast", 300)
        .seed(6)
        .poll(
            "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"2h\"\nmax_backoff = \"1m\"\n\
             concurrency = 1\nread_timeout = \"10s\"\nwindow_deadline = \"1s\"",
        )
        .build()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    sim.sim.inject(
        "p-slow",
        [
            Fault::Trickle(Duration::from_millis(100)),
            Fault::Trickle(Duration::from_millis(100)),
        ],
    );
    let running = rig.start().await;
    let errors = run_until_caught_up(&running, &manual, &["slow", "fast"]).await;
    let cps = checkpoints(&running.board, "archive");
    running.stop().await;
    assert!(
        errors
            .get("slow")
            .is_some_and(|e| e.iter().any(|e| e.contains("poll.window_deadline"))),
        "the trickling window failed at its deadline: {errors:?}"
    );
    let initial = (t0().timestamp() - lag() - 2 * 3600).div_euclid(60) * 60;
    let lines = read_lines(&events);
    for (id, p) in [("slow", "p-slow"), ("fast", "p-fast")] {
        assert_exactly_once(&lines, id, &expected(&sim.sim, p, initial, cps[id]));
    }
}

/// Issue 14, item 5: a response that streams distinct valid events forever fails at
/// `poll.max_window_events` and is retried later; while it streams, status and metrics show the
/// window's progress (events, bytes, the window), not `0` until its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_response_is_bounded_and_its_progress_is_published() {
    let rig = Rig::builder()
        .tenant("big", "p-big", "s-big", 300)
        .seed(8)
        .poll(
            "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"2h\"\nmax_backoff = \"1m\"\n\
             batch_events = 100\nmax_window_events = 20000",
        )
        .build()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    sim.sim.inject("p-big", [Fault::Endless]);
    let app = rig.app().await;
    let metrics = app.metrics();
    let running = Running::run(app);
    let mut metric_seen = None;
    running
        .wait_for("the window's progress", |s| {
            let Some(w) = s.iter().find_map(|t| t.window.clone()) else {
                return false;
            };
            metric_seen = tapfwd_metric(
                &metrics.render(),
                "tapfwd_window_progress_events{tenant=\"big\"}",
            );
            w.events > 0 && w.bytes > 0 && !w.start.is_empty() && !w.end.is_empty()
        })
        .await;
    assert!(
        metric_seen.is_some_and(|v| v > 0.0),
        "progress metric during the window: {metric_seen:?}"
    );
    let errors = run_until_caught_up(&running, &manual, &["big"]).await;
    let cps = checkpoints(&running.board, "archive");
    let status = running.board.get("big").unwrap();
    running.stop().await;
    assert!(status.window.is_none(), "no window in flight: {status:?}");
    assert!(
        errors["big"]
            .iter()
            .any(|e| e.contains("window over poll.max_window_events")),
        "the endless window failed at its bound: {errors:?}"
    );
    let initial = (t0().timestamp() - lag() - 2 * 3600).div_euclid(60) * 60;
    let lines: Vec<Line> = read_lines(&events)
        .into_iter()
        .filter(|l| !contains(&l.raw, "\"endless-"))
        .collect();
    assert_exactly_once(
        &lines,
        "big",
        &expected(&sim.sim, "p-big", initial, cps["big"]),
    );
}

fn tapfwd_metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// Issue 14, item 8: `tapfwd check` refuses a zero `read_timeout`, `lag`, `shutdown_grace` or
/// `max_backoff` (with a zero read timeout nothing is ever fetched), naming the key.
#[test]
fn check_refuses_zero_durations_naming_the_key() {
    let scratch = Scratch::new();
    for key in ["read_timeout", "lag", "shutdown_grace", "max_backoff"] {
        let text = config_text(
            &scratch.path("state"),
            &scratch.path("events.ndjson"),
            "https://tap-api-v2.proofpoint.com",
            &[("acme", "p-acme", "s-acme")],
            &format!("{key} = \"0s\""),
        );
        let path = scratch.path(&format!("{key}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = support::daemon::tapfwd()
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key} = 0s passed check");
        assert!(
            stderr.contains(&format!("poll.{key}")) && stderr.contains("must be at least"),
            "{key}: {stderr}"
        );
    }
}

/// Runs `tapfwd check` on `text`; returns whether it passed and its stderr.
fn check(scratch: &Scratch, name: &str, text: &str) -> (bool, String) {
    let path = scratch.path(name);
    std::fs::write(&path, text).unwrap();
    let out = support::daemon::tapfwd()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Issue 14, item 6: an `http://` base URL on a host that is not loopback (Basic credentials in
/// cleartext) is refused, naming the key; loopback, and `allow_http = true`, are accepted.
#[test]
fn cleartext_base_url_is_refused_unless_loopback_or_allowed() {
    let scratch = Scratch::new();
    let text = |url: &str| {
        config_text(
            &scratch.path("state"),
            &scratch.path("events.ndjson"),
            url,
            &[("acme", "p-acme", "s-acme")],
            "",
        )
    };
    let (ok, stderr) = check(&scratch, "plain.toml", &text("http://tap.example.com"));
    assert!(!ok, "http:// to a remote host passed check");
    assert!(
        stderr.contains("tenants.acme.base_url") && stderr.contains("allow_http"),
        "{stderr}"
    );
    for url in [
        "http://127.0.0.1:8080",
        "http://localhost:9000",
        "http://[::1]:80",
    ] {
        let (ok, stderr) = check(&scratch, "loopback.toml", &text(url));
        assert!(ok, "{url}: {stderr}");
    }
    let allowed = text("http://tap.example.com").replace(
        "sinks = [\"archive\"]\n",
        "sinks = [\"archive\"]\nallow_http = true\n",
    );
    let (ok, stderr) = check(&scratch, "allowed.toml", &allowed);
    assert!(ok, "{stderr}");
}

/// Issue 14, item 7: a 3xx from the TAP API is not followed (the body of whatever answers there
/// would be taken as the tenant's events): the window fails naming the `Location`, is retried
/// later, and the tenant then completes exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_is_an_error_naming_its_location() {
    let rig = Rig::builder()
        .tenant("moved", "p-moved", "s-moved", 300)
        .seed(12)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"2h\"\nmax_backoff = \"1m\"")
        .build()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    let elsewhere = format!("{}/v2/siem/all?format=json&elsewhere=1", sim.base_url());
    sim.sim
        .inject("p-moved", [Fault::Redirect(302, elsewhere.clone())]);
    let running = rig.start().await;
    let errors = run_until_caught_up(&running, &manual, &["moved"]).await;
    let cps = checkpoints(&running.board, "archive");
    let status = running.board.get("moved").unwrap();
    running.stop().await;
    assert!(
        errors.get("moved").is_some_and(|e| e
            .iter()
            .any(|e| e.contains("redirected (302)") && e.contains(&elsewhere))),
        "the redirect was reported with its Location: {errors:?}"
    );
    assert_eq!(status.requests_by_status.get("302"), Some(&1), "{status:?}");
    assert!(
        !sim.sim
            .request_log("p-moved")
            .iter()
            .any(|r| r.query.contains("elsewhere")),
        "the redirect was followed"
    );
    let initial = (t0().timestamp() - lag() - 2 * 3600).div_euclid(60) * 60;
    assert_exactly_once(
        &read_lines(&events),
        "moved",
        &expected(&sim.sim, "p-moved", initial, cps["moved"]),
    );
}

/// A rig for the real binary on the system clock: one tenant of a simulator seeded with `seed`,
/// JSON logs, an admin endpoint on `port`; and its config file.
async fn daemon_rig(seed: u64, port: u16, poll: &str) -> (Rig, std::path::PathBuf) {
    let rig = Rig::builder()
        .system_clock()
        .tenant("odd", "p-odd", "s-odd", 60)
        .seed(seed)
        .top(&format!(
            "admin_listen = \"127.0.0.1:{port}\"\n[log]\nformat = \"json\"\n"
        ))
        .poll(poll)
        .build()
        .await;
    let config = rig.write_config();
    (rig, config)
}

/// Issue 14, item 9: responses with arrays the API does not have are counted
/// (`tapfwd_unknown_array_elements_total`) and warned about once per tenant and array, and a
/// `queryEndTime` far from the window's end is warned about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_arrays_are_counted_and_warned_once() {
    let port = support::daemon::free_port();
    let (rig, config) = daemon_rig(
        14,
        port,
        "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"3h\"",
    )
    .await;
    rig.sim
        .sim
        .inject("p-odd", [Fault::OddArrays, Fault::OddArrays]);
    let mut daemon = support::daemon::Daemon::start(&config, &[], &[]);
    daemon
        .wait_log("caught up", |v| support::daemon::message(v) == "caught up")
        .await;
    let (_, metrics) = support::daemon::http_get(&format!("http://127.0.0.1:{port}/metrics")).await;
    let (_, log) = daemon.stop().await;
    assert_eq!(
        support::daemon::metric(
            &metrics,
            "tapfwd_unknown_array_elements_total{tenant=\"odd\"}"
        ),
        Some(6.0),
        "{metrics}"
    );
    let warned = |name: &str| {
        log.lines()
            .filter(|l| l.contains("does not know") && l.contains(&format!("\"array\":\"{name}\"")))
            .count()
    };
    assert_eq!(warned("MessagesDelivered"), 1, "{log}");
    assert_eq!(warned("messagesQuarantined"), 1, "{log}");
    assert!(
        log.lines().any(|l| l.contains("queryEndTime disagrees")),
        "{log}"
    );
}

/// Issue 14, item 10: under `umask 000` the state directory is created 0700 and the store's
/// files and the events file 0600.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_event_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let port = support::daemon::free_port();
    let (rig, config) = daemon_rig(
        15,
        port,
        "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"2h\"",
    )
    .await;
    let scratch = &rig.scratch;
    let mut daemon = support::daemon::Daemon::start_under_umask(&config, "000");
    daemon
        .wait_log("caught up", |v| support::daemon::message(v) == "caught up")
        .await;
    let (status, log) = daemon.stop().await;
    assert!(status.success(), "{log}");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let state = scratch.path("state");
    assert_eq!(mode(&state), 0o700, "state_dir");
    let mut files = 0;
    let mut stack = vec![state.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                assert_eq!(mode(&p), 0o700, "{}", p.display());
                stack.push(p);
            } else {
                files += 1;
                assert_eq!(mode(&p), 0o600, "{}", p.display());
            }
        }
    }
    assert!(files > 0, "the store has files");
    assert_eq!(mode(&scratch.path("events.ndjson")), 0o600, "events file");
}

/// Issue 14, item 11: an admin endpoint beyond loopback is warned about at start; with
/// `admin_token_env`, `/status` and `/metrics` need the bearer token (the probes do not), and
/// `tapfwd status` sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoint_beyond_loopback_is_warned_and_token_protected() {
    const TOKEN: &str = "admin-token-5d1e0b";
    let port = support::daemon::free_port();
    let (_rig, config) = daemon_rig(
        16,
        port,
        "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"",
    )
    .await;
    let text = std::fs::read_to_string(&config).unwrap().replace(
        &format!("admin_listen = \"127.0.0.1:{port}\"\n"),
        &format!(
            "admin_listen = \"0.0.0.0:{port}\"\nadmin_token_env = \"TAPFWD_TEST_ADMIN_TOKEN\"\n"
        ),
    );
    std::fs::write(&config, text).unwrap();
    let env = [("TAPFWD_TEST_ADMIN_TOKEN", TOKEN)];
    let mut daemon = support::daemon::Daemon::start(&config, &[], &env);
    daemon
        .wait_log("the admin warning", |v| {
            support::daemon::message(v).starts_with("admin endpoint listens beyond loopback")
        })
        .await;
    daemon
        .wait_log("caught up", |v| support::daemon::message(v) == "caught up")
        .await;
    let get = |path: &str, token: Option<&'static str>| {
        let url = format!("http://127.0.0.1:{port}{path}");
        async move {
            let mut r = reqwest::Client::new().get(url);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(get("/status", None).await, 401);
    assert_eq!(get("/metrics", None).await, 401);
    assert_eq!(get("/metrics", Some("wrong")).await, 401);
    assert_eq!(get("/status", Some(TOKEN)).await, 200);
    assert_eq!(get("/metrics", Some(TOKEN)).await, 200);
    assert_eq!(get("/healthz", None).await, 200);
    assert_eq!(get("/readyz", None).await, 200);
    let out = support::daemon::tapfwd()
        .args(["status", "--json", "--config"])
        .arg(&config)
        .env("TAPFWD_TEST_ADMIN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (status, log) = daemon.stop().await;
    assert!(status.success(), "{log}");
    assert!(!log.contains(TOKEN), "the token was logged");
}

/// Issue 14, item 12: a reload whose changed sink cannot start keeps the old sink and is counted
/// as rejected (`tapfwd_config_last_reload_successful 0`), not as applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_whose_sink_change_cannot_start_is_counted_as_rejected() {
    let rig = Rig::builder()
        .tenant("r", "p-r", "s-r", 300)
        .seed(17)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"")
        .build()
        .await;
    let (manual, scratch, events, text) = (rig.manual(), &rig.scratch, &rig.events, &rig.text);
    let path = rig.write_config();
    let app = rig.app().await;
    let metrics = app.metrics();
    let reloader = app.reloader();
    let running = Running::run(app);
    running.wait_idle(1, manual.now()).await;
    let blocker = scratch.path("blocker");
    std::fs::write(&blocker, "a file, not a directory").unwrap();
    let unopenable = blocker.join("x.ndjson").display().to_string();
    std::fs::write(
        &path,
        text.replace(&events.display().to_string(), &unopenable),
    )
    .unwrap();
    let summary = reloader.reload_file(&path, None).await.unwrap();
    assert_eq!(summary.sinks_kept_old, ["archive"]);
    let text = metrics.render();
    running.stop().await;
    assert_eq!(
        tapfwd_metric(&text, "tapfwd_config_last_reload_successful"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        tapfwd_metric(&text, "tapfwd_config_reloads_total{result=\"rejected\"}"),
        Some(1.0),
        "{text}"
    );
}

/// Issue 14, item 13: deleting the events file's directory while the daemon runs does not let
/// checkpoints pass events that are gone: the commit fails, the file is reopened (its directory
/// created again) and the window is fetched again into it, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_events_directory_is_noticed_before_commit_and_refilled() {
    let (rig, running) = Rig::builder()
        .tenant("del", "p-del", "s-del", 1200)
        .events_at("out/events.ndjson")
        .seed(18)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"\nmax_backoff = \"1m\"")
        .start()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    let dir = rig.scratch.path("out");
    running.wait_idle(1, manual.now()).await;
    let before = checkpoints(&running.board, "archive")["del"];
    std::fs::remove_dir_all(&dir).unwrap();
    step_clock(&running, &manual, 1, Duration::from_secs(300), 8).await;
    let status = running.board.get("del").unwrap();
    let after = checkpoints(&running.board, "archive")["del"];
    running.stop().await;
    assert!(after > before + 1200, "moved on: {before} -> {after}");
    let sink = &status.sinks[0];
    assert!(!sink.failing, "recovered: {status:?}");
    // Everything after the deletion is in the new file, exactly once.
    assert_exactly_once(
        &read_lines(&events),
        "del",
        &expected(&sim.sim, "p-del", before, after),
    );
}
