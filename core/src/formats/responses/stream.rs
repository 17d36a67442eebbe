//! Responses streams: the encoder of the event grammar Responses clients parse, and the
//! decoder of OpenAI's own Responses stream (relayed byte for byte; read for usage).
//!
//! The grammar (every event `event: <type>` + `data: <json>`, each with the next
//! `sequence_number`, no `[DONE]`):
//!
//! ```text
//! response.created, response.in_progress
//! per output item (output_index 0, 1, …, one item at a time):
//!   response.output_item.added
//!     message:   content_part.added, output_text.delta*, output_text.done, content_part.done
//!     reasoning: reasoning_summary_part.added, reasoning_summary_text.delta*,
//!                reasoning_summary_text.done, reasoning_summary_part.done
//!     function:  function_call_arguments.delta*, function_call_arguments.done
//!     custom:    custom_tool_call_input.delta, custom_tool_call_input.done
//!   response.output_item.done
//! response.completed | response.incomplete | response.failed
//! ```
//!
//! The terminal event carries the whole Response, output included, so the encoder keeps the
//! answer it streamed: at most [`MAX_KEPT`] bytes of text, reasoning and arguments. An answer
//! that grows past that (no model writes one; only a runaway upstream would) is closed there:
//! the open item ends with what was kept, and the response ends `incomplete` with reason
//! `max_output_tokens`, as if the model had hit its limit; the rest of the upstream stream is
//! read (for usage) but not sent.

use super::reasoning;
use super::response::{
    call_item, custom_input, fixed_members, item_id, message_item, output_text, parse_usage,
    reasoning_item, status, usage_value, State,
};
use crate::error::{ErrorType, GatewayError};
use crate::ir::{Part, ResponseMeta, StopReason, Usage};
use crate::stream::sse::{SseDecoder, SseEvent};
use crate::stream::{push_event, Decoded, StreamDecoder, StreamEncoder, StreamEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;

/// Most bytes of answer (text, reasoning, arguments) kept for the terminal event: 8 MiB.
pub const MAX_KEPT: usize = 8 * 1024 * 1024;

/// What kind of output item is open.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Message,
    Reasoning {
        /// Whether the summary part was announced (on the first text).
        part: bool,
        signature: Option<String>,
    },
    Call {
        block: u32,
        call_id: String,
        name: String,
        custom: bool,
    },
}

/// The item being streamed.
#[derive(Debug)]
struct Open {
    index: usize,
    id: String,
    kind: Kind,
    /// Its text, reasoning or arguments so far.
    text: String,
}

/// Encodes IR stream events as a Responses event stream.
#[derive(Debug)]
pub struct ResponsesStreamEncoder {
    meta: ResponseMeta,
    /// The fixed members of this answer's Response object, serialized once (`{` + members).
    head: Vec<u8>,
    seq: u64,
    started: bool,
    /// The terminal event was sent; everything after is ignored.
    closed: bool,
    /// Finished output items, in output order.
    done: Vec<Value>,
    open: Option<Open>,
    stop: Option<StopReason>,
    usage: Usage,
    /// Bytes of answer kept in `done` and `open`.
    kept: usize,
    cap: usize,
    /// The answer outgrew `cap`.
    cut: bool,
}

impl ResponsesStreamEncoder {
    /// An encoder for one response.
    pub fn new(meta: ResponseMeta) -> ResponsesStreamEncoder {
        Self::with_cap(meta, MAX_KEPT)
    }

    /// An encoder that keeps at most `cap` bytes of answer.
    pub fn with_cap(meta: ResponseMeta, cap: usize) -> ResponsesStreamEncoder {
        let mut head = serde_json::to_vec(&fixed_members(&meta)).unwrap_or_default();
        // Keep the opening brace and the members; the state members follow.
        head.pop();
        ResponsesStreamEncoder {
            meta,
            head,
            seq: 0,
            started: false,
            closed: false,
            done: Vec::new(),
            open: None,
            stop: None,
            usage: Usage::default(),
            kept: 0,
            cap,
            cut: false,
        }
    }

