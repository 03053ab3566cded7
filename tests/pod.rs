//! The PoD log stream against the simulator, on a manual clock shared by the daemon and the
//! simulator, so hours of streaming, outages and the 30-minute archive lag run in seconds.
//! Every test compares what landed with the simulator's ground truth, byte for byte (the file
//! sink) or value for value (the HTTP sink).

mod support;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use support::*;
use tapfwd::clock::{Clock, ManualClock};
use tapfwd::config::PodType;
use tapfwd::simulate::pod::{PodFault, SimPodCluster};
use tapfwd::simulate::{SimConfig, SimServer, Simulator};
use tapfwd::status::TenantStatus;

struct Rig {
    /// The daemon's config text and clock, for a restart.
    text: String,
    clock: Clock,
    tenants: Vec<PodTenant>,
    sim: Simulator,
    _server: SimServer,
    running: Running,
    manual: Arc<ManualClock>,
    _dir: tempfile::TempDir,
    events: PathBuf,
    /// When the daemon started (the first live frames come after it).
    start: DateTime<Utc>,
}

/// A PoD tenant of the rig: `(tenant id, cluster id, token)`.
type PodTenant = (&'static str, &'static str, &'static str);

const TYPES: [PodType; 2] = [PodType::Message, PodType::Maillog];

async fn rig(clusters: Vec<SimPodCluster>, tenants: &[PodTenant], extra_sinks: &str) -> Rig {
    rig_pinging(clusters, tenants, extra_sinks, "30s").await
}

/// As [`rig`], with the tenants' `ping_interval` (a pong is due within half of it): steps of
/// the clock must stay shorter than that half, so that a pong is never overtaken by the clock.
async fn rig_pinging(
    clusters: Vec<SimPodCluster>,
    tenants: &[PodTenant],
    extra_sinks: &str,
    ping: &str,
) -> Rig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("POD_TEST_LOG").unwrap_or_else(|_| "off".into()))
        .with_test_writer()
        .try_init();
    let (clock, manual) = Clock::manual(t0());
    let sim = Simulator::new(
        SimConfig {
            seed: 11,
            tenants: Vec::new(),
            pod: clusters,
            ..SimConfig::default()
        },
        clock.clone(),
    );
    let server = sim.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.ndjson");
    let mut text = format!(
        "state_dir = {:?}\n[poll]\nmax_backoff = \"1m\"\n[sinks.archive]\ntype = \"file\"\npath = {:?}\n{extra_sinks}\n",
        dir.path().join("state").display().to_string(),
        events.display().to_string()
    );
    for (id, cid, token) in tenants {
        let sinks = if extra_sinks.is_empty() {
            "[\"archive\"]"
        } else {
            "[\"archive\", \"siem\"]"
        };
        text.push_str(&format!(
            "[tenants.{id}]\nproduct = \"pod\"\nbase_url = \"ws://{}\"\ncluster_id = \"{cid}\"\ntoken = \"{token}\"\nsinks = {sinks}\nping_interval = \"{ping}\"\n",
            server.addr
        ));
    }
    let running = Running::start(parse_config(&text), clock.clone()).await;
    let r = Rig {
        text: text.clone(),
        clock,
        tenants: tenants.to_vec(),
        sim,
        _server: server,
        running,
        manual,
        _dir: dir,
        events,
        start: t0(),
    };
    r.wait_all_connected().await;
    r
}

fn source(tenant: &str, kind: PodType) -> String {
    format!("{tenant}:pod.{}", kind.as_str())
}

fn stream_of(s: &[TenantStatus], id: &str) -> Option<TenantStatus> {
    s.iter().find(|t| t.tenant == id).cloned()
}

/// The file sink's position of stream `id`, as the running daemon's `/status` on `port` gives
/// it; none while the endpoint does not answer or lists no such stream.
async fn admin_positions(port: u16, id: &str) -> Option<DateTime<Utc>> {
    let bytes = reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .ok()?
        .bytes()
        .await
        .ok()?;
    let body: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let tenants: Vec<TenantStatus> = serde_json::from_value(body["tenants"].clone()).ok()?;
    let t = stream_of(&tenants, id)?;
    Some(parse_ms(&t.sinks.first()?.checkpoint))
}

fn parse_ms(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .with_timezone(&Utc)
}

