//! The delivery engine, shared by every source: drop the events each sink already has, hand the
//! rest to that sink, and move the sink's position only when the sink has them.
//!
//! A source (a TAP SIEM window, a People snapshot, a stretch of a PoD stream) produces raw events
//! in [`Batch`]es for one tenant, and knows the position they take each sink to (a window's end,
//! a snapshot's period, the latest frame time). Everything after that lives here:
//! - Each of a tenant's sinks has its own position, a *stream* ([`Streams`]). A delivery goes to
//!   the streams that stand where it starts; a stream whose sink fails drops out of that delivery
//!   and retries on its own backoff, so a sink that is down never causes duplicates in the sinks
//!   that are up (invariants 1, 2).
//! - A [`Delivery`] loads the dedupe keys each target stream remembers, filters every batch
//!   against them, and hands the fresh events to the sink with a commit callback: the sink calls
//!   it once the batch is durably accepted, and the batch's keys (and the sink's own position, for
//!   the file sink) are written in one store transaction (invariant 2). A delivery cut short is
//!   started again from its beginning, and what was already delivered is recognised by its keys.
//! - Memory holds whole keys only for what can recur from outside the delivery ([`Seen`]): the
//!   keys loaded from the store. Of the delivery's own events it keeps a 4-byte fingerprint per
//!   key, so a 600 MB window does not hold 380,000 keys in a set. Invariant 2 still holds
//!   exactly: an event whose fingerprint is new was not delivered by this delivery (equal keys
//!   have equal fingerprints); one whose fingerprint is known is looked up whole, among its
//!   batch's fresh events and the keys the delivery's earlier batches committed, which are in
//!   the store before the next batch goes out, since `deliver` returns after its commits and a
//!   target whose sink failed takes no more of the delivery. A fingerprint alone never drops an
//!   event (that would lose it, invariant 1) nor passes one twice.
//! - [`Delivery::finish`] moves each surviving stream to the position the source reached, and
//!   forgets keys older than the dedupe horizon, in one transaction per stream (invariant 1).
//! - The dedupe horizon is the engine's, not the sources': a source opens its streams with a
//!   [`KeyHorizon`] (how far before a delivery's start its events may already have been
//!   delivered, and how long keys are kept past a position) and delivers [`Span`]s; which keys a
//!   delivery loads and which a commit forgets follow from those two alone (invariant 2).
//! - A source that queries its past once more (the TAP SIEM late sweep) delivers that second
//!   pass with [`Streams::begin_sweep`]: it is filtered against the same keys, so only what the
//!   first pass did not have reaches a sink, and it moves each stream's second position
//!   ([`StreamState::swept`]), never the first.
//! - **Group commit.** Every commit is made durable by [`Store::flush`], and the file sink's
//!   bytes by its `fdatasync`: both are shared by whatever became ready while the previous one
//!   ran, across tenants and sources. A delivery waits for the flush (the sync) that covers its
//!   writes and takes its outcome, so nothing is acknowledged before it is durable, and a failed
//!   flush or sync fails every delivery it covered (invariant 1). A source that moves its
//!   position right after each send (a live stream) defers the send's flush to the move
//!   ([`Delivery::defer_flushes`]): one flush per chunk, not two, and the position still becomes
//!   durable only with (never before) the keys it covers, as sled's log is written in order.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;

use crate::backoff;
use crate::clock::Clock;
use crate::dedupe::Seen;
use crate::event::{Batch, EventKey, KeySet};
use crate::metrics::Metrics;
use crate::sinks::{Sink, SinkError};
use crate::status::SinkStatus;
use crate::store::{Progress, Store, StoreError, StreamState};

/// What the engine needs from the daemon: where state lives, where counters go, what time it is
/// and how long a failing sink may wait at most.
#[derive(Clone, Copy)]
pub struct Deps<'a> {
    pub store: &'a Store,
    pub metrics: &'a Metrics,
    pub clock: &'a Clock,
    pub max_backoff: Duration,
}

/// Which of a batch's events a stream takes, by the customer an event belongs to (an Essentials
/// partner's `customer_sinks`). Without routing a stream takes every event.
pub type Route = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// One sink's progress for one tenant.
pub struct Stream {
    pub sink: Arc<dyn Sink>,
    /// The events this stream takes; `None`: all of them.
    route: Option<Route>,
    /// The position and gap record, as committed in the store.
    pub state: StreamState,
    /// Consecutive failed deliveries; 0 while the sink accepts.
    attempts: u32,
    /// Unix seconds before which this stream is not retried.
    retry_at: i64,
    /// Why the last delivery failed; `None` once the sink accepted again.
    last_error: Option<String>,
    /// Events delivered and events recognised as already delivered, since start.
    delivered: u64,
    deduplicated: u64,
}

