"""The deadlines of the sickness-benefit and rehabilitation loop, as data (pure).

``rule_table()`` reads ``rules.toml`` (versioned; every rule cites its law); the helpers here
compute dates from it: ``due_after`` for the rules that run a number of days from an event
(a statement request sent, training started, discharge), ``reassessment_due`` for §24.
The case adapter (``mappings.jobcentre_case``) applies the case rules to an export.
"""

from __future__ import annotations

from datetime import date, timedelta

from mappings._codes import code_system
from mappings.deadlines._dates import add_months, end_of_month, end_of_week, start_of_week
from mappings.deadlines._paid import PaidPeriod, PaidWeeksResult, reassessment_due
from mappings.deadlines._rules import Rule, RuleTable, parse_rules, rule_table

DEADLINE_SYSTEM = code_system("deadline")
DEADLINE_STATUS_SYSTEM = code_system("deadline-status")

# deadline-status codes (Task.businessStatus), judged against today.
OVERDUE = "overdue"
MET = "met"
MET_LATE = "met-late"
DEADLINE_STATUSES: dict[str, str] = {
    OVERDUE: "Fristen er overskredet",
    MET: "Overholdt",
    MET_LATE: "Overholdt efter fristen",
}
OPEN_TASK_STATUSES = frozenset({"requested", "received", "accepted", "ready", "in-progress"})


def due_after(code: str, day: date) -> date:
    """The due date of a ``days-after`` rule counted from ``day``."""
    rule = rule_table()[code]
    if rule.kind != "days-after":
        raise ValueError(f"rule {code} is not counted in days from an event")
    return day + timedelta(days=rule.days)


def display(code: str) -> str:
    return rule_table()[code].display


def judge(due: date, today: date) -> str | None:
    """The businessStatus of an open deadline on ``today``: overdue once ``due`` has passed."""
    return OVERDUE if due < today else None


__all__ = [
    "DEADLINE_STATUSES",
    "DEADLINE_STATUS_SYSTEM",
    "DEADLINE_SYSTEM",
    "MET",
    "MET_LATE",
    "OPEN_TASK_STATUSES",
    "OVERDUE",
    "PaidPeriod",
    "PaidWeeksResult",
    "Rule",
    "RuleTable",
    "add_months",
    "display",
    "due_after",
    "end_of_month",
    "end_of_week",
    "judge",
    "parse_rules",
    "reassessment_due",
    "rule_table",
    "start_of_week",
]
