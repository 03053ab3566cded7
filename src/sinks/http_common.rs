//! The plumbing every HTTP sink shares: the client (rustls, optional extra CA, verification
//! always on), the bounded retry loop that honours `Retry-After`, status classification, gzip,
//! splitting a batch into request bodies, and error texts that never carry a secret.
//!
//! The sinks ([`super::http`], [`super::splunk_hec`], [`super::logscale`], [`super::sentinel`])
//! only encode events and read their destination's replies; how a request is sent, retried and
//! judged lives here once. Retries inside one `deliver` call are bounded by
//! [`RetryConfig::max_time`]; after that the sink returns [`SinkError::Unavailable`] and the poller
//! holds the checkpoint and tries again later with its own backoff (invariant 1). Every error text
//! goes through [`scrub`] with the sink's secrets, so a destination that echoes a token back
//! cannot leak it into a log line (invariant 7).

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde::Deserialize;

use super::SinkError;
use crate::backoff;

/// `[sinks.NAME.retry]`: how one delivery retries a busy or unreachable destination before it
/// gives up and leaves the batch to the poller (which holds the checkpoint and tries again later).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First wait between attempts; later waits grow exponentially with jitter. Default `1s`.
    #[serde(with = "humantime_serde", default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest wait between two attempts. Default `10s`.
    #[serde(with = "humantime_serde", default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// Longest time spent retrying within one delivery, waits included. A `Retry-After` that
    /// points past it ends the delivery at once. Default `30s`.
    #[serde(with = "humantime_serde", default = "default_max_time")]
    pub max_time: Duration,
}

fn default_initial_backoff() -> Duration {
    Duration::from_secs(1)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(10)
}
fn default_max_time() -> Duration {
    Duration::from_secs(30)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            max_time: default_max_time(),
        }
    }
}

impl RetryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.initial_backoff.is_zero() || self.initial_backoff > self.max_backoff {
            return Err(
                "retry.initial_backoff must be above zero and at most retry.max_backoff".into(),
            );
        }
        Ok(())
    }
}

