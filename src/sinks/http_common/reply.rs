//! A destination's reply and how it is judged: [`send`] reads the whole reply, [`classify`]
//! applies the Vector rule (2xx delivered; 408, 429 and 5xx except 501 retried; anything else
//! permanent), [`retry_after`] reads how long the destination asks to wait, and [`error_text`]
//! picks the readable part of each destination's error body, scrubbed and then shortened. A 404 is worded as what it is, a
//! wrong address in the sink's configuration, not a refusal of the events; so is a 3xx, which the
//! client never follows (a silent redirect would deliver the events, and the credentials' effect,
//! somewhere no one configured): its error names the `Location`, cut before its query and
//! scrubbed, and the batch is not committed.
//!
//! Invariant 7: every error text built here goes through [`scrub`] with the sink's secrets, so a
//! destination that echoes a token back cannot leak it into a log line, and a transport failure
//! is worded without the URL (a webhook's query may carry a key). What comes from the destination
//! (its body, its `Location`) is scrubbed *before* it is cut to length
//! ([`crate::secret::scrubbed_excerpt`]), so a token straddling the cut is still recognised.

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;

use super::Step;
use crate::net::{self, ErrorUrl};
use crate::sinks::SinkError;

/// A destination's reply, read to the end.
pub struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    /// The `Location` header, as text, when there is one (shortened only once scrubbed, by
    /// [`rejected`]).
    pub location: Option<String>,
    pub body: Bytes,
}

/// Sends `request` and reads the whole reply; a transport failure (refused, reset, timeout) is a
/// reason to retry.
pub async fn send(request: reqwest::RequestBuilder) -> Result<Reply, String> {
    let response = request
        .send()
        .await
        .map_err(|e| net::transport_error(e, ErrorUrl::Drop))?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let body = response
        .bytes()
        .await
        .map_err(|e| net::transport_error(e, ErrorUrl::Drop))?;
    Ok(Reply {
        status,
        retry_after,
        location,
        body,
    })
}

/// How a status is treated: the Vector rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Delivered,
    /// 408, 429 and 5xx except 501: the destination may take it later.
    Retryable,
    /// Everything else, 501 and 1xx/3xx included: it will refuse again until someone changes
    /// something.
    Permanent,
}

pub fn classify(status: StatusCode) -> StatusClass {
    match status.as_u16() {
        200..=299 => StatusClass::Delivered,
        408 | 429 => StatusClass::Retryable,
        501 => StatusClass::Permanent,
        500..=599 => StatusClass::Retryable,
        _ => StatusClass::Permanent,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(24 * 3600)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or_default())
}

