//! The intermediate representation every format decodes into and encodes out of.
//!
//! Requests, responses and stream events each have one canonical shape here, so N input
//! formats and M upstream APIs need N + M codecs instead of N × M translators.

use serde_json::{Map, Value};

/// What a request asks of a model. Routing and planning depend on it: an embedding model id
/// never lands on a chat API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Generate a chat answer.
    Chat,
    /// Count the input tokens of a chat request.
    CountTokens,
    /// The upstream's own API, relayed as the client called it (the Bedrock runtime door).
    Native,
    /// Turn texts into embedding vectors.
    Embeddings,
}

impl Operation {
    /// Short name for logs and errors.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::CountTokens => "count_tokens",
            Operation::Native => "native",
            Operation::Embeddings => "embeddings",
        }
    }
}

/// Who wrote a conversation turn. System and developer text lives in [`ChatRequest::system`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The end user (tool results travel in user turns, as Bedrock requires).
    User,
    /// The model.
    Assistant,
}

/// One piece of message content.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Plain text; `cache` marks an Anthropic `cache_control` / Converse `cachePoint` after it.
    Text {
        /// The text.
        text: String,
        /// Whether a prompt-cache breakpoint follows this block.
        cache: bool,
    },
    /// An image, inline or by URL.
    Image(ImageSource),
    /// An inline document (PDF and friends).
    Document {
        /// MIME type, e.g. `application/pdf`.
        media_type: String,
        /// File name shown to the model.
        name: String,
        /// Base64 data.
        data: String,
    },
    /// A tool call made by the assistant.
    ToolCall {
        /// Call id; clients echo it back in the tool result.
        id: String,
        /// Function name.
        name: String,
        /// Arguments as JSON text (OpenAI sends a string; Bedrock wants an object).
        arguments: String,
    },
    /// The result of a tool call, sent by the user side.
    ToolResult {
        /// The call id this answers.
        id: String,
        /// Result content: text and images.
        content: Vec<Part>,
        /// Whether the tool reported an error.
        is_error: bool,
    },
    /// Model reasoning ("thinking") with its signature for multi-turn replay.
    Reasoning {
        /// The reasoning text.
        text: String,
        /// Opaque signature from the provider.
        signature: Option<String>,
    },
    /// Redacted reasoning: opaque data that must be replayed unchanged.
    RedactedReasoning {
        /// Opaque provider data.
        data: String,
    },
    /// A block the gateway cannot translate (Anthropic server-tool results, search results,
    /// …): relayed to Claude as sent, refused for other upstreams.
    Opaque {
        /// The block's `type`.
        kind: String,
    },
}

impl Part {
    /// A text part without a cache breakpoint.
    pub fn text(text: impl Into<String>) -> Part {
        Part::Text {
            text: text.into(),
            cache: false,
        }
    }
}

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ImageSource {
    /// Inline base64 data.
    Base64 {
        /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
        media_type: String,
        /// Base64 data without the `data:` prefix.
        data: String,
    },
    /// A remote `http(s)` URL (only OpenAI upstreams fetch these).
    Url(String),
}

/// Splits a `data:<media>;base64,<data>` URL into its lower-cased media type and its data
/// (the form OpenAI-shaped APIs carry inline images and files in).
pub fn split_data_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media.to_ascii_lowercase(), data.to_string()))
}

/// One conversation turn. Turns of the same role are merged, so `origins` says where each
/// part came from in the client's request: errors about a part name the client's own field.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Who wrote it.
    pub role: Role,
    /// Its content, in order.
    pub content: Vec<Part>,
    /// Where each part of `content` came from (same length, or empty when unknown).
    pub origins: Vec<Origin>,
}

impl Message {
    /// A turn whose parts have no recorded origin.
    pub fn new(role: Role, content: Vec<Part>) -> Message {
        Message {
            role,
            content,
            origins: Vec::new(),
        }
    }

    /// The client's path of part `j` of this turn; `ir_index` (the turn's position in the
    /// IR) is used when the origin is unknown.
    pub fn part_path(&self, j: usize, ir_index: usize) -> String {
        match self.origins.get(j) {
            Some(o) => o.path(),
            None => format!("messages[{ir_index}].content[{j}]"),
        }
    }
}

/// Which field of a client message a part came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginField {
    /// `content[index]` (an array of parts or blocks).
    Content,
    /// `content` as a plain string.
    ContentString,
    /// `tool_calls[index]` (OpenAI).
    ToolCalls,
    /// `function_call` (legacy OpenAI).
    FunctionCall,
    /// `thinking_blocks[index]` or `reasoning_content`.
    Reasoning,
    /// The whole message (an OpenAI `tool` message).
    Whole,
}

/// Where a part came from in the client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// The request field holding the conversation (`messages`, `input`).
    pub root: &'static str,
    /// Index of the client's message.
    pub message: u32,
    /// Field within it.
    pub field: OriginField,
    /// Index within that field (unused for single-valued fields).
    pub index: u32,
}

