//! The Microsoft Sentinel sink: the Azure Monitor Logs Ingestion API.
//!
//! Authentication: OAuth2 client credentials. `POST {authority}/{directory_tenant_id}/oauth2/v2.0/token`
//! with `client_id`, `client_secret`, `scope=https://monitor.azure.com//.default` and
//! `grant_type=client_credentials`. The access token is cached and fetched again
//! `token_refresh_margin` before it expires (at most half its lifetime early), and once more when
//! the ingestion endpoint answers 401.
//!
//! Requests: `POST {dce}/dataCollectionRules/{dcr_immutable_id}/streams/{stream}?api-version=2023-01-01`,
//! `Content-Type: application/json`, `Content-Encoding: gzip`, a JSON array of
//! `{"TimeGenerated":"RFC 3339 event time","Tenant":..,"EventType":..,"Event":RAW}` (`Event` is a
//! `dynamic` column holding the raw event byte for byte; deploy/sentinel/ has a matching DCR and
//! table), plus `"Customer":"<customerEid>"` for an Essentials child organisation's event and
//! `"Enrichment":{"threats":{…},"campaigns":{…}}` (dynamic) for an event threat enrichment found
//! something for. The stream is `streams[eventType]`, else `stream_name`. Each request is at most
//! `max_batch_bytes` (≤ 1,000,000, the API's limit) of uncompressed JSON. A single element larger
//! than that cannot be sent at all: the whole batch fails as rejected, loudly, naming the event
//! type and size; nothing is dropped, the checkpoint holds until someone acts (see docs).
//!
//! With `layout = "proofpoint_tap_solution"` ([`solution`]) each TAP SIEM event goes instead to
//! its event type's `Custom-ProofPointTAP…V2_CL` stream, the one the Microsoft Sentinel
//! ProofPointTap solution's DCR declares, as the flat API object with exactly that stream's
//! columns and types plus the tenant in `tenant_s`, the Essentials customer in `customer_s` and
//! any enrichment in `tapfwd_enrichment` (dynamic) (`deploy/sentinel/proofpoint-tap-solution.json`
//! ships the matching DCR and tables). That layout re-encodes the event by the DCR's schema; the
//! default layout keeps it byte for byte. PoD `message` and `maillog` frames go the same way to
//! the input streams the Proofpoint On Demand solution's DCR declares, `Custom-ProofpointPodMessage`
//! and `Custom-ProofpointPodMailLog` (`deploy/sentinel/proofpoint-pod-solution.json` ships a DCR
//! with those streams that keeps `tenant_s`). An event no solution has a table for (People, PoD
//! audit) is refused by `tapfwd check` for any route that would send it here
//! ([`SentinelConfig::refuses`]); should one reach the sink anyway, its batch is rejected loudly,
//! naming the event type.
//!
//! **Delivered** means every request of the batch got 204 (or another 2xx): Azure Monitor has
//! accepted the data for ingestion. Only then is the batch committed, once. 408, 429, 5xx and
//! transport failures are retried with backoff honouring `Retry-After` for at most
//! `retry.max_time`, then the delivery fails as unavailable and the checkpoint holds. A 401 fetches
//! a new token and tries once more, then is permanent; 403 (the app lacks "Monitoring Metrics
//! Publisher" on the DCR), 404 (unknown DCR or stream, worded as a wrong URL path: a configuration
//! error), 413 and other 4xx are permanent. The token
//! endpoint's 400/401 (bad client id or secret) are permanent too. Errors name the sink, status
//! and Azure's error text, never the client secret or a token. A batch that fails after some of its
//! requests were accepted is sent again whole (at least once, never lost).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::sync::Mutex;

pub mod solution;

use super::encode::{check_kind_map, json_str, kind_table, now_ms, Beside};
use super::http_common::{self as common, HttpOptions, Oversize, RetryConfig, Step};
use super::{Commit, Sink, SinkError};
use crate::clock;
use crate::event::{Batch, EventKind};
use crate::secret::{Env, SecretSource};

