//! The simulated OAuth2 products (more-feeds.md): the token endpoint and the accounts of CTR
//! ([`super::ctr`]) and ITM ([`super::itm`]), one per client id.
//!
//! - **Token endpoint**: `POST /v1/token` (CTR's `auth.proofpoint.com`) and
//!   `POST /v2/apis/auth/oauth/token` (ITM's), a form with `grant_type=client_credentials`,
//!   `client_id` and `client_secret` (or HTTP Basic). A wrong or unknown client answers 401
//!   `{"error":"invalid_client"}` (400 with [`SimClient::refuse_with_400`]); a good one a fresh
//!   token valid `token_lifetime` (default 3,600 s) on the simulator's clock.
//! - **API requests** carry `Authorization: Bearer TOKEN`: an unknown, expired or revoked
//!   ([`super::Simulator::revoke_tokens`]) token answers 401. Faults queued with
//!   [`super::Simulator::inject_oauth`] are consumed one per authenticated API request (429,
//!   5xx, resets before the headers or mid-body, truncated or malformed bodies); faults queued
//!   with [`super::Simulator::inject_token`] one per token request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use std::time::Duration;
use tokio::sync::Notify;

use axum::body::Body;
use axum::http::{header, request::Parts, HeaderValue, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::events::mix;
use super::server::{status_body, text};
use super::{Fault, LoggedRequest, Simulator};

/// The credentials of one simulated OAuth2 client.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimClient {
    pub client_id: String,
    pub client_secret: String,
    /// How long a token lasts. Default 1h.
    #[serde(default = "default_lifetime", with = "humantime_serde")]
    pub token_lifetime: Duration,
    /// Refuse a wrong secret with 400 `invalid_client` instead of 401 (RFC 6749 allows both).
    #[serde(default)]
    pub refuse_with_400: bool,
}

fn default_lifetime() -> Duration {
    Duration::from_secs(3600)
}

impl SimClient {
    pub fn new(client_id: &str, client_secret: &str) -> SimClient {
        SimClient {
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            token_lifetime: default_lifetime(),
            refuse_with_400: false,
        }
    }
}

/// What one account serves.
pub(super) enum Product {
    Ctr(super::ctr::SimCtr),
    Itm(super::itm::SimItm),
}

