//! Claude's output limits: the one table of `max_tokens` the gateway sends when a client that
//! never names a limit (the Responses API's Codex) asks Claude for an answer.

/// The largest `max_tokens` to send a Claude model when the client set none: its output limit,
/// capped at 32,000 (every Claude from 3.7 on takes at least that much; more buys nothing an
/// agent turn needs and delays the first error on a runaway answer). `None` for model ids that
/// are not Claude or whose version is not recognised (the configured default applies).
///
/// | Claude | `max_tokens` |
/// |---|---|
/// | 3 (Haiku, Sonnet, Opus) | 4,096 |
/// | 3.5 (Haiku, Sonnet) | 8,192 |
/// | 3.7 and 4 onwards (Sonnet, Opus, Haiku) | 32,000 |
pub fn max_output_tokens(model_id: &str) -> Option<u32> {
    let (major, minor) = claude_version(model_id)?;
    Some(match (major, minor) {
        (0..=2, _) => return None,
        (3, 0..=4) => 4096,
        (3, 5..=6) => 8192,
        _ => 32000,
    })
}

/// `(major, minor)` of a Claude model id (`us.anthropic.claude-3-5-haiku-…` → `(3, 5)`,
/// `anthropic.claude-opus-4-1-…` → `(4, 1)`, a date is not a minor version).
fn claude_version(model_id: &str) -> Option<(u32, u32)> {
    let rest = model_id.split("claude-").nth(1)?;
    let mut numbers = rest
        .split(['-', ':', '.'])
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    let major: u32 = numbers.next()?.parse().ok()?;
    let minor: u32 = numbers
        .next()
        .filter(|t| t.len() <= 2)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_claude_generation() {
        for (model, want) in [
            ("anthropic.claude-3-haiku-20240307-v1:0", Some(4096)),
            ("anthropic.claude-3-opus-20240229-v1:0", Some(4096)),
            ("anthropic.claude-3-5-haiku-20241022-v1:0", Some(8192)),
            ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", Some(8192)),
            ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", Some(32000)),
            ("us.anthropic.claude-sonnet-4-20250514-v1:0", Some(32000)),
            ("us.anthropic.claude-opus-4-1-20250805-v1:0", Some(32000)),
            (
                "global.anthropic.claude-haiku-4-5-20251001-v1:0",
                Some(32000),
            ),
            ("anthropic.claude-v2:1", None),
            ("amazon.nova-pro-v1:0", None),
            ("gpt-4o", None),
        ] {
            assert_eq!(max_output_tokens(model), want, "{model}");
        }
    }
}
