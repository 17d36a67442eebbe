//! Which format a chat request body is in, and which format the caller wants back.
//!
//! Detection rules, in order (documented in docs/api.md):
//! 1. `anthropic_version` present → Bedrock Claude (Anthropic Messages).
//! 2. `inputText` present → Bedrock Titan.
//! 3. `messages` present → OpenAI Chat Completions.
//! 4. Only `model` present → OpenAI (so the error names the missing `messages`).
//!
//! A body with markers of two formats (`anthropic_version` or `messages` together with
//! `inputText`) is ambiguous and rejected, as is a body with none.

use crate::error::GatewayError;
use crate::formats::Format;
use crate::json::Object;

/// Detects the input format of a chat request body.
pub fn detect(obj: &Object) -> Result<Format, GatewayError> {
    let claude = obj.contains_key("anthropic_version");
    let titan = obj.contains_key("inputText");
    let messages = obj.contains_key("messages");
    match (claude, titan, messages) {
        (true, false, _) => Ok(Format::Anthropic),
        (false, true, false) => Ok(Format::Titan),
        (false, false, true) => Ok(Format::OpenaiChat),
        (false, false, false) if obj.contains_key("model") => Ok(Format::OpenaiChat),
        (false, false, false) => Err(GatewayError::bad_request(
            "Unrecognized request format: expected an OpenAI chat body (`model` + `messages`), a Bedrock Claude body (`anthropic_version` + `messages`) or a Bedrock Titan body (`inputText`).",
        )
        .with_code("unknown_format")),
        _ => Err(GatewayError::bad_request(
            "Ambiguous request format: the body mixes `inputText` (Bedrock Titan) with `messages` or `anthropic_version`; send exactly one format.",
        )
        .with_code("ambiguous_format")),
    }
}

/// The `target_format` asked for by query string (`?target_format=`) or header
/// (`x-target-format`); the query wins; `default` otherwise.
pub fn target_format(
    query: Option<&str>,
    header: Option<&str>,
    default: Format,
) -> Result<Format, GatewayError> {
    if let Some(q) = query {
        for pair in q.split('&') {
            if let Some(v) = pair.strip_prefix("target_format=") {
                return Format::parse_target(v);
            }
        }
    }
    match header {
        Some(h) => Format::parse_target(h),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;

    fn d(body: &str) -> Result<Format, GatewayError> {
        detect(&parse_object(body.as_bytes()).unwrap())
    }

    #[test]
    fn detection_table() {
        assert_eq!(
            d(r#"{"model":"m","messages":[]}"#).unwrap(),
            Format::OpenaiChat
        );
        assert_eq!(
            d(r#"{"anthropic_version":"bedrock-2023-05-31","messages":[]}"#).unwrap(),
            Format::Anthropic
        );
        assert_eq!(d(r#"{"inputText":"hi"}"#).unwrap(), Format::Titan);
        assert_eq!(d(r#"{"model":"m"}"#).unwrap(), Format::OpenaiChat);
        assert_eq!(
            d(r#"{"prompt":"m"}"#).unwrap_err().code.as_deref(),
            Some("unknown_format")
        );
        assert_eq!(
            d(r#"{"inputText":"x","messages":[]}"#)
                .unwrap_err()
                .code
                .as_deref(),
            Some("ambiguous_format")
        );
        assert_eq!(
            d(r#"{"inputText":"x","anthropic_version":"v"}"#)
                .unwrap_err()
                .code
                .as_deref(),
            Some("ambiguous_format")
        );
    }

    #[test]
    fn target_from_query_or_header() {
        assert_eq!(
            target_format(None, None, Format::OpenaiChat).unwrap(),
            Format::OpenaiChat
        );
        assert_eq!(
            target_format(
                Some("a=1&target_format=bedrock_claude"),
                Some("openai"),
                Format::OpenaiChat
            )
            .unwrap(),
            Format::Anthropic
        );
        assert_eq!(
            target_format(None, Some("bedrock_titan"), Format::OpenaiChat).unwrap(),
            Format::Titan
        );
        assert_eq!(
            target_format(Some("target_format=xml"), None, Format::OpenaiChat)
                .unwrap_err()
                .status,
            400
        );
    }
}
