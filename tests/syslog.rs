//! The syslog sink against a real rsyslogd (started by `scripts/test-services up`): UDP, TCP with
//! octet counting, TCP with LF framing, TLS and mutual TLS. Each test runs the real App against
//! the simulator on a manual clock, then reads what rsyslog wrote and compares every message
//! with the simulator's ground truth, byte for byte, including the syslog timestamp (the
//! event's own time). The last test stops rsyslog in the middle of a run while the same tenant
//! also writes to a file sink.
//!
//! rsyslog's output files are shared by every run, so each test marks its messages with a
//! unique HOSTNAME and reads only from where the file ended when it started.

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use support::rig::Rig;
use support::*;
use tapfwd::status::TenantStatus;
use tokio_util::sync::CancellationToken;

const POLL: &str =
    "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"2h\"\nbatch_events = 100";
const MIN5: Duration = Duration::from_secs(300);

/// Tests that use rsyslog take it shared; the one that stops it takes it alone.
static RSYSLOG: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// A variable exported by `scripts/test-services env`; its absence fails the test loudly.
fn service_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the syslog tests need the real rsyslogd. Run `scripts/test-services up` \
             and `eval \"$(scripts/test-services env)\"` (scripts/test does both)"
        )
    })
}

fn services(command: &str) {
    let script = service_env("TAPFWD_SERVICES_SCRIPT");
    let status = std::process::Command::new(&script)
        .arg(command)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
    assert!(status.success(), "{script} {command} failed: {status}");
}

/// Stops rsyslog; starts it again when dropped, also when the test fails half-way.
struct Stopped;

impl Stopped {
    fn rsyslog() -> Stopped {
        services("stop-rsyslog");
        Stopped
    }

    fn restart(self) {
        drop(self);
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // No second panic while unwinding: just try.
            let script = std::env::var("TAPFWD_SERVICES_SCRIPT").unwrap_or_default();
            let _ = std::process::Command::new(script)
                .arg("start-rsyslog")
                .status();
        } else {
            services("start-rsyslog");
        }
    }
}

/// A HOSTNAME no other run uses.
fn marker(test: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("tft-{test}-{}-{nanos}", std::process::id())
}

/// One message rsyslog received from us, split into its parts.
#[derive(Debug, Clone)]
struct Received {
    tenant: String,
    event_type: String,
    timestamp: String,
    msgid: String,
    raw: Vec<u8>,
}

/// Reads rsyslog's JSON output from `offset`, complete lines only, keeping our `host`'s messages.
fn read_received(jsonl: &Path, offset: u64, host: &str) -> Vec<Received> {
    let data = std::fs::read(jsonl).unwrap_or_default();
    let data = &data[(offset as usize).min(data.len())..];
    let complete = match data.iter().rposition(|b| *b == b'\n') {
        Some(end) => &data[..end],
        None => return Vec::new(),
    };
    let mut out = Vec::new();
    for line in complete.split(|b| *b == b'\n') {
        if line.is_empty() || !line.windows(host.len()).any(|w| w == host.as_bytes()) {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|e| {
            panic!(
                "rsyslog wrote a line that is not JSON ({e}): {}",
                String::from_utf8_lossy(line)
            )
        });
        if v["hostname"].as_str() != Some(host) {
            continue;
        }
        let rawmsg = v["rawmsg"].as_str().unwrap().as_bytes().to_vec();
        let after_pri = rawmsg.iter().position(|b| *b == b'>').unwrap() + 1;
        out.push(if rawmsg[after_pri..].starts_with(b"1 ") {
            parse_5424(&rawmsg)
        } else {
            parse_3164(&rawmsg)
        });
    }
    out
}

