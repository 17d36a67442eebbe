#!/usr/bin/env python3
"""`make bench`: unigate side by side with plain Envoy and with LiteLLM, in one run.

Topology (all on 127.0.0.1):
  wrk (core 0) ─► gateway under test (core 1) ─► fake upstream: an Envoy direct_response
  listener (core 0) serving canned Bedrock / OpenAI bodies and streams.

Configurations, measured in turn with the same load generator, bodies and upstream:
  1 passthrough          plain Envoy proxying the OpenAI body to the fake upstream
  2 unigate_bedrock      Envoy + unigate.wasm, OpenAI body -> Bedrock Claude (translate, SigV4,
                         translate back), non-streaming
  3 unigate_stream       the same, streaming (a 300-chunk answer)
  3b passthrough_stream  plain Envoy relaying the same 300-frame stream (baseline for 3)
  4 unigate_openai       Envoy + unigate.wasm, OpenAI -> OpenAI pass-through
  5 litellm / litellm_stream   LiteLLM proxy (venv) in front of the same fake upstream

Usage: .venv/bin/python bench/run.py [--duration 10] [--connections 1,16,64] [--skip-litellm]
Writes bench/results/<time>.json and docs/benchmarks.md.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
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


def upstream_config(port, admin):
    """The fake upstream: Envoy direct_response answers; a buffer filter reads the request body
    first so HTTP/1.1 connections are reused (otherwise it answers early and closes)."""
    def route(match, body, content_type):
        return {
            "match": match,
            "direct_response": {"status": 200, "body": {"inline_bytes": base64.b64encode(body).decode()}},
            "response_headers_to_add": [{"header": {"key": "content-type", "value": content_type}}],
        }
    routes = [
        route({"safe_regex": {"regex": "/model/.*/invoke-with-response-stream"}}, claude_stream(), "application/vnd.amazon.eventstream"),
        route({"safe_regex": {"regex": "/model/.*/invoke"}}, CLAUDE_ANSWER, "application/json"),
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
                    "route_config": {"max_direct_response_body_size_bytes": 1 << 20, "virtual_hosts": [{"name": "fake", "domains": ["*"], "routes": routes}]},
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
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %s"
%s
local f = io.open("%s", "rb")
wrk.body = f:read("*all")
f:close()
"""


