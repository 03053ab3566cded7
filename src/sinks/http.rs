//! The generic HTTP sink: batches of envelopes POSTed to one URL.
//!
//! Body: NDJSON (one `{"tenant":..,"eventType":..,"event":RAW}` per line, the default) or a JSON
//! array of the same envelopes; the raw event goes in byte for byte (invariant 5), and threat
//! enrichment, when there is any, follows it in the envelope (`,"threats":{…}`) as in the file
//! sink. A batch is cut
//! into requests of at most `max_batch_events` envelopes and `max_batch_bytes` bytes (before
//! gzip); an envelope larger than `max_batch_bytes` on its own goes in a request by itself.
//!
//! **Delivered** means every request of the batch got a 2xx reply. Only then is the batch
//! committed, once. 408, 429 and 5xx (except 501) and transport failures are retried with backoff,
//! no sooner than the reply's `Retry-After`, for at most `retry.max_time`; then the delivery fails
//! as unavailable and the poller holds the checkpoint and tries again later. Any other status is a
//! permanent rejection: the checkpoint holds and the error names the sink, the status and the
//! destination's error text. A batch that fails after some of its requests were accepted is sent
//! again whole, so a receiver may see those events twice (at least once, never lost).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::encode::{write_envelope_with, Beside};
use super::http_common::{self as common, Oversize, RetryConfig, Step};
use super::{Commit, Sink, SinkError};
use crate::event::Batch;
use crate::secret::{Env, SecretSource};

/// `type = "http"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where batches are POSTed, `http://` or `https://`. Required.
    pub url: String,
    /// Body format: `ndjson` (default; `Content-Type: application/x-ndjson`) or `json_array`
    /// (`application/json`).
    #[serde(default)]
    pub format: HttpFormat,
    /// Extra request headers, e.g. `{ "X-Source" = "tapfwd" }`. Not for secrets: use `auth`.
    /// `Authorization`, `Content-Encoding` and `Content-Length` are set by the sink. Default none.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Authentication, `{ strategy = "basic", user = "..", password_env = ".." }` or
    /// `{ strategy = "bearer", token_file = ".." }`. Default none.
    #[serde(default)]
    pub auth: Option<HttpAuth>,
    /// Compress request bodies with gzip (`Content-Encoding: gzip`). Default `false`.
    #[serde(default)]
    pub gzip: bool,
    /// Largest request body in bytes, measured before compression. Default `1048576` (1 MiB).
    #[serde(default = "common::default_max_batch_bytes")]
    pub max_batch_bytes: usize,
    /// Most events in one request. Default `1000`.
    #[serde(default = "common::default_max_batch_events")]
    pub max_batch_events: usize,
    /// Longest time one request may take, reply included. Default `30s`.
    #[serde(with = "humantime_serde", default = "common::default_timeout")]
    pub timeout: Duration,
    /// A PEM file of CA certificates trusted besides the public roots (for a private CA).
    /// Verification is always on. Default none.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Retries within one delivery; see [`RetryConfig`].
    #[serde(default)]
    pub retry: RetryConfig,
    /// Accept an `http://` `url` on a host that is not loopback, though the events and the
    /// credentials then cross the network in cleartext (a test rig, a TLS-ending proxy on a trusted
    /// network); the daemon warns at start. Default `false`: such an address is refused.
    #[serde(default)]
    pub allow_http: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    #[default]
    Ndjson,
    JsonArray,
}

/// `auth = { strategy = ".." , .. }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum HttpAuth {
    /// HTTP Basic: `user` and exactly one of `password`, `password_env`, `password_file`.
    Basic(BasicAuth),
    /// `Authorization: Bearer`: exactly one of `token`, `token_env`, `token_file`.
    Bearer(BearerAuth),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub user: String,
    /// The password, inline. Prefer `password_env` or `password_file`.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// Name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file whose content (trailing newline removed) is the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerAuth {
    /// The token, inline. Prefer `token_env` or `token_file`.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// Name of an environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file whose content (trailing newline removed) is the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

impl HttpAuth {
    fn secret(&self) -> SecretSource<'_> {
        match self {
            HttpAuth::Basic(b) => SecretSource {
                key: "auth.password",
                inline: b.password.as_ref(),
                env: b.password_env.as_deref(),
                file: b.password_file.as_deref(),
            },
            HttpAuth::Bearer(b) => SecretSource {
                key: "auth.token",
                inline: b.token.as_ref(),
                env: b.token_env.as_deref(),
                file: b.token_file.as_deref(),
            },
        }
    }
}

common::plain_http_options!(HttpConfig);

