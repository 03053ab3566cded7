//! The commands that need no Proofpoint account: `simulate` serves the built-in TAP SIEM API
//! simulator ([`crate::simulate`]) until SIGTERM or SIGINT, and `demo` runs the real daemon
//! against an in-process simulator into file sinks under DIR, one per product (DIR/events.ndjson
//! holds the TAP tenants' events, so its first lines are phishing messages and clicks). The demo writes the config it runs
//! with to DIR/demo.toml, so what it shows is the daemon as configured, not a special mode: the
//! same pipeline, the same invariants (every event of a window delivered once, checkpoints
//! committed only after the file sink has them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::shutdown_on_signals;
use crate::clock::Clock;
use crate::config::{Config, LogFormat};
use crate::simulate::isolation::SimIsolation;
use crate::simulate::trap::SimTrap;
use crate::simulate::{SimConfig, Simulator};
use crate::App;

pub(super) async fn simulate(
    listen: SocketAddr,
    config: Option<PathBuf>,
    tenants: usize,
    events_per_hour: u32,
    seed: u64,
) -> anyhow::Result<()> {
    crate::logging::init(LogFormat::Text);
    let cfg = match config {
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml_sim_config(&text)
                .with_context(|| format!("simulator config {}", path.display()))?
        }
        None => SimConfig::generated(tenants, events_per_hour, seed),
    };
    let n = cfg.tenants.len();
    let sim = Simulator::new(cfg, Clock::System);
    // Nobody reads the request log here, and it would grow with every request for as long as
    // the simulator serves.
    sim.keep_request_log(false);
    let server = sim
        .bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    println!(
        "TAP simulator listening on http://{} with {n} tenant(s)",
        server.addr
    );
    shutdown_on_signals().cancelled().await;
    Ok(())
}

fn toml_sim_config(text: &str) -> anyhow::Result<SimConfig> {
    let built = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()?;
    serde_path_to_error::deserialize(built)
        .map_err(|e| anyhow::anyhow!("key `{}`: {}", e.path(), e.inner()))
}

