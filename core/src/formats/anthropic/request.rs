//! Anthropic Messages requests: the decoder into the IR and the encoder for Claude on Bedrock
//! (InvokeModel with `anthropic_version`).

use crate::error::GatewayError;
use crate::formats::bedrock::{
    check_reserved_tool_name, image_format, parse_arguments, remote_image_error, structured_schema,
    STRUCTURED_OUTPUT_DESCRIPTION, STRUCTURED_OUTPUT_TOOL,
};
use crate::formats::DecodeContext;
use crate::ir::{
    ChatRequest, ImageSource, Message, Origin, OriginField, Part, Reasoning, Role, Tool, ToolChoice,
};
use crate::json::{
    as_object, get, opt_array, opt_bool, opt_f64, opt_object, opt_str, opt_u32, req_str,
    string_or_list, type_name, Lazy, Object,
};
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// The `anthropic_version` Bedrock requires.
pub const BEDROCK_ANTHROPIC_VERSION: &str = "bedrock-2023-05-31";

/// Decodes an Anthropic Messages request body into the IR. Unknown top-level fields are
/// accepted (relayed to Claude where Bedrock takes them, dropped otherwise).
pub fn decode_request(obj: &Object, ctx: DecodeContext) -> Result<ChatRequest, GatewayError> {
    let model = req_str(obj, "model", "model")?.to_string();
    opt_str(obj, "anthropic_version", "anthropic_version")?;
    if ctx.messages_api && get(obj, "max_tokens").is_none() {
        return Err(GatewayError::invalid(
            "max_tokens",
            "Missing required parameter: `max_tokens`.",
        ));
    }
    let raw_messages = opt_array(obj, "messages", "messages")?.ok_or_else(|| {
        GatewayError::invalid("messages", "Missing required parameter: `messages`.")
    })?;
    if raw_messages.is_empty() {
        return Err(GatewayError::invalid(
            "messages",
            "`messages` must contain at least one message.",
        ));
    }
    let mut req = ChatRequest {
        model,
        ..ChatRequest::default()
    };
    match get(obj, "system") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => req.system.push(Part::text(s.clone())),
        Some(Value::Array(blocks)) => {
            for (i, b) in blocks.iter().enumerate() {
                let path = Lazy(|| format!("system[{i}]"));
                req.system.push(decode_block(b, &path, ctx)?);
            }
        }
        Some(v) => {
            return Err(GatewayError::invalid(
                "system",
                format!(
                "Invalid type for `system`: expected a string or an array of text blocks, got {}.",
                type_name(v)
            ),
            ))
        }
    }
    for (i, raw) in raw_messages.iter().enumerate() {
        let path = Lazy(|| format!("messages[{i}]"));
        let m = as_object(raw, &path)?;
        let role = match req_str(m, "role", &Lazy(|| format!("{path}.role")))? {
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(GatewayError::invalid(
                    format!("{path}.role"),
                    format!("Invalid role `{other}`; expected user or assistant."),
                ))
            }
        };
        let cpath = Lazy(|| format!("{path}.content"));
        let (content, origins) = match get(m, "content") {
            Some(Value::String(s)) => (
                vec![Part::text(s.clone())],
                vec![Origin::messages(i, OriginField::ContentString, 0)],
            ),
            Some(Value::Array(blocks)) => {
                let mut parts = Vec::with_capacity(blocks.len());
                let mut origins = Vec::with_capacity(blocks.len());
                for (j, b) in blocks.iter().enumerate() {
                    parts.push(decode_block(b, &Lazy(|| format!("{cpath}[{j}]")), ctx)?);
                    origins.push(Origin::messages(i, OriginField::Content, j));
                }
                (parts, origins)
            }
            None => {
                return Err(GatewayError::invalid(
                    cpath,
                    "Missing required parameter: `content`.",
                ))
            }
            Some(v) => {
                return Err(GatewayError::invalid(
                    cpath.to_string(),
                    format!(
                        "Invalid type for `{cpath}`: expected a string or an array of content blocks, got {}.",
                        type_name(v)
                    ),
                ))
            }
        };
        match req.messages.last_mut() {
            Some(last) if last.role == role => {
                last.content.extend(content);
                last.origins.extend(origins);
            }
            _ => req.messages.push(Message {
                role,
                content,
                origins,
            }),
        }
    }
    req.max_tokens = opt_u32(obj, "max_tokens", "max_tokens", 1)?;
    req.temperature = opt_f64(obj, "temperature", "temperature", 0.0, 1.0)?;
    req.top_p = opt_f64(obj, "top_p", "top_p", 0.0, 1.0)?;
    req.top_k = opt_u32(obj, "top_k", "top_k", 0)?;
    req.stop = string_or_list(obj, "stop_sequences", "stop_sequences")?;
    req.stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    if let Some(items) = opt_array(obj, "tools", "tools")? {
        for (i, item) in items.iter().enumerate() {
            let path = Lazy(|| format!("tools[{i}]"));
            let t = as_object(item, &path)?;
            let kind = opt_str(t, "type", &Lazy(|| format!("{path}.type")))?;
            req.tools.push(Tool {
                name: req_str(t, "name", &Lazy(|| format!("{path}.name")))?.to_string(),
                description: opt_str(t, "description", &Lazy(|| format!("{path}.description")))?
                    .map(str::to_string),
                parameters: get(t, "input_schema")
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                strict: opt_bool(t, "strict", &Lazy(|| format!("{path}.strict")))?,
                builtin: kind.filter(|k| *k != "custom").map(str::to_string),
            });
        }
    }
    if let Some(tc) = opt_object(obj, "tool_choice", "tool_choice")? {
        req.tool_choice = Some(match req_str(tc, "type", "tool_choice.type")? {
            "auto" => ToolChoice::Auto,
            "any" => ToolChoice::Required,
            "none" => ToolChoice::None,
            "tool" => ToolChoice::Function(req_str(tc, "name", "tool_choice.name")?.to_string()),
            other => {
                return Err(GatewayError::invalid(
                    "tool_choice.type",
                    format!(
                        "Invalid `tool_choice.type` `{other}`; expected auto, any, none or tool."
                    ),
                ))
            }
        });
        if opt_bool(
            tc,
            "disable_parallel_tool_use",
            "tool_choice.disable_parallel_tool_use",
        )? == Some(true)
        {
            req.parallel_tool_calls = Some(false);
        }
    }
    if let Some(thinking) = opt_object(obj, "thinking", "thinking")? {
        req.reasoning = match opt_str(thinking, "type", "thinking.type")? {
            Some("enabled") => Some(Reasoning::Budget(
                opt_u32(thinking, "budget_tokens", "thinking.budget_tokens", 1)?.unwrap_or(1024),
            )),
            // The model picks its own budget: a medium effort where a budget must be named.
            Some("adaptive") => Some(Reasoning::Effort("medium".into())),
            _ => Some(Reasoning::Disabled),
        };
    }
    if let Some(meta) = opt_object(obj, "metadata", "metadata")? {
        req.user = opt_str(meta, "user_id", "metadata.user_id")?.map(str::to_string);
    }
    Ok(req)
}

