//! `[tenants.ID]`: one client organisation's account with one Proofpoint product, and where its
//! events go.
//!
//! The tenant config is a `product`-tagged enum of per-product structs, as the sink config is a
//! `type`-tagged one: each product's keys, defaults and validation live in its own file
//! ([`super::tap`], [`super::essentials`], [`super::pod`]). A table is read in two steps so that
//! every error still names its full key path (`tenants.acme.ping_interval`): the `product` key
//! picks the struct (absent: `tap`), then that struct is deserialised with
//! `serde_path_to_error`. A key that belongs to another product is not an "unknown field" but a
//! message that says which product it belongs to, reported with the other validation errors.
//!
//! A tenant's [`TenantConfig::fingerprint`] covers every key it has, so a reload restarts a
//! tenant whenever anything about it changed (its People table, its PoD types, its secret's
//! source), and no hand-kept list of fields can fall behind.
//!
//! Adding a product: its file beside this one with a struct that implements
//! [`ProductSettings`], a [`Product`] variant, and its arm in [`TenantConfig`]'s matches
//! (`products`, `from_value`, `product`, `settings`, `settings_mut`): all in this file.

use std::collections::BTreeMap;
use std::path::Path;

use secrecy::SecretString;
use serde::de::{self, Deserialize, Visitor};

use super::ctr::CtrTenant;
use super::essentials::EssentialsTenant;
use super::isolation::IsolationTenant;
use super::itm::ItmTenant;
use super::pod::PodTenant;
use super::tap::{SiemAccount, TapTenant};
use super::trap::TrapTenant;
use super::{ConfigError, PollConfig};
use crate::api::siem::Credentials;
use crate::event::EventKind;
pub use crate::net::cleartext_url;
use crate::secret::{self, Env, SecretSource};
use crate::sinks::SinkConfig;

/// The Proofpoint product a tenant's credentials are for (`product = "…"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Product {
    /// The TAP SIEM API.
    #[default]
    Tap,
    /// The Proofpoint Essentials Threat API.
    Essentials,
    /// The Proofpoint on Demand (PoD) log stream (WebSocket).
    Pod,
    /// Threat Response Auto-Pull incidents, from the customer's own TRAP server.
    Trap,
    /// Proofpoint Isolation usage data.
    Isolation,
    /// Cloud Threat Response incidents (OAuth2).
    Ctr,
    /// Insider Threat Management reports (OAuth2).
    Itm,
}

impl Product {
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Tap => "tap",
            Product::Essentials => "essentials",
            Product::Pod => "pod",
            Product::Trap => "trap",
            Product::Isolation => "isolation",
            Product::Ctr => "ctr",
            Product::Itm => "itm",
        }
    }

    /// How far into the past the product's API serves, in seconds: TAP 7 days, Essentials
    /// 3 days (PoD's archive horizon is a tenant key; this is the rewind bound).
    pub fn horizon_secs(self) -> i64 {
        use crate::api::window;
        match self {
            Product::Tap => window::HORIZON_SECS,
            Product::Essentials | Product::Pod => window::ESSENTIALS_HORIZON_SECS,
            // TRAP keeps incidents on the customer's server without a stated limit; 30 days is
            // tapfwd's bound. Isolation keeps 30 days.
            Product::Trap | Product::Isolation => crate::api::records::HORIZON_SECS,
            // No retention is documented: tapfwd keeps to 30 days.
            Product::Ctr | Product::Itm => OAUTH_HORIZON_SECS,
        }
    }

    /// The name users read in messages (`TAP`, `Essentials`, `PoD`).
    fn display(self) -> &'static str {
        match self {
            Product::Tap => "TAP",
            Product::Essentials => "Essentials",
            Product::Pod => "PoD",
            Product::Trap => "TRAP",
            Product::Isolation => "Isolation",
            Product::Ctr => "CTR",
            Product::Itm => "ITM",
        }
    }
}

/// How far back CTR and ITM are asked, in seconds: 30 days (neither documents a retention).
pub const OAUTH_HORIZON_SECS: i64 = 30 * 86_400;

/// One client organisation: its product's settings.
#[derive(Debug, Clone)]
pub enum TenantConfig {
    Tap(TapTenant),
    Essentials(EssentialsTenant),
    Pod(PodTenant),
    Trap(TrapTenant),
    Isolation(IsolationTenant),
    Ctr(CtrTenant),
    Itm(ItmTenant),
}

