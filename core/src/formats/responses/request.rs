//! Responses requests: the decoder into the IR.
//!
//! * `instructions` and the `system` / `developer` message items before the first user or
//!   assistant item are the system prompt (Codex sends its prompt as the first `developer`
//!   item); later ones are user text.
//! * Consecutive `function_call` / `custom_tool_call` items (and the assistant's text and
//!   `reasoning` around them) are one assistant turn; consecutive outputs are one user turn of
//!   tool results. `call_id` is the IR tool-call id.
//! * `reasoning` items come back as thinking when their `encrypted_content` is the gateway's
//!   own (see [`super::reasoning`]); summaries alone and other providers' content are dropped.
//! * `additional_tools` items add to `tools`. Built-in tool calls and their outputs, compaction
//!   items and unknown item types are dropped (noted in the debug log): they need OpenAI's
//!   servers, and refusing them would fail every turn of a client that keeps them in history.
//! * Stateless: `previous_response_id`, `conversation` and `background: true` are refused
//!   (send the whole conversation in `input`); `store` is accepted and nothing is kept.
//!
//! A body relayed to OpenAI's own `/responses` is only validated: what OpenAI supports and the
//! gateway does not (stored state, file ids, built-in tools) is left to OpenAI.

use super::reasoning::{self, Unsealed};
use super::tools::{self, Decoded as DecodedTools};
use crate::error::GatewayError;
use crate::formats::DecodeContext;
use crate::ir::{
    ChatRequest, ClientEcho, ImageSource, Origin, OriginField, Part, Reasoning, ResponseFormat,
    Role, ToolAlias,
};
use crate::json::{
    as_object, get, opt_array, opt_bool, opt_f64, opt_object, opt_str, opt_u32, req_str, type_name,
    Lazy, Object,
};
use serde_json::{json, Map, Value};

/// The field holding the conversation (for error paths).
const ROOT: &str = "input";

/// Request parameters the Response object repeats.
const ECHOED: &[&str] = &[
    "tool_choice",
    "parallel_tool_calls",
    "temperature",
    "top_p",
    "max_output_tokens",
    "metadata",
    "user",
    "prompt_cache_key",
    "reasoning",
    "text",
    "truncation",
    "service_tier",
    "safety_identifier",
];

/// Fields an OpenAI Chat Completions upstream takes as they are (when `openai_responses` is
/// off and the request is translated).
const CHAT_EXTRA: &[&str] = &["prompt_cache_key", "safety_identifier", "service_tier"];

