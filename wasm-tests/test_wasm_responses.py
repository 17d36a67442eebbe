"""The Responses door (`POST /v1/responses`: the Codex CLI, the OpenAI Agents SDK,
`client.responses`) in the built filter inside real Envoy, against the fakes: both sides of
every exchange.

- Routing: Claude to InvokeModel and Nova to Converse (SigV4 verified by the fake, canonical
  path, the translated body), OpenAI models relayed to `{openai_base_url}/responses` with only
  `model` changed and the answer back byte for byte, and with `openai_responses: false`
  translated to `/chat/completions`; which cluster was hit; the client key never goes up.
- Answers: Response objects (validated with the openai SDK's pydantic models when importable),
  the SSE grammar (an `event:` line per event, `sequence_number` 0, 1, 2, …, no `[DONE]`, one
  terminal event), streams written 1/7/64 bytes at a time giving the same events, events
  reaching the client as they come, tool calls, reasoning sealed and replayed.
- Errors in OpenAI's shape: the filter's own (401, 405, 404, stateless 400s with `param`, bad
  bodies, unknown model, 413), Bedrock's and OpenAI's mapped, failures mid-stream as
  `response.failed`, resets and silence bounded in time.
- Usage: `requests_total` / `tokens_total` for endpoint `responses` and the JSON access log
  (envoy/envoy.yaml's format) for each provider, streamed or not.
- After every test, no Wasm VM trapped or was replaced.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from fakes import DEFAULT_TOKEN
from fakes.responses import ScriptedResponses, function_call_turn, response_events, sse_frames, text_turn
from fakes.server import Reply
from fakes.usage import streamed_usage
from messages_checks import claude_stream_events
from metric_names import counter, key_label, requests_total, tokens_total
from wasm_checks import assert_bedrock_upstream, assert_error, assert_forwarded, assert_openai_upstream
from wasm_harness import CLIENT_KEYS, UPSTREAM_OPENAI_KEY, Client, default_clusters, default_env, default_plugin_config, paced, split_bytes

try:  # the SDK's own models, as tests/test_responses_shapes.py uses them
    from openai.types.responses import Response as SdkResponse
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    SDK_EVENT = TypeAdapter(ResponseStreamEvent)
except ImportError:  # pragma: no cover - the shape checks below still run
    SdkResponse = SDK_EVENT = None

REPO = Path(__file__).resolve().parents[1]
KEY = CLIENT_KEYS[0]
NAMED_KEY = "wasm-responses-named-key"
NAMED = "codex-team"
IDLE_S = 1  # the route idle timeout and upstream_timeout_seconds of this module's Envoy
CAP = 65536  # max_request_bytes of this module's Envoy

HAIKU_ID = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET4_ID = "us.anthropic.claude-sonnet-4-20250514-v1:0"
NOVA_ID = "amazon.nova-pro-v1:0"
ALIAS = "codex-model"  # configured alias of an OpenAI model
ALIAS_TARGET = "gpt-4.1"

TRAP_MARKERS = ("panicked", "Function: proxy_on_", "wasm trap", "Uncaught RuntimeError", "unreachable executed")
TERMINAL = ("response.completed", "response.incomplete", "response.failed")
ENDS = TERMINAL + ("error",)  # `error`: a stream that failed before or outside a response
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather for a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


def model_path(model_id: str, op: str) -> str:
    return f"/model/{quote(model_id, safe='')}/{op}"


def steer(**kw) -> dict:
    return {f"x-fake-{k.replace('_', '-')}": str(v) for k, v in kw.items()}


# ---------------------------------------------------------------- Envoys


class VmWatch:
    """Baseline of an Envoy's Wasm VM counters, to assert that no VM trapped or was replaced."""

    def __init__(self, envoy):
        self.envoy = envoy
        self.created = self._created()

    def _created(self) -> int:
        name = "wasm.envoy.wasm.runtime.v8.created"
        return int(self.envoy.stats(name).get(name, 0))

    def check(self):
        reloads = {k: v for k, v in self.envoy.stats("wasm.unigate.vm_reload").items() if k.startswith("wasm.unigate.vm_reload")}
        assert reloads and all(v == "0" for v in reloads.values()), f"a Wasm VM was reloaded: {reloads}"
        assert self._created() == self.created, "new V8 VMs were created: a VM was replaced"
        bad = [ln for ln in self.envoy.log_since(0).splitlines() if any(m in ln for m in TRAP_MARKERS)]
        assert not bad, "Wasm trap/panic in Envoy's log:\n" + "\n".join(bad[:10])


def _access_log_config() -> list:
    """envoy/envoy.yaml's access log (what `unigate serve` renders), to Envoy's stdout."""
    cfg = next(yaml.safe_load_all((REPO / "envoy" / "envoy.yaml").read_text()))
    hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["access_log"]


@pytest.fixture(scope="module")
def upstream_responses():
    """OpenAI's Responses API (scripted), behind the `openai` cluster of the main Envoy."""
    f = ScriptedResponses(api_key=UPSTREAM_OPENAI_KEY).start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def _fresh_responses(upstream_responses):
    upstream_responses.clear()
    yield
    upstream_responses.clear()


@pytest.fixture(scope="module")
def rgw(start_envoy, fakes, upstream_responses):
    cfg = default_plugin_config(
        fakes, openai_base_url=upstream_responses.base_url, upstream_timeout_seconds=IDLE_S, max_request_bytes=CAP,
        api_keys=[{"key": NAMED_KEY, "name": NAMED}], aliases={ALIAS: ALIAS_TARGET},
    )
    e = start_envoy("responses", cfg, default_env(), default_clusters(fakes, openai=upstream_responses.port),
                    idle_timeout_s=IDLE_S, hcm_extra={"access_log": _access_log_config()})
    e.watch = VmWatch(e)
    return e


@pytest.fixture
def rc(rgw):
    """A client of the main Envoy; after the test, no VM may have trapped."""
    yield Client(rgw.url)
    rgw.watch.check()


@pytest.fixture(scope="module")
def cgw(start_envoy, fakes):
    """`openai_responses: false`: OpenAI models go to FakeOpenAI's /chat/completions."""
    e = start_envoy("responses-via-chat", default_plugin_config(fakes, openai_responses=False), default_env(), default_clusters(fakes))
    e.watch = VmWatch(e)
    return e


@pytest.fixture
def cc(cgw):
    yield Client(cgw.url)
    cgw.watch.check()


def post(client, body, headers=None, path="/v1/responses", **kw):
    return client.request("POST", path, body, headers=headers, **kw)


# ---------------------------------------------------------------- shape checks


def sdk_validate_response(obj: dict) -> None:
    if SdkResponse is not None:
        SdkResponse.model_validate(obj)


def sdk_validate_event(data: dict) -> None:
    if SDK_EVENT is None:
        return
    if data["type"] == "response.failed":
        # The SDK's ResponseError.code is a closed list; the gateway's own codes are outside it
        # (tests/test_responses_shapes.py does the same).
        SdkResponse.model_validate({**data["response"], "error": None})
        return
    SDK_EVENT.validate_python(data, strict=False)
    if "response" in data:
        SdkResponse.model_validate(data["response"])


def output_text(output: list) -> str:
    return "".join(c["text"] for o in output if o["type"] == "message" for c in o["content"] if c["type"] == "output_text")


def assert_usage(usage: dict, n_in=None, n_out=None) -> None:
    for k in ("input_tokens", "output_tokens", "total_tokens"):
        assert type(usage[k]) is int, usage
    assert type(usage["input_tokens_details"]["cached_tokens"]) is int
    assert type(usage["output_tokens_details"]["reasoning_tokens"]) is int
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"], usage
    if n_in is not None:
        assert (usage["input_tokens"], usage["output_tokens"]) == (n_in, n_out), usage


def assert_response(resp, model: str, text=None, status="completed") -> dict:
    """A buffered answer: one Response object with the client's model name."""
    assert resp.status == 200, resp
    assert resp.content_type.startswith("application/json"), resp.headers
    assert int(resp.headers["content-length"]) == len(resp.body)
    body = resp.json()
    sdk_validate_response(body)
    assert body["object"] == "response" and body["status"] == status, body
    assert re.fullmatch(r"resp_[0-9a-f]{32}", body["id"]), body["id"]
    assert body["model"] == model
    assert body["store"] is False and body["tools"] == [] and body["error"] is None
    for i, item in enumerate(body["output"]):
        assert item["id"].endswith(f"_{i}") and body["id"][5:] in item["id"], (i, item["id"])
    if text is not None:
        assert output_text(body["output"]) == text, body["output"]
    assert_usage(body["usage"])
    return body


