//! The command line: `run`, `check`, `status`, `rewind`, `recover`, `simulate`, `demo`, `bench`,
//! `decode-url`, `lookup`.
//!
//! This module holds the clap types (every flag, its default and its help text), the dispatch
//! from a parsed [`Cli`] to the command, the exit code (0, or 1 with `tapfwd: ERROR` on stderr, or
//! [`EXIT_REFUSED`] when the state needs the operator)
//! and what every command shares: logging, config loading and the shutdown signals. `run` lives
//! here too, as it is the daemon itself ([`App`]) with SIGHUP reloads; the offline operations on
//! the store and config are in `ops` (and `recover`, which rebuilds a sink's state after the store
//! was lost), the simulator and the demo in `demo`, the benchmark in
//! `bench`, the analyst commands in `analyst`. Nothing else in the crate depends on this module:
//! it is the top of the layers.

mod analyst;
mod bench;
mod demo;
mod ops;
mod recover;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::shard::Shard;
use crate::App;

pub use analyst::LookupKind;
pub use bench::{BenchArgs, Case};
pub use ops::{render_status_table, rewind_target};

/// Collects Proofpoint TAP SIEM events for many tenants and ships them exactly once to file,
/// syslog, Kafka and HTTP SIEMs.
#[derive(Parser, Debug)]
#[command(name = "tapfwd", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon in the foreground until SIGTERM or SIGINT; SIGHUP reloads the config.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Poll only shard I of N (0 <= I < N): the tenants whose id hashes to I. Overrides
        /// `shard` in the config.
        #[arg(long, env = "TAPFWD_SHARD")]
        shard: Option<Shard>,
    },
    /// Validate the config; exit 0 if it is good, non-zero naming the bad key if not.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also try each tenant's credentials with one request (it counts against the quota).
        #[arg(long)]
        connect: bool,
        /// Also list the tenants that shard I of N polls.
        #[arg(long)]
        shard: Option<Shard>,
    },
    /// Move a tenant's checkpoints back so that its events are fetched again. The daemon must be
    /// stopped (it holds the state store).
    Rewind {
        #[arg(long, short)]
        config: PathBuf,
        /// The tenant id.
        #[arg(long)]
        tenant: String,
        /// Where to go back to: an RFC 3339 instant (`2026-11-23T08:00:00Z`) or a duration ago
        /// (`6h`). Floored to the minute; no older than the API's 7 days minus an hour.
        #[arg(long)]
        to: String,
        /// Only the stream into this sink (default: every sink of the tenant).
        #[arg(long)]
        sink: Option<String>,
        /// Also forget the streams' dedupe keys, so events already delivered are delivered again.
        /// Without it, events still remembered (the last `poll.dedupe_horizon` before the
        /// checkpoint) are not sent twice.
        #[arg(long)]
        no_dedupe: bool,
    },
    /// Rebuild one sink's state after the state store was lost or damaged (the daemon refuses to
    /// start until each sink is recovered). A file sink is rebuilt from its own file: its position
    /// and the dedupe keys of its last hours, so that the daemon goes on exactly once. Any other
    /// sink needs `--start-at`. The daemon must be stopped.
    Recover {
        #[arg(long, short)]
        config: PathBuf,
        /// The sink (`[sinks.NAME]`).
        #[arg(long)]
        sink: String,
        /// Go on from this instant instead (an RFC 3339 instant or a duration ago such as `6h`),
        /// for every tenant writing to the sink, accepting that events between then and the lost
        /// position are delivered to it again. Required for sinks other than `file`.
        #[arg(long)]
        start_at: Option<String>,
    },
    /// Show each tenant's checkpoints, lag, last error and requests used in the last 24 h.
    Status {
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Run the built-in TAP SIEM API simulator.
    Simulate {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8480")]
        listen: SocketAddr,
        /// Simulator config (TOML: `seed` and `[[tenants]]`); without it, `--tenants` generated
        /// tenants `tenant-0001`… with secrets `secret-0001`….
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value_t = 3)]
        tenants: usize,
        #[arg(long, default_value_t = 600)]
        events_per_hour: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run the daemon against the built-in simulator, no Proofpoint account needed: the TAP
    /// tenants' events land in DIR/events.ndjson, People snapshots in DIR/people.ndjson, the
    /// Essentials partner's in DIR/essentials.ndjson and DIR/client-4711.ndjson.
    Demo {
        #[arg(long, default_value = "var/demo")]
        dir: PathBuf,
        /// TAP tenants (an Essentials partner with three client organisations is added).
        #[arg(long, default_value_t = 3)]
        tenants: usize,
        #[arg(long, default_value_t = 600)]
        events_per_hour: u32,
        /// Hours of history to collect on the first start.
        #[arg(long, default_value_t = 3)]
        hours: u64,
        /// Keep polling after catching up (otherwise exit once every tenant is caught up).
        #[arg(long)]
        follow: bool,
    },
    /// Measure throughput, memory per tenant and large-window memory against the built-in
    /// simulator on 127.0.0.1 (docs/performance.md). Build with `--profile dist`, as the shipped
    /// binary is.
    Bench(BenchArgs),
    /// Decode Proofpoint URL Defense links (v1, v2, v3) locally, with no API call and no quota.
    /// One line per URL, in order. A URL that is not rewritten prints unchanged; a malformed one
    /// is reported on stderr and the exit code is 1.
    ///
    /// What a decoded link says is printed as text, one line per URL: control characters (line
    /// breaks, ESC, NUL, U+007F-U+009F), the line and paragraph separators U+2028/U+2029 and the
    /// bidirectional formatting characters (U+061C, U+200E, U+200F, U+202A-U+202E,
    /// U+2066-U+2069) are percent-encoded, byte by byte of their UTF-8, as a browser sends them:
    /// a line break prints as %0A, ESC as %1B, NUL as %00. Other characters, and a % already in
    /// the link, print as they are.
    DecodeUrl {
        /// The links to decode; without any, one per line from standard input, where a line that
        /// is not UTF-8 or is longer than 64 KiB is named by number on stderr and skipped (the
        /// others are decoded; the exit code is 1).
        urls: Vec<String>,
    },
    /// Look up a threat summary, a campaign or forensics with a tenant's credentials and print
    /// the API's JSON, for SOAR scripts and analysts (no SIEM quota is used).
    Lookup {
        #[arg(long, short)]
        config: PathBuf,
        /// The tenant whose base URL and credentials are used.
        #[arg(long)]
        tenant: String,
        /// What to look up.
        what: LookupKind,
        /// A threat id (`threatID` in events); for `campaign`, a campaign id; for `forensics`,
        /// either (a campaign id is a UUID).
        id: String,
    },
}

