"""Fake AWS Bedrock runtime.

Serves POST /model/{modelId}/{invoke|converse|invoke-with-response-stream|converse-stream|count-tokens}.
Every request's SigV4 signature is checked with botocore as the oracle (fakes.sigv4) and
rejected the way AWS does (403 + x-amzn-ErrorType + {"message"}). Valid requests get their
body validated per operation and model family, and a deterministic answer whose text is
"echo: " + the last user text. CountTokens (`{"input": {"invokeModel": {"body": <base64>}}}` or
`{"input": {"converse": {...}}}`) validates the inner request like the operation it names and
answers `{"inputTokens": n}`, n counted the way the other answers count input; it takes
foundation model ids only (an inference profile id or ARN is a ValidationException).

Claude InvokeModel bodies are checked as strictly as Bedrock checks them (front-doors.md
§1.7): extraneous top-level keys; `anthropic_beta` entries outside the model's accepted set
(BETA_TABLE) → 400 "invalid beta flag"; `thinking.display`; a tool's `defer_loading` unless
`tool-search-tool-2025-10-19` is in `anthropic_beta`; `cache_control.scope` anywhere and
`cache_control.ttl` before Claude 4.5; `context_management` unless every edit is
`compact_20260112` with its beta; thinking budget vs max_tokens.

count-tokens: body {"input": {"invokeModel": {"body": "<base64 InvokeModel body>"}}} (or
{"input": {"converse": {...}}}); the inner body is validated as above for that model; the
answer is {"inputTokens": count_tokens(<all text of system and messages>)}. Only Claude
foundation-model ids (no geo prefix, no inference-profile ARN) support it, like AWS.

Embedding models (Titan Text Embeddings v1/v2, Cohere Embed v3/v4) answer InvokeModel as
fakes.embeddings describes: validated bodies, deterministic vectors, token-count headers, and
steering through `fake.embed` (Python-side: the gateway makes these calls itself, so client
headers never reach the fake).

x-fake-stream-events (streaming ops): a JSON list; each element is one of
  {"chunk": <obj>}                      chunk event whose bytes are base64(json(obj))
  {"event": "<type>", "payload": <obj>} typed event (ConverseStream style)
  {"exception": "<type>", "payload": <obj>}  modeled exception frame
  {"error_code": "...", "error_message": "..."}  unmodeled error frame
  {"raw_hex": "..."}                    raw bytes
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import uuid
from typing import Any, Optional
from urllib.parse import unquote

from . import embeddings as emb
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
# Top-level keys Bedrock takes besides ANTHROPIC_KEYS, each with its own check below.
ANTHROPIC_CHECKED_KEYS = {"context_management"}

# The betas Bedrock accepts in a Claude InvokeModel body's `anthropic_beta`; any other entry
# fails the whole call with 400 ValidationException "invalid beta flag" (front-doors.md §0.3,
# §1.7). Claude 4 and later: the list AWS documents (as quoted by LiteLLM, [S12]). Real
# launches can accept fewer (Opus 4.7 took only interleaved-thinking-2025-05-14 at launch), so
# tests assert the exact betas that reached the fake instead of relying on its acceptance.
# Claude 3.x: none — narrower than AWS (3.7 Sonnet takes token-efficient-tools/output-128k,
# 3.5 Sonnet v2 computer-use), which is what a strict fake should be. Unknown Claude names:
# none. Either way the fake is never more permissive than Bedrock for the betas a gateway
# filters by default (interleaved-thinking, context-1m, tool-search-tool on Claude 4+).
TOOL_SEARCH_BETA = "tool-search-tool-2025-10-19"
BEDROCK_DOCUMENTED_BETAS = frozenset({
    "computer-use-2024-10-22",
    "computer-use-2025-01-24",
    "token-efficient-tools-2025-02-19",
    "interleaved-thinking-2025-05-14",
    "output-128k-2025-02-19",
    "dev-full-thinking-2025-05-14",
    "context-1m-2025-08-07",
    "context-management-2025-06-27",
    "effort-2025-11-24",
    TOOL_SEARCH_BETA,
    "tool-examples-2025-10-29",
})
COMPACT_BETA = "compact-2026-01-12"
# (regex on claude_model_name(model_id), accepted betas); first match wins, no match: none.
BETA_TABLE = (
    (r"^claude-(instant|v?\d)", frozenset()),  # claude-3-…, claude-3-5-…, claude-3-7-…, claude-v2, claude-instant
    (r"^claude-opus-4-7(\D|$)", frozenset({"interleaved-thinking-2025-05-14"})),  # all it took at launch
    (r"^claude-(sonnet|opus|haiku)-([4-9]|[1-9]\d)(\D|$)", BEDROCK_DOCUMENTED_BETAS),
)


def claude_version(model_id: str) -> tuple:
    """(major, minor) of a Claude model: claude-3-haiku (3, 0), claude-sonnet-4-2025… (4, 0),
    claude-sonnet-4-5-2025… (4, 5)."""
    nums = [int(t) for t in claude_model_name(model_id).split("-")[1:] if t.isdigit() and len(t) <= 2] + [0, 0]
    return nums[0], nums[1]
COUNT_TOKENS_UNSUPPORTED = "The provided model doesn't support counting tokens."
TITAN_KEYS = {"inputText", "textGenerationConfig"}
TITAN_CFG_KEYS = {"maxTokenCount", "temperature", "topP", "stopSequences"}
CONVERSE_KEYS = {
    "messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
    "additionalModelResponseFieldPaths", "promptVariables", "requestMetadata", "performanceConfig", "serviceTier",
    "outputConfig",
}
# botocore's ToolResultBlock.status: "only supported by Amazon Nova and Anthropic Claude 3 and 4
# models"; the fake refuses it for the other families (Llama, Mistral, ...).
STATUS_FAMILIES = {"amazon", "anthropic"}
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


def accepted_betas(model_id: str, table=BETA_TABLE) -> frozenset:
    """The `anthropic_beta` entries Bedrock takes for this Claude model (see BETA_TABLE)."""
    name = claude_model_name(model_id)
    for pattern, betas in table:
        if re.search(pattern, name):
            return frozenset(betas)
    return frozenset()


def _invalid(message: str) -> BedrockError:
    return BedrockError("ValidationException", message)


def _cache_control_paths(body: dict) -> list:
    """(path, cache_control) of every cache_control in system, messages (nested tool_result
    content too) and tools, with Bedrock's path spelling (`messages.0.content.1`)."""
    out = []

    def blocks(prefix: str, content: Any) -> None:
        if not isinstance(content, list):
            return
        for j, b in enumerate(content):
            if not isinstance(b, dict):
                continue
            if "cache_control" in b:
                out.append((f"{prefix}.{j}", b["cache_control"]))
            if b.get("type") == "tool_result":
                blocks(f"{prefix}.{j}.content", b.get("content"))

    blocks("system", body.get("system"))
    for i, m in enumerate(body.get("messages") or []):
        if isinstance(m, dict):
            blocks(f"messages.{i}.content", m.get("content"))
    for i, t in enumerate(body.get("tools") or []):
        if isinstance(t, dict) and "cache_control" in t:
            out.append((f"tools.{i}.{t.get('type', 'custom')}", t["cache_control"]))
    return out