/// The readable part of an error body: the `text` (Splunk HEC), `error_description` or `error`
/// (OAuth2), `error.message` (Azure) or `message` member of a JSON reply, else the body itself,
/// scrubbed of `secrets` and then shortened to one line of at most 300 characters (and `…`).
pub fn error_text(body: &[u8], secrets: &[&str]) -> String {
    #[derive(Deserialize)]
    struct AzureError {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Text(String),
        Azure(AzureError),
    }
    #[derive(Deserialize)]
    struct Known {
        text: Option<String>,
        code: Option<serde_json::Value>,
        error: Option<ErrorField>,
        error_description: Option<String>,
        message: Option<String>,
        #[serde(rename = "invalid-event-number")]
        invalid_event_number: Option<u64>,
    }
    let text = match serde_json::from_slice::<Known>(body) {
        Ok(k) => {
            let mut code = k.code.map(|c| format!(" (code {c})")).unwrap_or_default();
            if let Some(n) = k.invalid_event_number {
                code.push_str(&format!(", invalid event number {n} of the request"));
            }
            match (k.text, k.error, k.error_description, k.message) {
                (Some(t), ..) => format!("{t}{code}"),
                (_, Some(ErrorField::Text(e)), Some(d), _) => format!("{e}: {d}"),
                (_, _, Some(d), _) => d,
                (_, Some(ErrorField::Text(e)), ..) => e,
                (_, Some(ErrorField::Azure(a)), ..) => match (a.code, a.message) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (c, m) => c.or(m).unwrap_or_default(),
                },
                (_, _, _, Some(m)) => m,
                _ => String::from_utf8_lossy(body).into_owned(),
            }
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let excerpt = crate::secret::scrubbed_excerpt(text.as_bytes(), secrets, ERROR_CHARS);
    if excerpt.is_empty() {
        return "(empty body)".into();
    }
    excerpt
}

/// The longest excerpt of a destination's reply (its error text, its `Location`) in an error.
const ERROR_CHARS: usize = 300;

/// `text` with every occurrence of each secret (and its Base64 forms) replaced by `[redacted]`:
/// the one scrubbing function, shared with the TAP client.
pub use crate::secret::scrub;

/// The [`Step`] for a reply by the standard rule: 2xx done (with the reply), 408/429/5xx retried
/// after its `Retry-After`, anything else rejected. `what` names the sink and request in errors.
pub fn judge(what: &str, reply: Reply, secrets: &[&str]) -> Step<Reply> {
    match classify(reply.status) {
        StatusClass::Delivered => Step::Done(reply),
        StatusClass::Retryable => Step::Retry {
            reason: scrub(
                format!(
                    "{what}: HTTP {}: {}",
                    reply.status.as_u16(),
                    error_text(&reply.body, secrets)
                ),
                secrets,
            ),
            after: reply.retry_after,
        },
        StatusClass::Permanent => Step::Fail(rejected(what, &reply, secrets)),
    }
}

/// The loud, permanent error for `reply`. A 404 says plainly that the address is wrong: the
/// destination has no such endpoint, so it is the sink's configuration that must change. A 3xx
/// says so too, naming where the destination points (`Location` without its query, which may
/// carry a key; then scrubbed, in case it echoes a token).
pub fn rejected(what: &str, reply: &Reply, secrets: &[&str]) -> SinkError {
    let text = if reply.status.is_redirection() {
        let location = match reply.location.as_deref() {
            Some(l) => format!(
                "`{}`",
                crate::secret::scrubbed_excerpt(
                    super::display_url(l).as_bytes(),
                    secrets,
                    ERROR_CHARS
                )
            ),
            None => "nowhere (no Location header)".to_string(),
        };
        format!(
            "{what}: HTTP {status}: the destination redirects to {location}; HTTP sinks follow no redirect, so nothing was delivered: a configuration error (set the sink's URL to the address the destination expects, or fix the proxy in between)",
            status = reply.status,
        )
    } else if reply.status == StatusCode::NOT_FOUND {
        format!(
            "{what}: HTTP 404 Not Found: the URL's path is wrong for this sink, a configuration error ({})",
            error_text(&reply.body, secrets)
        )
    } else {
        format!(
            "{what}: HTTP {}: {}",
            reply.status.as_u16(),
            error_text(&reply.body, secrets)
        )
    };
    SinkError::Rejected(scrub(text, secrets))
}

/// One attempt at `request`: sent, read and judged by [`judge`]; a transport failure is worth
/// another attempt. `what` names the sink and request in errors.
pub async fn attempt(
    what: &str,
    request: reqwest::RequestBuilder,
    secrets: &[&str],
) -> Step<Reply> {
    match send(request).await {
        Err(e) => transport_retry(what, e, secrets),
        Ok(reply) => judge(what, reply, secrets),
    }
}

/// The [`Step`] for a transport failure (refused, reset, timed out): retry, no `Retry-After`.
pub fn transport_retry<T>(what: &str, error: String, secrets: &[&str]) -> Step<T> {
    Step::Retry {
        reason: scrub(format!("{what}: {error}"), secrets),
        after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_retry_rule() {
        for (code, class) in [
            (200, StatusClass::Delivered),
            (204, StatusClass::Delivered),
            (400, StatusClass::Permanent),
            (401, StatusClass::Permanent),
            (403, StatusClass::Permanent),
            (404, StatusClass::Permanent),
            (408, StatusClass::Retryable),
            (413, StatusClass::Permanent),
            (429, StatusClass::Retryable),
            (500, StatusClass::Retryable),
            (501, StatusClass::Permanent),
            (502, StatusClass::Retryable),
            (503, StatusClass::Retryable),
            (504, StatusClass::Retryable),
            (301, StatusClass::Permanent),
        ] {
            assert_eq!(
                classify(StatusCode::from_u16(code).unwrap()),
                class,
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(120);
        h.insert("retry-after", later.to_rfc2822().parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_text_reads_each_destinations_shape() {
        assert_eq!(
            error_text(br#"{"text":"Invalid token","code":4}"#, &[]),
            "Invalid token (code 4)"
        );
        assert_eq!(
            error_text(
                br#"{"error":{"code":"InvalidStream","message":"no such stream"}}"#,
                &[]
            ),
            "InvalidStream: no such stream"
        );
        assert_eq!(
            error_text(
                br#"{"error":"invalid_client","error_description":"AADSTS7000215: bad secret"}"#,
                &[]
            ),
            "invalid_client: AADSTS7000215: bad secret"
        );
        assert_eq!(error_text(b"plain\nfailure", &[]), "plain failure");
        assert_eq!(error_text(b"", &[]), "(empty body)");
        assert_eq!(
            error_text("x".repeat(1000).as_bytes(), &[]).chars().count(),
            301
        );
    }

    #[test]
    fn not_found_says_the_path_is_wrong() {
        let reply = Reply {
            status: StatusCode::NOT_FOUND,
            retry_after: None,
            location: None,
            body: Bytes::from_static(
                br#"{"text":"The requested URL was not found on this server.","code":404}"#,
            ),
        };
        let Step::Fail(e) = judge("http sink `x`: POST https://h/p", reply, &[]) else {
            panic!("a 404 is permanent");
        };
        assert_eq!(
            e.to_string(),
            "http sink `x`: POST https://h/p: HTTP 404 Not Found: the URL's path is wrong for this sink, a configuration error (The requested URL was not found on this server. (code 404))"
        );
    }

    #[test]
    fn a_redirect_names_its_location_without_query_or_secret() {
        let reply = |status: u16, location: Option<&str>| Reply {
            status: StatusCode::from_u16(status).unwrap(),
            retry_after: None,
            location: location.map(str::to_string),
            body: Bytes::new(),
        };
        let r = reply(308, Some("https://new.example/in/tok-5ecr3t?sig=abc"));
        let Step::Fail(e) = judge("http sink `x`: POST https://h/p", r, &["tok-5ecr3t"]) else {
            panic!("a 3xx is permanent");
        };
        assert!(matches!(e, SinkError::Rejected(_)));
        assert_eq!(
            e.to_string(),
            "http sink `x`: POST https://h/p: HTTP 308 Permanent Redirect: the destination redirects to `https://new.example/in/[redacted]`; HTTP sinks follow no redirect, so nothing was delivered: a configuration error (set the sink's URL to the address the destination expects, or fix the proxy in between)"
        );
        let Step::Fail(e) = judge("w", reply(302, None), &[]) else {
            panic!("a 3xx is permanent");
        };
        assert!(
            e.to_string().starts_with(
                "w: HTTP 302 Found: the destination redirects to nowhere (no Location header);"
            ),
            "{e}"
        );
    }

    /// A token echoed across the 300th character of a destination's error text (a body, or a
    /// `Location`): scrubbed before the text is cut, so none of it is left in the error, whether
    /// the reply is retried or refused. Cut first, its first part stayed, no longer recognised.
    #[test]
    fn a_token_straddling_the_cut_of_a_reply_is_scrubbed() {
        let token = "TOPSECRET-hec-0123456789abcdef";
        for at in [280, 290, 295, 299] {
            let text = format!("{}{token} was sent", "x".repeat(at));
            for status in [400, 503] {
                let body = serde_json::json!({ "text": text, "code": 4 }).to_string();
                let reply = Reply {
                    status: StatusCode::from_u16(status).unwrap(),
                    retry_after: None,
                    location: None,
                    body: Bytes::from(body),
                };
                let reason = match judge("splunk_hec sink `s`", reply, &[token]) {
                    Step::Retry { reason, .. } => reason,
                    Step::Fail(e) => e.to_string(),
                    Step::Done(_) => panic!("{status} delivered"),
                };
                assert!(!reason.contains("TOPS"), "{at} {status}: {reason}");
                assert!(reason.contains('…'), "{at} {status}: {reason}");
            }
            let reply = Reply {
                status: StatusCode::FOUND,
                retry_after: None,
                location: Some(format!("https://elsewhere/{}{token}/x", "p".repeat(at))),
                body: Bytes::new(),
            };
            let Step::Fail(e) = judge("http sink `x`", reply, &[token]) else {
                panic!("a 3xx is permanent");
            };
            assert!(!e.to_string().contains("TOPS"), "{at}: {e}");
        }
    }

    #[test]
    fn scrub_removes_secrets() {
        let t = scrub("bad token s3cr3t-token here".into(), &["s3cr3t-token"]);
        assert_eq!(t, "bad token [redacted] here");
    }
}