/// How long a source's dedupe keys matter, in the units of its positions (seconds).
///
/// Keys are filed under the position the delivery that brought them reached. A delivery of the
/// span `[start, end]` loads the keys filed from `start - reach` on: an event it brings can have
/// been delivered before only by a delivery that reached past that. A stream moved to a position
/// `p` forgets the keys filed before `p - keep`. `reach ≤ keep`, so nothing a later delivery
/// could load has been forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHorizon {
    pub reach: i64,
    pub keep: i64,
}

impl KeyHorizon {
    /// Overlapping windows (TAP, Essentials): keys are loaded and kept for `horizon`
    /// (`poll.dedupe_horizon`), longer than any overlap the daemon produces.
    pub fn windows(horizon: Duration) -> KeyHorizon {
        let secs = horizon.as_secs() as i64;
        KeyHorizon {
            reach: secs,
            keep: secs,
        }
    }

    /// [`KeyHorizon::windows`] for a source whose late sweep delivers spans up to `kept` behind
    /// its position again (the sweep's age plus its longest window): keys are kept at least that
    /// long, so the sweep recognises everything delivered before it.
    pub fn kept_for(self, kept: Duration) -> KeyHorizon {
        KeyHorizon {
            keep: self.keep.max(kept.as_secs() as i64),
            ..self
        }
    }

    /// Snapshots (People): a delivery only ever repeats its own period, whose keys are the only
    /// ones that matter.
    pub const SNAPSHOTS: KeyHorizon = KeyHorizon { reach: 0, keep: 0 };
}

/// The positions a delivery covers: it brings events from `start` on and takes its targets to
/// `end` (`i64::MIN` for a delivery that does not end, a live stream whose chunks each set it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
}

/// A tenant's streams, one per sink it names.
pub struct Streams {
    tenant: Arc<str>,
    /// What the streams are stored under: the tenant for its TAP SIEM source, `tenant:source`
    /// for its other sources (`acme:people.vap`), so each source has its own positions and keys.
    scope: Arc<str>,
    streams: Vec<Stream>,
    /// Which keys a delivery loads and a commit forgets.
    horizon: KeyHorizon,
}

impl Streams {
    /// Loads each sink's stream from the store; a new stream starts at `initial` and is written
    /// back at once, so a restart does not move it.
    pub fn open(
        tenant: &str,
        sinks: Vec<Arc<dyn Sink>>,
        initial: i64,
        horizon: KeyHorizon,
        store: &Store,
    ) -> Result<Streams, StoreError> {
        Streams::open_scoped(tenant, tenant, sinks, initial, horizon, store)
    }

