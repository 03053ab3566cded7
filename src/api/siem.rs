//! The TAP SIEM API client (TAP and Essentials): one `GET /v2/siem/all?format=json&interval=START/END`
//! per window.
//!
//! The response is never held whole: a reader task feeds the body to the [`Splitter`] as it
//! arrives and hands complete events on in [`Batch`]es of bounded size through a small channel,
//! so a 600 MB hour costs a few batches of memory (the performance issue's large-window case).
//! Status codes are mapped to [`ApiError`], whose [`ApiError::disposition`] says exhaustively
//! what the poller does about each (a 400 whose body says the start is too far into the past is
//! [`ApiError::TooOld`]: the API says so only in words, so this reply is read here, once). The
//! secret only ever travels in the `Authorization` header, which reqwest marks sensitive; no
//! error message here is built from it, and every text that came from the server (bodies,
//! headers, the head of a malformed body) goes through [`crate::secret::scrub`] for the secret,
//! `principal:secret` and their Base64 forms before it leaves this module (invariant 7).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::split::{BatchBuilder, SplitLimits, SplitSummary, Splitter};
use super::window::Window;
use super::ApiError;
use crate::event::Batch;
use crate::net::{self, ErrorUrl};
use crate::secret::{basic_auth_forms, scrubbed_excerpt_with};

/// What the reader task sends: batches of events, then the end of a complete response.
#[derive(Debug)]
pub enum WindowItem {
    Batch(Batch),
    Done(SplitSummary),
}

/// Credentials of one tenant, borrowed for a request.
pub struct Credentials<'a> {
    pub principal: &'a str,
    pub secret: &'a SecretString,
    /// The query parameters besides `format` and `interval`: TAP's `threatStatus` values, or
    /// Essentials' `ownData` and `customerData` (`TenantConfig::credentials` builds them).
    pub params: Vec<(&'static str, &'static str)>,
}

/// Limits for splitting responses into batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub events: usize,
    pub bytes: usize,
}

/// A shared HTTP client for every tenant (one connection pool per API host).
#[derive(Clone)]
pub struct TapClient {
    http: reqwest::Client,
    read_timeout: Duration,
    /// The shared budget of batch bytes between readers and sinks (`poll.buffer_bytes`), in
    /// KiB, and its size; `None` (unbounded) until [`TapClient::with_buffer_budget`].
    budget: Option<(Arc<Semaphore>, u32)>,
}

impl TapClient {
    pub fn new(read_timeout: Duration) -> Result<TapClient, ApiError> {
        // The TAP API does not redirect: a 3xx is an error naming its Location, never a silent
        // request elsewhere (whose body would be taken as the tenant's events).
        let http = super::http_client()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(read_timeout)
            .build()
            .map_err(|e| ApiError::Transport(e.to_string()))?;
        Ok(TapClient {
            http,
            read_timeout,
            budget: None,
        })
    }

    /// Bounds the bytes that batches of every window fetched through this client (and its
    /// clones) hold at once, from the moment a reader hands a batch on until every sink is done
    /// with it: `poll.buffer_bytes`. A reader whose batch does not fit waits for delivered
    /// batches to be freed. Each batch takes at most the whole budget, so none waits forever.
    pub fn with_buffer_budget(mut self, bytes: usize) -> TapClient {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        self.budget = Some((Arc::new(Semaphore::new(kib as usize)), kib));
        self
    }

    fn url(base_url: &str) -> String {
        format!("{}/v2/siem/all", base_url.trim_end_matches('/'))
    }

    /// Starts fetching `window`. Status errors are returned here; body errors arrive on the
    /// channel, which ends with `WindowItem::Done` only if the whole response was read and valid.
    pub async fn fetch_window(
        &self,
        base_url: &str,
        creds: &Credentials<'_>,
        window: Window,
        limits: BatchLimits,
    ) -> Result<mpsc::Receiver<Result<WindowItem, ApiError>>, ApiError> {
        let secrets = basic_auth_forms(creds.principal, creds.secret);
        let response = self
            .send(base_url, creds, &window.interval_param())
            .await
            .map_err(|e| e.scrubbed(&secrets))?;
        // One batch waits here while the poller delivers the previous one and the reader fills
        // the next: fetching overlaps delivery, and a window costs at most about four batches
        // of memory (filling, sending, queued, delivering) whatever its size.
        let (tx, rx) = mpsc::channel(1);
        let read_timeout = self.read_timeout;
        let budget = self.budget.clone();
        tokio::spawn(async move {
            let result = read_body(response, limits, read_timeout, budget, &tx).await;
            if let Err(e) = result {
                let _ = tx.send(Err(e.scrubbed(&secrets))).await;
            }
        });
        Ok(rx)
    }

