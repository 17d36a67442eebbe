"""The Makefile's targets run when asked: a target that is not .PHONY and shares its name
with a file or directory (bench/, build/, sidecar/) is "up to date" to make, which then runs
nothing at all. Self-contained: only files, and `make -n` (prints, runs nothing)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MAKEFILE = (REPO / "Makefile").read_text()


def targets() -> set:
    return set(re.findall(r"^([a-z][a-z0-9-]*):(?!=)", MAKEFILE, re.M))


def phony() -> set:
    joined = MAKEFILE.replace("\\\n", " ")
    return {t for line in re.findall(r"^\.PHONY:(.*)$", joined, re.M) for t in line.split()}


def test_every_target_is_phony():
    assert {"bench", "build", "sidecar", "compose-test"} <= targets()
    missing = targets() - phony()
    assert not missing, f"not in .PHONY: {sorted(missing)}"


@pytest.mark.skipif(not shutil.which("make"), reason="no make")
@pytest.mark.parametrize("target,runs", [("bench", "bench/run.py"), ("compose-test", "scripts/compose-test.sh")])
def test_make_runs_the_target(target, runs):
    out = subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert runs in out.stdout, out.stdout
