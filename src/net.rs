//! HTTP plumbing shared by the API clients and the HTTP sinks: which addresses are acceptable, and
//! how a failed request is described.
//!
//! Both layers import this module and it imports neither, so config validation, the TAP client
//! and the sinks check URLs and word transport failures by one rule. The invariant it keeps is
//! invariant 7: a URL carrying credentials is refused at validation (they would show up in every
//! error message), an address that would carry a secret in cleartext across a network
//! ([`cleartext_url`]) is refused unless the config says `allow_http`, and [`transport_error`]
//! drops the URL from its text whenever the caller says it may hold a key.

/// How [`url_problem`] judges an address.
#[derive(Debug, Clone, Copy)]
pub struct UrlRules<'a> {
    /// Where credentials belong instead of the URL, for the error text (e.g. `use principal and
    /// secret`).
    pub credentials_hint: &'a str,
    /// Whether the URL is a complete request address: its query (which may hold an `@`) is cut
    /// off before looking for credentials, and the whole URL must parse. A base URL that the
    /// client extends is checked for scheme, host and credentials only.
    pub complete: bool,
}

/// Why `url` cannot be used under `rules`, if it cannot.
pub fn url_problem(url: &str, rules: UrlRules<'_>) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Some(format!("`{url}` is not an http(s) URL"));
    };
    let authority = if rules.complete {
        rest.split(['/', '?']).next()
    } else {
        rest.split('/').next()
    }
    .unwrap_or("");
    if authority.is_empty() {
        return Some(format!("`{url}` has no host"));
    }
    if authority.contains('@') {
        return Some(format!(
            "must not carry credentials; {}",
            rules.credentials_hint
        ));
    }
    if rules.complete && reqwest::Url::parse(url).is_err() {
        return Some(format!("`{url}` is not a valid URL"));
    }
    None
}

/// Whether `url` is `http://` or `ws://` to a host that is not loopback (`localhost`,
/// `127.0.0.0/8`, `::1`): whatever it carries (a tenant's credentials, a sink's token) would cross
/// a network in cleartext. Tenants and HTTP sinks refuse such an address unless they set
/// `allow_http`.
pub fn cleartext_url(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    if url.scheme() != "http" && url.scheme() != "ws" {
        return false;
    }
    let Some(host) = url.host_str() else {
        return true;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return false;
    }
    host.parse::<std::net::IpAddr>()
        .map_or(true, |ip| !ip.is_loopback())
}

/// Whether [`transport_error`] keeps the URL that reqwest puts in its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorUrl {
    /// Keep it: the URL carries no secret (the TAP client sends credentials in a header).
    Keep,
    /// Drop it: the URL's query may hold a key; the caller names the request itself.
    Drop,
}

/// The text of a failed request (refused, reset, TLS, timed out): reqwest's message followed by
/// its cause chain, which holds the useful part ("connection reset by peer") that reqwest's
/// `Display` leaves out, and ` (timed out)` when it timed out.
pub fn transport_error(e: reqwest::Error, url: ErrorUrl) -> String {
    let timed_out = e.is_timeout();
    let e = match url {
        ErrorUrl::Keep => e,
        ErrorUrl::Drop => e.without_url(),
    };
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if timed_out {
        text.push_str(" (timed out)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: UrlRules = UrlRules {
        credentials_hint: "use principal and secret",
        complete: false,
    };
    const FULL: UrlRules = UrlRules {
        credentials_hint: "use the auth settings",
        complete: true,
    };

    #[test]
    fn url_problems_name_the_address_and_the_hint() {
        assert_eq!(url_problem("https://tap.example.com/v2", BASE), None);
        assert_eq!(
            url_problem("ftp://x", BASE).as_deref(),
            Some("`ftp://x` is not an http(s) URL")
        );
        assert_eq!(
            url_problem("https:///x", FULL).as_deref(),
            Some("`https:///x` has no host")
        );
        assert_eq!(
            url_problem("https://u:p@h", BASE).as_deref(),
            Some("must not carry credentials; use principal and secret")
        );
        assert_eq!(
            url_problem("https://u:p@h", FULL).as_deref(),
            Some("must not carry credentials; use the auth settings")
        );
        assert_eq!(url_problem("https://h/hook?to=a@b", FULL), None);
        assert_eq!(
            url_problem("https://h:99999", FULL).as_deref(),
            Some("`https://h:99999` is not a valid URL")
        );
        assert_eq!(url_problem("https://h:99999", BASE), None);
    }

    #[test]
    fn cleartext_means_http_to_a_host_that_is_not_loopback() {
        for url in [
            "http://siem.example.com:8088",
            "http://10.0.0.5/ingest",
            "ws://logstream.example.com",
            "http://[2001:db8::1]:80",
        ] {
            assert!(cleartext_url(url), "{url}");
        }
        for url in [
            "https://siem.example.com",
            "wss://logstream.example.com",
            "http://127.0.0.1:8088",
            "http://127.9.9.9",
            "http://localhost:8080/x",
            "http://LOCALHOST",
            "http://[::1]:8088",
            "not a url",
        ] {
            assert!(!cleartext_url(url), "{url}");
        }
    }
}
