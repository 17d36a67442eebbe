//! Anthropic Messages: the body Claude takes on Bedrock (InvokeModel with
//! `anthropic_version`), the Claude-format body detected on `/v1/chat/completions`, and the
//! `target_format=bedrock_claude` answers.

pub mod request;
pub mod response;
pub mod stream;

use super::bedrock::EventStreamDecoder;
use super::{
    ClientCodec, DecodeContext, EncodeContext, Encoded, Format, ResponseContext, UpstreamCodec,
};
use crate::error::GatewayError;
use crate::ir::{ChatRequest, ChatResponse, ResponseMeta, Usage};
use crate::json::Object;
use crate::stream::{StreamDecoder, StreamEncoder};
use serde_json::Value;

pub use request::{
    decode_request, effort_budget, encode_request, EncodeOptions, BEDROCK_ANTHROPIC_VERSION,
};
pub use response::{
    decode_response, encode_response, parse_stop_reason, parse_usage, stop_reason_str, usage_value,
};

/// The Anthropic Messages codec.
pub struct Anthropic;

impl ClientCodec for Anthropic {
    fn format(&self) -> Format {
        Format::Anthropic
    }

    fn decode_request(
        &self,
        obj: &Object,
        _ctx: DecodeContext,
    ) -> Result<ChatRequest, GatewayError> {
        decode_request(obj)
    }

    fn encode_response(&self, resp: &ChatResponse, meta: &ResponseMeta) -> Vec<u8> {
        serde_json::to_vec(&encode_response(resp, &meta.id, &meta.model)).unwrap_or_default()
    }

    fn stream_encoder(&self, meta: &ResponseMeta, _include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(stream::AnthropicStreamEncoder::new(meta.clone()))
    }

    fn error_body(&self, err: &GatewayError) -> Vec<u8> {
        // The OpenAI error object plus Anthropic's `"type": "error"`.
        let mut v = err.to_value();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("type".into(), Value::String("error".into()));
        }
        serde_json::to_vec(&v).unwrap_or_else(|_| err.to_json())
    }
}

impl UpstreamCodec for Anthropic {
    fn format(&self) -> Format {
        Format::Anthropic
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<Encoded, GatewayError> {
        let body = encode_request(
            req,
            EncodeOptions {
                default_max_tokens: ctx.default_max_tokens,
            },
        )?;
        Ok(Encoded {
            body,
            structured: req.response_format.is_some(),
        })
    }

    fn decode_response(
        &self,
        body: &[u8],
        ctx: ResponseContext,
    ) -> Result<ChatResponse, GatewayError> {
        decode_response(
            &crate::json::parse_upstream(body, "bedrock_anthropic")?,
            ctx.structured,
        )
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        crate::json::usage_field(body).map(|u| parse_usage(&u))
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(EventStreamDecoder::new(stream::AnthropicFrames::default()))
    }
}
