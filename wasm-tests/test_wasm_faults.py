"""Faults, each checked for four things: the status and body the client sees; that nothing
hangs (every call has a timeout and the elapsed time is asserted); that no Wasm VM trapped
(Envoy admin `wasm.unigate.vm_reload*` stay 0, the V8 VM count does not grow, and Envoy's
log has no panic/trap lines); and that the next request on the same keep-alive connection
still works (or, where HTTP/1.1 cannot keep the connection, that the connection is closed
promptly and a new one works).

Status/body mappings already pinned elsewhere are only re-checked briefly here:
test_wasm_upstream_errors.py (refused, resets, idle timeout, garbage bodies, Bedrock error
table), test_wasm_streaming.py (mid-stream error frames, reset mid-stream does not hang),
test_wasm_sidecar.py (sidecar without credentials, refusing, slow, down). New here: a bad
message CRC mid-stream, HTML 5xx bodies, resets at several offsets of every stream kind,
client disconnects at every stage, slow-loris request bodies next to normal traffic, a
sidecar answering garbage or expired credentials, and the no-trap/same-connection checks
for all of them.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time

import pytest

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeSidecar
from fakes import eventstream as es
from fakes.server import Reply
from wasm_checks import assert_chat_completion, assert_error, parse_sse, stream_error
from wasm_harness import CLIENT_KEYS, SIDECAR_TOKEN, Client, closed_port, default_clusters, default_env, default_plugin_config

TRAP_MARKERS = ("panicked", "Function: proxy_on_", "wasm trap", "Uncaught RuntimeError", "unreachable executed")


def chat(model="claude-3-haiku", text="hi", **kw):
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16, **kw}


def schat(model="claude-3-haiku", text="a b c d e f g h", **kw):
    return chat(model, text, stream=True, **kw)


# ---------------------------------------------------------------- no-trap checks


class VmWatch:
    """Baseline of an Envoy's Wasm VM counters and log, to assert that no VM trapped."""

    def __init__(self, envoy):
        self.envoy = envoy
        self.created = int(envoy.stats("wasm.envoy.wasm.runtime.v8.created").get("wasm.envoy.wasm.runtime.v8.created", 0))

    def check(self):
        stats = self.envoy.stats("wasm.unigate.vm_reload")
        reloads = {k: v for k, v in stats.items() if k.startswith("wasm.unigate.vm_reload")}
        assert reloads and all(v == "0" for v in reloads.values()), f"a Wasm VM was reloaded: {reloads}"
        created = int(self.envoy.stats("wasm.envoy.wasm.runtime.v8.created").get("wasm.envoy.wasm.runtime.v8.created", 0))
        assert created == self.created, f"new V8 VMs were created ({self.created} -> {created}): a VM was replaced"
        text = self.envoy.log_since(0)
        bad = [ln for ln in text.splitlines() if any(m in ln for m in TRAP_MARKERS)]
        assert not bad, "Wasm trap/panic in Envoy's log:\n" + "\n".join(bad[:10])


IDLE_S = 1  # this module's route idle timeout (upstream silence -> 504), short to keep it fast


@pytest.fixture(scope="module")
def faults_gw(start_envoy, fakes):
    cfg = default_plugin_config(fakes, upstream_timeout_seconds=IDLE_S)
    e = start_envoy("faults", cfg, default_env(), default_clusters(fakes), idle_timeout_s=IDLE_S)
    e.watch = VmWatch(e)
    return e


@pytest.fixture
def fc(faults_gw):
    """A client of the fault Envoy; after the test, no VM may have trapped."""
    yield Client(faults_gw.url)
    faults_gw.watch.check()


