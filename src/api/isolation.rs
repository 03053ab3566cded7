//! The Proofpoint Isolation usage-data API:
//! `GET <base_url>/api/v2/reporting/usage-data?key=KEY&pageSize=N&from=ISO&to=ISO`.
//!
//! **The API key travels in the query string.** The URL is therefore never put in a message:
//! transport errors are worded without it, and every text that leaves this module (a body
//! excerpt, a `Location`, a transport error) is scrubbed of the key and its percent-encoded
//! forms ([`crate::secret::scrub`]) before it can reach a log, the status board, a metric or the
//! store (invariant 7).
//!
//! The answer is `{"data": [...]}`; paging beyond `pageSize` is not documented, so a full page
//! means "there may be more" and the caller splits the window ([`crate::sources::slices`]).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::records::{self, Get};
use super::ApiError;
use crate::clock;
use crate::event::{Batch, EventKind};

/// The path the client adds to `base_url`.
pub const PATH: &str = "/api/v2/reporting/usage-data";

/// The field a record's time is read from.
pub const TIME_FIELD: &str = "date";

/// The largest answer read for one window, in bytes (10,000 records of a few hundred bytes).
pub const MAX_BYTES: u64 = 64 << 20;

/// The URL of the records dated in `[start, end]` (unix seconds). Holds the key: never shown.
pub fn url(
    base: &str,
    key: &SecretString,
    page_size: u32,
    start: i64,
    end: i64,
) -> Result<reqwest::Url, ApiError> {
    let mut url = reqwest::Url::parse(&format!("{}{PATH}", base.trim_end_matches('/')))
        .map_err(|_| ApiError::BadUrl(base.to_string()))?;
    url.query_pairs_mut()
        .append_pair("key", key.expose_secret())
        .append_pair("pageSize", &page_size.to_string())
        .append_pair("from", &clock::rfc3339(start))
        .append_pair("to", &clock::rfc3339(end));
    Ok(url)
}

#[derive(Deserialize)]
struct Answer<'a> {
    #[serde(borrow)]
    data: Vec<&'a RawValue>,
}

/// One window's answer: its records, and whether the page was full (there may be more).
pub struct Window {
    pub batch: Batch,
    pub full: bool,
}

/// The records dated in `[start, end]`.
pub async fn fetch_window(
    http: &reqwest::Client,
    base: &str,
    key: &SecretString,
    page_size: u32,
    deadline: Duration,
    start: i64,
    end: i64,
) -> Result<Window, ApiError> {
    let secrets = std::slice::from_ref(key);
    let body = records::fetch(
        http,
        Get {
            url: url(base, key, page_size, start, end)?,
            headers: Vec::new(),
            secrets,
            deadline,
            max_bytes: MAX_BYTES,
            api: "the Isolation reporting API",
        },
    )
    .await?;
    let answer: Answer<'_> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::InvalidJson(crate::secret::scrub_with(
            format!("not an Isolation usage answer: {e}"),
            secrets,
        ))
    })?;
    let full = answer.data.len() >= page_size as usize;
    Ok(Window {
        batch: records::batch_of(&answer.data, EventKind::IsolationUsage, TIME_FIELD),
        full,
    })
}
