"""FHIR search semantics through the REST API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from starlette.testclient import TestClient

CPR = "urn:oid:1.2.208.176.1.2"
LOINC = "http://loinc.org"


def ids(bundle: dict[str, Any], mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


@pytest.fixture
def data(client: TestClient) -> dict[str, str]:
    def post(resource: dict[str, Any]) -> str:
        response = client.post(f"/fhir/{resource['resourceType']}", json=resource)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    org = post({"resourceType": "Organization", "name": "Jobcenter Aarhus"})
    ole = post(
        {
            "resourceType": "Patient",
            "identifier": [{"system": CPR, "value": "0101801234"}],
            "name": [{"family": "Hansen", "given": ["Ole"]}],
            "birthDate": "1980-01-01",
            "gender": "male",
            "managingOrganization": {"reference": f"Organization/{org}"},
        }
    )
    birgitte = post(
        {
            "resourceType": "Patient",
            "identifier": [{"system": CPR, "value": "0202752345"}],
            "name": [{"family": "Sørensen", "given": ["Birgitte"]}],
            "birthDate": "1975-02-02",
            "gender": "female",
        }
    )
    rene = post(
        {
            "resourceType": "Patient",
            "identifier": [{"value": "no-system"}],
            "name": [{"family": "Réne"}],
            "birthDate": "1990",
        }
    )
    obs = {}
    for name, subject, code, date in (
        ("hours", ole, "hours", "2026-03-01"),
        ("capacity", ole, "capacity", "2026-04-15T10:00:00+02:00"),
        ("b-hours", birgitte, "hours", "2026-05-01"),
    ):
        obs[name] = post(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": code}]},
                "subject": {"reference": f"Patient/{subject}"},
                "effectiveDateTime": date,
            }
        )
    prov = post(
        {
            "resourceType": "Provenance",
            "target": [{"reference": f"Observation/{obs['hours']}"}],
            "recorded": "2026-03-01T12:00:00Z",
            "agent": [{"who": {"reference": f"Organization/{org}"}}],
        }
    )
    return {"org": org, "ole": ole, "birgitte": birgitte, "rene": rene, "prov": prov, **obs}


def search(client: TestClient, rtype: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/fhir/{rtype}", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "searchset"
    return body


def test_token_forms(client: TestClient, data: dict[str, str]) -> None:
    assert ids(search(client, "Patient", identifier=f"{CPR}|0101801234")) == [data["ole"]]
    assert ids(search(client, "Patient", identifier="0101801234")) == [data["ole"]]
    assert ids(search(client, "Patient", identifier="|no-system")) == [data["rene"]]
    assert ids(search(client, "Patient", identifier="|0101801234")) == []
    assert sorted(ids(search(client, "Patient", identifier=f"{CPR}|"))) == sorted(
        [data["ole"], data["birgitte"]]
    )
    assert sorted(ids(search(client, "Patient", gender="male,female"))) == sorted(
        [data["ole"], data["birgitte"]]
    )
    assert ids(search(client, "Patient", **{"gender:not": "female", "family": "h"})) == [
        data["ole"]
    ]
    assert ids(search(client, "Patient", _id=data["birgitte"])) == [data["birgitte"]]


def test_string_forms(client: TestClient, data: dict[str, str]) -> None:
    assert ids(search(client, "Patient", family="sør")) == [data["birgitte"]]
    assert ids(search(client, "Patient", family="rene")) == [data["rene"]]  # accents folded
    assert ids(search(client, "Patient", **{"family:exact": "Sørensen"})) == [data["birgitte"]]
    assert ids(search(client, "Patient", **{"family:exact": "sørensen"})) == []
    assert ids(search(client, "Patient", **{"name:contains": "irgit"})) == [data["birgitte"]]
    assert ids(search(client, "Patient", name="ole")) == [data["ole"]]


def test_date_prefixes(client: TestClient, data: dict[str, str]) -> None:
    def born(value: str) -> list[str]:
        return sorted(ids(search(client, "Patient", birthdate=value)))

    assert born("1980-01-01") == [data["ole"]]
    assert born("1980") == [data["ole"]]
    assert born("eq1990") == [data["rene"]]
    assert born("lt1980") == [data["birgitte"]]
    assert born("le1980-01-01") == sorted([data["ole"], data["birgitte"]])
    assert born("gt1980-01-01") == [data["rene"]]
    assert born("ge1980-01-01") == sorted([data["ole"], data["rene"]])
    # "1990" covers the whole year: it is neither before nor equal to one day in it.
    assert born("1990-06-01") == []
    assert sorted(ids(search(client, "Observation", date="ge2026-04-15"))) == sorted(
        [data["capacity"], data["b-hours"]]
    )
    # 10:00+02:00 is 08:00 UTC: zones are compared as instants.
    assert ids(search(client, "Observation", date="2026-04-15T08:00:00Z")) == [data["capacity"]]
    assert ids(search(client, "Observation", date="2026-04-15T10:00:00Z")) == []
    assert ids(search(client, "Observation", date="2026-04-15")) == [data["capacity"]]


def test_references_chains_and_has(client: TestClient, data: dict[str, str]) -> None:
    ole = data["ole"]
    both = sorted([data["hours"], data["capacity"]])
    assert sorted(ids(search(client, "Observation", subject=f"Patient/{ole}"))) == both
    assert sorted(ids(search(client, "Observation", patient=ole))) == both
    assert sorted(ids(search(client, "Observation", **{"subject:Patient": ole}))) == both
    assert (
        sorted(
            ids(
                search(client, "Observation", **{"subject:Patient.identifier": f"{CPR}|0101801234"})
            )
        )
        == both
    )
    assert sorted(ids(search(client, "Observation", **{"patient.family": "hansen"}))) == both
    chained_twice = search(client, "Observation", **{"patient.organization.name": "jobcenter"})
    assert sorted(ids(chained_twice)) == both
    has = search(client, "Patient", **{"_has:Observation:patient:code": f"{LOINC}|capacity"})
    assert ids(has) == [ole]
    assert ids(search(client, "Patient", **{"_has:Observation:patient:code": "nothing"})) == []
    assert ids(search(client, "Observation", **{"code": "hours", "patient:missing": "false"}))


def test_include_and_revinclude(client: TestClient, data: dict[str, str]) -> None:
    bundle = search(
        client,
        "Observation",
        code="hours",
        _include="Observation:subject",
        _revinclude="Provenance:target",
    )
    assert sorted(ids(bundle)) == sorted([data["hours"], data["b-hours"]])
    assert sorted(ids(bundle, "include")) == sorted([data["ole"], data["birgitte"], data["prov"]])
    assert bundle["total"] == 2  # includes are not counted
    iterate = search(
        client,
        "Observation",
        _id=data["hours"],
        _include="Observation:subject",
        **{"_include:iterate": "Patient:organization"},
    )
    assert data["org"] in ids(iterate, "include")


def test_sort_total_and_summary(client: TestClient, data: dict[str, str]) -> None:
    by_birth = ids(search(client, "Patient", _sort="birthdate"))
    assert by_birth == [data["birgitte"], data["ole"], data["rene"]]
    assert ids(search(client, "Patient", _sort="-birthdate")) == by_birth[::-1]
    newest_first = ids(search(client, "Patient", _sort="-_lastUpdated"))
    assert newest_first == [data["rene"], data["birgitte"], data["ole"]]
    assert "total" not in search(client, "Patient", _total="none")
    summary = search(client, "Observation", _summary="count")
    assert summary["total"] == 3 and "entry" not in summary


def test_paging_is_complete_and_stable(client: TestClient, data: dict[str, str]) -> None:
    for i in range(7):
        client.post(
            "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": f"Page{i}"}]}
        )
    first = search(client, "Patient", family="page", _count=3)
    assert first["total"] == 7
    seen = ids(first)
    links = {link["relation"]: link["url"] for link in first["link"]}
    assert "previous" not in links and "last" in links
    pages = 1
    while "next" in links:
        parts = urlsplit(links["next"])
        assert parts.netloc == "testserver" and parts.path == "/fhir/Patient"
        again = client.get(f"{parts.path}?{parts.query}").json()
        assert ids(again) == ids(client.get(f"{parts.path}?{parts.query}").json())  # stable
        seen += ids(again)
        links = {link["relation"]: link["url"] for link in again["link"]}
        pages += 1
    assert pages == 3 and len(seen) == 7 and len(set(seen)) == 7


def test_unknown_parameter_is_refused_unless_lenient(client: TestClient) -> None:
    strict = client.get("/fhir/Patient", params={"favourite-colour": "blue"})
    assert strict.status_code == 400
    assert strict.json()["issue"][0]["expression"] == ["favourite-colour"]
    lenient = client.get(
        "/fhir/Patient",
        params={"favourite-colour": "blue"},
        headers={"Prefer": "handling=lenient"},
    )
    assert lenient.status_code == 200
    outcome = [e for e in lenient.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert outcome[0]["resource"]["issue"][0]["severity"] == "warning"


def test_post_search(client: TestClient, data: dict[str, str]) -> None:
    response = client.post(
        "/fhir/Patient/_search",
        content="family=hansen",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200 and ids(response.json()) == [data["ole"]]
