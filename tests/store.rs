//! The state store lost or damaged (issue 14, item 2), with the real binary: the sled file cut to
//! 0 bytes, 4 KiB of garbage over its head, or the whole state directory deleted, after a
//! `kill -9` in the middle of a backlog. `run` must refuse, naming the state directory and the
//! sink; `tapfwd recover` rebuilds the file sink's state from its file; the daemon then runs to
//! the end and the file holds every simulator event exactly once.

mod support;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{
    exit_within, file_len, free_port, http_get, metric, sigterm, tapfwd, wait_for_tenant_lines,
    wait_until,
};
use support::rig::{Rig, RigBuilder};
use support::*;
use tapfwd::clock::Clock;

fn spawn_run(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    tapfwd()
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tapfwd runs")
}

fn checkpoints(config: &Path) -> HashMap<String, i64> {
    let out = tapfwd()
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let cp = t["sinks"][0]["checkpoint"].as_str().unwrap();
            (
                t["tenant"].as_str().unwrap().to_string(),
                chrono::DateTime::parse_from_rfc3339(cp)
                    .unwrap()
                    .timestamp(),
            )
        })
        .collect()
}

/// The earliest window start `principal` asked the simulator for so far.
fn first_start(sim: &Sim, principal: &str) -> i64 {
    sim.sim
        .request_log(principal)
        .iter()
        .filter_map(|r| parse_interval(&r.query))
        .map(|(s, _)| s)
        .min()
        .expect("the tenant made requests")
}

/// The file after a stop, for tenant `id` (`principal` at the simulator): every event from
/// `start` to its checkpoint `cp` exactly once, and besides them only events after `cp`, each once:
/// those of the window a SIGTERM interrupted, delivered with their dedupe keys while the
/// checkpoint stayed at the window's start (the next run recognises them).
fn assert_once_through_checkpoint(
    lines: &[Line],
    sim: &Sim,
    id: &str,
    principal: &str,
    start: i64,
    cp: i64,
) -> (usize, usize) {
    let upto = expected(&sim.sim, principal, start, cp);
    let known: HashSet<(&str, &[u8])> = upto
        .iter()
        .map(|(k, r)| (k.as_str(), r.as_slice()))
        .collect();
    let (mine, beyond): (Vec<Line>, Vec<Line>) = lines
        .iter()
        .filter(|l| l.tenant == id)
        .cloned()
        .partition(|l| known.contains(&(l.event_type.as_str(), l.raw.as_slice())));
    assert_exactly_once(&mine, id, &upto);
    let later = expected(&sim.sim, principal, cp, chrono::Utc::now().timestamp());
    let later: HashSet<(&str, &[u8])> = later
        .iter()
        .map(|(k, r)| (k.as_str(), r.as_slice()))
        .collect();
    let mut seen = HashSet::new();
    for l in &beyond {
        let key = (l.event_type.as_str(), l.raw.as_slice());
        assert!(
            later.contains(&key),
            "{id}: an event in the file that the simulator never served after the checkpoint: {}",
            String::from_utf8_lossy(&l.raw)
        );
        assert!(
            seen.insert(key),
            "{id}: an event after the checkpoint is in the file twice: {}",
            String::from_utf8_lossy(&l.raw)
        );
    }
    (upto.len(), beyond.len())
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// The sled log file cut to 0 bytes.
    Truncated,
    /// 4 KiB of garbage written over the head of the sled log file.
    GarbageHead,
    /// The state directory deleted whole.
    Deleted,
}

