"""Requests the gateway must refuse itself (case 11): each row is the request and the exact
error the client gets; none of them may reach an upstream."""

from __future__ import annotations

import json

import pytest

from wasm_checks import assert_error
from wasm_harness import Client, default_clusters, default_env, default_plugin_config, paced, split_bytes

MSG = [{"role": "user", "content": "hi"}]
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def row(id, body, status, type_="invalid_request_error", code=..., param=..., path="/v1/chat/completions", headers=None, contains=None):
    return pytest.param(body, path, headers or {}, status, type_, code, param, contains, id=id)


BAD_CHAT = [
    row("invalid-json", b'{"model": "gpt-4o", "messages": [', 400, code="invalid_json", param=None),
    row("json-array-not-object", b"[1, 2, 3]", 400, code="invalid_json", contains="an array"),
    row("json-string-not-object", b'"hello"', 400, code="invalid_json", contains="a string"),
    row("whitespace-body", b"   \n", 400),
    row("missing-model", {"messages": MSG}, 400, param="model"),
    row("model-not-a-string", {"model": 4, "messages": MSG}, 400, param="model"),
    row("empty-model", {"model": "", "messages": MSG}, 400, param="model"),
    row("missing-messages-claude-format", {"model": "claude-3-haiku", "anthropic_version": "bedrock-2023-05-31", "max_tokens": 5}, 400, param="messages"),
    row("empty-messages", {"model": "gpt-4o", "messages": []}, 400, param="messages"),
    row("only-system-messages", {"model": "claude-3-haiku", "messages": [{"role": "system", "content": "s"}]}, 400, param="messages"),
    row("messages-is-a-string", {"model": "gpt-4o", "messages": "hi"}, 400, param="messages"),
    row("message-not-an-object", {"model": "gpt-4o", "messages": ["hi"]}, 400, param="messages[0]"),
    row("bad-role", {"model": "gpt-4o", "messages": [{"role": "wizard", "content": "x"}]}, 400, param="messages[0].role"),
    row("temperature-is-a-string", {"model": "gpt-4o", "messages": MSG, "temperature": "hot"}, 400, param="temperature"),
    row("temperature-out-of-range", {"model": "gpt-4o", "messages": MSG, "temperature": 2.5}, 400, param="temperature"),
    row("temperature-above-1-for-claude", {"model": "claude-3-haiku", "messages": MSG, "temperature": 1.5}, 400, param="temperature"),
    row("max-tokens-negative", {"model": "gpt-4o", "messages": MSG, "max_tokens": -5}, 400, param="max_tokens"),
    row("max-tokens-zero", {"model": "claude-3-haiku", "messages": MSG, "max_tokens": 0}, 400, param="max_tokens"),
    row("max-tokens-float", {"model": "gpt-4o", "messages": MSG, "max_tokens": 1.5}, 400, param="max_tokens"),
    row("stream-not-bool", {"model": "gpt-4o", "messages": MSG, "stream": "yes"}, 400, param="stream"),
    row("stop-wrong-type", {"model": "gpt-4o", "messages": MSG, "stop": 5}, 400, param="stop"),
    row("unknown-model", {"model": "llama-local", "messages": MSG}, 404, code="model_not_found", param="model"),
    row("missing-messages-openai", {"model": "gpt-4o", "prompt": "hi"}, 400, param="messages", contains="messages"),
    row("unknown-format", {"prompt": "hi", "max_tokens": 5}, 400, code="unknown_format"),
    row("ambiguous-format", {"model": "gpt-4o", "messages": MSG, "inputText": "hi"}, 400, code="ambiguous_format"),
    row("ambiguous-claude-titan", {"model": "amazon.titan-text-express-v1", "anthropic_version": "bedrock-2023-05-31", "inputText": "x"}, 400, code="ambiguous_format"),
    row("titan-empty-inputText", {"model": "amazon.titan-text-express-v1", "inputText": ""}, 400, param="inputText"),
    row("n-2-for-bedrock", {"model": "claude-3-haiku", "messages": MSG, "n": 2}, 400, param="n"),
    row("logprobs-for-bedrock", {"model": "amazon.nova-pro-v1:0", "messages": MSG, "logprobs": True}, 400, param="logprobs"),
    row(
        "remote-image-url-for-bedrock",
        {"model": "claude-3-haiku", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]},
        400, code="unsupported_image_url", param="messages[0].content[1].image_url.url",
    ),
    row(
        "remote-image-url-after-system-message",
        {"model": "amazon.nova-pro-v1:0", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]},
        400, code="unsupported_image_url", param="messages[1].content[0].image_url.url",
    ),
    row(
        "image-for-titan",
        {"model": "amazon.titan-text-express-v1", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": PNG}}]}]},
        400,
    ),
    row("tools-for-titan", {"model": "amazon.titan-text-express-v1", "messages": MSG,
                            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, 400, param="tools"),
    row("unknown-provider", {"model": "gpt-4o", "messages": MSG, "provider": "azure"}, 400, param="provider"),
    row("unknown-target-format-query", {"model": "gpt-4o", "messages": MSG}, 400, param="target_format",
        path="/v1/chat/completions?target_format=xml"),
    row("unknown-target-format-header", {"model": "gpt-4o", "messages": MSG}, 400, param="target_format",
        headers={"x-target-format": "yaml"}),
]


@pytest.mark.parametrize("body,path,headers,status,type_,code,param,contains", BAD_CHAT)
def test_bad_chat_request(client, fakes, body, path, headers, status, type_, code, param, contains):
    resp = client.request("POST", path, body, headers=headers)
    assert_error(resp, status, type_, code=code, param=param, message_contains=contains)
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize(
    "key,extra,message",
    [
        pytest.param("wrong-key", {}, "Incorrect API key", id="wrong-bearer-key"),
        pytest.param(None, {}, "Missing API key", id="no-key"),
        pytest.param(None, {"x-api-key": "nope"}, "Incorrect API key", id="wrong-x-api-key"),
        pytest.param(None, {"authorization": "Basic dGVzdC1rZXktMTo="}, None, id="basic-auth-scheme"),
        pytest.param("sk-upstream-test", {}, "Incorrect API key", id="upstream-key-is-not-a-client-key"),
    ],
)
def test_client_auth_failures(client, fakes, key, extra, message):
    resp = client.chat({"model": "gpt-4o", "messages": MSG}, key=key, headers=extra)
    assert_error(resp, 401, "authentication_error", code="invalid_api_key", message_contains=message)
    assert fakes.upstream_requests() == [] and fakes.sidecar.requests == []


def test_empty_body(client, fakes):
    resp = client.request("POST", "/v1/chat/completions", b"", headers={"content-type": "application/json"})
    assert_error(resp, 400, "invalid_request_error")
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize(
    "method,path,status,code",
    [
        pytest.param("GET", "/v1/chat/completions", 405, "method_not_allowed", id="GET-chat"),
        pytest.param("PUT", "/v1/chat/completions", 405, "method_not_allowed", id="PUT-chat"),
        pytest.param("POST", "/v1/models", 405, "method_not_allowed", id="POST-models"),
        pytest.param("GET", "/v2/chat/completions", 404, "not_found", id="unknown-path"),
        pytest.param("POST", "/v1/completions", 404, "not_found", id="legacy-completions"),
    ],
)
def test_wrong_method_or_path(client, fakes, method, path, status, code):
    body = {"model": "gpt-4o", "messages": MSG} if method in ("POST", "PUT") else None
    resp = client.request(method, path, body)
    assert_error(resp, status, "invalid_request_error", code=code)
    assert fakes.upstream_requests() == []


# ---------------------------------------------------------------- body size cap (413)

CAP = 4096


@pytest.fixture(scope="module")
def capped_gateway(start_envoy, fakes):
    return start_envoy("capped", default_plugin_config(fakes, max_request_bytes=CAP), default_env(), default_clusters(fakes))


def body_of_size(n: int, model: str = "gpt-4o") -> bytes:
    base = json.dumps({"model": model, "messages": [{"role": "user", "content": ""}]}).encode()
    pad = n - len(base)
    assert pad >= 0
    raw = json.dumps({"model": model, "messages": [{"role": "user", "content": "a" * pad}]}).encode()
    assert len(raw) == n
    return raw


@pytest.mark.parametrize(
    "size,chunked,status",
    [
        pytest.param(CAP - 96, False, 200, id="under-cap"),
        pytest.param(CAP, False, 200, id="exactly-cap"),
        pytest.param(CAP + 1, False, 413, id="one-over-cap-content-length"),
        pytest.param(5000, False, 413, id="over-cap-content-length"),
        pytest.param(5000, True, 413, id="over-cap-chunked-no-content-length"),
        pytest.param(200_000, True, 413, id="far-over-cap-chunked"),
        pytest.param(CAP, True, 200, id="exactly-cap-chunked"),
    ],
)
def test_body_size_cap(capped_gateway, fakes, size, chunked, status):
    raw = body_of_size(size)
    c = Client(capped_gateway.url)
    if chunked:
        resp = c.chat(paced(split_bytes(raw, 5), 0.01), timeout=10)
    else:
        resp = c.chat(raw, headers={"content-type": "application/json"}, timeout=10)
    if status == 200:
        assert resp.status == 200, resp
        rec = fakes.openai.last()
        assert rec.content_length == len(rec.body) and json.loads(rec.body) == json.loads(raw)
    else:
        assert_error(resp, 413, "invalid_request_error", code="request_too_large", message_contains=str(CAP))
        assert fakes.upstream_requests() == []


# ---------------------------------------------------------------- hostile bodies: depth, UTF-8


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"[" * 10_000 + b"]" * 10_000, id="array-10000-deep"),
        pytest.param(b'{"model":"gpt-4o","messages":' + b"[" * 10_000 + b"]" * 10_000 + b"}", id="messages-10000-deep"),
        pytest.param(b'{"model":"claude-3-haiku","messages":[{"role":"user","content":' + b'{"a":' * 5000 + b"1" + b"}" * 5000 + b"}]}",
                     id="object-5000-deep"),
    ],
)
def test_deeply_nested_json_is_a_400_not_a_trap(client, gateway, fakes, raw):
    """serde_json stops at 128 levels, so a 10,000-deep body cannot exhaust the Wasm stack."""
    resp = client.request("POST", "/v1/chat/completions", raw)
    assert_error(resp, 400, "invalid_request_error")
    assert fakes.upstream_requests() == []
    # The VM is still alive: the next request on a new connection works.
    assert client.request("GET", "/v1/models").status == 200
    assert "panicked" not in gateway.log_tail(200)


def test_invalid_utf8_is_a_400(client, fakes):
    raw = b'{"model":"gpt-4o","messages":[{"role":"user","content":"caf\xe9 \xff\xfe"}]}'
    resp = client.request("POST", "/v1/chat/completions", raw)
    assert_error(resp, 400, "invalid_request_error", code="invalid_json")
    assert fakes.upstream_requests() == []
