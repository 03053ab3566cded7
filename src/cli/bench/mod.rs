//! `tapfwd bench`: the performance benchmark (issue 6). It drives the real pipeline (scheduler,
//! pollers, TAP client, splitter, dedupe, sled store, file sink with fsync) against the built-in
//! simulator on 127.0.0.1 and prints its figures.
//!
//! Four cases, each in its own process so that one case's peak RSS does not leak into the next
//! (`--case all`, the default, runs this binary once per case):
//!
//! - **throughput**: T tenants × an H-hour backlog × E events/h into the file sink. The simulator
//!   runs in a child process (`tapfwd simulate`), so the CPU and memory figures are the daemon's
//!   alone; the simulator's CPU is printed beside them.
//! - **scale**: N tenants on 5-minute polling with a few events each, on a manual clock shared with
//!   an in-process simulator that runs on its own thread (its CPU is measured per thread and taken
//!   out). Memory per tenant = (RSS with N tenants idle − RSS before the daemon was built) / N.
//! - **large**: one tenant whose one-hour window holds about 200,000 events (~600 MB of JSON), the
//!   simulator in a child process; peak RSS (VmHWM, reset after the baseline) above the idle
//!   baseline.
//! - **pod**: one PoD tenant streaming `message` and `maillog` live (20,000 frames a minute in
//!   all by default) from the simulator in a child process into the file sink, for a fixed time
//!   on the system clock: CPU per million frames and peak RSS above the connected baseline.
//! - **pod-fleet**: 200 PoD tenants at 15 events a second each, `message` and `maillog`, into
//!   the file sink (with `--pod-sink-down`, beside an HTTP sink that is down): CPU per million
//!   events, share of a core, peak RSS and connections.
//!
//! Two more runs are built from those: **state** (N tenants through D simulated days, the store's
//! size on disk) and **curves** (scale and throughput at three sizes each, one process a point,
//! summed up in tables).
//!
//! CPU comes from `/proc/self/stat` (what getrusage reports, in clock ticks), memory from
//! `/proc/self/status`. Nothing here is used by the daemon itself; it sits under [`crate::cli`]
//! because only the command line runs it.
//!
//! This file holds the command line (options and their defaults), the choice of case, the run of
//! `--case all` (this binary once per case) and the `RESULT` line that the throughput, scale and
//! state cases end with, which the curves (and runs compared across issues) read back. Each case
//! is its own file; what they share is in `measure` (the `/proc` readings), `sim` (the simulator,
//! as a child process or a thread) and `daemon` (scratch directory, config, the running daemon,
//! the manual clock's steps).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

mod curves;
mod daemon;
mod fleet;
mod large;
mod measure;
mod pod;
mod scale;
mod sim;
mod state;
mod throughput;

use measure::{filesystem_of, loadavg, mib, proc_field};

/// Which case to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    All,
    Throughput,
    Scale,
    Large,
    Pod,
    /// Many PoD tenants (200 by default) streaming into one file sink.
    PodFleet,
    /// Growth curves: scale at 100 / 1,000 / 10,000 tenants and throughput at 10 k / 100 k /
    /// 1 M events, each point in its own process.
    Curves,
    /// State that stays small: the store's size on disk through simulated days of polling.
    State,
}

