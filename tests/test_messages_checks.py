"""Self-checks of the Messages-door oracles in messages_checks.py (no gateway needed), so a
failing gateway test points at the gateway, not at its oracle:

- the relay oracle's output for Claude Code's first-party body is what the strict fake Bedrock
  accepts (and the unfiltered body is refused);
- the SSE parser and the stream-grammar checker accept a well-formed stream (the scripted fake
  Anthropic's, written from front-doors.md §1.4) and reject each kind of malformation;
- the error-envelope check tells Anthropic's shape from OpenAI's."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeBedrock
from fakes.anthropic import message_events, sse_frame, tool_use_turn
from messages_checks import (
    CLAUDE_CODE_BETA_HEADER,
    CLAUDE_CODE_BETA_HEADER_NO_EXPERIMENTAL,
    assert_error_body,
    assert_message_stream,
    assert_relayed_body,
    claude_stream_events,
    expected_betas,
    expected_invoke_body,
    parse_sse,
)

SONNET4 = "us.anthropic.claude-sonnet-4-20250514-v1:0"
HAIKU3 = "anthropic.claude-3-haiku-20240307-v1:0"
FIRST_PARTY = {
    "model": SONNET4,
    "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "scope": "global"}}]}],
    "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}],
    "tools": [{"name": "Read", "input_schema": {"type": "object"}},
              {"name": "DeferredToolPlaceholder", "input_schema": {"type": "object"}, "defer_loading": True}],
    "metadata": {"user_id": "{}"}, "max_tokens": 32000,
    "thinking": {"budget_tokens": 31999, "type": "enabled", "display": "omitted"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    "stream": True, "speed": "fast",
}


@pytest.fixture(scope="module")
def brt():
    with FakeBedrock(region="us-east-1") as fake:
        yield boto3.client("bedrock-runtime", region_name="us-east-1", endpoint_url=fake.url,
                           aws_access_key_id=DEFAULT_ACCESS_KEY, aws_secret_access_key=DEFAULT_SECRET,
                           aws_session_token=DEFAULT_TOKEN, config=Config(retries={"max_attempts": 1}, read_timeout=10))


def test_expected_betas():
    assert expected_betas(SONNET4, [CLAUDE_CODE_BETA_HEADER]) == {"interleaved-thinking-2025-05-14", "tool-search-tool-2025-10-19"}
    assert expected_betas(SONNET4, [CLAUDE_CODE_BETA_HEADER_NO_EXPERIMENTAL]) == {"interleaved-thinking-2025-05-14"}
    assert expected_betas(SONNET4, [" context-1m-2025-08-07, ,x", "interleaved-thinking-2025-05-14"], ["advanced-tool-use-2025-11-20"]) == {
        "context-1m-2025-08-07", "interleaved-thinking-2025-05-14", "tool-search-tool-2025-10-19"}
    assert expected_betas(HAIKU3, [CLAUDE_CODE_BETA_HEADER]) == set()
    assert expected_betas("global.anthropic.claude-opus-4-5-20251101-v1:0", ["context-1m-2025-08-07"]) == {"context-1m-2025-08-07"}
    assert expected_betas("us.anthropic.claude-3-7-sonnet-20250219-v1:0", ["interleaved-thinking-2025-05-14"]) == set()


@pytest.mark.parametrize("model,header", [(SONNET4, CLAUDE_CODE_BETA_HEADER), (SONNET4, CLAUDE_CODE_BETA_HEADER_NO_EXPERIMENTAL),
                                          (HAIKU3, CLAUDE_CODE_BETA_HEADER)])
def test_relay_oracle_output_is_what_strict_bedrock_accepts(brt, model, header):
    unfiltered = {k: v for k, v in FIRST_PARTY.items() if k not in ("model", "stream")}
    unfiltered.update(anthropic_version="bedrock-2023-05-31", anthropic_beta=[b for b in header.split(",")])
    with pytest.raises(ClientError):
        brt.invoke_model(modelId=model, body=json.dumps(unfiltered))
    relayed = expected_invoke_body(FIRST_PARTY, model, [header])
    out = json.loads(brt.invoke_model(modelId=model, body=json.dumps(relayed))["body"].read())
    assert out["type"] == "message"
    assert_relayed_body(relayed, FIRST_PARTY, model, [header])


def test_relay_oracle_rejects_deviations():
    relayed = expected_invoke_body(FIRST_PARTY, SONNET4, [CLAUDE_CODE_BETA_HEADER])
    for bad in (dict(relayed, context_management=FIRST_PARTY["context_management"]), dict(relayed, stream=True),
                dict(relayed, anthropic_beta=relayed["anthropic_beta"] + ["claude-code-20250219"]),
                dict(relayed, anthropic_beta=relayed["anthropic_beta"] * 2),
                dict(relayed, thinking=FIRST_PARTY["thinking"]),
                dict(relayed, messages=FIRST_PARTY["messages"])):
        with pytest.raises(AssertionError):
            assert_relayed_body(bad, FIRST_PARTY, SONNET4, [CLAUDE_CODE_BETA_HEADER])


def _sse(events) -> bytes:
    return b"".join(sse_frame(e) for e in events)


def test_stream_checks_accept_a_well_formed_stream():
    turn = tool_use_turn("Read", {"file_path": "a.txt"}, "toolu_X", text="Reading.", thinking="plan")
    events = parse_sse(_sse(message_events(turn, "msg_1", "m", 10)))
    msg = assert_message_stream(events)
    assert msg["content"] == turn.blocks
    assert msg["stop_reason"] == "tool_use" and msg["usage"]["input_tokens"] == 10
    claude = claude_stream_events([{"type": "text", "text": "ab"}], pings=True)
    assert assert_message_stream(parse_sse(_sse(claude)))["content"] == [{"type": "text", "text": "ab"}]
    with pytest.raises(AssertionError):
        assert_message_stream(parse_sse(_sse(claude)), allow_ping=False)


def _text_stream(indexes=(0,)):
    evs = claude_stream_events([{"type": "text", "text": "ab"}] * len(indexes))
    for e in evs:
        if "index" in e:
            e["index"] = indexes[e["index"]]
    return evs


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda evs: _text_stream((0, 2)), id="index-gap"),
        pytest.param(lambda evs: _text_stream((1,)), id="index-not-from-0"),
        pytest.param(lambda evs: evs[:-1], id="no-message_stop"),
        pytest.param(lambda evs: evs[1:], id="no-message_start"),
        pytest.param(lambda evs: [e for e in evs if e["type"] != "content_block_stop"], id="block-never-stopped"),
        pytest.param(lambda evs: [e for e in evs if e["type"] != "message_delta"], id="no-message_delta"),
        pytest.param(lambda evs: evs[:-1] + [{"type": "error", "error": {"type": "api_error", "message": "x"}}], id="error-event"),
    ],
)
def test_stream_grammar_rejects(mutate):
    evs = mutate(claude_stream_events([{"type": "text", "text": "ab"}]))
    with pytest.raises(AssertionError):
        assert_message_stream(parse_sse(_sse(evs)))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'data: {"type":"message_stop"}\n\n', id="no-event-line"),
        pytest.param(b'event: message_stop\ndata: {"type":"ping"}\n\n', id="type-mismatch"),
        pytest.param(b'event: message_stop\ndata: {"type":"message_stop"}\n', id="unterminated"),
        pytest.param(b'event: message_stop\r\ndata: {"type":"message_stop"}\r\n\r\n', id="crlf"),
    ],
)
def test_sse_framing_rejects(raw):
    with pytest.raises((AssertionError, ValueError)):
        parse_sse(raw)


def test_error_envelope_check():
    assert assert_error_body({"type": "error", "error": {"type": "api_error", "message": "m", "code": "c"}, "request_id": "r"},
                             "api_error")["code"] == "c"
    for bad in ({"error": {"type": "api_error", "message": "m", "param": None, "code": None}},
                {"type": "error", "error": {"type": "api_error", "message": ""}},
                {"type": "error", "error": {"type": "api_error", "message": "m"}, "extra": 1}):
        with pytest.raises(AssertionError):
            assert_error_body(bad)
