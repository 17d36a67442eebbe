"""HTTP-level behaviour a real client exercises: `Expect: 100-continue` uploads (what curl
sends for bodies over 1 KiB) and many concurrent requests on both workers without cross-talk."""

from __future__ import annotations

import json
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from wasm_checks import assert_chat_completion


def _recv_until(sock, marker: bytes, limit: float) -> bytes:
    sock.settimeout(limit)
    buf = b""
    while marker not in buf:
        piece = sock.recv(65536)
        if not piece:
            break
        buf += piece
    return buf


@pytest.mark.parametrize("model", ["claude-3-haiku", "gpt-4o"])
def test_expect_100_continue(gateway, fakes, model):
    text = "c" * 5000
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": text}]}).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer test-key-1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as s:
        s.sendall(head)
        interim = _recv_until(s, b"\r\n\r\n", 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue"), interim
        s.sendall(body)
        resp = _recv_until(s, b"\r\n\r\n", 10)
        status_line, _, rest = resp.partition(b"\r\n")
        assert status_line == b"HTTP/1.1 200 OK", resp[:300]
        headers = dict(
            (k.strip().lower(), v.strip()) for k, _, v in (ln.decode().partition(":") for ln in rest.split(b"\r\n\r\n")[0].split(b"\r\n"))
        )
        n = int(headers["content-length"])
        payload = rest.split(b"\r\n\r\n", 1)[1]
        while len(payload) < n:
            payload += s.recv(65536)
    answer = json.loads(payload)
    assert answer["choices"][0]["message"]["content"] == "echo: " + text
    rec = (fakes.openai if model == "gpt-4o" else fakes.bedrock).last()
    assert "expect" not in rec.headers and rec.content_length == len(rec.body)


def test_concurrent_requests_do_not_mix(client, fakes):
    models = ["claude-3-haiku", "gpt-4o", "amazon.nova-pro-v1:0", "amazon.titan-text-express-v1"]
    jobs = [(models[i % len(models)], f"request number {i} " + "x" * (i * 37)) for i in range(32)]

    def run(job):
        model, text = job
        return model, text, client.chat({"model": model, "messages": [{"role": "user", "content": text}]}, timeout=20)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, jobs))
    for model, text, resp in results:
        if model == "gpt-4o":
            assert resp.status == 200 and resp.json()["choices"][0]["message"]["content"] == "echo: " + text, resp
        else:
            assert_chat_completion(resp, model=model, text="echo: " + text)
    assert len(fakes.openai.requests) == 8 and len(fakes.bedrock.requests) == 24
    assert all(r.sigv4.ok for r in fakes.bedrock.requests)
