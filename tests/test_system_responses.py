"""The Responses door through the full stack (`unigate serve`: Envoy + unigate.wasm + sidecar):
the official openai SDK's `client.responses` (created and streamed, Claude and a Converse
family, a function-call round trip, structured output, errors), OpenAI models relayed to a
Responses upstream as sent, and the real Codex CLI completing `codex exec` with a scripted
Bedrock behind the gateway.
"""

from __future__ import annotations

import json

import openai
import pytest

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from fakes.anthropic import text_turn, tool_use_turn
from fakes.bedrock_scripted import ScriptedBedrock
from fakes.responses import ScriptedResponses
from fakes.responses import function_call_turn as responses_call_turn
from fakes.responses import text_turn as responses_text_turn
from real_clients import ClientNotInstalled, codex_bin, run_codex
from system_harness import CLIENT_KEY, make_client

CLAUDE = "us.anthropic.claude-sonnet-4-20250514-v1:0"
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def assert_usage(u):
    for v in (u.input_tokens, u.output_tokens, u.total_tokens, u.input_tokens_details.cached_tokens):
        assert isinstance(v, int)
    assert u.total_tokens == u.input_tokens + u.output_tokens


# ---------------------------------------------------------------- Bedrock models (FakeBedrock echoes)


@pytest.mark.parametrize("model,op", [("claude-3-haiku", "invoke"), ("amazon.nova-pro-v1:0", "converse")])
def test_create_text_with_instructions(client, fakes, model, op):
    r = client.responses.create(model=model, instructions="Be brief.", input="Say hi.")
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert r.output_text == "echo: Say hi."
    assert_usage(r.usage)
    rec = fakes.bedrock.last()
    assert rec.sigv4.ok and rec.path.endswith("/" + op)
    body = json.loads(rec.body)
    system = body["system"] if isinstance(body["system"], str) else body["system"][0]["text"]
    assert system == "Be brief."


@pytest.mark.parametrize("model,op", [("claude-3-haiku", "invoke-with-response-stream"), ("amazon.nova-pro-v1:0", "converse-stream")])
def test_stream_text(client, fakes, model, op):
    with client.responses.stream(model=model, input="Stream it.") as s:
        events = list(s)
        final = s.get_final_response()
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.output_text == "echo: Stream it."
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == final.output_text
    assert_usage(final.usage)
    assert fakes.bedrock.last().path.endswith("/" + op)


def claude_two_calls():
    chunk = lambda e: {"chunk": e}  # noqa: E731
    return [chunk(e) for e in [
        {"type": "message_start", "message": {"id": "msg_bdrk_1", "type": "message", "role": "assistant", "model": "claude",
                                              "content": [], "stop_reason": None, "usage": {"input_tokens": 20, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {}}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Po"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "rto\"}"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_B", "name": "get_weather", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\": \"Oslo\"}"}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}},
        {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 20, "outputTokenCount": 30}},
    ]]


def test_streamed_parallel_calls_are_two_items(client):
    with client.responses.stream(model="claude-3-haiku", input="Porto and Oslo?", tools=TOOLS,
                                 extra_headers={"x-fake-stream-events": json.dumps(claude_two_calls())}) as s:
        events = list(s)
        final = s.get_final_response()
    added = [e.output_index for e in events if e.type == "response.output_item.added"]
    assert added == [0, 1]
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert [json.loads(e.arguments) for e in done] == [{"city": "Porto"}, {"city": "Oslo"}]
    assert [(o.type, o.call_id) for o in final.output] == [("function_call", "toolu_A"), ("function_call", "toolu_B")]


