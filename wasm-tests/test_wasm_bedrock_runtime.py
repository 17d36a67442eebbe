"""The Bedrock runtime door (`/model/{modelId}/{operation}` at the gateway root) in real Envoy
with the built filter, against the fake Bedrock.

- Routes: all five operations with the id raw (`:` as the Anthropic SDKs send it), encoded
  (`%3A`, boto3), as an alias, and as an inference-profile ARN (raw, spanning segments, and
  encoded): each reaches the bedrock cluster on the canonical path, SigV4-signed by the gateway
  (verified with botocore), with the client's body byte for byte (also when uploaded chunked),
  and the answer comes back byte for byte — event streams included.
- Headers: the client's `authorization`, `x-amz-*`, other `x-amzn-*` and gateway headers never
  reach Bedrock; Bedrock's own `x-amzn-bedrock-*` do.
- Usage: Envoy's token metrics grow by what each operation's answer reported (headers,
  invocation metrics, Converse usage, the ConverseStream metadata event), and a stream's usage
  counts against the key's tpm limit.
- Errors are AWS errors (`x-amzn-ErrorType` + `{"message"}`) and never reach Bedrock.
- Faults, as test_wasm_faults.py does for the chat door: upstream reset mid-stream / mid-body,
  slow first byte, Bedrock's errors and garbage relayed unchanged, credential failures at
  Bedrock as 500 InternalServerException, upstream refused, client disconnect; after each, no
  Wasm VM trapped and (where HTTP/1.1 allows) the same connection carries the next request.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
from urllib.parse import quote

import pytest

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from fakes import eventstream as es
from wasm_harness import CLIENT_KEYS, Client, closed_port, default_clusters, default_env, default_plugin_config, split_bytes, paced

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET4 = "us.anthropic.claude-sonnet-4-20250514-v1:0"
NOVA = "amazon.nova-pro-v1:0"
NOVA_LITE = "amazon.nova-lite-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
# CountTokens takes only the Claude models Bedrock counts for (the fake knows the list).
COUNTABLE = "anthropic.claude-3-5-haiku-20241022-v1:0"

NOVA_ONLY_KEY = "wasm-door-nova-only-key"
TPM_KEY = "wasm-door-tpm-key"
KEY = CLIENT_KEYS[0]
IDLE_S = 1  # the door Envoy's route idle timeout and upstream_timeout_seconds (fast faults)

TRAP_MARKERS = ("panicked", "Function: proxy_on_", "wasm trap", "Uncaught RuntimeError", "unreachable executed")

# Bodies as clients send them: whitespace and key order of their own, kept to the byte.
CLAUDE_BODY = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                          "messages": [{"role": "user", "content": "tell me about the door"}]}, indent=2).encode()
CONVERSE_BODY = b'{ "messages": [ {"role": "user", "content": [{"text": "converse through the door"}]} ],\n  "inferenceConfig": {"maxTokens": 40} }'
COUNT_INVOKE_BODY = json.dumps({"input": {"invokeModel": {"body": base64.b64encode(CLAUDE_BODY).decode()}}}).encode()
COUNT_CONVERSE_BODY = json.dumps({"input": {"converse": {"messages": [{"role": "user", "content": [{"text": "count me"}]}]}}}).encode()

STREAM_OPS = ("invoke-with-response-stream", "converse-stream")


def enc(model_id: str) -> str:
    return quote(model_id, safe="")


def up_path(model_id: str, op: str) -> str:
    """The path the gateway sends upstream: the resolved id as one encoded segment."""
    return f"/model/{enc(model_id)}/{op}"


# ---------------------------------------------------------------- no-trap checks


class VmWatch:
    """Baseline of an Envoy's Wasm VM counters, to assert that no VM trapped or was replaced."""

    def __init__(self, envoy):
        self.envoy = envoy
        self.created = self._created()

    def _created(self) -> int:
        name = "wasm.envoy.wasm.runtime.v8.created"
        return int(self.envoy.stats(name).get(name, 0))

    def check(self):
        reloads = {k: v for k, v in self.envoy.stats("wasm.unigate.vm_reload").items() if k.startswith("wasm.unigate.vm_reload")}
        assert reloads and all(v == "0" for v in reloads.values()), f"a Wasm VM was reloaded: {reloads}"
        assert self._created() == self.created, "new V8 VMs were created: a VM was replaced"
        bad = [ln for ln in self.envoy.log_since(0).splitlines() if any(m in ln for m in TRAP_MARKERS)]
        assert not bad, "Wasm trap/panic in Envoy's log:\n" + "\n".join(bad[:10])


@pytest.fixture(scope="module")
def door_gw(start_envoy, fakes):
    cfg = default_plugin_config(
        fakes, upstream_timeout_seconds=IDLE_S,
        api_keys=[{"key": NOVA_ONLY_KEY, "name": "nova-only", "models": ["amazon.nova-*"]},
                  {"key": TPM_KEY, "name": "tpm-small", "tpm": 30}],
    )
    e = start_envoy("bedrock-door", cfg, default_env(), default_clusters(fakes), idle_timeout_s=IDLE_S)
    e.watch = VmWatch(e)
    return e