    /// One cheap request (the shortest window the API accepts), to test credentials.
    pub async fn probe(
        &self,
        base_url: &str,
        creds: &Credentials<'_>,
        window: Window,
    ) -> Result<(), ApiError> {
        let mut rx = self
            .fetch_window(
                base_url,
                creds,
                window,
                BatchLimits {
                    events: 10_000,
                    bytes: 8 << 20,
                },
            )
            .await?;
        while let Some(item) = rx.recv().await {
            if let WindowItem::Done(_) = item? {
                return Ok(());
            }
        }
        Err(ApiError::Transport("response ended early".into()))
    }

    async fn send(
        &self,
        base_url: &str,
        creds: &Credentials<'_>,
        interval: &str,
    ) -> Result<reqwest::Response, ApiError> {
        let mut query = vec![("format", "json"), ("interval", interval)];
        query.extend(creds.params.iter().copied());
        let response = self
            .http
            .get(Self::url(base_url))
            .query(&query)
            .basic_auth(creds.principal, Some(creds.secret.expose_secret()))
            .send()
            .await
            .map_err(|e| transport_failure(e, self.read_timeout))?;
        let status = response.status().as_u16();
        match status {
            200 => {
                let ctype = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if !ctype.is_empty() && !ctype.contains("json") {
                    return Err(ApiError::NotJson(ctype));
                }
                Ok(response)
            }
            204 => Ok(response),
            300..=399 => Err(super::redirect(
                &response,
                &basic_auth_forms(creds.principal, creds.secret),
            )),
            _ => {
                let body =
                    short_body(response, &basic_auth_forms(creds.principal, creds.secret)).await;
                Err(match status {
                    401 => ApiError::Unauthorized,
                    403 => ApiError::Forbidden {
                        api: "the SIEM API",
                    },
                    429 => ApiError::Throttled,
                    400 if body.contains("too far into the past") => ApiError::TooOld(body),
                    400 => ApiError::BadRequest(body),
                    500..=599 => ApiError::Server { status, body },
                    _ => ApiError::Unexpected { status, body },
                })
            }
        }
    }
}

/// Room beyond `batch_bytes` in a batch's buffer for the chunk that fills it and the event in
/// progress; a chunk that does not fit starts the next batch instead.
const BATCH_SLACK: usize = 256 * 1024;

/// The buffer a response starts in: a 5-minute poll's window of a few events fits.
const FIRST_BUFFER: usize = 64 * 1024;

