//! The Sentinel sink's `layout = "proofpoint_tap_solution"`: each TAP SIEM event as the row the
//! Microsoft Sentinel ProofPointTap solution's data collection rule expects, on its event type's
//! `Custom-ProofPointTAP…V2_CL` stream, so the solution's workbook and analytic rules see it.
//!
//! A row is the API's flat event object with exactly the DCR's columns, each of the type the DCR
//! declares ([`MESSAGE_COLUMNS`], [`CLICK_COLUMNS`]; `deploy/sentinel/proofpoint-tap-solution.json`
//! declares the same, and a test holds the two together), plus the tapfwd tenant in
//! [`TENANT_COLUMN`]. This is the one place where an event is **re-encoded**: the row is built
//! from the parsed raw event (the raw bytes stay the source; nothing is added inside the event's
//! own fields), values are converted to their column's type (`completelyRewritten`, which the
//! API sends as the string `"true"`/`"false"`, becomes a boolean), a field the API spells more
//! than one way (`campaignID`, `threatUrl`, `threatId`: [`SPELLINGS`]) goes to the column the
//! solution declares, and fields the DCR has no column for are left out. Invariant 5 (raw in, raw
//! out) holds for the default layout only; docs/sinks.md ("Microsoft Sentinel") says so.
//!
//! PoD `message` and `maillog` frames go the same way to the input streams the Microsoft
//! Sentinel Proofpoint On Demand solution's DCR declares (`Custom-ProofpointPodMessage`,
//! `Custom-ProofpointPodMailLog`, which its transform writes to the `ProofpointPODMessage_CL` and
//! `ProofpointPODMailLog_CL` tables): the solution's columns, each a top-level field of the frame
//! ([`POD_MESSAGE_COLUMNS`], [`POD_MAILLOG_COLUMNS`]), objects and arrays as `dynamic`, `ts` as
//! the text the frame holds (the DCR's transform makes `eventTime` of it, as the solution's does).
//! `deploy/sentinel/proofpoint-pod-solution.json` ships that DCR with `tenant_s` kept. Kinds no
//! solution has a table for (People, PoD audit) have no stream here, and `tapfwd check` refuses a
//! route that would send them to this layout ([`destination`]).

use serde_json::{Map, Value};

use crate::event::EventKind;
use crate::sinks::encode::{json_str, Beside};

/// A column type as a DCR stream declaration names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    String,
    Int,
    Boolean,
    Datetime,
    Dynamic,
}

impl ColumnType {
    /// The name in a DCR's `streamDeclarations` and a table's schema.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnType::String => "string",
            ColumnType::Int => "int",
            ColumnType::Boolean => "boolean",
            ColumnType::Datetime => "datetime",
            ColumnType::Dynamic => "dynamic",
        }
    }
}

use ColumnType::{Boolean, Datetime, Dynamic, Int, String as Str};

/// The column that holds the tapfwd tenant id. Not `TenantId`: Log Analytics gives every table a
/// `TenantId` column of its own (the workspace id), so the tenant goes in a column of its own.
pub const TENANT_COLUMN: &str = "tenant_s";

/// The column that holds the Essentials child organisation (`customerEid`) of the event; absent
/// from rows of events without one.
pub const CUSTOMER_COLUMN: &str = "customer_s";

/// The column (dynamic) that holds what threat enrichment found for the event
/// (`{"threats":{…},"campaigns":{…}}`); absent from rows of events without enrichment.
pub const ENRICHMENT_COLUMN: &str = "tapfwd_enrichment";

/// The columns of the two message streams (`…MessagesBlockedV2_CL`, `…MessagesDeliveredV2_CL`),
/// in the solution's order: each the API field of the same name.
pub const MESSAGE_COLUMNS: [(&str, ColumnType); 29] = [
    ("spamScore", Int),
    ("phishScore", Int),
    ("threatsInfoMap", Dynamic),
    ("messageTime", Datetime),
    ("impostorScore", Int),
    ("malwareScore", Int),
    ("cluster", Str),
    ("subject", Str),
    ("quarantineFolder", Str),
    ("quarantineRule", Str),
    ("policyRoutes", Dynamic),
    ("modulesRun", Dynamic),
    ("messageSize", Int),
    ("headerFrom", Str),
    ("headerReplyTo", Str),
    ("fromAddress", Dynamic),
    ("ccAddresses", Dynamic),
    ("replyToAddress", Dynamic),
    ("toAddresses", Dynamic),
    ("xmailer", Dynamic),
    ("messageParts", Dynamic),
    ("completelyRewritten", Boolean),
    ("id", Str),
    ("QID", Str),
    ("GUID", Str),
    ("sender", Str),
    ("recipient", Dynamic),
    ("senderIP", Str),
    ("messageID", Str),
];

