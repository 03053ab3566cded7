//! The syslog sink: one syslog message per event, over UDP (RFC 5426), TCP (RFC 6587), TLS
//! (RFC 5425) or the local Unix socket (`/dev/log`).
//!
//! Message: RFC 5424 by default,
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - EVENT-TYPE [tapfwd@32473 tenant="acme" eventType="messagesDelivered"] RAW`,
//! or RFC 3164, `<PRI>Mmm dd hh:mm:ss HOSTNAME APP-NAME: tenant=acme eventType=messagesDelivered RAW`.
//! TIMESTAMP is the event's own time (`messageTime`/`clickTime`, UTC), or the send time when the
//! event has none. RAW is the event's JSON exactly as the API sent it (invariant 5), except when
//! it is longer than `max_message_bytes` allows (`oversize`) or, with `framing = "newline"`, when
//! it contains CR/LF bytes, which are sent as spaces (JSON allows them only as whitespace between
//! tokens, so the event means the same).
//!
//! **Delivered** (invariant 1) means, for a batch:
//! - `tcp`/`tls`: every message written and flushed on a connection that was open before the
//!   write and that the server had not closed after the flush (a non-blocking peek sees neither
//!   end-of-stream nor an error). Plain syslog over TCP has no application acknowledgement: bytes
//!   the server's kernel accepted but the server never processed (it crashed, or was stopped with
//!   unread data in its socket) are lost without either side knowing. The check catches a server
//!   that went away *before* the batch; it cannot catch one that dies in the milliseconds after.
//!   Use RELP or Kafka where that matters.
//! - `udp`: every datagram handed to the kernel. Nothing more can be known; a datagram can be
//!   lost on the way or dropped by a busy server. An ICMP "port unreachable" from a previous
//!   datagram surfaces as a refused send and holds the checkpoint, so a server that is down is
//!   noticed, but the datagrams sent before the ICMP arrived are lost.
//! - `unix`: every datagram accepted by the local syslog socket (the kernel queues it for the
//!   local daemon; a full queue blocks rather than drops).
//!
//! A failed write drops the connection; the next delivery reconnects, at most once per backoff
//! step (shared by every tenant using the sink), so thousands of tenants do not hammer a server
//! that is down.

use std::io::Write as _;
use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

use super::{Commit, Sink, SinkError};
use crate::backoff;
use crate::event::{Batch, EventKind};

/// The private enterprise number used in the structured-data id (`tapfwd@32473`; 32473 is the
/// number RFC 5612 reserves for documentation and examples).
pub const SD_ID: &str = "tapfwd@32473";

/// The marker appended to a truncated message. `N` is the event's full size in bytes.
/// Truncation cuts the JSON, so a truncated event no longer parses.
pub fn truncation_marker(original: usize) -> String {
    format!("...[tapfwd: truncated, event was {original} bytes]")
}

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

fn severity_code(name: &str) -> Option<u8> {
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

fn facility_code(name: &str) -> Option<u8> {
    name.parse::<syslog::Facility>().ok().map(|f| f as u8)
}

fn header_field_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (33..=126).contains(&b))
}

impl SyslogConfig {
    pub fn validate(&self) -> Result<(), String> {
        match (self.transport, &self.address) {
            (Transport::Unix, _) => {}
            (_, None) => return Err("address (host:port) is required".into()),
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

/// Turns events into syslog messages; pure, so it is tested without a server.
#[derive(Debug, Clone)]
pub struct Encoder {
    format: Format,
    framing: Option<Framing>,
    pri: u8,
    hostname: String,
    app_name: String,
    max: usize,
    oversize: Oversize,
}

/// Counts of what an encoded batch needed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EncodeStats {
    pub truncated: usize,
    pub largest: usize,
}

impl Encoder {
    pub fn new(config: &SyslogConfig) -> Encoder {
        let hostname = config.hostname.clone().unwrap_or_else(|| {
            // The syslog crate's host name detection; `-` (NILVALUE) when it fails.
            syslog::Formatter5424::default()
                .hostname
                .filter(|h| header_field_ok(h, 255))
                .unwrap_or_else(|| "-".into())
        });
        Encoder {
            format: config.format,
            framing: match config.transport {
                Transport::Tcp | Transport::Tls => Some(config.framing.unwrap_or_default()),
                Transport::Udp | Transport::Unix => None,
            },
            pri: facility_code(&config.facility).unwrap_or(8)
                | severity_code(&config.severity).unwrap_or(6),
            hostname,
            app_name: config.app_name.clone(),
            max: config.max_message_bytes(),
            oversize: config.oversize,
        }
    }

    /// The header and structured data of one message, up to and including the space before MSG.
    fn header(&self, out: &mut Vec<u8>, tenant: &str, kind: EventKind, time_ms: Option<i64>) {
        let time = time_ms
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
            .unwrap_or_else(Utc::now);
        match self.format {
            Format::Rfc5424 => {
                let _ = write!(
                    out,
                    "<{}>1 {} {} {} - {} {} ",
                    self.pri,
                    time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                    self.hostname,
                    self.app_name,
                    kind.as_str(),
                    structured_data(tenant, kind)
                );
            }
            Format::Rfc3164 => {
                let _ = write!(
                    out,
                    "<{}>{} {} {}: tenant={} eventType={} ",
                    self.pri,
                    rfc3164_time(time),
                    self.hostname,
                    self.app_name,
                    tenant,
                    kind.as_str()
                );
            }
        }
    }

    /// Appends one event as a message (framed for TCP/TLS). `Err` names the event that does
    /// not fit when `oversize = "reject"`.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        tenant: &str,
        kind: EventKind,
        time_ms: Option<i64>,
        raw: &[u8],
        stats: &mut EncodeStats,
    ) -> Result<(), String> {
        let mut msg = Vec::with_capacity(raw.len() + 160);
        self.header(&mut msg, tenant, kind, time_ms);
        let room = self.max.saturating_sub(msg.len());
        stats.largest = stats.largest.max(raw.len());
        if raw.len() <= room {
            msg.extend_from_slice(raw);
        } else {
            match self.oversize {
                Oversize::Reject => {
                    return Err(format!(
                        "a {kind} event of {} bytes does not fit in max_message_bytes = {} (with a {}-byte header); raise max_message_bytes or set oversize = \"truncate\"",
                        raw.len(),
                        self.max,
                        msg.len()
                    ))
                }
                Oversize::Truncate => {
                    let marker = truncation_marker(raw.len());
                    let mut keep = room.saturating_sub(marker.len());
                    // Cut on a UTF-8 character boundary.
                    while keep > 0 && keep < raw.len() && (raw[keep] & 0xC0) == 0x80 {
                        keep -= 1;
                    }
                    msg.extend_from_slice(&raw[..keep]);
                    msg.extend_from_slice(marker.as_bytes());
                    stats.truncated += 1;
                }
            }
        }
        match self.framing {
            Some(Framing::OctetCounting) => {
                let _ = write!(out, "{} ", msg.len());
                out.extend_from_slice(&msg);
            }
            Some(Framing::Newline) => {
                out.extend(
                    msg.iter()
                        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
                );
                out.push(b'\n');
            }
            None => out.extend_from_slice(&msg),
        }
        Ok(())
    }
}

/// `[tapfwd@32473 tenant="acme" eventType="messagesDelivered"]`, escaped per RFC 5424 §6.3.3 by
/// the syslog crate's formatter (`"`, `\` and `]` get a backslash).
pub fn structured_data(tenant: &str, kind: EventKind) -> String {
    let mut params = std::collections::BTreeMap::new();
    params.insert("tenant".to_string(), tenant.to_string());
    params.insert("eventType".to_string(), kind.as_str().to_string());
    let mut sd = std::collections::BTreeMap::new();
    sd.insert(SD_ID.to_string(), params);
    // BTreeMap order puts eventType before tenant; that is fine for any parser.
    syslog::Formatter5424::default().format_5424_structured_data(sd)
}

