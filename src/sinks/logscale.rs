//! The CrowdStrike Falcon LogScale (Humio) sink, with an ingest token.
//!
//! Two ingest APIs, chosen by `api`:
//! - `structured` (default): `POST {url}/api/v1/ingest/humio-structured`, body
//!   `[{"tags":{"tenant":..,"eventType":..},"events":[{"timestamp":"RFC 3339","attributes":RAW}]}]`.
//!   Tenant and event type are tags (a bounded set: one per event type per tenant), the raw event is the
//!   attributes object byte for byte, no parser runs unless one is attached to the token. A
//!   request holds the events of one event type.
//! - `hec`: `POST {url}/api/v1/ingest/hec`, the Splunk HEC batch format
//!   (`{"time":<epoch s.ms>,"fields":{"tenant":..,"eventType":..},"event":RAW}` one after another).
//!
//! Both send `Authorization: Bearer TOKEN`. The time is the event's own time, else now.
//!
//! **Delivered** means every request of the batch got a 2xx reply (LogScale answers after the
//! events are in its ingest queue, Kafka-backed and replicated). Only then is the batch committed,
//! once. 408, 429, 5xx and transport failures are retried with backoff honouring `Retry-After`
//! for at most `retry.max_time`, then the delivery fails as unavailable and the checkpoint holds.
//! 401/403 (a bad or revoked token), 400 and 413 are permanent: the checkpoint holds and the error
//! names the sink, status and LogScale's text, never the token. A batch that fails after some of
//! its requests were accepted is sent again whole (at least once, never lost).

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::encode::{json_str, now_ms, Beside, HecFields};
use super::http_common::{self as common, RetryConfig, Step};
use super::{Commit, Sink, SinkError};
use crate::clock;
use crate::event::{Batch, EventKind};
use crate::secret::{Env, SecretSource};

/// `type = "logscale"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogScaleConfig {
    /// The cluster's base URL, e.g. `https://cloud.us.humio.com` (the sink appends the API path),
    /// or an ingest endpoint as LogScale's docs give it: `…/api/v1/ingest/humio-structured` or
    /// `…/api/v1/ingest/hec` (a trailing slash is fine), which then also chooses `api`. Any
    /// other `/api/` path (raw, elastic-bulk, …) is refused. Required.
    pub url: String,
    /// `structured` (`/api/v1/ingest/humio-structured`) or `hec` (`/api/v1/ingest/hec`). Default:
    /// the endpoint `url` names, else `structured`.
    #[serde(default)]
    pub api: Option<LogScaleApi>,
    /// The ingest token, inline. Prefer `token_env` or `token_file`. Exactly one of the three.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// Name of an environment variable holding the ingest token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file whose content (trailing newline removed) is the ingest token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Compress request bodies with gzip. Default `false`.
    #[serde(default)]
    pub gzip: bool,
    /// Largest request body in bytes, before compression. Default `1048576` (1 MiB).
    #[serde(default = "common::default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Most events in one request. Default `1000`.
    #[serde(default = "common::default_max_batch_events")]
    pub max_batch_events: usize,
    /// Longest time one request may take. Default `30s`.
    #[serde(with = "humantime_serde", default = "common::default_timeout")]
    pub timeout: Duration,
    /// A PEM file of CA certificates trusted besides the public roots (self-hosted clusters).
    /// Verification is always on. Default none.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Retries within one delivery; see [`RetryConfig`].
    #[serde(default)]
    pub retry: RetryConfig,
    /// Accept an `http://` `url` on a host that is not loopback, though the events and the
    /// ingest token then cross the network in cleartext (a test rig, a TLS-ending proxy on a trusted
    /// network); the daemon warns at start. Default `false`: such an address is refused.
    #[serde(default)]
    pub allow_http: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogScaleApi {
    #[default]
    Structured,
    Hec,
}

impl LogScaleApi {
    /// The ingest endpoint's path under the cluster's base URL.
    pub fn path(self) -> &'static str {
        match self {
            LogScaleApi::Structured => "/api/v1/ingest/humio-structured",
            LogScaleApi::Hec => "/api/v1/ingest/hec",
        }
    }

    fn name(self) -> &'static str {
        match self {
            LogScaleApi::Structured => "structured",
            LogScaleApi::Hec => "hec",
        }
    }
}

