//! The application: builds the store, sinks and sources from a [`Config`], runs them until told
//! to stop, and applies new configs while it runs ([`Reloader`]). Used by `tapfwd run`,
//! `tapfwd demo`, the black-box tests and the benchmarks alike.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::api::siem::TapClient;
use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::notify;
use crate::scheduler::{Command, Scheduler};
use crate::secret;
use crate::shard::Shard;
use crate::sinks::{self, Sink};
use crate::sources::{self, Context};
use crate::status::StatusBoard;
use crate::store::Store;

mod state;
pub use state::{inspect_state, lost_store_refusal, open_store, refuse_lost_store, Refused};

/// A built daemon, ready to run.
pub struct App {
    ctx: Context,
    scheduler: Scheduler,
    commands: mpsc::Receiver<Command>,
    commands_tx: mpsc::Sender<Command>,
    /// The sinks as built; a reload changes the [`Reloader`]'s set, not this one.
    sinks: BTreeMap<String, Arc<dyn Sink>>,
    reloader: Reloader,
    /// The admin endpoint's socket, bound at build so its address is known before `run`, and
    /// the bearer token it requires (`admin_token_env`).
    admin: Option<(tokio::net::TcpListener, Option<SecretString>)>,
    /// Set by `run` once every tenant is scheduled; `/readyz` reads it.
    ready: Arc<AtomicBool>,
}

impl App {
    /// Opens the state store, starts the sinks and loads every tenant of the config's shard.
    /// Secrets are read from the process environment, files and systemd credentials as the
    /// config says.
    pub async fn build(mut config: Config, clock: Clock) -> anyhow::Result<App> {
        config.retain_shard(config.shard);
        let secrets = config
            .resolve_secrets(&secret::process_env)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        App::build_sharded(config, secrets, clock).await
    }

    /// As [`App::build`], with the secrets already resolved.
    pub async fn build_with_secrets(
        mut config: Config,
        secrets: BTreeMap<String, SecretString>,
        clock: Clock,
    ) -> anyhow::Result<App> {
        config.retain_shard(config.shard);
        App::build_sharded(config, secrets, clock).await
    }

