//! The state store: checkpoints, dedupe keys, request budgets and sink positions, in sled.
//!
//! Keeps invariants 1 and 2 on disk. Everything lives in one sled tree with prefixed keys so that
//! one `apply_batch` is one atomic transaction:
//!
//! | key | value |
//! |---|---|
//! | `s/TENANT/SINK` | [`StreamState`]: the checkpoint of that tenant's events for that sink |
//! | `k/TENANT/SINK/END/SEQ` | 16-byte dedupe keys of one delivered chunk of the window ending at END |
//! | `b/TENANT` | the tenant's rolling 24 h request log ([`Budget`]) |
//! | `b/TENANT:late_sweep` | the late sweep's own requests in the same 24 h (a part of `b/TENANT`), for status |
//! | `p/SINK` | a sink's committed position (the file sink's length) |
//! | `t/TENANT` | the tenant's last error, for `tapfwd status` |
//! | `i/TENANT/KIND/ID` | threat enrichment's cache: 8-byte fetch time (unix s, BE) + the API's JSON |
//! | `m/id` | the store's identity: 32 hex digits, made when the store is first used |
//! | `m/probe` | the last health probe's time (written only while the store is failing) |
//!
//! The identity is also written to `STATE_DIR/store.id` beside the store ([`ID_FILE`]). A store
//! that opens without an identity while that file names one is not the store the sinks were fed
//! from (it was deleted, cut short or damaged and sled started an empty one): [`Store::lineage`]
//! says so, and the daemon refuses to start rather than fetch every tenant's last hours again and
//! deliver them twice (invariant 2). `tapfwd recover` rebuilds the sinks' state. A state directory
//! deleted whole takes `store.id` with it, so the identity is also kept outside it, in its parent
//! ([`marker_path`]: `PARENT/.tapfwd-NAME.id`), where the parent can be written.
//!
//! A store sled cannot read (a panic or corrupted data while opening it, or while every record is
//! read once at open) is [`StoreError::Damaged`]: the daemon refuses it rather than fail later, and
//! `tapfwd recover` moves it aside ([`Store::move_aside`]).
//!
//! Dedupe keys are stored as one blob per delivered chunk rather than one sled entry per event:
//! a 200,000-event window costs a handful of inserts, and pruning is a range delete. A chunk's
//! keys and the sink position it reached are written in one batch after the sink confirmed the
//! chunk; the checkpoint moves in a later batch, once the whole window is delivered. Names are
//! validated to `[A-Za-z0-9_.-]`, so `/` separates key parts unambiguously. No secret is ever
//! written here (invariant 7).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::budget::Budget;
use crate::event::EventKey;

/// A store failure. None is retryable in place: the daemon stops the affected work and says why.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store at {path} is in use by another process (is tapfwd already running? `tapfwd status` asks the running daemon through admin_listen)")]
    Locked { path: PathBuf },
    #[error("state store at {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("state store: {0}")]
    Sled(#[from] sled::Error),
    #[error("state store: corrupt record at {key}: {message}")]
    Corrupt { key: String, message: String },
    /// sled cannot read the store at `path` (it panicked, or found corrupted data): a restart
    /// cannot cure that; `tapfwd recover` moves it aside ([`Store::move_aside`]).
    #[error("the state store at {path} is damaged: {message}")]
    Damaged { path: PathBuf, message: String },
}

/// Progress of one tenant's events into one sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// Unix seconds: every event up to this instant (the end of the last delivered window) has
    /// been delivered to the sink.
    pub checkpoint: i64,
    /// Seconds of API history skipped because the checkpoint had fallen past the 7-day horizon.
    #[serde(default)]
    pub gap_seconds: i64,
    /// The last skipped span, `[from, to)` in unix seconds.
    #[serde(default)]
    pub last_gap: Option<(i64, i64)>,
    /// Unix seconds: the late sweep's position (TAP and Essentials). Every window up to this
    /// instant has been queried at least once when its end was `late_sweep` old, or was skipped
    /// by the sweep and said so. Never ahead of a position the sweep may still reach, and never
    /// moves `checkpoint`. `None` for sources without a sweep, and in stores written before the
    /// sweep existed (it then starts at the checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swept: Option<i64>,
    /// The latest paged delivery (a People snapshot) to this sink: how far it got. Absent for
    /// windows and streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
}

