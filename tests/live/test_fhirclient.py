"""The SMART Python client (fhirclient, R4 models) against the live gateway.

fhirclient reads the CapabilityStatement on ``prepare()``, finds the token endpoint in its
SMART ``oauth-uris`` extension and, given a signed client assertion (``jwt_token``), runs the
SMART Backend Services ``client_credentials`` grant itself on ``authorize()``: no token is
injected by hand. Its models are strict R4 (4.0.1) classes, so every response below is also
parsed by an independent R4 implementation.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from fhirclient import client
from fhirclient.auth import FHIROAuth2Auth
from fhirclient.models.bundle import Bundle
from fhirclient.models.capabilitystatement import CapabilityStatement
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException, FHIRUnauthorizedException
from live.harness import PARTICIPANT, READ_WRITE, LiveGateway

CPR = "urn:oid:1.2.208.176.1.2"

pytestmark = pytest.mark.slow


def _smart(live_gateway: LiveGateway) -> client.FHIRClient:
    smart = client.FHIRClient(
        settings={
            "app_id": PARTICIPANT,
            "api_base": live_gateway.fhir_base,
            "jwt_token": live_gateway.client_assertion(),
            "scope": READ_WRITE,
        }
    )
    # A backend service has no patient launch context ("launch/patient" is not a system scope).
    smart.wants_patient = False
    return smart


@pytest.fixture
def smart(live_gateway: LiveGateway) -> Iterator[client.FHIRClient]:
    """A fhirclient that has discovered the token endpoint and obtained a token."""
    smart = _smart(live_gateway)
    try:
        assert smart.prepare() is False  # capability read, OAuth2 found, no token yet
        smart.authorize()
        assert smart.ready
        yield smart
    finally:
        smart.server.session.close()


def _patient_json(cpr: str, family: str, birth_date: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": CPR, "value": cpr}],
        "name": [{"family": family, "given": ["Mette"]}],
        "birthDate": birth_date,
    }


def test_discovers_token_endpoint_and_authorizes(live_gateway: LiveGateway) -> None:
    smart = _smart(live_gateway)
    try:
        assert smart.prepare() is False
        auth = smart.server.auth
        assert isinstance(auth, FHIROAuth2Auth)
        assert auth._token_uri == live_gateway.settings.token_url
        capability = smart.server.capabilityStatement
        assert isinstance(capability, CapabilityStatement)
        assert capability.fhirVersion == "4.0.1" and capability.kind == "instance"
        types = {r.type for r in capability.rest[0].resource}
        assert {"Patient", "Observation", "Consent", "Task"} <= types

        with pytest.raises(FHIRUnauthorizedException):  # no token yet: 401
            Patient.read("anything", smart.server)
        smart.authorize()
        assert smart.ready and auth.access_token
        with pytest.raises(FHIRNotFoundException):  # now authorized: 404
            Patient.read("anything", smart.server)
    finally:
        smart.server.session.close()


def test_create_read_update_delete(smart: client.FHIRClient) -> None:
    created = Patient(_patient_json("1010101010", "Hansen", "1980-10-10")).create(smart.server)
    pid = created["id"]
    assert created["meta"]["versionId"] == "1"

    patient = Patient.read(pid, smart.server)
    assert patient.id == pid and patient.meta.versionId == "1"
    assert patient.name[0].family == "Hansen" and patient.birthDate.isostring == "1980-10-10"
    assert patient.identifier[0].system == CPR and patient.identifier[0].value == "1010101010"

    patient.name[0].family = "Jensen"
    updated = patient.update(smart.server)
    assert updated["meta"]["versionId"] == "2"
    assert Patient.read(pid, smart.server).name[0].family == "Jensen"

    patient.delete(smart.server)
    with pytest.raises(requests.HTTPError) as gone:
        Patient.read(pid, smart.server)
    assert gone.value.response.status_code == 410
    with pytest.raises(FHIRNotFoundException):
        Patient.read("no-such-patient", smart.server)


def test_transaction_then_search_pages(smart: client.FHIRClient) -> None:
    births = ["1961-01-01", "1962-02-02", "1963-03-03", "1964-04-04", "1965-05-05"]
    transaction = Bundle(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": _patient_json(f"20202{i:05d}", "Sidebarn", birth),
                    "request": {"method": "POST", "url": "Patient"},
                }
                for i, birth in enumerate(births)
            ],
        }
    )
    response = Bundle(transaction.create(smart.server))
    assert response.type == "transaction-response"
    assert [e.response.status for e in response.entry] == ["201 Created"] * 5
    ids = [e.resource.id for e in response.entry]

    search = Patient.where(struct={"family": "sidebarn", "_sort": "birthdate", "_count": "2"})
    pages = list(search.perform_iter(smart.server))
    assert [len(page.entry) for page in pages] == [2, 2, 1]
    assert all(page.total == 5 for page in pages)
    found = list(search.perform_resources_iter(smart.server))
    assert [p.id for p in found] == ids
    assert [p.birthDate.isostring for p in found] == births

    by_identifier = Patient.where(struct={"identifier": f"{CPR}|2020200003"})
    assert [p.id for p in by_identifier.perform_resources_iter(smart.server)] == [ids[3]]


@pytest.mark.filterwarnings(
    # perform_resources() is fhirclient's long-standing API, deprecated in 4.2 for
    # perform_resources_iter(); callers still use it, so check it once.
    r"ignore:perform_resources\(\) is deprecated:DeprecationWarning"
)
def test_deprecated_perform_resources_still_pages(smart: client.FHIRClient) -> None:
    for i in range(3):
        Patient(_patient_json(f"30303{i:05d}", "Gammel", f"197{i}-01-01")).create(smart.server)
    found = Patient.where(struct={"family": "gammel", "_count": "1"}).perform_resources(
        smart.server
    )
    assert sorted(p.birthDate.isostring for p in found) == [
        "1970-01-01",
        "1971-01-01",
        "1972-01-01",
    ]


def test_include_and_reverse_include(smart: client.FHIRClient) -> None:
    pid = Patient(_patient_json("4040404040", "Holm", "1974-04-04")).create(smart.server)["id"]
    other = Patient(_patient_json("5050505050", "Berg", "1975-05-05")).create(smart.server)["id"]
    observation_ids = []
    for subject, kg in ((pid, 80.5), (pid, 82.0), (other, 60.0)):
        observation = Observation(
            {
                "resourceType": "Observation",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
                "subject": {"reference": f"Patient/{subject}"},
                "valueQuantity": {"value": kg, "unit": "kg"},
            }
        )
        created = observation.create(smart.server)
        if subject == pid:
            observation_ids.append(created["id"])

    search = Observation.where(struct={"subject": f"Patient/{pid}"}).include("subject")
    (page,) = list(search.perform_iter(smart.server))
    matches = [e.resource for e in page.entry if e.search.mode == "match"]
    includes = [e.resource for e in page.entry if e.search.mode == "include"]
    assert sorted(o.id for o in matches) == sorted(observation_ids)
    assert all(isinstance(o, Observation) for o in matches)
    assert [(type(p), p.id, p.name[0].family) for p in includes] == [(Patient, pid, "Holm")]
    assert sorted(o.valueQuantity.value for o in matches) == [80.5, 82.0]

    reverse = Patient.where(struct={"_id": pid}).include("subject", Observation, reverse=True)
    resources = list(reverse.perform_resources_iter(smart.server))
    assert sorted((r.resource_type, r.id) for r in resources) == sorted(
        [("Patient", pid)] + [("Observation", oid) for oid in observation_ids]
    )
