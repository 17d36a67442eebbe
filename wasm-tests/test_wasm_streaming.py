"""Streamed answers (`stream: true`): the upstream streams (AWS event-stream or OpenAI SSE,
written in pieces of any size) and the client gets the target format's SSE, incrementally,
ending exactly once; mid-stream failures become in-band error events."""

from __future__ import annotations

import json
import time

import pytest

from fakes.usage import streamed_usage
from wasm_checks import assert_bedrock_upstream, assert_error, assert_openai_stream, assert_openai_upstream, parse_sse, stream_error

HAIKU_STREAM = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream"


def sbody(model, text="a b c", **kw):
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": True, **kw}


STREAMS = [
    pytest.param("claude-3-haiku", "bedrock", HAIKU_STREAM, id="claude-alias"),
    pytest.param("us.anthropic.claude-sonnet-4-20250514-v1:0", "bedrock",
                 "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke-with-response-stream", id="claude-profile"),
    pytest.param("amazon.nova-pro-v1:0", "bedrock", "/model/amazon.nova-pro-v1%3A0/converse-stream", id="converse-nova"),
    pytest.param("meta.llama3-1-70b-instruct-v1:0", "bedrock", "/model/meta.llama3-1-70b-instruct-v1%3A0/converse-stream", id="converse-llama"),
    pytest.param("amazon.titan-text-express-v1", "bedrock", "/model/amazon.titan-text-express-v1/invoke-with-response-stream", id="titan"),
    pytest.param("gpt-4o", "openai", "/v1/chat/completions", id="openai-passthrough"),
]


