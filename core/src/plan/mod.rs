//! Planning a request: from the client's body to the exact upstream request (as data) plus
//! what the response path needs to know. The filter glue applies the plan.
//!
//! [`plan`] runs named steps: [`parse`] (body and `file_ids` context), [`input_format`]
//! (the door's format, or detection on the chat door), [`target_format`], [`route`] (model,
//! provider, key permissions), [`decode`] (validation in the client's own format),
//! [`checks::for_upstream`] (what the model and provider accept), [`encode`] (relay the
//! client's bytes or translate through the IR) and [`upstream::build`] (path, headers,
//! cluster and signing region per upstream API).

pub mod checks;
pub mod embeddings;
pub mod upstream;

use crate::auth::ClientKey;
use crate::capabilities::{self, Capabilities};
use crate::config::Gateway;
use crate::doors::Door;
use crate::error::GatewayError;
use crate::files::FileContext;
use crate::formats::{self, DecodeContext, EncodeContext, Format, Provider, RelayContext};
use crate::ir::{ChatRequest, Operation, ResponseMeta};
use crate::json::{self, Object, GATEWAY_FIELDS};
use crate::route::Route;
use crate::sigv4::{self, AwsCredentials, SignInput};
use std::fmt;

/// Header the filter sets so the Envoy route picks the upstream cluster.
pub const CLUSTER_HEADER: &str = "x-unigate-cluster";

/// Header the filter sets on Messages API and Bedrock runtime requests, so Envoy's own local
/// replies use that API's error shape (`local_reply_config` reads request headers, so the
/// header stays on the request; it is not signed and names only the API).
pub const DOOR_HEADER: &str = "x-unigate-door";

/// What the glue knows about the incoming request besides its body. Build it with
/// [`PlanInput::new`] and the setters; everything else has a neutral default.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// The door the request came through.
    pub door: Door,
    /// The complete request body.
    pub body: &'a [u8],
    /// Query string of `:path` (after `?`), if any.
    pub query: Option<&'a str>,
    /// `x-target-format` header.
    pub target_header: Option<&'a str>,
    /// The request id (32 hex characters), used in response ids.
    pub request_id: &'a str,
    /// `x-session-id` header (Bedrock agent session).
    pub session_header: Option<&'a str>,
    /// `anthropic-beta` header values, joined with commas.
    pub anthropic_beta: Option<&'a str>,
    /// The model id from the path (the Bedrock runtime door).
    pub path_model: Option<&'a str>,
    /// The client's `accept` header (relayed by the Bedrock runtime door).
    pub accept: Option<&'a str>,
    /// The authenticated client key (for its model restrictions).
    pub client: Option<&'a ClientKey>,
    /// Extracted text of the request's `file_ids`, fetched from the sidecar beforehand.
    pub files: Option<&'a [FileContext]>,
    /// Current Unix time in seconds.
    pub now_unix: u64,
}

