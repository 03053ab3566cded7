//! `product = "essentials"`: a Proofpoint Essentials Threat API account. The same SIEM API shape
//! as TAP ([`SiemAccount`]) with a 72-hour horizon, a region's own host, and for a partner key the
//! child organisations' events too, each of which can be routed to sinks of its own.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::tap::SiemAccount;
use super::tenant::TenantCheck;

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
    /// that client's events. Default: none (every event goes to `sinks`).
    #[serde(default)]
    pub customer_sinks: BTreeMap<String, Vec<String>>,
}

fn default_true() -> bool {
    true
}

impl EssentialsTenant {
    pub fn validate(&self, check: &TenantCheck<'_>, err: &mut dyn FnMut(String, String)) {
        self.account.validate(None, check, err);
        if !self.own_data && !self.customer_data {
            err(
                (check.key)("own_data"),
                "own_data and customer_data are both false: nothing would be collected".into(),
            );
        }
        for (customer, sinks) in &self.customer_sinks {
            let routed = format!("customer_sinks.{customer}");
            if customer.is_empty() || !customer.bytes().all(|b| b.is_ascii_graphic()) {
                err(
                    (check.key)(&routed),
                    "a customerEid is a non-empty id without spaces".into(),
                );
            }
            if sinks.is_empty() {
                err((check.key)(&routed), "lists no sinks".into());
            }
            check.sinks_defined(&routed, sinks, err);
        }
    }
}
