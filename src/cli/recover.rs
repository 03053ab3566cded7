//! `tapfwd recover`: rebuilds one sink's state after the state store was lost or damaged, so that
//! the daemon, which refuses to start on such a store, can go on.
//!
//! For a file sink (invariant 2, exactly once): the file itself is the record of what was
//! delivered. Its complete lines are read back; the sink's position becomes the end of the last
//! complete line (a torn tail is cut when the daemon starts); for each tenant writing to the sink,
//! the dedupe keys (`EventKey::of` the raw event bytes, as the daemon computes them) of the events
//! filed in its last `max_window + dedupe_horizon` (by the later of the event's own time and its
//! `threatTime`, the time the API files it under) are written through [`Store::commit_chunk`], and its
//! position goes back to `max_window` before its latest event, so that the window that was being
//! written when the store was lost is fetched again and its events already in the file are
//! recognised. The window is floored to the minute, and the daemon clamps it into the API's
//! horizon if the file is older than that.
//!
//! Event times are not trusted blindly: an event dated after now does not set its tenant's
//! position (it keeps its dedupe key; the events are named: how many, the latest, the tenant), a
//! position never passes now − `poll.lag`, and a file in which most of a tenant's events are
//! dated after now is refused whole (its times, or this host's clock, are wrong), naming
//! `--start-at`.
//!
//! A store that sled cannot open ([`StoreError::Damaged`]) is moved aside first
//! ([`Store::move_aside`]), and the sink's state is rebuilt in a new one.
//!
//! For any sink, `--start-at TIME` is the explicit other choice: every tenant's position into the
//! sink is set to TIME (an RFC 3339 instant or a duration ago), accepting that events between TIME
//! and the lost position are delivered again into that sink (invariant 1 still holds: nothing
//! after TIME is skipped). TRAP incidents and Isolation records are read back like SIEM events, by
//! their kind's time field ([`EventKind::time_field`]: `created_at`, `date`), and their position
//! goes back by what the product may still owe or repeat ([`crate::config::tenant::ProductSettings::replay_reach`]:
//! a slice, and TRAP's update look-back). CTR incidents and ITM records are read back too: an
//! incident's time is its `createdAt`, a record's its `risingValue`, each ITM report has its own
//! position (`TENANT:itm.TYPE`), and a CTR tenant keeps the keys of its `lookback` (what a
//! caught-up poll reads again); `--start-at` sets every such position. People snapshot positions
//! are not rebuilt: a list's next snapshot is taken as after a first start.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::Deserialize;

use super::load;
use super::ops::{parse_instant, rewind_target};
use crate::clock;
use crate::event::{EventKey, EventKind, Family};
use crate::sinks::SinkConfig;
use crate::store::{Lineage, Store, StoreError, StreamState};

/// One line of the file sink, as far as recovery reads it.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    tenant: std::borrow::Cow<'a, str>,
    #[serde(rename = "eventType", borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    event: &'a serde_json::value::RawValue,
}

/// The times an event may carry (those the daemon reads, `crate::api::split`).
#[derive(Deserialize)]
struct Times<'a> {
    #[serde(rename = "messageTime", borrow, default)]
    message_time: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "clickTime", borrow, default)]
    click_time: Option<std::borrow::Cow<'a, str>>,
    #[serde(rename = "threatTime", borrow, default)]
    threat_time: Option<std::borrow::Cow<'a, str>>,
    /// A message's threats, each with its own `threatTime`.
    #[serde(rename = "threatsInfoMap", borrow, default)]
    threats: Vec<ThreatTime<'a>>,
}

#[derive(Deserialize)]
struct ThreatTime<'a> {
    #[serde(rename = "threatTime", borrow, default)]
    threat_time: Option<std::borrow::Cow<'a, str>>,
}

/// The time the API files an event under, in unix seconds: the latest of its own time
/// (`clickTime` for clicks, `messageTime` for messages) and its `threatTime`s (a click's own, a
/// message's in `threatsInfoMap`): a message whose threat was reclassified comes again, with its
/// old `messageTime`, in the window of its new `threatTime`.
fn event_time(kind: EventKind, raw: &str) -> Option<i64> {
    if let Some(field) = kind.time_field() {
        // A time-slice source's record: filed under its one time field.
        return crate::api::records::time_of(raw, field).map(|ms| ms.div_euclid(1000));
    }
    let t: Times<'_> = serde_json::from_str(raw).ok()?;
    let own = if kind.is_click() {
        t.click_time
    } else {
        t.message_time
    };
    let own = own.as_deref().and_then(clock::parse_rfc3339_ms);
    let threat = t
        .threats
        .iter()
        .filter_map(|m| m.threat_time.as_deref())
        .chain(t.threat_time.as_deref())
        .filter_map(clock::parse_rfc3339_ms)
        .max();
    own.max(threat).map(|ms| ms.div_euclid(1000))
}

