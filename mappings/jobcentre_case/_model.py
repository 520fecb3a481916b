"""The sickness-benefit case export as the adapter understands it (jobcentre-case.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from mappings._parties import OrganizationInfo
from mappings.deadlines import PaidPeriod


@dataclass(frozen=True, slots=True)
class Participant:
    role: str
    name: str | None


@dataclass(frozen=True, slots=True)
class FollowUp:
    day: date
    form: str
    type: str
    participants: tuple[Participant, ...]
    assessment: str | None
    actions: tuple[str, ...]
    note: str | None


@dataclass(frozen=True, slots=True)
class Period:
    start: date
    end: date
    hours_per_week: Decimal
    days: tuple[str, ...]  # FHIR day codes
    times: tuple[str, ...] = ()  # (1.1) "08:00-12:00", "formiddag", "eftermiddag"


@dataclass(frozen=True, slots=True)
class WorkedWeek:
    """(1.1) ``ArbejdetTimer``: hours actually worked in one ISO week, as the employer said."""

    week: str  # YYYY-Www
    monday: date
    hours: Decimal


@dataclass(frozen=True, slots=True)
class PartialReturn:
    start: date
    end: date | None
    periods: tuple[Period, ...]
    worked: tuple[WorkedWeek, ...] = ()


@dataclass(frozen=True, slots=True)
class Reassessment:
    day: date
    outcome: str
    legal_ground: str
    extension: str | None = None  # (1.1) @forlaengelse: the coded §27 ground


@dataclass(frozen=True, slots=True)
class Closing:
    day: date
    reason: str


@dataclass(frozen=True, slots=True)
class SicknessBenefitCase:
    case_id: str
    updated: datetime
    municipality: str
    jobcentre: OrganizationInfo
    caseworker_name: str | None
    caseworker_initials: str | None
    cpr: str
    citizen_name: str
    sick_listed_from: str
    employer: OrganizationInfo | None
    first_day_of_absence: date
    category: str | None
    category_set: date | None
    diagnosis_group: str | None
    follow_ups: tuple[FollowUp, ...]
    partial_returns: tuple[PartialReturn, ...]
    reassessment: Reassessment | None
    closing: Closing | None
    # (1.1) Udbetalinger; None when the export has none (the §24 date is then an estimate).
    payments: tuple[PaidPeriod, ...] | None = None
