//! Anthropic Messages bodies relayed to Claude on Bedrock almost as sent: `model` and `stream`
//! move to the path, `anthropic_version` is Bedrock's, beta flags go into the body filtered
//! per model, and the fields Bedrock rejects (or that fail a whole request there) are removed.
//! Everything else — messages, system, tools, thinking blocks with their signatures — goes up
//! unchanged.

use super::betas::{self, BetaRule};
use super::BEDROCK_ANTHROPIC_VERSION;
use crate::json::Object;
use serde_json::{json, Value};

/// Top-level fields Bedrock's InvokeModel takes for Claude (anything else fails the request
/// with "extraneous key").
pub const BEDROCK_KEYS: &[&str] = &[
    "anthropic_version",
    "anthropic_beta",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "metadata",
    "output_config",
    "context_management",
];

/// The one `context_management` edit Bedrock takes, and the flag it needs.
const COMPACT_EDIT: &str = "compact_20260112";
const COMPACT_BETA: &str = "compact-2026-01-12";
/// The flag that lets tools be loaded on demand (`defer_loading`).
const TOOL_SEARCH_BETA: &str = "tool-search-tool-2025-10-19";

/// What a relay needs besides the body.
#[derive(Debug, Clone, Copy)]
pub struct RelayContext<'a> {
    /// The model id sent upstream.
    pub model_id: &'a str,
    /// `max_tokens` to add when the client set none.
    pub default_max_tokens: u32,
    /// Flags from the client's `anthropic-beta` headers.
    pub header_betas: &'a [String],
    /// The per-model beta table.
    pub beta_rules: &'a [BetaRule],
}

