//! The one error model of every Proofpoint client: [`ApiError`], what went wrong with a request,
//! and [`Disposition`], what a caller does about it.
//!
//! Every client of the wire layer (SIEM, intel, People, the PoD stream) returns an `ApiError`;
//! errors of a product's own (a PoD catch-up, a People snapshot) wrap it and take their decision
//! from [`ApiError::disposition`], which names every variant (no wildcard): a new variant must say
//! what happens about it, and no decision ever depends on the words of a message. Messages are
//! part of the interface (operators, tests and docs read them): lowercase, no trailing period.
//!
//! Invariant 7: every text that came from outside (a body, a header, a transport error that may
//! quote a URL) can be cleaned with [`ApiError::scrubbed`] before it leaves the client.

use std::time::Duration;

use secrecy::SecretString;

use super::split::SplitError;
use crate::secret::{scrub_with, scrubbed_excerpt_with};

/// Why a request to a Proofpoint API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("credentials rejected (401): check the principal and secret")]
    Unauthorized,
    /// `api` is what the message says is not licensed: `the SIEM API`, `this API`.
    #[error("access denied (403): {api} is not licensed for this principal")]
    Forbidden { api: &'static str },
    #[error("request quota exhausted (429)")]
    Throttled,
    #[error("start outside the API's horizon (400): {0}")]
    TooOld(String),
    #[error("request rejected (400): {0}")]
    BadRequest(String),
    /// A lookup of an id the API does not know.
    #[error("not found (404)")]
    NotFound,
    #[error("the API redirected ({status}) to `{location}`; the TAP API does not redirect, so this is refused (check base_url and any proxy)")]
    Redirect { status: u16, location: String },
    #[error("server error ({status}): {body}")]
    Server { status: u16, body: String },
    #[error("unexpected status ({status}): {body}")]
    Unexpected { status: u16, body: String },
    /// The PoD service answered the WebSocket upgrade with 401 or 403.
    #[error("the service refused the token (HTTP {0})")]
    TokenRefused(u16),
    /// An OAuth2 token endpoint refused the client id and secret (400 `invalid_client`, 401,
    /// 403): the source waits for new credentials, it does not retry.
    #[error("the token endpoint refused the client id and secret (HTTP {0}): check client_id and the client secret")]
    ClientRefused(u16),
    /// The PoD service answered the upgrade with 409: a session of the token is still open.
    #[error("a session of this token and type is already open (HTTP 409)")]
    SessionOpen,
    /// The PoD service answered the upgrade with another status.
    #[error("HTTP {0} instead of a WebSocket")]
    NotUpgraded(u16),
    #[error("connection failed: {0}")]
    Transport(String),
    /// No data for the read timeout in the middle of a response.
    #[error("response stalled: no data for {0:?}")]
    Timeout(Duration),
    /// A request with an overall deadline (a lookup) did not end within it.
    #[error("no complete answer within {0:?}")]
    NoAnswer(Duration),
    #[error("window not complete within poll.window_deadline ({})", humantime::format_duration(*.0))]
    Deadline(Duration),
    #[error("window over poll.{limit} ({events} events, {bytes} bytes so far): the response does not end like a real one")]
    TooLarge {
        limit: &'static str,
        events: u64,
        bytes: u64,
    },
    /// A body over the client's bound (a lookup's).
    #[error("response larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("malformed response: {0}")]
    Malformed(#[from] SplitError),
    /// A 200 whose content type is not JSON.
    #[error("response is not JSON (content-type `{0}`)")]
    NotJson(String),
    /// A 200 whose body does not parse as JSON.
    #[error("response is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("invalid base URL `{0}`")]
    BadUrl(String),
}

/// What a caller does about a failed request; [`ApiError::disposition`] decides, exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The API refuses the credentials: the source is failed until they change (or a long wait).
    Credentials,
    /// 429: wait for budget to be released.
    Throttled,
    /// The start lies outside the API's horizon: step further inside it and ask again now.
    TooOld,
    /// The API rejected this request and will again: retry after a long wait, loudly.
    Rejected,
    /// A fault that retrying can cure (5xx, a reset, a stall, a body cut short or garbled by the
    /// way there, a session still open): retry with exponential backoff. The API keeps the data,
    /// so nothing is lost.
    Transient,
}

/// The disposition of an HTTP status that has no variant of its own (the PoD upgrade's):
/// 401/403 refuse the credentials, 429 throttles, 408 and 5xx are transient, other 3xx/4xx
/// reject the request (and will again), anything else is transient.
fn status_disposition(status: u16) -> Disposition {
    match status {
        401 | 403 => Disposition::Credentials,
        429 => Disposition::Throttled,
        408 => Disposition::Transient,
        300..=499 => Disposition::Rejected,
        0..=299 | 500..=u16::MAX => Disposition::Transient,
    }
}

