//! The Sentinel sink: the Entra ID token lifecycle, the Logs Ingestion API's limits and streams,
//! and the DCR templates shipped in deploy/sentinel (the envelope layout, the ProofPointTap
//! solution's tables and the Proofpoint On Demand solution's, column by column, against the
//! sink's bodies and against what the solutions' own DCRs declare).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tapfwd::event::EventKind;
use tapfwd::sinks::{SinkConfig, SinkError};

use crate::common::*;
use crate::support::fakes::Fault;

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

/// The TAP solution template and its stream declarations.
fn solution_template() -> (Value, Vec<Declaration>) {
    template_declarations("proofpoint-tap-solution.json")
}

/// The PoD solution template and its stream declarations.
fn pod_template() -> (Value, Vec<Declaration>) {
    template_declarations("proofpoint-pod-solution.json")
}

/// A template of deploy/sentinel and its DCR's stream declarations.
fn template_declarations(file: &str) -> (Value, Vec<Declaration>) {
    let text = std::fs::read_to_string(format!(
        "{}/deploy/sentinel/{file}",
        env!("CARGO_MANIFEST_DIR")
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

#[test]
fn check_refuses_http_to_a_remote_dce_or_authority_unless_allow_http() {
    let sink = |dce: &str, authority: &str| {
        format!(
            "type = \"sentinel\"\ndce = \"{dce}\"\nauthority = \"{authority}\"\ndcr_immutable_id = \"{DCR}\"\nstream_name = \"Custom-ProofpointTAP\"\ndirectory_tenant_id = \"72f988bf-86f1-41af-91ab-2d7cd011db47\"\nclient_id = \"app-1234\"\nclient_secret = \"t0ken-siem\"\n"
        )
    };
    crate::common::assert_cleartext_refused_unless_allowed(
        &sink(
            "http://dce.example.com",
            "https://login.microsoftonline.com",
        ),
        "dce.example.com",
        "dce",
    );
    crate::common::assert_cleartext_refused_unless_allowed(
        &sink("https://dce.example.com", "http://login.example.com"),
        "login.example.com",
        "authority",
    );
}

/// What the solutions' own DCRs declare, column by column, as read from Azure/Azure-Sentinel:
/// the ProofPointTap solution's `ProofpointTAP_CCP/ProofpointTAP_DCR.json` (the four
/// `Custom-ProofPointTAP…V2_CL` streams; package 3.0.10 declares the same), and the Proofpoint
/// On Demand solution's `ProofPointEmailSecurity_CCP/ProofpointPOD_DCR.json` with its two table
/// files. docs/siems.md says what was read and from where.
const SOLUTION_TAP_MESSAGE: [(&str, &str); 29] = [
    ("spamScore", "int"),
    ("phishScore", "int"),
    ("threatsInfoMap", "dynamic"),
    ("messageTime", "datetime"),
    ("impostorScore", "int"),
    ("malwareScore", "int"),
    ("cluster", "string"),
    ("subject", "string"),
    ("quarantineFolder", "string"),
    ("quarantineRule", "string"),
    ("policyRoutes", "dynamic"),
    ("modulesRun", "dynamic"),
    ("messageSize", "int"),
    ("headerFrom", "string"),
    ("headerReplyTo", "string"),
    ("fromAddress", "dynamic"),
    ("ccAddresses", "dynamic"),
    ("replyToAddress", "dynamic"),
    ("toAddresses", "dynamic"),
    ("xmailer", "dynamic"),
    ("messageParts", "dynamic"),
    ("completelyRewritten", "boolean"),
    ("id", "string"),
    ("QID", "string"),
    ("GUID", "string"),
    ("sender", "string"),
    ("recipient", "dynamic"),
    ("senderIP", "string"),
    ("messageID", "string"),
];
const SOLUTION_TAP_CLICK: [(&str, &str); 16] = [
    ("url", "string"),
    ("classification", "string"),
    ("clickTime", "datetime"),
    ("threatTime", "datetime"),
    ("userAgent", "string"),
    ("campaignId", "string"),
    ("id", "string"),
    ("clickIP", "string"),
    ("sender", "string"),
    ("recipient", "string"),
    ("senderIP", "string"),
    ("GUID", "string"),
    ("threatID", "string"),
    ("threatURL", "string"),
    ("threatStatus", "string"),
    ("messageID", "string"),
];
/// The PoD solution's input streams: `(stream, columns)`, and its output tables: `(table,
/// columns)`.
const SOLUTION_POD_STREAMS: [(&str, &[(&str, &str)]); 2] = [
    (
        "Custom-ProofpointPodMessage",
        &[
            ("TimeGenerated", "datetime"),
            ("guid", "string"),
            ("ts", "string"),
            ("connection", "dynamic"),
            ("envelope", "dynamic"),
            ("msg", "dynamic"),
            ("pps", "dynamic"),
            ("metadata", "dynamic"),
            ("filter", "dynamic"),
            ("msgParts", "dynamic"),
        ],
    ),
    (
        "Custom-ProofpointPodMailLog",
        &[
            ("TimeGenerated", "datetime"),
            ("id", "string"),
            ("data", "string"),
            ("ts", "string"),
            ("metadata", "dynamic"),
            ("pps", "dynamic"),
            ("sm", "dynamic"),
            ("tls", "dynamic"),
        ],
    ),
];
const SOLUTION_POD_TABLES: [(&str, &[(&str, &str)]); 2] = [
    (
        "ProofpointPODMessage_CL",
        &[
            ("TimeGenerated", "datetime"),
            ("guid", "string"),
            ("eventTime", "datetime"),
            ("connection", "dynamic"),
            ("envelope", "dynamic"),
            ("msg", "dynamic"),
            ("pps", "dynamic"),
            ("metadata", "dynamic"),
            ("filter", "dynamic"),
            ("msgParts", "dynamic"),
        ],
    ),
    (
        "ProofpointPODMailLog_CL",
        &[
            ("TimeGenerated", "datetime"),
            ("id", "string"),
            ("data", "string"),
            ("eventTime", "datetime"),
            ("metadata", "dynamic"),
            ("pps", "dynamic"),
            ("sm", "dynamic"),
            ("tls", "dynamic"),
        ],
    ),
];

fn pairs(columns: &[(&str, &str)]) -> Vec<(String, String)> {
    columns
        .iter()
        .map(|(c, t)| (c.to_string(), t.to_string()))
        .collect()
}

/// `columns` without the ones tapfwd adds to a solution's (`tenant_s`, `customer_s`,
/// `tapfwd_enrichment`).
fn solutions_own(columns: &[(String, String)]) -> Vec<(String, String)> {
    use tapfwd::sinks::sentinel::solution::{CUSTOMER_COLUMN, ENRICHMENT_COLUMN, TENANT_COLUMN};
    columns
        .iter()
        .filter(|(c, _)| ![TENANT_COLUMN, CUSTOMER_COLUMN, ENRICHMENT_COLUMN].contains(&c.as_str()))
        .cloned()
        .collect()
}

/// A table's columns in a template.
fn table_columns(template: &Value, table: &str) -> Vec<(String, String)> {
    let schema = template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["properties"]["schema"]["name"] == table)
        .unwrap_or_else(|| panic!("no table {table}"));
    schema["properties"]["schema"]["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().into(),
                c["type"].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// The sink's columns and both shipped templates re-declare no column of a solution with
/// another type (`xmailer` is `dynamic` in the TAP solution), so deploying a template next to
/// the solution's connector extends its tables and changes none.
#[test]
fn sentinel_sink_and_templates_declare_the_solutions_own_columns_and_types() {
    use tapfwd::sinks::sentinel::solution;
    let (tap, declared) = solution_template();
    for kind in EventKind::SIEM {
        let want = pairs(if kind.is_click() {
            &SOLUTION_TAP_CLICK
        } else {
            &SOLUTION_TAP_MESSAGE
        });
        let (stream, columns) = solution::destination(kind).unwrap();
        let sink: Vec<(String, String)> = columns
            .iter()
            .map(|(c, t)| (c.to_string(), t.as_str().to_string()))
            .collect();
        assert_eq!(sink, want, "the sink's {stream}");
        let decl = &declared.iter().find(|(n, _)| n == stream).unwrap().1;
        assert_eq!(solutions_own(decl), want, "the template's {stream}");
        let table = table_columns(&tap, stream.strip_prefix("Custom-").unwrap());
        assert_eq!(solutions_own(&table[1..]), want, "the template's table");
    }
    let (pod, declared) = pod_template();
    assert_eq!(declared.len(), 2);
    for (stream, want) in SOLUTION_POD_STREAMS {
        let want = pairs(want);
        let decl = &declared
            .iter()
            .find(|(n, _)| n == stream)
            .unwrap_or_else(|| panic!("the PoD template declares no {stream}"))
            .1;
        assert_eq!(solutions_own(decl), want, "the template's {stream}");
        assert_eq!(
            decl.last().unwrap(),
            &(solution::TENANT_COLUMN.to_string(), "string".to_string())
        );
        let kind = if stream.ends_with("Message") {
            EventKind::PodMessage
        } else {
            EventKind::PodMaillog
        };
        let (sink_stream, columns) = solution::destination(kind).unwrap();
        assert_eq!(
            sink_stream, stream,
            "{kind} goes to the stream the solution declares"
        );
        let sink: Vec<(String, String)> = columns
            .iter()
            .map(|(c, t)| (c.to_string(), t.as_str().to_string()))
            .collect();
        // TimeGenerated is the transform's, never sent.
        assert_eq!(sink, want[1..], "the sink's {stream}");
    }
    for (table, want) in SOLUTION_POD_TABLES {
        assert_eq!(
            solutions_own(&table_columns(&pod, table)),
            pairs(want),
            "{table}"
        );
    }
}

/// PoD message and maillog frames through the solution layout: one request per frame type, to
/// the PoD solution's input streams, every body element holding exactly the PoD template's
/// columns (all but `TimeGenerated`, which the transform sets) with the frame's values; the
/// template's transforms are the solution's (`eventTime` from `ts`, `TimeGenerated` the
/// ingestion time) with `tenant_s` kept; an audit frame has no stream and is refused.
#[tokio::test]
async fn sentinel_pod_rows_match_the_pod_dcr_column_by_column() {
    let (template, declared) = pod_template();
    let (fake, url) = azure_server(3600).await;
    fake.with(|s| {
        s.streams = declared.iter().map(|(n, _)| n.clone()).collect();
        s.declared = declared.iter().cloned().collect();
    });
    let mut config = sentinel_config(&url, json!({"layout": "proofpoint_tap_solution"}));
    config.as_object_mut().unwrap().remove("stream_name");
    let s = sink("sentinel", config);
    let b = pod_batch(&[
        (EventKind::PodMessage, POD_MESSAGE),
        (EventKind::PodMaillog, POD_MAILLOG),
    ]);
    let (result, commits) = deliver(&*s, "acme-pod", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    let requests = fake.requests();
    let mut paths: Vec<_> = requests.iter().map(|r| r.path.clone()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            format!("/dataCollectionRules/{DCR}/streams/Custom-ProofpointPodMailLog"),
            format!("/dataCollectionRules/{DCR}/streams/Custom-ProofpointPodMessage"),
        ]
    );
    for r in &requests {
        let stream = r.path.rsplit('/').next().unwrap();
        let columns = &declared.iter().find(|(n, _)| n == stream).unwrap().1;
        let frame = if stream.ends_with("Message") {
            POD_MESSAGE
        } else {
            POD_MAILLOG
        };
        let raw: Value = serde_json::from_str(frame).unwrap();
        let rows: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(rows.len(), 1, "{stream}");
        let row = rows[0].as_object().unwrap();
        let mut sent: Vec<&str> = row.keys().map(String::as_str).collect();
        sent.sort();
        let mut want: Vec<&str> = columns
            .iter()
            .map(|(c, _)| c.as_str())
            .filter(|c| *c != "TimeGenerated")
            .collect();
        want.sort();
        assert_eq!(sent, want, "{stream}: exactly the DCR's columns");
        for (column, column_type) in columns {
            if column == "TimeGenerated" {
                continue;
            }
            let v = &row[column];
            assert!(
                of_column_type(v, column_type),
                "{stream}.{column}: {v} is not {column_type}"
            );
            if column == "tenant_s" {
                assert_eq!(v, "acme-pod");
            } else {
                assert_eq!(v, &raw[column], "{stream}.{column}");
            }
        }
    }
    fake.with(|s| assert!(s.dropped_columns.is_empty(), "{:?}", s.dropped_columns));
    // The transforms: the solution's own, with tenant_s kept.
    let flows = template["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "Microsoft.Insights/dataCollectionRules")
        .unwrap()["properties"]["dataFlows"]
        .as_array()
        .unwrap()
        .clone();
    for (stream, table) in [
        ("Custom-ProofpointPodMessage", "ProofpointPODMessage_CL"),
        ("Custom-ProofpointPodMailLog", "ProofpointPODMailLog_CL"),
    ] {
        let flow = flows.iter().find(|f| f["streams"][0] == stream).unwrap();
        assert_eq!(flow["outputStream"], format!("Custom-{table}"));
        let kql = flow["transformKql"].as_str().unwrap();
        let projected: Vec<String> = kql
            .split("| project ")
            .nth(1)
            .unwrap()
            .split(", ")
            .map(|c| c.split(" = ").next().unwrap().trim().to_string())
            .collect();
        let mut table_names: Vec<String> = table_columns(&template, table)
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let mut projected_names: Vec<String> = projected
            .iter()
            .map(|c| c.replace("['filter']", "filter"))
            .collect();
        table_names.sort();
        projected_names.sort();
        assert_eq!(
            projected_names, table_names,
            "{stream} projects its table's columns"
        );
        assert!(kql.contains("eventTime = todatetime(ts)"), "{kql}");
        assert!(kql.contains("extend TimeGenerated = now()"), "{kql}");
    }
    // An audit frame has no stream in either solution: refused, loudly, nothing sent.
    let (result, commits) = deliver(
        &*s,
        "acme-pod",
        &pod_batch(&[(EventKind::PodAudit, POD_AUDIT)]),
    )
    .await;
    assert_eq!(commits, 0);
    assert!(result
        .unwrap_err()
        .to_string()
        .contains("no stream for podAudit events"),);
    assert_eq!(fake.requests().len(), 2);
}

/// The simulator's TAP events, spelling drift and all (`campaignID`/`campaignId`,
/// `threatUrl`/`threatURL`), through the solution layout: every campaign id and threat URL of a
/// click lands in the column the solution declares; none is lost.
#[tokio::test]
async fn sentinel_solution_rows_lose_no_value_to_the_simulators_spelling_drift() {
    use tapfwd::clock::Clock;
    use tapfwd::simulate::{SimConfig, Simulator};
    let sim = Simulator::new(SimConfig::generated(1, 2000, 22), Clock::System);
    let end = chrono::Utc::now() - chrono::Duration::hours(1);
    let events = sim.expected_events("tenant-0001", end - chrono::Duration::hours(2), end);
    let mut arrays: HashMap<EventKind, Vec<String>> = HashMap::new();
    for e in &events {
        arrays
            .entry(e.kind)
            .or_default()
            .push(String::from_utf8(e.raw.clone()).unwrap());
    }
    let body = format!(
        "{{\"queryEndTime\":\"2026-01-01T00:00:00Z\",{}}}",
        EventKind::SIEM
            .iter()
            .map(|k| format!(
                "\"{k}\":[{}]",
                arrays.get(k).map(|a| a.join(",")).unwrap_or_default()
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let b = batch_of(&body);
    assert_eq!(b.len(), events.len());

    let (_, declared) = solution_template();
    let (fake, url) = azure_server(3600).await;
    fake.with(|s| {
        s.streams = declared.iter().map(|(n, _)| n.clone()).collect();
        s.declared = declared.iter().cloned().collect();
    });
    let mut config = sentinel_config(&url, json!({"layout": "proofpoint_tap_solution"}));
    config.as_object_mut().unwrap().remove("stream_name");
    let s = sink("sentinel", config);
    let (result, commits) = deliver(&*s, "acme", &b).await;
    result.unwrap();
    assert_eq!(commits, 1);
    // Each click's row: the rows of a stream come in the order of its events in the batch.
    let rows_of = |kind: EventKind| -> Vec<Value> {
        fake.requests()
            .iter()
            .filter(|r| {
                r.path.ends_with(&format!("{}V2_CL", {
                    let name = kind.as_str();
                    format!("{}{}", name[..1].to_ascii_uppercase(), &name[1..])
                }))
            })
            .flat_map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap())
            .collect()
    };
    // (column, its other spelling): values in the raw clicks, values seen under the other
    // spelling, values lost from the rows.
    let mut tally: Vec<(&str, &str, usize, usize, usize)> = vec![
        ("campaignId", "campaignID", 0, 0, 0),
        ("threatURL", "threatUrl", 0, 0, 0),
    ];
    for kind in [EventKind::ClicksPermitted, EventKind::ClicksBlocked] {
        let rows = rows_of(kind);
        let raws: Vec<Value> = b
            .iter()
            .filter(|(m, _)| m.kind == kind)
            .map(|(_, raw)| serde_json::from_slice(raw).unwrap())
            .collect();
        assert_eq!(rows.len(), raws.len(), "{kind}");
        for (raw, row) in raws.iter().zip(&rows) {
            assert_eq!(row["id"], raw["id"], "{kind}: rows in batch order");
            for (column, other, values, drifted, lost) in tally.iter_mut() {
                let value = match (&raw[*column], &raw[*other]) {
                    (Value::Null, Value::Null) => continue,
                    (Value::Null, v) => {
                        *drifted += 1;
                        v
                    }
                    (v, _) => v,
                };
                *values += 1;
                if &row[*column] != value {
                    *lost += 1;
                }
                assert!(row.get(*other).is_none(), "{kind}: {row}");
            }
        }
    }
    for (column, other, values, drifted, lost) in tally {
        assert!(
            drifted > 0 && values > drifted,
            "{column}: the run must hold both spellings ({drifted} of {values} as {other})"
        );
        assert_eq!(lost, 0, "{column}: {lost} of {values} values lost");
    }
    fake.with(|s| assert!(s.dropped_columns.is_empty(), "{:?}", s.dropped_columns));
}

/// The parser variant shipped for MSPs runs the solution's `ProofpointTAPEvent` unchanged and
/// joins back, from the four V2 tables the solution layout fills, the two columns the parser's
/// `project-away *_s` drops; the Sentinel docs point to it. (No Kusto engine here: this holds
/// the query to the tables and columns the templates declare, not its results.)
#[test]
fn sentinel_parser_variant_keeps_the_client_columns_the_solution_parser_drops() {
    let root = env!("CARGO_MANIFEST_DIR");
    let kql = std::fs::read_to_string(format!(
        "{root}/deploy/sentinel/ProofpointTAPEvent-with-tenant.kql"
    ))
    .unwrap();
    let query: String = kql
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        query.trim_start().starts_with("ProofpointTAPEvent\n"),
        "{query}"
    );
    assert!(
        query.contains("join kind=leftouter"),
        "every parsed row is kept"
    );
    let (_, declared) = solution_template();
    for (stream, columns) in &declared {
        let table = stream.strip_prefix("Custom-").unwrap();
        assert!(query.contains(table), "{table}");
        for column in ["tenant_s", "customer_s", "id"] {
            assert!(
                columns.iter().any(|(c, _)| c == column),
                "{stream}.{column}"
            );
        }
    }
    assert!(
        query.contains("by Id = id") && query.contains(") on Id"),
        "{query}"
    );
    for column in ["tenant_s", "customer_s"] {
        assert!(
            query.contains(&format!("{column} = take_any({column})")),
            "{column}"
        );
    }
    for doc in ["docs/siems.md", "deploy/sentinel/README.md"] {
        let text = std::fs::read_to_string(format!("{root}/{doc}")).unwrap();
        assert!(
            text.contains("ProofpointTAPEvent-with-tenant.kql")
                && text.contains("project-away *_s"),
            "{doc}"
        );
    }
}
