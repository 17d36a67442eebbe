"""Streaming (`stream=True`) through the full stack with the official OpenAI SDK: text for
each upstream API, tool calls accumulated by the SDK's own stream helper, the usage chunk,
and 50 concurrent streams each with its own content."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor, wait

import pytest

from fakes.usage import streamed_usage
from system_harness import HAIKU, NOVA, SONNET4, TITAN, assert_bedrock_upstream, assert_openai_upstream, assert_usage, make_client

STREAMS = [
    pytest.param("gpt-4o", "openai", None, None, id="openai"),
    pytest.param("claude-3-haiku", "bedrock", HAIKU, "invoke-with-response-stream", id="claude-alias"),
    pytest.param("us.anthropic.claude-sonnet-4-20250514-v1:0", "bedrock", SONNET4, "invoke-with-response-stream", id="claude-cross-region"),
    pytest.param("amazon.nova-pro-v1:0", "bedrock", NOVA, "converse-stream", id="nova-converse-stream"),
    pytest.param("amazon.titan-text-express-v1", "bedrock", TITAN, "invoke-with-response-stream", id="titan"),
]


def check_upstream(fakes, server, model_path, op):
    fake = fakes.openai if server == "openai" else fakes.bedrock
    other = fakes.bedrock if server == "openai" else fakes.openai
    assert len(fake.requests) == 1 and other.requests == []
    rec = fake.last()
    if server == "openai":
        sent = assert_openai_upstream(rec)
        assert sent["stream"] is True
    else:
        sent = assert_bedrock_upstream(rec, model_path, op)
        assert "stream" not in sent, "the operation says it streams; Bedrock rejects the field"
    return rec


@pytest.mark.parametrize("model,server,model_path,op", STREAMS)
def test_text_stream(client, fakes, model, server, model_path, op):
    text = f"count to five please {model}"
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], stream=True)
    chunks = list(stream)
    assert chunks, "no chunks"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len(chunks) >= 4, "the answer arrives in several deltas"
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == f"echo: {text}"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert all(c.choices[0].index == 0 for c in chunks if c.choices)
    assert all(not c.choices or c.usage is None for c in chunks), "no usage unless include_usage"
    check_upstream(fakes, server, model_path, op)


@pytest.mark.parametrize("model,server,model_path,op", STREAMS)
def test_stream_include_usage(client, fakes, model, server, model_path, op):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "usage please"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    last = chunks[-1]
    assert last.choices == [], "the usage chunk has no choices"
    assert [c for c in chunks if not c.choices] == [last], "exactly one usage chunk, last"
    rec = check_upstream(fakes, server, model_path, op)
    prompt, completion = streamed_usage(rec)
    assert_usage(last.usage, prompt=prompt, completion=completion)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: usage please"


def test_stream_helper_accumulates_text(client, fakes):
    """The SDK's `chat.completions.stream()` helper (event API + accumulation)."""
    deltas = []
    with client.chat.completions.stream(
        model="claude-3-haiku", messages=[{"role": "user", "content": "accumulate this text"}],
        stream_options={"include_usage": True},
    ) as stream:
        for event in stream:
            if event.type == "content.delta":
                deltas.append(event.delta)
        final = stream.get_final_completion()
    assert "".join(deltas) == "echo: accumulate this text"
    assert final.choices[0].message.content == "echo: accumulate this text"
    assert final.choices[0].finish_reason == "stop"
    assert_usage(final.usage)


# ---------------------------------------------------------------- tool calls

TOOLS = [{
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather for a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                                "required": ["city"]}},
}, {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}},
}]

# Argument JSON cut at awkward places (inside keys, strings and escapes).
ARGS_A = ['{"ci', 'ty": "Par', 'is", "unit"', ': "c"}']
ARGS_B = ['', '{"tz": "Europe/Os', 'lo \\"north\\""}']


def claude_tool_events():
    ev = [
        {"type": "message_start", "message": {"id": "msg_bdrk_tools", "type": "message", "role": "assistant",
                                              "model": "claude-3-haiku-20240307", "content": [], "stop_reason": None,
                                              "stop_sequence": None, "usage": {"input_tokens": 42, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Let me check."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_A1", "name": "get_weather", "input": {}}},
    ]
    ev += [{"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": p}} for p in ARGS_A]
    ev += [{"type": "content_block_stop", "index": 1},
           {"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_B2", "name": "get_time", "input": {}}}]
    ev += [{"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": p}} for p in ARGS_B]
    ev += [
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 31}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 42, "outputTokenCount": 31,
                                                                        "invocationLatency": 100, "firstByteLatency": 40}},
    ]
    return [{"chunk": e} for e in ev]


