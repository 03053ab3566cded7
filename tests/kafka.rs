//! The Kafka sink against librdkafka's mock cluster (request errors, every broker down then up)
//! and, end to end, against the real Kafka-protocol broker started by `scripts/test-services up`:
//! the App runs against the simulator on a manual clock, then every record is consumed back and
//! compared with the simulator's ground truth: value byte for byte, key, headers and topic.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::rig::Rig;
use support::*;
use tapfwd::api::split::{BatchBuilder, SplitLimits, Splitter};
use tapfwd::event::Batch;
use tapfwd::sinks::{Sink, SinkError};

/// The simulator's ground truth: (eventType, raw) pairs.
type Expected = Vec<(String, Vec<u8>)>;

/// One record as consumed.
#[derive(Debug, Clone)]
struct Record {
    topic: String,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
    headers: HashMap<String, String>,
}

/// Reads every record of `topics` from the beginning until `n` have arrived; fails after
/// [`PATIENCE`].
fn consume(bootstrap: &str, topics: &[String], n: usize) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("tft-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("consumer");
    let deadline = Instant::now() + PATIENCE;
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let partitions = loop {
            let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(5));
            if let Ok(md) = md {
                if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                    if t.error().is_none() && !t.partitions().is_empty() {
                        break t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>();
                    }
                }
            }
            assert!(Instant::now() < deadline, "no metadata for topic {topic}");
        };
        for p in partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "consumed {} of {n} records from {topics:?}",
            out.len()
        );
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Err(e)) => panic!("consumer error: {e}"),
            Some(Ok(m)) => out.push(record(&m)),
        }
    }
    // Anything more would be a duplicate: give it a moment to show up.
    let settle = Instant::now() + Duration::from_secs(1);
    while Instant::now() < settle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            out.push(record(&m));
        }
    }
    out
}

fn record(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Record {
        topic: m.topic().to_string(),
        key: m.key().map(<[u8]>::to_vec),
        value: m.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

fn batch_of(events: &[(String, Vec<u8>)]) -> Batch {
    let mut body = b"{".to_vec();
    let mut first_kind = true;
    for kind in [
        "messagesBlocked",
        "messagesDelivered",
        "clicksBlocked",
        "clicksPermitted",
    ] {
        let of_kind: Vec<&Vec<u8>> = events
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, r)| r)
            .collect();
        if !first_kind {
            body.push(b',');
        }
        first_kind = false;
        body.extend_from_slice(format!("\"{kind}\":[").as_bytes());
        for (i, raw) in of_kind.iter().enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(raw);
        }
        body.push(b']');
    }
    body.push(b'}');
    let mut s = Splitter::new(SplitLimits::default());
    let mut b = BatchBuilder::new();
    s.feed(&body, &mut b).unwrap();
    s.finish().unwrap();
    b.take()
}

fn synthetic_events(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            if i % 3 == 0 {
                (
                    "clicksPermitted".to_string(),
                    format!(r#"{{"id":"c-{i}","GUID":"g-{i}","clickTime":"2026-11-20T11:00:00.000Z","url":"http://x/{i}"}}"#)
                        .into_bytes(),
                )
            } else {
                (
                    "messagesDelivered".to_string(),
                    format!(r#"{{"GUID":"g-{i}","messageTime":"2026-11-20T11:00:00.000Z","subject":"s \u00e9 {i}"}}"#)
                        .into_bytes(),
                )
            }
        })
        .collect()
}

/// A producer hosting a librdkafka mock cluster of `brokers` brokers (`host.client().mock_cluster()`),
/// quiet: `MockCluster::new` makes its host with librdkafka's default log level, which writes a
/// `CONFWARN` line to stderr for every cluster, although nothing is wrong. Not for the test that
/// takes brokers down: this host is also a client of its cluster, and with it one run aborted in
/// librdkafka when a broker brought back up found its port in use.
fn mock_host(brokers: i32) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("test.mock.num.brokers", brokers.to_string())
        .set("log_level", "2")
        .set_log_level(RDKafkaLogLevel::Critical);
    config.create().expect("a mock cluster")
}

