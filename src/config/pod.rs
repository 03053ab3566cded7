//! `product = "pod"`: a Proofpoint on Demand log stream (WebSocket), one connection per log
//! type, with the stream's archive mode to close gaps. A PoD tenant has a cluster id and a
//! bearer token, no principal.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::tenant::{cleartext_url, KindRoute, ProductSettings, SecretKeys, TenantCheck};

/// `product = "pod"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodTenant {
    /// The stream's base URL. Default `wss://logstream.proofpoint.com`. A `ws://` URL sends the
    /// token in cleartext: it is refused unless its host is loopback or `allow_http` is set.
    #[serde(default, rename = "base_url")]
    pub base_url_setting: Option<String>,
    /// Accept a `ws://` `base_url` on a host that is not loopback. Default `false`.
    #[serde(default)]
    pub allow_http: bool,
    /// Names of the sinks this tenant's events go to; at least one.
    pub sinks: Vec<String>,
    /// The cluster id (`cid`), as shown in the PoD admin console. Required.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// The log stream's bearer token, inline. Prefer `token_env`, `token_file` or
    /// `token_credential`.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// Name of an environment variable that holds the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// Path of a file whose content (trailing newline removed) is the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Name of a systemd credential holding the token.
    #[serde(default)]
    pub token_credential: Option<String>,
    /// The log types to stream, one connection each: `message`, `maillog`, `audit`.
    /// Default `["message", "maillog"]`.
    #[serde(default = "default_pod_types")]
    pub types: Vec<PodType>,
    /// How often a live connection is pinged; a connection that answers a ping with no pong
    /// within half this interval is replaced. Default 2m30s (the service drops idle connections
    /// after about 5 minutes).
    #[serde(default = "default_ping_interval", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// How old events must be before archive mode (`sinceTime`/`toTime`) serves them.
    /// Default 30m.
    #[serde(default = "default_archive_lag", with = "humantime_serde")]
    pub archive_lag: Duration,
    /// How far back archive mode reaches; a gap older than this is reported, not fetched.
    /// Default 30d (Proofpoint's figure, not verified).
    #[serde(default = "default_archive_horizon", with = "humantime_serde")]
    pub archive_horizon: Duration,
    /// How far a frame's `ts` may run behind the frames sent before it (a cluster has several
    /// sending agents, and nothing says the stream is ordered). Frames out of order within this
    /// bound are never lost across a drop or a crash: each archive catch-up reaches this far
    /// before a sink's checkpoint and past where its live coverage restarted. Default 1m, at
    /// most [`MAX_DISORDER_LIMIT`].
    #[serde(default = "default_max_disorder", with = "humantime_serde")]
    pub max_disorder: Duration,
}

/// The largest `max_disorder`: the dedupe keys a catch-up needs are kept for 3 hours past a
/// checkpoint, and a catch-up reaches back an hour window plus this.
pub const MAX_DISORDER_LIMIT: Duration = Duration::from_secs(600);

/// A PoD log type: one live connection each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PodType {
    Message,
    Maillog,
    Audit,
}

impl PodType {
    /// The name in config, in the stream URL's `type` and in source ids.
    pub fn as_str(self) -> &'static str {
        match self {
            PodType::Message => "message",
            PodType::Maillog => "maillog",
            PodType::Audit => "audit",
        }
    }

    pub fn parse(s: &str) -> Option<PodType> {
        [PodType::Message, PodType::Maillog, PodType::Audit]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    /// The kind its events get.
    pub fn kind(self) -> crate::event::EventKind {
        match self {
            PodType::Message => crate::event::EventKind::PodMessage,
            PodType::Maillog => crate::event::EventKind::PodMaillog,
            PodType::Audit => crate::event::EventKind::PodAudit,
        }
    }
}

