"""Which scopes and purposes each participant kind is granted (gateway/auth/policy.py)."""

from __future__ import annotations

import pytest

from consent._codes import PARTICIPANT_KINDS, PURPOSES
from gateway.auth.assertions import InvalidRequest, InvalidScope
from gateway.auth.policy import TOKEN_POLICIES, grant, grant_purpose, grant_scopes
from gateway.auth.principal import Principal, parse_scope
from gateway.auth.tokens import is_well_formed_scope, parse_purpose, purpose_coding
from gateway.participants.directory import KINDS

ORGANISATIONS = ("hospital", "gp", "rehab-unit", "jobcentre")


@pytest.mark.parametrize(
    "scope",
    [
        "system/*.read",
        "system/*.write",
        "system/*.*",
        "system/Patient.read",
        "system/*.rs",
        "system/Observation.cruds",
        "system/Task.cu",
        "system/*.s",
        "patient/*.read",
        "patient/Consent.write",
        "patient/Consent.cud",
    ],
)
def test_well_formed_scopes(scope: str) -> None:
    assert is_well_formed_scope(scope)


@pytest.mark.parametrize(
    "scope",
    [
        "user/Patient.read",
        "launch/patient",
        "system/*.",
        "system/*",
        "system/patient.read",
        "system/Patient.sr",
        "system/Patient.rx",
        "system/*.read?category=x",
        "openid",
        "system/Patient.readwrite",
        "system/Pa-tient.read",
        "system//*.read",
        "patient/*",
    ],
)
def test_malformed_scopes(scope: str) -> None:
    assert not is_well_formed_scope(scope)


def test_the_table_covers_every_kind_and_names_known_purposes() -> None:
    assert set(TOKEN_POLICIES) == set(KINDS) == set(PARTICIPANT_KINDS)
    for kind, policy in TOKEN_POLICIES.items():
        assert policy.purposes <= set(PURPOSES), kind
        for scope in policy.default_scopes:
            parsed = parse_scope(scope)
            assert parsed is not None and policy.allows(parsed), (kind, scope)
        assert policy.default_purpose is None or policy.default_purpose in policy.purposes


# --- scopes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ORGANISATIONS)
@pytest.mark.parametrize(
    "scope",
    [
        "system/*.read",
        "system/*.write",
        "system/*.read system/*.write",
        "system/*.*",
        "system/*.cruds",
        "system/Patient.read",
        "system/Task.cu",
        "system/Observation.rs system/Observation.write",
    ],
)
def test_organisations_read_and_write(kind: str, scope: str) -> None:
    assert grant_scopes(kind, scope) == scope.split()


@pytest.mark.parametrize("kind", ORGANISATIONS)
@pytest.mark.parametrize("scope", ["patient/*.read", "patient/Consent.write"])
def test_organisations_get_no_patient_scopes(kind: str, scope: str) -> None:
    with pytest.raises(InvalidScope, match="not allowed for"):
        grant_scopes(kind, scope)


@pytest.mark.parametrize(
    "scope", ["system/*.read", "system/Patient.read", "system/*.rs", "system/Observation.s"]
)
def test_the_employer_reads(scope: str) -> None:
    assert grant_scopes("employer", scope) == [scope]


@pytest.mark.parametrize(
    "scope",
    [
        "system/*.write",
        "system/*.*",
        "system/*.cruds",
        "system/Condition.cu",
        "system/QuestionnaireResponse.write",
        "system/Consent.d",
        "system/Goal.write",
        "patient/*.read",
    ],
)
def test_the_employer_writes_nothing_but_its_part_of_the_plan(scope: str) -> None:
    with pytest.raises(InvalidScope) as refused:
        grant_scopes("employer", f"system/*.read {scope}")
    text = str(refused.value)
    assert repr(scope) in text and "employer" in text
    assert "system/*.read" in text  # what it may ask for instead


@pytest.mark.parametrize(
    "scope",
    [
        "system/CarePlan.write",
        "system/Observation.write",
        "system/Communication.cu",
        "system/Task.write",
        "system/Organization.write",
    ],
)
def test_the_employer_writes_its_part_of_the_shared_plan(scope: str) -> None:
    # Steps it proposes, hours worked, offers and visit notes, its own activities
    # (docs/shared-plan.md); the consent gate and write rule 9 still decide each row.
    assert grant_scopes("employer", f"system/*.read {scope}") == ["system/*.read", scope]


@pytest.mark.parametrize(
    "scope",
    [
        "patient/*.read",
        "patient/Observation.read",
        "patient/*.rs",
        "patient/Consent.write",
        "patient/Consent.*",
        "patient/Consent.cruds",
        "patient/*.read patient/Consent.write",
    ],
)
def test_the_portal_reads_its_citizen_and_writes_consents(scope: str) -> None:
    assert grant_scopes("citizen-portal", scope) == scope.split()


@pytest.mark.parametrize(
    "scope",
    [
        "system/*.read",
        "system/Consent.write",
        "patient/*.write",
        "patient/*.*",
        "patient/Observation.write",
        "patient/Patient.u",
    ],
)
def test_the_portal_gets_nothing_else(scope: str) -> None:
    with pytest.raises(InvalidScope, match="citizen-portal"):
        grant_scopes("citizen-portal", scope)


