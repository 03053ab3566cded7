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

use crate::api::window;
use crate::files;
use crate::secret::{Env, SecretError, SecretSource};
use crate::shard::Shard;
use crate::sinks::SinkConfig;

pub mod ctr;
pub mod essentials;
pub mod isolation;
pub mod itm;
pub mod people;
pub mod pod;
pub mod poll;
pub mod tap;
pub mod tenant;
pub mod trap;

pub use ctr::CtrTenant;
pub use essentials::EssentialsTenant;
pub use itm::{ItmTenant, ItmType};
pub use people::PeopleConfig;
pub use pod::{PodTenant, PodType, POD_BASE_URL};
pub use poll::{LogConfig, LogFormat, PollConfig};
pub use tap::{SiemAccount, TapTenant};
pub use tenant::{Product, TenantCheck, TenantConfig};

/// The API's limits (tap-api.md) as durations; their one definition is in [`crate::api::window`].
const MIN_WINDOW: Duration = Duration::from_secs(window::MIN_WINDOW_SECS as u64);
const MAX_WINDOW: Duration = Duration::from_secs(window::MAX_WINDOW_SECS as u64);
const API_HORIZON: Duration = Duration::from_secs(window::HORIZON_SECS as u64);

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
    /// labels and in the state store; it must match `[A-Za-z0-9_.-]{1,64}`. Each table is read
    /// by [`TenantConfig::from_value`] (its `product` picks its keys).
    #[serde(skip)]
    pub tenants: BTreeMap<String, TenantConfig>,
    /// The `[tenants.ID]` tables as written; `parse` reads them one by one into `tenants`.
    #[serde(default, rename = "tenants")]
    _tenant_tables: BTreeMap<String, serde::de::IgnoredAny>,
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
    /// Keys of another product found in a tenant's table, each with what is said of it;
    /// [`Config::validate`] reports them with the other problems.
    #[serde(skip)]
    tenant_problems: BTreeMap<String, Vec<(String, String)>>,
    /// A hash of each sink's settings as written (secrets included, so a changed token counts),
    /// for reload to tell which sinks changed. Never shown.
    #[serde(skip)]
    pub sink_fingerprints: BTreeMap<String, String>,
    /// What loading let through but should be fixed: a config file every user may write, read
    /// because `TAPFWD_ALLOW_INSECURE_FILES` is set. `check` prints them; the daemon logs them.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

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
    /// `tenants_dir` (relative to `path`'s directory), then validates the whole. Each file is read
    /// by [`files::read_config`]: a regular file of at most 4 MiB that not every user may write
    /// (unless `TAPFWD_ALLOW_INSECURE_FILES=1`, then with a warning in [`Config::warnings`]).
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let allow_insecure =
            files::allows_insecure(std::env::var(files::ALLOW_INSECURE_ENV).ok().as_deref());
        let (text, warning) =
            files::read_config(path, allow_insecure).map_err(|message| ConfigError::Read {
                path: path.to_owned(),
                message,
            })?;
        let mut config = Config::parse(&text, std::env::vars())?;
        config.warnings.extend(warning);
        let base = path.parent().unwrap_or(Path::new("."));
        config.load_tenants_dir(base, path, allow_insecure)?;
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
        let env: Vec<(String, String)> = env.into_iter().collect();
        let allow_insecure = files::allows_insecure(
            env.iter()
                .find(|(k, _)| k == files::ALLOW_INSECURE_ENV)
                .map(|(_, v)| v.as_str()),
        );
        let mut config = Config::parse(text, env)?;
        config.load_tenants_dir(Path::new("."), main, allow_insecure)?;
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
        // The tenant tables are read first, so that their errors are reported even when the
        // rest of the file has its own (a missing `state_dir` is only found at its end).
        let tables: BTreeMap<String, config::Value> = layered.get("tenants").unwrap_or_default();
        let mut errors = Vec::new();
        let mut tenants = Vec::new();
        for (id, table) in tables {
            match TenantConfig::from_value(table) {
                Ok(parsed) => tenants.push((id, parsed)),
                Err((key, message)) => {
                    let key = match key.as_str() {
                        "" | "." => format!("tenants.{id}"),
                        _ => format!("tenants.{id}.{key}"),
                    };
                    errors.push(ConfigError::key(key, message));
                }
            }
        }
        let mut config: Config = match serde_path_to_error::deserialize(layered) {
            Ok(config) => config,
            Err(e) => {
                let key = e.path().to_string();
                let key = if key == "." {
                    "(top level)".into()
                } else {
                    key
                };
                errors.push(ConfigError::key(key, e.into_inner().to_string()));
                return Err(ConfigErrors(errors));
            }
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        for name in config.sinks.keys() {
            let fingerprint = match raw_sinks.get(name) {
                Some(v) => blake3::hash(v.to_string().as_bytes()).to_hex().to_string(),
                None => String::new(),
            };
            config.sink_fingerprints.insert(name.clone(), fingerprint);
        }
        for (id, parsed) in tenants {
            config.add_tenant(id, parsed, None);
        }
        Ok(config)
    }

    /// Adds tenant `id` as read (from `file`, when it came from `tenants_dir`).
    fn add_tenant(&mut self, id: String, parsed: tenant::ParsedTenant, file: Option<PathBuf>) {
        if !parsed.foreign_keys.is_empty() {
            self.tenant_problems.insert(id.clone(), parsed.foreign_keys);
        }
        if let Some(file) = file {
            self.tenant_sources.insert(id.clone(), file);
        }
        self.tenants.insert(id, parsed.config);
    }

    /// Adds one tenant per `ID.toml` in `tenants_dir` (relative to `base`); `main` is the main
    /// file's path, for the duplicate message. `allow_insecure`: a file every user may write is
    /// read with a warning instead of refused.
    fn load_tenants_dir(
        &mut self,
        base: &Path,
        main: &Path,
        allow_insecure: bool,
    ) -> Result<(), ConfigErrors> {
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
            match read_tenant_file(&path, allow_insecure) {
                Ok((tenant, warning)) => {
                    self.warnings.extend(warning);
                    self.add_tenant(id, tenant, Some(path));
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
        if let Some(var) = &self.admin_token_env {
            if var.is_empty() || var.contains(['=', '\0']) {
                err(
                    "admin_token_env".into(),
                    format!("must be the name of an environment variable, got {var:?}"),
                );
            }
        }
        if let Some(problem) = p.late_sweep_problem(p.late_sweep) {
            err("poll.late_sweep".into(), problem);
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
            for (k, message) in self.tenant_problems.get(id).into_iter().flatten() {
                err(key(k), message.clone());
            }
            let check = TenantCheck {
                key: &key,
                sinks: &self.sinks,
                poll: &self.poll,
            };
            t.validate(&check, &mut err);
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
            match t.secret_keys().resolve(id, env) {
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

/// One `tenants_dir` file: the keys of a `[tenants.ID]` table, and the warning of an unsafe mode
/// let through by `allow_insecure`.
fn read_tenant_file(
    path: &Path,
    allow_insecure: bool,
) -> Result<(tenant::ParsedTenant, Option<String>), ConfigError> {
    let (text, warning) =
        files::read_config(path, allow_insecure).map_err(|message| ConfigError::Read {
            path: path.to_owned(),
            message,
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
    let table: config::Value = layered
        .try_deserialize()
        .map_err(|e| file_error("(file)".into(), e.to_string()))?;
    let parsed = TenantConfig::from_value(table).map_err(|(key, message)| {
        let key = match key.as_str() {
            "" | "." => "(top level)".to_string(),
            _ => key,
        };
        file_error(key, message)
    })?;
    Ok((parsed, warning))
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
        assert_eq!(c.tenants["acme"].requests_per_day(), Some(1800));
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
    fn late_sweep_defaults_to_3h_is_per_tenant_and_bounded() {
        let c = load(GOOD, &[]).unwrap();
        assert_eq!(c.poll.late_sweep, Duration::from_secs(3 * 3600));
        assert_eq!(
            c.tenants["acme"].late_sweep(&c.poll),
            Some(Duration::from_secs(3 * 3600))
        );
        let off = GOOD.replace(
            "interval = \"5m\"",
            "interval = \"5m\"\nlate_sweep = \"0s\"",
        );
        let c = load(&off, &[]).unwrap();
        assert_eq!(c.tenants["acme"].late_sweep(&c.poll), None);
        let own = off.replace(
            "sinks = [\"archive\"]",
            "sinks = [\"archive\"]\nlate_sweep = \"90m\"",
        );
        let c = load(&own, &[]).unwrap();
        assert_eq!(
            c.tenants["acme"].late_sweep(&c.poll),
            Some(Duration::from_secs(5400))
        );
        for (poll, tenant, key) in [
            ("20m", "", "poll.late_sweep"),
            ("2d", "", "poll.late_sweep"),
            ("3h", "late_sweep = \"30m\"", "tenants.acme.late_sweep"),
        ] {
            let text = GOOD
                .replace(
                    "interval = \"5m\"",
                    &format!("interval = \"5m\"\nlate_sweep = \"{poll}\""),
                )
                .replace(
                    "sinks = [\"archive\"]",
                    &format!("sinks = [\"archive\"]\n{tenant}"),
                );
            let e = load(&text, &[]).unwrap_err();
            assert!(e.contains(key) && e.contains("more than poll.lag"), "{e}");
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
            c.tenants["globex"].secret_keys().credential,
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

    #[test]
    fn pod_max_disorder_defaults_to_a_minute_and_is_bounded() {
        let pod = |extra: &str| {
            format!(
                "{}[tenants.acme-pod]\nproduct = \"pod\"\ncluster_id = \"acme_hosted\"\ntoken_env = \"ACME_POD_TOKEN\"\nsinks = [\"archive\"]\n{extra}",
                GOOD
            )
        };
        let disorder = |c: &Config| match &c.tenants["acme-pod"] {
            TenantConfig::Pod(t) => t.max_disorder,
            _ => panic!("a pod tenant"),
        };
        let c = load(&pod(""), &[]).unwrap();
        assert_eq!(disorder(&c), Duration::from_secs(60));
        let c = load(&pod("max_disorder = \"10m\"\n"), &[]).unwrap();
        assert_eq!(disorder(&c), Duration::from_secs(600));
        let e = load(&pod("max_disorder = \"11m\"\n"), &[]).unwrap_err();
        assert!(e.contains("tenants.acme-pod.max_disorder"), "{e}");
        assert!(e.contains("must be at most 10m"), "{e}");
    }
}
