"""Property tests: random consents, resources and requesters against the engine's promises."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from consent_builders import (
    BIRGITTE,
    ICD10,
    LOINC,
    NOW,
    OLE,
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
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import (
    ADDRESSEE_SYSTEM,
    AUTHOR_KIND_SYSTEM,
    EMPLOYMENT_SIDE,
    LEGAL_BASES,
    Requester,
    author_kind_of,
    author_of,
    contains_diagnosis,
    data_categories,
    decide,
    filter_visible,
    legal_bases_of,
    patient_of,
    redact_diagnoses,
    stamp_author,
    supports_patient,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)

PARTICIPANTS = {
    "auh-ortopaedi": "hospital",
    "aarhus-genoptraening": "rehab-unit",
    "jobcenter-aarhus": "jobcentre",
    "lys-montage": "employer",
    "laegerne-soendergade": "gp",
}
KINDS = ["hospital", "gp", "rehab-unit", "jobcentre", "employer", "citizen-portal"]
PURPOSES = [
    "sickness-benefit-follow-up",
    "rehabilitation-planning",
    "round-table-meeting",
    "medical-statement",
]
CATEGORIES = [
    "rehab-plan",
    "medical-statement",
    "rehab-progress",
    "sickness-benefit-case",
    "employment-relevant",
    "mental-health",
]
TYPES = [
    "Observation",
    "CarePlan",
    "Condition",
    "QuestionnaireResponse",
    "ServiceRequest",
    "Task",
    "EpisodeOfCare",
    "Communication",
    "Appointment",
    "Patient",
    "Organization",
]
DATES = ["2023-11-01", "2024-03", "2024-05-02", "2024-06-14T08:00:00Z", "2024-09-01", "2025"]


def _subset(items: list[str], max_size: int = 3) -> st.SearchStrategy[tuple[str, ...]]:
    return st.lists(st.sampled_from(items), max_size=max_size, unique=True).map(tuple)


def _often_empty(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly unset, so that random consents match often enough to be interesting."""
    return st.sampled_from([False, False, True]).flatmap(
        lambda restricted: strategy if restricted else st.just(())
    )


# Weighted (by repetition) towards the job centre and the employer, whom consents name.
NAMES = ["jobcenter-aarhus", "jobcenter-aarhus", "lys-montage", "lys-montage", *PARTICIPANTS]
_participants = st.builds(
    lambda name, purpose: Requester(name, PARTICIPANTS[name], org(name), purpose),
    st.sampled_from(NAMES),
    st.sampled_from([None, *PURPOSES]),
)
_portal = st.builds(
    lambda patient: Requester("borger-dk", "citizen-portal", None, "citizen-access", patient),
    st.sampled_from([OLE, BIRGITTE, None]),
)
requesters = st.sampled_from([True, True, True, True, False]).flatmap(
    lambda participant: _participants if participant else _portal
)

codes = st.one_of(
    st.builds(concept, st.just(LOINC), st.sampled_from(["8867-4", "hours"])),
    st.builds(concept, st.sampled_from([SKS_D, ICD10]), st.sampled_from(["DM545", "F43.0"])),
)
answers = st.one_of(
    st.builds(lambda v: {"valueString": v}, st.sampled_from(["delvis", "20 h"])),
    st.builds(
        lambda system, code: {"valueCoding": {"system": system, "code": code}},
        st.sampled_from([SKS_D, ICD10, "http://brobygger.dk/fhir/CodeSystem/x"]),
        st.sampled_from(["DM545", "fuld"]),
    ),
)
items = st.lists(
    st.builds(
        lambda link_id, answer: {"linkId": link_id, "answer": answer},
        st.sampled_from(["2.1", "3.1", "3.2", "4.1"]),
        st.lists(answers, min_size=1, max_size=2),
    ),
    max_size=4,
)


LEGAL_BASIS_CODES = [
    "requested-statement",
    "employer-requested-statement",
    "round-table-invitation",
    "no-such-basis",
]


