//! The built-in Proofpoint TAP SIEM API simulator, used by the demo, the tests and the benchmarks
//! instead of a real Proofpoint account.
//!
//! It reads time only through [`Clock`], so a test drives it with a manual clock; the same seed
//! always produces the same events. Modelled rules of `tap-api.md` (SIEM API section):
//!
//! - **Paths**: `/v2/siem/{all,messages/blocked,messages/delivered,clicks/blocked,clicks/permitted,
//!   issues}`; `issues` = delivered messages + permitted clicks. Other paths: 404.
//! - **Auth**: HTTP Basic per tenant; missing or wrong → 401, `licensed: false` → 403.
//! - **Time selection**: exactly one of `interval` (`START/END`, `PTnHnMnS/END`, `START/PTnHnMnS`),
//!   `sinceTime`, `sinceSeconds`, else 400. The `since*` forms end at the clock's now rounded down
//!   to the minute. A literal `+` in a query value is kept as `+` (offsets), not read as a space.
//! - **Limits**: the exact 400 texts for too short (< 30 s), too long (> 1 h), start older than
//!   7 days, end before start; unparsable values get a 400 naming the parameter.
//! - **Format**: without `format=json` the reply is syslog text (one RFC 5424-ish line per event
//!   with `key="value"` fields, `text/plain`).
//! - **JSON**: `{"queryEndTime":..,"messagesBlocked":[..],"messagesDelivered":[..],
//!   "clicksBlocked":[..],"clicksPermitted":[..]}`, both ends inclusive, streamed minute by minute
//!   and kind by kind (bounded memory), gzip-compressed chunk by chunk on `Accept-Encoding: gzip`.
//! - **Filters**: `threatStatus` (repeatable; default active + cleared, so `falsePositive` events
//!   appear only when asked for) and `threatType` (`url`, `attachment`, `messageText`).
//! - **Events** ([`events`]): ~40/30/15/15 % delivered/blocked/clicks permitted/clicks blocked;
//!   one message in five goes to 2–4 recipients (events share the GUID, differ in `recipient` and
//!   `id`); field drift (`campaignId`/`campaignID`, `threatUrl`/`threatURL`, lower-case
//!   classifications, `TOAD`, an occasional unknown field); JSON-escaped characters in subjects,
//!   addresses and URLs; about 5 % of API times fall exactly on a whole minute; re-emissions of
//!   earlier events with new threat info.
//! - **Availability lag**: an event is queryable from `API time + delay`, delay in
//!   `[0, max_visibility_delay]` (90 % under a minute); with a `long_tail`, a given share of the
//!   events in `(max_visibility_delay, long_tail.max_delay]` instead (off by default).
//! - **Quota**: rolling 24 h per principal, two pools (`clicks/permitted`; everything else). A request
//!   over the quota gets 429 with a text body and no `Retry-After`, and is not counted. Counted:
//!   every authenticated SIEM request that reached the quota check, including ones that then fail
//!   validation (400) or receive an injected fault. Not counted: 401, 403, 404 (a gateway rejects
//!   those before metering).
//! - **Faults** ([`Fault`]): queued per principal with [`Simulator::inject`], one consumed per
//!   authenticated SIEM request, before the quota check and normal handling.
//!
//! - **Threat, Campaign, Forensics** ([`intel`]): `/v2/threat/summary/{id}`, `/v2/campaign/{id}`,
//!   `/v2/forensics?threatId=…|campaignId=…` for the threat and campaign ids the tenant's events
//!   carry (a pool per tenant, so many events share a threat), 404 for any other id; same Basic
//!   auth, not metered, their own faults ([`Simulator::inject_intel`],
//!   [`Simulator::set_intel_fault`]).
//!
//! - **Essentials** (a tenant with `essentials`, proofpoint-feeds.md): a 3-day horizon (400 past
//!   it, same text with `3.00d`), `ownData` (default true) and `customerData` (default false)
//!   selecting the key's own or its child organisations' events, `queryEndTime` in Go's layout
//!   (`2026-12-02 10:00:00 +0000 UTC`), every event with `customerEid`, `customerName`,
//!   `parentEid`, `parentName`, `stackName`, `messageDetailsUrl`, message events without `id`, and
//!   `threatsInfoMap[].threatId`.
//!
//! - **People** ([`people`]): `/v2/people/vap` and `/v2/people/top-clickers` with window and size
//!   validation, paging, totals and `interval`, and 50 requests per 24 h per endpoint (429);
//!   lists that never end and totals that disagree ([`SimPeople`]), a fault at page N
//!   ([`Simulator::inject_people`]: a 429 there, say) and a quota spent by another tool
//!   ([`Simulator::spend_people_quota`]).
//!
//! - **PoD log stream** ([`pod`]): `/v1/stream` upgraded to a WebSocket, per-cluster bearer
//!   tokens, one session per token and type (409), live frames with the one-hour replay after a
//!   drop, pings and idle drops, duplicate frames, archive mode, and faults.
//!
//! - **TRAP incidents** ([`trap`]) and **Isolation usage data** ([`isolation`]): tenants by API
//!   key, registered at run time, with their rules (unordered and duplicated rows, updates to
//!   incidents, slice timeouts, full pages, the 30-day horizon) and queued faults.
//! - **CTR incidents and ITM reports** ([`ctr`], [`itm`], behind the OAuth2 token endpoint of
//!   [`oauth`]): `[[ctr]]` and `[[itm]]` accounts, one client id each, with their paging, cursor
//!   and state-group rules, token expiry and revocation, and faults ([`Simulator::inject_oauth`],
//!   [`Simulator::inject_token`]).
//!
//! Not modelled: 204 on empty windows (only as a fault), `/v2/campaign/ids`, URL decode.

