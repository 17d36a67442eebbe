"""Embedding models for the fakes: Titan Text Embeddings v1/v2 and Cohere Embed v3/v4 on
Bedrock InvokeModel (FakeBedrock), OpenAI's `/embeddings` (FakeOpenAI).

Vectors are deterministic and recognisable: each is derived from (base model id, text, size)
by a hash-seeded generator, every component is exactly a float32 (what the gateway keeps and
what base64 carries), and normalized vectors have unit length as the real models' do. Tests
compute the expected vector of any input with `titan_vector`, `cohere_vector` or
`openai_vector` and so can check that answers come back in input order.

Request bodies are validated as Bedrock's model schemas do (front-doors.md §4.2):

- Titan v1 `{"inputText"}` only (`dimensions`, `normalize` are extraneous keys);
- Titan v2 `{"inputText", "dimensions": 256|512|1024, "normalize": bool, "embeddingTypes"}`;
- Cohere v3 `{"texts" (1..96, each <= 2048 chars), "input_type" (required), "truncate"
  NONE|START|END, "embedding_types"}`: `embeddings_floats` without `embedding_types`,
  `embeddings_by_type` with them;
- Cohere v4 `{"texts" (1..96), "input_type" (required), "truncate" NONE|LEFT|RIGHT,
  "output_dimension" 256|512|1024|1536, "embedding_types", "max_tokens"}`: always the by-type
  shape (as AWS's own v4 examples answer).

Token counts: `inputTextTokenCount` in Titan's body and `X-Amzn-Bedrock-Input-Token-Count` on
every answer (Cohere's only count), `count_tokens(text)` per text.

EmbedControl (FakeBedrock.embed) steers embedding calls from Python, because the gateway makes
those calls itself and a client's x-fake-* headers never reach the fake: per-text delays and
failures, failing the n-th call, dropping the token-count header; it records every call and
the most calls that were in flight at once.
"""

from __future__ import annotations

import array
import base64
import hashlib
import math
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from .text import count_tokens

TITAN_V1 = "amazon.titan-embed-text-v1"
TITAN_V2 = "amazon.titan-embed-text-v2:0"
COHERE_EN_V3 = "cohere.embed-english-v3"
COHERE_ML_V3 = "cohere.embed-multilingual-v3"
COHERE_V4 = "cohere.embed-v4:0"

TITAN_V1_DIMS = 1536
TITAN_V2_DIMS = (256, 512, 1024)
TITAN_V2_KEYS = {"inputText", "dimensions", "normalize", "embeddingTypes"}
TITAN_MAX_CHARS = 50_000
COHERE_MAX_TEXTS = 96
COHERE_V3_MAX_CHARS = 2048
COHERE_V3_DIMS = 1024
COHERE_V4_DIMS = (256, 512, 1024, 1536)
COHERE_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
COHERE_TYPES = ("float", "int8", "uint8", "binary", "ubinary")
COHERE_V3_KEYS = {"texts", "images", "input_type", "truncate", "embedding_types"}
COHERE_V4_KEYS = {"texts", "images", "inputs", "input_type", "truncate", "embedding_types", "output_dimension", "max_tokens"}

# OpenAI's embedding models and their native sizes (dimensions may shorten 3-small/3-large).
OPENAI_MODELS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}
# What OpenAI names in the answer's `model`.
OPENAI_ANSWER_MODEL = {"text-embedding-ada-002": "text-embedding-ada-002-v2"}


