//! Bedrock Converse answers: the response decoder, usage and stop reasons.

use crate::error::GatewayError;
use crate::formats::bedrock::answer_part;
use crate::ir::{ChatResponse, Part, StopReason, Usage};
use crate::json::Object;
use serde_json::{json, Value};

/// Maps a Converse `stopReason` to the IR.
pub fn parse_stop_reason(reason: &str) -> StopReason {
    match reason {
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "guardrail_intervened" | "content_filtered" => StopReason::ContentFilter,
        "model_context_window_exceeded" => StopReason::ContextWindowExceeded,
        _ => StopReason::EndTurn,
    }
}

/// Parses a Converse `usage` object.
pub fn parse_usage(v: &Value) -> Usage {
    crate::formats::bedrock::token_usage(v)
}

/// Decodes a Converse response body into the IR.
pub fn decode_response(obj: &Object, structured: bool) -> Result<ChatResponse, GatewayError> {
    // Bedrock has been seen answering 200 without `output` (framework errors, guardrails).
    let blocks = obj
        .get("output")
        .and_then(|o| o.get("message"))
        .and_then(|m| m.get("content"))
        .and_then(Value::as_array)
        .ok_or_else(|| {
            GatewayError::bad_gateway(
                "Bedrock Converse returned a response without `output.message`.",
            )
        })?;
    let mut content = Vec::with_capacity(blocks.len());
    let mut forced_output = false;
    for b in blocks {
        if let Some(t) = b.get("text").and_then(Value::as_str) {
            content.push(Part::text(t));
        } else if let Some(tu) = b.get("toolUse") {
            let name = tu.get("name").and_then(Value::as_str).unwrap_or_default();
            let arguments = serde_json::to_string(tu.get("input").unwrap_or(&json!({})))
                .unwrap_or_else(|_| "{}".into());
            let id = tu
                .get("toolUseId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let (part, forced) =
                answer_part(structured, id.to_string(), name.to_string(), arguments);
            forced_output |= forced;
            content.push(part);
        } else if let Some(rc) = b.get("reasoningContent") {
            if let Some(rt) = rc.get("reasoningText") {
                content.push(Part::Reasoning {
                    text: rt
                        .get("text")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    signature: rt
                        .get("signature")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                });
            } else if let Some(data) = rc.get("redactedContent").and_then(Value::as_str) {
                content.push(Part::RedactedReasoning {
                    data: data.to_string(),
                });
            }
        }
    }
    let mut stop_reason = obj
        .get("stopReason")
        .and_then(Value::as_str)
        .map(parse_stop_reason)
        .unwrap_or_default();
    if forced_output && stop_reason == StopReason::ToolUse {
        stop_reason = StopReason::EndTurn;
    }
    Ok(ChatResponse {
        id: None,
        content,
        stop_reason,
        stop_sequence: None,
        usage: obj.get("usage").map(parse_usage).unwrap_or_default(),
    })
}