impl Origin {
    /// An origin in `messages`.
    pub fn messages(message: usize, field: OriginField, index: usize) -> Origin {
        Origin::in_root("messages", message, field, index)
    }

    /// An origin in the conversation field `root` (`input` for the Responses API).
    pub fn in_root(root: &'static str, message: usize, field: OriginField, index: usize) -> Origin {
        Origin {
            root,
            message: u32::try_from(message).unwrap_or(u32::MAX),
            field,
            index: u32::try_from(index).unwrap_or(u32::MAX),
        }
    }

    /// The client's path (`messages[1].content[0]`).
    pub fn path(&self) -> String {
        let (root, m, i) = (self.root, self.message, self.index);
        match self.field {
            OriginField::Content => format!("{root}[{m}].content[{i}]"),
            OriginField::ContentString => format!("{root}[{m}].content"),
            OriginField::ToolCalls => format!("{root}[{m}].tool_calls[{i}]"),
            OriginField::FunctionCall => format!("{root}[{m}].function_call"),
            OriginField::Reasoning => format!("{root}[{m}].thinking_blocks[{i}]"),
            OriginField::Whole => format!("{root}[{m}]"),
        }
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Function name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// JSON Schema of the arguments.
    pub parameters: Value,
    /// OpenAI `strict` flag.
    pub strict: Option<bool>,
    /// A provider-run tool (Anthropic server tools such as `web_search_20250305`): its type.
    /// Relayed to Claude as sent, refused for other upstreams.
    pub builtin: Option<String>,
}

/// How the model must use tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    Auto,
    /// The model must not call tools.
    None,
    /// The model must call some tool.
    Required,
    /// The model must call this tool.
    Function(String),
}

/// Requested reasoning effort.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reasoning {
    /// OpenAI `reasoning_effort` (`minimal`, `low`, `medium`, `high`).
    Effort(String),
    /// Anthropic-style explicit thinking budget in tokens.
    Budget(u32),
    /// Thinking explicitly disabled.
    Disabled,
}

/// Requested output structure.
#[derive(Debug, Clone, PartialEq)]
pub enum ResponseFormat {
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// Schema name.
        name: String,
        /// The JSON Schema.
        schema: Value,
        /// OpenAI `strict` flag.
        strict: Option<bool>,
    },
}

/// A chat request in canonical form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The model id exactly as the client sent it (aliases not yet resolved).
    pub model: String,
    /// System and developer instructions, in order.
    pub system: Vec<Part>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Maximum tokens to generate.
    pub max_tokens: Option<u32>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Top-k sampling (Anthropic and some Bedrock families).
    pub top_k: Option<u32>,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Whether the client wants a stream.
    pub stream: bool,
    /// OpenAI `stream_options.include_usage`.
    pub include_usage: bool,
    /// Tools the model may call.
    pub tools: Vec<Tool>,
    /// Tool policy.
    pub tool_choice: Option<ToolChoice>,
    /// OpenAI `parallel_tool_calls`.
    pub parallel_tool_calls: Option<bool>,
    /// Reasoning request.
    pub reasoning: Option<Reasoning>,
    /// Structured-output request.
    pub response_format: Option<ResponseFormat>,
    /// End-user identifier.
    pub user: Option<String>,
    /// Number of choices requested (only 1 is supported by Bedrock).
    pub n: Option<u32>,
    /// OpenAI fields with no Bedrock counterpart, kept for OpenAI upstreams.
    pub openai_extra: Map<String, Value>,
    /// The client used the legacy `functions` / `function_call` API.
    pub legacy_functions: bool,
    /// What the client's answer must repeat or rename (Responses tools, parameters).
    pub echo: ClientEcho,
    /// What the decoder dropped or changed (for the debug log).
    pub notes: Vec<String>,
}

impl ChatRequest {
    /// Drops the conversation, instructions, tools and OpenAI-only fields: a relayed body
    /// carries them itself, and the decoded copy is only needed to check the request.
    pub fn forget_conversation(&mut self) {
        self.system = Vec::new();
        self.messages = Vec::new();
        self.tools = Vec::new();
        self.openai_extra = Map::new();
    }

    /// Appends a turn, merged into the previous turn when that has the same role.
    pub fn push_turn(&mut self, role: Role, parts: Vec<Part>, origins: Vec<Origin>) {
        if let Some(last) = self.messages.last_mut() {
            if last.role == role {
                last.content.extend(parts);
                last.origins.extend(origins);
                return;
            }
        }
        self.messages.push(Message {
            role,
            content: parts,
            origins,
        });
    }

