//! The set-up most black-box tests share, built once: a clock (manual, at [`t0`], unless a test
//! asks for the system's), a [`Sim`] serving the tenants on that clock, a [`Scratch`] directory,
//! and a config text pointing the daemon at both: the state under `state/`, the file sink
//! `archive` at `events.ndjson`, and one table per tenant.
//!
//! ```ignore
//! let (rig, running) = Rig::builder()
//!     .tenant("acme", "p-acme", "s-acme", 900)
//!     .seed(11)
//!     .poll("interval = \"5m\"\nlag = \"30m\"")
//!     .start()
//!     .await;
//! ```
//!
//! [`RigBuilder::build`] stops before the daemon, for a test that injects faults into the
//! simulator first, takes the App's metrics or reloader ([`Rig::app`]), or runs the real binary
//! on [`Rig::write_config`]; [`Rig::start`] starts the daemon again on the same state after a
//! stop. The config is TOML text, as a user writes it, so the tests do not depend on how the
//! config types are shaped.

use std::path::PathBuf;
use std::sync::Arc;

use tapfwd::clock::{Clock, ManualClock};
use tapfwd::simulate::SimTenant;
use tapfwd::{App, Config};

use super::{parse_config, t0, tenant, Running, Scratch, Sim};

/// One `[tenants.ID]` table of the config.
struct TenantTable {
    id: String,
    principal: String,
    secret: String,
    /// Its `sinks`, when not every sink of the rig.
    sinks: Option<Vec<String>>,
    /// More keys of the table, after `sinks`.
    extra: String,
}

/// What a [`Rig`] is made of; see the module header.
pub struct RigBuilder {
    seed: u64,
    system_clock: bool,
    api_ahead: Option<chrono::Duration>,
    sim_tenants: Vec<SimTenant>,
    tenants: Vec<TenantTable>,
    top: String,
    poll: String,
    archive: bool,
    events: String,
    sinks: Vec<(String, String)>,
    tail: String,
}

impl RigBuilder {
    /// The simulator's seed (default 1).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The lines of the `[poll]` table (default none).
    pub fn poll(mut self, lines: &str) -> Self {
        self.poll = lines.to_string();
        self
    }

    /// Top-level lines (and tables such as `[log]`) between `state_dir` and `[poll]`.
    pub fn top(mut self, lines: &str) -> Self {
        self.top.push_str(lines);
        if !self.top.ends_with('\n') {
            self.top.push('\n');
        }
        self
    }

    /// A simulator tenant `principal`/`secret` with `per_hour` events an hour, and the config's
    /// tenant `id` with the same credentials.
    pub fn tenant(self, id: &str, principal: &str, secret: &str, per_hour: u32) -> Self {
        self.tenant_from(id, tenant(principal, secret, per_hour))
    }

    /// [`RigBuilder::tenant`] for each `(id, principal, secret)`.
    pub fn tenants(mut self, tenants: &[(&str, &str, &str)], per_hour: u32) -> Self {
        for (id, principal, secret) in tenants {
            self = self.tenant(id, principal, secret, per_hour);
        }
        self
    }

    /// The simulator tenant `t` (Essentials, unlicensed, a small quota…) and the config's tenant
    /// `id` with its credentials.
    pub fn tenant_from(self, id: &str, t: SimTenant) -> Self {
        let (principal, secret) = (t.principal.clone(), t.secret.clone());
        self.sim_tenant(t).config_tenant(id, &principal, &secret)
    }

    /// A tenant of the simulator only.
    pub fn sim_tenant(mut self, t: SimTenant) -> Self {
        self.sim_tenants.push(t);
        self
    }

    /// A tenant of the config only (a wrong secret for a simulator tenant, say).
    pub fn config_tenant(mut self, id: &str, principal: &str, secret: &str) -> Self {
        self.tenants.push(TenantTable {
            id: id.to_string(),
            principal: principal.to_string(),
            secret: secret.to_string(),
            sinks: None,
            extra: String::new(),
        });
        self
    }

    /// More keys in tenant `id`'s table (`product`, `enrich`, `requests_per_day`…).
    pub fn tenant_toml(mut self, id: &str, lines: &str) -> Self {
        let t = self.table(id);
        t.extra.push_str(lines);
        if !t.extra.ends_with('\n') {
            t.extra.push('\n');
        }
        self
    }

    /// Tenant `id` delivers to `sinks` instead of every sink of the rig.
    pub fn tenant_sinks(mut self, id: &str, sinks: &[&str]) -> Self {
        self.table(id).sinks = Some(sinks.iter().map(|s| s.to_string()).collect());
        self
    }

    /// Another sink, `[sinks.NAME]` with the lines `body`, which every tenant delivers to (a sink
    /// that only some route to goes in [`RigBuilder::toml`]).
    pub fn sink(mut self, name: &str, body: &str) -> Self {
        self.sinks.push((name.to_string(), body.to_string()));
        self
    }

    /// No `archive` file sink.
    pub fn no_archive(mut self) -> Self {
        self.archive = false;
        self
    }

    /// The `archive` sink's file at `path` in the scratch directory (default `events.ndjson`).
    pub fn events_at(mut self, path: &str) -> Self {
        self.events = path.to_string();
        self
    }

