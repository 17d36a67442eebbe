"""The Files API through the whole stack (`unigate serve`: Envoy + filter + sidecar), driven by
the official `openai` SDK and by the `unigate` CLI, against the in-process fake upstreams.

Self-contained: the stack comes from files_stack.py, not from conftest fixtures.
"""

from __future__ import annotations

import json

import openai
import pytest

from files_stack import KEY_A, KEY_B, FilesStack, HarnessError, http

CSV = b"city,population\nParis,2102650\n\"Lyon, FR\",522250\n"
JSON_DOC = b'{"name":"unigate","tags":["gateway","files"],"limits":{"files":512}}'
HTML = b"<html><head><title>Release notes</title><style>p{}</style><script>track()</script></head><body><h1>Version 2</h1><p>Files &amp; context.</p></body></html>"
MARKDOWN = b"# Plan\n\n- upload\n- chat\n"

EXTRACTED = {
    "data.csv": ("text/csv", "| city | population |\n| --- | --- |\n| Paris | 2102650 |\n| Lyon, FR | 522250 |\n"),
    "doc.json": ("application/json", '{\n  "name": "unigate",\n  "tags": [\n    "gateway",\n    "files"\n  ],\n  "limits": {\n    "files": 512\n  }\n}'),
    "page.html": ("text/html", "Release notes\n\nVersion 2\n\nFiles & context."),
    "notes.md": ("text/markdown", "# Plan\n\n- upload\n- chat\n"),
}


@pytest.fixture(scope="module")
def stack():
    s = FilesStack()
    try:
        s.start()
    except HarnessError as e:
        s.close()
        pytest.fail(str(e), pytrace=False)
    yield s
    s.close()


@pytest.fixture
def client(stack):
    stack.openai.clear()
    stack.bedrock.clear()
    c = stack.client(KEY_A)
    yield c
    c.close()


def render(files: list) -> str:
    """The context block, laid out as core/src/files.rs `render` documents it."""
    out = "The user attached these files:\n\n"
    for name, size in files:
        ctype, text = EXTRACTED[name]
        out += f"--- file: {name} ({ctype}, {size} bytes) ---\n{text}"
        if not text.endswith("\n"):
            out += "\n"
        out += f"--- end of file: {name} ---\n\n"
    return out


def test_sdk_round_trip(client):
    f = client.files.create(file=("notes.md", MARKDOWN), purpose="user_data")
    assert f.id.startswith("file-") and len(f.id) >= 29
    assert (f.object, f.bytes, f.filename, f.purpose, f.status) == ("file", len(MARKDOWN), "notes.md", "user_data", "processed")
    assert f.id in [x.id for x in client.files.list()]
    assert f.id in [x.id for x in client.files.list(purpose="user_data")]
    assert f.id not in [x.id for x in client.files.list(purpose="batch")]
    got = client.files.retrieve(f.id)
    assert got.model_dump() == f.model_dump()
    assert client.files.content(f.id).read() == MARKDOWN
    d = client.files.delete(f.id)
    assert (d.id, d.object, d.deleted) == (f.id, "file", True)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)


def test_sdk_pagination(client):
    ids = [client.files.create(file=(f"p{i}.txt", b"x" * i), purpose="batch").id for i in range(1, 6)]
    page = client.files.list(purpose="batch", limit=2, order="asc")
    assert len(page.data) == 2 and page.has_more
    # The SDK's auto-pagination follows `after`.
    walked = [f.id for f in client.files.list(purpose="batch", limit=2, order="asc")]
    assert walked == ids
    for i in ids:
        client.files.delete(i)


def test_bad_purpose_and_missing_key(stack, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(file=("a.txt", b"a"), purpose="nonsense")
    assert "user_data" in str(e.value)
    status, _, body = http("GET", stack.url + "/v1/files")
    assert status == 401
    status, _, body = http("GET", stack.url + "/v1/files", {"authorization": "Bearer wrong"})
    assert status == 401 and json.loads(body)["error"]["code"]


def test_ownership_between_keys(stack, client):
    other = stack.client(KEY_B)
    f = client.files.create(file=("mine.csv", CSV), purpose="user_data")
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(f.id)
    with pytest.raises(openai.NotFoundError):
        other.files.delete(f.id)
    assert f.id not in [x.id for x in other.files.list()]
    with pytest.raises(openai.NotFoundError) as e:
        other.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_body={"file_ids": [f.id]}
        )
    assert f.id in str(e.value)
    assert stack.openai.requests == [], "nothing reached the upstream"
    # Still there for its owner.
    assert client.files.retrieve(f.id).id == f.id
    other.close()


def _user_text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


@pytest.mark.parametrize("model", ["gpt-4o-mini", "anthropic.claude-3-haiku-20240307-v1:0"])
def test_chat_with_file_ids(stack, client, model):
    uploads = [("data.csv", CSV), ("doc.json", JSON_DOC), ("page.html", HTML), ("notes.md", MARKDOWN)]
    ids = [client.files.create(file=(n, c), purpose="user_data").id for n, c in uploads]
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Summarize the files."}],
        extra_body={"file_ids": ids},
    )
    assert reply.choices[0].message.content.startswith("echo: The user attached these files:")
    fake = stack.openai if model.startswith("gpt") else stack.bedrock
    body = fake.last().json()
    assert "file_ids" not in body
    last_user = [m for m in body["messages"] if m["role"] == "user"][-1]
    expected = render([(n, len(c)) for n, c in uploads]) + "Summarize the files."
    assert _user_text(last_user["content"]) == expected
    # Scripts and styles never reach the model.
    assert "track()" not in json.dumps(body) and "p{}" not in json.dumps(body)


