//! Translating upstream answers (and failures) into the caller's target format.

use crate::error::GatewayError;
use crate::formats::{self, Format, Provider, ResponseContext};
use crate::ir::{ChatResponse, Operation, Usage};
use crate::plan::ResponsePlan;
use crate::upstream_error;

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

/// The error body in the caller's format (the client codec's envelope).
pub fn error_body(err: &GatewayError, target: Format) -> Vec<u8> {
    match formats::client(target) {
        Some(c) => c.error_body(err),
        None => err.to_json(),
    }
}

/// A complete error response in the caller's format.
pub fn error_response(err: &GatewayError, target: Format) -> ClientResponse {
    let mut headers = vec![("content-type", "application/json".to_string())];
    if let Some(s) = err.retry_after {
        headers.push(("retry-after", s.to_string()));
    }
    if let Some(c) = formats::client(target) {
        headers.extend(c.error_headers(err));
    }
    ClientResponse {
        status: formats::client(target).map_or(err.status, |c| c.error_status(err)),
        headers,
        body: error_body(err, target),
        usage: None,
    }
}

/// Decodes a successful upstream body into the IR.
pub fn decode_upstream(plan: &ResponsePlan, body: &[u8]) -> Result<ChatResponse, GatewayError> {
    formats::upstream(plan.upstream).decode_response(
        body,
        ResponseContext {
            structured: plan.structured,
        },
    )
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
        let err = match plan.upstream.provider() {
            Provider::Openai => upstream_error::from_openai(status, body),
            Provider::Bedrock => upstream_error::from_bedrock(status, error_type, body),
        };
        return error_response(&err, plan.target);
    }
    if plan.operation == Operation::CountTokens {
        return match formats::anthropic::count_tokens::parse_answer(body) {
            Ok(n) => ClientResponse {
                status: 200,
                headers: vec![("content-type", "application/json".to_string())],
                body: formats::anthropic::count_tokens::answer(n),
                usage: None,
            },
            Err(err) => error_response(&err, plan.target),
        };
    }
    let translated = formats::client_or_error(plan.target).and_then(|client| {
        let resp = decode_upstream(plan, body)?;
        Ok((client.encode_response(&resp, &plan.meta), resp.usage))
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
pub fn usage_of(upstream: Format, body: &[u8]) -> Option<Usage> {
    formats::upstream(upstream).usage_of(body)
}
