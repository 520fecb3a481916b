"""The benchmark still runs: tiny mode as a subprocess, checked for sane figures (not times)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_bench_tiny_mode_produces_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    command = [
        sys.executable,
        *("-m", "bench.store_and_api"),
        *("--patients", "200", "--observations", "2"),
        *("--batch", "100", "--requests", "60", "--concurrency", "3"),
        *("--json", str(out)),
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))

    assert report["database"] == "sqlite"
    assert report["patients"] == 200 and report["resources"] == 200 * 3
    assert report["load"]["resources_per_second"] > 0
    assert report["load"]["transactions_per_second"] > 0
    # The raw baseline: the first load transaction's rows straight through the driver.
    assert report["raw_store_tx_per_second"] > 0
    assert report["raw_rows_per_transaction"] > 100 * 3  # every resource has history + index
    assert report["ratio_store_to_raw"] > 0
    assert report["requests_per_measurement"] == 60 and report["concurrency"] == 3
    lookups = {row["lookup"] for row in report["results"]}
    assert lookups == {
        "read Patient/<id>",
        "Observation?subject=Patient/<id>",
        "Patient?identifier=<cpr system>|<cpr>",
    }
    for row in report["results"]:
        assert row["store_requests_per_second"] > 0, row
        assert [http["consent"] for http in row["http"]] == ["enforced", "off"], row
        for http in row["http"]:
            assert http["requests_per_second"] > 0, row
            assert http["ratio_http_to_store"] > 0, row
    assert "HTTP / store" in done.stdout  # the rich table
    assert "store / raw" in done.stdout
