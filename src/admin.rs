//! The admin endpoint (`admin_listen`): what operators and their monitoring ask a running daemon.
//!
//! | path | answer |
//! |---|---|
//! | `/metrics` | Prometheus text ([`Metrics::render`]); the store's size and health are measured on each scrape |
//! | `/healthz` | 200 while the process serves requests (liveness) |
//! | `/readyz` | 200 once the state store is open and every tenant is scheduled, 503 before and while the store fails |
//! | `/status` | `{"tenants":[TenantStatus...],"store":StoreHealth}`, the shape `tapfwd status` reads when the store is locked |
//!
//! Without `admin_token_env` it has no authentication: bind it to loopback (the examples do; the
//! daemon warns otherwise) or to a pod network that only the scraper reaches. With it, `/status`
//! and `/metrics` answer 401 unless the request carries `Authorization: Bearer TOKEN`; the probes
//! stay open. Everything it shows comes from the status board, the metrics and the store's size,
//! none of which can hold a secret (invariant 7); the token is compared through its hash, never
//! logged.
//!
//! Whoever reaches the port cannot starve the daemon of file descriptors ([`Limits`]): it holds at
//! most 64 connections (at the cap, the one open the longest is closed for the newcomer, so a
//! probe still gets in while idle connections pile up), and a connection that takes longer than
//! 10 s to send a request's headers, or sits that long idle between requests, is closed.
//!
//! The daemon serves it from a thread and a runtime of its own ([`serve_apart`]), and no handler
//! waits on the store (the store's health is atomics; `/status` is the status board's snapshot),
//! so it keeps answering while sled calls blocked on a full disk hold the daemon's runtime.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::status::{StatusBoard, TenantStatus};
use crate::store::{Store, StoreHealth};

/// What the endpoint reads.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub store: Store,
    /// Set once the daemon is ready (store open, tenants scheduled); `/readyz` answers from it.
    pub ready: Arc<AtomicBool>,
    /// The bearer token `/status` and `/metrics` require, as its BLAKE3 hash; none: open.
    pub token: Option<blake3::Hash>,
}

impl AdminState {
    /// Whether `headers` carry the token (always, when none is configured). Hashes compare in
    /// constant time.
    fn authorized(&self, headers: &axum::http::HeaderMap) -> bool {
        let Some(want) = self.token else {
            return true;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|got| blake3::hash(got.trim().as_bytes()) == want)
    }
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "a bearer token is required (admin_token_env)\n",
    )
        .into_response()
}

/// The body of `/status`.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct StatusBody {
    pub tenants: Vec<TenantStatus>,
    /// Whether the state store's writes and flushes work.
    #[serde(default)]
    pub store: StoreHealth,
}

/// The endpoint's routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(state)
}

async fn metrics(State(s): State<AdminState>, headers: axum::http::HeaderMap) -> Response {
    if !s.authorized(&headers) {
        return unauthorized();
    }
    s.metrics
        .set_global("tapfwd_store_size_bytes", s.store.size_on_disk() as f64);
    // Measured here too, not only by the daemon's store watch: right while the daemon's runtime
    // is held (the store's health is atomics).
    let store = s.store.health();
    s.metrics.set_global(
        "tapfwd_store_healthy",
        if store.healthy { 1.0 } else { 0.0 },
    );
    s.metrics
        .set_global("tapfwd_store_errors_total", store.errors_total as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn readyz(State(s): State<AdminState>) -> Response {
    if !s.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    }
    let store = s.store.health();
    if !store.healthy {
        let error = store.last_error.unwrap_or_default();
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("state store failing: {error}\n"),
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn status(State(s): State<AdminState>, headers: axum::http::HeaderMap) -> Response {
    if !s.authorized(&headers) {
        return unauthorized();
    }
    Json(StatusBody {
        tenants: s.status.snapshot(),
        store: s.store.health(),
    })
    .into_response()
}

/// Binds `addr` (port 0 picks a free port; the bound address is returned).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

/// What one client of the endpoint may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Connections held at once. At the cap, the connection open the longest is closed to make
    /// room for the new one. Default 64.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, and may sit idle between
    /// requests, before it is closed. Default 10 s.
    pub idle: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            idle: Duration::from_secs(10),
        }
    }
}

/// How long the endpoint waits before accepting again when accepting fails (out of file
/// descriptors, most likely: the wait lets connections close instead of spinning).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the endpoint on `listener` with the default [`Limits`] until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, state, Limits::default(), shutdown).await
}

/// The connections being served, oldest first, each with the token that closes it.
type Open = Arc<Mutex<VecDeque<(u64, CancellationToken)>>>;

/// Serves the endpoint on `listener` within `limits` until `shutdown` is cancelled; then lets the
/// requests in flight finish and returns once every connection is closed.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    state: AdminState,
    limits: Limits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let router = router(state);
    let open: Open = Arc::default();
    let connections = TaskTracker::new();
    let mut next_id = 0u64;
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin endpoint: cannot accept a connection");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let id = next_id;
        next_id += 1;
        let close = CancellationToken::new();
        {
            let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
            while open.len() >= limits.max_connections.max(1) {
                if let Some((_, oldest)) = open.pop_front() {
                    oldest.cancel();
                }
            }
            open.push_back((id, close.clone()));
        }
        connections.spawn(connection(
            stream,
            router.clone(),
            limits.idle,
            close,
            shutdown.clone(),
            (open.clone(), id),
        ));
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Serves one connection until the client is done, it is idle past `idle`, `close` evicts it
/// (the socket is dropped at once) or `shutdown` (the request in flight is answered first).
async fn connection(
    stream: tokio::net::TcpStream,
    router: Router,
    idle: Duration,
    close: CancellationToken,
    shutdown: CancellationToken,
    (open, id): (Open, u64),
) {
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(idle)
        .serve_connection(
            hyper_util::rt::TokioIo::new(stream),
            hyper_util::service::TowerToHyperService::new(router),
        );
    tokio::pin!(conn);
    let stopping = tokio::select! {
        _ = conn.as_mut() => false,
        _ = close.cancelled() => false,
        _ = shutdown.cancelled() => true,
    };
    if stopping {
        // Idle connections close at once; a request in flight gets its answer, within `idle`.
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(idle, async {
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = close.cancelled() => {}
            }
        })
        .await;
    }
    open.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(other, _)| *other != id);
}

/// The endpoint served by [`serve_apart`].
pub struct Apart {
    stop: CancellationToken,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Apart {
    /// Stops serving at once (a request in flight is dropped) and waits until the socket is closed.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.done.await;
    }
}

/// Serves the endpoint as [`serve`] does, from a thread of its own on a single-threaded runtime
/// of its own: it answers however busy or blocked the daemon's runtime is (sled calls that block
/// on a full disk held its workers, and `/readyz` and `/status` went silent for 100 s).
pub fn serve_apart(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: CancellationToken,
) -> std::io::Result<Apart> {
    let listener = listener.into_std()?;
    let stop = CancellationToken::new();
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let stopped = stop.clone();
    std::thread::Builder::new()
        .name("tapfwd-admin".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .and_then(|rt| {
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(listener)?;
                        tokio::select! {
                            served = serve(listener, state, shutdown) => served,
                            _ = stopped.cancelled() => Ok(()),
                        }
                    })
                });
            if let Err(e) = served {
                tracing::error!(error = %e, "the admin endpoint stopped");
            }
            let _ = done_tx.send(());
        })?;
    Ok(Apart { stop, done })
}