/// Runs the command line; returns the process exit code.
pub async fn main(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Run { config, shard } => run(&config, shard).await,
        Command::Check {
            config,
            connect,
            shard,
        } => ops::check(&config, connect, shard).await,
        Command::Rewind {
            config,
            tenant,
            to,
            sink,
            no_dedupe,
        } => ops::rewind(&config, &tenant, &to, sink.as_deref(), no_dedupe).await,
        Command::Recover {
            config,
            sink,
            start_at,
        } => recover::recover(&config, &sink, start_at.as_deref()).await,
        Command::Status { config, json } => ops::status(&config, json).await,
        Command::Simulate {
            listen,
            config,
            tenants,
            events_per_hour,
            seed,
        } => demo::simulate(listen, config, tenants, events_per_hour, seed).await,
        Command::Demo {
            dir,
            tenants,
            events_per_hour,
            hours,
            follow,
        } => demo::demo(&dir, tenants, events_per_hour, hours, follow).await,
        Command::Bench(args) => bench::run(args).await,
        Command::DecodeUrl { urls } => analyst::decode_url(urls),
        Command::Lookup {
            config,
            tenant,
            what,
            id,
        } => analyst::lookup(&config, &tenant, what, &id).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tapfwd: {e:#}");
            if e.chain().any(|c| c.is::<crate::app::Refused>()) {
                EXIT_REFUSED
            } else {
                1
            }
        }
    }
}

/// The exit code of a refusal that a restart cannot cure ([`crate::app::Refused`]: a state store
/// that is damaged, or not the one the sinks were fed from). `EX_CONFIG` of sysexits.h; the
/// systemd unit names it in `RestartPreventExitStatus=`, so that it is not restarted in a loop.
pub const EXIT_REFUSED: i32 = 78;

/// Loads the config at `path`; the error names the file and, below it, the bad key.
fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("invalid config {}:\n{e}", path.display()))
}

/// Cancelled on SIGTERM or SIGINT.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
        }
        t.cancel();
    });
    token
}