@pytest.fixture
def dc(door_gw):
    """A client of the door Envoy; after the test, no VM may have trapped."""
    yield Client(door_gw.url)
    door_gw.watch.check()


def post(client, path, body, headers=None, **kw):
    """A POST as boto3 sends InvokeModel: no Content-Type unless given."""
    return client.request("POST", path, body, headers=headers or {}, **kw)


def assert_relayed(rec, path: str, body: bytes, op: str) -> None:
    """At the fake Bedrock: the canonical path, the client's body byte for byte (length-
    delimited), the gateway's botocore-verified SigV4 and nothing of the client's credentials."""
    assert rec.server == "bedrock" and rec.method == "POST"
    assert rec.path == path, f"{rec.path!r} != {path!r}"
    assert rec.body == body, "the body did not arrive byte for byte"
    assert not rec.chunked and "transfer-encoding" not in rec.headers
    assert rec.content_length == len(rec.body)
    assert rec.sigv4 is not None and rec.sigv4.ok, f"SigV4 rejected: {rec.sigv4}"
    assert rec.sigv4.access_key == DEFAULT_ACCESS_KEY
    assert rec.headers.get("x-amz-security-token") == DEFAULT_TOKEN
    assert rec.headers.get("content-type") == "application/json", rec.headers
    accept = "application/vnd.amazon.eventstream" if op in STREAM_OPS else "application/json"
    assert rec.headers.get("accept") == accept, rec.headers
    assert "x-unigate-cluster" not in rec.headers
    for name, value in rec.header_list:
        assert "Bearer" not in value, f"a bearer credential reached Bedrock in {name}"
        assert DEFAULT_SECRET not in value
        for k in (*CLIENT_KEYS, NOVA_ONLY_KEY, TPM_KEY):
            assert k not in value, f"a client key reached Bedrock in {name}"


def assert_aws_error(resp, status: int, name: str) -> str:
    """An AWS error as the SDKs parse it: status, `x-amzn-ErrorType`, `{"message": …}` only."""
    assert resp.status == status, resp
    assert resp.headers.get("x-amzn-errortype") == name, resp
    assert resp.content_type.startswith("application/json"), resp
    body = resp.json()
    assert set(body) == {"message"} and isinstance(body["message"], str) and body["message"], body
    if "content-length" in resp.headers:
        assert int(resp.headers["content-length"]) == len(resp.body)
    return body["message"]


# ---------------------------------------------------------------- routes


ROUTES = [
    # (client path, body, upstream path, op)
    pytest.param(f"/model/{HAIKU}/invoke", CLAUDE_BODY, up_path(HAIKU, "invoke"), "invoke", id="invoke-raw"),
    pytest.param(f"/model/{enc(HAIKU)}/invoke", CLAUDE_BODY, up_path(HAIKU, "invoke"), "invoke", id="invoke-encoded"),
    pytest.param("/model/claude-3-haiku/invoke", CLAUDE_BODY, up_path(HAIKU, "invoke"), "invoke", id="invoke-alias"),
    pytest.param(f"/model/{ARN}/invoke", CLAUDE_BODY, up_path(ARN, "invoke"), "invoke", id="invoke-arn-raw"),
    pytest.param(f"/model/{enc(ARN)}/invoke", CLAUDE_BODY, up_path(ARN, "invoke"), "invoke", id="invoke-arn-encoded"),
    pytest.param(f"/model/{SONNET4}/invoke-with-response-stream", CLAUDE_BODY, up_path(SONNET4, "invoke-with-response-stream"),
                 "invoke-with-response-stream", id="invoke-stream-raw"),
    pytest.param(f"/model/{enc(SONNET4)}/invoke-with-response-stream", CLAUDE_BODY,
                 up_path(SONNET4, "invoke-with-response-stream"), "invoke-with-response-stream", id="invoke-stream-encoded"),
    pytest.param(f"/model/{enc(ARN)}/invoke-with-response-stream", CLAUDE_BODY, up_path(ARN, "invoke-with-response-stream"),
                 "invoke-with-response-stream", id="invoke-stream-arn"),
    pytest.param(f"/model/{NOVA}/converse", CONVERSE_BODY, up_path(NOVA, "converse"), "converse", id="converse-raw"),
    pytest.param(f"/model/{enc(NOVA)}/converse", CONVERSE_BODY, up_path(NOVA, "converse"), "converse", id="converse-encoded"),
    pytest.param("/model/nova-lite/converse", CONVERSE_BODY, up_path(NOVA_LITE, "converse"), "converse", id="converse-alias"),
    pytest.param(f"/model/{NOVA}/converse-stream", CONVERSE_BODY, up_path(NOVA, "converse-stream"), "converse-stream",
                 id="converse-stream-raw"),
    pytest.param(f"/model/{enc(NOVA)}/converse-stream", CONVERSE_BODY, up_path(NOVA, "converse-stream"), "converse-stream",
                 id="converse-stream-encoded"),
    pytest.param(f"/model/{COUNTABLE}/count-tokens", COUNT_INVOKE_BODY, up_path(COUNTABLE, "count-tokens"), "count-tokens",
                 id="count-tokens-raw"),
    pytest.param(f"/model/{enc(COUNTABLE)}/count-tokens", COUNT_CONVERSE_BODY, up_path(COUNTABLE, "count-tokens"), "count-tokens",
                 id="count-tokens-encoded"),
]


