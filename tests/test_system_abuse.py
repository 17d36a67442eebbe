"""Bounded under abuse (issue 17), end to end through `unigate serve` (Envoy + unigate.wasm +
sidecar) against the in-process fakes: what one valid key holder can make the gateway spend
or forge, and that each refusal comes in the error shape of the door it was sent to, before
anything reaches an upstream.

1. a chat body of millions of tiny JSON values: 400, and Envoy's memory grows by a bounded
   multiple of the body, once (not per request); a large legitimate body still goes through;
2. `file_ids` files that are hard to extract (40 KB of `[`, 4 MB of commas as CSV, 280 KB of
   `<title>`): a quick answer, never a 504, and the sidecar's memory stays bounded;
4. hundreds of made-up model names add a handful of stats, not stats per name;
5. duplicate top-level keys: 400 naming the key;
6. a client's `x-request-id` / `x-envoy-original-path` forge neither the access log nor
   what upstreams receive;
7. model ids with dot segments: 400 on every door, never a 502 blaming the gateway's AWS
   credentials, nothing sent upstream;
8. `Content-Encoding` on a request body: refused (415; 400 ValidationException on the
   Bedrock runtime door, whose API has no 415), nothing sent upstream;
9. what a key can see: no upstream addresses in /v1/providers, no model it may not use
   through /v1/models/{id}; an HTTP/2 request ending with trailers is answered normally; the
   access log's path is the client's for a Bedrock-routed chat.

Item 3 (extraction CPU that outlives its request) is covered by the sidecar's own tests
(deadline and cancellation); here the HTML file of item 2 shows the client is answered fast.
"""

from __future__ import annotations

import gzip
import json
import random
import socket
import struct
import threading
import time
import uuid
from pathlib import Path
from typing import Optional

import pytest

from files_stack import KEY_A, FilesStack
from system_harness import CLIENT_KEY, UPSTREAM_OPENAI_KEY, HarnessError, http, http_get, provider_env

RESTRICTED_KEY = "ug-abuse-claude-only-6d2e"
HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
NOVA = "amazon.nova-pro-v1:0"
MSG = [{"role": "user", "content": "hi"}]
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def abuse_stack(start_stack, fakes, tmp_path_factory):
    """A stack with two named keys: one for every model, one for Claude models only."""
    keys = tmp_path_factory.mktemp("abuse-keys") / "keys.json"
    keys.write_text(json.dumps([
        {"key": CLIENT_KEY, "name": "abuse-main"},
        {"key": RESTRICTED_KEY, "name": "claude-only", "models": ["claude-*"]},
    ]))
    return start_stack("abuse", provider_env(fakes, API_KEY=None, API_KEYS_FILE=str(keys)))


def post(stack, path: str, body: bytes, key: str = CLIENT_KEY, headers: Optional[dict] = None, timeout: float = 30):
    h = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    h.update(headers or {})
    return http("POST", stack.url + path, h, body, timeout=timeout)


def chat_body(model: str, **extra) -> bytes:
    return json.dumps({"model": model, "messages": MSG, **extra}).encode()


def messages_body(model: str) -> bytes:
    return json.dumps({"model": model, "max_tokens": 16, "messages": MSG}).encode()


# ---------------------------------------------------------------- error shapes per door


def openai_error(status: int, body: bytes, want_status: int, code: Optional[str] = None, param=...) -> dict:
    """OpenAI's envelope: exactly {"error": {message, type, param, code}}."""
    assert status == want_status, (status, body[:300])
    v = json.loads(body)
    assert set(v) == {"error"}, v
    e = v["error"]
    assert {"message", "type", "param", "code"} <= set(e), e
    assert isinstance(e["message"], str) and e["message"], e
    assert e["type"] == "invalid_request_error", e
    if code is not None:
        assert e["code"] == code, e
    if param is not ...:
        assert e["param"] == param, e
    return e


def anthropic_error(status: int, body: bytes, want_status: int, code: Optional[str] = None, type_: str = "invalid_request_error") -> dict:
    """Anthropic's envelope: {"type": "error", "error": {"type", "message"}}."""
    assert status == want_status, (status, body[:300])
    v = json.loads(body)
    assert v.get("type") == "error" and isinstance(v.get("error"), dict), v
    e = v["error"]
    assert e["type"] == type_ and isinstance(e["message"], str) and e["message"], e
    if code is not None:
        assert e.get("code") == code, e
    return e


