"""The managers' key figures as pure arithmetic: plain facts in, suppressed cells out.

DOMAIN.md, "Managers' key figures": monthly, health and employment together, aggregates only,
small cells suppressed. Nothing here does I/O; ``_rows`` turns stored resources into the
facts below, ``_report`` turns cells into a MeasureReport.

Disclosure control (why a report can never single out a citizen):

* a *cell* is one number about a group of citizens (a stratum of a measure). It is shown only
  when the group holds at least ``MIN_CELL`` citizens (0 is shown: it describes nobody);
* a proportion also describes the citizens *with* and *without* the attribute: both must be
  0 or at least ``MIN_CELL`` (otherwise "4 of 9 met" singles out the other 5 … or the 4);
* periods are fixed calendar months, so two reports never overlap partially (no differencing
  of overlapping periods);
* subjects are fixed too (one organisation, or its whole municipality). A municipality's cell
  is suppressed when any member organisation's own cell is suppressed, so municipality minus
  one's own organisation never reveals the other's small cell (complementary suppression);
* strata are never summed into a total in the same report (a total minus the shown strata
  would be the suppressed one);
* the stock (citizens on benefit in month M) equals stock(M-1) + inflow(M) - outflow(M-1); the
  stock is suppressed from the first month with a small inflow (or the month after a small
  outflow) on, so no chain of published stocks and flows has a single unknown in it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

MIN_CELL = 5


@dataclass(frozen=True, slots=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """``YYYY-MM``."""
        year, _, month = text.partition("-")
        if not (len(year) == 4 and year.isdigit() and len(month) == 2 and month.isdigit()):
            raise ValueError("a month is YYYY-MM")
        parsed = cls(int(year), int(month))
        if not 1 <= parsed.month <= 12:
            raise ValueError("a month is YYYY-MM")
        return parsed

    @property
    def first(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last(self) -> date:
        return self.shift(1).first - timedelta(days=1)

    def shift(self, months: int) -> Month:
        index = self.year * 12 + (self.month - 1) + months
        return Month(index // 12, index % 12 + 1)

    def contains(self, day: date) -> bool:
        return self.first <= day <= self.last

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


# --- facts: one per citizen and thing, attributed to the organisations it belongs to --------


@dataclass(frozen=True, slots=True)
class Course:
    """A rehabilitation plan or referral received, and when training started (if it has)."""

    citizen: str
    orgs: frozenset[str]
    received: date
    started: date | None


@dataclass(frozen=True, slots=True)
class Plan:
    """A new rehabilitation plan (hospital plan or job-centre referral)."""

    citizen: str
    orgs: frozenset[str]
    authored: date


@dataclass(frozen=True, slots=True)
class Episode:
    """A sickness-benefit case (or a gradual return): from ``start`` to ``end`` (open if None)."""

    citizen: str
    orgs: frozenset[str]
    start: date
    end: date | None

    def active_in(self, month: Month) -> bool:
        return self.start <= month.last and (self.end is None or self.end >= month.first)


@dataclass(frozen=True, slots=True)
class Deadline:
    citizen: str
    orgs: frozenset[str]
    kind: str
    due: date
    state: str | None  # deadline-status: met, met-late, overdue, or None (open, not yet due)


@dataclass(frozen=True, slots=True)
class ScoreChange:
    citizen: str
    orgs: frozenset[str]
    instrument: str
    day: date
    start: Decimal
    end: Decimal


@dataclass(frozen=True, slots=True)
class Facts:
    courses: tuple[Course, ...] = ()
    plans: tuple[Plan, ...] = ()
    cases: tuple[Episode, ...] = ()
    gradual_returns: tuple[Episode, ...] = ()
    deadlines: tuple[Deadline, ...] = ()
    scores: tuple[ScoreChange, ...] = ()


# --- cells ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cell:
    """One number about a group of citizens. ``numerator`` for proportions; ``score`` is the
    figure itself (a count, a rate, days, a mean change)."""

    group: str
    stratum: str | None
    population: int
    numerator: int | None = None
    score: Decimal | None = None
    suppressed: bool = False
    reason: str | None = None

    def hidden(self, reason: str) -> Cell:
        return Cell(self.group, self.stratum, self.population, None, None, True, reason)

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.group, self.stratum)


@dataclass(frozen=True, slots=True)
class Figure:
    measure: str
    cells: tuple[Cell, ...] = field(default_factory=tuple)


def small(count: int) -> bool:
    return 0 < count < MIN_CELL


def _mine(orgs: frozenset[str], subject: frozenset[str]) -> bool:
    return not orgs.isdisjoint(subject)


def _citizens(items: Iterable[object]) -> int:
    return len({getattr(i, "citizen") for i in items})  # noqa: B009 - any fact type


def percentile(values: Sequence[int], q: int) -> Decimal:
    """Nearest-rank percentile (no interpolation: every figure is a value someone had)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return Decimal(ordered[rank - 1])


