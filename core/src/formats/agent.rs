//! Bedrock Agents (InvokeAgent on bedrock-agent-runtime): request building, answer decoding
//! and the answer stream. Model ids look like `bedrock-agent/<agentId>/<aliasId>`.

use super::bedrock::{exception_error, not_json, EventStreamDecoder, FrameHandler};
use super::{EncodeContext, Encoded, Format, ResponseContext, UpstreamCodec};
use crate::error::GatewayError;
use crate::ir::{ChatRequest, ChatResponse, Part, Role, StopReason, Usage};
use crate::stream::eventstream::FrameDecoder;
use crate::stream::{Decoded, StreamDecoder, StreamEvent};
use base64::Engine;
use serde_json::{json, Value};

/// The Bedrock Agents codec (an upstream API only).
pub struct Agent;

impl UpstreamCodec for Agent {
    fn format(&self) -> Format {
        Format::Agent
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<Encoded, GatewayError> {
        let body = super::json_body(&encode_request(req)?, ctx.raw)?;
        Ok(Encoded {
            body,
            structured: false,
            notes: Vec::new(),
            unchanged: false,
        })
    }

    fn decode_response(
        &self,
        body: &[u8],
        _ctx: ResponseContext,
    ) -> Result<ChatResponse, GatewayError> {
        // InvokeAgent always answers with an event stream, even for a non-streaming client.
        decode_response(body)
    }

    fn usage_of(&self, _body: &[u8]) -> Option<Usage> {
        None
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(EventStreamDecoder::new(AgentFrames::default()))
    }
}

/// Decodes InvokeAgent `chunk` frames (text only; traces are skipped).
#[derive(Debug, Default)]
pub struct AgentFrames {
    started: bool,
}

impl FrameHandler for AgentFrames {
    fn event(&mut self, kind: &str, payload: &[u8], out: &mut Decoded) {
        if kind != "chunk" {
            return;
        }
        let Ok(payload) = serde_json::from_slice::<Value>(payload) else {
            out.event(not_json(kind));
            return;
        };
        if !self.started {
            self.started = true;
            out.event(StreamEvent::Start {
                id: None,
                usage: Usage::default(),
            });
        }
        if let Some(t) = chunk_text(&payload) {
            out.event(StreamEvent::TextDelta(t));
        }
    }

    fn usage(&self) -> Usage {
        Usage::default()
    }

