//! Translating upstream answers (and failures) into the caller's target format.

use crate::anthropic;
use crate::converse;
use crate::detect::Format;
use crate::error::GatewayError;
use crate::fields;
use crate::ir::{ChatResponse, Usage};
use crate::openai;
use crate::plan::ResponsePlan;
use crate::route::UpstreamApi;
use crate::titan;
use crate::upstream_error;
use serde_json::Value;

/// A complete response to send to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientResponse {
    /// HTTP status.
    pub status: u16,
    /// Headers to set (content-type, retry-after, …).
    pub headers: Vec<(&'static str, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Token usage of the answer, when there was one.
    pub usage: Option<Usage>,
}

/// The error body in the caller's format. Every shape carries the OpenAI `error` object;
/// Claude callers also get Anthropic's `"type":"error"`, Titan callers Bedrock's `message`.
pub fn error_body(err: &GatewayError, target: Format) -> Vec<u8> {
    let mut v = err.to_value();
    if let Some(obj) = v.as_object_mut() {
        match target {
            Format::Openai => {}
            Format::BedrockClaude => {
                obj.insert("type".into(), Value::String("error".into()));
            }
            Format::BedrockTitan => {
                obj.insert("message".into(), Value::String(err.message.clone()));
            }
        }
    }
    serde_json::to_vec(&v).unwrap_or_else(|_| err.to_json())
}

/// A complete error response in the caller's format.
pub fn error_response(err: &GatewayError, target: Format) -> ClientResponse {
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(s) = err.retry_after {
        headers.push(("retry-after", s.to_string()));
    }
    ClientResponse {
        status: err.status,
        headers,
        body: error_body(err, target),
        usage: None,
    }
}

/// Decodes a successful upstream body into the IR.
pub fn decode_upstream(plan: &ResponsePlan, body: &[u8]) -> Result<ChatResponse, GatewayError> {
    if plan.api == UpstreamApi::BedrockAgent {
        // InvokeAgent always answers with an event stream, even for a non-streaming client.
        return crate::agent::decode_response(body);
    }
    let obj = fields::parse_object(body).map_err(|_| {
        GatewayError::bad_gateway(format!(
            "The upstream ({}) answered with a body that is not a JSON object.",
            plan.api.as_str()
        ))
    })?;
    match plan.api {
        UpstreamApi::OpenaiChat => openai::decode_response(&obj),
        UpstreamApi::BedrockAnthropic => anthropic::decode_response(&obj, plan.structured),
        UpstreamApi::BedrockTitan => titan::decode_response(&obj),
        UpstreamApi::BedrockConverse => converse::decode_response(&obj, plan.structured),
        UpstreamApi::BedrockAgent => crate::agent::decode_response(body),
    }
}

/// Encodes an IR response in the target format.
pub fn encode_for_target(plan: &ResponsePlan, resp: &ChatResponse) -> Value {
    match plan.target {
        Format::Openai => openai::encode_response(resp, &plan.meta),
        Format::BedrockClaude => anthropic::encode_response(resp, &plan.meta.id, &plan.meta.model),
        Format::BedrockTitan => titan::encode_response(resp),
    }
}

/// Translates a complete (buffered) upstream response. `error_type` is Bedrock's
/// `x-amzn-errortype` header.
pub fn translate_buffered(
    plan: &ResponsePlan,
    status: u16,
    error_type: Option<&str>,
    body: &[u8],
) -> ClientResponse {
    if !(200..300).contains(&status) {
        let err = match plan.api {
            UpstreamApi::OpenaiChat => upstream_error::from_openai(status, body),
            _ => upstream_error::from_bedrock(status, error_type, body),
        };
        return error_response(&err, plan.target);
    }
    let translated = decode_upstream(plan, body).and_then(|resp| {
        serde_json::to_vec(&encode_for_target(plan, &resp))
            .map(|b| (b, resp.usage))
            .map_err(|e| GatewayError::internal(format!("Could not serialize the response: {e}")))
    });
    match translated {
        Ok((body, usage)) => {
            let mut headers = vec![("content-type", "application/json".to_string())];
            headers.extend(plan.extra_headers.iter().cloned());
            ClientResponse {
                status: 200,
                headers,
                body,
                usage: Some(usage),
            }
        }
        Err(err) => error_response(&err, plan.target),
    }
}

/// Usage in a successful upstream body that is passed through unchanged.
pub fn usage_of(api: UpstreamApi, body: &[u8]) -> Option<Usage> {
    /// Only `usage` is kept; every other field is skipped without building values.
    #[derive(serde::Deserialize)]
    struct UsageOnly {
        usage: Option<Value>,
    }
    match api {
        UpstreamApi::OpenaiChat | UpstreamApi::BedrockAnthropic | UpstreamApi::BedrockConverse => {
            let u = serde_json::from_slice::<UsageOnly>(body).ok()?.usage?;
            Some(match api {
                UpstreamApi::OpenaiChat => openai::parse_usage(&u),
                UpstreamApi::BedrockAnthropic => anthropic::parse_usage(&u),
                _ => converse::parse_usage(&u),
            })
        }
        UpstreamApi::BedrockTitan => {
            let v: Value = serde_json::from_slice(body).ok()?;
            titan::decode_response(v.as_object()?).ok().map(|r| r.usage)
        }
        UpstreamApi::BedrockAgent => None,
    }
}
