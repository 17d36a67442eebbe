"""Self-checks of the fake upstreams (no Envoy): the event-stream encoder against the worked
byte examples in protocols.md §1.5 and botocore's decoder, the SigV4 oracle against botocore's
signer and the §4.5 vector, and the fakes against the official SDKs."""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import time

import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeBedrock, FakeOpenAI, FakeSidecar
from fakes import eventstream as es
from fakes.sigv4 import verify

# ---------------------------------------------------------------- event stream

WORKED = [
    pytest.param(
        lambda: es.event_frame("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcd"}'),
        159, 87, 0xC37BABFF, 0xF2ACE5FF, id="converse-contentBlockDelta",
    ),
    pytest.param(
        lambda: es.event_frame(
            "chunk",
            b'{"bytes":"eyJ0eXBlIjoiY29udGVudF9ibG9ja19kZWx0YSIsImluZGV4IjowLCJkZWx0YSI6eyJ0eXBlIjoidGV4dF9kZWx0YSIsInRleHQiOiJIZWxsbyJ9fQ==","p":"abcdefgh"}',
        ),
        234, 75, 0xE648980F, 0xC85DCA05, id="invoke-chunk",
    ),
    pytest.param(
        lambda: es.exception_frame("throttlingException", b'{"message":"Too many requests, please wait before trying again."}'),
        178, 97, 0x3590D5D3, 0xE8FFB26A, id="throttling-exception",
    ),
]


@pytest.mark.parametrize("make,total,hlen,pcrc,mcrc", WORKED)
def test_eventstream_worked_examples(make, total, hlen, pcrc, mcrc):
    f = make()
    assert len(f) == total
    assert int.from_bytes(f[0:4], "big") == total
    assert int.from_bytes(f[4:8], "big") == hlen
    assert int.from_bytes(f[8:12], "big") == pcrc
    assert int.from_bytes(f[-4:], "big") == mcrc


def test_eventstream_full_bytes_of_converse_example():
    f = es.event_frame("contentBlockDelta", b'{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcd"}')
    expected = bytes.fromhex(
        "0000009f00000057c37babff0b3a6576656e742d74797065070011636f6e74656e74426c6f636b44656c7461"
        "0d3a636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e0d3a6d6573736167652d74797065"
        "0700056576656e74"
    ) + b'{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"abcd"}' + bytes.fromhex("f2ace5ff")
    assert f == expected


def test_eventstream_sanity_vector():
    f = es.encode_message([("content-type", "application/json")], b"{'foo':'bar'}")
    assert f.hex() == (
        "0000003d0000002007fd83960c636f6e74656e742d747970650700106170706c69636174696f6e2f6a736f6e"
        "7b27666f6f273a27626172277d8d9c08b1"
    )


def test_eventstream_decoded_by_botocore_at_every_split():
    frames = [
        es.event_frame("messageStart", {"role": "assistant"}),
        es.chunk_frame({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "héllo ✓"}}),
        es.exception_frame("throttlingException", {"message": "slow down"}),
        es.error_frame("InternalFailure", "boom"),
    ]
    blob = b"".join(frames)
    for split in range(0, len(blob) + 1, 7):
        buf = EventStreamBuffer()
        msgs = []
        for part in (blob[:split], blob[split:]):
            buf.add_data(part)
            msgs += list(buf)
        assert len(msgs) == 4
        h = [m.headers for m in msgs]
        assert h[0][":event-type"] == "messageStart" and h[0][":message-type"] == "event"
        assert json.loads(base64.b64decode(json.loads(msgs[1].payload)["bytes"]))["delta"]["text"] == "héllo ✓"
        assert h[2][":exception-type"] == "throttlingException"
        assert h[3][":error-code"] == "InternalFailure" and msgs[3].payload == b""
    # our own decoder agrees
    decoded, rest = es.decode_messages(blob)
    assert rest == b"" and [d["headers"].get(":message-type") for d in decoded] == ["event", "event", "exception", "error"]


