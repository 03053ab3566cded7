//! The TRAP incidents source: one tenant's TRAP server read in time slices over `created_at`
//! ([`super::slices`]), one request per incident state and slice, with the slices of the last
//! `update_lookback` asked again every `update_every` so that updated incidents are delivered
//! as new facts.
//!
//! An incident travels as the API sent it, one record per incident (invariant 5): its events,
//! quarantine results and field values stay inside it, so an update is one new record whose
//! bytes differ, and an exact repeat is recognised by its key (invariant 2).

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use super::slices::{Fetched, SliceApi, SlicePoller, SliceSettings};
use super::Context;
use crate::api::trap::{fetch_slice, SliceQuery};
use crate::api::ApiError;
use crate::config::trap::TrapTenant;
use crate::sinks::Sink;
use crate::store::StoreError;

/// The wire side of one TRAP tenant.
struct TrapApi {
    http: Result<reqwest::Client, String>,
    config: Arc<TrapTenant>,
    key: SecretString,
}

#[async_trait]
impl SliceApi for TrapApi {
    fn product(&self) -> &'static str {
        "trap"
    }

    async fn fetch(&self, start: i64, end: i64) -> Result<Fetched, ApiError> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| ApiError::Transport(e.clone()))?;
        let query = SliceQuery {
            base: crate::config::tenant::ProductSettings::base_url(self.config.as_ref()),
            key: &self.key,
            states: &self.config.states,
            deadline: self.config.slice_timeout,
            max_bytes: self.config.max_slice_bytes,
        };
        let batch = fetch_slice(http, &query, start, end).await?;
        Ok(Fetched { batch, full: false })
    }
}

/// One request for the last minute's `new` incidents, for `check --connect`.
pub async fn probe(config: &TrapTenant, key: &SecretString, now: i64) -> Result<(), ApiError> {
    let http = crate::api::records::client(config.ca_file.as_deref())?;
    let query = SliceQuery {
        base: crate::config::tenant::ProductSettings::base_url(config),
        key,
        states: &[crate::config::trap::TrapState::New],
        deadline: config.slice_timeout,
        max_bytes: config.max_slice_bytes,
    };
    fetch_slice(&http, &query, now - 60, now).await.map(|_| ())
}

/// The source of TRAP tenant `id`.
pub fn source(
    id: &str,
    config: &TrapTenant,
    key: SecretString,
    sinks: Vec<Arc<dyn Sink>>,
    ctx: &Context,
) -> Result<SlicePoller, StoreError> {
    let http = crate::api::records::client(config.ca_file.as_deref()).map_err(|e| e.to_string());
    let settings = SliceSettings {
        max_slice: config.slice.as_secs() as i64,
        lag: config.lag.as_secs() as i64,
        interval: ctx.poll.interval.as_secs() as i64,
        update_lookback: config.update_lookback.as_secs() as i64,
        update_every: config.update_every.as_secs() as i64,
    };
    let api = TrapApi {
        http,
        config: Arc::new(config.clone()),
        key,
    };
    SlicePoller::new(id, Box::new(api), settings, sinks, ctx)
}
