//! Planning a chat request: from the client's body to the exact upstream request (as data)
//! plus what the response path needs to know. The filter glue applies the plan.

use crate::anthropic::{self, BEDROCK_ANTHROPIC_VERSION};
use crate::capabilities::{self, Capabilities};
use crate::config::Gateway;
use crate::converse;
use crate::detect::{self, Format};
use crate::error::GatewayError;
use crate::fields::{self, Object, GATEWAY_FIELDS};
use crate::ir::ChatRequest;
use crate::openai::{self, ResponseMeta};
use crate::route::{Provider, UpstreamApi};
use crate::sigv4::{self, encode_path_segment, AwsCredentials, SignInput};
use crate::titan;
use serde_json::{json, Value};

/// Header the filter sets so the Envoy route picks the upstream cluster.
pub const CLUSTER_HEADER: &str = "x-unigate-cluster";

/// What the glue knows about the incoming request besides its body.
#[derive(Debug, Clone, Copy)]
pub struct ChatInput<'a> {
    /// The complete request body.
    pub body: &'a [u8],
    /// Query string of `:path` (after `?`), if any.
    pub query: Option<&'a str>,
    /// `x-target-format` header.
    pub target_header: Option<&'a str>,
    /// Random id for this request (32 hex characters), used in response ids.
    pub request_id: &'a str,
    /// `x-session-id` header (Bedrock agent session).
    pub session_header: Option<&'a str>,
    /// The authenticated client key (for its model restrictions).
    pub client: Option<&'a crate::auth::ClientKey>,
    /// Extracted text of the request's `file_ids`, fetched from the sidecar beforehand.
    pub files: Option<&'a [crate::files::FileContext]>,
    /// Current Unix time in seconds.
    pub now_unix: u64,
}

/// The upstream request to send, as data.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamRequest {
    /// Which provider.
    pub provider: Provider,
    /// Envoy cluster (sent in [`CLUSTER_HEADER`]).
    pub cluster: String,
    /// `:authority`.
    pub authority: String,
    /// `:path` (model ids percent-encoded).
    pub path: String,
    /// The new body.
    pub body: Vec<u8>,
    /// Whether `body` differs from the client's (an unchanged body is not rewritten).
    pub body_changed: bool,
    /// Headers to set (besides `:path`, `:authority`, the cluster header and signing headers).
    pub headers: Vec<(&'static str, String)>,
    /// Client headers to remove before forwarding.
    pub remove_headers: Vec<&'static str>,
    /// Region to sign for (Bedrock only).
    pub sign_region: Option<String>,
}

impl UpstreamRequest {
    /// SigV4 headers for this request (Bedrock); empty for OpenAI.
    pub fn signing_headers(
        &self,
        creds: &AwsCredentials,
        now_unix: u64,
    ) -> Result<Vec<(String, String)>, GatewayError> {
        let Some(region) = &self.sign_region else {
            return Ok(Vec::new());
        };
        sigv4::sign_request(
            &SignInput {
                method: "POST",
                authority: &self.authority,
                path: &self.path,
                content_type: "application/json",
                body: &self.body,
                region,
                service: "bedrock",
            },
            creds,
            now_unix,
        )
    }
}

/// What the response path needs to translate the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePlan {
    /// Upstream API that will answer.
    pub api: UpstreamApi,
    /// Format the client sent.
    pub input: Format,
    /// Format the client wants back.
    pub target: Format,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// Whether the client asked for a usage chunk in the stream.
    pub include_usage: bool,
    /// Whether the gateway forced the structured-output tool.
    pub structured: bool,
    /// Whether a successful upstream body is already in the target format.
    pub passthrough: bool,
    /// Ids and model echoed to the client.
    pub meta: ResponseMeta,
    /// Route timeout (for error messages).
    pub timeout_secs: u64,
    /// Headers to add to the client response (e.g. the agent session id).
    pub extra_headers: Vec<(&'static str, String)>,
}

/// A planned chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatPlan {
    /// The upstream request.
    pub upstream: UpstreamRequest,
    /// The response plan.
    pub response: ResponsePlan,
    /// The model id sent upstream.
    pub model_id: String,
}

