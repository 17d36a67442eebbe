"""The Anthropic Messages front door (`POST /v1/messages`, `POST /v1/messages/count_tokens`)
through the full stack, driven by the official `anthropic` SDK (max_retries=0), against the
fakes. For every answer, what the fake upstream received is checked too: the right fake and
operation, SigV4 verified by botocore with the gateway's credentials, none of the client's
credentials or `anthropic-*` headers, and — for Claude — the exact relayed body
(messages_checks.assert_relayed_body: the contract's strip/filter rules), which the strict
fake Bedrock also validates (invalid beta flag, thinking.display, defer_loading, ...).

Models: Claude relayed to InvokeModel (`claude-3-haiku` alias, a Claude 4 profile id),
a Converse model (`amazon.nova-lite-v1:0`) and an OpenAI model (`gpt-4o-mini`), translated.
"""

from __future__ import annotations

import datetime
import hashlib
import http.client
import inspect
import json
import re
import time
import uuid

import anthropic
import pytest
import requests

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from fakes.text import count_tokens
from fakes.usage import streamed_usage
from messages_checks import (
    CLAUDE_CODE_BETA_HEADER,
    CLAUDE_CODE_BETA_HEADER_NO_EXPERIMENTAL,
    assert_error_body,
    assert_error_envelope,
    assert_message_stream,
    assert_relayed_body,
    bedrock_chunk_events,
    claude_stream_events,
    count_tokens_inner,
    parse_sse,
    stream_error_event,
)
from system_harness import CLIENT_KEY, HAIKU, SONNET4, assert_bedrock_upstream, assert_openai_upstream, provider_env

HAIKU_ID = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET4_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"
SONNET45_ID = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
SONNET45 = "global.anthropic.claude-sonnet-4-5-20250929-v1%3A0"
NOVA_LITE_ID = "amazon.nova-lite-v1:0"
NOVA_LITE = "amazon.nova-lite-v1%3A0"
GPT = "gpt-4o-mini"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="

OverloadedError = getattr(anthropic, "OverloadedError", anthropic.InternalServerError)
GatewayTimeoutError = getattr(anthropic, "GatewayTimeoutError", anthropic.InternalServerError)
ContentTooLargeError = getattr(anthropic, "ContentTooLargeError", None) or anthropic.RequestTooLargeError

# (model as the client sends it, kind, resolved Bedrock id, model path at Bedrock)
MODELS = [
    pytest.param("claude-3-haiku", "claude", HAIKU_ID, HAIKU, id="claude-alias"),
    pytest.param(SONNET4_ID, "claude", SONNET4_ID, SONNET4, id="claude4-profile"),
    pytest.param(NOVA_LITE_ID, "converse", NOVA_LITE_ID, NOVA_LITE, id="converse-nova"),
    pytest.param(GPT, "openai", None, None, id="openai"),
]
STREAM_OP = {"claude": "invoke-with-response-stream", "converse": "converse-stream"}
PLAIN_OP = {"claude": "invoke", "converse": "converse"}


def user(content):
    return {"role": "user", "content": content}


@pytest.fixture
def ac(stack):
    """The official Anthropic SDK pointed at the gateway (it sends the key as Bearer)."""
    c = anthropic.Anthropic(base_url=stack.url, api_key=CLIENT_KEY, max_retries=0, timeout=20)
    yield c
    c.close()


def raw_post(stack, body, path="/v1/messages", headers=None, key=CLIENT_KEY, stream=False):
    h = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
    if key is not None:
        h["x-api-key"] = key
    h.update(headers or {})
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(stack.url + path, data=data, headers=h, timeout=20, stream=stream)


def assert_clean_upstream_headers(rec) -> None:
    """The client's Anthropic headers never reach an upstream (anthropic-version is a body
    field for Bedrock; betas go in the body, filtered)."""
    for name, _ in rec.header_list:
        assert not name.startswith("anthropic-"), f"{name} reached {rec.server}"
        assert name != "x-api-key", f"x-api-key reached {rec.server}"


def only_request(fakes, kind):
    fake = fakes.openai if kind == "openai" else fakes.bedrock
    other = fakes.bedrock if kind == "openai" else fakes.openai
    assert len(fake.requests) == 1 and other.requests == [], \
        f"expected exactly one request at {fake.name}: {[r.path for r in fakes.upstream_requests()]}"
    rec = fake.last()
    assert_clean_upstream_headers(rec)
    return rec


def upstream_usage(rec) -> tuple:
    """(input, output) tokens a fake reported in a non-streamed answer."""
    body = json.loads(rec.response_body)
    if rec.server == "openai":
        return body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]
    if "inputTokens" in body.get("usage", {}):
        return body["usage"]["inputTokens"], body["usage"]["outputTokens"]
    return body["usage"]["input_tokens"], body["usage"]["output_tokens"]


def assert_translated_usage(usage: dict, input_tokens: int, output_tokens: int) -> None:
    """A translated answer's usage: the four fields of the contract, input excluding cache."""
    assert {"input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens"} <= set(usage), usage
    assert usage["input_tokens"] == input_tokens and usage["output_tokens"] == output_tokens, usage
    assert usage["cache_creation_input_tokens"] == 0 and usage["cache_read_input_tokens"] == 0, usage


def check_sent(rec, kind, model, model_id, path, client_body, op=None, beta_headers=()):
    """What the fake received for `client_body` (non-streamed unless op says otherwise)."""
    if kind == "openai":
        sent = assert_openai_upstream(rec)
        assert sent["model"] == model
        return sent
    sent = assert_bedrock_upstream(rec, path, op or PLAIN_OP[kind])
    if kind == "claude":
        assert_relayed_body(sent, client_body, model_id, beta_headers)
    return sent