/// What a product's `validate` sees besides its own keys.
pub struct TenantCheck<'a> {
    /// The full key path of one of the tenant's keys (`tenants.acme.sinks`, with the file it came
    /// from when it came from `tenants_dir`).
    pub key: &'a dyn Fn(&str) -> String,
    /// The sinks defined, for `sinks` lists.
    pub sinks: &'a BTreeMap<String, SinkConfig>,
    pub poll: &'a PollConfig,
}

impl TenantCheck<'_> {
    /// Reports each name in `names` that is not a defined sink, under `key`.
    pub fn sinks_defined(&self, key: &str, names: &[String], err: &mut dyn FnMut(String, String)) {
        for s in names {
            if !self.sinks.contains_key(s) {
                err((self.key)(key), format!("refers to undefined sink `{s}`"));
            }
        }
    }
}

/// One group of a tenant's events and the sinks its config sends them to, so that `check` can
/// refuse a sink that could never take them ([`SinkConfig::refuses`]) under the key that routes
/// them there.
pub struct KindRoute<'a> {
    /// The key, under the tenant, that sends these events to `sinks` (`sinks`, `people.sinks`,
    /// `customer_sinks.EID`).
    pub key: String,
    pub sinks: &'a [String],
    pub kinds: Vec<EventKind>,
    /// Where the events come from, in the config's words (`types = [.., "audit"]`).
    pub from: String,
}

/// Where a tenant's one secret is configured: exactly one of `NAME`, `NAME_env`, `NAME_file`,
/// `NAME_credential` (`secret` for the SIEM APIs, `token` for PoD).
pub struct SecretKeys<'a> {
    pub name: &'static str,
    pub inline: Option<&'a SecretString>,
    pub env: Option<&'a str>,
    pub file: Option<&'a Path>,
    pub credential: Option<&'a str>,
}

impl SecretKeys<'_> {
    /// Reports unless exactly one of the four keys is set.
    pub fn validate(&self, check: &TenantCheck<'_>, err: &mut dyn FnMut(String, String)) {
        let set = [
            self.inline.is_some(),
            self.env.is_some(),
            self.file.is_some(),
            self.credential.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if set != 1 {
            let n = self.name;
            err(
                (check.key)(n),
                format!("exactly one of {n}, {n}_env, {n}_file, {n}_credential must be set, found {set}"),
            );
        }
    }

    /// Reads the secret of tenant `id`; errors name the key, never the value.
    pub fn resolve(&self, id: &str, env: Env<'_>) -> Result<SecretString, ConfigError> {
        if let Some(name) = self.credential {
            return Ok(secret::read_credential(
                format!("tenants.{id}.{}_credential", self.name),
                name,
                env,
            )?);
        }
        Ok(SecretSource {
            key: &format!("tenants.{id}.{}", self.name),
            inline: self.inline,
            env: self.env,
            file: self.file,
        }
        .resolve(env)?)
    }
}

/// A tenant table as read: the product, and any keys of other products it holds (each with the
/// message that says whose it is), which [`super::Config::validate`] reports with the rest.
pub struct ParsedTenant {
    pub config: TenantConfig,
    pub foreign_keys: Vec<(String, String)>,
}

