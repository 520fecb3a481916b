"""The decision: may this requester see this resource, and in which form? (rules: package doc)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from consent._codes import CITIZEN_PORTAL, DIRECTORY_TYPES, EMPLOYER, EMPLOYMENT_RELEVANT
from consent._dates import as_utc
from consent._matching import Request, judge
from consent._model import CompiledConsent, Decision, Requester, compile_consent
from consent._redaction import redact_diagnoses
from consent._resources import (
    Resource,
    author_of,
    data_categories,
    is_addressed_to,
    is_owned_by,
    local_reference,
    patient_of,
    reference_of,
)

ConsentLike = CompiledConsent | Mapping[str, Any]


def _compiled(consents: Iterable[ConsentLike]) -> list[CompiledConsent]:
    return [c if isinstance(c, CompiledConsent) else compile_consent(c) for c in consents]


def active_consents(consents: Iterable[ConsentLike], *, now: datetime) -> list[CompiledConsent]:
    """The consents in force at ``now`` (active, patient-privacy, top period), compiled.

    Call once per request and pass the result to :func:`decide` / :func:`filter_visible`.
    """
    moment = as_utc(now)
    return [c for c in _compiled(consents) if c.in_force(moment)]


def _deny(rule: str, reason: str, target: str | None, consent: str | None = None) -> Decision:
    return Decision("deny", rule, reason, consent=consent, resource=None, target=target)


def _disclose(
    requester: Requester,
    resource: Resource,
    rule: str,
    reason: str,
    target: str | None,
    consent: str | None = None,
) -> Decision:
    """Permit, except that an employer gets a copy without diagnoses (or nothing)."""
    if requester.kind != EMPLOYER:
        return Decision("permit", rule, reason, consent=consent, resource=resource, target=target)
    redacted = redact_diagnoses(resource)
    if redacted is None:
        return _deny(
            "employer-diagnosis",
            "an employer never receives a diagnosis, and nothing else would remain",
            target,
        )
    if redacted is resource:
        return Decision("permit", rule, reason, consent=consent, resource=resource, target=target)
    return Decision(
        "permit-with-redaction",
        rule,
        f"{reason}; diagnoses removed for an employer",
        consent=consent,
        resource=redacted,
        target=target,
    )


def _decide(
    requester: Requester,
    resource: Resource,
    consents: Sequence[CompiledConsent],
    now: datetime,
    has_visible_record: bool,
) -> Decision:
    target = reference_of(resource)
    resource_type = str(resource.get("resourceType", ""))
    if resource_type in DIRECTORY_TYPES:
        return _disclose(requester, resource, "directory", "directory data", target)
    if requester.kind == CITIZEN_PORTAL:
        own = local_reference(requester.patient)
        if own is not None and patient_of(resource) == own:
            return _disclose(
                requester, resource, "citizen-access", "the citizen's own data", target
            )
        return _deny("citizen-other-patient", "not about the citizen the portal acts for", target)
    if author_of(resource) == requester.participant:
        return _disclose(requester, resource, "author", "written by the requester", target)
    if is_addressed_to(resource, requester.participant, requester.organization_ref):
        return _disclose(requester, resource, "addressee", "addressed to the requester", target)
    if is_owned_by(resource, requester.organization_ref):
        return _disclose(requester, resource, "own-department", "the requester's record", target)
    if resource_type == "Patient" and has_visible_record:
        return _disclose(
            requester, resource, "supporting", "the patient of a record the requester sees", target
        )
    patient = patient_of(resource)
    if patient is None:
        return _deny("default-deny", "no rule discloses this resource", target)
    labels = data_categories(resource)
    if requester.kind == EMPLOYER and EMPLOYMENT_RELEVANT not in labels:
        return _deny(
            "employer-not-employment-relevant",
            "an employer sees only data labelled employment-relevant",
            target,
        )
    applicable = [c for c in consents if c.patient == patient and c.in_force(now)]
    if not applicable:
        return _deny("default-deny", "no consent in force for this patient", target)
    request = Request(requester, resource, resource_type, target, labels, now)
    verdict = judge(applicable, request)
    if verdict.denied_by is not None:
        return _deny(
            "consent-deny-exception",
            "an exception in the patient's consent denies it",
            target,
            verdict.denied_by.reference,
        )
    if verdict.permitted_by is not None:
        return _disclose(
            requester,
            resource,
            "consent",
            "permitted by the patient's consent",
            target,
            verdict.permitted_by.reference,
        )
    if verdict.mental_health_blocked_by is not None:
        return _deny(
            "mental-health-not-named",
            "mental-health data needs a consent provision that names it",
            target,
            verdict.mental_health_blocked_by.reference,
        )
    return _deny("default-deny", "no consent provision matches", target)


def decide(
    requester: Requester,
    resource: Resource,
    consents: Iterable[ConsentLike],
    *,
    now: datetime,
    has_visible_record: bool = False,
) -> Decision:
    """Decide on one resource. ``consents``: the patient's consents (others are ignored).

    ``has_visible_record`` (for a Patient resource only): at least one other resource of that
    patient is visible to the requester, which makes the Patient visible too.
    """
    return _decide(requester, resource, _compiled(consents), as_utc(now), has_visible_record)


def supporting_resources_visible(
    requester: Requester, resource: Resource, *, has_visible_record: bool
) -> bool:
    """Whether a directory resource or a Patient may come along with visible records (includes).

    Organization / Practitioner / PractitionerRole (and other directory types): always. A
    Patient: when ``has_visible_record`` or the requester reaches it by its own rules (author,
    addressee, citizen portal). Other resources: False (they need :func:`decide`).
    """
    resource_type = resource.get("resourceType")
    if resource_type in DIRECTORY_TYPES:
        return True
    if resource_type != "Patient":
        return False
    if requester.kind == CITIZEN_PORTAL:
        return patient_of(resource) == local_reference(requester.patient)
    if has_visible_record:
        return True
    return (
        author_of(resource) == requester.participant
        or is_addressed_to(resource, requester.participant, requester.organization_ref)
        or is_owned_by(resource, requester.organization_ref)
    )


def filter_visible(
    requester: Requester,
    resources: Sequence[Resource],
    consents_by_patient: Mapping[str, Iterable[ConsentLike]],
    *,
    now: datetime,
    patients_with_visible_records: Collection[str] = frozenset(),
) -> list[Decision]:
    """One Decision per resource, in order (a search page, an include set, a history).

    Patient resources are decided last: one is visible when another resource of that patient
    in ``resources`` is, or its reference is in ``patients_with_visible_records``.
    """
    moment = as_utc(now)
    compiled: dict[str, list[CompiledConsent]] = {}
    decisions: list[Decision | None] = [None] * len(resources)
    visible_patients = set(patients_with_visible_records)
    patients: list[int] = []
    for index, resource in enumerate(resources):
        if resource.get("resourceType") == "Patient":
            patients.append(index)
            continue
        patient = patient_of(resource)
        consents: list[CompiledConsent] = []
        if patient is not None:
            if patient not in compiled:
                compiled[patient] = active_consents(
                    consents_by_patient.get(patient, ()), now=moment
                )
            consents = compiled[patient]
        decision = _decide(requester, resource, consents, moment, False)
        decisions[index] = decision
        if decision.permitted and patient is not None:
            visible_patients.add(patient)
    for index in patients:
        resource = resources[index]
        patient = patient_of(resource)
        consents = []
        if patient is not None:
            if patient not in compiled:
                compiled[patient] = active_consents(
                    consents_by_patient.get(patient, ()), now=moment
                )
            consents = compiled[patient]
        decisions[index] = _decide(
            requester, resource, consents, moment, patient in visible_patients
        )
    return [d for d in decisions if d is not None]
