//! The simulator's HTTP side: routing, auth, quota, validation, faults and the streamed body.
//! The threat, campaign and forensics endpoints are routed from here to [`super::intel`].
//!
//! [`bind`] runs its own accept loop over hyper (HTTP/1.1) rather than `axum::serve`, so that
//! [`Fault::ResetBeforeHeaders`] can drop a connection before any byte of the response is written.
//! [`router`] wraps the same handler for use inside another server (without the PoD stream,
//! which needs the connection upgrade that only [`bind`] does).

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, request::Parts, HeaderValue, Response, StatusCode};
use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::{watch, Notify};

use super::events::{Filter, Item, TenantGen, MINUTE_MS};
use super::params::{parse_params, Params};
use super::{ms_to_utc, Fault, LoggedRequest, Simulator, TenantState};
use crate::event::EventKind;

const CHUNK: usize = 64 * 1024;

/// A running simulator server; serving stops when it is dropped or shut down.
pub struct SimServer {
    /// The bound address (with the real port when bound to port 0).
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl SimServer {
    /// Stops accepting, drops open connections and waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub(super) async fn bind(sim: Simulator, addr: SocketAddr) -> std::io::Result<SimServer> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = stopped.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(_) => continue,
                },
            };
            let _ = stream.set_nodelay(true);
            let sim = sim.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let kill = Arc::new(Notify::new());
                let svc = {
                    let kill = kill.clone();
                    let stopped = stopped.clone();
                    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let sim = sim.clone();
                        let kill = kill.clone();
                        let stopped = stopped.clone();
                        async move {
                            if req.uri().path() == "/v1/stream" {
                                return Ok::<_, Infallible>(
                                    super::pod::handle(&sim, req, stopped).await,
                                );
                            }
                            if super::oauth::routes(req.uri().path()) {
                                let (parts, body) = req.into_parts();
                                let body = Body::new(body);
                                return Ok::<_, Infallible>(
                                    super::oauth::handle(&sim, parts, body, Some(kill)).await,
                                );
                            }
                            let (parts, _) = req.into_parts();
                            Ok::<_, Infallible>(handle(&sim, &parts, Some(kill)).await)
                        }
                    })
                };
                // With upgrades: a PoD WebSocket session continues on its own task.
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades();
                // Dropping `conn` closes the socket without a response.
                tokio::select! {
                    _ = conn => {}
                    _ = kill.notified() => {}
                    _ = stopped.changed() => {}
                }
            });
        }
    });
    Ok(SimServer {
        addr,
        stop,
        task: Some(task),
    })
}

pub(super) fn router(sim: Simulator) -> axum::Router {
    axum::Router::new().fallback(move |req: axum::extract::Request| {
        let sim = sim.clone();
        async move {
            let (parts, body) = req.into_parts();
            if super::oauth::routes(parts.uri.path()) {
                return super::oauth::handle(&sim, parts, body, None).await;
            }
            handle(&sim, &parts, None).await
        }
    })
}

/// Which arrays an endpoint returns and which quota pool it draws from.
struct Endpoint {
    kinds: [bool; 4],
    /// 0: shared pool, 1: clicks/permitted.
    pool: usize,
}

fn endpoint(path: &str) -> Option<Endpoint> {
    let only = |k: EventKind| {
        let mut kinds = [false; 4];
        kinds[k.index()] = true;
        kinds
    };
    let (kinds, pool) = match path.strip_prefix("/v2/siem/")?.trim_end_matches('/') {
        "all" => ([true; 4], 0),
        "messages/blocked" => (only(EventKind::MessagesBlocked), 0),
        "messages/delivered" => (only(EventKind::MessagesDelivered), 0),
        "clicks/blocked" => (only(EventKind::ClicksBlocked), 0),
        "clicks/permitted" => (only(EventKind::ClicksPermitted), 1),
        "issues" => ([false, true, false, true], 0),
        _ => return None,
    };
    Some(Endpoint { kinds, pool })
}