impl<'a> PlanInput<'a> {
    /// The input for `body` arriving through `door`.
    pub fn new(door: Door, body: &'a [u8]) -> PlanInput<'a> {
        PlanInput {
            door,
            body,
            query: None,
            target_header: None,
            request_id: "",
            session_header: None,
            anthropic_beta: None,
            path_model: None,
            accept: None,
            client: None,
            files: None,
            now_unix: 0,
        }
    }

    /// Sets the query string.
    pub fn query(mut self, query: Option<&'a str>) -> Self {
        self.query = query;
        self
    }

    /// Sets the `x-target-format` header.
    pub fn target_header(mut self, header: Option<&'a str>) -> Self {
        self.target_header = header;
        self
    }

    /// Sets the request id.
    pub fn request_id(mut self, id: &'a str) -> Self {
        self.request_id = id;
        self
    }

    /// Sets the `x-session-id` header.
    pub fn session_header(mut self, header: Option<&'a str>) -> Self {
        self.session_header = header;
        self
    }

    /// Sets the `anthropic-beta` header values.
    pub fn anthropic_beta(mut self, header: Option<&'a str>) -> Self {
        self.anthropic_beta = header;
        self
    }

    /// Sets the model id taken from the path.
    pub fn path_model(mut self, model: Option<&'a str>) -> Self {
        self.path_model = model;
        self
    }

    /// Sets the client's `accept` header.
    pub fn accept(mut self, accept: Option<&'a str>) -> Self {
        self.accept = accept;
        self
    }

    /// Sets the authenticated client key.
    pub fn client(mut self, client: Option<&'a ClientKey>) -> Self {
        self.client = client;
        self
    }

    /// Sets the resolved file context.
    pub fn files(mut self, files: Option<&'a [FileContext]>) -> Self {
        self.files = files;
        self
    }

    /// Sets the current time.
    pub fn now(mut self, now_unix: u64) -> Self {
        self.now_unix = now_unix;
        self
    }
}

/// The upstream request to send, as data.
#[derive(Clone, PartialEq)]
pub struct UpstreamRequest {
    /// Which provider.
    pub provider: Provider,
    /// Envoy cluster (sent in [`CLUSTER_HEADER`]).
    pub cluster: String,
    /// `:authority`.
    pub authority: String,
    /// `:path` (model ids percent-encoded).
    pub path: String,
    /// The new body (empty when `body_changed` is false: the client's goes up as it is).
    pub body: Vec<u8>,
    /// Whether the body is rewritten. A relayed body is set even when it happens to equal the
    /// client's: the plan keeps no copy of the client's body to compare with (issue 17).
    pub body_changed: bool,
    /// SHA-256 (hex) of the client's body when it goes up unchanged and signed.
    pub payload_hash: Option<String>,
    /// Headers to set (besides `:path`, `:authority`, the cluster header and signing headers).
    pub headers: Vec<(&'static str, String)>,
    /// Client headers to remove before forwarding.
    pub remove_headers: Vec<&'static str>,
    /// Region to sign for (Bedrock only).
    pub sign_region: Option<String>,
}

impl fmt::Debug for UpstreamRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The OpenAI upstream key travels in `headers`: never print header values that carry
        // credentials.
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                if crate::auth::is_credential_header(k) {
                    (*k, "[redacted]")
                } else {
                    (*k, v.as_str())
                }
            })
            .collect();
        f.debug_struct("UpstreamRequest")
            .field("provider", &self.provider)
            .field("cluster", &self.cluster)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("body_bytes", &self.body.len())
            .field("body_changed", &self.body_changed)
            .field("payload_hash", &self.payload_hash)
            .field("headers", &headers)
            .field("remove_headers", &self.remove_headers)
            .field("sign_region", &self.sign_region)
            .finish()
    }
}

impl UpstreamRequest {
    /// The bytes that go upstream for a client that sent `client_body`.
    pub fn sent_body<'a>(&'a self, client_body: &'a [u8]) -> &'a [u8] {
        if self.body_changed {
            &self.body
        } else {
            client_body
        }
    }

    /// SigV4 headers for this request (Bedrock); empty for OpenAI.
    pub fn signing_headers(
        &self,
        creds: &AwsCredentials,
        now_unix: u64,
    ) -> Result<Vec<(String, String)>, GatewayError> {
        let Some(region) = &self.sign_region else {
            return Ok(Vec::new());
        };
        let input = SignInput {
            method: "POST",
            authority: &self.authority,
            path: &self.path,
            content_type: "application/json",
            body: &self.body,
            region,
            service: "bedrock",
        };
        match &self.payload_hash {
            Some(hash) => sigv4::sign_hashed(&input, hash, creds, now_unix),
            None => sigv4::sign_request(&input, creds, now_unix),
        }
    }
}

/// What the response path needs to translate the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePlan {
    /// What was asked of the model.
    pub operation: Operation,
    /// Wire format of the upstream API that will answer.
    pub upstream: Format,
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
    /// Whether a successful upstream answer is already in the target format, so it is relayed
    /// as it is (non-streamed bodies unchanged, streamed events re-emitted as received).
    pub relay: bool,
    /// Ids and model echoed to the client.
    pub meta: ResponseMeta,
    /// Route timeout (for error messages).
    pub timeout_secs: u64,
    /// Headers to add to the client response (e.g. the agent session id).
    pub extra_headers: Vec<(&'static str, String)>,
}

/// A planned request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The upstream request.
    pub upstream: UpstreamRequest,
    /// The response plan.
    pub response: ResponsePlan,
    /// The model id sent upstream.
    pub model_id: String,
    /// What the gateway dropped or changed in the body (for the debug log).
    pub notes: Vec<String>,
}

