"""Oracles for the Anthropic Messages front door (`POST /v1/messages`, `/v1/messages/count_tokens`),
shared by tests/test_system_messages.py, tests/test_system_claude_code.py and
wasm-tests/test_wasm_messages.py:

- expected_invoke_body() / assert_relayed_body(): what the gateway must send to Bedrock
  InvokeModel for a Claude model, written from the contract (front-doors.md §1.7): the
  client's body without `model`/`stream`, `anthropic_version: "bedrock-2023-05-31"`, only the
  allowed top-level keys, `context_management` only with `compact_20260112` edits and their
  beta, no `thinking.display`, no `cache_control.scope` (nor `ttl` before Claude 4.5),
  `defer_loading` only with tool search, and the betas from the `anthropic-beta` header(s)
  (+ a body `anthropic_beta` list) renamed and filtered by the default per-model table.
- parse_sse(): the `event: <type>\\ndata: <json>\\n\\n` framing, checked strictly.
- assert_message_stream(): the Messages stream grammar (§1.4) and the Message it accumulates to.
- assert_error_envelope(): `{"type":"error","error":{"type","message"}}`.
- bedrock_chunk_events(): the Anthropic events a fake Bedrock stream carried.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import time
from typing import Any, Iterable, Optional

from fakes import eventstream as es
from fakes.bedrock import claude_model_name

BEDROCK_ANTHROPIC_VERSION = "bedrock-2023-05-31"
# Top-level keys the gateway keeps (besides a filtered context_management).
RELAY_KEYS = (
    "anthropic_version", "anthropic_beta", "max_tokens", "messages", "system", "stop_sequences", "temperature",
    "top_p", "top_k", "tools", "tool_choice", "thinking", "metadata", "output_config",
)
TOOL_SEARCH = "tool-search-tool-2025-10-19"
COMPACT_BETA = "compact-2026-01-12"
RENAMED_BETAS = {"advanced-tool-use-2025-11-20": TOOL_SEARCH}
# The contract's default per-model beta table: Claude 4+ allow these three, Claude 3.x none.
CLAUDE4_DEFAULT_BETAS = frozenset({"interleaved-thinking-2025-05-14", "context-1m-2025-08-07", TOOL_SEARCH})
# Claude Code 2.1.328's `anthropic-beta` header (front-doors.md §5), and with
# CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS=1.
CLAUDE_CODE_BETA_HEADER = ("claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,"
                           "thinking-token-count-2026-05-13,advanced-tool-use-2025-11-20")
CLAUDE_CODE_BETA_HEADER_NO_EXPERIMENTAL = "claude-code-20250219,interleaved-thinking-2025-05-14"


def is_claude4_or_later(model_id: str) -> bool:
    """claude-sonnet-4*, claude-opus-4*, claude-haiku-4* and any later generation."""
    return re.match(r"^claude-(sonnet|opus|haiku)-([4-9]|[1-9]\d)(\D|$)", claude_model_name(model_id)) is not None


def claude_version(model_id: str) -> tuple:
    """(major, minor) of a Claude model id: claude-3-haiku → (3, 0), claude-3-5-haiku → (3, 5),
    claude-sonnet-4-2025… → (4, 0), claude-sonnet-4-5-2025… → (4, 5)."""
    nums = [int(t) for t in claude_model_name(model_id).split("-")[1:] if t.isdigit() and len(t) <= 2] + [0, 0]
    return nums[0], nums[1]


def default_allowed_betas(model_id: str) -> frozenset:
    """The default per-model beta table: Claude 3.x none; Opus 4.7 only interleaved thinking
    (all it took at launch, front-doors.md §1.7); other Claude 4+ the three Claude Code sends."""
    if re.match(r"^claude-opus-4-7(\D|$)", claude_model_name(model_id)):
        return frozenset({"interleaved-thinking-2025-05-14"})
    return CLAUDE4_DEFAULT_BETAS if is_claude4_or_later(model_id) else frozenset()


def keeps_cache_ttl(model_id: str) -> bool:
    """`cache_control.ttl` is kept for Claude 4.5 and later only (front-doors.md §1.7.6)."""
    return claude_version(model_id) >= (4, 5)


def split_beta_headers(values: Iterable[str]) -> list:
    """Comma-separated values of one or more `anthropic-beta` headers: split, trimmed, empties dropped."""
    out = []
    for v in values:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def expected_betas(model_id: str, beta_headers: Iterable[str] = (), body_betas: Optional[list] = None) -> set:
    """The betas the gateway must put in the Bedrock body for this (resolved) Claude model id."""
    wanted = split_beta_headers(beta_headers) + list(body_betas or [])
    renamed = {RENAMED_BETAS.get(b, b) for b in wanted}
    return renamed & default_allowed_betas(model_id)


def _strip_cache_control(obj: Any, keep_ttl: bool) -> Any:
    """A copy of obj without `scope` (and, unless keep_ttl, `ttl`) inside any `cache_control`."""
    drop = {"scope"} if keep_ttl else {"scope", "ttl"}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k == "cache_control" and isinstance(v, dict):
                out[k] = {ck: cv for ck, cv in v.items() if ck not in drop}
            else:
                out[k] = _strip_cache_control(v, keep_ttl)
        return out
    if isinstance(obj, list):
        return [_strip_cache_control(v, keep_ttl) for v in obj]
    return obj


def expected_invoke_body(client_body: dict, model_id: str, beta_headers: Iterable[str] = ()) -> dict:
    """The InvokeModel body the contract prescribes for `client_body` sent to Claude model
    `model_id` (resolved Bedrock id), betas included (as a sorted list; compare with
    assert_relayed_body, which ignores their order)."""
    body = copy.deepcopy(client_body)
    betas = expected_betas(model_id, beta_headers, body.get("anthropic_beta"))
    out = {k: v for k, v in body.items() if k in RELAY_KEYS and k != "anthropic_beta"}
    out["anthropic_version"] = BEDROCK_ANTHROPIC_VERSION
    if betas:
        out["anthropic_beta"] = sorted(betas)
    cm = body.get("context_management")
    if isinstance(cm, dict) and COMPACT_BETA in betas:
        # only compaction edits, and only with their beta (front-doors.md §1.7.5) — which the
        # default table does not pass, so by default context_management is always removed
        compact = [e for e in cm.get("edits") or [] if isinstance(e, dict) and e.get("type") == "compact_20260112"]
        if compact:
            out["context_management"] = dict(cm, edits=compact)
    if isinstance(out.get("thinking"), dict):
        out["thinking"] = {k: v for k, v in out["thinking"].items() if k != "display"}
    if isinstance(out.get("tools"), list) and TOOL_SEARCH not in betas:
        out["tools"] = [{k: v for k, v in t.items() if k != "defer_loading"} if isinstance(t, dict) else t for t in out["tools"]]
    return _strip_cache_control(out, keeps_cache_ttl(model_id))


def assert_relayed_body(sent: dict, client_body: dict, model_id: str, beta_headers: Iterable[str] = ()) -> None:
    """`sent` (what Bedrock received) is exactly the contract's relay of `client_body`: same
    keys, every value equal as parsed JSON, betas equal as a set without duplicates."""
    want = expected_invoke_body(client_body, model_id, beta_headers)
    got = dict(sent)
    if "anthropic_beta" in got:
        betas = got["anthropic_beta"]
        assert isinstance(betas, list) and len(betas) == len(set(betas)), f"anthropic_beta must be a list without duplicates: {betas}"
        assert betas, "an empty anthropic_beta list must be omitted"
        got["anthropic_beta"] = sorted(betas)
    assert sorted(got) == sorted(want), f"top-level keys: sent {sorted(got)}, expected {sorted(want)}"
    for k in want:
        assert got[k] == want[k], f"`{k}` differs:\n sent     {json.dumps(got[k])[:1500]}\n expected {json.dumps(want[k])[:1500]}"


def count_tokens_inner(rec) -> dict:
    """The InvokeModel body inside a CountTokens request a fake Bedrock recorded."""
    sent = rec.json()
    assert set(sent) == {"input"} and set(sent["input"]) == {"invokeModel"}, sent
    assert set(sent["input"]["invokeModel"]) == {"body"}, sent
    return json.loads(base64.b64decode(sent["input"]["invokeModel"]["body"], validate=True))


# ---------------------------------------------------------------- SSE


def parse_sse(raw: bytes, complete: bool = True) -> list:
    """[(event name, data as dict)] of an Anthropic SSE body framed exactly as
    `event: <type>\\ndata: <one-line JSON>\\n\\n`, with the JSON `type` equal to the event name.
    complete=False allows a cut last frame (dropped)."""
    text = raw.decode("utf-8")
    if complete:
        assert text.endswith("\n\n"), f"the stream does not end with a complete frame: {text[-200:]!r}"
    frames = text.split("\n\n")
    tail = frames.pop()  # "" for a complete stream, else a cut frame
    if complete:
        assert tail == ""
    events = []
    for f in frames:
        lines = f.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), \
            f"not an `event:` + `data:` frame: {f[:300]!r}"
        name = lines[0][len("event: "):]
        data = json.loads(lines[1][len("data: "):])
        assert isinstance(data, dict) and data.get("type") == name, f"event {name!r} carries type {data.get('type')!r}"
        events.append((name, data))
    return events


def assert_message_stream(events: list, allow_ping: bool = True) -> dict:
    """Checks the Messages stream grammar (front-doors.md §1.4):
    message_start, blocks (start, deltas, stop) with indexes 0,1,2… one open at a time,
    message_delta (≥1, cumulative usage), message_stop last; `ping` anywhere if allowed; no
    `error`. Returns the accumulated Message as a dict (content, stop_reason, stop_sequence, usage)."""
    names = [n for n, _ in events]
    assert "error" not in names, f"error event in a stream expected to succeed: {events[-1]}"
    if not allow_ping:
        assert "ping" not in names, names
    evs = [(n, d) for n, d in events if n != "ping"]
    assert evs and evs[0][0] == "message_start", names
    assert evs[-1][0] == "message_stop", names
    start = evs[0][1]["message"]
    assert start["type"] == "message" and start["role"] == "assistant", start
    assert isinstance(start["id"], str) and start["id"], start
    assert start["content"] == [] and start.get("stop_reason") is None, start
    msg = {"id": start["id"], "model": start.get("model"), "content": [], "stop_reason": None, "stop_sequence": None,
           "usage": dict(start.get("usage") or {})}
    open_index = None
    partial: dict = {}
    deltas_seen = 0
    for name, d in evs[1:-1]:
        if name == "content_block_start":
            assert open_index is None, f"block {d['index']} opened while {open_index} is open"
            assert deltas_seen == 0, "content block after message_delta"
            assert d["index"] == len(msg["content"]), f"index {d['index']} but {len(msg['content'])} blocks so far"
            open_index = d["index"]
            block = copy.deepcopy(d["content_block"])
            if block["type"] == "tool_use":
                assert block.get("input") == {}, block
                partial[open_index] = ""
            msg["content"].append(block)
        elif name == "content_block_delta":
            assert d["index"] == open_index, f"delta for {d['index']} while {open_index} is open"
            block, delta = msg["content"][open_index], d["delta"]
            kind = delta["type"]
            if kind == "text_delta":
                assert block["type"] == "text"
                block["text"] += delta["text"]
            elif kind == "input_json_delta":
                assert block["type"] == "tool_use"
                partial[open_index] += delta["partial_json"]
            elif kind == "thinking_delta":
                assert block["type"] == "thinking"
                block["thinking"] += delta["thinking"]
            elif kind == "signature_delta":
                assert block["type"] == "thinking"
                block["signature"] = block.get("signature", "") + delta["signature"]
            elif kind == "citations_delta":
                block.setdefault("citations", []).append(delta["citation"])
            else:
                raise AssertionError(f"unknown delta type {kind!r}")
        elif name == "content_block_stop":
            assert d["index"] == open_index, f"stop for {d['index']} while {open_index} is open"
            if msg["content"][open_index]["type"] == "tool_use":
                raw = partial.pop(open_index)
                msg["content"][open_index]["input"] = json.loads(raw) if raw else {}
            open_index = None
        elif name == "message_delta":
            assert open_index is None, "message_delta while a block is open"
            deltas_seen += 1
            msg["stop_reason"] = d["delta"].get("stop_reason")
            msg["stop_sequence"] = d["delta"].get("stop_sequence")
            assert isinstance(d["usage"]["output_tokens"], int), d
            msg["usage"].update(d["usage"])  # cumulative: overwrite
        else:
            raise AssertionError(f"unexpected event {name!r} inside the stream")
    assert open_index is None, "stream ended with a block open"
    assert deltas_seen >= 1, "no message_delta"
    assert isinstance(msg["stop_reason"], str) and msg["stop_reason"], msg
    return msg


def stream_error_event(events: list) -> dict:
    """The `error` object of a stream that must end with `event: error` (and nothing after it)."""
    assert events, "empty stream"
    name, data = events[-1]
    assert name == "error", f"the stream does not end with an error event: {[n for n, _ in events]}"
    assert "message_stop" not in [n for n, _ in events], "a failed stream must not also claim message_stop"
    assert_error_body(data)
    return data["error"]


# ---------------------------------------------------------------- errors


def assert_error_body(body: Any, type_: Optional[str] = None, message_contains: Optional[str] = None) -> dict:
    """`{"type":"error","error":{"type","message",...}}` (extra fields inside `error` allowed;
    a top-level `request_id` too, as Anthropic sends one). Returns `error`."""
    assert isinstance(body, dict), body
    assert body.get("type") == "error", f"not an Anthropic error envelope: {body}"
    assert set(body) <= {"type", "error", "request_id"}, f"unexpected top-level keys: {sorted(body)}"
    err = body["error"]
    assert isinstance(err, dict) and isinstance(err.get("type"), str) and isinstance(err.get("message"), str), err
    assert err["message"], err
    if type_ is not None:
        assert err["type"] == type_, err
    if message_contains is not None:
        assert message_contains in err["message"], err
    return err


def assert_error_envelope(status: int, headers: dict, body: bytes, want_status: int, type_: Optional[str] = None,
                          message_contains: Optional[str] = None) -> dict:
    """An HTTP error answer in Anthropic's shape: status, JSON content type, envelope."""
    assert status == want_status, f"expected {want_status}, got {status}: {body[:500]!r}"
    ct = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    assert ct.startswith("application/json"), (ct, body[:300])
    return assert_error_body(json.loads(body), type_, message_contains)


