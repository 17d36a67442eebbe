"""A self-contained `unigate serve` stack for the Files API system tests (test_system_files.py).

Starts the release binary (`target/release/unigate`, or $UNIGATE_BIN) with Envoy, the filter
and the sidecar on free 127.0.0.1 ports, in front of the in-process fakes from tests/fakes
(FakeOpenAI, FakeBedrock), with two client keys, files on local disk under a temporary
FILES_DIR, and an AWS environment that cannot reach any real credential source. Every wait is
bounded; only the processes started here are stopped (by PID).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeBedrock, FakeOpenAI  # noqa: E402

KEY_A = "ug-files-key-a-31c7e0"
KEY_B = "ug-files-key-b-9d44aa"
UPSTREAM_KEY = "sk-files-upstream-0b12"
START_TIMEOUT_S = 45
STOP_TIMEOUT_S = 10


class StackError(RuntimeError):
    pass


def _executable(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def binaries() -> tuple:
    """(unigate, envoy, wasm) paths, or StackError saying what to build."""
    unigate = Path(os.environ.get("UNIGATE_BIN") or REPO / "target" / "release" / "unigate")
    if not _executable(unigate):
        raise StackError(f"{unigate} is not built: run `cargo build --release -p unigate-sidecar`.")
    envoy = os.environ.get("ENVOY_BIN")
    candidates = [Path(envoy)] if envoy else [REPO / ".venv" / "bin" / "envoy", Path(sys.executable).parent / "envoy"]
    if shutil.which("envoy"):
        candidates.append(Path(shutil.which("envoy")))
    envoy_path = next((c for c in candidates if _executable(c)), None)
    if envoy_path is None:
        raise StackError("Envoy not found: set ENVOY_BIN or run scripts/setup.sh.")
    wasm = Path(os.environ.get("UNIGATE_WASM") or REPO / "build" / "unigate.wasm")
    if not wasm.is_file():
        raise StackError(f"{wasm} does not exist: run `make wasm`.")
    return str(unigate.resolve()), str(envoy_path.resolve()), str(wasm.resolve())


def free_ports(n: int) -> list:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def http(method: str, url: str, headers: Optional[dict] = None, body: Optional[bytes] = None, timeout: float = 10) -> tuple:
    """(status, headers, body) of one request; never raises for HTTP error statuses."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _children(pid: int) -> list:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
            except OSError:
                pass
    except OSError:
        pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


class FilesStack:
    """Fakes + `unigate serve` with the Files API on local disk."""

    def __init__(self, extra_env: Optional[dict] = None):
        self.extra_env = dict(extra_env or {})
        self.dir = Path(tempfile.mkdtemp(prefix="unigate-files-stack-"))
        self.files_dir = self.dir / "files"
        self.log_path = self.dir / "serve.log"
        self.openai = FakeOpenAI(api_key=UPSTREAM_KEY)
        self.bedrock = FakeBedrock(region="us-east-1")
        self.proc: Optional[subprocess.Popen] = None
        self.envoy_pid: Optional[int] = None
        self.port = 0
        self.env: dict = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "FilesStack":
        unigate, envoy, wasm = binaries()
        self.openai.start()
        self.bedrock.start()
        (self.dir / "home").mkdir(exist_ok=True)
        empty = self.dir / "empty"
        empty.write_text("")
        for attempt in range(2):
            self.port, admin, sidecar = free_ports(3)
            env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
            env.update(
                {
                    "HOME": str(self.dir / "home"),
                    "GATEWAY_PORT": str(self.port),
                    "ENVOY_ADMIN_PORT": str(admin),
                    "UNIGATE_SIDECAR_PORT": str(sidecar),
                    "ENVOY_BIN": envoy,
                    "UNIGATE_WASM": wasm,
                    "UNIGATE_RUN_DIR": str(self.dir / "run"),
                    "ENVOY_CONCURRENCY": "2",
                    "API_KEY": f"{KEY_A},{KEY_B}",
                    "OPENAI_API_KEY": UPSTREAM_KEY,
                    "OPENAI_BASE_URL": self.openai.url + "/v1",
                    "AWS_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.bedrock.url,
                    "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": DEFAULT_SECRET,
                    "AWS_SESSION_TOKEN": DEFAULT_TOKEN,
                    "AWS_CONFIG_FILE": str(empty),
                    "AWS_SHARED_CREDENTIALS_FILE": str(empty),
                    "AWS_EC2_METADATA_DISABLED": "true",
                    "FILES_DIR": str(self.files_dir),
                }
            )
            env.update(self.extra_env)
            self.env = env
            log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [unigate, "serve"], cwd=str(self.dir), env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            log.close()
            try:
                self._wait_healthy()
                return self
            except StackError:
                self.stop()
                if attempt == 1 or "in use" not in self.log().lower():
                    raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise StackError(f"unigate serve exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                if http("GET", self.url + "/health", timeout=1)[0] == 200:
                    kids = _children(self.proc.pid)
                    self.envoy_pid = kids[0] if kids else None
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise StackError(f"unigate serve: /health not 200 after {START_TIMEOUT_S}s:\n{self.log()[-4000:]}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if not self.envoy_pid:
                kids = _children(self.proc.pid)
                self.envoy_pid = kids[0] if kids else None
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.envoy_pid and _alive(self.envoy_pid):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(self.envoy_pid):
                time.sleep(0.05)
            if _alive(self.envoy_pid):
                try:
                    os.kill(self.envoy_pid, signal.SIGKILL)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop()
        self.openai.stop()
        self.bedrock.stop()
        if not os.environ.get("UNIGATE_KEEP_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, key: str = KEY_A):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)

    def cli(self, *args: str, key: str = KEY_A, stdin: Optional[str] = None, cwd: Optional[Path] = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs the `unigate` CLI against this stack (no TTY: plain output)."""
        unigate, _, _ = binaries()
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.dir / "home"), "UNIGATE_URL": self.url, "API_KEY": key, "RUST_LOG": "error"}
        return subprocess.run(
            [unigate, *args], input=stdin, capture_output=True, text=True, env=env,
            cwd=str(cwd or self.dir), timeout=timeout,
        )
