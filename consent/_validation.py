"""Our Consent profile rules, checked on create/update (base R4 validation is ``profiles/``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from consent._codes import (
    CITIZEN_PORTAL,
    CONSENT_SCOPE_SYSTEM,
    DATA_CATEGORIES,
    DATA_CATEGORY_SYSTEM,
    PARTICIPANT_KIND_SYSTEM,
    PARTICIPANT_KINDS,
    PARTICIPATION_TYPE_SYSTEM,
    PATIENT_PRIVACY,
    PURPOSES,
    RECIPIENT_ROLE,
    RESOURCE_TYPES_SYSTEM,
)
from consent._dates import parse_interval, parse_period
from consent._resources import local_reference

_STATUSES = frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"})
_RESOURCE_TYPE = re.compile(r"[A-Z][A-Za-z]+")


@dataclass(frozen=True, slots=True)
class ConsentIssue:
    """One problem: where (a FHIRPath expression), what (no health data), how bad."""

    expression: str
    message: str
    severity: Literal["error", "warning"] = "error"


def _codings(value: Any) -> list[Mapping[str, Any]]:
    if not isinstance(value, Mapping):
        return []
    coding = value.get("coding")
    return [c for c in coding if isinstance(c, Mapping)] if isinstance(coding, list) else []


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _check_period(value: Any, path: str, issues: list[ConsentIssue]) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        issues.append(ConsentIssue(path, "must be a Period"))
        return
    for side in ("start", "end"):
        if side in value and parse_interval(value[side]) is None:
            issues.append(ConsentIssue(f"{path}.{side}", "is not a FHIR dateTime"))
    period = parse_period(value)
    if period is not None and period.end <= period.start:
        issues.append(ConsentIssue(path, "ends before it starts"))


def _check_actor(actor: Any, path: str, issues: list[ConsentIssue]) -> None:
    if not isinstance(actor, Mapping):
        issues.append(ConsentIssue(path, "must be an object"))
        return
    roles = _codings(actor.get("role"))
    if not any(
        c.get("system") == PARTICIPATION_TYPE_SYSTEM and c.get("code") == RECIPIENT_ROLE
        for c in roles
    ):
        issues.append(
            ConsentIssue(f"{path}.role", f"must be {PARTICIPATION_TYPE_SYSTEM}#{RECIPIENT_ROLE}")
        )
    reference = actor.get("reference")
    if not isinstance(reference, Mapping):
        issues.append(ConsentIssue(f"{path}.reference", "is required"))
        return
    local = local_reference(reference.get("reference"))
    identifier = reference.get("identifier")
    if local is not None:
        if not local.startswith("Organization/"):
            issues.append(
                ConsentIssue(f"{path}.reference.reference", "must reference an Organization")
            )
        return
    if isinstance(identifier, Mapping):
        if identifier.get("system") != PARTICIPANT_KIND_SYSTEM:
            issues.append(
                ConsentIssue(
                    f"{path}.reference.identifier.system", f"must be {PARTICIPANT_KIND_SYSTEM}"
                )
            )
        elif identifier.get("value") not in PARTICIPANT_KINDS:
            issues.append(
                ConsentIssue(f"{path}.reference.identifier.value", "is not a participant kind")
            )
        return
    issues.append(
        ConsentIssue(
            f"{path}.reference",
            "must reference an Organization or carry a participant-kind identifier",
        )
    )


def _check_codes(
    values: Any, path: str, allowed: Mapping[str, str], issues: list[ConsentIssue]
) -> None:
    for index, coding in enumerate(_list(values)):
        here = f"{path}[{index}]"
        if not isinstance(coding, Mapping):
            issues.append(ConsentIssue(here, "must be a Coding"))
            continue
        code, system = coding.get("code"), coding.get("system")
        if not isinstance(code, str) or code not in allowed:
            issues.append(ConsentIssue(f"{here}.code", "is not a known code"))
        elif system != allowed[code]:
            issues.append(ConsentIssue(f"{here}.system", f"must be {allowed[code]}"))


_CATEGORY_CODES = {code: DATA_CATEGORY_SYSTEM for code in DATA_CATEGORIES}


def _check_provision(provision: Any, path: str, issues: list[ConsentIssue], *, top: bool) -> None:
    if not isinstance(provision, Mapping):
        issues.append(ConsentIssue(path, "must be an object"))
        return
    kind = provision.get("type")
    if top and kind != "permit":
        issues.append(ConsentIssue(f"{path}.type", "must be 'permit' on the top provision"))
    elif not top and kind not in ("permit", "deny"):
        issues.append(ConsentIssue(f"{path}.type", "must be 'permit' or 'deny'"))
    actors = _list(provision.get("actor"))
    if top and not actors:
        issues.append(ConsentIssue(f"{path}.actor", "must name who may read"))
    for index, actor in enumerate(actors):
        _check_actor(actor, f"{path}.actor[{index}]", issues)
    _check_codes(provision.get("purpose"), f"{path}.purpose", PURPOSES, issues)
    _check_codes(provision.get("securityLabel"), f"{path}.securityLabel", _CATEGORY_CODES, issues)
    for index, concept in enumerate(_list(provision.get("class"))):
        here = f"{path}.class[{index}]"
        if not isinstance(concept, Mapping) or concept.get("system") != RESOURCE_TYPES_SYSTEM:
            issues.append(ConsentIssue(f"{here}.system", f"must be {RESOURCE_TYPES_SYSTEM}"))
        elif not isinstance(concept.get("code"), str) or not _RESOURCE_TYPE.fullmatch(
            concept["code"]
        ):
            issues.append(ConsentIssue(f"{here}.code", "is not a resource type"))
    if "code" in provision:
        issues.append(ConsentIssue(f"{path}.code", "is not supported; use securityLabel"))
    _check_period(provision.get("period"), f"{path}.period", issues)
    _check_period(provision.get("dataPeriod"), f"{path}.dataPeriod", issues)
    for index, child in enumerate(_list(provision.get("provision"))):
        _check_provision(child, f"{path}.provision[{index}]", issues, top=False)


def validate_consent(
    consent: Mapping[str, Any], *, submitted_by_kind: str | None = None
) -> list[ConsentIssue]:
    """Issues against our Consent profile; an empty list means it conforms.

    ``submitted_by_kind``: the kind of the participant writing it; the citizen portal is itself
    the source, everyone else must attach (``sourceAttachment``) or reference the signed form.
    """
    issues: list[ConsentIssue] = []
    if consent.get("resourceType") != "Consent":
        return [ConsentIssue("Consent", "resourceType must be Consent")]
    if consent.get("status") not in _STATUSES:
        issues.append(ConsentIssue("Consent.status", "is missing or not a Consent status"))
    if not any(
        c.get("system") == CONSENT_SCOPE_SYSTEM and c.get("code") == PATIENT_PRIVACY
        for c in _codings(consent.get("scope"))
    ):
        issues.append(
            ConsentIssue("Consent.scope", f"must be {CONSENT_SCOPE_SYSTEM}#{PATIENT_PRIVACY}")
        )
    patient = consent.get("patient")
    local = local_reference(patient.get("reference")) if isinstance(patient, Mapping) else None
    if local is None or not local.startswith("Patient/"):
        issues.append(ConsentIssue("Consent.patient", "must reference a Patient"))
    if parse_interval(consent.get("dateTime")) is None:
        issues.append(ConsentIssue("Consent.dateTime", "is missing or not a FHIR dateTime"))
    has_source = "sourceAttachment" in consent or "sourceReference" in consent
    if not has_source and submitted_by_kind != CITIZEN_PORTAL:
        issues.append(
            ConsentIssue(
                "Consent.source",
                "sourceAttachment (or sourceReference) is required unless the citizen portal "
                "submits the consent",
            )
        )
    if "provision" not in consent:
        issues.append(ConsentIssue("Consent.provision", "is required"))
    else:
        _check_provision(consent["provision"], "Consent.provision", issues, top=True)
    return issues
