//! Any upstream stream bytes, split at a fuzzer-chosen point, through every stream decoder and
//! encoder: never a panic, bounded buffering, and a stream that always ends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unigate_core::formats::Format;
use unigate_core::ir::ResponseMeta;
use unigate_core::plan::ResponsePlan;
use unigate_core::stream::StreamTranslator;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let Some((&split, bytes)) = rest.split_first() else { return };
    let api = [
        Format::OpenaiChat,
        Format::Anthropic,
        Format::Titan,
        Format::Converse,
        Format::Agent,
        Format::Responses,
    ][usize::from(selector) % 6];
    let target = [Format::OpenaiChat, Format::Anthropic, Format::Titan, Format::Responses]
        [usize::from(selector / 6) % 4];
    let structured = selector & 0x80 != 0;
    let plan = ResponsePlan {
        operation: unigate_core::ir::Operation::Chat,
        upstream: api,
        input: Format::OpenaiChat,
        target,
        stream: true,
        include_usage: selector & 0x40 != 0,
        structured,
        relay: unigate_core::plan::relays(api, target, structured),
        meta: ResponseMeta {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "m".into(),
            legacy_functions: false,
            echo: Default::default(),
        },
        timeout_secs: 600,
        extra_headers: Vec::new(),
    };
    let at = usize::from(split).min(bytes.len());
    let mut t = StreamTranslator::new(&plan).unwrap();
    let _ = t.push(&bytes[..at], false);
    let _ = t.push(&bytes[at..], true);
    assert!(t.finished(), "a stream must always end (normally or with an error event)");
    assert_eq!(t.buffered(), 0);
});