/// `<PRI>1 TS HOST APP PROCID MSGID [tapfwd@32473 eventType="..." tenant="..."] MSG`.
fn parse_5424(msg: &[u8]) -> Received {
    let text = String::from_utf8_lossy(msg);
    let mut at = 0;
    let mut fields = Vec::new();
    for _ in 0..6 {
        let end = at
            + msg[at..]
                .iter()
                .position(|b| *b == b' ')
                .unwrap_or_else(|| panic!("short message: {text}"));
        fields.push(String::from_utf8(msg[at..end].to_vec()).unwrap());
        at = end + 1;
    }
    assert!(fields[0].ends_with(">1"), "not RFC 5424: {text}");
    assert_eq!(fields[4], "-", "PROCID: {text}");
    assert!(
        msg[at..].starts_with(b"[tapfwd@32473 "),
        "structured data: {text}"
    );
    let sd_end = at + msg[at..].iter().position(|b| *b == b']').unwrap();
    let sd = String::from_utf8(msg[at..sd_end].to_vec()).unwrap();
    let param = |name: &str| -> String {
        let start = sd
            .find(&format!("{name}=\""))
            .unwrap_or_else(|| panic!("no {name} in {sd}"))
            + name.len()
            + 2;
        sd[start..start + sd[start..].find('"').unwrap()].to_string()
    };
    assert_eq!(msg[sd_end + 1], b' ', "{text}");
    Received {
        tenant: param("tenant"),
        event_type: param("eventType"),
        timestamp: fields[1].clone(),
        msgid: fields[5].clone(),
        raw: msg[sd_end + 2..].to_vec(),
    }
}

/// `<PRI>Mmm dd hh:mm:ss HOST APP: tenant=T eventType=E RAW`.
fn parse_3164(msg: &[u8]) -> Received {
    let text = String::from_utf8_lossy(msg);
    let start = msg.iter().position(|b| *b == b'>').unwrap() + 1;
    let timestamp = String::from_utf8(msg[start..start + 15].to_vec()).unwrap();
    let mut at = start + 16;
    let mut fields = Vec::new();
    for _ in 0..4 {
        let end = at
            + msg[at..]
                .iter()
                .position(|b| *b == b' ')
                .unwrap_or_else(|| panic!("short message: {text}"));
        fields.push(String::from_utf8(msg[at..end].to_vec()).unwrap());
        at = end + 1;
    }
    assert!(fields[1].ends_with(':'), "TAG: {text}");
    let tenant = fields[2]
        .strip_prefix("tenant=")
        .unwrap_or_else(|| panic!("{text}"));
    let event_type = fields[3]
        .strip_prefix("eventType=")
        .unwrap_or_else(|| panic!("{text}"));
    Received {
        tenant: tenant.to_string(),
        event_type: event_type.to_string(),
        timestamp,
        msgid: event_type.to_string(),
        raw: msg[at..].to_vec(),
    }
}

/// Waits until rsyslog has written at least `n` of our messages; fails after [`PATIENCE`].
async fn wait_received(jsonl: &Path, offset: u64, host: &str, n: usize) -> Vec<Received> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let got = read_received(jsonl, offset, host);
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "rsyslog wrote {} of {n} messages to {} within {PATIENCE:?}",
            got.len(),
            jsonl.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The event's own time as the sink must stamp it (RFC 5424, RFC 3164): messageTime/clickTime,
/// else threatTime.
fn event_time(raw: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(raw).unwrap();
    let t = ["messageTime", "clickTime", "threatTime"]
        .iter()
        .find_map(|k| v[*k].as_str())
        .unwrap_or_else(|| panic!("event without a time: {v}"));
    let t = DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc);
    (
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        t.format("%b %e %H:%M:%S").to_string(),
    )
}

/// Checks every received message: timestamp = event time, MSGID = event type; returns them as
/// lines for [`assert_exactly_once`].
fn as_lines(received: &[Received]) -> Vec<Line> {
    received
        .iter()
        .map(|r| {
            assert_eq!(r.msgid, r.event_type);
            Line {
                tenant: r.tenant.clone(),
                event_type: r.event_type.clone(),
                raw: r.raw.clone(),
            }
        })
        .collect()
}

fn check_timestamps(received: &[Received], expected: &[(String, Vec<u8>)]) {
    let known: std::collections::HashSet<&[u8]> =
        expected.iter().map(|(_, r)| r.as_slice()).collect();
    for r in received.iter().filter(|r| known.contains(r.raw.as_slice())) {
        let (rfc5424, rfc3164) = event_time(&r.raw);
        let want = if r.timestamp.contains('T') {
            rfc5424
        } else {
            rfc3164
        };
        assert_eq!(
            r.timestamp, want,
            "syslog timestamp must be the event's time"
        );
    }
}

