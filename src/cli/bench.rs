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
//!
//! CPU comes from `/proc/self/stat` (what getrusage reports, in clock ticks), memory from
//! `/proc/self/status`. Nothing here is used by the daemon itself; it sits under [`crate::cli`]
//! because only the command line runs it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use tokio::io::AsyncBufReadExt;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Clock};
use crate::config::Config;
use crate::simulate::{SimConfig, Simulator};
use crate::App;

/// Which case to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    All,
    Throughput,
    Scale,
    Large,
    Pod,
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
    /// Pod: a second sink, an HTTP collector that refuses every connection, down for the whole
    /// run: memory must stay as flat as without it (nothing is queued for a failing sink).
    #[arg(long)]
    pub pod_sink_down: bool,
    /// Throughput: the simulator answers uncompressed even when asked for gzip (the real API
    /// answers gzip; `--case all` runs the throughput case both ways).
    #[arg(long)]
    pub no_gzip: bool,
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
            let runs: [(&str, &[&str]); 6] = [
                ("throughput", &["--no-gzip"]),
                ("throughput", &[]),
                ("scale", &[]),
                ("large", &[]),
                ("state", &[]),
                ("pod", &[]),
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
            curves(&args).await
        }
        Case::Curves => {
            print_machine(&dir);
            curves(&args).await
        }
        Case::State => state(&args, &dir).await,
        Case::Throughput => throughput(&args, &dir).await,
        Case::Scale => scale(&args, &dir).await,
        Case::Large => large(&args, &dir).await,
        Case::Pod => pod(&args, &dir).await,
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

// ---------------------------------------------------------------------------------------------
// Measurements

