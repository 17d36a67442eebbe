"""Errors as the official OpenAI SDK reports them: its exception classes, status codes and
error codes, for local rejections, upstream errors, an upstream timeout, and failures in
the middle of a stream."""

from __future__ import annotations

import json
import time

import openai
import pytest

from system_harness import CLIENT_KEY, make_client, provider_env

MSG = [{"role": "user", "content": "hi"}]


def test_wrong_key_is_authentication_error(stack, fakes):
    c = make_client(stack, key="ug-not-a-valid-key")
    with pytest.raises(openai.AuthenticationError) as ei:
        c.chat.completions.create(model="gpt-4o", messages=MSG)
    e = ei.value
    assert e.status_code == 401 and e.code == "invalid_api_key" and e.type == "authentication_error"
    assert "ug-not-a-valid-key" not in json.dumps(e.body)
    assert fakes.upstream_requests() == []


def test_missing_key_is_authentication_error(stack, fakes):
    c = make_client(stack, key="unused")
    with pytest.raises(openai.AuthenticationError) as ei:
        # no Authorization header at all
        c.chat.completions.create(model="claude-3-haiku", messages=MSG, extra_headers={"Authorization": openai.Omit()})
    assert "authorization" not in {k.lower() for k in ei.value.request.headers}
    assert fakes.upstream_requests() == []


def test_unknown_model_is_not_found(client, fakes):
    with pytest.raises(openai.NotFoundError) as ei:
        client.chat.completions.create(model="no-such-model-9000", messages=MSG)
    e = ei.value
    assert e.status_code == 404 and e.code == "model_not_found"
    assert "no-such-model-9000" in e.message
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize(
    "kwargs,param",
    [
        pytest.param({"model": "gpt-4o", "messages": [{"role": "user", "content": 42}]}, "messages[0].content", id="content-number"),
        pytest.param({"model": "claude-3-haiku", "messages": MSG, "max_tokens": "lots"}, "max_tokens", id="max_tokens-string"),
        pytest.param({"model": "claude-3-haiku", "messages": MSG, "temperature": "hot"}, "temperature", id="temperature-string"),
        pytest.param({"model": "amazon.nova-pro-v1:0", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", id="bad-role"),
        pytest.param({"model": "gpt-4o", "messages": []}, "messages", id="empty-messages"),
    ],
)
def test_invalid_body_is_bad_request(client, fakes, kwargs, param):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(**kwargs)
    e = ei.value
    assert e.status_code == 400 and e.type == "invalid_request_error"
    assert e.param == param, e.body
    assert fakes.upstream_requests() == []


def test_bedrock_throttling_is_rate_limit_error(client, fakes):
    with pytest.raises(openai.RateLimitError) as ei:
        client.chat.completions.create(
            model="claude-3-haiku", messages=MSG,
            extra_headers={"x-fake-status": "429", "x-fake-error-type": "ThrottlingException"},
        )
    e = ei.value
    assert e.status_code == 429 and e.type == "rate_limit_error" and e.code == "rate_limit_exceeded"
    assert "retry-after" in e.response.headers
    rec = fakes.bedrock.last()
    assert rec.sigv4.ok and rec.response_status == 429


def test_bedrock_throttling_on_a_stream_request_is_rate_limit_error(client, fakes):
    with pytest.raises(openai.RateLimitError):
        stream = client.chat.completions.create(
            model="amazon.nova-pro-v1:0", messages=MSG, stream=True,
            extra_headers={"x-fake-status": "429", "x-fake-error-type": "ThrottlingException"},
        )
        list(stream)


def test_openai_upstream_5xx_is_internal_server_error(client, fakes):
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model="gpt-4o", messages=MSG, extra_headers={"x-fake-status": "503"})
    assert ei.value.status_code == 503


def test_upstream_key_refused_is_502_without_the_key(client, fakes):
    fakes.openai.api_key = "sk-something-else"
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model="gpt-4o", messages=MSG)
    e = ei.value
    assert e.status_code == 502 and e.code == "upstream_auth_failed"
    assert "sk-system-upstream" not in e.response.text


