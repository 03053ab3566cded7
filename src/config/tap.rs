//! `product = "tap"` (the default): a TAP SIEM API account, with its People snapshots and threat
//! enrichment. [`SiemAccount`] holds the keys TAP and Essentials share (the SIEM API's
//! credentials, host, quota and sinks); [`TapTenant`] adds TAP's own.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::people::PeopleConfig;
use super::tenant::{cleartext_url, KindRoute, ProductSettings, SecretKeys, TenantCheck};
use crate::api::ThreatStatus;
use crate::event::EventKind;
use crate::net::{self, UrlRules};

/// The TAP SIEM API's host, when `base_url` is not set.
pub const TAP_DEFAULT_URL: &str = "https://tap-api-v2.proofpoint.com";

/// A TAP base URL: the client appends the API path; credentials go in `principal` and `secret`.
const TAP_BASE_URL: UrlRules<'static> = UrlRules {
    credentials_hint: "use principal and secret",
    complete: false,
};

/// The API paths a pasted `base_url` may end with, longest first; each names the base before it.
const API_PATHS: [&str; 3] = ["/v2/siem/all", "/v2/siem", "/v2"];

/// The keys of a TAP SIEM API account, shared by `product = "tap"` and `"essentials"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiemAccount {
    /// Base URL of the API. TAP: default `https://tap-api-v2.proofpoint.com`. Essentials:
    /// required, the region's host (`https://us1-siem.proofpointessentials.com`, `eu1`, …). An
    /// `http://` URL sends the Basic credentials in cleartext: it is refused unless its host is
    /// loopback or `allow_http` is set. Read it with [`super::TenantConfig::base_url`].
    #[serde(default, rename = "base_url")]
    pub base_url_setting: Option<String>,
    /// Accept an `http://` `base_url` on a host that is not loopback (a test rig, a TLS-ending
    /// proxy on a trusted network); the daemon warns about it at start. Default `false`.
    #[serde(default)]
    pub allow_http: bool,
    /// The service principal (Settings → Connected Applications in the TAP dashboard). Required.
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
    /// Threat enrichment beside this tenant's events: `"threats"` (each `threatID`'s summary),
    /// `"campaigns"` (each `campaignID`'s campaign). Default: none. Tuned under `[enrichment]`.
    #[serde(default)]
    pub enrich: Vec<crate::enrich::EnrichKind>,
    /// This tenant's late sweep, instead of `poll.late_sweep` (`0s` turns it off for this
    /// tenant). Default: `poll.late_sweep`. Read it with [`SiemAccount::late_sweep`].
    #[serde(default, rename = "late_sweep", with = "humantime_serde")]
    pub late_sweep_setting: Option<Duration>,
}

fn default_requests_per_day() -> u32 {
    1800
}

/// `product = "tap"`: the TAP SIEM API, and optionally its People lists.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapTenant {
    /// The SIEM account's keys, read beside this struct's own (see [`SiemAccount`]).
    #[serde(skip)]
    pub account: SiemAccount,
    /// Which threat verdicts to collect (`active`, `cleared`, `falsePositive`). Default: all
    /// three. The API's own default leaves out `falsePositive`, but a SIEM needs those verdicts
    /// to close the alerts it raised.
    #[serde(default = "default_threat_status")]
    pub threat_status: Vec<ThreatStatus>,
    /// Snapshots of the People lists (Very Attacked People, top clickers) into the SIEM, on a
    /// schedule and within each endpoint's 50 requests a day. Default: none.
    #[serde(default)]
    pub people: Option<PeopleConfig>,
}

fn default_threat_status() -> Vec<ThreatStatus> {
    ThreatStatus::ALL.to_vec()
}

impl SiemAccount {
    /// The API's base URL: `base_url`, else `default`.
    ///
    /// A URL pasted with the API's path (`…/v2/siem/all`, `…/v2/siem`, `…/v2`, a trailing slash)
    /// names the same base, and is read as that base; `check` refuses any other `/v2/` path.
    pub fn base_url<'a>(&'a self, default: &'a str) -> &'a str {
        let url = self.base_url_setting.as_deref().unwrap_or(default);
        let mut base = url.trim_end_matches('/');
        for suffix in API_PATHS {
            if let Some(b) = base.strip_suffix(suffix) {
                base = b;
                break;
            }
        }
        base
    }

    /// How old a window is when the late sweep queries it again: the tenant's `late_sweep`, else
    /// `poll.late_sweep`; `None` when the sweep is off.
    pub fn late_sweep(&self, poll: &super::PollConfig) -> Option<Duration> {
        Some(self.late_sweep_setting.unwrap_or(poll.late_sweep)).filter(|d| !d.is_zero())
    }

