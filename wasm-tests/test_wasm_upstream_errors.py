"""Upstream failures mapped to OpenAI error objects (case 10): Bedrock modeled errors, auth
failures, garbage bodies, silence past the route idle timeout, refused connections, resets;
and keep-alive connections surviving errors."""

from __future__ import annotations

import http.client
import time

import pytest

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from wasm_checks import assert_error
from wasm_harness import UPSTREAM_OPENAI_KEY, Client, closed_port, default_clusters, default_env, default_plugin_config

HAIKU_PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
NOVA_PATH = "/model/amazon.nova-pro-v1%3A0/converse"


def chat(model, text="hi"):
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16}


def steer(status=None, error_type=None, body=None, content_type=None, **extra):
    h = {}
    if status is not None:
        h["x-fake-status"] = str(status)
    if error_type:
        h["x-fake-error-type"] = error_type
    if body is not None:
        h["x-fake-body"] = body
    if content_type:
        h["x-fake-content-type"] = content_type
    h.update({f"x-fake-{k.replace('_', '-')}": str(v) for k, v in extra.items()})
    return h


BEDROCK_ERRORS = [
    # (model, upstream status, x-amzn-ErrorType, body, client status, type, code, message part, retry-after)
    pytest.param("claude-3-haiku", 429, "ThrottlingException", '{"message":"Too many requests, please wait before trying again."}',
                 429, "rate_limit_error", "rate_limit_exceeded", "Too many requests", True, id="claude-throttling"),
    pytest.param("amazon.nova-pro-v1:0", 429, "ThrottlingException", None,
                 429, "rate_limit_error", "rate_limit_exceeded", None, True, id="converse-throttling"),
    pytest.param("claude-3-haiku", 403, "AccessDeniedException", '{"message":"You don\'t have access to the model with the specified model ID."}',
                 403, "permission_error", "access_denied", "have access to the model", False, id="access-denied"),
    pytest.param("claude-3-haiku", 400, "ValidationException", '{"message":"Malformed input request: #: extraneous key [foo] is not permitted, please reformat your input and try again."}',
                 400, "invalid_request_error", "invalid_request", "extraneous key [foo] is not permitted", False, id="validation"),
    pytest.param("claude-3-haiku", 400, "ValidationException", '{"message":"Input is too long for requested model."}',
                 400, "invalid_request_error", "context_length_exceeded", "too long", False, id="validation-context-length"),
    pytest.param("amazon.titan-text-express-v1", 404, "ResourceNotFoundException", '{"message":"Could not resolve the foundation model from the provided model identifier."}',
                 404, "invalid_request_error", "model_not_found", "Could not resolve", False, id="resource-not-found"),
    pytest.param("claude-3-haiku", 500, "InternalServerException", '{"message":"The server encountered an internal error."}',
                 500, "api_error", "internal_error", "internal error", False, id="internal-server"),
    pytest.param("claude-3-haiku", 503, "ServiceUnavailableException", '{"Message":"Bedrock is unable to process your request."}',
                 503, "api_error", "service_unavailable", "unable to process", False, id="service-unavailable-capital-Message"),
    pytest.param("claude-3-haiku", 408, "ModelTimeoutException", '{"message":"Model has timed out in processing the request."}',
                 504, "timeout_error", "model_timeout", "timed out", False, id="model-timeout"),
    pytest.param("claude-3-haiku", 424, "ModelErrorException", '{"message":"The model returned an error.","originalStatusCode":500}',
                 502, "api_error", "model_error", "returned an error", False, id="model-error"),
    pytest.param("claude-3-haiku", 400, "ServiceQuotaExceededException", '{"message":"Quota exceeded."}',
                 429, "insufficient_quota", "quota_exceeded", "Quota exceeded", True, id="service-quota"),
    pytest.param("claude-3-haiku", 502, None, "<html><body>502 Bad Gateway</body></html>",
                 502, "api_error", "upstream_error", "502 Bad Gateway", False, id="non-json-5xx-no-error-type"),
]


@pytest.mark.parametrize("model,up_status,error_type,body,status,type_,code,msg,retry", BEDROCK_ERRORS)
def test_bedrock_error_mapping(client, fakes, model, up_status, error_type, body, status, type_, code, msg, retry):
    ct = "text/html" if body and body.startswith("<") else None
    resp = client.chat(chat(model), headers=steer(up_status, error_type, body, ct))
    rec = fakes.bedrock.last()
    assert rec.sigv4.ok and rec.response_status == up_status
    err = assert_error(resp, status, type_, code=code, message_contains=msg)
    assert ("retry-after" in resp.headers) == retry, resp.headers
    assert "x-amzn-errortype" not in resp.headers
    assert "<html>" not in err["message"] or "502" in err["message"]


