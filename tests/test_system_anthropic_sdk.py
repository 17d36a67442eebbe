"""`target_format=bedrock_claude` streams consumed by the official Anthropic SDK: the raw SSE
bytes the gateway produced are fed to the SDK's own stream machinery (`anthropic.Stream`
over an httpx2 response, then `MessageStream`, which accumulates the events into the final
Message exactly as `client.messages.stream()` does). The SDK skips SSE events without an
`event:` name, rejects events out of order, and parses tool input JSON from the
`input_json_delta` fragments, so it is a strict consumer of the event shapes."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest
import requests
from anthropic.lib.streaming import MessageStream
from anthropic.types import RawMessageStreamEvent

from system_harness import CLIENT_KEY, HAIKU, assert_bedrock_upstream, assert_openai_upstream

QUERY = "?target_format=bedrock_claude"


def gateway_sse(stack, body, headers=None) -> bytes:
    """POST a streaming chat request and return the raw SSE bytes the gateway sent."""
    h = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
    h.update(headers or {})
    r = requests.post(f"{stack.url}/v1/chat/completions{QUERY}", data=json.dumps(body), headers=h, timeout=20)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream"), r.headers
    return r.content


def anthropic_message_stream(stack, raw: bytes) -> MessageStream:
    client = anthropic.Anthropic(api_key="unused", base_url=stack.url, max_retries=0)
    response = httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, content=raw,
        request=httpx2.Request("POST", f"{stack.url}/v1/chat/completions{QUERY}"),
    )
    raw_stream = anthropic.Stream(cast_to=RawMessageStreamEvent, response=response, client=client)
    return MessageStream(raw_stream, output_format=anthropic.NOT_GIVEN)


def consume(stack, raw: bytes):
    """(final Message, event types the SDK yielded, text deltas)."""
    ms = anthropic_message_stream(stack, raw)
    types, texts = [], []
    with ms:
        for ev in ms:
            types.append(ev.type)
            if ev.type == "text":
                texts.append(ev.text)
        final = ms.get_final_message()
    return final, types, texts


def oa_body(model, text, **kw):
    return {"model": model, "messages": [{"role": "user", "content": text}], "stream": True, **kw}


@pytest.mark.parametrize(
    "model,server",
    [pytest.param("claude-3-haiku", "bedrock", id="claude-upstream"),
     pytest.param("gpt-4o", "openai", id="openai-upstream-translated"),
     pytest.param("amazon.nova-pro-v1:0", "bedrock", id="converse-upstream-translated"),
     pytest.param("amazon.titan-text-express-v1", "bedrock", id="titan-upstream-translated")],
)
def test_text_stream_parsed_by_anthropic_sdk(stack, fakes, model, server):
    raw = gateway_sse(stack, oa_body(model, "stream me to claude"))
    final, types, texts = consume(stack, raw)
    assert types[0] == "message_start" and types[-1] == "message_stop", types
    assert "".join(texts) == "echo: stream me to claude"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == "echo: stream me to claude"
    assert final.stop_reason == "end_turn"
    assert final.role == "assistant"
    assert final.usage.output_tokens >= 1 and final.usage.input_tokens >= 1
    if server == "openai":
        assert_openai_upstream(fakes.openai.last())
    else:
        assert fakes.bedrock.last().sigv4.ok


def _claude_tool_stream():
    ev = [
        {"type": "message_start", "message": {"id": "msg_bdrk_t", "type": "message", "role": "assistant",
                                              "model": "claude-3-haiku-20240307", "content": [], "stop_reason": None,
                                              "stop_sequence": None, "usage": {"input_tokens": 30, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "One moment."}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_X9", "name": "lookup", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"query": "unig'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'ate", "limit": 3}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": None}, "usage": {"output_tokens": 25}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 30, "outputTokenCount": 25,
                                                                        "invocationLatency": 90, "firstByteLatency": 30}},
    ]
    return [{"chunk": e} for e in ev]


def _converse_tool_stream():
    return [
        {"event": "messageStart", "payload": {"role": "assistant"}},
        {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": "One moment."}}},
        {"event": "contentBlockStop", "payload": {"contentBlockIndex": 0}},
        {"event": "contentBlockStart", "payload": {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "toolu_X9", "name": "lookup"}}}},
        {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": '{"query": "unig'}}}},
        {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": 'ate", "limit": 3}'}}}},
        {"event": "contentBlockStop", "payload": {"contentBlockIndex": 1}},
        {"event": "messageStop", "payload": {"stopReason": "tool_use"}},
        {"event": "metadata", "payload": {"usage": {"inputTokens": 30, "outputTokens": 25, "totalTokens": 55}, "metrics": {"latencyMs": 90}}},
    ]


def _openai_tool_stream():
    base = {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1763758800, "model": "gpt-4o-2024-08-06"}

    def ch(delta, finish=None):
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    return [
        ch({"role": "assistant", "content": "One moment."}),
        ch({"tool_calls": [{"index": 0, "id": "call_X9", "type": "function", "function": {"name": "lookup", "arguments": ""}}]}),
        ch({"tool_calls": [{"index": 0, "function": {"arguments": '{"query": "unig'}}]}),
        ch({"tool_calls": [{"index": 0, "function": {"arguments": 'ate", "limit": 3}'}}]}),
        ch({}, "tool_calls"),
        {**base, "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 25, "total_tokens": 55}},
        "[DONE]",
    ]


@pytest.mark.parametrize(
    "model,events,tool_id",
    [pytest.param("claude-3-haiku", _claude_tool_stream, "toolu_X9", id="claude-upstream"),
     pytest.param("amazon.nova-pro-v1:0", _converse_tool_stream, "toolu_X9", id="converse-upstream"),
     pytest.param("gpt-4o", _openai_tool_stream, "call_X9", id="openai-upstream")],
)
def test_tool_use_stream_parsed_by_anthropic_sdk(stack, fakes, model, events, tool_id):
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {
        "query": {"type": "string"}, "limit": {"type": "integer"}}}}}]
    raw = gateway_sse(stack, oa_body(model, "look it up", tools=tools, stream_options={"include_usage": True}),
                      headers={"x-fake-stream-events": json.dumps(events())})
    final, types, _ = consume(stack, raw)
    assert [b.type for b in final.content] == ["text", "tool_use"], final.content
    assert final.content[0].text == "One moment."
    tool = final.content[1]
    assert tool.id == tool_id and tool.name == "lookup"
    assert tool.input == {"query": "unigate", "limit": 3}
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 25
    assert "input_json" in types


def test_claude_body_stream_via_anthropic_client(stack, fakes):
    """The Anthropic client itself talks to the gateway (x-api-key auth) with a Bedrock Claude
    body; its Stream/MessageStream consume the live response."""
    client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=stack.url, max_retries=0, timeout=20)
    body = {"model": "claude-3-haiku", "anthropic_version": "bedrock-2023-05-31", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": "live anthropic client"}]}
    raw_stream = client.post(
        "/v1/chat/completions", body=body, cast_to=RawMessageStreamEvent, stream=True,
        stream_cls=anthropic.Stream[RawMessageStreamEvent], options={"params": {"target_format": "bedrock_claude"}},
    )
    with MessageStream(raw_stream, output_format=anthropic.NOT_GIVEN) as ms:
        assert "".join(ms.text_stream) == "echo: live anthropic client"
        final = ms.get_final_message()
    assert final.stop_reason == "end_turn"
    sent = assert_bedrock_upstream(fakes.bedrock.last(), HAIKU, "invoke-with-response-stream")
    assert sent["messages"] == body["messages"] and "stream" not in sent
    assert "x-api-key" not in fakes.bedrock.last().headers


def test_mid_stream_error_event_raises_in_anthropic_sdk(stack, fakes):
    """A mid-stream Bedrock exception becomes an Anthropic `event: error`, which the SDK
    raises as an APIStatusError instead of returning a truncated message."""
    events = [{"event": "messageStart", "payload": {"role": "assistant"}},
              {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": "partial"}}},
              {"exception": "throttlingException", "payload": {"message": "Too many requests, please wait before trying again."}}]
    raw = gateway_sse(stack, oa_body("amazon.nova-pro-v1:0", "x"), headers={"x-fake-stream-events": json.dumps(events)})
    with pytest.raises(anthropic.APIStatusError) as ei:
        consume(stack, raw)
    assert "Too many requests" in str(ei.value)
