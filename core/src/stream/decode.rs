//! Upstream stream decoders: bytes from an upstream API, split anywhere, into IR
//! [`StreamEvent`]s.

use super::eventstream::{Frame, FrameDecoder};
use super::sse::{SseDecoder, SseEvent};
use super::StreamEvent;
use crate::error::{ErrorType, GatewayError};
use crate::ir::{StopReason, Usage};
use crate::route::UpstreamApi;
use crate::{anthropic, converse, openai, titan};
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use std::borrow::Cow;

/// Decodes one upstream API's stream.
#[derive(Debug)]
pub struct UpstreamDecoder {
    api: UpstreamApi,
    frames: FrameDecoder,
    sse: SseDecoder,
    /// Usage as known so far (providers report pieces at different times).
    usage: Usage,
    /// OpenAI tool-call indexes already announced.
    openai_tools: Vec<u64>,
    /// Whether a start event was emitted (Titan and OpenAI have no explicit one).
    started: bool,
}

/// Raw model events kept for same-format pass-through of Claude/Titan streams.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    /// An Anthropic stream event: its `type` and its JSON bytes (invocation metrics removed).
    Anthropic(String, Vec<u8>),
    /// A Titan stream chunk's JSON bytes (invocation metrics removed).
    Titan(Vec<u8>),
    /// An OpenAI SSE event exactly as received, and whether it is a usage-only chunk.
    OpenaiSse(Vec<u8>, bool),
}

/// One thing a push produced: an IR event, or a raw provider event for pass-through targets.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An IR event.
    Event(StreamEvent),
    /// A raw provider event (emitted before the IR events it gives rise to).
    Raw(Raw),
}

/// What one push produced, in order.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Items in arrival order.
    pub items: Vec<Item>,
}

/// Pushes IR events (keeps the decoder code close to the protocol descriptions).
struct Events<'a>(&'a mut Vec<Item>);

impl Events<'_> {
    fn push(&mut self, e: StreamEvent) {
        self.0.push(Item::Event(e));
    }
}

impl Decoded {
    fn events(&mut self) -> Events<'_> {
        Events(&mut self.items)
    }

    fn raw(&mut self, r: Raw) {
        self.items.push(Item::Raw(r));
    }
}

fn upstream_failure(message: String) -> GatewayError {
    GatewayError::bad_gateway(message).with_code("upstream_stream_error")
}

fn truncated(message: &str) -> GatewayError {
    GatewayError::bad_gateway(message).with_code("upstream_stream_truncated")
}

/// Maps an event-stream exception member (camelCase) to a client error.
pub fn exception_error(kind: &str, payload: &[u8]) -> GatewayError {
    let message = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| {
            v.get("message")
                .or_else(|| v.get("Message"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("Bedrock reported {kind} mid-stream."));
    // Exception members are the modeled error names with a lower-case first letter.
    let mut name = kind.to_string();
    if let Some(first) = name.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    let mapped = crate::upstream_error::from_bedrock(500, Some(&name), message.as_bytes());
    GatewayError {
        message: crate::upstream_error::redact_aws_secrets(&message),
        code: Some(kind.to_string()),
        ..mapped
    }
}

/// A string field that borrows from the input unless it had escapes.
type Str<'a> = Cow<'a, str>;

/// `{"bytes": "<base64>", "p": "<padding>"}` of InvokeModelWithResponseStream chunks.
#[derive(Deserialize)]
struct BytesPayload<'a> {
    #[serde(borrow)]
    bytes: Option<Str<'a>>,
}

/// `amazon-bedrock-invocationMetrics`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct Metrics {
    input_token_count: Option<u64>,
    output_token_count: Option<u64>,
    cache_read_input_token_count: Option<u64>,
    cache_write_input_token_count: Option<u64>,
}

const METRICS_KEY: &str = "amazon-bedrock-invocationMetrics";

#[derive(Deserialize, Default, Clone, Copy)]
struct AnthropicUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct AnthropicMessage<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    usage: Option<AnthropicUsage>,
}

#[derive(Deserialize)]
struct AnthropicBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    data: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct AnthropicDelta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    partial_json: Option<Str<'a>>,
    #[serde(borrow)]
    thinking: Option<Str<'a>>,
    #[serde(borrow)]
    signature: Option<Str<'a>>,
    #[serde(borrow)]
    stop_reason: Option<Str<'a>>,
    #[serde(borrow)]
    stop_sequence: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct AnthropicError<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Str<'a>>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
}

