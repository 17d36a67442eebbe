//! Wire formats: one module per format, each self-contained (its wire types, request decoder
//! into the IR, request encoder out of it, response and stream codecs, error envelope), all
//! behind the [`Codec`] trait. Formats import the IR and the shared [`bedrock`] helpers, never
//! each other.
//!
//! Adding a format means one module here and one arm in [`codec`].

pub mod agent;
pub mod anthropic;
pub mod bedrock;
pub mod bedrock_runtime;
pub mod cohere_embed;
pub mod converse;
pub mod openai_chat;
pub mod openai_embeddings;
pub mod responses;
pub mod titan;
pub mod titan_embed;

use crate::error::GatewayError;
use crate::ir::{ChatRequest, ChatResponse, ResponseMeta, Usage};
use crate::json::Object;
pub use crate::route::Provider;
use crate::stream::{StreamDecoder, StreamEncoder};
use serde::{Deserialize, Serialize};

/// A wire format. The same name is used for a format wherever it appears: as what a client
/// sends, as what a client gets back, and as what an upstream API speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    /// OpenAI Chat Completions (`/v1/chat/completions`).
    #[serde(rename = "openai_chat")]
    OpenaiChat,
    /// Anthropic Messages: the Messages API, and Claude on Bedrock (InvokeModel with
    /// `anthropic_version`).
    #[serde(rename = "anthropic", alias = "bedrock_anthropic")]
    Anthropic,
    /// Amazon Titan Text on Bedrock (InvokeModel with `inputText`).
    #[serde(rename = "titan", alias = "bedrock_titan")]
    Titan,
    /// Bedrock Converse / ConverseStream.
    #[serde(rename = "converse", alias = "bedrock_converse")]
    Converse,
    /// Bedrock Agents InvokeAgent (bedrock-agent-runtime).
    #[serde(rename = "agent", alias = "bedrock_agent")]
    Agent,
    /// OpenAI Responses (`/v1/responses`), client side and OpenAI's own `/responses`.
    #[serde(rename = "responses")]
    Responses,
    /// Bedrock's runtime API as clients call it (`/model/{id}/invoke…`), relayed unchanged.
    #[serde(rename = "bedrock_runtime")]
    BedrockRuntime,
    /// OpenAI Embeddings (`/v1/embeddings`).
    #[serde(rename = "openai_embeddings")]
    OpenaiEmbeddings,
    /// Titan Text Embeddings on Bedrock (InvokeModel, one text per call).
    #[serde(rename = "titan_embed")]
    TitanEmbed,
    /// Cohere Embed on Bedrock (InvokeModel, up to 96 texts per call).
    #[serde(rename = "cohere_embed")]
    CohereEmbed,
}

impl Format {
    /// The format's name in logs and configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::OpenaiChat => "openai_chat",
            Format::Anthropic => "anthropic",
            Format::Titan => "titan",
            Format::Converse => "converse",
            Format::Agent => "agent",
            Format::Responses => "responses",
            Format::BedrockRuntime => "bedrock_runtime",
            Format::OpenaiEmbeddings => "openai_embeddings",
            Format::TitanEmbed => "titan_embed",
            Format::CohereEmbed => "cohere_embed",
        }
    }

    /// The name `?target_format=` uses for this format (kept from the first release).
    pub fn target_name(self) -> &'static str {
        match self {
            Format::OpenaiChat => "openai",
            Format::Anthropic => "bedrock_claude",
            Format::Titan => "bedrock_titan",
            Format::Converse => "converse",
            Format::Agent => "agent",
            Format::Responses => "responses",
            Format::BedrockRuntime => "bedrock_runtime",
            Format::OpenaiEmbeddings => "openai_embeddings",
            Format::TitanEmbed => "titan_embed",
            Format::CohereEmbed => "cohere_embed",
        }
    }

    /// Parses a `target_format` value (client-facing formats only).
    pub fn parse_target(value: &str) -> Result<Format, GatewayError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "openai" | "openai_chat" | "" => Ok(Format::OpenaiChat),
            "bedrock_claude" | "claude" | "anthropic" => Ok(Format::Anthropic),
            "bedrock_titan" | "titan" => Ok(Format::Titan),
            other => Err(GatewayError::invalid(
                "target_format",
                format!("Unknown target_format `{other}`; expected openai, bedrock_claude or bedrock_titan."),
            )),
        }
    }

    /// The provider whose API speaks this format upstream.
    pub fn provider(self) -> Provider {
        match self {
            Format::OpenaiChat | Format::Responses | Format::OpenaiEmbeddings => Provider::Openai,
            _ => Provider::Bedrock,
        }
    }
}

