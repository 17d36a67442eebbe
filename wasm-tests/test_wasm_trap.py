"""A trapped Wasm VM is replaced (failure_policy FAIL_RELOAD) and the gateway keeps serving.

Uses build/unigate-trap.wasm, a test-only build (feature `test-trap`) in which a request with
`x-unigate-test-trap: 1` panics inside the filter: the production build has no such path.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from wasm_harness import Client, default_clusters, default_env, default_plugin_config

TRAP_WASM = Path(__file__).resolve().parent.parent / "build" / "unigate-trap.wasm"

CHAT = {"model": "gpt-4o", "messages": [{"role": "user", "content": "after the trap"}]}


@pytest.fixture(scope="module")
def trap_gw(start_envoy, fakes):
    if not TRAP_WASM.exists():
        pytest.fail(f"{TRAP_WASM} is missing: run `scripts/build-wasm.sh trap` (make test does)", pytrace=False)
    return start_envoy("trap", default_plugin_config(fakes), default_env(), default_clusters(fakes), wasm=str(TRAP_WASM))


def reloads(gw) -> int:
    stats = gw.stats("vm_reload")
    return sum(int(v) for k, v in stats.items() if k.endswith("vm_reload_success"))


def test_trapped_vm_is_reloaded_and_serving_resumes(trap_gw, fakes):
    c = Client(trap_gw.url)
    assert c.chat(CHAT).status == 200
    before = reloads(trap_gw)
    # The trap: Envoy fails this request (the VM died under it) but must not hang.
    t = time.monotonic()
    resp = c.request("POST", "/v1/chat/completions", CHAT, headers={"x-unigate-test-trap": "1"}, timeout=10)
    assert time.monotonic() - t < 5
    assert resp.status >= 500, resp
    assert "panicked" in trap_gw.log_since(0) or "deliberate trap" in trap_gw.log_since(0)
    # Envoy runs two workers; the one whose VM trapped recreates it for its next request
    # (after a 1 s backoff). Keep sending until the reload shows, then every request works.
    deadline = time.monotonic() + 20
    while reloads(trap_gw) <= before and time.monotonic() < deadline:
        c.chat(CHAT)
        time.sleep(0.2)
    assert reloads(trap_gw) > before, f"Envoy did not report a VM reload: {trap_gw.stats('vm_reload')}"
    for _ in range(8):
        resp = Client(trap_gw.url).chat(CHAT)
        assert resp.status == 200, resp
        assert resp.json()["choices"][0]["message"]["content"]
