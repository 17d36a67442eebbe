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

from wasm_harness import (  # noqa: E402
    Client,
    Envoy,
    Fakes,
    HarnessError,
    default_clusters,
    default_env,
    default_plugin_config,
    find_envoy,
    find_wasm,
)


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