def aws_error(status: int, headers: dict, body: bytes, want_status: int, name: str) -> str:
    """AWS's JSON protocol: the error name in x-amzn-errortype, {"message": …} as the body."""
    assert status == want_status, (status, headers, body[:300])
    assert headers.get("x-amzn-errortype") == name, headers
    v = json.loads(body)
    assert set(v) == {"message"} and v["message"], v
    return v["message"]


# ---------------------------------------------------------------- process memory


def proc_status_kib(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0])
    return out


def envoy_pid(stack) -> int:
    pid = stack.envoy_pid
    assert pid and Path(f"/proc/{pid}/comm").read_text().strip() == "envoy", pid
    return pid


# ---------------------------------------------------------------- 1. Envoy memory


def tiny_values_body(target_bytes: int) -> bytes:
    """A chat request padded with `"x": [0,0,0,…]` up to about target_bytes."""
    head = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"x":[0'
    n = (target_bytes - len(head) - 2) // 2
    return head + b",0" * n + b"]}"


@pytest.fixture(scope="module")
def mem_stack(start_stack, fakes):
    """A stack of its own, so that no other test's large bodies have grown its memory first."""
    return start_stack("abuse-memory", provider_env(fakes))


def test_a_body_of_millions_of_tiny_values_is_refused_with_bounded_envoy_memory(mem_stack, fakes):
    pid = envoy_pid(mem_stack)
    # Both workers' VMs have served a request before the baseline.
    for _ in range(6):
        status, _, body = post(mem_stack, "/v1/chat/completions", chat_body("gpt-4o"))
        assert status == 200, body[:300]
    fakes.openai.clear()
    abusive = tiny_values_body(20_000_000)
    size = len(abusive)
    assert 19_000_000 < size < 32 * MIB, "under MAX_REQUEST_BYTES: it is the JSON, not the size, that is refused"
    base = proc_status_kib(pid)

    def send_one(results: list):
        results.append(post(mem_stack, "/v1/chat/completions", abusive, timeout=120))

    def check(results):
        for status, _, body in results:
            e = openai_error(status, body, 400, code="body_too_complex", param=None)
            assert "too many JSON values" in e["message"], e

    growth = []
    # Twice one after the other, then pairs at once (both workers at the same time): 10
    # bodies, 200 MB sent in all.
    for parallel in (1, 1, 2, 2, 2, 2):
        results: list = []
        threads = [threading.Thread(target=send_one, args=(results,)) for _ in range(parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
        assert len(results) == parallel, "a request did not finish"
        check(results)
        now = proc_status_kib(pid)
        growth.append((now["VmRSS"] - base["VmRSS"], now["VmHWM"] - base["VmHWM"]))
    assert fakes.upstream_requests() == [], "a refused body reached an upstream"
    report = (f"body {size / MIB:.1f} MiB; Envoy RSS/peak growth (MiB) after 1, 2, 4, 6, 8, 10 requests: "
              f"{[(round(r / 1024), round(h / 1024)) for r, h in growth]}")
    print(report)
    # Target (issue 17): a body costs at most ~3x its size. Each of Envoy's workers (the stack
    # runs ENVOY_CONCURRENCY=2) has its own VM, whose memory keeps its high-water mark: one
    # request may grow one VM, two at once (or in turn) both; more requests must not add
    # more (ten bodies kept would be 10x).
    workers = int(mem_stack.env["ENVOY_CONCURRENCY"])
    assert growth[0][1] * 1024 <= 3 * size, report
    for _rss, hwm in growth:
        assert hwm * 1024 <= workers * 3 * size, report


def prose(n: int) -> str:
    """Plain prose with the escapes real text carries (newlines, quotes), about n bytes."""
    unit = 'Lorem ipsum dolor sit amet, "consectetur" adipiscing elit.\n'
    return unit * (n // len(unit) + 1)


def large_prompt(door: str, n: int) -> tuple:
    """A request whose instructions are n bytes of prose and whose question is short (the
    fakes echo the question: the answer stays small, so the request's cost is what shows)."""
    t = prose(n)
    if door == "chat":
        return "/v1/chat/completions", {"model": NOVA, "messages": [
            {"role": "system", "content": t}, {"role": "user", "content": "hi"}]}
    if door == "messages":
        return "/v1/messages", {"model": HAIKU, "max_tokens": 16, "system": t,
                                "messages": [{"role": "user", "content": "hi"}]}
    return "/v1/responses", {"model": HAIKU, "instructions": t, "input": "hi"}


def envoy_growth_for(stack, path: str, body: bytes, timeout: float = 120):
    """(status, answer, VmHWM growth in bytes) of one request, after both workers' VMs have
    served a small request."""
    pid = envoy_pid(stack)
    for _ in range(6):
        status, _, answer = post(stack, "/v1/chat/completions", chat_body("gpt-4o"))
        assert status == 200, answer[:300]
    base = proc_status_kib(pid)
    status, _, answer = post(stack, path, body, timeout=timeout)
    now = proc_status_kib(pid)
    return status, answer, (now["VmHWM"] - base["VmHWM"]) * 1024


@pytest.mark.parametrize("door", ["chat", "messages", "responses"])
def test_a_20_mb_prompt_costs_envoy_at_most_three_times_its_size(start_stack, fakes, door):
    """Issue 17's target, for real prompts: Envoy's buffer and the filter's copy, which then
    holds the body sent upstream; the prompt itself stays in the body (2.4x measured). chat
    goes to Converse (translated), messages to Claude (relayed), responses to Claude
    (translated); the fake checks the prompt arrives whole."""
    stack = start_stack(f"abuse-memory-{door}", provider_env(fakes))
    path, doc = large_prompt(door, 20_000_000)
    body = json.dumps(doc).encode()
    status, answer, grew = envoy_growth_for(stack, path, body)
    assert status == 200, answer[:300]
    print(f"{door}: body {len(body) / MIB:.1f} MiB, Envoy peak grew {grew / MIB:.1f} MiB = {grew / len(body):.2f}x")
    sent = fakes.bedrock.last().body
    assert len(sent) >= 20_000_000, "the prompt did not reach the upstream whole"
    assert grew <= 3 * len(body), f"{door}: {grew / len(body):.2f}x"


def test_a_body_of_tiny_objects_is_refused_within_its_memory_budget(start_stack, fakes):
    """Many tiny objects (a few hundred bytes of tree each) under the value limit: refused once
    the tree would pass the body's size (2.2x measured)."""
    stack = start_stack("abuse-memory-objects", provider_env(fakes))
    part = {"type": "text", "text": "abcdefghijklm"}
    doc = {"model": HAIKU, "max_tokens": 16, "messages": [{"role": "user", "content": [part] * 500_000}]}
    body = json.dumps(doc, separators=(",", ":")).encode()
    status, answer, grew = envoy_growth_for(stack, "/v1/messages", body)
    print(f"tiny objects: body {len(body) / MIB:.1f} MiB, Envoy peak grew {grew / MIB:.1f} MiB = {grew / len(body):.2f}x")
    e = anthropic_error(status, answer, 400)
    assert "too many JSON values" in e["message"], e
    assert grew <= 3 * len(body), f"{grew / len(body):.2f}x"


def test_a_body_of_many_blocks_just_within_the_limits_costs_about_three_times(start_stack, fakes):
    """The costliest body the limits accept: many short text blocks, each an object of a few
    hundred bytes of tree, just under the tree's limit (the body's size); their texts stay in
    the body. 26 000 blocks of 650 bytes (16.8 MB): 3.25x measured."""
    stack = start_stack("abuse-memory-blocks", provider_env(fakes))
    part = {"type": "text", "text": "x" * 650}
    doc = {"model": HAIKU, "max_tokens": 16, "messages": [
        {"role": "user", "content": [part] * 26_000},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "hi"}]}
    body = json.dumps(doc, separators=(",", ":")).encode()
    status, answer, grew = envoy_growth_for(stack, "/v1/messages", body)
    print(f"many blocks: body {len(body) / MIB:.1f} MiB, Envoy peak grew {grew / MIB:.1f} MiB = {grew / len(body):.2f}x")
    assert status == 200, answer[:300]
    sent = fakes.bedrock.last().json()
    assert sent["messages"][0]["content"] == [part] * 26_000, "the blocks did not arrive as sent"
    assert grew <= 3.5 * len(body), f"{grew / len(body):.2f}x"


def test_a_large_legitimate_body_still_goes_through(mem_stack, fakes):
    text = "lorem ipsum dolor sit amet " * 400_000  # ~10.8 MB of text in one message
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]}).encode()
    assert 10_000_000 < len(body) < 32 * MIB
    status, _, answer = post(mem_stack, "/v1/chat/completions", body, timeout=120)
    assert status == 200, answer[:300]
    v = json.loads(answer)
    assert v["object"] == "chat.completion" and v["choices"][0]["message"]["content"] == "echo: " + text
    rec = fakes.openai.last()
    assert rec.json()["messages"][-1]["content"] == text
    assert rec.headers["authorization"] == f"Bearer {UPSTREAM_OPENAI_KEY}"


