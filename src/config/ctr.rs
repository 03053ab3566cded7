//! `product = "ctr"`: Proofpoint Cloud Threat Response incidents, through the Threat Protection
//! API with OAuth2 client credentials (more-feeds.md). The keys every OAuth2 product shares
//! (`client_id`, the client secret's four keys, `token_url`) are checked by [`check_oauth`],
//! which ITM ([`super::itm`]) uses too.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::tenant::{cleartext_url, KindRoute, ProductSettings, SecretKeys, TenantCheck};
use crate::event::EventKind;
use crate::net::{self, UrlRules};

/// The Threat Protection API's host, when `base_url` is not set.
pub const CTR_BASE_URL: &str = "https://threatprotection-api.proofpoint.com";
/// Proofpoint's token endpoint, when `token_url` is not set.
pub const CTR_TOKEN_URL: &str = "https://auth.proofpoint.com/v1/token";

/// An OAuth2 product's base URL: the client appends the API path; the client id and secret go in
/// their own keys.
pub(super) const OAUTH_BASE_URL: UrlRules<'static> = UrlRules {
    credentials_hint: "use client_id and client_secret",
    complete: false,
};

/// `product = "ctr"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtrTenant {
    /// The Threat Protection API's base URL, without a path. Default
    /// `https://threatprotection-api.proofpoint.com`. An `http://` URL sends the token in
    /// cleartext: it is refused unless its host is loopback or `allow_http` is set.
    #[serde(default, rename = "base_url")]
    pub base_url_setting: Option<String>,
    /// The OAuth2 token endpoint. Default `https://auth.proofpoint.com/v1/token`.
    #[serde(default, rename = "token_url")]
    pub token_url_setting: Option<String>,
    /// Accept `http://` URLs on a host that is not loopback. Default `false`.
    #[serde(default)]
    pub allow_http: bool,
    /// The OAuth2 client id. Required.
    #[serde(default)]
    pub client_id: String,
    /// The client secret, inline. Prefer `client_secret_env`, `client_secret_file` or
    /// `client_secret_credential`.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// Name of an environment variable that holds the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Path of a file whose content (trailing newline removed) is the client secret.
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Name of a systemd credential holding the client secret.
    #[serde(default)]
    pub client_secret_credential: Option<String>,
    /// Names of the sinks this tenant's incidents go to; at least one.
    pub sinks: Vec<String>,
    /// How often a caught-up tenant asks again. Default `5m`; at least `1m`.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// How far back each poll asks again, so that updates to incidents created within it (a
    /// state change, events added) are collected as new facts. Default `1d`; at most `7d`.
    #[serde(default = "default_lookback", with = "humantime_serde")]
    pub lookback: Duration,
    /// Subtracted from each request's `start`, for the clock drift between this host and the
    /// API. Default `2m`; at most `1h`.
    #[serde(default = "default_drift", with = "humantime_serde")]
    pub clock_drift: Duration,
    /// Longest span of `createdAt` asked for in one request (a backlog is walked in spans of
    /// it). Default `1d`; between `1m` and `7d`.
    #[serde(default = "default_max_window", with = "humantime_serde")]
    pub max_window: Duration,
    /// Where a tenant with no checkpoint starts: this long before now. Default `1d`; at most
    /// `30d` (the horizon tapfwd keeps to).
    #[serde(default = "default_lookback", with = "humantime_serde")]
    pub initial_lookback: Duration,
    /// Requests a minute this tenant sends at most (the API is said to allow 10). Default `10`.
    #[serde(default = "default_requests_per_minute")]
    pub requests_per_minute: u32,
}

fn default_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_lookback() -> Duration {
    Duration::from_secs(86_400)
}
fn default_drift() -> Duration {
    Duration::from_secs(120)
}
fn default_max_window() -> Duration {
    Duration::from_secs(86_400)
}
fn default_requests_per_minute() -> u32 {
    10
}

impl CtrTenant {
    /// The token endpoint: `token_url`, else [`CTR_TOKEN_URL`].
    pub fn token_url(&self) -> &str {
        self.token_url_setting.as_deref().unwrap_or(CTR_TOKEN_URL)
    }
}

