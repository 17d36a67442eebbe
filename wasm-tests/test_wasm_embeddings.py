"""The embeddings fan-out in real Envoy with the built unigate.wasm: Bedrock embeddings are
calls the filter makes itself (dispatch_http_call), so this is where ordering, the concurrency
bound, failures, the cap and the per-call timeout meet Envoy's real callout machinery.

The plugin configuration sets `embedding_concurrency: 3`, `max_embedding_inputs: 20`,
`embedding_timeout_ms: 1000`. FakeBedrock is steered from Python (fake.embed: per-text delays,
failures, canned replies; it records each call and the most calls in flight at once), since
the client's headers never reach those calls. Every call must be SigV4-signed with the
sidecar's credentials (verified by the fake with botocore). After every test: no Wasm VM
trapped or was reloaded (as in test_wasm_faults.py), and the fake has no call left in flight.
"""

from __future__ import annotations

import array
import base64
import json
import socket
import threading
import time

import pytest

from fakes.embeddings import COHERE_EN_V3, TITAN_V1, TITAN_V2, cohere_vector, titan_vector
from fakes.text import count_tokens
from test_wasm_faults import VmWatch
from wasm_checks import assert_bedrock_upstream, assert_error
from wasm_harness import CLIENT_KEYS, Client, closed_port, default_clusters, default_env, default_plugin_config

CONCURRENCY = 3
CAP = 20
TIMEOUT_MS = 1000
EMB_CONFIG = {"embedding_concurrency": CONCURRENCY, "max_embedding_inputs": CAP, "embedding_timeout_ms": TIMEOUT_MS}


@pytest.fixture(scope="module")
def emb_gw(start_envoy, fakes):
    e = start_envoy("embeddings", default_plugin_config(fakes, **EMB_CONFIG), default_env(), default_clusters(fakes))
    e.watch = VmWatch(e)
    return e


@pytest.fixture
def ec(emb_gw, fakes):
    """A client of the embeddings Envoy; afterwards no call is left hanging at the fake and no
    VM trapped."""
    yield Client(emb_gw.url, timeout=15)
    assert fakes.bedrock.embed.wait_idle(10), "a Bedrock embeddings call is still in flight"
    emb_gw.watch.check()


def embed(client, model, inp, conn=None, **extra):
    return client.request("POST", "/v1/embeddings", {"model": model, "input": inp, **extra}, conn=conn)


def vectors(resp, encoding="float") -> list:
    assert resp.status == 200, resp
    body = resp.json()
    assert body["object"] == "list", body
    assert [d["index"] for d in body["data"]] == list(range(len(body["data"]))), "indexes in input order"
    assert all(d["object"] == "embedding" for d in body["data"])
    if encoding == "base64":
        return [array.array("f", base64.b64decode(d["embedding"])).tolist() for d in body["data"]]
    return [array.array("f", d["embedding"]).tolist() for d in body["data"]]


def signed_calls(fakes, model_id: str) -> list:
    """Every call the filter made, SigV4-verified, as request bodies in arrival order."""
    path = f"/model/{model_id.replace(':', '%3A')}/invoke"
    return [assert_bedrock_upstream(rec, path) for rec in fakes.bedrock.requests]


def finish_order(fakes) -> list:
    return [c.texts[0] for c in sorted(fakes.bedrock.embed.snapshot(), key=lambda c: c.finished or 1e18)]


def then_next_request_works(client, conn, sock):
    """The next request on the same keep-alive connection is served normally."""
    ok = embed(client, TITAN_V2, "after", conn=conn)
    assert vectors(ok) == [titan_vector(TITAN_V2, "after")]
    assert conn.sock is sock, "the client had to reconnect for the next request"


# ---------------------------------------------------------------- ordering and the bound


def test_answers_in_input_order_when_later_texts_answer_first(ec, fakes):
    texts = [f"t{i}" for i in range(8)]
    fakes.bedrock.embed.delay_ms.update({"t0": 500, "t1": 350, "t2": 200})
    r = embed(ec, TITAN_V2, texts)
    assert vectors(r) == [titan_vector(TITAN_V2, t) for t in texts]
    done = finish_order(fakes)
    assert done != texts and done.index("t0") > done.index("t3"), f"steering reordered the answers: {done}"
    bodies = signed_calls(fakes, TITAN_V2)
    assert sorted(b["inputText"] for b in bodies) == sorted(texts) and len(bodies) == 8
    assert r.json()["usage"] == {"prompt_tokens": sum(count_tokens(t) for t in texts),
                                 "total_tokens": sum(count_tokens(t) for t in texts)}
    assert r.json()["model"] == TITAN_V2


