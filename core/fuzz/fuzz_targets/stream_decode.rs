//! Any upstream stream bytes, split at a fuzzer-chosen point, through every stream decoder and
//! encoder: never a panic, bounded buffering, and a stream that always ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unigate_core::detect::Format;
use unigate_core::openai::ResponseMeta;
use unigate_core::plan::ResponsePlan;
use unigate_core::route::UpstreamApi;
use unigate_core::stream::StreamTranslator;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Some((&split, bytes)) = rest.split_first() else { return };
    let api = [
        UpstreamApi::OpenaiChat,
        UpstreamApi::BedrockAnthropic,
        UpstreamApi::BedrockTitan,
        UpstreamApi::BedrockConverse,
        UpstreamApi::BedrockAgent,
    ][usize::from(selector) % 5];
    let target = [Format::Openai, Format::BedrockClaude, Format::BedrockTitan][usize::from(selector / 5) % 3];
    let plan = ResponsePlan {
        api,
        input: Format::Openai,
        target,
        stream: true,
        include_usage: selector & 0x40 != 0,
        structured: selector & 0x80 != 0,
        passthrough: false,
        meta: ResponseMeta {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "m".into(),
            legacy_functions: false,
        },
        timeout_secs: 600,
        extra_headers: Vec::new(),
    };
    let at = usize::from(split).min(bytes.len());
    let mut t = StreamTranslator::new(&plan);
    let _ = t.push(&bytes[..at], false);
    let _ = t.push(&bytes[at..], true);
    assert!(t.finished(), "a stream must always end (normally or with an error event)");
    assert_eq!(t.buffered(), 0);
});
