//! Bedrock Converse: every Bedrock family that is neither Claude nor Titan Text goes through
//! Converse / ConverseStream.

pub mod request;
pub mod response;
pub mod stream;

use super::bedrock::EventStreamDecoder;
use super::{EncodeContext, Encoded, Format, ResponseContext, UpstreamCodec};
use crate::error::GatewayError;
use crate::ir::{ChatRequest, ChatResponse, Usage};
use crate::stream::StreamDecoder;

pub use request::encode_request;
pub use response::{decode_response, parse_stop_reason, parse_usage};

/// The Bedrock Converse codec (an upstream API only).
pub struct Converse;

impl UpstreamCodec for Converse {
    fn format(&self) -> Format {
        Format::Converse
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<Encoded, GatewayError> {
        let (body, structured) = encode_request(req, ctx.capabilities, ctx.raw)?;
        Ok(Encoded {
            body,
            structured,
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
            &crate::json::parse_upstream(body, "bedrock_converse")?,
            ctx.structured,
        )
    }

    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        crate::json::usage_field(body).map(|u| parse_usage(&u))
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(EventStreamDecoder::new(stream::ConverseFrames::default()))
    }
}