/// Plans a request of any door: embeddings may become a fan-out of calls the filter makes;
/// every other door forwards one request.
pub fn plan_request(
    gw: &Gateway,
    input: &PlanInput<'_>,
) -> Result<embeddings::Planned, GatewayError> {
    if input.door == Door::Embeddings {
        return embeddings::plan(gw, input);
    }
    plan(gw, input).map(|p| embeddings::Planned::Forward(Box::new(p)))
}

/// Plans a request that came through a door (embeddings: see [`plan_request`]).
pub fn plan(gw: &Gateway, input: &PlanInput<'_>) -> Result<Plan, GatewayError> {
    if let Door::Bedrock(op) = input.door {
        return bedrock_runtime(gw, input, op);
    }
    let (obj, splices) = parse(input)?;
    plan_parsed(gw, input, obj, json::Spliced::new(input.body, &splices))
}

/// Plans a body already parsed with [`parse`]; `raw` says where its long texts are read from
/// (`input.body` is not read: the filter reuses its copy's memory for the upstream body).
pub fn plan_parsed(
    gw: &Gateway,
    input: &PlanInput<'_>,
    obj: Object,
    raw: json::Spliced<'_>,
) -> Result<Plan, GatewayError> {
    let format = input_format(input.door, &obj)?;
    let target = target_format(input)?;
    let (model, route) = route(gw, input.door, &obj, input.client)?;
    let mut req = decode(input.door, format, &obj, &route)?;
    let caps = capabilities::for_model(&route.model_id);
    checks::for_upstream(&req, &obj, &route, caps, &model)?;
    let session = match route.format {
        Format::Agent => Some(crate::formats::agent::session_id(
            input.session_header,
            &req,
            input.request_id,
        )?),
        _ => None,
    };
    if input.door.operation() == Operation::CountTokens {
        return count_tokens(gw, input, model, route, obj, raw);
    }
    let encoded = encode(gw, input, format, &route, obj, &mut req, caps, raw)?;
    let structured = encoded.structured;
    let relay = relays(route.format, target, structured);
    let mut notes = req.notes.clone();
    notes.extend(encoded.notes.iter().cloned());
    let upstream = upstream::build(gw, &route, &req, encoded, session.as_deref())?;
    let mut extra_headers = Vec::new();
    if let Some(s) = session {
        extra_headers.push((crate::formats::agent::SESSION_HEADER, s));
    }
    Ok(Plan {
        response: ResponsePlan {
            operation: Operation::Chat,
            upstream: route.format,
            input: format,
            target,
            stream: req.stream,
            include_usage: req.include_usage,
            structured,
            relay,
            meta: ResponseMeta {
                id: response_id(target, input.request_id),
                created: input.now_unix,
                model,
                legacy_functions: req.legacy_functions,
                echo: req.echo.clone(),
            },
            timeout_secs: gw.config.upstream_timeout_seconds,
            extra_headers,
        },
        upstream,
        model_id: route.model_id,
        notes,
    })
}

/// Plans `count_tokens`: Claude on Bedrock counts with Bedrock's CountTokens API; other models
/// have no counter (404, which Claude Code reads as "not supported").
fn count_tokens(
    gw: &Gateway,
    input: &PlanInput<'_>,
    model: String,
    route: Route,
    mut obj: Object,
    raw: json::Spliced<'_>,
) -> Result<Plan, GatewayError> {
    if route.format != Format::Anthropic {
        return Err(GatewayError::new(
            404,
            crate::error::ErrorType::InvalidRequest,
            format!("count_tokens is not supported for the model `{model}`: only Claude models on Bedrock count tokens."),
        )
        .with_param("model")
        .with_code("count_tokens_unsupported"));
    }
    for f in GATEWAY_FIELDS {
        obj.remove(*f);
    }
    let betas = header_betas(input);
    let relayed = formats::upstream(Format::Anthropic).relay(
        obj,
        &RelayContext {
            model_id: &route.model_id,
            stream: false,
            default_max_tokens: gw.config.default_max_tokens,
            header_betas: &betas,
            beta_rules: &gw.beta_rules,
            raw,
        },
    )?;
    let body = formats::anthropic::count_tokens::request_body(&relayed.body);
    let upstream = upstream::bedrock_count_tokens(gw, &route, body)?;
    Ok(Plan {
        response: ResponsePlan {
            operation: Operation::CountTokens,
            upstream: Format::Anthropic,
            input: Format::Anthropic,
            target: Format::Anthropic,
            stream: false,
            include_usage: false,
            structured: false,
            relay: false,
            meta: ResponseMeta {
                id: response_id(Format::Anthropic, input.request_id),
                created: input.now_unix,
                model,
                legacy_functions: false,
                echo: Default::default(),
            },
            timeout_secs: gw.config.upstream_timeout_seconds,
            extra_headers: Vec::new(),
        },
        upstream,
        model_id: route.model_id,
        notes: relayed.notes,
    })
}

