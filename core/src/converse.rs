//! Bedrock Converse: request encoder and response decoder (every non-Claude, non-Titan
//! Bedrock family goes through Converse).

use crate::anthropic::{parse_arguments, remote_image_error, STRUCTURED_OUTPUT_TOOL};
use crate::capabilities::Capabilities;
use crate::error::GatewayError;
use crate::fields::{Lazy, Object};
use crate::ir::{
    ChatRequest, ChatResponse, ImageSource, Part, Reasoning, ResponseFormat, Role, StopReason,
    ToolChoice, Usage,
};
use serde::Serialize;
use serde_json::{json, Map, Value};

/// The instruction used for structured output on models that cannot be forced to call a tool.
fn json_instruction(rf: &ResponseFormat) -> String {
    match rf {
        ResponseFormat::JsonObject => {
            "Respond with a single JSON object and nothing else: no prose, no code fences.".into()
        }
        ResponseFormat::JsonSchema { schema, .. } => format!(
            "Respond with a single JSON object that conforms to this JSON Schema, and nothing else (no prose, no code fences): {schema}"
        ),
    }
}

/// Encodes the IR as a Converse request body for a model with capabilities `caps`. Returns
/// the body and whether the structured-output tool was forced (its input is the answer).
///
/// Structured output: models that can be forced to call a tool get a tool named
/// [`STRUCTURED_OUTPUT_TOOL`] with the schema as input schema and a forced `toolChoice`;
/// others get an instruction in the system prompt.
pub fn encode_request(
    req: &ChatRequest,
    caps: Capabilities,
) -> Result<(Vec<u8>, bool), GatewayError> {
    let mut out = Map::new();
    let mut req = std::borrow::Cow::Borrowed(req);
    let force_tool = req.response_format.is_some() && caps.tool_choice && caps.tools;
    if let (Some(rf), false) = (&req.response_format, force_tool) {
        let instruction = json_instruction(rf);
        req.to_mut().system.push(Part::text(instruction));
    }
    if !caps.system && !req.system.is_empty() {
        // Models without system prompts get the instructions at the top of the first user turn.
        let text = req.system_text();
        let r = req.to_mut();
        r.system.clear();
        match r.messages.iter_mut().find(|m| m.role == Role::User) {
            Some(first) => first.content.insert(0, Part::text(format!("{text}\n\n"))),
            None => r.messages.insert(
                0,
                crate::ir::Message {
                    role: Role::User,
                    content: vec![Part::text(text)],
                },
            ),
        }
    }
    let req: &ChatRequest = &req;

    if !req.system.is_empty() {
        let mut system = Vec::new();
        for p in &req.system {
            if let Part::Text { text, cache } = p {
                if !text.is_empty() {
                    system.push(json!({"text": text}));
                }
                if *cache {
                    system.push(json!({"cachePoint": {"type": "default"}}));
                }
            }
        }
        out.insert("system".into(), Value::Array(system));
    }

    let mut history_has_tools = false;
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, msg) in req.messages.iter().enumerate() {
        let results = msg
            .content
            .iter()
            .filter(|p| matches!(p, Part::ToolResult { .. }));
        let others = msg
            .content
            .iter()
            .filter(|p| !matches!(p, Part::ToolResult { .. }));
        let mut blocks = Vec::with_capacity(msg.content.len());
        for (j, part) in results.chain(others).enumerate() {
            if matches!(part, Part::ToolCall { .. } | Part::ToolResult { .. }) {
                history_has_tools = true;
            }
            encode_block(
                part,
                &Lazy(|| format!("messages[{i}].content[{j}]")),
                &mut blocks,
            )?;
        }
        if blocks.is_empty() {
            continue;
        }
        let role = match msg.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        messages.push(Msg {
            role,
            content: blocks,
        });
    }

    let mut inference = Map::new();
    if let Some(m) = req.max_tokens {
        inference.insert("maxTokens".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        if t > 1.0 {
            return Err(GatewayError::invalid(
                "temperature",
                format!("`temperature` must be between 0 and 1 for Bedrock models, got {t}."),
            ));
        }
        inference.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        inference.insert("topP".into(), json!(p));
    }
    let stops: Vec<&String> = req.stop.iter().filter(|s| !s.is_empty()).collect();
    if !stops.is_empty() {
        inference.insert("stopSequences".into(), json!(stops));
    }
    if !inference.is_empty() {
        out.insert("inferenceConfig".into(), Value::Object(inference));
    }

    let mut additional = Map::new();
    if let Some(k) = req.top_k {
        additional.insert("top_k".into(), json!(k));
    }
    match &req.reasoning {
        Some(Reasoning::Effort(e)) => {
            additional.insert(
                "reasoning_config".into(),
                json!({"type": "enabled", "max_reasoning_effort": e}),
            );
        }
        Some(Reasoning::Budget(b)) => {
            additional.insert(
                "reasoning_config".into(),
                json!({"type": "enabled", "budget_tokens": b}),
            );
        }
        _ => {}
    }
    if !additional.is_empty() {
        out.insert(
            "additionalModelRequestFields".into(),
            Value::Object(additional),
        );
    }

    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let mut spec = Map::new();
            spec.insert("name".into(), json!(t.name));
            if let Some(d) = &t.description {
                spec.insert("description".into(), json!(d));
            }
            spec.insert("inputSchema".into(), json!({"json": t.parameters}));
            json!({"toolSpec": spec})
        })
        .collect();
    let mut choice = match &req.tool_choice {
        // `auto` is Converse's default; some families reject an explicit toolChoice.
        Some(ToolChoice::Auto) if !caps.tool_choice => None,
        Some(ToolChoice::Auto) => Some(json!({"auto": {}})),
        Some(ToolChoice::Required) => Some(json!({"any": {}})),
        Some(ToolChoice::Function(name)) => Some(json!({"tool": {"name": name}})),
        Some(ToolChoice::None) | None => None,
    };
    if req.tool_choice == Some(ToolChoice::None) && !history_has_tools {
        // Converse has no "none": leaving the tools out is the faithful equivalent.
        tools.clear();
    }
    if let (Some(rf), true) = (&req.response_format, force_tool) {
        if req.tools.iter().any(|t| t.name == STRUCTURED_OUTPUT_TOOL) {
            return Err(GatewayError::invalid(
                "tools",
                format!("The tool name `{STRUCTURED_OUTPUT_TOOL}` is reserved by the gateway."),
            ));
        }
        let schema = match rf {
            ResponseFormat::JsonObject => json!({"type": "object"}),
            ResponseFormat::JsonSchema { schema, .. } => schema.clone(),
        };
        tools.push(json!({"toolSpec": {
            "name": STRUCTURED_OUTPUT_TOOL,
            "description": "Answer with the final response as the input of this tool.",
            "inputSchema": {"json": schema},
        }}));
        choice = Some(json!({"tool": {"name": STRUCTURED_OUTPUT_TOOL}}));
    }
    if !tools.is_empty() {
        let mut cfg = Map::new();
        cfg.insert("tools".into(), Value::Array(tools));
        if let Some(c) = choice {
            cfg.insert("toolChoice".into(), c);
        }
        out.insert("toolConfig".into(), Value::Object(cfg));
    } else if history_has_tools {
        return Err(GatewayError::invalid(
            "tools",
            "This conversation contains tool calls or results; Bedrock Converse needs the `tools` definitions to be sent with it.",
        ));
    }
    let body = Body {
        messages,
        rest: out,
    };
    let bytes = serde_json::to_vec(&body).map_err(|e| {
        GatewayError::internal(format!("Could not serialize the upstream body: {e}"))
    })?;
    Ok((bytes, force_tool))
}