    /// Builds from a config already cut to its shard.
    async fn build_sharded(
        config: Config,
        secrets: BTreeMap<String, SecretString>,
        clock: Clock,
    ) -> anyhow::Result<App> {
        let store = open_store(&config)?;
        refuse_lost_store(&config, &store)?;
        let client =
            TapClient::new(config.poll.read_timeout)?.with_buffer_budget(config.poll.buffer_bytes);
        let metrics = Arc::new(Metrics::default());
        let enricher = crate::enrich::Enricher::new(
            config.enrichment.clone(),
            metrics.clone(),
            clock.clone(),
        )?;
        let ctx = Context {
            store: store.clone(),
            client,
            clock,
            poll: Arc::new(config.poll.clone()),
            status: Arc::new(StatusBoard::default()),
            metrics,
            shutdown: CancellationToken::new(),
            enricher,
            intel: crate::api::intel::IntelClient::new(config.poll.read_timeout)?,
            streams: tokio_util::task::TaskTracker::new(),
        };
        let mut sinks = BTreeMap::new();
        for (name, sink_config) in &config.sinks {
            let sink = sinks::build(name, sink_config, &secret::process_env)
                .with_context(|| format!("sink `{name}`"))?;
            sink.start(&store)
                .await
                .with_context(|| format!("starting sink `{name}`"))?;
            sinks.insert(name.clone(), sink);
        }
        // Every sink accepted this store: from now on it is the one they are fed from.
        store.stamp().await?;
        let mut pollers = Vec::with_capacity(config.tenants.len());
        for (id, tenant) in &config.tenants {
            if tenant.cleartext_http() {
                tracing::warn!(tenant = %id, base_url = %tenant.base_url(), "allow_http: this tenant's credentials travel in cleartext");
            }
            let tenant_sinks = tenant
                .all_sinks()
                .iter()
                .map(|s| sinks[s].clone())
                .collect();
            let secret = secrets
                .get(id)
                .cloned()
                .with_context(|| format!("tenants.{id}: no secret"))?;
            pollers.extend(sources::for_tenant(
                id,
                Arc::new(tenant.clone()),
                secret,
                tenant_sinks,
                &ctx,
            )?);
        }
        ctx.metrics
            .set_global("tapfwd_tenants", config.tenants.len() as f64);
        ctx.metrics
            .set_global("tapfwd_config_last_reload_successful", 1.0);
        let admin_token = config.admin_token(&secret::process_env)?;
        let admin = match config.admin_listen {
            Some(addr) => {
                if !addr.ip().is_loopback() {
                    if admin_token.is_some() {
                        tracing::warn!(%addr, "admin endpoint listens beyond loopback; /status and /metrics require the bearer token");
                    } else {
                        tracing::warn!(%addr, "admin endpoint listens beyond loopback with no authentication; anyone who reaches it reads /status and /metrics (set admin_token_env, or bind to 127.0.0.1)");
                    }
                }
                let listener = admin::bind(addr)
                    .await
                    .with_context(|| format!("admin_listen: cannot listen on {addr}"))?;
                Some((listener, admin_token))
            }
            None => None,
        };
        let scheduler = Scheduler::new(ctx.clone(), pollers);
        let (commands_tx, commands) = mpsc::channel(64);
        let reloader = Reloader {
            ctx: ctx.clone(),
            commands: commands_tx.clone(),
            running: Arc::new(Mutex::new(Running {
                config,
                secrets,
                sinks: sinks.clone(),
            })),
        };
        Ok(App {
            ctx,
            scheduler,
            commands,
            commands_tx,
            sinks,
            reloader,
            admin,
            ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The status board (per-tenant state), live while the app runs.
    pub fn status(&self) -> Arc<StatusBoard> {
        self.ctx.status.clone()
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.ctx.metrics.clone()
    }

    pub fn store(&self) -> Store {
        self.ctx.store.clone()
    }

    /// The sinks by name, as built.
    pub fn sinks(&self) -> &BTreeMap<String, Arc<dyn Sink>> {
        &self.sinks
    }

    /// A handle for adding, replacing or removing tenants while running.
    pub fn commands(&self) -> mpsc::Sender<Command> {
        self.commands_tx.clone()
    }

    /// A handle that applies a new config to the running app (what SIGHUP does).
    pub fn reloader(&self) -> Reloader {
        self.reloader.clone()
    }

    /// Where the admin endpoint listens, when `admin_listen` is set (port 0 resolved).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Runs until `shutdown` is cancelled, then stops at a safe point and flushes the store.
    /// Serves the admin endpoint meanwhile and tells systemd (when it started us) that the daemon
    /// is ready, alive (watchdog) and stopping.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let inner = self.ctx.shutdown.clone();
        let stop = shutdown.clone();
        let admin = self.admin.map(|(listener, token)| {
            let state = AdminState {
                metrics: self.ctx.metrics.clone(),
                status: self.ctx.status.clone(),
                store: self.ctx.store.clone(),
                ready: self.ready.clone(),
                token: token.map(|t| blake3::hash(t.expose_secret().as_bytes())),
            };
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "admin endpoint listening");
            }
            admin::serve_apart(listener, state, inner.clone())
        });
        let admin = admin
            .transpose()
            .context("cannot serve the admin endpoint")?;
        let relay = tokio::spawn({
            let inner = inner.clone();
            async move {
                shutdown.cancelled().await;
                inner.cancel();
            }
        });
        let stopping = tokio::spawn({
            let inner = inner.clone();
            async move {
                inner.cancelled().await;
                notify::notify_or_log("STOPPING=1\nSTATUS=stopping: finishing windows in flight");
            }
        });
        // The watchdog is fed only while the scheduler loop answers a heartbeat, so a stuck
        // scheduler gets the daemon restarted (WatchdogSec= in the unit).
        let watchdog = notify::watchdog_interval().map(|every| {
            let inner = inner.clone();
            let commands = self.commands_tx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = inner.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    let (tx, rx) = oneshot::channel();
                    let alive = async {
                        commands.send(Command::Heartbeat(tx)).await.ok()?;
                        rx.await.ok()
                    };
                    match tokio::time::timeout(every, alive).await {
                        Ok(Some(())) => notify::notify_or_log("WATCHDOG=1"),
                        _ if inner.is_cancelled() => return,
                        _ => tracing::warn!(
                            "the scheduler did not answer a heartbeat; the watchdog is not fed"
                        ),
                    }
                }
            })
        });
        // The store's health: metrics, retries, and an exit when it stays broken.
        let store_failed = Arc::new(std::sync::Mutex::new(None::<String>));
        let store_watch = tokio::spawn(watch_store(
            self.ctx.store.clone(),
            self.ctx.metrics.clone(),
            self.ctx.poll.store_failure_exit,
            stop,
            store_failed.clone(),
        ));
        // The store is open and every tenant is on the scheduler's heap: ready.
        let (tenants, sources) = (self.scheduler.tenants(), self.scheduler.len());
        self.ready.store(true, Ordering::Release);
        notify::notify_or_log(&format!(
            "READY=1\nSTATUS=polling {tenants} tenant(s), {sources} source(s)"
        ));
        tracing::info!(tenants, sources, store = %self.ctx.store.path().display(), "tapfwd running");
        self.scheduler.run(self.commands).await;
        self.ready.store(false, Ordering::Release);
        relay.abort();
        stopping.abort();
        if let Some(w) = watchdog {
            w.abort();
        }
        if let Some(a) = admin {
            a.stop().await;
        }
        // Awaited, so that its handle on the store is gone when `run` returns (a test may open
        // the store again at once).
        store_watch.abort();
        let _ = store_watch.await;
        let failed = store_failed.lock().ok().and_then(|f| f.clone());
        if let Some(why) = failed {
            tracing::error!("tapfwd stopped: the state store failed");
            anyhow::bail!("{why}");
        }
        let store = self.ctx.store.health();
        if !store.healthy {
            // Stopped with writes or the final flush failing or stuck: not a clean stop. What was
            // not committed is fetched again at the next start and recognised by its keys.
            tracing::error!("tapfwd stopped with the state store failing");
            anyhow::bail!(
                "stopped with the state store in {} failing: {}",
                self.ctx.store.dir().display(),
                store.last_error.unwrap_or_default()
            );
        }
        tracing::info!("tapfwd stopped");
        Ok(())
    }
}