def validate_claude_strict(body: dict, model_id: Optional[str]) -> None:
    """What Bedrock refuses in a Claude body beyond its key list (front-doors.md §1.7).
    `model_id` None skips the per-model checks (betas, cache_control.ttl)."""
    betas = body.get("anthropic_beta")
    if betas is not None:
        if not isinstance(betas, list) or any(not isinstance(b, str) for b in betas):
            raise _invalid("anthropic_beta: Input should be a valid list of strings")
        if model_id is not None:
            allowed = accepted_betas(model_id)
            if any(b not in allowed for b in betas):
                raise _invalid("invalid beta flag")
    thinking = body.get("thinking")
    if thinking is not None:
        if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled", "adaptive"):
            raise _invalid("thinking: Input tag does not match any of the expected tags: 'enabled', 'disabled', 'adaptive'")
        kind = thinking["type"]
        allowed_keys = {"type", "budget_tokens"} if kind == "enabled" else {"type"}
        extra = sorted(k for k in thinking if k not in allowed_keys)
        if extra:
            raise _invalid(f"thinking.{kind}.{extra[0]}: Extra inputs are not permitted")
        if kind == "enabled":
            budget = thinking.get("budget_tokens")
            if not isinstance(budget, int) or isinstance(budget, bool):
                raise _invalid("thinking.enabled.budget_tokens: Field required")
            if budget < 1024:
                raise _invalid("thinking.enabled.budget_tokens: Input should be greater than or equal to 1024")
            if isinstance(body.get("max_tokens"), int) and body["max_tokens"] <= budget:
                raise _invalid("`max_tokens` must be greater than `thinking.budget_tokens`.")
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _invalid("tools: Input should be a valid list")
        search = isinstance(betas, list) and TOOL_SEARCH_BETA in betas
        for i, t in enumerate(tools):
            if not isinstance(t, dict):
                raise _invalid(f"tools.{i}: Input should be a valid dictionary")
            if "defer_loading" in t and not search:
                raise _invalid(f"tools.{i}.{t.get('type', 'custom')}.defer_loading: Extra inputs are not permitted")
    for path, cc in _cache_control_paths(body):
        if not isinstance(cc, dict) or cc.get("type") != "ephemeral":
            raise _invalid(f"{path}.cache_control: Input tag does not match the expected tag: 'ephemeral'")
        # `ttl` only from Claude 4.5 on (front-doors.md §1.7.6, [S14]); narrower than or equal to Bedrock
        allowed_cc = ("type", "ttl") if model_id is None or claude_version(model_id) >= (4, 5) else ("type",)
        extra = sorted(k for k in cc if k not in allowed_cc)
        if extra:
            raise _invalid(f"{path}.cache_control.ephemeral.{extra[0]}: Extra inputs are not permitted")
    if "context_management" in body:
        # Only compaction edits pass, and only with their beta (front-doors.md §1.7.5, [S14]).
        # The beta is not in BETA_TABLE (not in AWS's documented list), so in this fake no
        # context_management passes at all: narrower than or equal to Bedrock.
        cm = body["context_management"]
        edits = cm.get("edits") if isinstance(cm, dict) else None
        if (not isinstance(edits, list) or not edits or set(cm) != {"edits"}
                or any(not isinstance(e, dict) or e.get("type") != "compact_20260112" for e in edits)):
            raise _invalid("context_management: Extra inputs are not permitted")
        if not (isinstance(betas, list) and COMPACT_BETA in betas):
            raise _invalid(f"context_management: the compact_20260112 edit requires the {COMPACT_BETA} beta")