fn decode_block(
    raw: &Value,
    path: &dyn std::fmt::Display,
    ctx: DecodeContext,
) -> Result<Part, GatewayError> {
    let b = as_object(raw, path)?;
    let kind = req_str(b, "type", &Lazy(|| format!("{path}.type")))?;
    let cache = b.get("cache_control").is_some();
    match kind {
        "text" => Ok(Part::Text {
            text: opt_str(b, "text", &Lazy(|| format!("{path}.text")))?
                .unwrap_or_default()
                .to_string(),
            cache,
        }),
        "image" => {
            let spath = Lazy(|| format!("{path}.source"));
            let src = opt_object(b, "source", &spath)?.ok_or_else(|| {
                GatewayError::invalid(spath.to_string(), "Missing required parameter: `source`.")
            })?;
            match req_str(src, "type", &Lazy(|| format!("{spath}.type")))? {
                "base64" => Ok(Part::Image(ImageSource::Base64 {
                    media_type: req_str(
                        src,
                        "media_type",
                        &Lazy(|| format!("{spath}.media_type")),
                    )?
                    .to_string(),
                    data: req_str(src, "data", &Lazy(|| format!("{spath}.data")))?.to_string(),
                })),
                "url" if ctx.bedrock => Err(url_source_error(&spath)),
                "url" => Ok(Part::Image(ImageSource::Url(
                    req_str(src, "url", &Lazy(|| format!("{spath}.url")))?.to_string(),
                ))),
                "file" => Err(file_source_error(&spath)),
                other => Err(GatewayError::invalid(
                    format!("{spath}.type"),
                    format!("Unsupported image source type `{other}`; expected base64 or url."),
                )),
            }
        }
        "document" => {
            let spath = Lazy(|| format!("{path}.source"));
            let src = opt_object(b, "source", &spath)?.ok_or_else(|| {
                GatewayError::invalid(spath.to_string(), "Missing required parameter: `source`.")
            })?;
            let media_type = opt_str(src, "media_type", &Lazy(|| format!("{spath}.media_type")))?
                .unwrap_or("application/pdf")
                .to_string();
            let data = match opt_str(src, "type", &Lazy(|| format!("{spath}.type")))? {
                Some("url") => return Err(url_source_error(&spath)),
                Some("file") => return Err(file_source_error(&spath)),
                Some("content") => {
                    // Text blocks given as the document's content: their text, as a text file.
                    use base64::Engine;
                    let mut text = String::new();
                    if let Some(Value::Array(items)) = get(src, "content") {
                        for item in items {
                            if let Some(t) = item.get("text").and_then(Value::as_str) {
                                text.push_str(t);
                            }
                        }
                    } else if let Some(t) = get(src, "content").and_then(Value::as_str) {
                        text.push_str(t);
                    }
                    base64::engine::general_purpose::STANDARD.encode(text)
                }
                Some("text") => {
                    use base64::Engine;
                    base64::engine::general_purpose::STANDARD.encode(req_str(
                        src,
                        "data",
                        &Lazy(|| format!("{spath}.data")),
                    )?)
                }
                _ => req_str(src, "data", &Lazy(|| format!("{spath}.data")))?.to_string(),
            };
            Ok(Part::Document {
                media_type,
                name: opt_str(b, "title", &Lazy(|| format!("{path}.title")))?
                    .unwrap_or("document")
                    .to_string(),
                data,
            })
        }
        "tool_use" => Ok(Part::ToolCall {
            id: req_str(b, "id", &Lazy(|| format!("{path}.id")))?.to_string(),
            name: req_str(b, "name", &Lazy(|| format!("{path}.name")))?.to_string(),
            arguments: serde_json::to_string(get(b, "input").unwrap_or(&json!({})))
                .unwrap_or_else(|_| "{}".to_string()),
        }),
        "tool_result" => {
            let id =
                req_str(b, "tool_use_id", &Lazy(|| format!("{path}.tool_use_id")))?.to_string();
            let cpath = Lazy(|| format!("{path}.content"));
            let content = match get(b, "content") {
                None => Vec::new(),
                Some(Value::String(s)) => vec![Part::text(s.clone())],
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| decode_block(v, &Lazy(|| format!("{cpath}[{i}]")), ctx))
                    .collect::<Result<Vec<_>, _>>()?,
                Some(v) => {
                    return Err(GatewayError::invalid(
                        cpath.to_string(),
                        format!(
                            "Invalid type for `{cpath}`: expected a string or an array, got {}.",
                            type_name(v)
                        ),
                    ))
                }
            };
            Ok(Part::ToolResult {
                id,
                content,
                is_error: opt_bool(b, "is_error", &Lazy(|| format!("{path}.is_error")))?
                    .unwrap_or(false),
            })
        }
        "thinking" => Ok(Part::Reasoning {
            text: opt_str(b, "thinking", &Lazy(|| format!("{path}.thinking")))?
                .unwrap_or_default()
                .to_string(),
            signature: opt_str(b, "signature", &Lazy(|| format!("{path}.signature")))?
                .map(str::to_string),
        }),
        "redacted_thinking" => Ok(Part::RedactedReasoning {
            data: req_str(b, "data", &Lazy(|| format!("{path}.data")))?.to_string(),
        }),
        // Server-tool blocks, search results, container uploads, …: Claude takes them as sent;
        // other upstreams refuse them when encoding.
        other => Ok(Part::Opaque {
            kind: other.to_string(),
        }),
    }
}

