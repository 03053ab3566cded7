//! The Splunk HTTP Event Collector sink.
//!
//! Requests: `POST {base}/services/collector/event` with `Authorization: Splunk TOKEN` and the HEC
//! batch format, JSON event objects one after another:
//! `{"time":1767225600.123,"host":..,"source":..,"sourcetype":..,"index":..,
//! "fields":{"tenant":..,"eventType":..},"event":RAW}`. `time` is the event's own time
//! (`messageTime`/`clickTime`, else `threatTime`, else now) in epoch seconds with milliseconds;
//! tenant and event type travel as indexed fields beside the raw event, which goes in byte for
//! byte (invariant 5). `host`, `source` and `index` are sent only when configured; the sourcetype
//! is the one Splunk content expects for the event's kind (`proofpoint_tap_siem` for the four TAP
//! SIEM kinds, the sourcetype of the Proofpoint TAP add-on that the CIM extensions key on;
//! `pps_messagelog`, `pps_maillog` and `pps_auditlog` for PoD; [`default_sourcetype`] has the table)
//! unless `sourcetypes` says otherwise.
//!
//! `url` is the collector's base URL (`https://splunk:8088`) or its endpoint as Splunk documents
//! it (`…/services/collector`, `…/services/collector/event` or `…/services/collector/event/1.0`,
//! with or without a trailing slash): all name the same collector, whose base is what
//! [`hec_base`] returns. The raw endpoint (`…/services/collector/raw`) is refused as the other
//! format it is, any other path as no HEC endpoint, when the config is checked, so a pasted URL
//! cannot turn into a path that answers 404 (or misreads every event) forever.
//!
//! **Delivered** means every request of the batch got HTTP 2xx (`{"text":"Success","code":0}`),
//! and, with `ack = true`, that the indexers confirmed every request on the sink's channel
//! (`/services/collector/ack` answered `true` for each `ackId`): "delivered" then means
//! "indexed". Only then is the batch committed, once. Server busy (code 9, HTTP 503), other 5xx,
//! 429, 408 and transport failures are retried with backoff honouring `Retry-After`, for at most
//! `retry.max_time`; then the delivery fails as unavailable and the checkpoint holds. Token
//! disabled (1), token required (2), invalid authorization (3), invalid token (4), no data (5),
//! invalid data format (6), incorrect index (7) and every other 4xx are permanent: the checkpoint
//! holds and the error names the sink, the status and Splunk's text and code, never the token.
//! Acknowledgements not all true within `ack_timeout` fail the delivery as unavailable; the batch
//! is then sent again, so events indexed late may appear twice (at least once, never lost). The
//! same holds for a batch that fails after some of its requests were accepted, and for HEC's
//! "invalid data format" reply, after which the events before the bad one stay indexed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::encode::{check_kind_map, kind_table, Beside, HecFields};
use super::http_common::{self as common, RetryConfig, Step};
use super::{guid, Commit, Sink, SinkError};
use crate::backoff;
use crate::event::{Batch, EventKind};
use crate::secret::{Env, SecretSource};

