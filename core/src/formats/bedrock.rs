//! Pieces every Bedrock format shares: media types Bedrock accepts, tool-call arguments, the
//! gateway's structured-output tool, InvokeModel stream chunks and invocation metrics, and the
//! event-stream driver that turns frames into IR events. Formats use these; they never use
//! each other.

use crate::error::GatewayError;
use crate::ir::{Part, ResponseFormat, Tool, Usage};
use crate::stream::eventstream::FrameDecoder;
use crate::stream::{Decoded, StreamDecoder, StreamEvent};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use std::borrow::Cow;

/// Name of the tool the gateway adds to force structured output; never shown to clients.
pub const STRUCTURED_OUTPUT_TOOL: &str = "unigate_structured_output";

/// The description of the structured-output tool.
pub const STRUCTURED_OUTPUT_DESCRIPTION: &str =
    "Answer with the final response as the input of this tool.";

/// The JSON Schema the structured-output tool takes as input.
pub fn structured_schema(rf: &ResponseFormat) -> Value {
    match rf {
        ResponseFormat::JsonObject => json!({"type": "object"}),
        ResponseFormat::JsonSchema { schema, .. } => schema.clone(),
    }
}

/// Refuses client tools that use the gateway's reserved tool name.
pub fn check_reserved_tool_name(tools: &[Tool]) -> Result<(), GatewayError> {
    if tools.iter().any(|t| t.name == STRUCTURED_OUTPUT_TOOL) {
        return Err(GatewayError::invalid(
            "tools",
            format!("The tool name `{STRUCTURED_OUTPUT_TOOL}` is reserved by the gateway."),
        ));
    }
    Ok(())
}

/// A tool call from an upstream answer as an IR part: the forced structured-output tool's
/// input becomes the answer text. Returns the part and whether it was the forced output.
pub fn answer_part(structured: bool, id: String, name: String, arguments: String) -> (Part, bool) {
    if structured && name == STRUCTURED_OUTPUT_TOOL {
        (Part::text(arguments), true)
    } else {
        (
            Part::ToolCall {
                id,
                name,
                arguments,
            },
            false,
        )
    }
}

/// Image `format` for a MIME type (the four Bedrock takes; `image/jpg` normalised).
pub fn image_format(
    media_type: &str,
    path: &dyn std::fmt::Display,
) -> Result<&'static str, GatewayError> {
    match media_type {
        "image/png" => Ok("png"),
        "image/jpeg" | "image/jpg" => Ok("jpeg"),
        "image/gif" => Ok("gif"),
        "image/webp" => Ok("webp"),
        other => Err(GatewayError::invalid(
            path,
            format!("Unsupported image type `{other}`; expected image/png, image/jpeg, image/gif or image/webp."),
        )),
    }
}

/// The 400 for a remote image URL sent to Bedrock.
pub fn remote_image_error(path: &dyn std::fmt::Display) -> GatewayError {
    GatewayError::invalid(
        format!("{path}.image_url.url"),
        "Remote image URLs are not supported for Bedrock models; send the image inline as a base64 data URL (data:image/png;base64,...). The gateway does not fetch URLs on the data plane.",
    )
    .with_code("unsupported_image_url")
}

/// Parses tool-call arguments (JSON text) into the object Bedrock wants.
pub fn parse_arguments(
    arguments: &str,
    path: &dyn std::fmt::Display,
) -> Result<Value, GatewayError> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(GatewayError::invalid(
            format!("{path}.function.arguments"),
            "Tool-call `arguments` must be a JSON object.",
        )),
        Err(e) => Err(GatewayError::invalid(
            format!("{path}.function.arguments"),
            format!("Tool-call `arguments` must be a JSON object; it is not valid JSON ({e})."),
        )),
    }
}

