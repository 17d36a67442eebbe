//! Anthropic Messages streams: Claude's events inside Bedrock's InvokeModelWithResponseStream
//! frames, decoded into IR events, and the Messages SSE encoder (`event:` + `data:` lines).

use super::response::{parse_stop_reason, stop_reason_str, usage_value};
use crate::error::GatewayError;
use crate::formats::bedrock::{chunk_bytes, not_json, without_metrics, FrameHandler, Metrics};
use crate::ir::{ResponseMeta, StopReason, Usage};
use crate::stream::{push_event, Decoded, StreamEncoder, StreamEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;

/// A string field that borrows from the input unless it had escapes.
type Str<'a> = Cow<'a, str>;

fn owned(s: Option<Str<'_>>) -> String {
    s.map(Cow::into_owned).unwrap_or_default()
}

fn block_id(index: u64) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

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

/// Decodes Claude's events from InvokeModelWithResponseStream `chunk` frames.
#[derive(Debug, Default)]
pub struct AnthropicFrames {
    usage: Usage,
}

impl FrameHandler for AnthropicFrames {
    fn event(&mut self, kind: &str, payload: &[u8], out: &mut Decoded) {
        if kind != "chunk" {
            return;
        }
        // InvokeModelWithResponseStream wraps each model event in base64 `bytes` (next to
        // random `p` padding, which is ignored).
        let Some(inner) = chunk_bytes(payload) else {
            out.event(StreamEvent::Error(crate::formats::bedrock::stream_failure(
                "Bedrock sent a chunk without decodable `bytes`.".into(),
            )));
            return;
        };
        match serde_json::from_slice::<AnthropicEvent<'_>>(&inner) {
            Ok(ev) => self.anthropic_event(ev, &inner, out),
            Err(_) => out.event(not_json("chunk")),
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }
}

impl AnthropicFrames {
    fn anthropic_usage(u: AnthropicUsage) -> Usage {
        Usage::from_uncached(
            u.input_tokens.unwrap_or(0),
            u.output_tokens.unwrap_or(0),
            u.cache_read_input_tokens.unwrap_or(0),
            u.cache_creation_input_tokens.unwrap_or(0),
        )
    }

    fn anthropic_event(&mut self, ev: AnthropicEvent<'_>, raw: &[u8], out: &mut Decoded) {
        let had_metrics = ev.metrics.is_some();
        if let Some(m) = ev.metrics {
            m.apply(&mut self.usage);
        }
        let kind = ev.kind.as_ref();
        // The raw event goes first, so pass-through output keeps the provider's order; errors
        // are rendered by the encoder instead.
        if kind != "ping" && kind != "error" {
            let json = without_metrics(raw, had_metrics);
            let mut framed = Vec::with_capacity(json.len() + kind.len() + 16);
            framed.extend_from_slice(b"event: ");
            framed.extend_from_slice(kind.as_bytes());
            framed.extend_from_slice(b"\ndata: ");
            framed.extend_from_slice(&json);
            framed.extend_from_slice(b"\n\n");
            out.raw(framed, false);
        }
        let block = block_id(ev.index);
        match kind {
            "message_start" => {
                let msg = ev.message;
                if let Some(u) = msg.as_ref().and_then(|m| m.usage) {
                    self.usage = Self::anthropic_usage(u);
                }
                out.event(StreamEvent::Start {
                    id: msg.and_then(|m| m.id).map(Cow::into_owned),
                    usage: self.usage,
                });
            }
            "content_block_start" => {
                let Some(cb) = ev.content_block else { return };
                match cb.kind.as_deref() {
                    Some("tool_use") => out.event(StreamEvent::ToolCallStart {
                        block,
                        id: owned(cb.id),
                        name: owned(cb.name),
                    }),
                    Some("text") => {
                        let t = owned(cb.text);
                        if !t.is_empty() {
                            out.event(StreamEvent::TextDelta(t));
                        }
                    }
                    Some("redacted_thinking") => {
                        out.event(StreamEvent::RedactedReasoning(owned(cb.data)))
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let Some(d) = ev.delta else { return };
                match d.kind.as_deref() {
                    Some("text_delta") => out.event(StreamEvent::TextDelta(owned(d.text))),
                    Some("input_json_delta") => out.event(StreamEvent::ToolArgsDelta {
                        block,
                        json: owned(d.partial_json),
                    }),
                    Some("thinking_delta") => {
                        out.event(StreamEvent::ReasoningDelta(owned(d.thinking)))
                    }
                    Some("signature_delta") => {
                        out.event(StreamEvent::ReasoningSignature(owned(d.signature)))
                    }
                    _ => {}
                }
            }
            "content_block_stop" => out.event(StreamEvent::BlockStop { block }),
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
                        out.event(StreamEvent::Stop {
                            reason: parse_stop_reason(&r),
                            stop_sequence: d.stop_sequence.map(Cow::into_owned),
                        });
                    }
                }
            }
            "message_stop" => {
                out.event(StreamEvent::Usage(self.usage));
                out.event(StreamEvent::End);
            }
            "error" => {
                let (etype, message) = match ev.error {
                    Some(e) => (owned(e.kind), owned(e.message)),
                    None => (String::new(), String::new()),
                };
                let (status, kind) = super::errors::from_error_type(&etype);
                out.event(StreamEvent::Error(
                    GatewayError::new(status, kind, message).with_code(etype),
                ));
            }
            _ => {}
        }
        if had_metrics && kind != "message_stop" {
            out.event(StreamEvent::Usage(self.usage));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    Tool(u32),
}

/// Anthropic Messages stream encoder.
#[derive(Debug)]
pub struct AnthropicStreamEncoder {
    meta: ResponseMeta,
    started: bool,
    open: Option<(usize, BlockKind)>,
    next_index: usize,
    stop: Option<(StopReason, Option<String>)>,
    usage: Usage,
}

impl AnthropicStreamEncoder {
    /// An encoder for one response.
    pub fn new(meta: ResponseMeta) -> AnthropicStreamEncoder {
        AnthropicStreamEncoder {
            meta,
            started: false,
            open: None,
            next_index: 0,
            stop: None,
            usage: Usage::default(),
        }
    }

    fn start(&mut self, id: Option<&str>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = match id {
            Some(own) if own.starts_with("msg_") => own.to_string(),
            _ => self.meta.id.clone(),
        };
        let mut usage = usage_value(&self.usage);
        if let Some(u) = usage.as_object_mut() {
            // Clients expect a positive running count here; Anthropic itself sends 1.
            u.insert(
                "output_tokens".into(),
                json!(self.usage.completion_tokens.max(1)),
            );
        }
        push_event(
            out,
            "message_start",
            &json!({"type": "message_start", "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": self.meta.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": usage,
            }}),
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            push_event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    fn open(&mut self, kind: BlockKind, block: Value, out: &mut Vec<u8>) -> usize {
        if let Some((index, k)) = self.open {
            if k == kind {
                return index;
            }
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        self.open = Some((index, kind));
        push_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        index
    }

    fn delta(out: &mut Vec<u8>, index: usize, delta: Value) {
        push_event(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    /// Encodes one event.
    fn encode(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
        match e {
            StreamEvent::Start { id, usage } => {
                self.usage = *usage;
                self.start(id.as_deref(), out);
            }
            StreamEvent::TextDelta(t) => {
                self.start(None, out);
                let i = self.open(BlockKind::Text, json!({"type": "text", "text": ""}), out);
                out.extend_from_slice(
                    b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
                );
                out.extend_from_slice(i.to_string().as_bytes());
                out.extend_from_slice(b",\"delta\":{\"type\":\"text_delta\",\"text\":");
                let _ = serde_json::to_writer(&mut *out, t);
                out.extend_from_slice(b"}}\n\n");
            }
            StreamEvent::ReasoningDelta(t) => {
                self.start(None, out);
                let block = json!({"type": "thinking", "thinking": "", "signature": ""});
                let i = self.open(BlockKind::Thinking, block, out);
                Self::delta(out, i, json!({"type": "thinking_delta", "thinking": t}));
            }
            StreamEvent::ReasoningSignature(s) => {
                self.start(None, out);
                let block = json!({"type": "thinking", "thinking": "", "signature": ""});
                let i = self.open(BlockKind::Thinking, block, out);
                Self::delta(out, i, json!({"type": "signature_delta", "signature": s}));
            }
            StreamEvent::RedactedReasoning(data) => {
                self.start(None, out);
                self.close(out);
                let block = json!({"type": "redacted_thinking", "data": data});
                self.open(BlockKind::Thinking, block, out);
                self.close(out);
            }
            StreamEvent::ToolCallStart { block, id, name } => {
                self.start(None, out);
                self.close(out);
                let cb = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                self.open(BlockKind::Tool(*block), cb, out);
            }
            StreamEvent::ToolArgsDelta { block, json: args } => {
                if let Some((i, BlockKind::Tool(b))) = self.open {
                    if b == *block {
                        Self::delta(
                            out,
                            i,
                            json!({"type": "input_json_delta", "partial_json": args}),
                        );
                    }
                }
            }
            StreamEvent::BlockStop { .. } => self.close(out),
            StreamEvent::Stop {
                reason,
                stop_sequence,
            } => self.stop = Some((*reason, stop_sequence.clone())),
            StreamEvent::Usage(u) => self.usage = *u,
            StreamEvent::End => self.end(out),
            StreamEvent::Error(err) => self.error(err, out),
        }
    }

    /// Finishes a completed stream: `message_delta` with stop reason and usage, `message_stop`.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        self.start(None, out);
        self.close(out);
        let (reason, seq) = self.stop.clone().unwrap_or((StopReason::EndTurn, None));
        push_event(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason_str(reason), "stop_sequence": seq},
                "usage": {
                    "input_tokens": self.usage.uncached_prompt_tokens(),
                    "cache_creation_input_tokens": self.usage.cache_write_tokens,
                    "cache_read_input_tokens": self.usage.cache_read_tokens,
                    "output_tokens": self.usage.completion_tokens,
                },
            }),
        );
        push_event(out, "message_stop", &json!({"type": "message_stop"}));
    }

    /// Ends the stream with an Anthropic `error` event.
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        push_event(
            out,
            "error",
            &json!({"type": "error", "error": super::errors::error_object(err)}),
        );
    }
}

impl StreamEncoder for AnthropicStreamEncoder {
    fn event(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
        self.encode(e, out);
    }

    fn close_relay(&mut self, _usage: Usage, out: &mut Vec<u8>) {
        push_event(out, "message_stop", &json!({"type": "message_stop"}));
    }
}
