"""FakeBedrock's Claude strictness and its CountTokens operation, checked with boto3 as the
client (SigV4-signed, botocore's own error parsing), so the gateway tests that rely on them
(test_system_messages.py, test_system_claude_code.py, wasm-tests/test_wasm_messages.py) rest
on a fake that refuses what Bedrock refuses (front-doors.md §0.3-4, §1.7, §1.10):

- `anthropic_beta` entries outside the model's accepted set → 400 "invalid beta flag";
- `thinking.display`, `defer_loading` without tool search, `cache_control.scope`,
  `context_management` edits other than compact → 400 "…: Extra inputs are not permitted";
- CountTokens takes Claude foundation-model ids only and validates its inner body the same way.

Each refusal has its control: the same body without the offending part is accepted, so a
refusal cannot come from something else in the body."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeBedrock
from fakes.bedrock import BEDROCK_DOCUMENTED_BETAS, COUNT_TOKENS_UNSUPPORTED, accepted_betas
from fakes.bedrock_scripted import ScriptedBedrock
from fakes.anthropic import text_turn
from fakes.text import count_tokens

SONNET4 = "us.anthropic.claude-sonnet-4-20250514-v1:0"
SONNET4_FM = "anthropic.claude-sonnet-4-20250514-v1:0"
SONNET45 = "global.anthropic.claude-sonnet-4-5-20250929-v1:0"
HAIKU3 = "anthropic.claude-3-haiku-20240307-v1:0"
# What the gateway forwards by default for Claude 4+ (the contract's default table).
GATEWAY_DEFAULT_BETAS = ["interleaved-thinking-2025-05-14", "context-1m-2025-08-07", "tool-search-tool-2025-10-19"]
# Claude Code's first-party betas the gateway must drop (front-doors.md §5).
CLAUDE_CODE_DROPPED = ["claude-code-20250219", "context-management-2025-06-27", "thinking-token-count-2026-05-13",
                       "advanced-tool-use-2025-11-20", "fine-grained-tool-streaming-2025-05-14"]


@pytest.fixture(scope="module")
def fake():
    with FakeBedrock(region="us-east-1") as f:
        yield f


@pytest.fixture(autouse=True)
def _clear(fake):
    fake.clear()
    fake.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN)
    yield


def brt(url, secret=DEFAULT_SECRET):
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=url,
        aws_access_key_id=DEFAULT_ACCESS_KEY, aws_secret_access_key=secret, aws_session_token=DEFAULT_TOKEN,
        config=Config(retries={"max_attempts": 1}, read_timeout=10, connect_timeout=5),
    )


def body(**kw) -> dict:
    b = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 2048,
         "messages": [{"role": "user", "content": [{"type": "text", "text": "strict please"}]}]}
    b.update(kw)
    return {k: v for k, v in b.items() if v is not None}


TOOL = {"name": "Read", "description": "read a file", "input_schema": {"type": "object", "properties": {"p": {"type": "string"}}}}
DEFERRED = {"name": "DeferredToolPlaceholder", "description": "x", "input_schema": {"type": "object"}, "defer_loading": True}


def invoke(fake, model, b) -> dict:
    out = brt(fake.url).invoke_model(modelId=model, body=json.dumps(b))
    return json.loads(out["body"].read())


def refused(fake, model, b, stream=False) -> tuple:
    """(status, error code, message) of a call the fake must refuse."""
    c = brt(fake.url)
    with pytest.raises(ClientError) as ei:
        if stream:
            c.invoke_model_with_response_stream(modelId=model, body=json.dumps(b))
        else:
            c.invoke_model(modelId=model, body=json.dumps(b))
    e = ei.value.response
    rec = fake.last()
    assert rec.sigv4.ok, "refused for the body, not the signature"
    return e["ResponseMetadata"]["HTTPStatusCode"], e["Error"]["Code"], e["Error"]["Message"]


# ---------------------------------------------------------------- betas


def test_accepted_beta_table_is_documented_list_for_claude4_and_empty_for_claude3():
    assert accepted_betas(SONNET4) == BEDROCK_DOCUMENTED_BETAS
    assert accepted_betas("global.anthropic.claude-opus-4-5-20251101-v1:0") == BEDROCK_DOCUMENTED_BETAS
    assert accepted_betas("us.anthropic.claude-haiku-4-5-20251001-v1:0") == BEDROCK_DOCUMENTED_BETAS
    assert accepted_betas("us.anthropic.claude-opus-4-7") == {"interleaved-thinking-2025-05-14"}
    assert accepted_betas(HAIKU3) == frozenset()
    assert accepted_betas("us.anthropic.claude-3-7-sonnet-20250219-v1:0") == frozenset()
    # the gateway's default betas must all be accepted on Claude 4+, and none of the ones it drops
    # may be needed: the fake is never the reason a correct gateway fails
    assert set(GATEWAY_DEFAULT_BETAS) <= BEDROCK_DOCUMENTED_BETAS
    for beta in ("claude-code-20250219", "thinking-token-count-2026-05-13", "advanced-tool-use-2025-11-20"):
        assert beta not in BEDROCK_DOCUMENTED_BETAS


def test_gateway_default_betas_accepted_on_claude4(fake):
    out = invoke(fake, SONNET4, body(anthropic_beta=GATEWAY_DEFAULT_BETAS))
    assert out["content"] == [{"type": "text", "text": "echo: strict please"}]
    assert fake.last().response_status == 200


@pytest.mark.parametrize("beta", CLAUDE_CODE_DROPPED[:1] + CLAUDE_CODE_DROPPED[2:4] + ["made-up-2099-01-01"])
def test_unknown_beta_is_invalid_beta_flag(fake, beta):
    status, code, msg = refused(fake, SONNET4, body(anthropic_beta=["interleaved-thinking-2025-05-14", beta]))
    assert (status, code, msg) == (400, "ValidationException", "invalid beta flag")


def test_claude3_accepts_no_beta(fake):
    status, code, msg = refused(fake, HAIKU3, body(anthropic_beta=["interleaved-thinking-2025-05-14"]))
    assert (status, code, msg) == (400, "ValidationException", "invalid beta flag")
    assert invoke(fake, HAIKU3, body())["stop_reason"] == "end_turn"  # control: no beta
    assert invoke(fake, HAIKU3, body(anthropic_beta=[]))["stop_reason"] == "end_turn"  # an empty list is fine


def test_beta_check_applies_to_the_stream_operation(fake):
    status, _, msg = refused(fake, SONNET4, body(anthropic_beta=["claude-code-20250219"]), stream=True)
    assert (status, msg) == (400, "invalid beta flag")
    out = brt(fake.url).invoke_model_with_response_stream(modelId=SONNET4, body=json.dumps(body(anthropic_beta=GATEWAY_DEFAULT_BETAS)))
    events = [json.loads(e["chunk"]["bytes"]) for e in out["body"]]
    assert events[-1]["type"] == "message_stop"


# ---------------------------------------------------------------- thinking, tools, cache_control, context_management


def test_thinking_display_is_refused(fake):
    status, code, msg = refused(fake, SONNET4, body(thinking={"type": "enabled", "budget_tokens": 1024, "display": "omitted"}))
    assert (status, code, msg) == (400, "ValidationException", "thinking.enabled.display: Extra inputs are not permitted")
    invoke(fake, SONNET4, body(thinking={"type": "enabled", "budget_tokens": 1024}))  # control


def test_thinking_budget_must_be_below_max_tokens(fake):
    _, _, msg = refused(fake, SONNET4, body(max_tokens=1024, thinking={"type": "enabled", "budget_tokens": 1024}))
    assert "max_tokens" in msg and "budget_tokens" in msg
    _, _, msg = refused(fake, SONNET4, body(thinking={"type": "enabled", "budget_tokens": 100}))
    assert msg == "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"


def test_defer_loading_needs_tool_search_beta(fake):
    status, code, msg = refused(fake, SONNET4, body(tools=[TOOL, DEFERRED]))
    assert (status, code, msg) == (400, "ValidationException", "tools.1.custom.defer_loading: Extra inputs are not permitted")
    # with the beta (and a model that accepts it) the same tools pass
    invoke(fake, SONNET4, body(tools=[TOOL, DEFERRED], anthropic_beta=["tool-search-tool-2025-10-19"]))
    # the renamed-from beta is not the same thing
    _, _, msg = refused(fake, SONNET4, body(tools=[TOOL, DEFERRED], anthropic_beta=["advanced-tool-use-2025-11-20"]))
    assert msg == "invalid beta flag"
    invoke(fake, SONNET4, body(tools=[TOOL]))  # control: no defer_loading, no beta


@pytest.mark.parametrize(
    "where,expected_path",
    [
        pytest.param("system", "system.0", id="system-block"),
        pytest.param("message", "messages.0.content.0", id="message-block"),
        pytest.param("tool_result", "messages.2.content.0.content.0", id="inside-tool-result"),
        pytest.param("tool", "tools.0.custom", id="tool"),
    ],
)
def test_cache_control_scope_is_refused(fake, where, expected_path):
    def make(cc):
        b = body(tools=[dict(TOOL)], system=[{"type": "text", "text": "sys"}])
        if where == "system":
            b["system"][0]["cache_control"] = cc
        elif where == "message":
            b["messages"][0]["content"][0]["cache_control"] = cc
        elif where == "tool":
            b["tools"][0]["cache_control"] = cc
        else:
            b["messages"] += [
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Read", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                              "content": [{"type": "text", "text": "r", "cache_control": cc}]}]},
            ]
        return b

    status, code, msg = refused(fake, SONNET4, make({"type": "ephemeral", "scope": "global"}))
    assert (status, code) == (400, "ValidationException")
    assert msg == f"{expected_path}.cache_control.ephemeral.scope: Extra inputs are not permitted"
    invoke(fake, SONNET4, make({"type": "ephemeral"}))  # control: without scope it passes
    invoke(fake, SONNET45, make({"type": "ephemeral", "ttl": "1h"}))  # and ttl is fine on Claude 4.5


def test_cache_control_ttl_only_from_claude_4_5(fake):
    b = body(system=[{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}])
    _, code, msg = refused(fake, SONNET4, b)
    assert (code, msg) == ("ValidationException", "system.0.cache_control.ephemeral.ttl: Extra inputs are not permitted")
    refused(fake, HAIKU3, b)
    assert invoke(fake, SONNET45, b)["type"] == "message"
    assert invoke(fake, "us.anthropic.claude-haiku-4-5-20251001-v1:0", b)["type"] == "message"


def test_context_management_only_compact_edits_with_their_beta(fake):
    _, code, msg = refused(fake, SONNET4, body(context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}))
    assert (code, msg) == ("ValidationException", "context_management: Extra inputs are not permitted")
    _, _, msg = refused(fake, SONNET4, body(context_management={"edits": [{"type": "compact_20260112"},
                                                                          {"type": "clear_tool_uses_20250919"}]}))
    assert msg == "context_management: Extra inputs are not permitted"
    _, _, msg = refused(fake, SONNET4, body(context_management={"edits": [{"type": "compact_20260112"}]}))
    assert msg == "context_management: the compact_20260112 edit requires the compact-2026-01-12 beta"
    # the beta is not in the fake's table (not in AWS's documented list): no context_management passes here
    _, _, msg = refused(fake, SONNET4, body(context_management={"edits": [{"type": "compact_20260112"}]},
                                            anthropic_beta=["compact-2026-01-12"]))
    assert msg == "invalid beta flag"


@pytest.mark.parametrize("key,value", [("model", SONNET4), ("stream", True), ("speed", "fast"), ("service_tier", "auto"),
                                        ("container", "c"), ("mcp_servers", []), ("inference_geo", "us")])
def test_first_party_top_level_keys_stay_extraneous(fake, key, value):
    _, code, msg = refused(fake, SONNET4, body(**{key: value}))
    assert code == "ValidationException" and f"extraneous key [{key}] is not permitted" in msg


def test_claude_code_first_party_body_is_refused_until_filtered(fake):
    """Claude Code's Messages body (front-doors.md §5) relayed without filtering fails; after the
    contract's filtering (betas, display, context_management, defer_loading, model/stream) it
    passes — the fake separates the two."""
    first_party = body(
        thinking={"budget_tokens": 1999, "type": "enabled", "display": "omitted"},
        context_management={"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        tools=[TOOL, DEFERRED], metadata={"user_id": json.dumps({"device_id": "d", "session_id": "s"})},
        anthropic_beta=["claude-code-20250219", "interleaved-thinking-2025-05-14", "context-management-2025-06-27",
                        "thinking-token-count-2026-05-13", "tool-search-tool-2025-10-19"],
    )
    refused(fake, SONNET4, first_party)
    filtered = dict(first_party, anthropic_beta=["interleaved-thinking-2025-05-14", "tool-search-tool-2025-10-19"],
                    thinking={"budget_tokens": 1999, "type": "enabled"})
    del filtered["context_management"]
    assert invoke(fake, SONNET4, filtered)["type"] == "message"
    # without the tool-search beta, defer_loading must go too
    no_search = dict(filtered, anthropic_beta=["interleaved-thinking-2025-05-14"])
    refused(fake, SONNET4, no_search)
    no_search["tools"] = [TOOL, {k: v for k, v in DEFERRED.items() if k != "defer_loading"}]
    invoke(fake, SONNET4, no_search)


# ---------------------------------------------------------------- CountTokens


def b64(obj) -> bytes:
    return json.dumps(obj).encode()


def test_count_tokens_invoke_model_body(fake):
    inner = body(system="count me too", anthropic_beta=["interleaved-thinking-2025-05-14"],
                 messages=[{"role": "user", "content": "first words"}, {"role": "assistant", "content": "ok"},
                           {"role": "user", "content": [{"type": "text", "text": "second words"}]}])
    out = brt(fake.url).count_tokens(modelId=SONNET4_FM, input={"invokeModel": {"body": b64(inner)}})
    assert out["inputTokens"] == count_tokens("count me too first words ok second words")
    rec = fake.last()
    assert rec.method == "POST" and rec.path == "/model/anthropic.claude-sonnet-4-20250514-v1%3A0/count-tokens"
    assert rec.sigv4.ok and rec.sigv4.access_key == DEFAULT_ACCESS_KEY
    sent = rec.json()
    assert set(sent) == {"input"} and set(sent["input"]) == {"invokeModel"}
    assert json.loads(base64.b64decode(sent["input"]["invokeModel"]["body"])) == inner  # recorded for tests to inspect


def test_count_tokens_converse_input(fake):
    out = brt(fake.url).count_tokens(modelId=SONNET4_FM, input={"converse": {
        "system": [{"text": "sys"}], "messages": [{"role": "user", "content": [{"text": "hello converse"}]}]}})
    assert out["inputTokens"] == count_tokens("sys hello converse")


@pytest.mark.parametrize(
    "model",
    [SONNET4, "global.anthropic.claude-sonnet-4-5-20250929-v1:0", "amazon.nova-lite-v1:0", HAIKU3,
     "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-20250514-v1:0"],
    ids=["us-profile", "global-profile", "nova", "claude-3-haiku", "profile-arn"],
)
def test_count_tokens_unsupported_models(fake, model):
    with pytest.raises(ClientError) as ei:
        brt(fake.url).count_tokens(modelId=model, input={"invokeModel": {"body": b64(body())}})
    e = ei.value.response
    assert e["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert (e["Error"]["Code"], e["Error"]["Message"]) == ("ValidationException", COUNT_TOKENS_UNSUPPORTED)
    assert fake.last().sigv4.ok


def test_count_tokens_foundation_model_arn(fake):
    arn = f"arn:aws:bedrock:us-east-1::foundation-model/{SONNET4_FM}"
    out = brt(fake.url).count_tokens(modelId=arn, input={"invokeModel": {"body": b64(body())}})
    assert out["inputTokens"] == count_tokens("strict please")


@pytest.mark.parametrize(
    "inner,message",
    [
        pytest.param(dict(body(), model=SONNET4_FM), "extraneous key [model] is not permitted", id="model-key"),
        pytest.param({k: v for k, v in body().items() if k != "max_tokens"}, "required key [max_tokens] not found", id="no-max_tokens"),
        pytest.param(body(anthropic_beta=["claude-code-20250219"]), "invalid beta flag", id="bad-beta"),
        pytest.param(body(thinking={"type": "enabled", "budget_tokens": 1024, "display": "omitted"}),
                     "thinking.enabled.display: Extra inputs are not permitted", id="display"),
        pytest.param(body(max_tokens=1, thinking={"type": "enabled", "budget_tokens": 1024}), "budget_tokens", id="max_tokens-1-with-thinking"),
    ],
)
def test_count_tokens_validates_the_inner_body(fake, inner, message):
    with pytest.raises(ClientError) as ei:
        brt(fake.url).count_tokens(modelId=SONNET4_FM, input={"invokeModel": {"body": b64(inner)}})
    assert ei.value.response["Error"]["Code"] == "ValidationException"
    assert message in ei.value.response["Error"]["Message"]


def test_count_tokens_signature_checked(fake):
    fake.set_credentials(DEFAULT_ACCESS_KEY, "a-different-secret", DEFAULT_TOKEN)
    with pytest.raises(ClientError) as ei:
        brt(fake.url).count_tokens(modelId=SONNET4_FM, input={"invokeModel": {"body": b64(body())}})
    assert ei.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert fake.last().response_status == 403


def test_count_tokens_steering_applies(fake):
    c = brt(fake.url)
    c.meta.events.register("before-sign.bedrock-runtime.CountTokens",
                           lambda request, **_: request.headers.__setitem__("x-fake-status", "429"))
    c.meta.events.register("before-sign.bedrock-runtime.CountTokens",
                           lambda request, **_: request.headers.__setitem__("x-fake-error-type", "ThrottlingException"))
    with pytest.raises(ClientError) as ei:
        c.count_tokens(modelId=SONNET4_FM, input={"invokeModel": {"body": b64(body())}})
    assert ei.value.response["Error"]["Code"] == "ThrottlingException"


# ---------------------------------------------------------------- ScriptedBedrock shares the strictness


def test_scripted_bedrock_is_strict_too():
    with ScriptedBedrock([text_turn("one"), text_turn("two")]) as sb:
        c = brt(sb.url)
        with pytest.raises(ClientError) as ei:
            c.invoke_model_with_response_stream(modelId=SONNET4, body=json.dumps(body(anthropic_beta=["claude-code-20250219"])))
        assert ei.value.response["Error"]["Message"] == "invalid beta flag"
        with pytest.raises(ClientError) as ei:
            c.invoke_model(modelId=SONNET4, body=json.dumps(body(context_management={"edits": [{"type": "clear_thinking_20251015"}]})))
        assert ei.value.response["Error"]["Message"] == "context_management: Extra inputs are not permitted"
        ok = json.loads(c.invoke_model(modelId=SONNET4, body=json.dumps(body(anthropic_beta=GATEWAY_DEFAULT_BETAS)))["body"].read())
        assert ok["content"] == [{"type": "text", "text": "one"}]
        with pytest.raises(ClientError) as ei:
            c.count_tokens(modelId=SONNET4, input={"invokeModel": {"body": b64(body())}})
        assert ei.value.response["Error"]["Message"] == COUNT_TOKENS_UNSUPPORTED
        assert c.count_tokens(modelId=SONNET4_FM, input={"invokeModel": {"body": b64(body())}})["inputTokens"] >= 1


# ---------------------------------------------------------------- Converse toolResult.status


def _converse_with_result(status=None):
    result = {"toolUseId": "t1", "content": [{"text": "21 C"}]}
    if status:
        result["status"] = status
    return dict(
        messages=[{"role": "user", "content": [{"text": "weather?"}]},
                  {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t1", "name": "w", "input": {}}}]},
                  {"role": "user", "content": [{"toolResult": result}]}],
        toolConfig={"tools": [{"toolSpec": {"name": "w", "inputSchema": {"json": {"type": "object"}}}}]},
    )


@pytest.mark.parametrize("model,supported", [("amazon.nova-lite-v1:0", True), ("meta.llama3-1-70b-instruct-v1:0", False),
                                             ("mistral.mistral-large-2407-v1:0", False)])
def test_converse_tool_result_status_only_where_supported(fake, model, supported):
    c = brt(fake.url)
    assert c.converse(modelId=model, **_converse_with_result())["stopReason"] == "end_turn"  # control: no status
    if supported:
        c.converse(modelId=model, **_converse_with_result("error"))
        return
    with pytest.raises(ClientError) as ei:
        c.converse(modelId=model, **_converse_with_result("success"))
    assert ei.value.response["Error"]["Code"] == "ValidationException"
    assert "toolResult.status" in ei.value.response["Error"]["Message"]
