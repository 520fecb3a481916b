"""Shared for the adapter tests: golden cases, a frozen clock, and the mapping call."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data"
# Frozen clock for every golden: ids are uuid5 already, so the output is fully deterministic.
NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
SENDER = "test-client"
ADAPTERS = ("rehab-plan", "gp-statement", "jobcentre-case")


def golden_cases() -> list[Path]:
    return sorted(p.parent for p in DATA.glob("*/*/input.xml") if p.parent.parent.name in ADAPTERS)