pub(super) fn text(status: u16, body: impl Into<Body>) -> Response<Body> {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(super) fn status_body(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        401 => "The provided credentials are invalid",
        403 => "The service principal is not licensed for this API",
        404 => "Not Found",
        429 => "Your organization has exceeded its quota of requests for this API. Please try again later.",
        500 => "An internal server error occurred",
        502 => "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>",
        503 => "Service Temporarily Unavailable",
        504 => "<html><head><title>504 Gateway Time-out</title></head><body><center><h1>504 Gateway Time-out</h1></center></body></html>",
        _ => "Error",
    }
}

pub(super) fn basic_auth(parts: &Parts) -> Option<(String, String)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

pub(super) fn record(
    t: &TenantState,
    parts: &Parts,
    status: u16,
    at: DateTime<Utc>,
    fault: Option<Fault>,
) {
    if !t.log_requests.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    t.live
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .log
        .push(LoggedRequest {
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            status,
            at,
            fault,
        });
}

async fn handle(sim: &Simulator, parts: &Parts, kill: Option<Arc<Notify>>) -> Response<Body> {
    let now = sim.inner.clock.now();
    let creds = basic_auth(parts);
    let tenant = creds
        .as_ref()
        .and_then(|(user, _)| sim.inner.tenants.get(user));
    match parts.uri.path() {
        super::trap::PATH => return super::trap::handle(sim, parts, kill).await,
        super::isolation::PATH => return super::isolation::handle(sim, parts, kill).await,
        _ => {}
    }
    if let Some(route) = super::intel::route(parts.uri.path()) {
        return super::intel::handle(sim, parts, route, kill).await;
    }
    if let Some(list) = super::people::route(parts.uri.path()) {
        return super::people::handle(sim, parts, list, kill).await;
    }
    let Some(ep) = endpoint(parts.uri.path()) else {
        if let Some(t) = tenant {
            record(t, parts, 404, now, None);
        }
        return text(404, status_body(404));
    };
    let Some(t) = tenant else {
        return text(401, status_body(401));
    };
    if creds.as_ref().map(|(_, p)| p.as_str()) != Some(t.cfg.secret.as_str()) {
        record(t, parts, 401, now, None);
        return text(401, status_body(401));
    }
    if !t.cfg.licensed {
        record(t, parts, 403, now, None);
        return text(403, status_body(403));
    }

    // Fault, then quota: both under one lock so the log order matches the decision order.
    let fault = {
        let mut live = t.live.lock().unwrap_or_else(|e| e.into_inner());
        let fault = live.faults.pop_front();
        let limit = if ep.pool == 1 {
            t.cfg.clicks_permitted_limit
        } else {
            t.cfg.daily_limit
        };
        let pool = &mut live.quota[ep.pool];
        while pool
            .front()
            .is_some_and(|&at| at + chrono::Duration::hours(24) <= now)
        {
            pool.pop_front();
        }
        if fault.is_none() && pool.len() >= limit as usize {
            drop(live);
            record(t, parts, 429, now, None);
            return text(
                429,
                "Your organization has exceeded its quota of requests for this API in the last 24 hours.",
            );
        }
        pool.push_back(now);
        fault
    };

    let query = parts.uri.query().unwrap_or("");
    let params = parse_params(query, now, ep.kinds, t.gen.is_essentials());
    let gzip = t.cfg.gzip
        && parts
            .headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));

    if let Some(fault) = fault {
        return fault_response(t, parts, now, fault, params.ok(), kill).await;
    }
    match params {
        Err(msg) => {
            record(t, parts, 400, now, None);
            text(400, msg)
        }
        Ok(p) => {
            record(t, parts, 200, now, None);
            let body = BodyGen::new(t.gen.clone(), p, now);
            if t.cfg.whole_responses {
                whole_response(body, gzip)
            } else {
                stream_response(body, gzip, None)
            }
        }
    }
}

