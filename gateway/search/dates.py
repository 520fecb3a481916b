"""FHIR date/dateTime/instant strings as the half-open UTC range they cover."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

MIN_INSTANT = datetime(1, 1, 1)
MAX_INSTANT = datetime(9999, 12, 31, 23, 59, 59)

# A time-zone offset as FHIR allows it: -14:00 … +14:00 (the dateTime regex of R4).
UTC_OFFSET = r"Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00)"
_OFFSET_RE = re.compile(rf"(?:{UTC_OFFSET})$")
_DATE_RE = re.compile(
    r"^(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2})(?::(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    rf"(?P<tz>{UTC_OFFSET})?)?)?)?$"
)


def has_valid_offset(value: str) -> bool:
    """True when a date-time string ends in ``Z`` or an offset within ±14:00."""
    return bool(_OFFSET_RE.search(value))


def _add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    return moment.replace(year=moment.year + month_index // 12, month=month_index % 12 + 1)


def date_range(value: str) -> tuple[datetime, datetime]:
    """Return ``[low, high)`` in naive UTC for a FHIR date, dateTime or instant.

    Raises ValueError for anything else. A value without a zone is taken as UTC.
    """
    match = _DATE_RE.match(value.strip())
    if match is None:
        raise ValueError("not a FHIR date, dateTime or instant")
    parts = match.groupdict()
    year = int(parts["year"])
    month = int(parts["month"] or 1)
    day = int(parts["day"] or 1)
    if parts["hour"] is None:
        low = datetime(year, month, day)
        if parts["day"]:
            return low, low + timedelta(days=1)
        if parts["month"]:
            return low, _add_months(low, 1)
        return low, low.replace(year=year + 1) if year < 9999 else MAX_INSTANT
    hour, minute = int(parts["hour"]), int(parts["minute"])
    second = int(parts["second"] or 0)
    fraction = parts["fraction"] or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    moment = datetime(year, month, day, hour, minute, second, micro)
    tz = parts["tz"]
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6]))
        moment = moment - sign * offset
    if fraction:
        step = timedelta(microseconds=10 ** max(0, 6 - (len(fraction) - 1)))
    elif parts["second"] is not None:
        step = timedelta(seconds=1)
    else:
        step = timedelta(minutes=1)
    return moment, moment + step


def period_range(period: dict[str, str]) -> tuple[datetime, datetime]:
    start = period.get("start")
    end = period.get("end")
    low = date_range(start)[0] if start else MIN_INSTANT
    high = date_range(end)[1] if end else MAX_INSTANT
    return low, high


def utc_now() -> datetime:
    """Now as naive UTC with millisecond precision (what the store keeps)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def format_instant(moment: datetime) -> str:
    """Naive UTC → FHIR instant with milliseconds and an explicit zone."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"