def test_eventstream_decoder_rejects_corruption():
    f = bytearray(es.event_frame("chunk", {"bytes": ""}))
    f[20] ^= 1
    with pytest.raises(es.DecodeError):
        es.decode_messages(bytes(f))


# ---------------------------------------------------------------- SigV4 oracle

CREDS = {DEFAULT_ACCESS_KEY: (DEFAULT_SECRET, DEFAULT_TOKEN)}


def _botocore_signed(path: str, body: bytes, host="127.0.0.1:9", secret=DEFAULT_SECRET, token=DEFAULT_TOKEN, region="us-east-1", service="bedrock"):
    req = AWSRequest(method="POST", url=f"http://{host}{path}", data=body, headers={"content-type": "application/json"})
    SigV4Auth(Credentials(DEFAULT_ACCESS_KEY, secret, token), service, region).add_auth(req)
    headers = {k.lower(): v for k, v in req.headers.items()}
    headers["host"] = host
    return headers


def test_sigv4_accepts_botocore_signature_with_encoded_colon():
    path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
    h = _botocore_signed(path, b"{}")
    r = verify("POST", path, h, b"{}", CREDS, "us-east-1")
    assert r.ok, r
    assert "/model/anthropic.claude-3-haiku-20240307-v1%253A0/invoke" in r.canonical_request


@pytest.mark.parametrize(
    "mutate,kind",
    [
        pytest.param(lambda h, b: (h, b + b" "), "InvalidSignatureException", id="body-changed"),
        pytest.param(lambda h, b: ({k: v for k, v in h.items() if k != "authorization"}, b), "MissingAuthenticationTokenException", id="no-auth"),
        pytest.param(lambda h, b: ({**h, "authorization": h["authorization"].replace(DEFAULT_ACCESS_KEY, "AKIDOTHER")}, b), "UnrecognizedClientException", id="unknown-key"),
        pytest.param(lambda h, b: ({**h, "x-amz-security-token": "other"}, b), "UnrecognizedClientException", id="wrong-token"),
        pytest.param(lambda h, b: ({**h, "host": "127.0.0.1:10"}, b), "InvalidSignatureException", id="host-changed"),
        pytest.param(lambda h, b: ({**h, "authorization": h["authorization"].replace("/bedrock/", "/bedrock-runtime/")}, b), "InvalidSignatureException", id="wrong-service"),
        pytest.param(lambda h, b: ({**h, "authorization": "garbage"}, b), "IncompleteSignatureException", id="malformed"),
    ],
)
def test_sigv4_rejections(mutate, kind):
    path = "/model/amazon.nova-pro-v1%3A0/converse"
    h, b = mutate(_botocore_signed(path, b"{}"), b"{}")
    r = verify("POST", path, h, b, CREDS, "us-east-1")
    assert not r.ok and r.error_type == kind, r


def test_sigv4_wrong_secret_and_single_encoded_canonical_path():
    path = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
    h = _botocore_signed(path, b"{}", secret="not-the-secret")
    assert verify("POST", path, h, b"{}", CREDS, "us-east-1").error_type == "InvalidSignatureException"


def test_sigv4_rejects_stale_date_and_content_hash_mismatch():
    path = "/model/amazon.titan-text-express-v1/invoke"
    h = _botocore_signed(path, b"{}")
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=6)
    assert "expired" in verify("POST", path, h, b"{}", CREDS, "us-east-1", now=later).message
    h2 = {**h, "x-amz-content-sha256": "0" * 64}
    assert not verify("POST", path, h2, b"{}", CREDS, "us-east-1").ok


