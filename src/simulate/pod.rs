//! The simulated Proofpoint on Demand (PoD) log stream (proofpoint-feeds.md, PoD section).
//!
//! `GET /v1/stream?cid=CLUSTER&type=message|maillog|audit` with `Authorization: Bearer TOKEN`,
//! upgraded to a WebSocket; one JSON event per text frame. Modelled:
//! - **Auth**: the token must be a configured cluster's and `cid` that cluster's id, else 401;
//!   an unknown `type` or a missing `cid` is a 400; a plain request without the WebSocket upgrade
//!   headers is a 400.
//! - **One session per token and type**: while a session of (token, type) is open, another gets
//!   HTTP 409 `Exceeded maximum number of sessions per token` (an archive session counts).
//! - **Live mode** (no time parameters): frames are sent as the clock passes their send time: their
//!   `ts`, or with `disorder` a seeded delay of up to that much after it, so that frames go out of
//!   `ts` order (a cluster has several sending agents). The first session of a token starts at
//!   now. A reconnect within an hour of the drop resumes after the last frame the dropped session
//!   sent (frames written but not read by the client are lost with the connection, as on the real
//!   service); after more than an hour only the last hour is replayed. Every `duplicate_every`th
//!   live frame is sent twice.
//! - **Pings**: a session answers each ping with a pong; one that received no ping (or other
//!   frame) for `idle_timeout` is dropped.
//! - **Archive mode** (`sinceTime` and `toTime`, RFC 3339): both rounded out to the hour, frames
//!   `since ≤ ts < to` that are at least `archive_lag` old and within `archive_horizon`, then a
//!   normal close (1000).
//! - **Faults** ([`PodFault`]): drop the TCP connection (the client sees 1006), or stall (stop
//!   sending and stop answering pings, connection left open).
//!
//! Frames are a pure function of the seed, the cluster, the type and the minute, so
//! [`super::Simulator::pod_frames`] gives the ground truth of any span byte for byte.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Response};
use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::server::text;
use super::Simulator;
use crate::clock::Clock;
pub use crate::config::PodType;

const MINUTE_US: i64 = 60_000_000;
const HOUR_US: i64 = 3_600_000_000;
/// How far back a live reconnect replays at most.
const REPLAY_US: i64 = HOUR_US;

/// One simulated PoD cluster (one bearer token).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimPodCluster {
    /// The cluster id (`cid`).
    pub cluster_id: String,
    /// The bearer token.
    pub token: String,
    /// Frames per minute of each type. Default 60.
    #[serde(default = "default_rate")]
    pub frames_per_minute: u32,
    /// Every this many live frames one is sent twice; 0: never. Default 0.
    #[serde(default)]
    pub duplicate_every: u32,
    /// A session that received nothing (no ping) for this long is dropped. Default 5 min.
    #[serde(default = "default_idle", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How old a frame must be before archive mode serves it. Default 30 min.
    #[serde(default = "default_archive_lag", with = "humantime_serde")]
    pub archive_lag: Duration,
    /// How far back archive mode reaches. Default 30 days.
    #[serde(default = "default_horizon", with = "humantime_serde")]
    pub archive_horizon: Duration,
    /// Live frames are sent up to this long after their `ts` (a seeded delay per frame), so out
    /// of `ts` order by up to this much. Archive mode is unaffected. Default 0: in order.
    #[serde(default, with = "humantime_serde")]
    pub disorder: Duration,
}

fn default_rate() -> u32 {
    60
}
fn default_idle() -> Duration {
    Duration::from_secs(300)
}
fn default_archive_lag() -> Duration {
    Duration::from_secs(1800)
}
fn default_horizon() -> Duration {
    Duration::from_secs(30 * 86_400)
}

impl SimPodCluster {
    /// A cluster with the defaults.
    pub fn new(cluster_id: &str, token: &str, frames_per_minute: u32) -> SimPodCluster {
        SimPodCluster {
            cluster_id: cluster_id.to_string(),
            token: token.to_string(),
            frames_per_minute,
            duplicate_every: 0,
            idle_timeout: default_idle(),
            archive_lag: default_archive_lag(),
            archive_horizon: default_horizon(),
            disorder: Duration::ZERO,
        }
    }
}

