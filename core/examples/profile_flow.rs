#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The whole filter flow for one `make bench` request, natively: every callback in Envoy's
//! order against the in-memory host, with each host call counted by kind. Prints the host calls
//! per request (what a request costs in VM↔Envoy crossings) and is a fixed workload for
//! `valgrind --tool=callgrind` (instructions inside the filter, host work excluded).
//!
//! Usage: profile_flow <bedrock|openai|stream> [N]
use serde_json::json;
use std::collections::BTreeMap;
use std::rc::Rc;
use unigate_core::config::Gateway;
use unigate_core::credentials::CredentialsRecord;
use unigate_core::flow::http::HttpFlow;
use unigate_core::flow::mock::MockHost;
use unigate_core::flow::{credentials, Body, Headers, Host, HostResult, Level, MetricKind};
use unigate_core::sigv4::AwsCredentials;
use unigate_core::stream::eventstream::event_frame;

/// A host that counts the calls made through it.
struct Counting {
    inner: MockHost,
    calls: BTreeMap<&'static str, u64>,
    /// Print each call (`TRACE=1`).
    trace: bool,
}

impl Counting {
    fn tick(&mut self, name: &'static str) {
        *self.calls.entry(name).or_default() += 1;
        if self.trace {
            println!("    {name}");
        }
    }
}

impl Host for Counting {
    fn headers(&mut self, map: Headers) -> HostResult<Vec<(String, Vec<u8>)>> {
        self.tick("get_header_map_pairs");
        self.inner.headers(map)
    }
    fn header(&mut self, map: Headers, name: &str) -> HostResult<Option<String>> {
        self.tick("get_header_map_value");
        if self.trace {
            println!("      {map:?} {name}");
        }
        self.inner.header(map, name)
    }
    fn set_header(&mut self, map: Headers, name: &str, value: &str) -> HostResult<()> {
        self.tick("replace_header_map_value");
        if self.trace {
            println!("      {map:?} {name}");
        }
        self.inner.set_header(map, name, value)
    }
    fn remove_header(&mut self, map: Headers, name: &str) -> HostResult<()> {
        self.tick("remove_header_map_value");
        if self.trace {
            println!("      {map:?} {name}");
        }
        self.inner.remove_header(map, name)
    }
    fn body(&mut self, body: Body, size: usize) -> HostResult<Vec<u8>> {
        self.tick("get_buffer_bytes");
        self.inner.body(body, size)
    }
    fn body_range(&mut self, body: Body, start: usize, len: usize) -> HostResult<Vec<u8>> {
        self.tick("get_buffer_bytes");
        self.inner.body_range(body, start, len)
    }
    fn set_body(&mut self, body: Body, replace: usize, data: &[u8]) -> HostResult<()> {
        self.tick("set_buffer_bytes");
        self.inner.set_body(body, replace, data)
    }
    fn send_response(&mut self, s: u16, h: &[(&str, &str)], b: &[u8]) -> HostResult<()> {
        self.tick("send_local_response");
        self.inner.send_response(s, h, b)
    }
    fn resume_request(&mut self) -> HostResult<()> {
        self.tick("continue_stream");
        self.inner.resume_request()
    }
    fn clear_route_cache(&mut self) -> HostResult<()> {
        self.tick("clear_route_cache");
        self.inner.clear_route_cache()
    }
    fn property(&mut self, path: &[&str]) -> HostResult<Option<Vec<u8>>> {
        self.tick("get_property");
        self.inner.property(path)
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) -> HostResult<()> {
        self.tick("set_property");
        if self.trace {
            println!("      {path:?}");
        }
        self.inner.set_property(path, value)
    }
    fn dispatch(
        &mut self,
        c: &str,
        h: &[(&str, &str)],
        b: Option<&[u8]>,
        t: u64,
    ) -> HostResult<u32> {
        self.tick("dispatch_http_call");
        self.inner.dispatch(c, h, b, t)
    }
    fn callout_answer(&mut self, n: usize, size: usize) -> (Option<u16>, Vec<u8>) {
        self.tick("callout_answer");
        self.inner.callout_answer(n, size)
    }
    fn callout_header(&mut self, name: &str) -> Option<String> {
        self.tick("callout_header");
        self.inner.callout_header(name)
    }
    fn shared_get(&mut self, key: &str) -> HostResult<(Option<Vec<u8>>, u32)> {
        self.tick("get_shared_data");
        self.inner.shared_get(key)
    }
    fn shared_set(&mut self, key: &str, value: &[u8], cas: u32) -> HostResult<()> {
        self.tick("set_shared_data");
        self.inner.shared_set(key, value, cas)
    }
    fn now_unix(&self) -> u64 {
        self.inner.now_unix()
    }
    fn now_ms(&self) -> u64 {
        self.inner.now_ms()
    }
    fn random_hex(&mut self) -> String {
        self.tick("random_get");
        self.inner.random_hex()
    }
    fn define_metric(&mut self, kind: MetricKind, name: &str) {
        self.inner.define_metric(kind, name)
    }
    fn count(&mut self, name: &str, by: u64) {
        if by > 0 {
            self.tick("increment_metric");
        }
        self.inner.count(name, by)
    }
    fn record(&mut self, name: &str, value: u64) {
        self.tick("record_metric");
        self.inner.record(name, value)
    }
    fn log_enabled(&self, level: Level) -> bool {
        self.inner.log_enabled(level)
    }
    fn log(&mut self, level: Level, message: &str) {
        self.tick("log");
        self.inner.log(level, message)
    }
    fn set_tick_ms(&mut self, ms: u32) -> HostResult<()> {
        self.inner.set_tick_ms(ms)
    }
}