impl HttpConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.http_options().check_url("url", &self.url)?;
        if let Some(auth) = &self.auth {
            auth.secret().validate().map_err(|e| format!("auth: {e}"))?;
            if let HttpAuth::Basic(b) = auth {
                if b.user.is_empty() || b.user.contains(':') {
                    return Err("auth.user must be non-empty and hold no `:`".into());
                }
            }
        }
        headers(&self.headers)?;
        self.http_options().validate()
    }
}

/// The configured headers, checked.
fn headers(map: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut out = HeaderMap::new();
    for (k, v) in map {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("headers: `{k}` is not a valid header name"))?;
        if matches!(
            name.as_str(),
            "authorization" | "content-encoding" | "content-length" | "host"
        ) {
            return Err(format!("headers: `{k}` is set by the sink"));
        }
        let value = HeaderValue::from_str(v)
            .map_err(|_| format!("headers: the value of `{k}` is not a valid header value"))?;
        out.insert(name, value);
    }
    Ok(out)
}

enum Auth {
    None,
    Basic {
        user: String,
        password: SecretString,
    },
    Bearer(SecretString),
}

pub struct HttpSink {
    name: String,
    /// `http sink `name`: POST url`, for errors.
    what: String,
    url: String,
    client: reqwest::Client,
    headers: HeaderMap,
    auth: Auth,
    config: HttpConfig,
}

impl HttpSink {
    /// Builds the sink; reads its secret and CA file. `env` looks up environment variables.
    pub fn new(name: &str, config: &HttpConfig, env: Env<'_>) -> Result<HttpSink, SinkError> {
        config
            .validate()
            .map_err(|e| SinkError::Rejected(format!("http sink `{name}`: {e}")))?;
        let key = |k: &str| format!("sinks.{name}.{k}");
        let auth = match &config.auth {
            None => Auth::None,
            Some(a) => {
                let k = key(a.secret().key);
                let secret = SecretSource {
                    key: &k,
                    ..a.secret()
                }
                .resolve(env)
                .map_err(|e| SinkError::Rejected(e.to_string()))?;
                common::check_header_secret(
                    &format!("http sink `{name}`"),
                    &k,
                    secret.expose_secret(),
                )?;
                match a {
                    HttpAuth::Basic(b) => Auth::Basic {
                        user: b.user.clone(),
                        password: secret,
                    },
                    HttpAuth::Bearer(_) => Auth::Bearer(secret),
                }
            }
        };
        let mut headers = headers(&config.headers).map_err(SinkError::Rejected)?;
        if !headers.contains_key(CONTENT_TYPE) {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static(match config.format {
                    HttpFormat::Ndjson => "application/x-ndjson",
                    HttpFormat::JsonArray => "application/json",
                }),
            );
        }
        if config.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let options = config.http_options();
        options.warn_cleartext(&format!("http sink `{name}`"), &config.url);
        Ok(HttpSink {
            name: name.to_string(),
            what: format!(
                "http sink `{name}`: POST {}",
                common::display_url(&config.url)
            ),
            url: config.url.clone(),
            client: options.client(&format!("http sink `{name}`"))?,
            headers,
            auth,
            config: config.clone(),
        })
    }

    fn secrets(&self) -> Vec<&str> {
        match &self.auth {
            Auth::None => vec![],
            Auth::Basic { password, .. } => vec![password.expose_secret()],
            Auth::Bearer(t) => vec![t.expose_secret()],
        }
    }

    async fn post_once(&self, body: Bytes) -> Step<()> {
        let mut request = self
            .client
            .post(&self.url)
            .headers(self.headers.clone())
            .body(body);
        request = match &self.auth {
            Auth::None => request,
            Auth::Basic { user, password } => {
                request.basic_auth(user, Some(password.expose_secret()))
            }
            Auth::Bearer(t) => request.bearer_auth(t.expose_secret()),
        };
        common::attempt(&self.what, request, &self.secrets())
            .await
            .map(drop)
    }
}

#[async_trait]
impl Sink for HttpSink {
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
        let (packer, newline) = match self.config.format {
            HttpFormat::Ndjson => (options.lines(), true),
            HttpFormat::JsonArray => (options.array(Oversize::Alone), false),
        };
        let bodies = packer
            .pack(events.len(), |i, out| {
                let (meta, raw) = events[i];
                write_envelope_with(out, tenant, meta.kind, raw, Beside::of(batch, meta));
                if newline {
                    out.push(b'\n');
                }
            })
            .map_err(|_| SinkError::Rejected(format!("{}: cannot split the batch", self.what)))?;
        let bodies = bodies.into_iter().map(|b| ((), b.bytes));
        common::post_all(&self.name, &options, bodies, |(), body| {
            self.post_once(body)
        })
        .await?;
        commit(None)?;
        Ok(())
    }
}
