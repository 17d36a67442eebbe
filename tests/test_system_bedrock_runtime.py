"""The Bedrock runtime door (`/model/{modelId}/…` at the gateway root) driven by boto3's own
`bedrock-runtime` client, as AWS SDK code uses it with a gateway key:

- the stack serves HTTPS (GATEWAY_TLS_CERT_FILE / GATEWAY_TLS_KEY_FILE with a CA and server
  certificate this module creates), because botocore sends a bearer token only to https://;
- boto3 gets `endpoint_url=https://127.0.0.1:<port>`, `verify=<the CA>` and
  AWS_BEARER_TOKEN_BEDROCK = a gateway key, and no AWS credentials at all (empty config and
  credentials files, IMDS off, no AWS_* variables): had botocore fallen back to SigV4 it would
  raise NoCredentialsError, and every request is captured client-side to show `Bearer <key>`.

Each successful call is checked at both ends: boto3 parses the answer (its own event-stream
parser for the streams, its modelled shapes) and it equals what the fake Bedrock sent; at the
fake, the body is the one boto3 sent byte for byte, the SigV4 signature is the gateway's
(verified with botocore against the credentials the sidecar resolved), and no client
credential arrived — neither the bearer key nor the client `x-amz-*` / `x-amzn-*` headers this
module adds to every call (boto3 sends none with a bearer token) — while `x-amzn-bedrock-*`
headers boto3 sends for modelled parameters do arrive. Errors are checked as the exception
classes boto3 raises. Usage is checked in the gateway's JSON access log and Envoy's metrics, and
through a tpm limit that only a usage read from the relayed answer can trip.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from fakes import eventstream as es
from system_harness import CLIENT_KEY, OTHER_CLIENT_KEY, HarnessError, Stack, assert_no_client_key, http_get, provider_env

REGION = "us-east-1"
NOVA_ONLY_KEY = "ug-bedrock-door-nova-only-5c1e"
TPM_KEY = "ug-bedrock-door-tpm-small-8a44"
RPM_KEY = "ug-bedrock-door-rpm-one-0b7d"
WRONG_KEY = "ug-bedrock-door-not-a-key-33f0"
ALL_KEYS = (CLIENT_KEY, OTHER_CLIENT_KEY, NOVA_ONLY_KEY, TPM_KEY, RPM_KEY, WRONG_KEY)

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET4 = "us.anthropic.claude-sonnet-4-20250514-v1:0"
NOVA = "amazon.nova-pro-v1:0"
ARN = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"

# Sent on every call next to boto3's own headers: what a client's stray AWS headers look like.
# None of them may reach Bedrock with the client's value.
CLIENT_AWS_HEADERS = {
    "x-amz-security-token": "client-session-token-must-not-reach-aws",
    "x-amz-date": "20200101T000000Z",
    "x-amz-content-sha256": "0" * 64,
    "x-amzn-trace-id": "Root=1-client-trace",
}


def enc(model_id: str) -> str:
    """A model id as it appears in the path upstream (and as boto3 encodes it)."""
    from urllib.parse import quote

    return quote(model_id, safe="")


def claude_body(text: str = "hello bedrock door", max_tokens: int = 64, **extra) -> bytes:
    # Spacing and key order as a user's json.dumps leaves them: the bytes must arrive as sent.
    body = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": text}], **extra}
    return json.dumps(body, indent=1).encode()


def converse_messages(text: str = "hello converse") -> list:
    return [{"role": "user", "content": [{"text": text}]}]


# ---------------------------------------------------------------- TLS material


def make_tls(directory: Path) -> tuple:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it: (ca, cert, key)
    PEM paths. With the `cryptography` package (in the venv through moto), else openssl."""
    ca, cert, key = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        _make_tls_openssl(directory, ca, cert, key)
        return ca, cert, key
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "unigate test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv_cert = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(srv_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert.write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(srv_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return ca, cert, key


