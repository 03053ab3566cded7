//! A reload sees every change of a tenant's config, whatever its product: the changed tenant's
//! sources restart with the new settings, and an unchanged tenant beside it keeps running. One
//! test per product (TAP, Essentials, People, PoD), each on a change that the hand-kept list of
//! compared fields before `TenantConfig::fingerprint` did not see.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::*;
use tapfwd::app::{ReloadSummary, Reloader};
use tapfwd::clock::{Clock, ManualClock};
use tapfwd::simulate::pod::SimPodCluster;
use tapfwd::simulate::{SimConfig, Simulator};
use tapfwd::App;

const POLL: &str = "interval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"1h\"";

/// A daemon running `text` on a manual clock, with its reloader.
async fn start(text: &str, clock: Clock) -> (Running, Reloader) {
    let app = App::build(parse_config(text), clock)
        .await
        .expect("app builds");
    let reloader = app.reloader();
    (Running::run(app), reloader)
}

/// Reloads `text` and checks that exactly `changed` changed.
async fn reload(reloader: &Reloader, text: &str, changed: &[&str]) -> ReloadSummary {
    let summary = reloader.reload(parse_config(text)).await.unwrap();
    assert_eq!(summary.tenants_changed, changed, "{summary:?}");
    assert!(summary.tenants_added.is_empty(), "{summary:?}");
    assert!(summary.tenants_restarted.is_empty(), "{summary:?}");
    summary
}

