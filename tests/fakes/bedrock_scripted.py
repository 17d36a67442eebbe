"""Scripted fake Bedrock runtime for Claude conversations (what Claude Code's Bedrock mode and
the anthropic SDKs' Bedrock clients call), built on FakeBedrock's validation and errors.

    from fakes.anthropic import text_turn, tool_use_turn
    from fakes.bedrock_scripted import ScriptedBedrock
    with ScriptedBedrock([tool_use_turn("Bash", {"command": "echo hi"}), text_turn("done")],
                         bearer_token="test-only-token") as fb:
        ...  # ANTHROPIC_BEDROCK_BASE_URL=fb.url; fb.turn_requests[1] carries the tool_result

Routes (model ids arrive raw `…-v1:0` or percent-encoded `…-v1%3A0`; both are accepted):

  POST /model/{id}/invoke-with-response-stream   the next scripted turn as event-stream `chunk`
                                                 frames (base64 Anthropic events), with
                                                 `amazon-bedrock-invocationMetrics` on message_stop
  POST /model/{id}/invoke                        the next scripted turn as one Message JSON; a body
                                                 with `max_tokens: 1` is an availability probe
                                                 (Claude Code's Bedrock mode sends them): answered,
                                                 not counted as a turn
  POST /model/{id}/count-tokens                  {"inputTokens": n}
  GET  /inference-profiles                       {"inferenceProfileSummaries": []} (control-plane
                                                 call Claude Code makes at start)
  anything else                                  404 UnknownOperationException

`models={...}` limits the ids served: invoke calls for any other id get 404
ResourceNotFoundException (Claude Code's availability probes for its default models, then
carry on with the configured one).

Each body is checked the way FakeBedrock checks InvokeModel Claude bodies (allowed keys,
`anthropic_version`, roles, the model's accepted betas, `thinking.display`, `defer_loading`
without tool search, `cache_control.scope`, `context_management`...), so a client's Bedrock
body that Bedrock would refuse fails. count-tokens takes Claude foundation-model ids only
(no geo prefix), like AWS.

Auth: SigV4 (verified with botocore, as FakeBedrock does) always works. TEST-ONLY: with
`bearer_token` set, `Authorization: Bearer <bearer_token>` is also accepted (a Bedrock API key
as Claude Code sends it with AWS_BEARER_TOKEN_BEDROCK, over plain HTTP). Real Bedrock accepts
API keys too, but only this fake accepts *this* token; behind the gateway, the gateway re-signs.
With `allow_unauthenticated=True` requests without Authorization pass too
(CLAUDE_CODE_SKIP_BEDROCK_AUTH=1).
"""

from __future__ import annotations

import base64
import json
from typing import Iterable, Optional
from urllib.parse import unquote

from . import eventstream as es
from .anthropic import AnthropicTurn, ScriptedTurns, body_text_size, message_events, message_json
from .bedrock import (COUNT_TOKENS_UNSUPPORTED, BedrockError, FakeBedrock, claude_model_name, counts_tokens, family,
                      validate_anthropic)
from .server import RecordedRequest, Reply
from .sigv4 import verify

SCRIPTED_OPS = ("invoke", "invoke-with-response-stream", "count-tokens")