    pub fn secret_keys(&self) -> SecretKeys<'_> {
        SecretKeys {
            name: "secret",
            inline: self.secret.as_ref(),
            env: self.secret_env.as_deref(),
            file: self.secret_file.as_deref(),
            credential: self.secret_credential.as_deref(),
        }
    }

    /// Checks the account's keys; `default_url` is the product's host when `base_url` is unset
    /// (`None`: the product has none, and `base_url` is required).
    pub fn validate(
        &self,
        default_url: Option<&str>,
        check: &TenantCheck<'_>,
        err: &mut dyn FnMut(String, String),
    ) {
        let key = check.key;
        if self.principal.trim().is_empty() {
            err(key("principal"), "is empty".into());
        }
        match (self.base_url_setting.as_deref(), default_url) {
            (None, None) => err(
                key("base_url"),
                "an essentials tenant needs its region's host, e.g. https://us1-siem.proofpointessentials.com".into(),
            ),
            (pasted, default) => {
                let base = self.base_url(default.unwrap_or(""));
                if let Some(problem) = net::url_problem(base, TAP_BASE_URL) {
                    err(key("base_url"), problem);
                } else if let Some(problem) =
                    pasted.and_then(|pasted| base_url_path_problem(pasted, base))
                {
                    err(key("base_url"), problem);
                } else if cleartext_url(base) && !self.allow_http {
                    err(
                        key("base_url"),
                        "http:// sends the credentials in cleartext: use https://, or set allow_http = true for this tenant".into(),
                    );
                }
            }
        }
        if let Some(problem) = self
            .late_sweep_setting
            .and_then(|s| check.poll.late_sweep_problem(s))
        {
            err(key("late_sweep"), problem);
        }
        let steady = 86_400 / check.poll.interval.as_secs().max(60);
        if u64::from(self.requests_per_day) <= steady {
            err(
                key("requests_per_day"),
                format!(
                    "{} is not more than the {steady} requests a day that polling every {} needs",
                    self.requests_per_day,
                    humantime::format_duration(check.poll.interval)
                ),
            );
        }
    }
}

impl ProductSettings for TapTenant {
    fn sinks(&self) -> &[String] {
        &self.account.sinks
    }
    fn sinks_mut(&mut self) -> &mut Vec<String> {
        &mut self.account.sinks
    }
    fn routed_sinks(&self) -> Vec<&[String]> {
        self.people
            .iter()
            .filter_map(|p| p.sinks.as_deref())
            .collect()
    }
    fn kind_routes(&self) -> Vec<KindRoute<'_>> {
        let mut routes = vec![KindRoute {
            key: "sinks".into(),
            sinks: &self.account.sinks,
            kinds: EventKind::SIEM.to_vec(),
            from: "the TAP SIEM API".into(),
        }];
        if let Some(people) = &self.people {
            let (key, sinks, from) = match &people.sinks {
                Some(sinks) => ("people.sinks", sinks.as_slice(), "the People snapshots"),
                None => (
                    "people",
                    self.account.sinks.as_slice(),
                    "the People snapshots (people.sinks is not set, so they go to the tenant's sinks)",
                ),
            };
            routes.push(KindRoute {
                key: key.into(),
                sinks,
                kinds: people.feeds.iter().map(|f| f.kind()).collect(),
                from: from.into(),
            });
        }
        routes
    }
    fn secret_keys(&self) -> SecretKeys<'_> {
        self.account.secret_keys()
    }
    fn base_url(&self) -> &str {
        self.account.base_url(TAP_DEFAULT_URL)
    }
    fn allow_http(&self) -> bool {
        self.account.allow_http
    }
    fn siem_account(&self) -> Option<&SiemAccount> {
        Some(&self.account)
    }
    fn siem_params(&self) -> Vec<(&'static str, &'static str)> {
        self.threat_status
            .iter()
            .map(|s| ("threatStatus", s.as_str()))
            .collect()
    }

    fn validate(&self, check: &TenantCheck<'_>, err: &mut dyn FnMut(String, String)) {
        self.account.validate(Some(TAP_DEFAULT_URL), check, err);
        if self.threat_status.is_empty() {
            err((check.key)("threat_status"), "lists no verdicts".into());
        }
        if let Some(people) = &self.people {
            if let Err((k, message)) = people.validate() {
                err((check.key)(&format!("people.{k}")), message);
            }
            check.sinks_defined("people.sinks", people.sinks.as_deref().unwrap_or(&[]), err);
        }
    }
}

/// Why a tenant's `base_url` (read through [`SiemAccount::base_url`]) still carries an API path,
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
