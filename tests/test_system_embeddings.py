"""POST /v1/embeddings through the whole stack (`unigate serve`: Envoy + unigate.wasm + sidecar)
with the official openai SDK's `client.embeddings.create`, unchanged: its default (it asks for
base64 and decodes little-endian float32 itself) and `encoding_format="float"`.

The fakes answer deterministic float32 vectors derived from each text (fakes/embeddings.py), so
every vector the SDK hands back is compared with the one the fake produced for that input: the
base64 path must be bit-exact, the float path exact once read as float32. Every upstream call
the filter makes to Bedrock is checked by the fake (SigV4 verified with botocore, credentials
from the sidecar), and its body is checked against what Titan / Cohere take.

- Titan v2 (single, a list in input order even when the first texts answer last, dimensions),
  Titan v1 (1536, no dimensions); one signed InvokeModel call per text, at most 8 at a time.
- Cohere v3 (100 texts: exactly two calls of 96 and 4, merged in order; input_type from
  extra_body; truncate), multilingual v3, v4 (dimensions → output_dimension).
- OpenAI models: relayed to OPENAI_BASE_URL's /embeddings, answer unchanged (base64 too).
- Usage = the sum of what Bedrock reported; metrics and the access log as for chat.
- Errors: wrong endpoint both ways, unknown model, token arrays and bad fields for Bedrock,
  over the cap, one failed call (mapped like chat, e.g. Throttling → 429), key model lists,
  rpm and tpm limits; /v1/models lists the embedding models.
"""

from __future__ import annotations

import array
import base64
import datetime
import hashlib
import json
import re
import struct
import time
import urllib.request
import uuid

import openai
import pytest

from fakes.embeddings import (
    COHERE_EN_V3,
    COHERE_ML_V3,
    COHERE_V4,
    TITAN_V1,
    TITAN_V2,
    cohere_vector,
    openai_vector,
    titan_vector,
)
from fakes.text import count_tokens
from system_harness import (
    CLIENT_KEY,
    UPSTREAM_OPENAI_KEY,
    assert_bedrock_upstream,
    assert_no_client_key,
    http,
    make_client,
    provider_env,
)

EMBEDDING_MODELS = [
    "text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002",
    TITAN_V2, TITAN_V1, COHERE_EN_V3, COHERE_ML_V3, COHERE_V4,
]
DEFAULT_CAP = 256  # max_embedding_inputs (docs/configuration.md)
DEFAULT_CONCURRENCY = 8  # embedding_concurrency


def f32(xs) -> list:
    return array.array("f", xs).tolist()


def model_path(model_id: str) -> str:
    return model_id.replace(":", "%3A")


def bedrock_calls(fakes, model_id: str) -> list:
    """The signed InvokeModel calls the filter made, each checked (SigV4 with the sidecar's
    credentials, no client key), as (record, body) in arrival order."""
    out = []
    for rec in fakes.bedrock.requests:
        body = assert_bedrock_upstream(rec, model_path(model_id), "invoke")
        out.append((rec, body))
    return out


def key_label(key: str) -> str:
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


# ---------------------------------------------------------------- Titan


def test_titan_v2_single_input_sdk_default_base64(client, fakes):
    raw = client.embeddings.with_raw_response.create(model=TITAN_V2, input="hello titan")
    wire = json.loads(raw.text)
    assert isinstance(wire["data"][0]["embedding"], str), "the SDK asked for base64 and gets base64"
    r = raw.parse()
    assert r.object == "list" and r.model == TITAN_V2
    assert len(r.data) == 1 and r.data[0].index == 0 and r.data[0].object == "embedding"
    assert r.data[0].embedding == titan_vector(TITAN_V2, "hello titan"), "base64 must carry the exact float32 vector"
    ((rec, body),) = bedrock_calls(fakes, TITAN_V2)
    assert body == {"inputText": "hello titan", "normalize": True}
    assert json.loads(fakes.bedrock.last().body)["inputText"] == "hello titan"
    assert r.usage.prompt_tokens == r.usage.total_tokens == int(rec.response_headers["x-amzn-bedrock-input-token-count"])
    assert r.usage.prompt_tokens == count_tokens("hello titan")