/// One Anthropic stream event (unknown fields are ignored, so new ones do not break it).
#[derive(Deserialize)]
struct AnthropicEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Str<'a>,
    #[serde(default)]
    index: u64,
    #[serde(borrow)]
    message: Option<AnthropicMessage<'a>>,
    #[serde(borrow)]
    content_block: Option<AnthropicBlock<'a>>,
    #[serde(borrow)]
    delta: Option<AnthropicDelta<'a>>,
    usage: Option<AnthropicUsage>,
    #[serde(borrow)]
    error: Option<AnthropicError<'a>>,
    #[serde(rename = "amazon-bedrock-invocationMetrics")]
    metrics: Option<Metrics>,
}

/// One Titan stream chunk.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanChunk<'a> {
    #[serde(borrow)]
    output_text: Option<Str<'a>>,
    input_text_token_count: Option<u64>,
    total_output_text_token_count: Option<u64>,
    #[serde(borrow)]
    completion_reason: Option<Str<'a>>,
    #[serde(rename = "amazon-bedrock-invocationMetrics")]
    metrics: Option<Metrics>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseToolStart<'a> {
    #[serde(borrow)]
    tool_use_id: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseStart<'a> {
    #[serde(borrow)]
    tool_use: Option<ConverseToolStart<'a>>,
}

#[derive(Deserialize)]
struct ConverseToolDelta<'a> {
    #[serde(borrow)]
    input: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseReasoningDelta<'a> {
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    signature: Option<Str<'a>>,
    #[serde(borrow)]
    redacted_content: Option<Str<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseDelta<'a> {
    #[serde(borrow)]
    text: Option<Str<'a>>,
    #[serde(borrow)]
    tool_use: Option<ConverseToolDelta<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<ConverseReasoningDelta<'a>>,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "camelCase")]
struct ConverseUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_write_input_tokens: Option<u64>,
}

/// The payload of any ConverseStream event (the event type comes from the frame header).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseEvent<'a> {
    #[serde(default)]
    content_block_index: u64,
    #[serde(borrow)]
    start: Option<ConverseStart<'a>>,
    #[serde(borrow)]
    delta: Option<ConverseDelta<'a>>,
    #[serde(borrow)]
    stop_reason: Option<Str<'a>>,
    usage: Option<ConverseUsage>,
}

#[derive(Deserialize)]
struct OpenaiFunctionDelta<'a> {
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    arguments: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct OpenaiToolDelta<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    function: Option<OpenaiFunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct OpenaiDelta<'a> {
    #[serde(borrow)]
    content: Option<Str<'a>>,
    #[serde(borrow)]
    reasoning_content: Option<Str<'a>>,
    #[serde(borrow)]
    reasoning: Option<Str<'a>>,
    #[serde(borrow)]
    tool_calls: Option<Vec<OpenaiToolDelta<'a>>>,
}

#[derive(Deserialize)]
struct OpenaiChoice<'a> {
    #[serde(default)]
    index: u64,
    #[serde(borrow)]
    delta: Option<OpenaiDelta<'a>>,
    #[serde(borrow)]
    finish_reason: Option<Str<'a>>,
}

/// One OpenAI `chat.completion.chunk` (or an in-band error).
#[derive(Deserialize)]
struct OpenaiChunk<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    choices: Option<Vec<OpenaiChoice<'a>>>,
    usage: Option<Value>,
    error: Option<Value>,
}

fn owned(s: Option<Str<'_>>) -> String {
    s.map(Cow::into_owned).unwrap_or_default()
}

fn block_id(index: u64) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// The JSON bytes of a model event without its invocation metrics (only re-serialized when
/// the metrics are there, which is once per stream).
fn without_metrics(raw: &[u8], had_metrics: bool) -> Vec<u8> {
    if !had_metrics {
        return raw.to_vec();
    }
    match serde_json::from_slice::<Value>(raw) {
        Ok(mut v) => {
            if let Some(o) = v.as_object_mut() {
                o.remove(METRICS_KEY);
            }
            serde_json::to_vec(&v).unwrap_or_else(|_| raw.to_vec())
        }
        Err(_) => raw.to_vec(),
    }
}

impl UpstreamDecoder {
    /// A decoder for the stream of `api`.
    pub fn new(api: UpstreamApi) -> UpstreamDecoder {
        UpstreamDecoder {
            api,
            frames: FrameDecoder::new(),
            sse: SseDecoder::new(),
            usage: Usage::default(),
            openai_tools: Vec::new(),
            started: false,
        }
    }

