//! Amazon Titan Text (InvokeModel with `inputText`): request decoder and encoder, response
//! decoder and encoder, and both stream directions.

use super::bedrock::{
    chunk_bytes, not_json, without_metrics, EventStreamDecoder, FrameHandler, Metrics,
};
use super::{
    ClientCodec, DecodeContext, EncodeContext, Encoded, Format, RelayContext, ResponseContext,
    UpstreamCodec,
};
use crate::error::GatewayError;
use crate::ir::{ChatRequest, ChatResponse, Message, Part, ResponseMeta, Role, StopReason, Usage};
use crate::json::{opt_f64, opt_object, opt_u32, req_str, string_or_list, Object};
use crate::stream::{push_data, Decoded, StreamDecoder, StreamEncoder, StreamEvent};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// The Titan Text codec.
pub struct Titan;

impl ClientCodec for Titan {
    fn format(&self) -> Format {
        Format::Titan
    }

    fn decode_request(
        &self,
        obj: &Object,
        _ctx: DecodeContext,
    ) -> Result<ChatRequest, GatewayError> {
        decode_request(obj)
    }

    fn encode_response(&self, resp: &ChatResponse, _meta: &ResponseMeta) -> Vec<u8> {
        serde_json::to_vec(&encode_response(resp)).unwrap_or_default()
    }

    fn stream_encoder(&self, _meta: &ResponseMeta, _include_usage: bool) -> Box<dyn StreamEncoder> {
        Box::new(TitanStreamEncoder::default())
    }

    fn error_body(&self, err: &GatewayError) -> Vec<u8> {
        // The OpenAI error object plus Bedrock's `message`.
        let mut v = err.to_value();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("message".into(), Value::String(err.message.clone()));
        }
        serde_json::to_vec(&v).unwrap_or_else(|_| err.to_json())
    }
}

