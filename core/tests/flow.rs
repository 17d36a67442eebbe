#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The filter's logic driven natively through the mock host: every proxy-wasm callback in the
//! order Envoy calls them, and what the filter did to the request, the answer, shared data,
//! metrics, filter state and logs.

use serde_json::{json, Value};
use std::rc::Rc;
use unigate_core::config::Gateway;
use unigate_core::credentials::CredentialsRecord;
use unigate_core::flow::http::{HttpFlow, MAX_RESPONSE_BYTES};
use unigate_core::flow::mock::MockHost;
use unigate_core::flow::root::RootFlow;
use unigate_core::flow::{credentials, Action, Level};
use unigate_core::sigv4::AwsCredentials;
use unigate_core::stream::eventstream::event_frame;

const KEY: &str = "test-key";

fn gateway_with(config: Value) -> Rc<Gateway> {
    let env = |k: &str| match k {
        "API_KEY" => Some(KEY.to_string()),
        "OPENAI_API_KEY" => Some("sk-upstream-secret".to_string()),
        "UNIGATE_SIDECAR_TOKEN" => Some("sidecar-secret-token".to_string()),
        _ => None,
    };
    Rc::new(Gateway::from_json(config.to_string().as_bytes(), &env).unwrap())
}

fn gateway() -> Rc<Gateway> {
    gateway_with(json!({"aws_region": "us-east-1"}))
}

fn creds() -> AwsCredentials {
    AwsCredentials {
        access_key_id: "AKIDFLOWTEST".into(),
        secret_access_key: "flow/secret/KEY".into(),
        session_token: Some("flow-session-token".into()),
        expires_at: None,
    }
}

/// A POST with the gateway key and a JSON body.
fn post(path: &str, body: &Value, extra: &[(&str, &str)]) -> MockHost {
    let bytes = serde_json::to_vec(body).unwrap();
    let len = bytes.len().to_string();
    let mut headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", "gateway"),
        ("authorization", "Bearer test-key"),
        ("content-type", "application/json"),
        ("content-length", len.as_str()),
    ];
    headers.extend_from_slice(extra);
    MockHost::request(&headers, &bytes)
}

/// Runs the request callbacks; returns the action of the body callback.
fn send(flow: &mut HttpFlow, host: &mut MockHost) -> Action {
    assert_eq!(flow.on_request_headers(host, false), Action::Pause);
    let n = host.request_body.len();
    flow.on_request_body(host, n, true)
}

/// The upstream answers `status` with a complete JSON body.
fn answer(flow: &mut HttpFlow, host: &mut MockHost, status: u16, body: &Value) -> Action {
    host.respond(&[
        (":status", &status.to_string()),
        ("content-type", "application/json"),
    ]);
    assert_eq!(flow.on_response_headers(host, false), Action::Pause);
    host.response_body = serde_json::to_vec(body).unwrap();
    let n = host.response_body.len();
    flow.on_response_body(host, n, true)
}

/// The sidecar answers the `file_ids` callout with the text of `file-abc` (notes.txt, "hello").
fn answer_file_context(flow: &mut HttpFlow, host: &mut MockHost) {
    host.callout = (
        Some(200),
        serde_json::to_vec(&json!({"files": [{"id": "file-abc", "filename": "notes.txt", "content_type": "text/plain", "bytes": 5, "text": "hello"}]})).unwrap(),
    );
    let n = host.callout.1.len();
    flow.on_callout_response(host, 1, 3, n);
}

fn with_credentials(host: &mut MockHost) {
    credentials::store(host, &CredentialsRecord::new(creds(), host.now_unix));
}

#[test]
fn health_is_local_and_needs_no_key() {
    let mut host = MockHost::request(&[(":method", "GET"), (":path", "/health")], b"");
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(flow.on_request_headers(&mut host, true), Action::Pause);
    let reply = host.reply.clone().unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "ok");
    flow.on_log(&mut host);
    // Local answers are counted, as provider `local` with no model.
    assert_eq!(
        host.counter(
            "unigate.requests_total.endpoint.health.provider.local.status_class.2xx.model.none"
        ),
        1
    );
    assert!(!host
        .counters
        .keys()
        .any(|k| k.starts_with("unigate.tokens_total")));
}

#[test]
fn a_missing_key_is_401_in_the_callers_format() {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    for (path, expect_type) in [
        ("/v1/chat/completions", None),
        (
            "/v1/chat/completions?target_format=bedrock_claude",
            Some("error"),
        ),
    ] {
        let mut host = post(path, &body, &[]);
        host.request_headers.retain(|(k, _)| k != "authorization");
        let mut flow = HttpFlow::new(1, Some(gateway()), None);
        assert_eq!(flow.on_request_headers(&mut host, false), Action::Pause);
        let reply = host.reply.unwrap();
        assert_eq!(reply.status, 401);
        let v = reply.json();
        assert_eq!(v["error"]["type"], "authentication_error");
        assert_eq!(v.get("type").and_then(Value::as_str), expect_type);
        assert_eq!(host.counters["unigate.auth_failures"], 1);
        assert!(host.dispatches.is_empty());
    }
}

