"""A filled form (statement or request) as the adapter understands it (gp-statement.md)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from mappings._parties import OrganizationInfo
from mappings.gp_statement._forms import FieldSpec, FormSpec

AnswerValue = str | date | bool | int | Decimal


@dataclass(frozen=True, slots=True)
class Answer:
    spec: FieldSpec
    value: AnswerValue
    system: str | None  # the code system of a code answer, when the field carries one


@dataclass(frozen=True, slots=True)
class Doctor:
    name: str
    authorisation: str | None


@dataclass(frozen=True, slots=True)
class FilledForm:
    form: FormSpec
    version: str
    form_id: str
    request_id: str | None  # AnmodningId: the request this statement answers
    issued: datetime
    sender: OrganizationInfo
    doctor: Doctor | None
    receiver: OrganizationInfo
    cpr: str
    citizen_name: str
    answers: tuple[Answer, ...]  # in the form's field order, repeats in document order

    def answers_for(self, link_id: str) -> list[Answer]:
        return [a for a in self.answers if a.spec.link_id == link_id]
