//! The command line: `run`, `check`, `status`, `rewind`, `simulate`, `demo`, `bench`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Clock};
use crate::config::{Config, LogFormat};
use crate::shard::Shard;
use crate::simulate::{SimConfig, Simulator};
use crate::status::{SinkStatus, TenantState, TenantStatus};
use crate::store::Store;
use crate::tap::client::{Credentials, TapClient};
use crate::tap::window::{self, Window};
use crate::App;

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
    /// Run the daemon against the built-in simulator, no Proofpoint account needed: events land
    /// in DIR/events.ndjson.
    Demo {
        #[arg(long, default_value = "var/demo")]
        dir: PathBuf,
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
    /// simulator on 127.0.0.1 (README, "Performance"). Build with `--release`.
    Bench(crate::bench::BenchArgs),
}

/// Runs the command line; returns the process exit code.
pub async fn main(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Run { config, shard } => run(&config, shard).await,
        Command::Check {
            config,
            connect,
            shard,
        } => check(&config, connect, shard).await,
        Command::Rewind {
            config,
            tenant,
            to,
            sink,
            no_dedupe,
        } => rewind(&config, &tenant, &to, sink.as_deref(), no_dedupe).await,
        Command::Status { config, json } => status(&config, json).await,
        Command::Simulate {
            listen,
            config,
            tenants,
            events_per_hour,
            seed,
        } => simulate(listen, config, tenants, events_per_hour, seed).await,
        Command::Demo {
            dir,
            tenants,
            events_per_hour,
            hours,
            follow,
        } => demo(&dir, tenants, events_per_hour, hours, follow).await,
        Command::Bench(args) => crate::bench::run(args).await,
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("tapfwd: {e:#}");
            1
        }
    }
}

/// Sets up logging on stderr: human-readable text (coloured only on a terminal, so journald
/// and files get plain lines), or one JSON object per line when `[log] format = "json"`.
/// `RUST_LOG` filters (default `info`).
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

async fn run(path: &Path, shard: Option<Shard>) -> anyhow::Result<()> {
    let mut config = load(path)?;
    crate::logging::init(config.log.format);
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
    let app = App::build(config, Clock::System).await?;
    let reloader = app.reloader();
    let path = path.to_owned();
    let reloads = tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!(config = %path.display(), "SIGHUP: reloading the config");
            // The outcome is logged and counted by the reloader; a rejected config changes nothing.
            let _ = reloader.reload_file(&path, shard).await;
        }
    });
    let result = app.run(shutdown_on_signals()).await;
    reloads.abort();
    result
}