#[test]
fn chat_to_claude_is_rewritten_signed_and_translated_back() {
    let body = json!({"model": "claude-3-haiku", "messages": [{"role": "user", "content": "Name three primes."}], "max_tokens": 50});
    let mut host = post(
        "/v1/chat/completions",
        &body,
        &[
            ("x-unigate-cluster", "openai"),
            ("x-amz-security-token", "client-token"),
            ("x-request-id", "req-from-envoy-1"),
        ],
    );
    host.debug = true;
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(7, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    assert!(host.reply.is_none());

    // The request as it goes upstream.
    assert_eq!(
        host.request_header(":path"),
        Some("/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke")
    );
    assert_eq!(
        host.request_header(":authority"),
        Some("bedrock-runtime.us-east-1.amazonaws.com")
    );
    assert_eq!(host.request_header("x-unigate-cluster"), Some("bedrock"));
    let auth = host.request_header("authorization").unwrap();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDFLOWTEST/"),
        "{auth}"
    );
    assert_eq!(
        host.request_header("x-amz-security-token"),
        Some("flow-session-token")
    );
    assert!(host.request_header("x-amz-date").is_some());
    let sent: Value = serde_json::from_slice(&host.request_body).unwrap();
    assert_eq!(sent["anthropic_version"], "bedrock-2023-05-31");
    assert_eq!(sent["max_tokens"], 50);
    assert_eq!(
        host.request_header("content-length"),
        Some(host.request_body.len().to_string().as_str())
    );
    assert_eq!(host.route_cache_clears, 1);
    assert_eq!(
        host.properties["unigate.model"],
        b"anthropic.claude-3-haiku-20240307-v1:0"
    );
    assert_eq!(host.properties["unigate.path"], b"/v1/chat/completions");
    assert_eq!(host.properties["unigate.provider"], b"bedrock");

    // The answer as it goes back.
    let upstream = json!({"id": "msg_bdrk_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "2, 3, 5."}], "stop_reason": "end_turn", "usage": {"input_tokens": 12, "output_tokens": 6, "cache_read_input_tokens": 4}});
    assert_eq!(
        answer(&mut flow, &mut host, 200, &upstream),
        Action::Continue
    );
    let client: Value = serde_json::from_slice(&host.response_body).unwrap();
    assert_eq!(client["object"], "chat.completion");
    assert_eq!(client["choices"][0]["message"]["content"], "2, 3, 5.");
    assert_eq!(client["usage"]["prompt_tokens"], 16);
    assert_eq!(
        host.response_header("content-length"),
        Some(host.response_body.len().to_string().as_str())
    );
    assert_eq!(host.properties["unigate.total_tokens"], b"22");

    host.now_ms += 40;
    flow.on_log(&mut host);
    let model = "anthropic.claude-3-haiku-20240307-v1:0";
    assert_eq!(
        host.counter(&format!(
            "unigate.requests_total.endpoint.chat.provider.bedrock.status_class.2xx.model.{model}"
        )),
        1
    );
    let tokens = |kind: &str| {
        host.counter(&format!(
            "unigate.tokens_total.provider.bedrock.key.key-{}.type.{kind}.model.{model}",
            &unigate_core::auth::key_label(KEY)[..8]
        ))
    };
    assert_eq!(
        (tokens("input"), tokens("output"), tokens("cached")),
        (16, 6, 4)
    );
    assert_eq!(
        host.histograms
            [&format!("unigate.request_duration_ms.endpoint.chat.provider.bedrock.model.{model}")],
        vec![40]
    );
    // Log lines carry Envoy's request id.
    assert!(host
        .logs
        .iter()
        .any(|(l, m)| *l == Level::Debug && m.starts_with("unigate req-from-envoy-1 (#7)")));
}

#[test]
fn the_first_bedrock_request_fetches_credentials_from_the_sidecar() {
    let body =
        json!({"model": "amazon.nova-lite-v1:0", "messages": [{"role": "user", "content": "hi"}]});
    let mut host = post("/v1/chat/completions", &body, &[]);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Pause);
    let call = &host.dispatches[0];
    assert_eq!(call.cluster, "unigate_sidecar");
    assert!(call
        .headers
        .contains(&(":path".into(), "/v1/internal/aws-credentials".into())));
    assert!(call
        .headers
        .contains(&("x-unigate-token".into(), "sidecar-secret-token".into())));
    // The request is still the client's while we wait.
    assert_eq!(host.request_header(":path"), Some("/v1/chat/completions"));

    host.callout = (
        Some(200),
        serde_json::to_vec(&json!({"access_key_id": "AKIDFROMSIDECAR", "secret_access_key": "s", "session_token": null, "expires_at": host.now_unix + 3600})).unwrap(),
    );
    let n = host.callout.1.len();
    flow.on_callout_response(&mut host, 1, 3, n);
    assert_eq!(host.resumes, 1);
    assert_eq!(
        host.request_header(":path"),
        Some("/model/amazon.nova-lite-v1%3A0/converse")
    );
    assert!(host
        .request_header("authorization")
        .unwrap()
        .contains("AKIDFROMSIDECAR"));
    // Stored for every worker.
    assert!(credentials::load(&mut host).is_some());
}

#[test]
fn sidecar_failures_are_clear_5xx_errors() {
    let body =
        json!({"model": "amazon.nova-lite-v1:0", "messages": [{"role": "user", "content": "hi"}]});
    // The callout cannot start.
    let mut host = post("/v1/chat/completions", &body, &[]);
    host.fail_dispatch = true;
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    send(&mut flow, &mut host);
    let reply = host.reply.clone().unwrap();
    assert_eq!(reply.status, 503);
    assert!(reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unigate_sidecar"));
    // The sidecar never answers.
    let mut host = post("/v1/chat/completions", &body, &[]);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    send(&mut flow, &mut host);
    host.callout = (None, Vec::new());
    flow.on_callout_response(&mut host, 1, 0, 0);
    let reply = host.reply.unwrap();
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"]["code"], "sidecar_unavailable");
    assert_eq!(host.resumes, 0);
}

#[test]
fn file_ids_are_fetched_for_the_keys_owner_and_put_in_the_prompt() {
    let body = json!({"model": "gpt-4o", "file_ids": ["file-abc"], "messages": [{"role": "user", "content": "Summarise."}]});
    let mut host = post("/v1/chat/completions", &body, &[]);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Pause);
    let call = host.dispatches[0].clone();
    assert!(call
        .headers
        .contains(&(":path".into(), "/v1/internal/file-context".into())));
    let owner = call
        .headers
        .iter()
        .find(|(k, _)| k == "x-unigate-owner")
        .unwrap();
    assert!(!owner.1.contains(KEY), "the owner is a hash of the key");
    answer_file_context(&mut flow, &mut host);
    assert_eq!(host.resumes, 1);
    let sent: Value = serde_json::from_slice(&host.request_body).unwrap();
    assert!(sent.get("file_ids").is_none());
    let text = sent["messages"][0]["content"].as_str().unwrap();
    assert!(text.contains("--- file: notes.txt") && text.ends_with("Summarise."));
    assert_eq!(
        host.request_header("authorization"),
        Some("Bearer sk-upstream-secret")
    );
}

#[test]
fn a_stream_is_translated_chunk_by_chunk() {
    let body = json!({"model": "amazon.nova-lite-v1:0", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut host = post("/v1/chat/completions", &body, &[]);
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    assert_eq!(
        host.request_header(":path"),
        Some("/model/amazon.nova-lite-v1%3A0/converse-stream")
    );
    host.respond(&[
        (":status", "200"),
        ("content-type", "application/vnd.amazon.eventstream"),
        ("content-length", "999"),
    ]);
    assert_eq!(flow.on_response_headers(&mut host, false), Action::Continue);
    assert_eq!(
        host.response_header("content-type"),
        Some("text/event-stream")
    );
    assert_eq!(host.response_header("content-length"), None);

    let frames = [
        event_frame("messageStart", br#"{"role":"assistant"}"#),
        event_frame(
            "contentBlockDelta",
            br#"{"contentBlockIndex":0,"delta":{"text":"Hello"}}"#,
        ),
        event_frame("messageStop", br#"{"stopReason":"end_turn"}"#),
        event_frame(
            "metadata",
            br#"{"usage":{"inputTokens":3,"outputTokens":1,"totalTokens":4}}"#,
        ),
    ];
    let mut client = Vec::new();
    for (i, f) in frames.iter().enumerate() {
        host.now_ms += 5;
        host.response_body = f.clone();
        let last = i + 1 == frames.len();
        assert_eq!(
            flow.on_response_body(&mut host, f.len(), last),
            Action::Continue
        );
        client.extend_from_slice(&host.response_body);
    }
    let text = String::from_utf8(client).unwrap();
    assert!(text.contains(r#""content":"Hello""#), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
    assert_eq!(host.properties["unigate.total_tokens"], b"4");
    flow.on_log(&mut host);
    assert_eq!(host.counter("unigate.streams_total"), 1);
    assert_eq!(
        host.histograms
            ["unigate.ttft_ms.endpoint.chat.provider.bedrock.model.amazon.nova-lite-v1:0"],
        vec![5]
    );
}

#[test]
fn relayed_and_translated_answers_over_the_cap_are_502() {
    // OpenAI to OpenAI is relayed (read for usage only); Claude to OpenAI is translated.
    for model in ["gpt-4o", "claude-3-haiku"] {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let mut host = post("/v1/chat/completions", &body, &[]);
        with_credentials(&mut host);
        let mut flow = HttpFlow::new(1, Some(gateway()), None);
        assert_eq!(send(&mut flow, &mut host), Action::Continue);
        host.respond(&[(":status", "200"), ("content-type", "application/json")]);
        flow.on_response_headers(&mut host, false);
        host.response_body = b"{".to_vec();
        assert_eq!(
            flow.on_response_body(&mut host, MAX_RESPONSE_BYTES + 1, false),
            Action::Pause,
            "{model}"
        );
        let reply = host.reply.unwrap();
        assert_eq!(reply.status, 502, "{model}");
        assert!(reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too large"));
    }
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let gw = gateway_with(
        json!({"aws_region": "us-east-1", "api_keys": [{"key": "limited", "name": "team-a", "rpm": 1}]}),
    );
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let mut shared = None;
    for (i, expect) in [(0, None), (1, Some(429))] {
        let mut host = post(
            "/v1/chat/completions",
            &body,
            &[("authorization", "Bearer limited")],
        );
        host.request_headers
            .retain(|(k, v)| k != "authorization" || v == "Bearer limited");
        if let Some(s) = shared.take() {
            host.shared = s;
        }
        let mut flow = HttpFlow::new(i, Some(gw.clone()), None);
        send(&mut flow, &mut host);
        assert_eq!(host.reply.as_ref().map(|r| r.status), expect);
        if let Some(r) = &host.reply {
            assert!(r.header("retry-after").is_some());
            assert_eq!(host.counter("unigate.rate_limited"), 1);
        }
        shared = Some(host.shared.clone());
    }
}

#[test]
fn envoys_own_replies_become_client_errors() {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let mut host = post("/v1/chat/completions", &body, &[]);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    send(&mut flow, &mut host);
    host.host_properties.insert(
        "response.code_details".into(),
        b"upstream_reset_before_response_started{remote_reset}".to_vec(),
    );
    let out = answer(&mut flow, &mut host, 503, &json!("upstream connect error"));
    assert_eq!(out, Action::Continue);
    let client: Value = serde_json::from_slice(&host.response_body).unwrap();
    assert_eq!(host.response_header(":status"), Some("502"));
    assert_eq!(client["error"]["code"], "upstream_reset");
    assert_eq!(host.counter("unigate.errors.upstream"), 1);
}

#[test]
fn internal_headers_from_clients_are_dropped() {
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let mut host = post(
        "/v1/chat/completions",
        &body,
        &[
            ("x-unigate-owner", "someone-else"),
            ("x-unigate-token", "guess"),
        ],
    );
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    send(&mut flow, &mut host);
    assert_eq!(host.request_header("x-unigate-owner"), None);
    assert_eq!(host.request_header("x-unigate-token"), None);
    assert_eq!(host.request_header("x-unigate-cluster"), Some("openai"));
}

#[test]
fn debug_output_never_shows_secrets() {
    let gw = gateway_with(json!({
        "aws_region": "us-east-1",
        "openai_api_key": "sk-literal-secret",
        "api_keys": ["plain-secret-key", {"key": "entry-secret-key", "name": "team-a"}],
    }));
    let body =
        json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let mut host = post(
        "/v1/chat/completions",
        &body,
        &[("authorization", "Bearer plain-secret-key")],
    );
    host.request_headers
        .retain(|(k, v)| k != "authorization" || v == "Bearer plain-secret-key");
    let mut flow = HttpFlow::new(1, Some(gw.clone()), None);
    send(&mut flow, &mut host);
    let planned = unigate_core::plan::plan(
        &gw,
        &unigate_core::plan::PlanInput::new(
            unigate_core::doors::Door::Chat,
            &serde_json::to_vec(&body).unwrap(),
        ),
    )
    .unwrap();
    let outputs = [
        format!("{gw:?}"),
        format!("{:?}", gw.config),
        format!("{planned:?}"),
        format!("{flow:?}"),
    ];
    for out in outputs {
        for secret in [
            "sk-literal-secret",
            "plain-secret-key",
            "entry-secret-key",
            "sidecar-secret-token",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("[redacted]"));
    }
}

#[test]
fn the_root_refreshes_credentials_under_a_lease() {
    let mut host = MockHost::request(&[], b"");
    let mut root = RootFlow::default();
    let env = |k: &str| match k {
        "API_KEY" => Some(KEY.to_string()),
        _ => None,
    };
    assert!(root.on_configure(&mut host, br#"{"aws_region": "us-east-1"}"#, &env));
    assert_eq!(host.tick_ms, Some(1000));
    assert!(host.defined.contains(&"unigate.auth_failures".to_string()));
    root.on_tick(&mut host);
    assert_eq!(host.dispatches.len(), 1);
    // Another tick while the lease is held does not ask again.
    root.on_tick(&mut host);
    assert_eq!(host.dispatches.len(), 1);
    host.callout = (
        Some(200),
        serde_json::to_vec(&json!({"access_key_id": "AKIDROOT", "secret_access_key": "s", "expires_at": host.now_unix + 3600})).unwrap(),
    );
    root.on_callout_response(&mut host, 3, 10);
    assert_eq!(
        {
            let now = host.now_unix;
            credentials::current(&mut host, now)
        }
        .unwrap()
        .access_key_id,
        "AKIDROOT"
    );
    // The next tick slows down to the refresh period and does not refresh fresh credentials.
    root.on_tick(&mut host);
    assert_eq!(host.tick_ms, Some(30_000));
    assert_eq!(host.dispatches.len(), 1);
    // A failed refresh keeps the old credentials and counts the failure.
    host.now_unix += 3600 - 60;
    root.on_tick(&mut host);
    assert_eq!(host.dispatches.len(), 2);
    host.callout = (Some(500), b"{}".to_vec());
    root.on_callout_response(&mut host, 3, 2);
    assert_eq!(host.counter("unigate.errors.credentials_refresh"), 1);
    assert!({
        let now = host.now_unix;
        credentials::current(&mut host, now)
    }
    .is_some());
}

#[test]
fn a_bad_configuration_is_rejected_with_a_critical_log() {
    let mut host = MockHost::request(&[], b"");
    let mut root = RootFlow::default();
    assert!(!root.on_configure(&mut host, br#"{"no_such_field": 1}"#, &|_| None));
    assert!(host.logs.iter().any(|(l, _)| *l == Level::Critical));
    assert!(root.gateway().is_none());
}

/// A Bedrock InvokeModelWithResponseStream `chunk` frame around one Claude event.
fn claude_chunk(event: &Value) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(event.to_string());
    event_frame(
        "chunk",
        json!({"bytes": b64, "p": "abc"}).to_string().as_bytes(),
    )
}

#[test]
fn messages_to_claude_are_relayed_with_betas_filtered_and_streamed_back_as_sse() {
    let body = json!({
        "model": "us.anthropic.claude-sonnet-4-20250514-v1:0", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "hi"}],
        "thinking": {"type": "enabled", "budget_tokens": 50, "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015"}]},
    });
    let mut host = post(
        "/v1/messages?beta=true",
        &body,
        &[
            ("x-api-key", KEY),
            ("anthropic-version", "2023-06-01"),
            (
                "anthropic-beta",
                "claude-code-20250219,interleaved-thinking-2025-05-14",
            ),
            ("anthropic-beta", "advanced-tool-use-2025-11-20"),
        ],
    );
    host.request_headers.retain(|(k, _)| k != "authorization");
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    assert_eq!(
        host.request_header(":path"),
        Some("/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream")
    );
    for h in ["x-api-key", "anthropic-version", "anthropic-beta"] {
        assert_eq!(host.request_header(h), None, "{h} reached Bedrock");
    }
    let sent: Value = serde_json::from_slice(&host.request_body).unwrap();
    assert_eq!(
        sent["anthropic_beta"],
        json!([
            "interleaved-thinking-2025-05-14",
            "tool-search-tool-2025-10-19"
        ])
    );
    assert!(sent.get("context_management").is_none() && sent.get("model").is_none());
    assert!(sent["thinking"].get("display").is_none());

    host.respond(&[
        (":status", "200"),
        ("content-type", "application/vnd.amazon.eventstream"),
    ]);
    assert_eq!(flow.on_response_headers(&mut host, false), Action::Continue);
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi!"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
        json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 9, "outputTokenCount": 3}}),
    ];
    let mut sse = String::new();
    for (i, e) in events.iter().enumerate() {
        let f = claude_chunk(e);
        host.response_body = f.clone();
        flow.on_response_body(&mut host, f.len(), i + 1 == events.len());
        sse.push_str(std::str::from_utf8(&host.response_body).unwrap());
    }
    assert!(sse.starts_with("event: message_start\ndata: {"), "{sse}");
    assert!(sse.contains("event: content_block_delta\ndata: "));
    assert!(sse.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
    assert!(!sse.contains("invocationMetrics"));
    assert_eq!(host.properties["unigate.total_tokens"], b"12");
}

#[test]
fn messages_errors_are_in_anthropics_shape() {
    let body = json!({"model": "claude-3-haiku", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    // No key.
    let mut host = post("/v1/messages", &body, &[]);
    host.request_headers.retain(|(k, _)| k != "authorization");
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    flow.on_request_headers(&mut host, false);
    let r = host.reply.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["type"], "error");
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    // Wrong method on the door's path.
    let mut host = MockHost::request(
        &[
            (":method", "GET"),
            (":path", "/v1/messages"),
            ("x-api-key", KEY),
        ],
        b"",
    );
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    flow.on_request_headers(&mut host, true);
    let r = host.reply.unwrap();
    assert_eq!((r.status, r.json()["type"].as_str()), (405, Some("error")));
    // Unknown model, missing max_tokens.
    for (b, status, ty) in [
        (
            json!({"model": "no-such-model", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
            404,
            "not_found_error",
        ),
        (
            json!({"model": "claude-3-haiku", "messages": [{"role": "user", "content": "x"}]}),
            400,
            "invalid_request_error",
        ),
    ] {
        let mut host = post("/v1/messages", &b, &[]);
        let mut flow = HttpFlow::new(1, Some(gateway()), None);
        send(&mut flow, &mut host);
        let r = host.reply.unwrap();
        assert_eq!(
            (r.status, r.json()["error"]["type"].as_str()),
            (status, Some(ty))
        );
    }
    // Bedrock unavailable: 529 overloaded_error.
    let mut host = post("/v1/messages", &body, &[]);
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    send(&mut flow, &mut host);
    host.respond(&[
        (":status", "503"),
        ("x-amzn-errortype", "ServiceUnavailableException"),
    ]);
    flow.on_response_headers(&mut host, false);
    host.response_body = br#"{"message":"Bedrock is unable to process your request."}"#.to_vec();
    let n = host.response_body.len();
    flow.on_response_body(&mut host, n, true);
    assert_eq!(host.response_header(":status"), Some("529"));
    let v: Value = serde_json::from_slice(&host.response_body).unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
}

#[test]
fn count_tokens_uses_bedrocks_counter_for_claude() {
    let body = json!({"model": "us.anthropic.claude-sonnet-4-20250514-v1:0", "messages": [{"role": "user", "content": "foo"}]});
    let mut host = post("/v1/messages/count_tokens?beta=true", &body, &[]);
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    assert_eq!(
        host.request_header(":path"),
        Some("/model/anthropic.claude-sonnet-4-20250514-v1%3A0/count-tokens")
    );
    let sent: Value = serde_json::from_slice(&host.request_body).unwrap();
    assert!(sent["input"]["invokeModel"]["body"].is_string());
    let out = answer(&mut flow, &mut host, 200, &json!({"inputTokens": 7}));
    assert_eq!(out, Action::Continue);
    assert_eq!(host.response_body, br#"{"input_tokens":7}"#);
}

/// A Bedrock runtime call as boto3 makes it with a bearer token: no content-type.
fn bedrock_call(path: &str, body: &[u8], extra: &[(&str, &str)]) -> MockHost {
    let len = body.len().to_string();
    let mut headers = vec![
        (":method", "POST"),
        (":path", path),
        (":authority", "gateway"),
        ("authorization", "Bearer test-key"),
        ("content-length", len.as_str()),
        ("x-amz-security-token", "client-session-token"),
        ("x-amz-date", "20260101T000000Z"),
        ("amz-sdk-invocation-id", "abc"),
    ];
    headers.extend_from_slice(extra);
    MockHost::request(&headers, body)
}

#[test]
fn bedrock_runtime_calls_are_relayed_and_re_signed() {
    let body = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut host = bedrock_call(
        "/model/claude-3-haiku/invoke",
        body,
        &[("x-amzn-bedrock-trace", "ENABLED")],
    );
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    // The alias resolved in the path; the body byte for byte.
    assert_eq!(
        host.request_header(":path"),
        Some("/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke")
    );
    assert_eq!(host.request_body, body);
    let auth = host.request_header("authorization").unwrap();
    assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDFLOWTEST/"));
    assert_eq!(
        host.request_header("x-amz-security-token"),
        Some("flow-session-token")
    );
    assert_eq!(host.request_header("x-amzn-bedrock-trace"), Some("ENABLED"));
    assert_eq!(
        host.request_header("content-type"),
        Some("application/json")
    );
    // The answer goes back untouched; usage comes from Bedrock's headers.
    host.respond(&[
        (":status", "200"),
        ("content-type", "application/json"),
        ("x-amzn-bedrock-input-token-count", "11"),
        ("x-amzn-bedrock-output-token-count", "4"),
    ]);
    assert_eq!(flow.on_response_headers(&mut host, false), Action::Continue);
    host.response_body = br#"{"id":"msg_bdrk_1","content":[]}"#.to_vec();
    assert_eq!(flow.on_response_body(&mut host, 31, true), Action::Continue);
    assert_eq!(host.response_body, br#"{"id":"msg_bdrk_1","content":[]}"#);
    assert_eq!(host.properties["unigate.total_tokens"], b"15");
    flow.on_log(&mut host);
    assert_eq!(
        host.counter("unigate.requests_total.endpoint.bedrock.provider.bedrock.status_class.2xx.model.anthropic.claude-3-haiku-20240307-v1:0"),
        1
    );
}

#[test]
fn bedrock_runtime_streams_pass_frame_for_frame_with_usage_read() {
    let body = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut host = bedrock_call(
        "/model/us.anthropic.claude-sonnet-4-20250514-v1:0/invoke-with-response-stream",
        body,
        &[],
    );
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    assert_eq!(
        host.request_header(":path"),
        Some("/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream")
    );
    assert_eq!(
        host.request_header("accept"),
        Some("application/vnd.amazon.eventstream")
    );
    host.respond(&[
        (":status", "200"),
        ("content-type", "application/vnd.amazon.eventstream"),
    ]);
    assert_eq!(flow.on_response_headers(&mut host, false), Action::Continue);
    assert_eq!(
        host.response_header("content-type"),
        Some("application/vnd.amazon.eventstream")
    );
    let frames = [
        claude_chunk(
            &json!({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        ),
        claude_chunk(
            &json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 3, "outputTokenCount": 2}}),
        ),
    ];
    for (i, f) in frames.iter().enumerate() {
        host.response_body = f.clone();
        flow.on_response_body(&mut host, f.len(), i == 1);
        assert_eq!(&host.response_body, f, "frames pass unchanged");
    }
    assert_eq!(host.properties["unigate.total_tokens"], b"5");
}

#[test]
fn bedrock_runtime_errors_are_aws_errors() {
    let ok_body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
    let gw = gateway_with(
        json!({"aws_region": "us-east-1", "api_keys": [{"key": "nova-only", "models": ["amazon.nova-*"]}]}),
    );
    let cases: Vec<(&str, &[u8], &str, u16, &str)> = vec![
        (
            "/model/amazon.nova-lite-v1:0/converse",
            ok_body,
            "Bearer wrong",
            403,
            "UnrecognizedClientException",
        ),
        (
            "/model/claude-3-haiku/converse",
            ok_body,
            "Bearer nova-only",
            403,
            "AccessDeniedException",
        ),
        (
            "/model/no-such-model/converse",
            ok_body,
            "Bearer nova-only",
            404,
            "ResourceNotFoundException",
        ),
        (
            "/model/gpt-4o/converse",
            ok_body,
            "Bearer test-key",
            404,
            "ResourceNotFoundException",
        ),
        (
            "/model/amazon.nova-lite-v1:0/converse",
            b"{not json",
            "Bearer nova-only",
            400,
            "ValidationException",
        ),
        (
            "/model/../converse",
            ok_body,
            "Bearer test-key",
            400,
            "ValidationException",
        ),
    ];
    for (path, body, auth, status, name) in cases {
        let mut host = bedrock_call(path, body, &[]);
        host.request_headers.retain(|(k, _)| k != "authorization");
        host.request_headers
            .push(("authorization".into(), auth.into()));
        with_credentials(&mut host);
        let g = if auth == "Bearer test-key" {
            gateway()
        } else {
            gw.clone()
        };
        let mut flow = HttpFlow::new(1, Some(g), None);
        send(&mut flow, &mut host);
        let r = host
            .reply
            .clone()
            .unwrap_or_else(|| panic!("{path}: no local reply"));
        assert_eq!(r.status, status, "{path} {auth}");
        assert_eq!(r.header("x-amzn-errortype"), Some(name), "{path} {auth}");
        assert!(r.json()["message"].is_string(), "{path}");
        assert!(host.dispatches.is_empty());
    }
}

#[test]
fn bedrock_runtime_relays_bedrock_errors_but_not_credential_failures() {
    let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
    // Throttling: relayed exactly as Bedrock sent it.
    let mut host = bedrock_call("/model/amazon.nova-lite-v1:0/converse", body, &[]);
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    send(&mut flow, &mut host);
    host.respond(&[
        (":status", "429"),
        (
            "x-amzn-errortype",
            "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
        ),
    ]);
    assert_eq!(flow.on_response_headers(&mut host, false), Action::Continue);
    // The gateway's credentials refused: a 500 the client cannot mistake for its own key.
    let mut host = bedrock_call("/model/amazon.nova-lite-v1:0/converse", body, &[]);
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    send(&mut flow, &mut host);
    host.respond(&[
        (":status", "403"),
        ("x-amzn-errortype", "UnrecognizedClientException"),
    ]);
    assert_eq!(flow.on_response_headers(&mut host, false), Action::Pause);
    host.response_body =
        br#"{"message":"The security token included in the request is invalid."}"#.to_vec();
    let n = host.response_body.len();
    flow.on_response_body(&mut host, n, true);
    assert_eq!(host.response_header(":status"), Some("500"));
    assert_eq!(
        host.response_header("x-amzn-errortype"),
        Some("InternalServerException")
    );
    let v: Value = serde_json::from_slice(&host.response_body).unwrap();
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("gateway's AWS credentials"));
}

#[test]
fn inference_profiles_are_an_empty_list() {
    let mut host = MockHost::request(
        &[
            (":method", "GET"),
            (":path", "/inference-profiles?type=SYSTEM_DEFINED"),
            ("authorization", "Bearer test-key"),
        ],
        b"",
    );
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    flow.on_request_headers(&mut host, true);
    let r = host.reply.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"inferenceProfileSummaries": []}));
}

/// Answers call `token` of a fan-out with a JSON body.
fn callout(
    flow: &mut HttpFlow,
    host: &mut MockHost,
    token: u32,
    status: Option<u16>,
    body: &Value,
    headers: &[(&str, &str)],
) {
    host.callout = (status, serde_json::to_vec(body).unwrap());
    host.callout_headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let n = host.callout.1.len();
    flow.on_callout_response(host, token, if status.is_some() { 3 } else { 0 }, n);
}

fn embeddings_gateway() -> Rc<Gateway> {
    gateway_with(
        json!({"aws_region": "us-east-1", "embedding_concurrency": 2, "max_embedding_inputs": 150}),
    )
}

#[test]
fn titan_embeddings_fan_out_with_a_bound_and_answer_in_input_order() {
    let body = json!({"model": "amazon.titan-embed-text-v2:0", "input": ["a", "bb", "ccc"], "dimensions": 256});
    let mut host = post("/v1/embeddings", &body, &[]);
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(embeddings_gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Pause);
    // Two in flight (the bound), each signed, one text per call.
    assert_eq!(host.dispatches.len(), 2);
    for (i, d) in host.dispatches.iter().enumerate() {
        assert_eq!(d.cluster, "bedrock");
        let h = |n: &str| {
            d.headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            h(":path").as_deref(),
            Some("/model/amazon.titan-embed-text-v2%3A0/invoke")
        );
        assert!(h("authorization").unwrap().starts_with("AWS4-HMAC-SHA256"));
        let sent: Value = serde_json::from_slice(d.body.as_ref().unwrap()).unwrap();
        assert_eq!(sent["inputText"], ["a", "bb"][i]);
        assert_eq!(sent["dimensions"], 256);
    }
    // The second answers first; the third call starts when a slot frees.
    callout(
        &mut flow,
        &mut host,
        2,
        Some(200),
        &json!({"embedding": [2.0], "inputTextTokenCount": 2}),
        &[],
    );
    assert_eq!(host.dispatches.len(), 3);
    callout(
        &mut flow,
        &mut host,
        3,
        Some(200),
        &json!({"embedding": [3.0], "inputTextTokenCount": 3}),
        &[],
    );
    assert!(host.reply.is_none());
    callout(
        &mut flow,
        &mut host,
        1,
        Some(200),
        &json!({"embedding": [1.0], "inputTextTokenCount": 1}),
        &[],
    );
    let r = host.reply.clone().unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    let got: Vec<(u64, f64)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["index"].as_u64().unwrap(),
                d["embedding"][0].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, vec![(0, 1.0), (1, 2.0), (2, 3.0)]);
    assert_eq!(v["usage"]["prompt_tokens"], 6);
    assert_eq!(v["model"], "amazon.titan-embed-text-v2:0");
    flow.on_log(&mut host);
    assert_eq!(
        host.counter(&format!(
            "unigate.tokens_total.provider.bedrock.key.key-{}.type.input.model.amazon.titan-embed-text-v2:0",
            &unigate_core::auth::key_label(KEY)[..8]
        )),
        6
    );
}

#[test]
fn one_failed_or_silent_call_fails_the_embeddings_request() {
    let body = json!({"model": "amazon.titan-embed-text-v2:0", "input": ["a", "b"]});
    for (status, headers, want) in [
        (
            Some(429),
            vec![("x-amzn-errortype", "ThrottlingException")],
            429,
        ),
        // Envoy's own answer to a call past embedding_timeout_ms (no Bedrock headers).
        (Some(504), vec![], 504),
        // A reset connection: no answer at all.
        (None, vec![], 502),
    ] {
        let mut host = post("/v1/embeddings", &body, &[]);
        with_credentials(&mut host);
        let mut flow = HttpFlow::new(1, Some(embeddings_gateway()), None);
        send(&mut flow, &mut host);
        callout(
            &mut flow,
            &mut host,
            1,
            status,
            &json!({"message": "slow down"}),
            &headers,
        );
        let r = host.reply.clone().unwrap();
        assert_eq!(r.status, want);
        assert!(r.json()["error"]["message"].is_string());
        // A late answer of the other call changes nothing.
        callout(
            &mut flow,
            &mut host,
            2,
            Some(200),
            &json!({"embedding": [1.0]}),
            &[],
        );
        assert_eq!(host.reply.unwrap().status, want);
    }
}

#[test]
fn cohere_embeddings_are_batched_by_96() {
    let texts: Vec<String> = (0..100).map(|i| format!("t{i}")).collect();
    let body = json!({"model": "cohere.embed-english-v3", "input": texts, "encoding_format": "base64", "input_type": "search_query"});
    let mut host = post("/v1/embeddings", &body, &[]);
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(embeddings_gateway()), None);
    send(&mut flow, &mut host);
    assert_eq!(host.dispatches.len(), 2);
    let first: Value = serde_json::from_slice(host.dispatches[0].body.as_ref().unwrap()).unwrap();
    assert_eq!(first["texts"].as_array().unwrap().len(), 96);
    assert_eq!(first["input_type"], "search_query");
    let rows = |n: usize, v: f32| json!({"embeddings": {"float": vec![vec![v]; n]}});
    callout(
        &mut flow,
        &mut host,
        2,
        Some(200),
        &rows(4, 2.0),
        &[("x-amzn-bedrock-input-token-count", "4")],
    );
    callout(
        &mut flow,
        &mut host,
        1,
        Some(200),
        &rows(96, 1.0),
        &[("x-amzn-bedrock-input-token-count", "96")],
    );
    let v = host.reply.unwrap().json();
    assert_eq!(v["data"].as_array().unwrap().len(), 100);
    assert_eq!(v["data"][99]["index"], 99);
    // base64 of little-endian float32 2.0
    assert_eq!(v["data"][99]["embedding"], "AAAAQA==");
    assert_eq!(v["usage"]["total_tokens"], 100);
}

#[test]
fn embeddings_limits_and_wrong_endpoints() {
    let cases = [
        (
            json!({"model": "cohere.embed-english-v3", "input": vec!["x"; 151]}),
            400,
            "input",
        ),
        (json!({"model": "gpt-4o", "input": "x"}), 400, "model"),
        (
            json!({"model": "amazon.titan-embed-text-v2:0", "input": [[1, 2]]}),
            400,
            "input[0]",
        ),
        (
            json!({"model": "amazon.titan-embed-text-v2:0", "input": "x", "dimensions": 300}),
            400,
            "dimensions",
        ),
    ];
    for (body, status, param) in cases {
        let mut host = post("/v1/embeddings", &body, &[]);
        let mut flow = HttpFlow::new(1, Some(embeddings_gateway()), None);
        send(&mut flow, &mut host);
        let r = host.reply.unwrap();
        assert_eq!(
            (r.status, r.json()["error"]["param"].as_str()),
            (status, Some(param)),
            "{body}"
        );
        assert!(host.dispatches.is_empty());
    }
    // An embedding model on the chat door.
    let body = json!({"model": "amazon.titan-embed-text-v2:0", "messages": [{"role": "user", "content": "x"}]});
    let mut host = post("/v1/chat/completions", &body, &[]);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    send(&mut flow, &mut host);
    let r = host.reply.unwrap();
    assert_eq!(r.json()["error"]["code"], "wrong_endpoint");
}

#[test]
fn openai_embeddings_are_relayed() {
    let body =
        json!({"model": "text-embedding-3-small", "input": ["a"], "encoding_format": "base64"});
    let mut host = post("/v1/embeddings", &body, &[]);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    assert_eq!(host.request_header(":path"), Some("/v1/embeddings"));
    assert_eq!(host.request_header(":authority"), Some("api.openai.com"));
    assert_eq!(
        host.request_header("authorization"),
        Some("Bearer sk-upstream-secret")
    );
    let sent: Value = serde_json::from_slice(&host.request_body).unwrap();
    assert_eq!(sent, body);
    let answer_body = json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": "AAAAQA=="}], "model": "text-embedding-3-small", "usage": {"prompt_tokens": 1, "total_tokens": 1}});
    host.respond(&[(":status", "200"), ("content-type", "application/json")]);
    assert_eq!(flow.on_response_headers(&mut host, false), Action::Continue);
    host.response_body = serde_json::to_vec(&answer_body).unwrap();
    let n = host.response_body.len();
    flow.on_response_body(&mut host, n, true);
    assert_eq!(host.properties["unigate.prompt_tokens"], b"1");
}

#[test]
fn models_outside_the_catalogue_share_one_metric_label() {
    // Any gpt-* name routes to OpenAI; only known ones get their own series.
    for (model, label) in [("gpt-4o", "gpt-4o"), ("gpt-made-up-1234", "other")] {
        let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        let mut host = post("/v1/chat/completions", &body, &[]);
        let mut flow = HttpFlow::new(1, Some(gateway()), None);
        send(&mut flow, &mut host);
        // OpenAI to OpenAI is relayed: the headers go on, the body is read for its usage.
        host.respond(&[(":status", "200"), ("content-type", "application/json")]);
        assert_eq!(flow.on_response_headers(&mut host, false), Action::Continue);
        host.response_body = serde_json::to_vec(&json!({"choices": [{"message": {"role": "assistant", "content": "x"}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}})).unwrap();
        let n = host.response_body.len();
        flow.on_response_body(&mut host, n, true);
        flow.on_log(&mut host);
        let name = format!(
            "unigate.requests_total.endpoint.chat.provider.openai.status_class.2xx.model.{label}"
        );
        assert_eq!(host.counter(&name), 1, "{model}");
        assert!(host.counters.keys().all(|k| !k.contains("made-up")));
    }
}

/// The events of a Responses stream as (event name, data).
fn responses_events(sse: &str) -> Vec<(String, Value)> {
    sse.split("\n\n")
        .filter(|f| !f.is_empty())
        .map(|f| {
            let (name, data) = f.split_once('\n').unwrap();
            let v: Value = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
            (name.strip_prefix("event: ").unwrap().to_string(), v)
        })
        .collect()
}

#[test]
fn responses_errors_are_in_openais_shape() {
    let body = json!({"model": "claude-sonnet-4", "input": "hi"});
    // No key.
    let mut host = post("/v1/responses", &body, &[]);
    host.request_headers.retain(|(k, _)| k != "authorization");
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    flow.on_request_headers(&mut host, false);
    let r = host.reply.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["error"]["type"], "authentication_error");
    assert!(r.json().get("type").is_none());
    // Wrong method; a stored response cannot be fetched.
    for (method, path, status) in [
        ("GET", "/v1/responses", 405),
        ("GET", "/v1/responses/resp_1", 404),
    ] {
        let mut host = MockHost::request(
            &[
                (":method", method),
                (":path", path),
                ("authorization", "Bearer test-key"),
            ],
            b"",
        );
        let mut flow = HttpFlow::new(1, Some(gateway()), None);
        flow.on_request_headers(&mut host, true);
        let r = host.reply.unwrap();
        assert_eq!(r.status, status, "{path}");
        assert!(r.json()["error"]["message"].is_string());
    }
    // Stateful fields, unknown models.
    for (b, status, param) in [
        (
            json!({"model": "claude-sonnet-4", "input": "x", "previous_response_id": "resp_1"}),
            400,
            "previous_response_id",
        ),
        (
            json!({"model": "no-such-model", "input": "x"}),
            404,
            "model",
        ),
    ] {
        let mut host = post("/v1/responses", &b, &[]);
        let mut flow = HttpFlow::new(1, Some(gateway()), None);
        send(&mut flow, &mut host);
        let r = host.reply.unwrap();
        assert_eq!(
            (r.status, r.json()["error"]["param"].as_str()),
            (status, Some(param))
        );
    }
    // Bedrock's context-window error keeps the code Codex compacts on.
    let mut host = post("/v1/responses", &body, &[]);
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    send(&mut flow, &mut host);
    host.respond(&[
        (":status", "400"),
        ("x-amzn-errortype", "ValidationException"),
    ]);
    flow.on_response_headers(&mut host, false);
    host.response_body =
        br#"{"message":"prompt is too long: 250000 tokens > 200000 maximum"}"#.to_vec();
    let n = host.response_body.len();
    flow.on_response_body(&mut host, n, true);
    assert_eq!(host.response_header(":status"), Some("400"));
    let v: Value = serde_json::from_slice(&host.response_body).unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
}

#[test]
fn a_codex_turn_to_claude_streams_the_responses_grammar() {
    let body = json!({
        "model": "us.anthropic.claude-sonnet-4-20250514-v1:0", "stream": true, "store": false,
        "input": [
            {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "You are Codex."}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Run ls."}]},
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
            {"type": "custom", "name": "apply_patch", "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
            {"type": "web_search"},
        ],
        "tool_choice": "auto", "parallel_tool_calls": true, "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "s1", "reasoning": {"summary": "auto"},
    });
    let mut host = post("/v1/responses", &body, &[("originator", "codex_exec")]);
    host.debug = true;
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    assert_eq!(
        host.request_header(":path"),
        Some("/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream")
    );
    let sent: Value = serde_json::from_slice(&host.request_body).unwrap();
    // Codex names no limit: Claude's own output limit.
    assert_eq!(sent["max_tokens"], 32000);
    assert_eq!(sent["system"], "You are Codex.");
    assert_eq!(sent["tools"].as_array().unwrap().len(), 2);
    // The dropped built-in is in the debug log.
    assert!(host
        .logs
        .iter()
        .any(|(_, m)| m.contains("dropped tool tools[2] of type web_search")));

    host.respond(&[
        (":status", "200"),
        ("content-type", "application/vnd.amazon.eventstream"),
    ]);
    assert_eq!(flow.on_response_headers(&mut host, false), Action::Continue);
    assert_eq!(
        host.response_header("content-type"),
        Some("text/event-stream")
    );
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude", "content": [], "stop_reason": null, "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Listing."}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "apply_patch", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"input\": \"*** Begin"}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": " Patch\"}"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}}),
        json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 9, "outputTokenCount": 7}}),
    ];
    let mut sse = String::new();
    for (i, e) in events.iter().enumerate() {
        let f = claude_chunk(e);
        host.response_body = f.clone();
        flow.on_response_body(&mut host, f.len(), i + 1 == events.len());
        sse.push_str(std::str::from_utf8(&host.response_body).unwrap());
    }
    let ev = responses_events(&sse);
    assert_eq!(ev[0].0, "response.created");
    assert!(ev
        .iter()
        .enumerate()
        .all(|(i, (_, v))| v["sequence_number"] == i as u64));
    let (last, done) = ev.last().unwrap();
    assert_eq!(last, "response.completed");
    let id = done["response"]["id"].as_str().unwrap();
    assert!(id.starts_with("resp_") && ev[0].1["response"]["id"] == id);
    let output = &done["response"]["output"];
    assert_eq!(output[0]["content"][0]["text"], "Listing.");
    assert_eq!(output[1]["type"], "custom_tool_call");
    assert_eq!(output[1]["input"], "*** Begin Patch");
    assert_eq!(done["response"]["usage"]["total_tokens"], 16);
    assert!(!sse.contains("[DONE]"));
    assert_eq!(host.properties["unigate.total_tokens"], b"16");
    flow.on_log(&mut host);
    let model = "us.anthropic.claude-sonnet-4-20250514-v1:0";
    assert_eq!(
        host.counter(&format!(
            "unigate.requests_total.endpoint.responses.provider.bedrock.status_class.2xx.model.{model}"
        )),
        1
    );
    assert_eq!(
        host.counter("unigate.input_format_total.format.responses"),
        1
    );
}

