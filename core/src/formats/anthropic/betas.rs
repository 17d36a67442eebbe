//! Anthropic beta flags on Bedrock. Bedrock fails a whole request with "invalid beta flag" for
//! any flag it does not know for that model, and clients (Claude Code above all) send flags
//! only Anthropic's own API knows, so the gateway keeps, per model, only the flags in a table
//! (configurable as `anthropic_betas`; the default below) and drops the rest.

use crate::route::glob_match;
use serde::{Deserialize, Serialize};

/// One row of the beta table: the flags Bedrock accepts for models matching `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BetaRule {
    /// Glob over the model id sent upstream (`*` matches any run of characters).
    pub pattern: String,
    /// Flags passed on for those models.
    pub betas: Vec<String>,
}

/// Flags clients send under an older name, and the name Bedrock knows them by.
pub const RENAMED: &[(&str, &str)] = &[(
    "advanced-tool-use-2025-11-20",
    "tool-search-tool-2025-10-19",
)];

/// The default table (first match wins): Claude 3.x takes no flags; Opus 4.7 took only
/// interleaved thinking at launch; every other (Claude 4 and later) model takes the three
/// flags Claude Code itself sends to Bedrock.
pub fn default_rules() -> Vec<BetaRule> {
    let rule = |pattern: &str, betas: &[&str]| BetaRule {
        pattern: pattern.to_string(),
        betas: betas.iter().map(|b| b.to_string()).collect(),
    };
    vec![
        rule("*claude-3*", &[]),
        rule("*claude-instant*", &[]),
        rule("*claude-v2*", &[]),
        rule("*claude-opus-4-7*", &["interleaved-thinking-2025-05-14"]),
        rule(
            "*",
            &[
                "interleaved-thinking-2025-05-14",
                "context-1m-2025-08-07",
                "tool-search-tool-2025-10-19",
            ],
        ),
    ]
}

/// Splits `anthropic-beta` header values (comma-separated, possibly repeated) into flags.
pub fn parse_header(values: &str) -> Vec<String> {
    values
        .split(',')
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect()
}

/// The flags to send for `model_id` (renamed, de-duplicated, in the order asked) and the
/// ones dropped.
pub fn filter(
    model_id: &str,
    requested: &[String],
    rules: &[BetaRule],
) -> (Vec<String>, Vec<String>) {
    let allowed: &[String] = rules
        .iter()
        .find(|r| glob_match(&r.pattern, model_id))
        .map_or(&[], |r| r.betas.as_slice());
    let mut kept: Vec<String> = Vec::new();
    let mut dropped = Vec::new();
    for b in requested {
        let name = RENAMED
            .iter()
            .find(|(old, _)| old == b)
            .map_or(b.as_str(), |(_, new)| new);
        if kept.iter().any(|k| k == name) {
            continue;
        }
        if allowed.iter().any(|a| a == name) {
            kept.push(name.to_string());
        } else {
            dropped.push(b.clone());
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_code_betas_are_filtered_per_model() {
        let asked = parse_header(
            "claude-code-20250219, interleaved-thinking-2025-05-14,context-management-2025-06-27,,thinking-token-count-2026-05-13,advanced-tool-use-2025-11-20",
        );
        let rules = default_rules();
        let (kept, dropped) = filter("us.anthropic.claude-sonnet-4-20250514-v1:0", &asked, &rules);
        assert_eq!(
            kept,
            [
                "interleaved-thinking-2025-05-14",
                "tool-search-tool-2025-10-19"
            ]
        );
        assert_eq!(
            dropped,
            [
                "claude-code-20250219",
                "context-management-2025-06-27",
                "thinking-token-count-2026-05-13"
            ]
        );
        let (kept, _) = filter("anthropic.claude-3-haiku-20240307-v1:0", &asked, &rules);
        assert!(kept.is_empty());
        let (kept, _) = filter("global.anthropic.claude-opus-4-7-v1:0", &asked, &rules);
        assert_eq!(kept, ["interleaved-thinking-2025-05-14"]);
    }
}
