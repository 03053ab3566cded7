//! The offline operations of the command line, on the config and the state store the daemon
//! uses: `check` (validate a config; `--connect` tries each tenant's credentials with one request,
//! which counts against its quota), `status` (per-tenant checkpoints, lag, last error and budget,
//! read from the store, or from the admin endpoint while the running daemon holds the store) and
//! `rewind` (move a tenant's checkpoints back; the daemon must be stopped). A rewind only ever
//! moves a checkpoint back, floored to the minute and an hour inside the API's 7-day horizon
//! (invariant 3), and unless `--no-dedupe` it keeps the dedupe keys, so events already delivered
//! are not delivered twice (invariant 2).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};

use super::load;
use crate::api::siem::TapClient;
use crate::api::window::{self, Window};
use crate::clock;
use crate::config::Config;
use crate::shard::Shard;
use crate::status::TenantStatus;
use crate::store::Store;

pub(super) async fn check(path: &Path, connect: bool, shard: Option<Shard>) -> anyhow::Result<()> {
    let config = load(path)?;
    for warning in &config.warnings {
        eprintln!("tapfwd: warning: {warning}");
    }
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
    // Every secret `run` reads, so that a config `check` accepts is one `run` starts with: the
    // tenants' and the admin endpoint's token (`admin_token_env`).
    let env = &crate::secret::process_env;
    let secrets = match (config.resolve_secrets(env), config.admin_token(env)) {
        (Ok(secrets), Ok(_)) => secrets,
        (tenants, admin) => {
            let problems: Vec<String> = tenants
                .err()
                .map(|e| e.to_string())
                .into_iter()
                .chain(admin.err().map(|e| e.to_string()))
                .collect();
            bail!(
                "invalid config {}:\n{}",
                path.display(),
                problems.join("\n")
            );
        }
    };
    println!(
        "config ok: {} tenant(s), {} sink(s)",
        config.tenants.len(),
        config.sinks.len()
    );
    // Whether `run` would take the state store: damaged or lost, it refuses, naming the way out.
    println!("{}", crate::app::inspect_state(&config)?);
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
        let probed =
            crate::sources::plan::probe(tenant, &secrets[id], now, config.poll.read_timeout).await;
        if let Some(result) = probed {
            match result {
                Ok(()) => println!("tenant {id}: credentials accepted"),
                Err(e) => {
                    failed += 1;
                    println!("tenant {id}: {e}");
                }
            }
            continue;
        }
        if tenant.settings().siem_account().is_none() {
            // A PoD token allows one session at a time: a probe would take it from a running
            // daemon (or be refused by it), so the stream's own status says whether it connects.
            println!(
                "tenant {id}: no connection check for product {} (see `tapfwd status`)",
                tenant.product().as_str()
            );
            continue;
        }
        let creds = tenant.credentials(&secrets[id]);
        match client.probe(tenant.base_url(), &creds, probe).await {
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

/// Whether `e` says the running daemon holds the state store.
pub(super) fn is_locked(e: &anyhow::Error) -> bool {
    matches!(
        e.downcast_ref::<crate::store::StoreError>(),
        Some(crate::store::StoreError::Locked { .. })
    )
}

/// Builds per-tenant status from the store (when the daemon is not running).
fn status_from_store(config: &Config, store: &Store) -> anyhow::Result<Vec<TenantStatus>> {
    let now = chrono::Utc::now().timestamp();
    let lag = config.poll.lag.as_secs() as i64;
    let streams = store.streams()?;
    let mut out = Vec::new();
    for (id, tenant) in &config.tenants {
        let record = store.tenant_record(id)?.unwrap_or_default();
        // One row per source of the tenant's plan, under the id the running daemon shows.
        for source in crate::sources::plan(id, tenant) {
            out.push(source.offline_status(tenant, &record, store, &streams, now, lag)?);
        }
    }
    Ok(out)
}

pub(super) async fn status(path: &Path, json: bool) -> anyhow::Result<()> {
    let config = load(path)?;
    let (tenants, store) = match crate::app::open_store(&config) {
        Ok(store) => {
            // A store `run` refuses has nothing to show: say why, and the way out.
            crate::app::refuse_lost_store(&config, &store)?;
            (status_from_store(&config, &store)?, None)
        }
        Err(e) if is_locked(&e) => {
            let Some(addr) = config.admin_listen else {
                bail!("the state store is locked by the running daemon and admin_listen is not configured, so its status cannot be read");
            };
            let body =
                fetch_live_status(addr, config.admin_token(&crate::secret::process_env)?).await?;
            (body.tenants, Some(body.store))
        }
        Err(e) => return Err(e),
    };
    // The running daemon's store failing: said first (on stderr with --json, whose shape stays
    // the list of tenants).
    if let Some(h) = store.filter(|h| !h.healthy) {
        let line = format!(
            "STATE STORE FAILING for {} s ({} errors): {}",
            h.failing_for_seconds.unwrap_or(0),
            h.errors_total,
            h.last_error.unwrap_or_default()
        );
        if json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&tenants)?);
        return Ok(());
    }
    print!("{}", render_status_table(&tenants));
    Ok(())
}

