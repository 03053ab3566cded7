//! The daemon under measurement, as every case sets it up: a fresh scratch directory, its config
//! (the bench's TAP tenants into one file sink), the real [`App`] running on a task of its own,
//! the counts read from its status board, and, for the manual-clock cases (scale, state), the
//! wait until every tenant is idle and the stepping of the clock from one poll to the next.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio_util::sync::CancellationToken;

use super::measure::thread_cpu_secs;
use super::sim::{principal, secret};
use crate::clock::{self, ManualClock};
use crate::config::Config;
use crate::status::StatusBoard;
use crate::App;

/// A case's scratch directory, emptied when the case starts.
pub(super) struct Scratch {
    /// `DIR/<case>`: the simulator's config goes here too.
    pub(super) dir: PathBuf,
    /// The daemon's `state_dir`.
    pub(super) state: PathBuf,
    /// The file sink's output.
    pub(super) events: PathBuf,
}

impl Scratch {
    /// `dir/name`, emptied (or created).
    pub(super) fn fresh(dir: &Path, name: &str) -> anyhow::Result<Scratch> {
        let d = dir.join(name);
        if d.exists() {
            std::fs::remove_dir_all(&d).with_context(|| format!("emptying {}", d.display()))?;
        }
        std::fs::create_dir_all(&d)?;
        Ok(Scratch {
            state: d.join("state"),
            events: d.join("events.ndjson"),
            dir: d,
        })
    }
}

/// The daemon's config for the TAP cases: `n` of the bench's tenants at `base_url`, the `[poll]`
/// lines `poll`, one file sink `archive`, state and output in `scratch`.
pub(super) fn tap_config(
    scratch: &Scratch,
    base_url: &str,
    n: usize,
    poll: &str,
) -> anyhow::Result<Config> {
    let mut s = format!(
        "state_dir = {:?}\n[poll]\n{poll}\n[sinks.archive]\ntype = \"file\"\npath = {:?}\n",
        scratch.state.display().to_string(),
        scratch.events.display().to_string()
    );
    for i in 1..=n {
        s.push_str(&format!(
            "[tenants.t{i:05}]\nbase_url = \"{base_url}\"\nprincipal = \"{}\"\nsecret = \"{}\"\nsinks = [\"archive\"]\n",
            principal(i),
            secret(i)
        ));
    }
    // The text (large with 10,000 tenants) is dropped here, before any case takes its baseline.
    parse_config(&s)
}

/// The `[poll]` lines of the manual-clock cases (scale, state): 5-minute polls, each tenant's
/// first window 5 minutes long, 16 tenants at a time.
pub(super) const MANUAL_CLOCK_POLL: &str =
    "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"5m\"\nconcurrency = 16\n";

/// Parses a config the bench wrote (no environment overrides).
pub(super) fn parse_config(text: &str) -> anyhow::Result<Config> {
    Config::from_toml_with_env(text, std::iter::empty())
        .map_err(|e| anyhow::anyhow!("bench config: {e}"))
}

/// A built daemon running on a task of its own until [`Running::stop`].
pub(super) struct Running {
    /// Its status board, which the cases read their counts and idleness from.
    pub(super) board: Arc<StatusBoard>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Starts `app` running.
    pub(super) fn start(app: App) -> Running {
        let board = app.status();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run(shutdown.clone()));
        Running {
            board,
            shutdown,
            task,
        }
    }

    /// Shuts the daemon down and waits for its run to end; hands back its board for the final
    /// counts.
    pub(super) async fn stop(self) -> anyhow::Result<Arc<StatusBoard>> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(self.board)
    }
}

/// Sum of events delivered to every sink, from the status board.
pub(super) fn delivered(board: &StatusBoard) -> u64 {
    board
        .snapshot()
        .iter()
        .flat_map(|t| t.sinks.iter())
        .map(|s| s.delivered)
        .sum()
}

/// Waits (polling, without cloning the board) until every tenant has scheduled its next poll
/// after `now`; returns the earliest of those polls. Blocking: it runs on a thread of its own
/// so that its CPU can be measured and taken out of the daemon's.
pub(super) fn wait_idle(board: &StatusBoard, n: usize, now: i64) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    // `next_poll_at` is RFC 3339 in one fixed format (`clock::rfc3339`), so comparing the
    // strings compares the instants: no parsing of 10,000 timestamps per check.
    let now_text = clock::rfc3339(now);
    // Short naps first (a 5-minute poll of a few events takes about a millisecond), longer
    // ones while a big window is being delivered.
    let mut nap = Duration::from_micros(200);
    loop {
        let mut idle = true;
        let mut next: Option<String> = None;
        let count = board.for_each(|s| match s.next_poll_at.as_deref() {
            Some(a) if a > now_text.as_str() => {
                if next.as_deref().map_or(true, |m| a < m) {
                    next = Some(a.to_string());
                }
            }
            _ => idle = false,
        });
        if idle && count == n {
            return Ok(next
                .and_then(|a| chrono::DateTime::parse_from_rfc3339(&a).ok())
                .map_or(i64::MAX, |a| a.timestamp()));
        }
        if Instant::now() > deadline {
            bail!("tenants did not become idle within 10 minutes");
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// Moves the manual clock from one poll instant to the next (as a real clock would reach each
/// tenant exactly at its phase) until `until`, on a blocking thread; returns the CPU seconds
/// that thread (the benchmark's own checks) used.
pub(super) async fn run_until(
    board: &Arc<StatusBoard>,
    manual: &Arc<ManualClock>,
    n: usize,
    until: i64,
) -> anyhow::Result<f64> {
    let (board, manual) = (board.clone(), manual.clone());
    tokio::task::spawn_blocking(move || {
        let cpu0 = thread_cpu_secs();
        loop {
            let next = wait_idle(&board, n, manual.now().timestamp())?;
            if next > until {
                manual.set(clock::to_datetime(until));
                return Ok(thread_cpu_secs() - cpu0);
            }
            manual.set(clock::to_datetime(next));
        }
    })
    .await?
}