def test_sigv4_protocols_doc_vector():
    """protocols.md §4.5: the documented signature verifies with the documented inputs."""
    body = b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}'
    headers = {
        "content-type": "application/json",
        "host": "bedrock-runtime.us-east-1.amazonaws.com",
        "x-amz-content-sha256": "bfe9595c6d3fa2509aa43ae91038e137bdd65ac5d9fe6b5a6f3d86a876b1ce96",
        "x-amz-date": "20250101T120000Z",
        "x-amz-security-token": "IQoJb3JpZ2luX2VjEXAMPLETOKEN",
        "authorization": "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20250101/us-east-1/bedrock/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
        "Signature=84ed5a3019f213e913132aa7bb09c34a83a53b116124f1f2e4c98366cdca5ba3",
    }
    r = verify(
        "POST", "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke", headers, body,
        {"AKIDEXAMPLE": ("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "IQoJb3JpZ2luX2VjEXAMPLETOKEN")}, "us-east-1",
        now=dt.datetime(2025, 1, 1, 12, 1, tzinfo=dt.timezone.utc),
    )
    assert r.ok, r.message
    assert r.string_to_sign.endswith("41c9774532a97281db5264995fca6161d2a911e01e6f02248e0324b0001f71e8")


# ---------------------------------------------------------------- fakes vs. real SDK clients


@pytest.fixture(scope="module")
def bedrock_fake():
    with FakeBedrock() as b:
        yield b


@pytest.fixture
def brt(bedrock_fake):
    bedrock_fake.clear()
    s = botocore.session.get_session()
    return s.create_client(
        "bedrock-runtime", region_name="us-east-1", endpoint_url=bedrock_fake.url,
        aws_access_key_id=DEFAULT_ACCESS_KEY, aws_secret_access_key=DEFAULT_SECRET, aws_session_token=DEFAULT_TOKEN,
        config=Config(retries={"max_attempts": 1}, read_timeout=10, connect_timeout=5),
    )


def test_fake_bedrock_with_botocore_client(brt, bedrock_fake):
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    r = brt.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=json.dumps(body))
    out = json.loads(r["body"].read())
    assert out["content"] == [{"type": "text", "text": "echo: hi"}] and out["model"] == "claude-3-haiku-20240307"
    assert bedrock_fake.last().path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
    assert bedrock_fake.last().sigv4.ok
    r = brt.converse(modelId="arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-pro-v1:0",
                     messages=[{"role": "user", "content": [{"text": "yo"}]}])
    assert r["output"]["message"]["content"] == [{"text": "echo: yo"}]
    assert "%2Fus.amazon.nova-pro-v1%3A0/converse" in bedrock_fake.last().path
    r = brt.converse_stream(modelId="amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": "a b"}]}])
    events = list(r["stream"])
    assert "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e) == "echo: a b"
    assert events[-1]["metadata"]["usage"]["totalTokens"] > 0
    r = brt.invoke_model_with_response_stream(modelId="us.anthropic.claude-sonnet-4-20250514-v1:0", body=json.dumps(body))
    chunks = [json.loads(e["chunk"]["bytes"]) for e in r["body"]]
    assert [c["type"] for c in chunks][0] == "message_start" and chunks[-1]["type"] == "message_stop"
    assert "".join(c["delta"]["text"] for c in chunks if c["type"] == "content_block_delta") == "echo: hi"
    r = brt.invoke_model_with_response_stream(modelId="amazon.titan-text-express-v1", body=json.dumps({"inputText": "User: x y\nBot:"}))
    chunks = [json.loads(e["chunk"]["bytes"]) for e in r["body"]]
    assert "".join(c["outputText"] for c in chunks) == "echo: x y" and chunks[-1]["completionReason"] == "FINISH"


def test_fake_bedrock_rejects_like_aws(brt, bedrock_fake):
    body = {"model": "x", "anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(brt.exceptions.ValidationException, match=r"extraneous key \[model\]"):
        brt.invoke_model(modelId="anthropic.claude-3-haiku-20240307-v1:0", body=json.dumps(body))
    bedrock_fake.set_credentials(DEFAULT_ACCESS_KEY, "another-secret", DEFAULT_TOKEN)
    try:
        with pytest.raises(Exception) as ei:
            brt.converse(modelId="amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": "x"}]}])
        assert ei.value.response["Error"]["Code"] == "InvalidSignatureException"
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    finally:
        bedrock_fake.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN)


