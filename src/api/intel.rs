//! The TAP Threat, Campaign and Forensics API client: `GET /v2/threat/summary/{threatId}`,
//! `GET /v2/campaign/{id}` and `GET /v2/forensics?threatId=…|campaignId=…`, one small JSON
//! object each, for `tapfwd lookup` and for threat enrichment.
//!
//! The invariants it keeps: every request has an overall deadline (connect, headers and body), so
//! a slow threat API can only cost its caller that long (invariant 6, and enrichment never holds
//! delivery back); a body is returned only when it is complete, within its size bound, and valid
//! JSON, exactly as the API sent it; an id is one path segment or query value, percent-encoded,
//! never spliced into the path. The secret travels only in the `Authorization` header, and error
//! texts taken from a reply are scrubbed of it before they are cut and returned (invariant 7).
//! Replies are mapped to [`ApiError`]: a 3xx to [`ApiError::Redirect`] (never followed: the
//! other server's body is not taken for a summary), 401/403 to credentials, 404 to
//! [`ApiError::NotFound`], 429 to throttled, 5xx to a server error; what to do about each is its
//! [`ApiError::disposition`].

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use secrecy::{ExposeSecret, SecretString};

use super::ApiError;
use crate::secret;

/// Which object to look up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query<'a> {
    /// `/v2/threat/summary/{id}`.
    Threat(&'a str),
    /// `/v2/campaign/{id}`.
    Campaign(&'a str),
    /// `/v2/forensics?threatId={id}`.
    ThreatForensics(&'a str),
    /// `/v2/forensics?campaignId={id}`.
    CampaignForensics(&'a str),
}

impl Query<'_> {
    /// The id looked up.
    pub fn id(&self) -> &str {
        match self {
            Query::Threat(id)
            | Query::Campaign(id)
            | Query::ThreatForensics(id)
            | Query::CampaignForensics(id) => id,
        }
    }

    /// What is looked up, for messages (`threat`, `campaign`, `forensics`).
    pub fn what(&self) -> &'static str {
        match self {
            Query::Threat(_) => "threat",
            Query::Campaign(_) => "campaign",
            Query::ThreatForensics(_) | Query::CampaignForensics(_) => "forensics",
        }
    }

    /// The request URL under `base_url`; `None` when `base_url` is not a URL with a path.
    fn url(&self, base_url: &str) -> Option<reqwest::Url> {
        let mut url = reqwest::Url::parse(base_url).ok()?;
        {
            let mut path = url.path_segments_mut().ok()?;
            path.pop_if_empty();
            match self {
                Query::Threat(id) => path.extend(["v2", "threat", "summary", id]),
                Query::Campaign(id) => path.extend(["v2", "campaign", id]),
                Query::ThreatForensics(_) | Query::CampaignForensics(_) => {
                    path.extend(["v2", "forensics"])
                }
            };
        }
        match self {
            Query::ThreatForensics(id) => {
                url.query_pairs_mut().append_pair("threatId", id);
            }
            Query::CampaignForensics(id) => {
                url.query_pairs_mut().append_pair("campaignId", id);
            }
            Query::Threat(_) | Query::Campaign(_) => {}
        }
        Some(url)
    }
}

/// The largest body accepted by default (forensics of a big campaign run to a few MB); a caller
/// that keeps what it gets (enrichment) sets its own bound with [`IntelClient::with_max_body`].
pub const MAX_BODY: usize = 16 << 20;

/// A shared client for the intelligence endpoints of every tenant.
#[derive(Clone)]
pub struct IntelClient {
    http: reqwest::Client,
    timeout: Duration,
    /// The largest body returned; a larger one is [`ApiError::BodyTooLarge`], and is not read
    /// past this bound.
    max_body: usize,
}

impl IntelClient {
    /// A client whose every request, body included, ends within `timeout`. It follows no redirect
    /// ([`super::http_client`]).
    pub fn new(timeout: Duration) -> Result<IntelClient, ApiError> {
        let http = super::http_client()
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .timeout(timeout)
            .build()
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        Ok(IntelClient {
            http,
            timeout,
            max_body: MAX_BODY,
        })
    }

    /// This client with bodies bounded at `bytes` instead of [`MAX_BODY`].
    pub fn with_max_body(mut self, bytes: usize) -> IntelClient {
        self.max_body = bytes;
        self
    }

    /// The JSON body of `query`, exactly as the API sent it.
    pub async fn get(
        &self,
        base_url: &str,
        principal: &str,
        secret: &SecretString,
        query: Query<'_>,
    ) -> Result<Bytes, ApiError> {
        let url = query
            .url(base_url)
            .ok_or_else(|| ApiError::BadUrl(base_url.to_owned()))?;
        self.get_url(url, principal, secret).await
    }

    /// The JSON body at `url` (any other read-only TAP endpoint, e.g. People), exactly as sent,
    /// with the same status handling, size bound and secret scrubbing as [`IntelClient::get`].
    pub async fn get_url(
        &self,
        url: reqwest::Url,
        principal: &str,
        secret: &SecretString,
    ) -> Result<Bytes, ApiError> {
        let forms = secret::basic_auth_forms(principal, secret);
        let scrub = |text: String| secret::scrub_with(text, &forms);
        let response = self
            .http
            .get(url)
            .basic_auth(principal, Some(secret.expose_secret()))
            .send()
            .await
            .map_err(|e| self.transport(&e, &scrub))?;
        let status = response.status().as_u16();
        if (300..=399).contains(&status) {
            return Err(super::redirect(&response, &forms));
        }
        let body = self.body(response, &scrub).await;
        if status == 200 {
            let body = body?;
            serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
            return Ok(body);
        }
        let text = body
            .map(|b| secret::scrubbed_excerpt_with(&b, &forms, super::EXCERPT_CHARS))
            .unwrap_or_default();
        Err(match status {
            404 => ApiError::NotFound,
            401 => ApiError::Unauthorized,
            403 => ApiError::Forbidden { api: "this API" },
            429 => ApiError::Throttled,
            500..=599 => ApiError::Server { status, body: text },
            _ => ApiError::Unexpected { status, body: text },
        })
    }

    async fn body(
        &self,
        response: reqwest::Response,
        scrub: &(dyn Fn(String) -> String + Sync),
    ) -> Result<Bytes, ApiError> {
        let max = self.max_body;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(ApiError::BodyTooLarge(max));
        }
        let mut out = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transport(&e, scrub))?;
            if out.len() + chunk.len() > max {
                return Err(ApiError::BodyTooLarge(max));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    fn transport(&self, e: &reqwest::Error, scrub: &(dyn Fn(String) -> String + Sync)) -> ApiError {
        if e.is_timeout() {
            return ApiError::NoAnswer(self.timeout);
        }
        let mut msg = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        ApiError::Transport(scrub(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Disposition;

    #[test]
    fn ids_are_one_encoded_segment_or_query_value() {
        let base = "https://tap-api-v2.proofpoint.com/";
        let url = |q: Query| q.url(base).unwrap().to_string();
        assert_eq!(
            url(Query::Threat("ab12")),
            "https://tap-api-v2.proofpoint.com/v2/threat/summary/ab12"
        );
        assert_eq!(
            url(Query::Campaign("../siem/all")),
            "https://tap-api-v2.proofpoint.com/v2/campaign/..%2Fsiem%2Fall"
        );
        assert_eq!(
            url(Query::CampaignForensics("a&b=c")),
            "https://tap-api-v2.proofpoint.com/v2/forensics?campaignId=a%26b%3Dc"
        );
        assert_eq!(
            Query::ThreatForensics("x")
                .url("http://127.0.0.1:1/prefix")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:1/prefix/v2/forensics?threatId=x"
        );
        assert!(Query::Threat("x").url("not a url").is_none());
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert_eq!(
            ApiError::NoAnswer(Duration::from_secs(1)).disposition(),
            Disposition::Transient
        );
        assert_eq!(
            ApiError::Server {
                status: 503,
                body: String::new()
            }
            .disposition(),
            Disposition::Transient
        );
        assert_eq!(ApiError::NotFound.disposition(), Disposition::Rejected);
        assert_eq!(
            ApiError::Unauthorized.disposition(),
            Disposition::Credentials
        );
    }

    /// Each reply a lookup may get, and what its caller does about it.
    #[tokio::test]
    async fn lookup_replies_map_to_their_disposition() {
        use crate::api::test_server;
        let client = IntelClient::new(Duration::from_secs(10)).unwrap();
        let secret = SecretString::from("intel-sekrit");
        let cases = [
            (
                401,
                "",
                Disposition::Credentials,
                "credentials rejected (401): check the principal and secret",
            ),
            (
                403,
                "",
                Disposition::Credentials,
                "access denied (403): this API is not licensed for this principal",
            ),
            (404, "", Disposition::Rejected, "not found (404)"),
            (
                429,
                "",
                Disposition::Throttled,
                "request quota exhausted (429)",
            ),
            (
                502,
                "gateway intel-sekrit",
                Disposition::Transient,
                "server error (502): gateway [redacted]",
            ),
            (
                200,
                "{\"cut",
                Disposition::Transient,
                "response is not valid JSON: EOF while parsing a string at line 1 column 5",
            ),
        ];
        for (status, body, disposition, text) in cases {
            let addr = test_server::answer(status, &[], body).await;
            let e = client
                .get(&format!("http://{addr}"), "p", &secret, Query::Threat("t1"))
                .await
                .unwrap_err();
            assert_eq!(e.disposition(), disposition, "{status}: {e}");
            assert_eq!(e.to_string(), text, "{status}");
        }
        let e = client
            .get("not a url", "p", &secret, Query::Campaign("c1"))
            .await
            .unwrap_err();
        assert_eq!(e.disposition(), Disposition::Rejected, "{e}");
    }

    #[tokio::test]
    async fn error_bodies_are_one_line_and_scrubbed() {
        use crate::api::test_server;
        let client = IntelClient::new(Duration::from_secs(10)).unwrap();
        let secret = SecretString::from("hunter2-secret");
        let addr = test_server::answer(502, &[], "bad\ncredentials hunter2-secret\r\n").await;
        let e = client
            .get(&format!("http://{addr}"), "p", &secret, Query::Threat("t1"))
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "server error (502): bad credentials [redacted]"
        );
    }

    /// A secret that straddles the 300th character of an error body: scrubbed before the body is
    /// cut, so none of it is left (cut first, `TOPSECRET-` stayed, unrecognised).
    #[tokio::test]
    async fn a_secret_straddling_the_cut_of_an_error_body_is_scrubbed() {
        use crate::api::test_server;
        let client = IntelClient::new(Duration::from_secs(10)).unwrap();
        let secret = SecretString::from("TOPSECRET-intel-0123456789");
        for at in [285, 290, 295, 299] {
            let body = format!("{}TOPSECRET-intel-0123456789 echoed", "x".repeat(at));
            let addr = test_server::answer(500, &[], &body).await;
            let e = client
                .get(
                    &format!("http://{addr}"),
                    "p",
                    &secret,
                    Query::Campaign("c1"),
                )
                .await
                .unwrap_err();
            let text = e.to_string();
            assert!(!text.contains("TOPS"), "{at}: {text}");
            assert!(text.ends_with('…'), "{at}: {text}");
        }
    }

    /// A 3xx is refused with its Location named, not followed to the other server.
    #[tokio::test]
    async fn a_redirect_is_refused_not_followed() {
        use crate::api::{test_server, Disposition};
        let client = IntelClient::new(Duration::from_secs(10)).unwrap();
        let secret = SecretString::from("intel-sekrit");
        let elsewhere = test_server::answer(200, &[], r#"{"from":"elsewhere"}"#).await;
        let location = format!("http://{elsewhere}/v2/threat/summary/t1");
        let addr = test_server::answer(302, &[("Location", &location)], "").await;
        let e = client
            .get(&format!("http://{addr}"), "p", &secret, Query::Threat("t1"))
            .await
            .unwrap_err();
        assert_eq!(e.class(), "redirect", "{e}");
        assert_eq!(e.disposition(), Disposition::Rejected);
        assert!(e.to_string().contains(&location), "{e}");
    }

    /// A body over the client's bound is refused by its announced length, unread.
    #[tokio::test]
    async fn a_body_over_the_bound_is_refused() {
        use crate::api::test_server;
        let client = IntelClient::new(Duration::from_secs(10))
            .unwrap()
            .with_max_body(64);
        let secret = SecretString::from("intel-sekrit");
        let body = format!(r#"{{"pad":"{}"}}"#, "x".repeat(100));
        let addr = test_server::answer(200, &[], &body).await;
        let e = client
            .get(&format!("http://{addr}"), "p", &secret, Query::Threat("t1"))
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "response larger than 64 bytes");
    }
}
