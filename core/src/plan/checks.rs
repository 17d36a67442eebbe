//! What the model and provider accept: a clear 400 from the gateway instead of an upstream
//! error relayed raw.

use crate::capabilities::Capabilities;
use crate::error::GatewayError;
use crate::formats::Provider;
use crate::ir::ChatRequest;
use crate::json::Object;
use crate::route::Route;
use serde_json::Value;

/// Checks a decoded request against where it goes.
pub fn for_upstream(
    req: &ChatRequest,
    obj: &Object,
    route: &Route,
    caps: Capabilities,
    model: &str,
) -> Result<(), GatewayError> {
    if route.format.provider() == Provider::Bedrock {
        bedrock_compat(req, obj)?;
        capabilities(req, caps, model)?;
    }
    Ok(())
}

/// Refuses what only Claude takes as sent (Anthropic server tools and their blocks) before a
/// request is translated for another upstream.
pub fn translatable(req: &ChatRequest, model: &str) -> Result<(), GatewayError> {
    use crate::ir::Part;
    if let Some((i, t)) = req
        .tools
        .iter()
        .enumerate()
        .find_map(|(i, t)| t.builtin.as_ref().map(|b| (i, b)))
    {
        return Err(GatewayError::invalid(
            format!("tools[{i}].type"),
            format!(
                "The server tool type `{t}` is only available on Claude models, not on `{model}`."
            ),
        )
        .with_code("unsupported_for_model"));
    }
    for (i, m) in req.messages.iter().enumerate() {
        for (j, p) in m.content.iter().enumerate() {
            let nested: Vec<&Part> = match p {
                Part::ToolResult { content, .. } => content.iter().collect(),
                other => vec![other],
            };
            for q in nested {
                if let Part::Opaque { kind } = q {
                    return Err(GatewayError::invalid(
                        m.part_path(j, i),
                        format!(
                            "Content blocks of type `{kind}` are only available on Claude models, not on `{model}`."
                        ),
                    )
                    .with_code("unsupported_for_model"));
                }
            }
        }
    }
    Ok(())
}

/// Features the model cannot take: a clear 400 here instead of a Bedrock error relayed raw.
fn capabilities(req: &ChatRequest, caps: Capabilities, model: &str) -> Result<(), GatewayError> {
    use crate::ir::Part;
    let unsupported = |param: String, what: &str| {
        GatewayError::invalid(
            param,
            format!("The model `{model}` does not accept {what}."),
        )
        .with_code("unsupported_for_model")
    };
    if !caps.tools && !req.tools.is_empty() {
        return Err(unsupported("tools".into(), "tools"));
    }
    if !caps.tool_choice && req.response_format.is_none() {
        if let Some(crate::ir::ToolChoice::Required | crate::ir::ToolChoice::Function(_)) =
            &req.tool_choice
        {
            return Err(unsupported(
                "tool_choice".into(),
                "a forced `tool_choice` (only `auto` or `none`)",
            ));
        }
    }
    for (i, m) in req.messages.iter().enumerate() {
        for (j, p) in m.content.iter().enumerate() {
            // The client's own message (turns of one role were merged), in its own field.
            let (root, i) = m
                .origins
                .get(j)
                .map_or(("messages", i), |o| (o.root, o.message as usize));
            let nested: Vec<&Part> = match p {
                Part::ToolResult { content, .. } => content.iter().collect(),
                other => vec![other],
            };
            for q in nested {
                match q {
                    Part::Image(_) if !caps.vision => {
                        return Err(unsupported(format!("{root}[{i}].content"), "images"))
                    }
                    Part::Document { .. } if !caps.documents => {
                        return Err(unsupported(format!("{root}[{i}].content"), "documents"))
                    }
                    Part::ToolCall { .. } | Part::ToolResult { .. } if !caps.tools => {
                        return Err(unsupported(
                            format!("{root}[{i}]"),
                            "tool calls or tool results",
                        ))
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// OpenAI fields Bedrock cannot honour: reject those that change the answer's meaning.
fn bedrock_compat(req: &ChatRequest, obj: &Object) -> Result<(), GatewayError> {
    if req.n.is_some_and(|n| n > 1) {
        return Err(GatewayError::invalid(
            "n",
            "Bedrock models return a single choice; `n` greater than 1 is not supported.",
        ));
    }
    if obj.get("logprobs") == Some(&Value::Bool(true)) {
        return Err(GatewayError::invalid(
            "logprobs",
            "`logprobs` is not supported for Bedrock models.",
        ));
    }
    if obj.get("top_logprobs").is_some_and(|v| !v.is_null()) {
        return Err(GatewayError::invalid(
            "top_logprobs",
            "`top_logprobs` is not supported for Bedrock models.",
        ));
    }
    if obj.get("audio").is_some_and(|v| !v.is_null()) {
        return Err(GatewayError::invalid(
            "audio",
            "Audio output is not supported for Bedrock models.",
        ));
    }
    if let Some(Value::Array(m)) = obj.get("modalities") {
        if m.iter().any(|x| x.as_str() == Some("audio")) {
            return Err(GatewayError::invalid(
                "modalities",
                "Audio output is not supported for Bedrock models.",
            ));
        }
    }
    if obj
        .get("logit_bias")
        .is_some_and(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    {
        return Err(GatewayError::invalid(
            "logit_bias",
            "`logit_bias` is not supported for Bedrock models.",
        ));
    }
    if obj.get("prediction").is_some_and(|v| !v.is_null()) {
        return Err(GatewayError::invalid(
            "prediction",
            "Predicted outputs are not supported for Bedrock models.",
        ));
    }
    Ok(())
}