def on_one_connection(client, fault, expect, after=None, timeout=15):
    """Sends `fault` (method, path, body, headers) then a normal request on the same
    keep-alive connection. `expect(resp, elapsed)` checks the fault's answer. Returns the
    fault response."""
    conn = client.connection(timeout=timeout)
    try:
        method, path, body, headers = fault
        t = time.monotonic()
        resp = client.request(method, path, body, headers=headers, conn=conn)
        expect(resp, time.monotonic() - t)
        assert resp.headers.get("connection", "").lower() != "close", f"the gateway closed the connection: {resp!r}"
        sock = conn.sock
        assert sock is not None, "the connection was closed after the fault"
        nxt = after or chat("gpt-4o", "after the fault")
        ok = client.request("POST", "/v1/chat/completions", nxt, conn=conn)
        assert ok.status == 200, ok
        assert conn.sock is sock, "the client had to reconnect for the next request"
        return resp
    finally:
        conn.close()


def steer(**kw):
    return {f"x-fake-{k.replace('_', '-')}": str(v) for k, v in kw.items()}


# ---------------------------------------------------------------- complete answers, connection kept

CRC_GOOD = es.event_frame("messageStart", {"role": "assistant"})
CRC_DELTA = es.event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "part"}})


def _bad_crc_frame() -> bytes:
    """A frame whose prelude is intact but whose message CRC is wrong (last byte flipped)."""
    f = bytearray(es.event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "more"}}))
    f[-1] ^= 0xFF
    return bytes(f)