#[test]
fn responses_for_openai_models_are_relayed_to_openais_responses_api() {
    let body = json!({"model": "gpt-4o", "input": "hi", "previous_response_id": "resp_openai_7", "store": true});
    let mut host = post("/v1/responses", &body, &[]);
    let mut flow = HttpFlow::new(1, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    assert_eq!(host.request_header(":path"), Some("/v1/responses"));
    assert_eq!(host.request_header("x-unigate-cluster"), Some("openai"));
    assert_eq!(
        host.request_header("authorization"),
        Some("Bearer sk-upstream-secret")
    );
    let sent: Value = serde_json::from_slice(&host.request_body).unwrap();
    assert_eq!(sent["previous_response_id"], "resp_openai_7");
    let upstream = json!({"id": "resp_openai_8", "object": "response", "status": "completed", "model": "gpt-4o-2024-08-06",
        "output": [{"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "content": [{"type": "output_text", "text": "Hello", "annotations": []}]}],
        "usage": {"input_tokens": 5, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 7}});
    host.respond(&[(":status", "200"), ("content-type", "application/json")]);
    assert_eq!(flow.on_response_headers(&mut host, false), Action::Continue);
    host.response_body = serde_json::to_vec(&upstream).unwrap();
    let n = host.response_body.len();
    assert_eq!(flow.on_response_body(&mut host, n, true), Action::Continue);
    // Passed through as OpenAI sent it, usage still counted.
    assert_eq!(host.response_body, serde_json::to_vec(&upstream).unwrap());
    assert_eq!(host.properties["unigate.total_tokens"], b"7");

    // Without a Responses API upstream, the same request is translated to Chat Completions
    // (and needs the whole conversation).
    let gw = gateway_with(json!({"aws_region": "us-east-1", "openai_responses": false}));
    let mut host = post(
        "/v1/responses",
        &json!({"model": "gpt-4o", "input": "hi"}),
        &[],
    );
    let mut flow = HttpFlow::new(1, Some(gw), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    assert_eq!(host.request_header(":path"), Some("/v1/chat/completions"));
    let chat = json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}});
    answer(&mut flow, &mut host, 200, &chat);
    let v: Value = serde_json::from_slice(&host.response_body).unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["output"][0]["content"][0]["text"], "Hello");
    assert_eq!(v["usage"]["total_tokens"], 7);
}

