"""docs/configuration.md stays true for the environment: every variable the `unigate` binary
reads is documented there (the plugin-configuration table is checked by core/tests/docs.rs)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Read by the AWS SDK or the OS, not settings of ours: documented as "the AWS default chain".
NOT_OURS = {"HOME", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "RUST_LOG"}


def variables_read_by_the_binary() -> set:
    names = set()
    for path in (ROOT / "sidecar" / "src").rglob("*.rs"):
        text = path.read_text()
        names |= set(re.findall(r'\b(?:get|env|var)\("([A-Z][A-Z0-9_]{2,})"\)', text))
        names |= set(re.findall(r'pub const [A-Z_]+_VAR: &str = "([A-Z][A-Z0-9_]+)"', text))
        # clap `env = "..."` attributes and the port/number helpers that take a variable name.
        names |= set(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]+)"', text))
        names |= set(re.findall(r'(?:port_var|number_var)\(\s*&get,\s*"([A-Z][A-Z0-9_]+)"', text))
    return names - NOT_OURS


def test_every_environment_variable_is_documented():
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(n for n in variables_read_by_the_binary() if f"`{n}`" not in doc)
    assert not missing, f"read by unigate but not in docs/configuration.md: {missing}"


def test_the_scan_finds_the_known_variables():
    found = variables_read_by_the_binary()
    for n in ("UNIGATE_MODEL", "UNIGATE_URL", "GATEWAY_PORT", "API_KEY", "OPENAI_BASE_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "UPSTREAM_TIMEOUT_SECONDS", "MAX_REQUEST_BYTES", "S3_FILES_BUCKET"):
        assert n in found, n