/// Plans a `POST /v1/chat/completions` request.
pub fn plan_chat(gw: &Gateway, input: &ChatInput<'_>) -> Result<ChatPlan, GatewayError> {
    let mut obj = fields::parse_object(input.body)?;
    let requested_files = crate::files::requested_in(&obj)?;
    match input.files {
        Some(files) if !files.is_empty() => {
            crate::files::inject(&mut obj, &crate::files::render(files))?
        }
        _ if !requested_files.is_empty() => {
            return Err(GatewayError::internal(
                "file_ids were not resolved before planning",
            ))
        }
        _ => {}
    }
    let format = detect::detect(&obj)?;
    let target = detect::target_format(input.query, input.target_header)?;
    let forced = match fields::opt_str(&obj, "provider", "provider")? {
        None => None,
        Some(p) => Some(Provider::parse(p).ok_or_else(|| {
            GatewayError::invalid(
                "provider",
                format!("Unknown provider `{p}`; expected openai or bedrock."),
            )
        })?),
    };
    let model = fields::req_str(&obj, "model", "model")?.to_string();
    let route = gw.router.route(&model, forced)?;
    if let Some(k) = input.client {
        if !k.model_allowed(&model, &route.model_id) {
            return Err(GatewayError::new(
                403,
                crate::error::ErrorType::Permission,
                format!("This API key is not allowed to use the model `{model}`."),
            )
            .with_param("model")
            .with_code("model_not_allowed"));
        }
    }

    // Validate the request in its own format before anything goes upstream.
    let opts = openai::DecodeOptions {
        bedrock: route.api.provider() == Provider::Bedrock,
    };
    let req = match format {
        Format::Openai => openai::decode_request(&obj, opts)?,
        Format::BedrockClaude => anthropic::decode_request(&obj)?,
        Format::BedrockTitan => titan::decode_request(&obj)?,
    };
    let caps = capabilities::for_model(&route.model_id);
    if route.api.provider() == Provider::Bedrock {
        check_bedrock_compat(&req, &obj)?;
        check_capabilities(&req, caps, &model)?;
    }

    let mut extra_headers = Vec::new();
    let (body, structured) = if route.api == UpstreamApi::BedrockAgent {
        let session = crate::agent::session_id(input.session_header, &req, input.request_id)?;
        let body = serde_json::to_vec(&crate::agent::encode_request(&req)?).map_err(|e| {
            GatewayError::internal(format!("Could not serialize the upstream body: {e}"))
        })?;
        extra_headers.push((crate::agent::SESSION_HEADER, session));
        (body, false)
    } else if format == Format::Openai
        && route.api == UpstreamApi::OpenaiChat
        && !req.stream
        && route.model_id == model
        && input.files.is_none()
        && !GATEWAY_FIELDS.iter().any(|f| obj.contains_key(*f))
    {
        // Nothing to change: the client's bytes go upstream as they are.
        (input.body.to_vec(), false)
    } else {
        build_body(gw, format, route.api, &route.model_id, obj, &req, caps)?
    };
    let body_changed = body.as_slice() != input.body;
    let passthrough = match (route.api, target) {
        (UpstreamApi::OpenaiChat, Format::Openai) => true,
        (UpstreamApi::BedrockAnthropic, Format::BedrockClaude) => !structured,
        (UpstreamApi::BedrockTitan, Format::BedrockTitan) => true,
        _ => false,
    };

    let upstream = match route.api {
        UpstreamApi::OpenaiChat => {
            let up = gw.require_openai()?;
            UpstreamRequest {
                provider: Provider::Openai,
                cluster: up.cluster.clone(),
                authority: up.url.authority.clone(),
                path: format!("{}/chat/completions", up.url.path),
                body,
                body_changed,
                headers: vec![
                    ("content-type", "application/json".into()),
                    (
                        "accept",
                        if req.stream {
                            "text/event-stream"
                        } else {
                            "application/json"
                        }
                        .into(),
                    ),
                    ("accept-encoding", "identity".into()),
                    ("authorization", format!("Bearer {}", up.api_key)),
                ],
                remove_headers: vec![
                    "x-api-key",
                    "x-target-format",
                    "openai-organization",
                    "openai-project",
                ],
                sign_region: None,
            }
        }
        UpstreamApi::BedrockAgent => {
            let up = gw.require_bedrock_agent()?;
            let (agent, alias) = crate::route::agent_ids(&route.model_id).ok_or_else(|| {
                GatewayError::invalid(
                    "model",
                    "Agent model ids look like `bedrock-agent/<agentId>/<aliasId>` (alphanumeric ids).",
                )
            })?;
            let session = extra_headers
                .first()
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            UpstreamRequest {
                provider: Provider::Bedrock,
                cluster: up.cluster.clone(),
                authority: up.url.authority.clone(),
                path: format!(
                    "{}/agents/{agent}/agentAliases/{alias}/sessions/{}/text",
                    up.url.path,
                    encode_path_segment(&session)
                ),
                body,
                body_changed,
                headers: vec![
                    ("content-type", "application/json".into()),
                    ("accept", "application/json".into()),
                    ("accept-encoding", "identity".into()),
                ],
                remove_headers: vec![
                    "authorization",
                    "x-api-key",
                    "x-target-format",
                    "x-session-id",
                ],
                sign_region: Some(up.region.clone()),
            }
        }
        api => {
            let up = gw.require_bedrock()?;
            let op = match (api, req.stream) {
                (UpstreamApi::BedrockConverse, false) => "converse",
                (UpstreamApi::BedrockConverse, true) => "converse-stream",
                (_, false) => "invoke",
                (_, true) => "invoke-with-response-stream",
            };
            UpstreamRequest {
                provider: Provider::Bedrock,
                cluster: up.cluster.clone(),
                authority: up.url.authority.clone(),
                path: format!(
                    "{}/model/{}/{op}",
                    up.url.path,
                    encode_path_segment(&route.model_id)
                ),
                body,
                body_changed,
                headers: vec![
                    ("content-type", "application/json".into()),
                    (
                        "accept",
                        if req.stream {
                            "application/vnd.amazon.eventstream"
                        } else {
                            "application/json"
                        }
                        .into(),
                    ),
                    ("accept-encoding", "identity".into()),
                ],
                remove_headers: vec!["authorization", "x-api-key", "x-target-format"],
                sign_region: Some(up.region.clone()),
            }
        }
    };

    let id_prefix = match target {
        Format::BedrockClaude => "msg_",
        _ => "chatcmpl-",
    };
    Ok(ChatPlan {
        response: ResponsePlan {
            api: route.api,
            input: format,
            target,
            stream: req.stream,
            include_usage: req.include_usage,
            structured,
            passthrough,
            meta: ResponseMeta {
                id: format!("{id_prefix}{}", input.request_id),
                created: input.now_unix,
                model,
                legacy_functions: req.legacy_functions,
            },
            timeout_secs: gw.config.upstream_timeout_seconds,
            extra_headers,
        },
        upstream,
        model_id: route.model_id,
    })
}

