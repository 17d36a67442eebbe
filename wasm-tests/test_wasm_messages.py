"""The Anthropic Messages front door in the built filter inside real Envoy, with a plain HTTP
client, against the fakes: both sides of every exchange.

- routes: `/v1/messages`, `?beta=true`, `/v1/messages/count_tokens` reach the right cluster,
  operation and path (percent-encoded id), signed; x-api-key and Bearer;
- the Claude relay: the client's body with the contract's strip/filter rules
  (messages_checks.assert_relayed_body), client Anthropic/AWS headers never forwarded;
- streams written 1/5/64 bytes at a time give the same SSE as unsplit, and for Claude the
  upstream's events one-to-one (minus invocation metrics);
- errors in Anthropic's shape `{"type":"error","error":{...}}`: the filter's own (401, 400,
  413, 404, 405), upstream ones, a Bedrock exception mid-stream (`event: error`), and the
  replies Envoy generates itself (upstream reset, idle timeout, refused connection).
"""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest
import yaml

from fakes import DEFAULT_TOKEN
from fakes.text import count_tokens
from messages_checks import (
    CLAUDE_CODE_BETA_HEADER,
    assert_error_envelope,
    assert_message_stream,
    assert_relayed_body,
    bedrock_chunk_events,
    claude_stream_events,
    count_tokens_inner,
    parse_sse,
    stream_error_event,
)
from wasm_checks import assert_bedrock_upstream, assert_openai_upstream
from wasm_harness import (
    CLIENT_KEYS,
    LOCAL_REPLY_CONFIG,
    Client,
    closed_port,
    default_clusters,
    default_env,
    default_plugin_config,
)

REPO = Path(__file__).resolve().parents[1]
KEY = CLIENT_KEYS[0]
HAIKU_ID = "anthropic.claude-3-haiku-20240307-v1:0"
HAIKU = "/model/anthropic.claude-3-haiku-20240307-v1%3A0"
SONNET4_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"
SONNET4 = "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0"
NOVA_ID = "amazon.nova-pro-v1:0"
NOVA = "/model/amazon.nova-pro-v1%3A0"


def user(content):
    return {"role": "user", "content": content}


def mbody(model, text="hi", **kw):
    return {"model": model, "max_tokens": 40, "messages": [user(text)], **kw}


def post(client, body, path="/v1/messages", headers=None, auth="x-api-key", key=KEY, timeout=20, conn=None):
    """POST to the Messages door; `auth`: "x-api-key", "bearer" or None."""
    h = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
    if auth == "x-api-key":
        h["x-api-key"] = key
    h.update(headers or {})
    return client.request("POST", path, body, headers=h, key=key if auth == "bearer" else None, timeout=timeout, conn=conn)


def assert_no_client_headers(rec) -> None:
    for name, _ in rec.header_list:
        assert not name.startswith("anthropic-") and name != "x-api-key", f"client header {name} reached {rec.server}"


# ---------------------------------------------------------------- routes


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages?beta=true"])
@pytest.mark.parametrize("auth", ["x-api-key", "bearer"])
def test_messages_route_to_claude_invoke(client, fakes, path, auth):
    body = mbody("claude-3-haiku", "route me")
    resp = post(client, body, path=path, auth=auth)
    assert resp.status == 200, resp
    assert resp.content_type.startswith("application/json")
    assert fakes.openai.requests == [] and len(fakes.bedrock.requests) == 1
    rec = fakes.bedrock.last()
    sent = assert_bedrock_upstream(rec, f"{HAIKU}/invoke")
    assert_no_client_headers(rec)
    assert_relayed_body(sent, body, HAIKU_ID)
    assert resp.json() == json.loads(rec.response_body), "a Claude answer is relayed unchanged"


