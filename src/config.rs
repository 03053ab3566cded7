//! Typed configuration: the reference documentation for every key.
//!
//! A TOML file read through the `config` crate, overridden by environment variables under the
//! prefix `TAPFWD__` with `__` between key parts (`TAPFWD__POLL__INTERVAL=1m`). Deserialisation
//! goes through `serde_path_to_error`, so every error names the key path it is about
//! (`tenants.acme.secret_env`). [`Config::validate`] checks everything that needs no I/O;
//! [`Config::resolve_secrets`] reads the secrets (environment, files, systemd credentials) and is
//! the only step that touches the outside world. Secrets live in [`SecretString`] from load to
//! use, so they never reach a log line, the status output or an error message (invariant 7).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

pub use crate::api::people::PeopleConfig;
use crate::api::siem::Credentials;
use crate::api::{window, ThreatStatus};
use crate::net::{self, UrlRules};
use crate::secret::{self, Env, SecretError, SecretSource};
use crate::shard::Shard;
use crate::sinks::SinkConfig;

/// The API's limits (tap-api.md) as durations; their one definition is in [`crate::api::window`].
const MIN_WINDOW: Duration = Duration::from_secs(window::MIN_WINDOW_SECS as u64);
const MAX_WINDOW: Duration = Duration::from_secs(window::MAX_WINDOW_SECS as u64);
const API_HORIZON: Duration = Duration::from_secs(window::HORIZON_SECS as u64);
/// A TAP base URL: the client appends the API path; credentials go in `principal` and `secret`.
const TAP_BASE_URL: UrlRules<'static> = UrlRules {
    credentials_hint: "use principal and secret",
    complete: false,
};

/// The API paths a pasted `base_url` may end with, longest first; each names the base before it.
const API_PATHS: [&str; 3] = ["/v2/siem/all", "/v2/siem", "/v2"];

/// Why a tenant's `base_url` (read through [`TenantConfig::base_url`]) still carries an API path,
/// a query or a fragment, which the client's own path would be appended to.
fn base_url_path_problem(pasted: &str, base: &str) -> Option<String> {
    let after_scheme = base.find("://").map(|i| i + 3).unwrap_or(0);
    let at = base[after_scheme..].find(['/', '?', '#'])? + after_scheme;
    let path = &base[at..];
    if path.contains(['?', '#']) || path.contains("/v2/") || path.ends_with("/v2") {
        return Some(format!(
            "`{pasted}` has the path `{path}`; give the API's base URL (`{}`): tapfwd adds each request's path",
            &base[..at]
        ));
    }
    None
}

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory of the state store (checkpoints, dedupe keys, request budget). Created if absent.
    /// Relative paths are taken from the working directory.
    pub state_dir: PathBuf,
    /// Address of the admin endpoint (`/metrics`, `/healthz`, `/readyz`, `/status`). Off when
    /// absent. Keep it on loopback unless `admin_token_env` is set; the daemon warns at start
    /// when it is not.
    #[serde(default)]
    pub admin_listen: Option<SocketAddr>,
    /// Name of an environment variable holding a bearer token that `/status` and `/metrics`
    /// then require (`Authorization: Bearer TOKEN`); `/healthz` and `/readyz` stay open for
    /// probes. `tapfwd status` sends it. Default: none (no authentication).
    #[serde(default)]
    pub admin_token_env: Option<String>,
    /// How and when tenants are polled.
    #[serde(default)]
    pub poll: PollConfig,
    /// Log output.
    #[serde(default)]
    pub log: LogConfig,
    /// How threat enrichment looks things up, for the tenants that set `enrich`.
    #[serde(default)]
    pub enrichment: crate::enrich::EnrichConfig,
    /// Destinations, by name. Tenants refer to them in their `sinks` list.
    #[serde(default)]
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Client organisations, by id. The id appears in the output (`tenant` field), in metrics
    /// labels and in the state store; it must match `[A-Za-z0-9_.-]{1,64}`.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// A directory of more tenants, one file per client organisation: `ID.toml` holds the keys of
    /// a `[tenants.ID]` table (`principal`, `secret_credential`, `sinks`, ...). Relative paths are
    /// taken from the directory of the main config file. Files not ending in `.toml` and hidden
    /// files are ignored; an id defined both here and in the main file is an error. Environment
    /// overrides do not apply to these files. Off when absent.
    #[serde(default)]
    pub tenants_dir: Option<PathBuf>,
    /// This replica's share of the tenants, `"I/N"` (replica I of N, from 0): only tenants whose
    /// id hashes to I are polled (see [`crate::shard`]). `tapfwd run --shard I/N` overrides it.
    /// Off when absent: every tenant is polled.
    #[serde(default)]
    pub shard: Option<Shard>,
    /// The file of each tenant that came from `tenants_dir`, for messages.
    #[serde(skip)]
    pub tenant_sources: BTreeMap<String, PathBuf>,
    /// A hash of each sink's settings as written (secrets included, so a changed token counts),
    /// for reload to tell which sinks changed. Never shown.
    #[serde(skip)]
    pub sink_fingerprints: BTreeMap<String, String>,
}