    /// System and developer text joined by blank lines.
    /// Borrowed when there is one text (no copy of a long prompt is made).
    pub fn system_text(&self) -> std::borrow::Cow<'_, str> {
        let texts: Vec<&str> = self
            .system
            .iter()
            .filter_map(|p| match p {
                Part::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        match texts.as_slice() {
            [] => std::borrow::Cow::Borrowed(""),
            [one] => std::borrow::Cow::Borrowed(one),
            _ => std::borrow::Cow::Owned(texts.join("\n\n")),
        }
    }
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopReason {
    /// Natural end of turn.
    #[default]
    EndTurn,
    /// A stop sequence matched.
    StopSequence,
    /// The token limit was reached.
    MaxTokens,
    /// The model called tools.
    ToolUse,
    /// Output was filtered (guardrail, content filter).
    ContentFilter,
    /// The model refused.
    Refusal,
    /// The context window was exceeded.
    ContextWindowExceeded,
    /// A long-running turn was paused (Anthropic server tools).
    PauseTurn,
}

/// Token accounting in OpenAI terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// All prompt tokens, including cache reads and writes.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Prompt tokens read from the prompt cache.
    pub cache_read_tokens: u64,
    /// Prompt tokens written to the prompt cache.
    pub cache_write_tokens: u64,
    /// Reasoning tokens, when the provider reports them.
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    /// Prompt plus completion.
    pub fn total(&self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }

    /// Usage from counts where the input excludes cache reads and writes (Anthropic, Converse,
    /// Bedrock's invocation metrics): the prompt total is their sum.
    pub fn from_uncached(input: u64, output: u64, cache_read: u64, cache_write: u64) -> Usage {
        Usage {
            prompt_tokens: input.saturating_add(cache_read).saturating_add(cache_write),
            completion_tokens: output,
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: None,
        }
    }

    /// Prompt tokens that were neither read from nor written to the cache (Anthropic's
    /// `input_tokens`).
    pub fn uncached_prompt_tokens(&self) -> u64 {
        self.prompt_tokens
            .saturating_sub(self.cache_read_tokens)
            .saturating_sub(self.cache_write_tokens)
    }
}

/// A complete (non-streamed) answer in canonical form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatResponse {
    /// Provider message id, if it sent one.
    pub id: Option<String>,
    /// Generated content: text, tool calls and reasoning, in order.
    pub content: Vec<Part>,
    /// Why generation stopped.
    pub stop_reason: StopReason,
    /// Which stop sequence matched, when known.
    pub stop_sequence: Option<String>,
    /// Token usage.
    pub usage: Usage,
}

impl ChatResponse {
    /// All text parts concatenated (providers may split text across blocks).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for part in &self.content {
            if let Part::Text { text, .. } = part {
                out.push_str(text);
            }
        }
        out
    }
}

/// A tool the upstream knows under a flat function name but the client declared in another
/// shape (a Responses `custom` tool, or a function inside a `namespace`): how its calls go back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolAlias {
    /// The function name the upstream sees.
    pub flat: String,
    /// The client's namespace, if the tool was declared in one.
    pub namespace: Option<String>,
    /// The client's own name for the tool.
    pub name: String,
    /// A free-form tool: the call's only argument, the string `input`, is the call itself.
    pub custom: bool,
}

/// What a client format repeats in its answers beyond the IR answer itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientEcho {
    /// Tools whose calls go back under another name or shape.
    pub tools: Vec<ToolAlias>,
    /// Request parameters the answer object repeats (Responses: `tool_choice`, `temperature`,
    /// …), as the client sent them.
    pub params: Map<String, Value>,
    /// The client asked for reasoning it can send back next turn (Responses
    /// `include: ["reasoning.encrypted_content"]`).
    pub replayable_reasoning: bool,
}

/// Identity of a response as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMeta {
    /// Response id in the client format's style (`chatcmpl-…`, `msg_…`).
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model name echoed to the client (as it asked).
    pub model: String,
    /// The client used the legacy OpenAI `functions` API: answer with `function_call`.
    pub legacy_functions: bool,
    /// What the answer repeats from the request.
    pub echo: ClientEcho,
}

/// How a client wants embedding vectors written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EmbeddingEncoding {
    /// JSON arrays of numbers.
    #[default]
    Float,
    /// Base64 of the little-endian IEEE-754 float32 bytes (what OpenAI sends).
    Base64,
}

/// An embeddings request in canonical form.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EmbeddingsRequest {
    /// The model id as the client sent it.
    pub model: String,
    /// The texts, in order.
    pub inputs: Vec<String>,
    /// Output encoding.
    pub encoding: EmbeddingEncoding,
    /// Requested vector size.
    pub dimensions: Option<u32>,
    /// End-user identifier.
    pub user: Option<String>,
    /// Cohere's `input_type` (`search_document`, `search_query`, `classification`,
    /// `clustering`).
    pub input_type: Option<String>,
    /// Cohere's `truncate`.
    pub truncate: Option<String>,
}
