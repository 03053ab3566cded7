//! What the time-slice APIs (TRAP incidents, Isolation usage data) share on the wire: one
//! client per tenant built by [`super::http_client`] (no redirect; a private CA added when the
//! tenant names one), one GET whose whole answer must arrive within a deadline and a size bound,
//! every status mapped to [`ApiError`], and the answer's records cut out byte for byte.
//!
//! Invariant 7: the caller passes every form a secret can take in this request (a raw API key in
//! a header, or a key in the URL's query); every text that leaves here (a transport error, which
//! reqwest words with the URL, a body excerpt, a `Location`) is scrubbed of them first, and a
//! transport error is worded without its URL at all ([`crate::net::ErrorUrl::Drop`]).

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use secrecy::SecretString;
use serde_json::value::RawValue;

use super::ApiError;
use crate::event::{Batch, EventKind};
use crate::net::{transport_error, ErrorUrl};
use crate::secret;

/// How far back the time-slice APIs serve: Isolation keeps 30 days; TRAP states no limit, and
/// 30 days is tapfwd's bound for it (`rewind` and a first start reach no further).
pub const HORIZON_SECS: i64 = 30 * 86_400;

/// The client of one tenant of a time-slice API: [`super::http_client`] with the public roots
/// and, when `ca_file` is set, the certificates of that PEM file.
pub fn client(ca_file: Option<&Path>) -> Result<reqwest::Client, ApiError> {
    let mut builder = super::http_client().connect_timeout(Duration::from_secs(15));
    if let Some(path) = ca_file {
        let pem = crate::files::read_regular(path, crate::files::PEM_MAX_BYTES).map_err(|e| {
            ApiError::Transport(format!("cannot use ca_file {}: {e}", path.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem.bytes).map_err(|e| {
            ApiError::Transport(format!(
                "cannot use ca_file {}: no usable PEM certificate: {e}",
                path.display()
            ))
        })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| ApiError::Transport(e.to_string()))
}

/// One GET of a slice: its URL, its headers, the secrets its texts are scrubbed of, and its
/// bounds.
pub struct Get<'a> {
    pub url: reqwest::Url,
    pub headers: Vec<(&'static str, &'a str)>,
    pub secrets: &'a [SecretString],
    /// The whole request, body included, must end within this ([`ApiError::Timeout`] if not).
    pub deadline: Duration,
    /// The largest body read ([`ApiError::BodyTooLarge`] past it).
    pub max_bytes: u64,
    /// What a 403 says is not licensed.
    pub api: &'static str,
}

/// Sends `get` and returns the body of its 200 answer.
pub async fn fetch(http: &reqwest::Client, get: Get<'_>) -> Result<Bytes, ApiError> {
    let deadline = get.deadline;
    match tokio::time::timeout(deadline, send(http, &get)).await {
        Ok(result) => result.map_err(|e| e.scrubbed(get.secrets)),
        Err(_) => Err(ApiError::Timeout(deadline)),
    }
}

async fn send(http: &reqwest::Client, get: &Get<'_>) -> Result<Bytes, ApiError> {
    let mut request = http.get(get.url.clone());
    for (name, value) in &get.headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .map_err(|e| ApiError::Transport(transport_error(e, ErrorUrl::Drop)))?;
    let status = response.status().as_u16();
    if (300..=399).contains(&status) {
        return Err(super::redirect(&response, get.secrets));
    }
    let max = get.max_bytes;
    let body = async {
        if response.content_length().is_some_and(|n| n > max) {
            return Err(ApiError::BodyTooLarge(max as usize));
        }
        let mut out = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| ApiError::Transport(transport_error(e, ErrorUrl::Drop)))?;
            if (out.len() + chunk.len()) as u64 > max {
                return Err(ApiError::BodyTooLarge(max as usize));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }
    .await;
    if status == 200 {
        return body;
    }
    let text = body
        .map(|b| secret::scrubbed_excerpt_with(&b, get.secrets, super::EXCERPT_CHARS))
        .unwrap_or_default();
    Err(match status {
        401 => ApiError::Unauthorized,
        403 => ApiError::Forbidden { api: get.api },
        404 => ApiError::NotFound,
        429 => ApiError::Throttled,
        400 => ApiError::BadRequest(text),
        500..=599 => ApiError::Server { status, body: text },
        _ => ApiError::Unexpected { status, body: text },
    })
}

/// The records of `list` (a JSON array, as the API sent it) as one [`Batch`] of `kind`: each
/// element's bytes exactly as they came (invariant 5), its key the hash of those bytes, its time
/// the RFC 3339 string under `time_field` (`None` when absent or unreadable).
pub fn batch_of(list: &[&RawValue], kind: EventKind, time_field: &str) -> Batch {
    Batch::of_records(
        kind,
        list.iter()
            .map(|raw| (raw.get().as_bytes(), time_of(raw.get(), time_field))),
    )
}

/// The time under `field` of the JSON object `raw`, in milliseconds.
pub fn time_of(raw: &str, field: &str) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Any<'a>(#[serde(borrow)] std::collections::HashMap<&'a str, &'a RawValue>);
    let Any(map) = serde_json::from_str(raw).ok()?;
    let text: &str = serde_json::from_str(map.get(field)?.get()).ok()?;
    crate::clock::parse_rfc3339_ms(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_bytes_and_times() {
        let body = br#"[ {"id":1,"created_at":"2026-12-01T10:00:00Z"} ,{"id":2}]"#;
        let list: Vec<&RawValue> = serde_json::from_slice(body).unwrap();
        let batch = batch_of(&list, EventKind::TrapIncident, "created_at");
        assert_eq!(batch.len(), 2);
        assert_eq!(
            batch.raw(&batch.events[0]),
            br#"{"id":1,"created_at":"2026-12-01T10:00:00Z"}"#
        );
        assert_eq!(batch.events[0].time_ms, Some(1_796_119_200_000));
        assert_eq!(batch.events[1].time_ms, None);
        assert_ne!(batch.events[0].key, batch.events[1].key);
    }
}
