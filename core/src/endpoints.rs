//! Which endpoint a request is for, and the answers the filter gives locally
//! (health and the model catalog).

use crate::catalog::Catalog;
use crate::config::Gateway;
use crate::doors::Door;
use crate::error::GatewayError;
use crate::formats::bedrock_runtime::BedrockOp;
use crate::response::ClientResponse;
use serde_json::json;

/// An endpoint of the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /health` (no key needed).
    Health,
    /// `GET /v1/chat/completions/health` (no key needed).
    ChatHealth,
    /// `GET /v1/models`.
    Models,
    /// `GET /v1/models/{id}` (id percent-decoded).
    Model(String),
    /// `GET /v1/providers`.
    Providers,
    /// A front door (`POST /v1/chat/completions`, …): planned and sent upstream.
    Door(Door),
    /// `POST /model/{modelId}/{operation}`: the Bedrock runtime door, with the model id from
    /// the path (percent-decoded once).
    Bedrock {
        /// The operation.
        op: BedrockOp,
        /// The model id.
        model: String,
    },
    /// `GET /inference-profiles` (a Bedrock control-plane call Claude Code's Bedrock mode
    /// makes first): answered with an empty list.
    InferenceProfiles,
    /// `/v1/files…`, served by the sidecar.
    Files,
    /// A known path with the wrong method.
    WrongMethod,
    /// Anything else.
    Unknown,
}

impl Endpoint {
    /// Whether the endpoint needs a client API key.
    pub fn needs_auth(&self) -> bool {
        !matches!(self, Endpoint::Health | Endpoint::ChatHealth)
    }

    /// Short name for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Endpoint::Health => "health",
            Endpoint::ChatHealth => "chat_health",
            Endpoint::Models => "models",
            Endpoint::Model(_) => "model",
            Endpoint::Providers => "providers",
            Endpoint::Door(d) => d.name(),
            Endpoint::Bedrock { .. } => "bedrock",
            Endpoint::InferenceProfiles => "inference_profiles",
            Endpoint::Files => "files",
            Endpoint::WrongMethod => "wrong_method",
            Endpoint::Unknown => "unknown",
        }
    }
}

/// Splits `:path` into path and query.
pub fn split_path(path: &str) -> (&str, Option<&str>) {
    match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    }
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes.get(i).copied().unwrap_or_default();
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The operation and model id of a Bedrock runtime path `/model/{modelId}/{operation}`. The
/// id may be percent-encoded (boto3: `%3A`, `%2F`) or raw (the Anthropic SDKs send `:` as is;
/// a raw ARN spans several segments); it is decoded once.
pub fn bedrock_path(path: &str) -> Option<(BedrockOp, String)> {
    let rest = path.strip_prefix("/model/")?;
    let (model, op) = rest.rsplit_once('/')?;
    let op = BedrockOp::parse(op)?;
    (!model.is_empty()).then(|| (op, percent_decode(model)))
}

/// The door whose error envelope a path's errors use when the path is not a door itself (a
/// wrong method on `/v1/messages` is still an Anthropic client's error).
pub fn door_of_path(path: &str) -> Door {
    if path == "/v1/messages" || path.starts_with("/v1/messages/") {
        Door::Messages
    } else if path == "/v1/responses" || path.starts_with("/v1/responses/") {
        Door::Responses
    } else if path.starts_with("/model/") || path.starts_with("/inference-profiles") {
        Door::Bedrock(BedrockOp::Invoke)
    } else {
        Door::Chat
    }
}

