//! Streaming: upstream bytes (AWS event-stream or SSE, split anywhere) in, the caller's
//! target-format SSE out, one body chunk at a time.
//!
//! [`StreamTranslator`] holds at most one incomplete upstream frame or event plus the output
//! of the current chunk, so memory per stream does not grow with the answer.

pub mod decode;
pub mod encode;
pub mod eventstream;
pub mod sse;

use crate::anthropic::STRUCTURED_OUTPUT_TOOL;
use crate::detect::Format;
use crate::error::GatewayError;
use crate::ir::{StopReason, Usage};
use crate::plan::ResponsePlan;
use crate::route::UpstreamApi;
use decode::{Item, Raw, UpstreamDecoder};
use encode::{push_event, AnthropicEncoder, OpenaiEncoder, TitanEncoder};

/// One event of a streamed answer, in canonical form.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// The message started (usage holds what is known at the start: prompt tokens).
    Start {
        /// Provider message id.
        id: Option<String>,
        /// Usage known so far.
        usage: Usage,
    },
    /// A piece of answer text.
    TextDelta(String),
    /// A piece of reasoning text.
    ReasoningDelta(String),
    /// The reasoning block's signature.
    ReasoningSignature(String),
    /// A redacted reasoning block.
    RedactedReasoning(String),
    /// A tool call starts; `block` identifies it in later deltas.
    ToolCallStart {
        /// Upstream block id.
        block: u32,
        /// Tool call id.
        id: String,
        /// Function name.
        name: String,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolArgsDelta {
        /// Upstream block id.
        block: u32,
        /// The fragment.
        json: String,
    },
    /// An upstream content block ended.
    BlockStop {
        /// Upstream block id.
        block: u32,
    },
    /// Usage as known now (replaces earlier values).
    Usage(Usage),
    /// Why the model stopped.
    Stop {
        /// The reason.
        reason: StopReason,
        /// Which stop sequence matched, when known.
        stop_sequence: Option<String>,
    },
    /// The upstream failed mid-stream.
    Error(GatewayError),
    /// The upstream finished the message.
    End,
}

#[derive(Debug)]
enum Encoder {
    Openai(OpenaiEncoder),
    Anthropic(AnthropicEncoder),
    Titan(TitanEncoder),
}

impl Encoder {
    fn event(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
        match self {
            Encoder::Openai(x) => x.event(e, out),
            Encoder::Anthropic(x) => x.event(e, out),
            Encoder::Titan(x) => x.event(e, out),
        }
    }
}

/// Whether upstream events are re-emitted as they are (same format on both sides).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passthrough {
    /// Everything goes through the IR.
    No,
    /// Anthropic events from Bedrock re-emitted as Anthropic SSE.
    Anthropic,
    /// Titan chunks re-emitted as `data:` lines.
    Titan,
    /// OpenAI SSE bytes forwarded as received.
    Openai,
}

/// Translates one streamed response.
#[derive(Debug)]
pub struct StreamTranslator {
    decoder: UpstreamDecoder,
    encoder: Encoder,
    passthrough: Passthrough,
    include_usage: bool,
    structured: bool,
    structured_block: Option<u32>,
    stopped: bool,
    finished: bool,
    chunks: u64,
}

impl StreamTranslator {
    /// A translator for the response described by `plan`.
    pub fn new(plan: &ResponsePlan) -> StreamTranslator {
        let encoder = match plan.target {
            Format::Openai => {
                Encoder::Openai(OpenaiEncoder::new(plan.meta.clone(), plan.include_usage))
            }
            Format::BedrockClaude => Encoder::Anthropic(AnthropicEncoder::new(plan.meta.clone())),
            Format::BedrockTitan => Encoder::Titan(TitanEncoder::new()),
        };
        let passthrough = match (plan.api, plan.target) {
            (UpstreamApi::BedrockAnthropic, Format::BedrockClaude) if !plan.structured => {
                Passthrough::Anthropic
            }
            (UpstreamApi::BedrockTitan, Format::BedrockTitan) => Passthrough::Titan,
            (UpstreamApi::OpenaiChat, Format::Openai) => Passthrough::Openai,
            _ => Passthrough::No,
        };
        StreamTranslator {
            decoder: UpstreamDecoder::new(plan.api),
            encoder,
            passthrough,
            include_usage: plan.include_usage,
            structured: plan.structured,
            structured_block: None,
            stopped: false,
            finished: false,
            chunks: 0,
        }
    }

