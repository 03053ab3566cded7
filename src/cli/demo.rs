//! The commands that need no Proofpoint account: `simulate` serves the built-in TAP SIEM API
//! simulator ([`crate::simulate`]) until SIGTERM or SIGINT, and `demo` runs the real daemon
//! against an in-process simulator into a file sink under DIR. The demo writes the config it runs
//! with to DIR/demo.toml, so what it shows is the daemon as configured, not a special mode: the
//! same pipeline, the same invariants (every event of a window delivered once, checkpoints
//! committed only after the file sink has them).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::shutdown_on_signals;
use crate::clock::Clock;
use crate::config::{Config, LogFormat};
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
    let sim = Simulator::new(sim_config.clone(), Clock::System);
    sim.keep_request_log(false);
    let server = sim.bind("127.0.0.1:0".parse()?).await?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let events = dir.join("events.ndjson");
    let mut text = format!(
        "state_dir = {state:?}\n\n[poll]\ninterval = \"5m\"\nlag = \"30m\"\ninitial_lookback = \"{hours}h\"\n\n[sinks.archive]\ntype = \"file\"\npath = {events:?}\n",
        state = dir.join("state").display().to_string(),
        events = events.display().to_string(),
    );
    let client = dir.join("client-4711.ndjson");
    text.push_str(&format!(
        "\n[sinks.client-4711]\ntype = \"file\"\npath = {client:?}\n",
        client = client.display().to_string()
    ));
    for t in &sim_config.tenants {
        if t.essentials.is_some() {
            text.push_str(&format!(
                "\n[tenants.{p}]\nproduct = \"essentials\"\nbase_url = \"http://{addr}\"\nprincipal = \"{p}\"\nsecret = \"{s}\"\ncustomer_data = true\nsinks = [\"archive\"]\n[tenants.{p}.customer_sinks]\n\"4711\" = [\"client-4711\"]\n",
                p = t.principal,
                s = t.secret,
                addr = server.addr
            ));
            continue;
        }
        text.push_str(&format!(
            "\n[tenants.{p}]\nbase_url = \"http://{addr}\"\nprincipal = \"{p}\"\nsecret = \"{s}\"\nsinks = [\"archive\"]\n",
            p = t.principal,
            s = t.secret,
            addr = server.addr
        ));
        if t.principal == sim_config.tenants[0].principal {
            // The first TAP tenant also snapshots its People lists.
            text.push_str(&format!("[tenants.{}.people]\n", t.principal));
        }
    }
    let config = Config::from_toml_with_env(&text, std::iter::empty())
        .map_err(|e| anyhow::anyhow!("demo config: {e}"))?;
    std::fs::write(dir.join("demo.toml"), &text)?;
    let app = App::build(config, Clock::System).await?;
    let board = app.status();
    let shutdown = shutdown_on_signals();
    println!(
        "demo: simulator on http://{}, {} tenant(s); events go to {}",
        server.addr,
        sim_config.tenants.len(),
        events.display()
    );
    if !follow {
        let stop = shutdown.clone();
        // Every tenant, and the first tenant's two People sources.
        let n = sim_config.tenants.len() + 2;
        tokio::spawn(async move {
            board
                .wait_until(|snap| snap.len() == n && snap.iter().all(|t| t.state == "ok"))
                .await;
            stop.cancel();
        });
    }
    app.run(shutdown).await?;
    let lines = count_lines(&events).unwrap_or(0);
    println!(
        "demo: {} holds {lines} events; look with: head -n 3 {}",
        events.display(),
        events.display()
    );
    println!(
        "demo: the Essentials partner's client 4711 went to {} ({} events)",
        client.display(),
        count_lines(&client).unwrap_or(0)
    );
    // The simulator serves until `server` goes out of scope here.
    let _ = server.addr;
    Ok(())
}

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
