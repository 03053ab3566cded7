//! `product = "trap"`: Proofpoint Threat Response Auto-Pull incidents, read from the customer's
//! own TRAP server in time slices over `created_at` ([`crate::sources::slices`]).
//!
//! A TRAP tenant has a base URL (its server), an API key sent raw in the `Authorization` header,
//! and often a private CA (`ca_file`). Validation reads `ca_file` (a small PEM file), so that
//! `check`, `run` and a reload all refuse an unreadable one under its key; everything else is
//! checked without I/O.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::tenant::{KindRoute, ProductSettings, SecretKeys, TenantCheck};
pub use crate::api::trap::TrapState;
use crate::event::EventKind;

/// `product = "trap"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrapTenant {
    /// The TRAP server's base URL, `https://trap.example.com` (scheme, host and port only; the
    /// client adds `/api/incidents`). Required. An `http://` URL to a host that is not loopback
    /// sends the API key in cleartext and is refused unless `allow_http` is set.
    #[serde(default, rename = "base_url")]
    pub base_url_setting: Option<String>,
    /// Accept an `http://` `base_url` on a host that is not loopback. Default `false`.
    #[serde(default)]
    pub allow_http: bool,
    /// Names of the sinks this tenant's incidents go to; at least one.
    pub sinks: Vec<String>,
    /// The TRAP API key, inline. Prefer `api_key_env`, `api_key_file` or `api_key_credential`.
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
    /// A PEM file of one or more CA certificates trusted besides the public roots (a TRAP
    /// server with a private CA). Host name verification stays on. Default none.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The incident states asked for, one request per state and slice: `new`, `open`,
    /// `assigned`, `closed`, `ignored`. Default all five.
    #[serde(default = "default_states")]
    pub states: Vec<TrapState>,
    /// The longest time slice over `created_at` one request covers. A slice that times out or
    /// comes back larger than `max_slice_bytes` is halved (down to one second) and asked again;
    /// slices grow back after answers that fit. Default 6h.
    #[serde(default = "default_slice", with = "humantime_serde")]
    pub slice: Duration,
    /// How long one request may take, body included, before its slice is split. Default 2m.
    #[serde(default = "default_slice_timeout", with = "humantime_serde")]
    pub slice_timeout: Duration,
    /// The largest answer read for one request, in bytes; a larger one is split. Default
    /// 64 MiB.
    #[serde(default = "default_max_slice_bytes")]
    pub max_slice_bytes: u64,
    /// How long after creation an incident is asked for again to collect its updates (state
    /// changes, events added, quarantine results): the slices of this look-back are queried
    /// again every `update_every`, and an incident whose bytes changed is delivered again, as a
    /// new fact. Updates to incidents created before the look-back are not collected. `0s`
    /// turns the re-query off. Default 24h, at most 7d.
    #[serde(default = "default_update_lookback", with = "humantime_serde")]
    pub update_lookback: Duration,
    /// How often the look-back is queried again. Default 15m, at least 1m.
    #[serde(default = "default_update_every", with = "humantime_serde")]
    pub update_every: Duration,
    /// How far behind now a slice ends (the server's clock and its writes may trail). Default 1m.
    #[serde(default = "default_lag", with = "humantime_serde")]
    pub lag: Duration,
}

fn default_states() -> Vec<TrapState> {
    TrapState::ALL.to_vec()
}
fn default_slice() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_slice_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_max_slice_bytes() -> u64 {
    64 << 20
}
fn default_update_lookback() -> Duration {
    Duration::from_secs(86_400)
}
fn default_update_every() -> Duration {
    Duration::from_secs(900)
}
fn default_lag() -> Duration {
    Duration::from_secs(60)
}

/// The longest `update_lookback`.
pub const MAX_UPDATE_LOOKBACK: Duration = Duration::from_secs(7 * 86_400);

