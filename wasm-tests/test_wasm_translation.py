"""Chat requests through the real filter to the fake upstreams (cases 1-9): for each input
format and model, what the upstream received (server, path, headers, exact body, signature)
and what the client got back."""

from __future__ import annotations

import json

import pytest

from wasm_checks import assert_bedrock_upstream, assert_chat_completion, assert_openai_upstream, assert_usage, text_of
from wasm_harness import paced, split_bytes

HAIKU_ID = "anthropic.claude-3-haiku-20240307-v1:0"
HAIKU_PATH = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke"


def user(text):
    return {"role": "user", "content": text}


# ---------------------------------------------------------------- 1. OpenAI → OpenAI


def test_openai_body_to_openai_passes_through(client, fakes):
    body = {"model": "gpt-4o", "messages": [user("Hello there")], "temperature": 0.7, "seed": 7}
    resp = client.chat(body)
    rec = fakes.openai.last()
    up = assert_openai_upstream(rec)
    assert up == body  # same body, nothing added or dropped
    assert fakes.bedrock.requests == []
    # the client gets the upstream answer unchanged
    assert resp.status == 200 and resp.content_type == "application/json"
    assert resp.body == rec.response_body
    assert resp.json()["model"] == "gpt-4o-2024-08-06"
    assert resp.json()["choices"][0]["message"]["content"] == "echo: Hello there"


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"authorization": "Bearer test-key-2"}, id="second-key-bearer"),
        pytest.param({"authorization": None, "x-api-key": "test-key-1"}, id="x-api-key-header"),
    ],
)
def test_client_key_variants_are_accepted_and_never_forwarded(client, fakes, headers):
    resp = client.chat({"model": "gpt-4o", "messages": [user("k")]}, key=None, headers=headers)
    assert resp.status == 200, resp
    rec = fakes.openai.last()
    assert_openai_upstream(rec)
    assert "x-api-key" not in rec.headers


# ---------------------------------------------------------------- 2-5. OpenAI body → Bedrock

CLAUDE_CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}]},
]


def test_openai_body_to_claude_alias(client, fakes):
    body = {"model": "claude-3-haiku", "messages": CLAUDE_CONVERSATION, "max_tokens": 100, "temperature": 0.5}
    resp = client.chat(body)
    assert fakes.openai.requests == []
    rec = fakes.bedrock.last()
    up = assert_bedrock_upstream(rec, HAIKU_PATH)
    assert "/model/anthropic.claude-3-haiku-20240307-v1%253A0/invoke" in rec.sigv4.canonical_request
    assert up["anthropic_version"] == "bedrock-2023-05-31"
    assert up["max_tokens"] == 100
    assert up["temperature"] == 0.5
    assert text_of(up["system"] if isinstance(up["system"], list) else up["system"]) == "You are terse."
    assert [m["role"] for m in up["messages"]] == ["user", "assistant", "user"]
    assert [text_of(m["content"]) for m in up["messages"]] == ["What is 2+2?", "4", "And 3+3?"]
    assert "model" not in up and "stream" not in up
    # the client gets an OpenAI completion with the upstream's numbers
    out = assert_chat_completion(resp, model="claude-3-haiku", text="echo: And 3+3?")
    upstream_usage = json.loads(rec.response_body)["usage"]
    assert_usage(out["usage"], prompt=upstream_usage["input_tokens"], completion=upstream_usage["output_tokens"])


def test_claude_default_max_tokens_is_filled_in(client, fakes):
    resp = client.chat({"model": "claude-3-haiku", "messages": [user("no max")]})
    assert resp.status == 200, resp
    up = assert_bedrock_upstream(fakes.bedrock.last(), HAIKU_PATH)
    assert isinstance(up["max_tokens"], int) and up["max_tokens"] >= 1


@pytest.mark.parametrize(
    "model,path",
    [
        pytest.param(
            "us.anthropic.claude-sonnet-4-20250514-v1:0",
            "/model/us.anthropic.claude-sonnet-4-20250514-v1%3A0/invoke",
            id="cross-region-profile",
        ),
        pytest.param(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke",
            id="inference-profile-arn",
        ),
        pytest.param(
            "global.anthropic.claude-sonnet-4-5-20250929-v1:0",
            "/model/global.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
            id="global-profile",
        ),
    ],
)
def test_model_ids_are_percent_encoded_and_signed(client, fakes, model, path):
    resp = client.chat({"model": model, "messages": [user("encode me")], "max_tokens": 20})
    rec = fakes.bedrock.last()
    up = assert_bedrock_upstream(rec, path)
    canonical_path = rec.sigv4.canonical_request.split("\n")[1]
    assert canonical_path == path.replace("%", "%25"), canonical_path
    assert "model" not in up
    assert_chat_completion(resp, model=model, text="echo: encode me")