/// Polling schedule and limits, shared by all tenants.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollConfig {
    /// How often a caught-up tenant asks for the next window. Default `5m`; at least `1m`.
    #[serde(with = "humantime_serde", default = "default_interval")]
    pub interval: Duration,
    /// Availability lag: windows end at least this long before now, because the API publishes
    /// events up to about 30 minutes late. Default `30m`; at least `1m`. Lower values lose late
    /// events.
    #[serde(with = "humantime_serde", default = "default_lag")]
    pub lag: Duration,
    /// Longest window asked for in one request, between `30s` and `1h`. Default `1h`.
    #[serde(with = "humantime_serde", default = "default_max_window")]
    pub max_window: Duration,
    /// Where a tenant with no checkpoint starts: this long before `now - lag`. Default `1h`, at
    /// most `7d` (the API's horizon).
    #[serde(with = "humantime_serde", default = "default_initial_lookback")]
    pub initial_lookback: Duration,
    /// Windows fetched at once across all tenants. Default `16`.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How long dedupe keys are remembered after the window that delivered them. It must cover
    /// every overlap the daemon can produce (the inclusive window end, a window retried after a
    /// partial delivery). Default `2h`.
    #[serde(with = "humantime_serde", default = "default_dedupe_horizon")]
    pub dedupe_horizon: Duration,
    /// Largest number of events handed to a sink at once. Default `10000`.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// Largest number of raw event bytes handed to a sink at once. Default `1048576` (1 MiB;
    /// 8 MiB before issue 13: larger batches saved no measurable CPU and cost memory per window
    /// in flight).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: usize,
    /// Most raw event bytes that the batches of all windows together may hold between the
    /// response readers and the sinks (waiting to be delivered or being delivered), in bytes. A
    /// reader whose next batch does not fit waits, its response unread (the server waits too),
    /// so peak memory is about `buffer_bytes + concurrency × batch_bytes` above idle whatever
    /// the size of the responses. Default `8388608` (8 MiB); at least `batch_bytes`.
    #[serde(default = "default_buffer_bytes")]
    pub buffer_bytes: usize,
    /// Longest wait for the next bytes of a response (not for the whole response, which may be
    /// hundreds of MB). Default `60s`; at least `1s`.
    #[serde(with = "humantime_serde", default = "default_read_timeout")]
    pub read_timeout: Duration,
    /// Longest a whole window may take, from the request to its last event, before it fails and
    /// is retried with backoff (releasing its concurrency permit): a response that trickles a
    /// byte at a time under `read_timeout`, or never ends, cannot hold a tenant or a permit
    /// forever. Default `30m`, far above a large real hour (hundreds of MB in a few minutes);
    /// at least `1s`.
    #[serde(with = "humantime_serde", default = "default_window_deadline")]
    pub window_deadline: Duration,
    /// Most events one window may hold; a response with more fails (`window over
    /// poll.max_window_events`) and is retried after `max_backoff`, loudly. The largest real
    /// hours are hundreds of thousands of events. Default `5000000`; at least `1000`.
    #[serde(default = "default_max_window_events")]
    pub max_window_events: u64,
    /// Most raw event bytes one window may hold, as `max_window_events`. Default `8589934592`
    /// (8 GiB; a large real hour is about 600 MB); at least `1048576`.
    #[serde(default = "default_max_window_bytes")]
    pub max_window_bytes: u64,
    /// Longest wait between retries of a failing window or sink. Default `10m`; at least `1s`.
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// How long a stopping daemon waits for in-flight windows. Default `20s`; at least `1s`.
    #[serde(with = "humantime_serde", default = "default_shutdown_grace")]
    pub shutdown_grace: Duration,
    /// How long the state store may keep failing (writes or flushes erroring, a disk full, a
    /// flush that does not return) before the daemon exits non-zero, so that the service manager
    /// restarts it and the store is opened afresh (sled does not recover from an I/O error in a
    /// running process). Meanwhile `/readyz` answers 503 and the store is retried. Default `2m`;
    /// at least `5s`.
    #[serde(with = "humantime_serde", default = "default_store_failure_exit")]
    pub store_failure_exit: Duration,
}