def _make_tls_openssl(directory: Path, ca: Path, cert: Path, key: Path) -> None:
    openssl = shutil.which("openssl")
    if not openssl:
        pytest.fail("neither the `cryptography` package nor the openssl CLI is available to create a test certificate")
    ca_key, csr, ext = directory / "ca.key", directory / "srv.csr", directory / "srv.ext"
    run = lambda *a: subprocess.run([openssl, *a], check=True, capture_output=True, timeout=60)  # noqa: E731
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(ca_key),
        "-out", str(ca), "-days", "1", "-subj", "/CN=unigate test CA")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(csr),
        "-subj", "/CN=127.0.0.1")
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial", "-out", str(cert),
        "-days", "1", "-extfile", str(ext))


class TlsStack(Stack):
    """`unigate serve` with GATEWAY_TLS_*: the listener speaks HTTPS, so the readiness probe
    and `url` do too."""

    def __init__(self, name: str, env: dict, ca_file: Path):
        super().__init__(name, env)
        self.ca_file = str(ca_file)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def _wait_healthy(self) -> None:
        from system_harness import START_TIMEOUT_S, _children

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"unigate serve ({self.name}) exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=1, context=self.ssl_context()) as r:
                    if r.status == 200:
                        kids = _children(self.proc.pid)
                        self.envoy_pid = kids[0] if kids else None
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise HarnessError(f"unigate serve ({self.name}): https /health not 200 after {START_TIMEOUT_S}s:\n{self.log_tail()}")


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_stack(binaries, fakes, tls, tmp_path_factory):
    ca, cert, key = tls
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    keys.write_text(json.dumps([
        {"key": CLIENT_KEY, "name": "door-main"},
        {"key": OTHER_CLIENT_KEY, "name": "door-other"},
        {"key": NOVA_ONLY_KEY, "name": "nova-only", "models": ["amazon.nova-*"]},
        {"key": TPM_KEY, "name": "tpm-small", "tpm": 20},
        {"key": RPM_KEY, "name": "rpm-one", "rpm": 1},
    ]))
    env = provider_env(fakes, API_KEY=None, API_KEYS_FILE=str(keys),
                       GATEWAY_TLS_CERT_FILE=str(cert), GATEWAY_TLS_KEY_FILE=str(key))
    s = TlsStack("bedrock-door-tls", env, ca)
    try:
        s.start()
    except HarnessError as e:
        s.cleanup()
        pytest.fail(str(e), pytrace=False)
    yield s
    s.stop()
    tail = s.log_tail(30)
    s.cleanup()
    assert s.exit_code == 0 and s.stop_seconds < 10, f"TLS stack did not stop cleanly (exit {s.exit_code}):\n{tail}"


# ---------------------------------------------------------------- boto3, as a user configures it


@pytest.fixture(autouse=True)
def aws_client_env(monkeypatch, tmp_path):
    """The test process as an AWS SDK user with only a Bedrock API key: no AWS credentials
    anywhere botocore looks, AWS_BEARER_TOKEN_BEDROCK = the gateway key. A client keeps the
    token it found when it was made: a test that uses another key sets it, then makes its
    client (make_brt)."""
    for k in list(os.environ):
        if k.startswith("AWS_"):
            monkeypatch.delenv(k)
    (tmp_path / "aws-config").write_text("")
    (tmp_path / "aws-credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", CLIENT_KEY)
    yield monkeypatch


class Captured:
    """What boto3 put on the wire (after its auth step), one entry per HTTP request."""

    def __init__(self):
        self.requests = []
        self.extra_headers = dict(CLIENT_AWS_HEADERS)

    def before_send(self, request, **kw):
        for k, v in self.extra_headers.items():
            request.headers[k] = v
        body = request.body
        if hasattr(body, "read"):
            raise AssertionError("boto3 sent a streaming body; the tests expect bytes")
        self.requests.append({
            "url": request.url,
            "headers": {k.lower(): (v.decode() if isinstance(v, bytes) else v) for k, v in request.headers.items()},
            "body": body if isinstance(body, bytes) else (body or "").encode(),
        })
        return None

    @property
    def last(self) -> dict:
        assert self.requests, "boto3 sent nothing"
        return self.requests[-1]


