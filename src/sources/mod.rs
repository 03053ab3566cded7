//! Sources: each reads one Proofpoint API for one tenant and hands what it read, with the
//! position it reached, to the shared delivery engine ([`crate::engine`]).
//!
//! A polled source is a plain struct that the [`crate::scheduler`] runs one step at a time: a
//! step does at most one request's worth of work (one TAP SIEM window) and says when it wants to
//! run again ([`Next`]). Between steps it costs its own size and one heap entry, which is what
//! lets one daemon hold thousands of tenants. Sources keep invariants 3 (requests the API
//! accepts), 4 (within budget) and 6 (a source's failures end in its own backoff); the engine
//! keeps 1 and 2.
//!
//! Adding a source: its own module here, its config in `config/`, its kinds in [`plan`] and one
//! arm in [`for_tenant`], docs and tests. Its events use
//! [`crate::event::EventKind`]s of their own, which sinks map through their per-kind tables.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::api::intel::IntelClient;
use crate::api::siem::TapClient;
use crate::clock::Clock;
use crate::config::PollConfig;
use crate::engine;
use crate::enrich::Enricher;
use crate::metrics::Metrics;
use crate::status::StatusBoard;
use crate::store::Store;

pub mod ctr;
pub mod isolation;
pub mod itm;
pub mod people;
pub mod plan;
pub mod pod;
pub mod slices;
pub mod tap_siem;
pub mod trap;

pub use plan::{for_tenant, plan, Planned, SourceId, SourceKind};

/// What every source shares.
#[derive(Clone)]
pub struct Context {
    pub store: Store,
    pub client: TapClient,
    pub clock: Clock,
    pub poll: Arc<PollConfig>,
    pub status: Arc<StatusBoard>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Threat enrichment, for the tenants that set `enrich`.
    pub enricher: Arc<Enricher>,
    /// The client of the read-only TAP endpoints besides SIEM (People).
    pub intel: IntelClient,
    /// The long-lived tasks of streaming sources (PoD), which the scheduler does not step: the
    /// scheduler waits for them (within `poll.shutdown_grace`) when it stops, so their last
    /// chunk is committed and their connections closed before the store is flushed and closed.
    pub streams: tokio_util::task::TaskTracker,
}

impl Context {
    /// What the delivery engine needs of it.
    pub fn engine(&self) -> engine::Deps<'_> {
        engine::Deps {
            store: &self.store,
            metrics: &self.metrics,
            clock: &self.clock,
            max_backoff: self.poll.max_backoff,
        }
    }
}

/// When the scheduler should run a source again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// More work is ready now (a backlog): requeue behind the sources already waiting.
    Now,
    /// Unix seconds.
    At(i64),
}

impl Next {
    /// When the source is due again: `None` for now (a backlog), else the unix second.
    pub fn at(&self) -> Option<i64> {
        match self {
            Next::Now => None,
            Next::At(t) => Some(*t),
        }
    }
}

/// A source the scheduler steps.
#[async_trait]
pub trait Source: Send {
    /// The scheduler's key for it: unique among the daemon's sources (the tenant id for TAP SIEM).
    fn id(&self) -> &str;

    /// Does at most one request's worth of work; says when to run again. Every failure ends in
    /// the source's own backoff, never in an error for the scheduler.
    async fn step(&mut self, ctx: &Context) -> Next;
}
