//! The real `tapfwd` binary under test and what it talks to as a service: [`tapfwd()`] for one-shot
//! commands, [`Daemon`] for `tapfwd run` with its JSON log read as it is written, the sd_notify
//! socket systemd would hold, and readers of the admin endpoint. Every wait here ends on what the
//! daemon says (a log line, a datagram), or fails the test after [`PATIENCE`]; none sleeps.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use super::PATIENCE;

/// The binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_tapfwd");

/// A command running the binary under test.
pub fn tapfwd() -> Command {
    Command::new(BIN)
}

/// A port that was free a moment ago (for configs that must name the admin address up front).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------------
// `tapfwd run`.

/// `tapfwd run` as a child process, its stderr (JSON log lines) collected as it arrives; killed
/// when dropped.
pub struct Daemon {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Daemon {
    /// Starts `tapfwd run --config CONFIG ARGS…` with `RUST_LOG=info` (unless `env` says
    /// otherwise) and without any systemd or shard variables of the environment running the tests.
    pub fn start(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(tapfwd(), config, args, env)
    }

    /// As [`Daemon::start`], with the process's umask set to `umask` (octal) by a shell first.
    pub fn start_under_umask(config: &Path, umask: &str) -> Daemon {
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("umask {umask} && exec \"$0\" \"$@\""), BIN]);
        Daemon::spawn(sh, config, &[], &[])
    }

    /// As [`Daemon::start`], with a resource limit set by the shell's `ulimit ARGS` first
    /// (`-n 256`: at most 256 open files, soft and hard; `-S -n 256`: the soft limit only).
    pub fn start_under_ulimit(config: &Path, ulimit: &str) -> Daemon {
        let mut sh = Command::new("sh");
        sh.args(["-c", &format!("ulimit {ulimit} && exec \"$0\" \"$@\""), BIN]);
        Daemon::spawn(sh, config, &[], &[])
    }

    /// The daemon's process id (the shell of the `start_under_*` forms `exec`s it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn spawn(mut cmd: Command, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("TAPFWD_SHARD")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tapfwd");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let reader = std::thread::spawn({
            let log = log.clone();
            move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            }
        });
        Daemon {
            child,
            lines,
            log,
            reader: Some(reader),
        }
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits for a JSON log line for which `pred` holds, looking at the whole log so far first.
    pub async fn wait_log(
        &mut self,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        while self.lines.try_recv().is_ok() {}
        let earlier = self.log.lock().unwrap().clone();
        for line in earlier {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                if pred(&v) {
                    return v;
                }
            }
        }
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.lines.recv().await {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if pred(&v) {
                        return Some(v);
                    }
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(v)) => v,
            Ok(None) => panic!("daemon exited before {what}; log:\n{}", self.log_text()),
            Err(_) => panic!("timed out waiting for {what}; log:\n{}", self.log_text()),
        }
    }

    /// Sends signal `sig` (`TERM`, `HUP`…) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// SIGTERM, then the exit status and the whole log.
    pub async fn stop(mut self) -> (std::process::ExitStatus, String) {
        self.signal("TERM");
        let mut child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
            .await
            .unwrap();
        if let Some(r) = self.reader.take() {
            let _ = tokio::task::spawn_blocking(move || r.join()).await;
        }
        (status, self.log_text())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `message` of a JSON log line.
pub fn message(v: &serde_json::Value) -> &str {
    v["message"].as_str().unwrap_or("")
}

/// A unix datagram socket in `dir` for `NOTIFY_SOCKET`.
pub fn notify_socket(dir: &Path) -> (PathBuf, tokio::net::UnixDatagram) {
    let path = dir.join("notify.sock");
    let socket = tokio::net::UnixDatagram::bind(&path).unwrap();
    (path, socket)
}

/// The next datagram on `socket`, or fails the test after [`PATIENCE`].
pub async fn recv_notify(socket: &tokio::net::UnixDatagram, what: &str) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, socket.recv(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("no sd_notify datagram while waiting for {what}"))
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Receives datagrams until one contains `needle`; returns everything received.
pub async fn recv_notify_until(socket: &tokio::net::UnixDatagram, needle: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let d = recv_notify(socket, needle).await;
        let done = d.lines().any(|l| l == needle);
        got.push(d);
        if done {
            return got;
        }
    }
}

/// GET `url`: the status code and the body.
pub async fn http_get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// The value of one series in Prometheus text, if present.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

// ---------------------------------------------------------------------------------------------
// `tapfwd run` as a plain child process (for kill -9 and restarts), and its events file.

/// The length of `path`, 0 while it does not exist.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Polls `done` every 20 ms until it holds; fails the test after `limit`.
pub fn wait_until(what: &str, limit: std::time::Duration, mut done: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Waits for `child` to exit on its own within `limit`; kills it and fails the test otherwise.
pub fn exit_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: tapfwd was still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Stops `child` with SIGTERM and checks that it exits cleanly within a minute.
pub fn sigterm(child: &mut std::process::Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = exit_within(child, std::time::Duration::from_secs(60), "after SIGTERM");
    assert!(exit.success(), "tapfwd exited with {exit:?} after SIGTERM");
}

/// Waits (up to 5 minutes, off the runtime's threads) until the file sink's `events` holds at
/// least `want[tenant]` lines of each tenant.
pub async fn wait_for_tenant_lines(events: &Path, want: std::collections::HashMap<String, usize>) {
    let events = events.to_path_buf();
    tokio::task::spawn_blocking(move || {
        wait_until(
            "every event up to the target",
            std::time::Duration::from_secs(300),
            || {
                let data = std::fs::read(&events).unwrap_or_default();
                let mut n: std::collections::HashMap<&str, usize> = Default::default();
                for line in data.split(|b| *b == b'\n') {
                    for id in want.keys() {
                        if line.starts_with(format!("{{\"tenant\":\"{id}\"").as_bytes()) {
                            *n.entry(id).or_default() += 1;
                        }
                    }
                }
                want.iter()
                    .all(|(id, w)| n.get(id.as_str()).copied().unwrap_or(0) >= *w)
            },
        )
    })
    .await
    .unwrap();
}

/// `tapfwd run --config CONFIG` as a plain child (for `kill -9`), its log at debug level in `log`.
pub fn spawn_run(config: &Path, log: &Path) -> std::process::Child {
    let log = std::fs::File::create(log).unwrap();
    tapfwd()
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tapfwd runs")
}

/// Every file under `dir`, at any depth (none when it cannot be read).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Whether any file under `dir` holds `needle`.
pub fn any_file_holds(dir: &Path, needle: &[u8]) -> bool {
    files_under(dir).iter().any(|p| {
        std::fs::read(p)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}