OPENAI_ERRORS = [
    pytest.param(429, None, 429, "rate_limit_error", "rate_limit_exceeded", id="rate-limit"),
    pytest.param(500, None, 500, None, None, id="server-error"),
    pytest.param(503, None, 503, None, None, id="unavailable"),
    pytest.param(
        400,
        '{"error":{"message":"Invalid value for \'temperature\'.","type":"invalid_request_error","param":"temperature","code":"invalid_value"}}',
        400, "invalid_request_error", "invalid_value", id="bad-request-keeps-param-and-code",
    ),
]


@pytest.mark.parametrize("up_status,body,status,type_,code", OPENAI_ERRORS)
def test_openai_error_mapping_for_translated_target(client, fakes, up_status, body, status, type_, code):
    """OpenAI upstream errors reach a Claude-format caller as OpenAI error objects too."""
    resp = client.chat(chat("gpt-4o"), path="/v1/chat/completions?target_format=bedrock_claude", headers=steer(up_status, None, body))
    assert fakes.openai.last().response_status == up_status
    err = assert_error(resp, status, type_, **({"code": code} if code else {}))
    assert resp.json().get("type") == "error"  # Anthropic-shaped envelope for a Claude caller
    if up_status == 400:
        assert err["param"] == "temperature"
    if up_status == 429:
        assert "retry-after" in resp.headers


@pytest.mark.parametrize("up_status,body,status,type_,code", OPENAI_ERRORS)
def test_openai_error_mapping_for_openai_target(client, fakes, up_status, body, status, type_, code):
    resp = client.chat(chat("gpt-4o"), headers=steer(up_status, None, body))
    assert fakes.openai.last().response_status == up_status
    assert_error(resp, status, type_, **({"code": code} if code else {}))


def test_openai_wrong_upstream_key_is_502(client, fakes):
    fakes.openai.api_key = "sk-a-different-key"
    resp = client.chat(chat("gpt-4o"))
    rec = fakes.openai.last()
    assert rec.response_status == 401
    assert_error(resp, 502, "api_error", code="upstream_auth_failed")
    assert UPSTREAM_OPENAI_KEY not in resp.body.decode()


def test_bedrock_bad_signature_is_502_without_the_secret_key(client, fakes):
    fakes.bedrock.set_credentials(DEFAULT_ACCESS_KEY, "the-secret-bedrock-expects", DEFAULT_TOKEN)
    resp = client.chat(chat("claude-3-haiku"))
    rec = fakes.bedrock.last()
    assert rec.sigv4.error_type == "InvalidSignatureException" and rec.response_status == 403
    assert_error(resp, 502, "api_error", code="upstream_auth_failed", message_contains="InvalidSignatureException")
    assert DEFAULT_SECRET not in resp.body.decode()


def test_bedrock_signature_error_does_not_leak_session_token(client, fakes):
    """AWS echoes the canonical request (with the x-amz-security-token the gateway signed
    with) in InvalidSignatureException messages; the client must never see it."""
    fakes.bedrock.set_credentials(DEFAULT_ACCESS_KEY, "the-secret-bedrock-expects", DEFAULT_TOKEN)
    resp = client.chat(chat("claude-3-haiku"))
    rec = fakes.bedrock.last()
    assert rec.sigv4.error_type == "InvalidSignatureException"
    assert DEFAULT_TOKEN.encode() in rec.response_body, "the fake's message does carry the token"
    assert_error(resp, 502, "api_error", code="upstream_auth_failed")
    assert DEFAULT_TOKEN not in resp.body.decode(), resp.body[:2000]
    assert DEFAULT_SECRET not in resp.body.decode()


def test_bedrock_unknown_access_key_is_502(client, fakes):
    fakes.bedrock.set_credentials("AKIDSOMEONEELSE", "x", None)
    resp = client.chat(chat("amazon.nova-pro-v1:0"))
    assert fakes.bedrock.last().sigv4.error_type == "UnrecognizedClientException"
    assert_error(resp, 502, "api_error", code="upstream_auth_failed")


GARBAGE_200 = [
    pytest.param("claude-3-haiku", "", "<html>oops</html>", "text/html", id="claude-html"),
    pytest.param("amazon.nova-pro-v1:0", "", "not json at all", "text/plain", id="converse-text"),
    pytest.param("amazon.titan-text-express-v1", "", '{"unexpected":true}', None, id="titan-json-without-results"),
    pytest.param("claude-3-haiku", "", '{"id":"msg_x","type":"message"}', None, id="claude-json-without-content"),
    pytest.param("claude-3-haiku", "", "[1,2,3]", None, id="claude-json-array"),
    pytest.param("gpt-4o", "?target_format=bedrock_claude", "{{{{", None, id="openai-garbage-translated"),
]


@pytest.mark.parametrize("model,query,body,ct", GARBAGE_200)
def test_garbage_200_is_502(client, fakes, model, query, body, ct):
    resp = client.chat(chat(model), path="/v1/chat/completions" + query, headers=steer(200, None, body, ct))
    assert (fakes.openai.requests + fakes.bedrock.requests)[-1].response_status == 200
    assert_error(resp, 502, "api_error", code="upstream_error")