/// RFC 3164 TIMESTAMP: `Mmm dd hh:mm:ss`, day padded with a space, in UTC (3164 has no zone).
fn rfc3164_time(t: DateTime<Utc>) -> String {
    t.format("%b %e %H:%M:%S").to_string()
}

/// A TCP or TLS byte stream to the server.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
    fn tcp(&self) -> &TcpStream;
}
impl Stream for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}
impl Stream for tokio_rustls::client::TlsStream<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0
    }
}

enum Conn {
    Stream(Box<dyn Stream>),
    Udp(UdpSocket),
    Unix(Arc<std::sync::Mutex<syslog::Logger<syslog::LoggerBackend, ()>>>),
}

struct State {
    conn: Option<Conn>,
    /// Failed connection attempts in a row, and when the next may be made.
    failures: u32,
    next_attempt: Option<Instant>,
}

pub struct SyslogSink {
    name: String,
    transport: Transport,
    address: Option<String>,
    timeout: Duration,
    encoder: Encoder,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    state: Mutex<State>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::Unavailable(format!("{what}: {e}"))
}

impl SyslogSink {
    /// Builds the sink; reads the TLS files (a missing or bad file is a config error). Connects
    /// on the first delivery, so a server that is down does not stop the daemon from starting.
    pub fn new(name: &str, config: &SyslogConfig) -> Result<SyslogSink, SinkError> {
        let tls = match config.transport {
            Transport::Tls => Some(tls_setup(config)?),
            _ => None,
        };
        Ok(SyslogSink {
            name: name.to_string(),
            transport: config.transport,
            address: config.address.clone(),
            timeout: config.timeout,
            encoder: Encoder::new(config),
            tls,
            state: Mutex::new(State {
                conn: None,
                failures: 0,
                next_attempt: None,
            }),
        })
    }

