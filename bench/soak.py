#!/usr/bin/env python3
"""Soak: a long, bounded run of mixed traffic through one Envoy running unigate.wasm.

    .venv/bin/python bench/soak.py --requests 100000 [--procs 2 --threads 8] [--json out.json]

Not part of `make test`. Reuses the wasm-tests harness (Envoy bootstrap, default plugin
configuration) and tests/fakes (fake OpenAI, fake Bedrock with botocore SigV4 checks, fake
sidecar). The fakes run in a child process of their own so that they do not share a GIL with
the load generator; the load generator is `--procs` processes x `--threads` threads, each
thread with its own keep-alive connection (16 requests in flight by default).

The mix (deterministic per request index): OpenAI and Bedrock (Claude InvokeModel,
Converse, Titan) non-streaming; streaming for each upstream API, some with include_usage;
and injected failures through x-fake-* headers or bad input: Bedrock throttling (429),
OpenAI 500, garbage 200 bodies (502), mid-stream exception frames (in-band error event),
unknown model (404), invalid JSON (400) and a wrong key (401). A small share is what one key
holder can send to make the gateway spend (issue 17): duplicate top-level keys (400), dot
segments in model ids (400), gzip-encoded bodies (415), a body of a few MB of tiny JSON values
(400 `body_too_complex`) and made-up model names, a new one each time (200; their metrics
share one series). Every answer is checked against what that request should get (status,
error code, echoed text, stream ending with [DONE]); anything else counts as an unexpected
error.

Reports Envoy's RSS (VmRSS of the Envoy process) after warm-up and at the end, with samples
in between, requests/s, unexpected errors, and the Wasm VM counters (wasm.unigate.vm_reload*,
V8 VMs created) that show whether a VM trapped, and the number of the filter's stats after
warm-up and at the end (made-up model names must not add any).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO / "tests", REPO / "wasm-tests"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from wasm_harness import CLIENT_KEYS, SIDECAR_TOKEN, UPSTREAM_OPENAI_KEY, Envoy, default_env  # noqa: E402

KEY = CLIENT_KEYS[0]

# ---------------------------------------------------------------- fakes in a child process


def fakes_child() -> None:
    """Runs the three fakes, prints their ports as one JSON line, clears their request logs
    now and then (100k recorded requests would only grow this process), and exits when the
    parent closes stdin."""
    from fakes import FakeBedrock, FakeOpenAI, FakeSidecar
    from fakes import server as fake_server

    # The fakes write a response's headers and body in separate send()s; with Nagle on, each
    # answer then waits for Envoy's delayed ACK (~40 ms), which would dominate the soak's
    # latency. TCP_NODELAY on the fakes' sockets removes that artefact.
    fake_server._Handler.disable_nagle_algorithm = True

    oa = FakeOpenAI(api_key=UPSTREAM_OPENAI_KEY).start()
    br = FakeBedrock(region="us-east-1").start()
    sc = FakeSidecar(token=SIDECAR_TOKEN).start()
    print(json.dumps({"openai": oa.port, "bedrock": br.port, "sidecar": sc.port}), flush=True)

    def janitor():
        while True:
            time.sleep(2)
            for f in (oa, br, sc):
                f.clear()

    threading.Thread(target=janitor, daemon=True).start()
    sys.stdin.read()  # EOF when the parent exits or closes the pipe
    for f in (oa, br, sc):
        f.stop()


# ---------------------------------------------------------------- the request mix

CONVERSE_EXCEPTION = json.dumps([
    {"event": "messageStart", "payload": {"role": "assistant"}},
    {"event": "contentBlockDelta", "payload": {"contentBlockIndex": 0, "delta": {"text": "partial"}}},
    {"exception": "throttlingException", "payload": {"message": "Too many requests, please wait before trying again."}},
])

# (name, weight, injected?)
KINDS = [
    ("openai", 18, False),
    ("claude", 14, False),
    ("converse", 10, False),
    ("titan", 6, False),
    ("stream_openai", 9, False),
    ("stream_claude", 10, False),
    ("stream_converse", 9, False),
    ("stream_titan", 4, False),
    ("err_throttle", 4, True),
    ("err_openai_500", 3, True),
    ("err_garbage", 3, True),
    ("err_midstream", 3, True),
    ("err_unknown_model", 3, True),
    ("err_bad_json", 2, True),
    ("err_bad_key", 2, True),
    ("abuse_dup_key", 1, True),
    ("abuse_dot_id", 1, True),
    ("abuse_gzip", 1, True),
    ("abuse_tiny_values", 1, True),
    ("abuse_model_name", 1, True),
]
_TABLE = [k for k, w, _ in KINDS for _ in range(w)]
INJECTED = {k for k, _, inj in KINDS if inj}


# ~3 MB of `0,` after a valid chat request: far more JSON values than its size allows.
TINY_VALUES = (b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x":[0'
               + b",0" * 1_500_000 + b"]}")
DOT_IDS = ["..", ".", "a/../b", "anthropic.claude/../x", "amazon.nova-pro-v1:0/../../x"]


def kind_of(i: int) -> str:
    # a fixed permutation of the weighted table, so neighbours differ
    return _TABLE[(i * 37) % len(_TABLE)]


def build(i: int):
    """(kind, body bytes, headers, expectation) for request number i."""
    k = kind_of(i)
    text = f"soak {i} " + "w" * (i % 50)
    models = {"openai": "gpt-4o", "claude": "claude-3-haiku", "converse": "amazon.nova-pro-v1:0", "titan": "amazon.titan-text-express-v1"}
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    body: dict = {"messages": [{"role": "user", "content": text}], "max_tokens": 64}
    expect = {"status": 200, "text": "echo: " + text}
    if k in models:
        body["model"] = models[k]
    elif k.startswith("stream_"):
        body["model"] = models[k[len("stream_"):]]
        body["stream"] = True
        if i % 3 == 0:
            body["stream_options"] = {"include_usage": True}
            expect["usage"] = True
        expect["stream"] = True
    elif k == "err_throttle":
        body["model"] = "claude-3-haiku"
        headers.update({"x-fake-status": "429", "x-fake-error-type": "ThrottlingException"})
        expect = {"status": 429, "code": "rate_limit_exceeded"}
    elif k == "err_openai_500":
        body["model"] = "gpt-4o"
        headers["x-fake-status"] = "500"
        expect = {"status": 500}
    elif k == "err_garbage":
        body["model"] = "amazon.nova-pro-v1:0"
        headers.update({"x-fake-status": "200", "x-fake-body": "<html>not json</html>", "x-fake-content-type": "text/html"})
        expect = {"status": 502, "code": "upstream_error"}
    elif k == "err_midstream":
        body["model"] = "amazon.nova-pro-v1:0"
        body["stream"] = True
        headers["x-fake-stream-events"] = CONVERSE_EXCEPTION
        expect = {"status": 200, "stream_error": "rate_limit_error"}
    elif k == "err_unknown_model":
        body["model"] = f"no-such-model-{i % 7}"
        expect = {"status": 404, "code": "model_not_found"}
    elif k == "err_bad_json":
        return k, b'{"model": "gpt-4o", "messages": [', headers, {"status": 400, "code": "invalid_json"}
    elif k == "err_bad_key":
        body["model"] = "gpt-4o"
        headers["authorization"] = "Bearer wrong-key"
        expect = {"status": 401, "code": "invalid_api_key"}
    elif k == "abuse_dup_key":
        raw = json.dumps(body).encode()
        return k, b'{"model":"gpt-4o","model":"claude-3-haiku",' + raw[1:], headers, {"status": 400, "code": "duplicate_key"}
    elif k == "abuse_dot_id":
        body["model"] = DOT_IDS[i % len(DOT_IDS)]
        expect = {"status": 400, "code": "invalid_model_id"}
    elif k == "abuse_gzip":
        body["model"] = "claude-3-haiku"
        headers["content-encoding"] = "gzip"
        return k, gzip.compress(json.dumps(body).encode()), headers, {"status": 415, "code": "unsupported_content_encoding"}
    elif k == "abuse_tiny_values":
        return k, TINY_VALUES, headers, {"status": 400, "code": "body_too_complex"}
    elif k == "abuse_model_name":
        body["model"] = f"gpt-soak-made-up-{i}"
    return k, json.dumps(body).encode(), headers, expect


def check(status: int, data: bytes, expect: dict) -> str | None:
    """None if the answer is what this request should get, else why not."""
    if status != expect["status"]:
        return f"status {status} != {expect['status']}: {data[:200]!r}"
    if "code" in expect:
        try:
            code = json.loads(data)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return f"not an OpenAI error: {data[:200]!r}"
        return None if code == expect["code"] else f"code {code} != {expect['code']}"
    if expect["status"] != 200:
        try:
            json.loads(data)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return f"not an OpenAI error: {data[:200]!r}"
        return None
    if "stream_error" in expect:
        events = [ln[6:] for ln in data.decode("utf-8", "replace").split("\n") if ln.startswith("data: ")]
        if events[-1:] != ["[DONE]"]:
            return "stream without [DONE]"
        try:
            err = json.loads(events[-2])["error"]
        except (ValueError, KeyError, IndexError):
            return "no in-band error event"
        return None if err.get("type") == expect["stream_error"] else f"in-band error {err}"
    if expect.get("stream"):
        events = [ln[6:] for ln in data.decode("utf-8", "replace").split("\n") if ln.startswith("data: ")]
        if events[-1:] != ["[DONE]"] or events.count("[DONE]") != 1:
            return f"stream not ended by one [DONE]: {data[-200:]!r}"
        content, usage, finish = [], None, []
        for e in events[:-1]:
            c = json.loads(e)
            if "error" in c:
                return f"unexpected in-band error {c}"
            for ch in c.get("choices") or []:
                content.append(ch.get("delta", {}).get("content") or "")
                if ch.get("finish_reason"):
                    finish.append(ch["finish_reason"])
            if c.get("usage"):
                usage = c["usage"]
        if "".join(content) != expect["text"]:
            return f"stream text {''.join(content)!r} != {expect['text']!r}"
        if finish != ["stop"]:
            return f"finish reasons {finish}"
        if expect.get("usage") and (not usage or usage["prompt_tokens"] + usage["completion_tokens"] != usage["total_tokens"]):
            return f"usage {usage}"
        return None
    try:
        out = json.loads(data)
        got = out["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        return f"not a chat.completion: {data[:200]!r}"
    if got != expect["text"]:
        return f"text {got!r} != {expect['text']!r}"
    u = out["usage"]
    if u["prompt_tokens"] + u["completion_tokens"] != u["total_tokens"] or min(u["prompt_tokens"], u["completion_tokens"]) < 0:
        return f"usage {u}"
    return None


# ---------------------------------------------------------------- load generator


def worker_proc(port: int, indices: list, threads: int, timeout: float, done: "mp.Value", out_q: "mp.Queue") -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lock = threading.Lock()
    counts: Counter = Counter()
    unexpected: list = []
    latencies: list = []
    per_thread = [indices[t::threads] for t in range(threads)]

    def run(my: list):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        local = Counter()
        lat = []
        bad = []
        for n, i in enumerate(my):
            kind, body, headers, expect = build(i)
            t0 = time.monotonic()
            try:
                conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                why = check(resp.status, data, expect)
                if resp.getheader("connection", "").lower() == "close":
                    conn.close()
                    local["conn_closed_by_gateway"] += 1
            except Exception as e:  # timeouts, resets: always unexpected here
                why = f"{type(e).__name__}: {e}"
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
            lat.append(time.monotonic() - t0)
            local[kind] += 1
            if kind in INJECTED:
                local["injected"] += 1
            if why is not None:
                local["unexpected"] += 1
                if len(bad) < 20:
                    bad.append((i, kind, why))
            if n % 50 == 49:
                with done.get_lock():
                    done.value += 50
        with done.get_lock():
            done.value += len(my) % 50
        conn.close()
        with lock:
            counts.update(local)
            latencies.extend(lat)
            unexpected.extend(bad)

    ts = [threading.Thread(target=run, args=(p,), daemon=True) for p in per_thread]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    latencies.sort()
    out_q.put({"counts": dict(counts), "unexpected": unexpected[:20],
               "lat": [latencies[int(q * (len(latencies) - 1))] for q in (0.5, 0.9, 0.99, 1.0)] if latencies else []})


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def envoy_heap(envoy: Envoy) -> dict:
    """Envoy's own allocator figures (finer than RSS): bytes allocated and heap size, MiB."""
    s = envoy.stats("server.memory_")
    return {k.split(".", 1)[1]: round(int(v) / 1048576, 2) for k, v in s.items()
            if k in ("server.memory_allocated", "server.memory_heap_size")}


