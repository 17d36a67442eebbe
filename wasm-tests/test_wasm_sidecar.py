"""AWS credentials from the sidecar (case 14): no credentials, a refusing or slow or absent
sidecar, recovery, and rotation. Each scenario has its own Envoy because the filter caches
credentials in Envoy's shared data for the life of the process.

Tests in this module run in file order on purpose: the 'creds' Envoy starts without any
cached credentials, and only the later tests let it obtain some.
"""

from __future__ import annotations

import time

import pytest

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeSidecar
from wasm_checks import assert_bedrock_upstream, assert_chat_completion, assert_error
from wasm_harness import SIDECAR_TOKEN, Client, closed_port, default_clusters, default_env, default_plugin_config

HAIKU_PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"


def chat(model="claude-3-haiku", text="hi"):
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 8}


@pytest.fixture(scope="module")
def sidecar():
    with FakeSidecar(token=SIDECAR_TOKEN) as s:
        s.set_credentials(None)
        yield s


@pytest.fixture(scope="module")
def creds_gw(start_envoy, fakes, sidecar):
    cfg = default_plugin_config(fakes, sidecar_timeout_ms=500, credentials_refresh_seconds=1)
    return Client(start_envoy("sidecar-creds", cfg, default_env(), default_clusters(fakes, unigate_sidecar=sidecar.port)).url)


@pytest.fixture(autouse=True)
def _sidecar_defaults(sidecar):
    sidecar.delay_ms = 0
    sidecar.status_override = None
    yield


def test_sidecar_without_credentials_is_503(creds_gw, fakes, sidecar):
    sidecar.set_credentials(None)
    sidecar.clear()
    t = time.monotonic()
    resp = creds_gw.chat(chat())
    assert time.monotonic() - t < 3
    assert_error(resp, 503, "api_error", message_contains="AWS credentials")
    assert fakes.bedrock.requests == []
    calls = sidecar.requests
    assert calls and all(c.path == "/v1/internal/aws-credentials" and c.method == "GET" for c in calls)
    assert all(c.headers.get("x-unigate-token") == SIDECAR_TOKEN for c in calls)


def test_openai_does_not_need_the_sidecar(creds_gw, fakes):
    assert creds_gw.chat(chat("gpt-4o")).status == 200


def test_sidecar_refusing_the_filter_is_502(creds_gw, fakes, sidecar):
    sidecar.status_override = 401
    resp = creds_gw.chat(chat())
    assert_error(resp, 502, "api_error", code="sidecar_error", message_contains="AWS credentials")
    assert fakes.bedrock.requests == []


def test_slow_sidecar_is_bounded(creds_gw, fakes, sidecar):
    sidecar.delay_ms = 2000  # past sidecar_timeout_ms (500)
    t = time.monotonic()
    resp = creds_gw.chat(chat(), timeout=10)
    took = time.monotonic() - t
    assert took < 1.8, took
    assert_error(resp, 503, "api_error", message_contains="AWS credentials")
    assert fakes.bedrock.requests == []


def test_recovers_once_the_sidecar_has_credentials(creds_gw, fakes, sidecar):
    sidecar.set_credentials(DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN)
    resp = creds_gw.chat(chat(text="back"))
    assert_chat_completion(resp, model="claude-3-haiku", text="echo: back")
    assert_bedrock_upstream(fakes.bedrock.last(), HAIKU_PATH)


def test_rotated_credentials_are_picked_up(creds_gw, fakes, sidecar):
    """The sidecar hands out new credentials and Bedrock stops accepting the old ones; the
    filter's refresh tick (credentials_refresh_seconds=1) must switch within a few seconds."""
    new_key, new_secret, new_token = "AKIDROTATED0002", "rotated/secret+2", "rotated-session-token-2"
    sidecar.set_credentials(new_key, new_secret, new_token)
    fakes.bedrock.set_credentials(new_key, new_secret, new_token)
    deadline = time.monotonic() + 10
    statuses = []
    while time.monotonic() < deadline:
        resp = creds_gw.chat(chat(text="rotated"))
        statuses.append(resp.status)
        if resp.status == 200:
            break
        time.sleep(0.3)
    assert statuses[-1] == 200, f"never switched to the rotated credentials: {statuses}"
    rec = fakes.bedrock.last()
    assert rec.sigv4.ok and rec.sigv4.access_key == new_key
    assert rec.headers["x-amz-security-token"] == new_token
    assert set(statuses[:-1]) <= {502}, statuses


# ---------------------------------------------------------------- sidecar down


@pytest.fixture(scope="module")
def down_gw(start_envoy, fakes):
    cfg = default_plugin_config(fakes, sidecar_timeout_ms=1000)
    return Client(start_envoy("sidecar-down", cfg, default_env(), default_clusters(fakes, unigate_sidecar=closed_port())).url)


def test_sidecar_down_is_503_without_hanging(down_gw, fakes):
    t = time.monotonic()
    resp = down_gw.chat(chat(), timeout=10)
    assert time.monotonic() - t < 3
    assert_error(resp, 503, "api_error", message_contains="AWS credentials")
    assert fakes.bedrock.requests == []
    assert down_gw.chat(chat("gpt-4o")).status == 200
