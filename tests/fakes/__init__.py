"""Fake upstreams shared by the Python test layers (wasm-tests/, tests/).

Importable as `fakes` with `<repo>/tests` on sys.path (what wasm-tests/conftest.py does).
Everything runs in-process on 127.0.0.1 with OS-chosen ports:

    from fakes import FakeBedrock, FakeOpenAI, FakeSidecar
    with FakeOpenAI(api_key="sk-x") as oa:
        ...  # oa.url, oa.requests, oa.clear()
"""

from .bedrock import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeBedrock
from .openai import FakeOpenAI
from .server import FakeServer, RecordedRequest, Reply
from .sidecar import FakeSidecar
from .sigv4 import SigCheck, verify
from .text import count_tokens, echo_text
from .usage import streamed_usage

__all__ = [
    "DEFAULT_ACCESS_KEY",
    "DEFAULT_SECRET",
    "DEFAULT_TOKEN",
    "FakeBedrock",
    "FakeOpenAI",
    "FakeServer",
    "FakeSidecar",
    "RecordedRequest",
    "Reply",
    "SigCheck",
    "count_tokens",
    "echo_text",
    "streamed_usage",
    "verify",
]
