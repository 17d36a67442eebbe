//! Responses answers: the Response object (also the `response` of the stream's lifecycle
//! events), its output items, usage and status, and the decoder for OpenAI's own answers.

use super::reasoning;
use super::tools;
use crate::error::{ErrorType, GatewayError};
use crate::ir::{ChatResponse, Part, ResponseMeta, StopReason, ToolAlias, Usage};
use crate::json::Object;
use serde_json::{json, Map, Value};

/// The Response object's `status` and `incomplete_details.reason` for a stop reason.
pub fn status(stop: StopReason) -> (&'static str, Option<&'static str>) {
    match stop {
        StopReason::MaxTokens | StopReason::ContextWindowExceeded => {
            ("incomplete", Some("max_output_tokens"))
        }
        StopReason::ContentFilter | StopReason::Refusal => ("incomplete", Some("content_filter")),
        StopReason::EndTurn
        | StopReason::StopSequence
        | StopReason::ToolUse
        | StopReason::PauseTurn => ("completed", None),
    }
}

/// The `usage` object: `input_tokens` includes cache reads and writes.
pub fn usage_value(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": u.cache_read_tokens,
            "cache_write_tokens": u.cache_write_tokens,
        },
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": u.reasoning_tokens.unwrap_or(0)},
        "total_tokens": u.total(),
    })
}

/// Parses a Responses `usage` object.
pub fn parse_usage(v: &Value) -> Usage {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let details = v.get("input_tokens_details");
    Usage {
        prompt_tokens: n(v.get("input_tokens")),
        completion_tokens: n(v.get("output_tokens")),
        cache_read_tokens: n(details.and_then(|d| d.get("cached_tokens"))),
        cache_write_tokens: n(details.and_then(|d| d.get("cache_write_tokens"))),
        reasoning_tokens: v
            .get("output_tokens_details")
            .and_then(|d| d.get("reasoning_tokens"))
            .and_then(Value::as_u64),
    }
}

/// The `error.code` a Responses client acts on for a failure: Codex compacts its history on
/// `context_length_exceeded` and waits on `rate_limit_exceeded`; other codes are the
/// gateway's own.
pub fn failure_code(err: &GatewayError) -> String {
    let code = err.code.as_deref().unwrap_or_default();
    let message = err.message.to_ascii_lowercase();
    if code == "context_length_exceeded"
        || message.contains("prompt is too long")
        || message.contains("input is too long")
        || message.contains("context") && message.contains("exceed")
    {
        "context_length_exceeded".into()
    } else if err.kind == ErrorType::InsufficientQuota {
        "insufficient_quota".into()
    } else if err.status == 429 || err.kind == ErrorType::RateLimit {
        "rate_limit_exceeded".into()
    } else if code.is_empty() {
        "server_error".into()
    } else {
        code.to_string()
    }
}

/// The `error` of a failed Response.
pub fn error_value(err: &GatewayError) -> Value {
    json!({"code": failure_code(err), "message": err.message})
}

/// What a Response object says besides the request parameters it repeats.
#[derive(Debug, Clone, Copy)]
pub struct State<'a> {
    /// `in_progress`, `completed`, `incomplete` or `failed`.
    pub status: &'a str,
    /// `incomplete_details.reason`.
    pub incomplete: Option<&'a str>,
    /// The output items.
    pub output: &'a [Value],
    /// Token usage (absent while in progress).
    pub usage: Option<&'a Usage>,
    /// The failure.
    pub error: Option<&'a GatewayError>,
}

/// The members of a Response object that stay the same for one answer: its id, model and the
/// request parameters it repeats (everything but `status`, `incomplete_details`, `error`,
/// `output` and `usage`).
pub fn fixed_members(meta: &ResponseMeta) -> Map<String, Value> {
    let p = &meta.echo.params;
    let param = |k: &str, default: Value| p.get(k).cloned().unwrap_or(default);
    let mut o = Map::new();
    o.insert("id".into(), json!(meta.id));
    o.insert("object".into(), json!("response"));
    o.insert("created_at".into(), json!(meta.created));
    o.insert("background".into(), json!(false));
    o.insert("instructions".into(), Value::Null);
    o.insert(
        "max_output_tokens".into(),
        param("max_output_tokens", Value::Null),
    );
    o.insert("metadata".into(), param("metadata", json!({})));
    o.insert("model".into(), json!(meta.model));
    o.insert(
        "parallel_tool_calls".into(),
        param("parallel_tool_calls", json!(true)),
    );
    o.insert("previous_response_id".into(), Value::Null);
    o.insert(
        "prompt_cache_key".into(),
        param("prompt_cache_key", Value::Null),
    );
    o.insert(
        "reasoning".into(),
        param("reasoning", json!({"effort": null, "summary": null})),
    );
    o.insert(
        "safety_identifier".into(),
        param("safety_identifier", Value::Null),
    );
    o.insert(
        "service_tier".into(),
        param("service_tier", json!("default")),
    );
    // Nothing is kept: every answer is `store: false`, whatever the request said.
    o.insert("store".into(), json!(false));
    o.insert("temperature".into(), param("temperature", Value::Null));
    o.insert(
        "text".into(),
        param("text", json!({"format": {"type": "text"}})),
    );
    o.insert("tool_choice".into(), param("tool_choice", json!("auto")));
    // The declarations are not repeated (Codex sends ~40 KB of them every turn).
    o.insert("tools".into(), json!([]));
    o.insert("top_p".into(), param("top_p", Value::Null));
    o.insert("truncation".into(), param("truncation", json!("disabled")));
    o.insert("user".into(), param("user", Value::Null));
    o
}

