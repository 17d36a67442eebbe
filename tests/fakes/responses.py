"""Scripted fake OpenAI Responses API (what the Codex CLI and openai-python's
`client.responses` call), stateless.

    from fakes.responses import ScriptedResponses, function_call_turn, text_turn
    with ScriptedResponses([function_call_turn("exec_command", {"cmd": "echo hi"}), text_turn("done")],
                           api_key="sk-test") as fr:
        ...  # base_url = fr.url + "/v1"; fr.turn_requests[1] carries the function_call_output

Routes (query string ignored):

  POST /v1/responses   the next scripted turn: streamed (`stream: true`) in the event grammar of
                       front-doors.md §2.5 — `event:` + `data:` frames, `sequence_number` 0,1,2…,
                       response.created / in_progress / output_item.added / … / output_item.done /
                       response.completed with string `response.id` and integer usage — or, without
                       `stream`, one Response object
  GET  /v1/models      an empty list
  anything else        404 with an OpenAI error body

A turn is a ResponsesTurn (text_turn / function_call_turn / custom_tool_call_turn), a `Reply`,
or a callable `fn(rec, body, index) -> ResponsesTurn | Reply`. An exhausted script answers
400 invalid_request_error (Codex does not retry 400s), so extra turns fail loudly.
Auth: with `api_key` set, `Authorization: Bearer <api_key>` is required (else 401).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from dataclasses import dataclass
from typing import Optional

from .anthropic import ScriptedTurns, body_text_size
from .server import FakeServer, RecordedRequest, Reply
from .text import count_tokens, split_words

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def _new_id(prefix: str) -> str:
    with _ids_lock:
        return f"{prefix}_fake{next(_ids):06d}"


@dataclass
class ResponsesTurn:
    """One scripted model response: its output items (final shapes, status completed)."""

    items: list
    status: str = "completed"  # completed | incomplete | failed
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None


def message_item(text: str) -> dict:
    return {"id": _new_id("msg"), "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def text_turn(text: str, *, reasoning: Optional[str] = None) -> ResponsesTurn:
    """A final answer, optionally preceded by a reasoning item with a summary."""
    return ResponsesTurn(_reasoning(reasoning) + [message_item(text)])


def function_call_turn(name: str, arguments, call_id: Optional[str] = None, *, reasoning: Optional[str] = None,
                       text: Optional[str] = None) -> ResponsesTurn:
    """A call of the client's function tool `name`; `arguments` is a dict (JSON-encoded here) or a string."""
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    items = _reasoning(reasoning) + ([message_item(text)] if text else [])
    items.append({"id": _new_id("fc"), "type": "function_call", "status": "completed",
                  "call_id": call_id or _new_id("call"), "name": name, "arguments": args})
    return ResponsesTurn(items)


def custom_tool_call_turn(name: str, input: str, call_id: Optional[str] = None) -> ResponsesTurn:
    """A call of a `custom` (free-form) tool such as Codex's apply_patch."""
    return ResponsesTurn([{"id": _new_id("ctc"), "type": "custom_tool_call", "status": "completed",
                           "call_id": call_id or _new_id("call"), "name": name, "input": input}])


def _reasoning(summary: Optional[str]) -> list:
    if summary is None:
        return []
    return [{"id": _new_id("rs"), "type": "reasoning", "summary": [{"type": "summary_text", "text": summary}],
             "encrypted_content": "ZmFrZS1lbmNyeXB0ZWQtcmVhc29uaW5n"}]


def _item_text(item: dict) -> str:
    t = item.get("arguments", "") + item.get("input", "")
    for c in item.get("content", []) + item.get("summary", []):
        t += c.get("text", "")
    return t


def usage_of(turn: ResponsesTurn, n_in: int) -> dict:
    n_out = turn.output_tokens if turn.output_tokens is not None else count_tokens("".join(_item_text(i) for i in turn.items))
    return {"input_tokens": n_in, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": n_out, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": n_in + n_out}


def response_object(turn: ResponsesTurn, resp_id: str, model: str, n_in: int, status: str, output: list,
                    with_usage: bool) -> dict:
    return {
        "id": resp_id, "object": "response", "created_at": int(time.time()), "status": status, "model": model,
        "output": output, "usage": usage_of(turn, n_in) if with_usage else None, "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "parallel_tool_calls": True, "tool_choice": "auto", "tools": [], "store": False,
    }


