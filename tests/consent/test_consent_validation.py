"""validate_consent: our Consent profile rules, with FHIRPath locations and no health data."""

from __future__ import annotations

from typing import Any

import pytest
from consent_builders import (
    LOINC,
    OLE,
    actor_kind,
    actor_org,
    concept,
    consent,
    provision,
)

from consent import validate_consent

GOOD = consent(
    "ole-jobcentre",
    actors=[actor_org("jobcenter-aarhus"), actor_kind("rehab-unit")],
    purposes=("sickness-benefit-follow-up",),
    labels=("rehab-plan", "rehab-progress"),
    classes=("ServiceRequest",),
    period={"start": "2024-05-10", "end": "2024-11-10"},
    data_period={"start": "2024-01-01"},
    nested=[provision("deny", labels=("mental-health",))],
)


def _expressions(body: dict[str, Any], **kwargs: Any) -> list[str]:
    return [issue.expression for issue in validate_consent(body, **kwargs)]


def test_a_conforming_consent_has_no_issues() -> None:
    assert validate_consent(GOOD) == []


def test_the_citizen_portal_is_its_own_source() -> None:
    portal_made = {k: v for k, v in GOOD.items() if k != "sourceAttachment"}
    assert _expressions(portal_made) == ["Consent.source"]
    assert validate_consent(portal_made, submitted_by_kind="citizen-portal") == []


@pytest.mark.parametrize(
    ("change", "expression"),
    [
        ({"resourceType": "Patient"}, "Consent"),
        ({"status": "withdrawn"}, "Consent.status"),
        (
            {"scope": concept("http://terminology.hl7.org/CodeSystem/consentscope", "research")},
            "Consent.scope",
        ),
        ({"patient": {"reference": "Group/g"}}, "Consent.patient"),
        ({"dateTime": "soon"}, "Consent.dateTime"),
        ({"provision": provision("deny", actors=[actor_org("x")])}, "Consent.provision.type"),
        ({"provision": provision()}, "Consent.provision.actor"),
        (
            {"provision": provision(actors=[actor_org("x")], purposes=("fishing",))},
            "Consent.provision.purpose[0].code",
        ),
        (
            {"provision": provision(actors=[actor_org("x")], labels=("diagnoses",))},
            "Consent.provision.securityLabel[0].code",
        ),
        (
            {"provision": provision(actors=[actor_org("x")], classes=("observation",))},
            "Consent.provision.class[0].code",
        ),
        (
            {"provision": provision(actors=[actor_kind("insurer")])},
            "Consent.provision.actor[0].reference.identifier.value",
        ),
        (
            {
                "provision": provision(
                    actors=[actor_org("x")], period={"start": "2025", "end": "2024"}
                )
            },
            "Consent.provision.period",
        ),
        (
            {
                "provision": provision(
                    actors=[actor_org("x")], nested=[provision("maybe", labels=("rehab-plan",))]
                )
            },
            "Consent.provision.provision[0].type",
        ),
    ],
)
def test_each_rule(change: dict[str, Any], expression: str) -> None:
    assert expression in _expressions({**GOOD, **change})


def test_actor_role_and_reference_are_checked() -> None:
    actor = actor_org("jobcenter-aarhus")
    actor["role"] = concept(LOINC, "x")
    actor["reference"] = {"reference": "Practitioner/p"}
    body = {**GOOD, "provision": provision(actors=[actor])}
    assert _expressions(body) == [
        "Consent.provision.actor[0].role",
        "Consent.provision.actor[0].reference.reference",
    ]


def test_issues_carry_no_health_data() -> None:
    body = {**GOOD, "patient": {"reference": OLE}, "provision": {"type": "permit", "code": []}}
    for issue in validate_consent(body):
        assert "ole" not in issue.message.lower()
