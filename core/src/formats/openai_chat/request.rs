//! OpenAI Chat Completions requests: the decoder into the IR and the encoder for OpenAI
//! upstreams.

use crate::error::GatewayError;
use crate::formats::bedrock::{parse_arguments, remote_image_error};
use crate::formats::DecodeContext;
use crate::ir::{
    split_data_url, ChatRequest, ImageSource, Message, Origin, OriginField, Part, Reasoning,
    ResponseFormat, Role, Tool, ToolChoice,
};
use crate::json::{
    as_object, get, opt_array, opt_bool, opt_f64, opt_object, opt_str, opt_u32, req_str,
    string_or_list, type_name, Lazy, Object, GATEWAY_FIELDS,
};
use serde_json::{json, Map, Value};

/// Request fields this decoder understands; everything else goes to `openai_extra`.
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "stop",
    "stream",
    "stream_options",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "functions",
    "function_call",
    "reasoning_effort",
    "thinking",
    "response_format",
    "user",
    "n",
];

/// Decodes an OpenAI chat request body into the IR.
pub fn decode_request(obj: &Object, opts: DecodeContext) -> Result<ChatRequest, GatewayError> {
    let model = req_str(obj, "model", "model")?.to_string();
    let raw_messages = match get(obj, "messages") {
        None => {
            return Err(GatewayError::invalid(
                "messages",
                "Missing required parameter: `messages`.",
            ))
        }
        Some(Value::Array(a)) => a,
        Some(v) => {
            return Err(GatewayError::invalid(
                "messages",
                format!(
                    "Invalid type for `messages`: expected an array, got {}.",
                    type_name(v)
                ),
            ))
        }
    };
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
    for (i, raw) in raw_messages.iter().enumerate() {
        decode_message(&mut req, raw, i, opts)?;
    }
    if req.messages.is_empty() {
        return Err(GatewayError::invalid(
            "messages",
            "`messages` must contain at least one user or assistant message, not only system messages.",
        ));
    }

    req.max_tokens = match opt_u32(obj, "max_completion_tokens", "max_completion_tokens", 1)? {
        Some(x) => Some(x),
        None => opt_u32(obj, "max_tokens", "max_tokens", 1)?,
    };
    req.temperature = opt_f64(obj, "temperature", "temperature", 0.0, 2.0)?;
    req.top_p = opt_f64(obj, "top_p", "top_p", 0.0, 1.0)?;
    req.top_k = opt_u32(obj, "top_k", "top_k", 0)?;
    req.stop = string_or_list(obj, "stop", "stop")?;
    req.stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    if let Some(opts) = opt_object(obj, "stream_options", "stream_options")? {
        req.include_usage =
            opt_bool(opts, "include_usage", "stream_options.include_usage")?.unwrap_or(false);
    }
    req.n = opt_u32(obj, "n", "n", 1)?;
    req.user = opt_str(obj, "user", "user")?.map(str::to_string);
    req.parallel_tool_calls = opt_bool(obj, "parallel_tool_calls", "parallel_tool_calls")?;

    req.tools = decode_tools(obj)?;
    req.legacy_functions = get(obj, "functions").is_some() && get(obj, "tools").is_none();
    req.tool_choice = decode_tool_choice(obj)?;
    req.reasoning = decode_reasoning(obj)?;
    req.response_format = decode_response_format(obj)?;

    for (k, v) in obj {
        if !KNOWN_FIELDS.contains(&k.as_str()) && !GATEWAY_FIELDS.contains(&k.as_str()) {
            req.openai_extra.insert(k.clone(), v.clone());
        }
    }
    Ok(req)
}