def make_brt(stack: TlsStack, endpoint: str = None, steer: dict = None):
    """(bedrock-runtime client, Captured) for `stack`; `steer` adds x-fake-* headers (passed
    through the gateway to the fake like any other header)."""
    session = boto3.session.Session()
    cfg = botocore.config.Config(region_name=REGION, retries={"total_max_attempts": 1, "mode": "standard"},
                                 connect_timeout=5, read_timeout=20)
    c = session.client("bedrock-runtime", endpoint_url=endpoint or stack.url, verify=stack.ca_file, config=cfg)
    cap = Captured()
    if steer:
        cap.extra_headers.update({f"x-fake-{k}": str(v) for k, v in steer.items()})
    c.meta.events.register("before-send.bedrock-runtime", cap.before_send)
    return c, cap


@pytest.fixture
def brt(tls_stack, fakes):
    c, cap = make_brt(tls_stack)
    yield c, cap
    c.close()


# ---------------------------------------------------------------- checks at both ends


def assert_bearer_sent(sent: dict, key: str = CLIENT_KEY) -> None:
    """boto3 authorised the call with the Bedrock API key (`Authorization: Bearer <key>`),
    over https."""
    assert sent["headers"].get("authorization") == f"Bearer {key}", sent["headers"]
    assert sent["url"].startswith("https://127.0.0.1:"), sent["url"]


def assert_relayed(rec, sent: dict, path: str) -> None:
    """At the fake Bedrock: the right path, boto3's body byte for byte, the gateway's SigV4
    (botocore-verified, the sidecar's credentials), no client credential."""
    assert rec.server == "bedrock" and rec.method == "POST", (rec.server, rec.method)
    assert rec.path == path, f"{rec.path!r} != {path!r}"
    assert rec.body == sent["body"], "the body did not arrive byte for byte as boto3 sent it"
    assert rec.content_length == len(rec.body) and not rec.chunked
    assert rec.sigv4 is not None and rec.sigv4.ok, f"SigV4 rejected by botocore: {rec.sigv4}"
    assert rec.sigv4.access_key == DEFAULT_ACCESS_KEY
    assert rec.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={DEFAULT_ACCESS_KEY}/")
    assert rec.headers.get("x-amz-security-token") == DEFAULT_TOKEN
    for name, value in rec.header_list:
        assert "bearer" not in value.lower(), f"a bearer credential reached Bedrock in {name}"
        assert DEFAULT_SECRET not in value
    for name, value in CLIENT_AWS_HEADERS.items():
        assert rec.headers.get(name) != value, f"the client's {name} reached Bedrock"
    assert "x-amzn-trace-id" not in rec.headers
    assert "x-unigate-cluster" not in rec.headers
    assert_no_client_key(rec, ALL_KEYS)
    # Bedrock's own modelled headers that boto3 sent are forwarded unchanged.
    for name, value in sent["headers"].items():
        if name.startswith("x-amzn-bedrock-"):
            assert rec.headers.get(name) == value, (name, rec.headers.get(name), value)


def chunk_payloads(raw: bytes) -> list:
    """The decoded `bytes` of each chunk frame of an InvokeModel stream the fake sent."""
    msgs, rest = es.decode_messages(raw)
    assert rest == b"", f"{len(rest)} undecoded bytes"
    return [base64.b64decode(json.loads(m["payload"])["bytes"]) for m in msgs if m["headers"].get(":event-type") == "chunk"]


def converse_frames(raw: bytes) -> list:
    msgs, rest = es.decode_messages(raw)
    assert rest == b""
    return [(m["headers"][":event-type"], json.loads(m["payload"])) for m in msgs]


def access_log_entries(stack: Stack, offset: int, path_part: str) -> list:
    """The JSON access-log lines (Envoy's stdout, in the serve log) written since `offset`
    whose path contains `path_part`."""
    out = []
    for line in stack.log_since(offset).splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if path_part in str(entry.get("path", "")):
            out.append(entry)
    return out