def test_binary_file_is_refused_as_context(stack, client):
    f = client.files.create(file=("pixel.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), purpose="vision")
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_body={"file_ids": [f.id]}
        )
    assert e.value.status_code == 415
    assert "pixel.png" in str(e.value)


def test_a_file_beyond_an_extraction_limit_is_refused_with_422(stack, client):
    # 20 KB of `[`: the quadratic extractor of issue 17 took 400 MB for it.
    f = client.files.create(file=("open.json", b"[" * 20_000), purpose="user_data")
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], extra_body={"file_ids": [f.id]}
        )
    assert e.value.status_code == 422
    assert "open.json" in str(e.value) and "128 levels" in str(e.value)


def test_large_upload_streams_through_envoy(stack, client):
    # Larger than the gateway's chat body cap (MAX_REQUEST_BYTES, 32 MiB): uploads are not buffered.
    data = bytes(range(256)) * (40 * 1024 * 4)
    f = client.files.create(file=("big.bin", data), purpose="assistants")
    assert f.bytes == len(data)
    assert client.files.content(f.id).read() == data
    client.files.delete(f.id)


def test_files_health(stack):
    status, _, body = http("GET", stack.url + "/v1/files/health", {"authorization": f"Bearer {KEY_A}"})
    assert status == 200, body
    v = json.loads(body)
    # Where files are stored is the operator's business (the sidecar's log), not a client's.
    assert v["status"] == "ok" and "storage" not in v and str(stack.files_dir) not in body.decode()


# ------------------------------------------------------------------------ the CLI


def test_cli_models(stack):
    r = stack.cli("models")
    assert r.returncode == 0, r.stderr
    assert "gpt-4o" in r.stdout.split() and "claude-3-haiku" in r.stdout.split()
    r = stack.cli("models", key="wrong")
    assert r.returncode == 1 and "401" in r.stderr and "API_KEY" in r.stderr


def test_cli_files(stack, tmp_path):
    src = tmp_path / "report.csv"
    src.write_bytes(CSV)
    r = stack.cli("files", "upload", str(src))
    assert r.returncode == 0, r.stderr
    fid = r.stdout.split()[0]
    assert fid.startswith("file-") and "report.csv" in r.stdout and "user_data" in r.stdout
    assert "[" not in r.stderr, "no progress bar without a terminal"
    r = stack.cli("files", "list")
    assert r.returncode == 0 and fid in r.stdout and "report.csv" in r.stdout
    r = stack.cli("files", "list", "--json")
    assert fid in [f["id"] for f in json.loads(r.stdout)["data"]]
    r = stack.cli("files", "get", fid)
    assert json.loads(r.stdout)["filename"] == "report.csv"
    out = tmp_path / "back.csv"
    r = stack.cli("files", "download", fid, "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == CSV
    r = stack.cli("files", "download", fid, "-o", str(out))
    assert r.returncode == 1 and "--force" in r.stderr
    dl = tmp_path / "downloads"
    dl.mkdir()
    r = stack.cli("files", "download", fid, cwd=dl)
    assert r.returncode == 0, r.stderr
    assert (dl / "report.csv").read_bytes() == CSV
    r = stack.cli("files", "download", fid, "-o", "-")
    assert r.stdout.encode() == CSV
    r = stack.cli("files", "get", fid, key=KEY_B)
    assert r.returncode == 1 and "404" in r.stderr
    r = stack.cli("files", "delete", fid)
    assert r.returncode == 0 and f"deleted {fid}" in r.stdout
    r = stack.cli("files", "get", fid)
    assert r.returncode == 1 and "No such File object" in r.stderr


def test_cli_chat_through_stdin(stack, tmp_path):
    stack.openai.clear()
    doc = tmp_path / "notes.md"
    doc.write_bytes(MARKDOWN)
    script = f"hello\n/file {doc}\nsummarize\n/reset\nagain\n/exit\nnever sent\n"
    r = stack.cli(
        "chat", "--model", "gpt-4o-mini", "--system", "Be brief.", "--temperature", "0.5", "--max-tokens", "50",
        stdin=script,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "echo: hello"
    assert "attached file-" in r.stderr
    reqs = [q.json() for q in stack.openai.requests]
    assert len(reqs) == 3
    first, second, third = reqs
    assert first["stream"] is True and first["temperature"] == 0.5 and first["max_tokens"] == 50
    assert first["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"}]
    # History is kept, and the file goes with the next message only.
    assert second["messages"][:3] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "echo: hello"},
    ]
    assert second["messages"][3]["content"] == render([("notes.md", len(MARKDOWN))]) + "summarize"
    # /reset forgot the conversation.
    assert third["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "again"}]
    assert "never sent" not in r.stdout
    assert lines[-1] == "echo: again"


def test_cli_chat_reports_errors_and_goes_on(stack):
    r = stack.cli("chat", "--model", "no-such-model-xyz", stdin="hi\n")
    assert r.returncode == 1
    assert "404" in r.stderr or "model" in r.stderr
    r = stack.cli("chat", "--no-stream", "--model", "gpt-4o-mini", stdin="one\n")
    assert r.returncode == 0 and r.stdout.strip() == "echo: one"
