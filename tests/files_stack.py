"""A self-contained `unigate serve` stack for the Files API system tests (test_system_files.py).

The system harness's Stack (free 127.0.0.1 ports, isolated AWS environment, bounded start and
stop by PID) in front of its own in-process fakes (FakeOpenAI, FakeBedrock), with two client
keys and files on local disk under a temporary FILES_DIR.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Optional

from fakes import DEFAULT_ACCESS_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, FakeBedrock, FakeOpenAI
from system_harness import HarnessError, Stack, find_unigate, http  # noqa: F401 (re-exported for the tests)

KEY_A = "ug-files-key-a-31c7e0"
KEY_B = "ug-files-key-b-9d44aa"
UPSTREAM_KEY = "sk-files-upstream-0b12"


class FilesStack(Stack):
    """Fakes + `unigate serve` with the Files API on local disk."""

    def __init__(self, extra_env: Optional[dict] = None):
        super().__init__("files", {})
        self.files_dir = self.dir / "files"
        self.overrides = dict(extra_env or {})
        self.openai = FakeOpenAI(api_key=UPSTREAM_KEY)
        self.bedrock = FakeBedrock(region="us-east-1")

    def start(self) -> "FilesStack":
        self.openai.start()
        self.bedrock.start()
        self.extra_env = {
            "API_KEY": f"{KEY_A},{KEY_B}",
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": self.openai.url + "/v1",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": self.bedrock.url,
            "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": DEFAULT_SECRET,
            "AWS_SESSION_TOKEN": DEFAULT_TOKEN,
            "FILES_DIR": str(self.files_dir),
            **self.overrides,
        }
        super().start()
        return self

    def close(self) -> None:
        self.stop()
        self.openai.stop()
        self.bedrock.stop()
        self.cleanup()

    def client(self, key: str = KEY_A):
        import openai

        return openai.OpenAI(base_url=self.base_url, api_key=key, max_retries=0, timeout=60)

    def cli(self, *args: str, key: str = KEY_A, stdin: Optional[str] = None, cwd: Optional[Path] = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """Runs the `unigate` CLI against this stack (no TTY: plain output)."""
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(self.dir / "home"), "UNIGATE_URL": self.url, "API_KEY": key, "RUST_LOG": "error"}
        return subprocess.run(
            [find_unigate(), *args], input=stdin, capture_output=True, text=True, env=env,
            cwd=str(cwd or self.dir), timeout=timeout,
        )
