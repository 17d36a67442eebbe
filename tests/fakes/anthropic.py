"""Scripted fake Anthropic Messages API (what Claude Code and the anthropic SDKs call).

The test chooses the model's turns; the fake plays them in order, one per conversation
request, and records every request (path, headers, parsed body):

    from fakes.anthropic import ScriptedAnthropic, text_turn, tool_use_turn
    with ScriptedAnthropic([tool_use_turn("Bash", {"command": "echo hi"}), text_turn("done")]) as fa:
        ...  # point the client at fa.url; then fa.turn_requests[1] carries the tool_result

Routes (the query string, e.g. Claude Code's `?beta=true`, is ignored):

  POST /v1/messages               a conversation turn: the next scripted turn, streamed as SSE
                                  with `event:` lines (front-doors.md §1.4) when the body says
                                  `stream: true`, else a Message JSON. A request with
                                  `max_tokens: 1` is an availability probe: answered with a
                                  one-token text Message and not counted as a turn.
  POST /v1/messages/count_tokens  {"input_tokens": n} (a deterministic estimate)
  GET  /v1/models                 an empty model list
  anything else                   404 not_found_error

A turn is an AnthropicTurn (built with text_turn / tool_use_turn), a `Reply`, or a callable
`fn(rec, body, index) -> AnthropicTurn | Reply` for a turn that depends on the request.
When the script is exhausted the fake answers 400 invalid_request_error (never retried by
the SDKs), so a client that makes more turns than scripted fails loudly instead of hanging.

Auth: with `api_key` set, `x-api-key` or `Authorization: Bearer` must carry it, else 401
authentication_error; with `api_key=None` any credential (or none) is accepted.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

from .server import FakeServer, RecordedRequest, Reply
from .text import count_tokens, split_words


@dataclass
class AnthropicTurn:
    """One scripted assistant message: its content blocks and stop reason."""

    blocks: list
    stop_reason: str = "end_turn"
    input_tokens: Optional[int] = None  # default: estimated from the request body
    output_tokens: Optional[int] = None  # default: estimated from the blocks


_tool_seq = 0
_tool_lock = threading.Lock()


def new_tool_use_id(prefix: str = "toolu_fake") -> str:
    global _tool_seq
    with _tool_lock:
        _tool_seq += 1
        return f"{prefix}{_tool_seq:06d}"


def text_turn(text: str, *, thinking: Optional[str] = None, signature: str = "c2lnbmF0dXJlLWZha2U=") -> AnthropicTurn:
    """A final answer (stop_reason end_turn), optionally preceded by a thinking block."""
    blocks = _thinking_blocks(thinking, signature) + [{"type": "text", "text": text}]
    return AnthropicTurn(blocks, "end_turn")


def tool_use_turn(
    name: str,
    input: dict,
    tool_id: Optional[str] = None,
    *,
    text: Optional[str] = None,
    thinking: Optional[str] = None,
    signature: str = "c2lnbmF0dXJlLWZha2U=",
) -> AnthropicTurn:
    """A call of the client's tool `name` (stop_reason tool_use); `tool_id` defaults to a fresh id."""
    blocks = _thinking_blocks(thinking, signature)
    if text:
        blocks.append({"type": "text", "text": text})
    blocks.append({"type": "tool_use", "id": tool_id or new_tool_use_id(), "name": name, "input": input})
    return AnthropicTurn(blocks, "tool_use")


def _thinking_blocks(thinking: Optional[str], signature: str) -> list:
    return [{"type": "thinking", "thinking": thinking, "signature": signature}] if thinking is not None else []


def turn_output_tokens(turn: AnthropicTurn) -> int:
    if turn.output_tokens is not None:
        return turn.output_tokens
    text = ""
    for b in turn.blocks:
        text += b.get("text", "") + b.get("thinking", "") + (json.dumps(b["input"]) if "input" in b else "")
    return count_tokens(text)


def message_json(turn: AnthropicTurn, msg_id: str, model: str, n_in: int) -> dict:
    """The non-streaming Message for a turn."""
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [dict(b) for b in turn.blocks],
        "stop_reason": turn.stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": n_in, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                  "output_tokens": turn_output_tokens(turn)},
    }


