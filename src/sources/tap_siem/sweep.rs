//! The TAP SIEM poller's late sweep: every window queried once more when its end is `late_sweep`
//! old (default 3 h), so that events the API published later than `poll.lag` are delivered
//! (invariant 3). Each stream's sweep position ([`crate::store::StreamState::swept`]) trails its
//! checkpoint; a sweep window is `max_window` long, ends no later than its targets' checkpoints,
//! and goes through the engine's dedupe keys ([`crate::engine::Streams::begin_sweep`], keys kept
//! for `late_sweep + max_window`), so only what the first query missed reaches a sink and nothing
//! is delivered twice (invariant 2). It asks the budget after steady polls and before backlog
//! (invariant 4), backs off on its own when its window fails (invariant 6), and never moves a
//! checkpoint. What it costs and finds is in status (`late_sweep`) and the metrics
//! (`tapfwd_late_sweep_requests_total`, `tapfwd_late_events_total`).

use std::time::Duration;

use super::Poller;
use crate::api::window;
use crate::api::window::Window;
use crate::api::{ApiError, Disposition};
use crate::backoff;
use crate::budget::Budget;
use crate::clock;
use crate::sources::{Context, Next};
use crate::status::LateSweepStatus;
use crate::store::StoreError;

/// The late sweep's next window.
pub(super) enum SweepPlan {
    Fetch {
        window: Window,
        targets: Vec<usize>,
    },
    /// Nothing is old enough before then (or the sweep backs off until then).
    Wait(i64),
    /// Off, or waiting for the first pass to move.
    Idle,
}

/// The late sweep's bookkeeping (its positions are in the streams: `Streams::swept`).
#[derive(Debug, Default)]
pub(super) struct Sweep {
    /// Consecutive failed sweep windows: the sweep's own backoff.
    pub(super) attempts: u32,
    /// Unix seconds before which no sweep window is asked for.
    pub(super) retry_at: i64,
    /// The sweep's own requests in the rolling 24 hours (each is also in the tenant's budget).
    pub(super) budget: Budget,
    /// Sweep windows completed, events they received and events they found late, since start.
    pub(super) windows: u64,
    pub(super) events_fetched: u64,
    pub(super) found: u64,
    /// Seconds of windows the sweep skipped because it fell further behind than the dedupe keys
    /// are kept, since start.
    pub(super) skipped_seconds: i64,
    /// Why the last sweep window failed; `None` once one works.
    pub(super) last_error: Option<String>,
    /// When the next sweep window is due, as last planned (unix seconds).
    pub(super) next_at: Option<i64>,
}

/// The store key of a tenant's sweep requests (a budget under `b/`).
pub(super) fn sweep_budget_key(tenant: &str) -> String {
    format!("{tenant}:late_sweep")
}

impl Poller {
    /// The late sweep's next window for the streams `ready`: `max_window` long, from the lowest
    /// sweep position, once its end is `late_sweep` old (plus this tenant's phase, so tenants do
    /// not sweep at one instant) and its targets' checkpoints are past it. A stream whose sweep
    /// fell behind the dedupe keys it keeps (or the API's horizon) is first moved up to them,
    /// with a warning: sweeping there could deliver events twice (or loop on 400).
    pub(super) fn plan_sweep(
        &mut self,
        ctx: &Context,
        now: i64,
        ready: &[usize],
    ) -> Result<SweepPlan, StoreError> {
        let plan = self.plan_sweep_at(ctx, now, ready)?;
        self.sweep.next_at = match &plan {
            SweepPlan::Fetch { .. } => Some(now),
            SweepPlan::Wait(t) => Some(*t),
            SweepPlan::Idle => None,
        };
        Ok(plan)
    }

