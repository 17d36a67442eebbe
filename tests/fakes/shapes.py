"""Shapes of recorded client requests — keys, counts, sizes, header names — never their prose.

The real CLIs send their vendors' system prompts and tool descriptions; tests record and
compare *shapes* only, so nothing of that text ends up in assertions, logs or files:

    shape = request_shape(rec)          # any RecordedRequest
    write_shapes("claude-code", shapes) # JSON under $UNIGATE_CLIENT_SHAPES_DIR, if set

Header values are kept only for headers that carry protocol facts (versions, betas, content
types, user agents); everything else — credentials, session ids, metadata — is reduced to
its length.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SHOWN_HEADERS = {
    "accept", "content-type", "anthropic-version", "anthropic-beta", "user-agent", "x-app", "originator",
    "x-stainless-package-version", "x-stainless-lang", "x-stainless-timeout", "x-stainless-retry-count",
    "x-codex-beta-features", "accept-encoding", "content-encoding", "amz-sdk-request", "x-amz-user-agent",
    "anthropic-dangerous-direct-browser-access", "x-amzn-bedrock-accept", "x-amzn-bedrock-content-type",
}
SECRET_HEADERS = {"authorization", "x-api-key", "x-amz-security-token"}


def header_shape(headers: dict) -> dict:
    out = {}
    for k, v in headers.items():
        if k in SHOWN_HEADERS:
            out[k] = v
        elif k in SECRET_HEADERS:
            scheme = v.split(" ", 1)[0] if " " in v else ""
            out[k] = f"<{scheme + ' ' if scheme else ''}{len(v)} chars>"
        else:
            out[k] = f"<{len(v)} chars>"
    return out


def _size(obj: Any) -> int:
    """Bytes of obj as compact UTF-8 JSON (close to, not exactly, what the client sent)."""
    return len(json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode())


def _content_shape(content: Any) -> Any:
    """`"str:N"` for a string; else the list of block types (tool_result: with its content's shape)."""
    if isinstance(content, str):
        return f"str:{len(content)}"
    if not isinstance(content, list):
        return type(content).__name__
    out = []
    for b in content:
        if not isinstance(b, dict):
            out.append(type(b).__name__)
            continue
        t = b.get("type", "?")
        if t == "tool_result":
            t += f"({_content_shape(b.get('content'))})"
        if "cache_control" in b:
            t += "+cache"
        out.append(t)
    return out


def anthropic_body_shape(body: dict) -> dict:
    """Messages (or Bedrock InvokeModel Claude) body → keys, sizes, roles and block types."""
    tools = body.get("tools") or []
    system = body.get("system")
    return {
        "keys": list(body.keys()),
        "bytes": _size(body),
        "model": body.get("model"),
        "max_tokens": body.get("max_tokens"),
        "stream": body.get("stream"),
        "thinking": {k: v for k, v in (body.get("thinking") or {}).items()} or None,
        "context_management": [e.get("type") for e in (body.get("context_management") or {}).get("edits", [])] or None,
        "anthropic_version": body.get("anthropic_version"),
        "anthropic_beta": body.get("anthropic_beta"),
        "system": _content_shape(system) if system is not None else None,
        "system_bytes": _size(system) if system is not None else 0,
        "messages": [{"role": m.get("role"), "content": _content_shape(m.get("content"))} for m in body.get("messages", [])],
        "tools": len(tools),
        "tool_names": [t.get("name") for t in tools],
        "tool_types": sorted({t.get("type", "(none)") for t in tools}),
        "tools_defer_loading": sum(1 for t in tools if t.get("defer_loading")),
        "tools_bytes": _size(tools),
        "metadata_keys": sorted((body.get("metadata") or {}).keys()),
    }


def responses_body_shape(body: dict) -> dict:
    """Responses body → keys, sizes, input item kinds and tool names/types."""
    tools = body.get("tools") or []
    items = body.get("input") if isinstance(body.get("input"), list) else []

    def item(i: dict) -> str:
        t = i.get("type", "message")
        if t == "message":
            return f"message:{i.get('role')}:{len(i.get('content') or [])}"
        return t

    def tool(t: dict) -> str:
        kind = t.get("type")
        name = t.get("name")
        if kind == "namespace":
            return f"namespace:{name}({len(t.get('tools') or [])})"
        return f"{kind}:{name}" if name else str(kind)

    return {
        "keys": list(body.keys()),
        "bytes": _size(body),
        "model": body.get("model"),
        "stream": body.get("stream"),
        "store": body.get("store"),
        "include": body.get("include"),
        "reasoning": body.get("reasoning"),
        "text": body.get("text"),
        "tool_choice": body.get("tool_choice"),
        "parallel_tool_calls": body.get("parallel_tool_calls"),
        "input": [item(i) for i in items] if items else (f"str:{len(body['input'])}" if isinstance(body.get("input"), str) else None),
        "tools": [tool(t) for t in tools],
        "tools_bytes": _size(tools),
        "has_instructions": "instructions" in body,
        "has_max_output_tokens": "max_output_tokens" in body,
    }


def request_shape(rec) -> dict:
    """Shape of one RecordedRequest (the body parsed by its path)."""
    out: dict = {"method": rec.method, "path": rec.path, "status": rec.response_status, "bytes": len(rec.body),
                 "headers": header_shape(rec.headers)}
    if not rec.body:
        return out
    try:
        body = json.loads(rec.body)
    except ValueError:
        out["body"] = "<not JSON>"
        return out
    if not isinstance(body, dict):
        out["body"] = type(body).__name__
    elif rec.path.split("?", 1)[0].endswith("/responses"):
        out["body"] = responses_body_shape(body)
    elif "messages" in body:
        out["body"] = anthropic_body_shape(body)
    else:
        out["body"] = {"keys": list(body.keys()), "bytes": _size(body)}
    return out


def write_shapes(name: str, shapes: Any) -> None:
    """Writes shapes as JSON to $UNIGATE_CLIENT_SHAPES_DIR/<name>.json when that is set."""
    d = os.environ.get("UNIGATE_CLIENT_SHAPES_DIR")
    if not d:
        return
    Path(d).mkdir(parents=True, exist_ok=True)
    (Path(d) / f"{name}.json").write_text(json.dumps(shapes, indent=1, sort_keys=False) + "\n")
