"""Non-streaming chat completions through the full stack with the official OpenAI SDK: every
upstream API, answers in other target formats, finish reasons and real usage numbers; and
for each, what the fake upstream received (which fake, path, SigV4 verified by botocore,
the gateway's own upstream key, never the client's)."""

from __future__ import annotations

import json

import anthropic
import pytest
import requests

from system_harness import (
    CLIENT_KEY,
    HAIKU,
    NOVA,
    SONNET4,
    TITAN,
    assert_bedrock_upstream,
    assert_openai_upstream,
    assert_usage,
)

MODELS = [
    # (model as the client sends it, fake, model path at Bedrock, Bedrock operation)
    pytest.param("gpt-4o", "openai", None, None, id="openai-gpt-4o"),
    pytest.param("claude-3-haiku", "bedrock", HAIKU, "invoke", id="claude-alias"),
    pytest.param("us.anthropic.claude-sonnet-4-20250514-v1:0", "bedrock", SONNET4, "invoke", id="claude-cross-region"),
    pytest.param("amazon.nova-pro-v1:0", "bedrock", NOVA, "converse", id="nova-converse"),
    pytest.param("amazon.titan-text-express-v1", "bedrock", TITAN, "invoke", id="titan"),
]


def upstream_usage(rec) -> tuple:
    """(prompt, completion) tokens the fake upstream reported in its answer."""
    body = json.loads(rec.response_body)
    if rec.server == "openai":
        return body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]
    if "usage" in body and "input_tokens" in body["usage"]:
        return body["usage"]["input_tokens"], body["usage"]["output_tokens"]
    if "usage" in body:
        return body["usage"]["inputTokens"], body["usage"]["outputTokens"]
    return body["inputTextTokenCount"], body["results"][0]["tokenCount"]


@pytest.mark.parametrize("model,server,model_path,op", MODELS)
def test_chat_completion(client, fakes, model, server, model_path, op):
    text = f"Name three primes ({model})"
    reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], max_tokens=64)

    assert reply.object == "chat.completion"
    assert reply.id.startswith("chatcmpl-")
    assert len(reply.choices) == 1
    choice = reply.choices[0]
    assert choice.index == 0 and choice.message.role == "assistant"
    assert choice.message.content == f"echo: {text}"
    assert choice.finish_reason == "stop"
    assert not choice.message.tool_calls

    fake = fakes.openai if server == "openai" else fakes.bedrock
    other = fakes.bedrock if server == "openai" else fakes.openai
    assert len(fake.requests) == 1 and other.requests == [], "exactly one request, at the right fake"
    rec = fake.last()
    if server == "openai":
        sent = assert_openai_upstream(rec)
        assert sent["model"] == "gpt-4o" and sent["max_tokens"] == 64
        assert reply.model == "gpt-4o-2024-08-06"  # OpenAI answers pass through unchanged
    else:
        sent = assert_bedrock_upstream(rec, model_path, op)
        assert "model" not in sent, "Bedrock rejects `model` in the body"
        assert reply.model == model  # the name the client sent is echoed
    assert rec.response_status == 200
    prompt, completion = upstream_usage(rec)
    assert_usage(reply.usage, prompt=prompt, completion=completion)


def test_multi_turn_with_system_to_claude(client, fakes):
    reply = client.chat.completions.create(
        model="claude-3-haiku",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "2+2?"},
            {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"},
        ],
        temperature=0.2,
    )
    assert reply.choices[0].message.content == "echo: And 3+3?"
    sent = assert_bedrock_upstream(fakes.bedrock.last(), HAIKU, "invoke")
    assert sent["system"] == "You are terse."
    assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]
    assert sent["anthropic_version"] == "bedrock-2023-05-31" and sent["temperature"] == 0.2
    assert isinstance(sent["max_tokens"], int) and sent["max_tokens"] > 0


def _claude_answer(content, stop_reason, usage=(11, 7)):
    return json.dumps({
        "id": "msg_bdrk_canned", "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307",
        "content": content, "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
    })


def _converse_answer(content, stop_reason, usage=(11, 7)):
    return json.dumps({
        "output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop_reason,
        "usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage)}, "metrics": {"latencyMs": 5},
    })


FINISH = [
    pytest.param("claude-3-haiku", _claude_answer([{"type": "text", "text": "cut sh"}], "max_tokens"), "length", id="claude-max_tokens"),
    pytest.param("claude-3-haiku", _claude_answer([{"type": "text", "text": "x"}], "stop_sequence"), "stop", id="claude-stop_sequence"),
    pytest.param("claude-3-haiku", _claude_answer([{"type": "text", "text": "no"}], "refusal"), "content_filter", id="claude-refusal"),
    pytest.param("amazon.nova-pro-v1:0", _converse_answer([{"text": "cut"}], "max_tokens"), "length", id="converse-max_tokens"),
    pytest.param("amazon.nova-pro-v1:0", _converse_answer([{"text": "blocked"}], "guardrail_intervened"), "content_filter", id="converse-guardrail"),
    pytest.param("amazon.titan-text-express-v1",
                 json.dumps({"inputTextTokenCount": 11, "results": [{"tokenCount": 7, "outputText": "cut", "completionReason": "LENGTH"}]}),
                 "length", id="titan-LENGTH"),
]


@pytest.mark.parametrize("model,body,finish", FINISH)
def test_finish_reasons(client, fakes, model, body, finish):
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hi"}], extra_headers={"x-fake-body": body}
    )
    assert reply.choices[0].finish_reason == finish
    assert fakes.bedrock.last().sigv4.ok
    assert_usage(reply.usage, prompt=11, completion=7)