/// A misbehaviour of one open session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodFault {
    /// Drop the TCP connection without a close frame (abnormal closure, 1006 at the client).
    Drop,
    /// Stop sending frames and reading (so no pong either); keep the connection open until the
    /// idle timeout ends the session, holding the token's session meanwhile.
    Stall,
    /// Count the next this many frames (in send order) as sent without sending them (lost in
    /// flight), then drop the TCP connection: the replay after a reconnect starts after them.
    DropLosing(u32),
}

/// One session request the simulator answered, for [`Simulator::pod_log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLogged {
    pub kind: PodType,
    /// `Some((since, to))` (as sent) for an archive session.
    pub archive: Option<(String, String)>,
    /// 101 for an accepted session, else the HTTP status.
    pub status: u16,
    /// Clock time of the request.
    pub at: DateTime<Utc>,
}

pub(super) struct PodCluster {
    pub(super) cfg: SimPodCluster,
    /// Seeds the frames.
    seed: u64,
    offset: FixedOffset,
    state: Mutex<PodState>,
}

#[derive(Default)]
struct PodState {
    /// The open session per type: its id and its fault channel.
    open: HashMap<PodType, (u64, mpsc::UnboundedSender<PodFault>)>,
    /// Per type: the send time (µs) of the last frame the last live session sent, and when it
    /// ended (µs).
    cursor: HashMap<PodType, (i64, i64)>,
    next_id: u64,
    log: Vec<PodLogged>,
    /// While set, every session request is answered 503 (an outage).
    down: bool,
}