@pytest.mark.parametrize("include_usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize("model,server,path", STREAMS)
def test_openai_stream(client, fakes, model, server, path, include_usage):
    body = sbody(model, stream_options={"include_usage": include_usage}, max_tokens=30)
    resp = client.chat(body, timeout=20)
    assert resp.status == 200, resp
    assert resp.content_type.startswith("text/event-stream"), resp.headers
    assert "content-length" not in resp.headers
    rec = getattr(fakes, server).last()
    if server == "bedrock":
        up = assert_bedrock_upstream(rec, path)
        assert "stream" not in up and "stream_options" not in up
        assert rec.headers.get("accept") == "application/vnd.amazon.eventstream"
    else:
        up = assert_openai_upstream(rec)
        assert up["stream"] is True
    # OpenAI passthrough keeps the upstream's model name; everything else echoes the request
    want_model = json.loads(parse_sse(rec.response_body)[0][1])["model"] if server == "openai" else model
    assert_openai_stream(resp.body, want_model, "echo: a b c", usage=streamed_usage(rec) if include_usage else None)


PIECES = [1, 5, 64]


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize("model", ["claude-3-haiku", "amazon.nova-pro-v1:0", "amazon.titan-text-express-v1", "gpt-4o"])
def test_stream_split_anywhere(client, fakes, model, piece):
    """The upstream writes its stream `piece` bytes at a time (frames and UTF-8 characters
    split anywhere); the client's stream is unaffected."""
    text = "ünï ✓ çödé split"
    resp = client.chat(sbody(model, text, stream_options={"include_usage": True}),
                       headers={"x-fake-chunk-bytes": str(piece), "x-fake-chunk-delay-ms": "0"}, timeout=30)
    assert resp.status == 200, resp
    rec = (fakes.openai if model == "gpt-4o" else fakes.bedrock).last()
    want_model = "gpt-4o-2024-08-06" if model == "gpt-4o" else model
    assert_openai_stream(resp.body, want_model, "echo: " + text, usage=streamed_usage(rec))


def _timed_stream(client, body, headers, timeout=20):
    """Reads a streamed response, noting when each piece arrived."""
    conn = client.connection(timeout)
    try:
        h = {"authorization": f"Bearer {client.key}", "content-type": "application/json", **headers}
        conn.request("POST", "/v1/chat/completions", body=json.dumps(body).encode(), headers=h)
        r = conn.getresponse()
        t0 = time.monotonic()
        arrivals, buf = [], b""
        while True:
            piece = r.read1(65536)
            if not piece:
                break
            buf += piece
            arrivals.append((time.monotonic() - t0, buf.count(b"\n\n")))
        return r.status, buf, arrivals
    finally:
        conn.close()


@pytest.mark.parametrize("model", ["claude-3-haiku", "amazon.nova-pro-v1:0", "gpt-4o"])
def test_stream_is_not_buffered(client, fakes, model):
    """With 250 ms between upstream frames, the client sees the first events long before the
    last one: the filter translates chunk by chunk."""
    status, raw, arrivals = _timed_stream(client, sbody(model, "one two three four"), {"x-fake-chunk-delay-ms": "250"})
    assert status == 200
    first_event_at = next(t for t, n in arrivals if n >= 2)
    assert arrivals[-1][0] - first_event_at > 0.9, arrivals
    assert raw.rstrip().endswith(b"data: [DONE]")


def test_claude_body_stream_passthrough(client, fakes):
    body = {"model": "anthropic.claude-3-haiku-20240307-v1:0", "anthropic_version": "bedrock-2023-05-31",
            "max_tokens": 20, "stream": True, "messages": [{"role": "user", "content": "pass me"}]}
    resp = client.chat(body, path="/v1/chat/completions?target_format=bedrock_claude", timeout=20)
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream")
    up = assert_bedrock_upstream(fakes.bedrock.last(), HAIKU_STREAM)
    assert "stream" not in up and "model" not in up
    events = parse_sse(resp.body)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop", names
    for name, data in events:
        d = json.loads(data)
        assert d["type"] == name
        assert "amazon-bedrock-invocationMetrics" not in d, d
    text = "".join(json.loads(d)["delta"]["text"] for n, d in events if n == "content_block_delta")
    assert text == "echo: pass me"


def test_openai_model_streamed_to_claude_caller(client, fakes):
    body = {"model": "gpt-4o", "anthropic_version": "bedrock-2023-05-31", "max_tokens": 20, "stream": True,
            "messages": [{"role": "user", "content": "to claude"}]}
    resp = client.chat(body, path="/v1/chat/completions?target_format=bedrock_claude", timeout=20)
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream")
    up = assert_openai_upstream(fakes.openai.last())
    assert up["stream"] is True
    events = parse_sse(resp.body)
    names = [n for n, _ in events]
    assert names[0] == "message_start" and names[-1] == "message_stop", names
    assert "message_delta" in names and "content_block_start" in names and "content_block_stop" in names
    assert all(json.loads(d)["type"] == n for n, d in events)
    text = "".join(json.loads(d)["delta"].get("text", "") for n, d in events if n == "content_block_delta")
    assert text == "echo: to claude"
    delta = next(json.loads(d) for n, d in events if n == "message_delta")
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == streamed_usage(fakes.openai.last())[1]


def test_titan_body_stream_passthrough(client, fakes):
    body = {"model": "amazon.titan-text-express-v1", "inputText": "User: titan stream\nBot:", "stream": True}
    resp = client.chat(body, path="/v1/chat/completions?target_format=bedrock_titan", timeout=20)
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream")
    up = assert_bedrock_upstream(fakes.bedrock.last(), "/model/amazon.titan-text-express-v1/invoke-with-response-stream")
    assert up == {"inputText": "User: titan stream\nBot:"}
    chunks = [json.loads(d) for _, d in parse_sse(resp.body) if d != "[DONE]"]
    assert "".join(c["outputText"] for c in chunks) == "echo: titan stream"
    assert chunks[-1]["completionReason"] == "FINISH"


# ---------------------------------------------------------------- failures


def _start(text="part"):
    return [{"event": "messageStart", "payload": {"role": "assistant"}},
            {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": text}}}]


def _claude_start():
    return [{"chunk": {"type": "message_start", "message": {"id": "msg_bdrk_x", "type": "message", "role": "assistant",
                                                             "model": "claude-3-haiku-20240307", "content": [],
                                                             "stop_reason": None, "stop_sequence": None,
                                                             "usage": {"input_tokens": 3, "output_tokens": 1}}}},
            {"chunk": {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}},
            {"chunk": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "part"}}}]


MID_STREAM = [
    pytest.param("amazon.nova-pro-v1:0",
                 _start() + [{"exception": "throttlingException", "payload": {"message": "Too many requests, please wait before trying again."}}],
                 "rate_limit_error", "Too many requests", id="converse-throttling-frame"),
    pytest.param("amazon.nova-pro-v1:0",
                 _start() + [{"exception": "modelStreamErrorException", "payload": {"message": "Model stream broke.", "originalStatusCode": 500}}],
                 "api_error", "Model stream broke", id="converse-model-stream-error"),
    pytest.param("claude-3-haiku",
                 _claude_start() + [{"exception": "internalServerException", "payload": {"message": "Internal failure."}}],
                 "api_error", "Internal failure", id="claude-internal-frame"),
    pytest.param("claude-3-haiku",
                 _claude_start() + [{"chunk": {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}}],
                 None, "Overloaded", id="claude-anthropic-error-event"),
    pytest.param("amazon.nova-pro-v1:0",
                 _start() + [{"error_code": "InternalFailure", "error_message": "Unmodeled failure."}],
                 "api_error", None, id="converse-unmodeled-error-frame"),
    pytest.param("amazon.nova-pro-v1:0", _start(), "api_error", None, id="converse-ends-without-stop"),
    pytest.param("claude-3-haiku", _claude_start(), "api_error", None, id="claude-ends-without-stop"),
    pytest.param("amazon.nova-pro-v1:0",
                 _start() + [{"raw_hex": (b"\x00\x00\x00\x30\x00\x00\x00\x10" + b"\xde\xad\xbe\xef" + b"x" * 36).hex()}],
                 "api_error", None, id="converse-corrupt-frame"),
    pytest.param("amazon.nova-pro-v1:0",
                 [{"exception": "throttlingException", "payload": {"message": "Too many requests, please wait before trying again."}}],
                 "rate_limit_error", None, id="converse-exception-as-first-frame"),
]


@pytest.mark.parametrize("model,events,type_,message", MID_STREAM)
def test_mid_stream_failure_is_an_in_band_error(client, fakes, model, events, type_, message):
    resp = client.chat(sbody(model), headers={"x-fake-stream-events": json.dumps(events)}, timeout=20)
    assert fakes.bedrock.last().response_status == 200
    if resp.status != 200:  # nothing was sent yet: a plain error response is fine too
        assert_error(resp, resp.status, type_)
        return
    assert resp.content_type.startswith("text/event-stream")
    err = stream_error(resp.body)
    if type_:
        assert err["type"] == type_, err
    if message:
        assert message in err["message"], err
    chunks = [json.loads(d) for _, d in parse_sse(resp.body) if d != "[DONE]"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks if c.get("choices")), chunks


@pytest.mark.parametrize(
    "model,headers,status,type_",
    [
        pytest.param("claude-3-haiku", {"x-fake-status": "429", "x-fake-error-type": "ThrottlingException"}, 429, "rate_limit_error", id="claude-429"),
        pytest.param("amazon.nova-pro-v1:0", {"x-fake-status": "400", "x-fake-error-type": "ValidationException"}, 400, "invalid_request_error", id="converse-400"),
        pytest.param("gpt-4o", {"x-fake-status": "429"}, 429, "rate_limit_error", id="openai-429"),
    ],
)
def test_stream_request_with_upstream_http_error(client, fakes, model, headers, status, type_):
    """An error before any stream byte is a plain JSON error response, not SSE."""
    resp = client.chat(sbody(model), headers=headers, timeout=20)
    assert_error(resp, status, type_)


def test_stream_reset_mid_body_does_not_hang(client, fakes):
    """The upstream resets after a few frames. The client has already received 200 and
    some events; it must see the stream end promptly (cut, or with an error event)."""
    t = time.monotonic()
    try:
        resp = client.chat(sbody("amazon.nova-pro-v1:0"), headers={"x-fake-reset": "200"}, timeout=10)
        raw = resp.body
        cut = False
    except Exception as e:  # http.client.IncompleteRead: the chunked body was cut
        raw = getattr(e, "partial", b"")
        cut = True
    assert time.monotonic() - t < 5
    assert cut or b'"error"' in raw, raw