fn parse_ts(ts: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(ts, "%Y-%m-%dT%H:%M:%S%.f%z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

impl Rig {
    /// Stops the daemon cleanly, moves the clock on by `down`, and starts it again on the same
    /// state; returns once every stream is connected again.
    async fn restart(mut self, down: Duration) -> Rig {
        self.running.stop().await;
        self.manual.advance(down);
        self.running = Running::start(parse_config(&self.text), self.clock.clone()).await;
        self.wait_all_connected().await;
        self
    }

    /// Waits until every stream of every tenant is connected.
    async fn wait_all_connected(&self) {
        for (id, _, _) in &self.tenants {
            for kind in TYPES {
                self.wait_connected(&source(id, kind)).await;
            }
        }
    }

    /// Waits until every stream of `tenant` is connected again after the service came back,
    /// moving the clock to each retry a stream publishes (the clock may have stepped past the
    /// service's return while a stream was still waiting out an attempt made before it), paced
    /// for the tenants still `flowing` meanwhile.
    async fn reconnect(&self, tenant: &str, flowing: &[PodTenant]) {
        let flowing: Vec<(PodTenant, PodType)> = flowing
            .iter()
            .flat_map(|t| TYPES.map(|kind| (*t, kind)))
            .collect();
        for kind in TYPES {
            let id = source(tenant, kind);
            for _ in 0..30 {
                let st = self.status(&id);
                if st.stream.as_ref().is_some_and(|s| s.connected) {
                    break;
                }
                let retry = st.next_poll_at.clone();
                if let Some(at) = retry.as_deref().map(parse_ms) {
                    self.advance_to(at, &flowing).await;
                }
                self.running
                    .wait_for(
                        &format!("{id} to connect or publish its next attempt"),
                        |s| {
                            stream_of(s, &id).is_some_and(|t| {
                                t.stream.unwrap_or_default().connected
                                    || (t.next_poll_at.is_some() && t.next_poll_at != retry)
                            })
                        },
                    )
                    .await;
            }
            self.wait_connected(&id).await;
        }
    }

    async fn wait_connected(&self, id: &str) {
        self.running
            .wait_for(&format!("{id} to connect"), |s| {
                stream_of(s, id).is_some_and(|t| t.stream.is_some_and(|st| st.connected))
            })
            .await;
    }

    /// The ts of the last frame of `kind` the simulator has sent live by now (the latest made
    /// by now, unless the cluster sends frames out of `ts` order).
    fn latest_truth(&self, cid: &str, kind: PodType) -> Option<DateTime<Utc>> {
        let f = self.sim.pod_last_sent(cid, kind, self.manual.now())?;
        let v: serde_json::Value = serde_json::from_slice(&f).unwrap();
        parse_ts(v["ts"].as_str()?)
    }

    /// Advances the clock `steps` times by `step`; after each step, waits until every connected
    /// stream in `flowing` has received the last frame sent by then (so pings and pongs keep
    /// pace with the clock).
    async fn step(&self, step: Duration, steps: usize, flowing: &[PodTenant]) {
        for _ in 0..steps {
            self.manual.advance(step);
            for t in flowing {
                for kind in TYPES {
                    self.pace(*t, kind).await;
                }
            }
        }
    }

    /// Moves the clock to `at` (if later) in steps of at most 10 s, each paced as in
    /// [`Rig::step`] for the streams `flowing`: one jump past a flowing connection's pong
    /// deadline (15 s after a ping at the rig's 30 s ping interval) could drop it as silent
    /// before its pong was read.
    async fn advance_to(&self, at: DateTime<Utc>, flowing: &[(PodTenant, PodType)]) {
        while self.manual.now() < at {
            let left = (at - self.manual.now()).to_std().unwrap_or_default();
            self.manual.advance(left.min(Duration::from_secs(10)));
            for (t, kind) in flowing {
                self.pace(*t, *kind).await;
            }
        }
    }

    /// Waits until stream `kind` of `t`, if connected, has received the last frame sent by now.
    async fn pace(&self, t: PodTenant, kind: PodType) {
        let (tenant, cid, _) = t;
        let Some(want) = self.latest_truth(cid, kind) else {
            return;
        };
        let id = source(tenant, kind);
        self.running
            .wait_for(&format!("{id} to receive the frame of {want}"), |s| {
                stream_of(s, &id).is_some_and(|t| {
                    let st = t.stream.unwrap_or_default();
                    !st.connected
                        || st
                            .last_frame_ts
                            .as_deref()
                            .and_then(parse_ts)
                            .is_some_and(|ts| ts >= want)
                })
            })
            .await;
    }

    /// Drops both connections of `t`, each losing the next `n` frames in flight, and waits until
    /// each stream has noticed: the clock must not move before the service has counted the lost
    /// frames as sent, or it could send more frames first and lose later ones.
    async fn drop_losing(&self, t: PodTenant, n: u32) {
        for kind in TYPES {
            let id = source(t.0, kind);
            let before = self.status(&id).stream.unwrap_or_default().reconnects;
            assert!(self.sim.pod_fault(t.2, kind, PodFault::DropLosing(n)));
            self.running
                .wait_for(&format!("{id} to notice the drop"), |s| {
                    stream_of(s, &id).is_some_and(|t| {
                        let st = t.stream.unwrap_or_default();
                        !st.connected || st.reconnects > before
                    })
                })
                .await;
        }
    }

    /// Waits until every sink of `id` stands at `at` or later.
    async fn wait_position(&self, id: &str, at: DateTime<Utc>) {
        let at = at.timestamp();
        self.running
            .wait_for(&format!("{id} to reach {at}"), |s| {
                stream_of(s, id).is_some_and(|t| {
                    !t.sinks.is_empty()
                        && t.sinks.iter().all(|k| {
                            DateTime::parse_from_rfc3339(&k.checkpoint)
                                .is_ok_and(|c| c.timestamp() >= at)
                        })
                })
            })
            .await;
    }

    fn status(&self, id: &str) -> TenantStatus {
        self.running.board.get(id).expect("source has a status")
    }

    /// Every frame of `kind` from the start up to `to` landed in the file sink exactly once,
    /// byte for byte, and nothing landed that the stream did not send.
    fn assert_file_exact(&self, tenant: &str, cid: &str, kind: PodType, to: DateTime<Utc>) {
        let event_type = kind_name(kind);
        let lines = read_lines(&self.events);
        let mut got: HashMap<Vec<u8>, usize> = HashMap::new();
        for l in lines
            .iter()
            .filter(|l| l.tenant == tenant && l.event_type == event_type)
        {
            *got.entry(l.raw.clone()).or_default() += 1;
        }
        let dups = got.values().filter(|n| **n > 1).count();
        assert_eq!(dups, 0, "{tenant} {event_type}: {dups} frames landed twice");
        let truth = self.sim.pod_frames(cid, kind, self.start, to);
        assert!(
            truth.len() > 10,
            "the test streamed too little: {}",
            truth.len()
        );
        let missing: Vec<_> = truth.iter().filter(|f| !got.contains_key(*f)).collect();
        assert!(
            missing.is_empty(),
            "{tenant} {event_type}: {} of {} frames missing, first {}",
            missing.len(),
            truth.len(),
            String::from_utf8_lossy(missing[0])
        );
        let all: HashSet<Vec<u8>> = self
            .sim
            .pod_frames(
                cid,
                kind,
                self.start - chrono::Duration::hours(3),
                self.manual.now() + chrono::Duration::seconds(1),
            )
            .into_iter()
            .collect();
        let foreign = got.keys().filter(|k| !all.contains(*k)).count();
        assert_eq!(
            foreign, 0,
            "{tenant} {event_type}: frames the stream never sent"
        );
    }

    /// Every sink of every type of `tenant` reaches the clock's now minus two seconds, then the
    /// file holds exactly the ground truth up to there.
    async fn settle_and_check(&self, tenant: &str, cid: &str) {
        let to = self.manual.now() - chrono::Duration::seconds(2);
        self.settle_and_check_to(tenant, cid, to).await;
    }

    /// [`Rig::settle_and_check`] up to `to`.
    async fn settle_and_check_to(&self, tenant: &str, cid: &str, to: DateTime<Utc>) {
        for kind in TYPES {
            self.wait_position(&source(tenant, kind), to).await;
            self.assert_file_exact(tenant, cid, kind, to);
        }
    }

    /// No session of `token` was ever refused for another one being open.
    fn assert_no_409(&self, token: &str) {
        let refused = self
            .sim
            .pod_log(token)
            .iter()
            .filter(|l| l.status == 409)
            .count();
        assert_eq!(refused, 0, "the daemon opened two sessions on one token");
    }
}

/// The raw event of a file sink line (none for a line a kill cut short).
fn event_of(line: &[u8]) -> Option<&[u8]> {
    let tag = b",\"event\":";
    let at = line.windows(tag.len()).position(|w| w == tag)?;
    line[at + tag.len()..].strip_suffix(b"}")
}

fn kind_name(kind: PodType) -> &'static str {
    match kind {
        PodType::Message => "podMessage",
        PodType::Maillog => "podMaillog",
        PodType::Audit => "podAudit",
    }
}

const ACME: PodTenant = ("acme-pod", "acme_hosted", "tok-acme-0001");
const GLOBEX: PodTenant = ("globex-pod", "globex_hosted", "tok-globex-0002");

fn cluster(t: PodTenant, per_minute: u32) -> SimPodCluster {
    let mut c = SimPodCluster::new(t.1, t.2, per_minute);
    c.duplicate_every = 7;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_live_stream_lands_exactly_once_with_duplicate_frames_dropped() {
    let r = rig(vec![cluster(ACME, 120)], &[ACME], "").await;
    r.step(Duration::from_secs(1), 300, &[ACME]).await;
    r.settle_and_check(ACME.0, ACME.1).await;
    let st = r.status(&source(ACME.0, PodType::Message));
    let stream = st.stream.unwrap();
    assert!(stream.connected);
    assert_eq!(stream.reconnects, 0);
    assert!(
        st.sinks[0].deduplicated > 0,
        "the simulator sent duplicate frames; the engine must have dropped them"
    );
    r.assert_no_409(ACME.2);
    r.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_minute_drop_loses_nothing_and_the_other_tenant_is_unaffected() {
    let r = rig(
        vec![cluster(ACME, 120), cluster(GLOBEX, 120)],
        &[ACME, GLOBEX],
        "",
    )
    .await;
    r.step(Duration::from_secs(1), 60, &[ACME, GLOBEX]).await;
    // Both of acme's connections end abnormally with frames still in flight (lost with the
    // connection; the service counts them as sent), and the service is down for 5 minutes.
    for kind in TYPES {
        assert!(r.sim.pod_fault(ACME.2, kind, PodFault::DropLosing(5)));
    }
    r.sim.pod_set_down(ACME.2, true);
    r.step(Duration::from_secs(1), 300, &[GLOBEX]).await;
    r.sim.pod_set_down(ACME.2, false);
    // Reconnects within the backoff's cap (1 minute here), replaying from where it dropped.
    r.step(Duration::from_secs(5), 24, &[GLOBEX]).await;
    r.reconnect(ACME.0, &[GLOBEX]).await;
    // The lost frames come from the archive once it serves them (30 minutes on).
    r.step(Duration::from_secs(10), 200, &[ACME, GLOBEX]).await;
    r.settle_and_check(ACME.0, ACME.1).await;
    r.settle_and_check(GLOBEX.0, GLOBEX.1).await;
    for kind in TYPES {
        let acme = r.status(&source(ACME.0, kind)).stream.unwrap();
        assert!(acme.reconnects >= 2, "{acme:?}"); // after the drop, after the catch-up
        assert!(acme.archive_catchups >= 1, "{acme:?}");
        let globex = r.status(&source(GLOBEX.0, kind)).stream.unwrap();
        assert_eq!(
            (globex.reconnects, globex.archive_catchups),
            (0, 0),
            "globex shares nothing with acme: {globex:?}"
        );
    }
    r.assert_no_409(ACME.2);
    r.assert_no_409(GLOBEX.2);
    let archive_sessions = r
        .sim
        .pod_log(ACME.2)
        .iter()
        .filter(|l| l.archive.is_some() && l.status == 101)
        .count();
    assert!(
        archive_sessions >= 2,
        "one archive window per type at least"
    );
    r.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_hour_drop_is_closed_from_the_archive_beyond_the_replay_hour() {
    let r = rig(vec![cluster(ACME, 60)], &[ACME], "").await;
    r.step(Duration::from_secs(1), 60, &[ACME]).await;
    for kind in TYPES {
        assert!(r.sim.pod_fault(ACME.2, kind, PodFault::DropLosing(3)));
    }
    r.sim.pod_set_down(ACME.2, true);
    r.step(Duration::from_secs(60), 120, &[]).await;
    r.sim.pod_set_down(ACME.2, false);
    // The reconnect replays only the last hour; the hour before it comes from the archive.
    r.step(Duration::from_secs(10), 12, &[]).await;
    r.reconnect(ACME.0, &[]).await;
    r.step(Duration::from_secs(10), 30, &[ACME]).await;
    r.settle_and_check(ACME.0, ACME.1).await;
    let log = r.sim.pod_log(ACME.2);
    assert!(
        log.iter().any(|l| l.archive.is_some() && l.status == 101),
        "the span before the replay hour needs archive sessions"
    );
    r.assert_no_409(ACME.2);
    r.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_detected_by_its_missing_pong_and_the_409_is_waited_out() {
    let r = rig(vec![cluster(ACME, 60)], &[ACME], "").await;
    r.step(Duration::from_secs(1), 40, &[ACME]).await;
    let id = source(ACME.0, PodType::Message);
    // The server stops sending and reading: no frames, no pongs, and it holds the token's
    // session until its 5-minute idle timeout.
    assert!(r.sim.pod_fault(ACME.2, PodType::Message, PodFault::Stall));
    let stalled_at = r.manual.now();
    // Step the clock to each deadline the daemon publishes (the next ping, then its pong's),
    // until it gives the connection up.
    for _ in 0..4 {
        let st = r.status(&id).stream.unwrap();
        if !st.connected {
            break;
        }
        let (deadline, before) = match (&st.pong_due_at, &st.next_ping_at) {
            (Some(due), _) => (due.clone(), st.clone()),
            (None, Some(ping)) => (ping.clone(), st.clone()),
            (None, None) => panic!("a connected stream publishes its next ping: {st:?}"),
        };
        // The maillog stream keeps flowing: the clock goes there in paced steps.
        r.advance_to(parse_ms(&deadline), &[(ACME, PodType::Maillog)])
            .await;
        r.running
            .wait_for("the daemon to act on its ping deadline", |s| {
                stream_of(s, &id).is_some_and(|t| {
                    let now = t.stream.unwrap_or_default();
                    !now.connected
                        || now.pong_due_at != before.pong_due_at
                        || now.next_ping_at != before.next_ping_at
                })
            })
            .await;
    }
    // Disconnected, waiting to retry (both published at once).
    r.running
        .wait_for("the stream to wait for its retry", |s| {
            stream_of(s, &id).is_some_and(|t| t.next_poll_at.is_some())
        })
        .await;
    let st = r.status(&id);
    assert!(!st.stream.as_ref().unwrap().connected, "{st:?}");
    // Ping every 30 s, a pong due within 15 s: the silence is noticed within 45 s.
    let detected = r.manual.now();
    assert!(
        detected - stalled_at <= chrono::Duration::seconds(45),
        "noticed after {}",
        detected - stalled_at
    );
    assert!(
        st.last_error
            .as_deref()
            .is_some_and(|e| e.contains("no pong")),
        "{st:?}"
    );
    // Reconnecting finds the server still holding the stalled session: 409s, each waited out
    // with the backoff, until the server's idle timeout ends that session.
    for _ in 0..30 {
        let st = r.status(&id);
        if st.stream.as_ref().unwrap().connected {
            break;
        }
        let retry = st
            .next_poll_at
            .clone()
            .expect("a waiting stream publishes its retry");
        r.advance_to(parse_ms(&retry), &[(ACME, PodType::Maillog)])
            .await;
        r.running
            .wait_for("the next connection attempt", |s| {
                stream_of(s, &id).is_some_and(|t| {
                    t.stream.unwrap_or_default().connected
                        || t.next_poll_at.as_ref().is_some_and(|n| *n != retry)
                })
            })
            .await;
    }
    r.wait_connected(&id).await;
    let refused: Vec<_> = r
        .sim
        .pod_log(ACME.2)
        .into_iter()
        .filter(|l| l.kind == PodType::Message && l.status == 409)
        .map(|l| l.at)
        .collect();
    assert!(
        !refused.is_empty(),
        "the stalled session was still open: a 409 was expected; stalled at {stalled_at}, detected at {detected}: {:#?}",
        r.sim.pod_log(ACME.2)
    );
    assert!(
        refused.len() <= 12,
        "{} refused attempts in 5 minutes: the 409s were not backed off",
        refused.len()
    );
    for w in refused.windows(2) {
        assert!(
            w[1] - w[0] >= chrono::Duration::seconds(5),
            "409s {} apart",
            w[1] - w[0]
        );
    }
    assert_eq!(
        r.status(&id).stream.unwrap().sessions_refused,
        refused.len() as u64
    );
    // Never two sessions of ours at once: every accepted live session began after the previous
    // one had ended, which the simulator enforces by refusing; the maillog stream, never
    // stalled, was never refused.
    assert!(r
        .sim
        .pod_log(ACME.2)
        .iter()
        .all(|l| l.kind == PodType::Message || l.status != 409));
    // The stalled span comes back from the archive.
    r.step(Duration::from_secs(10), 200, &[ACME]).await;
    r.settle_and_check(ACME.0, ACME.1).await;
    r.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_down_longer_than_the_replay_hour_recovers_from_the_archive() {
    let fake = support::fakes::Fake::default();
    for _ in 0..100_000 {
        fake.push_fault(support::fakes::Fault::new(503, "maintenance"));
    }
    let addr = support::fakes::plain(&fake).await;
    let siem = format!(
        "[sinks.siem]\ntype = \"http\"\nurl = \"http://{addr}/ingest\"\nretry = {{ initial_backoff = \"10ms\", max_backoff = \"20ms\", max_time = \"100ms\" }}\n"
    );
    // Pinged every 2 minutes, so the clock can move 30 s a step.
    let r = rig_pinging(vec![cluster(ACME, 60)], &[ACME], &siem, "2m").await;
    // Seventy minutes with the SIEM down (longer than the replay hour); the file sink keeps
    // taking the stream.
    r.step(Duration::from_secs(30), 140, &[ACME]).await;
    let id = source(ACME.0, PodType::Message);
    let siem_status = r
        .status(&id)
        .sinks
        .into_iter()
        .find(|s| s.sink == "siem")
        .unwrap();
    assert!(siem_status.failing, "{siem_status:?}");
    assert_eq!(siem_status.delivered, 0, "{siem_status:?}");
    // Connected and streaming, but not "ok" at the top of status while a sink fails.
    for kind in TYPES {
        let st = r.status(&source(ACME.0, kind));
        assert_eq!(st.state, "degraded", "{kind:?}: {st:?}");
    }
    // The failing SIEM holds only its own stream: the file sink kept up with the live stream.
    for kind in TYPES {
        let st = r.status(&source(ACME.0, kind));
        let archive = st.sinks.iter().find(|s| s.sink == "archive").unwrap();
        assert!(archive.behind_seconds <= 60, "{kind:?}: {archive:?}");
    }
    assert!(
        siem_status.behind_seconds >= 65 * 60,
        "status shows how far behind the sink is: {siem_status:?}"
    );
    fake.with(|s| s.faults.clear());
    // Back: it takes the live stream again at once and the 70 minutes it missed from the
    // archive once the archive serves them (30 minutes on).
    r.step(Duration::from_secs(30), 70, &[ACME]).await;
    r.settle_and_check(ACME.0, ACME.1).await;
    for kind in TYPES {
        let st = r.status(&source(ACME.0, kind));
        assert_eq!(st.state, "ok", "{kind:?}: {st:?}");
    }
    let to = r.manual.now() - chrono::Duration::seconds(2);
    for kind in TYPES {
        let truth: Vec<serde_json::Value> = r
            .sim
            .pod_frames(ACME.1, kind, r.start, to)
            .iter()
            .map(|f| serde_json::from_slice(f).unwrap())
            .collect();
        let mut got: HashMap<String, usize> = HashMap::new();
        for e in fake.events() {
            if e["tenant"] == ACME.0 && e["eventType"] == kind_name(kind) {
                *got.entry(e["event"].to_string()).or_default() += 1;
            }
        }
        assert!(
            got.values().all(|n| *n == 1),
            "a frame reached the SIEM twice"
        );
        let missing = truth
            .iter()
            .filter(|t| !got.contains_key(&t.to_string()))
            .count();
        assert_eq!(
            missing,
            0,
            "{missing} of {} frames never reached the SIEM",
            truth.len()
        );
    }
    r.assert_no_409(ACME.2);
    r.running.stop().await;
}

/// Frames out of `ts` order (each sent up to 2.5 s after its `ts`, as from a cluster's several
/// sending agents) across four drops that each lose frames in flight: every frame lands exactly
/// once, those older than the position the sink had reached included. The archive catch-up starts
/// `max_disorder` (1 minute by default) before the position and reaches as far past where live
/// coverage restarted, so no frame within that bound is lost. (At 35b0bbe the catch-up dropped
/// archive frames older than the position: one frame of 4,270 was lost.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_out_of_ts_order_are_not_lost_across_drops() {
    let mut c = cluster(ACME, 120);
    c.disorder = Duration::from_millis(2500);
    let r = rig(vec![c], &[ACME], "").await;
    r.step(Duration::from_secs(1), 20, &[ACME]).await;
    for _ in 0..4 {
        r.reconnect(ACME.0, &[]).await;
        r.drop_losing(ACME, 8).await;
        // The service counts the lost frames as sent (their send times run up to 7 s ahead):
        // the clock passes them before the stream is expected to receive the frames after
        // them, once it has reconnected after its backoff.
        r.step(Duration::from_secs(1), 10, &[]).await;
        r.reconnect(ACME.0, &[]).await;
        r.step(Duration::from_secs(1), 20, &[ACME]).await;
    }
    // The spans around the drops come from the archive once it serves them (30 minutes on).
    r.step(Duration::from_secs(10), 200, &[ACME]).await;
    // Frames up to now minus the disorder have all been sent.
    let to = r.manual.now() - chrono::Duration::seconds(5);
    r.settle_and_check_to(ACME.0, ACME.1, to).await;
    for kind in TYPES {
        let st = r.status(&source(ACME.0, kind)).stream.unwrap();
        assert!(st.reconnects >= 4, "{kind:?}: {st:?}");
        assert!(st.archive_catchups >= 1, "{kind:?}: {st:?}");
    }
    r.assert_no_409(ACME.2);
    r.running.stop().await;
}

/// The real binary, killed with SIGKILL three times at random points of a live stream (on the
/// system clock, the simulator's archive only 3 seconds stale), then run until it has closed
/// every gap: each frame from the first on lands exactly once, byte for byte. The stream is in
/// `ts` order and the tenant says so (`max_disorder = "0s"`): with a margin for disorder, a
/// stream killed in its first minute also fetches the frames of up to that margin before its
/// first frame (in a stream out of order, frames sent after the first one), which the check of
/// "nothing before the first frame" below would count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_three_times_then_exactly_once() {
    use std::process::{Command, Stdio};
    use support::daemon::tapfwd;

    let mut c = SimPodCluster::new(ACME.1, ACME.2, 300);
    c.duplicate_every = 7;
    c.archive_lag = Duration::from_secs(3);
    let sim = Simulator::new(
        SimConfig {
            seed: 12,
            tenants: Vec::new(),
            pod: vec![c],
            ..SimConfig::default()
        },
        Clock::System,
    );
    let server = sim.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let scratch = Scratch::new();
    let events = scratch.path("events.ndjson");
    let config = scratch.path("tapfwd.toml");
    let text = format!(
            "state_dir = {:?}\n[sinks.archive]\ntype = \"file\"\npath = {:?}\n[tenants.{}]\nproduct = \"pod\"\nbase_url = \"ws://{}\"\ncluster_id = \"{}\"\ntoken = \"{}\"\nsinks = [\"archive\"]\nping_interval = \"20s\"\narchive_lag = \"3s\"\nmax_disorder = \"0s\"\n",
            scratch.path("state").display().to_string(),
            events.display().to_string(),
            ACME.0,
            server.addr,
            ACME.1,
            ACME.2
        );
    std::fs::write(&config, &text).unwrap();
    // The last run answers `/status`, so that the test sees its positions reach the target.
    let admin = support::daemon::free_port();
    let last_config = scratch.path("last.toml");
    std::fs::write(
        &last_config,
        format!("admin_listen = \"127.0.0.1:{admin}\"\n{text}"),
    )
    .unwrap();
    // Every run's log, one after the other, for the failure messages below.
    let spawn = |config: &PathBuf| {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(scratch.path("run.log"))
            .unwrap();
        tapfwd()
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tapfwd runs")
    };
    // Lines in the file so far (a line cut by a kill is not counted).
    let count = |path: &PathBuf| -> usize {
        std::fs::read(path)
            .unwrap_or_default()
            .split(|b| *b == b'\n')
            .filter(|l| l.ends_with(b"}"))
            .count()
    };
    let log_tail = || {
        let log = std::fs::read_to_string(scratch.path("run.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    };
    // What the last look at the file still missed, for the message of a wait that times out.
    let missing_now = std::sync::Mutex::new(String::new());
    let wait_until = |what: &str, mut done: Box<dyn FnMut() -> bool + Send + '_>| {
        let start = std::time::Instant::now();
        while !done() {
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for {what} {}; the daemon's log ends:\n{}",
                missing_now.lock().unwrap(),
                log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Kill points: after a random number of new lines each time (10 frames a second flow).
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut kills = Vec::new();
    for _ in 0..3 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let more = 10 + (seed % 60) as usize;
        let target = count(&events) + more;
        let mut child = spawn(&config);
        tokio::task::block_in_place(|| {
            wait_until("the file to grow", Box::new(|| count(&events) >= target))
        });
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills.push(more);
    }
    // Run on until every frame from the first session to a few seconds after this start has
    // landed (the gaps of the kills are closed from the archive) and each stream's position has
    // reached it: frames can be in the file before the archive catch-up that confirms the span
    // has run, and a position moves only then.
    let first = sim
        .pod_log(ACME.2)
        .iter()
        .filter(|l| l.status == 101 && l.archive.is_none())
        .map(|l| l.at)
        .min()
        .expect("the daemon connected");
    let mut child = spawn(&last_config);
    let until = Utc::now() + chrono::Duration::seconds(8);
    let truth_to = |to: DateTime<Utc>| -> Vec<Vec<u8>> {
        TYPES
            .iter()
            .flat_map(|k| sim.pod_frames(ACME.1, *k, first, to))
            .collect()
    };
    tokio::task::block_in_place(|| {
        wait_until(
            "every frame to the target",
            Box::new(|| {
                if Utc::now() < until + chrono::Duration::seconds(1) {
                    return false;
                }
                let data = std::fs::read(&events).unwrap_or_default();
                let got: HashSet<&[u8]> =
                    data.split(|b| *b == b'\n').filter_map(event_of).collect();
                let missing: Vec<String> = truth_to(until)
                    .iter()
                    .filter(|f| !got.contains(f.as_slice()))
                    .map(|f| String::from_utf8_lossy(&f[..f.len().min(120)]).into_owned())
                    .collect();
                *missing_now.lock().unwrap() = format!(
                    "({} frames missing, the first: {:?})",
                    missing.len(),
                    missing.first()
                );
                if !missing.is_empty() {
                    return false;
                }
                let positions = tokio::runtime::Handle::current()
                    .block_on(admin_positions(admin, &source(ACME.0, PodType::Message)))
                    .into_iter()
                    .chain(
                        tokio::runtime::Handle::current()
                            .block_on(admin_positions(admin, &source(ACME.0, PodType::Maillog))),
                    )
                    .collect::<Vec<_>>();
                *missing_now.lock().unwrap() = format!("(positions {positions:?})");
                positions.len() == 2
                    && positions
                        .iter()
                        .all(|p| *p >= until - chrono::Duration::seconds(1))
            }),
        )
    });
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        child.wait().unwrap().success(),
        "tapfwd exits cleanly on SIGTERM"
    );
    // The stopped daemon's status lists each log type with its file-sink checkpoint.
    let out = tapfwd()
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: Vec<TenantStatus> = serde_json::from_slice(&out.stdout).unwrap();
    for kind in TYPES {
        let t = stream_of(&status, &source(ACME.0, kind)).expect("a status line per log type");
        let cp = parse_ms(&t.sinks[0].checkpoint);
        assert!(
            cp >= until - chrono::Duration::seconds(1),
            "{t:?}; the daemon's log ends:\n{}",
            log_tail()
        );
    }

    let lines = read_lines(&events);
    let mut got: HashMap<Vec<u8>, usize> = HashMap::new();
    for l in &lines {
        assert_eq!(l.tenant, ACME.0);
        *got.entry(l.raw.clone()).or_default() += 1;
    }
    let twice = got.values().filter(|n| **n > 1).count();
    assert_eq!(
        twice, 0,
        "{twice} frames landed twice (kills after {kills:?} lines)"
    );
    let truth = truth_to(until);
    let missing = truth.iter().filter(|f| !got.contains_key(*f)).count();
    assert_eq!(missing, 0, "{missing} of {} frames missing", truth.len());
    // Nothing before the first frame (the archive's hour windows start earlier) and nothing the
    // stream never sent.
    let all: HashSet<Vec<u8>> = TYPES
        .iter()
        .flat_map(|k| {
            sim.pod_frames(
                ACME.1,
                *k,
                first - chrono::Duration::milliseconds(5),
                Utc::now(),
            )
        })
        .collect();
    let foreign = got.keys().filter(|k| !all.contains(*k)).count();
    assert_eq!(
        foreign, 0,
        "{foreign} frames from before the first session or never sent"
    );
    // The frames each kill cut off in flight came from the archive: at least one archive
    // session per log type.
    for kind in TYPES {
        let archive = sim
            .pod_log(ACME.2)
            .iter()
            .filter(|l| l.kind == kind && l.status == 101 && l.archive.is_some())
            .count();
        assert!(
            archive >= 1,
            "{kind:?}: the kills' gaps need archive sessions"
        );
    }
    drop(server);
}

/// Down for three hours with a two-hour archive horizon: the hour past the horizon is reported
/// as a gap (status, last error) and skipped, never asked for; the rest comes from the archive
/// and the replay, each frame once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_past_the_archive_horizon_is_reported_and_the_rest_fetched_once() {
    let r = rig_pinging(vec![cluster(ACME, 60)], &[ACME], "", "30s").await;
    let text = r.text.replace(
        "ping_interval = ",
        "archive_horizon = \"2h\"\nping_interval = ",
    );
    let r = Rig { text, ..r };
    r.step(Duration::from_secs(1), 60, &[ACME]).await;
    let stopped_at = r.manual.now();
    let r = r.restart(Duration::from_secs(3 * 3600)).await;
    let horizon = r.manual.now() - chrono::Duration::hours(2);
    r.step(Duration::from_secs(10), 200, &[ACME]).await;
    let to = r.manual.now() - chrono::Duration::seconds(2);
    for kind in TYPES {
        let id = source(ACME.0, kind);
        r.wait_position(&id, to).await;
        let st = r.status(&id);
        let gap = st.sinks[0].gap_seconds;
        let want = (horizon - stopped_at).num_seconds();
        assert!(
            (want - 5..=want + 5).contains(&gap),
            "{kind:?}: gap of {gap} s reported, {want} s expected: {st:?}"
        );
        let lines = read_lines(&r.events);
        let mut got: HashMap<Vec<u8>, usize> = HashMap::new();
        for l in lines.iter().filter(|l| l.event_type == kind_name(kind)) {
            *got.entry(l.raw.clone()).or_default() += 1;
        }
        assert!(
            got.values().all(|n| *n == 1),
            "{kind:?}: a frame landed twice"
        );
        // Before the stop, and from the horizon on: every frame.
        let before = r.sim.pod_frames(
            ACME.1,
            kind,
            r.start,
            stopped_at - chrono::Duration::seconds(2),
        );
        let after = r
            .sim
            .pod_frames(ACME.1, kind, horizon + chrono::Duration::seconds(1), to);
        for (span, truth) in [("before the stop", &before), ("after the horizon", &after)] {
            let missing = truth.iter().filter(|f| !got.contains_key(*f)).count();
            assert_eq!(
                missing,
                0,
                "{kind:?} {span}: {missing} of {} missing",
                truth.len()
            );
        }
        // Inside the skipped hour: nothing (it was never asked for).
        let skipped = r.sim.pod_frames(
            ACME.1,
            kind,
            stopped_at + chrono::Duration::seconds(2),
            horizon - chrono::Duration::seconds(2),
        );
        assert!(skipped.len() > 3000);
        let fetched = skipped.iter().filter(|f| got.contains_key(*f)).count();
        assert_eq!(fetched, 0, "{kind:?}: frames past the horizon were fetched");
    }
    let asked_past_horizon = r
        .sim
        .pod_log(ACME.2)
        .iter()
        .filter_map(|l| l.archive.clone())
        .filter(|(since, _)| {
            DateTime::parse_from_rfc3339(since).unwrap() < horizon - chrono::Duration::hours(1)
        })
        .count();
    assert_eq!(
        asked_past_horizon, 0,
        "an archive window reached past the horizon"
    );
    r.assert_no_409(ACME.2);
    r.running.stop().await;
}