async fn fault_response(
    t: &TenantState,
    parts: &Parts,
    now: DateTime<Utc>,
    fault: Fault,
    params: Option<Params>,
    kill: Option<Arc<Notify>>,
) -> Response<Body> {
    // Body faults need a valid body to cut; use a quiet window if the request's was invalid.
    let params = params.unwrap_or_else(|| {
        let end = now.timestamp_millis().div_euclid(MINUTE_MS) * MINUTE_MS - 30 * MINUTE_MS;
        Params {
            filter: Filter {
                kinds: [true; 4],
                statuses: [true, true, false],
                threat_types: None,
                orgs: [true, true],
                start_ms: end - MINUTE_MS,
                end_ms: end,
                visible_at_ms: Some(now.timestamp_millis()),
            },
            json: true,
        }
    });
    let body = BodyGen::new(t.gen.clone(), params, now);
    let logged = |status| record(t, parts, status, now, Some(fault.clone()));
    match fault {
        Fault::Status(s) => {
            logged(s);
            text(s, status_body(s))
        }
        Fault::NoContent => {
            logged(204);
            text(204, Body::empty())
        }
        Fault::ResetBeforeHeaders => {
            logged(0);
            match kill {
                Some(kill) => {
                    kill.notify_one();
                    std::future::pending().await
                }
                None => stream_response(body, false, Some(Cut::Reset)),
            }
        }
        Fault::ResetMidBody => {
            logged(200);
            stream_response(body, false, Some(Cut::Reset))
        }
        Fault::TruncatedBody => {
            logged(200);
            stream_response(body, false, Some(Cut::Truncate))
        }
        Fault::MalformedBody => {
            logged(200);
            let mut resp = text(
                200,
                format!(
                    "{{\"queryEndTime\":\"{}\",\"messagesBlocked\":[{{\"GUID\":\"<html><body>502 Bad Gateway</body></html>\"\"QID\":]}}",
                    ms_to_utc(body.filter.end_ms).to_rfc3339_opts(SecondsFormat::AutoSi, true)
                ),
            );
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Fault::SlowHeaders(d) => {
            logged(200);
            tokio::time::sleep(d).await;
            stream_response(body, false, None)
        }
        Fault::StallMidBody(d) => {
            logged(200);
            stream_response(body, false, Some(Cut::Stall(d)))
        }
        Fault::Trickle(every) => {
            logged(200);
            let head = format!(
                "{{\"queryEndTime\":\"{}\",\"messagesBlocked\":[",
                ms_to_utc(body.filter.end_ms).to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
            let stream = futures_util::stream::unfold(Some(head), move |head| async move {
                let chunk = match head {
                    Some(h) => Bytes::from(h),
                    None => {
                        tokio::time::sleep(every).await;
                        Bytes::from_static(b" ")
                    }
                };
                Some((Ok::<_, std::io::Error>(chunk), None))
            });
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Fault::OddArrays => {
            logged(200);
            let end = ms_to_utc(body.filter.end_ms + 120 * MINUTE_MS)
                .to_rfc3339_opts(SecondsFormat::AutoSi, true);
            let mut resp = text(
                200,
                format!(
                    "{{\"queryEndTime\":\"{end}\",\"MessagesDelivered\":[{{\"GUID\":\"odd-1\"}},{{\"GUID\":\"odd-2\"}}],\
                     \"messagesQuarantined\":[{{\"GUID\":\"odd-3\"}}],\"messagesBlocked\":[],\"messagesDelivered\":[],\
                     \"clicksBlocked\":[],\"clicksPermitted\":[]}}"
                ),
            );
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Fault::Redirect(s, ref location) => {
            logged(s);
            let mut resp = text(s, Body::empty());
            if let Ok(v) = HeaderValue::from_str(location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Fault::Endless => {
            logged(200);
            let end = body.filter.end_ms;
            let time = ms_to_utc(end).to_rfc3339_opts(SecondsFormat::Millis, true);
            let head = format!(
                "{{\"queryEndTime\":\"{}\",\"messagesDelivered\":[",
                ms_to_utc(end).to_rfc3339_opts(SecondsFormat::AutoSi, true)
            );
            let stream = futures_util::stream::unfold(0u64, move |n| {
                let (head, time) = (head.clone(), time.clone());
                async move {
                    let mut chunk = if n == 0 { head } else { String::new() };
                    for i in n..n + 200 {
                        if i > 0 {
                            chunk.push(',');
                        }
                        chunk.push_str(&format!(
                            "{{\"GUID\":\"endless-{i}\",\"messageTime\":\"{time}\",\"subject\":\"event {i} of a response that does not end\"}}"
                        ));
                    }
                    // Yield, so a client that stops reading is noticed.
                    tokio::task::yield_now().await;
                    Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), n + 200))
                }
            });
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Fault::EchoCredentials(s) => {
            logged(s);
            let auth = parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let (user, pass) = basic_auth(parts).unwrap_or_default();
            text(
                s,
                format!(
                    "{} request dump: Authorization: {auth}\nuser={user} credentials={user}:{pass} secret={pass}",
                    status_body(s)
                ),
            )
        }
    }
}

/// How a fault cuts a streamed body after its first small chunk.
#[derive(Clone, Copy)]
enum Cut {
    /// Drop the connection (the body stream fails).
    Reset,
    /// End cleanly in the middle of the JSON.
    Truncate,
    /// Wait, then continue normally.
    Stall(Duration),
}

fn stream_response(mut body: BodyGen, gzip: bool, cut: Option<Cut>) -> Response<Body> {
    let content_type = if body.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    if cut.is_some() {
        body.target = 4096;
    }
    let encoder =
        gzip.then(|| flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    struct State {
        body: BodyGen,
        encoder: Option<flate2::write::GzEncoder<Vec<u8>>>,
        cut: Option<Cut>,
        chunks: usize,
        done: bool,
    }
    let state = State {
        body,
        encoder,
        cut,
        chunks: 0,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if st.chunks == 1 {
            match st.cut {
                Some(Cut::Reset) => {
                    // Give hyper a moment to flush what was sent, then fail the body.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    st.done = true;
                    let err =
                        std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset");
                    return Some((Err(err), st));
                }
                Some(Cut::Stall(d)) => {
                    tokio::time::sleep(d).await;
                    st.body.target = CHUNK;
                }
                _ => {}
            }
        }
        st.chunks += 1;
        loop {
            let raw = st.body.next_chunk();
            let Some(mut raw) = raw else {
                st.done = true;
                let tail = st
                    .encoder
                    .take()
                    .and_then(|e| e.finish().ok())
                    .unwrap_or_default();
                return (!tail.is_empty()).then(|| (Ok(Bytes::from(tail)), st));
            };
            if st.chunks == 1 && matches!(st.cut, Some(Cut::Truncate)) {
                raw.truncate(raw.len() * 2 / 3);
                st.done = true;
                return Some((Ok(Bytes::from(raw)), st));
            }
            match st.encoder.as_mut() {
                None => return Some((Ok::<_, std::io::Error>(Bytes::from(raw)), st)),
                Some(enc) => {
                    if let Err(e) = enc.write_all(&raw) {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                    let out = std::mem::take(enc.get_mut());
                    if !out.is_empty() {
                        return Some((Ok(Bytes::from(out)), st));
                    }
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// The whole body at once, with its `Content-Length`: hyper writes it in one piece.
fn whole_response(mut body: BodyGen, gzip: bool) -> Response<Body> {
    let content_type = if body.json {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut raw = Vec::new();
    while let Some(chunk) = body.next_chunk() {
        raw.extend_from_slice(&chunk);
    }
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let zipped = enc.write_all(&raw).and_then(|()| enc.finish());
        match zipped {
            Ok(zipped) => raw = zipped,
            Err(e) => return text(500, e.to_string()),
        }
    }
    let mut resp = Response::new(Body::from(raw));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if gzip {
        resp.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    resp
}

/// Generates a response body chunk by chunk: kind by kind, minute by minute, item by item.
struct BodyGen {
    gen: TenantGen,
    filter: Filter,
    json: bool,
    query_end: String,
    /// Bytes to gather before handing a chunk out.
    target: usize,
    started: bool,
    /// Index into `EventKind::SIEM`; 4 when all arrays are closed.
    kind: usize,
    minute: i64,
    /// Items of `minute` (loaded when `loaded == Some(minute)`), and the resume position.
    items: Vec<Item>,
    loaded: Option<i64>,
    item: usize,
    recipient: u8,
    first_in_array: bool,
    finished: bool,
}

impl BodyGen {
    fn new(gen: TenantGen, p: Params, _now: DateTime<Utc>) -> Self {
        BodyGen {
            // Essentials writes Go's default time layout; TAP writes RFC 3339.
            query_end: if gen.is_essentials() {
                ms_to_utc(p.filter.end_ms)
                    .format("%Y-%m-%d %H:%M:%S +0000 UTC")
                    .to_string()
            } else {
                ms_to_utc(p.filter.end_ms).to_rfc3339_opts(SecondsFormat::AutoSi, true)
            },
            gen,
            minute: p.filter.start_ms.div_euclid(MINUTE_MS),
            filter: p.filter,
            json: p.json,
            target: CHUNK,
            started: false,
            kind: 0,
            items: Vec::new(),
            loaded: None,
            item: 0,
            recipient: 0,
            first_in_array: true,
            finished: false,
        }
    }

    fn first_minute(&self) -> i64 {
        self.filter.start_ms.div_euclid(MINUTE_MS)
    }

    fn last_minute(&self) -> i64 {
        self.filter.end_ms.div_euclid(MINUTE_MS)
    }

    /// The next chunk of about `target` bytes, or `None` at the end.
    fn next_chunk(&mut self) -> Option<Vec<u8>> {
        if self.finished {
            return None;
        }
        let mut buf = Vec::with_capacity(self.target + 8192);
        if !self.started {
            self.started = true;
            if self.json {
                buf.extend_from_slice(b"{\"queryEndTime\":\"");
                buf.extend_from_slice(self.query_end.as_bytes());
                buf.extend_from_slice(b"\",\"messagesBlocked\":[");
            }
        }
        while buf.len() < self.target {
            if self.kind == 4 {
                if self.json {
                    buf.push(b'}');
                }
                self.finished = true;
                break;
            }
            let kind = EventKind::SIEM[self.kind];
            if !self.filter.kinds[self.kind] || self.minute > self.last_minute() {
                self.kind += 1;
                self.minute = self.first_minute();
                self.item = 0;
                self.recipient = 0;
                self.first_in_array = true;
                if self.json {
                    buf.push(b']');
                    if self.kind < 4 {
                        buf.extend_from_slice(b",\"");
                        buf.extend_from_slice(EventKind::SIEM[self.kind].as_str().as_bytes());
                        buf.extend_from_slice(b"\":[");
                    }
                }
                continue;
            }
            if self.loaded != Some(self.minute) {
                self.gen.minute_items(self.minute, &mut self.items);
                self.loaded = Some(self.minute);
            }
            while self.item < self.items.len() && buf.len() < self.target {
                let it = self.items[self.item];
                if it.kind != kind || !self.filter.item_matches(&it) {
                    self.item += 1;
                    continue;
                }
                let r = self.recipient;
                let visible = self
                    .filter
                    .visible_at_ms
                    .map_or(true, |now| self.gen.visible_at(&it, r) <= now);
                if visible {
                    if self.json {
                        if !self.first_in_array {
                            buf.push(b',');
                        }
                        self.first_in_array = false;
                        self.gen.render_json(&it, r, &mut buf);
                    } else {
                        self.gen.render_syslog(&it, r, &mut buf);
                    }
                }
                self.recipient += 1;
                if self.recipient >= it.recipients {
                    self.recipient = 0;
                    self.item += 1;
                }
            }
            if self.item >= self.items.len() {
                self.minute += 1;
                self.item = 0;
                self.recipient = 0;
            }
        }
        Some(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::params::parse_duration;

    #[test]
    fn durations_parse_in_iso_8601_form() {
        assert_eq!(parse_duration("PT30M"), Some(1_800_000));
        assert_eq!(parse_duration("PT1H"), Some(3_600_000));
        assert_eq!(parse_duration("PT1H2M3.5S"), Some(3_723_500));
        assert_eq!(parse_duration("P1D"), Some(86_400_000));
        for bad in ["PT", "P", "30M", "PT30", "PTxM"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn offsets_and_fractions_are_accepted_and_plus_is_literal() {
        let now = "2026-03-02T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let p = parse_params(
            "interval=2026-03-02T12:00:00.5+01:00/2026-03-02T11:30:00.5Z",
            now,
            [true; 4],
            false,
        )
        .unwrap();
        assert_eq!(p.filter.end_ms - p.filter.start_ms, 30 * 60_000);
        assert!(!p.json);
    }
}
