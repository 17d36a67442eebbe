//! OpenAI Chat Completions answers: `chat.completion` bodies both ways, usage and finish
//! reasons.

use crate::error::GatewayError;
use crate::ir::{ChatResponse, Part, ResponseMeta, StopReason, Usage};
use crate::json::{opt_array, Object};
use serde_json::{json, Map, Value};

/// Maps an IR stop reason to OpenAI's `finish_reason`.
pub fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndTurn | StopReason::StopSequence | StopReason::PauseTurn => "stop",
        StopReason::MaxTokens | StopReason::ContextWindowExceeded => "length",
        StopReason::ToolUse => "tool_calls",
        StopReason::ContentFilter | StopReason::Refusal => "content_filter",
    }
}

/// Maps OpenAI's `finish_reason` to the IR.
pub fn parse_finish_reason(reason: &str) -> StopReason {
    match reason {
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolUse,
        "content_filter" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

/// The OpenAI `usage` object for IR usage.
pub fn usage_value(u: &Usage) -> Value {
    let mut usage = json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total(),
        "prompt_tokens_details": {"cached_tokens": u.cache_read_tokens},
    });
    if let (Some(r), Some(obj)) = (u.reasoning_tokens, usage.as_object_mut()) {
        obj.insert(
            "completion_tokens_details".into(),
            json!({"reasoning_tokens": r}),
        );
    }
    usage
}

/// Encodes an IR response as an OpenAI `chat.completion`.
pub fn encode_response(resp: &ChatResponse, meta: &ResponseMeta) -> Value {
    let text = resp.text();
    let mut calls = Vec::new();
    let mut reasoning = String::new();
    let mut thinking_blocks = Vec::new();
    for part in &resp.content {
        match part {
            Part::ToolCall {
                id,
                name,
                arguments,
            } => calls.push(json!({
                "id": id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            })),
            Part::Reasoning { text, signature } => {
                reasoning.push_str(text);
                if let Some(sig) = signature {
                    thinking_blocks
                        .push(json!({"type": "thinking", "thinking": text, "signature": sig}));
                }
            }
            Part::RedactedReasoning { data } => {
                thinking_blocks.push(json!({"type": "redacted_thinking", "data": data}))
            }
            _ => {}
        }
    }
    let mut finish = finish_reason(resp.stop_reason);
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if text.is_empty() && !calls.is_empty() {
            Value::Null
        } else {
            json!(text)
        },
    );
    message.insert("refusal".into(), Value::Null);
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), json!(reasoning));
    }
    if !thinking_blocks.is_empty() {
        // Signatures let clients send the reasoning back in the next turn (Claude requires
        // it around tool use); same field name as other gateways use.
        message.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }
    if meta.legacy_functions {
        if let Some(first) = calls.first() {
            message.insert("function_call".into(), first["function"].clone());
            finish = "function_call";
        }
    } else if !calls.is_empty() {
        message.insert("tool_calls".into(), Value::Array(calls));
    }
    json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish,
        }],
        "usage": usage_value(&resp.usage),
        "system_fingerprint": null,
    })
}

/// Decodes an OpenAI `chat.completion` body into the IR.
pub fn decode_response(obj: &Object) -> Result<ChatResponse, GatewayError> {
    let bad = |what: &str| GatewayError::bad_gateway(format!("OpenAI response {what}"));
    let choices = opt_array(obj, "choices", "choices")
        .map_err(|_| bad("has a malformed `choices` field"))?
        .ok_or_else(|| bad("has no `choices`"))?;
    let choice = choices
        .first()
        .and_then(Value::as_object)
        .ok_or_else(|| bad("has an empty `choices` list"))?;
    let message = choice
        .get("message")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("has no `message`"))?;
    let mut content = Vec::new();
    if let Some(Value::String(r)) = message.get("reasoning_content") {
        if !r.is_empty() {
            content.push(Part::Reasoning {
                text: r.clone(),
                signature: None,
            });
        }
    }
    if let Some(Value::String(t)) = message.get("content") {
        if !t.is_empty() {
            content.push(Part::text(t.clone()));
        }
    }
    if let Some(Value::Array(calls)) = message.get("tool_calls") {
        for call in calls {
            let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
            let f = call.get("function");
            let name = f
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let arguments = f
                .and_then(|f| f.get("arguments"))
                .and_then(Value::as_str)
                .unwrap_or("{}");
            content.push(Part::ToolCall {
                id: id.to_string(),
                name: name.to_string(),
                arguments: arguments.to_string(),
            });
        }
    }
    let stop_reason = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(parse_finish_reason)
        .unwrap_or_default();
    Ok(ChatResponse {
        id: obj.get("id").and_then(Value::as_str).map(str::to_string),
        content,
        stop_reason,
        stop_sequence: None,
        usage: obj.get("usage").map(parse_usage).unwrap_or_default(),
    })
}

/// Parses an OpenAI `usage` object.
pub fn parse_usage(v: &Value) -> Usage {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    Usage {
        prompt_tokens: n(v.get("prompt_tokens")),
        completion_tokens: n(v.get("completion_tokens")),
        cache_read_tokens: n(v
            .get("prompt_tokens_details")
            .and_then(|d| d.get("cached_tokens"))),
        cache_write_tokens: 0,
        reasoning_tokens: v
            .get("completion_tokens_details")
            .and_then(|d| d.get("reasoning_tokens"))
            .and_then(Value::as_u64),
    }
}
