"""The real CLIs (tests/clients: Claude Code, Codex) driven by tests/real_clients.py against
scripted fakes, without the gateway. These validate the harness the gateway's front-door
tests use: each CLI runs hermetically, completes a tool-use round trip (the fake asks for a
tool call, the CLI really runs it, and the next request carries the result under the id the
fake chose), and prints the final text. Request shapes (never prose) go to
$UNIGATE_CLIENT_SHAPES_DIR when set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from fakes.anthropic import ScriptedAnthropic, text_turn, tool_use_turn
from fakes.bedrock_scripted import ScriptedBedrock
from fakes.responses import ScriptedResponses, function_call_turn
from fakes.responses import text_turn as responses_text_turn
from fakes.shapes import request_shape, write_shapes
from real_clients import (
    CLAUDE_QUIET_ENV,
    ClientNotInstalled,
    codex_bin,
    claude_bin,
    pinned_versions,
    run_claude_code,
    run_claude_code_bedrock,
    run_codex,
)

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
GATEWAY_KEY = "ug-direct-client-key-41c7"
BEDROCK_TOKEN = "bedrock-api-key-test-only-93be"
RUN_TIMEOUT = 90
HERE = Path(__file__).resolve().parent


def _require(find):
    try:
        return find()
    except ClientNotInstalled as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def claude():
    return _require(claude_bin)


@pytest.fixture(scope="module")
def codex():
    return _require(codex_bin)


def _tool_results(body: dict) -> list:
    last = body["messages"][-1]
    assert last["role"] == "user", last["role"]
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


def _result_text(block: dict) -> str:
    c = block.get("content")
    if isinstance(c, str):
        return c
    return "".join(p.get("text", "") for p in c or [] if isinstance(p, dict))


# ---------------------------------------------------------------- versions


def test_pinned_versions_are_installed(claude, codex):
    want = pinned_versions()
    got_claude = subprocess.run([claude, "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    got_codex = subprocess.run([codex, "--version"], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert got_claude.stdout.split()[0] == want["@anthropic-ai/claude-code"], got_claude
    assert got_codex.stdout.split()[-1] == want["@openai/codex"], got_codex


def test_lockfile_names_no_download_host():
    lock = (HERE / "clients" / "package-lock.json").read_text()
    assert '"resolved"' not in lock and "://" not in lock
    assert json.loads(lock)["packages"][""]["dependencies"] == pinned_versions()


# ---------------------------------------------------------------- Claude Code, Anthropic Messages


def test_claude_code_messages_tool_round_trip(claude, tmp_path):
    tool_id = "toolu_01UnigateDirectClaude"
    marker = "claude-tool-ran-7d1e"
    final = "Final answer from the scripted model: 5b0c."
    fake = ScriptedAnthropic(
        [tool_use_turn("Bash", {"command": f"touch made-by-claude.txt && echo {marker}", "description": "make a file"}, tool_id),
         text_turn(final)],
        api_key=GATEWAY_KEY,
    )
    with fake:
        run = run_claude_code(fake.url, GATEWAY_KEY, MODEL, "Create the file, then say done.", tmp_path, timeout=RUN_TIMEOUT)
    run.check()
    assert final in run.stdout
    assert (tmp_path / "made-by-claude.txt").exists(), "the Bash tool call did not run"
    turns = fake.turn_requests
    assert len(turns) == 2, [r.path for r in fake.requests]
    # Nothing but the two turns: no probe, no count_tokens, no /api/hello, no /v1/models.
    assert [(r.method, r.path) for r in fake.requests] == [("POST", "/v1/messages?beta=true")] * 2
    for r in turns:
        assert r.headers["x-api-key"] == GATEWAY_KEY
        assert "authorization" not in r.headers
        assert r.headers["anthropic-version"] == "2023-06-01"
        assert r.json()["model"] == MODEL
        assert r.json()["stream"] is True
    second = turns[1].json()
    assistant = second["messages"][-2]
    assert assistant["role"] == "assistant"
    tool_uses = [b for b in assistant["content"] if b.get("type") == "tool_use"]
    assert [(b["id"], b["name"]) for b in tool_uses] == [(tool_id, "Bash")]
    results = _tool_results(second)
    assert [b["tool_use_id"] for b in results] == [tool_id]
    assert marker in _result_text(results[0]) and not results[0].get("is_error")
    write_shapes("claude-code-messages", [request_shape(r) for r in fake.requests])


def test_claude_code_bearer_auth_token(claude, tmp_path):
    """ANTHROPIC_AUTH_TOKEN → `Authorization: Bearer`, no x-api-key (the other way a gateway key arrives)."""
    fake = ScriptedAnthropic([text_turn("bearer ok 31")], api_key=GATEWAY_KEY)
    with fake:
        run = run_claude_code(fake.url, GATEWAY_KEY, MODEL, "Say ok.", tmp_path, auth="bearer", timeout=RUN_TIMEOUT)
    run.check()
    assert "bearer ok 31" in run.stdout
    (r,) = fake.turn_requests
    assert r.headers["authorization"] == f"Bearer {GATEWAY_KEY}"
    assert "x-api-key" not in r.headers


def test_claude_code_json_output_reports_the_session(claude, tmp_path):
    fake = ScriptedAnthropic([text_turn("json mode 88")], api_key=GATEWAY_KEY)
    with fake:
        run = run_claude_code(fake.url, GATEWAY_KEY, MODEL, "Say it.", tmp_path, output_format="json", timeout=RUN_TIMEOUT)
    run.check()
    out = run.json()
    assert out["result"] == "json mode 88" and out["is_error"] is False, out
    assert out["num_turns"] == 1, out


def test_claude_code_rejected_key_fails_the_run(claude, tmp_path):
    """A 401 from the endpoint is a failed run (non-zero exit) after one request (the harness
    sets CLAUDE_CODE_MAX_RETRIES=0), not minutes of backoff or a silent success."""
    fake = ScriptedAnthropic([text_turn("never")], api_key="some-other-key")
    with fake:
        run = run_claude_code(fake.url, GATEWAY_KEY, MODEL, "Say it.", tmp_path, timeout=RUN_TIMEOUT)
    assert not run.ok and not run.timed_out, run.describe()
    assert [r.response_status for r in fake.requests] == [401]
    assert "never" not in run.stdout and run.seconds < 30


def test_claude_code_default_retries_are_kept_on_request(claude, tmp_path):
    """The control for the test above: max_retries=None leaves Claude Code's own retry loop on
    (it resends the 401 with backoff), so the fail-fast really comes from the harness setting."""
    fake = ScriptedAnthropic([text_turn("never")], api_key="some-other-key")
    with fake:
        # Long enough for Claude Code's first backoff even on a loaded machine; the run is
        # expected to be cut by this timeout (retries go on for minutes).
        run = run_claude_code(fake.url, GATEWAY_KEY, MODEL, "Say it.", tmp_path, max_retries=None, timeout=30)
    assert run.timed_out, run.describe()
    assert len(fake.requests) >= 2 and all(r.response_status == 401 for r in fake.requests)


def test_claude_code_bypass_permissions_as_root(claude, tmp_path):
    """bypassPermissions runs a file-writing tool with no allow-list (IS_SANDBOX=1 when root)."""
    tool_id = "toolu_01UnigateBypass"
    fake = ScriptedAnthropic([tool_use_turn("Bash", {"command": "touch bypass.txt"}, tool_id), text_turn("bypassed")],
                             api_key=GATEWAY_KEY)
    with fake:
        run = run_claude_code(fake.url, GATEWAY_KEY, MODEL, "Go.", tmp_path, allowed_tools=None,
                              permission_mode="bypassPermissions", timeout=RUN_TIMEOUT)
    run.check()
    assert (tmp_path / "bypass.txt").exists()
    (result,) = _tool_results(fake.turn_requests[1].json())
    assert result["tool_use_id"] == tool_id and not result.get("is_error")


def test_claude_code_without_permission_denies_the_tool(claude, tmp_path):
    """The control for the two tests above: with no allow-list and no bypass, a write is denied
    (print mode has nobody to ask) — so the allow-list is what makes the round trip run."""
    tool_id = "toolu_01UnigateDenied"
    fake = ScriptedAnthropic([tool_use_turn("Bash", {"command": "touch denied.txt"}, tool_id), text_turn("denied")],
                             api_key=GATEWAY_KEY)
    with fake:
        run = run_claude_code(fake.url, GATEWAY_KEY, MODEL, "Go.", tmp_path, allowed_tools=None, timeout=RUN_TIMEOUT)
    run.check()
    assert not (tmp_path / "denied.txt").exists()
    (result,) = _tool_results(fake.turn_requests[1].json())
    assert result["tool_use_id"] == tool_id and result.get("is_error") is True


# ---------------------------------------------------------------- Claude Code, Bedrock mode


def test_claude_code_bedrock_mode_tool_round_trip(claude, tmp_path):
    tool_id = "toolu_bdrk_01UnigateDirect"
    marker = "bedrock-tool-ran-c4a0"
    final = "Final Bedrock-mode answer: 9e21."
    fake = ScriptedBedrock(
        [tool_use_turn("Bash", {"command": f"touch made-by-bedrock.txt && echo {marker}", "description": "make a file"}, tool_id),
         text_turn(final)],
        bearer_token=BEDROCK_TOKEN,
    )
    with fake:
        run = run_claude_code_bedrock(fake.url, BEDROCK_TOKEN, MODEL, "Create the file, then say done.", tmp_path,
                                      timeout=RUN_TIMEOUT)
    run.check()
    assert final in run.stdout
    assert (tmp_path / "made-by-bedrock.txt").exists(), "the Bash tool call did not run"
    assert all(r.response_status == 200 for r in fake.requests), [(r.path, r.response_status, r.response_body[:200]) for r in fake.requests]
    for r in fake.requests:
        assert r.headers["authorization"] == f"Bearer {BEDROCK_TOKEN}", r.path
        assert r.sigv4 is None  # bearer, not SigV4: no AWS credentials were visible to the CLI
    turns = fake.turn_requests
    assert [r.path for r in turns] == [f"/model/{MODEL}/invoke-with-response-stream"] * 2  # raw ':' in the id
    assert [r.method + " " + r.path for r in fake.requests if r.method == "GET"] == ["GET /inference-profiles?type=SYSTEM_DEFINED"]
    probes = [r for r in fake.requests if r.path.endswith("/invoke")]
    assert all(r.json()["max_tokens"] == 1 for r in probes)
    for r in turns:
        body = r.json()
        assert body["anthropic_version"] == "bedrock-2023-05-31"
        assert "model" not in body and "stream" not in body
    second = turns[1].json()
    tool_uses = [b for b in second["messages"][-2]["content"] if b.get("type") == "tool_use"]
    assert [b["id"] for b in tool_uses] == [tool_id]
    results = _tool_results(second)
    assert [b["tool_use_id"] for b in results] == [tool_id]
    assert marker in _result_text(results[0])
    write_shapes("claude-code-bedrock", [request_shape(r) for r in fake.requests])


def test_claude_code_bedrock_wrong_token_fails_the_run(claude, tmp_path):
    fake = ScriptedBedrock([text_turn("never")], bearer_token=BEDROCK_TOKEN)
    with fake:
        run = run_claude_code_bedrock(fake.url, "not-the-token", MODEL, "Say it.", tmp_path, timeout=RUN_TIMEOUT)
    assert not run.ok and not run.timed_out, run.describe()
    assert fake.requests and all(r.response_status == 403 for r in fake.requests)
    assert "never" not in run.stdout and run.seconds < 30


def test_claude_code_bedrock_sees_no_parent_aws_credentials(claude, tmp_path, monkeypatch):
    """AWS keys in the test process's environment must not reach the CLI: with them set and the
    token refused, a run that fell back to SigV4 would show up as a signed request."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDPARENTSHOULDNOTLEAK")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "parent/secret/should/not/leak")
    monkeypatch.setenv("AWS_PROFILE", "parent-profile")
    fake = ScriptedBedrock([text_turn("isolated 12")], bearer_token=BEDROCK_TOKEN)
    with fake:
        run = run_claude_code_bedrock(fake.url, BEDROCK_TOKEN, MODEL, "Say it.", tmp_path, timeout=RUN_TIMEOUT)
    run.check()
    assert not any(k.startswith("AWS_") and k not in ("AWS_REGION", "AWS_BEARER_TOKEN_BEDROCK", "AWS_CONFIG_FILE",
                                                        "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED")
                   for k in run.env), run.env
    for r in fake.requests:
        assert "AKIDPARENTSHOULDNOTLEAK" not in json.dumps(r.headers)
        assert r.headers.get("authorization") == f"Bearer {BEDROCK_TOKEN}"


