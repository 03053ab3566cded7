//! The state store lost or damaged (issue 14, item 2), with the real binary: the sled file cut to
//! 0 bytes, 4 KiB of garbage over its head, or the whole state directory deleted, after a
//! `kill -9` in the middle of a backlog. `run` must refuse, naming the state directory and the
//! sink; `tapfwd recover` rebuilds the file sink's state from its file; the daemon then runs to
//! the end and the file holds every simulator event exactly once. Issue 21 adds `recover`'s
//! distrust of event times, stores garbled in eleven ways (refused cleanly, with an exit code the
//! unit does not restart, then recovered), a deleted state directory with an HTTP sink only, and
//! the store failing with the admin endpoint probed throughout (a tmpfs kept full, and the store's
//! calls hanging).

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
// Issue 21, items 4 to 6: state that is lost or damaged, and the times `recover` reads.

/// The exit code the systemd unit does not restart (`RestartPreventExitStatus=`), read from the
/// unit itself: a refusal that a restart cannot cure must exit with one of them.
fn unit_restart_prevent_codes() -> Vec<i32> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/tapfwd.service"
    ))
    .unwrap();
    unit.lines()
        .filter_map(|l| l.trim().strip_prefix("RestartPreventExitStatus="))
        .flat_map(|v| v.split_whitespace().filter_map(|c| c.parse().ok()))
        .collect()
}

/// One file sink line of `tenant`: a delivered message (`clicksPermitted` when `click`) of time
/// `at` (RFC 3339), with a `GUID` or `id` of `n`.
fn event_line(tenant: &str, n: usize, at: &str, click: bool) -> String {
    if click {
        format!(
            "{{\"tenant\":\"{tenant}\",\"eventType\":\"clicksPermitted\",\"event\":{{\"id\":\"c-{n}\",\"clickTime\":\"{at}\"}}}}\n"
        )
    } else {
        format!(
            "{{\"tenant\":\"{tenant}\",\"eventType\":\"messagesDelivered\",\"event\":{{\"GUID\":\"m-{n}\",\"messageTime\":\"{at}\"}}}}\n"
        )
    }
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Issue 21, item 4: one event dated 2099 in the events file set its tenant's position to
/// 2098-12-31T23:00 (status then said `ok`, and nothing would be fetched for 73 years). `recover`
/// clamps positions to now − lag, names the events dated after now (how many, the latest, the
/// tenant), and refuses a file whose times are mostly after now, changing nothing.
#[test]
fn recover_does_not_trust_event_times() {
    let now = chrono::Utc::now().timestamp();
    let lag = 1800;
    let write = |scratch: &Scratch, lines: &str| -> PathBuf {
        let events = scratch.path("events.ndjson");
        std::fs::write(&events, lines).unwrap();
        let config = scratch.path("tapfwd.toml");
        std::fs::write(
            &config,
            config_text(
                &scratch.path("state"),
                &events,
                "http://127.0.0.1:9",
                &[("acme", "p-acme", "s-acme"), ("beta", "p-beta", "s-beta")],
                "lag = \"30m\"",
            ),
        )
        .unwrap();
        config
    };
    let recover = |config: &Path| {
        tapfwd()
            .args(["recover", "--sink", "archive", "--config"])
            .arg(config)
            .output()
            .unwrap()
    };

    // One outlier among 20 good events: named, and without effect on the position.
    let scratch = Scratch::new();
    let mut lines = String::new();
    for n in 0..20 {
        lines.push_str(&event_line(
            "acme",
            n,
            &rfc3339(now - 3 * 3600 + n as i64 * 180),
            false,
        ));
        lines.push_str(&event_line(
            "beta",
            n,
            &rfc3339(now - 2 * 3600 + n as i64 * 60),
            true,
        ));
    }
    lines.push_str(&event_line("acme", 99, "2099-01-01T00:00:00.000Z", false));
    let config = write(&scratch, &lines);
    let out = recover(&config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("acme -> archive: 1 of its 21 timed event(s) are dated after now, the latest 2099-01-01T00:00:00Z"),
        "the outlier is not named:\n{text}"
    );
    let cps = checkpoints(&config);
    for (id, cp) in &cps {
        assert!(
            *cp <= now - lag && *cp >= now - 4 * 3600,
            "{id}: recovered position {} (now {}):\n{text}",
            rfc3339(*cp),
            rfc3339(now)
        );
    }
    eprintln!(
        "one event dated 2099: positions {:?} (now {})",
        cps.iter()
            .map(|(id, cp)| format!("{id} {}", rfc3339(*cp)))
            .collect::<Vec<_>>(),
        rfc3339(now)
    );

    // Most of a tenant's events after now: the file (or this host's clock) makes no sense.
    let scratch = Scratch::new();
    let mut lines = String::new();
    for n in 0..3 {
        lines.push_str(&event_line("acme", n, &rfc3339(now - 3600), false));
    }
    for n in 3..10 {
        lines.push_str(&event_line("acme", n, &rfc3339(now + 86_400 * 365), false));
    }
    let config = write(&scratch, &lines);
    let out = recover(&config);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "recovered from a file dated mostly in the future: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        err.contains("7 of the 10 timed events of tenant acme are dated after now")
            && err.contains("--start-at"),
        "{err}"
    );
    let out = tapfwd()
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert!(
        v.as_array().is_some_and(|a| a
            .iter()
            .all(|t| t["sinks"].as_array().map_or(true, |s| s.is_empty()))),
        "the refused recover changed the store: {v}"
    );
    eprintln!("{}", err.trim());
}

