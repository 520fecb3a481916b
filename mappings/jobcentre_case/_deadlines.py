"""The law's deadlines of a sickness-benefit case, decided from one export (pure).

Every export is the whole case as of ``Opdateret``, so each deadline's state follows from it:
``requested`` (nothing done yet), ``in-progress`` (some of several follow-ups held),
``completed`` (what the law asks for is recorded; ``output`` points at it) or ``cancelled``
(the case closed first). Whether a deadline is overdue or was met late is judged against the
export's own date (or the closing day), never against the clock of the gateway: the same
export always gives the same Tasks, so re-ingesting it changes nothing.

Weeks are counted from the first day of absence (day 1): "the end of week N" is
``ForsteFravaersdag + 7*N - 1`` days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from mappings._codes import code_system
from mappings.jobcentre_case._model import SicknessBenefitCase

DEADLINE_SYSTEM = code_system("deadline")
DEADLINE_STATUS_SYSTEM = code_system("deadline-status")

FIRST_FOLLOW_UP = "first-follow-up"
FOLLOW_UPS_SIX_MONTHS = "follow-ups-six-months"
REASSESSMENT = "reassessment"
# The request Task of gp_statement carries this code too (gp-statement.md, "a request").
STATEMENT_DUE = "statement-due"

# code → (display, where the rule comes from). DOMAIN.md "Documents" 3 and "Rules that shape
# the software"; jobcentre-case.md "Output", row "the law's deadlines".
DEADLINES: dict[str, tuple[str, str]] = {
    FIRST_FOLLOW_UP: (
        "Første opfølgningssamtale inden udgangen af 8. fraværsuge",
        "DOMAIN.md: the first follow-up before the end of week 8 of absence",
    ),
    FOLLOW_UPS_SIX_MONTHS: (
        "Fire opfølgningssamtaler inden for seks måneder (kategori 2 og 3)",
        "DOMAIN.md: at least three more within six months; jobcentre-case.md: four "
        "follow-ups within six months for categories 2-3",
    ),
    REASSESSMENT: (
        "Revurdering efter 22 ugers sygedagpenge",
        "DOMAIN.md: reassessment after 22 weeks of benefit (revurdering)",
    ),
    STATEMENT_DUE: (
        "Lægeerklæring inden svarfristen",
        "gp-statement.md: a request (anmodning) and its answer, with a due date (svarfrist)",
    ),
}
# deadline-status codes (Task.businessStatus): judged against the export's date.
OVERDUE = "overdue"
MET = "met"
MET_LATE = "met-late"
DEADLINE_STATUSES: dict[str, str] = {
    OVERDUE: "Fristen er overskredet",
    MET: "Overholdt",
    MET_LATE: "Overholdt efter fristen",
}

FIRST_FOLLOW_UP_WEEKS = 8
REASSESSMENT_WEEKS = 22
SIX_MONTHS = 6
FOLLOW_UPS_REQUIRED = 4
CATEGORIES_WITH_SIX_MONTH_PLAN = frozenset({"2", "3"})


@dataclass(frozen=True, slots=True)
class Deadline:
    """One deadline: what, from when, due when, its state, and what fulfilled it.

    ``follow_ups`` are indexes into ``case.follow_ups``; ``reassessment`` says the case's
    Revurdering fulfilled it.
    """

    code: str
    start: date
    due: date
    status: str
    business_status: str | None
    follow_ups: tuple[int, ...] = ()
    reassessment: bool = False


def end_of_week(first_day: date, weeks: int) -> date:
    return first_day + timedelta(days=7 * weeks - 1)


def add_months(day: date, months: int) -> date:
    """``day`` plus whole months, clamped to the month's last day (31 Aug + 6 → 28/29 Feb)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for candidate in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise ValueError("unreachable")  # pragma: no cover


def _state(
    due: date, done_on: date | None, complete: bool, partly: bool, case: SicknessBenefitCase
) -> tuple[str, str | None]:
    as_of = case.closing.day if case.closing is not None else case.updated.date()
    if complete:
        assert done_on is not None  # noqa: S101 - complete means a day is known
        return "completed", MET if done_on <= due else MET_LATE
    late = OVERDUE if due < as_of else None
    if case.closing is not None:
        return "cancelled", late
    return ("in-progress" if partly else "requested"), late


def case_deadlines(case: SicknessBenefitCase) -> list[Deadline]:
    """The deadlines that apply to ``case`` as this export shows it."""
    first = case.first_day_of_absence
    held = sorted(
        (i for i, f in enumerate(case.follow_ups) if f.day >= first),
        key=lambda i: (case.follow_ups[i].day, i),
    )
    out: list[Deadline] = []

    due = end_of_week(first, FIRST_FOLLOW_UP_WEEKS)
    done = held[:1]
    day = case.follow_ups[done[0]].day if done else None
    status, business = _state(due, day, bool(done), False, case)
    out.append(Deadline(FIRST_FOLLOW_UP, first, due, status, business, tuple(done)))

    if case.category in CATEGORIES_WITH_SIX_MONTH_PLAN:
        due = add_months(first, SIX_MONTHS) - timedelta(days=1)
        within = [i for i in held if case.follow_ups[i].day <= due][:FOLLOW_UPS_REQUIRED]
        if len(within) < FOLLOW_UPS_REQUIRED:
            # Held after the six months: the requirement was met late, if at all.
            within = held[:FOLLOW_UPS_REQUIRED]
        complete = len(within) == FOLLOW_UPS_REQUIRED
        day = case.follow_ups[within[-1]].day if complete else None
        status, business = _state(due, day, complete, bool(within), case)
        out.append(Deadline(FOLLOW_UPS_SIX_MONTHS, first, due, status, business, tuple(within)))

    due = end_of_week(first, REASSESSMENT_WEEKS)
    reassessed = case.reassessment
    day = reassessed.day if reassessed is not None else None
    status, business = _state(due, day, reassessed is not None, False, case)
    out.append(
        Deadline(REASSESSMENT, first, due, status, business, reassessment=reassessed is not None)
    )
    return out