fn default_interval() -> Duration {
    Duration::from_secs(300)
}
fn default_lag() -> Duration {
    Duration::from_secs(1800)
}
fn default_max_window() -> Duration {
    MAX_WINDOW
}
fn default_initial_lookback() -> Duration {
    Duration::from_secs(3600)
}
fn default_concurrency() -> usize {
    16
}
fn default_dedupe_horizon() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_batch_events() -> usize {
    10_000
}
fn default_batch_bytes() -> usize {
    1 << 20
}
fn default_buffer_bytes() -> usize {
    8 << 20
}
fn default_read_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_window_deadline() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_max_window_events() -> u64 {
    5_000_000
}
fn default_max_window_bytes() -> u64 {
    8 << 30
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(600)
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(20)
}
fn default_store_failure_exit() -> Duration {
    Duration::from_secs(120)
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            interval: default_interval(),
            lag: default_lag(),
            max_window: default_max_window(),
            initial_lookback: default_initial_lookback(),
            concurrency: default_concurrency(),
            dedupe_horizon: default_dedupe_horizon(),
            batch_events: default_batch_events(),
            batch_bytes: default_batch_bytes(),
            buffer_bytes: default_buffer_bytes(),
            read_timeout: default_read_timeout(),
            window_deadline: default_window_deadline(),
            max_window_events: default_max_window_events(),
            max_window_bytes: default_max_window_bytes(),
            max_backoff: default_max_backoff(),
            shutdown_grace: default_shutdown_grace(),
            store_failure_exit: default_store_failure_exit(),
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default; human-readable) or `json` (one object per line, for journald or a log
    /// shipper). `RUST_LOG` sets the level filter (default `info`).
    #[serde(default)]
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// One client organisation's TAP credentials and destinations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// Which Proofpoint product the credentials are for: `"tap"` (TAP SIEM API, the default) or
    /// `"essentials"` (the Proofpoint Essentials Threat API: same shape, a 72-hour horizon, and
    /// for a partner key the child organisations' events too).
    #[serde(default)]
    pub product: Product,
    /// Base URL of the API. TAP: default `https://tap-api-v2.proofpoint.com`. Essentials:
    /// required, the region's host (`https://us1-siem.proofpointessentials.com`, `eu1`, …). An
    /// `http://` URL sends the Basic credentials in cleartext: it is refused unless its host is
    /// loopback or `allow_http` is set. Read it with [`TenantConfig::base_url`].
    #[serde(default, rename = "base_url")]
    pub base_url_setting: Option<String>,
    /// Essentials: ask for the key's own organisation's events (`ownData`). Default `true`.
    #[serde(default = "default_true")]
    pub own_data: bool,
    /// Essentials: ask for the child organisations' events too (`customerData`; a partner key
    /// created for "my organisation and all child organisations"). Default `false`.
    #[serde(default)]
    pub customer_data: bool,
    /// Essentials: per child organisation (`customerEid`), the sinks its events go to instead of
    /// `sinks`. Each routed sink keeps its own checkpoint, so one client's SIEM being down holds
    /// back only that client's events. Default: none (every event goes to `sinks`).
    #[serde(default)]
    pub customer_sinks: BTreeMap<String, Vec<String>>,
    /// Accept an `http://` `base_url` on a host that is not loopback (a test rig, a TLS-ending
    /// proxy on a trusted network); the daemon warns about it at start. Default `false`.
    #[serde(default)]
    pub allow_http: bool,
    /// The service principal (Settings → Connected Applications in the TAP dashboard). Required
    /// for TAP and Essentials; PoD tenants have none.
    #[serde(default)]
    pub principal: String,
    /// The secret, inline. Prefer `secret_env`, `secret_file` or `secret_credential`.
    #[serde(default)]
    pub secret: Option<SecretString>,
    /// Name of an environment variable that holds the secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Path of a file whose content (trailing newline removed) is the secret.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// Name of a systemd credential (`LoadCredential=NAME:...`), read from
    /// `$CREDENTIALS_DIRECTORY/NAME`.
    #[serde(default)]
    pub secret_credential: Option<String>,
    /// Names of the sinks this tenant's events go to; at least one.
    pub sinks: Vec<String>,
    /// The tenant's rolling 24-hour request quota for the SIEM endpoints. Default `1800`.
    #[serde(default = "default_requests_per_day")]
    pub requests_per_day: u32,
    /// Which threat verdicts to collect (`active`, `cleared`, `falsePositive`). Default: all
    /// three. The API's own default leaves out `falsePositive`, but a SIEM needs those verdicts
    /// to close the alerts it raised.
    #[serde(default = "default_threat_status")]
    pub threat_status: Vec<ThreatStatus>,
    /// Threat enrichment beside this tenant's events: `"threats"` (each `threatID`'s summary),
    /// `"campaigns"` (each `campaignID`'s campaign). Default: none. Tuned under `[enrichment]`.
    #[serde(default)]
    pub enrich: Vec<crate::enrich::EnrichKind>,
    /// Snapshots of the People lists (Very Attacked People, top clickers) into the SIEM, on a
    /// schedule and within each endpoint's 50 requests a day. Default: none. TAP tenants only.
    #[serde(default)]
    pub people: Option<PeopleConfig>,
    /// PoD: the cluster id (`cid`), as shown in the PoD admin console. Required for PoD.
    #[serde(default)]
    pub cluster_id: Option<String>,
    /// PoD: the log stream's bearer token, inline. Prefer `token_env`, `token_file` or
    /// `token_credential`.
    #[serde(default)]
    pub token: Option<SecretString>,
    /// PoD: name of an environment variable that holds the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// PoD: path of a file whose content (trailing newline removed) is the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PoD: name of a systemd credential holding the token.
    #[serde(default)]
    pub token_credential: Option<String>,
    /// PoD: the log types to stream, one connection each: `message`, `maillog`, `audit`.
    /// Default `["message", "maillog"]`.
    #[serde(default = "default_pod_types")]
    pub types: Vec<PodType>,
    /// PoD: how often a live connection is pinged; a connection that answers a ping with no pong
    /// within half this interval is replaced. Default 2m30s (the service drops idle connections after about
    /// 5 minutes).
    #[serde(default = "default_ping_interval", with = "humantime_serde")]
    pub ping_interval: Duration,
    /// PoD: how old events must be before archive mode (`sinceTime`/`toTime`) serves them.
    /// Default 30m.
    #[serde(default = "default_archive_lag", with = "humantime_serde")]
    pub archive_lag: Duration,
    /// PoD: how far back archive mode reaches; a gap older than this is reported, not fetched.
    /// Default 30d (Proofpoint's figure, not verified).
    #[serde(default = "default_archive_horizon", with = "humantime_serde")]
    pub archive_horizon: Duration,
}

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

/// PoD's stream host.
pub const POD_BASE_URL: &str = "wss://logstream.proofpoint.com";

impl Config {
    /// The admin endpoint's bearer token, read from `admin_token_env` (none when it is unset).
    pub fn admin_token(&self, env: Env<'_>) -> Result<Option<SecretString>, SecretError> {
        let Some(var) = self.admin_token_env.as_deref() else {
            return Ok(None);
        };
        SecretSource {
            key: "admin_token",
            inline: None,
            env: Some(var),
            file: None,
        }
        .resolve(env)
        .map(Some)
    }
}

/// The Proofpoint product a tenant's credentials are for (`product = "…"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    /// The TAP SIEM API.
    #[default]
    Tap,
    /// The Proofpoint Essentials Threat API.
    Essentials,
    /// The Proofpoint on Demand (PoD) log stream (WebSocket).
    Pod,
}

impl Product {
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Tap => "tap",
            Product::Essentials => "essentials",
            Product::Pod => "pod",
        }
    }

    /// How far into the past the product's SIEM API serves, in seconds: TAP 7 days, Essentials
    /// 3 days.
    pub fn horizon_secs(self) -> i64 {
        match self {
            Product::Tap => window::HORIZON_SECS,
            Product::Essentials | Product::Pod => window::ESSENTIALS_HORIZON_SECS,
        }
    }
}

impl TenantConfig {
    /// The API's base URL: `base_url`, else the TAP default (Essentials has none; `check`
    /// refuses an Essentials tenant without it).
    ///
    /// A URL pasted with the API's path (`…/v2/siem/all`, `…/v2/siem`, `…/v2`, a trailing slash)
    /// names the same base, and is read as that base; `check` refuses any other `/v2/` path.
    pub fn base_url(&self) -> &str {
        let url = self
            .base_url_setting
            .as_deref()
            .unwrap_or(match self.product {
                Product::Pod => POD_BASE_URL,
                _ => "https://tap-api-v2.proofpoint.com",
            });
        let mut base = url.trim_end_matches('/');
        for suffix in API_PATHS {
            if let Some(b) = base.strip_suffix(suffix) {
                base = b;
                break;
            }
        }
        base
    }