def converse_tool_events():
    ev = [
        {"event": "messageStart", "payload": {"role": "assistant"}},
        {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": "Let me check."}}},
        {"event": "contentBlockStop", "payload": {"contentBlockIndex": 0}},
        {"event": "contentBlockStart", "payload": {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "toolu_A1", "name": "get_weather"}}}},
    ]
    ev += [{"event": "contentBlockDelta", "payload": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": p}}}} for p in ARGS_A]
    ev += [{"event": "contentBlockStop", "payload": {"contentBlockIndex": 1}},
           {"event": "contentBlockStart", "payload": {"contentBlockIndex": 2, "start": {"toolUse": {"toolUseId": "toolu_B2", "name": "get_time"}}}}]
    ev += [{"event": "contentBlockDelta", "payload": {"contentBlockIndex": 2, "delta": {"toolUse": {"input": p}}}} for p in ARGS_B if p]
    ev += [
        {"event": "contentBlockStop", "payload": {"contentBlockIndex": 2}},
        {"event": "messageStop", "payload": {"stopReason": "tool_use"}},
        {"event": "metadata", "payload": {"usage": {"inputTokens": 42, "outputTokens": 31, "totalTokens": 73}, "metrics": {"latencyMs": 100}}},
    ]
    return ev


TOOL_STREAMS = [
    pytest.param("claude-3-haiku", claude_tool_events, id="claude-tool_use-blocks"),
    pytest.param("amazon.nova-pro-v1:0", converse_tool_events, id="converse-toolUse-blocks"),
]
EXPECTED_CALLS = [("toolu_A1", "get_weather", {"city": "Paris", "unit": "c"}), ("toolu_B2", "get_time", {"tz": 'Europe/Oslo "north"'})]


@pytest.mark.parametrize("model,events", TOOL_STREAMS)
def test_streamed_tool_calls_raw_chunks(client, fakes, model, events):
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "weather and time?"}], tools=TOOLS, stream=True,
        stream_options={"include_usage": True}, extra_headers={"x-fake-stream-events": json.dumps(events())},
    )
    chunks = list(stream)
    assert fakes.bedrock.last().sigv4.ok
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Let me check."
    seen = {}
    order = []
    for c in chunks:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            if tc.index not in seen:
                assert tc.id and tc.type == "function" and tc.function.name, f"first delta of a call needs id/name: {tc}"
                seen[tc.index] = {"id": tc.id, "name": tc.function.name, "args": tc.function.arguments or ""}
                order.append(tc.index)
            else:
                assert tc.id is None and (tc.function.name is None), f"id/name only in the first delta: {tc}"
                seen[tc.index]["args"] += tc.function.arguments or ""
    assert order == [0, 1], f"tool-call indexes must be dense from 0: {order}"
    got = [(seen[i]["id"], seen[i]["name"], json.loads(seen[i]["args"])) for i in order]
    assert got == EXPECTED_CALLS
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert_usage(chunks[-1].usage, prompt=42, completion=31)


@pytest.mark.parametrize("model,events", TOOL_STREAMS)
def test_streamed_tool_calls_sdk_accumulation(client, fakes, model, events):
    """The SDK's stream helper indexes its snapshot by tool-call index (IndexError on a gap)
    and emits tool_calls.function.arguments.done events with the complete arguments."""
    done_events = []
    with client.chat.completions.stream(
        model=model, messages=[{"role": "user", "content": "weather and time?"}], tools=TOOLS,
        extra_headers={"x-fake-stream-events": json.dumps(events())},
    ) as stream:
        for event in stream:
            if event.type == "tool_calls.function.arguments.done":
                done_events.append((event.index, event.name, json.loads(event.arguments)))
        final = stream.get_final_completion()
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert msg.content == "Let me check."
    assert [(t.id, t.function.name, json.loads(t.function.arguments)) for t in msg.tool_calls] == EXPECTED_CALLS
    assert [(i, n) for i, n, _ in done_events] == [(0, "get_weather"), (1, "get_time")]
    assert [a for _, _, a in done_events] == [a for _, _, a in EXPECTED_CALLS]


# ---------------------------------------------------------------- concurrency

CONCURRENT_MODELS = ["gpt-4o", "claude-3-haiku", "amazon.nova-pro-v1:0", "amazon.titan-text-express-v1",
                     "us.anthropic.claude-sonnet-4-20250514-v1:0"]


def test_fifty_concurrent_streams(stack, fakes):
    n = 50
    start = threading.Barrier(n, timeout=30)
    results = [None] * n

    def one(i: int):
        c = make_client(stack, timeout=60)
        try:
            model = CONCURRENT_MODELS[i % len(CONCURRENT_MODELS)]
            text = f"stream {i} token {uuid.uuid4().hex[:8]}"
            start.wait()
            t0 = time.monotonic()
            chunks = list(c.chat.completions.create(
                model=model, messages=[{"role": "user", "content": text}], stream=True,
                stream_options={"include_usage": True},
                # several events, each a little apart, so the streams really overlap
                extra_headers={"x-fake-chunk-delay-ms": "40"},
            ))
            t1 = time.monotonic()
            content = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
            finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
            results[i] = (model, text, content, finishes, chunks[-1].usage, len({ch.id for ch in chunks}), t0, t1)
        finally:
            c.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        done, not_done = wait(futures, timeout=90)
        assert not not_done, f"{len(not_done)} streams still running after 90 s"
        for f in futures:
            f.result()
    for model, text, content, finishes, usage, ids, _, _ in results:
        assert content == f"echo: {text}", (model, content)
        assert finishes == ["stop"], (model, finishes)
        assert ids == 1
        assert_usage(usage)
    # They did overlap: at the busiest moment many streams were open at once.
    events = sorted([(r[6], 1) for r in results] + [(r[7], -1) for r in results])
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    assert peak >= 20, f"only {peak} streams were open at the same time"
    assert len(fakes.upstream_requests()) == n
    texts = sorted(json.dumps(r.json()) for r in fakes.upstream_requests())
    assert all(any(f"stream {i} token" in t for t in texts) for i in range(n))