    /// `event: <kind>` + `data: {"type": kind, "sequence_number": n, …fields}` (`type` and
    /// `sequence_number` first, as OpenAI writes them).
    fn emit(&mut self, out: &mut Vec<u8>, kind: &str, fields: &Value) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"sequence_number\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        let rest = serde_json::to_vec(fields).unwrap_or_default();
        match rest.get(1..) {
            // `fields` is an object: its members follow.
            Some(members) if members.len() > 1 => {
                out.push(b',');
                out.extend_from_slice(members);
            }
            _ => out.push(b'}'),
        }
        out.extend_from_slice(b"\n\n");
        self.seq += 1;
    }

    /// A delta event written directly (the hot path: one per upstream text chunk).
    fn emit_delta(&mut self, out: &mut Vec<u8>, kind: &str, index: usize, id: &str, tail: Tail) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"sequence_number\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"item_id\":");
        let _ = serde_json::to_writer(&mut *out, id);
        out.extend_from_slice(b",\"output_index\":");
        out.extend_from_slice(index.to_string().as_bytes());
        match tail {
            Tail::Text(d) => {
                out.extend_from_slice(b",\"content_index\":0,\"delta\":");
                let _ = serde_json::to_writer(&mut *out, d);
                out.extend_from_slice(b",\"logprobs\":[]");
            }
            Tail::Summary(d) => {
                out.extend_from_slice(b",\"summary_index\":0,\"delta\":");
                let _ = serde_json::to_writer(&mut *out, d);
            }
            Tail::Plain(d) => {
                out.extend_from_slice(b",\"delta\":");
                let _ = serde_json::to_writer(&mut *out, d);
            }
        }
        out.extend_from_slice(b"}\n\n");
        self.seq += 1;
    }

    /// A lifecycle event: `{"type", "sequence_number", "response": {…}}`, the Response object
    /// written from the serialized fixed members and the current state.
    fn emit_response(&mut self, out: &mut Vec<u8>, kind: &str, state: State<'_>) {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: {\"type\":\"");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\",\"sequence_number\":");
        out.extend_from_slice(self.seq.to_string().as_bytes());
        out.extend_from_slice(b",\"response\":");
        out.extend_from_slice(&self.head);
        if self.head.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"status\":");
        let _ = serde_json::to_writer(&mut *out, state.status);
        out.extend_from_slice(b",\"incomplete_details\":");
        match state.incomplete {
            Some(r) => {
                let _ = serde_json::to_writer(&mut *out, &json!({ "reason": r }));
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"error\":");
        match state.error {
            Some(e) => {
                let _ = serde_json::to_writer(&mut *out, &super::response::error_value(e));
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"output\":");
        let _ = serde_json::to_writer(&mut *out, state.output);
        out.extend_from_slice(b",\"usage\":");
        match state.usage {
            Some(u) => {
                let _ = serde_json::to_writer(&mut *out, &usage_value(u));
            }
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b"}}\n\n");
        self.seq += 1;
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let state = State {
            status: "in_progress",
            incomplete: None,
            output: &[],
            usage: None,
            error: None,
        };
        self.emit_response(out, "response.created", state);
        self.emit_response(out, "response.in_progress", state);
    }

    /// Counts `n` more bytes of kept answer; false (and the response closed) past the cap.
    fn keep(&mut self, n: usize, out: &mut Vec<u8>) -> bool {
        if self.kept.saturating_add(n) > self.cap {
            self.cut = true;
            self.close_item(out);
            self.finish(out);
            return false;
        }
        self.kept += n;
        true
    }

    /// Opens an item of `kind` unless one is open already (closing any other).
    fn open(&mut self, kind: Kind, out: &mut Vec<u8>) {
        let same = match (&self.open, &kind) {
            (Some(o), Kind::Message) => o.kind == Kind::Message,
            (Some(o), Kind::Reasoning { .. }) => matches!(o.kind, Kind::Reasoning { .. }),
            _ => false,
        };
        if same {
            return;
        }
        self.close_item(out);
        let index = self.done.len();
        let (id, item) = match &kind {
            Kind::Message => {
                let id = item_id(&self.meta, "msg", index);
                let item = json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []});
                (id, item)
            }
            Kind::Reasoning { .. } => {
                let id = item_id(&self.meta, "rs", index);
                let item = json!({"id": id, "type": "reasoning", "summary": []});
                (id, item)
            }
            Kind::Call { call_id, name, .. } => {
                let item = call_item(
                    &self.meta.echo.tools,
                    &self.meta,
                    index,
                    call_id,
                    name,
                    "",
                    "in_progress",
                );
                let id = item
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                // An empty call starts with empty arguments or input.
                let mut item = item;
                if let Some(o) = item.as_object_mut() {
                    if o.contains_key("arguments") {
                        o.insert("arguments".into(), json!(""));
                    }
                }
                (id, item)
            }
        };
        self.emit(
            out,
            "response.output_item.added",
            &json!({"output_index": index, "item": item}),
        );
        if kind == Kind::Message {
            self.emit(
                out,
                "response.content_part.added",
                &json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text("")}),
            );
        }
        self.open = Some(Open {
            index,
            id,
            kind,
            text: String::new(),
        });
    }

    fn text(&mut self, t: &str, out: &mut Vec<u8>) {
        if t.is_empty() {
            return;
        }
        self.start(out);
        self.open(Kind::Message, out);
        if !self.keep(t.len(), out) {
            return;
        }
        if let Some(o) = self.open.as_mut() {
            o.text.push_str(t);
            let (index, id) = (o.index, o.id.clone());
            self.emit_delta(out, "response.output_text.delta", index, &id, Tail::Text(t));
        }
    }

    fn reasoning(&mut self, t: &str, out: &mut Vec<u8>) {
        if t.is_empty() {
            return;
        }
        self.start(out);
        self.open(
            Kind::Reasoning {
                part: false,
                signature: None,
            },
            out,
        );
        if !self.keep(t.len(), out) {
            return;
        }
        let Some(o) = self.open.as_mut() else { return };
        let (index, id) = (o.index, o.id.clone());
        o.text.push_str(t);
        let announce = match &mut o.kind {
            Kind::Reasoning { part, .. } => !std::mem::replace(part, true),
            _ => false,
        };
        if announce {
            self.emit(
                out,
                "response.reasoning_summary_part.added",
                &json!({"item_id": id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": ""}}),
            );
        }
        self.emit_delta(
            out,
            "response.reasoning_summary_text.delta",
            index,
            &id,
            Tail::Summary(t),
        );
    }

    fn signature(&mut self, sig: &str, out: &mut Vec<u8>) {
        self.start(out);
        self.open(
            Kind::Reasoning {
                part: false,
                signature: None,
            },
            out,
        );
        if !self.keep(sig.len(), out) {
            return;
        }
        if let Some(Open {
            kind: Kind::Reasoning { signature, .. },
            ..
        }) = self.open.as_mut()
        {
            signature.get_or_insert_with(String::new).push_str(sig);
        }
    }

    fn redacted(&mut self, data: &str, out: &mut Vec<u8>) {
        self.start(out);
        self.close_item(out);
        // Redacted thinking says nothing to a reader; it only matters sent back next turn.
        if !self.meta.echo.replayable_reasoning || !self.keep(data.len(), out) {
            return;
        }
        let index = self.done.len();
        let id = item_id(&self.meta, "rs", index);
        let sealed = reasoning::seal(&Part::RedactedReasoning {
            data: data.to_string(),
        });
        let item = reasoning_item(&id, "", sealed);
        let mut added = item.clone();
        if let Some(o) = added.as_object_mut() {
            o.remove("encrypted_content");
        }
        self.emit(
            out,
            "response.output_item.added",
            &json!({"output_index": index, "item": added}),
        );
        self.emit(
            out,
            "response.output_item.done",
            &json!({"output_index": index, "item": item}),
        );
        self.done.push(item);
    }

    fn tool_start(&mut self, block: u32, call_id: &str, name: &str, out: &mut Vec<u8>) {
        self.start(out);
        self.close_item(out);
        let custom = super::tools::alias(&self.meta.echo.tools, name).is_some_and(|a| a.custom);
        self.open(
            Kind::Call {
                block,
                call_id: call_id.to_string(),
                name: name.to_string(),
                custom,
            },
            out,
        );
    }

    fn tool_args(&mut self, block: u32, json: &str, out: &mut Vec<u8>) {
        let custom = match &self.open {
            Some(Open {
                kind: Kind::Call {
                    block: b, custom, ..
                },
                ..
            }) if *b == block => *custom,
            // Arguments of a call that is not the open one (already closed): dropped, as
            // items are streamed one at a time.
            _ => return,
        };
        if json.is_empty() || !self.keep(json.len(), out) {
            return;
        }
        if let Some(o) = self.open.as_mut() {
            o.text.push_str(json);
            let (index, id) = (o.index, o.id.clone());
            // A custom tool's input is the string inside the arguments: sent whole at the end.
            if !custom {
                self.emit_delta(
                    out,
                    "response.function_call_arguments.delta",
                    index,
                    &id,
                    Tail::Plain(json),
                );
            }
        }
    }

    fn block_stop(&mut self, block: u32, out: &mut Vec<u8>) {
        // Text runs on across blocks (one message per run of text); reasoning and calls end
        // with their block.
        let ends = match &self.open {
            Some(Open {
                kind: Kind::Reasoning { .. },
                ..
            }) => true,
            Some(Open {
                kind: Kind::Call { block: b, .. },
                ..
            }) => *b == block,
            _ => false,
        };
        if ends {
            self.close_item(out);
        }
    }

    /// Ends the open item: its done events and `output_item.done`.
    fn close_item(&mut self, out: &mut Vec<u8>) {
        let Some(Open {
            index,
            id,
            kind,
            text,
        }) = self.open.take()
        else {
            return;
        };
        let item = match kind {
            Kind::Message => {
                // The answer's last words are cut when the response is incomplete.
                let cut_short = self.cut || self.stop.is_some_and(|s| status(s).0 == "incomplete");
                let status = if cut_short { "incomplete" } else { "completed" };
                self.emit(
                    out,
                    "response.output_text.done",
                    &json!({"item_id": id, "output_index": index, "content_index": 0, "text": text, "logprobs": []}),
                );
                self.emit(
                    out,
                    "response.content_part.done",
                    &json!({"item_id": id, "output_index": index, "content_index": 0, "part": output_text(&text)}),
                );
                message_item(&id, &text, status)
            }
            Kind::Reasoning { part, signature } => {
                if part {
                    self.emit(
                        out,
                        "response.reasoning_summary_text.done",
                        &json!({"item_id": id, "output_index": index, "summary_index": 0, "text": text}),
                    );
                    self.emit(
                        out,
                        "response.reasoning_summary_part.done",
                        &json!({"item_id": id, "output_index": index, "summary_index": 0, "part": {"type": "summary_text", "text": text}}),
                    );
                }
                let sealed = if self.meta.echo.replayable_reasoning {
                    reasoning::seal(&Part::Reasoning {
                        text: text.clone(),
                        signature,
                    })
                } else {
                    None
                };
                reasoning_item(&id, &text, sealed)
            }
            Kind::Call {
                call_id,
                name,
                custom,
                ..
            } => {
                let item = call_item(
                    &self.meta.echo.tools,
                    &self.meta,
                    index,
                    &call_id,
                    &name,
                    &text,
                    "completed",
                );
                let client_name = item.get("name").cloned().unwrap_or(Value::Null);
                if custom {
                    let input = custom_input(&text);
                    if !input.is_empty() {
                        self.emit_delta(
                            out,
                            "response.custom_tool_call_input.delta",
                            index,
                            &id,
                            Tail::Plain(&input),
                        );
                    }
                    self.emit(
                        out,
                        "response.custom_tool_call_input.done",
                        &json!({"item_id": id, "output_index": index, "input": input}),
                    );
                } else {
                    let arguments = item.get("arguments").cloned().unwrap_or(Value::Null);
                    self.emit(
                        out,
                        "response.function_call_arguments.done",
                        &json!({"item_id": id, "output_index": index, "name": client_name, "arguments": arguments}),
                    );
                }
                item
            }
        };
        self.emit(
            out,
            "response.output_item.done",
            &json!({"output_index": index, "item": item}),
        );
        self.done.push(item);
    }

    /// The terminal event of a finished answer.
    fn finish(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.start(out);
        self.close_item(out);
        let (st, incomplete) = if self.cut {
            ("incomplete", Some("max_output_tokens"))
        } else {
            status(self.stop.unwrap_or_default())
        };
        let kind = if st == "completed" {
            "response.completed"
        } else {
            "response.incomplete"
        };
        let (usage, done) = (self.usage, std::mem::take(&mut self.done));
        let state = State {
            status: st,
            incomplete,
            output: &done,
            usage: Some(&usage),
            error: None,
        };
        self.emit_response(out, kind, state);
        self.closed = true;
    }

    /// Ends the stream with `response.failed` (the items finished so far, the error with the
    /// code clients act on).
    fn fail(&mut self, err: &GatewayError, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        self.start(out);
        // The unfinished item is not reported as done.
        self.open = None;
        let (usage, done) = (self.usage, std::mem::take(&mut self.done));
        let state = State {
            status: "failed",
            incomplete: None,
            output: &done,
            usage: Some(&usage),
            error: Some(err),
        };
        self.emit_response(out, "response.failed", state);
        self.closed = true;
    }
}

/// The end of a hand-written delta event.
enum Tail<'a> {
    /// `content_index` 0, `delta`, `logprobs`.
    Text(&'a str),
    /// `summary_index` 0, `delta`.
    Summary(&'a str),
    /// `delta` only.
    Plain(&'a str),
}

impl StreamEncoder for ResponsesStreamEncoder {
    fn event(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        match e {
            StreamEvent::Start { usage, .. } => {
                self.usage = *usage;
                self.start(out);
            }
            StreamEvent::TextDelta(t) => self.text(t, out),
            StreamEvent::ReasoningDelta(t) => self.reasoning(t, out),
            StreamEvent::ReasoningSignature(s) => self.signature(s, out),
            StreamEvent::RedactedReasoning(d) => self.redacted(d, out),
            StreamEvent::ToolCallStart { block, id, name } => {
                self.tool_start(*block, id, name, out)
            }
            StreamEvent::ToolArgsDelta { block, json } => self.tool_args(*block, json, out),
            StreamEvent::BlockStop { block } => self.block_stop(*block, out),
            StreamEvent::Usage(u) => self.usage = *u,
            StreamEvent::Stop { reason, .. } => self.stop = Some(*reason),
            StreamEvent::End => self.finish(out),
            StreamEvent::Error(err) => self.fail(err, out),
        }
    }

    fn close_relay(&mut self, _usage: Usage, _out: &mut Vec<u8>) {
        // A relayed Responses stream stops and ends with the same upstream event
        // (`response.completed`), so there is never a stopped stream left to close.
    }
}

/// A string field that borrows from the input unless it had escapes.
type Str<'a> = Cow<'a, str>;

#[derive(Deserialize)]
struct ItemHead<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Str<'a>,
    #[serde(borrow)]
    call_id: Option<Str<'a>>,
    #[serde(borrow)]
    name: Option<Str<'a>>,
    #[serde(borrow)]
    namespace: Option<Str<'a>>,
    #[serde(borrow)]
    input: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct Incomplete<'a> {
    #[serde(borrow)]
    reason: Option<Str<'a>>,
}

/// The `response` of a lifecycle event (its `output` is skipped).
#[derive(Deserialize)]
struct Lifecycle<'a> {
    #[serde(borrow)]
    id: Option<Str<'a>>,
    #[serde(borrow)]
    status: Option<Str<'a>>,
    #[serde(borrow)]
    incomplete_details: Option<Incomplete<'a>>,
    usage: Option<Value>,
    error: Option<Value>,
    created_at: Option<u64>,
    #[serde(borrow)]
    model: Option<Str<'a>>,
}

/// One event of OpenAI's Responses stream (unknown fields ignored).
#[derive(Deserialize)]
struct UpstreamEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Str<'a>,
    #[serde(borrow)]
    delta: Option<Str<'a>>,
    output_index: Option<u64>,
    #[serde(borrow)]
    item: Option<ItemHead<'a>>,
    #[serde(borrow)]
    response: Option<Lifecycle<'a>>,
    sequence_number: Option<u64>,
    #[serde(borrow)]
    code: Option<Str<'a>>,
    #[serde(borrow)]
    message: Option<Str<'a>>,
}