    fn clean_end(&mut self, out: &mut Decoded) {
        // InvokeAgent has no closing event: a clean end of body completes it.
        out.event(StreamEvent::Stop {
            reason: StopReason::EndTurn,
            stop_sequence: None,
        });
        out.event(StreamEvent::Usage(Usage::default()));
        out.event(StreamEvent::End);
    }
}

/// Response header carrying the agent session id back to the client.
pub const SESSION_HEADER: &str = "x-session-id";

/// Whether a session id is acceptable to InvokeAgent (`[0-9a-zA-Z._:-]{2,100}`).
pub fn valid_session_id(id: &str) -> bool {
    (2..=100).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// A UUID-formatted session id from 32 hex characters of randomness.
pub fn session_from_random(hex: &str) -> String {
    let h: Vec<char> = hex.chars().filter(char::is_ascii_hexdigit).collect();
    if h.len() < 32 {
        return format!("ug-{hex}");
    }
    let s = |a: usize, b: usize| {
        h.get(a..b)
            .map(|c| c.iter().collect::<String>())
            .unwrap_or_default()
    };
    format!(
        "{}-{}-4{}-8{}-{}",
        s(0, 8),
        s(8, 12),
        s(13, 16),
        s(17, 20),
        s(20, 32)
    )
}

/// Picks the session id: `x-session-id` header, then the OpenAI `user` field, else a new one.
pub fn session_id(
    header: Option<&str>,
    req: &ChatRequest,
    random_hex: &str,
) -> Result<String, GatewayError> {
    if let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) {
        if !valid_session_id(h) {
            return Err(GatewayError::bad_request(
                "`x-session-id` must be 2-100 characters of letters, digits, `.`, `_`, `:` or `-`.",
            )
            .with_param("x-session-id"));
        }
        return Ok(h.to_string());
    }
    if let Some(u) = req.user.as_deref().filter(|u| !u.is_empty()) {
        if !valid_session_id(u) {
            return Err(GatewayError::invalid(
                "user",
                "For Bedrock agents `user` is the session id: 2-100 characters of letters, digits, `.`, `_`, `:` or `-`.",
            ));
        }
        return Ok(u.to_string());
    }
    Ok(session_from_random(random_hex))
}

/// The InvokeAgent body: the last user turn's text (the agent keeps the conversation in its
/// session memory).
pub fn encode_request(req: &ChatRequest) -> Result<Value, GatewayError> {
    let last_user = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .ok_or_else(|| {
            GatewayError::invalid("messages", "An agent request needs a user message.")
        })?;
    let mut text = String::new();
    for p in &last_user.content {
        match p {
            Part::Text { text: t, .. } => text.push_str(t),
            Part::ToolResult { .. } => {
                return Err(GatewayError::invalid(
                    "messages",
                    "Bedrock agents run their own tools; tool results cannot be sent to an agent.",
                ))
            }
            _ => {
                return Err(GatewayError::invalid(
                    "messages",
                    "Bedrock agents accept text only through this gateway.",
                ))
            }
        }
    }
    if text.trim().is_empty() {
        return Err(GatewayError::invalid(
            "messages",
            "The last user message has no text.",
        ));
    }
    let mut body = json!({"inputText": text, "enableTrace": false});
    if req.stream {
        if let Some(o) = body.as_object_mut() {
            o.insert(
                "streamingConfigurations".into(),
                json!({"streamFinalResponse": true}),
            );
        }
    }
    Ok(body)
}

/// The text of an agent `chunk` event payload (`{"bytes": "<base64 text>"}`).
pub fn chunk_text(payload: &Value) -> Option<String> {
    let b = payload.get("bytes")?.as_str()?;
    let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
    Some(String::from_utf8_lossy(&raw).into_owned())
}

/// Decodes a complete (buffered) InvokeAgent event stream into one answer.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, GatewayError> {
    let mut d = FrameDecoder::new();
    let frames = d
        .push(body)
        .map_err(|e| GatewayError::bad_gateway(format!("Bedrock Agents sent an {e}.")))?;
    if d.buffered() > 0 {
        return Err(
            GatewayError::bad_gateway("The Bedrock Agents answer ended mid-frame.")
                .with_code("upstream_stream_truncated"),
        );
    }
    let mut text = String::new();
    for f in frames {
        match f.message_type.as_str() {
            "exception" => return Err(exception_error(&f.kind, &f.payload)),
            "error" => {
                return Err(GatewayError::bad_gateway(
                    f.error_message.unwrap_or_else(|| f.kind.clone()),
                ))
            }
            _ if f.kind == "chunk" => {
                let v: Value = serde_json::from_slice(&f.payload).unwrap_or(Value::Null);
                if let Some(t) = chunk_text(&v) {
                    text.push_str(&t);
                }
            }
            _ => {}
        }
    }
    Ok(ChatResponse {
        id: None,
        content: vec![Part::text(text)],
        stop_reason: StopReason::EndTurn,
        stop_sequence: None,
        usage: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::eventstream::{event_frame, exception_frame};

    #[test]
    fn sessions() {
        assert_eq!(
            session_from_random("0123456789abcdef0123456789abcdef"),
            "01234567-89ab-4def-8123-456789abcdef"
        );
        assert!(valid_session_id("user-8841") && !valid_session_id("a b"));
        let req = ChatRequest {
            user: Some("alice.1".into()),
            ..ChatRequest::default()
        };
        assert_eq!(session_id(None, &req, "x").unwrap(), "alice.1");
        assert_eq!(session_id(Some("s-1"), &req, "x").unwrap(), "s-1");
        assert!(session_id(Some("bad id"), &req, "x").is_err());
    }

    #[test]
    fn decodes_chunks_and_exceptions() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut body = event_frame(
            "chunk",
            json!({"bytes": b64("Hello ")}).to_string().as_bytes(),
        );
        body.extend(event_frame("trace", b"{}"));
        body.extend(event_frame(
            "chunk",
            json!({"bytes": b64("agent")}).to_string().as_bytes(),
        ));
        assert_eq!(decode_response(&body).unwrap().text(), "Hello agent");
        body.extend(exception_frame(
            "accessDeniedException",
            br#"{"message":"no"}"#,
        ));
        assert_eq!(decode_response(&body).unwrap_err().status, 403);
    }
}