fn decode_message(
    req: &mut ChatRequest,
    raw: &Value,
    i: usize,
    opts: DecodeContext,
) -> Result<(), GatewayError> {
    let path = Lazy(|| format!("messages[{i}]"));
    let msg = as_object(raw, &path)?;
    let role = req_str(msg, "role", &Lazy(|| format!("{path}.role")))?;
    let content_path = Lazy(|| format!("{path}.content"));
    match role {
        "system" | "developer" => {
            let parts = decode_content(get(msg, "content"), &content_path, false, opts)?;
            req.system.extend(parts.into_iter().map(|(_, p)| p));
        }
        "user" => {
            let parts = decode_content(get(msg, "content"), &content_path, true, opts)?;
            if parts.is_empty() {
                return Err(GatewayError::invalid(
                    content_path,
                    "A user message must have content.",
                ));
            }
            let (parts, origins) = content_origins(i, parts);
            req.push_turn(Role::User, parts, origins);
        }
        "assistant" => {
            let mut parts = Vec::new();
            let mut origins = Vec::new();
            if let Some(blocks) = opt_array(
                msg,
                "thinking_blocks",
                &Lazy(|| format!("{path}.thinking_blocks")),
            )? {
                for (j, b) in blocks.iter().enumerate() {
                    let bpath = Lazy(|| format!("{path}.thinking_blocks[{j}]"));
                    let b = as_object(b, &bpath)?;
                    origins.push(Origin::messages(i, OriginField::Reasoning, j));
                    match opt_str(b, "type", &Lazy(|| format!("{bpath}.type")))? {
                        Some("redacted_thinking") => parts.push(Part::RedactedReasoning {
                            data: req_str(b, "data", &Lazy(|| format!("{bpath}.data")))?
                                .to_string(),
                        }),
                        _ => parts.push(Part::Reasoning {
                            text: opt_str(b, "thinking", &Lazy(|| format!("{bpath}.thinking")))?
                                .unwrap_or_default()
                                .to_string(),
                            signature: opt_str(
                                b,
                                "signature",
                                &Lazy(|| format!("{bpath}.signature")),
                            )?
                            .map(str::to_string),
                        }),
                    }
                }
            } else if let Some(Value::String(r)) = msg.get("reasoning_content") {
                if !r.is_empty() {
                    parts.push(Part::Reasoning {
                        text: r.clone(),
                        signature: None,
                    });
                    origins.push(Origin::messages(i, OriginField::Reasoning, 0));
                }
            }
            let (content, content_origins) = content_origins(
                i,
                decode_content(get(msg, "content"), &content_path, false, opts)?,
            );
            parts.extend(content);
            origins.extend(content_origins);
            if let Some(calls) =
                opt_array(msg, "tool_calls", &Lazy(|| format!("{path}.tool_calls")))?
            {
                for (j, call) in calls.iter().enumerate() {
                    let cpath = Lazy(|| format!("{path}.tool_calls[{j}]"));
                    let part = decode_tool_call(call, &cpath)?;
                    if let (true, Part::ToolCall { arguments, .. }) = (opts.bedrock, &part) {
                        parse_arguments(arguments, &cpath)?;
                    }
                    parts.push(part);
                    origins.push(Origin::messages(i, OriginField::ToolCalls, j));
                }
            }
            if let Some(fc) = opt_object(
                msg,
                "function_call",
                &Lazy(|| format!("{path}.function_call")),
            )? {
                let fpath = Lazy(|| format!("{path}.function_call"));
                let name = req_str(fc, "name", &Lazy(|| format!("{fpath}.name")))?;
                let arguments = opt_str(fc, "arguments", &Lazy(|| format!("{fpath}.arguments")))?
                    .unwrap_or("{}");
                parts.push(Part::ToolCall {
                    id: name.to_string(),
                    name: name.to_string(),
                    arguments: arguments.to_string(),
                });
                origins.push(Origin::messages(i, OriginField::FunctionCall, 0));
            }
            if !parts.is_empty() {
                req.push_turn(Role::Assistant, parts, origins);
            }
        }
        "tool" | "function" => {
            let id = if role == "tool" {
                req_str(
                    msg,
                    "tool_call_id",
                    &Lazy(|| format!("{path}.tool_call_id")),
                )?
            } else {
                req_str(msg, "name", &Lazy(|| format!("{path}.name")))?
            };
            let content = decode_content(get(msg, "content"), &content_path, true, opts)?;
            req.push_turn(
                Role::User,
                vec![Part::ToolResult {
                    id: id.to_string(),
                    content: content.into_iter().map(|(_, p)| p).collect(),
                    is_error: false,
                }],
                vec![Origin::messages(i, OriginField::Whole, 0)],
            );
        }
        other => {
            return Err(GatewayError::invalid(
                format!("{path}.role"),
                format!(
                "Invalid role `{other}`; expected one of system, developer, user, assistant, tool."
            ),
            ))
        }
    }
    Ok(())
}