/// The Logs Ingestion API's limit on one request's uncompressed body.
pub const API_MAX_BYTES: usize = 1_000_000;
const API_VERSION: &str = "2023-01-01";
const SCOPE: &str = "https://monitor.azure.com//.default";

/// `type = "sentinel"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The data collection endpoint's logs ingestion URL, e.g.
    /// `https://my-dce-abcd.westeurope-1.ingest.monitor.azure.com`. Required.
    pub dce: String,
    /// The data collection rule's immutable id (`dcr-…`, on the DCR's JSON view). Required.
    pub dcr_immutable_id: String,
    /// What each event becomes and where it goes: `envelope` (default) sends
    /// `{TimeGenerated, Tenant, EventType, Event}` rows, the raw event in `Event`, to
    /// `stream_name` (or `streams`); `proofpoint_tap_solution` sends each TAP SIEM event as the
    /// flat row of the ProofPointTap solution's `Custom-ProofPointTAP…V2_CL` stream of its event
    /// type, and each PoD message and maillog frame as the row of the PoD solution's
    /// `Custom-ProofpointPodMessage` / `Custom-ProofpointPodMailLog` stream, tenant in
    /// `tenant_s` (no `stream_name` or `streams` then). People snapshots and PoD audit events
    /// have no table there: `tapfwd check` refuses a route that sends them to this layout.
    #[serde(default)]
    pub layout: SentinelLayout,
    /// The stream declared in the DCR that events go to, e.g. `Custom-ProofpointTAP`. Required
    /// with the `envelope` layout; not used with `proofpoint_tap_solution`.
    #[serde(default)]
    pub stream_name: String,
    /// Streams per event type, overriding `stream_name`, e.g.
    /// `{ messagesDelivered = "Custom-TapMessages", clicksPermitted = "Custom-TapClicks" }`.
    /// Default none; not used with `proofpoint_tap_solution`.
    #[serde(default)]
    pub streams: BTreeMap<String, String>,
    /// The Entra ID (Azure AD) directory (tenant) id of the app registration. Required.
    pub directory_tenant_id: String,
    /// The app registration's application (client) id. Required.
    pub client_id: String,
    /// The client secret, inline. Prefer `client_secret_env` or `client_secret_file`. Exactly one
    /// of the three.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Name of an environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// A file whose content (trailing newline removed) is the client secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The token authority. Default `https://login.microsoftonline.com`; sovereign clouds use
    /// their own (e.g. `https://login.microsoftonline.us`).
    #[serde(default = "default_authority")]
    pub authority: String,
    /// How long before its expiry a cached token is replaced (at most half its lifetime).
    /// Default `5m`.
    #[serde(with = "humantime_serde", default = "default_refresh_margin")]
    pub token_refresh_margin: Duration,
    /// Largest uncompressed request body in bytes, at most `1000000` (the API's limit).
    /// Default `1000000`.
    #[serde(default = "default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Most events in one request. Default `5000`.
    #[serde(default = "default_max_batch_events")]
    pub max_batch_events: usize,
    /// Longest time one request may take. Default `30s`.
    #[serde(with = "humantime_serde", default = "common::default_timeout")]
    pub timeout: Duration,
    /// A PEM file of CA certificates trusted besides the public roots (for a TLS-inspecting
    /// proxy). Verification is always on. Default none.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Retries within one delivery; see [`RetryConfig`].
    #[serde(default)]
    pub retry: RetryConfig,
    /// Accept an `http://` `dce` or `authority` on a host that is not loopback, though the events and the
    /// client secret and tokens then cross the network in cleartext (a test rig, a TLS-ending proxy on a trusted
    /// network); the daemon warns at start. Default `false`: such an address is refused.
    #[serde(default)]
    pub allow_http: bool,
}