/// Plans a Bedrock runtime call (`/model/{id}/{op}`): the body goes up unchanged, re-signed
/// with the gateway's credentials, to the model the path names (aliases resolved); the answer
/// comes back unchanged.
fn bedrock_runtime(
    gw: &Gateway,
    input: &PlanInput<'_>,
    op: crate::formats::bedrock_runtime::BedrockOp,
) -> Result<Plan, GatewayError> {
    let model = input.path_model.unwrap_or_default();
    crate::route::check_model_id(model)?;
    if serde_json::from_slice::<serde::de::IgnoredAny>(input.body).is_err()
        || input.body.iter().all(u8::is_ascii_whitespace)
    {
        return Err(GatewayError::bad_request(
            "The request body is not valid JSON.",
        ));
    }
    let route = gw.router.route(model, None, Operation::Native)?;
    if route.format.provider() != Provider::Bedrock || route.format == Format::Agent {
        return Err(GatewayError::model_not_found(model));
    }
    if let Some(k) = input.client {
        if !k.model_allowed(model, &route.model_id) {
            return Err(GatewayError::model_not_allowed(model));
        }
    }
    let upstream = upstream::bedrock_relay(gw, &route, op, input.body, input.accept)?;
    Ok(Plan {
        response: ResponsePlan {
            operation: Operation::Native,
            upstream: Format::BedrockRuntime,
            input: Format::BedrockRuntime,
            target: Format::BedrockRuntime,
            stream: op.streams(),
            include_usage: false,
            structured: false,
            relay: true,
            meta: ResponseMeta {
                id: input.request_id.to_string(),
                created: input.now_unix,
                model: model.to_string(),
                legacy_functions: false,
                echo: Default::default(),
            },
            timeout_secs: gw.config.upstream_timeout_seconds,
            extra_headers: Vec::new(),
        },
        upstream,
        model_id: route.model_id,
        notes: Vec::new(),
    })
}

/// The client's `anthropic-beta` flags.
fn header_betas(input: &PlanInput<'_>) -> Vec<String> {
    input
        .anthropic_beta
        .map(formats::anthropic::betas::parse_header)
        .unwrap_or_default()
}

/// Step 1: the body as a JSON object, with the `file_ids` context put in front of the last
/// user message. Long texts stay in the body (markers in the tree; see [`json::splice`]).
pub fn parse(input: &PlanInput<'_>) -> Result<(Object, json::Splices), GatewayError> {
    let (mut obj, splices) = json::parse_object_spliced(input.body, input.request_id)?;
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
    Ok((obj, splices))
}

/// Step 2: the format the body is in: the door's, or detected on the chat door.
pub fn input_format(door: Door, obj: &Object) -> Result<Format, GatewayError> {
    match door.input() {
        Some(f) => Ok(f),
        None => crate::detect::detect(obj),
    }
}

/// Step 3: the format the client wants back.
pub fn target_format(input: &PlanInput<'_>) -> Result<Format, GatewayError> {
    if input.door.target_selectable() {
        crate::detect::target_format(
            input.query,
            input.target_header,
            input.door.default_target(),
        )
    } else {
        Ok(input.door.default_target())
    }
}