CONVERSE_CASES = [
    pytest.param(
        "amazon.nova-pro-v1:0",
        {"model": "amazon.nova-pro-v1:0", "messages": [{"role": "system", "content": "Answer in French."},
                                                        user("Bonjour"), {"role": "assistant", "content": "Salut"},
                                                        user("Ça va ?")],
         "max_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": ["END"]},
        {"system": [{"text": "Answer in French."}],
         "messages": [{"role": "user", "content": [{"text": "Bonjour"}]},
                      {"role": "assistant", "content": [{"text": "Salut"}]},
                      {"role": "user", "content": [{"text": "Ça va ?"}]}],
         "inferenceConfig": {"maxTokens": 50, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]}},
        "/model/amazon.nova-pro-v1%3A0/converse",
        "echo: Ça va ?",
        id="nova-pro-full",
    ),
    pytest.param(
        "meta.llama3-1-70b-instruct-v1:0",
        {"model": "meta.llama3-1-70b-instruct-v1:0", "messages": [user("Hi llama")], "stop": "STOP"},
        {"messages": [{"role": "user", "content": [{"text": "Hi llama"}]}], "inferenceConfig": {"stopSequences": ["STOP"]}},
        "/model/meta.llama3-1-70b-instruct-v1%3A0/converse",
        "echo: Hi llama",
        id="llama-minimal",
    ),
    pytest.param(
        "nova-micro",
        {"model": "nova-micro", "messages": [user("alias")], "max_completion_tokens": 9},
        {"messages": [{"role": "user", "content": [{"text": "alias"}]}], "inferenceConfig": {"maxTokens": 9}},
        "/model/amazon.nova-micro-v1%3A0/converse",
        "echo: alias",
        id="nova-alias-max-completion-tokens",
    ),
]


@pytest.mark.parametrize("model,body,expected_upstream,path,text", CONVERSE_CASES)
def test_openai_body_to_converse(client, fakes, model, body, expected_upstream, path, text):
    resp = client.chat(body)
    rec = fakes.bedrock.last()
    up = assert_bedrock_upstream(rec, path)
    assert up == expected_upstream
    out = assert_chat_completion(resp, model=model, text=text)
    u = json.loads(rec.response_body)["usage"]
    assert_usage(out["usage"], prompt=u["inputTokens"], completion=u["outputTokens"])


TITAN_CASES = [
    pytest.param(
        {"model": "amazon.titan-text-express-v1",
         "messages": [{"role": "system", "content": "Be brief."}, user("Hi"), {"role": "assistant", "content": "Hello!"},
                      user("How are you?")],
         "max_tokens": 64, "temperature": 0.3, "top_p": 0.8},
        {"inputText": "Be brief.\n\nUser: Hi\nBot: Hello!\nUser: How are you?\nBot:",
         "textGenerationConfig": {"maxTokenCount": 64, "temperature": 0.3, "topP": 0.8}},
        "echo: How are you?",
        id="conversation-with-config",
    ),
    pytest.param(
        {"model": "amazon.titan-text-express-v1", "messages": [user("Just this")]},
        {"inputText": "User: Just this\nBot:"},
        "echo: Just this",
        id="single-turn",
    ),
]


@pytest.mark.parametrize("body,expected_upstream,text", TITAN_CASES)
def test_openai_body_to_titan(client, fakes, body, expected_upstream, text):
    resp = client.chat(body)
    rec = fakes.bedrock.last()
    up = assert_bedrock_upstream(rec, "/model/amazon.titan-text-express-v1/invoke")
    assert up == expected_upstream
    out = assert_chat_completion(resp, model="amazon.titan-text-express-v1", text=text)
    t = json.loads(rec.response_body)
    assert_usage(out["usage"], prompt=t["inputTextTokenCount"], completion=t["results"][0]["tokenCount"])


# ---------------------------------------------------------------- 6-7. Bedrock bodies

CLAUDE_BODY = {
    "model": HAIKU_ID,
    "anthropic_version": "bedrock-2023-05-31",
    "max_tokens": 200,
    "system": "Sys prompt",
    "messages": [{"role": "user", "content": "Hello Claude"}],
    "temperature": 0.1,
}