    /// [`Streams::open`] for a source of `tenant` whose positions are kept under `scope`.
    pub fn open_scoped(
        tenant: &str,
        scope: &str,
        sinks: Vec<Arc<dyn Sink>>,
        initial: i64,
        horizon: KeyHorizon,
        store: &Store,
    ) -> Result<Streams, StoreError> {
        let mut streams = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let state = match store.stream(scope, sink.name())? {
                Some(s) => s,
                None => {
                    let s = StreamState {
                        checkpoint: initial,
                        ..Default::default()
                    };
                    store.put_stream(scope, sink.name(), &s)?;
                    s
                }
            };
            streams.push(Stream {
                sink,
                route: None,
                state,
                attempts: 0,
                retry_at: 0,
                last_error: None,
                delivered: 0,
                deduplicated: 0,
            });
        }
        Ok(Streams {
            tenant: Arc::from(tenant),
            scope: Arc::from(scope),
            streams,
            horizon,
        })
    }

    /// Routes events by customer: the stream of sink `name` takes the events for which
    /// `route(name)`'s function is true. A delivery still moves a stream that took none of a
    /// window's events to the window's end: it has everything of that window meant for it.
    pub fn route(&mut self, route: impl Fn(&str) -> Route) {
        for s in &mut self.streams {
            s.route = Some(route(s.sink.name()));
        }
    }

    /// The streams whose sink may be tried at `now`.
    pub fn ready(&self, now: i64) -> Vec<usize> {
        (0..self.streams.len())
            .filter(|&i| self.streams[i].retry_at <= now)
            .collect()
    }

    /// The position of stream `i`.
    pub fn position(&self, i: usize) -> i64 {
        self.streams[i].state.checkpoint
    }

    /// How far the last paged delivery to stream `i` got ([`Delivery::record_progress`]).
    pub fn progress(&self, i: usize) -> Option<&Progress> {
        self.streams[i].state.progress.as_ref()
    }

    /// Sets what stream `i` records of its last paged delivery (one that will not be gone on
    /// with, say why).
    pub fn set_progress(
        &mut self,
        i: usize,
        progress: Option<Progress>,
        store: &Store,
    ) -> Result<(), StoreError> {
        let stream = &mut self.streams[i];
        let mut state = stream.state.clone();
        state.progress = progress;
        store.put_stream(&self.scope, stream.sink.name(), &state)?;
        stream.state = state;
        Ok(())
    }

    /// The late sweep's position of stream `i` ([`StreamState::swept`]; its position when the
    /// sweep has none yet).
    pub fn swept(&self, i: usize) -> i64 {
        let state = &self.streams[i].state;
        state.swept.unwrap_or(state.checkpoint)
    }

    /// The earliest position from which stream `i` still remembers every key a delivery could
    /// repeat: a sweep that starts before it could deliver events twice.
    pub fn keys_kept_from(&self, i: usize) -> i64 {
        self.streams[i]
            .state
            .checkpoint
            .saturating_sub(self.horizon.keep)
    }

    /// Moves stream `i`'s sweep position forward to `to` without a delivery (the span between
    /// is skipped by the sweep: the source says why).
    pub fn skip_sweep(&mut self, i: usize, to: i64, store: &Store) -> Result<(), StoreError> {
        let stream = &mut self.streams[i];
        if to <= stream.state.swept.unwrap_or(stream.state.checkpoint) {
            return Ok(());
        }
        let mut state = stream.state.clone();
        state.swept = Some(to);
        store.put_stream(&self.scope, stream.sink.name(), &state)?;
        stream.state = state;
        Ok(())
    }

    /// The earliest instant at which some stream may be tried again.
    pub fn next_retry(&self) -> Option<i64> {
        self.streams.iter().map(|s| s.retry_at).min()
    }

    /// The earliest retry instant after `now` of a stream that is waiting, if any.
    pub fn blocked_until(&self, now: i64) -> Option<i64> {
        self.streams
            .iter()
            .map(|s| s.retry_at)
            .filter(|&r| r > now)
            .min()
    }

    /// Whether some sink is failing and holds its position.
    pub fn any_failing(&self) -> bool {
        self.streams.iter().any(|s| s.last_error.is_some())
    }

    /// How far the stream furthest behind is from `now`, in seconds.
    pub fn behind(&self, now: i64) -> Option<i64> {
        self.streams.iter().map(|s| now - s.state.checkpoint).max()
    }

    /// Moves every stream whose position `clamp` maps forward, records the skipped span as a gap
    /// (status and the `tapfwd_gap_seconds_total` metric) and returns `(sink, from, to)` for each,
    /// so the source can say why in its own words.
    pub fn clamp(
        &mut self,
        deps: Deps<'_>,
        clamp: impl Fn(i64) -> (i64, Option<(i64, i64)>),
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let mut gaps = Vec::new();
        for s in &mut self.streams {
            let (start, gap) = clamp(s.state.checkpoint);
            if let Some((from, to)) = gap {
                s.state.checkpoint = start;
                s.state.gap_seconds += to - from;
                s.state.last_gap = Some((from, to));
                deps.store
                    .put_stream(&self.scope, s.sink.name(), &s.state)?;
                deps.metrics.add_gap(&self.tenant, s.sink.name(), to - from);
                gaps.push((s.sink.name().to_string(), from, to));
            }
        }
        Ok(gaps)
    }

    /// Starts delivering events of `span` to the streams `targets`. Loads the dedupe keys each
    /// target remembers that a delivery of `span` could repeat ([`KeyHorizon`]).
    pub fn begin(
        &mut self,
        targets: Vec<usize>,
        span: Span,
        store: &Store,
    ) -> Result<Delivery<'_>, StoreError> {
        self.start(targets, span, false, store)
    }

    /// Starts the late sweep's second delivery of `span` (which ends no later than each target's
    /// position) to the streams `targets`, whose sweep stands at its start: filtered against the
    /// same keys as any delivery, it takes only what the first did not have, and
    /// [`Delivery::finish`] moves the targets' sweep position to its end, not their position.
    pub fn begin_sweep(
        &mut self,
        targets: Vec<usize>,
        span: Span,
        store: &Store,
    ) -> Result<Delivery<'_>, StoreError> {
        self.start(targets, span, true, store)
    }

    fn start(
        &mut self,
        targets: Vec<usize>,
        span: Span,
        sweep: bool,
        store: &Store,
    ) -> Result<Delivery<'_>, StoreError> {
        let keys_since = span.start.saturating_sub(self.horizon.reach);
        let mut seen = Vec::with_capacity(targets.len());
        for &i in &targets {
            let sink = self.streams[i].sink.name();
            seen.push(Seen::load(store, &self.scope, sink, keys_since)?);
        }
        let alive = vec![true; targets.len()];
        Ok(Delivery {
            streams: self,
            targets,
            seen,
            alive,
            start: span.start,
            end: span.end,
            probe_failing: false,
            sweep,
            first_pass_swept: None,
            found: 0,
            defer_flushes: false,
        })
    }

    /// Moves stream `i` forward to `position` (never back) and forgets its dedupe keys that
    /// fell out of the [`KeyHorizon`] there, in one transaction. A streaming source uses it when
    /// a stream's gap is closed (the archive reached what the live stream delivered).
    pub fn advance(&mut self, i: usize, position: i64, deps: Deps<'_>) -> Result<(), StoreError> {
        let forget_before = position.saturating_sub(self.horizon.keep);
        let stream = &mut self.streams[i];
        if position <= stream.state.checkpoint {
            return Ok(());
        }
        let mut state = stream.state.clone();
        state.checkpoint = position;
        deps.store
            .commit_window(&self.scope, stream.sink.name(), &state, forget_before)?;
        stream.state = state;
        Ok(())
    }

    /// The number of streams (one per sink).
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Each sink's status at `now`, with the configured `lag` (seconds).
    pub fn statuses(&self, now: i64, lag: i64) -> Vec<SinkStatus> {
        self.streams
            .iter()
            .map(|s| SinkStatus {
                delivered: s.delivered,
                deduplicated: s.deduplicated,
                failing: s.last_error.is_some(),
                last_error: s.last_error.clone(),
                ..SinkStatus::from_stream(s.sink.name(), &s.state, now, lag)
            })
            .collect()
    }
}

