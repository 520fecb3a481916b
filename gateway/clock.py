"""The gateway's one clock: what "today" is for deadlines, and the seam tests turn.

Everything that judges a deadline asks a ``Clock``; the app holds one (``app.state.clock``),
the CLI makes one, and tests pass a ``ManualClock`` and move it forward instead of sleeping.
"Today" is the calendar day in Denmark, where the law's deadlines fall.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

DANISH_TIME = ZoneInfo("Europe/Copenhagen")


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to (tests, demonstrations)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("a ManualClock needs an aware datetime")
        self._now = start

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("a ManualClock needs an aware datetime")
        self._now = moment


def today(clock: Clock) -> date:
    """The day in Denmark according to ``clock``."""
    return clock.now().astimezone(DANISH_TIME).date()


SYSTEM_CLOCK = SystemClock()

__all__ = ["DANISH_TIME", "SYSTEM_CLOCK", "Clock", "ManualClock", "SystemClock", "today"]
