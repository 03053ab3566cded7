//! Local servers that speak the destinations' protocols the way the real ones do, for the HTTP
//! sink tests: a Splunk HTTP Event Collector (with indexer acknowledgement), a LogScale ingest
//! endpoint (structured, HEC and raw HEC APIs), an Entra ID token endpoint with a Logs Ingestion data
//! collection endpoint, and a plain HTTP receiver. Each binds 127.0.0.1:0 and records every
//! request; scripted faults replace the next replies.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

/// One request as the server saw it, body decompressed.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

/// A reply that replaces the next normal one.
#[derive(Clone, Debug)]
pub struct Fault {
    pub status: u16,
    pub retry_after: Option<String>,
    /// A `Location` header (for a 3xx).
    pub location: Option<String>,
    pub body: String,
}

impl Fault {
    pub fn new(status: u16, body: &str) -> Fault {
        Fault {
            status,
            retry_after: None,
            location: None,
            body: body.into(),
        }
    }
    pub fn retry_after(mut self, v: &str) -> Fault {
        self.retry_after = Some(v.into());
        self
    }
    /// A redirect: `status` (3xx) pointing at `location`.
    pub fn redirect(status: u16, location: &str) -> Fault {
        Fault {
            location: Some(location.into()),
            ..Fault::new(status, "")
        }
    }
}

#[derive(Default)]
pub struct Inner {
    /// Every request to the data endpoint, accepted or not.
    pub requests: Vec<Recorded>,
    /// Request bodies that were accepted, decompressed.
    pub accepted: Vec<Vec<u8>>,
    /// Events accepted (protocol-specific JSON objects).
    pub events: Vec<Value>,
    pub faults: VecDeque<Fault>,
    /// Azure: faults of the token endpoint.
    pub token_faults: VecDeque<Fault>,
    /// Tokens the server accepts (HEC, LogScale, plain bearer) or `user:password` for basic.
    pub valid: Vec<String>,
    /// HEC: tokens that exist but are disabled.
    pub disabled: Vec<String>,
    /// HEC: indexes that exist.
    pub indexes: Vec<String>,
    /// HEC: whether the token requires indexer acknowledgement.
    pub ack: bool,
    /// HEC: ack id → polls still answered `false`.
    pub pending_acks: HashMap<(String, u64), u32>,
    /// HEC: how many polls answer `false` before `true`.
    pub ack_false_polls: u32,
    pub next_ack: HashMap<String, u64>,
    pub ack_polls: usize,
    /// Azure: what the token endpoint accepts and issues.
    pub client_id: String,
    pub client_secret: String,
    pub expires_in: u64,
    pub issued: Vec<(String, Instant)>,
    pub revoked: Vec<String>,
    pub token_requests: usize,
    /// Azure: the DCR immutable id and the streams it declares.
    pub dcr: String,
    pub streams: Vec<String>,
    /// Azure: stream → its declared columns (name, type), for streams declared like a DCR
    /// template's `streamDeclarations`; the others take the envelope columns.
    pub declared: HashMap<String, Vec<(String, String)>>,
    /// Azure: `stream.column` of every value sent in a column its stream does not declare (the
    /// API drops those silently, as the fake does).
    pub dropped_columns: Vec<String>,
    /// Azure: 401s the DCE returned.
    pub unauthorized: usize,
    /// Azure: the DCE refuses every token (an app without rights in that directory).
    pub refuse_all_tokens: bool,
}

#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<Inner>>);

impl Fake {
    pub fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
    pub fn push_fault(&self, fault: Fault) {
        self.with(|s| s.faults.push_back(fault));
    }
    pub fn events(&self) -> Vec<Value> {
        self.with(|s| s.events.clone())
    }
    pub fn requests(&self) -> Vec<Recorded> {
        self.with(|s| s.requests.clone())
    }
    pub fn accepted(&self) -> Vec<Vec<u8>> {
        self.with(|s| s.accepted.clone())
    }
}

/// Serves `router` on 127.0.0.1:0; the server lives as long as the test's runtime.
pub async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    addr
}