@pytest.mark.parametrize("path,body,upstream,op", ROUTES)
def test_route_relays_and_re_signs(dc, fakes, path, body, upstream, op):
    resp = post(dc, path, body)
    assert resp.status == 200, resp
    assert len(fakes.bedrock.requests) == 1
    rec = fakes.bedrock.last()
    assert_relayed(rec, upstream, body, op)
    assert rec.response_status == 200, rec.response_body[:300]
    assert resp.body == rec.response_body, "the answer was not relayed byte for byte"
    assert resp.content_type == rec.response_headers["content-type"]
    if op in STREAM_OPS:
        assert resp.content_type == "application/vnd.amazon.eventstream"
        assert resp.headers.get("x-amzn-bedrock-content-type") == "application/json"
        msgs, rest = es.decode_messages(resp.body)
        assert msgs and rest == b""
    if op == "invoke":
        for h in ("x-amzn-bedrock-input-token-count", "x-amzn-bedrock-output-token-count"):
            assert resp.headers.get(h) == rec.response_headers[h]


def test_count_tokens_alias_of_a_profile_counts_on_the_foundation_model(dc, fakes):
    """Aliases resolve in the path (docs/api.md), and CountTokens takes foundation model ids
    only — no inference profiles (which is why the Messages door's count_tokens strips the
    geography prefix). `claude-sonnet-4` resolves to the profile
    `us.anthropic.claude-sonnet-4-20250514-v1:0`, so counting must go to
    `anthropic.claude-sonnet-4-20250514-v1:0` for the alias to work on this operation."""
    resp = post(dc, "/model/claude-sonnet-4/count-tokens", COUNT_INVOKE_BODY)
    rec = fakes.bedrock.last()
    assert_relayed(rec, up_path("anthropic.claude-sonnet-4-20250514-v1:0", "count-tokens"), COUNT_INVOKE_BODY, "count-tokens")
    assert resp.status == 200 and resp.body == rec.response_body, resp


def test_stream_written_in_small_pieces_arrives_byte_for_byte(dc, fakes):
    """The fake writes its event stream 7 bytes at a time (frames split everywhere): the client
    gets exactly the same bytes."""
    resp = post(dc, f"/model/{SONNET4}/invoke-with-response-stream", CLAUDE_BODY,
                {"x-fake-chunk-bytes": "7", "x-fake-chunk-delay-ms": "1"})
    assert resp.status == 200, resp
    rec = fakes.bedrock.last()
    assert resp.body == rec.response_body and len(rec.response_body) > 500
    events = list(es.iter_chunk_events(resp.body))
    assert events[-1]["type"] == "message_stop" and "amazon-bedrock-invocationMetrics" in events[-1]


def test_large_chunked_upload_arrives_byte_for_byte(dc, fakes):
    """A 1.5 MB Converse body uploaded chunked in paced pieces reaches Bedrock unchanged, length-
    delimited."""
    text = "".join(f"line {i:06d} of a long document.\n" for i in range(48000))
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": text}]}]}).encode()
    assert len(body) > 1_500_000
    resp = post(dc, f"/model/{NOVA}/converse", paced(split_bytes(body, 12), 0.01))
    assert resp.status == 200, resp
    assert_relayed(fakes.bedrock.last(), up_path(NOVA, "converse"), body, "converse")


def test_inference_profiles_answered_by_the_gateway(dc, fakes):
    resp = dc.request("GET", "/inference-profiles?type=SYSTEM_DEFINED")
    assert resp.status == 200 and resp.json() == {"inferenceProfileSummaries": []}, resp
    assert_aws_error(dc.request("GET", "/inference-profiles", key=None), 403, "UnrecognizedClientException")
    assert fakes.upstream_requests() == [] and fakes.sidecar.requests == []


# ---------------------------------------------------------------- headers