/// A batch's buffer together with its share of the buffer budget, which returns to the budget
/// when the last copy of the buffer (the sinks hold clones while delivering) is dropped.
struct Budgeted {
    buf: Bytes,
    _share: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Budgeted {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

/// A response reader's side of the buffer budget: the share it holds for the buffer it is
/// filling, which travels with that buffer's batch when it is handed on.
struct Room {
    budget: Option<(Arc<Semaphore>, u32)>,
    filling: Option<OwnedSemaphorePermit>,
}

impl Room {
    /// Waits until the budget has `bytes` for a new buffer (at once when there is no budget);
    /// `None` when the poller gave up on the window meanwhile. A share is at most the whole
    /// budget, so none waits forever. A reader that already holds a share (its buffer grows
    /// for one event larger than a batch) never waits: it takes what is free and goes on, since
    /// two readers each holding part of the budget and waiting for more would wait for ever.
    async fn take(
        &mut self,
        bytes: usize,
        tx: &mpsc::Sender<Result<WindowItem, ApiError>>,
    ) -> Option<()> {
        let Some((sem, total)) = &self.budget else {
            return Some(());
        };
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, *total);
        if let Some(held) = &mut self.filling {
            if let Ok(more) = sem.clone().try_acquire_many_owned(kib) {
                held.merge(more);
            }
            return Some(());
        }
        let share = tokio::select! {
            share = sem.clone().acquire_many_owned(kib) => share.ok()?,
            _ = tx.closed() => return None,
        };
        self.filling = Some(share);
        Some(())
    }

    /// Whether the share held pays for `bytes` of new buffer (all of the budget for more).
    fn covers(&self, bytes: usize) -> bool {
        let Some((_, total)) = &self.budget else {
            return true;
        };
        let held = self.filling.as_ref().map_or(0, |p| p.num_permits());
        held * 1024 >= bytes.min(*total as usize * 1024)
    }

    /// Hands `batch` on with the share of the buffer it was cut from; `None` when the poller
    /// gave up on the window.
    async fn send(
        &mut self,
        batch: Batch,
        tx: &mpsc::Sender<Result<WindowItem, ApiError>>,
    ) -> Option<()> {
        let batch = match self.filling.take() {
            None => batch,
            Some(share) => {
                let buf = Bytes::from_owner(Budgeted {
                    buf: batch.buf.clone(),
                    _share: share,
                });
                Batch { buf, ..batch }
            }
        };
        tx.send(Ok(WindowItem::Batch(batch))).await.ok()
    }
}

async fn read_body(
    response: reqwest::Response,
    limits: BatchLimits,
    read_timeout: Duration,
    budget: Option<(Arc<Semaphore>, u32)>,
    tx: &mpsc::Sender<Result<WindowItem, ApiError>>,
) -> Result<(), ApiError> {
    if response.status().as_u16() == 204 {
        let _ = tx.send(Ok(WindowItem::Done(SplitSummary::default()))).await;
        return Ok(());
    }
    let mut splitter = Splitter::new(SplitLimits::default());
    let mut builder = BatchBuilder::new();
    // Every batch buffer is paid for from the budget before it is allocated, and the share
    // travels with the batch cut from it until the sinks are done with it: the buffers being
    // filled count, not only those handed on, so the budget bounds them all.
    let mut room = Room {
        budget,
        filling: None,
    };
    // Batch buffers never grow by doubling (a copy at every step, and a buffer up to twice the
    // batch that the allocator then keeps): a response starts in a small buffer, which most
    // windows never fill; when it fills, the events so far are handed on as a batch and the
    // rest goes into a buffer of one batch's final size (`limits.bytes`, plus room for the
    // event in progress). Before issue 23 a chunk that did not fit got a buffer of its own
    // size at once, unpaid when it was a response's first (the share held was the small
    // buffer's): 16 readers each 1.3 MiB over the budget once hyper's reads had grown to
    // 400 KiB, which a server writing whole responses, or a reader behind, brings about.
    let batch_capacity = limits.bytes.saturating_add(BATCH_SLACK);
    let first = FIRST_BUFFER.min(batch_capacity);
    if room.take(first, tx).await.is_none() {
        return Ok(());
    }
    builder.reserve(first);
    let mut body = response.bytes_stream();
    loop {
        // A poller that gave up (its window deadline, shutdown) drops the receiver: stop reading
        // then, even if the server trickles or never sends another byte.
        let chunk = tokio::select! {
            chunk = body.next() => chunk,
            _ = tx.closed() => return Ok(()),
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|e| transport_failure(e, read_timeout))?;
        // A chunk is fed in pieces that fit the buffer paid for: how large a chunk is depends on
        // how the server writes and how far behind the reader is (up to hyper's read buffer,
        // 400 KiB, when a response comes in one piece), never on the budget.
        let mut rest: &[u8] = &chunk;
        while !rest.is_empty() {
            let free = builder.capacity() - builder.buffered();
            if free == 0 {
                // Full: hand its events on and go on in a new buffer, paid for first (waiting
                // for the budget, as the share went with the batch). A buffer holding only the
                // event in progress grows instead: that event is larger than a batch.
                let grows = builder.is_empty();
                if !grows && room.send(builder.take(), tx).await.is_none() {
                    return Ok(());
                }
                if room.take(batch_capacity, tx).await.is_none() {
                    return Ok(());
                }
                builder.reserve(batch_capacity);
                debug_assert!(grows || room.covers(builder.capacity() - builder.buffered()));
                continue;
            }
            let (piece, after) = rest.split_at(free.min(rest.len()));
            rest = after;
            splitter.feed(piece, &mut builder)?;
            let full = builder.len() >= limits.events || builder.raw_bytes() >= limits.bytes;
            if full {
                if room.send(builder.take(), tx).await.is_none() {
                    return Ok(()); // the poller gave up on this window
                }
                if room.take(batch_capacity, tx).await.is_none() {
                    return Ok(());
                }
                builder.reserve(batch_capacity);
                debug_assert!(room.covers(builder.capacity() - builder.buffered()));
            }
        }
    }
    let summary = splitter.finish()?;
    if !builder.is_empty() && room.send(builder.take(), tx).await.is_none() {
        return Ok(());
    }
    let _ = tx.send(Ok(WindowItem::Done(summary))).await;
    Ok(())
}

/// A failed request or body read as a [`ApiError`]: a timeout is a stalled response, anything else
/// a transport failure in [`net::transport_error`]'s words. The URL stays in the text: it carries
/// no credentials (they travel in a header).
fn transport_failure(e: reqwest::Error, read_timeout: Duration) -> ApiError {
    if e.is_timeout() {
        return ApiError::Timeout(read_timeout);
    }
    ApiError::Transport(net::transport_error(e, ErrorUrl::Keep))
}

/// At most [`super::EXCERPT_CHARS`] characters of an error body, on one line, scrubbed of the
/// request's secrets before it is cut ([`scrubbed_excerpt_with`]), so no part of one survives
/// the cut.
async fn short_body(response: reqwest::Response, secrets: &[SecretString]) -> String {
    let bytes = response.bytes().await.unwrap_or_default();
    scrubbed_excerpt_with(&bytes, secrets, super::EXCERPT_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each reply the SIEM API may give a window, as the poller sees it.
    #[tokio::test]
    async fn status_replies_map_to_their_disposition() {
        use crate::api::{test_server, Disposition};
        let client = TapClient::new(Duration::from_secs(10)).unwrap();
        let secret = SecretString::from("siem-sekrit".to_string());
        let creds = Credentials {
            principal: "p",
            secret: &secret,
            params: Vec::new(),
        };
        let window = Window {
            start: 1_767_225_600,
            end: 1_767_229_200,
        };
        let limits = BatchLimits {
            events: 100,
            bytes: 1 << 16,
        };
        let past = "The requested interval is too far into the past.";
        // (status, headers, body, disposition, class)
        type Case<'a> = (u16, &'a [(&'a str, &'a str)], &'a str, Disposition, &'a str);
        let cases: [Case; 9] = [
            (401, &[], "", Disposition::Credentials, "unauthorized"),
            (403, &[], "", Disposition::Credentials, "forbidden"),
            (429, &[], "", Disposition::Throttled, "throttled"),
            (400, &[], past, Disposition::TooOld, "too_old"),
            (
                400,
                &[],
                "bad interval",
                Disposition::Rejected,
                "bad_request",
            ),
            (
                302,
                &[("Location", "https://elsewhere/")],
                "",
                Disposition::Rejected,
                "redirect",
            ),
            (
                503,
                &[],
                "siem-sekrit down",
                Disposition::Transient,
                "server_error",
            ),
            (418, &[], "", Disposition::Transient, "unexpected_status"),
            (
                200,
                &[("Content-Type", "text/html")],
                "<html>",
                Disposition::Transient,
                "not_json",
            ),
        ];
        for (status, headers, body, disposition, class) in cases {
            let addr = test_server::answer(status, headers, body).await;
            let base_url = format!("http://{addr}");
            let e = match client.fetch_window(&base_url, &creds, window, limits).await {
                Ok(_) => panic!("{status}: the window was fetched"),
                Err(e) => e,
            };
            assert_eq!(e.disposition(), disposition, "{status}: {e}");
            assert_eq!(e.class(), class, "{status}: {e}");
            assert!(!e.to_string().contains("sekrit"), "{e}");
        }
        assert_eq!(
            ApiError::Forbidden {
                api: "the SIEM API"
            }
            .to_string(),
            "access denied (403): the SIEM API is not licensed for this principal"
        );
    }

    /// A secret echoed across the 300th character of an error body, or of a redirect's
    /// `Location`: scrubbed before the text is cut, so none of it is left.
    #[tokio::test]
    async fn a_secret_straddling_the_cut_of_an_error_is_scrubbed() {
        use crate::api::test_server;
        let client = TapClient::new(Duration::from_secs(10)).unwrap();
        let secret = SecretString::from("TOPSECRET-siem-0123456789".to_string());
        let creds = Credentials {
            principal: "p",
            secret: &secret,
            params: Vec::new(),
        };
        let window = Window {
            start: 1_767_225_600,
            end: 1_767_229_200,
        };
        let limits = BatchLimits {
            events: 100,
            bytes: 1 << 16,
        };
        for at in [285, 290, 295, 299] {
            let echo = format!("{}TOPSECRET-siem-0123456789", "x".repeat(at));
            let location = format!("https://elsewhere/{echo}");
            type Case<'a> = (u16, &'a [(&'a str, &'a str)], &'a str);
            let cases: [Case; 3] = [
                (500, &[], &echo),
                (400, &[], &echo),
                (302, &[("Location", &location)], ""),
            ];
            for (status, headers, body) in cases {
                let addr = test_server::answer(status, headers, body).await;
                let base_url = format!("http://{addr}");
                let Err(e) = client.fetch_window(&base_url, &creds, window, limits).await else {
                    panic!("{status}: the window was fetched");
                };
                assert!(!e.to_string().contains("TOPS"), "{at} {status}: {e}");
            }
        }
    }

    /// Every event of `window`, in order, fetched through `client`; `hold` keeps each batch
    /// until the reader stops handing on more (it waits for the budget), then frees them all,
    /// checking on every batch that those held fit the budget (`budget_kib`).
    async fn fetch_all(
        client: &TapClient,
        base_url: &str,
        window: Window,
        budget_kib: Option<usize>,
    ) -> (Vec<Vec<u8>>, usize) {
        let secret = SecretString::from("s-budget".to_string());
        let creds = Credentials {
            principal: "p-budget",
            secret: &secret,
            params: Vec::new(),
        };
        let limits = BatchLimits {
            events: 10_000,
            bytes: 32 * 1024,
        };
        let mut rx = client
            .fetch_window(base_url, &creds, window, limits)
            .await
            .unwrap();
        let (mut events, mut held, mut stalls) = (Vec::new(), Vec::<Batch>::new(), 0);
        loop {
            let item = match tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
                // The reader handed nothing on for a while: it waits for room (or is slow);
                // free what is held either way.
                Err(_) => {
                    if !held.is_empty() {
                        stalls += 1;
                        held.clear();
                    }
                    continue;
                }
                Ok(item) => item.expect("the reader stopped early").unwrap(),
            };
            match item {
                WindowItem::Batch(b) => {
                    events.extend(b.events.iter().map(|e| b.raw(e).to_vec()));
                    if let Some(kib) = budget_kib {
                        held.push(b);
                        let held_kib: usize = held.iter().map(|b| b.buf.len().div_ceil(1024)).sum();
                        assert!(
                            held_kib <= kib,
                            "{held_kib} KiB of batches held, budget {kib} KiB"
                        );
                    }
                }
                WindowItem::Done(_) => break,
            }
        }
        (events, stalls)
    }

