"""Typed readers for XML text: each returns the value or None and records why it failed.

Issue texts name the expected form, never the value that was sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from mappings._errors import IssueCollector

# Danish local time: GGOP sends date and time without an offset.
DANISH_TIME = ZoneInfo("Europe/Copenhagen")

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME_RE = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")
_DATETIME_RE = re.compile(
    # The offset as FHIR allows it: within ±14:00.
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))$"
)
_INTEGER_RE = re.compile(r"^[+-]?\d{1,9}$")
_DECIMAL_RE = re.compile(r"^[+-]?\d{1,9}([.,]\d{1,6})?$")
_ID_RE = re.compile(r"^\S{1,100}$")


def read_date(text: str | None, where: str, issues: IssueCollector) -> date | None:
    if text is None:
        return None
    if _DATE_RE.match(text):
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    issues.error(where, "must be a date (YYYY-MM-DD)")
    return None


def read_time(text: str | None, where: str, issues: IssueCollector) -> time | None:
    if text is None:
        return None
    match = _TIME_RE.match(text)
    if match:
        hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
        if hour < 24 and minute < 60 and second < 60:
            return time(hour, minute, second)
    issues.error(where, "must be a time of day (hh:mm)")
    return None


def read_datetime(text: str | None, where: str, issues: IssueCollector) -> datetime | None:
    """An ISO 8601 date and time with an offset (``Z`` or ``+01:00``)."""
    if text is None:
        return None
    if _DATETIME_RE.match(text):
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            pass
    issues.error(where, "must be a date and time with a UTC offset (YYYY-MM-DDThh:mm:ss+hh:mm)")
    return None


def local_datetime(day: date, clock: time | None) -> datetime | date:
    """Danish local date + time → an aware datetime; the date alone when there is no time."""
    if clock is None:
        return day
    return datetime.combine(day, clock, tzinfo=DANISH_TIME)


def read_integer(
    text: str | None, where: str, issues: IssueCollector, low: int, high: int
) -> int | None:
    if text is None:
        return None
    if _INTEGER_RE.match(text):
        value = int(text)
        if low <= value <= high:
            return value
        issues.error(where, f"must be between {low} and {high}")
        return None
    issues.error(where, "must be a whole number")
    return None


def read_decimal(
    text: str | None,
    where: str,
    issues: IssueCollector,
    low: Decimal | None = None,
    high: Decimal | None = None,
) -> Decimal | None:
    """A decimal number; a Danish decimal comma is accepted."""
    if text is None:
        return None
    if not _DECIMAL_RE.match(text):
        issues.error(where, "must be a decimal number")
        return None
    try:
        value = Decimal(text.replace(",", "."))
    except InvalidOperation:
        issues.error(where, "must be a decimal number")
        return None
    if (low is not None and value < low) or (high is not None and value > high):
        issues.error(where, f"must be between {low} and {high}")
        return None
    return value


def read_boolean(text: str | None, where: str, issues: IssueCollector) -> bool | None:
    if text is None:
        return None
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    issues.error(where, "must be true or false")
    return None


def read_code(
    text: str | None, where: str, issues: IssueCollector, allowed: Collection[str]
) -> str | None:
    if text is None:
        return None
    if text in allowed:
        return text
    issues.error(where, "must be one of: " + ", ".join(sorted(allowed)))
    return None


def fhir_decimal(value: Decimal) -> int | float:
    """A JSON number for a FHIR decimal (whole numbers stay integers: 15, not 15.0)."""
    return int(value) if value == value.to_integral_value() else float(value)


def fhir_instant(value: datetime) -> str:
    """Seconds precision; UTC as ``Z`` (the form the R4 models write back)."""
    text = value.isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def fhir_date_time(value: datetime | date) -> str:
    if isinstance(value, datetime):
        return fhir_instant(value)
    return value.isoformat()


def more_than_a_day_ahead(value: datetime, now: datetime) -> bool:
    return value - now > timedelta(days=1)


def read_checked(
    text: str | None,
    where: str,
    issues: IssueCollector,
    check: Callable[[str], bool],
    rule: str,
) -> str | None:
    """An identifier that must pass ``check``; ``rule`` says what it must be."""
    if text is None:
        return None
    if check(text):
        return text
    issues.error(where, rule)
    return None


def read_id(text: str | None, where: str, issues: IssueCollector) -> str | None:
    """A document or case id: printable, no spaces, at most 100 characters."""
    if text is None:
        return None
    if _ID_RE.match(text):
        return text
    issues.error(where, "must be an id of at most 100 characters without spaces")
    return None