pub mod ctr;
mod events;
mod intel;
pub mod isolation;
pub mod itm;
mod keyed;
pub mod oauth;
mod params;
mod people;
pub mod pod;
mod render;
mod server;
pub mod trap;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::event::EventKind;
pub use events::ThreatType;
pub use server::SimServer;

/// The simulator's configuration.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Seeds every tenant's events; the same seed gives the same events.
    pub seed: u64,
    /// The simulated tenants (one credential each).
    pub tenants: Vec<SimTenant>,
    /// The simulated PoD clusters (`[[pod]]`, one bearer token each).
    #[serde(default)]
    pub pod: Vec<pod::SimPodCluster>,
    /// The simulated CTR accounts (`[[ctr]]`, one OAuth2 client each).
    #[serde(default)]
    pub ctr: Vec<ctr::SimCtr>,
    /// The simulated ITM accounts (`[[itm]]`, one OAuth2 client each).
    #[serde(default)]
    pub itm: Vec<itm::SimItm>,
}

/// One simulated tenant (one TAP service principal).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimTenant {
    /// The service principal (Basic auth user name).
    pub principal: String,
    /// The secret (Basic auth password).
    pub secret: String,
    /// Average original events per hour.
    pub events_per_hour: u32,
    /// Requests per rolling 24 h in the shared pool (every SIEM endpoint but clicks/permitted).
    /// Default 1800.
    #[serde(default = "default_limit")]
    pub daily_limit: u32,
    /// Requests per rolling 24 h to `/v2/siem/clicks/permitted`. Default 1800.
    #[serde(default = "default_limit")]
    pub clicks_permitted_limit: u32,
    /// The longest time after its API time before an event becomes queryable. Default 25 min.
    #[serde(default = "default_delay", with = "humantime_serde")]
    pub max_visibility_delay: Duration,
    /// A long tail of late publication (events queryable later than `max_visibility_delay`, as
    /// collectors that count fewer events than the TAP dashboard see). Default: none.
    #[serde(default)]
    pub long_tail: Option<LongTail>,
    /// Whether the SIEM API is licensed; `false` answers 403. Default true.
    #[serde(default = "default_licensed")]
    pub licensed: bool,
    /// Serve this principal as a Proofpoint Essentials key instead of TAP: a 3-day horizon,
    /// `ownData`/`customerData`, Go-layout `queryEndTime`, the Essentials fields and spellings.
    #[serde(default)]
    pub essentials: Option<SimEssentials>,
    /// Users in the tenant's Very Attacked People list. Default 120.
    #[serde(default = "default_vap_users")]
    pub vap_users: u64,
    /// Users in the tenant's top clickers list. Default 450 (three pages of 200).
    #[serde(default = "default_top_clickers")]
    pub top_clickers: u64,
    /// How the People endpoints misbehave: a list that never ends, totals that disagree with
    /// the pages. Default: neither.
    #[serde(default)]
    pub people: SimPeople,
    /// Answer `Accept-Encoding: gzip` with a gzip body, as the real API does. `false` always
    /// answers uncompressed (the benchmark's uncompressed throughput run). Default true.
    #[serde(default = "default_gzip")]
    pub gzip: bool,
    /// Write each SIEM answer whole, in one piece with a `Content-Length` (rendered, and gzipped
    /// when asked, before its first byte goes out), as some servers and mocks do, instead of
    /// streaming it in 64 KiB chunks. Default false.
    #[serde(default)]
    pub whole_responses: bool,
}

