"""The rehabilitation plan as the adapter understands it (rehab-plan-ggop.md, "Input")."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from mappings._parties import Address, Contact, OrganizationInfo, PersonInfo


@dataclass(frozen=True, slots=True)
class Clinician:
    """SignedBy or CoWriter."""

    name: PersonInfo
    title: str | None
    authorisation: str | None


@dataclass(frozen=True, slots=True)
class Diagnosis:
    code: str
    text: str | None
    primary: bool


@dataclass(frozen=True, slots=True)
class IcfClassification:
    code: str
    gradient: int  # 0 no problem … 4 complete problem
    text: str | None


@dataclass(frozen=True, slots=True)
class PlanPatient:
    cpr: str
    name: PersonInfo
    address: Address | None
    telephone: str | None
    occupation: str | None


@dataclass(frozen=True, slots=True)
class RehabPlan:
    envelope_id: str
    sent: datetime | date
    letter_id: str
    authorised: datetime | date
    sender: OrganizationInfo
    receiver: OrganizationInfo
    signed_by: Clinician
    co_writers: tuple[Clinician, ...]
    patient: PlanPatient
    relatives: tuple[Contact, ...]
    consent_informed: bool
    plan_type: str
    diagnoses: tuple[Diagnosis, ...]  # the primary first
    health_summary: str
    ability_summary: str
    ability_extended: str | None
    icf: tuple[IcfClassification, ...]
    need_and_potential: str
    deadline: date | None
    deadline_text: str | None
    admitted: date
    discharged: date
    ambulatory_control_date: date | None
    ambulatory_control_text: str | None
    contact_municipality: str | None
    health_care_team: str | None
    journal_excerpt: str | None