def test_function_call_round_trip(client, fakes):
    first = client.responses.create(model="claude-3-haiku", input="Weather?", tools=TOOLS)
    # The echo fake answers text; a round trip is the history the SDK sends back.
    call = {"type": "function_call", "call_id": "toolu_1", "name": "get_weather", "arguments": "{\"city\":\"Porto\"}"}
    r = client.responses.create(model="claude-3-haiku", tools=TOOLS, input=[
        {"role": "user", "content": "Weather?"}, *[o.model_dump(exclude_none=True) for o in first.output], call,
        {"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"},
        {"role": "user", "content": "So?"},
    ])
    assert r.status == "completed"
    body = json.loads(fakes.bedrock.last().body)
    assert body["messages"][-2]["content"][-1] == {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Porto"}}
    assert body["messages"][-1]["content"][0]["type"] == "tool_result"


def test_structured_output_forces_the_schema(client, fakes):
    client.responses.create(model="amazon.nova-pro-v1:0", input="A colour?",
                            text={"format": {"type": "json_schema", "name": "c", "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}})
    body = json.loads(fakes.bedrock.last().body)
    assert body["toolConfig"]["toolChoice"] == {"tool": {"name": "unigate_structured_output"}}


def test_errors_are_openai_errors(client, stack):
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=CLAUDE, input="x", previous_response_id="resp_1")
    assert e.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x")
    with pytest.raises(openai.AuthenticationError):
        make_client(stack, key="wrong").responses.create(model=CLAUDE, input="x")
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model=CLAUDE, input=[{"role": "user", "content": [
            {"type": "input_image", "image_url": "https://example.com/a.png"}]}])
    assert e.value.body["param"] == "input[0].content[0].image_url"


# ---------------------------------------------------------------- OpenAI models: relayed


@pytest.fixture(scope="module")
def relay_stack(start_stack):
    fake = ScriptedResponses(api_key="sk-upstream-responses").start()
    s = start_stack("responses-relay", {"API_KEY": CLIENT_KEY, "OPENAI_API_KEY": "sk-upstream-responses",
                                        "OPENAI_BASE_URL": fake.base_url})
    yield s, fake
    fake.stop()


def test_openai_models_are_relayed_as_sent(relay_stack):
    stack, fake = relay_stack
    fake.script([responses_call_turn("get_weather", {"city": "Porto"}), responses_text_turn("Relayed.")])
    c = make_client(stack)
    r = c.responses.create(model="gpt-4o", input="Weather?", tools=TOOLS + [{"type": "web_search"}])
    assert r.output[0].type == "function_call" and r.id.startswith("resp_fake")
    sent = json.loads(fake.turn_requests[0].body)
    assert sent["tools"][-1] == {"type": "web_search"}
    with c.responses.stream(model="gpt-4o", input="Again") as s:
        list(s)
        assert s.get_final_response().output_text == "Relayed."


# ---------------------------------------------------------------- the Codex CLI


@pytest.fixture(scope="module")
def codex():
    try:
        return codex_bin()
    except ClientNotInstalled as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def codex_stack(start_stack):
    fb = ScriptedBedrock(region="us-east-1").start()
    s = start_stack("codex", {"API_KEY": CLIENT_KEY, "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": fb.url,
                              "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": DEFAULT_SECRET,
                              "AWS_SESSION_TOKEN": DEFAULT_TOKEN})
    yield s, fb
    fb.stop()


def test_codex_exec_completes_a_tool_round_trip_on_bedrock(codex, codex_stack, tmp_path):
    stack, fb = codex_stack
    fb.script([tool_use_turn("exec_command", {"cmd": "echo hi-from-codex"}, thinking="Run it first."),
               text_turn("All done: hi-from-codex.")])
    run = run_codex(stack.base_url, CLIENT_KEY, CLAUDE, "Run `echo hi-from-codex` and report.", tmp_path, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "All done: hi-from-codex." in run.stdout
    first, second = (json.loads(r.body) for r in fb.turn_requests)
    assert first["max_tokens"] == 32000, "Codex sends no limit: Claude's own"
    assert not any(t["name"] == "web_search" for t in first["tools"])
    # The thinking came back sealed in the reasoning item, before the tool call it preceded.
    assert [b["type"] for b in second["messages"][-2]["content"]] == ["thinking", "tool_use"]
    result = second["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and "hi-from-codex" in json.dumps(result)