# ---------------------------------------------------------------- what a fake Bedrock streamed


def bedrock_chunk_events(rec, wait_s: float = 3.0) -> list:
    """The Anthropic events (dicts) in the `chunk` frames of an InvokeModelWithResponseStream
    answer a fake Bedrock sent (rec.response_body: the event-stream bytes)."""
    # The fake records a streamed body once it has written all of it, which can be a moment
    # after the gateway delivered the end of the stream to the client (as fakes.usage does).
    deadline = time.monotonic() + wait_s
    while not rec.response_body and time.monotonic() < deadline:
        time.sleep(0.01)
    msgs, rest = es.decode_messages(rec.response_body)
    assert rest == b"", "the fake's stream ended inside a frame"
    out = []
    for m in msgs:
        if m["headers"].get(":event-type") == "chunk":
            out.append(json.loads(base64.b64decode(json.loads(m["payload"])["bytes"])))
    return out


def claude_stream_events(blocks, stop_reason="end_turn", usage=(30, 25), pings=False, model="claude-sonnet-4-20250514"):
    """Bedrock Claude stream events for `blocks` (text, thinking, tool_use), as dicts."""
    evs = [{"type": "message_start", "message": {"id": "msg_bdrk_01Steered", "type": "message", "role": "assistant", "model": model,
                                                 "content": [], "stop_reason": None, "stop_sequence": None,
                                                 "usage": {"input_tokens": usage[0], "output_tokens": 1}}}]
    if pings:
        evs.append({"type": "ping"})
    for i, b in enumerate(blocks):
        if b["type"] == "text":
            evs.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            half = len(b["text"]) // 2
            for piece in (b["text"][:half], b["text"][half:]):
                evs.append({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}})
        elif b["type"] == "thinking":
            evs.append({"type": "content_block_start", "index": i, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            half = len(b["thinking"]) // 2
            for piece in (b["thinking"][:half], b["thinking"][half:]):
                evs.append({"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": piece}})
            evs.append({"type": "content_block_delta", "index": i, "delta": {"type": "signature_delta", "signature": b["signature"]}})
        elif b["type"] == "tool_use":
            evs.append({"type": "content_block_start", "index": i,
                        "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
            raw = json.dumps(b["input"])
            for piece in ("", raw[:5], raw[5:]):
                evs.append({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": piece}})
        if pings and i == 0:
            evs.append({"type": "ping"})
        evs.append({"type": "content_block_stop", "index": i})
    evs.append({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": usage[1]}})
    evs.append({"type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": usage[0], "outputTokenCount": usage[1], "invocationLatency": 90, "firstByteLatency": 30}})
    return evs
