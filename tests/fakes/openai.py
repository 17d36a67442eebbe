"""Fake OpenAI Chat Completions (and Embeddings) upstream.

POST {prefix}/embeddings answers as fakes.embeddings.openai_embeddings does: deterministic
unit vectors as float lists or base64 little-endian float32, usage, OpenAI's 400/404 shapes.

POST {prefix}/chat/completions with `authorization: Bearer <api_key>`; answers a realistic
`chat.completion` whose text is "echo: " + the last user message, or an SSE stream of
`chat.completion.chunk`s ending with `data: [DONE]` (plus a usage chunk when
`stream_options.include_usage` is true).

x-fake-stream-events: a JSON list; each element is sent as one SSE event: an object as
`data: <json>`, a string verbatim as `data: <string>` (so "[DONE]" must be listed).
"""

from __future__ import annotations

import json
import time
from typing import Any, Optional

from .embeddings import openai_embeddings
from .server import FakeServer, RecordedRequest, Reply
from .text import count_tokens, echo_text, split_words

# What OpenAI reports for an undated alias.
RESOLVED_MODELS = {
    "gpt-4o": "gpt-4o-2024-08-06",
    "gpt-4o-mini": "gpt-4o-mini-2024-07-18",
}


def openai_error(status: int, message: str, type_: str, code: Optional[str], param: Optional[str] = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def last_user_text(messages: list) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, str):
                return c
            if isinstance(c, list):
                return "\n".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _all_text(messages: list) -> str:
    out = []
    for m in messages:
        c = m.get("content") if isinstance(m, dict) else None
        if isinstance(c, str):
            out.append(c)
        elif isinstance(c, list):
            out += [p.get("text", "") for p in c if isinstance(p, dict)]
    return " ".join(out)


class FakeOpenAI(FakeServer):
    name = "openai"

    def __init__(self, api_key: str = "sk-upstream-test", prefix: str = "/v1", **kw):
        super().__init__(**kw)
        self.api_key = api_key
        self.prefix = prefix
        self._seq = 0

    def _next_id(self) -> str:
        with self._lock:
            self._seq += 1
            return f"chatcmpl-fake{self._seq:06d}"

    def default_error(self, status: int, error_type: Optional[str]) -> Reply:
        kinds = {
            400: ("invalid_request_error", None),
            401: ("invalid_request_error", "invalid_api_key"),
            403: ("permission_error", None),
            404: ("invalid_request_error", "model_not_found"),
            429: ("rate_limit_error", "rate_limit_exceeded"),
        }
        type_, code = kinds.get(status, ("server_error", None))
        headers = [("x-request-id", "req_fake")]
        if status == 429:
            headers.append(("retry-after", "2"))
        return self.json_reply(
            status, openai_error(status, f"Canned upstream error {status}.", error_type or type_, code), headers
        )

    def handle(self, rec: RecordedRequest, steer: dict) -> Reply:
        path = rec.path.split("?", 1)[0]
        embeddings = path == f"{self.prefix}/embeddings"
        if path != f"{self.prefix}/chat/completions" and not embeddings:
            return self.json_reply(404, openai_error(404, f"Invalid URL ({rec.method} {path})", "invalid_request_error", None))
        if rec.method != "POST":
            return self.json_reply(405, openai_error(405, "Method not allowed", "invalid_request_error", None))
        auth = rec.headers.get("authorization", "")
        if auth != f"Bearer {self.api_key}":
            shown = auth[7:] if auth.startswith("Bearer ") else ""
            masked = (shown[:3] + "*" * 6 + shown[-4:]) if len(shown) > 8 else "*" * len(shown)
            msg = (
                f"Incorrect API key provided: {masked}. You can find your API key at https://platform.openai.com/account/api-keys."
                if shown
                else "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return self.json_reply(401, openai_error(401, msg, "invalid_request_error", "invalid_api_key"))
        canned = self.canned(rec, steer)
        if canned is not None:
            return canned
        try:
            req = json.loads(rec.body)
        except ValueError:
            return self.json_reply(
                400,
                openai_error(400, "We could not parse the JSON body of your request.", "invalid_request_error", None),
            )
        if embeddings:
            status, answer = openai_embeddings(req)
            return self.json_reply(status, answer, [("x-request-id", f"req_emb{self._next_id()[-6:]}"), ("openai-processing-ms", "9")])
        if not isinstance(req, dict):
            return self.json_reply(400, openai_error(400, "Invalid request body.", "invalid_request_error", None))
        for f in ("model", "messages"):
            if f not in req:
                return self.json_reply(
                    400, openai_error(400, f"Missing required parameter: '{f}'.", "invalid_request_error", "missing_required_parameter", f)
                )
        if not isinstance(req["messages"], list) or not req["messages"]:
            return self.json_reply(
                400, openai_error(400, "Invalid 'messages': empty array.", "invalid_request_error", "empty_array", "messages")
            )
        model = RESOLVED_MODELS.get(req["model"], req["model"])
        text = echo_text(last_user_text(req["messages"]))
        prompt = count_tokens(_all_text(req["messages"])) + 3 * len(req["messages"])
        completion = count_tokens(text)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        cid = self._next_id()
        created = int(time.time())
        common_headers = [("x-request-id", f"req_{cid}"), ("openai-processing-ms", "12")]
        if req.get("stream"):
            include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
            events = steer.get("stream-events")
            if events is not None:
                stream = [_sse(e) for e in json.loads(events)]
            else:
                stream = self._default_stream(cid, created, model, text, usage if include_usage else None)
            return Reply(200, [("content-type", "text/event-stream; charset=utf-8")] + common_headers, stream=stream)
        resp = {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
            "service_tier": "default",
            "system_fingerprint": "fp_fake0001",
        }
        return self.json_reply(200, resp, common_headers)

    @staticmethod
    def _default_stream(cid: str, created: int, model: str, text: str, usage: Optional[dict]) -> list:
        def chunk(delta: dict, finish: Optional[str] = None, choices: bool = True, usage_v: Any = None) -> bytes:
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "service_tier": "default",
                "system_fingerprint": "fp_fake0001",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else [],
            }
            if usage is not None:
                obj["usage"] = usage_v
            return _sse(obj)

        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        for piece in split_words(text):
            out.append(chunk({"content": piece}))
        out.append(chunk({}, "stop"))
        if usage is not None:
            out.append(chunk({}, choices=False, usage_v=usage))
        out.append(b"data: [DONE]\n\n")
        return out


def _sse(event: Any) -> bytes:
    if isinstance(event, str):
        return f"data: {event}\n\n".encode()
    return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"