def test_titan_v2_list_in_input_order_float(client, fakes):
    texts = [f"text number {i} " + "x" * i for i in range(5)]
    r = client.embeddings.create(model=TITAN_V2, input=texts, encoding_format="float")
    assert [d.index for d in r.data] == [0, 1, 2, 3, 4]
    assert [f32(d.embedding) for d in r.data] == [titan_vector(TITAN_V2, t) for t in texts]
    calls = bedrock_calls(fakes, TITAN_V2)
    assert len(calls) == 5, "one signed InvokeModel call per text"
    assert sorted(b["inputText"] for _, b in calls) == sorted(texts)
    assert r.usage.prompt_tokens == sum(count_tokens(t) for t in texts)


def test_titan_list_order_survives_reordered_answers(client, fakes):
    """The first texts answer last; the answer still follows the input order."""
    texts = ["late-0", "late-1", "mid-2", "fast-3", "fast-4"]
    fakes.bedrock.embed.delay_ms.update({"late-0": 600, "late-1": 400, "mid-2": 200})
    r = client.embeddings.create(model=TITAN_V2, input=texts)
    assert [d.embedding for d in r.data] == [titan_vector(TITAN_V2, t) for t in texts]
    finished = [c.texts[0] for c in sorted(fakes.bedrock.embed.snapshot(), key=lambda c: c.finished)]
    assert finished[2:] == ["mid-2", "late-1", "late-0"], f"the steering reordered the answers: {finished}"


def test_client_headers_do_not_reach_the_filters_own_calls(client, fakes):
    """The fan-out's calls carry only what the filter puts on them: a client's x-fake-status
    (which would make the fake fail the call) and other headers stay at the gateway."""
    r = client.embeddings.create(model=TITAN_V2, input=["h1", "h2"],
                                 extra_headers={"x-fake-status": "500", "x-tenant-secret": "s3cr3t"})
    assert [d.embedding for d in r.data] == [titan_vector(TITAN_V2, t) for t in ("h1", "h2")]
    for rec, _ in bedrock_calls(fakes, TITAN_V2):
        leaked = [k for k in rec.headers if k.startswith("x-fake-") or k == "x-tenant-secret"]
        assert not leaked and "s3cr3t" not in json.dumps(rec.headers), rec.headers


def test_titan_v2_dimensions_256(client, fakes):
    texts = ["short a", "short b"]
    r = client.embeddings.create(model=TITAN_V2, input=texts, dimensions=256)
    assert [d.embedding for d in r.data] == [titan_vector(TITAN_V2, t, 256) for t in texts]
    assert all(len(d.embedding) == 256 for d in r.data)
    assert all(b == {"inputText": b["inputText"], "normalize": True, "dimensions": 256} for _, b in bedrock_calls(fakes, TITAN_V2))


@pytest.mark.parametrize("dims", [300, 1536])
def test_titan_v2_other_dimensions_are_400_before_any_call(client, fakes, dims):
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model=TITAN_V2, input="x", dimensions=dims)
    assert ei.value.param == "dimensions" and "256, 512 or 1024" in ei.value.message
    assert fakes.bedrock.requests == []


def test_titan_v1_single_and_list(client, fakes):
    r = client.embeddings.create(model=TITAN_V1, input="old model")
    assert r.data[0].embedding == titan_vector(TITAN_V1, "old model") and len(r.data[0].embedding) == 1536
    texts = ["v1 a", "v1 b", "v1 c"]
    r = client.embeddings.create(model=TITAN_V1, input=texts, encoding_format="float")
    assert [f32(d.embedding) for d in r.data] == [titan_vector(TITAN_V1, t) for t in texts]
    calls = bedrock_calls(fakes, TITAN_V1)
    assert len(calls) == 4 and all(set(b) == {"inputText"} for _, b in calls), "v1 takes inputText only"
    assert r.usage.prompt_tokens == sum(count_tokens(t) for t in texts)