async fn check(path: &Path, connect: bool, shard: Option<Shard>) -> anyhow::Result<()> {
    let config = load(path)?;
    if let Some(s) = shard {
        let mine: Vec<&str> = config
            .tenants
            .keys()
            .filter(|id| s.owns(id))
            .map(String::as_str)
            .collect();
        println!(
            "shard {s} polls {} of {} tenant(s): {}",
            mine.len(),
            config.tenants.len(),
            mine.join(" ")
        );
    }
    let secrets = config
        .resolve_secrets(&crate::secret::process_env)
        .map_err(|e| anyhow::anyhow!("invalid config {}:\n{e}", path.display()))?;
    println!(
        "config ok: {} tenant(s), {} sink(s)",
        config.tenants.len(),
        config.sinks.len()
    );
    if !connect {
        return Ok(());
    }
    let client = TapClient::new(config.poll.read_timeout)?;
    let now = chrono::Utc::now().timestamp();
    let end = clock::floor_minute(now - config.poll.lag.as_secs() as i64);
    let probe = Window {
        start: end - 60,
        end,
    };
    let mut failed = 0;
    for (id, tenant) in &config.tenants {
        let creds = Credentials {
            principal: &tenant.principal,
            secret: &secrets[id],
            threat_status: &tenant.threat_status,
        };
        match client.probe(&tenant.base_url, &creds, probe).await {
            Ok(()) => println!("tenant {id}: credentials accepted"),
            Err(e) => {
                failed += 1;
                println!("tenant {id}: {e}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} tenant(s) failed the connection check");
    }
    Ok(())
}

/// Builds per-tenant status from the store (when the daemon is not running).
fn status_from_store(config: &Config, store: &Store) -> anyhow::Result<Vec<TenantStatus>> {
    let now = chrono::Utc::now().timestamp();
    let lag = config.poll.lag.as_secs() as i64;
    let streams = store.streams()?;
    let mut out = Vec::new();
    for (id, tenant) in &config.tenants {
        let record = store.tenant_record(id)?.unwrap_or_default();
        let used = store
            .budget(id)?
            .map(|mut b| b.used(now))
            .unwrap_or_default();
        let sinks: Vec<SinkStatus> = streams
            .iter()
            .filter(|(t, s, _)| t == id && tenant.sinks.contains(s))
            .map(|(_, s, st)| SinkStatus::from_stream(s, st, now, lag))
            .collect();
        out.push(TenantStatus {
            tenant: id.clone(),
            state: if record.failed {
                TenantState::Failed
            } else if sinks.is_empty() {
                TenantState::NotStarted
            } else {
                TenantState::Stopped
            },
            last_error: record.last_error.clone(),
            last_error_at: record.last_error_at.map(clock::rfc3339),
            requests_24h: used,
            requests_limit: tenant.requests_per_day,
            sinks,
            ..Default::default()
        });
    }
    Ok(out)
}

async fn status(path: &Path, json: bool) -> anyhow::Result<()> {
    let config = load(path)?;
    let tenants = match Store::open(&config.state_dir) {
        Ok(store) => status_from_store(&config, &store)?,
        Err(crate::store::StoreError::Locked { .. }) => {
            let Some(addr) = config.admin_listen else {
                bail!("the state store is locked by the running daemon and admin_listen is not configured, so its status cannot be read");
            };
            fetch_live_status(addr).await?
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&tenants)?);
        return Ok(());
    }
    print!("{}", render_status_table(&tenants));
    Ok(())
}

async fn fetch_live_status(addr: SocketAddr) -> anyhow::Result<Vec<TenantStatus>> {
    let url = format!("http://{addr}/status");
    let response = reqwest::get(&url)
        .await
        .with_context(|| format!("asking the running daemon at {url}"))?;
    if !response.status().is_success() {
        bail!("the running daemon at {url} answered {}", response.status());
    }
    let body: crate::admin::StatusBody = serde_json::from_slice(&response.bytes().await?)
        .with_context(|| format!("reading the answer of {url}"))?;
    Ok(body.tenants)
}

/// Where `tapfwd rewind` puts a checkpoint asked to go back to `target` at `now`: floored to the
/// minute, and no older than the API horizon with an hour to spare (the daemon starts after the
/// rewind, and a start older than the horizon would be clamped again and reported as a gap).
/// `Err` for an instant in the future. The `bool` says whether the horizon moved it.
pub fn rewind_target(target: i64, now: i64) -> Result<(i64, bool), String> {
    if target > now {
        return Err(format!("{} is in the future", clock::rfc3339(target)));
    }
    let earliest = window::earliest_start(now, 3600);
    let floored = clock::floor_minute(target);
    if floored < earliest {
        Ok((earliest, true))
    } else {
        Ok((floored, false))
    }
}

/// An RFC 3339 instant, or a duration before `now` (`90m`, `6h`, `2d`).
fn parse_instant(text: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    match humantime::parse_duration(text) {
        Ok(d) => Ok(now - d.as_secs() as i64),
        Err(_) => bail!(
            "--to `{text}` is neither an RFC 3339 instant (2026-11-23T08:00:00Z) nor a duration ago (6h)"
        ),
    }
}

async fn rewind(
    path: &Path,
    tenant: &str,
    to: &str,
    sink: Option<&str>,
    no_dedupe: bool,
) -> anyhow::Result<()> {
    let config = load(path)?;
    let Some(t) = config.tenants.get(tenant) else {
        bail!("tenant `{tenant}` is not configured in {}", path.display());
    };
    let sinks: Vec<String> = match sink {
        Some(s) if t.sinks.iter().any(|x| x == s) => vec![s.to_string()],
        Some(s) => bail!(
            "tenant `{tenant}` does not send to sink `{s}` (its sinks: {})",
            t.sinks.join(", ")
        ),
        None => t.sinks.clone(),
    };
    let now = chrono::Utc::now().timestamp();
    let asked = parse_instant(to, now)?;
    let (checkpoint, clamped) =
        rewind_target(asked, now).map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    if clamped {
        println!(
            "{} is past the API's 7-day horizon; rewinding to {} instead",
            clock::rfc3339(asked),
            clock::rfc3339(checkpoint)
        );
    }
    let store = match Store::open(&config.state_dir) {
        Ok(store) => store,
        Err(crate::store::StoreError::Locked { path }) => bail!(
            "the daemon is running (it holds the state store {}): stop it first (systemctl stop tapfwd), rewind, then start it again",
            path.display()
        ),
        Err(e) => return Err(e.into()),
    };
    for s in &sinks {
        let mut state = store.stream(tenant, s)?.unwrap_or_default();
        let before = state.checkpoint;
        if before != 0 && before <= checkpoint {
            println!(
                "{tenant} -> {s}: checkpoint {} is already at or before {}; unchanged",
                clock::rfc3339(before),
                clock::rfc3339(checkpoint)
            );
            continue;
        }
        state.checkpoint = checkpoint;
        store.put_stream(tenant, s, &state)?;
        if no_dedupe {
            store.forget_keys(tenant, s)?;
        }
        println!(
            "{tenant} -> {s}: checkpoint moved from {} to {}{}",
            if before == 0 {
                "(none)".to_string()
            } else {
                clock::rfc3339(before)
            },
            clock::rfc3339(checkpoint),
            if no_dedupe {
                "; dedupe keys forgotten, events will be delivered again"
            } else {
                ""
            }
        );
    }
    store.flush().await?;
    Ok(())
}

/// A human-readable table of tenants and their sinks.
pub fn render_status_table(tenants: &[TenantStatus]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<12} {:<16} {:<21} {:>10} {:>9}  LAST ERROR",
        "TENANT", "STATE", "SINK", "CHECKPOINT", "BEHIND", "REQ/24H"
    );
    for t in tenants {
        let err = t.last_error.clone().unwrap_or_default();
        if t.sinks.is_empty() {
            let _ = writeln!(
                out,
                "{:<20} {:<12} {:<16} {:<21} {:>10} {:>4}/{:<4}  {}",
                t.tenant, t.state, "-", "-", "-", t.requests_24h, t.requests_limit, err
            );
        }
        for s in &t.sinks {
            let behind = humantime::format_duration(Duration::from_secs(
                (s.behind_seconds.max(0) as u64 / 60) * 60,
            ))
            .to_string();
            let sink_err = s.last_error.clone().unwrap_or_else(|| err.clone());
            let _ = writeln!(
                out,
                "{:<20} {:<12} {:<16} {:<21} {:>10} {:>4}/{:<4}  {}",
                t.tenant,
                t.state,
                s.sink,
                s.checkpoint,
                behind,
                t.requests_24h,
                t.requests_limit,
                sink_err
            );
        }
    }
    out
}