def sse_frames_of(raw: bytes) -> list:
    """(event name, data) of every complete frame; each is exactly `event:` + `data:`."""
    text = raw.decode("utf-8")
    out = []
    for frame in text.split("\n\n")[:-1]:
        lines = frame.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), frame[:300]
        out.append((lines[0][len("event: "):], json.loads(lines[1][len("data: "):])))
    return out


def assert_stream_prefix(raw: bytes) -> list:
    """What every Responses stream (also a cut one) must be: `event:`/`data:` frames whose
    type is the event name, numbered 0, 1, 2, … without gaps, never `[DONE]`, starting with
    response.created and response.in_progress, output items one at a time in order, and
    nothing after a terminal event."""
    assert b"[DONE]" not in raw, raw[-300:]
    complete = raw[: raw.rfind(b"\n\n") + 2] if b"\n\n" in raw else b""
    evs = sse_frames_of(complete)
    for name, data in evs:
        assert data["type"] == name, (name, data)
    assert [d["sequence_number"] for _, d in evs] == list(range(len(evs))), [d["sequence_number"] for _, d in evs]
    names = [n for n, _ in evs]
    assert names[:2] == ["response.created", "response.in_progress"][: len(names)], names[:3]
    ends = [i for i, n in enumerate(names) if n in ENDS]
    assert ends in ([], [len(names) - 1]), names
    if evs:
        rid = evs[0][1]["response"]["id"]
        for _, d in evs:
            if "response" in d:
                assert d["response"]["id"] == rid
    done, open_id = [], None
    for name, d in evs[2:]:
        if name in ENDS:
            break
        if name == "response.output_item.added":
            assert open_id is None, f"item {d['output_index']} added while another is open"
            assert d["output_index"] == len(done), d
            open_id = d["item"]["id"]
        elif name == "response.output_item.done":
            assert d["output_index"] == len(done) and d["item"]["id"] == open_id, d
            done.append(d["item"])
            open_id = None
        else:
            assert open_id is not None and d["output_index"] == len(done), (name, d)
            if "item_id" in d:
                assert d["item_id"] == open_id, (name, d)
    return evs


def assert_stream(raw: bytes, model=None, terminal="response.completed") -> tuple:
    """A complete Responses stream: the grammar, SDK-valid events, the terminal event's
    Response holding the items streamed. Returns (events, final Response)."""
    evs = assert_stream_prefix(raw)
    assert raw.endswith(b"\n\n"), raw[-100:]
    assert evs and evs[-1][0] == terminal, [n for n, _ in evs][-3:]
    for _, d in evs:
        sdk_validate_event(d)
        if model is not None and "response" in d:
            assert d["response"]["model"] == model, d["response"]["model"]
    final = evs[-1][1]["response"]
    if terminal != "response.failed":
        assert final["output"] == [d["item"] for n, d in evs if n == "response.output_item.done"]
        deltas = "".join(d["delta"] for n, d in evs if n == "response.output_text.delta")
        assert deltas == output_text(final["output"])
        assert_usage(final["usage"])
    status = {"response.completed": "completed", "response.incomplete": "incomplete", "response.failed": "failed"}[terminal]
    assert final["status"] == status
    return evs, final


def _norm(v, key=None):
    """Per-request ids (derived from Envoy's request id) and timestamps blanked."""
    if isinstance(v, dict):
        return {k: _norm(x, k) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_norm(x) for x in v]
    if key in ("id", "item_id") and isinstance(v, str):
        return re.sub(r"[0-9a-f]{32}", "<rid>", v)
    if key == "created_at":
        return 0
    return v


def assert_same_events(got: list, want: list) -> None:
    got, want = _norm(got), _norm(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g == w, f"event {i} differs:\n got  {g}\n want {w}"
    assert len(got) == len(want), ([n for n, _ in got], [n for n, _ in want])


def read_stream(port: int, body: dict, headers: dict, timeout: float = 10) -> tuple:
    """A raw exchange that survives a cut body: (status, headers, body bytes, how it ended,
    seconds)."""
    payload = json.dumps(body).encode()
    head = ["POST /v1/responses HTTP/1.1", "Host: gw", f"Authorization: Bearer {KEY}", "Content-Type: application/json",
            f"Content-Length: {len(payload)}"] + [f"{k}: {v}" for k, v in headers.items()]
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        r = http.client.HTTPResponse(s)
        r.begin()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        try:
            data, ended = r.read(), "complete"
        except http.client.IncompleteRead as e:
            data, ended = e.partial, "incomplete"
        except (ConnectionResetError, http.client.HTTPException) as e:
            data, ended = b"", f"error:{type(e).__name__}"
        return r.status, hdrs, data, ended, time.monotonic() - t


# ---------------------------------------------------------------- routing


def _claude_content(sent_messages):
    """Bedrock Claude messages with string content as one text block (both are valid)."""
    out = []
    for m in sent_messages:
        c = m["content"]
        out.append({"role": m["role"], "content": [{"type": "text", "text": c}] if isinstance(c, str) else c})
    return out


@pytest.mark.parametrize(
    "model,model_id,max_output,want_max",
    [
        pytest.param("claude-3-haiku", HAIKU_ID, 77, 77, id="alias-with-limit"),
        pytest.param("claude-3-haiku", HAIKU_ID, None, 4096, id="claude3-own-limit"),
        pytest.param(SONNET4_ID, SONNET4_ID, None, 32000, id="claude4-profile-own-limit"),
    ],
)
def test_claude_is_invoke_model_signed(rc, fakes, upstream_responses, model, model_id, max_output, want_max):
    body = {"model": model, "instructions": "Be brief.", "input": "route me", "temperature": 0.5}
    if max_output:
        body["max_output_tokens"] = max_output
    spoof = {"x-amz-security-token": "client-token", "x-amz-date": "20200101T000000Z", "x-api-key": KEY}
    resp = post(rc, body, headers=spoof)
    assert fakes.openai.requests == [] and upstream_responses.requests == [] and len(fakes.bedrock.requests) == 1
    rec = fakes.bedrock.last()
    sent = assert_bedrock_upstream(rec, model_path(model_id, "invoke"))
    assert rec.headers["x-amz-security-token"] == DEFAULT_TOKEN and rec.headers["x-amz-date"] != "20200101T000000Z"
    assert rec.response_status == 200, rec.response_body
    assert sent["anthropic_version"] == "bedrock-2023-05-31"
    assert "model" not in sent and "stream" not in sent and "input" not in sent
    assert sent["max_tokens"] == want_max, "Codex sends no limit: Claude gets its own output limit"
    assert sent["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}]), sent["system"]
    assert _claude_content(sent["messages"]) == [{"role": "user", "content": [{"type": "text", "text": "route me"}]}]
    assert sent["temperature"] == 0.5
    out = assert_response(resp, model, "echo: route me")
    h = rec.response_headers
    assert_usage(out["usage"], int(h["x-amzn-bedrock-input-token-count"]), int(h["x-amzn-bedrock-output-token-count"]))
    assert out["temperature"] == 0.5 and out["max_output_tokens"] == max_output
    assert [o["type"] for o in out["output"]] == ["message"] and out["output"][0]["role"] == "assistant"


@pytest.mark.parametrize("model", ["nova-pro", NOVA_ID])
def test_nova_is_converse_signed(rc, fakes, upstream_responses, model):
    body = {"model": model, "instructions": "Be brief.", "max_output_tokens": 50, "top_p": 0.9,
            "input": [{"role": "developer", "content": "Also polite."},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "converse me"}]}]}
    resp = post(rc, body)
    assert fakes.openai.requests == [] and upstream_responses.requests == [] and len(fakes.bedrock.requests) == 1
    rec = fakes.bedrock.last()
    sent = assert_bedrock_upstream(rec, model_path(NOVA_ID, "converse"))
    assert rec.response_status == 200, rec.response_body
    assert "\n".join(s["text"] for s in sent["system"]).split() == "Be brief. Also polite.".split(), sent["system"]
    assert sent["messages"] == [{"role": "user", "content": [{"text": "converse me"}]}]
    assert sent["inferenceConfig"]["maxTokens"] == 50 and sent["inferenceConfig"]["topP"] == 0.9
    out = assert_response(resp, model, "echo: converse me")
    u = json.loads(rec.response_body)["usage"]
    assert_usage(out["usage"], u["inputTokens"], u["outputTokens"])