    /// Usage reported so far.
    pub fn usage(&self) -> Usage {
        self.usage
    }

    /// Drops any partial frame or event (the stream is over).
    pub fn discard(&mut self) {
        self.frames = FrameDecoder::new();
        self.sse = SseDecoder::new();
    }

    /// Bytes held for an incomplete frame or event.
    pub fn buffered(&self) -> usize {
        self.frames.buffered() + self.sse.buffered()
    }

    /// Feeds bytes; `end` says the upstream body ended.
    pub fn push(&mut self, bytes: &[u8], end: bool) -> Decoded {
        let mut out = Decoded::default();
        match self.api {
            UpstreamApi::OpenaiChat => {
                match self.sse.push(bytes) {
                    Ok(events) => {
                        for e in events {
                            self.openai_event(e, &mut out);
                        }
                    }
                    Err(e) => out.events().push(StreamEvent::Error(upstream_failure(e))),
                }
                if end {
                    // An event without its closing blank line was cut off, unless it is the
                    // final `[DONE]`.
                    for e in self.sse.finish() {
                        if e.data.trim() == "[DONE]" {
                            self.openai_event(e, &mut out);
                        } else {
                            out.events().push(StreamEvent::Error(truncated(
                                "The OpenAI stream ended in the middle of an event.",
                            )));
                        }
                    }
                }
            }
            _ => {
                let (frames, err) = self.frames.push_all(bytes);
                // Good frames before a bad one are still delivered.
                for f in frames {
                    self.frame(f, &mut out);
                }
                if let Some(e) = err {
                    out.events()
                        .push(StreamEvent::Error(upstream_failure(format!(
                            "Bedrock sent an {e}."
                        ))));
                } else if end && self.frames.buffered() > 0 {
                    out.events().push(StreamEvent::Error(truncated(
                        "The Bedrock stream ended in the middle of a frame.",
                    )));
                } else if end && self.api == UpstreamApi::BedrockAgent {
                    // InvokeAgent has no closing event: a clean end of body completes it.
                    out.events().push(StreamEvent::Stop {
                        reason: StopReason::EndTurn,
                        stop_sequence: None,
                    });
                    out.events().push(StreamEvent::Usage(self.usage));
                    out.events().push(StreamEvent::End);
                }
            }
        }
        out
    }

