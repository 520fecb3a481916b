"""``FilledForm`` → transaction Bundle, as the table in gp-statement.md "Output" says."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from mappings._bundle import BundleBuilder, Ref
from mappings._codes import (
    CONDITION_CATEGORY_SYSTEM,
    CONDITION_CLINICAL_SYSTEM,
    CONDITION_VERIFICATION_SYSTEM,
    DOCUMENT_TYPE_SYSTEM,
    EMPLOYMENT_RELEVANT,
    MEDICAL_STATEMENT,
    MENTAL_HEALTH,
    OBSERVATION_CODE_SYSTEM,
    TASK_CODE_SYSTEM,
    UCUM_SYSTEM,
    coding,
    concept,
    is_mental_health_diagnosis,
    questionnaire_url,
    security,
)
from mappings._document import add_original, add_provenance, sha256_hex
from mappings._errors import MappingIssue
from mappings._parties import (
    Party,
    PersonInfo,
    add_organization,
    add_patient,
    add_practitioner,
    add_practitioner_role,
    party_key,
)
from mappings._result import MappingResult, SourceDocument
from mappings._values import fhir_date_time, fhir_decimal, fhir_instant
from mappings.gp_statement._forms import FORM_ID_SYSTEM, FORM_SYSTEM, REQUEST_ID_SYSTEM
from mappings.gp_statement._model import Answer, FilledForm
from mappings.gp_statement._read import NAMESPACE
from mappings.jobcentre_case._deadlines import DEADLINE_SYSTEM, DEADLINES, STATEMENT_DUE

FORMAT = "gp-statement"
REQUEST_DOCUMENT_TYPE = "medical-statement-request"
STATEMENT_DOCUMENT_TYPE = "medical-statement"


def _answer_value(answer: Answer) -> dict[str, Any]:
    value, spec = answer.value, answer.spec
    if spec.kind == "code":
        assert isinstance(value, str)  # noqa: S101
        system = spec.code_system or answer.system
        assert system is not None  # noqa: S101 - the reader requires one
        display = spec.codes.get(value) if spec.codes is not None else None
        return {"valueCoding": coding(system, value, display)}
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        return {"valueInteger": value}
    if isinstance(value, Decimal):
        return {"valueDecimal": fhir_decimal(value)}
    if isinstance(value, date):
        return {"valueDate": value.isoformat()}
    return {"valueString": value}


def _items(form: FilledForm) -> list[dict[str, Any]]:
    """Answers nested by linkId prefix ("3.1" under group "3"), in the form's field order."""
    items: list[dict[str, Any]] = []
    groups: dict[str, dict[str, Any]] = {}
    for spec in form.form.fields:
        answers = form.answers_for(spec.link_id)
        if not answers:
            continue
        item = {"linkId": spec.link_id, "answer": [_answer_value(a) for a in answers]}
        group_id, dot, _ = spec.link_id.partition(".")
        if not dot:
            items.append(item)
            continue
        if group_id not in groups:
            groups[group_id] = {"linkId": group_id, "item": []}
            items.append(groups[group_id])
        groups[group_id]["item"].append(item)
    return items


def _observation_value(answer: Answer) -> dict[str, Any]:
    if answer.spec.observation == "hours-per-week":
        assert isinstance(answer.value, Decimal)  # noqa: S101
        return {
            "valueQuantity": {
                "value": fhir_decimal(answer.value),
                "unit": "timer pr. uge",
                "system": UCUM_SYSTEM,
                "code": "h/wk",
            }
        }
    if answer.spec.kind == "code":
        return {"valueCodeableConcept": {"coding": [_answer_value(answer)["valueCoding"]]}}
    if isinstance(answer.value, date):
        return {"valueDateTime": answer.value.isoformat()}
    return {"valueString": str(answer.value)}


