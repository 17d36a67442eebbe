//! Any request body through detection, decoding, routing and encoding: never a panic, and
//! every error is a well-formed client error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use unigate_core::config::Gateway;
use unigate_core::files::FileContext;
use unigate_core::doors::Door;
use unigate_core::plan::{plan, PlanInput};

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

fuzz_target!(|data: &[u8]| {
    let files = [FileContext {
        id: "file-1".into(),
        filename: "a.txt".into(),
        content_type: "text/plain".into(),
        bytes: 3,
        text: "abc".into(),
        truncated: false,
    }];
    for (query, files) in [(None, None), (Some("target_format=bedrock_claude"), Some(&files[..]))] {
        let input = PlanInput::new(Door::Chat, data)
            .query(query)
            .target_header(Some("bedrock_titan"))
            .request_id("0123456789abcdef0123456789abcdef")
            .files(files)
            .now(1_700_000_000);
        match plan(gateway(), &input) {
            Ok(plan) => assert!(!plan.upstream.path.is_empty()),
            Err(e) => assert!((400..600).contains(&e.status)),
        }
    }
    // The same bytes through the Responses door.
    match plan(gateway(), &PlanInput::new(Door::Responses, data).request_id("0123456789abcdef0123456789abcdef")) {
        Ok(plan) => assert!(!plan.upstream.path.is_empty()),
        Err(e) => assert!((400..600).contains(&e.status)),
    }
});