/// Decodes a Responses request body into the IR.
pub fn decode_request(obj: &Object, ctx: DecodeContext) -> Result<ChatRequest, GatewayError> {
    let model = req_str(obj, "model", "model")?.to_string();
    if !ctx.relayed {
        refuse_stateful(obj)?;
    }
    let mut req = ChatRequest {
        model,
        ..ChatRequest::default()
    };
    if let Some(s) = opt_str(obj, "instructions", "instructions")? {
        if !s.is_empty() {
            req.system.push(Part::text(s));
        }
    }
    // Tools first (also those in `additional_tools` items): history items name them.
    let mut tools = DecodedTools::default();
    if let Some(list) = opt_array(obj, "tools", "tools")? {
        tools.add_list(list, "tools")?;
    }
    if let Some(Value::Array(items)) = get(obj, "input") {
        for (i, item) in items.iter().enumerate() {
            if item.get("type").and_then(Value::as_str) == Some("additional_tools") {
                let path = Lazy(|| format!("{ROOT}[{i}].tools"));
                if let Some(list) = item.as_object().map(|o| opt_array(o, "tools", &path)) {
                    tools.add_list(
                        list?.map(Vec::as_slice).unwrap_or_default(),
                        &path.to_string(),
                    )?;
                }
            }
        }
    }
    match get(obj, "input") {
        None => {
            return Err(GatewayError::invalid(
                ROOT,
                "Missing required parameter: `input`.",
            ))
        }
        Some(Value::String(s)) => {
            push_turn(
                &mut req,
                Role::User,
                vec![Part::text(s.clone())],
                Vec::new(),
            );
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                decode_item(&mut req, &tools.aliases, item, i, ctx)?;
            }
        }
        Some(v) => {
            return Err(GatewayError::invalid(
                ROOT,
                format!(
                "Invalid type for `input`: expected a string or an array of input items, got {}.",
                type_name(v)
            ),
            ))
        }
    }
    if req.messages.is_empty() && !ctx.relayed {
        return Err(GatewayError::invalid(
            ROOT,
            "`input` must contain at least one user or assistant item, not only system or developer messages.",
        ));
    }
    req.tool_choice = tools::decode_tool_choice(obj, &tools.aliases, ctx.relayed)?;
    req.tools = tools.tools;
    req.notes.extend(tools.notes);

    req.parallel_tool_calls = opt_bool(obj, "parallel_tool_calls", "parallel_tool_calls")?;
    req.max_tokens = opt_u32(obj, "max_output_tokens", "max_output_tokens", 1)?;
    req.temperature = opt_f64(obj, "temperature", "temperature", 0.0, 2.0)?;
    req.top_p = opt_f64(obj, "top_p", "top_p", 0.0, 1.0)?;
    req.stream = opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    // The terminal event always carries usage.
    req.include_usage = true;
    req.user = match opt_str(obj, "user", "user")? {
        Some(u) => Some(u.to_string()),
        None => opt_str(obj, "safety_identifier", "safety_identifier")?.map(str::to_string),
    };
    opt_object(obj, "metadata", "metadata")?;
    opt_bool(obj, "store", "store")?;
    opt_str(obj, "prompt_cache_key", "prompt_cache_key")?;
    req.reasoning = decode_reasoning(obj)?;
    let format = decode_text_format(obj)?;
    // OpenAI takes `text.format` itself when the body is relayed.
    if !ctx.relayed {
        req.response_format = format;
    }
    let include = opt_array(obj, "include", "include")?;
    let mut echo = ClientEcho {
        tools: tools.aliases,
        params: Map::new(),
        replayable_reasoning: include.is_some_and(|list| {
            list.iter()
                .any(|v| v.as_str() == Some("reasoning.encrypted_content"))
        }),
    };
    for k in ECHOED {
        if let Some(v) = get(obj, k) {
            echo.params.insert((*k).to_string(), v.clone());
        }
    }
    req.echo = echo;
    for k in CHAT_EXTRA {
        if let Some(v) = get(obj, k) {
            req.openai_extra.insert((*k).to_string(), v.clone());
        }
    }
    if ctx.relayed {
        // Nothing is dropped from a body that goes upstream as sent.
        req.notes.clear();
    }
    Ok(req)
}

/// The 400 for fields that need responses kept on the server.
fn refuse_stateful(obj: &Object) -> Result<(), GatewayError> {
    for field in ["previous_response_id", "conversation", "prompt"] {
        if get(obj, field).is_some() {
            return Err(GatewayError::invalid(
                field,
                format!("`{field}` is not supported: this gateway is stateless and keeps no responses, conversations or prompts. Send the whole conversation in `input` (with `store: false`)."),
            )
            .with_code("unsupported_parameter"));
        }
    }
    if opt_bool(obj, "background", "background")? == Some(true) {
        return Err(GatewayError::invalid(
            "background",
            "`background: true` is not supported: this gateway is stateless and cannot keep a response to poll. Send the request without `background` (stream it for long answers).",
        )
        .with_code("unsupported_parameter"));
    }
    Ok(())
}

fn origin(item: usize, field: OriginField, index: usize) -> Origin {
    Origin::in_root(ROOT, item, field, index)
}

/// Appends a turn (merged with the previous one of the same role); an empty one is skipped.
fn push_turn(req: &mut ChatRequest, role: Role, parts: Vec<Part>, origins: Vec<Origin>) {
    if !parts.is_empty() {
        req.push_turn(role, parts, origins);
    }
}

