"""The write policy (consent.decide_write): issue 9's write examples, then properties."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from consent_builders import (
    BIRGITTE,
    EMPLOYER,
    GP,
    HOSPITAL,
    JOBCENTRE,
    JOBCENTRE_ROSKILDE,
    OLE,
    PORTAL_OLE,
    REHAB_UNIT,
    consent,
    org,
    ref,
    resource,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from consent import (
    ADDRESSEE_SYSTEM,
    AUTHOR_KIND_SYSTEM,
    DATA_CATEGORY_SYSTEM,
    FHIR_BASE,
    LEGAL_BASIS_SYSTEM,
    Requester,
    WriteDecision,
    author_kind_of,
    author_of,
    decide_write,
    legal_bases_of,
    patient_of,
    stamp_author,
    strip_gateway_tags,
)

SOR = "urn:oid:1.2.208.176.1.1"
EAN = "https://www.gs1.org/gln"
REGISTERED = {
    (SOR, "1301011000016"): "auh-ortopaedi",
    (EAN, "5790000123456"): "auh-ortopaedi",
    (SOR, "9999999999999"): "lys-montage",
}
PORTAL_NOBODY = Requester("borger-dk", "citizen-portal", None, "citizen-access", None)
RULES = {
    "author",
    "not-author",
    "new-resource",
    "append-only",
    "operator-only",
    "citizen-own",
    "consent-recorder",
    "directory-self",
    "directory-other",
    "registered-identifier",
    "type-change",
}


def _organization(name: str, *identifiers: tuple[str, str], author: str | None = None) -> Any:
    body: dict[str, Any] = {
        "resourceType": "Organization",
        "id": f"org-{name}",
        "name": name,
        "identifier": [{"system": s, "value": v} for s, v in identifiers],
    }
    return stamp_author(body, author) if author else body


def _write(
    requester: Requester,
    action: str,
    current: dict[str, Any] | None,
    incoming: dict[str, Any] | None,
) -> WriteDecision:
    decision = decide_write(
        requester,
        action,  # type: ignore[arg-type]
        current,
        incoming,
        registered_identifiers=REGISTERED,
    )
    assert decision.rule in RULES and decision.reason
    return decision


def _rule(decision: WriteDecision) -> tuple[bool, str]:
    return decision.allowed, decision.rule


# --- issue 9, example 4: directory resources are writable by anyone -----------------------------

AUH = _organization("auh-ortopaedi", (SOR, "1301011000016"), (EAN, "5790000123456"))
LYS = _organization("lys-montage", (SOR, "9999999999999"))


def test_nobody_changes_another_participants_organization() -> None:
    stripped = {**AUH, "identifier": []}
    assert _rule(_write(EMPLOYER, "update", AUH, stripped)) == (False, "directory-other")
    assert _rule(_write(EMPLOYER, "delete", AUH, None)) == (False, "directory-other")
    # Not even the Organization's author, if it is not the participant it describes.
    authored = stamp_author(AUH, "lys-montage")
    assert _rule(_write(EMPLOYER, "update", authored, {**AUH, "name": "x"})) == (
        False,
        "directory-other",
    )


def test_registered_identifiers_change_only_by_the_operator() -> None:
    stolen = {**LYS, "identifier": [*LYS["identifier"], *AUH["identifier"]]}
    assert _rule(_write(EMPLOYER, "update", LYS, stolen)) == (False, "registered-identifier")
    decision = _write(EMPLOYER, "update", LYS, {**LYS, "identifier": []})
    assert _rule(decision) == (False, "registered-identifier")
    assert (
        decision.reason == "a participant's registered identifiers are changed only by the operator"
    )
    assert _rule(_write(EMPLOYER, "delete", LYS, None)) == (False, "registered-identifier")
    renamed = {**LYS, "name": "Lys Montage A/S", "telecom": [{"system": "phone", "value": "1"}]}
    assert _rule(_write(EMPLOYER, "update", LYS, renamed)) == (True, "directory-self")
    # An unregistered identifier is the participant's own business.
    cvr = {**LYS, "identifier": [*LYS["identifier"], {"system": "http://cvr.dk", "value": "1"}]}
    assert _rule(_write(EMPLOYER, "update", LYS, cvr)) == (True, "directory-self")


def test_an_organization_is_created_without_registered_identifiers() -> None:
    twin = {**AUH, "id": "org-twin"}
    assert _rule(_write(EMPLOYER, "create", None, twin)) == (False, "registered-identifier")
    own = {**LYS, "id": "org-another-lys"}  # the requester's own identifiers too
    assert _rule(_write(EMPLOYER, "create", None, own)) == (False, "registered-identifier")
    plain = _organization("new-supplier", ("http://cvr.dk", "12345678"))
    assert _rule(_write(EMPLOYER, "create", None, plain)) == (True, "new-resource")


@pytest.mark.parametrize(
    ("resource_type", "element"),
    [
        ("PractitionerRole", "organization"),
        ("Location", "managingOrganization"),
        ("Endpoint", "managingOrganization"),
        ("HealthcareService", "providedBy"),
    ],
)
def test_directory_entries_are_changed_by_the_participant_they_describe(
    resource_type: str, element: str
) -> None:
    named: dict[str, Any] = {element: ref(org("auh-ortopaedi"))}
    current = resource(resource_type, "d1", None, author="lys-montage", **named)
    changed = {**current, "name": "changed"}
    assert _rule(_write(HOSPITAL, "update", current, changed)) == (True, "directory-self")
    assert _rule(_write(HOSPITAL, "delete", current, None)) == (True, "directory-self")
    # Its author is not the participant it describes.
    assert _rule(_write(EMPLOYER, "update", current, changed)) == (False, "directory-other")
    moved = {**current, element: ref(org("lys-montage"))}
    assert _rule(_write(HOSPITAL, "update", current, moved)) == (False, "directory-other")
    dropped = {k: v for k, v in current.items() if k != element}
    assert _rule(_write(HOSPITAL, "update", current, dropped)) == (False, "directory-other")
    # Naming nobody: its author changes it, but may not make it describe someone else.
    unnamed = resource(resource_type, "d2", None, author="lys-montage")
    assert _rule(_write(EMPLOYER, "update", unnamed, {**unnamed, "name": "x"})) == (
        True,
        "directory-self",
    )
    hijack = {**unnamed, element: ref(org("auh-ortopaedi"))}
    assert _rule(_write(EMPLOYER, "update", unnamed, hijack)) == (False, "directory-other")
    assert _rule(_write(HOSPITAL, "update", unnamed, {**unnamed, "name": "x"})) == (
        False,
        "directory-other",
    )
    assert _rule(_write(EMPLOYER, "create", None, hijack)) == (True, "new-resource")


def test_other_directory_resources_are_changed_by_their_author() -> None:
    practitioner = resource("Practitioner", "p1", None, author="laegerne-soendergade")
    assert _rule(_write(GP, "update", practitioner, practitioner)) == (True, "directory-self")
    assert _rule(_write(JOBCENTRE, "update", practitioner, practitioner)) == (
        False,
        "directory-other",
    )
    legacy = resource("Practitioner", "p2", None)
    assert _rule(_write(GP, "delete", legacy, None)) == (False, "directory-other")
    theirs = resource(
        "Questionnaire", "q", None, author="jobcenter-aarhus", url="https://kl.dk/q/skema-1"
    )
    assert _rule(_write(JOBCENTRE, "update", theirs, theirs)) == (True, "directory-self")
    assert _rule(_write(JOBCENTRE_ROSKILDE, "update", theirs, theirs)) == (
        False,
        "directory-other",
    )


@pytest.mark.parametrize("resource_type", ["Questionnaire", "CodeSystem", "StructureDefinition"])
def test_our_definitions_are_the_operators(resource_type: str) -> None:
    ours = resource(
        resource_type,
        "lae285",
        None,
        author="jobcenter-aarhus",
        url=f"{FHIR_BASE}/{resource_type}/x",
    )
    for requester in (JOBCENTRE, HOSPITAL, EMPLOYER, PORTAL_OLE):
        assert _rule(_write(requester, "update", ours, ours)) == (False, "operator-only")
        assert _rule(_write(requester, "delete", ours, None)) == (False, "operator-only")
        assert _rule(_write(requester, "create", None, ours)) == (False, "operator-only")
    # Turning someone's definition into one of ours is refused as well.
    theirs = {**ours, "url": "https://example.org/q"}
    assert _rule(_write(JOBCENTRE, "update", theirs, ours)) == (False, "operator-only")


# --- issue 9, example 5: writing does not make you the author -----------------------------------

CONDITION = resource("Condition", "c1", author="auh-ortopaedi", author_kind="hospital")


def test_only_the_author_changes_a_record() -> None:
    assert _rule(_write(JOBCENTRE, "update", CONDITION, CONDITION)) == (False, "not-author")
    assert _rule(_write(EMPLOYER, "delete", CONDITION, None)) == (False, "not-author")
    assert _rule(_write(HOSPITAL, "update", CONDITION, CONDITION)) == (True, "author")
    assert _rule(_write(HOSPITAL, "delete", CONDITION, None)) == (True, "author")
    assert _rule(_write(JOBCENTRE, "create", None, {**CONDITION, "id": "c2"})) == (
        True,
        "new-resource",
    )
    legacy = resource("Observation", "o-legacy")
    for requester in (HOSPITAL, JOBCENTRE, GP):
        decision = _write(requester, "update", legacy, legacy)
        assert _rule(decision) == (False, "not-author") and "operator" in decision.reason


def test_the_gateway_recipe_keeps_the_author() -> None:
    forged = stamp_author({**CONDITION, "note": [{"text": "x"}]}, "jobcenter-aarhus", "jobcentre")
    kept = stamp_author(
        strip_gateway_tags(forged), author_of(CONDITION) or "", author_kind_of(CONDITION)
    )
    assert author_of(kept) == "auh-ortopaedi" and author_kind_of(kept) == "hospital"
    assert kept["note"] == [{"text": "x"}]


def test_an_update_without_a_current_version_is_a_create() -> None:
    assert _rule(_write(JOBCENTRE, "update", None, CONDITION)) == (True, "new-resource")
    assert _rule(_write(EMPLOYER, "update", None, AUH)) == (False, "registered-identifier")


def test_a_write_cannot_change_the_type() -> None:
    other = {**CONDITION, "resourceType": "Observation"}
    assert _rule(_write(HOSPITAL, "update", CONDITION, other)) == (False, "type-change")


def test_incoherent_arguments_are_programming_errors() -> None:
    with pytest.raises(ValueError, match="create"):
        decide_write(HOSPITAL, "create", CONDITION, CONDITION)
    with pytest.raises(ValueError, match="create"):
        decide_write(HOSPITAL, "create", None, None)
    with pytest.raises(ValueError, match="update"):
        decide_write(HOSPITAL, "update", CONDITION, None)
    with pytest.raises(ValueError, match="delete"):
        decide_write(HOSPITAL, "delete", None, None)
    with pytest.raises(ValueError, match="action"):
        decide_write(HOSPITAL, "patch", CONDITION, CONDITION)  # type: ignore[arg-type]


# --- AuditEvents, Consents, the citizen portal -------------------------------------------------

AUDIT = stamp_author({"resourceType": "AuditEvent", "id": "a1"}, "brobygger-gateway")


@pytest.mark.parametrize("requester", [HOSPITAL, JOBCENTRE, EMPLOYER, PORTAL_OLE])
def test_audit_events_are_append_only(requester: Requester) -> None:
    assert _rule(_write(requester, "create", None, AUDIT)) == (False, "append-only")
    assert _rule(_write(requester, "update", AUDIT, AUDIT)) == (False, "append-only")
    assert _rule(_write(requester, "delete", AUDIT, None)) == (False, "append-only")
    mine = stamp_author(AUDIT, requester.participant)
    assert not _write(requester, "update", mine, mine).allowed


OLE_CONSENT = consent("ole-jc")
RECORDED = stamp_author(OLE_CONSENT, "jobcenter-aarhus", "jobcentre")


@pytest.mark.parametrize(
    ("requester", "allowed"),
    [
        (JOBCENTRE, True),
        (REHAB_UNIT, True),
        (PORTAL_OLE, True),
        (HOSPITAL, False),
        (GP, False),
        (EMPLOYER, False),
    ],
)
def test_who_records_a_consent(requester: Requester, allowed: bool) -> None:
    decision = _write(requester, "create", None, OLE_CONSENT)
    assert _rule(decision) == (allowed, "consent-recorder")


def test_a_consent_is_changed_by_its_recorder() -> None:
    withdrawn = {**RECORDED, "status": "inactive"}
    assert _rule(_write(JOBCENTRE, "update", RECORDED, withdrawn)) == (True, "consent-recorder")
    assert _rule(_write(JOBCENTRE, "delete", RECORDED, None)) == (True, "consent-recorder")
    for requester in (JOBCENTRE_ROSKILDE, REHAB_UNIT, HOSPITAL):
        assert _rule(_write(requester, "update", RECORDED, withdrawn)) == (
            False,
            "consent-recorder",
        )
    moved = {**RECORDED, "patient": ref(BIRGITTE)}
    assert _rule(_write(JOBCENTRE, "update", RECORDED, moved)) == (False, "consent-recorder")


def test_the_citizen_withdraws_any_of_their_consents() -> None:
    withdrawn = {**RECORDED, "status": "inactive", "meta": {"versionId": "2"}}
    assert _rule(_write(PORTAL_OLE, "update", RECORDED, withdrawn)) == (True, "consent-recorder")
    assert _rule(_write(PORTAL_OLE, "delete", RECORDED, None)) == (True, "consent-recorder")
    # … but does not rewrite what a job centre recorded on the signed form.
    broadened = copy.deepcopy(withdrawn)
    broadened["provision"]["actor"] = []
    assert _rule(_write(PORTAL_OLE, "update", RECORDED, broadened)) == (False, "consent-recorder")
    reactivated = {**RECORDED, "dateTime": "2024-06-01"}
    assert _rule(_write(PORTAL_OLE, "update", RECORDED, reactivated)) == (
        False,
        "consent-recorder",
    )
    own = stamp_author(OLE_CONSENT, "borger-dk", "citizen-portal")
    assert _rule(_write(PORTAL_OLE, "update", own, reactivated)) == (True, "consent-recorder")


def test_the_portal_writes_only_its_own_citizens_consents() -> None:
    birgitte = consent("b", BIRGITTE)
    assert _rule(_write(PORTAL_OLE, "create", None, birgitte)) == (False, "citizen-own")
    moved = {**RECORDED, "patient": ref(BIRGITTE)}
    assert _rule(_write(PORTAL_OLE, "update", RECORDED, moved)) == (False, "citizen-own")
    assert _rule(_write(PORTAL_NOBODY, "create", None, OLE_CONSENT)) == (False, "citizen-own")
    note = resource("Observation", "o", OLE)
    assert _rule(_write(PORTAL_OLE, "create", None, note)) == (False, "citizen-own")
    own_note = stamp_author(note, "borger-dk")
    assert _rule(_write(PORTAL_OLE, "update", own_note, own_note)) == (False, "citizen-own")


# --- stamping and stripping ---------------------------------------------------------------------


def test_strip_gateway_tags_removes_only_what_the_gateway_stamps() -> None:
    client: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": {
            "source": "urn:brobygger:participant:auh-ortopaedi",
            "versionId": "3",
            "security": [{"system": DATA_CATEGORY_SYSTEM, "code": "rehab-plan"}],
            "tag": [
                {"system": AUTHOR_KIND_SYSTEM, "code": "jobcentre"},
                {"system": LEGAL_BASIS_SYSTEM, "code": "requested-statement"},
                {"system": ADDRESSEE_SYSTEM, "code": "aarhus-genoptraening"},
            ],
        },
    }
    before = copy.deepcopy(client)
    stripped = strip_gateway_tags(client)
    assert client == before
    assert stripped["meta"] == {
        "versionId": "3",
        "security": [{"system": DATA_CATEGORY_SYSTEM, "code": "rehab-plan"}],
        "tag": [{"system": ADDRESSEE_SYSTEM, "code": "aarhus-genoptraening"}],
    }
    assert author_of(stripped) is None and legal_bases_of(stripped) == frozenset()
    only_ours = {"resourceType": "Basic", "meta": {"source": "x", "tag": client["meta"]["tag"][:2]}}
    assert strip_gateway_tags(only_ours) == {"resourceType": "Basic"}
    assert strip_gateway_tags({"resourceType": "Basic"}) == {"resourceType": "Basic"}


def test_stamp_author_with_a_kind() -> None:
    stamped = stamp_author({"resourceType": "Observation"}, "auh-ortopaedi", "hospital")
    assert (author_of(stamped), author_kind_of(stamped)) == ("auh-ortopaedi", "hospital")
    again = stamp_author(stamped, "auh-ortopaedi", "gp")
    assert author_kind_of(again) == "gp"
    assert [t["system"] for t in again["meta"]["tag"]].count(AUTHOR_KIND_SYSTEM) == 1
    # Without a kind: kept for the same author, dropped for another (it described someone else).
    assert author_kind_of(stamp_author(stamped, "auh-ortopaedi")) == "hospital"
    other = stamp_author(stamped, "jobcenter-aarhus")
    assert author_kind_of(other) is None and "tag" not in other["meta"]
    with pytest.raises(ValueError, match="kind"):
        stamp_author(stamped, "x", "hospitall")


# --- properties ----------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(max_examples=300, deadline=None)
PARTICIPANTS = {
    "auh-ortopaedi": "hospital",
    "aarhus-genoptraening": "rehab-unit",
    "jobcenter-aarhus": "jobcentre",
    "lys-montage": "employer",
    "laegerne-soendergade": "gp",
}
TYPES = [
    "Observation",
    "Condition",
    "Patient",
    "Consent",
    "AuditEvent",
    "Organization",
    "PractitionerRole",
    "Location",
    "Endpoint",
    "HealthcareService",
    "Practitioner",
    "Questionnaire",
]
IDENTIFIERS = [*REGISTERED, ("http://cvr.dk", "11111111")]
URLS = [f"{FHIR_BASE}/Questionnaire/lae285", "https://kl.dk/Questionnaire/x"]
ORG_ELEMENTS = {
    "PractitionerRole": "organization",
    "Location": "managingOrganization",
    "Endpoint": "managingOrganization",
    "HealthcareService": "providedBy",
}

_participants = st.sampled_from(sorted(PARTICIPANTS)).map(
    lambda name: Requester(name, PARTICIPANTS[name], org(name))
)
_portal = st.sampled_from([OLE, OLE, BIRGITTE, None]).map(
    lambda patient: Requester("borger-dk", "citizen-portal", None, "citizen-access", patient)
)
requesters = st.sampled_from([True, True, True, False]).flatmap(
    lambda participant: _participants if participant else _portal
)
names = st.sampled_from(sorted(PARTICIPANTS))


@st.composite
def versions(draw: st.DrawFn, resource_type: str | None = None) -> dict[str, Any]:
    rtype = resource_type or draw(st.sampled_from(TYPES))
    body: dict[str, Any] = {"resourceType": rtype, "id": draw(st.sampled_from(["x", "y"]))}
    if rtype == "Organization":
        body["id"] = f"org-{draw(names)}"
        chosen = draw(st.lists(st.sampled_from(IDENTIFIERS), max_size=3, unique=True))
        body["identifier"] = [{"system": s, "value": v} for s, v in chosen]
    if rtype in ORG_ELEMENTS and draw(st.booleans()):
        body[ORG_ELEMENTS[rtype]] = ref(org(draw(names)))
    if rtype == "Questionnaire" and draw(st.booleans()):
        body["url"] = draw(st.sampled_from(URLS))
    if rtype in ("Observation", "Condition", "Consent"):
        body["subject" if rtype != "Consent" else "patient"] = ref(
            draw(st.sampled_from([OLE, BIRGITTE]))
        )
    if rtype == "Consent":
        body["status"] = draw(st.sampled_from(["active", "inactive"]))
        body["provision"] = {"type": "permit", "actor": draw(st.sampled_from([[], [{"x": 1}]]))}
    author = draw(st.sampled_from([None, "borger-dk", *sorted(PARTICIPANTS)]))
    return stamp_author(body, author) if author is not None else body


@st.composite
def writes(
    draw: st.DrawFn,
) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    action = draw(st.sampled_from(["create", "update", "update", "delete"]))
    current = None if action == "create" else draw(versions())
    incoming = None
    if action != "delete":
        same_type = current["resourceType"] if current is not None else None
        if current is not None and draw(st.booleans()):
            incoming = copy.deepcopy(current)  # an unchanged PUT, or a status change
            if "status" in incoming and draw(st.booleans()):
                incoming["status"] = "inactive"
        else:
            incoming = draw(versions(same_type if draw(st.integers(0, 9)) else None))
    return action, current, incoming


def _registered_of(res: dict[str, Any] | None) -> set[tuple[str, str]]:
    if res is None:
        return set()
    return {(i["system"], i["value"]) for i in res.get("identifier", [])} & set(REGISTERED)


@PROPERTY_SETTINGS
@given(requesters, writes())
def test_write_invariants(
    requester: Requester, write: tuple[str, dict[str, Any] | None, dict[str, Any] | None]
) -> None:
    action, current, incoming = write
    decision = _write(requester, action, current, incoming)
    assert _write(requester, action, current, incoming) == decision  # deterministic
    if not decision.allowed:
        return
    present = [v for v in (current, incoming) if v is not None]
    rtype = present[0]["resourceType"]
    assert all(v["resourceType"] == rtype for v in present)
    assert rtype != "AuditEvent"
    assert not any(str(v.get("url", "")).startswith(FHIR_BASE) for v in present)
    if requester.kind == "citizen-portal":
        assert rtype == "Consent"
        assert all(patient_of(v) == requester.patient for v in present)
    elif rtype == "Consent" and current is None:
        assert requester.kind in ("jobcentre", "rehab-unit")
    if rtype == "Organization":
        assert _registered_of(current) == _registered_of(incoming)
        if current is not None:
            assert current["id"] == f"org-{requester.participant}"
    if current is None:
        return
    named = ORG_ELEMENTS.get(rtype)
    if named is not None and named in current:
        assert current[named] == ref(org(requester.participant))
        assert incoming is None or incoming.get(named) == current[named]
    elif rtype != "Organization" and requester.kind != "citizen-portal":
        # Everything else changes only by its author; no author: only by the operator.
        assert author_of(current) == requester.participant
    if incoming is not None and named is not None and named in incoming:
        assert incoming[named] == ref(org(requester.participant))


@PROPERTY_SETTINGS
@given(st.lists(st.tuples(requesters, writes()), max_size=8), names, versions())
def test_authorship_survives_any_sequence_of_writes(
    steps: list[tuple[Requester, tuple[str, Any, Any]]], creator: str, first: dict[str, Any]
) -> None:
    """The gateway's recipe: strip what the client sent, stamp the current author again."""
    kind = PARTICIPANTS[creator]
    stored = stamp_author(strip_gateway_tags(first), creator, kind)
    for requester, (_, _, incoming) in steps:
        if incoming is None:
            continue
        # What a client sends may claim any author; the type is the stored one (a PUT).
        sent = {**stamp_author(incoming, requester.participant), "id": stored["id"]}
        sent["resourceType"] = stored["resourceType"]
        if not _write(requester, "update", stored, sent).allowed:
            continue
        stored = stamp_author(
            strip_gateway_tags(sent), author_of(stored) or "", author_kind_of(stored)
        )
        assert (author_of(stored), author_kind_of(stored)) == (creator, kind)
    assert (author_of(stored), author_kind_of(stored)) == (creator, kind)


@PROPERTY_SETTINGS
@given(versions(), st.sampled_from(["requested-statement", "x"]), names)
def test_a_client_never_forges_what_the_gateway_stamps(
    body: dict[str, Any], basis: str, forger: str
) -> None:
    forged = stamp_author(body, forger, PARTICIPANTS[forger])
    forged["meta"]["tag"].append({"system": LEGAL_BASIS_SYSTEM, "code": basis})
    clean = strip_gateway_tags(forged)
    assert author_of(clean) is None and author_kind_of(clean) is None
    assert legal_bases_of(clean) == frozenset()
    assert strip_gateway_tags(clean) == clean
    assert {k: v for k, v in clean.items() if k != "meta"} == {
        k: v for k, v in forged.items() if k != "meta"
    }
