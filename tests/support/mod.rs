//! Shared helpers for the black-box tests: a simulator, an App on a manual clock, and readers
//! that check a file sink's output against the simulator's ground truth, byte for byte.
//! The set-up most tests share (clock, simulator, scratch directory, config) is built by
//! [`rig::Rig`]. Destinations' fake servers are in [`fakes`], a fixed stand-in for the TAP API
//! and its configs in [`tap`], the real binary and its service surfaces in [`daemon`]. Tests
//! wait on conditions (the status board, log lines, datagrams) with these helpers, never on
//! sleeps.
#![allow(dead_code)]

pub mod daemon;
pub mod fakes;
pub mod rig;
pub mod tap;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tapfwd::clock::{Clock, ManualClock};
use tapfwd::simulate::{SimConfig, SimServer, SimTenant, Simulator};
use tapfwd::status::{StatusBoard, TenantStatus};
use tapfwd::{App, Config};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest a test waits for a condition before failing.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// A fixed start instant for manual-clock tests (second 7 of a minute, so nothing is aligned
/// by accident).
pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 7).unwrap()
}

/// A simulator and its server. Clones share both (a test holds the rig's by value); serving stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Sim {
    pub sim: Simulator,
    pub server: Arc<SimServer>,
}

impl Sim {
    pub async fn start(tenants: Vec<SimTenant>, seed: u64, clock: Clock) -> Sim {
        let sim = Simulator::new(
            SimConfig {
                seed,
                tenants,
                ..SimConfig::default()
            },
            clock,
        );
        let server = Arc::new(sim.bind("127.0.0.1:0".parse().unwrap()).await.unwrap());
        Sim { sim, server }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr)
    }
}

/// A config text with a file sink and one tenant table per `(id, principal, secret)`.
pub fn config_text(
    state_dir: &Path,
    events: &Path,
    base_url: &str,
    tenants: &[(&str, &str, &str)],
    poll: &str,
) -> String {
    let mut text = format!(
        "state_dir = {:?}\n[poll]\n{poll}\n[sinks.archive]\ntype = \"file\"\npath = {:?}\n",
        state_dir.display().to_string(),
        events.display().to_string()
    );
    for (id, principal, secret) in tenants {
        text.push_str(&format!(
            "[tenants.{id}]\nbase_url = \"{base_url}\"\nprincipal = \"{principal}\"\nsecret = \"{secret}\"\nsinks = [\"archive\"]\n"
        ));
    }
    text
}

pub fn parse_config(text: &str) -> Config {
    Config::from_toml_with_env(text, std::iter::empty()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// A running App.
pub struct Running {
    pub board: Arc<StatusBoard>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn start(config: Config, clock: Clock) -> Running {
        Running::run(App::build(config, clock).await.expect("app builds"))
    }

    /// Runs an App already built (for a test that takes its reloader, metrics or store first).
    pub fn run(app: App) -> Running {
        let board = app.status();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        Running {
            board,
            shutdown,
            task,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// Waits until `done` holds, or fails the test after [`PATIENCE`].
    pub async fn wait_for(&self, what: &str, done: impl FnMut(&[TenantStatus]) -> bool) {
        if tokio::time::timeout(PATIENCE, self.board.wait_until(done))
            .await
            .is_err()
        {
            panic!(
                "timed out waiting for {what}; status: {:#?}",
                self.board.snapshot()
            );
        }
    }

    /// Waits until every one of `n` tenants has run and scheduled its next poll after `now`.
    pub async fn wait_idle(&self, n: usize, now: DateTime<Utc>) {
        self.wait_for("every tenant to be idle", |s| {
            s.len() == n
                && s.iter().all(|t| {
                    t.next_poll_at
                        .as_deref()
                        .and_then(|a| DateTime::parse_from_rfc3339(a).ok())
                        .is_some_and(|a| a > now)
                })
        })
        .await;
    }
}

/// A condition for [`Running::wait_for`]: every one of `ids` is `ok`.
pub fn all_ok(ids: &'static [&'static str]) -> impl FnMut(&[TenantStatus]) -> bool {
    move |s: &[TenantStatus]| {
        ids.iter()
            .all(|id| s.iter().any(|t| t.tenant == *id && t.state == "ok"))
    }
}

/// Steps a manual clock forward `steps` times by `step`, waiting for the tenants after each.
pub async fn step_clock(
    running: &Running,
    manual: &ManualClock,
    tenants: usize,
    step: Duration,
    steps: usize,
) {
    for _ in 0..steps {
        manual.advance(step);
        running.wait_idle(tenants, manual.now()).await;
    }
}

/// One line of the file sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub tenant: String,
    pub event_type: String,
    pub raw: Vec<u8>,
}

/// Parses the file sink's output; fails the test on any malformed line.
pub fn read_lines(path: &Path) -> Vec<Line> {
    let data = std::fs::read(path).unwrap_or_default();
    let mut out = Vec::new();
    for (n, line) in data.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|e| {
            panic!(
                "line {} is not JSON ({e}): {}",
                n + 1,
                String::from_utf8_lossy(line)
            )
        });
        let tenant = v["tenant"].as_str().unwrap().to_string();
        let event_type = v["eventType"].as_str().unwrap().to_string();
        let prefix = format!("{{\"tenant\":\"{tenant}\",\"eventType\":\"{event_type}\",\"event\":");
        assert!(
            line.starts_with(prefix.as_bytes()),
            "line {}: envelope",
            n + 1
        );
        assert_eq!(line.last(), Some(&b'}'));
        let raw = line[prefix.len()..line.len() - 1].to_vec();
        out.push(Line {
            tenant,
            event_type,
            raw,
        });
    }
    out
}