def validate_anthropic(body: Any, model_id: Optional[str] = None) -> None:
    """A Claude InvokeModel body as Bedrock validates it; `model_id` enables the per-model
    beta check."""
    if not isinstance(body, dict):
        raise _validation("expected type: JSONObject, found: " + type(body).__name__ + ",")
    extra = _extraneous(body.keys(), ANTHROPIC_KEYS | ANTHROPIC_CHECKED_KEYS)
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
    validate_claude_strict(body, model_id)


# Claude models CountTokens documents (3.5 Haiku, 3.5 Sonnet v1/v2, 3.7 Sonnet, Sonnet 4,
# Opus 4 at launch; later Claude since), by claude_model_name: not Claude 3 (Haiku/Sonnet/
# Opus), 2.x or Instant.
COUNT_TOKENS_MODELS = r"^claude-(3-[57]-|(sonnet|opus|haiku)-([4-9]|[1-9]\d)(\D|$))"


def counts_tokens(model_id: str) -> bool:
    """Whether CountTokens takes this id: Claude foundation-model ids only (COUNT_TOKENS_MODELS),
    no geo prefix, no inference-profile ARN (AWS: "The provided model doesn't support counting
    tokens.")."""
    mid = model_id
    if mid.startswith("arn:"):
        if ":foundation-model/" not in mid:
            return False
        mid = mid.rsplit("/", 1)[-1]
    if not mid.startswith("anthropic.claude") or base_model_id(mid) != mid:
        return False
    return re.search(COUNT_TOKENS_MODELS, claude_model_name(mid)) is not None


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
            result = b.get("toolResult")
            if isinstance(result, dict) and "status" in result and model_family not in STATUS_FAMILIES:
                raise BedrockError("ValidationException", "This model doesn't support the toolResult.status field. "
                                                          "Remove toolResult.status and try again.")
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
        # Steering and records of embeddings calls (fakes.embeddings.EmbedControl).
        self.embed = emb.EmbedControl()

    def clear(self) -> None:
        """Forgets recorded requests and embeddings calls, and undoes embeddings steering."""
        super().clear()
        self.embed.reset()

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
        base = base_model_id(model_id)
        if (emb.is_titan_embed(base) or emb.is_cohere_embed(base)) and op != "count-tokens":
            return self._embed(op, model_id, base, body, steer)
        try:
            if op == "count-tokens":
                return self._count_tokens(model_id, body)
            if op in ("converse", "converse-stream"):
                validate_converse(body, fam)
                last, all_text = converse_texts(body)
                return self._converse(op, model_id, last, all_text, events)
            if fam == "anthropic":
                validate_anthropic(body, model_id)
                last, all_text = anthropic_user_texts(body)
                return self._claude(op, model_id, last, all_text, events)
            if fam == "titan":
                validate_titan(body)
                return self._titan(op, titan_last_user(body["inputText"]), body["inputText"], events)
            raise BedrockError("ValidationException", f"The fake does not implement InvokeModel bodies for `{model_id}`; use Converse.")
        except BedrockError as e:
            return self.error(e.kind, e.message, e.status)

    def _embed(self, op: str, model_id: str, base: str, body: Any, steer: dict) -> Reply:
        """InvokeModel for Titan / Cohere embedding models, steered by self.embed."""
        if op in STREAM_OPS:
            return self.error("ValidationException", "The model is unsupported for streaming.")
        if op == "converse":
            return self.error("ValidationException", "This action doesn't support the model that you provided. "
                                                     "Try again with a supported text or chat model.")
        texts = []
        if isinstance(body, dict):
            if isinstance(body.get("inputText"), str):
                texts = [body["inputText"]]
            elif isinstance(body.get("texts"), list):
                texts = [t for t in body["texts"] if isinstance(t, str)]
        call = self.embed.begin(model_id, texts, body)
        outcome = "InternalServerException"
        try:
            try:
                answer, n_in, _ = (emb.titan_embed if emb.is_titan_embed(base) else emb.cohere_embed)(base, body)
            except emb.EmbedError as e:
                outcome = e.kind
                return self.error(e.kind, e.message)
            delay, failure, canned = self.embed.plan(call)
            if delay:
                self.sleep(delay)
            if failure:
                outcome = failure
                return self.error(failure, ERROR_MESSAGES.get(failure, f"Steered {failure}."))
            if canned is not None:
                outcome = f"canned {canned[0]}"
                return Reply(canned[0], [("content-type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))], canned[1])
            headers = [("x-amzn-RequestId", str(uuid.uuid4())), ("X-Amzn-Bedrock-Invocation-Latency", "35")]
            if self.embed.token_header:
                headers.append(("X-Amzn-Bedrock-Input-Token-Count", str(n_in)))
            outcome = "ok"
            if self.embed.resets_call(call):
                steer["reset"] = "64"  # headers and 64 bytes of the body, then RST (see server.py)
                outcome = "reset"
            return self.json_reply(200, answer, headers)
        finally:
            self.embed.end(call, outcome)

    def _count_tokens(self, model_id: str, body: Any) -> Reply:
        """CountTokens: {"input": {"invokeModel": {"body": b64}} | {"converse": {...}}} →
        {"inputTokens": n}, n = count_tokens(all text of system and messages)."""
        if not counts_tokens(model_id):
            raise _invalid(COUNT_TOKENS_UNSUPPORTED)
        if not isinstance(body, dict) or set(body) != {"input"} or not isinstance(body["input"], dict) or len(body["input"]) != 1:
            raise _invalid("1 validation error detected: Value at 'input' failed to satisfy constraint: "
                           "exactly one of invokeModel or converse must be set, and nothing else")
        kind, inner = next(iter(body["input"].items()))
        if kind == "invokeModel":
            if not isinstance(inner, dict) or set(inner) != {"body"} or not isinstance(inner["body"], str):
                raise _invalid("input.invokeModel: body (a base64 blob) is required and the only member")
            try:
                decoded = json.loads(base64.b64decode(inner["body"], validate=True))
            except (binascii.Error, ValueError):
                raise _invalid("Malformed input request: the invokeModel body is not base64-encoded JSON, please reformat your input and try again.")
            validate_anthropic(decoded, model_id)
            _, all_text = anthropic_user_texts(decoded)
        elif kind == "converse":
            if not isinstance(inner, dict) or any(k not in ("messages", "system", "toolConfig", "additionalModelRequestFields") for k in inner):
                raise _invalid("input.converse: unknown members")
            validate_converse(inner, "anthropic")
            _, all_text = converse_texts(inner)
        else:
            raise _invalid(f"input: unknown member {kind!r}")
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