TOOLS = [{
    "type": "function",
    "function": {"name": "get_weather", "description": "Weather for a city",
                 "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
}]


@pytest.mark.parametrize(
    "model,body",
    [
        pytest.param("claude-3-haiku", _claude_answer(
            [{"type": "text", "text": "Checking."},
             {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
             {"type": "tool_use", "id": "toolu_01B", "name": "get_weather", "input": {"city": "Oslo"}}], "tool_use"), id="claude"),
        pytest.param("amazon.nova-pro-v1:0", _converse_answer(
            [{"text": "Checking."},
             {"toolUse": {"toolUseId": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}},
             {"toolUse": {"toolUseId": "toolu_01B", "name": "get_weather", "input": {"city": "Oslo"}}}], "tool_use"), id="converse"),
    ],
)
def test_tool_calls(client, fakes, model, body):
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Weather in Paris and Oslo?"}], tools=TOOLS,
        tool_choice="auto", extra_headers={"x-fake-body": body},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.id for c in calls] == ["toolu_01A", "toolu_01B"]
    assert all(c.type == "function" and c.function.name == "get_weather" for c in calls)
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"city": "Oslo"}]
    sent = fakes.bedrock.last().json()
    if model.startswith("claude"):
        assert sent["tools"][0]["name"] == "get_weather" and sent["tools"][0]["input_schema"]["required"] == ["city"]
    else:
        assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather"


def test_tool_result_round_trip_to_claude(client, fakes):
    client.chat.completions.create(
        model="claude-3-haiku",
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
            {"role": "tool", "tool_call_id": "toolu_01A", "content": '{"temp_c": 21}'},
        ],
        tools=TOOLS,
    )
    sent = assert_bedrock_upstream(fakes.bedrock.last(), HAIKU, "invoke")
    assert sent["messages"][1]["content"][0] == {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}
    result = sent["messages"][2]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == "toolu_01A"


# ---------------------------------------------------------------- other target formats


@pytest.mark.parametrize(
    "model,server",
    [pytest.param("claude-3-haiku", "bedrock", id="claude"), pytest.param("gpt-4o", "openai", id="openai-translated"),
     pytest.param("amazon.nova-pro-v1:0", "bedrock", id="converse")],
)
def test_bedrock_claude_target_through_the_sdk(client, fakes, model, server):
    """`?target_format=bedrock_claude` with the OpenAI SDK: the answer is an Anthropic
    Messages object, which the official Anthropic SDK's model validates."""
    raw = client.with_options(timeout=20).chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello claude"}], max_tokens=50,
        extra_query={"target_format": "bedrock_claude"},
    )
    assert raw.http_response.status_code == 200
    body = raw.http_response.json()
    msg = anthropic.types.Message.model_validate(body)
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: hello claude"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens >= 1 and msg.usage.output_tokens >= 1
    fake = fakes.openai if server == "openai" else fakes.bedrock
    assert len(fake.requests) == 1
    if server == "openai":
        assert_openai_upstream(fake.last())
    else:
        assert fake.last().sigv4.ok


def test_bedrock_titan_target_through_the_sdk(client, fakes):
    raw = client.chat.completions.with_raw_response.create(
        model="amazon.titan-text-express-v1", messages=[{"role": "user", "content": "hello titan"}],
        extra_headers={"x-target-format": "bedrock_titan"},
    )
    body = raw.http_response.json()
    assert body["results"][0]["outputText"] == "echo: hello titan"
    assert body["results"][0]["completionReason"] == "FINISH"
    assert isinstance(body["inputTextTokenCount"], int) and body["inputTextTokenCount"] > 0
    assert "x-target-format" not in fakes.bedrock.last().headers


def _post(stack, body, query="", key=CLIENT_KEY, headers=None):
    h = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    h.update(headers or {})
    return requests.post(f"{stack.url}/v1/chat/completions{query}", data=json.dumps(body), headers=h, timeout=20)


def test_claude_body_passthrough_raw_http(stack, fakes):
    """A Bedrock Claude body (anthropic_version) to the same endpoint, Claude answer."""
    body = {"model": "anthropic.claude-3-haiku-20240307-v1:0", "anthropic_version": "bedrock-2023-05-31", "max_tokens": 40,
            "system": "Be brief.", "messages": [{"role": "user", "content": [{"type": "text", "text": "raw claude"}]}]}
    r = _post(stack, body, "?target_format=bedrock_claude")
    assert r.status_code == 200, r.text
    msg = anthropic.types.Message.model_validate(r.json())
    assert msg.content[0].text == "echo: raw claude"
    sent = assert_bedrock_upstream(fakes.bedrock.last(), HAIKU, "invoke")
    assert sent == {k: v for k, v in body.items() if k != "model"}


def test_claude_body_default_answer_is_openai(stack, fakes):
    body = {"model": "claude-3-haiku", "anthropic_version": "bedrock-2023-05-31", "max_tokens": 40,
            "messages": [{"role": "user", "content": "claude in, openai out"}]}
    r = _post(stack, body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "chat.completion"
    assert out["choices"][0]["message"]["content"] == "echo: claude in, openai out"
    assert out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"] == out["usage"]["total_tokens"]


def test_titan_body_passthrough_raw_http(stack, fakes):
    body = {"model": "amazon.titan-text-express-v1", "inputText": "User: raw titan\nBot:",
            "textGenerationConfig": {"maxTokenCount": 30, "temperature": 0.1}}
    r = _post(stack, body, "?target_format=bedrock_titan")
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["outputText"] == "echo: raw titan"
    sent = assert_bedrock_upstream(fakes.bedrock.last(), TITAN, "invoke")
    assert sent == {k: v for k, v in body.items() if k != "model"}