    fn plan_sweep_at(
        &mut self,
        ctx: &Context,
        now: i64,
        ready: &[usize],
    ) -> Result<SweepPlan, StoreError> {
        let Some(age) = self.sweep_age else {
            return Ok(SweepPlan::Idle);
        };
        if now < self.sweep.retry_at {
            return Ok(SweepPlan::Wait(self.sweep.retry_at));
        }
        // The API's horizon too (after a long stop the first pass was clamped into it).
        let earliest = window::earliest_within(
            self.config.product().horizon_secs(),
            now,
            self.horizon_margin,
        );
        for &i in ready {
            let (swept, kept_from) = (
                self.streams.swept(i),
                clock::ceil_minute(self.streams.keys_kept_from(i)).max(earliest),
            );
            if swept < kept_from {
                self.streams.skip_sweep(i, kept_from, &ctx.store)?;
                self.sweep.skipped_seconds += kept_from - swept;
                tracing::warn!(from = %clock::rfc3339(swept), to = %clock::rfc3339(kept_from),
                    "the late sweep fell further behind than the dedupe keys are kept; this span is not swept");
            }
        }
        let length = ctx.poll.max_window.as_secs() as i64;
        let due = |swept: i64| swept + length + age + self.phase;
        let mut waits = None::<i64>;
        let mut start = None::<i64>;
        for &i in ready {
            let swept = self.streams.swept(i);
            if swept + length > self.streams.position(i) {
                // The first pass has not fetched this far yet; it moves on by itself.
                continue;
            }
            if due(swept) > now {
                waits = Some(waits.map_or(due(swept), |w| w.min(due(swept))));
            } else {
                start = Some(start.map_or(swept, |s| s.min(swept)));
            }
        }
        let Some(start) = start else {
            return Ok(waits.map_or(SweepPlan::Idle, SweepPlan::Wait));
        };
        let cap = ready
            .iter()
            .map(|&i| self.streams.swept(i))
            .filter(|&s| s > start)
            .min();
        let mut end = start + length;
        if let Some(cap) = cap.filter(|&c| c - start >= window::MIN_WINDOW_SECS) {
            end = end.min(cap);
        }
        let targets = ready
            .iter()
            .copied()
            .filter(|&i| self.streams.swept(i) == start && self.streams.position(i) >= end)
            .collect();
        Ok(SweepPlan::Fetch {
            window: Window { start, end },
            targets,
        })
    }

    /// Bookkeeping after a sweep window reached at least one sink.
    pub(super) fn sweep_done(&mut self, ctx: &Context, now: i64) -> Next {
        self.sweep.windows += 1;
        self.sweep.attempts = 0;
        self.sweep.retry_at = 0;
        self.sweep.last_error = None;
        if let Err(e) = self.api_answered(ctx) {
            return self.store_failed(ctx, now, e);
        }
        Next::Now
    }

    /// A sweep window failed in a way that is its own (not the credentials, not the quota): it
    /// backs off on its own, and polling goes on meanwhile.
    pub(super) fn sweep_failed(
        &mut self,
        ctx: &Context,
        now: i64,
        window: Window,
        e: ApiError,
    ) -> Next {
        let wait = match e.disposition() {
            Disposition::Rejected => ctx.poll.max_backoff,
            _ => backoff::delay(
                self.sweep.attempts,
                Duration::from_secs(5),
                ctx.poll.max_backoff,
            ),
        };
        let message = e.to_string();
        tracing::warn!(window = %window.interval_param(), error = %message, retry_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())), "late sweep window failed; retrying");
        self.sweep.attempts = self.sweep.attempts.saturating_add(1);
        self.sweep.retry_at = now + wait.as_secs().max(1) as i64;
        self.sweep.last_error = Some(message);
        Next::Now
    }

    /// The late sweep's part of the status (none while it is off).
    pub(super) fn late_sweep_status(&self, now: i64) -> Option<LateSweepStatus> {
        let age = self.sweep_age?;
        let swept_to = (0..self.streams.len()).map(|i| self.streams.swept(i)).min();
        let mut budget = self.sweep.budget.clone();
        Some(LateSweepStatus {
            age_seconds: age,
            swept_to: swept_to.map(clock::rfc3339),
            requests_24h: budget.used(now),
            windows: self.sweep.windows,
            events_fetched: self.sweep.events_fetched,
            events_found_late: self.sweep.found,
            skipped_seconds: self.sweep.skipped_seconds,
            last_error: self.sweep.last_error.clone(),
            next_at: self.sweep.next_at.map(clock::rfc3339),
        })
    }
}
