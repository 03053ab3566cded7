//! A stand-in for the TAP SIEM API ([`FakeTap`]) and the configs that point a daemon at it, for
//! the service tests, which need nothing else: one `messagesDelivered` event per minute per
//! tenant, at second 30, whose bytes (and GUID, `PRINCIPAL-UNIXSECOND`) depend only on the tenant
//! and the minute; 401 for a wrong secret. So a test knows, without asking a simulator, how many
//! events any span holds and when each happened.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use chrono::{SecondsFormat, TimeZone, Utc};

/// The fake API: `GET /v2/siem/all` with HTTP Basic credentials and `interval=START/END`.
#[derive(Clone, Default)]
pub struct FakeTap {
    /// principal -> secret.
    creds: Arc<Mutex<HashMap<String, String>>>,
}

/// A running [`FakeTap`]; it stops serving when dropped.
pub struct TapServer {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FakeTap {
    /// Serves `(principal, secret)` pairs on 127.0.0.1:0.
    pub async fn start(tenants: &[(&str, &str)]) -> TapServer {
        let tap = FakeTap::default();
        for (p, s) in tenants {
            tap.creds
                .lock()
                .unwrap()
                .insert(p.to_string(), s.to_string());
        }
        let app = axum::Router::new()
            .route("/v2/siem/all", axum::routing::get(siem))
            .with_state(tap);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        TapServer { addr, _stop: tx }
    }
}

/// The event of `principal` at unix second `t`.
fn fake_event(principal: &str, t: i64) -> String {
    let time = Utc
        .timestamp_opt(t, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    format!(
        r#"{{"GUID":"{principal}-{t}","QID":"q{t}","messageTime":"{time}","recipient":["user@{principal}.example"],"sender":"s@x.example","subject":"hello","spamScore":0}}"#
    )
}

async fn siem(
    State(tap): State<FakeTap>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some((principal, secret)) = auth.as_deref().and_then(|a| a.split_once(':')) else {
        return (StatusCode::UNAUTHORIZED, "no credentials").into_response();
    };
    if tap.creds.lock().unwrap().get(principal).map(String::as_str) != Some(secret) {
        return (StatusCode::UNAUTHORIZED, "bad credentials").into_response();
    }
    let Some((a, b)) = q.get("interval").and_then(|i| i.split_once('/')) else {
        return (StatusCode::BAD_REQUEST, "no interval").into_response();
    };
    let (Ok(start), Ok(end)) = (
        chrono::DateTime::parse_from_rfc3339(a),
        chrono::DateTime::parse_from_rfc3339(b),
    ) else {
        return (StatusCode::BAD_REQUEST, "bad interval").into_response();
    };
    let (start, end) = (start.timestamp(), end.timestamp());
    let mut t = start.div_euclid(60) * 60 + 30;
    if t < start {
        t += 60;
    }
    let mut events = Vec::new();
    while t <= end {
        events.push(fake_event(principal, t));
        t += 60;
    }
    let body = format!(
        r#"{{"queryEndTime":"{b}","messagesBlocked":[],"messagesDelivered":[{}],"clicksBlocked":[],"clicksPermitted":[]}}"#,
        events.join(",")
    );
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

// ---------------------------------------------------------------------------------------------
// Configs.

/// A tenant of [`service_config`]: its id is also its principal.
pub struct TapTenant<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub sinks: &'a [&'a str],
}

pub fn tap_tenant<'a>(id: &'a str, secret: &'a str, sinks: &'a [&'a str]) -> TapTenant<'a> {
    TapTenant { id, secret, sinks }
}

/// A config with file sinks `dir/NAME.ndjson`. `top` goes before the tables.
pub fn service_config(
    dir: &Path,
    tap: SocketAddr,
    top: &str,
    lookback: &str,
    sinks: &[&str],
    tenants: &[TapTenant<'_>],
) -> String {
    let mut t = format!(
        "state_dir = {:?}\n{top}\n[poll]\ninterval = \"1m\"\nlag = \"30m\"\ninitial_lookback = \"{lookback}\"\nshutdown_grace = \"5s\"\n\n[log]\nformat = \"json\"\n",
        dir.join("state").display().to_string()
    );
    for s in sinks {
        t.push_str(&format!(
            "\n[sinks.{s}]\ntype = \"file\"\npath = {:?}\n",
            dir.join(format!("{s}.ndjson")).display().to_string()
        ));
    }
    for tn in tenants {
        t.push_str(&tenant_table(tn, tap, true));
    }
    t
}

/// One tenant's table (`header`: with its `[tenants.ID]` line; without, for a `tenants_dir` file).
pub fn tenant_table(tn: &TapTenant<'_>, tap: SocketAddr, header: bool) -> String {
    let sinks: Vec<String> = tn.sinks.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "{}base_url = \"http://{tap}\"\nprincipal = \"{id}\"\nsecret = \"{secret}\"\nsinks = [{sinks}]\n",
        if header {
            format!("\n[tenants.{}]\n", tn.id)
        } else {
            String::new()
        },
        id = tn.id,
        secret = tn.secret,
        sinks = sinks.join(", ")
    )
}