def test_claude_code_bedrock_probes_unserved_models_then_carries_on(claude, tmp_path):
    """Claude Code's Bedrock mode probes its default models (InvokeModel, max_tokens 1) and, on
    404, walks down a list of older ones before the configured model: a gateway must answer
    unconfigured models fast, and the session still completes."""
    fake = ScriptedBedrock([text_turn("after probes 0d")], bearer_token=BEDROCK_TOKEN, models={MODEL})
    with fake:
        run = run_claude_code_bedrock(fake.url, BEDROCK_TOKEN, MODEL, "Say it.", tmp_path, timeout=RUN_TIMEOUT)
    run.check()
    assert "after probes 0d" in run.stdout
    probes = [r for r in fake.requests if r.path.endswith("/invoke")]
    refused = [r for r in probes if r.response_status == 404]
    assert len(refused) >= 2, [r.path for r in probes]
    assert all(r.json()["max_tokens"] == 1 for r in probes)
    assert [r.path for r in fake.turn_requests] == [f"/model/{MODEL}/invoke-with-response-stream"]
    write_shapes("claude-code-bedrock-probes", [request_shape(r) for r in fake.requests])


def test_claude_code_bedrock_mode_sigv4(claude, tmp_path):
    """With AWS keys instead of a token, every call (the control-plane GET included) is SigV4
    that botocore accepts, for the raw `:` in the model id too."""
    fake = ScriptedBedrock([text_turn("signed 7a")])  # no bearer_token: SigV4 only
    with fake:
        run = run_claude_code_bedrock(fake.url, None, MODEL, "Say it.", tmp_path, timeout=RUN_TIMEOUT,
                                      aws_credentials=(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN))
    run.check()
    assert "signed 7a" in run.stdout
    assert fake.requests and all(r.sigv4 is not None and r.sigv4.ok for r in fake.requests), \
        [(r.path, r.sigv4 and r.sigv4.message) for r in fake.requests]
    assert all(r.sigv4.access_key == DEFAULT_ACCESS_KEY for r in fake.requests)
    assert all(r.headers["x-amz-security-token"] == DEFAULT_TOKEN for r in fake.requests)
    assert DEFAULT_SECRET not in json.dumps(run.env)