fn decode_item(
    req: &mut ChatRequest,
    aliases: &[ToolAlias],
    raw: &Value,
    i: usize,
    ctx: DecodeContext,
) -> Result<(), GatewayError> {
    let path = Lazy(|| format!("{ROOT}[{i}]"));
    let item = as_object(raw, &path)?;
    let kind = match opt_str(item, "type", &Lazy(|| format!("{path}.type")))? {
        Some(k) => k,
        // Easy input messages have no `type`.
        None if get(item, "role").is_some() => "message",
        None => {
            return Err(GatewayError::invalid(
                format!("{path}.type"),
                "Missing required parameter: `type` (or `role` for a message).",
            ))
        }
    };
    match kind {
        "message" => decode_message(req, item, i, ctx),
        "function_call" | "custom_tool_call" => {
            let call_id = req_str(item, "call_id", &Lazy(|| format!("{path}.call_id")))?;
            let name = req_str(item, "name", &Lazy(|| format!("{path}.name")))?;
            let namespace = opt_str(item, "namespace", &Lazy(|| format!("{path}.namespace")))?;
            let arguments = if kind == "custom_tool_call" {
                let input = opt_str(item, "input", &Lazy(|| format!("{path}.input")))?
                    .unwrap_or_default();
                json!({ "input": input }).to_string()
            } else {
                let args = opt_str(item, "arguments", &Lazy(|| format!("{path}.arguments")))?
                    .unwrap_or_default();
                if ctx.bedrock {
                    check_arguments(args, &Lazy(|| format!("{path}.arguments")))?;
                }
                if args.trim().is_empty() {
                    "{}".to_string()
                } else {
                    args.to_string()
                }
            };
            // The upstream knows the tool by its flat name.
            let name = tools::upstream_name(aliases, namespace, name);
            push_turn(
                req,
                Role::Assistant,
                vec![Part::ToolCall {
                    id: call_id.to_string(),
                    name,
                    arguments,
                }],
                vec![origin(i, OriginField::Whole, 0)],
            );
            Ok(())
        }
        "function_call_output" | "custom_tool_call_output" => {
            let call_id = req_str(item, "call_id", &Lazy(|| format!("{path}.call_id")))?;
            let opath = Lazy(|| format!("{path}.output"));
            let content = match get(item, "output") {
                None => Vec::new(),
                Some(Value::String(s)) if s.is_empty() => Vec::new(),
                Some(Value::String(s)) => vec![Part::text(s.clone())],
                Some(Value::Array(parts)) => {
                    let mut out = Vec::with_capacity(parts.len());
                    for (j, p) in parts.iter().enumerate() {
                        if let Some(part) =
                            decode_part(p, &Lazy(|| format!("{opath}[{j}]")), true, ctx)?
                        {
                            out.push(part);
                        }
                    }
                    out
                }
                Some(v) => {
                    return Err(GatewayError::invalid(
                        opath.to_string(),
                        format!(
                            "Invalid type for `{opath}`: expected a string or an array of content parts, got {}.",
                            type_name(v)
                        ),
                    ))
                }
            };
            push_turn(
                req,
                Role::User,
                vec![Part::ToolResult {
                    id: call_id.to_string(),
                    content,
                    is_error: false,
                }],
                vec![origin(i, OriginField::Whole, 0)],
            );
            Ok(())
        }
        "reasoning" => {
            let sealed = opt_str(
                item,
                "encrypted_content",
                &Lazy(|| format!("{path}.encrypted_content")),
            )?;
            match sealed.map(reasoning::unseal) {
                Some(Unsealed::Ours(part)) => push_turn(
                    req,
                    Role::Assistant,
                    vec![part],
                    vec![origin(i, OriginField::Whole, 0)],
                ),
                Some(Unsealed::Foreign) => req
                    .notes
                    .push(format!("dropped {path}: another provider's encrypted_content")),
                Some(Unsealed::Damaged) => req
                    .notes
                    .push(format!("dropped {path}: damaged encrypted_content")),
                None => req
                    .notes
                    .push(format!("dropped {path}: reasoning without encrypted_content")),
            }
            Ok(())
        }
        // Its tools were decoded with `tools`.
        "additional_tools" => Ok(()),
        "item_reference" if !ctx.relayed => Err(GatewayError::invalid(
            path.to_string(),
            "`item_reference` items are not supported: this gateway is stateless and keeps no items. Send the referenced item itself.",
        )
        .with_code("unsupported_parameter")),
        other => {
            req.notes.push(format!("dropped {path} of type {other}"));
            Ok(())
        }
    }
}

/// Tool-call arguments for Bedrock: a JSON object (or nothing).
fn check_arguments(arguments: &str, path: &dyn std::fmt::Display) -> Result<(), GatewayError> {
    if arguments.trim().is_empty() {
        return Ok(());
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(_)) => Ok(()),
        _ => Err(GatewayError::invalid(
            path,
            "Function-call `arguments` must be a JSON object for Bedrock models.",
        )),
    }
}