/// Decodes OpenAI's Responses stream: every event is passed on raw (relayed streams), and
/// read into IR events (usage, text, calls, the end).
///
/// A stream that breaks off (cut in the middle, or ended without a terminal event, or sent
/// something unreadable) gets a closing `response.failed` of its own, numbered after the last
/// upstream event and carrying the upstream's response id, so a relayed client sees a
/// well-formed end; translated clients get the failure as an IR error.
#[derive(Debug, Default)]
pub struct ResponsesStreamDecoder {
    sse: SseDecoder,
    usage: Usage,
    calls: bool,
    /// The `output_index` of the custom tool call in progress (its input arrives whole).
    custom: Option<u64>,
    /// The upstream's response id (from `response.created`).
    id: Option<String>,
    /// `created_at` and `model` of that response, for a closing `response.failed` of our own.
    created: Option<(u64, String)>,
    /// The last upstream `sequence_number`.
    seq: Option<u64>,
    /// A terminal event was seen (or made).
    ended: bool,
}

fn block(index: Option<u64>) -> u32 {
    u32::try_from(index.unwrap_or(0)).unwrap_or(u32::MAX)
}

/// The gateway error for a failure OpenAI reported in the stream.
fn upstream_failure(code: Option<&str>, message: Option<&str>) -> GatewayError {
    let message = message
        .unwrap_or("The OpenAI upstream reported a failure mid-stream.")
        .to_string();
    let (status, kind) = match code {
        Some("rate_limit_exceeded") => (429, ErrorType::RateLimit),
        Some("insufficient_quota") => (429, ErrorType::InsufficientQuota),
        Some("context_length_exceeded") => (400, ErrorType::InvalidRequest),
        _ => (502, ErrorType::Api),
    };
    GatewayError::new(status, kind, message).with_code(code.unwrap_or("upstream_stream_error"))
}