/// `layout`: the rows the sink sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SentinelLayout {
    /// `{TimeGenerated, Tenant, EventType, Event}`, the raw event byte for byte in `Event`
    /// (`deploy/sentinel/azuredeploy.json`).
    #[default]
    Envelope,
    /// The ProofPointTap solution's four streams and columns and the Proofpoint On Demand
    /// solution's two ([`solution`]; `deploy/sentinel/proofpoint-tap-solution.json`,
    /// `deploy/sentinel/proofpoint-pod-solution.json`).
    ProofpointTapSolution,
}

fn default_authority() -> String {
    "https://login.microsoftonline.com".into()
}
fn default_refresh_margin() -> Duration {
    Duration::from_secs(300)
}
fn default_max_batch_bytes() -> usize {
    API_MAX_BYTES
}
fn default_max_batch_events() -> usize {
    5000
}

fn path_segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl SentinelConfig {
    /// Why this sink can never take events of `kind`, if it cannot: the solution layout has no
    /// stream for a kind no solution declares a table for. `tapfwd check` asks this of every
    /// sink each tenant's sources send to, so such a route is refused before it runs.
    pub fn refuses(&self, kind: EventKind) -> Option<String> {
        match self.layout {
            SentinelLayout::Envelope => None,
            SentinelLayout::ProofpointTapSolution if solution::destination(kind).is_some() => None,
            SentinelLayout::ProofpointTapSolution => Some(format!(
                "has layout = \"proofpoint_tap_solution\", which has no stream for {kind} events (neither the ProofPointTap nor the Proofpoint On Demand solution declares a table for them), so every delivery would be rejected"
            )),
        }
    }

    fn secret(&self) -> SecretSource<'_> {
        SecretSource {
            key: "client_secret",
            inline: self.client_secret.as_ref(),
            env: self.client_secret_env.as_deref(),
            file: self.client_secret_file.as_deref(),
        }
    }

    /// The settings every HTTP sink shares; bodies are always gzip-compressed and
    /// `max_batch_bytes` is bounded by [`API_MAX_BYTES`].
    pub fn http_options(&self) -> HttpOptions<'_> {
        HttpOptions {
            gzip: true,
            max_batch_bytes: self.max_batch_bytes,
            max_batch_events: self.max_batch_events,
            api_max_bytes: Some(API_MAX_BYTES),
            timeout: self.timeout,
            tls_ca_file: self.tls_ca_file.as_deref(),
            retry: &self.retry,
            allow_http: self.allow_http,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        for (key, url) in [("dce", &self.dce), ("authority", &self.authority)] {
            self.http_options().check_url(key, url)?;
        }
        check_dce(&self.dce)?;
        match self.layout {
            SentinelLayout::Envelope if self.stream_name.is_empty() => {
                return Err(
                    "stream_name is required (the DCR's stream, e.g. `Custom-ProofpointTAP`), unless layout = \"proofpoint_tap_solution\""
                        .into(),
                );
            }
            SentinelLayout::Envelope => {}
            SentinelLayout::ProofpointTapSolution => {
                if !self.stream_name.is_empty() || !self.streams.is_empty() {
                    return Err("stream_name and streams are not used with layout = \"proofpoint_tap_solution\": each event type has its solution stream".into());
                }
            }
        }
        let stream_name =
            (!self.stream_name.is_empty()).then_some(("stream_name", &self.stream_name));
        for (key, v) in [
            ("dcr_immutable_id", &self.dcr_immutable_id),
            ("directory_tenant_id", &self.directory_tenant_id),
            ("client_id", &self.client_id),
        ]
        .into_iter()
        .chain(stream_name)
        {
            if !path_segment_ok(v) {
                return Err(format!(
                    "{key} must be non-empty and hold only letters, digits, `-`, `_` and `.`"
                ));
            }
        }
        if !self.dcr_immutable_id.starts_with("dcr-") {
            return Err(format!(
                "dcr_immutable_id: `{}` is not a DCR immutable id; they read `dcr-` and 32 hex digits (the DCR's JSON view in the portal shows it as immutableId; its name or resource id will not do)",
                self.dcr_immutable_id
            ));
        }
        check_kind_map("streams", &self.streams)?;
        if let Some((k, _)) = self.streams.iter().find(|(_, v)| !path_segment_ok(v)) {
            return Err(format!(
                "streams.{k} must hold only letters, digits, `-`, `_` and `.`"
            ));
        }
        let named = stream_name
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .chain(
                self.streams
                    .iter()
                    .map(|(k, v)| (format!("streams.{k}"), v)),
            );
        for (key, v) in named {
            if !(v.starts_with("Custom-") || v.starts_with("Microsoft-")) {
                return Err(format!(
                    "{key}: `{v}` is not a DCR stream name; a stream declared in the DCR reads `Custom-…` (for the table `{}`, usually `Custom-{}`)",
                    v,
                    v
                ));
            }
        }
        self.secret().validate()?;
        self.http_options().validate()
    }
}