    fn address(&self) -> &str {
        self.address.as_deref().unwrap_or("")
    }

    async fn connect(&self) -> Result<Conn, SinkError> {
        let addr = self.address();
        let timeout = self.timeout;
        match self.transport {
            Transport::Udp => {
                let target = tokio::net::lookup_host(addr)
                    .await
                    .map_err(|e| unavailable(&format!("cannot resolve {addr}"), e))?
                    .next()
                    .ok_or_else(|| SinkError::Unavailable(format!("{addr} has no address")))?;
                let local = if target.is_ipv4() {
                    "0.0.0.0:0"
                } else {
                    "[::]:0"
                };
                let sock = UdpSocket::bind(local)
                    .await
                    .map_err(|e| unavailable("cannot bind a udp socket", e))?;
                sock.connect(target)
                    .await
                    .map_err(|e| unavailable(&format!("cannot connect udp to {addr}"), e))?;
                Ok(Conn::Udp(sock))
            }
            Transport::Tcp | Transport::Tls => {
                let tcp = tokio::time::timeout(timeout, TcpStream::connect(addr))
                    .await
                    .map_err(|_| SinkError::Unavailable(format!("connecting to {addr} timed out")))?
                    .map_err(|e| unavailable(&format!("cannot connect to {addr}"), e))?;
                let _ = tcp.set_nodelay(true);
                let sock = socket2::SockRef::from(&tcp);
                let _ = sock.set_tcp_keepalive(
                    &socket2::TcpKeepalive::new()
                        .with_time(Duration::from_secs(60))
                        .with_interval(Duration::from_secs(10)),
                );
                match &self.tls {
                    None => Ok(Conn::Stream(Box::new(tcp))),
                    Some((connector, server_name)) => {
                        let tls = tokio::time::timeout(
                            timeout,
                            connector.connect(server_name.clone(), tcp),
                        )
                        .await
                        .map_err(|_| {
                            SinkError::Unavailable(format!("tls handshake with {addr} timed out"))
                        })?
                        .map_err(|e| tls_error(addr, e))?;
                        Ok(Conn::Stream(Box::new(tls)))
                    }
                }
            }
            Transport::Unix => {
                let path = self.address.clone();
                let logger = tokio::task::spawn_blocking(move || match path {
                    Some(p) => syslog::unix_custom((), p),
                    None => syslog::unix(()),
                })
                .await
                .map_err(|e| unavailable("unix socket task failed", e))?
                .map_err(|e| unavailable("cannot open the local syslog socket", e))?;
                Ok(Conn::Unix(Arc::new(std::sync::Mutex::new(logger))))
            }
        }
    }