/// The members that change as an answer progresses.
pub fn state_members(state: State<'_>) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("status".into(), json!(state.status));
    o.insert(
        "incomplete_details".into(),
        state
            .incomplete
            .map_or(Value::Null, |r| json!({ "reason": r })),
    );
    o.insert("error".into(), state.error.map_or(Value::Null, error_value));
    o.insert("output".into(), Value::Array(state.output.to_vec()));
    o.insert("usage".into(), state.usage.map_or(Value::Null, usage_value));
    o
}

/// The Response object.
pub fn object(meta: &ResponseMeta, state: State<'_>) -> Value {
    let mut o = fixed_members(meta);
    o.extend(state_members(state));
    Value::Object(o)
}

/// Item ids: `<prefix>_<request id>_<output index>`, unique within the gateway's answers.
pub fn item_id(meta: &ResponseMeta, prefix: &str, index: usize) -> String {
    let base = meta.id.strip_prefix("resp_").unwrap_or(&meta.id);
    format!("{prefix}_{base}_{index}")
}

/// A finished `message` item.
pub fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({
        "id": id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [output_text(text)],
    })
}

/// An `output_text` content part.
pub fn output_text(text: &str) -> Value {
    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
}

/// A finished `reasoning` item: the thinking as its summary, and (when the client asked) the
/// sealed part to send back.
pub fn reasoning_item(id: &str, text: &str, sealed: Option<String>) -> Value {
    let summary = if text.is_empty() {
        json!([])
    } else {
        json!([{"type": "summary_text", "text": text}])
    };
    let mut item = json!({"id": id, "type": "reasoning", "summary": summary});
    if let (Some(s), Some(o)) = (sealed, item.as_object_mut()) {
        o.insert("encrypted_content".into(), json!(s));
    }
    item
}

/// A tool call as the client declared the tool: `function_call` (with `namespace` for a
/// namespaced function) or `custom_tool_call` with the raw input.
pub fn call_item(
    aliases: &[ToolAlias],
    meta: &ResponseMeta,
    index: usize,
    call_id: &str,
    flat: &str,
    arguments: &str,
    status: &str,
) -> Value {
    let alias = tools::alias(aliases, flat);
    let name = alias.map_or(flat, |a| a.name.as_str());
    let mut item = if alias.is_some_and(|a| a.custom) {
        json!({
            "id": item_id(meta, "ctc", index),
            "type": "custom_tool_call",
            "status": status,
            "call_id": call_id,
            "name": name,
            "input": custom_input(arguments),
        })
    } else {
        json!({
            "id": item_id(meta, "fc", index),
            "type": "function_call",
            "status": status,
            "call_id": call_id,
            "name": name,
            "arguments": if arguments.trim().is_empty() { "{}" } else { arguments },
        })
    };
    if let (Some(ns), Some(o)) = (
        alias.and_then(|a| a.namespace.as_deref()),
        item.as_object_mut(),
    ) {
        o.insert("namespace".into(), json!(ns));
    }
    item
}

/// The raw input of a `custom` tool call from the function arguments the upstream produced
/// (`{"input": "…"}`); anything else is passed on as the text it is.
pub fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(mut o)) => match o.remove("input") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => arguments.to_string(),
        },
        Ok(Value::String(s)) => s,
        _ => arguments.to_string(),
    }
}