/// What a file sink's file says about one tenant.
#[derive(Default)]
pub struct TenantEvidence {
    /// `(unix seconds, key)` of each SIEM event with a time; keys without one are kept always.
    timed: Vec<(i64, EventKey)>,
    untimed: Vec<EventKey>,
    latest: Option<i64>,
}

/// How a tenant's event times in a file sink's file compare with now ([`TenantEvidence::sanity`]).
struct Sanity {
    /// Events with a time.
    timed: usize,
    /// Those dated after now, and the latest of them.
    future: usize,
    latest_future: Option<i64>,
    /// The latest time that is not after now, no later than now - `poll.lag` (the latest a
    /// window the daemon asked for can end).
    latest: Option<i64>,
    /// Whether that bound moved it.
    clamped: bool,
}

impl Sanity {
    /// Most of the events dated after now: the file's times, or the host's clock, are wrong.
    fn nonsense(&self) -> bool {
        self.future * 2 > self.timed
    }
}

impl TenantEvidence {
    /// The tenant's times against `now` and `lag` (seconds).
    fn sanity(&self, now: i64, lag: i64) -> Sanity {
        let future: Vec<i64> = self
            .timed
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t > now)
            .collect();
        let latest = self
            .timed
            .iter()
            .map(|(t, _)| *t)
            .filter(|t| *t <= now)
            .max();
        Sanity {
            timed: self.timed.len(),
            future: future.len(),
            latest_future: future.iter().copied().max(),
            latest: latest.map(|l| l.min(now - lag)),
            clamped: latest.is_some_and(|l| l > now - lag),
        }
    }
}

/// What a file sink's file holds.
#[derive(Default)]
pub struct FileEvidence {
    /// Bytes up to the end of the last complete line.
    pub complete_len: u64,
    /// Bytes after it (a torn last line).
    pub torn_bytes: u64,
    pub lines: u64,
    /// Lines of People lists and of tenants not writing to this sink, skipped.
    pub skipped: u64,
    pub tenants: BTreeMap<String, TenantEvidence>,
}

/// Reads the file sink's `path`, keeping the evidence of the tenants in `tenants`.
pub fn read_file(path: &Path, tenants: &[String]) -> anyhow::Result<FileEvidence> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the events file {}", path.display()))?;
    let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
    let mut out = FileEvidence::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            // A torn last line: written by a run that never committed it.
            out.torn_bytes = n as u64;
            break;
        }
        out.lines += 1;
        let text = std::str::from_utf8(&line[..n - 1]).map_err(|_| {
            anyhow::anyhow!(
                "{} line {}: not UTF-8; this is not a tapfwd file sink's file (use --start-at TIME instead)",
                path.display(),
                out.lines
            )
        })?;
        let env: Envelope<'_> = serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{} line {}: not a tapfwd event line ({e}); the file is damaged or was not written by tapfwd (use --start-at TIME instead)",
                path.display(),
                out.lines
            )
        })?;
        out.complete_len += n as u64;
        let Some(kind) = EventKind::from_name(&env.event_type) else {
            bail!(
                "{} line {}: unknown eventType `{}`",
                path.display(),
                out.lines,
                env.event_type
            );
        };
        let family = kind.family();
        let read_back = matches!(family, Family::Siem | Family::Ctr | Family::Itm)
            || kind.time_field().is_some();
        if !read_back || !tenants.iter().any(|t| *t == env.tenant) {
            out.skipped += 1;
            continue;
        }
        let raw = env.event.get();
        let key = EventKey::of(raw.as_bytes());
        // Where the source of the event keeps its positions: the tenant, or an ITM report's id.
        let scope = match crate::config::ItmType::ALL
            .into_iter()
            .find(|t| t.kind() == kind)
        {
            Some(t) => format!("{}:itm.{}", env.tenant, t.as_str()),
            None => env.tenant.into_owned(),
        };
        let evidence = out.tenants.entry(scope).or_default();
        let time = match family {
            Family::Ctr => crate::api::ctr::created_ms(raw).map(|ms| ms.div_euclid(1000)),
            Family::Itm => crate::api::itm::page(format!("[{raw}]").as_bytes())
                .ok()
                .and_then(|r| r.first().map(|r| r.rising.div_euclid(1000))),
            _ => event_time(kind, raw),
        };
        match time {
            Some(t) => {
                evidence.timed.push((t, key));
                evidence.latest = Some(evidence.latest.map_or(t, |l| l.max(t)));
            }
            None => evidence.untimed.push(key),
        }
    }
    Ok(out)
}