def test_claude_code_bedrock_mode_skip_auth_with_custom_header(claude, tmp_path):
    """CLAUDE_CODE_SKIP_BEDROCK_AUTH=1: no Authorization anywhere; ANTHROPIC_CUSTOM_HEADERS rides on
    the runtime calls but not on the control-plane GET (front-doors.md §3.2)."""
    fake = ScriptedBedrock([text_turn("unsigned 4c")], allow_unauthenticated=True)
    with fake:
        run = run_claude_code_bedrock(fake.url, None, MODEL, "Say it.", tmp_path, timeout=RUN_TIMEOUT,
                                      extra_env={"ANTHROPIC_CUSTOM_HEADERS": f"x-gw-key: {GATEWAY_KEY}"})
    run.check()
    assert "unsigned 4c" in run.stdout
    assert all("authorization" not in r.headers for r in fake.requests)
    posts = [r for r in fake.requests if r.method == "POST"]
    assert posts and all(r.headers.get("x-gw-key") == GATEWAY_KEY for r in posts)
    gets = [r for r in fake.requests if r.method == "GET"]
    assert [r.path for r in gets] == ["/inference-profiles?type=SYSTEM_DEFINED"]
    assert "x-gw-key" not in gets[0].headers
    assert not any(r.path.endswith("/invoke") for r in posts), "no availability probes without auth"
    write_shapes("claude-code-bedrock-skip-auth", [request_shape(r) for r in fake.requests])