impl TenantConfig {
    /// Every product with the keys its struct takes, for telling a misplaced key from an
    /// unknown one.
    fn products() -> [(Product, Vec<&'static str>); 7] {
        let account = fields_of::<SiemAccount>();
        let with_account = |own: &[&'static str]| [account, own].concat();
        [
            (Product::Tap, with_account(fields_of::<TapTenant>())),
            (
                Product::Essentials,
                with_account(fields_of::<EssentialsTenant>()),
            ),
            (Product::Pod, fields_of::<PodTenant>().to_vec()),
            (Product::Trap, fields_of::<TrapTenant>().to_vec()),
            (Product::Isolation, fields_of::<IsolationTenant>().to_vec()),
            (Product::Ctr, fields_of::<CtrTenant>().to_vec()),
            (Product::Itm, fields_of::<ItmTenant>().to_vec()),
        ]
    }

    /// Reads one `[tenants.ID]` table (`value`, with any environment overrides applied). `Err`
    /// is `(key under the tenant, message)`.
    pub fn from_value(value: config::Value) -> Result<ParsedTenant, (String, String)> {
        let mut table = value
            .into_table()
            .map_err(|e| (String::new(), e.to_string()))?;
        let product = match table.remove("product") {
            None => Product::Tap,
            Some(v) => {
                Product::deserialize(v).map_err(|e| ("product".to_string(), e.to_string()))?
            }
        };
        let products = Self::products();
        let own = products
            .iter()
            .find(|(p, _)| *p == product)
            .map_or(&[][..], |(_, keys)| keys.as_slice());
        let mut foreign_keys = Vec::new();
        let mut keys: Vec<String> = table.keys().cloned().collect();
        keys.sort();
        for key in keys {
            if own.contains(&key.as_str()) {
                continue;
            }
            let owners: Vec<Product> = products
                .iter()
                .filter(|(_, k)| k.contains(&key.as_str()))
                .map(|(p, _)| *p)
                .collect();
            if owners.is_empty() {
                // Unknown to every product: serde names it with the keys this one takes.
                continue;
            }
            table.remove(&key);
            let message = misplaced_key_message(product, &key, &owners);
            foreign_keys.push((key, message));
        }
        // The TAP SIEM account keys (TAP and Essentials) are read apart, after the product's
        // own (so an unknown key is named before a missing one), then set in the product's
        // struct: serde's `flatten` would lose `deny_unknown_fields` and the key paths.
        let account_part = |table: &mut config::Map<String, config::Value>| {
            fields_of::<SiemAccount>()
                .iter()
                .filter_map(|k| table.remove(*k).map(|v| (k.to_string(), v)))
                .collect::<config::Map<String, config::Value>>()
        };
        let config = match product {
            Product::Tap => {
                let account = account_part(&mut table);
                let own: TapTenant = read(table)?;
                TenantConfig::Tap(TapTenant {
                    account: read(account)?,
                    ..own
                })
            }
            Product::Essentials => {
                let account = account_part(&mut table);
                let own: EssentialsTenant = read(table)?;
                TenantConfig::Essentials(EssentialsTenant {
                    account: read(account)?,
                    ..own
                })
            }
            Product::Pod => TenantConfig::Pod(read(table)?),
            Product::Trap => TenantConfig::Trap(read(table)?),
            Product::Isolation => TenantConfig::Isolation(read(table)?),
            Product::Ctr => TenantConfig::Ctr(read(table)?),
            Product::Itm => TenantConfig::Itm(read(table)?),
        };
        Ok(ParsedTenant {
            config,
            foreign_keys,
        })
    }

    pub fn product(&self) -> Product {
        match self {
            TenantConfig::Tap(_) => Product::Tap,
            TenantConfig::Essentials(_) => Product::Essentials,
            TenantConfig::Pod(_) => Product::Pod,
            TenantConfig::Trap(_) => Product::Trap,
            TenantConfig::Isolation(_) => Product::Isolation,
            TenantConfig::Ctr(_) => Product::Ctr,
            TenantConfig::Itm(_) => Product::Itm,
        }
    }

    /// The product's settings, as every product describes them.
    pub fn settings(&self) -> &dyn ProductSettings {
        match self {
            TenantConfig::Tap(t) => t,
            TenantConfig::Essentials(t) => t,
            TenantConfig::Pod(t) => t,
            TenantConfig::Trap(t) => t,
            TenantConfig::Isolation(t) => t,
            TenantConfig::Ctr(t) => t,
            TenantConfig::Itm(t) => t,
        }
    }

    fn settings_mut(&mut self) -> &mut dyn ProductSettings {
        match self {
            TenantConfig::Tap(t) => t,
            TenantConfig::Essentials(t) => t,
            TenantConfig::Pod(t) => t,
            TenantConfig::Trap(t) => t,
            TenantConfig::Isolation(t) => t,
            TenantConfig::Ctr(t) => t,
            TenantConfig::Itm(t) => t,
        }
    }

    /// Checks the product's keys; `check` knows the sinks and `poll`.
    pub fn validate(&self, check: &TenantCheck<'_>, err: &mut dyn FnMut(String, String)) {
        if self.sinks().is_empty() {
            err((check.key)("sinks"), "lists no sinks".into());
        }
        check.sinks_defined("sinks", self.sinks(), err);
        self.secret_keys().validate(check, err);
        self.settings().validate(check, err);
        for route in self.settings().kind_routes() {
            for name in route.sinks {
                let Some(sink) = check.sinks.get(name) else {
                    continue;
                };
                for kind in &route.kinds {
                    if let Some(why) = sink.refuses(*kind) {
                        err(
                            (check.key)(&route.key),
                            format!(
                                "sink `{name}` {why}; they come from {}: send them to another sink or leave them out",
                                route.from
                            ),
                        );
                    }
                }
            }
        }
    }

    /// A hash of every setting of the tenant (secrets' sources included; their values are
    /// compared apart by the reload). Two configs of a tenant with one fingerprint run the same
    /// sources the same way. Never shown.
    pub fn fingerprint(&self) -> String {
        blake3::hash(format!("{self:?}").as_bytes())
            .to_hex()
            .to_string()
    }

    /// Where the tenant's secret is configured.
    pub fn secret_keys(&self) -> SecretKeys<'_> {
        self.settings().secret_keys()
    }

    /// Names of the sinks this tenant's events go to.
    pub fn sinks(&self) -> &[String] {
        self.settings().sinks()
    }

    /// The `sinks` list, for tests and tools that rewrite a config.
    pub fn sinks_mut(&mut self) -> &mut Vec<String> {
        self.settings_mut().sinks_mut()
    }

    /// All the sinks this tenant's events can go to: `sinks`, then those only some of its events
    /// go to (routed customers, People snapshots), each once.
    pub fn all_sinks(&self) -> Vec<String> {
        let mut out = self.sinks().to_vec();
        for sinks in self.settings().routed_sinks() {
            for s in sinks {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// Whether sink `sink` takes the events of `customer` (an Essentials `customerEid`; `None`
    /// for events without one): a routed customer's events go to its `customer_sinks`, every
    /// other event to `sinks`.
    pub fn routes(&self, sink: &str, customer: Option<&str>) -> bool {
        let routed = self
            .customer_sinks()
            .and_then(|routes| routes.get(customer?));
        match routed {
            Some(routed) => routed.iter().any(|s| s == sink),
            None => self.sinks().iter().any(|s| s == sink),
        }
    }

    /// The API's base URL, with any pasted API path taken off.
    pub fn base_url(&self) -> &str {
        self.settings().base_url()
    }

    /// What a SIEM request for this tenant sends: the principal, `secret`, and the parameters
    /// its product takes (TAP: `threatStatus`; Essentials: `ownData`, `customerData`). A product
    /// without a SIEM account has no principal and no parameters.
    pub fn credentials<'a>(&'a self, secret: &'a SecretString) -> Credentials<'a> {
        Credentials {
            principal: self.principal(),
            secret,
            params: self.settings().siem_params(),
        }
    }

    /// The SIEM API's service principal (TAP and Essentials); empty for other products.
    pub fn principal(&self) -> &str {
        self.settings()
            .siem_account()
            .map_or("", |a| a.principal.as_str())
    }

    /// The SIEM request quota (rolling 24 hours) of a TAP or Essentials tenant.
    pub fn requests_per_day(&self) -> Option<u32> {
        self.settings().siem_account().map(|a| a.requests_per_day)
    }

    /// How old a window is when the late sweep queries it again (TAP and Essentials; `None`
    /// when the sweep is off or the product has no SIEM account).
    pub fn late_sweep(&self, poll: &PollConfig) -> Option<std::time::Duration> {
        self.settings().siem_account()?.late_sweep(poll)
    }

    /// Threat enrichment beside the tenant's events (none without a SIEM account).
    pub fn enrich(&self) -> &[crate::enrich::EnrichKind] {
        self.settings()
            .siem_account()
            .map_or(&[], |a| a.enrich.as_slice())
    }

    /// Essentials' per-customer routing (none for the other products).
    pub fn customer_sinks(&self) -> Option<&BTreeMap<String, Vec<String>>> {
        self.settings().customer_sinks()
    }

    /// Whether `base_url` is `http://` (or `ws://`) to a host that is not loopback: the
    /// credentials would cross a network in cleartext.
    pub fn cleartext_http(&self) -> bool {
        cleartext_url(self.base_url())
    }

    /// `allow_http`: the tenant accepts a cleartext `base_url` on a host that is not loopback.
    pub fn allow_http(&self) -> bool {
        self.settings().allow_http()
    }
}

/// What each product's tenant struct says of itself; [`TenantConfig`]'s accessors read it, so a
/// new product implements this and adds its arms to the enum's three matches.
pub trait ProductSettings: std::fmt::Debug {
    /// Names of the sinks the tenant's events go to.
    fn sinks(&self) -> &[String];
    fn sinks_mut(&mut self) -> &mut Vec<String>;
    /// Sinks that only some of the tenant's events go to (routed customers, People snapshots).
    fn routed_sinks(&self) -> Vec<&[String]> {
        Vec::new()
    }
    /// Each group of events the tenant's sources produce with the sinks they go to.
    fn kind_routes(&self) -> Vec<KindRoute<'_>>;
    /// Where the tenant's one secret is configured.
    fn secret_keys(&self) -> SecretKeys<'_>;
    /// The API's base URL, defaults applied and any pasted API path taken off.
    fn base_url(&self) -> &str;
    /// `allow_http`.
    fn allow_http(&self) -> bool;
    /// Checks the product's own keys (sinks and the secret's sources are checked for every
    /// product by [`TenantConfig::validate`]).
    fn validate(&self, check: &TenantCheck<'_>, err: &mut dyn FnMut(String, String));
    /// The TAP SIEM API account, for the products that have one (TAP, Essentials).
    fn siem_account(&self) -> Option<&SiemAccount> {
        None
    }
    /// The parameters each SIEM request adds.
    fn siem_params(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
    /// Sinks per Essentials child organisation.
    fn customer_sinks(&self) -> Option<&BTreeMap<String, Vec<String>>> {
        None
    }
    /// How far before the latest record a sink has this product's source may still owe it
    /// records or deliver some again (a time slice delivered unordered, a look-back for updates),
    /// when that is longer than `poll.max_window`: `tapfwd recover` goes back that far.
    fn replay_reach(&self) -> Option<std::time::Duration> {
        None
    }
    /// How far before its position the tenant's source reads again (CTR's `lookback`), beyond
    /// `poll.dedupe_horizon`: `tapfwd recover` keeps the dedupe keys of that span.
    fn key_reach(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// Deserialises `table` into `T`; `Err` names the key path under the tenant.
fn read<T: de::DeserializeOwned>(
    table: config::Map<String, config::Value>,
) -> Result<T, (String, String)> {
    let value = config::Value::new(None, config::ValueKind::Table(table));
    serde_path_to_error::deserialize(value)
        .map_err(|e| (e.path().to_string(), e.into_inner().to_string()))
}

/// What is said of key `key`, set on a `product` tenant though only `owners` take it.
fn misplaced_key_message(product: Product, key: &str, owners: &[Product]) -> String {
    if product == Product::Pod {
        return "is not a PoD setting (a pod tenant has cluster_id and a token)".into();
    }
    match (key, owners) {
        ("people", _) => "the People API is TAP's; this tenant is not product = \"tap\"".into(),
        ("customer_sinks", _) => {
            "routes Essentials child organisations; this tenant is not product = \"essentials\""
                .into()
        }
        (_, [owner]) => format!(
            "is {} {} setting; this tenant is not product = \"{}\"",
            if owner.display().starts_with(['E', 'I']) {
                "an"
            } else {
                "a"
            },
            owner.display(),
            owner.as_str()
        ),
        (_, owners) => format!(
            "is not a {} setting (it is one of {})",
            product.display(),
            owners
                .iter()
                .map(|p| p.display())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The keys struct `T` takes (as serde names them), read from its derived `Deserialize`.
fn fields_of<T: de::DeserializeOwned>() -> &'static [&'static str] {
    let mut probe = FieldProbe(None);
    let _ = T::deserialize(&mut probe);
    probe.0.unwrap_or(&[])
}

/// A deserializer that records the field list a derived struct asks for, and nothing else.
struct FieldProbe(Option<&'static [&'static str]>);

#[derive(Debug)]
struct ProbeDone;

impl std::fmt::Display for ProbeDone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field probe")
    }
}
impl std::error::Error for ProbeDone {}
impl de::Error for ProbeDone {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        ProbeDone
    }
}

impl<'de> de::Deserializer<'de> for &mut FieldProbe {
    type Error = ProbeDone;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeDone> {
        Err(ProbeDone)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, ProbeDone> {
        self.0 = Some(fields);
        Err(ProbeDone)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_product_takes_its_own_keys_and_names_the_owner_of_another() {
        let [(_, tap), (_, essentials), (_, pod), (_, trap), (_, isolation), (_, ctr), (_, itm)] =
            TenantConfig::products();
        assert!(trap.contains(&"ca_file") && trap.contains(&"api_key_env"));
        assert!(isolation.contains(&"page_size") && !isolation.contains(&"ca_file"));
        assert!(ctr.contains(&"client_secret_env") && !ctr.contains(&"principal"));
        assert!(itm.contains(&"types") && itm.contains(&"client_id"));
        assert!(tap.contains(&"principal") && essentials.contains(&"secret_env"));
        assert!(tap.contains(&"people") && tap.contains(&"threat_status"));
        assert!(essentials.contains(&"customer_sinks") && !essentials.contains(&"people"));
        assert!(pod.contains(&"cluster_id") && !pod.contains(&"principal"));
        assert_eq!(
            misplaced_key_message(Product::Tap, "cluster_id", &[Product::Pod]),
            "is a PoD setting; this tenant is not product = \"pod\""
        );
        assert_eq!(
            misplaced_key_message(Product::Tap, "customer_data", &[Product::Essentials]),
            "is an Essentials setting; this tenant is not product = \"essentials\""
        );
    }
}