/// How often [`watch_store`] looks at the store's health, and retries it while it fails.
const STORE_WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Publishes the store's health (`tapfwd_store_healthy`, `tapfwd_store_errors_total`; `/readyz`
/// and `/status` read it directly), retries a failing store with a small write and a flush, and
/// when it has failed for `limit`, says why in `failed` and cancels `shutdown` (the daemon's own
/// stop signal, so that the binary's bound on stopping applies), after which `run` fails and the
/// process exits non-zero so that the service manager restarts it: sled does not recover from an
/// I/O error inside a running process, and a restart resumes from the last committed positions
/// with the dedupe keys (invariants 1 and 2).
async fn watch_store(
    store: Store,
    metrics: Arc<Metrics>,
    limit: std::time::Duration,
    shutdown: CancellationToken,
    failed: Arc<std::sync::Mutex<Option<String>>>,
) {
    let mut tick = tokio::time::interval(STORE_WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let health = store.health();
        metrics.set_global(
            "tapfwd_store_healthy",
            if health.healthy { 1.0 } else { 0.0 },
        );
        metrics.set_global("tapfwd_store_errors_total", health.errors_total as f64);
        let error = health.last_error.clone().unwrap_or_default();
        match (health.healthy, was_failing) {
            (false, false) => {
                tracing::error!(store = %store.dir().display(), %error, exit_after = %humantime::format_duration(limit),
                    "state store failing; not ready, retrying it, and exiting for a restart if it does not recover");
            }
            (true, true) => {
                tracing::warn!(store = %store.dir().display(), "state store works again")
            }
            _ => {}
        }
        was_failing = !health.healthy;
        if health.healthy {
            continue;
        }
        let failing_for = health.failing_for_seconds.unwrap_or(0);
        if failing_for as u64 >= limit.as_secs() {
            let why = format!(
                "the state store in {} has failed for {failing_for} s (poll.store_failure_exit = {}): {error}; \
                 exiting so that the service manager restarts the daemon, which reopens the store and goes on from its \
                 last committed positions (free space on that disk if it is full)",
                store.dir().display(),
                humantime::format_duration(limit),
            );
            tracing::error!(store = %store.dir().display(), %error, failing_for, "state store still failing; stopping the daemon");
            if let Ok(mut f) = failed.lock() {
                *f = Some(why);
            }
            shutdown.cancel();
            return;
        }
        // Retry: a write and a flush that work end the failure (seen at the next tick). Bounded,
        // since a stuck store's flush may not return.
        let _ = tokio::time::timeout(STORE_WATCH_EVERY * 5, store.probe()).await;
    }
}

