//! The LogScale sink: both ingest APIs, the URL forms its docs give, enrichment, bad tokens.

use serde_json::json;
use tapfwd::event::EventKind;
use tapfwd::sinks::{SinkConfig, SinkError};

use crate::common::*;
use crate::support::fakes::Fault;

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

#[test]
fn check_refuses_http_to_a_remote_cluster_unless_allow_http() {
    crate::common::assert_cleartext_refused_unless_allowed(
        "type = \"logscale\"\nurl = \"http://logscale.example.com\"\ntoken = \"t0ken-siem\"\n",
        "logscale.example.com",
        "url",
    );
}
