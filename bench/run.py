#!/usr/bin/env python3
"""`make bench`: unigate side by side with plain Envoy and with LiteLLM, in one run.

Topology (all on 127.0.0.1):
  wrk (core 0) ─► gateway under test (core 1) ─► fake upstream: an Envoy direct_response
  listener (core 0) serving canned Bedrock / OpenAI bodies and streams.

Configurations (rows), measured in turn with the same load generator and upstream; each row's
baseline (the "vs" column) is in BASELINE:
  passthrough, passthrough_stream, passthrough_emb
                     plain Envoy proxying the OpenAI chat body, a 300-frame stream and an
                     OpenAI embeddings request to the fake upstream (the baselines)
  envoy_only         unigate's own rendered Envoy configuration (`unigate serve --print-config`)
                     without the Wasm filter: the cost of the product's Envoy config alone
  floor_filter       `unigate serve` with build/unigate-floor.wasm (src/floor.rs): the least a
                     Wasm filter in unigate's place does (hold, read and rewrite the request, read
                     the answer): the cost of Envoy's Wasm machinery
  unigate_*          unigate as `make run` starts it (Envoy + unigate.wasm + sidecar), one process
                     for all these rows:
    unigate_bedrock / unigate_stream       /v1/chat/completions, OpenAI body -> Bedrock Claude
    unigate_openai                         /v1/chat/completions relayed to OpenAI
    unigate_messages / _stream             /v1/messages (Anthropic) -> Bedrock InvokeModel
    unigate_responses / _stream            /v1/responses (OpenAI Responses) -> Bedrock Claude
    unigate_invoke / _stream               /model/{id}/invoke[-with-response-stream], relayed
                                           byte-for-byte and re-signed
    unigate_titan16 / _titan1 / _cohere96  /v1/embeddings -> Bedrock Titan (16 callouts, 1) and
                                           Cohere (one call, 96 texts)
    unigate_openai_emb                     /v1/embeddings relayed to OpenAI
  litellm / litellm_stream                 LiteLLM proxy (own venv) in front of the same upstream

Usage: .venv/bin/python bench/run.py [--duration 10] [--connections 1,16,64] [--skip-litellm]
                                     [--only ROW[,ROW...]]  (those rows plus their baselines)
Writes bench/results/<time>.json and docs/benchmarks.md.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
STREAM_CHUNKS = 300
API_KEY = "bench-key"
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIDBENCHMARK",
    "AWS_SECRET_ACCESS_KEY": "benchmark-secret",
    "AWS_SESSION_TOKEN": "benchmark-session-token",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find(path_or_name):
    if os.path.sep in path_or_name:
        return path_or_name if os.access(path_or_name, os.X_OK) else None
    return shutil.which(path_or_name)


# ---------------------------------------------------------------- canned upstream answers

def chat_body(model, stream=False):
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    for i in range(12):
        role = "user" if i % 2 == 0 else "assistant"
        messages.append({"role": role, "content": "Tell me something interesting about the history of computing, with a date and a name. " * 1})
    messages.append({"role": "user", "content": "One more, please."})
    body = {"model": model, "messages": messages, "max_tokens": 256, "temperature": 0.7}
    if stream:
        body["stream"] = True
    data = json.dumps(body).encode()
    return data


SYSTEM = "You are a helpful assistant."
TEXTS16 = [f"Document {i}: the history of computing, with a date and a name." for i in range(16)]
TEXTS96 = [f"Document {i}: the history of computing, with a date and a name." for i in range(96)]
TITAN_DIMS = 1024
OPENAI_EMB_DIMS = 1536


def turns():
    """The conversation of chat_body without its system message (user and assistant alternate)."""
    out = []
    for i in range(12):
        role = "user" if i % 2 == 0 else "assistant"
        out.append({"role": role, "content": "Tell me something interesting about the history of computing, with a date and a name. "})
    out.append({"role": "user", "content": "One more, please."})
    return out


def messages_body(stream=False):
    """Anthropic Messages API (/v1/messages), the same conversation as chat_body."""
    body = {"model": "claude-3-haiku", "system": SYSTEM, "messages": turns(), "max_tokens": 256, "temperature": 0.7}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def responses_body(stream=False):
    """OpenAI Responses API (/v1/responses), the same conversation as chat_body."""
    body = {"model": "claude-3-haiku", "instructions": SYSTEM, "input": turns(), "max_output_tokens": 256, "temperature": 0.7}
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


def invoke_body():
    """Bedrock InvokeModel body for Claude (the Bedrock runtime door relays it unchanged)."""
    return json.dumps({"anthropic_version": "bedrock-2023-05-31", "system": SYSTEM, "messages": turns(),
                       "max_tokens": 256, "temperature": 0.7}).encode()


def embeddings_body(model, texts):
    """OpenAI Embeddings; base64 because that is what the openai SDK sends by default."""
    return json.dumps({"model": model, "input": texts, "encoding_format": "base64"}).encode()


def frame(event_type, payload):
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")):
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
    total = 12 + len(headers) + len(payload) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    msg = prelude + headers + payload
    return msg + struct.pack(">I", zlib.crc32(msg) & 0xFFFFFFFF)


def claude_chunk(event):
    raw = json.dumps(event).encode()
    return frame("chunk", json.dumps({"bytes": base64.b64encode(raw).decode(), "p": "abcdefghij"}).encode())


def claude_stream():
    out = claude_chunk({"type": "message_start", "message": {"id": "msg_bdrk_bench", "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307", "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 400, "output_tokens": 1}}})
    out += claude_chunk({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    for i in range(STREAM_CHUNKS):
        out += claude_chunk({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": f" token{i}"}})
    out += claude_chunk({"type": "content_block_stop", "index": 0})
    out += claude_chunk({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": STREAM_CHUNKS}})
    out += claude_chunk({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 400, "outputTokenCount": STREAM_CHUNKS, "invocationLatency": 900, "firstByteLatency": 100}})
    return out


def openai_stream():
    base = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1763758800, "model": "gpt-4o"}
    parts = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
    parts += [dict(base, choices=[{"index": 0, "delta": {"content": f" token{i}"}, "finish_reason": None}]) for i in range(STREAM_CHUNKS)]
    parts.append(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    parts.append(dict(base, choices=[], usage={"prompt_tokens": 400, "completion_tokens": STREAM_CHUNKS, "total_tokens": 400 + STREAM_CHUNKS}))
    return ("".join(f"data: {json.dumps(p)}\n\n" for p in parts) + "data: [DONE]\n\n").encode()


CLAUDE_ANSWER = json.dumps({"id": "msg_bdrk_bench", "type": "message", "role": "assistant", "model": "claude-3-haiku-20240307", "content": [{"type": "text", "text": "Ada Lovelace published the first algorithm in 1843. " * 6}], "stop_reason": "end_turn", "stop_sequence": None, "usage": {"input_tokens": 400, "output_tokens": 96}}).encode()
OPENAI_ANSWER = json.dumps({"id": "chatcmpl-bench", "object": "chat.completion", "created": 1763758800, "model": "gpt-4o", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Ada Lovelace published the first algorithm in 1843. " * 6}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 400, "completion_tokens": 96, "total_tokens": 496}}).encode()


def short_floats(rng, n):
    """Vector components written as short decimals, as Bedrock writes them."""
    return [round(rng.uniform(-0.1, 0.1), 6) for _ in range(n)]


def titan_answer():
    v = short_floats(random.Random(1), TITAN_DIMS)
    return json.dumps({"embedding": v, "embeddingsByType": {"float": v}, "inputTextTokenCount": 8}).encode()


def cohere_answer():
    """One vector per text: the gateway checks that Cohere answers as many as it was sent."""
    rng = random.Random(96)
    return json.dumps({"id": "bench", "response_type": "embeddings_by_type", "texts": [t.lower() for t in TEXTS96],
                       "embeddings": {"float": [short_floats(rng, TITAN_DIMS) for _ in TEXTS96]}}).encode()


def openai_embeddings_answer():
    rng = random.Random(1536)
    data = [{"object": "embedding", "index": i,
             "embedding": base64.b64encode(struct.pack(f"<{OPENAI_EMB_DIMS}f", *short_floats(rng, OPENAI_EMB_DIMS))).decode()}
            for i in range(len(TEXTS16))]
    return json.dumps({"object": "list", "data": data, "model": "text-embedding-3-small",
                       "usage": {"prompt_tokens": 128, "total_tokens": 128}}).encode()


def upstream_config(port, admin):
    """The fake upstream: Envoy direct_response answers; a buffer filter reads the request body
    first so HTTP/1.1 connections are reused (otherwise it answers early and closes).
    Routes are tried in order, first match wins: the embedding models before the generic
    InvokeModel route, the OpenAI embeddings path before the chat catch-all. The Bedrock
    routes carry the headers real Bedrock sends (request id; on InvokeModel answers the token
    counts, from which the gateway reads usage for relayed and embedding calls)."""
    def route(match, body, content_type, headers=()):
        return {
            "match": match,
            "direct_response": {"status": 200, "body": {"inline_bytes": base64.b64encode(body).decode()}},
            "response_headers_to_add": [{"header": {"key": k, "value": v}} for k, v in (("content-type", content_type),) + tuple(headers)],
        }
    rid = ("x-amzn-requestid", "5b3a8f6e-0000-4000-8000-00000000bench")
    routes = [
        route({"safe_regex": {"regex": r"/model/amazon\.titan-embed-text-v2.*/invoke"}}, titan_answer(), "application/json",
              (rid, ("x-amzn-bedrock-input-token-count", "8"))),
        route({"safe_regex": {"regex": r"/model/cohere\.embed.*/invoke"}}, cohere_answer(), "application/json",
              (rid, ("x-amzn-bedrock-input-token-count", "768"))),
        route({"safe_regex": {"regex": "/model/.*/invoke-with-response-stream"}}, claude_stream(), "application/vnd.amazon.eventstream", (rid,)),
        route({"safe_regex": {"regex": "/model/.*/invoke"}}, CLAUDE_ANSWER, "application/json",
              (rid, ("x-amzn-bedrock-input-token-count", "400"), ("x-amzn-bedrock-output-token-count", "96"))),
        route({"prefix": "/v1/embeddings"}, openai_embeddings_answer(), "application/json"),
        route({"prefix": "/", "headers": [{"name": "accept", "string_match": {"exact": "text/event-stream"}}]}, openai_stream(), "text/event-stream"),
        route({"prefix": "/", "headers": [{"name": "x-bench-stream", "present_match": True}]}, claude_stream(), "application/vnd.amazon.eventstream"),
        route({"prefix": "/"}, OPENAI_ANSWER, "application/json"),
    ]
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": [{
            "name": "fake",
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "per_connection_buffer_limit_bytes": 8 << 20,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                    "stat_prefix": "fake",
                    # 4 MiB: the Cohere answer (96 vectors of 1024 decimals) is ~1 MB.
                    "route_config": {"max_direct_response_body_size_bytes": 4 << 20, "virtual_hosts": [{"name": "fake", "domains": ["*"], "routes": routes}]},
                    "http_filters": [
                        {"name": "envoy.filters.http.buffer", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer", "max_request_bytes": 8 << 20}},
                        {"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
                    ],
                },
            }]}],
        }]},
    }


def passthrough_config(port, admin, upstream):
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "gw",
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "per_connection_buffer_limit_bytes": 34603008,
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "gw",
                        "route_config": {"virtual_hosts": [{"name": "gw", "domains": ["*"], "routes": [
                            {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "0s", "idle_timeout": "600s"}}]}]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                    },
                }]}],
            }],
            "clusters": [{
                "name": "upstream", "type": "STATIC", "connect_timeout": "2s",
                "per_connection_buffer_limit_bytes": 34603008,
                "load_assignment": {"cluster_name": "upstream", "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": upstream}}}}]}]},
            }],
        },
    }


# ---------------------------------------------------------------- processes and measurement

class Proc:
    def __init__(self, name, argv, env=None, cpu=None, log=None):
        self.name = name
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu)] + argv
        self.log = open(log or os.devnull, "wb")
        self.p = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def pids(self):
        """This process and its children (Envoy under `unigate serve`)."""
        out = [self.p.pid]
        try:
            for line in subprocess.run(["ps", "-o", "pid=", "--ppid", str(self.p.pid)], capture_output=True, text=True, timeout=5).stdout.split():
                out.append(int(line))
        except Exception:
            pass
        return out

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=15)
            except Exception:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(timeout=5)
        self.log.close()


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


def rss_kb(pids, field="VmRSS"):
    total = 0
    for pid in pids:
        try:
            for line in open(f"/proc/{pid}/status"):
                if line.startswith(field + ":"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def wait_http(url, timeout=60, headers=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            req = urllib.request.Request(url, headers=headers or {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status < 500:
                    return time.time()
        except Exception:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up within {timeout}s")


LUA = """
wrk.method = "POST"
%s
local f = io.open("%s", "rb")
wrk.body = f:read("*all")
f:close()
"""

# What every row sends unless it says otherwise (OpenAI's clients).
DEFAULT_HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}


def lua_script(body, headers):
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as bf:
        bf.write(body)
    lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lf:
        lf.write(LUA % (lines, bf.name))
    return lf.name, bf.name


def wrk(url, body, connections, duration, headers=None):
    lua, bodyfile = lua_script(body, headers or DEFAULT_HEADERS)
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "30s", "-s", lua, url]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", "0"] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    os.unlink(lua)
    os.unlink(bodyfile)
    return parse_wrk(out)


def parse_wrk(out):
    def ms(v, unit):
        return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    res = {"raw": out}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = int(m.group(1)) if m else 0
    for pct in ("50", "99"):
        m = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)", out)
        res[f"p{pct}_ms"] = ms(m.group(1), m.group(2)) if m else None
    if not res["requests"]:  # nothing completed in the window: wrk's 0.00us latencies mean nothing
        res["p50_ms"] = res["p99_ms"] = None
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["errors"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = m.group(1) if m else ""
    return res


# ---------------------------------------------------------------- answer checks (check_once)

def expect(cond, what, data):
    if not cond:
        raise AssertionError(f"{what}; answer starts {data[:300]!r}")


def check_chat(data):
    j = json.loads(data)
    expect(j.get("object") == "chat.completion" and j["choices"][0]["message"]["content"], "not a chat completion", data)


def check_chat_stream(data):
    expect(data.rstrip().endswith(b"data: [DONE]"), "the stream does not end with data: [DONE]", data)
    expect(data.count(b"\ndata: ") + 1 >= STREAM_CHUNKS, f"fewer than {STREAM_CHUNKS} chunks", data)


def check_claude_event_stream(data):
    expect(data == claude_stream(), "not the canned Bedrock event stream, byte for byte", data)


def check_invoke(data):
    expect(data == CLAUDE_ANSWER, "not the canned InvokeModel answer, byte for byte", data)


def check_messages(data):
    j = json.loads(data)
    expect(j.get("type") == "message" and j.get("role") == "assistant", "not a Messages answer (type=message)", data)
    expect(j["content"][0]["type"] == "text" and j["content"][0]["text"], "no text block", data)
    expect(j.get("usage", {}).get("input_tokens") == 400, "usage.input_tokens is not the upstream's 400", data)


def check_messages_stream(data):
    expect(b"event: message_stop" in data, "no message_stop event", data)
    expect(data.count(b"event: content_block_delta") >= STREAM_CHUNKS, f"fewer than {STREAM_CHUNKS} content_block_delta events", data)


def check_responses(data):
    j = json.loads(data)
    expect(j.get("object") == "response" and j.get("status") == "completed", "not a completed Responses answer (object=response)", data)
    expect(any(item.get("type") == "message" for item in j.get("output", [])), "no message output item", data)


def check_responses_stream(data):
    expect(b"event: response.completed" in data, "no response.completed event", data)
    expect(data.count(b"event: response.output_text.delta") >= STREAM_CHUNKS, f"fewer than {STREAM_CHUNKS} output_text deltas", data)


def check_embeddings(n, dims):
    def check(data):
        j = json.loads(data)
        expect(j.get("object") == "list" and len(j.get("data", [])) == n, f"not a list of {n} embeddings", data)
        expect([d["index"] for d in j["data"]] == list(range(n)), "embeddings out of order", data)
        expect(all(len(base64.b64decode(d["embedding"])) == 4 * dims for d in j["data"]), f"not base64 of {dims} float32", data)
        expect(j.get("usage", {}).get("prompt_tokens", 0) > 0, "no usage", data)
    return check


def check_once(url, body, headers=None, check=None):
    """One request before a row is measured: a 200, and the answer has the row's shape."""
    req = urllib.request.Request(url, data=body, headers=headers or DEFAULT_HEADERS)
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
        assert r.status == 200, (r.status, data[:300])
    if check:
        check(data)
    return data


