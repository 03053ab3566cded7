//! Threat enrichment: for each `threatID` and `campaignID` in a tenant's events, the threat's
//! summary (`/v2/threat/summary/{id}`) and the campaign (`/v2/campaign/{id}`), opted into per
//! tenant with `enrich = ["threats", "campaigns"]`, tuned under `[enrichment]`.
//!
//! The invariants it keeps:
//! - **Beside, never inside** (invariant 5). What was found goes into [`Batch::enrichment`]; the
//!   event's bytes, and so its dedupe key, are untouched.
//! - **Never holds delivery back.** A batch waits for a lookup at most until `wait` after that
//!   lookup started (so a slow API costs the first batches of a window at most `wait` and the
//!   later ones nothing); whatever has not
//!   come by then (the threat API is down, slow, or says no) is left out, the batch is delivered
//!   without it, and the miss is counted (`tapfwd_enrichment_misses_total`, the tenant's
//!   `enrichment_misses` in status). A lookup still running finishes in the background within its
//!   own `timeout` and fills the cache for later events. Nothing here can fail a delivery.
//! - **One request per id.** However many events share an id, one lookup is in flight for it at
//!   a time; a failed one is not asked again for `retry_after`; a found one is cached (in memory
//!   and in the store, so a restart does not ask again) until it is `refresh` old, and a stale
//!   entry is still used while it is refreshed. The cache holds at most `cache_entries` per
//!   tenant, in memory and in the store alike (the oldest go first).
//! - **Bounded.** At most `concurrency` lookups run at once over all tenants. A summary or
//!   campaign larger than `max_summary_bytes` is not read past that bound and is left out (the
//!   events go without it); a tenant's cache holds at most `max_cache_bytes`, the oldest entries
//!   going first. What is left out is counted (`tapfwd_enrichment_dropped_total{tenant,kind,reason}`,
//!   the tenant's `enrichment_dropped` in status).
//! - **One line, one object.** What the API sent is kept byte for byte, except that a summary
//!   spread over several lines (pretty-printed) is made compact ([`compact`]): it is copied beside
//!   every event that names it, and a line break would cut each of those events' lines in the file,
//!   syslog and HTTP sinks.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use secrecy::SecretString;
use serde::Deserialize;
use tokio::sync::{watch, Semaphore};

use crate::api::intel::{IntelClient, Query};
use crate::api::ApiError;
use crate::clock::Clock;
use crate::event::Batch;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// What a tenant's events are enriched with (`enrich = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnrichKind {
    /// Each `threatID`'s summary, under `"threats"`.
    Threats,
    /// Each `campaignID`'s campaign (name, actors, families, malware…), under `"campaigns"`.
    Campaigns,
}

impl EnrichKind {
    /// The member name beside the event, the store's key part and the metrics' `kind` label.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrichKind::Threats => "threats",
            EnrichKind::Campaigns => "campaigns",
        }
    }

    fn parse(s: &str) -> Option<EnrichKind> {
        [EnrichKind::Threats, EnrichKind::Campaigns]
            .into_iter()
            .find(|k| k.as_str() == s)
    }

    fn query(self, id: &str) -> Query<'_> {
        match self {
            EnrichKind::Threats => Query::Threat(id),
            EnrichKind::Campaigns => Query::Campaign(id),
        }
    }
}

/// `[enrichment]`: how threat enrichment looks things up. Tenants opt in with
/// `enrich = ["threats", "campaigns"]`; without that nothing here is used.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrichConfig {
    /// How old a cached summary or campaign may be before it is looked up again (the old one is
    /// used meanwhile). Default `24h`.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh: Duration,
    /// Most entries cached per tenant, in memory and in the store; the oldest are dropped first.
    /// Default `10000`.
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    /// Most lookups in flight at once, over all tenants. Default `4`.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Longest a batch of events waits for its lookups; after that it is delivered without the
    /// ones still missing. Default `2s`.
    #[serde(default = "default_wait", with = "humantime_serde")]
    pub wait: Duration,
    /// Overall deadline of one lookup (connect, headers and body); it may finish after `wait`,
    /// in the background, and then serves later events. Default `10s`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// After a failed lookup (including 404), how long that id is not asked again. Default `5m`.
    #[serde(default = "default_retry_after", with = "humantime_serde")]
    pub retry_after: Duration,
    /// Largest summary or campaign kept, in bytes: a larger one is not read past this bound, the
    /// events go without it, and it is counted as dropped (reason `too_large`). At most
    /// `max_cache_bytes`. Default `65536` (64 KiB; real summaries are a few KB).
    #[serde(default = "default_max_summary_bytes")]
    pub max_summary_bytes: usize,
    /// Most bytes of summaries and campaigns cached per tenant, in memory and in the store; the
    /// oldest entries are dropped first (counted as dropped, reason `cache_full`, and looked up
    /// again when an event names them). Default `33554432` (32 MiB).
    #[serde(default = "default_max_cache_bytes")]
    pub max_cache_bytes: usize,
}

