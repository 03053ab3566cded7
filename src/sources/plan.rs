//! The plan of a tenant's sources: which sources a tenant's config runs, the one spelling of
//! their ids, how each is built ([`for_tenant`]) and how each shows in `tapfwd status` while the
//! daemon is stopped ([`SourceId::offline_status`]). The daemon, the status board and the offline
//! commands all read it from here; a new source adds its arms in this file.
//!
//! An id is the tenant id for the tenant's main polled source (TAP or Essentials SIEM), and
//! `TENANT:people.FEED` or `TENANT:pod.TYPE` for the others; it is the scheduler's key, the
//! status board's row, and the stream prefix of the source's positions in the store.

use std::fmt;
use std::sync::Arc;

use secrecy::SecretString;

use super::{ctr, itm, people, pod, tap_siem, Context, Source};
use crate::api::people::Feed;
use crate::clock;
use crate::config::isolation::IsolationTenant;
use crate::config::trap::TrapTenant;
use crate::config::{
    CtrTenant, ItmTenant, ItmType, PeopleConfig, PodTenant, PodType, TenantConfig,
};
use crate::sinks::Sink;
use crate::status::{SinkStatus, TenantState, TenantStatus};
use crate::store::{Store, StoreError, StreamState, TenantRecord};

/// What a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// The SIEM API's windows (TAP or Essentials, by the tenant's product).
    Siem,
    /// One People list's snapshots (TAP).
    People(Feed),
    /// One PoD log type's stream.
    Pod(PodType),
    /// TRAP incidents, in time slices.
    Trap,
    /// Isolation usage data, in time slices.
    Isolation,
    /// CTR incidents.
    Ctr,
    /// One ITM record type's report.
    Itm(ItmType),
}

/// One source of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceId {
    pub tenant: String,
    pub kind: SourceKind,
}

impl SourceId {
    pub fn new(tenant: &str, kind: SourceKind) -> SourceId {
        SourceId {
            tenant: tenant.to_string(),
            kind,
        }
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            SourceKind::Siem | SourceKind::Trap | SourceKind::Isolation => {
                write!(f, "{}", self.tenant)
            }
            SourceKind::People(feed) => write!(f, "{}:people.{}", self.tenant, feed.as_str()),
            SourceKind::Pod(kind) => write!(f, "{}:pod.{}", self.tenant, kind.as_str()),
            SourceKind::Ctr => write!(f, "{}", self.tenant),
            SourceKind::Itm(kind) => write!(f, "{}:itm.{}", self.tenant, kind.as_str()),
        }
    }
}

/// The sources tenant `tenant` runs, in the order they are started and shown.
pub fn plan(tenant: &str, config: &TenantConfig) -> Vec<SourceId> {
    planned(config)
        .into_iter()
        .map(|p| SourceId::new(tenant, p.kind()))
        .collect()
}