def response_events(turn: ResponsesTurn, resp_id: str, model: str, n_in: int) -> list:
    """The streamed events of a turn, front-doors.md §2.5 (dicts without sequence_number)."""
    evs: list = [
        {"type": "response.created", "response": response_object(turn, resp_id, model, n_in, "in_progress", [], False)},
        {"type": "response.in_progress", "response": response_object(turn, resp_id, model, n_in, "in_progress", [], False)},
    ]
    for oi, item in enumerate(turn.items):
        kind = item["type"]
        added = dict(item, status="in_progress")
        if kind == "message":
            added["content"] = []
        elif kind == "function_call":
            added["arguments"] = ""
        elif kind == "custom_tool_call":
            added["input"] = ""
        elif kind == "reasoning":
            added["summary"] = []
        evs.append({"type": "response.output_item.added", "output_index": oi, "item": added})
        iid = item["id"]
        if kind == "message":
            for ci, part in enumerate(item["content"]):
                text = part["text"]
                evs.append({"type": "response.content_part.added", "item_id": iid, "output_index": oi, "content_index": ci,
                            "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}})
                evs += [{"type": "response.output_text.delta", "item_id": iid, "output_index": oi, "content_index": ci,
                         "delta": w, "logprobs": []} for w in split_words(text)]
                evs.append({"type": "response.output_text.done", "item_id": iid, "output_index": oi, "content_index": ci,
                            "text": text, "logprobs": []})
                evs.append({"type": "response.content_part.done", "item_id": iid, "output_index": oi, "content_index": ci,
                            "part": dict(part)})
        elif kind == "function_call":
            args = item["arguments"]
            half = len(args) // 2
            for piece in (args[:half], args[half:]):
                evs.append({"type": "response.function_call_arguments.delta", "item_id": iid, "output_index": oi, "delta": piece})
            evs.append({"type": "response.function_call_arguments.done", "item_id": iid, "output_index": oi,
                        "name": item["name"], "arguments": args})
        elif kind == "custom_tool_call":
            evs.append({"type": "response.custom_tool_call_input.delta", "item_id": iid, "output_index": oi, "delta": item["input"]})
            evs.append({"type": "response.custom_tool_call_input.done", "item_id": iid, "output_index": oi, "input": item["input"]})
        elif kind == "reasoning":
            for si, s in enumerate(item["summary"]):
                evs.append({"type": "response.reasoning_summary_part.added", "item_id": iid, "output_index": oi,
                            "summary_index": si, "part": {"type": "summary_text", "text": ""}})
                evs.append({"type": "response.reasoning_summary_text.delta", "item_id": iid, "output_index": oi,
                            "summary_index": si, "delta": s["text"]})
                evs.append({"type": "response.reasoning_summary_text.done", "item_id": iid, "output_index": oi,
                            "summary_index": si, "text": s["text"]})
                evs.append({"type": "response.reasoning_summary_part.done", "item_id": iid, "output_index": oi,
                            "summary_index": si, "part": dict(s)})
        evs.append({"type": "response.output_item.done", "output_index": oi, "item": dict(item)})
    terminal = {"completed": "response.completed", "incomplete": "response.incomplete", "failed": "response.failed"}[turn.status]
    evs.append({"type": terminal, "response": response_object(turn, resp_id, model, n_in, turn.status,
                                                               [dict(i) for i in turn.items], True)})
    return evs


def sse_frames(events: list) -> list:
    out = []
    for seq, e in enumerate(events):
        e = dict(e, sequence_number=seq)
        out.append(f"event: {e['type']}\ndata: {json.dumps(e, separators=(',', ':'))}\n\n".encode())
    return out


def openai_error(status: int, message: str, type_: str = "invalid_request_error", code: Optional[str] = None,
                 param: Optional[str] = None) -> Reply:
    return FakeServer.json_reply(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})


class ScriptedResponses(FakeServer):
    name = "responses"

    def __init__(self, turns=(), api_key: Optional[str] = None, prefix: str = "/v1", **kw):
        super().__init__(**kw)
        self.api_key = api_key
        self.prefix = prefix
        self.turns = ScriptedTurns(turns)

    @property
    def base_url(self) -> str:
        return self.url + self.prefix

    def script(self, turns) -> None:
        self.turns.script(turns)

    @property
    def turn_requests(self) -> list:
        return list(self.turns.turn_requests)

    def clear(self) -> None:
        super().clear()
        self.turns.script([])

    def default_error(self, status: int, error_type: Optional[str]) -> Reply:
        return openai_error(status, f"canned {status}", error_type or "invalid_request_error")

    def handle(self, rec: RecordedRequest, steer: dict) -> Reply:
        path = rec.path.split("?", 1)[0]
        if rec.method == "GET" and path == f"{self.prefix}/models":
            return self.json_reply(200, {"object": "list", "data": []})
        if rec.method != "POST" or path != f"{self.prefix}/responses":
            return openai_error(404, f"Invalid URL ({rec.method} {path})")
        if self.api_key is not None and rec.headers.get("authorization") != f"Bearer {self.api_key}":
            return openai_error(401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
        canned = self.canned(rec, steer)
        if canned is not None:
            return canned
        try:
            body = json.loads(rec.body)
        except ValueError:
            return openai_error(400, "We could not parse the JSON body of your request.")
        if not isinstance(body, dict) or "model" not in body or "input" not in body:
            return openai_error(400, "Missing required parameter: 'model' or 'input'.", code="missing_required_parameter")
        for stateful in ("previous_response_id", "conversation"):
            if body.get(stateful):
                return openai_error(400, f"fake: stateless, `{stateful}` is not supported", param=stateful)
        index, spec = self.turns.take(rec)
        if spec is None:
            return openai_error(400, f"fake: the script has no turn {index} (the test scripted fewer)")
        turn = self.turns.resolve(spec, rec, body, index)
        if isinstance(turn, Reply):
            return turn
        resp_id = _new_id("resp")
        model = str(body["model"])
        n_in = turn.input_tokens if turn.input_tokens is not None else body_text_size(body)
        headers = [("x-request-id", f"req_{resp_id}")]
        if body.get("stream"):
            frames = sse_frames(response_events(turn, resp_id, model, n_in))
            return Reply(200, [("content-type", "text/event-stream")] + headers, stream=frames)
        obj = response_object(turn, resp_id, model, n_in, turn.status, [dict(i) for i in turn.items], True)
        return self.json_reply(200, obj, headers)