def test_concurrency_is_bounded_and_reached(ec, fakes):
    fakes.bedrock.embed.default_delay_ms = 200
    texts = [f"bound {i}" for i in range(12)]
    r = embed(ec, TITAN_V2, texts, encoding_format="base64")
    assert vectors(r, "base64") == [titan_vector(TITAN_V2, t) for t in texts]
    assert len(signed_calls(fakes, TITAN_V2)) == 12
    assert fakes.bedrock.embed.max_in_flight == CONCURRENCY, fakes.bedrock.embed.max_in_flight


def test_parallel_requests_each_get_their_own_vectors(ec, fakes):
    """Three clients fanning out at once: callout answers never cross between requests."""
    fakes.bedrock.embed.default_delay_ms = 50
    results, errors = {}, []

    def one(n):
        texts = [f"req{n}-{i}" for i in range(6)]
        try:
            results[n] = (texts, embed(Client(f"http://{ec.host}:{ec.port}", timeout=15), TITAN_V2, texts))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not errors and len(results) == 3, errors
    for texts, resp in results.values():
        assert vectors(resp) == [titan_vector(TITAN_V2, t) for t in texts]
    assert len(signed_calls(fakes, TITAN_V2)) == 18


def test_cohere_batch_is_one_call(ec, fakes):
    """A Cohere list up to 96 texts is one call (the 96-split is in test_system_embeddings.py)."""
    texts = [f"doc {i}" for i in range(CAP)]
    r = embed(ec, COHERE_EN_V3, texts)
    assert vectors(r) == [cohere_vector(COHERE_EN_V3, t) for t in texts]
    (body,) = signed_calls(fakes, COHERE_EN_V3)
    assert body["texts"] == texts and body["input_type"] == "search_document"


def test_cohere_answer_shape_embeddings_floats_is_read(ec, fakes):
    texts = ["floats a", "floats b"]
    answer = {"id": "x", "response_type": "embeddings_floats", "texts": texts,
              "embeddings": [cohere_vector(COHERE_EN_V3, t) for t in texts]}
    fakes.bedrock.embed.replies["floats a"] = (200, json.dumps(answer).encode())
    r = embed(ec, COHERE_EN_V3, texts)
    assert vectors(r) == [cohere_vector(COHERE_EN_V3, t) for t in texts]


# ---------------------------------------------------------------- failures


@pytest.mark.parametrize("kind,status,type_", [
    ("ThrottlingException", 429, "rate_limit_error"),
    ("ValidationException", 400, "invalid_request_error"),
    ("ServiceUnavailableException", 503, None),
])
def test_one_failed_call_fails_the_request_and_stops_the_fanout(ec, fakes, kind, status, type_):
    """t1 fails at once while t0 and t2 are still held: the client gets t1's error without
    waiting for them, the calls not yet started are never made, and the connection serves the
    next request."""
    texts = [f"t{i}" for i in range(8)]
    fakes.bedrock.embed.delay_ms.update({"t0": 400, "t2": 400})
    fakes.bedrock.embed.fail_texts["t1"] = kind
    conn = ec.connection()
    try:
        r = embed(ec, TITAN_V2, texts, conn=conn)
        assert_error(r, status, type_)
        if status == 429:
            assert r.headers.get("retry-after"), r.headers
        sock = conn.sock
        assert sock is not None and r.headers.get("connection", "").lower() != "close"
        assert fakes.bedrock.embed.wait_idle(5)
        then_next_request_works(ec, conn, sock)
    finally:
        conn.close()
    called = {c.texts[0] for c in fakes.bedrock.embed.snapshot()}
    assert called == {"t0", "t1", "t2", "after"}, f"calls after the failure were started: {called}"


def test_a_malformed_answer_is_502(ec, fakes):
    fakes.bedrock.embed.replies["t1"] = (200, b'{"embedding": "not a vector"}')
    r = embed(ec, TITAN_V2, ["t0", "t1", "t2"])
    assert_error(r, 502, "api_error")