/// The columns of the two click streams (`…ClicksBlockedV2_CL`, `…ClicksPermittedV2_CL`).
pub const CLICK_COLUMNS: [(&str, ColumnType); 16] = [
    ("url", Str),
    ("classification", Str),
    ("clickTime", Datetime),
    ("threatTime", Datetime),
    ("userAgent", Str),
    ("campaignId", Str),
    ("id", Str),
    ("clickIP", Str),
    ("sender", Str),
    ("recipient", Str),
    ("senderIP", Str),
    ("GUID", Str),
    ("threatID", Str),
    ("threatURL", Str),
    ("threatStatus", Str),
    ("messageID", Str),
];

/// The columns of the PoD solution's message stream (`Custom-ProofpointPodMessage`), in the
/// order its DCR declares them (after `TimeGenerated`, which the transform sets): the frame's
/// top-level fields.
pub const POD_MESSAGE_COLUMNS: [(&str, ColumnType); 9] = [
    ("guid", Str),
    ("ts", Str),
    ("connection", Dynamic),
    ("envelope", Dynamic),
    ("msg", Dynamic),
    ("pps", Dynamic),
    ("metadata", Dynamic),
    ("filter", Dynamic),
    ("msgParts", Dynamic),
];

/// The columns of the PoD solution's maillog stream (`Custom-ProofpointPodMailLog`).
pub const POD_MAILLOG_COLUMNS: [(&str, ColumnType); 7] = [
    ("id", Str),
    ("data", Str),
    ("ts", Str),
    ("metadata", Dynamic),
    ("pps", Dynamic),
    ("sm", Dynamic),
    ("tls", Dynamic),
];

/// The PoD solution's input streams (its DCR's `streamDeclarations`; the `_CL` names are its
/// output tables, which no input stream is called).
pub const POD_MESSAGE_STREAM: &str = "Custom-ProofpointPodMessage";
pub const POD_MAILLOG_STREAM: &str = "Custom-ProofpointPodMailLog";

/// The other spellings the API has for a column's field: the TAP SIEM API drifts between
/// `campaignId` and `campaignID`, `threatURL` and `threatUrl`, and Essentials writes `threatId`.
/// A row takes the declared spelling, else the first other one the event has with a value.
pub const SPELLINGS: [(&str, &[&str]); 3] = [
    ("campaignId", &["campaignID"]),
    ("threatURL", &["threatUrl"]),
    ("threatID", &["threatId"]),
];

/// The spellings other than `column` that `column`'s field may come under.
fn other_spellings(column: &str) -> &'static [&'static str] {
    SPELLINGS
        .iter()
        .find(|(c, _)| *c == column)
        .map_or(&[], |(_, others)| others)
}

