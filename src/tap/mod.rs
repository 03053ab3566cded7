//! The Proofpoint TAP SIEM API: the HTTP client, window planning and the streaming splitter;
//! and the Threat, Campaign and Forensics lookups ([`intel`]) with the same credentials.

pub mod client;
pub mod intel;
pub mod people;
pub mod split;
pub mod window;

use serde::Deserialize;

/// A threat verdict, as the API spells it in the `threatStatus` query parameter and field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum ThreatStatus {
    #[serde(rename = "active")]
    Active,
    #[serde(rename = "cleared")]
    Cleared,
    #[serde(rename = "falsePositive")]
    FalsePositive,
}

impl ThreatStatus {
    pub const ALL: [ThreatStatus; 3] = [
        ThreatStatus::Active,
        ThreatStatus::Cleared,
        ThreatStatus::FalsePositive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ThreatStatus::Active => "active",
            ThreatStatus::Cleared => "cleared",
            ThreatStatus::FalsePositive => "falsePositive",
        }
    }

    pub fn parse(s: &str) -> Option<ThreatStatus> {
        ThreatStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}
