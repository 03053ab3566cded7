//! RFC 5424 and RFC 3164 messages, framed for TCP (RFC 6587) or bare for datagrams.
//!
//! [`Encoder`] is pure (no I/O), so every byte of a message is tested without a server. It keeps
//! invariant 5: the event's raw JSON follows the header unchanged, except that an event longer
//! than `max_message_bytes` allows is cut and marked ([`truncation_marker`]) or refused, and that
//! with newline framing CR and LF bytes are sent as spaces (JSON allows them only between tokens).
//! The tenant and event type travel in the header, beside the event and never inside it: as
//! structured data ([`structured_data`]) in RFC 5424, as `tenant=… eventType=…` in RFC 3164.

use std::io::Write as _;

use chrono::{DateTime, TimeZone, Utc};

use super::config::{
    facility_code, header_field_ok, severity_code, Format, Framing, Oversize, SyslogConfig,
    Transport,
};
use crate::event::EventKind;
use crate::sinks::encode::{enrichment_members, Beside};

/// The private enterprise number used in the structured-data id (`tapfwd@32473`; 32473 is the
/// number RFC 5612 reserves for documentation and examples).
pub const SD_ID: &str = "tapfwd@32473";

/// The marker appended to a truncated message. `N` is the event's full size in bytes.
/// Truncation cuts the JSON, so a truncated event no longer parses.
pub fn truncation_marker(original: usize) -> String {
    format!("...[tapfwd: truncated, event was {original} bytes]")
}

/// One event to encode: its raw bytes and what travels beside it (customer, enrichment).
#[derive(Debug, Clone, Copy)]
pub struct Event<'a> {
    pub raw: &'a [u8],
    pub beside: Beside<'a>,
}

