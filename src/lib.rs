//! tapfwd collects Proofpoint TAP SIEM and Essentials events, People snapshots and the PoD log
//! stream for many client organisations (tenants) at once and ships them, complete and without duplicates, to files,
//! syslog, Kafka and HTTP SIEMs.
//!
//! A [`scheduler`] steps each tenant's [`sources`]. A source reads one Proofpoint API and produces
//! raw events ([`event`]) with the position they take each sink to: the TAP SIEM source
//! ([`sources::tap_siem`]) asks the API ([`api::siem`], in [`api`], the wire layer of every
//! Proofpoint client and its one error model) for the next window after the tenant's
//! checkpoints and splits the response into raw events as it streams in ([`api::split`]);
//! Essentials tenants use the same source with their own rules, and People snapshots
//! ([`sources::people`]) are taken whole on a schedule. The PoD log stream
//! ([`sources::pod`]) is read continuously over a WebSocket per tenant and log type, its gaps
//! closed from the stream's archive mode. The
//! delivery [`engine`], shared by every source, drops the events each sink already has, hands the
//! rest to that sink ([`sinks`]), and moves the sink's position only when the sink has them. The
//! [`store`] (sled) keeps positions, dedupe keys and request budgets.
//!
//! Where each invariant is kept: 1 and 2 in [`engine`] and [`store`] (and each sink's meaning of
//! "delivered", in its module header); 3 in [`api::window`] and [`sources::tap_siem`] (for PoD,
//! one session per token and type in [`api::pod`], the archive horizon in [`sources::pod`]); 4 in
//! [`budget`]; 5 in [`api::split`], [`event`] and the sinks' envelopes; 6 in [`scheduler`] (one
//! permit per step) and the sources' own backoff; 7 in [`secret`], the config types and [`api`].
//!
//! # Invariants
//! 1. **Nothing lost.** A checkpoint passes the end of a window only after every event of that
//!    window was durably accepted by the sink the checkpoint belongs to. Failures hold the
//!    checkpoint; the API keeps 7 days, so the source is the replay buffer.
//! 2. **Nothing twice.** Events are identified by a hash of their raw bytes (never by GUID). Keys
//!    are remembered for `poll.dedupe_horizon`, longer than any overlap the daemon produces (and
//!    than the late sweep's age), and are committed with the delivery they record. A sink that is
//!    down causes no duplicates in the sinks that are up.
//! 3. **Windows the API accepts.** `30 s ≤ end − start ≤ 1 h`, `end ≤ now − lag`,
//!    `start ≥ now − 7 d` with a margin. An older checkpoint is clamped and the gap reported.
//! 4. **Within budget.** Requests are counted per tenant in a rolling 24 h log in the store;
//!    steady polling is reserved first, then the late sweep, then backlog; a 429 waits for budget.
//! 5. **Raw in, raw out.** Events are forwarded as the API sent them; metadata goes beside them.
//! 6. **Tenants are isolated.** One tenant's failures never stop or delay another beyond the
//!    shared concurrency limit.
//! 7. **Secrets stay secret.** Never in logs, status, metrics, the store or error messages.

pub mod admin;
pub mod api;
pub mod app;
pub mod backoff;
pub mod budget;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dedupe;
pub mod engine;
pub mod enrich;
pub mod event;
pub mod files;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod scheduler;
pub mod secret;
pub mod shard;
pub mod simulate;
pub mod sinks;
pub mod sources;
pub mod status;
pub mod store;
pub mod urldefense;

pub use app::App;
pub use config::Config;
