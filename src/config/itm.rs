//! `product = "itm"`: Proofpoint Insider Threat Management (formerly ObserveIT) reports, read
//! by their `risingValue` cursor with OAuth2 client credentials (more-feeds.md). One source per
//! record type (`types`), each reading its report.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use super::ctr::{check_oauth, check_range, OAuthKeys};
use super::tenant::{KindRoute, ProductSettings, SecretKeys, TenantCheck};
use crate::event::EventKind;

/// `product = "itm"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItmTenant {
    /// The tenant's ITM URL, without a path (`https://acme.explore.proofpoint.com`). Required.
    #[serde(default, rename = "base_url")]
    pub base_url_setting: Option<String>,
    /// The OAuth2 token endpoint. Default `BASE_URL/v2/apis/auth/oauth/token`.
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
    /// Names of the sinks this tenant's records go to; at least one.
    pub sinks: Vec<String>,
    /// The record types to collect, one source each: `user_activity`, `dba_activity`,
    /// `system_event`, `alert`, `audit`, `in_app_element`. Default
    /// `["user_activity", "alert", "audit", "system_event"]`.
    #[serde(default = "default_types")]
    pub types: Vec<ItmType>,
    /// The report each type is read from, where it is not the default
    /// (`{ alert = "alerts_v2" }`); the path's report part is not documented publicly.
    #[serde(default)]
    pub reports: BTreeMap<ItmType, String>,
    /// Records asked for per page (`limit`). Default `1000`; between `10` and `10000`.
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// How often a caught-up report is asked again. Default `1m`; at least `10s`.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Where a report with no checkpoint starts: its records from this long before now.
    /// Default `1d`; at most `30d`.
    #[serde(default = "default_initial_lookback", with = "humantime_serde")]
    pub initial_lookback: Duration,
}

/// An ITM record type: one report, one source, one event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItmType {
    UserActivity,
    DbaActivity,
    SystemEvent,
    Alert,
    Audit,
    InAppElement,
}

impl ItmType {
    pub const ALL: [ItmType; 6] = [
        ItmType::UserActivity,
        ItmType::DbaActivity,
        ItmType::SystemEvent,
        ItmType::Alert,
        ItmType::Audit,
        ItmType::InAppElement,
    ];

    /// The name in config, in source ids and in the Splunk sourcetype.
    pub fn as_str(self) -> &'static str {
        match self {
            ItmType::UserActivity => "user_activity",
            ItmType::DbaActivity => "dba_activity",
            ItmType::SystemEvent => "system_event",
            ItmType::Alert => "alert",
            ItmType::Audit => "audit",
            ItmType::InAppElement => "in_app_element",
        }
    }

    pub fn parse(s: &str) -> Option<ItmType> {
        ItmType::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The report read when `reports` names none (our choice; uncertain, see more-feeds.md).
    pub fn default_report(self) -> &'static str {
        match self {
            ItmType::UserActivity => "user_activity",
            ItmType::DbaActivity => "dba_activity",
            ItmType::SystemEvent => "system_events",
            ItmType::Alert => "alerts",
            ItmType::Audit => "audit",
            ItmType::InAppElement => "in_app_elements",
        }
    }

    /// The kind its records get.
    pub fn kind(self) -> EventKind {
        match self {
            ItmType::UserActivity => EventKind::ItmUserActivity,
            ItmType::DbaActivity => EventKind::ItmDbaActivity,
            ItmType::SystemEvent => EventKind::ItmSystemEvent,
            ItmType::Alert => EventKind::ItmAlert,
            ItmType::Audit => EventKind::ItmAudit,
            ItmType::InAppElement => EventKind::ItmInAppElement,
        }
    }
}

fn default_types() -> Vec<ItmType> {
    vec![
        ItmType::UserActivity,
        ItmType::Alert,
        ItmType::Audit,
        ItmType::SystemEvent,
    ]
}
fn default_page_size() -> u32 {
    1000
}
fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_initial_lookback() -> Duration {
    Duration::from_secs(86_400)
}

impl ItmTenant {
    /// The token endpoint: `token_url`, else `BASE_URL/v2/apis/auth/oauth/token`.
    pub fn token_url(&self) -> String {
        match &self.token_url_setting {
            Some(u) => u.clone(),
            None => format!("{}/v2/apis/auth/oauth/token", self.base_url()),
        }
    }

    /// The report type `t` is read from.
    pub fn report(&self, t: ItmType) -> &str {
        self.reports
            .get(&t)
            .map_or(t.default_report(), String::as_str)
    }
}

impl ProductSettings for ItmTenant {
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
                from: format!("the ITM `{}` report (types)", t.as_str()),
            })
            .collect()
    }
    /// `base_url` (required), a trailing slash taken off.
    fn base_url(&self) -> &str {
        self.base_url_setting
            .as_deref()
            .unwrap_or("")
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
    fn validate(&self, check: &TenantCheck<'_>, err: &mut dyn FnMut(String, String)) {
        let key = check.key;
        if self.base_url_setting.is_none() {
            err(
                key("base_url"),
                "an itm tenant needs its ITM URL, e.g. https://acme.explore.proofpoint.com".into(),
            );
        } else {
            let token_url = self.token_url();
            check_oauth(
                OAuthKeys {
                    client_id: &self.client_id,
                    base_url: self.base_url(),
                    base_url_setting: self.base_url_setting.as_deref(),
                    token_url: &token_url,
                    allow_http: self.allow_http,
                },
                check,
                err,
            );
        }
        if self.types.is_empty() {
            err(
                key("types"),
                "lists no record types (user_activity, alert, audit, …)".into(),
            );
        }
        let mut seen = self.types.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.types.len() {
            err(key("types"), "names a record type twice".into());
        }
        for (t, report) in &self.reports {
            if report.is_empty()
                || !report
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            {
                err(
                    key(&format!("reports.{}", t.as_str())),
                    "must be a report name of letters, digits, `_`, `-` or `.`".into(),
                );
            }
        }
        if !(10..=10_000).contains(&self.page_size) {
            err(
                key("page_size"),
                format!("must be between 10 and 10000, got {}", self.page_size),
            );
        }
        let day = Duration::from_secs(86_400);
        check_range(
            check,
            "interval",
            self.interval,
            Duration::from_secs(10),
            day,
            err,
        );
        check_range(
            check,
            "initial_lookback",
            self.initial_lookback,
            Duration::ZERO,
            30 * day,
            err,
        );
    }
}
