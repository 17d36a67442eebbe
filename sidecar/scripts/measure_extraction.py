#!/usr/bin/env python3
"""Measures what the abusive files of issue 17 cost a `unigate sidecar`: for each file, the
HTTP answer of the file-context endpoint, its wall time, the sidecar's peak RSS growth (VmHWM
after resetting it), and the CPU seconds it spends until the answer and in the 3 s after it
(work that outlives its request). Then three of the slowest files at once.

Usage: sidecar/scripts/measure_extraction.py [UNIGATE_BINARY]   (default target/release/unigate)
Everything runs on 127.0.0.1; the sidecar's address space is limited to 6 GiB (an extractor
that wants more fails instead of taking the machine)."""
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

TOKEN = "measure-token"
OWNER = "0123456789abcdef"
LIMIT_AS = 6 << 30


def pdf(content, xobjects="", extra=()):
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> /XObject << %s >> >> >>" % xobjects,
        "<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ] + list(extra)
    out = b"%PDF-1.4\n"
    offsets = []
    for i, o in enumerate(objects):
        offsets.append(len(out))
        out += ("%d 0 obj\n%s\nendobj\n" % (i + 1, o)).encode()
    xref = len(out)
    out += ("xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)).encode()
    for off in offsets:
        out += ("%010d 00000 n \n" % off).encode()
    out += ("trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)).encode()
    return out


def form(content, resources=""):
    return "<< /Type /XObject /Subtype /Form /BBox [0 0 1 1] /Resources << %s >> /Length %d >>\nstream\n%s\nendstream" % (
        resources, len(content), content)


LAUGHS = [form("/X Do /X Do", "/XObject << /X %d 0 R >>" % (7 + i)) for i in range(29)] + [form("")]
TEXT = "".join("BT /F1 10 Tf 10 %d Td (line %d of a long page of text) Tj ET\n" % (10 + i % 70 * 10, i) for i in range(2000))
FILES = [
    ("open20k.json", b"[" * 20_000),
    ("open40k.json", b"[" * 40_000),
    ("nested.json", b'{"a":' * 20_000),
    ("commas.csv", b"," * 4_000_000),
    ("titles.html", b"<title>" * 40_000),
    ("deep.xml", b"<a>" * 20_000),
    ("text.pdf", pdf(TEXT)),
    ("laughs.pdf", pdf("/X Do", "/X 6 0 R", LAUGHS)),
    ("self.pdf", pdf("/X Do", "/X 6 0 R", [form("/X Do", "/XObject << /X 6 0 R >>")])),
    ("slow.pdf", pdf("/X Do " * 9_999, "/X 6 0 R", [form("q Q " * 1_500)])),
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(port, method, path, body=b"", headers=None, timeout=60):
    h = {"x-unigate-token": TOKEN, "x-unigate-owner": OWNER}
    h.update(headers or {})
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=body or None, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def upload(port, name, data):
    boundary = "measure-boundary"
    body = ("--%s\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nuser_data\r\n"
            "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"%s\"\r\n\r\n" % (boundary, boundary, name)).encode()
    body += data + ("\r\n--%s--\r\n" % boundary).encode()
    status, out = call(port, "POST", "/v1/files", body, {"content-type": "multipart/form-data; boundary=" + boundary})
    assert status == 200, out
    return json.loads(out)["id"]


def kib(pid, field):
    for line in open("/proc/%d/status" % pid):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def cpu(pid):
    stat = open("/proc/%d/stat" % pid).read()
    f = stat[stat.rfind(")") + 2:].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def context(port, fid):
    body = json.dumps({"file_ids": [fid]}).encode()
    start = time.monotonic()
    try:
        status, out = call(port, "POST", "/v1/internal/file-context", body, {"content-type": "application/json"})
        code = "" if status == 200 else json.loads(out)["error"].get("code")
    except Exception as e:  # the sidecar died
        status, code = 0, type(e).__name__
    return status, code, time.monotonic() - start


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/unigate"
    home = tempfile.mkdtemp(prefix="measure-extraction-")
    port = free_port()
    env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "UNIGATE_SIDECAR_TOKEN": TOKEN,
           "FILES_DIR": os.path.join(home, "files"), "RUST_LOG": "error", "AWS_EC2_METADATA_DISABLED": "true"}

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))

    def start():
        p = subprocess.Popen([binary, "sidecar", "--port", str(port)], env=env, cwd=home,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=limit)
        for _ in range(200):
            try:
                if call(port, "GET", "/health", timeout=1)[0] == 200:
                    return p
            except OSError:
                time.sleep(0.05)
        raise SystemExit("the sidecar did not start")

    proc = start()
    ids = {}
    for name, data in FILES:
        ids[name] = upload(port, name, data)
    print("%-14s %9s  %-22s %8s %10s %9s %9s" % ("file", "bytes", "answer", "time s", "peak +MiB", "cpu s", "cpu after"))
    for name, data in FILES:
        if proc.poll() is not None:
            proc = start()
        open("/proc/%d/clear_refs" % proc.pid, "w").write("5")
        rss = kib(proc.pid, "VmRSS:")
        c0 = cpu(proc.pid)
        status, code, took = context(port, ids[name])
        alive = proc.poll() is None
        peak = (kib(proc.pid, "VmHWM:") - rss) / 1024 if alive else float("nan")
        c1 = cpu(proc.pid) if alive else float("nan")
        time.sleep(3)
        c2 = cpu(proc.pid) if proc.poll() is None else float("nan")
        answer = "%d %s" % (status, code) if alive else "sidecar died"
        print("%-14s %9d  %-22s %8.2f %10.1f %9.2f %9.2f" % (name, len(data), answer, took, peak, c1 - c0, c2 - c1), flush=True)
        # Let work that outlived its request finish before the next measurement.
        for _ in range(120):
            if proc.poll() is not None:
                break
            a = cpu(proc.pid)
            time.sleep(0.5)
            if cpu(proc.pid) - a < 0.05:
                break
    for name in ("titles.html", "slow.pdf"):
        if proc.poll() is not None:
            proc = start()
        c0 = cpu(proc.pid)
        results = []
        threads = [threading.Thread(target=lambda: results.append(context(port, ids[name]))) for _ in range(3)]
        start_t = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        answered = time.monotonic() - start_t
        for _ in range(120):
            a = cpu(proc.pid)
            time.sleep(0.5)
            if cpu(proc.pid) - a < 0.05:
                break
        print("3 x %-10s answers %s after %.2f s; %.2f CPU seconds in all" % (
            name, sorted("%d %s %.1fs" % r for r in results), answered, cpu(proc.pid) - c0), flush=True)
    proc.terminate()
    proc.wait(timeout=10)


if __name__ == "__main__":
    main()
