"""Fixtures for the compose layer: the stack of docker-compose.yaml, started by
scripts/compose-test.sh (`make compose-test`), reached only through the ports it published on
127.0.0.1. This layer starts nothing itself; it reads where the stack is from the environment:

  UNIGATE_COMPOSE_URL        the gateway (Envoy's listener, published by the sidecar service)
  UNIGATE_COMPOSE_FAKES_URL  the control port of the fakes service (tests/fakes/remote.py)
  UNIGATE_COMPOSE_API_KEY    the client key the stack was started with
  UNIGATE_COMPOSE_OPENAI_KEY the upstream OpenAI key the stack was started with
  UNIGATE_COMPOSE            a Compose command for this project (exec, logs)

On a failing test, the last envoy and sidecar log lines are attached.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO / "tests") not in sys.path:
    sys.path.insert(0, str(REPO / "tests"))

from fakes.remote import RemoteFakes  # noqa: E402


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run this layer with `make compose-test` (scripts/compose-test.sh)", returncode=2)
    return value


class Stack:
    def __init__(self):
        self.url = _env("UNIGATE_COMPOSE_URL")
        self.api_key = _env("UNIGATE_COMPOSE_API_KEY")
        self.openai_key = _env("UNIGATE_COMPOSE_OPENAI_KEY")
        self.compose_cmd = _env("UNIGATE_COMPOSE")

    def compose(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([self.compose_cmd, *args], capture_output=True, text=True, timeout=timeout)

    def envoy_admin(self, path: str) -> str:
        """GET on Envoy's admin port, which listens on the loopback of the envoy container only:
        reached from inside that container, as docs/operations.md tells operators."""
        script = (
            'exec 3<>/dev/tcp/127.0.0.1/9901 && '
            f'printf "GET {path} HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n" >&3 && cat <&3'
        )
        # Bytes: text mode would turn the CRLFs that frame the response into LFs.
        r = subprocess.run([self.compose_cmd, "exec", "-T", "envoy", "bash", "-c", script], capture_output=True, timeout=60)
        assert r.returncode == 0, f"admin {path}: {r.stderr!r}"
        head, _, body = r.stdout.decode().partition("\r\n\r\n")
        assert " 200 " in head.splitlines()[0], head
        if "transfer-encoding: chunked" in head.lower():
            body = _dechunk(body)
        return body

    def logs(self, service: str) -> str:
        return self.compose("logs", "--no-color", service).stdout


def _dechunk(body: str) -> str:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition("\r\n")
        size = int(size_line.split(";")[0], 16)
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return "".join(out)


@pytest.fixture(scope="session")
def stack() -> Stack:
    return Stack()


@pytest.fixture(scope="session")
def remote_fakes() -> RemoteFakes:
    f = RemoteFakes(_env("UNIGATE_COMPOSE_FAKES_URL"))
    assert f.healthy(), "the fakes service does not answer on its control port"
    return f


@pytest.fixture
def fakes(remote_fakes):
    remote_fakes.clear()
    yield remote_fakes
    remote_fakes.clear()


@pytest.fixture
def client(stack):
    import openai

    c = openai.OpenAI(base_url=stack.url + "/v1", api_key=stack.api_key, max_retries=0, timeout=30)
    yield c
    c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when == "call" and os.environ.get("UNIGATE_COMPOSE"):
        s = Stack()
        for service in ("envoy", "sidecar"):
            r = s.compose("logs", "--no-color", "--tail", "40", service)
            rep.sections.append((f"docker compose logs {service} (last 40 lines)", r.stdout))