def test_an_embeddings_request_of_300_000_token_ids_goes_through(abuse_stack, fakes):
    """The limit on JSON values must not refuse what clients really send: tiktoken-based
    clients (LangChain's OpenAIEmbeddings) embed in token ids, ~6 bytes per value, up to
    OpenAI's 300 000 tokens per request (here 300 inputs of 1 000 ids, ~2 MB)."""
    rnd = random.Random(17)
    inputs = [[rnd.randrange(1_000, 100_000) for _ in range(1_000)] for _ in range(300)]
    body = json.dumps({"model": "text-embedding-3-small", "input": inputs}).encode()
    assert len(body) < 12 * 300_000, "denser than one value per 12 bytes"
    status, _, answer = post(abuse_stack, "/v1/embeddings", body, timeout=60)
    assert status == 200, answer[:300]
    assert len(json.loads(answer)["data"]) == 300
    assert fakes.openai.last().json()["input"] == inputs


# ---------------------------------------------------------------- 2. file_ids that are hard to extract


@pytest.fixture(scope="module")
def files_stack():
    s = FilesStack()
    try:
        s.start()
    except HarnessError as e:
        s.close()
        pytest.fail(str(e), pytrace=False)
    yield s
    s.close()


HARD_FILES = [
    # (name, content, expected status, text the answer must carry)
    pytest.param("open40k.json", b"[" * 40_000, 422, "128 levels", id="json-40k-brackets"),
    pytest.param("commas.csv", (b"," * 999 + b"\n") * 4_000, 200, None, id="csv-4mb-commas"),
    pytest.param("titles.html", b"<title>" * 40_000, 200, None, id="html-280k-titles"),
]