fn default_vap_users() -> u64 {
    120
}

fn default_top_clickers() -> u64 {
    450
}

/// People answers that do not add up (both lists of a tenant).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimPeople {
    /// Every page comes back full, past the end of the list too (users numbered on): a list
    /// that never ends. The totals still say the list's size.
    #[serde(default)]
    pub endless: bool,
    /// The total every answer states (`totalVapUsers`, `totalTopClickers`) instead of the
    /// list's size.
    #[serde(default)]
    pub stated_total: Option<u64>,
}

/// A few events published much later than the rest.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongTail {
    /// How many events in a thousand are in the tail.
    pub per_mille: u32,
    /// The longest delay in the tail: a tail event becomes queryable between
    /// `max_visibility_delay` and this long after its API time (uniformly). Default 2 h.
    #[serde(default = "default_long_tail_delay", with = "humantime_serde")]
    pub max_delay: Duration,
}

fn default_long_tail_delay() -> Duration {
    Duration::from_secs(2 * 3600)
}

/// An Essentials key's organisations.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimEssentials {
    /// The key's own organisation's `customerEid`. Default `"1000"`.
    #[serde(default = "default_own_eid")]
    pub eid: String,
    /// The child organisations' `customerEid`s (a partner key); their events come with
    /// `customerData=true`. Each event belongs to one organisation, drawn evenly (the first 256
    /// organisations only). Any text, written as a JSON string: a 4 KB id or one holding a NUL
    /// (`\u0000`) is sent as such.
    #[serde(default)]
    pub customers: Vec<String>,
    /// More child organisations whose `customerEid` is written bare, as JSON text instead of a
    /// string: `4711` or `4711.0` is then a number, as a broken or hostile API might send it.
    /// Each must be a JSON value. Default none.
    #[serde(default)]
    pub bare_customers: Vec<String>,
}

fn default_own_eid() -> String {
    "1000".to_string()
}

fn default_limit() -> u32 {
    1800
}

fn default_delay() -> Duration {
    Duration::from_secs(25 * 60)
}

fn default_licensed() -> bool {
    true
}

fn default_gzip() -> bool {
    true
}

impl SimTenant {
    /// A licensed tenant with the default limits and delay.
    pub fn new(principal: &str, secret: &str, events_per_hour: u32) -> Self {
        SimTenant {
            principal: principal.to_owned(),
            secret: secret.to_owned(),
            events_per_hour,
            daily_limit: default_limit(),
            clicks_permitted_limit: default_limit(),
            max_visibility_delay: default_delay(),
            long_tail: None,
            licensed: default_licensed(),
            essentials: None,
            vap_users: default_vap_users(),
            top_clickers: default_top_clickers(),
            people: SimPeople::default(),
            gzip: true,
            whole_responses: false,
        }
    }

    /// The same tenant with a long tail: `per_mille` of its events become queryable between
    /// `max_visibility_delay` and `max_delay` after their API time.
    pub fn long_tail(mut self, per_mille: u32, max_delay: Duration) -> Self {
        self.long_tail = Some(LongTail {
            per_mille,
            max_delay,
        });
        self
    }

    /// The same tenant served as an Essentials partner key of organisation `eid` with child
    /// organisations `customers`.
    pub fn essentials(mut self, eid: &str, customers: &[&str]) -> Self {
        self.essentials = Some(SimEssentials {
            eid: eid.to_string(),
            customers: customers.iter().map(|c| c.to_string()).collect(),
            bare_customers: Vec::new(),
        });
        self
    }

