//! Where secrets come from, and how they are read without ever being shown (invariant 7).
//!
//! Tenants and sinks configure a secret the same way: exactly one of `NAME` (inline), `NAME_env`
//! (an environment variable), `NAME_file` (a file whose content, trailing newline removed, is the
//! secret) or, for tenants, `NAME_credential` (a systemd credential). The environment is passed
//! in as an [`Env`] so that tests and reloads read the same way as the daemon. Errors name the
//! key and the path, never the content.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

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
            return read_file(key("_file"), path);
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
    read_file(key, &Path::new(&dir).join(name))
}

/// Reads a secret file (trailing newline removed); errors name `key` and the path, never the
/// content.
pub fn read_file(key: String, path: &Path) -> Result<SecretString, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        SecretError::new(key.clone(), format!("cannot read {}: {e}", path.display()))
    })?;
    let secret = text.trim_end_matches(['\n', '\r']).to_string();
    if secret.is_empty() {
        return Err(SecretError::new(
            key,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(SecretString::from(secret))
}

/// `text` (an error from outside, which may echo what it was sent) with every occurrence of
/// `secret` replaced by `[redacted]`. Secrets shorter than 4 characters are left alone (they
/// would blank ordinary words); the HTTP sinks' `scrub` follows the same rule.
pub fn scrub(text: String, secret: &SecretString) -> String {
    let s = secret.expose_secret();
    if s.len() < 4 {
        return text;
    }
    text.replace(s, "[redacted]")
}
