"""The forms the carrier may hold and their fields, from gp-statement.md "Field ids".

The Questionnaires in ``profiles/`` are the authority for the forms; this table is the
adapter's copy of the minimum gp-statement.md fixes, and must agree with them (same linkIds,
types and answer codes). Which fields are required is this table's decision (see REQUIRED_*).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from mappings._codes import ICD10_SYSTEM, SKS_D_SYSTEM, code_system, identifier_system

FieldKind = Literal["text", "date", "boolean", "integer", "decimal", "code"]

WORK_CAPACITY_SYSTEM = code_system("work-capacity")
EXPECTED_DURATION_SYSTEM = code_system("expected-duration")
FORM_SYSTEM = code_system("statement-form")

# Identifier systems: the filled form (QuestionnaireResponse) and the request (ServiceRequest);
# values are "<sender key>/<BlanketId>", sender key e.g. "yder:045612" or "kommune:0751".
FORM_ID_SYSTEM = identifier_system("form")
REQUEST_ID_SYSTEM = identifier_system("statement-request")

# "LAE285 3.1" / "MULIGHED 2.4": work capacity now.
WORK_CAPACITY: Mapping[str, str] = {
    "fuld": "Fuld arbejdsevne",
    "delvis": "Delvis arbejdsevne",
    "ingen": "Ingen arbejdsevne",
}
# "LAE285 3.4" / "MULIGHED 2.3": expected duration of the reduced work capacity.
EXPECTED_DURATION: Mapping[str, str] = {
    "under-4-uger": "Under 4 uger",
    "4-8-uger": "4-8 uger",
    "8-12-uger": "8-12 uger",
    "over-12-uger": "Over 12 uger",
    "uafklaret": "Uafklaret",
}

# Employment-relevant Observation codes ("Output": the same codes in every form).
WORK_CAPACITY_OBS = "work-capacity"
HOURS_PER_WEEK_OBS = "hours-per-week"
ACCOMMODATIONS_OBS = "accommodations"
EXPECTED_DURATION_OBS = "expected-duration"
RETURN_DATE_OBS = "return-to-work-date"
FUNCTIONAL_LIMITATIONS_OBS = "functional-limitations"
REASSESSMENT_DATE_OBS = "new-assessment-date"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    link_id: str
    kind: FieldKind
    required: bool = False
    repeats: bool = False
    codes: Mapping[str, str] | None = None  # a fixed answer list (our CodeSystem)
    code_system: str | None = None
    systems: frozenset[str] | None = None  # external code systems the field accepts
    observation: str | None = None  # the employment-relevant Observation it becomes
    diagnosis: bool = False


@dataclass(frozen=True, slots=True)
class FormSpec:
    code: str
    versions: frozenset[str]
    title: str
    fields: tuple[FieldSpec, ...]
    requests: str | None = None  # for a request: the form it asks for
    # MULIGHED: for the employer; a diagnosis anywhere is a fatal error.
    no_diagnoses: bool = False

    def field(self, link_id: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.link_id == link_id), None)


_DIAGNOSES = frozenset({SKS_D_SYSTEM, ICD10_SYSTEM})
_VERSIONS = frozenset({"2024"})

_REQUEST_FIELDS = (
    FieldSpec("1.1", "text"),
    FieldSpec("1.2", "text"),
    FieldSpec("1.3", "text"),
    FieldSpec("svarfrist", "date", required=True),
)

FORMS: Mapping[str, FormSpec] = {
    "LAE285": FormSpec(
        "LAE285",
        _VERSIONS,
        "LÆ 285 Attest til sygedagpengeopfølgning",
        (
            FieldSpec("1.1", "text"),
            FieldSpec("1.2", "text"),
            FieldSpec("1.3", "text"),
            FieldSpec("2.1", "code", repeats=True, systems=_DIAGNOSES, diagnosis=True),
            FieldSpec("2.2", "text"),
            FieldSpec(
                "3.1",
                "code",
                required=True,
                codes=WORK_CAPACITY,
                code_system=WORK_CAPACITY_SYSTEM,
                observation=WORK_CAPACITY_OBS,
            ),
            FieldSpec("3.2", "decimal", observation=HOURS_PER_WEEK_OBS),
            FieldSpec("3.3", "text", observation=ACCOMMODATIONS_OBS),
            FieldSpec(
                "3.4",
                "code",
                codes=EXPECTED_DURATION,
                code_system=EXPECTED_DURATION_SYSTEM,
                observation=EXPECTED_DURATION_OBS,
            ),
            FieldSpec("3.5", "date", observation=RETURN_DATE_OBS),
            FieldSpec("4.1", "text"),
        ),
    ),
    "LAE125": FormSpec(
        "LAE125",
        _VERSIONS,
        "LÆ 125 Statusattest",
        (
            FieldSpec(
                "2.1", "code", required=True, repeats=True, systems=_DIAGNOSES, diagnosis=True
            ),
            FieldSpec("2.2", "text"),
            FieldSpec("2.3", "text"),
            FieldSpec("2.4", "text"),
            FieldSpec("4.1", "text"),
        ),
    ),
    "MULIGHED": FormSpec(
        "MULIGHED",
        _VERSIONS,
        "Mulighedserklæring, del 2",
        (
            FieldSpec("2.1", "text", observation=FUNCTIONAL_LIMITATIONS_OBS),
            FieldSpec("2.2", "text", observation=ACCOMMODATIONS_OBS),
            FieldSpec(
                "2.3",
                "code",
                codes=EXPECTED_DURATION,
                code_system=EXPECTED_DURATION_SYSTEM,
                observation=EXPECTED_DURATION_OBS,
            ),
            FieldSpec(
                "2.4",
                "code",
                required=True,
                codes=WORK_CAPACITY,
                code_system=WORK_CAPACITY_SYSTEM,
                observation=WORK_CAPACITY_OBS,
            ),
            FieldSpec("2.5", "decimal", observation=HOURS_PER_WEEK_OBS),
            FieldSpec("2.6", "date", observation=REASSESSMENT_DATE_OBS),
        ),
        no_diagnoses=True,
    ),
    "LAE285-ANMODNING": FormSpec(
        "LAE285-ANMODNING",
        _VERSIONS,
        "Anmodning om LÆ 285",
        _REQUEST_FIELDS,
        requests="LAE285",
    ),
    "LAE125-ANMODNING": FormSpec(
        "LAE125-ANMODNING",
        _VERSIONS,
        "Anmodning om LÆ 125",
        _REQUEST_FIELDS,
        requests="LAE125",
    ),
}