def wait_access_log(stack: Stack, offset: int, path_part: str, n: int = 1, timeout: float = 5.0) -> list:
    """Envoy buffers access-log lines (flushed every few seconds); the admin's /reopen_logs
    flushes them now. Waits (bounded) for `n` lines."""
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(f"http://127.0.0.1:{stack.admin_port}/reopen_logs", method="POST")
        with urllib.request.urlopen(req, timeout=5) as r:
            assert r.status == 200
        entries = access_log_entries(stack, offset, path_part)
        if len(entries) >= n or time.monotonic() > deadline:
            return entries
        time.sleep(0.05)


def wait_for_fresh_minute():
    """Limits use fixed one-minute windows: do not straddle a minute boundary."""
    now = datetime.datetime.now()
    if now.second >= 50:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.2)


# ---------------------------------------------------------------- the operations


def test_health_over_https_and_plain_http_is_refused(tls_stack):
    """The listener speaks TLS with the certificate the module made (verified against its CA);
    it does not answer plain HTTP."""
    with urllib.request.urlopen(tls_stack.url + "/health", timeout=5, context=tls_stack.ssl_context()) as r:
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    with pytest.raises((OSError, http.client.HTTPException)):
        http_get(f"http://127.0.0.1:{tls_stack.port}/health", timeout=5)


def test_invoke_model(tls_stack, fakes, brt):
    """InvokeModel as boto3 sends it: no contentType (so no Content-Type header), the id's `:`
    as `%3A`; modelled x-amzn-bedrock-* headers (trace, latency tier) forwarded; the answer and
    Bedrock's token-count headers back unchanged; usage in the access log."""
    client, cap = brt
    body = claude_body("invoke me")
    offset = tls_stack.log_size()
    resp = client.invoke_model(modelId=HAIKU, body=body, trace="ENABLED", performanceConfigLatency="standard")
    got = resp["body"].read()
    sent = cap.last
    assert_bearer_sent(sent)
    assert "content-type" not in sent["headers"], "boto3 sent a Content-Type: this test no longer covers its absence"
    assert sent["url"].endswith(f"/model/{enc(HAIKU)}/invoke"), sent["url"]
    assert sent["headers"].get("x-amzn-bedrock-trace") == "ENABLED"
    rec = fakes.bedrock.last()
    assert len(fakes.bedrock.requests) == 1
    assert_relayed(rec, sent, f"/model/{enc(HAIKU)}/invoke")
    assert rec.headers.get("content-type") == "application/json", "signed as JSON although boto3 sent no type"
    assert got == rec.response_body, "the answer was not relayed byte for byte"
    assert json.loads(got)["content"][0]["text"] == "echo: invoke me"
    assert resp["contentType"] == "application/json"
    hdrs = resp["ResponseMetadata"]["HTTPHeaders"]
    for h in ("x-amzn-bedrock-input-token-count", "x-amzn-bedrock-output-token-count", "x-amzn-requestid"):
        assert hdrs.get(h) == rec.response_headers[h], (h, hdrs.get(h))
    n_in = int(rec.response_headers["x-amzn-bedrock-input-token-count"])
    n_out = int(rec.response_headers["x-amzn-bedrock-output-token-count"])
    entries = wait_access_log(tls_stack, offset, "/invoke")
    assert len(entries) == 1, entries
    e = entries[0]
    assert e["status"] == 200 and e["key"] == "door-main" and e["provider"] == "bedrock" and e["model"] == HAIKU, e
    assert (int(e["prompt_tokens"]), int(e["completion_tokens"]), int(e["total_tokens"])) == (n_in, n_out, n_in + n_out), e


