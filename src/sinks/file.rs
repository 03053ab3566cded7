//! The file sink: one JSON object per line, appended to a local file.
//!
//! Line format: `{"tenant":"acme","eventType":"messagesDelivered","event":{...as the API sent it...}}`,
//! and, for a tenant with threat enrichment, what was found beside the event:
//! `{"tenant":…,"eventType":…,"event":{…},"threats":{"ID":{…summary…}},"campaigns":{"ID":{…}}}`.
//!
//! **Delivered** means written and `fdatasync`ed. The committed length of the file is recorded in
//! the state store together with the dedupe keys of the batch that reached it, in the order of
//! the bytes even when many tenants share the file. Deliveries that write within one sync of each
//! other share that `fdatasync` (group commit, [`ledger`]): each commits once a sync covers its
//! bytes, and a failed sync fails every delivery it covered. On
//! start, anything past the committed length (a batch written before a crash but never
//! committed) is cut, and those events are fetched and written again: after a `kill -9` at any
//! moment the file holds every event exactly once. Rotating the file underneath the daemon is not
//! supported; stop it, move the file, and it starts a new one. Before each commit the sink checks
//! that the path still names the file it wrote (same device and inode): if the file or its
//! directory was deleted or replaced, the commit fails, the next delivery reopens the path, and
//! the window is fetched again, so no checkpoint passes events that are not on disk.
//!
//! A non-empty file that the store holds no position for is refused at start ([`lost_store_message`]):
//! the store that recorded it is gone, and appending would repeat the file's last hours.
//! `tapfwd recover` rebuilds the position and the dedupe keys from the file itself.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;

use super::encode::{write_envelope_with, Beside};
use super::{Commit, Sink, SinkError};
use crate::event::Batch;
use crate::store::Store;

/// `type = "file"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to; its directory is created if absent.
    pub path: PathBuf,
    /// Permission bits of the file when this sink creates it, in octal, whatever the umask.
    /// Default `"0600"` (owner only: the events name people and their mail).
    #[serde(default = "default_mode")]
    pub mode: String,
}

fn default_mode() -> String {
    "0600".into()
}

impl FileConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("path is empty".into());
        }
        if self.path.starts_with("~") {
            // No shell expands it: the events would go to a directory named `~` under the
            // working directory (`/` under systemd).
            return Err(format!(
                "path `{}`: `~` is not expanded here; give the full path",
                self.path.display()
            ));
        }
        parse_mode(&self.mode)?;
        Ok(())
    }
}

/// An octal mode such as `0600` or `640`, at most `0777`.
fn parse_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("mode `{text}` is not an octal mode between 0000 and 0777"))
}

/// Bytes of lines gathered before each write: small enough to stay in cache, large enough that
/// the system calls do not matter.
const WRITE_PIECE: usize = 256 * 1024;

struct Open {
    file: Arc<File>,
}

mod ledger;

pub struct FileSink {
    name: String,
    path: PathBuf,
    /// Permission bits given to the file when this sink creates it.
    mode: u32,
    open: Mutex<Option<Open>>,
    /// Where writes go, which are synced, which committed; the order of commits.
    ledger: ledger::Ledger,
    /// Set when the path stopped naming the open file; the next delivery reopens it.
    lost: std::sync::atomic::AtomicBool,
}

/// Whether `path` names `file` (same device and inode).
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

