"""Image requests through the full stack with the official OpenAI SDK: inline images reach
Claude and Converse models as base64 image blocks; what Bedrock cannot take gets a clear 400
from the gateway instead of a Bedrock error."""

from __future__ import annotations

import json

import openai
import pytest

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


def image_message(url: str) -> list:
    return [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": url, "detail": "auto"}},
    ]}]


def test_image_to_claude(client, fakes):
    reply = client.chat.completions.create(model="claude-3-5-sonnet", messages=image_message(f"data:image/png;base64,{PNG}"))
    assert reply.choices[0].message.content.startswith("echo: ")
    rec = fakes.bedrock.last()
    assert rec.sigv4.ok
    blocks = json.loads(rec.body)["messages"][0]["content"]
    assert {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}} in blocks
    assert {"type": "text", "text": "What is in this picture?"} in blocks


def test_jpeg_to_converse(client, fakes):
    client.chat.completions.create(model="amazon.nova-pro-v1:0", messages=image_message(f"data:image/jpg;base64,{PNG}"))
    blocks = json.loads(fakes.bedrock.last().body)["messages"][0]["content"]
    assert {"image": {"format": "jpeg", "source": {"bytes": PNG}}} in blocks


def test_remote_image_url_is_refused_for_bedrock(client, fakes):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="claude-3-5-sonnet", messages=image_message("https://example.com/cat.png"))
    assert e.value.body["code"] == "unsupported_image_url"
    assert e.value.body["param"] == "messages[0].content[1].image_url.url"
    assert fakes.bedrock.requests == []


def test_image_to_a_text_only_model_is_refused(client, fakes):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="meta.llama3-1-70b-instruct-v1:0", messages=image_message(f"data:image/png;base64,{PNG}"))
    assert e.value.body["code"] == "unsupported_for_model"
    assert fakes.bedrock.requests == []


def test_remote_image_url_goes_to_openai(client, fakes):
    """OpenAI fetches URLs itself: the request passes through unchanged."""
    client.chat.completions.create(model="gpt-4o", messages=image_message("https://example.com/cat.png"))
    sent = json.loads(fakes.openai.last().body)
    assert sent["messages"][0]["content"][1]["image_url"]["url"] == "https://example.com/cat.png"
