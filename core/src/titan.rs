//! Amazon Titan Text (InvokeModel with `inputText`): request decoder and encoder, response
//! decoder and encoder.

use crate::error::GatewayError;
use crate::fields::{opt_f64, opt_object, opt_u32, req_str, string_or_list, Object};
use crate::ir::{ChatRequest, ChatResponse, Message, Part, Role, StopReason, Usage};
use serde_json::{json, Map, Value};

/// Decodes a Bedrock-Titan request body into the IR: the whole `inputText` is one user turn.
pub fn decode_request(obj: &Object) -> Result<ChatRequest, GatewayError> {
    let model = req_str(obj, "model", "model")?.to_string();
    let input = req_str(obj, "inputText", "inputText")?.to_string();
    let mut req = ChatRequest {
        model,
        messages: vec![Message {
            role: Role::User,
            content: vec![Part::text(input)],
        }],
        ..ChatRequest::default()
    };
    if let Some(cfg) = opt_object(obj, "textGenerationConfig", "textGenerationConfig")? {
        req.max_tokens = opt_u32(
            cfg,
            "maxTokenCount",
            "textGenerationConfig.maxTokenCount",
            1,
        )?;
        req.temperature = opt_f64(
            cfg,
            "temperature",
            "textGenerationConfig.temperature",
            0.0,
            1.0,
        )?;
        req.top_p = opt_f64(cfg, "topP", "textGenerationConfig.topP", 0.0, 1.0)?;
        req.stop = string_or_list(cfg, "stopSequences", "textGenerationConfig.stopSequences")?;
    }
    req.stream = crate::fields::opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    Ok(req)
}

/// Builds Titan's `inputText` from a conversation ("User: …\nBot: …" convention).
fn input_text(req: &ChatRequest) -> Result<String, GatewayError> {
    let mut out = String::new();
    let system = req.system_text();
    if !system.is_empty() {
        out.push_str(&system);
        out.push_str("\n\n");
    }
    for (i, msg) in req.messages.iter().enumerate() {
        let mut text = String::new();
        for (j, part) in msg.content.iter().enumerate() {
            match part {
                Part::Text { text: t, .. } => text.push_str(t),
                Part::Reasoning { .. } | Part::RedactedReasoning { .. } => {}
                _ => {
                    return Err(GatewayError::invalid(
                        format!("messages[{i}].content[{j}]"),
                        "Titan text models accept text only (no images, documents or tools).",
                    ))
                }
            }
        }
        let speaker = match msg.role {
            Role::User => "User",
            Role::Assistant => "Bot",
        };
        out.push_str(speaker);
        out.push_str(": ");
        out.push_str(&text);
        out.push('\n');
    }
    out.push_str("Bot:");
    Ok(out)
}

/// Encodes the IR as a Titan InvokeModel body.
pub fn encode_request(req: &ChatRequest) -> Result<Value, GatewayError> {
    if !req.tools.is_empty() {
        return Err(GatewayError::invalid(
            "tools",
            "Titan text models do not support tools.",
        ));
    }
    let mut cfg = Map::new();
    if let Some(m) = req.max_tokens {
        cfg.insert("maxTokenCount".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        if t > 1.0 {
            return Err(GatewayError::invalid(
                "temperature",
                format!("`temperature` must be between 0 and 1 for Titan models, got {t}."),
            ));
        }
        cfg.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        cfg.insert("topP".into(), json!(p));
    }
    if !req.stop.is_empty() {
        cfg.insert("stopSequences".into(), json!(req.stop));
    }
    let mut out = Map::new();
    out.insert("inputText".into(), json!(input_text(req)?));
    if !cfg.is_empty() {
        out.insert("textGenerationConfig".into(), Value::Object(cfg));
    }
    Ok(Value::Object(out))
}

/// Maps a Titan `completionReason` to the IR.
pub fn parse_stop_reason(reason: &str) -> StopReason {
    match reason {
        "LENGTH" => StopReason::MaxTokens,
        "STOP_CRITERIA_MET" => StopReason::StopSequence,
        "CONTENT_FILTERED" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

/// Maps an IR stop reason to a Titan `completionReason`.
pub fn stop_reason_str(stop: StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens | StopReason::ContextWindowExceeded => "LENGTH",
        StopReason::StopSequence => "STOP_CRITERIA_MET",
        StopReason::ContentFilter | StopReason::Refusal => "CONTENT_FILTERED",
        _ => "FINISH",
    }
}

/// Decodes a Titan response body into the IR.
pub fn decode_response(obj: &Object) -> Result<ChatResponse, GatewayError> {
    let result = obj
        .get("results")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .ok_or_else(|| {
            GatewayError::bad_gateway("Bedrock returned a Titan response without `results`.")
        })?;
    let text = result
        .get("outputText")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    Ok(ChatResponse {
        id: None,
        content: vec![Part::text(text)],
        stop_reason: result
            .get("completionReason")
            .and_then(Value::as_str)
            .map(parse_stop_reason)
            .unwrap_or_default(),
        stop_sequence: None,
        usage: Usage {
            prompt_tokens: n(obj.get("inputTextTokenCount")),
            completion_tokens: n(result.get("tokenCount")),
            ..Usage::default()
        },
    })
}

/// Encodes an IR response as a Titan response (`target_format=bedrock_titan`).
pub fn encode_response(resp: &ChatResponse) -> Value {
    json!({
        "inputTextTokenCount": resp.usage.prompt_tokens,
        "results": [{
            "tokenCount": resp.usage.completion_tokens,
            "outputText": resp.text(),
            "completionReason": stop_reason_str(resp.stop_reason),
        }],
    })
}