impl ProductSettings for TrapTenant {
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
            kinds: vec![EventKind::TrapIncident],
            from: "TRAP incidents".into(),
        }]
    }

    /// `base_url` without a trailing slash (empty when missing; `validate` says so).
    fn base_url(&self) -> &str {
        self.base_url_setting
            .as_deref()
            .unwrap_or("")
            .trim_end_matches('/')
    }

    /// A slice is delivered unordered, and the look-back asks its span again.
    fn replay_reach(&self) -> Option<Duration> {
        Some(self.slice + self.update_lookback)
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
        match &self.base_url_setting {
            None => err(
                key("base_url"),
                "a trap tenant needs its TRAP server's URL (https://trap.example.com)".into(),
            ),
            Some(_) => {
                if let Some(problem) = server_url_problem(self.base_url(), self.allow_http) {
                    err(key("base_url"), problem);
                }
            }
        }
        if let Some(path) = &self.ca_file {
            if let Some(problem) = pem_problem(path) {
                err(key("ca_file"), problem);
            }
        }
        if self.states.is_empty() {
            err(
                key("states"),
                "lists no states (new, open, assigned, closed, ignored)".into(),
            );
        }
        let mut seen = self.states.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.states.len() {
            err(key("states"), "names a state twice".into());
        }
        if self.slice < Duration::from_secs(60) || self.slice > Duration::from_secs(86_400) {
            err(key("slice"), "must be between 1m and 24h".into());
        }
        if self.slice_timeout < Duration::from_secs(1) {
            err(key("slice_timeout"), "must be at least 1s".into());
        }
        if self.max_slice_bytes < 1024 {
            err(key("max_slice_bytes"), "must be at least 1024".into());
        }
        if self.update_lookback > MAX_UPDATE_LOOKBACK {
            err(key("update_lookback"), "must be at most 7d".into());
        }
        if self.update_every < Duration::from_secs(60) {
            err(key("update_every"), "must be at least 1m".into());
        }
        if self.lag > Duration::from_secs(3600) {
            err(key("lag"), "must be at most 1h".into());
        }
    }
}

/// Why `url` cannot be a product's server URL: not `http(s)://`, credentials or a path in it,
/// or cleartext to a host that is not loopback without `allow_http`. Shared by the products
/// whose URL is the server's root (TRAP, Isolation).
pub fn server_url_problem(url: &str, allow_http: bool) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "https" || u.scheme() == "http" => u,
        _ => return Some(format!("`{url}` is not an http(s) URL")),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Some("must not carry credentials; use the api_key keys".into());
    }
    if parsed.host_str().map_or(true, str::is_empty) {
        return Some(format!("`{url}` has no host"));
    }
    if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
        return Some(format!(
            "`{url}` has a path or query: give the server's root only (scheme, host and port); the client adds the API's path"
        ));
    }
    if crate::net::cleartext_url(url) && !allow_http {
        return Some(
            "http:// sends the API key in cleartext: use https://, or set allow_http = true for this tenant"
                .into(),
        );
    }
    None
}

/// Why the CA file at `path` cannot be used: unreadable, or no PEM certificate in it.
pub fn pem_problem(path: &std::path::Path) -> Option<String> {
    if path.as_os_str().is_empty() {
        return Some("is empty".into());
    }
    let pem = match crate::files::read_regular(path, crate::files::PEM_MAX_BYTES) {
        Ok(f) => f,
        Err(e) => return Some(format!("cannot read {}: {e}", path.display())),
    };
    match reqwest::Certificate::from_pem_bundle(&pem.bytes) {
        Ok(certs) if !certs.is_empty() => None,
        Ok(_) => Some(format!("{} holds no PEM certificate", path.display())),
        Err(e) => Some(format!(
            "{} holds no usable PEM certificate: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_url_is_its_root_only() {
        assert_eq!(server_url_problem("https://trap.example.com", false), None);
        assert_eq!(server_url_problem("http://127.0.0.1:9", false), None);
        assert!(
            server_url_problem("https://trap.example.com/api/incidents", false)
                .unwrap()
                .contains("has a path")
        );
        assert!(server_url_problem("http://trap.example.com", false)
            .unwrap()
            .contains("cleartext"));
        assert_eq!(server_url_problem("http://trap.example.com", true), None);
        assert!(server_url_problem("ftp://x", false)
            .unwrap()
            .contains("not an http(s) URL"));
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        assert!(pem_problem(std::path::Path::new("/nonexistent/ca.pem"))
            .unwrap()
            .contains("cannot read"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        assert!(pem_problem(&p).unwrap().contains("PEM"));
    }
}