@pytest.mark.parametrize("name,content,want,needle", HARD_FILES)
def test_hard_files_are_answered_fast_with_bounded_sidecar_memory(files_stack, name, content, want, needle):
    client = files_stack.client(KEY_A)
    fid = client.files.create(file=(name, content), purpose="user_data").id
    client.close()
    sidecar = files_stack.proc.pid  # `serve` runs the sidecar in its own process
    files_stack.openai.clear()
    before = proc_status_kib(sidecar)
    t = time.monotonic()
    status, _, body = post(files_stack, "/v1/chat/completions",
                           json.dumps({"model": "gpt-4o-mini", "messages": MSG, "file_ids": [fid]}).encode(),
                           key=KEY_A, timeout=60)
    took = time.monotonic() - t
    after = proc_status_kib(sidecar)
    grew_mib = (after["VmHWM"] - before["VmHWM"]) / 1024
    print(f"{name}: {status} in {took:.2f}s, sidecar peak +{grew_mib:.1f} MiB (RSS {after['VmRSS'] / 1024:.0f} MiB)")
    assert took < 5, f"{name} took {took:.1f}s (the extraction deadline is 9.5 s; issue 17 had 9.6 s then 504)"
    if want == 200:
        assert status == 200, body[:300]
        sent = files_stack.openai.last().json()["messages"][-1]["content"]
        sent = sent if isinstance(sent, str) else "".join(b.get("text", "") for b in sent)
        assert f"--- file: {name}" in sent
        # The file's text is capped (FILE_CONTEXT_MAX_BYTES, 200 000 bytes by default).
        assert len(sent.encode()) < 200_000 + 4_096, len(sent)
    else:
        e = openai_error(status, body, want, code="file_not_usable")
        assert name in e["message"] and needle in e["message"], e
        assert files_stack.openai.requests == []
    # The manifest gives the sidecar 128 MiB; one extraction must stay far below.
    assert grew_mib < 48, f"{name}: the sidecar's peak memory grew by {grew_mib:.0f} MiB"
    assert after["VmRSS"] < 128 * 1024, after


