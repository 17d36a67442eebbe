"""Endpoints the filter answers itself (case 12): health, the model catalog."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from wasm_checks import assert_error


@pytest.mark.parametrize("path", ["/health", "/healthz", "/health/"])
def test_health_needs_no_key(client, fakes, path):
    resp = client.request("GET", path, key=None)
    assert resp.status == 200 and resp.content_type == "application/json"
    assert resp.json() == {
        "status": "ok",
        "providers": {"openai": {"configured": True}, "bedrock": {"configured": True, "region": "us-east-1"}},
    }
    assert fakes.upstream_requests() == []


def test_chat_health(client, fakes):
    resp = client.request("GET", "/v1/chat/completions/health", key=None)
    assert resp.status == 200
    body = resp.json()
    assert body["status"] == "ok" and body["service"] == "chat_completions"
    assert body["providers"]["bedrock"]["configured"] is True


def test_health_with_wrong_key_still_answers(client):
    assert client.request("GET", "/health", key="garbage").status == 200


def test_models_needs_a_key(client):
    assert_error(client.request("GET", "/v1/models", key=None), 401, "authentication_error", code="invalid_api_key")
    assert_error(client.request("GET", "/v1/models", key="nope"), 401, "authentication_error", code="invalid_api_key")


def test_models_list(client, fakes):
    resp = client.request("GET", "/v1/models")
    assert resp.status == 200 and resp.content_type == "application/json"
    body = resp.json()
    assert body["object"] == "list"
    ids = [m["id"] for m in body["data"]]
    assert "gpt-4o" in ids and "claude-3-haiku" in ids
    assert len(ids) == len(set(ids)), "duplicate ids"
    for m in body["data"]:
        assert m["object"] == "model", m
        assert isinstance(m["created"], int) and m["created"] > 0, m
        assert isinstance(m["owned_by"], str) and m["owned_by"], m
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize(
    "model_id",
    [
        "gpt-4o",
        "claude-3-haiku",
        "anthropic.claude-3-haiku-20240307-v1:0",
    ],
)
def test_model_by_id(client, model_id):
    resp = client.request("GET", "/v1/models/" + quote(model_id, safe=""))
    assert resp.status == 200, resp
    m = resp.json()
    assert m["id"] == model_id and m["object"] == "model"


def test_model_id_with_raw_colon(client):
    resp = client.request("GET", "/v1/models/anthropic.claude-3-haiku-20240307-v1:0")
    assert resp.status == 200, resp
    assert resp.json()["id"] == "anthropic.claude-3-haiku-20240307-v1:0"


def test_unknown_model_id(client):
    assert_error(client.request("GET", "/v1/models/no-such-model"), 404, "invalid_request_error", code="model_not_found")


def test_model_by_id_needs_a_key(client):
    assert_error(client.request("GET", "/v1/models/gpt-4o", key=None), 401, "authentication_error")
