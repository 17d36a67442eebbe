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
use serde_json::Value;

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

/// Raw model events (decoded JSON) kept for same-format pass-through of Claude/Titan streams.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    /// An Anthropic stream event JSON (invocation metrics removed).
    Anthropic(Value),
    /// A Titan stream chunk JSON (invocation metrics removed).
    Titan(Value),
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
            _ => match self.frames.push(bytes) {
                Ok(frames) => {
                    for f in frames {
                        self.frame(f, &mut out);
                    }
                    if end && self.frames.buffered() > 0 {
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
                Err(e) => out
                    .events()
                    .push(StreamEvent::Error(upstream_failure(format!(
                        "Bedrock sent an {e}."
                    )))),
            },
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
        let Ok(payload) = serde_json::from_slice::<Value>(&frame.payload) else {
            out.events()
                .push(StreamEvent::Error(upstream_failure(format!(
                    "Bedrock sent a `{}` event whose payload is not JSON.",
                    frame.kind
                ))));
            return;
        };
        match self.api {
            UpstreamApi::BedrockConverse => self.converse_event(&frame.kind, &payload, out),
            UpstreamApi::BedrockAgent => {
                if frame.kind == "chunk" {
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
            }
            UpstreamApi::BedrockAnthropic | UpstreamApi::BedrockTitan => {
                if frame.kind != "chunk" {
                    return;
                }
                // InvokeModelWithResponseStream wraps each model event in base64 `bytes`
                // (next to random `p` padding, which is ignored).
                let inner = payload
                    .get("bytes")
                    .and_then(Value::as_str)
                    .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                    .and_then(|b| serde_json::from_slice::<Value>(&b).ok());
                match inner {
                    Some(v) if self.api == UpstreamApi::BedrockAnthropic => {
                        self.anthropic_event(v, out)
                    }
                    Some(v) => self.titan_chunk(v, out),
                    None => out.events().push(StreamEvent::Error(upstream_failure(
                        "Bedrock sent a chunk without decodable `bytes`.".into(),
                    ))),
                }
            }
            UpstreamApi::OpenaiChat => {}
        }
    }

    /// Takes `amazon-bedrock-invocationMetrics` out of a model event (used as usage fallback).
    fn take_metrics(&mut self, v: &mut Value) -> bool {
        let Some(m) = v
            .as_object_mut()
            .and_then(|o| o.remove("amazon-bedrock-invocationMetrics"))
        else {
            return false;
        };
        let n = |k: &str| m.get(k).and_then(Value::as_u64);
        let cache_read = n("cacheReadInputTokenCount").unwrap_or(self.usage.cache_read_tokens);
        let cache_write = n("cacheWriteInputTokenCount").unwrap_or(self.usage.cache_write_tokens);
        if let Some(input) = n("inputTokenCount") {
            self.usage.prompt_tokens = input.saturating_add(cache_read).saturating_add(cache_write);
        }
        if let Some(output) = n("outputTokenCount") {
            self.usage.completion_tokens = output;
        }
        self.usage.cache_read_tokens = cache_read;
        self.usage.cache_write_tokens = cache_write;
        true
    }

    fn anthropic_event(&mut self, mut v: Value, out: &mut Decoded) {
        let had_metrics = self.take_metrics(&mut v);
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // The raw event goes first, so pass-through output keeps the provider's order; errors
        // are rendered by the encoder instead.
        if kind != "ping" && kind != "error" {
            out.raw(Raw::Anthropic(v.clone()));
        }
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        let block = u32::try_from(index).unwrap_or(u32::MAX);
        match kind.as_str() {
            "message_start" => {
                let msg = v.get("message");
                if let Some(u) = msg.and_then(|m| m.get("usage")) {
                    let parsed = anthropic::parse_usage(u);
                    self.usage.prompt_tokens = parsed.prompt_tokens;
                    self.usage.cache_read_tokens = parsed.cache_read_tokens;
                    self.usage.cache_write_tokens = parsed.cache_write_tokens;
                    self.usage.completion_tokens = parsed.completion_tokens;
                }
                out.events().push(StreamEvent::Start {
                    id: msg
                        .and_then(|m| m.get("id"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    usage: self.usage,
                });
            }
            "content_block_start" => {
                let cb = v.get("content_block");
                match cb.and_then(|c| c.get("type")).and_then(Value::as_str) {
                    Some("tool_use") => out.events().push(StreamEvent::ToolCallStart {
                        block,
                        id: str_at(cb, "id"),
                        name: str_at(cb, "name"),
                    }),
                    Some("text") => {
                        let t = str_at(cb, "text");
                        if !t.is_empty() {
                            out.events().push(StreamEvent::TextDelta(t));
                        }
                    }
                    Some("redacted_thinking") => out
                        .events()
                        .push(StreamEvent::RedactedReasoning(str_at(cb, "data"))),
                    _ => {}
                }
            }
            "content_block_delta" => {
                let d = v.get("delta");
                match d.and_then(|d| d.get("type")).and_then(Value::as_str) {
                    Some("text_delta") => {
                        out.events().push(StreamEvent::TextDelta(str_at(d, "text")))
                    }
                    Some("input_json_delta") => out.events().push(StreamEvent::ToolArgsDelta {
                        block,
                        json: str_at(d, "partial_json"),
                    }),
                    Some("thinking_delta") => out
                        .events()
                        .push(StreamEvent::ReasoningDelta(str_at(d, "thinking"))),
                    Some("signature_delta") => out
                        .events()
                        .push(StreamEvent::ReasoningSignature(str_at(d, "signature"))),
                    _ => {}
                }
            }
            "content_block_stop" => out.events().push(StreamEvent::BlockStop { block }),
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    if let Some(o) = u.get("output_tokens").and_then(Value::as_u64) {
                        self.usage.completion_tokens = o;
                    }
                    if let Some(i) = u.get("input_tokens").and_then(Value::as_u64) {
                        let parsed = anthropic::parse_usage(u);
                        if i > 0 {
                            self.usage.prompt_tokens = parsed.prompt_tokens;
                        }
                    }
                }
                if let Some(r) = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(Value::as_str)
                {
                    out.events().push(StreamEvent::Stop {
                        reason: anthropic::parse_stop_reason(r),
                        stop_sequence: v
                            .get("delta")
                            .and_then(|d| d.get("stop_sequence"))
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    });
                }
            }
            "message_stop" => {
                out.events().push(StreamEvent::Usage(self.usage));
                out.events().push(StreamEvent::End);
            }
            "error" => {
                let err = v.get("error");
                let etype = str_at(err, "type");
                let message = str_at(err, "message");
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

    fn titan_chunk(&mut self, mut v: Value, out: &mut Decoded) {
        let had_metrics = self.take_metrics(&mut v);
        out.raw(Raw::Titan(v.clone()));
        if !self.started {
            self.started = true;
            out.events().push(StreamEvent::Start {
                id: None,
                usage: self.usage,
            });
        }
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        if let Some(i) = n("inputTextTokenCount") {
            if !had_metrics {
                self.usage.prompt_tokens = i;
            }
        }
        if let Some(o) = n("totalOutputTextTokenCount") {
            if !had_metrics {
                self.usage.completion_tokens = o;
            }
        }
        let text = v
            .get("outputText")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !text.is_empty() {
            out.events().push(StreamEvent::TextDelta(text.to_string()));
        }
        if let Some(r) = v.get("completionReason").and_then(Value::as_str) {
            out.events().push(StreamEvent::Stop {
                reason: titan::parse_stop_reason(r),
                stop_sequence: None,
            });
        }
        if had_metrics {
            out.events().push(StreamEvent::Usage(self.usage));
            out.events().push(StreamEvent::End);
        }
    }

    fn converse_event(&mut self, kind: &str, v: &Value, out: &mut Decoded) {
        let block = v
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .map(|b| u32::try_from(b).unwrap_or(u32::MAX))
            .unwrap_or(0);
        match kind {
            "messageStart" => out.events().push(StreamEvent::Start {
                id: None,
                usage: self.usage,
            }),
            "contentBlockStart" => {
                if let Some(tu) = v.get("start").and_then(|s| s.get("toolUse")) {
                    out.events().push(StreamEvent::ToolCallStart {
                        block,
                        id: str_at(Some(tu), "toolUseId"),
                        name: str_at(Some(tu), "name"),
                    });
                }
            }
            "contentBlockDelta" => {
                let d = v.get("delta");
                if let Some(t) = d.and_then(|d| d.get("text")).and_then(Value::as_str) {
                    out.events().push(StreamEvent::TextDelta(t.to_string()));
                } else if let Some(tu) = d.and_then(|d| d.get("toolUse")) {
                    out.events().push(StreamEvent::ToolArgsDelta {
                        block,
                        json: str_at(Some(tu), "input"),
                    });
                } else if let Some(rc) = d.and_then(|d| d.get("reasoningContent")) {
                    if let Some(t) = rc.get("text").and_then(Value::as_str) {
                        out.events()
                            .push(StreamEvent::ReasoningDelta(t.to_string()));
                    } else if let Some(s) = rc.get("signature").and_then(Value::as_str) {
                        out.events()
                            .push(StreamEvent::ReasoningSignature(s.to_string()));
                    } else if let Some(r) = rc.get("redactedContent").and_then(Value::as_str) {
                        out.events()
                            .push(StreamEvent::RedactedReasoning(r.to_string()));
                    }
                }
            }
            "contentBlockStop" => out.events().push(StreamEvent::BlockStop { block }),
            "messageStop" => {
                let reason = v
                    .get("stopReason")
                    .and_then(Value::as_str)
                    .map(converse::parse_stop_reason)
                    .unwrap_or(StopReason::EndTurn);
                out.events().push(StreamEvent::Stop {
                    reason,
                    stop_sequence: None,
                });
            }
            "metadata" => {
                if let Some(u) = v.get("usage") {
                    self.usage = converse::parse_usage(u);
                }
                out.events().push(StreamEvent::Usage(self.usage));
                out.events().push(StreamEvent::End);
            }
            other if other.ends_with("Exception") => {
                let payload = serde_json::to_vec(v).unwrap_or_default();
                out.events()
                    .push(StreamEvent::Error(exception_error(other, &payload)));
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
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            out.events().push(StreamEvent::Error(upstream_failure(
                "The OpenAI upstream sent a stream event that is not JSON.".into(),
            )));
            return;
        };
        if let Some(err) = v.get("error") {
            let body = serde_json::to_vec(&serde_json::json!({ "error": err })).unwrap_or_default();
            let mut ge = crate::upstream_error::from_openai(500, &body);
            ge.status = 502;
            out.events().push(StreamEvent::Error(ge));
            return;
        }
        let choices = v.get("choices").and_then(Value::as_array);
        let usage_only =
            choices.is_some_and(|c| c.is_empty()) && v.get("usage").is_some_and(|u| !u.is_null());
        out.raw(Raw::OpenaiSse(e.raw, usage_only));
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = openai::parse_usage(u);
            out.events().push(StreamEvent::Usage(self.usage));
        }
        if !self.started {
            self.started = true;
            out.events().push(StreamEvent::Start {
                id: v.get("id").and_then(Value::as_str).map(str::to_string),
                usage: self.usage,
            });
        }
        for choice in choices.into_iter().flatten() {
            if choice.get("index").and_then(Value::as_u64).unwrap_or(0) != 0 {
                continue;
            }
            let delta = choice.get("delta");
            if let Some(r) = delta
                .and_then(|d| d.get("reasoning_content").or_else(|| d.get("reasoning")))
                .and_then(Value::as_str)
            {
                if !r.is_empty() {
                    out.events()
                        .push(StreamEvent::ReasoningDelta(r.to_string()));
                }
            }
            if let Some(t) = delta.and_then(|d| d.get("content")).and_then(Value::as_str) {
                if !t.is_empty() {
                    out.events().push(StreamEvent::TextDelta(t.to_string()));
                }
            }
            for tc in delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let idx = tc.get("index").and_then(Value::as_u64).unwrap_or(0);
                // Blocks 1000+ keep OpenAI tool calls apart from other block numbers.
                let block = 1000u32.saturating_add(u32::try_from(idx).unwrap_or(0));
                let f = tc.get("function");
                if !self.openai_tools.contains(&idx) {
                    self.openai_tools.push(idx);
                    out.events().push(StreamEvent::ToolCallStart {
                        block,
                        id: str_at(Some(tc), "id"),
                        name: str_at(f, "name"),
                    });
                }
                let args = str_at(f, "arguments");
                if !args.is_empty() {
                    out.events()
                        .push(StreamEvent::ToolArgsDelta { block, json: args });
                }
            }
            if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
                out.events().push(StreamEvent::Stop {
                    reason: openai::parse_finish_reason(r),
                    stop_sequence: None,
                });
            }
        }
    }
}

fn str_at(v: Option<&Value>, key: &str) -> String {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}
