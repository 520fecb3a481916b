"""``Measure/{id}/$evaluate-measure`` over the real app: scope, periods, suppression, FHIR."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from figures_support import JC, RU, seed

from gateway.figures import municipality_subject
from gateway.store.repository import Store
from tests.validate.conftest import Validation

NOVEMBER = {"periodStart": "2026-11-01", "periodEnd": "2026-11-30"}
TOWN = municipality_subject("0751")


def count(report: dict[str, Any]) -> int | None:
    population = report["group"][0]["population"][0]
    return population.get("count")


async def evaluate(api: Any, measure: str, **params: str) -> Any:
    return await api.get(f"Measure/{measure}/$evaluate-measure", **{**NOVEMBER, **params})


async def test_own_figures_and_the_municipality_with_complementary_suppression(
    as_: Any, store: Store
) -> None:
    await seed(store, jobcentre_cases=7, unit_plans=3)
    jobcentre, unit = await as_("jobcenter-aarhus"), await as_("aarhus-genoptraening")

    inflow = (await evaluate(jobcentre, "case-inflow")).json()
    assert inflow["type"] == "summary" and count(inflow) == 7
    assert inflow["reporter"] == {"reference": JC}
    plans = (await evaluate(unit, "new-rehab-plans")).json()
    assert count(plans) is None  # 3 citizens: suppressed
    assert plans["group"][0]["population"][0]["_count"]["extension"][0]["valueCode"] == "masked"
    # The municipality's plans (3 + 0) would be the unit's 3: hidden as well.
    town = (await evaluate(jobcentre, "new-rehab-plans", subject=TOWN)).json()
    assert count(town) is None
    town_inflow = (await evaluate(jobcentre, "case-inflow", subject=TOWN)).json()
    assert count(town_inflow) == 7
    assert town_inflow["reporter"]["identifier"]["value"] == "0751"
    # No individual data: no Patient, no resource id anywhere in the report.
    text = json.dumps(town_inflow) + json.dumps(plans)
    assert "Patient/" not in text and "ServiceRequest/" not in text


async def test_waiting_time_median_and_p90_from_stored_rows(as_: Any, store: Store) -> None:
    await seed(store, jobcentre_cases=0, unit_plans=6)
    unit = await as_("aarhus-genoptraening")
    # started Nov 1 + 0, 7, ..., 35 days: the sixth (Dec 6) falls outside November, so
    # 0, 7, 14, 21, 28: median the 3rd = 14, p90 the ceil(0.9 * 5) = 5th = 28
    report = (await evaluate(unit, "waiting-time")).json()
    median, p90 = report["group"]
    assert median["measureScore"] == {"value": 14, "unit": "dage"}
    assert p90["measureScore"]["value"] == 28
    assert median["population"][0]["count"] == 5


async def test_only_whole_calendar_months(as_: Any) -> None:
    jobcentre = await as_("jobcenter-aarhus")
    for start, end in (
        ("2026-11-02", "2026-12-01"),
        ("2026-11-01", "2026-11-29"),
        ("2026-11-01", "2026-12-31"),
    ):
        response = await jobcentre.get(
            "Measure/case-inflow/$evaluate-measure", periodStart=start, periodEnd=end
        )
        assert response.status_code == 400, (start, end)
        assert response.json()["resourceType"] == "OperationOutcome"
    missing = await jobcentre.get("Measure/case-inflow/$evaluate-measure")
    assert missing.status_code == 400


async def test_subjects_other_than_own_or_own_municipality_are_refused(as_: Any) -> None:
    jobcentre, employer = await as_("jobcenter-aarhus"), await as_("lys-montage")
    other = await evaluate(jobcentre, "case-inflow", subject=RU)
    assert other.status_code == 403
    roskilde = await evaluate(jobcentre, "case-inflow", subject=municipality_subject("0265"))
    assert roskilde.status_code == 403
    assert (await evaluate(employer, "case-inflow", subject=TOWN)).status_code == 403
    assert (await evaluate(employer, "case-inflow")).status_code == 200
    assert (await evaluate(jobcentre, "no-such-figure")).status_code == 404
    individual = await evaluate(jobcentre, "case-inflow", reportType="subject-list")
    assert individual.status_code == 400


async def test_post_with_parameters_and_the_measure_itself(as_: Any, store: Store) -> None:
    await seed(store, jobcentre_cases=5, unit_plans=0)
    jobcentre = await as_("jobcenter-aarhus")
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "periodStart", "valueDate": "2026-11-01"},
            {"name": "periodEnd", "valueDate": "2026-11-30"},
            {"name": "subject", "valueString": JC},
        ],
    }
    response = await jobcentre.post("Measure/case-inflow/$evaluate-measure", body)
    assert response.status_code == 200, response.text
    assert count(response.json()) == 5
    measure = (await jobcentre.get("Measure/case-inflow")).json()
    assert measure["resourceType"] == "Measure" and measure["scoring"]
    listed = (await jobcentre.get("Measure")).json()
    assert listed["total"] == 9


async def test_measures_and_reports_pass_fhir_validate(
    as_: Any, store: Store, tmp_path: Path, fhir_validate: Callable[[list[Path]], Validation]
) -> None:
    await seed(store, jobcentre_cases=6, unit_plans=6)
    jobcentre = await as_("jobcenter-aarhus")
    files = []
    listed = (await jobcentre.get("Measure")).json()
    for entry in listed["entry"]:
        measure = entry["resource"]
        for name, subject in (("own", JC), ("town", TOWN)):
            report = (await evaluate(jobcentre, measure["id"], subject=subject)).json()
            assert report["resourceType"] == "MeasureReport", report
            path = tmp_path / f"{measure['id']}-{name}.json"
            path.write_text(json.dumps(report), encoding="utf-8")
            files.append(path)
        path = tmp_path / f"Measure-{measure['id']}.json"
        path.write_text(json.dumps(measure), encoding="utf-8")
        files.append(path)
    result = fhir_validate(files)
    assert result.returncode == 0, result.output
