"""Keeps bench/messaging.py working: a tiny run on SQLite, checked for sane figures (not times)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
MESSAGES = 6
WARM_UP = 3  # bench.messaging sends three unmeasured messages first

pytestmark = pytest.mark.slow


def test_messaging_bench_tiny_mode(tmp_path: Path) -> None:
    out = tmp_path / "messaging.json"
    command = [
        sys.executable,
        *("-m", "bench.messaging"),
        *("--store", "sqlite", "--messages", str(MESSAGES), "--concurrency", "2"),
        *("--breakdown", "2", "--delivery", "both", "--attachment-kb", "256"),
        *("--json", str(out)),
    ]
    done = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    report = json.loads(out.read_text(encoding="utf-8"))

    assert report["messages"] == MESSAGES and report["concurrency"] == 2
    [store] = report["stores"]
    assert store["store"] == "sqlite"
    baseline = store["store_transactions"]
    assert baseline["documents"] == MESSAGES and baseline["per_second"] > 0
    assert baseline["resources_created_per_document"] > 0
    # The raw baseline: the same rows through the driver, and the ratio of the two.
    assert store["raw_store_tx_per_second"] > 0
    assert store["raw_rows_per_transaction"] > baseline["resources_created_per_document"]
    assert store["ratio_store_to_raw"] > 0
    assert "store / raw" in done.stdout
    steps = store["breakdown_ms"]
    assert steps["samples"] == 2
    assert all(value > 0 for value in steps.values()), steps

    assert [http["delivery"] for http in store["http"]] == ["off", "on"]
    for http in store["http"]:
        # Every message was a new one, accepted and acknowledged ok (signature verified).
        assert http["acknowledgements"] == {"ok": MESSAGES}, http
        assert http["ok"] == http["messages"] == MESSAGES
        assert http["per_second"] > 0 and http["ratio_to_store"] > 0
        assert http["client_sign_encrypt_ms"] > 0 and http["client_verify_ack_ms"] > 0
        # The messages stored what the baseline stored: the ratio compares the same work.
        assert http["same_resources_as_store"], http
        assert http["resources_created_per_message"] == baseline["resources_created_per_document"]
    off, on = store["http"]
    assert off["deliveries"] is None
    deliveries = on["deliveries"]
    assert deliveries["by_status"] == {"delivered": MESSAGES + WARM_UP}, deliveries
    assert deliveries["received_by_receiver"] >= MESSAGES + WARM_UP
    assert "messages / store" in done.stdout  # the rich table
    # MedCom CareCommunications with 256 KB attachments (over joserfc's default 64 KiB cap).
    attachments = store["attachments"]
    assert attachments["attachment_kb"] == 256
    assert attachments["acknowledgements"] == {"ok": MESSAGES}, attachments
    assert attachments["envelope_bytes_mean"] > 256 * 1024
    assert "256 KB attachments" in done.stdout