/// What a running app was built from, kept so that a reload can tell what changed.
struct Running {
    /// The config in effect, already cut to this replica's shard.
    config: Config,
    secrets: BTreeMap<String, SecretString>,
    /// Every sink in use, by name.
    sinks: BTreeMap<String, Arc<dyn Sink>>,
}

/// Applies a new config to a running [`App`]: tenants and sinks that were added, removed or
/// changed take effect; the others keep polling undisturbed (their pollers are not touched).
///
/// A tenant whose settings changed ([`crate::config::TenantConfig::fingerprint`], or its secret) is drained (its current window ends)
/// and started again from its checkpoints. A sink whose settings changed is rebuilt once every
/// tenant writing to it has been drained, so two instances never write to one destination; its
/// tenants are then started again on the new instance. A config that does not load, validate,
/// resolve its secrets or start its new sinks is rejected whole, and the old one keeps running.
/// Changes to `state_dir`, `admin_listen`, `poll` and `log` need a restart; a reload says so.
/// Reloads are applied one at a time.
#[derive(Clone)]
pub struct Reloader {
    ctx: Context,
    commands: mpsc::Sender<Command>,
    running: Arc<Mutex<Running>>,
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub tenants_added: Vec<String>,
    pub tenants_removed: Vec<String>,
    pub tenants_changed: Vec<String>,
    /// Unchanged tenants restarted because a sink of theirs was rebuilt.
    pub tenants_restarted: Vec<String>,
    pub sinks_added: Vec<String>,
    pub sinks_removed: Vec<String>,
    pub sinks_changed: Vec<String>,
    /// Changed sinks whose new settings failed to start; their old instance keeps running.
    pub sinks_kept_old: Vec<String>,
    /// Tenants that could not be started (their state could not be read); see the log.
    pub tenants_failed: Vec<String>,
    /// Top-level keys that changed but only take effect after a restart.
    pub restart_needed: Vec<&'static str>,
}

impl ReloadSummary {
    pub fn is_noop(&self) -> bool {
        *self == ReloadSummary::default()
    }
}

impl fmt::Display for ReloadSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: [(&str, &[String]); 9] = [
            ("tenants added", &self.tenants_added),
            ("tenants removed", &self.tenants_removed),
            ("tenants changed", &self.tenants_changed),
            ("tenants restarted", &self.tenants_restarted),
            ("tenants failed", &self.tenants_failed),
            ("sinks added", &self.sinks_added),
            ("sinks removed", &self.sinks_removed),
            ("sinks changed", &self.sinks_changed),
            ("sinks kept old settings", &self.sinks_kept_old),
        ];
        let mut first = true;
        for (label, names) in parts {
            if names.is_empty() {
                continue;
            }
            if !first {
                write!(f, "; ")?;
            }
            first = false;
            write!(f, "{label}: {}", names.join(", "))?;
        }
        if first {
            write!(f, "no tenant or sink changed")?;
        }
        Ok(())
    }
}