/// Parts of message `i`'s `content` with their origins.
fn content_origins(i: usize, parts: Vec<(Option<usize>, Part)>) -> (Vec<Part>, Vec<Origin>) {
    parts
        .into_iter()
        .map(|(j, p)| {
            let origin = match j {
                Some(j) => Origin::messages(i, OriginField::Content, j),
                None => Origin::messages(i, OriginField::ContentString, 0),
            };
            (p, origin)
        })
        .unzip()
}

fn decode_tool_call(raw: &Value, path: &dyn std::fmt::Display) -> Result<Part, GatewayError> {
    let call = as_object(raw, path)?;
    let id = req_str(call, "id", &Lazy(|| format!("{path}.id")))?;
    let function =
        opt_object(call, "function", &Lazy(|| format!("{path}.function")))?.ok_or_else(|| {
            GatewayError::invalid(
                format!("{path}.function"),
                "Missing required parameter: `function`.",
            )
        })?;
    let name = req_str(function, "name", &Lazy(|| format!("{path}.function.name")))?;
    let arguments = opt_str(
        function,
        "arguments",
        &Lazy(|| format!("{path}.function.arguments")),
    )?
    .unwrap_or("{}");
    Ok(Part::ToolCall {
        id: id.to_string(),
        name: name.to_string(),
        arguments: if arguments.trim().is_empty() {
            "{}".to_string()
        } else {
            arguments.to_string()
        },
    })
}

/// Decodes `content`: a string, an array of parts, or absent. Each part comes with its index
/// in the array (`None` for string content).
fn decode_content(
    content: Option<&Value>,
    path: &dyn std::fmt::Display,
    allow_media: bool,
    opts: DecodeContext,
) -> Result<Vec<(Option<usize>, Part)>, GatewayError> {
    match content {
        None => Ok(Vec::new()),
        Some(Value::String(s)) => {
            if s.is_empty() {
                Ok(Vec::new())
            } else {
                Ok(vec![(None, Part::text(s.clone()))])
            }
        }
        Some(Value::Array(items)) => {
            let mut parts = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let ppath = Lazy(|| format!("{path}[{i}]"));
                if let Some(p) = decode_part(item, &ppath, allow_media, opts)? {
                    parts.push((Some(i), p));
                }
            }
            Ok(parts)
        }
        Some(v) => Err(GatewayError::invalid(
            path,
            format!(
                "Invalid type for `{path}`: expected a string or an array of content parts, got {}.",
                type_name(v)
            ),
        )),
    }
}

fn decode_part(
    raw: &Value,
    path: &dyn std::fmt::Display,
    allow_media: bool,
    opts: DecodeContext,
) -> Result<Option<Part>, GatewayError> {
    let part = as_object(raw, path)?;
    let kind = req_str(part, "type", &Lazy(|| format!("{path}.type")))?;
    match kind {
        "text" | "input_text" => {
            let text =
                opt_str(part, "text", &Lazy(|| format!("{path}.text")))?.ok_or_else(|| {
                    GatewayError::invalid(
                        format!("{path}.text"),
                        "Missing required parameter: `text`.",
                    )
                })?;
            let cache = part.get("cache_control").is_some();
            Ok(Some(Part::Text {
                text: text.to_string(),
                cache,
            }))
        }
        "image_url" if allow_media => {
            let url = match get(part, "image_url") {
                Some(Value::String(s)) => s.as_str(),
                Some(Value::Object(o)) => {
                    req_str(o, "url", &Lazy(|| format!("{path}.image_url.url")))?
                }
                _ => {
                    return Err(GatewayError::invalid(
                        format!("{path}.image_url"),
                        "Missing required parameter: `image_url.url`.",
                    ))
                }
            };
            let image = parse_image_url(url, &Lazy(|| format!("{path}.image_url.url")))?;
            if opts.bedrock && matches!(image, ImageSource::Url(_)) {
                return Err(remote_image_error(path));
            }
            Ok(Some(Part::Image(image)))
        }
        "file" if allow_media => {
            let fpath = Lazy(|| format!("{path}.file"));
            let file = opt_object(part, "file", &fpath)?.ok_or_else(|| {
                GatewayError::invalid(fpath.to_string(), "Missing required parameter: `file`.")
            })?;
            let data = opt_str(file, "file_data", &Lazy(|| format!("{fpath}.file_data")))?
                .ok_or_else(|| {
                    GatewayError::invalid(
                        format!("{fpath}.file_data"),
                        "Only inline `file_data` (a base64 data URL) is supported for file parts.",
                    )
                })?;
            let (media_type, data) = split_data_url(data).ok_or_else(|| {
                GatewayError::invalid(
                    format!("{fpath}.file_data"),
                    "`file_data` must be a base64 data URL (data:<type>;base64,<data>).",
                )
            })?;
            let name = opt_str(file, "filename", &Lazy(|| format!("{fpath}.filename")))?
                .unwrap_or("document")
                .to_string();
            Ok(Some(Part::Document {
                media_type,
                name,
                data,
            }))
        }
        other => {
            Err(GatewayError::invalid(
                format!("{path}.type"),
                if allow_media {
                    format!("Unsupported content part type `{other}`; expected text, image_url or file.")
                } else {
                    format!("Unsupported content part type `{other}` here; only text parts are allowed.")
                },
            ))
        }
    }
}