    /// Sends `messages` (one entry per event; framed for TCP/TLS) on `conn`.
    async fn send(&self, conn: &mut Conn, bytes: &[u8], lens: &[usize]) -> Result<(), SinkError> {
        let addr = self.address();
        match conn {
            Conn::Stream(stream) => {
                // A server that closed the connection since the last batch is noticed here,
                // before any byte is written into a dead socket.
                check_open(stream.as_mut(), addr).await?;
                tokio::time::timeout(self.timeout, async {
                    stream.write_all(bytes).await?;
                    stream.flush().await
                })
                .await
                .map_err(|_| SinkError::Unavailable(format!("writing to {addr} timed out")))?
                .map_err(|e| unavailable(&format!("cannot write to {addr}"), e))?;
                check_open(stream.as_mut(), addr).await
            }
            Conn::Udp(sock) => {
                let mut at = 0;
                for &len in lens {
                    let n = tokio::time::timeout(self.timeout, sock.send(&bytes[at..at + len]))
                        .await
                        .map_err(|_| {
                            SinkError::Unavailable(format!("sending to {addr} timed out"))
                        })?
                        .map_err(|e| unavailable(&format!("cannot send to {addr}"), e))?;
                    if n != len {
                        return Err(SinkError::Unavailable(format!(
                            "sent {n} of {len} bytes to {addr}"
                        )));
                    }
                    at += len;
                }
                Ok(())
            }
            Conn::Unix(logger) => {
                let logger = logger.clone();
                let bytes = bytes.to_vec();
                let lens = lens.to_vec();
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let mut logger = logger
                        .lock()
                        .map_err(|_| std::io::Error::other("syslog socket lock poisoned"))?;
                    let mut at = 0;
                    for len in lens {
                        // One write is one datagram (or one NUL-terminated stream message).
                        let n = std::io::Write::write(&mut logger.backend, &bytes[at..at + len])?;
                        if n != len {
                            return Err(std::io::Error::other(format!("wrote {n} of {len} bytes")));
                        }
                        at += len;
                    }
                    std::io::Write::flush(&mut logger.backend)
                })
                .await
                .map_err(|e| unavailable("unix socket task failed", e))?
                .map_err(|e| unavailable("cannot write to the local syslog socket", e))
            }
        }
    }
}

