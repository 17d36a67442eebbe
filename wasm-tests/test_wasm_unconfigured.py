"""A gateway with no provider configured (case 13): it still starts and serves its local
endpoints, and chat requests get a 503 that says what to set."""

from __future__ import annotations

import pytest

from wasm_checks import assert_error
from wasm_harness import Client, default_clusters, default_env, default_plugin_config


@pytest.fixture(scope="module")
def bare(start_envoy, fakes):
    cfg = default_plugin_config(fakes, aws_region=None, bedrock_endpoint=None)
    env = default_env(OPENAI_API_KEY=None)
    return Client(start_envoy("unconfigured", cfg, env, default_clusters(fakes)).url)


def test_health_reports_nothing_configured(bare, fakes):
    resp = bare.request("GET", "/health", key=None)
    assert resp.status == 200
    assert resp.json()["providers"] == {"openai": {"configured": False}, "bedrock": {"configured": False, "region": None}}


def test_models_still_listed(bare):
    resp = bare.request("GET", "/v1/models")
    assert resp.status == 200 and resp.json()["object"] == "list" and resp.json()["data"]


@pytest.mark.parametrize(
    "model,needle",
    [
        pytest.param("gpt-4o", "OPENAI_API_KEY", id="openai-model"),
        pytest.param("claude-3-haiku", "AWS_REGION", id="bedrock-alias"),
        pytest.param("amazon.nova-pro-v1:0", "AWS_REGION", id="bedrock-converse"),
    ],
)
def test_chat_for_unconfigured_provider_is_503(bare, fakes, model, needle):
    resp = bare.chat({"model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert_error(resp, 503, "api_error", code="provider_not_configured", message_contains=needle)
    assert fakes.upstream_requests() == [] and fakes.sidecar.requests == []


def test_validation_still_comes_first(bare, fakes):
    """A bad request is a 400 even when its provider is unconfigured."""
    resp = bare.chat({"model": "claude-3-haiku", "messages": []})
    assert_error(resp, 400, "invalid_request_error", param="messages")
