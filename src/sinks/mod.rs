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

use crate::event::Batch;
use crate::secret::Env;
use crate::store::{Store, StoreError};

pub mod file;
pub mod http;
pub mod http_common;
pub mod kafka;
pub mod logscale;
pub mod sentinel;
pub mod splunk_hec;
pub mod syslog;

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

/// `[sinks.NAME]`: one destination. `type` selects the kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SinkConfig {
    /// Newline-delimited JSON in a local file.
    File(file::FileConfig),
    /// Syslog over UDP, TCP, TLS or the local Unix socket.
    Syslog(syslog::SyslogConfig),
    /// A Kafka topic (librdkafka idempotent producer).
    Kafka(kafka::KafkaConfig),
    /// Batches POSTed to any HTTP endpoint as NDJSON or a JSON array.
    Http(http::HttpConfig),
    /// Splunk HTTP Event Collector.
    SplunkHec(splunk_hec::SplunkHecConfig),
    /// CrowdStrike Falcon LogScale (Humio), structured or HEC ingest API.
    #[serde(rename = "logscale")]
    LogScale(logscale::LogScaleConfig),
    /// Microsoft Sentinel through the Azure Monitor Logs Ingestion API.
    Sentinel(sentinel::SentinelConfig),
}

impl SinkConfig {
    /// Checks the sink's settings without I/O.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            SinkConfig::File(c) => c.validate(),
            SinkConfig::Syslog(c) => c.validate(),
            SinkConfig::Kafka(c) => c.validate(),
            SinkConfig::Http(c) => c.validate(),
            SinkConfig::SplunkHec(c) => c.validate(),
            SinkConfig::LogScale(c) => c.validate(),
            SinkConfig::Sentinel(c) => c.validate(),
        }
    }

    /// The kind, as written in `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::File(_) => "file",
            SinkConfig::Syslog(_) => "syslog",
            SinkConfig::Kafka(_) => "kafka",
            SinkConfig::Http(_) => "http",
            SinkConfig::SplunkHec(_) => "splunk_hec",
            SinkConfig::LogScale(_) => "logscale",
            SinkConfig::Sentinel(_) => "sentinel",
        }
    }
}

/// Builds the sink `name` from its config. Sinks read their secrets through `env` (or a file) and
/// their CA file here.
pub fn build(name: &str, config: &SinkConfig, env: Env<'_>) -> Result<Arc<dyn Sink>, SinkError> {
    Ok(match config {
        SinkConfig::File(c) => Arc::new(file::FileSink::new(name, c)),
        SinkConfig::Syslog(c) => Arc::new(syslog::SyslogSink::new(name, c)?),
        SinkConfig::Kafka(c) => Arc::new(kafka::KafkaSink::new(name, c, env)?),
        SinkConfig::Http(c) => Arc::new(http::HttpSink::new(name, c, env)?),
        SinkConfig::SplunkHec(c) => Arc::new(splunk_hec::SplunkHecSink::new(name, c, env)?),
        SinkConfig::LogScale(c) => Arc::new(logscale::LogScaleSink::new(name, c, env)?),
        SinkConfig::Sentinel(c) => Arc::new(sentinel::SentinelSink::new(name, c, env)?),
    })
}

/// Writes the envelope every line-oriented sink uses:
/// `{"tenant":"acme","eventType":"messagesDelivered","event":RAW}`. Tenant ids are validated to
/// characters that need no JSON escaping, and the event's bytes go in untouched (invariant 5).
pub fn write_envelope(out: &mut Vec<u8>, tenant: &str, kind: crate::event::EventKind, raw: &[u8]) {
    write_envelope_enriched(out, tenant, kind, raw, None);
}

/// [`write_envelope`] with the event's enrichment ([`Batch::enrichment`]) after the event:
/// `{"tenant":"acme","eventType":"messagesDelivered","event":RAW,"threats":{…}}`. Without
/// enrichment the line is byte for byte [`write_envelope`]'s.
pub fn write_envelope_enriched(
    out: &mut Vec<u8>,
    tenant: &str,
    kind: crate::event::EventKind,
    raw: &[u8],
    enrichment: Option<&[u8]>,
) {
    out.extend_from_slice(b"{\"tenant\":\"");
    out.extend_from_slice(tenant.as_bytes());
    out.extend_from_slice(b"\",\"eventType\":\"");
    out.extend_from_slice(kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"event\":");
    out.extend_from_slice(raw);
    if let Some(members) = enrichment.filter(|m| !m.is_empty()) {
        out.push(b',');
        out.extend_from_slice(members);
    }
    out.push(b'}');
}
