"""Headers a client must not be able to use to steer or spoof the gateway: the internal
routing header, AWS signing headers, the Host, and a path to the sidecar's credentials."""

from __future__ import annotations

import pytest

from fakes import DEFAULT_SECRET, DEFAULT_TOKEN
from wasm_checks import assert_bedrock_upstream, assert_error, assert_openai_upstream
from wasm_harness import SIDECAR_TOKEN

MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("cluster", ["unigate_sidecar", "bedrock", "no_such_cluster"])
def test_client_routing_header_is_ignored(client, fakes, cluster):
    resp = client.chat({"model": "gpt-4o", "messages": MSG}, headers={"x-unigate-cluster": cluster})
    assert resp.status == 200, resp
    assert_openai_upstream(fakes.openai.last())
    assert fakes.bedrock.requests == [] and fakes.sidecar.requests == []


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_sidecar_credentials_are_not_reachable_through_the_gateway(client, fakes, method):
    resp = client.request(method, "/v1/internal/aws-credentials",
                          headers={"x-unigate-cluster": "unigate_sidecar", "x-unigate-token": SIDECAR_TOKEN})
    assert resp.status in (404, 405), resp
    body = resp.body.decode()
    assert DEFAULT_SECRET not in body and DEFAULT_TOKEN not in body
    assert fakes.sidecar.requests == []


def test_client_aws_headers_do_not_reach_bedrock(client, fakes):
    spoof = {
        "x-amz-security-token": "client-token",
        "x-amz-date": "20200101T000000Z",
        "x-amz-content-sha256": "0" * 64,
        "x-amzn-trace-id": "Root=1-client",
        "x-api-key": "test-key-2",
    }
    resp = client.chat({"model": "claude-3-haiku", "messages": MSG}, headers=spoof)
    assert resp.status == 200, resp
    rec = fakes.bedrock.last()
    assert_bedrock_upstream(rec, "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke")
    assert rec.headers.get("x-amz-security-token") == DEFAULT_TOKEN
    assert rec.headers["x-amz-date"] != "20200101T000000Z"
    assert rec.headers.get("x-amz-content-sha256") != "0" * 64
    assert "x-amzn-trace-id" not in rec.headers and "x-api-key" not in rec.headers
    assert rec.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


@pytest.mark.parametrize("model,server", [("claude-3-haiku", "bedrock"), ("gpt-4o", "openai")])
def test_host_header_is_the_upstreams(client, fakes, model, server):
    resp = client.chat({"model": model, "messages": MSG}, headers={"host": "evil.example"})
    assert resp.status == 200, resp
    fake = getattr(fakes, server)
    assert fake.last().headers["host"] == f"127.0.0.1:{fake.port}"


def test_target_format_header_is_not_forwarded(client, fakes):
    resp = client.chat({"model": "gpt-4o", "messages": MSG}, headers={"x-target-format": "openai"})
    assert resp.status == 200
    assert "x-target-format" not in fakes.openai.last().headers


def test_error_bodies_do_not_echo_the_client_key(client):
    resp = client.chat({"model": "gpt-4o", "messages": MSG}, key="sk-client-secret-value")
    assert_error(resp, 401, "authentication_error")
    assert "sk-client-secret-value" not in resp.body.decode()


def test_files_go_to_the_sidecar_with_the_owner_and_the_shared_secret(client, fakes):
    """/v1/files is served by the sidecar: the filter names the owner (a hash of the client key,
    never the key), adds the shared secret, and drops the client's own credentials and any
    spoofed owner header."""
    fakes.sidecar.clear()
    spoof = {"x-unigate-owner": "someone-else", "x-unigate-token": "guess", "x-api-key": "k"}
    client.request("GET", "/v1/files?limit=2", headers=spoof)
    rec = fakes.sidecar.last()
    assert rec.path == "/v1/files?limit=2"
    owner = rec.headers.get("x-unigate-owner", "")
    assert len(owner) == 16 and all(c in "0123456789abcdef" for c in owner), owner
    assert rec.headers.get("x-unigate-token") == SIDECAR_TOKEN
    assert "authorization" not in rec.headers and "x-api-key" not in rec.headers
    assert fakes.bedrock.requests == [] and fakes.openai.requests == []


def test_files_need_a_key(client, fakes):
    fakes.sidecar.clear()
    resp = client.request("GET", "/v1/files", key=None)
    assert_error(resp, 401, "authentication_error")
    assert fakes.sidecar.requests == []


def test_made_up_model_names_do_not_grow_envoys_stats(gateway, client, fakes):
    """Any client can send any model name: 1,500 distinct names (routed by prefix to both
    providers) add a handful of stats (`model.other` series), not one per name."""
    before = gateway.stats("wasmcustom.unigate")
    statuses = set()
    for i in range(750):
        for prefix in ("gpt-made-up-", "anthropic.made-up-"):
            resp = client.chat({"model": f"{prefix}{i}", "messages": MSG})
            statuses.add(resp.status)
    after = gateway.stats("wasmcustom.unigate")
    new = sorted(set(after) - set(before))
    assert len(new) <= 12, new
    assert not [n for n in new if "made-up" in n], new
    assert all(".model." not in n or n.endswith(".model.other") for n in new), new
    assert statuses, statuses
