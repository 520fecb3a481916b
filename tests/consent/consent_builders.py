"""Builders for the consent tests: the demo participants, resources and Consents as FHIR JSON."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from consent import (
    ADDRESSEE_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    LEGAL_BASIS_SYSTEM,
    PARTICIPANT_KIND_SYSTEM,
    PURPOSE_OF_USE_SYSTEM,
    Requester,
    stamp_author,
)

NOW = datetime(2024, 6, 15, 12, 0, tzinfo=UTC)
SKS_D = "urn:oid:1.2.208.176.2.4.12"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOINC = "http://loinc.org"
RESOURCE_TYPES = "http://hl7.org/fhir/resource-types"
PARTICIPATION_TYPE = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"

OLE = "Patient/ole"
BIRGITTE = "Patient/birgitte"


def org(name: str) -> str:
    return f"Organization/org-{name}"


HOSPITAL = Requester("auh-ortopaedi", "hospital", org("auh-ortopaedi"), "TREAT")
REHAB_UNIT = Requester(
    "aarhus-genoptraening", "rehab-unit", org("aarhus-genoptraening"), "rehabilitation-planning"
)
JOBCENTRE = Requester(
    "jobcenter-aarhus", "jobcentre", org("jobcenter-aarhus"), "sickness-benefit-follow-up"
)
JOBCENTRE_ROSKILDE = Requester(
    "jobcenter-roskilde", "jobcentre", org("jobcenter-roskilde"), "sickness-benefit-follow-up"
)
GP = Requester("laegerne-soendergade", "gp", org("laegerne-soendergade"), "medical-statement")
EMPLOYER = Requester("lys-montage", "employer", org("lys-montage"), "round-table-meeting")
ROSKILDE_EMPLOYER = Requester(
    "roskilde-hjemmepleje", "employer", org("roskilde-hjemmepleje"), "round-table-meeting"
)
PORTAL_OLE = Requester("borger-dk", "citizen-portal", None, "citizen-access", OLE)


def ref(reference: str) -> dict[str, str]:
    return {"reference": reference}


def concept(system: str, code: str, text: str | None = None) -> dict[str, Any]:
    value: dict[str, Any] = {"coding": [{"system": system, "code": code}]}
    if text is not None:
        value["text"] = text
    return value


def resource(
    resource_type: str,
    ident: str,
    patient: str | None = OLE,
    *,
    labels: tuple[str, ...] = (),
    author: str | None = None,
    author_kind: str | None = None,
    addressees: tuple[str, ...] = (),
    legal_bases: tuple[str, ...] = (),
    patient_element: str = "subject",
    last_updated: str = "2024-05-01T10:00:00Z",
    **elements: Any,
) -> dict[str, Any]:
    """A resource about ``patient`` with data-category labels, author, addressee and legal-basis
    tags (``author_kind``: the author-kind tag the gateway stamps; unset is an unknown kind)."""
    meta: dict[str, Any] = {"lastUpdated": last_updated}
    if labels:
        meta["security"] = [{"system": DATA_CATEGORY_SYSTEM, "code": code} for code in labels]
    tags = [{"system": ADDRESSEE_SYSTEM, "code": name} for name in addressees]
    tags += [{"system": LEGAL_BASIS_SYSTEM, "code": code} for code in legal_bases]
    if tags:
        meta["tag"] = tags
    body: dict[str, Any] = {"resourceType": resource_type, "id": ident, "meta": meta}
    if patient is not None:
        body[patient_element] = ref(patient)
    body.update(elements)
    if author is None:
        return body
    return stamp_author(body, author, author_kind)


def actor_org(name: str) -> dict[str, Any]:
    return {
        "role": concept(PARTICIPATION_TYPE, "IRCP"),
        "reference": ref(org(name)),
    }


def actor_kind(kind: str) -> dict[str, Any]:
    return {
        "role": concept(PARTICIPATION_TYPE, "IRCP"),
        "reference": {"identifier": {"system": PARTICIPANT_KIND_SYSTEM, "value": kind}},
    }


def provision(
    kind: str = "permit",
    *,
    actors: list[dict[str, Any]] | None = None,
    purposes: tuple[str, ...] = (),
    labels: tuple[str, ...] = (),
    classes: tuple[str, ...] = (),
    period: dict[str, str] | None = None,
    data_period: dict[str, str] | None = None,
    nested: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind}
    if period is not None:
        body["period"] = period
    if actors:
        body["actor"] = actors
    if purposes:
        body["purpose"] = [{"system": PURPOSE_OF_USE_SYSTEM, "code": code} for code in purposes]
    if labels:
        body["securityLabel"] = [{"system": DATA_CATEGORY_SYSTEM, "code": code} for code in labels]
    if classes:
        body["class"] = [{"system": RESOURCE_TYPES, "code": code} for code in classes]
    if data_period is not None:
        body["dataPeriod"] = data_period
    if nested:
        body["provision"] = nested
    return body


def consent(
    ident: str,
    patient: str = OLE,
    *,
    status: str = "active",
    date_time: str = "2024-05-10T09:00:00+02:00",
    top: dict[str, Any] | None = None,
    **provision_args: Any,
) -> dict[str, Any]:
    """A patient-privacy Consent; ``provision_args`` build the top provision (a permit)."""
    return {
        "resourceType": "Consent",
        "id": ident,
        "status": status,
        "scope": concept(CONSENT_SCOPE, "patient-privacy"),
        "category": [concept(LOINC, "59284-0")],
        "patient": ref(patient),
        "dateTime": date_time,
        # R4 ppc-1: a Consent names its policy; opt-in is the Danish consent's nature.
        "policyRule": concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),
        "organization": [ref(org("jobcenter-aarhus"))],
        "sourceAttachment": {"contentType": "application/pdf", "title": "signed consent"},
        "provision": top if top is not None else provision(**provision_args),
    }
