//! Counters and gauges, rendered in the Prometheus text format by the admin endpoint.
//!
//! Names follow `tapfwd_<noun>_<unit>`; labels are bounded (`tenant`, `sink`, `kind`, `status`):
//! never URLs, GUIDs or error strings, and never a secret (invariant 7).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Counter,
    Gauge,
}

/// (metric name, rendered label set) -> value.
type Series = BTreeMap<(&'static str, String), f64>;

/// Fetch-duration histogram buckets, in seconds.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0];

#[derive(Default)]
pub struct Metrics {
    series: Mutex<Series>,
    /// Fetch durations: bucket counts, sum, count (all tenants together, to keep series bounded).
    fetch: Mutex<([u64; BUCKETS.len()], f64, u64)>,
}

const HELP: &[(&str, Kind, &str)] = &[
    (
        "tapfwd_events_fetched_total",
        Kind::Counter,
        "Events received from the TAP API, before dedupe.",
    ),
    (
        "tapfwd_events_delivered_total",
        Kind::Counter,
        "Events a sink durably accepted.",
    ),
    (
        "tapfwd_events_deduplicated_total",
        Kind::Counter,
        "Events dropped because the sink already had them.",
    ),
    (
        "tapfwd_sink_errors_total",
        Kind::Counter,
        "Failed deliveries, by kind (unavailable, rejected, commit).",
    ),
    (
        "tapfwd_api_requests_total",
        Kind::Counter,
        "TAP API requests by status.",
    ),
    (
        "tapfwd_late_sweep_requests_total",
        Kind::Counter,
        "Late-sweep requests (each window queried again once it is late_sweep old) by status; also counted in tapfwd_api_requests_total.",
    ),
    (
        "tapfwd_late_events_total",
        Kind::Counter,
        "Events the late sweep found and delivered that no sink had: published after the first query of their window.",
    ),
    (
        "tapfwd_gap_seconds_total",
        Kind::Counter,
        "API history skipped because a checkpoint fell past the API's horizon (TAP 7 days, Essentials 3).",
    ),
    (
        "tapfwd_enrichment_lookups_total",
        Kind::Counter,
        "Threat and campaign lookups for enrichment, by kind (threats, campaigns) and status (ok or the error class).",
    ),
    (
        "tapfwd_enrichment_misses_total",
        Kind::Counter,
        "Ids an event was delivered without because their lookup failed or was too slow, by kind.",
    ),
    (
        "tapfwd_enrichment_dropped_total",
        Kind::Counter,
        "Summaries and campaigns left out of enrichment, by kind and reason (too_large: over enrichment.max_summary_bytes; cache_full: dropped from the cache to keep it within enrichment.max_cache_bytes).",
    ),
    (
        "tapfwd_checkpoint_lag_seconds",
        Kind::Gauge,
        "How far a sink's checkpoint is behind now (freshness; includes the configured lag).",
    ),
    (
        "tapfwd_sink_backlog_seconds",
        Kind::Gauge,
        "Seconds of events not yet delivered to a sink beyond the configured lag.",
    ),
    (
        "tapfwd_budget_remaining_requests",
        Kind::Gauge,
        "Requests left in the tenant's rolling 24-hour quota.",
    ),
    (
        "tapfwd_tenant_failed",
        Kind::Gauge,
        "1 while the API rejects the tenant's credentials.",
    ),
    (
        "tapfwd_store_size_bytes",
        Kind::Gauge,
        "Size of the state store on disk.",
    ),
    (
        "tapfwd_store_healthy",
        Kind::Gauge,
        "1 while the state store's writes and flushes work, 0 while they fail.",
    ),
    (
        "tapfwd_store_errors_total",
        Kind::Counter,
        "Failed state store writes and flushes.",
    ),
    ("tapfwd_tenants", Kind::Gauge, "Tenants this daemon polls."),
    (
        "tapfwd_unknown_array_elements_total",
        Kind::Counter,
        "Elements of top-level response arrays the daemon does not know (not forwarded).",
    ),
    (
        "tapfwd_window_progress_events",
        Kind::Gauge,
        "Events received so far in the tenant's window in flight (0 between windows).",
    ),
    (
        "tapfwd_window_progress_bytes",
        Kind::Gauge,
        "Raw event bytes received so far in the tenant's window in flight (0 between windows).",
    ),
    (
        "tapfwd_window_progress_seconds",
        Kind::Gauge,
        "Seconds the tenant's window in flight has taken so far (0 between windows).",
    ),
    (
        "tapfwd_stream_connected",
        Kind::Gauge,
        "1 while a streaming source's live connection (PoD, by kind) is open.",
    ),
    (
        "tapfwd_stream_last_frame_timestamp_seconds",
        Kind::Gauge,
        "Unix time at which a streaming source last received a frame.",
    ),
    (
        "tapfwd_stream_reconnects_total",
        Kind::Counter,
        "Live connections a streaming source opened after its first.",
    ),
    (
        "tapfwd_stream_archive_catchups_total",
        Kind::Counter,
        "Archive catch-ups a streaming source ran to close a gap.",
    ),
    (
        "tapfwd_people_snapshots_total",
        Kind::Counter,
        "People snapshots ended, by feed and result (complete, partial: short of or past the API's total).",
    ),
    (
        "tapfwd_stream_events_per_second",
        Kind::Gauge,
        "Frames a streaming source received per second, over its last status interval.",
    ),
    (
        "tapfwd_config_reloads_total",
        Kind::Counter,
        "Config reloads (SIGHUP), by result (applied, rejected).",
    ),
    (
        "tapfwd_config_last_reload_successful",
        Kind::Gauge,
        "1 if the last config reload was applied (or none was tried), 0 if it was rejected.",
    ),
];

fn labels(tenant: &str, sink: Option<&str>, extra: Option<(&str, &str)>) -> String {
    let mut s = format!("tenant=\"{tenant}\"");
    if let Some(sink) = sink {
        let _ = write!(s, ",sink=\"{sink}\"");
    }
    if let Some((k, v)) = extra {
        let _ = write!(s, ",{k}=\"{v}\"");
    }
    s
}

impl Metrics {
    fn add(&self, name: &'static str, labels: String, v: f64) {
        if let Ok(mut m) = self.series.lock() {
            *m.entry((name, labels)).or_default() += v;
        }
    }

    fn set(&self, name: &'static str, labels: String, v: f64) {
        if let Ok(mut m) = self.series.lock() {
            m.insert((name, labels), v);
        }
    }

    pub fn add_fetched(&self, tenant: &str, n: u64) {
        self.add(
            "tapfwd_events_fetched_total",
            labels(tenant, None, None),
            n as f64,
        );
    }

    pub fn add_delivered(&self, tenant: &str, sink: &str, n: u64) {
        self.add(
            "tapfwd_events_delivered_total",
            labels(tenant, Some(sink), None),
            n as f64,
        );
    }

    pub fn add_deduplicated(&self, tenant: &str, sink: &str, n: u64) {
        if n > 0 {
            self.add(
                "tapfwd_events_deduplicated_total",
                labels(tenant, Some(sink), None),
                n as f64,
            );
        }
    }

    pub fn add_sink_error(&self, tenant: &str, sink: &str, kind: &'static str) {
        self.add(
            "tapfwd_sink_errors_total",
            labels(tenant, Some(sink), Some(("kind", kind))),
            1.0,
        );
    }

    pub fn add_request(&self, tenant: &str, status: &str) {
        self.add(
            "tapfwd_api_requests_total",
            labels(tenant, None, Some(("status", status))),
            1.0,
        );
    }

    /// Counts one late-sweep request (it is counted by [`Metrics::add_request`] too).
    pub fn add_sweep_request(&self, tenant: &str, status: &str) {
        self.add(
            "tapfwd_late_sweep_requests_total",
            labels(tenant, None, Some(("status", status))),
            1.0,
        );
    }

    pub fn add_late_events(&self, tenant: &str, n: u64) {
        self.add(
            "tapfwd_late_events_total",
            labels(tenant, None, None),
            n as f64,
        );
    }

    pub fn add_enrichment_lookup(&self, tenant: &str, kind: &'static str, status: &'static str) {
        self.add(
            "tapfwd_enrichment_lookups_total",
            format!(
                "{},status=\"{status}\"",
                labels(tenant, None, Some(("kind", kind)))
            ),
            1.0,
        );
    }

    pub fn add_enrichment_miss(&self, tenant: &str, kind: &'static str) {
        self.add(
            "tapfwd_enrichment_misses_total",
            labels(tenant, None, Some(("kind", kind))),
            1.0,
        );
    }

    /// `n` summaries or campaigns of `kind` left out for `reason` (`too_large`, `cache_full`).
    pub fn add_enrichment_dropped(
        &self,
        tenant: &str,
        kind: &'static str,
        reason: &'static str,
        n: u64,
    ) {
        self.add(
            "tapfwd_enrichment_dropped_total",
            format!(
                "{},reason=\"{reason}\"",
                labels(tenant, None, Some(("kind", kind)))
            ),
            n as f64,
        );
    }

    pub fn add_gap(&self, tenant: &str, sink: &str, secs: i64) {
        self.add(
            "tapfwd_gap_seconds_total",
            labels(tenant, Some(sink), None),
            secs as f64,
        );
    }

    pub fn set_stream_gauges(&self, tenant: &str, sink: &str, behind: i64, backlog: i64) {
        self.set(
            "tapfwd_checkpoint_lag_seconds",
            labels(tenant, Some(sink), None),
            behind as f64,
        );
        self.set(
            "tapfwd_sink_backlog_seconds",
            labels(tenant, Some(sink), None),
            backlog as f64,
        );
    }

    pub fn set_budget(&self, tenant: &str, remaining: i64, failed: bool) {
        self.set(
            "tapfwd_budget_remaining_requests",
            labels(tenant, None, None),
            remaining as f64,
        );
        self.set_tenant_failed(tenant, failed);
    }

    /// `tapfwd_tenant_failed`: whether the API refuses `tenant`'s credentials. [`Metrics::set_budget`]
    /// sets it for sources with a request budget; a source without one sets it alone.
    pub fn set_tenant_failed(&self, tenant: &str, failed: bool) {
        self.set(
            "tapfwd_tenant_failed",
            labels(tenant, None, None),
            if failed { 1.0 } else { 0.0 },
        );
    }

    pub fn add_unknown_array_elements(&self, tenant: &str, n: u64) {
        self.add(
            "tapfwd_unknown_array_elements_total",
            labels(tenant, None, None),
            n as f64,
        );
    }

    /// The progress of a tenant's window in flight; all 0 between windows.
    pub fn set_window_progress(&self, tenant: &str, events: u64, bytes: u64, secs: u64) {
        for (name, v) in [
            ("tapfwd_window_progress_events", events),
            ("tapfwd_window_progress_bytes", bytes),
            ("tapfwd_window_progress_seconds", secs),
        ] {
            self.set(name, labels(tenant, None, None), v as f64);
        }
    }

    pub fn set_global(&self, name: &'static str, v: f64) {
        if let Ok(mut m) = self.series.lock() {
            m.insert((name, String::new()), v);
        }
    }

    /// Counts a config reload; `applied` false when it was rejected and the old config kept.
    pub fn add_reload(&self, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.add(
            "tapfwd_config_reloads_total",
            format!("result=\"{result}\""),
            1.0,
        );
        self.set_global(
            "tapfwd_config_last_reload_successful",
            if applied { 1.0 } else { 0.0 },
        );
    }

    pub fn observe_fetch(&self, _tenant: &str, secs: f64) {
        if let Ok(mut f) = self.fetch.lock() {
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    f.0[i] += 1;
                }
            }
            f.1 += secs;
            f.2 += 1;
        }
    }

    /// A streaming source's connection figures (`kind`: the PoD log type).
    pub fn set_stream(
        &self,
        tenant: &str,
        kind: &str,
        connected: bool,
        last_frame_unix: Option<i64>,
        events_per_second: f64,
    ) {
        let l = || labels(tenant, None, Some(("kind", kind)));
        self.set(
            "tapfwd_stream_connected",
            l(),
            f64::from(u8::from(connected)),
        );
        if let Some(t) = last_frame_unix {
            self.set("tapfwd_stream_last_frame_timestamp_seconds", l(), t as f64);
        }
        self.set("tapfwd_stream_events_per_second", l(), events_per_second);
    }

    pub fn add_stream_reconnect(&self, tenant: &str, kind: &str) {
        self.add(
            "tapfwd_stream_reconnects_total",
            labels(tenant, None, Some(("kind", kind))),
            1.0,
        );
    }

    pub fn add_stream_catchup(&self, tenant: &str, kind: &str) {
        self.add(
            "tapfwd_stream_archive_catchups_total",
            labels(tenant, None, Some(("kind", kind))),
            1.0,
        );
    }

    /// A People snapshot of `feed` (`vap`, `top_clickers`) ended, `complete` or `partial`.
    pub fn add_people_snapshot(&self, tenant: &str, feed: &str, result: &'static str) {
        let mut l = labels(tenant, None, Some(("feed", feed)));
        let _ = write!(l, ",result=\"{result}\"");
        self.add("tapfwd_people_snapshots_total", l, 1.0);
    }

    /// Drops every series of a tenant that was removed by a reload.
    pub fn forget_tenant(&self, tenant: &str) {
        let prefix = format!("tenant=\"{tenant}\"");
        if let Ok(mut m) = self.series.lock() {
            m.retain(|(_, l), _| !(l == &prefix || l.starts_with(&format!("{prefix},"))));
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let series = self.series.lock().map(|m| m.clone()).unwrap_or_default();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(
                out,
                "# TYPE {name} {}",
                if *kind == Kind::Counter {
                    "counter"
                } else {
                    "gauge"
                }
            );
            for ((n, l), v) in series.range((*name, String::new())..) {
                if n != name {
                    break;
                }
                if l.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{l}}} {v}");
                }
            }
        }
        if let Ok(f) = self.fetch.lock() {
            let name = "tapfwd_window_fetch_duration_seconds";
            let _ = writeln!(out, "# HELP {name} Time to fetch and deliver one window.");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {}", f.0[i]);
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", f.2);
            let _ = writeln!(out, "{name}_sum {}", f.1);
            let _ = writeln!(out, "{name}_count {}", f.2);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histogram() {
        let m = Metrics::default();
        m.add_delivered("acme", "archive", 5);
        m.add_delivered("acme", "archive", 2);
        m.set_stream_gauges("acme", "archive", 2000, 200);
        m.observe_fetch("acme", 0.3);
        m.set_global("tapfwd_store_size_bytes", 4096.0);
        let text = m.render();
        assert!(
            text.contains("tapfwd_events_delivered_total{tenant=\"acme\",sink=\"archive\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("tapfwd_checkpoint_lag_seconds{tenant=\"acme\",sink=\"archive\"} 2000"),
            "{text}"
        );
        assert!(
            text.contains("tapfwd_window_fetch_duration_seconds_bucket{le=\"0.5\"} 1"),
            "{text}"
        );
        assert!(text.contains("tapfwd_store_size_bytes 4096"), "{text}");
        m.forget_tenant("acme");
        assert!(!m.render().contains("acme"));
    }
}