/// Where one kind goes in the solution: its stream and the stream's columns.
pub type Destination = Option<(&'static str, &'static [(&'static str, ColumnType)])>;

/// The solution's destination for `kind`, if it has one: the TAP solution's four TAP streams
/// and the PoD solution's message and maillog streams. Kinds the solutions declare no table for
/// (People, PoD audit, and any new source's until its table is added here) have none: the sink
/// refuses them, and so does `tapfwd check` for a route that would send them here.
pub fn destination(kind: EventKind) -> Destination {
    match kind {
        EventKind::MessagesBlocked => {
            Some(("Custom-ProofPointTAPMessagesBlockedV2_CL", &MESSAGE_COLUMNS))
        }
        EventKind::MessagesDelivered => Some((
            "Custom-ProofPointTAPMessagesDeliveredV2_CL",
            &MESSAGE_COLUMNS,
        )),
        EventKind::ClicksBlocked => {
            Some(("Custom-ProofPointTAPClicksBlockedV2_CL", &CLICK_COLUMNS))
        }
        EventKind::ClicksPermitted => {
            Some(("Custom-ProofPointTAPClicksPermittedV2_CL", &CLICK_COLUMNS))
        }
        EventKind::PodMessage => Some((POD_MESSAGE_STREAM, &POD_MESSAGE_COLUMNS)),
        EventKind::PodMaillog => Some((POD_MAILLOG_STREAM, &POD_MAILLOG_COLUMNS)),
        _ => None,
    }
}

/// `value` as a `column_type` column takes it, or `None` when it cannot be one (the column is
/// then left out, as the API leaves out a field it has no value for).
fn convert(value: &Value, column_type: ColumnType) -> Option<Value> {
    match (column_type, value) {
        (_, Value::Null) => None,
        (Dynamic, v) => Some(v.clone()),
        (Str | Datetime, Value::String(_)) => Some(value.clone()),
        // Numbers, booleans, arrays and objects as their JSON text.
        (Str, v) => Some(Value::String(v.to_string())),
        (Datetime, _) => None,
        (Int, Value::Number(n)) => match n.as_i64() {
            Some(i) => Some(Value::from(i)),
            None => n.as_f64().map(|f| Value::from(f.round() as i64)),
        },
        (Int, Value::String(s)) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().map(|f| f.round() as i64))
            .map(Value::from),
        (Int, _) => None,
        (Boolean, Value::Bool(_)) => Some(value.clone()),
        (Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        (Boolean, _) => None,
    }
}

/// Writes the row of the raw event `raw` with `columns` (each from its field under any of its
/// [`SPELLINGS`]), `tenant` in [`TENANT_COLUMN`], the
/// event's customer in [`CUSTOMER_COLUMN`] and its enrichment members as an object in
/// [`ENRICHMENT_COLUMN`], when it has them. Fails only when `raw` is not a JSON object, which the splitter never
/// lets through.
pub fn write_row(
    out: &mut Vec<u8>,
    tenant: &str,
    columns: &[(&str, ColumnType)],
    raw: &[u8],
    beside: Beside<'_>,
) -> Result<(), serde_json::Error> {
    let event: Map<String, Value> = serde_json::from_slice(raw)?;
    out.push(b'{');
    for (name, column_type) in columns {
        let value = std::iter::once(*name)
            .chain(other_spellings(name).iter().copied())
            .find_map(|spelling| convert(event.get(spelling)?, *column_type));
        let Some(value) = value else {
            continue;
        };
        json_str(out, name);
        out.push(b':');
        serde_json::to_writer(&mut *out, &value)?;
        out.push(b',');
    }
    json_str(out, TENANT_COLUMN);
    out.push(b':');
    json_str(out, tenant);
    if let Some(customer) = beside.customer {
        out.push(b',');
        json_str(out, CUSTOMER_COLUMN);
        out.push(b':');
        json_str(out, customer);
    }
    if let Some(members) = beside.enrichment {
        out.push(b',');
        json_str(out, ENRICHMENT_COLUMN);
        out.extend_from_slice(b":{");
        out.extend_from_slice(members);
        out.push(b'}');
    }
    out.push(b'}');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_take_the_columns_converted_to_their_types() {
        let raw = br#"{"GUID":"g","messageTime":"2026-01-01T00:00:00.123Z","spamScore":"7",
            "phishScore":3.6,"completelyRewritten":"true","recipient":["a@x"],"subject":null,
            "unknownField":1,"messageSize":2048,"QID":12}"#;
        let mut out = Vec::new();
        write_row(&mut out, "acme", &MESSAGE_COLUMNS, raw, Beside::default()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"spamScore":7,"phishScore":4,"messageTime":"2026-01-01T00:00:00.123Z","messageSize":2048,"completelyRewritten":true,"QID":"12","GUID":"g","recipient":["a@x"],"tenant_s":"acme"}"#
        );
        let mut out = Vec::new();
        write_row(
            &mut out,
            "a",
            &MESSAGE_COLUMNS,
            br#"{"completelyRewritten":"False"}"#,
            Beside {
                customer: Some("4711"),
                enrichment: Some(br#""threats":{"t":{"name":"x"}}"#),
                snapshot: None,
            },
        )
        .unwrap();
        assert_eq!(
            out,
            br#"{"completelyRewritten":false,"tenant_s":"a","customer_s":"4711","tapfwd_enrichment":{"threats":{"t":{"name":"x"}}}}"#
        );
        assert!(write_row(
            &mut Vec::new(),
            "a",
            &CLICK_COLUMNS,
            b"[1]",
            Beside::default()
        )
        .is_err());
    }

    #[test]
    fn the_pod_solution_streams_take_message_and_maillog_frames() {
        assert_eq!(
            destination(EventKind::PodMessage).map(|d| d.0),
            Some("Custom-ProofpointPodMessage")
        );
        assert_eq!(
            destination(EventKind::PodMaillog).map(|d| d.0),
            Some("Custom-ProofpointPodMailLog")
        );
        assert_eq!(destination(EventKind::PodAudit), None);
        let frame = br#"{"data":"line","id":"g1","ts":"2026-05-22T12:10:03.058340-0700","sm":{"qid":"Q"},"tls":{},"pps":{"cid":"c"},"metadata":{"origin":{}},"extra":1}"#;
        let mut out = Vec::new();
        write_row(
            &mut out,
            "acme-pod",
            &POD_MAILLOG_COLUMNS,
            frame,
            Beside::default(),
        )
        .unwrap();
        let row: Value = serde_json::from_slice(&out).unwrap();
        let raw: Value = serde_json::from_slice(frame).unwrap();
        for (column, _) in POD_MAILLOG_COLUMNS {
            assert_eq!(row[column], raw[column], "{column}");
        }
        assert_eq!(row[TENANT_COLUMN], "acme-pod");
        assert!(row.get("extra").is_none(), "no column for it: {row}");
    }

    #[test]
    fn every_spelling_the_api_drifts_to_lands_in_the_declared_column() {
        let row = |raw: &[u8]| -> Value {
            let mut out = Vec::new();
            write_row(&mut out, "t", &CLICK_COLUMNS, raw, Beside::default()).unwrap();
            serde_json::from_slice(&out).unwrap()
        };
        let drifted = row(br#"{"campaignID":"c1","threatUrl":"https://t/1","threatId":"t1"}"#);
        assert_eq!(drifted["campaignId"], "c1");
        assert_eq!(drifted["threatURL"], "https://t/1");
        assert_eq!(drifted["threatID"], "t1");
        for other in ["campaignID", "threatUrl", "threatId"] {
            assert!(drifted.get(other).is_none(), "{other} has no column");
        }
        // The declared spelling wins; a null under it falls back to a value under another.
        let both =
            row(br#"{"campaignId":"c1","campaignID":"c2","threatURL":null,"threatUrl":"u"}"#);
        assert_eq!(both["campaignId"], "c1");
        assert_eq!(both["threatURL"], "u");
        // Every other spelling names a declared column of the streams it may appear in.
        for (column, _) in SPELLINGS {
            assert!(CLICK_COLUMNS.iter().any(|(c, _)| *c == column), "{column}");
        }
    }

    #[test]
    fn only_the_siem_and_pod_log_kinds_have_a_solution_stream() {
        for kind in EventKind::ALL {
            let d = destination(kind);
            let pod_log = matches!(kind, EventKind::PodMessage | EventKind::PodMaillog);
            assert_eq!(
                d.is_some(),
                EventKind::SIEM.contains(&kind) || pod_log,
                "{kind}: {d:?}"
            );
            if pod_log {
                continue;
            }
            if let Some((stream, columns)) = d {
                let name = kind.as_str();
                let camel = format!("{}{}", name[..1].to_ascii_uppercase(), &name[1..]);
                assert_eq!(stream, format!("Custom-ProofPointTAP{camel}V2_CL"));
                let time = if kind.is_click() {
                    "clickTime"
                } else {
                    "messageTime"
                };
                assert!(columns.iter().any(|(c, t)| *c == time && *t == Datetime));
            }
        }
    }
}
