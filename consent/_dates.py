"""FHIR date/dateTime/instant strings as half-open UTC intervals, so partial dates compare right.

``2024`` is the whole year, ``2024-05-31`` the whole day; a value without a time zone is read as
Danish local time (Europe/Copenhagen, UTC if the zone database is missing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

try:
    LOCAL_ZONE: tzinfo = ZoneInfo("Europe/Copenhagen")
except ZoneInfoNotFoundError:  # pragma: no cover - only on hosts without tzdata
    LOCAL_ZONE = UTC

_DATE_TIME = re.compile(
    r"(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?"
)
MIN = datetime.min.replace(tzinfo=UTC)
MAX = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open time interval ``[start, end)``; unbounded sides are MIN / MAX."""

    start: datetime = MIN
    end: datetime = MAX

    def contains_instant(self, moment: datetime) -> bool:
        return self.start <= moment < self.end

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


def _add_months(moment: datetime, months: int) -> datetime:
    month0 = moment.month - 1 + months
    return moment.replace(year=moment.year + month0 // 12, month=month0 % 12 + 1)


def parse_interval(value: Any) -> Interval | None:
    """The interval a FHIR date/dateTime/instant string covers; None when it is not one."""
    if not isinstance(value, str):
        return None
    match = _DATE_TIME.fullmatch(value.strip())
    if match is None:
        return None
    parts = match.groupdict()
    zone: tzinfo = LOCAL_ZONE
    if parts["tz"] is not None:
        if parts["tz"] == "Z":
            zone = UTC
        else:
            sign = 1 if parts["tz"][0] == "+" else -1
            hours, minutes = int(parts["tz"][1:3]), int(parts["tz"][4:6])
            zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    try:
        if parts["H"] is not None:
            fraction = (parts["f"] or "0")[:6].ljust(6, "0")
            start = datetime(
                int(parts["y"]),
                int(parts["m"]),
                int(parts["d"]),
                int(parts["H"]),
                int(parts["M"]),
                int(parts["S"] or 0),
                int(fraction),
                tzinfo=zone,
            )
            step = timedelta(seconds=1) if parts["S"] is not None else timedelta(minutes=1)
            if parts["f"] is not None:
                step = timedelta(microseconds=1)
            return Interval(start.astimezone(UTC), (start + step).astimezone(UTC))
        year = int(parts["y"])
        month = int(parts["m"] or 1)
        day = int(parts["d"] or 1)
        start = datetime(year, month, day, tzinfo=zone)
    except ValueError:
        return None
    if parts["d"] is not None:
        end = start + timedelta(days=1)
    elif parts["m"] is not None:
        end = _add_months(start, 1)
    else:
        end = start.replace(year=year + 1) if year < 9999 else MAX
    return Interval(start.astimezone(UTC), end.astimezone(UTC) if end is not MAX else MAX)


def parse_period(value: Any) -> Interval | None:
    """A FHIR Period as an interval (start of ``start`` .. end of ``end``); None if malformed.

    A missing side is unbounded; an unparseable side makes the whole Period malformed.
    """
    if not isinstance(value, dict):
        return None
    start, end = MIN, MAX
    if "start" in value:
        parsed = parse_interval(value["start"])
        if parsed is None:
            return None
        start = parsed.start
    if "end" in value:
        parsed = parse_interval(value["end"])
        if parsed is None:
            return None
        end = parsed.end
    return Interval(start, end)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (naive values are taken to be UTC)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