/// Runs two tenants into one syslog sink described by `sink` (TOML lines after `type`), steps
/// the clock, and checks that rsyslog's `jsonl_var` file got every event once, byte-intact.
async fn run_into_rsyslog(
    test: &str,
    sink: &str,
    jsonl_var: &str,
    per_hour: u32,
    rewrite: fn(&[u8]) -> Vec<u8>,
) {
    let _shared = RSYSLOG.read().await;
    let jsonl = PathBuf::from(service_env(jsonl_var));
    let offset = std::fs::metadata(&jsonl).map(|m| m.len()).unwrap_or(0);
    let host = marker(test);
    let (rig, running) = Rig::builder()
        .no_archive()
        .sink(
            "siem",
            &format!("type = \"syslog\"\nhostname = \"{host}\"\n{sink}"),
        )
        .tenant("alpha", "p-a", "s-a", per_hour)
        .tenant("beta", "p-b", "s-b", per_hour / 2)
        .seed(17)
        .poll(POLL)
        .start()
        .await;
    let (sim, manual) = (rig.sim.clone(), rig.manual());
    running.wait_idle(2, manual.now()).await;
    step_clock(&running, &manual, 2, MIN5, 3).await;
    let cps = checkpoints(&running.board, "siem");
    running.stop().await;
    let initial = (t0().timestamp() - 1800 - 2 * 3600).div_euclid(60) * 60;
    let want: HashMap<&str, Vec<(String, Vec<u8>)>> = [("alpha", "p-a"), ("beta", "p-b")]
        .into_iter()
        .map(|(id, p)| {
            let events = expected(&sim.sim, p, initial, cps[id])
                .into_iter()
                .map(|(k, raw)| (k, rewrite(&raw)))
                .collect();
            (id, events)
        })
        .collect();
    let total: usize = want.values().map(Vec::len).sum();
    let received = wait_received(&jsonl, offset, &host, total).await;
    let lines = as_lines(&received);
    for (id, events) in &want {
        assert_exactly_once(&lines, id, events);
        check_timestamps(&received, events);
    }
    assert_eq!(received.len(), total, "nothing else arrived");
}

fn same(raw: &[u8]) -> Vec<u8> {
    raw.to_vec()
}

