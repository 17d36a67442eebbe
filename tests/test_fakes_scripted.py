"""The scripted fakes (fakes.anthropic, fakes.responses, fakes.bedrock_scripted) checked with
the official SDKs as strict consumers, so a fake that drifts from the wire format fails here
rather than as a puzzling CLI failure: anthropic's MessageStream accumulator, openai's
Responses stream helper, and boto3's event-stream parser over a SigV4-signed call."""

from __future__ import annotations

import json

import anthropic
import boto3
import openai
import pytest
from botocore.config import Config

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from fakes.anthropic import ScriptedAnthropic, text_turn, tool_use_turn
from fakes.bedrock_scripted import ScriptedBedrock
from fakes.responses import ScriptedResponses, custom_tool_call_turn, function_call_turn
from fakes.responses import text_turn as responses_text_turn
from fakes.server import Reply
from fakes.shapes import request_shape

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
KEY = "sk-scripted-fake-key"


def _anthropic(fake) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0, timeout=10)


def _messages_body(**kw):
    return {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **kw}


# ---------------------------------------------------------------- Anthropic Messages


def test_anthropic_stream_plays_turns_in_order():
    with ScriptedAnthropic([tool_use_turn("Read", {"file_path": "a.txt"}, "toolu_A1", thinking="plan"),
                            text_turn("second turn")], api_key=KEY) as fake:
        client = _anthropic(fake)
        with client.messages.stream(**_messages_body()) as s:
            first = s.get_final_message()
        with client.messages.stream(**_messages_body()) as s:
            second = s.get_final_message()
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert first.content[1].id == "toolu_A1" and first.content[1].input == {"file_path": "a.txt"}
    assert first.stop_reason == "tool_use" and first.content[0].signature
    assert [b.type for b in second.content] == ["text"] and second.content[0].text == "second turn"
    assert second.stop_reason == "end_turn"
    assert len(fake.turn_requests) == 2
    raw = fake.turn_requests[0].response_body.decode()
    frames = [f for f in raw.split("\n\n") if f]
    assert all(f.startswith("event: ") for f in frames), "every SSE event needs its event: line"


def test_anthropic_non_streaming_and_auth_and_side_routes():
    with ScriptedAnthropic([text_turn("plain")], api_key=KEY) as fake:
        client = _anthropic(fake)
        msg = client.messages.create(**_messages_body())
        assert msg.content[0].text == "plain" and msg.usage.output_tokens >= 1
        probe = client.messages.create(**_messages_body(max_tokens=1))  # a probe: answered, not a turn
        assert probe.stop_reason == "max_tokens"
        counted = client.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        assert counted.input_tokens >= 1
        with pytest.raises(anthropic.AuthenticationError):
            anthropic.Anthropic(api_key="wrong", base_url=fake.url, max_retries=0).messages.create(**_messages_body())
        with pytest.raises(anthropic.BadRequestError, match="no turn 1"):
            client.messages.create(**_messages_body())
    assert len(fake.turn_requests) == 2  # the plain turn and the exhausted one
    assert fake.requests[2].path == "/v1/messages/count_tokens"


def test_anthropic_callable_turn_sees_the_request():
    seen = []

    def echo_tool_result(rec, body, index):
        seen.append(index)
        results = [b for b in body["messages"][-1]["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
        return text_turn(f"got {results[0]['tool_use_id']}") if results else Reply(500, [], b"")

    with ScriptedAnthropic([echo_tool_result], api_key=KEY) as fake:
        msg = _anthropic(fake).messages.create(**_messages_body(messages=[
            {"role": "user", "content": "run it"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_Z9", "name": "Bash", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_Z9", "content": "ok"}]},
        ]))
    assert msg.content[0].text == "got toolu_Z9" and seen == [0]
    shape = request_shape(fake.turn_requests[0])["body"]
    assert shape["messages"][-1]["content"] == ["tool_result(str:2)"]


# ---------------------------------------------------------------- Responses


def test_responses_stream_parsed_by_openai_sdk():
    with ScriptedResponses([function_call_turn("exec_command", {"cmd": "ls"}, "call_R1", reasoning="look"),
                            responses_text_turn("final words"),
                            custom_tool_call_turn("apply_patch", "*** Begin Patch\n*** End Patch\n", "call_P1")],
                           api_key=KEY) as fake:
        client = openai.OpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0, timeout=10)
        with client.responses.stream(model=MODEL, input="hi") as s:
            first = s.get_final_response()
        with client.responses.stream(model=MODEL, input="again") as s:
            second = s.get_final_response()
        third = client.responses.create(model=MODEL, input="patch")
        with pytest.raises(openai.BadRequestError, match="no turn 3"):
            client.responses.create(model=MODEL, input="more")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(api_key="wrong", base_url=fake.base_url, max_retries=0).responses.create(model=MODEL, input="x")
    assert [i.type for i in first.output] == ["reasoning", "function_call"]
    call = first.output[1]
    assert (call.call_id, call.name, json.loads(call.arguments)) == ("call_R1", "exec_command", {"cmd": "ls"})
    assert first.usage.total_tokens == first.usage.input_tokens + first.usage.output_tokens
    assert second.output_text == "final words" and second.status == "completed"
    assert third.output[0].type == "custom_tool_call" and third.output[0].input.startswith("*** Begin Patch")
    events = [json.loads(f.split("data: ", 1)[1]) for f in fake.turn_requests[0].response_body.decode().split("\n\n") if f]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "response.created" and events[-1]["type"] == "response.completed"
    assert isinstance(events[-1]["response"]["id"], str)