/// `type = "splunk_hec"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkHecConfig {
    /// The collector's URL: its base, e.g. `https://splunk.example.com:8088`, or its endpoint as
    /// Splunk gives it, `…/services/collector`, `…/services/collector/event` or
    /// `…/services/collector/event/1.0` (a trailing slash is fine); all mean the same. The sink
    /// posts to `/services/collector/event` (and `/services/collector/ack`) under the base. The
    /// raw endpoint (`…/services/collector/raw`, another format) and any other path are
    /// refused. Required.
    pub url: String,
    /// The HEC token, inline. Prefer `token_env` or `token_file`. Exactly one of the three.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// Name of an environment variable holding the HEC token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file whose content (trailing newline removed) is the HEC token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// `host` of every event. Default: not sent (Splunk uses the token's default).
    #[serde(default)]
    pub host: Option<String>,
    /// `source` of every event. Default `tapfwd`.
    #[serde(default = "default_source")]
    pub source: String,
    /// `index` of every event. Default: not sent (the token's default index).
    #[serde(default)]
    pub index: Option<String>,
    /// Sourcetype per event type, overriding the defaults: `proofpoint_tap_siem` (the Proofpoint
    /// TAP add-on's) for `messagesDelivered`, `messagesBlocked`, `clicksPermitted` and
    /// `clicksBlocked`; `proofpoint_tap_vap` and `proofpoint_tap_top_clickers` for the People
    /// snapshots; `pps_messagelog`, `pps_maillog` and `pps_auditlog` for PoD. E.g.
    /// `{ clicksPermitted = "pps:clicks" }`.
    #[serde(default)]
    pub sourcetypes: BTreeMap<String, String>,
    /// Wait for indexer acknowledgement, so that delivered means indexed. The token must have
    /// "Enable indexer acknowledgement" on. Default `false`.
    #[serde(default)]
    pub ack: bool,
    /// The channel (a GUID) sent as `X-Splunk-Request-Channel` on every request; acknowledgements
    /// are per channel. Default: a new random GUID each time the daemon starts.
    #[serde(default)]
    pub channel: Option<String>,
    /// With `ack`: how long to wait for all acknowledgements of a batch. Default `60s`.
    #[serde(with = "humantime_serde", default = "default_ack_timeout")]
    pub ack_timeout: Duration,
    /// With `ack`: first wait between acknowledgement polls (grows with backoff up to 4×).
    /// Default `1s`.
    #[serde(with = "humantime_serde", default = "default_ack_poll_interval")]
    pub ack_poll_interval: Duration,
    /// Compress request bodies with gzip. Default `false`.
    #[serde(default)]
    pub gzip: bool,
    /// Largest request body in bytes, before compression (keep it under the collector's
    /// `max_content_length`). Default `1048576` (1 MiB).
    #[serde(default = "common::default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Most events in one request. Default `1000`.
    #[serde(default = "common::default_max_batch_events")]
    pub max_batch_events: usize,
    /// Longest time one request may take. Default `30s`.
    #[serde(with = "humantime_serde", default = "common::default_timeout")]
    pub timeout: Duration,
    /// A PEM file of CA certificates trusted besides the public roots (Splunk's default HEC
    /// certificate is self-signed: put its CA here). Verification is always on. Default none.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Retries within one delivery; see [`RetryConfig`].
    #[serde(default)]
    pub retry: RetryConfig,
    /// Accept an `http://` `url` on a host that is not loopback, though the events and the
    /// HEC token then cross the network in cleartext (a test rig, a TLS-ending proxy on a trusted
    /// network); the daemon warns at start. Default `false`: such an address is refused.
    #[serde(default)]
    pub allow_http: bool,
}

fn default_source() -> String {
    "tapfwd".into()
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_ack_poll_interval() -> Duration {
    Duration::from_secs(1)
}

/// The endpoint paths a pasted `url` may end with; each names the collector at the URL before it.
/// `/services/collector/event/1.0` is the versioned name Splunk documents as identical to
/// `/services/collector/event`.
const HEC_PATHS: [&str; 3] = [
    "/services/collector/event/1.0",
    "/services/collector/event",
    "/services/collector",
];

/// HEC's raw endpoint: the collector's too, but for another format (lines of text, metadata in
/// the query string), so it is refused in words that say so.
const HEC_RAW_PATHS: [&str; 2] = ["/services/collector/raw", "/services/collector/raw/1.0"];

/// The collector's base URL (scheme and authority) of `url`, which is the base itself or one of
/// its endpoints ([`HEC_PATHS`]), each with or without a trailing slash; the raw endpoint, any
/// other path, a query or a fragment is an error naming `url`.
pub fn hec_base(url: &str) -> Result<&str, String> {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    let path_at = url[after_scheme..]
        .find(['/', '?', '#'])
        .map(|i| after_scheme + i)
        .unwrap_or(url.len());
    let (base, path) = url.split_at(path_at);
    let path = path.trim_end_matches('/');
    if path.is_empty() || HEC_PATHS.contains(&path) {
        return Ok(base);
    }
    if HEC_RAW_PATHS.contains(&path) {
        return Err(format!(
            "url: `{url}` is HEC's raw endpoint, which takes plain lines of text with the sourcetype and other metadata in the query string; tapfwd sends HEC's JSON event format (each raw event with its own time, sourcetype and indexed fields), which only the event endpoint takes: give `{base}/services/collector/event` or the collector's base URL (`{base}`)"
        ));
    }
    Err(format!(
        "url: `{url}` has the path `{path}`, which is not a HEC endpoint; give the collector's base URL (`{base}`) or its endpoint (`{base}/services/collector/event`)"
    ))
}

/// The default sourcetype of an event type ([`EventKind::splunk_sourcetype`]).
pub fn default_sourcetype(kind: EventKind) -> &'static str {
    kind.splunk_sourcetype()
}

common::plain_http_options!(SplunkHecConfig);

