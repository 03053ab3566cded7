//! The `[sinks.<name>]` table with `type = "syslog"`: where to send, how to frame and format, and
//! what to do with an event too large for one message.
//!
//! [`SyslogConfig`] is the reference documentation of the keys (each field says its default);
//! [`SyslogConfig::validate`] checks it without I/O (the TLS files are read when the sink is
//! built) and names the key that is wrong. Invariant 1 where an event does not fit: `oversize`
//! either truncates it with a marker (and the sink logs it) or refuses the batch, never drops it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `type = "syslog"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `host:port` of the server for `udp`, `tcp` and `tls` (required there). For `unix`, the
    /// socket path; default: the first of `/dev/log`, `/var/run/syslog`, `/var/run/log` that
    /// exists.
    #[serde(default)]
    pub address: Option<String>,
    /// `udp`, `tcp` (default), `tls` or `unix`.
    #[serde(default)]
    pub transport: Transport,
    /// `rfc5424` (default) or `rfc3164`.
    #[serde(default)]
    pub format: Format,
    /// For `tcp` and `tls`: `octet_counting` (default, RFC 6587 `LEN SP MSG`) or `newline`
    /// (`MSG LF`; CR and LF inside an event are sent as spaces). Not allowed for `udp`/`unix`.
    #[serde(default)]
    pub framing: Option<Framing>,
    /// Syslog facility name: `kern`, `user` (default), `mail`, `daemon`, `auth`, `syslog`, `lpr`,
    /// `news`, `uucp`, `cron`, `authpriv`, `ftp`, `ntp`, `audit`, `alert`, `clock_daemon`,
    /// `local0`..`local7`.
    #[serde(default = "default_facility")]
    pub facility: String,
    /// Syslog severity name: `emerg`, `alert`, `crit`, `err`, `warning`, `notice`, `info`
    /// (default), `debug`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// APP-NAME (RFC 5424) or TAG (RFC 3164): printable ASCII without spaces, at most 48 bytes.
    /// Default `tapfwd`.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// HOSTNAME field: printable ASCII without spaces, at most 255 bytes. Default: this
    /// machine's host name.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Largest syslog message in bytes (header, structured data and event; not the TCP frame's
    /// length prefix or LF). Default `1472` for `udp` (one unfragmented datagram on Ethernet),
    /// `65000` otherwise. At least `480`; at most `65507` for `udp`. Check your server's limit
    /// (rsyslog's default `maxMessageSize` is 8 KiB).
    #[serde(default)]
    pub max_message_bytes: Option<usize>,
    /// What to do with an event that does not fit: `truncate` (default; cut it and append the
    /// marker `...[tapfwd: truncated, event was N bytes]`, which breaks its JSON) or `reject`
    /// (refuse the batch, naming the event's size, and hold the checkpoint until the limit is
    /// raised). Events are never dropped silently.
    #[serde(default)]
    pub oversize: Oversize,
    /// Longest wait for a connection, TLS handshake or write, in humantime (`30s`). Default `30s`.
    #[serde(with = "humantime_serde", default = "default_timeout")]
    pub timeout: Duration,
    /// `tls` only: PEM file of the CA certificates that sign the server's certificate. Default:
    /// the public web PKI roots (webpki-roots). Verification is always on.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// `tls` only: PEM client certificate chain for mutual TLS; needs `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// `tls` only: PEM private key (PKCS#8, PKCS#1 or SEC1) of the client certificate.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// `tls` only: the name the server's certificate must carry. Default: the host of `address`.
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    #[default]
    Tcp,
    Tls,
    Unix,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Rfc5424,
    Rfc3164,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Framing {
    #[default]
    OctetCounting,
    Newline,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Oversize {
    #[default]
    Truncate,
    Reject,
}

fn default_facility() -> String {
    "user".into()
}
fn default_severity() -> String {
    "info".into()
}
fn default_app_name() -> String {
    "tapfwd".into()
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

/// Largest UDP payload over IPv4.
const UDP_MAX: usize = 65_507;
/// RFC 5426: every receiver must accept messages of 480 bytes.
const MIN_MESSAGE: usize = 480;

pub(super) fn severity_code(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "emerg" => 0,
        "alert" => 1,
        "crit" => 2,
        "err" | "error" => 3,
        "warning" | "warn" => 4,
        "notice" => 5,
        "info" => 6,
        "debug" => 7,
        _ => return None,
    })
}

