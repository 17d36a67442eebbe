#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! Memory a request body costs while it is planned (issue 17: at most ~3× the body in Envoy,
//! of which Envoy's own buffer is one). The filter holds a copy of the body and plans it; this
//! counts every byte the planning allocates on top, on this thread, and checks the peak of
//! (copy + planning) for each door and upstream path against the budget.

use serde_json::{json, Value};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use unigate_core::config::Gateway;
use unigate_core::doors::Door;
use unigate_core::plan::{plan_request, PlanInput};

struct Counting;

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn add(n: usize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + n;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

fn sub(n: usize) {
    let _ = LIVE.try_with(|l| l.set(l.get().saturating_sub(n)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters change.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        sub(layout.size());
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // A moving realloc holds both blocks for a moment: count the new one before the old
        // one goes, as a Wasm allocator's memory would.
        add(new_size);
        sub(layout.size());
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn gateway() -> Gateway {
    let env = |k: &str| match k {
        "API_KEY" => Some("test-key".to_string()),
        "OPENAI_API_KEY" => Some("sk-upstream".to_string()),
        _ => None,
    };
    let config = json!({"aws_region": "us-east-1", "openai_base_url": "https://api.openai.com/v1",
        "max_request_bytes": 33_554_432});
    Gateway::from_json(config.to_string().as_bytes(), &env).unwrap()
}

/// Peak bytes held while `body` (already copied into the filter) is planned, over its size.
fn peak_ratio(gw: &Gateway, door: Door, body: Vec<u8>, path_model: Option<&str>) -> (f64, bool) {
    let size = body.len();
    LIVE.with(|l| l.set(0));
    PEAK.with(|p| p.set(0));
    add(size); // the body copy the host hands the filter
    let ok = {
        let input = PlanInput::new(door, &body)
            .request_id("0123456789abcdef0123456789abcdef")
            .path_model(path_model)
            .now(1_700_000_000);
        let planned = plan_request(gw, &input);
        planned.is_ok()
    };
    drop(body);
    let peak = PEAK.with(Cell::get);
    (peak as f64 / size as f64, ok)
}

fn text(n: usize) -> String {
    // Plain prose with the escapes real text carries (newlines, quotes).
    let unit = "Lorem ipsum dolor sit amet, \"consectetur\" adipiscing elit.\n";
    unit.repeat(n / unit.len() + 1)
}

/// Whether `v` holds the string `t` somewhere.
fn holds_text(v: &Value, t: &str) -> bool {
    match v {
        Value::String(s) => s == t,
        Value::Array(a) => a.iter().any(|x| holds_text(x, t)),
        Value::Object(o) => o.values().any(|x| holds_text(x, t)),
        _ => false,
    }
}

const CLAUDE: &str = "anthropic.claude-3-5-sonnet-20240620-v1:0";

/// A 20 MB prompt through every door and upstream path: the filter holds its copy of the body
/// and the upstream body, nothing else of that size (with Envoy's own buffer: ~3×), and the
/// prompt arrives exact.
#[test]
fn a_large_prompt_costs_at_most_two_copies_while_it_is_planned() {
    let gw = gateway();
    let t = text(20_000_000);
    let chat = |model: &str| {
        serde_json::to_vec(&json!({"model": model, "messages": [{"role": "user", "content": t}]}))
            .unwrap()
    };
    let messages = |model: &str| {
        serde_json::to_vec(&json!({"model": model, "max_tokens": 100,
            "messages": [{"role": "user", "content": t}]}))
        .unwrap()
    };
    let responses = |model: &str| serde_json::to_vec(&json!({"model": model, "input": t})).unwrap();
    let invoke = serde_json::to_vec(&json!({"anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 100, "messages": [{"role": "user", "content": t}]}))
    .unwrap();
    let invoke_door = Door::Bedrock(unigate_core::formats::bedrock_runtime::BedrockOp::Invoke);
    // (case, door, body, path model, budget in bodies)
    type Case<'a> = (&'a str, Door, Vec<u8>, Option<&'a str>, f64);
    let cases: Vec<Case> = vec![
        (
            "chat -> openai (unchanged)",
            Door::Chat,
            chat("gpt-4o"),
            None,
            2.05,
        ),
        (
            "chat -> converse",
            Door::Chat,
            chat("amazon.nova-pro-v1:0"),
            None,
            2.05,
        ),
        ("chat -> claude", Door::Chat, chat(CLAUDE), None, 2.05),
        (
            "messages -> claude (relay)",
            Door::Messages,
            messages(CLAUDE),
            None,
            2.05,
        ),
        (
            "messages -> openai",
            Door::Messages,
            messages("gpt-4o"),
            None,
            2.05,
        ),
        (
            "responses -> claude",
            Door::Responses,
            responses(CLAUDE),
            None,
            2.05,
        ),
        (
            "responses -> openai (relay)",
            Door::Responses,
            responses("gpt-4o"),
            None,
            2.05,
        ),
        ("bedrock invoke", invoke_door, invoke, Some(CLAUDE), 1.05),
    ];
    let mut report = Vec::new();
    let mut over = Vec::new();
    for (name, door, body, model, _) in &cases {
        // The prompt arrives upstream whole and exact (it is put in from the client's body).
        let input = PlanInput::new(*door, body)
            .request_id("0123456789abcdef0123456789abcdef")
            .path_model(*model);
        let Ok(unigate_core::plan::embeddings::Planned::Forward(plan)) = plan_request(&gw, &input)
        else {
            panic!("{name}: not planned")
        };
        let sent: Value = serde_json::from_slice(plan.upstream.sent_body(body)).unwrap();
        assert!(
            holds_text(&sent, &t),
            "{name}: the prompt did not arrive as sent"
        );
    }
    for (name, door, body, model, budget) in cases {
        let (r, ok) = peak_ratio(&gw, door, body, model);
        report.push(format!("{name}: {r:.2}x"));
        if !ok || r > budget {
            over.push(format!("{name}: {r:.2}x (budget {budget}x, planned: {ok})"));
        }
    }
    println!("{}", report.join("\n"));
    assert!(over.is_empty(), "{}", over.join("\n"));
}

/// The costliest body the limits accept: many short text blocks (an object of a few hundred
/// bytes of tree each) just under the tree's limit; their texts stay in the body.
#[test]
fn a_body_of_many_blocks_within_the_limits_costs_its_tree_and_the_upstream_body() {
    let gw = gateway();
    let part = json!({"type": "text", "text": "x".repeat(1000)});
    let body = serde_json::to_vec(&json!({"model": CLAUDE, "max_tokens": 10, "messages": [
        {"role": "user", "content": vec![part; 17_000]},
        {"role": "assistant", "content": "ok"}, {"role": "user", "content": "hi"}]}))
    .unwrap();
    let (r, ok) = peak_ratio(&gw, Door::Messages, body, None);
    println!("many blocks: {r:.2}x, planned: {ok}");
    assert!(ok, "refused");
    // The body's copy, a tree of at most the body's size (here on a 64-bit host, whose
    // values are larger than the filter's) and the upstream body.
    assert!(r <= 3.3, "{r:.2}x");
}

/// Bodies built to cost memory (many short values just under the value limit, many tiny
/// objects) are refused before their tree passes the body's size.
#[test]
fn bodies_dense_in_values_are_refused_within_their_budget() {
    let gw = gateway();
    let n = 20_000_000 / 13;
    let filler: Vec<String> = (0..n).map(|i| format!("{i:010}")).collect();
    let strings = serde_json::to_vec(&json!({"model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}], "x": filler}))
    .unwrap();
    let parts: Vec<Value> = (0..n / 3)
        .map(|_| json!({"type": "text", "text": "abcdefghijklm"}))
        .collect();
    let objects = serde_json::to_vec(&json!({"model": CLAUDE, "max_tokens": 10,
        "messages": [{"role": "user", "content": parts}]}))
    .unwrap();
    for (name, door, body) in [
        ("short strings", Door::Chat, strings),
        ("tiny objects", Door::Messages, objects),
    ] {
        let size = body.len();
        let (r, ok) = peak_ratio(&gw, door, body, None);
        println!("{name} ({size} bytes): {r:.2}x, planned: {ok}");
        assert!(!ok, "{name}: planned");
        // The body's copy, at most a body of tree (whose growth is paid for before it
        // happens) and a vector's move.
        assert!(r <= 2.6, "{name}: {r:.2}x");
    }
}