/// Converse image `format` for a MIME type.
pub fn image_format(
    media_type: &str,
    path: &dyn std::fmt::Display,
) -> Result<&'static str, GatewayError> {
    match media_type {
        "image/png" => Ok("png"),
        "image/jpeg" | "image/jpg" => Ok("jpeg"),
        "image/gif" => Ok("gif"),
        "image/webp" => Ok("webp"),
        other => Err(GatewayError::invalid(
            path,
            format!("Unsupported image type `{other}`; expected image/png, image/jpeg, image/gif or image/webp."),
        )),
    }
}

fn document_format(
    media_type: &str,
    path: &dyn std::fmt::Display,
) -> Result<&'static str, GatewayError> {
    match media_type {
        "application/pdf" => Ok("pdf"),
        "text/csv" => Ok("csv"),
        "application/msword" => Ok("doc"),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Ok("docx"),
        "application/vnd.ms-excel" => Ok("xls"),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => Ok("xlsx"),
        "text/html" => Ok("html"),
        "text/plain" => Ok("txt"),
        "text/markdown" => Ok("md"),
        other => Err(GatewayError::invalid(
            path,
            format!("Unsupported document type `{other}` for Bedrock Converse."),
        )),
    }
}

/// Converse document names allow letters, digits, single spaces, hyphens, parentheses and
/// square brackets only.
fn document_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        let c = if c.is_ascii_alphanumeric() || "-()[]".contains(c) {
            c
        } else {
            ' '
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        out.push(c);
    }
    let trimmed = out.trim_end().to_string();
    if trimmed.is_empty() {
        "document".to_string()
    } else {
        trimmed
    }
}