fn kafka_sink(brokers: &str, extra: &str) -> std::sync::Arc<dyn Sink> {
    let config = parse_config(&format!(
        "state_dir = \"unused\"\n[sinks.bus]\ntype = \"kafka\"\nbrokers = \"{brokers}\"\n{extra}\n[tenants.t]\nprincipal = \"p\"\nsecret = \"s\"\nsinks = [\"bus\"]\n"
    ));
    tapfwd::sinks::build("bus", &config.sinks["bus"], &tapfwd::secret::process_env).unwrap()
}

async fn deliver(
    sink: &dyn Sink,
    tenant: &str,
    batch: &Batch,
    commits: &AtomicUsize,
) -> Result<(), SinkError> {
    sink.deliver(
        tenant,
        batch,
        Box::new(|pos| {
            assert_eq!(pos, None);
            commits.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }),
    )
    .await
}

/// Asserts every expected (kind, raw) arrived under `tenant`, none twice, nothing else.
fn assert_records_exactly_once(records: &[Record], tenant: &str, want: &[(String, Vec<u8>)]) {
    let lines: Vec<Line> = records
        .iter()
        .map(|r| Line {
            tenant: r
                .headers
                .get("tenant")
                .cloned()
                .unwrap_or_else(|| tenant.to_string()),
            event_type: r.headers.get("eventType").cloned().unwrap_or_default(),
            raw: r.value.clone(),
        })
        .collect();
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for r in records {
        *seen.entry(r.value.as_slice()).or_default() += 1;
    }
    let dups = seen.values().filter(|n| **n > 1).count();
    assert_eq!(dups, 0, "{dups} records were delivered more than once");
    assert_exactly_once(&lines, tenant, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_cluster_request_errors_and_brokers_down_lose_nothing() {
    // Not `mock_host`: see there. Its one `CONFWARN` line is the noise this test still makes.
    let mock = MockCluster::new(3).unwrap();
    mock.create_topic("tap.acme", 3, 3).unwrap();
    let brokers = mock.bootstrap_servers();
    // Brokers taken down on purpose: librdkafka's `FAIL … Connection refused` lines are expected
    // here, so its log level keeps them off the test output.
    let sink = kafka_sink(
        &brokers,
        "topic = \"tap.{tenant}\"\nmessage_timeout = \"3s\"\nkey = \"guid\"\n[sinks.bus.options]\nlog_level = \"2\"",
    );
    let events = synthetic_events(600);
    let (first, second) = events.split_at(300);
    let commits = AtomicUsize::new(0);

    // Produce requests fail with retriable errors: the idempotent producer retries them itself.
    mock.request_errors(
        RDKafkaApiKey::Produce,
        &[
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ],
    );
    deliver(&*sink, "acme", &batch_of(first), &commits)
        .await
        .unwrap();
    assert_eq!(commits.load(Ordering::SeqCst), 1);

    // Every broker down: the batch fails as retryable, and nothing is committed.
    for b in 1..=3 {
        mock.broker_down(b).unwrap();
    }
    let batch = batch_of(second);
    let err = deliver(&*sink, "acme", &batch, &commits).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert_eq!(
        commits.load(Ordering::SeqCst),
        1,
        "a failed batch is not committed"
    );
    for b in 1..=3 {
        mock.broker_up(b).unwrap();
    }
    // The poller sends the batch again until it is delivered (librdkafka reconnects with its
    // own backoff, so the first tries may still time out, after part of the batch got through:
    // the sink then sends only the records Kafka has not acknowledged, so none arrives twice).
    let deadline = Instant::now() + PATIENCE;
    let mut retries = 0;
    while let Err(e) = deliver(&*sink, "acme", &batch, &commits).await {
        assert!(e.is_retryable(), "{e}");
        assert!(
            Instant::now() < deadline,
            "brokers back up, yet still failing: {e}"
        );
        retries += 1;
    }
    assert_eq!(
        commits.load(Ordering::SeqCst),
        2,
        "after {retries} failed retries"
    );

    let records = consume(&brokers, &["tap.acme".to_string()], events.len());
    for r in &records {
        assert_eq!(r.topic, "tap.acme");
        let guid = tapfwd::sinks::kafka::guid(&r.value).map(|g| g.into_owned().into_bytes());
        assert_eq!(r.key, guid, "key = the event's GUID");
    }
    assert_records_exactly_once(&records, "acme", &events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_too_large_is_rejected_not_retried_forever() {
    let host = mock_host(1);
    let mock = host.client().mock_cluster().unwrap();
    mock.create_topic("big", 1, 1).unwrap();
    let sink = kafka_sink(
        &mock.bootstrap_servers(),
        "topic = \"big\"\nmessage_timeout = \"5s\"\n[sinks.bus.options]\n\"message.max.bytes\" = \"1000\"",
    );
    let raw = format!(r#"{{"id":"x","pad":"{}"}}"#, "a".repeat(5000));
    let batch = batch_of(&[("clicksBlocked".to_string(), raw.into_bytes())]);
    let commits = AtomicUsize::new(0);
    let err = deliver(&*sink, "t", &batch, &commits).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(commits.load(Ordering::SeqCst), 0);
}

/// A producer queue far smaller than the batch: the sink waits for its own earlier records'
/// delivery reports to make room, and every record still arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_producer_queue_waits_for_earlier_deliveries() {
    let host = mock_host(1);
    let mock = host.client().mock_cluster().unwrap();
    mock.create_topic("q.acme", 2, 1).unwrap();
    let brokers = mock.bootstrap_servers();
    let sink = kafka_sink(
        &brokers,
        "topic = \"q.{tenant}\"\nkey = \"none\"\n[sinks.bus.options]\n\"queue.buffering.max.messages\" = \"10\"",
    );
    let events = synthetic_events(250);
    let commits = AtomicUsize::new(0);
    deliver(&*sink, "acme", &batch_of(&events), &commits)
        .await
        .unwrap();
    assert_eq!(commits.load(Ordering::SeqCst), 1);
    let records = consume(&brokers, &["q.acme".to_string()], events.len());
    assert!(records.iter().all(|r| r.key.is_none()), "key = none");
    assert_records_exactly_once(&records, "acme", &events);
}

fn service_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the Kafka tests need the real broker. Run `scripts/test-services up` \
             and `eval \"$(scripts/test-services env)\"` (scripts/test does both)"
        )
    })
}

