#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! A fixed streaming workload for `valgrind --tool=callgrind`: N Claude streams of 300 text
//! chunks translated to OpenAI chunks. Usage: profile_stream [N]
use base64::Engine;
use serde_json::json;
use unigate_core::formats::Format;
use unigate_core::ir::ResponseMeta;
use unigate_core::plan::ResponsePlan;
use unigate_core::stream::eventstream::event_frame;
use unigate_core::stream::StreamTranslator;

fn chunk(v: serde_json::Value) -> Vec<u8> {
    let raw = serde_json::to_vec(&v).unwrap();
    let payload =
        json!({"bytes": base64::engine::general_purpose::STANDARD.encode(raw), "p": "abcdefghij"});
    event_frame("chunk", payload.to_string().as_bytes())
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let target = match std::env::args().nth(2).as_deref() {
        Some("claude") => Format::Anthropic,
        _ => Format::OpenaiChat,
    };
    let mut s = chunk(
        json!({"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "usage": {"input_tokens": 20, "output_tokens": 1}}}),
    );
    s.extend(chunk(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
    for i in 0..300 {
        s.extend(chunk(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!(" token{i}")}})));
    }
    s.extend(chunk(json!({"type": "content_block_stop", "index": 0})));
    s.extend(chunk(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 300}})));
    s.extend(chunk(json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 20, "outputTokenCount": 300}})));
    let plan = ResponsePlan {
        operation: unigate_core::ir::Operation::Chat,
        upstream: Format::Anthropic,
        input: Format::OpenaiChat,
        target,
        stream: true,
        include_usage: true,
        structured: false,
        relay: unigate_core::plan::relays(Format::Anthropic, target, false),
        meta: ResponseMeta {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "claude-3-haiku".into(),
            legacy_functions: false,
            echo: Default::default(),
        },
        timeout_secs: 600,
        extra_headers: Vec::new(),
    };
    let mut total = 0;
    for _ in 0..n {
        let mut t = StreamTranslator::new(&plan).unwrap();
        for piece in s.chunks(16384) {
            total += t.push(piece, false).len();
        }
        total += t.push(&[], true).len();
    }
    println!("{total} output bytes, {} input bytes per stream", s.len());
}
