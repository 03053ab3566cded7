//! The growth curves: how cost grows with work. The scale case at 100 / 1,000 / 10,000 tenants
//! (memory per tenant, CPU per simulated hour and per poll) and the throughput case at 10 k /
//! 100 k / 1 M events (CPU per event against the raw reference, peak RSS), each point in its own
//! process so that its RSS is its own, summed up in two tables from the points' `RESULT` lines.

use std::collections::HashMap;
use std::process::Stdio;

use anyhow::{bail, Context as _};

use super::measure::loadavg;
use super::{flush_stdout, parse_result, BenchArgs};

/// How cost grows with work: the scale case at three tenant counts and the throughput case at
/// three event counts, each point in its own process (so RSS is the point's own).
pub(super) async fn curves(args: &BenchArgs) -> anyhow::Result<()> {
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

/// Runs this binary for one point of a curve; echoes its output and returns its RESULT fields.
fn run_point(
    args: &BenchArgs,
    case: &str,
    extra: &[String],
) -> anyhow::Result<HashMap<String, String>> {
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

/// A number among a point's RESULT fields; NaN if it is missing.
fn field(r: &HashMap<String, String>, k: &str) -> f64 {
    r.get(k).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}
