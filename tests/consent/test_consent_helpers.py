"""The pure helpers: patient_of, authorship, dates, diagnosis detection, the package surface."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from consent_builders import ICD10, LOINC, OLE, SKS_D, concept, ref

import consent
from consent import (
    author_of,
    compile_consent,
    contains_diagnosis,
    data_categories,
    patient_of,
    redact_diagnoses,
    stamp_author,
)
from consent._dates import parse_interval, parse_period
from consent._redaction import diagnosis_link_ids
from consent._resources import data_date, local_reference

PACKAGE = Path(consent.__file__).parent


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"resourceType": "Patient", "id": "ole"}, OLE),
        ({"resourceType": "Observation", "subject": ref(OLE)}, OLE),
        ({"resourceType": "Task", "for": ref("http://gw/fhir/Patient/ole/_history/3")}, OLE),
        ({"resourceType": "EpisodeOfCare", "patient": ref(OLE)}, OLE),
        ({"resourceType": "Consent", "patient": ref(OLE)}, OLE),
        ({"resourceType": "Coverage", "beneficiary": ref(OLE)}, OLE),
        ({"resourceType": "Provenance", "target": [ref("ServiceRequest/p"), ref(OLE)]}, OLE),
        ({"resourceType": "AuditEvent", "entity": [{"what": ref(OLE)}]}, OLE),
        (
            {
                "resourceType": "Appointment",
                "participant": [{"actor": ref("Practitioner/x")}, {"actor": ref(OLE)}],
            },
            OLE,
        ),
        ({"resourceType": "Observation", "subject": ref("Group/g")}, None),
        ({"resourceType": "Observation", "subject": ref("#contained")}, None),
        ({"resourceType": "Organization", "id": "org-x"}, None),
    ],
)
def test_patient_of(body: dict[str, Any], expected: str | None) -> None:
    assert patient_of(body) == expected


def test_local_reference() -> None:
    assert local_reference("Organization/org-x") == "Organization/org-x"
    assert local_reference("https://h/fhir/Organization/org-x/_history/2") == "Organization/org-x"
    assert local_reference("urn:uuid:1234") is None
    assert local_reference(None) is None


def test_stamp_author_is_pure() -> None:
    original: dict[str, Any] = {"resourceType": "Observation", "meta": {"versionId": "1"}}
    stamped = stamp_author(original, "jobcenter-aarhus")
    assert author_of(stamped) == "jobcenter-aarhus"
    assert stamped["meta"]["versionId"] == "1"
    assert original == {"resourceType": "Observation", "meta": {"versionId": "1"}}
    assert author_of(original) is None
    assert author_of({"meta": {"source": "http://elsewhere/x"}}) is None
    with pytest.raises(ValueError, match="participant"):
        stamp_author(original, "")


def test_data_categories_only_from_our_system() -> None:
    body = {
        "meta": {
            "security": [
                {
                    "system": "http://brobygger.dk/fhir/CodeSystem/data-category",
                    "code": "rehab-plan",
                },
                {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"},
            ]
        }
    }
    assert data_categories(body) == frozenset({"rehab-plan"})


def test_partial_dates_cover_their_whole_precision() -> None:
    day = parse_interval("2024-06-15")
    assert day is not None
    assert day.start == datetime(2024, 6, 14, 22, tzinfo=UTC)  # midnight in Copenhagen (CEST)
    assert day.end == datetime(2024, 6, 15, 22, tzinfo=UTC)
    month = parse_interval("2024-02")
    assert month is not None and (month.end - month.start).days == 29
    instant = parse_interval("2024-06-15T12:00:00.5+02:00")
    assert instant is not None and instant.start == datetime(2024, 6, 15, 10, 0, 0, 500000, UTC)
    assert parse_interval("2024-13-01") is None
    assert parse_interval("yesterday") is None
    period = parse_period({"start": "2024", "end": "2024"})
    assert period is not None and period.contains_instant(datetime(2024, 12, 31, 12, tzinfo=UTC))
    assert parse_period({"start": "nonsense"}) is None


def test_data_date_prefers_the_clinical_date() -> None:
    observation = {
        "resourceType": "Observation",
        "effectivePeriod": {"start": "2024-03-01"},
        "meta": {"lastUpdated": "2024-06-01T00:00:00Z"},
    }
    found = data_date(observation)
    assert found is not None and found.start.month == 2  # 2024-03-01 00:00 CET is Feb 29 23:00Z
    unknown = {"resourceType": "Basic", "meta": {"lastUpdated": "2024-06-01T00:00:00Z"}}
    found = data_date(unknown)
    assert found is not None and found.start.month == 6


def test_diagnosis_link_ids_per_form() -> None:
    base = "http://brobygger.dk/fhir/Questionnaire"
    assert diagnosis_link_ids(f"{base}/lae285|1.0") == frozenset({"2.1"})
    assert diagnosis_link_ids(f"{base}/LAE-125") == frozenset({"2.1"})
    assert diagnosis_link_ids(f"{base}/mulighed|1") == frozenset()
    assert diagnosis_link_ids(None) == frozenset()


def test_contains_diagnosis_finds_every_kind() -> None:
    assert contains_diagnosis({"resourceType": "Condition"})
    assert contains_diagnosis({"resourceType": "Observation", "code": concept(SKS_D, "DM545")})
    assert contains_diagnosis({"resourceType": "CarePlan", "addresses": [ref("Condition/c")]})
    assert contains_diagnosis({"resourceType": "Observation", "focus": [ref("Condition/c")]})
    assert contains_diagnosis(
        {"resourceType": "Observation", "contained": [{"resourceType": "Condition", "id": "c"}]}
    )
    assert not contains_diagnosis({"resourceType": "Observation", "code": concept(LOINC, "x")})


def test_redaction_drops_emptied_containers() -> None:
    observation = {
        "resourceType": "Observation",
        "code": concept(LOINC, "work-capacity"),
        "extension": [
            {"url": "http://x/why", "valueCodeableConcept": concept(ICD10, "M54.5", "back")},
            {"url": "http://x/keep", "valueString": "kept"},
        ],
        "component": [{"code": concept(LOINC, "a")}, {"code": concept(ICD10, "F32")}],
    }
    redacted = redact_diagnoses(observation)
    assert redacted is not None
    assert redacted["extension"] == [{"url": "http://x/keep", "valueString": "kept"}]
    assert redacted["component"] == [{"code": concept(LOINC, "a")}]
    assert "back" not in str(redacted)


def test_redaction_of_nested_questionnaire_items() -> None:
    response = {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": "http://brobygger.dk/fhir/Questionnaire/lae285",
        "item": [
            {
                "linkId": "group",
                "item": [
                    {"linkId": "2.1", "answer": [{"valueString": "free text diagnosis"}]},
                    {"linkId": "3.3", "answer": [{"valueString": "no lifting"}]},
                ],
            }
        ],
    }
    redacted = redact_diagnoses(response)
    assert redacted is not None
    assert redacted["item"][0]["item"] == [
        {"linkId": "3.3", "answer": [{"valueString": "no lifting"}]}
    ]
    only_diagnoses = {**response, "item": [{"linkId": "2.1", "answer": [{"valueString": "x"}]}]}
    assert redact_diagnoses(only_diagnoses) is None


def test_compile_consent_keeps_what_matching_needs() -> None:
    compiled = compile_consent(
        {
            "resourceType": "Consent",
            "id": "c1",
            "status": "active",
            "scope": concept(
                "http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy"
            ),
            "patient": ref(OLE),
            "dateTime": "2024-05-10",
            "provision": {"type": "permit", "provision": [{"type": "deny"}]},
        }
    )
    assert compiled.reference == "Consent/c1" and compiled.patient == OLE and compiled.usable
    assert compiled.provision is not None and compiled.provision.children[0].type == "deny"


def test_the_package_surface() -> None:
    assert consent.__all__ == sorted(consent.__all__, key=lambda n: (not n.isupper(), n))
    for name in consent.__all__:
        assert hasattr(consent, name), name


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_consent_stays_pure(path: Path) -> None:
    forbidden = ("gateway", "mappings", "fhir", "sqlalchemy", "httpx", "fastapi")
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [node.module]
        for name in names:
            assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