/// `tapfwd bench` options. `--quick` shrinks every case for a CI smoke run (under a minute).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "all")]
    pub case: Case,
    /// Small sizes for a smoke run; explicit size options still win.
    #[arg(long)]
    pub quick: bool,
    /// Scratch directory for state, output files and simulator configs (emptied per case). Keep
    /// it on the disk you mean to measure: fsync on tmpfs costs nothing.
    #[arg(long, default_value = "target/tapfwd-bench")]
    pub dir: PathBuf,
    /// Throughput: tenants (default 20; quick 4).
    #[arg(long)]
    pub tenants: Option<usize>,
    /// Throughput: hours of backlog per tenant (default 24; quick 3).
    #[arg(long)]
    pub hours: Option<u64>,
    /// Throughput: events per hour per tenant (default 2000).
    #[arg(long)]
    pub events_per_hour: Option<u32>,
    /// Scale: tenants (default 10000; quick 500).
    #[arg(long)]
    pub scale_tenants: Option<usize>,
    /// Scale: simulated minutes of steady state measured, reported per hour (default 20; quick
    /// 10). Each simulated minute polls a fifth of the tenants.
    #[arg(long)]
    pub scale_minutes: Option<u64>,
    /// Large: events in the one-hour window (default 200000; quick 20000).
    #[arg(long)]
    pub large_events: Option<u32>,
    /// Pod: frames per minute of the one tenant, split evenly between message and maillog
    /// (default 20000).
    #[arg(long)]
    pub pod_per_minute: Option<u32>,
    /// Pod: seconds measured once both connections are open (default 60; quick 15).
    #[arg(long)]
    pub pod_seconds: Option<u64>,
    /// Pod and pod-fleet: a second sink, an HTTP collector that refuses every connection, down
    /// for the whole run: memory must stay as flat as without it (nothing is queued for a
    /// failing sink).
    #[arg(long)]
    pub pod_sink_down: bool,
    /// Pod-fleet: PoD tenants, each streaming `message` and `maillog` (default 200; quick 20).
    #[arg(long)]
    pub fleet_tenants: Option<usize>,
    /// Pod-fleet: events a second per tenant, split evenly between its two streams (default 15).
    #[arg(long)]
    pub fleet_per_second: Option<u32>,
    /// Pod-fleet: seconds measured once every connection is open (default 60; quick 15).
    #[arg(long)]
    pub fleet_seconds: Option<u64>,
    /// Throughput: the simulator answers uncompressed even when asked for gzip (the real API
    /// answers gzip; `--case all` runs the throughput case both ways).
    #[arg(long)]
    pub no_gzip: bool,
    /// Throughput: the simulator writes each response whole, in one piece with a
    /// `Content-Length`, as some servers and mocks do, instead of streaming it in 64 KiB chunks.
    #[arg(long)]
    pub whole_responses: bool,
    /// Throughput and large: `poll.batch_bytes` of the daemon (default: the daemon's default).
    #[arg(long)]
    pub batch_bytes: Option<usize>,
    /// Throughput and large: `poll.buffer_bytes` of the daemon (default: the daemon's default).
    #[arg(long)]
    pub buffer_bytes: Option<usize>,
    /// Throughput: skip the raw-transfer reference run.
    #[arg(long)]
    pub no_reference: bool,
    /// State: tenants (default 1000; quick 5). Each polls every 5 minutes at 500 events/h.
    #[arg(long)]
    pub state_tenants: Option<usize>,
    /// State: simulated days (default 30; quick 2). The store's size is printed after day 1,
    /// 7 and the last.
    #[arg(long)]
    pub state_days: Option<u64>,
}

impl BenchArgs {
    fn tenants(&self) -> usize {
        self.tenants.unwrap_or(if self.quick { 4 } else { 20 })
    }
    fn hours(&self) -> u64 {
        self.hours.unwrap_or(if self.quick { 3 } else { 24 })
    }
    fn events_per_hour(&self) -> u32 {
        self.events_per_hour.unwrap_or(2000)
    }
    fn scale_tenants(&self) -> usize {
        self.scale_tenants
            .unwrap_or(if self.quick { 500 } else { 10_000 })
    }
    fn scale_minutes(&self) -> u64 {
        self.scale_minutes
            .unwrap_or(if self.quick { 10 } else { 20 })
    }
    fn state_tenants(&self) -> usize {
        self.state_tenants
            .unwrap_or(if self.quick { 5 } else { 1000 })
    }
    fn state_days(&self) -> u64 {
        self.state_days.unwrap_or(if self.quick { 2 } else { 30 })
    }
    fn large_events(&self) -> u32 {
        self.large_events
            .unwrap_or(if self.quick { 20_000 } else { 200_000 })
    }
    fn pod_per_minute(&self) -> u32 {
        self.pod_per_minute.unwrap_or(20_000)
    }
    fn pod_seconds(&self) -> u64 {
        self.pod_seconds.unwrap_or(if self.quick { 15 } else { 60 })
    }
    fn fleet_tenants(&self) -> usize {
        self.fleet_tenants
            .unwrap_or(if self.quick { 20 } else { 200 })
    }
    fn fleet_per_second(&self) -> u32 {
        self.fleet_per_second.unwrap_or(15)
    }
    fn fleet_seconds(&self) -> u64 {
        self.fleet_seconds
            .unwrap_or(if self.quick { 15 } else { 60 })
    }

    /// `poll` lines for the `--batch-bytes` and `--buffer-bytes` options.
    fn poll_overrides(&self) -> String {
        let mut s = String::new();
        if let Some(b) = self.batch_bytes {
            s.push_str(&format!("batch_bytes = {b}\n"));
        }
        if let Some(b) = self.buffer_bytes {
            s.push_str(&format!("buffer_bytes = {b}\n"));
        }
        s
    }