fn parse_image_url(url: &str, path: &dyn std::fmt::Display) -> Result<ImageSource, GatewayError> {
    if url.starts_with("data:") {
        let (media_type, data) = split_data_url(url).ok_or_else(|| {
            GatewayError::invalid(
                path,
                "Image data URLs must look like data:image/png;base64,<data>.",
            )
        })?;
        Ok(ImageSource::Base64 { media_type, data })
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Ok(ImageSource::Url(url.to_string()))
    } else {
        Err(GatewayError::invalid(
            path,
            "Image URLs must be data URLs (data:image/png;base64,...) or http(s) URLs.",
        ))
    }
}

fn decode_tools(obj: &Object) -> Result<Vec<Tool>, GatewayError> {
    let mut tools = Vec::new();
    if let Some(items) = opt_array(obj, "tools", "tools")? {
        for (i, item) in items.iter().enumerate() {
            let path = Lazy(|| format!("tools[{i}]"));
            let t = as_object(item, &path)?;
            let kind = opt_str(t, "type", &Lazy(|| format!("{path}.type")))?.unwrap_or("function");
            if kind != "function" {
                return Err(GatewayError::invalid(
                    format!("{path}.type"),
                    format!("Unsupported tool type `{kind}`; only `function` tools are supported."),
                ));
            }
            let f = opt_object(t, "function", &Lazy(|| format!("{path}.function")))?.ok_or_else(
                || {
                    GatewayError::invalid(
                        format!("{path}.function"),
                        "Missing required parameter: `function`.",
                    )
                },
            )?;
            tools.push(decode_function(f, &Lazy(|| format!("{path}.function")))?);
        }
    }
    if let Some(items) = opt_array(obj, "functions", "functions")? {
        for (i, item) in items.iter().enumerate() {
            let path = Lazy(|| format!("functions[{i}]"));
            tools.push(decode_function(as_object(item, &path)?, &path)?);
        }
    }
    Ok(tools)
}

fn decode_function(f: &Object, path: &dyn std::fmt::Display) -> Result<Tool, GatewayError> {
    let name = req_str(f, "name", &Lazy(|| format!("{path}.name")))?;
    let description = opt_str(f, "description", &Lazy(|| format!("{path}.description")))?;
    let parameters = match get(f, "parameters") {
        None => json!({"type": "object", "properties": {}}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(v) => {
            return Err(GatewayError::invalid(
                format!("{path}.parameters"),
                format!(
                    "Invalid type for `{path}.parameters`: expected an object, got {}.",
                    type_name(v)
                ),
            ))
        }
    };
    Ok(Tool {
        name: name.to_string(),
        description: description.map(str::to_string),
        parameters,
        strict: opt_bool(f, "strict", &Lazy(|| format!("{path}.strict")))?,
        builtin: None,
    })
}

fn decode_tool_choice(obj: &Object) -> Result<Option<ToolChoice>, GatewayError> {
    let (raw, path) = match get(obj, "tool_choice") {
        Some(v) => (v, "tool_choice"),
        None => match get(obj, "function_call") {
            Some(v) => (v, "function_call"),
            None => return Ok(None),
        },
    };
    match raw {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(Some(ToolChoice::Auto)),
            "none" => Ok(Some(ToolChoice::None)),
            "required" | "any" => Ok(Some(ToolChoice::Required)),
            other => Err(GatewayError::invalid(
                path,
                format!("Invalid `{path}` `{other}`; expected auto, none, required or a named function."),
            )),
        },
        Value::Object(o) => {
            let name = match get(o, "function") {
                Some(Value::Object(f)) => req_str(f, "name", &Lazy(|| format!("{path}.function.name")))?,
                _ => req_str(o, "name", &Lazy(|| format!("{path}.name")))?,
            };
            Ok(Some(ToolChoice::Function(name.to_string())))
        }
        v => Err(GatewayError::invalid(
            path,
            format!(
                "Invalid type for `{path}`: expected a string or an object, got {}.",
                type_name(v)
            ),
        )),
    }
}

