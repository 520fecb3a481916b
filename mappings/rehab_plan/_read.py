"""GGOP XML → ``RehabPlan``: structure per rehab-plan-ggop.md "Input", rules per its last lines."""

from __future__ import annotations

from mappings._errors import IssueCollector
from mappings._identifiers import (
    AUTHORISATION_RULE,
    CPR_RULE,
    EAN_RULE,
    SOR_RULE,
    is_valid_authorisation,
    is_valid_cpr,
    is_valid_ean,
    is_valid_sor,
)
from mappings._parties import Address, Contact, OrganizationInfo, PersonInfo
from mappings._values import (
    local_datetime,
    read_boolean,
    read_checked,
    read_code,
    read_date,
    read_id,
    read_integer,
    read_time,
)
from mappings._xml import Node, Occurs, Shape, leaf
from mappings.rehab_plan._model import (
    Clinician,
    Diagnosis,
    IcfClassification,
    PlanPatient,
    RehabPlan,
)
from mappings.rehab_plan._tables import PLAN_TYPES

NAMESPACE = "urn:oio:medcom:municipality:1.0.4"
ROOT = "Emessage"


def _date_time(name: str) -> Shape:
    return Shape(name, children=(leaf("Date"), leaf("Time")))


def _organisation(name: str) -> Shape:
    return Shape(
        name,
        children=(
            leaf("EANIdentifier"),
            leaf("Identifier"),
            leaf("IdentifierCode"),
            leaf("OrganisationName"),
            leaf("DepartmentName", "?"),
            leaf("UnitName", "?"),
            leaf("StreetName", "?"),
            leaf("PostCodeIdentifier", "?"),
            leaf("DistrictName", "?"),
            leaf("TelephoneSubscriberIdentifier", "?"),
        ),
    )


def _clinician(name: str, occurs: Occurs) -> Shape:
    return Shape(
        name,
        occurs,
        children=(
            leaf("PersonGivenName"),
            leaf("PersonSurnameName"),
            leaf("PersonTitle", "?"),
            leaf("AuthorisationIdentifier", "?"),
        ),
    )


def _diagnosis(name: str, occurs: Occurs) -> Shape:
    return Shape(name, occurs, children=(leaf("Code"), leaf("Text")))


SHAPE = Shape(
    ROOT,
    children=(
        Shape(
            "Envelope",
            children=(
                _date_time("Sent"),
                leaf("Identifier"),
                leaf("AcknowledgementCode"),
            ),
        ),
        Shape(
            "RehabilitationPlan",
            children=(
                Shape(
                    "Letter",
                    children=(
                        leaf("Identifier"),
                        leaf("VersionCode"),
                        leaf("StatisticalCode"),
                        _date_time("Authorisation"),
                        leaf("TypeCode"),
                    ),
                ),
                _organisation("Sender"),
                _organisation("Receiver"),
                _clinician("SignedBy", "1"),
                _clinician("CoWriter", "*"),
                Shape(
                    "Patient",
                    children=(
                        leaf("CivilRegistrationNumber"),
                        leaf("PersonSurnameName"),
                        leaf("PersonGivenName"),
                        leaf("StreetName", "?"),
                        leaf("PostCodeIdentifier", "?"),
                        leaf("DistrictName", "?"),
                        leaf("TelephoneSubscriberIdentifier", "?"),
                        leaf("Occupation", "?"),
                    ),
                ),
                Shape(
                    "Relatives",
                    "*",
                    children=(
                        leaf("RelationCode"),
                        leaf("PersonGivenName"),
                        leaf("PersonSurnameName"),
                        leaf("TelephoneSubscriberIdentifier", "?"),
                    ),
                ),
                leaf("ConsentInformed"),
                leaf("TypeOfRehabilitationPlan"),
                Shape(
                    "ICD10Diagnoses",
                    children=(
                        _diagnosis("PrimaryDiagnosis", "1"),
                        _diagnosis("SecondaryDiagnosis", "*"),
                    ),
                ),
                leaf("PatientHealthSummary"),
                leaf("AbilityAtDischargeSummary"),
                leaf("AbilityAtDischargeExtended", "?"),
                Shape(
                    "ICFClassifications",
                    "?",
                    children=(
                        Shape(
                            "ICFClassification",
                            "*",
                            children=(leaf("ICFCode"), leaf("ICFGradient"), leaf("Text", "?")),
                        ),
                    ),
                ),
                leaf("RehabilitationNeedAndPotential"),
                Shape("RehabilitationDeadline", children=(leaf("Date", "?"),), text=True),
                Shape(
                    "CurrentHospitalContact",
                    children=(
                        Shape("Start", children=(leaf("Date"),)),
                        Shape("End", children=(leaf("Date"),)),
                    ),
                ),
                Shape("HospitalAmbulatoryControl", "?", children=(leaf("Date", "?"), leaf("Text"))),
                leaf("ContactMunicipality", "?"),
                leaf("HealthCareTeam", "?"),
                leaf("JournalExcerpt", "?"),
            ),
        ),
    ),
)


