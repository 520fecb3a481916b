"""The law's deadlines of a sickness-benefit case, decided from one export (pure).

The rules and their numbers are data (``mappings/deadlines/rules.toml``, each citing its
paragraph); this module applies the case rules to an export. Every export is the whole case as
of ``Opdateret``, so each deadline's state follows from it and from ``today``: ``requested``
(nothing done yet), ``in-progress`` (some of several follow-ups held), ``completed`` (what the
law asks for is recorded; ``output`` points at it) or ``cancelled`` (the case closed first).
Whether an open deadline is overdue is judged against ``today`` (the gateway's clock when the
export is mapped; the deadline job keeps it true afterwards, ``gateway/coordination``), a
closed case's against its closing day; met or met late against the day it was met.

Weeks are counted from the first day of absence (day 1): "the end of week N" is
``ForsteFravaersdag + 7*N - 1`` days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from mappings.deadlines import (
    DEADLINE_STATUS_SYSTEM,
    DEADLINE_STATUSES,
    DEADLINE_SYSTEM,
    MET,
    MET_LATE,
    OVERDUE,
    Rule,
    add_months,
    end_of_week,
    reassessment_due,
    rule_table,
    start_of_week,
)
from mappings.jobcentre_case._model import SicknessBenefitCase

CONTACT = "contact"
FIRST_FOLLOW_UP = "first-follow-up"
FOLLOW_UPS_SIX_MONTHS = "follow-ups-six-months"
FOLLOW_UPS_TWELVE_MONTHS = "follow-ups-twelve-months"
BROAD_ASSESSMENT = "broad-assessment"
REASSESSMENT = "reassessment"
EXTENSION_LIMIT = "extension-limit"
# The request Task of gp_statement carries this code too (gp-statement.md, "a request").
STATEMENT_DUE = "statement-due"
CASE_RULES = (
    CONTACT,
    FIRST_FOLLOW_UP,
    FOLLOW_UPS_SIX_MONTHS,
    FOLLOW_UPS_TWELVE_MONTHS,
    BROAD_ASSESSMENT,
    REASSESSMENT,
    EXTENSION_LIMIT,
)

# code → (display, the law it comes from): the rule table, for the Task's code and note.
DEADLINES: dict[str, tuple[str, str]] = {
    code: (rule.display, rule.law) for code, rule in rule_table().rules.items()
}
ESTIMATE_NOTE = (
    "Anslået: eksporten har ingen udbetalinger; regnet fra arbejdsgiverperiodens udløb "
    "med sammenhængende udbetaling"
)

__all__ = [
    "DEADLINES",
    "DEADLINE_STATUSES",
    "DEADLINE_STATUS_SYSTEM",
    "DEADLINE_SYSTEM",
    "ESTIMATE_NOTE",
    "MET",
    "MET_LATE",
    "OVERDUE",
    "STATEMENT_DUE",
    "Deadline",
    "add_months",
    "case_deadlines",
    "end_of_week",
]


@dataclass(frozen=True, slots=True)
class Deadline:
    """One deadline: what, from when, due when, its state, and what fulfilled it.

    ``follow_ups`` are indexes into ``case.follow_ups``; ``reassessment`` says the case's
    Revurdering fulfilled it, ``closing`` that the case's end did; ``estimated`` that the
    date is an estimate (no payment data).
    """

    code: str
    start: date
    due: date
    status: str
    business_status: str | None
    follow_ups: tuple[int, ...] = ()
    reassessment: bool = False
    closing: bool = False
    estimated: bool = False


def _state(
    due: date,
    done_on: date | None,
    complete: bool,
    partly: bool,
    case: SicknessBenefitCase,
    today: date,
) -> tuple[str, str | None]:
    if complete:
        assert done_on is not None  # noqa: S101 - complete means a day is known
        return "completed", MET if done_on <= due else MET_LATE
    as_of = case.closing.day if case.closing is not None else today
    late = OVERDUE if due < as_of else None
    if case.closing is not None:
        return "cancelled", late
    return ("in-progress" if partly else "requested"), late


def _held(case: SicknessBenefitCase) -> list[int]:
    first = case.first_day_of_absence
    return sorted(
        (i for i, f in enumerate(case.follow_ups) if f.day >= first),
        key=lambda i: (case.follow_ups[i].day, i),
    )


def _weeks(rule: Rule, case: SicknessBenefitCase, held: list[int], today: date) -> Deadline:
    first = case.first_day_of_absence
    start = start_of_week(first, rule.from_week)
    due = end_of_week(first, rule.due_end_of_week)
    if rule.needs_assessment:
        done = [
            i
            for i in held
            if case.follow_ups[i].day >= start and case.follow_ups[i].assessment is not None
        ][:1]
    else:
        done = held[:1]
    day = case.follow_ups[done[0]].day if done else None
    status, business = _state(due, day, bool(done), False, case, today)
    return Deadline(rule.code, start, due, status, business, tuple(done))


def _follow_up_count(
    rule: Rule, case: SicknessBenefitCase, held: list[int], today: date
) -> Deadline:
    first = case.first_day_of_absence
    start = add_months(first, rule.from_months)
    due = add_months(first, rule.to_months) - timedelta(days=1)
    since = [i for i in held if case.follow_ups[i].day >= start]
    within = [i for i in since if case.follow_ups[i].day <= due][: rule.count]
    if len(within) < rule.count:
        # Held after the window: the requirement was met late, if at all.
        within = since[: rule.count]
    complete = len(within) == rule.count
    day = case.follow_ups[within[-1]].day if complete else None
    status, business = _state(due, day, complete, bool(within), case, today)
    return Deadline(rule.code, start, due, status, business, tuple(within))


def _reassessment(rule: Rule, case: SicknessBenefitCase, today: date) -> Deadline | None:
    result = reassessment_due(
        rule,
        first_day=case.first_day_of_absence,
        sick_listed_from=case.sick_listed_from,
        payments=case.payments,
    )
    reassessed = case.reassessment
    if result is None and reassessed is None:
        return None  # never paid for more than the weeks: no reassessment falls due
    if result is not None:
        due = result.due
    else:
        assert reassessed is not None  # noqa: S101 - checked above
        due = reassessed.day
    day = reassessed.day if reassessed is not None else None
    status, business = _state(due, day, reassessed is not None, False, case, today)
    return Deadline(
        rule.code,
        case.first_day_of_absence,
        due,
        status,
        business,
        reassessment=reassessed is not None,
        estimated=result is not None and result.estimated,
    )


def _extension_limit(rule: Rule, case: SicknessBenefitCase, today: date) -> Deadline | None:
    reassessed = case.reassessment
    if reassessed is None or reassessed.extension not in rule.limit_weeks:
        return None
    due = end_of_week(reassessed.day, rule.limit_weeks[reassessed.extension])
    closing = case.closing
    if closing is not None:
        return Deadline(
            rule.code,
            reassessed.day,
            due,
            "completed",
            MET if closing.day <= due else MET_LATE,
            closing=True,
        )
    return Deadline(rule.code, reassessed.day, due, "requested", OVERDUE if due < today else None)


def case_deadlines(case: SicknessBenefitCase, today: date) -> list[Deadline]:
    """The deadlines that apply to ``case`` as this export shows it, judged on ``today``."""
    table = rule_table()
    held = _held(case)
    out: list[Deadline] = []
    for code in CASE_RULES:
        rule = table[code]
        deadline: Deadline | None
        if rule.kind == "weeks":
            deadline = _weeks(rule, case, held, today)
        elif rule.kind == "follow-up-count":
            if case.category not in rule.categories:
                continue
            deadline = _follow_up_count(rule, case, held, today)
        elif rule.kind == "paid-weeks":
            deadline = _reassessment(rule, case, today)
        elif rule.kind == "extension-limit":
            deadline = _extension_limit(rule, case, today)
        else:  # pragma: no cover - the table's case rules are of the kinds above
            raise ValueError(f"rule {code}: kind {rule.kind} is not a case rule")
        if deadline is not None:
            out.append(deadline)
    return out
