"""Assertions shared by the wasm-tests cases."""

from __future__ import annotations

from typing import Any, Optional

from wasm_harness import CLIENT_KEYS, UPSTREAM_OPENAI_KEY, Response


def assert_error(resp: Response, status: int, type_: Optional[str] = None, code: Any = ..., param: Any = ..., message_contains: Optional[str] = None) -> dict:
    """An OpenAI-shaped error: {"error": {"message","type","param","code"}} with the status."""
    assert resp.status == status, f"expected {status}, got {resp!r}"
    assert resp.content_type.startswith("application/json"), resp
    body = resp.json()
    assert set(body) >= {"error"}, body
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"], err
    if type_ is not None:
        assert err["type"] == type_, err
    if code is not ...:
        assert err["code"] == code, err
    if param is not ...:
        assert err["param"] == param, err
    if message_contains is not None:
        assert message_contains in err["message"], err
    if "content-length" in resp.headers:
        assert int(resp.headers["content-length"]) == len(resp.body)
    return err


def assert_usage(usage: dict, prompt: Optional[int] = None, completion: Optional[int] = None) -> None:
    for k in ("prompt_tokens", "completion_tokens", "total_tokens"):
        assert isinstance(usage[k], int) and usage[k] >= 0, usage
    assert usage["prompt_tokens"] + usage["completion_tokens"] == usage["total_tokens"], usage
    if prompt is not None:
        assert usage["prompt_tokens"] == prompt, usage
    if completion is not None:
        assert usage["completion_tokens"] == completion, usage


def assert_chat_completion(resp: Response, model: str, text: str, finish: str = "stop") -> dict:
    """A complete OpenAI chat.completion with one assistant choice."""
    assert resp.status == 200, resp
    assert resp.content_type.startswith("application/json"), resp
    assert int(resp.headers["content-length"]) == len(resp.body), resp.headers
    body = resp.json()
    assert body["object"] == "chat.completion", body
    assert isinstance(body["id"], str) and body["id"].startswith("chatcmpl-"), body
    assert isinstance(body["created"], int) and body["created"] > 1_600_000_000, body
    assert body["model"] == model, body
    assert len(body["choices"]) == 1, body
    ch = body["choices"][0]
    assert ch["index"] == 0
    assert ch["message"]["role"] == "assistant"
    assert ch["message"]["content"] == text, ch
    assert ch["finish_reason"] == finish, ch
    assert_usage(body["usage"])
    return body


def assert_forwarded(rec, path: str, server: str) -> None:
    """What every rewritten upstream request must look like."""
    assert rec.server == server, rec.server
    assert rec.method == "POST"
    assert rec.path == path, f"{rec.path!r} != {path!r}"
    assert not rec.chunked, "upstream body must not be chunked"
    assert "transfer-encoding" not in rec.headers, rec.headers
    assert rec.content_length == len(rec.body), (rec.headers.get("content-length"), len(rec.body))
    assert rec.headers.get("content-type") == "application/json", rec.headers
    assert "x-unigate-cluster" not in rec.headers, "routing header leaked upstream"
    for name, value in rec.header_list:
        for k in CLIENT_KEYS:
            assert k not in value, f"client key leaked upstream in {name}"


def assert_openai_upstream(rec, path: str = "/v1/chat/completions") -> Any:
    assert_forwarded(rec, path, "openai")
    assert rec.headers.get("authorization") == f"Bearer {UPSTREAM_OPENAI_KEY}", rec.headers
    return rec.json()


def assert_bedrock_upstream(rec, path: str) -> Any:
    assert_forwarded(rec, path, "bedrock")
    assert rec.sigv4 is not None and rec.sigv4.ok, f"SigV4 rejected: {rec.sigv4}"
    assert "x-api-key" not in rec.headers
    signed = rec.sigv4.signed_headers
    assert "host" in signed and "x-amz-date" in signed, signed
    for h in signed:
        assert not h.startswith("x-forwarded") and h not in ("x-request-id", "user-agent", "content-length"), signed
    body = rec.json()
    return body


def text_of(content: Any) -> str:
    """Text of an OpenAI/Anthropic message content (string or text parts)."""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if p.get("type") == "text")


def parse_sse(raw: bytes) -> list:
    """SSE events as [(event name or None, data string)], in order."""
    events = []
    for block in raw.decode("utf-8").replace("\r\n", "\n").split("\n\n"):
        if not block.strip():
            continue
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip(" "))
            elif line.startswith(":"):
                continue
        events.append((name, "\n".join(data)))
    return events


def openai_stream(raw: bytes) -> tuple:
    """(chunks as dicts, whether the stream ended with exactly one [DONE] as last event)."""
    events = parse_sse(raw)
    datas = [d for _, d in events]
    done_ok = datas.count("[DONE]") == 1 and datas[-1] == "[DONE]"
    return [__import__("json").loads(d) for d in datas if d != "[DONE]"], done_ok


def assert_openai_stream(raw: bytes, model: str, text: str, finish: str = "stop", usage: Optional[tuple] = None) -> list:
    """A complete OpenAI chat.completion.chunk stream; `usage`=(prompt, completion) expects a
    final usage chunk, None expects none."""
    chunks, done_ok = openai_stream(raw)
    assert done_ok, raw[-300:]
    assert chunks, raw
    assert all("error" not in c for c in chunks), chunks
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-"), ids
    assert len({c["created"] for c in chunks}) == 1
    assert {c["model"] for c in chunks} == {model}
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"].get("role") == "assistant"
    got = "".join(c["choices"][0]["delta"].get("content") or "" for c in with_choices)
    assert got == text, got
    finishes = [c["choices"][0]["finish_reason"] for c in with_choices if c["choices"][0]["finish_reason"]]
    assert finishes == [finish], finishes
    usage_chunks = [c for c in chunks if not c["choices"]]
    if usage is None:
        assert usage_chunks == [] and all(c.get("usage") is None for c in chunks), chunks[-1]
    else:
        assert len(usage_chunks) == 1 and chunks[-1] is usage_chunks[0], chunks[-2:]
        assert_usage(usage_chunks[0]["usage"], prompt=usage[0], completion=usage[1])
    return chunks


def stream_error(raw: bytes) -> dict:
    """The in-band error object of an SSE stream that must end with it (then [DONE] if any)."""
    events = [d for _, d in parse_sse(raw)]
    if events and events[-1] == "[DONE]":
        assert events.count("[DONE]") == 1
        events = events[:-1]
    last = __import__("json").loads(events[-1])
    err = last.get("error") if "error" in last else None
    assert isinstance(err, dict), f"stream does not end with an error event: {raw[-400:]!r}"
    assert isinstance(err.get("message"), str) and err["message"] and "type" in err, err
    return err