def test_claude_body_passthrough_with_claude_target(client, fakes):
    resp = client.chat(CLAUDE_BODY, path="/v1/chat/completions?target_format=bedrock_claude")
    rec = fakes.bedrock.last()
    up = assert_bedrock_upstream(rec, HAIKU_PATH)
    assert up == {k: v for k, v in CLAUDE_BODY.items() if k != "model"}
    assert resp.status == 200 and resp.content_type == "application/json"
    assert resp.body == rec.response_body  # Anthropic answer unchanged


def test_claude_body_default_target_is_openai(client, fakes):
    resp = client.chat(CLAUDE_BODY)
    rec = fakes.bedrock.last()
    up = assert_bedrock_upstream(rec, HAIKU_PATH)
    assert up == {k: v for k, v in CLAUDE_BODY.items() if k != "model"}
    out = assert_chat_completion(resp, model=HAIKU_ID, text="echo: Hello Claude")
    u = json.loads(rec.response_body)["usage"]
    assert_usage(out["usage"], prompt=u["input_tokens"], completion=u["output_tokens"])


def test_claude_body_titan_target_by_header(client, fakes):
    resp = client.chat(CLAUDE_BODY, headers={"x-target-format": "bedrock_titan"})
    rec = fakes.bedrock.last()
    assert_bedrock_upstream(rec, HAIKU_PATH)
    assert "x-target-format" not in rec.headers
    assert resp.status == 200 and resp.content_type == "application/json"
    u = json.loads(rec.response_body)["usage"]
    assert resp.json() == {
        "inputTextTokenCount": u["input_tokens"],
        "results": [{"tokenCount": u["output_tokens"], "outputText": "echo: Hello Claude", "completionReason": "FINISH"}],
    }


def test_claude_body_stream_flag_is_not_sent_in_body(client, fakes):
    body = dict(CLAUDE_BODY, stream=False)
    resp = client.chat(body, path="/v1/chat/completions?target_format=bedrock_claude")
    assert resp.status == 200, resp
    up = assert_bedrock_upstream(fakes.bedrock.last(), HAIKU_PATH)
    assert "stream" not in up and "model" not in up


TITAN_BODY = {
    "model": "amazon.titan-text-express-v1",
    "inputText": "User: Tell me a joke\nBot:",
    "textGenerationConfig": {"maxTokenCount": 100, "temperature": 0.5},
}


def test_titan_body_passthrough_with_titan_target(client, fakes):
    resp = client.chat(TITAN_BODY, path="/v1/chat/completions?target_format=bedrock_titan")
    rec = fakes.bedrock.last()
    up = assert_bedrock_upstream(rec, "/model/amazon.titan-text-express-v1/invoke")
    assert up == {k: v for k, v in TITAN_BODY.items() if k != "model"}
    assert resp.status == 200 and resp.body == rec.response_body


def test_titan_body_default_target_is_openai(client, fakes):
    resp = client.chat(TITAN_BODY)
    assert_bedrock_upstream(fakes.bedrock.last(), "/model/amazon.titan-text-express-v1/invoke")
    assert_chat_completion(resp, model="amazon.titan-text-express-v1", text="echo: Tell me a joke")


# ---------------------------------------------------------------- 8. Claude body → OpenAI model


def test_claude_body_to_openai_model(client, fakes):
    body = {
        "model": "gpt-4o",
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 77,
        "system": "Be nice.",
        "messages": [{"role": "user", "content": "First"}, {"role": "assistant", "content": "Ok"},
                     {"role": "user", "content": [{"type": "text", "text": "Second"}]}],
    }
    resp = client.chat(body, path="/v1/chat/completions?target_format=bedrock_claude")
    assert fakes.bedrock.requests == []
    rec = fakes.openai.last()
    up = assert_openai_upstream(rec)
    assert up["model"] == "gpt-4o"
    assert "anthropic_version" not in up
    assert [(m["role"], text_of(m["content"])) for m in up["messages"]] == [
        ("system", "Be nice."), ("user", "First"), ("assistant", "Ok"), ("user", "Second")]
    assert up.get("max_completion_tokens", up.get("max_tokens")) == 77
    assert resp.status == 200 and resp.content_type == "application/json"
    out = resp.json()
    ou = json.loads(rec.response_body)["usage"]
    assert out["type"] == "message" and out["role"] == "assistant"
    assert out["model"] == "gpt-4o"
    assert out["content"] == [{"type": "text", "text": "echo: Second"}]
    assert out["stop_reason"] == "end_turn"
    assert out["usage"]["input_tokens"] == ou["prompt_tokens"] and out["usage"]["output_tokens"] == ou["completion_tokens"]


