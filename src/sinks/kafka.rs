//! The Kafka sink: one record per event, produced by librdkafka with `enable.idempotence=true`
//! and `acks=all`.
//!
//! Record: value = the event's raw JSON exactly as the API sent it (invariant 5), or with
//! `envelope = true` the file sink's line, `{"tenant":..,"eventType":..,"event":RAW}`; headers
//! `tenant` and `eventType`, always, `customer` for an Essentials child organisation's event,
//! `enrichment` (`{"threats":{…},"campaigns":{…}}`) for an
//! event threat enrichment found something for (also in the envelope, after the event), and with
//! `event_type_header = true` `event_type`, the event type in snake case (`clicks_blocked`), which
//! Elastic's Proofpoint Essentials integration reads (docs/siems.md); key =
//! the tenant id (default), the event's `GUID`, the customer (else the tenant), or none;
//! topic = `topic` with `{tenant}` and `{event_type}` filled in.
//!
//! **Delivered** (invariant 1) means every record of the batch has a successful delivery
//! report: the partition leader wrote it and, with `acks=all`, every in-sync replica has it. The
//! whole batch is enqueued, then every delivery report is awaited; only when all succeeded is
//! the batch committed. Any failure holds the checkpoint and the poller sends the batch again
//! later. The idempotent producer removes duplicates from its own retries; across a failed
//! batch and its retry, the sink remembers (in memory) which records Kafka acknowledged and
//! sends only the others. What remains at-least-once: a record whose delivery report said
//! "failed" (typically `message_timeout` expired) although the broker did write it, and a
//! batch retried after a restart of the daemon.
//!
//! A producer that hits a fatal error, or whose records time out (an idempotent producer whose
//! id the cluster lost keeps timing out), is replaced by a new one before the next batch.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::encode::{write_envelope_with, Beside};
use super::{Commit, Sink, SinkError};
use crate::event::{Batch, EventKey, EventKind};
use crate::secret::{Env, SecretSource};

/// `brokers` as one comma-separated string or a list of `host:port`, kept as the string.
fn brokers_text_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Brokers {
        Text(String),
        List(Vec<String>),
    }
    match Brokers::deserialize(d) {
        Ok(Brokers::Text(t)) => Ok(t),
        Ok(Brokers::List(l)) => Ok(l.join(",")),
        Err(_) => Err(serde::de::Error::custom(
            "expected \"host:port,host:port\" or a list of \"host:port\"",
        )),
    }
}

/// `type = "kafka"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `"host:port,host:port"` as librdkafka's `bootstrap.servers` takes them, or
    /// a list `["host:port", "host:port"]` (the form other shippers' configs use). Required.
    #[serde(deserialize_with = "brokers_text_or_list")]
    pub brokers: String,
    /// Topic name template; `{tenant}` and `{event_type}` are replaced (`tap.{tenant}`).
    /// Required. The result must be a valid topic name (`[A-Za-z0-9._-]`, at most 249 bytes).
    pub topic: String,
    /// Record key: `tenant` (default; a tenant's events stay in order in one partition),
    /// `guid` (the event's `GUID`; no key when it has none), `customer` (the Essentials
    /// `customerEid`, else the tenant) or `none`.
    #[serde(default)]
    pub key: KeyMode,
    /// Send the envelope `{"tenant":..,"eventType":..,"event":RAW}` instead of the raw event.
    /// Default `false`.
    #[serde(default)]
    pub envelope: bool,
    /// Add the header `event_type` holding the event type in snake case (`clicks_blocked`,
    /// `messages_delivered`, …): the field Elastic's Proofpoint Essentials integration expects,
    /// which an Elastic Agent processor folds into the event it parses (docs/siems.md). Beside the
    /// event, never in it. Default `false`.
    #[serde(default)]
    pub event_type_header: bool,
    /// `none` (default), `gzip`, `snappy`, `lz4` or `zstd` (`zstd` needs a librdkafka built with
    /// zstd, which this build is not; it is refused).
    #[serde(default)]
    pub compression: Compression,
    /// How long librdkafka keeps trying to deliver a record before reporting it failed
    /// (`message.timeout.ms`), in humantime. Default `60s`.
    #[serde(with = "humantime_serde", default = "default_message_timeout")]
    pub message_timeout: Duration,
    /// Extra librdkafka properties (`"security.protocol" = "SASL_SSL"`, `"sasl.mechanism" =
    /// "SCRAM-SHA-512"`, `"sasl.username" = "..."`, ...). Values are never logged. The sink
    /// owns `bootstrap.servers`, `enable.idempotence`, `acks`, `compression.codec` and
    /// `message.timeout.ms`; secrets go in `sasl_password_env`/`sasl_password_file`, not here.
    /// `log_level` (0-7, syslog's levels; default 3, errors) is how much librdkafka itself writes
    /// to stderr, outside tapfwd's log (a broker it cannot reach: `FAIL … Connection refused`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Name of an environment variable holding `sasl.password`.
    #[serde(default)]
    pub sasl_password_env: Option<String>,
    /// Path of a file whose content (trailing newline removed) is `sasl.password`.
    #[serde(default)]
    pub sasl_password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// The tenant id: a tenant's records stay in order on one partition.
    #[default]
    Tenant,
    /// The event's `GUID`.
    Guid,
    /// The Essentials child organisation (`customerEid`), else the tenant id: one client's
    /// records stay together.
    Customer,
    None,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

