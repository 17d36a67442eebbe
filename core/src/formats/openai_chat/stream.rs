//! OpenAI Chat Completions streams: the SSE decoder for OpenAI upstreams and the
//! `chat.completion.chunk` encoder for OpenAI clients.

use super::response::{finish_reason, parse_finish_reason, parse_usage, usage_value};
use crate::error::GatewayError;
use crate::ir::{ResponseMeta, StopReason, Usage};
use crate::stream::sse::{SseDecoder, SseEvent};
use crate::stream::{push_data, Decoded, StreamDecoder, StreamEncoder, StreamEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;

/// A string field that borrows from the input unless it had escapes.
type Str<'a> = Cow<'a, str>;

fn owned(s: Option<Str<'_>>) -> String {
    s.map(Cow::into_owned).unwrap_or_default()
}

fn stream_failure(message: String) -> GatewayError {
    GatewayError::bad_gateway(message).with_code("upstream_stream_error")
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

/// Decodes an OpenAI SSE stream.
#[derive(Debug, Default)]
pub struct OpenaiStreamDecoder {
    sse: SseDecoder,
    usage: Usage,
    /// Tool-call indexes already announced.
    tools: Vec<u64>,
    started: bool,
}

impl StreamDecoder for OpenaiStreamDecoder {
    fn push(&mut self, bytes: &[u8], end: bool) -> Decoded {
        let mut out = Decoded::default();
        match self.sse.push(bytes) {
            Ok(events) => {
                for e in events {
                    self.openai_event(e, &mut out);
                }
            }
            Err(e) => out.event(StreamEvent::Error(stream_failure(e))),
        }
        if end {
            // An event without its closing blank line was cut off, unless it is the final
            // `[DONE]`.
            for e in self.sse.finish() {
                if e.data.trim() == "[DONE]" {
                    self.openai_event(e, &mut out);
                } else {
                    out.event(StreamEvent::Error(
                        GatewayError::bad_gateway(
                            "The OpenAI stream ended in the middle of an event.",
                        )
                        .with_code("upstream_stream_truncated"),
                    ));
                }
            }
        }
        out
    }

    fn usage(&self) -> Usage {
        self.usage
    }

    fn buffered(&self) -> usize {
        self.sse.buffered()
    }

    fn discard(&mut self) {
        self.sse = SseDecoder::new();
    }
}

impl OpenaiStreamDecoder {
    fn openai_event(&mut self, e: SseEvent, out: &mut Decoded) {
        let data = e.data.trim();
        if data.is_empty() {
            return;
        }
        if data == "[DONE]" {
            out.raw(e.raw, false);
            out.event(StreamEvent::Usage(self.usage));
            out.event(StreamEvent::End);
            return;
        }
        let Ok(chunk) = serde_json::from_str::<OpenaiChunk<'_>>(data) else {
            out.event(StreamEvent::Error(stream_failure(
                "The OpenAI upstream sent a stream event that is not a chunk.".into(),
            )));
            return;
        };
        if let Some(err) = chunk.error {
            let body = serde_json::to_vec(&serde_json::json!({ "error": err })).unwrap_or_default();
            let mut ge = crate::upstream_error::from_openai(500, &body);
            ge.status = 502;
            out.event(StreamEvent::Error(ge));
            return;
        }
        let usage = chunk.usage.filter(|u| !u.is_null());
        let usage_only = chunk.choices.as_ref().is_some_and(Vec::is_empty) && usage.is_some();
        let id = chunk.id.map(Cow::into_owned);
        let choices = chunk.choices.unwrap_or_default();
        out.raw(e.raw, usage_only);
        if let Some(u) = usage {
            self.usage = parse_usage(&u);
            out.event(StreamEvent::Usage(self.usage));
        }
        if !self.started {
            self.started = true;
            out.event(StreamEvent::Start {
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
                        out.event(StreamEvent::ReasoningDelta(r.into_owned()));
                    }
                }
                if let Some(t) = delta.content {
                    if !t.is_empty() {
                        out.event(StreamEvent::TextDelta(t.into_owned()));
                    }
                }
                for tc in delta.tool_calls.unwrap_or_default() {
                    // Blocks 1000+ keep OpenAI tool calls apart from other block numbers.
                    let block = 1000u32.saturating_add(u32::try_from(tc.index).unwrap_or(0));
                    let (name, args) = match tc.function {
                        Some(f) => (owned(f.name), owned(f.arguments)),
                        None => (String::new(), String::new()),
                    };
                    if !self.tools.contains(&tc.index) {
                        self.tools.push(tc.index);
                        out.event(StreamEvent::ToolCallStart {
                            block,
                            id: owned(tc.id),
                            name,
                        });
                    }
                    if !args.is_empty() {
                        out.event(StreamEvent::ToolArgsDelta { block, json: args });
                    }
                }
            }
            if let Some(r) = choice.finish_reason {
                out.event(StreamEvent::Stop {
                    reason: parse_finish_reason(&r),
                    stop_sequence: None,
                });
            }
        }
    }
}

/// OpenAI `chat.completion.chunk` encoder.
#[derive(Debug)]
pub struct OpenaiStreamEncoder {
    meta: ResponseMeta,
    include_usage: bool,
    role_sent: bool,
    /// Upstream block ids of tool calls; the position is the dense OpenAI `index`.
    tools: Vec<u32>,
    finish: Option<StopReason>,
    finish_sent: bool,
    usage: Usage,
    /// The constant start of every chunk (rendered on first use).
    prefix: Vec<u8>,
}

impl OpenaiStreamEncoder {
    /// An encoder for one response.
    pub fn new(meta: ResponseMeta, include_usage: bool) -> OpenaiStreamEncoder {
        OpenaiStreamEncoder {
            meta,
            include_usage,
            role_sent: false,
            tools: Vec::new(),
            finish: None,
            finish_sent: false,
            usage: Usage::default(),
            prefix: Vec::new(),
        }
    }