def test_openai_model_is_relayed_with_only_the_model_changed(rc, fakes, upstream_responses):
    upstream_responses.script([text_turn("relayed answer", reasoning="Thought.")])
    body = {"model": ALIAS, "instructions": "Be brief.", "tools": TOOLS + [{"type": "web_search"}], "store": True,
            "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "low", "summary": "auto"},
            "metadata": {"a": "b"}, "temperature": 0.25, "a_field_from_the_future": {"x": [1, 2.5, None, "ü"]},
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "relay me"},
                                                   {"type": "input_image", "image_url": "https://example.com/a.png"}]},
                      {"type": "item_reference", "id": "msg_1"}]}
    resp = post(rc, body, headers={"x-api-key": KEY})
    assert fakes.bedrock.requests == [] and fakes.openai.requests == [] and len(upstream_responses.requests) == 1
    rec = upstream_responses.last()
    assert_forwarded(rec, "/v1/responses", "responses")
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_OPENAI_KEY}" and "x-api-key" not in rec.headers
    assert rec.json() == {**body, "model": ALIAS_TARGET}, "relayed as sent, only `model` routed"
    assert resp.status == 200, resp
    assert resp.content_type.startswith("application/json")
    assert resp.body == rec.response_body, "OpenAI's answer comes back byte for byte"
    sdk_validate_response(resp.json())


def test_relay_keeps_stateful_fields_openai_serves(rc, fakes, upstream_responses):
    """Stateful features are OpenAI's to serve when relayed: not refused by the gateway."""
    canned = json.dumps({"id": "resp_canned", "object": "response", "status": "completed", "model": ALIAS_TARGET,
                         "output": [], "usage": {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6}})
    body = {"model": "gpt-4o", "input": "and then?", "previous_response_id": "resp_prev", "background": True,
            "conversation": {"id": "conv_1"}, "prompt": {"id": "pmpt_1"}}
    resp = post(rc, body, headers={"x-fake-body": canned})
    assert len(upstream_responses.requests) == 1 and fakes.bedrock.requests == []
    assert upstream_responses.last().json() == body
    assert resp.status == 200 and resp.body == canned.encode(), resp


@pytest.mark.parametrize("piece", [None, 1, 7])
def test_openai_stream_is_relayed_byte_for_byte(rc, fakes, upstream_responses, piece):
    upstream_responses.script([function_call_turn("get_weather", {"city": "Porto"}, text="Checking ✓.")])
    headers = steer(chunk_bytes=piece, chunk_delay_ms=0) if piece else {}
    resp = post(rc, {"model": ALIAS, "input": "Weather?", "tools": TOOLS, "stream": True}, headers=headers, timeout=30)
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream"), resp
    rec = upstream_responses.last()
    assert rec.json()["model"] == ALIAS_TARGET and rec.json()["stream"] is True
    deadline = time.monotonic() + 3
    while len(rec.response_body) < len(resp.body) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert resp.body == rec.response_body, "a relayed stream is OpenAI's bytes"
    _, final = assert_stream(resp.body, model=ALIAS_TARGET)
    assert [o["type"] for o in final["output"]] == ["message", "function_call"]
    assert json.loads(final["output"][1]["arguments"]) == {"city": "Porto"}


def test_openai_responses_false_translates_to_chat_completions(cc, fakes):
    resp = post(cc, {"model": "gpt-4o", "instructions": "Be brief.", "input": "chat me", "max_output_tokens": 40})
    assert fakes.bedrock.requests == [] and len(fakes.openai.requests) == 1
    rec = fakes.openai.last()
    sent = assert_openai_upstream(rec, "/v1/chat/completions")
    assert sent["model"] == "gpt-4o" and "input" not in sent and "instructions" not in sent
    assert sent["messages"][-1] == {"role": "user", "content": "chat me"} or \
        sent["messages"][-1] == {"role": "user", "content": [{"type": "text", "text": "chat me"}]}, sent["messages"]
    assert sent["messages"][0]["role"] in ("system", "developer") and "Be brief." in json.dumps(sent["messages"][0])
    assert 40 in (sent.get("max_tokens"), sent.get("max_completion_tokens")), sent
    out = assert_response(resp, "gpt-4o", "echo: chat me")
    u = json.loads(rec.response_body)["usage"]
    assert_usage(out["usage"], u["prompt_tokens"], u["completion_tokens"])


@pytest.mark.parametrize("piece", [None, 3])
def test_openai_responses_false_stream(cc, fakes, piece):
    headers = steer(chunk_bytes=piece, chunk_delay_ms=0) if piece else {}
    resp = post(cc, {"model": "gpt-4o", "input": "stream chat", "stream": True}, headers=headers, timeout=30)
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream"), resp
    rec = fakes.openai.last()
    sent = assert_openai_upstream(rec, "/v1/chat/completions")
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}, "the terminal event needs usage"
    _, final = assert_stream(resp.body, model="gpt-4o")
    assert output_text(final["output"]) == "echo: stream chat"
    assert_usage(final["usage"], *streamed_usage(rec))


def test_openai_responses_false_applies_the_stateless_rules(cc, fakes):
    resp = post(cc, {"model": "gpt-4o", "input": "x", "previous_response_id": "resp_1"})
    assert_error(resp, 400, "invalid_request_error", code="unsupported_parameter", param="previous_response_id")
    assert fakes.upstream_requests() == []


# ---------------------------------------------------------------- streams


@pytest.mark.parametrize(
    "model,model_id,op",
    [
        pytest.param("claude-3-haiku", HAIKU_ID, "invoke-with-response-stream", id="claude"),
        pytest.param(SONNET4_ID, SONNET4_ID, "invoke-with-response-stream", id="claude4-profile"),
        pytest.param(NOVA_ID, NOVA_ID, "converse-stream", id="converse"),
    ],
)
def test_bedrock_stream_grammar(rc, fakes, model, model_id, op):
    resp = post(rc, {"model": model, "input": "ünï ✓ stream me please", "stream": True}, timeout=20)
    assert resp.status == 200, resp
    assert resp.content_type.startswith("text/event-stream") and "content-length" not in resp.headers, resp.headers
    rec = fakes.bedrock.last()
    sent = assert_bedrock_upstream(rec, model_path(model_id, op))
    assert "stream" not in sent and "model" not in sent
    evs, final = assert_stream(resp.body, model=model)
    assert output_text(final["output"]) == "echo: ünï ✓ stream me please"
    assert len([n for n, _ in evs if n == "response.output_text.delta"]) > 1, "deltas as they came"
    assert_usage(final["usage"], *streamed_usage(rec))
    assert re.fullmatch(r"resp_[0-9a-f]{32}", final["id"])


@pytest.mark.parametrize("piece", [1, 7, 64])
@pytest.mark.parametrize("model", ["claude-3-haiku", NOVA_ID])
def test_stream_split_anywhere_gives_the_same_events(rc, fakes, model, piece):
    body = {"model": model, "input": "ünï ✓ çödé split stream", "stream": True}
    whole = post(rc, body)
    split = post(rc, body, headers=steer(chunk_bytes=piece, chunk_delay_ms=0), timeout=30)
    assert whole.status == 200 and split.status == 200, split
    ev_whole, _ = assert_stream(whole.body, model=model)
    ev_split, final = assert_stream(split.body, model=model)
    assert_same_events(ev_split, ev_whole)
    assert output_text(final["output"]) == "echo: ünï ✓ çödé split stream"


@pytest.mark.parametrize("model", ["claude-3-haiku", ALIAS])
def test_stream_reaches_the_client_as_it_comes(rc, fakes, upstream_responses, model):
    """With 200 ms between upstream pieces, the client has the first events long before the
    terminal one: the filter translates (or relays) piece by piece."""
    upstream_responses.script([text_turn("one two three four")])
    conn = rc.connection(15)
    try:
        conn.request("POST", "/v1/responses", body=json.dumps({"model": model, "input": "one two three four", "stream": True}),
                     headers={"authorization": f"Bearer {KEY}", "content-type": "application/json", **steer(chunk_delay_ms=200)})
        r = conn.getresponse()
        t0 = time.monotonic()
        arrivals, buf = [], b""
        while True:
            piece = r.read1(65536)
            if not piece:
                break
            buf += piece
            arrivals.append((time.monotonic() - t0, buf.count(b"\n\n")))
    finally:
        conn.close()
    assert r.status == 200
    assert_stream(buf)
    first_event_at = next(t for t, n in arrivals if n >= 1)
    assert arrivals[-1][0] - first_event_at > 0.5, arrivals