/// Step 4: the model (as the client named it) and where it goes; refuses models the key may
/// not use.
pub fn route(
    gw: &Gateway,
    door: Door,
    obj: &Object,
    client: Option<&ClientKey>,
) -> Result<(String, Route), GatewayError> {
    let forced = match json::opt_str(obj, "provider", "provider")? {
        None => None,
        Some(p) => Some(Provider::parse(p).ok_or_else(|| {
            GatewayError::invalid(
                "provider",
                format!("Unknown provider `{p}`; expected openai or bedrock."),
            )
        })?),
    };
    let model = json::req_str(obj, "model", "model")?.to_string();
    crate::route::check_model_id(&model)?;
    let mut route = gw.router.route(&model, forced, door.operation())?;
    if matches!(route.format, Format::OpenaiChat | Format::Responses) {
        // OpenAI's own Responses API serves the Responses door (the body relayed as sent);
        // every other door, and base URLs without `/responses`, use Chat Completions.
        route.format = if door == Door::Responses && gw.config.openai_responses {
            Format::Responses
        } else {
            Format::OpenaiChat
        };
    }
    if let Some(k) = client {
        if !k.model_allowed(&model, &route.model_id) {
            return Err(GatewayError::model_not_allowed(&model));
        }
    }
    Ok((model, route))
}

/// Step 5: the request decoded (and so validated) in the client's own format.
pub fn decode(
    door: Door,
    format: Format,
    obj: &Object,
    route: &Route,
) -> Result<ChatRequest, GatewayError> {
    formats::client_or_error(format)?.decode_request(
        obj,
        DecodeContext {
            bedrock: route.format.provider() == Provider::Bedrock,
            messages_api: door == Door::Messages,
            relayed: route.format == format,
        },
    )
}

/// Step 6: the upstream body. The client's bytes go up unchanged when nothing needs changing
/// (OpenAI to OpenAI); a body already in the upstream's format is relayed minus what the
/// upstream rejects; everything else is translated through the IR. `raw` is the client's body
/// with its long texts (see [`json::splice`]). The conversation a relayed body carries itself
/// is dropped from `req`, and the value tree before a translation.
#[allow(clippy::too_many_arguments)]
pub fn encode(
    gw: &Gateway,
    input: &PlanInput<'_>,
    format: Format,
    route: &Route,
    mut obj: Object,
    req: &mut ChatRequest,
    caps: Capabilities,
    raw: json::Spliced<'_>,
) -> Result<formats::Encoded, GatewayError> {
    let unchanged = format == Format::OpenaiChat
        && route.format == Format::OpenaiChat
        && !req.stream
        && route.model_id == req.model
        && input.files.is_none()
        && !GATEWAY_FIELDS.iter().any(|f| obj.contains_key(*f));
    if unchanged {
        return Ok(formats::Encoded::unchanged());
    }
    for f in GATEWAY_FIELDS {
        obj.remove(*f);
    }
    if format == route.format && req.response_format.is_none() {
        req.forget_conversation();
        let betas = header_betas(input);
        return formats::upstream(route.format).relay(
            obj,
            &RelayContext {
                model_id: &route.model_id,
                stream: req.stream,
                default_max_tokens: default_max_tokens(gw, input.door, &route.model_id),
                header_betas: &betas,
                beta_rules: &gw.beta_rules,
                raw,
            },
        );
    }
    drop(obj);
    checks::translatable(req, &route.model_id)?;
    formats::upstream(route.format).encode_request(
        req,
        &EncodeContext {
            model_id: &route.model_id,
            default_max_tokens: default_max_tokens(gw, input.door, &route.model_id),
            capabilities: caps,
            raw,
        },
    )
}

/// `max_tokens` for a request that sets none. Responses clients never send a limit (Codex
/// sends no `max_output_tokens`) and expect whole answers, so Claude gets its model's own
/// output limit there; other doors use the configured `default_max_tokens`.
pub fn default_max_tokens(gw: &Gateway, door: Door, model_id: &str) -> u32 {
    match door {
        Door::Responses => formats::anthropic::limits::max_output_tokens(model_id)
            .unwrap_or(gw.config.default_max_tokens),
        _ => gw.config.default_max_tokens,
    }
}

/// Whether a successful answer of `upstream` is already what a `target` client wants.
pub fn relays(upstream: Format, target: Format, structured: bool) -> bool {
    upstream == target && !structured && formats::client(target).is_some()
}

/// The client-facing response id: `msg_…` for Anthropic clients, `resp_…` for Responses
/// clients, `chatcmpl-…` otherwise.
pub fn response_id(target: Format, request_id: &str) -> String {
    match target {
        Format::Anthropic => format!("msg_{request_id}"),
        Format::Responses => format!("resp_{request_id}"),
        _ => format!("chatcmpl-{request_id}"),
    }
}
