"""FHIR REST interactions and their errors, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

CPR = "urn:oid:1.2.208.176.1.2"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


def patient(cpr: str = "0101801234", family: str = "Hansen") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": CPR, "value": cpr}],
        "name": [{"family": family, "given": ["Ole"]}],
        "birthDate": "1980-01-01",
    }


def assert_outcome(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"] and all(i["severity"] in ("error", "fatal") for i in body["issue"])
    if code is not None:
        assert body["issue"][0]["code"] == code
    return body


def count(client: TestClient, rtype: str) -> int:
    total: int = client.get(f"/fhir/{rtype}", params={"_summary": "count"}).json()["total"]
    return total


def test_metadata_lists_what_is_supported(client: TestClient) -> None:
    body = client.get("/fhir/metadata").json()
    assert body["resourceType"] == "CapabilityStatement" and body["fhirVersion"] == "4.0.1"
    types = {r["type"] for r in body["rest"][0]["resource"]}
    assert {"Patient", "Observation", "Consent", "AuditEvent", "Task"} <= types
    observation = next(r for r in body["rest"][0]["resource"] if r["type"] == "Observation")
    patient_param = next(p for p in observation["searchParam"] if p["name"] == "patient")
    assert patient_param["type"] == "reference"
    assert patient_param["definition"] == "http://hl7.org/fhir/SearchParameter/clinical-patient"
    assert "Observation:subject" in observation["searchInclude"]


def test_create_read_update_delete_history(client: TestClient) -> None:
    created = client.post("/fhir/Patient", json=patient(), headers=FHIR_JSON)
    assert created.status_code == 201
    pid = created.json()["id"]
    assert created.headers["etag"] == 'W/"1"'
    assert created.headers["location"].endswith(f"/fhir/Patient/{pid}/_history/1")
    read = client.get(f"/fhir/Patient/{pid}")
    assert read.json()["meta"]["versionId"] == "1" and read.headers["etag"] == 'W/"1"'

    updated = client.put(
        f"/fhir/Patient/{pid}",
        json={**patient(family="Jensen"), "id": pid},
        headers={**FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert updated.status_code == 200 and updated.json()["meta"]["versionId"] == "2"
    stale = client.put(
        f"/fhir/Patient/{pid}",
        json={**patient(family="Stale"), "id": pid},
        headers={**FHIR_JSON, "If-Match": 'W/"1"'},
    )
    assert_outcome(stale, 412, "conflict")
    assert client.get(f"/fhir/Patient/{pid}").json()["name"][0]["family"] == "Jensen"

    assert client.get(f"/fhir/Patient/{pid}/_history/1").json()["name"][0]["family"] == "Hansen"
    assert client.delete(f"/fhir/Patient/{pid}").status_code == 204
    assert_outcome(client.get(f"/fhir/Patient/{pid}"), 410, "deleted")
    history = client.get(f"/fhir/Patient/{pid}/_history").json()
    assert history["type"] == "history" and history["total"] == 3
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "PUT", "POST"]
    assert "resource" not in history["entry"][0]
    type_history = client.get("/fhir/Patient/_history").json()
    assert type_history["total"] == 3
    assert client.get("/fhir/_history").json()["total"] == 3


def test_update_can_create_with_client_id(client: TestClient) -> None:
    response = client.put("/fhir/Patient/ole-1", json={**patient(), "id": "ole-1"})
    assert response.status_code == 201 and response.json()["id"] == "ole-1"


def test_conditional_create(client: TestClient) -> None:
    header = {**FHIR_JSON, "If-None-Exist": f"identifier={CPR}|0101801234"}
    first = client.post("/fhir/Patient", json=patient(), headers=header)
    second = client.post("/fhir/Patient", json=patient(), headers=header)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert count(client, "Patient") == 1


def test_errors_are_operation_outcomes_and_change_nothing(client: TestClient) -> None:
    client.post("/fhir/Patient", json=patient())
    before = count(client, "Patient")
    assert_outcome(client.get("/fhir/Unicorn"), 404, "not-found")
    assert_outcome(client.get("/fhir/Patient/does-not-exist"), 404, "not-found")
    assert_outcome(client.get("/fhir/Patient/bad id!"), 400)
    assert_outcome(client.get("/no/such/path"), 404)
    bad_json = client.post("/fhir/Patient", content=b"{not json", headers=FHIR_JSON)
    assert_outcome(bad_json, 400, "invalid")
    body = assert_outcome(
        client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": "1980-13-45"}),
        400,
    )
    assert body["issue"][0]["expression"] == ["Patient.birthDate"]
    assert "1980-13-45" not in str(body)  # no input values echoed back
    unknown_element = assert_outcome(
        client.post("/fhir/Patient", json={"resourceType": "Patient", "shoeSize": 44}), 400
    )
    assert unknown_element["issue"][0]["expression"] == ["Patient.shoeSize"]
    wrong_type = client.post("/fhir/Patient", json={"resourceType": "Observation"})
    assert_outcome(wrong_type, 400)
    assert_outcome(
        client.post("/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "text/xml"}),
        415,
    )
    assert_outcome(client.put("/fhir/Patient/abc", json=patient()), 400)  # id missing in body
    assert_outcome(client.get("/fhir/Patient", params={"shoe-size": "44"}), 400, "not-supported")
    assert_outcome(client.get("/fhir/Patient", params={"birthdate": "yesterday"}), 400)
    assert_outcome(client.get("/fhir/Patient", params={"_count": "-1"}), 400)
    assert_outcome(client.get("/fhir/Patient", params={"_sort": "shoe"}), 400)
    assert_outcome(client.get("/fhir/Patient", params={"gender:banana": "male"}), 400)
    assert_outcome(client.delete("/fhir/Patient"), 405)
    assert count(client, "Patient") == before


def test_transaction_and_batch(client: TestClient) -> None:
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b5a7c9e-1111-4222-8333-444455556666",
                "resource": patient(),
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"text": "work capacity"},
                    "subject": {"reference": "urn:uuid:0b5a7c9e-1111-4222-8333-444455556666"},
                },
                "request": {"method": "POST", "url": "Observation"},
            },
        ],
    }
    response = client.post("/fhir", json=transaction)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "transaction-response"
    pid = body["entry"][0]["resource"]["id"]
    obs = client.get(f"/fhir/Observation/{body['entry'][1]['resource']['id']}").json()
    assert obs["subject"]["reference"] == f"Patient/{pid}"

    broken = {**transaction, "entry": [*transaction["entry"], {"request": {"method": "POST"}}]}
    before = count(client, "Patient")
    assert_outcome(client.post("/fhir", json=broken), 400)
    assert count(client, "Patient") == before

    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient("0202802345"), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Patient/missing"}},
        ],
    }
    result = client.post("/fhir", json=batch).json()
    assert result["type"] == "batch-response"
    assert result["entry"][0]["response"]["status"].startswith("201")
    assert result["entry"][1]["response"]["status"].startswith("404")
    assert result["entry"][1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert count(client, "Patient") == before + 1