def vm_counters(envoy: Envoy) -> dict:
    s = envoy.stats("wasm.")
    keep = {k: v for k, v in s.items() if k.startswith("wasm.unigate.vm_reload") or k == "wasm.envoy.wasm.runtime.v8.created"}
    return keep


def filter_stats(envoy: Envoy) -> int:
    """How many stats the filter has (its metrics: one per label set)."""
    return len([k for k in envoy.stats("wasmcustom.unigate") if k])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=100_000)
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument("--threads", type=int, default=8, help="threads (connections) per process")
    ap.add_argument("--warmup", type=int, default=3000, help="requests before the 'after warm-up' RSS sample")
    ap.add_argument("--timeout", type=float, default=20.0, help="per-request socket timeout (s)")
    ap.add_argument("--max-seconds", type=float, default=1800, help="hard bound on the whole run")
    ap.add_argument("--json", help="also write the report as JSON to this file")
    ap.add_argument("--fakes-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fakes_child:
        fakes_child()
        return 0

    child = subprocess.Popen([sys.executable, __file__, "--fakes-child"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    envoy = None
    procs: list = []
    try:
        line = child.stdout.readline()
        if not line:
            raise SystemExit("the fakes process did not start")
        ports = json.loads(line)
        plugin_cfg = {
            "openai_base_url": f"http://127.0.0.1:{ports['openai']}/v1",
            "aws_region": "us-east-1",
            "bedrock_endpoint": f"http://127.0.0.1:{ports['bedrock']}",
            "upstream_timeout_seconds": 10,
        }
        clusters = {"openai": ports["openai"], "bedrock": ports["bedrock"], "unigate_sidecar": ports["sidecar"]}
        envoy = Envoy("soak", plugin_cfg, default_env(), clusters, idle_timeout_s=10).start()
        pid = envoy.proc.pid
        # The harness starts Envoy with wasm:debug (several lines per request); a soak only
        # needs warnings, which still include Wasm traps and panics.
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{envoy.admin_port}/logging?wasm=warning",
                                                      method="POST"), timeout=5).read()
        vm_start = vm_counters(envoy)
        heap_start = envoy_heap(envoy)
        print(f"soak: Envoy pid {pid} on :{envoy.port} (2 workers), fakes pid {child.pid}; "
              f"{args.requests} requests, {args.procs}x{args.threads} connections", flush=True)

        done = mp.Value("q", 0)
        out_q: mp.Queue = mp.Queue()
        n_workers = args.procs
        all_idx = list(range(args.requests))
        t_start = time.monotonic()
        for w in range(n_workers):
            p = mp.Process(target=worker_proc, args=(envoy.port, all_idx[w::n_workers], args.threads, args.timeout, done, out_q),
                           daemon=True)
            p.start()
            procs.append(p)

        samples = [(0, 0.0, rss_kb(pid), None)]
        warm = None
        stats_warm = None
        next_print = 0.0
        while any(p.is_alive() for p in procs):
            time.sleep(0.5)
            el = time.monotonic() - t_start
            n = done.value
            r = rss_kb(pid)
            if warm is None and n >= args.warmup:
                warm = (n, el, r, None)
                stats_warm = filter_stats(envoy)
            if el >= next_print:
                heap = envoy_heap(envoy).get("memory_allocated")
                samples.append((n, el, r, heap))
                print(f"  {el:6.0f}s {n:7d} requests {n / max(el, 1e-9):7.0f}/s  Envoy RSS {r / 1024:6.1f} MiB"
                      f"  allocated {heap} MiB", flush=True)
                next_print = el + 10
            if el > args.max_seconds:
                print("soak: --max-seconds reached, stopping", flush=True)
                break
            if envoy.proc.poll() is not None:
                print("soak: Envoy exited!", flush=True)
                break
        results = []
        for _ in procs:
            try:
                results.append(out_q.get(timeout=10))
            except Exception:
                pass
        elapsed = time.monotonic() - t_start
        time.sleep(1.0)  # let in-flight cleanup finish before the final sample
        end_rss = rss_kb(pid)
        heap_end = envoy_heap(envoy)
        # Envoy refreshes server.memory_* at its stats flush (every 5 s): take the first
        # periodic sample (10 s in) after warm-up as the warm value.
        heap_warm = next((h for n, el, _, h in samples if h is not None and n >= args.warmup and el >= 6), None)
        vm_end = vm_counters(envoy)
        stats_end = filter_stats(envoy)
        if stats_warm is None:
            stats_warm = stats_end
        counts: Counter = Counter()
        unexpected = []
        lat = []
        for r in results:
            counts.update(r["counts"])
            unexpected += r["unexpected"]
            lat.append(r["lat"])
        total = sum(counts[k] for k, _, _ in KINDS)
        log_text = envoy.log_since(0)
        traps = [ln for ln in log_text.splitlines() if "panicked" in ln or "Function: proxy_on_" in ln]
        report = {
            "requests": total,
            "seconds": round(elapsed, 1),
            "requests_per_s": round(total / elapsed, 1),
            "injected_failures": counts["injected"],
            "unexpected_errors": counts["unexpected"],
            "gateway_closed_connections": counts["conn_closed_by_gateway"],
            "by_kind": {k: counts[k] for k, _, _ in KINDS},
            "envoy_rss_mib": {"start": round(samples[0][2] / 1024, 1),
                              "after_warmup": round((warm or samples[-1])[2] / 1024, 1),
                              "after_warmup_at_request": (warm or samples[-1])[0],
                              "end": round(end_rss / 1024, 1)},
            "envoy_heap_mib": {"start": heap_start, "after_warmup": heap_warm, "end": heap_end},
            "samples_requests_s_rss_allocated": [(n, round(el), round(r / 1024, 1), h) for n, el, r, h in samples],
            "latency_s_p50_p90_p99_max_per_proc": lat,
            "wasm_vm_counters_start": vm_start,
            "wasm_vm_counters_end": vm_end,
            "trap_lines_in_envoy_log": len(traps),
            "filter_stats": {"after_warmup": stats_warm, "end": stats_end},
            "first_unexpected": unexpected[:10],
            "envoy_alive": envoy.proc.poll() is None,
        }
        print()
        print("soak report")
        print(f"  requests            {total} in {elapsed:.1f} s = {total / elapsed:.0f} req/s "
              f"({args.procs}x{args.threads} connections, Envoy --concurrency 2)")
        print(f"  injected failures   {counts['injected']} (answered as expected unless counted below)")
        print(f"  unexpected errors   {counts['unexpected']}")
        for u in unexpected[:10]:
            print(f"      #{u[0]} {u[1]}: {u[2]}")
        print(f"  Envoy RSS           start {report['envoy_rss_mib']['start']} MiB, after warm-up "
              f"({report['envoy_rss_mib']['after_warmup_at_request']} requests) {report['envoy_rss_mib']['after_warmup']} MiB, "
              f"end {report['envoy_rss_mib']['end']} MiB")
        print(f"  Envoy allocated     start {heap_start.get('memory_allocated')} MiB, first sample after warm-up "
              f"{heap_warm} MiB, end {heap_end.get('memory_allocated')} MiB (heap size {heap_end.get('memory_heap_size')} MiB)")
        print(f"  Wasm VM counters    {vm_end} (start {vm_start})")
        print(f"  trap/panic lines    {len(traps)} in Envoy's log")
        print(f"  filter stats        {stats_warm} after warm-up, {stats_end} at the end "
              f"({counts['abuse_model_name']} made-up model names sent)")
        print(f"  latency (s)         p50/p90/p99/max per load process: {lat}")
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=1))
        # Made-up model names share one series: after warm-up, stats may only appear for the
        # few label sets warm-up had not met yet.
        ok = (counts["unexpected"] == 0 and not traps and envoy.proc.poll() is None
              and stats_end - stats_warm <= 50
              and all(v == "0" for k, v in vm_end.items() if k.startswith("wasm.unigate.vm_reload"))
              and vm_end.get("wasm.envoy.wasm.runtime.v8.created") == vm_start.get("wasm.envoy.wasm.runtime.v8.created"))
        return 0 if ok else 1
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
        if envoy is not None:
            envoy.stop()
        if child.poll() is None:
            try:
                child.stdin.close()
                child.wait(timeout=5)
            except Exception:
                child.kill()
                child.wait(timeout=5)


if __name__ == "__main__":
    sys.exit(main())