/// Keys handed to the store in one [`Store::commit_chunk`].
const CHUNK_KEYS: usize = 50_000;

pub(super) async fn recover(path: &Path, sink: &str, start_at: Option<&str>) -> anyhow::Result<()> {
    let mut config = load(path)?;
    config.retain_shard(config.shard);
    let Some(sink_config) = config.sinks.get(sink) else {
        bail!(
            "sink `{sink}` is not configured in {} (its sinks: {})",
            path.display(),
            config.sinks.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    };
    let tenants: Vec<String> = config
        .tenants
        .iter()
        .filter(|(_, t)| t.all_sinks().iter().any(|s| s == sink))
        .map(|(id, _)| id.clone())
        .collect();
    let store = match Store::open(&config.state_dir) {
        Ok(store) => store,
        Err(StoreError::Locked { path }) => bail!(
            "the daemon is running (it holds the state store {}): stop it first, recover, then start it again",
            path.display()
        ),
        Err(StoreError::Damaged { path, message }) => {
            // Nothing in it can be read: keep it for a post-mortem and start a new one, which
            // `store.id` marks as not the one the sinks were fed from until each is recovered.
            let aside = Store::move_aside(&config.state_dir)?;
            println!(
                "the state store at {} is damaged: {message}; moved it aside to {}; rebuilding `{sink}` in a new store",
                path.display(),
                aside.display()
            );
            Store::open(&config.state_dir)?
        }
        Err(e) => return Err(e.into()),
    };
    let now = chrono::Utc::now().timestamp();
    let lag = config.poll.lag.as_secs() as i64;
    if let Some(at) = start_at {
        let asked = parse_instant(at, now).context("--start-at")?;
        for id in &tenants {
            let horizon = config.tenants[id].product().horizon_secs();
            let (checkpoint, _) = rewind_target(asked, now, horizon)
                .map_err(|e| anyhow::anyhow!("--start-at: {e}"))?;
            // Each position the tenant keeps for the sink (ITM: one per report).
            for scope in crate::sources::plan::rewind_scopes(id, &config.tenants[id]) {
                let mut state = store.stream(&scope, sink)?.unwrap_or_default();
                state.checkpoint = checkpoint;
                store.put_stream(&scope, sink, &state)?;
                println!(
                    "{scope} -> {sink}: goes on from {}; events since then already in `{sink}` are delivered again",
                    clock::rfc3339(checkpoint)
                );
            }
        }
        if let SinkConfig::File(f) = sink_config {
            let evidence =
                read_file(&f.path, &[]).or_else(|e| match std::fs::metadata(&f.path) {
                    Err(m) if m.kind() == std::io::ErrorKind::NotFound => {
                        Ok(FileEvidence::default())
                    }
                    _ => Err(e),
                })?;
            store.set_position(sink, evidence.complete_len)?;
            println!(
                "{sink}: appends after byte {} of {}",
                evidence.complete_len,
                f.path.display()
            );
        }
        store.flush().await?;
        return Ok(());
    }
    let SinkConfig::File(file) = sink_config else {
        bail!(
            "sink `{sink}` is a {} sink: tapfwd cannot read back what it holds. Choose where it goes on from with \
             `--start-at TIME` (an RFC 3339 instant or a duration ago such as 6h); events between TIME and the lost \
             position are delivered to it again",
            sink_config.kind()
        );
    };
    // A position with no stream of the sink in a store that is not the one the sinks were fed
    // from is what is left of the lost one (sled kept part of a damaged file): rebuilt over.
    let remnant =
        matches!(store.lineage()?, Lineage::Lost { .. }) && !store.stream_sinks()?.contains(sink);
    if let Some(pos) = store.position(sink)?.filter(|_| !remnant) {
        bail!(
            "the state store in {} already records sink `{sink}` (at byte {pos} of {}): there is nothing to recover. \
             To fetch events again, use `tapfwd rewind`",
            store.dir().display(),
            file.path.display()
        );
    }
    let evidence = match std::fs::metadata(&file.path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileEvidence::default(),
        _ => read_file(&file.path, &tenants)?,
    };
    // Times after now cannot be right (a typo in a test event, a clock that was wrong when the
    // event was made): they must not set a position no window reaches for years. A file whose
    // times are mostly like that makes no sense for this host's clock, and is refused whole.
    let times: BTreeMap<&String, Sanity> = evidence
        .tenants
        .iter()
        .map(|(id, e)| (id, e.sanity(now, lag)))
        .collect();
    if let Some((id, t)) = times.iter().find(|(_, t)| t.nonsense()) {
        bail!(
            "{}: {} of the {} timed events of tenant {id} are dated after now ({}), the latest {}: these times make \
             no sense for this host's clock (is it right?), so nothing was changed. Choose where `{sink}` goes on from \
             with `--start-at TIME` instead (an RFC 3339 instant or a duration ago such as 6h)",
            file.path.display(),
            t.future,
            t.timed,
            clock::rfc3339(now),
            t.latest_future.map_or("-".to_string(), clock::rfc3339),
        );
    }
    let max_window = config.poll.max_window.as_secs() as i64;
    let dedupe = config.poll.dedupe_horizon.as_secs() as i64;
    // Where a tenant with no events in the file goes on from: the others' earliest position, or
    // a first start's when the file has none at all.
    let first_start =
        clock::floor_minute(now - lag - config.poll.initial_lookback.as_secs() as i64);
    let fallback = times
        .values()
        .filter_map(|t| t.latest)
        .map(|l| clock::floor_minute(l) - max_window)
        .min()
        .unwrap_or(first_start);
    // Each position a tenant keeps for the sink: the tenant's, or each ITM report's.
    let scopes: Vec<(String, i64, i64)> = tenants
        .iter()
        .flat_map(|id| {
            let tenant = &config.tenants[id];
            // Keys are kept as far back as the tenant's source reads again (CTR's lookback).
            let reach = (tenant.settings().key_reach().as_secs() as i64).max(dedupe);
            // A source whose slices are longer than a window, or that asks its past again,
            // goes back that far.
            let back = tenant
                .settings()
                .replay_reach()
                .map_or(max_window, |d| max_window.max(d.as_secs() as i64));
            crate::sources::plan::rewind_scopes(id, tenant)
                .into_iter()
                .map(move |scope| (scope, reach, back))
        })
        .collect();
    for (id, dedupe, back) in &scopes {
        let (id, dedupe, back) = (id, *dedupe, *back);
        let latest = times.get(id).and_then(|t| t.latest);
        if let Some(t) = times.get(id).filter(|t| t.future > 0) {
            println!(
                "{id} -> {sink}: {} of its {} timed event(s) are dated after now, the latest {}; they keep their dedupe \
                 keys but do not set its position",
                t.future,
                t.timed,
                t.latest_future.map_or("-".to_string(), clock::rfc3339),
            );
        }
        if let Some(t) = times.get(id).filter(|t| t.clamped) {
            println!(
                "{id} -> {sink}: its latest event time is after now - poll.lag ({}); its position is taken from there",
                clock::rfc3339(t.latest.unwrap_or_default())
            );
        }
        let (checkpoint, keys, latest) = match evidence.tenants.get(id) {
            Some(e) if latest.is_some() => {
                let latest = latest.unwrap_or_default();
                let checkpoint = clock::floor_minute(latest) - back;
                let keys: Vec<EventKey> = e
                    .timed
                    .iter()
                    .filter(|(t, _)| *t >= checkpoint - dedupe)
                    .map(|(_, k)| *k)
                    .chain(e.untimed.iter().copied())
                    .collect();
                (checkpoint, keys, Some(latest))
            }
            Some(e) => (fallback, e.untimed.clone(), None),
            None => (fallback, Vec::new(), None),
        };
        // The keys count as delivered by a window ending at the tenant's latest event (rounded
        // up to the minute): they are loaded for every window up to a dedupe horizon after it.
        let window_end = latest.map_or(checkpoint, |l| clock::floor_minute(l + 59));
        for chunk in keys.chunks(CHUNK_KEYS) {
            store.commit_chunk(id, sink, window_end, chunk, None)?;
        }
        let state = StreamState {
            checkpoint,
            ..Default::default()
        };
        store.put_stream(id, sink, &state)?;
        println!(
            "{id} -> {sink}: {} event(s) in the file, latest {}; goes on from {} with {} dedupe key(s)",
            evidence.tenants.get(id).map_or(0, |e| e.timed.len() + e.untimed.len()),
            latest.map_or("-".to_string(), clock::rfc3339),
            clock::rfc3339(checkpoint),
            keys.len()
        );
    }
    store.set_position(sink, evidence.complete_len)?;
    store.flush().await?;
    println!(
        "{sink}: {} complete line(s), {} byte(s), in {}{}{}",
        evidence.lines,
        evidence.complete_len,
        file.path.display(),
        if evidence.torn_bytes > 0 {
            format!(
                "; a torn last line of {} byte(s) is cut when the daemon starts",
                evidence.torn_bytes
            )
        } else {
            String::new()
        },
        if evidence.skipped > 0 {
            format!(
                "; {} line(s) of People lists or of tenants not configured for this sink were left as they are",
                evidence.skipped
            )
        } else {
            String::new()
        }
    );
    println!("recovered: start the daemon again");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_and_times_and_stops_at_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let raw1 = r#"{"GUID":"a","messageTime":"2026-11-19T10:00:30.000Z","threatsInfoMap":[{"threatTime":"2026-11-20T10:00:30.000Z"},{"threatTime":"2026-11-19T10:00:00Z"}]}"#;
        let raw2 =
            r#"{"id":"c","clickTime":"2026-11-19T00:00:00Z","threatTime":"2026-11-20T11:00:00Z"}"#;
        let text = format!(
            "{{\"tenant\":\"acme\",\"eventType\":\"messagesDelivered\",\"customer\":\"9\",\"event\":{raw1}}}\n\
             {{\"tenant\":\"acme\",\"eventType\":\"clicksPermitted\",\"event\":{raw2},\"threats\":{{}}}}\n\
             {{\"tenant\":\"gone\",\"eventType\":\"clicksPermitted\",\"event\":{raw2}}}\n\
             {{\"tenant\":\"acme\",\"eventTy"
        );
        std::fs::write(&path, &text).unwrap();
        let e = read_file(&path, &["acme".to_string()]).unwrap();
        assert_eq!(e.lines, 3);
        assert_eq!(e.skipped, 1);
        assert_eq!(e.torn_bytes, "{\"tenant\":\"acme\",\"eventTy".len() as u64);
        assert_eq!(e.complete_len, text.len() as u64 - e.torn_bytes);
        let acme = &e.tenants["acme"];
        let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp();
        assert_eq!(
            acme.timed,
            vec![
                (t("2026-11-20T10:00:30Z"), EventKey::of(raw1.as_bytes())),
                (t("2026-11-20T11:00:00Z"), EventKey::of(raw2.as_bytes())),
            ]
        );
        assert_eq!(acme.latest, Some(t("2026-11-20T11:00:00Z")));
    }

    /// Times after now do not count as a tenant's latest; the latest is clamped to now - lag;
    /// most events after now is nonsense.
    #[test]
    fn event_times_after_now_are_outliers() {
        let now = 1_800_000_000;
        let lag = 1800;
        let k = EventKey([0; 16]);
        let e = TenantEvidence {
            timed: vec![
                (now - 7200, k),
                (now - 600, k),
                (now + 86_400, k),
                (now + 60, k),
            ],
            untimed: Vec::new(),
            latest: Some(now + 86_400),
        };
        let s = e.sanity(now, lag);
        assert_eq!((s.timed, s.future), (4, 2));
        assert_eq!(s.latest_future, Some(now + 86_400));
        assert_eq!(s.latest, Some(now - lag), "clamped to now - lag");
        assert!(s.clamped);
        assert!(!s.nonsense(), "half is not most");
        let e = TenantEvidence {
            timed: vec![(now - 7200, k), (now + 1, k), (now + 2, k)],
            untimed: Vec::new(),
            latest: Some(now + 2),
        };
        let s = e.sanity(now, lag);
        assert!(s.nonsense());
        assert_eq!(s.latest, Some(now - 7200));
        assert!(!s.clamped);
    }

    #[test]
    fn a_line_that_is_not_an_event_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        std::fs::write(
            &path,
            "{\"tenant\":\"a\",\"eventType\":\"messagesDelivered\",\"event\":{}}\nhello\n",
        )
        .unwrap();
        let e = read_file(&path, &[]).err().unwrap().to_string();
        assert!(e.contains("line 2") && e.contains("--start-at"), "{e}");
    }
}