/// How far a delivery that pages through its span (a People snapshot) got for one stream. Kept
/// with the stream, so a delivery cut short (a 429, a spent budget, a failing sink, a restart)
/// goes on from the page after `pages`, and how the last one ended is still reported after a
/// restart. It is finished once the stream's checkpoint reached `end`, complete unless `short`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The position the delivery takes the stream to (a snapshot's period).
    pub end: i64,
    /// The sink has every event of pages 1 to `pages`.
    pub pages: u32,
    /// Events those pages held, as fetched (before dedupe).
    pub events: u64,
    /// How many events the API said the span holds, when it said.
    #[serde(default)]
    pub expected: Option<u64>,
    /// Why the delivery is partial: it got less or more than the API promised, or could not be
    /// finished in time. Set, it is not gone on with.
    #[serde(default)]
    pub short: Option<String>,
}

/// What `tapfwd status` shows about a tenant besides its streams.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    /// The last error, with secrets already excluded by construction.
    pub last_error: Option<String>,
    /// Unix seconds of the last error.
    pub last_error_at: Option<i64>,
    /// True while the tenant's credentials are rejected (401/403).
    pub failed: bool,
}

/// The last [`Store::flush`]: its number and how it ended.
#[derive(Default)]
struct LastFlush(Option<(u64, Result<(), sled::Error>)>);

/// The open store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    path: PathBuf,
    /// Lets one [`Store::flush`] run at a time, and keeps how the last one ended; see there.
    flushing: std::sync::Arc<tokio::sync::Mutex<LastFlush>>,
    /// Flushes started (the number of the latest), and flushes that went to sled: see
    /// [`Store::flush`].
    flushes_started: std::sync::Arc<AtomicU64>,
    /// Whether writes and flushes succeed; see [`Store::health`].
    health: std::sync::Arc<Health>,
    /// The test seam [`STALL_ENV`]: while this file exists, batches, flushes and reads hang.
    stall: Option<std::sync::Arc<PathBuf>>,
}

mod health;
mod open;

use health::*;
pub use health::{HealthWatch, StoreHealth, STALL_ENV};
use open::*;
pub use open::{marked_identity, marker_path};

fn stream_key(tenant: &str, sink: &str) -> Vec<u8> {
    format!("s/{tenant}/{sink}").into_bytes()
}

fn keys_prefix(tenant: &str, sink: &str) -> Vec<u8> {
    format!("k/{tenant}/{sink}/").into_bytes()
}

fn window_key(tenant: &str, sink: &str, window_end: i64) -> Vec<u8> {
    let mut k = keys_prefix(tenant, sink);
    k.extend_from_slice(&(window_end.max(0) as u64).to_be_bytes());
    k
}

fn budget_key(tenant: &str) -> Vec<u8> {
    format!("b/{tenant}").into_bytes()
}

fn position_key(sink: &str) -> Vec<u8> {
    format!("p/{sink}").into_bytes()
}

/// The store's identity record.
const ID_KEY: &[u8] = b"m/id";

/// The copy of the store's identity kept beside it, in the state directory.
pub const ID_FILE: &str = "store.id";

/// Whether the open store is the one the daemon's sinks were fed from ([`Store::lineage`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lineage {
    /// The store carries its identity.
    Known,
    /// Empty, without identity, and no identity file beside it: a new install. (A state directory
    /// deleted whole looks the same from here; the file sink tells by its file.)
    New,
    /// Streams but no identity: written before identities existed; it is adopted.
    Unmarked,
    /// No identity, yet `store.id` beside it names the store `expected`: that store is gone and
    /// this one was created anew.
    Lost { expected: String },
}

fn tenant_key(tenant: &str) -> Vec<u8> {
    format!("t/{tenant}").into_bytes()
}