@pytest.mark.parametrize(
    ("kind", "default"),
    [
        ("hospital", ["system/*.read"]),
        ("employer", ["system/*.read"]),
        ("citizen-portal", ["patient/*.read"]),
    ],
)
def test_no_scope_requested_grants_the_kinds_default(kind: str, default: list[str]) -> None:
    assert grant_scopes(kind, None) == default
    assert grant_scopes(kind, "   ") == default


def test_scopes_are_granted_once_in_order() -> None:
    granted = grant_scopes("gp", "system/*.read system/Patient.cud system/*.read")
    assert granted == ["system/*.read", "system/Patient.cud"]


def test_an_unknown_scope_is_refused_by_name_not_dropped() -> None:
    with pytest.raises(InvalidScope) as refused:
        grant_scopes("jobcentre", "system/*.read launch openid")
    assert "'launch', 'openid' are not a scope of this server" in str(refused.value)


# --- purposes ----------------------------------------------------------------------------------

ALLOWED = {
    "hospital": {"TREAT", "HOPERAT", "rehabilitation-planning"},
    "gp": {"TREAT", "medical-statement"},
    "rehab-unit": {"TREAT", "rehabilitation-planning", "round-table-meeting"},
    "jobcentre": {"sickness-benefit-follow-up", "round-table-meeting", "rehabilitation-planning"},
    "employer": {"round-table-meeting"},
    "citizen-portal": {"citizen-access"},
}


@pytest.mark.parametrize("kind", sorted(ALLOWED))
@pytest.mark.parametrize("purpose", sorted(PURPOSES))
def test_each_kind_uses_its_purposes_only(kind: str, purpose: str) -> None:
    if purpose in ALLOWED[kind]:
        assert grant_purpose(kind, purpose) == purpose
        assert grant_purpose(kind, f"{PURPOSES[purpose]}|{purpose}") == purpose
    else:
        with pytest.raises(InvalidScope) as refused:
            grant_purpose(kind, purpose)
        assert f"purpose {purpose!r} is not allowed for {kind}" in str(refused.value)


def test_no_purpose_is_none_except_for_the_portal() -> None:
    assert grant_purpose("jobcentre", None) is None
    assert grant_purpose("employer", "") is None
    assert grant_purpose("citizen-portal", None) == "citizen-access"


def test_an_unknown_purpose_is_invalid_request_for_every_kind() -> None:
    for kind in ALLOWED:
        with pytest.raises(InvalidRequest, match="purpose"):
            grant_purpose(kind, "marketing")


def test_grant_checks_scope_and_purpose_together() -> None:
    granted = grant("employer", None, "round-table-meeting")
    assert granted.scopes == ["system/*.read"] and granted.purpose == "round-table-meeting"
    assert not granted.policy.citizen_bound
    assert grant("citizen-portal", None, None).policy.citizen_bound
    with pytest.raises(InvalidScope, match="TREAT"):
        grant("employer", "system/*.read", "TREAT")


# --- what a granted scope lets the principal do ------------------------------------------------


def test_granted_scopes_mean_what_the_principal_checks() -> None:
    principal = Principal("p", "gp", "p", scopes=frozenset(grant_scopes("gp", "system/Patient.rs")))
    assert principal.allows("Patient", "read")
    assert not principal.allows("Patient", "write")
    assert not principal.allows("Observation", "read")


def test_patient_scopes_work_only_with_a_patient_context() -> None:
    scopes = frozenset(grant_scopes("citizen-portal", "patient/*.read patient/Consent.write"))
    portal = Principal(
        "borger-portal", "citizen-portal", "borger-portal", scopes, patient="Patient/1"
    )
    assert portal.allows("Observation", "read")
    assert portal.allows("Consent", "read")
    assert portal.allows("Consent", "write")
    assert not portal.allows("Observation", "write")
    assert not portal.allows("Patient", "write")
    without_patient = Principal("x", "citizen-portal", "x", scopes)
    assert not without_patient.allows("Observation", "read")
    assert not without_patient.allows("Consent", "write")


# --- purposes of use (the codes) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("sickness-benefit-follow-up", "sickness-benefit-follow-up"),
        (
            "http://brobygger.dk/fhir/CodeSystem/purpose-of-use|round-table-meeting",
            "round-table-meeting",
        ),
        ("TREAT", "TREAT"),
        ("http://terminology.hl7.org/CodeSystem/v3-ActReason|HOPERAT", "HOPERAT"),
        (" citizen-access ", "citizen-access"),
        (None, None),
        ("", None),
    ],
)
def test_known_purposes(value: str | None, code: str | None) -> None:
    assert parse_purpose(value) == code


@pytest.mark.parametrize(
    "value",
    [
        "marketing",
        "treat",
        "http://terminology.hl7.org/CodeSystem/v3-ActReason|rehabilitation-planning",
        "http://example.org|TREAT",
        "|TREAT-X",
    ],
)
def test_unknown_purposes_are_refused(value: str) -> None:
    with pytest.raises(InvalidRequest, match="purpose"):
        parse_purpose(value)


def test_purpose_coding_names_the_system() -> None:
    assert purpose_coding("TREAT") == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        "code": "TREAT",
    }
