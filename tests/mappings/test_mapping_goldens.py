"""Golden files: every sample and edge case maps to exactly its expected Bundle.

``UPDATE_GOLDENS=1 pytest tests/mappings`` rewrites ``expected.json`` from the current output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from mapping_support import NOW, SENDER, golden_cases

from mappings import as_collection, map_document
from profiles.fhir_release import model_round_trip, validate_resource

CASES = golden_cases()
UPDATE = os.environ.get("UPDATE_GOLDENS") == "1"


def _map(case: Path) -> dict[str, Any]:
    result = map_document((case / "input.xml").read_bytes(), now=NOW, sender=SENDER)
    assert result.format == case.parent.name
    # What the Bundle holds is compared as parsed JSON (key order and spacing do not matter).
    parsed: dict[str, Any] = json.loads(json.dumps(result.bundle))
    return parsed


def test_every_adapter_has_goldens_for_every_sample() -> None:
    samples = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"
    names = {f"{c.parent.name}/{c.name}" for c in CASES}
    for sample in samples.glob("*/*.xml"):
        assert f"{sample.parent.name}/sample-{sample.stem}" in names
        golden = CASES[0].parents[1] / sample.parent.name / f"sample-{sample.stem}" / "input.xml"
        assert golden.read_bytes() == sample.read_bytes(), "golden input differs from sample"
    assert {c.parent.name for c in CASES} == {"rehab-plan", "gp-statement", "jobcentre-case"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.parent.name}/{c.name}")
def test_golden(case: Path) -> None:
    bundle = _map(case)
    expected_file = case / "expected.json"
    if UPDATE:
        expected_file.write_text(
            json.dumps(bundle, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )
    assert expected_file.exists(), "no expected.json: run with UPDATE_GOLDENS=1"
    assert bundle == json.loads(expected_file.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.parent.name}/{c.name}")
def test_golden_is_valid_r4_and_round_trips(case: Path) -> None:
    bundle = _map(case)
    dumped = validate_resource(bundle, "Bundle")
    # parse → dump → parse gives back exactly what the adapter produced.
    assert dumped == bundle
    assert model_round_trip(json.loads(json.dumps(dumped))) == dumped
    collection = as_collection(bundle)
    assert validate_resource(collection, "Bundle") == collection


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.parent.name}/{c.name}")
def test_mapping_is_deterministic(case: Path) -> None:
    assert _map(case) == _map(case)
