//! `product = "isolation"`: Proofpoint Isolation usage data (browser and email isolation),
//! read in `from`/`to` windows within the API's 30 days ([`crate::sources::slices`]).
//!
//! The API key travels in the query string (`key=`), so every text that could hold a request's
//! URL is scrubbed of it ([`crate::secret::scrub`] covers its percent-encoded form too).

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::tenant::{KindRoute, ProductSettings, SecretKeys, TenantCheck};
use super::trap::server_url_problem;
use crate::event::EventKind;

/// `product = "isolation"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolationTenant {
    /// The API's base URL. Default `https://proofpointisolation.com` (scheme, host and port only;
    /// the client adds `/api/v2/reporting/usage-data`).
    #[serde(default, rename = "base_url")]
    pub base_url_setting: Option<String>,
    /// Accept an `http://` `base_url` on a host that is not loopback. Default `false`.
    #[serde(default)]
    pub allow_http: bool,
    /// Names of the sinks this tenant's usage records go to; at least one.
    pub sinks: Vec<String>,
    /// The Isolation API key, inline. Prefer `api_key_env`, `api_key_file` or
    /// `api_key_credential`.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// Name of an environment variable that holds the API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Path of a file whose content (trailing newline removed) is the API key.
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
    /// Name of a systemd credential holding the API key.
    #[serde(default)]
    pub api_key_credential: Option<String>,
    /// Records asked for per request (`pageSize`), 1 to 10000. A window whose answer holds this
    /// many is taken as "there may be more" and split in two. Default 10000.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// The longest window one request covers; windows shrink when full and grow back. Default 1h.
    #[serde(default = "default_slice", with = "humantime_serde")]
    pub slice: Duration,
    /// How long one request may take, body included, before its window is split. Default 2m.
    #[serde(default = "default_slice_timeout", with = "humantime_serde")]
    pub slice_timeout: Duration,
    /// How far behind now a window ends (usage records are published late). Default 5m.
    #[serde(default = "default_lag", with = "humantime_serde")]
    pub lag: Duration,
}

/// Isolation's API host.
pub const ISOLATION_BASE_URL: &str = "https://proofpointisolation.com";

/// The largest `pageSize` the API takes.
pub const MAX_PAGE_SIZE: u32 = 10_000;

fn default_page_size() -> u32 {
    MAX_PAGE_SIZE
}
fn default_slice() -> Duration {
    Duration::from_secs(3600)
}
fn default_slice_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_lag() -> Duration {
    Duration::from_secs(300)
}

impl ProductSettings for IsolationTenant {
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
        vec![KindRoute {
            key: "sinks".into(),
            sinks: &self.sinks,
            kinds: vec![EventKind::IsolationUsage],
            from: "Isolation usage data".into(),
        }]
    }

    /// `base_url`, else [`ISOLATION_BASE_URL`] (a trailing slash taken off).
    fn base_url(&self) -> &str {
        self.base_url_setting
            .as_deref()
            .unwrap_or(ISOLATION_BASE_URL)
            .trim_end_matches('/')
    }

    /// A window is delivered unordered.
    fn replay_reach(&self) -> Option<Duration> {
        Some(self.slice)
    }

    fn secret_keys(&self) -> SecretKeys<'_> {
        SecretKeys {
            name: "api_key",
            inline: self.api_key.as_ref(),
            env: self.api_key_env.as_deref(),
            file: self.api_key_file.as_deref(),
            credential: self.api_key_credential.as_deref(),
        }
    }

    fn validate(&self, check: &TenantCheck<'_>, err: &mut dyn FnMut(String, String)) {
        let key = check.key;
        if let Some(problem) = server_url_problem(self.base_url(), self.allow_http) {
            err(key("base_url"), problem);
        }
        if !(1..=MAX_PAGE_SIZE).contains(&self.page_size) {
            err(
                key("page_size"),
                format!("must be between 1 and {MAX_PAGE_SIZE}"),
            );
        }
        if self.slice < Duration::from_secs(60) || self.slice > Duration::from_secs(86_400) {
            err(key("slice"), "must be between 1m and 24h".into());
        }
        if self.slice_timeout < Duration::from_secs(1) {
            err(key("slice_timeout"), "must be at least 1s".into());
        }
        if self.lag > Duration::from_secs(3600) {
            err(key("lag"), "must be at most 1h".into());
        }
    }
}