/// The default request timeout of every HTTP sink.
pub fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Why `url` cannot be an HTTP sink's address, if it cannot. Credentials in the URL are refused:
/// they would show up in every error message.
pub fn url_problem(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let Some(rest) = rest else {
        return Some(format!("`{url}` is not an http(s) URL"));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.is_empty() {
        return Some(format!("`{url}` has no host"));
    }
    if authority.contains('@') {
        return Some("must not carry credentials; use the auth settings".into());
    }
    if reqwest::Url::parse(url).is_err() {
        return Some(format!("`{url}` is not a valid URL"));
    }
    None
}

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
        .user_agent(concat!("tapfwd/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            SinkError::Rejected(format!(
                "{sink}: cannot read tls_ca_file {}: {e}",
                path.display()
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
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

/// What one attempt came to.
pub enum Step<T> {
    /// Done; stop.
    Done(T),
    /// Worth another attempt after at least `after` (a `Retry-After`) and the backoff.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Not worth another attempt.
    Fail(SinkError),
}

/// Runs `attempt` until it is done or fails, retrying with [`backoff::delay`] (and no sooner than
/// a `Retry-After`) for at most `retry.max_time`; then [`SinkError::Unavailable`] with the last
/// reason.
pub async fn with_retries<T, F, Fut>(
    sink: &str,
    retry: &RetryConfig,
    mut attempt: F,
) -> Result<T, SinkError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Step<T>>,
{
    let started = Instant::now();
    let mut n: u32 = 0;
    loop {
        let (reason, after) = match attempt().await {
            Step::Done(v) => return Ok(v),
            Step::Fail(e) => return Err(e),
            Step::Retry { reason, after } => (reason, after),
        };
        let wait = backoff::delay(n, retry.initial_backoff, retry.max_backoff)
            .max(after.unwrap_or_default());
        n += 1;
        if started.elapsed() + wait > retry.max_time {
            return Err(SinkError::Unavailable(format!(
                "{reason} (gave up after {n} attempt{} in {}; will retry later)",
                if n == 1 { "" } else { "s" },
                humantime::format_duration(Duration::from_millis(
                    started.elapsed().as_millis() as u64
                ))
            )));
        }
        tracing::warn!(sink = %sink, attempt = n, wait_ms = wait.as_millis() as u64, error = %reason, "retrying");
        tokio::time::sleep(wait).await;
    }
}

/// A destination's reply, read to the end.
pub struct Reply {
    pub status: StatusCode,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
}

/// Sends `request` and reads the whole reply; a transport failure (refused, reset, timeout) is a
/// reason to retry.
pub async fn send(request: reqwest::RequestBuilder) -> Result<Reply, String> {
    let response = request.send().await.map_err(transport_error)?;
    let status = response.status();
    let retry_after = retry_after(response.headers());
    let body = response.bytes().await.map_err(transport_error)?;
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

fn transport_error(e: reqwest::Error) -> String {
    // Without the URL: the caller names the request (without its query, which might hold a key),
    // and reqwest's Display lacks the cause, so walk the chain for it.
    let timed_out = e.is_timeout();
    let e = e.without_url();
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

/// How a status is treated: the Vector rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Delivered,
    /// 408, 429 and 5xx except 501: the destination may take it later.
    Retryable,
    /// Everything else, 501 and 1xx/3xx included: it will refuse again until someone changes
    /// something.
    Permanent,
}

pub fn classify(status: StatusCode) -> StatusClass {
    match status.as_u16() {
        200..=299 => StatusClass::Delivered,
        408 | 429 => StatusClass::Retryable,
        501 => StatusClass::Permanent,
        500..=599 => StatusClass::Retryable,
        _ => StatusClass::Permanent,
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(24 * 3600)));
    }
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = when.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(delta.to_std().unwrap_or_default())
}

/// The readable part of an error body: the `text` (Splunk HEC), `error_description` or `error`
/// (OAuth2), `error.message` (Azure) or `message` member of a JSON reply, else the body itself,
/// shortened to one line of at most 300 characters.
pub fn error_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct AzureError {
        code: Option<String>,
        message: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Text(String),
        Azure(AzureError),
    }
    #[derive(Deserialize)]
    struct Known {
        text: Option<String>,
        code: Option<serde_json::Value>,
        error: Option<ErrorField>,
        error_description: Option<String>,
        message: Option<String>,
        #[serde(rename = "invalid-event-number")]
        invalid_event_number: Option<u64>,
    }
    let text = match serde_json::from_slice::<Known>(body) {
        Ok(k) => {
            let mut code = k.code.map(|c| format!(" (code {c})")).unwrap_or_default();
            if let Some(n) = k.invalid_event_number {
                code.push_str(&format!(", invalid event number {n} of the request"));
            }
            match (k.text, k.error, k.error_description, k.message) {
                (Some(t), ..) => format!("{t}{code}"),
                (_, Some(ErrorField::Text(e)), Some(d), _) => format!("{e}: {d}"),
                (_, _, Some(d), _) => d,
                (_, Some(ErrorField::Text(e)), ..) => e,
                (_, Some(ErrorField::Azure(a)), ..) => match (a.code, a.message) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (c, m) => c.or(m).unwrap_or_default(),
                },
                (_, _, _, Some(m)) => m,
                _ => String::from_utf8_lossy(body).into_owned(),
            }
        }
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let trimmed = one_line.trim();
    if trimmed.is_empty() {
        return "(empty body)".into();
    }
    match trimmed.char_indices().nth(300) {
        Some((at, _)) => format!("{}…", &trimmed[..at]),
        None => trimmed.to_string(),
    }
}

/// `text` with every occurrence of each secret (and its Base64 forms) replaced by `[redacted]`:
/// the one scrubbing function, shared with the TAP client.
pub use crate::secret::scrub;

/// The [`Step`] for a reply by the standard rule: 2xx done (with the reply), 408/429/5xx retried
/// after its `Retry-After`, anything else rejected. `what` names the sink and request in errors.
pub fn judge(what: &str, reply: Reply, secrets: &[&str]) -> Step<Reply> {
    match classify(reply.status) {
        StatusClass::Delivered => Step::Done(reply),
        StatusClass::Retryable => Step::Retry {
            reason: scrub(
                format!(
                    "{what}: HTTP {}: {}",
                    reply.status.as_u16(),
                    error_text(&reply.body)
                ),
                secrets,
            ),
            after: reply.retry_after,
        },
        StatusClass::Permanent => Step::Fail(rejected(what, &reply, secrets)),
    }
}

/// The loud, permanent error for `reply`.
pub fn rejected(what: &str, reply: &Reply, secrets: &[&str]) -> SinkError {
    SinkError::Rejected(scrub(
        format!(
            "{what}: HTTP {}: {}",
            reply.status.as_u16(),
            error_text(&reply.body)
        ),
        secrets,
    ))
}

/// Gzip-compresses `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = enc.write_all(data);
    enc.finish().unwrap_or_default()
}

