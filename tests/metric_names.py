"""The filter's metric names, written out independently of the filter (docs/operations.md).

Envoy's `/stats` shows the full names (labels as `.label.value` segments, the model id last and
unchanged); `/stats/prometheus` shows them as labels through the stats tags in envoy.yaml.
"""

from __future__ import annotations

import hashlib
import re


def key_label(key: str) -> str:
    """The label of a key configured without a name."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:8]


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def requests_total(endpoint: str, provider: str, status: int, model: str) -> str:
    return (f"wasmcustom.unigate.requests_total.endpoint.{endpoint}.provider.{provider}"
            f".status_class.{status_class(status)}.model.{model}")


def tokens_total(provider: str, key: str, kind: str, model: str) -> str:
    return f"wasmcustom.unigate.tokens_total.provider.{provider}.key.{key}.type.{kind}.model.{model}"


def counter(stats: dict, name: str) -> int:
    v = stats.get(name, "0")
    return int(v) if v.isdigit() else 0


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list:
    """(metric, {label: value}, value) for every sample line of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.append((m.group(1), labels, float(m.group(3))))
    return out
