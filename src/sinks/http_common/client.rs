//! The client of one HTTP sink and the parts of its requests: rustls with the public roots plus an
//! optional CA file, the endpoint's URL, and secrets checked to fit in a header.
//!
//! Certificate and host name verification are always on; nothing here can turn them off, and no
//! redirect is followed (a destination that answers 3xx is misaddressed: see [`super::reply`]).
//! A URL shown in a message is cut before its query, and a secret that cannot travel in a header fails
//! when the sink is built, not on every request (invariant 7: neither is ever echoed).

use std::path::Path;
use std::time::Duration;

use crate::net::{self, UrlRules};
use crate::sinks::SinkError;

/// `url` without its query, for messages (a webhook's query may carry a key).
pub fn display_url(url: &str) -> &str {
    url.split(['?', '#']).next().unwrap_or(url)
}

/// Checks that a secret can travel in a header, so that a bad one fails at start, not on every
/// request.
pub fn check_header_secret(sink: &str, key: &str, secret: &str) -> Result<(), SinkError> {
    if secret.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Ok(())
    } else {
        Err(SinkError::Rejected(format!(
            "{sink}: {key} holds characters that cannot be sent in an HTTP header (control or non-ASCII characters)"
        )))
    }
}

/// `base` without trailing slashes, followed by `path`.
pub fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// Builds the client of one sink: rustls with the public roots plus `ca_file` (PEM, one or more
/// certificates) when given. Certificate and host name verification cannot be turned off.
pub fn client(
    sink: &str,
    timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<reqwest::Client, SinkError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        // No redirect is followed: a 3xx is a configuration error naming its `Location`
        // (`reply::rejected`), never a silent delivery somewhere else.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tapfwd/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = crate::files::read_regular(path, crate::files::PEM_MAX_BYTES).map_err(|e| {
            SinkError::Rejected(format!(
                "{sink}: cannot read tls_ca_file {}: {e}",
                path.display()
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem.bytes).map_err(|e| {
            SinkError::Rejected(format!(
                "{sink}: tls_ca_file {} holds no usable PEM certificate: {e}",
                path.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(SinkError::Rejected(format!(
                "{sink}: tls_ca_file {} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| SinkError::Rejected(format!("{sink}: cannot build HTTP client: {e}")))
}

/// How an HTTP sink's address is judged: a complete request URL whose credentials, if any, belong
/// in the auth settings.
const SINK_URL: UrlRules<'static> = UrlRules {
    credentials_hint: "use the auth settings",
    complete: true,
};

/// Checks the address under `key` (`url`, `dce`, …) as a sink's request URL.
pub fn check_url(key: &str, url: &str) -> Result<(), String> {
    match net::url_problem(url, SINK_URL) {
        Some(p) => Err(format!("{key}: {p}")),
        None => Ok(()),
    }
}