class EmbedError(Exception):
    """A Bedrock exception for an embeddings body (kind like "ValidationException")."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind
        self.message = message


def _malformed(detail: str) -> EmbedError:
    return EmbedError("ValidationException", f"Malformed input request: {detail}, please reformat your input and try again.")


def is_titan_embed(base_id: str) -> bool:
    return base_id.startswith("amazon.titan-embed-text")


def is_cohere_embed(base_id: str) -> bool:
    return base_id.startswith("cohere.embed")


def is_cohere_v4(base_id: str) -> bool:
    return base_id.startswith("cohere.embed-v4")


# ---------------------------------------------------------------- vectors


def _f32(values) -> list:
    """The values rounded to float32 (as Python floats that are exactly those float32s)."""
    return array.array("f", values).tolist()


def raw_vector(key: str, text: Any, dims: int) -> list:
    """dims floats in [-1, 1) derived from (key, text) only."""
    seed = hashlib.sha256(f"{key}\x00{text!r}".encode()).digest()
    rng = random.Random(seed)
    return [rng.uniform(-1.0, 1.0) for _ in range(dims)]


def normalized(values: list) -> list:
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return _f32(v / norm for v in values)


def titan_vector(model_id: str, text: str, dims: Optional[int] = None, normalize: bool = True) -> list:
    """The vector FakeBedrock answers for one Titan text (v1: 1536, unnormalized; v2: `dims`,
    default 1024, unit length unless normalize=False)."""
    from .bedrock import base_model_id

    base = base_model_id(model_id)
    if base.startswith(TITAN_V1):
        return _f32(raw_vector(base, text, TITAN_V1_DIMS))
    dims = dims or 1024
    raw = raw_vector(base, text, dims)
    return normalized(raw) if normalize else _f32(raw)


def cohere_vector(model_id: str, text: str, dims: Optional[int] = None) -> list:
    """The float vector FakeBedrock answers for one Cohere text (v3: 1024; v4: `dims`, default
    1536)."""
    from .bedrock import base_model_id

    base = base_model_id(model_id)
    dims = dims or (1536 if is_cohere_v4(base) else COHERE_V3_DIMS)
    return normalized(raw_vector(base, text, dims))


def openai_vector(model: str, item: Any, dims: Optional[int] = None) -> list:
    """The vector FakeOpenAI answers for one input (a string or a token-id list): the model's
    native vector, shortened to `dims` and renormalized as OpenAI does."""
    native = OPENAI_MODELS[model]
    raw = raw_vector(model, item, native)
    return normalized(raw[: dims or native])


def b64_f32(vector: list) -> str:
    """OpenAI's base64 encoding: the little-endian float32 bytes."""
    a = array.array("f", vector)
    if sys.byteorder != "little":  # pragma: no cover - every platform the tests run on
        a.byteswap()
    return base64.b64encode(a.tobytes()).decode()


def _int8(v: list) -> list:
    return [max(-128, min(127, round(x * 127))) for x in v]


def _bits(v: list, signed: bool) -> list:
    out = []
    for i in range(0, len(v), 8):
        byte = 0
        for j, x in enumerate(v[i : i + 8]):
            if x > 0:
                byte |= 1 << (7 - j)
        out.append(byte - 128 if signed else byte)
    return out


def _by_type(vectors: list, types: list) -> dict:
    out = {}
    for t in types:
        if t == "float":
            out[t] = vectors
        elif t == "int8":
            out[t] = [_int8(v) for v in vectors]
        elif t == "uint8":
            out[t] = [[x + 128 for x in _int8(v)] for v in vectors]
        elif t == "binary":
            out[t] = [_bits(v, True) for v in vectors]
        else:
            out[t] = [_bits(v, False) for v in vectors]
    return out


# ---------------------------------------------------------------- Bedrock bodies


def _extraneous(keys, allowed) -> None:
    extra = sorted(k for k in keys if k not in allowed)
    if extra:
        raise _malformed("#: " + " ".join(f"extraneous key [{k}] is not permitted" for k in extra))


def titan_embed(base_id: str, body: Any) -> tuple[dict, int, list]:
    """(answer, input tokens, [text]) for one Titan InvokeModel body, or EmbedError."""
    if not isinstance(body, dict):
        raise _malformed("#: expected type: JSONObject")
    v1 = base_id.startswith(TITAN_V1)
    _extraneous(body.keys(), {"inputText"} if v1 else TITAN_V2_KEYS)
    text = body.get("inputText")
    if "inputText" not in body:
        raise _malformed("#: required key [inputText] not found")
    if not isinstance(text, str):
        raise _malformed(f"#/inputText: expected type: String, found: {type(text).__name__}")
    if not text:
        raise _malformed("#/inputText: expected minLength: 1, actual: 0")
    if len(text) > TITAN_MAX_CHARS:
        raise _malformed(f"#/inputText: expected maxLength: {TITAN_MAX_CHARS}, actual: {len(text)}")
    n = count_tokens(text)
    if v1:
        return {"embedding": titan_vector(base_id, text), "inputTextTokenCount": n}, n, [text]
    dims = body.get("dimensions", 1024)
    if isinstance(dims, bool) or dims not in TITAN_V2_DIMS:
        raise _malformed(f"#/dimensions: {dims} is not a valid enum value")
    normalize = body.get("normalize", True)
    if not isinstance(normalize, bool):
        raise _malformed(f"#/normalize: expected type: Boolean, found: {type(normalize).__name__}")
    types = body.get("embeddingTypes", ["float"])
    if not isinstance(types, list) or not types or any(t not in ("float", "binary") for t in types):
        raise _malformed(f"#/embeddingTypes: {types!r} is not a valid list of float/binary")
    vec = titan_vector(base_id, text, dims, normalize)
    by_type = {}
    if "float" in types:
        by_type["float"] = vec
    if "binary" in types:
        by_type["binary"] = [1 if x > 0 else 0 for x in vec]
    return {"embedding": vec, "embeddingsByType": by_type, "inputTextTokenCount": n}, n, [text]


