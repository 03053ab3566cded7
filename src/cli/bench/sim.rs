//! The simulator the cases poll, in one of two places: a child process (`tapfwd simulate`,
//! [`SimProcess`]) when the case runs on the system clock, so that the daemon's CPU and memory are
//! its own; or a thread of this process with a runtime of its own ([`SimThread`]) when it must
//! share the daemon's manual clock, its CPU measured per thread and taken out. Both are stopped
//! when dropped. The bench's TAP tenants are `tenant-N` with the secret `secret-N`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::AsyncBufReadExt;

use super::measure::cpu_secs_of;
use crate::clock::Clock;
use crate::simulate::{SimConfig, SimTenant, Simulator};

/// The principal of the bench's TAP tenant `i` (from 1).
pub(super) fn principal(i: usize) -> String {
    format!("tenant-{i:05}")
}

/// The secret of the bench's TAP tenant `i`.
pub(super) fn secret(i: usize) -> String {
    format!("secret-{i:05}")
}

/// The simulator's TOML config: `n` tenants at `per_hour`, answering gzip when asked (`gzip`)
/// or always uncompressed.
pub(super) fn sim_toml(n: usize, per_hour: u32, gzip: bool) -> String {
    let mut s = String::from("seed = 6\n");
    for i in 1..=n {
        s.push_str(&format!(
            "\n[[tenants]]\nprincipal = \"{}\"\nsecret = \"{}\"\nevents_per_hour = {per_hour}\ngzip = {gzip}\n",
            principal(i),
            secret(i)
        ));
    }
    s
}

/// [`sim_toml`] whose tenants write each answer whole, in one piece with a `Content-Length`.
pub(super) fn whole_responses(toml: &str) -> String {
    toml.replace("\ngzip = ", "\nwhole_responses = true\ngzip = ")
}

/// The in-process simulator's config: `n` tenants at `per_hour`, no PoD cluster.
pub(super) fn sim_config(n: usize, per_hour: u32) -> SimConfig {
    let mut cfg = SimConfig {
        seed: 6,
        tenants: Vec::with_capacity(n),
        ..SimConfig::default()
    };
    for i in 1..=n {
        cfg.tenants
            .push(SimTenant::new(&principal(i), &secret(i), per_hour));
    }
    cfg
}

/// A simulator in a child process (`tapfwd simulate`), killed when dropped.
pub(super) struct SimProcess {
    child: tokio::process::Child,
    /// Where it listens (`http://127.0.0.1:PORT`), as it printed it.
    pub(super) base_url: String,
}

impl SimProcess {
    /// Writes `toml` to `dir/sim.toml` and starts the simulator on it, on a free port.
    pub(super) async fn start(dir: &Path, toml: &str) -> anyhow::Result<SimProcess> {
        let path = dir.join("sim.toml");
        std::fs::write(&path, toml)?;
        let mut child = tokio::process::Command::new(std::env::current_exe()?)
            .args(["simulate", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the simulator")?;
        let stdout = child.stdout.take().context("simulator stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("simulator did not start")??
            .context("simulator exited")?;
        let base_url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .context("simulator did not say where it listens")?
            .to_string();
        Ok(SimProcess { child, base_url })
    }

    /// The child's CPU seconds so far.
    pub(super) fn cpu_secs(&self) -> f64 {
        self.child
            .id()
            .map_or(0.0, |pid| cpu_secs_of(&format!("/proc/{pid}/stat")))
    }
}

/// The in-process simulator of the manual-clock cases (scale, state), on its own thread and
/// runtime so that its CPU can be told apart from the daemon's.
pub(super) struct SimThread {
    /// Where it listens (`http://127.0.0.1:PORT`).
    pub(super) base_url: String,
    /// `/proc/self/task/TID/stat` of the simulator's thread.
    stat: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimThread {
    /// Starts the simulator of `cfg` on `clock`, on a free port, its request log off.
    pub(super) fn start(cfg: SimConfig, clock: Clock) -> anyhow::Result<SimThread> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tapfwd-sim".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    let sim = Simulator::new(cfg, clock);
                    // Its request log would grow with every poll and count as the daemon's.
                    sim.keep_request_log(false);
                    let server =
                        match sim
                            .bind("127.0.0.1:0".parse().unwrap_or_else(|_| {
                                std::net::SocketAddr::from(([127, 0, 0, 1], 0))
                            }))
                            .await
                        {
                            Ok(s) => s,
                            Err(e) => {
                                let _ = ready_tx.send(Err(anyhow::anyhow!(e)));
                                return;
                            }
                        };
                    let me = std::fs::read_link("/proc/thread-self")
                        .map(|p| p.display().to_string())
                        .unwrap_or_default();
                    let _ = ready_tx.send(Ok((server.addr, me)));
                    let _ = stopped.await;
                    server.shutdown().await;
                });
            })?;
        let (addr, me) = ready_rx.recv().context("simulator thread")??;
        // `me` is "PID/task/TID".
        Ok(SimThread {
            base_url: format!("http://{addr}"),
            stat: format!("/proc/{me}/stat"),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The simulator thread's CPU seconds so far.
    pub(super) fn cpu_secs(&self) -> f64 {
        cpu_secs_of(&self.stat)
    }
}

impl Drop for SimThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
