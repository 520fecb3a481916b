"""The adapters benchmark still runs: tiny mode as a subprocess, checked for sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_bench_adapters_tiny_mode(tmp_path: Path) -> None:
    out = tmp_path / "adapters.json"
    command = [sys.executable, "-m", "bench.adapters", "--documents", "3", "--json", str(out)]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    rows = {(r["format"], r["step"]) for r in report["results"]}
    assert {f for f, _ in rows} == {"rehab-plan", "gp-statement", "jobcentre-case"}
    assert {s for _, s in rows} == {
        "validate (base R4 + profiles)",
        "map + validate",
        "map + validate + store (SQLite)",
    }
    for row in report["results"]:
        assert row["documents"] == 3
        assert 0 < row["ratio_to_lxml_parse"] < 1
