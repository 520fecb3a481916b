"""bench/soak.py still runs: its short mode as a subprocess, checked for sane figures.

Not the memory verdict itself (a few hundred requests are too few for that; the long mode's
figures are in bench/README.md): every request kind answered, none with a 5xx, /healthz
answered all along, and RSS figures reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.soak import MIX

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_soak_short_mode_answers_every_kind_without_a_5xx(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    command = [
        sys.executable,
        *("-m", "bench.soak", "--requests", "300", "--clients", "8"),
        *("--max-growth-percent", "1000", "--json", str(out)),
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["server_error_count"] == 0, report["server_errors"]
    assert set(report["statuses"]) == set(MIX)
    answered = sum(sum(by_status.values()) for by_status in report["statuses"].values())
    assert answered >= 300
    rss = report["rss_mib"]
    assert 0 < rss["start"] <= rss["peak"] and rss["end"] <= rss["peak"]
    assert len(rss["timeline"]) == 11
    assert report["healthz_ms"]["polls"] > 0 and report["healthz_ms"]["failures"] == 0
    assert "gateway RSS MiB" in done.stdout