fn default_pod_types() -> Vec<PodType> {
    vec![PodType::Message, PodType::Maillog]
}
fn default_ping_interval() -> Duration {
    Duration::from_secs(150)
}
fn default_archive_lag() -> Duration {
    Duration::from_secs(1800)
}
fn default_archive_horizon() -> Duration {
    Duration::from_secs(30 * 86_400)
}
fn default_max_disorder() -> Duration {
    Duration::from_secs(60)
}

/// PoD's stream host.
pub const POD_BASE_URL: &str = "wss://logstream.proofpoint.com";

impl ProductSettings for PodTenant {
    fn sinks(&self) -> &[String] {
        &self.sinks
    }
    fn sinks_mut(&mut self) -> &mut Vec<String> {
        &mut self.sinks
    }
    fn allow_http(&self) -> bool {
        self.allow_http
    }

    fn kind_routes(&self) -> Vec<KindRoute<'_>> {
        self.types
            .iter()
            .map(|t| KindRoute {
                key: "sinks".into(),
                sinks: &self.sinks,
                kinds: vec![t.kind()],
                from: format!("the `{}` log stream (types)", t.as_str()),
            })
            .collect()
    }

    /// The stream's base URL: `base_url`, else [`POD_BASE_URL`] (a trailing slash taken off).
    fn base_url(&self) -> &str {
        self.base_url_setting
            .as_deref()
            .unwrap_or(POD_BASE_URL)
            .trim_end_matches('/')
    }

    fn secret_keys(&self) -> SecretKeys<'_> {
        SecretKeys {
            name: "token",
            inline: self.token.as_ref(),
            env: self.token_env.as_deref(),
            file: self.token_file.as_deref(),
            credential: self.token_credential.as_deref(),
        }
    }

    fn validate(&self, check: &TenantCheck<'_>, err: &mut dyn FnMut(String, String)) {
        let key = check.key;
        match self.cluster_id.as_deref().map(str::trim) {
            None => err(
                key("cluster_id"),
                "a pod tenant needs its cluster id (cid)".into(),
            ),
            Some(c)
                if c.is_empty()
                    || !c
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b)) =>
            {
                err(
                    key("cluster_id"),
                    "must be a cluster id of letters, digits, `_`, `-` or `.`".into(),
                )
            }
            Some(_) => {}
        }
        if self.types.is_empty() {
            err(
                key("types"),
                "lists no log types (message, maillog, audit)".into(),
            );
        }
        let mut seen = self.types.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.types.len() {
            err(key("types"), "names a log type twice".into());
        }
        let url = self.base_url();
        match reqwest::Url::parse(url) {
            Ok(u) if u.scheme() == "wss" || u.scheme() == "ws" => {
                if !u.username().is_empty() || u.password().is_some() {
                    err(
                        key("base_url"),
                        "must not carry credentials; use the token keys".into(),
                    );
                } else if u.host_str().map_or(true, str::is_empty) {
                    err(key("base_url"), format!("`{url}` has no host"));
                } else if cleartext_url(url) && !self.allow_http {
                    err(
                        key("base_url"),
                        "ws:// sends the token in cleartext: use wss://, or set allow_http = true for this tenant".into(),
                    );
                }
            }
            _ => err(key("base_url"), format!("`{url}` is not a wss:// URL")),
        }
        if self.ping_interval < Duration::from_secs(1)
            || self.ping_interval > Duration::from_secs(240)
        {
            err(
                key("ping_interval"),
                format!(
                    "must be between 1s and 4m (the service drops idle connections after about 5 minutes), got {}",
                    humantime::format_duration(self.ping_interval)
                ),
            );
        }
        if self.max_disorder > MAX_DISORDER_LIMIT {
            err(
                key("max_disorder"),
                format!(
                    "must be at most {}, got {}",
                    humantime::format_duration(MAX_DISORDER_LIMIT),
                    humantime::format_duration(self.max_disorder)
                ),
            );
        }
        if self.archive_horizon <= self.archive_lag + Duration::from_secs(3600) {
            err(
                key("archive_horizon"),
                "must be more than archive_lag plus an hour".into(),
            );
        }
    }
}
