//! Destinations: the [`Sink`] trait, the `[sinks.NAME]` config enum, and one module per protocol.
//!
//! A sink is shared by every tenant that names it. [`Sink::deliver`] gets a batch of one tenant's
//! events and a [`Commit`] callback: the sink calls it exactly once, only after every event of
//! the batch is durably accepted by the destination (each sink's module header says what that
//! means for it), and returns its result. That order is invariant 1; the callback records the
//! batch's dedupe keys (invariant 2) and, for sinks with a position such as the file sink, the new
//! position. A sink that serialises writes (the file) calls it inside its own lock, so positions
//! are committed in the order the bytes were written.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use crate::event::{Batch, EventKind};
use crate::secret::Env;
use crate::store::{Store, StoreError};

pub mod encode;
pub mod file;
pub mod guid;
pub mod http;
pub mod http_common;
pub mod kafka;
pub mod logscale;
pub mod sentinel;
pub mod splunk_hec;
pub mod syslog;

tokio::task_local! {
    /// Set while a delivery probes a sink that is already failing (see [`single_attempt`]).
    static SINGLE_ATTEMPT: ();
}

/// Runs `delivery` as one attempt: a sink that retries within a delivery (the HTTP sinks'
/// `retry.max_time`) gives up after its first failed try. For a sink already known to be failing,
/// whose caller spaces the tries with its own backoff: the retries would only hold the batch, and
/// every other sink that waits for it, for `retry.max_time` at each try.
pub async fn single_attempt<F: std::future::Future>(delivery: F) -> F::Output {
    SINGLE_ATTEMPT.scope((), delivery).await
}

/// Whether the running delivery is a [`single_attempt`].
pub fn is_single_attempt() -> bool {
    SINGLE_ATTEMPT.try_with(|_| ()).is_ok()
}

/// Records a delivered batch; `Some(position)` for sinks that have one.
pub type Commit<'a> = Box<dyn FnOnce(Option<u64>) -> Result<(), StoreError> + Send + 'a>;

/// Why a batch was not delivered. Every variant holds the checkpoint; the poller retries with
/// backoff, and a permanent failure is shown as such in logs, status and metrics.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The destination is unreachable or busy (connection refused, timeout, 429, 5xx).
    #[error("{0}")]
    Unavailable(String),
    /// The destination refused the data or the credentials; it will refuse again until someone
    /// changes something (a bad token, a 4xx, a disk that is full).
    #[error("{0}")]
    Rejected(String),
    /// The batch was delivered but recording it failed.
    #[error("recording delivery failed: {0}")]
    Commit(#[from] StoreError),
}

impl SinkError {
    pub fn is_retryable(&self) -> bool {
        match self {
            SinkError::Unavailable(_) => true,
            SinkError::Rejected(_) | SinkError::Commit(_) => false,
        }
    }

    /// A bounded label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            SinkError::Unavailable(_) => "unavailable",
            SinkError::Rejected(_) => "rejected",
            SinkError::Commit(_) => "commit",
        }
    }
}

/// A destination for events.
#[async_trait]
pub trait Sink: Send + Sync {
    /// The sink's name from the config (`[sinks.NAME]`).
    fn name(&self) -> &str;

    /// Prepares the sink before the first delivery (the file sink cuts an uncommitted tail).
    async fn start(&self, _store: &Store) -> Result<(), SinkError> {
        Ok(())
    }

    /// Delivers every event of `batch` for `tenant`, then calls `commit` once and returns its
    /// result. `batch` is never empty.
    async fn deliver(
        &self,
        tenant: &str,
        batch: &Batch,
        commit: Commit<'_>,
    ) -> Result<(), SinkError>;
}

/// Declares every sink kind once: its `type` name, its config, and how it is built. From that
/// list come the `[sinks.NAME]` config enum, its validation, its name and [`build`], so adding a
/// sink is its module and one line in the list below.
macro_rules! sink_kinds {
    ($(
        $(#[$doc:meta])*
        $kind:literal => $variant:ident($config:ty),
            |$name:ident, $c:ident, $env:ident| $build:expr;
    )*) => {
        /// `[sinks.NAME]`: one destination. `type` selects the kind.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(tag = "type")]
        pub enum SinkConfig {
            $( $(#[$doc])* #[serde(rename = $kind)] $variant($config), )*
        }

        impl SinkConfig {
            /// Checks the sink's settings without I/O.
            pub fn validate(&self) -> Result<(), String> {
                match self {
                    $( SinkConfig::$variant(c) => c.validate(), )*
                }
            }

            /// The kind, as written in `type`.
            pub fn kind(&self) -> &'static str {
                match self {
                    $( SinkConfig::$variant(_) => $kind, )*
                }
            }
        }

        /// Builds the sink `name` from its config. Sinks read their secrets through `env` (or a
        /// file) and their CA file here.
        pub fn build(name: &str, config: &SinkConfig, env: Env<'_>) -> Result<Arc<dyn Sink>, SinkError> {
            #[allow(unused_variables)]
            Ok(match config {
                $( SinkConfig::$variant(c) => {
                    let ($name, $c, $env) = (name, c, env);
                    Arc::new($build)
                } )*
            })
        }
    };
}

sink_kinds! {
    /// Newline-delimited JSON in a local file.
    "file" => File(file::FileConfig), |name, c, env| file::FileSink::new(name, c);
    /// Syslog over UDP, TCP, TLS or the local Unix socket.
    "syslog" => Syslog(syslog::SyslogConfig), |name, c, env| syslog::SyslogSink::new(name, c)?;
    /// A Kafka topic (librdkafka idempotent producer).
    "kafka" => Kafka(kafka::KafkaConfig), |name, c, env| kafka::KafkaSink::new(name, c, env)?;
    /// Batches POSTed to any HTTP endpoint as NDJSON or a JSON array.
    "http" => Http(http::HttpConfig), |name, c, env| http::HttpSink::new(name, c, env)?;
    /// Splunk HTTP Event Collector.
    "splunk_hec" => SplunkHec(splunk_hec::SplunkHecConfig),
        |name, c, env| splunk_hec::SplunkHecSink::new(name, c, env)?;
    /// CrowdStrike Falcon LogScale (Humio), structured or HEC ingest API.
    "logscale" => LogScale(logscale::LogScaleConfig),
        |name, c, env| logscale::LogScaleSink::new(name, c, env)?;
    /// Microsoft Sentinel through the Azure Monitor Logs Ingestion API.
    "sentinel" => Sentinel(sentinel::SentinelConfig),
        |name, c, env| sentinel::SentinelSink::new(name, c, env)?;
}

impl SinkConfig {
    /// Why this sink can never take events of `kind`, if it cannot (a Sentinel sink with the
    /// solution layout has no stream for People snapshots or PoD audit events; a LogScale sink
    /// with a token per type and none of its own has no token for a type it does not list). `tapfwd check`
    /// asks it for every kind each tenant's sources send the sink, naming the tenant's key.
    pub fn refuses(&self, kind: EventKind) -> Option<String> {
        match self {
            SinkConfig::Sentinel(c) => c.refuses(kind),
            SinkConfig::LogScale(c) => c.refuses(kind),
            _ => None,
        }
    }
}
