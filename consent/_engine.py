"""The decision: may this requester see this resource, and in which form? (rules: package doc)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from consent._codes import (
    CITIZEN_PORTAL,
    DIRECTORY_TYPES,
    EMPLOYER,
    EMPLOYMENT_RELEVANT,
    EMPLOYMENT_SIDE,
    LEGAL_BASES,
    MENTAL_HEALTH,
    ROUND_TABLE_INVITATION,
)
from consent._dates import as_utc
from consent._matching import Request, judge
from consent._model import CompiledConsent, Decision, Requester, compile_consent
from consent._redaction import redact_diagnoses
from consent._resources import (
    Resource,
    author_kind_of,
    author_of,
    data_categories,
    is_addressed_to,
    is_owned_by,
    legal_bases_of,
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


# Rules whose permits do not make the record's Patient visible (rule 8 of the package doc).
_NOT_SUPPORTING = frozenset({"author", "directory"})


def supports_patient(decision: Decision) -> bool:
    """Whether a decision on a record makes that record's Patient visible (the supporting rule).

    True for a permitted decision by any rule but ``author`` and ``directory``: writing a
    record about a citizen never becomes a way to read what others recorded about them.
    """
    return decision.permitted and decision.rule not in _NOT_SUPPORTING


def _crossing(requester: Requester, resource: Resource) -> bool:
    """Data going to the employment side from anywhere else (an unknown author kind included)."""
    return requester.kind in EMPLOYMENT_SIDE and author_kind_of(resource) not in EMPLOYMENT_SIDE


def _has_legal_basis(requester: Requester, resource: Resource, resource_type: str) -> bool:
    for code in legal_bases_of(resource):
        basis = LEGAL_BASES[code]
        if requester.kind in basis.reaches and (
            basis.resource_types is None or resource_type in basis.resource_types
        ):
            return True
    return False


def _own_rules(
    requester: Requester,
    resource: Resource,
    resource_type: str,
    target: str | None,
    labels: frozenset[str],
    has_visible_record: bool,
) -> tuple[Decision | None, bool]:
    """Rules 1-8 (no Consent needed): the decision, or None and whether a crossing was held back.

    The second value is True when the addressee or own-department rule would have disclosed
    the resource but for the health → employment crossing (it then needs a consent).
    """
    if resource_type in DIRECTORY_TYPES:
        return _disclose(requester, resource, "directory", "directory data", target), False
    if requester.kind == CITIZEN_PORTAL:
        own = local_reference(requester.patient)
        if own is not None and patient_of(resource) == own:
            return _disclose(
                requester, resource, "citizen-access", "the citizen's own data", target
            ), False
        return _deny(
            "citizen-other-patient", "not about the citizen the portal acts for", target
        ), False
    if author_of(resource) == requester.participant:
        return _disclose(requester, resource, "author", "written by the requester", target), False
    if requester.kind == EMPLOYER:
        if MENTAL_HEALTH in labels:
            return _deny(
                "employer-mental-health", "an employer never sees mental-health data", target
            ), False
        # A Patient is identity data, not a labelled record: it comes along with a record the
        # employer sees (supporting), and its consent path below still needs the label. The
        # round-table invitation is for the employer by its legal basis (a time and a place;
        # its reason, the diagnosis, is removed by _disclose).
        invitation = LEGAL_BASES[ROUND_TABLE_INVITATION]
        invited = (
            ROUND_TABLE_INVITATION in legal_bases_of(resource)
            and requester.kind in invitation.reaches
            and (invitation.resource_types is None or resource_type in invitation.resource_types)
        )
        if resource_type != "Patient" and not invited and EMPLOYMENT_RELEVANT not in labels:
            return _deny(
                "employer-not-employment-relevant",
                "an employer sees only data labelled employment-relevant",
                target,
            ), False
    held_back = False
    addressed = is_addressed_to(resource, requester.participant, requester.organization_ref)
    if addressed or is_owned_by(resource, requester.organization_ref):
        if not _crossing(requester, resource) or (
            MENTAL_HEALTH not in labels and _has_legal_basis(requester, resource, resource_type)
        ):
            if addressed:
                return _disclose(
                    requester, resource, "addressee", "addressed to the requester", target
                ), False
            return _disclose(
                requester, resource, "own-department", "the requester's record", target
            ), False
        held_back = True
    if resource_type == "Patient" and has_visible_record:
        return _disclose(
            requester, resource, "supporting", "the patient of a record the requester sees", target
        ), False
    return None, held_back


def _refuse(held_back: bool, reason: str, target: str | None) -> Decision:
    """The final denial: the crossing's own rule when it held the resource back."""
    if held_back:
        return _deny(
            "cross-sector-needs-consent",
            "health data reaches the employment side only under a consent or a legal basis",
            target,
        )
    return _deny("default-deny", reason, target)


def _decide(
    requester: Requester,
    resource: Resource,
    consents: Sequence[CompiledConsent],
    now: datetime,
    has_visible_record: bool,
) -> Decision:
    target = reference_of(resource)
    resource_type = str(resource.get("resourceType", ""))
    labels = data_categories(resource)
    decided, held_back = _own_rules(
        requester, resource, resource_type, target, labels, has_visible_record
    )
    if decided is not None:
        return decided

    patient = patient_of(resource)
    if patient is None:
        return _refuse(held_back, "no rule discloses this resource", target)
    if requester.kind == EMPLOYER and EMPLOYMENT_RELEVANT not in labels:
        return _deny(
            "employer-not-employment-relevant",
            "an employer sees only data labelled employment-relevant",
            target,
        )
    applicable = [c for c in consents if c.patient == patient and c.in_force(now)]
    if not applicable:
        return _refuse(held_back, "no consent in force for this patient", target)
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
    return _refuse(held_back, "no consent provision matches", target)


def decide(
    requester: Requester,
    resource: Resource,
    consents: Iterable[ConsentLike],
    *,
    now: datetime,
    has_visible_record: bool = False,
) -> Decision:
    """Decide on one resource. ``consents``: the patient's consents (others are ignored).

    ``has_visible_record`` (for a Patient resource only): at least one other record of that
    patient is visible to the requester by a decision that :func:`supports_patient` (any rule
    but ``author`` and ``directory``), which makes the Patient visible too.
    """
    return _decide(requester, resource, _compiled(consents), as_utc(now), has_visible_record)


def supporting_resources_visible(
    requester: Requester, resource: Resource, *, has_visible_record: bool
) -> bool:
    """Whether a directory resource or a Patient may come along with visible records (includes).

    Organization / Practitioner / PractitionerRole (and other directory types): always. A
    Patient: when :func:`decide` would disclose it without a consent: its own author,
    addressee or department rules (with the absolute rules first), the citizen portal, or
    ``has_visible_record`` — which the caller must compute with :func:`supports_patient`, so
    that records the requester only wrote never count. Other resources: False (they need
    :func:`decide`).
    """
    resource_type = resource.get("resourceType")
    if resource_type in DIRECTORY_TYPES:
        return True
    if resource_type != "Patient":
        return False
    decision, _ = _own_rules(
        requester,
        resource,
        "Patient",
        reference_of(resource),
        data_categories(resource),
        has_visible_record,
    )
    return decision is not None and decision.permitted


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
    in ``resources`` is visible by a decision that :func:`supports_patient` (not merely as
    its author), or its reference is in ``patients_with_visible_records``.
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
        if patient is not None and supports_patient(decision):
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
