//! Reading the files an operator names: the config file, the files of `tenants_dir`, secret files
//! (`*_file`, systemd credentials) and CA bundles. Each is read whole at start, so each is read
//! the same guarded way: a regular file only, at most a bound, its permissions judged before its
//! content is used.
//!
//! - **Regular files only.** The file is opened without blocking (`O_NONBLOCK`) and judged by
//!   `fstat` on the open descriptor: a named pipe would otherwise block `check` and `run` for ever
//!   waiting for a writer, and `/dev/zero` would be read until memory ran out. Symbolic links are
//!   followed (a Kubernetes secret volume is a tree of them) and the file they reach is judged.
//! - **At most a bound.** [`SECRET_MAX_BYTES`] for a secret, [`CONFIG_MAX_BYTES`] for a config
//!   file, [`PEM_MAX_BYTES`] for a CA bundle: one byte more is read, and a file that has it is
//!   refused without the rest being read.
//! - **Permissions, as ssh judges its keys.** A secret file must be readable and writable by its
//!   owner alone ([`secret_mode_problem`]; a group-readable one only when root owns it, the
//!   `root:tapfwd 0640` layout); a config file must not be writable by every user
//!   ([`config_mode_problem`]): whoever can write it can point the tenants' credentials at their own
//!   server. Either is refused, naming the path, the mode and the fix, unless the environment sets
//!   [`ALLOW_INSECURE_ENV`]`=1`; then the file is read and a warning says why it should not be.
//!
//! Errors name the path and never hold the content (invariant 7).

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;

/// Largest secret file read: 64 KiB (a token or a password is far smaller).
pub const SECRET_MAX_BYTES: u64 = 64 * 1024;
/// Largest config file (the main one or one of `tenants_dir`) read: 4 MiB, some ten thousand
/// tenants written inline.
pub const CONFIG_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Largest PEM bundle (`tls_ca_file`) read: 1 MiB, several hundred certificates.
pub const PEM_MAX_BYTES: u64 = 1024 * 1024;

/// The environment variable that lets a file with unsafe permissions through, with a warning,
/// when set to `1`. An environment variable and not a config key: a key in a world-writable
/// config could be set by whoever the check is about.
pub const ALLOW_INSECURE_ENV: &str = "TAPFWD_ALLOW_INSECURE_FILES";

/// Whether `value` (of [`ALLOW_INSECURE_ENV`]) turns the permission checks into warnings.
pub fn allows_insecure(value: Option<&str>) -> bool {
    matches!(value.map(str::trim), Some("1" | "true" | "yes"))
}

/// A file read by [`read_regular`]: its bytes, permission bits and owner.
#[derive(Debug)]
pub struct FileContent {
    pub bytes: Vec<u8>,
    /// The permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// The owner's user id.
    pub uid: u32,
}

/// Reads `path` if it is a regular file of at most `limit` bytes; the error says why not, without
/// the path (the caller names it and the key).
pub fn read_regular(path: &Path, limit: u64) -> Result<FileContent, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err(format!("is not a regular file (it is {})", kind_of(&meta)));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("is larger than {limit} bytes"));
    }
    Ok(FileContent {
        bytes,
        mode: meta.mode() & 0o7777,
        uid: meta.uid(),
    })
}

/// What a non-regular file is, for the message.
fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let t = meta.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a named pipe"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Why a secret file with permission bits `mode`, owned by `uid`, is readable or writable by more
/// than its owner, if it is: every user may read or write it, its group may write it, or its
/// group may read it and its owner is not root (`root:tapfwd 0640` is the one shared layout
/// accepted: only root can change who is in the group that reads it).
pub fn secret_mode_problem(mode: u32, uid: u32) -> Option<&'static str> {
    if mode & 0o006 != 0 {
        Some("every user may read or write it")
    } else if mode & 0o020 != 0 {
        Some("its group may write it")
    } else if mode & 0o040 != 0 && uid != 0 {
        Some("its group may read it and root does not own it")
    } else {
        None
    }
}

/// Why a config file with permission bits `mode` is unsafe, if it is: every user may write it,
/// and so choose where the tenants' credentials and events go.
pub fn config_mode_problem(mode: u32) -> Option<&'static str> {
    (mode & 0o002 != 0)
        .then_some("every user may write it, and so choose where the credentials and events go")
}

/// The text of a refusal (or, allowed, of the warning) for `path` with permission bits `mode`:
/// `problem`, then how to fix it.
pub fn mode_message(path: &Path, mode: u32, problem: &str, fix: &str, allowed: bool) -> String {
    if allowed {
        format!(
            "{} (mode {mode:04o}): {problem}; read anyway because {ALLOW_INSECURE_ENV} is set",
            path.display()
        )
    } else {
        format!(
            "{} (mode {mode:04o}): {problem}; {fix}, or set {ALLOW_INSECURE_ENV}=1 to accept it",
            path.display()
        )
    }
}