/// Sets `path`'s permission bits to exactly `mode`.
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Makes every file under `dir` 0600 and every directory 0700 (`dir` included).
fn private_tree(dir: &Path) -> std::io::Result<()> {
    set_mode(dir, 0o700)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            private_tree(&entry.path())?;
        } else if kind.is_file() {
            set_mode(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}
fn intel_key(tenant: &str, kind: &str, id: &str) -> Vec<u8> {
    format!("i/{tenant}/{kind}/{id}").into_bytes()
}

/// One cached enrichment lookup: `(kind, id, fetched at (unix s), the API's JSON)`.
pub type IntelEntry = (String, String, i64, Vec<u8>);

impl Store {
    /// Opens (creating) the store under `dir`. A `dir` it creates is mode 0700, and the store's
    /// own files are made 0600 (directories 0700) on every open, whatever the umask: they hold
    /// the dedupe keys and positions of every tenant.
    ///
    /// sled opens in a thread of its own, and every record is read once before the store is
    /// handed out: a panic of sled's (`tried to serialize Uninitialized`, on a garbled file) or
    /// corrupted data is [`StoreError::Damaged`], with no panic message printed, rather than a
    /// crash now or a failing read later in a running daemon.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let owned = dir.to_owned();
        on_open_thread(dir, move || Store::open_and_read(&owned))
    }

    /// [`Store::open`]'s work, on its thread.
    fn open_and_read(dir: &Path) -> Result<Store, StoreError> {
        let open_error = |e: std::io::Error| StoreError::Open {
            path: dir.to_owned(),
            message: e.to_string(),
        };
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(open_error)?;
            set_mode(dir, 0o700).map_err(open_error)?;
        }
        let path = dir.join(SLED_DIR);
        let db = sled::Config::new()
            .path(&path)
            // sled's default page cache is 1 GiB; the working set here is checkpoints and a few
            // recent key blobs per tenant.
            .cache_capacity(32 << 20)
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    StoreError::Locked { path: path.clone() }
                }
                sled::Error::Io(io) if io.to_string().contains("lock") => {
                    StoreError::Locked { path: path.clone() }
                }
                other => unreadable(&path, other),
            })?;
        let tree = db.open_tree("state").map_err(|e| unreadable(&path, e))?;
        // sled reads pages when they are first asked for: a page on a damaged part of the file
        // would fail a read hours later, in a running daemon that a restart does not cure.
        for name in db.tree_names() {
            let t = db.open_tree(&name).map_err(|e| unreadable(&path, e))?;
            for item in t.iter() {
                item.map_err(|e| unreadable(&path, e))?;
            }
        }
        private_tree(&path).map_err(|e| StoreError::Open {
            path: path.clone(),
            message: format!("cannot make the store private: {e}"),
        })?;
        Ok(Store {
            db,
            tree,
            path,
            flushing: Default::default(),
            flushes_started: Default::default(),
            health: Default::default(),
            stall: std::env::var_os(STALL_ENV).map(|p| std::sync::Arc::new(PathBuf::from(p))),
        })
    }

    /// Moves the store under `dir` (one that does not open: [`StoreError::Damaged`]) aside, to
    /// `dir/tapfwd.sled.damaged-TIME` (UTC), and returns where. `store.id` stays, so the store
    /// opened there next is known to be a new one ([`Lineage::Lost`]).
    pub fn move_aside(dir: &Path) -> Result<PathBuf, StoreError> {
        let from = dir.join(SLED_DIR);
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let to = dir.join(format!("{SLED_DIR}.damaged-{stamp}"));
        std::fs::rename(&from, &to).map_err(|e| StoreError::Open {
            path: from.clone(),
            message: format!("cannot move it aside to {}: {e}", to.display()),
        })?;
        Ok(to)
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state directory that holds the store.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }

    /// Whether this store is the one the sinks were fed from; see [`Lineage`].
    pub fn lineage(&self) -> Result<Lineage, StoreError> {
        if self.tree.get(ID_KEY)?.is_some() {
            return Ok(Lineage::Known);
        }
        let file = self.dir().join(ID_FILE);
        match std::fs::read_to_string(&file) {
            Ok(text) if !text.trim().is_empty() => {
                return Ok(Lineage::Lost {
                    expected: text.trim().to_string(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::Open {
                    path: file,
                    message: e.to_string(),
                })
            }
        }
        // No `store.id`: the state directory may have gone whole, with it. Its marker outside
        // says whether there was a store here.
        if let Some(expected) = marked_identity(self.dir()) {
            return Ok(Lineage::Lost { expected });
        }
        if self.tree.scan_prefix(b"s/").next().is_some() {
            Ok(Lineage::Unmarked)
        } else {
            Ok(Lineage::New)
        }
    }

    /// The store's identity, if it has one.
    pub fn identity(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree
            .get(ID_KEY)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Gives the store an identity if it has none (durably), then writes it to `store.id` beside
    /// the store (mode 0600). In that order, so that a crash between the two never leaves a file
    /// naming an identity the store does not hold.
    pub async fn stamp(&self) -> Result<String, StoreError> {
        let id = match self.identity()? {
            Some(id) => id,
            None => {
                let mut bytes = [0u8; 16];
                let seed = format!(
                    "{:?}{}{}",
                    std::time::SystemTime::now(),
                    std::process::id(),
                    self.db.generate_id()?
                );
                bytes.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
                let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                self.write(|| self.tree.insert(ID_KEY, id.as_bytes()))?;
                self.flush().await?;
                id
            }
        };
        let file = self.dir().join(ID_FILE);
        let current = std::fs::read_to_string(&file).unwrap_or_default();
        if current.trim() != id {
            write_durably(&file, &format!("{id}\n")).map_err(|e| StoreError::Open {
                path: file.clone(),
                message: format!("cannot write the store's identity: {e}"),
            })?;
        }
        // The marker outside the state directory: best effort, as its parent may not be ours to
        // write (systemd's DynamicUser= state directories live in a root-owned one).
        if let Some(marker) = marker_path(self.dir()) {
            if marked_identity(self.dir()).as_deref() != Some(id.as_str()) {
                if let Err(e) = write_durably(&marker, &format!("{id}\n")) {
                    tracing::warn!(marker = %marker.display(), error = %e,
                        "cannot keep the state directory's identity outside it; if the whole state directory is deleted, a sink without state of its own (HTTP, syslog, Kafka) gets its last hours again");
                }
            }
        }
        Ok(id)
    }

    /// The sinks that have at least one stream in the store.
    pub fn stream_sinks(&self) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .streams()?
            .into_iter()
            .map(|(_, sink, _)| sink)
            .collect())
    }

    /// The test seam [`STALL_ENV`] for reads: blocks the calling thread while the file exists.
    fn stalled_read(&self) {
        if let Some(file) = &self.stall {
            while file.exists() {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, key: &[u8]) -> Result<Option<T>, StoreError> {
        self.stalled_read();
        match self.tree.get(key)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|e| StoreError::Corrupt {
                    key: String::from_utf8_lossy(key).into_owned(),
                    message: e.to_string(),
                }),
        }
    }

    fn json<T: Serialize>(value: &T) -> Vec<u8> {
        // Serialising these plain structs cannot fail.
        serde_json::to_vec(value).unwrap_or_default()
    }

    /// The stream's progress, if it has any.
    pub fn stream(&self, tenant: &str, sink: &str) -> Result<Option<StreamState>, StoreError> {
        self.get_json(&stream_key(tenant, sink))
    }

    /// Sets a stream's progress outright (first start, horizon clamp, rewind).
    pub fn put_stream(&self, tenant: &str, sink: &str, s: &StreamState) -> Result<(), StoreError> {
        self.write(|| self.tree.insert(stream_key(tenant, sink), Self::json(s)))?;
        Ok(())
    }

    /// Records that a chunk of the window ending at `window_end` was delivered to `sink`:
    /// its dedupe keys and, for sinks with a position, where the sink now stands. One atomic batch.
    pub fn commit_chunk(
        &self,
        tenant: &str,
        sink: &str,
        window_end: i64,
        keys: &[EventKey],
        position: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        if !keys.is_empty() {
            let mut k = window_key(tenant, sink, window_end);
            k.extend_from_slice(&self.db.generate_id()?.to_be_bytes());
            let mut blob = Vec::with_capacity(keys.len() * 16);
            for key in keys {
                blob.extend_from_slice(&key.0);
            }
            batch.insert(k, blob);
        }
        if let Some(pos) = position {
            batch.insert(position_key(sink), &pos.to_be_bytes());
        }
        self.apply(batch)?;
        Ok(())
    }

    /// Moves a stream's checkpoint and forgets dedupe keys of windows that ended before
    /// `forget_before`, in one atomic batch.
    pub fn commit_window(
        &self,
        tenant: &str,
        sink: &str,
        state: &StreamState,
        forget_before: i64,
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(stream_key(tenant, sink), Self::json(state));
        let start = keys_prefix(tenant, sink);
        let end = window_key(tenant, sink, forget_before);
        for item in self.tree.range(start..end) {
            let (k, _) = item?;
            batch.remove(k);
        }
        self.apply(batch)?;
        Ok(())
    }

    /// Dedupe keys of every delivered chunk of windows that ended at or after `since`.
    pub fn load_keys(
        &self,
        tenant: &str,
        sink: &str,
        since: i64,
        into: &mut impl Extend<EventKey>,
    ) -> Result<(), StoreError> {
        self.stalled_read();
        let prefix = keys_prefix(tenant, sink);
        let from = window_key(tenant, sink, since);
        let mut end = prefix.clone();
        // '/' + 1 == '0': the first key after every key with this prefix.
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        for item in self.tree.range(from..end) {
            let (_, blob) = item?;
            into.extend(blob.chunks_exact(16).map(|chunk| {
                let mut key = [0u8; 16];
                key.copy_from_slice(chunk);
                EventKey(key)
            }));
        }
        Ok(())
    }

    /// Forgets every dedupe key of a stream (rewind with `--no-dedupe`).
    pub fn forget_keys(&self, tenant: &str, sink: &str) -> Result<(), StoreError> {
        let prefix = keys_prefix(tenant, sink);
        let mut batch = sled::Batch::default();
        for item in self.tree.scan_prefix(&prefix) {
            let (k, _) = item?;
            batch.remove(k);
        }
        self.apply(batch)?;
        Ok(())
    }

    /// The tenant's request log, if any.
    pub fn budget(&self, tenant: &str) -> Result<Option<Budget>, StoreError> {
        self.get_json(&budget_key(tenant))
    }

    pub fn put_budget(&self, tenant: &str, budget: &Budget) -> Result<(), StoreError> {
        self.write(|| self.tree.insert(budget_key(tenant), Self::json(budget)))?;
        Ok(())
    }

    /// A sink's committed position (the file sink's committed length).
    pub fn position(&self, sink: &str) -> Result<Option<u64>, StoreError> {
        self.stalled_read();
        Ok(self.tree.get(position_key(sink))?.and_then(|v| {
            let bytes: [u8; 8] = v.as_ref().try_into().ok()?;
            Some(u64::from_be_bytes(bytes))
        }))
    }

    pub fn set_position(&self, sink: &str, pos: u64) -> Result<(), StoreError> {
        self.write(|| self.tree.insert(position_key(sink), &pos.to_be_bytes()))?;
        Ok(())
    }

    pub fn tenant_record(&self, tenant: &str) -> Result<Option<TenantRecord>, StoreError> {
        self.get_json(&tenant_key(tenant))
    }

    pub fn put_tenant_record(&self, tenant: &str, r: &TenantRecord) -> Result<(), StoreError> {
        self.write(|| self.tree.insert(tenant_key(tenant), Self::json(r)))?;
        Ok(())
    }

    /// Every cached enrichment lookup of `tenant` ([`IntelEntry`]).
    pub fn intel_entries(&self, tenant: &str) -> Result<Vec<IntelEntry>, StoreError> {
        self.stalled_read();
        let prefix = format!("i/{tenant}/");
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(prefix.as_bytes()) {
            let (k, v) = item?;
            let rest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let Some((kind, id)) = rest.split_once('/') else {
                continue;
            };
            let Some((at, body)) = v.split_first_chunk::<8>() else {
                continue;
            };
            out.push((
                kind.to_owned(),
                id.to_owned(),
                i64::from_be_bytes(*at),
                body.to_vec(),
            ));
        }
        Ok(out)
    }

    /// Caches one enrichment lookup of `tenant`, fetched at `at` (unix seconds).
    pub fn put_intel(
        &self,
        tenant: &str,
        kind: &str,
        id: &str,
        at: i64,
        body: &[u8],
    ) -> Result<(), StoreError> {
        let mut value = Vec::with_capacity(8 + body.len());
        value.extend_from_slice(&at.to_be_bytes());
        value.extend_from_slice(body);
        self.write(|| self.tree.insert(intel_key(tenant, kind, id), value))?;
        Ok(())
    }

    /// Forgets one cached enrichment lookup (evicted by the cache's size bound).
    pub fn remove_intel(&self, tenant: &str, kind: &str, id: &str) -> Result<(), StoreError> {
        self.write(|| self.tree.remove(intel_key(tenant, kind, id)))?;
        Ok(())
    }

    /// Every stream in the store: `(tenant, sink, state)`.
    pub fn streams(&self) -> Result<Vec<(String, String, StreamState)>, StoreError> {
        self.stalled_read();
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(b"s/") {
            let (k, v) = item?;
            let key = String::from_utf8_lossy(&k[2..]).into_owned();
            let Some((tenant, sink)) = key.split_once('/') else {
                continue;
            };
            let state: StreamState =
                serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt {
                    key: key.clone(),
                    message: e.to_string(),
                })?;
            out.push((tenant.to_string(), sink.to_string(), state));
        }
        Ok(out)
    }

    /// Makes everything written so far durable: a group commit. The writes of every caller that
    /// finished before a flush started are covered by that flush, so callers that come within
    /// one flush of each other (the chunks and windows of many tenants and sources) share one
    /// flush of sled's log: each waits for the flush that covers its writes, and gets its
    /// outcome — a failed flush fails every caller it covered (invariant 1: nothing is
    /// acknowledged before it is durable).
    ///
    /// One flush at a time: sled 0.34 runs `flush_async` on its small I/O thread pool, where a
    /// flush holds a read lock while it waits for log buffers that only that same pool writes
    /// out. With a dozen pollers flushing at once and one `apply_batch` waiting for the write
    /// lock, every pool thread ended up waiting and the daemon hung (`tapfwd bench`, scale case).
    /// A caller that waited here returns with the outcome of the flush that started after its
    /// call, if one did; otherwise it flushes, covering every write made while it waited.
    pub async fn flush(&self) -> Result<(), StoreError> {
        // Every write of this caller happened before this load: a flush numbered higher started
        // after them, and sled's flush covers what was applied before it started.
        let seen = self.flushes_started.load(Ordering::SeqCst);
        let mut last = self.flushing.lock().await;
        if let Some((number, outcome)) = &last.0 {
            if *number > seen {
                return outcome.clone().map_err(StoreError::from);
            }
        }
        let number = self.flushes_started.fetch_add(1, Ordering::SeqCst) + 1;
        let _busy = Busy::start(&self.health);
        if let Some(file) = &self.stall {
            while file.exists() {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        let outcome = self.db.flush_async().await.map(|_| ());
        last.0 = Some((number, outcome.clone()));
        match outcome {
            Ok(()) => {
                self.health.failing_since.store(0, Ordering::Release);
                Ok(())
            }
            Err(e) => Err(self.failed(e)),
        }
    }

    /// How many flushes of sled's log [`Store::flush`] has made (its callers may be many more).
    pub fn flushes(&self) -> u64 {
        self.flushes_started.load(Ordering::SeqCst)
    }

    /// Applies one atomic batch (see [`blocking`]), noting a failure.
    fn apply(&self, batch: sled::Batch) -> Result<(), StoreError> {
        let _busy = Busy::start(&self.health);
        blocking(|| {
            if let Some(file) = &self.stall {
                while file.exists() {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
            }
            self.tree.apply_batch(batch)
        })
        .map_err(|e| self.failed(e))
    }

    /// Runs one sled write (see [`blocking`]; one that does not return shows in
    /// [`Store::health`]), noting a failure.
    fn write<T>(&self, f: impl FnOnce() -> sled::Result<T>) -> Result<T, StoreError> {
        let _busy = Busy::start(&self.health);
        self.wrote(blocking(f))
    }

    /// Notes a failed write (see [`Store::health`]).
    fn wrote<T>(&self, result: sled::Result<T>) -> Result<T, StoreError> {
        result.map_err(|e| self.failed(e))
    }

    /// Starts (or continues) a run of failures; only a flush that works ends it.
    fn failed(&self, e: sled::Error) -> StoreError {
        self.health.errors_total.fetch_add(1, Ordering::AcqRel);
        let _ = self.health.failing_since.compare_exchange(
            0,
            unix_now(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if let Ok(mut last) = self.health.last_error.lock() {
            *last = Some(e.to_string());
        }
        e.into()
    }

    /// Whether writes and flushes work. One that has not returned for 10 s counts as a failure
    /// from then on (sled's could block forever after a disk error).
    pub fn health(&self) -> StoreHealth {
        self.health_watch().health()
    }

    /// The store's health alone ([`HealthWatch`]).
    pub fn health_watch(&self) -> HealthWatch {
        HealthWatch(self.health.clone())
    }

    /// Tries a small write and a flush, to see whether a failing store works again.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.write(|| self.tree.insert(b"m/probe", &unix_now().to_be_bytes()))?;
        self.flush().await
    }

    /// Bytes the store occupies on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Every raw key and value, for tests that check what the store holds.
    pub fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for tree_name in self.db.tree_names() {
            if let Ok(tree) = self.db.open_tree(&tree_name) {
                for (k, v) in tree.iter().flatten() {
                    out.push((k.to_vec(), v.to_vec()));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Commits that wait while a flush runs share the next one: three callers, one flush of
    /// sled's log, and each of their writes durable after it.
    #[tokio::test]
    async fn commits_made_while_a_flush_runs_share_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let before = store.flushes();
        // A flush in progress: the callers below commit and queue behind it.
        let running = store.flushing.lock().await;
        for (i, sink) in ["a", "b", "c"].iter().enumerate() {
            store
                .commit_chunk(
                    "acme",
                    sink,
                    100,
                    &[EventKey([i as u8; 16])],
                    Some(i as u64),
                )
                .unwrap();
        }
        let flushes = futures_util::future::join_all((0..3).map(|_| store.flush()));
        let release = async {
            tokio::task::yield_now().await;
            drop(running);
        };
        let (results, ()) = tokio::join!(flushes, release);
        assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
        assert_eq!(store.flushes() - before, 1, "three commits, one flush");
        // A commit after that flush is not covered by it: it gets one of its own.
        store.set_position("a", 9).unwrap();
        store.flush().await.unwrap();
        assert_eq!(store.flushes() - before, 2);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.position("c").unwrap(), Some(2));
        assert_eq!(store.position("a").unwrap(), Some(9));
    }

    /// A failure shows until a flush works (a write that works proves nothing: it may only have
    /// reached memory); errors are counted; the probe is what ends it.
    #[tokio::test]
    async fn a_failure_lasts_until_a_flush_works() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(store.health().healthy);
        let _ = store.failed(sled::Error::Io(std::io::Error::from_raw_os_error(28)));
        store.put_budget("acme", &Budget::default()).unwrap();
        let h = store.health();
        assert!(!h.healthy, "{h:?}");
        assert_eq!(h.errors_total, 1);
        assert_eq!(h.failing_for_seconds, Some(0));
        assert!(h.last_error.unwrap().contains("No space left"));
        store.probe().await.unwrap();
        let h = store.health();
        assert!(h.healthy, "{h:?}");
        assert_eq!(h.errors_total, 1);
    }

    #[test]
    fn chunk_keys_load_by_window_and_prune_with_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let k = |b: u8| EventKey([b; 16]);
        store
            .commit_chunk("acme", "file", 1000, &[k(1), k(2)], Some(10))
            .unwrap();
        store
            .commit_chunk("acme", "file", 2000, &[k(3)], None)
            .unwrap();
        store
            .commit_chunk("other", "file", 2000, &[k(9)], None)
            .unwrap();
        assert_eq!(store.position("file").unwrap(), Some(10));

        let mut set = HashSet::new();
        store.load_keys("acme", "file", 0, &mut set).unwrap();
        assert_eq!(set, HashSet::from([k(1), k(2), k(3)]));
        set.clear();
        store.load_keys("acme", "file", 1500, &mut set).unwrap();
        assert_eq!(set, HashSet::from([k(3)]));

        let state = StreamState {
            checkpoint: 2000,
            ..Default::default()
        };
        store.commit_window("acme", "file", &state, 1500).unwrap();
        set.clear();
        store.load_keys("acme", "file", 0, &mut set).unwrap();
        assert_eq!(set, HashSet::from([k(3)]));
        assert_eq!(store.stream("acme", "file").unwrap(), Some(state));
        set.clear();
        store.load_keys("other", "file", 0, &mut set).unwrap();
        assert_eq!(set, HashSet::from([k(9)]));
    }

    /// A stream written before the late sweep (no `swept`) loads, and one without a sweep
    /// position is written as before.
    #[test]
    fn stream_state_without_a_sweep_position_reads_and_writes_as_before() {
        let old = r#"{"checkpoint":1000,"gap_seconds":0,"last_gap":null}"#;
        let state: StreamState = serde_json::from_str(old).unwrap();
        assert_eq!(state.swept, None);
        assert_eq!(serde_json::to_string(&state).unwrap(), old);
        let swept = StreamState {
            swept: Some(900),
            ..state
        };
        let text = serde_json::to_string(&swept).unwrap();
        assert_eq!(serde_json::from_str::<StreamState>(&text).unwrap(), swept);
    }

    #[tokio::test]
    async fn lineage_tells_a_new_store_from_a_lost_one() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        {
            let store = Store::open(&state).unwrap();
            assert_eq!(store.lineage().unwrap(), Lineage::New);
            let id = store.stamp().await.unwrap();
            assert_eq!(store.lineage().unwrap(), Lineage::Known);
            assert_eq!(
                store.stamp().await.unwrap(),
                id,
                "stamping again keeps the identity"
            );
            assert_eq!(
                std::fs::read_to_string(state.join(ID_FILE)).unwrap().trim(),
                id
            );
        }
        // The store goes, its identity file stays: the new store is not the one the sinks know.
        let id = std::fs::read_to_string(state.join(ID_FILE)).unwrap();
        std::fs::remove_dir_all(state.join("tapfwd.sled")).unwrap();
        let store = Store::open(&state).unwrap();
        assert_eq!(
            store.lineage().unwrap(),
            Lineage::Lost {
                expected: id.trim().to_string()
            }
        );
        // A store written before identities (streams, no identity, no file) is adopted.
        std::fs::remove_file(state.join(ID_FILE)).unwrap();
        std::fs::remove_file(marker_path(&state).unwrap()).unwrap();
        store
            .put_stream("acme", "file", &StreamState::default())
            .unwrap();
        assert_eq!(store.lineage().unwrap(), Lineage::Unmarked);
    }

    /// The state directory deleted whole, `store.id` with it: the marker outside it still names
    /// the store, so the new one is not taken for a new install.
    #[tokio::test]
    async fn a_deleted_state_directory_is_told_by_its_marker() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let id = Store::open(&state).unwrap().stamp().await.unwrap();
        let marker = marker_path(&state).unwrap();
        assert_eq!(marker, dir.path().join(".tapfwd-state.id"));
        assert_eq!(marked_identity(&state), Some(id.clone()));
        std::fs::remove_dir_all(&state).unwrap();
        let store = Store::open(&state).unwrap();
        assert_eq!(store.lineage().unwrap(), Lineage::Lost { expected: id });
        // Stamped again (after `tapfwd recover`), the marker names the new store.
        let new = store.stamp().await.unwrap();
        assert_eq!(marked_identity(&state), Some(new));
        assert_eq!(store.lineage().unwrap(), Lineage::Known);
    }

    /// A panic of sled's while it opens the store is a damaged store, not a crash.
    #[test]
    fn a_panic_while_opening_is_a_damaged_store() {
        let dir = tempfile::tempdir().unwrap();
        let e = on_open_thread(dir.path(), || -> Result<(), StoreError> {
            panic!("tried to serialize Uninitialized")
        })
        .unwrap_err();
        match e {
            StoreError::Damaged { path, message } => {
                assert_eq!(path, dir.path().join("tapfwd.sled"));
                assert!(
                    message.contains("tried to serialize Uninitialized"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    /// A store moved aside leaves `store.id`: the next store there is known to be a new one.
    #[tokio::test]
    async fn a_store_moved_aside_leaves_its_identity() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let id = {
            let store = Store::open(&state).unwrap();
            store
                .put_stream("acme", "file", &StreamState::default())
                .unwrap();
            store.stamp().await.unwrap()
        };
        let aside = Store::move_aside(&state).unwrap();
        assert!(aside.join("db").exists(), "{}", aside.display());
        let store = Store::open(&state).unwrap();
        assert_eq!(store.lineage().unwrap(), Lineage::Lost { expected: id });
        assert!(store.streams().unwrap().is_empty());
    }

    #[test]
    fn second_open_reports_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path()).unwrap();
        let second = Store::open(dir.path());
        let msg = second.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("in use by another process"), "{msg}");
    }
}
