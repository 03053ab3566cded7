//! The state case, state that stays small: N tenants at 500 events/h through D simulated days of
//! 5-minute polls on a manual clock shared with an in-process simulator. It measures the store's
//! size on disk (file lengths and allocated blocks) day by day, and whether it stays within twice
//! its size after day 1.

use std::path::Path;
use std::time::Instant;

use super::daemon::{delivered, tap_config, wait_idle, Running, Scratch, MANUAL_CLOCK_POLL};
use super::measure::{cpu_secs, dir_size, loadavg, mib, rss_kib};
use super::sim::{sim_config, SimThread};
use super::{flush_stdout, print_result, BenchArgs};
use crate::clock::{self, Clock};
use crate::App;

/// N tenants at 500 events/h through D simulated days of 5-minute polls on the manual clock,
/// the store's size on disk printed after day 1, 7 and D. The clock moves in 5-minute steps
/// (every tenant polls once per step). The output file is emptied every simulated day (the
/// file sink writes at its committed offset, so it becomes sparse): only the store is measured.
pub(super) async fn state(args: &BenchArgs, dir: &Path) -> anyhow::Result<()> {
    let (n, days) = (args.state_tenants(), args.state_days());
    let per_hour = 500;
    let scratch = Scratch::fresh(dir, "state")?;
    println!(
        "\n== state: {n} tenants x {per_hour} events/h, {days} simulated days of 5-minute polls (load {})",
        loadavg()
    );
    flush_stdout();
    let start = chrono::Utc::now();
    let (clock, manual) = Clock::manual(start);
    let sim = SimThread::start(sim_config(n, per_hour), clock.clone())?;
    let config = tap_config(&scratch, &sim.base_url, n, MANUAL_CLOCK_POLL)?;
    let app = App::build(config, clock.clone()).await?;
    let daemon = Running::start(app);
    let board = &daemon.board;
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    let mut day1: Option<u64> = None;
    let mut worst = 0.0f64;
    println!("| day | events delivered | store, file lengths | store, allocated | x day 1 | RSS | CPU-s so far | wall s | load |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for day in 1..=days {
        let (b, m, ev) = (board.clone(), manual.clone(), scratch.events.clone());
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
        let (len, alloc) = dir_size(&scratch.state);
        let base = *day1.get_or_insert(len);
        let x = len as f64 / base.max(1) as f64;
        if day > 1 {
            worst = worst.max(x);
        }
        if day == 1 || day == 7 || day == days || day % 5 == 0 {
            println!(
                "| {day} | {} | {:.1} MB | {:.1} MB | {x:.2} | {:.1} MiB | {:.1} | {:.0} | {} |",
                delivered(board),
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
    print_result(
        "state",
        &[
            ("tenants", n.to_string()),
            ("days", days.to_string()),
            ("worst", format!("{worst:.3}")),
        ],
    );
    daemon.stop().await?;
    drop(sim);
    Ok(())
}