# ---------------------------------------------------------------- mid-stream failures


def _converse_start():
    return [{"event": "messageStart", "payload": {"role": "assistant"}},
            {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": "partial "}}}]


def test_mid_stream_exception_frame_raises_api_error(client, fakes):
    """Bedrock sends a throttlingException frame after some text: the gateway turns it into
    `data: {"error": ...}`, which the SDK raises while iterating."""
    events = _converse_start() + [{"exception": "throttlingException", "payload": {"message": "Too many requests, please wait before trying again."}}]
    stream = client.chat.completions.create(
        model="amazon.nova-pro-v1:0", messages=MSG, stream=True,
        extra_headers={"x-fake-stream-events": json.dumps(events)},
    )
    got = []
    with pytest.raises(openai.APIError) as ei:
        for chunk in stream:
            got.append(chunk)
    e = ei.value
    assert not isinstance(e, openai.APIConnectionError)
    assert "Too many requests" in e.message
    assert e.type == "rate_limit_error"
    assert "".join(c.choices[0].delta.content or "" for c in got if c.choices) == "partial "
    assert fakes.bedrock.last().response_status == 200


def test_mid_stream_upstream_reset_raises(client, fakes):
    """Bedrock's connection is reset after ~200 bytes of the event stream. The client has
    its 200 and a few chunks; the SDK must raise, not end the iteration as if complete."""
    t = time.monotonic()
    stream = client.chat.completions.create(
        model="amazon.nova-pro-v1:0", messages=[{"role": "user", "content": "a long answer " * 20}], stream=True,
        extra_headers={"x-fake-reset": "200"},
    )
    got = []
    with pytest.raises(openai.APIConnectionError) as ei:
        for chunk in stream:
            got.append(chunk)
    assert time.monotonic() - t < 10
    # Envoy resets the client's stream too: the chunked body is never terminated, which
    # httpx2 reports as RemoteProtocolError and the SDK as APIConnectionError (docs/api.md).
    assert "incomplete chunked read" in str(ei.value.__cause__), repr(ei.value.__cause__)
    assert stream.response.status_code == 200, "the stream had started"
    # What arrived before the reset is intact (a reset may also discard data still in flight).
    assert all(not c.choices or c.choices[0].finish_reason is None for c in got)
    assert fakes.bedrock.last().response_status == 200


def test_upstream_reset_mid_body_is_502_json(client, fakes):
    """A translated (buffered) answer cut by an upstream reset: Envoy's own 502 reply,
    turned into an OpenAI error object by the rendered local_reply_config."""
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(
            model="claude-3-haiku", messages=[{"role": "user", "content": "x" * 2000}], extra_headers={"x-fake-reset": "true"}
        )
    e = ei.value
    assert e.status_code == 502 and e.type == "api_error"
    assert e.response.headers["content-type"] == "application/json"
    assert e.message and "reset" in e.message
    assert fakes.bedrock.last().response_status == 200


# ---------------------------------------------------------------- upstream timeout (own stack)


@pytest.fixture(scope="module")
def short_timeout_stack(start_stack, fakes):
    return start_stack("timeout", provider_env(fakes, UPSTREAM_TIMEOUT_SECONDS="2"))


def test_upstream_timeout_is_504(short_timeout_stack, fakes):
    c = make_client(short_timeout_stack, key=CLIENT_KEY, timeout=15)
    t = time.monotonic()
    with pytest.raises(openai.InternalServerError) as ei:
        c.chat.completions.create(model="claude-3-haiku", messages=MSG, extra_headers={"x-fake-delay-ms": "3500"})
    took = time.monotonic() - t
    e = ei.value
    assert e.status_code == 504 and e.type == "timeout_error" and e.code == "upstream_timeout"
    assert 1.5 <= took < 3.4, took
    assert len(fakes.bedrock.requests) == 1