impl FileSink {
    pub fn new(name: &str, config: &FileConfig) -> FileSink {
        FileSink {
            name: name.to_string(),
            path: config.path.clone(),
            mode: parse_mode(&config.mode).unwrap_or(0o600),
            open: Mutex::new(None),
            ledger: Default::default(),
            lost: Default::default(),
        }
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> SinkError {
        let msg = format!("{what} {}: {e}", self.path.display());
        match e.kind() {
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound => {
                SinkError::Rejected(msg)
            }
            _ if e.raw_os_error() == Some(28) => SinkError::Rejected(msg), // ENOSPC
            _ => SinkError::Unavailable(msg),
        }
    }
}

/// Why a file sink refuses to start on a non-empty file that the store has no position for, and
/// the way out.
pub fn lost_store_message(name: &str, path: &Path, len: u64, state_dir: &Path) -> String {
    format!(
        "events file {path} holds {len} bytes but the state store in {dir} has no record of sink `{name}` writing it: \
         the store was lost, damaged or replaced (or something else wrote the file), and starting would deliver those events again. \
         Rebuild the sink's state from the file, so that the daemon goes on exactly once: \
         `tapfwd recover --config FILE --sink {name}` (or `--start-at TIME` to start from TIME instead, accepting duplicates)",
        path = path.display(),
        dir = state_dir.display(),
    )
}

/// Opens `path` for appending, creating it (and its directory) if absent; a file it creates gets
/// exactly `mode`, whatever the umask.
fn open_file(path: &Path, mode: u32) -> std::io::Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let existed = path.exists();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(path)?;
    if !existed {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(file)
}

#[async_trait]
impl Sink for FileSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn start(&self, store: &Store) -> Result<(), SinkError> {
        let file = open_file(&self.path, self.mode).map_err(|e| self.io_error("cannot open", e))?;
        let actual = file
            .metadata()
            .map_err(|e| self.io_error("cannot stat", e))?
            .len();
        let committed = match store.position(&self.name)? {
            Some(len) => len,
            None if actual > 0 => {
                // Events in the file, none recorded in the store: the store that recorded them
                // was lost or damaged (or the file was written by something else). Starting
                // would fetch their windows again and append them a second time.
                return Err(SinkError::Rejected(lost_store_message(
                    &self.name,
                    &self.path,
                    actual,
                    store.dir(),
                )));
            }
            None => {
                store.set_position(&self.name, 0)?;
                0
            }
        };
        let len = if actual > committed {
            tracing::warn!(sink = %self.name, path = %self.path.display(), cut_bytes = actual - committed,
                "cutting an uncommitted tail left by an interrupted run; its events will be fetched again");
            file.set_len(committed)
                .map_err(|e| self.io_error("cannot truncate", e))?;
            file.sync_all()
                .map_err(|e| self.io_error("cannot sync", e))?;
            committed
        } else {
            if actual < committed {
                tracing::warn!(sink = %self.name, path = %self.path.display(), expected = committed, found = actual,
                    "file is shorter than recorded: it was truncated or replaced outside tapfwd; appending from its current end");
                store.set_position(&self.name, actual)?;
            }
            actual
        };
        self.ledger.reset(len);
        *self.open.lock().await = Some(Open {
            file: Arc::new(file),
        });
        Ok(())
    }

