"""The fake upstreams as a standalone process, and the client that reads what they received.

`python -m fakes` (see `main`) runs FakeOpenAI and FakeBedrock on fixed ports plus a small
control server, so the fakes can run where the tests cannot reach into their memory: in a
container of the compose stack (compose-tests/). The control server speaks JSON:

  GET  /health     200 once the fakes are listening
  GET  /requests   every recorded request of both fakes, oldest first (bodies base64)
  POST /clear      forget the recorded requests

`RemoteFakes(url)` is the test side: `requests()` gives back `RecordedRequest`s (with their
`SigCheck`) so the assertion helpers written for the in-process fakes work unchanged.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import signal
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

from .bedrock import FakeBedrock
from .openai import FakeOpenAI
from .server import RecordedRequest
from .sigv4 import SigCheck

_BYTES = ("body", "response_body")


def to_json(rec: RecordedRequest) -> dict:
    d = dataclasses.asdict(rec)
    for k in _BYTES:
        d[k] = base64.b64encode(d[k]).decode()
    d["header_list"] = [list(p) for p in d["header_list"]]
    return d


def from_json(d: dict) -> RecordedRequest:
    d = dict(d)
    for k in _BYTES:
        d[k] = base64.b64decode(d[k])
    d["header_list"] = [tuple(p) for p in d["header_list"]]
    if d.get("sigv4") is not None:
        d["sigv4"] = SigCheck(**d["sigv4"])
    return RecordedRequest(**d)


class RemoteFakes:
    """What the fakes behind a control URL received."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def _call(self, method: str, path: str, timeout: float = 10) -> bytes:
        req = urllib.request.Request(self.url + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read()

    def healthy(self) -> bool:
        try:
            return self._call("GET", "/health", timeout=2) == b"ok"
        except OSError:
            return False

    def requests(self, server: Optional[str] = None) -> list:
        recs = [from_json(d) for d in json.loads(self._call("GET", "/requests"))]
        return [r for r in recs if server is None or r.server == server]

    def clear(self) -> None:
        self._call("POST", "/clear")

    def wait_for(self, server: str, count: int = 1, timeout: float = 5.0) -> list:
        """Waits (bounded) until `server` recorded at least `count` requests whose response
        body is complete (a streamed body is recorded once all of it was written)."""
        deadline = time.monotonic() + timeout
        while True:
            recs = self.requests(server)
            done = [r for r in recs if r.response_body or r.response_status != 200]
            if len(done) >= count or time.monotonic() > deadline:
                return recs
            time.sleep(0.05)


def main(argv: Optional[list] = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m fakes", description="Fake OpenAI and Bedrock upstreams with a control port.")
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
    ap.add_argument("--openai-port", type=int, default=8000)
    ap.add_argument("--bedrock-port", type=int, default=8001)
    ap.add_argument("--control-port", type=int, default=8099)
    ap.add_argument("--openai-key", default="sk-upstream-test", help="the key FakeOpenAI accepts")
    ap.add_argument("--region", default="us-east-1", help="the region FakeBedrock verifies signatures for")
    args = ap.parse_args(argv)

    fakes = [
        FakeOpenAI(api_key=args.openai_key, host=args.host, port=args.openai_port),
        FakeBedrock(region=args.region, host=args.host, port=args.bedrock_port),
    ]

    class Control(BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            pass

        def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("content-type", ctype)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/health":
                self._reply(200, b"ok")
            elif self.path == "/requests":
                recs = sorted((r for f in fakes for r in f.requests), key=lambda r: r.time)
                self._reply(200, json.dumps([to_json(r) for r in recs]).encode(), "application/json")
            else:
                self._reply(404, b"not found")

        def do_POST(self):
            if self.path == "/clear":
                for f in fakes:
                    f.clear()
                self._reply(200, b"cleared")
            else:
                self._reply(404, b"not found")

    control = ThreadingHTTPServer((args.host, args.control_port), Control)
    control.daemon_threads = True
    stop = threading.Event()
    # As PID 1 in a container a signal without a handler is ignored: stop on TERM and INT.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    for f in fakes:
        f.start()
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(f"fakes: openai :{args.openai_port}, bedrock :{args.bedrock_port}, control :{args.control_port}", flush=True)
    stop.wait()
    control.shutdown()
    for f in fakes:
        f.stop()