impl ApiError {
    /// What to do about this error. No wildcard: a new variant must say.
    pub fn disposition(&self) -> Disposition {
        match self {
            ApiError::Unauthorized
            | ApiError::Forbidden { .. }
            | ApiError::TokenRefused(_)
            | ApiError::ClientRefused(_) => Disposition::Credentials,
            ApiError::Throttled => Disposition::Throttled,
            ApiError::TooOld(_) => Disposition::TooOld,
            ApiError::BadRequest(_)
            | ApiError::NotFound
            | ApiError::TooLarge { .. }
            | ApiError::BodyTooLarge(_)
            | ApiError::Redirect { .. }
            | ApiError::BadUrl(_) => Disposition::Rejected,
            ApiError::NotUpgraded(status) => status_disposition(*status),
            ApiError::Server { .. }
            | ApiError::Unexpected { .. }
            | ApiError::SessionOpen
            | ApiError::Transport(_)
            | ApiError::Timeout(_)
            | ApiError::NoAnswer(_)
            | ApiError::Deadline(_)
            | ApiError::Malformed(_)
            | ApiError::NotJson(_)
            | ApiError::InvalidJson(_) => Disposition::Transient,
        }
    }

    /// A bounded label for metrics.
    pub fn class(&self) -> &'static str {
        match self {
            ApiError::Unauthorized | ApiError::TokenRefused(401) | ApiError::ClientRefused(_) => {
                "unauthorized"
            }
            ApiError::Forbidden { .. } | ApiError::TokenRefused(_) => "forbidden",
            ApiError::Throttled => "throttled",
            ApiError::TooOld(_) => "too_old",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound => "not_found",
            ApiError::Redirect { .. } => "redirect",
            ApiError::Server { .. } => "server_error",
            ApiError::Unexpected { .. } | ApiError::NotUpgraded(_) => "unexpected_status",
            ApiError::SessionOpen => "session_open",
            ApiError::Transport(_) => "transport",
            ApiError::Timeout(_) | ApiError::NoAnswer(_) => "timeout",
            ApiError::Deadline(_) => "deadline",
            ApiError::TooLarge { .. } | ApiError::BodyTooLarge(_) => "too_large",
            ApiError::Malformed(_) => "malformed",
            ApiError::NotJson(_) | ApiError::InvalidJson(_) => "not_json",
            ApiError::BadUrl(_) => "bad_url",
        }
    }

    /// This error with every text that came from outside scrubbed of `secrets`
    /// ([`crate::secret::scrub`]).
    pub fn scrubbed(self, secrets: &[SecretString]) -> ApiError {
        let clean = |t: String| scrub_with(t, secrets);
        match self {
            ApiError::TooOld(b) => ApiError::TooOld(clean(b)),
            ApiError::BadRequest(b) => ApiError::BadRequest(clean(b)),
            ApiError::Server { status, body } => ApiError::Server {
                status,
                body: clean(body),
            },
            ApiError::Unexpected { status, body } => ApiError::Unexpected {
                status,
                body: clean(body),
            },
            ApiError::Redirect { status, location } => ApiError::Redirect {
                status,
                location: clean(location),
            },
            ApiError::Transport(t) => ApiError::Transport(clean(t)),
            ApiError::NotJson(t) => ApiError::NotJson(clean(t)),
            ApiError::InvalidJson(t) => ApiError::InvalidJson(clean(t)),
            ApiError::BadUrl(t) => ApiError::BadUrl(clean(t)),
            // The head is a body's first bytes, cut where the splitter stopped reading: a secret
            // cut off at its end is redacted too.
            ApiError::Malformed(SplitError::NotObject { head }) => {
                ApiError::Malformed(SplitError::NotObject {
                    head: scrubbed_excerpt_with(head.as_bytes(), secrets, head.len()),
                })
            }
            ApiError::Malformed(SplitError::Unexpected {
                found,
                expected,
                offset,
            }) => ApiError::Malformed(SplitError::Unexpected {
                found: clean(found),
                expected,
                offset,
            }),
            e @ (ApiError::Unauthorized
            | ApiError::Forbidden { .. }
            | ApiError::Throttled
            | ApiError::NotFound
            | ApiError::TokenRefused(_)
            | ApiError::ClientRefused(_)
            | ApiError::SessionOpen
            | ApiError::NotUpgraded(_)
            | ApiError::Timeout(_)
            | ApiError::NoAnswer(_)
            | ApiError::Deadline(_)
            | ApiError::TooLarge { .. }
            | ApiError::BodyTooLarge(_)
            | ApiError::Malformed(_)) => e,
        }
    }

    /// The HTTP status this error came from, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Unauthorized => Some(401),
            ApiError::Forbidden { .. } => Some(403),
            ApiError::Throttled => Some(429),
            ApiError::TooOld(_) | ApiError::BadRequest(_) => Some(400),
            ApiError::NotFound => Some(404),
            ApiError::SessionOpen => Some(409),
            ApiError::Server { status, .. }
            | ApiError::Unexpected { status, .. }
            | ApiError::Redirect { status, .. }
            | ApiError::TokenRefused(status)
            | ApiError::ClientRefused(status)
            | ApiError::NotUpgraded(status) => Some(*status),
            ApiError::Transport(_)
            | ApiError::Timeout(_)
            | ApiError::NoAnswer(_)
            | ApiError::Deadline(_)
            | ApiError::TooLarge { .. }
            | ApiError::BodyTooLarge(_)
            | ApiError::Malformed(_)
            | ApiError::NotJson(_)
            | ApiError::InvalidJson(_)
            | ApiError::BadUrl(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_one_disposition() {
        let cases = [
            (ApiError::Unauthorized, Disposition::Credentials),
            (
                ApiError::Forbidden {
                    api: "the SIEM API",
                },
                Disposition::Credentials,
            ),
            (ApiError::TokenRefused(401), Disposition::Credentials),
            (ApiError::TokenRefused(403), Disposition::Credentials),
            (ApiError::ClientRefused(400), Disposition::Credentials),
            (ApiError::ClientRefused(401), Disposition::Credentials),
            (ApiError::Throttled, Disposition::Throttled),
            (ApiError::TooOld("x".into()), Disposition::TooOld),
            (ApiError::BadRequest("x".into()), Disposition::Rejected),
            (ApiError::NotFound, Disposition::Rejected),
            (
                ApiError::TooLarge {
                    limit: "max_window_events",
                    events: 1,
                    bytes: 1,
                },
                Disposition::Rejected,
            ),
            (ApiError::BodyTooLarge(16 << 20), Disposition::Rejected),
            (
                ApiError::Redirect {
                    status: 302,
                    location: "https://elsewhere".into(),
                },
                Disposition::Rejected,
            ),
            (ApiError::BadUrl("not a url".into()), Disposition::Rejected),
            (
                ApiError::Server {
                    status: 503,
                    body: String::new(),
                },
                Disposition::Transient,
            ),
            (
                ApiError::Unexpected {
                    status: 418,
                    body: String::new(),
                },
                Disposition::Transient,
            ),
            (ApiError::SessionOpen, Disposition::Transient),
            (ApiError::NotUpgraded(429), Disposition::Throttled),
            (ApiError::NotUpgraded(503), Disposition::Transient),
            (ApiError::NotUpgraded(408), Disposition::Transient),
            (ApiError::NotUpgraded(404), Disposition::Rejected),
            (ApiError::NotUpgraded(302), Disposition::Rejected),
            (ApiError::NotUpgraded(200), Disposition::Transient),
            (ApiError::Transport("reset".into()), Disposition::Transient),
            (
                ApiError::Timeout(Duration::from_secs(1)),
                Disposition::Transient,
            ),
            (
                ApiError::NoAnswer(Duration::from_secs(1)),
                Disposition::Transient,
            ),
            (
                ApiError::Deadline(Duration::from_secs(1800)),
                Disposition::Transient,
            ),
            // A body cut short and one garbled on the way are both asked for again.
            (
                ApiError::Malformed(SplitError::EndedEarly { offset: 3 }),
                Disposition::Transient,
            ),
            (
                ApiError::Malformed(SplitError::TrailingData { offset: 3 }),
                Disposition::Transient,
            ),
            (
                ApiError::NotJson("text/html".into()),
                Disposition::Transient,
            ),
            (
                ApiError::InvalidJson("expected value".into()),
                Disposition::Transient,
            ),
        ];
        for (error, expected) in cases {
            assert_eq!(error.disposition(), expected, "{error}");
        }
    }

    /// The messages operators, tests and docs know, word for word.
    #[test]
    fn messages_keep_their_words() {
        let cases = [
            (
                ApiError::Unauthorized,
                "credentials rejected (401): check the principal and secret",
            ),
            (
                ApiError::Forbidden {
                    api: "the SIEM API",
                },
                "access denied (403): the SIEM API is not licensed for this principal",
            ),
            (
                ApiError::Forbidden { api: "this API" },
                "access denied (403): this API is not licensed for this principal",
            ),
            (ApiError::Throttled, "request quota exhausted (429)"),
            (ApiError::NotFound, "not found (404)"),
            (
                ApiError::TokenRefused(401),
                "the service refused the token (HTTP 401)",
            ),
            (
                ApiError::SessionOpen,
                "a session of this token and type is already open (HTTP 409)",
            ),
            (
                ApiError::NotUpgraded(503),
                "HTTP 503 instead of a WebSocket",
            ),
            (
                ApiError::Deadline(Duration::from_secs(1800)),
                "window not complete within poll.window_deadline (30m)",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }

    #[test]
    fn texts_from_outside_are_scrubbed() {
        let secret = SecretString::from("hunter2-secret");
        let e = ApiError::Server {
            status: 500,
            body: "echo hunter2-secret".into(),
        }
        .scrubbed(std::slice::from_ref(&secret));
        assert_eq!(e.to_string(), "server error (500): echo [redacted]");
    }
}