/// The 400 for an image or document given by URL to Bedrock.
fn url_source_error(path: &dyn std::fmt::Display) -> GatewayError {
    GatewayError::invalid(
        path,
        "URL sources are not supported for Bedrock models; send the image or document inline as base64. The gateway does not fetch URLs on the data plane.",
    )
    .with_code("unsupported_image_url")
}

/// The 400 for a Files-API source (the gateway's own files go through `file_ids`).
fn file_source_error(path: &dyn std::fmt::Display) -> GatewayError {
    GatewayError::invalid(
        path,
        "`file` sources are not supported by this gateway; send the content inline as base64.",
    )
}

/// Options for encoding an Anthropic request that do not come from the client.
#[derive(Debug, Clone, Copy)]
pub struct EncodeOptions<'a> {
    /// `max_tokens` to send when the client gave none (Anthropic requires it).
    pub default_max_tokens: u32,
    /// The client's body and its long texts (see [`crate::json::splice`]).
    pub raw: crate::json::Spliced<'a>,
}

/// Thinking budget for an OpenAI `reasoning_effort`.
pub fn effort_budget(effort: &str) -> u32 {
    match effort {
        "high" => 4096,
        "medium" => 2048,
        _ => 1024,
    }
}

/// `cache_control` of a prompt-cache breakpoint.
#[derive(Serialize)]
struct CacheControl {
    #[serde(rename = "type")]
    kind: &'static str,
}

