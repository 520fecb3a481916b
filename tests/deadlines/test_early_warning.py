"""Early warning at the first follow-up: a RiskAssessment with its reasons, for the caseworker."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mappings import map_document
from mappings.coordination import Score, early_warning_reasons, probability, score_observation
from mappings.deadlines import PaidPeriod
from tests.deadlines.test_referral_loop import _refer

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "formats" / "samples"
OLE = (SAMPLES / "jobcentre-case" / "sag-ole-aarhus.xml").read_text(encoding="utf-8")
FIRST = date(2026, 9, 1)
EARLIER = '<Periode fra="2025-03-01" til="2025-04-15" art="sygedagpenge"/>'
LONG_AGO = '<Periode fra="2024-01-01" til="2024-02-01" art="sygedagpenge"/>'


def _warning(xml: str) -> dict[str, Any] | None:
    bundle = map_document(xml.encode(), now=datetime(2026, 11, 20, 10, tzinfo=UTC)).bundle
    found = [
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "RiskAssessment"
    ]
    assert len(found) <= 1
    return found[0] if found else None


def _with_payments(xml: str, *periods: str) -> str:
    rows = "".join(periods) + '<Periode fra="2026-10-01" art="refusion"/>'
    return xml.replace(
        "</Sygedagpengesag>", f"<Udbetalinger>{rows}</Udbetalinger></Sygedagpengesag>"
    )


def test_reasons_from_the_case_and_the_scores() -> None:
    payments = (
        PaidPeriod(date(2025, 3, 1), date(2025, 4, 15), "sygedagpenge"),  # inside two years
        PaidPeriod(date(2024, 6, 1), date(2024, 8, 31), "barsel"),  # maternity: not sick leave
        PaidPeriod(date(2024, 1, 1), date(2024, 2, 1), "sygedagpenge"),  # more than two years
    )
    reasons = early_warning_reasons(
        first_day=FIRST,
        payments=payments,
        category="3",
        mental_health=True,
        scores={"fear-avoidance": Decimal(21), "rtw-self-efficacy": Decimal(4)},
    )
    assert [r.code for r in reasons] == [
        "earlier-sick-leave",
        "category-3",
        "mental-health",
        "fear-avoidance",
        "rtw-self-efficacy",
    ]
    assert reasons[0].detail == "1 periode(r): 2025-03-01/2025-04-15"
    assert probability(reasons) == "high"
    calm = early_warning_reasons(
        first_day=FIRST,
        payments=None,
        category="2",
        mental_health=False,
        scores={"fear-avoidance": Decimal(14), "rtw-self-efficacy": Decimal(6)},
    )
    assert calm == [] and probability(calm) == "low"


def test_at_the_first_follow_up_with_its_reasons_never_a_decision() -> None:
    warning = _warning(_with_payments(OLE, EARLIER, LONG_AGO))
    assert warning is not None
    assert warning["status"] == "preliminary"
    assert warning["occurrenceDateTime"] == "2026-10-22"  # the first follow-up
    assert [c["coding"][0]["code"] for c in warning["reasonCode"]] == ["earlier-sick-leave"]
    assert warning["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "moderate"
    assert "aldrig en automatisk afgørelse" in warning["mitigation"]
    labels = {s["code"] for s in warning["meta"]["security"]}
    assert labels == {"sickness-benefit-case"}  # never employment-relevant: no employer


def test_none_before_the_first_follow_up() -> None:
    start = OLE.index("<Opfoelgninger>")
    end = OLE.index("</Opfoelgninger>") + len("</Opfoelgninger>")
    assert _warning(OLE[:start] + OLE[end:]) is None


def test_a_mental_health_reason_labels_it_mental_health() -> None:
    xml = OLE.replace(
        "<Diagnosegruppe>muskel-skelet</Diagnosegruppe>", "<Diagnosegruppe>psykisk</Diagnosegruppe>"
    )
    warning = _warning(xml.replace('fastsat="2026-10-06">2<', 'fastsat="2026-10-06">3<'))
    assert warning is not None
    assert [c["coding"][0]["code"] for c in warning["reasonCode"]] == [
        "category-3",
        "mental-health",
    ]
    assert {s["code"] for s in warning["meta"]["security"]} == {
        "sickness-benefit-case",
        "mental-health",
    }
    assert warning["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "high"


@pytest.mark.parametrize("name", ["lys-montage", "aarhus-genoptraening", "auh-ortopaedi"])
async def test_the_caseworker_sees_it_nobody_else(as_: Any, name: str) -> None:
    jobcentre = await as_("jobcenter-aarhus")
    loaded = await jobcentre.client.post(
        "/ingest/jobcentre-case",
        content=_with_payments(OLE, EARLIER).encode(),
        headers={**jobcentre.headers, "Content-Type": "application/xml"},
    )
    assert loaded.status_code == 201, loaded.text
    patient = next(
        e["resource"]["patient"]["reference"]
        for e in loaded.json()["entry"]
        if e.get("resource", {}).get("resourceType") == "EpisodeOfCare"
    )
    mine = await jobcentre.get("RiskAssessment", patient=patient.split("/")[1])
    assert mine.status_code == 200, mine.text
    [warning] = [e["resource"] for e in mine.json()["entry"]]
    other = await as_(name)
    assert (await other.get(f"RiskAssessment/{warning['id']}")).status_code == 404
    assert not (await other.get("RiskAssessment")).json().get("entry")


def _score(code: str, value: int, day: str, patient: str) -> dict[str, Any]:
    return score_observation(
        Score(code, Decimal(value), Decimal(value)),
        patient=patient,
        performer="Organization/org-aarhus-genoptraening",
        effective=date.fromisoformat(day),
    )


@pytest.mark.parametrize("purpose", ["sickness-benefit-follow-up", None])
async def test_scores_the_caseworker_may_see_become_reasons(as_: Any, purpose: str | None) -> None:
    _, patient, _ = await _refer(as_)  # Ole's case, his consent (rehab-progress), a referral
    rehab = await as_("aarhus-genoptraening")
    for code, value, day in (
        ("fear-avoidance", 21, "2026-10-15"),  # before the first follow-up (2026-10-22): counts
        ("rtw-self-efficacy", 3, "2026-10-30"),  # measured after it: not "at the first"
    ):
        created = await rehab.post("Observation", _score(code, value, day, patient))
        assert created.status_code == 201, created.text
    caseworker = await as_("jobcenter-aarhus", purpose)
    newer = OLE.replace("2026-11-03T12:00:00+01:00", "2026-11-10T12:00:00+01:00")
    stored = await caseworker.client.post(
        "/ingest/jobcentre-case",
        content=newer.encode(),
        headers={**caseworker.headers, "Content-Type": "application/xml"},
    )
    assert stored.status_code in (200, 201), stored.text
    [warning] = [
        e["resource"]
        for e in stored.json()["entry"]
        if e.get("resource", {}).get("resourceType") == "RiskAssessment"
    ]
    reasons = [c["coding"][0]["code"] for c in warning.get("reasonCode", [])]
    if purpose is None:
        assert reasons == []  # no consent for this purpose: the scores are not there to see
    else:
        assert reasons == ["fear-avoidance"]
        assert warning["reasonCode"][0]["text"] == "ÖMPQ frygt-undgåelse 21 (≥ 15)"
        assert warning["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] == "moderate"
