//! The HTTP sinks against local servers that speak each destination's protocol
//! (tests/support/fakes.rs): request format byte for byte, authentication, batching limits,
//! retries with and without `Retry-After`, permanent rejections that hold the checkpoint, Splunk
//! indexer acknowledgement and the Sentinel token lifecycle. Every sink is driven through the
//! `Sink` trait with a commit callback that counts its calls.
//!
//! One end-to-end test runs the real `App` against the built-in simulator with one tenant per
//! destination (and one whose destination rejects it).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::fakes::{self, Fake, Fault};
use tapfwd::event::{Batch, EventKind};
use tapfwd::sinks::{self, Sink, SinkConfig, SinkError};
use tapfwd::tap::split::{BatchBuilder, SplitLimits, Splitter};

/// A TAP SIEM response with every event kind, a multi-recipient message (same GUID, different
/// recipient and id), non-ASCII text, escapes and irregular whitespace.
const BODY: &str = r#"{
  "queryEndTime": "2026-01-01T01:00:00Z",
  "messagesDelivered": [
    {"GUID":"g-1","id":"a1","QID":"q1","messageTime":"2026-01-01T00:00:00.123Z","recipient":["ann@example.com"],"subject":"Rechnung f\u00fcr Sie \u2014 \"dringend\"","spamScore":0,"threatsInfoMap":[{"threatID":"t1","threatStatus":"active","classification":"phish","threatTime":"2026-01-01T00:00:05Z"}]},
    {"GUID":"g-1","id":"a2","QID":"q1","messageTime":"2026-01-01T00:00:00.123Z","recipient":["bob@example.com"],"subject":"Rechnung für Sie — \"dringend\"" ,  "spamScore" : 0}
  ],
  "messagesBlocked": [
    {"GUID":"g-2","messageTime":"2026-01-01T00:10:00Z","recipient":["eve@example.com"],"subject":"tab\there","modulesRun":["spam","urldefense"]}
  ],
  "clicksPermitted": [
    {"id":"c-1","GUID":"g-1","clickTime":"2026-01-01T00:20:30.5Z","url":"https://evil.example/x?a=1&b=2","recipient":"ann@example.com","campaignId":"camp-1","classification":"TOAD"}
  ],
  "clicksBlocked": [
    {"id":"c-2","GUID":"g-3","clickTime":"2026-01-01T00:30:00Z","url":"https://bad.example/","recipient":"bob@example.com","threatURL":"https://threatinsight.proofpoint.com/x"}
  ]
}"#;

fn batch_of(body: &str) -> Batch {
    let mut s = Splitter::new(SplitLimits::default());
    let mut b = BatchBuilder::new();
    s.feed(body.as_bytes(), &mut b).unwrap();
    s.finish().unwrap();
    b.take()
}

fn batch() -> Batch {
    batch_of(BODY)
}

/// `b` with threat enrichment for its events that have a threat id: what the enrichment step
/// puts beside them (`"threats":{id:summary}`), keyed by each event's start.
fn enriched(mut b: Batch) -> Batch {
    let mut map = std::collections::HashMap::new();
    for (meta, raw) in b.iter() {
        let v: Value = serde_json::from_slice(raw).unwrap();
        let id = v["threatID"]
            .as_str()
            .or_else(|| v["threatsInfoMap"][0]["threatID"].as_str())
            .or_else(|| v["threatsInfoMap"][0]["threatId"].as_str());
        if let Some(id) = id {
            let members = format!(
                r#""threats":{{"{id}":{{"id":"{id}","name":"Evil \"invoice\"","severity":4}}}}"#
            );
            map.insert(meta.start, bytes::Bytes::from(members));
        }
    }
    assert!(!map.is_empty(), "the batch has events with threat ids");
    b.enrichment = Some(std::sync::Arc::new(map));
    b
}

/// A response of `n` click events, each padded to about `pad` bytes.
fn clicks(n: usize, pad: usize) -> Batch {
    let events: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"id":"c-{i}","clickTime":"2026-01-01T00:00:{:02}Z","url":"https://x.example/{i}","pad":"{}"}}"#,
                i % 60,
                "p".repeat(pad)
            )
        })
        .collect();
    batch_of(&format!(
        r#"{{"queryEndTime":"2026-01-01T01:00:00Z","clicksPermitted":[{}]}}"#,
        events.join(",")
    ))
}

fn sink(name: &str, config: Value) -> Arc<dyn Sink> {
    let config: SinkConfig = serde_json::from_value(config).unwrap();
    config.validate().unwrap();
    sinks::build(name, &config, &tapfwd::secret::process_env).unwrap_or_else(|e| panic!("{e}"))
}

/// Delivers `batch` and returns the result with how often `commit` was called.
async fn deliver(sink: &dyn Sink, tenant: &str, batch: &Batch) -> (Result<(), SinkError>, usize) {
    let commits = AtomicUsize::new(0);
    let result = sink
        .deliver(
            tenant,
            batch,
            Box::new(|pos| {
                assert_eq!(pos, None);
                commits.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }),
        )
        .await;
    (result, commits.load(Ordering::SeqCst))
}

/// Quick retries so the suite stays fast.
fn fast_retry() -> Value {
    json!({"initial_backoff": "10ms", "max_backoff": "50ms", "max_time": "3s"})
}

fn raw_events(b: &Batch) -> Vec<(EventKind, Vec<u8>)> {
    b.iter().map(|(m, r)| (m.kind, r.to_vec())).collect()
}

// ------------------------------------------------------------------------------- Splunk HEC

async fn hec_server(ack: bool) -> (Fake, String) {
    let fake = Fake::default();
    fake.with(|s| {
        s.valid = vec!["hec-token-acme".into()];
        s.disabled = vec!["hec-token-old".into()];
        s.indexes = vec!["main".into(), "tap".into()];
        s.ack = ack;
    });
    let addr = fakes::splunk_hec(&fake).await;
    (fake, format!("http://{addr}"))
}

#[tokio::test]
async fn hec_sends_batch_format_with_raw_event_bytes_and_commits_once() {
    let (fake, url) = hec_server(false).await;
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","index":"tap","host":"collector-1","retry":fast_retry()}),
    );
    let b = batch();
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].headers["authorization"].to_str().unwrap(),
        "Splunk hec-token-acme"
    );
    // The body, byte for byte: one HEC event per raw event, raw bytes untouched.
    let mut expected = Vec::new();
    for (meta, raw) in b.iter() {
        let ms = meta.time_ms.unwrap();
        let sourcetype = "proofpoint_tap_siem";
        expected.extend_from_slice(
            format!(
                "{{\"time\":{}.{:03},\"host\":\"collector-1\",\"source\":\"tapfwd\",\"index\":\"tap\",\"sourcetype\":\"{sourcetype}\",\"fields\":{{\"tenant\":\"acme\",\"eventType\":\"{}\"}},\"event\":",
                ms / 1000,
                ms % 1000,
                meta.kind
            )
            .as_bytes(),
        );
        expected.extend_from_slice(raw);
        expected.extend_from_slice(b"}\n");
    }
    assert_eq!(
        String::from_utf8_lossy(&requests[0].body),
        String::from_utf8_lossy(&expected)
    );
    // The first event's time is its messageTime, with milliseconds.
    assert!(requests[0].body.starts_with(b"{\"time\":1767225600.123,"));
    // A raw event without newlines is exactly the substring of the API response.
    let second = r#"{"GUID":"g-1","id":"a2","QID":"q1","messageTime":"2026-01-01T00:00:00.123Z","recipient":["bob@example.com"],"subject":"Rechnung für Sie — \"dringend\"" ,  "spamScore" : 0}"#;
    assert!(String::from_utf8_lossy(&requests[0].body).contains(&format!("\"event\":{second}}}")));

    // Splunk parsed every event; fields and the event object came through.
    let events = fake.events();
    assert_eq!(events.len(), 5);
    assert_eq!(events[0]["fields"]["eventType"], "messagesDelivered");
    assert_eq!(events[0]["event"]["recipient"][0], "ann@example.com");
    assert_eq!(events[1]["event"]["recipient"][0], "bob@example.com");
    assert_eq!(events[4]["sourcetype"], "proofpoint_tap_siem");
}

#[tokio::test]
async fn hec_carries_enrichment_in_indexed_fields_and_the_event_byte_for_byte() {
    let (fake, url) = hec_server(false).await;
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","retry":fast_retry()}),
    );
    let b = enriched(batch());
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let events = fake.events();
    assert_eq!(events.len(), 5);
    let mut with = 0;
    for ((meta, raw), e) in b.iter().zip(&events) {
        // The event is the raw bytes: the enrichment is beside it, never inside.
        assert_eq!(e["event"], serde_json::from_slice::<Value>(raw).unwrap());
        match b.enrichment(meta) {
            Some(_) => {
                with += 1;
                let threats: Value =
                    serde_json::from_str(e["fields"]["threats"].as_str().unwrap()).unwrap();
                let id = threats.as_object().unwrap().keys().next().unwrap().clone();
                assert_eq!(threats[&id]["name"], "Evil \"invoice\"");
            }
            None => assert!(e["fields"].get("threats").is_none()),
        }
    }
    assert!(with >= 1);
}