def test_upstream_silence_past_idle_timeout_is_504(client, fakes):
    t = time.monotonic()
    resp = client.chat(chat("claude-3-haiku"), headers=steer(delay_ms=4500), timeout=15)
    took = time.monotonic() - t
    assert 2.5 <= took < 4.4, took
    assert len(fakes.bedrock.requests) == 1
    assert_error(resp, 504, "timeout_error", code="upstream_timeout")


def test_upstream_reset_mid_body_passthrough(client, fakes):
    """OpenAI→OpenAI passes the answer through: headers are already on their way to the
    client, so a reset can only show up as a cut body or a closed connection."""
    try:
        resp = client.chat(chat("gpt-4o", "x" * 2000), headers=steer(reset="true"), timeout=10)
    except (ConnectionError, http.client.HTTPException):
        resp = None
    assert fakes.openai.last().response_status == 200
    if resp is not None:
        assert resp.status == 200 and len(resp.body) < int(resp.headers["content-length"]), resp


def test_upstream_reset_mid_body_translated(client, fakes):
    """The filter buffers the answer to translate it, so nothing reached the client yet when
    the upstream resets: Envoy's own 502 reply, which the filter never sees, is an OpenAI
    error object thanks to the HCM local_reply_config (as `unigate serve` renders it)."""
    resp = client.chat(chat("claude-3-haiku", "x" * 2000), headers=steer(reset="true"), timeout=10)
    assert fakes.bedrock.last().response_status == 200
    err = assert_error(resp, 502, "api_error")
    assert "reset" in err["message"] and "upstream_reset" in err["code"], err


def test_keepalive_connection_survives_errors(client, fakes):
    conn = client.connection()
    try:
        steps = [
            (chat("claude-3-haiku"), steer(429, "ThrottlingException"), 429),
            (chat("claude-3-haiku"), {}, 200),
            (chat("no-such-model"), {}, 404),
            (chat("gpt-4o"), {}, 200),
            (chat("gpt-4o"), steer(500), 500),
            (chat("amazon.nova-pro-v1:0"), steer(200, None, "garbage", "text/plain"), 502),
            (chat("claude-3-haiku"), steer(400, "ValidationException"), 400),
            (chat("gpt-4o"), steer(delay_ms=4500), 504),  # silent past the 3 s route idle timeout
            (chat("amazon.nova-pro-v1:0"), {}, 200),
        ]
        sock = None
        for body, headers, status in steps:
            resp = client.request("POST", "/v1/chat/completions", body, headers=headers, conn=conn)
            assert resp.status == status, resp
            if status != 200:
                assert_error(resp, status)
            assert resp.headers.get("connection", "").lower() != "close", (status, resp.headers)
            if sock is None:
                sock = conn.sock
            assert conn.sock is sock, "the client had to reconnect"
        assert resp.json()["choices"][0]["message"]["content"] == "echo: hi"
    finally:
        conn.close()


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"model": "gpt-4o", "messages": [', id="invalid-json"),
        pytest.param({"model": "gpt-4o", "messages": []}, id="empty-messages"),
    ],
)
def test_local_400_keeps_keepalive_connection(client, fakes, body):
    """Envoy's HCM closes an HTTP/1 connection after a *local* 400 reply
    (ConnectionManagerImpl::ActiveStream::onLocalReply) unless
    stream_error_on_invalid_http_message is set, which the harness (like `unigate serve`)
    does: the filter's own 400 leaves the connection open for the next request."""
    conn = client.connection()
    try:
        resp = client.request("POST", "/v1/chat/completions", body, conn=conn)
        assert_error(resp, 400, "invalid_request_error")
        assert resp.headers.get("connection", "").lower() != "close", resp.headers
        sock = conn.sock
        assert sock is not None
        resp = client.request("POST", "/v1/chat/completions", chat("gpt-4o"), conn=conn)
        assert resp.status == 200, resp
        assert conn.sock is sock, "the client had to reconnect"
    finally:
        conn.close()


# ---------------------------------------------------------------- refused connections


@pytest.fixture(scope="module")
def refused_gateway(start_envoy, fakes):
    """OpenAI and Bedrock clusters point at closed ports; the sidecar works."""
    return start_envoy(
        "refused",
        default_plugin_config(fakes),
        default_env(),
        default_clusters(fakes, openai=closed_port(), bedrock=closed_port()),
    )


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-haiku"])
def test_connection_refused_is_502(refused_gateway, fakes, model):
    t = time.monotonic()
    resp = Client(refused_gateway.url).chat(chat(model), timeout=10)
    assert time.monotonic() - t < 5
    assert_error(resp, 502, "api_error", code="upstream_unreachable")
    assert fakes.upstream_requests() == []
