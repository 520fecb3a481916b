"""The managers' key figures as FHIR Measures (``profiles/measures/*.json``), read once.

Each Measure describes its populations and cites DOMAIN.md and the law; the gateway's
``$evaluate-measure`` computes them (``gateway.figures``).
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any


@cache
def _measures() -> dict[str, dict[str, Any]]:
    folder = files("profiles").joinpath("measures")
    found: dict[str, dict[str, Any]] = {}
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            measure = json.loads(entry.read_text(encoding="utf-8"))
            found[str(measure["id"])] = measure
    return found


def measure_ids() -> list[str]:
    return list(_measures())


def get_measure(measure_id: str) -> dict[str, Any] | None:
    """A copy of the Measure, or None when there is no such key figure."""
    found = _measures().get(measure_id)
    return None if found is None else json.loads(json.dumps(found))
