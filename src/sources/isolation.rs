//! The Isolation usage-data source: one tenant's records read in `from`/`to` windows within the
//! API's 30 days ([`super::slices`]). A full page (`page_size` records) is taken as "there may be
//! more": the window is split in two and each half asked for, down to one second.
//!
//! The API key is in the request's query string: the wire layer ([`crate::api::isolation`])
//! never words an error with the URL and scrubs every text of the key (invariant 7).

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use super::slices::{Fetched, SliceApi, SlicePoller, SliceSettings};
use super::Context;
use crate::api::isolation::fetch_window;
use crate::api::ApiError;
use crate::config::isolation::IsolationTenant;
use crate::config::tenant::ProductSettings;
use crate::sinks::Sink;
use crate::store::StoreError;

/// The wire side of one Isolation tenant.
struct IsolationApi {
    http: Result<reqwest::Client, String>,
    config: Arc<IsolationTenant>,
    key: SecretString,
}

#[async_trait]
impl SliceApi for IsolationApi {
    fn product(&self) -> &'static str {
        "isolation"
    }

    async fn fetch(&self, start: i64, end: i64) -> Result<Fetched, ApiError> {
        let http = self
            .http
            .as_ref()
            .map_err(|e| ApiError::Transport(e.clone()))?;
        let window = fetch_window(
            http,
            self.config.base_url(),
            &self.key,
            self.config.page_size,
            self.config.slice_timeout,
            start,
            end,
        )
        .await?;
        Ok(Fetched {
            batch: window.batch,
            full: window.full,
        })
    }
}

/// One request for the last minute's records (one at most), for `check --connect`.
pub async fn probe(config: &IsolationTenant, key: &SecretString, now: i64) -> Result<(), ApiError> {
    let http = crate::api::records::client(None)?;
    fetch_window(
        &http,
        config.base_url(),
        key,
        1,
        config.slice_timeout,
        now - 60,
        now,
    )
    .await
    .map(|_| ())
}

/// The source of Isolation tenant `id`.
pub fn source(
    id: &str,
    config: &IsolationTenant,
    key: SecretString,
    sinks: Vec<Arc<dyn Sink>>,
    ctx: &Context,
) -> Result<SlicePoller, StoreError> {
    let http = crate::api::records::client(None).map_err(|e| e.to_string());
    let settings = SliceSettings {
        max_slice: config.slice.as_secs() as i64,
        lag: config.lag.as_secs() as i64,
        interval: ctx.poll.interval.as_secs() as i64,
        update_lookback: 0,
        update_every: 86_400,
    };
    let api = IsolationApi {
        http,
        config: Arc::new(config.clone()),
        key,
    };
    SlicePoller::new(id, Box::new(api), settings, sinks, ctx)
}
