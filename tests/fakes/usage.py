"""The token usage a fake upstream reported inside a stream it sent, read back from its record."""

from __future__ import annotations

import base64
import json
import time

from . import eventstream as es


def streamed_usage(rec, wait_s: float = 3.0) -> tuple:
    """(prompt, completion) as the fake reported them in the stream recorded by `rec`."""
    # The fake records a streamed body once it has written all of it, which can be a moment
    # after the gateway already delivered the end of the stream to the client.
    deadline = time.monotonic() + wait_s
    while not rec.response_body and time.monotonic() < deadline:
        time.sleep(0.01)
    if rec.server == "openai":
        for block in rec.response_body.decode().split("\n\n"):
            if block.startswith("data: {") and '"usage":{' in block:
                u = json.loads(block[6:])["usage"]
                return u["prompt_tokens"], u["completion_tokens"]
        raise AssertionError("no usage in the upstream stream")
    msgs, _ = es.decode_messages(rec.response_body)
    prompt = completion = None
    for m in msgs:
        p = json.loads(m["payload"])
        et = m["headers"].get(":event-type")
        if et == "chunk":
            ev = json.loads(base64.b64decode(p["bytes"]))
            if ev.get("type") == "message_start":
                prompt = ev["message"]["usage"]["input_tokens"]
            elif ev.get("type") == "message_delta":
                completion = ev["usage"]["output_tokens"]
            elif "outputText" in ev and "amazon-bedrock-invocationMetrics" in ev:
                prompt = ev["amazon-bedrock-invocationMetrics"]["inputTokenCount"]
                completion = ev["amazon-bedrock-invocationMetrics"]["outputTokenCount"]
        elif et == "metadata":
            prompt, completion = p["usage"]["inputTokens"], p["usage"]["outputTokens"]
    return prompt, completion