/// A data collection endpoint is a scheme and host: the sink adds the DCR and stream path. The
/// whole Logs Ingestion URL pasted from a REST example (`…/dataCollectionRules/…/streams/…`) or any
/// other path could never be posted to, and is refused naming `dce` with the value to give.
fn check_dce(dce: &str) -> Result<(), String> {
    let after_scheme = dce.find("://").map(|i| i + 3).unwrap_or(0);
    let Some(at) = dce[after_scheme..].find(['/', '?', '#']) else {
        return Ok(());
    };
    let (base, path) = dce.split_at(after_scheme + at);
    if path == "/" {
        return Ok(());
    }
    let what = if path.starts_with("/dataCollectionRules/") {
        "is the whole Logs Ingestion URL"
    } else {
        "has a path"
    };
    Err(format!(
        "dce: `{dce}` {what}; give the endpoint alone (`{base}`): the DCR and stream go in dcr_immutable_id and stream_name"
    ))
}

struct Token {
    value: SecretString,
    /// When to fetch a new one.
    refresh_at: Instant,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: String,
    /// Seconds; a number, or a string in some older endpoints.
    expires_in: serde_json::Value,
}

pub struct SentinelSink {
    name: String,
    token_url: String,
    client: reqwest::Client,
    client_secret: SecretString,
    /// The cached access token. Held across a fetch so concurrent deliveries wait for one fetch.
    token: Mutex<Option<Token>>,
    /// Stream per event kind, in [`EventKind::ALL`] order; empty for a kind the layout has no
    /// stream for.
    streams: [String; EventKind::ALL.len()],
    config: SentinelConfig,
}

