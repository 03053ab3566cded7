//! Where secrets come from, and how they are read without ever being shown (invariant 7).
//!
//! Tenants and sinks configure a secret the same way: exactly one of `NAME` (inline), `NAME_env`
//! (an environment variable), `NAME_file` (a file whose content, trailing newline removed, is the
//! secret) or, for tenants, `NAME_credential` (a systemd credential). The environment is passed
//! in as an [`Env`] so that tests and reloads read the same way as the daemon. Errors name the
//! key and the path, never the content. A secret file is read as [`crate::files`] reads what an
//! operator names: a regular file of at most 64 KiB, readable and writable by its owner alone
//! (or `root:GROUP 0640`) unless `TAPFWD_ALLOW_INSECURE_FILES=1`.
//!
//! Text that comes from outside (an API's or a sink's error body, a header) may echo a secret
//! back: a debug proxy or a WAF page repeats the request's `Authorization` header. [`scrub`] is
//! the one function every source and sink passes such text through before it reaches a log, the
//! status board or the store, and [`scrubbed_excerpt`] the one that shortens it: it scrubs
//! first and cuts after, so a secret that straddles the cut is still recognised. No client, sink
//! or command shortens such text any other way.

use std::path::Path;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use crate::files;

/// What [`scrub`] puts where a secret stood.
pub const REDACTED: &str = "[redacted]";

/// Secrets shorter than this are not scrubbed: replacing them would garble every text and
/// protect nothing.
const MIN_SECRET: usize = 4;

/// Every form of `secrets` that [`scrub`] removes, longest first within each secret (so that a
/// padded Base64 form is not left with its `=` behind): Base64 (an echoed `Authorization`), the
/// percent-encoded forms a query string carries (an API key in `?key=`, as a URL quoted in a
/// transport error or a `Location` shows it), and the secret itself.
fn forms(secrets: &[&str]) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let mut out = Vec::new();
    for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET) {
        out.extend([
            STANDARD.encode(s),
            URL_SAFE.encode(s),
            STANDARD_NO_PAD.encode(s),
            URL_SAFE_NO_PAD.encode(s),
        ]);
        for encoded in [percent_encoded(s, false), percent_encoded(s, true)] {
            if encoded != *s && !out.contains(&encoded) {
                out.push(encoded);
            }
        }
        out.push(s.to_string());
    }
    out
}

