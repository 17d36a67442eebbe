//! OpenAI Responses: what `/v1/responses` clients (the Codex CLI, the Agents SDK, the SDKs'
//! `client.responses`) send and get back, and OpenAI's own `/responses`, to which the door
//! relays requests for OpenAI models as sent.
//!
//! Stateless: nothing is stored, so `previous_response_id`, `conversation` and
//! `background` are refused for every other upstream (see [`request`]).

pub mod reasoning;
pub mod request;
pub mod response;
pub mod stream;
pub mod tools;

use super::{
    ClientCodec, DecodeContext, EncodeContext, Encoded, Format, RelayContext, ResponseContext,
    UpstreamCodec,
};
use crate::error::GatewayError;
use crate::ir::{ChatRequest, ChatResponse, ResponseMeta, Usage};
use crate::json::Object;
use crate::stream::{StreamDecoder, StreamEncoder};

pub use request::decode_request;
pub use response::{decode_response, encode_response, parse_usage, usage_value};

/// The Responses codec.
pub struct Responses;

impl ClientCodec for Responses {
    fn format(&self) -> Format {
        Format::Responses
    }

    fn decode_request(
        &self,
        obj: &Object,
        ctx: DecodeContext,
    ) -> Result<ChatRequest, GatewayError> {
        decode_request(obj, ctx)
    }

    fn encode_response(&self, resp: &ChatResponse, meta: &ResponseMeta) -> Vec<u8> {
        serde_json::to_vec(&encode_response(resp, meta)).unwrap_or_default()
    }

    fn stream_encoder(&self, meta: &ResponseMeta, _include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(stream::ResponsesStreamEncoder::new(meta.clone()))
    }
}

impl UpstreamCodec for Responses {
    fn format(&self) -> Format {
        Format::Responses
    }

    fn encode_request(
        &self,
        _req: &ChatRequest,
        _ctx: &EncodeContext<'_>,
    ) -> Result<Encoded, GatewayError> {
        // Only the Responses door goes to OpenAI's `/responses`, and it relays (plan::route).
        Err(GatewayError::internal(
            "OpenAI's Responses API only takes Responses requests relayed as sent.",
        ))
    }

    fn decode_response(
        &self,
        body: &[u8],
        _ctx: ResponseContext,
    ) -> Result<ChatResponse, GatewayError> {
        decode_response(&crate::json::parse_upstream(body, "openai_responses")?)
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        crate::json::usage_field(body).map(|u| parse_usage(&u))
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::<stream::ResponsesStreamDecoder>::default()
    }

    fn relay(&self, mut obj: Object, ctx: &RelayContext<'_>) -> Result<Encoded, GatewayError> {
        obj.insert("model".into(), serde_json::json!(ctx.model_id));
        Ok(Encoded::body(super::to_body(obj, ctx.raw)?))
    }
}