# ---------------------------------------------------------------- rows

class Spec:
    """One row: which gateway serves it, what wrk sends, how its answer is checked."""

    def __init__(self, name, gateway, path, body, check, headers=None, chunks=1, texts=1):
        self.name, self.gateway, self.path, self.body, self.check = name, gateway, path, body, check
        self.headers = headers or DEFAULT_HEADERS
        self.chunks, self.texts = chunks, texts


# The row each row is compared with (the "vs" column and the added CPU); rows without one are
# compared in the report's own lines (embeddings).
BASELINE = {
    "envoy_only": "passthrough", "floor_filter": "passthrough",
    "unigate_bedrock": "passthrough", "unigate_openai": "passthrough", "unigate_messages": "passthrough",
    "unigate_responses": "passthrough", "unigate_invoke": "passthrough", "litellm": "passthrough",
    "unigate_stream": "passthrough_stream", "unigate_messages_stream": "passthrough_stream",
    "unigate_responses_stream": "passthrough_stream", "unigate_invoke_stream": "passthrough_stream",
    "litellm_stream": "passthrough_stream",
    "unigate_openai_emb": "passthrough_emb",
}
# Rows another row's derived comparisons need (run with it under --only).
NEEDS = {"unigate_titan16": ["unigate_titan1"], "unigate_cohere96": ["unigate_titan16"]}
TRANSLATED = ["unigate_bedrock", "unigate_responses"]
RELAYED = ["unigate_openai", "unigate_messages", "unigate_invoke"]
STREAMS = ["unigate_stream", "unigate_messages_stream", "unigate_responses_stream", "unigate_invoke_stream"]
INVOKE_PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0"  # the colon encoded, as boto3 sends it


