//! `product = "essentials"`: a Proofpoint Essentials Threat API account. The same SIEM API shape
//! as TAP ([`SiemAccount`]) with a 72-hour horizon, a region's own host, and for a partner key the
//! child organisations' events too, each of which can be routed to sinks of its own.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::tap::SiemAccount;
use super::tenant::{KindRoute, ProductSettings, SecretKeys, TenantCheck};
use crate::event::EventKind;

/// `product = "essentials"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EssentialsTenant {
    /// The SIEM account's keys, read beside this struct's own (see [`SiemAccount`]);
    /// `base_url` is required.
    #[serde(skip)]
    pub account: SiemAccount,
    /// Ask for the key's own organisation's events (`ownData`). Default `true`.
    #[serde(default = "default_true")]
    pub own_data: bool,
    /// Ask for the child organisations' events too (`customerData`; a partner key created for
    /// "my organisation and all child organisations"). Default `false`.
    #[serde(default)]
    pub customer_data: bool,
    /// Per child organisation (`customerEid`), the sinks its events go to instead of `sinks`.
    /// Each routed sink keeps its own checkpoint, so one client's SIEM being down holds back only
    /// that client's events. An event is routed only when its `customerEid` is a JSON string equal
    /// to the key: a number (`4711`, `4711.0`) matches no key and goes to `sinks`. Keys are 1 to
    /// 64 printable ASCII characters. Default: none (every event goes to `sinks`).
    #[serde(default)]
    pub customer_sinks: BTreeMap<String, Vec<String>>,
}

fn default_true() -> bool {
    true
}

impl ProductSettings for EssentialsTenant {
    fn sinks(&self) -> &[String] {
        &self.account.sinks
    }
    fn sinks_mut(&mut self) -> &mut Vec<String> {
        &mut self.account.sinks
    }
    fn routed_sinks(&self) -> Vec<&[String]> {
        self.customer_sinks.values().map(Vec::as_slice).collect()
    }
    fn kind_routes(&self) -> Vec<KindRoute<'_>> {
        fn siem(key: String, sinks: &[String]) -> KindRoute<'_> {
            KindRoute {
                key,
                sinks,
                kinds: EventKind::SIEM.to_vec(),
                from: "the Essentials SIEM API".into(),
            }
        }
        std::iter::once(siem("sinks".into(), &self.account.sinks))
            .chain(
                self.customer_sinks
                    .iter()
                    .map(|(c, sinks)| siem(format!("customer_sinks.{c}"), sinks)),
            )
            .collect()
    }
    fn secret_keys(&self) -> SecretKeys<'_> {
        self.account.secret_keys()
    }
    /// `base_url` is required (`check` refuses a tenant without it).
    fn base_url(&self) -> &str {
        self.account.base_url("")
    }
    fn allow_http(&self) -> bool {
        self.account.allow_http
    }
    fn siem_account(&self) -> Option<&SiemAccount> {
        Some(&self.account)
    }
    fn siem_params(&self) -> Vec<(&'static str, &'static str)> {
        let flag = |b: bool| if b { "true" } else { "false" };
        vec![
            ("ownData", flag(self.own_data)),
            ("customerData", flag(self.customer_data)),
        ]
    }
    fn customer_sinks(&self) -> Option<&BTreeMap<String, Vec<String>>> {
        Some(&self.customer_sinks)
    }

    fn validate(&self, check: &TenantCheck<'_>, err: &mut dyn FnMut(String, String)) {
        self.account.validate(None, check, err);
        if !self.own_data && !self.customer_data {
            err(
                (check.key)("own_data"),
                "own_data and customer_data are both false: nothing would be collected".into(),
            );
        }
        for (customer, sinks) in &self.customer_sinks {
            let routed = format!("customer_sinks.{customer}");
            if !crate::event::is_customer_id(customer) {
                err(
                    (check.key)(&routed),
                    format!(
                        "a customerEid is 1 to {} printable ASCII characters without spaces",
                        crate::event::MAX_CUSTOMER_ID_BYTES
                    ),
                );
            }
            if sinks.is_empty() {
                err((check.key)(&routed), "lists no sinks".into());
            }
            check.sinks_defined(&routed, sinks, err);
        }
    }
}
