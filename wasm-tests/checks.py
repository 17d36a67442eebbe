"""Assertions shared by the wasm-tests cases."""

from __future__ import annotations

from typing import Any, Optional

from harness import CLIENT_KEYS, UPSTREAM_OPENAI_KEY, Response


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