/// What sled kept of a damaged store can be an early part of it: the file sink's position (0, set
/// at the first start) without the store's identity or any stream. The daemon refuses it as lost,
/// naming `recover --sink archive`; `recover` must then rebuild over it, not answer that the store
/// already records the sink (the way out would lead nowhere).
#[tokio::test]
async fn recover_rebuilds_over_what_is_left_of_a_lost_store() {
    let scratch = Scratch::new();
    let events = scratch.path("events.ndjson");
    let now = chrono::Utc::now().timestamp();
    let mut lines = String::new();
    for n in 0..10 {
        lines.push_str(&event_line(
            "acme",
            n,
            &rfc3339(now - 7200 + n as i64 * 60),
            false,
        ));
    }
    std::fs::write(&events, &lines).unwrap();
    let config = scratch.path("tapfwd.toml");
    std::fs::write(
        &config,
        config_text(
            &scratch.path("state"),
            &events,
            "http://127.0.0.1:9",
            &[("acme", "p-acme", "s-acme")],
            "lag = \"30m\"",
        ),
    )
    .unwrap();
    {
        let store = tapfwd::store::Store::open(&scratch.path("state")).unwrap();
        store.set_position("archive", 0).unwrap();
        store.flush().await.unwrap();
    }
    std::fs::write(
        scratch.path("state").join("store.id"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    let out = tapfwd()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("tapfwd recover --config FILE --sink archive"),
        "{err}"
    );
    let out = tapfwd()
        .args(["recover", "--sink", "archive", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("acme -> archive: 10 event(s) in the file"),
        "{text}"
    );
    let cps = checkpoints(&config);
    assert!(cps["acme"] > now - 4 * 3600, "{cps:?}");
}

/// Issue 21, item 6: with an HTTP sink only (no file to tell by), the state directory deleted
/// whole re-delivered every event of the lookback, silently (9,078 of 9,078). The store's
/// identity is kept outside the state directory too: `run` refuses, naming the marker and
/// `recover --start-at`, and exits with a code the unit does not restart; after the recover the
/// daemon goes on from the chosen time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_state_dir_without_a_file_sink_is_refused_then_recovered() {
    let fake = support::fakes::Fake::default();
    let addr = support::fakes::plain(&fake).await;
    let rig = Rig::builder()
        .system_clock()
        .no_archive()
        .sink(
            "siem",
            &format!("type = \"http\"\nurl = \"http://{addr}/ingest\"\n"),
        )
        .tenants(&TENANTS[..1], 1200)
        .seed(37)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"2h\"\nbatch_events = 97")
        .build()
        .await;
    let (scratch, state) = (&rig.scratch, rig.state());
    let config = rig.write_config();
    let (_, principal, _) = TENANTS[0];

    // A first run delivers the lookback, then stops.
    let mut child = spawn_run(&config, &scratch.path("run1.log"));
    let start = chrono::Utc::now().timestamp();
    let want = expected(
        &rig.sim.sim,
        principal,
        (start - 1800 - 7200).div_euclid(60) * 60 + 60,
        (start - 1800).div_euclid(60) * 60 - 300,
    )
    .len();
    let f = fake.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(
            "the lookback at the HTTP sink",
            Duration::from_secs(120),
            || f.events().len() >= want,
        )
    })
    .await
    .unwrap();
    sigterm(&mut child);
    let delivered = fake.events().len();

    // The state directory goes; nothing in it (or beside the config) is left to tell by.
    std::fs::remove_dir_all(&state).unwrap();
    let log = scratch.path("run2.log");
    let mut child = spawn_run(&config, &log);
    let exit = tokio::task::spawn_blocking(move || {
        exit_within(
            &mut child,
            Duration::from_secs(30),
            "with its state directory deleted and an HTTP sink only",
        )
    })
    .await
    .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        fake.events().len(),
        delivered,
        "the run on a deleted state directory delivered again:\n{text}"
    );
    assert!(
        exit.code()
            .is_some_and(|c| unit_restart_prevent_codes().contains(&c)),
        "exit {exit:?} is not one the unit does not restart ({:?}):\n{text}",
        unit_restart_prevent_codes()
    );
    assert!(
        text.contains(&state.display().to_string())
            && text.contains("tapfwd recover --config FILE --sink siem --start-at TIME"),
        "the refusal does not name the state directory and the way out:\n{text}"
    );
    eprintln!("{}", text.lines().last().unwrap_or(""));

    // The way out: the sink goes on from 45 minutes ago.
    let out = tapfwd()
        .args(["recover", "--sink", "siem", "--start-at", "45m", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut child = spawn_run(&config, &scratch.path("run3.log"));
    let f = fake.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(
            "events again after the recover",
            Duration::from_secs(120),
            || f.events().len() > delivered,
        )
    })
    .await
    .unwrap();
    sigterm(&mut child);
    let again = fake.events().len() - delivered;
    assert!(
        again < delivered / 2,
        "{again} events delivered again after `recover --start-at 45m`, of {delivered}"
    );
    eprintln!("{delivered} events delivered; state directory deleted: refused, 0 sent again; recovered --start-at 45m: {again} sent again");
}

