//! The TAP SIEM poller's choice of its next window, in the budget's order (invariant 4): a steady
//! poll first, then the late sweep's window, then backlog; when none may be fetched, the earliest
//! instant at which one may (its window due, a sink's retry, budget released).

use super::{Poller, SweepPlan};
use crate::api::window::{self, Cadence, Plan, Window};
use crate::budget::Demand;
use crate::clock;
use crate::sources::{Context, Next};
use crate::status::TenantState;

/// Which query of a window a fetch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pass {
    /// The first: steady polling or backlog. `swept`: the window is already as old as the late
    /// sweep's age (or the sweep is off), so it needs no second query.
    First { demand: Demand, swept: bool },
    /// The late sweep's second query.
    Sweep,
}

/// What to fetch next.
pub(super) struct Job {
    pub(super) window: Window,
    pub(super) pass: Pass,
    /// The streams it goes to.
    pub(super) targets: Vec<usize>,
}

/// The first pass's next window (before the budget is asked).
pub(super) enum FirstPlan {
    Fetch {
        window: Window,
        demand: Demand,
        targets: Vec<usize>,
    },
    /// Caught up until then.
    Wait(i64),
}

impl Poller {
    pub(super) fn cadence(ctx: &Context) -> Cadence {
        Cadence {
            interval: ctx.poll.interval.as_secs() as i64,
            lag: ctx.poll.lag.as_secs() as i64,
            max_window: ctx.poll.max_window.as_secs() as i64,
        }
    }

    /// The next window to fetch, by the budget's order: a steady poll, then the late sweep, then
    /// backlog. When none may be fetched now (caught up, every sink backing off, budget spent),
    /// when to look again.
    pub(super) fn next_job(&mut self, ctx: &Context, now: i64) -> Result<Job, Next> {
        let ready = self.streams.ready(now);
        if ready.is_empty() {
            return Err(Next::At(self.streams.next_retry().unwrap_or(now + 60)));
        }
        let limit = self.config.requests_per_day().unwrap_or_default();
        let steady_per_day = (86_400 / ctx.poll.interval.as_secs().max(60)) as u32;
        let first = self.plan_first(ctx, now, &ready);
        let mut first_job = None;
        let mut wait = match first {
            FirstPlan::Fetch {
                window,
                demand,
                targets,
            } => {
                let swept = self.sweep_age.map_or(true, |age| window.end <= now - age);
                let job = Job {
                    window,
                    pass: Pass::First { demand, swept },
                    targets,
                };
                if demand == Demand::Steady
                    && self.budget.allows(now, demand, limit, steady_per_day)
                {
                    return Ok(job);
                }
                first_job = Some(job);
                None
            }
            FirstPlan::Wait(t) => Some(t),
        };
        let mut sweep_wants_budget = false;
        match self.plan_sweep(ctx, now, &ready) {
            Err(e) => return Err(self.store_failed(ctx, now, e)),
            Ok(SweepPlan::Fetch { window, targets }) => {
                if self
                    .budget
                    .allows(now, Demand::Sweep, limit, steady_per_day)
                {
                    return Ok(Job {
                        window,
                        pass: Pass::Sweep,
                        targets,
                    });
                }
                sweep_wants_budget = true;
            }
            Ok(SweepPlan::Wait(t)) => wait = Some(wait.map_or(t, |w| w.min(t))),
            Ok(SweepPlan::Idle) => {}
        }
        let first_waits = first_job.is_some();
        if let Some(job) = first_job {
            let backlog = matches!(
                job.pass,
                Pass::First {
                    demand: Demand::Backlog,
                    ..
                }
            );
            if backlog
                && self
                    .budget
                    .allows(now, Demand::Backlog, limit, steady_per_day)
            {
                return Ok(job);
            }
        }
        if first_waits || sweep_wants_budget {
            if first_waits {
                self.state = TenantState::WaitingForBudget;
            }
            let release = self
                .budget
                .next_release(now)
                .unwrap_or(now + 300)
                .max(now + 1);
            tracing::debug!(until = %clock::rfc3339(release), "request budget spent; waiting");
            wait = Some(wait.map_or(release, |w| w.min(release)));
        }
        let blocked = self.streams.blocked_until(now);
        let at = match (wait, blocked) {
            (Some(w), Some(b)) => w.min(b),
            (w, b) => w.or(b).unwrap_or(now + 60),
        };
        Err(Next::At(at.max(now + 1)))
    }

    /// The first pass's next window for the streams `ready`, or when it is due; sets the
    /// tenant's state when it is caught up.
    pub(super) fn plan_first(&mut self, ctx: &Context, now: i64, ready: &[usize]) -> FirstPlan {
        let Some(start) = ready.iter().map(|&i| self.streams.position(i)).min() else {
            return FirstPlan::Wait(now + 60);
        };
        let cap = ready
            .iter()
            .map(|&i| self.streams.position(i))
            .filter(|&c| c > start)
            .min();
        match window::plan(start, now, cap, Self::cadence(ctx), self.phase) {
            Plan::WaitUntil(t) => {
                if self.state == TenantState::CatchingUp && self.windows_fetched > 0 {
                    tracing::info!(
                        windows = self.windows_fetched,
                        events = self.events_fetched,
                        "caught up"
                    );
                }
                self.state = if self.record.failed {
                    TenantState::Failed
                } else if self.streams.any_failing() {
                    TenantState::Degraded
                } else {
                    TenantState::Ok
                };
                FirstPlan::Wait(t)
            }
            Plan::Fetch { window, demand } => FirstPlan::Fetch {
                window,
                demand,
                targets: ready
                    .iter()
                    .copied()
                    .filter(|&i| self.streams.position(i) == start)
                    .collect(),
            },
        }
    }
}
