"""Domain scenarios: Ole's rehab plan, Birgitte's mental-health data, the employer, the portal."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from consent_builders import (
    BIRGITTE,
    EMPLOYER,
    GP,
    HOSPITAL,
    ICD10,
    JOBCENTRE,
    JOBCENTRE_ROSKILDE,
    LOINC,
    NOW,
    OLE,
    PORTAL_OLE,
    REHAB_UNIT,
    SKS_D,
    actor_kind,
    actor_org,
    concept,
    consent,
    org,
    provision,
    ref,
    resource,
)

from consent import (
    Decision,
    Requester,
    active_consents,
    compile_consent,
    contains_diagnosis,
    decide,
    filter_visible,
    supporting_resources_visible,
)

# --- Ole: a rehabilitation plan from the hospital to the municipal rehab unit -----------------

REHAB_PLAN = resource(
    "ServiceRequest",
    "plan-ole",
    labels=("rehab-plan",),
    author="auh-ortopaedi",
    addressees=("aarhus-genoptraening",),
    intent="plan",
    status="active",
    authoredOn="2024-05-02",
    reasonReference=[ref("Condition/dm545-ole")],
)
PLAN_DIAGNOSIS = resource(
    "Condition",
    "dm545-ole",
    labels=("rehab-plan",),
    author="auh-ortopaedi",
    addressees=("aarhus-genoptraening",),
    code=concept(SKS_D, "DM545", "Lændesmerter"),
    recordedDate="2024-05-02",
)
STATUS_NOTE = resource(
    "Communication",
    "status-6w-ole",
    labels=("rehab-progress",),
    author="aarhus-genoptraening",
    sent="2024-06-12T09:00:00+02:00",
)
OLE_PATIENT: dict[str, Any] = {"resourceType": "Patient", "id": "ole"}

OLE_CONSENT = consent(
    "ole-jobcentre",
    actors=[actor_org("jobcenter-aarhus")],
    purposes=("sickness-benefit-follow-up",),
    labels=("rehab-plan", "rehab-progress"),
    period={"start": "2024-05-10", "end": "2024-11-10"},
)


def _decide(requester: Requester, res: dict[str, Any], *consents: dict[str, Any]) -> Decision:
    return decide(requester, res, list(consents), now=NOW)


def test_the_author_reads_what_it_wrote() -> None:
    decision = _decide(HOSPITAL, REHAB_PLAN)
    assert (decision.effect, decision.rule, decision.consent) == ("permit", "author", None)
    assert decision.resource is REHAB_PLAN
    assert decision.target == "ServiceRequest/plan-ole"


def test_the_addressee_reads_the_plan_and_its_diagnosis() -> None:
    for res in (REHAB_PLAN, PLAN_DIAGNOSIS):
        decision = _decide(REHAB_UNIT, res)
        assert (decision.effect, decision.rule) == ("permit", "addressee")


def test_addressed_by_element_to_the_requesters_organization() -> None:
    task = resource("Task", "t1", patient_element="for", owner=ref(org("laegerne-soendergade")))
    assert _decide(GP, task).rule == "addressee"
    assert _decide(JOBCENTRE, task).effect == "deny"


def test_own_department_by_managing_organization() -> None:
    case = resource(
        "EpisodeOfCare",
        "case-ole",
        patient_element="patient",
        labels=("sickness-benefit-case",),
        author="kmd-sag",
        author_kind="jobcentre",
        managingOrganization=ref("http://gw.example/fhir/Organization/org-jobcenter-aarhus"),
    )
    assert _decide(JOBCENTRE, case).rule == "own-department"
    assert _decide(JOBCENTRE_ROSKILDE, case).rule == "default-deny"
    # Without the author-kind tag the author could be on the health side: fail closed.
    untagged = {**case, "meta": {**case["meta"], "tag": []}}
    assert _decide(JOBCENTRE, untagged).rule == "cross-sector-needs-consent"


def test_the_job_centre_sees_nothing_without_consent() -> None:
    for res in (REHAB_PLAN, STATUS_NOTE):
        decision = _decide(JOBCENTRE, res)
        assert (decision.effect, decision.rule, decision.resource) == ("deny", "default-deny", None)


def test_the_job_centre_sees_the_plan_under_oles_consent() -> None:
    decision = _decide(JOBCENTRE, REHAB_PLAN, OLE_CONSENT)
    assert (decision.effect, decision.rule) == ("permit", "consent")
    assert decision.consent == "Consent/ole-jobcentre"
    assert _decide(JOBCENTRE, STATUS_NOTE, OLE_CONSENT).permitted


def test_the_consent_names_the_job_centre_not_another_one() -> None:
    assert _decide(JOBCENTRE_ROSKILDE, REHAB_PLAN, OLE_CONSENT).rule == "default-deny"


def test_withdrawn_consent_takes_effect_at_once() -> None:
    withdrawn = {**OLE_CONSENT, "status": "inactive"}
    assert _decide(JOBCENTRE, REHAB_PLAN, withdrawn).rule == "default-deny"
    assert active_consents([withdrawn, OLE_CONSENT], now=NOW) == [compile_consent(OLE_CONSENT)]


@pytest.mark.parametrize("days", [-40, 160])
def test_outside_the_consent_period(days: int) -> None:
    decision = decide(JOBCENTRE, REHAB_PLAN, [OLE_CONSENT], now=NOW + timedelta(days=days))
    assert decision.rule == "default-deny"


def test_the_last_day_of_the_period_counts_in_danish_time() -> None:
    consent_ = consent("c", actors=[actor_org("jobcenter-aarhus")], period={"end": "2024-06-15"})
    late_evening = NOW.replace(hour=21, minute=59)  # 23:59 in Copenhagen
    after_midnight = NOW.replace(hour=22, minute=1)
    assert decide(JOBCENTRE, STATUS_NOTE, [consent_], now=late_evening).permitted
    assert not decide(JOBCENTRE, STATUS_NOTE, [consent_], now=after_midnight).permitted


def test_purpose_mismatch() -> None:
    other_purpose = Requester(
        "jobcenter-aarhus", "jobcentre", org("jobcenter-aarhus"), "round-table-meeting"
    )
    no_purpose = Requester("jobcenter-aarhus", "jobcentre", org("jobcenter-aarhus"))
    assert _decide(other_purpose, REHAB_PLAN, OLE_CONSENT).rule == "default-deny"
    assert _decide(no_purpose, REHAB_PLAN, OLE_CONSENT).rule == "default-deny"


def test_category_not_consented() -> None:
    statement = resource("QuestionnaireResponse", "lae285", labels=("medical-statement",))
    assert _decide(JOBCENTRE, statement, OLE_CONSENT).rule == "default-deny"


def test_unlabelled_data_needs_an_unrestricted_provision() -> None:
    unlabelled = resource("Observation", "o1", code=concept(LOINC, "8867-4"))
    assert _decide(JOBCENTRE, unlabelled, OLE_CONSENT).rule == "default-deny"
    broad = consent("broad", actors=[actor_org("jobcenter-aarhus")])
    assert _decide(JOBCENTRE, unlabelled, broad).rule == "consent"


def test_actor_by_participant_kind() -> None:
    every_jobcentre = consent("kind", actors=[actor_kind("jobcentre")], labels=("rehab-plan",))
    assert _decide(JOBCENTRE_ROSKILDE, REHAB_PLAN, every_jobcentre).permitted
    assert not _decide(GP, REHAB_PLAN, every_jobcentre).permitted


def test_an_actor_needs_the_recipient_role() -> None:
    actor = actor_org("jobcenter-aarhus")
    actor["role"] = concept("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "CST")
    assert _decide(JOBCENTRE, REHAB_PLAN, consent("c", actors=[actor])).rule == "default-deny"


def test_deny_exception_wins_and_is_named() -> None:
    with_exception = consent(
        "ole-no-conditions",
        actors=[actor_org("jobcenter-aarhus")],
        labels=("rehab-plan",),
        nested=[provision("deny", classes=("Condition",))],
    )
    decision = _decide(JOBCENTRE, PLAN_DIAGNOSIS, with_exception, OLE_CONSENT)
    assert (decision.rule, decision.consent) == (
        "consent-deny-exception",
        "Consent/ole-no-conditions",
    )
    assert _decide(JOBCENTRE, REHAB_PLAN, with_exception).rule == "consent"


def test_class_restriction() -> None:
    plans_only = consent(
        "plans", actors=[actor_org("jobcenter-aarhus")], classes=("ServiceRequest",)
    )
    assert _decide(JOBCENTRE, REHAB_PLAN, plans_only).permitted
    assert _decide(JOBCENTRE, PLAN_DIAGNOSIS, plans_only).rule == "default-deny"


def test_data_period() -> None:
    recent = consent(
        "recent", actors=[actor_org("jobcenter-aarhus")], data_period={"start": "2024-06-01"}
    )
    assert _decide(JOBCENTRE, STATUS_NOTE, recent).permitted  # sent 2024-06-12
    assert _decide(JOBCENTRE, REHAB_PLAN, recent).rule == "default-deny"  # authored 2024-05-02
    undated = resource("Basic", "b1", last_updated="not-a-date")
    assert _decide(JOBCENTRE, undated, recent).rule == "default-deny"


def test_consents_of_another_patient_do_not_count() -> None:
    birgitte_plan = resource("ServiceRequest", "plan-b", BIRGITTE, labels=("rehab-plan",))
    assert _decide(JOBCENTRE, birgitte_plan, OLE_CONSENT).rule == "default-deny"


def test_an_unreadable_provision_element_fails_closed() -> None:
    odd = consent("odd", actors=[actor_org("jobcenter-aarhus")])
    odd["provision"]["code"] = [concept(LOINC, "11488-4")]
    assert _decide(JOBCENTRE, REHAB_PLAN, odd).rule == "default-deny"


# --- Birgitte: mental-health data ---------------------------------------------------------------

STRESS = resource(
    "Condition",
    "stress-birgitte",
    BIRGITTE,
    labels=("medical-statement", "mental-health"),
    code=concept(ICD10, "F43.0"),
)


def test_mental_health_stays_hidden_unless_named() -> None:
    statements = consent(
        "b-statements",
        BIRGITTE,
        actors=[actor_org("jobcenter-roskilde")],
        labels=("medical-statement",),
    )
    unrestricted = consent("b-all", BIRGITTE, actors=[actor_org("jobcenter-roskilde")])
    decision = _decide(JOBCENTRE_ROSKILDE, STRESS, statements, unrestricted)
    assert (decision.effect, decision.rule) == ("deny", "mental-health-not-named")
    assert decision.consent == "Consent/b-all"  # same dateTime: the first by id
    named = consent(
        "b-named",
        BIRGITTE,
        actors=[actor_org("jobcenter-roskilde")],
        labels=("medical-statement", "mental-health"),
    )
    assert _decide(JOBCENTRE_ROSKILDE, STRESS, statements, named).consent == "Consent/b-named"


def test_naming_mental_health_alone_does_not_open_other_categories() -> None:
    mental_only = consent(
        "b-mh", BIRGITTE, actors=[actor_org("jobcenter-roskilde")], labels=("mental-health",)
    )
    assert not _decide(JOBCENTRE_ROSKILDE, STRESS, mental_only).permitted


# --- the employer ---------------------------------------------------------------------------------

HOURS = resource(
    "Observation",
    "hours-ole",
    labels=("medical-statement", "employment-relevant"),
    code=concept(LOINC, "hours-per-week"),
    valueQuantity={"value": 20, "unit": "h/wk"},
    effectiveDateTime="2024-06-01",
)
ACCOMMODATIONS = resource(
    "Observation",
    "skaanehensyn-ole",
    labels=("medical-statement", "employment-relevant"),
    code=concept(LOINC, "accommodations"),
    valueString="no lifting over 10 kg",
    reasonCode=[concept(SKS_D, "DM545")],
)
RETURN_PLAN = resource(
    "CarePlan",
    "optrapning-ole",
    labels=("sickness-benefit-case", "employment-relevant"),
    status="active",
    intent="plan",
    addresses=[ref("Condition/dm545-ole")],
    activity=[{"detail": {"status": "scheduled", "description": "20 h/week Mon-Thu"}}],
)
LAE285 = resource(
    "QuestionnaireResponse",
    "lae285-ole",
    labels=("medical-statement", "employment-relevant"),
    status="completed",
    questionnaire="http://brobygger.dk/fhir/Questionnaire/lae285|1.0",
    item=[
        {"linkId": "2.1", "answer": [{"valueCoding": {"system": SKS_D, "code": "DM545"}}]},
        {"linkId": "3.1", "answer": [{"valueCoding": {"code": "delvis"}}]},
        {"linkId": "3.2", "answer": [{"valueDecimal": 20}]},
        {"linkId": "4.1", "answer": [{"valueCoding": {"system": ICD10, "code": "M54.5"}}]},
    ],
)
EMPLOYER_CONSENT = consent(
    "ole-employer",
    actors=[actor_org("lys-montage")],
    purposes=("round-table-meeting",),
    labels=("employment-relevant",),
)


def test_the_employer_sees_employment_relevant_data() -> None:
    decision = _decide(EMPLOYER, HOURS, EMPLOYER_CONSENT)
    assert (decision.effect, decision.rule, decision.consent) == (
        "permit",
        "consent",
        "Consent/ole-employer",
    )


def test_the_employer_never_sees_a_reason_or_a_diagnosis() -> None:
    for res in (ACCOMMODATIONS, RETURN_PLAN):
        decision = _decide(EMPLOYER, res, EMPLOYER_CONSENT)
        assert decision.effect == "permit-with-redaction"
        assert decision.resource is not None
        assert not contains_diagnosis(decision.resource)
        assert "reasonCode" not in decision.resource and "addresses" not in decision.resource
    assert "reasonCode" in ACCOMMODATIONS  # the input is left alone
    plan = _decide(EMPLOYER, RETURN_PLAN, EMPLOYER_CONSENT).resource
    assert plan is not None and plan["activity"] == RETURN_PLAN["activity"]


def test_questionnaire_items_with_diagnoses_are_removed() -> None:
    decision = _decide(EMPLOYER, LAE285, EMPLOYER_CONSENT)
    assert decision.effect == "permit-with-redaction"
    assert decision.resource is not None
    assert [item["linkId"] for item in decision.resource["item"]] == ["3.1", "3.2"]


def test_the_employer_never_sees_a_condition_nor_unlabelled_data() -> None:
    labelled_condition = {**PLAN_DIAGNOSIS, "meta": {"security": HOURS["meta"]["security"]}}
    decision = _decide(EMPLOYER, labelled_condition, EMPLOYER_CONSENT)
    assert (decision.rule, decision.resource) == ("employer-diagnosis", None)
    decision = _decide(EMPLOYER, REHAB_PLAN, EMPLOYER_CONSENT)
    assert decision.rule == "employer-not-employment-relevant"


def test_an_observation_that_is_a_diagnosis_is_denied() -> None:
    diagnosis = {**HOURS, "code": concept(ICD10, "M54.5")}
    assert _decide(EMPLOYER, diagnosis, EMPLOYER_CONSENT).rule == "employer-diagnosis"


def test_employer_addressed_statement_is_still_redacted() -> None:
    statement = resource(
        "QuestionnaireResponse",
        "mulighed",
        labels=("medical-statement", "employment-relevant"),
        author="laegerne-soendergade",
        author_kind="gp",
        addressees=("lys-montage",),
        legal_bases=("employer-requested-statement",),
        questionnaire="http://brobygger.dk/fhir/Questionnaire/mulighed",
        item=[
            {"linkId": "2.1", "answer": [{"valueString": "cannot lift"}]},
            {"linkId": "2.4", "answer": [{"valueCoding": {"system": SKS_D, "code": "DM545"}}]},
        ],
    )
    decision = _decide(EMPLOYER, statement)
    assert (decision.effect, decision.rule) == ("permit-with-redaction", "addressee")
    assert decision.resource is not None
    assert [item["linkId"] for item in decision.resource["item"]] == ["2.1"]


# --- the citizen portal ---------------------------------------------------------------------


def test_the_portal_sees_everything_about_its_citizen_only() -> None:
    assert _decide(PORTAL_OLE, PLAN_DIAGNOSIS).rule == "citizen-access"
    assert _decide(PORTAL_OLE, OLE_CONSENT).rule == "citizen-access"
    assert _decide(PORTAL_OLE, OLE_PATIENT).rule == "citizen-access"
    assert _decide(PORTAL_OLE, STRESS).rule == "citizen-other-patient"
    audit = {
        "resourceType": "AuditEvent",
        "id": "a1",
        "entity": [{"what": ref("ServiceRequest/plan-ole")}, {"what": ref(OLE)}],
    }
    assert _decide(PORTAL_OLE, audit).rule == "citizen-access"
    nobody = Requester("borger-dk", "citizen-portal", None, "citizen-access", None)
    assert _decide(nobody, PLAN_DIAGNOSIS).rule == "citizen-other-patient"


# --- supporting resources, batches ---------------------------------------------------------


def test_directory_resources_are_visible_to_everyone() -> None:
    organization = {"resourceType": "Organization", "id": "org-auh-ortopaedi"}
    for requester in (JOBCENTRE, EMPLOYER, PORTAL_OLE):
        assert _decide(requester, organization).rule == "directory"
        assert supporting_resources_visible(requester, organization, has_visible_record=False)


def test_a_patient_comes_along_with_a_visible_record() -> None:
    assert _decide(JOBCENTRE, OLE_PATIENT, OLE_CONSENT).rule == "default-deny"
    decision = decide(JOBCENTRE, OLE_PATIENT, [OLE_CONSENT], now=NOW, has_visible_record=True)
    assert decision.rule == "supporting"
    assert supporting_resources_visible(JOBCENTRE, OLE_PATIENT, has_visible_record=True)
    assert not supporting_resources_visible(JOBCENTRE, OLE_PATIENT, has_visible_record=False)
    assert not supporting_resources_visible(JOBCENTRE, REHAB_PLAN, has_visible_record=True)


def test_filter_visible_on_a_search_page() -> None:
    page = [OLE_PATIENT, REHAB_PLAN, PLAN_DIAGNOSIS, STATUS_NOTE, STRESS]
    birgitte_patient = {"resourceType": "Patient", "id": "birgitte"}
    decisions = filter_visible(
        JOBCENTRE,
        [*page, birgitte_patient],
        {OLE: [OLE_CONSENT], BIRGITTE: []},
        now=NOW,
    )
    assert [d.rule for d in decisions] == [
        "supporting",
        "consent",
        "consent",
        "consent",
        "default-deny",
        "default-deny",
    ]
    assert [d.target for d in decisions][:2] == ["Patient/ole", "ServiceRequest/plan-ole"]