/// Fails when the server has closed the connection or reset it. Syslog servers never send
/// data, so anything readable is end-of-stream, an error, or (TLS) a close_notify alert or a
/// session ticket, which the TLS layer consumes.
async fn check_open(stream: &mut dyn Stream, addr: &str) -> Result<(), SinkError> {
    let closed = || SinkError::Unavailable(format!("{addr} closed the connection"));
    let mut probe = [MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(stream.tcp()).peek(&mut probe) {
        Ok(0) => return Err(closed()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => return Ok(()),
        Err(e) => return Err(unavailable(&format!("connection to {addr} failed"), e)),
    }
    // Bytes are waiting: read them through the stream (the TLS layer decodes alerts and
    // tickets). They are there, so this completes at once unless a TLS record is incomplete.
    let mut buf = [0u8; 4096];
    match tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await {
        Ok(Ok(0)) => Err(closed()),
        Ok(Err(e)) => Err(unavailable(&format!("connection to {addr} failed"), e)),
        Ok(Ok(_)) | Err(_) => Ok(()),
    }
}

fn tls_error(addr: &str, e: std::io::Error) -> SinkError {
    // A certificate the server presents that we cannot verify will not verify next time
    // either: that is a configuration problem, not an outage.
    let is_cert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| {
            matches!(
                r,
                rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
            )
        });
    let msg = format!("tls handshake with {addr} failed: {e}");
    if is_cert {
        SinkError::Rejected(msg)
    } else {
        SinkError::Unavailable(msg)
    }
}

fn tls_setup(
    config: &SyslogConfig,
) -> Result<(TlsConnector, rustls::pki_types::ServerName<'static>), SinkError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let bad = |what: String| SinkError::Rejected(what);
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(bad(format!(
                    "ca_file {} holds no certificate",
                    path.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| bad(format!("ca_file {}: {e}", path.display())))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(format!("tls setup: {e}")))?
        .with_root_certificates(roots);
    let client = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(format!("client_cert_file {}: {e}", cert.display())))?;
            if chain.is_empty() {
                return Err(bad(format!(
                    "client_cert_file {} holds no certificate",
                    cert.display()
                )));
            }
            // The key's content never reaches a message; only its path does.
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| bad(format!("client_key_file {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| bad(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    let name = match &config.server_name {
        Some(n) => n.clone(),
        None => {
            let addr = config.address.as_deref().unwrap_or("");
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string()
        }
    };
    let server_name = ServerName::try_from(name.clone())
        .map_err(|e| bad(format!("server name `{name}`: {e}")))?;
    Ok((TlsConnector::from(Arc::new(client)), server_name))
}

/// Reconnection backoff: from 500 ms up to 10 s between attempts, shared by all tenants.
const RECONNECT_BASE: Duration = Duration::from_millis(500);
const RECONNECT_CAP: Duration = Duration::from_secs(10);

#[async_trait]
impl Sink for SyslogSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn deliver(
        &self,
        tenant: &str,
        batch: &Batch,
        commit: Commit<'_>,
    ) -> Result<(), SinkError> {
        let mut bytes = Vec::with_capacity(batch.raw_bytes() + batch.len() * 160);
        let mut lens = Vec::with_capacity(batch.len());
        let mut stats = EncodeStats::default();
        for (meta, raw) in batch.iter() {
            let before = bytes.len();
            self.encoder
                .encode(&mut bytes, tenant, meta.kind, meta.time_ms, raw, &mut stats)
                .map_err(SinkError::Rejected)?;
            lens.push(bytes.len() - before);
        }
        if stats.truncated > 0 {
            tracing::warn!(sink = %self.name, tenant = %tenant, truncated = stats.truncated, largest_bytes = stats.largest,
                max_message_bytes = self.encoder.max, "events longer than max_message_bytes were truncated");
        }
        let mut state = self.state.lock().await;
        let mut conn = match state.conn.take() {
            Some(c) => c,
            None => {
                if let Some(at) = state.next_attempt {
                    let now = Instant::now();
                    if now < at {
                        return Err(SinkError::Unavailable(format!(
                            "{}: reconnecting in {} ms",
                            self.name,
                            (at - now).as_millis()
                        )));
                    }
                }
                match self.connect().await {
                    Ok(c) => {
                        if state.failures > 0 {
                            tracing::info!(sink = %self.name, "syslog server reachable again");
                        }
                        state.failures = 0;
                        state.next_attempt = None;
                        c
                    }
                    Err(e) => {
                        let wait = backoff::delay(state.failures, RECONNECT_BASE, RECONNECT_CAP);
                        state.failures = state.failures.saturating_add(1);
                        state.next_attempt = Some(Instant::now() + wait);
                        return Err(e);
                    }
                }
            }
        };
        // On any failure the connection is dropped (not put back) and the next delivery
        // reconnects.
        self.send(&mut conn, &bytes, &lens).await?;
        state.conn = Some(conn);
        commit(None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> SyslogConfig {
        let c: SyslogConfig = toml_like(text);
        c.validate().unwrap();
        c
    }

    /// Parses `key = value` lines through serde_json (the config crate is not needed here).
    fn toml_like(text: &str) -> SyslogConfig {
        let cfg = ::config::Config::builder()
            .add_source(::config::File::from_str(text, ::config::FileFormat::Toml))
            .build()
            .unwrap();
        cfg.try_deserialize().unwrap()
    }

    const TIME: i64 = 1_763_640_007_123; // 2025-11-20T12:00:07.123Z

    #[test]
    fn rfc5424_uses_event_time_structured_data_and_raw_event() {
        let c = config(
            "address = \"h:514\"\nhostname = \"fwd1\"\nfacility = \"local4\"\nseverity = \"notice\"",
        );
        let e = Encoder::new(&c);
        let mut out = Vec::new();
        let raw = br#"{"GUID":"g","x":"]\"\\"}"#;
        e.encode(
            &mut out,
            "acme",
            EventKind::MessagesDelivered,
            Some(TIME),
            raw,
            &mut EncodeStats::default(),
        )
        .unwrap();
        let msg = format!(
            "<165>1 2025-11-20T12:00:07.123Z fwd1 tapfwd - messagesDelivered [tapfwd@32473 eventType=\"messagesDelivered\" tenant=\"acme\"] {}",
            std::str::from_utf8(raw).unwrap()
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{} {msg}", msg.len())
        );
    }

    #[test]
    fn structured_data_values_are_escaped() {
        let sd = {
            let mut p = std::collections::BTreeMap::new();
            p.insert("tenant".to_string(), "a\"b\\c]d".to_string());
            let mut sd = std::collections::BTreeMap::new();
            sd.insert(SD_ID.to_string(), p);
            syslog::Formatter5424::default().format_5424_structured_data(sd)
        };
        assert_eq!(sd, r#"[tapfwd@32473 tenant="a\"b\\c\]d"]"#);
    }

    #[test]
    fn rfc3164_has_prefix_and_space_padded_day() {
        let c = config(
            "transport = \"udp\"\naddress = \"h:514\"\nformat = \"rfc3164\"\nhostname = \"fwd1\"",
        );
        let e = Encoder::new(&c);
        let mut out = Vec::new();
        let t = Utc.with_ymd_and_hms(2026, 11, 3, 4, 5, 6).unwrap();
        e.encode(
            &mut out,
            "acme",
            EventKind::ClicksPermitted,
            Some(t.timestamp_millis()),
            b"{}",
            &mut EncodeStats::default(),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<14>Nov  3 04:05:06 fwd1 tapfwd: tenant=acme eventType=clicksPermitted {}"
        );
    }

    #[test]
    fn missing_time_falls_back_to_now() {
        let c = config("transport = \"udp\"\naddress = \"h:514\"\nhostname = \"h\"");
        let e = Encoder::new(&c);
        let mut out = Vec::new();
        let before = Utc::now();
        e.encode(
            &mut out,
            "t",
            EventKind::ClicksBlocked,
            None,
            b"{}",
            &mut EncodeStats::default(),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let ts = text.split(' ').nth(1).unwrap();
        let t = DateTime::parse_from_rfc3339(ts).unwrap();
        assert!(t >= before - chrono::Duration::seconds(1), "{text}");
    }

    #[test]
    fn newline_framing_replaces_line_breaks() {
        let c = config("address = \"h:514\"\nframing = \"newline\"\nhostname = \"h\"");
        let e = Encoder::new(&c);
        let mut out = Vec::new();
        e.encode(
            &mut out,
            "t",
            EventKind::ClicksBlocked,
            Some(TIME),
            b"{\n  \"a\": 1\r\n}",
            &mut EncodeStats::default(),
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("{   \"a\": 1  }\n"), "{text:?}");
        assert_eq!(text.matches('\n').count(), 1);
    }

    #[test]
    fn oversize_is_truncated_with_marker_or_rejected_naming_the_size() {
        let raw = format!("{{\"x\":\"{}é\"}}", "a".repeat(1000));
        let c = config(
            "transport = \"udp\"\naddress = \"h:514\"\nmax_message_bytes = 600\nhostname = \"h\"",
        );
        let e = Encoder::new(&c);
        let mut out = Vec::new();
        let mut stats = EncodeStats::default();
        e.encode(
            &mut out,
            "t",
            EventKind::ClicksBlocked,
            Some(TIME),
            raw.as_bytes(),
            &mut stats,
        )
        .unwrap();
        assert_eq!(out.len(), 600);
        assert_eq!(stats.truncated, 1);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(&truncation_marker(raw.len())), "{text}");

        let c = config(
            "transport = \"udp\"\naddress = \"h:514\"\nmax_message_bytes = 600\noversize = \"reject\"",
        );
        let err = Encoder::new(&c)
            .encode(
                &mut Vec::new(),
                "t",
                EventKind::ClicksBlocked,
                Some(TIME),
                raw.as_bytes(),
                &mut EncodeStats::default(),
            )
            .unwrap_err();
        assert!(err.contains(&format!("{} bytes", raw.len())), "{err}");
    }

    #[test]
    fn validation_names_the_problem() {
        let bad = |t: &str| toml_like(t).validate().unwrap_err();
        assert!(bad("transport = \"tcp\"").contains("address"));
        assert!(bad("address = \"nohost\"").contains("host:port"));
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

    /// Pins what README.md ("Syslog and Kafka sinks") says the `syslog` crate lacks: its TCP writer sends a
    /// message with no octet count and no LF (frames run together), and its formatter stamps
    /// the current time (it takes no timestamp).
    #[test]
    fn syslog_crate_tcp_is_unframed_and_stamps_now() {
        use std::io::Read as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let formatter = syslog::Formatter5424 {
            facility: syslog::Facility::LOG_USER,
            hostname: Some("h".into()),
            process: "p".into(),
            pid: 1,
        };
        let mut logger = syslog::tcp(formatter, addr).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        logger.info((7u32, syslog_crate_sd(), "first")).unwrap();
        logger.info((7u32, syslog_crate_sd(), "second")).unwrap();
        drop(logger);
        let mut got = String::new();
        server.read_to_string(&mut got).unwrap();
        assert!(got.starts_with("<14>1 "), "no octet count: {got:?}");
        assert!(!got.contains('\n'), "no LF either: {got:?}");
        assert!(got.contains("first<14>1 "), "{got:?}");
        let ts = got.split(' ').nth(1).unwrap();
        let t = DateTime::parse_from_rfc3339(ts).unwrap();
        assert!(
            (Utc::now() - t.with_timezone(&Utc)).num_seconds().abs() < 60,
            "{got}"
        );
    }

    fn syslog_crate_sd(
    ) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
        Default::default()
    }

    #[tokio::test]
    async fn unix_datagram_socket_gets_one_message_per_event() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let c = config(&format!(
            "transport = \"unix\"\naddress = {:?}\nhostname = \"h\"",
            path.display().to_string()
        ));
        let sink = SyslogSink::new("local", &c).unwrap();
        let mut b = crate::tap::split::BatchBuilder::new();
        let mut s = crate::tap::split::Splitter::new(crate::tap::split::SplitLimits::default());
        s.feed(
            br#"{"clicksBlocked":[{"id":"1","clickTime":"2025-11-20T12:00:07.123Z"},{"id":"2"}]}"#,
            &mut b,
        )
        .unwrap();
        s.finish().unwrap();
        let committed = std::sync::atomic::AtomicBool::new(false);
        sink.deliver(
            "t",
            &b.take(),
            Box::new(|_| {
                committed.store(true, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }),
        )
        .await
        .unwrap();
        assert!(committed.load(std::sync::atomic::Ordering::SeqCst));
        let mut buf = vec![0u8; 65536];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            "<14>1 2025-11-20T12:00:07.123Z h tapfwd - clicksBlocked [tapfwd@32473 eventType=\"clicksBlocked\" tenant=\"t\"] {\"id\":\"1\",\"clickTime\":\"2025-11-20T12:00:07.123Z\"}"
        );
        let n = server.recv(&mut buf).unwrap();
        assert!(std::str::from_utf8(&buf[..n])
            .unwrap()
            .ends_with(" {\"id\":\"2\"}"));
    }

    #[tokio::test]
    async fn tcp_delivery_commits_once_and_notices_a_closed_server() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let c = config(&format!("address = \"{addr}\"\nhostname = \"h\""));
        let sink = SyslogSink::new("siem", &c).unwrap();
        let mut b = crate::tap::split::BatchBuilder::new();
        let mut s = crate::tap::split::Splitter::new(crate::tap::split::SplitLimits::default());
        s.feed(br#"{"clicksBlocked":[{"id":"1"},{"id":"2"}]}"#, &mut b)
            .unwrap();
        s.finish().unwrap();
        let batch = b.take();
        let accept = tokio::spawn(async move { listener.accept().await.unwrap().0 });
        let commits = std::sync::atomic::AtomicUsize::new(0);
        sink.deliver(
            "t",
            &batch,
            Box::new(|_| {
                commits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(())
            }),
        )
        .await
        .unwrap();
        assert_eq!(commits.load(std::sync::atomic::Ordering::SeqCst), 1);
        let mut server = accept.await.unwrap();
        let mut got = vec![0u8; 4096];
        let n = server.read(&mut got).await.unwrap();
        let text = String::from_utf8_lossy(&got[..n]).to_string();
        assert!(text.contains("{\"id\":\"1\"}"), "{text}");
        assert!(text.contains("{\"id\":\"2\"}"), "{text}");

        // The server goes away: the next batch fails and is not committed.
        drop(server);
        let err = sink
            .deliver(
                "t",
                &batch,
                Box::new(|_| panic!("must not commit to a closed connection")),
            )
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
    }
}