    /// More child organisations of an Essentials tenant ([`SimTenant::essentials`]) whose
    /// `customerEid` is written bare: `4711` and `4711.0` are JSON numbers.
    pub fn bare_customers(mut self, ids: &[&str]) -> Self {
        if let Some(e) = &mut self.essentials {
            e.bare_customers = ids.iter().map(|c| c.to_string()).collect();
        }
        self
    }
}

impl SimConfig {
    /// `n` tenants `tenant-0001`.. with secrets `secret-0001`.., all at `events_per_hour`.
    pub fn generated(n: usize, events_per_hour: u32, seed: u64) -> Self {
        SimConfig {
            seed,
            tenants: (1..=n)
                .map(|i| {
                    SimTenant::new(
                        &format!("tenant-{i:04}"),
                        &format!("secret-{i:04}"),
                        events_per_hour,
                    )
                })
                .collect(),
            ..SimConfig::default()
        }
    }
}

/// A misbehaviour to inject into one SIEM request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer this status with a realistic text body (e.g. 500, 503, 429, 401).
    Status(u16),
    /// 204 No Content, empty body.
    NoContent,
    /// Close the connection before any response header is written. (Only with [`Simulator::bind`];
    /// under another server via [`Simulator::router`] it degrades to [`Fault::ResetMidBody`].)
    ResetBeforeHeaders,
    /// 200, part of a valid JSON body, then the connection is dropped (no chunked terminator).
    ResetMidBody,
    /// 200, a valid-looking JSON body cut short, then a clean end (chunked framing completed).
    TruncatedBody,
    /// 200 with a complete body that is not valid JSON.
    MalformedBody,
    /// Wait this long (tokio time, so a client's timeout trips) before the response headers.
    SlowHeaders(Duration),
    /// Send the headers and part of the body, stall this long (tokio time), then finish normally.
    StallMidBody(Duration),
    /// 200 and the start of a valid JSON body, then one space every this long (tokio time),
    /// forever: under any read timeout, never complete.
    Trickle(Duration),
    /// 200 with a body whose only events are in arrays the SIEM API does not have
    /// (`MessagesDelivered`: 2, `messagesQuarantined`: 1) and whose `queryEndTime` is two hours
    /// after the window's end: a changed or impostor API.
    OddArrays,
    /// Answer this 3xx status with this `Location` (a misrouted proxy, a hijacked DNS name).
    Redirect(u16, String),
    /// 200 and a body of valid, distinct `messagesDelivered` events inside the window, forever.
    Endless,
    /// Answer this status with the body a debug proxy or WAF page sends: it repeats the request's
    /// `Authorization` header, the decoded `principal:secret` and the secret.
    EchoCredentials(u16),
}

/// One simulated event with its ground-truth times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimEvent {
    pub kind: EventKind,
    /// The compact JSON object exactly as the server sends it.
    pub raw: Vec<u8>,
    /// The API time: the later of message/click time and threat time.
    pub time: DateTime<Utc>,
    /// When the event becomes queryable.
    pub visible_at: DateTime<Utc>,
}

/// One request the simulator answered, for [`Simulator::request_log`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedRequest {
    pub path: String,
    /// The raw (still percent-encoded) query string.
    pub query: String,
    /// The status sent; 0 when the connection was dropped before any header.
    pub status: u16,
    /// Clock time at which the request arrived.
    pub at: DateTime<Utc>,
    /// The injected fault this request consumed, if any.
    pub fault: Option<Fault>,
}

/// The simulator: cheap to clone, all clones share state.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    clock: Clock,
    tenants: HashMap<String, TenantState>,
    /// PoD clusters by bearer token.
    pod: HashMap<String, Arc<pod::PodCluster>>,
    /// The seed every generator starts from.
    seed: u64,
    /// TRAP and Isolation tenants by API key, registered while the simulator runs
    /// ([`Simulator::serve_trap`], [`Simulator::serve_isolation`]).
    trap: trap::TrapTenants,
    isolation: isolation::IsolationTenants,
    /// CTR and ITM accounts by client id.
    oauth: HashMap<String, oauth::Account>,
}