/// Events on their way to some of a tenant's streams, all ending at the same position.
pub struct Delivery<'a> {
    streams: &'a mut Streams,
    targets: Vec<usize>,
    /// Per target: the keys it already has, growing as batches are delivered.
    seen: Vec<Seen>,
    /// Per target: false once its sink failed in this delivery.
    alive: Vec<bool>,
    start: i64,
    end: i64,
    /// Sinks already failing get one attempt per send ([`Delivery::probe_failing_sinks`]).
    probe_failing: bool,
    /// The late sweep's second delivery ([`Streams::begin_sweep`]).
    sweep: bool,
    /// A first delivery of a source with a late sweep: whether it counts as swept
    /// ([`Delivery::track_sweep`]); `None` for sources without one.
    first_pass_swept: Option<bool>,
    /// A sweep: distinct events some target lacked and took, so far.
    found: u64,
    /// [`Delivery::send`] leaves the flush to the next advance or finish.
    defer_flushes: bool,
}

impl Delivery<'_> {
    /// From now on, a target whose sink has failed before (and not delivered since) gets one
    /// attempt per [`Delivery::send`] instead of its sink's retries: for a live stream, where
    /// every sink waits for the slowest before the next chunk, a sink that is down would
    /// otherwise hold the others for its `retry.max_time` at each of its retries.
    pub fn probe_failing_sinks(&mut self) {
        self.probe_failing = true;
    }

    /// From now on [`Delivery::send`] does not flush the store: the [`Delivery::advance`] (or
    /// finish) that the source makes right after each send does, covering the send's commits
    /// too. Only for a source that acknowledges nothing between the two (a live stream): a sink
    /// without a position of its own may otherwise get a chunk again after a crash in between.
    pub fn defer_flushes(&mut self) {
        self.defer_flushes = true;
    }

    /// For the first delivery of a span by a source with a late sweep: `swept` says whether this
    /// delivery already counts as the span's sweep (its end was `late_sweep` old when it was
    /// asked for, or the sweep is off). [`Delivery::finish`] then moves each target's sweep
    /// position along with its position when the sweep stood at the delivery's start; otherwise
    /// the sweep position stays where it was (and is set to the target's old position if it had
    /// none), so that the sweep comes back for this span.
    pub fn track_sweep(&mut self, swept: bool) {
        self.first_pass_swept = Some(swept);
    }

    /// The events of `batch` that some live target takes and may not have yet (whose key was not
    /// loaded from the store; [`Delivery::send`] then decides exactly). A sweep hands only these
    /// on (to enrichment, then [`Delivery::send`]): it re-reads a whole window, and the rest of it
    /// was delivered before.
    pub fn lacked(&self, batch: &Batch) -> Batch {
        batch.filter(|e| {
            self.targets
                .iter()
                .zip(&self.alive)
                .zip(&self.seen)
                .any(|((&i, &alive), seen)| {
                    let takes = match &self.streams.streams[i].route {
                        None => true,
                        Some(route) => route(e.customer.as_deref()),
                    };
                    alive && takes && !seen.surely_has(&e.key)
                })
        })
    }

    /// A sweep: the distinct events delivered so far that some target did not have (the events
    /// it found late).
    pub fn found(&self) -> u64 {
        self.found
    }

    /// Whether some target still takes events.
    pub fn any_alive(&self) -> bool {
        self.alive.iter().any(|a| *a)
    }

    /// Delivers `batch` to every live target, without the events that target already has, and
    /// makes the commits durable. A target whose sink fails drops out of this delivery and waits
    /// for its own retry.
    pub async fn send(&mut self, batch: &Batch, deps: Deps<'_>) -> Result<(), StoreError> {
        let tenant: &str = &self.streams.tenant;
        let scope: &str = &self.streams.scope;
        let end = self.end;
        let mut work = Vec::new();
        // A sweep: the fresh keys of each target, to count the events found late.
        let mut swept_keys: Vec<(usize, Vec<EventKey>)> = Vec::new();
        for (slot, &i) in self.targets.iter().enumerate() {
            if !self.alive[slot] {
                continue;
            }
            let set = &mut self.seen[slot];
            let sink = self.streams.streams[i].sink.clone();
            let routed = self.streams.streams[i]
                .route
                .as_ref()
                .map(|route| batch.filter(|e| route(e.customer.as_deref())));
            let mine = routed.as_ref().unwrap_or(batch);
            let fresh = set.take_fresh(mine, end, deps.store, scope, sink.name())?;
            let dups = (mine.len() - fresh.len()) as u64;
            let probe = self.probe_failing && self.streams.streams[i].attempts > 0;
            let store = deps.store.clone();
            let keys: Vec<EventKey> = fresh.events.iter().map(|e| e.key).collect();
            if self.sweep {
                swept_keys.push((slot, keys.clone()));
            }
            work.push(async move {
                if fresh.is_empty() {
                    return (slot, dups, 0, Ok(()));
                }
                let sink_name = sink.name().to_string();
                let delivery = sink.deliver(
                    tenant,
                    &fresh,
                    Box::new(move |pos| store.commit_chunk(scope, &sink_name, end, &keys, pos)),
                );
                let result = if probe {
                    crate::sinks::single_attempt(delivery).await
                } else {
                    delivery.await
                };
                (slot, dups, fresh.len() as u64, result)
            });
        }
        let results = join_all(work).await;
        if self.sweep {
            let taken: KeySet = swept_keys
                .into_iter()
                .filter(|(slot, _)| results.iter().any(|r| r.0 == *slot && r.3.is_ok()))
                .flat_map(|(_, keys)| keys)
                .collect();
            self.found += taken.len() as u64;
        }
        for (slot, dups, delivered, result) in results {
            let stream = &mut self.streams.streams[self.targets[slot]];
            stream.deduplicated += dups;
            deps.metrics
                .add_deduplicated(tenant, stream.sink.name(), dups);
            match result {
                Ok(()) => {
                    stream.delivered += delivered;
                    deps.metrics
                        .add_delivered(tenant, stream.sink.name(), delivered);
                }
                Err(e) => {
                    self.alive[slot] = false;
                    sink_failed(stream, deps, tenant, e);
                }
            }
        }
        if self.defer_flushes {
            return Ok(());
        }
        deps.store.flush().await
    }

    /// The streams this delivery belongs to, for reading positions and retry times.
    pub fn streams(&self) -> &Streams {
        self.streams
    }

    /// The streams still taking this delivery (their sink has not failed in it).
    pub fn alive_streams(&self) -> Vec<usize> {
        self.targets
            .iter()
            .zip(&self.alive)
            .filter(|(_, a)| **a)
            .map(|(i, _)| *i)
            .collect()
    }

    /// For a delivery that does not end (a live stream): the position the following chunks'
    /// dedupe keys are filed under, and where [`Delivery::finish`] moves the targets.
    pub fn set_end(&mut self, end: i64) {
        self.end = end;
    }

    /// Moves each live target `i` for which `to(i)` names a position ahead of its own there,
    /// without ending the delivery (see [`Streams::advance`]). A streaming source commits the
    /// position each chunk reached this way.
    pub async fn advance(
        &mut self,
        to: impl Fn(usize) -> Option<i64>,
        deps: Deps<'_>,
    ) -> Result<(), StoreError> {
        let alive = self.alive_streams();
        for i in alive {
            if let Some(position) = to(i) {
                self.streams.advance(i, position, deps)?;
                let stream = &mut self.streams.streams[i];
                stream.attempts = 0;
                stream.last_error = None;
            }
        }
        deps.store.flush().await
    }

    /// For a delivery that pages through its span: records with every live target that it has
    /// the pages `progress` counts, so a delivery cut short goes on after them, after a restart
    /// too. Everything those pages held was committed by [`Delivery::send`] before.
    pub async fn record_progress(
        &mut self,
        progress: &Progress,
        deps: Deps<'_>,
    ) -> Result<(), StoreError> {
        let scope: &str = &self.streams.scope;
        for (slot, &i) in self.targets.iter().enumerate() {
            if !self.alive[slot] {
                continue;
            }
            let stream = &mut self.streams.streams[i];
            let mut state = stream.state.clone();
            state.progress = Some(progress.clone());
            deps.store.put_stream(scope, stream.sink.name(), &state)?;
            stream.state = state;
        }
        deps.store.flush().await
    }

    /// Moves every target that took the whole delivery to its end, forgetting the dedupe keys
    /// that fell out of the [`KeyHorizon`] there; returns how many targets that was. A sweep
    /// ([`Streams::begin_sweep`]) moves the targets' sweep position instead, and forgets what
    /// their own position lets go.
    pub async fn finish(self, deps: Deps<'_>) -> Result<usize, StoreError> {
        self.finish_with(None, deps).await
    }

    /// [`Delivery::finish`], leaving `note` with each target moved: how a paged delivery (a
    /// People snapshot) ended.
    pub async fn finish_with(
        self,
        note: Option<Progress>,
        deps: Deps<'_>,
    ) -> Result<usize, StoreError> {
        let scope: &str = &self.streams.scope;
        let keep = self.streams.horizon.keep;
        for (slot, &i) in self.targets.iter().enumerate() {
            if !self.alive[slot] {
                continue;
            }
            let stream = &mut self.streams.streams[i];
            let mut state = stream.state.clone();
            let swept = state.swept.unwrap_or(state.checkpoint);
            if self.sweep {
                state.swept = Some(swept.max(self.end));
            } else {
                if let Some(counts) = self.first_pass_swept {
                    let moves = counts && swept >= self.start;
                    state.swept = Some(if moves { swept.max(self.end) } else { swept });
                }
                state.checkpoint = self.end;
                state.progress = note.clone();
            }
            let forget_before = state.checkpoint.saturating_sub(keep);
            deps.store
                .commit_window(scope, stream.sink.name(), &state, forget_before)?;
            stream.state = state;
            if stream.attempts > 0 {
                tracing::info!(sink = %stream.sink.name(), "sink recovered");
            }
            stream.attempts = 0;
            stream.last_error = None;
        }
        deps.store.flush().await?;
        Ok(self.alive.iter().filter(|a| **a).count())
    }
}