impl SentinelSink {
    /// Builds the sink; reads its client secret and CA file. `env` looks up environment variables.
    pub fn new(
        name: &str,
        config: &SentinelConfig,
        env: Env<'_>,
    ) -> Result<SentinelSink, SinkError> {
        config
            .validate()
            .map_err(|e| SinkError::Rejected(format!("sentinel sink `{name}`: {e}")))?;
        let key = format!("sinks.{name}.client_secret");
        let client_secret = SecretSource {
            key: &key,
            ..config.secret()
        }
        .resolve(env)
        .map_err(|e| SinkError::Rejected(e.to_string()))?;
        let options = config.http_options();
        let what = format!("sentinel sink `{name}`");
        options.warn_cleartext(&what, &config.dce);
        options.warn_cleartext(&what, &config.authority);
        Ok(SentinelSink {
            name: name.to_string(),
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                config.authority.trim_end_matches('/'),
                config.directory_tenant_id
            ),
            client: options.client(&what)?,
            client_secret,
            token: Mutex::new(None),
            streams: match config.layout {
                SentinelLayout::Envelope => kind_table(&config.streams, |_| &config.stream_name),
                SentinelLayout::ProofpointTapSolution => EventKind::ALL.map(|k| {
                    solution::destination(k)
                        .map(|(stream, _)| stream.to_string())
                        .unwrap_or_default()
                }),
            },
            config: config.clone(),
        })
    }

    /// With the solution layout, the columns of `kind`'s stream.
    fn solution_columns(
        &self,
        kind: EventKind,
    ) -> Option<&'static [(&'static str, solution::ColumnType)]> {
        match self.config.layout {
            SentinelLayout::Envelope => None,
            SentinelLayout::ProofpointTapSolution => solution::destination(kind).map(|(_, c)| c),
        }
    }

    fn stream_of(&self, kind: EventKind) -> &str {
        &self.streams[kind.index()]
    }

    fn stream_url(&self, stream: &str) -> String {
        format!(
            "{}/dataCollectionRules/{}/streams/{stream}?api-version={API_VERSION}",
            self.config.dce.trim_end_matches('/'),
            self.config.dcr_immutable_id
        )
    }

    /// A usable access token: the cached one unless it is due for refresh or is `stale` (the one
    /// the ingestion endpoint just refused), else a new one.
    async fn token(&self, stale: Option<&SecretString>) -> Result<SecretString, Step<()>> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            let is_stale = stale.is_some_and(|s| s.expose_secret() == t.value.expose_secret());
            if !is_stale && Instant::now() < t.refresh_at {
                return Ok(t.value.clone());
            }
        }
        *cached = None;
        let fresh = self.fetch_token().await?;
        let value = fresh.value.clone();
        *cached = Some(fresh);
        Ok(value)
    }

    async fn fetch_token(&self) -> Result<Token, Step<()>> {
        let what = format!(
            "sentinel sink `{}`: token request to {}",
            self.name, self.token_url
        );
        let secret = self.client_secret.expose_secret();
        let request = self.client.post(&self.token_url).form(&[
            ("client_id", self.config.client_id.as_str()),
            ("client_secret", secret),
            ("scope", SCOPE),
            ("grant_type", "client_credentials"),
        ]);
        let reply = match common::attempt(&what, request, &[secret]).await {
            Step::Done(r) => r,
            step => return Err(step.map(drop)),
        };
        let parsed: TokenReply = serde_json::from_slice(&reply.body).map_err(|e| {
            Step::Fail(SinkError::Rejected(format!(
                "{what}: unreadable token reply: {e}"
            )))
        })?;
        let lifetime = match &parsed.expires_in {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(300));
        let margin = self.config.token_refresh_margin.min(lifetime / 2);
        tracing::debug!(sink = %self.name, lifetime_s = lifetime.as_secs(), "fetched an access token");
        Ok(Token {
            value: SecretString::from(parsed.access_token),
            refresh_at: Instant::now() + lifetime - margin,
        })
    }

    /// One attempt at sending `body` to `stream`: with the cached token, and after a 401 once more
    /// with a new one.
    async fn post_once(&self, stream: &str, body: Bytes) -> Step<()> {
        let url = self.stream_url(stream);
        let what = format!("sentinel sink `{}`: POST {url}", self.name);
        let mut stale = None;
        loop {
            let token = match self.token(stale.as_ref()).await {
                Ok(t) => t,
                Err(step) => return step,
            };
            let request = self
                .client
                .post(&url)
                .bearer_auth(token.expose_secret())
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_ENCODING, "gzip")
                .body(body.clone());
            let secrets = [self.client_secret.expose_secret(), token.expose_secret()];
            let reply = match common::send(request).await {
                Ok(r) => r,
                Err(e) => return common::transport_retry(&what, e, &secrets),
            };
            if reply.status == StatusCode::UNAUTHORIZED && stale.is_none() {
                tracing::info!(sink = %self.name, "access token refused; fetching a new one");
                stale = Some(token);
                continue;
            }
            return common::judge(&what, reply, &secrets).map(drop);
        }
    }
}

