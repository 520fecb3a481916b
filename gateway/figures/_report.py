"""Cells → a summary MeasureReport (FHIR R4); the period parameters → a calendar month."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from gateway.errors import BadRequest, NotFound
from gateway.figures._compute import Cell, Figure, Month
from gateway.figures._scope import Scope
from profiles._measures import get_measure

DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
SCORING_UNIT = "http://brobygger.dk/fhir/StructureDefinition/scoring-unit"
SUPPRESSED_REASON = "http://brobygger.dk/fhir/StructureDefinition/suppression-reason"


def month_of(period_start: str | None, period_end: str | None) -> Month:
    """Only whole calendar months (``YYYY-MM-01`` … its last day): no overlapping periods."""
    if not period_start or not period_end:
        raise BadRequest(
            "periodStart and periodEnd are required (one calendar month)", expression="periodStart"
        )
    try:
        start = date.fromisoformat(period_start[:10])
        end = date.fromisoformat(period_end[:10])
    except ValueError:
        raise BadRequest("periodStart and periodEnd are dates (YYYY-MM-DD)") from None
    month = Month(start.year, start.month)
    if start != month.first or end != month.last:
        raise BadRequest(
            "key figures cover exactly one calendar month: periodStart the 1st, periodEnd the "
            "month's last day (other periods could be subtracted to undo suppression)",
            expression="periodEnd" if start == month.first else "periodStart",
        )
    return month


def measure_or_404(measure_id: str) -> dict[str, Any]:
    measure = get_measure(measure_id)
    if measure is None:
        raise NotFound(f"Measure/{measure_id} is not known", expression="id")
    return measure


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


def _populations(scoring: str, cell: Cell) -> list[dict[str, Any]]:
    def pop(code: str, count: int | None) -> dict[str, Any]:
        entry: dict[str, Any] = {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}}
        if cell.suppressed or count is None:
            entry["_count"] = {"extension": [{"url": DATA_ABSENT, "valueCode": "masked"}]}
        else:
            entry["count"] = count
        return entry

    if scoring == "proportion":
        return [
            pop("initial-population", cell.population),
            pop("denominator", cell.population),
            pop("numerator", cell.numerator),
        ]
    if scoring == "continuous-variable":
        return [
            pop("initial-population", cell.population),
            pop("measure-population", cell.population),
        ]
    return [pop("initial-population", cell.population)]


def _score(cell: Cell, unit: str | None) -> dict[str, Any]:
    if cell.suppressed or cell.score is None:
        return {"extension": [{"url": DATA_ABSENT, "valueCode": "masked"}]}
    quantity: dict[str, Any] = {"value": _number(cell.score)}
    if unit:
        quantity["unit"] = unit
    return {"measureScore": quantity}


def _scored(cell: Cell, unit: str | None) -> dict[str, Any]:
    score = _score(cell, unit)
    if "extension" in score:
        reason = {"url": SUPPRESSED_REASON, "valueString": cell.reason or "suppressed"}
        return {"measureScore": {"extension": [*score["extension"], reason]}}
    return score


def measure_report(figure: Figure, scope: Scope, month: Month, *, now: datetime) -> dict[str, Any]:
    measure = measure_or_404(figure.measure)
    scoring = measure["scoring"]["coding"][0]["code"]
    unit = next(
        (e.get("valueString") for e in measure.get("extension") or [] if e["url"] == SCORING_UNIT),
        None,
    )
    groups: list[dict[str, Any]] = []
    for definition in measure["group"]:
        code = definition["code"]["coding"][0]["code"]
        cells = [c for c in figure.cells if c.group == code]
        group: dict[str, Any] = {"code": definition["code"]}
        if "stratifier" in definition:
            strata = []
            for cell in cells:
                stratum: dict[str, Any] = {"value": {"text": cell.stratum or "-"}}
                stratum["population"] = _populations(scoring, cell)
                stratum.update(_scored(cell, unit))
                strata.append(stratum)
            group["stratifier"] = [{"code": [definition["stratifier"][0]["code"]]}]
            if strata:
                group["stratifier"][0]["stratum"] = strata
        elif cells:
            group["population"] = _populations(scoring, cells[0])
            group.update(_scored(cells[0], unit))
        groups.append(group)
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "status": "complete",
        "type": "summary",
        "measure": f"{measure['url']}|{measure['version']}",
        "date": now.isoformat(timespec="seconds"),
        "reporter": scope.reporter,
        "period": {"start": month.first.isoformat(), "end": month.last.isoformat()},
        "group": groups,
    }
    if "improvementNotation" in measure:
        report["improvementNotation"] = measure["improvementNotation"]
    return report