/// The number of the file sink's lines of `kind` (the envelope's `eventType`).
fn lines_of(scratch: &Scratch, kind: &str) -> usize {
    let needle = format!("\"eventType\":\"{kind}\"");
    std::fs::read_to_string(scratch.path("events.ndjson"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(&needle))
        .count()
}

/// Windows fetched so far by `id`, to see that its poller was not replaced.
fn windows(running: &Running, id: &str) -> u64 {
    running.board.get(id).unwrap().windows_fetched
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_tenant_whose_secret_moves_to_a_file_restarts_and_its_neighbour_keeps_running() {
    let (clock, manual) = Clock::manual(t0());
    let sim = Sim::start(
        vec![tenant("p-a", "s-a", 60), tenant("p-b", "s-b", 60)],
        41,
        clock.clone(),
    )
    .await;
    let scratch = Scratch::new();
    let tenants = [("a", "p-a", "s-a"), ("b", "p-b", "s-b")];
    let text = config_text(
        &scratch.path("state"),
        &scratch.path("events.ndjson"),
        &sim.base_url(),
        &tenants,
        POLL,
    );
    let (running, reloader) = start(&text, clock).await;
    running
        .wait_for("a and b caught up", all_ok(&["a", "b"]))
        .await;
    let b_windows = windows(&running, "b");

    // The same secret, now read from a file: the setting changed, so a's sources restart.
    write_secret(&scratch.path("a.secret"), "s-a\n");
    let moved = text.replacen(
        "secret = \"s-a\"",
        &format!("secret_file = {:?}", scratch.path("a.secret")),
        1,
    );
    assert_ne!(moved, text);
    reload(&reloader, &moved, &["a"]).await;
    // Ten minutes of clock, a step at a time, each waited out: the restarted poller polls at its
    // phase of the 5-minute interval, with the secret now read from the file.
    step_clock(&running, &manual, 2, Duration::from_secs(60), 10).await;
    let a = running.board.get("a").unwrap();
    assert!(a.state == "ok" && a.windows_fetched > 0, "{a:?}");
    assert!(
        windows(&running, "b") >= b_windows,
        "b's poller kept its count"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_essentials_tenant_whose_secret_moves_to_the_environment_restarts() {
    let (clock, _manual) = Clock::manual(t0());
    let sim = Sim::start(
        vec![
            tenant("p-e", "s-e", 60).essentials("1000", &["4711"]),
            tenant("p-t", "s-t", 60),
        ],
        42,
        clock.clone(),
    )
    .await;
    let scratch = Scratch::new();
    let mut text = config_text(
        &scratch.path("state"),
        &scratch.path("events.ndjson"),
        &sim.base_url(),
        &[("t", "p-t", "s-t"), ("e", "p-e", "s-e")],
        POLL,
    );
    text.push_str("product = \"essentials\"\ncustomer_data = true\n");
    let (running, reloader) = start(&text, clock).await;
    running
        .wait_for("e and t caught up", all_ok(&["e", "t"]))
        .await;
    let t_windows = windows(&running, "t");

    let var = "TAPFWD_RELOAD_TEST_ESSENTIALS_SECRET";
    std::env::set_var(var, "s-e");
    let moved = text.replacen("secret = \"s-e\"", &format!("secret_env = \"{var}\""), 1);
    assert_ne!(moved, text);
    reload(&reloader, &moved, &["e"]).await;
    running.wait_for("e runs again", all_ok(&["e", "t"])).await;
    assert_eq!(
        windows(&running, "t"),
        t_windows,
        "t's poller was not replaced"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_people_feed_added_by_reload_is_snapshotted() {
    let (clock, _manual) = Clock::manual(t0());
    let sim = Sim::start(vec![tenant("p-acme", "s-acme", 60)], 43, clock.clone()).await;
    let scratch = Scratch::new();
    let mut text = config_text(
        &scratch.path("state"),
        &scratch.path("events.ndjson"),
        &sim.base_url(),
        &[("acme", "p-acme", "s-acme")],
        POLL,
    );
    text.push_str("[tenants.acme.people]\nfeeds = [\"vap\"]\n");
    let (running, reloader) = start(&text, clock).await;
    running
        .wait_for("the vap snapshot", all_ok(&["acme", "acme:people.vap"]))
        .await;
    assert_eq!(lines_of(&scratch, "topClickers"), 0);
    assert!(running.board.get("acme:people.top_clickers").is_none());

    let both = text.replace("feeds = [\"vap\"]", "feeds = [\"vap\", \"top_clickers\"]");
    reload(&reloader, &both, &["acme"]).await;
    running
        .wait_for(
            "the top clickers snapshot",
            all_ok(&["acme", "acme:people.vap", "acme:people.top_clickers"]),
        )
        .await;
    assert_eq!(lines_of(&scratch, "topClickers"), 450);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_log_type_added_by_reload_streams() {
    let (clock, manual) = Clock::manual(t0());
    let sim = Simulator::new(
        SimConfig {
            seed: 44,
            tenants: Vec::new(),
            pod: vec![SimPodCluster::new("cid-acme", "tok-acme", 600)],
            ..SimConfig::default()
        },
        clock.clone(),
    );
    let server = sim.bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let scratch = Scratch::new();
    let text = format!(
        "state_dir = {:?}\n[sinks.archive]\ntype = \"file\"\npath = {:?}\n[tenants.acme]\nproduct = \"pod\"\nbase_url = \"ws://{}\"\ncluster_id = \"cid-acme\"\ntoken = \"tok-acme\"\nsinks = [\"archive\"]\ntypes = [\"message\"]\nping_interval = \"30s\"\n",
        scratch.path("state").display().to_string(),
        scratch.path("events.ndjson").display().to_string(),
        server.addr
    );
    let (running, reloader) = start(&text, clock).await;
    wait_frames(&running, &manual, "acme:pod.message").await;
    assert!(running.board.get("acme:pod.maillog").is_none());

    let both = text.replace(
        "types = [\"message\"]",
        "types = [\"message\", \"maillog\"]",
    );
    reload(&reloader, &both, &["acme"]).await;
    wait_frames(&running, &manual, "acme:pod.maillog").await;
    wait_frames(&running, &manual, "acme:pod.message").await;
    running.stop().await;
    assert!(lines_of(&scratch, "podMaillog") > 0);
}

/// Waits until stream `id` is connected and has received a frame since it connected, moving the
/// clock a second at a time (the simulator sends 10 frames a second of clock time).
async fn wait_frames(running: &Running, manual: &Arc<ManualClock>, id: &str) {
    running
        .wait_for(&format!("{id} to connect"), |s| {
            s.iter()
                .any(|t| t.tenant == id && t.stream.as_ref().is_some_and(|st| st.connected))
        })
        .await;
    let before = running
        .board
        .get(id)
        .and_then(|t| t.stream)
        .and_then(|s| s.last_frame_ts);
    manual.advance(Duration::from_secs(1));
    running
        .wait_for(&format!("a frame on {id}"), |s| {
            s.iter().any(|t| {
                t.tenant == id
                    && t.stream
                        .as_ref()
                        .is_some_and(|st| st.last_frame_ts.is_some() && st.last_frame_ts != before)
            })
        })
        .await;
}