def test_invoke_model_with_response_stream(tls_stack, fakes, brt):
    """boto3's event-stream parser reads the relayed frames: the chunks it yields are the
    fake's, in order, including the final invocation metrics; usage recorded from them."""
    client, cap = brt
    body = claude_body("stream me please now", max_tokens=100)
    offset = tls_stack.log_size()
    resp = client.invoke_model_with_response_stream(modelId=SONNET4, body=body, contentType="application/json",
                                                    accept="application/json")
    events = list(resp["body"])
    assert all(set(e) == {"chunk"} for e in events), events
    got = [e["chunk"]["bytes"] for e in events]
    sent = cap.last
    assert_bearer_sent(sent)
    rec = fakes.bedrock.last()
    assert_relayed(rec, sent, f"/model/{enc(SONNET4)}/invoke-with-response-stream")
    assert rec.headers.get("x-amzn-bedrock-accept") == "application/json"
    assert got == chunk_payloads(rec.response_body), "boto3 did not see the frames the fake sent"
    parsed = [json.loads(b) for b in got]
    assert "".join(p["delta"]["text"] for p in parsed if p["type"] == "content_block_delta") == "echo: stream me please now"
    metrics = parsed[-1]["amazon-bedrock-invocationMetrics"]
    assert resp["contentType"] == "application/json"
    entries = wait_access_log(tls_stack, offset, "/invoke-with-response-stream")
    assert len(entries) == 1, entries
    e = entries[0]
    assert e["status"] == 200 and e["model"] == SONNET4, e
    assert (int(e["prompt_tokens"]), int(e["completion_tokens"])) == (metrics["inputTokenCount"], metrics["outputTokenCount"]), e


def test_converse(tls_stack, fakes, brt):
    client, cap = brt
    offset = tls_stack.log_size()
    resp = client.converse(modelId=NOVA, messages=converse_messages("hello converse"),
                           system=[{"text": "be brief"}], inferenceConfig={"maxTokens": 50, "temperature": 0.5})
    sent = cap.last
    assert_bearer_sent(sent)
    assert sent["headers"].get("content-type") == "application/json"
    rec = fakes.bedrock.last()
    assert_relayed(rec, sent, f"/model/{enc(NOVA)}/converse")
    answer = json.loads(rec.response_body)
    assert resp["output"] == answer["output"] and resp["usage"] == answer["usage"] and resp["stopReason"] == "end_turn"
    assert resp["output"]["message"]["content"][0]["text"] == "echo: hello converse"
    entries = wait_access_log(tls_stack, offset, "/converse")
    assert len(entries) == 1, entries
    u = answer["usage"]
    assert (int(entries[0]["prompt_tokens"]), int(entries[0]["completion_tokens"])) == (u["inputTokens"], u["outputTokens"])


def test_converse_stream(tls_stack, fakes, brt):
    client, cap = brt
    offset = tls_stack.log_size()
    resp = client.converse_stream(modelId=NOVA, messages=converse_messages("stream the converse answer"))
    events = list(resp["stream"])
    sent = cap.last
    assert_bearer_sent(sent)
    rec = fakes.bedrock.last()
    assert_relayed(rec, sent, f"/model/{enc(NOVA)}/converse-stream")
    frames = converse_frames(rec.response_body)
    assert [next(iter(e)) for e in events] == [t for t, _ in frames], "boto3 saw other events than the fake sent"
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "echo: stream the converse answer"
    assert events[-2] == {"messageStop": {"stopReason": "end_turn"}}
    fake_usage = frames[-1][1]["usage"]
    assert events[-1]["metadata"]["usage"] == fake_usage
    entries = wait_access_log(tls_stack, offset, "/converse-stream")
    assert len(entries) == 1, entries
    assert (int(entries[0]["prompt_tokens"]), int(entries[0]["completion_tokens"])) == (
        fake_usage["inputTokens"], fake_usage["outputTokens"])