/// `amazon-bedrock-invocationMetrics` at the end of an InvokeModel stream.
#[derive(Deserialize, Clone, Copy, Debug, Default)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Input tokens (excluding cache reads and writes).
    pub input_token_count: Option<u64>,
    /// Output tokens.
    pub output_token_count: Option<u64>,
    /// Input tokens read from the prompt cache.
    pub cache_read_input_token_count: Option<u64>,
    /// Input tokens written to the prompt cache.
    pub cache_write_input_token_count: Option<u64>,
}

/// The JSON key of the invocation metrics.
pub const METRICS_KEY: &str = "amazon-bedrock-invocationMetrics";

impl Metrics {
    /// Applies the metrics as the usage of record over what the stream reported so far.
    pub fn apply(self, usage: &mut Usage) {
        let cache_read = self
            .cache_read_input_token_count
            .unwrap_or(usage.cache_read_tokens);
        let cache_write = self
            .cache_write_input_token_count
            .unwrap_or(usage.cache_write_tokens);
        if let Some(input) = self.input_token_count {
            usage.prompt_tokens = input.saturating_add(cache_read).saturating_add(cache_write);
        }
        if let Some(output) = self.output_token_count {
            usage.completion_tokens = output;
        }
        usage.cache_read_tokens = cache_read;
        usage.cache_write_tokens = cache_write;
    }
}

/// Bedrock's `TokenUsage` object (Converse answers, ConverseStream `metadata`): input
/// excludes cache reads and writes.
pub fn token_usage(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage::from_uncached(
        n("inputTokens"),
        n("outputTokens"),
        n("cacheReadInputTokens"),
        n("cacheWriteInputTokens"),
    )
}

/// Reads usage from any Bedrock event stream without decoding its model events: the
/// invocation metrics at the end of InvokeModel streams, and ConverseStream's `metadata`.
/// Used where the stream is relayed to the client frame for frame.
#[derive(Debug, Default)]
pub struct UsageFrames {
    usage: Usage,
}