# ---------------------------------------------------------------- 4. made-up model names and stats


def test_hundreds_of_made_up_model_names_add_a_handful_of_stats(abuse_stack, fakes):
    # One request first, so that the series every chat request creates exist already.
    post(abuse_stack, "/v1/chat/completions", chat_body(f"gpt-made-up-{uuid.uuid4().hex[:8]}"))
    time.sleep(0.5)
    before = abuse_stack.admin_stats("wasmcustom.unigate")
    names = [f"gpt-made-up-{uuid.uuid4().hex[:12]}" for _ in range(300)]
    statuses = set()
    for name in names:
        status, _, _ = post(abuse_stack, "/v1/chat/completions", chat_body(name))
        statuses.add(status)
    time.sleep(0.5)  # counted when the access log runs, just after the answer
    after = abuse_stack.admin_stats("wasmcustom.unigate")
    new = sorted(set(after) - set(before))
    # Issue 17 counted 3 new stats per name (4,500 for 1,500 names).
    assert len(new) <= 6, (statuses, new[:20])
    every_stat = " ".join(abuse_stack.admin_stats(""))
    assert not [n for n in names if n in every_stat], "a client's model name became a stat"
    grown = {k: int(after[k]) - int(before.get(k, 0)) for k in after if after[k].isdigit()}
    assert grown.get("wasmcustom.unigate.requests_total.endpoint.chat.provider.openai.status_class.2xx.model.other") == 300, grown
    assert len(fakes.openai.requests) == len(names) + 1, statuses


# ---------------------------------------------------------------- 5. duplicate top-level keys


def test_duplicate_model_key_is_refused_on_chat(abuse_stack, fakes):
    body = b'{"model":"gpt-4o","model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
    status, _, answer = post(abuse_stack, "/v1/chat/completions", body)
    e = openai_error(status, answer, 400, code="duplicate_key", param="model")
    assert "`model`" in e["message"], e
    assert fakes.upstream_requests() == []


def test_duplicate_model_key_is_refused_on_messages(abuse_stack, fakes):
    """The restricted key may use claude-*; the first `model` (which an upstream keeping the
    first key would serve) is one it may not."""
    body = b'{"model":"gpt-4o","max_tokens":16,"model":"claude-3-haiku","messages":[{"role":"user","content":"hi"}]}'
    status, _, answer = post(abuse_stack, "/v1/messages", body, key=RESTRICTED_KEY)
    e = anthropic_error(status, answer, 400, code="duplicate_key")
    assert "`model`" in e["message"], e
    assert fakes.upstream_requests() == []


def test_duplicate_key_is_refused_on_responses(abuse_stack, fakes):
    status, _, answer = post(abuse_stack, "/v1/responses", b'{"model":"gpt-4o","input":"hi","input":"other"}')
    e = openai_error(status, answer, 400, code="duplicate_key", param="input")
    assert "`input`" in e["message"], e
    assert fakes.upstream_requests() == []


# ---------------------------------------------------------------- 6. forged request ids and paths


