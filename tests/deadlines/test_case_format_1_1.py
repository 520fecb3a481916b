"""Job-centre case format 1.1: Tider, ArbejdetTimer against the plan, the coded §27 ground."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mappings import map_document
from mappings._errors import MappingError
from profiles import validate

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"
OLE = (SAMPLES / "jobcentre-case" / "sag-ole-aarhus.xml").read_text(encoding="utf-8")
NOW = datetime(2026, 12, 1, 10, tzinfo=UTC)
# Ole's plan: 12 h/week 2026-10-27..11-09, 20 h/week 2026-11-10..11-30, 30 h in December.
WORKED = (
    '<ArbejdetTimer uge="2026-W45" timer="12"/>'  # 2026-11-02..08: 12 planned, 12 worked
    '<ArbejdetTimer uge="2026-W47" timer="15"/>'  # 2026-11-16..22: 20 planned, 15 worked
)
TIMES = "<Dage>man,ons,fre</Dage><Tider>08:00-12:00</Tider>"


def _bundle(xml: str) -> list[dict[str, Any]]:
    result = map_document(xml.encode(), now=NOW)
    report = validate(result.bundle)
    assert not [i for i in report.issues if i.severity in ("error", "fatal")], report.issues
    return [e["resource"] for e in result.bundle["entry"]]


def _v11(xml: str = OLE) -> str:
    xml = xml.replace("<Dage>man,ons,fre</Dage>", TIMES)
    return xml.replace("</Optrapningsplan>", "</Optrapningsplan>" + WORKED)


def test_a_1_0_document_stays_valid() -> None:
    assert _bundle(OLE)


def test_worked_hours_are_observations_and_a_shortfall_is_flagged_with_a_task() -> None:
    resources = _bundle(_v11())
    worked = [
        r
        for r in resources
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "hours-worked"
    ]
    by_week = {w["effectivePeriod"]["start"]: w for w in worked}
    assert sorted(by_week) == ["2026-11-02", "2026-11-16"]
    assert by_week["2026-11-02"]["valueQuantity"]["value"] == 12
    assert "interpretation" not in by_week["2026-11-02"]
    short = by_week["2026-11-16"]
    assert short["referenceRange"][0]["low"]["value"] == 20
    assert short["interpretation"][0]["coding"][0]["code"] == "L"
    tasks = [
        r
        for r in resources
        if r["resourceType"] == "Task"
        and r["code"]["coding"][0]["code"] == "gradual-return-shortfall"
    ]
    assert len(tasks) == 1
    # Week ends Sunday 2026-11-22; the talk is due a week later, 2026-11-29: overdue on 12-01.
    assert tasks[0]["restriction"]["period"]["end"] == "2026-11-29"
    assert tasks[0]["businessStatus"]["coding"][0]["code"] == "overdue"
    assert tasks[0]["owner"]["reference"].startswith("urn:uuid:")


def test_times_of_day_in_the_plan() -> None:
    plans = [r for r in _bundle(_v11()) if r["resourceType"] == "CarePlan"]
    repeat = plans[0]["activity"][0]["detail"]["scheduledTiming"]["repeat"]
    assert repeat["timeOfDay"] == ["08:00:00"]
    assert (repeat["duration"], repeat["durationUnit"]) == (4, "h")
    words = _v11().replace("08:00-12:00", "formiddag")
    repeat = next(r for r in _bundle(words) if r["resourceType"] == "CarePlan")["activity"][0][
        "detail"
    ]["scheduledTiming"]["repeat"]
    assert repeat["when"] == ["MORN"]


def test_the_extension_ground_is_coded() -> None:
    xml = OLE.replace(
        "</Sygedagpengesag>",
        '<Revurdering dato="2027-03-31" udfald="forlaenget" grundlag="§27 stk. 1 nr. 3" '
        'forlaengelse="laegebehandling"/></Sygedagpengesag>',
    )
    resources = _bundle(xml)
    reassessment = next(
        r
        for r in resources
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "reassessment"
    )
    ground = reassessment["component"][1]["valueCodeableConcept"]["coding"][0]
    assert ground["code"] == "laegebehandling"
    assert "134" in ground["display"]


@pytest.mark.parametrize(
    ("needle", "replacement", "where"),
    [
        ('uge="2026-W45"', 'uge="2026-W54"', "@uge"),
        ('timer="15"', 'timer="200"', "@timer"),
        ("08:00-12:00", "8-12", "Tider"),
        ('forlaengelse="laegebehandling"', 'forlaengelse="moon"', "@forlaengelse"),
    ],
)
def test_broken_1_1_elements_are_refused_by_name(needle: str, replacement: str, where: str) -> None:
    xml = _v11().replace(
        "</Sygedagpengesag>",
        '<Udbetalinger><Periode fra="2026-10-01" art="refusion"/></Udbetalinger>'
        '<Revurdering dato="2027-03-31" udfald="forlaenget" grundlag="§27" '
        'forlaengelse="laegebehandling"/></Sygedagpengesag>',
    )
    assert _bundle(xml)
    with pytest.raises(MappingError) as refused:
        map_document(xml.replace(needle, replacement).encode(), now=NOW)
    assert any(where in i.expression for i in refused.value.issues)


def test_a_payment_ending_before_it_starts_is_refused() -> None:
    xml = OLE.replace(
        "</Sygedagpengesag>",
        '<Udbetalinger><Periode fra="2026-10-01" til="2026-09-01" art="refusion"/>'
        "</Udbetalinger></Sygedagpengesag>",
    )
    with pytest.raises(MappingError):
        map_document(xml.encode(), now=NOW)