/// Where a pasted `url` and `api` say to post: the cluster's base URL (kept with any path prefix
/// a reverse proxy adds) and the API. `url` may be the base or one of the ingest endpoints; an
/// endpoint chooses the API unless `api` says otherwise, which is an error naming both keys. Any
/// other `/api/` path is an error naming `url`: posting under it could never be answered.
pub fn endpoint(url: &str, api: Option<LogScaleApi>) -> Result<(&str, LogScaleApi), String> {
    let trimmed = url.trim_end_matches('/');
    let after_scheme = trimmed.find("://").map(|i| i + 3).unwrap_or(0);
    let path = trimmed[after_scheme..]
        .find(['/', '?', '#'])
        .map(|i| &trimmed[after_scheme + i..])
        .unwrap_or("");
    if path.contains(['?', '#']) {
        return Err(format!(
            "url: `{url}` has a query or fragment; give the cluster's base URL (e.g. `https://cloud.us.humio.com`)"
        ));
    }
    for named in [LogScaleApi::Structured, LogScaleApi::Hec] {
        if let Some(base) = trimmed.strip_suffix(named.path()) {
            return match api {
                Some(a) if a != named => Err(format!(
                    "url: `{url}` is the `{}` ingest endpoint but api = \"{}\"; give the cluster's base URL (`{base}`) or set api = \"{}\"",
                    named.name(),
                    a.name(),
                    named.name()
                )),
                _ => Ok((base, named)),
            };
        }
    }
    if let Some(at) = path.find("/api/") {
        let base = &trimmed[..trimmed.len() - path.len() + at];
        return Err(format!(
            "url: `{url}` has the path `{path}`, which is not an ingest API this sink speaks; give the cluster's base URL (`{base}`) or `{base}/api/v1/ingest/humio-structured` or `{base}/api/v1/ingest/hec`"
        ));
    }
    Ok((trimmed, api.unwrap_or_default()))
}

common::plain_http_options!(LogScaleConfig);

impl LogScaleConfig {
    fn secret(&self) -> SecretSource<'_> {
        SecretSource {
            key: "token",
            inline: self.token.as_ref(),
            env: self.token_env.as_deref(),
            file: self.token_file.as_deref(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        self.http_options().check_url("url", &self.url)?;
        endpoint(&self.url, self.api)?;
        self.secret().validate()?;
        self.http_options().validate()
    }
}

pub struct LogScaleSink {
    name: String,
    url: String,
    what: String,
    client: reqwest::Client,
    token: SecretString,
    hec: HecFields,
    /// The API `url` and `api` chose.
    api: LogScaleApi,
    config: LogScaleConfig,
}

impl LogScaleSink {
    /// Builds the sink; reads its token and CA file. `env` looks up environment variables.
    pub fn new(
        name: &str,
        config: &LogScaleConfig,
        env: Env<'_>,
    ) -> Result<LogScaleSink, SinkError> {
        config
            .validate()
            .map_err(|e| SinkError::Rejected(format!("logscale sink `{name}`: {e}")))?;
        let key = format!("sinks.{name}.token");
        let token = SecretSource {
            key: &key,
            ..config.secret()
        }
        .resolve(env)
        .map_err(|e| SinkError::Rejected(e.to_string()))?;
        common::check_header_secret(
            &format!("logscale sink `{name}`"),
            &key,
            token.expose_secret(),
        )?;
        let (base, api) = endpoint(&config.url, config.api)
            .map_err(|e| SinkError::Rejected(format!("logscale sink `{name}`: {e}")))?;
        let url = format!("{base}{}", api.path());
        let options = config.http_options();
        options.warn_cleartext(&format!("logscale sink `{name}`"), &config.url);
        Ok(LogScaleSink {
            name: name.to_string(),
            what: format!("logscale sink `{name}`: POST {url}"),
            url,
            client: options.client(&format!("logscale sink `{name}`"))?,
            token,
            hec: HecFields::new(None, None, None, |_| None),
            api,
            config: config.clone(),
        })
    }

    async fn post_once(&self, body: Bytes) -> Step<()> {
        let mut request = self
            .client
            .post(&self.url)
            .bearer_auth(self.token.expose_secret())
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        if self.config.gzip {
            request = request.header(CONTENT_ENCODING, "gzip");
        }
        let secrets = [self.token.expose_secret()];
        common::attempt(&self.what, request, &secrets)
            .await
            .map(drop)
    }