/// Rewrites a Messages body for Bedrock. Returns the body and notes on what was dropped (for
/// the debug log).
pub fn relay_body(mut obj: Object, ctx: &RelayContext<'_>) -> (Object, Vec<String>) {
    let mut notes = Vec::new();
    // Flags: the headers' and any the body already lists.
    let mut requested: Vec<String> = ctx.header_betas.to_vec();
    if let Some(Value::Array(list)) = obj.get("anthropic_beta") {
        requested.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
    }
    let (kept, dropped) = betas::filter(ctx.model_id, &requested, ctx.beta_rules);
    if !dropped.is_empty() {
        notes.push(format!("dropped beta flags {}", dropped.join(",")));
    }

    obj.remove("model");
    obj.remove("stream");
    obj.insert("anthropic_version".into(), json!(BEDROCK_ANTHROPIC_VERSION));
    if kept.is_empty() {
        obj.remove("anthropic_beta");
    } else {
        obj.insert("anthropic_beta".into(), json!(kept));
    }
    if !obj.contains_key("max_tokens") {
        // The default must leave room above a thinking budget (Bedrock refuses otherwise).
        let budget = obj
            .get("thinking")
            .and_then(|t| t.get("budget_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let max = u64::from(ctx.default_max_tokens).max(budget.saturating_add(1));
        obj.insert("max_tokens".into(), json!(max));
    }
    let unknown: Vec<String> = obj
        .keys()
        .filter(|k| !BEDROCK_KEYS.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in &unknown {
        obj.remove(k);
    }
    if !unknown.is_empty() {
        notes.push(format!("dropped fields {}", unknown.join(",")));
    }

    context_management(&mut obj, &kept, &mut notes);
    if let Some(Value::Object(t)) = obj.get_mut("thinking") {
        if t.remove("display").is_some() {
            notes.push("dropped thinking.display".into());
        }
    }
    let keep_ttl = supports_cache_ttl(ctx.model_id);
    let tool_search = kept.iter().any(|b| b == TOOL_SEARCH_BETA);
    if let Some(Value::Array(tools)) = obj.get_mut("tools") {
        for t in tools.iter_mut() {
            if let Some(o) = t.as_object_mut() {
                if !tool_search && o.remove("defer_loading").is_some() {
                    notes.push("dropped tools.defer_loading".into());
                }
            }
            cache_control(t, keep_ttl);
        }
    }
    if let Some(Value::Array(blocks)) = obj.get_mut("system") {
        for b in blocks.iter_mut() {
            cache_control(b, keep_ttl);
        }
    }
    if let Some(Value::Array(messages)) = obj.get_mut("messages") {
        for m in messages.iter_mut() {
            if let Some(Value::Array(blocks)) = m.get_mut("content") {
                for b in blocks.iter_mut() {
                    cache_control(b, keep_ttl);
                    if let Some(Value::Array(inner)) = b.get_mut("content") {
                        for i in inner.iter_mut() {
                            cache_control(i, keep_ttl);
                        }
                    }
                }
            }
        }
    }
    (obj, notes)
}

/// Keeps only `compact_20260112` edits, and only when their flag is on; otherwise the whole
/// field goes (Claude Code's `clear_thinking_20251015` fails Bedrock requests).
fn context_management(obj: &mut Object, kept: &[String], notes: &mut Vec<String>) {
    let Some(cm) = obj.get_mut("context_management") else {
        return;
    };
    let allowed = kept.iter().any(|b| b == COMPACT_BETA);
    let mut keep = false;
    if let (true, Some(Value::Array(edits))) = (allowed, cm.get_mut("edits")) {
        edits.retain(|e| e.get("type").and_then(Value::as_str) == Some(COMPACT_EDIT));
        keep = !edits.is_empty();
    }
    if !keep {
        obj.remove("context_management");
        notes.push("dropped context_management".into());
    }
}

/// Removes what Bedrock refuses in a `cache_control`: `scope` always, `ttl` before Claude 4.5.
fn cache_control(block: &mut Value, keep_ttl: bool) {
    if let Some(Value::Object(cc)) = block.get_mut("cache_control") {
        cc.remove("scope");
        if !keep_ttl {
            cc.remove("ttl");
        }
    }
}

/// Whether a Claude model takes `cache_control.ttl` (Claude 4.5 and later).
pub fn supports_cache_ttl(model_id: &str) -> bool {
    let Some(rest) = model_id.split("claude-").nth(1) else {
        return false;
    };
    let mut numbers = rest
        .split(['-', ':', '.'])
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    let major: u32 = numbers.next().and_then(|t| t.parse().ok()).unwrap_or(0);
    let minor: u32 = numbers
        .next()
        .filter(|t| t.len() <= 2)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    (major, minor) >= (4, 5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;

    fn relay(body: Value, header: &str, model: &str) -> (Value, Vec<String>) {
        let obj = parse_object(body.to_string().as_bytes()).unwrap();
        let rules = betas::default_rules();
        let header_betas = betas::parse_header(header);
        let (out, notes) = relay_body(
            obj,
            &RelayContext {
                model_id: model,
                default_max_tokens: 4096,
                header_betas: &header_betas,
                beta_rules: &rules,
            },
        );
        (Value::Object(out), notes)
    }

    #[test]
    fn claude_code_body_is_made_acceptable_to_bedrock() {
        let body = json!({
            "model": "us.anthropic.claude-sonnet-4-20250514-v1:0",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h", "scope": "global"}}]}],
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
            "tools": [{"name": "Read", "input_schema": {"type": "object"}}, {"name": "Later", "input_schema": {}, "defer_loading": true}],
            "metadata": {"user_id": "{\"session_id\":\"s\"}"},
            "max_tokens": 32000,
            "thinking": {"budget_tokens": 31999, "type": "enabled", "display": "omitted"},
            "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
            "stream": true,
            "speed": "fast",
        });
        let (out, notes) = relay(
            body.clone(),
            "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,advanced-tool-use-2025-11-20",
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
        );
        assert_eq!(out["anthropic_version"], "bedrock-2023-05-31");
        assert_eq!(
            out["anthropic_beta"],
            json!([
                "interleaved-thinking-2025-05-14",
                "tool-search-tool-2025-10-19"
            ])
        );
        for k in ["model", "stream", "speed", "context_management"] {
            assert!(out.get(k).is_none(), "{k}");
        }
        assert!(out["thinking"].get("display").is_none());
        assert_eq!(out["thinking"]["budget_tokens"], 31999);
        // Tool search is on: deferred tools stay deferred.
        assert_eq!(out["tools"][1]["defer_loading"], true);
        // Sonnet 4 (before 4.5): no ttl, never a scope.
        assert_eq!(
            out["messages"][0]["content"][0]["cache_control"],
            json!({"type": "ephemeral"})
        );
        assert_eq!(out["messages"], {
            let mut m = body["messages"].clone();
            m[0]["content"][0]["cache_control"] = json!({"type": "ephemeral"});
            m
        });
        assert_eq!(out["metadata"], body["metadata"]);
        assert!(notes.iter().any(|n| n.contains("claude-code-20250219")));

        // Without tool search (Claude 3), deferred tools lose the flag and no beta is sent.
        let (out, _) = relay(
            body,
            "advanced-tool-use-2025-11-20",
            "anthropic.claude-3-haiku-20240307-v1:0",
        );
        assert!(out.get("anthropic_beta").is_none());
        assert!(out["tools"][1].get("defer_loading").is_none());
    }

    #[test]
    fn compaction_edits_pass_only_with_their_flag() {
        let body = json!({"model": "m", "max_tokens": 5, "messages": [],
            "context_management": {"edits": [{"type": "compact_20260112"}, {"type": "clear_thinking_20251015"}]}});
        let rules = vec![BetaRule {
            pattern: "*".into(),
            betas: vec!["compact-2026-01-12".into()],
        }];
        let obj = parse_object(body.to_string().as_bytes()).unwrap();
        let hb = vec!["compact-2026-01-12".to_string()];
        let (out, _) = relay_body(
            obj,
            &RelayContext {
                model_id: "anthropic.claude-opus-4-5",
                default_max_tokens: 1,
                header_betas: &hb,
                beta_rules: &rules,
            },
        );
        assert_eq!(
            out["context_management"],
            json!({"edits": [{"type": "compact_20260112"}]})
        );
    }

    #[test]
    fn cache_ttl_support() {
        assert!(supports_cache_ttl(
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
        ));
        assert!(supports_cache_ttl(
            "global.anthropic.claude-opus-4-5-20251101-v1:0"
        ));
        assert!(!supports_cache_ttl(
            "us.anthropic.claude-sonnet-4-20250514-v1:0"
        ));
        assert!(!supports_cache_ttl(
            "us.anthropic.claude-opus-4-1-20250805-v1:0"
        ));
        assert!(!supports_cache_ttl(
            "anthropic.claude-3-7-sonnet-20250219-v1:0"
        ));
        assert!(!supports_cache_ttl("amazon.nova-pro-v1:0"));
    }
}