impl UpstreamCodec for Titan {
    fn format(&self) -> Format {
        Format::Titan
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        ctx: &EncodeContext<'_>,
    ) -> Result<Encoded, GatewayError> {
        let value = encode_request(req)?;
        Ok(Encoded {
            body: super::json_body(&value, ctx.raw)?,
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
        decode_response(&crate::json::parse_upstream(body, "bedrock_titan")?)
    }

    fn stream_decoder(&self) -> Box<dyn StreamDecoder> {
        Box::new(EventStreamDecoder::new(TitanFrames::default()))
    }

    fn relay(&self, mut obj: Object, ctx: &RelayContext<'_>) -> Result<Encoded, GatewayError> {
        // Titan takes neither `model` nor `stream` in the body.
        obj.remove("model");
        obj.remove("stream");
        Ok(Encoded::body(super::to_body(obj, ctx.raw)?))
    }
}

/// Decodes a Bedrock-Titan request body into the IR: the whole `inputText` is one user turn.
pub fn decode_request(obj: &Object) -> Result<ChatRequest, GatewayError> {
    let model = req_str(obj, "model", "model")?.to_string();
    let input = req_str(obj, "inputText", "inputText")?.to_string();
    let mut req = ChatRequest {
        model,
        messages: vec![Message::new(Role::User, vec![Part::text(input)])],
        ..ChatRequest::default()
    };
    if let Some(cfg) = opt_object(obj, "textGenerationConfig", "textGenerationConfig")? {
        req.max_tokens = opt_u32(
            cfg,
            "maxTokenCount",
            "textGenerationConfig.maxTokenCount",
            1,
        )?;
        req.temperature = opt_f64(
            cfg,
            "temperature",
            "textGenerationConfig.temperature",
            0.0,
            1.0,
        )?;
        req.top_p = opt_f64(cfg, "topP", "textGenerationConfig.topP", 0.0, 1.0)?;
        req.stop = string_or_list(cfg, "stopSequences", "textGenerationConfig.stopSequences")?;
    }
    req.stream = crate::json::opt_bool(obj, "stream", "stream")?.unwrap_or(false);
    Ok(req)
}

/// Builds Titan's `inputText` from a conversation ("User: …\nBot: …" convention).
fn input_text(req: &ChatRequest) -> Result<String, GatewayError> {
    let mut out = String::new();
    let system = req.system_text();
    if !system.is_empty() {
        out.push_str(&system);
        out.push_str("\n\n");
    }
    for (i, msg) in req.messages.iter().enumerate() {
        let mut text = String::new();
        for (j, part) in msg.content.iter().enumerate() {
            match part {
                Part::Text { text: t, .. } => text.push_str(t),
                Part::Reasoning { .. } | Part::RedactedReasoning { .. } => {}
                _ => {
                    return Err(GatewayError::invalid(
                        msg.part_path(j, i),
                        "Titan text models accept text only (no images, documents or tools).",
                    ))
                }
            }
        }
        let speaker = match msg.role {
            Role::User => "User",
            Role::Assistant => "Bot",
        };
        out.push_str(speaker);
        out.push_str(": ");
        out.push_str(&text);
        out.push('\n');
    }
    out.push_str("Bot:");
    Ok(out)
}

/// Encodes the IR as a Titan InvokeModel body.
pub fn encode_request(req: &ChatRequest) -> Result<Value, GatewayError> {
    if !req.tools.is_empty() {
        return Err(GatewayError::invalid(
            "tools",
            "Titan text models do not support tools.",
        ));
    }
    let mut cfg = Map::new();
    if let Some(m) = req.max_tokens {
        cfg.insert("maxTokenCount".into(), json!(m));
    }
    if let Some(t) = req.temperature {
        if t > 1.0 {
            return Err(GatewayError::invalid(
                "temperature",
                format!("`temperature` must be between 0 and 1 for Titan models, got {t}."),
            ));
        }
        cfg.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        cfg.insert("topP".into(), json!(p));
    }
    if !req.stop.is_empty() {
        cfg.insert("stopSequences".into(), json!(req.stop));
    }
    let mut out = Map::new();
    out.insert("inputText".into(), json!(input_text(req)?));
    if !cfg.is_empty() {
        out.insert("textGenerationConfig".into(), Value::Object(cfg));
    }
    Ok(Value::Object(out))
}

/// Maps a Titan `completionReason` to the IR.
pub fn parse_stop_reason(reason: &str) -> StopReason {
    match reason {
        "LENGTH" => StopReason::MaxTokens,
        "STOP_CRITERIA_MET" => StopReason::StopSequence,
        "CONTENT_FILTERED" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

/// Maps an IR stop reason to a Titan `completionReason`.
pub fn stop_reason_str(stop: StopReason) -> &'static str {
    match stop {
        StopReason::MaxTokens | StopReason::ContextWindowExceeded => "LENGTH",
        StopReason::StopSequence => "STOP_CRITERIA_MET",
        StopReason::ContentFilter | StopReason::Refusal => "CONTENT_FILTERED",
        _ => "FINISH",
    }
}

/// Decodes a Titan response body into the IR.
pub fn decode_response(obj: &Object) -> Result<ChatResponse, GatewayError> {
    let result = obj
        .get("results")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .ok_or_else(|| {
            GatewayError::bad_gateway("Bedrock returned a Titan response without `results`.")
        })?;
    let text = result
        .get("outputText")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    Ok(ChatResponse {
        id: None,
        content: vec![Part::text(text)],
        stop_reason: result
            .get("completionReason")
            .and_then(Value::as_str)
            .map(parse_stop_reason)
            .unwrap_or_default(),
        stop_sequence: None,
        usage: Usage {
            prompt_tokens: n(obj.get("inputTextTokenCount")),
            completion_tokens: n(result.get("tokenCount")),
            ..Usage::default()
        },
    })
}

/// Encodes an IR response as a Titan response (`target_format=bedrock_titan`).
pub fn encode_response(resp: &ChatResponse) -> Value {
    json!({
        "inputTextTokenCount": resp.usage.prompt_tokens,
        "results": [{
            "tokenCount": resp.usage.completion_tokens,
            "outputText": resp.text(),
            "completionReason": stop_reason_str(resp.stop_reason),
        }],
    })
}

/// One Titan stream chunk.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TitanChunk<'a> {
    #[serde(borrow)]
    output_text: Option<Str<'a>>,
    input_text_token_count: Option<u64>,
    total_output_text_token_count: Option<u64>,
    #[serde(borrow)]
    completion_reason: Option<Str<'a>>,
    #[serde(rename = "amazon-bedrock-invocationMetrics")]
    metrics: Option<Metrics>,
}

/// A string field that borrows from the input unless it had escapes.
type Str<'a> = Cow<'a, str>;

/// Decodes Titan chunks from InvokeModelWithResponseStream frames.
#[derive(Debug, Default)]
pub struct TitanFrames {
    usage: Usage,
    started: bool,
}

impl FrameHandler for TitanFrames {
    fn event(&mut self, kind: &str, payload: &[u8], out: &mut Decoded) {
        if kind != "chunk" {
            return;
        }
        let Some(inner) = chunk_bytes(payload) else {
            out.event(StreamEvent::Error(super::bedrock::stream_failure(
                "Bedrock sent a chunk without decodable `bytes`.".into(),
            )));
            return;
        };
        match serde_json::from_slice::<TitanChunk<'_>>(&inner) {
            Ok(ev) => self.titan_chunk(ev, &inner, out),
            Err(_) => out.event(not_json("chunk")),
        }
    }

    fn usage(&self) -> Usage {
        self.usage
    }
}

impl TitanFrames {
    fn titan_chunk(&mut self, ev: TitanChunk<'_>, raw: &[u8], out: &mut Decoded) {
        let had_metrics = ev.metrics.is_some();
        if let Some(m) = ev.metrics {
            m.apply(&mut self.usage);
        }
        let json = without_metrics(raw, had_metrics);
        let mut framed = Vec::with_capacity(json.len() + 8);
        framed.extend_from_slice(b"data: ");
        framed.extend_from_slice(&json);
        framed.extend_from_slice(b"\n\n");
        out.raw(framed, false);
        if !self.started {
            self.started = true;
            out.event(StreamEvent::Start {
                id: None,
                usage: self.usage,
            });
        }
        if !had_metrics {
            if let Some(i) = ev.input_text_token_count {
                self.usage.prompt_tokens = i;
            }
            if let Some(o) = ev.total_output_text_token_count {
                self.usage.completion_tokens = o;
            }
        }
        let text = ev.output_text.map(Cow::into_owned).unwrap_or_default();
        if !text.is_empty() {
            out.event(StreamEvent::TextDelta(text));
        }
        if let Some(r) = ev.completion_reason {
            out.event(StreamEvent::Stop {
                reason: parse_stop_reason(&r),
                stop_sequence: None,
            });
        }
        if had_metrics {
            out.event(StreamEvent::Usage(self.usage));
            out.event(StreamEvent::End);
        }
    }
}

/// Titan-style chunk encoder (`target_format=bedrock_titan`): one `data:` line per chunk.
#[derive(Debug, Default)]
pub struct TitanStreamEncoder {
    stop: Option<StopReason>,
    usage: Usage,
}

impl TitanStreamEncoder {
    /// An encoder for one response.
    pub fn new() -> TitanStreamEncoder {
        TitanStreamEncoder::default()
    }

    /// Encodes one event.
    fn encode(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
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
                "completionReason": stop_reason_str(self.stop.unwrap_or_default()),
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

impl StreamEncoder for TitanStreamEncoder {
    fn event(&mut self, e: &StreamEvent, out: &mut Vec<u8>) {
        self.encode(e, out);
    }
}
