"""The fakes' embedding models, checked with the real clients before the gateway tests rely on
them: boto3's `invoke_model` (SigV4-signed, botocore's own error parsing) against FakeBedrock's
Titan v1/v2 and Cohere v3/v4, and the official openai SDK against FakeOpenAI's `/embeddings`
(its default base64, which it decodes, and float).

Each refusal has its control (the same body without the offending part is accepted), and the
Python-side steering (delays, failures by text or by call number, the in-flight high-water
mark) is checked to do what the gateway tests assume."""

from __future__ import annotations

import base64
import json
import struct
import threading

import boto3
import openai
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeBedrock, FakeOpenAI
from fakes.embeddings import (
    COHERE_EN_V3,
    COHERE_V4,
    TITAN_V1,
    TITAN_V2,
    b64_f32,
    cohere_vector,
    openai_vector,
    titan_vector,
)
from fakes.text import count_tokens

OPENAI_KEY = "sk-fake-embeddings-test"


@pytest.fixture(scope="module")
def bedrock():
    with FakeBedrock(region="us-east-1") as f:
        yield f


@pytest.fixture(autouse=True)
def _clear(bedrock):
    bedrock.clear()
    yield
    bedrock.clear()


@pytest.fixture(scope="module")
def oa():
    with FakeOpenAI(api_key=OPENAI_KEY) as f:
        yield f


@pytest.fixture(scope="module")
def brt(bedrock):
    return boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=bedrock.url,
        aws_access_key_id=DEFAULT_ACCESS_KEY, aws_secret_access_key=DEFAULT_SECRET, aws_session_token=DEFAULT_TOKEN,
        config=Config(retries={"total_max_attempts": 1}, read_timeout=10, connect_timeout=5, max_pool_connections=8),
    )


def invoke(brt, model, body):
    r = brt.invoke_model(modelId=model, body=json.dumps(body), contentType="application/json", accept="application/json")
    return json.loads(r["body"].read()), r["ResponseMetadata"]["HTTPHeaders"]


def refused(brt, model, body, kind="ValidationException"):
    with pytest.raises(ClientError) as ei:
        invoke(brt, model, body)
    err = ei.value.response["Error"]
    assert err["Code"] == kind, ei.value.response
    return err["Message"]


def is_f32(v: float) -> bool:
    return struct.unpack("<f", struct.pack("<f", v))[0] == v


# ---------------------------------------------------------------- Titan


def test_titan_v2_default_answer_has_both_shapes_unit_vector_and_counts(brt, bedrock):
    out, headers = invoke(brt, TITAN_V2, {"inputText": "hello titan"})
    vec = out["embedding"]
    assert len(vec) == 1024 and out["embeddingsByType"]["float"] == vec
    assert vec == titan_vector(TITAN_V2, "hello titan")
    assert all(is_f32(x) for x in vec)
    assert abs(sum(x * x for x in vec) - 1) < 1e-5
    n = count_tokens("hello titan")
    assert out["inputTextTokenCount"] == n and headers["x-amzn-bedrock-input-token-count"] == str(n)
    assert bedrock.last().sigv4.ok
    (call,) = bedrock.embed.snapshot()
    assert (call.number, call.model_id, call.texts, call.outcome) == (1, TITAN_V2, ["hello titan"], "ok")


def test_titan_vectors_are_distinct_per_text_and_stable(brt):
    a1, _ = invoke(brt, TITAN_V2, {"inputText": "alpha"})
    b, _ = invoke(brt, TITAN_V2, {"inputText": "beta"})
    a2, _ = invoke(brt, TITAN_V2, {"inputText": "alpha"})
    assert a1["embedding"] == a2["embedding"] != b["embedding"]


@pytest.mark.parametrize("dims", [256, 512, 1024])
def test_titan_v2_dimensions_and_normalize(brt, dims):
    out, _ = invoke(brt, TITAN_V2, {"inputText": "x", "dimensions": dims, "normalize": False})
    assert out["embedding"] == titan_vector(TITAN_V2, "x", dims, normalize=False)
    assert len(out["embedding"]) == dims
    assert abs(sum(v * v for v in out["embedding"]) - 1) > 1e-3, "normalize: false is honoured"


@pytest.mark.parametrize("body,needle", [
    ({"inputText": "x", "dimensions": 300}, "#/dimensions: 300 is not a valid enum value"),
    ({"inputText": "x", "normalize": "yes"}, "#/normalize"),
    ({"inputText": "x", "texts": ["x"]}, "extraneous key [texts]"),
    ({"inputText": ""}, "minLength"),
    ({}, "required key [inputText]"),
])
def test_titan_v2_refusals(brt, body, needle):
    assert needle in refused(brt, TITAN_V2, body)