fn damage(state: &Path, how: Damage) {
    let db = state.join("tapfwd.sled").join("db");
    assert!(db.exists(), "no sled file at {}", db.display());
    match how {
        Damage::Truncated => {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&db)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
        Damage::GarbageHead => {
            use std::os::unix::fs::FileExt;
            let garbage: Vec<u8> = (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            let f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
            f.write_all_at(&garbage, 0).unwrap();
            f.sync_all().unwrap();
        }
        Damage::Deleted => std::fs::remove_dir_all(state).unwrap(),
    }
}

const TENANTS: [(&str, &str, &str); 2] = [("d1", "p-d1", "s-d1"), ("d2", "p-d2", "s-d2")];

async fn lost_store_is_refused_then_recovered_exactly_once(how: Damage, seed: u64) {
    let rig = Rig::builder()
        .system_clock()
        .tenants(&TENANTS, 1200)
        .seed(seed)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"6h\"\nbatch_events = 97\nconcurrency = 2")
        .build()
        .await;
    let (sim, scratch, state, events) = (
        rig.sim.clone(),
        &rig.scratch,
        rig.state(),
        rig.events.clone(),
    );
    let config = rig.write_config();

    // A first run, killed in the middle of writing its backlog.
    let mut child = spawn_run(&config, &scratch.path("run1.log"));
    let events2 = events.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("the file to grow", Duration::from_secs(120), || {
            file_len(&events2) >= 1_500_000
        })
    })
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let before = file_len(&events);

    // The store is damaged: `run` refuses, naming the state directory and the sink.
    damage(&state, how);
    let log = scratch.path("run2.log");
    let mut child = spawn_run(&config, &log);
    let exit = tokio::task::spawn_blocking(move || {
        exit_within(&mut child, Duration::from_secs(60), "with a damaged store")
    })
    .await
    .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !exit.success(),
        "{how:?}: run started on a lost store:\n{text}"
    );
    assert!(
        text.contains(&state.display().to_string()),
        "{how:?}: the refusal does not name the state directory:\n{text}"
    );
    assert!(
        text.contains("archive") && text.contains("tapfwd recover --config"),
        "{how:?}: the refusal does not name the sink and the way out:\n{text}"
    );
    assert_eq!(
        file_len(&events),
        before,
        "{how:?}: the refused run wrote to the events file"
    );

    // Recover the file sink from its file, then run to the end.
    let out = tapfwd()
        .args(["recover", "--sink", "archive", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{how:?}: recover failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = spawn_run(&config, &scratch.path("run3.log"));
    let principals: Vec<&str> = TENANTS.iter().map(|(_, p, _)| *p).collect();
    let starts: HashMap<&str, i64> = principals
        .iter()
        .map(|p| (*p, first_start(&sim, p)))
        .collect();
    let target = (chrono::Utc::now().timestamp() - 1800).div_euclid(60) * 60 - 300;
    let want: HashMap<String, usize> = TENANTS
        .iter()
        .map(|(id, p, _)| {
            (
                id.to_string(),
                expected(&sim.sim, p, starts[p], target).len(),
            )
        })
        .collect();
    wait_for_tenant_lines(&events, want).await;
    sigterm(&mut child);

    // Ground truth from the earliest window any run asked for (the recovered position may lie
    // before the first run's start: those events were never in the file and come once).
    let cps = checkpoints(&config);
    let lines = read_lines(&events);
    for (id, p, _) in TENANTS {
        let start = first_start(&sim, p);
        assert!(start <= starts[p]);
        let (upto, beyond) = assert_once_through_checkpoint(&lines, &sim, id, p, start, cps[id]);
        eprintln!("{how:?}, {id}: {upto} events up to the checkpoint exactly once, {beyond} after it once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_store_is_refused_then_recovered_exactly_once() {
    lost_store_is_refused_then_recovered_exactly_once(Damage::Truncated, 31).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_headed_store_is_refused_then_recovered_exactly_once() {
    lost_store_is_refused_then_recovered_exactly_once(Damage::GarbageHead, 32).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_state_dir_is_refused_then_recovered_exactly_once() {
    lost_store_is_refused_then_recovered_exactly_once(Damage::Deleted, 33).await;
}

/// A brand-new install (no state directory, no events file) starts and writes; so does a start
/// with an empty events file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_install_starts_normally() {
    let sim = Sim::start(vec![tenant("p-d1", "s-d1", 600)], 34, Clock::System).await;
    for pre_create in [false, true] {
        let scratch = Scratch::new();
        let events: PathBuf = scratch.path("out/events.ndjson");
        if pre_create {
            std::fs::create_dir_all(events.parent().unwrap()).unwrap();
            std::fs::write(&events, b"").unwrap();
        }
        let config = scratch.path("tapfwd.toml");
        std::fs::write(
            &config,
            config_text(
                &scratch.path("state"),
                &events,
                &sim.base_url(),
                &TENANTS[..1],
                "lag = \"30m\"\ninitial_lookback = \"2h\"",
            ),
        )
        .unwrap();
        let mut child = spawn_run(&config, &scratch.path("run.log"));
        let events2 = events.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("events in the file", Duration::from_secs(60), || {
                file_len(&events2) > 0
            })
        })
        .await
        .unwrap();
        sigterm(&mut child);
        assert!(scratch.path("state").join("store.id").exists());
    }
}

/// A sink other than a file cannot be read back: recover says so and names `--start-at`, and
/// with it the daemon goes on.
#[test]
fn recover_of_another_sink_needs_a_start_time() {
    let scratch = Scratch::new();
    let config = scratch.path("tapfwd.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[sinks.siem]\ntype = \"http\"\nurl = \"http://127.0.0.1:9/ingest\"\n\
             [tenants.acme]\nprincipal = \"p\"\nsecret = \"s\"\nsinks = [\"siem\"]\n",
            scratch.path("state").display().to_string()
        ),
    )
    .unwrap();
    let out = tapfwd()
        .args(["recover", "--sink", "siem", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--start-at"), "{err}");
    let out = tapfwd()
        .args(["recover", "--sink", "siem", "--start-at", "3h", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("acme -> siem: goes on from"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// A full disk under the state directory (issue 14, item 3), on a small tmpfs mounted for the
// test: CI runs as root on this kind of machine, and a test that cannot mount fails, saying so.

/// A tmpfs of `size` mounted at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("mount(8) runs");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs for the state directory and needs root for it (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }

    /// Writes a file of zeros until the filesystem is full; returns its path.
    fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `(readyz status, readyz body, /metrics text, /status JSON)` of the daemon at `admin`.
async fn admin_view(admin: &str) -> (u16, String, String, serde_json::Value) {
    let (ready, ready_body) = http_get(&format!("http://{admin}/readyz")).await;
    let (_, metrics) = http_get(&format!("http://{admin}/metrics")).await;
    let (_, status) = http_get(&format!("http://{admin}/status")).await;
    (
        ready,
        ready_body,
        metrics,
        serde_json::from_str(&status).unwrap(),
    )
}

/// Waits until the admin endpoint shows the store failing on every surface.
async fn wait_store_failing(admin: &str) -> (String, String) {
    let start = Instant::now();
    loop {
        if let Ok(Ok((code, body, metrics, status))) =
            tokio::time::timeout(Duration::from_secs(5), admin_view(admin))
                .await
                .map(Ok::<_, ()>)
        {
            let unhealthy = metric(&metrics, "tapfwd_store_healthy") == Some(0.0);
            let errors = metric(&metrics, "tapfwd_store_errors_total").unwrap_or(0.0);
            if code == 503 && unhealthy && errors >= 1.0 && status["store"]["healthy"] == false {
                assert!(body.contains("state store failing"), "{body}");
                let last = status["store"]["last_error"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                return (body, last);
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the store never showed as failing on /readyz, /metrics and /status"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Both tenants on the system clock with a simulator seeded with `seed`, the admin endpoint on
/// `admin`, a short shutdown grace and `store_failure_exit = exit_after`.
fn disk_rig(seed: u64, admin: u16, exit_after: &str) -> RigBuilder {
    Rig::builder()
        .system_clock()
        .tenants(&TENANTS, 1200)
        .seed(seed)
        .top(&format!("admin_listen = \"127.0.0.1:{admin}\""))
        .poll(&format!(
            "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"6h\"\nbatch_events = 97\nconcurrency = 2\n\
             shutdown_grace = \"2s\"\nstore_failure_exit = \"{exit_after}\""
        ))
}

/// Runs the daemon at `config` until every event of both tenants up to a little before now − lag
/// is in `events`, stops it, and checks every event is there exactly once.
async fn run_to_the_end_exactly_once(sim: &Sim, config: &Path, events: &Path, log: &Path) {
    let mut child = spawn_run(config, log);
    let target = (chrono::Utc::now().timestamp() - 1800).div_euclid(60) * 60 - 300;
    let want: HashMap<String, usize> = TENANTS
        .iter()
        .map(|(id, p, _)| {
            let start = first_start(sim, p);
            (id.to_string(), expected(&sim.sim, p, start, target).len())
        })
        .collect();
    wait_for_tenant_lines(events, want).await;
    sigterm(&mut child);
    let cps = checkpoints(config);
    let lines = read_lines(events);
    for (id, p, _) in TENANTS {
        let (upto, beyond) =
            assert_once_through_checkpoint(&lines, sim, id, p, first_start(sim, p), cps[id]);
        eprintln!(
            "{id}: {upto} events up to the checkpoint, each in the file exactly once; {beyond} after it (a window cut by SIGTERM), each once"
        );
    }
    eprintln!("{} lines in the file in all", lines.len());
}

/// The disk under the state directory fills in the middle of a backlog: `/readyz` says 503, the
/// metrics, `/status` and `tapfwd status` show the store failing; space comes back, but sled does not recover in
/// the process, so after `store_failure_exit` the daemon exits non-zero; started again it goes on
/// and every event is in the file exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_state_disk_is_reported_then_exit_and_restart_resume_exactly_once() {
    let admin = free_port();
    let rig = disk_rig(35, admin, "6s").build().await;
    let (sim, scratch, state, events) = (
        rig.sim.clone(),
        &rig.scratch,
        rig.state(),
        rig.events.clone(),
    );
    let disk = Tmpfs::mount(&state, "16m");
    let config = rig.write_config();
    let admin = format!("127.0.0.1:{admin}");

    let mut child = spawn_run(&config, &scratch.path("run1.log"));
    let events2 = events.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("the file to grow", Duration::from_secs(120), || {
            file_len(&events2) >= 300_000
        })
    })
    .await
    .unwrap();
    let filler = disk.fill();
    let filled_at = Instant::now();
    let (_, last_error) = wait_store_failing(&admin).await;
    assert!(!last_error.is_empty());
    let failed_at = Instant::now();
    let out = tapfwd()
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("STATE STORE FAILING for "), "{text}");
    eprintln!("{}", text.lines().next().unwrap_or(""));
    eprintln!(
        "tmpfs full: /readyz 503, tapfwd_store_healthy 0 and /status store.healthy false after {:?}; last_error: {last_error}",
        failed_at - filled_at
    );
    std::fs::remove_file(&filler).unwrap();

    // sled keeps its I/O error: the daemon exits non-zero after store_failure_exit (6 s), within
    // shutdown_grace and the margin after that.
    let exit = tokio::task::spawn_blocking(move || {
        let exit = exit_within(&mut child, Duration::from_secs(60), "with a failed store");
        (exit, failed_at.elapsed())
    })
    .await
    .unwrap();
    let log = std::fs::read_to_string(scratch.path("run1.log")).unwrap();
    assert!(!exit.0.success(), "exited {:?}:\n{log}", exit.0);
    assert!(
        exit.1 < Duration::from_secs(6 + 2 + 5 + 3),
        "took {:?}",
        exit.1
    );
    assert!(log.contains("store_failure_exit"), "{log}");
    eprintln!(
        "space freed; exited {:?} {:?} after the failure showed (store_failure_exit 6s, grace 2s)",
        exit.0, exit.1
    );

    run_to_the_end_exactly_once(&sim, &config, &events, &scratch.path("run2.log")).await;
    drop(disk);
}

/// SIGTERM while store writes and flushes hang, blocking the threads that called them (as
/// sled's did after a disk error; here through the store's test seam, `TAPFWD_TEST_STORE_STALL_FILE`):
/// `/readyz` says the store is failing once a write has not returned for 10 s, and the process
/// ends within shutdown_grace (2 s) and the 5 s margin, with a non-zero exit. A restart goes on
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_stuck_store_ends_within_the_grace() {
    let admin = free_port();
    let rig = disk_rig(36, admin, "10m").build().await;
    let (sim, scratch, events) = (rig.sim.clone(), &rig.scratch, rig.events.clone());
    let config = rig.write_config();
    let stall = scratch.path("stall");
    let admin = format!("127.0.0.1:{admin}");
    let log = std::fs::File::create(scratch.path("run1.log")).unwrap();
    let mut child = tapfwd()
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .env(tapfwd::store::STALL_ENV, &stall)
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let events2 = events.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("the file to grow", Duration::from_secs(120), || {
            file_len(&events2) >= 300_000
        })
    })
    .await
    .unwrap();
    std::fs::write(&stall, b"").unwrap();
    let (body, _) = wait_store_failing_without_errors(&admin).await;
    assert!(body.contains("has not returned"), "{body}");
    eprintln!("stuck store: /readyz 503: {}", body.trim());
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (exit, took) = tokio::task::spawn_blocking(move || {
        let exit = exit_within(&mut child, Duration::from_secs(60), "after SIGTERM");
        (exit, sent.elapsed())
    })
    .await
    .unwrap();
    let log = std::fs::read_to_string(scratch.path("run1.log")).unwrap();
    eprintln!(
        "SIGTERM with stuck store writes: exited {exit:?} after {took:?} (grace 2s + margin 5s)"
    );
    assert!(
        took < Duration::from_secs(2 + 5 + 3),
        "SIGTERM took {took:?} with a stuck store:\n{log}"
    );
    assert!(
        !exit.success(),
        "a stop with a stuck store is not a clean one: {exit:?}\n{log}"
    );
    std::fs::remove_file(&stall).unwrap();
    run_to_the_end_exactly_once(&sim, &config, &events, &scratch.path("run2.log")).await;
}

/// Waits until `/readyz` and `/status` show the store failing (a stuck flush counts no error).
async fn wait_store_failing_without_errors(admin: &str) -> (String, String) {
    let start = Instant::now();
    loop {
        let (code, body, metrics, status) = admin_view(admin).await;
        if code == 503
            && metric(&metrics, "tapfwd_store_healthy") == Some(0.0)
            && status["store"]["healthy"] == false
        {
            let last = status["store"]["last_error"]
                .as_str()
                .unwrap_or("")
                .to_string();
            return (body, last);
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the stuck store never showed as failing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