def test_cohere_answer_with_too_few_vectors_is_502(ec, fakes):
    texts = ["c0", "c1", "c2"]
    short = {"response_type": "embeddings_by_type", "embeddings": {"float": [cohere_vector(COHERE_EN_V3, "c0")]}}
    fakes.bedrock.embed.replies["c0"] = (200, json.dumps(short).encode())
    r = embed(ec, COHERE_EN_V3, texts)
    assert_error(r, 502, "api_error")


def test_slow_call_beyond_the_timeout_is_504(ec, fakes):
    """One call held past embedding_timeout_ms (1 s) for 5 s: the client, which gives up after
    3 s, gets a 504 (so it did not wait for the slow call), and the connection serves the next
    request."""
    texts = ["quick", "stuck", "quick2"]
    fakes.bedrock.embed.delay_ms["stuck"] = 5000
    conn = ec.connection(timeout=3)
    try:
        r = embed(ec, TITAN_V2, texts, conn=conn)
        assert_error(r, 504, "timeout_error")
        sock = conn.sock
        assert sock is not None
        then_next_request_works(ec, conn, sock)
    finally:
        conn.close()


def test_reset_mid_answer_is_502_upstream_reset_as_on_chat(ec, fakes):
    """Bedrock sends one call's headers and part of its body, then resets the connection. Chat
    answers that with 502 `upstream_reset` (test_wasm_upstream_errors.py); the fan-out must
    not call it a timeout."""
    fakes.bedrock.embed.resets.add("t1")
    r = embed(ec, TITAN_V2, ["t0", "t1", "t2"])
    assert [c.outcome for c in fakes.bedrock.embed.snapshot() if c.texts == ["t1"]] == ["reset"]
    err = assert_error(r, 502, "api_error")
    assert err["code"] == "upstream_reset", err


def test_rejected_signature_is_502_never_401(ec, fakes):
    """Bedrock refusing the gateway's own credentials is the gateway's problem, not the client's."""
    fakes.bedrock.set_credentials("AKIDSOMEONEELSE00001", "other-secret", None)
    r = embed(ec, TITAN_V2, ["a", "b"])
    assert_error(r, 502, "api_error", code="upstream_auth_failed")


def test_unreachable_bedrock_is_502_upstream_unreachable_as_on_chat(start_envoy, fakes):
    """Bedrock's port refuses connections. Chat answers 502 `upstream_unreachable`
    (docs/api.md, test_wasm_upstream_errors.py); the embeddings fan-out must map the same
    failure the same way."""
    e = start_envoy("embeddings-refused", default_plugin_config(fakes, **EMB_CONFIG), default_env(),
                    default_clusters(fakes, bedrock=closed_port()))
    watch = VmWatch(e)
    c = Client(e.url, timeout=10)
    chat = c.chat({"model": "claude-3-haiku", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8})
    assert_error(chat, 502, "api_error", code="upstream_unreachable")
    r = embed(c, TITAN_V2, ["a", "b"])
    assert_error(r, 502, "api_error", code="upstream_unreachable")
    watch.check()


def test_the_timeout_is_per_call_not_per_request(ec, fakes):
    """Six calls of 600 ms, three at a time: the request takes two rounds (over 1 s in all),
    yet no call exceeds embedding_timeout_ms, so it succeeds."""
    fakes.bedrock.embed.default_delay_ms = 600
    texts = [f"round {i}" for i in range(6)]
    r = embed(ec, TITAN_V2, texts)
    assert vectors(r) == [titan_vector(TITAN_V2, t) for t in texts]
    calls = fakes.bedrock.embed.snapshot()
    assert max(c.finished for c in calls) - min(c.started for c in calls) > TIMEOUT_MS / 1000, "two rounds"


# ---------------------------------------------------------------- the cap and bad input


def test_over_the_cap_is_400_and_no_call(ec, fakes):
    for model in (TITAN_V2, COHERE_EN_V3):
        r = embed(ec, model, [f"c{i}" for i in range(CAP + 1)])
        assert_error(r, 400, "invalid_request_error", param="input", message_contains=str(CAP))
    assert fakes.bedrock.requests == []