    /// Text appended after the tenants' tables (their sub-tables, sinks only some route to…).
    pub fn toml(mut self, text: &str) -> Self {
        self.tail.push_str(text);
        self
    }

    /// The operating system's clock instead of a manual one (for the real binary).
    pub fn system_clock(mut self) -> Self {
        self.system_clock = true;
        self
    }

    /// The simulator on a manual clock of its own, `ahead` of the daemon's.
    pub fn api_clock_ahead(mut self, ahead: chrono::Duration) -> Self {
        self.api_ahead = Some(ahead);
        self
    }

    fn table(&mut self, id: &str) -> &mut TenantTable {
        self.tenants
            .iter_mut()
            .find(|t| t.id == id)
            .unwrap_or_else(|| panic!("the rig has no tenant {id}"))
    }

    /// The clock, the simulator, the scratch directory and the config, without a daemon.
    pub async fn build(self) -> Rig {
        let (clock, manual) = if self.system_clock {
            (Clock::System, None)
        } else {
            let (clock, manual) = Clock::manual(t0());
            (clock, Some(manual))
        };
        let (sim_clock, api_manual) = match self.api_ahead {
            Some(ahead) => {
                let (c, m) = Clock::manual(t0() + ahead);
                (c, Some(m))
            }
            None => (clock.clone(), None),
        };
        let sim = Sim::start(self.sim_tenants, self.seed, sim_clock).await;
        let scratch = Scratch::new();
        let events = scratch.path(&self.events);
        let mut text = format!(
            "state_dir = {:?}\n{}[poll]\n{}\n",
            scratch.path("state").display().to_string(),
            self.top,
            self.poll
        );
        let mut all_sinks = Vec::new();
        if self.archive {
            text.push_str(&format!(
                "[sinks.archive]\ntype = \"file\"\npath = {:?}\n",
                events.display().to_string()
            ));
            all_sinks.push("archive".to_string());
        }
        for (name, body) in &self.sinks {
            text.push_str(&format!("[sinks.{name}]\n{body}"));
            if !body.ends_with('\n') {
                text.push('\n');
            }
            all_sinks.push(name.clone());
        }
        for t in &self.tenants {
            let sinks: Vec<String> = t
                .sinks
                .as_ref()
                .unwrap_or(&all_sinks)
                .iter()
                .map(|s| format!("{s:?}"))
                .collect();
            text.push_str(&format!(
                "[tenants.{}]\nbase_url = \"{}\"\nprincipal = \"{}\"\nsecret = \"{}\"\nsinks = [{}]\n{}",
                t.id,
                sim.base_url(),
                t.principal,
                t.secret,
                sinks.join(", "),
                t.extra
            ));
        }
        text.push_str(&self.tail);
        Rig {
            clock,
            manual,
            api_manual,
            sim,
            scratch,
            events,
            text,
        }
    }

    /// [`RigBuilder::build`], then the daemon started on it.
    pub async fn start(self) -> (Rig, Running) {
        let rig = self.build().await;
        let running = rig.start().await;
        (rig, running)
    }
}

/// A clock, a simulator, a scratch directory and a config for them; see the module header.
pub struct Rig {
    /// The daemon's clock.
    pub clock: Clock,
    manual: Option<Arc<ManualClock>>,
    api_manual: Option<Arc<ManualClock>>,
    pub sim: Sim,
    pub scratch: Scratch,
    /// The `archive` sink's file.
    pub events: PathBuf,
    /// The config, as TOML text.
    pub text: String,
}

impl Rig {
    pub fn builder() -> RigBuilder {
        RigBuilder {
            seed: 1,
            system_clock: false,
            api_ahead: None,
            sim_tenants: Vec::new(),
            tenants: Vec::new(),
            top: String::new(),
            poll: String::new(),
            archive: true,
            events: "events.ndjson".to_string(),
            sinks: Vec::new(),
            tail: String::new(),
        }
    }

    /// The manual clock the daemon (and, unless it has its own, the simulator) reads.
    pub fn manual(&self) -> Arc<ManualClock> {
        self.manual
            .clone()
            .expect("a rig on the system clock has no manual clock")
    }

    /// The simulator's own clock ([`RigBuilder::api_clock_ahead`]).
    pub fn api_manual(&self) -> Arc<ManualClock> {
        self.api_manual
            .clone()
            .expect("the simulator shares the daemon's clock")
    }

    /// The config's `state_dir`.
    pub fn state(&self) -> PathBuf {
        self.scratch.path("state")
    }

    pub fn config(&self) -> Config {
        parse_config(&self.text)
    }

    /// The App built on the config, not yet running (run it with [`Running::run`]).
    pub async fn app(&self) -> App {
        App::build(self.config(), self.clock.clone())
            .await
            .expect("app builds")
    }

    /// The daemon started on the config (again, after a stop, on the same state).
    pub async fn start(&self) -> Running {
        Running::start(self.config(), self.clock.clone()).await
    }

    /// Writes the config to `tapfwd.toml` in the scratch directory, for the real binary.
    pub fn write_config(&self) -> PathBuf {
        let path = self.scratch.path("tapfwd.toml");
        std::fs::write(&path, &self.text).unwrap();
        path
    }
}
