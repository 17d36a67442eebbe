//! Front doors: the client-facing APIs the gateway serves. A door fixes the operation, the
//! format requests arrive in (or says to detect it), the format answers go out in, and the
//! error envelope its clients understand.
//!
//! Adding a door means a variant here, its row in each method below, and its path in
//! `endpoints::classify`.

use crate::formats::bedrock_runtime::BedrockOp;
use crate::formats::Format;
use crate::ir::Operation;

/// A client-facing API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Door {
    /// `POST /v1/chat/completions`: OpenAI, Bedrock-Claude or Bedrock-Titan bodies (detected),
    /// answered as OpenAI unless `target_format` says otherwise.
    Chat,
    /// `POST /v1/messages`: the Anthropic Messages API (Claude Code, the anthropic SDKs).
    Messages,
    /// `POST /v1/messages/count_tokens`: Anthropic's token counting.
    CountTokens,
    /// `POST /v1/responses`: the OpenAI Responses API, stateless (Codex, the Agents SDK).
    Responses,
    /// `POST /model/{modelId}/{operation}`: Bedrock's own runtime API (AWS SDKs, Claude Code's
    /// Bedrock mode), relayed unchanged and re-signed with the gateway's credentials.
    Bedrock(BedrockOp),
    /// `POST /v1/embeddings`: OpenAI's Embeddings API, for OpenAI and Bedrock embedding models.
    Embeddings,
}

impl Door {
    /// Short name for metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Door::Chat => "chat",
            Door::Messages => "messages",
            Door::CountTokens => "count_tokens",
            Door::Responses => "responses",
            Door::Bedrock(_) => "bedrock",
            Door::Embeddings => "embeddings",
        }
    }

    /// What the door asks of a model.
    pub fn operation(self) -> Operation {
        match self {
            Door::Chat | Door::Messages | Door::Responses => Operation::Chat,
            Door::CountTokens => Operation::CountTokens,
            Door::Bedrock(_) => Operation::Native,
            Door::Embeddings => Operation::Embeddings,
        }
    }

    /// The format of request bodies; `None` when it is detected from the body.
    pub fn input(self) -> Option<Format> {
        match self {
            Door::Chat => None,
            Door::Messages | Door::CountTokens => Some(Format::Anthropic),
            Door::Responses => Some(Format::Responses),
            Door::Bedrock(_) => Some(Format::BedrockRuntime),
            Door::Embeddings => Some(Format::OpenaiEmbeddings),
        }
    }

    /// The format answers go out in unless the client asks for another.
    pub fn default_target(self) -> Format {
        match self {
            Door::Chat => Format::OpenaiChat,
            Door::Messages | Door::CountTokens => Format::Anthropic,
            Door::Responses => Format::Responses,
            Door::Bedrock(_) => Format::BedrockRuntime,
            Door::Embeddings => Format::OpenaiEmbeddings,
        }
    }

    /// Whether clients may choose the answer format (`?target_format=`, `x-target-format`).
    pub fn target_selectable(self) -> bool {
        matches!(self, Door::Chat)
    }
}