struct TenantState {
    cfg: SimTenant,
    gen: events::TenantGen,
    /// Mutable per-tenant state: faults, quota logs, request log.
    live: Mutex<Live>,
    /// Whether requests go into the request log (see [`Simulator::keep_request_log`]).
    log_requests: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Live {
    faults: VecDeque<Fault>,
    /// Arrival times of counted requests, per pool: `[shared, clicks/permitted]`.
    quota: [VecDeque<DateTime<Utc>>; 2],
    log: Vec<LoggedRequest>,
    /// Faults for the threat, campaign and forensics endpoints, one consumed per request.
    intel_faults: VecDeque<Fault>,
    /// A fault every threat, campaign and forensics request gets (after the queued ones).
    intel_down: Option<Fault>,
    /// Arrival times of counted People requests, per endpoint: `[vap, top-clickers]`.
    people_quota: [VecDeque<DateTime<Utc>>; 2],
    /// Faults for the People endpoints: `(page, fault)`, each consumed by the first counted
    /// request for that page.
    people_faults: VecDeque<(u64, Fault)>,
}

impl Simulator {
    /// A simulator for `cfg`, reading time from `clock`.
    pub fn new(cfg: SimConfig, clock: Clock) -> Self {
        let tenants = cfg
            .tenants
            .into_iter()
            .map(|t| {
                let delay_ms =
                    u64::try_from(t.max_visibility_delay.as_millis()).unwrap_or(u64::MAX);
                let mut gen =
                    events::TenantGen::new(cfg.seed, &t.principal, t.events_per_hour, delay_ms);
                if let Some(e) = &t.essentials {
                    gen = gen.essentials(&e.eid, &e.customers, &e.bare_customers);
                }
                if let Some(tail) = &t.long_tail {
                    let max_ms = u64::try_from(tail.max_delay.as_millis()).unwrap_or(u64::MAX);
                    gen = gen.long_tail(u64::from(tail.per_mille), max_ms);
                }
                (
                    t.principal.clone(),
                    TenantState {
                        cfg: t,
                        gen,
                        live: Mutex::new(Live::default()),
                        log_requests: std::sync::atomic::AtomicBool::new(true),
                    },
                )
            })
            .collect();
        let pod = cfg
            .pod
            .into_iter()
            .map(|c| (c.token.clone(), Arc::new(pod::PodCluster::new(c, cfg.seed))))
            .collect();
        let oauth = cfg
            .ctr
            .into_iter()
            .map(|c| (c.client.clone(), oauth::Product::Ctr(c)))
            .chain(
                cfg.itm
                    .into_iter()
                    .map(|i| (i.client.clone(), oauth::Product::Itm(i))),
            )
            .map(|(client, product)| {
                (
                    client.client_id.clone(),
                    oauth::Account::new(client, product, cfg.seed),
                )
            })
            .collect();
        Simulator {
            inner: Arc::new(Inner {
                clock,
                tenants,
                pod,
                seed: cfg.seed,
                trap: Default::default(),
                isolation: Default::default(),
                oauth,
            }),
        }
    }

    /// The seed the simulator was made with.
    pub fn seed(&self) -> u64 {
        self.inner.seed
    }