def test_titan_v1_has_1536_dims_and_refuses_v2_fields(brt):
    out, _ = invoke(brt, TITAN_V1, {"inputText": "old"})
    assert len(out["embedding"]) == 1536 and "embeddingsByType" not in out
    assert out["embedding"] == titan_vector(TITAN_V1, "old")
    assert out["inputTextTokenCount"] == count_tokens("old")
    assert "extraneous key [dimensions]" in refused(brt, TITAN_V1, {"inputText": "old", "dimensions": 256})
    assert "extraneous key [normalize]" in refused(brt, TITAN_V1, {"inputText": "old", "normalize": True})


def test_embedding_models_do_not_stream_or_converse(brt):
    with pytest.raises(ClientError) as ei:
        brt.invoke_model_with_response_stream(modelId=TITAN_V2, body=json.dumps({"inputText": "x"}))
    assert ei.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as ei:
        brt.converse(modelId=COHERE_EN_V3, messages=[{"role": "user", "content": [{"text": "x"}]}])
    assert ei.value.response["Error"]["Code"] == "ValidationException"


def test_bad_signature_is_refused_before_any_embedding(bedrock):
    bad = boto3.client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=bedrock.url,
        aws_access_key_id=DEFAULT_ACCESS_KEY, aws_secret_access_key="wrong", aws_session_token=DEFAULT_TOKEN,
        config=Config(retries={"total_max_attempts": 1}),
    )
    with pytest.raises(ClientError) as ei:
        invoke(bad, TITAN_V2, {"inputText": "x"})
    assert ei.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert bedrock.embed.snapshot() == []


# ---------------------------------------------------------------- Cohere


def test_cohere_v3_floats_shape_without_embedding_types(brt):
    texts = ["one", "two", "three"]
    out, headers = invoke(brt, COHERE_EN_V3, {"texts": texts, "input_type": "search_document"})
    assert out["response_type"] == "embeddings_floats" and out["texts"] == texts
    assert out["embeddings"] == [cohere_vector(COHERE_EN_V3, t) for t in texts]
    assert all(len(v) == 1024 for v in out["embeddings"])
    assert headers["x-amzn-bedrock-input-token-count"] == str(sum(count_tokens(t) for t in texts))
    assert "inputTextTokenCount" not in out


def test_cohere_v3_by_type_shape_with_embedding_types(brt):
    out, _ = invoke(brt, COHERE_EN_V3, {"texts": ["a", "b"], "input_type": "search_query", "embedding_types": ["float", "int8"]})
    assert out["response_type"] == "embeddings_by_type"
    assert out["embeddings"]["float"] == [cohere_vector(COHERE_EN_V3, t) for t in ("a", "b")]
    assert len(out["embeddings"]["int8"]) == 2


@pytest.mark.parametrize("body,needle", [
    ({"texts": ["a"]}, "required key [input_type]"),
    ({"texts": ["a"] * 97, "input_type": "search_document"}, "maximum item count: 96, found: 97"),
    ({"texts": [], "input_type": "search_document"}, "minimum item count"),
    ({"texts": ["a"], "input_type": "search_stuff"}, "#/input_type"),
    ({"texts": ["a"], "input_type": "search_document", "truncate": "LEFT"}, "#/truncate"),
    ({"texts": ["a"], "input_type": "search_document", "output_dimension": 256}, "extraneous key [output_dimension]"),
    ({"texts": ["x" * 2049], "input_type": "search_document"}, "maxLength: 2048"),
])
def test_cohere_v3_refusals(brt, body, needle):
    assert needle in refused(brt, COHERE_EN_V3, body)


def test_cohere_v3_takes_exactly_96(brt):
    texts = [f"t{i}" for i in range(96)]
    out, _ = invoke(brt, COHERE_EN_V3, {"texts": texts, "input_type": "clustering", "truncate": "END"})
    assert len(out["embeddings"]) == 96 and out["embeddings"][95] == cohere_vector(COHERE_EN_V3, "t95")


def test_cohere_v4_by_type_and_output_dimension(brt):
    out, _ = invoke(brt, COHERE_V4, {"texts": ["a"], "input_type": "search_document", "embedding_types": ["float"],
                                     "output_dimension": 512, "truncate": "RIGHT"})
    assert out["response_type"] == "embeddings_by_type"
    assert out["embeddings"]["float"] == [cohere_vector(COHERE_V4, "a", 512)]
    out, _ = invoke(brt, COHERE_V4, {"texts": ["a"], "input_type": "search_document"})
    assert len(out["embeddings"]["float"][0]) == 1536
    assert "#/output_dimension" in refused(brt, COHERE_V4, {"texts": ["a"], "input_type": "search_document", "output_dimension": 300})
    assert "#/truncate" in refused(brt, COHERE_V4, {"texts": ["a"], "input_type": "search_document", "truncate": "END"})


# ---------------------------------------------------------------- steering