@pytest.mark.parametrize("model_id,base", [
    ("arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0", TITAN_V2),
    ("us.cohere.embed-v4:0", COHERE_V4),
])
def test_arns_and_inference_profiles(client, fakes, model_id, base):
    r = client.embeddings.create(model=model_id, input=["profile a", "profile b"], user="u-7")
    expect = titan_vector if base == TITAN_V2 else cohere_vector
    assert [d.embedding for d in r.data] == [expect(base, t) for t in ("profile a", "profile b")]
    assert r.model == model_id
    path = model_id.replace(":", "%3A").replace("/", "%2F")
    for rec in fakes.bedrock.requests:
        body = assert_bedrock_upstream(rec, path, "invoke")
        assert "user" not in body, "Bedrock bodies take no `user`"


def test_bedrock_validation_error_is_400_with_its_message(client, fakes):
    """Cohere v3 takes at most 2048 characters per text; Bedrock's ValidationException comes
    back as a 400 with Bedrock's message."""
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model=COHERE_EN_V3, input=["ok", "x" * 3000])
    assert "maxLength: 2048" in ei.value.message, ei.value.message
    assert len(fakes.bedrock.requests) == 1


def test_titan_v1_dimensions_is_400_before_any_call(client, fakes):
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model=TITAN_V1, input="x", dimensions=256)
    assert ei.value.param == "dimensions"
    assert fakes.bedrock.requests == []


def test_titan_usage_from_body_when_bedrock_sends_no_count_header(client, fakes):
    fakes.bedrock.embed.token_header = False
    texts = ["count me from the body", "and me"]
    r = client.embeddings.create(model=TITAN_V2, input=texts)
    assert all("x-amzn-bedrock-input-token-count" not in rec.response_headers for rec, _ in bedrock_calls(fakes, TITAN_V2))
    assert r.usage.prompt_tokens == sum(count_tokens(t) for t in texts) > 0


def test_titan_calls_are_bounded_by_the_default_concurrency(client, fakes):
    """20 texts, each call held 150 ms: at most 8 in flight (the documented default), and 8 reached."""
    fakes.bedrock.embed.default_delay_ms = 150
    texts = [f"bounded {i}" for i in range(20)]
    r = client.embeddings.create(model=TITAN_V2, input=texts)
    assert [d.embedding for d in r.data] == [titan_vector(TITAN_V2, t) for t in texts]
    assert len(bedrock_calls(fakes, TITAN_V2)) == 20
    assert fakes.bedrock.embed.max_in_flight == DEFAULT_CONCURRENCY, fakes.bedrock.embed.max_in_flight


# ---------------------------------------------------------------- Cohere


def test_cohere_v3_100_texts_are_two_signed_calls_merged_in_order(client, fakes):
    texts = [f"document {i}" for i in range(100)]
    r = client.embeddings.create(model=COHERE_EN_V3, input=texts)
    assert len(r.data) == 100 and [d.index for d in r.data] == list(range(100))
    assert [d.embedding for d in r.data] == [cohere_vector(COHERE_EN_V3, t) for t in texts]
    calls = bedrock_calls(fakes, COHERE_EN_V3)
    assert len(calls) == 2, "96 texts per call at most: 100 texts are exactly two calls"
    batches = sorted((b["texts"] for _, b in calls), key=len, reverse=True)
    assert batches == [texts[:96], texts[96:]]
    for _, b in calls:
        assert b["input_type"] == "search_document", "the documented default"
    counted = sum(int(rec.response_headers["x-amzn-bedrock-input-token-count"]) for rec, _ in calls)
    assert r.usage.prompt_tokens == r.usage.total_tokens == counted == sum(count_tokens(t) for t in texts)


def test_cohere_v3_input_type_and_truncate_from_extra_body(client, fakes):
    r = client.embeddings.create(model=COHERE_EN_V3, input=["what is a gateway?"], encoding_format="float",
                                 extra_body={"input_type": "search_query", "truncate": "END"})
    assert f32(r.data[0].embedding) == cohere_vector(COHERE_EN_V3, "what is a gateway?")
    ((_, body),) = bedrock_calls(fakes, COHERE_EN_V3)
    assert body["input_type"] == "search_query" and body["truncate"] == "END", body
    assert body["texts"] == ["what is a gateway?"]


def test_cohere_bad_input_type_is_400_before_any_call(client, fakes):
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model=COHERE_EN_V3, input=["x"], extra_body={"input_type": "search_stuff"})
    assert ei.value.param == "input_type"
    assert fakes.bedrock.requests == []