fn default_message_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Properties the sink sets itself.
const OWNED: [&str; 5] = [
    "bootstrap.servers",
    "enable.idempotence",
    "acks",
    "compression.codec",
    "message.timeout.ms",
];
/// Properties that hold secrets and must not sit in plain `options`.
const SECRET_OPTIONS: [&str; 4] = [
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
];

impl KafkaConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err("brokers is empty".into());
        }
        // Every kind and a worst-case tenant id must give a valid topic name.
        for kind in EventKind::ALL {
            let topic = render_topic(&self.topic, &"t".repeat(64), kind);
            if let Some(problem) = topic_problem(&topic) {
                return Err(format!("topic `{}`: {problem}", self.topic));
            }
        }
        let rest = self
            .topic
            .replace("{tenant}", "")
            .replace("{event_type}", "");
        if rest.contains('{') || rest.contains('}') {
            return Err(format!(
                "topic `{}`: only {{tenant}} and {{event_type}} may be used",
                self.topic
            ));
        }
        if self.compression == Compression::Zstd {
            return Err(
                "compression = \"zstd\" needs librdkafka built with zstd (rdkafka feature `zstd`), which this build is not; use lz4, snappy or gzip"
                    .into(),
            );
        }
        if self.message_timeout < Duration::from_secs(1) {
            return Err("message_timeout must be at least 1s".into());
        }
        for k in self.options.keys() {
            if OWNED.contains(&k.as_str()) {
                return Err(format!(
                    "options.\"{k}\" is set by the sink; use its own keys"
                ));
            }
            if SECRET_OPTIONS.contains(&k.as_str()) {
                return Err(format!(
                    "options.\"{k}\" is a secret: use sasl_password_env or sasl_password_file"
                ));
            }
        }
        if let Some(level) = self.options.get("log_level") {
            log_level(level)?;
        }
        if self.sasl_password_env.is_some() && self.sasl_password_file.is_some() {
            return Err("set at most one of sasl_password_env, sasl_password_file".into());
        }
        Ok(())
    }

    /// The SASL password from `sasl_password_env` or `sasl_password_file`, if either is set.
    fn sasl_password(&self, name: &str, env: Env<'_>) -> Result<Option<SecretString>, SinkError> {
        if self.sasl_password_env.is_none() && self.sasl_password_file.is_none() {
            return Ok(None);
        }
        SecretSource {
            key: &format!("sinks.{name}.sasl_password"),
            inline: None,
            env: self.sasl_password_env.as_deref(),
            file: self.sasl_password_file.as_deref(),
        }
        .resolve(env)
        .map(Some)
        .map_err(|e| SinkError::Rejected(e.to_string()))
    }
}