def access_log_entry(stack, client_request_id: str, wait_s: float = 15.0) -> dict:
    """The access-log line of one request (Envoy flushes stdout access logs every few seconds)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for line in stack.log().splitlines():
            if line.startswith("{") and client_request_id in line:
                entry = json.loads(line)
                if entry.get("client_request_id") == client_request_id:
                    return entry
        time.sleep(0.2)
    raise AssertionError(f"no access-log line with client_request_id {client_request_id} within {wait_s}s")


@pytest.mark.parametrize("model,server,model_id", [
    pytest.param("gpt-4o", "openai", "gpt-4o", id="openai"),
    pytest.param("claude-3-haiku", "bedrock", HAIKU, id="bedrock"),
])
def test_client_request_id_and_original_path_forge_nothing(abuse_stack, fakes, model, server, model_id):
    forged_id = f"forged-{uuid.uuid4().hex}"
    client_id = f"client-{uuid.uuid4().hex}"
    status, _, answer = post(abuse_stack, "/v1/chat/completions", chat_body(model), headers={
        "x-request-id": forged_id,
        "x-envoy-original-path": "/forged/path",
        "x-client-request-id": client_id,
    })
    assert status == 200, answer[:300]
    rec = getattr(fakes, server).last()
    assert rec.headers.get("x-request-id") not in (None, forged_id), rec.headers
    assert "x-envoy-original-path" not in rec.headers, rec.headers
    assert forged_id not in json.dumps(rec.header_list) and "/forged/path" not in json.dumps(rec.header_list)
    entry = access_log_entry(abuse_stack, client_id)
    # The client's own id is kept, where the docs say (client_request_id), and nowhere else.
    assert entry["request_id"] and entry["request_id"] != forged_id, entry
    assert entry["request_id"] == rec.headers["x-request-id"], (entry, rec.headers)
    assert forged_id not in json.dumps(entry), entry
    # The path is the client's, not the forged one nor the Bedrock path the filter rewrote it to.
    assert entry["path"] == "/v1/chat/completions", entry
    assert (entry["status"], entry["model"], entry["upstream_cluster"]) == (200, model_id, server), entry
    if server == "bedrock":
        assert rec.path.startswith("/model/") and rec.sigv4.ok, rec.path


# ---------------------------------------------------------------- 7. dot-segment model ids

DOT_IDS = ["..", ".", "a/../b", "anthropic.claude/../x", f"{HAIKU}/../../{NOVA}"]


@pytest.mark.parametrize("model", DOT_IDS)
def test_dot_segment_model_id_on_chat_is_400(abuse_stack, fakes, model):
    status, _, answer = post(abuse_stack, "/v1/chat/completions", chat_body(model))
    e = openai_error(status, answer, 400, code="invalid_model_id", param="model")
    assert "not a valid model id" in e["message"], e
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize("model", DOT_IDS)
def test_dot_segment_model_id_on_messages_is_400(abuse_stack, fakes, model):
    status, _, answer = post(abuse_stack, "/v1/messages", messages_body(model))
    e = anthropic_error(status, answer, 400, code="invalid_model_id")
    assert "not a valid model id" in e["message"], e
    assert fakes.upstream_requests() == []


@pytest.mark.parametrize("path,shown", [
    ("/model/../converse", ".."),
    ("/model/./converse", "."),
    ("/model/%2e%2e/converse", ".."),
    ("/model/%2E%2E/converse-stream", ".."),
    ("/model/a%2F..%2Fb/invoke", "a/../b"),
    ("/model/..%2F..%2Fmodel%2Famazon.nova-pro-v1%3A0/converse", "../../model/amazon.nova-pro-v1:0"),
])
def test_dot_segment_model_id_on_the_bedrock_door_is_validation_exception(abuse_stack, fakes, path, shown):
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()
    status, headers, answer = post(abuse_stack, path, body)
    message = aws_error(status, headers, answer, 400, "ValidationException")
    assert message == f"`{shown}` is not a valid model id.", message
    assert fakes.upstream_requests() == []


def test_percent_escapes_in_a_body_model_id_are_not_dot_segments(abuse_stack, fakes):
    """`%2e%2e` written in a JSON body is those six characters, not `..`: an unknown model (404)
    for the plain id, and for a Bedrock-routed id it is escaped into the upstream path (`%25`),
    so no dot segment reaches Bedrock and the signature holds (no 502)."""
    status, _, answer = post(abuse_stack, "/v1/chat/completions", chat_body("%2e%2e"))
    openai_error(status, answer, 404, code="model_not_found")
    assert fakes.upstream_requests() == []
    status, _, answer = post(abuse_stack, "/v1/chat/completions", chat_body("anthropic.claude/%2e%2e/x"))
    assert status == 200, answer[:300]
    rec = fakes.bedrock.last()
    assert rec.path == "/model/anthropic.claude%2F%252e%252e%2Fx/invoke", rec.path
    assert rec.sigv4.ok


# ---------------------------------------------------------------- 8. Content-Encoding

PLAIN_CHAT = chat_body("gpt-4o")
PLAIN_MESSAGES = messages_body("claude-3-haiku")
PLAIN_RESPONSES = json.dumps({"model": "gpt-4o", "input": "hi"}).encode()
PLAIN_CONVERSE = json.dumps({"messages": [{"role": "user", "content": [{"text": "hi"}]}]}).encode()


@pytest.mark.parametrize("compressed", [True, False], ids=["gzip-body", "plain-body"])
@pytest.mark.parametrize("door,path,plain", [
    ("openai", "/v1/chat/completions", PLAIN_CHAT),
    ("openai", "/v1/responses", PLAIN_RESPONSES),
    ("anthropic", "/v1/messages", PLAIN_MESSAGES),
    ("aws", f"/model/{NOVA}/converse", PLAIN_CONVERSE),
])
def test_content_encoding_is_refused(abuse_stack, fakes, door, path, plain, compressed):
    body = gzip.compress(plain) if compressed else plain
    status, headers, answer = post(abuse_stack, path, body, headers={"content-encoding": "gzip"})
    if door == "openai":
        e = openai_error(status, answer, 415, code="unsupported_content_encoding")
        message = e["message"]
    elif door == "anthropic":
        message = anthropic_error(status, answer, 415, code="unsupported_content_encoding")["message"]
    else:
        # Bedrock's API has no 415: its client errors are 400 ValidationException.
        message = aws_error(status, headers, answer, 400, "ValidationException")
    assert "Content-Encoding: gzip" in message, message
    assert fakes.upstream_requests() == []


def test_identity_content_encoding_is_not_compression(abuse_stack, fakes):
    status, _, answer = post(abuse_stack, "/v1/chat/completions", PLAIN_CHAT, headers={"content-encoding": "identity"})
    assert status == 200, answer[:300]
    assert fakes.openai.last().json()["messages"] == MSG


# ---------------------------------------------------------------- 9. what a key can see


def test_providers_show_no_upstream_addresses(abuse_stack, fakes):
    status, _, body = http_get(abuse_stack.url + "/v1/providers", {"authorization": f"Bearer {CLIENT_KEY}"})
    assert status == 200, body
    v = json.loads(body)
    assert {p["id"] for p in v["data"]} >= {"openai", "bedrock"}, v
    assert all(p["configured"] is True for p in v["data"] if p["id"] in ("openai", "bedrock")), v
    text = body.decode()
    for leak in (str(fakes.openai.port), str(fakes.bedrock.port), "127.0.0.1", "http://", "https://", "localhost"):
        assert leak not in text, (leak, v)
    for p in v["data"]:
        assert not {"url", "base_url", "endpoint", "host", "port"} & set(p), p


def test_model_retrieve_hides_models_the_key_may_not_use(abuse_stack, fakes):
    h = {"authorization": f"Bearer {RESTRICTED_KEY}"}
    status, _, body = http_get(abuse_stack.url + "/v1/models/claude-3-haiku", h)
    assert status == 200, body
    assert json.loads(body)["id"] == "claude-3-haiku"
    status, _, forbidden = http_get(abuse_stack.url + "/v1/models/gpt-4o", h)
    e = openai_error(status, forbidden, 404, code="model_not_found")
    # Indistinguishable from a model that does not exist (no oracle for what exists).
    status, _, unknown = http_get(abuse_stack.url + "/v1/models/gpt-no-such-model-1", h)
    u = openai_error(status, unknown, 404, code="model_not_found")
    assert e["message"].replace("gpt-4o", "X") == u["message"].replace("gpt-no-such-model-1", "X"), (e, u)
    # The key without restrictions sees it.
    status, _, body = http_get(abuse_stack.url + "/v1/models/gpt-4o", {"authorization": f"Bearer {CLIENT_KEY}"})
    assert status == 200 and json.loads(body)["id"] == "gpt-4o", body
    ids = [m["id"] for m in json.loads(http_get(abuse_stack.url + "/v1/models", h)[2])["data"]]
    assert "claude-3-haiku" in ids and "gpt-4o" not in ids
    assert fakes.upstream_requests() == []


# A minimal HTTP/2 (cleartext, prior knowledge) client: enough for one request whose body ends
# with trailers, which is what gRPC-style clients send. Request headers are HPACK literals
# without indexing or Huffman coding; of the answer only `:status` (an indexed static-table
# entry, as Envoy sends 200) and the DATA frames are read.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 3, 4, 6, 7, 8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
STATIC_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def h2_frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out, value = bytearray([first | limit]), value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def hpack_literal(name: str, value: str) -> bytes:
    n, v = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(n), 7) + n + hpack_int(len(v), 7) + v


def read_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        piece = sock.recv(n - len(buf))
        if not piece:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += piece
    return buf


def h2_post_with_trailers(port: int, path: str, headers: list, body: bytes, trailers: list, timeout: float = 20):
    """(status or None, response body) of one HTTP/2 POST whose body is followed by trailers."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        block = b"".join(hpack_literal(k, v) for k, v in
                         [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", f"127.0.0.1:{port}")] + headers)
        sock.sendall(H2_PREFACE + h2_frame(SETTINGS, 0, 0) + h2_frame(HEADERS, END_HEADERS, 1, block))
        for i in range(0, len(body), 16_384):
            sock.sendall(h2_frame(DATA, 0, 1, body[i:i + 16_384]))
        sock.sendall(h2_frame(HEADERS, END_HEADERS | END_STREAM, 1, b"".join(hpack_literal(k, v) for k, v in trailers)))
        status, data = None, b""
        for _ in range(10_000):
            length, kind, flags, stream = struct.unpack(">IBBI", b"\0" + read_exactly(sock, 9))
            payload = read_exactly(sock, length)
            stream &= 0x7FFFFFFF
            if kind == SETTINGS and not flags & ACK:
                sock.sendall(h2_frame(SETTINGS, ACK, 0))
            elif kind == PING and not flags & ACK:
                sock.sendall(h2_frame(PING, ACK, 0, payload))
            elif kind in (RST_STREAM, GOAWAY) and stream in (0, 1):
                raise ConnectionError(f"HTTP/2 frame {kind} from the gateway: {payload.hex()}")
            elif kind == HEADERS and stream == 1:
                pos = 0
                while pos < len(payload) and payload[pos] & 0xE0 == 0x20:  # dynamic table size update
                    pos += 1
                if status is None and pos < len(payload) and payload[pos] & 0x80:
                    status = STATIC_STATUS.get(payload[pos] & 0x7F)
                if flags & END_STREAM:
                    return status, data
            elif kind == DATA and stream == 1:
                data += payload
                if payload:
                    increment = struct.pack(">I", len(payload))
                    sock.sendall(h2_frame(WINDOW_UPDATE, 0, 0, increment) + h2_frame(WINDOW_UPDATE, 0, 1, increment))
                if flags & END_STREAM:
                    return status, data
        raise AssertionError("no end of the HTTP/2 answer within 10 000 frames")


def test_http2_chat_request_with_trailers_is_answered(abuse_stack, fakes):
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "over http/2"}]}).encode()
    status, answer = h2_post_with_trailers(
        abuse_stack.port, "/v1/chat/completions",
        [("authorization", f"Bearer {CLIENT_KEY}"), ("content-type", "application/json")],
        body, [("x-checksum", "abc123")],
    )
    assert status == 200, answer[:300]
    v = json.loads(answer)
    assert v["object"] == "chat.completion" and v["choices"][0]["message"]["content"] == "echo: over http/2", v
    rec = fakes.openai.last()
    assert rec.json()["messages"] == [{"role": "user", "content": "over http/2"}]
    assert "x-checksum" not in rec.headers


def test_http2_messages_request_with_trailers_is_answered(abuse_stack, fakes):
    status, answer = h2_post_with_trailers(
        abuse_stack.port, "/v1/messages",
        [("x-api-key", CLIENT_KEY), ("content-type", "application/json"), ("anthropic-version", "2023-06-01")],
        messages_body("claude-3-haiku"), [("x-checksum", "abc123")],
    )
    assert status == 200, answer[:300]
    v = json.loads(answer)
    assert v["type"] == "message" and v["content"][0]["text"] == "echo: hi", v
    assert fakes.bedrock.last().path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"
