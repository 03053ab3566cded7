//! Log output: text for a terminal, or one JSON object per line for journald and log shippers.
//!
//! Work for one tenant runs inside a `tenant` span (`tenant = %id`), so a line never has to name
//! its tenant itself. In JSON the fields of the enclosing spans are lifted beside the event's own
//! fields (`{"level":"INFO","message":"caught up","windows":3,"tenant":"acme",...}`), so a query
//! for `tenant="acme"` finds every line of that tenant, whoever logged it. Secrets have no path
//! here: nothing logs a secret, and error texts from outside are scrubbed before they are logged
//! (invariant 7).

use std::fmt;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), output on stderr.
pub fn init(format: LogFormat) {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// One JSON object per event: `timestamp`, `level`, the event's fields (`message` first), the
/// fields of its spans from the outermost in (an event's own field wins a name clash), `target`.
struct FlatJson;

impl<S, N> FormatEvent<S, N> for FlatJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut fields = Fields(Vec::new());
        fields.put(
            "timestamp",
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        fields.put("level", Value::String(event.metadata().level().to_string()));
        event.record(&mut fields);
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                let Some(formatted) = extensions.get::<FormattedFields<N>>() else {
                    continue;
                };
                if let Ok(Value::Object(span_fields)) =
                    serde_json::from_str::<Value>(formatted.as_str())
                {
                    for (k, v) in span_fields {
                        if !fields.has(&k) {
                            fields.0.push((k, v));
                        }
                    }
                }
            }
        }
        fields.put(
            "target",
            Value::String(event.metadata().target().to_string()),
        );
        let mut line = Vec::with_capacity(256);
        line.push(b'{');
        for (i, (k, v)) in fields.0.iter().enumerate() {
            if i > 0 {
                line.push(b',');
            }
            // Keys and values are plain strings and JSON values: serialising cannot fail.
            let _ = serde_json::to_writer(&mut line, k);
            line.push(b':');
            let _ = serde_json::to_writer(&mut line, v);
        }
        line.push(b'}');
        writeln!(writer, "{}", String::from_utf8_lossy(&line))
    }
}

/// An event's fields in the order they were recorded.
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    fn put(&mut self, name: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field.name(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field.name(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field.name(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field.name(), Value::String(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn span_fields_sit_beside_the_event_fields() {
        let buffer = Buffer::default();
        let out = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(JsonFields::new())
            .event_format(FlatJson)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("tenant", tenant = "acme");
            let _in = span.enter();
            tracing::info!(windows = 3u64, sink = "file", "caught up");
            tracing::warn!(tenant = "other", "own field wins");
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["message"], "caught up");
        assert_eq!(lines[0]["level"], "INFO");
        assert_eq!(lines[0]["windows"], 3);
        assert_eq!(lines[0]["sink"], "file");
        assert_eq!(lines[0]["tenant"], "acme");
        assert!(lines[0].get("span").is_none(), "{text}");
        assert_eq!(lines[1]["tenant"], "other");
        assert!(lines[0]["timestamp"].as_str().unwrap().ends_with('Z'));
    }
}