/// The event type in snake case, as the `event_type` header carries it: for the four SIEM types
/// the values Elastic's Proofpoint Essentials integration routes on. Derived from the kind's
/// `eventType` name (`messagesBlocked` → `messages_blocked`), so a new kind needs nothing here.
pub fn snake_event_type(kind: EventKind) -> &'static str {
    static TABLE: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        EventKind::ALL
            .iter()
            .map(|k| {
                let mut out = String::new();
                for c in k.as_str().chars() {
                    if c.is_ascii_uppercase() {
                        out.push('_');
                        out.push(c.to_ascii_lowercase());
                    } else {
                        out.push(c);
                    }
                }
                &*Box::leak(out.into_boxed_str())
            })
            .collect()
    })[kind.index()]
}

/// librdkafka's log level from `options.log_level`: syslog's 0 (emergencies only) to 7 (debug).
fn log_level(text: &str) -> Result<RDKafkaLogLevel, String> {
    use RDKafkaLogLevel::*;
    match text.trim().parse::<u8>() {
        Ok(n @ 0..=7) => Ok([Emerg, Alert, Critical, Error, Warning, Notice, Info, Debug][n as usize]),
        _ => Err(format!(
            "options.\"log_level\" = \"{text}\": librdkafka's log level is 0 (emergencies) to 7 (debug)"
        )),
    }
}

/// The topic for one tenant and event type.
pub fn render_topic(template: &str, tenant: &str, kind: EventKind) -> String {
    template
        .replace("{tenant}", tenant)
        .replace("{event_type}", kind.as_str())
}

fn topic_problem(topic: &str) -> Option<&'static str> {
    if topic.is_empty() {
        Some("is empty")
    } else if topic.len() > 249 {
        Some("is longer than 249 bytes")
    } else if topic == "." || topic == ".." {
        Some("may not be . or ..")
    } else if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'{' | b'}'))
    {
        Some("may hold only [A-Za-z0-9._-] besides the placeholders")
    } else {
        None
    }
}

/// The event's `GUID`, read with a borrowed parse of its raw JSON.
pub fn guid(raw: &[u8]) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Guid<'a> {
        #[serde(rename = "GUID", borrow, default)]
        guid: Option<Cow<'a, str>>,
    }
    serde_json::from_slice::<Guid<'_>>(raw).ok()?.guid
}

pub struct KafkaSink {
    name: String,
    config: KafkaConfig,
    client: ClientConfig,
    producer: RwLock<Arc<FutureProducer>>,
    /// Per tenant, the events Kafka acknowledged in a batch that failed as a whole. The poller
    /// retries that batch; these are skipped then, and forgotten once it is committed. In
    /// memory only: after a restart, a retried batch is sent whole again.
    acked: std::sync::Mutex<HashMap<String, HashSet<EventKey>>>,
}

/// At most this many acknowledged-but-uncommitted event keys are remembered (16 bytes each).
const MAX_ACKED: usize = 1_000_000;

impl KafkaSink {
    /// Builds the producer (librdkafka connects in the background; a broker that is down does
    /// not stop the daemon from starting). Reads `sasl_password_env`/`sasl_password_file`.
    pub fn new(name: &str, config: &KafkaConfig, env: Env<'_>) -> Result<KafkaSink, SinkError> {
        let mut client = ClientConfig::new();
        for (k, v) in &config.options {
            client.set(k, v);
        }
        client
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.codec", config.compression.as_str())
            .set(
                "message.timeout.ms",
                config.message_timeout.as_millis().to_string(),
            );
        if let Some(secret) = config.sasl_password(name, env)? {
            client.set("sasl.password", secret.expose_secret());
        }
        // rdkafka sets the client's log level after creating it (errors, unless the `log` crate
        // asks for more), over the property: set it where rdkafka reads it.
        if let Some(Ok(level)) = config.options.get("log_level").map(|l| log_level(l)) {
            client.set_log_level(level);
        }
        let producer = create(name, &client)?;
        Ok(KafkaSink {
            name: name.to_string(),
            config: config.clone(),
            client,
            producer: RwLock::new(Arc::new(producer)),
            acked: std::sync::Mutex::new(HashMap::new()),
        })
    }

    fn acked_of(&self, tenant: &str) -> HashSet<EventKey> {
        let acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        acked.get(tenant).cloned().unwrap_or_default()
    }

