"""A small, independent encoder (and strict decoder) for AWS event-stream framing.

Layout of one message (integers big-endian):

    total_len u32 | headers_len u32 | prelude_crc u32 | headers | payload | message_crc u32

prelude_crc = CRC-32 (zlib) of bytes 0..8; message_crc = CRC-32 of bytes 0..total_len-4.
Only string headers (type 7) are produced, which is all Bedrock's responses use.
The decoder exists to test the fakes and to read what a gateway emits; it is deliberately
strict (it checks both CRCs).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any, Iterable, Iterator

HEADER_STRING = 7
PRELUDE_LEN = 12


def _encode_header(name: str, value: str) -> bytes:
    n = name.encode("utf-8")
    v = value.encode("utf-8")
    if len(n) > 255:
        raise ValueError(f"header name too long: {name!r}")
    return bytes([len(n)]) + n + bytes([HEADER_STRING]) + struct.pack(">H", len(v)) + v


def encode_message(headers: Iterable[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message with string headers (order kept as given)."""
    hbytes = b"".join(_encode_header(k, v) for k, v in headers)
    total = PRELUDE_LEN + len(hbytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hbytes))
    prelude_crc = zlib.crc32(prelude) & 0xFFFFFFFF
    head = prelude + struct.pack(">I", prelude_crc) + hbytes + payload
    message_crc = zlib.crc32(head) & 0xFFFFFFFF
    return head + struct.pack(">I", message_crc)


def event_frame(event_type: str, payload: Any, content_type: str = "application/json") -> bytes:
    """An `event` message (`:event-type`, `:content-type`, `:message-type` in Bedrock's order)."""
    body = payload if isinstance(payload, (bytes, bytearray)) else json.dumps(payload, separators=(",", ":")).encode()
    return encode_message(
        [(":event-type", event_type), (":content-type", content_type), (":message-type", "event")],
        bytes(body),
    )


def exception_frame(exception_type: str, payload: Any) -> bytes:
    """A modeled-error message (`:message-type` = exception)."""
    body = payload if isinstance(payload, (bytes, bytearray)) else json.dumps(payload, separators=(",", ":")).encode()
    return encode_message(
        [
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        bytes(body),
    )


def error_frame(code: str, message: str) -> bytes:
    """An unmodeled-error message (`:message-type` = error, empty payload)."""
    return encode_message(
        [(":error-code", code), (":error-message", message), (":message-type", "error")], b""
    )


def chunk_frame(event: Any, padding: str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ") -> bytes:
    """An InvokeModelWithResponseStream `chunk` event wrapping one JSON event in base64 `bytes`.

    `p` is the random-length padding Bedrock adds; here it is derived from the event length
    so output stays deterministic.
    """
    raw = event if isinstance(event, (bytes, bytearray)) else json.dumps(event, separators=(",", ":")).encode()
    pad = padding[: (len(raw) % len(padding)) + 1] if padding else ""
    payload = {"bytes": base64.b64encode(bytes(raw)).decode("ascii")}
    if pad:
        payload["p"] = pad
    return event_frame("chunk", payload)


class DecodeError(ValueError):
    pass


def decode_messages(data: bytes) -> tuple[list[dict], bytes]:
    """Decodes complete messages from `data`; returns (messages, undecoded remainder).

    Each message is {"headers": {name: value}, "payload": bytes}. Raises DecodeError on a
    CRC mismatch or malformed header block.
    """
    out = []
    pos = 0
    while len(data) - pos >= PRELUDE_LEN:
        total, hlen = struct.unpack_from(">II", data, pos)
        (pcrc,) = struct.unpack_from(">I", data, pos + 8)
        if zlib.crc32(data[pos : pos + 8]) & 0xFFFFFFFF != pcrc:
            raise DecodeError(f"prelude CRC mismatch at offset {pos}")
        if total < 16 + hlen:
            raise DecodeError(f"bad lengths total={total} headers={hlen}")
        if len(data) - pos < total:
            break
        msg = data[pos : pos + total]
        (mcrc,) = struct.unpack_from(">I", msg, total - 4)
        if zlib.crc32(msg[:-4]) & 0xFFFFFFFF != mcrc:
            raise DecodeError(f"message CRC mismatch at offset {pos}")
        headers = {}
        h = msg[PRELUDE_LEN : PRELUDE_LEN + hlen]
        i = 0
        while i < len(h):
            nlen = h[i]
            name = h[i + 1 : i + 1 + nlen].decode()
            i += 1 + nlen
            typ = h[i]
            i += 1
            if typ == HEADER_STRING or typ == 6:
                (vlen,) = struct.unpack_from(">H", h, i)
                raw = h[i + 2 : i + 2 + vlen]
                headers[name] = raw.decode() if typ == HEADER_STRING else raw
                i += 2 + vlen
            elif typ in (0, 1):
                headers[name] = typ == 0
            elif typ == 2:
                headers[name] = struct.unpack_from(">b", h, i)[0]
                i += 1
            elif typ == 3:
                headers[name] = struct.unpack_from(">h", h, i)[0]
                i += 2
            elif typ == 4:
                headers[name] = struct.unpack_from(">i", h, i)[0]
                i += 4
            elif typ in (5, 8):
                headers[name] = struct.unpack_from(">q", h, i)[0]
                i += 8
            elif typ == 9:
                headers[name] = h[i : i + 16]
                i += 16
            else:
                raise DecodeError(f"unknown header type {typ}")
        out.append({"headers": headers, "payload": msg[PRELUDE_LEN + hlen : total - 4]})
        pos += total
    return out, data[pos:]


def iter_chunk_events(data: bytes) -> Iterator[dict]:
    """Decoded JSON events of an InvokeModelWithResponseStream body (chunk → base64 → JSON)."""
    msgs, rest = decode_messages(data)
    if rest:
        raise DecodeError(f"{len(rest)} trailing bytes")
    for m in msgs:
        if m["headers"].get(":event-type") == "chunk":
            yield json.loads(base64.b64decode(json.loads(m["payload"])["bytes"]))