    /// What a SIEM request for this tenant sends: the principal, `secret`, and the parameters
    /// its product takes (TAP: `threatStatus`; Essentials: `ownData`, `customerData`).
    pub fn credentials<'a>(&'a self, secret: &'a SecretString) -> Credentials<'a> {
        let flag = |b: bool| if b { "true" } else { "false" };
        let params = match self.product {
            Product::Tap => self
                .threat_status
                .iter()
                .map(|s| ("threatStatus", s.as_str()))
                .collect(),
            Product::Essentials => vec![
                ("ownData", flag(self.own_data)),
                ("customerData", flag(self.customer_data)),
            ],
            Product::Pod => Vec::new(),
        };
        Credentials {
            principal: &self.principal,
            secret,
            params,
        }
    }

    /// All the sinks this tenant's events can go to: `sinks`, then those only routed customers'
    /// events go to, each once.
    pub fn all_sinks(&self) -> Vec<String> {
        let mut out = self.sinks.clone();
        let people = self.people.iter().filter_map(|p| p.sinks.as_ref());
        for sinks in self.customer_sinks.values().chain(people) {
            for s in sinks {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// Whether sink `sink` takes the events of `customer` (an Essentials `customerEid`; `None`
    /// for events without one): a routed customer's events go to its `customer_sinks`, every
    /// other event to `sinks`.
    pub fn routes(&self, sink: &str, customer: Option<&str>) -> bool {
        match customer.and_then(|c| self.customer_sinks.get(c)) {
            Some(routed) => routed.iter().any(|s| s == sink),
            None => self.sinks.iter().any(|s| s == sink),
        }
    }

    /// Whether `base_url` is `http://` to a host that is not loopback: the credentials would
    /// cross a network in cleartext.
    pub fn cleartext_http(&self) -> bool {
        let Ok(url) = reqwest::Url::parse(self.base_url()) else {
            return false;
        };
        if url.scheme() != "http" && url.scheme() != "ws" {
            return false;
        }
        let Some(host) = url.host_str() else {
            return true;
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.eq_ignore_ascii_case("localhost") {
            return false;
        }
        host.parse::<std::net::IpAddr>()
            .map_or(true, |ip| !ip.is_loopback())
    }
}

fn default_threat_status() -> Vec<ThreatStatus> {
    ThreatStatus::ALL.to_vec()
}

fn default_true() -> bool {
    true
}
fn default_requests_per_day() -> u32 {
    1800
}

/// A configuration problem, naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("{path}: config key `{key}`: {message}")]
    FileKey {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl ConfigError {
    fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Every problem found, one per line.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        ConfigErrors(vec![e])
    }
}

/// The config key a sink's validation message is about: a message that opens with one of the
/// sink's own keys (`url: …`, `retry.max_time: …`) names `sinks.NAME.url`; any other names the
/// sink, `sinks.NAME`.
fn sink_key(name: &str, message: String) -> (String, String) {
    if let Some((sub, rest)) = message.split_once(": ") {
        let is_key = !sub.is_empty()
            && sub
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.');
        if is_key {
            return (format!("sinks.{name}.{sub}"), rest.to_string());
        }
    }
    (format!("sinks.{name}"), message)
}

/// A name usable as a tenant id or sink name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Config {
    /// Reads `path` (TOML) with `TAPFWD__` environment overrides, adds the tenants of
    /// `tenants_dir` (relative to `path`'s directory), then validates the whole.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut config = Config::parse(&text, std::env::vars())?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.load_tenants_dir(base, path)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text with the given environment (only `TAPFWD__*` variables are used), adds
    /// the tenants of `tenants_dir` (relative to the working directory), then validates it.
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let main = Path::new("(config)");
        let mut config = Config::parse(text, env)?;
        config.load_tenants_dir(Path::new("."), main)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses without validating or reading `tenants_dir`.
    fn parse(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let overrides: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("TAPFWD__"))
            .collect();
        let layered = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .add_source(
                config::Environment::with_prefix("TAPFWD")
                    .prefix_separator("__")
                    .separator("__")
                    .source(Some(overrides)),
            )
            .build()
            .map_err(|e| ConfigError::key("(file)", e.to_string()))?;
        let raw_sinks: BTreeMap<String, serde_json::Value> =
            layered.get("sinks").unwrap_or_default();
        let mut config: Config = serde_path_to_error::deserialize(layered).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." {
                "(top level)".into()
            } else {
                key
            };
            ConfigError::key(key, e.into_inner().to_string())
        })?;
        for name in config.sinks.keys() {
            let fingerprint = match raw_sinks.get(name) {
                Some(v) => blake3::hash(v.to_string().as_bytes()).to_hex().to_string(),
                None => String::new(),
            };
            config.sink_fingerprints.insert(name.clone(), fingerprint);
        }
        Ok(config)
    }

    /// Adds one tenant per `ID.toml` in `tenants_dir` (relative to `base`); `main` is the main
    /// file's path, for the duplicate message.
    fn load_tenants_dir(&mut self, base: &Path, main: &Path) -> Result<(), ConfigErrors> {
        let Some(dir) = &self.tenants_dir else {
            return Ok(());
        };
        let dir = base.join(dir);
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            ConfigError::key(
                "tenants_dir",
                format!("cannot read directory {}: {e}", dir.display()),
            )
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !name.starts_with('.') && name.ends_with(".toml") && p.is_file()
            })
            .collect();
        files.sort();
        let mut errors = Vec::new();
        for path in files {
            let id = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if self.tenants.contains_key(&id) {
                errors.push(ConfigError::key(
                    format!("tenants.{id}"),
                    format!(
                        "defined twice: in {} and in {}",
                        main.display(),
                        path.display()
                    ),
                ));
                continue;
            }
            match read_tenant_file(&path) {
                Ok(tenant) => {
                    self.tenants.insert(id.clone(), tenant);
                    self.tenant_sources.insert(id, path);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Keeps only the tenants `shard` owns (all of them when `None`).
    pub fn retain_shard(&mut self, shard: Option<Shard>) {
        if let Some(shard) = shard {
            self.tenants.retain(|id, _| shard.owns(id));
            self.tenant_sources.retain(|id, _| shard.owns(id));
        }
    }

    /// Checks everything that needs no I/O; reports every problem found, each with its key.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        let mut err = |key: String, message: String| errors.push(ConfigError::key(key, message));
        let p = &self.poll;
        if p.max_window < MIN_WINDOW || p.max_window > MAX_WINDOW {
            err(
                "poll.max_window".into(),
                format!(
                    "must be between 30s and 1h (the API's limits), got {}",
                    humantime::format_duration(p.max_window)
                ),
            );
        }
        if p.interval < Duration::from_secs(60) {
            err(
                "poll.interval".into(),
                format!(
                    "must be at least 1m, got {}",
                    humantime::format_duration(p.interval)
                ),
            );
        }
        if p.initial_lookback > API_HORIZON {
            err(
                "poll.initial_lookback".into(),
                "must be at most 7d (the API keeps 7 days)".into(),
            );
        }
        if p.lag >= API_HORIZON {
            err("poll.lag".into(), "must be well under 7d".into());
        }
        // Durations that make no sense at zero (a zero read_timeout fetches nothing): each has a
        // lower bound, and the message names the key.
        for (key, value, min) in [
            ("poll.lag", p.lag, Duration::from_secs(60)),
            ("poll.read_timeout", p.read_timeout, Duration::from_secs(1)),
            ("poll.max_backoff", p.max_backoff, Duration::from_secs(1)),
            (
                "poll.shutdown_grace",
                p.shutdown_grace,
                Duration::from_secs(1),
            ),
            (
                "poll.store_failure_exit",
                p.store_failure_exit,
                Duration::from_secs(5),
            ),
        ] {
            if value < min {
                err(
                    key.into(),
                    format!(
                        "must be at least {}, got {}",
                        humantime::format_duration(min),
                        humantime::format_duration(value)
                    ),
                );
            }
        }
        if p.window_deadline < Duration::from_secs(1) {
            err(
                "poll.window_deadline".into(),
                format!(
                    "must be at least 1s, got {}",
                    humantime::format_duration(p.window_deadline)
                ),
            );
        }
        if p.max_window_events < 1000 {
            err(
                "poll.max_window_events".into(),
                format!("must be at least 1000, got {}", p.max_window_events),
            );
        }
        if p.max_window_bytes < 1 << 20 {
            err(
                "poll.max_window_bytes".into(),
                format!("must be at least 1048576, got {}", p.max_window_bytes),
            );
        }
        if p.concurrency == 0 {
            err("poll.concurrency".into(), "must be at least 1".into());
        }
        if p.batch_events == 0 || p.batch_bytes < 4096 {
            err(
                "poll.batch_events".into(),
                "batch_events must be at least 1 and batch_bytes at least 4096".into(),
            );
        }
        if p.buffer_bytes < p.batch_bytes {
            err(
                "poll.buffer_bytes".into(),
                format!(
                    "must be at least poll.batch_bytes ({}), got {}",
                    p.batch_bytes, p.buffer_bytes
                ),
            );
        }
        if p.dedupe_horizon < p.max_window {
            err(
                "poll.dedupe_horizon".into(),
                "must be at least poll.max_window, or overlapping windows could repeat events"
                    .into(),
            );
        }
        if let Err((key, message)) = self.enrichment.validate() {
            err(format!("enrichment.{key}"), message);
        }
        if self.tenants.is_empty() {
            err("tenants".into(), "no tenants are configured".into());
        }
        for (name, sink) in &self.sinks {
            if !valid_name(name) {
                err(
                    format!("sinks.{name}"),
                    "sink names must match [A-Za-z0-9_.-]{1,64}".into(),
                );
            }
            if let Err(message) = sink.validate() {
                let (key, message) = sink_key(name, message);
                err(key, message);
            }
        }
        for (id, t) in &self.tenants {
            let file = self
                .tenant_sources
                .get(id)
                .map(|p| format!(" (in {})", p.display()))
                .unwrap_or_default();
            let key = |k: &str| format!("tenants.{id}.{k}{file}");
            if !valid_name(id) {
                err(
                    format!("tenants.{id}{file}"),
                    "tenant ids must match [A-Za-z0-9_.-]{1,64}".into(),
                );
            }
            if t.product == Product::Pod {
                validate_pod(t, &key, &mut err);
            } else {
                for (set, name) in [
                    (t.cluster_id.is_some(), "cluster_id"),
                    (t.token.is_some(), "token"),
                    (t.token_env.is_some(), "token_env"),
                    (t.token_file.is_some(), "token_file"),
                    (t.token_credential.is_some(), "token_credential"),
                ] {
                    if set {
                        err(
                            key(name),
                            "is a PoD setting; this tenant is not product = \"pod\"".into(),
                        );
                    }
                }
            }
            if t.product != Product::Pod && t.principal.trim().is_empty() {
                err(key("principal"), "is empty".into());
            }
            let sources = [
                t.secret.is_some(),
                t.secret_env.is_some(),
                t.secret_file.is_some(),
                t.secret_credential.is_some(),
            ]
            .iter()
            .filter(|s| **s)
            .count();
            if t.product == Product::Pod {
                // The token's sources are checked in `validate_pod`.
            } else if sources != 1 {
                err(
                    key("secret"),
                    format!("exactly one of secret, secret_env, secret_file, secret_credential must be set, found {sources}"),
                );
            }
            if t.product == Product::Pod {
                // Checked in `validate_pod`.
            } else if t.product == Product::Essentials && t.base_url_setting.is_none() {
                err(
                    key("base_url"),
                    "an essentials tenant needs its region's host, e.g. https://us1-siem.proofpointessentials.com".into(),
                );
            } else if let Some(problem) = net::url_problem(t.base_url(), TAP_BASE_URL) {
                err(key("base_url"), problem);
            } else if let Some(problem) = t
                .base_url_setting
                .as_deref()
                .and_then(|pasted| base_url_path_problem(pasted, t.base_url()))
            {
                err(key("base_url"), problem);
            } else if t.cleartext_http() && !t.allow_http {
                err(
                    key("base_url"),
                    "http:// sends the credentials in cleartext: use https://, or set allow_http = true for this tenant".into(),
                );
            }
            if t.sinks.is_empty() {
                err(key("sinks"), "lists no sinks".into());
            }
            if t.threat_status.is_empty() {
                err(key("threat_status"), "lists no verdicts".into());
            }
            for s in &t.sinks {
                if !self.sinks.contains_key(s) {
                    err(key("sinks"), format!("refers to undefined sink `{s}`"));
                }
            }
            if t.product != Product::Essentials {
                if !t.customer_sinks.is_empty() {
                    err(
                        key("customer_sinks"),
                        "routes Essentials child organisations; this tenant is not product = \"essentials\"".into(),
                    );
                }
                if t.customer_data {
                    err(
                        key("customer_data"),
                        "is an Essentials setting; this tenant is not product = \"essentials\""
                            .into(),
                    );
                }
            } else if !t.own_data && !t.customer_data {
                err(
                    key("own_data"),
                    "own_data and customer_data are both false: nothing would be collected".into(),
                );
            }
            if let Some(people) = &t.people {
                if t.product != Product::Tap {
                    err(
                        key("people"),
                        "the People API is TAP's; this tenant is not product = \"tap\"".into(),
                    );
                }
                if let Err((k, message)) = people.validate() {
                    err(key(&format!("people.{k}")), message);
                }
                for s in people.sinks.iter().flatten() {
                    if !self.sinks.contains_key(s) {
                        err(
                            key("people.sinks"),
                            format!("refers to undefined sink `{s}`"),
                        );
                    }
                }
            }
            for (customer, sinks) in &t.customer_sinks {
                let routed = key(&format!("customer_sinks.{customer}"));
                if customer.is_empty() || !customer.bytes().all(|b| b.is_ascii_graphic()) {
                    err(
                        routed.clone(),
                        "a customerEid is a non-empty id without spaces".into(),
                    );
                }
                if sinks.is_empty() {
                    err(routed.clone(), "lists no sinks".into());
                }
                for s in sinks {
                    if !self.sinks.contains_key(s) {
                        err(routed.clone(), format!("refers to undefined sink `{s}`"));
                    }
                }
            }
            let steady = 86_400 / p.interval.as_secs().max(60);
            if t.product != Product::Pod && u64::from(t.requests_per_day) <= steady {
                err(
                    key("requests_per_day"),
                    format!(
                        "{} is not more than the {steady} requests a day that polling every {} needs",
                        t.requests_per_day,
                        humantime::format_duration(p.interval)
                    ),
                );
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Reads every tenant's secret from where its config says; errors name the key.
    pub fn resolve_secrets(
        &self,
        env: Env<'_>,
    ) -> Result<BTreeMap<String, SecretString>, ConfigErrors> {
        let mut out = BTreeMap::new();
        let mut errors = Vec::new();
        for (id, t) in &self.tenants {
            match resolve_secret(id, t, env) {
                Ok(s) => {
                    out.insert(id.clone(), s);
                }
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(ConfigErrors(errors))
        }
    }
}

/// One `tenants_dir` file: the keys of a `[tenants.ID]` table.
fn read_tenant_file(path: &Path) -> Result<TenantConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let file_error = |key: String, message: String| ConfigError::FileKey {
        path: path.to_owned(),
        key,
        message,
    };
    let layered = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .build()
        .map_err(|e| file_error("(file)".into(), e.to_string()))?;
    serde_path_to_error::deserialize(layered).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." {
            "(top level)".into()
        } else {
            key
        };
        file_error(key, e.into_inner().to_string())
    })
}

/// The PoD keys of tenant `t`; `key` names a key of that tenant.
fn validate_pod(
    t: &TenantConfig,
    key: &dyn Fn(&str) -> String,
    err: &mut dyn FnMut(String, String),
) {
    match t.cluster_id.as_deref().map(str::trim) {
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
    let sources = [
        t.token.is_some(),
        t.token_env.is_some(),
        t.token_file.is_some(),
        t.token_credential.is_some(),
    ]
    .iter()
    .filter(|s| **s)
    .count();
    if sources != 1 {
        err(
            key("token"),
            format!("exactly one of token, token_env, token_file, token_credential must be set, found {sources}"),
        );
    }
    for (set, name) in [
        (!t.principal.is_empty(), "principal"),
        (t.secret.is_some(), "secret"),
        (t.secret_env.is_some(), "secret_env"),
        (t.secret_file.is_some(), "secret_file"),
        (t.secret_credential.is_some(), "secret_credential"),
        (t.people.is_some(), "people"),
        (!t.enrich.is_empty(), "enrich"),
        (!t.customer_sinks.is_empty(), "customer_sinks"),
    ] {
        if set {
            err(
                key(name),
                "is not a PoD setting (a pod tenant has cluster_id and a token)".into(),
            );
        }
    }
    if t.types.is_empty() {
        err(
            key("types"),
            "lists no log types (message, maillog, audit)".into(),
        );
    }
    let mut seen = t.types.clone();
    seen.sort();
    seen.dedup();
    if seen.len() != t.types.len() {
        err(key("types"), "names a log type twice".into());
    }
    let url = t.base_url();
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "wss" || u.scheme() == "ws" => {
            if !u.username().is_empty() || u.password().is_some() {
                err(
                    key("base_url"),
                    "must not carry credentials; use the token keys".into(),
                );
            } else if u.host_str().map_or(true, str::is_empty) {
                err(key("base_url"), format!("`{url}` has no host"));
            } else if t.cleartext_http() && !t.allow_http {
                err(
                    key("base_url"),
                    "ws:// sends the token in cleartext: use wss://, or set allow_http = true for this tenant".into(),
                );
            }
        }
        _ => err(key("base_url"), format!("`{url}` is not a wss:// URL")),
    }
    if t.ping_interval < Duration::from_secs(1) || t.ping_interval > Duration::from_secs(240) {
        err(
            key("ping_interval"),
            format!(
                "must be between 1s and 4m (the service drops idle connections after about 5 minutes), got {}",
                humantime::format_duration(t.ping_interval)
            ),
        );
    }
    if t.archive_horizon <= t.archive_lag + Duration::from_secs(3600) {
        err(
            key("archive_horizon"),
            "must be more than archive_lag plus an hour".into(),
        );
    }
}

fn resolve_secret(id: &str, t: &TenantConfig, env: Env<'_>) -> Result<SecretString, ConfigError> {
    if t.product == Product::Pod {
        if let Some(name) = &t.token_credential {
            return Ok(secret::read_credential(
                format!("tenants.{id}.token_credential"),
                name,
                env,
            )?);
        }
        return Ok(SecretSource {
            key: &format!("tenants.{id}.token"),
            inline: t.token.as_ref(),
            env: t.token_env.as_deref(),
            file: t.token_file.as_deref(),
        }
        .resolve(env)?);
    }
    if let Some(name) = &t.secret_credential {
        return Ok(secret::read_credential(
            format!("tenants.{id}.secret_credential"),
            name,
            env,
        )?);
    }
    Ok(SecretSource {
        key: &format!("tenants.{id}.secret"),
        inline: t.secret.as_ref(),
        env: t.secret_env.as_deref(),
        file: t.secret_file.as_deref(),
    }
    .resolve(env)?)
}

impl From<SecretError> for ConfigError {
    fn from(e: SecretError) -> Self {
        ConfigError::Key {
            key: e.key,
            message: e.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    const GOOD: &str = r#"
state_dir = "var/state"
[poll]
interval = "5m"
[sinks.archive]
type = "file"
path = "var/events.ndjson"
[tenants.acme]
principal = "p-acme"
secret_env = "ACME_TAP_SECRET"
sinks = ["archive"]
"#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, String> {
        Config::from_toml_with_env(
            text,
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn good_config_loads_with_defaults() {
        let c = load(GOOD, &[]).unwrap();
        assert_eq!(c.poll.interval, Duration::from_secs(300));
        assert_eq!(c.poll.lag, Duration::from_secs(1800));
        assert_eq!(c.poll.max_window, Duration::from_secs(3600));
        assert_eq!(c.tenants["acme"].requests_per_day, 1800);
        assert_eq!(
            c.tenants["acme"].base_url(),
            "https://tap-api-v2.proofpoint.com"
        );
    }

    #[test]
    fn env_overrides_use_double_underscore() {
        let c = load(
            GOOD,
            &[
                ("TAPFWD__POLL__INTERVAL", "10m"),
                ("TAPFWD__POLL__CONCURRENCY", "3"),
            ],
        )
        .unwrap();
        assert_eq!(c.poll.interval, Duration::from_secs(600));
        assert_eq!(c.poll.concurrency, 3);
    }

    #[test]
    fn unknown_key_is_named() {
        let text = GOOD.replace("interval = \"5m\"", "intervall = \"5m\"");
        let e = load(&text, &[]).unwrap_err();
        assert!(e.contains("poll"), "{e}");
        assert!(e.contains("intervall"), "{e}");
    }

    #[test]
    fn undefined_sink_is_named() {
        let text = GOOD.replace("sinks = [\"archive\"]", "sinks = [\"splunk\"]");
        let e = load(&text, &[]).unwrap_err();
        assert!(e.contains("tenants.acme.sinks"), "{e}");
        assert!(e.contains("undefined sink `splunk`"), "{e}");
    }

    #[test]
    fn window_outside_api_limits_is_rejected() {
        for bad in ["10s", "2h"] {
            let text = GOOD.replace(
                "interval = \"5m\"",
                &format!("interval = \"5m\"\nmax_window = \"{bad}\""),
            );
            let e = load(&text, &[]).unwrap_err();
            assert!(e.contains("poll.max_window"), "{e}");
        }
    }

    #[test]
    fn buffer_budget_smaller_than_a_batch_is_rejected() {
        let text = GOOD.replace(
            "interval = \"5m\"",
            "interval = \"5m\"\nbatch_bytes = 65536\nbuffer_bytes = 65535",
        );
        let e = load(&text, &[]).unwrap_err();
        assert!(e.contains("poll.buffer_bytes"), "{e}");
        assert!(e.contains("65536"), "{e}");
        let text = GOOD.replace(
            "interval = \"5m\"",
            "interval = \"5m\"\nbatch_bytes = 65536\nbuffer_bytes = 65536",
        );
        assert_eq!(load(&text, &[]).unwrap().poll.buffer_bytes, 65536);
        assert_eq!(load(GOOD, &[]).unwrap().poll.buffer_bytes, 8 << 20);
    }

    #[test]
    fn missing_credentials_are_named() {
        let text = GOOD.replace("secret_env = \"ACME_TAP_SECRET\"\n", "");
        let e = load(&text, &[]).unwrap_err();
        assert!(e.contains("tenants.acme.secret"), "{e}");
        let text = GOOD.replace("principal = \"p-acme\"\n", "");
        let e = load(&text, &[]).unwrap_err();
        assert!(e.contains("tenants.acme"), "{e}");
        assert!(e.contains("principal"), "{e}");
    }

    #[test]
    fn tenant_ids_keep_their_case() {
        // config 0.14 lowercased every key, silently renaming tenant `ACME` to `acme`.
        let text = GOOD.replace("[tenants.acme]", "[tenants.ACME]");
        let c = load(&text, &[]).unwrap();
        assert!(c.tenants.contains_key("ACME"));
    }

    #[test]
    fn bad_duration_names_key() {
        let text = GOOD.replace("interval = \"5m\"", "interval = \"five minutes\"");
        let e = load(&text, &[]).unwrap_err();
        assert!(e.contains("poll.interval"), "{e}");
    }

    #[test]
    fn secret_env_resolution_reports_missing_variable_without_value() {
        let c = load(GOOD, &[]).unwrap();
        let e = c.resolve_secrets(&|_| None).unwrap_err().to_string();
        assert!(e.contains("tenants.acme.secret_env"), "{e}");
        assert!(e.contains("ACME_TAP_SECRET is not set"), "{e}");
        let s = c
            .resolve_secrets(&|k| (k == "ACME_TAP_SECRET").then(|| "hunter2".to_string()))
            .unwrap();
        assert_eq!(s["acme"].expose_secret(), "hunter2");
        assert!(!format!("{:?}", s["acme"]).contains("hunter2"));
    }

    #[test]
    fn credentials_in_base_url_are_refused() {
        let text = GOOD.replace(
            "principal = \"p-acme\"",
            "principal = \"p-acme\"\nbase_url = \"https://u:pw@tap.example\"",
        );
        let e = load(&text, &[]).unwrap_err();
        assert!(e.contains("tenants.acme.base_url"), "{e}");
        assert!(!e.contains("pw@"), "{e}");
    }

    #[test]
    fn a_base_url_pasted_with_the_api_path_names_the_same_base() {
        let with = |url: &str| {
            GOOD.replace(
                "principal = \"p-acme\"",
                &format!("principal = \"p-acme\"\nbase_url = \"{url}\""),
            )
        };
        for url in [
            "https://tap-api-v2.proofpoint.com",
            "https://tap-api-v2.proofpoint.com/",
            "https://tap-api-v2.proofpoint.com/v2",
            "https://tap-api-v2.proofpoint.com/v2/siem/",
            "https://tap-api-v2.proofpoint.com/v2/siem/all",
        ] {
            let c = load(&with(url), &[]).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(
                c.tenants["acme"].base_url(),
                "https://tap-api-v2.proofpoint.com",
                "{url}"
            );
        }
        // A proxy's prefix is kept; another API path, a query or a fragment is refused.
        let c = load(&with("https://egress.example/tap/v2/siem/all"), &[]).unwrap();
        assert_eq!(c.tenants["acme"].base_url(), "https://egress.example/tap");
        for url in [
            "https://tap-api-v2.proofpoint.com/v2/siem/messages/blocked",
            "https://tap-api-v2.proofpoint.com/v2/people/vap",
            "https://tap-api-v2.proofpoint.com/?format=json",
        ] {
            let e = load(&with(url), &[]).unwrap_err();
            assert!(
                e.contains("tenants.acme.base_url")
                    && e.contains("(`https://tap-api-v2.proofpoint.com`)"),
                "{url}: {e}"
            );
        }
    }

    fn write_main_with_dir(extra_tenant: bool) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut main = GOOD.replace("[poll]", "tenants_dir = \"tenants.d\"\n[poll]");
        if !extra_tenant {
            main = main.replace(
                "[tenants.acme]\nprincipal = \"p-acme\"\nsecret_env = \"ACME_TAP_SECRET\"\nsinks = [\"archive\"]\n",
                "",
            );
        }
        std::fs::write(dir.path().join("tapfwd.toml"), main).unwrap();
        std::fs::create_dir(dir.path().join("tenants.d")).unwrap();
        dir
    }

    #[test]
    fn tenants_dir_adds_one_tenant_per_file_relative_to_main_file() {
        let dir = write_main_with_dir(true);
        let d = dir.path().join("tenants.d");
        std::fs::write(
            d.join("globex.toml"),
            "principal = \"p-globex\"\nsecret_credential = \"tap_globex\"\nsinks = [\"archive\"]\n",
        )
        .unwrap();
        std::fs::write(d.join("notes.txt"), "ignored").unwrap();
        std::fs::write(d.join(".hidden.toml"), "ignored = 1").unwrap();
        let c = Config::load(&dir.path().join("tapfwd.toml")).unwrap();
        assert_eq!(c.tenants.keys().collect::<Vec<_>>(), ["acme", "globex"]);
        assert_eq!(
            c.tenants["globex"].secret_credential.as_deref(),
            Some("tap_globex")
        );
    }

    #[test]
    fn tenant_in_both_main_file_and_dir_names_both_files() {
        let dir = write_main_with_dir(true);
        let file = dir.path().join("tenants.d").join("acme.toml");
        std::fs::write(
            &file,
            "principal = \"p\"\nsecret_env = \"X\"\nsinks = [\"archive\"]\n",
        )
        .unwrap();
        let main = dir.path().join("tapfwd.toml");
        let e = Config::load(&main).unwrap_err().to_string();
        assert!(e.contains("tenants.acme"), "{e}");
        assert!(e.contains(&main.display().to_string()), "{e}");
        assert!(e.contains(&file.display().to_string()), "{e}");
    }

    #[test]
    fn bad_key_in_tenant_file_names_file_and_key() {
        let dir = write_main_with_dir(false);
        let file = dir.path().join("tenants.d").join("initech.toml");
        std::fs::write(
            &file,
            "principal = \"p\"\nsecret_env = \"X\"\nsinks = [\"archive\"]\nrequests_per_dya = 5\n",
        )
        .unwrap();
        let e = Config::load(&dir.path().join("tapfwd.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&file.display().to_string()), "{e}");
        assert!(e.contains("requests_per_dya"), "{e}");
        std::fs::write(
            &file,
            "principal = \"p\"\nsecret_env = \"X\"\nsinks = [\"nope\"]\n",
        )
        .unwrap();
        let e = Config::load(&dir.path().join("tapfwd.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("tenants.initech.sinks"), "{e}");
        assert!(e.contains("initech.toml"), "{e}");
    }

    #[test]
    fn shard_key_is_parsed_and_filters_tenants() {
        let text = GOOD.replace("[poll]", "shard = \"1/2\"\n[poll]");
        let mut c = load(&text, &[]).unwrap();
        let shard = c.shard.unwrap();
        assert_eq!((shard.index, shard.count), (1, 2));
        let owned = shard.owns("acme");
        c.retain_shard(c.shard);
        assert_eq!(c.tenants.contains_key("acme"), owned);
        let e = load(&GOOD.replace("[poll]", "shard = \"2/2\"\n[poll]"), &[]).unwrap_err();
        assert!(e.contains("shard"), "{e}");
    }

    #[test]
    fn sink_fingerprint_changes_with_settings_only() {
        let a = load(GOOD, &[]).unwrap();
        let b = load(
            &GOOD.replace("interval = \"5m\"", "interval = \"10m\""),
            &[],
        )
        .unwrap();
        let c = load(&GOOD.replace("var/events.ndjson", "var/other.ndjson"), &[]).unwrap();
        assert!(!a.sink_fingerprints["archive"].is_empty());
        assert_eq!(
            a.sink_fingerprints["archive"],
            b.sink_fingerprints["archive"]
        );
        assert_ne!(
            a.sink_fingerprints["archive"],
            c.sink_fingerprints["archive"]
        );
    }
}
