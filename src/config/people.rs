//! `[tenants.NAME.people]` (TAP tenants): snapshots of the People lists (Very Attacked People,
//! top clickers) into the SIEM, one per list per period, within each endpoint's 50 requests a day.

use std::time::Duration;

use serde::Deserialize;

use crate::api::people::Feed;

/// `[tenants.NAME.people]`: snapshots of the People lists into the SIEM, one per feed per
/// period.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleConfig {
    /// The lists to snapshot. Default both: `["vap", "top_clickers"]`.
    #[serde(default = "default_feeds")]
    pub feeds: Vec<Feed>,
    /// The period each list covers, in days: 14, 30 or 90. Default 30.
    #[serde(default = "default_window_days")]
    pub window_days: u32,
    /// One snapshot of each list per this period (aligned to the epoch: `24h` is one per UTC
    /// day). At least `1h`. Default `24h`.
    #[serde(default = "default_every", with = "humantime_serde")]
    pub every: Duration,
    /// The sinks the snapshots go to. Default: the tenant's `sinks`.
    #[serde(default)]
    pub sinks: Option<Vec<String>>,
}

fn default_feeds() -> Vec<Feed> {
    Feed::ALL.to_vec()
}
fn default_window_days() -> u32 {
    30
}
fn default_every() -> Duration {
    Duration::from_secs(86_400)
}

impl PeopleConfig {
    /// Checks the values; `Err` names the key (under `people.`) and the problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.feeds.is_empty() {
            return Err(("feeds", "lists no feeds (vap, top_clickers)".into()));
        }
        if ![14, 30, 90].contains(&self.window_days) {
            return Err((
                "window_days",
                format!(
                    "{} is not one the API serves (14, 30 or 90)",
                    self.window_days
                ),
            ));
        }
        if self.every < Duration::from_secs(3600) {
            return Err((
                "every",
                "must be at least 1h: each endpoint allows 50 requests a day".into(),
            ));
        }
        if self.sinks.as_ref().is_some_and(Vec::is_empty) {
            return Err(("sinks", "lists no sinks".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_a_bad_window_is_named() {
        let mut c: PeopleConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.validate(), Ok(()));
        c.window_days = 7;
        assert_eq!(c.validate().unwrap_err().0, "window_days");
    }
}