fn addr(port_var: &str) -> String {
    format!(
        "{}:{}",
        service_env("TAPFWD_SYSLOG_HOST"),
        service_env(port_var)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_delivers_every_event_byte_intact_with_event_time() {
    // UDP promises nothing: with 400 events sent in bursts, rsyslog (212 KiB socket receive
    // buffer) dropped 28% of them on loopback. At this volume a burst fits in the buffer, so
    // every datagram must arrive; what this checks is the message itself, byte for byte.
    let sink = format!(
        "transport = \"udp\"\naddress = \"{}\"\nmax_message_bytes = 65000\n",
        addr("TAPFWD_SYSLOG_UDP_PORT")
    );
    run_into_rsyslog("udp", &sink, "TAPFWD_SYSLOG_UDP_JSONL", 30, same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_octet_counting_delivers_every_event_exactly_once() {
    let sink = format!(
        "transport = \"tcp\"\naddress = \"{}\"\n",
        addr("TAPFWD_SYSLOG_TCP_PORT")
    );
    run_into_rsyslog("tcp", &sink, "TAPFWD_SYSLOG_TCP_JSONL", 600, same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_newline_framing_delivers_every_event_exactly_once() {
    let sink = format!(
        "transport = \"tcp\"\nframing = \"newline\"\naddress = \"{}\"\n",
        addr("TAPFWD_SYSLOG_TCP_PORT")
    );
    // The simulator sends compact JSON; were there line breaks, they would arrive as spaces.
    fn spaces(raw: &[u8]) -> Vec<u8> {
        raw.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
            .collect()
    }
    run_into_rsyslog("tcplf", &sink, "TAPFWD_SYSLOG_TCP_JSONL", 600, spaces).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_rfc3164_carries_tenant_and_type_in_a_prefix() {
    let sink = format!(
        "transport = \"tcp\"\nformat = \"rfc3164\"\naddress = \"{}\"\n",
        addr("TAPFWD_SYSLOG_TCP_PORT")
    );
    run_into_rsyslog("bsd", &sink, "TAPFWD_SYSLOG_TCP_JSONL", 300, same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_test_ca_delivers_every_event_exactly_once() {
    let sink = format!(
        "transport = \"tls\"\naddress = \"{}\"\nca_file = {:?}\n",
        addr("TAPFWD_SYSLOG_TLS_PORT"),
        service_env("TAPFWD_TLS_CA")
    );
    run_into_rsyslog("tls", &sink, "TAPFWD_SYSLOG_TLS_JSONL", 600, same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_with_client_certificate_delivers_every_event() {
    let sink = format!(
        "transport = \"tls\"\naddress = \"{}\"\nserver_name = \"localhost\"\nca_file = {:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}\n",
        addr("TAPFWD_SYSLOG_MTLS_PORT"),
        service_env("TAPFWD_TLS_CA"),
        service_env("TAPFWD_TLS_CLIENT_CERT"),
        service_env("TAPFWD_TLS_CLIENT_KEY"),
    );
    run_into_rsyslog("mtls", &sink, "TAPFWD_SYSLOG_MTLS_JSONL", 300, same).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_refuses_a_server_the_ca_did_not_sign() {
    let _shared = RSYSLOG.read().await;
    // Public roots only: the test server's certificate must not verify, and nothing is sent.
    let text = format!(
        "transport = \"tls\"\naddress = \"{}\"\n",
        addr("TAPFWD_SYSLOG_TLS_PORT")
    );
    let config = parse_config(&format!(
        "state_dir = \"unused\"\n[sinks.siem]\ntype = \"syslog\"\n{text}[tenants.t]\nprincipal = \"p\"\nsecret = \"s\"\nsinks = [\"siem\"]\n"
    ));
    let sink =
        tapfwd::sinks::build("siem", &config.sinks["siem"], &tapfwd::secret::process_env).unwrap();
    let batch = one_event_batch();
    let err = sink
        .deliver("t", &batch, Box::new(|_| panic!("must not commit")))
        .await
        .unwrap_err();
    assert!(
        !err.is_retryable(),
        "an unverifiable certificate is a configuration problem: {err}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
}

fn one_event_batch() -> tapfwd::event::Batch {
    use tapfwd::api::split::{BatchBuilder, SplitLimits, Splitter};
    let mut s = Splitter::new(SplitLimits::default());
    let mut b = BatchBuilder::new();
    s.feed(
        br#"{"clicksBlocked":[{"id":"tls-refused","clickTime":"2026-11-20T11:00:00.000Z"}]}"#,
        &mut b,
    )
    .unwrap();
    s.finish().unwrap();
    b.take()
}

/// The App with its metrics (support's `Running` keeps only the status board).
struct WithMetrics {
    board: std::sync::Arc<tapfwd::status::StatusBoard>,
    metrics: std::sync::Arc<tapfwd::metrics::Metrics>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

fn sink_of<'a>(t: &'a TenantStatus, name: &str) -> &'a tapfwd::status::SinkStatus {
    t.sinks.iter().find(|s| s.sink == name).unwrap()
}

fn gauge(metrics: &str, name: &str, tenant: &str, sink: &str) -> f64 {
    let prefix = format!("{name}{{tenant=\"{tenant}\",sink=\"{sink}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in metrics:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

/// rsyslog stops in the middle of a run. The tenant's file sink keeps advancing with no
/// duplicates; the syslog sink holds its checkpoint, shows its backlog in status and metrics,
/// and catches up after rsyslog is back; every event reaches both, and none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_down_holds_syslog_progress_while_file_sink_continues_and_catches_up() {
    let _alone = RSYSLOG.write().await;
    let jsonl = PathBuf::from(service_env("TAPFWD_SYSLOG_TCP_JSONL"));
    let offset = std::fs::metadata(&jsonl).map(|m| m.len()).unwrap_or(0);
    let host = marker("outage");
    let rig = Rig::builder()
        .sink(
            "siem",
            &format!(
                "type = \"syslog\"\ntransport = \"tcp\"\naddress = \"{}\"\nhostname = \"{host}\"\n",
                addr("TAPFWD_SYSLOG_TCP_PORT")
            ),
        )
        .tenant("delta", "p-d", "s-d", 600)
        .seed(23)
        .poll(POLL)
        .build()
        .await;
    let (sim, manual, events) = (rig.sim.clone(), rig.manual(), rig.events.clone());
    let app = rig.app().await;
    let running = {
        let shutdown = CancellationToken::new();
        WithMetrics {
            board: app.status(),
            metrics: app.metrics(),
            shutdown: shutdown.clone(),
            task: tokio::spawn(app.run(shutdown)),
        }
    };
    let idle = |now: DateTime<Utc>| {
        let board = running.board.clone();
        async move {
            tokio::time::timeout(
                PATIENCE,
                board.wait_until(|s| {
                    s.len() == 1
                        && s[0]
                            .next_poll_at
                            .as_deref()
                            .and_then(|a| DateTime::parse_from_rfc3339(a).ok())
                            .is_some_and(|a| a > now)
                }),
            )
            .await
            .expect("tenant idle");
        }
    };
    idle(manual.now()).await;
    let initial = (t0().timestamp() - 1800 - 2 * 3600).div_euclid(60) * 60;
    let before = checkpoints(&running.board, "siem")["delta"];
    assert_eq!(before, checkpoints(&running.board, "archive")["delta"]);
    // rsyslog has written everything delivered so far before it is stopped (TCP syslog has no
    // acknowledgement: bytes unread when a server stops are lost, see docs/sinks.md ("Syslog and Kafka sinks")).
    let so_far = expected(&sim.sim, "p-d", initial, before).len();
    wait_received(&jsonl, offset, &host, so_far).await;

    let stopped = Stopped::rsyslog();
    for _ in 0..6 {
        manual.advance(MIN5);
        idle(manual.now()).await;
    }
    let st = running.board.get("delta").unwrap();
    let (file, siem) = (sink_of(&st, "archive"), sink_of(&st, "siem"));
    let held = checkpoints(&running.board, "siem")["delta"];
    let file_cp = checkpoints(&running.board, "archive")["delta"];
    assert_eq!(
        held, before,
        "the syslog checkpoint holds while rsyslog is down"
    );
    assert!(
        file_cp >= before + 25 * 60,
        "the file sink keeps advancing: {file_cp} vs {before}"
    );
    assert!(siem.failing && siem.last_error.is_some(), "{siem:?}");
    assert!(!file.failing, "{file:?}");
    assert!(
        siem.backlog_seconds >= file.backlog_seconds + 25 * 60,
        "status shows the syslog backlog: {siem:?} vs {file:?}"
    );
    let text = running.metrics.render();
    let siem_backlog = gauge(&text, "tapfwd_sink_backlog_seconds", "delta", "siem");
    let file_backlog = gauge(&text, "tapfwd_sink_backlog_seconds", "delta", "archive");
    assert!(
        siem_backlog >= file_backlog + 1500.0,
        "metrics show the backlog: {siem_backlog} vs {file_backlog}"
    );
    assert_exactly_once(
        &read_lines(&events),
        "delta",
        &expected(&sim.sim, "p-d", initial, file_cp),
    );

    stopped.restart();
    // Catch up: step the clock a minute at a time; between steps wait (with a deadline) for the
    // syslog checkpoint to reach the file's. The sink reconnects with backoff.
    let deadline = Instant::now() + PATIENCE;
    loop {
        manual.advance(Duration::from_secs(60));
        idle(manual.now()).await;
        let caught_up = |s: &[TenantStatus]| {
            let t = &s[0];
            sink_of(t, "siem").checkpoint == sink_of(t, "archive").checkpoint
                && !sink_of(t, "siem").failing
        };
        if tokio::time::timeout(
            Duration::from_millis(300),
            running.board.wait_until(caught_up),
        )
        .await
        .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the syslog sink did not catch up: {:#?}",
            running.board.snapshot()
        );
    }
    let st = running.board.get("delta").unwrap();
    assert!(sink_of(&st, "siem").backlog_seconds <= sink_of(&st, "archive").backlog_seconds);
    let end = checkpoints(&running.board, "siem")["delta"];
    running.shutdown.cancel();
    running.task.await.unwrap().unwrap();

    let want = expected(&sim.sim, "p-d", initial, end);
    assert_exactly_once(&read_lines(&events), "delta", &want);
    let received = wait_received(&jsonl, offset, &host, want.len()).await;
    let mut counts: HashMap<&[u8], usize> = HashMap::new();
    for r in &received {
        *counts.entry(r.raw.as_slice()).or_default() += 1;
    }
    let missing = want
        .iter()
        .filter(|(_, raw)| !counts.contains_key(raw.as_slice()))
        .count();
    let duplicated = counts.values().filter(|n| **n > 1).count();
    assert_eq!(missing, 0, "no event is lost across the outage");
    assert_eq!(duplicated, 0, "a clean stop/start sends nothing twice");
    assert_exactly_once(&as_lines(&received), "delta", &want);
    check_timestamps(&received, &want);
}
