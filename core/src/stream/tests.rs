//! Unit tests of the translator's edge cases with synthetic streams.

use super::eventstream::event_frame;
use super::*;
use crate::formats::Format;
use crate::ir::ResponseMeta;

fn plan(api: Format, target: Format) -> ResponsePlan {
    ResponsePlan {
        operation: crate::ir::Operation::Chat,
        upstream: api,
        input: Format::OpenaiChat,
        target,
        stream: true,
        include_usage: false,
        structured: false,
        relay: crate::plan::relays(api, target, false),
        meta: ResponseMeta {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "m".into(),
            legacy_functions: false,
            echo: Default::default(),
        },
        timeout_secs: 600,
        extra_headers: Vec::new(),
    }
}

#[test]
fn stop_without_metadata_still_ends_cleanly() {
    let mut t = StreamTranslator::new(&plan(Format::Converse, Format::OpenaiChat)).unwrap();
    let mut stream = event_frame("messageStart", br#"{"role":"assistant"}"#);
    stream.extend(event_frame(
        "contentBlockDelta",
        br#"{"contentBlockIndex":0,"delta":{"text":"hi"}}"#,
    ));
    stream.extend(event_frame("messageStop", br#"{"stopReason":"end_turn"}"#));
    let out = String::from_utf8(t.push(&stream, true)).unwrap();
    assert!(out.contains("\"finish_reason\":\"stop\""));
    assert!(out.ends_with("data: [DONE]\n\n"));
    assert!(!out.contains("error"));
}

#[test]
fn corrupt_frame_is_an_error_event() {
    let mut t = StreamTranslator::new(&plan(Format::Converse, Format::OpenaiChat)).unwrap();
    let mut f = event_frame("messageStart", br#"{"role":"assistant"}"#);
    let n = f.len();
    f[n - 1] ^= 0xff;
    let out = String::from_utf8(t.push(&f, false)).unwrap();
    assert!(out.contains("upstream_stream_error"), "{out}");
    assert!(t.finished());
}

#[test]
fn abort_after_reset() {
    let mut t = StreamTranslator::new(&plan(Format::Converse, Format::Anthropic)).unwrap();
    let out = String::from_utf8(t.abort("connection reset")).unwrap();
    assert!(out.starts_with("event: error\n"));
    assert!(t.abort("again").is_empty());
}

#[test]
fn good_frames_before_a_corrupt_one_are_kept() {
    let mut t = StreamTranslator::new(&plan(Format::Converse, Format::OpenaiChat)).unwrap();
    let mut stream = event_frame("messageStart", br#"{"role":"assistant"}"#);
    stream.extend(event_frame(
        "contentBlockDelta",
        br#"{"contentBlockIndex":0,"delta":{"text":"kept"}}"#,
    ));
    let mut bad = event_frame(
        "contentBlockDelta",
        br#"{"contentBlockIndex":0,"delta":{"text":"x"}}"#,
    );
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    stream.extend(bad);
    let out = String::from_utf8(t.push(&stream, false)).unwrap();
    assert!(out.contains("\"content\":\"kept\""), "{out}");
    assert!(out.contains("upstream_stream_error"), "{out}");
}
