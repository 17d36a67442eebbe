"""The fuzz seed script runs on the current fixtures and agrees with the fuzz targets' tables.

`make fuzz` (and CI's short run) start with core/fuzz/seed.py; a door added to the golden
fixtures but not to the seed's selector table used to break fuzzing only at the end of CI."""
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_seed_script_builds_every_corpus():
    run = subprocess.run([sys.executable, str(REPO / "core/fuzz/seed.py")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    for target in ("request_plan", "response_decode", "stream_decode", "sigv4_path"):
        assert any((REPO / "core/fuzz/corpus" / target).iterdir()), target


def test_seed_door_selectors_match_the_targets_door_table():
    rust = (REPO / "core/fuzz/fuzz_targets/request_plan.rs").read_text()
    table = re.search(r"const DOORS: \[Door; \d+\] = \[(.*?)\];", rust, re.S).group(1)
    doors = re.findall(r"Door::(\w+)", table)
    seed = (REPO / "core/fuzz/seed.py").read_text()
    selector = dict((k, int(v)) for k, v in re.findall(r'"(\w+)": (\d+)', re.search(r"DOOR_SELECTOR = \{(.*?)\}", seed).group(1)))
    names = {"chat": "Chat", "messages": "Messages", "count_tokens": "CountTokens", "responses": "Responses",
             "embeddings": "Embeddings"}
    for door, index in selector.items():
        assert doors[index % len(doors)] == names[door], (door, index, doors)
    golden_doors = {re.search(r'"door":\s*"(\w+)"', p.read_text()).group(1)
                    for p in (REPO / "core/tests/golden").rglob("*.json") if '"door"' in p.read_text()}
    assert golden_doors <= set(selector), golden_doors - set(selector)