@st.composite
def resources(draw: st.DrawFn, ident: str | None = None) -> dict[str, Any]:
    resource_type = draw(st.sampled_from(TYPES))
    patient = draw(st.sampled_from([OLE, OLE, OLE, BIRGITTE, None]))
    rid = ident if ident is not None else draw(st.sampled_from(["r1", "r2", "ole", "birgitte"]))
    if resource_type == "Patient":
        return {"resourceType": "Patient", "id": rid}
    elements: dict[str, Any] = {}
    if draw(st.booleans()):
        elements["code"] = draw(codes)
    if draw(st.booleans()):
        elements["reasonCode"] = [draw(codes)]
    if resource_type == "QuestionnaireResponse":
        form = draw(st.sampled_from(["lae285", "lae125", "mulighed"]))
        elements["questionnaire"] = f"http://brobygger.dk/fhir/Questionnaire/{form}|1"
        elements["item"] = draw(items)
    if resource_type == "Observation" and draw(st.booleans()):
        elements["effectiveDateTime"] = draw(st.sampled_from(DATES))
    organization = st.sampled_from(sorted(PARTICIPANTS)).map(lambda name: ref(org(name)))
    if resource_type == "Task" and draw(st.booleans()):
        elements["owner"] = draw(organization)
    if resource_type == "EpisodeOfCare" and draw(st.booleans()):
        elements["managingOrganization"] = draw(organization)
    if resource_type == "Communication" and draw(st.booleans()):
        elements["recipient"] = [draw(organization)]
    if resource_type == "Appointment":
        actors_ = [{"actor": ref(patient)}] if patient is not None else []
        if draw(st.booleans()):
            actors_.append({"actor": draw(organization)})
        elements["participant"] = actors_
        patient = None
    author = draw(st.sampled_from([None, None, None, *sorted(PARTICIPANTS)]))
    kind = None
    if author is not None:
        # Mostly the true kind; sometimes missing (unknown) or another (a stale tag).
        kind = draw(st.sampled_from([PARTICIPANTS[author], PARTICIPANTS[author], None, *KINDS]))
    return resource(
        resource_type,
        rid,
        patient,
        labels=draw(_subset(CATEGORIES)),
        author=author,
        author_kind=kind,
        addressees=draw(_often_empty(_subset(sorted(PARTICIPANTS), 1))),
        legal_bases=draw(_subset(LEGAL_BASIS_CODES, 2)),
        patient_element="patient" if resource_type == "EpisodeOfCare" else "subject",
        last_updated=draw(st.sampled_from(DATES)),
        **elements,
    )


actors = st.one_of(
    st.builds(actor_org, st.sampled_from(NAMES)),
    st.builds(actor_kind, st.sampled_from(["jobcentre", "employer", *KINDS])),
)
periods = st.one_of(
    st.none(),
    st.builds(
        lambda start, end: {k: v for k, v in (("start", start), ("end", end)) if v is not None},
        st.one_of(st.none(), st.sampled_from(DATES[:3])),
        st.one_of(st.none(), st.sampled_from(DATES[3:])),
    ),
)


@st.composite
def provisions(draw: st.DrawFn, kind: str, depth: int) -> dict[str, Any]:
    nested = []
    if depth > 0:
        nested = draw(st.lists(provisions("deny", depth - 1), max_size=2))
    return provision(
        kind,
        actors=draw(st.lists(actors, min_size=kind == "permit", max_size=2)),
        purposes=draw(_often_empty(_subset(PURPOSES, 2))),
        labels=draw(_often_empty(_subset(CATEGORIES))),
        classes=draw(_often_empty(_subset(TYPES, 3))),
        period=draw(st.one_of(st.none(), periods)),
        data_period=draw(st.one_of(st.none(), periods)),
        nested=nested,
    )


@st.composite
def consents(draw: st.DrawFn) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=0, max_value=4))
    return [
        consent(
            f"c{index}",
            draw(st.sampled_from([OLE, OLE, OLE, BIRGITTE])),
            status=draw(st.sampled_from(["active", "active", "active", "inactive"])),
            date_time=draw(st.sampled_from(DATES)),
            top=draw(provisions("permit", 1)),
        )
        for index in range(count)
    ]


