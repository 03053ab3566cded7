//! The Proofpoint on Demand log stream's wire: `GET /v1/stream?cid=…&type=…` upgraded to a
//! WebSocket with the cluster's bearer token, live or in archive mode (`sinceTime`/`toTime`).
//!
//! What is here is the protocol, not the source's behaviour ([`crate::sources::pod`] reads,
//! delivers and catches up): the stream URL, the connect and handshake (TLS with rustls, `ring`
//! and the webpki roots for `wss://`, plain TCP for `ws://`), the upgrade's HTTP status mapped to
//! an [`ApiError`] (401/403 [`ApiError::TokenRefused`], 409 [`ApiError::SessionOpen`], any other
//! [`ApiError::NotUpgraded`]), the per-process session locks, and a frame's time.
//!
//! Invariant 3: the service allows one session per token and log type, so every connection holds
//! the [`session_lock`] of its (base URL, cluster, token, type) while its socket is open.
//! Invariant 7: the token travels only in the `Authorization` header; error texts are scrubbed of
//! it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{header, HeaderValue};
use tokio_tungstenite::WebSocketStream;

use super::ApiError;
use crate::clock;

/// How long connecting (TCP, TLS and the upgrade) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The connection under a stream: TLS over TCP, or plain TCP.
pub type Io = Box<dyn IoStream>;
/// What a stream connection reads and writes through.
pub trait IoStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> IoStream for T {}
/// An open stream connection.
pub type Ws = WebSocketStream<Io>;

/// The stream URL of log type `kind` (`message`, `maillog`) of cluster `cid` under `base`
/// (`wss://host[:port]`, without a trailing slash); archive mode for `Some((since, to))` (Unix
/// seconds).
pub fn stream_url(base: &str, cid: &str, kind: &str, archive: Option<(i64, i64)>) -> String {
    let mut url = format!("{base}/v1/stream?cid={cid}&type={kind}");
    if let Some((since, to)) = archive {
        url.push_str(&format!(
            "&sinceTime={}&toTime={}",
            clock::rfc3339(since),
            clock::rfc3339(to)
        ));
    }
    url
}

/// The per-process session locks, by hash of (base URL, cluster, token, type).
type SessionLocks = HashMap<[u8; 32], Weak<tokio::sync::Mutex<()>>>;
static SESSIONS: LazyLock<Mutex<SessionLocks>> = LazyLock::new(Default::default);

/// The lock a connection of (base URL, cluster, token, log type) holds while its socket is open:
/// one per process for each, so a reconnect (or a restarted task after a reload) waits for the old
/// socket to be closed (invariant 3).
pub fn session_lock(
    base: &str,
    cid: &str,
    token: &SecretString,
    kind: &str,
) -> Arc<tokio::sync::Mutex<()>> {
    let mut h = blake3::Hasher::new();
    for part in [base, cid, token.expose_secret(), kind] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let key = *h.finalize().as_bytes();
    let mut map = SESSIONS.lock().unwrap_or_else(|e| e.into_inner());
    map.retain(|_, w| w.strong_count() > 0);
    if let Some(lock) = map.get(&key).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    map.insert(key, Arc::downgrade(&lock));
    lock
}

/// A frame's `ts` (`2026-05-22T12:10:03.058340-0700`) in ms since the epoch.
pub fn frame_ts_ms(frame: &[u8]) -> Option<i64> {
    #[derive(serde::Deserialize)]
    struct Ts<'a> {
        #[serde(borrow)]
        ts: Option<std::borrow::Cow<'a, str>>,
    }
    let ts = serde_json::from_slice::<Ts<'_>>(frame).ok()?.ts?;
    chrono::DateTime::parse_from_str(&ts, "%Y-%m-%dT%H:%M:%S%.f%z")
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(&ts))
        .ok()
        .map(|t| t.timestamp_millis())
}

/// The error of an upgrade the service answered with HTTP `status` instead of 101.
fn upgrade_refused(status: u16) -> ApiError {
    match status {
        409 => ApiError::SessionOpen,
        401 | 403 => ApiError::TokenRefused(status),
        _ => ApiError::NotUpgraded(status),
    }
}

