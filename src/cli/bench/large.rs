//! The large-window case: one tenant whose one-hour window holds about 200,000 events (~600 MB of
//! JSON), from a simulator in a child process into the file sink. It measures the peak RSS
//! (VmHWM, reset after the baseline) above the idle baseline: what one big window costs in memory.

use std::path::Path;
use std::time::{Duration, Instant};

use super::daemon::{delivered, tap_config, Running, Scratch};
use super::measure::{cpu_secs, file_len, hwm_kib, loadavg, mib, reset_hwm, rss_kib};
use super::sim::{sim_toml, SimProcess};
use super::{flush_stdout, print_load_at_end, BenchArgs};
use crate::clock::Clock;
use crate::App;

pub(super) async fn large(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let events = args.large_events();
    let scratch = Scratch::fresh(dir, "large")?;
    println!(
        "\n== large window: one tenant, one 1-hour window of about {events} events (load {})",
        loadavg()
    );
    flush_stdout();
    let sim = SimProcess::start(&scratch.dir, &sim_toml(1, events, true)).await?;
    let mut poll = "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"\n".to_string();
    poll.push_str(&args.poll_overrides());
    let config = tap_config(&scratch, &sim.base_url, 1, &poll)?;
    let app = App::build(config, Clock::System).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = rss_kib();
    reset_hwm();
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    let daemon = Running::start(app);
    daemon
        .board
        .wait_until(|s| s.len() == 1 && s[0].state == "ok")
        .await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let hwm = hwm_kib();
    let board = daemon.stop().await?;
    let delivered = delivered(&board);
    let windows: u64 = board.snapshot().iter().map(|t| t.windows_fetched).sum();
    let bytes = file_len(&scratch.events);
    println!("events delivered:        {delivered} in {windows} window(s), {:.0} MB written, {wall:.1} s, {cpu:.1} CPU-s", bytes as f64 / 1e6);
    println!("idle baseline RSS:       {:.1} MiB", mib(baseline));
    println!(
        "peak RSS:                {:.1} MiB = {:.1} MiB above the baseline",
        mib(hwm),
        mib(hwm.saturating_sub(baseline))
    );
    print_load_at_end();
    flush_stdout();
    drop(sim);
    std::fs::remove_file(&scratch.events).ok();
    Ok(())
}