def test_cohere_multilingual_v3(client, fakes):
    texts = ["Bonjour le monde", "Grüß Gott", "こんにちは"]
    r = client.embeddings.create(model=COHERE_ML_V3, input=texts)
    assert [d.embedding for d in r.data] == [cohere_vector(COHERE_ML_V3, t) for t in texts]
    ((_, body),) = bedrock_calls(fakes, COHERE_ML_V3)
    assert body["texts"] == texts


def test_cohere_v4_dimensions_become_output_dimension(client, fakes):
    r = client.embeddings.create(model=COHERE_V4, input=["v4 a", "v4 b"], dimensions=512)
    assert [d.embedding for d in r.data] == [cohere_vector(COHERE_V4, t, 512) for t in ("v4 a", "v4 b")]
    ((_, body),) = bedrock_calls(fakes, COHERE_V4)
    assert body["output_dimension"] == 512 and body["input_type"] == "search_document"
    r = client.embeddings.create(model=COHERE_V4, input="v4 default")
    assert r.data[0].embedding == cohere_vector(COHERE_V4, "v4 default") and len(r.data[0].embedding) == 1536


# ---------------------------------------------------------------- OpenAI


def test_openai_model_relayed_default_base64_unchanged(client, fakes):
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=["a", "b"])
    rec = fakes.openai.last()
    assert rec.path == "/v1/embeddings" and rec.headers.get("authorization") == f"Bearer {UPSTREAM_OPENAI_KEY}"
    assert_no_client_key(rec)
    sent = json.loads(rec.body)
    assert sent["encoding_format"] == "base64" and sent["model"] == "text-embedding-3-small" and sent["input"] == ["a", "b"]
    assert json.loads(raw.text) == json.loads(rec.response_body), "the answer comes back unchanged"
    r = raw.parse()
    assert [d.embedding for d in r.data] == [openai_vector("text-embedding-3-small", t) for t in ("a", "b")]
    assert r.usage.prompt_tokens == count_tokens("a") + count_tokens("b")
    assert fakes.bedrock.requests == []


def test_openai_model_float_dimensions_user_and_token_arrays(client, fakes):
    r = client.embeddings.create(model="text-embedding-3-large", input="x", encoding_format="float", dimensions=256, user="u-42")
    assert r.data[0].embedding == openai_vector("text-embedding-3-large", "x", 256)
    sent = json.loads(fakes.openai.last().body)
    assert (sent["dimensions"], sent["user"], sent["encoding_format"]) == (256, "u-42", "float")
    r = client.embeddings.create(model="text-embedding-ada-002", input=[[1, 2, 3], [4, 5]])
    assert r.model == "text-embedding-ada-002-v2" and r.usage.prompt_tokens == 5
    assert [d.embedding for d in r.data] == [openai_vector("text-embedding-ada-002", t) for t in ([1, 2, 3], [4, 5])]


def test_openai_upstream_error_is_relayed(client, fakes):
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model="text-embedding-ada-002", input="y", dimensions=64)
    assert "does not support specifying dimensions" in ei.value.message
    assert len(fakes.openai.requests) == 1


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("model", ["gpt-4o", "claude-3-haiku"])
def test_chat_model_on_embeddings_names_chat_completions(client, fakes, model):
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model=model, input="x")
    assert ei.value.code == "wrong_endpoint" and "/v1/chat/completions" in ei.value.message
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize("model", ["text-embedding-3-small", TITAN_V2, COHERE_EN_V3])
def test_embedding_model_on_chat_names_embeddings(client, fakes, model):
    with pytest.raises(openai.BadRequestError) as ei:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    assert ei.value.code == "wrong_endpoint" and "/v1/embeddings" in ei.value.message
    assert fakes.upstream_requests() == []


def test_unknown_model_is_404(client, fakes):
    with pytest.raises(openai.NotFoundError) as ei:
        client.embeddings.create(model="no-such-embedder", input="x")
    assert ei.value.code == "model_not_found"
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize("model", [TITAN_V2, COHERE_EN_V3])
@pytest.mark.parametrize("inp", [[[1, 2], [3]], [1, 2, 3]], ids=["token-arrays", "one-token-array"])
def test_token_arrays_for_bedrock_are_400(client, fakes, model, inp):
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model=model, input=inp)
    assert ei.value.param == "input[0]" and "Token arrays" in ei.value.message
    assert fakes.bedrock.requests == []