/// One client's account: its credentials, product and live state.
pub(super) struct Account {
    pub client: SimClient,
    pub product: Product,
    /// Seeds the account's data.
    pub key: u64,
    pub live: Mutex<Live>,
    /// Whether requests go into the log ([`super::Simulator::keep_request_log`]).
    pub log_requests: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
pub(super) struct Live {
    /// Live tokens and when each expires.
    pub tokens: HashMap<String, DateTime<Utc>>,
    pub issued: u64,
    pub faults: VecDeque<Fault>,
    pub token_faults: VecDeque<Fault>,
    pub log: Vec<LoggedRequest>,
    /// Arrival times of API requests in the last minute (CTR's rate).
    pub minute: VecDeque<DateTime<Utc>>,
}

impl Account {
    pub fn new(client: SimClient, product: Product, seed: u64) -> Account {
        let key = mix(seed
            ^ client
                .client_id
                .bytes()
                .fold(7u64, |h, b| mix(h ^ u64::from(b))));
        Account {
            client,
            product,
            key,
            live: Mutex::new(Live::default()),
            log_requests: std::sync::atomic::AtomicBool::new(true),
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(
        &self,
        parts: &Parts,
        detail: &str,
        status: u16,
        at: DateTime<Utc>,
        fault: Option<Fault>,
    ) {
        if !self.log_requests.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        self.lock().log.push(LoggedRequest {
            path: parts.uri.path().to_owned(),
            query: detail.to_owned(),
            status,
            at,
            fault,
        });
    }
}

/// Whether `path` is one of the OAuth2 products' (token endpoint or API).
pub(super) fn routes(path: &str) -> bool {
    path == TOKEN_PATH_CTR
        || path == TOKEN_PATH_ITM
        || path == super::ctr::PATH
        || path.starts_with(super::itm::PREFIX)
}

const TOKEN_PATH_CTR: &str = "/v1/token";
const TOKEN_PATH_ITM: &str = "/v2/apis/auth/oauth/token";

pub(super) fn json(status: u16, body: impl Into<Body>) -> Response<Body> {
    let mut resp = text(status, body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Serves one request of the OAuth2 products; `body` is the request's body.
pub(super) async fn handle(
    sim: &Simulator,
    parts: Parts,
    body: Body,
    kill: Option<Arc<Notify>>,
) -> Response<Body> {
    let now = sim.inner.clock.now();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path();
    if path == TOKEN_PATH_CTR || path == TOKEN_PATH_ITM {
        return token(sim, &parts, &body, now, kill).await;
    }
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let account = sim.inner.oauth.values().find(|a| {
        let mut live = a.lock();
        match live.tokens.get(bearer) {
            Some(exp) if *exp > now => true,
            Some(_) => {
                live.tokens.remove(bearer);
                false
            }
            None => false,
        }
    });
    let Some(account) = account else {
        return json(
            401,
            r#"{"error":"invalid_token","error_description":"the access token is invalid or has expired"}"#,
        );
    };
    let detail = match parts.method {
        axum::http::Method::POST => String::from_utf8_lossy(&body).into_owned(),
        _ => parts.uri.query().unwrap_or("").to_owned(),
    };
    let fault = account.lock().faults.pop_front();
    if let Some(fault) = fault {
        return fault_response(account, &parts, &detail, now, fault, kill).await;
    }
    let (status, answer) = match &account.product {
        Product::Ctr(c) => super::ctr::answer(account, c, &body, now),
        Product::Itm(i) => super::itm::answer(account, i, &parts, now),
    };
    account.record(&parts, &detail, status, now, None);
    json(status, answer)
}

async fn token(
    sim: &Simulator,
    parts: &Parts,
    body: &[u8],
    now: DateTime<Utc>,
    kill: Option<Arc<Notify>>,
) -> Response<Body> {
    let form: HashMap<String, String> = url_form(body);
    let basic = super::server::basic_auth(parts);
    let (id, secret) = match (form.get("client_id"), form.get("client_secret"), basic) {
        (Some(id), Some(secret), _) => (id.clone(), secret.clone()),
        (_, _, Some((id, secret))) => (id, secret),
        _ => (String::new(), String::new()),
    };
    let Some(account) = sim.inner.oauth.get(&id) else {
        return json(401, r#"{"error":"invalid_client"}"#);
    };
    let fault = account.lock().token_faults.pop_front();
    if let Some(fault) = fault {
        return fault_response(account, parts, "token", now, fault, kill).await;
    }
    if secret != account.client.client_secret
        || form.get("grant_type").map(String::as_str) != Some("client_credentials")
    {
        let status = if account.client.refuse_with_400 {
            400
        } else {
            401
        };
        account.record(parts, "token", status, now, None);
        return json(
            status,
            r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
        );
    }
    let lifetime = account.client.token_lifetime;
    let token = {
        let mut live = account.lock();
        live.issued += 1;
        let token = format!("tok-{:016x}", mix(account.key ^ live.issued));
        let expires = now + chrono::Duration::from_std(lifetime).unwrap_or_default();
        live.tokens.insert(token.clone(), expires);
        token
    };
    account.record(parts, "token", 200, now, None);
    json(
        200,
        format!(
            r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{}}}"#,
            lifetime.as_secs()
        ),
    )
}

/// An `application/x-www-form-urlencoded` body as a map.
fn url_form(body: &[u8]) -> HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body)))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

async fn fault_response(
    account: &Account,
    parts: &Parts,
    detail: &str,
    now: DateTime<Utc>,
    fault: Fault,
    kill: Option<Arc<Notify>>,
) -> Response<Body> {
    let logged = |status| account.record(parts, detail, status, now, Some(fault.clone()));
    let partial = Bytes::from_static(br#"{"data":[{"id":"0f1e2d3c","risingValue":1,"#);
    match fault {
        Fault::Status(s) => {
            logged(s);
            text(s, status_body(s))
        }
        Fault::EchoCredentials(s) => {
            logged(s);
            let auth = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            text(
                s,
                format!(
                    "proxy debug: Authorization: {auth}; client_secret={}",
                    account.client.client_secret
                ),
            )
        }
        Fault::ResetBeforeHeaders => {
            logged(0);
            if let Some(kill) = kill {
                kill.notify_one();
                std::future::pending::<()>().await;
            }
            reset_mid_body(partial)
        }
        Fault::ResetMidBody => {
            logged(200);
            reset_mid_body(partial)
        }
        Fault::TruncatedBody => {
            logged(200);
            json(200, partial)
        }
        _ => {
            logged(200);
            json(200, "<html><body>502 Bad Gateway</body></html>")
        }
    }
}

/// 200, the start of a body, then the connection dropped.
fn reset_mid_body(part: Bytes) -> Response<Body> {
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(part),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )),
    ];
    let mut resp = Response::new(Body::from_stream(futures_util::stream::iter(chunks)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
