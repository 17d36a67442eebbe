//! Per-upstream request builders: cluster, `:authority`, `:path`, headers and signing region
//! for each upstream API, around an already encoded body.

use super::UpstreamRequest;
use crate::config::Gateway;
use crate::error::GatewayError;
use crate::formats::bedrock_runtime::BedrockOp;
use crate::formats::{Encoded, Format, Provider};
use crate::ir::ChatRequest;
use crate::route::Route;
use crate::sigv4::encode_path_segment;

/// Client headers that steer the gateway, authenticate to it or belong to the client's API;
/// never forwarded upstream.
const GATEWAY_HEADERS: &[&str] = &[
    "authorization",
    "x-api-key",
    "x-target-format",
    "anthropic-version",
    "anthropic-beta",
];

/// The upstream request for `route` carrying `encoded` (an unchanged body is not rewritten);
/// `session` is the Bedrock agent session id.
pub fn build(
    gw: &Gateway,
    route: &Route,
    req: &ChatRequest,
    encoded: Encoded,
    session: Option<&str>,
) -> Result<UpstreamRequest, GatewayError> {
    let body_changed = !encoded.unchanged;
    let body = encoded.body;
    match route.format {
        Format::OpenaiChat => openai(gw, "chat/completions", req.stream, body, body_changed),
        Format::Responses => openai(gw, "responses", req.stream, body, body_changed),
        Format::Agent => agent(gw, route, session.unwrap_or_default(), body, body_changed),
        Format::OpenaiEmbeddings => openai_embeddings(gw, body, body_changed),
        Format::Anthropic
        | Format::Titan
        | Format::Converse
        | Format::BedrockRuntime
        | Format::TitanEmbed
        | Format::CohereEmbed => bedrock_runtime(gw, route, req.stream, body, body_changed),
    }
}