/// Builds the upstream body: same-format pairs pass through minus rejected fields, everything
/// else goes through the IR. Returns the body and whether structured output was forced.
fn build_body(
    gw: &Gateway,
    format: Format,
    api: UpstreamApi,
    model_id: &str,
    mut obj: Object,
    req: &ChatRequest,
    caps: Capabilities,
) -> Result<(Vec<u8>, bool), GatewayError> {
    for f in GATEWAY_FIELDS {
        obj.remove(*f);
    }
    let value = match (format, api) {
        (Format::Openai, UpstreamApi::OpenaiChat) => {
            obj.insert("model".into(), json!(model_id));
            if req.stream {
                // Ask for the usage chunk so every stream is accounted for; it is dropped
                // before the client when the client did not ask for it.
                let opts = obj.entry("stream_options").or_insert_with(|| json!({}));
                if let Some(o) = opts.as_object_mut() {
                    o.insert("include_usage".into(), json!(true));
                } else {
                    *opts = json!({"include_usage": true});
                }
            }
            Value::Object(obj)
        }
        (Format::BedrockClaude, UpstreamApi::BedrockAnthropic) if req.response_format.is_none() => {
            // Bedrock rejects `model` and `stream` in the body; both live in the path.
            obj.remove("model");
            obj.remove("stream");
            obj.insert("anthropic_version".into(), json!(BEDROCK_ANTHROPIC_VERSION));
            if !obj.contains_key("max_tokens") {
                obj.insert("max_tokens".into(), json!(gw.config.default_max_tokens));
            }
            Value::Object(obj)
        }
        (Format::BedrockTitan, UpstreamApi::BedrockTitan) => {
            obj.remove("model");
            obj.remove("stream");
            Value::Object(obj)
        }
        (_, UpstreamApi::OpenaiChat) => openai::encode_request(req, model_id)?,
        (_, UpstreamApi::BedrockAnthropic) => {
            let body = anthropic::encode_request(
                req,
                anthropic::EncodeOptions {
                    default_max_tokens: gw.config.default_max_tokens,
                },
            )?;
            return Ok((body, req.response_format.is_some()));
        }
        (_, UpstreamApi::BedrockTitan) => titan::encode_request(req)?,
        (_, UpstreamApi::BedrockAgent) => {
            return Err(GatewayError::internal("agent bodies are built separately"))
        }
        (_, UpstreamApi::BedrockConverse) => {
            return converse::encode_request(req, caps);
        }
    };
    let structured = req.response_format.is_some() && api != UpstreamApi::OpenaiChat;
    let body = serde_json::to_vec(&value).map_err(|e| {
        GatewayError::internal(format!("Could not serialize the upstream body: {e}"))
    })?;
    Ok((body, structured))
}

/// Features the model cannot take: a clear 400 here instead of a Bedrock error relayed raw.
fn check_capabilities(
    req: &ChatRequest,
    caps: Capabilities,
    model: &str,
) -> Result<(), GatewayError> {
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
        for p in &m.content {
            let nested: Vec<&Part> = match p {
                Part::ToolResult { content, .. } => content.iter().collect(),
                other => vec![other],
            };
            for q in nested {
                match q {
                    Part::Image(_) if !caps.vision => {
                        return Err(unsupported(format!("messages[{i}].content"), "images"))
                    }
                    Part::Document { .. } if !caps.documents => {
                        return Err(unsupported(format!("messages[{i}].content"), "documents"))
                    }
                    Part::ToolCall { .. } | Part::ToolResult { .. } if !caps.tools => {
                        return Err(unsupported(
                            format!("messages[{i}]"),
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
fn check_bedrock_compat(req: &ChatRequest, obj: &Object) -> Result<(), GatewayError> {
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
