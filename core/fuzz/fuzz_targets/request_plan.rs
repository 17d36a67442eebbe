//! Any request body through every door — detection, decoding, routing, relaying and encoding:
//! never a panic, and every error is a well-formed client error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use unigate_core::config::Gateway;
use unigate_core::doors::Door;
use unigate_core::files::FileContext;
use unigate_core::formats::bedrock_runtime::BedrockOp;
use unigate_core::plan::embeddings::Planned;
use unigate_core::plan::{plan_request, PlanInput};

fn gateway() -> &'static Gateway {
    static GW: OnceLock<Gateway> = OnceLock::new();
    GW.get_or_init(|| {
        let env = |k: &str| match k {
            "API_KEY" => Some("k".to_string()),
            "OPENAI_API_KEY" => Some("sk".to_string()),
            _ => None,
        };
        Gateway::from_json(br#"{"aws_region":"us-east-1"}"#, &env).unwrap()
    })
}

const DOORS: [Door; 7] = [
    Door::Chat,
    Door::Messages,
    Door::CountTokens,
    Door::Responses,
    Door::Embeddings,
    Door::Bedrock(BedrockOp::InvokeStream),
    Door::Bedrock(BedrockOp::CountTokens),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let door = DOORS[usize::from(selector) % DOORS.len()];
    let files = [FileContext {
        id: "file-1".into(),
        filename: "a.txt".into(),
        content_type: "text/plain".into(),
        bytes: 3,
        text: "abc".into(),
        truncated: false,
    }];
    let path_model = ["us.anthropic.claude-sonnet-4-20250514-v1:0", "claude-3-haiku", "..", "amazon.nova-lite-v1:0"]
        [usize::from(selector / 8) % 4];
    for (query, files) in [(None, None), (Some("target_format=bedrock_claude"), Some(&files[..]))] {
        let input = PlanInput::new(door, body)
            .query(query)
            .target_header(Some("bedrock_titan"))
            .anthropic_beta(Some("claude-code-20250219,interleaved-thinking-2025-05-14"))
            .path_model(Some(path_model))
            .request_id("0123456789abcdef0123456789abcdef")
            .files(files)
            .now(1_700_000_000);
        match plan_request(gateway(), &input) {
            Ok(Planned::Forward(plan)) => assert!(!plan.upstream.path.is_empty()),
            Ok(Planned::Fanout(f)) => assert!(!f.calls.is_empty() && f.calls.len() == f.batches.len()),
            Err(e) => assert!((400..600).contains(&e.status)),
        }
    }
});
