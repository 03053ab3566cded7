//! The real `App` on a manual clock against the built-in simulator, each tenant routed to its
//! own SIEM's fake server.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;
use crate::support::fakes::Fake;

/// Four client organisations, each routed to its own SIEM (and a fifth whose Splunk token is
/// wrong), run through the real `App` on a manual clock against the built-in simulator: every
/// destination receives exactly its tenant's events (each raw event byte for byte, exactly once),
/// checkpoints move for the healthy sinks and hold for the rejected one, whose error is visible
/// without its token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_routes_each_tenant_to_its_own_siem_end_to_end() {
    use crate::support::rig::Rig;
    use crate::support::{checkpoints, expected, step_clock, t0};
    let names = ["acme", "globex", "initech", "umbrella", "hooli"];
    let (hec, hec_url) = hec_server(false).await;
    let (azure, azure_url) = azure_server(3600).await;
    let (humio, humio_url) = logscale_server().await;
    let (hook, hook_url) = plain_server(&["hook-token"]).await;
    let retry = "retry = { initial_backoff = \"10ms\", max_backoff = \"50ms\", max_time = \"2s\" }";
    let sinks = format!(
        r#"[sinks.acme-splunk]
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
"#
    );
    let poll = "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"2h\"\nbatch_events = 200";
    let mut builder = Rig::builder().no_archive().toml(&sinks).seed(21).poll(poll);
    for t in names {
        builder = builder
            .tenant(t, &format!("p-{t}"), &format!("s-{t}"), 600)
            .tenant_sinks(t, &[config_sink(t)]);
    }
    let (rig, running) = builder.start().await;
    let (sim, manual) = (rig.sim.clone(), rig.manual());
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
