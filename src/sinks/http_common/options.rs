//! The settings every HTTP sink has (`gzip`, `max_batch_bytes`, `max_batch_events`, `timeout`,
//! `tls_ca_file`, `retry`, `allow_http`), seen through one borrowed view, [`HttpOptions`], with one
//! validation. Its [`HttpOptions::check_url`] is the one rule every HTTP sink's address passes: an
//! http(s) URL without credentials, and no `http://` to a host that is not loopback unless the
//! sink says `allow_http = true` (invariant 7: a token never crosses a network in cleartext
//! unasked).
//!
//! Each sink's config declares these keys itself, with the doc comments and defaults that suit
//! its destination, so that its `deny_unknown_fields` keeps refusing a misspelt key (a
//! `#[serde(flatten)]` struct would silently turn that off). Its `http_options()` lends them to
//! this view, which validates them without I/O, builds the client and drives the shared pipeline
//! ([`super::post_all`]); what the keys mean is decided here once.

use std::path::Path;
use std::time::Duration;

use super::{client, Oversize, Packer, RetryConfig};
use crate::net;
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

/// Gives a sink config `http_options()` from the seven shared settings declared under their usual
/// names (`gzip`, `max_batch_bytes`, `max_batch_events`, `timeout`, `tls_ca_file`, `retry`,
/// `allow_http`), for a sink with no byte limit of its own beyond them. Each config keeps its own fields, doc comments
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
                    allow_http: self.allow_http,
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
    /// Accept an `http://` address on a host that is not loopback.
    pub allow_http: bool,
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

    /// Checks the address under `key` (`url`, `dce`, `authority`) as the sink's request URL: an
    /// http(s) URL without credentials ([`client::check_url`]), and not `http://` to a host that
    /// is not loopback ([`net::cleartext_url`]) unless `allow_http` is set. The message opens with
    /// `key`, so that config validation names `sinks.NAME.KEY`.
    pub fn check_url(&self, key: &str, url: &str) -> Result<(), String> {
        client::check_url(key, url)?;
        if net::cleartext_url(url) && !self.allow_http {
            return Err(format!(
                "{key}: http:// to a host that is not loopback sends the events and the sink's credentials in cleartext: use https://, or set allow_http = true for this sink"
            ));
        }
        Ok(())
    }

    /// Warns, once when the sink is built, that `url` is cleartext to a host that is not loopback
    /// (which only `allow_http` lets through validation); `sink` names the sink.
    pub fn warn_cleartext(&self, sink: &str, url: &str) {
        if net::cleartext_url(url) {
            tracing::warn!(sink = %sink, url = %client::display_url(url),
                "allow_http: this sink's events and credentials travel in cleartext");
        }
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
            allow_http: false,
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

    #[test]
    fn cleartext_to_a_remote_host_needs_allow_http() {
        let retry = RetryConfig::default();
        let strict = options(&retry);
        let e = strict
            .check_url("url", "http://siem.example.com:8088")
            .unwrap_err();
        assert!(
            e.starts_with("url: http:// to a host that is not loopback")
                && e.contains("allow_http"),
            "{e}"
        );
        assert!(strict
            .check_url("dce", "http://10.1.2.3/x")
            .unwrap_err()
            .starts_with("dce: "));
        for ok in [
            "https://siem.example.com:8088",
            "http://127.0.0.1:8088",
            "http://localhost:8088",
            "http://[::1]:8088",
        ] {
            assert_eq!(strict.check_url("url", ok), Ok(()), "{ok}");
        }
        let allowed = HttpOptions {
            allow_http: true,
            ..options(&retry)
        };
        assert_eq!(
            allowed.check_url("url", "http://siem.example.com:8088"),
            Ok(())
        );
        // The other URL rules hold with or without it.
        assert!(allowed
            .check_url("url", "http://u:p@siem.example.com")
            .unwrap_err()
            .contains("credentials"));
    }
}