impl ResponsesStreamDecoder {
    /// Ends a stream that broke off: a closing event for relayed clients, the error for
    /// translated ones.
    fn break_off(&mut self, err: GatewayError, out: &mut Decoded) {
        if self.ended {
            return;
        }
        self.ended = true;
        let seq = self.seq.map_or(0, |s| s.saturating_add(1));
        let mut raw = Vec::new();
        match &self.id {
            Some(id) => push_event(
                &mut raw,
                "response.failed",
                // The fields an SDK's Response model requires; the upstream's own where known.
                &json!({"type": "response.failed", "sequence_number": seq, "response": {
                    "id": id,
                    "object": "response",
                    "created_at": self.created.as_ref().map_or(0, |c| c.0),
                    "model": self.created.as_ref().map_or("", |c| c.1.as_str()),
                    "status": "failed",
                    "output": [],
                    "error": super::response::error_value(&err),
                    "incomplete_details": null,
                    "parallel_tool_calls": true,
                    "tool_choice": "auto",
                    "tools": [],
                    "usage": null,
                }}),
            ),
            // Nothing identified the response yet: a bare error event.
            None => push_event(
                &mut raw,
                "error",
                &json!({"type": "error", "sequence_number": seq, "code": super::response::failure_code(&err), "message": err.message, "param": null}),
            ),
        }
        out.raw_closing(raw);
        out.event(StreamEvent::Error(err));
    }