def test_client_credentials_stripped_bedrock_headers_forwarded(dc, fakes):
    client_headers = {
        "x-amz-security-token": "client-token",
        "x-amz-date": "20200101T000000Z",
        "x-amz-content-sha256": "0" * 64,
        "x-amz-target": "client.target",
        "x-amz-user-agent": "client-ua",
        "x-amzn-trace-id": "Root=1-client",
        "x-amzn-requestid": "client-request-id",
        "x-api-key": CLIENT_KEYS[1],
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "interleaved-thinking-2025-05-14",
        "x-target-format": "openai",
        "x-amzn-bedrock-trace": "ENABLED",
        "x-amzn-bedrock-guardrailidentifier": "gr-door-1",
        "x-amzn-bedrock-guardrailversion": "3",
        "x-amzn-bedrock-performanceconfig-latency": "optimized",
        "amz-sdk-invocation-id": "5e0c2c10-0b7e-4f4a-9d21-1d1c6d2bf001",
    }
    resp = post(dc, f"/model/{HAIKU}/invoke", CLAUDE_BODY, client_headers)
    assert resp.status == 200, resp
    rec = fakes.bedrock.last()
    assert_relayed(rec, up_path(HAIKU, "invoke"), CLAUDE_BODY, "invoke")
    assert rec.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={DEFAULT_ACCESS_KEY}/")
    assert rec.headers["x-amz-date"] != "20200101T000000Z"
    assert rec.headers.get("x-amz-content-sha256") != "0" * 64
    for name in ("x-amz-target", "x-amz-user-agent", "x-amzn-trace-id", "x-amzn-requestid", "x-api-key",
                 "anthropic-version", "anthropic-beta", "x-target-format"):
        assert name not in rec.headers, f"the client's {name} reached Bedrock"
    for name, value in client_headers.items():
        if name.startswith("x-amzn-bedrock-"):
            assert rec.headers.get(name) == value, (name, rec.headers.get(name))
    assert rec.headers.get("amz-sdk-invocation-id") == client_headers["amz-sdk-invocation-id"]
    assert not any(h.startswith("x-amzn-bedrock-") for h in rec.sigv4.signed_headers), rec.sigv4.signed_headers
    assert rec.headers["host"] == f"127.0.0.1:{fakes.bedrock.port}"


# ---------------------------------------------------------------- usage


def _tokens(envoy, model_id: str) -> tuple:
    seg = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in model_id)
    stats = envoy.stats(f"unigate.")

    def val(suffix):
        v = stats.get(f"wasmcustom.unigate.{suffix}", "0")
        return int(v) if v.isdigit() else 0

    return val(f"chat.bedrock.{seg}.200"), val(f"tokens.{seg}.input"), val(f"tokens.{seg}.output")


def _reported_usage(op: str, rec) -> tuple:
    """(input, output) tokens as the fake's answer reported them."""
    if op == "invoke":
        h = rec.response_headers
        return int(h["x-amzn-bedrock-input-token-count"]), int(h["x-amzn-bedrock-output-token-count"])
    if op == "invoke-with-response-stream":
        m = list(es.iter_chunk_events(rec.response_body))[-1]["amazon-bedrock-invocationMetrics"]
        return m["inputTokenCount"], m["outputTokenCount"]
    if op == "converse":
        u = json.loads(rec.response_body)["usage"]
        return u["inputTokens"], u["outputTokens"]
    msgs, _ = es.decode_messages(rec.response_body)
    meta = [json.loads(m["payload"]) for m in msgs if m["headers"][":event-type"] == "metadata"]
    return meta[-1]["usage"]["inputTokens"], meta[-1]["usage"]["outputTokens"]


@pytest.mark.parametrize(
    "model,op,body",
    [pytest.param(HAIKU, "invoke", CLAUDE_BODY, id="invoke-headers"),
     pytest.param(SONNET4, "invoke-with-response-stream", CLAUDE_BODY, id="invoke-stream-metrics"),
     pytest.param(NOVA, "converse", CONVERSE_BODY, id="converse-usage"),
     pytest.param(NOVA_LITE, "converse-stream", CONVERSE_BODY, id="converse-stream-metadata")],
)
def test_usage_recorded_in_metrics(door_gw, dc, fakes, model, op, body):
    before = _tokens(door_gw, model)
    resp = post(dc, f"/model/{model}/{op}", body)
    assert resp.status == 200, resp
    n_in, n_out = _reported_usage(op, fakes.bedrock.last())
    assert n_in > 0 and n_out > 0
    want = (1, n_in, n_out)
    deadline = time.monotonic() + 5  # counters are written when Envoy logs the finished stream
    while True:
        delta = tuple(a - b for a, b in zip(_tokens(door_gw, model), before))
        if delta == want or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert delta == want, (delta, want)


def _wait_for_fresh_minute():
    """Limits use fixed one-minute windows: do not straddle a minute boundary."""
    import datetime

    now = datetime.datetime.now()
    if now.second >= 50:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.2)