    /// A response that arrives in one piece (as hyper hands on a whole read buffer, up to
    /// 400 KiB, from a server that writes whole responses or a reader that is behind) is read
    /// into buffers the budget paid for: its first chunk, far larger than the first buffer,
    /// used to get a buffer of its own size at once, unpaid while other windows held the
    /// budget. The reader now fills the first buffer, hands its events on and waits for the
    /// budget for the next (`read_body` asserts, in debug builds, that each new buffer is paid).
    #[tokio::test]
    async fn a_response_arriving_in_one_piece_is_read_into_buffers_the_budget_paid_for() {
        let event = r#"{"GUID":"g","messageTime":"2026-01-01T00:00:00.000Z","subject":"x"}"#;
        let body = format!(
            r#"{{"queryEndTime":"2026-01-01T01:00:00Z","messagesDelivered":[{}]}}"#,
            vec![event; 4000].join(",")
        );
        assert!(body.len() > 4 * FIRST_BUFFER);
        let client = TapClient::new(Duration::from_secs(30))
            .unwrap()
            .with_buffer_budget(1 << 20);
        let (sem, total) = client.budget.clone().unwrap();
        // Other windows' batches hold all but 100 KiB of the budget until the first batch
        // of this one arrives.
        let mut others = Some(sem.clone().acquire_many_owned(total - 100).await.unwrap());
        let response = reqwest::Response::from(axum::http::Response::new(body.into_bytes()));
        let limits = BatchLimits {
            events: 10_000,
            bytes: 32 * 1024,
        };
        let (tx, mut rx) = mpsc::channel(1);
        let budget = client.budget.clone();
        let reader = tokio::spawn(async move {
            read_body(response, limits, Duration::from_secs(30), budget, &tx).await
        });
        let mut events = 0;
        loop {
            match rx.recv().await.expect("the reader stopped early").unwrap() {
                WindowItem::Batch(b) => {
                    events += b.len();
                    others = None;
                }
                WindowItem::Done(summary) => {
                    assert_eq!(summary.events, 4000);
                    break;
                }
            }
        }
        assert!(others.is_none());
        assert_eq!(events, 4000);
        reader.await.unwrap().unwrap();
        assert_eq!(
            sem.available_permits(),
            total as usize,
            "every share came back"
        );
    }

