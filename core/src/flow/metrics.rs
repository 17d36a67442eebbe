//! Metric names the filter emits (Envoy shows them under `unigate.` in `/stats`).
//!
//! Envoy has no labels for Wasm metrics: label values are name segments (`.<label>.<value>`),
//! and Envoy's stats tag extraction ([`STATS_TAGS`], rendered into `stats_config.stats_tags`)
//! turns them back into labels, so `/stats/prometheus` shows one metric per meaning, e.g.
//! `unigate_tokens_total{provider="bedrock",key="team-a",type="input",model="…"}`. Every label
//! value comes from a known set: endpoints, providers and token types are fixed, keys are the
//! configured ones, and a model outside the catalogue and the alias table is `other`.

use super::{Host, MetricKind};
use std::borrow::Cow;

/// Counters defined up front, so dashboards see them at zero.
pub const STATIC_COUNTERS: &[&str] = &[
    "unigate.auth_failures",
    "unigate.rate_limited",
    "unigate.errors.translation",
    "unigate.errors.signing",
    "unigate.errors.credentials_refresh",
    "unigate.errors.sidecar",
    "unigate.errors.upstream",
    "unigate.streams_total",
];

/// Envoy stats tags: (label, regex). The first capture group is removed from the stat name,
/// the second is the label's value. `model` is always the last segment (model ids contain
/// dots) and is extracted first.
pub const STATS_TAGS: &[(&str, &str)] = &[
    ("model", r"^wasmcustom\.unigate\..*(\.model\.(.+))$"),
    (
        "endpoint",
        r"^wasmcustom\.unigate\..*?(\.endpoint\.([^.]+))",
    ),
    (
        "provider",
        r"^wasmcustom\.unigate\..*?(\.provider\.([^.]+))",
    ),
    (
        "status_class",
        r"^wasmcustom\.unigate\..*?(\.status_class\.([^.]+))",
    ),
    ("key", r"^wasmcustom\.unigate\..*?(\.key\.([^.]+))"),
    ("type", r"^wasmcustom\.unigate\..*?(\.type\.([^.]+))"),
    ("format", r"^wasmcustom\.unigate\..*?(\.format\.([^.]+))"),
];

/// Defines the static metrics (on configuration).
pub fn define_static<H: Host + ?Sized>(host: &mut H) {
    for name in STATIC_COUNTERS {
        host.define_metric(MetricKind::Counter, name);
    }
}

/// A label value made safe as one stat-name segment (no dots).
pub fn segment(s: &str) -> Cow<'_, str> {
    sanitize(s, 64, |c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A model id as the last segment of a stat name (dots kept, the rest made safe).
pub fn model_segment(model: &str) -> Cow<'_, str> {
    sanitize(model, 160, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/')
    })
}

/// `s` with characters outside `allowed` replaced by `_`, cut to `max` bytes, `none` when
/// empty; borrowed when nothing needed changing (the usual case, once per request and label).
fn sanitize(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> Cow<'_, str> {
    if s.is_empty() {
        return Cow::Borrowed("none");
    }
    if s.len() <= max && s.chars().all(&allowed) {
        return Cow::Borrowed(s);
    }
    let mut out: String = s
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    let mut cut = max.min(out.len());
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    out.truncate(cut);
    Cow::Owned(out)
}

/// `2xx`, `4xx`, `5xx` (and `other`).
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// `unigate_requests_total{endpoint, provider, status_class, model}`: every finished request.
pub fn requests(endpoint: &str, provider: &str, status: u16, model: &str) -> String {
    format!(
        "unigate.requests_total.endpoint.{endpoint}.provider.{provider}.status_class.{}.model.{}",
        status_class(status),
        model_segment(model)
    )
}

/// `unigate_tokens_total{provider, key, type, model}` (`type`: input, output, cached; OTel's
/// `gen_ai.token.type`).
pub fn tokens(provider: &str, key: &str, kind: &str, model: &str) -> String {
    format!(
        "unigate.tokens_total.provider.{provider}.key.{}.type.{kind}.model.{}",
        segment(key),
        model_segment(model)
    )
}

/// `unigate_input_format_total{format}`: forwarded requests by the client's body format.
pub fn input_format(format: &str) -> String {
    format!("unigate.input_format_total.format.{}", segment(format))
}

/// A duration histogram (`ttft_ms`, `request_duration_ms`) by endpoint, provider and model.
pub fn duration(name: &str, endpoint: &str, provider: &str, model: &str) -> String {
    format!(
        "unigate.{name}.endpoint.{endpoint}.provider.{provider}.model.{}",
        model_segment(model)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_labels_with_the_model_last() {
        assert_eq!(
            requests("chat", "bedrock", 429, "us.anthropic.claude-sonnet-4-20250514-v1:0"),
            "unigate.requests_total.endpoint.chat.provider.bedrock.status_class.4xx.model.us.anthropic.claude-sonnet-4-20250514-v1:0"
        );
        assert_eq!(
            tokens("openai", "team.a", "input", "gpt-4o"),
            "unigate.tokens_total.provider.openai.key.team_a.type.input.model.gpt-4o"
        );
        assert_eq!(model_segment("a b{c}"), "a_b_c_");
        assert_eq!(segment(""), "none");
        assert_eq!(segment(&"é".repeat(40)), "_".repeat(40));
        assert!(matches!(model_segment("gpt-4o"), Cow::Borrowed(_)));
    }
}