async fn fetch_live_status(
    addr: SocketAddr,
    token: Option<secrecy::SecretString>,
) -> anyhow::Result<crate::admin::StatusBody> {
    use secrecy::ExposeSecret;
    let url = format!("http://{addr}/status");
    let mut request = reqwest::Client::new().get(&url);
    if let Some(token) = &token {
        request = request.bearer_auth(token.expose_secret());
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("asking the running daemon at {url}"))?;
    if !response.status().is_success() {
        bail!("the running daemon at {url} answered {}", response.status());
    }
    let body: crate::admin::StatusBody = serde_json::from_slice(&response.bytes().await?)
        .with_context(|| format!("reading the answer of {url}"))?;
    Ok(body)
}

/// A human-readable table of tenants and their sinks.
pub fn render_status_table(tenants: &[TenantStatus]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    // Wide enough for the longest name (People sources are `tenant:people.top_clickers`).
    let w = tenants
        .iter()
        .map(|t| t.tenant.len())
        .max()
        .unwrap_or(0)
        .max(20);
    let sw = tenants
        .iter()
        .flat_map(|t| t.sinks.iter().map(|s| s.sink.len()))
        .max()
        .unwrap_or(0)
        .max(16);
    let _ = writeln!(
        out,
        "{:<w$} {:<12} {:<sw$} {:<21} {:>10} {:>9}  LAST ERROR",
        "TENANT", "STATE", "SINK", "CHECKPOINT", "BEHIND", "REQ/24H"
    );
    for t in tenants {
        let err = t.last_error.clone().unwrap_or_default();
        if t.sinks.is_empty() {
            let _ = writeln!(
                out,
                "{:<w$} {:<12} {:<sw$} {:<21} {:>10} {:>4}/{:<4}  {}",
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
                "{:<w$} {:<12} {:<sw$} {:<21} {:>10} {:>4}/{:<4}  {}",
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
        if let Some(st) = &t.stream {
            // A PoD stream: its connection.
            let _ = writeln!(
                out,
                "{:<w$} {}, last frame {} (at {}), {} reconnects, {} archive catch-ups, {:.1} events/s, {} sessions refused (409){}",
                "",
                if st.connected { "connected" } else { "not connected" },
                st.last_frame_ts.as_deref().unwrap_or("-"),
                st.last_frame_at.as_deref().unwrap_or("-"),
                st.reconnects,
                st.archive_catchups,
                st.events_per_second,
                st.sessions_refused,
                t.next_poll_at
                    .as_deref()
                    .map(|r| format!(", next attempt {r}"))
                    .unwrap_or_default(),
            );
        }
        if let Some(ls) = &t.late_sweep {
            // TAP and Essentials: what the late sweep costs and finds.
            let age = humantime::format_duration(Duration::from_secs(ls.age_seconds.max(0) as u64));
            let _ = writeln!(
                out,
                "{:<w$} late sweep ({age} after): swept to {}, {} requests in 24 h, {} events found late since start{}",
                "",
                ls.swept_to.as_deref().unwrap_or("-"),
                ls.requests_24h,
                ls.events_found_late,
                ls.last_error
                    .as_deref()
                    .map(|e| format!(", last window failed: {e}"))
                    .unwrap_or_default(),
            );
        }
        if !t.customers.is_empty() {
            // An Essentials partner: the client organisations seen, with their event counts.
            let list: Vec<String> = t
                .customers
                .iter()
                .map(|(c, n)| format!("{c} ({n})"))
                .collect();
            let _ = writeln!(
                out,
                "{:<w$} customers seen since start (events): {}",
                "",
                list.join(", ")
            );
        }
    }
    out
}

/// Where `tapfwd rewind` puts a checkpoint asked to go back to `target` at `now`: floored to the
/// minute, and no older than the API horizon with an hour to spare (the daemon starts after the
/// rewind, and a start older than the horizon would be clamped again and reported as a gap).
/// `Err` for an instant in the future. The `bool` says whether the horizon moved it.
pub fn rewind_target(target: i64, now: i64, horizon: i64) -> Result<(i64, bool), String> {
    if target > now {
        return Err(format!("{} is in the future", clock::rfc3339(target)));
    }
    let earliest = window::earliest_within(horizon, now, 3600);
    let floored = clock::floor_minute(target);
    if floored < earliest {
        Ok((earliest, true))
    } else {
        Ok((floored, false))
    }
}

/// An RFC 3339 instant, or a duration before `now` (`90m`, `6h`, `2d`).
pub(super) fn parse_instant(text: &str, now: i64) -> anyhow::Result<i64> {
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

pub(super) async fn rewind(
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
    let all = t.all_sinks();
    let sinks: Vec<String> = match sink {
        Some(s) if all.iter().any(|x| x == s) => vec![s.to_string()],
        Some(s) => bail!(
            "tenant `{tenant}` does not send to sink `{s}` (its sinks: {})",
            all.join(", ")
        ),
        None => all,
    };
    let now = chrono::Utc::now().timestamp();
    let asked = parse_instant(to, now)?;
    let (checkpoint, clamped) = rewind_target(asked, now, t.product().horizon_secs())
        .map_err(|e| anyhow::anyhow!("--to: {e}"))?;
    if clamped {
        println!(
            "{} is past the API's {}-hour horizon; rewinding to {} instead",
            clock::rfc3339(asked),
            t.product().horizon_secs() / 3600,
            clock::rfc3339(checkpoint)
        );
    }
    let store = match crate::app::open_store(&config) {
        Ok(store) => store,
        Err(e) if is_locked(&e) => bail!(
            "the daemon is running (it holds the state store {}): stop it first (systemctl stop tapfwd), rewind, then start it again",
            config.state_dir.join("tapfwd.sled").display()
        ),
        Err(e) => return Err(e),
    };
    for scope in crate::sources::plan::rewind_scopes(tenant, t) {
        rewind_scope(&store, &scope, &sinks, checkpoint, no_dedupe)?;
    }
    store.flush().await?;
    Ok(())
}

/// Moves the streams of `sinks` kept under `scope` (a tenant, or one of its sources) back to
/// `checkpoint`.
fn rewind_scope(
    store: &crate::store::Store,
    tenant: &str,
    sinks: &[String],
    checkpoint: i64,
    no_dedupe: bool,
) -> anyhow::Result<()> {
    for s in sinks {
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
        // The late sweep goes back too: windows fetched again while young are swept again.
        state.swept = state.swept.map(|swept| swept.min(checkpoint));
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
    Ok(())
}

#[cfg(test)]
mod rewind_tests {
    use super::*;

    #[test]
    fn rewind_target_floors_to_minute_and_stays_inside_horizon() {
        let now = 1_800_000_000;
        assert_eq!(
            rewind_target(now - 3601, now, window::HORIZON_SECS),
            Ok((clock::floor_minute(now - 3601), false))
        );
        let (t, clamped) = rewind_target(now - 8 * 86_400, now, window::HORIZON_SECS).unwrap();
        assert!(clamped);
        assert_eq!(t, window::earliest_start(now, 3600));
        assert!(t >= now - 7 * 86_400 + 3600);
        assert!(rewind_target(now + 60, now, window::HORIZON_SECS)
            .unwrap_err()
            .contains("future"));
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
