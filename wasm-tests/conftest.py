"""Fixtures for the wasm-tests layer: fake upstreams (session), Envoy processes running the
built filter (one per distinct plugin configuration, module-scoped), and a client.

On a failing test, the Envoy log lines written during that test are attached to the report.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO / "tests"), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeBedrock, FakeOpenAI, FakeSidecar  # noqa: E402
from harness import (  # noqa: E402
    CLIENT_KEYS,
    SIDECAR_TOKEN,
    UPSTREAM_OPENAI_KEY,
    Client,
    Envoy,
    HarnessError,
    find_envoy,
    find_wasm,
)


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


@pytest.fixture(scope="session")
def fakes():
    f = Fakes().start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def _fresh_fakes(request):
    """Every test starts with empty request logs and default steering."""
    if "fakes" in request.fixturenames:
        f = request.getfixturevalue("fakes")
        f.reset()
        yield
        f.reset()
    else:
        yield


@pytest.fixture(scope="session")
def binaries():
    """Envoy and the built .wasm, or a clear failure telling what to do."""
    try:
        return find_envoy(), find_wasm()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)


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


@pytest.fixture(scope="module")
def start_envoy(binaries):
    """Factory: start_envoy(name, plugin_config, env, clusters) -> a running Envoy, stopped
    at the end of the module."""
    started = []

    def start(name: str, plugin_config: dict, env: dict, clusters: dict, **kw) -> Envoy:
        e = Envoy(name, plugin_config, env, clusters, **kw)
        started.append(e)
        try:
            return e.start()
        except HarnessError as err:
            pytest.fail(str(err), pytrace=False)

    yield start
    for e in started:
        e.stop()


@pytest.fixture(scope="module")
def gateway(start_envoy, fakes):
    """Envoy with the default setup: both providers configured against the fakes."""
    return start_envoy("default", default_plugin_config(fakes), default_env(), default_clusters(fakes))


@pytest.fixture
def client(gateway):
    return Client(gateway.url)


# ---------------------------------------------------------------- Envoy logs on failure


def pytest_runtest_setup(item):
    item._envoy_log_offsets = {id(e): e.log_size() for e in Envoy.running}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("setup", "call"):
        offsets = getattr(item, "_envoy_log_offsets", {})
        for e in list(Envoy.running):
            text = e.log_since(offsets.get(id(e), 0))
            lines = [ln for ln in text.splitlines() if ln.strip()]
            if lines:
                rep.sections.append((f"Envoy '{e.name}' log during this test (last 60 lines)", "\n".join(lines[-60:])))