pub(super) fn facility_code(name: &str) -> Option<u8> {
    name.parse::<syslog::Facility>().ok().map(|f| f as u8)
}

pub(super) fn header_field_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

impl SyslogConfig {
    pub fn validate(&self) -> Result<(), String> {
        match (self.transport, &self.address) {
            (Transport::Unix, _) => {}
            (_, None) => return Err("address (host:port) is required".into()),
            (_, Some(a)) if a.contains("://") => {
                return Err(format!(
                    "address `{a}` has a scheme; give host:port and choose the protocol with transport = \"udp\", \"tcp\" or \"tls\""
                ));
            }
            (_, Some(a)) => {
                let ok = a
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                if !ok {
                    return Err(format!("address `{a}` is not host:port"));
                }
            }
        }
        if self.framing.is_some() && matches!(self.transport, Transport::Udp | Transport::Unix) {
            return Err("framing applies only to tcp and tls".into());
        }
        if self.transport != Transport::Tls
            && (self.ca_file.is_some()
                || self.client_cert_file.is_some()
                || self.client_key_file.is_some()
                || self.server_name.is_some())
        {
            return Err(
                "ca_file, client_cert_file, client_key_file and server_name need transport = \"tls\""
                    .into(),
            );
        }
        if self.client_cert_file.is_some() != self.client_key_file.is_some() {
            return Err("client_cert_file and client_key_file go together".into());
        }
        if facility_code(&self.facility).is_none() {
            return Err(format!("unknown facility `{}`", self.facility));
        }
        if severity_code(&self.severity).is_none() {
            return Err(format!("unknown severity `{}`", self.severity));
        }
        if !header_field_ok(&self.app_name, 48) {
            return Err("app_name must be 1-48 printable ASCII characters without spaces".into());
        }
        if let Some(h) = &self.hostname {
            if !header_field_ok(h, 255) {
                return Err(
                    "hostname must be 1-255 printable ASCII characters without spaces".into(),
                );
            }
        }
        let max = self.max_message_bytes();
        if max < MIN_MESSAGE {
            return Err(format!("max_message_bytes must be at least {MIN_MESSAGE}"));
        }
        if self.transport == Transport::Udp && max > UDP_MAX {
            return Err(format!(
                "max_message_bytes must be at most {UDP_MAX} for udp (one datagram)"
            ));
        }
        if self.timeout.is_zero() {
            return Err("timeout must be more than 0s".into());
        }
        Ok(())
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.unwrap_or(match self.transport {
            Transport::Udp => 1472,
            _ => 65_000,
        })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::sinks::syslog) fn config(text: &str) -> SyslogConfig {
        let c: SyslogConfig = toml_like(text);
        c.validate().unwrap();
        c
    }

    /// Parses `key = value` lines through serde_json (the config crate is not needed here).
    pub(in crate::sinks::syslog) fn toml_like(text: &str) -> SyslogConfig {
        let cfg = ::config::Config::builder()
            .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
            .build()
            .unwrap();
        cfg.try_deserialize().unwrap()
    }

    #[test]
    fn validation_names_the_problem() {
        let bad = |t: &str| toml_like(t).validate().unwrap_err();
        assert!(bad("transport = \"tcp\"").contains("address"));
        assert!(bad("address = \"nohost\"").contains("host:port"));
        assert!(bad("address = \"udp://siem.example:514\"").contains("has a scheme"));
        assert!(
            bad("transport = \"udp\"\naddress = \"h:1\"\nframing = \"newline\"")
                .contains("framing")
        );
        assert!(bad("address = \"h:1\"\nca_file = \"/x\"").contains("tls"));
        assert!(bad("address = \"h:1\"\nfacility = \"nope\"").contains("facility"));
        assert!(bad("address = \"h:1\"\nseverity = \"loud\"").contains("severity"));
        assert!(
            bad("transport = \"udp\"\naddress = \"h:1\"\nmax_message_bytes = 70000")
                .contains("65507")
        );
        assert!(
            bad("transport = \"tls\"\naddress = \"h:1\"\nclient_cert_file = \"/c\"")
                .contains("together")
        );
        assert!(bad("address = \"h:1\"\napp_name = \"has space\"").contains("app_name"));
    }
}