#[async_trait]
impl Sink for SentinelSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(
        &self,
        tenant: &str,
        batch: &Batch,
        commit: Commit<'_>,
    ) -> Result<(), SinkError> {
        // Requests per stream, each stream once.
        let mut requests: Vec<(&str, Vec<u8>)> = Vec::new();
        let mut streams: Vec<&str> = Vec::new();
        for s in &self.streams {
            if !streams.contains(&s.as_str()) {
                streams.push(s);
            }
        }
        let options = self.config.http_options();
        let events: Vec<_> = batch.iter().collect();
        if let Some((meta, _)) = events
            .iter()
            .find(|(m, _)| self.stream_of(m.kind).is_empty())
        {
            return Err(SinkError::Rejected(format!(
                "sentinel sink `{}`: layout proofpoint_tap_solution has no stream for {} events of tenant {tenant} (the ProofPointTap solution's DCR takes TAP SIEM events, the PoD solution's PoD message and maillog events); send them to another sink",
                self.name, meta.kind
            )));
        }
        let mut unreadable = None;
        for stream in streams {
            let of_stream: Vec<_> = events
                .iter()
                .filter(|(m, _)| self.stream_of(m.kind) == stream)
                .collect();
            if of_stream.is_empty() {
                continue;
            }
            let bodies = options
                .array(Oversize::Fail)
                .pack(of_stream.len(), |i, out| {
                    let (meta, raw) = of_stream[i];
                    let beside = Beside::of(batch, meta);
                    if let Some(columns) = self.solution_columns(meta.kind) {
                        if let Err(e) = solution::write_row(out, tenant, columns, raw, beside) {
                            unreadable.get_or_insert((meta.kind, e.to_string()));
                        }
                        return;
                    }
                    out.extend_from_slice(b"{\"TimeGenerated\":\"");
                    out.extend_from_slice(
                        clock::rfc3339_ms(meta.time_ms.unwrap_or_else(now_ms)).as_bytes(),
                    );
                    out.extend_from_slice(b"\",\"Tenant\":");
                    json_str(out, tenant);
                    out.extend_from_slice(b",\"EventType\":\"");
                    out.extend_from_slice(meta.kind.as_str().as_bytes());
                    out.push(b'"');
                    if let Some(customer) = beside.customer {
                        out.extend_from_slice(b",\"Customer\":");
                        json_str(out, customer);
                    }
                    out.extend_from_slice(b",\"Event\":");
                    out.extend_from_slice(raw);
                    if let Some(members) = beside.enrichment {
                        out.extend_from_slice(b",\"Enrichment\":{");
                        out.extend_from_slice(members);
                        out.push(b'}');
                    }
                    out.push(b'}');
                })
                .map_err(|(i, size)| {
                    let (meta, _) = of_stream[i];
                    SinkError::Rejected(format!(
                        "sentinel sink `{}`: a {} event of tenant {tenant} is {size} bytes as JSON, over the Logs Ingestion API's limit of {} bytes per request; it cannot be sent, so the batch is held (event key {})",
                        self.name,
                        meta.kind,
                        self.config.max_batch_bytes,
                        meta.key.0.iter().map(|b| format!("{b:02x}")).collect::<String>()
                    ))
                })?;
            requests.extend(bodies.into_iter().map(|b| (stream, b.bytes)));
        }
        if let Some((kind, e)) = unreadable {
            return Err(SinkError::Rejected(format!(
                "sentinel sink `{}`: a {kind} event of tenant {tenant} is not a JSON object ({e}); it cannot be made a row of the solution's stream",
                self.name
            )));
        }
        common::post_all(&self.name, &options, requests, |stream, body| {
            self.post_once(stream, body)
        })
        .await?;
        commit(None)?;
        Ok(())
    }
}