/// The request body: the messages typed, the rest of the (small) fields as a map.
#[derive(Serialize)]
struct Body<'a> {
    messages: Vec<Msg<'a>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Serialize)]
struct Msg<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
struct CachePoint {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Bytes<'a> {
    bytes: &'a str,
}

#[derive(Serialize)]
struct Image<'a> {
    format: &'static str,
    source: Bytes<'a>,
}

#[derive(Serialize)]
struct Document<'a> {
    format: &'static str,
    name: String,
    source: Bytes<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolUse<'a> {
    tool_use_id: &'a str,
    name: &'a str,
    input: Value,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ToolResult<'a> {
    tool_use_id: &'a str,
    content: Vec<Block<'a>>,
    status: &'static str,
}

/// One Converse content block (externally tagged, as Converse's union is).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Block<'a> {
    Text(&'a str),
    CachePoint(CachePoint),
    Image(Image<'a>),
    Document(Document<'a>),
    ToolUse(ToolUse<'a>),
    ToolResult(ToolResult<'a>),
    ReasoningContent(Value),
}

fn encode_block<'a>(
    part: &'a Part,
    path: &dyn std::fmt::Display,
    out: &mut Vec<Block<'a>>,
) -> Result<(), GatewayError> {
    match part {
        Part::Text { text, cache } => {
            if !text.is_empty() {
                out.push(Block::Text(text));
            }
            if *cache {
                out.push(Block::CachePoint(CachePoint { kind: "default" }));
            }
        }
        Part::Image(ImageSource::Base64 { media_type, data }) => out.push(Block::Image(Image {
            format: image_format(media_type, &Lazy(|| format!("{path}.image_url.url")))?,
            source: Bytes { bytes: data },
        })),
        Part::Image(ImageSource::Url(_)) => return Err(remote_image_error(path)),
        Part::Document {
            media_type,
            name,
            data,
        } => out.push(Block::Document(Document {
            format: document_format(media_type, path)?,
            name: document_name(name),
            source: Bytes { bytes: data },
        })),
        Part::ToolCall {
            id,
            name,
            arguments,
        } => out.push(Block::ToolUse(ToolUse {
            tool_use_id: id,
            name,
            input: parse_arguments(arguments, path)?,
        })),
        Part::ToolResult {
            id,
            content,
            is_error,
        } => {
            let mut inner = Vec::with_capacity(content.len());
            for (i, p) in content.iter().enumerate() {
                encode_block(p, &Lazy(|| format!("{path}.content[{i}]")), &mut inner)?;
            }
            // Cache points are not allowed inside tool results.
            inner.retain(|b| !matches!(b, Block::CachePoint(_)));
            if inner.is_empty() {
                inner.push(Block::Text(""));
            }
            out.push(Block::ToolResult(ToolResult {
                tool_use_id: id,
                content: inner,
                status: if *is_error { "error" } else { "success" },
            }));
        }
        Part::Reasoning { text, signature } => {
            if let Some(sig) = signature {
                out.push(Block::ReasoningContent(
                    json!({"reasoningText": {"text": text, "signature": sig}}),
                ));
            }
        }
        Part::RedactedReasoning { data } => {
            out.push(Block::ReasoningContent(json!({"redactedContent": data})))
        }
    }
    Ok(())
}

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
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let cache_read = n("cacheReadInputTokens");
    let cache_write = n("cacheWriteInputTokens");
    Usage {
        prompt_tokens: n("inputTokens")
            .saturating_add(cache_read)
            .saturating_add(cache_write),
        completion_tokens: n("outputTokens"),
        cache_read_tokens: cache_read,
        cache_write_tokens: cache_write,
        reasoning_tokens: None,
    }
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
            if structured && name == STRUCTURED_OUTPUT_TOOL {
                forced_output = true;
                content.push(Part::text(arguments));
            } else {
                content.push(Part::ToolCall {
                    id: tu
                        .get("toolUseId")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                    name: name.to_string(),
                    arguments,
                });
            }
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
