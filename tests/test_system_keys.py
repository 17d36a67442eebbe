"""Client keys from `API_KEYS_FILE` (names, allowed model patterns, per-minute limits) with
`unigate serve`, as docs/configuration.md describes them.

The filter reads the JSON entries from the VM variable UNIGATE_API_KEYS
(`api_keys_json_env`); `serve` is documented to fill it from API_KEYS_FILE."""

from __future__ import annotations

import datetime
import json
import time

import openai
import pytest

from system_harness import make_client, provider_env

CLAUDE_ONLY = "ug-keysfile-claude-only-41c2"
RPM_TWO = "ug-keysfile-rpm-two-9d07"


@pytest.fixture(scope="module")
def keys_stack(start_stack, fakes, tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    path.write_text(json.dumps([
        {"key": CLAUDE_ONLY, "name": "claude-team", "models": ["claude-*"]},
        {"key": RPM_TWO, "name": "rpm-two", "rpm": 2},
    ]))
    return start_stack("keysfile", provider_env(fakes, API_KEY=None, API_KEYS_FILE=str(path)))


def _wait_for_fresh_minute():
    """Limits use fixed one-minute windows: do not straddle a minute boundary."""
    now = datetime.datetime.now()
    if now.second >= 50:
        time.sleep(60 - now.second - now.microsecond / 1e6 + 0.2)


def test_keys_file_model_patterns(keys_stack, fakes):
    assert keys_stack.generated_keys() == [], "API_KEYS_FILE is set: no key should be generated"
    c = make_client(keys_stack, key=CLAUDE_ONLY)
    ok = c.chat.completions.create(model="claude-3-haiku", messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content == "echo: hi"
    with pytest.raises(openai.PermissionDeniedError) as ei:
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert ei.value.status_code == 403 and ei.value.code == "model_not_allowed"
    assert fakes.openai.requests == []
    ids = [m.id for m in c.models.list()]
    assert ids and "claude-3-haiku" in ids
    assert all(i.startswith("claude-") or ".anthropic.claude-" in i or i.startswith("anthropic.claude-") for i in ids), ids
    assert "gpt-4o" not in ids


def test_keys_file_rpm_limit(keys_stack, fakes):
    c = make_client(keys_stack, key=RPM_TWO)
    _wait_for_fresh_minute()
    for _ in range(2):
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.RateLimitError) as ei:
        c.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    e = ei.value
    assert e.status_code == 429 and e.code == "rate_limit_exceeded"
    retry = e.response.headers.get("retry-after")
    assert retry is not None and 0 < int(retry) <= 60, retry
    assert len(fakes.openai.requests) == 2, "the refused request never reached the upstream"