/// The body `make bench` sends (bench/run.py `chat_body`).
fn chat_body(model: &str, stream: bool) -> Vec<u8> {
    let mut messages = vec![json!({"role": "system", "content": "You are a helpful assistant."})];
    for i in 0..12 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(json!({"role": role, "content": "Tell me something interesting about the history of computing, with a date and a name. "}));
    }
    messages.push(json!({"role": "user", "content": "One more, please."}));
    let mut body =
        json!({"model": model, "messages": messages, "max_tokens": 256, "temperature": 0.7});
    if stream {
        body["stream"] = json!(true);
    }
    serde_json::to_vec(&body).unwrap()
}

fn claude_answer() -> Vec<u8> {
    serde_json::to_vec(&json!({"id": "msg_bdrk_01", "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307", "content": [{"type": "text", "text": "Computing history is full of surprises. ".repeat(12)}], "stop_reason": "end_turn", "stop_sequence": null, "usage": {"input_tokens": 512, "output_tokens": 128}})).unwrap()
}

fn openai_answer() -> Vec<u8> {
    serde_json::to_vec(&json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Computing history is full of surprises. ".repeat(12)}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 512, "completion_tokens": 128, "total_tokens": 640}})).unwrap()
}

/// 300 event-stream frames of a Claude stream, as Bedrock sends them.
fn claude_stream() -> Vec<Vec<u8>> {
    let chunk = |v: serde_json::Value| {
        let bytes = serde_json::to_vec(&v).unwrap();
        let b64 = base64_encode(&bytes);
        event_frame("chunk", format!(r#"{{"bytes":"{b64}"}}"#).as_bytes())
    };
    let mut out = vec![chunk(
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "usage": {"input_tokens": 512, "output_tokens": 1}}}),
    )];
    out.push(chunk(
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    ));
    for i in 0..296 {
        out.push(chunk(
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!("word{i} ")}}),
        ));
    }
    out.push(chunk(json!({"type": "content_block_stop", "index": 0})));
    out.push(chunk(
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 296}, "amazon-bedrock-invocationMetrics": {"inputTokenCount": 512, "outputTokenCount": 296}}),
    ));
    out
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn one_request(
    gw: &Rc<Gateway>,
    host: &mut Counting,
    body: &[u8],
    answer: &[u8],
    frames: &[Vec<u8>],
) {
    let len = body.len().to_string();
    host.inner.request_headers = [
        (":method", "POST"),
        (":path", "/v1/chat/completions"),
        (":authority", "gateway"),
        ("authorization", "Bearer bench-key"),
        ("content-type", "application/json"),
        ("content-length", len.as_str()),
        ("x-request-id", "0123456789abcdef"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    host.inner.request_body = body.to_vec();
    host.inner.reply = None;
    let mut flow = HttpFlow::new(1, Some(gw.clone()), None);
    flow.on_request_headers(host, false);
    flow.on_request_body(host, body.len(), true);
    let stream = !frames.is_empty();
    let ctype = if stream {
        "application/vnd.amazon.eventstream"
    } else {
        "application/json"
    };
    host.inner
        .respond(&[(":status", "200"), ("content-type", ctype)]);
    flow.on_response_headers(host, false);
    if stream {
        let n = frames.len();
        for (i, f) in frames.iter().enumerate() {
            host.inner.response_body = f.clone();
            flow.on_response_body(host, f.len(), i + 1 == n);
        }
    } else {
        host.inner.response_body = answer.to_vec();
        flow.on_response_body(host, answer.len(), true);
    }
    flow.on_log(host);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let case = args.next().unwrap_or_else(|| "bedrock".into());
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let env = |k: &str| match k {
        "API_KEY" => Some("bench-key".to_string()),
        "OPENAI_API_KEY" => Some("sk-bench".to_string()),
        _ => None,
    };
    let gw = Rc::new(Gateway::from_json(br#"{"aws_region":"us-east-1"}"#, &env).unwrap());
    let mut host = Counting {
        inner: MockHost::request(&[], b""),
        calls: BTreeMap::new(),
        trace: std::env::var_os("TRACE").is_some(),
    };
    let creds = AwsCredentials {
        access_key_id: "AKIDBENCHMARK".into(),
        secret_access_key: "benchmark-secret".into(),
        session_token: Some("benchmark-session-token".into()),
        expires_at: None,
    };
    let now = host.inner.now_unix;
    credentials::store(&mut host.inner, &CredentialsRecord::new(creds, now));
    let (body, answer, frames) = match case.as_str() {
        "bedrock" => (chat_body("claude-3-haiku", false), claude_answer(), vec![]),
        "openai" => (chat_body("gpt-4o-mini", false), openai_answer(), vec![]),
        "stream" => (chat_body("claude-3-haiku", true), vec![], claude_stream()),
        other => panic!("unknown case {other}"),
    };
    for _ in 0..n {
        one_request(&gw, &mut host, &body, &answer, &frames);
        assert!(host.inner.reply.is_none(), "{:?}", host.inner.reply);
    }
    let total: u64 = host.calls.values().sum();
    println!(
        "{case}: {:.1} host calls per request (body {} bytes)",
        total as f64 / n as f64,
        body.len()
    );
    for (name, c) in &host.calls {
        println!("  {name:<26} {:.2}", *c as f64 / n as f64);
    }
}