def _parties(builder: BundleBuilder, form: FilledForm) -> tuple[Party, Party, Party, Party | None]:
    patient = add_patient(builder, cpr=form.cpr, name=PersonInfo(text=form.citizen_name))
    sender = add_organization(builder, form.sender, "sender")
    receiver = add_organization(builder, form.receiver, "receiver")
    role = None
    if form.doctor is not None:
        doctor = add_practitioner(
            builder,
            name=PersonInfo(text=form.doctor.name),
            authorisation=form.doctor.authorisation,
            local_key="doctor",
        )
        role = add_practitioner_role(
            builder, practitioner=doctor, organization=sender, title=None, local_key="doctor"
        )
    return patient, sender, receiver, role


def to_fhir_bundle(
    form: FilledForm, xml_bytes: bytes, *, now: datetime, sender: str | None
) -> MappingResult:
    """A statement → QuestionnaireResponse, Conditions, employment-relevant Observations;
    a request → QuestionnaireResponse, ServiceRequest and Task for the GP."""
    sender_key = party_key(form.sender)
    assert sender_key is not None  # noqa: S101 - the reader requires an identifier
    form_value = f"{sender_key}/{form.form_id}"
    key = f"{FORMAT}|{FORM_ID_SYSTEM}|{form_value}"
    builder = BundleBuilder(key)
    mental = any(
        a.spec.diagnosis and is_mental_health_diagnosis(str(a.value)) for a in form.answers
    )
    categories = [MEDICAL_STATEMENT, MENTAL_HEALTH] if mental else [MEDICAL_STATEMENT]
    if form.form.code == "MULIGHED":
        # The Mulighedserklæring is written for the employer: all of it is employment-relevant
        # (and the adapter refuses a diagnosis in it).
        categories.append(EMPLOYMENT_RELEVANT)
    patient, clinic_or_jobcentre, receiver, doctor_role = _parties(builder, form)
    author = doctor_role or clinic_or_jobcentre
    issued = fhir_date_time(form.issued)
    warnings: list[MappingIssue] = []

    answers_request: tuple[str, str] | None = None
    response: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "meta": {"security": security(*categories)},
        "identifier": {"system": FORM_ID_SYSTEM, "value": form_value},
        "questionnaire": f"{questionnaire_url(form.form.code)}|{form.version}",
        "status": "completed",
        "subject": patient.ref(),
        "authored": issued,
        "author": author.ref(),
        "item": _items(form),
    }
    if form.request_id is not None:
        receiver_key = party_key(form.receiver)
        if receiver_key is None:
            warnings.append(
                MappingIssue(
                    "warning",
                    "/Blanket/Meta/AnmodningId",
                    "the request cannot be linked: Modtager carries no identifier",
                )
            )
        else:
            answers_request = (REQUEST_ID_SYSTEM, f"{receiver_key}/{form.request_id}")
            # A logical reference: the store links it when it holds the request.
            response["basedOn"] = [
                {
                    "type": "ServiceRequest",
                    "identifier": {"system": answers_request[0], "value": answers_request[1]},
                }
            ]
    response_ref = builder.owned(response, identifier=(FORM_ID_SYSTEM, form_value))

    seen: dict[str, int] = {}
    for answer in form.answers:
        spec = answer.spec
        seen[spec.link_id] = seen.get(spec.link_id, 0) + 1
        local_key = f"{spec.link_id}|{seen[spec.link_id]}"
        if spec.diagnosis:
            code = str(answer.value)
            labels = [MEDICAL_STATEMENT]
            if is_mental_health_diagnosis(code):
                labels.append(MENTAL_HEALTH)
            assert answer.system is not None  # noqa: S101
            builder.owned(
                {
                    "resourceType": "Condition",
                    "meta": {"security": security(*labels)},
                    "clinicalStatus": concept(CONDITION_CLINICAL_SYSTEM, "active"),
                    "verificationStatus": concept(CONDITION_VERIFICATION_SYSTEM, "confirmed"),
                    "category": [concept(CONDITION_CATEGORY_SYSTEM, "problem-list-item")],
                    "code": {"coding": [coding(answer.system, code)]},
                    "subject": patient.ref(),
                    "recordedDate": issued,
                    "asserter": author.ref(),
                },
                local_key=f"condition|{local_key}",
            )
        elif spec.observation is not None:
            builder.owned(
                {
                    "resourceType": "Observation",
                    "meta": {"security": security(MEDICAL_STATEMENT, EMPLOYMENT_RELEVANT)},
                    "status": "final",
                    "code": concept(OBSERVATION_CODE_SYSTEM, spec.observation),
                    "subject": patient.ref(),
                    "effectiveDateTime": issued,
                    "performer": [author.ref()],
                    "derivedFrom": [response_ref()],
                    **_observation_value(answer),
                },
                local_key=f"observation|{local_key}",
            )

    if form.form.requests is not None:
        _add_request(builder, form, form_value, patient, clinic_or_jobcentre, receiver, issued)

    document_type = REQUEST_DOCUMENT_TYPE if form.form.requests else STATEMENT_DOCUMENT_TYPE
    document = add_original(
        builder,
        xml_bytes=xml_bytes,
        namespace=NAMESPACE,
        document_type=document_type,
        subject=patient.ref,
        author=clinic_or_jobcentre.ref,
        identifiers=[{"system": FORM_ID_SYSTEM, "value": form_value}],
        categories=categories,
        now=now,
    )
    authors: list[Ref] = [clinic_or_jobcentre.ref]
    if doctor_role is not None:
        authors.append(doctor_role.ref)
    add_provenance(
        builder,
        document=document,
        authors=authors,
        occurred=form.issued,
        categories=categories,
        now=now,
        sender=sender,
    )
    return MappingResult(
        receiver=tuple(form.receiver.identifiers()) if form.receiver else (),
        receiver_kind=form.receiver.kind if form.receiver else None,
        format=FORMAT,
        bundle=builder.build(fhir_instant(now)),
        warnings=warnings,
        source=SourceDocument(
            format=FORMAT,
            system=FORM_ID_SYSTEM,
            value=form_value,
            issued=form.issued,
            sha256=sha256_hex(xml_bytes),
            key=key,
        ),
        answers_request=answers_request,
    )