def _organisation_info(node: Node, kind: str, issues: IssueCollector) -> OrganizationInfo:
    code = node.text_of("IdentifierCode")
    if code is not None and code.lower() != "sor":
        issues.error(
            node.child_path("IdentifierCode"), "must be sor (the Identifier is a SOR code)"
        )
    sor = read_checked(
        node.text_of("Identifier"), node.child_path("Identifier"), issues, is_valid_sor, SOR_RULE
    )
    ean = read_checked(
        node.text_of("EANIdentifier"),
        node.child_path("EANIdentifier"),
        issues,
        is_valid_ean,
        EAN_RULE,
    )
    parts = [node.text_of(n) for n in ("OrganisationName", "DepartmentName", "UnitName")]
    return OrganizationInfo(
        name=", ".join(p for p in parts if p) or None,
        kind=kind,
        sor=sor,
        ean=ean,
        address=Address(
            node.text_of("StreetName"),
            node.text_of("PostCodeIdentifier"),
            node.text_of("DistrictName"),
        ),
        telephone=node.text_of("TelephoneSubscriberIdentifier"),
    )


def _clinician_info(node: Node, issues: IssueCollector) -> Clinician:
    given = node.text_of("PersonGivenName")
    return Clinician(
        name=PersonInfo(given=(given,) if given else (), family=node.text_of("PersonSurnameName")),
        title=node.text_of("PersonTitle"),
        authorisation=read_checked(
            node.text_of("AuthorisationIdentifier"),
            node.child_path("AuthorisationIdentifier"),
            issues,
            is_valid_authorisation,
            AUTHORISATION_RULE,
        ),
    )


def _diagnoses(node: Node | None) -> tuple[Diagnosis, ...]:
    if node is None:
        return ()
    out = []
    for name, primary in (("PrimaryDiagnosis", True), ("SecondaryDiagnosis", False)):
        for item in node.all(name):
            code = item.text_of("Code")
            if code is not None:
                out.append(Diagnosis(code, item.text_of("Text"), primary))
    return tuple(out)


def _icf(node: Node | None, issues: IssueCollector) -> tuple[IcfClassification, ...]:
    if node is None:
        return ()
    out = []
    for item in node.all("ICFClassification"):
        code = item.text_of("ICFCode")
        gradient = read_integer(
            item.text_of("ICFGradient"), item.child_path("ICFGradient"), issues, 0, 4
        )
        if code is not None and gradient is not None:
            out.append(IcfClassification(code, gradient, item.text_of("Text")))
    return tuple(out)


