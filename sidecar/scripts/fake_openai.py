#!/usr/bin/env python3
"""A tiny fake OpenAI server for smoke tests: answers POST .../chat/completions with a fixed
completion and GET .../models with one model. Usage: fake_openai.py PORT (binds 127.0.0.1)."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _send(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        length = int(self.headers.get("content-length") or 0)
        req = json.loads(self.rfile.read(length) or b"{}")
        if not self.path.endswith("/chat/completions"):
            return self._send(404, {"error": {"message": "no such path", "type": "invalid_request_error", "param": None, "code": None}})
        auth = self.headers.get("authorization", "")
        self._send(200, {
            "id": "chatcmpl-smoke", "object": "chat.completion", "created": 1,
            "model": req.get("model", "?"),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"fake openai saw auth={auth!r}"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    def do_GET(self):
        self._send(200, {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model", "created": 1, "owned_by": "openai"}]})

    def log_message(self, fmt, *args):
        sys.stderr.write("fake-openai: " + (fmt % args) + "\n")


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