async fn simulate(
    listen: SocketAddr,
    config: Option<PathBuf>,
    tenants: usize,
    events_per_hour: u32,
    seed: u64,
) -> anyhow::Result<()> {
    crate::logging::init(LogFormat::Text);
    let cfg = match config {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml_sim_config(&text)
                .with_context(|| format!("simulator config {}", path.display()))?
        }
        None => SimConfig::generated(tenants, events_per_hour, seed),
    };
    let n = cfg.tenants.len();
    let sim = Simulator::new(cfg, Clock::System);
    let server = sim
        .bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!(
        "TAP simulator listening on http://{} with {n} tenant(s)",
        server.addr
    );
    shutdown_on_signals().cancelled().await;
    Ok(())
}

fn toml_sim_config(text: &str) -> anyhow::Result<SimConfig> {
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()?;
    serde_path_to_error::deserialize(built)
        .map_err(|e| anyhow::anyhow!("key `{}`: {}", e.path(), e.inner()))
}

async fn demo(
    dir: &Path,
    tenants: usize,
    events_per_hour: u32,
    hours: u64,
    follow: bool,
) -> anyhow::Result<()> {
    crate::logging::init(LogFormat::Text);
    let sim_config = SimConfig::generated(tenants, events_per_hour, 7);
    let sim = Simulator::new(sim_config.clone(), Clock::System);
    let server = sim.bind("127.0.0.1:0".parse()?).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let events = dir.join("events.ndjson");
    let mut text = format!(
        "state_dir = {state:?}\n\n[poll]\ninterval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"{hours}h\"\n\n[sinks.archive]\ntype = \"file\"\npath = {events:?}\n",
        state = dir.join("state").display().to_string(),
        events = events.display().to_string(),
    );
    for t in &sim_config.tenants {
        text.push_str(&format!(
            "\n[tenants.{p}]\nbase_url = \"http://{addr}\"\nprincipal = \"{p}\"\nsecret = \"{s}\"\nsinks = [\"archive\"]\n",
            p = t.principal,
            s = t.secret,
            addr = server.addr
        ));
    }
    let config = Config::from_toml_with_env(&text, std::iter::empty())
        .map_err(|e| anyhow::anyhow!("demo config: {e}"))?;
    std::fs::write(dir.join("demo.toml"), &text)?;
    let app = App::build(config, Clock::System).await?;
    let board = app.status();
    let shutdown = shutdown_on_signals();
    println!(
        "demo: simulator on http://{}, {} tenant(s); events go to {}",
        server.addr,
        sim_config.tenants.len(),
        events.display()
    );
    if !follow {
        let stop = shutdown.clone();
        let n = sim_config.tenants.len();
        tokio::spawn(async move {
            board
                .wait_until(|snap| snap.len() == n && snap.iter().all(|t| t.state == "ok"))
                .await;
            stop.cancel();
        });
    }
    app.run(shutdown).await?;
    let lines = std::fs::read_to_string(&events)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    println!(
        "demo: {} holds {lines} events; look with: head -n 3 {}",
        events.display(),
        events.display()
    );
    // The simulator serves until `server` goes out of scope here.
    let _ = server.addr;
    Ok(())
}

#[cfg(test)]
mod rewind_tests {
    use super::*;

    #[test]
    fn rewind_target_floors_to_minute_and_stays_inside_horizon() {
        let now = 1_800_000_000;
        assert_eq!(
            rewind_target(now - 3601, now),
            Ok((clock::floor_minute(now - 3601), false))
        );
        let (t, clamped) = rewind_target(now - 8 * 86_400, now).unwrap();
        assert!(clamped);
        assert_eq!(t, window::earliest_start(now, 3600));
        assert!(t >= now - 7 * 86_400 + 3600);
        assert!(rewind_target(now + 60, now).unwrap_err().contains("future"));
    }

    #[test]
    fn instants_parse_as_rfc3339_or_duration_ago() {
        let now = 1_800_000_000;
        assert_eq!(parse_instant("6h", now).unwrap(), now - 6 * 3600);
        assert_eq!(
            parse_instant("2027-01-15T08:00:00Z", now).unwrap(),
            chrono::DateTime::parse_from_rfc3339("2027-01-15T08:00:00Z")
                .unwrap()
                .timestamp()
        );
        let e = parse_instant("yesterday", now).unwrap_err().to_string();
        assert!(e.contains("RFC 3339"), "{e}");
    }
}