impl<'a> Event<'a> {
    /// An event with nothing beside it.
    pub fn plain(raw: &'a [u8]) -> Event<'a> {
        Event {
            raw,
            beside: Beside::default(),
        }
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
    /// Largest message in bytes (`max_message_bytes`).
    pub(super) max: usize,
    oversize: Oversize,
}

/// Counts of what an encoded batch needed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EncodeStats {
    pub truncated: usize,
    pub largest: usize,
    /// Messages sent without their enrichment because the event would not fit beside it.
    pub enrichment_dropped: usize,
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
    ///
    /// `enrichment` (RFC 5424 only) adds one structured-data parameter per enrichment member.
    fn header(
        &self,
        out: &mut Vec<u8>,
        tenant: &str,
        kind: EventKind,
        time_ms: Option<i64>,
        customer: Option<&str>,
        enrichment: &[(String, String)],
    ) {
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
                    structured_data(tenant, kind, customer, enrichment)
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
                if let Some(c) = customer {
                    let _ = write!(out, "customer={} ", printable(c));
                }
            }
        }
    }

    /// Appends one event as a message (framed for TCP/TLS). `Err` names the event that does
    /// not fit when `oversize = "reject"`.
    ///
    /// `enrichment` (`Batch::enrichment`) goes into the RFC 5424 structured data, one parameter
    /// per member (`threats="{…}"`, `campaigns="{…}"`, the member's JSON as the value). It never
    /// costs the event: when the event would not fit beside it, the message goes without it
    /// (counted in `stats.enrichment_dropped`). RFC 3164 has no structured data and carries none.
    pub fn encode(
        &self,
        out: &mut Vec<u8>,
        tenant: &str,
        kind: EventKind,
        time_ms: Option<i64>,
        event: Event<'_>,
        stats: &mut EncodeStats,
    ) -> Result<(), String> {
        let Event { raw, beside } = event;
        let mut msg = Vec::with_capacity(raw.len() + 160);
        let members = match (self.format, beside.enrichment) {
            (Format::Rfc5424, Some(m)) => enrichment_members(m),
            _ => Vec::new(),
        };
        let customer = beside.customer;
        self.header(&mut msg, tenant, kind, time_ms, customer, &members);
        if !members.is_empty() && msg.len() + raw.len() > self.max {
            msg.clear();
            self.header(&mut msg, tenant, kind, time_ms, customer, &[]);
            stats.enrichment_dropped += 1;
        }
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
pub fn structured_data(
    tenant: &str,
    kind: EventKind,
    customer: Option<&str>,
    enrichment: &[(String, String)],
) -> String {
    let mut params = std::collections::BTreeMap::new();
    if let Some(c) = customer {
        params.insert("customer".to_string(), printable(c));
    }
    for (name, json) in enrichment {
        params.insert(name.clone(), json.clone());
    }
    params.insert("tenant".to_string(), tenant.to_string());
    params.insert("eventType".to_string(), kind.as_str().to_string());
    let mut sd = std::collections::BTreeMap::new();
    sd.insert(SD_ID.to_string(), params);
    // BTreeMap order puts eventType before tenant; that is fine for any parser.
    syslog::Formatter5424::default().format_5424_structured_data(sd)
}

/// A customer id as a syslog header carries it: a space or a control character (a NUL, a line
/// break) would end the RFC 3164 `key=value` pair or break the frame, so each is replaced with
/// `_`. The ids the splitter takes are printable ASCII already (`event::is_customer_id`); this
/// keeps the header safe whatever a caller passes.
fn printable(customer: &str) -> String {
    customer
        .chars()
        .map(|ch| {
            if ch.is_whitespace() || ch.is_control() {
                '_'
            } else {
                ch
            }
        })
        .collect()
}

/// RFC 3164 TIMESTAMP: `Mmm dd hh:mm:ss`, day padded with a space, in UTC (3164 has no zone).
fn rfc3164_time(t: DateTime<Utc>) -> String {
    t.format("%b %e %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::syslog::config::tests::config;

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
            Event::plain(raw),
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
    fn enrichment_goes_into_structured_data_and_gives_way_to_the_event() {
        let c = config("address = \"h:514\"\nhostname = \"fwd1\"\nmax_message_bytes = 480");
        let e = Encoder::new(&c);
        let raw = br#"{"GUID":"g"}"#;
        let members = br#""threats":{"t1":{"name":"a]b"}}"#;
        let mut out = Vec::new();
        let mut stats = EncodeStats::default();
        e.encode(
            &mut out,
            "acme",
            EventKind::ClicksBlocked,
            Some(TIME),
            Event {
                raw,
                beside: Beside {
                    customer: None,
                    enrichment: Some(members),
                    snapshot: None,
                },
            },
            &mut stats,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with(
                r#"[tapfwd@32473 eventType="clicksBlocked" tenant="acme" threats="{\"t1\":{\"name\":\"a\]b\"}}"] {"GUID":"g"}"#
            ),
            "{text}"
        );
        assert_eq!(stats.enrichment_dropped, 0);

        // An event that fits only without the enrichment goes whole, without it.
        let big = format!(r#"{{"GUID":"{}"}}"#, "x".repeat(338));
        let mut out = Vec::new();
        e.encode(
            &mut out,
            "acme",
            EventKind::ClicksBlocked,
            Some(TIME),
            Event {
                raw: big.as_bytes(),
                beside: Beside {
                    customer: None,
                    enrichment: Some(members),
                    snapshot: None,
                },
            },
            &mut stats,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with(&format!("tenant=\"acme\"] {big}")), "{text}");
        assert_eq!((stats.enrichment_dropped, stats.truncated), (1, 0));
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

    /// Issue 20, item 8: the customer beside an event is escaped for each format: in RFC 5424
    /// structured data `"`, `\` and `]` get a backslash; in either format a NUL, a line break or
    /// a space becomes `_`, so no customer id can end the header or the frame.
    #[test]
    fn the_customer_is_escaped_in_either_format() {
        let encode = |format: &str, customer: &str| {
            let c = config(&format!(
                "transport = \"udp\"\naddress = \"h:514\"\nformat = \"{format}\"\nhostname = \"fwd1\""
            ));
            let mut out = Vec::new();
            Encoder::new(&c)
                .encode(
                    &mut out,
                    "acme",
                    EventKind::ClicksPermitted,
                    Some(TIME),
                    Event {
                        raw: b"{}",
                        beside: Beside {
                            customer: Some(customer),
                            enrichment: None,
                            snapshot: None,
                        },
                    },
                    &mut EncodeStats::default(),
                )
                .unwrap();
            String::from_utf8(out).unwrap()
        };
        let text = encode("rfc5424", "4\"7\\1]1");
        assert!(
            text.contains(r#"customer="4\"7\\1\]1" eventType="clicksPermitted""#),
            "{text}"
        );
        let text = encode("rfc5424", "47\u{0}1\n1 x");
        assert!(text.contains(r#"customer="47_1_1_x""#), "{text:?}");
        let text = encode("rfc3164", "47\u{0}1\n1 x");
        assert!(
            text.ends_with("tenant=acme eventType=clicksPermitted customer=47_1_1_x {}"),
            "{text:?}"
        );
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
            Event::plain(b"{}"),
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
            Event::plain(b"{}"),
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
            Event::plain(b"{\n  \"a\": 1\r\n}"),
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
            Event::plain(raw.as_bytes()),
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
                Event::plain(raw.as_bytes()),
                &mut EncodeStats::default(),
            )
            .unwrap_err();
        assert!(err.contains(&format!("{} bytes", raw.len())), "{err}");
    }

    /// Pins what docs/sinks.md ("Syslog and Kafka sinks") says the `syslog` crate lacks: its TCP writer sends a
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
}