    fn frame(&mut self, frame: Frame, out: &mut Decoded) {
        match frame.message_type.as_str() {
            "exception" => {
                out.events().push(StreamEvent::Error(exception_error(
                    &frame.kind,
                    &frame.payload,
                )));
                return;
            }
            "error" => {
                let msg = frame
                    .error_message
                    .unwrap_or_else(|| format!("Bedrock stream error {}", frame.kind));
                out.events().push(StreamEvent::Error(
                    GatewayError::new(502, ErrorType::Api, msg).with_code(frame.kind),
                ));
                return;
            }
            _ => {}
        }
        let not_json = |kind: &str| {
            StreamEvent::Error(upstream_failure(format!(
                "Bedrock sent a `{kind}` event whose payload is not the expected JSON."
            )))
        };
        match self.api {
            UpstreamApi::BedrockConverse => {
                match serde_json::from_slice::<ConverseEvent<'_>>(&frame.payload) {
                    Ok(ev) => self.converse_event(&frame.kind, ev, &frame.payload, out),
                    Err(_) => out.events().push(not_json(&frame.kind)),
                }
            }
            UpstreamApi::BedrockAgent => {
                if frame.kind != "chunk" {
                    return;
                }
                let Ok(payload) = serde_json::from_slice::<Value>(&frame.payload) else {
                    out.events().push(not_json(&frame.kind));
                    return;
                };
                if !self.started {
                    self.started = true;
                    out.events().push(StreamEvent::Start {
                        id: None,
                        usage: self.usage,
                    });
                }
                if let Some(t) = crate::agent::chunk_text(&payload) {
                    out.events().push(StreamEvent::TextDelta(t));
                }
            }
            UpstreamApi::BedrockAnthropic | UpstreamApi::BedrockTitan => {
                if frame.kind != "chunk" {
                    return;
                }
                // InvokeModelWithResponseStream wraps each model event in base64 `bytes`
                // (next to random `p` padding, which is ignored).
                let inner = serde_json::from_slice::<BytesPayload<'_>>(&frame.payload)
                    .ok()
                    .and_then(|p| p.bytes)
                    .and_then(|b| {
                        base64::engine::general_purpose::STANDARD
                            .decode(b.as_bytes())
                            .ok()
                    });
                let Some(inner) = inner else {
                    out.events().push(StreamEvent::Error(upstream_failure(
                        "Bedrock sent a chunk without decodable `bytes`.".into(),
                    )));
                    return;
                };
                let ok = if self.api == UpstreamApi::BedrockAnthropic {
                    match serde_json::from_slice::<AnthropicEvent<'_>>(&inner) {
                        Ok(ev) => {
                            self.anthropic_event(ev, &inner, out);
                            true
                        }
                        Err(_) => false,
                    }
                } else {
                    match serde_json::from_slice::<TitanChunk<'_>>(&inner) {
                        Ok(ev) => {
                            self.titan_chunk(ev, &inner, out);
                            true
                        }
                        Err(_) => false,
                    }
                };
                if !ok {
                    out.events().push(not_json("chunk"));
                }
            }
            UpstreamApi::OpenaiChat => {}
        }
    }

    /// Uses `amazon-bedrock-invocationMetrics` as the usage of record.
    fn apply_metrics(&mut self, m: Metrics) {
        let cache_read = m
            .cache_read_input_token_count
            .unwrap_or(self.usage.cache_read_tokens);
        let cache_write = m
            .cache_write_input_token_count
            .unwrap_or(self.usage.cache_write_tokens);
        if let Some(input) = m.input_token_count {
            self.usage.prompt_tokens = input.saturating_add(cache_read).saturating_add(cache_write);
        }
        if let Some(output) = m.output_token_count {
            self.usage.completion_tokens = output;
        }
        self.usage.cache_read_tokens = cache_read;
        self.usage.cache_write_tokens = cache_write;
    }

    fn anthropic_usage(u: AnthropicUsage) -> Usage {
        let cache_read = u.cache_read_input_tokens.unwrap_or(0);
        let cache_write = u.cache_creation_input_tokens.unwrap_or(0);
        Usage {
            prompt_tokens: u
                .input_tokens
                .unwrap_or(0)
                .saturating_add(cache_read)
                .saturating_add(cache_write),
            completion_tokens: u.output_tokens.unwrap_or(0),
            cache_read_tokens: cache_read,
            cache_write_tokens: cache_write,
            reasoning_tokens: None,
        }
    }

    fn anthropic_event(&mut self, ev: AnthropicEvent<'_>, raw: &[u8], out: &mut Decoded) {
        let had_metrics = ev.metrics.is_some();
        if let Some(m) = ev.metrics {
            self.apply_metrics(m);
        }
        let kind = ev.kind.as_ref();
        // The raw event goes first, so pass-through output keeps the provider's order; errors
        // are rendered by the encoder instead.
        if kind != "ping" && kind != "error" {
            out.raw(Raw::Anthropic(
                kind.to_string(),
                without_metrics(raw, had_metrics),
            ));
        }
        let block = block_id(ev.index);
        match kind {
            "message_start" => {
                let msg = ev.message;
                if let Some(u) = msg.as_ref().and_then(|m| m.usage) {
                    self.usage = Self::anthropic_usage(u);
                }
                out.events().push(StreamEvent::Start {
                    id: msg.and_then(|m| m.id).map(Cow::into_owned),
                    usage: self.usage,
                });
            }
            "content_block_start" => {
                let Some(cb) = ev.content_block else { return };
                match cb.kind.as_deref() {
                    Some("tool_use") => out.events().push(StreamEvent::ToolCallStart {
                        block,
                        id: owned(cb.id),
                        name: owned(cb.name),
                    }),
                    Some("text") => {
                        let t = owned(cb.text);
                        if !t.is_empty() {
                            out.events().push(StreamEvent::TextDelta(t));
                        }
                    }
                    Some("redacted_thinking") => out
                        .events()
                        .push(StreamEvent::RedactedReasoning(owned(cb.data))),
                    _ => {}
                }
            }
            "content_block_delta" => {
                let Some(d) = ev.delta else { return };
                match d.kind.as_deref() {
                    Some("text_delta") => out.events().push(StreamEvent::TextDelta(owned(d.text))),
                    Some("input_json_delta") => out.events().push(StreamEvent::ToolArgsDelta {
                        block,
                        json: owned(d.partial_json),
                    }),
                    Some("thinking_delta") => out
                        .events()
                        .push(StreamEvent::ReasoningDelta(owned(d.thinking))),
                    Some("signature_delta") => out
                        .events()
                        .push(StreamEvent::ReasoningSignature(owned(d.signature))),
                    _ => {}
                }
            }
            "content_block_stop" => out.events().push(StreamEvent::BlockStop { block }),
            "message_delta" => {
                if let Some(u) = ev.usage {
                    if let Some(o) = u.output_tokens {
                        self.usage.completion_tokens = o;
                    }
                    if u.input_tokens.is_some_and(|i| i > 0) {
                        self.usage.prompt_tokens = Self::anthropic_usage(u).prompt_tokens;
                    }
                }
                if let Some(d) = ev.delta {
                    if let Some(r) = d.stop_reason {
                        out.events().push(StreamEvent::Stop {
                            reason: anthropic::parse_stop_reason(&r),
                            stop_sequence: d.stop_sequence.map(Cow::into_owned),
                        });
                    }
                }
            }
            "message_stop" => {
                out.events().push(StreamEvent::Usage(self.usage));
                out.events().push(StreamEvent::End);
            }
            "error" => {
                let (etype, message) = match ev.error {
                    Some(e) => (owned(e.kind), owned(e.message)),
                    None => (String::new(), String::new()),
                };
                let (status, kind) = match etype.as_str() {
                    "overloaded_error" => (503, ErrorType::Api),
                    "rate_limit_error" => (429, ErrorType::RateLimit),
                    "invalid_request_error" => (400, ErrorType::InvalidRequest),
                    _ => (502, ErrorType::Api),
                };
                out.events().push(StreamEvent::Error(
                    GatewayError::new(status, kind, message).with_code(etype),
                ));
            }
            _ => {}
        }
        if had_metrics && kind != "message_stop" {
            out.events().push(StreamEvent::Usage(self.usage));
        }
    }

    fn titan_chunk(&mut self, ev: TitanChunk<'_>, raw: &[u8], out: &mut Decoded) {
        let had_metrics = ev.metrics.is_some();
        if let Some(m) = ev.metrics {
            self.apply_metrics(m);
        }
        out.raw(Raw::Titan(without_metrics(raw, had_metrics)));
        if !self.started {
            self.started = true;
            out.events().push(StreamEvent::Start {
                id: None,
                usage: self.usage,
            });
        }
        if !had_metrics {
            if let Some(i) = ev.input_text_token_count {
                self.usage.prompt_tokens = i;
            }
            if let Some(o) = ev.total_output_text_token_count {
                self.usage.completion_tokens = o;
            }
        }
        let text = owned(ev.output_text);
        if !text.is_empty() {
            out.events().push(StreamEvent::TextDelta(text));
        }
        if let Some(r) = ev.completion_reason {
            out.events().push(StreamEvent::Stop {
                reason: titan::parse_stop_reason(&r),
                stop_sequence: None,
            });
        }
        if had_metrics {
            out.events().push(StreamEvent::Usage(self.usage));
            out.events().push(StreamEvent::End);
        }
    }

    fn converse_event(&mut self, kind: &str, ev: ConverseEvent<'_>, raw: &[u8], out: &mut Decoded) {
        let block = block_id(ev.content_block_index);
        match kind {
            "messageStart" => out.events().push(StreamEvent::Start {
                id: None,
                usage: self.usage,
            }),
            "contentBlockStart" => {
                if let Some(tu) = ev.start.and_then(|s| s.tool_use) {
                    out.events().push(StreamEvent::ToolCallStart {
                        block,
                        id: owned(tu.tool_use_id),
                        name: owned(tu.name),
                    });
                }
            }
            "contentBlockDelta" => {
                let Some(d) = ev.delta else { return };
                if let Some(t) = d.text {
                    out.events().push(StreamEvent::TextDelta(t.into_owned()));
                } else if let Some(tu) = d.tool_use {
                    out.events().push(StreamEvent::ToolArgsDelta {
                        block,
                        json: owned(tu.input),
                    });
                } else if let Some(rc) = d.reasoning_content {
                    if let Some(t) = rc.text {
                        out.events()
                            .push(StreamEvent::ReasoningDelta(t.into_owned()));
                    } else if let Some(s) = rc.signature {
                        out.events()
                            .push(StreamEvent::ReasoningSignature(s.into_owned()));
                    } else if let Some(r) = rc.redacted_content {
                        out.events()
                            .push(StreamEvent::RedactedReasoning(r.into_owned()));
                    }
                }
            }
            "contentBlockStop" => out.events().push(StreamEvent::BlockStop { block }),
            "messageStop" => {
                let reason = ev
                    .stop_reason
                    .map(|r| converse::parse_stop_reason(&r))
                    .unwrap_or(StopReason::EndTurn);
                out.events().push(StreamEvent::Stop {
                    reason,
                    stop_sequence: None,
                });
            }
            "metadata" => {
                if let Some(u) = ev.usage {
                    let cache_read = u.cache_read_input_tokens.unwrap_or(0);
                    let cache_write = u.cache_write_input_tokens.unwrap_or(0);
                    self.usage = Usage {
                        prompt_tokens: u
                            .input_tokens
                            .unwrap_or(0)
                            .saturating_add(cache_read)
                            .saturating_add(cache_write),
                        completion_tokens: u.output_tokens.unwrap_or(0),
                        cache_read_tokens: cache_read,
                        cache_write_tokens: cache_write,
                        reasoning_tokens: None,
                    };
                }
                out.events().push(StreamEvent::Usage(self.usage));
                out.events().push(StreamEvent::End);
            }
            other if other.ends_with("Exception") => {
                out.events()
                    .push(StreamEvent::Error(exception_error(other, raw)));
            }
            _ => {}
        }
    }

    fn openai_event(&mut self, e: SseEvent, out: &mut Decoded) {
        let data = e.data.trim();
        if data.is_empty() {
            return;
        }
        if data == "[DONE]" {
            out.raw(Raw::OpenaiSse(e.raw, false));
            out.events().push(StreamEvent::Usage(self.usage));
            out.events().push(StreamEvent::End);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<OpenaiChunk<'_>>(data) else {
            out.events().push(StreamEvent::Error(upstream_failure(
                "The OpenAI upstream sent a stream event that is not a chunk.".into(),
            )));
            return;
        };
        if let Some(err) = chunk.error {
            let body = serde_json::to_vec(&serde_json::json!({ "error": err })).unwrap_or_default();
            let mut ge = crate::upstream_error::from_openai(500, &body);
            ge.status = 502;
            out.events().push(StreamEvent::Error(ge));
            return;
        }
        let usage = chunk.usage.filter(|u| !u.is_null());
        let usage_only = chunk.choices.as_ref().is_some_and(Vec::is_empty) && usage.is_some();
        let id = chunk.id.map(Cow::into_owned);
        let choices = chunk.choices.unwrap_or_default();
        out.raw(Raw::OpenaiSse(e.raw, usage_only));
        if let Some(u) = usage {
            self.usage = openai::parse_usage(&u);
            out.events().push(StreamEvent::Usage(self.usage));
        }
        if !self.started {
            self.started = true;
            out.events().push(StreamEvent::Start {
                id,
                usage: self.usage,
            });
        }
        for choice in choices {
            if choice.index != 0 {
                continue;
            }
            if let Some(delta) = choice.delta {
                if let Some(r) = delta.reasoning_content.or(delta.reasoning) {
                    if !r.is_empty() {
                        out.events()
                            .push(StreamEvent::ReasoningDelta(r.into_owned()));
                    }
                }
                if let Some(t) = delta.content {
                    if !t.is_empty() {
                        out.events().push(StreamEvent::TextDelta(t.into_owned()));
                    }
                }
                for tc in delta.tool_calls.unwrap_or_default() {
                    // Blocks 1000+ keep OpenAI tool calls apart from other block numbers.
                    let block = 1000u32.saturating_add(u32::try_from(tc.index).unwrap_or(0));
                    let (name, args) = match tc.function {
                        Some(f) => (owned(f.name), owned(f.arguments)),
                        None => (String::new(), String::new()),
                    };
                    if !self.openai_tools.contains(&tc.index) {
                        self.openai_tools.push(tc.index);
                        out.events().push(StreamEvent::ToolCallStart {
                            block,
                            id: owned(tc.id),
                            name,
                        });
                    }
                    if !args.is_empty() {
                        out.events()
                            .push(StreamEvent::ToolArgsDelta { block, json: args });
                    }
                }
            }
            if let Some(r) = choice.finish_reason {
                out.events().push(StreamEvent::Stop {
                    reason: openai::parse_finish_reason(&r),
                    stop_sequence: None,
                });
            }
        }
    }
}