#[tokio::test]
async fn hec_fake_refuses_nested_indexed_fields_as_splunk_does() {
    // The fake's rule the test above relies on: Splunk refuses an object inside `fields`.
    let (fake, url) = hec_server(false).await;
    let reply = reqwest::Client::new()
        .post(format!("{url}/services/collector/event"))
        .header("authorization", "Splunk hec-token-acme")
        .body(r#"{"event":{"a":1},"fields":{"threats":{"t":{}}}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let body: Value = serde_json::from_slice(&reply.bytes().await.unwrap()).unwrap();
    assert_eq!(body["code"], 15);
    assert!(fake.events().is_empty());
}

#[tokio::test]
async fn hec_bad_token_is_rejected_without_commit_and_without_leaking_it() {
    let (fake, url) = hec_server(false).await;
    let token = "wrong-token-d2f1c9e8";
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":token,"retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0, "a rejected batch must not be committed");
    assert!(matches!(err, SinkError::Rejected(_)), "{err:?}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains("splunk_hec sink `splunk`"), "{text}");
    assert!(text.contains("HTTP 403"), "{text}");
    assert!(
        text.contains("Invalid token") && text.contains("code 4"),
        "{text}"
    );
    // The fake echoes the token in its reply; the sink must scrub it.
    assert!(!text.contains(token), "token leaked: {text}");
    assert!(!format!("{err:?}").contains(token));
    assert_eq!(fake.requests().len(), 1, "a permanent error is not retried");
    assert!(fake.events().is_empty());
}

#[tokio::test]
async fn hec_disabled_token_and_incorrect_index_are_permanent() {
    let (fake, url) = hec_server(false).await;
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-old","retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let text = result.unwrap_err().to_string();
    assert_eq!(commits, 0);
    assert!(
        text.contains("HTTP 403") && text.contains("Token disabled (code 1)"),
        "{text}"
    );

    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","index":"nope","retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(err, SinkError::Rejected(_)));
    let text = err.to_string();
    assert!(
        text.contains("HTTP 400") && text.contains("Incorrect index (code 7)"),
        "{text}"
    );
    assert!(text.contains("invalid event number 0"), "{text}");
    assert_eq!(fake.requests().len(), 2);
    assert!(fake.events().is_empty());
}

