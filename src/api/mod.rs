//! The wire layer: every Proofpoint API client, and nothing of what a source does with the answers.
//!
//! - [`siem`]: TAP SIEM and Essentials (`/v2/siem/all`), one window per request, the body split
//!   into raw events as it streams in ([`split`]); [`window`] plans the windows the API accepts.
//! - [`intel`]: the Threat, Campaign and Forensics lookups, and the client People pages go through.
//! - [`people`]: the People lists (Very Attacked People, top clickers): URLs, pages, request pool.
//! - [`pod`]: the Proofpoint on Demand log stream: the stream URL, the WebSocket connect and
//!   handshake, the per-token session locks, a frame's time.
//! - [`trap`] and [`isolation`]: TRAP incidents and Isolation usage data, one time slice per
//!   request; [`records`] is the GET, the bounds and the record cutting they share.
//!
//! Every client returns one error type, [`ApiError`], whose exhaustive [`Disposition`] is what the
//! sources decide on (never the words of a message).
//!
//! The invariants kept here:
//! - **3, requests the API accepts**: TAP and Essentials windows are planned inside the API's
//!   limits ([`window`]); the PoD service sees at most one session per token and log type in this
//!   process ([`pod::session_lock`], held for as long as a socket is open).
//! - **7, secrets stay secret**: credentials travel in an `Authorization` header, except
//!   Isolation's key, which the API takes in the query string: no message ever holds a request's
//!   URL ([`crate::net::ErrorUrl::Drop`]), and the scrubber removes the key's percent-encoded
//!   forms too. Every text that came back from an API (a body, a header, a transport error) is
//!   scrubbed of the secret and its encoded forms before an error carrying it leaves this layer
//!   ([`ApiError::scrubbed`], [`crate::secret::scrub_with`]), and shortened only after that
//!   ([`crate::secret::scrubbed_excerpt`]).
//!
//! Every HTTP client here is built by [`http_client`], which follows no redirect: a 3xx is an
//! [`ApiError::Redirect`] naming where it points ([`redirect`]), never a silent request elsewhere.

pub mod ctr;
pub mod error;
pub mod intel;
pub mod isolation;
pub mod itm;
pub mod oauth;
pub mod people;
pub mod pod;
pub mod records;
pub mod siem;
pub mod split;
pub mod trap;
pub mod window;

#[cfg(test)]
pub(crate) mod test_server;

pub use error::{ApiError, Disposition};

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// The longest excerpt of a reply (an error body, a `Location`) that an error carries.
pub const EXCERPT_CHARS: usize = 300;

/// The one place every HTTP client of the wire layer is built (the SIEM client, and the intel
/// client that lookups, People and enrichment share): `tapfwd/VERSION` as user agent, gzip, idle
/// connections kept 90 s, and no redirect followed. The Proofpoint APIs do not redirect, so a 3xx
/// is answered with [`ApiError::Redirect`] ([`redirect`]), never followed to a host no one
/// configured, whose body would then be taken for the tenant's events, a threat summary or a
/// People page. Each client adds its own timeouts.
pub(crate) fn http_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .user_agent(concat!("tapfwd/", env!("CARGO_PKG_VERSION")))
        .gzip(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
}

/// The error for a 3xx `response`: its status and `Location` (scrubbed of `secrets`, at most
/// [`EXCERPT_CHARS`] characters).
pub(crate) fn redirect(response: &reqwest::Response, secrets: &[SecretString]) -> ApiError {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| crate::secret::scrubbed_excerpt_with(v.as_bytes(), secrets, EXCERPT_CHARS))
        .unwrap_or_else(|| "(no Location header)".to_string());
    ApiError::Redirect {
        status: response.status().as_u16(),
        location,
    }
}

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