/// Encodes a complete answer as a Response object.
pub fn encode_response(resp: &ChatResponse, meta: &ResponseMeta) -> Value {
    let (status, incomplete) = status(resp.stop_reason);
    let item_status = if status == "incomplete" {
        "incomplete"
    } else {
        "completed"
    };
    let mut output: Vec<Value> = Vec::new();
    let mut text = String::new();
    let flush = |text: &mut String, output: &mut Vec<Value>| {
        if !text.is_empty() {
            let id = item_id(meta, "msg", output.len());
            output.push(message_item(&id, text, item_status));
            text.clear();
        }
    };
    for part in &resp.content {
        match part {
            Part::Text { text: t, .. } => text.push_str(t),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                flush(&mut text, &mut output);
                let item = call_item(
                    &meta.echo.tools,
                    meta,
                    output.len(),
                    id,
                    name,
                    arguments,
                    "completed",
                );
                output.push(item);
            }
            Part::Reasoning { text: t, .. } | Part::RedactedReasoning { data: t } => {
                flush(&mut text, &mut output);
                let sealed = meta
                    .echo
                    .replayable_reasoning
                    .then(|| reasoning::seal(part))
                    .flatten();
                let summary = match part {
                    Part::Reasoning { .. } => t.as_str(),
                    _ => "",
                };
                if summary.is_empty() && sealed.is_none() {
                    continue;
                }
                let id = item_id(meta, "rs", output.len());
                output.push(reasoning_item(&id, summary, sealed));
            }
            _ => {}
        }
    }
    flush(&mut text, &mut output);
    object(
        meta,
        State {
            status,
            incomplete,
            output: &output,
            usage: Some(&resp.usage),
            error: None,
        },
    )
}

/// Decodes OpenAI's Response object into the IR (a relayed answer's usage, and answers
/// translated for other clients).
pub fn decode_response(obj: &Object) -> Result<ChatResponse, GatewayError> {
    if obj.get("status").and_then(Value::as_str) == Some("failed") {
        let message = obj
            .get("error")
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("The OpenAI response failed.");
        return Err(GatewayError::bad_gateway(message.to_string()));
    }
    let Some(Value::Array(items)) = obj.get("output") else {
        return Err(GatewayError::bad_gateway(
            "The OpenAI upstream returned a response without `output`.",
        ));
    };
    let mut content = Vec::new();
    for item in items {
        let s = |k: &str| item.get(k).and_then(Value::as_str).unwrap_or_default();
        match s("type") {
            "message" => {
                for c in item
                    .get("content")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = c.get("text").and_then(Value::as_str) {
                        content.push(Part::text(t));
                    }
                }
            }
            "function_call" => content.push(Part::ToolCall {
                id: s("call_id").to_string(),
                name: tools::flat_name(item.get("namespace").and_then(Value::as_str), s("name")),
                arguments: s("arguments").to_string(),
            }),
            "custom_tool_call" => content.push(Part::ToolCall {
                id: s("call_id").to_string(),
                name: s("name").to_string(),
                arguments: json!({ "input": s("input") }).to_string(),
            }),
            "reasoning" => {
                let text: String = item
                    .get("summary")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("\n\n");
                if !text.is_empty() {
                    content.push(Part::Reasoning {
                        text,
                        signature: None,
                    });
                }
            }
            _ => {}
        }
    }
    let calls = content.iter().any(|p| matches!(p, Part::ToolCall { .. }));
    Ok(ChatResponse {
        id: obj.get("id").and_then(Value::as_str).map(str::to_string),
        stop_reason: stop_reason(
            obj.get("status").and_then(Value::as_str),
            obj.get("incomplete_details")
                .and_then(|d| d.get("reason"))
                .and_then(Value::as_str),
            calls,
        ),
        content,
        stop_sequence: None,
        usage: obj.get("usage").map(parse_usage).unwrap_or_default(),
    })
}