impl Reloader {
    /// Loads `path` (as `tapfwd run` does, `shard` overriding the config's) and applies it. Logs
    /// the outcome and counts it in the metrics; on error the old config keeps running.
    pub async fn reload_file(
        &self,
        path: &Path,
        shard: Option<Shard>,
    ) -> anyhow::Result<ReloadSummary> {
        let result = async {
            let mut config = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            for warning in &config.warnings {
                tracing::warn!("{warning}");
            }
            if shard.is_some() {
                config.shard = shard;
            }
            self.reload(config).await
        }
        .await;
        match &result {
            Ok(summary) if !summary.sinks_kept_old.is_empty() => {
                // The rest was applied, but a sink change the operator asked for is not in
                // effect: that is a rejected reload for monitoring.
                self.ctx.metrics.add_reload(false);
                tracing::error!(config = %path.display(), changes = %summary, sinks = %summary.sinks_kept_old.join(", "),
                    "config reload rejected in part: these sinks' new settings do not start and their old ones stay in effect");
            }
            Ok(summary) => {
                self.ctx.metrics.add_reload(true);
                tracing::info!(config = %path.display(), changes = %summary, "config reloaded");
                if !summary.restart_needed.is_empty() {
                    tracing::warn!(keys = %summary.restart_needed.join(", "), "these settings changed but take effect only after a restart");
                }
            }
            Err(e) => {
                self.ctx.metrics.add_reload(false);
                tracing::error!(config = %path.display(), error = %format!("{e:#}"), "config reload rejected; the running config stays in effect");
            }
        }
        result
    }

