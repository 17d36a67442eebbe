"""Fake AWS Bedrock runtime.

Serves POST /model/{modelId}/{invoke|converse|invoke-with-response-stream|converse-stream|count-tokens}.
Every request's SigV4 signature is checked with botocore as the oracle (fakes.sigv4) and
rejected the way AWS does (403 + x-amzn-ErrorType + {"message"}). Valid requests get their
body validated per operation and model family, and a deterministic answer whose text is
"echo: " + the last user text. CountTokens (`{"input": {"invokeModel": {"body": <base64>}}}` or
`{"input": {"converse": {...}}}`) validates the inner request like the operation it names and
answers `{"inputTokens": n}`, n counted the way the other answers count input; it takes
foundation model ids only (an inference profile id or ARN is a ValidationException).

x-fake-stream-events (streaming ops): a JSON list; each element is one of
  {"chunk": <obj>}                      chunk event whose bytes are base64(json(obj))
  {"event": "<type>", "payload": <obj>} typed event (ConverseStream style)
  {"exception": "<type>", "payload": <obj>}  modeled exception frame
  {"error_code": "...", "error_message": "..."}  unmodeled error frame
  {"raw_hex": "..."}                    raw bytes
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from typing import Any, Optional
from urllib.parse import unquote

from . import eventstream as es
from .server import FakeServer, RecordedRequest, Reply
from .sigv4 import verify
from .text import count_tokens, echo_text, split_words

OPS = ("invoke", "converse", "invoke-with-response-stream", "converse-stream", "count-tokens")
STREAM_OPS = ("invoke-with-response-stream", "converse-stream")
GEO_PREFIXES = ("us", "eu", "apac", "us-gov", "jp", "au", "global", "ca", "sa", "me", "af")

DEFAULT_ACCESS_KEY = "AKIDUNIGATETEST0001"
DEFAULT_SECRET = "unigate/fake+secret/KEY0123456789abcdefEXAMPLE"
DEFAULT_TOKEN = "IQoJb3JpZ2luX2VjEFAKESESSIONTOKEN//unigate+test=="

CODER = "http://internal.amazon.com/coral/com.amazon.coral.service/"
BEDROCK_NS = "http://internal.amazon.com/coral/com.amazon.bedrock/"

ERROR_STATUS = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 400,
    "AccessDeniedException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
    "UnrecognizedClientException": 403,
    "InvalidSignatureException": 403,
    "MissingAuthenticationTokenException": 403,
    "IncompleteSignatureException": 403,
    "ExpiredTokenException": 403,
}
ERROR_MESSAGES = {
    "ValidationException": "Malformed input request, please reformat your input and try again.",
    "AccessDeniedException": "You don't have access to the model with the specified model ID.",
    "ResourceNotFoundException": "Could not resolve the foundation model from the provided model identifier.",
    "ThrottlingException": "Too many requests, please wait before trying again.",
    "InternalServerException": "The server encountered an internal error while processing the request.",
    "ServiceUnavailableException": "Bedrock is unable to process your request.",
    "ModelTimeoutException": "Model has timed out in processing the request.",
    "ModelNotReadyException": "Model is not ready to serve inference requests.",
}
ANTHROPIC_KEYS = {
    "anthropic_version", "anthropic_beta", "max_tokens", "messages", "system", "temperature", "top_p", "top_k",
    "stop_sequences", "tools", "tool_choice", "thinking", "metadata", "output_config",
}
TITAN_KEYS = {"inputText", "textGenerationConfig"}
TITAN_CFG_KEYS = {"maxTokenCount", "temperature", "topP", "stopSequences"}
CONVERSE_KEYS = {
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
    "additionalModelResponseFieldPaths", "promptVariables", "requestMetadata", "performanceConfig", "serviceTier",
    "outputConfig",
}
CONVERSE_BLOCKS = {
    "text", "image", "document", "video", "audio", "toolUse", "toolResult", "guardContent", "cachePoint",
    "reasoningContent", "citationsContent",
}


class BedrockError(Exception):
    def __init__(self, kind: str, message: str, status: Optional[int] = None):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status or ERROR_STATUS.get(kind, 400)


def base_model_id(model_id: str) -> str:
    mid = model_id.rsplit("/", 1)[-1] if model_id.startswith("arn:") else model_id
    head, _, rest = mid.partition(".")
    if head in GEO_PREFIXES and "." in rest:
        return rest
    return mid


def family(model_id: str) -> str:
    if ":application-inference-profile/" in model_id:
        return "unknown"
    base = base_model_id(model_id)
    if base.startswith("anthropic."):
        return "anthropic"
    if base.startswith("amazon.titan-text") or base.startswith("amazon.titan-tg1"):
        return "titan"
    return base.split(".", 1)[0]


def claude_model_name(model_id: str) -> str:
    base = base_model_id(model_id)
    name = base[len("anthropic.") :] if base.startswith("anthropic.") else base
    return re.sub(r"-v\d+(:\d+)?$", "", name)


def _extraneous(keys, allowed) -> Optional[str]:
    extra = sorted(k for k in keys if k not in allowed)
    if extra:
        return " ".join(f"extraneous key [{k}] is not permitted," for k in extra)
    return None


def _validation(detail: str) -> BedrockError:
    return BedrockError("ValidationException", f"Malformed input request: #: {detail} please reformat your input and try again.")


def anthropic_user_texts(body: dict) -> tuple[str, str]:
    """(last user text, all text) of an Anthropic Messages body."""
    all_text = []
    sys_ = body.get("system")
    if isinstance(sys_, str):
        all_text.append(sys_)
    elif isinstance(sys_, list):
        all_text += [b.get("text", "") for b in sys_ if isinstance(b, dict)]
    last = ""
    for m in body["messages"]:
        c = m["content"]
        texts = [c] if isinstance(c, str) else [b.get("text", "") for b in c if b.get("type") == "text"]
        all_text += texts
        if m["role"] == "user":
            last = "\n".join(texts)
    return last, " ".join(all_text)


def validate_anthropic(body: Any) -> None:
    if not isinstance(body, dict):
        raise _validation("expected type: JSONObject, found: " + type(body).__name__ + ",")
    extra = _extraneous(body.keys(), ANTHROPIC_KEYS)
    if extra:
        raise _validation(extra)
    for req in ("anthropic_version", "max_tokens", "messages"):
        if req not in body:
            raise _validation(f"required key [{req}] not found,")
    if body["anthropic_version"] != "bedrock-2023-05-31":
        raise BedrockError("ValidationException", "Invalid API version")
    if not isinstance(body["max_tokens"], int) or isinstance(body["max_tokens"], bool) or body["max_tokens"] < 1:
        raise _validation("max_tokens: must be an integer of at least 1,")
    msgs = body["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise BedrockError("ValidationException", "messages: at least one message is required")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise BedrockError("ValidationException", f"messages.{i}.role: Input should be 'user' or 'assistant'")
        c = m.get("content")
        if isinstance(c, str):
            continue
        if not isinstance(c, list):
            raise BedrockError("ValidationException", f"messages.{i}.content: Input should be a valid list")
        for j, b in enumerate(c):
            if not isinstance(b, dict) or "type" not in b:
                raise BedrockError("ValidationException", f"messages.{i}.content.{j}: missing type")
            if b["type"] == "image":
                src = b.get("source") or {}
                if src.get("type") != "base64":
                    raise BedrockError(
                        "ValidationException", f"messages.{i}.content.{j}.image.source.base64.data: URL sources are not supported"
                    )
    if msgs[0]["role"] != "user":
        raise BedrockError("ValidationException", "A conversation must start with a user message.")
    if "temperature" in body and not (0 <= body["temperature"] <= 1):
        raise _validation("temperature: must be between 0 and 1,")


def validate_titan(body: Any) -> None:
    if not isinstance(body, dict):
        raise _validation("expected type: JSONObject,")
    extra = _extraneous(body.keys(), TITAN_KEYS)
    if extra:
        raise _validation(extra)
    if not isinstance(body.get("inputText"), str):
        raise _validation("required key [inputText] not found,")
    cfg = body.get("textGenerationConfig", {})
    if not isinstance(cfg, dict):
        raise _validation("textGenerationConfig: expected type: JSONObject,")
    extra = _extraneous(cfg.keys(), TITAN_CFG_KEYS)
    if extra:
        raise _validation("textGenerationConfig: " + extra)


def titan_last_user(input_text: str) -> str:
    """The last "User: ..." turn of a Titan conversation prompt, or the whole text."""
    idx = input_text.rfind("User: ")
    if idx < 0:
        return input_text
    rest = input_text[idx + len("User: ") :]
    end = rest.find("\nBot:")
    return rest[:end] if end >= 0 else rest


def validate_converse(body: Any, model_family: str) -> None:
    if not isinstance(body, dict):
        raise BedrockError("ValidationException", "Request body must be a JSON object.")
    extra = sorted(k for k in body if k not in CONVERSE_KEYS)
    if extra:
        # A real service would fail deserialization on unknown members; keep it loud.
        raise BedrockError("ValidationException", f"Unknown field(s) in Converse request: {extra}")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BedrockError("ValidationException", "A conversation must start with a user message. Try again with a conversation that starts with a user message.")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            raise BedrockError("ValidationException", f"1 validation error detected: Value at 'messages.{i+1}.member.role' failed to satisfy constraint")
        c = m.get("content")
        if not isinstance(c, list) or not c:
            raise BedrockError("ValidationException", f"messages.{i}.content must be a non-empty list of content blocks")
        for j, b in enumerate(c):
            if not isinstance(b, dict) or len(b) != 1 or next(iter(b)) not in CONVERSE_BLOCKS:
                raise BedrockError("ValidationException", f"messages.{i}.content.{j}: invalid content block {b!r}")
    if msgs[0]["role"] != "user":
        raise BedrockError("ValidationException", "A conversation must start with a user message. Try again with a conversation that starts with a user message.")
    sys_ = body.get("system")
    if sys_ is not None:
        if not isinstance(sys_, list) or any(not isinstance(b, dict) or len(b) != 1 for b in sys_):
            raise BedrockError("ValidationException", "system must be a list of system content blocks")
        if model_family == "titan" and sys_:
            raise BedrockError("ValidationException", "This model doesn't support system messages. Try again without system messages.")
    ic = body.get("inferenceConfig")
    if ic is not None:
        if not isinstance(ic, dict) or any(k not in ("maxTokens", "temperature", "topP", "stopSequences") for k in ic):
            raise BedrockError("ValidationException", f"inferenceConfig has unknown members: {ic!r}")
        if "maxTokens" in ic and (not isinstance(ic["maxTokens"], int) or ic["maxTokens"] < 1):
            raise BedrockError("ValidationException", "inferenceConfig.maxTokens must be at least 1")
        for k in ("temperature", "topP"):
            if k in ic and not (0 <= ic[k] <= 1):
                raise BedrockError("ValidationException", f"inferenceConfig.{k} must be between 0 and 1")
        if "stopSequences" in ic and any(not isinstance(s, str) or not s for s in ic["stopSequences"]):
            raise BedrockError("ValidationException", "inferenceConfig.stopSequences must not contain empty strings")


def converse_texts(body: dict) -> tuple[str, str]:
    all_text = [b.get("text", "") for b in body.get("system") or []]
    last = ""
    for m in body["messages"]:
        texts = [b["text"] for b in m["content"] if "text" in b]
        all_text += texts
        if m["role"] == "user":
            last = "\n".join(texts)
    return last, " ".join(all_text)


class FakeBedrock(FakeServer):
    name = "bedrock"

    def __init__(
        self,
        region: str = "us-east-1",
        access_key: str = DEFAULT_ACCESS_KEY,
        secret_key: str = DEFAULT_SECRET,
        session_token: Optional[str] = DEFAULT_TOKEN,
        **kw,
    ):
        super().__init__(**kw)
        self.region = region
        self._creds_lock = threading.Lock()
        self._credentials = {access_key: (secret_key, session_token)}
        self._seq = 0

    # ----- credentials the fake accepts -----
    def set_credentials(self, access_key: str, secret_key: str, session_token: Optional[str] = None) -> None:
        """Replaces the accepted credentials (e.g. to simulate a rotated or wrong secret)."""
        with self._creds_lock:
            self._credentials = {access_key: (secret_key, session_token)}

    def add_credentials(self, access_key: str, secret_key: str, session_token: Optional[str] = None) -> None:
        with self._creds_lock:
            self._credentials[access_key] = (secret_key, session_token)

    @property
    def credentials(self) -> dict:
        with self._creds_lock:
            return dict(self._credentials)

    def _next(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    # ----- replies -----
    def error_type_headers(self, error_type: str) -> list:
        ns = CODER if error_type.endswith(("SignatureException", "ClientException", "TokenException")) else BEDROCK_NS
        return [("x-amzn-ErrorType", f"{error_type}:{ns}"), ("x-amzn-RequestId", str(uuid.uuid4()))]

    def error(self, kind: str, message: str, status: Optional[int] = None) -> Reply:
        status = status or ERROR_STATUS.get(kind, 400)
        return self.json_reply(status, {"message": message}, self.error_type_headers(kind))

    def default_error(self, status: int, error_type: Optional[str]) -> Reply:
        kind = error_type or {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
                              429: "ThrottlingException", 503: "ServiceUnavailableException"}.get(status, "InternalServerException")
        return self.error(kind, ERROR_MESSAGES.get(kind, f"Canned {kind}."), status)

    def handle(self, rec: RecordedRequest, steer: dict) -> Reply:
        path = rec.path.split("?", 1)[0]
        parts = path.split("/")
        # ['', 'model', '<encoded id>', '<op>']
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in OPS:
            return self.error("UnknownOperationException", f"Unknown operation {rec.method} {path}", 404)
        if rec.method != "POST":
            return self.error("UnknownOperationException", f"Unknown operation {rec.method} {path}", 404)
        check = verify(rec.method, rec.path, rec.headers, rec.body, self.credentials, self.region)
        rec.sigv4 = check
        if not check.ok:
            return self.error(check.error_type, check.message, 403)
        canned = self.canned(rec, steer)
        if canned is not None:
            return canned
        model_id = unquote(parts[2])
        op = parts[3]
        fam = family(model_id)
        try:
            body = json.loads(rec.body)
        except ValueError:
            return self.error("ValidationException", "Malformed input request: request body is not valid JSON, please reformat your input and try again.")
        events = steer.get("stream-events")
        try:
            if op == "count-tokens":
                return self._count_tokens(model_id, fam, body)
            if op in ("converse", "converse-stream"):
                validate_converse(body, fam)
                last, all_text = converse_texts(body)
                return self._converse(op, model_id, last, all_text, events)
            if fam == "anthropic":
                validate_anthropic(body)
                last, all_text = anthropic_user_texts(body)
                return self._claude(op, model_id, last, all_text, events)
            if fam == "titan":
                validate_titan(body)
                return self._titan(op, titan_last_user(body["inputText"]), body["inputText"], events)
            raise BedrockError("ValidationException", f"The fake does not implement InvokeModel bodies for `{model_id}`; use Converse.")
        except BedrockError as e:
            return self.error(e.kind, e.message, e.status)

    def _count_tokens(self, model_id: str, fam: str, body: Any) -> Reply:
        """CountTokens: the inner InvokeModel body or Converse request, validated as such.
        Like Bedrock, it counts on foundation models only: inference profiles (geography
        prefixes, profile ARNs) are refused."""
        is_arn = model_id.startswith("arn:")
        if (is_arn and ":foundation-model/" not in model_id) or (not is_arn and base_model_id(model_id) != model_id):
            raise BedrockError("ValidationException", f"CountTokens takes a foundation model id, not the inference profile `{model_id}`.")
        inp = body.get("input") if isinstance(body, dict) else None
        if not isinstance(body, dict) or set(body) != {"input"} or not isinstance(inp, dict) or len(inp) != 1:
            raise BedrockError("ValidationException", "CountTokens takes exactly one of input.invokeModel, input.converse.")
        if "invokeModel" in inp:
            try:
                inner = json.loads(base64.b64decode(inp["invokeModel"]["body"], validate=True))
            except (KeyError, TypeError, ValueError):
                raise BedrockError("ValidationException", "input.invokeModel.body must be a base64-encoded JSON body.")
            if fam == "anthropic":
                validate_anthropic(inner)
                _, all_text = anthropic_user_texts(inner)
            elif fam == "titan":
                validate_titan(inner)
                all_text = inner["inputText"]
            else:
                raise BedrockError("ValidationException", f"The fake does not count InvokeModel bodies for `{model_id}`.")
        elif "converse" in inp:
            validate_converse(inp["converse"], fam)
            _, all_text = converse_texts(inp["converse"])
        else:
            raise BedrockError("ValidationException", f"Unknown CountTokens input {sorted(inp)}.")
        return self.json_reply(200, {"inputTokens": count_tokens(all_text)}, [("x-amzn-RequestId", str(uuid.uuid4()))])

    def _invoke_headers(self, n_in: int, n_out: int) -> list:
        return [
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("X-Amzn-Bedrock-Invocation-Latency", "212"),
            ("X-Amzn-Bedrock-Input-Token-Count", str(n_in)),
            ("X-Amzn-Bedrock-Output-Token-Count", str(n_out)),
        ]

    @staticmethod
    def _stream_headers() -> list:
        return [
            ("content-type", "application/vnd.amazon.eventstream"),
            ("x-amzn-RequestId", str(uuid.uuid4())),
            ("x-amzn-bedrock-content-type", "application/json"),
        ]

    def _custom_stream(self, events: str) -> Reply:
        frames = []
        for e in json.loads(events):
            if "chunk" in e:
                frames.append(es.chunk_frame(e["chunk"]))
            elif "event" in e:
                frames.append(es.event_frame(e["event"], e.get("payload", {})))
            elif "exception" in e:
                frames.append(es.exception_frame(e["exception"], e.get("payload", {})))
            elif "error_code" in e:
                frames.append(es.error_frame(e["error_code"], e.get("error_message", "")))
            elif "raw_hex" in e:
                frames.append(bytes.fromhex(e["raw_hex"]))
            else:
                raise ValueError(f"bad stream event spec {e!r}")
        return Reply(200, self._stream_headers(), stream=frames)

    def _claude(self, op: str, model_id: str, last: str, all_text: str, events: Optional[str]) -> Reply:
        text = echo_text(last)
        n_in, n_out = count_tokens(all_text), count_tokens(text)
        msg_id = f"msg_bdrk_fake{self._next():06d}"
        model = claude_model_name(model_id)
        if op == "invoke":
            return self.json_reply(
                200,
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {"input_tokens": n_in, "output_tokens": n_out},
                },
                self._invoke_headers(n_in, n_out),
            )
        if events is not None:
            return self._custom_stream(events)
        evs = [
            {"type": "message_start", "message": {"id": msg_id, "type": "message", "role": "assistant", "model": model,
                                                 "content": [], "stop_reason": None, "stop_sequence": None,
                                                 "usage": {"input_tokens": n_in, "output_tokens": 1}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        ]
        evs += [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}} for w in split_words(text)]
        evs += [
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": n_out}},
            {"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": n_in, "outputTokenCount": n_out,
                                                                            "invocationLatency": 212, "firstByteLatency": 87}},
        ]
        return Reply(200, self._stream_headers(), stream=[es.chunk_frame(e) for e in evs])

    def _titan(self, op: str, last: str, input_text: str, events: Optional[str]) -> Reply:
        text = echo_text(last)
        n_in, n_out = count_tokens(input_text), count_tokens(text)
        if op == "invoke":
            return self.json_reply(
                200,
                {"inputTextTokenCount": n_in, "results": [{"tokenCount": n_out, "outputText": text, "completionReason": "FINISH"}]},
                self._invoke_headers(n_in, n_out),
            )
        if events is not None:
            return self._custom_stream(events)
        words = split_words(text)
        frames = []
        so_far = 0
        for i, w in enumerate(words):
            so_far += count_tokens(w)
            final = i == len(words) - 1
            ev = {"outputText": w, "index": 0, "totalOutputTextTokenCount": n_out if final else min(so_far, n_out),
                  "completionReason": "FINISH" if final else None, "inputTextTokenCount": n_in if i == 0 else None}
            if final:
                ev["amazon-bedrock-invocationMetrics"] = {"inputTokenCount": n_in, "outputTokenCount": n_out,
                                                          "invocationLatency": 180, "firstByteLatency": 60}
            frames.append(es.chunk_frame(ev))
        return Reply(200, self._stream_headers(), stream=frames)

    def _converse(self, op: str, model_id: str, last: str, all_text: str, events: Optional[str]) -> Reply:
        text = echo_text(last)
        n_in, n_out = count_tokens(all_text), count_tokens(text)
        usage = {"inputTokens": n_in, "outputTokens": n_out, "totalTokens": n_in + n_out}
        if op == "converse":
            return self.json_reply(
                200,
                {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn",
                 "usage": usage, "metrics": {"latencyMs": 12}},
                [("x-amzn-RequestId", str(uuid.uuid4()))],
            )
        if events is not None:
            return self._custom_stream(events)
        frames = [es.event_frame("messageStart", {"p": "abcd", "role": "assistant"})]
        frames += [es.event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": w}, "p": "abcdef"})
                   for w in split_words(text)]
        frames += [
            es.event_frame("contentBlockStop", {"contentBlockIndex": 0, "p": "ab"}),
            es.event_frame("messageStop", {"p": "abc", "stopReason": "end_turn"}),
            es.event_frame("metadata", {"metrics": {"latencyMs": 12}, "p": "a", "usage": usage}),
        ]
        return Reply(200, self._stream_headers(), stream=frames)
