#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Criterion benches of the core's hot paths: request planning (2 KB and 1 MB bodies, and a
//! Codex-sized Responses turn), SigV4 signing, non-streaming response translation, and stream
//! chunk translation (to Chat Completions and to Responses clients).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use unigate_core::config::Gateway;
use unigate_core::doors::Door;
use unigate_core::formats::Format;
use unigate_core::ir::ResponseMeta;
use unigate_core::plan::{plan, PlanInput, ResponsePlan};
use unigate_core::response::translate_buffered;
use unigate_core::sigv4::AwsCredentials;
use unigate_core::stream::eventstream::event_frame;
use unigate_core::stream::StreamTranslator;

fn gateway() -> Gateway {
    let env = |k: &str| match k {
        "API_KEY" => Some("k".to_string()),
        "OPENAI_API_KEY" => Some("sk".to_string()),
        _ => None,
    };
    Gateway::from_json(br#"{"aws_region":"us-east-1"}"#, &env).unwrap()
}

/// An OpenAI chat body of about `size` bytes: a system prompt and a multi-turn conversation.
pub fn openai_body(model: &str, size: usize) -> Vec<u8> {
    let mut messages = vec![json!({"role": "system", "content": "You are a helpful assistant."})];
    let turn = "Tell me something interesting about the history of computing, briefly. ";
    let mut total = 0;
    let mut i = 0;
    while total < size {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(json!({"role": role, "content": turn}));
        total += turn.len() + 40;
        i += 1;
    }
    if i % 2 == 0 {
        messages.push(json!({"role": "user", "content": "And one more?"}));
    }
    serde_json::to_vec(
        &json!({"model": model, "messages": messages, "max_tokens": 256, "temperature": 0.7}),
    )
    .unwrap()
}

fn input(body: &[u8]) -> PlanInput<'_> {
    PlanInput::new(Door::Chat, body)
        .request_id("0123456789abcdef0123456789abcdef")
        .now(1_700_000_000)
}

fn creds() -> AwsCredentials {
    AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: Some("IQoJb3JpZ2luX2VjEXAMPLETOKEN".into()),
        expires_at: None,
    }
}

fn bench_requests(c: &mut Criterion) {
    let gw = gateway();
    let mut g = c.benchmark_group("plan");
    for (name, model, size) in [
        ("openai_to_claude_2k", "claude-3-haiku", 2048),
        ("openai_to_openai_2k", "gpt-4o", 2048),
        ("openai_to_converse_2k", "amazon.nova-pro-v1:0", 2048),
        ("openai_to_claude_1m", "claude-3-haiku", 1 << 20),
    ] {
        let body = openai_body(model, size);
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| plan(&gw, &input(black_box(&body))).unwrap())
        });
    }
    let body = codex_body();
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("responses_codex_to_claude_40k", |b| {
        b.iter(|| {
            plan(
                &gw,
                &PlanInput::new(Door::Responses, black_box(&body))
                    .request_id("0123456789abcdef0123456789abcdef")
                    .now(1_700_000_000),
            )
            .unwrap()
        })
    });
    let body = openai_body("claude-3-haiku", 2048);
    let plan = plan(&gw, &input(&body)).unwrap();
    let c = creds();
    g.bench_function("sign_2k", |b| {
        b.iter(|| {
            plan.upstream
                .signing_headers(black_box(&c), 1_700_000_000)
                .unwrap()
        })
    });
    g.finish();
}