/// `s` percent-encoded as a query value: every byte but `A-Z a-z 0-9 - . _ ~` as `%XX`
/// (upper-case hex, or lower-case with `lower`), as `url` and most servers write it.
fn percent_encoded(s: &str, lower: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else if lower {
            out.push_str(&format!("%{b:02x}"));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn scrub_forms(mut text: String, forms: &[String]) -> String {
    for form in forms {
        if text.contains(form.as_str()) {
            text = text.replace(form.as_str(), REDACTED);
        }
    }
    text
}

/// `text` with every occurrence of each of `secrets`, and of its Base64 forms (padded, unpadded,
/// URL-safe: what an echoed `Authorization: Basic` or a token header looks like), replaced by
/// [`REDACTED`]. Pass the secret and, for Basic auth, `principal:secret` too. Secrets shorter
/// than 4 bytes are left alone (replacing them would garble every text and protect nothing).
pub fn scrub(text: String, secrets: &[&str]) -> String {
    scrub_forms(text, &forms(secrets))
}

/// At most `max_chars` characters of `text` that came from outside (an error body, a header), on
/// one line, for an error message, a log line or the status board: scrubbed of `secrets` as
/// [`scrub`] does *before* it is cut, so that a secret straddling the cut is removed whole rather
/// than leaving its first part behind, unrecognised. Control characters become spaces, the ends
/// are trimmed, and a text that was cut ends in `…`.
///
/// Only the start of a long text is read: as many bytes as `max_chars` characters can take, plus
/// the longest secret form (one that starts in the part shown ends in the part read). A text cut
/// before it got here (a bounded read) that ends in the first 4 or more bytes of a secret form has
/// that part redacted too. Every client, sink and command shortens text from outside with this
/// function; none cuts it first.
pub fn scrubbed_excerpt(text: &[u8], secrets: &[&str], max_chars: usize) -> String {
    let forms = forms(secrets);
    let start = text
        .iter()
        .position(|b| !(b.is_ascii_whitespace() || b.is_ascii_control()))
        .unwrap_or(text.len());
    let text = &text[start..];
    let longest = forms.iter().map(String::len).max().unwrap_or(0);
    let read = max_chars.saturating_mul(4).saturating_add(longest);
    let mut cut = text.len() > read;
    let text = scrub_forms(
        String::from_utf8_lossy(&text[..text.len().min(read)]).into_owned(),
        &forms,
    );
    let text = redact_partial_tail(text, &forms);
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    let mut out: String = match line.char_indices().nth(max_chars) {
        Some((at, _)) => {
            cut = true;
            line[..at].trim_end().to_owned()
        }
        None => line.to_owned(),
    };
    if cut {
        out.push('…');
    }
    out
}

/// `text` whose end, when it is the first [`MIN_SECRET`] or more bytes of one of `forms` (a
/// secret cut off by a bounded read before it got here), is replaced by [`REDACTED`]. Of a
/// `principal:secret` form (or its percent-encoded `principal%3Asecret`), the part before the
/// first `:` is not secret: a text that ends in the
/// principal is left alone, one that ends in it and 4 or more bytes after the `:` is not.
fn redact_partial_tail(mut text: String, forms: &[String]) -> String {
    for form in forms {
        // The `:` of a pair, or its percent-encoded `%3A` in the pair's query-string form.
        let colon = form
            .find(':')
            .map(|c| c + 1)
            .or_else(|| form.find("%3A").or_else(|| form.find("%3a")).map(|c| c + 3));
        let shortest = colon.unwrap_or(0) + MIN_SECRET;
        let form = form.as_bytes();
        let longest = (form.len() - 1).min(text.len());
        let Some(k) = (shortest..=longest)
            .rev()
            .find(|&k| text.as_bytes().ends_with(&form[..k]))
        else {
            continue;
        };
        // The match starts where the form starts, on a character boundary of the text.
        let at = text.len() - k;
        if text.is_char_boundary(at) {
            text.truncate(at);
            text.push_str(REDACTED);
            return text;
        }
    }
    text
}

/// The texts [`scrub`] must remove for HTTP Basic credentials: the secret and `principal:secret`.
pub fn basic_auth_forms(principal: &str, secret: &SecretString) -> Vec<SecretString> {
    vec![
        secret.clone(),
        SecretString::from(format!("{principal}:{}", secret.expose_secret())),
    ]
}

/// [`scrub`] with secrets held as [`SecretString`]s.
pub fn scrub_with(text: String, secrets: &[SecretString]) -> String {
    let exposed: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
    scrub(text, &exposed)
}

/// [`scrubbed_excerpt`] with secrets held as [`SecretString`]s.
pub fn scrubbed_excerpt_with(text: &[u8], secrets: &[SecretString], max_chars: usize) -> String {
    let exposed: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
    scrubbed_excerpt(text, &exposed, max_chars)
}

/// Reads an environment variable: `std::env::var` in the daemon, a map in tests.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment as an [`Env`].
pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Why a secret could not be read: the key it is configured under and what is wrong, never the
/// value.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {message}")]
pub struct SecretError {
    pub key: String,
    pub message: String,
}

impl SecretError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        SecretError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Where one secret comes from. `key` is its key path without suffix, e.g. `sinks.splunk.token`.
#[derive(Clone, Copy)]
pub struct SecretSource<'a> {
    pub key: &'a str,
    pub inline: Option<&'a SecretString>,
    pub env: Option<&'a str>,
    pub file: Option<&'a Path>,
}

impl SecretSource<'_> {
    /// Checks without I/O that exactly one source is set.
    pub fn validate(&self) -> Result<(), String> {
        let n = [
            self.inline.is_some(),
            self.env.is_some(),
            self.file.is_some(),
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if n == 1 {
            Ok(())
        } else {
            Err(format!(
                "exactly one of {k}, {k}_env, {k}_file must be set, found {n}",
                k = self.key.rsplit('.').next().unwrap_or(self.key)
            ))
        }
    }

    /// Reads the secret; errors name the key and never hold the value.
    pub fn resolve(&self, env: Env<'_>) -> Result<SecretString, SecretError> {
        let key = |suffix: &str| format!("{}{suffix}", self.key);
        if let Some(s) = self.inline {
            if s.expose_secret().is_empty() {
                return Err(SecretError::new(key(""), "is empty"));
            }
            return Ok(s.clone());
        }
        if let Some(var) = self.env {
            return match env(var) {
                Some(v) if !v.is_empty() => Ok(SecretString::from(v)),
                Some(_) => Err(SecretError::new(
                    key("_env"),
                    format!("environment variable {var} is empty"),
                )),
                None => Err(SecretError::new(
                    key("_env"),
                    format!("environment variable {var} is not set"),
                )),
            };
        }
        if let Some(path) = self.file {
            return read_file(key("_file"), path, env);
        }
        Err(SecretError::new(key(""), "no secret is configured"))
    }
}

/// Reads the systemd credential `name` (`LoadCredential=`) for the secret configured under `key`.
pub fn read_credential(key: String, name: &str, env: Env<'_>) -> Result<SecretString, SecretError> {
    let dir = env("CREDENTIALS_DIRECTORY").ok_or_else(|| {
        SecretError::new(
            key.clone(),
            "CREDENTIALS_DIRECTORY is not set (is the service started with LoadCredential=?)",
        )
    })?;
    read_file(key, &Path::new(&dir).join(name), env)
}

/// Reads a secret file (trailing newline removed): a regular file of at most
/// [`files::SECRET_MAX_BYTES`] that only its owner may read or write
/// ([`files::secret_mode_problem`]) unless `env` sets [`files::ALLOW_INSECURE_ENV`] (then the
/// daemon warns). Errors name `key` and the path, never the content.
pub fn read_file(key: String, path: &Path, env: Env<'_>) -> Result<SecretString, SecretError> {
    let cannot = |why: String| {
        SecretError::new(
            key.clone(),
            format!("cannot read {}: {why}", path.display()),
        )
    };
    let file = files::read_regular(path, files::SECRET_MAX_BYTES).map_err(cannot)?;
    if let Some(problem) = files::secret_mode_problem(file.mode, file.uid) {
        let allowed = files::allows_insecure(env(files::ALLOW_INSECURE_ENV).as_deref());
        let fix = format!(
            "make it readable by its owner alone (chmod 600 {})",
            path.display()
        );
        let message = files::mode_message(path, file.mode, problem, &fix, allowed);
        if !allowed {
            return Err(SecretError::new(key, message));
        }
        tracing::warn!(key = %key, "{message}");
    }
    let text = String::from_utf8(file.bytes).map_err(|_| cannot("it is not UTF-8 text".into()))?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(SecretError::new(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(SecretString::from(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_removes_the_secret_the_pair_and_their_base64_forms() {
        let secret = SecretString::from("s3cr3t-value".to_string());
        let forms = basic_auth_forms("p-acme", &secret);
        let b64 = base64::engine::general_purpose::STANDARD.encode("p-acme:s3cr3t-value");
        let text = format!(
            "bad request: Authorization: Basic {b64} secret=s3cr3t-value \
             pair=p-acme:s3cr3t-value raw={}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("s3cr3t-value")
        );
        let out = scrub_with(text, &forms);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert!(!out.contains(&b64), "{out}");
        assert!(!out.contains(&b64[..b64.len() - 2]), "{out}");
        assert!(out.contains("Basic [redacted]"), "{out}");
        assert!(
            out.contains("p-acme:") || out.contains("pair=[redacted]"),
            "{out}"
        );
    }

    /// An API key that travels in a query string (Isolation's `?key=`) is scrubbed from a URL
    /// quoted whole, percent-encoded or not.
    #[test]
    fn scrub_removes_a_query_string_key_in_its_encoded_forms() {
        let key = "k3y/with+odd=chars&more";
        let url = format!(
            "error sending request for url (https://host/api?key={}&pageSize=10): timed out; lower {}",
            percent_encoded(key, false),
            percent_encoded(key, true)
        );
        let out = scrub(url, &[key]);
        assert!(!out.contains("k3y"), "{out}");
        assert!(out.contains("key=[redacted]&pageSize=10"), "{out}");
        let plain = scrub("GET /api?key=plainkey123".into(), &["plainkey123"]);
        assert_eq!(plain, "GET /api?key=[redacted]");
    }

    #[test]
    fn scrub_leaves_short_secrets_and_other_text_alone() {
        assert_eq!(scrub("a b c".into(), &["b"]), "a b c");
        assert_eq!(scrub("nothing here".into(), &["s3cr3t"]), "nothing here");
    }

    /// A secret that straddles the cut: scrubbing first removes it whole; cutting first would
    /// have left `TOPSECRET-` behind, which no longer matches the secret.
    #[test]
    fn an_excerpt_is_scrubbed_before_it_is_cut() {
        let secret = "TOPSECRET-0123456789abcdef";
        for at in 280..300 {
            let body = format!("{}{secret} and more text after it", "x".repeat(at));
            let out = scrubbed_excerpt(body.as_bytes(), &[secret], 300);
            assert!(!out.contains("TOPS"), "{at}: {out}");
            assert!(out.chars().count() <= 301, "{at}: {out}");
            assert!(out.ends_with('…'), "{at}: {out}");
        }
        // Base64 forms too (an echoed `Authorization: Basic`).
        let forms = basic_auth_forms("p-acme", &SecretString::from(secret));
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("p-acme:{secret}"));
        let body = format!("{}Authorization: Basic {b64}", "y".repeat(270));
        let out = scrubbed_excerpt_with(body.as_bytes(), &forms, 300);
        assert!(!out.contains(&b64[..8]), "{out}");
    }

    #[test]
    fn an_excerpt_is_one_line_trimmed_and_marked_when_cut() {
        assert_eq!(
            scrubbed_excerpt(b"\n  bad\ncredentials\r\n", &[], 300),
            "bad credentials"
        );
        assert_eq!(scrubbed_excerpt(b"", &[], 300), "");
        let long = "é".repeat(1000);
        let out = scrubbed_excerpt(long.as_bytes(), &[], 300);
        assert_eq!(out.chars().count(), 301);
        assert_eq!(out, format!("{}…", "é".repeat(300)));
        assert_eq!(scrubbed_excerpt(b"short", &[], 5), "short");
    }

    /// A text cut before it got here (a bounded read) that ends in a secret's first part.
    #[test]
    fn a_secret_cut_off_before_the_excerpt_is_redacted_from_its_end() {
        let secret = "TOPSECRET-0123456789";
        let out = scrubbed_excerpt(b"error: token TOPSECRET-01", &[secret], 300);
        assert_eq!(out, "error: token [redacted]");
        // Fewer than 4 bytes of it are too little to tell from ordinary text.
        let out = scrubbed_excerpt(b"error: TOP", &[secret], 300);
        assert_eq!(out, "error: TOP");
        // Of `principal:secret`, the principal alone is not a secret.
        let pair = format!("p-acme:{secret}");
        let forms = [secret, pair.as_str()];
        let out = scrubbed_excerpt(b"unknown principal p-acme", &forms, 300);
        assert_eq!(out, "unknown principal p-acme");
        let out = scrubbed_excerpt(b"Authorization: p-acme:TOPSEC", &forms, 300);
        assert_eq!(out, "Authorization: p-acme:[redacted]");
    }
}
