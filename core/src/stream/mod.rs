//! Streaming: upstream bytes (AWS event-stream or SSE, split anywhere) in, the caller's
//! target-format SSE out, one body chunk at a time.
//!
//! Each format's module provides a [`StreamDecoder`] (its upstream stream into IR
//! [`StreamEvent`]s) and a [`StreamEncoder`] (IR events into its client stream);
//! [`StreamTranslator`] joins the two for one response. It holds at most one incomplete
//! upstream frame or event plus the output of the current chunk, so memory per stream does not
//! grow with the answer.

pub mod eventstream;
pub mod sse;

use crate::error::GatewayError;
use crate::formats;
use crate::formats::bedrock::STRUCTURED_OUTPUT_TOOL;
use crate::ir::{StopReason, Usage};
use crate::plan::ResponsePlan;

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

/// An upstream event already framed for a client of the same format (relayed streams).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw {
    /// The bytes to send as they are.
    pub bytes: Vec<u8>,
    /// A usage-only event (sent only to clients that asked for usage).
    pub usage_only: bool,
    /// The upstream's own closing event (a Responses `response.failed`): a relayed stream
    /// ends with it, and the IR events that follow it are for translated streams only.
    pub closing: bool,
}

/// One thing a push produced: an IR event, or a raw event for relayed streams.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// An IR event.
    Event(StreamEvent),
    /// A raw provider event (pushed before the IR events it gives rise to).
    Raw(Raw),
}

/// What one push produced, in order.
#[derive(Debug, Default)]
pub struct Decoded {
    /// Items in arrival order.
    pub items: Vec<Item>,
}

impl Decoded {
    /// Appends an IR event.
    pub fn event(&mut self, e: StreamEvent) {
        self.items.push(Item::Event(e));
    }

    /// Appends a raw event.
    pub fn raw(&mut self, bytes: Vec<u8>, usage_only: bool) {
        self.items.push(Item::Raw(Raw {
            bytes,
            usage_only,
            closing: false,
        }));
    }

    /// Appends a raw event that ends a relayed stream.
    pub fn raw_closing(&mut self, bytes: Vec<u8>) {
        self.items.push(Item::Raw(Raw {
            bytes,
            usage_only: false,
            closing: true,
        }));
    }
}

/// Decodes one upstream API's stream.
pub trait StreamDecoder: std::fmt::Debug {
    /// Feeds bytes; `end` says the upstream body ended.
    fn push(&mut self, bytes: &[u8], end: bool) -> Decoded;
    /// Usage reported so far.
    fn usage(&self) -> Usage;
    /// Bytes held for an incomplete frame or event.
    fn buffered(&self) -> usize;
    /// Drops any partial frame or event (the stream is over).
    fn discard(&mut self);
}

/// Encodes IR events as one format's client stream.
pub trait StreamEncoder: std::fmt::Debug {
    /// Encodes one event.
    fn event(&mut self, e: &StreamEvent, out: &mut Vec<u8>);

    /// Closes a relayed stream whose upstream stopped but never sent its closing event.
    fn close_relay(&mut self, usage: Usage, out: &mut Vec<u8>) {
        self.event(&StreamEvent::Usage(usage), out);
        self.event(&StreamEvent::End, out);
    }
}

/// A decoder for answers that are never streamed: it produces nothing.
#[derive(Debug, Default)]
pub struct NullDecoder;

impl StreamDecoder for NullDecoder {
    fn push(&mut self, _bytes: &[u8], _end: bool) -> Decoded {
        Decoded::default()
    }

    fn usage(&self) -> Usage {
        Usage::default()
    }

    fn buffered(&self) -> usize {
        0
    }

    fn discard(&mut self) {}
}

/// An encoder that writes nothing (for answers that are relayed, never encoded).
#[derive(Debug, Default)]
pub struct NullEncoder;

impl StreamEncoder for NullEncoder {
    fn event(&mut self, _e: &StreamEvent, _out: &mut Vec<u8>) {}
}

/// Appends `data: <json>\n\n`.
pub fn push_data(out: &mut Vec<u8>, v: &serde_json::Value) {
    out.extend_from_slice(b"data: ");
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
    out.extend_from_slice(b"\n\n");
}

/// Appends `event: <name>\ndata: <json>\n\n`.
pub fn push_event(out: &mut Vec<u8>, name: &str, v: &serde_json::Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.push(b'\n');
    push_data(out, v);
}

/// Translates one streamed response.
#[derive(Debug)]
pub struct StreamTranslator {
    decoder: Box<dyn StreamDecoder>,
    encoder: Box<dyn StreamEncoder>,
    relay: bool,
    include_usage: bool,
    structured: bool,
    structured_block: Option<u32>,
    stopped: bool,
    finished: bool,
    chunks: u64,
}

impl StreamTranslator {
    /// A translator for the response described by `plan` (whose target must be a client
    /// format).
    pub fn new(plan: &ResponsePlan) -> Result<StreamTranslator, GatewayError> {
        Ok(StreamTranslator {
            decoder: formats::upstream(plan.upstream).stream_decoder(),
            encoder: formats::client_or_error(plan.target)?
                .stream_encoder(&plan.meta, plan.include_usage),
            relay: plan.relay,
            include_usage: plan.include_usage,
            structured: plan.structured,
            structured_block: None,
            stopped: false,
            finished: false,
            chunks: 0,
        })
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
                Item::Raw(raw) => {
                    if self.relay && (!raw.usage_only || self.include_usage) {
                        out.extend_from_slice(&raw.bytes);
                        self.finished |= raw.closing;
                    }
                }
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
            let usage = self.decoder.usage();
            if self.relay {
                self.encoder.close_relay(usage, out);
            } else {
                self.encoder.event(&StreamEvent::Usage(usage), out);
                self.encoder.event(&StreamEvent::End, out);
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
                if !self.relay {
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
        if !self.relay {
            self.encoder.event(&e, out);
        }
    }
}

#[cfg(test)]
mod tests;