def test_stream_usage_counts_against_tpm(door_gw, dc, fakes):
    """tpm=30: one InvokeModel stream whose invocation metrics report more than 30 tokens spends
    the budget (read from the relayed frames), so the key's next call is a gateway 429
    ThrottlingException that never reaches Bedrock."""
    _wait_for_fresh_minute()
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 64,
                       "messages": [{"role": "user", "content": "spend the budget " * 20}]}).encode()
    resp = post(dc, f"/model/{SONNET4}/invoke-with-response-stream", body, key=TPM_KEY)
    assert resp.status == 200, resp
    n_in, n_out = _reported_usage("invoke-with-response-stream", fakes.bedrock.last())
    assert n_in + n_out > 30
    slipped = 0  # the charge lands when Envoy logs the stream, a moment after the last byte
    deadline = time.monotonic() + 5
    while True:
        r = post(dc, f"/model/{NOVA}/converse", CONVERSE_BODY, key=TPM_KEY)
        if r.status != 200:
            break
        slipped += 1
        assert time.monotonic() < deadline, "the stream's tokens were never charged"
        time.sleep(0.05)
    assert_aws_error(r, 429, "ThrottlingException")
    assert 0 < int(r.headers["retry-after"]) <= 60
    assert len(fakes.bedrock.requests) == 1 + slipped


# ---------------------------------------------------------------- errors


ERRORS = [
    # (method, path, body, key, status, AWS error name)
    pytest.param("POST", f"/model/{NOVA}/converse", CONVERSE_BODY, None, 403, "UnrecognizedClientException", id="no-key"),
    pytest.param("POST", f"/model/{NOVA}/converse", CONVERSE_BODY, "not-a-key", 403, "UnrecognizedClientException", id="wrong-key"),
    pytest.param("POST", f"/model/{HAIKU}/invoke", CLAUDE_BODY, NOVA_ONLY_KEY, 403, "AccessDeniedException", id="model-not-allowed"),
    pytest.param("POST", "/model/claude-3-haiku/invoke", CLAUDE_BODY, NOVA_ONLY_KEY, 403, "AccessDeniedException",
                 id="alias-not-allowed"),
    pytest.param("GET", f"/model/{NOVA}/converse", None, KEY, 404, "UnknownOperationException", id="wrong-method"),
    pytest.param("POST", "/model/no-such-model/converse", CONVERSE_BODY, KEY, 404, "ResourceNotFoundException", id="unknown-model"),
    pytest.param("POST", "/model/gpt-4o/converse", CONVERSE_BODY, KEY, 404, "ResourceNotFoundException", id="openai-model"),
    pytest.param("POST", f"/model/{NOVA}/converse", b'{"messages": [', KEY, 400, "ValidationException", id="bad-json"),
    pytest.param("POST", f"/model/{NOVA}/converse", b"", KEY, 400, "ValidationException", id="empty-body"),
    pytest.param("POST", f"/model/{NOVA}/converse", b" \n ", KEY, 400, "ValidationException", id="whitespace-body"),
    pytest.param("POST", "/model/../converse", CONVERSE_BODY, KEY, 400, "ValidationException", id="dotdot"),
    pytest.param("POST", "/model/%2E%2E/converse", CONVERSE_BODY, KEY, 400, "ValidationException", id="dotdot-encoded"),
    pytest.param("POST", f"/model/{NOVA}/..%2F..%2Fconverse", CONVERSE_BODY, KEY, 404, "ResourceNotFoundException",
                 id="dotdot-op"),
    pytest.param("POST", "/model/us.anthropic.x%2F..%2F..%2Fconverse/invoke", CLAUDE_BODY, KEY, 400, "ValidationException",
                 id="dotdot-inside-id"),
    pytest.param("POST", "/inference-profiles", b"{}", KEY, 404, "UnknownOperationException", id="profiles-wrong-method"),
]


@pytest.mark.parametrize("method,path,body,key,status,name", ERRORS)
def test_errors_are_aws_errors_and_never_reach_bedrock(dc, fakes, method, path, body, key, status, name):
    resp = dc.request(method, path, body, key=key)
    message = assert_aws_error(resp, status, name)
    for k in (*CLIENT_KEYS, NOVA_ONLY_KEY, "not-a-key"):
        assert k not in message
    assert fakes.upstream_requests() == [] and fakes.sidecar.requests == []


# ---------------------------------------------------------------- faults


def on_one_connection(client, method, path, body, headers, expect):
    """The fault, then a normal call on the same keep-alive connection."""
    conn = client.connection()
    try:
        resp = client.request(method, path, body, headers=headers, conn=conn)
        expect(resp)
        assert resp.headers.get("connection", "").lower() != "close", resp
        sock = conn.sock
        assert sock is not None, "the connection was closed after the fault"
        ok = client.request("POST", f"/model/{NOVA}/converse", CONVERSE_BODY, conn=conn,
                            headers={"x-fake-status": None})
        assert ok.status == 200, ok
        assert conn.sock is sock, "the client had to reconnect for the next request"
        return resp
    finally:
        conn.close()


def steer(**kw):
    return {f"x-fake-{k.replace('_', '-')}": str(v) for k, v in kw.items()}


