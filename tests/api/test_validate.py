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


def _issues(response: object) -> list[dict[str, object]]:
    body = response.json()  # type: ignore[attr-defined]
    assert body["resourceType"] == "OperationOutcome"
    issues: list[dict[str, object]] = body["issue"]
    return issues


def test_bundle_validate_exists_and_checks_bundle_rules(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "link": [
            {"relation": "self", "url": "http://example.org/a"},
            {"relation": "self", "url": "http://example.org/b"},
        ],
        "entry": [
            {
                "fullUrl": "http://example.org/Patient/1",
                "resource": {"resourceType": "Patient", "id": "1"},
            },
            {
                "fullUrl": "http://example.org/Patient/1",
                "resource": {"resourceType": "Patient", "id": "1"},
            },
        ],
    }
    answer = client.post("/fhir/Bundle/$validate", json=bundle)
    assert answer.status_code == 200
    texts = [str(i["diagnostics"]) for i in _issues(answer) if i["severity"] == "error"]
    assert any("self link" in t for t in texts)
    assert any(t.startswith("bdl-7") for t in texts)


def test_a_parameters_body_without_a_resource_parameter_is_the_resource(client: TestClient) -> None:
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "x", "valueString": "y"}]}
    answer = client.post("/fhir/$validate", json=parameters)
    assert answer.status_code == 200
    assert [i["severity"] for i in _issues(answer)] == ["information"]
    typed = client.post("/fhir/Parameters/$validate", json=parameters)
    assert [i["severity"] for i in _issues(typed)] == ["information"]
    broken = {
        "resourceType": "Parameters",
        "parameter": [{"name": "x", "valueString": "y", "part": []}],
    }
    assert any(
        i["severity"] == "error" for i in _issues(client.post("/fhir/$validate", json=broken))
    )


def test_mode_and_profile_parameters(client: TestClient) -> None:
    patient = {"resourceType": "Patient"}
    wrapped = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": patient},
            {"name": "mode", "valueCode": "update"},
        ],
    }
    update = client.post("/fhir/Patient/$validate", json=wrapped)
    assert any(i["expression"] == ["Patient.id"] for i in _issues(update))
    assert client.post("/fhir/Patient/$validate?mode=burn", json=patient).status_code == 400
    assert client.post("/fhir/Patient/$validate?mode=profile", json=patient).status_code == 400
    unknown = client.post(
        "/fhir/Patient/$validate?profile=http://example.org/StructureDefinition/nope", json=patient
    )
    assert any(
        i["severity"] == "error" and "not checked" in str(i["diagnostics"])
        for i in _issues(unknown)
    )


def test_instance_level_validate_and_delete_mode(client: TestClient) -> None:
    created = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "gender": "female"},
        headers={"Content-Type": "application/fhir+json"},
    )
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    stored = client.post(f"/fhir/Patient/{rid}/$validate")
    # (The gateway's own author-kind meta.tag system has no CodeSystem in profiles/: a warning.)
    assert not [i for i in _issues(stored) if i["severity"] in ("error", "fatal")], stored.text
    assert client.post(f"/fhir/Patient/{rid}/$validate?mode=delete").status_code == 200
    assert client.post("/fhir/Patient/no-such-one/$validate?mode=delete").status_code == 404
    other = client.post(
        f"/fhir/Patient/{rid}/$validate?mode=update",
        json={"resourceType": "Patient", "id": "other"},
    )
    assert any("id in the URL" in str(i["diagnostics"]) for i in _issues(other))


def test_an_unknown_claimed_profile_is_a_warning_never_met(client: TestClient) -> None:
    patient = {
        "resourceType": "Patient",
        "meta": {
            "profile": ["http://medcomfhir.dk/ig/core/StructureDefinition/medcom-core-patient"]
        },
    }
    issues = _issues(client.post("/fhir/$validate", json=patient))
    assert [(i["severity"], "not checked" in str(i["diagnostics"])) for i in issues] == [
        ("warning", True)
    ]


def test_rest_writes_check_every_claimed_profile_we_know(client: TestClient) -> None:
    """Issue 14: a resource claiming our profile is no longer stored without meeting it."""
    headers = {"Content-Type": "application/fhir+json"}
    ours = "http://brobygger.dk/fhir/StructureDefinition/employment-relevant-observation"
    claimed = {
        "resourceType": "Observation",
        "meta": {"profile": [ours]},
        "status": "final",
        "code": {"text": "x"},
    }
    refused = client.post("/fhir/Observation", json=claimed, headers=headers)
    assert refused.status_code == 400, refused.text
    assert any(
        "bro-ero" in str(i.get("diagnostics")) or "employment" in str(i.get("diagnostics"))
        for i in refused.json()["issue"]
    ), refused.text
    medcom = dict(
        claimed,
        meta={
            "profile": ["http://medcomfhir.dk/ig/core/StructureDefinition/medcom-core-observation"]
        },
    )
    stored = client.post("/fhir/Observation", json=medcom, headers=headers)
    assert stored.status_code == 201, stored.text
    # Base R4 is checked on REST writes too, by HL7's definitions.
    long_id = client.put(
        "/fhir/Patient/" + "a" * 64,
        json={"resourceType": "Patient", "id": "a" * 64, "gender": "x"},
        headers=headers,
    )
    assert long_id.status_code == 400
    assert any(i.get("expression") == ["Patient.gender"] for i in long_id.json()["issue"])
