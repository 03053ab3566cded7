//! The TAP Threat, Campaign and Forensics API client: `GET /v2/threat/summary/{threatId}`,
//! `GET /v2/campaign/{id}` and `GET /v2/forensics?threatId=…|campaignId=…`, one small JSON
//! object each, for `tapfwd lookup` and for threat enrichment.
//!
//! The invariants it keeps: every request has an overall deadline (connect, headers and body), so
//! a slow threat API can only cost its caller that long (invariant 6, and enrichment never holds
//! delivery back); a body is returned only when it is complete, within its size bound, and valid
//! JSON, exactly as the API sent it; an id is one path segment or query value, percent-encoded,
//! never spliced into the path. The secret travels only in the `Authorization` header, and error
//! texts taken from a reply are scrubbed of it before they are returned (invariant 7). Replies are
//! mapped to [`ApiError`]: 401/403 to credentials, 404 to [`ApiError::NotFound`], 429 to
//! throttled, 5xx to a server error; what to do about each is its [`ApiError::disposition`].

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

/// The largest body accepted (forensics of a big campaign run to a few MB).
pub const MAX_BODY: usize = 16 << 20;

/// A shared client for the intelligence endpoints of every tenant.
#[derive(Clone)]
pub struct IntelClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl IntelClient {
    /// A client whose every request, body included, ends within `timeout`.
    pub fn new(timeout: Duration) -> Result<IntelClient, ApiError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("tapfwd/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .timeout(timeout)
            .gzip(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        Ok(IntelClient { http, timeout })
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
        let body = self.body(response, &scrub).await;
        if status == 200 {
            let body = body?;
            serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                .map_err(|e| ApiError::InvalidJson(e.to_string()))?;
            return Ok(body);
        }
        let text = body.map(|b| one_line(&b, &scrub)).unwrap_or_default();
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
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY as u64)
        {
            return Err(ApiError::BodyTooLarge(MAX_BODY));
        }
        let mut out = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transport(&e, scrub))?;
            if out.len() + chunk.len() > MAX_BODY {
                return Err(ApiError::BodyTooLarge(MAX_BODY));
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

/// At most 300 characters of an error body, on one line, scrubbed.
fn one_line(body: &[u8], scrub: &(dyn Fn(String) -> String + Sync)) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(600)]);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    scrub(line.trim().to_owned())
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

    #[test]
    fn error_bodies_are_one_line_and_scrubbed() {
        let secret = SecretString::from("hunter2-secret");
        let forms = secret::basic_auth_forms("p", &secret);
        let text = one_line(b"bad\ncredentials hunter2-secret\r\n", &|t| {
            secret::scrub_with(t, &forms)
        });
        assert_eq!(text, "bad credentials [redacted]");
    }
}
