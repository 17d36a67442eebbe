"""Fixtures for the system layer: the full stack as `make run` starts it (`unigate serve`:
rendered Envoy config + Envoy + unigate.wasm + sidecar) against the in-process fakes, driven
by the official OpenAI (and Anthropic) SDKs.

- `fakes` (session): FakeOpenAI and FakeBedrock; request logs and steering reset per test.
- `stack` (session): both providers configured against the fakes, client key CLIENT_KEY,
  AWS credentials for the sidecar from environment variables (the real AWS default chain).
- `start_stack` (module factory) for stacks with other environments.
- `client`: an `openai.OpenAI` pointed at `stack`, max_retries=0, with a timeout.

On a failing test, the `serve`/Envoy log lines written during that test are attached.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeBedrock, FakeOpenAI  # noqa: E402
from system_harness import (  # noqa: E402
    UPSTREAM_OPENAI_KEY,
    HarnessError,
    Stack,
    find_envoy,
    find_unigate,
    find_wasm,
    make_client,
    provider_env,
)


class Fakes:
    def __init__(self):
        self.openai = FakeOpenAI(api_key=UPSTREAM_OPENAI_KEY)
        self.bedrock = FakeBedrock(region="us-east-1")

    def start(self):
        self.openai.start()
        self.bedrock.start()
        return self

    def stop(self):
        self.openai.stop()
        self.bedrock.stop()

    def reset(self):
        self.openai.api_key = UPSTREAM_OPENAI_KEY
        self.bedrock.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN)
        self.openai.clear()
        self.bedrock.clear()

    def upstream_requests(self):
        return self.openai.requests + self.bedrock.requests


@pytest.fixture(scope="session")
def fakes():
    f = Fakes().start()
    yield f
    f.stop()


@pytest.fixture(autouse=True)
def _fresh_fakes(request):
    if "fakes" in request.fixturenames:
        f = request.getfixturevalue("fakes")
        f.reset()
        yield
        f.reset()
    else:
        yield


@pytest.fixture(scope="session")
def binaries():
    try:
        return find_unigate(), find_envoy(), find_wasm()
    except HarnessError as e:
        pytest.fail(str(e), pytrace=False)


def _start(name: str, env: dict) -> Stack:
    s = Stack(name, env)
    try:
        return s.start()
    except HarnessError as e:
        s.cleanup()
        pytest.fail(str(e), pytrace=False)


def _stop(s: Stack) -> None:
    """Stops a stack with SIGTERM; a stack that does not exit 0 within 10 s fails teardown."""
    already = s.proc is None or s.stop_seconds is not None
    s.stop()
    tail = s.log_tail(30)
    s.cleanup()
    if not already:
        assert s.exit_code == 0 and s.stop_seconds < 10, (
            f"unigate serve '{s.name}' did not stop cleanly on SIGTERM (exit {s.exit_code} after {s.stop_seconds:.1f}s):\n{tail}"
        )


@pytest.fixture(scope="session")
def stack(binaries, fakes):
    s = _start("main", provider_env(fakes))
    yield s
    _stop(s)


@pytest.fixture(scope="module")
def start_stack(binaries):
    """Factory: start_stack(name, env) -> a running Stack, stopped at module end."""
    started = []

    def start(name: str, env: dict) -> Stack:
        s = _start(name, env)
        started.append(s)
        return s

    yield start
    for s in started:
        _stop(s)


@pytest.fixture
def client(stack):
    c = make_client(stack)
    yield c
    c.close()


# ---------------------------------------------------------------- logs on failure


def pytest_runtest_setup(item):
    item._stack_log_offsets = {id(s): s.log_size() for s in Stack.running}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("setup", "call"):
        offsets = getattr(item, "_stack_log_offsets", {})
        for s in list(Stack.running):
            lines = [ln for ln in s.log_since(offsets.get(id(s), 0)).splitlines() if ln.strip()]
            if lines:
                rep.sections.append((f"unigate serve '{s.name}' log during this test (last 60 lines)", "\n".join(lines[-60:])))