    /// Answers every request with `body` as JSON, then closes the connection.
    async fn serve_body(body: Vec<u8>) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(body);
        tokio::spawn(async move {
            loop {
                let Ok((mut conn, _)) = listener.accept().await else {
                    return;
                };
                let body = body.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let header = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = conn.write_all(header.as_bytes()).await;
                    let _ = conn.write_all(&body).await;
                });
            }
        });
        format!("http://{addr}")
    }

    /// Events larger than the whole budget, in two windows read at once: a reader whose buffer
    /// must grow for one event takes what is free instead of waiting, so neither waits on the
    /// other and both windows arrive whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn events_larger_than_the_budget_in_concurrent_windows_do_not_wait_on_each_other() {
        let big = format!(
            r#"{{"GUID":"g-big","messageTime":"2026-01-01T00:00:00.000Z","subject":"{}"}}"#,
            "x".repeat(3 << 19)
        );
        let small = r#"{"GUID":"g-small","messageTime":"2026-01-01T00:00:01.000Z"}"#;
        let body = format!(
            r#"{{"queryEndTime":"2026-01-01T01:00:00Z","messagesDelivered":[{big},{small},{big}],"clicksPermitted":[]}}"#
        );
        let base_url = serve_body(body.into_bytes()).await;
        let client = TapClient::new(Duration::from_secs(30))
            .unwrap()
            .with_buffer_budget(1 << 20);
        let secret = SecretString::from("s".to_string());
        let window = Window {
            start: 1_767_225_600,
            end: 1_767_229_200,
        };
        let limits = BatchLimits {
            events: 10_000,
            bytes: 64 * 1024,
        };
        let read = |client: TapClient| {
            let (base_url, secret) = (base_url.clone(), secret.clone());
            async move {
                let creds = Credentials {
                    principal: "p",
                    secret: &secret,
                    params: Vec::new(),
                };
                let mut rx = client
                    .fetch_window(&base_url, &creds, window, limits)
                    .await
                    .unwrap();
                // Each batch is delivered (dropped) before the next is taken, as the poller does.
                let mut delivered = 0;
                loop {
                    match rx.recv().await.expect("the reader stopped early").unwrap() {
                        WindowItem::Batch(b) => delivered += b.len(),
                        WindowItem::Done(summary) => return (summary.events, delivered),
                    }
                }
            }
        };
        let both = futures_util::future::join(read(client.clone()), read(client));
        let ((a, delivered_a), (b, delivered_b)) =
            tokio::time::timeout(Duration::from_secs(60), both)
                .await
                .expect("the readers waited on each other");
        assert_eq!((a, b), (3, 3));
        assert_eq!((delivered_a, delivered_b), (3, 3));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_buffer_budget_bounds_the_batches_held_and_the_window_arrives_whole() {
        use crate::clock::Clock;
        use crate::simulate::{SimConfig, SimTenant, Simulator};
        let now = chrono::Utc::now();
        let (clock, _manual) = Clock::manual(now);
        let sim = Simulator::new(
            SimConfig {
                seed: 5,
                tenants: vec![SimTenant::new("p-budget", "s-budget", 6000)],
                ..SimConfig::default()
            },
            clock,
        );
        let server = sim.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let base_url = format!("http://{}", server.addr);
        let end = (now.timestamp() - 7200).div_euclid(60) * 60;
        let window = Window {
            start: end - 3600,
            end,
        };
        let unbounded = TapClient::new(Duration::from_secs(30)).unwrap();
        let (want, _) = fetch_all(&unbounded, &base_url, window, None).await;
        let bytes: usize = want.iter().map(Vec::len).sum();
        // Room for a few batch buffers (32 KiB batches in buffers of 288 KiB).
        let budget = 1 << 20;
        assert!(
            bytes > 4 * budget,
            "the window ({bytes} bytes) should be many budgets long"
        );
        let bounded = TapClient::new(Duration::from_secs(30))
            .unwrap()
            .with_buffer_budget(budget);
        let (got, stalls) = fetch_all(&bounded, &base_url, window, Some(budget / 1024)).await;
        assert!(stalls > 0, "the reader never waited for the budget");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the bounded read gave other events");
    }
}