    async fn deliver(
        &self,
        tenant: &str,
        batch: &Batch,
        commit: Commit<'_>,
    ) -> Result<(), SinkError> {
        let (mut ticket, file, end) = {
            let mut guard = self.open.lock().await;
            if self.lost.load(std::sync::atomic::Ordering::Acquire) {
                // The path stopped naming the file being written: open what it names now
                // (creating it and its directory) and append after its end.
                let file = open_file(&self.path, self.mode)
                    .map_err(|e| self.io_error("cannot reopen", e))?;
                let len = file
                    .metadata()
                    .map_err(|e| self.io_error("cannot stat", e))?
                    .len();
                tracing::warn!(sink = %self.name, path = %self.path.display(), len, "reopened the events file");
                self.lost.store(false, std::sync::atomic::Ordering::Release);
                self.ledger.reset(len);
                *guard = Some(Open {
                    file: Arc::new(file),
                });
            }
            let open = guard.as_ref().ok_or_else(|| {
                SinkError::Unavailable(format!("file sink {} not started", self.name))
            })?;
            let file = open.file.clone();
            let (epoch, at) = {
                let s = self.ledger.lock();
                (s.epoch, s.written)
            };
            let written = self.write(file.clone(), tenant, batch, at).await?;
            let ticket = self.ledger.ticket(epoch, at + written).ok_or_else(|| {
                SinkError::Unavailable(format!(
                    "an earlier write to {} failed; writing again",
                    self.path.display()
                ))
            })?;
            (ticket, file, at + written)
        };
        // The write is complete and the next delivery may write after it; this one commits on
        // its turn, once a sync covers its bytes (see `ledger`).
        ticket.turn().await;
        let (epoch, synced, target) = {
            let s = ticket.state();
            (s.epoch, s.synced, s.written)
        };
        if epoch != ticket.epoch {
            ticket.failed(false);
            return Err(SinkError::Unavailable(format!(
                "a write to {} before this one failed; writing again",
                self.path.display()
            )));
        }
        if synced < end {
            let path = self.path.clone();
            // Before the commit: the events count as delivered only if the path still names the
            // file they were written to (its directory may have been deleted, or the file
            // replaced, while it was open).
            let same = tokio::task::spawn_blocking(move || -> std::io::Result<bool> {
                file.sync_data()?;
                Ok(same_file(&file, &path))
            })
            .await
            .map_err(|e| SinkError::Unavailable(format!("file sync task failed: {e}")))
            .and_then(|r| r.map_err(|e| self.io_error("cannot sync", e)));
            match same {
                Ok(true) => {
                    let mut s = ticket.state();
                    s.synced = s.synced.max(target);
                    s.syncs += 1;
                }
                Ok(false) => {
                    ticket.failed(true);
                    self.lost.store(true, std::sync::atomic::Ordering::Release);
                    tracing::error!(sink = %self.name, path = %self.path.display(),
                        "the events file was deleted or replaced while open; not committing, reopening it, and the window is fetched again");
                    return Err(SinkError::Unavailable(format!(
                        "{} no longer names the file being written (deleted or replaced); reopening it",
                        self.path.display()
                    )));
                }
                Err(e) => {
                    ticket.failed(true);
                    return Err(e);
                }
            }
        }
        match commit(Some(end)) {
            Ok(()) => {
                ticket.committed(end);
                Ok(())
            }
            Err(e) => {
                ticket.failed(true);
                Err(e.into())
            }
        }
    }
}

impl FileSink {
    /// Writes `batch`'s lines at `at` (cutting what lies past it first) and returns how many
    /// bytes; does not sync.
    async fn write(
        &self,
        file: Arc<File>,
        tenant: &str,
        batch: &Batch,
        at: u64,
    ) -> Result<u64, SinkError> {
        // The batch shares its buffer (no copy of the events); the lines are built and written a
        // small piece at a time, so a batch never costs a second copy of itself in memory.
        let batch = batch.clone();
        let tenant = tenant.to_string();
        // Blocking I/O off the runtime. The task runs to completion even if this future is
        // dropped; a write that was never committed is cut by the next write (or the next start).
        tokio::task::spawn_blocking(move || -> std::io::Result<u64> {
            if file.metadata()?.len() != at {
                file.set_len(at)?;
            }
            let whole = batch.raw_bytes() + batch.len() * 80;
            let mut lines = Vec::with_capacity(whole.min(WRITE_PIECE + 64 * 1024));
            let mut pos = at;
            for (meta, raw) in batch.iter() {
                write_envelope_with(
                    &mut lines,
                    &tenant,
                    meta.kind,
                    raw,
                    Beside::of(&batch, meta),
                );
                lines.push(b'\n');
                if lines.len() >= WRITE_PIECE {
                    file.write_all_at(&lines, pos)?;
                    pos += lines.len() as u64;
                    lines.clear();
                }
            }
            file.write_all_at(&lines, pos)?;
            pos += lines.len() as u64;
            Ok(pos - at)
        })
        .await
        .map_err(|e| SinkError::Unavailable(format!("file write task failed: {e}")))?
        .map_err(|e| self.io_error("cannot write", e))
    }

