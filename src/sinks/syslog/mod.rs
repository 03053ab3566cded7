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

mod config;
mod encode;
mod transport;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{Commit, Sink, SinkError};
use crate::backoff;
use crate::event::Batch;
use crate::sinks::encode::Beside;
pub use config::{Format, Framing, Oversize, SyslogConfig, Transport};
pub use encode::{structured_data, truncation_marker, EncodeStats, Encoder, Event, SD_ID};
use transport::{Conn, Endpoint};

/// The connection and its reconnection backoff, shared by every tenant using the sink.
struct State {
    /// The open connection; `None` before the first delivery and after any failure.
    conn: Option<Conn>,
    /// Failed connection attempts in a row, and when the next may be made.
    failures: u32,
    next_attempt: Option<Instant>,
}

/// One syslog server, shared by every tenant that names the sink.
pub struct SyslogSink {
    /// The sink's name in the config, for logs and errors.
    name: String,
    /// Turns events into messages, framed for the transport.
    encoder: Encoder,
    /// Where the messages go, and how.
    endpoint: Endpoint,
    /// Locked for a whole delivery, so batches never interleave on the connection.
    state: Mutex<State>,
}

impl SyslogSink {
    /// Builds the sink; reads the TLS files (a missing or bad file is a config error). Connects
    /// on the first delivery, so a server that is down does not stop the daemon from starting.
    pub fn new(name: &str, config: &SyslogConfig) -> Result<SyslogSink, SinkError> {
        let endpoint = Endpoint::new(config)?;
        Ok(SyslogSink {
            name: name.to_string(),
            encoder: Encoder::new(config),
            endpoint,
            state: Mutex::new(State {
                conn: None,
                failures: 0,
                next_attempt: None,
            }),
        })
    }
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
                .encode(
                    &mut bytes,
                    tenant,
                    meta.kind,
                    meta.time_ms,
                    Event {
                        raw,
                        beside: Beside::of(batch, meta),
                    },
                    &mut stats,
                )
                .map_err(SinkError::Rejected)?;
            lens.push(bytes.len() - before);
        }
        if stats.truncated > 0 {
            tracing::warn!(sink = %self.name, tenant = %tenant, truncated = stats.truncated, largest_bytes = stats.largest,
                max_message_bytes = self.encoder.max, "events longer than max_message_bytes were truncated");
        }
        if stats.enrichment_dropped > 0 {
            tracing::warn!(sink = %self.name, tenant = %tenant, events = stats.enrichment_dropped,
                max_message_bytes = self.encoder.max, "events sent without their enrichment: it did not fit in max_message_bytes beside them");
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
                match self.endpoint.connect().await {
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
        self.endpoint.send(&mut conn, &bytes, &lens).await?;
        state.conn = Some(conn);
        commit(None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::config::tests::config;
    use super::*;
    use tokio::io::AsyncReadExt;

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
        let mut b = crate::api::split::BatchBuilder::new();
        let mut s = crate::api::split::Splitter::new(crate::api::split::SplitLimits::default());
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
        let mut b = crate::api::split::BatchBuilder::new();
        let mut s = crate::api::split::Splitter::new(crate::api::split::SplitLimits::default());
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