    /// Applies `config` (validated again here, then cut to its shard). See [`Reloader`].
    pub async fn reload(&self, mut config: Config) -> anyhow::Result<ReloadSummary> {
        config.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        config.retain_shard(config.shard);
        let secrets = config
            .resolve_secrets(&secret::process_env)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut running = self.running.lock().await;
        let old = &running.config;
        let mut summary = ReloadSummary::default();
        let debug_differs =
            |a: &dyn fmt::Debug, b: &dyn fmt::Debug| format!("{a:?}") != format!("{b:?}");
        for (key, differs) in [
            ("state_dir", old.state_dir != config.state_dir),
            ("admin_listen", old.admin_listen != config.admin_listen),
            ("poll", debug_differs(&old.poll, &config.poll)),
            ("log", old.log.format != config.log.format),
        ] {
            if differs {
                summary.restart_needed.push(key);
            }
        }

        // Sinks: what changed, by name.
        for name in config.sinks.keys() {
            match old.sink_fingerprints.get(name) {
                None => summary.sinks_added.push(name.clone()),
                Some(f) if *f != config.sink_fingerprints[name] => {
                    summary.sinks_changed.push(name.clone())
                }
                Some(_) => {}
            }
        }
        summary.sinks_removed = old
            .sinks
            .keys()
            .filter(|n| !config.sinks.contains_key(*n))
            .cloned()
            .collect();

        // New sinks start before anything else changes: a failure rejects the whole reload.
        let mut added_sinks = BTreeMap::new();
        for name in &summary.sinks_added {
            let sink = sinks::build(name, &config.sinks[name], &secret::process_env)
                .with_context(|| format!("config key `sinks.{name}`"))?;
            sink.start(&self.ctx.store)
                .await
                .with_context(|| format!("config key `sinks.{name}`: cannot start the sink"))?;
            added_sinks.insert(name.clone(), sink);
        }
        let mut rebuilt = BTreeMap::new();
        for name in &summary.sinks_changed {
            let sink = sinks::build(name, &config.sinks[name], &secret::process_env)
                .with_context(|| format!("config key `sinks.{name}`"))?;
            rebuilt.insert(name.clone(), sink);
        }

        // Tenants.
        for (id, tenant) in &config.tenants {
            match old.tenants.get(id) {
                None => summary.tenants_added.push(id.clone()),
                Some(before) => {
                    // Any change to the tenant's settings (any product, any key, its People
                    // table) or to its secret's value restarts its sources.
                    let same = before.fingerprint() == tenant.fingerprint()
                        && running
                            .secrets
                            .get(id)
                            .is_some_and(|old| old.expose_secret() == secrets[id].expose_secret());
                    if !same {
                        summary.tenants_changed.push(id.clone());
                    } else if before
                        .all_sinks()
                        .iter()
                        .any(|s| summary.sinks_changed.contains(s))
                    {
                        summary.tenants_restarted.push(id.clone());
                    }
                }
            }
        }
        summary.tenants_removed = old
            .tenants
            .keys()
            .filter(|id| !config.tenants.contains_key(*id))
            .cloned()
            .collect();

        // Stop the pollers being replaced or removed; wait until none of them runs.
        let drain: Vec<String> = summary
            .tenants_removed
            .iter()
            .chain(&summary.tenants_changed)
            .chain(&summary.tenants_restarted)
            .cloned()
            .collect();
        if !drain.is_empty() {
            let (tx, rx) = oneshot::channel();
            self.commands
                .send(Command::Drain(drain, tx))
                .await
                .map_err(|_| anyhow::anyhow!("the daemon is stopping"))?;
            rx.await
                .map_err(|_| anyhow::anyhow!("the daemon stopped during the reload"))?;
        }

        // Sinks: nothing writes to a changed sink now; start its new instance.
        let mut fingerprints = config.sink_fingerprints.clone();
        for (name, sink) in rebuilt {
            match sink.start(&self.ctx.store).await {
                Ok(()) => {
                    running.sinks.insert(name, sink);
                }
                Err(e) => {
                    tracing::error!(sink = %name, error = %e, "config key `sinks.{name}`: the new settings do not start; keeping the old ones");
                    if let Some(f) = running.config.sink_fingerprints.get(&name) {
                        fingerprints.insert(name.clone(), f.clone());
                    }
                    summary.sinks_kept_old.push(name);
                }
            }
        }
        for name in &summary.sinks_removed {
            running.sinks.remove(name);
        }
        running.sinks.extend(added_sinks);

        // Start the added, changed and restarted tenants from their checkpoints.
        let start: Vec<String> = summary
            .tenants_added
            .iter()
            .chain(&summary.tenants_changed)
            .chain(&summary.tenants_restarted)
            .cloned()
            .collect();
        for id in start {
            let tenant = &config.tenants[&id];
            let tenant_sinks = tenant
                .all_sinks()
                .iter()
                .filter_map(|s| running.sinks.get(s).cloned())
                .collect();
            match sources::for_tenant(
                &id,
                Arc::new(tenant.clone()),
                secrets[&id].clone(),
                tenant_sinks,
                &self.ctx,
            ) {
                Ok(started) => {
                    for p in started {
                        self.commands
                            .send(Command::Put(p))
                            .await
                            .map_err(|_| anyhow::anyhow!("the daemon is stopping"))?;
                    }
                }
                Err(e) => {
                    tracing::error!(tenant = %id, error = %e, "cannot start the tenant after a reload");
                    summary.tenants_failed.push(id);
                }
            }
        }
        config.sink_fingerprints = fingerprints;
        // A tenant that failed to start counts as new on the next reload, which retries it.
        for id in &summary.tenants_failed {
            config.tenants.remove(id);
        }
        self.ctx
            .metrics
            .set_global("tapfwd_tenants", config.tenants.len() as f64);
        running.config = config;
        running.secrets = secrets;
        Ok(summary)
    }
}