impl PodCluster {
    pub(super) fn new(cfg: SimPodCluster, seed: u64) -> PodCluster {
        let seed = mix(seed, hash_str(&cfg.cluster_id));
        // Clusters live in a few time zones; ts carries the offset.
        let hours = [-7, -5, 0, 1, 9][(seed % 5) as usize];
        let offset = FixedOffset::east_opt(hours * 3600)
            .unwrap_or_else(|| FixedOffset::east_opt(0).unwrap());
        PodCluster {
            cfg,
            seed,
            offset,
            state: Mutex::new(PodState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PodState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every frame of `kind` with `from_us ≤ ts < to_us`, oldest first: `(ts µs, bytes)`.
    pub(super) fn frames(
        &self,
        kind: PodType,
        from_us: i64,
        to_us: i64,
        out: &mut Vec<(i64, Vec<u8>)>,
    ) {
        if to_us <= from_us {
            return;
        }
        for m in from_us.div_euclid(MINUTE_US)..=(to_us - 1).div_euclid(MINUTE_US) {
            for (ts, j) in self.minute_times(kind, m) {
                if ts >= from_us && ts < to_us {
                    out.push((ts, self.render(kind, ts, m, j)));
                }
            }
        }
    }

    /// The frame times of minute `m`: one per slot, at a seeded offset inside it.
    fn minute_times(&self, kind: PodType, m: i64) -> impl Iterator<Item = (i64, u32)> + '_ {
        let n = self.cfg.frames_per_minute.max(1) as i64;
        let slot = MINUTE_US / n;
        let base = mix(self.seed, kind as u64 + 1);
        (0..n).map(move |j| {
            let h = mix(mix(base, m as u64), j as u64);
            (
                m * MINUTE_US + j * slot + (h % slot.max(1) as u64) as i64,
                j as u32,
            )
        })
    }

    /// How long after its `ts` frame `j` of minute `m` is sent live (µs): a seeded share of
    /// `disorder`, 0 without it.
    fn delay(&self, kind: PodType, m: i64, j: u32) -> i64 {
        let d = self.cfg.disorder.as_micros() as i64;
        if d == 0 {
            return 0;
        }
        (mix(mix(mix(self.seed, kind as u64 + 21), m as u64), j as u64) % (d as u64 + 1)) as i64
    }

    /// Every frame of `kind` whose live send time is in `[from_us, to_us)`, in send order:
    /// `(send µs, bytes)`.
    fn frames_sent(&self, kind: PodType, from_us: i64, to_us: i64, out: &mut Vec<(i64, Vec<u8>)>) {
        if to_us <= from_us {
            return;
        }
        let d = self.cfg.disorder.as_micros() as i64;
        let mut sent = Vec::new();
        for m in (from_us - d).div_euclid(MINUTE_US)..=(to_us - 1).div_euclid(MINUTE_US) {
            for (ts, j) in self.minute_times(kind, m) {
                let at = ts + self.delay(kind, m, j);
                if at >= from_us && at < to_us {
                    sent.push((at, ts, m, j));
                }
            }
        }
        sent.sort_unstable();
        out.extend(
            sent.into_iter()
                .map(|(at, ts, m, j)| (at, self.render(kind, ts, m, j))),
        );
    }

    /// The send time of the first frame of `kind` sent live after `t` (µs).
    fn next_after(&self, kind: PodType, t: i64) -> i64 {
        let d = self.cfg.disorder.as_micros() as i64;
        let mut best = i64::MAX;
        // A frame of minute `m` is sent from the minute's start on: scan until no later minute
        // can beat the best found.
        let mut m = (t - d).div_euclid(MINUTE_US);
        while m * MINUTE_US <= best.min(t + MINUTE_US + d) {
            for (ts, j) in self.minute_times(kind, m) {
                let at = ts + self.delay(kind, m, j);
                if at > t && at < best {
                    best = at;
                }
            }
            m += 1;
        }
        if best == i64::MAX {
            t + MINUTE_US
        } else {
            best
        }
    }

    fn ts_text(&self, ts_us: i64) -> String {
        let t = Utc
            .timestamp_micros(ts_us)
            .single()
            .unwrap_or_default()
            .with_timezone(&self.offset);
        t.format("%Y-%m-%dT%H:%M:%S%.6f%z").to_string()
    }

    fn render(&self, kind: PodType, ts_us: i64, m: i64, j: u32) -> Vec<u8> {
        let h = mix(mix(mix(self.seed, kind as u64 + 11), m as u64), j as u64);
        let ts = self.ts_text(ts_us);
        let cid = &self.cfg.cluster_id;
        let qid = format!("{:08X}{:06x}", (h >> 32) as u32, h & 0xff_ffff);
        let guid = format!("{:016x}{:08x}", h, mix(h, 7) as u32);
        let user = ["alice", "bob", "carol", "dave", "erin", "frank"][(h % 6) as usize];
        let sender = [
            "billing@vendor.example",
            "noreply@bank.example",
            "ceo@acme.example",
            "\u{00e9}lodie@fr.example",
        ][((h >> 8) % 4) as usize];
        let ip = format!("203.0.113.{}", (h >> 16) % 250 + 1);
        let mut s = String::with_capacity(900);
        match kind {
            PodType::Message => {
                let subject = [
                    "Invoice #{n} overdue",
                    "Re: \\\"quarterly\\\" numbers",
                    "Your parcel {n} is waiting",
                    "Meeting notes \\u2013 week {n}",
                ][((h >> 20) % 4) as usize]
                    .replace("{n}", &((h >> 24) % 10_000).to_string());
                let disposition =
                    ["continue", "discard", "quarantine", "reject"][((h >> 28) % 4) as usize];
                let spam = (h >> 32) % 101;
                let _ = write!(
                    s,
                    r#"{{"guid":"{guid}","ts":"{ts}","connection":{{"host":"mx{}.sender.example","ip":"{ip}","protocol":"smtp:smtp","resolveStatus":"ok","sid":"{qid}s","tls":{{"inbound":{{"cipher":"ECDHE-RSA-AES256-GCM-SHA384","cipherBits":256,"version":"TLSv1.2"}}}},"country":"us"}},"envelope":{{"from":"{sender}","rcpts":["{user}@acme.example"]}},"msg":{{"header":{{"from":["\"Sender\" <{sender}>"],"subject":["{subject}"],"message-id":["<{guid}@sender.example>"]}},"lang":"en","sizeBytes":{},"parsedAddresses":{{"from":["{sender}"],"to":["{user}@acme.example"]}},"normalizedHeader":{{"subject":["{subject}"]}}}},"msgParts":[{{"contentType":"text/plain","detectedCharset":"utf-8","sizeDecodedBytes":{},"md5":"{:032x}"}}],"filter":{{"qid":"{qid}","disposition":"{disposition}","actions":[{{"action":"{disposition}","module":"spam","rule":"spamsafe"}}],"routes":["allow_relay","firewallsafe"],"quarantine":{{"folder":"{}","rule":"{}"}},"modules":{{"spam":{{"scores":{{"overall":{spam},"engine":{spam},"classifiers":{{"spam":{spam},"phish":{},"malware":0}}}},"version":{{"engine":"8.21.0-2305190000"}}}},"av":{{"virusNames":[]}}}},"origGuid":"{guid}","suborgs":{{"sender":"0","rcpts":["0"]}}}},"metadata":{{"origin":{{"data":{{"agent":"m0{}.ppops.net","cid":"{cid}","version":"8.21.0.1358"}}}}}}}}"#,
                    h % 9,
                    1000 + (h >> 12) % 90_000,
                    200 + (h >> 14) % 4000,
                    h as u128 * 0x9e37_79b9,
                    if disposition == "quarantine" {
                        "Spam"
                    } else {
                        ""
                    },
                    if disposition == "quarantine" {
                        "inbound_spam_definite"
                    } else {
                        ""
                    },
                    (h >> 40) % 101,
                    (h >> 44) % 90 + 10,
                );
            }
            PodType::Maillog => {
                let _ = write!(
                    s,
                    r#"{{"data":"{ts} m0{}.ppops.net sendmail[{}]: {qid}: from=<{sender}>, size={}, class=0, nrcpts=1, msgid=<{guid}@sender.example>, proto=ESMTP, daemon=MTA, relay=mx.sender.example [{ip}]","sm":{{"class":"0","daemon":"MTA","from":"<{sender}>","msgid":"<{guid}@sender.example>","nrcpts":"1","proto":"ESMTP","qid":"{qid}","relay":"mx.sender.example [{ip}]","sizeBytes":{}}},"tls":{{"verify":"NONE","cipher":"TLS_AES_256_GCM_SHA384","version":"TLSv1.3"}},"id":"{guid}","ts":"{ts}","pps":{{"agent":"m0{}.ppops.net","cid":"{cid}"}},"metadata":{{"origin":{{"data":{{"agent":"m0{}.ppops.net","cid":"{cid}","version":"8.21.0.1358"}}}}}}}}"#,
                    (h >> 44) % 90 + 10,
                    10_000 + (h >> 20) % 50_000,
                    1000 + (h >> 12) % 90_000,
                    1000 + (h >> 12) % 90_000,
                    (h >> 44) % 90 + 10,
                    (h >> 44) % 90 + 10,
                );
            }
            PodType::Audit => {
                let action = ["login", "policy_update", "quarantine_release", "logout"]
                    [((h >> 8) % 4) as usize];
                let _ = write!(
                    s,
                    r#"{{"guid":"{guid}","ts":"{ts}","audit":{{"action":"{action}","user":"{user}@acme.example","ip":"{ip}","module":"admin"}},"metadata":{{"origin":{{"data":{{"cid":"{cid}"}}}}}}}}"#
                );
            }
        }
        s.into_bytes()
    }
}

fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// SplitMix64 of `a` and `b`.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn now_us(clock: &Clock) -> i64 {
    clock.now().timestamp_micros()
}

fn us_to_utc(us: i64) -> DateTime<Utc> {
    Utc.timestamp_micros(us).single().unwrap_or_default()
}

impl Simulator {
    /// Ground truth: every frame of cluster `cluster_id`'s `kind` with `start ≤ ts < end`, exactly
    /// as the stream sends it, oldest first.
    pub fn pod_frames(
        &self,
        cluster_id: &str,
        kind: PodType,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<Vec<u8>> {
        let Some(c) = self
            .inner
            .pod
            .values()
            .find(|c| c.cfg.cluster_id == cluster_id)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        c.frames(
            kind,
            start.timestamp_micros(),
            end.timestamp_micros(),
            &mut out,
        );
        out.into_iter().map(|(_, f)| f).collect()
    }

    /// The frame of cluster `cluster_id`'s `kind` a live session sends last by `at` (the latest
    /// `ts` by then, unless the cluster's `disorder` holds frames back), as the stream sends it.
    pub fn pod_last_sent(
        &self,
        cluster_id: &str,
        kind: PodType,
        at: DateTime<Utc>,
    ) -> Option<Vec<u8>> {
        let c = self
            .inner
            .pod
            .values()
            .find(|c| c.cfg.cluster_id == cluster_id)?;
        let to = at.timestamp_micros() + 1;
        let mut out = Vec::new();
        c.frames_sent(kind, to - 2 * MINUTE_US, to, &mut out);
        out.pop().map(|(_, f)| f)
    }

    /// Applies `fault` to the open session of `token` and `kind`; false when none is open.
    pub fn pod_fault(&self, token: &str, kind: PodType, fault: PodFault) -> bool {
        let Some(c) = self.inner.pod.get(token) else {
            return false;
        };
        let st = c.state();
        match st.open.get(&kind) {
            Some((_, tx)) => tx.send(fault).is_ok(),
            None => false,
        }
    }

    /// Makes the stream of `token` unavailable (every session request answered 503, open
    /// sessions dropped) or available again.
    pub fn pod_set_down(&self, token: &str, down: bool) {
        if let Some(c) = self.inner.pod.get(token) {
            let mut st = c.state();
            st.down = down;
            if down {
                for (_, tx) in st.open.values() {
                    let _ = tx.send(PodFault::Drop);
                }
            }
        }
    }

    /// Whether a session of `token` and `kind` is open.
    pub fn pod_open(&self, token: &str, kind: PodType) -> bool {
        self.inner
            .pod
            .get(token)
            .is_some_and(|c| c.state().open.contains_key(&kind))
    }

    /// Every session request made with `token` (including refused ones), oldest first.
    pub fn pod_log(&self, token: &str) -> Vec<PodLogged> {
        self.inner
            .pod
            .get(token)
            .map(|c| c.state().log.clone())
            .unwrap_or_default()
    }
}

/// Releases a session's slot and records where a live session stopped.
struct Slot {
    cluster: Arc<PodCluster>,
    kind: PodType,
    id: u64,
    live: bool,
    clock: Clock,
    /// The send time of the last frame sent (µs), for the replay of the next live session.
    last_sent: i64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.cluster.state();
        if st
            .open
            .get(&self.kind)
            .is_some_and(|(id, _)| *id == self.id)
        {
            st.open.remove(&self.kind);
        }
        if self.live {
            st.cursor
                .insert(self.kind, (self.last_sent, now_us(&self.clock)));
        }
    }
}

fn query_pairs(query: &str) -> HashMap<String, String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(x) = u8::from_str_radix(&v[i + 1..i + 3], 16) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers `GET /v1/stream`: refuses, or switches protocols and runs the session on the
/// upgraded connection.
pub(super) async fn handle(
    sim: &Simulator,
    req: hyper::Request<hyper::body::Incoming>,
    stop: watch::Receiver<bool>,
) -> Response<Body> {
    let clock = sim.inner.clock.clone();
    let q = query_pairs(req.uri().query().unwrap_or(""));
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let Some(cluster) = token.as_deref().and_then(|t| sim.inner.pod.get(t)).cloned() else {
        return text(401, "Unauthorized");
    };
    let kind = q.get("type").and_then(|t| PodType::parse(t));
    let log = |status: u16, kind: PodType| {
        cluster.state().log.push(PodLogged {
            kind,
            archive: q
                .get("sinceTime")
                .zip(q.get("toTime"))
                .map(|(a, b)| (a.clone(), b.clone())),
            status,
            at: clock.now(),
        });
    };
    let Some(kind) = kind else {
        return text(400, "type must be message, maillog or audit");
    };
    if q.get("cid") != Some(&cluster.cfg.cluster_id) {
        log(401, kind);
        return text(401, "Unauthorized");
    }
    let archive = match (q.get("sinceTime"), q.get("toTime")) {
        (None, None) => None,
        (Some(a), Some(b)) => match (
            DateTime::parse_from_rfc3339(a),
            DateTime::parse_from_rfc3339(b),
        ) {
            (Ok(a), Ok(b)) => Some((a.timestamp_micros(), b.timestamp_micros())),
            _ => {
                log(400, kind);
                return text(400, "sinceTime and toTime must be ISO 8601 times");
            }
        },
        _ => {
            log(400, kind);
            return text(400, "archive mode needs both sinceTime and toTime");
        }
    };
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let Some(accept) = key.filter(|_| upgrade) else {
        log(400, kind);
        return text(400, "this endpoint speaks WebSocket only");
    };
    // The one-session rule, claimed before the 101 so two racing requests cannot both pass.
    let (faults_tx, faults) = mpsc::unbounded_channel();
    let slot = {
        let mut st = cluster.state();
        if st.down {
            drop(st);
            log(503, kind);
            return text(503, "Service Unavailable");
        }
        if st.open.contains_key(&kind) {
            drop(st);
            log(409, kind);
            return text(409, "Exceeded maximum number of sessions per token");
        }
        st.next_id += 1;
        let id = st.next_id;
        st.open.insert(kind, (id, faults_tx));
        let now = now_us(&clock);
        let start = match (archive, st.cursor.get(&kind)) {
            (Some(_), _) => 0,
            (None, Some(&(cursor, dropped))) if now - dropped <= REPLAY_US => cursor + 1,
            (None, Some(&(cursor, _))) => (cursor + 1).max(now - REPLAY_US),
            (None, None) => now,
        };
        Slot {
            cluster: cluster.clone(),
            kind,
            id,
            live: archive.is_none(),
            clock: clock.clone(),
            last_sent: start - 1,
        }
    };
    log(101, kind);
    tokio::spawn(async move {
        let Ok(upgraded) = hyper::upgrade::on(req).await else {
            return;
        };
        let ws = WebSocketStream::from_raw_socket(
            hyper_util::rt::TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        match archive {
            Some((since, to)) => run_archive(ws, slot, since, to, stop).await,
            None => run_live(ws, slot, faults, stop).await,
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = axum::http::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

type Ws = WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

async fn run_live(
    mut ws: Ws,
    mut slot: Slot,
    mut faults: mpsc::UnboundedReceiver<PodFault>,
    mut stop: watch::Receiver<bool>,
) {
    let clock = slot.clock.clone();
    let cluster = slot.cluster.clone();
    let idle = cluster.cfg.idle_timeout;
    let mut last_heard = clock.now();
    let mut stalled = false;
    let mut sent: u64 = 0;
    let mut pending = Vec::new();
    loop {
        if !stalled {
            let now = now_us(&clock);
            // A minute at a time, so an hour's replay does not sit in memory.
            while slot.last_sent < now {
                let from = slot.last_sent + 1;
                let to = ((from.div_euclid(MINUTE_US) + 1) * MINUTE_US).min(now + 1);
                pending.clear();
                cluster.frames_sent(slot.kind, from, to, &mut pending);
                for (at, frame) in pending.drain(..) {
                    let text = String::from_utf8(frame).unwrap_or_default();
                    sent += 1;
                    let twice = cluster.cfg.duplicate_every > 0
                        && sent % cluster.cfg.duplicate_every as u64 == 0;
                    if twice && ws.feed(Message::text(text.clone())).await.is_err() {
                        return;
                    }
                    if ws.feed(Message::text(text)).await.is_err() {
                        return;
                    }
                    slot.last_sent = at;
                }
                slot.last_sent = slot.last_sent.max(to - 1);
            }
            if ws.flush().await.is_err() {
                return;
            }
        }
        // Wake for the next frame (at most a second of clock time ahead), for the idle
        // deadline, for whatever the client sends, a fault or the server's stop.
        // From the last frame sent, not from now: the clock may have moved on since the frames
        // went out, and then the next one is due at once (`sleep_until` returns at once).
        let next_frame = us_to_utc(cluster.next_after(slot.kind, slot.last_sent));
        let next = next_frame
            .min(clock.now() + chrono::Duration::seconds(1))
            .min(last_heard + chrono::Duration::from_std(idle).unwrap_or_default());
        let next = if stalled {
            last_heard + chrono::Duration::from_std(idle).unwrap_or_default()
        } else {
            next
        };
        tokio::select! {
            _ = stop.changed() => return,
            fault = faults.recv() => match fault {
                Some(PodFault::Drop) | None => return, // dropping `ws` drops the TCP connection
                Some(PodFault::Stall) => stalled = true,
                Some(PodFault::DropLosing(n)) => {
                    let mut t = slot.last_sent;
                    for _ in 0..n {
                        t = cluster.next_after(slot.kind, t);
                    }
                    slot.last_sent = t;
                    return;
                }
            },
            // A stalled session does not even read (tungstenite would answer pings by itself),
            // so it notices nothing until its idle timeout, like a half-dead server.
            msg = ws.next(), if !stalled => match msg {
                Some(Ok(Message::Ping(p))) => {
                    last_heard = clock.now();
                    if ws.send(Message::Pong(p)).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) => {
                    // The session ends with the client's close: its slot is free before
                    // tungstenite's answer goes out (on the next read), so a client that
                    // reconnects once it has the answer is never refused.
                    drop(slot);
                    while let Some(Ok(_)) = ws.next().await {}
                    return;
                }
                Some(Ok(_)) => last_heard = clock.now(),
                Some(Err(_)) | None => return,
            },
            _ = clock.sleep_until(next) => {
                if clock.now() - last_heard >= chrono::Duration::from_std(idle).unwrap_or_default() {
                    return; // idle: dropped without a close frame
                }
            }
        }
    }
}

async fn run_archive(mut ws: Ws, slot: Slot, since: i64, to: i64, mut stop: watch::Receiver<bool>) {
    let clock = slot.clock.clone();
    let cluster = slot.cluster.clone();
    let now = now_us(&clock);
    let lag = cluster.cfg.archive_lag.as_micros() as i64;
    let horizon = cluster.cfg.archive_horizon.as_micros() as i64;
    let since = since.div_euclid(HOUR_US) * HOUR_US;
    let to = (to + HOUR_US - 1).div_euclid(HOUR_US) * HOUR_US;
    let from = since.max(now - horizon);
    let until = to.min(now - lag + 1);
    let mut frames = Vec::new();
    let mut m = from;
    // A minute at a time, so a long span does not sit in memory.
    while m < until {
        let end = (m.div_euclid(MINUTE_US) + 1) * MINUTE_US;
        let end = end.min(until);
        frames.clear();
        cluster.frames(slot.kind, m, end, &mut frames);
        for (_, f) in frames.drain(..) {
            if *stop.borrow() {
                return;
            }
            if ws
                .feed(Message::text(String::from_utf8(f).unwrap_or_default()))
                .await
                .is_err()
            {
                return;
            }
        }
        m = end;
    }
    // Everything is sent: the session is over for the one-session rule before the close goes
    // out, so the client's next session (once it has the close) is never refused.
    drop(slot);
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
            reason: "end of archive".into(),
        })))
        .await;
    // Wait (briefly) for the client's close answer, then let the slot go.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                msg = ws.next() => if !matches!(msg, Some(Ok(_))) { return },
            }
        }
    })
    .await;
}