def message_events(turn: AnthropicTurn, msg_id: str, model: str, n_in: int, ping: bool = True) -> list:
    """The streamed events of a turn in the grammar of front-doors.md §1.4 (as dicts)."""
    n_out = turn_output_tokens(turn)
    evs: list = [{
        "type": "message_start",
        "message": {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": [],
                    "stop_reason": None, "stop_sequence": None,
                    "usage": {"input_tokens": n_in, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                              "output_tokens": 1}},
    }]
    if ping:
        evs.append({"type": "ping"})
    for i, b in enumerate(turn.blocks):
        kind = b["type"]
        if kind == "text":
            evs.append({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}})
            evs += [{"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": w}}
                    for w in split_words(b["text"]) or [""]]
        elif kind == "thinking":
            evs.append({"type": "content_block_start", "index": i,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            evs.append({"type": "content_block_delta", "index": i, "delta": {"type": "thinking_delta", "thinking": b["thinking"]}})
            evs.append({"type": "content_block_delta", "index": i, "delta": {"type": "signature_delta", "signature": b["signature"]}})
        elif kind == "tool_use":
            evs.append({"type": "content_block_start", "index": i,
                        "content_block": {"type": "tool_use", "id": b["id"], "name": b["name"], "input": {}}})
            raw = json.dumps(b["input"])
            half = len(raw) // 2  # two fragments: the client must concatenate before parsing
            evs.append({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": raw[:half]}})
            evs.append({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": raw[half:]}})
        else:  # redacted_thinking and other whole blocks come complete in their start event
            evs.append({"type": "content_block_start", "index": i, "content_block": dict(b)})
        evs.append({"type": "content_block_stop", "index": i})
    evs.append({"type": "message_delta", "delta": {"stop_reason": turn.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": n_out}})
    evs.append({"type": "message_stop"})
    return evs


def sse_frame(event: dict) -> bytes:
    """`event: <type>` + `data: <one-line JSON>` + blank line."""
    return f"event: {event['type']}\ndata: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def body_text_size(body: Any) -> int:
    """A stable input-token estimate for a request body (its JSON length / 4)."""
    return count_tokens(json.dumps(body, separators=(",", ":")))


TurnSpec = Union[AnthropicTurn, Reply, Callable[[RecordedRequest, dict, int], Union[AnthropicTurn, Reply]]]


class ScriptedTurns:
    """The shared turn bookkeeping of the scripted fakes: next turn, exhaustion, the requests
    that consumed a turn."""

    def __init__(self, turns=()):
        self._lock = threading.Lock()
        self._turns: list = list(turns)
        self._next = 0
        self.turn_requests: list = []

    def script(self, turns) -> None:
        with self._lock:
            self._turns = list(turns)
            self._next = 0
            self.turn_requests = []

    def take(self, rec: RecordedRequest):
        """(index, spec) of the next turn, or (index, None) when the script is exhausted."""
        with self._lock:
            i = self._next
            self._next += 1
            self.turn_requests.append(rec)
            return i, (self._turns[i] if i < len(self._turns) else None)

    @property
    def remaining(self) -> int:
        with self._lock:
            return max(0, len(self._turns) - self._next)

    def resolve(self, spec, rec: RecordedRequest, body: dict, index: int):
        return spec(rec, body, index) if callable(spec) else spec


class ScriptedAnthropic(FakeServer):
    name = "anthropic"

    def __init__(self, turns=(), api_key: Optional[str] = None, **kw):
        super().__init__(**kw)
        self.api_key = api_key
        self.turns = ScriptedTurns(turns)
        self._seq = 0

    # ----- script -----
    def script(self, turns) -> None:
        """Replaces the scripted turns and forgets which were played."""
        self.turns.script(turns)

    @property
    def turn_requests(self) -> list:
        """The requests that consumed a turn, in order."""
        return list(self.turns.turn_requests)

    def clear(self) -> None:
        super().clear()
        self.turns.script([])

    def _msg_id(self) -> str:
        with self._lock:
            self._seq += 1
            return f"msg_fake{self._seq:06d}"

    # ----- replies -----
    @staticmethod
    def error_reply(status: int, type_: str, message: str) -> Reply:
        return FakeServer.json_reply(status, {"type": "error", "error": {"type": type_, "message": message},
                                              "request_id": "req_fake"}, [("request-id", "req_fake")])

    def default_error(self, status: int, error_type: Optional[str]) -> Reply:
        kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                 404: "not_found_error", 429: "rate_limit_error", 529: "overloaded_error"}
        return self.error_reply(status, error_type or kinds.get(status, "api_error"), f"canned {status}")

    def _authorized(self, rec: RecordedRequest) -> bool:
        if self.api_key is None:
            return True
        return rec.headers.get("x-api-key") == self.api_key or rec.headers.get("authorization") == f"Bearer {self.api_key}"

    def handle(self, rec: RecordedRequest, steer: dict) -> Reply:
        path = rec.path.split("?", 1)[0]
        if rec.method == "GET" and path == "/v1/models":
            return self.json_reply(200, {"data": [], "has_more": False, "first_id": None, "last_id": None})
        if rec.method != "POST" or path not in ("/v1/messages", "/v1/messages/count_tokens"):
            return self.error_reply(404, "not_found_error", f"Not found: {rec.method} {path}")
        if not self._authorized(rec):
            return self.error_reply(401, "authentication_error", "invalid x-api-key")
        canned = self.canned(rec, steer)
        if canned is not None:
            return canned
        try:
            body = json.loads(rec.body)
        except ValueError:
            return self.error_reply(400, "invalid_request_error", "request body is not valid JSON")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self.error_reply(400, "invalid_request_error", "messages: Field required")
        if path.endswith("/count_tokens"):
            return self.json_reply(200, {"input_tokens": body_text_size(body)})
        if "max_tokens" not in body:
            return self.error_reply(400, "invalid_request_error", "max_tokens: Field required")
        model = str(body.get("model", ""))
        n_in = body_text_size(body)
        if body["max_tokens"] == 1:  # availability probe: answered, not a turn
            return self.json_reply(200, message_json(AnthropicTurn([{"type": "text", "text": "."}], "max_tokens", output_tokens=1),
                                                     self._msg_id(), model, n_in))
        index, spec = self.turns.take(rec)
        if spec is None:
            return self.error_reply(400, "invalid_request_error", f"fake: the script has no turn {index} (the test scripted fewer)")
        turn = self.turns.resolve(spec, rec, body, index)
        if isinstance(turn, Reply):
            return turn
        msg_id = self._msg_id()
        n_in = turn.input_tokens if turn.input_tokens is not None else n_in
        if body.get("stream"):
            frames = [sse_frame(e) for e in message_events(turn, msg_id, model, n_in)]
            return Reply(200, [("content-type", "text/event-stream"), ("request-id", f"req_{msg_id}")], stream=frames)
        return self.json_reply(200, message_json(turn, msg_id, model, n_in), [("request-id", f"req_{msg_id}")])