/// Copies the directory `from` to `to`, recursively.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A damage to a sled store, with the seed of its garbage.
#[derive(Clone, Copy, Debug)]
enum Garble {
    /// `len` bytes of garbage at `at` (a fraction of the file's length).
    Garbage { at: f64, len: usize, seed: u64 },
    /// 64 single-bit flips at places the seed picks.
    Flips { seed: u64 },
    /// The file cut to a fraction of its length.
    Cut { to: f64 },
    /// sled's `conf` file overwritten with garbage.
    Conf { seed: u64 },
}

/// A xorshift stream from `seed`: the damages are the same at every run.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn garble(state: &Path, how: Garble) {
    use std::os::unix::fs::FileExt;
    let sled = state.join("tapfwd.sled");
    let db = sled.join("db");
    let len = std::fs::metadata(&db).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .read(true)
        .open(&db)
        .unwrap();
    match how {
        Garble::Garbage { at, len: n, seed } => {
            let at = ((len as f64 * at) as u64).min(len.saturating_sub(n as u64));
            f.write_all_at(&garbage(seed, n), at).unwrap();
        }
        Garble::Flips { seed } => {
            let picks = garbage(seed, 64 * 9);
            for p in picks.chunks(9) {
                let at = u64::from_le_bytes(p[..8].try_into().unwrap()) % len;
                let mut b = [0u8];
                f.read_exact_at(&mut b, at).unwrap();
                b[0] ^= 1 << (p[8] % 8);
                f.write_all_at(&b, at).unwrap();
            }
        }
        Garble::Cut { to } => f.set_len((len as f64 * to) as u64).unwrap(),
        Garble::Conf { seed } => {
            let conf = sled.join("conf");
            let n = std::fs::metadata(&conf).unwrap().len() as usize;
            std::fs::write(&conf, garbage(seed, n)).unwrap();
        }
    }
    f.sync_all().unwrap();
}