/// What a request decoder needs besides the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeContext {
    /// The request goes to Bedrock: what Bedrock cannot take (remote image URLs, tool-call
    /// arguments that are not JSON objects) is refused here, where the error can name the
    /// client's own field.
    pub bedrock: bool,
    /// The request came through the Messages API door (`max_tokens` is required there).
    pub messages_api: bool,
    /// The body goes upstream as sent (the upstream speaks the client's format): decoding only
    /// validates it, and what only the upstream can judge is left to it.
    pub relayed: bool,
}

/// What a request encoder needs besides the IR.
#[derive(Debug, Clone, Copy)]
pub struct EncodeContext<'a> {
    /// The model id sent upstream (aliases resolved).
    pub model_id: &'a str,
    /// `max_tokens` to send when the client set none and the format requires one.
    pub default_max_tokens: u32,
    /// What the model accepts.
    pub capabilities: crate::capabilities::Capabilities,
    /// The client's body and its long texts, which are put into the encoded body from there
    /// (see [`crate::json::splice`]).
    pub raw: crate::json::Spliced<'a>,
}

/// An encoded upstream request body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encoded {
    /// The body bytes (empty when `unchanged`).
    pub body: Vec<u8>,
    /// Whether the client's own bytes go upstream as they are (no copy is made of them).
    pub unchanged: bool,
    /// Whether the gateway forced its structured-output tool (its input is the answer).
    pub structured: bool,
    /// What was dropped or changed on the way (for the debug log).
    pub notes: Vec<String>,
}

impl Encoded {
    /// A body with nothing forced and nothing to note.
    pub fn body(body: Vec<u8>) -> Encoded {
        Encoded {
            body,
            ..Encoded::default()
        }
    }

    /// The client's body, sent on unchanged.
    pub fn unchanged() -> Encoded {
        Encoded {
            unchanged: true,
            ..Encoded::default()
        }
    }
}

/// What relaying a client body of an upstream's own format needs.
#[derive(Debug, Clone, Copy)]
pub struct RelayContext<'a> {
    /// The model id sent upstream (aliases resolved).
    pub model_id: &'a str,
    /// Whether the client asked for a stream.
    pub stream: bool,
    /// `max_tokens` to add when the client set none and the format requires one.
    pub default_max_tokens: u32,
    /// Anthropic beta flags from the client's `anthropic-beta` headers.
    pub header_betas: &'a [String],
    /// The per-model Anthropic beta table.
    pub beta_rules: &'a [anthropic::betas::BetaRule],
    /// The client's body and its long texts (see [`EncodeContext::raw`]).
    pub raw: crate::json::Spliced<'a>,
}

/// What a response decoder needs besides the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResponseContext {
    /// Whether the gateway forced its structured-output tool.
    pub structured: bool,
}

/// A format clients speak: their requests decode into the IR, answers encode out of it.
pub trait ClientCodec: Sync {
    /// The format.
    fn format(&self) -> Format;

    /// Decodes a client request body into the IR.
    fn decode_request(&self, obj: &Object, ctx: DecodeContext)
        -> Result<ChatRequest, GatewayError>;

    /// Encodes a complete answer.
    fn encode_response(&self, resp: &ChatResponse, meta: &ResponseMeta) -> Vec<u8>;

    /// An encoder for this format's client stream.
    fn stream_encoder(&self, meta: &ResponseMeta, include_usage: bool) -> Box<dyn StreamEncoder>;

