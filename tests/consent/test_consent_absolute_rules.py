"""The absolute rules come first: employer labels, mental health, the health → employment
crossing (legal bases), and a supporting rule that writing cannot reach (issue 9)."""

from __future__ import annotations

from typing import Any

import pytest
from consent_builders import (
    BIRGITTE,
    EMPLOYER,
    GP,
    HOSPITAL,
    JOBCENTRE,
    JOBCENTRE_ROSKILDE,
    LOINC,
    NOW,
    OLE,
    REHAB_UNIT,
    ROSKILDE_EMPLOYER,
    SKS_D,
    actor_org,
    concept,
    consent,
    org,
    ref,
    resource,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import (
    AUTHOR_KIND_SYSTEM,
    LEGAL_BASES,
    LEGAL_BASIS_SYSTEM,
    Decision,
    Requester,
    author_kind_of,
    decide,
    filter_visible,
    legal_bases_of,
    stamp_author,
    supporting_resources_visible,
    supports_patient,
)


def _decide(requester: Requester, res: dict[str, Any], *consents: dict[str, Any]) -> Decision:
    return decide(requester, res, list(consents), now=NOW)


# --- the employer: labels bind the addressee and own-department paths -------------------------

# Issue 9, example 6: a mental-health rehab-progress Observation addressed to the employer.
MENTAL_HEALTH_PROGRESS = resource(
    "Observation",
    "progress-ole",
    labels=("rehab-progress", "mental-health", "employment-relevant"),
    author="aarhus-genoptraening",
    author_kind="rehab-unit",
    addressees=("lys-montage",),
    legal_bases=("employer-requested-statement",),
    code=concept(LOINC, "fear-avoidance"),
    valueInteger=41,
)
EMPLOYER_EVERYTHING = consent(
    "ole-employer-all",
    actors=[actor_org("lys-montage")],
    labels=("employment-relevant", "mental-health", "rehab-progress"),
)


def test_an_addressed_employer_never_sees_mental_health_data() -> None:
    assert _decide(EMPLOYER, MENTAL_HEALTH_PROGRESS).rule == "employer-mental-health"
    # Not with a legal basis, not with a consent that names mental health, not as its owner.
    assert _decide(EMPLOYER, MENTAL_HEALTH_PROGRESS, EMPLOYER_EVERYTHING).rule == (
        "employer-mental-health"
    )
    owned = resource(
        "EpisodeOfCare",
        "eoc",
        labels=("employment-relevant", "mental-health"),
        author="jobcenter-aarhus",
        author_kind="jobcentre",
        patient_element="patient",
        managingOrganization=ref(org("lys-montage")),
    )
    assert _decide(EMPLOYER, owned).rule == "employer-mental-health"


def test_an_addressed_employer_sees_only_employment_relevant_data() -> None:
    invitation = resource(
        "Appointment",
        "round-table",
        None,
        author="jobcenter-aarhus",
        author_kind="jobcentre",
        status="booked",
        reasonCode=[concept(SKS_D, "DM545", "Lændesmerter")],
        participant=[{"actor": ref(OLE)}, {"actor": ref(org("lys-montage"))}],
    )
    assert _decide(EMPLOYER, invitation).rule == "employer-not-employment-relevant"
    labelled = {**invitation, "meta": {**invitation["meta"]}}
    labelled["meta"]["security"] = [
        {"system": "http://brobygger.dk/fhir/CodeSystem/data-category", "code": c}
        for c in ("sickness-benefit-case", "employment-relevant")
    ]
    decision = _decide(EMPLOYER, labelled)
    # Job centre → employer is employment → employment: no legal basis needed; no diagnosis.
    assert (decision.effect, decision.rule) == ("permit-with-redaction", "addressee")
    assert decision.resource is not None and "reasonCode" not in decision.resource


def test_the_employer_reads_what_it_wrote() -> None:
    note = resource("Communication", "note", author="lys-montage", author_kind="employer")
    assert _decide(EMPLOYER, note).rule == "author"
    assert _decide(ROSKILDE_EMPLOYER, note).rule == "employer-not-employment-relevant"


def test_the_patient_comes_along_for_an_employer_but_not_by_consent_alone() -> None:
    patient = {"resourceType": "Patient", "id": "ole"}
    shown = decide(EMPLOYER, patient, [], now=NOW, has_visible_record=True)
    assert shown.rule == "supporting"
    broad = consent("ole-employer-broad", actors=[actor_org("lys-montage")])
    assert _decide(EMPLOYER, patient, broad).rule == "employer-not-employment-relevant"


# --- health → employment: a consent or a legal basis ------------------------------------------

# Issue 9, example 6: a rehab unit's scores reach the caseworker with no consent.
SCORES = resource(
    "Observation",
    "odi-ole",
    labels=("rehab-progress",),
    author="aarhus-genoptraening",
    author_kind="rehab-unit",
    addressees=("jobcenter-aarhus",),
    code=concept(LOINC, "97909-6"),
    effectiveDateTime="2024-06-12",
    valueQuantity={"value": 38, "unit": "%"},
)
STATUS_NOTE = resource(
    "Communication",
    "status-6w",
    labels=("rehab-progress",),
    author="aarhus-genoptraening",
    author_kind="rehab-unit",
    sent="2024-06-12T09:00:00+02:00",
    recipient=[ref(org("jobcenter-aarhus"))],
)
OLE_CONSENT = consent(
    "ole-jobcentre",
    actors=[actor_org("jobcenter-aarhus")],
    purposes=("sickness-benefit-follow-up",),
    labels=("rehab-plan", "rehab-progress"),
)


@pytest.mark.parametrize("res", [SCORES, STATUS_NOTE], ids=["tag", "recipient"])
def test_rehab_scores_reach_the_caseworker_only_under_consent(res: dict[str, Any]) -> None:
    denied = _decide(JOBCENTRE, res)
    assert (denied.effect, denied.rule, denied.resource) == (
        "deny",
        "cross-sector-needs-consent",
        None,
    )
    permitted = _decide(JOBCENTRE, res, OLE_CONSENT)
    assert (permitted.rule, permitted.consent) == ("consent", "Consent/ole-jobcentre")


def test_a_consent_exception_still_names_its_consent() -> None:
    with_exception = consent(
        "ole-no-scores",
        actors=[actor_org("jobcenter-aarhus")],
        labels=("rehab-progress",),
        nested=[{"type": "deny", "class": [{"code": "Observation"}]}],
    )
    decision = _decide(JOBCENTRE, SCORES, with_exception)
    assert (decision.rule, decision.consent) == ("consent-deny-exception", "Consent/ole-no-scores")


LAE285_ANSWER = resource(
    "QuestionnaireResponse",
    "lae285-ole",
    labels=("medical-statement", "employment-relevant"),
    author="laegerne-soendergade",
    author_kind="gp",
    addressees=("jobcenter-aarhus",),
    legal_bases=("requested-statement",),
    status="completed",
    questionnaire="http://brobygger.dk/fhir/Questionnaire/lae285|1.0",
    authored="2024-06-01",
)


def test_a_requested_statement_reaches_the_job_centre_that_asked() -> None:
    assert _decide(JOBCENTRE, LAE285_ANSWER).rule == "addressee"
    # Another job centre is not its addressee; the legal basis opens only that path.
    assert _decide(JOBCENTRE_ROSKILDE, LAE285_ANSWER).rule == "default-deny"


def test_a_legal_basis_never_opens_mental_health_data() -> None:
    stress = resource(
        "Observation",
        "stress-b",
        BIRGITTE,
        labels=("medical-statement", "mental-health"),
        author="laegehuset-roskilde",
        author_kind="gp",
        addressees=("jobcenter-roskilde",),
        legal_bases=("requested-statement",),
        code=concept(LOINC, "work-capacity"),
    )
    assert _decide(JOBCENTRE_ROSKILDE, stress).rule == "cross-sector-needs-consent"
    statements = consent(
        "b-st", BIRGITTE, actors=[actor_org("jobcenter-roskilde")], labels=("medical-statement",)
    )
    assert _decide(JOBCENTRE_ROSKILDE, stress, statements).rule == "mental-health-not-named"
    named = consent(
        "b-mh",
        BIRGITTE,
        actors=[actor_org("jobcenter-roskilde")],
        labels=("medical-statement", "mental-health"),
    )
    assert _decide(JOBCENTRE_ROSKILDE, stress, named).rule == "consent"


@pytest.mark.parametrize(
    ("basis", "resource_type", "requester", "opens"),
    [
        ("requested-statement", "QuestionnaireResponse", JOBCENTRE, True),
        ("requested-statement", "QuestionnaireResponse", EMPLOYER, False),
        ("employer-requested-statement", "QuestionnaireResponse", EMPLOYER, True),
        ("employer-requested-statement", "QuestionnaireResponse", JOBCENTRE, False),
        ("round-table-invitation", "Appointment", JOBCENTRE, True),
        ("round-table-invitation", "Appointment", EMPLOYER, True),
        ("round-table-invitation", "AppointmentResponse", JOBCENTRE, True),
        ("round-table-invitation", "Observation", JOBCENTRE, False),
        ("no-such-basis", "QuestionnaireResponse", JOBCENTRE, False),
    ],
)
def test_each_legal_basis_opens_its_kinds_and_types_only(
    basis: str, resource_type: str, requester: Requester, opens: bool
) -> None:
    res = resource(
        resource_type,
        "x",
        labels=("employment-relevant",),
        author="aarhus-genoptraening",
        author_kind="rehab-unit",
        addressees=(requester.participant,),
        legal_bases=(basis,),
    )
    decision = _decide(requester, res)
    assert decision.rule == ("addressee" if opens else "cross-sector-needs-consent")
    assert legal_bases_of(res) == (frozenset({basis}) if basis in LEGAL_BASES else frozenset())


def test_an_unknown_author_kind_fails_closed() -> None:
    untagged = resource(
        "Observation",
        "o",
        labels=("sickness-benefit-case",),
        author="jobcenter-roskilde",
        addressees=("jobcenter-aarhus",),
    )
    assert author_kind_of(untagged) is None
    assert _decide(JOBCENTRE, untagged).rule == "cross-sector-needs-consent"
    tagged = stamp_author(untagged, "jobcenter-roskilde", "jobcentre")
    assert _decide(JOBCENTRE, tagged).rule == "addressee"
    # Conflicting tags, an unknown code, or a kind without an author: unknown again.
    twice = {**tagged, "meta": {**tagged["meta"]}}
    twice["meta"]["tag"] = [*tagged["meta"]["tag"], {"system": AUTHOR_KIND_SYSTEM, "code": "gp"}]
    assert author_kind_of(twice) is None
    odd = {**tagged, "meta": {**tagged["meta"]}}
    odd["meta"]["tag"] = [{"system": AUTHOR_KIND_SYSTEM, "code": "jobcenter"}]
    assert author_kind_of(odd) is None
    sourceless = {**tagged, "meta": {k: v for k, v in tagged["meta"].items() if k != "source"}}
    assert author_kind_of(sourceless) is None
    assert _decide(JOBCENTRE, sourceless).rule == "cross-sector-needs-consent"


def test_other_directions_are_as_before() -> None:
    # Employment → health: the job centre's request to the GP.
    task = resource(
        "Task",
        "t",
        author="jobcenter-aarhus",
        author_kind="jobcentre",
        patient_element="for",
        owner=ref(org("laegerne-soendergade")),
    )
    assert _decide(GP, task).rule == "addressee"
    # Health → health: the rehab unit's note to the GP; the hospital's plan to the rehab unit,
    # also untagged (legacy data).
    note = {**STATUS_NOTE, "recipient": [ref(org("laegerne-soendergade"))]}
    assert _decide(GP, note).rule == "addressee"
    plan = resource(
        "ServiceRequest", "plan", labels=("rehab-plan",), addressees=("aarhus-genoptraening",)
    )
    assert _decide(REHAB_UNIT, plan).rule == "addressee"
    assert _decide(HOSPITAL, {**plan, "performer": [ref(org("auh-ortopaedi"))]}).rule == (
        "addressee"
    )


def test_the_legal_basis_tags_are_read_from_their_own_system_only() -> None:
    res = resource("Observation", "o", author="aarhus-genoptraening", author_kind="rehab-unit")
    res["meta"]["tag"].append({"system": "http://example.org/legal", "code": "requested-statement"})
    assert legal_bases_of(res) == frozenset()
    res["meta"]["tag"].append({"system": LEGAL_BASIS_SYSTEM, "code": "requested-statement"})
    assert legal_bases_of(res) == frozenset({"requested-statement"})


# --- the supporting rule is not reachable by writing ------------------------------------------

OLE_PATIENT: dict[str, Any] = {"resourceType": "Patient", "id": "ole"}


def test_a_record_the_requester_wrote_does_not_show_the_patient() -> None:
    # Issue 9, example 3: linking a record to a hidden Patient must not reveal the Patient.
    mine = resource("Observation", "mine", author="jobcenter-aarhus", author_kind="jobcentre")
    decisions = filter_visible(JOBCENTRE, [mine, OLE_PATIENT], {OLE: []}, now=NOW)
    assert [d.rule for d in decisions] == ["author", "default-deny"]
    decisions = filter_visible(
        JOBCENTRE, [mine, SCORES, OLE_PATIENT], {OLE: [OLE_CONSENT]}, now=NOW
    )
    assert [d.rule for d in decisions] == ["author", "consent", "supporting"]
    mine = resource("Observation", "mine", author="lys-montage", author_kind="employer")
    decisions = filter_visible(EMPLOYER, [mine, OLE_PATIENT], {OLE: []}, now=NOW)
    assert [d.rule for d in decisions] == ["author", "employer-not-employment-relevant"]
    addressed = resource(
        "Observation",
        "theirs",
        labels=("sickness-benefit-case", "employment-relevant"),
        author="jobcenter-aarhus",
        author_kind="jobcentre",
        addressees=("lys-montage",),
    )
    decisions = filter_visible(EMPLOYER, [mine, addressed, OLE_PATIENT], {OLE: []}, now=NOW)
    assert [d.rule for d in decisions] == ["author", "addressee", "supporting"]


def test_supports_patient() -> None:
    def made(rule: str, effect: str = "permit") -> Decision:
        return Decision(effect, rule, "r")  # type: ignore[arg-type]

    assert not supports_patient(made("author"))
    assert not supports_patient(made("directory"))
    assert not supports_patient(made("consent", "deny"))
    for rule in ("addressee", "own-department", "consent", "citizen-access"):
        assert supports_patient(made(rule))
    assert supports_patient(made("consent", "permit-with-redaction"))


def test_supporting_resources_visible_follows_decide() -> None:
    mine = stamp_author(OLE_PATIENT, "jobcenter-aarhus", "jobcentre")
    assert supporting_resources_visible(JOBCENTRE, mine, has_visible_record=False)
    assert not supporting_resources_visible(JOBCENTRE, OLE_PATIENT, has_visible_record=False)
    assert supporting_resources_visible(JOBCENTRE, OLE_PATIENT, has_visible_record=True)
    # A Patient addressed from the health side needs a legal basis, like any record.
    to_jobcentre = resource(
        "Patient",
        "ole",
        None,
        author="auh-ortopaedi",
        author_kind="hospital",
        addressees=("jobcenter-aarhus",),
    )
    assert not supporting_resources_visible(JOBCENTRE, to_jobcentre, has_visible_record=False)
    to_rehab = resource(
        "Patient",
        "ole",
        None,
        author="auh-ortopaedi",
        author_kind="hospital",
        addressees=("aarhus-genoptraening",),
    )
    assert supporting_resources_visible(REHAB_UNIT, to_rehab, has_visible_record=False)


@settings(max_examples=300, deadline=None)
@given(
    requester=st.sampled_from([JOBCENTRE, EMPLOYER, REHAB_UNIT, GP, HOSPITAL]),
    author_kind=st.sampled_from(
        [None, "hospital", "gp", "rehab-unit", "jobcentre", "employer", "citizen-portal"]
    ),
    bases=st.lists(st.sampled_from([*LEGAL_BASES, "no-such-basis"]), max_size=2, unique=True),
    labels=st.lists(
        st.sampled_from(
            ["rehab-progress", "employment-relevant", "mental-health", "medical-statement"]
        ),
        max_size=3,
        unique=True,
    ),
    resource_type=st.sampled_from(
        ["Observation", "QuestionnaireResponse", "Appointment", "AppointmentResponse"]
    ),
)
def test_the_addressee_rule_under_the_absolute_rules(
    requester: Requester,
    author_kind: str | None,
    bases: list[str],
    labels: list[str],
    resource_type: str,
) -> None:
    res = resource(
        resource_type,
        "x",
        labels=tuple(labels),
        author="another-system",
        author_kind=author_kind,
        addressees=(requester.participant,),
        legal_bases=tuple(bases),
    )
    employment_side = requester.kind in ("jobcentre", "employer")
    crossing = employment_side and author_kind not in ("jobcentre", "employer")
    opened = any(
        requester.kind in LEGAL_BASES[code].reaches
        and resource_type in (LEGAL_BASES[code].resource_types or {resource_type})
        for code in bases
        if code in LEGAL_BASES
    )
    # The round-table invitation is for the employer by its legal basis, labelled or not.
    invited = "round-table-invitation" in bases and resource_type in (
        "Appointment",
        "AppointmentResponse",
    )
    employer_ok = requester.kind != "employer" or (
        ("employment-relevant" in labels or invited) and "mental-health" not in labels
    )
    expected = employer_ok and (not crossing or (opened and "mental-health" not in labels))
    decision = _decide(requester, res)
    assert (decision.rule == "addressee") == expected, decision
    assert decision.permitted == expected  # no consent given: nothing else discloses it