    fn upstream_event(&mut self, e: SseEvent, out: &mut Decoded) {
        let data = e.data.trim();
        if data.is_empty() || self.ended {
            return;
        }
        let Ok(ev) = serde_json::from_str::<UpstreamEvent<'_>>(data) else {
            self.break_off(
                GatewayError::bad_gateway(
                    "The OpenAI upstream sent a stream event that is not a Responses event.",
                )
                .with_code("upstream_stream_error"),
                out,
            );
            return;
        };
        if ev.sequence_number.is_some() {
            self.seq = ev.sequence_number;
        }
        let kind = ev.kind.as_ref();
        match kind {
            "response.failed" | "error" => {
                // The upstream's own end: relayed as it is, then the failure for translation.
                self.ended = true;
                out.raw_closing(e.raw);
                let (code, message) = match &ev.response {
                    Some(r) => {
                        if let Some(u) = &r.usage {
                            self.usage = parse_usage(u);
                        }
                        let err = r.error.as_ref();
                        (
                            err.and_then(|e| e.get("code"))
                                .and_then(Value::as_str)
                                .map(str::to_string),
                            err.and_then(|e| e.get("message"))
                                .and_then(Value::as_str)
                                .map(str::to_string),
                        )
                    }
                    None => (
                        ev.code.as_deref().map(str::to_string),
                        ev.message.as_deref().map(str::to_string),
                    ),
                };
                out.event(StreamEvent::Usage(self.usage));
                out.event(StreamEvent::Error(upstream_failure(
                    code.as_deref(),
                    message.as_deref(),
                )));
                return;
            }
            _ => out.raw(e.raw, false),
        }
        match kind {
            "response.created" => {
                let response = ev.response;
                if let Some(r) = &response {
                    self.created = Some((
                        r.created_at.unwrap_or(0),
                        r.model.as_deref().unwrap_or_default().to_string(),
                    ));
                }
                let id = response.and_then(|r| r.id).map(Cow::into_owned);
                self.id.clone_from(&id);
                out.event(StreamEvent::Start {
                    id,
                    usage: self.usage,
                });
            }
            "response.output_text.delta" => {
                if let Some(d) = ev.delta.filter(|d| !d.is_empty()) {
                    out.event(StreamEvent::TextDelta(d.into_owned()));
                }
            }
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => {
                if let Some(d) = ev.delta.filter(|d| !d.is_empty()) {
                    out.event(StreamEvent::ReasoningDelta(d.into_owned()));
                }
            }
            "response.output_item.added" => {
                if let Some(item) = ev.item {
                    if item.kind == "function_call" || item.kind == "custom_tool_call" {
                        self.calls = true;
                        if item.kind == "custom_tool_call" {
                            self.custom = ev.output_index;
                        }
                        let name = item.name.as_deref().unwrap_or_default();
                        out.event(StreamEvent::ToolCallStart {
                            block: block(ev.output_index),
                            id: item.call_id.map(Cow::into_owned).unwrap_or_default(),
                            name: super::tools::flat_name(item.namespace.as_deref(), name),
                        });
                    }
                }
            }
            "response.function_call_arguments.delta" => {
                if let Some(d) = ev.delta.filter(|d| !d.is_empty()) {
                    out.event(StreamEvent::ToolArgsDelta {
                        block: block(ev.output_index),
                        json: d.into_owned(),
                    });
                }
            }
            "response.output_item.done" => {
                if let Some(item) = ev.item {
                    if item.kind == "custom_tool_call" && self.custom == ev.output_index {
                        self.custom = None;
                        out.event(StreamEvent::ToolArgsDelta {
                            block: block(ev.output_index),
                            json: json!({"input": item.input.as_deref().unwrap_or_default()})
                                .to_string(),
                        });
                    }
                }
                out.event(StreamEvent::BlockStop {
                    block: block(ev.output_index),
                });
            }
            "response.completed" | "response.incomplete" => {
                self.ended = true;
                let mut reason = StopReason::EndTurn;
                if let Some(r) = ev.response {
                    if let Some(u) = &r.usage {
                        self.usage = parse_usage(u);
                    }
                    reason = super::response::stop_reason(
                        r.status.as_deref(),
                        r.incomplete_details.and_then(|d| d.reason).as_deref(),
                        self.calls,
                    );
                }
                out.event(StreamEvent::Usage(self.usage));
                out.event(StreamEvent::Stop {
                    reason,
                    stop_sequence: None,
                });
                out.event(StreamEvent::End);
            }
            _ => {}
        }
    }
}

