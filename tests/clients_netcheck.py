"""Runs one real CLI the way tests/real_clients.py runs it, inside the network and mount
namespaces the caller made (`unshare -n -m python tests/clients_netcheck.py <client>`), and
reports on stdout (last line, JSON) every host name the CLI tried to resolve.

Inside the namespace: loopback only (brought up here), /etc/resolv.conf bind-mounted (private
mount namespace) to a file naming 127.0.0.1, a DNS stub on 127.0.0.1:53 that logs each query
and answers NXDOMAIN, and the scripted fake for the client on 127.0.0.1. Nothing here can
reach another address; the check is that nothing even tries to resolve one.

Used by test_clients_direct.py::test_clients_look_up_no_host; refuses to run outside a fresh
network namespace (it checks that no interface but `lo` exists).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fakes.anthropic import ScriptedAnthropic, text_turn, tool_use_turn  # noqa: E402
from fakes.bedrock_scripted import ScriptedBedrock  # noqa: E402
from fakes.responses import ScriptedResponses, function_call_turn  # noqa: E402
from fakes.responses import text_turn as responses_text_turn  # noqa: E402
from real_clients import run_claude_code, run_claude_code_bedrock, run_codex  # noqa: E402

MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
KEY = "ug-netcheck-key"


def _only_loopback() -> bool:
    names = [ln.split(":", 1)[0].strip() for ln in Path("/proc/self/net/dev").read_text().splitlines()[2:]]
    return names == ["lo"]


def _qname(data: bytes) -> tuple:
    i, labels = 12, []
    while i < len(data) and data[i]:
        n = data[i]
        labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    qtype = int.from_bytes(data[i + 1:i + 3], "big") if i + 3 <= len(data) else 0
    return ".".join(labels), qtype, i + 5


class DnsStub:
    def __init__(self):
        self.queries: list = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 53))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self):
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            if len(data) < 12:
                continue
            name, qtype, end = _qname(data)
            self.queries.append(f"{name} type={qtype}")
            # NXDOMAIN: same id, QR+RD+RA, rcode 3, echo the question.
            self.sock.sendto(data[:2] + b"\x81\x83" + data[4:6] + b"\0\0\0\0\0\0" + data[12:end], addr)


def main(client: str) -> dict:
    if not _only_loopback():
        raise SystemExit("refusing to run: not inside a fresh network namespace (run it under `unshare -n -m`)")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    resolv = Path(tempfile.mkdtemp(prefix="netcheck-")) / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions attempts:1 timeout:1\n")
    subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)
    dns = DnsStub()
    dns.thread.start()
    cwd = tempfile.mkdtemp(prefix="netcheck-cwd-")
    try:
        if client == "claude-code":
            fake = ScriptedAnthropic([tool_use_turn("Bash", {"command": "echo netcheck"}), text_turn("netcheck done")], api_key=KEY)
            with fake:
                run = run_claude_code(fake.url, KEY, MODEL, "Run it.", cwd, timeout=90)
        elif client == "claude-code-bedrock":
            fake = ScriptedBedrock([tool_use_turn("Bash", {"command": "echo netcheck"}), text_turn("netcheck done")], bearer_token=KEY)
            with fake:
                run = run_claude_code_bedrock(fake.url, KEY, MODEL, "Run it.", cwd, timeout=90)
        elif client == "codex":
            fake = ScriptedResponses([function_call_turn("exec_command", {"cmd": "echo netcheck"}), responses_text_turn("netcheck done")],
                                     api_key=KEY)
            with fake:
                run = run_codex(fake.base_url, KEY, MODEL, "Run it.", cwd, timeout=90)
        else:
            raise SystemExit(f"unknown client {client!r}")
    finally:
        dns.stop.set()
        dns.thread.join(timeout=2)
    return {
        "client": client,
        "ok": run.ok and "netcheck done" in run.stdout,
        "returncode": run.returncode,
        "seconds": round(run.seconds, 2),
        "turns": len(fake.turn_requests),
        "requests": [f"{r.method} {r.path} -> {r.response_status}" for r in fake.requests],
        "dns_queries": sorted(set(dns.queries)),
        "stderr_tail": run.stderr[-1500:] if not run.ok else "",
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