@pytest.mark.parametrize("kind", ["invokeModel", "converse"])
def test_count_tokens(tls_stack, fakes, brt, kind):
    client, cap = brt
    if kind == "invokeModel":
        inp = {"invokeModel": {"body": claude_body("count these tokens please")}}
    else:
        inp = {"converse": {"messages": converse_messages("count these tokens please")}}
    countable = "anthropic.claude-3-5-haiku-20241022-v1:0"  # a model Bedrock counts for
    resp = client.count_tokens(modelId=countable, input=inp)
    sent = cap.last
    assert_bearer_sent(sent)
    rec = fakes.bedrock.last()
    assert_relayed(rec, sent, f"/model/{enc(countable)}/count-tokens")
    assert rec.response_status == 200, rec.response_body
    assert resp["inputTokens"] == json.loads(rec.response_body)["inputTokens"] > 0


@pytest.mark.parametrize(
    "model_id,upstream_id",
    [
        pytest.param("claude-3-haiku", HAIKU, id="alias"),
        pytest.param(ARN, ARN, id="inference-profile-arn"),
    ],
)
def test_alias_and_arn_in_the_path(tls_stack, fakes, brt, model_id, upstream_id):
    """An alias from the routing table resolves in the path; an ARN (boto3 encodes its `/` as
    %2F and `:` as %3A) reaches Bedrock as one encoded segment, signed."""
    client, cap = brt
    resp = client.invoke_model(modelId=model_id, body=claude_body("which model"))
    assert json.loads(resp["body"].read())["content"][0]["text"] == "echo: which model"
    sent = cap.last
    assert sent["url"].endswith(f"/model/{enc(model_id)}/invoke"), sent["url"]
    assert_relayed(fakes.bedrock.last(), sent, f"/model/{enc(upstream_id)}/invoke")


def test_sigv4_from_the_client_is_not_a_gateway_key(tls_stack, fakes, monkeypatch):
    """Without the bearer token, boto3 signs with SigV4 (here with made-up credentials): the
    gateway knows no such key, answers UnrecognizedClientException, and nothing reaches AWS.
    This is why the bearer token is what carried the key in the other tests."""
    monkeypatch.delenv("AWS_BEARER_TOKEN_BEDROCK")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCLIENTSIDE000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "client/side/secret")
    client, cap = make_brt(tls_stack)
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        client.converse(modelId=NOVA, messages=converse_messages())
    assert cap.last["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")
    err = ei.value.response
    assert err["Error"]["Code"] == "UnrecognizedClientException", err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert fakes.bedrock.requests == []


# ---------------------------------------------------------------- errors as boto3 raises them


def test_key_restricted_to_other_models_is_access_denied(tls_stack, fakes, aws_client_env):
    aws_client_env.setenv("AWS_BEARER_TOKEN_BEDROCK", NOVA_ONLY_KEY)
    client, cap = make_brt(tls_stack)
    with pytest.raises(client.exceptions.AccessDeniedException) as ei:
        client.invoke_model(modelId="claude-3-haiku", body=claude_body())
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert ei.value.response["Error"]["Message"]
    assert fakes.bedrock.requests == []
    # The same key may use the models it is allowed.
    ok = client.converse(modelId=NOVA, messages=converse_messages("allowed"))
    assert ok["output"]["message"]["content"][0]["text"] == "echo: allowed"
    assert_bearer_sent(cap.last, NOVA_ONLY_KEY)
    assert_relayed(fakes.bedrock.last(), cap.last, f"/model/{enc(NOVA)}/converse")


@pytest.mark.parametrize("model_id", ["no-such-model", "gpt-4o"])
def test_unknown_or_non_bedrock_model_is_resource_not_found(tls_stack, fakes, brt, model_id):
    client, _ = brt
    with pytest.raises(client.exceptions.ResourceNotFoundException) as ei:
        client.converse(modelId=model_id, messages=converse_messages())
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert fakes.upstream_requests() == []


def test_bad_body_is_validation_exception(tls_stack, fakes, brt):
    client, _ = brt
    with pytest.raises(client.exceptions.ValidationException) as ei:
        client.invoke_model(modelId=HAIKU, body=b'{"anthropic_version": "bedrock-2023-05-31", "messages": [')
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert fakes.bedrock.requests == []


