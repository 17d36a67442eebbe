//! OpenAI Chat Completions: what `/v1/chat/completions` clients send and get back, and what
//! OpenAI(-compatible) upstreams speak.

pub mod request;
pub mod response;
pub mod stream;

use super::{
    ClientCodec, DecodeContext, EncodeContext, Encoded, Format, RelayContext, ResponseContext,
    UpstreamCodec,
};
use crate::error::GatewayError;
use crate::ir::{ChatRequest, ChatResponse, ResponseMeta, Usage};
use crate::json::Object;
use crate::stream::{StreamDecoder, StreamEncoder};

pub use request::{decode_request, encode_request, text_of};
pub use response::{
    decode_response, encode_response, finish_reason, parse_finish_reason, parse_usage, usage_value,
};

/// The OpenAI Chat Completions codec.
pub struct OpenaiChat;

impl ClientCodec for OpenaiChat {
    fn format(&self) -> Format {
        Format::OpenaiChat
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

    fn stream_encoder(&self, meta: &ResponseMeta, include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(stream::OpenaiStreamEncoder::new(
            meta.clone(),
            include_usage,
        ))
    }
}

impl UpstreamCodec for OpenaiChat {
    fn format(&self) -> Format {
        Format::OpenaiChat
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<Encoded, GatewayError> {
        let value = encode_request(req, ctx.model_id)?;
        Ok(Encoded {
            body: super::json_body(&value, ctx.raw)?,
            structured: false,
            notes: Vec::new(),
            unchanged: false,
        })
    }

    fn decode_response(
        &self,
        body: &[u8],
        _ctx: ResponseContext,
    ) -> Result<ChatResponse, GatewayError> {
        decode_response(&crate::json::parse_upstream(body, "openai_chat")?)
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        crate::json::usage_field(body).map(|u| parse_usage(&u))
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::<stream::OpenaiStreamDecoder>::default()
    }

    fn relay(&self, mut obj: Object, ctx: &RelayContext<'_>) -> Result<Encoded, GatewayError> {
        obj.insert("model".into(), serde_json::json!(ctx.model_id));
        if ctx.stream {
            // Ask for the usage chunk so every stream is accounted for; it is dropped before
            // the client when the client did not ask for it.
            let opts = obj
                .entry("stream_options")
                .or_insert_with(|| serde_json::json!({}));
            match opts.as_object_mut() {
                Some(o) => {
                    o.insert("include_usage".into(), serde_json::json!(true));
                }
                None => *opts = serde_json::json!({"include_usage": true}),
            }
        }
        Ok(Encoded::body(super::to_body(obj, ctx.raw)?))
    }
}
