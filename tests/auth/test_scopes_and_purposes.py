"""Which scopes are granted and which purposes of use are known."""

from __future__ import annotations

import pytest

from gateway.auth.assertions import InvalidRequest, InvalidScope
from gateway.auth.principal import Principal
from gateway.auth.tokens import grant_scopes, is_well_formed_scope, parse_purpose, purpose_coding


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
    ],
)
def test_well_formed_scopes(scope: str) -> None:
    assert is_well_formed_scope(scope)


@pytest.mark.parametrize(
    "scope",
    [
        "patient/*.read",
        "user/Patient.read",
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
    ],
)
def test_malformed_scopes(scope: str) -> None:
    assert not is_well_formed_scope(scope)


def test_no_scope_requested_grants_system_read() -> None:
    assert grant_scopes(None) == ["system/*.read"]
    assert grant_scopes("   ") == ["system/*.read"]


def test_only_well_formed_scopes_are_granted_once() -> None:
    granted = grant_scopes("system/*.read launch system/Patient.cud system/*.read patient/*.*")
    assert granted == ["system/*.read", "system/Patient.cud"]


def test_nothing_grantable_is_invalid_scope() -> None:
    with pytest.raises(InvalidScope):
        grant_scopes("patient/*.read openid")


def test_granted_scopes_mean_what_the_principal_checks() -> None:
    principal = Principal("p", "gp", "p", scopes=frozenset(grant_scopes("system/Patient.rs")))
    assert principal.allows("Patient", "read")
    assert not principal.allows("Patient", "write")
    assert not principal.allows("Observation", "read")


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