@pytest.mark.parametrize("body,param", [
    ({"model": TITAN_V2}, "input"),
    ({"model": TITAN_V2, "input": []}, "input"),
    ({"model": TITAN_V2, "input": 5}, "input"),
    ({"model": TITAN_V2, "input": ["ok", ""]}, "input[1]"),
    ({"model": TITAN_V2, "input": ["ok", {"t": 1}]}, "input[1]"),
    ({"model": TITAN_V2, "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": TITAN_V2, "input": "x", "dimensions": "256"}, "dimensions"),
    ({"input": "x"}, "model"),
])
def test_bad_input_is_400_naming_the_field(stack, fakes, body, param):
    status, _, raw = http("POST", stack.base_url + "/embeddings", {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"},
                          json.dumps(body).encode())
    err = json.loads(raw)["error"]
    assert status == 400 and err["type"] == "invalid_request_error" and err["param"] == param, (status, err)
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize("model", [TITAN_V2, COHERE_EN_V3])
def test_over_the_cap_is_400_and_no_call(client, fakes, model):
    with pytest.raises(openai.BadRequestError) as ei:
        client.embeddings.create(model=model, input=[f"t{i}" for i in range(DEFAULT_CAP + 1)])
    assert ei.value.param == "input" and str(DEFAULT_CAP) in ei.value.message
    assert fakes.bedrock.requests == []


def test_cohere_at_the_cap_is_three_calls(client, fakes):
    texts = [f"cap {i}" for i in range(DEFAULT_CAP)]
    r = client.embeddings.create(model=COHERE_EN_V3, input=texts)
    assert [d.embedding for d in r.data] == [cohere_vector(COHERE_EN_V3, t) for t in texts]
    assert sorted(len(b["texts"]) for _, b in bedrock_calls(fakes, COHERE_EN_V3)) == [64, 96, 96]


@pytest.mark.parametrize("kind,status,exc,code", [
    ("ThrottlingException", 429, openai.RateLimitError, "rate_limit_exceeded"),
    ("ValidationException", 400, openai.BadRequestError, None),
    ("AccessDeniedException", 403, openai.PermissionDeniedError, "access_denied"),
    ("ServiceUnavailableException", 503, openai.InternalServerError, None),
    ("ModelTimeoutException", 504, openai.InternalServerError, "model_timeout"),
])
def test_one_failed_titan_call_fails_the_request(client, fakes, kind, status, exc, code):
    texts = [f"fan {i}" for i in range(5)]
    fakes.bedrock.embed.fail_texts["fan 2"] = kind
    with pytest.raises(exc) as ei:
        client.embeddings.create(model=TITAN_V2, input=texts)
    assert ei.value.status_code == status, ei.value
    if code is not None:
        assert ei.value.code == code, ei.value.body
    if status == 429:
        assert ei.value.response.headers.get("retry-after"), ei.value.response.headers
    outcomes = {c.texts[0]: c.outcome for c in fakes.bedrock.embed.snapshot()}
    assert outcomes.get("fan 2") == kind, outcomes
    # The next request is served normally.
    fakes.bedrock.embed.fail_texts.clear()
    assert client.embeddings.create(model=TITAN_V2, input="after").data[0].embedding == titan_vector(TITAN_V2, "after")


def test_one_failed_cohere_batch_fails_the_request(client, fakes):
    texts = [f"doc {i}" for i in range(120)]
    fakes.bedrock.embed.fail_texts["doc 100"] = "ThrottlingException"
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model=COHERE_EN_V3, input=texts)


# ---------------------------------------------------------------- models, metrics, access log


def test_models_lists_the_embedding_models(client):
    ids = {m.id for m in client.models.list()}
    missing = [m for m in EMBEDDING_MODELS if m not in ids]
    assert not missing, missing


def _counter(stats: dict, name: str) -> int:
    v = stats.get(name, "0")
    return int(v) if v.isdigit() else 0


