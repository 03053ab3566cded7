//! The TRAP incidents API, on the customer's own server:
//! `GET <base_url>/api/incidents?state=STATE&created_after=ISO&created_before=ISO`, with the raw
//! API key in the `Authorization` header (no scheme).
//!
//! The answer is a JSON array of incidents, unordered and unpaged: one slice is one request per
//! state, and a slice whose answer times out or is over the size bound is split by the caller
//! ([`crate::sources::slices`]). Each incident is kept as the API sent it (invariant 5).

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::value::RawValue;

use super::records::{self, Get};
use super::ApiError;
use crate::clock;
use crate::event::{Batch, EventKind};

/// A TRAP incident state, as the API spells it in `state=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrapState {
    New,
    Open,
    Assigned,
    Closed,
    Ignored,
}

impl TrapState {
    pub const ALL: [TrapState; 5] = [
        TrapState::New,
        TrapState::Open,
        TrapState::Assigned,
        TrapState::Closed,
        TrapState::Ignored,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrapState::New => "new",
            TrapState::Open => "open",
            TrapState::Assigned => "assigned",
            TrapState::Closed => "closed",
            TrapState::Ignored => "ignored",
        }
    }
}

/// The path the client adds to `base_url`.
pub const PATH: &str = "/api/incidents";

/// The field an incident's time is read from.
pub const TIME_FIELD: &str = "created_at";

/// The URL of one state's incidents created in `[start, end]` (unix seconds).
pub fn url(base: &str, state: TrapState, start: i64, end: i64) -> Result<reqwest::Url, ApiError> {
    let mut url = reqwest::Url::parse(&format!("{}{PATH}", base.trim_end_matches('/')))
        .map_err(|_| ApiError::BadUrl(base.to_string()))?;
    url.query_pairs_mut()
        .append_pair("state", state.as_str())
        .append_pair("created_after", &clock::rfc3339(start))
        .append_pair("created_before", &clock::rfc3339(end));
    Ok(url)
}

/// What one slice asks of the server.
pub struct SliceQuery<'a> {
    pub base: &'a str,
    pub key: &'a SecretString,
    pub states: &'a [TrapState],
    pub deadline: Duration,
    pub max_bytes: u64,
}

/// The incidents of every state in `query.states` created in `[start, end]`, one request per
/// state, as one batch (a failure of any fails the slice, which is asked again whole).
pub async fn fetch_slice(
    http: &reqwest::Client,
    query: &SliceQuery<'_>,
    start: i64,
    end: i64,
) -> Result<Batch, ApiError> {
    let secrets = std::slice::from_ref(query.key);
    let mut all = Vec::new();
    for &state in query.states {
        let body = records::fetch(
            http,
            Get {
                url: url(query.base, state, start, end)?,
                headers: vec![("authorization", query.key.expose_secret())],
                secrets,
                deadline: query.deadline,
                max_bytes: query.max_bytes,
                api: "the TRAP incidents API",
            },
        )
        .await?;
        all.push(body);
    }
    let mut batch = Batch::default();
    for body in &all {
        let list: Vec<&RawValue> = serde_json::from_slice(body)
            .map_err(|e| ApiError::InvalidJson(format!("not a list of incidents: {e}")))?;
        batch = join(
            batch,
            records::batch_of(&list, EventKind::TrapIncident, TIME_FIELD),
        );
    }
    Ok(batch)
}

/// `a` followed by `b`, in one buffer.
fn join(a: Batch, b: Batch) -> Batch {
    if a.is_empty() {
        return b;
    }
    let offset = a.buf.len() as u32;
    let mut buf = Vec::with_capacity(a.buf.len() + b.buf.len());
    buf.extend_from_slice(&a.buf);
    buf.extend_from_slice(&b.buf);
    let mut events = a.events;
    events.extend(b.events.into_iter().map(|mut e| {
        e.start += offset;
        e
    }));
    Batch {
        buf: bytes::Bytes::from(buf),
        events,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_state_and_both_ends() {
        let u = url("https://trap.example.com/", TrapState::Open, 0, 3600).unwrap();
        assert_eq!(
            u.as_str(),
            "https://trap.example.com/api/incidents?state=open&created_after=1970-01-01T00%3A00%3A00Z&created_before=1970-01-01T01%3A00%3A00Z"
        );
    }
}