    fn remember_acked(&self, tenant: &str, keys: Vec<EventKey>) {
        if keys.is_empty() {
            return;
        }
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = acked.values().map(HashSet::len).sum();
        if total + keys.len() > MAX_ACKED {
            // Bounded memory: past this, retries send everything again (at-least-once).
            acked.clear();
        }
        acked.entry(tenant.to_string()).or_default().extend(keys);
    }

    fn forget_acked(&self, tenant: &str, batch: &Batch) {
        let mut acked = self.acked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = acked.get_mut(tenant) {
            for e in &batch.events {
                set.remove(&e.key);
            }
            if set.is_empty() {
                acked.remove(tenant);
            }
        }
    }

    fn producer(&self) -> Arc<FutureProducer> {
        match self.producer.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces a producer that librdkafka declared unusable, or whose records timed out: a
    /// broker that lost the producer's id (a cluster rebuilt from scratch) makes an idempotent
    /// producer time out forever, and a new producer works at once.
    fn renew(&self, used: &Arc<FutureProducer>, timed_out: bool) {
        let why = match used.client().fatal_error() {
            Some((code, reason)) => format!("fatal error {code:?}: {reason}"),
            None if timed_out => "deliveries timed out".to_string(),
            None => return,
        };
        let Ok(fresh) = create(&self.name, &self.client) else {
            return;
        };
        let mut guard = match self.producer.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if Arc::ptr_eq(&guard, used) {
            tracing::warn!(sink = %self.name, reason = %why, "starting a new kafka producer");
            let old = std::mem::replace(&mut *guard, Arc::new(fresh));
            release(old);
        }
    }
}

/// Drops a producer reference; the last one purges and flushes with a timeout, which blocks, so
/// it happens off the runtime.
fn release(producer: Arc<FutureProducer>) {
    if Arc::strong_count(&producer) == 1 {
        tokio::task::spawn_blocking(move || drop(producer));
    }
}

fn create(name: &str, client: &ClientConfig) -> Result<FutureProducer, SinkError> {
    // The error names the property, never its value.
    client.create().map_err(|e| match e {
        KafkaError::ClientConfig(_, _, key, _) => {
            SinkError::Rejected(format!("kafka sink {name}: invalid property `{key}`"))
        }
        other => SinkError::Rejected(format!(
            "kafka sink {name}: cannot create producer: {other}"
        )),
    })
}

/// Whether retrying the same records can succeed without someone changing something.
fn classify(e: &KafkaError, topic: &str) -> SinkError {
    let code = e.rdkafka_error_code();
    let msg = format!("topic {topic}: {e}");
    match code {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::InvalidArgument,
        ) => SinkError::Rejected(msg),
        _ => SinkError::Unavailable(msg),
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(
        &self,
        tenant: &str,
        batch: &Batch,
        commit: Commit<'_>,
    ) -> Result<(), SinkError> {
        let producer = self.producer();
        let topics: Vec<(EventKind, String)> = EventKind::ALL
            .iter()
            .map(|&k| (k, render_topic(&self.config.topic, tenant, k)))
            .collect();
        let topic_of = |k: EventKind| -> &str {
            topics
                .iter()
                .find(|(kind, _)| *kind == k)
                .map_or("", |(_, t)| t.as_str())
        };
        // Records of this batch that Kafka acknowledged in an earlier, failed attempt.
        let earlier: HashSet<EventKey> = self.acked_of(tenant);
        let mut pending: Vec<(DeliveryFuture, &str, EventKey)> = Vec::with_capacity(batch.len());
        let mut acked: Vec<EventKey> = Vec::new();
        let mut awaited = 0;
        let mut first_error: Option<SinkError> = None;
        let mut timed_out = false;
        let mut value = Vec::new();
        for (meta, raw) in batch.iter() {
            if earlier.contains(&meta.key) {
                continue;
            }
            let topic = topic_of(meta.kind);
            let payload: &[u8] = if self.config.envelope {
                value.clear();
                write_envelope_with(&mut value, tenant, meta.kind, raw, Beside::of(batch, meta));
                &value
            } else {
                raw
            };
            let guid_key;
            let key: Option<&[u8]> = match self.config.key {
                KeyMode::Tenant => Some(tenant.as_bytes()),
                KeyMode::Guid => {
                    guid_key = guid(raw);
                    guid_key.as_deref().map(str::as_bytes)
                }
                KeyMode::Customer => Some(batch.customer(meta).unwrap_or(tenant).as_bytes()),
                KeyMode::None => None,
            };
            let mut headers = OwnedHeaders::new_with_capacity(3)
                .insert(Header {
                    key: "tenant",
                    value: Some(tenant.as_bytes()),
                })
                .insert(Header {
                    key: "eventType",
                    value: Some(meta.kind.as_str().as_bytes()),
                });
            if self.config.event_type_header {
                headers = headers.insert(Header {
                    key: "event_type",
                    value: Some(snake_event_type(meta.kind).as_bytes()),
                });
            }
            if let Some(snapshot) = batch.snapshot.as_deref() {
                headers = headers.insert(Header {
                    key: "snapshot",
                    value: Some(snapshot.as_bytes()),
                });
            }
            if let Some(customer) = batch.customer(meta) {
                headers = headers.insert(Header {
                    key: "customer",
                    value: Some(customer.as_bytes()),
                });
            }
            // Enrichment travels beside the event: a header holding `{"threats":{…},…}`.
            let enrichment = batch.enrichment(meta).map(|m| [b"{", m, b"}"].concat());
            if let Some(e) = &enrichment {
                headers = headers.insert(Header {
                    key: "enrichment",
                    value: Some(e.as_slice()),
                });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(topic)
                .payload(payload)
                .headers(headers);
            if let Some(k) = key {
                record = record.key(k);
            }
            loop {
                match producer.send_result(record) {
                    Ok(f) => {
                        pending.push((f, topic, meta.key));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        if awaited < pending.len() {
                            // Our own earlier records free the queue as they are delivered.
                            let (f, t, key) = &mut pending[awaited];
                            match outcome(f.await, t, &mut timed_out) {
                                Ok(()) => acked.push(*key),
                                Err(e) => {
                                    first_error.get_or_insert(e);
                                }
                            }
                            awaited += 1;
                        } else {
                            // The queue is full of other tenants' records: wait for some.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    Err((e, _)) => {
                        first_error.get_or_insert(classify(&e, topic));
                        break;
                    }
                }
            }
            if first_error.is_some() {
                break;
            }
        }
        // Every enqueued record's report is awaited, even after a failure, so none is still in
        // flight when the batch is retried.
        for (f, topic, key) in pending.iter_mut().skip(awaited) {
            match outcome(f.await, topic, &mut timed_out) {
                Ok(()) => acked.push(*key),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            // Remember what Kafka did acknowledge, so the retry of this batch sends only the rest.
            self.remember_acked(tenant, acked);
            self.renew(&producer, timed_out);
            release(producer);
            return Err(e);
        }
        release(producer);
        if let Err(e) = commit(None) {
            // Delivered but not recorded: the retry need not send these again.
            self.remember_acked(tenant, acked);
            return Err(e.into());
        }
        if !earlier.is_empty() {
            self.forget_acked(tenant, batch);
        }
        Ok(())
    }
}

fn outcome<E>(
    report: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
    topic: &str,
    timed_out: &mut bool,
) -> Result<(), SinkError> {
    match report {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => {
            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageTimedOut) {
                *timed_out = true;
            }
            Err(classify(&e, topic))
        }
        Err(_) => Err(SinkError::Unavailable(format!(
            "topic {topic}: the producer dropped the delivery report"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<KafkaConfig, String> {
        let topic = if extra.contains("topic") {
            ""
        } else {
            "topic = \"tap.{tenant}\"\n"
        };
        let text = format!("brokers = \"127.0.0.1:1\"\n{topic}{extra}");
        let c: KafkaConfig = ::config::Config::builder()
            .add_source(::config::File::from_str(&text, ::config::FileFormat::Toml))
            .build()
            .unwrap()
            .try_deserialize()
            .map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn brokers_may_be_one_string_or_a_list() {
        let load = |brokers: &str| {
            let text = format!(
                "state_dir = \"s\"\n[sinks.k]\ntype = \"kafka\"\ntopic = \"tap\"\nbrokers = {brokers}\n[tenants.a]\nprincipal = \"p\"\nsecret = \"x\"\nsinks = [\"k\"]\n"
            );
            crate::Config::from_toml_with_env(&text, std::iter::empty()).map(|c| {
                match &c.sinks["k"] {
                    crate::sinks::SinkConfig::Kafka(k) => k.brokers.clone(),
                    _ => unreachable!(),
                }
            })
        };
        assert_eq!(load("\"b1:9092,b2:9092\"").unwrap(), "b1:9092,b2:9092");
        assert_eq!(
            load("[\"b1:9092\", \"b2:9092\"]").unwrap(),
            "b1:9092,b2:9092"
        );
        let e = load("9092").unwrap_err().to_string();
        assert!(e.contains("sinks.k") && e.contains("host:port"), "{e}");
    }

    #[test]
    fn topic_template_and_guid() {
        assert_eq!(
            render_topic(
                "tap.{tenant}.{event_type}",
                "acme",
                EventKind::ClicksBlocked
            ),
            "tap.acme.clicksBlocked"
        );
        // Every type's snake-case name is its eventType with each capital lowered after `_`.
        for kind in EventKind::ALL {
            let mut snake = String::new();
            for c in kind.as_str().chars() {
                if c.is_ascii_uppercase() {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            assert_eq!(snake_event_type(kind), snake);
        }
        assert_eq!(
            guid(br#"{"x":[1,{"GUID":"no"}],"GUID":"abc\"d"}"#).as_deref(),
            Some("abc\"d")
        );
        assert_eq!(guid(br#"{"id":"c"}"#), None);
    }

    #[test]
    fn validation_refuses_bad_topics_owned_and_secret_options() {
        assert!(config("").is_ok());
        assert!(config("topic = \"a b\"").unwrap_err().contains("topic"));
        assert!(config("topic = \"t.{region}\"")
            .unwrap_err()
            .contains("{tenant}"));
        assert!(config("[options]\nacks = \"1\"")
            .unwrap_err()
            .contains("set by the sink"));
        assert!(config("[options]\n\"sasl.password\" = \"hunter2\"")
            .unwrap_err()
            .contains("sasl_password_env"));
        assert!(config("compression = \"zstd\"")
            .unwrap_err()
            .contains("zstd"));
        assert!(config("compression = \"lz4\"\nkey = \"guid\"\nenvelope = true").is_ok());
        assert!(
            config("event_type_header = true")
                .unwrap()
                .event_type_header
        );
        assert!(config("[options]\nlog_level = \"2\"").is_ok());
        assert!(config("[options]\nlog_level = \"debug\"")
            .unwrap_err()
            .contains("0 (emergencies) to 7 (debug)"));
        assert!(!config("").unwrap().event_type_header);
    }

    #[test]
    fn sasl_password_errors_name_the_key_and_never_the_value() {
        assert!(config("")
            .unwrap()
            .sasl_password("bus", &crate::secret::process_env)
            .unwrap()
            .is_none());
        let c = config("sasl_password_env = \"TAPFWD_TEST_UNSET_SASL_VAR\"").unwrap();
        let e = c
            .sasl_password("bus", &crate::secret::process_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sinks.bus.sasl_password_env"), "{e}");
        assert!(e.contains("TAPFWD_TEST_UNSET_SASL_VAR is not set"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret-pw\n").unwrap();
        // Readable by its owner alone, as a secret file must be (`crate::files`).
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = config(&format!(
            "sasl_password_file = {:?}",
            file.display().to_string()
        ))
        .unwrap();
        let pw = c
            .sasl_password("bus", &crate::secret::process_env)
            .unwrap()
            .unwrap();
        assert_eq!(pw.expose_secret(), "s3cret-pw");
        std::fs::write(&file, "\n").unwrap();
        let e = c
            .sasl_password("bus", &crate::secret::process_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sinks.bus.sasl_password_file"), "{e}");
        assert!(e.contains("is empty"), "{e}");
    }

    #[test]
    fn errors_classify_permanent_and_transient() {
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(!classify(&e, "t").is_retryable());
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::TopicAuthorizationFailed);
        assert!(!classify(&e, "t").is_retryable());
        let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
        assert!(classify(&e, "t").is_retryable());
    }
}
