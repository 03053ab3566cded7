//! Opening sled: in a thread of its own, so that a panic inside sled is a clean
//! [`StoreError::Damaged`], and the marker beside the state directory that names its store.

use super::*;

/// The store's directory under the state directory.
pub(super) const SLED_DIR: &str = "tapfwd.sled";

/// The thread [`Store::open`] runs sled's open in; see [`quiet_open_panics`].
pub(super) const OPEN_THREAD: &str = "tapfwd-store-open";

/// Keeps the default panic hook from printing the panics of [`OPEN_THREAD`]: [`Store::open`]
/// reports them as [`StoreError::Damaged`]. Every other thread's panics print as before.
pub(super) fn quiet_open_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() != Some(OPEN_THREAD) {
                previous(info);
            }
        }));
    });
}

/// Runs `open` (sled's open of the store in `dir`) on [`OPEN_THREAD`]; its panic is
/// [`StoreError::Damaged`], and is not printed.
pub(super) fn on_open_thread<T: Send + 'static>(
    dir: &Path,
    open: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    quiet_open_panics();
    let opener = std::thread::Builder::new()
        .name(OPEN_THREAD.into())
        .spawn(open)
        .map_err(|e| StoreError::Open {
            path: dir.to_owned(),
            message: format!("cannot start a thread to open it: {e}"),
        })?;
    match opener.join() {
        Ok(result) => result,
        Err(panic) => Err(StoreError::Damaged {
            path: dir.join(SLED_DIR),
            message: format!("sled panicked reading it ({})", panic_text(&*panic)),
        }),
    }
}

/// The message of a panic's payload.
pub(super) fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

/// A sled error while opening or first reading the store at `path`: damage, unless it is an
/// I/O error of the file system (permissions, a missing directory, a full disk).
pub(super) fn unreadable(path: &Path, e: sled::Error) -> StoreError {
    use std::io::ErrorKind;
    let damaged = |message: String| StoreError::Damaged {
        path: path.to_owned(),
        message,
    };
    match e {
        sled::Error::Corruption { at, .. } => damaged(format!(
            "sled read corrupted data (at {})",
            at.map_or_else(|| "an unknown offset".to_string(), |p| p.to_string())
        )),
        sled::Error::Io(io)
            if matches!(io.kind(), ErrorKind::InvalidData | ErrorKind::UnexpectedEof) =>
        {
            damaged(format!("sled cannot read it: {io}"))
        }
        sled::Error::Io(io) => StoreError::Open {
            path: path.to_owned(),
            message: io.to_string(),
        },
        other => damaged(format!("sled cannot read it: {other}")),
    }
}

/// Where the identity of the store in the state directory `dir` is kept outside it:
/// `PARENT/.tapfwd-NAME.id` (`/var/lib/.tapfwd-tapfwd.id` for `/var/lib/tapfwd`), so that a
/// state directory deleted whole is told from a new install. `None` for a directory without a
/// name (`/`).
pub fn marker_path(dir: &Path) -> Option<PathBuf> {
    let dir = std::path::absolute(dir).ok()?;
    let name = dir.file_name()?.to_string_lossy().into_owned();
    Some(dir.parent()?.join(format!(".tapfwd-{name}.id")))
}

/// The identity a state directory's outside marker names, if it has one.
pub fn marked_identity(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(marker_path(dir)?).ok()?;
    Some(text.trim().to_string()).filter(|t| !t.is_empty())
}

/// Writes `text` to `file` (mode 0600) through a temporary file and a rename, synced.
pub(super) fn write_durably(file: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = file.parent().unwrap_or(Path::new("."));
    let mut tmp_name = file.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)?;
    std::fs::File::open(dir)?.sync_all()
}