def read_rehab_plan(root: Node, issues: IssueCollector) -> RehabPlan | None:
    """The model, or None when ``issues`` holds errors (then nothing is half-built)."""
    envelope = root.one("Envelope")
    plan = root.one("RehabilitationPlan")
    if envelope is None or plan is None:
        return None
    sent = envelope.one("Sent")
    letter = plan.one("Letter")
    sender, receiver = plan.one("Sender"), plan.one("Receiver")
    signed_by, patient = plan.one("SignedBy"), plan.one("Patient")
    contact = plan.one("CurrentHospitalContact")
    if None in (sent, letter, sender, receiver, signed_by, patient, contact):
        return None
    assert sent is not None and letter is not None and sender is not None  # noqa: S101
    assert receiver is not None and signed_by is not None and patient is not None  # noqa: S101
    assert contact is not None  # noqa: S101

    sent_day = read_date(sent.text_of("Date"), sent.child_path("Date"), issues)
    sent_time = read_time(sent.text_of("Time"), sent.child_path("Time"), issues)
    authorisation = letter.one("Authorisation")
    auth_day = auth_time = None
    if authorisation is not None:
        auth_day = read_date(
            authorisation.text_of("Date"), authorisation.child_path("Date"), issues
        )
        auth_time = read_time(
            authorisation.text_of("Time"), authorisation.child_path("Time"), issues
        )
    envelope_id = read_id(envelope.text_of("Identifier"), envelope.child_path("Identifier"), issues)
    letter_id = read_id(letter.text_of("Identifier"), letter.child_path("Identifier"), issues)
    sender_info = _organisation_info(sender, "hospital", issues)
    receiver_info = _organisation_info(receiver, "rehab-unit", issues)
    cpr = read_checked(
        patient.text_of("CivilRegistrationNumber"),
        patient.child_path("CivilRegistrationNumber"),
        issues,
        is_valid_cpr,
        CPR_RULE,
    )
    consent = read_boolean(
        plan.text_of("ConsentInformed"), plan.child_path("ConsentInformed"), issues
    )
    plan_type = read_code(
        plan.text_of("TypeOfRehabilitationPlan"),
        plan.child_path("TypeOfRehabilitationPlan"),
        issues,
        PLAN_TYPES,
    )
    deadline_node = plan.one("RehabilitationDeadline")
    deadline = deadline_text = None
    if deadline_node is not None:
        deadline = read_date(
            deadline_node.text_of("Date"), deadline_node.child_path("Date"), issues
        )
        deadline_text = deadline_node.text
        if deadline_node.text_of("Date") is None and deadline_text is None:
            issues.error(deadline_node.path, "must hold a Date or a text")
    start, end = contact.one("Start"), contact.one("End")
    admitted = read_date(start.text_of("Date"), start.child_path("Date"), issues) if start else None
    discharged = read_date(end.text_of("Date"), end.child_path("Date"), issues) if end else None
    if admitted and discharged and discharged < admitted:
        issues.error(contact.child_path("End"), "the discharge date is before the admission date")
    control = plan.one("HospitalAmbulatoryControl")
    control_date = (
        read_date(control.text_of("Date"), control.child_path("Date"), issues) if control else None
    )
    diagnoses = _diagnoses(plan.one("ICD10Diagnoses"))
    icf = _icf(plan.one("ICFClassifications"), issues)
    relatives = tuple(
        Contact(
            relationship=r.text_of("RelationCode"),
            given=r.text_of("PersonGivenName"),
            family=r.text_of("PersonSurnameName"),
            telephone=r.text_of("TelephoneSubscriberIdentifier"),
        )
        for r in plan.all("Relatives")
    )
    signer = _clinician_info(signed_by, issues)
    co_writers = tuple(_clinician_info(c, issues) for c in plan.all("CoWriter"))
    health_summary = plan.text_of("PatientHealthSummary")
    ability = plan.text_of("AbilityAtDischargeSummary")
    need = plan.text_of("RehabilitationNeedAndPotential")
    if issues.has_errors:
        return None
    # Without errors every required value above is present (the shape guaranteed it).
    assert sent_day and auth_day and envelope_id and letter_id and cpr  # noqa: S101
    assert consent is not None and plan_type and admitted and discharged  # noqa: S101
    assert health_summary and ability and need  # noqa: S101
    given = patient.text_of("PersonGivenName")
    return RehabPlan(
        envelope_id=envelope_id,
        sent=local_datetime(sent_day, sent_time),
        letter_id=letter_id,
        authorised=local_datetime(auth_day, auth_time),
        sender=sender_info,
        receiver=receiver_info,
        signed_by=signer,
        co_writers=co_writers,
        patient=PlanPatient(
            cpr=cpr,
            name=PersonInfo(
                given=tuple(given.split()) if given else (),
                family=patient.text_of("PersonSurnameName"),
            ),
            address=Address(
                patient.text_of("StreetName"),
                patient.text_of("PostCodeIdentifier"),
                patient.text_of("DistrictName"),
            ),
            telephone=patient.text_of("TelephoneSubscriberIdentifier"),
            occupation=patient.text_of("Occupation"),
        ),
        relatives=relatives,
        consent_informed=consent,
        plan_type=plan_type,
        diagnoses=diagnoses,
        health_summary=health_summary,
        ability_summary=ability,
        ability_extended=plan.text_of("AbilityAtDischargeExtended"),
        icf=icf,
        need_and_potential=need,
        deadline=deadline,
        deadline_text=deadline_text,
        admitted=admitted,
        discharged=discharged,
        ambulatory_control_date=control_date,
        ambulatory_control_text=control.text_of("Text") if control else None,
        contact_municipality=plan.text_of("ContactMunicipality"),
        health_care_team=plan.text_of("HealthCareTeam"),
        journal_excerpt=plan.text_of("JournalExcerpt"),
    )