/// `POST {base}/{endpoint}` (`chat/completions`, `responses`) with the gateway's OpenAI key.
fn openai(
    gw: &Gateway,
    endpoint: &str,
    stream: bool,
    body: Vec<u8>,
    body_changed: bool,
) -> Result<UpstreamRequest, GatewayError> {
    let up = gw.require_openai()?;
    Ok(UpstreamRequest {
        provider: Provider::Openai,
        cluster: up.cluster.clone(),
        authority: up.url.authority.clone(),
        path: format!("{}/{endpoint}", up.url.path),
        body,
        body_changed,
        payload_hash: None,
        headers: vec![
            ("content-type", "application/json".into()),
            (
                "accept",
                if stream {
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
            "anthropic-version",
            "anthropic-beta",
            "openai-organization",
            "openai-project",
        ],
        sign_region: None,
    })
}

/// `POST {base}/embeddings` with the gateway's OpenAI key.
pub fn openai_embeddings(
    gw: &Gateway,
    body: Vec<u8>,
    body_changed: bool,
) -> Result<UpstreamRequest, GatewayError> {
    openai(gw, "embeddings", false, body, body_changed)
}

/// A signed-later InvokeModel call of an embedding model (the filter makes these itself).
pub fn bedrock_invoke(
    gw: &Gateway,
    model_id: &str,
    body: Vec<u8>,
) -> Result<UpstreamRequest, GatewayError> {
    let up = gw.require_bedrock()?;
    Ok(UpstreamRequest {
        provider: Provider::Bedrock,
        cluster: up.cluster.clone(),
        authority: up.url.authority.clone(),
        path: format!(
            "{}/model/{}/invoke",
            up.url.path,
            encode_path_segment(model_id)
        ),
        body,
        body_changed: true,
        payload_hash: None,
        headers: vec![
            ("content-type", "application/json".into()),
            ("accept", "application/json".into()),
        ],
        remove_headers: Vec::new(),
        sign_region: Some(up.region.clone()),
    })
}

/// Bedrock runtime: `/model/{id}/invoke[-with-response-stream]` for InvokeModel formats,
/// `/model/{id}/converse[-stream]` for Converse.
fn bedrock_runtime(
    gw: &Gateway,
    route: &Route,
    stream: bool,
    body: Vec<u8>,
    body_changed: bool,
) -> Result<UpstreamRequest, GatewayError> {
    let up = gw.require_bedrock()?;
    let op = match (route.format, stream) {
        (Format::Converse, false) => "converse",
        (Format::Converse, true) => "converse-stream",
        (_, false) => "invoke",
        (_, true) => "invoke-with-response-stream",
    };
    Ok(UpstreamRequest {
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
        payload_hash: None,
        headers: vec![
            ("content-type", "application/json".into()),
            (
                "accept",
                if stream {
                    "application/vnd.amazon.eventstream"
                } else {
                    "application/json"
                }
                .into(),
            ),
            ("accept-encoding", "identity".into()),
        ],
        remove_headers: GATEWAY_HEADERS.to_vec(),
        sign_region: Some(up.region.clone()),
    })
}

/// The Bedrock runtime door: the client's call to the same operation, for the resolved model,
/// with the client's body unchanged.
pub fn bedrock_relay(
    gw: &Gateway,
    route: &Route,
    op: BedrockOp,
    body: &[u8],
    accept: Option<&str>,
) -> Result<UpstreamRequest, GatewayError> {
    let up = gw.require_bedrock()?;
    // CountTokens takes foundation model ids only (an alias may resolve to a profile).
    let model_id = match op {
        BedrockOp::CountTokens => crate::route::base_model_id(&route.model_id),
        _ => route.model_id.as_str(),
    };
    let default_accept = if op.streams() {
        "application/vnd.amazon.eventstream"
    } else {
        "application/json"
    };
    Ok(UpstreamRequest {
        provider: Provider::Bedrock,
        cluster: up.cluster.clone(),
        authority: up.url.authority.clone(),
        path: format!(
            "{}/model/{}/{}",
            up.url.path,
            encode_path_segment(model_id),
            op.as_str()
        ),
        // The client's bytes go up as they are: no copy, only their hash for the signature.
        body: Vec::new(),
        body_changed: false,
        payload_hash: Some(crate::sigv4::sha256_hex(body)),
        headers: vec![
            // Signed as application/json: boto3 sends InvokeModel bodies without a type.
            ("content-type", "application/json".into()),
            ("accept", accept.unwrap_or(default_accept).to_string()),
            ("accept-encoding", "identity".into()),
        ],
        remove_headers: GATEWAY_HEADERS.to_vec(),
        sign_region: Some(up.region.clone()),
    })
}

/// Bedrock CountTokens: `/model/{foundation model id}/count-tokens` (CountTokens takes no
/// inference profiles: the geography prefix and any ARN wrapper are removed).
pub fn bedrock_count_tokens(
    gw: &Gateway,
    route: &Route,
    body: Vec<u8>,
) -> Result<UpstreamRequest, GatewayError> {
    let up = gw.require_bedrock()?;
    let model = crate::route::base_model_id(&route.model_id);
    Ok(UpstreamRequest {
        provider: Provider::Bedrock,
        cluster: up.cluster.clone(),
        authority: up.url.authority.clone(),
        path: format!(
            "{}/model/{}/count-tokens",
            up.url.path,
            encode_path_segment(model)
        ),
        body,
        body_changed: true,
        payload_hash: None,
        headers: vec![
            ("content-type", "application/json".into()),
            ("accept", "application/json".into()),
            ("accept-encoding", "identity".into()),
        ],
        remove_headers: GATEWAY_HEADERS.to_vec(),
        sign_region: Some(up.region.clone()),
    })
}

/// Bedrock Agents: `/agents/{agent}/agentAliases/{alias}/sessions/{session}/text`.
fn agent(
    gw: &Gateway,
    route: &Route,
    session: &str,
    body: Vec<u8>,
    body_changed: bool,
) -> Result<UpstreamRequest, GatewayError> {
    let up = gw.require_bedrock_agent()?;
    let (agent, alias) = crate::route::agent_ids(&route.model_id).ok_or_else(|| {
        GatewayError::invalid(
            "model",
            "Agent model ids look like `bedrock-agent/<agentId>/<aliasId>` (alphanumeric ids).",
        )
    })?;
    let mut remove_headers = GATEWAY_HEADERS.to_vec();
    remove_headers.push(crate::formats::agent::SESSION_HEADER);
    Ok(UpstreamRequest {
        provider: Provider::Bedrock,
        cluster: up.cluster.clone(),
        authority: up.url.authority.clone(),
        path: format!(
            "{}/agents/{agent}/agentAliases/{alias}/sessions/{}/text",
            up.url.path,
            encode_path_segment(session)
        ),
        body,
        body_changed,
        payload_hash: None,
        headers: vec![
            ("content-type", "application/json".into()),
            ("accept", "application/json".into()),
            ("accept-encoding", "identity".into()),
        ],
        remove_headers,
        sign_region: Some(up.region.clone()),
    })
}