/// One planned source with the settings it runs on.
pub enum Planned<'a> {
    /// The SIEM windows of a TAP or Essentials tenant.
    Siem,
    People(Feed, &'a PeopleConfig),
    Pod(PodType, &'a PodTenant),
    Trap(&'a TrapTenant),
    Isolation(&'a IsolationTenant),
    Ctr(&'a CtrTenant),
    Itm(ItmType, &'a ItmTenant),
}

impl Planned<'_> {
    pub fn kind(&self) -> SourceKind {
        match self {
            Planned::Siem => SourceKind::Siem,
            Planned::People(feed, _) => SourceKind::People(*feed),
            Planned::Pod(kind, _) => SourceKind::Pod(*kind),
            Planned::Trap(_) => SourceKind::Trap,
            Planned::Isolation(_) => SourceKind::Isolation,
            Planned::Ctr(_) => SourceKind::Ctr,
            Planned::Itm(kind, _) => SourceKind::Itm(*kind),
        }
    }
}

/// What [`plan`] is made of: each source with its settings, for [`super::for_tenant`].
pub fn planned(config: &TenantConfig) -> Vec<Planned<'_>> {
    match config {
        TenantConfig::Tap(t) => std::iter::once(Planned::Siem)
            .chain(
                t.people
                    .iter()
                    .flat_map(|p| p.feeds.iter().map(move |f| Planned::People(*f, p))),
            )
            .collect(),
        TenantConfig::Essentials(_) => vec![Planned::Siem],
        TenantConfig::Pod(t) => t.types.iter().map(|k| Planned::Pod(*k, t)).collect(),
        TenantConfig::Trap(t) => vec![Planned::Trap(t)],
        TenantConfig::Isolation(t) => vec![Planned::Isolation(t)],
        TenantConfig::Ctr(t) => vec![Planned::Ctr(t)],
        TenantConfig::Itm(t) => t.types.iter().map(|k| Planned::Itm(*k, t)).collect(),
    }
}

/// Where the positions `tapfwd rewind` moves for tenant `id` are kept: the tenant id for its
/// main source (TAP, Essentials, CTR, TRAP, Isolation), each report's source id for ITM.
pub fn rewind_scopes(id: &str, config: &TenantConfig) -> Vec<String> {
    match config {
        TenantConfig::Itm(_) => plan(id, config).iter().map(ToString::to_string).collect(),
        _ => vec![id.to_string()],
    }
}

impl SourceId {
    /// The source's row in `tapfwd status` while the daemon is stopped: its positions from the
    /// store (`streams`, every stream of the store), its budget and last error, at `now`; `lag`
    /// is `poll.lag`, which SIEM positions trail by.
    pub fn offline_status(
        &self,
        tenant: &TenantConfig,
        record: &TenantRecord,
        store: &Store,
        streams: &[(String, String, StreamState)],
        now: i64,
        lag: i64,
    ) -> Result<TenantStatus, StoreError> {
        let key = self.to_string();
        let stream_sinks = |lag: i64| -> Vec<SinkStatus> {
            streams
                .iter()
                .filter(|(t, _, _)| *t == key)
                .map(|(_, s, st)| SinkStatus::from_stream(s, st, now, lag))
                .collect()
        };
        let state = |failed: bool, sinks: &[SinkStatus]| {
            if failed {
                TenantState::Failed
            } else if sinks.is_empty() {
                TenantState::NotStarted
            } else {
                TenantState::Stopped
            }
        };
        let used = |budget: &str| -> Result<u32, StoreError> {
            Ok(store
                .budget(budget)?
                .map(|mut b| b.used(now))
                .unwrap_or_default())
        };
        let row = match self.kind {
            SourceKind::Siem => {
                // Only the sinks the tenant still sends to: a removed sink's stream stays in
                // the store.
                let all = tenant.all_sinks();
                let sinks: Vec<SinkStatus> = stream_sinks(lag)
                    .into_iter()
                    .filter(|s| all.contains(&s.sink))
                    .collect();
                TenantStatus {
                    state: state(record.failed, &sinks),
                    last_error: record.last_error.clone(),
                    last_error_at: record.last_error_at.map(clock::rfc3339),
                    requests_24h: used(&self.tenant)?,
                    requests_limit: tenant.requests_per_day().unwrap_or_default(),
                    sinks,
                    ..Default::default()
                }
            }
            // People lists have budgets of their own; positions are snapshot periods.
            SourceKind::People(_) => {
                let sinks = stream_sinks(0);
                TenantStatus {
                    state: state(false, &sinks),
                    requests_24h: used(&key)?,
                    requests_limit: crate::api::people::REQUESTS_PER_DAY,
                    sinks,
                    ..Default::default()
                }
            }
            // Time slices: positions are slice ends, no request budget.
            SourceKind::Trap | SourceKind::Isolation => {
                let sinks = stream_sinks(0);
                TenantStatus {
                    state: state(record.failed, &sinks),
                    last_error: record.last_error.clone(),
                    last_error_at: record.last_error_at.map(clock::rfc3339),
                    sinks,
                    ..Default::default()
                }
            }
            // PoD positions are frame times, CTR's and ITM's instants and cursors: no lag applies.
            SourceKind::Pod(_) | SourceKind::Ctr | SourceKind::Itm(_) => {
                let sinks = stream_sinks(0);
                TenantStatus {
                    state: state(record.failed, &sinks),
                    last_error: record.last_error.clone(),
                    sinks,
                    ..Default::default()
                }
            }
        };
        Ok(TenantStatus { tenant: key, ..row })
    }
}

/// One request that tells whether the tenant's API takes its credentials (`check --connect`),
/// for the products probed here; `None` for the others (TAP and Essentials are probed by the SIEM
/// client, and a PoD probe would take the running daemon's one session).
pub async fn probe(
    config: &TenantConfig,
    secret: &SecretString,
    now: i64,
    timeout: std::time::Duration,
) -> Option<Result<(), crate::api::ApiError>> {
    match config {
        TenantConfig::Trap(t) => Some(super::trap::probe(t, secret, now).await),
        TenantConfig::Isolation(t) => Some(super::isolation::probe(t, secret, now).await),
        TenantConfig::Ctr(t) => Some(ctr::probe(t, secret, timeout).await),
        TenantConfig::Itm(t) => Some(itm::probe(t, secret, timeout).await),
        TenantConfig::Tap(_) | TenantConfig::Essentials(_) | TenantConfig::Pod(_) => None,
    }
}

/// The sources of one tenant, as its [`plan`] says, loaded from the store and ready to be
/// scheduled.
pub fn for_tenant(
    id: &str,
    config: Arc<TenantConfig>,
    secret: SecretString,
    sinks: Vec<Arc<dyn Sink>>,
    ctx: &Context,
) -> Result<Vec<Box<dyn Source>>, StoreError> {
    // Each source takes the sinks its events can go to (a People-only sink is not a SIEM one).
    let only = |names: &[String]| -> Vec<Arc<dyn Sink>> {
        sinks
            .iter()
            .filter(|s| names.iter().any(|n| n == s.name()))
            .cloned()
            .collect()
    };
    let mut out: Vec<Box<dyn Source>> = Vec::new();
    // One OAuth2 token per tenant, shared by its ITM reports.
    let mut itm_token = None;
    for source in planned(&config) {
        out.push(match source {
            Planned::Siem => {
                let mut names = config.sinks().to_vec();
                names.extend(
                    config
                        .customer_sinks()
                        .into_iter()
                        .flat_map(|c| c.values().flatten().cloned()),
                );
                Box::new(tap_siem::Poller::new(
                    id,
                    config.clone(),
                    secret.clone(),
                    only(&names),
                    ctx,
                )?)
            }
            Planned::People(feed, people) => {
                let names = people.sinks.as_deref().unwrap_or(config.sinks());
                Box::new(people::PeopleSource::new(
                    id,
                    feed,
                    config.clone(),
                    people.clone(),
                    secret.clone(),
                    only(names),
                    ctx,
                )?)
            }
            Planned::Pod(kind, pod) => Box::new(pod::PodSource::new(
                id,
                kind,
                Arc::new(pod.clone()),
                secret.clone(),
                sinks.clone(),
                ctx,
            )?),
            Planned::Trap(t) => Box::new(super::trap::source(
                id,
                t,
                secret.clone(),
                sinks.clone(),
                ctx,
            )?),
            Planned::Isolation(t) => Box::new(super::isolation::source(
                id,
                t,
                secret.clone(),
                sinks.clone(),
                ctx,
            )?),
            Planned::Ctr(t) => Box::new(ctr::CtrSource::new(
                id,
                Arc::new(t.clone()),
                secret.clone(),
                sinks.clone(),
                ctx,
            )?),
            Planned::Itm(kind, t) => {
                let tokens = itm_token
                    .get_or_insert_with(|| {
                        Arc::new(tokio::sync::Mutex::new(crate::api::oauth::TokenCache::new(
                            &t.token_url(),
                            &t.client_id,
                            secret.clone(),
                            Some(crate::api::itm::SCOPE),
                        )))
                    })
                    .clone();
                Box::new(itm::ItmSource::new(
                    id,
                    kind,
                    Arc::new(t.clone()),
                    tokens,
                    sinks.clone(),
                    ctx,
                )?)
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_product_plans_its_sources_with_one_spelling_of_their_ids() {
        let config = crate::config::Config::from_toml_with_env(
            r#"
            state_dir = "/tmp/x"
            [sinks.f]
            type = "file"
            path = "/tmp/x.ndjson"
            [tenants.t]
            principal = "p"
            secret = "s"
            sinks = ["f"]
            [tenants.t.people]
            feeds = ["vap"]
            [tenants.e]
            product = "essentials"
            base_url = "https://us1-siem.proofpointessentials.com"
            principal = "p"
            secret = "s"
            sinks = ["f"]
            [tenants.p]
            product = "pod"
            cluster_id = "c"
            token = "tok"
            types = ["maillog", "audit"]
            sinks = ["f"]
            [tenants.c]
            product = "ctr"
            client_id = "id"
            client_secret = "s"
            sinks = ["f"]
            [tenants.i]
            product = "itm"
            base_url = "https://acme.explore.proofpoint.com"
            client_id = "id"
            client_secret = "s"
            types = ["alert", "audit"]
            sinks = ["f"]
            "#,
            Vec::new(),
        )
        .unwrap();
        let ids = |t: &str| -> Vec<String> {
            plan(t, &config.tenants[t])
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        assert_eq!(ids("t"), ["t", "t:people.vap"]);
        assert_eq!(ids("e"), ["e"]);
        assert_eq!(ids("p"), ["p:pod.maillog", "p:pod.audit"]);
        assert_eq!(ids("c"), ["c"]);
        assert_eq!(ids("i"), ["i:itm.alert", "i:itm.audit"]);
    }
}
