//! OAuth2 client credentials, shared by the products that sign in that way (CTR, ITM): one
//! bearer token per tenant ([`TokenCache`]), fetched from the product's token endpoint with the
//! tenant's client id and secret, cached, renewed [`RENEW_BEFORE`] seconds before it expires and
//! once after a 401, and the one client ([`BearerClient`]) that sends a product's requests with
//! it.
//!
//! Invariant 7: the client secret travels only in the token request's form body and the token
//! only in an `Authorization: Bearer` header. Neither is logged, put in the store, in status or
//! in an error: every text that came back (a body, a `Location`, a transport error that may
//! quote a URL) is scrubbed of both ([`TokenCache::secrets`], [`crate::secret::scrub_with`])
//! before it is cut ([`crate::secret::scrubbed_excerpt_with`]). A token is held as a
//! [`SecretString`], only in memory.
//!
//! Invariant 6: a client secret the token endpoint refuses (400 `invalid_client`,
//! `unauthorized_client` or `invalid_grant`; 401; 403) is [`ApiError::ClientRefused`], whose
//! disposition is [`super::Disposition::Credentials`]: the tenant's source waits for new
//! credentials while the others go on, never a retry loop. A 401 from the API itself is asked
//! once more with a fresh token; a second 401 is [`ApiError::TokenRefused`] (credentials too).
//! Every request, body included, ends within the client's timeout, through
//! [`super::http_client`] (no redirect is followed).

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use secrecy::{ExposeSecret, SecretString};

use super::ApiError;
use crate::secret;

/// A token is renewed this many seconds before the expiry its endpoint stated.
pub const RENEW_BEFORE: i64 = 120;

/// The lifetime assumed for a token whose answer states none (CTR's tokens last 3,600 s).
pub const DEFAULT_LIFETIME: i64 = 3600;

/// The largest body read from a product's API (a page of incidents or report records).
pub const MAX_BODY: usize = 64 << 20;

/// One tenant's credentials and its current token.
pub struct TokenCache {
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    /// Sent as `scope` when set (ITM: `*`).
    scope: Option<&'static str>,
    /// The token and the unix second it expires at.
    token: Option<(SecretString, i64)>,
    /// Tokens fetched since start (status and tests read it).
    fetched: u64,
}

impl TokenCache {
    pub fn new(
        token_url: &str,
        client_id: &str,
        client_secret: SecretString,
        scope: Option<&'static str>,
    ) -> TokenCache {
        TokenCache {
            token_url: token_url.to_string(),
            client_id: client_id.to_string(),
            client_secret,
            scope,
            token: None,
            fetched: 0,
        }
    }

    /// The texts no error may carry: the client secret, `client_id:secret` (an echoed Basic
    /// header) and the current token.
    pub fn secrets(&self) -> Vec<SecretString> {
        let mut out = secret::basic_auth_forms(&self.client_id, &self.client_secret);
        if let Some((t, _)) = &self.token {
            out.push(t.clone());
        }
        out
    }

    /// Tokens fetched since start.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }

    /// Forgets the token (the API answered 401 with it).
    pub fn invalidate(&mut self) {
        self.token = None;
    }

    /// A token valid at `now` for at least [`RENEW_BEFORE`] seconds, fetched when needed.
    pub async fn token(
        &mut self,
        client: &BearerClient,
        now: i64,
    ) -> Result<SecretString, ApiError> {
        if let Some((t, expires)) = &self.token {
            if now + RENEW_BEFORE < *expires {
                return Ok(t.clone());
            }
        }
        let (token, lifetime) = client.fetch_token(self).await?;
        self.fetched += 1;
        // A lifetime shorter than the renewal margin is used as it is, at least for a second.
        let expires = now + lifetime.max(RENEW_BEFORE + 1);
        self.token = Some((token.clone(), expires));
        Ok(token)
    }
}

/// A tenant's token cache, shared by its sources (one token per tenant).
pub type SharedToken = std::sync::Arc<tokio::sync::Mutex<TokenCache>>;

/// A request to a product's API, sent with the tenant's bearer token.
#[derive(Debug, Clone)]
pub enum Request {
    Get(reqwest::Url),
    /// A JSON body.
    Post(reqwest::Url, Vec<u8>),
}