fn decode_message(
    req: &mut ChatRequest,
    item: &Object,
    i: usize,
    ctx: DecodeContext,
) -> Result<(), GatewayError> {
    let path = Lazy(|| format!("{ROOT}[{i}]"));
    let role = req_str(item, "role", &Lazy(|| format!("{path}.role")))?;
    let cpath = Lazy(|| format!("{path}.content"));
    let media = role == "user";
    let mut parts = Vec::new();
    let mut origins = Vec::new();
    match get(item, "content") {
        None => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => {
            parts.push(Part::text(s.clone()));
            origins.push(origin(i, OriginField::ContentString, 0));
        }
        Some(Value::Array(items)) => {
            for (j, p) in items.iter().enumerate() {
                if let Some(part) = decode_part(p, &Lazy(|| format!("{cpath}[{j}]")), media, ctx)? {
                    parts.push(part);
                    origins.push(origin(i, OriginField::Content, j));
                }
            }
        }
        Some(v) => {
            return Err(GatewayError::invalid(
                cpath.to_string(),
                format!(
                    "Invalid type for `{cpath}`: expected a string or an array of content parts, got {}.",
                    type_name(v)
                ),
            ))
        }
    }
    match role {
        "system" | "developer" if req.messages.is_empty() => req.system.extend(parts),
        "system" | "developer" | "user" => push_turn(req, Role::User, parts, origins),
        "assistant" => push_turn(req, Role::Assistant, parts, origins),
        other => {
            return Err(GatewayError::invalid(
                format!("{path}.role"),
                format!("Invalid role `{other}`; expected user, assistant, system or developer."),
            ))
        }
    }
    Ok(())
}

/// Decodes one content part; `None` for parts that carry nothing (or that only a relayed
/// upstream understands).
fn decode_part(
    raw: &Value,
    path: &dyn std::fmt::Display,
    media: bool,
    ctx: DecodeContext,
) -> Result<Option<Part>, GatewayError> {
    let part = as_object(raw, path)?;
    let kind = req_str(part, "type", &Lazy(|| format!("{path}.type")))?;
    match kind {
        "input_text" | "output_text" | "text" | "refusal" | "summary_text" => {
            let key = if kind == "refusal" { "refusal" } else { "text" };
            let text = opt_str(part, key, &Lazy(|| format!("{path}.{key}")))?.unwrap_or_default();
            Ok((!text.is_empty()).then(|| Part::text(text)))
        }
        "input_image" if media => decode_image(part, path, ctx),
        "input_file" if media => decode_file(part, path, ctx),
        _ if ctx.relayed => Ok(None),
        other => {
            Err(GatewayError::invalid(
                format!("{path}.type"),
                if media {
                    format!("Unsupported content part type `{other}`; expected input_text, input_image or input_file.")
                } else {
                    format!("Unsupported content part type `{other}` here; only text parts are allowed.")
                },
            ))
        }
    }
}

fn decode_image(
    part: &Object,
    path: &dyn std::fmt::Display,
    ctx: DecodeContext,
) -> Result<Option<Part>, GatewayError> {
    let upath = Lazy(|| format!("{path}.image_url"));
    let url = match get(part, "image_url") {
        Some(Value::String(s)) => s.as_str(),
        // Some clients nest it as in Chat Completions.
        Some(Value::Object(o)) => req_str(o, "url", &Lazy(|| format!("{upath}.url")))?,
        Some(v) => {
            return Err(GatewayError::invalid(
                upath.to_string(),
                format!(
                    "Invalid type for `{upath}`: expected a string, got {}.",
                    type_name(v)
                ),
            ))
        }
        None if ctx.relayed => return Ok(None),
        None => {
            return Err(GatewayError::invalid(
                upath.to_string(),
                "Only `image_url` images (data URLs) are supported; `file_id` needs OpenAI's file store.",
            ))
        }
    };
    if let Some((media_type, data)) = crate::ir::split_data_url(url) {
        return Ok(Some(Part::Image(ImageSource::Base64 { media_type, data })));
    }
    if url.starts_with("data:") {
        return Err(GatewayError::invalid(
            upath.to_string(),
            "Image data URLs must look like data:image/png;base64,<data>.",
        ));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(GatewayError::invalid(
            upath.to_string(),
            "Image URLs must be data URLs (data:image/png;base64,...) or http(s) URLs.",
        ));
    }
    if ctx.bedrock {
        return Err(GatewayError::invalid(
            upath.to_string(),
            "Remote image URLs are not supported for Bedrock models; send the image inline as a base64 data URL (data:image/png;base64,...). The gateway does not fetch URLs on the data plane.",
        )
        .with_code("unsupported_image_url"));
    }
    Ok(Some(Part::Image(ImageSource::Url(url.to_string()))))
}

