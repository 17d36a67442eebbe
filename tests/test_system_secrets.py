"""Secrets never land in generated files, logs or Envoy's environment: the client key, the
OpenAI key, the AWS secret key and session token."""

from __future__ import annotations

import openai
import pytest

from fakes import DEFAULT_SECRET, DEFAULT_TOKEN
from system_harness import CLIENT_KEY, OTHER_CLIENT_KEY, UPSTREAM_OPENAI_KEY, make_client

SECRETS = {
    "client API key": CLIENT_KEY,
    "second client API key": OTHER_CLIENT_KEY,
    "OpenAI key": UPSTREAM_OPENAI_KEY,
    "AWS secret access key": DEFAULT_SECRET,
    "AWS session token": DEFAULT_TOKEN,
}


def test_run_dir_has_no_secrets(stack):
    files = [p for p in stack.run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "envoy.yaml" for p in files), f"no rendered envoy.yaml in {stack.run_dir}: {files}"
    for p in files:
        data = p.read_bytes()
        for what, secret in SECRETS.items():
            assert secret.encode() not in data, f"{what} written to {p}"


def test_envoy_environment_has_no_aws_secrets(stack):
    """Static AWS keys are for the sidecar only; Envoy gets the client and OpenAI keys (its
    filter reads them through host_env_keys) but not the AWS secret or session token."""
    env = stack.envoy_environ()
    values = "\n".join(env.values())
    assert DEFAULT_SECRET not in values and DEFAULT_TOKEN not in values
    assert "AWS_SECRET_ACCESS_KEY" not in env and "AWS_SESSION_TOKEN" not in env
    assert env.get("OPENAI_API_KEY") == UPSTREAM_OPENAI_KEY  # how the filter gets it


def test_logs_have_no_secrets_after_traffic(stack, fakes):
    c = make_client(stack)
    c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    c.chat.completions.create(model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}])
    list(c.chat.completions.create(model="amazon.nova-pro-v1:0", messages=[{"role": "user", "content": "hi"}], stream=True))
    with pytest.raises(openai.InternalServerError):
        c.chat.completions.create(model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}],
                                  extra_headers={"x-fake-status": "500", "x-fake-error-type": "InternalServerException"})
    with pytest.raises(openai.AuthenticationError):
        make_client(stack, key=CLIENT_KEY + "x").models.list()
    log = stack.log()
    assert log.strip(), "serve/Envoy log is empty"
    for what, secret in SECRETS.items():
        assert secret not in log, f"{what} appears in the serve/Envoy log"
