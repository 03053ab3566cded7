//! The throughput case: T tenants × an H-hour backlog × E events/h polled from a simulator in a
//! child process into the file sink, until every tenant has caught up. It measures events per
//! second, the daemon's CPU per million events (the simulator's beside it, not in it) and its
//! peak RSS above the idle baseline; and, first, a raw-transfer reference: the same windows
//! fetched over the same client stack and written raw, the cost of moving the bytes alone.

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::daemon::{delivered, tap_config, Running, Scratch};
use super::measure::{cpu_secs, file_len, hwm_kib, loadavg, per_million, reset_hwm, rss_kib};
use super::sim::{sim_toml, whole_responses, SimProcess};
use super::{
    flush_stdout, print_load_at_end, print_peak_rss, print_result, print_sim_cpu, BenchArgs,
};
use crate::clock::Clock;
use crate::config::Config;
use crate::App;

pub(super) async fn throughput(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (n, hours, per_hour) = (args.tenants(), args.hours(), args.events_per_hour());
    let gzip = !args.no_gzip;
    let scratch = Scratch::fresh(dir, "throughput")?;
    println!(
        "\n== throughput: {n} tenants x {hours} h backlog x {per_hour} events/h into the file sink, {} responses{} (load {})",
        if gzip { "gzip" } else { "uncompressed" },
        if args.whole_responses {
            ", each written whole"
        } else {
            ""
        },
        loadavg()
    );
    flush_stdout();
    let mut toml = sim_toml(n, per_hour, gzip);
    if args.whole_responses {
        toml = whole_responses(&toml);
    }
    let sim = SimProcess::start(&scratch.dir, &toml).await?;
    let mut poll = format!("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"{hours}h\"\n");
    poll.push_str(&args.poll_overrides());
    let config = tap_config(&scratch, &sim.base_url, n, &poll)?;
    // The raw-transfer reference first, in this process, against the same simulator: the
    // windows the daemon will ask for, their bodies written raw.
    let reference = if args.no_reference {
        None
    } else {
        let r = raw_reference(&config, &sim, hours, &scratch.dir.join("raw.bin")).await?;
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
    let baseline = rss_kib();
    reset_hwm();
    let (cpu0, sim_cpu0, t0) = (cpu_secs(), sim.cpu_secs(), Instant::now());
    let daemon = Running::start(app);
    daemon
        .board
        .wait_until(|s| s.len() == n && s.iter().all(|t| t.state == "ok"))
        .await;
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, sim_cpu) = (cpu_secs() - cpu0, sim.cpu_secs() - sim_cpu0);
    let hwm = hwm_kib();
    let board = daemon.stop().await?;
    let events = delivered(&board);
    let bytes = file_len(&scratch.events);
    let lines = crate::cli::demo::count_lines(&scratch.events)?;
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
        per_million(cpu, events),
        events as f64 / cpu.max(0.01)
    );
    if let Some(r) = &reference {
        println!(
            "daemon / raw reference:  {:.2}x the reference's CPU (same windows, same client, same simulator, this run)",
            cpu / r.cpu.max(0.01)
        );
    }
    print_sim_cpu(sim_cpu, events);
    print_peak_rss(hwm, baseline, "idle");
    print_load_at_end();
    // Only a run with whole responses says so: the line of every other run stays as it was.
    let whole = args
        .whole_responses
        .then(|| ("whole_responses", "true".to_string()));
    let mut fields = vec![
        ("gzip", gzip.to_string()),
        ("events", events.to_string()),
        ("cpu", format!("{cpu:.3}")),
        (
            "ref_cpu",
            format!("{:.3}", reference.as_ref().map_or(0.0, |r| r.cpu)),
        ),
        ("hwm_kib", hwm.to_string()),
    ];
    fields.extend(whole);
    print_result("throughput", &fields);
    drop(sim);
    std::fs::remove_file(&scratch.events).ok();
    Ok(())
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
    use crate::api::window::Window;
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
