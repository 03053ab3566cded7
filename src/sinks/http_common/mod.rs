//! The plumbing every HTTP sink shares: the client (rustls, optional extra CA, verification
//! always on), the bounded retry loop that honours `Retry-After`, status classification, gzip,
//! splitting a batch into request bodies, and error texts that never carry a secret.
//!
//! The sinks ([`super::http`], [`super::splunk_hec`], [`super::logscale`], [`super::sentinel`])
//! only encode events and read their destination's replies; how a request is sent, retried and
//! judged lives here once. Their common settings are read through one view ([`HttpOptions`]),
//! and their deliveries end in one pipeline ([`post_all`]). Retries inside one `deliver` call
//! are bounded by [`RetryConfig::max_time`]; after that the sink returns
//! [`SinkError::Unavailable`](super::SinkError::Unavailable) and the poller holds the checkpoint
//! and tries again later with its own backoff (invariant 1). Every error text goes through
//! [`scrub`] with the sink's secrets, so a destination that echoes a token back cannot leak it
//! into a log line (invariant 7).
//!
//! - [`options`]: the shared settings view and its validation.
//! - [`client`]: the client, URLs, header-safe secrets.
//! - [`pack`]: request bodies within the limits, gzip.
//! - [`pipeline`]: gzip → post with retries, body after body.
//! - [`reply`]: sending, status classification, `Retry-After`, error texts, scrubbing.
//! - [`retry`]: `[sinks.NAME.retry]` and the bounded retry loop.

pub mod client;
pub mod options;
pub mod pack;
pub mod pipeline;
pub mod reply;
pub mod retry;

pub use client::{check_header_secret, check_url, display_url, join};
pub(crate) use options::plain_http_options;
pub use options::{
    default_max_batch_bytes, default_max_batch_events, default_timeout, HttpOptions,
};
pub use pack::{gzip, Body, Oversize, Packer};
pub use pipeline::post_all;
pub use reply::{
    attempt, classify, error_text, judge, rejected, retry_after, scrub, send, transport_retry,
    Reply, StatusClass,
};
pub use retry::{with_retries, RetryConfig, Step};