fn decode_reasoning(obj: &Object) -> Result<Option<Reasoning>, GatewayError> {
    if let Some(effort) = opt_str(obj, "reasoning_effort", "reasoning_effort")? {
        return match effort {
            "none" => Ok(Some(Reasoning::Disabled)),
            "minimal" | "low" | "medium" | "high" => {
                Ok(Some(Reasoning::Effort(effort.to_string())))
            }
            other => Err(GatewayError::invalid(
                "reasoning_effort",
                format!(
                    "Invalid `reasoning_effort` `{other}`; expected minimal, low, medium or high."
                ),
            )),
        };
    }
    if let Some(thinking) = opt_object(obj, "thinking", "thinking")? {
        return match opt_str(thinking, "type", "thinking.type")? {
            Some("enabled") => {
                let budget = opt_u32(thinking, "budget_tokens", "thinking.budget_tokens", 1)?
                    .ok_or_else(|| {
                        GatewayError::invalid(
                            "thinking.budget_tokens",
                            "Missing required parameter: `thinking.budget_tokens`.",
                        )
                    })?;
                Ok(Some(Reasoning::Budget(budget)))
            }
            Some("disabled") => Ok(Some(Reasoning::Disabled)),
            _ => Err(GatewayError::invalid(
                "thinking.type",
                "`thinking.type` must be `enabled` or `disabled`.",
            )),
        };
    }
    Ok(None)
}

fn decode_response_format(obj: &Object) -> Result<Option<ResponseFormat>, GatewayError> {
    let Some(rf) = opt_object(obj, "response_format", "response_format")? else {
        return Ok(None);
    };
    match req_str(rf, "type", "response_format.type")? {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => {
            let js = opt_object(rf, "json_schema", "response_format.json_schema")?.ok_or_else(
                || {
                    GatewayError::invalid(
                        "response_format.json_schema",
                        "Missing required parameter: `response_format.json_schema`.",
                    )
                },
            )?;
            let name = opt_str(js, "name", "response_format.json_schema.name")?
                .unwrap_or("response")
                .to_string();
            let schema = match get(js, "schema") {
                Some(v @ Value::Object(_)) => v.clone(),
                None => json!({"type": "object"}),
                Some(v) => {
                    return Err(GatewayError::invalid(
                        "response_format.json_schema.schema",
                        format!(
                            "Invalid type for `response_format.json_schema.schema`: expected an object, got {}.",
                            type_name(v)
                        ),
                    ))
                }
            };
            Ok(Some(ResponseFormat::JsonSchema {
                name,
                schema,
                strict: opt_bool(js, "strict", "response_format.json_schema.strict")?,
            }))
        }
        other => Err(GatewayError::invalid(
            "response_format.type",
            format!("Invalid `response_format.type` `{other}`; expected text, json_object or json_schema."),
        )),
    }
}

