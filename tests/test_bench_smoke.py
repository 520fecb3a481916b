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


def test_mixed_load_tiny_mode_produces_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "mixed.json"
    command = [
        sys.executable,
        *("-m", "bench.mixed_load"),
        *("--patients", "30", "--observations", "2", "--batch", "30"),
        *("--clients", "4", "--requests", "60", "--json", str(out)),
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["clients"] == 4 and report["requests"] == 60
    assert report["errors"] == {}, report["errors"]
    counts = {kind: row["count"] for kind, row in report["latency_ms"].items()}
    assert counts["all"] == 60 == counts["read"] + counts["search"] + counts["write"]
    assert all(counts[kind] > 0 for kind in ("read", "search", "write")), counts
    for row in report["latency_ms"].values():
        assert 0 < row["p50"] <= row["p99"] <= row["max"], row


@pytest.mark.postgres
def test_scale_tiny_mode_loads_by_copy_and_searches_under_consent(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    command = [
        sys.executable,
        *("-m", "bench.scale", "--sizes", "200,2000", "--searches", "20", "--explain"),
        *("--json", str(out)),
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert [step["resources"] for step in report["steps"]] == [200, 2000]
    for step in report["steps"]:
        assert step["searches"] == 15  # the first five warm up
        assert 0 < step["p50_ms"] <= step["p99_ms"], step
        assert "ix_idx_reference_type_param_target_type_target_id" in step["plan"], step["plan"]
    # Past a few hundred rows the patient-scoped search is index lookups, not a scan.
    assert "Seq Scan on resources" not in report["steps"][-1]["plan"]
    assert report["growth_p99_first_to_last"] > 0