/// What the daemon may take past `poll.shutdown_grace` to stop (the final flush, closing sinks)
/// before it is ended anyway.
pub const FORCED_EXIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The daemon's stop signal: cancelled on SIGTERM or SIGINT, as noticed by a thread of its own
/// rather than by the async runtime, whose workers a stuck library call may hold (sled's flush
/// after a disk error). Once the token is cancelled, for any reason, the process ends within
/// `grace` plus [`FORCED_EXIT_MARGIN`] whatever a thread is doing: exit code 1 if it had to be
/// forced. That is safe because every position moves in a store transaction after its sink has
/// the events (invariant 1), and what is cut short is fetched again and recognised (invariant 2).
fn bounded_shutdown(grace: std::time::Duration) -> anyhow::Result<CancellationToken> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let token = CancellationToken::new();
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .context("listening for SIGTERM and SIGINT")?;
    let t = token.clone();
    std::thread::Builder::new()
        .name("tapfwd-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let name = if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                };
                if t.is_cancelled() {
                    tracing::info!(signal = name, "already stopping");
                } else {
                    tracing::info!(signal = name, "stopping");
                    t.cancel();
                }
            }
        })
        .context("starting the signal thread")?;
    let t = token.clone();
    std::thread::Builder::new()
        .name("tapfwd-exit-guard".into())
        .spawn(move || {
            // A runtime of its own, so that waiting for the token needs no worker of the main one.
            match tokio::runtime::Builder::new_current_thread().build() {
                Ok(rt) => rt.block_on(t.cancelled()),
                Err(_) => {
                    while !t.is_cancelled() {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
            }
            let bound = grace + FORCED_EXIT_MARGIN;
            std::thread::sleep(bound);
            tracing::error!(bound = %humantime::format_duration(bound),
                "still not stopped after poll.shutdown_grace and the margin; exiting now (what was in flight is fetched again)");
            eprintln!("tapfwd: forced exit {} after the stop signal", humantime::format_duration(bound));
            std::process::exit(1);
        })
        .context("starting the exit guard thread")?;
    Ok(token)
}

/// Raises the soft limit on open files to the hard limit and logs the limit: every tenant, sink
/// and admin connection holds a descriptor, and the usual soft default (1,024) is far below what
/// the system allows. Under systemd the unit sets `LimitNOFILE` and forbids the call
/// (`SystemCallFilter=~@resources`); a refusal is logged and the daemon goes on with the limit
/// it has.
fn raise_open_files_limit() {
    use rlimit::Resource;
    let (soft, hard) = match rlimit::getrlimit(Resource::NOFILE) {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open files limit");
            return;
        }
    };
    if soft >= hard {
        tracing::info!(soft, hard, "open files limit");
        return;
    }
    match rlimit::setrlimit(Resource::NOFILE, hard, hard) {
        Ok(()) => tracing::info!(soft = hard, hard, was = soft, "open files limit raised"),
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "open files limit: cannot raise the soft limit")
        }
    }
}

/// How long after `poll.store_failure_exit` [`store_failure_exit`] ends the process, when the
/// daemon's own stop (which begins at `store_failure_exit`) has not ended it by then.
pub const STORE_FAILURE_EXIT_MARGIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Ends the process with exit code 1 once the state store has failed for `limit`
/// (`poll.store_failure_exit`) plus [`STORE_FAILURE_EXIT_MARGIN`], from a thread of its own that
/// needs neither the async runtime nor the store: it reads the store's health ([`HealthWatch`]:
/// atomics) five times a second. `App::run` stops the daemon at `limit` itself when its runtime
/// answers; with the disk kept full, sled calls blocked the runtime's workers and that stop never
/// came (measured: no exit for 100 s). Exiting is safe for the reason a forced stop is (see
/// [`bounded_shutdown`]), and the service manager's restart reopens the store.
///
/// [`HealthWatch`]: crate::store::HealthWatch
fn store_failure_exit(
    store: &crate::store::Store,
    limit: std::time::Duration,
) -> anyhow::Result<()> {
    let health = store.health_watch();
    let dir = store.dir().to_owned();
    std::thread::Builder::new()
        .name("tapfwd-store-exit".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_millis(200));
            let h = health.health();
            let failing_for = h.failing_for_seconds.filter(|_| !h.healthy).unwrap_or(0);
            if failing_for as u64 >= (limit + STORE_FAILURE_EXIT_MARGIN).as_secs() {
                let why = format!(
                    "the state store in {} has failed for {failing_for} s (poll.store_failure_exit = {}): {}; exiting so \
                     that the service manager restarts the daemon, which reopens the store and goes on from its last \
                     committed positions (free space on that disk if it is full)",
                    dir.display(),
                    humantime::format_duration(limit),
                    h.last_error.unwrap_or_default()
                );
                tracing::error!("{why}");
                eprintln!("tapfwd: {why}");
                std::process::exit(1);
            }
        })
        .context("starting the store failure exit thread")?;
    Ok(())
}

async fn run(path: &Path, shard: Option<Shard>) -> anyhow::Result<()> {
    let mut config = load(path)?;
    crate::logging::init(config.log.format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    raise_open_files_limit();
    if shard.is_some() {
        config.shard = shard;
    }
    // Installed before the daemon reports ready, so an early SIGHUP reloads instead of killing.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    if let Some(s) = config.shard {
        let all = config.tenants.len();
        let mine = config.tenants.keys().filter(|id| s.owns(id)).count();
        tracing::info!(shard = %s, tenants = mine, of = all, "polling one shard of the tenants");
    }
    let grace = config.poll.shutdown_grace;
    let failure_exit = config.poll.store_failure_exit;
    let app = App::build(config, Clock::System).await?;
    store_failure_exit(&app.store(), failure_exit)?;
    let reloader = app.reloader();
    let path = path.to_owned();
    let reloads = tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
            // The outcome is logged and counted by the reloader; a rejected config changes nothing.
            let _ = reloader.reload_file(&path, shard).await;
        }
    });
    let result = app.run(bounded_shutdown(grace)?).await;
    reloads.abort();
    result
}