def _without_mental_health(consent_: dict[str, Any]) -> dict[str, Any]:
    stripped = copy.deepcopy(consent_)
    pending = [stripped["provision"]]
    while pending:
        current = pending.pop()
        if "securityLabel" in current:
            current["securityLabel"] = [
                label for label in current["securityLabel"] if label["code"] != "mental-health"
            ]
        pending.extend(current.get("provision", []))
    return stripped


@PROPERTY_SETTINGS
@given(requesters, resources(), consents())
def test_a_denial_never_carries_a_resource(
    requester: Requester, res: dict[str, Any], consents_: list[dict[str, Any]]
) -> None:
    decision = decide(requester, res, consents_, now=NOW)
    assert (decision.resource is None) == (decision.effect == "deny")
    assert (decision.consent is not None) <= (
        decision.rule in {"consent", "consent-deny-exception", "mental-health-not-named"}
    )


@PROPERTY_SETTINGS
@given(resources(), consents(), st.sampled_from(PURPOSES))
def test_the_employer_never_receives_a_diagnosis(
    res: dict[str, Any], consents_: list[dict[str, Any]], purpose: str
) -> None:
    employer = Requester("lys-montage", "employer", org("lys-montage"), purpose)
    # A broad consent for the employer, so that the consent path is exercised often.
    broad = consent(
        "employer-broad",
        actors=[actor_org("lys-montage")],
        labels=("employment-relevant", "mental-health"),
    )
    decision = decide(employer, res, [*consents_, broad], now=NOW)
    if decision.resource is not None:
        assert not contains_diagnosis(decision.resource)
        if decision.rule not in ("author", "directory"):
            # The absolute rules bind every path but the employer's own writing.
            labels = data_categories(res)
            assert "mental-health" not in labels
            # The round-table invitation reaches the employer by its legal basis (a time and
            # a place; its reason is removed), without the employment-relevant label.
            invited = res["resourceType"] == "Appointment" and any(
                tag.get("code") == "round-table-invitation"
                for tag in res.get("meta", {}).get("tag", [])
            )
            assert "employment-relevant" in labels or res["resourceType"] == "Patient" or invited


@PROPERTY_SETTINGS
@given(requesters, resources(), consents())
def test_mental_health_needs_a_provision_that_names_it(
    requester: Requester, res: dict[str, Any], consents_: list[dict[str, Any]]
) -> None:
    security = res.get("meta", {}).get("security", [])
    if not any(label["code"] == "mental-health" for label in security):
        return
    stripped = [_without_mental_health(c) for c in consents_]
    assert decide(requester, res, stripped, now=NOW).rule != "consent"


@PROPERTY_SETTINGS
@given(requesters, resources(), consents(), st.randoms(use_true_random=False))
def test_decisions_are_deterministic_and_order_independent(
    requester: Requester, res: dict[str, Any], consents_: list[dict[str, Any]], rnd: Any
) -> None:
    first = decide(requester, res, consents_, now=NOW)
    assert decide(requester, res, consents_, now=NOW) == first
    shuffled = list(consents_)
    rnd.shuffle(shuffled)
    assert decide(requester, res, shuffled, now=NOW) == first


@PROPERTY_SETTINGS
@given(
    requesters,
    st.lists(resources(), max_size=6),
    consents(),
    st.integers(min_value=-400, max_value=400),
)
def test_filter_visible_agrees_with_decide(
    requester: Requester, page: list[dict[str, Any]], consents_: list[dict[str, Any]], days: int
) -> None:
    now = NOW + timedelta(days=days)
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for consent_ in consents_:
        by_patient.setdefault(consent_["patient"]["reference"], []).append(consent_)
    batch = filter_visible(requester, page, by_patient, now=now)
    visible = {
        patient_of(res)
        for res in page
        if res["resourceType"] != "Patient"
        and supports_patient(decide(requester, res, consents_, now=now))
    }
    expected = [
        decide(
            requester,
            res,
            consents_,
            now=now,
            has_visible_record=res["resourceType"] == "Patient" and patient_of(res) in visible,
        )
        for res in page
    ]
    assert batch == expected


