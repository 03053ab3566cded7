//! The LogScale sink: the three ingest APIs, the URL forms its docs give, enrichment, bad tokens,
//! and a token per event type (CrowdStrike's Proofpoint package: a parser, so a token, per type,
//! through the raw HEC endpoint).

use serde_json::json;
use tapfwd::event::EventKind;
use tapfwd::sinks::{SinkConfig, SinkError};

use crate::common::*;
use crate::support::fakes::{self, Fake, Fault};

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
        ("/api/v1/ingest/hec/raw", None, "/api/v1/ingest/hec/raw"),
        (
            "/api/v1/ingest/hec/raw/",
            Some("hec_raw"),
            "/api/v1/ingest/hec/raw",
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
        (
            "https://cloud.us.humio.com/api/v1/ingest/hec/raw",
            Some("hec"),
        ),
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

/// The sink built with `env` as its environment (no process variable is set by a test).
fn sink_with_env(
    config: serde_json::Value,
    env: &[(&str, &str)],
) -> std::sync::Arc<dyn tapfwd::sinks::Sink> {
    let config: SinkConfig = serde_json::from_value(config).unwrap();
    config.validate().unwrap();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tapfwd::sinks::build("humio", &config, &move |k: &str| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The four TAP event types' tokens, one per parser of the package, given in each of the three
/// forms a secret takes (inline, `_env`, `_file`).
const KIND_TOKENS: [(EventKind, &str); 4] = [
    (EventKind::MessagesDelivered, "tok-delivered-1111"),
    (EventKind::MessagesBlocked, "tok-blocked-2222"),
    (EventKind::ClicksPermitted, "tok-permitted-3333"),
    (EventKind::ClicksBlocked, "tok-clickblock-4444"),
];

async fn kind_token_server() -> (Fake, String) {
    let fake = Fake::default();
    fake.with(|s| s.valid = KIND_TOKENS.iter().map(|(_, t)| t.to_string()).collect());
    let addr = fakes::logscale(&fake).await;
    (fake, format!("http://{addr}"))
}

/// `tokens` for [`KIND_TOKENS`]: messagesDelivered inline, messagesBlocked from the environment,
/// clicksPermitted from a file, clicksBlocked inline.
fn kind_tokens(dir: &std::path::Path) -> serde_json::Value {
    let file = dir.join("permitted.token");
    crate::support::write_secret(&file, "tok-permitted-3333\n");
    json!({
        "messagesDelivered": "tok-delivered-1111",
        "messagesBlocked_env": "LS_TOKEN_BLOCKED",
        "clicksPermitted_file": file.display().to_string(),
        "clicksBlocked": "tok-clickblock-4444",
    })
}

fn token_of(kind: EventKind) -> &'static str {
    KIND_TOKENS.iter().find(|(k, _)| *k == kind).unwrap().1
}

/// CrowdStrike's Proofpoint package: a parser per event type, so an ingest token per type,
/// through the raw HEC endpoint. Each type's events go in requests of their own, with that
/// type's token, as raw lines (the event byte for byte, one per line, nothing beside it).
#[tokio::test]
async fn logscale_hec_raw_posts_each_event_type_with_its_own_token() {
    let (fake, url) = kind_token_server().await;
    let dir = tempfile::tempdir().unwrap();
    let s = sink_with_env(
        json!({"type":"logscale","api":"hec_raw","url":url,"tokens":kind_tokens(dir.path()),
               "retry":fast_retry()}),
        &[("LS_TOKEN_BLOCKED", "tok-blocked-2222")],
    );
    let b = batch();
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    assert_eq!(requests.len(), 4, "one request per event type");
    let raws = raw_events(&b);
    for (kind, token) in KIND_TOKENS {
        let mut expected = Vec::new();
        for (_, raw) in raws.iter().filter(|(k, _)| *k == kind) {
            expected.extend_from_slice(raw);
            expected.push(b'\n');
        }
        let sent: Vec<_> = requests
            .iter()
            .filter(|r| r.headers["authorization"] == format!("Bearer {token}").as_str())
            .collect();
        assert_eq!(sent.len(), 1, "{kind:?}");
        assert_eq!(sent[0].path, "/api/v1/ingest/hec/raw");
        assert!(sent[0].headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        assert_eq!(
            String::from_utf8_lossy(&sent[0].body),
            String::from_utf8_lossy(&expected),
            "{kind:?}: the raw events of that type, one per line"
        );
    }
    // Each event reached the parser of its own type.
    let events = fake.events();
    assert_eq!(events.len(), 5);
    for e in &events {
        let kind = if e["line"].get("clickTime").is_some() {
            if e["line"]["id"] == "c-1" {
                EventKind::ClicksPermitted
            } else {
                EventKind::ClicksBlocked
            }
        } else if e["line"]["GUID"] == "g-2" {
            EventKind::MessagesBlocked
        } else {
            EventKind::MessagesDelivered
        };
        assert_eq!(e["token"], token_of(kind), "{e}");
    }
}

/// A token per type works with the other two APIs as well: each type in requests of its own,
/// with its token; a type not listed takes the sink's token.
#[tokio::test]
async fn logscale_kind_tokens_split_structured_and_hec_requests_by_type() {
    for api in ["structured", "hec"] {
        let (fake, url) = kind_token_server().await;
        fake.with(|s| s.valid.push("tok-default-9999".into()));
        let s = sink_with_env(
            json!({"type":"logscale","api":api,"url":url,"token":"tok-default-9999",
                   "tokens":{"clicksPermitted":"tok-permitted-3333",
                             "clicksBlocked_env":"LS_TOKEN_CB"},
                   "retry":fast_retry()}),
            &[("LS_TOKEN_CB", "tok-clickblock-4444")],
        );
        let (result, commits) = deliver(&*s, "acme", &batch()).await;
        result.unwrap();
        assert_eq!(commits, 1, "{api}");
        let requests = fake.requests();
        assert_eq!(requests.len(), 4, "{api}: one request per event type");
        for r in &requests {
            let body = String::from_utf8_lossy(&r.body);
            let auth = r.headers["authorization"].to_str().unwrap();
            let want = if body.contains("\"c-1\"") {
                "Bearer tok-permitted-3333"
            } else if body.contains("\"c-2\"") {
                "Bearer tok-clickblock-4444"
            } else {
                "Bearer tok-default-9999"
            };
            assert_eq!(auth, want, "{api}: {body}");
        }
        assert_eq!(fake.events().len(), 5, "{api}");
    }
}

/// With `tokens` and no sink token, a batch holding a type with no token is refused before any
/// request (none of it lands, the checkpoint holds), naming the key to set; no token is shown.
#[tokio::test]
async fn logscale_type_without_a_token_is_refused_naming_the_key() {
    let (fake, url) = kind_token_server().await;
    let s = sink(
        "humio",
        json!({"type":"logscale","api":"hec_raw","url":url,
               "tokens":{"messagesDelivered":"tok-delivered-1111","messagesBlocked":"tok-blocked-2222",
                         "clicksPermitted":"tok-permitted-3333"},
               "retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    assert_eq!(commits, 0);
    assert!(matches!(err, SinkError::Rejected(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("no ingest token for clicksBlocked events")
            && text.contains("sinks.humio.tokens.clicksBlocked_env"),
        "{text}"
    );
    assert!(fake.requests().is_empty(), "nothing is sent");
    for (_, token) in KIND_TOKENS {
        assert!(!text.contains(token), "{text}");
    }
}

/// A type's token that LogScale refuses, or that an error page echoes, never shows in the error;
/// nor does an inline token in the config's debug form.
#[tokio::test]
async fn logscale_kind_tokens_never_reach_errors_or_debug_output() {
    let (fake, url) = kind_token_server().await;
    fake.with(|s| s.valid.retain(|t| t != "tok-blocked-2222"));
    let dir = tempfile::tempdir().unwrap();
    let config = json!({"type":"logscale","api":"hec_raw","url":url,
                        "tokens":kind_tokens(dir.path()),"retry":fast_retry()});
    let parsed: SinkConfig = serde_json::from_value(config.clone()).unwrap();
    let debug = format!("{parsed:?}");
    for (_, token) in KIND_TOKENS {
        assert!(!debug.contains(token), "{debug}");
    }
    let s = sink_with_env(config, &[("LS_TOKEN_BLOCKED", "tok-blocked-2222")]);
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let text = result.unwrap_err().to_string();
    assert_eq!(commits, 0);
    assert!(text.contains("HTTP 401"), "{text}");
    // An error page that repeats the request's Authorization header.
    let (fake, url) = kind_token_server().await;
    fake.push_fault(Fault::new(
        400,
        "bad request: Authorization: Bearer tok-clickblock-4444",
    ));
    fake.push_fault(Fault::new(
        400,
        "bad request: Authorization: Bearer tok-clickblock-4444",
    ));
    fake.push_fault(Fault::new(
        400,
        "bad request: Authorization: Bearer tok-clickblock-4444",
    ));
    fake.push_fault(Fault::new(
        400,
        "bad request: Authorization: Bearer tok-clickblock-4444",
    ));
    let s = sink_with_env(
        json!({"type":"logscale","api":"hec_raw","url":url,"tokens":kind_tokens(dir.path()),
               "retry":fast_retry()}),
        &[("LS_TOKEN_BLOCKED", "tok-blocked-2222")],
    );
    let text = deliver(&*s, "acme", &batch())
        .await
        .0
        .unwrap_err()
        .to_string();
    assert!(text.contains("[redacted]"), "{text}");
    for t in [text, debug] {
        for (_, token) in KIND_TOKENS {
            assert!(!t.contains(token), "{t}");
        }
    }
}

/// `tokens` keys are event types, alone or with `_env`/`_file`; one form per type; without a
/// sink token, `tokens` must be given.
#[test]
fn logscale_tokens_table_is_checked() {
    let check = |extra: serde_json::Value| {
        let mut v = json!({"type":"logscale","url":"https://cloud.us.humio.com"});
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        serde_json::from_value::<SinkConfig>(v)
            .map_err(|e| e.to_string())
            .and_then(|c| c.validate())
    };
    let e = check(json!({"tokens":{"clicksAllowed_env":"X"}})).unwrap_err();
    assert!(
        e.contains("`clicksAllowed_env` names no event type") && e.contains("clicksPermitted"),
        "{e}"
    );
    let e = check(json!({"tokens":{"clicksPermitted":"s3cret-inline","clicksPermitted_env":"X"}}))
        .unwrap_err();
    assert!(
        e.contains("one of clicksPermitted, clicksPermitted_env, clicksPermitted_file"),
        "{e}"
    );
    assert!(!e.contains("s3cret-inline"), "{e}");
    let e = check(json!({})).unwrap_err();
    assert!(
        e.contains("exactly one of token, token_env, token_file"),
        "{e}"
    );
    let e = check(json!({"token":"a1b2","token_env":"X","tokens":{"vap":"t"}})).unwrap_err();
    assert!(
        e.contains("at most one of token, token_env, token_file"),
        "{e}"
    );
    check(json!({"tokens":{"podMessage_env":"X","podMaillog_file":"/run/t"}})).unwrap();
    check(json!({"token_env":"X","tokens":{"clicksBlocked":"t"}})).unwrap();
}
