//! The PoD case: one PoD tenant streaming `message` and `maillog` live (20,000 frames a minute in
//! all by default) from a simulator in a child process into the file sink, for a fixed time on
//! the system clock. It measures the daemon's CPU per million frames (the simulator's beside it)
//! and its peak RSS above the connected baseline; with `--pod-sink-down`, a second sink that
//! refuses every connection, memory must stay as flat (nothing is queued for a failing sink).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::daemon::{delivered, parse_config, Running, Scratch};
use super::measure::{cpu_secs, file_len, hwm_kib, loadavg, mib, per_million, reset_hwm, rss_kib};
use super::sim::SimProcess;
use super::{
    flush_stdout, print_load_at_end, print_peak_rss, print_result, print_sim_cpu, BenchArgs,
};
use crate::clock::Clock;
use crate::status::{StatusBoard, TenantStatus};
use crate::App;

pub(super) async fn pod(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (per_minute, seconds) = (args.pod_per_minute(), args.pod_seconds());
    let scratch = Scratch::fresh(dir, "pod")?;
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
        &scratch.dir,
        &format!(
            "seed = 6\ntenants = []\n[[pod]]\ncluster_id = \"bench_hosted\"\ntoken = \"bench-token\"\nframes_per_minute = {each}\nduplicate_every = 50\n"
        ),
    )
    .await?;
    let base_url = sim.base_url.replacen("http://", "ws://", 1);
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
        scratch.state.display().to_string(),
        scratch.events.display().to_string()
    ))?;
    let app = App::build(config, Clock::System).await?;
    let daemon = Running::start(app);
    let board = &daemon.board;
    let connected = |s: &[TenantStatus]| {
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
    let received =
        |board: &StatusBoard| -> u64 { board.snapshot().iter().map(|t| t.events_fetched).sum() };
    let (cpu0, sim_cpu0, t0) = (cpu_secs(), sim.cpu_secs(), Instant::now());
    let (got0, delivered0) = (received(board), delivered(board));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, sim_cpu) = (cpu_secs() - cpu0, sim.cpu_secs() - sim_cpu0);
    let hwm = hwm_kib();
    let (got, events) = (received(board) - got0, delivered(board) - delivered0);
    let down_failing = board
        .snapshot()
        .iter()
        .flat_map(|t| t.sinks.iter())
        .any(|s| s.sink == "down" && s.failing);
    if args.pod_sink_down && !down_failing {
        bail!("the sink meant to be down is not failing");
    }
    let still_connected = connected(&board.snapshot());
    let board = daemon.stop().await?;
    let bytes = file_len(&scratch.events);
    let lines = crate::cli::demo::count_lines(&scratch.events)?;
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
        per_million(cpu, events),
        cpu / wall * 100.0
    );
    print_sim_cpu(sim_cpu, events);
    print_peak_rss(hwm, baseline, "connected");
    print_load_at_end();
    print_result(
        "pod",
        &[
            ("sink_down", args.pod_sink_down.to_string()),
            ("events", events.to_string()),
            ("seconds", format!("{wall:.1}")),
            ("cpu_s", format!("{cpu:.2}")),
            (
                "cpu_per_million",
                format!("{:.1}", per_million(cpu, events)),
            ),
            ("core_pct", format!("{:.1}", cpu / wall * 100.0)),
            ("peak_rss_mib", format!("{:.1}", mib(hwm))),
            (
                "above_baseline_mib",
                format!("{:.1}", mib(hwm.saturating_sub(baseline))),
            ),
        ],
    );
    drop(sim);
    std::fs::remove_file(&scratch.events).ok();
    Ok(())
}