def row_specs():
    """Every row, in the order measured (grouped by the gateway process that serves it)."""
    chat = "/v1/chat/completions"
    anthropic = {"Content-Type": "application/json", "x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    bedrock = {"Content-Type": "application/json", "Accept": "application/json", "Authorization": f"Bearer {API_KEY}"}
    openai_body, claude_body = chat_body("gpt-4o"), chat_body("claude-3-haiku")
    claude_stream_body = chat_body("claude-3-haiku", stream=True)
    openai16 = embeddings_body("text-embedding-3-small", TEXTS16)
    stream = {"chunks": STREAM_CHUNKS}
    return [
        Spec("passthrough", "plain", chat, openai_body, check_chat),
        Spec("passthrough_stream", "plain", chat, openai_body, check_claude_event_stream, dict(DEFAULT_HEADERS, **{"x-bench-stream": "1"}), **stream),
        Spec("passthrough_emb", "plain", "/v1/embeddings", openai16, check_embeddings(16, OPENAI_EMB_DIMS), texts=16),
        Spec("envoy_only", "envoy_only", chat, openai_body, check_chat, dict(DEFAULT_HEADERS, **{"x-unigate-cluster": "openai"})),
        Spec("floor_filter", "floor", chat, openai_body, check_chat),
        Spec("unigate_bedrock", "unigate", chat, claude_body, check_chat),
        Spec("unigate_stream", "unigate", chat, claude_stream_body, check_chat_stream, **stream),
        Spec("unigate_openai", "unigate", chat, openai_body, check_chat),
        Spec("unigate_messages", "unigate", "/v1/messages", messages_body(), check_messages, anthropic),
        Spec("unigate_messages_stream", "unigate", "/v1/messages", messages_body(stream=True), check_messages_stream, anthropic, **stream),
        Spec("unigate_responses", "unigate", "/v1/responses", responses_body(), check_responses),
        Spec("unigate_responses_stream", "unigate", "/v1/responses", responses_body(stream=True), check_responses_stream, **stream),
        Spec("unigate_invoke", "unigate", INVOKE_PATH + "/invoke", invoke_body(), check_invoke, bedrock),
        Spec("unigate_invoke_stream", "unigate", INVOKE_PATH + "/invoke-with-response-stream", invoke_body(), check_claude_event_stream,
             {"Content-Type": "application/json", "X-Amzn-Bedrock-Accept": "application/json", "Authorization": f"Bearer {API_KEY}"}, **stream),
        Spec("unigate_titan16", "unigate", "/v1/embeddings", embeddings_body("amazon.titan-embed-text-v2:0", TEXTS16), check_embeddings(16, TITAN_DIMS), texts=16),
        Spec("unigate_titan1", "unigate", "/v1/embeddings", embeddings_body("amazon.titan-embed-text-v2:0", TEXTS16[0]), check_embeddings(1, TITAN_DIMS)),
        Spec("unigate_cohere96", "unigate", "/v1/embeddings", embeddings_body("cohere.embed-english-v3", TEXTS96), check_embeddings(96, TITAN_DIMS), texts=96),
        Spec("unigate_openai_emb", "unigate", "/v1/embeddings", openai16, check_embeddings(16, OPENAI_EMB_DIMS), texts=16),
        Spec("litellm", "litellm", chat, claude_body, check_chat),
        Spec("litellm_stream", "litellm", chat, claude_stream_body, check_chat_stream, **stream),
    ]


def select_rows(only, skip_litellm):
    """The row names to run: all, or `only` plus the rows they are compared with."""
    names = [s.name for s in row_specs()]
    if only:
        want = [n.strip() for n in only.split(",") if n.strip()]
        unknown = [n for n in want if n not in names]
        if unknown:
            sys.exit(f"bench: unknown row(s) {', '.join(unknown)}; rows: {', '.join(names)}")
        todo, chosen = list(want), set()
        while todo:
            n = todo.pop()
            if n not in chosen:
                chosen.add(n)
                todo += ([BASELINE[n]] if n in BASELINE else []) + NEEDS.get(n, [])
    else:
        chosen = set(names)
    if skip_litellm:
        chosen -= {"litellm", "litellm_stream"}
    return [n for n in names if n in chosen]


# ---------------------------------------------------------------- measurement

class RssSampler:
    """The gateway processes' summed RSS, sampled every 0.2 s while a cell runs (VmHWM is a
    per-process lifetime peak, so it cannot show what one row needed)."""

    def __init__(self, pids):
        self.pids, self.peak, self.stop_ = pids, 0, threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while not self.stop_.is_set():
            self.peak = max(self.peak, rss_kb(self.pids))
            self.stop_.wait(0.2)

    def stop(self):
        self.stop_.set()
        self.t.join()
        return self.peak / 1024.0


def measure(spec, url, procs, conns, duration):
    """Checks one answer, warms up, then runs wrk at each connection count; returns rows with
    rps, latency, CPU/1000 and RSS."""
    rows = []
    pids = [pid for p in procs for pid in p.pids()]
    check_once(url, spec.body, spec.headers, spec.check)
    wrk(url, spec.body, 4, 2, spec.headers)  # warm-up
    for c in conns:
        cpu0 = cpu_seconds(pids)
        sampler = RssSampler(pids)
        r = wrk(url, spec.body, c, duration, spec.headers)
        cell_peak = sampler.stop()
        cpu1 = cpu_seconds(pids)
        row = {
            "config": spec.name, "connections": c, "rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "requests": r["requests"], "errors": r["errors"], "socket_errors": r["socket_errors"],
            "cpu_s_per_1000": (cpu1 - cpu0) / (r["requests"] / 1000.0) if r["requests"] else None,
            "rss_peak_mb": rss_kb(pids, "VmHWM") / 1024.0, "rss_cell_peak_mb": cell_peak,
        }
        if spec.chunks > 1:
            row["chunks_per_s"] = r["rps"] * spec.chunks
        if spec.texts > 1:
            row["texts_per_s"] = r["rps"] * spec.texts
        rows.append(row)
        print(f"  {spec.name:24s} c={c:<3d} {r['rps']:>9.1f} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  "
              f"cpu/1000 {row['cpu_s_per_1000'] and round(row['cpu_s_per_1000'], 3)} s  errors {r['errors']} {r['socket_errors']}", flush=True)
    return rows


def concurrent_streams_rss(url, body, procs, n=200, seconds=8):
    """Envoy RSS before and while `n` streams run concurrently."""
    pids = [pid for p in procs for pid in p.pids()]
    before = rss_kb(pids)
    lua, bodyfile = lua_script(body, DEFAULT_HEADERS)
    argv = ["wrk", "-t2", f"-c{n}", f"-d{seconds}s", "--timeout", "30s", "-s", lua, url]
    w = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = before
    t_end = time.time() + seconds
    while time.time() < t_end:
        peak = max(peak, rss_kb(pids))
        time.sleep(0.2)
    out = w.communicate(timeout=60)[0]
    os.unlink(lua)
    os.unlink(bodyfile)
    return {"streams": n, "rss_before_mb": before / 1024.0, "rss_peak_mb": peak / 1024.0,
            "added_mb": (peak - before) / 1024.0, "rps": parse_wrk(out)["rps"]}


# ---------------------------------------------------------------- LiteLLM

def litellm_bin():
    venv = os.path.join(ROOT, ".bench-venv")
    exe = os.path.join(venv, "bin", "litellm")
    if not os.path.exists(exe):
        print("bench: installing LiteLLM into .bench-venv (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "litellm[proxy]==1.80.*"], check=False)
        if not os.path.exists(exe):
            subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "litellm[proxy]"], check=True)
    return exe