fn reply(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn fault_reply(f: Fault) -> Response {
    let mut r = (StatusCode::from_u16(f.status).unwrap(), f.body).into_response();
    if let Some(ra) = f.retry_after {
        r.headers_mut().insert("retry-after", ra.parse().unwrap());
    }
    if let Some(l) = f.location {
        r.headers_mut().insert("location", l.parse().unwrap());
    }
    r
}

/// The body, gunzipped when `Content-Encoding: gzip`.
fn decoded(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, ()> {
    match headers
        .get("content-encoding")
        .map(|v| v.to_str().unwrap_or(""))
    {
        None => Ok(body.to_vec()),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .map_err(|_| ())?;
            Ok(out)
        }
        Some(_) => Err(()),
    }
}

fn record(
    s: &mut Inner,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) {
    let q: BTreeMap<_, _> = query.iter().collect();
    s.requests.push(Recorded {
        path: path.into(),
        query: format!("{q:?}"),
        headers: headers.clone(),
        body: body.to_vec(),
        at: Instant::now(),
    });
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

// ---------------------------------------------------------------- Splunk HEC

/// A Splunk HTTP Event Collector on `/services/collector/event` (and its alias
/// `/services/collector`) and `/services/collector/ack`. Any other path gets HEC's 404 reply,
/// `{"text":"The requested URL was not found on this server.","code":404}`, and is recorded.
pub async fn splunk_hec(fake: &Fake) -> SocketAddr {
    let router = Router::new()
        .route("/services/collector/event", post(hec_event))
        .route("/services/collector", post(hec_event))
        .route("/services/collector/ack", post(hec_ack))
        .fallback(hec_not_found)
        .with_state(fake.clone());
    serve(router).await
}

async fn hec_not_found(
    State(fake): State<Fake>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = fake.0.lock().unwrap();
    record(&mut s, uri.path(), &HashMap::new(), &headers, &body);
    reply(
        404,
        json!({"text":"The requested URL was not found on this server.","code":404}),
    )
}

/// Checks `Authorization: Splunk TOKEN` the way HEC does; `Err` is the reply.
fn hec_auth(s: &Inner, headers: &HeaderMap) -> Result<String, Box<Response>> {
    let Some(auth) = header(headers, "authorization") else {
        return Err(Box::new(reply(
            401,
            json!({"text":"Token is required","code":2}),
        )));
    };
    let Some(token) = auth.strip_prefix("Splunk ") else {
        return Err(Box::new(reply(
            401,
            json!({"text":"Invalid authorization","code":3}),
        )));
    };
    if s.disabled.iter().any(|t| t == token) {
        return Err(Box::new(reply(
            403,
            json!({"text":"Token disabled","code":1}),
        )));
    }
    if !s.valid.iter().any(|t| t == token) {
        // Real HEC never echoes the token; this fake does, to prove the sink scrubs it.
        return Err(Box::new(reply(
            403,
            json!({"text": format!("Invalid token {token}"),"code":4}),
        )));
    }
    Ok(token.to_string())
}

async fn hec_event(
    State(fake): State<Fake>,
    uri: axum::http::Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = fake.0.lock().unwrap();
    let Ok(body) = decoded(&headers, &body) else {
        return reply(400, json!({"text":"Invalid data format","code":6}));
    };
    record(&mut s, uri.path(), &query, &headers, &body);
    if let Some(f) = s.faults.pop_front() {
        return fault_reply(f);
    }
    if let Err(r) = hec_auth(&s, &headers) {
        return *r;
    }
    let channel = header(&headers, "x-splunk-request-channel")
        .map(str::to_string)
        .or_else(|| query.get("channel").cloned());
    if s.ack && channel.is_none() {
        return reply(400, json!({"text":"Data channel is missing","code":10}));
    }
    // The HEC batch format: JSON objects separated by optional whitespace.
    let mut events = Vec::new();
    for (n, item) in serde_json::Deserializer::from_slice(&body)
        .into_iter::<Value>()
        .enumerate()
    {
        let Ok(v) = item else {
            return reply(
                400,
                json!({"text":"Invalid data format","code":6,"invalid-event-number":n}),
            );
        };
        match v.get("event") {
            None => {
                return reply(
                    400,
                    json!({"text":"Event field is required","code":12,"invalid-event-number":n}),
                )
            }
            Some(Value::String(e)) if e.is_empty() => {
                return reply(
                    400,
                    json!({"text":"Event field cannot be blank","code":13,"invalid-event-number":n}),
                )
            }
            Some(_) => {}
        }
        // Indexed fields: a flat object of strings, numbers or arrays of them; anything nested
        // is refused (Splunk: "Error in handling indexed fields", code 15).
        if let Some(fields) = v.get("fields") {
            let flat = |f: &Value| f.is_string() || f.is_number();
            let ok = fields.as_object().is_some_and(|m| {
                m.values()
                    .all(|f| flat(f) || f.as_array().is_some_and(|a| a.iter().all(flat)))
            });
            if !ok {
                return reply(
                    400,
                    json!({"text":"Error in handling indexed fields","code":15,"invalid-event-number":n}),
                );
            }
        }
        if let Some(index) = v.get("index").and_then(Value::as_str) {
            if !s.indexes.iter().any(|i| i == index) {
                return reply(
                    400,
                    json!({"text":"Incorrect index","code":7,"invalid-event-number":n}),
                );
            }
        }
        events.push(v);
    }
    if events.is_empty() {
        return reply(400, json!({"text":"No data","code":5}));
    }
    s.events.extend(events);
    s.accepted.push(body);
    if s.ack {
        let channel = channel.unwrap_or_default();
        let id = *s.next_ack.entry(channel.clone()).or_default();
        s.next_ack.insert(channel.clone(), id + 1);
        let polls = s.ack_false_polls;
        s.pending_acks.insert((channel, id), polls);
        return reply(200, json!({"text":"Success","code":0,"ackId":id}));
    }
    reply(200, json!({"text":"Success","code":0}))
}

async fn hec_ack(
    State(fake): State<Fake>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = fake.0.lock().unwrap();
    s.ack_polls += 1;
    if let Err(r) = hec_auth(&s, &headers) {
        return *r;
    }
    if !s.ack {
        return reply(400, json!({"text":"ACK is disabled","code":14}));
    }
    let Some(channel) = header(&headers, "x-splunk-request-channel")
        .map(str::to_string)
        .or_else(|| query.get("channel").cloned())
    else {
        return reply(400, json!({"text":"Data channel is missing","code":10}));
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return reply(400, json!({"text":"Invalid data format","code":6}));
    };
    let Some(ids) = req.get("acks").and_then(Value::as_array) else {
        return reply(400, json!({"text":"Invalid data format","code":6}));
    };
    let mut out = serde_json::Map::new();
    for id in ids {
        let id = id.as_u64().unwrap();
        let key = (channel.clone(), id);
        let done = match s.pending_acks.get_mut(&key) {
            Some(0) => {
                s.pending_acks.remove(&key);
                true
            }
            Some(n) => {
                *n -= 1;
                false
            }
            None => false,
        };
        out.insert(id.to_string(), Value::Bool(done));
    }
    reply(200, json!({ "acks": out }))
}

// ---------------------------------------------------------------- LogScale

/// A LogScale cluster's ingest endpoints.
pub async fn logscale(fake: &Fake) -> SocketAddr {
    let router = Router::new()
        .route("/api/v1/ingest/humio-structured", post(logscale_structured))
        .route("/api/v1/ingest/hec", post(logscale_hec))
        .route("/api/v1/ingest/hec/raw", post(logscale_hec_raw))
        .with_state(fake.clone());
    serve(router).await
}

fn bearer_ok(s: &Inner, headers: &HeaderMap) -> bool {
    header(headers, "authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|t| s.valid.iter().any(|v| v == t))
}

async fn logscale_structured(
    State(fake): State<Fake>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = fake.0.lock().unwrap();
    let Ok(body) = decoded(&headers, &body) else {
        return (StatusCode::BAD_REQUEST, "bad content encoding").into_response();
    };
    record(
        &mut s,
        "/api/v1/ingest/humio-structured",
        &HashMap::new(),
        &headers,
        &body,
    );
    if let Some(f) = s.faults.pop_front() {
        return fault_reply(f);
    }
    if !bearer_ok(&s, &headers) {
        return (
            StatusCode::UNAUTHORIZED,
            "The supplied ingest token is not valid",
        )
            .into_response();
    }
    let Ok(Value::Array(groups)) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "Could not parse JSON").into_response();
    };
    let mut events = Vec::new();
    for g in groups {
        let (Some(tags), Some(Value::Array(evs))) = (g.get("tags"), g.get("events")) else {
            return (
                StatusCode::BAD_REQUEST,
                "Each element needs tags and events",
            )
                .into_response();
        };
        for e in evs {
            if e.get("timestamp").is_none() || !e.get("attributes").is_some_and(Value::is_object) {
                return (
                    StatusCode::BAD_REQUEST,
                    "Events need timestamp and attributes",
                )
                    .into_response();
            }
            events.push(json!({"tags": tags, "event": e}));
        }
    }
    s.events.extend(events);
    s.accepted.push(body);
    StatusCode::OK.into_response()
}

async fn logscale_hec(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = fake.0.lock().unwrap();
    let Ok(body) = decoded(&headers, &body) else {
        return reply(400, json!({"text":"Invalid data format","code":6}));
    };
    record(
        &mut s,
        "/api/v1/ingest/hec",
        &HashMap::new(),
        &headers,
        &body,
    );
    if let Some(f) = s.faults.pop_front() {
        return fault_reply(f);
    }
    if !bearer_ok(&s, &headers) {
        return reply(401, json!({"text":"Invalid token","code":4}));
    }
    let mut events = Vec::new();
    for item in serde_json::Deserializer::from_slice(&body).into_iter::<Value>() {
        let Ok(v) = item else {
            return reply(400, json!({"text":"Invalid data format","code":6}));
        };
        events.push(v);
    }
    s.events.extend(events);
    s.accepted.push(body);
    reply(200, json!({"text":"Success","code":0}))
}

/// The raw HEC endpoint: each line of the body is one event, read by the parser assigned to the
/// ingest token. Recorded as `{"token": …, "line": the line parsed as JSON}`, so a test sees which
/// token (which parser) each event came in with.
async fn logscale_hec_raw(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    let mut s = fake.0.lock().unwrap();
    let Ok(body) = decoded(&headers, &body) else {
        return reply(400, json!({"text":"Invalid data format","code":6}));
    };
    record(
        &mut s,
        "/api/v1/ingest/hec/raw",
        &HashMap::new(),
        &headers,
        &body,
    );
    if let Some(f) = s.faults.pop_front() {
        return fault_reply(f);
    }
    if !bearer_ok(&s, &headers) {
        return reply(401, json!({"text":"Invalid token","code":4}));
    }
    let token = header(&headers, "authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_string();
    let mut events = Vec::new();
    for line in body.split(|b| matches!(b, b'\n' | b'\r')) {
        if line.is_empty() {
            continue;
        }
        // The parsers of the Proofpoint package read JSON; a line that is not is a bad event.
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return reply(400, json!({"text":"Invalid data format","code":6}));
        };
        events.push(json!({"token": token, "line": v}));
    }
    if events.is_empty() {
        return reply(400, json!({"text":"No data","code":5}));
    }
    s.events.extend(events);
    s.accepted.push(body);
    reply(200, json!({"text":"Success","code":0}))
}

// ---------------------------------------------------------------- Azure

/// An Entra ID token endpoint (`/{tenant}/oauth2/v2.0/token`) and a Logs Ingestion data
/// collection endpoint on one address.
pub async fn azure(fake: &Fake) -> SocketAddr {
    let router = Router::new()
        .route("/:tenant/oauth2/v2.0/token", post(azure_token))
        .route(
            "/dataCollectionRules/:dcr/streams/:stream",
            post(azure_ingest),
        )
        .with_state(fake.clone());
    serve(router).await
}

fn form(body: &[u8]) -> HashMap<String, String> {
    fn unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (unescape(k), unescape(v)))
        .collect()
}