class ScriptedBedrock(FakeBedrock):
    name = "bedrock"

    def __init__(self, turns=(), bearer_token: Optional[str] = None, allow_unauthenticated: bool = False,
                 models: Optional[Iterable[str]] = None, **kw):
        super().__init__(**kw)
        self.bearer_token = bearer_token
        self.allow_unauthenticated = allow_unauthenticated
        # None: every Claude model id is served; else only these (raw ids), the rest get
        # 404 ResourceNotFoundException (what a gateway answers for an unconfigured model).
        self.models = set(models) if models is not None else None
        self.turns = ScriptedTurns(turns)

    def script(self, turns) -> None:
        self.turns.script(turns)

    @property
    def turn_requests(self) -> list:
        return list(self.turns.turn_requests)

    def clear(self) -> None:
        super().clear()
        self.turns.script([])

    def _auth_error(self, rec: RecordedRequest) -> Optional[Reply]:
        auth = rec.headers.get("authorization", "")
        if auth.startswith("Bearer ") and self.bearer_token is not None:
            if auth[len("Bearer "):] == self.bearer_token:
                return None
            return self.error("UnrecognizedClientException", "The security token included in the request is invalid.", 403)
        if not auth and self.allow_unauthenticated:
            return None
        check = verify(rec.method, rec.path, rec.headers, rec.body, self.credentials, self.region)
        rec.sigv4 = check
        if not check.ok:
            return self.error(check.error_type, check.message, 403)
        return None

    def handle(self, rec: RecordedRequest, steer: dict) -> Reply:
        path = rec.path.split("?", 1)[0]
        if rec.method == "GET" and path == "/inference-profiles":
            return self._auth_error(rec) or self.json_reply(200, {"inferenceProfileSummaries": []})
        parts = path.split("/")
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in SCRIPTED_OPS or rec.method != "POST":
            return self.error("UnknownOperationException", f"Unknown operation {rec.method} {path}", 404)
        denied = self._auth_error(rec)
        if denied is not None:
            return denied
        canned = self.canned(rec, steer)
        if canned is not None:
            return canned
        model_id = unquote(parts[2])
        op = parts[3]
        if self.models is not None and model_id not in self.models and op != "count-tokens":
            return self.error("ResourceNotFoundException", f"Model {model_id} is not served here.", 404)
        try:
            body = json.loads(rec.body)
        except ValueError:
            return self.error("ValidationException", "Malformed input request: request body is not valid JSON, please reformat your input and try again.")
        try:
            if op == "count-tokens":
                if not counts_tokens(model_id):
                    raise BedrockError("ValidationException", COUNT_TOKENS_UNSUPPORTED)
                inner = json.loads(base64.b64decode(body["input"]["invokeModel"]["body"]))
                validate_anthropic(inner, model_id)
                return self.json_reply(200, {"inputTokens": body_text_size(inner)})
            if family(model_id) != "anthropic":
                raise BedrockError("ValidationException", f"ScriptedBedrock plays Claude turns only, not `{model_id}`.")
            validate_anthropic(body, model_id)
        except (BedrockError, KeyError, TypeError, ValueError) as e:
            if isinstance(e, BedrockError):
                return self.error(e.kind, e.message, e.status)
            return self.error("ValidationException", f"Malformed count-tokens input: {e!r}")
        model = claude_model_name(model_id)
        n_in = body_text_size(body)
        msg_id = f"msg_bdrk_fake{self._next():06d}"
        if op == "invoke" and body["max_tokens"] == 1:
            probe = AnthropicTurn([{"type": "text", "text": "."}], "max_tokens", output_tokens=1)
            return self.json_reply(200, message_json(probe, msg_id, model, n_in), self._invoke_headers(n_in, 1))
        index, spec = self.turns.take(rec)
        if spec is None:
            return self.error("ValidationException", f"fake: the script has no turn {index} (the test scripted fewer)")
        turn = self.turns.resolve(spec, rec, body, index)
        if isinstance(turn, Reply):
            return turn
        n_in = turn.input_tokens if turn.input_tokens is not None else n_in
        if op == "invoke":
            msg = message_json(turn, msg_id, model, n_in)
            return self.json_reply(200, msg, self._invoke_headers(n_in, msg["usage"]["output_tokens"]))
        events = message_events(turn, msg_id, model, n_in, ping=False)
        n_out = events[-2]["usage"]["output_tokens"]
        events[-1]["amazon-bedrock-invocationMetrics"] = {
            "inputTokenCount": n_in, "outputTokenCount": n_out, "invocationLatency": 212, "firstByteLatency": 87,
        }
        return Reply(200, self._stream_headers(), stream=[es.chunk_frame(e) for e in events])
