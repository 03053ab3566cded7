//! The scale case: N tenants on 5-minute polling with a few events each, on a manual clock shared
//! with an in-process simulator on its own thread. It measures memory per tenant, (RSS with N
//! tenants idle − RSS before the daemon was built) / N, and the daemon's CPU per simulated hour
//! of steady state and per poll, with the simulator thread's CPU and the bench's own checks
//! taken out.

use std::path::Path;
use std::time::{Duration, Instant};

use super::daemon::{run_until, tap_config, Running, Scratch, MANUAL_CLOCK_POLL};
use super::measure::{cpu_secs, loadavg, mib, rss_kib};
use super::sim::{sim_config, SimThread};
use super::{flush_stdout, print_load_at_end, print_result, BenchArgs};
use crate::clock::Clock;
use crate::status::StatusBoard;
use crate::App;

pub(super) async fn scale(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (n, minutes) = (args.scale_tenants(), args.scale_minutes());
    let per_hour = 12; // "a few events each": about 1 per 5-minute poll
    let scratch = Scratch::fresh(dir, "scale")?;
    println!(
        "\n== scale: {n} tenants, 5-minute polling, {per_hour} events/h each, {minutes} simulated minutes of steady state (load {})",
        loadavg()
    );
    flush_stdout();
    let start = chrono::Utc::now();
    let (clock, manual) = Clock::manual(start);
    let mut cfg = sim_config(n, per_hour);
    for t in &mut cfg.tenants {
        t.max_visibility_delay = Duration::from_secs(60);
    }
    let sim = SimThread::start(cfg, clock.clone())?;
    let config = tap_config(&scratch, &sim.base_url, n, MANUAL_CLOCK_POLL)?;
    let baseline = rss_kib();
    let t_build = Instant::now();
    let app = App::build(config, clock.clone()).await?;
    let build_secs = t_build.elapsed().as_secs_f64();
    let built = rss_kib();
    let daemon = Running::start(app);
    let board = &daemon.board;
    // Warm up: every tenant's first window, then one poll interval so that every tenant has
    // polled again on its own phase and its store records and key blobs are in place.
    let warm_until = manual.now().timestamp() + 300;
    run_until(board, &manual, n, warm_until).await?;
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
    let polls0 = requests(board);
    let until = manual.now().timestamp() + minutes as i64 * 60;
    let checks = run_until(board, &manual, n, until).await?;
    let wall = t0.elapsed().as_secs_f64();
    let (cpu, sim_cpu) = (cpu_secs() - cpu0, sim.cpu_secs() - sim0);
    let polls = requests(board) - polls0;
    let daemon_cpu = (cpu - sim_cpu - checks).max(0.0);
    let h = minutes as f64 / 60.0;
    println!("polls:                   {polls} in {minutes} simulated min ({:.0} per hour), {wall:.1} s wall", polls as f64 / h);
    println!("daemon CPU per sim. hour: {:.2} CPU-s ({:.2} ms per poll; process {:.2}, simulator thread {:.2}, bench checks {:.2} CPU-s per hour)",
        daemon_cpu / h, daemon_cpu / polls.max(1) as f64 * 1e3, cpu / h, sim_cpu / h, checks / h);
    let after = rss_kib();
    println!(
        "RSS after steady state:  {:.1} MiB ({:.2} KiB per tenant)",
        mib(after),
        (after.saturating_sub(baseline)) as f64 / n as f64
    );
    print_load_at_end();
    print_result(
        "scale",
        &[
            ("tenants", n.to_string()),
            ("idle_kib", idle.to_string()),
            ("baseline_kib", baseline.to_string()),
            ("after_kib", after.to_string()),
            ("cpu_per_hour", format!("{:.3}", daemon_cpu / h)),
            (
                "ms_per_poll",
                format!("{:.4}", daemon_cpu / polls.max(1) as f64 * 1e3),
            ),
        ],
    );
    daemon.stop().await?;
    drop(sim);
    Ok(())
}

/// Requests answered with 200, summed over tenants.
fn requests(board: &StatusBoard) -> u64 {
    board
        .snapshot()
        .iter()
        .map(|t| t.requests_by_status.get("200").copied().unwrap_or(0))
        .sum()
}