/// The App with two Kafka sinks (raw events keyed by tenant into a per-tenant topic; the
/// envelope keyed by GUID into a per-event-type topic) delivers every event of two tenants to
/// the real broker exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_delivers_every_event_to_a_real_broker_with_keys_headers_and_topics() {
    let bootstrap = service_env("TAPFWD_KAFKA_BOOTSTRAP");
    let run = format!(
        "tft{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let (rig, running) = Rig::builder()
        .no_archive()
        .sink(
            "raw",
            &format!("type = \"kafka\"\nbrokers = \"{bootstrap}\"\ntopic = \"{run}.{{tenant}}\"\ncompression = \"lz4\"\nmessage_timeout = \"30s\"\n"),
        )
        .sink(
            "env",
            &format!("type = \"kafka\"\nbrokers = \"{bootstrap}\"\ntopic = \"{run}.all.{{event_type}}\"\nkey = \"guid\"\nenvelope = true\n"),
        )
        .tenant("alpha", "p-a", "s-a", 400)
        .tenant("beta", "p-b", "s-b", 200)
        .seed(29)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"2h\"\nbatch_events = 100")
        .start()
        .await;
    let (sim, manual) = (rig.sim.clone(), rig.manual());
    running.wait_idle(2, manual.now()).await;
    step_clock(&running, &manual, 2, Duration::from_secs(300), 2).await;
    let raw_cps = checkpoints(&running.board, "raw");
    let env_cps = checkpoints(&running.board, "env");
    running.stop().await;
    assert_eq!(raw_cps, env_cps);
    let initial = (t0().timestamp() - 1800 - 2 * 3600).div_euclid(60) * 60;
    let want: Vec<(&str, Expected)> = [("alpha", "p-a"), ("beta", "p-b")]
        .into_iter()
        .map(|(id, p)| (id, expected(&sim.sim, p, initial, raw_cps[id])))
        .collect();
    let total: usize = want.iter().map(|(_, w)| w.len()).sum();

    // Raw values, keyed by tenant, one topic per tenant.
    let topics: Vec<String> = ["alpha", "beta"]
        .iter()
        .map(|t| format!("{run}.{t}"))
        .collect();
    let records = consume(&bootstrap, &topics, total);
    for r in &records {
        let tenant = &r.headers["tenant"];
        assert_eq!(r.topic, format!("{run}.{tenant}"));
        assert_eq!(r.key.as_deref(), Some(tenant.as_bytes()));
        assert!(r.headers.contains_key("eventType"), "{r:?}");
    }
    for (id, w) in &want {
        let mine: Vec<Record> = records
            .iter()
            .filter(|r| r.headers["tenant"] == *id)
            .cloned()
            .collect();
        assert_records_exactly_once(&mine, id, w);
    }

    // Envelopes, keyed by GUID, one topic per event type.
    let topics: Vec<String> = [
        "messagesBlocked",
        "messagesDelivered",
        "clicksBlocked",
        "clicksPermitted",
    ]
    .iter()
    .map(|k| format!("{run}.all.{k}"))
    .collect();
    let present: Vec<String> = topics
        .into_iter()
        .filter(|t| {
            want.iter()
                .any(|(_, w)| w.iter().any(|(k, _)| t.ends_with(&format!(".{k}"))))
        })
        .collect();
    let records = consume(&bootstrap, &present, total);
    let mut lines = Vec::new();
    for r in &records {
        let kind = &r.headers["eventType"];
        assert_eq!(r.topic, format!("{run}.all.{kind}"));
        let tenant = &r.headers["tenant"];
        let prefix = format!("{{\"tenant\":\"{tenant}\",\"eventType\":\"{kind}\",\"event\":");
        assert!(
            r.value.starts_with(prefix.as_bytes()) && r.value.ends_with(b"}"),
            "envelope"
        );
        let raw = r.value[prefix.len()..r.value.len() - 1].to_vec();
        let guid = tapfwd::sinks::kafka::guid(&raw).map(|g| g.into_owned().into_bytes());
        assert_eq!(r.key, guid);
        lines.push(Line {
            tenant: tenant.clone(),
            event_type: kind.clone(),
            raw,
        });
    }
    for (id, w) in &want {
        assert_exactly_once(&lines, id, w);
    }
}