@pytest.mark.parametrize(
    "model,server,path,op",
    [
        pytest.param(SONNET4_ID, "bedrock", SONNET4, "invoke-with-response-stream", id="claude4-profile-stream"),
        pytest.param(NOVA_ID, "bedrock", NOVA, "converse", id="converse"),
        pytest.param(NOVA_ID, "bedrock", NOVA, "converse-stream", id="converse-stream"),
        pytest.param("gpt-4o", "openai", "/v1/chat/completions", None, id="openai"),
    ],
)
def test_messages_route_to_other_operations(client, fakes, model, server, path, op):
    stream = op is not None and op.endswith("stream")
    resp = post(client, mbody(model, "route me", stream=stream) if stream else mbody(model, "route me"), path="/v1/messages?beta=true")
    assert resp.status == 200, resp
    fake = getattr(fakes, server)
    assert len(fake.requests) == 1 and len(fakes.upstream_requests()) == 1
    rec = fake.last()
    if server == "openai":
        sent = assert_openai_upstream(rec)
        assert sent["model"] == "gpt-4o"
    else:
        sent = assert_bedrock_upstream(rec, f"{path}/{op}")
        assert "model" not in sent and "stream" not in sent
    assert_no_client_headers(rec)
    if stream:
        assert resp.content_type.startswith("text/event-stream")
        msg = assert_message_stream(parse_sse(resp.body))
        assert msg["content"] == [{"type": "text", "text": "echo: route me"}]
    else:
        out = resp.json()
        assert out["type"] == "message" and out["content"] == [{"type": "text", "text": "echo: route me"}], out


@pytest.mark.parametrize("path", ["/v1/messages/count_tokens", "/v1/messages/count_tokens?beta=true"])
def test_count_tokens_route(client, fakes, path):
    body = {"model": SONNET4_ID, "system": "Sys.", "messages": [user("count me please")]}
    resp = post(client, body, path=path, headers={"anthropic-beta": CLAUDE_CODE_BETA_HEADER})
    assert resp.status == 200, resp
    rec = fakes.bedrock.last()
    assert_bedrock_upstream(rec, "/model/anthropic.claude-sonnet-4-20250514-v1%3A0/count-tokens")
    assert rec.response_status == 200, rec.response_body
    assert resp.json() == {"input_tokens": count_tokens("Sys. count me please")}
    inner = count_tokens_inner(rec)
    assert isinstance(inner.get("max_tokens"), int) and inner["max_tokens"] >= 1
    assert_relayed_body({k: v for k, v in inner.items() if k != "max_tokens"}, body, SONNET4_ID, [CLAUDE_CODE_BETA_HEADER])


def test_count_tokens_for_a_converse_model_is_not_found(client, fakes):
    resp = post(client, {"model": NOVA_ID, "messages": [user("x")]}, path="/v1/messages/count_tokens")
    assert_error_envelope(resp.status, resp.headers, resp.body, 404, "not_found_error")
    assert fakes.upstream_requests() == []


# ---------------------------------------------------------------- the Claude relay: strip and filter