def _san(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", model_id)


def access_log(stack, request_id: str, timeout: float = 8.0) -> dict:
    """The JSON access-log line of one request (flushed with the admin's /reopen_logs)."""
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(f"http://127.0.0.1:{stack.admin_port}/reopen_logs", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        for line in stack.log().splitlines():
            if request_id in line and line.startswith("{"):
                entry = json.loads(line)
                if entry.get("client_request_id") == request_id:
                    return entry
        assert time.monotonic() < deadline, f"no access-log line for {request_id}"
        time.sleep(0.1)


@pytest.mark.parametrize("model,provider", [(TITAN_V2, "bedrock"), (COHERE_EN_V3, "bedrock"), ("text-embedding-3-small", "openai")])
def test_metrics_and_access_log(stack, client, fakes, model, provider):
    texts = ["metric one", "metric two", "metric three"]
    before = stack.admin_stats("wasmcustom.unigate")
    rid = f"emb-log-{uuid.uuid4().hex}"
    r = client.embeddings.create(model=model, input=texts, extra_headers={"x-client-request-id": rid})
    n = sum(count_tokens(t) for t in texts)
    assert r.usage.prompt_tokens == n
    entry = access_log(stack, rid)
    after = stack.admin_stats("wasmcustom.unigate")
    san = _san(model)
    assert _counter(after, f"wasmcustom.unigate.tokens.{san}.input") - _counter(before, f"wasmcustom.unigate.tokens.{san}.input") == n
    grown = {k: _counter(after, k) - _counter(before, k) for k in after
             if k.startswith("wasmcustom.unigate.") and k.endswith(f".{provider}.{san}.200")}
    assert sum(grown.values()) == 1, f"one finished request by provider/model/status: {grown}"
    assert (entry["status"], entry["method"], entry["path"]) == (200, "POST", "/v1/embeddings"), entry
    assert (entry["provider"], entry["model"]) == (provider, model), entry
    assert entry["key"] == key_label(CLIENT_KEY), entry
    assert int(entry["prompt_tokens"]) == int(entry["total_tokens"]) == n, entry


def test_access_log_of_a_failed_fanout_names_model_and_key_as_chat_does(stack, client, fakes):
    """A Bedrock error on chat leaves the model, provider and key in the access log; an
    embeddings request failed by one of its calls must too (same Throttling from Bedrock)."""
    chat_rid = f"chat-fail-{uuid.uuid4().hex}"
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="claude-3-haiku", messages=[{"role": "user", "content": "x"}],
                                       extra_headers={"x-client-request-id": chat_rid, "x-fake-status": "429",
                                                      "x-fake-error-type": "ThrottlingException"})
    chat = access_log(stack, chat_rid)
    assert chat["status"] == 429 and chat["provider"] == "bedrock" and chat["model"].startswith("anthropic.claude-3-haiku"), chat
    assert chat["key"] == key_label(CLIENT_KEY), chat

    fakes.bedrock.embed.fail_texts["b"] = "ThrottlingException"
    rid = f"emb-fail-{uuid.uuid4().hex}"
    with pytest.raises(openai.RateLimitError):
        client.embeddings.create(model=TITAN_V2, input=["a", "b"], extra_headers={"x-client-request-id": rid})
    entry = access_log(stack, rid)
    assert entry["status"] == 429, entry
    assert (entry["provider"], entry["model"], entry["key"]) == ("bedrock", TITAN_V2, key_label(CLIENT_KEY)), entry


# ---------------------------------------------------------------- keys (own stack)

TITAN_ONLY = "ug-emb-titan-only-31aa"
RPM_TWO = "ug-emb-rpm-two-7c20"
TPM_SMALL = "ug-emb-tpm-small-e514"


@pytest.fixture(scope="module")
def keys_stack(start_stack, fakes, tmp_path_factory):
    path = tmp_path_factory.mktemp("emb-keys") / "keys.json"
    path.write_text(json.dumps([
        {"key": TITAN_ONLY, "name": "titan-only", "models": ["amazon.titan-embed-*"]},
        {"key": RPM_TWO, "name": "emb-rpm-two", "rpm": 2},
        {"key": TPM_SMALL, "name": "emb-tpm", "tpm": 20},
    ]))
    return start_stack("emb-keys", provider_env(fakes, API_KEY=None, API_KEYS_FILE=str(path)))


def wait_for_fresh_minute():
    """Limits use fixed one-minute windows: do not straddle a minute boundary."""
    now = datetime.datetime.now()
    if now.second >= 50:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.2)


