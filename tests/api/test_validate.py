"""$validate over HTTP: an OperationOutcome for good and bad resources, nothing stored."""

from __future__ import annotations

from starlette.testclient import TestClient


def test_validate_reports_problems_with_paths_and_stores_nothing(client: TestClient) -> None:
    ok = client.post("/fhir/Patient/$validate", json={"resourceType": "Patient"})
    assert ok.status_code == 200
    assert ok.json()["resourceType"] == "OperationOutcome"
    assert all(i["severity"] == "information" for i in ok.json()["issue"])

    bad = client.post(
        "/fhir/$validate", json={"resourceType": "Patient", "birthDate": "1980-13-45"}
    )
    assert bad.status_code == 200
    issues = bad.json()["issue"]
    assert any(
        i["severity"] == "error" and i["expression"] == ["Patient.birthDate"] for i in issues
    )
    assert "1980-13-45" not in bad.text

    consent = {
        "resourceType": "Consent",
        "status": "active",
        "scope": {"text": "not patient-privacy"},
        "category": [{"text": "x"}],
    }
    wrapped = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": consent},
            {
                "name": "profile",
                "valueUri": "http://brobygger.dk/fhir/StructureDefinition/privacy-consent",
            },
        ],
    }
    profiled = client.post("/fhir/$validate", json=wrapped)
    assert profiled.status_code == 200
    assert any(i["severity"] == "error" for i in profiled.json()["issue"]), profiled.text

    mismatch = client.post("/fhir/Observation/$validate", json={"resourceType": "Patient"})
    assert mismatch.status_code == 400
    assert (
        client.post("/fhir/Unicorn/$validate", json={"resourceType": "Patient"}).status_code == 404
    )
    assert client.get("/fhir/Patient", params={"_summary": "count"}).json()["total"] == 0