// ------------------------------------------------------------------------ the Elastic route

/// docs/siems.md, the page this route is documented on.
fn siems_page() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/siems.md")).unwrap()
}

/// The page's topic → Dataset name table (rows `| \`proofpoint.…\` | \`…\` |`).
fn topic_table(page: &str) -> HashMap<String, String> {
    page.lines()
        .filter(|l| l.starts_with("| `proofpoint."))
        .map(|l| {
            let cells: Vec<&str> = l.split('`').skip(1).step_by(2).collect();
            (cells[0].to_string(), cells[1].to_string())
        })
        .collect()
}

/// The JavaScript of the page's Elastic Agent processor (the `source: |` of its yaml block).
fn processor_source(page: &str) -> String {
    let block = page
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a yaml block on docs/siems.md");
    let mut lines = block
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("source: |"));
    let indent = |l: &str| l.len() - l.trim_start().len();
    let source_at = indent(lines.next().expect("`source: |` in the processor"));
    let body: Vec<&str> = lines
        .take_while(|l| l.trim().is_empty() || indent(l) > source_at)
        .collect();
    let strip = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap();
    body.iter()
        .map(|l| l.get(strip..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs the processor `source` with `node` on each (message, kafka.headers) as the Elastic Agent
/// gives it (`event.Get`/`event.Put` on `message` and `kafka.headers`, the headers as
/// `"key: value"` strings); returns each `message` afterwards.
fn run_processor(source: &str, events: &[(String, Vec<String>)]) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("processor.js");
    std::fs::write(
        &script,
        format!(
            "const fs = require(\"fs\");\n{source}\n\
             const input = JSON.parse(fs.readFileSync(0, \"utf8\"));\n\
             const out = input.map(function (r) {{\n\
               const fields = {{ \"message\": r[0], \"kafka.headers\": r[1] }};\n\
               process({{ Get: function (k) {{ return fields[k]; }}, Put: function (k, v) {{ fields[k] = v; }} }});\n\
               return fields[\"message\"];\n\
             }});\n\
             fs.writeSync(1, JSON.stringify(out));\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new("node")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "node: {e}. This test runs the Elastic Agent processor of docs/siems.md with node \
                 (scripts/test installs it; or apt-get install nodejs)"
            )
        });
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(events).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "node failed: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Events of the four SIEM types whose raw bytes a naive rewrite would get wrong: a `}` inside a
/// string, spaces before the closing brace, escapes and non-ASCII text, nested arrays.
fn elastic_events() -> Expected {
    let mut events = Vec::new();
    for i in 0..8 {
        events.push((
            "messagesDelivered".to_string(),
            format!(r#"{{"GUID":"md-{i}","messageTime":"2026-11-20T11:00:00.000Z","subject":"Rechnung f\u00fcr {i} }} \"x\"","threatsInfoMap":[{{"threatID":"t{i}","classification":"phish"}}]  }}"#).into_bytes(),
        ));
        events.push((
            "messagesBlocked".to_string(),
            format!(r#"{{"GUID":"mb-{i}","messageTime":"2026-11-20T11:00:00.000Z","subject":"Größe {i}","modulesRun":["spam","urldefense"]}}"#).into_bytes(),
        ));
        events.push((
            "clicksPermitted".to_string(),
            format!(r#"{{"id":"cp-{i}","GUID":"g-{i}","clickTime":"2026-11-20T11:00:00.000Z","url":"https://x.example/{i}?a=1&b={{2}}"}}"#).into_bytes(),
        ));
        events.push((
            "clicksBlocked".to_string(),
            format!(r#"{{ "id" : "cb-{i}", "clickTime":"2026-11-20T11:00:00.000Z" , "classification":"MALWARE" }}"#).into_bytes(),
        ));
    }
    events
}

/// The Elastic route of docs/siems.md, as its config sets it up: TAP events as raw records, one
/// topic per event type, each the topic the page's table maps to the Elastic data stream of that
/// type; Essentials events with the `event_type` header beside them, which the page's agent
/// processor folds into the event that the Essentials integration's pipeline parses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elastic_route_raw_records_per_type_topics_and_the_essentials_event_type() {
    use tapfwd::event::EventKind;
    use tapfwd::sinks::kafka::{render_topic, snake_event_type};
    let page = siems_page();
    // The data streams of Elastic's integrations that read one raw event from `message`
    // (`packages/proofpoint_tap/data_stream/*`, `packages/proofpoint_on_demand/data_stream/*`).
    let elastic = [
        (EventKind::MessagesBlocked, "proofpoint_tap.message_blocked"),
        (
            EventKind::MessagesDelivered,
            "proofpoint_tap.message_delivered",
        ),
        (EventKind::ClicksBlocked, "proofpoint_tap.clicks_blocked"),
        (
            EventKind::ClicksPermitted,
            "proofpoint_tap.clicks_permitted",
        ),
        (EventKind::PodMessage, "proofpoint_on_demand.message"),
        (EventKind::PodMaillog, "proofpoint_on_demand.mail"),
        (EventKind::PodAudit, "proofpoint_on_demand.audit"),
        // `packages/proofpoint_itm/data_stream/report`: every ITM record type.
        (EventKind::ItmUserActivity, "proofpoint_itm.report"),
        (EventKind::ItmDbaActivity, "proofpoint_itm.report"),
        (EventKind::ItmSystemEvent, "proofpoint_itm.report"),
        (EventKind::ItmAlert, "proofpoint_itm.report"),
        (EventKind::ItmAudit, "proofpoint_itm.report"),
        (EventKind::ItmInAppElement, "proofpoint_itm.report"),
    ];
    let table = topic_table(&page);
    assert_eq!(table.len(), elastic.len(), "{table:?}");
    for (kind, dataset) in elastic {
        let topic = render_topic("proofpoint.{event_type}", "acme", kind);
        assert_eq!(
            table.get(&topic).map(String::as_str),
            Some(dataset),
            "{topic}"
        );
    }
    // The Essentials integration routes on these values of `event_type`.
    let essentials = [
        "messages_blocked",
        "messages_delivered",
        "clicks_blocked",
        "clicks_permitted",
    ];

    let host = mock_host(1);
    let mock = host.client().mock_cluster().unwrap();
    let brokers = mock.bootstrap_servers();
    let topics: Vec<String> = EventKind::SIEM
        .iter()
        .map(|k| render_topic("proofpoint.{event_type}", "acme", *k))
        .collect();
    for t in topics
        .iter()
        .chain(["proofpoint.essentials".to_string()].iter())
    {
        mock.create_topic(t, 1, 1).unwrap();
    }
    // The two sinks of the page's config.
    let tap = kafka_sink(&brokers, "topic = \"proofpoint.{event_type}\"");
    let partner = kafka_sink(
        &brokers,
        "topic = \"proofpoint.essentials\"\nevent_type_header = true",
    );
    let events = elastic_events();
    let commits = AtomicUsize::new(0);
    deliver(&*tap, "acme", &batch_of(&events), &commits)
        .await
        .unwrap();
    deliver(&*partner, "partner", &batch_of(&events), &commits)
        .await
        .unwrap();
    assert_eq!(commits.load(Ordering::SeqCst), 2);

    // TAP: each record on its type's topic, the raw event as the value, no `event_type`.
    let records = consume(&brokers, &topics, events.len());
    for r in &records {
        assert_eq!(r.topic, format!("proofpoint.{}", r.headers["eventType"]));
        assert!(!r.headers.contains_key("event_type"), "opt-in only: {r:?}");
    }
    assert_records_exactly_once(&records, "acme", &events);

    // Essentials: the header beside the raw value.
    let partner_records = consume(
        &brokers,
        &["proofpoint.essentials".to_string()],
        events.len(),
    );
    assert_records_exactly_once(&partner_records, "partner", &events);
    for r in &partner_records {
        let kind = EventKind::SIEM
            .into_iter()
            .find(|k| k.as_str() == r.headers["eventType"])
            .unwrap();
        assert_eq!(r.headers["event_type"], snake_event_type(kind));
        assert!(essentials.contains(&r.headers["event_type"].as_str()));
    }

    // The page's processor, run as the agent runs it, on every record: Essentials events get
    // `event_type` and nothing else changes; TAP records (no header) pass unchanged.
    let agent_view = |r: &Record| {
        (
            String::from_utf8(r.value.clone()).unwrap(),
            r.headers
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>(),
        )
    };
    let mut inputs: Vec<(String, Vec<String>)> = partner_records.iter().map(agent_view).collect();
    inputs.extend(records.iter().map(agent_view));
    inputs.push((
        "{}".to_string(),
        vec!["event_type: clicks_blocked".to_string()],
    ));
    let outputs = run_processor(&processor_source(&page), &inputs);
    assert_eq!(outputs.len(), inputs.len());
    for (i, ((message, headers), out)) in inputs.iter().zip(&outputs).enumerate() {
        let event_type = headers.iter().find_map(|h| h.strip_prefix("event_type: "));
        let Some(event_type) = event_type else {
            assert_eq!(out, message, "a record without the header is left alone");
            continue;
        };
        let mut want: serde_json::Value = serde_json::from_str(message).unwrap();
        want["event_type"] = serde_json::Value::from(event_type);
        let got: serde_json::Value = serde_json::from_str(out)
            .unwrap_or_else(|e| panic!("{i}: not JSON after the processor ({e}): {out}"));
        assert_eq!(got, want, "{i}");
        let end = message.rfind('}').unwrap();
        assert!(
            out.starts_with(&message[..end]) && out.ends_with(&message[end..]),
            "{i}: the event's own bytes are kept: {out}"
        );
    }
    assert_eq!(
        outputs
            .iter()
            .filter(|o| o.contains("\"event_type\""))
            .count(),
        partner_records.len() + 1
    );
}
