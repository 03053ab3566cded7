//! What every HTTP sink test uses: TAP SIEM responses split into batches, a sink built from its
//! JSON config and driven through the `Sink` trait with a commit counter, and each destination's
//! fake server (tests/support/fakes.rs) started with the credentials the tests use.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tapfwd::api::split::{BatchBuilder, SplitLimits, Splitter};
use tapfwd::event::{Batch, EventKind};
use tapfwd::sinks::{self, Sink, SinkConfig, SinkError};

use crate::support::fakes::{self, Fake};

/// A TAP SIEM response with every event kind, a multi-recipient message (same GUID, different
/// recipient and id), non-ASCII text, escapes and irregular whitespace.
pub const BODY: &str = r#"{
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

pub fn batch_of(body: &str) -> Batch {
    let mut s = Splitter::new(SplitLimits::default());
    let mut b = BatchBuilder::new();
    s.feed(body.as_bytes(), &mut b).unwrap();
    s.finish().unwrap();
    b.take()
}

pub fn batch() -> Batch {
    batch_of(BODY)
}

/// `b` with threat enrichment for its events that have a threat id: what the enrichment step
/// puts beside them (`"threats":{id:summary}`), keyed by each event's start.
pub fn enriched(mut b: Batch) -> Batch {
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

/// A PoD message frame with every top-level field the PoD solution's DCR declares (`pps`
/// included), the `filter.actions` the PoD add-on reads (a final one, and the DKIM, SPF and DMARC
/// modules'), and a `ts` whose offset has no colon, as the stream sends it.
pub const POD_MESSAGE: &str = r#"{"guid":"pod-guid-0001","ts":"2026-05-22T12:10:03.058340-0700","connection":{"host":"mx1.sender.example","ip":"192.0.2.10","protocol":"smtp:smtp","resolveStatus":"ok","sid":"3y8q1abcde","country":"us","tls":{"inbound":{"cipher":"ECDHE-RSA-AES256-GCM-SHA384","cipherBits":256,"version":"TLSv1.2"}}},"envelope":{"from":"billing@sender.example","rcpts":["ann@acme.example"]},"msg":{"header":{"from":["\"Billing\" <billing@sender.example>"],"subject":["Invoice {42}"],"message-id":["<pod-guid-0001@sender.example>"]},"lang":"en","sizeBytes":5120,"parsedAddresses":{"from":["billing@sender.example"],"to":["ann@acme.example"]}},"pps":{"agent":"m0201234.ppops.net","cid":"acme_hosted","version":"8.21.0.1358"},"metadata":{"origin":{"data":{"agent":"m0201234.ppops.net","cid":"acme_hosted","version":"8.21.0.1358"}}},"filter":{"qid":"44ABCD0001","disposition":"quarantine","routes":["default_inbound"],"quarantine":{"folder":"Phish","rule":"phish"},"actions":[{"module":"access","rule":"default_inbound","action":"continue"},{"rule":"pass","action":"continue","module":"spf"},{"action":"continue","module":"dkimv","rule":"dkim_pass"},{"module":"dmarc","action":"continue","rule":"pass"},{"action":"quarantine","isFinal":true,"module":"spam","rule":"phish"},{"module":"spf","rule":"softfail_audit","action":"audit"}],"modules":{"spam":{"scores":{"overall":100,"engine":100,"classifiers":{"phish":100,"spam":0,"malware":0}}},"dmarc":{"authResults":[{"method":"spf","result":"pass"},{"method":"dkim","result":"pass"},{"method":"dmarc","result":"pass"}]}}},"msgParts":[{"contentType":"text/plain","detectedCharset":"utf-8","sizeDecodedBytes":412,"md5":"5d41402abc4b2a76b9719d911017c592"}]}"#;

/// A PoD maillog frame with every field the PoD solution's DCR declares.
pub const POD_MAILLOG: &str = r#"{"data":"2026-05-22T12:10:03.060000-07:00 m0201234 sendmail[1234]: 44ABCD0001: from=<billing@sender.example>, size=5120, nrcpts=1","id":"pod-maillog-0001","ts":"2026-05-22T12:10:03.060000-0700","sm":{"qid":"44ABCD0001","from":"<billing@sender.example>","sizeBytes":5120,"nrcpts":"1"},"tls":{"verify":"NONE","cipher":"TLS_AES_256_GCM_SHA384","version":"TLSv1.3"},"pps":{"agent":"m0201234.ppops.net","cid":"acme_hosted"},"metadata":{"origin":{"data":{"agent":"m0201234.ppops.net","cid":"acme_hosted","version":"8.21.0.1358"}}}}"#;

/// A PoD audit frame.
pub const POD_AUDIT: &str = r#"{"guid":"pod-audit-0001","ts":"2026-05-22T12:11:00.000000-0700","audit":{"action":"login","user":"admin@acme.example","ip":"192.0.2.99","module":"admin"},"metadata":{"origin":{"data":{"cid":"acme_hosted"}}}}"#;

/// A batch of PoD frames, each of its kind, as a PoD stream hands them to its sinks.
pub fn pod_batch(frames: &[(EventKind, &str)]) -> Batch {
    let mut buf = Vec::new();
    let mut events = Vec::new();
    for (kind, frame) in frames {
        events.push(tapfwd::event::EventMeta {
            kind: *kind,
            start: buf.len() as u32,
            len: frame.len() as u32,
            key: tapfwd::event::EventKey::of(frame.as_bytes()),
            time_ms: tapfwd::api::pod::frame_ts_ms(frame.as_bytes()),
            customer: None,
        });
        buf.extend_from_slice(frame.as_bytes());
    }
    Batch {
        buf: buf.into(),
        events,
        ..Batch::default()
    }
}

/// A response of `n` click events, each padded to about `pad` bytes.
pub fn clicks(n: usize, pad: usize) -> Batch {
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

pub fn sink(name: &str, config: Value) -> Arc<dyn Sink> {
    let config: SinkConfig = serde_json::from_value(config).unwrap();
    config.validate().unwrap();
    sinks::build(name, &config, &tapfwd::secret::process_env).unwrap_or_else(|e| panic!("{e}"))
}

/// Delivers `batch` and returns the result with how often `commit` was called.
pub async fn deliver(
    sink: &dyn Sink,
    tenant: &str,
    batch: &Batch,
) -> (Result<(), SinkError>, usize) {
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
pub fn fast_retry() -> Value {
    json!({"initial_backoff": "10ms", "max_backoff": "50ms", "max_time": "3s"})
}

pub fn raw_events(b: &Batch) -> Vec<(EventKind, Vec<u8>)> {
    b.iter().map(|(m, r)| (m.kind, r.to_vec())).collect()
}

pub async fn hec_server(ack: bool) -> (Fake, String) {
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

pub async fn logscale_server() -> (Fake, String) {
    let fake = Fake::default();
    fake.with(|s| s.valid = vec!["ingest-token-acme".into()]);
    let addr = fakes::logscale(&fake).await;
    (fake, format!("http://{addr}"))
}

pub const DCR: &str = "dcr-00112233445566778899aabbccddeeff";

pub async fn azure_server(expires_in: u64) -> (Fake, String) {
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

pub fn sentinel_config(url: &str, extra: Value) -> Value {
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

pub async fn plain_server(valid: &[&str]) -> (Fake, String) {
    let fake = Fake::default();
    fake.with(|s| s.valid = valid.iter().map(|v| v.to_string()).collect());
    let addr = fakes::plain(&fake).await;
    (fake, format!("http://{addr}/ingest"))
}

/// Runs `tapfwd check` on a config whose one sink, `siem`, has the TOML keys `sink`; returns
/// whether it passed and what it wrote to stderr.
pub fn check_with_sink(sink: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tapfwd.toml");
    let text = format!(
        "state_dir = \"state\"\n[sinks.siem]\n{sink}\n[tenants.acme]\nprincipal = \"p\"\nsecret_env = \"ACME_SECRET\"\nsinks = [\"siem\"]\n"
    );
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tapfwd"))
        .args(["check", "--config"])
        .arg(&path)
        .env("ACME_SECRET", "s3cr3t-acme")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The cleartext rule every HTTP sink keeps, through `tapfwd check`: the sink `sink` (TOML keys)
/// names `remote`, an `http://` host that is not loopback, under `key`; `check` refuses it
/// naming `sinks.siem.KEY` and `allow_http`, passes it with `allow_http = true`, and passes the
/// same address on loopback without it.
pub fn assert_cleartext_refused_unless_allowed(sink: &str, remote: &str, key: &str) {
    assert!(sink.contains(remote), "{sink}");
    let (ok, stderr) = check_with_sink(sink);
    assert!(
        !ok,
        "check passed an http:// {key} to a remote host ({remote})"
    );
    assert!(
        stderr.contains(&format!("sinks.siem.{key}")) && stderr.contains("allow_http"),
        "{stderr}"
    );
    assert!(!stderr.contains("t0ken-siem"), "{stderr}");
    let (ok, stderr) = check_with_sink(&format!("{sink}allow_http = true\n"));
    assert!(ok, "with allow_http = true: {stderr}");
    let (ok, stderr) = check_with_sink(&sink.replace(remote, "127.0.0.1:8088"));
    assert!(ok, "on loopback: {stderr}");
}