/// Classifies a request by method and path (without query).
pub fn classify(method: &str, path: &str) -> Endpoint {
    let path = if path.len() > 1 {
        path.trim_end_matches('/')
    } else {
        path
    };
    let get = method == "GET" || method == "HEAD";
    match path {
        "/health" | "/healthz" => {
            if get {
                Endpoint::Health
            } else {
                Endpoint::WrongMethod
            }
        }
        "/v1/chat/completions/health" => {
            if get {
                Endpoint::ChatHealth
            } else {
                Endpoint::WrongMethod
            }
        }
        "/v1/models" => {
            if get {
                Endpoint::Models
            } else {
                Endpoint::WrongMethod
            }
        }
        "/v1/providers" => {
            if get {
                Endpoint::Providers
            } else {
                Endpoint::WrongMethod
            }
        }
        "/v1/chat/completions" => {
            if method == "POST" {
                Endpoint::Door(Door::Chat)
            } else {
                Endpoint::WrongMethod
            }
        }
        "/v1/embeddings" => {
            if method == "POST" {
                Endpoint::Door(Door::Embeddings)
            } else {
                Endpoint::WrongMethod
            }
        }
        "/v1/messages" | "/v1/messages/count_tokens" => {
            if method == "POST" {
                Endpoint::Door(if path == "/v1/messages" {
                    Door::Messages
                } else {
                    Door::CountTokens
                })
            } else {
                Endpoint::WrongMethod
            }
        }
        "/v1/responses" => {
            if method == "POST" {
                Endpoint::Door(Door::Responses)
            } else {
                Endpoint::WrongMethod
            }
        }
        p if p == "/v1/files" || p.starts_with("/v1/files/") => Endpoint::Files,
        "/inference-profiles" => {
            if get {
                Endpoint::InferenceProfiles
            } else {
                Endpoint::WrongMethod
            }
        }
        p if p.starts_with("/model/") => match bedrock_path(p) {
            Some((op, model)) if method == "POST" => Endpoint::Bedrock { op, model },
            Some(_) => Endpoint::WrongMethod,
            None => Endpoint::Unknown,
        },
        p => match p.strip_prefix("/v1/models/") {
            Some(id) if !id.is_empty() => {
                if get {
                    Endpoint::Model(percent_decode(id))
                } else {
                    Endpoint::WrongMethod
                }
            }
            _ => Endpoint::Unknown,
        },
    }
}

fn json_response(status: u16, body: serde_json::Value) -> ClientResponse {
    ClientResponse {
        status,
        headers: vec![("content-type", "application/json".to_string())],
        body: serde_json::to_vec(&body).unwrap_or_default(),
        usage: None,
    }
}

/// `GET /health`: the gateway is up; also says which providers are configured.
pub fn health(gw: &Gateway, chat: bool) -> ClientResponse {
    let mut body = json!({
        "status": "ok",
        "providers": {
            "openai": {"configured": gw.openai.is_some()},
            "bedrock": {
                "configured": gw.bedrock.is_some(),
                "region": gw.bedrock.as_ref().map(|b| b.region.clone()),
            },
        },
    });
    if chat {
        if let Some(o) = body.as_object_mut() {
            o.insert("service".into(), json!("chat_completions"));
        }
    }
    json_response(200, body)
}

/// `GET /v1/providers`: each provider and whether it is configured (no upstream addresses:
/// clients have no use for them).
pub fn providers(gw: &Gateway) -> ClientResponse {
    let data = json!([
        {
            "id": "openai",
            "object": "provider",
            "configured": gw.openai.is_some(),
        },
        {
            "id": "bedrock",
            "object": "provider",
            "configured": gw.bedrock.is_some(),
            "region": gw.bedrock.as_ref().map(|b| b.region.clone()),
        },
        {
            "id": "bedrock-agent",
            "object": "provider",
            "configured": gw.bedrock_agent.is_some(),
            "region": gw.bedrock_agent.as_ref().map(|b| b.region.clone()),
        },
    ]);
    json_response(200, json!({"object": "list", "data": data}))
}

/// `GET /inference-profiles`: the gateway routes by model id and has no profiles to list.
pub fn inference_profiles() -> ClientResponse {
    json_response(200, json!({"inferenceProfileSummaries": []}))
}

/// `GET /v1/models`: the catalog, limited to what the key may use.
pub fn models(gw: &Gateway, client: Option<&crate::auth::ClientKey>) -> ClientResponse {
    let mut list = gw.catalog.list_value();
    if let (Some(k), Some(data)) = (client, list.get_mut("data").and_then(|d| d.as_array_mut())) {
        data.retain(|m| {
            let id = m.get("id").and_then(|i| i.as_str()).unwrap_or_default();
            let resolved = gw.router.aliases().get(id).map_or(id, String::as_str);
            k.model_allowed(id, resolved)
        });
    }
    json_response(200, list)
}

