"""Hostile or broken input on the REST API: 4xx OperationOutcomes naming the limit, never 5xx.

Every case runs on both stores (the ``client`` fixture follows ``database_url``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.auth.principal import Principal
from gateway.deps import get_principal
from gateway.settings import Settings

OPERATOR = Principal(
    participant="test-operator",
    kind="hospital",
    client_id="test-operator",
    scopes=frozenset({"system/*.read", "system/*.write"}),
)

FHIR = {"Content-Type": "application/fhir+json"}


def _limit_named(response: Any, setting: str) -> None:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    issue = body["issue"][0]
    assert issue["code"] == "too-costly", body
    assert f"BROBYGGER_{setting.upper()}" in issue["diagnostics"], body


def _nested_extension(levels: int) -> dict[str, Any]:
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "a"}
    for _ in range(levels):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    return {"resourceType": "Patient", "extension": [extension]}


@pytest.fixture
def small_limits(settings: Settings) -> Iterator[TestClient]:
    """The app with small limits, to reach each one with a small request."""
    tight = settings.model_copy(
        update={
            "json_max_array_length": 5,
            "json_max_string_chars": 50,
            "search_max_parameters": 3,
            "search_max_includes": 1,
            "search_max_included_resources": 2,
        }
    )
    app = create_app(tight)
    app.dependency_overrides[get_principal] = lambda: OPERATOR
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


# --- unknown resource types ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/fhir/Patient", 400),
        ("/fhir/$validate", 400),
        ("/fhir/Patient/$validate", 400),
        ("/fhir/AAA", 404),
        ("/fhir/AAA/$validate", 404),
    ],
)
def test_an_unknown_resource_type_is_a_4xx_outcome(
    client: TestClient, path: str, status: int
) -> None:
    response = client.post(path, json={"resourceType": "AAA"}, headers=FHIR)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_transaction_entry_of_an_unknown_type_is_refused(client: TestClient) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": {"resourceType": "AAA"}, "request": {"method": "POST", "url": "AAA"}}
        ],
    }
    response = client.post("/fhir", json=bundle, headers=FHIR)
    assert response.status_code in (400, 404), response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient").json()["total"] == 0


# --- JSON limits ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/fhir/Patient", "/fhir/$validate", "/fhir"])
def test_json_nested_past_the_recursion_limit_is_a_400(client: TestClient, path: str) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    response = client.post(path, content=deep, headers=FHIR)
    assert response.status_code == 400, response.text
    _limit_named(response, "json_max_depth")


@pytest.mark.parametrize("path", ["/fhir/Patient", "/fhir/$validate", "/fhir/Patient/$validate"])
def test_a_valid_extension_200_deep_is_refused_by_the_depth_limit(
    client: TestClient, path: str
) -> None:
    response = client.post(path, content=json.dumps(_nested_extension(200)), headers=FHIR)
    assert response.status_code == 400, response.text
    _limit_named(response, "json_max_depth")
    assert client.get("/fhir/Patient").json()["total"] == 0


def test_nesting_within_the_limit_is_stored(client: TestClient) -> None:
    response = client.post("/fhir/Patient", content=json.dumps(_nested_extension(25)), headers=FHIR)
    assert response.status_code == 201, response.text


def test_a_long_array_and_a_long_string_are_refused(small_limits: TestClient) -> None:
    names = [{"family": f"F{i}"} for i in range(6)]
    response = small_limits.post(
        "/fhir/Patient", json={"resourceType": "Patient", "name": names}, headers=FHIR
    )
    assert response.status_code == 400, response.text
    _limit_named(response, "json_max_array_length")
    assert response.json()["issue"][0]["expression"] == ["/name"]
    long_name = {"resourceType": "Patient", "name": [{"family": "x" * 51}]}
    response = small_limits.post("/fhir/Patient", json=long_name, headers=FHIR)
    assert response.status_code == 400, response.text
    _limit_named(response, "json_max_string_chars")
    assert response.json()["issue"][0]["expression"] == ["/name/0/family"]


# --- search limits -------------------------------------------------------------------------


def test_too_many_or_values_is_a_400_not_a_503(client: TestClient) -> None:
    values = ",".join(f"a{i}" for i in range(900))
    response = client.get(f"/fhir/Patient?family={values}")
    assert response.status_code == 400, response.text
    _limit_named(response, "search_max_or_values")


def test_as_many_or_values_as_allowed_are_searched(client: TestClient) -> None:
    client.post("/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": "a99"}]})
    values = ",".join(f"a{i}" for i in range(100))
    response = client.get(f"/fhir/Patient?family={values}")
    assert response.status_code == 200, response.text
    assert response.json()["total"] == 1


def test_a_chain_five_deep_is_a_400_and_three_deep_is_searched(client: TestClient) -> None:
    deep = "general-practitioner:Organization.partof.partof.partof.partof.name=x"
    response = client.get(f"/fhir/Patient?{deep}")
    assert response.status_code == 400, response.text
    _limit_named(response, "search_max_chain_depth")
    allowed = "general-practitioner:Organization.partof.partof.name=x"
    response = client.get(f"/fhir/Patient?{allowed}")
    assert response.status_code == 200, response.text
    nested_has = "_has:Observation:subject:_has:Provenance:target:_has:AuditEvent:entity:x=1"
    response = client.get(f"/fhir/Patient?_has:Observation:patient:{nested_has}")
    assert response.status_code == 400, response.text
    _limit_named(response, "search_max_chain_depth")


def test_too_many_parameters_and_includes(small_limits: TestClient) -> None:
    response = small_limits.get("/fhir/Patient?family=a&given=b&gender=male&birthdate=2000")
    assert response.status_code == 400, response.text
    _limit_named(response, "search_max_parameters")
    includes = "_include=Observation:subject&_include=Observation:performer"
    response = small_limits.get(f"/fhir/Observation?{includes}")
    assert response.status_code == 400, response.text
    _limit_named(response, "search_max_includes")


def test_includes_that_would_add_too_many_resources_are_refused(
    small_limits: TestClient,
) -> None:
    created = small_limits.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR)
    patient = f"Patient/{created.json()['id']}"
    for _ in range(3):
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": patient},
        }
        assert small_limits.post("/fhir/Observation", json=observation).status_code == 201
    response = small_limits.get(f"/fhir/{patient}")
    assert response.status_code == 200
    response = small_limits.get(
        f"/fhir/Patient?_id={patient.split('/')[1]}&_revinclude=Observation:subject"
    )
    assert response.status_code == 400, response.text
    _limit_named(response, "search_max_included_resources")
    response = small_limits.get(f"/fhir/Observation?subject={patient}&_include=Observation:subject")
    assert response.status_code == 200, response.text


# --- time zones ----------------------------------------------------------------------------


@pytest.mark.parametrize("offset", ["+99:00", "+14:30", "-15:00", "+24:00"])
def test_offsets_beyond_14_hours_are_refused(client: TestClient, offset: str) -> None:
    value = f"2026-01-01T00:00:00{offset}".replace("+", "%2B")
    for query in (f"_lastUpdated=gt{value}", f"birthdate=lt{value}"):
        response = client.get(f"/fhir/Patient?{query}")
        assert response.status_code == 400, (query, response.text)
        assert response.json()["resourceType"] == "OperationOutcome"


def test_offsets_up_to_14_hours_are_searched(client: TestClient) -> None:
    for offset in ("%2B14:00", "-14:00", "Z"):
        response = client.get(f"/fhir/Patient?_lastUpdated=gt2026-01-01T00:00:00{offset}")
        assert response.status_code == 200, response.text


# --- a 500 closes its connection, and says so ----------------------------------------------


def test_an_unhandled_error_says_connection_close(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("an unexpected bug")

    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.get("/boom")
    assert response.status_code == 500
    assert response.headers["connection"] == "close"
    assert response.json()["issue"][0]["code"] == "exception"