# ---------------------------------------------------------------- Codex, Responses


def test_codex_responses_tool_round_trip(codex, tmp_path):
    call_id = "call_UnigateDirectCodex01"
    marker = "codex-tool-ran-2f8b"
    final = "Final Codex answer: 61aa."
    fake = ScriptedResponses(
        [function_call_turn("exec_command", {"cmd": f"touch made-by-codex.txt && echo {marker}"}, call_id),
         responses_text_turn(final)],
        api_key=GATEWAY_KEY,
    )
    with fake:
        run = run_codex(fake.base_url, GATEWAY_KEY, MODEL, "Create the file, then say done.", tmp_path, timeout=RUN_TIMEOUT)
    run.check()
    assert final in run.stdout
    assert (tmp_path / "made-by-codex.txt").exists(), "the exec_command call did not run"
    assert [(r.method, r.path) for r in fake.requests] == [("POST", "/v1/responses")] * 2
    first, second = (r.json() for r in fake.turn_requests)
    declared = {t.get("name") for t in first["tools"]}
    assert "exec_command" in declared, f"Codex's shell tool is not exec_command in this version: {sorted(map(str, declared))}"
    for r in fake.turn_requests:
        assert r.headers["authorization"] == f"Bearer {GATEWAY_KEY}"
        assert r.headers["accept"] == "text/event-stream"
        assert r.json()["model"] == MODEL and r.json()["stream"] is True
    calls = [i for i in second["input"] if i.get("type") == "function_call"]
    outputs = [i for i in second["input"] if i.get("type") == "function_call_output"]
    assert [(c["call_id"], c["name"]) for c in calls] == [(call_id, "exec_command")]
    assert [o["call_id"] for o in outputs] == [call_id]
    assert marker in outputs[0]["output"]
    write_shapes("codex-responses", [request_shape(r) for r in fake.requests])


