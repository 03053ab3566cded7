//! The PoD fleet case: many PoD tenants (200 by default), each streaming `message` and `maillog`
//! live (15 events a second per tenant in all by default) from a simulator in a child process into
//! one file sink, for a fixed time on the system clock: what an MSP with PoD customers runs all
//! day. It measures the daemon's CPU per million events and as a share of a core, its peak RSS
//! above the connected baseline and the connections open; with `--pod-sink-down`, every tenant
//! also names an HTTP sink that refuses every connection, which must cost the sink that is up
//! nothing and queue nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use super::daemon::{delivered, parse_config, Running, Scratch};
use super::measure::{cpu_secs, hwm_kib, loadavg, mib, per_million, reset_hwm, rss_kib};
use super::sim::SimProcess;
use super::{
    flush_stdout, print_load_at_end, print_peak_rss, print_result, print_sim_cpu, BenchArgs,
};
use crate::clock::Clock;
use crate::status::{StatusBoard, TenantStatus};
use crate::App;

/// The token of fleet tenant `i`.
fn token(i: usize) -> String {
    format!("fleet-token-{i:04}")
}

pub(super) async fn fleet(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (tenants, per_second, seconds) = (
        args.fleet_tenants(),
        args.fleet_per_second(),
        args.fleet_seconds(),
    );
    let scratch = Scratch::fresh(dir, "pod-fleet")?;
    println!(
        "\n== pod-fleet: {tenants} tenants streaming {per_second} events/s each (message + maillog) into the file sink{} for {seconds} s (load {})",
        if args.pod_sink_down {
            " and an HTTP sink that is down"
        } else {
            ""
        },
        loadavg()
    );
    flush_stdout();
    // Per type: half the tenant's rate, in frames a minute.
    let each = (per_second * 30).max(1);
    let mut sim_toml = String::from("seed = 6\ntenants = []\n");
    for i in 0..tenants {
        sim_toml.push_str(&format!(
            "[[pod]]\ncluster_id = \"fleet_hosted\"\ntoken = \"{}\"\nframes_per_minute = {each}\n",
            token(i)
        ));
    }
    let sim = SimProcess::start(&scratch.dir, &sim_toml).await?;
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
    let mut config = format!(
        "state_dir = {:?}\n[sinks.archive]\ntype = \"file\"\npath = {:?}\n{down_sink}",
        scratch.state.display().to_string(),
        scratch.events.display().to_string()
    );
    for i in 0..tenants {
        config.push_str(&format!(
            "[tenants.fleet{i:04}]\nproduct = \"pod\"\nbase_url = \"{base_url}\"\ncluster_id = \"fleet_hosted\"\ntoken = \"{}\"\nsinks = {sinks}\n",
            token(i)
        ));
    }
    let app = App::build(parse_config(&config)?, Clock::System).await?;
    let daemon = Running::start(app);
    let board = &daemon.board;
    let connections = |s: &[TenantStatus]| {
        s.iter()
            .filter(|t| t.stream.as_ref().is_some_and(|st| st.connected))
            .count()
    };
    let all = 2 * tenants;
    tokio::time::timeout(
        Duration::from_secs(120),
        board.wait_until(|s| connections(s) == all),
    )
    .await
    .with_context(|| format!("the {all} streams did not connect within two minutes"))?;
    // Measured from here: every connection open and streaming.
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
    let open = connections(&board.snapshot());
    let down_failing = board
        .snapshot()
        .iter()
        .flat_map(|t| t.sinks.iter())
        .filter(|s| s.sink == "down" && s.failing)
        .count();
    if args.pod_sink_down && down_failing == 0 {
        bail!("the sink meant to be down is not failing");
    }
    let board = daemon.stop().await?;
    let lines = crate::cli::demo::count_lines(&scratch.events)?;
    let total = delivered(&board);
    // With a sink down, a chunk in flight at shutdown may be committed by the file sink while
    // the other sink still retries; the engine counts a chunk once every sink has answered.
    if lines < total || (!args.pod_sink_down && lines != total) {
        bail!("the file holds {lines} lines but {total} events were delivered");
    }
    if open != all {
        bail!(
            "{} of the {all} connections dropped during the measurement",
            all - open
        );
    }
    let per_m = per_million(cpu, events);
    let core = cpu / wall * 100.0;
    println!(
        "frames received:         {got} ({:.0}/s)",
        got as f64 / wall
    );
    println!(
        "events delivered:        {events} ({:.0}/s)",
        events as f64 / wall
    );
    println!("connections:             {open} open ({tenants} tenants x 2 log types)");
    println!(
        "daemon CPU:              {cpu:.1} s in {wall:.1} s = {per_m:.1} CPU-s per million events ({core:.1}% of one core)"
    );
    print_sim_cpu(sim_cpu, events);
    print_peak_rss(hwm, baseline, "connected");
    print_load_at_end();
    print_result(
        "pod-fleet",
        &[
            ("tenants", tenants.to_string()),
            ("sink_down", args.pod_sink_down.to_string()),
            ("events", events.to_string()),
            ("seconds", format!("{wall:.1}")),
            ("cpu_s", format!("{cpu:.2}")),
            ("cpu_per_million", format!("{per_m:.1}")),
            ("core_pct", format!("{core:.1}")),
            ("peak_rss_mib", format!("{:.1}", mib(hwm))),
            ("connections", open.to_string()),
        ],
    );
    drop(sim);
    std::fs::remove_file(&scratch.events).ok();
    Ok(())
}