def _raw_exchange(port, path: str, body: bytes, headers: dict, timeout=8.0):
    """One request on a fresh connection, read until the server closes it or the body ends:
    (status, headers, body bytes, how it ended)."""
    head = [f"POST {path} HTTP/1.1", "Host: gw", f"Authorization: Bearer {KEY}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        conn = http.client.HTTPResponse(s)
        conn.begin()
        hdrs = {k.lower(): v for k, v in conn.getheaders()}
        try:
            data, ended = conn.read(), "complete"
        except http.client.IncompleteRead as e:
            data, ended = e.partial, "incomplete"
        except (ConnectionResetError, http.client.HTTPException) as e:
            data, ended = b"", f"error:{type(e).__name__}"
        return conn.status, hdrs, data, ended


LONG_CLAUDE = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 400,
                          "messages": [{"role": "user", "content": "a long answer " * 40}]}).encode()
LONG_CONVERSE = json.dumps({"messages": [{"role": "user", "content": [{"text": "a long answer " * 40}]}]}).encode()

RESET_STREAMS = [
    pytest.param(SONNET4, "invoke-with-response-stream", LONG_CLAUDE, "0", id="invoke-stream-after-headers"),
    pytest.param(SONNET4, "invoke-with-response-stream", LONG_CLAUDE, "1", id="invoke-stream-1-byte"),
    pytest.param(SONNET4, "invoke-with-response-stream", LONG_CLAUDE, "150", id="invoke-stream-mid-frame"),
    pytest.param(SONNET4, "invoke-with-response-stream", LONG_CLAUDE, "900", id="invoke-stream-later"),
    pytest.param(NOVA, "converse-stream", LONG_CONVERSE, "100", id="converse-stream-mid-frame"),
]


@pytest.mark.parametrize("model,op,body,reset", RESET_STREAMS)
def test_upstream_reset_mid_stream(door_gw, dc, fakes, model, op, body, reset):
    """The upstream connection resets after the stream started (the same limitation as the chat
    door's streams): the client has status 200 and an event-stream body that is a prefix of
    what Bedrock sent, and the chunked body is never terminated (the SDK's parser sees a
    truncated stream, never a complete one). A new connection works at once."""
    status, hdrs, data, ended = _raw_exchange(door_gw.port, f"/model/{model}/{op}", body, steer(reset=reset, chunk_delay_ms=5))
    assert status == 200 and hdrs["content-type"] == "application/vnd.amazon.eventstream", (status, hdrs)
    assert ended != "complete", f"the stream ended as if it were complete: {data[-200:]!r}"
    rec = fakes.bedrock.last()
    assert rec.response_status == 200 and len(rec.response_body) == int(reset)
    assert rec.response_body.startswith(data), "the client got bytes Bedrock never sent"
    es.decode_messages(data)  # whatever frames arrived are intact (a torn last one is left undecoded)
    assert post(dc, f"/model/{NOVA}/converse", CONVERSE_BODY).status == 200


@pytest.mark.parametrize(
    "model,op,body",
    [pytest.param(HAIKU, "invoke", LONG_CLAUDE, id="invoke"), pytest.param(NOVA, "converse", LONG_CONVERSE, id="converse")],
)
def test_upstream_reset_mid_body(door_gw, dc, fakes, model, op, body):
    """A JSON answer cut by a reset: its headers (with Bedrock's content-length) were relayed
    already, so the client sees a short body and the connection closes — never a complete
    answer. A new connection works at once."""
    status, hdrs, data, ended = _raw_exchange(door_gw.port, f"/model/{model}/{op}", body, steer(reset="true"))
    rec = fakes.bedrock.last()
    assert status == 200 and ended != "complete", (status, ended, data[:200])
    assert int(hdrs["content-length"]) == len(rec.response_body) > len(data)
    assert rec.response_body.startswith(data)
    assert post(dc, f"/model/{NOVA}/converse", CONVERSE_BODY).status == 200


@pytest.mark.parametrize(
    "model,op,body",
    [pytest.param(HAIKU, "invoke", CLAUDE_BODY, id="invoke"),
     pytest.param(NOVA, "converse-stream", CONVERSE_BODY, id="converse-stream")],
)
def test_slow_first_byte_beyond_the_timeout(dc, fakes, model, op, body):
    """Bedrock silent beyond the route's idle timeout: the gateway answers as Bedrock does
    when a model takes too long, 408 ModelTimeoutException (nothing was relayed yet, so the
    stream operation gets a JSON error too); the connection stays usable."""

    def expect(resp):
        msg = assert_aws_error(resp, 408, "ModelTimeoutException")
        assert "timeout" in msg.lower()

    on_one_connection(dc, "POST", f"/model/{model}/{op}", body, steer(delay_ms=IDLE_S * 1000 + 1500), expect)
    assert fakes.bedrock.requests[0].response_status == 200


