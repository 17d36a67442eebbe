//! Stream encoders: IR [`StreamEvent`]s into the caller's target format as SSE bytes.

use super::StreamEvent;
use crate::anthropic;
use crate::error::GatewayError;
use crate::ir::{StopReason, Usage};
use crate::openai::{self, ResponseMeta};
use crate::titan;
use serde_json::{json, Value};

/// Appends `data: <json>\n\n`.
pub fn push_data(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}

/// Appends `event: <name>\ndata: <json>\n\n` (Anthropic's framing).
pub fn push_event(out: &mut Vec<u8>, name: &str, v: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    push_data(out, v);
}

/// OpenAI `chat.completion.chunk` encoder.
#[derive(Debug)]
pub struct OpenaiEncoder {
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

impl OpenaiEncoder {
    /// An encoder for one response.
    pub fn new(meta: ResponseMeta, include_usage: bool) -> OpenaiEncoder {
        OpenaiEncoder {
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
            openai::finish_reason(reason)
        }
    }

    fn ensure_role(&mut self, out: &mut Vec<u8>) {
        if !self.role_sent {
            self.role_sent = true;
            self.chunk(out, json!({"role": "assistant", "content": ""}), None);
        }
    }

    /// Encodes one event.
    pub fn event(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
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
                    "usage": openai::usage_value(&self.usage),
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    Tool(u32),
}

/// Anthropic Messages stream encoder (`target_format=bedrock_claude`).
#[derive(Debug)]
pub struct AnthropicEncoder {
    meta: ResponseMeta,
    started: bool,
    open: Option<(usize, BlockKind)>,
    next_index: usize,
    stop: Option<(StopReason, Option<String>)>,
    usage: Usage,
}

impl AnthropicEncoder {
    /// An encoder for one response.
    pub fn new(meta: ResponseMeta) -> AnthropicEncoder {
        AnthropicEncoder {
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
        let mut usage = anthropic::usage_value(&self.usage);
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
    pub fn event(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
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
                "delta": {"stop_reason": anthropic::stop_reason_str(reason), "stop_sequence": seq},
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

    /// Ends the stream with an Anthropic `error` event (which also carries the OpenAI shape).
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        let etype = match err.status {
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            400 | 404 | 413 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            _ => "api_error",
        };
        push_event(
            out,
            "error",
            &json!({"type": "error", "error": {
                "type": etype,
                "message": err.message,
                "code": err.code,
                "param": err.param,
            }}),
        );
    }
}

/// Titan-style chunk encoder (`target_format=bedrock_titan`): one `data:` line per chunk.
#[derive(Debug, Default)]
pub struct TitanEncoder {
    stop: Option<StopReason>,
    usage: Usage,
}

impl TitanEncoder {
    /// An encoder for one response.
    pub fn new() -> TitanEncoder {
        TitanEncoder::default()
    }

    /// Encodes one event.
    pub fn event(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
        match e {
            StreamEvent::TextDelta(t) => push_data(
                out,
                &json!({"outputText": t, "index": 0, "totalOutputTextTokenCount": null,
                        "completionReason": null, "inputTextTokenCount": null}),
            ),
            StreamEvent::Stop { reason, .. } => self.stop = Some(*reason),
            StreamEvent::Usage(u) => self.usage = *u,
            StreamEvent::End => self.end(out),
            StreamEvent::Error(err) => self.error(err, out),
            _ => {}
        }
    }

    /// The final chunk with the completion reason and counts.
    pub fn end(&mut self, out: &mut Vec<u8>) {
        push_data(
            out,
            &json!({
                "outputText": "",
                "index": 0,
                "totalOutputTextTokenCount": self.usage.completion_tokens,
                "completionReason": titan::stop_reason_str(self.stop.unwrap_or_default()),
                "inputTextTokenCount": self.usage.prompt_tokens,
                "amazon-bedrock-invocationMetrics": {
                    "inputTokenCount": self.usage.prompt_tokens,
                    "outputTokenCount": self.usage.completion_tokens,
                },
            }),
        );
    }

    /// An error chunk (Bedrock's `message` next to the OpenAI `error` object).
    pub fn error(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        let mut v = err.to_value();
        if let Some(o) = v.as_object_mut() {
            o.insert("message".into(), json!(err.message));
        }
        push_data(out, &v);
    }
}