def litellm_version(exe):
    out = subprocess.run([os.path.join(os.path.dirname(exe), "pip"), "show", "litellm"], capture_output=True, text=True).stdout
    m = re.search(r"Version: (\S+)", out)
    return m.group(1) if m else "?"


# ---------------------------------------------------------------- report

def fmt(v, digits=1):
    return "—" if v is None else f"{v:,.{digits}f}"


def find_row(rows, cfg, c):
    return next((r for r in rows if r["config"] == cfg and r["connections"] == c), None)


def rps_ratio(rows, cfg, base, c):
    """rps(cfg) / rps(base) at c connections, or None."""
    r, b = find_row(rows, cfg, c), find_row(rows, base, c)
    return r["rps"] / b["rps"] if r and b and b["rps"] else None


def added_cpu_us(rows, cfg, base, c):
    """(cpu_s_per_1000(cfg) − cpu_s_per_1000(base)) · 1000: added CPU µs per request."""
    r, b = find_row(rows, cfg, c), find_row(rows, base, c)
    if r and b and r["cpu_s_per_1000"] is not None and b["cpu_s_per_1000"] is not None:
        return (r["cpu_s_per_1000"] - b["cpu_s_per_1000"]) * 1000
    return None


def write_report(res, path):
    rows = res["rows"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {res['date']} on {res['machine']}. Absolute numbers drift 10–25 % between runs on these",
        "shared machines; the ratios come from configurations measured side by side in one run."
        + (f" Machine load during this run: {res['load']}." if res.get("load") else ""),
        "",
        "Command: `make bench` (= `.venv/bin/python bench/run.py" + (" " + res["args"] if res["args"] else "") + "`; 10 s per cell by default)"
        + (f"; this run took {res['wall_s'] / 60:.1f} minutes." if res.get("wall_s") else "."),
        "",
        "On a busy machine the req/s and CPU columns move with the other load; the instruction counts of",
        "`bench/instructions.py` (Envoy under callgrind, below) repeat to within about 1 % and are the",
        "firmer evidence for what a change saved.",
        "",
        "Topology: wrk (1 thread, pinned to core 0) → the gateway under test (Envoy `--concurrency 1`,",
        "pinned to core 1; for unigate also the sidecar process) → a fake upstream on core 0 (an Envoy",
        "`direct_response` listener with a buffer filter, serving canned Bedrock Claude / Titan / Cohere and",
        f"OpenAI answers and a {STREAM_CHUNKS}-chunk stream). CPU is the gateway's own processes (Envoy + sidecar, or LiteLLM).",
        "",
        "Rows: `passthrough`, `passthrough_stream`, `passthrough_emb` are plain Envoy proxying the same",
        "requests (the baselines); `envoy_only` is unigate's own rendered Envoy configuration",
        "(`unigate serve --print-config`) without the Wasm filter; `floor_filter` is `unigate serve` with",
        "`build/unigate-floor.wasm`, a filter that only holds, reads and rewrites the request and reads the",
        "answer (src/floor.rs); `unigate_*` is unigate as `make run` starts it: chat (`unigate_bedrock`,",
        "`unigate_stream`, `unigate_openai`), Messages, Responses, the Bedrock runtime door (`unigate_invoke`)",
        "and embeddings (`unigate_titan16`: 16 texts = 16 Titan callouts; `unigate_titan1`; `unigate_cohere96`:",
        "one Cohere call with 96 texts; `unigate_openai_emb`: relayed to OpenAI). \"vs\" is req/s against the",
        "row's baseline at the same connection count; \"added CPU\" is (CPU s / 1000 req of the row − of its",
        "baseline) · 1000, in µs per request. Non-2xx counts answers that were not 200.",
        "",
        "| configuration | conns | req/s | baseline | vs | p50 ms | p99 ms | CPU s / 1000 req | added CPU µs / req | peak RSS MB | non-2xx |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        base = BASELINE.get(r["config"])
        c = r["connections"]
        ratio = rps_ratio(rows, r["config"], base, c) if base else None
        added = added_cpu_us(rows, r["config"], base, c) if base else None
        lines.append(f"| {r['config']} | {c} | {fmt(r['rps'])} | {base or '—'} | {'—' if ratio is None else f'{ratio * 100:.0f} %'} | "
                     f"{fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['cpu_s_per_1000'], 3)} | "
                     f"{'—' if added is None else f'{added:+.0f}'} | {fmt(r['rss_peak_mb'])} | {r['errors']} |")
    for title, items in res.get("sections", {}).items():
        if items:
            lines += ["", f"## {title}", ""] + [f"* {k}: {v}" for k, v in items.items()]
    lines += ["", "## Derived", ""]
    for k, v in res["derived"].items():
        lines.append(f"* {k}: {v}")
    lines += ["", "## Targets" + (" (issue 16)" if res.get("sections") else ""), ""]
    for k, v in res["targets"].items():
        lines.append(f"* {k}: {v}")
    lines += ["", "Raw results: `bench/results/` (JSON, one file per run).", ""]
    analysis = os.path.join(ROOT, "bench", "analysis.md")
    if os.path.exists(analysis):
        lines += [open(analysis).read()]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def at(c):
    return f"{c} connection{'' if c == 1 else 's'}"


def mark(ok):
    return "✓" if ok else "✗"


def judged(added, ok):
    """✓ / ✗, but a filter cannot cost less than plain Envoy: a negative difference means the
    baseline's cell was disturbed by other load, and the target is not judged from it."""
    return "? (negative: the baseline cell was disturbed; not judged)" if added < 0 else mark(ok)


def floor_section(rows, conns):
    """What part of the cost is Envoy's configuration, Envoy's Wasm machinery, the filter."""
    out = {}
    for c in conns:
        parts = []
        for cfg in ("envoy_only", "floor_filter", "unigate_openai", "unigate_bedrock"):
            ratio, added = rps_ratio(rows, cfg, "passthrough", c), added_cpu_us(rows, cfg, "passthrough", c)
            if ratio is not None and added is not None:
                parts.append(f"{cfg} {ratio * 100:.0f} % of passthrough req/s, {added:+.0f} µs CPU")
        if not parts:
            continue
        eo, fl, uo = (added_cpu_us(rows, cfg, "passthrough", c) for cfg in ("envoy_only", "floor_filter", "unigate_openai"))
        split = []
        if eo is not None:
            split.append(f"unigate's Envoy configuration {eo:+.0f} µs")
        if fl is not None and eo is not None:
            split.append(f"Envoy's Wasm machinery (floor_filter − envoy_only) {fl - eo:+.0f} µs")
        if uo is not None and fl is not None:
            split.append(f"the filter's own work for a relayed request (unigate_openai − floor_filter) {uo - fl:+.0f} µs")
        out[at(c)] = "; ".join(parts) + (". Per request: " + ", ".join(split) if split else "")
    return out


def embeddings_section(rows, conns):
    out = {}
    for c in conns:
        t16, t1, co = (find_row(rows, n, c) for n in ("unigate_titan16", "unigate_titan1", "unigate_cohere96"))
        if t16 and t1 and t16["cpu_s_per_1000"] and t1["cpu_s_per_1000"]:
            out[f"Titan, one 16-text request vs 16 single requests, {at(c)}"] = (
                f"{t16['rps'] * 16:,.0f} vs {t1['rps']:,.0f} texts/s; CPU per 1000 texts {t16['cpu_s_per_1000'] / 16:.3f} s vs "
                f"{t1['cpu_s_per_1000']:.3f} s; p50 {fmt(t16['p50_ms'], 2)} ms vs {fmt(t1['p50_ms'], 2)} ms")
        if co and t16 and co["cpu_s_per_1000"] and t16["cpu_s_per_1000"]:
            out[f"Cohere batch (96 texts, one call) vs Titan fan-out (16 callouts), {at(c)}"] = (
                f"{co['rps'] * 96:,.0f} vs {t16['rps'] * 16:,.0f} texts/s; CPU per 1000 texts {co['cpu_s_per_1000'] / 96:.3f} s vs "
                f"{t16['cpu_s_per_1000'] / 16:.3f} s")
        ratio = rps_ratio(rows, "unigate_openai_emb", "passthrough_emb", c)
        oe, pe = find_row(rows, "unigate_openai_emb", c), find_row(rows, "passthrough_emb", c)
        if ratio is not None:
            added = added_cpu_us(rows, "unigate_openai_emb", "passthrough_emb", c)
            out[f"OpenAI embeddings relay vs passthrough_emb, {at(c)}"] = (
                f"{ratio * 100:.0f} % req/s, p99 {fmt(oe['p99_ms'], 2)} vs {fmt(pe['p99_ms'], 2)} ms, "
                f"{'—' if added is None else f'{added:+.0f}'} µs CPU per request")
    co = find_row(rows, "unigate_cohere96", max(conns))
    if co:
        out[f"RSS during unigate_cohere96 at {at(max(conns))}"] = (
            f"peak {co['rss_cell_peak_mb']:.1f} MB while the cell ran (Envoy + sidecar; process high-water mark {co['rss_peak_mb']:.1f} MB)")
    return out


def issue16_targets(rows, conns, derived, wasm):
    """The targets of issue 16, each with the measured values and ✓ / ✗."""
    hi, lo = max(conns), min(conns)
    t = {}
    vals = []
    for cfg in TRANSLATED:
        ratio, added = rps_ratio(rows, cfg, "passthrough", hi), added_cpu_us(rows, cfg, "passthrough", hi)
        if ratio is not None and added is not None:
            vals.append(f"{cfg} {added:+.0f} µs, {ratio * 100:.0f} % {judged(added, added <= 60 and ratio >= 0.60)}")
    if vals:
        t[f"translated non-streaming at {at(hi)}: added CPU ≤ 60 µs per request and ≥ 60 % of passthrough req/s"] = "; ".join(vals)
    vals = []
    for cfg in TRANSLATED:
        r, b = find_row(rows, cfg, lo), find_row(rows, "passthrough", lo)
        if r and b and r["p50_ms"] is not None and b["p50_ms"] is not None:
            added = r["p50_ms"] - b["p50_ms"]
            vals.append(f"{cfg} {added:+.3f} ms {judged(added, added <= 0.15)}")
    if vals:
        t[f"translated non-streaming: added p50 at {at(lo)} ≤ 0.15 ms"] = "; ".join(vals)
    vals = []
    for cfg in STREAMS:
        added = added_cpu_us(rows, cfg, "passthrough_stream", hi)
        if added is not None:
            per_chunk = added / STREAM_CHUNKS
            vals.append(f"{cfg} {per_chunk:.2f} µs {judged(per_chunk, per_chunk <= 1.2)}")
    if vals:
        t[f"streams: added CPU per chunk vs passthrough_stream ({STREAM_CHUNKS} chunks, {at(hi)}) ≤ 1.2 µs"] = "; ".join(vals)
    vals = []
    for cfg in RELAYED:
        ratio = rps_ratio(rows, cfg, "passthrough", hi)
        if ratio is not None:
            vals.append(f"{cfg} {ratio * 100:.0f} % {mark(ratio >= 0.80)}")
    if vals:
        t[f"relayed paths ≥ 80 % of passthrough req/s at {at(hi)}"] = "; ".join(vals)
    size = os.path.getsize(wasm)
    t[".wasm ≤ 1.5 MB"] = f"{size / 1e6:.2f} MB ({size:,} bytes) {mark(size <= 1.5e6)}"
    vm = derived.get("VM start (time to ready, unigate vs plain Envoy)")
    if vm:
        t["ready time reported"] = f"{vm} {mark(True)}"
    return t


SECTIONS = {
    "The floor: Envoy's configuration, Envoy's Wasm machinery, the filter": floor_section,
    "Embeddings": embeddings_section,
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", default="1,16,64")
    ap.add_argument("--skip-litellm", action="store_true")
    ap.add_argument("--only", metavar="ROW[,ROW...]", help="run only these rows, plus the rows they are compared with")
    ap.add_argument("--report", metavar="RESULTS_JSON", help="only rewrite docs/benchmarks.md from a saved run")
    args = ap.parse_args()
    if args.report:
        res = json.load(open(args.report))
        if "sections" in res:  # the sections and targets again, with this version's judgements
            conns = sorted({r["connections"] for r in res["rows"]})
            saved = res["targets"]
            res["sections"] = {title: fn(res["rows"], conns) for title, fn in SECTIONS.items()}
            res["targets"] = issue16_targets(res["rows"], conns, res["derived"], os.path.join(ROOT, "build", "unigate.wasm"))
            for k in saved:
                if k.startswith(".wasm"):
                    res["targets"][k] = saved[k]  # the size of the module that ran, not of today's build
        write_report(res, os.path.join(ROOT, "docs", "benchmarks.md"))
        return
    t_start = time.time()
    load_start = os.getloadavg()[0]
    conns = [int(c) for c in args.connections.split(",")]
    selected = select_rows(args.only, args.skip_litellm)
    specs = [s for s in row_specs() if s.name in selected]
    gateways = {s.gateway for s in specs}
    envoy = os.environ.get("ENVOY_BIN") or os.path.join(ROOT, ".venv", "bin", "envoy")
    unigate = os.path.join(ROOT, "target", "release", "unigate")
    wasm = os.path.join(ROOT, "build", "unigate.wasm")
    floor_wasm = os.path.join(ROOT, "build", "unigate-floor.wasm")
    for need in (envoy, unigate, wasm) + ((floor_wasm,) if "floor" in gateways else ()):
        if not os.path.exists(need):
            sys.exit(f"bench: {need} is missing (run `make build`, `make wasm-floor` and `make setup`)")
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is missing (apt-get install wrk)")
    print(f"bench: rows {', '.join(selected)}", flush=True)
    tmp = tempfile.mkdtemp(prefix="unigate-bench-")
    procs_all = []

    def start_envoy(name, cfg, cpu, extra_args):
        path = os.path.join(tmp, f"{name}.json")
        json.dump(cfg, open(path, "w"))
        p = Proc(name, [envoy, "-c", path, "--concurrency", "1", "--disable-hot-restart"] + extra_args, cpu=cpu, log=os.path.join(tmp, f"{name}.log"))
        procs_all.append(p)
        return p

    def unigate_env(filter_wasm, tag):
        """The environment `make run` would give `unigate serve`, on fresh ports."""
        port, admin, side = free_port(), free_port(), free_port()
        env = dict(os.environ, **AWS_ENV, API_KEY=API_KEY, OPENAI_API_KEY="sk-bench", GATEWAY_PORT=str(port),
                   GATEWAY_BIND="127.0.0.1", ENVOY_ADMIN_PORT=str(admin), UNIGATE_SIDECAR_PORT=str(side),
                   OPENAI_BASE_URL=f"http://127.0.0.1:{up_port}/v1", AWS_ENDPOINT_URL_BEDROCK_RUNTIME=f"http://127.0.0.1:{up_port}",
                   ENVOY_BIN=envoy, UNIGATE_WASM=filter_wasm, UNIGATE_RUN_DIR=os.path.join(tmp, f"run-{tag}"), ENVOY_CONCURRENCY="1",
                   ENVOY_LOG_LEVEL="error", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        return env, port, admin

    def run_rows(gateway, base_url, procs):
        out = []
        for spec in (s for s in specs if s.gateway == gateway):
            try:
                out += measure(spec, base_url + spec.path, procs, conns, args.duration)
            except Exception as e:  # a broken row is reported, the others still run
                print(f"  {spec.name}: FAILED its check: {e}", flush=True)
                failed[spec.name] = str(e)[:300]
        return out

    rows, derived, failed = [], {}, {}
    ready = {}
    try:
        up_port, up_admin = free_port(), free_port()
        start_envoy("upstream", upstream_config(up_port, up_admin), 0, ["--base-id", "901", "--log-level", "error"])
        wait_http(f"http://127.0.0.1:{up_admin}/ready")

        # Plain Envoy passthrough: the baselines.
        if "plain" in gateways:
            gw_port, gw_admin = free_port(), free_port()
            t0 = time.time()
            plain = start_envoy("passthrough", passthrough_config(gw_port, gw_admin, up_port), 1, ["--base-id", "902", "--log-level", "error"])
            ready["passthrough"] = wait_http(f"http://127.0.0.1:{gw_admin}/ready") - t0
            rows += run_rows("plain", f"http://127.0.0.1:{gw_port}", [plain])
            plain.stop()

        # unigate's rendered Envoy configuration without the Wasm filter, run as `unigate serve`
        # runs Envoy (same arguments), with the route's cluster header set by the client.
        if "envoy_only" in gateways:
            import yaml
            env, port, admin = unigate_env(wasm, "envoy-only")
            rendered = subprocess.run([unigate, "serve", "--print-config"], env=env, capture_output=True, text=True, check=True, timeout=30).stdout
            cfg = yaml.safe_load(rendered)
            dropped = 0
            for listener in cfg["static_resources"]["listeners"]:
                for chain in listener["filter_chains"]:
                    for f in chain["filters"]:
                        hcm = f.get("typed_config", {})
                        if "http_filters" in hcm:
                            before = len(hcm["http_filters"])
                            hcm["http_filters"] = [h for h in hcm["http_filters"] if h["name"] != "envoy.filters.http.wasm"]
                            dropped += before - len(hcm["http_filters"])
            if dropped != 1:
                sys.exit(f"bench: expected one envoy.filters.http.wasm filter in the rendered configuration, found {dropped}")
            t0 = time.time()
            eo = start_envoy("envoy_only", cfg, 1, ["--log-level", "error", "--component-log-level", "wasm:info"])
            ready["envoy_only"] = wait_http(f"http://127.0.0.1:{admin}/ready") - t0
            rows += run_rows("envoy_only", f"http://127.0.0.1:{port}", [eo])
            eo.stop()

        # `unigate serve` with the floor filter.
        if "floor" in gateways:
            env, port, admin = unigate_env(floor_wasm, "floor")
            t0 = time.time()
            fl = Proc("floor_filter", [unigate, "serve"], env=env, cpu=1, log=os.path.join(tmp, "floor.log"))
            procs_all.append(fl)
            ready["floor_filter"] = wait_http(f"http://127.0.0.1:{port}/health") - t0
            rows += run_rows("floor", f"http://127.0.0.1:{port}", [fl])
            fl.stop()

        # unigate as `make run` starts it.
        if "unigate" in gateways:
            env, port, admin = unigate_env(wasm, "unigate")
            t0 = time.time()
            gw = Proc("unigate", [unigate, "serve"], env=env, cpu=1, log=os.path.join(tmp, "unigate.log"))
            procs_all.append(gw)
            ready["unigate"] = wait_http(f"http://127.0.0.1:{port}/health") - t0
            time.sleep(1.5)  # first credential refresh from the sidecar
            rows += run_rows("unigate", f"http://127.0.0.1:{port}", [gw])
            if "unigate_stream" in selected and "unigate_stream" not in failed:
                res200 = concurrent_streams_rss(f"http://127.0.0.1:{port}/v1/chat/completions", chat_body("claude-3-haiku", stream=True), [gw], 200)
                derived["200 concurrent streams"] = (f"RSS {res200['rss_before_mb']:.1f} MB before, peak {res200['rss_peak_mb']:.1f} MB "
                                                    f"(+{res200['added_mb']:.1f} MB, target ≤ 64 MB), {res200['rps']:.0f} streams/s")
            stats = urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter=wasm", timeout=5).read().decode()
            reloads = re.findall(r"wasm\.unigate\.vm_reload\w*: (\d+)", stats)
            derived["Wasm VM reloads during the run"] = str(sum(int(x) for x in reloads))
            gw.stop()

        # LiteLLM.
        if "litellm" in gateways:
            exe = litellm_bin()
            lport = free_port()
            cfg = os.path.join(tmp, "litellm.yaml")
            open(cfg, "w").write(f"""model_list:
  - model_name: claude-3-haiku
    litellm_params:
      # invoke/: the same Anthropic-on-InvokeModel work unigate does for this model.
      model: bedrock/invoke/anthropic.claude-3-haiku-20240307-v1:0
      aws_bedrock_runtime_endpoint: http://127.0.0.1:{up_port}
      aws_region_name: us-east-1
general_settings:
  master_key: {API_KEY}
litellm_settings:
  telemetry: false
""")
            lenv = dict(os.environ, **AWS_ENV, LITELLM_LOG="ERROR", LITELLM_TELEMETRY="False")
            lt = Proc("litellm", [exe, "--config", cfg, "--port", str(lport), "--num_workers", "1"], env=lenv, cpu=1, log=os.path.join(tmp, "litellm.log"))
            procs_all.append(lt)
            wait_http(f"http://127.0.0.1:{lport}/health/liveliness", timeout=180)
            derived["LiteLLM version"] = litellm_version(exe)
            rows += run_rows("litellm", f"http://127.0.0.1:{lport}", [lt])
            lt.stop()
    finally:
        for p in procs_all:
            p.stop()

    if "unigate" in ready and "passthrough" in ready:
        derived["VM start (time to ready, unigate vs plain Envoy)"] = f"{ready['unigate']:.2f} s vs {ready['passthrough']:.2f} s"
    others = [f"{k} {v:.2f} s" for k, v in ready.items() if k in ("envoy_only", "floor_filter")]
    if others:
        derived["Time to ready, the floor rows"] = ", ".join(others)
    lt64, u64 = find_row(rows, "litellm", max(conns)), find_row(rows, "unigate_bedrock", max(conns))
    if lt64 and u64 and lt64["cpu_s_per_1000"] and u64["cpu_s_per_1000"]:
        derived[f"Requests per CPU second, unigate_bedrock vs litellm at {at(max(conns))}"] = f"{lt64['cpu_s_per_1000'] / u64['cpu_s_per_1000']:.1f}×"
    for cfg in STREAMS:
        vals = [f"{a / STREAM_CHUNKS:.2f} µs at {at(c)}" for c in conns if (a := added_cpu_us(rows, cfg, "passthrough_stream", c)) is not None]
        if vals:
            derived[f"{cfg}: added CPU per chunk vs passthrough_stream"] = ", ".join(vals)
    errs = [f"{r['config']} at {r['connections']}: {r['errors']} non-2xx{', socket errors ' + r['socket_errors'] if r['socket_errors'] else ''}"
            for r in rows if r["errors"] or r["socket_errors"]]
    if errs:
        derived["Errors under load"] = "; ".join(errs)
    for name, why in failed.items():
        derived[f"{name} NOT MEASURED (its check failed)"] = why
    wall = time.time() - t_start

    res = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores ({open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()})",
        "args": " ".join(sys.argv[1:]),
        "wall_s": wall,
        "load": f"{load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end (1-minute load average, {os.cpu_count()} cores)",
        "rows": rows,
        "sections": {title: fn(rows, conns) for title, fn in SECTIONS.items()},
        "derived": derived,
        "targets": issue16_targets(rows, conns, derived, wasm),
    }
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    json.dump(res, open(out, "w"), indent=2)
    write_report(res, os.path.join(ROOT, "docs", "benchmarks.md"))
    for section in res["sections"].values():
        print("\n".join(f"{k}: {v}" for k, v in section.items()))
    print("\n".join(f"{k}: {v}" for k, v in {**derived, **res["targets"]}.items()))
    print(f"bench: wrote {out} and docs/benchmarks.md ({wall / 60:.1f} minutes)")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
