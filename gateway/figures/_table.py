"""MeasureReports → rows for a table, JSON or a chart (one reading of the reports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from profiles._measures import get_measure


@dataclass(frozen=True, slots=True)
class Row:
    measure: str
    title: str
    group: str
    stratum: str | None
    population: int | None
    numerator: int | None
    value: float | None
    unit: str | None
    suppressed: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        parts = [self.title]
        if self.group not in ("plans", "citizens", "inflow", "outflow", "off-benefit", "on-time"):
            parts.append(self.group)
        if self.stratum:
            parts.append(self.stratum)
        return " · ".join(parts)


def _count(populations: list[dict[str, Any]], code: str) -> int | None:
    for population in populations:
        if population["code"]["coding"][0]["code"] == code:
            value = population.get("count")
            return int(value) if value is not None else None
    return None


def _row(measure: dict[str, Any], group: str, part: dict[str, Any], stratum: str | None) -> Row:
    populations = part.get("population") or []
    score = part.get("measureScore") or {}
    value = score.get("value")
    population = _count(populations, "denominator")
    if population is None:
        population = _count(populations, "initial-population")
    return Row(
        measure=str(measure["id"]),
        title=str(measure["title"]),
        group=group,
        stratum=stratum,
        population=population,
        numerator=_count(populations, "numerator"),
        value=float(value) if value is not None else None,
        unit=score.get("unit"),
        # Masked counts mean a suppressed cell; a shown 0 with no score is an empty group.
        suppressed=population is None,
    )


def rows_of(report: dict[str, Any]) -> list[Row]:
    measure_id = str(report["measure"]).split("|")[0].rsplit("/", 1)[-1]
    measure = get_measure(measure_id)
    if measure is None:
        return []
    rows = []
    for group in report.get("group") or []:
        code = group["code"]["coding"][0]["code"]
        if "stratifier" in group:
            for stratum in group["stratifier"][0].get("stratum") or []:
                rows.append(_row(measure, code, stratum, str(stratum["value"]["text"])))
        elif "population" in group:
            rows.append(_row(measure, code, group, None))
    return rows


def shown(row: Row) -> str:
    """The value as a manager reads it (Danish); suppressed cells say so, nothing more."""
    if row.suppressed:
        return "skjult (< 5 borgere)"
    if row.value is None:
        return "ingen borgere"
    if row.numerator is not None:
        return f"{row.value * 100:.1f} % ({row.numerator} af {row.population})"
    number = f"{row.value:g}".replace(".", ",")
    return f"{number} {row.unit}" if row.unit else number