def test_at_the_cap_every_text_is_embedded(ec, fakes):
    texts = [f"c{i}" for i in range(CAP)]
    r = embed(ec, TITAN_V1, texts)
    assert vectors(r) == [titan_vector(TITAN_V1, t) for t in texts]
    assert len(signed_calls(fakes, TITAN_V1)) == CAP
    assert fakes.bedrock.embed.max_in_flight <= CONCURRENCY


def test_token_arrays_and_wrong_endpoint_make_no_call(ec, fakes):
    assert_error(embed(ec, TITAN_V2, [[1, 2, 3]]), 400, "invalid_request_error", param="input[0]")
    assert_error(embed(ec, "claude-3-haiku", "x"), 400, "invalid_request_error", code="wrong_endpoint",
                 message_contains="/v1/chat/completions")
    r = ec.chat({"model": TITAN_V2, "messages": [{"role": "user", "content": "x"}]})
    assert_error(r, 400, "invalid_request_error", code="wrong_endpoint", message_contains="/v1/embeddings")
    assert_error(ec.request("GET", "/v1/embeddings"), 405, "invalid_request_error", code="method_not_allowed")
    for dims in (0, -1, 2.5):
        assert_error(embed(ec, TITAN_V2, "x", dimensions=dims), 400, "invalid_request_error", param="dimensions")
    assert fakes.upstream_requests() == []


# ---------------------------------------------------------------- client gone, first request


def test_client_gone_mid_fanout_does_not_trap(ec, emb_gw, fakes):
    """The client hangs up while calls are in flight; their answers arrive for a finished
    request. Nothing traps and the gateway keeps serving."""
    fakes.bedrock.embed.default_delay_ms = 400
    body = json.dumps({"model": TITAN_V2, "input": [f"gone {i}" for i in range(6)]}).encode()
    s = socket.create_connection((ec.host, ec.port), timeout=5)
    try:
        s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                  + f"authorization: Bearer {CLIENT_KEYS[0]}\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
        deadline = time.monotonic() + 5
        while fakes.bedrock.embed.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fakes.bedrock.embed.in_flight >= 1, "the fan-out never started"
    finally:
        s.close()
    assert fakes.bedrock.embed.wait_idle(5)
    fakes.bedrock.embed.default_delay_ms = 0
    assert vectors(embed(ec, TITAN_V2, ["still serving"])) == [titan_vector(TITAN_V2, "still serving")]
    emb_gw.watch.check()


def test_first_request_waits_for_the_sidecars_credentials(start_envoy, fakes):
    """A fresh Envoy whose first request is a fan-out while the sidecar is slow: the calls
    wait for the credentials, then each is signed with them."""
    fakes.sidecar.delay_ms = 300
    e = start_envoy("embeddings-cold", default_plugin_config(fakes, **EMB_CONFIG), default_env(), default_clusters(fakes))
    watch = VmWatch(e)
    texts = ["cold 0", "cold 1", "cold 2", "cold 3"]
    r = embed(Client(e.url, timeout=15), TITAN_V2, texts)
    assert vectors(r) == [titan_vector(TITAN_V2, t) for t in texts]
    assert len(signed_calls(fakes, TITAN_V2)) == 4
    assert fakes.sidecar.requests, "credentials came from the sidecar"
    watch.check()


def test_no_credentials_is_the_same_503_as_chat(start_envoy, fakes):
    """The sidecar has no AWS credentials: an embeddings request gets what a chat request gets
    (503, the same code), without a call to Bedrock and without hanging."""
    fakes.sidecar.set_credentials(None)
    e = start_envoy("embeddings-nocreds", default_plugin_config(fakes, **EMB_CONFIG, sidecar_timeout_ms=500),
                    default_env(), default_clusters(fakes))
    watch = VmWatch(e)
    c = Client(e.url, timeout=10)
    chat = c.chat({"model": "claude-3-haiku", "messages": [{"role": "user", "content": "x"}], "max_tokens": 8})
    chat_err = assert_error(chat, 503, "api_error", message_contains="AWS credentials")
    err = assert_error(embed(c, TITAN_V2, ["a", "b"]), 503, "api_error", message_contains="AWS credentials")
    assert err["code"] == chat_err["code"], (err, chat_err)
    assert fakes.bedrock.requests == []
    watch.check()