/// Prose of about `n` bytes with the escapes and characters real text has.
fn long_text(n: usize, tag: &str) -> String {
    let unit = format!("{tag} said \"héllo\"\tto 世界 🌍\\n and left.\n");
    unit.repeat(n / unit.len() + 1)
}

#[test]
fn long_prompts_are_put_into_the_upstream_body_from_envoys_buffer() {
    // Texts of a megabyte or more stay in the client's body and are read from the host while
    // the upstream body is written (issue 17); one of them gains the file context in front.
    let system = long_text(1_500_000, "system");
    let user = long_text(1_200_000, "user");
    let body = json!({"model": "claude-3-haiku", "max_tokens": 50, "file_ids": ["file-abc"],
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}]});
    let mut host = post("/v1/chat/completions", &body, &[]);
    with_credentials(&mut host);
    let mut flow = HttpFlow::new(9, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Pause);
    answer_file_context(&mut flow, &mut host);
    assert_eq!(host.resumes, 1);
    let sent: Value = serde_json::from_slice(&host.request_body).unwrap();
    assert_eq!(sent["system"], system.as_str());
    let text = sent["messages"][0]["content"][0]["text"]
        .as_str()
        .or_else(|| sent["messages"][0]["content"].as_str())
        .unwrap();
    assert!(text.starts_with("--- file: notes.txt") || text.contains("--- file: notes.txt"));
    assert!(
        text.ends_with(user.as_str()),
        "the user text arrived changed"
    );
    assert!(!String::from_utf8_lossy(&host.request_body).contains("\\u0001"));
    use sha2::Digest;
    let hash: String = sha2::Sha256::digest(&host.request_body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        host.request_header("x-amz-content-sha256"),
        Some(hash.as_str())
    );
    assert_eq!(
        host.request_header("content-length"),
        Some(host.request_body.len().to_string().as_str())
    );
}

#[test]
fn an_unchanged_body_sent_chunked_goes_up_with_its_own_length() {
    // The plan does not copy a body that goes up unchanged: its length still comes from it.
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    let bytes = serde_json::to_vec(&body).unwrap();
    let mut host = MockHost::request(
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "gateway"),
            ("authorization", "Bearer test-key"),
            ("content-type", "application/json"),
        ],
        &bytes,
    );
    let mut flow = HttpFlow::new(3, Some(gateway()), None);
    assert_eq!(send(&mut flow, &mut host), Action::Continue);
    assert_eq!(host.request_body, bytes);
    assert_eq!(
        host.request_header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
}