    fn chunk(&mut self, out: &mut Vec<u8>, delta: Value, finish: Option<&str>) {
        self.chunk_start(out);
        let _ = serde_json::to_writer(&mut *out, &delta);
        self.chunk_end(out, finish);
    }

    /// Everything of a chunk before its `delta` value, rendered once per stream (the id,
    /// created and model never change) and copied for each chunk.
    fn chunk_start(&mut self, out: &mut Vec<u8>) {
        if self.prefix.is_empty() {
            let mut p = b"data: {\"id\":".to_vec();
            let _ = serde_json::to_writer(&mut p, &self.meta.id);
            p.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
            p.extend_from_slice(self.meta.created.to_string().as_bytes());
            p.extend_from_slice(b",\"model\":");
            let _ = serde_json::to_writer(&mut p, &self.meta.model);
            p.extend_from_slice(b",\"choices\":[{\"index\":0,\"delta\":");
            self.prefix = p;
        }
        out.extend_from_slice(&self.prefix);
    }

    fn chunk_end(&self, out: &mut Vec<u8>, finish: Option<&str>) {
        out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => {
                out.push(b'"');
                out.extend_from_slice(f.as_bytes());
                out.push(b'"');
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}]");
        if self.include_usage {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.extend_from_slice(b"}\n\n");
    }

    /// A chunk whose delta is one string field (the hot path: content and reasoning).
    fn text_chunk(&mut self, out: &mut Vec<u8>, field: &str, text: &str) {
        self.chunk_start(out);
        out.extend_from_slice(b"{\"");
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\":");
        let _ = serde_json::to_writer(&mut *out, text);
        out.push(b'}');
        self.chunk_end(out, None);
    }

    fn finish_str(&self, reason: StopReason) -> &'static str {
        if self.meta.legacy_functions && reason == StopReason::ToolUse {
            "function_call"
        } else {
            finish_reason(reason)
        }
    }

    fn ensure_role(&mut self, out: &mut Vec<u8>) {
        if !self.role_sent {
            self.role_sent = true;
            self.chunk(out, json!({"role": "assistant", "content": ""}), None);
        }
    }

    /// Encodes one event.
    fn encode(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
        match e {
            StreamEvent::Start { .. } => self.ensure_role(out),
            StreamEvent::TextDelta(t) => {
                self.ensure_role(out);
                self.text_chunk(out, "content", t);
            }
            StreamEvent::ReasoningDelta(t) => {
                self.ensure_role(out);
                self.text_chunk(out, "reasoning_content", t);
            }
            StreamEvent::ToolCallStart { block, id, name } => {
                self.ensure_role(out);
                let index = self.tools.len();
                self.tools.push(*block);
                if self.meta.legacy_functions {
                    if index == 0 {
                        self.chunk(
                            out,
                            json!({"function_call": {"name": name, "arguments": ""}}),
                            None,
                        );
                    }
                    return;
                }
                self.chunk(
                    out,
                    json!({"tool_calls": [{
                        "index": index,
                        "id": id,
                        "type": "function",
                        "function": {"name": name, "arguments": ""},
                    }]}),
                    None,
                );
            }
            StreamEvent::ToolArgsDelta { block, json: args } => {
                match self.tools.iter().position(|b| b == block) {
                    Some(0) if self.meta.legacy_functions => {
                        self.chunk(out, json!({"function_call": {"arguments": args}}), None)
                    }
                    Some(_) if self.meta.legacy_functions => {}
                    Some(index) => self.chunk(
                        out,
                        json!({"tool_calls": [{"index": index, "function": {"arguments": args}}]}),
                        None,
                    ),
                    None => {}
                }
            }
            StreamEvent::ReasoningSignature(sig) => {
                self.ensure_role(out);
                self.chunk(
                    out,
                    json!({"thinking_blocks": [{"type": "thinking", "thinking": "", "signature": sig}]}),
                    None,
                );
            }
            StreamEvent::Stop { reason, .. } => {
                self.ensure_role(out);
                self.finish = Some(*reason);
                if !self.finish_sent {
                    self.finish_sent = true;
                    let f = self.finish_str(*reason);
                    self.chunk(out, json!({}), Some(f));
                }
            }
            StreamEvent::Usage(u) => self.usage = *u,
            StreamEvent::End => self.end(out),
            StreamEvent::Error(err) => self.error(err, out),
            StreamEvent::RedactedReasoning(data) => {
                self.ensure_role(out);
                self.chunk(
                    out,
                    json!({"thinking_blocks": [{"type": "redacted_thinking", "data": data}]}),
                    None,
                );
            }
            StreamEvent::BlockStop { .. } => {}
        }
    }

    /// Finishes a completed stream: finish chunk (if not sent), usage chunk, `[DONE]`.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        self.ensure_role(out);
        if !self.finish_sent {
            self.finish_sent = true;
            let f = self.finish_str(self.finish.unwrap_or_default());
            self.chunk(out, json!({}), Some(f));
        }
        if self.include_usage {
            push_data(
                out,
                &json!({
                    "id": self.meta.id,
                    "object": "chat.completion.chunk",
                    "created": self.meta.created,
                    "model": self.meta.model,
                    "choices": [],
                    "usage": usage_value(&self.usage),
                }),
            );
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// Ends the stream with an in-band error event and `[DONE]`.
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        push_data(out, &err.to_value());
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

impl StreamEncoder for OpenaiStreamEncoder {
    fn event(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
        self.encode(e, out);
    }

    fn close_relay(&mut self, _usage: Usage, out: &mut Vec<u8>) {
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}