def test_bedrock_validation_error_is_relayed(tls_stack, fakes, brt):
    """A body the gateway can parse but Bedrock refuses: Bedrock's own ValidationException and
    message reach boto3 as Bedrock sent them."""
    client, _ = brt
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "model": "x",
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    with pytest.raises(client.exceptions.ValidationException) as ei:
        client.invoke_model(modelId=HAIKU, body=body)
    rec = fakes.bedrock.last()
    assert rec.response_status == 400
    assert ei.value.response["Error"]["Message"] == json.loads(rec.response_body)["message"]
    assert "extraneous key [model]" in ei.value.response["Error"]["Message"]


def test_bedrock_throttling_is_relayed_unchanged(tls_stack, fakes):
    """Bedrock's 429 ThrottlingException (with its namespace in x-amzn-ErrorType and its
    request id) reaches boto3 as Bedrock sent it."""
    client, cap = make_brt(tls_stack, steer={"status": 429, "error-type": "ThrottlingException"})
    with pytest.raises(client.exceptions.ThrottlingException) as ei:
        client.converse(modelId=NOVA, messages=converse_messages())
    assert len(cap.requests) == 1 and len(fakes.bedrock.requests) == 1, "one call, one request (no retries anywhere)"
    rec = fakes.bedrock.last()
    assert rec.response_status == 429 and rec.sigv4.ok
    meta = ei.value.response["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 429
    assert meta["HTTPHeaders"]["x-amzn-errortype"] == rec.response_headers["x-amzn-errortype"]
    assert meta["HTTPHeaders"]["x-amzn-requestid"] == rec.response_headers["x-amzn-requestid"]
    assert ei.value.response["Error"]["Message"] == json.loads(rec.response_body)["message"]


def test_wrong_key_is_unrecognized_client(tls_stack, fakes, aws_client_env):
    aws_client_env.setenv("AWS_BEARER_TOKEN_BEDROCK", WRONG_KEY)
    client, cap = make_brt(tls_stack)
    with pytest.raises(botocore.exceptions.ClientError) as ei:
        client.converse(modelId=NOVA, messages=converse_messages())
    assert_bearer_sent(cap.last, WRONG_KEY)
    err = ei.value.response
    assert err["Error"]["Code"] == "UnrecognizedClientException", err
    assert err["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert WRONG_KEY not in json.dumps(err, default=str)
    assert fakes.bedrock.requests == []


def test_gateway_rpm_limit_is_throttling(tls_stack, fakes, aws_client_env):
    """The key's own rpm limit applies on this door and answers as AWS throttles."""
    aws_client_env.setenv("AWS_BEARER_TOKEN_BEDROCK", RPM_KEY)
    client, cap = make_brt(tls_stack)
    wait_for_fresh_minute()
    client.converse(modelId=NOVA, messages=converse_messages("first"))
    with pytest.raises(client.exceptions.ThrottlingException) as ei:
        client.converse(modelId=NOVA, messages=converse_messages("second"))
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert len(fakes.bedrock.requests) == 1, "the refused request reached Bedrock"
    assert [r["headers"]["authorization"] for r in cap.requests] == [f"Bearer {RPM_KEY}"] * 2


def test_usage_read_from_relayed_answers_counts_against_tpm(tls_stack, fakes, aws_client_env):
    """tpm=20: one InvokeModel whose answer reports more than 20 tokens in Bedrock's headers
    spends the budget (the gateway read them while relaying), so the next call is throttled
    by the gateway without reaching Bedrock."""
    aws_client_env.setenv("AWS_BEARER_TOKEN_BEDROCK", TPM_KEY)
    client, cap = make_brt(tls_stack)
    wait_for_fresh_minute()
    resp = client.invoke_model(modelId=HAIKU, body=claude_body("spend the token budget " * 12))
    hdrs = resp["ResponseMetadata"]["HTTPHeaders"]
    assert int(hdrs["x-amzn-bedrock-input-token-count"]) + int(hdrs["x-amzn-bedrock-output-token-count"]) > 20
    resp["body"].read()
    # The charge is made when Envoy finishes the stream, a moment after boto3 has the last
    # byte: a call may slip in before it, never after.
    slipped = 0
    deadline = time.monotonic() + 5
    while True:
        try:
            client.converse(modelId=NOVA, messages=converse_messages("over budget"))
            slipped += 1
        except client.exceptions.ThrottlingException as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 429
            break
        assert time.monotonic() < deadline, "the tokens of the relayed answer were never charged"
        time.sleep(0.1)
    assert len(fakes.bedrock.requests) == 1 + slipped, "the throttled call reached Bedrock"
    assert_bearer_sent(cap.requests[0], TPM_KEY)


def test_token_metrics_count_the_door(tls_stack, fakes, brt):
    """Envoy's metrics: the request counter and the token counters of the model grow by what
    the relayed answer reported."""
    client, _ = brt
    name = "anthropic_claude-3-haiku-20240307-v1_0"

    def counters():
        stats = tls_stack.admin_stats("unigate")
        pick = lambda suffix: sum(int(v) for k, v in stats.items() if k.endswith(suffix) and v.isdigit())  # noqa: E731
        return pick(f"unigate.chat.bedrock.{name}.200"), pick(f"unigate.tokens.{name}.input"), pick(f"unigate.tokens.{name}.output")

    before = counters()
    resp = client.invoke_model(modelId=HAIKU, body=claude_body("metrics please"))
    resp["body"].read()
    hdrs = resp["ResponseMetadata"]["HTTPHeaders"]
    want = (1, int(hdrs["x-amzn-bedrock-input-token-count"]), int(hdrs["x-amzn-bedrock-output-token-count"]))
    deadline = time.monotonic() + 5
    while True:
        after = counters()
        delta = tuple(a - b for a, b in zip(after, before))
        if delta == want or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert delta == want, (before, after, want)


def test_plain_http_endpoint_is_refused_by_botocore(tls_stack, fakes):
    """botocore's documented refusal: it will not send a bearer token to an http:// endpoint
    (the reason the gateway serves TLS for this door); nothing is sent."""
    client, cap = make_brt(tls_stack, endpoint=f"http://127.0.0.1:{tls_stack.port}")
    with pytest.raises(botocore.exceptions.InvalidEndpointConfigurationError, match="HTTPS"):
        client.converse(modelId=NOVA, messages=converse_messages())
    assert cap.requests == [] and fakes.bedrock.requests == []


# ---------------------------------------------------------------- what operators see


def test_access_log_path_is_the_path_the_client_sent(tls_stack, fakes, brt):
    """docs/operations.md, access log fields: `path` is "the path the client sent (before the
    filter rewrote it for the upstream)". The client called the alias path; the log must say
    so (`model` is where the resolved id goes)."""
    from urllib.parse import urlsplit

    client, cap = brt
    # Earlier tests' lines may still sit in Envoy's access-log buffer: flush them first.
    wait_access_log(tls_stack, tls_stack.log_size(), "/no-such-path", n=0)
    offset = tls_stack.log_size()
    client.invoke_model(modelId="claude-3-haiku", body=claude_body("log my path"))["body"].read()
    client_path = urlsplit(cap.last["url"]).path
    assert client_path == "/model/claude-3-haiku/invoke"
    entries = wait_access_log(tls_stack, offset, "/invoke")
    assert len(entries) == 1, entries
    assert entries[0]["model"] == HAIKU and entries[0]["key"] == "door-main", entries[0]
    assert entries[0]["path"] == client_path, entries[0]


def test_ready_line_names_the_https_url(tls_stack):
    """`serve` prints where the gateway listens once Envoy is ready; with GATEWAY_TLS_* the
    listener is HTTPS, so the URL it prints must be https:// (an http:// URL does not work)."""
    ready = [ln for ln in tls_stack.log().splitlines() if ln.startswith("unigate: gateway on ")]
    assert len(ready) == 1, ready
    assert ready[0].startswith(f"unigate: gateway on https://127.0.0.1:{tls_stack.port} "), ready[0]