    /// Whether answered requests are kept for [`Simulator::request_log`] (they are by default).
    /// The log grows by about 200 bytes per request for as long as the simulator runs, so a
    /// long-running `tapfwd simulate`, the demo and the benchmark turn it off: nobody reads it
    /// there, and in the benchmark it would be counted as the daemon's memory.
    pub fn keep_request_log(&self, keep: bool) {
        for t in self.inner.tenants.values() {
            t.log_requests
                .store(keep, std::sync::atomic::Ordering::Relaxed);
        }
        for a in self.inner.oauth.values() {
            a.log_requests
                .store(keep, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Queues faults for the CTR or ITM account `client_id`; each API request (not a token
    /// request) consumes the next one.
    pub fn inject_oauth(&self, client_id: &str, faults: impl IntoIterator<Item = Fault>) {
        if let Some(a) = self.inner.oauth.get(client_id) {
            a.lock().faults.extend(faults);
        }
    }

    /// Queues faults for `client_id`'s token requests.
    pub fn inject_token(&self, client_id: &str, faults: impl IntoIterator<Item = Fault>) {
        if let Some(a) = self.inner.oauth.get(client_id) {
            a.lock().token_faults.extend(faults);
        }
    }

    /// Revokes every token of `client_id` (as an expiry the client did not foresee): its next
    /// API request answers 401.
    pub fn revoke_tokens(&self, client_id: &str) {
        if let Some(a) = self.inner.oauth.get(client_id) {
            a.lock().tokens.clear();
        }
    }

    /// Tokens issued to `client_id` so far.
    pub fn tokens_issued(&self, client_id: &str) -> u64 {
        self.inner
            .oauth
            .get(client_id)
            .map_or(0, |a| a.lock().issued)
    }

    /// Every request of `client_id`'s account (token requests with `query` = `token`; a POST's
    /// JSON body in `query`), oldest first.
    pub fn oauth_log(&self, client_id: &str) -> Vec<LoggedRequest> {
        self.inner
            .oauth
            .get(client_id)
            .map(|a| a.lock().log.clone())
            .unwrap_or_default()
    }

    /// Ground truth: CTR account `client_id`'s incidents created in `[start, end]` (unix
    /// seconds), as they are at `at`.
    pub fn ctr_incidents(
        &self,
        client_id: &str,
        start: i64,
        end: i64,
        at: DateTime<Utc>,
    ) -> Vec<Vec<u8>> {
        match self.inner.oauth.get(client_id) {
            Some(a) => match &a.product {
                oauth::Product::Ctr(c) => {
                    ctr::incidents(a.key, c, start * 1000, end * 1000 + 999, at)
                        .into_iter()
                        .map(|(_, _, b)| b)
                        .collect()
                }
                oauth::Product::Itm(_) => Vec::new(),
            },
            None => Vec::new(),
        }
    }

    /// Ground truth: ITM account `client_id`'s records of `report` from `since` (epoch ms) that
    /// exist at `at`.
    pub fn itm_records(
        &self,
        client_id: &str,
        report: &str,
        since: i64,
        at: DateTime<Utc>,
    ) -> Vec<Vec<u8>> {
        match self.inner.oauth.get(client_id) {
            Some(a) => match &a.product {
                oauth::Product::Itm(i) => itm::records(a.key, i, report, since, usize::MAX, at)
                    .into_iter()
                    .map(|(_, b)| b)
                    .collect(),
                oauth::Product::Ctr(_) => Vec::new(),
            },
            None => Vec::new(),
        }
    }

    /// The HTTP routes, for embedding in another server.
    pub fn router(&self) -> axum::Router {
        server::router(self.clone())
    }

    /// Binds `addr` (port 0 picks one) and serves until the returned server is dropped or shut down.
    pub async fn bind(&self, addr: SocketAddr) -> std::io::Result<SimServer> {
        server::bind(self.clone(), addr).await
    }

    /// Queues faults for `principal`; each SIEM request consumes the next one, in order.
    pub fn inject(&self, principal: &str, faults: impl IntoIterator<Item = Fault>) {
        if let Some(t) = self.inner.tenants.get(principal) {
            t.live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .faults
                .extend(faults);
        }
    }

    /// Queues faults for `principal`'s People requests, as `(page, fault)`: the first counted
    /// request for that page (of either list) gets the fault (a 500 in the middle of a
    /// snapshot's pages, say).
    pub fn inject_people(&self, principal: &str, faults: impl IntoIterator<Item = (u64, Fault)>) {
        if let Some(t) = self.inner.tenants.get(principal) {
            t.live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .people_faults
                .extend(faults);
        }
    }

    /// Another tool on `principal`'s credential makes `n` requests to each People endpoint
    /// now: they count in the endpoints' 50 a day (429 once it is spent) until they age out.
    pub fn spend_people_quota(&self, principal: &str, n: usize) {
        if let Some(t) = self.inner.tenants.get(principal) {
            let now = self.inner.clock.now();
            let mut live = t.live.lock().unwrap_or_else(|e| e.into_inner());
            for pool in &mut live.people_quota {
                pool.extend(std::iter::repeat(now).take(n));
            }
        }
    }

    /// Queues faults for `principal`'s threat, campaign and forensics requests; each consumes
    /// the next one, in order (the SIEM queue of [`Simulator::inject`] is separate).
    pub fn inject_intel(&self, principal: &str, faults: impl IntoIterator<Item = Fault>) {
        if let Some(t) = self.inner.tenants.get(principal) {
            t.live
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .intel_faults
                .extend(faults);
        }
    }

    /// Makes every threat, campaign and forensics request of `principal` get `fault` (the API is
    /// down) until called again with `None`.
    pub fn set_intel_fault(&self, principal: &str, fault: Option<Fault>) {
        if let Some(t) = self.inner.tenants.get(principal) {
            t.live.lock().unwrap_or_else(|e| e.into_inner()).intel_down = fault;
        }
    }

    /// Ground truth: the body `GET /v2/threat/summary/{threat_id}` answers for `principal`, or
    /// `None` when the id is not one of the tenant's.
    pub fn threat_summary(&self, principal: &str, threat_id: &str) -> Option<Vec<u8>> {
        let t = self.inner.tenants.get(principal)?;
        let route = intel::Route::Threat(threat_id.to_owned());
        intel::body(&t.gen, &route, "", self.inner.clock.now()).ok()
    }

    /// Ground truth: the body `GET /v2/campaign/{campaign_id}` answers for `principal`, or `None`
    /// when the id is not one of the tenant's.
    pub fn campaign(&self, principal: &str, campaign_id: &str) -> Option<Vec<u8>> {
        let t = self.inner.tenants.get(principal)?;
        let route = intel::Route::Campaign(campaign_id.to_owned());
        intel::body(&t.gen, &route, "", self.inner.clock.now()).ok()
    }

    /// Ground truth: every event of `principal` with API time `start <= t < end`, visible or not,
    /// any threat status, ordered by minute, then kind (API order), then generation order.
    pub fn expected_events(
        &self,
        principal: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Vec<SimEvent> {
        let Some(t) = self.inner.tenants.get(principal) else {
            return Vec::new();
        };
        let (s, e) = (start.timestamp_millis(), end.timestamp_millis());
        let mut out = Vec::new();
        let mut items = Vec::new();
        if e <= s {
            return out;
        }
        for m in s.div_euclid(60_000)..=(e - 1).div_euclid(60_000) {
            t.gen.minute_items(m, &mut items);
            for kind in EventKind::SIEM {
                for it in items.iter().filter(|it| it.kind == kind) {
                    if it.api_ms < s || it.api_ms >= e {
                        continue;
                    }
                    for r in 0..it.recipients {
                        let mut raw = Vec::with_capacity(3000);
                        t.gen.render_json(it, r, &mut raw);
                        out.push(SimEvent {
                            kind,
                            raw,
                            time: ms_to_utc(it.api_ms),
                            visible_at: ms_to_utc(t.gen.visible_at(it, r)),
                        });
                    }
                }
            }
        }
        out
    }

    /// Every request made with `principal` as the Basic-auth user (including rejected ones), oldest
    /// first. Requests naming no configured principal are not logged, nor any while
    /// [`Simulator::keep_request_log`] is off.
    pub fn request_log(&self, principal: &str) -> Vec<LoggedRequest> {
        match self.inner.tenants.get(principal) {
            Some(t) => t.live.lock().unwrap_or_else(|e| e.into_inner()).log.clone(),
            None => Vec::new(),
        }
    }
}

fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_humantime_delay() {
        let cfg: SimConfig = serde_json::from_str(
            r#"{"seed":1,"tenants":[{"principal":"p","secret":"s","events_per_hour":10,
                "max_visibility_delay":"5m"}]}"#,
        )
        .unwrap();
        let t = &cfg.tenants[0];
        assert_eq!((t.daily_limit, t.clicks_permitted_limit), (1800, 1800));
        assert_eq!(t.max_visibility_delay, Duration::from_secs(300));
        assert!(t.licensed);
        let bad = r#"{"seed":1,"tenants":[],"extra":1}"#;
        assert!(serde_json::from_str::<SimConfig>(bad).is_err());
        let gen = SimConfig::generated(2, 60, 3);
        assert_eq!(gen.tenants[1].principal, "tenant-0002");
        assert_eq!(gen.tenants[1].secret, "secret-0002");
    }
}