/// Opens a WebSocket to `url` with the bearer token: TLS (rustls, `ring`, webpki roots) for
/// `wss://`, plain TCP for `ws://`. Error texts never carry the token.
pub async fn connect(url: &str, token: &SecretString) -> Result<Ws, ApiError> {
    let transport = |e: &dyn std::fmt::Display| {
        ApiError::Transport(crate::secret::scrub_with(
            e.to_string(),
            std::slice::from_ref(token),
        ))
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| transport(&e))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| ApiError::Transport("the URL has no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tls = parsed.scheme() == "wss";
    let port = parsed.port().unwrap_or(if tls { 443 } else { 80 });
    let mut request = url.into_client_request().map_err(|e| transport(&e))?;
    let bearer = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
        .map_err(|_| ApiError::Transport("the token is not a valid header value".into()))?;
    request.headers_mut().insert(header::AUTHORIZATION, bearer);
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| transport(&e))?;
        let _ = tcp.set_nodelay(true);
        let io: Io = if tls {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| transport(&e))?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name =
                rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| transport(&e))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| transport(&e))?;
            Box::new(stream)
        } else {
            Box::new(tcp)
        };
        match tokio_tungstenite::client_async(request, io).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                Err(upgrade_refused(resp.status().as_u16()))
            }
            Err(e) => Err(transport(&e)),
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, handshake)
        .await
        .map_err(|_| ApiError::Transport("connecting timed out".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{test_server, Disposition};

    #[test]
    fn frame_times_with_microseconds_and_offsets() {
        let f = br#"{"guid":"g","ts":"2026-05-22T12:10:03.058340-0700","x":1}"#;
        assert_eq!(
            frame_ts_ms(f),
            Some(
                chrono::DateTime::parse_from_rfc3339("2026-05-22T19:10:03.058Z")
                    .unwrap()
                    .timestamp_millis()
            )
        );
        assert_eq!(frame_ts_ms(br#"{"guid":"g"}"#), None);
        assert_eq!(frame_ts_ms(b"not json"), None);
    }

    #[test]
    fn one_session_lock_per_token_and_type() {
        let t = SecretString::from("tok-1234");
        let a = session_lock("wss://x", "c", &t, "message");
        let b = session_lock("wss://x", "c", &t, "message");
        let c = session_lock("wss://x", "c", &t, "maillog");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn live_and_archive_urls() {
        assert_eq!(
            stream_url(
                "wss://logstream.proofpoint.com",
                "acme_hosted",
                "message",
                None
            ),
            "wss://logstream.proofpoint.com/v1/stream?cid=acme_hosted&type=message"
        );
        assert_eq!(
            stream_url("ws://127.0.0.1:9", "c", "maillog", Some((0, 3600))),
            "ws://127.0.0.1:9/v1/stream?cid=c&type=maillog&sinceTime=1970-01-01T00:00:00Z&toTime=1970-01-01T01:00:00Z"
        );
    }

    /// Each status the service may answer the upgrade with, as the stream source sees it.
    #[tokio::test]
    async fn upgrade_statuses_map_to_their_disposition() {
        let token = SecretString::from("tok-sekrit-5678");
        let cases = [
            (
                401,
                "the service refused the token (HTTP 401)",
                Disposition::Credentials,
            ),
            (
                403,
                "the service refused the token (HTTP 403)",
                Disposition::Credentials,
            ),
            (
                409,
                "a session of this token and type is already open (HTTP 409)",
                Disposition::Transient,
            ),
            (
                429,
                "HTTP 429 instead of a WebSocket",
                Disposition::Throttled,
            ),
            (
                503,
                "HTTP 503 instead of a WebSocket",
                Disposition::Transient,
            ),
            (
                404,
                "HTTP 404 instead of a WebSocket",
                Disposition::Rejected,
            ),
        ];
        for (status, text, disposition) in cases {
            let addr = test_server::answer(status, &[], "").await;
            let url = stream_url(&format!("ws://{addr}"), "c", "message", None);
            let Err(e) = connect(&url, &token).await else {
                panic!("{status}: connected");
            };
            assert_eq!(e.to_string(), text, "{status}");
            assert_eq!(e.disposition(), disposition, "{status}: {e}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_transient_and_carries_no_token() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let token = SecretString::from("tok-sekrit-5678");
        let url = stream_url(&format!("ws://{addr}"), "c", "message", None);
        let Err(e) = connect(&url, &token).await else {
            panic!("connected to a closed port");
        };
        assert_eq!(e.disposition(), Disposition::Transient, "{e}");
        assert!(!e.to_string().contains("sekrit"), "{e}");
    }
}