    /// Usage reported by the upstream so far (recorded even when the client did not ask).
    pub fn usage(&self) -> Usage {
        self.decoder.usage()
    }

    /// Whether the client-facing stream is complete (normally or with an error event).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Number of upstream body chunks seen.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// Bytes held for an incomplete upstream frame or event.
    pub fn buffered(&self) -> usize {
        self.decoder.buffered()
    }

    /// Translates one upstream body chunk; `end` marks the end of the upstream body. Returns
    /// the bytes to send to the client for this chunk (possibly empty).
    pub fn push(&mut self, bytes: &[u8], end: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() + 128);
        self.chunks += 1;
        if self.finished {
            return out;
        }
        let decoded = self.decoder.push(bytes, end);
        for item in decoded.items {
            if self.finished {
                break;
            }
            match item {
                Item::Raw(raw) => self.raw(raw, &mut out),
                Item::Event(e) => {
                    if let Some(e) = self.structured_filter(e) {
                        self.event(e, &mut out);
                    }
                }
            }
        }
        if end && !self.finished {
            self.finish_at_eof(&mut out);
        }
        if self.finished {
            self.decoder.discard();
        }
        out
    }

    /// Ends the client stream when the upstream connection failed mid-stream.
    pub fn abort(&mut self, message: &str) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.finished {
            let err = GatewayError::bad_gateway(message).with_code("upstream_stream_error");
            self.event(StreamEvent::Error(err), &mut out);
        }
        out
    }

    fn finish_at_eof(&mut self, out: &mut Vec<u8>) {
        if self.stopped {
            // The model finished but the closing event never came: close cleanly.
            match self.passthrough {
                Passthrough::Anthropic => push_event(
                    out,
                    "message_stop",
                    &serde_json::json!({"type": "message_stop"}),
                ),
                Passthrough::Openai => out.extend_from_slice(b"data: [DONE]\n\n"),
                Passthrough::Titan | Passthrough::No => {
                    self.encoder
                        .event(&StreamEvent::Usage(self.decoder.usage()), out);
                    self.encoder.event(&StreamEvent::End, out);
                }
            }
            self.finished = true;
        } else {
            let err = GatewayError::bad_gateway(
                "The upstream stream ended before the answer was complete.",
            )
            .with_code("upstream_stream_truncated");
            self.event(StreamEvent::Error(err), out);
        }
    }

    fn raw(&mut self, raw: Raw, out: &mut Vec<u8>) {
        match (raw, self.passthrough) {
            (Raw::Anthropic(name, json), Passthrough::Anthropic) => {
                out.extend_from_slice(b"event: ");
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\ndata: ");
                out.extend_from_slice(&json);
                out.extend_from_slice(b"\n\n");
            }
            (Raw::Titan(json), Passthrough::Titan) => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&json);
                out.extend_from_slice(b"\n\n");
            }
            (Raw::OpenaiSse(bytes, usage_only), Passthrough::Openai)
                if !usage_only || self.include_usage =>
            {
                out.extend_from_slice(&bytes);
            }
            _ => {}
        }
    }

    fn structured_filter(&mut self, e: StreamEvent) -> Option<StreamEvent> {
        if !self.structured {
            return Some(e);
        }
        match e {
            StreamEvent::ToolCallStart {
                block, ref name, ..
            } if name == STRUCTURED_OUTPUT_TOOL => {
                self.structured_block = Some(block);
                None
            }
            StreamEvent::ToolArgsDelta { block, json } if Some(block) == self.structured_block => {
                Some(StreamEvent::TextDelta(json))
            }
            StreamEvent::Stop {
                reason: StopReason::ToolUse,
                stop_sequence,
            } if self.structured_block.is_some() => Some(StreamEvent::Stop {
                reason: StopReason::EndTurn,
                stop_sequence,
            }),
            other => Some(other),
        }
    }

    fn event(&mut self, e: StreamEvent, out: &mut Vec<u8>) {
        match &e {
            StreamEvent::Stop { .. } => self.stopped = true,
            StreamEvent::End => {
                if self.passthrough == Passthrough::No {
                    self.encoder.event(&e, out);
                }
                self.finished = true;
                return;
            }
            StreamEvent::Error(_) => {
                self.encoder.event(&e, out);
                self.finished = true;
                return;
            }
            _ => {}
        }
        if self.passthrough == Passthrough::No {
            self.encoder.event(&e, out);
        }
    }
}

#[cfg(test)]
mod tests;