impl SplunkHecConfig {
    pub(super) fn secret(&self) -> SecretSource<'_> {
        SecretSource {
            key: "token",
            inline: self.token.as_ref(),
            env: self.token_env.as_deref(),
            file: self.token_file.as_deref(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.http_options().check_url("url", &self.url)?;
        hec_base(&self.url)?;
        self.secret().validate()?;
        check_kind_map("sourcetypes", &self.sourcetypes)?;
        if let Some(c) = &self.channel {
            if c.len() != 36 || !c.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
                return Err("channel must be a GUID like 0f8e3b1c-....".into());
            }
        }
        let options = self.http_options();
        options.validate_limits()?;
        if self.ack && (self.ack_poll_interval.is_zero() || self.ack_timeout.is_zero()) {
            return Err("ack_poll_interval and ack_timeout must be above zero".into());
        }
        options.validate_transport()
    }
}

pub struct SplunkHecSink {
    name: String,
    event_url: String,
    ack_url: String,
    /// `splunk_hec sink `name`: POST url`, for errors.
    what: String,
    client: reqwest::Client,
    token: SecretString,
    channel: String,
    fields: HecFields,
    config: SplunkHecConfig,
}

#[derive(Deserialize)]
struct EventReply {
    #[serde(rename = "ackId")]
    ack_id: Option<u64>,
}

#[derive(Deserialize)]
struct AckReply {
    acks: BTreeMap<String, bool>,
}

impl SplunkHecSink {
    /// Builds the sink; reads its token and CA file. `env` looks up environment variables.
    pub fn new(
        name: &str,
        config: &SplunkHecConfig,
        env: Env<'_>,
    ) -> Result<SplunkHecSink, SinkError> {
        config
            .validate()
            .map_err(|e| SinkError::Rejected(format!("splunk_hec sink `{name}`: {e}")))?;
        let key = format!("sinks.{name}.token");
        let token = SecretSource {
            key: &key,
            ..config.secret()
        }
        .resolve(env)
        .map_err(|e| SinkError::Rejected(e.to_string()))?;
        common::check_header_secret(
            &format!("splunk_hec sink `{name}`"),
            &key,
            token.expose_secret(),
        )?;
        let base = hec_base(&config.url).map_err(SinkError::Rejected)?;
        let event_url = format!("{base}/services/collector/event");
        let sourcetypes = kind_table(&config.sourcetypes, default_sourcetype);
        let options = config.http_options();
        options.warn_cleartext(&format!("splunk_hec sink `{name}`"), &config.url);
        Ok(SplunkHecSink {
            name: name.to_string(),
            ack_url: format!("{base}/services/collector/ack"),
            what: format!("splunk_hec sink `{name}`: POST {event_url}"),
            event_url,
            client: options.client(&format!("splunk_hec sink `{name}`"))?,
            token,
            channel: config
                .channel
                .clone()
                .unwrap_or_else(|| guid::random_v4(name)),
            fields: HecFields::new(
                config.host.as_deref(),
                Some(&config.source),
                config.index.as_deref(),
                |k| Some(sourcetypes[k.index()].clone()),
            ),
            config: config.clone(),
        })
    }

    fn request(&self, url: &str) -> reqwest::RequestBuilder {
        // The token was checked to be header-safe when the sink was built.
        let mut auth = HeaderValue::from_str(&format!("Splunk {}", self.token.expose_secret()))
            .unwrap_or_else(|_| HeaderValue::from_static("Splunk"));
        auth.set_sensitive(true);
        // The channel goes on every request: a token with acknowledgement enabled refuses
        // requests without one (code 10) even when this sink does not wait for acks.
        self.client
            .post(url)
            .header(AUTHORIZATION, auth)
            .header("X-Splunk-Request-Channel", &self.channel)
    }

