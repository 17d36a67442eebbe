"""Deterministic text helpers shared by the fakes (answers and token counts)."""

from __future__ import annotations

ECHO_PREFIX = "echo: "


def echo_text(last_user: str) -> str:
    """The answer every fake model gives: "echo: " + the last user text."""
    return ECHO_PREFIX + last_user


def count_tokens(text: str) -> int:
    """A stable stand-in for a tokenizer: one token per 4 characters, at least 1."""
    return max(1, (len(text) + 3) // 4)


def split_words(text: str) -> list:
    """Splits text into pieces that concatenate back to it (word + following space)."""
    pieces, cur = [], ""
    for ch in text:
        cur += ch
        if ch == " ":
            pieces.append(cur)
            cur = ""
    if cur:
        pieces.append(cur)
    return pieces