    /// The `fdatasync`s this sink made: one covers every write complete when it started.
    pub fn syncs(&self) -> u64 {
        self.ledger.syncs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::split::{BatchBuilder, SplitLimits, Splitter};

    fn batch(body: &str) -> Batch {
        let mut s = Splitter::new(SplitLimits::default());
        let mut b = BatchBuilder::new();
        s.feed(body.as_bytes(), &mut b).unwrap();
        s.finish().unwrap();
        b.take()
    }

    #[tokio::test]
    async fn torn_tail_is_cut_on_start_and_commits_record_length() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let path = dir.path().join("out/events.ndjson");
        let sink = FileSink::new(
            "archive",
            &FileConfig {
                path: path.clone(),
                mode: default_mode(),
            },
        );
        sink.start(&store).await.unwrap();
        let b = batch(
            r#"{"messagesDelivered":[{"GUID":"a","messageTime":"2026-01-01T00:00:00Z"}],"clicksPermitted":[{"id":"c"}]}"#,
        );
        sink.deliver(
            "acme",
            &b,
            Box::new(|pos| store.set_position("archive", pos.unwrap())),
        )
        .await
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "{\"tenant\":\"acme\",\"eventType\":\"messagesDelivered\",\"event\":{\"GUID\":\"a\",\"messageTime\":\"2026-01-01T00:00:00Z\"}}\n\
             {\"tenant\":\"acme\",\"eventType\":\"clicksPermitted\",\"event\":{\"id\":\"c\"}}\n"
        );
        assert_eq!(store.position("archive").unwrap(), Some(text.len() as u64));