pub(super) async fn demo(
    dir: &Path,
    tenants: usize,
    events_per_hour: u32,
    hours: u64,
    follow: bool,
) -> anyhow::Result<()> {
    crate::logging::init(LogFormat::Text);
    let mut sim_config = SimConfig::generated(tenants, events_per_hour, 7);
    // An MSP's Essentials partner key beside the TAP tenants: its own organisation and three
    // client organisations, one of them routed to a sink of its own.
    sim_config.tenants.push(
        crate::simulate::SimTenant::new("essentials-partner", "partner-secret", events_per_hour)
            .essentials("1000", &["4711", "4712", "4713"]),
    );
    // One tenant of each OAuth2 product: CTR incidents and two ITM reports.
    sim_config.ctr.push(crate::simulate::ctr::SimCtr::new(
        CTR_CLIENT,
        "ctr-demo-secret",
        6,
    ));
    sim_config.itm.push(crate::simulate::itm::SimItm::new(
        ITM_CLIENT,
        "itm-demo-secret",
        events_per_hour.clamp(1, 600),
    ));
    let sim = Simulator::new(sim_config.clone(), Clock::System);
    sim.keep_request_log(false);
    // A TRAP server's incidents and an Isolation account's usage data, one tenant each.
    sim.serve_trap(SimTrap::new(DEMO_TRAP_KEY, 12));
    sim.serve_isolation(SimIsolation::new(DEMO_ISOLATION_KEY, events_per_hour));
    let server = sim.bind("127.0.0.1:0".parse()?).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let files = DemoFiles::in_dir(dir);
    let text = demo_config(&sim_config, &server.addr.to_string(), dir, &files, hours);
    let config = Config::from_toml_with_env(&text, std::iter::empty())
        .map_err(|e| anyhow::anyhow!("demo config: {e}"))?;
    std::fs::write(dir.join("demo.toml"), &text)?;
    let app = App::build(config, Clock::System).await?;
    let board = app.status();
    let shutdown = shutdown_on_signals();
    // Each tenant's own source (the TRAP and Isolation tenants' too), and the first TAP
    // tenant's two People lists.
    let people = if tenants > 0 { 2 } else { 0 };
    // TRAP, Isolation, CTR: one source each; ITM: one per report (alert, audit).
    let sources = sim_config.tenants.len() + 2 + people + 1 + ITM_TYPES;
    println!(
        "demo: simulator on http://{}; {} tenants ({tenants} TAP, 1 Essentials partner with 3 client organisations, 1 TRAP, 1 Isolation, 1 CTR, 1 ITM), {sources} sources (each TAP, Essentials, TRAP, Isolation and CTR tenant's events, the first TAP tenant's {people} People lists, the ITM tenant's {ITM_TYPES} reports)",
        server.addr,
        sim_config.tenants.len() + 4,
    );
    if !follow {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            board
                .wait_until(|snap| snap.len() == sources && snap.iter().all(|t| t.state == "ok"))
                .await;
            stop.cancel();
        });
    }
    app.run(shutdown).await?;
    for (path, what) in [
        (
            &files.events,
            "the TAP tenants' phishing messages and clicks",
        ),
        (&files.people, "the first TAP tenant's People snapshots"),
        (
            &files.essentials,
            "the Essentials partner's, for itself and clients 4712, 4713",
        ),
        (&files.client, "the Essentials partner's client 4711"),
        (&files.trap, "the TRAP tenant's incidents"),
        (&files.isolation, "the Isolation tenant's usage records"),
        (&files.ctr, "the CTR tenant's incidents"),
        (&files.itm, "the ITM tenant's alert and audit records"),
    ] {
        println!(
            "demo: {} holds {} events: {what}",
            path.display(),
            count_lines(path).unwrap_or(0)
        );
    }
    println!("demo: look with: head -n 3 {}", files.events.display());
    // The simulator serves until `server` goes out of scope here.
    let _ = server.addr;
    Ok(())
}

/// Where the demo writes: a file per product, so that the first lines of `events` are TAP
/// events, whichever source delivers first.
struct DemoFiles {
    /// The TAP tenants' SIEM events.
    events: PathBuf,
    /// The first TAP tenant's People snapshots (Very Attacked People, top clickers).
    people: PathBuf,
    /// The Essentials partner's own events and those of its clients but 4711.
    essentials: PathBuf,
    /// The Essentials partner's client 4711, routed to a sink of its own.
    client: PathBuf,
    /// The TRAP tenant's incidents.
    trap: PathBuf,
    /// The Isolation tenant's usage records.
    isolation: PathBuf,
    /// The CTR tenant's incidents.
    ctr: PathBuf,
    /// The ITM tenant's report records.
    itm: PathBuf,
}

/// The demo's CTR and ITM OAuth2 clients.
const CTR_CLIENT: &str = "demo-ctr-client";
const ITM_CLIENT: &str = "demo-itm-client";
/// The ITM reports the demo reads.
const ITM_TYPES: usize = 2;

impl DemoFiles {
    fn in_dir(dir: &Path) -> DemoFiles {
        DemoFiles {
            events: dir.join("events.ndjson"),
            people: dir.join("people.ndjson"),
            essentials: dir.join("essentials.ndjson"),
            client: dir.join("client-4711.ndjson"),
            trap: dir.join("trap.ndjson"),
            isolation: dir.join("isolation.ndjson"),
            ctr: dir.join("ctr.ndjson"),
            itm: dir.join("itm.ndjson"),
        }
    }
}