def test_first_request_of_a_fresh_stack_is_a_fanout(keys_stack, fakes):
    """The filter may not have credentials cached yet: the fan-out waits for the sidecar."""
    c = make_client(keys_stack, key=TITAN_ONLY)
    r = c.embeddings.create(model=TITAN_V2, input=["first", "second"])
    assert [d.embedding for d in r.data] == [titan_vector(TITAN_V2, t) for t in ("first", "second")]
    assert len(bedrock_calls(fakes, TITAN_V2)) == 2


def test_key_model_list_applies_to_embeddings(keys_stack, fakes):
    c = make_client(keys_stack, key=TITAN_ONLY)
    assert c.embeddings.create(model=TITAN_V1, input="allowed").data[0].embedding == titan_vector(TITAN_V1, "allowed")
    fakes.bedrock.clear()
    for model in ("text-embedding-3-small", COHERE_EN_V3):
        with pytest.raises(openai.PermissionDeniedError) as ei:
            c.embeddings.create(model=model, input="not allowed")
        assert ei.value.status_code == 403 and ei.value.code == "model_not_allowed"
    assert fakes.upstream_requests() == []
    ids = {m.id for m in c.models.list()}
    assert {TITAN_V2, TITAN_V1} <= ids and not ids & {COHERE_EN_V3, "text-embedding-3-small"}, ids


def test_rpm_limit_counts_embeddings_requests(keys_stack, fakes):
    c = make_client(keys_stack, key=RPM_TWO)
    wait_for_fresh_minute()
    c.embeddings.create(model=TITAN_V2, input=["one", "two", "three"])
    c.embeddings.create(model="text-embedding-3-small", input="four")
    calls_before = len(fakes.upstream_requests())
    with pytest.raises(openai.RateLimitError) as ei:
        c.embeddings.create(model=TITAN_V2, input=["five"])
    assert ei.value.code == "rate_limit_exceeded"
    retry = ei.value.response.headers.get("retry-after")
    assert retry is not None and 0 < int(retry) <= 60, retry
    assert len(fakes.upstream_requests()) == calls_before == 4, "a request is one unit of rpm however many calls it makes"


def test_tpm_limit_counts_the_summed_bedrock_usage(keys_stack, fakes):
    """tpm=20: one Titan request of 5 texts whose Bedrock counts add up to more than 20 spends
    the budget, so a later request is refused by the gateway without reaching Bedrock."""
    c = make_client(keys_stack, key=TPM_SMALL)
    wait_for_fresh_minute()
    texts = [f"spend the budget with text {i}" for i in range(5)]
    r = c.embeddings.create(model=TITAN_V2, input=texts)
    assert r.usage.prompt_tokens == sum(count_tokens(t) for t in texts) > 20
    calls = len(fakes.bedrock.requests)
    # The charge is made when Envoy finishes the request, a moment after the client has the
    # answer: a request may slip in before it, never after.
    slipped = 0
    deadline = time.monotonic() + 5
    while True:
        try:
            c.embeddings.create(model=TITAN_V2, input="over budget")
            slipped += 1
        except openai.RateLimitError as e:
            assert e.code == "rate_limit_exceeded"
            break
        assert time.monotonic() < deadline, "the summed embeddings usage was never charged"
        time.sleep(0.1)
    assert len(fakes.bedrock.requests) == calls + slipped


def test_base64_answer_is_little_endian_float32(stack, fakes):
    """Without the SDK: the base64 string is the vector's little-endian float32 bytes."""
    status, _, raw = http("POST", stack.base_url + "/embeddings",
                          {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"},
                          json.dumps({"model": TITAN_V2, "input": "bytes", "encoding_format": "base64", "dimensions": 256}).encode())
    assert status == 200, raw
    b = base64.b64decode(json.loads(raw)["data"][0]["embedding"])
    vec = titan_vector(TITAN_V2, "bytes", 256)
    assert b == struct.pack(f"<{len(vec)}f", *vec)
