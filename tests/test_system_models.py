"""`GET /v1/models` and `GET /v1/models/{id}` through the OpenAI SDK."""

from __future__ import annotations

import openai
import pytest


def test_models_list(client, fakes):
    models = client.models.list()
    ids = [m.id for m in models]
    assert "gpt-4o" in ids and "claude-3-haiku" in ids, ids
    assert len(ids) == len(set(ids)), "no duplicates"
    for m in models:
        assert m.object == "model" and isinstance(m.created, int) and m.owned_by
    assert fakes.upstream_requests() == [], "the model list is answered by the filter"


def test_models_retrieve_id_with_colon(client):
    m = client.models.retrieve("anthropic.claude-3-haiku-20240307-v1:0")
    assert m.id == "anthropic.claude-3-haiku-20240307-v1:0" and m.object == "model"


def test_models_retrieve_alias(client):
    assert client.models.retrieve("claude-3-haiku").id == "claude-3-haiku"


def test_models_retrieve_unknown(client):
    with pytest.raises(openai.NotFoundError) as ei:
        client.models.retrieve("no-such-model")
    assert ei.value.code == "model_not_found"


def test_models_need_a_key(stack):
    from system_harness import make_client

    with pytest.raises(openai.AuthenticationError):
        make_client(stack, key="wrong").models.list()