def _bad_payload_crc_frame() -> bytes:
    """Same length and prelude, one payload byte changed: only the message CRC can tell."""
    f = bytearray(es.event_frame("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "more"}}))
    f[-10] ^= 0x01
    return bytes(f)


def _claude_stream_with(frame: bytes):
    start = [{"type": "message_start", "message": {"id": "msg_bdrk_c", "type": "message", "role": "assistant",
                                                   "model": "claude-3-haiku-20240307", "content": [], "stop_reason": None,
                                                   "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 1}}},
             {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
             {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "part"}}]
    rest = [{"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 2}},
            {"type": "message_stop"}]
    return [{"chunk": e} for e in start] + [{"raw_hex": frame.hex()}] + [{"chunk": e} for e in rest]


def _converse_events_with(frame: bytes):
    return [{"raw_hex": CRC_GOOD.hex()}, {"raw_hex": CRC_DELTA.hex()}, {"raw_hex": frame.hex()},
            {"event": "messageStop", "payload": {"stopReason": "end_turn"}}]


BAD_CRC = [
    pytest.param("amazon.nova-pro-v1:0", _converse_events_with(_bad_crc_frame()), id="converse-crc-byte"),
    pytest.param("amazon.nova-pro-v1:0", _converse_events_with(_bad_payload_crc_frame()), id="converse-payload-bit"),
    pytest.param("claude-3-haiku", _claude_stream_with(_bad_crc_frame()), id="claude-crc-byte"),
]


def _expect_text_then_crc_error(resp, took):
    assert took < 5, took
    assert resp.status == 200 and resp.content_type.startswith("text/event-stream"), resp
    err = stream_error(resp.body)
    assert err["type"] == "api_error" and "checksum" in err["message"].lower(), err
    datas = [d for _, d in parse_sse(resp.body)]
    assert datas[-1] == "[DONE]" and datas.count("[DONE]") == 1
    chunks = [json.loads(d) for d in datas[:-2]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "part", datas
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks), chunks


@pytest.mark.parametrize("model,events", BAD_CRC)
def test_bad_message_crc_mid_stream(fc, fakes, model, events):
    """A frame with a corrupt message CRC after good ones (each frame its own read here):
    the client gets the text so far, then exactly one in-band error event and [DONE];
    nothing after the corrupt frame is trusted (no finish_reason); the connection stays
    usable."""
    headers = {"x-fake-stream-events": json.dumps(events), "x-fake-chunk-delay-ms": "50"}
    on_one_connection(fc, ("POST", "/v1/chat/completions", schat(model), headers), _expect_text_then_crc_error)
    assert fakes.bedrock.last().response_status == 200


def _expect_text_then_error(resp, took):
    assert took < 5 and resp.status == 200, resp
    err = stream_error(resp.body)
    assert err["type"] == "api_error" and err["code"] == "upstream_stream_error", err
    datas = [d for _, d in parse_sse(resp.body)]
    chunks = [json.loads(d) for d in datas[:-2]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "part", datas


@pytest.mark.parametrize(
    "corrupt",
    [pytest.param(_bad_crc_frame(), id="message-crc"),
     pytest.param(b"\x00\x00\x00\x30\x00\x00\x00\x10\xde\xad\xbe\xef" + b"x" * 36, id="prelude-crc")],
)
def test_bad_crc_after_good_frames_in_the_same_read(fc, fakes, corrupt):
    one_write = CRC_GOOD + CRC_DELTA + corrupt  # a single HTTP chunk, so a single read in Envoy
    headers = {"x-fake-stream-events": json.dumps([{"raw_hex": one_write.hex()}])}
    on_one_connection(fc, ("POST", "/v1/chat/completions", schat("amazon.nova-pro-v1:0"), headers), _expect_text_then_error)


HTML_5XX = [
    # (model, upstream status, HTML body, status the client gets)
    pytest.param("gpt-4o", 502, "<html><body><h1>502 Bad Gateway</h1></body></html>", 502, id="openai-502-html"),
    pytest.param("gpt-4o", 503, "<!DOCTYPE html><html><title>Service Unavailable</title></html>", 503, id="openai-503-html"),
    pytest.param("claude-3-haiku", 503, "<html><body>503 Service Unavailable</body></html>", 502, id="bedrock-503-html"),
    pytest.param("amazon.nova-pro-v1:0", 500, "<html>" + "<p>filler</p>" * 400 + "</html>", 502, id="converse-500-long-html"),
]


@pytest.mark.parametrize("model,up_status,html,status", HTML_5XX)
def test_5xx_with_html_body(fc, fakes, model, up_status, html, status):
    """A proxy in front of the provider answers an HTML error page (no x-amzn-ErrorType, no
    OpenAI error JSON): the client gets a JSON upstream_error, never HTML. OpenAI upstream
    statuses are kept; a Bedrock answer without x-amzn-ErrorType becomes 502."""

    def expect(resp, took):
        err = assert_error(resp, status, "api_error", code="upstream_error")
        assert took < 5
        assert len(err["message"]) <= len(html)

    on_one_connection(fc, ("POST", "/v1/chat/completions", chat(model),
                           steer(status=up_status, body=html, content_type="text/html")), expect)
    fake = fakes.openai if model == "gpt-4o" else fakes.bedrock
    assert fake.requests[0].response_status == up_status


@pytest.mark.parametrize(
    "model,headers,status,code",
    [
        pytest.param("claude-3-haiku", steer(status=429, error_type="ThrottlingException"), 429, "rate_limit_exceeded", id="throttling-claude"),
        pytest.param("amazon.nova-pro-v1:0", steer(status=429, error_type="ThrottlingException"), 429, "rate_limit_exceeded", id="throttling-converse"),
        pytest.param("gpt-4o", steer(status=429), 429, "rate_limit_exceeded", id="throttling-openai"),
        pytest.param("claude-3-haiku", steer(status=200, body="garbage, not JSON", content_type="text/plain"), 502, "upstream_error", id="garbage-200"),
        pytest.param("amazon.titan-text-express-v1", steer(status=200, body='{"results": "nope"}'), 502, "upstream_error", id="garbage-json-200"),
        pytest.param("claude-3-haiku", steer(delay_ms=2500), 504, "upstream_timeout", id="slow-first-byte"),
    ],
)
def test_upstream_error_keeps_connection(fc, fakes, model, headers, status, code):
    def expect(resp, took):
        assert_error(resp, status, code=code)
        if status == 429:
            assert "retry-after" in resp.headers
        if status == 504:
            assert IDLE_S * 0.8 <= took < IDLE_S + 1, took  # the route's idle timeout, not the fake's 2.5 s
        else:
            assert took < 3, took

    on_one_connection(fc, ("POST", "/v1/chat/completions", chat(model), headers), expect)


@pytest.mark.parametrize("model", ["claude-3-haiku", "amazon.nova-pro-v1:0", "gpt-4o"])
def test_slow_first_byte_on_stream_request_is_504_json(fc, fakes, model):
    """Silent upstream on a stream request: nothing was sent yet, so a JSON 504, not SSE."""

    def expect(resp, took):
        assert_error(resp, 504, "timeout_error", code="upstream_timeout")
        assert IDLE_S * 0.8 <= took < IDLE_S + 1, took

    on_one_connection(fc, ("POST", "/v1/chat/completions", schat(model), steer(delay_ms=2500)), expect)


def test_upstream_reset_mid_body_translated_keeps_connection(fc, fakes):
    """Envoy's own 502 (turned into JSON by local_reply_config) keeps the client connection."""

    def expect(resp, took):
        err = assert_error(resp, 502, "api_error")
        assert "upstream_reset" in err["code"], err
        assert took < 3

    on_one_connection(fc, ("POST", "/v1/chat/completions", chat("claude-3-haiku", "x" * 2000), steer(reset="true")), expect)


# ---------------------------------------------------------------- resets where the answer already started


def _raw_exchange(port, body: dict, headers: dict, timeout=8.0):
    """Sends one request on a fresh connection and reads until the server closes it or the
    chunked body ends. Returns (status, headers, body bytes, how it ended, seconds)."""
    payload = json.dumps(body).encode()
    head = [f"POST /v1/chat/completions HTTP/1.1", "Host: gw", f"Authorization: Bearer {CLIENT_KEYS[0]}",
            "Content-Type: application/json", f"Content-Length: {len(payload)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    t = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        conn = http.client.HTTPResponse(s)
        conn.begin()
        hdrs = {k.lower(): v for k, v in conn.getheaders()}
        try:
            data = conn.read()
            ended = "complete"
        except http.client.IncompleteRead as e:
            data, ended = e.partial, "incomplete"
        except (ConnectionResetError, http.client.HTTPException) as e:
            data, ended = b"", f"error:{type(e).__name__}"
        return conn.status, hdrs, data, ended, time.monotonic() - t


RESET_STREAMS = [
    pytest.param("amazon.nova-pro-v1:0", "0", id="converse-after-headers"),
    pytest.param("amazon.nova-pro-v1:0", "1", id="converse-1-byte"),
    pytest.param("amazon.nova-pro-v1:0", "150", id="converse-mid-frame"),
    pytest.param("claude-3-haiku", "300", id="claude-mid-stream"),
    pytest.param("amazon.titan-text-express-v1", "200", id="titan-mid-stream"),
    pytest.param("gpt-4o", "250", id="openai-sse-mid-stream"),
]


@pytest.mark.parametrize("model,reset", RESET_STREAMS)
def test_upstream_reset_mid_stream(faults_gw, fc, fakes, model, reset):
    """What the client sees when the upstream connection is reset after the response
    started: status 200, text/event-stream, the events that were complete (possibly none),
    then the chunked body is never terminated and the connection closes (http.client:
    IncompleteRead; the OpenAI SDK: APIConnectionError). Never a [DONE], never a
    finish_reason, within the time it takes Envoy to notice the reset."""
    status, hdrs, data, ended, took = _raw_exchange(
        faults_gw.port, schat(model, "a long answer " * 30), {"x-fake-reset": reset, "x-fake-chunk-delay-ms": "5"}
    )
    assert took < 5, took
    assert status == 200 and hdrs["content-type"].startswith("text/event-stream"), (status, hdrs)
    assert ended != "complete", f"the stream ended as if it were complete: {data[-300:]!r}"
    assert b"[DONE]" not in data, data[-300:]
    complete_events = data[: data.rfind(b"\n\n") + 2] if b"\n\n" in data else b""
    for _, d in parse_sse(complete_events):
        ev = json.loads(d)
        assert "error" in ev or ev["choices"][0]["finish_reason"] is None, ev
    assert (fakes.openai.requests + fakes.bedrock.requests)[0].response_status == 200
    # A new connection works right away.
    assert fc.chat(chat("gpt-4o")).status == 200


def test_upstream_reset_mid_body_passthrough_closes_connection(faults_gw, fc, fakes):
    """OpenAI→OpenAI passes the answer through, so its headers (with content-length) were
    already sent: the client sees a short body and the connection closes."""
    status, hdrs, data, ended, took = _raw_exchange(faults_gw.port, chat("gpt-4o", "y" * 2000), {"x-fake-reset": "true"})
    assert took < 5
    assert status == 200 and ended != "complete" and len(data) < int(hdrs["content-length"])
    assert fc.chat(chat("gpt-4o")).status == 200


# ---------------------------------------------------------------- client disconnects


def _active(envoy, name):
    stats = envoy.stats(name)
    assert name in stats, f"no stat {name} in Envoy's admin output"
    return int(stats[name])


def _wait_idle(envoy, timeout=5.0):
    """Waits until Envoy has no active downstream or upstream requests (bounded)."""
    names = ["http.ingress.downstream_rq_active", "cluster.bedrock.upstream_rq_active", "cluster.openai.upstream_rq_active"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        vals = {n: _active(envoy, n) for n in names}
        if not any(vals.values()):
            return vals
        time.sleep(0.05)
    raise AssertionError(f"requests still active {timeout}s after the client went away: {vals}")


def _open_request(port, body: bytes, headers: dict, send_body_bytes=None):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = [f"POST /v1/chat/completions HTTP/1.1", "Host: gw", f"Authorization: Bearer {CLIENT_KEYS[0]}",
            "Content-Type: application/json", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[: send_body_bytes if send_body_bytes is not None else len(body)])
    return s


def _recv_until(s, marker: bytes, limit: float) -> bytes:
    s.settimeout(limit)
    buf = b""
    deadline = time.monotonic() + limit
    while marker not in buf and time.monotonic() < deadline:
        piece = s.recv(65536)
        if not piece:
            break
        buf += piece
    return buf


def _close(s, rst: bool):
    if rst:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


DISCONNECTS = [
    # (stage, model, streaming, steering, rst)
    pytest.param("mid-stream", "claude-3-haiku", True, {"x-fake-chunk-delay-ms": "150"}, False, id="claude-stream-fin"),
    pytest.param("mid-stream", "amazon.nova-pro-v1:0", True, {"x-fake-chunk-delay-ms": "150"}, True, id="converse-stream-rst"),
    pytest.param("mid-stream", "amazon.titan-text-express-v1", True, {"x-fake-chunk-delay-ms": "150"}, True, id="titan-stream-rst"),
    pytest.param("mid-stream", "gpt-4o", True, {"x-fake-chunk-delay-ms": "150"}, False, id="openai-stream-fin"),
    pytest.param("waiting-for-upstream", "claude-3-haiku", False, {"x-fake-delay-ms": "1500"}, True, id="translated-waiting-rst"),
    pytest.param("waiting-for-upstream", "amazon.nova-pro-v1:0", True, {"x-fake-delay-ms": "1500"}, False, id="stream-waiting-fin"),
    pytest.param("mid-request-body", "claude-3-haiku", False, {}, True, id="half-body-rst"),
    pytest.param("mid-request-body", "gpt-4o", False, {}, False, id="half-body-fin"),
    pytest.param("mid-upstream-body", "claude-3-haiku", False, {"x-fake-chunk-bytes": "40", "x-fake-chunk-delay-ms": "100"}, True,
                 id="translated-buffering-rst"),
]


@pytest.mark.parametrize("stage,model,streaming,steering,rst", DISCONNECTS)
def test_client_disconnect(faults_gw, fc, fakes, stage, model, streaming, steering, rst):
    """The client goes away at some stage of the exchange. Envoy must drop the upstream
    request too (no active requests left), the filter must not trap, and the next requests
    on a new connection (and the same worker threads) work."""
    text = "please answer with many words " * 8
    body = json.dumps(chat(model, text, stream=streaming)).encode()
    if stage == "mid-request-body":
        s = _open_request(faults_gw.port, body, steering, send_body_bytes=len(body) // 2)
        time.sleep(0.2)
    else:
        s = _open_request(faults_gw.port, body, steering)
        if stage == "mid-stream":
            got = _recv_until(s, b"data: ", 5)
            assert b" 200 " in got.split(b"\r\n", 1)[0] and b"data: " in got, got[:300]
        elif stage == "mid-upstream-body":
            fakes.bedrock.wait_for(1, timeout=5) if model != "gpt-4o" else fakes.openai.wait_for(1, timeout=5)
            time.sleep(0.3)
        else:
            (fakes.openai if model == "gpt-4o" else fakes.bedrock).wait_for(1, timeout=5)
            time.sleep(0.2)
    _close(s, rst)
    _wait_idle(faults_gw)
    if stage == "mid-request-body":
        assert fakes.upstream_requests() == [], "a half-sent request must never go upstream"
    assert fc.chat(chat("claude-3-haiku", "next")).status == 200
    assert fc.chat(schat("amazon.nova-pro-v1:0")).status == 200


def test_many_disconnects_then_normal_traffic(faults_gw, fc, fakes):
    """Forty streams abandoned at random points on both workers, then normal traffic."""
    import random

    rnd = random.Random(7)
    models = ["claude-3-haiku", "amazon.nova-pro-v1:0", "gpt-4o", "amazon.titan-text-express-v1"]
    for i in range(40):
        body = json.dumps(schat(models[i % 4], "word " * 40)).encode()
        s = _open_request(faults_gw.port, body, {"x-fake-chunk-delay-ms": "20"})
        _recv_until(s, b"data: ", 3) if rnd.random() < 0.7 else None
        time.sleep(rnd.random() * 0.05)
        _close(s, rst=rnd.random() < 0.5)
    _wait_idle(faults_gw, timeout=10)
    for m in models:
        assert fc.chat(chat(m, "after the storm")).status == 200


# ---------------------------------------------------------------- slow-loris request bodies


def _trickle(port, body: bytes, pieces: int, pause: float, chunked: bool, result: list):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            head = ["POST /v1/chat/completions HTTP/1.1", "Host: gw", f"Authorization: Bearer {CLIENT_KEYS[1]}",
                    "Content-Type: application/json"]
            head.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}")
            s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            size = -(-len(body) // pieces)
            for i in range(0, len(body), size):
                piece = body[i : i + size]
                s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                time.sleep(pause)
            if chunked:
                s.sendall(b"0\r\n\r\n")
            resp = http.client.HTTPResponse(s)
            resp.begin()
            result.append((resp.status, resp.read()))
    except Exception as e:  # reported by the test
        result.append(("error", repr(e)))


def test_slowloris_bodies_do_not_block_other_requests(faults_gw, fc, fakes):
    """Four clients trickle their request bodies over ~3 s (a piece every 100 ms, so Envoy's
    idle timeouts never fire); meanwhile normal requests on both workers are answered at
    normal speed, and the trickled requests complete correctly once their bodies are in."""
    results = [[] for _ in range(4)]
    threads = []
    for i in range(4):
        body = json.dumps(chat(["claude-3-haiku", "gpt-4o"][i % 2], f"slow body {i} " + "z" * 300)).encode()
        t = threading.Thread(target=_trickle, args=(faults_gw.port, body, 30, 0.1, i % 2 == 1, results[i]), daemon=True)
        t.start()
        threads.append(t)
    time.sleep(0.3)
    latencies = []
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        r = fc.chat(chat(["amazon.nova-pro-v1:0", "gpt-4o"][len(latencies) % 2], "meanwhile"), timeout=5)
        latencies.append(time.monotonic() - t0)
        assert r.status == 200, r
    assert len(latencies) >= 10 and max(latencies) < 1.0, latencies
    assert any(t.is_alive() for t in threads), "the slow bodies were still being sent while the others were served"
    for t in threads:
        t.join(timeout=20)
        assert not t.is_alive(), "a trickled request never completed"
    for i, res in enumerate(results):
        assert res and res[0][0] == 200, res
        assert json.loads(res[0][1])["choices"][0]["message"]["content"].startswith(f"echo: slow body {i} ")


def test_stalled_body_does_not_block_the_worker(faults_gw, fc, fakes):
    """A client sends half its body and stops. The harness (like plain Envoy) sets no
    request_timeout, so Envoy keeps that request until stream_idle_timeout (5 min) or the
    client leaves (`unigate serve` renders request_timeout: 300s and
    request_headers_timeout: 10s); what matters here is that it occupies no worker: other
    requests are served at normal speed meanwhile, and closing it cleans up."""
    stalled = [_open_request(faults_gw.port, json.dumps(chat("claude-3-haiku", "s" * 500)).encode(), {}, send_body_bytes=100)
               for _ in range(4)]
    try:
        for i in range(10):
            t0 = time.monotonic()
            assert fc.chat(chat("claude-3-haiku", f"meanwhile {i}"), timeout=5).status == 200
            assert time.monotonic() - t0 < 1.0
        assert fakes.bedrock.wait_for(10, timeout=1) and len(fakes.bedrock.requests) == 10, "stalled requests went upstream"
    finally:
        for s in stalled:
            _close(s, rst=False)
    _wait_idle(faults_gw)


# ---------------------------------------------------------------- upstream refused, sidecar down


@pytest.fixture(scope="module")
def refused_gw(start_envoy, fakes):
    """OpenAI's cluster points at a closed port, and so does the sidecar's."""
    cfg = default_plugin_config(fakes, sidecar_timeout_ms=1000)
    e = start_envoy("faults-refused", cfg, default_env(),
                    default_clusters(fakes, openai=closed_port(), unigate_sidecar=closed_port()))
    e.watch = VmWatch(e)
    return e


@pytest.mark.parametrize(
    "model,status,code",
    [pytest.param("gpt-4o", 502, "upstream_unreachable", id="upstream-refused"),
     pytest.param("claude-3-haiku", 503, "sidecar_unavailable", id="sidecar-down")],
)
def test_refused_keeps_connection(refused_gw, fakes, model, status, code):
    c = Client(refused_gw.url)
    conn = c.connection()
    try:
        for _ in range(2):
            t = time.monotonic()
            resp = c.request("POST", "/v1/chat/completions", chat(model), conn=conn)
            assert time.monotonic() - t < 3
            assert_error(resp, status, code=code)
            assert resp.headers.get("connection", "").lower() != "close"
            sock = conn.sock
            assert sock is not None
            # Nothing works upstream on this Envoy; a local endpoint on the same connection does.
            ok = c.request("GET", "/v1/models", conn=conn)
            assert ok.status == 200 and conn.sock is sock, "the client had to reconnect"
    finally:
        conn.close()
    assert fakes.upstream_requests() == []
    refused_gw.watch.check()


def test_sidecar_down_is_reported_as_sidecar_unavailable(refused_gw, fakes):
    resp = Client(refused_gw.url).chat(chat("claude-3-haiku"), timeout=10)
    assert_error(resp, 503, "api_error", code="sidecar_unavailable", message_contains="sidecar")


# ---------------------------------------------------------------- sidecar garbage / slow / expired


class SteerableSidecar(FakeSidecar):
    """FakeSidecar that can also answer an arbitrary status and body."""

    raw: "tuple | None" = None

    def handle(self, rec, steer):
        if self.raw is not None:
            if self.delay_ms:
                self.sleep(self.delay_ms / 1000)
            status, body = self.raw
            return Reply(status, [("content-type", "application/json")], body)
        return super().handle(rec, steer)


@pytest.fixture(scope="module")
def sidecar():
    with SteerableSidecar(token=SIDECAR_TOKEN) as s:
        s.raw = (200, b"not json")  # garbage from the very start: no good credentials get cached
        yield s


@pytest.fixture(scope="module")
def sidecar_gw(start_envoy, fakes, sidecar):
    cfg = default_plugin_config(fakes, sidecar_timeout_ms=500, credentials_refresh_seconds=1)
    e = start_envoy("faults-sidecar", cfg, default_env(), default_clusters(fakes, unigate_sidecar=sidecar.port))
    e.watch = VmWatch(e)
    return e


SIDECAR_GARBAGE = [
    pytest.param(200, b"not json", id="not-json"),
    pytest.param(200, b"", id="empty-200"),
    pytest.param(200, b"[1, 2]", id="json-array"),
    pytest.param(200, b'{"access_key_id": "AKID"}', id="no-secret"),
    pytest.param(200, b'{"access_key_id": "", "secret_access_key": "x"}', id="empty-key"),
    pytest.param(200, b'{"access_key_id": "A", "secret_access_key": "S", "expires_at": "soon"}', id="bad-expiry-type"),
    pytest.param(200, b'{"access_key_id": "A", "secret_access_key": "S", "session_token": 7}', id="bad-token-type"),
    pytest.param(200, b'{"access_key_id": "A", "secret_access_key": "S"' + b' ' * 20000, id="truncated-large"),
    pytest.param(500, b"<html>oops</html>", id="html-500"),
    pytest.param(418, b'{"error": {"message": "teapot"}}', id="unexpected-status"),
]


@pytest.mark.parametrize("status,body", SIDECAR_GARBAGE)
def test_sidecar_garbage(sidecar_gw, fakes, sidecar, status, body):
    """A sidecar answering garbage: 502 sidecar_error, nothing signed or sent to Bedrock,
    OpenAI still works on the same connection, no trap."""
    sidecar.raw = (status, body)
    sidecar.delay_ms = 0
    c = Client(sidecar_gw.url)

    def expect(resp, took):
        err = assert_error(resp, 502, "api_error", code="sidecar_error", message_contains="AWS credentials")
        assert took < 2, took
        assert DEFAULT_SECRET not in err["message"]

    on_one_connection(c, ("POST", "/v1/chat/completions", chat("claude-3-haiku"), {}), expect)
    assert fakes.bedrock.requests == []
    sidecar_gw.watch.check()


def test_sidecar_slow_is_bounded(sidecar_gw, fakes, sidecar):
    sidecar.raw = None
    sidecar.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN)
    sidecar.delay_ms = 3000  # far beyond sidecar_timeout_ms=500
    c = Client(sidecar_gw.url)
    try:
        def expect(resp, took):
            assert_error(resp, 503, "api_error", code="sidecar_unavailable")
            assert took < 1.5, took

        on_one_connection(c, ("POST", "/v1/chat/completions", chat("claude-3-haiku"), {}), expect)
        assert fakes.bedrock.requests == []
    finally:
        sidecar.delay_ms = 0
        sidecar.set_credentials(None)  # 503 "no credentials" until a later test sets some
    sidecar_gw.watch.check()


def test_sidecar_expired_credentials_are_not_used(sidecar_gw, fakes, sidecar):
    sidecar.raw = None
    sidecar.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, expires_in=-60)
    sidecar.clear()
    c = Client(sidecar_gw.url)
    try:
        t = time.monotonic()
        resp = c.chat(chat("claude-3-haiku"), timeout=10)
        assert time.monotonic() - t < 3
        assert fakes.bedrock.requests == [], "a request was signed with expired credentials and sent to Bedrock"
        assert_error(resp, 503, "api_error", message_contains="AWS credentials")
        assert len(sidecar.requests) >= 1
    finally:
        sidecar_gw.watch.check()


def test_sidecar_recovery_after_faults(sidecar_gw, fakes, sidecar):
    """Once the sidecar hands out valid credentials, Bedrock works on the same Envoy."""
    sidecar.raw = None
    sidecar.delay_ms = 0
    sidecar.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, expires_in=3600)
    c = Client(sidecar_gw.url)
    deadline = time.monotonic() + 5
    while True:
        resp = c.chat(chat("claude-3-haiku", "recovered"))
        if resp.status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert_chat_completion(resp, model="claude-3-haiku", text="echo: recovered")
    rec = fakes.bedrock.last()
    assert rec.sigv4.ok and rec.headers.get("x-amz-security-token") == DEFAULT_TOKEN
    sidecar_gw.watch.check()


# ---------------------------------------------------------------- last: nothing trapped anywhere


def test_no_vm_trapped_in_any_fault_envoy(faults_gw, refused_gw, sidecar_gw):
    for e in (faults_gw, refused_gw, sidecar_gw):
        e.watch.check()
        assert e.proc.poll() is None, f"Envoy {e.name} exited"