/// A first Codex turn of about 40 KB: a 17 KB developer prompt, environment context, the
/// prompt, and Codex's tool list (functions, a namespace, a custom tool, built-ins).
pub fn codex_body() -> Vec<u8> {
    let function = |name: &str| {
        json!({"type": "function", "name": name, "description": "Runs a command in the workspace and returns its output. ".repeat(20), "strict": false,
               "parameters": {"type": "object", "properties": {"cmd": {"type": "string", "description": "The command."}, "workdir": {"type": "string"}, "timeout_ms": {"type": "number"}}, "required": ["cmd"], "additionalProperties": false}})
    };
    let mut tools: Vec<serde_json::Value> = [
        "exec_command",
        "write_stdin",
        "request_user_input",
        "view_image",
        "get_goal",
        "create_goal",
        "update_goal",
    ]
    .iter()
    .map(|n| function(n))
    .collect();
    tools.push(json!({"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents.", "tools": [function("spawn_agent"), function("wait_agent"), function("close_agent")]}));
    tools.push(json!({"type": "custom", "name": "apply_patch", "description": "Edit files.", "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch hunk+ end_patch\n".repeat(12)}}));
    tools.push(json!({"type": "web_search", "external_web_access": false}));
    let dev = |text: String| json!({"type": "message", "role": "developer", "content": [{"type": "input_text", "text": text}]});
    let user = |text: &str| json!({"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]});
    serde_json::to_vec(&json!({
        "model": "us.anthropic.claude-sonnet-4-20250514-v1:0", "stream": true, "store": false,
        "input": [
            dev("You are Codex, a coding agent running in a terminal. ".repeat(320)),
            dev("<permissions>danger-full-access</permissions> ".repeat(40)),
            user("<environment_context><cwd>/repo</cwd><shell>bash</shell></environment_context>"),
            user("Run the tests and fix what fails."),
        ],
        "tools": tools, "tool_choice": "auto", "parallel_tool_calls": true,
        "reasoning": {"summary": "auto"}, "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a7c4-5b1e-7d2a-9f3c-2a4b6c8d0e1f",
    }))
    .unwrap()
}

fn response_plan(api: Format, stream: bool) -> ResponsePlan {
    response_plan_for(api, Format::OpenaiChat, stream)
}

fn response_plan_for(api: Format, target: Format, stream: bool) -> ResponsePlan {
    ResponsePlan {
        operation: unigate_core::ir::Operation::Chat,
        upstream: api,
        input: target,
        target,
        stream,
        include_usage: true,
        structured: false,
        relay: unigate_core::plan::relays(api, target, false),
        meta: ResponseMeta {
            id: "chatcmpl-x".into(),
            created: 1,
            model: "claude-3-haiku".into(),
            legacy_functions: false,
            echo: Default::default(),
        },
        timeout_secs: 600,
        extra_headers: Vec::new(),
    }
}

fn bench_responses(c: &mut Criterion) {
    let body = serde_json::to_vec(&json!({
        "id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307",
        "content": [{"type": "text", "text": "Computing history is full of surprises. ".repeat(12)}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 512, "output_tokens": 128}
    }))
    .unwrap();
    let plan = response_plan(Format::Anthropic, false);
    c.bench_function("response/claude_to_openai", |b| {
        b.iter(|| translate_buffered(&plan, 200, None, black_box(&body)))
    });
    let plan = response_plan_for(Format::Anthropic, Format::Responses, false);
    c.bench_function("response/claude_to_responses", |b| {
        b.iter(|| translate_buffered(&plan, 200, None, black_box(&body)))
    });
}

/// A Claude InvokeModelWithResponseStream body with `n` text deltas.
pub fn claude_stream(n: usize) -> Vec<u8> {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        let raw = serde_json::to_vec(&v).unwrap();
        let payload = json!({"bytes": base64::engine::general_purpose::STANDARD.encode(raw), "p": "abcdefgh"});
        event_frame("chunk", payload.to_string().as_bytes())
    };
    let mut out = b64(
        json!({"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "usage": {"input_tokens": 20, "output_tokens": 1}}}),
    );
    out.extend(b64(json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
    for i in 0..n {
        out.extend(b64(json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!(" word{i}")}})));
    }
    out.extend(b64(json!({"type": "content_block_stop", "index": 0})));
    out.extend(b64(json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": n}})));
    out.extend(b64(json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 20, "outputTokenCount": n}})));
    out
}

fn bench_streams(c: &mut Criterion) {
    let stream = claude_stream(300);
    let mut g = c.benchmark_group("stream");
    g.throughput(Throughput::Elements(300));
    for (name, target) in [
        ("claude_300_chunks_to_openai", Format::OpenaiChat),
        ("claude_300_chunks_to_responses", Format::Responses),
    ] {
        let plan = response_plan_for(Format::Anthropic, target, true);
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut t = StreamTranslator::new(&plan).unwrap();
                let mut n = 0;
                for piece in black_box(&stream).chunks(4096) {
                    n += t.push(piece, false).len();
                }
                n += t.push(&[], true).len();
                n
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_requests, bench_responses, bench_streams);
criterion_main!(benches);
