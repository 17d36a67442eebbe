"""`unigate serve` with nothing configured: no OPENAI_API_KEY, no AWS_REGION, no API_KEY.
It generates a client key and prints it once, serves health and models, and answers chat
requests with a 503 that says what to set. The module ends by stopping the stack with
SIGTERM and checking that `serve` and its Envoy are gone within 10 s."""

from __future__ import annotations

import json
import time

import openai
import pytest

from system_harness import Stack, _alive, http_get, make_client

BARE_ENV = {"OPENAI_API_KEY": None, "AWS_REGION": None, "AWS_DEFAULT_REGION": None, "API_KEY": None,
            "AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None}


@pytest.fixture(scope="module")
def bare(start_stack):
    return start_stack("bare", BARE_ENV)


@pytest.fixture(scope="module")
def generated_key(bare):
    keys = bare.generated_keys()
    assert len(keys) == 1, f"expected the generated key printed exactly once:\n{bare.log_tail(20)}"
    return keys[0]


def test_generated_key_is_printed_once(bare, generated_key):
    assert len(generated_key) >= 20
    assert bare.log().count(generated_key) == 1, "the key is printed once and never logged again"


def test_health_without_key(bare):
    status, headers, body = http_get(bare.url + "/health")
    assert status == 200
    h = json.loads(body)
    assert h["status"] == "ok"
    assert h["providers"]["openai"]["configured"] is False
    assert h["providers"]["bedrock"]["configured"] is False


def test_models_with_generated_key(bare, generated_key):
    ids = [m.id for m in make_client(bare, key=generated_key).models.list()]
    assert "gpt-4o" in ids and "claude-3-haiku" in ids


def test_gateway_is_not_open(bare):
    with pytest.raises(openai.AuthenticationError):
        make_client(bare, key="guess").models.list()


@pytest.mark.parametrize(
    "model,names",
    [pytest.param("gpt-4o", ["OPENAI_API_KEY"], id="openai"),
     pytest.param("claude-3-haiku", ["AWS_REGION"], id="bedrock")],
)
def test_chat_is_503_naming_what_to_set(bare, generated_key, model, names):
    c = make_client(bare, key=generated_key)
    with pytest.raises(openai.InternalServerError) as ei:
        c.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    e = ei.value
    assert e.status_code == 503 and e.code == "provider_not_configured", e.body
    for n in names:
        assert n in e.message, e.message


def test_generated_key_not_in_run_dir(bare, generated_key):
    files = [p for p in bare.run_dir.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert generated_key.encode() not in p.read_bytes(), p


def test_sigterm_stops_serve_and_envoy(bare):
    """Last in the module: SIGTERM to `unigate serve` stops Envoy and exits 0 within 10 s."""
    envoy = bare.envoy_pid
    assert envoy and _alive(envoy), "Envoy runs as a child of `unigate serve`"
    bare.stop()
    assert bare.exit_code == 0, bare.log_tail(20)
    assert bare.stop_seconds < 10, bare.stop_seconds
    deadline = time.monotonic() + 2
    while _alive(envoy) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(envoy), "Envoy outlived `unigate serve`"
    try:
        status, _, _ = http_get(bare.url + "/health", timeout=1)
    except OSError:
        status = None
    assert status is None, "nothing listens on the gateway port any more"