def test_claude_stream_with_thinking_and_parallel_calls_in_pieces(rc, fakes):
    evs = claude_stream_events([{"type": "thinking", "thinking": "Two cities: ✓ two calls.", "signature": "EqoBCkYIsig=="},
                                {"type": "text", "text": "Checking ünï."},
                                {"type": "tool_use", "id": "toolu_A", "name": "get_weather", "input": {"city": "Porto"}},
                                {"type": "tool_use", "id": "toolu_B", "name": "get_weather", "input": {"city": "Oslo"}}],
                               stop_reason="tool_use", usage=(40, 30), pings=True)
    headers = {"x-fake-stream-events": json.dumps([{"chunk": e} for e in evs]), **steer(chunk_bytes=5, chunk_delay_ms=0)}
    body = {"model": SONNET4_ID, "input": "Porto and Oslo?", "tools": TOOLS, "stream": True,
            "reasoning": {"effort": "low"}, "include": ["reasoning.encrypted_content"]}
    resp = post(rc, body, headers=headers, timeout=30)
    assert resp.status == 200, resp
    sent = assert_bedrock_upstream(fakes.bedrock.last(), model_path(SONNET4_ID, "invoke-with-response-stream"))
    assert sent["tools"] == [{"name": "get_weather", "description": "Weather for a city.", "input_schema": TOOLS[0]["parameters"]}]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    events, final = assert_stream(resp.body, model=SONNET4_ID)
    assert [o["type"] for o in final["output"]] == ["reasoning", "message", "function_call", "function_call"]
    reasoning = final["output"][0]
    assert reasoning["summary"] == [{"type": "summary_text", "text": "Two cities: ✓ two calls."}]
    assert reasoning["encrypted_content"].startswith("ug1:")
    calls = final["output"][2:]
    assert [(c["call_id"], c["name"], json.loads(c["arguments"])) for c in calls] == \
        [("toolu_A", "get_weather", {"city": "Porto"}), ("toolu_B", "get_weather", {"city": "Oslo"})]
    done = [d for n, d in events if n == "response.function_call_arguments.done"]
    assert [json.loads(d["arguments"]) for d in done] == [{"city": "Porto"}, {"city": "Oslo"}]
    assert_usage(final["usage"], 40, 30)


def test_codex_custom_tool_comes_back_as_custom_tool_call(rc, fakes):
    """Codex's `apply_patch` is a `custom` (free-form) tool: Claude gets a one-string
    function with the grammar in its description, and its call streams back as a
    `custom_tool_call` whose `input` is that string."""
    patch = "*** Begin Patch\n*** Update File: ä.rs\n*** End Patch\n"
    tools = [{"type": "custom", "name": "apply_patch", "description": "Patch files.",
              "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}}]
    evs = claude_stream_events([{"type": "tool_use", "id": "toolu_P", "name": "apply_patch", "input": {"input": patch}}],
                               stop_reason="tool_use")
    headers = {"x-fake-stream-events": json.dumps([{"chunk": e} for e in evs]), **steer(chunk_bytes=7, chunk_delay_ms=0)}
    resp = post(rc, {"model": "claude-sonnet-4", "input": "patch it", "tools": tools, "stream": True}, headers=headers)
    sent = assert_bedrock_upstream(fakes.bedrock.last(), model_path(SONNET4_ID, "invoke-with-response-stream"))
    (tool,) = sent["tools"]
    assert tool["name"] == "apply_patch" and "start: /.+/" in tool["description"]
    assert tool["input_schema"]["properties"]["input"]["type"] == "string" and tool["input_schema"]["required"] == ["input"]
    events, final = assert_stream(resp.body, model="claude-sonnet-4")
    assert [n for n, _ in events][2:-1] == ["response.output_item.added", "response.custom_tool_call_input.delta",
                                            "response.custom_tool_call_input.done", "response.output_item.done"]
    (item,) = final["output"]
    assert (item["type"], item["call_id"], item["name"], item["input"]) == ("custom_tool_call", "toolu_P", "apply_patch", patch)


def test_converse_parallel_tool_calls_stream_as_two_items(rc, fakes):
    cevs = [{"event": "messageStart", "payload": {"role": "assistant"}},
            {"event": "contentBlockStart", "payload": {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}},
            {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "{\"city\": \"Po"}}}},
            {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"toolUse": {"input": "rto\"}"}}}},
            {"event": "contentBlockStop", "payload": {"contentBlockIndex": 0}},
            {"event": "contentBlockStart", "payload": {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "tooluse_2", "name": "get_weather"}}}},
            {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{\"city\": \"Oslo\"}"}}}},
            {"event": "contentBlockStop", "payload": {"contentBlockIndex": 1}},
            {"event": "messageStop", "payload": {"stopReason": "tool_use"}},
            {"event": "metadata", "payload": {"usage": {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}, "metrics": {"latencyMs": 5}}}]
    headers = {"x-fake-stream-events": json.dumps(cevs), **steer(chunk_bytes=3, chunk_delay_ms=0)}
    resp = post(rc, {"model": NOVA_ID, "input": "Porto and Oslo?", "tools": TOOLS, "tool_choice": "required", "stream": True},
                headers=headers, timeout=30)
    sent = assert_bedrock_upstream(fakes.bedrock.last(), model_path(NOVA_ID, "converse-stream"))
    assert sent["toolConfig"]["toolChoice"] == {"any": {}}
    assert sent["toolConfig"]["tools"] == [{"toolSpec": {"name": "get_weather", "description": "Weather for a city.",
                                                         "inputSchema": {"json": TOOLS[0]["parameters"]}}}]
    events, final = assert_stream(resp.body, model=NOVA_ID)
    assert [e["output_index"] for n, e in events if n == "response.output_item.added"] == [0, 1]
    assert [(o["type"], o["call_id"], json.loads(o["arguments"])) for o in final["output"]] == \
        [("function_call", "tooluse_1", {"city": "Porto"}), ("function_call", "tooluse_2", {"city": "Oslo"})]
    assert_usage(final["usage"], 11, 7)


def test_tool_choice_and_parallel_calls_reach_claude(rc, fakes):
    resp = post(rc, {"model": "claude-3-haiku", "input": "x", "tools": TOOLS + [{"type": "web_search"}],
                     "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": False})
    out = assert_response(resp, "claude-3-haiku")
    sent = assert_bedrock_upstream(fakes.bedrock.last(), model_path(HAIKU_ID, "invoke"))
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
    assert [t["name"] for t in sent["tools"]] == ["get_weather"], "built-in tools are dropped, not refused"
    assert out["tool_choice"] == {"type": "function", "name": "get_weather"} and out["parallel_tool_calls"] is False


def test_forcing_a_builtin_tool_is_400(rc, fakes):
    resp = post(rc, {"model": "claude-3-haiku", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}})
    assert_error(resp, 400, "invalid_request_error", param="tool_choice.type", message_contains="web_search")
    assert fakes.upstream_requests() == []


def test_target_format_cannot_be_chosen_on_this_door(rc, fakes):
    resp = post(rc, {"model": "claude-3-haiku", "input": "tf"}, path="/v1/responses?target_format=bedrock_claude",
                headers={"x-target-format": "openai"})
    assert_response(resp, "claude-3-haiku", "echo: tf")
    assert "x-target-format" not in fakes.bedrock.last().headers


@pytest.mark.parametrize("model", ["claude-3-haiku", NOVA_ID])
def test_long_streamed_answer(rc, fakes, model):
    """About 30 KB of answer in ~3,000 deltas: every byte arrives, in order, in the grammar."""
    text = " ".join(f"wörd{i}" for i in range(3000))
    resp = post(rc, {"model": model, "input": text, "stream": True}, timeout=60)
    assert resp.status == 200, resp
    events, final = assert_stream(resp.body, model=model)
    assert output_text(final["output"]) == "echo: " + text
    assert len(events) > 3000


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
def test_max_tokens_is_incomplete(rc, fakes, stream):
    if stream:
        evs = claude_stream_events([{"type": "text", "text": "cut sho"}], stop_reason="max_tokens", usage=(5, 3))
        resp = post(rc, {"model": "claude-3-haiku", "input": "x", "stream": True, "max_output_tokens": 3},
                    headers={"x-fake-stream-events": json.dumps([{"chunk": e} for e in evs])})
        _, final = assert_stream(resp.body, terminal="response.incomplete")
    else:
        msg = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307",
               "content": [{"type": "text", "text": "cut sho"}], "stop_reason": "max_tokens", "stop_sequence": None,
               "usage": {"input_tokens": 5, "output_tokens": 3}}
        resp = post(rc, {"model": "claude-3-haiku", "input": "x", "max_output_tokens": 3}, headers={"x-fake-body": json.dumps(msg)})
        final = assert_response(resp, "claude-3-haiku", status="incomplete")
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert output_text(final["output"]) == "cut sho"
    assert_usage(final["usage"], 5, 3)