fn default_refresh() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_cache_entries() -> usize {
    10_000
}
fn default_concurrency() -> usize {
    4
}
fn default_wait() -> Duration {
    Duration::from_secs(2)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_retry_after() -> Duration {
    Duration::from_secs(300)
}
fn default_max_summary_bytes() -> usize {
    64 << 10
}
fn default_max_cache_bytes() -> usize {
    32 << 20
}

impl Default for EnrichConfig {
    fn default() -> Self {
        EnrichConfig {
            refresh: default_refresh(),
            cache_entries: default_cache_entries(),
            concurrency: default_concurrency(),
            wait: default_wait(),
            timeout: default_timeout(),
            retry_after: default_retry_after(),
            max_summary_bytes: default_max_summary_bytes(),
            max_cache_bytes: default_max_cache_bytes(),
        }
    }
}

impl EnrichConfig {
    /// Checks the settings without I/O; the message names the key under `enrichment.`.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.cache_entries == 0 {
            return Err(("cache_entries", "must be at least 1".into()));
        }
        if self.concurrency == 0 {
            return Err(("concurrency", "must be at least 1".into()));
        }
        if self.timeout.is_zero() {
            return Err(("timeout", "must be more than 0s".into()));
        }
        if self.max_summary_bytes < 2 {
            return Err(("max_summary_bytes", "must be at least 2".into()));
        }
        if self.max_summary_bytes > self.max_cache_bytes {
            return Err((
                "max_summary_bytes",
                format!(
                    "must be at most max_cache_bytes ({}), or no summary would fit the cache",
                    self.max_cache_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// What every tenant's enrichment shares: the client, the concurrency bound and the counters.
pub struct Enricher {
    client: IntelClient,
    config: EnrichConfig,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    clock: Clock,
}

type Key = (EnrichKind, Arc<str>);

struct Entry {
    body: Bytes,
    fetched_at: i64,
    seq: u64,
}

/// One tenant's cache, shared with its lookups in flight.
#[derive(Default)]
struct Cache {
    entries: HashMap<Key, Entry>,
    /// The bytes of every entry's body, at most `max_cache_bytes`.
    bytes: usize,
    /// `(fetched_at, seq)` of every entry, oldest first, for the size bound.
    order: BTreeMap<(i64, u64), Key>,
    seq: u64,
    /// Lookups running, with when they started: a batch waits for one only until `wait` after
    /// its start, so a slow API costs the first batches at most `wait` and later ones nothing.
    inflight: HashMap<Key, (watch::Receiver<bool>, tokio::time::Instant)>,
    /// Ids whose lookup failed, and until when they are not asked again.
    failed: HashMap<Key, i64>,
    /// Entries found since the store last heard of them.
    unsaved: Vec<Key>,
    /// Entries dropped by the bound since the store last heard of them.
    evicted: Vec<Key>,
    /// Summaries and campaigns left out since start, because they were over `max_summary_bytes`
    /// (for status).
    dropped: u64,
}

/// How many entries, and how many bytes of them, a cache holds at most.
#[derive(Clone, Copy)]
struct Bounds {
    entries: usize,
    bytes: usize,
}

impl Cache {
    /// Caches `body`, then drops the oldest entries until the cache is within `bounds`; returns
    /// how many went for the byte bound alone.
    fn insert(&mut self, key: Key, body: Bytes, fetched_at: i64, bounds: Bounds) -> usize {
        self.seq += 1;
        let seq = self.seq;
        self.bytes += body.len();
        if let Some(old) = self.entries.insert(
            key.clone(),
            Entry {
                body,
                fetched_at,
                seq,
            },
        ) {
            self.bytes -= old.body.len();
            self.order.remove(&(old.fetched_at, old.seq));
        }
        self.order.insert((fetched_at, seq), key);
        let mut for_bytes = 0;
        while self.entries.len() > bounds.entries || self.bytes > bounds.bytes {
            if self.entries.len() <= bounds.entries {
                for_bytes += 1;
            }
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(old) = self.entries.remove(&oldest) {
                self.bytes -= old.body.len();
            }
            self.evicted.push(oldest);
        }
        for_bytes
    }
}

/// `body` (valid JSON) on one line: unchanged, the very bytes sent, when it holds no line break;
/// else without the whitespace between its tokens (strings, numbers and the order of members
/// untouched). A JSON string cannot hold a raw line break, so the result has none.
pub fn compact(body: Bytes) -> Bytes {
    if !body.iter().any(|b| matches!(b, b'\n' | b'\r')) {
        return body;
    }
    let mut out = Vec::with_capacity(body.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in body.iter() {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(b);
            in_string = b == b'"';
        }
    }
    Bytes::from(out)
}

/// One tenant's enrichment, owned by its poller.
pub struct TenantEnricher {
    shared: Arc<Enricher>,
    tenant: Arc<str>,
    base_url: Arc<str>,
    principal: Arc<str>,
    secret: SecretString,
    kinds: Vec<EnrichKind>,
    cache: Arc<Mutex<Cache>>,
    /// Events that went out with enrichment, and id occurrences that had to go without, since
    /// start (for status).
    pub enriched: u64,
    pub misses: u64,
}

impl Enricher {
    pub fn new(
        config: EnrichConfig,
        metrics: Arc<Metrics>,
        clock: Clock,
    ) -> Result<Arc<Enricher>, ApiError> {
        Ok(Arc::new(Enricher {
            client: IntelClient::new(config.timeout)?.with_max_body(config.max_summary_bytes),
            permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
            config,
            metrics,
            clock,
        }))
    }

    /// A tenant's enrichment with what the store has cached for it.
    pub fn for_tenant(
        self: &Arc<Self>,
        tenant: &str,
        base_url: &str,
        principal: &str,
        secret: SecretString,
        kinds: &[EnrichKind],
        store: &Store,
    ) -> Result<TenantEnricher, StoreError> {
        let mut cache = Cache::default();
        for (kind, id, at, body) in store.intel_entries(tenant)? {
            let Some(kind) = EnrichKind::parse(&kind) else {
                continue;
            };
            // What an earlier version (or earlier settings) stored is held to today's rules.
            let body = compact(Bytes::from(body));
            if body.len() > self.config.max_summary_bytes {
                store.remove_intel(tenant, kind.as_str(), &id)?;
                continue;
            }
            cache.insert((kind, Arc::from(id)), body, at, self.bounds());
        }
        let evicted = std::mem::take(&mut cache.evicted);
        for (kind, id) in evicted {
            store.remove_intel(tenant, kind.as_str(), &id)?;
        }
        let mut kinds = kinds.to_vec();
        kinds.sort();
        kinds.dedup();
        Ok(TenantEnricher {
            shared: self.clone(),
            tenant: Arc::from(tenant),
            base_url: Arc::from(base_url),
            principal: Arc::from(principal),
            secret,
            kinds,
            cache: Arc::new(Mutex::new(cache)),
            enriched: 0,
            misses: 0,
        })
    }
}

impl Enricher {
    fn bounds(&self) -> Bounds {
        Bounds {
            entries: self.config.cache_entries,
            bytes: self.config.max_cache_bytes,
        }
    }
}

/// The ids one event carries, as the API spells them (`campaignID` or `campaignId`).
#[derive(Deserialize)]
struct Ids<'a> {
    #[serde(rename = "threatID", borrow, default)]
    threat: Option<Cow<'a, str>>,
    #[serde(rename = "campaignID", alias = "campaignId", borrow, default)]
    campaign: Option<Cow<'a, str>>,
    #[serde(rename = "threatsInfoMap", borrow, default)]
    infos: Option<Vec<Ids<'a>>>,
}

/// The distinct ids of `kinds` in `raw`, in order of appearance.
fn ids_of(raw: &[u8], kinds: &[EnrichKind]) -> Vec<Key> {
    let Ok(ids) = serde_json::from_slice::<Ids>(raw) else {
        return Vec::new();
    };
    let mut out: Vec<Key> = Vec::new();
    let mut push = |kind: EnrichKind, id: &Option<Cow<str>>| {
        if let Some(id) = id.as_deref().filter(|id| !id.is_empty()) {
            if kinds.contains(&kind) && !out.iter().any(|(k, i)| *k == kind && &**i == id) {
                out.push((kind, Arc::from(id)));
            }
        }
    };
    for info in ids.infos.iter().flatten().chain(std::iter::once(&ids)) {
        push(EnrichKind::Threats, &info.threat);
        push(EnrichKind::Campaigns, &info.campaign);
    }
    out
}

impl TenantEnricher {
    /// Whether this tenant's enrichment is what `kinds` asks for (a reload keeps it when so).
    pub fn kinds(&self) -> &[EnrichKind] {
        &self.kinds
    }

    /// Summaries and campaigns left out since start because they were over
    /// `max_summary_bytes` (for status).
    pub fn dropped(&self) -> u64 {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).dropped
    }

    /// `batch` with what is known, or becomes known within `wait`, beside its events. Never
    /// fails and never waits longer than `wait`; writes newly found entries to `store` (a store
    /// error is logged and the entry stays in memory).
    pub async fn enrich(&mut self, mut batch: Batch, store: &Store) -> Batch {
        let per_event: Vec<(u32, Vec<Key>)> = batch
            .iter()
            .map(|(meta, raw)| (meta.start, ids_of(raw, &self.kinds)))
            .filter(|(_, ids)| !ids.is_empty())
            .collect();
        if per_event.is_empty() {
            return batch;
        }
        let wanted: HashSet<&Key> = per_event.iter().flat_map(|(_, ids)| ids).collect();
        let now = self.shared.clock.now().timestamp();
        let refresh = self.shared.config.refresh.as_secs() as i64;
        let wait = self.shared.config.wait;
        let mut waits = Vec::new();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.failed.retain(|_, until| *until > now);
            for key in wanted {
                let fresh = match cache.entries.get(key) {
                    Some(e) if now - e.fetched_at < refresh => continue,
                    Some(_) => false,
                    None => true,
                };
                if let Some((rx, started)) = cache.inflight.get(key) {
                    if fresh {
                        waits.push((rx.clone(), *started + wait));
                    }
                    continue;
                }
                if cache.failed.contains_key(key) {
                    continue;
                }
                let rx = self.spawn_lookup(&mut cache, key.clone());
                if fresh {
                    waits.push((rx, tokio::time::Instant::now() + wait));
                }
            }
        }
        join_all(waits.into_iter().map(|(mut rx, until)| async move {
            let _ = tokio::time::timeout_at(until, rx.wait_for(|done| *done)).await;
        }))
        .await;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        self.save(&mut cache, store);
        let mut map = HashMap::with_capacity(per_event.len());
        for (start, ids) in per_event {
            let mut members = Vec::new();
            for kind in &self.kinds {
                let mut first = true;
                for key in ids.iter().filter(|(k, _)| k == kind) {
                    let Some(entry) = cache.entries.get(key) else {
                        self.misses += 1;
                        self.shared
                            .metrics
                            .add_enrichment_miss(&self.tenant, kind.as_str());
                        continue;
                    };
                    if first {
                        if !members.is_empty() {
                            members.push(b',');
                        }
                        members.push(b'"');
                        members.extend_from_slice(kind.as_str().as_bytes());
                        members.extend_from_slice(b"\":{");
                        first = false;
                    } else {
                        members.push(b',');
                    }
                    let _ = serde_json::to_writer(&mut members, &*key.1);
                    members.push(b':');
                    members.extend_from_slice(&entry.body);
                }
                if !first {
                    members.push(b'}');
                }
            }
            if !members.is_empty() {
                self.enriched += 1;
                map.insert(start, Bytes::from(members));
            }
        }
        if !map.is_empty() {
            batch.enrichment = Some(Arc::new(map));
        }
        batch
    }

    /// Starts the one lookup of `key`; its result lands in the cache, then the receiver says so.
    fn spawn_lookup(&self, cache: &mut Cache, key: Key) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(false);
        cache
            .inflight
            .insert(key.clone(), (rx.clone(), tokio::time::Instant::now()));
        let shared = self.shared.clone();
        let state = self.cache.clone();
        let (tenant, base_url, principal, secret) = (
            self.tenant.clone(),
            self.base_url.clone(),
            self.principal.clone(),
            self.secret.clone(),
        );
        tokio::spawn(async move {
            let result = match shared.permits.clone().acquire_owned().await {
                Ok(_permit) => {
                    shared
                        .client
                        .get(&base_url, &principal, &secret, key.0.query(&key.1))
                        .await
                }
                Err(_) => Err(ApiError::Transport("enrichment stopped".into())),
            };
            let now = shared.clock.now().timestamp();
            let status = match &result {
                Ok(_) => "ok",
                Err(e) => e.class(),
            };
            shared
                .metrics
                .add_enrichment_lookup(&tenant, key.0.as_str(), status);
            let mut cache = state.lock().unwrap_or_else(|e| e.into_inner());
            cache.inflight.remove(&key);
            match result {
                Ok(body) => {
                    let kind = key.0.as_str();
                    let for_bytes = cache.insert(key.clone(), compact(body), now, shared.bounds());
                    if for_bytes > 0 {
                        shared.metrics.add_enrichment_dropped(
                            &tenant,
                            kind,
                            "cache_full",
                            for_bytes as u64,
                        );
                    }
                    cache.unsaved.push(key);
                }
                Err(e) => {
                    if let ApiError::BodyTooLarge(limit) = e {
                        cache.dropped += 1;
                        shared.metrics.add_enrichment_dropped(
                            &tenant,
                            key.0.as_str(),
                            "too_large",
                            1,
                        );
                        tracing::warn!(tenant = %tenant, kind = key.0.as_str(), limit, "enrichment left out: the summary is larger than enrichment.max_summary_bytes; events go without it");
                    }
                    tracing::debug!(tenant = %tenant, kind = key.0.as_str(), error = %e, "enrichment lookup failed; events go without it");
                    let until = now + shared.config.retry_after.as_secs() as i64;
                    cache.failed.insert(key, until);
                }
            }
            drop(cache);
            let _ = tx.send(true);
        });
        rx
    }

    /// Writes what lookups found (and drops what the bound evicted) to the store.
    fn save(&self, cache: &mut Cache, store: &Store) {
        for (kind, id) in std::mem::take(&mut cache.evicted) {
            if let Err(e) = store.remove_intel(&self.tenant, kind.as_str(), &id) {
                tracing::warn!(error = %e, "cannot drop an enrichment cache entry from the store");
            }
        }
        for key in std::mem::take(&mut cache.unsaved) {
            let Some(entry) = cache.entries.get(&key) else {
                continue;
            };
            if let Err(e) = store.put_intel(
                &self.tenant,
                key.0.as_str(),
                &key.1,
                entry.fetched_at,
                &entry.body,
            ) {
                tracing::warn!(error = %e, "cannot cache an enrichment lookup in the store");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[EnrichKind] = &[EnrichKind::Threats, EnrichKind::Campaigns];

    #[test]
    fn ids_come_from_threats_info_map_and_clicks_in_either_spelling() {
        let msg = br#"{"GUID":"g","threatsInfoMap":[{"threatID":"t1","campaignID":"c1"},{"threatID":"t2","campaignID":null},{"threatID":"t1","campaignID":"c1"}]}"#;
        let ids: Vec<(EnrichKind, String)> = ids_of(msg, BOTH)
            .into_iter()
            .map(|(k, i)| (k, i.to_string()))
            .collect();
        assert_eq!(
            ids,
            vec![
                (EnrichKind::Threats, "t1".into()),
                (EnrichKind::Campaigns, "c1".into()),
                (EnrichKind::Threats, "t2".into()),
            ]
        );
        let click = br#"{"threatID":"t3","campaignId":"c3","url":"x"}"#;
        assert_eq!(ids_of(click, BOTH).len(), 2);
        assert_eq!(ids_of(click, &[EnrichKind::Campaigns])[0].1.as_ref(), "c3");
        assert!(ids_of(b"{not json", BOTH).is_empty());
        assert!(ids_of(br#"{"threatID":""}"#, BOTH).is_empty());
    }

    fn by_entries(entries: usize) -> Bounds {
        Bounds {
            entries,
            bytes: usize::MAX,
        }
    }

    #[test]
    fn the_cache_keeps_its_bound_dropping_the_oldest() {
        let mut c = Cache::default();
        for (i, at) in [(0, 30), (1, 10), (2, 20)] {
            c.insert(
                (EnrichKind::Threats, Arc::from(format!("t{i}"))),
                Bytes::from_static(b"{}"),
                at,
                by_entries(2),
            );
        }
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.evicted.len(), 1);
        assert_eq!(&*c.evicted[0].1, "t1");
        assert_eq!(c.order.len(), 2);
        // Refreshing an entry moves it, without growing the order index.
        c.insert(
            (EnrichKind::Threats, Arc::from("t2")),
            Bytes::from_static(b"{}"),
            40,
            by_entries(2),
        );
        assert_eq!(c.order.len(), 2);
        assert_eq!(c.order.keys().next(), Some(&(30, 1)));
    }

    #[test]
    fn the_cache_keeps_its_byte_bound_dropping_the_oldest() {
        let bounds = Bounds {
            entries: 100,
            bytes: 250,
        };
        let mut c = Cache::default();
        let body = |n: usize| Bytes::from(format!("\"{}\"", "x".repeat(n - 2)));
        let mut for_bytes = 0;
        for i in 0..5 {
            let key = (EnrichKind::Campaigns, Arc::from(format!("c{i}")));
            for_bytes += c.insert(key, body(100), i, bounds);
            assert!(c.bytes <= 250, "{}", c.bytes);
        }
        assert_eq!((c.entries.len(), c.bytes, for_bytes), (2, 200, 3));
        assert_eq!(
            c.evicted.iter().map(|k| &*k.1).collect::<Vec<_>>(),
            ["c0", "c1", "c2"]
        );
        // Replacing an entry counts its new size, not both.
        let key = (EnrichKind::Campaigns, Arc::from("c4"));
        assert_eq!(c.insert(key, body(50), 9, bounds), 0);
        assert_eq!((c.entries.len(), c.bytes), (2, 150));
    }

    #[test]
    fn a_pretty_printed_summary_is_made_compact_and_a_compact_one_kept_as_sent() {
        let pretty = "{\n  \"id\": \"t 1\",\r\n  \"a\": [\n    1.50,\n    \"x\\\" \\n y\"\n  ],\n\t\"b\": {}\n}\n";
        let out = compact(Bytes::from(pretty));
        assert_eq!(&out[..], br#"{"id":"t 1","a":[1.50,"x\" \n y"],"b":{}}"#);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            serde_json::from_str::<serde_json::Value>(pretty).unwrap()
        );
        // One line already, spaces and all: the very bytes sent.
        let one = Bytes::from_static(br#"{ "id" : "t 1", "z": 2, "a": 1 }"#);
        let kept = compact(one.clone());
        assert_eq!(kept.as_ptr(), one.as_ptr());
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: EnrichConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, EnrichConfig::default());
        assert_eq!(c.wait, Duration::from_secs(2));
        let bad = EnrichConfig {
            concurrency: 0,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "concurrency");
        assert_eq!(c.max_summary_bytes, 64 << 10);
        assert_eq!(c.max_cache_bytes, 32 << 20);
        let bad = EnrichConfig {
            max_summary_bytes: 2 << 20,
            max_cache_bytes: 1 << 20,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "max_summary_bytes");
    }
}
