//! Filter metrics, shown by Envoy under `unigate.` in `/stats` and `/stats/prometheus`.
//!
//! Metric ids are per worker VM; names are defined on first use and cached. Envoy has no
//! labels for Wasm metrics, so label-like parts (provider, model, status) are name segments.

use crate::host;
use proxy_wasm::types::MetricType;
use std::cell::RefCell;
use std::collections::HashMap;

thread_local! {
    static IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Metric names the filter defines up front, so dashboards see them at zero.
pub const STATIC_COUNTERS: &[&str] = &[
    "unigate.requests_total",
    "unigate.auth_failures",
    "unigate.rate_limited",
    "unigate.errors.translation",
    "unigate.errors.signing",
    "unigate.errors.credentials_refresh",
    "unigate.errors.sidecar",
    "unigate.errors.upstream",
    "unigate.streams_total",
];

fn id(kind: MetricType, name: &str) -> Option<u32> {
    IDS.with(|ids| {
        if let Some(id) = ids.borrow().get(name) {
            return Some(*id);
        }
        let id = host::define_metric(kind, name).ok()?;
        ids.borrow_mut().insert(name.to_string(), id);
        Some(id)
    })
}

/// Defines the static metrics (call from `on_configure`).
pub fn define_static() {
    for name in STATIC_COUNTERS {
        let _ = id(MetricType::Counter, name);
    }
    for name in HISTOGRAMS {
        let _ = id(MetricType::Histogram, name);
    }
}

/// Histograms (milliseconds).
pub const HISTOGRAMS: &[&str] = &[
    "unigate.upstream_latency_ms",
    "unigate.ttft_ms",
    "unigate.stream_duration_ms",
];

/// Adds `by` to a counter (zero is skipped: Envoy rejects it).
pub fn count(name: &str, by: u64) {
    if by == 0 {
        return;
    }
    if let Some(i) = id(MetricType::Counter, name) {
        let _ = host::increment_metric(i, i64::try_from(by).unwrap_or(i64::MAX));
    }
}

/// Records a histogram sample.
pub fn record(name: &str, value: u64) {
    if let Some(i) = id(MetricType::Histogram, name) {
        let _ = host::record_metric(i, value);
    }
}

/// A model id or provider made safe as one stat-name segment.
pub fn segment(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(100);
    if out.is_empty() {
        out.push_str("unknown");
    }
    out
}