def wrk(url, body, connections, duration, extra_headers=None):
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as bf:
        bf.write(body)
    headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (extra_headers or {}).items())
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lf:
        lf.write(LUA % (API_KEY, headers, bf.name))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "--timeout", "30s", "-s", lf.name, url]
    if shutil.which("taskset"):
        argv = ["taskset", "-c", "0"] + argv
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    os.unlink(lf.name)
    os.unlink(bf.name)
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
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["errors"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = m.group(1) if m else ""
    return res


def check_once(url, body, extra_headers=None):
    req = urllib.request.Request(url, data=body, headers=dict({"content-type": "application/json", "authorization": f"Bearer {API_KEY}"}, **(extra_headers or {})))
    with urllib.request.urlopen(req, timeout=10) as r:
        data = r.read()
        assert r.status == 200, (r.status, data[:300])
        return data


def measure(name, url, body, procs, conns, duration, extra_headers=None, chunks=1):
    """Runs wrk at each connection count; returns rows with rps, latency, CPU/1000 and RSS."""
    rows = []
    pids = [pid for p in procs for pid in p.pids()]
    check_once(url, body, extra_headers)
    wrk(url, body, 4, 2, extra_headers)  # warm-up
    for c in conns:
        cpu0 = cpu_seconds(pids)
        r = wrk(url, body, c, duration, extra_headers)
        cpu1 = cpu_seconds(pids)
        row = {
            "config": name, "connections": c, "rps": r["rps"], "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
            "requests": r["requests"], "errors": r["errors"], "socket_errors": r["socket_errors"],
            "cpu_s_per_1000": (cpu1 - cpu0) / (r["requests"] / 1000.0) if r["requests"] else None,
            "rss_peak_mb": rss_kb(pids, "VmHWM") / 1024.0,
        }
        if chunks > 1:
            row["chunks_per_s"] = r["rps"] * chunks
        rows.append(row)
        print(f"  {name:20s} c={c:<3d} {r['rps']:>9.1f} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  "
              f"cpu/1000 {row['cpu_s_per_1000'] and round(row['cpu_s_per_1000'], 3)} s  errors {r['errors']} {r['socket_errors']}", flush=True)
    return rows


def concurrent_streams_rss(url, body, procs, n=200, seconds=8):
    """Envoy RSS before and while `n` streams run concurrently."""
    pids = [pid for p in procs for pid in p.pids()]
    before = rss_kb(pids)
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as bf:
        bf.write(body)
    lua = LUA % (API_KEY, "", bf.name)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lf:
        lf.write(lua)
    argv = ["wrk", "-t2", f"-c{n}", f"-d{seconds}s", "--timeout", "30s", "-s", lf.name, url]
    w = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = before
    t_end = time.time() + seconds
    while time.time() < t_end:
        peak = max(peak, rss_kb(pids))
        time.sleep(0.2)
    out = w.communicate(timeout=60)[0]
    os.unlink(lf.name)
    os.unlink(bf.name)
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


def write_report(res, path):
    rows = res["rows"]
    base = {r["connections"]: r for r in rows if r["config"] == "passthrough"}
    base_stream = {r["connections"]: r for r in rows if r["config"] == "passthrough_stream"}
    lines = [
        "# Benchmarks",
        "",
        f"Measured {res['date']} on {res['machine']}. Absolute numbers drift 10–25 % between runs on these",
        "shared machines; the ratios come from configurations measured side by side in one run.",
        "",
        "Command: `make bench` (= `.venv/bin/python bench/run.py" + (" " + res["args"] if res["args"] else "") + "`; 10 s per cell by default).",
        "",
        "Topology: wrk (1 thread, pinned to core 0) → the gateway under test (Envoy `--concurrency 1`,",
        "pinned to core 1; for unigate also the sidecar process) → a fake upstream on core 0 (an Envoy",
        "`direct_response` listener with a buffer filter, serving canned Bedrock Claude / OpenAI answers",
        f"and a {STREAM_CHUNKS}-chunk stream). CPU is the gateway's own processes (Envoy + sidecar, or LiteLLM).",
        "",
        "| configuration | conns | req/s | vs passthrough | p50 ms | p99 ms | CPU s / 1000 req | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = (base_stream if r["config"].endswith("stream") else base).get(r["connections"])
        ratio = f"{r['rps'] / ref['rps'] * 100:.0f} %" if ref and ref["rps"] else "—"
        lines.append(f"| {r['config']} | {r['connections']} | {fmt(r['rps'])} | {ratio} | {fmt(r['p50_ms'], 2)} | "
                     f"{fmt(r['p99_ms'], 2)} | {fmt(r['cpu_s_per_1000'], 3)} | {fmt(r['rss_peak_mb'])} |")
    lines += ["", "## Derived", ""]
    for k, v in res["derived"].items():
        lines.append(f"* {k}: {v}")
    lines += ["", "## Targets", ""]
    for k, v in res["targets"].items():
        lines.append(f"* {k}: {v}")
    lines += ["", "Raw results: `bench/results/` (JSON, one file per run).", ""]
    analysis = os.path.join(ROOT, "bench", "analysis.md")
    if os.path.exists(analysis):
        lines += [open(analysis).read()]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--connections", default="1,16,64")
    ap.add_argument("--skip-litellm", action="store_true")
    ap.add_argument("--report", metavar="RESULTS_JSON", help="only rewrite docs/benchmarks.md from a saved run")
    args = ap.parse_args()
    if args.report:
        write_report(json.load(open(args.report)), os.path.join(ROOT, "docs", "benchmarks.md"))
        return
    conns = [int(c) for c in args.connections.split(",")]
    envoy = os.environ.get("ENVOY_BIN") or os.path.join(ROOT, ".venv", "bin", "envoy")
    unigate = os.path.join(ROOT, "target", "release", "unigate")
    wasm = os.path.join(ROOT, "build", "unigate.wasm")
    for need in (envoy, unigate, wasm):
        if not os.path.exists(need):
            sys.exit(f"bench: {need} is missing (run `make build` and `make setup`)")
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is missing (apt-get install wrk)")
    tmp = tempfile.mkdtemp(prefix="unigate-bench-")
    procs_all = []

    def start_envoy(name, cfg, cpu, base_id):
        path = os.path.join(tmp, f"{name}.json")
        json.dump(cfg, open(path, "w"))
        p = Proc(name, [envoy, "-c", path, "--concurrency", "1", "--base-id", str(base_id), "--log-level", "error", "--disable-hot-restart"], cpu=cpu, log=os.path.join(tmp, f"{name}.log"))
        procs_all.append(p)
        return p

    rows = []
    derived = {}
    try:
        up_port, up_admin = free_port(), free_port()
        upstream = start_envoy("upstream", upstream_config(up_port, up_admin), 0, 901)
        wait_http(f"http://127.0.0.1:{up_admin}/ready")
        openai_body = chat_body("gpt-4o")
        claude_body = chat_body("claude-3-haiku")
        claude_stream_body = chat_body("claude-3-haiku", stream=True)

        # 1 / 3b: plain Envoy passthrough.
        gw_port, gw_admin = free_port(), free_port()
        t0 = time.time()
        plain = start_envoy("passthrough", passthrough_config(gw_port, gw_admin, up_port), 1, 902)
        plain_ready = wait_http(f"http://127.0.0.1:{gw_admin}/ready") - t0
        url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        rows += measure("passthrough", url, openai_body, [plain], conns, args.duration)
        rows += measure("passthrough_stream", url, openai_body, [plain], conns, args.duration, {"x-bench-stream": "1"}, STREAM_CHUNKS)
        plain.stop()

        # 2 / 3 / 4: unigate as `make run` starts it.
        port, admin, side = free_port(), free_port(), free_port()
        env = dict(os.environ, **AWS_ENV, API_KEY=API_KEY, OPENAI_API_KEY="sk-bench", GATEWAY_PORT=str(port),
                   GATEWAY_BIND="127.0.0.1", ENVOY_ADMIN_PORT=str(admin), UNIGATE_SIDECAR_PORT=str(side),
                   OPENAI_BASE_URL=f"http://127.0.0.1:{up_port}/v1", AWS_ENDPOINT_URL_BEDROCK_RUNTIME=f"http://127.0.0.1:{up_port}",
                   ENVOY_BIN=envoy, UNIGATE_WASM=wasm, UNIGATE_RUN_DIR=os.path.join(tmp, "run"), ENVOY_CONCURRENCY="1",
                   ENVOY_LOG_LEVEL="error", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        t0 = time.time()
        gw = Proc("unigate", [unigate, "serve"], env=env, cpu=1, log=os.path.join(tmp, "unigate.log"))
        procs_all.append(gw)
        ready = wait_http(f"http://127.0.0.1:{port}/health") - t0
        derived["VM start (time to ready, unigate vs plain Envoy)"] = f"{ready:.2f} s vs {plain_ready:.2f} s"
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        time.sleep(1.5)  # first credential refresh from the sidecar
        rows += measure("unigate_bedrock", url, claude_body, [gw], conns, args.duration)
        rows += measure("unigate_stream", url, claude_stream_body, [gw], conns, args.duration, None, STREAM_CHUNKS)
        rows += measure("unigate_openai", url, openai_body, [gw], conns, args.duration)
        res200 = concurrent_streams_rss(url, claude_stream_body, [gw], 200)
        derived["200 concurrent streams"] = (f"RSS {res200['rss_before_mb']:.1f} MB before, peak {res200['rss_peak_mb']:.1f} MB "
                                            f"(+{res200['added_mb']:.1f} MB), {res200['rps']:.0f} streams/s")
        stats = urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats?filter=wasm", timeout=5).read().decode()
        reloads = re.findall(r"wasm\.unigate\.vm_reload\w*: (\d+)", stats)
        derived["Wasm VM reloads during the run"] = str(sum(int(x) for x in reloads))
        gw.stop()

        # 5: LiteLLM.
        if not args.skip_litellm:
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
            lurl = f"http://127.0.0.1:{lport}/v1/chat/completions"
            derived["LiteLLM version"] = litellm_version(exe)
            rows += measure("litellm", lurl, claude_body, [lt], conns, args.duration)
            rows += measure("litellm_stream", lurl, claude_stream_body, [lt], conns, args.duration, None, STREAM_CHUNKS)
            lt.stop()
    finally:
        for p in procs_all:
            p.stop()

    def row(cfg, c):
        return next((r for r in rows if r["config"] == cfg and r["connections"] == c), None)

    targets = {}
    b64, u64 = row("passthrough", max(conns)), row("unigate_bedrock", max(conns))
    if b64 and u64:
        targets[f"translated non-streaming ≥ 80 % of passthrough at {max(conns)} connections"] = f"{u64['rps'] / b64['rps'] * 100:.0f} %"
    b1, u1 = row("passthrough", min(conns)), row("unigate_bedrock", min(conns))
    if b1 and u1:
        targets[f"≤ 0.3 ms added p50 at {min(conns)} connection"] = f"{(u1['p50_ms'] - b1['p50_ms']):.3f} ms"
    s64, ps64 = row("unigate_stream", max(conns)), row("passthrough_stream", max(conns))
    if s64 and ps64:
        targets["streaming ≥ 70 % of passthrough chunk throughput"] = f"{s64['chunks_per_s'] / ps64['chunks_per_s'] * 100:.0f} %"
        if s64["cpu_s_per_1000"] and ps64["cpu_s_per_1000"]:
            per_chunk = (s64["cpu_s_per_1000"] - ps64["cpu_s_per_1000"]) / 1000 / STREAM_CHUNKS * 1e6
            targets["≤ 20 µs added CPU per chunk"] = f"{per_chunk:.1f} µs"
    lt64 = row("litellm", max(conns))
    if lt64 and u64 and lt64["cpu_s_per_1000"] and u64["cpu_s_per_1000"]:
        targets["≥ 10× LiteLLM's throughput per CPU second"] = f"{lt64['cpu_s_per_1000'] / u64['cpu_s_per_1000']:.1f}×"
    if "200 concurrent streams" in derived:
        targets["200 concurrent streams add ≤ 64 MB to Envoy's RSS"] = derived["200 concurrent streams"]
    size = os.path.getsize(wasm)
    targets[".wasm ≤ 1.5 MB"] = f"{size / 1e6:.2f} MB ({size:,} bytes)"

    res = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores ({open('/proc/cpuinfo').read().split('model name')[1].split(':')[1].splitlines()[0].strip()})",
        "args": " ".join(sys.argv[1:]),
        "rows": rows, "derived": derived, "targets": targets,
    }
    os.makedirs(RESULTS, exist_ok=True)
    out = os.path.join(RESULTS, datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    json.dump(res, open(out, "w"), indent=2)
    write_report(res, os.path.join(ROOT, "docs", "benchmarks.md"))
    print("\n".join(f"{k}: {v}" for k, v in {**derived, **targets}.items()))
    print(f"bench: wrote {out} and docs/benchmarks.md")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