/// `GET /v1/models/{id}`: the catalog entry, when the key may use the model (as in
/// `/v1/models`, a model the key may not use does not exist for it).
pub fn model(
    gw: &Gateway,
    id: &str,
    client: Option<&crate::auth::ClientKey>,
) -> Result<ClientResponse, GatewayError> {
    let resolved = gw.router.aliases().get(id).map_or(id, String::as_str);
    match gw.catalog.get(id) {
        Some(entry) if client.is_none_or(|k| k.model_allowed(id, resolved)) => {
            Ok(json_response(200, Catalog::model_value(entry)))
        }
        _ => Err(GatewayError::model_not_found(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        assert_eq!(classify("GET", "/health"), Endpoint::Health);
        assert_eq!(
            classify("GET", "/v1/chat/completions/health"),
            Endpoint::ChatHealth
        );
        assert_eq!(classify("GET", "/v1/models/"), Endpoint::Models);
        assert_eq!(
            classify("GET", "/v1/models/anthropic.claude-3-haiku-20240307-v1%3A0"),
            Endpoint::Model("anthropic.claude-3-haiku-20240307-v1:0".into())
        );
        assert_eq!(
            classify("POST", "/v1/chat/completions"),
            Endpoint::Door(Door::Chat)
        );
        assert_eq!(classify("GET", "/v1/providers"), Endpoint::Providers);
        assert_eq!(
            classify("POST", "/v1/messages"),
            Endpoint::Door(Door::Messages)
        );
        assert_eq!(
            classify("POST", "/v1/messages/count_tokens/"),
            Endpoint::Door(Door::CountTokens)
        );
        assert_eq!(classify("GET", "/v1/messages"), Endpoint::WrongMethod);
        assert_eq!(
            classify("POST", "/v1/responses/"),
            Endpoint::Door(Door::Responses)
        );
        assert_eq!(classify("GET", "/v1/responses"), Endpoint::WrongMethod);
        // Stored responses do not exist here: retrieving one is an unknown endpoint.
        assert_eq!(classify("GET", "/v1/responses/resp_1"), Endpoint::Unknown);
        assert_eq!(door_of_path("/v1/responses/resp_1"), Door::Responses);
        assert_eq!(
            classify(
                "POST",
                "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream"
            ),
            Endpoint::Bedrock {
                op: BedrockOp::InvokeStream,
                model: "us.anthropic.claude-sonnet-4-20250514-v1:0".into()
            }
        );
        assert_eq!(
            classify(
                "POST",
                "/model/arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-3-haiku-v1:0/converse"
            ),
            Endpoint::Bedrock {
                op: BedrockOp::Converse,
                model: "arn:aws:bedrock:us-east-1:1:inference-profile/us.anthropic.claude-3-haiku-v1:0"
                    .into()
            }
        );
        assert_eq!(classify("POST", "/model/x/explode"), Endpoint::Unknown);
        assert_eq!(classify("GET", "/model/x/invoke"), Endpoint::WrongMethod);
        assert_eq!(
            classify("GET", "/inference-profiles"),
            Endpoint::InferenceProfiles
        );
        assert_eq!(
            classify("GET", "/v1/chat/completions"),
            Endpoint::WrongMethod
        );
        assert_eq!(classify("POST", "/v1/files"), Endpoint::Files);
        assert_eq!(classify("GET", "/v1/files/file-1/content"), Endpoint::Files);
        assert_eq!(classify("GET", "/v2/other"), Endpoint::Unknown);
        assert!(!Endpoint::Health.needs_auth() && Endpoint::Models.needs_auth());
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("a%3Ab%2fc%zz"), "a:b/c%zz");
        assert_eq!(split_path("/v1/x?a=1"), ("/v1/x", Some("a=1")));
    }
}