impl StreamDecoder for ResponsesStreamDecoder {
    fn push(&mut self, bytes: &[u8], end: bool) -> Decoded {
        let mut out = Decoded::default();
        match self.sse.push(bytes) {
            Ok(events) => {
                for e in events {
                    self.upstream_event(e, &mut out);
                }
            }
            Err(e) => self.break_off(
                GatewayError::bad_gateway(format!("The OpenAI stream is unreadable: {e}."))
                    .with_code("upstream_stream_error"),
                &mut out,
            ),
        }
        if end && !self.ended {
            let message = if self.sse.finish().is_empty() {
                "The OpenAI stream ended before the response was complete."
            } else {
                "The OpenAI stream ended in the middle of an event."
            };
            self.break_off(
                GatewayError::bad_gateway(message).with_code("upstream_stream_truncated"),
                &mut out,
            );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::ClientEcho;
    use crate::stream::sse::SseDecoder;

    fn meta(replayable: bool) -> ResponseMeta {
        ResponseMeta {
            id: "resp_t".into(),
            created: 1,
            model: "m".into(),
            legacy_functions: false,
            echo: ClientEcho {
                replayable_reasoning: replayable,
                ..ClientEcho::default()
            },
        }
    }

    fn run(enc: &mut ResponsesStreamEncoder, events: &[StreamEvent]) -> Vec<Value> {
        let mut out = Vec::new();
        for e in events {
            enc.event(e, &mut out);
        }
        let mut d = SseDecoder::new();
        let mut evs = d.push(&out).unwrap();
        evs.extend(d.finish());
        evs.iter()
            .map(|e| serde_json::from_str(&e.data).unwrap())
            .collect()
    }

    fn types(evs: &[Value]) -> Vec<&str> {
        evs.iter().map(|e| e["type"].as_str().unwrap()).collect()
    }

    #[test]
    fn an_answer_past_the_cap_ends_incomplete_with_what_was_kept() {
        let mut enc = ResponsesStreamEncoder::with_cap(meta(false), 8);
        let evs = run(
            &mut enc,
            &[
                StreamEvent::TextDelta("hello".into()),
                StreamEvent::TextDelta("world!".into()),
                StreamEvent::TextDelta("more".into()),
                StreamEvent::Stop {
                    reason: StopReason::EndTurn,
                    stop_sequence: None,
                },
                StreamEvent::End,
            ],
        );
        assert_eq!(
            types(&evs),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.incomplete",
            ]
        );
        let last = evs.last().unwrap();
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(last["response"]["output"][0]["content"][0]["text"], "hello");
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        let seqs: Vec<u64> = evs
            .iter()
            .map(|e| e["sequence_number"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (0..9).collect::<Vec<u64>>());
    }

    #[test]
    fn reasoning_is_sealed_only_when_asked_for() {
        let events = [
            StreamEvent::ReasoningDelta("Think.".into()),
            StreamEvent::ReasoningSignature("sig".into()),
            StreamEvent::BlockStop { block: 0 },
            StreamEvent::RedactedReasoning("opaque".into()),
            StreamEvent::TextDelta("Hi".into()),
            StreamEvent::End,
        ];
        let evs = run(&mut ResponsesStreamEncoder::new(meta(true)), &events);
        let output = &evs.last().unwrap()["response"]["output"];
        assert_eq!(output.as_array().unwrap().len(), 3);
        assert_eq!(output[0]["summary"][0]["text"], "Think.");
        let sealed = output[0]["encrypted_content"].as_str().unwrap();
        assert_eq!(
            reasoning::unseal(sealed),
            reasoning::Unsealed::Ours(Part::Reasoning {
                text: "Think.".into(),
                signature: Some("sig".into())
            })
        );
        assert_eq!(output[1]["summary"], json!([]));
        assert!(output[1]["encrypted_content"].is_string());
        assert_eq!(output[2]["type"], "message");
        // Not asked for: the summary only, and no item for redacted thinking.
        let evs = run(&mut ResponsesStreamEncoder::new(meta(false)), &events);
        let output = &evs.last().unwrap()["response"]["output"];
        assert_eq!(output.as_array().unwrap().len(), 2);
        assert!(output[0].get("encrypted_content").is_none());
    }

    #[test]
    fn an_error_before_anything_still_starts_the_response() {
        let evs = run(
            &mut ResponsesStreamEncoder::new(meta(false)),
            &[
                StreamEvent::Error(GatewayError::new(429, ErrorType::RateLimit, "slow")),
                StreamEvent::End,
            ],
        );
        assert_eq!(
            types(&evs),
            [
                "response.created",
                "response.in_progress",
                "response.failed"
            ]
        );
        assert_eq!(evs[2]["response"]["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn openai_custom_tool_calls_decode_to_arguments() {
        let sse = concat!(
            "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\"}}\n\n",
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"sequence_number\":1,\"output_index\":0,\"item\":{\"type\":\"custom_tool_call\",\"call_id\":\"c1\",\"name\":\"apply_patch\",\"input\":\"\"}}\n\n",
            "event: response.custom_tool_call_input.delta\ndata: {\"type\":\"response.custom_tool_call_input.delta\",\"sequence_number\":2,\"output_index\":0,\"delta\":\"*** Begin\"}\n\n",
            "event: response.output_item.done\ndata: {\"type\":\"response.output_item.done\",\"sequence_number\":3,\"output_index\":0,\"item\":{\"type\":\"custom_tool_call\",\"call_id\":\"c1\",\"name\":\"apply_patch\",\"input\":\"*** Begin\"}}\n\n",
        );
        let mut d = ResponsesStreamDecoder::default();
        let items = d.push(sse.as_bytes(), true).items;
        let events: Vec<&StreamEvent> = items
            .iter()
            .filter_map(|i| match i {
                crate::stream::Item::Event(e) => Some(e),
                crate::stream::Item::Raw(_) => None,
            })
            .collect();
        assert!(events.contains(&&StreamEvent::ToolArgsDelta {
            block: 0,
            json: "{\"input\":\"*** Begin\"}".into()
        }));
        // No terminal event: the stream broke off, with a closing failure numbered 4.
        let closing = items.iter().find_map(|i| match i {
            crate::stream::Item::Raw(r) if r.closing => Some(r.bytes.clone()),
            _ => None,
        });
        let closing = String::from_utf8(closing.unwrap()).unwrap();
        assert!(closing.starts_with("event: response.failed\n"), "{closing}");
        assert!(closing.contains("\"sequence_number\":4"), "{closing}");
        assert!(closing.contains("\"id\":\"resp_1\""), "{closing}");
        assert!(matches!(events.last(), Some(StreamEvent::Error(_))));
    }
}
