//! Anthropic Messages: the body Claude takes on Bedrock (InvokeModel with
//! `anthropic_version`), the Claude-format body detected on `/v1/chat/completions`, and the
//! `target_format=bedrock_claude` answers.

pub mod betas;
pub mod count_tokens;
pub mod errors;
pub mod limits;
pub mod relay;
pub mod request;
pub mod response;
pub mod stream;

use super::bedrock::EventStreamDecoder;
use super::{
    ClientCodec, DecodeContext, EncodeContext, Encoded, Format, RelayContext, ResponseContext,
    UpstreamCodec,
};
use crate::error::GatewayError;
use crate::ir::{ChatRequest, ChatResponse, ResponseMeta, Usage};
use crate::json::Object;
use crate::stream::{StreamDecoder, StreamEncoder};

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
        ctx: DecodeContext,
    ) -> Result<ChatRequest, GatewayError> {
        decode_request(obj, ctx)
    }

    fn encode_response(&self, resp: &ChatResponse, meta: &ResponseMeta) -> Vec<u8> {
        serde_json::to_vec(&encode_response(resp, &meta.id, &meta.model)).unwrap_or_default()
    }

    fn stream_encoder(&self, meta: &ResponseMeta, _include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(stream::AnthropicStreamEncoder::new(meta.clone()))
    }

    fn error_body(&self, err: &GatewayError) -> Vec<u8> {
        errors::error_body(err)
    }

    fn error_status(&self, err: &GatewayError) -> u16 {
        errors::status(err)
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
                raw: ctx.raw,
            },
        )?;
        Ok(Encoded {
            body,
            structured: req.response_format.is_some(),
            notes: Vec::new(),
            unchanged: false,
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

    fn relay(&self, obj: Object, ctx: &RelayContext<'_>) -> Result<Encoded, GatewayError> {
        let (obj, notes) = relay::relay_body(
            obj,
            &relay::RelayContext {
                model_id: ctx.model_id,
                default_max_tokens: ctx.default_max_tokens,
                header_betas: ctx.header_betas,
                beta_rules: ctx.beta_rules,
            },
        );
        Ok(Encoded {
            body: super::to_body(obj, ctx.raw)?,
            structured: false,
            notes,
            unchanged: false,
        })
    }
}
