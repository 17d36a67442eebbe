//! Metric names the filter emits (Envoy shows them under `unigate.` in `/stats`).
//!
//! Envoy has no labels for Wasm metrics, so label-like parts (provider, model, status) are
//! name segments.

use super::{Host, MetricKind};

/// Counters defined up front, so dashboards see them at zero.
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

/// Histograms (milliseconds).
pub const HISTOGRAMS: &[&str] = &[
    "unigate.upstream_latency_ms",
    "unigate.ttft_ms",
    "unigate.stream_duration_ms",
];

/// Defines the static metrics (on configuration).
pub fn define_static<H: Host + ?Sized>(host: &mut H) {
    for name in STATIC_COUNTERS {
        host.define_metric(MetricKind::Counter, name);
    }
    for name in HISTOGRAMS {
        host.define_metric(MetricKind::Histogram, name);
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
