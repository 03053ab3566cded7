//! What the cases measure with, read from `/proc`: CPU seconds of this process, of one of its
//! threads or of a child (`/proc/…/stat`, what getrusage reports, in clock ticks), resident and
//! peak memory (`/proc/self/status`), the load average, the filesystem under a path and the
//! size of a directory on disk.

use std::path::Path;

/// `/proc/loadavg`'s three averages.
pub(super) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `Key:   123 kB` field of a /proc file, in KiB.
pub(super) fn proc_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// This process's resident memory, in KiB.
pub(super) fn rss_kib() -> u64 {
    proc_field("/proc/self/status", "VmRSS:").unwrap_or(0)
}

/// This process's peak resident memory since it started or since [`reset_hwm`], in KiB.
pub(super) fn hwm_kib() -> u64 {
    proc_field("/proc/self/status", "VmHWM:").unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0).
pub(super) fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// User + system CPU seconds of a `/proc/.../stat` file (process or thread).
pub(super) fn cpu_secs_of(stat_path: &str) -> f64 {
    let text = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let Some((_, rest)) = text.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime is field 14, stime field 15: indexes 11 and 12 after the state (field 3).
    // Linux reports them in USER_HZ, which is 100 on every architecture it supports.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

/// CPU seconds of this whole process.
pub(super) fn cpu_secs() -> f64 {
    cpu_secs_of("/proc/self/stat")
}

/// CPU seconds of the calling thread alone.
pub(super) fn thread_cpu_secs() -> f64 {
    cpu_secs_of("/proc/thread-self/stat")
}

/// CPU seconds per million events (`events` counted as at least one).
pub(super) fn per_million(secs: f64, events: u64) -> f64 {
    secs / events.max(1) as f64 * 1e6
}

/// The filesystem type and device of the longest mount point holding `path`.
pub(super) fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let mut best: Option<(usize, String)> = None;
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        if path.starts_with(f[1]) && best.as_ref().map_or(true, |(n, _)| f[1].len() >= *n) {
            best = Some((f[1].len(), format!("{} ({})", f[2], f[0])));
        }
    }
    best.map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

/// KiB in MiB.
pub(super) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The length of a file, 0 if it is not there.
pub(super) fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Bytes of the files under `dir`: (sum of lengths, sum of allocated blocks).
pub(super) fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            let (l, b) = dir_size(&e.path());
            total = (total.0 + l, total.1 + b);
        } else {
            total = (total.0 + m.len(), total.1 + m.blocks() * 512);
        }
    }
    total
}
