"""``RehabPlan`` → transaction Bundle, as the table in rehab-plan-ggop.md "Output" says."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mappings._bundle import BundleBuilder, Ref
from mappings._codes import (
    ACT_CODE_SYSTEM,
    CONDITION_CATEGORY_SYSTEM,
    CONDITION_CLINICAL_SYSTEM,
    CONDITION_VERIFICATION_SYSTEM,
    DIAGNOSIS_RANK_SYSTEM,
    DIAGNOSIS_ROLE_SYSTEM,
    DOCUMENT_TYPE_SYSTEM,
    ICF_SYSTEM,
    LOINC_SYSTEM,
    MENTAL_HEALTH,
    OBSERVATION_CATEGORY_SYSTEM,
    OBSERVATION_CODE_SYSTEM,
    REHAB_PLAN,
    SKS_D_SYSTEM,
    coding,
    concept,
    is_mental_health_diagnosis,
    security,
)
from mappings._document import add_original, add_provenance, sha256_hex
from mappings._parties import (
    Party,
    add_organization,
    add_patient,
    add_practitioner,
    add_practitioner_role,
)
from mappings._result import MappingResult, SourceDocument
from mappings._values import fhir_date_time, fhir_instant
from mappings.rehab_plan._model import Clinician, RehabPlan
from mappings.rehab_plan._read import NAMESPACE
from mappings.rehab_plan._tables import (
    ABILITY_AT_DISCHARGE,
    ABILITY_AT_DISCHARGE_EXTENDED,
    CONSENT_INFORMED_URL,
    ENVELOPE_SYSTEM,
    HEALTH_SUMMARY,
    LETTER_SYSTEM,
    NOTE_LABELS,
    OCCUPATION_LOINC,
    PLAN_TYPE_SYSTEM,
    PLAN_TYPES,
)

FORMAT = "rehab-plan"


def plan_identifier(plan: RehabPlan) -> tuple[str, str]:
    assert plan.sender.sor is not None  # noqa: S101 - the reader requires it
    return LETTER_SYSTEM, f"{plan.sender.sor}/{plan.letter_id}"


def _clinician(
    builder: BundleBuilder, clinician: Clinician, organization: Party, key: str
) -> Party:
    practitioner = add_practitioner(
        builder, name=clinician.name, authorisation=clinician.authorisation, local_key=key
    )
    return add_practitioner_role(
        builder,
        practitioner=practitioner,
        organization=organization,
        title=clinician.title,
        local_key=key,
    )


def _observation(
    categories: list[str],
    code: dict[str, Any],
    patient: Ref,
    encounter: Ref,
    performer: Party,
    effective: str,
    value: dict[str, Any],
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "meta": {"security": security(*categories)},
        "status": "final",
        "code": code,
        "subject": patient(),
        "encounter": encounter(),
        "effectiveDateTime": effective,
        "performer": [performer.ref()],
        **value,
    }


def _condition_categories(code: str) -> list[str]:
    return [REHAB_PLAN, MENTAL_HEALTH] if is_mental_health_diagnosis(code) else [REHAB_PLAN]


def _notes(plan: RehabPlan) -> list[dict[str, str]]:
    notes = [{"text": plan.need_and_potential}]
    if plan.deadline_text:
        notes.append({"text": f"{NOTE_LABELS['deadline']}: {plan.deadline_text}"})
    if plan.ambulatory_control_text:
        when = (
            f" {plan.ambulatory_control_date.isoformat()}" if plan.ambulatory_control_date else ""
        )
        label = NOTE_LABELS["ambulatory-control"]
        notes.append({"text": f"{label}{when}: {plan.ambulatory_control_text}"})
    for key, text in (
        ("contact-municipality", plan.contact_municipality),
        ("health-care-team", plan.health_care_team),
        ("journal-excerpt", plan.journal_excerpt),
    ):
        if text:
            notes.append({"text": f"{NOTE_LABELS[key]}: {text}"})
    return notes


def to_fhir_bundle(
    plan: RehabPlan, xml_bytes: bytes, *, now: datetime, sender: str | None
) -> MappingResult:
    """The whole plan as one transaction Bundle (pure: the same input gives the same Bundle)."""
    system, value = plan_identifier(plan)
    key = f"{FORMAT}|{system}|{value}"
    builder = BundleBuilder(key)
    # A plan naming a chapter-F diagnosis is about mental health: every clinical resource
    # derived from it (its free texts may discuss it) is labelled; a Condition by its own code.
    mental = any(is_mental_health_diagnosis(d.code) for d in plan.diagnoses)
    categories = [REHAB_PLAN, MENTAL_HEALTH] if mental else [REHAB_PLAN]

    patient = add_patient(
        builder,
        cpr=plan.patient.cpr,
        name=plan.patient.name,
        address=plan.patient.address,
        telephone=plan.patient.telephone,
        contacts=plan.relatives,
    )
    hospital = add_organization(builder, plan.sender, "sender")
    receiver = add_organization(builder, plan.receiver, "receiver")
    signer = _clinician(builder, plan.signed_by, hospital, "signed-by")
    co_writers = [
        _clinician(builder, c, hospital, f"co-writer|{i}") for i, c in enumerate(plan.co_writers)
    ]
    authored = fhir_date_time(plan.authorised)
    discharged = plan.discharged.isoformat()

    encounter = builder.derived_ref("Encounter", "hospital-contact")
    conditions: list[Ref] = []
    encounter_diagnoses: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for rank, diagnosis in enumerate(plan.diagnoses, start=1):
        role = "primary" if diagnosis.primary else "secondary"
        seen[diagnosis.code] = seen.get(diagnosis.code, 0) + 1
        code: dict[str, Any] = {"coding": [coding(SKS_D_SYSTEM, diagnosis.code)]}
        if diagnosis.text:
            code["text"] = diagnosis.text
        condition = builder.owned(
            {
                "resourceType": "Condition",
                "meta": {"security": security(*_condition_categories(diagnosis.code))},
                "clinicalStatus": concept(CONDITION_CLINICAL_SYSTEM, "active"),
                "verificationStatus": concept(CONDITION_VERIFICATION_SYSTEM, "confirmed"),
                "category": [
                    concept(CONDITION_CATEGORY_SYSTEM, "encounter-diagnosis"),
                    concept(DIAGNOSIS_RANK_SYSTEM, role),
                ],
                "code": code,
                "subject": patient.ref(),
                "encounter": encounter(),
                "recordedDate": authored,
                "asserter": signer.ref(),
            },
            local_key=f"condition|{role}|{diagnosis.code}|{seen[diagnosis.code]}",
        )
        conditions.append(condition)
        encounter_diagnoses.append(
            {
                "condition": condition(),
                "use": concept(DIAGNOSIS_ROLE_SYSTEM, "DD"),
                "rank": rank,
            }
        )
    builder.owned(
        {
            "resourceType": "Encounter",
            "meta": {"security": security(*categories)},
            "status": "finished",
            "class": coding(ACT_CODE_SYSTEM, "IMP", "inpatient encounter"),
            "subject": patient.ref(),
            "period": {"start": plan.admitted.isoformat(), "end": discharged},
            "diagnosis": encounter_diagnoses,
            "serviceProvider": hospital.ref(),
        },
        local_key="hospital-contact",
    )

    observations: list[Ref] = []

    def observe(
        local_key: str, code: dict[str, Any], effective: str, value: dict[str, Any]
    ) -> None:
        resource = _observation(categories, code, patient.ref, encounter, signer, effective, value)
        observations.append(builder.owned(resource, local_key=local_key))

    if plan.patient.occupation:
        observe(
            "occupation",
            {
                "coding": [coding(LOINC_SYSTEM, OCCUPATION_LOINC, "History of Occupation")],
                "text": "Beskæftigelse",
            },
            authored,
            {
                "category": [concept(OBSERVATION_CATEGORY_SYSTEM, "social-history")],
                "valueString": plan.patient.occupation,
            },
        )
    for code_value, text in (
        (HEALTH_SUMMARY, plan.health_summary),
        (ABILITY_AT_DISCHARGE, plan.ability_summary),
        (ABILITY_AT_DISCHARGE_EXTENDED, plan.ability_extended),
    ):
        if text:
            observe(
                code_value,
                concept(OBSERVATION_CODE_SYSTEM, code_value),
                discharged,
                {"valueString": text},
            )
    icf_seen: dict[str, int] = {}
    for item in plan.icf:
        icf_seen[item.code] = icf_seen.get(item.code, 0) + 1
        icf_code: dict[str, Any] = {"coding": [coding(ICF_SYSTEM, item.code)]}
        if item.text:
            icf_code["text"] = item.text
        observe(
            f"icf|{item.code}|{icf_seen[item.code]}",
            icf_code,
            discharged,
            {"valueInteger": item.gradient},
        )

    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "meta": {"security": security(*categories)},
        "extension": [{"url": CONSENT_INFORMED_URL, "valueBoolean": plan.consent_informed}],
        "identifier": [{"system": system, "value": value, "assigner": hospital.ref()}],
        "status": "active",
        "intent": "plan",
        "category": [
            {
                "coding": [coding(PLAN_TYPE_SYSTEM, plan.plan_type, PLAN_TYPES[plan.plan_type])],
            }
        ],
        "code": {"coding": [coding(DOCUMENT_TYPE_SYSTEM, FORMAT)], "text": "Genoptræningsplan"},
        "subject": patient.ref(),
        "encounter": encounter(),
        "authoredOn": authored,
        "requester": signer.ref(),
        "performer": [receiver.ref()],
        "reasonReference": [c() for c in conditions],
        "note": _notes(plan),
    }
    if plan.deadline is not None:
        request["occurrencePeriod"] = {"end": plan.deadline.isoformat()}
    if observations:
        request["supportingInfo"] = [o() for o in observations]
    builder.owned(request, identifier=(system, value))

    identifiers = [{"system": system, "value": value}]
    if plan.sender.ean:
        identifiers.append(
            {"system": ENVELOPE_SYSTEM, "value": f"{plan.sender.ean}/{plan.envelope_id}"}
        )
    document = add_original(
        builder,
        xml_bytes=xml_bytes,
        namespace=NAMESPACE,
        document_type=FORMAT,
        subject=patient.ref,
        author=hospital.ref,
        identifiers=identifiers,
        categories=categories,
        now=now,
    )
    add_provenance(
        builder,
        document=document,
        authors=[hospital.ref, signer.ref, *(c.ref for c in co_writers)],
        occurred=plan.authorised,
        categories=categories,
        now=now,
        sender=sender,
    )
    return MappingResult(
        receiver=tuple(plan.receiver.identifiers()) if plan.receiver else (),
        receiver_kind=plan.receiver.kind if plan.receiver else None,
        format=FORMAT,
        bundle=builder.build(fhir_instant(now)),
        warnings=[],
        source=SourceDocument(
            format=FORMAT,
            system=system,
            value=value,
            issued=plan.authorised,
            sha256=sha256_hex(xml_bytes),
            key=key,
        ),
    )