/// What [`check_oauth`] reads of an OAuth2 tenant.
pub(super) struct OAuthKeys<'a> {
    pub client_id: &'a str,
    pub base_url: &'a str,
    /// `base_url` as written, `None` when it was not set.
    pub base_url_setting: Option<&'a str>,
    pub token_url: &'a str,
    pub allow_http: bool,
}

/// Checks the keys every OAuth2 product has, naming each: `client_id`, `base_url` (an http(s)
/// URL without credentials, a path, a query or cleartext) and `token_url`.
pub(super) fn check_oauth(
    keys: OAuthKeys<'_>,
    check: &TenantCheck<'_>,
    err: &mut dyn FnMut(String, String),
) {
    let key = check.key;
    if keys.client_id.trim().is_empty() {
        err(
            key("client_id"),
            "is empty: set the OAuth2 client id".into(),
        );
    }
    let url_checks = [
        ("base_url", keys.base_url, true),
        ("token_url", keys.token_url, false),
    ];
    for (name, url, base) in url_checks {
        if let Some(problem) = net::url_problem(url, OAUTH_BASE_URL) {
            err(key(name), problem);
            continue;
        }
        let parsed = reqwest::Url::parse(url);
        match parsed {
            Err(_) => err(key(name), format!("`{url}` is not a valid URL")),
            Ok(u) if base && (u.path() != "/" || u.query().is_some()) => err(
                key(name),
                format!(
                    "`{}` has a path or query: give the host only (the API path is added)",
                    keys.base_url_setting.unwrap_or(url)
                ),
            ),
            Ok(_) if cleartext_url(url) && !keys.allow_http => err(
                key(name),
                "http:// sends the credentials in cleartext: use https://, or set allow_http = true for this tenant".into(),
            ),
            Ok(_) => {}
        }
    }
}

/// Reports a duration key outside `[min, max]`.
pub(super) fn check_range(
    check: &TenantCheck<'_>,
    name: &str,
    value: Duration,
    min: Duration,
    max: Duration,
    err: &mut dyn FnMut(String, String),
) {
    if value < min || value > max {
        err(
            (check.key)(name),
            format!(
                "must be between {} and {}, got {}",
                humantime::format_duration(min),
                humantime::format_duration(max),
                humantime::format_duration(value)
            ),
        );
    }
}

impl ProductSettings for CtrTenant {
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
            kinds: vec![EventKind::CtrIncident],
            from: "the CTR incidents API".into(),
        }]
    }
    /// `base_url`, else [`CTR_BASE_URL`], a trailing slash taken off.
    fn base_url(&self) -> &str {
        self.base_url_setting
            .as_deref()
            .unwrap_or(CTR_BASE_URL)
            .trim_end_matches('/')
    }
    fn secret_keys(&self) -> SecretKeys<'_> {
        SecretKeys {
            name: "client_secret",
            inline: self.client_secret.as_ref(),
            env: self.client_secret_env.as_deref(),
            file: self.client_secret_file.as_deref(),
            credential: self.client_secret_credential.as_deref(),
        }
    }
    /// A caught-up poll reads `lookback` (and `clock_drift`) before its window of `max_window`.
    fn key_reach(&self) -> Duration {
        self.lookback + self.clock_drift + self.max_window
    }
    fn validate(&self, check: &TenantCheck<'_>, err: &mut dyn FnMut(String, String)) {
        check_oauth(
            OAuthKeys {
                client_id: &self.client_id,
                base_url: self.base_url(),
                base_url_setting: self.base_url_setting.as_deref(),
                token_url: self.token_url(),
                allow_http: self.allow_http,
            },
            check,
            err,
        );
        let min = Duration::from_secs(60);
        let day = Duration::from_secs(86_400);
        check_range(check, "interval", self.interval, min, day, err);
        check_range(
            check,
            "lookback",
            self.lookback,
            Duration::ZERO,
            7 * day,
            err,
        );
        check_range(
            check,
            "clock_drift",
            self.clock_drift,
            Duration::ZERO,
            Duration::from_secs(3600),
            err,
        );
        check_range(check, "max_window", self.max_window, min, 7 * day, err);
        check_range(
            check,
            "initial_lookback",
            self.initial_lookback,
            Duration::ZERO,
            30 * day,
            err,
        );
        if self.requests_per_minute < 2 {
            err(
                (check.key)("requests_per_minute"),
                "must be at least 2 (one request per state group)".into(),
            );
        }
    }
}