    async fn post_once(&self, body: Bytes) -> Step<Option<u64>> {
        let mut request = self
            .request(&self.event_url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if self.config.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let secrets = [self.token.expose_secret()];
        let step = common::attempt(&self.what, request, &secrets).await;
        let Step::Done(reply) = step else {
            // Retry or Fail: nothing to map.
            return step.map(|_| None);
        };
        let ack_id = serde_json::from_slice::<EventReply>(&reply.body)
            .ok()
            .and_then(|r| r.ack_id);
        if self.config.ack && ack_id.is_none() {
            return Step::Fail(SinkError::Rejected(format!(
                "{}: ack = true but the reply carries no ackId; enable indexer acknowledgement on the token or set ack = false",
                self.what
            )));
        }
        Step::Done(ack_id)
    }

    /// Polls `/services/collector/ack` until every id is acknowledged, for at most
    /// `ack_timeout`.
    async fn wait_for_acks(&self, mut pending: Vec<u64>) -> Result<(), SinkError> {
        let what = format!("splunk_hec sink `{}`: POST {}", self.name, self.ack_url);
        let secrets = [self.token.expose_secret()];
        let started = Instant::now();
        let interval = self.config.ack_poll_interval;
        let mut n = 0;
        let mut last_problem = String::from("not yet acknowledged");
        while !pending.is_empty() {
            let wait = backoff::delay(n, interval, interval * 4);
            n += 1;
            if started.elapsed() + wait > self.config.ack_timeout {
                return Err(SinkError::Unavailable(format!(
                    "{what}: {} request(s) not confirmed indexed within {} ({last_problem}); the batch will be sent again",
                    pending.len(),
                    humantime::format_duration(self.config.ack_timeout)
                )));
            }
            tokio::time::sleep(wait).await;
            let mut body = b"{\"acks\":[".to_vec();
            for (i, id) in pending.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(itoa::Buffer::new().format(*id).as_bytes());
            }
            body.extend_from_slice(b"]}");
            let request = self
                .request(&self.ack_url)
                .query(&[("channel", &self.channel)])
                .header(CONTENT_TYPE, "application/json")
                .body(body);
            let reply = match common::send(request).await {
                Ok(r) => r,
                Err(e) => {
                    last_problem = e;
                    continue;
                }
            };
            match common::judge(&what, reply, &secrets) {
                Step::Done(reply) => match serde_json::from_slice::<AckReply>(&reply.body) {
                    Ok(r) => pending.retain(|id| r.acks.get(&id.to_string()) != Some(&true)),
                    Err(e) => last_problem = format!("unreadable ack reply: {e}"),
                },
                Step::Retry { reason, .. } => last_problem = reason,
                Step::Fail(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for SplunkHecSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(
        &self,
        tenant: &str,
        batch: &Batch,
        commit: Commit<'_>,
    ) -> Result<(), SinkError> {
        let options = self.config.http_options();
        let events: Vec<_> = batch.iter().collect();
        let bodies = options
            .lines()
            .pack(events.len(), |i, out| {
                let (meta, raw) = events[i];
                self.fields
                    .encode(out, tenant, meta, raw, Beside::of(batch, meta))
            })
            .map_err(|_| SinkError::Rejected(format!("{}: cannot split the batch", self.what)))?;
        let bodies = bodies.into_iter().map(|b| ((), b.bytes));
        let acks: Vec<u64> = common::post_all(&self.name, &options, bodies, |(), body| {
            self.post_once(body)
        })
        .await?
        .into_iter()
        .flatten()
        .collect();
        if self.config.ack {
            self.wait_for_acks(acks).await?;
        }
        commit(None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventMeta;

    #[test]
    fn default_sourcetypes_are_the_add_ons() {
        let want = [
            (EventKind::MessagesBlocked, "proofpoint_tap_siem"),
            (EventKind::MessagesDelivered, "proofpoint_tap_siem"),
            (EventKind::ClicksBlocked, "proofpoint_tap_siem"),
            (EventKind::ClicksPermitted, "proofpoint_tap_siem"),
            (EventKind::Vap, "proofpoint_tap_vap"),
            (EventKind::TopClickers, "proofpoint_tap_top_clickers"),
            (EventKind::PodMessage, "pps_messagelog"),
            (EventKind::PodMaillog, "pps_maillog"),
            (EventKind::PodAudit, "pps_auditlog"),
            (EventKind::TrapIncident, "ccx:proofpoint:trap:hec"),
            (EventKind::IsolationUsage, "proofpoint:isolation"),
            (EventKind::CtrIncident, "proofpoint:ctr:incident"),
            (EventKind::ItmUserActivity, "proofpoint:itm:user_activity"),
            (EventKind::ItmDbaActivity, "proofpoint:itm:dba_activity"),
            (EventKind::ItmSystemEvent, "proofpoint:itm:system_event"),
            (EventKind::ItmAlert, "proofpoint:itm:alert"),
            (EventKind::ItmAudit, "proofpoint:itm:audit"),
            (EventKind::ItmInAppElement, "proofpoint:itm:in_app_element"),
        ];
        assert_eq!(want.len(), EventKind::ALL.len());
        for (kind, sourcetype) in want {
            assert_eq!(default_sourcetype(kind), sourcetype, "{kind}");
        }
        // An override replaces one kind's default and no other.
        let map = BTreeMap::from([("clicksPermitted".to_string(), "pps:click".to_string())]);
        let table = kind_table(&map, default_sourcetype);
        assert_eq!(table[EventKind::ClicksPermitted.index()], "pps:click");
        assert_eq!(
            table[EventKind::ClicksBlocked.index()],
            "proofpoint_tap_siem"
        );
    }

    #[test]
    fn hec_urls_name_the_collector_by_base_or_endpoint() {
        for url in [
            "https://splunk:8088",
            "https://splunk:8088/",
            "https://splunk:8088/services/collector",
            "https://splunk:8088/services/collector/",
            "https://splunk:8088/services/collector/event",
            "https://splunk:8088/services/collector/event//",
            "https://splunk:8088/services/collector/event/1.0",
            "https://splunk:8088/services/collector/event/1.0/",
        ] {
            assert_eq!(hec_base(url), Ok("https://splunk:8088"), "{url}");
        }
        assert_eq!(
            hec_base("https://splunk:8088/services/collector/other").unwrap_err(),
            "url: `https://splunk:8088/services/collector/other` has the path `/services/collector/other`, which is not a HEC endpoint; give the collector's base URL (`https://splunk:8088`) or its endpoint (`https://splunk:8088/services/collector/event`)"
        );
        for raw in ["/services/collector/raw", "/services/collector/raw/1.0/"] {
            let e = hec_base(&format!("https://splunk:8088{raw}")).unwrap_err();
            assert!(
                e.contains("is HEC's raw endpoint")
                    && e.contains("JSON event format")
                    && e.ends_with("give `https://splunk:8088/services/collector/event` or the collector's base URL (`https://splunk:8088`)"),
                "{e}"
            );
        }
        assert!(hec_base("https://splunk:8088?x=1").is_err());
        assert!(hec_base("https://splunk:8088/en-US/services/collector").is_err());
    }

    #[test]
    fn hec_event_carries_time_fields_and_raw_bytes() {
        let f = HecFields::new(Some("h"), Some("tapfwd"), Some("main"), |k| {
            Some(default_sourcetype(k).to_string())
        });
        let meta = EventMeta {
            kind: EventKind::ClicksPermitted,
            start: 0,
            len: 0,
            key: crate::event::EventKey([0; 16]),
            time_ms: Some(1_767_225_600_007),
            customer: None,
        };
        let mut out = Vec::new();
        f.encode(
            &mut out,
            "acme",
            &meta,
            br#"{"id":"c", "x" : 1}"#,
            Beside::default(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time\":1767225600.007,\"host\":\"h\",\"source\":\"tapfwd\",\"index\":\"main\",\
             \"sourcetype\":\"proofpoint_tap_siem\",\"fields\":{\"tenant\":\"acme\",\"eventType\":\"clicksPermitted\"},\
             \"event\":{\"id\":\"c\", \"x\" : 1}}\n"
        );
        let before = EventMeta {
            time_ms: Some(-1),
            ..meta
        };
        let mut out = Vec::new();
        HecFields::new(None, None, None, |_| None).encode(
            &mut out,
            "a",
            &before,
            b"{}",
            Beside::default(),
        );
        assert!(
            out.starts_with(b"{\"time\":0.000,\"fields\""),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }

    #[test]
    fn enrichment_goes_into_fields_as_json_strings_beside_the_raw_event() {
        let meta = EventMeta {
            kind: EventKind::ClicksBlocked,
            start: 0,
            len: 0,
            key: crate::event::EventKey([0; 16]),
            time_ms: Some(0),
            customer: None,
        };
        let members =
            br#""threats":{"t1":{"name":"Evil \"doc\""}},"campaigns":{"c1":{"actors":[]}}"#;
        let mut out = Vec::new();
        HecFields::new(None, None, None, |_| None).encode(
            &mut out,
            "acme",
            &meta,
            br#"{"id" : "x"}"#,
            Beside {
                customer: Some("4711"),
                enrichment: Some(members),
                snapshot: None,
            },
        );
        assert_eq!(
            String::from_utf8(out.clone()).unwrap(),
            r#"{"time":0.000,"fields":{"tenant":"acme","eventType":"clicksBlocked","customer":"4711","campaigns":"{\"c1\":{\"actors\":[]}}","threats":"{\"t1\":{\"name\":\"Evil \\\"doc\\\"\"}}"},"event":{"id" : "x"}}
"#
        );
        // Every field is a string (what HEC takes), and each opens to the member it came from.
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let fields = v["fields"].as_object().unwrap();
        assert!(fields.values().all(|f| f.is_string()));
        let threats: serde_json::Value =
            serde_json::from_str(fields["threats"].as_str().unwrap()).unwrap();
        assert_eq!(threats["t1"]["name"], "Evil \"doc\"");
    }
}
