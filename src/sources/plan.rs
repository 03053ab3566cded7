//! The plan of a tenant's sources: which sources a tenant's config runs, and the one spelling of
//! their ids. The daemon ([`super::for_tenant`]), the status board, `tapfwd status` without a
//! running daemon and the offline commands all read it from here.
//!
//! An id is the tenant id for the tenant's main polled source (TAP or Essentials SIEM), and
//! `TENANT:people.FEED` or `TENANT:pod.TYPE` for the others; it is the scheduler's key, the
//! status board's row, and the stream prefix of the source's positions in the store.

use std::fmt;

use crate::config::{PeopleConfig, PodTenant, PodType, TenantConfig};
use crate::tap::people::Feed;

/// What a source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// The SIEM API's windows (TAP or Essentials, by the tenant's product).
    Siem,
    /// One People list's snapshots (TAP).
    People(Feed),
    /// One PoD log type's stream.
    Pod(PodType),
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
            SourceKind::Siem => write!(f, "{}", self.tenant),
            SourceKind::People(feed) => write!(f, "{}:people.{}", self.tenant, feed.as_str()),
            SourceKind::Pod(kind) => write!(f, "{}:pod.{}", self.tenant, kind.as_str()),
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
}

impl Planned<'_> {
    pub fn kind(&self) -> SourceKind {
        match self {
            Planned::Siem => SourceKind::Siem,
            Planned::People(feed, _) => SourceKind::People(*feed),
            Planned::Pod(kind, _) => SourceKind::Pod(*kind),
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
    }
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
    }
}