def test_fake_bedrock_steering_and_stream_split(brt, bedrock_fake):
    def add_headers(request, **kw):
        request.headers["x-fake-chunk-bytes"] = "3"
        request.headers["x-fake-chunk-delay-ms"] = "0"

    brt.meta.events.register("before-send.bedrock-runtime.ConverseStream", add_headers)
    r = brt.converse_stream(modelId="amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": "split me"}]}])
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in r["stream"] if "contentBlockDelta" in e)
    assert text == "echo: split me"

    def throttle(request, **kw):
        request.headers["x-fake-status"] = "429"
        request.headers["x-fake-error-type"] = "ThrottlingException"

    brt.meta.events.register("before-send.bedrock-runtime.Converse", throttle)
    with pytest.raises(brt.exceptions.ThrottlingException):
        brt.converse(modelId="amazon.nova-pro-v1:0", messages=[{"role": "user", "content": [{"text": "x"}]}])


def test_fake_openai_with_openai_sdk():
    openai = pytest.importorskip("openai")
    with FakeOpenAI(api_key="sk-x") as oa:
        c = openai.OpenAI(api_key="sk-x", base_url=f"{oa.url}/v1", timeout=10, max_retries=0)
        r = c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "ping"}])
        assert r.choices[0].message.content == "echo: ping" and r.model == "gpt-4o-2024-08-06"
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
        chunks = list(c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "a b c"}],
                                                stream=True, stream_options={"include_usage": True}))
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "echo: a b c"
        assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
        bad = openai.OpenAI(api_key="sk-wrong", base_url=f"{oa.url}/v1", timeout=10, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as ei:
            bad.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert ei.value.code == "invalid_api_key"


def _raw(url_port, method, path, body=b"", headers=None, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", url_port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def test_fake_steering_delay_reset_and_recording():
    with FakeOpenAI(api_key="k") as oa:
        auth = {"authorization": "Bearer k", "content-type": "application/json"}
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 100}]}).encode()
        t = time.monotonic()
        st, h, b = _raw(oa.port, "POST", "/v1/chat/completions", body, {**auth, "x-fake-delay-ms": "300"})
        assert st == 200 and time.monotonic() - t >= 0.3
        st, h, b = _raw(oa.port, "POST", "/v1/chat/completions", body, {**auth, "x-fake-status": "429"})
        assert st == 429 and json.loads(b)["error"]["code"] == "rate_limit_exceeded"
        st, h, b = _raw(oa.port, "POST", "/v1/chat/completions", body, {**auth, "x-fake-status": "200", "x-fake-body": "not json", "x-fake-content-type": "text/plain"})
        assert (st, b, h["content-type"]) == (200, b"not json", "text/plain")
        with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
            _raw(oa.port, "POST", "/v1/chat/completions", body, {**auth, "x-fake-reset": "true"})
        st, h, b = _raw(oa.port, "POST", "/v1/chat/completions", body, {**auth, "x-fake-chunk-bytes": "7", "x-fake-chunk-delay-ms": "1"})
        assert st == 200 and int(h["content-length"]) == len(b)
        reqs = oa.requests
        assert len(reqs) == 5 and all(r.body == body for r in reqs)
        assert reqs[0].headers["x-fake-delay-ms"] == "300" and reqs[0].path == "/v1/chat/completions"
        oa.clear()
        assert oa.requests == []


def test_fake_sidecar():
    with FakeSidecar(token="t") as sc:
        st, _, b = _raw(sc.port, "GET", "/v1/internal/aws-credentials", headers={"x-unigate-token": "t"})
        assert st == 200 and json.loads(b)["access_key_id"] == DEFAULT_ACCESS_KEY
        st, _, _ = _raw(sc.port, "GET", "/v1/internal/aws-credentials", headers={"x-unigate-token": "bad"})
        assert st == 401
        sc.set_credentials(None)
        st, _, b = _raw(sc.port, "GET", "/v1/internal/aws-credentials", headers={"x-unigate-token": "t"})
        assert st == 503 and "AWS" in json.loads(b)["error"]["message"]
        assert len(sc.requests) == 3
