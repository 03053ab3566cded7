//! Getting bytes to the syslog server: UDP, TCP, TLS or the local Unix socket, with TLS setup.
//!
//! [`Endpoint`] is where and how the sink sends; [`Endpoint::send`] decides what invariant 1 can
//! promise per transport (see the sink's header): a TCP or TLS batch counts only when it was
//! written and flushed on a connection that [`check_open`] found open before the write and after
//! the flush. TLS always verifies the server; a certificate that fails to verify is a
//! configuration error (`Rejected`), not an outage. Invariant 7: the client key's content never
//! reaches an error message, only its path.

use std::mem::MaybeUninit;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_rustls::rustls;
use tokio_rustls::TlsConnector;

use super::config::{SyslogConfig, Transport};
use crate::sinks::SinkError;

/// A TCP or TLS byte stream to the server.
pub(super) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
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

/// An open connection; dropped after any failure.
pub(super) enum Conn {
    Stream(Box<dyn Stream>),
    Udp(UdpSocket),
    Unix(Arc<std::sync::Mutex<syslog::Logger<syslog::LoggerBackend, ()>>>),
}

/// The server a sink sends to, and how.
pub(super) struct Endpoint {
    transport: Transport,
    address: Option<String>,
    /// Longest wait for a connection, TLS handshake or write.
    timeout: Duration,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> SinkError {
    SinkError::Unavailable(format!("{what}: {e}"))
}
impl Endpoint {
    /// Reads the TLS files (a missing or bad file is a config error); connects nothing.
    pub(super) fn new(config: &SyslogConfig) -> Result<Endpoint, SinkError> {
        let tls = match config.transport {
            Transport::Tls => Some(tls_setup(config)?),
            _ => None,
        };
        Ok(Endpoint {
            transport: config.transport,
            address: config.address.clone(),
            timeout: config.timeout,
            tls,
        })
    }

    fn address(&self) -> &str {
        self.address.as_deref().unwrap_or("")
    }

    pub(super) async fn connect(&self) -> Result<Conn, SinkError> {
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
    pub(super) async fn send(
        &self,
        conn: &mut Conn,
        bytes: &[u8],
        lens: &[usize],
    ) -> Result<(), SinkError> {
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