@PROPERTY_SETTINGS
@given(resources())
def test_redaction_removes_every_diagnosis_and_leaves_the_input_alone(res: dict[str, Any]) -> None:
    before = copy.deepcopy(res)
    redacted = redact_diagnoses(res)
    assert res == before
    if redacted is not None:
        assert not contains_diagnosis(redacted)
        assert redact_diagnoses(redacted) == redacted
    if not contains_diagnosis(res):
        assert redacted is res


def _unaddressed(res: dict[str, Any]) -> dict[str, Any]:
    """The same resource addressed to nobody and owned by nobody."""
    body = copy.deepcopy(res)
    meta = body.get("meta", {})
    if "tag" in meta:
        meta["tag"] = [tag for tag in meta["tag"] if tag["system"] != ADDRESSEE_SYSTEM]
    for element in ("owner", "managingOrganization", "recipient"):
        body.pop(element, None)
    if "participant" in body:
        body["participant"] = [
            p
            for p in body["participant"]
            if not p["actor"]["reference"].startswith("Organization/")
        ]
    return body


@PROPERTY_SETTINGS
@given(requesters, resources(), consents())
def test_health_data_reaches_the_employment_side_only_by_consent_or_legal_basis(
    requester: Requester, res: dict[str, Any], consents_: list[dict[str, Any]]
) -> None:
    if requester.kind not in EMPLOYMENT_SIDE or author_kind_of(res) in EMPLOYMENT_SIDE:
        return
    decision = decide(requester, res, consents_, now=NOW)
    if decision.rule in ("addressee", "own-department"):
        assert "mental-health" not in data_categories(res)
        assert any(requester.kind in LEGAL_BASES[code].reaches for code in legal_bases_of(res))
    if not legal_bases_of(res):
        # Without a legal basis, being addressed or owned opens nothing at all.
        bare = decide(requester, _unaddressed(res), consents_, now=NOW)
        assert (decision.permitted, decision.consent) == (bare.permitted, bare.consent)


@PROPERTY_SETTINGS
@given(requesters, resources(), consents())
def test_an_unknown_author_kind_counts_as_the_health_side(
    requester: Requester, res: dict[str, Any], consents_: list[dict[str, Any]]
) -> None:
    author = author_of(res)
    if author is None:
        return
    untagged = copy.deepcopy(res)
    untagged["meta"]["tag"] = [
        tag for tag in untagged["meta"].get("tag", []) if tag["system"] != AUTHOR_KIND_SYSTEM
    ]
    assert author_kind_of(untagged) is None
    unknown = decide(requester, untagged, consents_, now=NOW)
    health = decide(requester, stamp_author(res, author, "hospital"), consents_, now=NOW)
    assert (unknown.effect, unknown.rule, unknown.consent) == (
        health.effect,
        health.rule,
        health.consent,
    )


@PROPERTY_SETTINGS
@given(
    requesters,
    st.lists(resources(), max_size=4),
    st.lists(resources(), min_size=1, max_size=3),
    consents(),
)
def test_writing_about_a_citizen_never_shows_the_citizen(
    requester: Requester,
    page: list[dict[str, Any]],
    written: list[dict[str, Any]],
    consents_: list[dict[str, Any]],
) -> None:
    mine = [
        stamp_author({**res, "id": f"mine-{index}"}, requester.participant)
        for index, res in enumerate(written)
        if res["resourceType"] != "Patient"
    ]
    patients = [
        {"resourceType": "Patient", "id": "ole"},
        {"resourceType": "Patient", "id": "birgitte"},
    ]
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for consent_ in consents_:
        by_patient.setdefault(consent_["patient"]["reference"], []).append(consent_)
    before = filter_visible(requester, [*page, *patients], by_patient, now=NOW)
    after = filter_visible(requester, [*page, *mine, *patients], by_patient, now=NOW)
    assert after[-2:] == before[-2:]
    for res, decision in zip(mine, after[len(page) : -2], strict=True):
        assert not supports_patient(decision) or decision.rule == "citizen-access", res