def median(values: Sequence[int]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return Decimal(ordered[middle])
    return (Decimal(ordered[middle - 1]) + Decimal(ordered[middle])) / 2


def _rate(numerator: int, denominator: int) -> Decimal:
    return (Decimal(numerator) / Decimal(denominator)).quantize(
        Decimal("0.001"), rounding=ROUND_HALF_EVEN
    )


def _count(group: str, citizens: int) -> Cell:
    return Cell(group, None, citizens, score=Decimal(citizens))


def _proportion(
    group: str, stratum: str | None, denominator: set[str], numerator: set[str]
) -> Cell:
    if not denominator:
        return Cell(group, stratum, 0, 0)
    return Cell(
        group, stratum, len(denominator), len(numerator), _rate(len(numerator), len(denominator))
    )


# --- the measures -----------------------------------------------------------------------------


def waiting_time(facts: Facts, month: Month, subject: frozenset[str]) -> list[Cell]:
    """Days from plan or referral received to training started, for courses started in the
    month: median and 90th percentile (one value per citizen: their first start)."""
    first: dict[str, int] = {}
    for course in facts.courses:
        if course.started is None or not month.contains(course.started):
            continue
        if not _mine(course.orgs, subject):
            continue
        days = (course.started - course.received).days
        first[course.citizen] = min(days, first.get(course.citizen, days))
    values = list(first.values())
    if not values:
        return [Cell("median", None, 0), Cell("p90", None, 0)]
    return [
        Cell("median", None, len(values), score=median(values)),
        Cell("p90", None, len(values), score=percentile(values, 90)),
    ]


def new_plans(facts: Facts, month: Month, subject: frozenset[str]) -> list[Cell]:
    chosen = [p for p in facts.plans if month.contains(p.authored) and _mine(p.orgs, subject)]
    return [_count("plans", _citizens(chosen))]


def on_benefit(facts: Facts, month: Month, subject: frozenset[str]) -> list[Cell]:
    chosen = [c for c in facts.cases if c.active_in(month) and _mine(c.orgs, subject)]
    return [_count("citizens", _citizens(chosen))]


def partial_returns(facts: Facts, month: Month, subject: frozenset[str]) -> list[Cell]:
    chosen = [g for g in facts.gradual_returns if g.active_in(month) and _mine(g.orgs, subject)]
    return [_count("citizens", _citizens(chosen))]


def inflow(facts: Facts, month: Month, subject: frozenset[str]) -> list[Cell]:
    chosen = [c for c in facts.cases if month.contains(c.start) and _mine(c.orgs, subject)]
    return [_count("inflow", _citizens(chosen))]


def outflow(facts: Facts, month: Month, subject: frozenset[str]) -> list[Cell]:
    chosen = [
        c
        for c in facts.cases
        if c.end is not None and month.contains(c.end) and _mine(c.orgs, subject)
    ]
    return [_count("outflow", _citizens(chosen))]


def deadlines_on_time(facts: Facts, month: Month, subject: frozenset[str]) -> list[Cell]:
    """Per deadline kind: of the deadlines due in the month, those met by their day. A
    citizen counts in the numerator when every deadline of that kind due was met on time."""
    due: dict[str, set[str]] = {}
    late: dict[str, set[str]] = {}
    for d in facts.deadlines:
        if not month.contains(d.due) or not _mine(d.orgs, subject):
            continue
        due.setdefault(d.kind, set()).add(d.citizen)
        if d.state != "met":
            late.setdefault(d.kind, set()).add(d.citizen)
    return [
        _proportion("on-time", kind, due[kind], due[kind] - late.get(kind, set()))
        for kind in sorted(due)
    ]


def score_change(facts: Facts, month: Month, subject: frozenset[str]) -> list[Cell]:
    """Per instrument: mean change from the start score to the latest score measured in the
    month (now minus start; the scale's direction says whether up is better)."""
    latest: dict[tuple[str, str], ScoreChange] = {}
    for s in facts.scores:
        if not month.contains(s.day) or not _mine(s.orgs, subject):
            continue
        key = (s.instrument, s.citizen)
        if key not in latest or latest[key].day <= s.day:
            latest[key] = s
    cells = []
    for instrument in sorted({k[0] for k in latest}):
        changes = [s.end - s.start for (i, _), s in latest.items() if i == instrument]
        mean = (sum(changes, Decimal(0)) / len(changes)).quantize(
            Decimal("0.01"), rounding=ROUND_HALF_EVEN
        )
        cells.append(Cell("change", instrument, len(changes), score=mean))
    return cells


def off_benefit_after_rehab(facts: Facts, month: Month, subject: frozenset[str]) -> list[Cell]:
    """Of the citizens whose training started three months before the month, those no longer
    on sickness benefit three months after their start (their case had ended by then)."""
    cohort_month = month.shift(-3)
    starts: dict[str, date] = {}
    for course in facts.courses:
        if course.started is None or not cohort_month.contains(course.started):
            continue
        if _mine(course.orgs, subject):
            starts[course.citizen] = min(course.started, starts.get(course.citizen, course.started))
    cases_of: dict[str, list[Episode]] = {}
    for case in facts.cases:
        if case.citizen in starts:
            cases_of.setdefault(case.citizen, []).append(case)
    off = set()
    for citizen, started in starts.items():
        checked = _three_months_after(started)
        cases = cases_of.get(citizen, [])
        if not any(c.start <= checked and (c.end is None or c.end >= checked) for c in cases):
            off.add(citizen)
    return [_proportion("off-benefit", None, set(starts), off)]


def _three_months_after(day: date) -> date:
    shifted = Month(day.year, day.month).shift(3)
    return date(shifted.year, shifted.month, min(day.day, shifted.last.day))


MEASURES = {
    "waiting-time": waiting_time,
    "new-rehab-plans": new_plans,
    "sickness-benefit-citizens": on_benefit,
    "partial-returns": partial_returns,
    "case-inflow": inflow,
    "case-outflow": outflow,
    "deadlines-on-time": deadlines_on_time,
    "score-change": score_change,
    "off-benefit-after-rehab": off_benefit_after_rehab,
}


# --- suppression ------------------------------------------------------------------------------


def suppress_small(cell: Cell) -> Cell:
    """A cell's own rule: its population, and a proportion's two parts, are 0 or >= MIN_CELL."""
    if cell.suppressed:
        return cell
    if small(cell.population):
        return cell.hidden("fewer than 5 citizens")
    if cell.numerator is not None and (
        small(cell.numerator) or small(cell.population - cell.numerator)
    ):
        return cell.hidden("fewer than 5 citizens with or without the attribute")
    return cell


def _small_flow_so_far(facts: Facts, month: Month, members: Sequence[frozenset[str]]) -> bool:
    """Whether any inflow up to ``month``, or outflow up to the month before, is a small cell
    for the subject or any member. stock(M) = stock(M-1) + inflow(M) - outflow(M-1) links
    every month to the next, so once a flow is hidden every later stock must be too: then
    no chain of published stocks and flows has a single unknown."""
    subjects = [*members, frozenset().union(*members)] if len(members) > 1 else list(members)
    for subject in subjects:
        started: dict[Month, set[str]] = {}
        ended: dict[Month, set[str]] = {}
        for case in facts.cases:
            if not _mine(case.orgs, subject):
                continue
            started.setdefault(Month(case.start.year, case.start.month), set()).add(case.citizen)
            if case.end is not None:
                ended.setdefault(Month(case.end.year, case.end.month), set()).add(case.citizen)
        if any(m <= month and small(len(c)) for m, c in started.items()):
            return True
        if any(m < month and small(len(c)) for m, c in ended.items()):
            return True
    return False


def evaluate(
    measure: str,
    facts: Facts,
    month: Month,
    members: Sequence[frozenset[str]],
) -> Figure:
    """The measure for the union of ``members`` (each one organisation's ids), suppressed.

    With more than one member (a municipality), a cell is also hidden when any member's own
    cell is hidden: the member could otherwise subtract its own report from this one.
    """
    compute = MEASURES[measure]
    subject = frozenset().union(*members)
    cells = [suppress_small(c) for c in compute(facts, month, subject)]
    if len(members) > 1:
        hidden_in_member: set[tuple[str, str | None]] = set()
        for member in members:
            for own in compute(facts, month, member):
                if suppress_small(own).suppressed:
                    hidden_in_member.add(own.key)
        cells = [
            c.hidden("a member organisation's own cell is suppressed")
            if c.key in hidden_in_member and not c.suppressed
            else c
            for c in cells
        ]
    if measure == "sickness-benefit-citizens" and _small_flow_so_far(facts, month, members):
        cells = [
            c if c.suppressed else c.hidden("an earlier small inflow or outflow would be revealed")
            for c in cells
        ]
    return Figure(measure, tuple(cells))


__all__ = [
    "MEASURES",
    "MIN_CELL",
    "Cell",
    "Course",
    "Deadline",
    "Episode",
    "Facts",
    "Figure",
    "Month",
    "Plan",
    "ScoreChange",
    "evaluate",
    "median",
    "percentile",
    "suppress_small",
]