def test_claude_code_body_relayed_with_strip_and_filter_rules(client, fakes):
    body = {
        "model": SONNET4_ID, "max_tokens": 4096, "stream": False,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral", "scope": "global"}}],
        "messages": [user([{"type": "text", "text": "relay me", "cache_control": {"type": "ephemeral"}}])],
        "tools": [{"name": "Read", "description": "r", "input_schema": {"type": "object", "properties": {"p": {"type": "string"}}}},
                  {"name": "DeferredToolPlaceholder", "description": "d", "input_schema": {"type": "object"}, "defer_loading": True}],
        "metadata": {"user_id": "{\"device_id\":\"d\"}"},
        "thinking": {"budget_tokens": 2048, "type": "enabled", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "service_tier": "auto", "speed": "fast",
    }
    resp = post(client, body, path="/v1/messages?beta=true", headers={"anthropic-beta": CLAUDE_CODE_BETA_HEADER,
                                                                      "anthropic-dangerous-direct-browser-access": "true"})
    assert resp.status == 200, resp
    rec = fakes.bedrock.last()
    assert rec.response_status == 200, rec.response_body
    sent = assert_bedrock_upstream(rec, f"{SONNET4}/invoke")
    assert_no_client_headers(rec)
    assert_relayed_body(sent, body, SONNET4_ID, [CLAUDE_CODE_BETA_HEADER])
    assert sorted(sent["anthropic_beta"]) == ["interleaved-thinking-2025-05-14", "tool-search-tool-2025-10-19"]
    assert "context_management" not in sent and "display" not in sent["thinking"]


def test_repeated_beta_headers_are_merged(client, fakes):
    raw = json.dumps(mbody(SONNET4_ID, "merge")).encode()
    conn = client.connection()
    try:
        conn.putrequest("POST", "/v1/messages")
        for k, v in [("content-type", "application/json"), ("x-api-key", KEY), ("anthropic-version", "2023-06-01"),
                     ("anthropic-beta", "context-1m-2025-08-07,claude-code-20250219"),
                     ("anthropic-beta", " interleaved-thinking-2025-05-14 ,,"), ("content-length", str(len(raw)))]:
            conn.putheader(k, v)
        conn.endheaders(raw)
        r = conn.getresponse()
        out = r.read()
    finally:
        conn.close()
    assert r.status == 200, out
    sent = assert_bedrock_upstream(fakes.bedrock.last(), f"{SONNET4}/invoke")
    assert sorted(sent["anthropic_beta"]) == ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14"]


def test_client_aws_and_auth_headers_never_reach_bedrock(client, fakes):
    spoof = {"x-amz-security-token": "client-token", "x-amz-date": "20200101T000000Z",
             "x-amz-content-sha256": "0" * 64, "authorization": f"Bearer {KEY}"}
    resp = post(client, mbody("claude-3-haiku"), headers=spoof)
    assert resp.status == 200, resp
    rec = fakes.bedrock.last()
    assert_bedrock_upstream(rec, f"{HAIKU}/invoke")
    assert rec.headers["x-amz-security-token"] == DEFAULT_TOKEN
    assert rec.headers["x-amz-date"] != "20200101T000000Z" and rec.headers.get("x-amz-content-sha256") != "0" * 64
    assert rec.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert_no_client_headers(rec)


# ---------------------------------------------------------------- streams in pieces


def _normalized(events):
    """Events with the per-request message id blanked (the fake and the gateway number them)."""
    out = []
    for name, d in events:
        d = json.loads(json.dumps(d))
        if name == "message_start":
            d["message"]["id"] = "<id>"
        out.append((name, d))
    return out


@pytest.mark.parametrize("piece", [1, 5, 64])
@pytest.mark.parametrize("model", ["claude-3-haiku", NOVA_ID, "gpt-4o"])
def test_stream_written_in_pieces_gives_identical_sse(client, fakes, model, piece):
    text = "ünï ✓ çödé split stream"
    body = mbody(model, text, stream=True)
    whole = post(client, body)
    split = post(client, body, headers={"x-fake-chunk-bytes": str(piece), "x-fake-chunk-delay-ms": "0"}, timeout=30)
    assert whole.status == 200 and split.status == 200, split
    assert split.content_type.startswith("text/event-stream")
    ev_whole, ev_split = parse_sse(whole.body), parse_sse(split.body)
    assert _normalized(ev_split) == _normalized(ev_whole)
    msg = assert_message_stream(ev_split, allow_ping=not model.startswith("claude"))
    assert msg["content"] == [{"type": "text", "text": "echo: " + text}]
    if model.startswith("claude"):
        upstream = bedrock_chunk_events(fakes.bedrock.last())
        want = [{k: v for k, v in e.items() if k != "amazon-bedrock-invocationMetrics"} for e in upstream]
        assert [d for _, d in ev_split] == want, "a Claude stream is relayed event for event"


@pytest.mark.parametrize("piece", [1, 5, 64])
def test_claude_stream_with_thinking_tools_and_pings_in_pieces(client, fakes, piece):
    """A richer Claude stream (ping, thinking + signature, text, tool_use), written `piece`
    bytes at a time: relayed event for event, pings dropped, metrics removed."""
    evs = claude_stream_events([{"type": "thinking", "thinking": "Plan: read ✓ the file.", "signature": "EqoBCkYIsig=="},
                                {"type": "text", "text": "Reading ünïcode."},
                                {"type": "tool_use", "id": "toolu_01Ab", "name": "Read", "input": {"file_path": "/src/ä.rs"}}],
                               stop_reason="tool_use", pings=True)
    headers = {"x-fake-stream-events": json.dumps([{"chunk": e} for e in evs]),
               "x-fake-chunk-bytes": str(piece), "x-fake-chunk-delay-ms": "0"}
    resp = post(client, mbody(SONNET4_ID, stream=True), headers=headers, timeout=30)
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream"), resp
    events = parse_sse(resp.body)
    assert [d for _, d in events] == [{k: v for k, v in e.items() if k != "amazon-bedrock-invocationMetrics"}
                                      for e in evs if e["type"] != "ping"]
    msg = assert_message_stream(events, allow_ping=False)
    assert [b["type"] for b in msg["content"]] == ["thinking", "text", "tool_use"]
    assert msg["content"][0]["signature"] == "EqoBCkYIsig==" and msg["content"][2]["input"] == {"file_path": "/src/ä.rs"}


# ---------------------------------------------------------------- the filter's own errors


def test_no_key_is_401(client, fakes):
    resp = post(client, mbody("claude-3-haiku"), auth=None)
    assert_error_envelope(resp.status, resp.headers, resp.body, 401, "authentication_error")
    assert fakes.upstream_requests() == []


def test_wrong_key_is_401_without_the_key(client, fakes):
    resp = post(client, mbody("claude-3-haiku"), key="not-a-client-key")
    assert_error_envelope(resp.status, resp.headers, resp.body, 401, "authentication_error")
    assert b"not-a-client-key" not in resp.body
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize(
    "raw,field",
    [
        pytest.param(b'{"model": "claude-3-haiku", "max_tokens": 5, "messages": [', None, id="bad-json"),
        pytest.param(b"[1, 2]", None, id="json-array"),
        pytest.param(json.dumps({"model": "claude-3-haiku", "messages": [user("x")]}).encode(), "max_tokens", id="missing-max_tokens"),
        pytest.param(json.dumps({"max_tokens": 5, "messages": [user("x")]}).encode(), "model", id="missing-model"),
        pytest.param(json.dumps({"model": "claude-3-haiku", "max_tokens": 5, "messages": []}).encode(), "messages", id="empty-messages"),
        pytest.param(json.dumps({"model": "claude-3-haiku", "max_tokens": 5, "messages": [user("x")], "temperature": "hot"}).encode(),
                     "temperature", id="temperature-string"),
    ],
)
def test_bad_body_is_400(client, fakes, raw, field):
    resp = post(client, raw)
    err = assert_error_envelope(resp.status, resp.headers, resp.body, 400, "invalid_request_error")
    if field:
        assert field in err["message"] or field in str(err.get("param")), err
    assert fakes.upstream_requests() == []


def test_url_image_for_claude_is_400_naming_the_source(client, fakes):
    body = mbody("claude-3-haiku", [{"type": "text", "text": "what?"},
                                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}])
    resp = post(client, body)
    err = assert_error_envelope(resp.status, resp.headers, resp.body, 400, "invalid_request_error")
    assert err.get("param") == "messages[0].content[1].source" or "messages[0].content[1].source" in err["message"], err
    assert fakes.upstream_requests() == []