def test_slow_but_steady_stream_is_not_cut(dc, fakes):
    """Bedrock writes its stream 250 bytes every 200 ms, longer than the idle timeout in total
    but never silent that long: the stream is relayed complete."""
    piece, pause_s = 250, 0.2
    resp = post(dc, f"/model/{SONNET4}/invoke-with-response-stream", CLAUDE_BODY,
                steer(delay_ms=int(pause_s * 1000), chunk_bytes=piece, chunk_delay_ms=int(pause_s * 1000)))
    rec = fakes.bedrock.last()
    pauses = -(-len(rec.response_body) // piece) - 1
    assert pauses * pause_s > IDLE_S * 1.3, f"only {pauses} pauses: the stream does not outlast the idle timeout"
    assert resp.status == 200 and resp.body == rec.response_body


BEDROCK_ERRORS = [
    # (model, op, upstream status, x-amzn-ErrorType) — relayed exactly as Bedrock sent them
    pytest.param(NOVA, "converse", 429, "ThrottlingException", id="throttling-converse"),
    pytest.param(SONNET4, "invoke-with-response-stream", 429, "ThrottlingException", id="throttling-stream"),
    pytest.param(HAIKU, "invoke", 400, "ValidationException", id="validation"),
    pytest.param(HAIKU, "invoke", 403, "AccessDeniedException", id="access-denied"),
    pytest.param(NOVA, "converse", 404, "ResourceNotFoundException", id="not-found"),
    pytest.param(NOVA, "converse-stream", 408, "ModelTimeoutException", id="model-timeout"),
    pytest.param(HAIKU, "invoke", 424, "ModelErrorException", id="model-error"),
    pytest.param(NOVA, "converse", 400, "ServiceQuotaExceededException", id="quota"),
    pytest.param(NOVA, "converse", 500, "InternalServerException", id="internal"),
    pytest.param(NOVA, "converse", 503, "ServiceUnavailableException", id="unavailable"),
    pytest.param(HAIKU, "count-tokens", 429, "ThrottlingException", id="throttling-count-tokens"),
]


@pytest.mark.parametrize("model,op,status,error_type", BEDROCK_ERRORS)
def test_bedrock_errors_relayed_unchanged(dc, fakes, model, op, status, error_type):
    body = {"converse": CONVERSE_BODY, "converse-stream": CONVERSE_BODY, "count-tokens": COUNT_INVOKE_BODY}.get(op, CLAUDE_BODY)

    def expect(resp):
        rec = fakes.bedrock.requests[0]
        assert rec.sigv4.ok and rec.response_status == status
        assert resp.status == status, resp
        assert resp.body == rec.response_body
        # The whole header, namespace included, and Bedrock's request id.
        assert resp.headers.get("x-amzn-errortype") == rec.response_headers["x-amzn-errortype"]
        assert resp.headers["x-amzn-errortype"].split(":", 1)[0] == error_type
        assert resp.headers.get("x-amzn-requestid") == rec.response_headers["x-amzn-requestid"]

    on_one_connection(dc, "POST", f"/model/{model}/{op}", body, steer(status=status, error_type=error_type), expect)


CORRUPT_FRAME = bytearray(es.event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}))
CORRUPT_FRAME[-1] ^= 0xFF
GARBAGE = [
    # (model, op, steering) — whatever Bedrock answers is relayed as it is, status included
    pytest.param(NOVA, "converse", steer(status=200, body="garbage, not JSON", content_type="text/plain"), id="garbage-200"),
    pytest.param(NOVA, "converse", steer(status=503, body="<html><body>503 Service Unavailable</body></html>",
                                         content_type="text/html"), id="html-503"),
    pytest.param(HAIKU, "invoke", steer(status=500, body='{"oops": true}'), id="json-500-no-error-type"),
    pytest.param(HAIKU, "invoke", steer(status=200, body='{"content": "not a Claude message"}'), id="wrong-shape-200"),
    pytest.param(SONNET4, "invoke-with-response-stream",
                 steer(status=200, body="not an event stream", content_type="application/vnd.amazon.eventstream"),
                 id="stream-garbage-bytes"),
    pytest.param(NOVA, "converse-stream", {"x-fake-stream-events": json.dumps(
        [{"event": "messageStart", "payload": {"role": "assistant"}}, {"raw_hex": bytes(CORRUPT_FRAME).hex()},
         {"event": "messageStop", "payload": {"stopReason": "end_turn"}}])}, id="stream-bad-crc"),
    pytest.param(SONNET4, "invoke-with-response-stream", {"x-fake-stream-events": json.dumps(
        [{"chunk": {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 2, "output_tokens": 1}}}},
         {"exception": "modelStreamErrorException", "payload": {"message": "model failed mid-stream"}}])},
        id="stream-exception-frame"),
]


@pytest.mark.parametrize("model,op,headers", GARBAGE)
def test_upstream_garbage_relayed_unchanged(dc, fakes, model, op, headers):
    body = CONVERSE_BODY if op.startswith("converse") else CLAUDE_BODY

    def expect(resp):
        rec = fakes.bedrock.requests[0]
        assert resp.status == rec.response_status, resp
        assert resp.body == rec.response_body, "the answer was not relayed byte for byte"
        assert resp.content_type == rec.response_headers["content-type"]
        assert "x-amzn-errortype" not in resp.headers

    on_one_connection(dc, "POST", f"/model/{model}/{op}", body, headers, expect)