/// Encodes the IR as an OpenAI chat request for an OpenAI upstream.
pub fn encode_request(req: &ChatRequest, model: &str) -> Result<Value, GatewayError> {
    let mut out = Map::new();
    out.insert("model".into(), json!(model));
    let mut messages = Vec::new();
    if !req.system.is_empty() {
        messages.push(json!({"role": "system", "content": req.system_text()}));
    }
    for msg in &req.messages {
        encode_message(msg, &mut messages);
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(m) = req.max_tokens {
        out.insert("max_completion_tokens".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        out.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        out.insert("top_p".into(), json!(p));
    }
    if !req.stop.is_empty() {
        out.insert("stop".into(), json!(req.stop));
    }
    if req.stream {
        out.insert("stream".into(), json!(true));
        // Always ask for usage so the gateway can account for it; the client only sees it
        // when it asked.
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| {
                let mut f = Map::new();
                f.insert("name".into(), json!(t.name));
                if let Some(d) = &t.description {
                    f.insert("description".into(), json!(d));
                }
                f.insert("parameters".into(), t.parameters.clone());
                if let Some(s) = t.strict {
                    f.insert("strict".into(), json!(s));
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(tc) = &req.tool_choice {
        let v = match tc {
            ToolChoice::Auto => json!("auto"),
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
        };
        out.insert("tool_choice".into(), v);
    }
    if let Some(p) = req.parallel_tool_calls {
        out.insert("parallel_tool_calls".into(), json!(p));
    }
    if let Some(Reasoning::Effort(e)) = &req.reasoning {
        out.insert("reasoning_effort".into(), json!(e));
    }
    match &req.response_format {
        Some(ResponseFormat::JsonObject) => {
            out.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(ResponseFormat::JsonSchema {
            name,
            schema,
            strict,
        }) => {
            let mut js = Map::new();
            js.insert("name".into(), json!(name));
            js.insert("schema".into(), schema.clone());
            if let Some(s) = strict {
                js.insert("strict".into(), json!(s));
            }
            out.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": js}),
            );
        }
        None => {}
    }
    if let Some(u) = &req.user {
        out.insert("user".into(), json!(u));
    }
    for (k, v) in &req.openai_extra {
        out.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Ok(Value::Object(out))
}

fn encode_message(msg: &Message, out: &mut Vec<Value>) {
    match msg.role {
        Role::User => {
            let mut parts = Vec::new();
            for part in &msg.content {
                match part {
                    Part::ToolResult { id, content, .. } => {
                        flush_user(&mut parts, out);
                        out.push(json!({
                            "role": "tool",
                            "tool_call_id": id,
                            "content": text_of(content),
                        }));
                    }
                    other => {
                        if let Some(v) = encode_part(other) {
                            parts.push(v);
                        }
                    }
                }
            }
            flush_user(&mut parts, out);
        }
        Role::Assistant => {
            let mut text = String::new();
            let mut calls = Vec::new();
            for part in &msg.content {
                match part {
                    Part::Text { text: t, .. } => text.push_str(t),
                    Part::ToolCall {
                        id,
                        name,
                        arguments,
                    } => calls.push(json!({
                        "id": id,
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    })),
                    _ => {}
                }
            }
            let mut m = Map::new();
            m.insert("role".into(), json!("assistant"));
            m.insert(
                "content".into(),
                if text.is_empty() && !calls.is_empty() {
                    Value::Null
                } else {
                    json!(text)
                },
            );
            if !calls.is_empty() {
                m.insert("tool_calls".into(), Value::Array(calls));
            }
            out.push(Value::Object(m));
        }
    }
}

fn flush_user(parts: &mut Vec<Value>, out: &mut Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    let content =
        if parts.len() == 1 && parts.first().and_then(|p| p.get("type")) == Some(&json!("text")) {
            parts
                .first()
                .and_then(|p| p.get("text"))
                .cloned()
                .unwrap_or(Value::Null)
        } else {
            Value::Array(std::mem::take(parts))
        };
    parts.clear();
    out.push(json!({"role": "user", "content": content}));
}

fn encode_part(part: &Part) -> Option<Value> {
    match part {
        Part::Text { text, .. } => Some(json!({"type": "text", "text": text})),
        Part::Image(ImageSource::Base64 { media_type, data }) => Some(json!({
            "type": "image_url",
            "image_url": {"url": format!("data:{media_type};base64,{data}")},
        })),
        Part::Image(ImageSource::Url(url)) => {
            Some(json!({"type": "image_url", "image_url": {"url": url}}))
        }
        Part::Document {
            media_type,
            name,
            data,
        } => Some(json!({
            "type": "file",
            "file": {"filename": name, "file_data": format!("data:{media_type};base64,{data}")},
        })),
        _ => None,
    }
}

/// The text of a list of parts, joined (tool results and system prompts).
pub fn text_of(parts: &[Part]) -> String {
    let mut out = String::new();
    for p in parts {
        if let Part::Text { text, .. } = p {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(text);
        }
    }
    out
}