async fn azure_token(
    State(fake): State<Fake>,
    Path(_tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = fake.0.lock().unwrap();
    s.token_requests += 1;
    if header(&headers, "content-type") != Some("application/x-www-form-urlencoded") {
        return reply(
            400,
            json!({"error":"invalid_request","error_description":"AADSTS900144: The request body must contain the following parameter: 'grant_type'."}),
        );
    }
    let f = form(&body);
    if f.get("grant_type").map(String::as_str) != Some("client_credentials")
        || f.get("scope").map(String::as_str) != Some("https://monitor.azure.com//.default")
    {
        return reply(
            400,
            json!({"error":"invalid_scope","error_description":"AADSTS70011: The provided value for the input parameter 'scope' is not valid."}),
        );
    }
    if f.get("client_id") != Some(&s.client_id) {
        return reply(
            400,
            json!({"error":"unauthorized_client","error_description":"AADSTS700016: Application not found in the directory."}),
        );
    }
    if f.get("client_secret") != Some(&s.client_secret) {
        return reply(
            401,
            json!({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}),
        );
    }
    if let Some(f) = s.token_faults.pop_front() {
        return fault_reply(f);
    }
    let token = format!("eyJ0eXAi.token-{}", s.issued.len() + 1);
    let expires_in = s.expires_in;
    s.issued.push((
        token.clone(),
        Instant::now() + Duration::from_secs(expires_in),
    ));
    reply(
        200,
        json!({"token_type":"Bearer","expires_in":expires_in,"ext_expires_in":expires_in,"access_token":token}),
    )
}

async fn azure_ingest(
    State(fake): State<Fake>,
    Path((dcr, stream)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = fake.0.lock().unwrap();
    let azure_error = |status: u16, code: &str, message: &str| {
        reply(status, json!({"error":{"code":code,"message":message}}))
    };
    let raw = body;
    let body = decoded(&headers, &raw);
    record(
        &mut s,
        &format!("/dataCollectionRules/{dcr}/streams/{stream}"),
        &query,
        &headers,
        body.as_deref().unwrap_or(&raw),
    );
    let token = header(&headers, "authorization").and_then(|a| a.strip_prefix("Bearer "));
    let now = Instant::now();
    let valid = !s.refuse_all_tokens
        && token.is_some_and(|t| {
            !s.revoked.iter().any(|r| r == t)
                && s.issued.iter().any(|(i, exp)| i == t && *exp > now)
        });
    if !valid {
        s.unauthorized += 1;
        return azure_error(
            401,
            "InvalidToken",
            "The provided access token is expired or invalid.",
        );
    }
    if query.get("api-version").map(String::as_str) != Some("2023-01-01") {
        return azure_error(
            400,
            "InvalidApiVersion",
            "The api-version is missing or not supported.",
        );
    }
    if dcr != s.dcr {
        return azure_error(404, "NotFound", "Data collection rule not found.");
    }
    if !s.streams.contains(&stream) {
        return azure_error(
            400,
            "InvalidStream",
            "The stream is not declared in the data collection rule.",
        );
    }
    if header(&headers, "content-type") != Some("application/json") {
        return azure_error(
            415,
            "UnsupportedMediaType",
            "Content-Type must be application/json.",
        );
    }
    if header(&headers, "content-encoding") != Some("gzip") {
        // Not an API rule: the sink promises gzip, so the fake insists on it.
        return azure_error(400, "ExpectedGzip", "This test server expects gzip bodies.");
    }
    let Ok(body) = body else {
        return azure_error(400, "InvalidContentEncoding", "The body is not valid gzip.");
    };
    if body.len() > 1_000_000 {
        return azure_error(
            413,
            "ContentLengthLimitExceeded",
            "The request is larger than 1 MB.",
        );
    }
    if let Some(f) = s.faults.pop_front() {
        return fault_reply(f);
    }
    let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&body) else {
        return azure_error(400, "InvalidPayload", "The body must be a JSON array.");
    };
    if let Some(columns) = s.declared.get(&stream).cloned() {
        // A declared stream keeps its declared columns; the rest are dropped without an error,
        // as the Logs Ingestion API does.
        let mut kept = Vec::new();
        for item in items {
            let Value::Object(row) = item else {
                return azure_error(400, "InvalidPayload", "Each element must be an object.");
            };
            let mut out = serde_json::Map::new();
            for (k, v) in row {
                if columns.iter().any(|(c, _)| *c == k) {
                    out.insert(k, v);
                } else {
                    s.dropped_columns.push(format!("{stream}.{k}"));
                }
            }
            out.insert("_stream".into(), Value::String(stream.clone()));
            kept.push(Value::Object(out));
        }
        s.events.extend(kept);
        s.accepted.push(body);
        return StatusCode::NO_CONTENT.into_response();
    }
    for item in &items {
        for col in ["TimeGenerated", "Tenant", "EventType", "Event"] {
            if item.get(col).is_none() {
                return azure_error(400, "InvalidPayload", &format!("Missing column {col}."));
            }
        }
        let t = item["TimeGenerated"].as_str().unwrap_or("");
        if chrono::DateTime::parse_from_rfc3339(t).is_err() {
            return azure_error(400, "InvalidPayload", "TimeGenerated is not a datetime.");
        }
    }
    s.events.extend(items.into_iter().map(|mut v| {
        v["_stream"] = Value::String(stream.clone());
        v
    }));
    s.accepted.push(body);
    StatusCode::NO_CONTENT.into_response()
}

// ---------------------------------------------------------------- plain HTTP

/// A receiver for the generic HTTP sink on `/ingest`: checks `Authorization` against `valid`
/// (`Bearer T` or `Basic base64(user:pass)`), accepts NDJSON or a JSON array of envelopes.
pub async fn plain(fake: &Fake) -> SocketAddr {
    let router = Router::new()
        .route("/ingest", post(plain_ingest))
        .with_state(fake.clone());
    serve(router).await
}

async fn plain_ingest(State(fake): State<Fake>, headers: HeaderMap, body: Bytes) -> Response {
    use base64::Engine;
    let mut s = fake.0.lock().unwrap();
    let Ok(body) = decoded(&headers, &body) else {
        return (StatusCode::BAD_REQUEST, "bad gzip").into_response();
    };
    record(&mut s, "/ingest", &HashMap::new(), &headers, &body);
    if let Some(f) = s.faults.pop_front() {
        return fault_reply(f);
    }
    if !s.valid.is_empty() {
        let auth = header(&headers, "authorization").unwrap_or("");
        let ok = if let Some(t) = auth.strip_prefix("Bearer ") {
            s.valid.iter().any(|v| v == t)
        } else if let Some(b) = auth.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(b)
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .unwrap_or_default();
            s.valid.contains(&decoded)
        } else {
            false
        };
        if !ok {
            return (StatusCode::UNAUTHORIZED, "{\"error\":\"unauthorized\"}").into_response();
        }
    }
    let events: Vec<Value> = match header(&headers, "content-type") {
        Some("application/x-ndjson") => {
            match body
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .map(serde_json::from_slice)
                .collect::<Result<Vec<Value>, _>>()
            {
                Ok(v) => v,
                Err(_) => return (StatusCode::BAD_REQUEST, "bad ndjson").into_response(),
            }
        }
        Some("application/json") => match serde_json::from_slice::<Vec<Value>>(&body) {
            Ok(v) => v,
            Err(_) => return (StatusCode::BAD_REQUEST, "bad json array").into_response(),
        },
        _ => return (StatusCode::UNSUPPORTED_MEDIA_TYPE, "content type").into_response(),
    };
    s.events.extend(events);
    s.accepted.push(body);
    StatusCode::ACCEPTED.into_response()
}
