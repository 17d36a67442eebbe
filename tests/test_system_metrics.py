"""System tests: the metrics an operator scrapes from Envoy's `/stats/prometheus`.

The filter's counters and histograms carry their labels as name segments; the stats tags
`unigate serve` renders into envoy.yaml turn them into Prometheus labels. These tests read the
Prometheus text exposition as a scraper does and check labels and values against what the
fakes answered: one series per endpoint/provider/status class/model, tokens per key and model,
and a label set that does not grow with what clients send.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from metric_names import key_label, parse_prometheus
from system_harness import CLIENT_KEY, OTHER_CLIENT_KEY, http, http_get, make_client, provider_env

HAIKU_ID = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA_LITE_ID = "amazon.nova-lite-v1:0"


@pytest.fixture(scope="module")
def mstack(start_stack, fakes, tmp_path_factory):
    keys = tmp_path_factory.mktemp("keys") / "keys.json"
    keys.write_text(json.dumps([{"key": CLIENT_KEY, "name": "team-a"}, {"key": OTHER_CLIENT_KEY}]))
    return start_stack("metrics", provider_env(fakes, API_KEY=None, API_KEYS_FILE=str(keys)))


def scrape(stack) -> dict:
    """{(metric, frozenset(labels)): value} for the filter's metrics."""
    _, _, body = http_get(f"http://127.0.0.1:{stack.admin_port}/stats/prometheus", timeout=5)
    out = {}
    for metric, labels, value in parse_prometheus(body.decode()):
        if metric.startswith("unigate_"):
            out[(metric, frozenset(labels.items()))] = value
    return out


def series(metric: str, **labels) -> tuple:
    return (metric, frozenset(labels.items()))


def grown(before: dict, after: dict) -> dict:
    """The series whose value changed, with the change."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def wait_for(stack, before: dict, want: dict, timeout: float = 5.0) -> dict:
    """Scrapes until every series in `want` grew by its value (counted when Envoy logs the
    finished stream, just after the client has its answer)."""
    deadline = time.monotonic() + timeout
    while True:
        after = scrape(stack)
        delta = grown(before, after)
        if all(delta.get(k) == v for k, v in want.items()) or time.monotonic() > deadline:
            return delta
        time.sleep(0.1)


def test_requests_and_tokens_are_labelled_by_endpoint_provider_key_and_model(mstack, fakes):
    team_a, other = make_client(mstack), make_client(mstack, key=OTHER_CLIENT_KEY)
    before = scrape(mstack)
    a = team_a.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "count me"}])
    b = other.chat.completions.create(model=HAIKU_ID, messages=[{"role": "user", "content": "and me"}])
    other_label = key_label(OTHER_CLIENT_KEY)
    want = {
        series("unigate_requests_total", endpoint="chat", provider="openai", status_class="2xx", model="gpt-4o"): 1,
        series("unigate_requests_total", endpoint="chat", provider="bedrock", status_class="2xx", model=HAIKU_ID): 1,
        series("unigate_tokens_total", provider="openai", key="team-a", type="input", model="gpt-4o"): a.usage.prompt_tokens,
        series("unigate_tokens_total", provider="openai", key="team-a", type="output", model="gpt-4o"): a.usage.completion_tokens,
        series("unigate_tokens_total", provider="bedrock", key=other_label, type="input", model=HAIKU_ID): b.usage.prompt_tokens,
        series("unigate_tokens_total", provider="bedrock", key=other_label, type="output", model=HAIKU_ID): b.usage.completion_tokens,
        series("unigate_request_duration_ms_count", endpoint="chat", provider="openai", model="gpt-4o"): 1,
        series("unigate_request_duration_ms_count", endpoint="chat", provider="bedrock", model=HAIKU_ID): 1,
    }
    delta = wait_for(mstack, before, want)
    for k, v in want.items():
        assert delta.get(k) == v, (k, v, {s: d for s, d in delta.items() if s[0] == k[0]})
    assert a.usage.prompt_tokens > 0 and b.usage.completion_tokens > 0
    requests = {k: v for k, v in delta.items() if k[0] == "unigate_requests_total"}
    assert sum(requests.values()) == 2, requests


def test_a_stream_records_time_to_first_token(mstack, fakes):
    c = make_client(mstack)
    before = scrape(mstack)
    stream = c.chat.completions.create(model=NOVA_LITE_ID, messages=[{"role": "user", "content": "stream"}], stream=True)
    assert "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    want = {
        series("unigate_ttft_ms_count", endpoint="chat", provider="bedrock", model=NOVA_LITE_ID): 1,
        series("unigate_request_duration_ms_count", endpoint="chat", provider="bedrock", model=NOVA_LITE_ID): 1,
        series("unigate_requests_total", endpoint="chat", provider="bedrock", status_class="2xx", model=NOVA_LITE_ID): 1,
    }
    delta = wait_for(mstack, before, want)
    for k, v in want.items():
        assert delta.get(k) == v, (k, delta)


def test_models_clients_make_up_share_one_label(mstack, fakes):
    """A client can send any model name; the label set must not grow with them."""
    before = scrape(mstack)
    names = [f"gpt-made-up-{uuid.uuid4().hex[:12]}" for _ in range(5)]
    names += [f"anthropic.made-up-{uuid.uuid4().hex[:12]}" for _ in range(5)]
    statuses = []
    for name in names:
        status, _, _ = http("POST", f"{mstack.url}/v1/chat/completions",
                            {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"},
                            json.dumps({"model": name, "messages": [{"role": "user", "content": "hi"}]}).encode())
        statuses.append(status)
    delta = wait_for(mstack, before, {})
    after = scrape(mstack)
    every_label_value = {v for metric, labels in after for _, v in labels}
    assert not [n for n in names if n in every_label_value], "a client's model name became a label value"
    requests = {k: v for k, v in delta.items() if k[0] == "unigate_requests_total"}
    assert sum(requests.values()) == len(names), (requests, statuses)
    assert {dict(k[1])["model"] for k in requests} == {"other"}, requests


def test_local_answers_and_refusals_are_counted(mstack):
    before = scrape(mstack)
    status, _, _ = http_get(f"{mstack.url}/health")
    assert status == 200
    status, _, _ = http("POST", f"{mstack.url}/v1/chat/completions",
                        {"authorization": "Bearer not-a-key", "content-type": "application/json"},
                        json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).encode())
    assert status == 401
    want = {
        series("unigate_requests_total", endpoint="health", provider="local", status_class="2xx", model="none"): 1,
        series("unigate_requests_total", endpoint="chat", provider="local", status_class="4xx", model="none"): 1,
    }
    delta = wait_for(mstack, before, want)
    for k, v in want.items():
        assert delta.get(k) == v, (k, delta)
    assert not any(k[0] == "unigate_tokens_total" for k in delta), "nothing was charged for local answers"