/// `/proc/loadavg`'s three averages.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A `Key:   123 kB` field of a /proc file, in KiB.
fn proc_field(path: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn rss_kib() -> u64 {
    proc_field("/proc/self/status", "VmRSS:").unwrap_or(0)
}

fn hwm_kib() -> u64 {
    proc_field("/proc/self/status", "VmHWM:").unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0).
fn reset_hwm() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// User + system CPU seconds of a `/proc/.../stat` file (process or thread).
fn cpu_secs_of(stat_path: &str) -> f64 {
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

fn cpu_secs() -> f64 {
    cpu_secs_of("/proc/self/stat")
}

fn filesystem_of(path: &Path) -> String {
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

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------------
// Setup helpers

fn fresh_dir(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let d = dir.join(name);
    if d.exists() {
        std::fs::remove_dir_all(&d).with_context(|| format!("emptying {}", d.display()))?;
    }
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn principal(i: usize) -> String {
    format!("tenant-{i:05}")
}

fn secret(i: usize) -> String {
    format!("secret-{i:05}")
}

/// The simulator's TOML config: `n` tenants at `per_hour`.
fn sim_toml(n: usize, per_hour: u32) -> String {
    sim_toml_with(n, per_hour, true)
}

/// The same, answering gzip when asked (`gzip`) or always uncompressed.
fn sim_toml_with(n: usize, per_hour: u32, gzip: bool) -> String {
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

/// The daemon's TOML config: `n` tenants, one file sink.
fn daemon_toml(state: &Path, events: &Path, base_url: &str, n: usize, poll: &str) -> String {
    let mut s = format!(
        "state_dir = {:?}\n[poll]\n{poll}\n[sinks.archive]\ntype = \"file\"\npath = {:?}\n",
        state.display().to_string(),
        events.display().to_string()
    );
    for i in 1..=n {
        s.push_str(&format!(
            "[tenants.t{i:05}]\nbase_url = \"{base_url}\"\nprincipal = \"{}\"\nsecret = \"{}\"\nsinks = [\"archive\"]\n",
            principal(i),
            secret(i)
        ));
    }
    s
}

fn parse_config(text: &str) -> anyhow::Result<Config> {
    Config::from_toml_with_env(text, std::iter::empty())
        .map_err(|e| anyhow::anyhow!("bench config: {e}"))
}

/// A simulator in a child process (`tapfwd simulate`), killed when dropped.
struct SimProcess {
    child: tokio::process::Child,
    base_url: String,
}

impl SimProcess {
    async fn start(dir: &Path, toml: &str) -> anyhow::Result<SimProcess> {
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

    fn cpu_secs(&self) -> f64 {
        self.child
            .id()
            .map_or(0.0, |pid| cpu_secs_of(&format!("/proc/{pid}/stat")))
    }
}

/// Sum of events delivered to every sink, from the status board.
fn delivered(app_board: &crate::status::StatusBoard) -> u64 {
    app_board
        .snapshot()
        .iter()
        .flat_map(|t| t.sinks.iter())
        .map(|s| s.delivered)
        .sum()
}

fn flush_stdout() {
    let _ = std::io::stdout().flush();
}

// ---------------------------------------------------------------------------------------------
// Case 1: throughput

async fn throughput(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (n, hours, per_hour) = (args.tenants(), args.hours(), args.events_per_hour());
    let gzip = !args.no_gzip;
    let work = fresh_dir(dir, "throughput")?;
    println!(
        "\n== throughput: {n} tenants x {hours} h backlog x {per_hour} events/h into the file sink, {} responses (load {})",
        if gzip { "gzip" } else { "uncompressed" },
        loadavg()
    );
    flush_stdout();
    let sim = SimProcess::start(&work, &sim_toml_with(n, per_hour, gzip)).await?;
    let events_path = work.join("events.ndjson");
    let mut poll = format!("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"{hours}h\"\n");
    poll.push_str(&poll_overrides(args));
    let config = parse_config(&daemon_toml(
        &work.join("state"),
        &events_path,
        &sim.base_url,
        n,
        &poll,
    ))?;
    // The raw-transfer reference first, in this process, against the same simulator: the
    // windows the daemon will ask for, their bodies written raw.
    let reference = if args.no_reference {
        None
    } else {
        let r = raw_reference(&config, &sim, hours, &work.join("raw.bin")).await?;
        println!(
            "raw reference:           {:.1} CPU-s for {} windows, {:.0} MB of bodies, {:.1} s wall (simulator {:.1} CPU-s)",
            r.cpu,
            r.windows,
            r.bytes as f64 / 1e6,
            r.wall,
            r.sim_cpu
        );
        flush_stdout();
        Some(r)
    };
    let app = App::build(config, Clock::System).await?;
    let board = app.status();
    let baseline = rss_kib();
    reset_hwm();
    let (cpu0, sim_cpu0, t0) = (cpu_secs(), sim.cpu_secs(), Instant::now());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    board
        .wait_until(|s| s.len() == n && s.iter().all(|t| t.state == "ok"))
        .await;
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, sim_cpu) = (cpu_secs() - cpu0, sim.cpu_secs() - sim_cpu0);
    let hwm = hwm_kib();
    shutdown.cancel();
    task.await??;
    let events = delivered(&board);
    let bytes = std::fs::metadata(&events_path).map_or(0, |m| m.len());
    let lines = super::demo::count_lines(&events_path)?;
    if lines != events {
        bail!("the file holds {lines} lines but {events} events were delivered");
    }
    println!(
        "events delivered:        {events} ({:.0} MB written)",
        bytes as f64 / 1e6
    );
    println!("wall time:               {wall:.1} s");
    println!(
        "throughput:              {:.0} events/s ({:.0} MB/s of output)",
        events as f64 / wall,
        bytes as f64 / 1e6 / wall
    );
    println!(
        "daemon CPU:              {cpu:.1} s = {:.1} CPU-s per million events = {:.0} events per CPU-second",
        cpu / events.max(1) as f64 * 1e6,
        events as f64 / cpu.max(0.01)
    );
    if let Some(r) = &reference {
        println!(
            "daemon / raw reference:  {:.2}x the reference's CPU (same windows, same client, same simulator, this run)",
            cpu / r.cpu.max(0.01)
        );
    }
    println!(
        "simulator CPU (child):   {sim_cpu:.1} s = {:.1} CPU-s per million events",
        sim_cpu / events.max(1) as f64 * 1e6
    );
    println!(
        "peak RSS:                {:.1} MiB ({:.1} MiB above the {:.1} MiB idle baseline)",
        mib(hwm),
        mib(hwm.saturating_sub(baseline)),
        mib(baseline)
    );
    println!("load average at end:     {}", loadavg());
    println!(
        "RESULT case=throughput gzip={gzip} events={events} cpu={cpu:.3} ref_cpu={:.3} hwm_kib={hwm}",
        reference.as_ref().map_or(0.0, |r| r.cpu)
    );
    flush_stdout();
    drop(sim);
    std::fs::remove_file(&events_path).ok();
    Ok(())
}

/// `poll` lines for the `--batch-bytes` and `--buffer-bytes` options.
fn poll_overrides(args: &BenchArgs) -> String {
    let mut s = String::new();
    if let Some(b) = args.batch_bytes {
        s.push_str(&format!("batch_bytes = {b}\n"));
    }
    if let Some(b) = args.buffer_bytes {
        s.push_str(&format!("buffer_bytes = {b}\n"));
    }
    s
}

/// What the raw-transfer reference did and cost.
struct RawRun {
    windows: u64,
    bytes: u64,
    cpu: f64,
    sim_cpu: f64,
    wall: f64,
}

/// The raw-transfer reference: the windows the daemon asks for in the throughput case (each
/// tenant's backlog in 1-hour windows from `now − lag − hours`), fetched over the same client
/// stack (reqwest with the TAP client's settings, gzip on, the same simulator), `poll.concurrency`
/// tenants at a time, each body streamed into one file as it arrives and `fdatasync`ed per
/// window. No splitting, validation, hashing, dedupe or store: the cost of moving the bytes.
async fn raw_reference(
    config: &Config,
    sim: &SimProcess,
    hours: u64,
    out: &Path,
) -> anyhow::Result<RawRun> {
    use crate::tap::window::Window;
    use secrecy::ExposeSecret as _;
    let http = reqwest::Client::builder()
        .user_agent(concat!("tapfwd/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(15))
        .read_timeout(config.poll.read_timeout)
        .gzip(true)
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(90))
        .build()?;
    let file = Arc::new(std::sync::Mutex::new(std::fs::File::create(out)?));
    let permits = Arc::new(tokio::sync::Semaphore::new(config.poll.concurrency.max(1)));
    let end = chrono::Utc::now().timestamp() - config.poll.lag.as_secs() as i64;
    let first = end - hours as i64 * 3600;
    let (cpu0, sim0, t0) = (cpu_secs(), sim.cpu_secs(), Instant::now());
    let mut tasks = tokio::task::JoinSet::new();
    for t in config.tenants.values() {
        // The bench's tenants are `tenant-N` with secret `secret-N`.
        let secret = secrecy::SecretString::from(t.principal().replace("tenant-", "secret-"));
        let creds = t.credentials(&secret);
        let mut query: Vec<(String, String)> = vec![("format".into(), "json".into())];
        query.extend(
            creds
                .params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let principal = t.principal().to_string();
        let secret = secret.expose_secret().to_string();
        let url = format!("{}/v2/siem/all", t.base_url().trim_end_matches('/'));
        let (http, file, permits) = (http.clone(), file.clone(), permits.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let (mut windows, mut bytes) = (0u64, 0u64);
            let mut start = first;
            while start < end {
                let w = Window {
                    start,
                    end: (start + 3600).min(end),
                };
                let mut q = query.clone();
                q.push(("interval".into(), w.interval_param()));
                let mut resp = http
                    .get(&url)
                    .query(&q)
                    .basic_auth(&principal, Some(&secret))
                    .send()
                    .await?
                    .error_for_status()?;
                while let Some(chunk) = resp.chunk().await? {
                    bytes += chunk.len() as u64;
                    let mut f = file.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                    f.write_all(&chunk)?;
                }
                file.lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .sync_data()?;
                windows += 1;
                start = w.end;
            }
            anyhow::Ok((windows, bytes))
        });
    }
    let (mut windows, mut bytes) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (w, b) = r??;
        windows += w;
        bytes += b;
    }
    let run = RawRun {
        windows,
        bytes,
        cpu: cpu_secs() - cpu0,
        sim_cpu: sim.cpu_secs() - sim0,
        wall: t0.elapsed().as_secs_f64(),
    };
    std::fs::remove_file(out).ok();
    Ok(run)
}

// ---------------------------------------------------------------------------------------------
// Case 2: scale

/// The in-process simulator for the scale case, on its own thread and runtime so that its CPU
/// can be told apart from the daemon's.
struct SimThread {
    base_url: String,
    /// `/proc/self/task/TID/stat` of the simulator's thread.
    stat: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SimThread {
    fn start(cfg: SimConfig, clock: Clock) -> anyhow::Result<SimThread> {
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

    fn cpu_secs(&self) -> f64 {
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

/// Waits (polling, without cloning the board) until every tenant has scheduled its next poll
/// after `now`; returns the earliest of those polls. Blocking: it runs on a thread of its own
/// so that its CPU can be measured and taken out of the daemon's.
fn wait_idle(board: &crate::status::StatusBoard, n: usize, now: i64) -> anyhow::Result<i64> {
    let deadline = Instant::now() + Duration::from_secs(600);
    // `next_poll_at` is RFC 3339 in one fixed format (`clock::rfc3339`), so comparing the
    // strings compares the instants: no parsing of 10,000 timestamps per check.
    let now_text = clock::rfc3339(now);
    // Short naps first (a 5-minute poll of a few events takes about a millisecond), longer
    // ones while a big window is being delivered.
    let mut nap = Duration::from_micros(200);
    loop {
        let mut idle = true;
        let mut next: Option<String> = None;
        let count = board.for_each(|s| match s.next_poll_at.as_deref() {
            Some(a) if a > now_text.as_str() => {
                if next.as_deref().map_or(true, |m| a < m) {
                    next = Some(a.to_string());
                }
            }
            _ => idle = false,
        });
        if idle && count == n {
            return Ok(next
                .and_then(|a| chrono::DateTime::parse_from_rfc3339(&a).ok())
                .map_or(i64::MAX, |a| a.timestamp()));
        }
        if Instant::now() > deadline {
            bail!("tenants did not become idle within 10 minutes");
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// Moves the manual clock from one poll instant to the next (as a real clock would reach each
/// tenant exactly at its phase) until `until`, on a blocking thread; returns the CPU seconds
/// that thread (the benchmark's own checks) used.
async fn run_until(
    board: &Arc<crate::status::StatusBoard>,
    manual: &Arc<crate::clock::ManualClock>,
    n: usize,
    until: i64,
) -> anyhow::Result<f64> {
    let (board, manual) = (board.clone(), manual.clone());
    tokio::task::spawn_blocking(move || {
        let cpu0 = cpu_secs_of("/proc/thread-self/stat");
        loop {
            let next = wait_idle(&board, n, manual.now().timestamp())?;
            if next > until {
                manual.set(clock::to_datetime(until));
                return Ok(cpu_secs_of("/proc/thread-self/stat") - cpu0);
            }
            manual.set(clock::to_datetime(next));
        }
    })
    .await?
}

async fn scale(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (n, minutes) = (args.scale_tenants(), args.scale_minutes());
    let per_hour = 12; // "a few events each": about 1 per 5-minute poll
    let work = fresh_dir(dir, "scale")?;
    println!(
        "\n== scale: {n} tenants, 5-minute polling, {per_hour} events/h each, {minutes} simulated minutes of steady state (load {})",
        loadavg()
    );
    flush_stdout();
    let start = chrono::Utc::now();
    let (clock, manual) = Clock::manual(start);
    let mut cfg = SimConfig {
        seed: 6,
        tenants: Vec::with_capacity(n),
        pod: Vec::new(),
    };
    for i in 1..=n {
        let mut t = crate::simulate::SimTenant::new(&principal(i), &secret(i), per_hour);
        t.max_visibility_delay = Duration::from_secs(60);
        cfg.tenants.push(t);
    }
    let sim = SimThread::start(cfg, clock.clone())?;
    let events_path = work.join("events.ndjson");
    let poll = "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"5m\"\nconcurrency = 16\n";
    let text = daemon_toml(&work.join("state"), &events_path, &sim.base_url, n, poll);
    let config = parse_config(&text)?;
    drop(text);
    let baseline = rss_kib();
    let t_build = Instant::now();
    let app = App::build(config, clock.clone()).await?;
    let build_secs = t_build.elapsed().as_secs_f64();
    let built = rss_kib();
    let board = app.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    // Warm up: every tenant's first window, then one poll interval so that every tenant has
    // polled again on its own phase and its store records and key blobs are in place.
    let warm_until = manual.now().timestamp() + 300;
    run_until(&board, &manual, n, warm_until).await?;
    let idle = rss_kib();
    let per_tenant = (idle.saturating_sub(baseline)) as f64 * 1024.0 / n as f64;
    println!("daemon built in:         {build_secs:.1} s");
    println!(
        "RSS before the daemon:   {:.1} MiB (runtime + in-process simulator)",
        mib(baseline)
    );
    println!(
        "RSS when built:          {:.1} MiB ({:.2} KiB per tenant before any poll)",
        mib(built),
        built.saturating_sub(baseline) as f64 / n as f64
    );
    println!("RSS with {n} idle:     {:.1} MiB", mib(idle));
    println!("memory per tenant:       {:.2} KiB", per_tenant / 1024.0);
    flush_stdout();
    // Steady state: `minutes` simulated minutes, one at a time.
    let (cpu0, sim0, t0) = (cpu_secs(), sim.cpu_secs(), Instant::now());
    let polls0 = requests(&board);
    let until = manual.now().timestamp() + minutes as i64 * 60;
    let checks = run_until(&board, &manual, n, until).await?;
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, sim_cpu) = (cpu_secs() - cpu0, sim.cpu_secs() - sim0);
    let polls = requests(&board) - polls0;
    let daemon = (cpu - sim_cpu - checks).max(0.0);
    let h = minutes as f64 / 60.0;
    println!("polls:                   {polls} in {minutes} simulated min ({:.0} per hour), {wall:.1} s wall", polls as f64 / h);
    println!("daemon CPU per sim. hour: {:.2} CPU-s ({:.2} ms per poll; process {:.2}, simulator thread {:.2}, bench checks {:.2} CPU-s per hour)",
        daemon / h, daemon / polls.max(1) as f64 * 1e3, cpu / h, sim_cpu / h, checks / h);
    let after = rss_kib();
    println!(
        "RSS after steady state:  {:.1} MiB ({:.2} KiB per tenant)",
        mib(after),
        (after.saturating_sub(baseline)) as f64 / n as f64
    );
    println!("load average at end:     {}", loadavg());
    println!(
        "RESULT case=scale tenants={n} idle_kib={idle} baseline_kib={baseline} after_kib={after} cpu_per_hour={:.3} ms_per_poll={:.4}",
        daemon / h,
        daemon / polls.max(1) as f64 * 1e3
    );
    flush_stdout();
    shutdown.cancel();
    task.await??;
    drop(sim);
    Ok(())
}

/// Requests answered with 200, summed over tenants.
fn requests(board: &crate::status::StatusBoard) -> u64 {
    board
        .snapshot()
        .iter()
        .map(|t| t.requests_by_status.get("200").copied().unwrap_or(0))
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Growth curves

/// The `key=value` fields of a child's `RESULT case=…` line.
fn parse_result(
    stdout: &str,
    case: &str,
) -> anyhow::Result<std::collections::HashMap<String, String>> {
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

/// Runs this binary for one point of a curve; echoes its output and returns its RESULT fields.
fn run_point(
    args: &BenchArgs,
    case: &str,
    extra: &[String],
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    let mut a = vec!["bench".to_string(), "--case".into(), case.into()];
    a.push("--dir".into());
    a.push(args.dir.display().to_string());
    a.extend(extra.iter().cloned());
    let out = std::process::Command::new(std::env::current_exe()?)
        .args(&a)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", a.join(" ")))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    flush_stdout();
    if !out.status.success() {
        bail!("`tapfwd {}` failed ({})", a.join(" "), out.status);
    }
    parse_result(&text, case)
}

fn field(r: &std::collections::HashMap<String, String>, k: &str) -> f64 {
    r.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

/// How cost grows with work: the scale case at three tenant counts and the throughput case at
/// three event counts, each point in its own process (so RSS is the point's own).
async fn curves(args: &BenchArgs) -> anyhow::Result<()> {
    let minutes = args.scale_minutes();
    let tenants: [usize; 3] = if args.quick {
        [50, 100, 200]
    } else {
        [100, 1_000, 10_000]
    };
    let mut rows = Vec::new();
    for n in tenants {
        let load = loadavg();
        let r = run_point(
            args,
            "scale",
            &[
                "--scale-tenants".into(),
                n.to_string(),
                "--scale-minutes".into(),
                minutes.to_string(),
            ],
        )?;
        rows.push((n, load, r));
    }
    // (tenants, hours, events/h): 10 k, 100 k and 1 M events at 2,000 events/h.
    let sizes: [(usize, u64, u32); 3] = if args.quick {
        [(1, 1, 2000), (2, 1, 2000), (4, 1, 2000)]
    } else {
        [(5, 1, 2000), (10, 5, 2000), (20, 25, 2000)]
    };
    let mut trows = Vec::new();
    for (n, hours, per_hour) in sizes {
        let load = loadavg();
        let r = run_point(
            args,
            "throughput",
            &[
                "--tenants".into(),
                n.to_string(),
                "--hours".into(),
                hours.to_string(),
                "--events-per-hour".into(),
                per_hour.to_string(),
            ],
        )?;
        trows.push(((n, hours, per_hour), load, r));
    }
    println!("\n== growth curves ({minutes} simulated minutes of 5-minute polls per scale point; gzip responses)");
    println!("| tenants | RSS above baseline, idle | per tenant | after {minutes} min | daemon CPU-s per simulated hour | ms per poll | load at start |");
    println!("|---|---|---|---|---|---|---|");
    for (n, load, r) in &rows {
        let base = field(r, "baseline_kib");
        let idle = field(r, "idle_kib") - base;
        let after = field(r, "after_kib") - base;
        println!(
            "| {n} | {:.1} MiB | {:.2} KiB | {:.2} KiB | {:.2} | {:.3} | {load} |",
            idle / 1024.0,
            idle / *n as f64,
            after / *n as f64,
            field(r, "cpu_per_hour"),
            field(r, "ms_per_poll")
        );
    }
    println!("\n| events | tenants x hours x events/h | daemon CPU-s | events per CPU-s | raw reference CPU-s | ratio | peak RSS | load at start |");
    println!("|---|---|---|---|---|---|---|---|");
    for ((n, hours, per_hour), load, r) in &trows {
        let (cpu, rcpu, ev) = (field(r, "cpu"), field(r, "ref_cpu"), field(r, "events"));
        println!(
            "| {ev:.0} | {n} x {hours} x {per_hour} | {cpu:.2} | {:.0} | {rcpu:.2} | {:.2}x | {:.1} MiB | {load} |",
            ev / cpu.max(0.01),
            cpu / rcpu.max(0.01),
            field(r, "hwm_kib") / 1024.0
        );
    }
    flush_stdout();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// State that stays small

/// Bytes of the files under `dir`: (sum of lengths, sum of allocated blocks).
fn dir_size(dir: &Path) -> (u64, u64) {
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

/// N tenants at 500 events/h through D simulated days of 5-minute polls on the manual clock,
/// the store's size on disk printed after day 1, 7 and D. The clock moves in 5-minute steps
/// (every tenant polls once per step). The output file is emptied every simulated day (the
/// file sink writes at its committed offset, so it becomes sparse): only the store is measured.
async fn state(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (n, days) = (args.state_tenants(), args.state_days());
    let per_hour = 500;
    let work = fresh_dir(dir, "state")?;
    println!(
        "\n== state: {n} tenants x {per_hour} events/h, {days} simulated days of 5-minute polls (load {})",
        loadavg()
    );
    flush_stdout();
    let start = chrono::Utc::now();
    let (clock, manual) = Clock::manual(start);
    let mut cfg = SimConfig {
        seed: 6,
        tenants: Vec::with_capacity(n),
        pod: Vec::new(),
    };
    for i in 1..=n {
        cfg.tenants.push(crate::simulate::SimTenant::new(
            &principal(i),
            &secret(i),
            per_hour,
        ));
    }
    let sim = SimThread::start(cfg, clock.clone())?;
    let events_path = work.join("events.ndjson");
    let state_dir = work.join("state");
    let poll = "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"5m\"\nconcurrency = 16\n";
    let config = parse_config(&daemon_toml(
        &state_dir,
        &events_path,
        &sim.base_url,
        n,
        poll,
    ))?;
    let app = App::build(config, clock.clone()).await?;
    let board = app.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    let mut day1: Option<u64> = None;
    let mut worst = 0.0f64;
    println!("| day | events delivered | store, file lengths | store, allocated | x day 1 | RSS | CPU-s so far | wall s | load |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for day in 1..=days {
        let (b, m, ev) = (board.clone(), manual.clone(), events_path.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            for _ in 0..288 {
                let now = m.now().timestamp() + 300;
                m.set(clock::to_datetime(now));
                wait_idle(&b, n, now)?;
            }
            // Keep the disk free: the file sink writes at its committed offset, so the file
            // turns sparse and only the store is measured.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&ev)?
                .set_len(0)?;
            Ok(())
        })
        .await??;
        let (len, alloc) = dir_size(&state_dir);
        let base = *day1.get_or_insert(len);
        let x = len as f64 / base.max(1) as f64;
        if day > 1 {
            worst = worst.max(x);
        }
        if day == 1 || day == 7 || day == days || day % 5 == 0 {
            println!(
                "| {day} | {} | {:.1} MB | {:.1} MB | {x:.2} | {:.1} MiB | {:.1} | {:.0} | {} |",
                delivered(&board),
                len as f64 / 1e6,
                alloc as f64 / 1e6,
                mib(rss_kib()),
                cpu_secs() - cpu0,
                t0.elapsed().as_secs_f64(),
                loadavg()
            );
            flush_stdout();
        }
    }
    println!(
        "largest size after day 1: {worst:.2}x the day-1 size (bound: 2x) — {}",
        if worst <= 2.0 { "kept" } else { "NOT kept" }
    );
    println!("RESULT case=state tenants={n} days={days} worst={worst:.3}");
    flush_stdout();
    shutdown.cancel();
    task.await??;
    drop(sim);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case 3: large window

async fn large(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let events = args.large_events();
    let work = fresh_dir(dir, "large")?;
    println!(
        "\n== large window: one tenant, one 1-hour window of about {events} events (load {})",
        loadavg()
    );
    flush_stdout();
    let sim = SimProcess::start(&work, &sim_toml(1, events)).await?;
    let events_path = work.join("events.ndjson");
    let mut poll = "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"\n".to_string();
    poll.push_str(&poll_overrides(args));
    let config = parse_config(&daemon_toml(
        &work.join("state"),
        &events_path,
        &sim.base_url,
        1,
        &poll,
    ))?;
    let app = App::build(config, Clock::System).await?;
    let board = app.status();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = rss_kib();
    reset_hwm();
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    board
        .wait_until(|s| s.len() == 1 && s[0].state == "ok")
        .await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let hwm = hwm_kib();
    shutdown.cancel();
    task.await??;
    let delivered = delivered(&board);
    let windows: u64 = board.snapshot().iter().map(|t| t.windows_fetched).sum();
    let bytes = std::fs::metadata(&events_path).map_or(0, |m| m.len());
    println!("events delivered:        {delivered} in {windows} window(s), {:.0} MB written, {wall:.1} s, {cpu:.1} CPU-s", bytes as f64 / 1e6);
    println!("idle baseline RSS:       {:.1} MiB", mib(baseline));
    println!(
        "peak RSS:                {:.1} MiB = {:.1} MiB above the baseline",
        mib(hwm),
        mib(hwm.saturating_sub(baseline))
    );
    println!("load average at end:     {}", loadavg());
    flush_stdout();
    drop(sim);
    std::fs::remove_file(&events_path).ok();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Case 4: PoD live stream

async fn pod(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (per_minute, seconds) = (args.pod_per_minute(), args.pod_seconds());
    let work = fresh_dir(dir, "pod")?;
    println!(
        "\n== pod: one tenant streaming {per_minute} frames/min (message + maillog) into the file sink{} for {seconds} s (load {})",
        if args.pod_sink_down {
            " and an HTTP sink that is down"
        } else {
            ""
        },
        loadavg()
    );
    flush_stdout();
    let each = (per_minute / 2).max(1);
    let sim = SimProcess::start(
        &work,
        &format!(
            "seed = 6\ntenants = []\n[[pod]]\ncluster_id = \"bench_hosted\"\ntoken = \"bench-token\"\nframes_per_minute = {each}\nduplicate_every = 50\n"
        ),
    )
    .await?;
    let base_url = sim.base_url.replacen("http://", "ws://", 1);
    let events_path = work.join("events.ndjson");
    // A port that was free a moment ago: nothing listens there, every connection is refused.
    let down = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let (down_sink, sinks) = if args.pod_sink_down {
        (
            format!("[sinks.down]\ntype = \"http\"\nurl = \"http://{down}/ingest\"\n"),
            "[\"archive\", \"down\"]",
        )
    } else {
        (String::new(), "[\"archive\"]")
    };
    let config = parse_config(&format!(
        "state_dir = {:?}\n[sinks.archive]\ntype = \"file\"\npath = {:?}\n{down_sink}[tenants.pod]\nproduct = \"pod\"\nbase_url = \"{base_url}\"\ncluster_id = \"bench_hosted\"\ntoken = \"bench-token\"\nsinks = {sinks}\n",
        work.join("state").display().to_string(),
        events_path.display().to_string()
    ))?;
    let app = App::build(config, Clock::System).await?;
    let board = app.status();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run(shutdown.clone()));
    let connected = |s: &[crate::status::TenantStatus]| {
        s.len() == 2
            && s.iter()
                .all(|t| t.stream.as_ref().is_some_and(|st| st.connected))
    };
    tokio::time::timeout(Duration::from_secs(60), board.wait_until(connected))
        .await
        .context("the streams did not connect within a minute")?;
    // Measured from here: both connections open and streaming.
    let baseline = rss_kib();
    reset_hwm();
    let received = |board: &crate::status::StatusBoard| -> u64 {
        board.snapshot().iter().map(|t| t.events_fetched).sum()
    };
    let (cpu0, sim_cpu0, t0) = (cpu_secs(), sim.cpu_secs(), Instant::now());
    let (got0, delivered0) = (received(&board), delivered(&board));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, sim_cpu) = (cpu_secs() - cpu0, sim.cpu_secs() - sim_cpu0);
    let hwm = hwm_kib();
    let (got, events) = (received(&board) - got0, delivered(&board) - delivered0);
    let down_failing = board
        .snapshot()
        .iter()
        .flat_map(|t| t.sinks.iter())
        .any(|s| s.sink == "down" && s.failing);
    if args.pod_sink_down && !down_failing {
        bail!("the sink meant to be down is not failing");
    }
    let still_connected = connected(&board.snapshot());
    shutdown.cancel();
    task.await??;
    let bytes = std::fs::metadata(&events_path).map_or(0, |m| m.len());
    let lines = super::demo::count_lines(&events_path)?;
    let total = delivered(&board);
    // With a sink down, the chunk in flight at shutdown may be committed by the file sink while
    // the other sink still retries; the engine counts a chunk once every sink has answered.
    if lines < total || (!args.pod_sink_down && lines != total) {
        bail!("the file holds {lines} lines but {total} events were delivered");
    }
    if lines > total {
        println!(
            "file lines not counted:  {} (the chunk in flight at shutdown, while the down sink retried)",
            lines - total
        );
    }
    if !still_connected {
        bail!("a connection dropped during the measurement");
    }
    println!(
        "frames received:         {got} ({:.0}/min; the simulator sends every 50th twice)",
        got as f64 / wall * 60.0
    );
    println!(
        "events delivered:        {events} ({:.0}/min, {:.0} MB written in all)",
        events as f64 / wall * 60.0,
        bytes as f64 / 1e6
    );
    println!(
        "daemon CPU:              {cpu:.1} s in {wall:.1} s = {:.1} CPU-s per million events ({:.1}% of one core)",
        cpu / events.max(1) as f64 * 1e6,
        cpu / wall * 100.0
    );
    println!(
        "simulator CPU (child):   {sim_cpu:.1} s = {:.1} CPU-s per million events",
        sim_cpu / events.max(1) as f64 * 1e6
    );
    println!(
        "peak RSS:                {:.1} MiB ({:.1} MiB above the {:.1} MiB connected baseline)",
        mib(hwm),
        mib(hwm.saturating_sub(baseline)),
        mib(baseline)
    );
    println!("load average at end:     {}", loadavg());
    flush_stdout();
    drop(sim);
    std::fs::remove_file(&events_path).ok();
    Ok(())
}
