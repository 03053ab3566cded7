//! What the simulated API-key products (TRAP, Isolation) share: a tenant registered at run time
//! by its key ([`Simulator::serve_trap`], [`Simulator::serve_isolation`]), its queue of faults
//! and its request log, the query's parameters, and the faults a JSON answer can suffer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, request::Parts, HeaderValue, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::params::percent_decode;
use super::server::{status_body, text};
use super::{Fault, LoggedRequest};

/// One simulated tenant's faults and log.
#[derive(Default)]
pub(super) struct Live {
    pub faults: VecDeque<Fault>,
    pub log: Vec<LoggedRequest>,
}

impl Live {
    pub fn record(&mut self, parts: &Parts, status: u16, at: DateTime<Utc>, fault: Option<Fault>) {
        self.log.push(LoggedRequest {
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            status,
            at,
            fault,
        });
    }
}

/// The decoded `name=value` pairs of the request's query; `Err` is a 400 text.
pub(super) fn query(parts: &Parts) -> Result<Vec<(String, String)>, String> {
    parts
        .uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((percent_decode(k)?, percent_decode(&v.replace('+', " "))?))
        })
        .collect()
}

/// The value of `name` in `pairs`.
pub(super) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// RFC 3339 `text` as unix seconds.
pub(super) fn instant(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp())
}

/// A 200 JSON answer.
pub(super) fn json(body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The answer `body` (a complete JSON answer) as `fault` spoils it. `echo` is what a debug
/// proxy's error page repeats of the request (its URL and headers).
pub(super) async fn faulty(
    fault: &Fault,
    body: Vec<u8>,
    echo: String,
    kill: Option<Arc<Notify>>,
) -> Response<Body> {
    let half = body.len() / 2;
    match fault {
        Fault::Status(s) => text(*s, status_body(*s)),
        Fault::NoContent => text(204, Body::empty()),
        Fault::EchoCredentials(s) => text(*s, format!("{} request dump: {echo}", status_body(*s))),
        Fault::Redirect(s, location) => {
            let mut resp = text(*s, Body::empty());
            if let Ok(v) = HeaderValue::from_str(location) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Fault::ResetBeforeHeaders => match kill {
            Some(kill) => {
                kill.notify_one();
                std::future::pending().await
            }
            None => cut(body, half, true),
        },
        Fault::ResetMidBody => cut(body, half, true),
        Fault::TruncatedBody => cut(body, half, false),
        Fault::MalformedBody => json(b"[{\"id\":<html>502 Bad Gateway</html>".to_vec()),
        Fault::SlowHeaders(d) => {
            tokio::time::sleep(*d).await;
            json(body)
        }
        Fault::StallMidBody(d) | Fault::Trickle(d) => {
            let d = *d;
            let rest = Bytes::from(body[half..].to_vec());
            let head = Bytes::from(body[..half].to_vec());
            let stream = futures_util::stream::iter([0u8, 1]).then(move |i| {
                let (head, rest) = (head.clone(), rest.clone());
                async move {
                    if i == 0 {
                        Ok::<_, std::io::Error>(head)
                    } else {
                        tokio::time::sleep(d).await;
                        Ok(rest)
                    }
                }
            });
            let mut resp = Response::new(Body::from_stream(stream));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        Fault::OddArrays | Fault::Endless => text(500, status_body(500)),
    }
}

use futures_util::StreamExt as _;

/// `body` cut after `at` bytes: the connection dropped (`reset`) or a clean early end.
fn cut(body: Vec<u8>, at: usize, reset: bool) -> Response<Body> {
    let head = Bytes::from(body[..at].to_vec());
    let stream = futures_util::stream::iter([0u8, 1]).then(move |i| {
        let head = head.clone();
        async move {
            if i == 0 {
                Ok::<_, std::io::Error>(head)
            } else {
                // Let the first part reach the client before the end.
                tokio::time::sleep(Duration::from_millis(20)).await;
                if reset {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "connection reset",
                    ))
                } else {
                    Ok(Bytes::new())
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
