//! Retries within one delivery: `[sinks.NAME.retry]` ([`RetryConfig`]), what one attempt came to
//! ([`Step`]), and the bounded loop that retries it ([`with_retries`]).
//!
//! Invariant 1: the loop is bounded by [`RetryConfig::max_time`], waits included; after that the
//! sink returns [`SinkError::Unavailable`] and the poller holds the checkpoint and tries again
//! later with its own backoff. Waits come from the one backoff rule ([`backoff::delay`]) and are
//! never shorter than the destination's `Retry-After`.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::backoff;
use crate::sinks::SinkError;

/// `[sinks.NAME.retry]`: how one delivery retries a busy or unreachable destination before it
/// gives up and leaves the batch to the poller (which holds the checkpoint and tries again later).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First wait between attempts; later waits grow exponentially with jitter. Default `1s`.
    #[serde(with = "humantime_serde", default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest wait between two attempts. Default `10s`.
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Longest time spent retrying within one delivery, waits included. A `Retry-After` that
    /// points past it ends the delivery at once. Default `30s`.
    #[serde(with = "humantime_serde", default = "default_max_time")]
    pub max_time: Duration,
}

fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}
fn default_max_time() -> Duration {
    Duration::from_secs(30)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_time: default_max_time(),
        }
    }
}

impl RetryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.initial_backoff.is_zero() || self.initial_backoff > self.max_backoff {
            return Err(
                "retry.initial_backoff must be above zero and at most retry.max_backoff".into(),
            );
        }
        Ok(())
    }
}

/// What one attempt came to.
pub enum Step<T> {
    /// Done; stop.
    Done(T),
    /// Worth another attempt after at least `after` (a `Retry-After`) and the backoff.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Not worth another attempt.
    Fail(SinkError),
}

impl<T> Step<T> {
    /// The same step with `f` applied to what a done attempt produced.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Step<U> {
        match self {
            Step::Done(v) => Step::Done(f(v)),
            Step::Retry { reason, after } => Step::Retry { reason, after },
            Step::Fail(e) => Step::Fail(e),
        }
    }
}

/// Runs `attempt` until it is done or fails, retrying with [`backoff::delay`] (and no sooner than
/// a `Retry-After`) for at most `retry.max_time`; then [`SinkError::Unavailable`] with the last
/// reason. Inside [`crate::sinks::single_attempt`], the first retryable failure ends it.
pub async fn with_retries<T, F, Fut>(
    sink: &str,
    retry: &RetryConfig,
    mut attempt: F,
) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let started = Instant::now();
    let mut n: u32 = 0;
    loop {
        let (reason, after) = match attempt().await {
            Step::Done(v) => return Ok(v),
            Step::Fail(e) => return Err(e),
            Step::Retry { reason, after } => (reason, after),
        };
        let wait = backoff::delay(n, retry.initial_backoff, retry.max_backoff)
            .max(after.unwrap_or_default());
        n += 1;
        if crate::sinks::is_single_attempt() {
            return Err(SinkError::Unavailable(format!(
                "{reason} (one attempt, the sink was already failing; will retry later)"
            )));
        }
        if started.elapsed() + wait > retry.max_time {
            return Err(SinkError::Unavailable(format!(
                "{reason} (gave up after {n} attempt{} in {}; will retry later)",
                if n == 1 { "" } else { "s" },
                humantime::format_duration(Duration::from_millis(
                    started.elapsed().as_millis() as u64
                ))
            )));
        }
        tracing::warn!(sink = %sink, attempt = n, wait_ms = wait.as_millis() as u64, error = %reason, "retrying");
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn config() -> RetryConfig {
        RetryConfig {
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_time: Duration::from_secs(30),
        }
    }

    async fn count_attempts(retry: &RetryConfig, fail_first: u32) -> (Result<u32, SinkError>, u32) {
        let tries = AtomicU32::new(0);
        let result = with_retries("s", retry, || {
            let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n <= fail_first {
                    Step::Retry {
                        reason: format!("503 on try {n}"),
                        after: None,
                    }
                } else {
                    Step::Done(n)
                }
            }
        })
        .await;
        (result, tries.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn retries_until_done_within_max_time() {
        let (result, tries) = count_attempts(&config(), 3).await;
        assert_eq!(result.unwrap(), 4);
        assert_eq!(tries, 4);
    }

    #[tokio::test]
    async fn a_single_attempt_gives_up_after_its_first_failure() {
        let retry = config();
        let (result, tries) = crate::sinks::single_attempt(count_attempts(&retry, 3)).await;
        assert_eq!(tries, 1);
        let err = result.unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("503 on try 1"), "{err}");
        assert!(err.to_string().contains("one attempt"), "{err}");
        // Outside the scope the same delivery retries again.
        assert!(!crate::sinks::is_single_attempt());
        let (result, tries) = count_attempts(&retry, 3).await;
        assert_eq!((result.unwrap(), tries), (4, 4));
    }

    #[tokio::test]
    async fn a_single_attempt_that_succeeds_is_done() {
        let (result, tries) = crate::sinks::single_attempt(count_attempts(&config(), 0)).await;
        assert_eq!((result.unwrap(), tries), (1, 1));
    }
}
