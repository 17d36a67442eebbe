"""Claude Code (the pinned CLI, tests/clients) through the gateway's Anthropic Messages door,
with the gateway's Bedrock upstream a scripted fake (fakes.bedrock_scripted.ScriptedBedrock)
that verifies the gateway's SigV4 and validates every InvokeModel body as strictly as Bedrock
(invalid beta flag, thinking.display, defer_loading without tool search, context_management).

Claude Code → `POST /v1/messages?beta=true` (its first-party body and betas) → gateway →
`POST /model/{id}/invoke-with-response-stream` (signed by the gateway) → scripted turn 1: a
`tool_use` of Claude Code's own Bash tool → Claude Code runs it → turn 2 carries the
`tool_result` → scripted final text.

Claude Code silently resends a turn answered with 400 up to five times with fewer betas and
features (tests/clients/README.md), so a successful run proves little by itself: the tests
also require that Bedrock received exactly the two turns, each answered 200, and that the
gateway answered every request Claude Code sent with 2xx (Envoy's downstream counters).
"""

from __future__ import annotations

import json

import pytest

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from fakes.anthropic import text_turn, tool_use_turn
from fakes.bedrock_scripted import ScriptedBedrock
from messages_checks import (
    BEDROCK_ANTHROPIC_VERSION,
    CLAUDE_CODE_BETA_HEADER,
    CLAUDE_CODE_BETA_HEADER_NO_EXPERIMENTAL,
    TOOL_SEARCH,
    expected_betas,
)
from real_clients import ClientNotInstalled, claude_bin, run_claude_code
from system_harness import CLIENT_KEY, assert_bedrock_upstream, provider_env

MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"
MODEL_PATH = "us.anthropic.claude-sonnet-4-20250514-v1%3A0"
RUN_TIMEOUT = 120


@pytest.fixture(scope="module")
def claude():
    try:
        return claude_bin()
    except ClientNotInstalled as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def scripted():
    """The gateway's Bedrock: SigV4 only (the gateway's credentials), strict bodies."""
    with ScriptedBedrock(region="us-east-1") as sb:
        yield sb


@pytest.fixture(scope="module")
def cc_stack(start_stack, fakes, scripted):
    """A stack whose Bedrock runtime endpoint is the scripted fake (OpenAI at the shared fake)."""
    return start_stack("claude-code", provider_env(fakes, AWS_ENDPOINT_URL_BEDROCK_RUNTIME=scripted.url))


@pytest.fixture(autouse=True)
def _fresh_scripted(scripted):
    scripted.clear()
    scripted.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN)
    yield
    scripted.clear()


DOWNSTREAM = ("http.unigate.downstream_rq_total", "http.unigate.downstream_rq_2xx", "http.unigate.downstream_rq_4xx",
              "http.unigate.downstream_rq_5xx")


def downstream_counts(stack) -> dict:
    stats = stack.admin_stats("http.unigate.downstream_rq_")
    return {k: int(stats.get(k, "0")) for k in DOWNSTREAM}


def _tool_results(body: dict) -> list:
    last = body["messages"][-1]
    assert last["role"] == "user", last["role"]
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


CASES = [
    pytest.param("api_key", None, CLAUDE_CODE_BETA_HEADER, id="x-api-key"),
    pytest.param("bearer", None, CLAUDE_CODE_BETA_HEADER, id="auth-token-bearer"),
    pytest.param("api_key", {"CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS": "1"}, CLAUDE_CODE_BETA_HEADER_NO_EXPERIMENTAL,
                 id="experimental-betas-disabled"),
]