def test_codex_rejected_key_fails_the_run(codex, tmp_path):
    fake = ScriptedResponses([responses_text_turn("never")], api_key="some-other-key")
    with fake:
        run = run_codex(fake.base_url, GATEWAY_KEY, MODEL, "Say it.", tmp_path, timeout=RUN_TIMEOUT)
    assert not run.ok and not run.timed_out, run.describe()
    assert [r.response_status for r in fake.requests] == [401]  # request_max_retries = 0
    assert "never" not in run.stdout and run.seconds < 30


# ---------------------------------------------------------------- harness robustness


def test_missing_cli_fails_fast(monkeypatch, tmp_path):
    monkeypatch.setenv("UNIGATE_CLAUDE_BIN", str(tmp_path / "no-claude"))
    monkeypatch.setenv("UNIGATE_CODEX_BIN", str(tmp_path / "no-codex"))
    t = time.monotonic()
    with pytest.raises(ClientNotInstalled, match="scripts/setup.sh"):
        run_claude_code("http://127.0.0.1:9", "k", MODEL, "hi", tmp_path)
    with pytest.raises(ClientNotInstalled, match="scripts/setup.sh"):
        run_claude_code_bedrock("http://127.0.0.1:9", "k", MODEL, "hi", tmp_path)
    with pytest.raises(ClientNotInstalled, match="scripts/setup.sh"):
        run_codex("http://127.0.0.1:9/v1", "k", MODEL, "hi", tmp_path)
    assert time.monotonic() - t < 1


def test_timeout_kills_the_run_and_its_children(claude, tmp_path):
    """A stalled endpoint: the run ends at its timeout, reported as timed out, and the CLI and
    the background job its tool started (in a session of its own) are gone."""
    def stall(rec, body, index):
        fake.sleep(60)
        return text_turn("too late")

    fake = ScriptedAnthropic(
        [tool_use_turn("Bash", {"command": "tail -f /dev/null >/dev/null 2>&1 & echo $! > child.pid; echo started"}, "toolu_01Stall"), stall],
        api_key=GATEWAY_KEY,
    )
    with fake:
        t = time.monotonic()
        run = run_claude_code(fake.url, GATEWAY_KEY, MODEL, "Go.", tmp_path, timeout=8)
        elapsed = time.monotonic() - t
    assert run.timed_out and not run.ok and run.returncode is None
    assert elapsed < 8 + 12, elapsed
    assert len(fake.turn_requests) == 2, "the stall was never reached"
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), f"the tool's background process {child} outlived the run"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# ---------------------------------------------------------------- hermetic: no lookups besides loopback

NETCHECK = HERE / "clients_netcheck.py"


def _netns_available() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    probe = subprocess.run(["unshare", "-n", "-m", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


@pytest.mark.parametrize("client", ["claude-code", "claude-code-bedrock", "codex"])
def test_clients_look_up_no_host(client, claude, codex):
    """Each CLI, run exactly as the harness runs it, inside a network namespace that has only
    loopback and a resolv.conf pointing at a logging DNS stub: the session completes and the
    CLI resolved no host name at all (no telemetry, update check, plugin sync, error report)."""
    if not _netns_available():
        pytest.skip("needs root with unshare and ip (network + mount namespaces) to isolate the CLI")
    p = subprocess.run(["unshare", "-n", "-m", sys.executable, str(NETCHECK), client], capture_output=True, text=True,
                       timeout=RUN_TIMEOUT + 30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, f"netcheck failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    report = json.loads(p.stdout.strip().splitlines()[-1])
    assert report["ok"], report
    assert report["dns_queries"] == [], f"{client} looked up host names: {report['dns_queries']}"
    assert report["turns"] >= 1


def test_finished_run_leaves_no_tool_process_behind(claude, tmp_path):
    """Claude Code's Bash tool starts commands in a new session, so a background job would outlive
    a normal run; the harness's subreaper kills it when the CLI exits."""
    fake = ScriptedAnthropic(
        [tool_use_turn("Bash", {"command": "tail -f /dev/null >/dev/null 2>&1 & echo $! > child.pid; echo started"}, "toolu_01Bg"),
         text_turn("left a job running")],
        api_key=GATEWAY_KEY,
    )
    with fake:
        run = run_claude_code(fake.url, GATEWAY_KEY, MODEL, "Go.", tmp_path, timeout=RUN_TIMEOUT)
    run.check()
    child = int((tmp_path / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), f"the tool's background process {child} outlived the run"
