//! The generic HTTP sink: NDJSON or JSON-array envelopes, bearer and basic auth, gzip, permanent
//! 4xx, a wrong URL path, and errors that show no secret of the URL or a header.

use serde_json::{json, Value};
use tapfwd::sinks::{self, SinkConfig, SinkError};

use crate::common::*;
use crate::support::fakes::{self, Fake, Fault};

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

#[test]
fn check_refuses_http_to_a_remote_host_unless_allow_http() {
    crate::common::assert_cleartext_refused_unless_allowed(
        "type = \"http\"\nurl = \"http://soc.example.com/ingest\"\nauth = { strategy = \"bearer\", token = \"t0ken-siem\" }\n",
        "soc.example.com",
        "url",
    );
}
