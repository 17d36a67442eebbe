"""The Responses door's answers as the official openai SDK and the Codex CLI read them, without
a gateway: the golden SSE streams the core's stream test writes
(core/tests/fixtures/responses/, `UPDATE_GOLDEN=1 cargo test -p unigate-core --test streams`)
and the Response objects of the golden response fixtures
(core/tests/golden/response/responses_*.json).

* Every stream event and every Response object validates against openai-python's own pydantic
  models (strict, not the SDK's lenient `construct`).
* The SDK's stream helper (`client.responses.stream`) accumulates each stream into the final
  Response, fed through an in-process transport (no socket).
* Codex's rules (codex-rs/codex-api/src/sse/responses.rs, front-doors.md §0 and §2.5): each
  event carries `sequence_number`; a turn succeeds only when the stream ends with
  `response.completed` whose `response.id` is a string and whose `usage` holds integer
  `input_tokens` / `output_tokens` / `total_tokens`; there is no `[DONE]`; history is built from
  `output_item.done` items; failures carry the codes Codex acts on.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx2
import openai
import pytest
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

ROOT = Path(__file__).resolve().parent.parent
STREAMS = ROOT / "core" / "tests" / "fixtures" / "responses"
GOLDEN = ROOT / "core" / "tests" / "golden" / "response"
EVENT = TypeAdapter(ResponseStreamEvent)

# Item types Codex's history (ResponseItem) knows.
CODEX_ITEMS = {"message", "reasoning", "function_call", "custom_tool_call"}
# Failure codes Codex acts on (compaction, quota, back-off); any other code is retried.
CODEX_CODES = {"context_length_exceeded", "insufficient_quota", "rate_limit_exceeded"}


def sse_events(raw: bytes) -> list[tuple[str, dict]]:
    """(event name, data) of each frame; every frame has both lines."""
    out = []
    for frame in raw.decode("utf-8").split("\n\n"):
        if not frame:
            continue
        lines = frame.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), frame[:200]
        out.append((lines[0][len("event: "):], json.loads(lines[1][len("data: "):])))
    return out


def stream_files() -> list[Path]:
    files = sorted(STREAMS.glob("*.sse"))
    assert files, f"no golden streams in {STREAMS}"
    return files


def response_fixtures() -> list[Path]:
    files = sorted(p for p in GOLDEN.glob("responses_*.json") if json.loads(p.read_text())["expected"]["status"] == 200)
    assert files
    return files


def client_for(body: bytes, content_type: str) -> openai.OpenAI:
    """An SDK client whose every request is answered with `body`, in process."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/responses"
        return httpx2.Response(200, headers={"content-type": content_type}, content=body)

    http = httpx2.Client(transport=httpx2.MockTransport(handler))
    return openai.OpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1", http_client=http, max_retries=0)


def codex_reads(raw: bytes) -> dict:
    """What Codex's SSE reader ends with: the completed response, or the failure it acts on."""
    events = sse_events(raw)
    assert b"[DONE]" not in raw
    items = []
    completed = failed = None
    for name, data in events:
        assert data["type"] == name
        assert isinstance(data["sequence_number"], int)
        if name == "response.output_item.done":
            assert data["item"]["type"] in CODEX_ITEMS, data["item"]["type"]
            items.append(data["item"])
        elif name == "response.completed":
            completed = data["response"]
        elif name == "response.failed":
            failed = data["response"]["error"]
    if completed is None:
        # Codex: "stream closed before response.completed", retried unless the code says more.
        return {"failed": failed}
    assert isinstance(completed["id"], str)
    usage = completed["usage"]
    for k in ("input_tokens", "output_tokens", "total_tokens"):
        assert type(usage[k]) is int, k
    assert type(usage["input_tokens_details"]["cached_tokens"]) is int
    assert type(usage["output_tokens_details"]["reasoning_tokens"]) is int
    return {"id": completed["id"], "usage": usage, "items": items}


@pytest.mark.parametrize("path", stream_files(), ids=lambda p: p.name)
def test_every_event_validates_against_the_sdk_models(path):
    events = sse_events(path.read_bytes())
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    for _, data in events:
        if data["type"] == "response.failed":
            # ResponseError.code is a closed list in the SDK; the gateway's own codes (and
            # context_length_exceeded, which Codex reads) are outside it.
            Response.model_validate({**data["response"], "error": None})
            continue
        EVENT.validate_python(data, strict=False)
        if "response" in data:
            Response.model_validate(data["response"])


@pytest.mark.parametrize("path", stream_files(), ids=lambda p: p.name)
def test_the_sdk_stream_helper_accumulates_the_answer(path):
    raw = path.read_bytes()
    client = client_for(raw, "text/event-stream")
    with client.responses.stream(model="m", input="hi") as stream:
        events = list(stream)
        terminal = events[-1]
        if terminal.type in ("response.failed", "response.incomplete"):
            # The SDK's final response is a completed one only (as with OpenAI itself).
            with pytest.raises(RuntimeError):
                stream.get_final_response()
            if terminal.type == "response.incomplete":
                assert terminal.response.incomplete_details.reason == "content_filter"
            else:
                assert terminal.response.error.code == "rate_limit_exceeded"
            return
        final = stream.get_final_response()
    assert terminal.type == "response.completed"
    wire = [d for n, d in sse_events(raw) if n == "response.completed"][0]["response"]
    assert final.id == wire["id"]
    assert [o.type for o in final.output] == [o["type"] for o in wire["output"]]
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert final.output_text == deltas
    for o in final.output:
        if o.type == "function_call":
            json.loads(o.arguments)
    assert final.usage.total_tokens == final.usage.input_tokens + final.usage.output_tokens


@pytest.mark.parametrize("path", stream_files(), ids=lambda p: p.name)
def test_codex_accepts_the_stream(path):
    got = codex_reads(path.read_bytes())
    if path.name == "claude_throttled.sse":
        assert got == {"failed": {"code": "rate_limit_exceeded", "message": got["failed"]["message"]}}
        assert got["failed"]["code"] in CODEX_CODES
        return
    if path.name == "converse_content_filter.sse":
        # response.incomplete: Codex retries the turn (it only completes on response.completed).
        assert got == {"failed": None}
        return
    assert got["id"] == "resp_test"
    assert got["items"], "history items from output_item.done"


def test_codex_tool_shapes_come_back_as_declared():
    got = codex_reads((STREAMS / "claude_tools.sse").read_bytes())
    kinds = [(i["type"], i.get("namespace"), i["name"] if "name" in i else None) for i in got["items"]]
    assert kinds == [
        ("reasoning", None, None),
        ("message", None, None),
        ("function_call", "weather", "get_weather"),
        ("custom_tool_call", None, "get_time"),
    ]
    reasoning = got["items"][0]
    assert reasoning["encrypted_content"].startswith("ug1:")
    assert reasoning["summary"] == [{"type": "summary_text", "text": "User wants weather."}]


@pytest.mark.parametrize("path", response_fixtures(), ids=lambda p: p.name)
def test_response_objects_validate_and_parse(path):
    body = json.loads(path.read_text())["expected"]["body"]
    strict = Response.model_validate(body)
    assert strict.object == "response" and isinstance(strict.id, str)
    client = client_for(json.dumps(body).encode(), "application/json")
    resp = client.responses.create(model="m", input="hi")
    assert resp.id == body["id"]
    texts = [c["text"] for o in body["output"] if o["type"] == "message" for c in o["content"]]
    assert resp.output_text == "".join(texts)
    assert resp.usage.input_tokens >= resp.usage.input_tokens_details.cached_tokens
