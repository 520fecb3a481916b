"""Keeps bench/consent_search.py working: a tiny run must produce sane figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_consent_bench_tiny_mode(tmp_path: Path) -> None:
    out = tmp_path / "consent.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.consent_search",
            "--patients",
            "30",
            "--requests",
            "30",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["patients"] == 30 and report["resources_loaded"] == 270
    assert report["search_with_enforcement_per_second"] > 0
    assert report["search_without_enforcement_per_second"] > 0
    assert (
        report["slowdown_ratio"]
        == round(
            report["search_without_enforcement_per_second"]
            / report["search_with_enforcement_per_second"],
            3,
        )
        or abs(
            report["slowdown_ratio"]
            - report["search_without_enforcement_per_second"]
            / report["search_with_enforcement_per_second"]
        )
        < 0.01
    )