/// The IR stop reason of a Response: its `status`, `incomplete_details.reason`, and whether it
/// called tools.
pub fn stop_reason(status: Option<&str>, reason: Option<&str>, has_calls: bool) -> StopReason {
    match (status, reason) {
        (Some("incomplete"), Some("content_filter")) => StopReason::ContentFilter,
        (Some("incomplete"), _) => StopReason::MaxTokens,
        _ if has_calls => StopReason::ToolUse,
        _ => StopReason::EndTurn,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ClientEcho;

    fn meta(echo: ClientEcho) -> ResponseMeta {
        ResponseMeta {
            id: "resp_abc".into(),
            created: 1_700_000_000,
            model: "claude".into(),
            legacy_functions: false,
            echo,
        }
    }

    #[test]
    fn answer_items_follow_the_client_declarations() {
        let echo = ClientEcho {
            tools: vec![
                ToolAlias {
                    flat: "apply_patch".into(),
                    namespace: None,
                    name: "apply_patch".into(),
                    custom: true,
                },
                ToolAlias {
                    flat: "multi_agent_v1__spawn".into(),
                    namespace: Some("multi_agent_v1".into()),
                    name: "spawn".into(),
                    custom: false,
                },
            ],
            replayable_reasoning: true,
            ..ClientEcho::default()
        };
        let resp = ChatResponse {
            content: vec![
                Part::Reasoning {
                    text: "Plan.".into(),
                    signature: Some("sig".into()),
                },
                Part::text("A"),
                Part::text("B"),
                Part::ToolCall {
                    id: "toolu_1".into(),
                    name: "apply_patch".into(),
                    arguments: "{\"input\":\"*** Begin Patch\\n\"}".into(),
                },
                Part::ToolCall {
                    id: "toolu_2".into(),
                    name: "multi_agent_v1__spawn".into(),
                    arguments: String::new(),
                },
            ],
            stop_reason: StopReason::ToolUse,
            usage: Usage::from_uncached(10, 5, 100, 2),
            ..ChatResponse::default()
        };
        let v = encode_response(&resp, &meta(echo));
        assert_eq!(v["status"], "completed");
        let out = v["output"].as_array().unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(out[0]["type"], "reasoning");
        assert_eq!(out[0]["summary"][0]["text"], "Plan.");
        let sealed = out[0]["encrypted_content"].as_str().unwrap();
        assert!(matches!(
            reasoning::unseal(sealed),
            reasoning::Unsealed::Ours(_)
        ));
        assert_eq!(out[1]["content"][0]["text"], "AB");
        assert_eq!(out[1]["id"], "msg_abc_1");
        assert_eq!(out[2]["type"], "custom_tool_call");
        assert_eq!(out[2]["input"], "*** Begin Patch\n");
        assert_eq!(out[2]["call_id"], "toolu_1");
        assert_eq!(out[3]["type"], "function_call");
        assert_eq!(
            (&out[3]["namespace"], &out[3]["name"], &out[3]["arguments"]),
            (&json!("multi_agent_v1"), &json!("spawn"), &json!("{}"))
        );
        assert_eq!(
            v["usage"],
            json!({"input_tokens": 112, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 2},
                   "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 117})
        );
        assert_eq!(v["store"], false);
        assert_eq!(v["tool_choice"], "auto");
    }

    #[test]
    fn max_tokens_and_filters_are_incomplete() {
        for (stop, reason) in [
            (StopReason::MaxTokens, "max_output_tokens"),
            (StopReason::ContentFilter, "content_filter"),
            (StopReason::Refusal, "content_filter"),
        ] {
            let resp = ChatResponse {
                content: vec![Part::text("cut")],
                stop_reason: stop,
                ..ChatResponse::default()
            };
            let v = encode_response(&resp, &meta(ClientEcho::default()));
            assert_eq!(v["status"], "incomplete");
            assert_eq!(v["incomplete_details"]["reason"], reason);
            assert_eq!(v["output"][0]["status"], "incomplete");
        }
    }

    #[test]
    fn failure_codes_clients_act_on() {
        let cases = [
            (
                GatewayError::invalid("x", "prompt is too long: 250000 tokens > 200000 maximum"),
                "context_length_exceeded",
            ),
            (
                GatewayError::new(429, ErrorType::RateLimit, "slow down"),
                "rate_limit_exceeded",
            ),
            (
                GatewayError::new(429, ErrorType::InsufficientQuota, "pay"),
                "insufficient_quota",
            ),
            (
                GatewayError::bad_gateway("cut").with_code("upstream_stream_truncated"),
                "upstream_stream_truncated",
            ),
            (GatewayError::new(500, ErrorType::Api, "x"), "server_error"),
        ];
        for (err, code) in cases {
            assert_eq!(failure_code(&err), code, "{err}");
        }
    }

    #[test]
    fn openai_answers_decode() {
        let body = json!({
            "id": "resp_1", "object": "response", "status": "completed",
            "output": [
                {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Hm."}], "encrypted_content": "gAAA"},
                {"type": "message", "id": "msg_1", "role": "assistant", "content": [{"type": "output_text", "text": "Hi", "annotations": []}]},
                {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "f", "arguments": "{\"a\":1}"},
            ],
            "usage": {"input_tokens": 20, "input_tokens_details": {"cached_tokens": 8}, "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 2}, "total_tokens": 24},
        });
        let r = decode_response(body.as_object().unwrap()).unwrap();
        assert_eq!(r.stop_reason, StopReason::ToolUse);
        assert_eq!(r.text(), "Hi");
        assert_eq!(r.usage.prompt_tokens, 20);
        assert_eq!(r.usage.cache_read_tokens, 8);
        assert_eq!(r.usage.reasoning_tokens, Some(2));
        assert_eq!(r.content.len(), 3);
    }
}
