"""Sygedagpengeloven §24: the day the reassessment falls due, counted from paid periods (pure).

The reassessment is due at the end of the month in which benefit (or a refund to the
employer) has been paid for more than ``rule.weeks`` weeks within the preceding
``rule.within_months`` calendar months. Counted are the days of every paid period of an art in
``rule.counted`` (reduced benefit counts in full; maternity leave never counts), earlier sick
leave included, but never a day of this case's employer period (30 days for an employee, two
weeks for the self-employed, from the first day of absence). A period without an end is still
being paid. "Within the preceding months" is the rolling window from the day after the same
date ``within_months`` months earlier up to and including the day itself.

Without payment data the gateway estimates: paid every day from the end of the employer period
on, and the result says it is an estimate.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from datetime import date, timedelta

from mappings.deadlines._dates import add_months, end_of_month
from mappings.deadlines._rules import Rule

# How far ahead an open period is projected (a case longer than this has other deadlines).
HORIZON_DAYS = 3 * 366


@dataclass(frozen=True, slots=True)
class PaidPeriod:
    """One ``Udbetalinger/Periode``: ``end`` None means still paid."""

    start: date
    end: date | None
    art: str


@dataclass(frozen=True, slots=True)
class PaidWeeksResult:
    threshold_day: date  # the first day on which more than the weeks have been paid
    due: date
    estimated: bool
    counted_days: int  # paid days inside the window on ``threshold_day``


def employer_period_days(rule: Rule, sick_listed_from: str) -> int:
    return int(rule.employer_period_days.get(sick_listed_from, 0))


def reassessment_due(
    rule: Rule,
    *,
    first_day: date,
    sick_listed_from: str,
    payments: tuple[PaidPeriod, ...] | None,
) -> PaidWeeksResult | None:
    """The §24 reassessment date, or None when the paid periods never pass the limit."""
    employer_days = employer_period_days(rule, sick_listed_from)
    employer_end = first_day + timedelta(days=employer_days)  # first day that may count
    estimated = not payments
    if estimated:
        periods: tuple[PaidPeriod, ...] = (PaidPeriod(employer_end, None, "estimate"),)
        counted_arts = frozenset({"estimate"})
    else:
        assert payments is not None  # noqa: S101 - not estimated means given
        periods = payments
        counted_arts = rule.counted
    horizon = max([first_day, *(p.start for p in periods)]) + timedelta(days=HORIZON_DAYS)
    days: set[date] = set()
    for period in periods:
        if period.art not in counted_arts:
            continue
        day, last = period.start, min(period.end or horizon, horizon)
        while day <= last:
            if not first_day <= day < employer_end:
                days.add(day)
            day += timedelta(days=1)
    ordered = sorted(days)
    limit = rule.weeks * 7
    for index, day in enumerate(ordered):
        if day < first_day:
            continue
        window_start = add_months(day, -rule.within_months) + timedelta(days=1)
        inside = index + 1 - bisect.bisect_left(ordered, window_start)
        if inside > limit:
            due = end_of_month(day) if rule.end_of_month else day
            return PaidWeeksResult(day, due, estimated, inside)
    return None
