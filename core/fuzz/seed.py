#!/usr/bin/env python3
"""Builds the fuzz seed corpora from the golden fixtures and the stream fixtures."""
import glob
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
CORE = os.path.dirname(HERE)


def put(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


# request_plan's first byte picks the door (see fuzz_targets/request_plan.rs: DOORS).
DOOR_SELECTOR = {"chat": 0, "messages": 1, "count_tokens": 2, "responses": 3, "embeddings": 4}
for f in glob.glob(os.path.join(CORE, "tests/golden/request/*.json")) + glob.glob(
        os.path.join(CORE, "tests/golden/embeddings/*.json")):
    case = json.load(open(f))
    door = case.get("door") or ("embeddings" if "/embeddings/" in f else "chat")
    body = json.dumps(case["request"]).encode()
    put("request_plan", bytes([DOOR_SELECTOR[door]]) + body)
    put("json_tree", body)
    if door == "messages":
        for selector in (5, 6, 12, 13):  # the Bedrock runtime door, several path models
            put("request_plan", bytes([selector]) + body)
for f in glob.glob(os.path.join(CORE, "tests/golden/response/*.json")):
    ub = json.load(open(f))["upstream_body"]
    body = (ub if isinstance(ub, str) else json.dumps(ub)).encode()
    for selector in (0, 1, 3, 9, 17, 40, 200):
        put("response_decode", bytes([selector]) + body)
for f in glob.glob(os.path.join(CORE, "tests/fixtures/streams/*.bin")) + glob.glob(
        os.path.join(CORE, "tests/fixtures/streams/*.sse")):
    data = open(f, "rb").read()
    for selector in range(24):
        put("stream_decode", bytes([selector, 37]) + data)
for s in ["us.anthropic.claude-3-5-haiku-20241022-v1:0",
          "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.x",
          "amazon.titan-text-express-v1", "bedrock-agent/A1/B2"]:
    put("sigv4_path", s.encode())
