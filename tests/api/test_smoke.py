from starlette.testclient import TestClient


def test_create_read_search(client: TestClient) -> None:
    r = client.post("/fhir/Patient", json={"resourceType": "Patient", "birthDate": "1980-01-02",
                                           "name": [{"family": "Hansen", "given": ["Ole"]}]})
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = client.get(f"/fhir/Patient/{pid}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    r = client.get("/fhir/Patient", params={"family": "hans", "birthdate": "ge1980"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 1
