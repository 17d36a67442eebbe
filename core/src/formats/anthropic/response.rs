//! Anthropic Messages answers: message bodies both ways, usage and stop reasons.

use crate::error::GatewayError;
use crate::formats::bedrock::answer_part;
use crate::ir::{ChatResponse, Part, StopReason, Usage};
use crate::json::Object;
use serde_json::{json, Value};

/// Maps an Anthropic `stop_reason` to the IR.
pub fn parse_stop_reason(reason: &str) -> StopReason {
    match reason {
        "max_tokens" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "tool_use" => StopReason::ToolUse,
        "refusal" => StopReason::Refusal,
        "model_context_window_exceeded" => StopReason::ContextWindowExceeded,
        "pause_turn" => StopReason::PauseTurn,
        "guardrail_intervened" | "content_filtered" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

/// Maps an IR stop reason to Anthropic's `stop_reason`.
pub fn stop_reason_str(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn => "end_turn",
        StopReason::StopSequence => "stop_sequence",
        StopReason::MaxTokens => "max_tokens",
        StopReason::ToolUse => "tool_use",
        StopReason::ContentFilter | StopReason::Refusal => "refusal",
        StopReason::ContextWindowExceeded => "model_context_window_exceeded",
        StopReason::PauseTurn => "pause_turn",
    }
}

/// Parses an Anthropic `usage` object (input excludes cache reads and writes).
pub fn parse_usage(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage::from_uncached(
        n("input_tokens"),
        n("output_tokens"),
        n("cache_read_input_tokens"),
        n("cache_creation_input_tokens"),
    )
}

/// The Anthropic `usage` object for IR usage.
pub fn usage_value(u: &Usage) -> Value {
    json!({
        "input_tokens": u.uncached_prompt_tokens(),
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.completion_tokens,
    })
}

/// Decodes an Anthropic Messages response body into the IR. `structured` says whether the
/// gateway forced the structured-output tool (its input becomes the text answer).
pub fn decode_response(obj: &Object, structured: bool) -> Result<ChatResponse, GatewayError> {
    let blocks = match obj.get("content") {
        Some(Value::Array(b)) => b,
        _ => {
            return Err(GatewayError::bad_gateway(
                "Bedrock returned a Claude response without `content`.",
            ))
        }
    };
    let mut content = Vec::with_capacity(blocks.len());
    let mut forced_output = false;
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = b.get("text").and_then(Value::as_str).unwrap_or_default();
                content.push(Part::text(t));
            }
            Some("tool_use") => {
                let name = b.get("name").and_then(Value::as_str).unwrap_or_default();
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                let arguments = serde_json::to_string(&input).unwrap_or_else(|_| "{}".into());
                let id = b.get("id").and_then(Value::as_str).unwrap_or_default();
                let (part, forced) =
                    answer_part(structured, id.to_string(), name.to_string(), arguments);
                forced_output |= forced;
                content.push(part);
            }
            Some("thinking") => content.push(Part::Reasoning {
                text: b
                    .get("thinking")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                signature: b
                    .get("signature")
                    .and_then(Value::as_str)
                    .map(str::to_string),
            }),
            Some("redacted_thinking") => content.push(Part::RedactedReasoning {
                data: b
                    .get("data")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            }),
            _ => {}
        }
    }
    let mut stop_reason = obj
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(parse_stop_reason)
        .unwrap_or_default();
    if forced_output && stop_reason == StopReason::ToolUse {
        stop_reason = StopReason::EndTurn;
    }
    Ok(ChatResponse {
        id: obj.get("id").and_then(Value::as_str).map(str::to_string),
        content,
        stop_reason,
        stop_sequence: obj
            .get("stop_sequence")
            .and_then(Value::as_str)
            .map(str::to_string),
        usage: obj.get("usage").map(parse_usage).unwrap_or_default(),
    })
}

/// Encodes an IR response as an Anthropic Messages response (`target_format=bedrock_claude`).
pub fn encode_response(resp: &ChatResponse, id: &str, model: &str) -> Value {
    let mut blocks = Vec::with_capacity(resp.content.len());
    for part in &resp.content {
        match part {
            Part::Text { text, .. } => blocks.push(json!({"type": "text", "text": text})),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                let input = serde_json::from_str::<Value>(arguments)
                    .ok()
                    .filter(Value::is_object)
                    .unwrap_or_else(|| json!({}));
                blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
            }
            Part::Reasoning { text, signature } => blocks.push(json!({
                "type": "thinking",
                "thinking": text,
                "signature": signature.clone().unwrap_or_default(),
            })),
            Part::RedactedReasoning { data } => {
                blocks.push(json!({"type": "redacted_thinking", "data": data}))
            }
            _ => {}
        }
    }
    // Keep Anthropic's own message id; ids from other providers do not look like one.
    let id = match &resp.id {
        Some(own) if own.starts_with("msg_") => own.clone(),
        _ => id.to_string(),
    };
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason_str(resp.stop_reason),
        "stop_sequence": resp.stop_sequence,
        "usage": usage_value(&resp.usage),
    })
}