CREDENTIAL_FAILURES = [
    pytest.param("wrong-secret", None, "InvalidSignatureException", id="wrong-secret"),
    pytest.param("unknown-key", None, "UnrecognizedClientException", id="unknown-access-key"),
    pytest.param(None, "ExpiredTokenException", "ExpiredTokenException", id="expired-token"),
    pytest.param(None, "IncompleteSignatureException", "IncompleteSignatureException", id="incomplete-signature"),
]


@pytest.mark.parametrize("op", ["invoke", "converse-stream"])
@pytest.mark.parametrize("fake_creds,steered,upstream_error", CREDENTIAL_FAILURES)
def test_credential_failure_at_bedrock_is_internal_server_error(dc, fakes, op, fake_creds, steered, upstream_error):
    """Bedrock refuses the gateway's own credentials: the client's key is not at fault, so the
    client gets 500 InternalServerException saying so, without Bedrock's diagnostics (canonical
    request, string to sign) or any secret."""
    if fake_creds == "wrong-secret":
        fakes.bedrock.set_credentials(DEFAULT_ACCESS_KEY, "not-the-gateway-secret", DEFAULT_TOKEN)
    elif fake_creds == "unknown-key":
        fakes.bedrock.set_credentials("AKIDSOMEONEELSE00001", DEFAULT_SECRET, DEFAULT_TOKEN)
    headers = steer(status=403, error_type=steered) if steered else {}
    model, body = (HAIKU, CLAUDE_BODY) if op == "invoke" else (NOVA, CONVERSE_BODY)

    def expect(resp):
        rec = fakes.bedrock.requests[0]
        assert rec.response_status == 403
        assert rec.response_headers["x-amzn-errortype"].split(":", 1)[0] == upstream_error
        msg = assert_aws_error(resp, 500, "InternalServerException")
        assert "gateway" in msg and "credentials" in msg and upstream_error in msg, msg
        assert "Canonical" not in msg and "String-to-Sign" not in msg, msg
        for secret in (DEFAULT_SECRET, DEFAULT_TOKEN, "not-the-gateway-secret"):
            assert secret not in resp.body.decode()
        fakes.bedrock.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN)  # for the next call

    on_one_connection(dc, "POST", f"/model/{model}/{op}", body, headers, expect)


@pytest.fixture(scope="module")
def refused_gw(start_envoy, fakes):
    e = start_envoy("bedrock-door-refused", default_plugin_config(fakes), default_env(),
                    default_clusters(fakes, bedrock=closed_port()))
    e.watch = VmWatch(e)
    return e


@pytest.mark.parametrize("op,body", [("invoke", CLAUDE_BODY), ("converse-stream", CONVERSE_BODY)])
def test_upstream_refused_is_an_aws_error(refused_gw, fakes, op, body):
    c = Client(refused_gw.url)
    resp = post(c, f"/model/{HAIKU if op == 'invoke' else NOVA}/{op}", body)
    msg = assert_aws_error(resp, 500, "InternalServerException")
    assert "connect" in msg.lower(), msg
    assert fakes.bedrock.requests == []
    refused_gw.watch.check()


def _wait_idle(envoy, timeout=5.0):
    names = ["http.ingress.downstream_rq_active", "cluster.bedrock.upstream_rq_active"]
    deadline = time.monotonic() + timeout
    while True:
        stats = envoy.stats("_rq_active")
        vals = {n: int(stats[n]) for n in names}
        if not any(vals.values()):
            return
        assert time.monotonic() < deadline, f"requests still active after the client went away: {vals}"
        time.sleep(0.05)


@pytest.mark.parametrize("op,rst", [("invoke-with-response-stream", True), ("converse-stream", False)])
def test_client_disconnect_mid_stream(door_gw, dc, fakes, op, rst):
    """The client goes away in the middle of a relayed stream: Envoy drops the upstream request
    too, nothing traps, and the next requests work."""
    import struct

    model, body = (SONNET4, LONG_CLAUDE) if op.startswith("invoke") else (NOVA, LONG_CONVERSE)
    s = socket.create_connection(("127.0.0.1", door_gw.port), timeout=10)
    head = [f"POST /model/{model}/{op} HTTP/1.1", "Host: gw", f"Authorization: Bearer {KEY}",
            f"Content-Length: {len(body)}", "x-fake-chunk-delay-ms: 150"]
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    got = b""
    while b"\r\n\r\n" not in got or len(got) < 400:
        piece = s.recv(65536)
        assert piece, got[:300]
        got += piece
    assert got.split(b"\r\n", 1)[0].endswith(b" 200 OK"), got[:200]
    if rst:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    _wait_idle(door_gw)
    assert post(dc, f"/model/{NOVA}/converse", CONVERSE_BODY).status == 200
    assert post(dc, f"/model/{SONNET4}/invoke-with-response-stream", CLAUDE_BODY).status == 200


def test_no_vm_trapped_in_any_door_envoy(door_gw, refused_gw):
    for e in (door_gw, refused_gw):
        e.watch.check()
        assert e.proc.poll() is None, f"Envoy {e.name} exited"
