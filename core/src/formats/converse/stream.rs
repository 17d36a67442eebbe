//! ConverseStream: typed event payloads decoded into IR events.

use super::response::parse_stop_reason;
use crate::formats::bedrock::{exception_error, not_json, FrameHandler};
use crate::ir::{StopReason, Usage};
use crate::stream::{Decoded, StreamEvent};
use serde::Deserialize;
use std::borrow::Cow;

/// A string field that borrows from the input unless it had escapes.
type Str<'a> = Cow<'a, str>;

fn owned(s: Option<Str<'_>>) -> String {
    s.map(Cow::into_owned).unwrap_or_default()
}

fn block_id(index: u64) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
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

/// Decodes ConverseStream frames.
#[derive(Debug, Default)]
pub struct ConverseFrames {
    usage: Usage,
}

impl FrameHandler for ConverseFrames {
    fn event(&mut self, kind: &str, payload: &[u8], out: &mut Decoded) {
        match serde_json::from_slice::<ConverseEvent<'_>>(payload) {
            Ok(ev) => self.converse_event(kind, ev, payload, out),
            Err(_) => out.event(not_json(kind)),
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }
}

impl ConverseFrames {
    fn converse_event(&mut self, kind: &str, ev: ConverseEvent<'_>, raw: &[u8], out: &mut Decoded) {
        let block = block_id(ev.content_block_index);
        match kind {
            "messageStart" => out.event(StreamEvent::Start {
                id: None,
                usage: self.usage,
            }),
            "contentBlockStart" => {
                if let Some(tu) = ev.start.and_then(|s| s.tool_use) {
                    out.event(StreamEvent::ToolCallStart {
                        block,
                        id: owned(tu.tool_use_id),
                        name: owned(tu.name),
                    });
                }
            }
            "contentBlockDelta" => {
                let Some(d) = ev.delta else { return };
                if let Some(t) = d.text {
                    out.event(StreamEvent::TextDelta(t.into_owned()));
                } else if let Some(tu) = d.tool_use {
                    out.event(StreamEvent::ToolArgsDelta {
                        block,
                        json: owned(tu.input),
                    });
                } else if let Some(rc) = d.reasoning_content {
                    if let Some(t) = rc.text {
                        out.event(StreamEvent::ReasoningDelta(t.into_owned()));
                    } else if let Some(s) = rc.signature {
                        out.event(StreamEvent::ReasoningSignature(s.into_owned()));
                    } else if let Some(r) = rc.redacted_content {
                        out.event(StreamEvent::RedactedReasoning(r.into_owned()));
                    }
                }
            }
            "contentBlockStop" => out.event(StreamEvent::BlockStop { block }),
            "messageStop" => {
                let reason = ev
                    .stop_reason
                    .map(|r| parse_stop_reason(&r))
                    .unwrap_or(StopReason::EndTurn);
                out.event(StreamEvent::Stop {
                    reason,
                    stop_sequence: None,
                });
            }
            "metadata" => {
                if let Some(u) = ev.usage {
                    self.usage = Usage::from_uncached(
                        u.input_tokens.unwrap_or(0),
                        u.output_tokens.unwrap_or(0),
                        u.cache_read_input_tokens.unwrap_or(0),
                        u.cache_write_input_tokens.unwrap_or(0),
                    );
                }
                out.event(StreamEvent::Usage(self.usage));
                out.event(StreamEvent::End);
            }
            other if other.ends_with("Exception") => {
                out.event(StreamEvent::Error(exception_error(other, raw)));
            }
            _ => {}
        }
    }
}