fn decode_file(
    part: &Object,
    path: &dyn std::fmt::Display,
    ctx: DecodeContext,
) -> Result<Option<Part>, GatewayError> {
    let dpath = Lazy(|| format!("{path}.file_data"));
    let Some(data) = opt_str(part, "file_data", &dpath)? else {
        if ctx.relayed {
            return Ok(None);
        }
        return Err(GatewayError::invalid(
            dpath.to_string(),
            "Only inline `file_data` (a base64 data URL) is supported for input_file parts; `file_id` and `file_url` need OpenAI.",
        ));
    };
    let (media_type, data) = crate::ir::split_data_url(data).ok_or_else(|| {
        GatewayError::invalid(
            dpath.to_string(),
            "`file_data` must be a base64 data URL (data:<type>;base64,<data>).",
        )
    })?;
    let name = opt_str(part, "filename", &Lazy(|| format!("{path}.filename")))?
        .unwrap_or("document")
        .to_string();
    Ok(Some(Part::Document {
        media_type,
        name,
        data,
    }))
}

fn decode_reasoning(obj: &Object) -> Result<Option<Reasoning>, GatewayError> {
    let Some(r) = opt_object(obj, "reasoning", "reasoning")? else {
        return Ok(None);
    };
    match opt_str(r, "effort", "reasoning.effort")? {
        None => Ok(None),
        Some("none") => Ok(Some(Reasoning::Disabled)),
        Some(e @ ("minimal" | "low" | "medium" | "high")) => Ok(Some(Reasoning::Effort(e.into()))),
        Some("xhigh") => Ok(Some(Reasoning::Effort("high".into()))),
        Some(other) => Err(GatewayError::invalid(
            "reasoning.effort",
            format!("Invalid `reasoning.effort` `{other}`; expected none, minimal, low, medium, high or xhigh."),
        )),
    }
}

