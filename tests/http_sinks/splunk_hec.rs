//! The Splunk HEC sink: the batch format byte for byte, indexed fields, tokens and indexes,
//! retries, batch limits, indexer acknowledgement, gzip and the URL forms Splunk documents.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tapfwd::event::EventKind;
use tapfwd::sinks::{SinkConfig, SinkError};

use crate::common::*;
use crate::support::fakes::Fault;

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

/// Every form of a HEC URL that Splunk's documentation and consoles hand out
/// (`/services/collector/event/1.0` is documented as the same endpoint as `/event`).
const HEC_URL_FORMS: [&str; 8] = [
    "",
    "/",
    "/services/collector",
    "/services/collector/",
    "/services/collector/event",
    "/services/collector/event/",
    "/services/collector/event/1.0",
    "/services/collector/event/1.0/",
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
        "/services/collector/event/services/collector/event",
        "/services/collector/event/2.0",
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
        crate::support::daemon::tapfwd()
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
    let out = check(config("https://splunk:8088/services/collector/nope"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("config key `sinks.splunk.url`: `https://splunk:8088/services/collector/nope` has the path `/services/collector/nope`, which is not a HEC endpoint"),
        "{stderr}"
    );
    // The raw endpoint is HEC's, for another format: said so, with the URL to give instead.
    let out = check(config("https://splunk:8088/services/collector/raw"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("config key `sinks.splunk.url`: `https://splunk:8088/services/collector/raw` is HEC's raw endpoint, which takes plain lines of text")
            && stderr.contains("give `https://splunk:8088/services/collector/event`")
            && !stderr.contains("not a HEC endpoint"),
        "{stderr}"
    );
}

#[test]
fn check_refuses_http_to_a_remote_collector_unless_allow_http() {
    crate::common::assert_cleartext_refused_unless_allowed(
        "type = \"splunk_hec\"\nurl = \"http://splunk.example.com:8088\"\ntoken = \"t0ken-siem\"\n",
        "splunk.example.com:8088",
        "url",
    );
}

/// HEC's raw endpoint (and its versioned name) is refused as the other format it is, naming the
/// event endpoint to give instead; never as "not a HEC endpoint".
#[test]
fn hec_raw_endpoint_is_refused_as_another_format() {
    for path in ["/services/collector/raw", "/services/collector/raw/1.0"] {
        let config: SinkConfig = serde_json::from_value(json!({
            "type": "splunk_hec", "url": format!("https://splunk:8088{path}"), "token": "t"
        }))
        .unwrap();
        let e = config.validate().unwrap_err();
        assert!(
            e.starts_with(&format!(
                "url: `https://splunk:8088{path}` is HEC's raw endpoint"
            )) && e.contains("JSON event format")
                && e.contains("`https://splunk:8088/services/collector/event`")
                && !e.contains("not a HEC endpoint"),
            "{path}: {e}"
        );
    }
}

/// PoD frames land under the PoD add-on's sourcetypes (Splunkbase 4327: `pps_messagelog`,
/// `pps_maillog`, `pps_auditlog`), each frame byte for byte.
#[tokio::test]
async fn hec_pod_frames_get_the_pod_add_on_sourcetypes() {
    let (fake, url) = hec_server(false).await;
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","retry":fast_retry()}),
    );
    let b = pod_batch(&[
        (EventKind::PodMessage, POD_MESSAGE),
        (EventKind::PodMaillog, POD_MAILLOG),
        (EventKind::PodAudit, POD_AUDIT),
    ]);
    let (result, commits) = deliver(&*s, "acme-pod", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let body = String::from_utf8_lossy(&fake.requests()[0].body).to_string();
    for frame in [POD_MESSAGE, POD_MAILLOG, POD_AUDIT] {
        assert!(body.contains(&format!("\"event\":{frame}}}")), "{frame}");
    }
    let sourcetypes: Vec<(String, String)> = fake
        .events()
        .iter()
        .map(|e| {
            (
                e["fields"]["eventType"].as_str().unwrap().to_string(),
                e["sourcetype"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        sourcetypes,
        [
            ("podMessage", "pps_messagelog"),
            ("podMaillog", "pps_maillog"),
            ("podAudit", "pps_auditlog"),
        ]
        .map(|(k, t)| (k.to_string(), t.to_string()))
    );
}

/// One `[stanza]` of a Splunk .conf file: its name and its `KEY = value` lines.
fn conf_stanzas(text: &str) -> Vec<(String, HashMap<String, String>)> {
    let mut out: Vec<(String, HashMap<String, String>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push((name.to_string(), HashMap::new()));
        } else {
            let (k, v) = line.split_once(" = ").unwrap();
            out.last_mut().unwrap().1.insert(k.into(), v.into());
        }
    }
    out
}

/// What Splunk extracts at search time from `raw` with the sourcetype's REPORT transforms of
/// deploy/splunk, applied as Splunk applies them: in the order the REPORT lists them, each
/// regex matched repeatedly over its SOURCE_KEY (`_raw` unless named), named groups becoming
/// fields, a field's later values added only with `MV_ADD = true`.
fn splunk_extract(props: &str, transforms: &str, raw: &str) -> HashMap<String, Vec<String>> {
    use regex_automata::meta::Regex;
    use regex_automata::PatternID;
    let transforms: HashMap<String, HashMap<String, String>> =
        conf_stanzas(transforms).into_iter().collect();
    let props = conf_stanzas(props);
    let (_, pps) = props.iter().find(|(s, _)| s == "pps_messagelog").unwrap();
    let mut fields: HashMap<String, Vec<String>> = HashMap::new();
    let mut reports: Vec<_> = pps
        .iter()
        .filter(|(k, _)| k.starts_with("REPORT-"))
        .collect();
    reports.sort();
    for (_, list) in reports {
        for name in list.split(',').map(str::trim) {
            let t = &transforms[name];
            let source = match t.get("SOURCE_KEY") {
                Some(key) => match fields.get(key) {
                    Some(values) => values[0].clone(),
                    None => continue,
                },
                None => raw.to_string(),
            };
            let mv_add = t.get("MV_ADD").is_some_and(|v| v == "true");
            let re = Regex::new(&t["REGEX"]).unwrap_or_else(|e| panic!("{name}: {e}"));
            let names: Vec<Option<String>> = re
                .group_info()
                .pattern_names(PatternID::ZERO)
                .map(|n| n.map(String::from))
                .collect();
            for caps in re.captures_iter(&source) {
                for (i, group) in names.iter().enumerate() {
                    let (Some(group), Some(span)) = (group, caps.get_group(i)) else {
                        continue;
                    };
                    let values = fields.entry(group.clone()).or_default();
                    if values.is_empty() || mv_add {
                        values.push(source[span.range()].to_string());
                    }
                }
            }
        }
    }
    fields
}

/// What the PoD add-on adds to a message event while it collects it (its input's
/// `process_result`): the last `filter.actions` entry with `isFinal` gives `final_action`,
/// `final_module` and `final_rule`; the entries of the `dkimv`, `spf` and `dmarc` modules, in
/// order, become `action_dkimv`, `action_spf` and `action_dmarc`.
fn pod_add_on_fields(raw: &str) -> HashMap<String, Vec<Value>> {
    let frame: Value = serde_json::from_str(raw).unwrap();
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for action in frame["filter"]["actions"].as_array().unwrap() {
        let module = action["module"].as_str().unwrap_or_default();
        if ["dkimv", "spf", "dmarc"].contains(&module) {
            out.entry(format!("action_{module}"))
                .or_default()
                .push(action.clone());
        }
        if action["isFinal"].as_bool() == Some(true) {
            for f in ["action", "module", "rule"] {
                out.insert(format!("final_{f}"), vec![action[f].clone()]);
            }
        }
    }
    out
}

/// The props/transforms snippet docs/siems.md gives (deploy/splunk/) extracts from tapfwd's
/// byte-for-byte PoD message frames the six fields the PoD add-on adds at collection time
/// (`final_action`, `final_module`, `final_rule`, `action_dkimv`, `action_spf`,
/// `action_dmarc`), with the add-on's values: for the frame as the stream sends it, for the same
/// frame with its keys in another order and spaces after the colons, and for a frame with no
/// final action and no authentication entries.
#[test]
fn splunk_snippet_extracts_the_pod_add_on_fields_from_the_frame() {
    let read = |f: &str| std::fs::read_to_string(format!("{}/{f}", env!("CARGO_MANIFEST_DIR")));
    let props = read("deploy/splunk/props.conf").unwrap();
    let transforms = read("deploy/splunk/transforms.conf").unwrap();
    // docs/siems.md shows exactly these settings.
    let docs = read("docs/siems.md").unwrap();
    for line in props.lines().chain(transforms.lines()) {
        if !line.is_empty() && !line.starts_with('#') {
            assert!(docs.contains(line), "docs/siems.md lacks `{line}`");
        }
    }
    let reordered =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(POD_MESSAGE).unwrap()).unwrap();
    assert!(reordered.contains("\"isFinal\": true"));
    let bare = r#"{"guid":"g2","ts":"2026-05-22T12:11:00.000000-0700","filter":{"actions":[{"module":"access","rule":"default_inbound","action":"continue"}],"modules":{"spf":{"result":"pass"}}},"msgParts":[]}"#;
    for raw in [POD_MESSAGE, reordered.as_str(), bare] {
        let got = splunk_extract(&props, &transforms, raw);
        let want = pod_add_on_fields(raw);
        for field in [
            "final_action",
            "final_module",
            "final_rule",
            "action_dkimv",
            "action_spf",
            "action_dmarc",
        ] {
            let got: Vec<Value> = got
                .get(field)
                .map(|values| {
                    values
                        .iter()
                        .map(|v| {
                            if field.starts_with("final_") {
                                Value::String(v.clone())
                            } else {
                                serde_json::from_str(v).unwrap()
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            assert_eq!(
                got,
                want.get(field).cloned().unwrap_or_default(),
                "{field} of {raw}"
            );
        }
    }
    // The sample is not trivial: a final action, two SPF entries, one each of DKIM and DMARC.
    let want = pod_add_on_fields(POD_MESSAGE);
    assert_eq!(want["final_action"], [json!("quarantine")]);
    assert_eq!(want["final_module"], [json!("spam")]);
    assert_eq!(want["final_rule"], [json!("phish")]);
    assert_eq!(want["action_spf"].len(), 2);
    assert_eq!(want["action_dkimv"].len(), 1);
    assert_eq!(want["action_dmarc"].len(), 1);
    assert!(pod_add_on_fields(bare).is_empty());
}