/// The file sink's output as text lines, unparsed (none when the file does not exist yet).
pub fn sink_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The event GUIDs of `tenant` in `lines` of the file sink, in order.
pub fn guids(lines: &[String], tenant: &str) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["tenant"] == tenant)
        .map(|v| v["event"]["GUID"].as_str().unwrap().to_string())
        .collect()
}

/// Asserts that `lines` of `tenant` hold every expected event exactly once and nothing else.
pub fn assert_exactly_once(lines: &[Line], tenant: &str, expected: &[(String, Vec<u8>)]) {
    let mut got: HashMap<(&str, &[u8]), usize> = HashMap::new();
    for l in lines.iter().filter(|l| l.tenant == tenant) {
        *got.entry((l.event_type.as_str(), l.raw.as_slice()))
            .or_default() += 1;
    }
    let mut want: HashMap<(&str, &[u8]), usize> = HashMap::new();
    for (kind, raw) in expected {
        *want.entry((kind.as_str(), raw.as_slice())).or_default() += 1;
    }
    let dups: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        dups.is_empty(),
        "{tenant}: {} events delivered more than once, e.g. {:?}",
        dups.len(),
        dups.first().map(|((_, r), n)| (
            String::from_utf8_lossy(r)
                .chars()
                .take(200)
                .collect::<String>(),
            n
        ))
    );
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    assert!(
        missing.is_empty(),
        "{tenant}: {} of {} expected events missing, e.g. {:?}",
        missing.len(),
        want.len(),
        missing.first().map(|(k, r)| (
            k,
            String::from_utf8_lossy(r)
                .chars()
                .take(200)
                .collect::<String>()
        ))
    );
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        extra.is_empty(),
        "{tenant}: {} unexpected events, e.g. {:?}",
        extra.len(),
        extra.first().map(|(k, r)| (
            k,
            String::from_utf8_lossy(r)
                .chars()
                .take(200)
                .collect::<String>()
        ))
    );
    assert!(
        !want.is_empty(),
        "{tenant}: the test expected no events at all, which proves nothing"
    );
}

/// The simulator's ground truth for `principal` over `[start, end]` (both inclusive, like a
/// window), as (eventType, raw) pairs.
pub fn expected(sim: &Simulator, principal: &str, start: i64, end: i64) -> Vec<(String, Vec<u8>)> {
    let from = Utc.timestamp_opt(start, 0).unwrap();
    let to = Utc.timestamp_millis_opt(end * 1000 + 1).unwrap();
    sim.expected_events(principal, from, to)
        .into_iter()
        .map(|e| (e.kind.as_str().to_string(), e.raw))
        .collect()
}

/// Each tenant's checkpoint into `sink`, read from the status board.
pub fn checkpoints(board: &StatusBoard, sink: &str) -> BTreeMap<String, i64> {
    board
        .snapshot()
        .into_iter()
        .filter_map(|t| {
            let s = t.sinks.iter().find(|s| s.sink == sink)?;
            let at = DateTime::parse_from_rfc3339(&s.checkpoint)
                .ok()?
                .timestamp();
            Some((t.tenant, at))
        })
        .collect()
}

/// `tenant`'s checkpoint into `sink`, read from the status board (panics when it has none).
pub fn checkpoint(board: &StatusBoard, tenant: &str, sink: &str) -> i64 {
    checkpoints(board, sink)[tenant]
}

/// The instant (unix seconds) of query parameter `name` in a request's `query`, an RFC 3339 time
/// with its colons percent-encoded or not.
pub fn query_instant(query: &str, name: &str) -> Option<i64> {
    let v = query
        .split('&')
        .find_map(|p| p.strip_prefix(&format!("{name}=")))?;
    DateTime::parse_from_rfc3339(&v.replace("%3A", ":"))
        .ok()
        .map(|t| t.timestamp())
}

/// A scratch directory for one test.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Writes a secret file as an operator should: readable and writable by its owner alone (the
/// daemon refuses one others may read).
pub fn write_secret(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    file.write_all(text.as_bytes()).unwrap();
}

pub fn tenant(principal: &str, secret: &str, per_hour: u32) -> SimTenant {
    SimTenant::new(principal, secret, per_hour)
}

/// Parses an `interval=START/END` query value into unix seconds.
pub fn parse_interval(query: &str) -> Option<(i64, i64)> {
    let value = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("interval="))?;
    let value = value.replace("%2F", "/").replace("%3A", ":");
    let (a, b) = value.split_once('/')?;
    let a = DateTime::parse_from_rfc3339(a).ok()?.timestamp();
    let b = DateTime::parse_from_rfc3339(b).ok()?.timestamp();
    Some((a, b))
}