    /// The request bodies for `batch`, before compression.
    fn bodies(&self, tenant: &str, batch: &Batch) -> Vec<Vec<u8>> {
        let options = self.config.http_options();
        let events: Vec<_> = batch.iter().collect();
        let split = match self.api {
            LogScaleApi::Hec => options
                .lines()
                .pack(events.len(), |i, out| {
                    let (meta, raw) = events[i];
                    self.hec
                        .encode(out, tenant, meta, raw, Beside::of(batch, meta))
                })
                .unwrap_or_default(),
            LogScaleApi::Structured => {
                let mut bodies = Vec::new();
                for kind in EventKind::ALL {
                    let of_kind: Vec<_> = events.iter().filter(|(m, _)| m.kind == kind).collect();
                    if of_kind.is_empty() {
                        continue;
                    }
                    let mut prefix = b"[{\"tags\":{\"tenant\":".to_vec();
                    json_str(&mut prefix, tenant);
                    prefix.extend_from_slice(b",\"eventType\":\"");
                    prefix.extend_from_slice(kind.as_str().as_bytes());
                    prefix.extend_from_slice(b"\"},\"events\":[");
                    let packer = options.framed(prefix, b"]}]");
                    bodies.extend(
                        packer
                            .pack(of_kind.len(), |i, out| {
                                let (meta, raw) = of_kind[i];
                                out.extend_from_slice(b"{\"timestamp\":\"");
                                out.extend_from_slice(
                                    clock::rfc3339_ms(meta.time_ms.unwrap_or_else(now_ms))
                                        .as_bytes(),
                                );
                                out.extend_from_slice(b"\",\"attributes\":");
                                out.extend_from_slice(raw);
                                out.push(b'}');
                            })
                            .unwrap_or_default(),
                    );
                }
                bodies
            }
        };
        split.into_iter().map(|b| b.bytes).collect()
    }
}

#[async_trait]
impl Sink for LogScaleSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(
        &self,
        tenant: &str,
        batch: &Batch,
        commit: Commit<'_>,
    ) -> Result<(), SinkError> {
        let bodies = self.bodies(tenant, batch).into_iter().map(|b| ((), b));
        common::post_all(
            &self.name,
            &self.config.http_options(),
            bodies,
            |(), body| self.post_once(body),
        )
        .await?;
        commit(None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pasted_url_names_the_cluster_by_base_or_ingest_endpoint() {
        use LogScaleApi::{Hec, Structured};
        let base = "https://cloud.us.humio.com";
        for (url, api, want) in [
            ("https://cloud.us.humio.com", None, (base, Structured)),
            ("https://cloud.us.humio.com/", Some(Hec), (base, Hec)),
            (
                "https://cloud.us.humio.com/api/v1/ingest/hec",
                None,
                (base, Hec),
            ),
            (
                "https://cloud.us.humio.com/api/v1/ingest/hec/",
                Some(Hec),
                (base, Hec),
            ),
            (
                "https://cloud.us.humio.com/api/v1/ingest/humio-structured",
                None,
                (base, Structured),
            ),
            // A reverse proxy's prefix is kept.
            (
                "https://logs.example/logscale/api/v1/ingest/hec",
                None,
                ("https://logs.example/logscale", Hec),
            ),
            (
                "https://logs.example/logscale",
                None,
                ("https://logs.example/logscale", Structured),
            ),
        ] {
            assert_eq!(endpoint(url, api).unwrap(), want, "{url}");
        }
        for (url, api, says) in [
            (
                "https://cloud.us.humio.com/api/v1/ingest/hec",
                Some(Structured),
                "api = \"structured\"",
            ),
            (
                "https://cloud.us.humio.com/api/v1/ingest/hec/raw",
                None,
                "`/api/v1/ingest/hec/raw`",
            ),
            (
                "https://cloud.us.humio.com/api/v1/ingest/elastic-bulk",
                None,
                "not an ingest API",
            ),
            ("https://cloud.us.humio.com/?x=1", None, "query"),
        ] {
            let e = endpoint(url, api).unwrap_err();
            assert!(e.starts_with("url: ") && e.contains(says), "{url}: {e}");
        }
    }
}
