"""Claude Code's Bedrock mode (the pinned CLI, tests/clients) through the gateway's Bedrock
runtime door, with a gateway key as its Bedrock API key:

    claude -p  --(http, Bearer <gateway key>)-->  tee  -->  unigate serve  --(SigV4)-->  ScriptedBedrock

- Claude Code sends its bearer token over plain HTTP (unlike botocore), so the stack needs no
  TLS here.
- The scripted fake Bedrock accepts only SigV4 (no test-only bearer mode) and verifies every
  signature with botocore against the credentials the gateway's sidecar resolved: a request
  that was not re-signed by the gateway fails there.
- A byte-level TCP tee between Claude Code and the gateway records exactly what the CLI sent,
  so the bodies that reached the fake can be compared with the CLI's byte for byte.

Claude Code first calls `GET /inference-profiles` (the gateway answers it: an empty list) and
probes its default models with `max_tokens: 1` InvokeModel calls; the gateway routes every
`us.anthropic.*` id to Bedrock, so the probes reach the scripted fake, which answers them
(they are not turns) — the session goes on to the configured model at once instead of walking
a list of older model ids.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from urllib.parse import unquote

import pytest

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN
from fakes.anthropic import text_turn, tool_use_turn
from fakes.bedrock_scripted import ScriptedBedrock
from real_clients import ClientNotInstalled, claude_bin, run_claude_code_bedrock
from system_harness import CLIENT_KEY, OTHER_CLIENT_KEY, assert_no_client_key, provider_env

MODEL = "us.anthropic.claude-sonnet-4-20250514-v1:0"
RUN_TIMEOUT = 120


# ---------------------------------------------------------------- a recording TCP tee


@dataclass
class ClientRequest:
    method: str
    target: str
    headers: dict
    body: bytes

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


@dataclass
class Tee:
    """Listens on 127.0.0.1 and relays each connection to `target_port` unchanged, recording
    the bytes the client sent on each connection."""

    target_port: int
    sent: list = field(default_factory=list)  # one bytearray per connection
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> "Tee":
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self._srv.settimeout(0.2)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True, name="tee-accept")]
        self._threads[0].start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._srv.getsockname()[1]}"

    def _accept(self):
        while not self._stop.is_set():
            try:
                down, _ = self._srv.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            record = bytearray()
            with self._lock:
                self.sent.append(record)
            for src, dst, rec in ((down, up, record), (up, down, None)):
                t = threading.Thread(target=self._pump, args=(src, dst, rec), daemon=True, name="tee-pump")
                t.start()
                self._threads.append(t)

    def _pump(self, src, dst, record):
        src.settimeout(RUN_TIMEOUT + 30)
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if record is not None:
                    with self._lock:
                        record.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (dst, src):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self):
        self._stop.set()
        self._srv.close()
        for t in self._threads:
            t.join(timeout=5)

    def requests(self) -> list:
        """Every HTTP/1.1 request the client sent, parsed from the recorded bytes."""
        with self._lock:
            streams = [bytes(b) for b in self.sent]
        out = []
        for data in streams:
            out += _parse_requests(data)
        return out


def _parse_requests(data: bytes) -> list:
    out, pos = [], 0
    while pos < len(data):
        end = data.index(b"\r\n\r\n", pos)
        head = data[pos:end].decode("latin-1").split("\r\n")
        method, target, _ = head[0].split(" ", 2)
        headers = {}
        for line in head[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        pos = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                eol = data.index(b"\r\n", pos)
                size = int(data[pos:eol].split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    pos = data.index(b"\r\n", pos) + 2  # no trailers expected
                    break
                body += data[pos : pos + size]
                pos += size + 2
            body = bytes(body)
        else:
            n = int(headers.get("content-length", "0"))
            body = data[pos : pos + n]
            assert len(body) == n, "a recorded request body is incomplete"
            pos += n
        out.append(ClientRequest(method, target, headers, body))
    return out


# ---------------------------------------------------------------- the stack


@pytest.fixture(scope="module")
def claude():
    try:
        return claude_bin()
    except ClientNotInstalled as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def scripted_bedrock():
    fake = ScriptedBedrock(region="us-east-1")  # SigV4 only: no bearer token is accepted
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def cc_stack(start_stack, fakes, scripted_bedrock):
    """The whole gateway over plain HTTP with the scripted fake as its Bedrock."""
    env = provider_env(SimpleNamespace(openai=fakes.openai, bedrock=scripted_bedrock))
    return start_stack("claude-code-bedrock", env)


@pytest.fixture
def tee(cc_stack):
    t = Tee(cc_stack.port).start()
    yield t
    t.stop()


def _tool_results(body: dict) -> list:
    last = body["messages"][-1]
    assert last["role"] == "user", last["role"]
    return [b for b in last["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]


def _result_text(block: dict) -> str:
    c = block.get("content")
    if isinstance(c, str):
        return c
    return "".join(p.get("text", "") for p in c or [] if isinstance(p, dict))


def test_claude_code_bedrock_mode_through_the_gateway(claude, cc_stack, tee, scripted_bedrock, tmp_path):
    tool_id = "toolu_bdrk_01GatewayDoor"
    marker = "bedrock-door-tool-ran-5d31"
    final = "Final answer through the Bedrock door: 7c42."
    scripted_bedrock.clear()
    scripted_bedrock.script([
        tool_use_turn("Bash", {"command": f"touch made-through-gateway.txt && echo {marker}", "description": "make a file"},
                      tool_id),
        text_turn(final),
    ])
    run = run_claude_code_bedrock(tee.url, CLIENT_KEY, MODEL, "Create the file, then say done.", tmp_path,
                                  timeout=RUN_TIMEOUT)
    fake_reqs = scripted_bedrock.requests
    summary = [(r.method, r.path, r.response_status, r.response_body[:160]) for r in fake_reqs]
    assert run.ok, run.describe() + f"\nfake Bedrock saw: {summary}"

    # The session completed and the tool really ran.
    assert final in run.stdout
    assert (tmp_path / "made-through-gateway.txt").exists(), "the Bash tool call did not run"

    # What Claude Code sent (recorded before the gateway): its bearer key, the control-plane
    # GET, the raw ':' in the model id.
    sent = tee.requests()
    assert sent, "the tee recorded nothing"
    for r in sent:
        assert r.headers.get("authorization") == f"Bearer {CLIENT_KEY}", (r.method, r.target)
    gets = [r for r in sent if r.method == "GET"]
    assert [r.path for r in gets] == ["/inference-profiles"], [r.target for r in gets]
    turns_sent = [r for r in sent if r.path == f"/model/{MODEL}/invoke-with-response-stream"]
    assert len(turns_sent) == 2, [r.target for r in sent]

    # At the fake Bedrock: only runtime calls (the gateway answered /inference-profiles), each
    # signed by the gateway (botocore-verified) and answered 200, no client credential.
    assert all(r.method == "POST" for r in fake_reqs), summary
    assert all(r.response_status == 200 for r in fake_reqs), summary
    for r in fake_reqs:
        assert r.sigv4 is not None and r.sigv4.ok, (r.path, r.sigv4)
        assert r.sigv4.access_key == DEFAULT_ACCESS_KEY
        assert r.headers.get("x-amz-security-token") == DEFAULT_TOKEN
        assert r.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
        assert not any("bearer" in v.lower() for _, v in r.header_list), r.header_list
        assert DEFAULT_SECRET not in json.dumps(r.headers)
        assert_no_client_key(r, (CLIENT_KEY, OTHER_CLIENT_KEY))
    turns = scripted_bedrock.turn_requests
    assert [r.path for r in turns] == [f"/model/{MODEL.replace(':', '%3A')}/invoke-with-response-stream"] * 2
    probes = [r for r in fake_reqs if all(r is not t for t in turns)]
    assert all(r.path.endswith("/invoke") and r.json()["max_tokens"] == 1 for r in probes), [r.path for r in probes]

    # Every runtime call arrived with the body Claude Code sent, byte for byte, for the model
    # it named: compared as multisets of (decoded model path, body).
    def key(path: str, body: bytes):
        return unquote(path.split("?", 1)[0]), body

    client_calls = sorted(key(r.path, r.body) for r in sent if r.path.startswith("/model/"))
    fake_calls = sorted(key(r.path, r.body) for r in fake_reqs)
    assert [p for p, _ in client_calls] == [p for p, _ in fake_calls]
    assert client_calls == fake_calls, "a body was changed on the way through the gateway"

    # The streamed turns carry Claude Code's `anthropic_beta` in the body; it arrived as sent
    # (the byte comparison above) — check it is really there, so that comparison covers it.
    for r in turns_sent:
        body = json.loads(r.body)
        assert isinstance(body.get("anthropic_beta"), list) and body["anthropic_beta"], sorted(body)
        assert body["anthropic_version"] == "bedrock-2023-05-31"
    assert [json.loads(r.body)["anthropic_beta"] for r in turns] == [json.loads(r.body)["anthropic_beta"] for r in turns_sent]

    # The tool round trip: the second turn carries the tool_use and its result.
    second = turns[1].json()
    tool_uses = [b for b in second["messages"][-2]["content"] if b.get("type") == "tool_use"]
    assert [b["id"] for b in tool_uses] == [tool_id]
    results = _tool_results(second)
    assert [b["tool_use_id"] for b in results] == [tool_id]
    assert marker in _result_text(results[0])


def test_claude_code_bedrock_mode_wrong_key_never_reaches_bedrock(claude, cc_stack, scripted_bedrock, tmp_path):
    """A key the gateway does not know: Claude Code fails (403 UnrecognizedClientException at
    once, no retries), and nothing reaches Bedrock."""
    scripted_bedrock.clear()
    scripted_bedrock.script([text_turn("never")])
    run = run_claude_code_bedrock(cc_stack.url, "ug-not-a-gateway-key-6e0f", MODEL, "Say it.", tmp_path,
                                  timeout=RUN_TIMEOUT)
    assert not run.ok and not run.timed_out, run.describe()
    assert "never" not in run.stdout
    assert scripted_bedrock.requests == []