def test_steered_failure_by_text_and_by_call_number(brt, bedrock):
    bedrock.embed.fail_texts["bad"] = "ThrottlingException"
    invoke(brt, TITAN_V2, {"inputText": "fine"})
    assert refused(brt, TITAN_V2, {"inputText": "bad"}, "ThrottlingException")
    bedrock.embed.fail_calls[3] = "ModelTimeoutException"
    refused(brt, COHERE_EN_V3, {"texts": ["z"], "input_type": "search_document"}, "ModelTimeoutException")
    invoke(brt, TITAN_V2, {"inputText": "fine"})
    assert [c.outcome for c in bedrock.embed.snapshot()] == ["ok", "ThrottlingException", "ModelTimeoutException", "ok"]
    bedrock.clear()
    assert bedrock.embed.fail_texts == {} and bedrock.embed.snapshot() == []
    invoke(brt, TITAN_V2, {"inputText": "bad"})


def test_token_header_can_be_dropped(brt, bedrock):
    bedrock.embed.token_header = False
    out, headers = invoke(brt, TITAN_V2, {"inputText": "count me"})
    assert "x-amzn-bedrock-input-token-count" not in headers
    assert out["inputTextTokenCount"] == count_tokens("count me")


def test_delays_and_in_flight_high_water_mark(brt, bedrock):
    """Three calls held at once reach a high-water mark of 3; the delayed text answers last."""
    bedrock.embed.default_delay_ms = 300
    bedrock.embed.delay_ms["slow"] = 600
    done = []
    errors = []

    def one(text):
        try:
            invoke(brt, TITAN_V2, {"inputText": text})
            done.append(text)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(t,)) for t in ("slow", "a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not errors and sorted(done) == ["a", "b", "slow"]
    assert done[-1] == "slow"
    assert bedrock.embed.max_in_flight == 3
    assert bedrock.embed.wait_idle(1) and bedrock.embed.in_flight == 0


# ---------------------------------------------------------------- OpenAI


@pytest.fixture
def oac(oa):
    c = openai.OpenAI(base_url=oa.url + "/v1", api_key=OPENAI_KEY, max_retries=0, timeout=10)
    yield c
    c.close()


def test_openai_sdk_default_is_base64_and_decodes_to_the_fakes_vectors(oa, oac):
    oa.clear()
    r = oac.embeddings.create(model="text-embedding-3-small", input=["first", "second"])
    sent = json.loads(oa.last().body)
    assert sent["encoding_format"] == "base64", sent
    raw = json.loads(oa.last().response_body)
    assert isinstance(raw["data"][0]["embedding"], str)
    assert base64.b64decode(raw["data"][1]["embedding"]) == base64.b64decode(b64_f32(openai_vector("text-embedding-3-small", "second")))
    assert [d.embedding for d in r.data] == [openai_vector("text-embedding-3-small", t) for t in ("first", "second")]
    assert [d.index for d in r.data] == [0, 1]
    assert r.usage.prompt_tokens == r.usage.total_tokens == count_tokens("first") + count_tokens("second")


def test_openai_float_dimensions_and_token_arrays(oa, oac):
    r = oac.embeddings.create(model="text-embedding-3-large", input="x", encoding_format="float", dimensions=256)
    assert r.data[0].embedding == openai_vector("text-embedding-3-large", "x", 256)
    assert abs(sum(v * v for v in r.data[0].embedding) - 1) < 1e-5
    r = oac.embeddings.create(model="text-embedding-3-small", input=[[1, 2, 3], [4]], encoding_format="float")
    assert r.usage.prompt_tokens == 4 and len(r.data) == 2
    r = oac.embeddings.create(model="text-embedding-ada-002", input="y", encoding_format="float")
    assert r.model == "text-embedding-ada-002-v2"


def test_openai_refusals(oac):
    with pytest.raises(openai.BadRequestError) as ei:
        oac.embeddings.create(model="text-embedding-ada-002", input="y", dimensions=256)
    assert "does not support specifying dimensions" in ei.value.message
    with pytest.raises(openai.NotFoundError) as ei:
        oac.embeddings.create(model="gpt-4o", input="y")
    assert ei.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        oac.embeddings.create(model="text-embedding-3-small", input="")
    bad = openai.OpenAI(base_url=oac.base_url, api_key="sk-wrong-key-1234", max_retries=0, timeout=10)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="text-embedding-3-small", input="y")


def test_canned_reply_for_a_text(brt, bedrock):
    bedrock.embed.replies["odd"] = (200, b'{"embedding": "not a list"}')
    out, _ = invoke(brt, TITAN_V2, {"inputText": "odd"})
    assert out == {"embedding": "not a list"}
    assert bedrock.embed.snapshot()[0].outcome == "canned 200"


def test_reset_mid_body_for_a_text(brt, bedrock):
    bedrock.embed.resets.add("cut")
    with pytest.raises(Exception) as ei:  # botocore raises its own connection/read errors here
        invoke(brt, TITAN_V2, {"inputText": "cut"})
    assert not isinstance(ei.value, ClientError), ei.value
    assert bedrock.embed.snapshot()[0].outcome == "reset"
