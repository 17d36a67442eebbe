//! Bedrock's own runtime API as clients call it (`/model/{id}/invoke…`, `/converse…`): bodies
//! and answers are relayed unchanged, so the only thing this format encodes is its error
//! envelope — AWS's `{"message": …}` with the `x-amzn-ErrorType` header the AWS SDKs raise
//! their exception classes from.

use super::bedrock::{EventStreamDecoder, UsageFrames};
use super::{ClientCodec, DecodeContext, Format};
use super::{EncodeContext, Encoded, ResponseContext, UpstreamCodec};
use crate::error::GatewayError;
use crate::ir::Usage;
use crate::ir::{ChatRequest, ChatResponse, ResponseMeta};
use crate::json::Object;
use crate::stream::{NullEncoder, StreamDecoder, StreamEncoder};
use serde_json::json;

/// The operations of the Bedrock runtime API the gateway serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BedrockOp {
    /// `POST /model/{id}/invoke`.
    Invoke,
    /// `POST /model/{id}/invoke-with-response-stream`.
    InvokeStream,
    /// `POST /model/{id}/converse`.
    Converse,
    /// `POST /model/{id}/converse-stream`.
    ConverseStream,
    /// `POST /model/{id}/count-tokens`.
    CountTokens,
}

impl BedrockOp {
    /// The operation for the last path segment.
    pub fn parse(segment: &str) -> Option<BedrockOp> {
        Some(match segment {
            "invoke" => BedrockOp::Invoke,
            "invoke-with-response-stream" => BedrockOp::InvokeStream,
            "converse" => BedrockOp::Converse,
            "converse-stream" => BedrockOp::ConverseStream,
            "count-tokens" => BedrockOp::CountTokens,
            _ => return None,
        })
    }

    /// The last path segment.
    pub fn as_str(self) -> &'static str {
        match self {
            BedrockOp::Invoke => "invoke",
            BedrockOp::InvokeStream => "invoke-with-response-stream",
            BedrockOp::Converse => "converse",
            BedrockOp::ConverseStream => "converse-stream",
            BedrockOp::CountTokens => "count-tokens",
        }
    }

    /// Whether the answer is an event stream.
    pub fn streams(self) -> bool {
        matches!(self, BedrockOp::InvokeStream | BedrockOp::ConverseStream)
    }
}

/// The AWS error name and HTTP status for a gateway error.
pub fn error_name(err: &GatewayError) -> (&'static str, u16) {
    match err.status {
        // AWS answers a bad or missing credential with 403 UnrecognizedClientException.
        401 => ("UnrecognizedClientException", 403),
        403 => ("AccessDeniedException", 403),
        404 => ("ResourceNotFoundException", 404),
        405 => ("UnknownOperationException", 404),
        400 | 413 | 422 => ("ValidationException", 400),
        429 => ("ThrottlingException", 429),
        503 => ("ServiceUnavailableException", 503),
        504 => ("ModelTimeoutException", 408),
        s if (400..500).contains(&s) => ("ValidationException", 400),
        _ => ("InternalServerException", 500),
    }
}

/// The Bedrock runtime API's client side (errors only; everything else is relayed).
pub struct BedrockRuntime;

impl ClientCodec for BedrockRuntime {
    fn format(&self) -> Format {
        Format::BedrockRuntime
    }

    fn decode_request(
        &self,
        _obj: &Object,
        _ctx: DecodeContext,
    ) -> Result<ChatRequest, GatewayError> {
        Err(GatewayError::internal(
            "Bedrock runtime requests are relayed, not decoded.",
        ))
    }

    fn encode_response(&self, _resp: &ChatResponse, _meta: &ResponseMeta) -> Vec<u8> {
        Vec::new()
    }

    fn stream_encoder(&self, _meta: &ResponseMeta, _include_usage: bool) -> Box<dyn StreamEncoder> {
        // Bedrock runtime answers are relayed frame for frame: nothing is encoded.
        Box::new(NullEncoder)
    }

    fn error_body(&self, err: &GatewayError) -> Vec<u8> {
        serde_json::to_vec(&json!({ "message": err.message })).unwrap_or_default()
    }

    fn error_status(&self, err: &GatewayError) -> u16 {
        error_name(err).1
    }

    fn error_headers(&self, err: &GatewayError) -> Vec<(&'static str, String)> {
        vec![("x-amzn-errortype", error_name(err).0.to_string())]
    }
}

impl UpstreamCodec for BedrockRuntime {
    fn format(&self) -> Format {
        Format::BedrockRuntime
    }

    fn encode_request(
        &self,
        _req: &ChatRequest,
        _ctx: &EncodeContext<'_>,
    ) -> Result<Encoded, GatewayError> {
        Err(GatewayError::internal(
            "Bedrock runtime requests are relayed, not encoded.",
        ))
    }

    fn decode_response(
        &self,
        _body: &[u8],
        _ctx: ResponseContext,
    ) -> Result<ChatResponse, GatewayError> {
        Err(GatewayError::internal(
            "Bedrock runtime answers are relayed, not decoded.",
        ))
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        // Converse answers carry usage in the body; InvokeModel answers in headers.
        crate::json::usage_field(body).map(|u| super::bedrock::token_usage(&u))
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(EventStreamDecoder::new(UsageFrames::default()))
    }
}

/// Usage from InvokeModel's `X-Amzn-Bedrock-*-Token-Count` response headers (input excludes
/// cache reads and writes).
pub fn usage_from_headers(header: &dyn Fn(&str) -> Option<String>) -> Option<Usage> {
    let n = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
    let input = n("x-amzn-bedrock-input-token-count")?;
    Some(Usage::from_uncached(
        input,
        n("x-amzn-bedrock-output-token-count").unwrap_or(0),
        n("x-amzn-bedrock-cache-read-input-token-count").unwrap_or(0),
        n("x-amzn-bedrock-cache-write-input-token-count").unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_and_errors() {
        for op in [
            BedrockOp::Invoke,
            BedrockOp::InvokeStream,
            BedrockOp::Converse,
            BedrockOp::ConverseStream,
            BedrockOp::CountTokens,
        ] {
            assert_eq!(BedrockOp::parse(op.as_str()), Some(op));
        }
        assert_eq!(BedrockOp::parse("invoke-model"), None);
        assert_eq!(
            error_name(&GatewayError::unauthorized("x")),
            ("UnrecognizedClientException", 403)
        );
        assert_eq!(
            error_name(&GatewayError::model_not_allowed("m")),
            ("AccessDeniedException", 403)
        );
        assert_eq!(
            error_name(&GatewayError::model_not_found("m")),
            ("ResourceNotFoundException", 404)
        );
        assert_eq!(
            error_name(&GatewayError::gateway_timeout("x")),
            ("ModelTimeoutException", 408)
        );
    }
}