def cohere_embed(base_id: str, body: Any) -> tuple[dict, int, list]:
    """(answer, input tokens, texts) for one Cohere InvokeModel body, or EmbedError."""
    if not isinstance(body, dict):
        raise _malformed("#: expected type: JSONObject")
    v4 = is_cohere_v4(base_id)
    _extraneous(body.keys(), COHERE_V4_KEYS if v4 else COHERE_V3_KEYS)
    if "input_type" not in body:
        raise _malformed("#: required key [input_type] not found")
    if body["input_type"] not in COHERE_INPUT_TYPES:
        raise _malformed(f"#/input_type: {body['input_type']} is not a valid enum value")
    if "texts" not in body:
        # images / interleaved inputs are not what the gateway sends; the fake does not embed them
        raise _malformed("#: required key [texts] not found")
    texts = body["texts"]
    if not isinstance(texts, list) or any(not isinstance(t, str) for t in texts):
        raise _malformed("#/texts: expected type: JSONArray of strings")
    if not texts:
        raise _malformed("#/texts: expected minimum item count: 1, found: 0")
    if len(texts) > COHERE_MAX_TEXTS:
        raise _malformed(f"#/texts: expected maximum item count: {COHERE_MAX_TEXTS}, found: {len(texts)}")
    if not v4:
        for i, t in enumerate(texts):
            if len(t) > COHERE_V3_MAX_CHARS:
                raise _malformed(f"#/texts/{i}: expected maxLength: {COHERE_V3_MAX_CHARS}, actual: {len(t)}")
    truncates = ("NONE", "LEFT", "RIGHT") if v4 else ("NONE", "START", "END")
    if "truncate" in body and body["truncate"] not in truncates:
        raise _malformed(f"#/truncate: {body['truncate']} is not a valid enum value")
    types = body.get("embedding_types")
    if types is not None and (not isinstance(types, list) or not types or any(t not in COHERE_TYPES for t in types)):
        raise _malformed(f"#/embedding_types: {types!r} is not a valid list of {', '.join(COHERE_TYPES)}")
    dims = None
    if v4:
        dims = body.get("output_dimension", 1536)
        if isinstance(dims, bool) or dims not in COHERE_V4_DIMS:
            raise _malformed(f"#/output_dimension: {dims} is not a valid enum value")
        mt = body.get("max_tokens")
        if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
            raise _malformed("#/max_tokens: expected a positive integer")
    vectors = [cohere_vector(base_id, t, dims) for t in texts]
    answer: dict = {"id": hashlib.sha256(repr(texts).encode()).hexdigest()[:36], "texts": texts}
    if types is None and not v4:
        answer.update({"response_type": "embeddings_floats", "embeddings": vectors})
    else:
        answer.update({"response_type": "embeddings_by_type", "embeddings": _by_type(vectors, types or ["float"])})
    return answer, sum(count_tokens(t) for t in texts), texts


# ---------------------------------------------------------------- steering and records


@dataclass
class EmbedCall:
    """One embeddings InvokeModel call as FakeBedrock saw it."""

    number: int  # 1-based, in arrival order
    model_id: str
    texts: list  # Titan: [inputText]; Cohere: texts (empty if the body was not readable)
    body: Any
    started: float
    finished: Optional[float] = None
    outcome: str = ""  # "ok", an exception type, or "" while in flight


