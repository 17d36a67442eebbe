"""Base of the fake upstreams: a ThreadingHTTPServer on 127.0.0.1 in a background thread
that records every request and obeys per-request steering headers.

Steering headers (all optional, passed through the gateway untouched):

  x-fake-status: N            answer status N with the canned body below (instead of the
                              normal answer); validation of auth still happens first
  x-fake-error-type: NAME     with x-fake-status: sets x-amzn-ErrorType (Bedrock) / the
                              error type (OpenAI) of the default error body
  x-fake-body: TEXT           the exact response body to send (any status)
  x-fake-body-b64: B64        same, base64-encoded (for bytes a header cannot carry)
  x-fake-content-type: CT     content-type of a canned body (default application/json)
  x-fake-delay-ms: N          sleep N ms before sending the response headers
  x-fake-chunk-bytes: N       write the body in pieces of N bytes ...
  x-fake-chunk-delay-ms: N    ... with N ms between pieces (default 5)
  x-fake-reset: N|true        send the headers and N bytes (default: half) of the body,
                              then close the connection
  x-fake-stream-events: JSON  events to stream instead of the default echo (see each fake)
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable, Optional


@dataclass
class RecordedRequest:
    """One request as a fake received it."""

    server: str
    method: str
    path: str  # raw request target as received (percent-escapes kept)
    headers: dict  # lower-cased name -> value (repeated headers joined with ",")
    header_list: list  # [(lower-cased name, value)] in wire order
    body: bytes
    time: float
    chunked: bool = False  # request body came with transfer-encoding: chunked
    sigv4: Any = None  # fakes.sigv4.SigCheck for Bedrock
    response_status: Optional[int] = None
    response_headers: dict = field(default_factory=dict)
    response_body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def content_length(self) -> Optional[int]:
        v = self.headers.get("content-length")
        return int(v) if v is not None else None


@dataclass
class Reply:
    """A response the handler should send."""

    status: int
    headers: list  # [(name, value)]
    body: bytes = b""
    # For streams: an iterable of byte pieces sent with chunked transfer encoding.
    stream: Optional[Iterable[bytes]] = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class FakeServer:
    """Common machinery; subclasses implement `handle(rec, handler) -> Reply`."""

    name = "fake"

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._stop = threading.Event()
        fake = self

        class Handler(_Handler):
            owner = fake

        self._httpd = _Server((host, port), Handler)
        self._thread: Optional[threading.Thread] = None

    # ----- lifecycle -----
    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def host(self) -> str:
        return self._httpd.server_address[0]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "FakeServer":
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.name}-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ----- recording -----
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def last(self) -> RecordedRequest:
        reqs = self.requests
        assert reqs, f"{self.name}: no request received"
        return reqs[-1]

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[RecordedRequest]:
        """Waits (bounded) until at least `count` requests were recorded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reqs = self.requests
            if len(reqs) >= count:
                return reqs
            time.sleep(0.01)
        return self.requests

    def _record(self, rec: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(rec)

    def sleep(self, seconds: float) -> None:
        """Sleeps, but wakes up when the server stops."""
        self._stop.wait(seconds)

    # ----- to override -----
    def handle(self, rec: RecordedRequest, steer: dict) -> Reply:
        raise NotImplementedError

    # ----- helpers for subclasses -----
    @staticmethod
    def json_reply(status: int, obj: Any, headers: Optional[list] = None) -> Reply:
        body = json.dumps(obj, separators=(",", ":")).encode()
        return Reply(status, [("content-type", "application/json")] + (headers or []), body)

    def canned(self, rec: RecordedRequest, steer: dict) -> Optional[Reply]:
        """A canned reply from x-fake-status / x-fake-body, or None."""
        status = steer.get("status")
        body = steer.get("body")
        if status is None and body is None:
            return None
        status = int(status) if status is not None else 200
        if body is None:
            return self.default_error(status, steer.get("error-type"))
        headers = [("content-type", steer.get("content-type", "application/json"))]
        if steer.get("error-type"):
            headers += self.error_type_headers(steer["error-type"])
        return Reply(status, headers, body)

    def default_error(self, status: int, error_type: Optional[str]) -> Reply:
        return self.json_reply(status, {"error": {"message": f"canned {status}", "type": error_type}})

    def error_type_headers(self, error_type: str) -> list:
        return []


def parse_steering(headers: dict) -> dict:
    steer = {}
    for k, v in headers.items():
        if k.startswith("x-fake-"):
            steer[k[len("x-fake-") :]] = v
    if "body-b64" in steer:
        steer["body"] = base64.b64decode(steer.pop("body-b64"))
    elif "body" in steer:
        steer["body"] = steer["body"].encode("utf-8")
    return steer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FakeServer
    timeout = 300  # idle keep-alive connections end eventually, never during a test run

    def log_message(self, fmt, *args):  # keep test output clean
        pass

    def _read_body(self) -> tuple[bytes, bool]:
        te = (self.headers.get("transfer-encoding") or "").lower()
        if "chunked" in te:
            parts = []
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until the empty line
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(parts), True
        n = int(self.headers.get("content-length") or 0)
        return (self.rfile.read(n) if n else b""), False

    def _handle_any(self):
        body, chunked = self._read_body()
        header_list = [(k.lower(), v) for k, v in self.headers.items()]
        headers: dict = {}
        for k, v in header_list:
            headers[k] = v if k not in headers else headers[k] + "," + v
        rec = RecordedRequest(
            server=self.owner.name,
            method=self.command,
            path=self.path,
            headers=headers,
            header_list=header_list,
            body=body,
            time=time.time(),
            chunked=chunked,
        )
        steer = parse_steering(headers)
        try:
            reply = self.owner.handle(rec, steer)
        except Exception as e:  # a bug in a fake must be visible, not a hang
            reply = FakeServer.json_reply(500, {"message": f"fake {self.owner.name} crashed: {e!r}"})
        rec.response_status = reply.status
        rec.response_headers = {k.lower(): v for k, v in reply.headers}
        if reply.stream is None:
            rec.response_body = reply.body
        self.owner._record(rec)
        delay = int(steer.get("delay-ms", 0))
        if delay:
            self.owner.sleep(delay / 1000)
            if self.owner._stop.is_set():
                self.close_connection = True
                return
        try:
            self._send(reply, steer, rec)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True

    def _send(self, reply: Reply, steer: dict, rec: RecordedRequest):
        piece = int(steer.get("chunk-bytes", 0) or 0)
        pause = int(steer.get("chunk-delay-ms", 5)) / 1000
        reset = steer.get("reset")
        self.send_response_only(reply.status)
        for k, v in reply.headers:
            self.send_header(k, v)
        if reply.stream is not None:
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            data_pieces = list(reply.stream)
            sent = bytearray()
            if piece > 0:
                blob = b"".join(data_pieces)
                data_pieces = [blob[i : i + piece] for i in range(0, len(blob), piece)]
            total = sum(len(p) for p in data_pieces)
            limit = _reset_limit(reset, total)
            for i, p in enumerate(data_pieces):
                if limit is not None and len(sent) + len(p) > limit:
                    p = p[: limit - len(sent)]
                    if p:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                        sent += p
                    rec.response_body = bytes(sent)
                    self.wfile.flush()
                    self._abort()
                    return
                if p:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(p), p))
                    sent += p
                self.wfile.flush()
                if i + 1 < len(data_pieces) and (piece > 0 or steer.get("chunk-delay-ms")):
                    self.owner.sleep(pause)
            # Recorded before the last chunk: a test reads the record as soon as its client
            # has the whole stream.
            rec.response_body = bytes(sent)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
            return
        body = reply.body
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        limit = _reset_limit(reset, len(body))
        if limit is not None:
            self.wfile.write(body[:limit])
            self.wfile.flush()
            self._abort()
            return
        if piece > 0 and body:
            for i in range(0, len(body), piece):
                self.wfile.write(body[i : i + piece])
                self.wfile.flush()
                if i + piece < len(body):
                    self.owner.sleep(pause)
        else:
            self.wfile.write(body)
        self.wfile.flush()

    def _abort(self):
        """Closes the connection abruptly (RST) in the middle of a response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.wfile.close()
            self.rfile.close()
            self.connection.close()
        except OSError:
            pass

    def handle(self):
        try:
            super().handle()
        except (ValueError, OSError):
            # the connection was aborted on purpose, or the peer went away
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle_any


def _reset_limit(reset: Optional[str], total: int) -> Optional[int]:
    if reset is None:
        return None
    if reset.strip().isdigit():
        return min(int(reset), total)
    return total // 2