def test_buffered_function_call_and_reasoning_round_trip(rc, fakes):
    """A Claude answer with thinking and a tool call becomes a sealed reasoning item and a
    function_call; sent back as history, Bedrock gets the thinking (with its signature)
    before the tool_use and the output as tool_result. A tampered seal is dropped."""
    msg = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
           "content": [{"type": "thinking", "thinking": "Look it up.", "signature": "EqQBCkgIARAB"},
                       {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Porto"}}],
           "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 20, "output_tokens": 10}}
    first = {"model": "claude-sonnet-4", "input": "Weather in Porto?", "tools": TOOLS, "reasoning": {"effort": "medium"},
             "include": ["reasoning.encrypted_content"]}
    resp = post(rc, first, headers={"x-fake-body": json.dumps(msg)})
    sent = assert_bedrock_upstream(fakes.bedrock.last(), model_path(SONNET4_ID, "invoke"))
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048} and sent["max_tokens"] > 2048
    out = assert_response(resp, "claude-sonnet-4")
    assert [o["type"] for o in out["output"]] == ["reasoning", "function_call"]
    reasoning, call = out["output"]
    assert reasoning["encrypted_content"].startswith("ug1:") and reasoning["summary"][0]["text"] == "Look it up."
    assert (call["call_id"], call["name"], json.loads(call["arguments"])) == ("toolu_1", "get_weather", {"city": "Porto"})

    def second(seal):
        history = [{"role": "user", "content": "Weather in Porto?"}, dict(reasoning, encrypted_content=seal), call,
                   {"type": "function_call_output", "call_id": "toolu_1", "output": "sunny"}]
        r = post(rc, {**first, "input": history})
        assert r.status == 200, r
        return assert_bedrock_upstream(fakes.bedrock.last(), model_path(SONNET4_ID, "invoke"))["messages"]

    msgs = second(reasoning["encrypted_content"])
    assert msgs[-2]["role"] == "assistant" and msgs[-2]["content"] == [
        {"type": "thinking", "thinking": "Look it up.", "signature": "EqQBCkgIARAB"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Porto"}}]
    result = msgs[-1]["content"][0]
    assert msgs[-1]["role"] == "user" and result["type"] == "tool_result" and result["tool_use_id"] == "toolu_1"
    assert "sunny" in json.dumps(result["content"])
    seal = reasoning["encrypted_content"]
    tampered = seal[:6] + ("A" if seal[6] != "A" else "B") + seal[7:]
    msgs = second(tampered)
    assert [b["type"] for b in msgs[-2]["content"]] == ["tool_use"], "a damaged seal never reaches Bedrock"


# ---------------------------------------------------------------- the filter's own errors


@pytest.mark.parametrize("key", [None, "not-a-client-key"], ids=["no-key", "wrong-key"])
def test_no_or_wrong_key_is_401(rc, fakes, upstream_responses, key):
    resp = post(rc, {"model": "claude-3-haiku", "input": "x"}, key=key)
    assert_error(resp, 401, "authentication_error", code="invalid_api_key")
    assert b"not-a-client-key" not in resp.body
    assert fakes.upstream_requests() == [] and upstream_responses.requests == []


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405(rc, fakes, method):
    resp = rc.request(method, "/v1/responses", None if method in ("GET", "DELETE") else {"model": "gpt-4o", "input": "x"})
    assert_error(resp, 405, "invalid_request_error", code="method_not_allowed")
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize("method,path", [("GET", "/v1/responses/resp_123"), ("DELETE", "/v1/responses/resp_123"),
                                         ("GET", "/v1/responses/resp_123/input_items"),
                                         ("POST", "/v1/responses/resp_123/cancel")])
def test_stored_responses_do_not_exist(rc, fakes, upstream_responses, method, path):
    resp = rc.request(method, path, {} if method == "POST" else None)
    assert_error(resp, 404, "invalid_request_error", code="not_found")
    assert fakes.upstream_requests() == [] and upstream_responses.requests == []


@pytest.mark.parametrize(
    "field,value",
    [
        pytest.param("previous_response_id", "resp_abc", id="previous_response_id"),
        pytest.param("conversation", "conv_1", id="conversation-id"),
        pytest.param("conversation", {"id": "conv_1"}, id="conversation-object"),
        pytest.param("prompt", {"id": "pmpt_1", "version": "2"}, id="prompt"),
        pytest.param("background", True, id="background"),
    ],
)
@pytest.mark.parametrize("model", ["claude-3-haiku", NOVA_ID])
def test_stateful_parameters_are_400_with_param(rc, fakes, model, field, value):
    resp = post(rc, {"model": model, "input": "x", field: value})
    err = assert_error(resp, 400, "invalid_request_error", code="unsupported_parameter", param=field)
    assert "stateless" in err["message"], err
    if field != "background":
        assert "Send the whole conversation in `input`" in err["message"], err
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize("extra", [{"previous_response_id": None}, {"background": False}, {"store": True},
                                   {"conversation": None}], ids=["null-previous", "background-false", "store-true", "null-conversation"])
def test_stateless_defaults_are_accepted(rc, fakes, extra):
    resp = post(rc, {"model": "claude-3-haiku", "input": "fine", **extra})
    out = assert_response(resp, "claude-3-haiku", "echo: fine")
    assert out["store"] is False, "nothing is kept, whatever `store` said"


def test_unknown_model_is_404(rc, fakes, upstream_responses):
    resp = post(rc, {"model": "no-such-model-9000", "input": "x"})
    err = assert_error(resp, 404, "invalid_request_error", code="model_not_found")
    assert "no-such-model-9000" in err["message"]
    assert fakes.upstream_requests() == [] and upstream_responses.requests == []


def _json(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize(
    "raw,param",
    [
        pytest.param(b'{"model": "claude-3-haiku", "input": ', None, id="bad-json"),
        pytest.param(b"[1, 2]", None, id="json-array"),
        pytest.param(b"", None, id="empty-body"),
        pytest.param(_json({"input": "x"}), "model", id="missing-model"),
        pytest.param(_json({"model": "claude-3-haiku"}), "input", id="missing-input"),
        pytest.param(_json({"model": "claude-3-haiku", "input": 42}), "input", id="input-number"),
        pytest.param(_json({"model": "claude-3-haiku", "input": [{"role": "developer", "content": "only me"}]}), "input",
                     id="only-developer"),
        pytest.param(_json({"model": "claude-3-haiku", "input": "x", "temperature": "hot"}), "temperature", id="temperature-string"),
        pytest.param(_json({"model": "claude-3-haiku", "input": "x", "max_output_tokens": 0}), "max_output_tokens", id="max-output-0"),
        pytest.param(_json({"model": "claude-3-haiku", "input": [{"role": "user", "content": [
            {"type": "input_image", "image_url": "https://example.com/a.png"}]}]}), "input[0].content[0].image_url",
            id="remote-image-for-bedrock"),
        pytest.param(_json({"model": "claude-3-haiku", "input": [{"role": "user", "content": "x"},
                                                                  {"type": "function_call", "call_id": "c", "name": "get_weather",
                                                                   "arguments": "{not json"}], "tools": TOOLS}),
                     "input[1].arguments", id="bad-call-arguments"),
        pytest.param(_json({"model": "claude-3-haiku", "input": [{"type": "item_reference", "id": "msg_1"}]}), None, id="item-reference"),
    ],
)
def test_bad_body_is_400(rc, fakes, raw, param):
    resp = post(rc, raw, headers={"content-type": "application/json"})
    err = assert_error(resp, 400, "invalid_request_error")
    if param:
        assert err["param"] == param, err
    assert fakes.upstream_requests() == []


def _body_of_size(n: int) -> bytes:
    base = _json({"model": "claude-3-haiku", "input": ""})
    raw = _json({"model": "claude-3-haiku", "input": "a" * (n - len(base))})
    assert len(raw) == n
    return raw


@pytest.mark.parametrize("size,status", [(CAP, 200), (CAP + 1, 413), (3 * CAP, 413)])
def test_body_cap_by_content_length(rc, fakes, size, status):
    resp = post(rc, _body_of_size(size), headers={"content-type": "application/json"})
    if status == 200:
        assert resp.status == 200, resp
        assert len(fakes.bedrock.requests) == 1
    else:
        assert_error(resp, 413, "invalid_request_error", code="request_too_large")
        assert fakes.upstream_requests() == []


def test_body_cap_for_chunked_bodies(rc, fakes):
    resp = post(rc, paced(split_bytes(_body_of_size(CAP + 500), 9), 0.005))
    assert_error(resp, 413, "invalid_request_error", code="request_too_large")
    assert fakes.upstream_requests() == []
    ok = post(rc, paced(split_bytes(_body_of_size(CAP - 10), 9), 0.005))
    assert ok.status == 200, ok


def test_errors_keep_the_keepalive_connection(rc, fakes):
    """The filter's 400/404s (answered once the body is read) and an upstream 429 leave the
    HTTP/1.1 connection open for the next request. (A 401 is answered on the headers, before
    the body is read, so Envoy closes that connection: the same on every door.)"""
    conn = rc.connection()
    try:
        sock = None
        for body, key, want in [(b'{"model": ', KEY, 400),
                                ({"model": "claude-3-haiku", "input": "x", "background": True}, KEY, 400),
                                ({"model": "no-such-model-9000", "input": "x"}, KEY, 404)]:
            r = post(rc, body, key=key, conn=conn, headers={"content-type": "application/json"})
            assert r.status == want, r
            sock = sock or conn.sock
            assert conn.sock is sock, "the client had to reconnect"
        r = post(rc, {"model": "claude-3-haiku", "input": "x"}, conn=conn, headers=steer(status=429, error_type="ThrottlingException"))
        assert r.status == 429, r
        ok = post(rc, {"model": "claude-3-haiku", "input": "after errors", "stream": True}, conn=conn)
        assert_stream(ok.body)
        assert conn.sock is sock
    finally:
        conn.close()


# ---------------------------------------------------------------- upstream errors

BEDROCK_ERRORS = [
    # (model, upstream status, x-amzn-ErrorType, body, client status, type, code, message part, retry-after)
    pytest.param("claude-3-haiku", 429, "ThrottlingException", '{"message":"Too many requests, please wait before trying again."}',
                 429, "rate_limit_error", "rate_limit_exceeded", "Too many requests", True, id="claude-throttling"),
    pytest.param(NOVA_ID, 429, "ThrottlingException", None, 429, "rate_limit_error", "rate_limit_exceeded", None, True,
                 id="converse-throttling"),
    pytest.param("claude-3-haiku", 403, "AccessDeniedException", '{"message":"You don\'t have access to the model with the specified model ID."}',
                 403, "permission_error", "access_denied", "have access to the model", False, id="access-denied"),
    pytest.param("claude-sonnet-4", 400, "ValidationException", '{"message":"prompt is too long: 250000 tokens > 200000 maximum"}',
                 400, "invalid_request_error", "context_length_exceeded", "prompt is too long", False, id="context-length"),
    pytest.param(NOVA_ID, 400, "ValidationException", '{"message":"Malformed input request: extraneous key [foo] is not permitted."}',
                 400, "invalid_request_error", "invalid_request", "extraneous key", False, id="validation"),
    pytest.param("claude-3-haiku", 408, "ModelTimeoutException", '{"message":"Model has timed out in processing the request."}',
                 504, "timeout_error", "model_timeout", "timed out", False, id="model-timeout"),
    pytest.param("claude-3-haiku", 500, "InternalServerException", '{"message":"The server encountered an internal error."}',
                 500, "api_error", "internal_error", "internal error", False, id="internal"),
    pytest.param(NOVA_ID, 503, "ServiceUnavailableException", '{"message":"Bedrock is unable to process your request."}',
                 503, "api_error", "service_unavailable", "unable to process", False, id="unavailable"),
    pytest.param("claude-3-haiku", 400, "ServiceQuotaExceededException", '{"message":"Quota exceeded."}',
                 429, "insufficient_quota", "quota_exceeded", "Quota exceeded", True, id="quota"),
    pytest.param("claude-3-haiku", 502, None, "<html><body>502 Bad Gateway</body></html>",
                 502, "api_error", "upstream_error", "502 Bad Gateway", False, id="html-5xx"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
@pytest.mark.parametrize("model,up_status,error_type,body,status,type_,code,msg,retry", BEDROCK_ERRORS)
def test_bedrock_errors_are_openai_errors(rc, fakes, model, up_status, error_type, body, status, type_, code, msg, retry, stream):
    """Bedrock's errors before the answer started: an OpenAI error object with the mapped
    status (JSON also for stream requests: nothing was streamed yet)."""
    h = {"x-fake-status": str(up_status)}
    if error_type:
        h["x-fake-error-type"] = error_type
    if body:
        h["x-fake-body"] = body
        h["x-fake-content-type"] = "text/html" if body.startswith("<") else "application/json"
    resp = post(rc, {"model": model, "input": "x", "stream": stream}, headers=h)
    rec = fakes.bedrock.last()
    assert rec.sigv4.ok and rec.response_status == up_status
    assert rec.path.endswith("-stream" if stream else ("/invoke" if "claude" in model else "/converse")), rec.path
    assert_error(resp, status, type_, code=code, message_contains=msg)
    assert ("retry-after" in resp.headers) == retry, resp.headers
    assert "x-amzn-errortype" not in resp.headers


def _claude_partial():
    return [{"chunk": {"type": "message_start", "message": {"id": "msg_bdrk_x", "type": "message", "role": "assistant",
                                                             "model": "claude-3-haiku-20240307", "content": [], "stop_reason": None,
                                                             "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}}},
            {"chunk": {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}},
            {"chunk": {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "part"}}}]


def _converse_partial():
    return [{"event": "messageStart", "payload": {"role": "assistant"}},
            {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": "part"}}}]


@pytest.mark.parametrize(
    "model,events,code",
    [
        pytest.param("claude-3-haiku", _claude_partial() + [{"exception": "throttlingException", "payload": {
            "message": "Too many requests, please wait before trying again."}}], "rate_limit_exceeded", id="claude-throttling-frame"),
        pytest.param("claude-3-haiku", _claude_partial() + [{"exception": "modelStreamErrorException", "payload": {
            "message": "Model stream broke."}}], None, id="claude-model-stream-error"),
        pytest.param(NOVA_ID, _converse_partial() + [{"exception": "validationException", "payload": {
            "message": "Input is too long for requested model."}}], "context_length_exceeded", id="converse-context-frame"),
        pytest.param(NOVA_ID, _converse_partial() + [{"exception": "internalServerException", "payload": {"message": "Internal failure."}}],
                     None, id="converse-internal-frame"),
        pytest.param("claude-3-haiku", _claude_partial(), "upstream_stream_truncated", id="claude-ends-without-stop"),
        pytest.param(NOVA_ID, _converse_partial(), "upstream_stream_truncated", id="converse-ends-without-stop"),
    ],
)
def test_failure_mid_stream_is_response_failed(rc, fakes, model, events, code):
    resp = post(rc, {"model": model, "input": "x", "stream": True}, headers={"x-fake-stream-events": json.dumps(events)})
    assert fakes.bedrock.last().response_status == 200
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream"), resp
    evs, final = assert_stream(resp.body, model=model, terminal="response.failed")
    err = final["error"]
    assert isinstance(err["code"], str) and err["code"] and isinstance(err["message"], str) and err["message"], err
    if code:
        assert err["code"] == code, err
    assert "".join(d["delta"] for n, d in evs if n == "response.output_text.delta") == "part", "what came before is delivered"


def _openai_error(message, type_, code, param=None) -> str:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}})


@pytest.mark.parametrize(
    "up_status,body,status,type_,code,retry",
    [
        pytest.param(429, _openai_error("Rate limit reached for gpt-4o on tokens per min.", "tokens", "rate_limit_exceeded"),
                     429, "rate_limit_error", "rate_limit_exceeded", True, id="rate-limit"),
        pytest.param(429, _openai_error("You exceeded your current quota.", "insufficient_quota", "insufficient_quota"),
                     429, "insufficient_quota", "insufficient_quota", True, id="quota-is-not-a-rate-limit"),
        pytest.param(400, _openai_error("Your input exceeds the context window of this model.", "invalid_request_error",
                                        "context_length_exceeded", "input"),
                     400, "invalid_request_error", "context_length_exceeded", False, id="context-window"),
        pytest.param(404, _openai_error("Previous response with id 'resp_x' not found.", "invalid_request_error", "previous_response_not_found",
                                        "previous_response_id"),
                     404, "invalid_request_error", "previous_response_not_found", False, id="previous-response-not-found"),
        pytest.param(500, _openai_error("The server had an error while processing your request.", "server_error", None),
                     500, None, "upstream_error", False, id="server-error"),
    ],
)
def test_openai_relay_errors(rc, fakes, upstream_responses, up_status, body, status, type_, code, retry):
    """OpenAI's errors for a relayed request: OpenAI error objects with OpenAI's status,
    message, code and param (the type where OpenAI's is one the gateway knows)."""
    resp = post(rc, {"model": "gpt-4o", "input": "x"}, headers={"x-fake-status": str(up_status), "x-fake-body": body})
    assert upstream_responses.last().response_status == up_status
    up = json.loads(body)["error"]
    err = assert_error(resp, status, type_, code=code, param=up["param"], message_contains=up["message"])
    assert ("retry-after" in resp.headers) == retry, resp.headers
    if up_status == 400:
        assert resp.json() == json.loads(body), "OpenAI's own error object is kept"


def test_openai_relay_wrong_upstream_key_is_502(rc, fakes, upstream_responses):
    upstream_responses.api_key = "sk-a-different-key"
    try:
        resp = post(rc, {"model": "gpt-4o", "input": "x"})
    finally:
        upstream_responses.api_key = UPSTREAM_OPENAI_KEY
    assert upstream_responses.last().response_status == 401
    assert_error(resp, 502, "api_error", code="upstream_auth_failed")
    assert UPSTREAM_OPENAI_KEY not in resp.body.decode()


def _relay_cut(keep: int):
    def turn(rec, body, index):
        frames = sse_frames(response_events(text_turn("one two three"), "resp_relayed", str(body["model"]), 5))
        return Reply(200, [("content-type", "text/event-stream")], stream=frames[:keep])
    return turn


def test_relayed_stream_that_breaks_off_ends_with_response_failed(rc, fakes, upstream_responses):
    """OpenAI's stream ends cleanly but without a terminal event: the gateway closes it with a
    `response.failed` numbered after OpenAI's last event, carrying OpenAI's response id."""
    upstream_responses.script([_relay_cut(5)])
    resp = post(rc, {"model": "gpt-4o", "input": "x", "stream": True})
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream"), resp
    rec = upstream_responses.last()
    assert resp.body.startswith(rec.response_body), "OpenAI's events are relayed unchanged first"
    evs = assert_stream_prefix(resp.body)
    assert resp.body.endswith(b"\n\n") and [n for n, _ in evs][-1] == "response.failed"
    assert len(evs) == 6, [n for n, _ in evs]
    failed = evs[-1][1]
    assert failed["sequence_number"] == 5
    assert failed["response"]["id"] == "resp_relayed" and failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "upstream_stream_truncated"


def test_relayed_stream_error_event_is_relayed_as_the_end(rc, fakes, upstream_responses):
    """OpenAI's own `error` event ends the relayed stream as OpenAI sent it: nothing added."""
    def turn(rec, body, index):
        frames = sse_frames(response_events(text_turn("one two"), "resp_relayed", "gpt-4o", 5))[:4]
        frames.append(b'event: error\ndata: {"type":"error","sequence_number":4,"code":"server_error","message":"boom","param":null}\n\n')
        return Reply(200, [("content-type", "text/event-stream")], stream=frames)

    upstream_responses.script([turn])
    resp = post(rc, {"model": "gpt-4o", "input": "x", "stream": True})
    assert resp.status == 200, resp
    assert resp.body == upstream_responses.last().response_body
    evs = assert_stream_prefix(resp.body)
    assert [n for n, _ in evs][-1] == "error" and evs[-1][1]["code"] == "server_error"


def test_relayed_unreadable_stream_is_one_error_event(rc, fakes, upstream_responses):
    """OpenAI answers 200 text/event-stream with something that is not a Responses event: the
    client gets one `error` event (numbered 0) saying so, not the garbage."""
    garbage = __import__("base64").b64encode(b"data: garbage\n\n").decode()
    resp = post(rc, {"model": "gpt-4o", "input": "x", "stream": True},
                headers={"x-fake-body-b64": garbage, "x-fake-content-type": "text/event-stream"})
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream"), resp
    assert b"garbage" not in resp.body
    (frame,) = sse_frames_of(resp.body)
    assert frame[0] == "error" and frame[1]["type"] == "error" and frame[1]["sequence_number"] == 0
    assert frame[1]["code"] == "upstream_stream_error", frame


def test_relayed_break_off_response_failed_is_a_valid_response(rc, fakes, upstream_responses):
    """The response.failed the gateway appends to a relayed stream that broke off is a Response
    the SDK accepts (created_at and model from the upstream's response.created)."""
    if SdkResponse is None:
        pytest.fail("the openai SDK is not importable")
    upstream_responses.script([_relay_cut(5)])
    resp = post(rc, {"model": "gpt-4o", "input": "x", "stream": True})
    evs = assert_stream_prefix(resp.body)
    assert evs[-1][0] == "response.failed"
    sdk_validate_event(evs[-1][1])
    created = evs[0][1]["response"]
    failed = evs[-1][1]["response"]
    assert (failed["id"], failed["model"], failed["created_at"]) == (created["id"], created["model"], created["created_at"])


# ---------------------------------------------------------------- resets and silence


@pytest.mark.parametrize(
    "model,reset",
    [
        pytest.param("claude-3-haiku", "0", id="claude-after-headers"),
        pytest.param("claude-3-haiku", "1200", id="claude-mid-stream"),
        pytest.param(NOVA_ID, "600", id="converse-mid-stream"),
        pytest.param("gpt-4o", "700", id="relay-mid-stream"),
    ],
)
def test_upstream_reset_mid_stream_ends_without_hanging(rgw, rc, fakes, upstream_responses, model, reset):
    """The upstream connection is reset after the answer started. The filter cannot write
    after Envoy resets the stream, so the client gets a cut body (Codex: "stream closed
    before response.completed", retried) — or, if anything is written at the end, a
    `response.failed`. Never a `response.completed`, never a hang; the events that arrived
    are a well-formed prefix."""
    upstream_responses.script([text_turn("a long answer " * 30)])
    status, hdrs, data, ended, took = read_stream(rgw.port, {"model": model, "input": "a long answer " * 30, "stream": True},
                                                  steer(reset=reset, chunk_delay_ms=5))
    assert took < 5, took
    assert status == 200 and hdrs["content-type"].startswith("text/event-stream"), (status, hdrs)
    evs = assert_stream_prefix(data)
    names = [n for n, _ in evs]
    assert "response.completed" not in names and "response.incomplete" not in names
    if ended == "complete":
        assert names and names[-1] == "response.failed", f"a complete body must end with response.failed: {data[-300:]!r}"
    assert (upstream_responses.requests + fakes.bedrock.requests)[0].response_status == 200
    assert post(rc, {"model": "claude-3-haiku", "input": "next"}).status == 200


@pytest.mark.parametrize("model", ["claude-3-haiku", NOVA_ID])
def test_upstream_reset_before_a_buffered_answer_is_502(rc, fakes, model):
    resp = post(rc, {"model": model, "input": "x" * 2000}, headers=steer(reset="true"), timeout=10)
    assert fakes.bedrock.last().response_status == 200
    assert_error(resp, 502, "api_error")


@pytest.mark.parametrize("stream", [False, True], ids=["buffered", "stream"])
@pytest.mark.parametrize("model", ["claude-3-haiku", "gpt-4o"])
def test_upstream_silent_past_the_timeout_is_504(rc, fakes, upstream_responses, model, stream):
    upstream_responses.script([text_turn("late")])
    t = time.monotonic()
    resp = post(rc, {"model": model, "input": "x", "stream": stream}, headers=steer(delay_ms=IDLE_S * 1000 + 1500), timeout=10)
    took = time.monotonic() - t
    assert len(fakes.bedrock.requests) + len(upstream_responses.requests) == 1
    assert_error(resp, 504, "timeout_error", code="upstream_timeout")
    assert IDLE_S * 0.9 < took < IDLE_S + 3, took


def test_upstream_stalling_mid_stream_is_cut_in_bounded_time(rgw, rc, fakes):
    """Silence after the stream started (pieces 3 s apart, idle timeout 1 s): the stream is
    cut within the idle timeout, never completed."""
    status, hdrs, data, ended, took = read_stream(rgw.port, {"model": NOVA_ID, "input": "one two three", "stream": True},
                                                  steer(chunk_bytes=400, chunk_delay_ms=3000), timeout=15)
    assert status == 200, (status, data[:300])
    assert took < IDLE_S + 2.5, took
    evs = assert_stream_prefix(data)
    names = [n for n, _ in evs]
    assert names[:2] == ["response.created", "response.in_progress"], "the first piece was streamed before the stall"
    assert not set(names) & set(TERMINAL), names
    assert ended != "complete", "a stream cut by the idle timeout is closed, not ended as if whole"


def _wait_idle(envoy, clusters, timeout=5.0):
    names = ["http.ingress.downstream_rq_active"] + [f"cluster.{c}.upstream_rq_active" for c in clusters]
    deadline = time.monotonic() + timeout
    while True:
        stats = envoy.stats("_rq_active")
        vals = {n: int(stats[n]) for n in names}
        if not any(vals.values()):
            return
        assert time.monotonic() < deadline, f"requests still active after the client went away: {vals}"
        time.sleep(0.05)


@pytest.mark.parametrize("model,cluster", [("claude-3-haiku", "bedrock"), (NOVA_ID, "bedrock"), ("gpt-4o", "openai")])
def test_client_disconnect_mid_stream(rgw, rc, fakes, upstream_responses, model, cluster):
    """The client goes away in the middle of a stream: Envoy drops the upstream request too,
    nothing traps, and the next requests work."""
    text = " ".join(f"w{i}" for i in range(60))
    upstream_responses.script([text_turn(text), text_turn("after")])
    payload = json.dumps({"model": model, "input": text, "stream": True}).encode()
    head = ["POST /v1/responses HTTP/1.1", "Host: gw", f"Authorization: Bearer {KEY}", "Content-Type: application/json",
            f"Content-Length: {len(payload)}", "x-fake-chunk-delay-ms: 100"]
    with socket.create_connection(("127.0.0.1", rgw.port), timeout=10) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        got = b""
        while b"response.in_progress" not in got:
            piece = s.recv(65536)
            assert piece, got[:300]
            got += piece
        assert got.split(b"\r\n", 1)[0].endswith(b" 200 OK"), got[:200]
    _wait_idle(rgw, [cluster])
    assert post(rc, {"model": model, "input": "after", "stream": True}).status == 200


# ---------------------------------------------------------------- usage: metrics and access log


def _flush_access_log(envoy) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{envoy.admin_port}/reopen_logs", method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert r.status == 200


def access_log_entry(envoy, client_request_id: str, timeout: float = 5.0) -> dict:
    """The access-log line of the request sent with `x-client-request-id` (Envoy buffers
    access logs; /reopen_logs flushes them)."""
    deadline = time.monotonic() + timeout
    while True:
        _flush_access_log(envoy)
        for line in envoy.log_since(0).splitlines():
            if line.startswith("{") and client_request_id in line:
                entry = json.loads(line)
                if entry.get("client_request_id") == client_request_id:
                    return entry
        assert time.monotonic() < deadline, f"no access-log line for {client_request_id}"
        time.sleep(0.1)


def _counters(envoy, provider, model_id, key, status=200):
    stats = envoy.stats("wasmcustom.unigate")
    return (counter(stats, requests_total("responses", provider, status, model_id)),
            counter(stats, tokens_total(provider, key, "input", model_id)),
            counter(stats, tokens_total(provider, key, "output", model_id)))


def _wait_counters(envoy, args, before, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        delta = tuple(a - b for a, b in zip(_counters(envoy, *args), before))
        if delta == want or time.monotonic() > deadline:
            return delta
        time.sleep(0.05)


@pytest.mark.parametrize(
    "model,model_id,provider,cluster,stream",
    [
        pytest.param("claude-3-haiku", HAIKU_ID, "bedrock", "bedrock", False, id="claude-buffered"),
        pytest.param(SONNET4_ID, SONNET4_ID, "bedrock", "bedrock", True, id="claude-stream"),
        pytest.param(NOVA_ID, NOVA_ID, "bedrock", "bedrock", True, id="converse-stream"),
        pytest.param(ALIAS, ALIAS_TARGET, "openai", "openai", False, id="relay-buffered"),
        pytest.param(ALIAS, ALIAS_TARGET, "openai", "openai", True, id="relay-stream"),
    ],
)
def test_usage_in_metrics_and_access_log(rgw, rc, fakes, upstream_responses, model, model_id, provider, cluster, stream):
    upstream_responses.script([text_turn("counted answer")])
    args = (provider, model_id, NAMED)
    before = _counters(rgw, *args)
    crid = f"codex-{model_id}-{stream}-{time.monotonic_ns()}"
    resp = post(rc, {"model": model, "input": "count these tokens please", "stream": stream}, key=NAMED_KEY,
                headers={"x-client-request-id": crid})
    assert resp.status == 200, resp
    final = assert_stream(resp.body)[1] if stream else resp.json()
    n_in, n_out = final["usage"]["input_tokens"], final["usage"]["output_tokens"]
    assert n_in > 0 and n_out > 0
    up = (upstream_responses if provider == "openai" else fakes.bedrock).last()
    for name, value in up.header_list:
        assert NAMED_KEY not in value, f"the client key reached {up.server} in {name}"
    assert NAMED_KEY.encode() not in up.body
    if provider == "bedrock" and stream:
        assert (n_in, n_out) == streamed_usage(up), "usage is the upstream's"
    delta = _wait_counters(rgw, args, before, (1, n_in, n_out))
    assert delta == (1, n_in, n_out), f"requests/input/output counted {delta}, want {(1, n_in, n_out)}"
    entry = access_log_entry(rgw, crid)
    assert entry["path"] == "/v1/responses" and entry["method"] == "POST" and entry["status"] == 200, entry
    assert entry["upstream_cluster"] == cluster and entry["provider"] == provider and entry["model"] == model_id, entry
    assert entry["key"] == NAMED and NAMED_KEY not in json.dumps(entry), entry
    assert (entry["prompt_tokens"], entry["completion_tokens"], entry["total_tokens"]) == (str(n_in), str(n_out), str(n_in + n_out)), entry


def test_errors_in_metrics_and_access_log(rgw, rc, fakes):
    stats = rgw.stats("wasmcustom.unigate")
    throttled = requests_total("responses", "bedrock", 429, HAIKU_ID)
    local = requests_total("responses", "local", 400, "none")
    before = (counter(stats, throttled), counter(stats, local))
    r1 = post(rc, {"model": "claude-3-haiku", "input": "x"}, headers={**steer(status=429, error_type="ThrottlingException"),
                                                                      "x-client-request-id": "codex-throttled-1"})
    r2 = post(rc, {"model": "claude-3-haiku", "input": "x", "background": True}, headers={"x-client-request-id": "codex-local-400-1"})
    assert (r1.status, r2.status) == (429, 400)
    deadline = time.monotonic() + 5
    while True:
        stats = rgw.stats("wasmcustom.unigate")
        delta = (counter(stats, throttled) - before[0], counter(stats, local) - before[1])
        if delta == (1, 1) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert delta == (1, 1), delta
    e1 = access_log_entry(rgw, "codex-throttled-1")
    assert (e1["status"], e1["provider"], e1["model"], e1["upstream_cluster"]) == (429, "bedrock", HAIKU_ID, "bedrock"), e1
    assert e1["prompt_tokens"] is None and e1["key"] == key_label(KEY), e1
    e2 = access_log_entry(rgw, "codex-local-400-1")
    assert (e2["status"], e2["provider"], e2["model"], e2["upstream_cluster"]) == (400, None, None, None), e2


# ---------------------------------------------------------------- no VM trap


def test_no_vm_trapped_in_any_responses_envoy(rgw, cgw):
    for e in (rgw, cgw):
        e.watch.check()
        assert e.proc.poll() is None, f"Envoy {e.name} exited"
        stats = e.stats("wasmcustom.unigate.requests_total.endpoint.responses")
        assert any(int(v) > 0 for k, v in stats.items() if k.startswith("wasmcustom.unigate.requests_total.endpoint.responses")), \
            f"Envoy {e.name} served no Responses request in this module"
