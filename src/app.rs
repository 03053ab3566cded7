//! The application: builds the store, sinks and pollers from a [`Config`], runs them until told
//! to stop. Used by `tapfwd run`, `tapfwd demo`, the black-box tests and the benchmarks alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context as _;
use secrecy::SecretString;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::poller::{Context, Poller};
use crate::scheduler::{Command, Scheduler};
use crate::sinks::{self, Sink};
use crate::status::StatusBoard;
use crate::store::Store;
use crate::tap::client::TapClient;

/// A built daemon, ready to run.
pub struct App {
    ctx: Context,
    scheduler: Scheduler,
    commands: mpsc::Receiver<Command>,
    commands_tx: mpsc::Sender<Command>,
    sinks: BTreeMap<String, Arc<dyn Sink>>,
}

impl App {
    /// Opens the state store, starts the sinks and loads every tenant. Secrets are read from the
    /// process environment and files as the config says.
    pub async fn build(config: Config, clock: Clock) -> anyhow::Result<App> {
        let secrets = config
            .resolve_secrets(&|k| std::env::var(k).ok())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        App::build_with_secrets(config, secrets, clock).await
    }

    /// As [`App::build`], with the secrets already resolved.
    pub async fn build_with_secrets(
        config: Config,
        secrets: BTreeMap<String, SecretString>,
        clock: Clock,
    ) -> anyhow::Result<App> {
        let store = Store::open(&config.state_dir)?;
        let client = TapClient::new(config.poll.read_timeout)?;
        let ctx = Context {
            store: store.clone(),
            client,
            clock,
            poll: Arc::new(config.poll.clone()),
            status: Arc::new(StatusBoard::default()),
            metrics: Arc::new(Metrics::default()),
            shutdown: CancellationToken::new(),
        };
        let mut sinks = BTreeMap::new();
        for (name, sink_config) in &config.sinks {
            let sink = sinks::build(name, sink_config).with_context(|| format!("sink `{name}`"))?;
            sink.start(&store)
                .await
                .with_context(|| format!("starting sink `{name}`"))?;
            sinks.insert(name.clone(), sink);
        }
        let mut pollers = Vec::with_capacity(config.tenants.len());
        for (id, tenant) in &config.tenants {
            let tenant_sinks = tenant.sinks.iter().map(|s| sinks[s].clone()).collect();
            let secret = secrets
                .get(id)
                .cloned()
                .with_context(|| format!("tenants.{id}: no secret"))?;
            pollers.push(Poller::new(
                id,
                Arc::new(tenant.clone()),
                secret,
                tenant_sinks,
                &ctx,
            )?);
        }
        ctx.metrics
            .set_global("tapfwd_tenants", pollers.len() as f64);
        let scheduler = Scheduler::new(ctx.clone(), pollers);
        let (commands_tx, commands) = mpsc::channel(64);
        Ok(App {
            ctx,
            scheduler,
            commands,
            commands_tx,
            sinks,
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

    /// The sinks by name.
    pub fn sinks(&self) -> &BTreeMap<String, Arc<dyn Sink>> {
        &self.sinks
    }

    /// A handle for adding, replacing or removing tenants while running.
    pub fn commands(&self) -> mpsc::Sender<Command> {
        self.commands_tx.clone()
    }

    /// Runs until `shutdown` is cancelled, then stops at a safe point and flushes the store.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let inner = self.ctx.shutdown.clone();
        let relay = tokio::spawn(async move {
            shutdown.cancelled().await;
            inner.cancel();
        });
        tracing::info!(tenants = self.scheduler.len(), store = %self.ctx.store.path().display(), "tapfwd running");
        self.scheduler.run(self.commands).await;
        relay.abort();
        tracing::info!("tapfwd stopped");
        Ok(())
    }
}
