//! Any upstream answer body, for every upstream API × target format and several statuses:
//! never a panic, always a response with a valid status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use unigate_core::formats::Format;
use unigate_core::ir::ResponseMeta;
use unigate_core::plan::ResponsePlan;
use unigate_core::response::{translate_buffered, usage_of};

const APIS: [Format; 6] = [
    Format::OpenaiChat,
    Format::Anthropic,
    Format::Titan,
    Format::Converse,
    Format::Agent,
    Format::Responses,
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let api = APIS[usize::from(selector) % APIS.len()];
    let target = [Format::OpenaiChat, Format::Anthropic, Format::Titan, Format::Responses]
        [usize::from(selector / 8) % 4];
    let status = [200u16, 400, 403, 429, 500, 503][usize::from(selector / 32) % 6];
    let plan = ResponsePlan {
        operation: unigate_core::ir::Operation::Chat,
        upstream: api,
        input: Format::OpenaiChat,
        target,
        stream: false,
        include_usage: false,
        structured: selector & 1 == 1,
        relay: false,
        meta: ResponseMeta {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "m".into(),
            legacy_functions: selector & 2 == 2,
            echo: Default::default(),
        },
        timeout_secs: 600,
        extra_headers: Vec::new(),
    };
    let resp = translate_buffered(&plan, status, Some("ThrottlingException"), body);
    assert!((200..600).contains(&resp.status));
    let _ = usage_of(api, body);
});