@pytest.mark.parametrize("auth,extra_env,beta_header", CASES)
def test_claude_code_tool_round_trip_through_gateway(claude, cc_stack, scripted, tmp_path, auth, extra_env, beta_header):
    tool_id = "toolu_bdrk_01UnigateGatewayCC"
    final = "Done through the gateway: 3f9a."
    scripted.script([
        tool_use_turn("Bash", {"command": "echo ok > done.txt", "description": "Write done.txt"}, tool_id,
                      thinking="I will write the file with Bash."),
        text_turn(final),
    ])
    before = downstream_counts(cc_stack)
    run = run_claude_code(cc_stack.url, CLIENT_KEY, MODEL, "Create done.txt containing ok, then say you are done.", tmp_path,
                          auth=auth, extra_env=extra_env, timeout=RUN_TIMEOUT)
    after = downstream_counts(cc_stack)
    received = [(r.method, r.path, r.response_status, r.response_body[:300]) for r in scripted.requests]

    # the session worked end to end
    run.check()
    assert final in run.stdout
    assert (tmp_path / "done.txt").read_text() == "ok\n", "the Bash tool call did not run"

    # exactly the two turns reached Bedrock, both accepted: no silent 400 + retry with fewer features
    assert [(m, p, s) for m, p, s, _ in received] == [("POST", f"/model/{MODEL_PATH}/invoke-with-response-stream", 200)] * 2, received
    assert len(scripted.turn_requests) == 2
    grew = {k: after[k] - before[k] for k in DOWNSTREAM}
    assert grew == {"http.unigate.downstream_rq_total": 2, "http.unigate.downstream_rq_2xx": 2,
                    "http.unigate.downstream_rq_4xx": 0, "http.unigate.downstream_rq_5xx": 0}, grew

    want_betas = expected_betas(MODEL, [beta_header])
    for rec in scripted.requests:
        # signed with the gateway's credentials; nothing of the client's reaches AWS
        body = assert_bedrock_upstream(rec, MODEL_PATH, "invoke-with-response-stream")
        for name, _ in rec.header_list:
            assert not name.startswith("anthropic-") and name != "x-api-key", f"client header {name} reached Bedrock"
        # what Bedrock takes
        assert body["anthropic_version"] == BEDROCK_ANTHROPIC_VERSION
        assert "model" not in body and "stream" not in body
        assert "context_management" not in body, body.get("context_management")
        assert "display" not in (body.get("thinking") or {}), body["thinking"]
        betas = body.get("anthropic_beta", [])
        assert len(betas) == len(set(betas)) and set(betas) == want_betas, (betas, sorted(want_betas))
        deferred = [t["name"] for t in body.get("tools", []) if "defer_loading" in t]
        if TOOL_SEARCH not in want_betas:
            assert deferred == [], f"defer_loading without {TOOL_SEARCH}: {deferred}"

    # turn 2 carries Claude Code's tool result under the fake's id, and echoes the thinking block
    second = scripted.turn_requests[1].json()
    assistant = second["messages"][-2]
    assert assistant["role"] == "assistant"
    assert [(b["id"], b["name"]) for b in assistant["content"] if b.get("type") == "tool_use"] == [(tool_id, "Bash")]
    thinking = [b for b in assistant["content"] if b.get("type") == "thinking"]
    assert [(b["thinking"], b["signature"]) for b in thinking] == [("I will write the file with Bash.", "c2lnbmF0dXJlLWZha2U=")]
    results = _tool_results(second)
    assert [b["tool_use_id"] for b in results] == [tool_id], json.dumps(results)[:500]
    assert not results[0].get("is_error"), results[0]


def test_claude_code_experimental_mode_keeps_deferred_tools_with_tool_search(claude, cc_stack, scripted, tmp_path):
    """Claude Code's default mode sends `advanced-tool-use-2025-11-20` and a tool with
    `defer_loading`: the beta is renamed to `tool-search-tool-2025-10-19` (allowed on Claude 4),
    so the deferred tool is kept — and Bedrock accepted it."""
    scripted.script([text_turn("deferred ok 51")])
    run = run_claude_code(cc_stack.url, CLIENT_KEY, MODEL, "Say ok.", tmp_path, timeout=RUN_TIMEOUT)
    run.check()
    assert "deferred ok 51" in run.stdout
    received = [(r.path, r.response_status, r.response_body[:300]) for r in scripted.requests]
    assert [s for _, s, _ in received] == [200], f"one turn, accepted at once: {received}"
    body = scripted.requests[0].json()
    assert sorted(body["anthropic_beta"]) == ["interleaved-thinking-2025-05-14", TOOL_SEARCH]
    assert [t["name"] for t in body["tools"] if t.get("defer_loading")], "Claude Code's deferred tool placeholder was dropped"