@dataclass
class EmbedControl:
    """Python-side steering of FakeBedrock's embeddings calls (reset by FakeBedrock.clear()).

    delay_ms: text -> milliseconds to wait before answering a call that embeds that text
              (Cohere: the longest delay of the call's texts), applied after validation.
    default_delay_ms: the delay of every other call.
    fail_texts: text -> exception type ("ThrottlingException", ...) for a call embedding it.
    fail_calls: call number (1-based, arrival order) -> exception type.
    replies: text -> (status, body bytes): answer a call embedding that text with exactly this
             (content-type application/json), e.g. a malformed 200.
    resets: texts whose call gets its answer's headers and part of its body, then a TCP reset.
    token_header: False drops X-Amzn-Bedrock-Input-Token-Count from answers.
    """

    delay_ms: dict = field(default_factory=dict)
    default_delay_ms: int = 0
    fail_texts: dict = field(default_factory=dict)
    fail_calls: dict = field(default_factory=dict)
    replies: dict = field(default_factory=dict)
    resets: set = field(default_factory=set)
    token_header: bool = True
    calls: list = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def reset(self) -> None:
        with self._lock:
            self.delay_ms, self.default_delay_ms = {}, 0
            self.fail_texts, self.fail_calls, self.replies, self.resets = {}, {}, {}, set()
            self.token_header = True
            self.calls = []
            self.in_flight = self.max_in_flight = 0

    def begin(self, model_id: str, texts: list, body: Any) -> EmbedCall:
        with self._lock:
            call = EmbedCall(len(self.calls) + 1, model_id, list(texts), body, time.monotonic())
            self.calls.append(call)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return call

    def end(self, call: EmbedCall, outcome: str) -> None:
        with self._lock:
            call.finished = time.monotonic()
            call.outcome = outcome
            self.in_flight -= 1

    def plan(self, call: EmbedCall) -> tuple[float, Optional[str], Optional[tuple]]:
        """(seconds to wait, exception type or None, (status, body) or None) for this call."""
        with self._lock:
            delays = [self.delay_ms[t] for t in call.texts if t in self.delay_ms]
            delay = max(delays) if delays else self.default_delay_ms
            failure = self.fail_calls.get(call.number)
            if failure is None:
                failure = next((self.fail_texts[t] for t in call.texts if t in self.fail_texts), None)
            reply = next((self.replies[t] for t in call.texts if t in self.replies), None)
        return delay / 1000, failure, reply

    def resets_call(self, call: EmbedCall) -> bool:
        with self._lock:
            return any(t in self.resets for t in call.texts)

    def snapshot(self) -> list:
        with self._lock:
            return list(self.calls)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Waits (bounded) until no call is in flight; True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.in_flight == 0:
                    return True
            time.sleep(0.01)
        return False


# ---------------------------------------------------------------- OpenAI /embeddings


def openai_embeddings(req: Any) -> tuple[int, dict]:
    """(status, body) of OpenAI's answer to one `/embeddings` request body."""

    def bad(message: str, param: Optional[str], code: Optional[str] = None) -> tuple[int, dict]:
        return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}

    if not isinstance(req, dict):
        return bad("Invalid request body.", None)
    for f in ("model", "input"):
        if f not in req:
            return bad(f"Missing required parameter: '{f}'.", f, "missing_required_parameter")
    model = req["model"]
    if model not in OPENAI_MODELS:
        return 404, {"error": {"message": f"The model `{model}` does not exist or you do not have access to it.",
                               "type": "invalid_request_error", "param": None, "code": "model_not_found"}}
    inp = req["input"]
    if isinstance(inp, str):
        items: list = [inp]
    elif isinstance(inp, list) and inp and all(isinstance(x, int) and not isinstance(x, bool) for x in inp):
        items = [inp]  # one token array
    elif isinstance(inp, list):
        items = inp
    else:
        return bad("Invalid type for 'input': expected a string or an array.", "input", "invalid_type")
    if not items or len(items) > 2048:
        return bad("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", "input")
    for i, x in enumerate(items):
        ok_tokens = isinstance(x, list) and x and all(isinstance(t, int) and not isinstance(t, bool) for t in x)
        if not (isinstance(x, str) and x) and not ok_tokens:
            return bad("'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", f"input[{i}]")
    fmt = req.get("encoding_format", "float")
    if fmt not in ("float", "base64"):
        return bad(f"Invalid value for 'encoding_format': '{fmt}'. Supported values are: 'float' and 'base64'.", "encoding_format", "invalid_value")
    dims = req.get("dimensions")
    if dims is not None:
        if model == "text-embedding-ada-002":
            return bad("This model does not support specifying dimensions.", "dimensions")
        if not isinstance(dims, int) or isinstance(dims, bool) or not (1 <= dims <= OPENAI_MODELS[model]):
            return bad(f"Invalid value for 'dimensions' = {dims}. Must be between 1 and {OPENAI_MODELS[model]}.", "dimensions")
    if "user" in req and not isinstance(req["user"], str):
        return bad("Invalid type for 'user': expected a string.", "user", "invalid_type")
    extra = sorted(set(req) - {"model", "input", "encoding_format", "dimensions", "user"})
    if extra:
        return bad(f"Unrecognized request argument supplied: {extra[0]}", None)
    data = []
    tokens = 0
    for i, x in enumerate(items):
        vec = openai_vector(model, x, dims)
        tokens += len(x) if isinstance(x, list) else count_tokens(x)
        data.append({"object": "embedding", "index": i, "embedding": b64_f32(vec) if fmt == "base64" else vec})
    return 200, {"object": "list", "data": data, "model": OPENAI_ANSWER_MODEL.get(model, model),
                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