def text_of(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


# ---------------------------------------------------------------- create / stream, every upstream


@pytest.mark.parametrize("model,kind,model_id,path", MODELS)
def test_create(ac, fakes, model, kind, model_id, path):
    text = f"Name three primes ({model})"
    client_body = {"model": model, "max_tokens": 64, "messages": [user(text)]}
    raw = ac.messages.with_raw_response.create(**client_body)
    msg = raw.parse()
    assert raw.http_response.status_code == 200
    assert raw.http_response.headers["content-type"].startswith("application/json")
    assert msg.type == "message" and msg.role == "assistant"
    assert [b.type for b in msg.content] == ["text"] and msg.content[0].text == f"echo: {text}"
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    rec = only_request(fakes, kind)
    assert rec.response_status == 200
    sent = check_sent(rec, kind, model, model_id, path, client_body)
    body = raw.http_response.json()
    n_in, n_out = upstream_usage(rec)
    if kind == "claude":
        assert body == json.loads(rec.response_body), "a Claude answer is relayed unchanged"
        return
    # translated answers: the model as the client asked for it, a msg_ id, the upstream's usage
    assert body["model"] == model, body["model"]
    assert isinstance(body["id"], str) and body["id"].startswith("msg_"), body["id"]
    assert_translated_usage(body["usage"], n_in, n_out)
    if kind == "converse":
        assert sent["messages"] == [{"role": "user", "content": [{"text": text}]}]
        assert sent["inferenceConfig"]["maxTokens"] == 64
    else:
        assert [(m["role"], text_of(m["content"])) for m in sent["messages"]] == [("user", text)]
        assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 64, sent
        assert "stream" not in sent or sent["stream"] is False


@pytest.mark.parametrize("model,kind,model_id,path", MODELS)
def test_stream_final_message_equals_create(ac, fakes, model, kind, model_id, path):
    text = f"stream me three words ({model})"
    client_body = {"model": model, "max_tokens": 64, "messages": [user(text)]}
    with ac.messages.stream(**client_body) as s:
        deltas = [ev.text for ev in s if ev.type == "text"]
        final = s.get_final_message()
    stream_rec = (fakes.openai if kind == "openai" else fakes.bedrock).last()
    plain = ac.messages.create(**client_body)
    assert len(deltas) >= 2, "the answer arrives in several text deltas"
    assert "".join(deltas) == final.content[0].text == plain.content[0].text == f"echo: {text}"
    assert [b.type for b in final.content] == ["text"]
    assert final.stop_reason == plain.stop_reason == "end_turn"
    assert final.role == "assistant" and final.type == "message"
    n_in, n_out = streamed_usage(stream_rec)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (n_in, n_out), final.usage
    if kind == "openai":
        sent = assert_openai_upstream(stream_rec)
        assert sent["stream"] is True and sent["model"] == model
    else:
        sent = check_sent(stream_rec, kind, model, model_id, path, dict(client_body, stream=True), op=STREAM_OP[kind])
        assert "stream" not in sent
    if kind != "claude":
        assert final.model == model
    assert_clean_upstream_headers(stream_rec)


@pytest.mark.parametrize("model,kind,model_id,path", MODELS)
def test_stream_wire_format(stack, fakes, model, kind, model_id, path):
    """The raw SSE: `event: <type>` + `data: <json>` frames, the Messages grammar with dense
    block indexes; a Claude stream is Bedrock's events one-to-one, minus invocation metrics."""
    r = raw_post(stack, {"model": model, "max_tokens": 50, "stream": True, "messages": [user("wire format check")]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/event-stream"), r.headers
    events = parse_sse(r.content)
    msg = assert_message_stream(events, allow_ping=(kind != "claude"))
    assert [b["type"] for b in msg["content"]] == ["text"] and msg["content"][0]["text"] == "echo: wire format check"
    assert msg["stop_reason"] == "end_turn"
    rec = (fakes.openai if kind == "openai" else fakes.bedrock).last()
    if kind == "claude":
        upstream = bedrock_chunk_events(rec)
        assert "amazon-bedrock-invocationMetrics" in upstream[-1], "the fake sends metrics (else this test proves nothing)"
        want = [{k: v for k, v in e.items() if k != "amazon-bedrock-invocationMetrics"} for e in upstream]
        assert [d for _, d in events] == want
    else:
        assert msg["model"] == model


def test_claude_stream_drops_ping_and_metrics(stack, fakes):
    """Bedrock chunk events relayed as they are, except `ping` (dropped) and the
    `amazon-bedrock-invocationMetrics` member of the last event (removed)."""
    evs = claude_stream_events([{"type": "text", "text": "Hi"}], pings=True)
    r = raw_post(stack, {"model": "claude-3-haiku", "max_tokens": 20, "stream": True, "messages": [user("x")]},
                 headers={"x-fake-stream-events": json.dumps([{"chunk": e} for e in evs])})
    assert r.status_code == 200, r.text
    events = parse_sse(r.content)
    want = [{k: v for k, v in e.items() if k != "amazon-bedrock-invocationMetrics"} for e in evs if e["type"] != "ping"]
    assert [d for _, d in events] == want
    assert any(e["type"] == "ping" for e in evs) and "amazon-bedrock-invocationMetrics" in evs[-1]


# ---------------------------------------------------------------- request fields relayed to Claude


def test_claude_conversation_fields_relayed(ac, fakes):
    """system blocks, multi-turn history, sampling fields, metadata: relayed as sent."""
    client_body = {
        "model": SONNET4_ID, "max_tokens": 300,
        "system": [{"type": "text", "text": "You are terse."}, {"type": "text", "text": "Answer in English."}],
        "messages": [user("2+2?"), {"role": "assistant", "content": "4"},
                     user([{"type": "text", "text": "And 3+3?"}])],
        "temperature": 0.3, "top_k": 40, "stop_sequences": ["STOP"], "metadata": {"user_id": "user-42"},
    }
    msg = create_raw_body(ac, client_body)
    assert msg.content[0].text == "echo: And 3+3?"
    rec = only_request(fakes, "claude")
    check_sent(rec, "claude", SONNET4_ID, SONNET4_ID, SONNET4, client_body)


def test_client_anthropic_headers_are_accepted_and_not_forwarded(ac, fakes):
    """Any `anthropic-version` is accepted; no `anthropic-*` header (Claude Code also sends
    `anthropic-dangerous-direct-browser-access`) reaches Bedrock."""
    msg = ac.messages.create(model="claude-3-haiku", max_tokens=20, messages=[user("old version")],
                             extra_headers={"anthropic-version": "1999-12-31", "anthropic-dangerous-direct-browser-access": "true",
                                            "anthropic-beta": "claude-code-20250219"})
    assert msg.content[0].text == "echo: old version"
    sent = assert_bedrock_upstream(fakes.bedrock.last(), HAIKU, "invoke")
    assert sent["anthropic_version"] == "bedrock-2023-05-31"
    assert_clean_upstream_headers(fakes.bedrock.last())


# ---------------------------------------------------------------- betas and Claude Code's first-party fields

READ_TOOL = {"name": "Read", "description": "Reads a file", "input_schema": {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "additionalProperties": False,
    "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]}}
DEFERRED_TOOL = {"name": "DeferredToolPlaceholder", "description": "Tools loaded on demand",
                 "input_schema": {"type": "object", "properties": {}}, "defer_loading": True}


def claude_code_like_body(model, max_tokens=4096, budget=2048):
    """The fields of Claude Code's first-party body that Bedrock refuses (front-doors.md §5)."""
    return {
        "model": model,
        "messages": [user([{"type": "text", "text": "<system-reminder>r</system-reminder>"},
                           {"type": "text", "text": "hello from claude code", "cache_control": {"type": "ephemeral"}}])],
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.328; cc_entrypoint=sdk-cli;"},
                   {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "tools": [READ_TOOL, DEFERRED_TOOL],
        "metadata": {"user_id": json.dumps({"device_id": "d1", "account_uuid": "", "session_id": "s1"})},
        "max_tokens": max_tokens,
        "thinking": {"budget_tokens": budget, "type": "enabled", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }


def create_raw_body(ac, body, beta_header=None, query=None):
    """messages.create with `body` as the JSON body: fields the installed SDK has parameters for
    as parameters, the others (newer SDKs dropped e.g. `temperature`, `top_k`) via extra_body."""
    known = set(inspect.signature(ac.messages.create).parameters) - {"extra_headers", "extra_query", "extra_body", "timeout"}
    kwargs = {k: v for k, v in body.items() if k in known}
    extra = {k: v for k, v in body.items() if k not in known}
    headers = {"anthropic-version": "2023-06-01"}
    if beta_header is not None:
        headers["anthropic-beta"] = beta_header
    return ac.messages.create(**kwargs, extra_body=extra or None, extra_headers=headers, extra_query=query)


def test_claude_code_betas_and_fields_to_claude4(ac, fakes):
    """Claude Code's exact beta header and first-party fields to a Claude 4 model on the
    `?beta=true` route: the call succeeds, Bedrock gets only the allowed betas (the
    advanced-tool-use beta renamed to tool-search-tool, so `defer_loading` stays), no
    `context_management`, no `thinking.display`; the rest exactly as sent."""
    body = claude_code_like_body(SONNET4_ID)
    msg = create_raw_body(ac, body, CLAUDE_CODE_BETA_HEADER, query={"beta": "true"})
    assert msg.content[-1].text == "echo: <system-reminder>r</system-reminder>\nhello from claude code"
    rec = only_request(fakes, "claude")
    assert rec.response_status == 200, rec.response_body
    sent = check_sent(rec, "claude", SONNET4_ID, SONNET4_ID, SONNET4, body, beta_headers=[CLAUDE_CODE_BETA_HEADER])
    # the same facts, spelled out
    assert sorted(sent["anthropic_beta"]) == ["interleaved-thinking-2025-05-14", "tool-search-tool-2025-10-19"]
    assert "context_management" not in sent
    assert sent["thinking"] == {"budget_tokens": 2048, "type": "enabled"}
    assert sent["tools"][1]["defer_loading"] is True
    assert sent["tools"][0]["input_schema"] == READ_TOOL["input_schema"]


def test_claude_code_without_experimental_betas(ac, fakes):
    """With CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1's header there is no tool search, so
    `defer_loading` must be removed."""
    body = claude_code_like_body(SONNET4_ID)
    create_raw_body(ac, body, CLAUDE_CODE_BETA_HEADER_NO_EXPERIMENTAL)
    rec = only_request(fakes, "claude")
    sent = check_sent(rec, "claude", SONNET4_ID, SONNET4_ID, SONNET4, body, beta_headers=[CLAUDE_CODE_BETA_HEADER_NO_EXPERIMENTAL])
    assert sent["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    assert all("defer_loading" not in t for t in sent["tools"])


def test_claude3_gets_no_betas(ac, fakes):
    body = claude_code_like_body("claude-3-haiku")
    create_raw_body(ac, body, CLAUDE_CODE_BETA_HEADER)
    rec = only_request(fakes, "claude")
    sent = check_sent(rec, "claude", "claude-3-haiku", HAIKU_ID, HAIKU, body, beta_headers=[CLAUDE_CODE_BETA_HEADER])
    assert "anthropic_beta" not in sent
    assert all("defer_loading" not in t for t in sent["tools"])


def test_beta_headers_merged_and_body_betas(stack, fakes):
    """Two `anthropic-beta` headers (spaces, empty entries) and a body `anthropic_beta` list
    are merged; unknown betas are dropped, never a 400."""
    body = {"model": SONNET4_ID, "max_tokens": 30, "messages": [user("merge betas")],
            "anthropic_beta": ["advanced-tool-use-2025-11-20", "made-up-beta-2099-01-01"]}
    raw = json.dumps(body).encode()
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=20)
    try:
        conn.putrequest("POST", "/v1/messages?beta=true")
        for k, v in [("content-type", "application/json"), ("x-api-key", CLIENT_KEY), ("anthropic-version", "2023-06-01"),
                     ("anthropic-beta", " context-1m-2025-08-07, ,claude-code-20250219"),
                     ("anthropic-beta", "interleaved-thinking-2025-05-14"), ("content-length", str(len(raw)))]:
            conn.putheader(k, v)
        conn.endheaders(raw)
        resp = conn.getresponse()
        out = resp.read()
    finally:
        conn.close()
    assert resp.status == 200, out
    headers = [" context-1m-2025-08-07, ,claude-code-20250219", "interleaved-thinking-2025-05-14"]
    rec = only_request(fakes, "claude")
    sent = check_sent(rec, "claude", SONNET4_ID, SONNET4_ID, SONNET4, body, beta_headers=headers)
    assert sorted(sent["anthropic_beta"]) == ["context-1m-2025-08-07", "interleaved-thinking-2025-05-14", "tool-search-tool-2025-10-19"]


def test_first_party_only_fields_stripped(ac, fakes):
    """Top-level keys Bedrock does not take are removed; `cache_control.scope` is removed and
    `ttl` kept (a Claude 4.5 model); `output_config` is kept."""
    body = {
        "model": SONNET45_ID, "max_tokens": 100,
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h", "scope": "global"}}],
        "messages": [user([{"type": "text", "text": "strip me", "cache_control": {"type": "ephemeral", "scope": "global"}}])],
        "tools": [dict(READ_TOOL, cache_control={"type": "ephemeral", "scope": "global"})],
        "output_config": {"effort": "low"},
        "service_tier": "auto", "speed": "fast", "container": "container_1", "mcp_servers": [], "inference_geo": "us",
        "diagnostics": {"x": 1}, "output_format": {"type": "json_schema", "schema": {"type": "object"}},
    }
    msg = create_raw_body(ac, body)
    assert msg.content[0].text == "echo: strip me"
    rec = only_request(fakes, "claude")
    assert rec.response_status == 200, rec.response_body
    sent = check_sent(rec, "claude", SONNET45_ID, SONNET45_ID, SONNET45, body)
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert sent["output_config"] == {"effort": "low"}
    for k in ("service_tier", "speed", "container", "mcp_servers", "inference_geo", "diagnostics", "output_format"):
        assert k not in sent


def test_cache_ttl_removed_before_claude_4_5(ac, fakes):
    """`cache_control.ttl` only reaches Claude 4.5 and later (front-doors.md §1.7.6); Bedrock
    refuses it on older models (the fake does too)."""
    body = {"model": SONNET4_ID, "max_tokens": 100, "messages": [user("ttl")],
            "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}
    create_raw_body(ac, body)
    rec = only_request(fakes, "claude")
    assert rec.response_status == 200, rec.response_body
    sent = check_sent(rec, "claude", SONNET4_ID, SONNET4_ID, SONNET4, body)
    assert sent["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_context_management_compaction_needs_its_beta(ac, fakes):
    """Only `compact_20260112` edits may reach Bedrock, and only together with their beta
    `compact-2026-01-12` (front-doors.md §1.7.5), which the default beta table does not pass:
    so by default even a compaction-only `context_management` is removed."""
    body = {"model": SONNET45_ID, "max_tokens": 100, "messages": [user("compact")],
            "context_management": {"edits": [{"type": "compact_20260112"}]}}
    create_raw_body(ac, body, beta_header="compact-2026-01-12")
    rec = only_request(fakes, "claude")
    assert rec.response_status == 200, rec.response_body
    sent = check_sent(rec, "claude", SONNET45_ID, SONNET45_ID, SONNET45, body, beta_headers=["compact-2026-01-12"])
    assert "context_management" not in sent and "anthropic_beta" not in sent


# ---------------------------------------------------------------- tools

WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def claude_answer(content, stop_reason, usage=(11, 7), model="claude-3-haiku-20240307"):
    return json.dumps({"id": "msg_bdrk_01Canned", "type": "message", "role": "assistant", "model": model,
                       "content": content, "stop_reason": stop_reason, "stop_sequence": None,
                       "usage": {"input_tokens": usage[0], "output_tokens": usage[1]}})


def converse_answer(content, stop_reason, usage=(11, 7)):
    return json.dumps({"output": {"message": {"role": "assistant", "content": content}}, "stopReason": stop_reason,
                       "usage": {"inputTokens": usage[0], "outputTokens": usage[1], "totalTokens": sum(usage)},
                       "metrics": {"latencyMs": 5}})


def openai_answer(message, finish, usage=(11, 7), cached=0):
    return json.dumps({"id": "chatcmpl-canned", "object": "chat.completion", "created": 1763758800, "model": "gpt-4o-mini-2024-07-18",
                       "choices": [{"index": 0, "message": dict({"role": "assistant", "refusal": None}, **message),
                                    "logprobs": None, "finish_reason": finish}],
                       "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage),
                                 "prompt_tokens_details": {"cached_tokens": cached}}})


def test_claude_tool_use_and_result_round_trip(ac, fakes):
    answer = claude_answer([{"type": "text", "text": "Checking."},
                            {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}], "tool_use")
    first = {"model": "claude-3-haiku", "max_tokens": 200, "messages": [user("Weather in Paris?")], "tools": [WEATHER],
             "tool_choice": {"type": "tool", "name": "get_weather"}}
    msg = ac.messages.create(**first, extra_headers={"x-fake-body": answer})
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    assert (msg.content[1].id, msg.content[1].name, msg.content[1].input) == ("toolu_01A", "get_weather", {"city": "Paris"})
    check_sent(fakes.bedrock.last(), "claude", "claude-3-haiku", HAIKU_ID, HAIKU, first)
    second = dict(first, tool_choice={"type": "auto"}, messages=[
        user("Weather in Paris?"),
        {"role": "assistant", "content": [{"type": "text", "text": "Checking."},
                                          {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}}]},
        user([{"type": "tool_result", "tool_use_id": "toolu_01A", "content": "21 C and sunny"}]),
    ])
    fakes.bedrock.clear()
    msg2 = ac.messages.create(**second)
    assert msg2.stop_reason == "end_turn"
    rec = only_request(fakes, "claude")
    assert rec.response_status == 200
    check_sent(rec, "claude", "claude-3-haiku", HAIKU_ID, HAIKU, second)


def test_converse_tools_translated(ac, fakes):
    answer = converse_answer([{"text": "Checking."},
                              {"toolUse": {"toolUseId": "tooluse_A1", "name": "get_weather", "input": {"city": "Paris"}}}], "tool_use")
    msg = ac.messages.create(model=NOVA_LITE_ID, max_tokens=200, messages=[user("Weather in Paris?")], tools=[WEATHER],
                             tool_choice={"type": "tool", "name": "get_weather"}, extra_headers={"x-fake-body": answer})
    assert msg.stop_reason == "tool_use"
    assert [b.type for b in msg.content] == ["text", "tool_use"]
    assert (msg.content[1].id, msg.content[1].name, msg.content[1].input) == ("tooluse_A1", "get_weather", {"city": "Paris"})
    sent = assert_bedrock_upstream(fakes.bedrock.last(), NOVA_LITE, "converse")
    assert sent["toolConfig"] == {"tools": [{"toolSpec": {"name": "get_weather", "description": "Weather for a city",
                                                          "inputSchema": {"json": WEATHER["input_schema"]}}}],
                                  "toolChoice": {"tool": {"name": "get_weather"}}}



LLAMA_ID = "meta.llama3-1-70b-instruct-v1:0"


@pytest.mark.parametrize(
    "model,path,status_ok",
    [
        pytest.param(NOVA_LITE_ID, NOVA_LITE, (None, "success"), id="nova"),
        # botocore documents toolResult.status as "only supported by Amazon Nova and Anthropic
        # Claude 3 and 4 models" (the fake refuses it elsewhere): no status for a success
        pytest.param(LLAMA_ID, "meta.llama3-1-70b-instruct-v1%3A0", (None,), id="llama"),
    ],
)
def test_converse_tool_result_round_trip(ac, fakes, model, path, status_ok):
    ac.messages.create(model=model, max_tokens=200, tools=[WEATHER], messages=[
        user("Weather in Paris?"),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tooluse_A1", "name": "get_weather", "input": {"city": "Paris"}}]},
        user([{"type": "tool_result", "tool_use_id": "tooluse_A1", "content": "21 C"}]),
    ])
    rec = only_request(fakes, "converse")
    assert rec.response_status == 200, rec.response_body
    sent = assert_bedrock_upstream(rec, path, "converse")
    assert sent["messages"][1] == {"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "tooluse_A1", "name": "get_weather", "input": {"city": "Paris"}}}]}
    (block,) = sent["messages"][2]["content"]
    result = dict(block["toolResult"])
    assert result.pop("status", None) in status_ok, block
    assert result == {"toolUseId": "tooluse_A1", "content": [{"text": "21 C"}]}, block
    assert sent["toolConfig"]["tools"][0]["toolSpec"]["name"] == "get_weather", "toolConfig must be there with tool history"


def test_converse_tool_result_error_status(ac, fakes):
    ac.messages.create(model=NOVA_LITE_ID, max_tokens=200, tools=[WEATHER], messages=[
        user("Weather in Paris?"),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "tooluse_E1", "name": "get_weather", "input": {"city": "Paris"}}]},
        user([{"type": "tool_result", "tool_use_id": "tooluse_E1", "content": "no such city", "is_error": True}]),
    ])
    sent = assert_bedrock_upstream(only_request(fakes, "converse"), NOVA_LITE, "converse")
    assert sent["messages"][2]["content"] == [{"toolResult": {"toolUseId": "tooluse_E1", "content": [{"text": "no such city"}],
                                                              "status": "error"}}]


def _converse_parallel_tools(first_index, text):
    evs = [{"event": "messageStart", "payload": {"role": "assistant"}}]
    i = first_index
    if text:
        evs += [{"event": "contentBlockDelta", "payload": {"contentBlockIndex": i, "delta": {"text": "Checking "}}},
                {"event": "contentBlockDelta", "payload": {"contentBlockIndex": i, "delta": {"text": "both."}}},
                {"event": "contentBlockStop", "payload": {"contentBlockIndex": i}}]
        i += 1
    for tool_id, city in (("tooluse_P1", "Paris"), ("tooluse_P2", "Oslo")):
        raw = json.dumps({"city": city})
        evs += [{"event": "contentBlockStart", "payload": {"contentBlockIndex": i, "start": {"toolUse": {"toolUseId": tool_id, "name": "get_weather"}}}},
                {"event": "contentBlockDelta", "payload": {"contentBlockIndex": i, "delta": {"toolUse": {"input": raw[:7]}}}},
                {"event": "contentBlockDelta", "payload": {"contentBlockIndex": i, "delta": {"toolUse": {"input": raw[7:]}}}},
                {"event": "contentBlockStop", "payload": {"contentBlockIndex": i}}]
        i += 1
    evs += [{"event": "messageStop", "payload": {"stopReason": "tool_use"}},
            {"event": "metadata", "payload": {"usage": {"inputTokens": 30, "outputTokens": 25, "totalTokens": 55}, "metrics": {"latencyMs": 9}}}]
    return evs


def _openai_parallel_tools():
    base = {"id": "chatcmpl-par", "object": "chat.completion.chunk", "created": 1763758800, "model": "gpt-4o-mini-2024-07-18"}

    def ch(delta, finish=None):
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    return [
        ch({"role": "assistant", "content": "Checking "}), ch({"content": "both."}),
        ch({"tool_calls": [{"index": 0, "id": "call_P1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
        ch({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        ch({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        ch({"tool_calls": [{"index": 1, "id": "call_P2", "type": "function", "function": {"name": "get_weather", "arguments": ""}}]}),
        ch({"tool_calls": [{"index": 1, "function": {"arguments": '{"city": "Oslo"}'}}]}),
        ch({}, "tool_calls"),
        {**base, "choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 25, "total_tokens": 55}},
        "[DONE]",
    ]


@pytest.mark.parametrize(
    "model,events,ids,text",
    [
        pytest.param(NOVA_LITE_ID, _converse_parallel_tools(0, True), ("tooluse_P1", "tooluse_P2"), True, id="converse-text-and-two-tools"),
        pytest.param(NOVA_LITE_ID, _converse_parallel_tools(1, False), ("tooluse_P1", "tooluse_P2"), False,
                     id="converse-two-tools-upstream-indexes-1-2"),
        pytest.param(GPT, _openai_parallel_tools(), ("call_P1", "call_P2"), True, id="openai-text-and-two-tools"),
    ],
)
def test_parallel_tool_calls_stream(stack, ac, fakes, model, events, ids, text):
    """Two parallel tool calls streamed by the upstream: the SDK's accumulated message has two
    tool_use blocks with complete parsed input, and the wire has dense indexes."""
    kwargs = dict(model=model, max_tokens=200, messages=[user("Weather in Paris and Oslo?")], tools=[WEATHER],
                  extra_headers={"x-fake-stream-events": json.dumps(events)})
    with ac.messages.stream(**kwargs) as s:
        final = s.get_final_message()
    want_types = (["text"] if text else []) + ["tool_use", "tool_use"]
    assert [b.type for b in final.content] == want_types, final.content
    tools = [b for b in final.content if b.type == "tool_use"]
    assert [(t.id, t.name, t.input) for t in tools] == [(ids[0], "get_weather", {"city": "Paris"}), (ids[1], "get_weather", {"city": "Oslo"})]
    if text:
        assert final.content[0].text == "Checking both."
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 25)
    # the same stream on the wire: grammar and indexes 0, 1, 2
    r = raw_post(stack, {"model": model, "max_tokens": 200, "stream": True, "messages": [user("again")], "tools": [WEATHER]},
                 headers={"x-fake-stream-events": json.dumps(events)})
    msg = assert_message_stream(parse_sse(r.content))
    assert [b["type"] for b in msg["content"]] == want_types
    assert [b["input"] for b in msg["content"] if b["type"] == "tool_use"] == [{"city": "Paris"}, {"city": "Oslo"}]


@pytest.mark.parametrize(
    "model,answer,ids",
    [
        pytest.param(NOVA_LITE_ID, converse_answer(
            [{"toolUse": {"toolUseId": "tooluse_N1", "name": "get_weather", "input": {"city": "Paris"}}},
             {"toolUse": {"toolUseId": "tooluse_N2", "name": "get_weather", "input": {"city": "Oslo"}}}], "tool_use"),
            ("tooluse_N1", "tooluse_N2"), id="converse"),
        pytest.param(GPT, openai_answer({"content": None, "tool_calls": [
            {"id": "call_N1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_N2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}]}, "tool_calls"),
            ("call_N1", "call_N2"), id="openai"),
    ],
)
def test_parallel_tool_calls_non_streamed(ac, fakes, model, answer, ids):
    msg = ac.messages.create(model=model, max_tokens=200, messages=[user("Weather in Paris and Oslo?")], tools=[WEATHER],
                             tool_choice={"type": "any"}, extra_headers={"x-fake-body": answer})
    assert [b.type for b in msg.content] == ["tool_use", "tool_use"], msg.content
    assert [(b.id, b.input) for b in msg.content] == [(ids[0], {"city": "Paris"}), (ids[1], {"city": "Oslo"})]
    assert msg.stop_reason == "tool_use"
    if model == GPT:
        sent = assert_openai_upstream(fakes.openai.last())
        assert [t["type"] for t in sent["tools"]] == ["function"]
        fn = sent["tools"][0]["function"]
        assert (fn["name"], fn.get("description"), fn["parameters"]) == ("get_weather", "Weather for a city", WEATHER["input_schema"])
        assert sent["tool_choice"] == "required"
    else:
        sent = assert_bedrock_upstream(fakes.bedrock.last(), NOVA_LITE, "converse")
        assert sent["toolConfig"]["toolChoice"] == {"any": {}}


# ---------------------------------------------------------------- stop reasons and usage of translated answers


@pytest.mark.parametrize(
    "model,answer,stop_reason",
    [
        pytest.param(NOVA_LITE_ID, converse_answer([{"text": "cut"}], "max_tokens"), "max_tokens", id="converse-max_tokens"),
        pytest.param(NOVA_LITE_ID, converse_answer([{"text": "x"}], "stop_sequence"), "stop_sequence", id="converse-stop_sequence"),
        pytest.param(NOVA_LITE_ID, converse_answer([{"text": "blocked"}], "guardrail_intervened"), "refusal", id="converse-guardrail"),
        pytest.param(NOVA_LITE_ID, converse_answer([{"text": "blocked"}], "content_filtered"), "refusal", id="converse-content-filtered"),
        pytest.param(GPT, openai_answer({"content": "cut"}, "length"), "max_tokens", id="openai-length"),
        pytest.param(GPT, openai_answer({"content": "blocked"}, "content_filter"), "refusal", id="openai-content-filter"),
        pytest.param("claude-3-haiku", claude_answer([{"type": "text", "text": "no"}], "refusal"), "refusal", id="claude-refusal"),
    ],
)
def test_stop_reasons(ac, fakes, model, answer, stop_reason):
    msg = ac.messages.create(model=model, max_tokens=20, messages=[user("hi")], extra_headers={"x-fake-body": answer})
    assert msg.stop_reason == stop_reason
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (11, 7)


def test_openai_cached_tokens_excluded_from_input(ac, fakes):
    """input_tokens = prompt_tokens − cached_tokens; cache_read_input_tokens = cached_tokens."""
    raw = ac.messages.with_raw_response.create(model=GPT, max_tokens=20, messages=[user("cached")],
                                               extra_headers={"x-fake-body": openai_answer({"content": "ok"}, "stop", (100, 7), cached=40)})
    u = raw.http_response.json()["usage"]
    assert (u["input_tokens"], u["cache_read_input_tokens"], u["output_tokens"]) == (60, 40, 7), u


# ---------------------------------------------------------------- thinking


def test_thinking_reaches_claude_and_comes_back(ac, fakes):
    answer = claude_answer([{"type": "thinking", "thinking": "Let me add.", "signature": "EqoBCkYIsignature=="},
                            {"type": "text", "text": "4"}], "end_turn", model="claude-sonnet-4-20250514")
    body = {"model": SONNET4_ID, "max_tokens": 2048, "messages": [user("2+2?")], "thinking": {"type": "enabled", "budget_tokens": 1024}}
    msg = ac.messages.create(**body, extra_headers={"x-fake-body": answer})
    assert [b.type for b in msg.content] == ["thinking", "text"]
    assert (msg.content[0].thinking, msg.content[0].signature) == ("Let me add.", "EqoBCkYIsignature==")
    sent = check_sent(fakes.bedrock.last(), "claude", SONNET4_ID, SONNET4_ID, SONNET4, body)
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    # without steering the strict fake validates it too (budget below max_tokens, no display)
    fakes.bedrock.clear()
    ac.messages.create(**body)
    assert fakes.bedrock.last().response_status == 200


def test_thinking_stream_accumulated_by_sdk(ac, fakes):
    blocks = [{"type": "thinking", "thinking": "Let me think this through.", "signature": "EqoBCkYIAxgCKkB0c2lnbmF0dXJl"},
              {"type": "text", "text": "The answer is 4."}]
    evs = claude_stream_events(blocks)
    with ac.messages.stream(model=SONNET4_ID, max_tokens=2048, messages=[user("2+2?")], thinking={"type": "enabled", "budget_tokens": 1024},
                            extra_headers={"x-fake-stream-events": json.dumps([{"chunk": e} for e in evs])}) as s:
        kinds = [ev.type for ev in s]
        final = s.get_final_message()
    assert "thinking" in kinds and "signature" in kinds, kinds
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Let me think this through."
    assert final.content[0].signature == "EqoBCkYIAxgCKkB0c2lnbmF0dXJl"
    assert final.content[1].text == "The answer is 4."
    assert (final.usage.input_tokens, final.usage.output_tokens) == (30, 25)
    sent = assert_bedrock_upstream(fakes.bedrock.last(), SONNET4, "invoke-with-response-stream")
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_claude_tool_use_stream_with_thinking(ac, fakes):
    blocks = [{"type": "thinking", "thinking": "Need the file.", "signature": "c2ln"},
              {"type": "tool_use", "id": "toolu_01Ab", "name": "Read", "input": {"file_path": "/src/a.rs"}}]
    evs = claude_stream_events(blocks, stop_reason="tool_use")
    with ac.messages.stream(model=SONNET4_ID, max_tokens=2048, messages=[user("read it")], tools=[READ_TOOL],
                            thinking={"type": "enabled", "budget_tokens": 1024},
                            extra_headers={"x-fake-stream-events": json.dumps([{"chunk": e} for e in evs])}) as s:
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "tool_use"]
    assert (final.content[1].id, final.content[1].input) == ("toolu_01Ab", {"file_path": "/src/a.rs"})
    assert final.stop_reason == "tool_use"


# ---------------------------------------------------------------- images


def test_base64_image_reaches_claude_intact(ac, fakes):
    body = {"model": "claude-3-haiku", "max_tokens": 50, "messages": [user([
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "What is in this picture?"}])]}
    msg = ac.messages.create(**body)
    assert msg.content[0].text == "echo: What is in this picture?"
    check_sent(only_request(fakes, "claude"), "claude", "claude-3-haiku", HAIKU_ID, HAIKU, body)


def test_base64_image_to_converse(ac, fakes):
    ac.messages.create(model=NOVA_LITE_ID, max_tokens=50, messages=[user([
        {"type": "text", "text": "What is this?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}])])
    sent = assert_bedrock_upstream(only_request(fakes, "converse"), NOVA_LITE, "converse")
    assert sent["messages"][0]["content"] == [{"text": "What is this?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]


@pytest.mark.parametrize("model", ["claude-3-haiku", NOVA_LITE_ID])
def test_url_image_refused_for_bedrock_models(ac, fakes, model):
    with pytest.raises(anthropic.BadRequestError) as ei:
        ac.messages.create(model=model, max_tokens=50, messages=[user([
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}])])
    err = assert_error_body(ei.value.body, "invalid_request_error")
    param = "messages[0].content[1].source"
    assert err.get("param") == param or param in err["message"], err
    assert "url" in err["message"].lower(), err
    assert fakes.upstream_requests() == []


# ---------------------------------------------------------------- count_tokens


@pytest.mark.parametrize(
    "model,resolved,foundation",
    [
        pytest.param(SONNET4_ID, SONNET4_ID, "anthropic.claude-sonnet-4-20250514-v1%3A0", id="us-profile"),
        pytest.param("claude-sonnet-4", SONNET4_ID, "anthropic.claude-sonnet-4-20250514-v1%3A0", id="alias"),
        pytest.param("global.anthropic.claude-sonnet-4-5-20250929-v1:0", "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
                     "anthropic.claude-sonnet-4-5-20250929-v1%3A0", id="global-profile"),
        pytest.param("arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0",
                     SONNET4_ID, "anthropic.claude-sonnet-4-20250514-v1%3A0", id="profile-arn"),
        pytest.param("anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0",
                     "anthropic.claude-3-5-haiku-20241022-v1%3A0", id="claude35-foundation-id"),
    ],
)
def test_count_tokens_claude(ac, fakes, model, resolved, foundation):
    body = {"model": model, "system": "Be brief.", "messages": [user("count these words please")]}
    r = ac.messages.count_tokens(**body)
    assert r.input_tokens == count_tokens("Be brief. count these words please")
    rec = only_request(fakes, "claude")
    assert rec.response_status == 200, rec.response_body
    assert_bedrock_upstream(rec, foundation, "count-tokens")
    inner = count_tokens_inner(rec)
    assert isinstance(inner.get("max_tokens"), int) and inner["max_tokens"] >= 1, inner
    assert_relayed_body({k: v for k, v in inner.items() if k != "max_tokens"}, body, resolved)


def test_count_tokens_claude_code_style(ac, fakes):
    """What Claude Code sends to count_tokens: the beta route, its beta header, tools with
    defer_loading, thinking with display. The inner InvokeModel body must still be one Bedrock
    takes: filtered betas, no display, and a max_tokens above the thinking budget."""
    body = {"model": SONNET4_ID, "messages": [user("foo")], "tools": [READ_TOOL, DEFERRED_TOOL],
            "thinking": {"type": "enabled", "budget_tokens": 1024, "display": "omitted"}}
    r = ac.messages.count_tokens(**body, extra_headers={"anthropic-beta": CLAUDE_CODE_BETA_HEADER}, extra_query={"beta": "true"})
    assert r.input_tokens == count_tokens("foo")
    rec = only_request(fakes, "claude")
    assert rec.response_status == 200, rec.response_body
    assert_bedrock_upstream(rec, "anthropic.claude-sonnet-4-20250514-v1%3A0", "count-tokens")
    inner = count_tokens_inner(rec)
    assert inner["max_tokens"] > 1024, "Bedrock refuses max_tokens <= thinking.budget_tokens"
    assert_relayed_body({k: v for k, v in inner.items() if k != "max_tokens"}, body, SONNET4_ID, [CLAUDE_CODE_BETA_HEADER])
    assert sorted(inner["anthropic_beta"]) == ["interleaved-thinking-2025-05-14", "tool-search-tool-2025-10-19"]


@pytest.mark.parametrize("model", [NOVA_LITE_ID, GPT, "meta.llama3-1-8b-instruct-v1:0"])
def test_count_tokens_non_claude_is_not_found(ac, fakes, model):
    with pytest.raises(anthropic.NotFoundError) as ei:
        ac.messages.count_tokens(model=model, messages=[user("count me")])
    err = assert_error_body(ei.value.body, "not_found_error")
    assert re.search(r"count[_ ]?tokens|token count", err["message"], re.I), err
    assert fakes.upstream_requests() == []


# ---------------------------------------------------------------- auth


def test_bearer_auth_token(stack, fakes):
    c = anthropic.Anthropic(base_url=stack.url, auth_token=CLIENT_KEY, max_retries=0, timeout=20)
    msg = c.messages.create(model="claude-3-haiku", max_tokens=20, messages=[user("bearer")])
    assert msg.content[0].text == "echo: bearer"
    rec = only_request(fakes, "claude")
    assert_bedrock_upstream(rec, HAIKU, "invoke")  # SigV4 in authorization, the client's Bearer gone


def test_x_api_key_auth(ac, fakes):
    msg = ac.messages.create(model=GPT, max_tokens=20, messages=[user("x-api-key")],
                             extra_headers={"Authorization": anthropic.Omit(), "x-api-key": CLIENT_KEY})
    assert msg.content[0].text == "echo: x-api-key"
    assert_openai_upstream(only_request(fakes, "openai"))


@pytest.mark.parametrize("how", ["bearer", "x-api-key", "none"])
def test_wrong_or_missing_key_is_authentication_error(ac, fakes, how):
    headers = {"bearer": {"Authorization": "Bearer ug-wrong-key"},
               "x-api-key": {"Authorization": anthropic.Omit(), "x-api-key": "ug-wrong-key"},
               "none": {"Authorization": anthropic.Omit()}}[how]
    with pytest.raises(anthropic.AuthenticationError) as ei:
        ac.messages.create(model="claude-3-haiku", max_tokens=20, messages=[user("x")], extra_headers=headers)
    assert ei.value.status_code == 401
    assert_error_body(ei.value.body, "authentication_error")
    assert "ug-wrong-key" not in json.dumps(ei.value.body)
    assert fakes.upstream_requests() == []


# ---------------------------------------------------------------- local validation (400) and routing (404)


@pytest.mark.parametrize(
    "body,field",
    [
        pytest.param(b'{"model": "claude-3-haiku", "max_tokens": 5, "messages": [', None, id="bad-json"),
        pytest.param({"max_tokens": 5, "messages": [user("x")]}, "model", id="missing-model"),
        pytest.param({"model": "claude-3-haiku", "messages": [user("x")]}, "max_tokens", id="missing-max_tokens"),
        pytest.param({"model": "claude-3-haiku", "max_tokens": 5}, "messages", id="missing-messages"),
        pytest.param({"model": "claude-3-haiku", "max_tokens": 5, "messages": []}, "messages", id="empty-messages"),
        pytest.param({"model": "claude-3-haiku", "max_tokens": 5, "messages": [user("x")], "temperature": "hot"}, "temperature",
                     id="temperature-string"),
        pytest.param({"model": NOVA_LITE_ID, "max_tokens": "lots", "messages": [user("x")]}, "max_tokens", id="max_tokens-string"),
        pytest.param({"model": GPT, "max_tokens": 5, "messages": [{"role": "wizard", "content": "x"}]}, "role", id="bad-role"),
    ],
)
def test_invalid_request_is_400(stack, fakes, body, field):
    r = raw_post(stack, body)
    err = assert_error_envelope(r.status_code, r.headers, r.content, 400, "invalid_request_error")
    if field is not None:
        assert field in err["message"] or field in str(err.get("param")), err
    assert fakes.upstream_requests() == []


def test_sdk_raises_bad_request_for_empty_messages(ac, fakes):
    with pytest.raises(anthropic.BadRequestError) as ei:
        ac.messages.create(model="claude-3-haiku", max_tokens=5, messages=[])
    assert_error_body(ei.value.body, "invalid_request_error")


def test_unknown_model_is_not_found(ac, fakes):
    with pytest.raises(anthropic.NotFoundError) as ei:
        ac.messages.create(model="no-such-model-9000", max_tokens=5, messages=[user("x")])
    err = assert_error_body(ei.value.body, "not_found_error")
    assert "no-such-model-9000" in err["message"]
    assert fakes.upstream_requests() == []


# ---------------------------------------------------------------- upstream errors → Anthropic errors

BEDROCK_ERRORS = [
    # (exception, upstream status, upstream message, client status, error.type, SDK class, message kept verbatim)
    pytest.param("ValidationException", 400, "Malformed input request: #: extraneous key [foo] is not permitted, please reformat your input and try again.",
                 400, "invalid_request_error", anthropic.BadRequestError, True, id="validation"),
    pytest.param("ValidationException", 400, "prompt is too long: 215000 tokens > 200000 maximum",
                 400, "invalid_request_error", anthropic.BadRequestError, True, id="prompt-is-too-long"),
    pytest.param("ValidationException", 400, "Input is too long for requested model.",
                 400, "invalid_request_error", anthropic.BadRequestError, True, id="input-too-long"),
    pytest.param("AccessDeniedException", 403, "You don't have access to the model with the specified model ID.",
                 403, "permission_error", anthropic.PermissionDeniedError, False, id="access-denied"),
    pytest.param("ResourceNotFoundException", 404, "Could not resolve the foundation model from the provided model identifier.",
                 404, "not_found_error", anthropic.NotFoundError, False, id="resource-not-found"),
    pytest.param("ThrottlingException", 429, "Too many requests, please wait before trying again.",
                 429, "rate_limit_error", anthropic.RateLimitError, False, id="throttling"),
    pytest.param("ServiceQuotaExceededException", 400, "Your request exceeds the service quota for your account.",
                 429, "rate_limit_error", anthropic.RateLimitError, False, id="service-quota"),
    pytest.param("InternalServerException", 500, "The server encountered an internal error while processing the request.",
                 500, "api_error", anthropic.InternalServerError, False, id="internal-server"),
    pytest.param("ModelErrorException", 424, "The model returned an error.",
                 500, "api_error", anthropic.InternalServerError, False, id="model-error"),
    pytest.param("ServiceUnavailableException", 503, "Bedrock is unable to process your request.",
                 529, "overloaded_error", OverloadedError, False, id="service-unavailable"),
    pytest.param("ModelNotReadyException", 429, "Model is not ready to serve inference requests.",
                 529, "overloaded_error", OverloadedError, False, id="model-not-ready"),
    pytest.param("ModelTimeoutException", 408, "Model has timed out in processing the request.",
                 504, "timeout_error", GatewayTimeoutError, False, id="model-timeout"),
]


def steer_error(exception, status, message):
    return {"x-fake-status": str(status), "x-fake-error-type": exception, "x-fake-body": json.dumps({"message": message})}


@pytest.mark.parametrize("exception,up_status,up_message,status,type_,cls,verbatim", BEDROCK_ERRORS)
def test_bedrock_exceptions_to_claude(ac, fakes, exception, up_status, up_message, status, type_, cls, verbatim):
    with pytest.raises(cls) as ei:
        ac.messages.create(model="claude-3-haiku", max_tokens=20, messages=[user("x")],
                           extra_headers=steer_error(exception, up_status, up_message))
    e = ei.value
    assert e.status_code == status
    err = assert_error_body(e.body, type_)
    if verbatim:
        assert up_message in err["message"], err
    if status == 429:
        assert "retry-after" in e.response.headers, e.response.headers
    rec = fakes.bedrock.last()
    assert rec.sigv4.ok and rec.response_status == up_status


@pytest.mark.parametrize(
    "model,exception,up_status,status,type_,cls",
    [
        pytest.param("claude-3-haiku", "ThrottlingException", 429, 429, "rate_limit_error", anthropic.RateLimitError, id="claude-stream-throttling"),
        pytest.param(NOVA_LITE_ID, "ServiceUnavailableException", 503, 529, "overloaded_error", OverloadedError, id="converse-stream-unavailable"),
        pytest.param(NOVA_LITE_ID, "ValidationException", 400, 400, "invalid_request_error", anthropic.BadRequestError, id="converse-validation"),
        pytest.param(GPT, None, 429, 429, "rate_limit_error", anthropic.RateLimitError, id="openai-429"),
        pytest.param(GPT, None, 500, 500, "api_error", anthropic.InternalServerError, id="openai-500"),
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_upstream_errors_other_models_and_streams(ac, fakes, model, exception, up_status, status, type_, cls, stream):
    """An error before any stream byte is an HTTP error (not SSE) for stream requests too."""
    headers = {"x-fake-status": str(up_status)}
    if exception:
        headers["x-fake-error-type"] = exception
    with pytest.raises(cls) as ei:
        if stream:
            with ac.messages.stream(model=model, max_tokens=20, messages=[user("x")], extra_headers=headers) as s:
                s.get_final_message()
        else:
            ac.messages.create(model=model, max_tokens=20, messages=[user("x")], extra_headers=headers)
    assert ei.value.status_code == status
    assert_error_body(ei.value.body, type_)


@pytest.mark.parametrize(
    "kind,secret,token",
    [
        pytest.param("bad-signature", "the-secret-bedrock-expects", DEFAULT_TOKEN, id="invalid-signature"),
        pytest.param("unknown-key", None, None, id="unrecognized-client"),
    ],
)
@pytest.mark.parametrize("operation", ["create", "count_tokens"])
def test_gateway_aws_credentials_rejected_is_5xx_not_401(ac, fakes, kind, secret, token, operation):
    """Bedrock refusing the gateway's own credentials is the gateway's problem: a 5xx
    api_error (Claude Code would otherwise ask the user to log in again), never 401, and
    nothing of the credentials in the answer."""
    if kind == "unknown-key":
        fakes.bedrock.set_credentials("AKIDSOMEONEELSE0000", "x", None)
    else:
        fakes.bedrock.set_credentials(DEFAULT_ACCESS_KEY, secret, token)
    with pytest.raises(anthropic.InternalServerError) as ei:
        if operation == "create":
            ac.messages.create(model=SONNET4_ID, max_tokens=20, messages=[user("x")])
        else:
            ac.messages.count_tokens(model=SONNET4_ID, messages=[user("x")])
    e = ei.value
    assert 500 <= e.status_code <= 599 and e.status_code != 529, e.status_code
    assert_error_body(e.body, "api_error")
    text = e.response.text
    assert DEFAULT_SECRET not in text and DEFAULT_TOKEN not in text
    assert fakes.bedrock.last().response_status == 403


def test_gateway_openai_key_rejected_is_5xx_not_401(ac, fakes):
    fakes.openai.api_key = "sk-something-else"
    with pytest.raises(anthropic.InternalServerError) as ei:
        ac.messages.create(model=GPT, max_tokens=20, messages=[user("x")])
    assert 500 <= ei.value.status_code <= 599
    assert_error_body(ei.value.body, "api_error")
    assert "sk-system-upstream" not in ei.value.response.text
    assert fakes.openai.last().response_status == 401


# ---------------------------------------------------------------- mid-stream failures


def _claude_partial():
    return [{"chunk": e} for e in claude_stream_events([{"type": "text", "text": "partial answer"}])[:3]]


def _converse_partial():
    return [{"event": "messageStart", "payload": {"role": "assistant"}},
            {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": "partial "}}}]


MID_STREAM = [
    # (model, upstream events, error.type, message part, the text the client got before the error)
    pytest.param("claude-3-haiku", _claude_partial() + [{"exception": "throttlingException", "payload": {"message": "Too many requests, please wait before trying again."}}],
                 "rate_limit_error", "Too many requests", "partial", id="claude-throttling-frame"),
    pytest.param("claude-3-haiku", _claude_partial() + [{"exception": "internalServerException", "payload": {"message": "Internal failure."}}],
                 "api_error", "Internal failure", "partial", id="claude-internal-frame"),
    pytest.param(NOVA_LITE_ID, _converse_partial() + [{"exception": "modelStreamErrorException", "payload": {"message": "Model stream broke.", "originalStatusCode": 500}}],
                 "api_error", "Model stream broke", "partial ", id="converse-model-stream-error"),
    pytest.param(NOVA_LITE_ID, _converse_partial() + [{"exception": "serviceUnavailableException", "payload": {"message": "Bedrock is unable to process your request."}}],
                 "overloaded_error", None, "partial ", id="converse-unavailable-frame"),
    pytest.param("claude-3-haiku", _claude_partial(), None, None, "partial", id="claude-truncated"),
    pytest.param(NOVA_LITE_ID, _converse_partial(), None, None, "partial ", id="converse-truncated"),
]


@pytest.mark.parametrize("model,events,type_,message,partial", MID_STREAM)
def test_mid_stream_failure_is_an_error_event(stack, ac, fakes, model, events, type_, message, partial):
    """Mid-stream failures (an exception frame, or a stream that ends without message_stop)
    become `event: error` + an error object, then the end: the SDK raises while iterating
    instead of returning a truncated message."""
    headers = {"x-fake-stream-events": json.dumps(events)}
    got = []
    with pytest.raises(anthropic.APIStatusError) as ei:
        with ac.messages.stream(model=model, max_tokens=50, messages=[user("x")], extra_headers=headers) as s:
            for ev in s:
                if ev.type == "text":
                    got.append(ev.text)
    body = ei.value.body
    assert_error_body(body, type_)
    if message:
        assert message in body["error"]["message"], body
    assert "".join(got) == partial, "what arrived before the failure is delivered"
    # on the wire: the partial events, then `event: error`, then the end
    r = raw_post(stack, {"model": model, "max_tokens": 50, "stream": True, "messages": [user("x")]}, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    err = stream_error_event(parse_sse(r.content))
    if type_:
        assert err["type"] == type_, err


def test_stream_reset_never_ends_silently(stack, fakes):
    """Bedrock resets the connection mid-stream: the client sees a cut connection or an error
    event — never a stream that ends cleanly without message_stop."""
    h = {"content-type": "application/json", "x-api-key": CLIENT_KEY, "x-fake-reset": "300"}
    body = json.dumps({"model": "claude-3-haiku", "max_tokens": 200, "stream": True, "messages": [user("a long answer " * 30)]})
    conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=15)
    try:
        conn.request("POST", "/v1/messages", body=body, headers=h)
        resp = conn.getresponse()
        assert resp.status == 200
        try:
            raw, cut = resp.read(), False
        except http.client.IncompleteRead as e:
            raw, cut = e.partial, True
    finally:
        conn.close()
    assert fakes.bedrock.last().response_status == 200
    if not cut:
        stream_error_event(parse_sse(raw))
    else:
        assert b"event: message_stop" not in raw


# ---------------------------------------------------------------- Envoy's own replies on the Messages door


def test_upstream_reset_before_answer_is_anthropic_502(ac, fakes):
    """A translated (buffered) answer cut by an upstream reset: Envoy's own 502 reply, in
    Anthropic's shape on this door."""
    with pytest.raises(anthropic.InternalServerError) as ei:
        ac.messages.create(model=NOVA_LITE_ID, max_tokens=20, messages=[user("x" * 2000)], extra_headers={"x-fake-reset": "true"})
    e = ei.value
    assert e.status_code == 502
    assert e.response.headers["content-type"].startswith("application/json")
    assert_error_body(e.body, "api_error")
    assert fakes.bedrock.last().response_status == 200


# ---------------------------------------------------------------- access log and metrics


def _san(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", model_id)


def _counter(stats: dict, name: str) -> int:
    v = stats.get(name, "0")
    return int(v) if v.isdigit() else 0


def _access_log_line(stack, request_id: str, wait_s: float = 15.0) -> dict:
    """The JSON access-log line of one request (Envoy flushes stdout access logs every few seconds)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for line in stack.log().splitlines():
            if request_id in line and line.startswith("{"):
                entry = json.loads(line)
                if entry.get("client_request_id") == request_id:
                    return entry
        time.sleep(0.2)
    raise AssertionError(f"no access-log line for request {request_id} within {wait_s}s")


@pytest.mark.parametrize(
    "model,provider,resolved,cluster",
    [
        pytest.param("claude-3-haiku", "bedrock", HAIKU_ID, "bedrock", id="claude"),
        pytest.param(NOVA_LITE_ID, "bedrock", NOVA_LITE_ID, "bedrock", id="converse"),
        pytest.param(GPT, "openai", GPT, "openai", id="openai"),
    ],
)
def test_access_log_and_metrics_count_messages_traffic(stack, ac, fakes, model, provider, resolved, cluster):
    before = stack.admin_stats("wasmcustom.unigate")
    rid = f"messages-log-{uuid.uuid4().hex}"
    msg = ac.messages.create(model=model, max_tokens=20, messages=[user("log me")], extra_headers={"x-client-request-id": rid})
    rec = only_request(fakes, "openai" if provider == "openai" else "claude")
    n_in, n_out = upstream_usage(rec)
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (n_in, n_out)
    after = stack.admin_stats("wasmcustom.unigate")
    san = _san(resolved)
    assert _counter(after, "wasmcustom.unigate.requests_total") - _counter(before, "wasmcustom.unigate.requests_total") == 1
    assert _counter(after, f"wasmcustom.unigate.tokens.{san}.input") - _counter(before, f"wasmcustom.unigate.tokens.{san}.input") == n_in
    assert _counter(after, f"wasmcustom.unigate.tokens.{san}.output") - _counter(before, f"wasmcustom.unigate.tokens.{san}.output") == n_out
    status_re = re.compile(rf"^wasmcustom\.unigate\.[a-z_]+\.{provider}\.{re.escape(san)}\.200$")
    grown = {k: _counter(after, k) - _counter(before, k) for k in after if status_re.match(k)}
    assert sum(grown.values()) == 1, f"one finished request by provider/model/status: {grown}"
    entry = _access_log_line(stack, rid)
    assert entry["status"] == 200 and entry["method"] == "POST", entry
    assert (entry["provider"], entry["model"], entry["upstream_cluster"]) == (provider, resolved, cluster), entry
    assert entry["key"] == "key-" + hashlib.sha256(CLIENT_KEY.encode()).hexdigest()[:8], entry
    assert (int(entry["prompt_tokens"]), int(entry["completion_tokens"])) == (n_in, n_out), entry
    assert int(entry["total_tokens"]) == n_in + n_out, entry


def test_streamed_messages_usage_in_access_log(stack, ac, fakes):
    rid = f"messages-stream-log-{uuid.uuid4().hex}"
    with ac.messages.stream(model="claude-3-haiku", max_tokens=20, messages=[user("stream log")], extra_headers={"x-client-request-id": rid}) as s:
        s.get_final_message()
    n_in, n_out = streamed_usage(fakes.bedrock.last())
    entry = _access_log_line(stack, rid)
    assert (entry["provider"], entry["model"], entry["status"]) == ("bedrock", HAIKU_ID, 200), entry
    assert (int(entry["prompt_tokens"]), int(entry["completion_tokens"])) == (n_in, n_out), entry


# ---------------------------------------------------------------- keys, limits, body cap, timeout (own stack)

FULL_KEY = "ug-messages-full-5c1a"
CLAUDE_ONLY_KEY = "ug-messages-claude-only-77e0"
RPM_ONE_KEY = "ug-messages-rpm-one-0b9d"
CAP = 4096


@pytest.fixture(scope="module")
def limits_stack(start_stack, fakes, tmp_path_factory):
    path = tmp_path_factory.mktemp("messages-keys") / "keys.json"
    path.write_text(json.dumps([
        {"key": FULL_KEY, "name": "full"},
        {"key": CLAUDE_ONLY_KEY, "name": "claude-only", "models": ["claude-*"]},
        {"key": RPM_ONE_KEY, "name": "rpm-one", "rpm": 1},
    ]))
    return start_stack("messages-limits", provider_env(fakes, API_KEY=None, API_KEYS_FILE=str(path),
                                                       MAX_REQUEST_BYTES=str(CAP), UPSTREAM_TIMEOUT_SECONDS="2"))


def limits_client(s, key):
    return anthropic.Anthropic(base_url=s.url, api_key=key, max_retries=0, timeout=20)


def test_key_not_allowed_model_is_permission_error(limits_stack, fakes):
    c = limits_client(limits_stack, CLAUDE_ONLY_KEY)
    assert c.messages.create(model="claude-3-haiku", max_tokens=20, messages=[user("hi")]).content[0].text == "echo: hi"
    with pytest.raises(anthropic.PermissionDeniedError) as ei:
        c.messages.create(model=GPT, max_tokens=20, messages=[user("hi")])
    assert ei.value.status_code == 403
    assert_error_body(ei.value.body, "permission_error")
    assert fakes.openai.requests == []


def _wait_for_fresh_minute():
    """Limits use fixed one-minute windows: do not straddle a minute boundary."""
    now = datetime.datetime.now()
    if now.second >= 50:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.2)


def test_key_rpm_limit_is_rate_limit_error(limits_stack, fakes):
    c = limits_client(limits_stack, RPM_ONE_KEY)
    _wait_for_fresh_minute()
    c.messages.create(model=GPT, max_tokens=20, messages=[user("one")])
    with pytest.raises(anthropic.RateLimitError) as ei:
        c.messages.create(model=GPT, max_tokens=20, messages=[user("two")])
    assert ei.value.status_code == 429
    assert_error_body(ei.value.body, "rate_limit_error")
    retry = ei.value.response.headers.get("retry-after")
    assert retry is not None and 0 < int(retry) <= 60, retry
    assert len(fakes.openai.requests) == 1, "the refused request never reached the upstream"


def test_body_over_the_cap_is_request_too_large(limits_stack, fakes):
    c = limits_client(limits_stack, FULL_KEY)
    ok = c.messages.create(model="claude-3-haiku", max_tokens=20, messages=[user("a" * (CAP - 400))])
    assert ok.content[0].text.startswith("echo: a")
    with pytest.raises(ContentTooLargeError) as ei:
        c.messages.create(model="claude-3-haiku", max_tokens=20, messages=[user("a" * (CAP + 100))])
    assert ei.value.status_code == 413
    assert_error_body(ei.value.body, "request_too_large")
    assert len(fakes.bedrock.requests) == 1


def test_upstream_timeout_is_anthropic_504(limits_stack, fakes):
    c = limits_client(limits_stack, FULL_KEY)
    with pytest.raises(GatewayTimeoutError) as ei:
        c.messages.create(model="claude-3-haiku", max_tokens=20, messages=[user("slow")], extra_headers={"x-fake-delay-ms": "3500"})
    assert ei.value.status_code == 504
    assert_error_body(ei.value.body, "timeout_error")
    assert len(fakes.bedrock.requests) == 1