impl FrameHandler for UsageFrames {
    fn event(&mut self, kind: &str, payload: &[u8], _out: &mut Decoded) {
        #[derive(Deserialize)]
        struct WithMetrics {
            #[serde(rename = "amazon-bedrock-invocationMetrics")]
            metrics: Option<Metrics>,
        }
        match kind {
            "chunk" => {
                // Only the last event of a stream carries metrics; look before decoding.
                let Some(inner) = chunk_bytes(payload) else {
                    return;
                };
                if !inner
                    .windows(METRICS_KEY.len())
                    .any(|w| w == METRICS_KEY.as_bytes())
                {
                    return;
                }
                if let Some(m) = serde_json::from_slice::<WithMetrics>(&inner)
                    .ok()
                    .and_then(|w| w.metrics)
                {
                    m.apply(&mut self.usage);
                }
            }
            "metadata" => {
                if let Some(u) = serde_json::from_slice::<Value>(payload)
                    .ok()
                    .and_then(|v| v.get("usage").cloned())
                {
                    self.usage = token_usage(&u);
                }
            }
            _ => {}
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }
}

/// The JSON bytes of a model event without its invocation metrics (only re-serialized when
/// the metrics are there, which is once per stream).
pub fn without_metrics(raw: &[u8], had_metrics: bool) -> Vec<u8> {
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

/// `{"bytes": "<base64>", "p": "<padding>"}` of InvokeModelWithResponseStream chunks.
#[derive(Deserialize)]
struct BytesPayload<'a> {
    #[serde(borrow)]
    bytes: Option<Cow<'a, str>>,
}

/// The model event inside an InvokeModelWithResponseStream (or agent) `chunk` payload.
pub fn chunk_bytes(payload: &[u8]) -> Option<Vec<u8>> {
    let b = serde_json::from_slice::<BytesPayload<'_>>(payload)
        .ok()?
        .bytes?;
    base64::engine::general_purpose::STANDARD
        .decode(b.as_bytes())
        .ok()
}

/// A failure the upstream reported in the stream.
pub fn stream_failure(message: String) -> GatewayError {
    GatewayError::bad_gateway(message).with_code("upstream_stream_error")
}

/// A stream that ended before it was complete.
pub fn truncated(message: &str) -> GatewayError {
    GatewayError::bad_gateway(message).with_code("upstream_stream_truncated")
}

/// The error for a frame payload that is not the expected JSON.
pub fn not_json(kind: &str) -> StreamEvent {
    StreamEvent::Error(stream_failure(format!(
        "Bedrock sent a `{kind}` event whose payload is not the expected JSON."
    )))
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

/// One format's handling of event-stream `event` frames (exception and error frames, framing
/// errors and truncation are handled once, by [`EventStreamDecoder`]).
pub trait FrameHandler: std::fmt::Debug {
    /// An `event` frame of type `kind`.
    fn event(&mut self, kind: &str, payload: &[u8], out: &mut Decoded);
    /// Usage reported so far.
    fn usage(&self) -> Usage;
    /// The body ended cleanly at a frame boundary.
    fn clean_end(&mut self, _out: &mut Decoded) {}
}

/// An AWS event-stream upstream decoder around one format's [`FrameHandler`].
#[derive(Debug)]
pub struct EventStreamDecoder<H> {
    frames: FrameDecoder,
    handler: H,
}

impl<H: FrameHandler> EventStreamDecoder<H> {
    /// A decoder handing frames to `handler`.
    pub fn new(handler: H) -> EventStreamDecoder<H> {
        EventStreamDecoder {
            frames: FrameDecoder::new(),
            handler,
        }
    }
}

impl<H: FrameHandler> StreamDecoder for EventStreamDecoder<H> {
    fn push(&mut self, bytes: &[u8], end: bool) -> Decoded {
        let mut out = Decoded::default();
        let (frames, err) = self.frames.push_all(bytes);
        // Good frames before a bad one are still delivered.
        for f in frames {
            match f.message_type.as_str() {
                "exception" => out.event(StreamEvent::Error(exception_error(&f.kind, &f.payload))),
                "error" => {
                    let msg = f
                        .error_message
                        .unwrap_or_else(|| format!("Bedrock stream error {}", f.kind));
                    out.event(StreamEvent::Error(
                        GatewayError::new(502, crate::error::ErrorType::Api, msg).with_code(f.kind),
                    ));
                }
                _ => self.handler.event(&f.kind, &f.payload, &mut out),
            }
        }
        if let Some(e) = err {
            out.event(StreamEvent::Error(stream_failure(format!(
                "Bedrock sent an {e}."
            ))));
        } else if end && self.frames.buffered() > 0 {
            out.event(StreamEvent::Error(truncated(
                "The Bedrock stream ended in the middle of a frame.",
            )));
        } else if end {
            self.handler.clean_end(&mut out);
        }
        out
    }

    fn usage(&self) -> Usage {
        self.handler.usage()
    }

    fn buffered(&self) -> usize {
        self.frames.buffered()
    }

    fn discard(&mut self) {
        self.frames = FrameDecoder::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_the_usage_of_record() {
        let mut u = Usage {
            prompt_tokens: 5,
            completion_tokens: 1,
            cache_read_tokens: 2,
            ..Usage::default()
        };
        Metrics {
            input_token_count: Some(10),
            output_token_count: Some(7),
            cache_read_input_token_count: None,
            cache_write_input_token_count: Some(3),
        }
        .apply(&mut u);
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.cache_read_tokens,
                u.cache_write_tokens
            ),
            (15, 7, 2, 3)
        );
    }

    #[test]
    fn forced_output_becomes_text() {
        let (p, forced) = answer_part(
            true,
            "id".into(),
            STRUCTURED_OUTPUT_TOOL.into(),
            "{}".into(),
        );
        assert!(forced);
        assert_eq!(p, Part::text("{}"));
        let (p, forced) = answer_part(
            false,
            "id".into(),
            STRUCTURED_OUTPUT_TOOL.into(),
            "{}".into(),
        );
        assert!(!forced && matches!(p, Part::ToolCall { .. }));
    }
}