/// What to do with one encoded element larger than the byte limit on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Send it in a request of its own; the limit is a target, the destination decides.
    Alone,
    /// The limit is the destination's hard limit: fail the whole batch (the index is returned).
    Fail,
}

/// Joins encoded elements into request bodies `prefix e1 sep e2 sep … suffix`, each at most
/// `max_bytes` long (prefix and suffix included) and holding at most `max_events` elements.
pub struct Packer {
    pub prefix: Vec<u8>,
    pub separator: &'static [u8],
    pub suffix: Vec<u8>,
    pub max_bytes: usize,
    pub max_events: usize,
    pub oversize: Oversize,
}

/// A request body and how many elements it holds.
pub struct Body {
    pub bytes: Vec<u8>,
    pub events: usize,
}

impl Packer {
    /// NDJSON and the HEC format: elements one after another, each followed by a newline.
    pub fn lines(max_bytes: usize, max_events: usize) -> Packer {
        Packer {
            prefix: Vec::new(),
            separator: b"",
            suffix: Vec::new(),
            max_bytes,
            max_events,
            oversize: Oversize::Alone,
        }
    }

    /// A JSON array.
    pub fn array(max_bytes: usize, max_events: usize, oversize: Oversize) -> Packer {
        Packer {
            prefix: b"[".to_vec(),
            separator: b",",
            suffix: b"]".to_vec(),
            max_bytes,
            max_events,
            oversize,
        }
    }

