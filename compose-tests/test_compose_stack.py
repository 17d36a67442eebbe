"""The Docker Compose stack users run (docker-compose.yaml: the envoy image with unigate.wasm
from our image, and the `unigate sidecar` container), driven by the official OpenAI SDK through
the port published on 127.0.0.1, against the fakes service. The fake Bedrock verifies every
SigV4 signature with botocore: a pass means the filter in the envoy container signed with the
credentials the sidecar container resolved from its environment.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request

from system_harness import HAIKU, assert_bedrock_upstream, assert_openai_upstream, assert_usage

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"


def get(url: str, key: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_health_reports_both_providers_configured(stack):
    status, body = get(stack.url + "/health")
    assert status == 200, body
    health = json.loads(body)
    assert health["status"] == "ok"
    assert health["providers"]["openai"]["configured"] is True
    assert health["providers"]["bedrock"]["configured"] is True
    assert health["providers"]["bedrock"]["region"] == "us-east-1"


def test_models_need_the_client_key(stack):
    assert get(stack.url + "/v1/models")[0] == 401
    status, body = get(stack.url + "/v1/models", stack.api_key)
    assert status == 200, body
    ids = [m["id"] for m in json.loads(body)["data"]]
    assert "gpt-4o" in ids and any(i.startswith("anthropic.claude") for i in ids)


def test_chat_to_bedrock_is_signed_with_the_sidecars_credentials(client, fakes):
    reply = client.chat.completions.create(
        model="claude-3-haiku", messages=[{"role": "user", "content": "Name three primes"}], max_tokens=64
    )
    assert reply.choices[0].message.content == "echo: Name three primes"
    assert reply.choices[0].finish_reason == "stop"
    (rec,) = fakes.requests("bedrock")
    assert fakes.requests("openai") == []
    sent = assert_bedrock_upstream(rec, HAIKU, "invoke")
    assert sent["max_tokens"] == 64 and "model" not in sent
    body = json.loads(rec.response_body)
    assert_usage(reply.usage, prompt=body["usage"]["input_tokens"], completion=body["usage"]["output_tokens"])


def test_chat_to_openai_uses_the_gateways_upstream_key(client, fakes, stack):
    reply = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hello"}])
    assert reply.choices[0].message.content == "echo: Hello"
    (rec,) = fakes.requests("openai")
    assert_openai_upstream(rec, client_key=stack.api_key)


def test_stream_from_bedrock(client, fakes):
    stream = client.chat.completions.create(
        model=CLAUDE, messages=[{"role": "user", "content": "count to five please"}], stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert len(chunks) >= 4, "the answer arrives in several deltas"
    assert len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: count to five please"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert_usage(chunks[-1].usage)
    (rec,) = fakes.wait_for("bedrock")
    sent = assert_bedrock_upstream(rec, HAIKU, "invoke-with-response-stream")
    assert "stream" not in sent


def test_stream_from_openai(client, fakes):
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "stream it"}], stream=True
    )
    content = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert content == "echo: stream it"
    (rec,) = fakes.requests("openai")
    assert json.loads(rec.body)["stream"] is True


def test_files_upload_list_content_and_file_ids(client, fakes):
    notes = b"# Plan\n\n- build the image\n- run the stack\n"
    f = client.files.create(file=("notes.md", notes), purpose="user_data")
    assert f.id.startswith("file-") and f.bytes == len(notes) and f.filename == "notes.md"
    assert f.id in [x.id for x in client.files.list()]
    assert client.files.content(f.id).read() == notes
    # The file's text reaches the model: read from the sidecar's volume by the filter.
    reply = client.chat.completions.create(
        model="claude-3-haiku", messages=[{"role": "user", "content": "Summarize the file."}],
        extra_body={"file_ids": [f.id]},
    )
    assert reply.choices[0].message.content.startswith("echo: The user attached these files:")
    (rec,) = fakes.requests("bedrock")
    sent = assert_bedrock_upstream(rec, HAIKU, "invoke")
    assert "file_ids" not in sent
    user = [m for m in sent["messages"] if m["role"] == "user"][-1]
    text = user["content"] if isinstance(user["content"], str) else "".join(b.get("text", "") for b in user["content"])
    assert f"--- file: notes.md (text/markdown, {len(notes)} bytes) ---\n{notes.decode()}" in text
    assert text.endswith("Summarize the file.")
    assert client.files.delete(f.id).deleted is True
    assert f.id not in [x.id for x in client.files.list()]


def _counters(stats: str) -> dict:
    out = {}
    for line in stats.splitlines():
        name, _, value = line.partition(": ")
        if value.strip().isdigit():
            out[name] = int(value)
    return out


def test_admin_metrics_count_the_requests(stack, client, fakes):
    """The image's Envoy config carries the stats tags: Prometheus sees one labelled series
    per endpoint/provider/status class/model."""
    name = "wasmcustom.unigate.requests_total.endpoint.chat.provider.bedrock.status_class.2xx.model." + CLAUDE
    before = _counters(stack.envoy_admin("/stats?filter=unigate"))
    client.chat.completions.create(model=CLAUDE, messages=[{"role": "user", "content": "metrics"}])
    deadline = time.monotonic() + 5  # counted when Envoy logs the finished stream
    while True:
        after = _counters(stack.envoy_admin("/stats?filter=unigate"))
        if after.get(name, 0) > before.get(name, 0) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert after.get(name, 0) == before.get(name, 0) + 1, sorted(after)
    assert after["wasmcustom.unigate.errors.signing"] == 0
    assert after["wasmcustom.unigate.errors.credentials_refresh"] == 0
    prometheus = stack.envoy_admin("/stats/prometheus")
    # Envoy orders a series' labels as its tag extractors matched: compare them as a set.
    want = {"endpoint": "chat", "provider": "bedrock", "status_class": "2xx", "model": CLAUDE}
    series = [dict(re.findall(r'(\w+)="([^"]*)"', line)) for line in prometheus.splitlines()
              if line.startswith("unigate_requests_total{")]
    assert want in series, series


def test_access_log_line_on_envoys_stdout(stack, client, fakes):
    marker = f"access-log-{time.time_ns()}"
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": marker}])
    # Envoy flushes stdout access logs every few seconds: wait, bounded.
    deadline = time.monotonic() + 30
    lines = []
    while time.monotonic() < deadline:
        lines = [json.loads(l[l.index("{"):]) for l in stack.logs("envoy").splitlines() if '"upstream_cluster"' in l]
        if any(l.get("provider") == "openai" and l.get("model") == "gpt-4o" and str(l.get("status")) == "200" for l in lines):
            break
        time.sleep(1)
    hits = [l for l in lines if l.get("provider") == "openai" and l.get("model") == "gpt-4o" and str(l.get("status")) == "200"]
    assert hits, lines[-5:]
    assert hits[-1]["upstream_cluster"] == "openai" and hits[-1]["key"].startswith("key-")
    assert stack.api_key not in stack.logs("envoy")