def test_responses_rejects_server_state():
    with ScriptedResponses([responses_text_turn("x")]) as fake:
        client = openai.OpenAI(api_key=KEY, base_url=fake.base_url, max_retries=0, timeout=10)
        with pytest.raises(openai.BadRequestError, match="previous_response_id"):
            client.responses.create(model=MODEL, input="x", previous_response_id="resp_1")
    assert fake.turn_requests == []


# ---------------------------------------------------------------- Bedrock (Claude)


def _bedrock(fake):
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=fake.url,
        aws_access_key_id=DEFAULT_ACCESS_KEY, aws_secret_access_key=DEFAULT_SECRET, aws_session_token=DEFAULT_TOKEN,
        config=Config(retries={"max_attempts": 1}, read_timeout=10, connect_timeout=5),
    )


def _invoke_body(**kw):
    return json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "hi"}], **kw})


def test_bedrock_stream_parsed_by_boto3_with_sigv4():
    with ScriptedBedrock([tool_use_turn("Bash", {"command": "ls"}, "toolu_bdrk_B1"), text_turn("bedrock final")]) as fake:
        client = _bedrock(fake)
        resp = client.invoke_model_with_response_stream(modelId=MODEL, body=_invoke_body())
        events = [json.loads(e["chunk"]["bytes"]) for e in resp["body"]]
        plain = json.loads(client.invoke_model(modelId=MODEL, body=_invoke_body())["body"].read())
        counted = client.count_tokens(modelId="anthropic.claude-sonnet-4-5-20250929-v1:0",
                                      input={"invokeModel": {"body": _invoke_body().encode()}})
    assert events[0]["type"] == "message_start" and events[-1]["type"] == "message_stop"
    assert "amazon-bedrock-invocationMetrics" in events[-1]
    starts = [e["content_block"] for e in events if e["type"] == "content_block_start"]
    assert starts == [{"type": "tool_use", "id": "toolu_bdrk_B1", "name": "Bash", "input": {}}]
    partial = "".join(e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta")
    assert json.loads(partial) == {"command": "ls"}
    assert plain["content"] == [{"type": "text", "text": "bedrock final"}]
    assert counted["inputTokens"] >= 1
    assert all(r.sigv4 is not None and r.sigv4.ok for r in fake.requests)
    assert [r.path.rsplit("/", 1)[-1] for r in fake.turn_requests] == ["invoke-with-response-stream", "invoke"]
    assert fake.requests[0].path == f"/model/{MODEL.replace(':', '%3A')}/invoke-with-response-stream"


def test_bedrock_bearer_is_test_only_opt_in_and_bodies_are_validated():
    import requests

    with ScriptedBedrock([text_turn("a"), text_turn("b")], bearer_token="tok") as fake:
        url = f"{fake.url}/model/{MODEL}/invoke"
        ok = requests.post(url, data=_invoke_body(), headers={"authorization": "Bearer tok"}, timeout=10)
        wrong = requests.post(url, data=_invoke_body(), headers={"authorization": "Bearer nope"}, timeout=10)
        bad = requests.post(url, data=_invoke_body(stream=True), headers={"authorization": "Bearer tok"}, timeout=10)
        profiles = requests.get(f"{fake.url}/inference-profiles?type=SYSTEM_DEFINED",
                                headers={"authorization": "Bearer tok"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["content"][0]["text"] == "a"
    assert wrong.status_code == 403 and wrong.headers["x-amzn-errortype"].startswith("UnrecognizedClientException")
    assert bad.status_code == 400 and "extraneous key [stream]" in bad.json()["message"]
    assert profiles.json() == {"inferenceProfileSummaries": []}
    with ScriptedBedrock([text_turn("a")]) as strict:  # no bearer_token: a bearer request is not SigV4
        r = requests.post(f"{strict.url}/model/{MODEL}/invoke", data=_invoke_body(),
                          headers={"authorization": "Bearer tok"}, timeout=10)
    assert r.status_code == 403