def _add_request(
    builder: BundleBuilder,
    form: FilledForm,
    form_value: str,
    patient: Party,
    jobcentre: Party,
    clinic: Party,
    issued: str,
) -> None:
    """A request: ServiceRequest (the order) + Task for the GP with the due date."""
    assert form.form.requests is not None  # noqa: S101
    labels = security(MEDICAL_STATEMENT)
    request = builder.owned(
        {
            "resourceType": "ServiceRequest",
            "meta": {"security": labels},
            "identifier": [
                {"system": REQUEST_ID_SYSTEM, "value": form_value, "assigner": jobcentre.ref()}
            ],
            "status": "active",
            "intent": "order",
            "category": [concept(DOCUMENT_TYPE_SYSTEM, STATEMENT_DOCUMENT_TYPE)],
            "code": concept(FORM_SYSTEM, form.form.requests),
            "subject": patient.ref(),
            "authoredOn": issued,
            "requester": jobcentre.ref(),
            "performer": [clinic.ref()],
        },
        identifier=(REQUEST_ID_SYSTEM, form_value),
    )
    due = next((a.value for a in form.answers if a.spec.link_id == "svarfrist"), None)
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": {"security": labels},
        "basedOn": [request()],
        "status": "requested",
        "intent": "order",
        "code": {
            "coding": [
                coding(TASK_CODE_SYSTEM, "fulfill"),
                coding(DEADLINE_SYSTEM, STATEMENT_DUE, DEADLINES[STATEMENT_DUE][0]),
            ]
        },
        "focus": request(),
        "for": patient.ref(),
        "authoredOn": issued,
        "requester": jobcentre.ref(),
        "owner": clinic.ref(),
    }
    if isinstance(due, date):
        task["restriction"] = {"period": {"end": due.isoformat()}}
    builder.owned(task, local_key="task")
