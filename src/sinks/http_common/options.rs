//! The settings every HTTP sink has (`gzip`, `max_batch_bytes`, `max_batch_events`, `timeout`,
//! `tls_ca_file`, `retry`), seen through one borrowed view, [`HttpOptions`], with one validation.
//!
//! Each sink's config declares these keys itself, with the doc comments and defaults that suit
//! its destination, so that its `deny_unknown_fields` keeps refusing a misspelt key (a
//! `#[serde(flatten)]` struct would silently turn that off). Its `http_options()` lends them to
//! this view, which validates them without I/O, builds the client and drives the shared pipeline
//! ([`super::post_all`]); what the keys mean is decided here once.

use std::path::Path;
use std::time::Duration;

use super::{client, Oversize, Packer, RetryConfig};
use crate::sinks::SinkError;

/// The default request timeout of every HTTP sink.
pub fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// The default `max_batch_bytes` of a sink whose destination sets no hard limit: 1 MiB.
pub fn default_max_batch_bytes() -> usize {
    1 << 20
}

/// The default `max_batch_events` of a sink whose destination suggests no other.
pub fn default_max_batch_events() -> usize {
    1000
}

/// Gives a sink config `http_options()` from the six shared settings declared under their usual
/// names (`gzip`, `max_batch_bytes`, `max_batch_events`, `timeout`, `tls_ca_file`, `retry`), for a
/// sink with no byte limit of its own beyond them. Each config keeps its own fields, doc comments
/// and `deny_unknown_fields`; only the view is written once.
macro_rules! plain_http_options {
    ($config:ty) => {
        impl $config {
            /// The settings every HTTP sink shares.
            pub fn http_options(&self) -> $crate::sinks::http_common::HttpOptions<'_> {
                $crate::sinks::http_common::HttpOptions {
                    gzip: self.gzip,
                    max_batch_bytes: self.max_batch_bytes,
                    max_batch_events: self.max_batch_events,
                    api_max_bytes: None,
                    timeout: self.timeout,
                    tls_ca_file: self.tls_ca_file.as_deref(),
                    retry: &self.retry,
                }
            }
        }
    };
}
pub(crate) use plain_http_options;

/// One sink's HTTP settings, borrowed from its config.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions<'a> {
    /// Whether request bodies are gzip-compressed (`Content-Encoding: gzip`).
    pub gzip: bool,
    /// Largest request body in bytes, measured before compression.
    pub max_batch_bytes: usize,
    /// Most events in one request.
    pub max_batch_events: usize,
    /// The destination's own limit on one request's body, when it has one; `max_batch_bytes`
    /// may not exceed it.
    pub api_max_bytes: Option<usize>,
    /// Longest time one request may take, reply included.
    pub timeout: Duration,
    /// A PEM file of CA certificates trusted besides the public roots.
    pub tls_ca_file: Option<&'a Path>,
    /// Retries within one delivery.
    pub retry: &'a RetryConfig,
}

impl HttpOptions<'_> {
    /// Checks every setting: [`Self::validate_limits`], then [`Self::validate_transport`].
    pub fn validate(&self) -> Result<(), String> {
        self.validate_limits()?;
        self.validate_transport()
    }

    /// Checks `max_batch_bytes` and `max_batch_events`.
    pub fn validate_limits(&self) -> Result<(), String> {
        match self.api_max_bytes {
            None => {
                if self.max_batch_events == 0 || self.max_batch_bytes < 1024 {
                    return Err(
                        "max_batch_events must be at least 1 and max_batch_bytes at least 1024"
                            .into(),
                    );
                }
            }
            Some(limit) => {
                if self.max_batch_bytes > limit || self.max_batch_bytes < 1024 {
                    return Err(format!(
                        "max_batch_bytes must be between 1024 and {limit} (the API's limit)"
                    ));
                }
                if self.max_batch_events == 0 {
                    return Err("max_batch_events must be at least 1".into());
                }
            }
        }
        Ok(())
    }

    /// Checks `tls_ca_file` and `retry`.
    pub fn validate_transport(&self) -> Result<(), String> {
        if self.tls_ca_file.is_some_and(|p| p.as_os_str().is_empty()) {
            return Err("tls_ca_file is empty".into());
        }
        self.retry.validate()
    }

    /// The sink's client (see [`client::client`]); `sink` names it in errors.
    pub fn client(&self, sink: &str) -> Result<reqwest::Client, SinkError> {
        client::client(sink, self.timeout, self.tls_ca_file)
    }

    /// A packer of elements one after another (NDJSON, the HEC format) within the limits.
    pub fn lines(&self) -> Packer {
        Packer::lines(self.max_batch_bytes, self.max_batch_events)
    }

    /// A packer of JSON arrays within the limits.
    pub fn array(&self, oversize: Oversize) -> Packer {
        Packer::array(self.max_batch_bytes, self.max_batch_events, oversize)
    }

    /// A packer of `prefix e1,e2,… suffix` within the limits; an element too large alone goes
    /// alone.
    pub fn framed(&self, prefix: Vec<u8>, suffix: &[u8]) -> Packer {
        Packer {
            prefix,
            separator: b",",
            suffix: suffix.to_vec(),
            max_bytes: self.max_batch_bytes,
            max_events: self.max_batch_events,
            oversize: Oversize::Alone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(retry: &RetryConfig) -> HttpOptions<'_> {
        HttpOptions {
            gzip: false,
            max_batch_bytes: default_max_batch_bytes(),
            max_batch_events: default_max_batch_events(),
            api_max_bytes: None,
            timeout: default_timeout(),
            tls_ca_file: None,
            retry,
        }
    }

    #[test]
    fn options_name_the_setting_they_refuse() {
        let retry = RetryConfig::default();
        assert_eq!(options(&retry).validate(), Ok(()));
        let few = HttpOptions {
            max_batch_bytes: 100,
            ..options(&retry)
        };
        assert_eq!(
            few.validate().unwrap_err(),
            "max_batch_events must be at least 1 and max_batch_bytes at least 1024"
        );
        let over = HttpOptions {
            api_max_bytes: Some(1_000_000),
            max_batch_bytes: 1_000_001,
            ..options(&retry)
        };
        assert_eq!(
            over.validate().unwrap_err(),
            "max_batch_bytes must be between 1024 and 1000000 (the API's limit)"
        );
        let none = HttpOptions {
            api_max_bytes: Some(1_000_000),
            max_batch_bytes: 1_000_000,
            max_batch_events: 0,
            ..options(&retry)
        };
        assert_eq!(
            none.validate().unwrap_err(),
            "max_batch_events must be at least 1"
        );
        let empty = HttpOptions {
            tls_ca_file: Some(Path::new("")),
            ..options(&retry)
        };
        assert_eq!(empty.validate().unwrap_err(), "tls_ca_file is empty");
    }
}