    /// Packs the elements `encode` writes, one call per element index in `0..count`. On
    /// [`Oversize::Fail`], `Err((index, size))` names the first element that cannot fit alone.
    pub fn pack(
        &self,
        count: usize,
        mut encode: impl FnMut(usize, &mut Vec<u8>),
    ) -> Result<Vec<Body>, (usize, usize)> {
        let frame = self.prefix.len() + self.suffix.len();
        let mut bodies = Vec::new();
        let mut current = Body {
            bytes: Vec::new(),
            events: 0,
        };
        let mut element = Vec::new();
        for i in 0..count {
            element.clear();
            encode(i, &mut element);
            if frame + element.len() > self.max_bytes && self.oversize == Oversize::Fail {
                return Err((i, frame + element.len()));
            }
            let added = element.len()
                + if current.events > 0 {
                    self.separator.len()
                } else {
                    0
                };
            if current.events > 0
                && (current.events >= self.max_events
                    || current.bytes.len() + added + self.suffix.len() > self.max_bytes)
            {
                current.bytes.extend_from_slice(&self.suffix);
                bodies.push(std::mem::replace(
                    &mut current,
                    Body {
                        bytes: Vec::new(),
                        events: 0,
                    },
                ));
            }
            if current.events == 0 {
                current.bytes.extend_from_slice(&self.prefix);
            } else {
                current.bytes.extend_from_slice(self.separator);
            }
            current.bytes.extend_from_slice(&element);
            current.events += 1;
        }
        if current.events > 0 {
            current.bytes.extend_from_slice(&self.suffix);
            bodies.push(current);
        }
        Ok(bodies)
    }
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Writes `s` as a JSON string.
pub fn json_str(out: &mut Vec<u8>, s: &str) {
    // Serialising a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// A fresh identifier in UUID form (random, version 4 layout), e.g. for a HEC channel.
pub fn uuid_like(seed: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut h = blake3::Hasher::new();
    h.update(seed.as_bytes());
    h.update(&nanos.to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    h.update(
        &backoff::delay(0, Duration::from_nanos(1), Duration::from_secs(1))
            .as_nanos()
            .to_le_bytes(),
    );
    let mut b = [0u8; 16];
    b.copy_from_slice(&h.finalize().as_bytes()[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A path option, for `tls_ca_file` validation.
pub fn ca_file_problem(ca: &Option<PathBuf>) -> Option<String> {
    match ca {
        Some(p) if p.as_os_str().is_empty() => Some("tls_ca_file is empty".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_retry_rule() {
        for (code, class) in [
            (200, StatusClass::Delivered),
            (204, StatusClass::Delivered),
            (400, StatusClass::Permanent),
            (401, StatusClass::Permanent),
            (403, StatusClass::Permanent),
            (404, StatusClass::Permanent),
            (408, StatusClass::Retryable),
            (413, StatusClass::Permanent),
            (429, StatusClass::Retryable),
            (500, StatusClass::Retryable),
            (501, StatusClass::Permanent),
            (502, StatusClass::Retryable),
            (503, StatusClass::Retryable),
            (504, StatusClass::Retryable),
            (301, StatusClass::Permanent),
        ] {
            assert_eq!(
                classify(StatusCode::from_u16(code).unwrap()),
                class,
                "{code}"
            );
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = chrono::Utc::now() + chrono::Duration::seconds(120);
        h.insert("retry-after", later.to_rfc2822().parse().unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(100) && d <= Duration::from_secs(120),
            "{d:?}"
        );
        h.insert(
            "retry-after",
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn error_text_reads_each_destinations_shape() {
        assert_eq!(
            error_text(br#"{"text":"Invalid token","code":4}"#),
            "Invalid token (code 4)"
        );
        assert_eq!(
            error_text(br#"{"error":{"code":"InvalidStream","message":"no such stream"}}"#),
            "InvalidStream: no such stream"
        );
        assert_eq!(
            error_text(
                br#"{"error":"invalid_client","error_description":"AADSTS7000215: bad secret"}"#
            ),
            "invalid_client: AADSTS7000215: bad secret"
        );
        assert_eq!(error_text(b"plain\nfailure"), "plain failure");
        assert_eq!(error_text(b""), "(empty body)");
        assert_eq!(error_text("x".repeat(1000).as_bytes()).chars().count(), 301);
    }

    #[test]
    fn scrub_removes_secrets() {
        let t = scrub("bad token s3cr3t-token here".into(), &["s3cr3t-token"]);
        assert_eq!(t, "bad token [redacted] here");
    }

    #[test]
    fn packer_respects_bytes_and_events() {
        let items = ["aaaa", "bbbb", "cccc", "dddd", "eeee"];
        let p = Packer::array(12, 10, Oversize::Alone);
        let bodies = p
            .pack(items.len(), |i, out| {
                out.extend_from_slice(items[i].as_bytes())
            })
            .unwrap();
        let texts: Vec<_> = bodies
            .iter()
            .map(|b| String::from_utf8(b.bytes.clone()).unwrap())
            .collect();
        assert_eq!(texts, ["[aaaa,bbbb]", "[cccc,dddd]", "[eeee]"]);
        assert!(bodies.iter().all(|b| b.bytes.len() <= 12));

        let p = Packer::lines(1000, 2);
        let bodies = p
            .pack(items.len(), |i, out| {
                out.extend_from_slice(items[i].as_bytes());
                out.push(b'\n')
            })
            .unwrap();
        assert_eq!(
            bodies.iter().map(|b| b.events).collect::<Vec<_>>(),
            [2, 2, 1]
        );
        assert_eq!(bodies[0].bytes, b"aaaa\nbbbb\n");
    }

    #[test]
    fn packer_oversize_goes_alone_or_fails() {
        let items = ["a", "bbbbbbbbbbbbbbbbbbbb", "c"];
        let enc = |i: usize, out: &mut Vec<u8>| out.extend_from_slice(items[i].as_bytes());
        let bodies = Packer::array(10, 10, Oversize::Alone).pack(3, enc).unwrap();
        assert_eq!(bodies.len(), 3);
        assert_eq!(bodies[1].bytes, b"[bbbbbbbbbbbbbbbbbbbb]");
        let e = Packer::array(10, 10, Oversize::Fail).pack(3, enc).err();
        assert_eq!(e, Some((1, 22)));
    }

    #[test]
    fn times_and_ids_are_well_formed() {
        assert_eq!(
            crate::clock::rfc3339_ms(1_767_225_600_123),
            "2026-01-01T00:00:00.123Z"
        );
        let a = uuid_like("x");
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, uuid_like("x"));
    }
}