/// The token endpoint's answer, as far as it is read.
#[derive(serde::Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<i64>,
}

/// The token endpoint's error answer (RFC 6749 §5.2).
#[derive(serde::Deserialize)]
struct TokenError {
    #[serde(default)]
    error: String,
}

/// The shared client of the OAuth2 products: token requests and bearer calls.
#[derive(Clone)]
pub struct BearerClient {
    http: reqwest::Client,
    timeout: Duration,
}

impl BearerClient {
    /// A client whose every request, body included, ends within `timeout`.
    pub fn new(timeout: Duration) -> Result<BearerClient, ApiError> {
        let http = super::http_client()
            .connect_timeout(timeout.min(Duration::from_secs(15)))
            .timeout(timeout)
            .build()
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        Ok(BearerClient { http, timeout })
    }

    /// Asks the token endpoint for a token: `(token, lifetime in seconds)`.
    async fn fetch_token(&self, cache: &TokenCache) -> Result<(SecretString, i64), ApiError> {
        let forms = cache.secrets();
        let url = reqwest::Url::parse(&cache.token_url)
            .map_err(|_| ApiError::BadUrl(secret::scrub_with(cache.token_url.clone(), &forms)))?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", cache.client_id.as_str()),
            ("client_secret", cache.client_secret.expose_secret()),
        ];
        if let Some(scope) = cache.scope {
            form.push(("scope", scope));
        }
        let response = self
            .http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| self.transport(&e, &forms))?;
        let status = response.status().as_u16();
        if (300..=399).contains(&status) {
            return Err(super::redirect(&response, &forms));
        }
        let body = self.body(response, &forms).await?;
        if status == 200 {
            let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
                ApiError::InvalidJson(secret::scrub_with(
                    format!("the token endpoint's answer: {e}"),
                    &forms,
                ))
            })?;
            if answer.access_token.is_empty() {
                return Err(ApiError::InvalidJson(
                    "the token endpoint's answer has an empty access_token".into(),
                ));
            }
            let lifetime = answer.expires_in.unwrap_or(DEFAULT_LIFETIME);
            return Ok((SecretString::from(answer.access_token), lifetime));
        }
        let refused = serde_json::from_slice::<TokenError>(&body)
            .map(|e| {
                matches!(
                    e.error.as_str(),
                    "invalid_client" | "unauthorized_client" | "invalid_grant"
                )
            })
            .unwrap_or(false);
        Err(match status {
            401 | 403 => ApiError::ClientRefused(status),
            400 if refused => ApiError::ClientRefused(status),
            _ => self.status_error(status, &body, &forms),
        })
    }

    /// Sends `request` with the tenant's token from `cache` (fetched or renewed as needed, at
    /// `now`; the sources of one tenant share it); after a 401, once more with a fresh token.
    /// The body, exactly as sent, when it is JSON. The lock is held only while a token is
    /// fetched, not while the request runs.
    pub async fn call(
        &self,
        cache: &SharedToken,
        now: i64,
        request: &Request,
    ) -> Result<Bytes, ApiError> {
        let mut renewed = false;
        loop {
            let (token, forms) = {
                let mut c = cache.lock().await;
                let token = c.token(self, now).await?;
                (token, c.secrets())
            };
            match self.send(&forms, &token, request).await {
                Err(ApiError::TokenRefused(401)) if !renewed => {
                    tracing::info!("the API refused the bearer token; fetching a new one");
                    let mut c = cache.lock().await;
                    if c.token
                        .as_ref()
                        .is_some_and(|(t, _)| t.expose_secret() == token.expose_secret())
                    {
                        c.invalidate();
                    }
                    renewed = true;
                }
                other => return other,
            }
        }
    }

    async fn send(
        &self,
        forms: &[SecretString],
        token: &SecretString,
        request: &Request,
    ) -> Result<Bytes, ApiError> {
        let builder = match request {
            Request::Get(url) => self.http.get(url.clone()),
            Request::Post(url, body) => self
                .http
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone()),
        };
        let response = builder
            .bearer_auth(token.expose_secret())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.transport(&e, forms))?;
        let status = response.status().as_u16();
        if (300..=399).contains(&status) {
            return Err(super::redirect(&response, forms));
        }
        let body = self.body(response, forms).await?;
        if status == 200 {
            serde_json::from_slice::<serde::de::IgnoredAny>(&body)
                .map_err(|e| ApiError::InvalidJson(secret::scrub_with(e.to_string(), forms)))?;
            return Ok(body);
        }
        Err(match status {
            401 | 403 => ApiError::TokenRefused(status),
            _ => self.status_error(status, &body, forms),
        })
    }

    fn status_error(&self, status: u16, body: &[u8], forms: &[SecretString]) -> ApiError {
        let text = secret::scrubbed_excerpt_with(body, forms, super::EXCERPT_CHARS);
        match status {
            400 => ApiError::BadRequest(text),
            404 => ApiError::NotFound,
            429 => ApiError::Throttled,
            500..=599 => ApiError::Server { status, body: text },
            _ => ApiError::Unexpected { status, body: text },
        }
    }

    async fn body(
        &self,
        response: reqwest::Response,
        forms: &[SecretString],
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
            let chunk = chunk.map_err(|e| self.transport(&e, forms))?;
            if out.len() + chunk.len() > MAX_BODY {
                return Err(ApiError::BodyTooLarge(MAX_BODY));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(out))
    }

    fn transport(&self, e: &reqwest::Error, forms: &[SecretString]) -> ApiError {
        if e.is_timeout() {
            return ApiError::NoAnswer(self.timeout);
        }
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        ApiError::Transport(secret::scrub_with(text, forms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{test_server, Disposition};

    fn cache(addr: std::net::SocketAddr) -> TokenCache {
        TokenCache::new(
            &format!("http://{addr}/v1/token"),
            "client-1",
            SecretString::from("oauth-sekrit-value"),
            None,
        )
    }

    /// The token endpoint's refusals are credentials failures, other faults their usual
    /// disposition, and no message carries the secret the endpoint echoed.
    #[tokio::test]
    async fn a_refused_client_secret_is_a_credentials_failure_and_never_shown() {
        let client = BearerClient::new(Duration::from_secs(10)).unwrap();
        let cases = [
            (
                400,
                r#"{"error":"invalid_client"}"#,
                Disposition::Credentials,
            ),
            (401, "denied oauth-sekrit-value", Disposition::Credentials),
            (403, "", Disposition::Credentials),
            (400, r#"{"error":"invalid_request"}"#, Disposition::Rejected),
            (429, "", Disposition::Throttled),
            (503, "echo oauth-sekrit-value", Disposition::Transient),
        ];
        for (status, body, disposition) in cases {
            let addr = test_server::answer(status, &[], body).await;
            let mut c = cache(addr);
            let e = c.token(&client, 0).await.unwrap_err();
            assert_eq!(e.disposition(), disposition, "{status}: {e}");
            assert!(!e.to_string().contains("sekrit"), "{e}");
            assert!(!format!("{e:?}").contains("sekrit"), "{e:?}");
        }
        let addr =
            test_server::answer(302, &[("Location", "http://x/?s=oauth-sekrit-value")], "").await;
        let e = cache(addr).token(&client, 0).await.unwrap_err();
        assert_eq!(e.class(), "redirect");
        assert!(!e.to_string().contains("sekrit"), "{e}");
    }

    /// A token is cached until shortly before it expires, then fetched again.
    #[tokio::test]
    async fn a_token_is_cached_and_renewed_before_it_expires() {
        let client = BearerClient::new(Duration::from_secs(10)).unwrap();
        let addr = test_server::answer(
            200,
            &[],
            r#"{"access_token":"tok-abc-123","expires_in":3600,"token_type":"Bearer"}"#,
        )
        .await;
        let mut c = cache(addr);
        c.token(&client, 1000).await.unwrap();
        c.token(&client, 1000 + 3600 - RENEW_BEFORE - 1)
            .await
            .unwrap();
        assert_eq!(c.fetched(), 1);
        c.token(&client, 1000 + 3600 - RENEW_BEFORE).await.unwrap();
        assert_eq!(c.fetched(), 2);
        // The token is one of the texts scrubbed from errors.
        let scrubbed = secret::scrub_with("got tok-abc-123 back".into(), &c.secrets());
        assert_eq!(scrubbed, "got [redacted] back");
    }
}