#[tokio::test]
async fn hec_server_busy_is_retried_honouring_retry_after_then_delivered_once() {
    let (fake, url) = hec_server(false).await;
    fake.push_fault(Fault::new(503, r#"{"text":"Server is busy","code":9}"#).retry_after("1"));
    fake.push_fault(Fault::new(503, r#"{"text":"Server is busy","code":9}"#));
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","retry":fast_retry()}),
    );
    let b = batch();
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_secs(1),
        "Retry-After ignored: {gap:?}"
    );
    // No loss, no duplicates at the server.
    let got: Vec<_> = fake.events().iter().map(|e| e["event"].clone()).collect();
    let want: Vec<Value> = b
        .iter()
        .map(|(_, r)| serde_json::from_slice(r).unwrap())
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn retries_are_bounded_then_unavailable_without_commit() {
    let (fake, url) = hec_server(false).await;
    for _ in 0..1000 {
        fake.push_fault(Fault::new(503, r#"{"text":"Server is busy","code":9}"#));
    }
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme",
               "retry":{"initial_backoff":"10ms","max_backoff":"40ms","max_time":"300ms"}}),
    );
    let started = Instant::now();
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(err, SinkError::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("Server is busy (code 9)"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(fake.requests().len() >= 3);
    // A Retry-After longer than the budget ends the delivery at once.
    let (fake, url) = hec_server(false).await;
    fake.push_fault(Fault::new(429, "slow down").retry_after("3600"));
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    assert!(matches!(result, Err(SinkError::Unavailable(_))));
    assert_eq!(commits, 0);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn hec_batch_limits_split_requests_and_commit_once() {
    let (fake, url) = hec_server(false).await;
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme",
               "max_batch_events":3,"max_batch_bytes":4096,"retry":fast_retry()}),
    );
    // By events: 5 events in requests of 3.
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    result.unwrap();
    assert_eq!(commits, 1);
    assert_eq!(fake.requests().len(), 2);
    // By bytes: 20 events of about 1 KiB in requests of at most 4 KiB.
    let b = clicks(20, 1000);
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme",
               "max_batch_events":1000,"max_batch_bytes":4096,"retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    assert!(requests.len() >= 2 + 7, "{}", requests.len());
    assert!(requests.iter().all(|r| r.body.len() <= 4096));
    let ids: Vec<String> = fake.events()[5..]
        .iter()
        .map(|e| e["event"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, (0..20).map(|i| format!("c-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn hec_ack_polls_until_indexed_before_commit() {
    let (fake, url) = hec_server(true).await;
    fake.with(|s| s.ack_false_polls = 2);
    let channel = "8d0b9d3e-0a34-4f6c-9a4e-5c1b2f3a4d5e";
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","ack":true,"channel":channel,
               "ack_poll_interval":"10ms","max_batch_events":4,"retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests
        .iter()
        .all(|r| r.headers["x-splunk-request-channel"] == channel));
    fake.with(|s| {
        assert!(s.pending_acks.is_empty(), "every ack was confirmed");
        assert!(s.ack_polls >= 3, "{}", s.ack_polls);
    });
}

#[tokio::test]
async fn hec_token_with_ack_enabled_accepts_a_sink_that_does_not_wait() {
    // The channel is sent on every request, so an ack-enabled token does not answer code 10.
    let (fake, url) = hec_server(true).await;
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    result.unwrap();
    assert_eq!(commits, 1);
    assert_eq!(fake.events().len(), 5);
    fake.with(|s| assert_eq!(s.ack_polls, 0));
}

#[tokio::test]
async fn hec_ack_not_confirmed_in_time_holds_the_checkpoint() {
    let (fake, url) = hec_server(true).await;
    fake.with(|s| s.ack_false_polls = u32::MAX);
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","ack":true,
               "ack_poll_interval":"10ms","ack_timeout":"200ms","retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(err, SinkError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("not confirmed indexed"), "{err}");
    // ack = true against a token without acknowledgement is loud, not silent.
    let (_fake, url) = hec_server(false).await;
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","ack":true,"retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    assert_eq!(commits, 0);
    assert!(result.unwrap_err().to_string().contains("no ackId"));
}

#[tokio::test]
async fn hec_gzip_bodies_are_decoded_by_the_server() {
    let (fake, url) = hec_server(false).await;
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","gzip":true,
               "sourcetypes":{"clicksPermitted":"pps:click:permitted"},"retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    result.unwrap();
    assert_eq!(commits, 1);
    assert_eq!(fake.requests()[0].headers["content-encoding"], "gzip");
    let events = fake.events();
    assert_eq!(events.len(), 5);
    let click = events
        .iter()
        .find(|e| e["fields"]["eventType"] == "clicksPermitted")
        .unwrap();
    assert_eq!(click["sourcetype"], "pps:click:permitted");
}

/// Every form of a HEC URL that Splunk's documentation and consoles hand out.
const HEC_URL_FORMS: [&str; 6] = [
    "",
    "/",
    "/services/collector",
    "/services/collector/",
    "/services/collector/event",
    "/services/collector/event/",
];

#[tokio::test]
async fn hec_url_may_be_the_base_or_the_endpoint_splunk_documents() {
    for form in HEC_URL_FORMS {
        let (fake, url) = hec_server(true).await;
        let s = sink(
            "splunk",
            json!({"type":"splunk_hec","url":format!("{url}{form}"),"token":"hec-token-acme",
                   "ack":true,"ack_poll_interval":"10ms","retry":fast_retry()}),
        );
        let (result, commits) = deliver(&*s, "acme", &batch()).await;
        result.unwrap_or_else(|e| panic!("url {url}{form}: {e}"));
        assert_eq!(commits, 1, "{form}");
        let paths: Vec<_> = fake.requests().iter().map(|r| r.path.clone()).collect();
        assert_eq!(paths, ["/services/collector/event"], "{form}");
        assert_eq!(fake.events().len(), 5, "{form}");
        assert!(fake.with(|s| s.ack_polls) >= 1, "{form}: acks polled");
    }
}

#[test]
fn hec_url_with_another_path_is_refused_naming_the_key() {
    for path in [
        "/services/collector/raw",
        "/services/collector/event/services/collector/event",
        "/splunk",
        "/services/collector?channel=0f8e3b1c-0000-4000-8000-000000000000",
    ] {
        let config: SinkConfig = serde_json::from_value(json!({
            "type": "splunk_hec", "url": format!("https://splunk:8088{path}"), "token": "t"
        }))
        .unwrap();
        let e = config.validate().unwrap_err();
        assert!(
            e.starts_with("url: `https://splunk:8088") && e.contains("not a HEC endpoint"),
            "{path}: {e}"
        );
    }
}

/// `tapfwd check` on the binary: ok for each HEC URL form, the key named for a bad path.
#[test]
fn check_accepts_every_hec_url_form_and_names_the_key_of_a_bad_path() {
    let dir = tempfile::tempdir().unwrap();
    let config = |url: &str| {
        format!(
            "state_dir = \"s\"\n[sinks.splunk]\ntype = \"splunk_hec\"\nurl = \"{url}\"\ntoken = \"t\"\n\
             [tenants.acme]\nprincipal = \"p\"\nsecret = \"x\"\nsinks = [\"splunk\"]\n"
        )
    };
    let check = |text: String| {
        let path = dir.path().join("tapfwd.toml");
        std::fs::write(&path, text).unwrap();
        support::daemon::tapfwd()
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    for form in HEC_URL_FORMS {
        let out = check(config(&format!(
            "https://http-inputs-acme.splunkcloud.com{form}"
        )));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("config ok"),
            "{form}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = check(config("https://splunk:8088/services/collector/raw"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("config key `sinks.splunk.url`: `https://splunk:8088/services/collector/raw` has the path `/services/collector/raw`, which is not a HEC endpoint"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_404_is_reported_as_a_wrong_url_path_and_not_retried() {
    // The generic sink pointed at HEC's raw endpoint path that this collector does not serve.
    let (fake, url) = hec_server(false).await;
    let s = sink(
        "hook",
        json!({"type":"http","url":format!("{url}/services/collector/nope"),"retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(err, SinkError::Rejected(_)), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("http sink `hook`: POST {url}/services/collector/nope: HTTP 404 Not Found: the URL's path is wrong for this sink, a configuration error (The requested URL was not found on this server. (code 404))")
    );
    assert_eq!(fake.requests().len(), 1, "a 404 is not retried");
    // LogScale below a path prefix that its cluster does not have.
    let (fake, url) = logscale_server().await;
    let s = sink(
        "logscale",
        json!({"type":"logscale","url":format!("{url}/humio"),"token":"ingest-token-acme","retry":fast_retry()}),
    );
    let err = deliver(&*s, "acme", &batch())
        .await
        .0
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/humio/api/v1/ingest/humio-structured: HTTP 404 Not Found: the URL's path is wrong for this sink"),
        "{err}"
    );
    assert!(fake.requests().is_empty());
}

// ------------------------------------------------------------------------------- LogScale

async fn logscale_server() -> (Fake, String) {
    let fake = Fake::default();
    fake.with(|s| s.valid = vec!["ingest-token-acme".into()]);
    let addr = fakes::logscale(&fake).await;
    (fake, format!("http://{addr}"))
}

/// Every form of a LogScale URL its docs and console hand out: the base, or an ingest endpoint
/// (which then chooses the API), with or without a trailing slash.
#[tokio::test]
async fn logscale_url_may_be_the_base_or_the_ingest_endpoint_its_docs_give() {
    for (form, api, path) in [
        ("", None, "/api/v1/ingest/humio-structured"),
        ("/", Some("hec"), "/api/v1/ingest/hec"),
        ("/api/v1/ingest/hec", None, "/api/v1/ingest/hec"),
        ("/api/v1/ingest/hec/", Some("hec"), "/api/v1/ingest/hec"),
        (
            "/api/v1/ingest/humio-structured",
            None,
            "/api/v1/ingest/humio-structured",
        ),
    ] {
        let (fake, url) = logscale_server().await;
        let mut config = json!({"type":"logscale","url":format!("{url}{form}"),
                                "token":"ingest-token-acme","retry":fast_retry()});
        if let Some(api) = api {
            config["api"] = json!(api);
        }
        let s = sink("humio", config);
        let (result, commits) = deliver(&*s, "acme", &batch()).await;
        result.unwrap_or_else(|e| panic!("url {url}{form}: {e}"));
        assert_eq!(commits, 1, "{form}");
        assert!(
            fake.requests().iter().all(|r| r.path == path),
            "{form}: {:?}",
            fake.requests().iter().map(|r| &r.path).collect::<Vec<_>>()
        );
        assert_eq!(fake.events().len(), 5, "{form}");
    }
    // An endpoint that disagrees with `api`, or one this sink does not speak, is refused.
    for (url, api) in [
        (
            "https://cloud.us.humio.com/api/v1/ingest/hec",
            Some("structured"),
        ),
        ("https://cloud.us.humio.com/api/v1/ingest/hec/raw", None),
        ("https://cloud.us.humio.com/api/v1/ingest/raw", None),
    ] {
        let mut v = json!({"type":"logscale","url":url,"token":"t"});
        if let Some(api) = api {
            v["api"] = json!(api);
        }
        let config: SinkConfig = serde_json::from_value(v).unwrap();
        let e = config.validate().unwrap_err();
        assert!(
            e.starts_with("url: `https://cloud.us.humio.com"),
            "{url}: {e}"
        );
    }
}

#[tokio::test]
async fn logscale_structured_sends_tags_and_raw_attributes() {
    let (fake, url) = logscale_server().await;
    let s = sink(
        "humio",
        json!({"type":"logscale","url":url,"token":"ingest-token-acme","retry":fast_retry()}),
    );
    let b = batch();
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    // One request per event type present.
    assert_eq!(requests.len(), 4);
    assert!(requests
        .iter()
        .all(|r| r.headers["authorization"] == "Bearer ingest-token-acme"));
    let raws = raw_events(&b);
    let delivered: Vec<_> = raws
        .iter()
        .filter(|(k, _)| *k == EventKind::MessagesDelivered)
        .map(|(_, r)| r.clone())
        .collect();
    let mut expected =
        br#"[{"tags":{"tenant":"acme","eventType":"messagesDelivered"},"events":[{"timestamp":"2026-01-01T00:00:00.123Z","attributes":"#.to_vec();
    expected.extend_from_slice(&delivered[0]);
    expected.extend_from_slice(br#"},{"timestamp":"2026-01-01T00:00:00.123Z","attributes":"#);
    expected.extend_from_slice(&delivered[1]);
    expected.extend_from_slice(b"}]}]");
    let body = requests
        .iter()
        .find(|r| String::from_utf8_lossy(&r.body).contains("messagesDelivered"))
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&body.body),
        String::from_utf8_lossy(&expected)
    );
    let events = fake.events();
    assert_eq!(events.len(), 5);
    let click = events
        .iter()
        .find(|e| e["tags"]["eventType"] == "clicksPermitted")
        .unwrap();
    assert_eq!(click["tags"]["tenant"], "acme");
    assert_eq!(click["event"]["timestamp"], "2026-01-01T00:20:30.500Z");
    assert_eq!(click["event"]["attributes"]["classification"], "TOAD");
}

#[tokio::test]
async fn logscale_hec_api_with_gzip_and_429_recovery() {
    let (fake, url) = logscale_server().await;
    fake.push_fault(Fault::new(429, "Too many requests"));
    let s = sink(
        "humio",
        json!({"type":"logscale","api":"hec","url":url,"token":"ingest-token-acme","gzip":true,"retry":fast_retry()}),
    );
    let b = batch();
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    assert_eq!(requests.len(), 2, "one 429, one success");
    assert_eq!(requests[1].path, "/api/v1/ingest/hec");
    assert_eq!(requests[1].headers["content-encoding"], "gzip");
    let events = fake.events();
    assert_eq!(events.len(), 5, "no duplicates after the retry");
    assert_eq!(events[0]["fields"]["tenant"], "acme");
    assert_eq!(events[0]["fields"]["eventType"], "messagesDelivered");
    assert_eq!(events[0]["time"].as_f64().unwrap(), 1767225600.123);
    let mut first = b"{\"time\":1767225600.123,\"fields\":{\"tenant\":\"acme\",\"eventType\":\"messagesDelivered\"},\"event\":".to_vec();
    first.extend_from_slice(&raw_events(&b)[0].1);
    first.extend_from_slice(b"}\n");
    assert!(requests[1].body.starts_with(&first));
}

#[tokio::test]
async fn logscale_carries_enrichment_in_hec_fields_and_not_in_structured_attributes() {
    let (fake, url) = logscale_server().await;
    let b = enriched(batch());
    let hec = sink(
        "humio",
        json!({"type":"logscale","api":"hec","url":url,"token":"ingest-token-acme","retry":fast_retry()}),
    );
    deliver(&*hec, "acme", &b).await.0.unwrap();
    let events = fake.events();
    assert_eq!(events.len(), 5);
    let carried = events
        .iter()
        .filter(|e| {
            e["fields"]["threats"]
                .as_str()
                .is_some_and(|t| t.contains("Evil"))
        })
        .count();
    assert_eq!(
        carried,
        b.iter().filter(|(m, _)| b.enrichment(m).is_some()).count()
    );

    // The structured API has no place beside the attributes (tags must stay a bounded set), so
    // the event goes as it is, unchanged.
    let (fake, url) = logscale_server().await;
    let structured = sink(
        "humio",
        json!({"type":"logscale","url":url,"token":"ingest-token-acme","retry":fast_retry()}),
    );
    deliver(&*structured, "acme", &b).await.0.unwrap();
    for e in fake.events() {
        assert!(e["event"]["attributes"].get("threats").is_none(), "{e}");
        assert_eq!(e["tags"].as_object().unwrap().len(), 2);
    }
}

#[tokio::test]
async fn http_sink_envelopes_carry_enrichment_after_the_event() {
    let fake = Fake::default();
    let addr = fakes::plain(&fake).await;
    let s = sink(
        "siem",
        json!({"type":"http","url":format!("http://{addr}/ingest"),"retry":fast_retry()}),
    );
    let b = enriched(batch());
    deliver(&*s, "acme", &b).await.0.unwrap();
    let body = fake.requests().last().unwrap().body.clone();
    let lines: Vec<&[u8]> = body
        .split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), b.len());
    for ((meta, raw), line) in b.iter().zip(lines) {
        let mut want = Vec::new();
        tapfwd::sinks::encode::write_envelope_with(
            &mut want,
            "acme",
            meta.kind,
            raw,
            tapfwd::sinks::encode::Beside::of(&b, meta),
        );
        assert_eq!(line, &want[..]);
        let v: Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["threats"].is_object(), b.enrichment(meta).is_some());
    }
}

#[tokio::test]
async fn logscale_bad_token_is_permanent_and_not_leaked() {
    let (fake, url) = logscale_server().await;
    let s = sink(
        "humio",
        json!({"type":"logscale","url":url,"token":"revoked-token-77aa","retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(err, SinkError::Rejected(_)));
    let text = err.to_string();
    assert!(
        text.contains("logscale sink `humio`") && text.contains("HTTP 401"),
        "{text}"
    );
    assert!(text.contains("ingest token is not valid"), "{text}");
    assert!(!text.contains("revoked-token-77aa"));
    assert_eq!(fake.requests().len(), 1);
}

// ------------------------------------------------------------------------------- Sentinel

const DCR: &str = "dcr-00112233445566778899aabbccddeeff";

async fn azure_server(expires_in: u64) -> (Fake, String) {
    let fake = Fake::default();
    fake.with(|s| {
        s.client_id = "app-1234".into();
        s.client_secret = "s3cr3t~value+/=".into();
        s.expires_in = expires_in;
        s.dcr = DCR.into();
        s.streams = vec!["Custom-ProofpointTAP".into(), "Custom-TapClicks".into()];
    });
    let addr = fakes::azure(&fake).await;
    (fake, format!("http://{addr}"))
}

fn sentinel_config(url: &str, extra: Value) -> Value {
    let mut c = json!({
        "type": "sentinel",
        "dce": url,
        "dcr_immutable_id": DCR,
        "stream_name": "Custom-ProofpointTAP",
        "directory_tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "app-1234",
        "client_secret": "s3cr3t~value+/=",
        "authority": url,
        "retry": fast_retry(),
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// What a new user pastes from Azure's portal and REST examples: each mistake that could never
/// deliver is refused naming its key, with the value to give; the endpoint with a trailing slash
/// is fine.
#[test]
fn sentinel_pasted_values_that_cannot_deliver_are_refused_naming_the_key() {
    let base = "https://tapfwd-dce-a1b2.westeurope-1.ingest.monitor.azure.com";
    let ok = |extra: Value| {
        let config: SinkConfig = serde_json::from_value(sentinel_config(base, extra)).unwrap();
        config.validate()
    };
    ok(json!({})).unwrap();
    ok(json!({"dce": format!("{base}/")})).unwrap();
    for (extra, says) in [
        (
            json!({"dce": format!("{base}/dataCollectionRules/{DCR}/streams/Custom-ProofpointTAP?api-version=2023-01-01")}),
            "dce: `https://tapfwd-dce-a1b2.westeurope-1.ingest.monitor.azure.com/dataCollectionRules/",
        ),
        (json!({"dce": format!("{base}/ingest")}), "dce: "),
        (
            json!({"dcr_immutable_id": "00112233445566778899aabbccddeeff"}),
            "dcr_immutable_id: `00112233445566778899aabbccddeeff` is not a DCR immutable id",
        ),
        (
            json!({"stream_name": "ProofpointTAP_CL"}),
            "stream_name: `ProofpointTAP_CL` is not a DCR stream name",
        ),
        (
            json!({"streams": {"clicksPermitted": "TapClicks_CL"}}),
            "streams.clicksPermitted: `TapClicks_CL`",
        ),
    ] {
        let e = ok(extra.clone()).unwrap_err();
        assert!(e.starts_with(says), "{extra}: {e}");
        if says.starts_with("dce") {
            assert!(e.contains(&format!("(`{base}`)")), "the value to give: {e}");
        }
    }
}

#[tokio::test]
async fn sentinel_posts_gzip_json_array_to_each_stream_with_one_cached_token() {
    let (fake, url) = azure_server(3600).await;
    let s = sink(
        "sentinel",
        sentinel_config(
            &url,
            json!({"streams":{"clicksPermitted":"Custom-TapClicks","clicksBlocked":"Custom-TapClicks"}}),
        ),
    );
    let b = batch();
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let (result, commits) = deliver(&*s, "globex", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    fake.with(|s| assert_eq!(s.token_requests, 1, "the token is cached"));

    let requests = fake.requests();
    assert_eq!(requests.len(), 4, "two streams, two deliveries");
    assert_eq!(
        requests[0].path,
        format!("/dataCollectionRules/{DCR}/streams/Custom-ProofpointTAP")
    );
    assert_eq!(
        requests[1].path,
        format!("/dataCollectionRules/{DCR}/streams/Custom-TapClicks")
    );
    assert!(requests[0].query.contains("2023-01-01"));
    assert_eq!(requests[0].headers["content-encoding"], "gzip");
    assert_eq!(
        requests[0].headers["authorization"],
        "Bearer eyJ0eXAi.token-1"
    );
    // The first element byte for byte.
    let raws = raw_events(&b);
    let mut first = br#"[{"TimeGenerated":"2026-01-01T00:00:00.123Z","Tenant":"acme","EventType":"messagesDelivered","Event":"#.to_vec();
    first.extend_from_slice(&raws[0].1);
    first.extend_from_slice(b"},");
    assert!(
        requests[0].body.starts_with(&first),
        "{}",
        String::from_utf8_lossy(&requests[0].body)
    );
    let events = fake.events();
    assert_eq!(events.len(), 10);
    let clicks: Vec<_> = events
        .iter()
        .filter(|e| e["_stream"] == "Custom-TapClicks")
        .collect();
    assert_eq!(clicks.len(), 4);
    assert!(clicks
        .iter()
        .all(|e| e["EventType"].as_str().unwrap().starts_with("clicks")));
    assert_eq!(
        events[0]["Event"]["subject"],
        "Rechnung für Sie — \"dringend\""
    );
}

#[tokio::test]
async fn sentinel_splits_under_the_1mb_limit_and_commits_once() {
    let (fake, url) = azure_server(3600).await;
    let s = sink("sentinel", sentinel_config(&url, json!({})));
    let b = clicks(30, 50_000);
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    assert!(requests.len() >= 2, "{}", requests.len());
    assert!(requests.iter().all(|r| r.body.len() <= 1_000_000));
    let ids: Vec<_> = fake
        .events()
        .iter()
        .map(|e| e["Event"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, (0..30).map(|i| format!("c-{i}")).collect::<Vec<_>>());
}

#[tokio::test]
async fn sentinel_event_over_the_limit_fails_the_batch_loudly() {
    let (fake, url) = azure_server(3600).await;
    let s = sink("sentinel", sentinel_config(&url, json!({})));
    let b = clicks(1, 1_100_000);
    let (result, commits) = deliver(&*s, "acme", &b).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(err, SinkError::Rejected(_)));
    let text = err.to_string();
    assert!(
        text.contains("clicksPermitted") && text.contains("1000000"),
        "{text}"
    );
    assert!(fake.requests().is_empty());
    // Two large events that fit together go in one request.
    let (result, commits) = deliver(&*s, "acme", &clicks(2, 400_000)).await;
    result.unwrap();
    assert_eq!(commits, 1);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn sentinel_fetches_a_new_token_when_the_old_one_expires_mid_run() {
    // Tokens live 2 s; the sink replaces them after 1 s (half their life).
    let (fake, url) = azure_server(2).await;
    let s = sink("sentinel", sentinel_config(&url, json!({})));
    let b = batch();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut deliveries = 0;
    while fake.with(|s| s.token_requests) < 2 {
        assert!(Instant::now() < deadline, "no new token was fetched");
        let (result, commits) = deliver(&*s, "acme", &b).await;
        result.unwrap();
        assert_eq!(commits, 1);
        deliveries += 1;
        tokio::time::sleep(Duration::from_millis(100)).await; // pacing, not synchronisation
    }
    let (result, _) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    deliveries += 1;
    fake.with(|s| {
        assert_eq!(
            s.unauthorized, 0,
            "the token was replaced before it expired"
        );
        assert_eq!(s.events.len(), 5 * deliveries);
    });
    let tokens: std::collections::BTreeSet<_> = fake
        .requests()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert!(tokens.len() >= 2, "{tokens:?}");
}

#[tokio::test]
async fn sentinel_refreshes_a_stale_token_once_on_401() {
    let (fake, url) = azure_server(3600).await;
    let s = sink("sentinel", sentinel_config(&url, json!({})));
    let b = batch();
    deliver(&*s, "acme", &b).await.0.unwrap();
    // The directory revokes the token the sink has cached.
    fake.with(|s| s.revoked.push("eyJ0eXAi.token-1".into()));
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    fake.with(|s| {
        assert_eq!(s.token_requests, 2);
        assert_eq!(s.unauthorized, 1);
        assert_eq!(s.events.len(), 10);
    });
    // A directory whose tokens the DCE never accepts: one refresh, then permanent.
    fake.with(|s| s.refuse_all_tokens = true);
    let (result, commits) = deliver(&*s, "acme", &b).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(err, SinkError::Rejected(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("HTTP 401") && text.contains("InvalidToken"),
        "{text}"
    );
    assert!(!text.contains("eyJ0eXAi"), "token leaked: {text}");
    fake.with(|s| {
        assert_eq!(s.token_requests, 3);
        assert_eq!(s.unauthorized, 3);
    });
}

#[tokio::test]
async fn sentinel_bad_client_secret_is_permanent_and_not_leaked() {
    let (fake, url) = azure_server(3600).await;
    let s = sink(
        "sentinel",
        sentinel_config(&url, json!({"client_secret": "not-the-secret-9876"})),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(err, SinkError::Rejected(_)));
    let text = err.to_string();
    assert!(text.contains("AADSTS7000215"), "{text}");
    assert!(!text.contains("not-the-secret-9876"));
    assert!(fake.requests().is_empty(), "nothing sent without a token");
}

#[tokio::test]
async fn sentinel_429_with_retry_after_and_503_recover_without_duplicates() {
    let (fake, url) = azure_server(3600).await;
    fake.push_fault(
        Fault::new(
            429,
            r#"{"error":{"code":"TooManyRequests","message":"slow"}}"#,
        )
        .retry_after("1"),
    );
    fake.push_fault(Fault::new(503, "unavailable"));
    fake.with(|s| {
        s.token_faults
            .push_back(Fault::new(503, r#"{"error":"temporarily_unavailable"}"#))
    });
    let s = sink("sentinel", sentinel_config(&url, json!({})));
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert!(requests[1].at - requests[0].at >= Duration::from_secs(1));
    assert_eq!(fake.events().len(), 5);
    fake.with(|s| assert_eq!(s.token_requests, 2, "the token endpoint's 503 was retried"));
    // Unknown stream: permanent.
    let s = sink(
        "sentinel",
        sentinel_config(&url, json!({"stream_name": "Custom-Nope"})),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    assert_eq!(commits, 0);
    assert!(result.unwrap_err().to_string().contains("InvalidStream"));
}

// ------------------------------------------------------------------------------- generic HTTP

async fn plain_server(valid: &[&str]) -> (Fake, String) {
    let fake = Fake::default();
    fake.with(|s| s.valid = valid.iter().map(|v| v.to_string()).collect());
    let addr = fakes::plain(&fake).await;
    (fake, format!("http://{addr}/ingest"))
}

#[tokio::test]
async fn http_ndjson_envelopes_carry_raw_bytes_with_bearer_auth_and_headers() {
    let (fake, url) = plain_server(&["bearer-xyz-123"]).await;
    let s = sink(
        "hook",
        json!({"type":"http","url":url,"auth":{"strategy":"bearer","token":"bearer-xyz-123"},
               "headers":{"X-Source":"tapfwd"},"retry":fast_retry()}),
    );
    let b = batch();
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].headers["x-source"], "tapfwd");
    assert_eq!(requests[0].headers["content-type"], "application/x-ndjson");
    let mut expected = Vec::new();
    for (meta, raw) in b.iter() {
        tapfwd::sinks::encode::write_envelope(&mut expected, "acme", meta.kind, raw);
        expected.push(b'\n');
    }
    assert_eq!(requests[0].body, expected);
    assert!(String::from_utf8_lossy(&expected).starts_with(
        r#"{"tenant":"acme","eventType":"messagesDelivered","event":{"GUID":"g-1","id":"a1""#
    ));
    assert_eq!(fake.events().len(), 5);
}

#[tokio::test]
async fn http_json_array_with_basic_auth_and_gzip_split_by_events() {
    let (fake, url) = plain_server(&["shipper:pa55:word"]).await;
    let s = sink(
        "hook",
        json!({"type":"http","url":url,"format":"json_array","gzip":true,"max_batch_events":4,
               "auth":{"strategy":"basic","user":"shipper","password":"pa55:word"},"retry":fast_retry()}),
    );
    fake.push_fault(Fault::new(408, "request timeout"));
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    assert_eq!(requests.len(), 3, "a 408, then 4 + 1 events");
    assert_eq!(requests[1].headers["content-type"], "application/json");
    assert_eq!(requests[1].headers["content-encoding"], "gzip");
    let events = fake.events();
    assert_eq!(events.len(), 5);
    assert_eq!(events[4]["eventType"], "clicksBlocked");
    assert_eq!(events[4]["tenant"], "acme");
}

#[tokio::test]
async fn http_permanent_4xx_holds_the_checkpoint_and_names_the_sink() {
    let (fake, url) = plain_server(&["right"]).await;
    let s = sink(
        "hook",
        json!({"type":"http","url":url,"auth":{"strategy":"bearer","token":"wrong-bearer-55"},"retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(err, SinkError::Rejected(_)));
    let text = err.to_string();
    assert!(
        text.contains("http sink `hook`")
            && text.contains("HTTP 401")
            && text.contains("unauthorized"),
        "{text}"
    );
    assert!(!text.contains("wrong-bearer-55"));
    assert_eq!(fake.requests().len(), 1);
    // 501 is permanent too; a refused connection is retryable.
    fake.push_fault(Fault::new(501, "not implemented"));
    let s = sink(
        "hook",
        json!({"type":"http","url":url,"retry":fast_retry()}),
    );
    assert!(matches!(
        deliver(&*s, "acme", &batch()).await.0,
        Err(SinkError::Rejected(_))
    ));
    let s = sink(
        "hook",
        json!({"type":"http","url":"http://127.0.0.1:1/ingest",
               "retry":{"initial_backoff":"10ms","max_backoff":"20ms","max_time":"100ms"}}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    assert!(
        matches!(result, Err(SinkError::Unavailable(_))),
        "{result:?}"
    );
    assert_eq!(commits, 0);
}

// ------------------------------------------------------------------------------- config

#[test]
fn msp_example_config_loads_and_validates() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/msp-example.toml"
    ))
    .unwrap();
    let config = tapfwd::Config::from_toml_with_env(&text, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<_> = config.sinks.values().map(|s| s.kind()).collect();
    for kind in ["splunk_hec", "sentinel", "logscale", "http"] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
}

#[test]
fn sink_config_errors_name_the_problem_and_refuse_unknown_keys() {
    let bad = |v: Value| -> String {
        match serde_json::from_value::<SinkConfig>(v) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err(),
        }
    };
    let e = bad(json!({"type":"splunk_hec","url":"https://s:8088","token":"t","tokn":"x"}));
    assert!(e.contains("tokn"), "{e}");
    let e = bad(json!({"type":"splunk_hec","url":"https://s:8088"}));
    assert!(
        e.contains("exactly one of token, token_env, token_file"),
        "{e}"
    );
    let e = bad(json!({"type":"splunk_hec","url":"https://u:p@s:8088","token":"t"}));
    assert!(e.contains("credentials") && !e.contains("u:p"), "{e}");
    let e = bad(
        json!({"type":"splunk_hec","url":"https://s","token":"t","sourcetypes":{"clicks":"x"}}),
    );
    assert!(e.contains("not an event type"), "{e}");
    let e = bad(
        json!({"type":"sentinel","dce":"https://d","dcr_immutable_id":"dcr-1","stream_name":"Custom-X",
        "directory_tenant_id":"t","client_id":"c","client_secret":"s","max_batch_bytes":2_000_000}),
    );
    assert!(e.contains("1000000"), "{e}");
    let e = bad(
        json!({"type":"http","url":"https://h","auth":{"strategy":"bearer","token":"a","token_env":"B"}}),
    );
    assert!(e.contains("found 2"), "{e}");
    let e = bad(json!({"type":"http","url":"https://h","headers":{"Authorization":"x"}}));
    assert!(e.contains("set by the sink"), "{e}");
    let e = bad(json!({"type":"logscale","url":"https://h","token":"t","api":"raw"}));
    assert!(e.contains("raw"), "{e}");
}

#[test]
fn secrets_come_from_env_or_file_and_errors_name_the_key() {
    use tapfwd::sinks::splunk_hec::{SplunkHecConfig, SplunkHecSink};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-file\n").unwrap();
    let c: SplunkHecConfig =
        serde_json::from_value(json!({"url":"https://s:8088","token_file":file})).unwrap();
    SplunkHecSink::new("splunk", &c, &|_| None).unwrap();
    let c: SplunkHecConfig =
        serde_json::from_value(json!({"url":"https://s:8088","token_env":"ACME_HEC"})).unwrap();
    SplunkHecSink::new("splunk", &c, &|k| (k == "ACME_HEC").then(|| "v".into())).unwrap();
    let e = SplunkHecSink::new("splunk", &c, &|_| None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("sinks.splunk.token_env") && e.contains("ACME_HEC is not set"),
        "{e}"
    );
}

#[test]
fn sentinel_dcr_template_declares_the_columns_the_sink_sends() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/sentinel/azuredeploy.json"
    ))
    .unwrap();
    let t: Value = serde_json::from_str(&text).unwrap();
    let dcr = t["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Microsoft.Insights/dataCollectionRules")
        .unwrap();
    let decl = dcr["properties"]["streamDeclarations"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap();
    let columns: Vec<(String, String)> = decl["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["type"].as_str().unwrap().into(),
            )
        })
        .collect();
    let want = [
        ("TimeGenerated", "datetime"),
        ("Tenant", "string"),
        ("EventType", "string"),
        ("Customer", "string"),
        ("Event", "dynamic"),
        ("Enrichment", "dynamic"),
    ];
    assert_eq!(
        columns,
        want.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        t["outputs"]["stream_name"]["value"],
        "[variables('streamName')]"
    );
    assert_eq!(t["variables"]["streamName"], "Custom-ProofpointTAP");
}

/// A message and a click of each kind with every field the ProofPointTap solution's DCR has a
/// column for, as the TAP SIEM API sends them (`completelyRewritten` is a string there).
const FULL_BODY: &str = r#"{"queryEndTime":"2026-01-01T01:00:00Z",
"messagesDelivered":[{"GUID":"g-10","QID":"r2FNwRHF004109","ccAddresses":["bruce.wayne@university.example"],"cluster":"pharmtech_hosted","completelyRewritten":"true","fromAddress":["badguy@evil.example"],"headerFrom":"\"A. Badguy\" <badguy@evil.example>","headerReplyTo":"badguy@evil.example","id":"m-10","impostorScore":0,"malwareScore":100,"messageID":"<20160624211145.62086.mail@evil.example>","messageParts":[{"contentType":"text/plain","disposition":"inline","filename":"text.txt","md5":"008c5926ca861023c1d2a36653fd88e2","oContentType":"text/plain","sandboxStatus":"unsupported","sha256":"85738f8f9a7f1b04b5329c590ebcb9e425925c6d0984089c43a022de4f19c281"}],"messageSize":2048,"messageTime":"2026-01-01T00:00:00.123Z","modulesRun":["pdr","sandbox","spam","urldefense"],"phishScore":46,"policyRoutes":["default_inbound","executives"],"quarantineFolder":"Attachment Defense","quarantineRule":"module.sandbox.threat","recipient":["clark.kent@pharmtech.example"],"replyToAddress":["null@pharmtech.example"],"sender":"e99d7ed5580193f36a51f597bc2c0210@evil.example","senderIP":"192.0.2.255","spamScore":4,"subject":"Please find a totally safe invoice attached.","threatsInfoMap":[{"campaignID":"46e01b8a-c899-404d-bcd9-189bb393d1a7","classification":"MALWARE","threat":"2fab740f143fc1aa4c1cd0146d334c5593b1428f6d062b2c406e5efe8abe95ca","threatId":"2fab740f143fc1aa4c1cd0146d334c5593b1428f6d062b2c406e5efe8abe95ca","threatStatus":"active","threatTime":"2026-01-01T00:00:05Z","threatType":"ATTACHMENT","threatUrl":"https://threatinsight.proofpoint.com/#/x"}],"toAddresses":["clark.kent@pharmtech.example"],"xmailer":"Spambot v2.5"}],
"messagesBlocked":[{"GUID":"g-11","QID":"r2FNwRHF004110","ccAddresses":[],"cluster":"pharmtech_hosted","completelyRewritten":"false","fromAddress":["spam@evil.example"],"headerFrom":"spam@evil.example","headerReplyTo":"spam@evil.example","id":"m-11","impostorScore":12,"malwareScore":0,"messageID":"<x@evil.example>","messageParts":[],"messageSize":512,"messageTime":"2026-01-01T00:10:00Z","modulesRun":["spam"],"phishScore":0,"policyRoutes":["default_inbound"],"quarantineFolder":"Spam","quarantineRule":"spam","recipient":["eve@pharmtech.example"],"replyToAddress":[],"sender":"spam@evil.example","senderIP":"198.51.100.7","spamScore":100,"subject":"Cheap","threatsInfoMap":[],"toAddresses":["eve@pharmtech.example"],"xmailer":"x"}],
"clicksPermitted":[{"campaignId":"46e01b8a-c899-404d-bcd9-189bb393d1a7","classification":"MALWARE","clickIP":"192.0.2.1","clickTime":"2026-01-01T00:20:30.500Z","GUID":"g-10","id":"c-10","messageID":"<20160624211145.62086.mail@evil.example>","recipient":"clark.kent@pharmtech.example","sender":"e99d7ed5580193f36a51f597bc2c0210@evil.example","senderIP":"192.0.2.255","threatID":"61f7622167144dba5e3ae4480eeee78b23d66f7dfed970cfc3d086cc0dabdf50","threatTime":"2026-01-01T00:20:00Z","threatURL":"https://threatinsight.proofpoint.com/#/f7622167144dba5e3ae4480eeee78b23d66f7dfed970cfc3d086cc0dabdf50","threatStatus":"active","url":"http://badguy.example/","userAgent":"Mozilla/5.0"}],
"clicksBlocked":[{"campaignId":"46e01b8a-c899-404d-bcd9-189bb393d1a8","classification":"PHISH","clickIP":"192.0.2.2","clickTime":"2026-01-01T00:30:00Z","GUID":"g-11","id":"c-11","messageID":"<y@evil.example>","recipient":"eve@pharmtech.example","sender":"spam@evil.example","senderIP":"198.51.100.7","threatID":"71f7622167144dba5e3ae4480eeee78b23d66f7dfed970cfc3d086cc0dabdf50","threatTime":"2026-01-01T00:29:00Z","threatURL":"https://threatinsight.proofpoint.com/#/x","threatStatus":"active","url":"http://phish.example/","userAgent":"curl/8.0"}]
}"#;

/// A DCR stream declaration: its name and its (column, type) pairs in order.
type Declaration = (String, Vec<(String, String)>);

/// The solution template and its stream declarations.
fn solution_template() -> (Value, Vec<Declaration>) {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/sentinel/proofpoint-tap-solution.json"
    ))
    .unwrap();
    let t: Value = serde_json::from_str(&text).unwrap();
    let dcr = t["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Microsoft.Insights/dataCollectionRules")
        .unwrap()
        .clone();
    let streams = dcr["properties"]["streamDeclarations"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, decl)| {
            let columns = decl["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap().to_string(),
                        c["type"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            (name.clone(), columns)
        })
        .collect();
    (t, streams)
}

/// Whether `v` is a value of the DCR column type `t`.
fn of_column_type(v: &Value, t: &str) -> bool {
    match t {
        "string" => v.is_string(),
        "int" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "datetime" => v
            .as_str()
            .is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok()),
        "dynamic" => true,
        _ => false,
    }
}

#[tokio::test]
async fn sentinel_carries_enrichment_in_its_own_column_in_both_layouts() {
    // Default layout: `Enrichment` beside `Event`, a column the shipped DCR declares.
    let (fake, url) = azure_server(3600).await;
    // The columns deploy/sentinel/azuredeploy.json declares (checked against the file above).
    let columns = [
        ("TimeGenerated", "datetime"),
        ("Tenant", "string"),
        ("EventType", "string"),
        ("Customer", "string"),
        ("Event", "dynamic"),
        ("Enrichment", "dynamic"),
    ]
    .map(|(c, t)| (c.to_string(), t.to_string()))
    .to_vec();
    fake.with(|s| {
        s.declared
            .insert("Custom-ProofpointTAP".to_string(), columns.clone())
    });
    let s = sink("sentinel", sentinel_config(&url, json!({})));
    let b = enriched(batch());
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let rows: Vec<Value> = fake
        .requests()
        .iter()
        .flat_map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap())
        .collect();
    assert_eq!(rows.len(), 5);
    let mut with = 0;
    for ((meta, raw), row) in b.iter().zip(&rows) {
        assert_eq!(row["Event"], serde_json::from_slice::<Value>(raw).unwrap());
        match b.enrichment(meta) {
            Some(m) => {
                with += 1;
                let want: Value = serde_json::from_slice(&[b"{", m, b"}"].concat()).unwrap();
                assert_eq!(row["Enrichment"], want);
            }
            None => assert!(row.get("Enrichment").is_none(), "{row}"),
        }
    }
    assert!(with >= 1);
    fake.with(|s| assert!(s.dropped_columns.is_empty(), "{:?}", s.dropped_columns));

    // Solution layout: `tapfwd_enrichment`, declared in every stream of the shipped DCR; the
    // fake drops (and records) any column a stream does not declare.
    let (_, declared) = solution_template();
    let (fake, url) = azure_server(3600).await;
    fake.with(|s| {
        s.streams = declared.iter().map(|(n, _)| n.clone()).collect();
        s.declared = declared.iter().cloned().collect();
    });
    let mut config = sentinel_config(&url, json!({"layout": "proofpoint_tap_solution"}));
    config.as_object_mut().unwrap().remove("stream_name");
    let s = sink("sentinel", config);
    let b = enriched(batch_of(FULL_BODY));
    let (result, _) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    let enriched_rows: Vec<Value> = fake
        .requests()
        .iter()
        .flat_map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap())
        .filter(|row| row.get("tapfwd_enrichment").is_some())
        .collect();
    assert_eq!(
        enriched_rows.len(),
        b.iter().filter(|(m, _)| b.enrichment(m).is_some()).count()
    );
    for row in &enriched_rows {
        assert!(row["tapfwd_enrichment"]["threats"].is_object(), "{row}");
    }
    fake.with(|s| assert!(s.dropped_columns.is_empty(), "{:?}", s.dropped_columns));
}

#[tokio::test]
async fn sentinel_solution_layout_bodies_match_the_dcr_column_by_column() {
    let (template, declared) = solution_template();
    let (fake, url) = azure_server(3600).await;
    fake.with(|s| {
        s.streams = declared.iter().map(|(n, _)| n.clone()).collect();
        s.declared = declared.iter().cloned().collect();
    });
    let mut config = sentinel_config(&url, json!({"layout": "proofpoint_tap_solution"}));
    config.as_object_mut().unwrap().remove("stream_name");
    let s = sink("sentinel", config);
    let b = batch_of(FULL_BODY);
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);

    // One request per event type, each to the solution's stream of that type.
    let requests = fake.requests();
    let mut paths: Vec<_> = requests.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    let mut want: Vec<_> = [
        "ClicksBlocked",
        "ClicksPermitted",
        "MessagesBlocked",
        "MessagesDelivered",
    ]
    .iter()
    .map(|k| format!("/dataCollectionRules/{DCR}/streams/Custom-ProofPointTAP{k}V2_CL"))
    .collect();
    want.sort();
    assert_eq!(paths, want);
    let mut names: Vec<_> = declared.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        want.iter()
            .map(|p| p.rsplit('/').next().unwrap().to_string())
            .collect::<Vec<_>>()
    );

    // Every body, element by element and column by column, against the template.
    let raws: HashMap<String, Value> = b
        .iter()
        .map(|(_, raw)| {
            let v: Value = serde_json::from_slice(raw).unwrap();
            (v["id"].as_str().unwrap().to_string(), v)
        })
        .collect();
    for r in &requests {
        let stream = r.path.rsplit('/').next().unwrap();
        let columns = &declared.iter().find(|(n, _)| n == stream).unwrap().1;
        let rows: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(rows.len(), 1, "{stream}");
        for row in rows {
            let row = row.as_object().unwrap();
            let sent: Vec<&str> = row.keys().map(String::as_str).collect();
            let declared_names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
            let mut sorted_sent = sent.clone();
            sorted_sent.sort();
            // Every column but those only Essentials or enriched events carry.
            let mut sorted_declared: Vec<&str> = declared_names
                .iter()
                .copied()
                .filter(|c| !matches!(*c, "tapfwd_enrichment" | "customer_s"))
                .collect();
            sorted_declared.sort();
            assert_eq!(
                sorted_sent, sorted_declared,
                "{stream}: exactly the DCR's columns"
            );
            let raw = &raws[row["id"].as_str().unwrap()];
            for (column, column_type) in columns {
                if matches!(column.as_str(), "tapfwd_enrichment" | "customer_s") {
                    continue;
                }
                let v = &row[column];
                assert!(
                    of_column_type(v, column_type),
                    "{stream}.{column}: {v} is not {column_type}"
                );
                match (column.as_str(), column_type.as_str()) {
                    ("tenant_s", _) => assert_eq!(v, "acme"),
                    ("completelyRewritten", "boolean") => {
                        assert_eq!(
                            v.as_bool().unwrap().to_string(),
                            raw[column].as_str().unwrap()
                        )
                    }
                    _ => assert_eq!(v, &raw[column], "{stream}.{column}"),
                }
            }
        }
    }
    fake.with(|s| assert!(s.dropped_columns.is_empty(), "{:?}", s.dropped_columns));
    assert_eq!(fake.events().len(), 4);

    // The sink's own tables agree with the template, and the tables hold TimeGenerated besides.
    use tapfwd::sinks::sentinel::solution;
    for kind in EventKind::SIEM {
        let (stream, columns) = solution::destination(kind).unwrap();
        let from_sink: Vec<(String, String)> = columns
            .iter()
            .map(|(c, t)| (c.to_string(), t.as_str().to_string()))
            .chain([
                (solution::TENANT_COLUMN.to_string(), "string".to_string()),
                (solution::CUSTOMER_COLUMN.to_string(), "string".to_string()),
                (
                    solution::ENRICHMENT_COLUMN.to_string(),
                    "dynamic".to_string(),
                ),
            ])
            .collect();
        assert_eq!(
            declared.iter().find(|(n, _)| n == stream).unwrap().1,
            from_sink,
            "{stream}"
        );
        let table = stream.strip_prefix("Custom-").unwrap();
        let schema = template["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["properties"]["schema"]["name"] == table)
            .unwrap_or_else(|| panic!("no table {table}"));
        let table_columns: Vec<(String, String)> = schema["properties"]["schema"]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().into(),
                    c["type"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(
            table_columns[0],
            ("TimeGenerated".into(), "datetime".into())
        );
        assert_eq!(table_columns[1..], from_sink[..], "{table}");
        let flows = template["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == "Microsoft.Insights/dataCollectionRules")
            .unwrap()["properties"]["dataFlows"]
            .as_array()
            .unwrap()
            .clone();
        let flow = flows.iter().find(|f| f["streams"][0] == stream).unwrap();
        assert_eq!(flow["outputStream"], stream);
        let time = if kind.is_click() {
            "clickTime"
        } else {
            "messageTime"
        };
        assert!(flow["transformKql"]
            .as_str()
            .unwrap()
            .contains(&format!("TimeGenerated = iif(isnull({time})")));
    }
}

#[tokio::test]
async fn sentinel_solution_layout_refuses_kinds_it_has_no_table_for_and_stray_streams() {
    let (fake, url) = azure_server(3600).await;
    let mut config = sentinel_config(&url, json!({"layout": "proofpoint_tap_solution"}));
    config.as_object_mut().unwrap().remove("stream_name");
    let s = sink("sentinel", config.clone());
    let mut b = batch_of(FULL_BODY);
    b.events[3].kind = EventKind::Vap;
    let (result, commits) = deliver(&*s, "acme", &b).await;
    let e = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(e, SinkError::Rejected(_)));
    assert!(e.to_string().contains("no stream for vap events"), "{e}");
    assert!(fake.requests().is_empty());
    // stream_name or streams beside the solution layout, or neither without it, are refused.
    for (extra, want) in [
        (json!({"stream_name": "Custom-X"}), "not used with layout"),
        (
            json!({"streams": {"vap": "Custom-X"}}),
            "not used with layout",
        ),
        (json!({"layout": "envelope"}), "stream_name is required"),
    ] {
        let mut c = config.clone();
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        let e = serde_json::from_value::<SinkConfig>(c)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(e.contains(want), "{e}");
    }
}

#[tokio::test]
async fn http_errors_show_neither_the_url_query_nor_a_bad_header_secret() {
    let (fake, url) = plain_server(&["k"]).await;
    fake.push_fault(Fault::new(400, "bad request"));
    let s = sink(
        "hook",
        json!({"type":"http","url":format!("{url}?api_key=query-secret-1"),"retry":fast_retry()}),
    );
    let text = deliver(&*s, "acme", &batch())
        .await
        .0
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("HTTP 400") && !text.contains("query-secret-1"),
        "{text}"
    );
    let s = sink(
        "hook",
        json!({"type":"http","url":"http://127.0.0.1:1/x?api_key=query-secret-2",
               "retry":{"initial_backoff":"10ms","max_backoff":"10ms","max_time":"50ms"}}),
    );
    let text = deliver(&*s, "acme", &batch())
        .await
        .0
        .unwrap_err()
        .to_string();
    assert!(!text.contains("query-secret-2"), "{text}");
    let config: SinkConfig = serde_json::from_value(
        json!({"type":"http","url":url,"auth":{"strategy":"bearer","token":"bad\ntoken-value"}}),
    )
    .unwrap();
    let text = sinks::build("hook", &config, &tapfwd::secret::process_env)
        .err()
        .unwrap()
        .to_string();
    assert!(
        text.contains("sinks.hook.auth.token") && !text.contains("token-value"),
        "{text}"
    );
}

// ------------------------------------------------------------------------------- end to end

/// Four client organisations, each routed to its own SIEM (and a fifth whose Splunk token is
/// wrong), run through the real `App` on a manual clock against the built-in simulator: every
/// destination receives exactly its tenant's events (each raw event byte for byte, exactly once),
/// checkpoints move for the healthy sinks and hold for the rejected one, whose error is visible
/// without its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_routes_each_tenant_to_its_own_siem_end_to_end() {
    use support::{checkpoints, expected, step_clock, t0, tenant, Running, Sim};
    let (clock, manual) = tapfwd::clock::Clock::manual(t0());
    let names = ["acme", "globex", "initech", "umbrella", "hooli"];
    let sim = Sim::start(
        names
            .iter()
            .map(|t| tenant(&format!("p-{t}"), &format!("s-{t}"), 600))
            .collect(),
        21,
        clock.clone(),
    )
    .await;
    let (hec, hec_url) = hec_server(false).await;
    let (azure, azure_url) = azure_server(3600).await;
    let (humio, humio_url) = logscale_server().await;
    let (hook, hook_url) = plain_server(&["hook-token"]).await;
    let dir = tempfile::tempdir().unwrap();
    let retry = "retry = { initial_backoff = \"10ms\", max_backoff = \"50ms\", max_time = \"2s\" }";
    let mut text = format!(
        r#"
state_dir = "{state}"
[poll]
interval = "5m"
lag = "30m"
initial_lookback = "2h"
batch_events = 200
[sinks.acme-splunk]
type = "splunk_hec"
url = "{hec_url}"
token = "hec-token-acme"
max_batch_events = 50
{retry}
[sinks.hooli-splunk]
type = "splunk_hec"
url = "{hec_url}"
token = "hooli-wrong-token-31337"
{retry}
[sinks.globex-sentinel]
type = "sentinel"
dce = "{azure_url}"
authority = "{azure_url}"
dcr_immutable_id = "{DCR}"
stream_name = "Custom-ProofpointTAP"
directory_tenant_id = "globex-directory"
client_id = "app-1234"
client_secret = "s3cr3t~value+/="
{retry}
[sinks.initech-logscale]
type = "logscale"
url = "{humio_url}"
token = "ingest-token-acme"
gzip = true
{retry}
[sinks.umbrella-webhook]
type = "http"
url = "{hook_url}"
auth = {{ strategy = "bearer", token = "hook-token" }}
{retry}
"#,
        state = dir.path().join("state").display(),
    );
    for t in names {
        text.push_str(&format!(
            "[tenants.{t}]\nbase_url = \"{}\"\nprincipal = \"p-{t}\"\nsecret = \"s-{t}\"\nsinks = [\"{}\"]\n",
            sim.base_url(),
            config_sink(t)
        ));
    }
    let config = tapfwd::Config::from_toml_with_env(&text, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let running = Running::start(config, clock.clone()).await;
    running.wait_idle(names.len(), manual.now()).await;
    // Two hours of backlog, then steady polling.
    step_clock(&running, &manual, names.len(), Duration::from_secs(300), 3).await;
    let board = running.board.clone();
    running.stop().await;

    let initial = (t0().timestamp() - 1800 - 2 * 3600).div_euclid(60) * 60;
    type TenantOf = fn(&Value) -> &Value;
    let destinations: [(&str, &Fake, TenantOf, &[u8]); 4] = [
        ("acme", &hec, |e| &e["fields"]["tenant"], b"\"event\":"),
        ("globex", &azure, |e| &e["Tenant"], b"\"Event\":"),
        (
            "initech",
            &humio,
            |e| &e["tags"]["tenant"],
            b"\"attributes\":",
        ),
        ("umbrella", &hook, |e| &e["tenant"], b"\"event\":"),
    ];
    for (t, fake, tenant_of, marker) in destinations {
        let cp = checkpoints(&board, config_sink(t))[t];
        assert!(
            cp >= manual.now().timestamp() - 1800 - 600,
            "{t} not caught up"
        );
        let want = expected(&sim.sim, &format!("p-{t}"), initial, cp);
        assert!(want.len() > 100, "{t}: {} events prove little", want.len());
        let events = fake.events();
        assert!(
            events.iter().all(|e| tenant_of(e) == t),
            "{t}: foreign events"
        );
        assert_eq!(events.len(), want.len(), "{t}: count");
        // Every raw event appears byte for byte, exactly once, in the accepted bodies.
        let mut got: HashMap<Vec<u8>, usize> = HashMap::new();
        for body in fake.accepted() {
            for raw in raws_after(&body, marker) {
                *got.entry(raw).or_default() += 1;
            }
        }
        let mut missing = 0;
        for (_, raw) in &want {
            match got.get_mut(raw) {
                Some(n) if *n > 0 => *n -= 1,
                _ => missing += 1,
            }
        }
        assert_eq!(missing, 0, "{t}: events missing or altered");
        assert!(
            got.values().all(|n| *n == 0),
            "{t}: unexpected or repeated events"
        );
    }
    // The rejected sink holds hooli's checkpoint, and says why without the token.
    let hooli = board.get("hooli").unwrap();
    let sink = &hooli.sinks[0];
    assert!(sink.failing, "{sink:?}");
    let cp = chrono::DateTime::parse_from_rfc3339(&sink.checkpoint)
        .unwrap()
        .timestamp();
    assert!(cp <= initial, "{sink:?}");
    let error = sink.last_error.clone().unwrap();
    assert!(
        error.contains("HTTP 403") && error.contains("Invalid token"),
        "{error}"
    );
    assert!(!error.contains("hooli-wrong-token-31337"), "{error}");
    assert!(hec.events().iter().all(|e| e["fields"]["tenant"] == "acme"));
}

/// The raw events in `body`: each JSON value that follows `marker`, as the bytes sent.
fn raws_after(body: &[u8], marker: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(i) = memchr::memmem::find(&body[at..], marker) {
        let start = at + i + marker.len();
        let mut values = serde_json::Deserializer::from_slice(&body[start..])
            .into_iter::<serde::de::IgnoredAny>();
        values.next().unwrap().unwrap();
        let end = start + values.byte_offset();
        out.push(body[start..end].to_vec());
        at = end;
    }
    out
}

fn config_sink(tenant: &str) -> &'static str {
    match tenant {
        "acme" => "acme-splunk",
        "globex" => "globex-sentinel",
        "initech" => "initech-logscale",
        "umbrella" => "umbrella-webhook",
        _ => "hooli-splunk",
    }
}

#[test]
fn unreadable_or_empty_ca_file_fails_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    for path in [junk, dir.path().join("missing.pem")] {
        let config: SinkConfig = serde_json::from_value(
            json!({"type":"logscale","url":"https://h","token":"t","tls_ca_file":path}),
        )
        .unwrap();
        let text = sinks::build("humio", &config, &tapfwd::secret::process_env)
            .err()
            .unwrap()
            .to_string();
        assert!(text.contains("tls_ca_file"), "{text}");
    }
}

#[test]
fn camel_case_map_keys_survive_the_config_loader() {
    let text = r#"
state_dir = "var/state"
[sinks.splunk]
type = "splunk_hec"
url = "https://splunk.example:8088"
token_env = "HEC"
sourcetypes = { clicksPermitted = "pps:click" }
[sinks.sentinel]
type = "sentinel"
dce = "https://dce.example"
dcr_immutable_id = "dcr-1"
stream_name = "Custom-ProofpointTAP"
streams = { messagesDelivered = "Custom-TapMessages" }
directory_tenant_id = "t"
client_id = "c"
client_secret_env = "S"
[sinks.hook]
type = "http"
url = "https://hook.example/in"
headers = { "X-Customer" = "Acme" }
[tenants.acme]
principal = "p"
secret_env = "T"
sinks = ["splunk", "sentinel", "hook"]
"#;
    let config = tapfwd::Config::from_toml_with_env(text, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    match &config.sinks["splunk"] {
        SinkConfig::SplunkHec(c) => assert_eq!(c.sourcetypes["clicksPermitted"], "pps:click"),
        other => panic!("{other:?}"),
    }
    match &config.sinks["sentinel"] {
        SinkConfig::Sentinel(c) => {
            assert_eq!(c.streams["messagesDelivered"], "Custom-TapMessages")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_concurrent_deliveries_share_one_token_fetch() {
    let (fake, url) = azure_server(3600).await;
    let s = sink("sentinel", sentinel_config(&url, json!({})));
    let b = batch();
    let results = futures_util::future::join_all(
        ["a", "b", "c", "d", "e", "f", "g", "h"].map(|t| deliver(&*s, t, &b)),
    )
    .await;
    for (result, commits) in results {
        result.unwrap();
        assert_eq!(commits, 1);
    }
    fake.with(|s| {
        assert_eq!(s.token_requests, 1, "one fetch for all tenants");
        assert_eq!(s.events.len(), 40);
    });
}

/// Issue 14, item 7: no HTTP sink follows a redirect. Each destination answers its first request
/// with a 307 pointing at its own working endpoint, so a client that followed it would deliver
/// and commit; instead the batch fails as a configuration error naming the `Location` (cut
/// before its query, with a token in its path scrubbed), uncommitted and not retried.
#[tokio::test]
async fn no_http_sink_follows_a_redirect_and_the_error_names_the_location() {
    fn check(err: &SinkError, sink: &str, location: &str, secret: &str) {
        assert!(matches!(err, SinkError::Rejected(_)), "{err:?}");
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.contains(sink), "{text}");
        assert!(
            text.contains("HTTP 307 Temporary Redirect")
                && text.contains(&format!("redirects to `{location}`"))
                && text.contains("follow no redirect")
                && text.contains("a configuration error"),
            "{text}"
        );
        assert!(!text.contains(secret), "secret leaked: {text}");
    }

    // Generic HTTP: the Location's query carries the bearer token; it is cut.
    let (fake, url) = plain_server(&["bearer-7f3e9a"]).await;
    fake.push_fault(Fault::redirect(307, &format!("{url}?token=bearer-7f3e9a")));
    let s = sink(
        "hook",
        json!({"type":"http","url":url,"auth":{"strategy":"bearer","token":"bearer-7f3e9a"},"retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    check(
        &result.unwrap_err(),
        "http sink `hook`",
        &url,
        "bearer-7f3e9a",
    );
    assert_eq!(commits, 0, "a redirected batch is not committed");
    assert_eq!(fake.requests().len(), 1, "the redirect was followed");
    assert!(fake.events().is_empty());

    // Splunk HEC.
    let (fake, url) = hec_server(false).await;
    let event_url = format!("{url}/services/collector/event");
    fake.push_fault(Fault::redirect(307, &event_url));
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    check(
        &result.unwrap_err(),
        "splunk_hec sink `splunk`",
        &event_url,
        "hec-token-acme",
    );
    assert_eq!(commits, 0);
    assert_eq!(fake.requests().len(), 1, "the redirect was followed");
    assert!(fake.events().is_empty());

    // LogScale.
    let (fake, url) = logscale_server().await;
    let ingest = format!("{url}/api/v1/ingest/humio-structured");
    fake.push_fault(Fault::redirect(307, &ingest));
    let s = sink(
        "humio",
        json!({"type":"logscale","url":url,"token":"ingest-token-acme","retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    check(
        &result.unwrap_err(),
        "logscale sink `humio`",
        &ingest,
        "ingest-token-acme",
    );
    assert_eq!(commits, 0);
    assert!(fake.events().is_empty(), "the redirect was followed");

    // Sentinel, the Entra ID token request: the Location echoes the client secret in its path
    // (the fake's token route takes any directory there, so following it would get a token).
    let (fake, url) = azure_server(3600).await;
    fake.with(|s| s.client_secret = "cs-0d9c8b7a6f".into());
    let tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    fake.with(|s| {
        s.token_faults.push_back(Fault::redirect(
            307,
            &format!("{url}/cs-0d9c8b7a6f/oauth2/v2.0/token"),
        ))
    });
    let s = sink(
        "sentinel",
        sentinel_config(&url, json!({"client_secret": "cs-0d9c8b7a6f"})),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    check(
        &err,
        "sentinel sink `sentinel`: token request",
        &format!("{url}/[redacted]/oauth2/v2.0/token"),
        "cs-0d9c8b7a6f",
    );
    assert!(err.to_string().contains(tenant_id), "{err}");
    assert_eq!(commits, 0);
    assert_eq!(
        fake.with(|s| s.token_requests),
        1,
        "the redirect was followed"
    );
    assert!(fake.requests().is_empty() && fake.events().is_empty());

    // Sentinel, the ingestion request: a token is issued, then the DCE redirects.
    let (fake, url) = azure_server(3600).await;
    let stream_url = format!(
        "{url}/dataCollectionRules/{DCR}/streams/Custom-ProofpointTAP?api-version=2023-01-01"
    );
    fake.push_fault(Fault::redirect(307, &stream_url));
    let s = sink("sentinel", sentinel_config(&url, json!({})));
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    check(
        &result.unwrap_err(),
        "sentinel sink `sentinel`: POST",
        &format!("{url}/dataCollectionRules/{DCR}/streams/Custom-ProofpointTAP"),
        "s3cr3t~value+/=",
    );
    assert_eq!(commits, 0);
    assert_eq!(fake.requests().len(), 1, "the redirect was followed");
    assert!(fake.events().is_empty());
}