const EPHEMERAL: Option<CacheControl> = Some(CacheControl { kind: "ephemeral" });

/// A base64 image or document source.
#[derive(Serialize)]
struct Source<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    media_type: Cow<'a, str>,
    data: &'a str,
}

/// One Anthropic content block, serialized straight from the IR (no intermediate JSON tree).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    Image {
        source: Source<'a>,
    },
    Document {
        source: Source<'a>,
        title: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: Vec<Block<'a>>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    RedactedThinking {
        data: &'a str,
    },
}

#[derive(Serialize)]
struct Msg<'a> {
    role: &'static str,
    content: Vec<Block<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum System<'a> {
    Text(std::borrow::Cow<'a, str>),
    Blocks(Vec<Block<'a>>),
}

/// The InvokeModel body.
#[derive(Serialize)]
struct Body<'a> {
    anthropic_version: &'static str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<System<'a>>,
    messages: Vec<Msg<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    stop_sequences: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<Value>,
}

/// Encodes the IR as a Bedrock InvokeModel body (JSON bytes) for an Anthropic Claude model.
pub fn encode_request(req: &ChatRequest, opts: EncodeOptions<'_>) -> Result<Vec<u8>, GatewayError> {
    let mut max_tokens = req.max_tokens.unwrap_or(opts.default_max_tokens);
    let budget = match &req.reasoning {
        Some(Reasoning::Effort(e)) => Some(effort_budget(e)),
        Some(Reasoning::Budget(b)) => Some(*b),
        _ => None,
    };
    let thinking = budget.map(|b| {
        // The budget must stay below max_tokens; grow max_tokens rather than starve the answer.
        if max_tokens <= b {
            max_tokens = b.saturating_add(req.max_tokens.unwrap_or(opts.default_max_tokens));
        }
        json!({"type": "enabled", "budget_tokens": b})
    });

    let system = if req.system.is_empty() {
        None
    } else if req
        .system
        .iter()
        .any(|p| matches!(p, Part::Text { cache: true, .. }))
    {
        Some(System::Blocks(
            req.system
                .iter()
                .filter_map(|p| match p {
                    Part::Text { text, cache } => Some(Block::Text {
                        text,
                        cache_control: if *cache { EPHEMERAL } else { None },
                    }),
                    _ => None,
                })
                .collect(),
        ))
    } else {
        Some(System::Text(req.system_text()))
    };

    let mut messages = Vec::with_capacity(req.messages.len());
    for (i, msg) in req.messages.iter().enumerate() {
        let mut blocks = Vec::with_capacity(msg.content.len());
        // Bedrock wants tool results before any other content in a user turn.
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
        for (j, part) in results.chain(others) {
            if let Some(b) = encode_block(part, &Lazy(|| msg.part_path(j, i)))? {
                blocks.push(b);
            }
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

    if let Some(t) = req.temperature {
        if t > 1.0 {
            return Err(GatewayError::invalid(
                "temperature",
                format!("`temperature` must be between 0 and 1 for Claude models, got {t}."),
            ));
        }
    }
    // Extended thinking does not accept sampling parameters.
    let sampling = budget.is_none();

    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| {
            let mut o = Map::new();
            o.insert("name".into(), json!(t.name));
            if let Some(d) = &t.description {
                o.insert("description".into(), json!(d));
            }
            o.insert("input_schema".into(), t.parameters.clone());
            Value::Object(o)
        })
        .collect();
    let mut tool_choice = match &req.tool_choice {
        Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
        Some(ToolChoice::Required) => Some(json!({"type": "any"})),
        Some(ToolChoice::None) => Some(json!({"type": "none"})),
        Some(ToolChoice::Function(name)) => Some(json!({"type": "tool", "name": name})),
        None => None,
    };
    if let Some(rf) = &req.response_format {
        if budget.is_some() {
            return Err(GatewayError::invalid(
                "response_format",
                "`response_format` cannot be combined with reasoning on Claude models (a forced tool call is not allowed with extended thinking).",
            ));
        }
        check_reserved_tool_name(&req.tools)?;
        tools.push(json!({
            "name": STRUCTURED_OUTPUT_TOOL,
            "description": STRUCTURED_OUTPUT_DESCRIPTION,
            "input_schema": structured_schema(rf),
        }));
        tool_choice = Some(json!({"type": "tool", "name": STRUCTURED_OUTPUT_TOOL}));
    }
    if tools.is_empty() {
        tool_choice = None;
    } else if let Some(tc) = tool_choice.as_mut() {
        if req.parallel_tool_calls == Some(false) {
            if let Some(o) = tc.as_object_mut() {
                if o.get("type") != Some(&json!("none")) {
                    o.insert("disable_parallel_tool_use".into(), json!(true));
                }
            }
        }
    }

    let body = Body {
        anthropic_version: BEDROCK_ANTHROPIC_VERSION,
        max_tokens,
        thinking,
        system,
        messages,
        temperature: req.temperature.filter(|_| sampling),
        top_p: req.top_p.filter(|_| sampling),
        top_k: req.top_k.filter(|_| sampling),
        stop_sequences: req
            .stop
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(String::as_str)
            .collect(),
        tools,
        tool_choice,
    };
    crate::formats::json_body(&body, opts.raw)
}

fn encode_block<'a>(
    part: &'a Part,
    path: &dyn std::fmt::Display,
) -> Result<Option<Block<'a>>, GatewayError> {
    Ok(Some(match part {
        Part::Text { text, cache } => {
            if text.is_empty() {
                return Ok(None);
            }
            Block::Text {
                text,
                cache_control: if *cache { EPHEMERAL } else { None },
            }
        }
        Part::Image(ImageSource::Base64 { media_type, data }) => {
            // Same four types as Converse; normalise image/jpg.
            let format = image_format(media_type, &Lazy(|| format!("{path}.image_url.url")))?;
            let media_type = if media_type.strip_prefix("image/") == Some(format) {
                Cow::Borrowed(media_type.as_str())
            } else {
                Cow::Owned(format!("image/{format}"))
            };
            Block::Image {
                source: Source {
                    kind: "base64",
                    media_type,
                    data,
                },
            }
        }
        Part::Image(ImageSource::Url(_)) => {
            return Err(remote_image_error(path));
        }
        Part::Document {
            media_type,
            name,
            data,
        } => Block::Document {
            source: Source {
                kind: "base64",
                media_type: Cow::Borrowed(media_type),
                data,
            },
            title: name,
        },
        Part::ToolCall {
            id,
            name,
            arguments,
        } => Block::ToolUse {
            id,
            name,
            input: parse_arguments(arguments, path)?,
        },
        Part::ToolResult {
            id,
            content,
            is_error,
        } => {
            let mut inner = Vec::with_capacity(content.len());
            for (i, p) in content.iter().enumerate() {
                if let Some(b) = encode_block(p, &Lazy(|| format!("{path}.content[{i}]")))? {
                    inner.push(b);
                }
            }
            Block::ToolResult {
                tool_use_id: id,
                content: inner,
                is_error: *is_error,
            }
        }
        Part::Reasoning { text, signature } => match signature {
            Some(sig) => Block::Thinking {
                thinking: text,
                signature: sig,
            },
            // Claude rejects unsigned thinking blocks in history; the text adds nothing.
            None => return Ok(None),
        },
        Part::RedactedReasoning { data } => Block::RedactedThinking { data },
        // Refused before encoding (plan::checks::translatable).
        Part::Opaque { .. } => return Ok(None),
    }))
}
