#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! A fixed workload for `valgrind --tool=callgrind`: plans and signs N translated requests and
//! translates their answers. Usage: profile_plan [N]
use serde_json::json;
use unigate_core::config::Gateway;
use unigate_core::doors::Door;
use unigate_core::plan::{plan, PlanInput};
use unigate_core::response::translate_buffered;
use unigate_core::sigv4::AwsCredentials;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1000);
    let env = |k: &str| (k == "OPENAI_API_KEY").then(|| "sk".to_string());
    let gw = Gateway::from_json(br#"{"aws_region":"us-east-1"}"#, &env).unwrap();
    let mut messages = vec![json!({"role": "system", "content": "You are a helpful assistant."})];
    for i in 0..27 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(json!({"role": role, "content": "Tell me something interesting about the history of computing."}));
    }
    let body = serde_json::to_vec(
        &json!({"model": "claude-3-haiku", "messages": messages, "max_tokens": 256}),
    )
    .unwrap();
    let answer = serde_json::to_vec(&json!({"id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": "claude", "content": [{"type": "text", "text": "Computing history is full of surprises. ".repeat(12)}], "stop_reason": "end_turn", "usage": {"input_tokens": 512, "output_tokens": 128}})).unwrap();
    let creds = AwsCredentials {
        access_key_id: "AKID".into(),
        secret_access_key: "secret".into(),
        session_token: Some("token".into()),
        expires_at: None,
    };
    let mut total = 0;
    for _ in 0..n {
        let plan = plan(
            &gw,
            &PlanInput::new(Door::Chat, &body)
                .request_id("0123456789abcdef0123456789abcdef")
                .now(1_700_000_000),
        )
        .unwrap();
        let h = plan
            .upstream
            .signing_headers(&creds, 1_700_000_000)
            .unwrap();
        let r = translate_buffered(&plan.response, 200, None, &answer);
        total += h.len() + r.body.len() + plan.upstream.body.len();
    }
    println!("{} bytes of body {}", total, body.len());
}