    /// The error body a client of this format expects.
    fn error_body(&self, err: &GatewayError) -> Vec<u8> {
        err.to_json()
    }

    /// The HTTP status a client of this format gets for `err`.
    fn error_status(&self, err: &GatewayError) -> u16 {
        err.status
    }

    /// Headers an error answer carries besides `content-type` and `retry-after`.
    fn error_headers(&self, err: &GatewayError) -> Vec<(&'static str, String)> {
        let _ = err;
        Vec::new()
    }
}

/// A format an upstream API speaks: the IR encodes into its requests, its answers and streams
/// decode into the IR.
pub trait UpstreamCodec: Sync {
    /// The format.
    fn format(&self) -> Format;

    /// Encodes the IR as this format's upstream request body.
    fn encode_request(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<Encoded, GatewayError>;

    /// Decodes a successful (non-streamed) upstream answer into the IR.
    fn decode_response(
        &self,
        body: &[u8],
        ctx: ResponseContext,
    ) -> Result<ChatResponse, GatewayError>;

    /// Token usage in a successful answer that is relayed unchanged.
    fn usage_of(&self, body: &[u8]) -> Option<Usage> {
        self.decode_response(body, ResponseContext::default())
            .ok()
            .map(|r| r.usage)
    }

    /// A decoder for this format's upstream stream.
    fn stream_decoder(&self) -> Box<dyn StreamDecoder>;

    /// Relays a client body that is already in this format: only what the upstream needs
    /// changed or rejects is touched.
    fn relay(&self, obj: Object, ctx: &RelayContext<'_>) -> Result<Encoded, GatewayError> {
        let _ = (obj, ctx);
        Err(GatewayError::internal(format!(
            "The {} format does not relay client bodies.",
            self.format().as_str()
        )))
    }
}

/// Serializes a relayed body (`raw`: see [`RelayContext::raw`]).
pub(crate) fn to_body(obj: Object, raw: crate::json::Spliced<'_>) -> Result<Vec<u8>, GatewayError> {
    json_body(&serde_json::Value::Object(obj), raw)
}

/// Serializes an upstream body, with the client's long texts put in from its body.
pub(crate) fn json_body<T: serde::Serialize + ?Sized>(
    value: &T,
    raw: crate::json::Spliced<'_>,
) -> Result<Vec<u8>, GatewayError> {
    crate::json::splice::write(value, raw)
}

/// The client-side codec of a format (`None` for upstream-only formats).
pub fn client(format: Format) -> Option<&'static dyn ClientCodec> {
    match format {
        Format::OpenaiChat => Some(&openai_chat::OpenaiChat),
        Format::Anthropic => Some(&anthropic::Anthropic),
        Format::Titan => Some(&titan::Titan),
        Format::Responses => Some(&responses::Responses),
        Format::BedrockRuntime => Some(&bedrock_runtime::BedrockRuntime),
        Format::Converse
        | Format::Agent
        | Format::OpenaiEmbeddings
        | Format::TitanEmbed
        | Format::CohereEmbed => None,
    }
}

/// The upstream-side codec of a format.
pub fn upstream(format: Format) -> &'static dyn UpstreamCodec {
    match format {
        Format::OpenaiChat => &openai_chat::OpenaiChat,
        Format::Anthropic => &anthropic::Anthropic,
        Format::Titan => &titan::Titan,
        Format::Converse => &converse::Converse,
        Format::Agent => &agent::Agent,
        Format::Responses => &responses::Responses,
        Format::BedrockRuntime | Format::TitanEmbed | Format::CohereEmbed => {
            &bedrock_runtime::BedrockRuntime
        }
        Format::OpenaiEmbeddings => &openai_embeddings::OpenaiEmbeddings,
    }
}

/// The client-side codec of a format, or an internal error when it has none.
pub fn client_or_error(format: Format) -> Result<&'static dyn ClientCodec, GatewayError> {
    client(format).ok_or_else(|| {
        GatewayError::internal(format!(
            "The {} format is not a client format.",
            format.as_str()
        ))
    })
}