        // A crash after writing but before committing leaves a tail.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"{\"tenant\":\"acme\",\"torn").unwrap();
        let sink = FileSink::new(
            "archive",
            &FileConfig {
                path: path.clone(),
                mode: default_mode(),
            },
        );
        sink.start(&store).await.unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[tokio::test]
    async fn failed_commit_is_reported_and_length_not_advanced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let path = dir.path().join("events.ndjson");
        let sink = FileSink::new(
            "archive",
            &FileConfig {
                path: path.clone(),
                mode: default_mode(),
            },
        );
        sink.start(&store).await.unwrap();
        let b = batch(r#"{"clicksBlocked":[{"id":"x"}]}"#);
        let err = sink
            .deliver(
                "acme",
                &b,
                Box::new(|_| {
                    Err(crate::store::StoreError::Corrupt {
                        key: "k".into(),
                        message: "test".into(),
                    })
                }),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, SinkError::Commit(_)));
        // The next delivery overwrites the uncommitted bytes.
        sink.deliver("acme", &b, Box::new(|_| Ok(())))
            .await
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    /// Waits (with a deadline) until `n` tickets were handed out: the deliveries wrote.
    async fn until_tickets(sink: &FileSink, n: u64) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sink.ledger.tickets() < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the writes did not finish"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    fn sink_at(path: &Path) -> FileSink {
        FileSink::new(
            "archive",
            &FileConfig {
                path: path.to_owned(),
                mode: default_mode(),
            },
        )
    }

    /// Two deliveries that write while a commit is in progress share one `fdatasync`, and each
    /// commits the length it reached, in the order of the bytes.
    #[tokio::test]
    async fn deliveries_written_before_a_sync_share_it_and_commit_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let path = dir.path().join("events.ndjson");
        let sink = sink_at(&path);
        sink.start(&store).await.unwrap();
        let commits = std::sync::Mutex::new(Vec::new());
        let commit = || -> Commit<'_> {
            Box::new(|pos| {
                commits.lock().unwrap().push(pos.unwrap());
                store.set_position("archive", pos.unwrap())
            })
        };
        let (a, b) = (
            batch(r#"{"clicksBlocked":[{"id":"a"}]}"#),
            batch(r#"{"clicksBlocked":[{"id":"b"}]}"#),
        );
        let mut hold = sink.ledger.hold();
        hold.turn().await;
        let (ra, rb, ()) = tokio::join!(
            sink.deliver("acme", &a, commit()),
            sink.deliver("beta", &b, commit()),
            async {
                until_tickets(&sink, 3).await;
                assert_eq!(sink.syncs(), 0, "nothing commits while the turn is held");
                hold.committed(0);
            }
        );
        ra.unwrap();
        rb.unwrap();
        assert_eq!(sink.syncs(), 1, "one sync covered both deliveries");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let commits = commits.into_inner().unwrap();
        assert_eq!(commits.len(), 2);
        assert!(commits[0] < commits[1], "{commits:?}");
        assert_eq!(commits[1], text.len() as u64);
        assert_eq!(store.position("archive").unwrap(), Some(text.len() as u64));
    }

    /// A shared sync that fails (the file was deleted under the sink) fails every delivery it
    /// covered: none commits, and what comes next is written once, into the file the path
    /// names.
    #[tokio::test]
    async fn a_failed_shared_sync_fails_every_delivery_it_covered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let path = dir.path().join("events.ndjson");
        let sink = sink_at(&path);
        sink.start(&store).await.unwrap();
        let commits = std::sync::atomic::AtomicUsize::new(0);
        let commit = || -> Commit<'_> {
            Box::new(|pos| {
                commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                store.set_position("archive", pos.unwrap())
            })
        };
        let (a, b) = (
            batch(r#"{"clicksBlocked":[{"id":"a"}]}"#),
            batch(r#"{"clicksBlocked":[{"id":"b"}]}"#),
        );
        let mut hold = sink.ledger.hold();
        hold.turn().await;
        let (ra, rb, ()) = tokio::join!(
            sink.deliver("acme", &a, commit()),
            sink.deliver("beta", &b, commit()),
            async {
                until_tickets(&sink, 3).await;
                std::fs::remove_file(&path).unwrap();
                hold.committed(0);
            }
        );
        assert!(matches!(ra, Err(SinkError::Unavailable(_))), "{ra:?}");
        assert!(matches!(rb, Err(SinkError::Unavailable(_))), "{rb:?}");
        assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(store.position("archive").unwrap(), Some(0));

        sink.deliver("beta", &b, commit()).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r#""id":"b""#), "{text}");
        assert_eq!(store.position("archive").unwrap(), Some(text.len() as u64));
    }

    /// A delivery dropped after writing and before its turn ends its epoch: the deliveries
    /// written after it fail, and the next write starts again at the committed length.
    #[tokio::test]
    async fn a_delivery_dropped_before_its_turn_voids_what_was_written_after_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let path = dir.path().join("events.ndjson");
        let sink = sink_at(&path);
        sink.start(&store).await.unwrap();
        let commit =
            || -> Commit<'_> { Box::new(|pos| store.set_position("archive", pos.unwrap())) };
        let (a, b) = (
            batch(r#"{"clicksBlocked":[{"id":"a"}]}"#),
            batch(r#"{"clicksBlocked":[{"id":"b"}]}"#),
        );
        let mut hold = sink.ledger.hold();
        hold.turn().await;
        let mut da = Box::pin(sink.deliver("acme", &a, commit()));
        let mut db = Box::pin(sink.deliver("beta", &b, commit()));
        // Polled first, `acme` writes first: its ticket comes before `beta`'s.
        tokio::select! {
            biased;
            _ = &mut da => panic!("nothing commits while the turn is held"),
            _ = &mut db => panic!("nothing commits while the turn is held"),
            _ = until_tickets(&sink, 3) => {}
        }
        drop(da);
        hold.committed(0);
        let rb = db.await;
        assert!(matches!(rb, Err(SinkError::Unavailable(_))), "{rb:?}");
        sink.deliver("gamma", &a, commit()).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("gamma"), "{text}");
    }
}
