"""Calendar arithmetic of the deadline rules: weeks of absence, whole months, month ends."""

from __future__ import annotations

import calendar
from datetime import date, timedelta


def end_of_week(first_day: date, weeks: int) -> date:
    """The last day of week ``weeks`` of absence, the first day of absence being day 1."""
    return first_day + timedelta(days=7 * weeks - 1)


def start_of_week(first_day: date, week: int) -> date:
    """The first day of week ``week`` of absence."""
    return first_day + timedelta(days=7 * (week - 1))


def add_months(day: date, months: int) -> date:
    """``day`` plus whole months (negative: minus), clamped to the month's last day."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def end_of_month(day: date) -> date:
    return date(day.year, day.month, calendar.monthrange(day.year, day.month)[1])