    /// The same options for a child running one case.
    fn child_args(&self, case: &str) -> Vec<String> {
        let mut a = vec!["bench".into(), "--case".into(), case.into()];
        if self.quick {
            a.push("--quick".into());
        }
        a.push("--dir".into());
        a.push(self.dir.display().to_string());
        let mut opt = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                a.push(format!("--{name}"));
                a.push(v);
            }
        };
        opt("tenants", self.tenants.map(|v| v.to_string()));
        opt("hours", self.hours.map(|v| v.to_string()));
        opt(
            "events-per-hour",
            self.events_per_hour.map(|v| v.to_string()),
        );
        opt("scale-tenants", self.scale_tenants.map(|v| v.to_string()));
        opt("scale-minutes", self.scale_minutes.map(|v| v.to_string()));
        opt("large-events", self.large_events.map(|v| v.to_string()));
        opt("pod-per-minute", self.pod_per_minute.map(|v| v.to_string()));
        opt("pod-seconds", self.pod_seconds.map(|v| v.to_string()));
        opt("fleet-tenants", self.fleet_tenants.map(|v| v.to_string()));
        opt(
            "fleet-per-second",
            self.fleet_per_second.map(|v| v.to_string()),
        );
        opt("fleet-seconds", self.fleet_seconds.map(|v| v.to_string()));
        opt("state-tenants", self.state_tenants.map(|v| v.to_string()));
        opt("state-days", self.state_days.map(|v| v.to_string()));
        opt("batch-bytes", self.batch_bytes.map(|v| v.to_string()));
        opt("buffer-bytes", self.buffer_bytes.map(|v| v.to_string()));
        if self.pod_sink_down {
            a.push("--pod-sink-down".into());
        }
        if self.no_reference {
            a.push("--no-reference".into());
        }
        if self.whole_responses {
            a.push("--whole-responses".into());
        }
        a
    }
}

/// Runs the benchmark; prints figures on stdout.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = args.dir.canonicalize()?;
    match args.case {
        Case::All => {
            print_machine(&dir);
            let exe = std::env::current_exe()?;
            let runs: [(&str, &[&str]); 7] = [
                ("throughput", &["--no-gzip"]),
                ("throughput", &[]),
                ("scale", &[]),
                ("large", &[]),
                ("state", &[]),
                ("pod", &[]),
                ("pod-fleet", &[]),
            ];
            for (case, extra) in runs {
                let status = std::process::Command::new(&exe)
                    .args(args.child_args(case))
                    .args(extra)
                    .status()
                    .with_context(|| format!("running the {case} case"))?;
                if !status.success() {
                    bail!("the {case} case failed ({status})");
                }
            }
            curves::curves(&args).await
        }
        Case::Curves => {
            print_machine(&dir);
            curves::curves(&args).await
        }
        Case::State => state::state(&args, &dir).await,
        Case::Throughput => throughput::throughput(&args, &dir).await,
        Case::Scale => scale::scale(&args, &dir).await,
        Case::Large => large::large(&args, &dir).await,
        Case::Pod => pod::pod(&args, &dir).await,
        Case::PodFleet => fleet::fleet(&args, &dir).await,
    }
}

fn print_machine(dir: &Path) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let mem_kib = proc_field("/proc/meminfo", "MemTotal:").unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("tapfwd bench {}", env!("CARGO_PKG_VERSION"));
    println!(
        "machine: {cpus} CPU(s), {model}, {:.1} GiB RAM; scratch {} on {}",
        mem_kib as f64 / (1 << 20) as f64,
        dir.display(),
        filesystem_of(dir)
    );
    println!("load average at start: {}", loadavg());
}

/// Prints a case's last line, `RESULT case=<case> key=value …` (the values as the case formats
/// them), the line [`parse_result`] reads back.
fn print_result(case: &str, fields: &[(&str, String)]) {
    let mut line = format!("RESULT case={case}");
    for (k, v) in fields {
        line.push_str(&format!(" {k}={v}"));
    }
    println!("{line}");
    flush_stdout();
}

/// The `key=value` fields of a child's `RESULT case=…` line.
fn parse_result(stdout: &str, case: &str) -> anyhow::Result<HashMap<String, String>> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&format!("RESULT case={case} ")))
        .with_context(|| format!("the {case} run printed no RESULT line"))?;
    Ok(line
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// The simulator child's CPU beside the daemon's: `sim_cpu` seconds while `events` were
/// delivered.
fn print_sim_cpu(sim_cpu: f64, events: u64) {
    println!(
        "simulator CPU (child):   {sim_cpu:.1} s = {:.1} CPU-s per million events",
        measure::per_million(sim_cpu, events)
    );
}

/// The peak RSS `hwm` (KiB) above the `which` ("idle", "connected") `baseline` (KiB).
fn print_peak_rss(hwm: u64, baseline: u64, which: &str) {
    println!(
        "peak RSS:                {:.1} MiB ({:.1} MiB above the {:.1} MiB {which} baseline)",
        mib(hwm),
        mib(hwm.saturating_sub(baseline)),
        mib(baseline)
    );
}

/// The load average once a case has measured: the last figure line of the throughput, scale,
/// large, pod and pod-fleet cases.
fn print_load_at_end() {
    println!("load average at end:     {}", loadavg());
}

/// Figures reach the terminal (or the parent's pipe) as each is printed.
fn flush_stdout() {
    let _ = std::io::stdout().flush();
}