/// Holds a stream whose sink failed: backoff (longer for a sink that rejects than for one that is
/// away), a counter and one log line.
fn sink_failed(stream: &mut Stream, deps: Deps<'_>, tenant: &str, e: SinkError) {
    let now = deps.clock.now().timestamp();
    let base = if e.is_retryable() {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(30)
    };
    let wait = backoff::delay(stream.attempts, base, deps.max_backoff);
    stream.attempts = stream.attempts.saturating_add(1);
    stream.retry_at = now + wait.as_secs().max(1) as i64;
    deps.metrics
        .add_sink_error(tenant, stream.sink.name(), e.class());
    if e.is_retryable() {
        tracing::warn!(sink = %stream.sink.name(), error = %e, retry_in_secs = wait.as_secs(), "sink unavailable; holding its checkpoint");
    } else {
        tracing::error!(sink = %stream.sink.name(), error = %e, retry_in_secs = wait.as_secs(), "sink rejected events; holding its checkpoint until it accepts them");
    }
    stream.last_error = Some(e.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use bytes::Bytes;

    use crate::event::{EventKind, EventMeta};
    use crate::sinks::Commit;

    /// A sink that keeps what it was given, or refuses everything while `down`.
    struct Memory {
        name: &'static str,
        down: std::sync::atomic::AtomicBool,
        got: Mutex<Vec<Vec<u8>>>,
        /// Per call of `deliver`: whether it ran as a single attempt.
        single: Mutex<Vec<bool>>,
    }

    impl Memory {
        fn new(name: &'static str) -> Arc<Memory> {
            Arc::new(Memory {
                name,
                down: Default::default(),
                got: Mutex::default(),
                single: Mutex::default(),
            })
        }
        fn set_down(&self, down: bool) {
            self.down.store(down, std::sync::atomic::Ordering::SeqCst);
        }
        fn got(&self) -> Vec<Vec<u8>> {
            self.got.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Sink for Memory {
        fn name(&self) -> &str {
            self.name
        }
        async fn deliver(
            &self,
            _tenant: &str,
            batch: &Batch,
            commit: Commit<'_>,
        ) -> Result<(), SinkError> {
            self.single
                .lock()
                .unwrap()
                .push(crate::sinks::is_single_attempt());
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(SinkError::Unavailable("down".into()));
            }
            self.got
                .lock()
                .unwrap()
                .extend(batch.iter().map(|(_, raw)| raw.to_vec()));
            commit(None)?;
            Ok(())
        }
    }

    fn batch(events: &[&str]) -> Batch {
        let mut buf = Vec::new();
        let mut metas = Vec::new();
        for e in events {
            metas.push(EventMeta {
                kind: EventKind::Vap,
                start: buf.len() as u32,
                len: e.len() as u32,
                key: EventKey::of(e.as_bytes()),
                time_ms: None,
                customer: None,
            });
            buf.extend_from_slice(e.as_bytes());
        }
        Batch {
            buf: Bytes::from(buf),
            events: metas,
            enrichment: None,
            snapshot: None,
        }
    }

    /// A horizon that loads and keeps every key of these tests' deliveries of [`SPAN`].
    const WIDE: KeyHorizon = KeyHorizon {
        reach: 200,
        keep: 200,
    };
    const SPAN: Span = Span {
        start: 100,
        end: 200,
    };

    /// What a delivery needs around it: a store in a scratch directory, metrics, a clock.
    struct World {
        _dir: tempfile::TempDir,
        store: Store,
        metrics: Metrics,
        clock: Clock,
    }

    impl World {
        fn new() -> World {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open(dir.path()).unwrap();
            let (clock, _manual) = Clock::manual(chrono::Utc::now());
            World {
                _dir: dir,
                store,
                metrics: Metrics::default(),
                clock,
            }
        }

        fn deps(&self) -> Deps<'_> {
            Deps {
                store: &self.store,
                metrics: &self.metrics,
                clock: &self.clock,
                max_backoff: Duration::from_secs(60),
            }
        }
    }

    #[tokio::test]
    async fn each_stream_gets_every_event_once_and_moves_only_when_its_sink_has_them() {
        let world = World::new();
        let (store, deps) = (&world.store, world.deps());
        let (up, flaky) = (Memory::new("up"), Memory::new("flaky"));
        let sinks: Vec<Arc<dyn Sink>> = vec![up.clone(), flaky.clone()];
        let mut streams = Streams::open("acme", sinks.clone(), 100, WIDE, store).unwrap();
        assert_eq!((streams.position(0), streams.position(1)), (100, 100));

        // The flaky sink is down for the first delivery: only `up` moves.
        flaky.set_down(true);
        let mut d = streams.begin(vec![0, 1], SPAN, store).unwrap();
        d.send(&batch(&[r#"{"a":1}"#, r#"{"a":2}"#]), deps)
            .await
            .unwrap();
        assert!(d.any_alive());
        d.send(&batch(&[r#"{"a":2}"#, r#"{"a":3}"#]), deps)
            .await
            .unwrap();
        assert_eq!(d.finish(deps).await.unwrap(), 1);
        assert_eq!((streams.position(0), streams.position(1)), (200, 100));
        assert!(streams.any_failing());
        assert_eq!(up.got().len(), 3, "a repeat within one delivery is dropped");

        // A restart: the store remembers positions and keys. The same events again (an overlap)
        // reach only the sink that lacks them.
        flaky.set_down(false);
        let mut streams = Streams::open("acme", sinks, 100, WIDE, store).unwrap();
        assert_eq!((streams.position(0), streams.position(1)), (200, 100));
        let mut d = streams.begin(vec![0, 1], SPAN, store).unwrap();
        d.send(&batch(&[r#"{"a":1}"#, r#"{"a":2}"#, r#"{"a":3}"#]), deps)
            .await
            .unwrap();
        assert_eq!(d.finish(deps).await.unwrap(), 2);
        assert_eq!(
            up.got().len(),
            3,
            "nothing twice into the sink that had them"
        );
        assert_eq!(
            flaky.got().len(),
            3,
            "nothing lost for the sink that was down"
        );
        assert_eq!((streams.position(0), streams.position(1)), (200, 200));
        assert!(!streams.any_failing());
    }

    #[tokio::test]
    async fn a_probing_delivery_gives_a_sink_that_already_failed_one_attempt() {
        let world = World::new();
        let (store, deps) = (&world.store, world.deps());
        let (up, down) = (Memory::new("up"), Memory::new("down"));
        let sinks: Vec<Arc<dyn Sink>> = vec![up.clone(), down.clone()];
        let mut streams = Streams::open("acme", sinks, 100, WIDE, store).unwrap();
        down.set_down(true);

        // First failure: the sink has not failed before, so it gets its own retries.
        let mut d = streams.begin(vec![0, 1], SPAN, store).unwrap();
        d.probe_failing_sinks();
        d.send(&batch(&[r#"{"a":1}"#]), deps).await.unwrap();
        assert_eq!(d.alive_streams(), vec![0]);
        drop(d);
        // The next try of the failing sink, in a probing delivery: one attempt; the sink that
        // is up is untouched by it.
        let mut d = streams.begin(vec![0, 1], SPAN, store).unwrap();
        d.probe_failing_sinks();
        d.send(&batch(&[r#"{"a":2}"#]), deps).await.unwrap();
        drop(d);
        // Not probing: the failing sink gets its retries again.
        let mut d = streams.begin(vec![0, 1], SPAN, store).unwrap();
        d.send(&batch(&[r#"{"a":3}"#]), deps).await.unwrap();
        drop(d);
        assert_eq!(*down.single.lock().unwrap(), vec![false, true, false]);
        assert_eq!(*up.single.lock().unwrap(), vec![false, false, false]);
        assert_eq!(up.got().len(), 3);

        // Back up: the probe delivers, and once its position moves it is no longer probed.
        down.set_down(false);
        let mut d = streams.begin(vec![0, 1], SPAN, store).unwrap();
        d.probe_failing_sinks();
        d.send(&batch(&[r#"{"a":4}"#]), deps).await.unwrap();
        d.advance(|_| Some(150), deps).await.unwrap();
        d.send(&batch(&[r#"{"a":5}"#]), deps).await.unwrap();
        assert_eq!(d.alive_streams(), vec![0, 1]);
        assert_eq!(
            *down.single.lock().unwrap(),
            vec![false, true, false, true, false]
        );
        assert_eq!(down.got().len(), 2);
    }

    /// Delivers the one event `{"a":1}` over `[start, end]` to stream 0.
    async fn deliver(streams: &mut Streams, deps: Deps<'_>, start: i64, end: i64) {
        let mut d = streams
            .begin(vec![0], Span { start, end }, deps.store)
            .unwrap();
        d.send(&batch(&[r#"{"a":1}"#]), deps).await.unwrap();
        d.finish(deps).await.unwrap();
    }

    /// The late sweep's second delivery of a span: it takes only what the first did not have,
    /// counts that as found, and moves the sweep position, never the stream's position; a first
    /// delivery moves the sweep position along only when it already counts as swept.
    #[tokio::test]
    async fn a_sweep_delivers_only_what_the_first_pass_lacked_and_moves_only_its_own_position() {
        let world = World::new();
        let (store, deps) = (&world.store, world.deps());
        let sink = Memory::new("s");
        let sinks: Vec<Arc<dyn Sink>> = vec![sink.clone()];
        let mut streams = Streams::open("acme", sinks.clone(), 100, WIDE, store).unwrap();
        assert_eq!(streams.swept(0), 100, "no sweep position yet: the position");

        // A young window: the sweep stays at its start. Then one already old enough, but the
        // sweep is behind it: it stays too.
        let mut d = streams.begin(vec![0], SPAN, store).unwrap();
        d.track_sweep(false);
        d.send(&batch(&[r#"{"a":1}"#, r#"{"a":2}"#]), deps)
            .await
            .unwrap();
        d.finish(deps).await.unwrap();
        assert_eq!((streams.position(0), streams.swept(0)), (200, 100));
        let mut d = streams
            .begin(
                vec![0],
                Span {
                    start: 200,
                    end: 250,
                },
                store,
            )
            .unwrap();
        d.track_sweep(true);
        d.finish(deps).await.unwrap();
        assert_eq!((streams.position(0), streams.swept(0)), (250, 100));

        // The sweep of [100, 200]: two events published late, one replayed, two delivered.
        let mut d = streams.begin_sweep(vec![0], SPAN, store).unwrap();
        d.send(&batch(&[r#"{"a":1}"#, r#"{"a":3}"#, r#"{"a":3}"#]), deps)
            .await
            .unwrap();
        let again = batch(&[r#"{"a":2}"#, r#"{"a":4}"#]);
        assert_eq!(d.lacked(&again).len(), 1, "only the event the sink lacks");
        d.send(&again, deps).await.unwrap();
        assert_eq!(d.found(), 2);
        d.finish(deps).await.unwrap();
        assert_eq!(sink.got().len(), 4, "only the late events were added");
        assert_eq!((streams.position(0), streams.swept(0)), (250, 200));

        // Both survive a restart; an old-enough window with the sweep at its start moves it.
        let mut streams = Streams::open("acme", sinks, 100, WIDE, store).unwrap();
        assert_eq!((streams.position(0), streams.swept(0)), (250, 200));
        let mut d = streams
            .begin_sweep(
                vec![0],
                Span {
                    start: 200,
                    end: 250,
                },
                store,
            )
            .unwrap();
        d.send(&batch(&[r#"{"a":3}"#]), deps).await.unwrap();
        assert_eq!(d.found(), 0, "delivered before the restart");
        d.finish(deps).await.unwrap();
        let mut d = streams
            .begin(
                vec![0],
                Span {
                    start: 250,
                    end: 300,
                },
                store,
            )
            .unwrap();
        d.track_sweep(true);
        d.finish(deps).await.unwrap();
        assert_eq!((streams.position(0), streams.swept(0)), (300, 300));
        assert_eq!(sink.got().len(), 4);

        // Skipping moves only forward.
        streams.skip_sweep(0, 250, store).unwrap();
        assert_eq!(streams.swept(0), 300);
        assert_eq!(streams.keys_kept_from(0), 100);
    }

    #[tokio::test]
    async fn the_key_horizon_decides_which_keys_a_delivery_sees_and_a_commit_forgets() {
        let world = World::new();
        let (store, deps) = (&world.store, world.deps());
        let sink = Memory::new("s");
        let sinks: Vec<Arc<dyn Sink>> = vec![sink.clone()];
        let horizon = KeyHorizon {
            reach: 50,
            keep: 100,
        };
        let mut streams = Streams::open("acme", sinks, 100, horizon, store).unwrap();
        // Filed under 200. A delivery from 240 loads keys from 190 on: a repeat.
        deliver(&mut streams, deps, 100, 200).await;
        deliver(&mut streams, deps, 240, 300).await;
        assert_eq!(sink.got().len(), 1, "within reach: recognised");
        // A delivery from 260 loads keys from 210 on: the key filed under 200 is out of reach.
        deliver(&mut streams, deps, 260, 300).await;
        assert_eq!(sink.got().len(), 2, "out of reach: delivered again");
        // The commit at 300 filed the key under 300 too; moving to 401 forgets keys before 301.
        streams.advance(0, 401, deps).unwrap();
        deliver(&mut streams, deps, 300, 450).await;
        assert_eq!(sink.got().len(), 3, "forgotten past keep: delivered again");
    }
}