fn decode_text_format(obj: &Object) -> Result<Option<ResponseFormat>, GatewayError> {
    let Some(text) = opt_object(obj, "text", "text")? else {
        return Ok(None);
    };
    let Some(f) = opt_object(text, "format", "text.format")? else {
        return Ok(None);
    };
    match req_str(f, "type", "text.format.type")? {
        "text" => Ok(None),
        "json_object" => Ok(Some(ResponseFormat::JsonObject)),
        "json_schema" => {
            let schema = match get(f, "schema") {
                Some(v @ Value::Object(_)) => v.clone(),
                None => {
                    return Err(GatewayError::invalid(
                        "text.format.schema",
                        "Missing required parameter: `text.format.schema`.",
                    ))
                }
                Some(v) => {
                    return Err(GatewayError::invalid(
                        "text.format.schema",
                        format!(
                            "Invalid type for `text.format.schema`: expected an object, got {}.",
                            type_name(v)
                        ),
                    ))
                }
            };
            Ok(Some(ResponseFormat::JsonSchema {
                name: opt_str(f, "name", "text.format.name")?
                    .unwrap_or("response")
                    .to_string(),
                schema,
                strict: opt_bool(f, "strict", "text.format.strict")?,
            }))
        }
        other => Err(GatewayError::invalid(
            "text.format.type",
            format!(
                "Invalid `text.format.type` `{other}`; expected text, json_object or json_schema."
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Message, ToolChoice};

    fn bedrock() -> DecodeContext {
        DecodeContext {
            bedrock: true,
            ..DecodeContext::default()
        }
    }

    fn decode(body: Value, ctx: DecodeContext) -> Result<ChatRequest, GatewayError> {
        decode_request(body.as_object().unwrap(), ctx)
    }

    #[test]
    fn a_string_input_is_one_user_turn_and_instructions_the_system_prompt() {
        let req = decode(
            json!({"model": "m", "input": "Hi", "instructions": "Be brief.", "max_output_tokens": 50, "temperature": 0.5}),
            bedrock(),
        )
        .unwrap();
        assert_eq!(req.system, vec![Part::text("Be brief.")]);
        assert_eq!(
            req.messages,
            vec![Message::new(Role::User, vec![Part::text("Hi")])]
        );
        assert_eq!(req.max_tokens, Some(50));
        assert_eq!(req.temperature, Some(0.5));
        assert!(req.include_usage);
        assert_eq!(req.echo.params["temperature"], json!(0.5));
    }

    #[test]
    fn codex_history_groups_into_turns() {
        let sealed = reasoning::seal(&Part::Reasoning {
            text: "Run it.".into(),
            signature: Some("sig".into()),
        })
        .unwrap();
        let req = decode(
            json!({
                "model": "m",
                "input": [
                    {"type": "message", "id": "msg_1", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
                    {"type": "message", "role": "developer", "content": "Permissions."},
                    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run tests"}]},
                    {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Run it."}], "encrypted_content": sealed},
                    {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "exec_command", "arguments": "{\"cmd\":\"ls\"}", "status": "completed"},
                    {"type": "function_call", "call_id": "call_2", "name": "spawn_agent", "namespace": "multi_agent_v1", "arguments": "{}"},
                    {"type": "custom_tool_call", "call_id": "call_3", "name": "apply_patch", "input": "*** Begin Patch"},
                    {"type": "function_call_output", "id": "fco_1", "call_id": "call_1", "output": "ok"},
                    {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "spawned"}]},
                    {"type": "custom_tool_call_output", "call_id": "call_3", "output": "Done!"},
                    {"type": "message", "role": "developer", "content": "Later note."},
                    {"type": "reasoning", "summary": [], "encrypted_content": "gAAAAforeign"},
                    {"type": "web_search_call", "id": "ws_1", "status": "completed"},
                    {"type": "compaction", "encrypted_content": "x"},
                    {"type": "additional_tools", "role": "developer", "tools": [{"type": "function", "name": "clock_now"}]},
                ],
                "tools": [
                    {"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
                    {"type": "namespace", "name": "multi_agent_v1", "tools": [{"type": "function", "name": "spawn_agent"}]},
                    {"type": "custom", "name": "apply_patch"},
                    {"type": "web_search"},
                ],
                "tool_choice": "auto",
                "parallel_tool_calls": true,
                "reasoning": {"effort": "medium", "summary": "auto"},
                "store": false,
                "include": ["reasoning.encrypted_content"],
                "prompt_cache_key": "session-1",
                "text": {"verbosity": "low"},
                "client_metadata": {"x": 1},
            }),
            bedrock(),
        )
        .unwrap();
        assert_eq!(
            req.system,
            vec![Part::text("You are Codex."), Part::text("Permissions.")]
        );
        assert_eq!(req.messages.len(), 3);
        let roles: Vec<Role> = req.messages.iter().map(|m| m.role).collect();
        assert_eq!(roles, [Role::User, Role::Assistant, Role::User]);
        let assistant = &req.messages[1];
        assert_eq!(
            assistant.content[0],
            Part::Reasoning {
                text: "Run it.".into(),
                signature: Some("sig".into())
            }
        );
        let calls: Vec<(&str, &str, &str)> = assistant.content[1..]
            .iter()
            .map(|p| match p {
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                } => (id.as_str(), name.as_str(), arguments.as_str()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            calls,
            [
                ("call_1", "exec_command", "{\"cmd\":\"ls\"}"),
                ("call_2", "multi_agent_v1__spawn_agent", "{}"),
                ("call_3", "apply_patch", "{\"input\":\"*** Begin Patch\"}"),
            ]
        );
        assert_eq!(assistant.origins[1].path(), "input[4]");
        let results = &req.messages[2];
        assert_eq!(results.content.len(), 4);
        assert_eq!(results.content[3], Part::text("Later note."));
        let tool_names: Vec<&str> = req.tools.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            tool_names,
            [
                "exec_command",
                "multi_agent_v1__spawn_agent",
                "apply_patch",
                "clock_now"
            ]
        );
        assert_eq!(req.tool_choice, Some(ToolChoice::Auto));
        assert_eq!(req.reasoning, Some(Reasoning::Effort("medium".into())));
        assert!(req.echo.replayable_reasoning);
        assert_eq!(req.echo.tools.len(), 2);
        assert_eq!(req.openai_extra["prompt_cache_key"], "session-1");
        let notes = req.notes.join("; ");
        for dropped in ["input[11]", "input[12]", "input[13]", "tools[3]"] {
            assert!(notes.contains(dropped), "{dropped} not in {notes}");
        }
    }

    #[test]
    fn stateful_fields_are_refused_unless_relayed() {
        for (field, value) in [
            ("previous_response_id", json!("resp_1")),
            ("conversation", json!("conv_1")),
            ("background", json!(true)),
        ] {
            let mut body = json!({"model": "m", "input": "x"});
            body[field] = value;
            let e = decode(body.clone(), bedrock()).unwrap_err();
            assert_eq!((e.status, e.param.as_deref()), (400, Some(field)));
            assert!(e.message.contains("whole conversation") || e.message.contains("stateless"));
            let relayed = DecodeContext {
                relayed: true,
                ..DecodeContext::default()
            };
            assert!(decode(body, relayed).is_ok(), "{field}");
        }
        assert!(decode(
            json!({"model": "m", "input": "x", "background": false}),
            bedrock()
        )
        .is_ok());
    }

    #[test]
    fn errors_name_the_clients_field() {
        let cases = [
            (json!({"model": "m"}), "input"),
            (json!({"model": "m", "input": 5}), "input"),
            (
                json!({"model": "m", "input": [{"role": "developer", "content": "only"}]}),
                "input",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_text", "text": "a"}, {"type": "input_image", "image_url": "https://x/y.png"}]}]}),
                "input[0].content[1].image_url",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "input[0].content[0].type",
            ),
            (
                json!({"model": "m", "input": [{"role": "user", "content": "x"}, {"type": "function_call", "call_id": "c", "name": "f", "arguments": "[1]"}]}),
                "input[1].arguments",
            ),
            (
                json!({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}),
                "input[0]",
            ),
            (
                json!({"model": "m", "input": "x", "reasoning": {"effort": "max"}}),
                "reasoning.effort",
            ),
            (
                json!({"model": "m", "input": "x", "text": {"format": {"type": "json_schema"}}}),
                "text.format.schema",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
                "tools[0].name",
            ),
        ];
        for (body, param) in cases {
            let e = decode(body.clone(), bedrock()).unwrap_err();
            assert_eq!(e.param.as_deref(), Some(param), "{body}: {e}");
        }
    }

    #[test]
    fn structured_output_and_reasoning_effort() {
        let req = decode(
            json!({"model": "m", "input": "x", "reasoning": {"effort": "xhigh"},
                   "text": {"format": {"type": "json_schema", "name": "answer", "schema": {"type": "object"}, "strict": true}}}),
            bedrock(),
        )
        .unwrap();
        assert_eq!(req.reasoning, Some(Reasoning::Effort("high".into())));
        assert_eq!(
            req.response_format,
            Some(ResponseFormat::JsonSchema {
                name: "answer".into(),
                schema: json!({"type": "object"}),
                strict: Some(true)
            })
        );
        let req = decode(
            json!({"model": "m", "input": "x", "reasoning": {"summary": "auto"}, "text": {"format": {"type": "json_object"}}}),
            bedrock(),
        )
        .unwrap();
        assert_eq!(req.reasoning, None);
        assert_eq!(req.response_format, Some(ResponseFormat::JsonObject));
    }

    #[test]
    fn tampered_reasoning_is_dropped_not_forwarded() {
        let mut sealed = reasoning::seal(&Part::Reasoning {
            text: "t".into(),
            signature: Some("s".into()),
        })
        .unwrap();
        sealed.push('A');
        let req = decode(
            json!({"model": "m", "input": [
                {"role": "user", "content": "x"},
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}], "encrypted_content": sealed},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
            ]}),
            bedrock(),
        )
        .unwrap();
        assert_eq!(req.messages[1].content, vec![Part::text("done")]);
        assert!(req.notes.iter().any(|n| n.contains("damaged")));
    }
}
