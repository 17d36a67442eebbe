//! Bedrock Converse requests: the encoder from the IR.

use crate::capabilities::Capabilities;
use crate::error::GatewayError;
use crate::formats::bedrock::{
    check_reserved_tool_name, image_format, parse_arguments, remote_image_error, structured_schema,
    STRUCTURED_OUTPUT_DESCRIPTION, STRUCTURED_OUTPUT_TOOL,
};
use crate::ir::{ChatRequest, ImageSource, Part, Reasoning, ResponseFormat, Role, ToolChoice};
use crate::json::Lazy;
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
    raw: crate::json::Spliced<'_>,
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
        let text = req.system_text().into_owned();
        let r = req.to_mut();
        r.system.clear();
        match r.messages.iter_mut().find(|m| m.role == Role::User) {
            Some(first) => {
                first.content.insert(0, Part::text(format!("{text}\n\n")));
                // The folded text takes the origin of the part it precedes (text never errs).
                if let Some(o) = first.origins.first().copied() {
                    first.origins.insert(0, o);
                }
            }
            None => r.messages.insert(
                0,
                crate::ir::Message::new(Role::User, vec![Part::text(text)]),
            ),
        }
    }
    let req: &ChatRequest = &req;

    let mut system = Vec::new();
    for p in &req.system {
        if let Part::Text { text, cache } = p {
            if !text.is_empty() {
                system.push(Block::Text(text));
            }
            if *cache {
                system.push(Block::CachePoint(CachePoint { kind: "default" }));
            }
        }
    }
    let system = (!req.system.is_empty()).then_some(system);

    let mut history_has_tools = false;
    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, msg) in req.messages.iter().enumerate() {
        let results = msg
            .content
            .iter()
            .enumerate()
            .filter(|(_, p)| matches!(p, Part::ToolResult { .. }));
        let others = msg
            .content
            .iter()
            .enumerate()
            .filter(|(_, p)| !matches!(p, Part::ToolResult { .. }));
        let mut blocks = Vec::with_capacity(msg.content.len());
        for (j, part) in results.chain(others) {
            if matches!(part, Part::ToolCall { .. } | Part::ToolResult { .. }) {
                history_has_tools = true;
            }
            encode_block(
                part,
                &Lazy(|| msg.part_path(j, i)),
                &mut blocks,
                caps.tool_result_status,
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
        check_reserved_tool_name(&req.tools)?;
        tools.push(json!({"toolSpec": {
            "name": STRUCTURED_OUTPUT_TOOL,
            "description": STRUCTURED_OUTPUT_DESCRIPTION,
            "inputSchema": {"json": structured_schema(rf)},
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
        system,
        messages,
        rest: out,
    };
    let bytes = super::super::json_body(&body, raw)?;
    Ok((bytes, force_tool))
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
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<Vec<Block<'a>>>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
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

/// `tool_status`: whether the model takes `toolResult.status` (only Nova and Claude do; other
/// families fail the request on it).
fn encode_block<'a>(
    part: &'a Part,
    path: &dyn std::fmt::Display,
    out: &mut Vec<Block<'a>>,
    tool_status: bool,
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
                encode_block(
                    p,
                    &Lazy(|| format!("{path}.content[{i}]")),
                    &mut inner,
                    tool_status,
                )?;
            }
            // Cache points are not allowed inside tool results.
            inner.retain(|b| !matches!(b, Block::CachePoint(_)));
            if inner.is_empty() {
                inner.push(Block::Text(""));
            }
            out.push(Block::ToolResult(ToolResult {
                tool_use_id: id,
                content: inner,
                status: tool_status.then_some(if *is_error { "error" } else { "success" }),
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
        // Refused before encoding (plan::checks::translatable).
        Part::Opaque { .. } => {}
    }
    Ok(())
}
