//! Tests that run the real `tapfwd` binary: `kill -9` in the middle of a backlog, secrets kept
//! out of logs, status and the store, and `check` naming the bad key (`admin_token_env` included:
//! what `run` refuses, `check` refuses).

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Duration;

use support::daemon::{exit_within, file_len, sigterm, tapfwd, wait_for_tenant_lines, wait_until};
use support::rig::Rig;
use support::*;
use tapfwd::clock::Clock;

fn spawn_run(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    tapfwd()
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tapfwd runs")
}

fn status_json(config: &Path) -> serde_json::Value {
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
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every tenant's first requested window start, from the simulator's log.
fn first_starts(sim: &Sim, principals: &[&str]) -> HashMap<String, i64> {
    principals
        .iter()
        .map(|p| {
            let start = sim
                .sim
                .request_log(p)
                .iter()
                .filter_map(|r| parse_interval(&r.query))
                .map(|(s, _)| s)
                .min()
                .expect("the tenant made requests");
            (p.to_string(), start)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_backlog_leaves_every_event_exactly_once() {
    let rig = Rig::builder()
        .system_clock()
        .tenants(
            &[("k1", "p-k1", "s-k1"), ("k2", "p-k2", "s-k2"), ("k3", "p-k3", "s-k3")],
            1500,
        )
        .seed(21)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"8h\"\nbatch_events = 97\nconcurrency = 3")
        .build()
        .await;
    let (sim, scratch, events) = (rig.sim.clone(), &rig.scratch, rig.events.clone());
    let config = rig.write_config();

    // Kill at three growing sizes, each time in the middle of writing.
    let mut killed_at = Vec::new();
    for threshold in [400_000u64, 4_000_000, 12_000_000] {
        let mut child = spawn_run(&config, &scratch.path("run.log"));
        let events2 = events.clone();
        tokio::task::spawn_blocking(move || {
            wait_until("the file to grow", Duration::from_secs(120), || {
                file_len(&events2) >= threshold
            })
        })
        .await
        .unwrap();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        killed_at.push(file_len(&events));
    }

    // Run to completion, then stop cleanly and compare with the simulator's ground truth.
    let mut child = spawn_run(&config, &scratch.path("run.log"));
    let principals = ["p-k1", "p-k2", "p-k3"];
    let starts = first_starts(&sim, &principals);
    let target = (chrono::Utc::now().timestamp() - 1800).div_euclid(60) * 60 - 300;
    let want: HashMap<String, usize> = [("k1", "p-k1"), ("k2", "p-k2"), ("k3", "p-k3")]
        .iter()
        .map(|(t, p)| {
            let n = expected(&sim.sim, p, starts[*p], target).len();
            (t.to_string(), n)
        })
        .collect();
    wait_for_tenant_lines(&events, want).await;
    sigterm(&mut child);

    let status = status_json(&config);
    let lines = read_lines(&events);
    for (id, p) in [("k1", "p-k1"), ("k2", "p-k2"), ("k3", "p-k3")] {
        let t = status
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant"] == id)
            .unwrap();
        let cp =
            chrono::DateTime::parse_from_rfc3339(t["sinks"][0]["checkpoint"].as_str().unwrap())
                .unwrap()
                .timestamp();
        assert_exactly_once(&lines, id, &expected(&sim.sim, p, starts[p], cp));
    }
    assert!(killed_at.windows(2).all(|w| w[0] <= w[1]), "{killed_at:?}");
}

/// Lines of the file sink whose `tenant` is `tenant`, parsed.
fn lines_of(path: &Path, tenant: &str) -> Vec<serde_json::Value> {
    let data = std::fs::read(path).unwrap_or_default();
    data.split(|b| *b == b'\n')
        .filter(|l| l.starts_with(format!("{{\"tenant\":\"{tenant}\"").as_bytes()))
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_essentials_backlog_and_mid_people_snapshot_then_exactly_once() {
    let mut people = tenant("p-acme", "s-acme", 60);
    people.top_clickers = 450;
    let rig = Rig::builder()
        .system_clock()
        .tenant_from("acme", people)
        .tenant_from(
            "partner",
            tenant("p-partner", "s-partner", 3000).essentials("1000", &["4711", "4712"]),
        )
        .tenant_toml("partner", "product = \"essentials\"\ncustomer_data = true")
        .toml("[tenants.acme.people]\nfeeds = [\"top_clickers\"]\n")
        .seed(41)
        .poll("interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"8h\"\nbatch_events = 97\nconcurrency = 2")
        .build()
        .await;
    let (sim, scratch, events) = (rig.sim.clone(), &rig.scratch, rig.events.clone());
    // Page 2 of the first top-clickers snapshot hangs: the daemon is killed inside it.
    sim.sim.inject_people(
        "p-acme",
        [(
            2,
            tapfwd::simulate::Fault::SlowHeaders(Duration::from_secs(600)),
        )],
    );
    let config = rig.write_config();

    let top = |path: &Path| {
        lines_of(path, "acme")
            .into_iter()
            .filter(|v| v["eventType"] == "topClickers")
            .count()
    };
    for threshold in [1_000_000u64, 5_000_000] {
        let mut child = spawn_run(&config, &scratch.path("run.log"));
        let events2 = events.clone();
        tokio::task::spawn_blocking(move || {
            wait_until(
                "the backlog to grow and page 1 to land",
                Duration::from_secs(120),
                || file_len(&events2) >= threshold && top(&events2) >= 200,
            )
        })
        .await
        .unwrap();
        child.kill().unwrap(); // SIGKILL, with the snapshot's page 2 in flight the first time
        child.wait().unwrap();
    }

    let mut child = spawn_run(&config, &scratch.path("run.log"));
    let start = sim
        .sim
        .request_log("p-partner")
        .iter()
        .filter_map(|r| parse_interval(&r.query))
        .map(|(s, _)| s)
        .min()
        .unwrap();
    let target = (chrono::Utc::now().timestamp() - 1800).div_euclid(60) * 60 - 300;
    let want = expected(&sim.sim, "p-partner", start, target).len();
    let events2 = events.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(
            "the backlog and the snapshot",
            Duration::from_secs(300),
            || lines_of(&events2, "partner").len() >= want && top(&events2) >= 450,
        )
    })
    .await
    .unwrap();
    sigterm(&mut child);

    // The partner's events: every one up to its checkpoint exactly once, each with its customer.
    let status = status_json(&config);
    let partner = status
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "partner")
        .unwrap();
    let cp =
        chrono::DateTime::parse_from_rfc3339(partner["sinks"][0]["checkpoint"].as_str().unwrap())
            .unwrap()
            .timestamp();
    let truth = expected(&sim.sim, "p-partner", start, cp);
    let mut got: HashMap<String, usize> = HashMap::new();
    for v in lines_of(&events, "partner") {
        assert_eq!(v["customer"], v["event"]["customerEid"]);
        *got.entry(v["event"].to_string()).or_default() += 1;
    }
    assert!(got.values().all(|n| *n == 1), "no Essentials event twice");
    for (_, raw) in &truth {
        let v: serde_json::Value = serde_json::from_slice(raw).unwrap();
        assert!(
            got.contains_key(&v.to_string()),
            "an Essentials event is missing"
        );
    }
    assert_eq!(got.len(), truth.len());

    // The snapshot cut by the kill was completed: each top clicker once.
    let mut users: HashMap<String, usize> = HashMap::new();
    for v in lines_of(&events, "acme")
        .into_iter()
        .filter(|v| v["eventType"] == "topClickers")
    {
        *users
            .entry(v["event"]["identity"]["emails"][0].to_string())
            .or_default() += 1;
    }
    assert_eq!(users.len(), 450);
    assert!(users.values().all(|n| *n == 1), "no top clicker twice");

    // The offline status lists the People source with its own budget and snapshot checkpoint.
    let people = status
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == "acme:people.top_clickers")
        .expect("the People source in tapfwd status");
    assert_eq!(people["requests_limit"], 50);
    let used = people["requests_24h"].as_u64().unwrap();
    // Three pages, page 2 asked at least twice (the kill cut it), never more than the quota.
    assert!((4..=50).contains(&used), "people requests counted: {used}");
    assert_eq!(people["sinks"][0]["sink"], "archive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_status_or_the_store() {
    const GOOD: &str = "Xy7-good-SECRET-4b1d";
    const BAD: &str = "Qz9-wrong-SECRET-77e0";
    let sim = Sim::start(
        vec![
            tenant("p-good", GOOD, 600),
            tenant("p-bad", "the-real-one", 600),
        ],
        1,
        Clock::System,
    )
    .await;
    let scratch = Scratch::new();
    let events = scratch.path("events.ndjson");
    let config = scratch.path("tapfwd.toml");
    let secret_file = scratch.path("bad.secret");
    write_secret(&secret_file, &format!("{BAD}\n"));
    let text = format!(
        "state_dir = {state:?}\n[poll]\ninitial_lookback = \"2h\"\n[sinks.archive]\ntype = \"file\"\npath = {events:?}\n\
         [tenants.good]\nbase_url = \"{url}\"\nprincipal = \"p-good\"\nsecret_env = \"GOOD_TAP_SECRET\"\nsinks = [\"archive\"]\n\
         [tenants.bad]\nbase_url = \"{url}\"\nprincipal = \"p-bad\"\nsecret_file = {file:?}\nsinks = [\"archive\"]\n",
        state = scratch.path("state").display().to_string(),
        events = events.display().to_string(),
        url = sim.base_url(),
        file = secret_file.display().to_string(),
    );
    std::fs::write(&config, text).unwrap();
    let log_path = scratch.path("run.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = tapfwd()
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "trace")
        .env("GOOD_TAP_SECRET", GOOD)
        .stderr(log)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let log2 = log_path.clone();
    tokio::task::spawn_blocking(move || {
        wait_until("the bad tenant to fail", Duration::from_secs(60), || {
            std::fs::read_to_string(&log2)
                .unwrap_or_default()
                .contains("tenant failed")
        })
    })
    .await
    .unwrap();
    let events2 = events.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(
            "events from the good tenant",
            Duration::from_secs(60),
            || file_len(&events2) > 0,
        )
    })
    .await
    .unwrap();
    sigterm(&mut child);

    let logs = std::fs::read_to_string(&log_path).unwrap();
    assert!(logs.contains("401"), "the failure is reported: {logs}");
    let status = tapfwd()
        .args(["status", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let status_json = tapfwd()
        .args(["status", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let status_text = String::from_utf8_lossy(&status.stdout).to_string()
        + &String::from_utf8_lossy(&status_json.stdout);
    assert!(status_text.contains("failed"), "{status_text}");
    let mut store_bytes = Vec::new();
    for entry in walk(&scratch.path("state")) {
        store_bytes.extend(std::fs::read(entry).unwrap());
    }
    assert!(!store_bytes.is_empty());
    for secret in [GOOD, BAD] {
        assert!(!logs.contains(secret), "secret in logs");
        assert!(!status_text.contains(secret), "secret in status");
        assert!(
            !store_bytes
                .windows(secret.len())
                .any(|w| w == secret.as_bytes()),
            "secret in the store"
        );
        // Base64 of the Basic credentials must not leak either.
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("p-good:{secret}"));
        assert!(!logs.contains(&basic));
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_tries_each_tenants_credentials() {
    let rig = Rig::builder()
        .system_clock()
        .tenant("ok", "p-ok", "s-ok", 60)
        .sim_tenant(tenant("p-no", "s-no", 60))
        .config_tenant("no", "p-no", "not-the-secret")
        .seed(1)
        .build()
        .await;
    let sim = rig.sim.clone();
    let config = rig.write_config();
    let out = tokio::task::spawn_blocking(move || {
        tapfwd()
            .args(["check", "--connect", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "one tenant's credentials are wrong");
    assert!(
        stdout.contains("tenant ok: credentials accepted"),
        "{stdout}"
    );
    assert!(
        stdout.contains("tenant no: credentials rejected (401)"),
        "{stdout}"
    );
    assert!(!stdout.contains("not-the-secret"));
    assert_eq!(sim.sim.request_log("p-ok").len(), 1, "one cheap request");
}

/// A PoD token allows one session at a time, so `check --connect` does not open one (it would
/// take the running daemon's, or be refused by it): it says so instead of failing the tenant.
#[test]
fn check_connect_does_not_open_a_pod_session() {
    let scratch = Scratch::new();
    let config = scratch.path("tapfwd.toml");
    std::fs::write(
        &config,
        "state_dir = \"s\"\n[sinks.archive]\ntype = \"file\"\npath = \"e.ndjson\"\n[tenants.pod1]\nproduct = \"pod\"\ncluster_id = \"c\"\ntoken = \"t0ken-never-shown\"\nsinks = [\"archive\"]\n",
    )
    .unwrap();
    let out = tapfwd()
        .args(["check", "--connect", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("tenant pod1: no connection check for product pod"),
        "{stdout}"
    );
    assert!(!stdout.contains("t0ken-never-shown"));
}

#[test]
fn check_names_the_bad_key() {
    let scratch = Scratch::new();
    let good = "state_dir = \"s\"\n[sinks.archive]\ntype = \"file\"\npath = \"e.ndjson\"\n[tenants.acme]\nprincipal = \"p\"\nsecret = \"x\"\nsinks = [\"archive\"]\n";
    let cases: &[(&str, &str)] = &[
        (good, ""),
        (
            &good.replace("sinks = [\"archive\"]", "sinks = [\"splunk\"]"),
            "tenants.acme.sinks",
        ),
        (&good.replace("secret = \"x\"\n", ""), "tenants.acme.secret"),
        (
            &format!("{good}[poll]\nmax_window = \"2h\"\n"),
            "poll.max_window",
        ),
        (
            &format!("{good}[poll]\nmax_window = \"10s\"\n"),
            "poll.max_window",
        ),
        (&format!("{good}[poll]\nlag = \"thirty\"\n"), "poll.lag"),
        (
            &good.replace("type = \"file\"", "type = \"file\"\ncolour = \"blue\""),
            "colour",
        ),
        (
            &good.replace("type = \"file\"", "type = \"carrier-pigeon\""),
            "sinks.archive",
        ),
        ("state_dir = \"s\"\n[tenants.acme\n", "TOML"),
        // What users paste: a home-relative path, a TAP endpoint for a base URL, a syslog URL.
        (
            &good.replace("path = \"e.ndjson\"", "path = \"~/tap/e.ndjson\""),
            "sinks.archive",
        ),
        (
            &good.replace(
                "principal = \"p\"",
                "principal = \"p\"\nbase_url = \"https://tap-api-v2.proofpoint.com/v2/siem/clicks/permitted\"",
            ),
            "tenants.acme.base_url",
        ),
        (
            &good.replace(
                "principal = \"p\"",
                "principal = \"p\"\nbase_url = \"https://tap-api-v2.proofpoint.com/v2/siem/all\"",
            ),
            "",
        ),
        (
            &good.replace(
                "type = \"file\"\npath = \"e.ndjson\"",
                "type = \"syslog\"\naddress = \"udp://siem.example:514\"",
            ),
            "sinks.archive",
        ),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = scratch.path(&format!("c{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = tapfwd()
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if key.is_empty() {
            assert!(out.status.success(), "case {i}: {stderr}");
        } else {
            assert!(!out.status.success(), "case {i} should fail");
            assert!(
                stderr.to_lowercase().contains(&key.to_lowercase()),
                "case {i}: expected `{key}` in: {stderr}"
            );
        }
    }
    // A missing file is named too.
    let out = tapfwd()
        .args(["check", "--config", "/nonexistent/tapfwd.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/tapfwd.toml"));
}

/// Issue 20, item 11: what `check` (and `run`) do with a secret file or config file that is not
/// a small regular file, or that others may read or write. Self-contained (the binary, a
/// scratch directory, `mkfifo`), so that it runs unchanged against older builds, where the FIFO
/// blocked for ever and `/dev/zero` was read until memory ran out: each command here must end
/// within 30 seconds.
#[test]
fn secret_and_config_files_are_small_regular_files_only_their_owner_may_touch() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let chmod = |p: &Path, mode: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let config = |name: &str, tenant_secret: &str| {
        let p = path(name);
        std::fs::write(
            &p,
            format!(
                "state_dir = {:?}\n[sinks.archive]\ntype = \"file\"\npath = {:?}\n[tenants.acme]\nprincipal = \"p\"\n{tenant_secret}\nsinks = [\"archive\"]\n",
                path("state").display().to_string(),
                path("events.ndjson").display().to_string(),
            ),
        )
        .unwrap();
        chmod(&p, 0o600);
        p
    };
    // Runs `tapfwd CMD --config CONFIG` with `env`; `None` when it had not ended after 30 s.
    let run = |cmd: &str, config: &Path, env: &[(&str, &str)]| {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tapfwd"))
            .args([cmd, "--config"])
            .arg(config)
            .env_remove("TAPFWD_ALLOW_INSECURE_FILES")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let start = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        (status, stderr)
    };
    let refused = |cmd: &str, config: &Path, env: &[(&str, &str)], says: &[&str]| {
        let (status, stderr) = run(cmd, config, env);
        let status = status.unwrap_or_else(|| {
            panic!(
                "`tapfwd {cmd}` on {} still ran after 30 s",
                config.display()
            )
        });
        assert!(!status.success(), "{cmd} {}: passed", config.display());
        for s in says {
            assert!(
                stderr.contains(s),
                "{cmd} {}: `{s}` not in {stderr}",
                config.display()
            );
        }
        assert!(!stderr.contains("s3cr3t-acme"), "{stderr}");
    };
    let passes = |config: &Path, env: &[(&str, &str)]| {
        let (status, stderr) = run("check", config, env);
        assert!(
            status.is_some_and(|s| s.success()),
            "check {}: {stderr}",
            config.display()
        );
        stderr
    };

    // A secret file of the owner's alone passes.
    let good = path("good.secret");
    std::fs::write(&good, "s3cr3t-acme\n").unwrap();
    chmod(&good, 0o600);
    passes(
        &config("good.toml", &format!("secret_file = {good:?}")),
        &[],
    );

    // `/dev/zero` and a named pipe are refused at once, by `check` and by `run`.
    let zero = config("zero.toml", "secret_file = \"/dev/zero\"");
    refused(
        "check",
        &zero,
        &[],
        &["tenants.acme.secret_file", "not a regular file"],
    );
    let fifo = path("fifo.secret");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let piped = config("fifo.toml", &format!("secret_file = {fifo:?}"));
    for cmd in ["check", "run"] {
        refused(
            cmd,
            &piped,
            &[],
            &["tenants.acme.secret_file", "named pipe"],
        );
    }
    // So is a config file that is a named pipe.
    let fifo_config = path("fifo.toml.pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo_config)
        .status()
        .unwrap()
        .success());
    refused("check", &fifo_config, &[], &["named pipe"]);
    // And a secret file over 64 KiB.
    let big = path("big.secret");
    std::fs::write(&big, "x".repeat(65 * 1024)).unwrap();
    chmod(&big, 0o600);
    refused(
        "check",
        &config("big.toml", &format!("secret_file = {big:?}")),
        &[],
        &["tenants.acme.secret_file", "larger than 65536 bytes"],
    );

    // A secret file every user may read is refused, naming the fix and the override.
    chmod(&good, 0o644);
    let open_secret = config("open-secret.toml", &format!("secret_file = {good:?}"));
    refused(
        "check",
        &open_secret,
        &[],
        &[
            "tenants.acme.secret_file",
            "0644",
            "chmod 600",
            "TAPFWD_ALLOW_INSECURE_FILES=1",
        ],
    );
    passes(&open_secret, &[("TAPFWD_ALLOW_INSECURE_FILES", "1")]);

    // A config every user may write, holding an inline secret, is refused; the override lets
    // it through with a warning.
    let open_config = config("open.toml", "secret = \"s3cr3t-acme\"");
    chmod(&open_config, 0o666);
    refused(
        "check",
        &open_config,
        &[],
        &["open.toml", "0666", "every user may write it", "chmod go-w"],
    );
    let warned = passes(&open_config, &[("TAPFWD_ALLOW_INSECURE_FILES", "1")]);
    assert!(
        warned.contains("warning") && warned.contains("0666"),
        "{warned}"
    );

    // The same for a file of `tenants_dir`.
    std::fs::create_dir(path("tenants")).unwrap();
    let tenant_file = path("tenants").join("beta.toml");
    std::fs::write(
        &tenant_file,
        "principal = \"p-beta\"\nsecret = \"s3cr3t-acme\"\nsinks = [\"archive\"]\n",
    )
    .unwrap();
    chmod(&tenant_file, 0o666);
    let with_dir = config("dir.toml", "secret_env = \"ACME_SECRET\"");
    let text = std::fs::read_to_string(&with_dir).unwrap();
    std::fs::write(&with_dir, format!("tenants_dir = \"tenants\"\n{text}")).unwrap();
    refused(
        "check",
        &with_dir,
        &[("ACME_SECRET", "s3cr3t-acme")],
        &["beta.toml", "0666", "every user may write it"],
    );
    chmod(&tenant_file, 0o644);
    passes(&with_dir, &[("ACME_SECRET", "s3cr3t-acme")]);
}

/// `run` refuses to start when `admin_token_env` is empty, names a variable that is not set, or
/// one set to nothing; `check` refuses the same configs, naming the key, instead of calling them
/// good. With the variable set, both accept it and the token is not printed.
#[test]
fn check_refuses_an_admin_token_env_that_run_refuses() {
    let scratch = Scratch::new();
    let rest = "state_dir = \"s\"\nadmin_listen = \"127.0.0.1:0\"\n[sinks.archive]\ntype = \"file\"\npath = \"e.ndjson\"\n[tenants.acme]\nprincipal = \"p\"\nsecret = \"x\"\nsinks = [\"archive\"]\n";
    let cases = [
        ("unset", "TAPFWD_TEST_ADMIN_TOKEN_UNSET", "is not set"),
        ("empty value", "TAPFWD_TEST_ADMIN_TOKEN_EMPTY", "is empty"),
        (
            "empty name",
            "",
            "must be the name of an environment variable",
        ),
    ];
    let command = |args: &[&str], config: &Path| {
        let mut cmd = tapfwd();
        cmd.args(args)
            .arg(config)
            .current_dir(scratch.dir.path())
            .env("RUST_LOG", "off")
            .env_remove("TAPFWD_TEST_ADMIN_TOKEN_UNSET")
            .env("TAPFWD_TEST_ADMIN_TOKEN_EMPTY", "")
            .env("TAPFWD_TEST_ADMIN_TOKEN_SET", "adm1n-t0ken-never-shown")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    };
    for (i, (case, var, why)) in cases.iter().enumerate() {
        let config = scratch.path(&format!("c{i}.toml"));
        std::fs::write(&config, format!("admin_token_env = \"{var}\"\n{rest}")).unwrap();
        let out = command(&["check", "--config"], &config).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{case}: check accepted it");
        assert!(
            stderr.contains("config key `admin_token_env`") && stderr.contains(why),
            "{case}: {stderr}"
        );
        // `run` refuses it too (so `check` said what `run` will do).
        let mut run = command(&["run", "--config"], &config).spawn().unwrap();
        let exit = exit_within(&mut run, Duration::from_secs(60), case);
        assert!(!exit.success(), "{case}: run started");
    }
    let config = scratch.path("good.toml");
    std::fs::write(
        &config,
        format!("admin_token_env = \"TAPFWD_TEST_ADMIN_TOKEN_SET\"\n{rest}"),
    )
    .unwrap();
    let out = command(&["check", "--config"], &config).output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("config ok"), "{stdout}");
    assert!(!format!("{stdout}{stderr}").contains("adm1n-t0ken-never-shown"));
}

/// The README's first look (`tapfwd demo`, then `head -n 3 var/demo/events.ndjson`): the first
/// lines are TAP events, phishing messages and clicks of the TAP tenants; People snapshots and
/// the Essentials partner's events are in files of their own. The demo's output and the daemon's
/// log give the same counts, each meaning one thing: tenants (8: three TAP, the Essentials
/// partner, one TRAP, one Isolation, one CTR and one ITM) and sources (11: one per TAP,
/// Essentials, TRAP, Isolation and CTR tenant, the first TAP tenant's two People lists, the ITM
/// tenant's two reports). Before,
/// the first three lines were Very Attacked People users, and "4 tenant(s)" on the console was
/// `tenants=6` in the log.
#[test]
fn demo_shows_tap_events_first_and_one_count_of_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let out = tapfwd()
        .arg("demo")
        .arg("--dir")
        .arg(dir.path())
        .args(["--hours", "1", "--events-per-hour", "120"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let read = |name: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let siem = [
        "messagesBlocked",
        "messagesDelivered",
        "clicksBlocked",
        "clicksPermitted",
    ];
    let events = read("events.ndjson");
    assert!(events.len() >= 3, "{stdout}");
    for (i, e) in events.iter().enumerate() {
        let kind = e["eventType"].as_str().unwrap();
        assert!(siem.contains(&kind), "line {}: {e}", i + 1);
        assert!(
            e["tenant"].as_str().unwrap().starts_with("tenant-"),
            "line {}: {e}",
            i + 1
        );
    }
    // `head -n 3` shows a message or a click with its recipient.
    for e in &events[..3] {
        assert!(!e["event"]["recipient"].is_null(), "{e}");
    }
    let people = read("people.ndjson");
    assert!(!people.is_empty());
    assert!(people
        .iter()
        .all(|e| ["vap", "topClickers"].contains(&e["eventType"].as_str().unwrap())));
    for name in ["essentials.ndjson", "client-4711.ndjson"] {
        let lines = read(name);
        assert!(!lines.is_empty(), "{name}");
        assert!(
            lines.iter().all(|e| e["tenant"] == "essentials-partner"),
            "{name}"
        );
    }
    // The CTR and ITM tenants' events, each in a file of its own.
    let ctr = read("ctr.ndjson");
    assert!(!ctr.is_empty() && ctr.iter().all(|e| e["eventType"] == "ctrIncident"));
    let itm = read("itm.ndjson");
    assert!(itm.iter().any(|e| e["eventType"] == "itmAlert"));
    assert!(itm
        .iter()
        .all(|e| ["itmAlert", "itmAudit"].contains(&e["eventType"].as_str().unwrap())));
    // One count of tenants, one of sources, the same on the console and in the log.
    assert!(
        stdout.contains("8 tenants (3 TAP, 1 Essentials partner")
            && stdout.contains("1 TRAP, 1 Isolation, 1 CTR, 1 ITM")
            && stdout.contains("11 sources"),
        "{stdout}"
    );
    let running = stderr
        .lines()
        .find(|l| l.contains("tapfwd running"))
        .unwrap_or_else(|| panic!("no `tapfwd running` line:\n{stderr}"));
    assert!(
        running.contains("tenants=8") && running.contains("sources=11"),
        "{running}"
    );
    let count = |name: &str| read(name).len();
    assert!(
        stdout.contains(&format!(
            "events.ndjson holds {} events",
            count("events.ndjson")
        )),
        "{stdout}"
    );
    assert!(stdout.contains("head -n 3"), "{stdout}");
    // The TRAP and Isolation tenants, each in a file of its own.
    for (name, kind, tenant) in [
        ("trap.ndjson", "trapIncident", "acme-trap"),
        ("isolation.ndjson", "isolationUsage", "acme-isolation"),
    ] {
        let lines = read(name);
        assert!(!lines.is_empty(), "{name}");
        assert!(
            lines
                .iter()
                .all(|e| e["tenant"] == tenant && e["eventType"] == kind),
            "{name}"
        );
        assert!(
            stdout.contains(&format!("{name} holds {} events", lines.len())),
            "{stdout}"
        );
    }
}