/// The config the demo runs with (also written to DIR/demo.toml): one file sink per product, the
/// simulator's tenants as TAP tenants and one Essentials partner.
fn demo_config(
    sim_config: &SimConfig,
    addr: &str,
    dir: &Path,
    files: &DemoFiles,
    hours: u64,
) -> String {
    let path = |p: &Path| format!("{:?}", p.display().to_string());
    let mut text = format!(
        "state_dir = {state}\n\n[poll]\ninterval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"{hours}h\"\n",
        state = path(&dir.join("state")),
    );
    for (name, file) in [
        ("archive", &files.events),
        ("people", &files.people),
        ("essentials", &files.essentials),
        ("client-4711", &files.client),
        ("trap", &files.trap),
        ("isolation", &files.isolation),
        ("ctr", &files.ctr),
        ("itm", &files.itm),
    ] {
        text.push_str(&format!(
            "\n[sinks.{name}]\ntype = \"file\"\npath = {}\n",
            path(file)
        ));
    }
    text.push_str(&format!(
        "\n[tenants.acme-ctr]\nproduct = \"ctr\"\nbase_url = \"http://{addr}\"\ntoken_url = \"http://{addr}/v1/token\"\nclient_id = \"{CTR_CLIENT}\"\nclient_secret = \"ctr-demo-secret\"\ninitial_lookback = \"{hours}h\"\nsinks = [\"ctr\"]\n"
    ));
    text.push_str(&format!(
        "\n[tenants.acme-itm]\nproduct = \"itm\"\nbase_url = \"http://{addr}\"\nclient_id = \"{ITM_CLIENT}\"\nclient_secret = \"itm-demo-secret\"\ntypes = [\"alert\", \"audit\"]\ninitial_lookback = \"{hours}h\"\nsinks = [\"itm\"]\n"
    ));
    let first_tap = sim_config.tenants.iter().find(|t| t.essentials.is_none());
    for t in &sim_config.tenants {
        let (p, s) = (&t.principal, &t.secret);
        if t.essentials.is_some() {
            text.push_str(&format!(
                "\n[tenants.{p}]\nproduct = \"essentials\"\nbase_url = \"http://{addr}\"\nprincipal = \"{p}\"\nsecret = \"{s}\"\ncustomer_data = true\nsinks = [\"essentials\"]\n[tenants.{p}.customer_sinks]\n\"4711\" = [\"client-4711\"]\n"
            ));
            continue;
        }
        text.push_str(&format!(
            "\n[tenants.{p}]\nbase_url = \"http://{addr}\"\nprincipal = \"{p}\"\nsecret = \"{s}\"\nsinks = [\"archive\"]\n"
        ));
        if first_tap.is_some_and(|f| f.principal == *p) {
            // The first TAP tenant also snapshots its People lists, into their own file.
            text.push_str(&format!("[tenants.{p}.people]\nsinks = [\"people\"]\n"));
        }
    }
    text.push_str(&format!(
        "\n[tenants.acme-trap]\nproduct = \"trap\"\nbase_url = \"http://{addr}\"\napi_key = \"{DEMO_TRAP_KEY}\"\nsinks = [\"trap\"]\n\
         \n[tenants.acme-isolation]\nproduct = \"isolation\"\nbase_url = \"http://{addr}\"\napi_key = \"{DEMO_ISOLATION_KEY}\"\nsinks = [\"isolation\"]\n"
    ));
    text
}

/// The demo TRAP server's API key.
const DEMO_TRAP_KEY: &str = "demo-trap-key";
/// The demo Isolation account's API key.
const DEMO_ISOLATION_KEY: &str = "demo-isolation-key";

/// Lines in the file at `path`, read in pieces: the events file of a long demo is gigabytes,
/// and reading it whole to count it was what made the in-process demo's memory grow with the
/// data volume (7.27 GB peak for 4.3 M events).
pub(super) fn count_lines(path: &Path) -> std::io::Result<u64> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut lines = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(lines);
        }
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lines_are_counted_across_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        let line = format!("{{\"event\":\"{}\"}}\n", "x".repeat(1000));
        std::fs::write(&path, line.repeat(200)).unwrap();
        assert_eq!(super::count_lines(&path).unwrap(), 200);
        assert!(super::count_lines(&dir.path().join("missing")).is_err());
    }
}