def test_unknown_model_is_404(client, fakes):
    resp = post(client, mbody("no-such-model-9000"))
    err = assert_error_envelope(resp.status, resp.headers, resp.body, 404, "not_found_error")
    assert "no-such-model-9000" in err["message"]
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize("method,path", [("GET", "/v1/messages"), ("PUT", "/v1/messages"), ("GET", "/v1/messages/count_tokens")])
def test_wrong_method_is_405(client, fakes, method, path):
    resp = client.request(method, path, None if method == "GET" else mbody("claude-3-haiku"), key=None,
                          headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert_error_envelope(resp.status, resp.headers, resp.body, 405, "invalid_request_error")
    assert fakes.upstream_requests() == []


CAP = 4096


@pytest.fixture(scope="module")
def capped_gateway(start_envoy, fakes):
    return start_envoy("messages-capped", default_plugin_config(fakes, max_request_bytes=CAP), default_env(), default_clusters(fakes))


def _body_of_size(n: int) -> bytes:
    base = json.dumps(mbody("claude-3-haiku", "")).encode()
    raw = json.dumps(mbody("claude-3-haiku", "a" * (n - len(base)))).encode()
    assert len(raw) == n
    return raw


@pytest.mark.parametrize("size,status", [(CAP, 200), (CAP + 1, 413), (50_000, 413)])
def test_body_cap_by_content_length_is_413(capped_gateway, fakes, size, status):
    resp = post(Client(capped_gateway.url), _body_of_size(size))
    if status == 200:
        assert resp.status == 200, resp
        assert len(fakes.bedrock.requests) == 1 and fakes.bedrock.last().response_status == 200
    else:
        assert_error_envelope(resp.status, resp.headers, resp.body, 413, "request_too_large")
        assert fakes.upstream_requests() == []


def test_local_400_keeps_the_keepalive_connection(client, fakes):
    conn = client.connection()
    try:
        bad = post(client, b'{"model": ', conn=conn)
        assert_error_envelope(bad.status, bad.headers, bad.body, 400, "invalid_request_error")
        sock = conn.sock
        ok = post(client, mbody("claude-3-haiku"), conn=conn)
        assert ok.status == 200, ok
        assert conn.sock is sock, "the client had to reconnect"
    finally:
        conn.close()


# ---------------------------------------------------------------- upstream errors


@pytest.mark.parametrize(
    "model,up_status,error_type,status,type_",
    [
        pytest.param("claude-3-haiku", 429, "ThrottlingException", 429, "rate_limit_error", id="claude-throttling"),
        pytest.param("claude-3-haiku", 503, "ServiceUnavailableException", 529, "overloaded_error", id="claude-unavailable"),
        pytest.param("claude-3-haiku", 408, "ModelTimeoutException", 504, "timeout_error", id="claude-model-timeout"),
        pytest.param("claude-3-haiku", 500, "InternalServerException", 500, "api_error", id="claude-internal"),
        pytest.param(NOVA_ID, 429, "ModelNotReadyException", 529, "overloaded_error", id="converse-not-ready"),
        pytest.param(NOVA_ID, 400, "ValidationException", 400, "invalid_request_error", id="converse-validation"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_http_errors_in_anthropic_shape(client, fakes, model, up_status, error_type, status, type_, stream):
    resp = post(client, mbody(model, stream=stream) if stream else mbody(model),
                headers={"x-fake-status": str(up_status), "x-fake-error-type": error_type})
    assert fakes.bedrock.last().response_status == up_status
    assert_error_envelope(resp.status, resp.headers, resp.body, status, type_)
    if status == 429:
        assert "retry-after" in resp.headers, resp.headers


def _claude_partial():
    return [{"chunk": {"type": "message_start", "message": {"id": "msg_bdrk_x", "type": "message", "role": "assistant",
                                                             "model": "claude-3-haiku-20240307", "content": [], "stop_reason": None,
                                                             "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}},
            {"chunk": {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}},
            {"chunk": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "part"}}}]


def _converse_partial():
    return [{"event": "messageStart", "payload": {"role": "assistant"}},
            {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": "part"}}}]


@pytest.mark.parametrize(
    "model,events,type_",
    [
        pytest.param("claude-3-haiku", _claude_partial() + [{"exception": "throttlingException", "payload": {"message": "Too many requests, please wait before trying again."}}],
                     "rate_limit_error", id="claude-throttling-frame"),
        pytest.param("claude-3-haiku", _claude_partial() + [{"exception": "modelStreamErrorException", "payload": {"message": "Model stream broke."}}],
                     "api_error", id="claude-model-stream-error"),
        pytest.param(NOVA_ID, _converse_partial() + [{"exception": "internalServerException", "payload": {"message": "Internal failure."}}],
                     "api_error", id="converse-internal-frame"),
        pytest.param(NOVA_ID, _converse_partial() + [{"error_code": "InternalFailure", "error_message": "Unmodeled failure."}],
                     None, id="converse-unmodeled-error-frame"),
        pytest.param("claude-3-haiku", _claude_partial(), None, id="claude-ends-without-stop"),
        pytest.param(NOVA_ID, _converse_partial(), None, id="converse-ends-without-stop"),
    ],
)
def test_mid_stream_failure_is_an_error_event(client, fakes, model, events, type_):
    resp = post(client, mbody(model, stream=True), headers={"x-fake-stream-events": json.dumps(events)})
    assert fakes.bedrock.last().response_status == 200
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream"), resp
    events_out = parse_sse(resp.body)
    err = stream_error_event(events_out)
    if type_:
        assert err["type"] == type_, err
    text = "".join(d["delta"].get("text", "") for n, d in events_out if n == "content_block_delta")
    assert text == "part", "what arrived before the failure is delivered"


# ---------------------------------------------------------------- replies Envoy generates itself


def test_harness_local_reply_config_is_the_rendered_one():
    """The Envoy-generated replies below only prove something if this harness renders what
    `unigate serve` renders (envoy/envoy.yaml is its output, kept identical by the docs tests)."""
    cfg = next(yaml.safe_load_all((REPO / "envoy" / "envoy.yaml").read_text()))
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm.get("local_reply_config") == LOCAL_REPLY_CONFIG, (
        "wasm-tests/wasm_harness.py LOCAL_REPLY_CONFIG differs from envoy/envoy.yaml's: update the harness")


def test_upstream_reset_before_the_answer_is_anthropic_502(client, fakes):
    """A translated (buffered) answer cut by an upstream reset: Envoy's own 502 reply, in
    Anthropic's shape on this door."""
    resp = post(client, mbody(NOVA_ID, "x" * 2000), headers={"x-fake-reset": "true"}, timeout=10)
    assert fakes.bedrock.last().response_status == 200
    assert_error_envelope(resp.status, resp.headers, resp.body, 502, "api_error")


def test_claude_relay_reset_is_never_an_openai_error(client, fakes):
    """A relayed Claude answer cut by a reset: a cut body or an Anthropic-shaped error, never
    an OpenAI error object."""
    try:
        resp = post(client, mbody("claude-3-haiku", "x" * 2000), headers={"x-fake-reset": "true"}, timeout=10)
    except (ConnectionError, http.client.HTTPException):
        return
    if resp.status != 200:
        assert_error_envelope(resp.status, resp.headers, resp.body, resp.status)


def test_upstream_silence_past_the_idle_timeout_is_anthropic_504(client, fakes):
    resp = post(client, mbody("claude-3-haiku"), headers={"x-fake-delay-ms": "4500"}, timeout=15)
    assert len(fakes.bedrock.requests) == 1
    assert_error_envelope(resp.status, resp.headers, resp.body, 504, "timeout_error")


@pytest.fixture(scope="module")
def refused_gateway(start_envoy, fakes):
    return start_envoy("messages-refused", default_plugin_config(fakes), default_env(),
                       default_clusters(fakes, openai=closed_port(), bedrock=closed_port()))


@pytest.mark.parametrize("model", ["claude-3-haiku", "gpt-4o"])
def test_connection_refused_is_anthropic_502(refused_gateway, fakes, model):
    resp = post(Client(refused_gateway.url), mbody(model), timeout=10)
    assert_error_envelope(resp.status, resp.headers, resp.body, 502, "api_error")
    assert fakes.upstream_requests() == []