/// Reads a config file (the main one or one of `tenants_dir`) as text: a regular file of at most
/// [`CONFIG_MAX_BYTES`], refused when every user may write it unless `allow_insecure`. Returns the
/// text and, when an unsafe mode was let through, the warning to show.
pub fn read_config(path: &Path, allow_insecure: bool) -> Result<(String, Option<String>), String> {
    let file = read_regular(path, CONFIG_MAX_BYTES)?;
    let mut warning = None;
    if let Some(problem) = config_mode_problem(file.mode) {
        let message = mode_message(
            path,
            file.mode,
            problem,
            &format!(
                "make it writable by its owner alone (chmod go-w {})",
                path.display()
            ),
            allow_insecure,
        );
        if !allow_insecure {
            return Err(message);
        }
        warning = Some(message);
    }
    let text = String::from_utf8(file.bytes).map_err(|_| "is not UTF-8 text".to_string())?;
    Ok((text, warning))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn write(dir: &Path, name: &str, text: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn only_a_regular_file_within_the_bound_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let ok = write(dir.path(), "ok", b"s3cr3t\n", 0o600);
        let file = read_regular(&ok, 16).unwrap();
        assert_eq!(
            (file.bytes.as_slice(), file.mode),
            (&b"s3cr3t\n"[..], 0o600)
        );
        let e = read_regular(Path::new("/dev/zero"), SECRET_MAX_BYTES).unwrap_err();
        assert_eq!(e, "is not a regular file (it is a character device)");
        let e = read_regular(dir.path(), 16).unwrap_err();
        assert_eq!(e, "is not a regular file (it is a directory)");
        let big = write(dir.path(), "big", &[b'x'; 17], 0o600);
        assert_eq!(
            read_regular(&big, 16).unwrap_err(),
            "is larger than 16 bytes"
        );
        assert!(read_regular(&dir.path().join("absent"), 16)
            .unwrap_err()
            .contains("No such file"));
    }

    #[test]
    fn a_named_pipe_is_refused_without_waiting_for_a_writer() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let e = read_regular(&fifo, SECRET_MAX_BYTES).unwrap_err();
        assert_eq!(e, "is not a regular file (it is a named pipe)");
    }

    #[test]
    fn secret_files_are_for_their_owner_alone_as_ssh_keys_are() {
        for (mode, uid, problem) in [
            (0o600, 1000, None),
            (0o400, 1000, None),
            (0o640, 0, None),
            (0o440, 0, None),
            (
                0o640,
                1000,
                Some("its group may read it and root does not own it"),
            ),
            (0o620, 0, Some("its group may write it")),
            (0o644, 0, Some("every user may read or write it")),
            (0o604, 1000, Some("every user may read or write it")),
            (0o602, 1000, Some("every user may read or write it")),
            (0o666, 1000, Some("every user may read or write it")),
        ] {
            assert_eq!(
                secret_mode_problem(mode, uid),
                problem,
                "{mode:o} uid {uid}"
            );
        }
    }

    #[test]
    fn a_config_every_user_may_write_is_refused_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let fine = write(dir.path(), "fine.toml", b"a = 1\n", 0o644);
        assert_eq!(read_config(&fine, false).unwrap(), ("a = 1\n".into(), None));
        let open = write(dir.path(), "open.toml", b"a = 1\n", 0o666);
        let e = read_config(&open, false).unwrap_err();
        assert!(
            e.contains("(mode 0666): every user may write it")
                && e.contains("chmod go-w")
                && e.contains("TAPFWD_ALLOW_INSECURE_FILES=1"),
            "{e}"
        );
        let (text, warning) = read_config(&open, true).unwrap();
        assert_eq!(text, "a = 1\n");
        assert!(warning.unwrap().contains("read anyway"));
        let binary = write(dir.path(), "bin.toml", &[0xff, 0xfe], 0o600);
        assert_eq!(
            read_config(&binary, false).unwrap_err(),
            "is not UTF-8 text"
        );
    }

    #[test]
    fn only_an_explicit_yes_allows_insecure_files() {
        for (v, allowed) in [
            (None, false),
            (Some(""), false),
            (Some("0"), false),
            (Some("no"), false),
            (Some("1"), true),
            (Some("true"), true),
        ] {
            assert_eq!(allows_insecure(v), allowed, "{v:?}");
        }
    }
}