/// What one command said about a damaged store.
struct Outcome {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Issue 21, item 5: a garbled store gave no effect, a clean refusal, a raw sled error (`Read
/// corrupted data at file offset …`, exit 1) or a panic (`tried to serialize Uninitialized`,
/// exit 101), and `status` and `recover` failed the same way; under `Restart=on-failure` the unit
/// looped. A store after a `kill -9` mid-backlog is damaged in eleven ways (fixed seeds); for each,
/// on a fresh copy each, `status`, `check` and `run` either take the store (sled read it whole) or
/// refuse it with the way out (`tapfwd recover`), exiting with a code the unit does not restart:
/// never a panic or a bare sled error. `recover` then rebuilds the file sink's state from its
/// file (moving a store sled cannot open aside), and the daemon runs to the end exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbled_stores_are_refused_cleanly_and_recovered() {
    let rig = Rig::builder()
        .system_clock()
        .tenants(&TENANTS, 1200)
        .seed(38)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"6h\"\nbatch_events = 97\nconcurrency = 2")
        .build()
        .await;
    let (sim, scratch) = (rig.sim.clone(), &rig.scratch);
    let config = rig.write_config();
    let mut child = spawn_run(&config, &scratch.path("run1.log"));
    let events = rig.events.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("the file to grow", Duration::from_secs(120), || {
            file_len(&events) >= 1_500_000
        })
    })
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let pristine = scratch.path("pristine");
    copy_dir(&rig.state(), &pristine.join("state"));
    std::fs::copy(&rig.events, pristine.join("events.ndjson")).unwrap();

    let damages = [
        Garble::Garbage {
            at: 0.0,
            len: 4096,
            seed: 1,
        },
        Garble::Garbage {
            at: 0.0,
            len: 4096,
            seed: 2,
        },
        Garble::Garbage {
            at: 0.0,
            len: 4096,
            seed: 3,
        },
        Garble::Garbage {
            at: 0.5,
            len: 65536,
            seed: 4,
        },
        Garble::Garbage {
            at: 0.9,
            len: 65536,
            seed: 5,
        },
        Garble::Flips { seed: 6 },
        Garble::Flips { seed: 7 },
        Garble::Flips { seed: 8 },
        Garble::Cut { to: 0.5 },
        Garble::Cut { to: 0.0 },
        Garble::Conf { seed: 9 },
    ];
    let refuse_codes = unit_restart_prevent_codes();
    let mut tally: std::collections::BTreeMap<String, usize> = Default::default();
    let mut recovered = Vec::new();
    for (i, how) in damages.iter().enumerate() {
        // A fresh copy, damaged the same way, for each command: sled writes as it opens.
        let case = |cmd: &str| -> PathBuf {
            let dir = scratch.path(&format!("case-{i}-{cmd}"));
            copy_dir(&pristine.join("state"), &dir.join("state"));
            std::fs::copy(pristine.join("events.ndjson"), dir.join("events.ndjson")).unwrap();
            garble(&dir.join("state"), *how);
            let text = rig
                .text
                .replace(
                    &rig.state().display().to_string(),
                    &dir.join("state").display().to_string(),
                )
                .replace(
                    &rig.events.display().to_string(),
                    &dir.join("events.ndjson").display().to_string(),
                );
            std::fs::write(dir.join("tapfwd.toml"), text).unwrap();
            dir
        };
        let mut outcomes = Vec::new();
        for cmd in ["status", "check"] {
            let dir = case(cmd);
            let out = tapfwd()
                .args([cmd, "--config"])
                .arg(dir.join("tapfwd.toml"))
                .env("RUST_BACKTRACE", "0")
                .output()
                .unwrap();
            outcomes.push((
                cmd,
                dir,
                Outcome {
                    code: out.status.code(),
                    stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                    stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                },
            ));
        }
        // `run` refuses at once, or takes the store and runs (then it is stopped).
        let dir = case("run");
        let log = dir.join("run.log");
        let mut child = spawn_run(&dir.join("tapfwd.toml"), &log);
        let log2 = log.clone();
        let code = tokio::task::spawn_blocking(move || {
            let start = Instant::now();
            loop {
                if let Some(status) = child.try_wait().unwrap() {
                    return status.code();
                }
                if std::fs::read_to_string(&log2)
                    .unwrap_or_default()
                    .contains("tapfwd running")
                {
                    sigterm(&mut child);
                    return Some(0);
                }
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "run neither refused nor started"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap();
        outcomes.push((
            "run",
            dir,
            Outcome {
                code,
                stdout: String::new(),
                stderr: std::fs::read_to_string(&log).unwrap(),
            },
        ));

        // `run` first: what it does is what the other two must say.
        outcomes.rotate_right(1);
        let mut kinds = Vec::new();
        for (cmd, dir, o) in &outcomes {
            let said = format!(
                "{how:?}, {cmd}: exit {:?}\n{}{}",
                o.code, o.stdout, o.stderr
            );
            assert!(
                !o.stderr.contains("panicked") && o.code != Some(101),
                "{said}"
            );
            let kind = match o.code {
                Some(0) => "taken",
                Some(c) if refuse_codes.contains(&c) => {
                    let state = dir.join("state").display().to_string();
                    assert!(
                        o.stderr.contains(&state)
                            && o.stderr.contains("tapfwd recover --config FILE --sink archive"),
                        "the refusal does not name the state directory and the way out: {said}"
                    );
                    if o.stderr.contains("is damaged") {
                        "refused: damaged"
                    } else {
                        assert!(
                            o.stderr.contains("not the one the sinks were fed from"),
                            "{said}"
                        );
                        "refused: lost"
                    }
                }
                _ => panic!("neither taken nor refused with a code the unit does not restart ({refuse_codes:?}): {said}"),
            };
            if let Some((first_cmd, first_kind)) = kinds.first() {
                assert_eq!(
                    kind, *first_kind,
                    "{how:?}: {cmd} says the store is {kind}, {first_cmd} that it is {first_kind}: {said}"
                );
            }
            if *cmd == "check" && kind == "taken" {
                assert!(o.stdout.contains("state store ok"), "{said}");
            }
            kinds.push((*cmd, kind));
        }
        eprintln!("{how:?}: {} (run, status and check agree)", kinds[0].1);
        *tally.entry(kinds[0].1.to_string()).or_default() += 1;
        // The way out works on every refused store, one that sled cannot open included.
        if let Some((_, dir, o)) = outcomes
            .iter()
            .find(|(cmd, _, o)| *cmd == "run" && o.code != Some(0))
        {
            let out = tapfwd()
                .args(["recover", "--sink", "archive", "--config"])
                .arg(dir.join("tapfwd.toml"))
                .env("RUST_BACKTRACE", "0")
                .output()
                .unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{how:?}: recover failed: {text}");
            if o.stderr.contains("is damaged") {
                assert!(text.contains("moved it aside to"), "{text}");
            }
            let out = tapfwd()
                .args(["check", "--config"])
                .arg(dir.join("tapfwd.toml"))
                .output()
                .unwrap();
            let checked = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && checked.contains("state store ok"),
                "{how:?}: after recover: {checked}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            recovered.push((o.stderr.contains("is damaged"), dir.clone()));
        }
    }
    eprintln!("outcomes: {tally:?}");

    // One recovered store (a damaged one if any was) runs to the end, every event exactly once.
    recovered.sort_by_key(|(damaged, _)| !*damaged);
    let (_, dir) = recovered
        .first()
        .expect("no damage made the daemon refuse the store");
    let config = dir.join("tapfwd.toml");
    let events = dir.join("events.ndjson");
    let mut child = spawn_run(&config, &dir.join("run-after.log"));
    let target = (chrono::Utc::now().timestamp() - 1800).div_euclid(60) * 60 - 300;
    let want: HashMap<String, usize> = TENANTS
        .iter()
        .map(|(id, p, _)| {
            (
                id.to_string(),
                expected(&sim.sim, p, first_start(&sim, p), target).len(),
            )
        })
        .collect();
    wait_for_tenant_lines(&events, want).await;
    sigterm(&mut child);
    let cps = checkpoints(&config);
    let lines = read_lines(&events);
    for (id, p, _) in TENANTS {
        let (upto, beyond) =
            assert_once_through_checkpoint(&lines, &sim, id, p, first_start(&sim, p), cps[id]);
        eprintln!("after recover of {}: {id}: {upto} events up to the checkpoint exactly once, {beyond} after it once", dir.display());
    }
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

/// One request to the admin endpoint while the store failed: when it was sent, and its status
/// code, or why there was none within [`ADMIN_PATIENCE`].
struct Probe {
    at: Instant,
    path: &'static str,
    answer: Result<u16, String>,
}

/// How long a request to the admin endpoint may take while the store fails.
const ADMIN_PATIENCE: Duration = Duration::from_secs(2);

/// How long before its exit the daemon may stop answering: the stop that the store failure
/// begins closes the admin endpoint, and the process ends at most a second or two later.
const CLOSING: Duration = Duration::from_secs(3);

/// Asks `/readyz` and `/status` at `admin` in turn, each bounded by [`ADMIN_PATIENCE`], until
/// `done` is cancelled.
async fn probe_admin(admin: String, done: tokio_util::sync::CancellationToken) -> Vec<Probe> {
    let client = reqwest::Client::builder()
        .timeout(ADMIN_PATIENCE)
        .build()
        .unwrap();
    let mut probes = Vec::new();
    for path in ["/readyz", "/status"].into_iter().cycle() {
        if done.is_cancelled() {
            break;
        }
        let at = Instant::now();
        let answer = match client.get(format!("http://{admin}{path}")).send().await {
            Ok(r) => Ok(r.status().as_u16()),
            Err(e) => Err(format!("{e:?}")),
        };
        probes.push(Probe { at, path, answer });
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    probes
}

/// Checks that the admin endpoint answered every request in time while the store failed (those
/// cut by the stop aside), and that the daemon exited non-zero within `store_failure_exit` (6 s)
/// and a small margin of the failure showing on `/readyz`. Says what it saw first.
fn assert_answered_and_exited(
    what: &str,
    probes: &[Probe],
    start: Instant,
    exit: std::process::ExitStatus,
    exited_at: Instant,
    log: &str,
) {
    let unanswered: Vec<String> = probes
        .iter()
        .filter(|p| p.answer.is_err() && p.at + CLOSING < exited_at)
        .map(|p| {
            format!(
                "{} at +{:?}: {}",
                p.path,
                p.at - start,
                p.answer.as_ref().unwrap_err()
            )
        })
        .collect();
    let shown = probes
        .iter()
        .find(|p| p.path == "/readyz" && p.answer == Ok(503))
        .map(|p| p.at);
    eprintln!(
        "{what}: {} admin requests, {} answered (each within {ADMIN_PATIENCE:?}), {} unanswered while the daemon ran; \
         failure shown on /readyz at +{:?}; exit {exit:?} {:?} after it (store_failure_exit 6s)",
        probes.len(),
        probes.iter().filter(|p| p.answer.is_ok()).count(),
        unanswered.len(),
        shown.map(|s| s - start),
        shown.map(|s| exited_at - s),
    );
    assert!(
        unanswered.is_empty(),
        "{what}: the admin endpoint did not answer within {ADMIN_PATIENCE:?}: {unanswered:#?}\n{log}"
    );
    let shown = shown.unwrap_or_else(|| panic!("{what}: /readyz never said 503:\n{log}"));
    assert!(!exit.success(), "{what}: exited {exit:?}:\n{log}");
    assert!(log.contains("store_failure_exit"), "{log}");
    let took = exited_at - shown;
    assert!(
        took < Duration::from_secs(6 + 4),
        "{what}: exited {took:?} after the failure showed (store_failure_exit 6s):\n{log}"
    );
}

/// Issue 21, item 7: with the disk under the state directory kept full, `/status` and `/readyz`
/// stopped answering for 100 s and the daemon did not exit after `store_failure_exit = 6s` (only
/// SIGTERM's forced exit ended it, 2 runs of 3). The admin endpoint must answer throughout (every
/// request within 2 s), and the daemon exit non-zero within `store_failure_exit` and a small
/// margin of the failure showing, the disk still full; started again with space back, it goes on
/// exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_state_disk_kept_full_admin_answers_and_the_failure_exit_holds() {
    let admin = free_port();
    let rig = disk_rig(39, admin, "6s").build().await;
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
    let done = tokio_util::sync::CancellationToken::new();
    let probes = tokio::spawn(probe_admin(admin.clone(), done.clone()));
    let (exit, exited_at) = tokio::task::spawn_blocking(move || {
        let exit = exit_within(
            &mut child,
            Duration::from_secs(100),
            "with the state disk kept full",
        );
        (exit, Instant::now())
    })
    .await
    .unwrap();
    done.cancel();
    let probes = probes.await.unwrap();
    let log = std::fs::read_to_string(scratch.path("run1.log")).unwrap();

    assert_answered_and_exited("disk kept full", &probes, filled_at, exit, exited_at, &log);

    std::fs::remove_file(&filler).unwrap();
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

/// Issue 21, item 7, the way it was measured: the store's calls hang (the test seam
/// `TAPFWD_TEST_STORE_STALL_FILE`: batches, flushes and reads block their threads, as sled's did
/// behind a flush that never returned on a full disk), with `store_failure_exit = "6s"`. The daemon
/// did not exit after `store_failure_exit`; only the forced exit after a stop signal ended it.
/// The admin endpoint must answer throughout (every request within 2 s), and the daemon exit
/// non-zero within `store_failure_exit` and a small margin of the failure showing, however held
/// its runtime is. A restart goes on exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_store_holding_the_runtime_admin_answers_and_the_failure_exit_holds() {
    let admin = free_port();
    let rig = disk_rig(40, admin, "6s").build().await;
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
    let stalled_at = Instant::now();
    let done = tokio_util::sync::CancellationToken::new();
    let probes = tokio::spawn(probe_admin(admin.clone(), done.clone()));
    let (exit, exited_at) = tokio::task::spawn_blocking(move || {
        let exit = exit_within(&mut child, Duration::from_secs(100), "with the store stuck");
        (exit, Instant::now())
    })
    .await
    .unwrap();
    done.cancel();
    let probes = probes.await.unwrap();
    let log = std::fs::read_to_string(scratch.path("run1.log")).unwrap();
    assert_answered_and_exited("store stuck", &probes, stalled_at, exit, exited_at, &log);
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