def test_claude_body_to_openai_model_default_target(client, fakes):
    body = {"model": "gpt-4o", "anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
            "messages": [{"role": "user", "content": "plain"}]}
    resp = client.chat(body)
    up = assert_openai_upstream(fakes.openai.last())
    assert [(m["role"], text_of(m["content"])) for m in up["messages"]] == [("user", "plain")]
    # an OpenAI answer for an OpenAI target is passed through as the upstream sent it
    assert resp.status == 200 and resp.body == fakes.openai.last().response_body
    assert resp.json()["choices"][0]["message"]["content"] == "echo: plain"


# ---------------------------------------------------------------- 9. multi-chunk request bodies

BIG = "0123456789abcdef" * 4500  # 72,000 characters


CHUNKED_CASES = [
    pytest.param("claude-3-haiku", BIG, 9, id="claude-72KiB-9-chunks"),
    pytest.param("gpt-4o", "small body " * 20, 3, id="openai-3-chunks"),
    pytest.param("amazon.nova-pro-v1:0", "naïve café – ünïcödé ✓ " * 3000, 17, id="converse-utf8-split-inside-chars"),
    pytest.param("amazon.titan-text-express-v1", "t" * 70000, 5, id="titan-70KB"),
]


@pytest.mark.parametrize("model,text,pieces", CHUNKED_CASES)
def test_chunked_request_body(client, fakes, model, text, pieces):
    raw = json.dumps({"model": model, "messages": [user(text)], "max_tokens": 10}, ensure_ascii=False).encode()
    parts = split_bytes(raw, pieces)
    assert len(parts) >= 3
    resp = client.chat(paced(parts, 0.02), timeout=20)
    assert resp.status == 200, resp
    assert resp.json()["choices"][0]["message"]["content"] == "echo: " + text
    rec = (fakes.openai if model.startswith("gpt") else fakes.bedrock).last()
    assert not rec.chunked and rec.content_length == len(rec.body)
    if rec.server == "bedrock":
        assert rec.sigv4.ok, rec.sigv4
    up = rec.json()
    if "inputText" in up:
        assert up["inputText"] == f"User: {text}\nBot:"
    else:
        last = up["messages"][-1]["content"]
        got = last if isinstance(last, str) else "".join(b.get("text", "") for b in last)
        assert got == text


def test_paced_body_with_content_length(client, fakes):
    """A body with content-length that arrives in several TCP writes."""
    raw = json.dumps({"model": "claude-3-haiku", "messages": [user(BIG)]}).encode()
    resp = client.chat(paced(split_bytes(raw, 6), 0.02), headers={"content-length": str(len(raw))}, timeout=20)
    assert resp.status == 200, resp
    rec = fakes.bedrock.last()
    assert not rec.chunked and rec.content_length == len(rec.body) and rec.sigv4.ok


# ---------------------------------------------------------------- responses in small pieces

SPLIT_CASES = [
    pytest.param({"model": "claude-3-haiku", "messages": [user("split answer ✓")]}, "", "claude-3-haiku", id="claude"),
    pytest.param({"model": "amazon.nova-pro-v1:0", "messages": [user("split answer ✓")]}, "", "amazon.nova-pro-v1:0", id="converse"),
    pytest.param({"model": "amazon.titan-text-express-v1", "messages": [user("split answer ✓")]}, "", "amazon.titan-text-express-v1", id="titan"),
    pytest.param({"model": "gpt-4o", "anthropic_version": "bedrock-2023-05-31", "max_tokens": 9,
                  "messages": [{"role": "user", "content": "split answer ✓"}]}, "?target_format=bedrock_claude", None, id="openai-to-claude"),
]


@pytest.mark.parametrize("piece", [1, 7])
@pytest.mark.parametrize("body,query,model", SPLIT_CASES)
def test_upstream_answer_in_small_pieces(client, fakes, body, query, model, piece):
    """The upstream writes its (content-length) answer a few bytes at a time, so the filter
    sees many response-body callbacks and split UTF-8 characters."""
    resp = client.chat(body, path="/v1/chat/completions" + query,
                       headers={"x-fake-chunk-bytes": str(piece), "x-fake-chunk-delay-ms": "0"}, timeout=20)
    if model is None:
        assert resp.status == 200, resp
        assert resp.json()["content"] == [{"type": "text", "text": "echo: split answer ✓"}]
    else:
        assert_chat_completion(resp, model=model, text="echo: split answer ✓")
