"""fhirpy (a third-party FHIR client) against the live gateway, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest
from fhirpy import AsyncFHIRClient, SyncFHIRClient
from fhirpy.base.exceptions import AuthorizationError, OperationOutcome, ResourceNotFound
from live.harness import LiveGateway

CPR = "urn:oid:1.2.208.176.1.2"
LOINC = "http://loinc.org"

pytestmark = pytest.mark.slow


@pytest.fixture
def fhir(live_gateway: LiveGateway, token: str) -> SyncFHIRClient:
    return SyncFHIRClient(live_gateway.fhir_base, authorization=f"Bearer {token}")


def _patient(fhir: SyncFHIRClient, cpr: str, family: str, birth_date: str) -> Any:
    patient = fhir.resource(
        "Patient",
        identifier=[{"system": CPR, "value": cpr}],
        name=[{"family": family, "given": ["Ole"]}],
        birthDate=birth_date,
    )
    patient.save()
    return patient


def _weight(fhir: SyncFHIRClient, patient_id: str, kg: float) -> Any:
    observation = fhir.resource(
        "Observation",
        status="final",
        code={"coding": [{"system": LOINC, "code": "29463-7"}]},
        subject={"reference": f"Patient/{patient_id}"},
        valueQuantity={"value": kg, "unit": "kg", "system": "http://unitsofmeasure.org"},
    )
    observation.save()
    return observation


def test_create_read_update_delete(fhir: SyncFHIRClient) -> None:
    patient = _patient(fhir, "0101801234", "Hansen", "1980-01-01")
    pid = patient.id
    assert pid and patient["meta"]["versionId"] == "1"

    read = fhir.reference("Patient", pid).to_resource()
    assert read["identifier"] == [{"system": CPR, "value": "0101801234"}]
    assert read["name"][0]["family"] == "Hansen"

    read["name"][0]["family"] = "Jensen"
    read.save()
    assert read.id == pid and read["meta"]["versionId"] == "2"
    assert fhir.get("Patient", pid)["name"][0]["family"] == "Jensen"
    found = fhir.resources("Patient").search(identifier=f"{CPR}|0101801234").get()
    assert found.id == pid and found["meta"]["versionId"] == "2"

    read.delete()
    with pytest.raises(ResourceNotFound):  # 410 Gone
        fhir.reference("Patient", pid).to_resource()
    with pytest.raises(ResourceNotFound):  # 404
        fhir.get("Patient", "no-such-patient")
    assert fhir.resources("Patient").search(identifier=f"{CPR}|0101801234").fetch() == []


def test_search_pages_through_next_links(fhir: SyncFHIRClient) -> None:
    births = [f"19{60 + i}-05-0{1 + i % 9}" for i in range(7)]
    ids = [_patient(fhir, f"02026{i:05d}", "Sidemand", b).id for i, b in enumerate(births)]
    _patient(fhir, "0303030303", "Andenfamilie", "1999-01-01")
    search = fhir.resources("Patient").search(family="sidemand").sort("birthdate").limit(3)

    first_page = search.fetch_raw()
    assert first_page["total"] == 7 and len(first_page["entry"]) == 3
    links = {link["relation"]: link["url"] for link in first_page["link"]}
    assert links["next"].startswith(fhir.url) and "_offset=3" in links["next"]
    assert "previous" not in links and "_offset=6" in links["last"]

    # Iterating follows next links: three pages of 3, 3 and 1, in birthdate order.
    assert [p.id for p in search] == ids
    assert [p["birthDate"] for p in search.fetch_all()] == births
    assert [p.id for p in search.sort("-birthdate").limit(2)] == ids[::-1]


def test_include_and_revinclude(fhir: SyncFHIRClient) -> None:
    patient = _patient(fhir, "0404044444", "Holm", "1975-04-04")
    other = _patient(fhir, "0505055555", "Berg", "1976-05-05")
    weights = [_weight(fhir, patient.id, kg) for kg in (80.5, 81.0, 79.5)]
    _weight(fhir, other.id, 60.0)

    search = (
        fhir.resources("Observation")
        .search(subject=f"Patient/{patient.id}")
        .include("Observation", "subject")
    )
    bundle = search.fetch_raw()
    modes = [(e["resource"]["resourceType"], e["search"]["mode"]) for e in bundle["entry"]]
    assert sorted(modes) == [("Observation", "match")] * 3 + [("Patient", "include")]
    assert bundle["total"] == 3
    included = next(e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include")
    assert included.id == patient.id and included["name"][0]["family"] == "Holm"
    assert sorted(o.id for o in search.fetch()) == sorted(w.id for w in weights)

    rev = (
        fhir.resources("Patient")
        .search(_id=patient.id)
        .revinclude("Observation", "subject")
        .fetch_raw()
    )
    by_mode: dict[str, set[str]] = {}
    for entry in rev["entry"]:
        by_mode.setdefault(entry["search"]["mode"], set()).add(entry["resource"].id)
    assert by_mode == {"match": {patient.id}, "include": {w.id for w in weights}}


def test_count_and_unknown_parameters(live_gateway: LiveGateway, token: str) -> None:
    # fhirpy's count() sends the non-standard ``_totalMethod=count``; the gateway rejects
    # unknown parameters unless the client asks for lenient handling (FHIR's Prefer header).
    strict = SyncFHIRClient(live_gateway.fhir_base, authorization=f"Bearer {token}")
    lenient = SyncFHIRClient(
        live_gateway.fhir_base,
        authorization=f"Bearer {token}",
        extra_headers={"Prefer": "handling=lenient"},
    )
    _patient(strict, "0606066666", "Lund", "1966-06-06")
    _patient(strict, "0707077777", "Lund", "1967-07-07")
    with pytest.raises(OperationOutcome) as raised:
        strict.resources("Patient").search(family="lund").count()
    assert raised.value.resource["issue"][0]["code"] == "not-supported"
    assert lenient.resources("Patient").search(family="lund").count() == 2
    assert lenient.resources("Patient").search(family="nobody").count() == 0


def test_requests_without_a_valid_token_are_refused(live_gateway: LiveGateway) -> None:
    anonymous = SyncFHIRClient(live_gateway.fhir_base)
    forged = SyncFHIRClient(live_gateway.fhir_base, authorization="Bearer not-a-token")
    for client in (anonymous, forged):
        with pytest.raises(AuthorizationError):
            client.resources("Patient").fetch()


async def test_async_client(live_gateway: LiveGateway, token: str) -> None:
    fhir = AsyncFHIRClient(live_gateway.fhir_base, authorization=f"Bearer {token}")
    patient = fhir.resource(
        "Patient", identifier=[{"system": CPR, "value": "0808088888"}], gender="female"
    )
    await patient.save()
    assert patient.id and patient["meta"]["versionId"] == "1"
    for kg in (70.0, 71.5):
        observation = fhir.resource(
            "Observation",
            status="final",
            code={"coding": [{"system": LOINC, "code": "29463-7"}]},
            subject={"reference": f"Patient/{patient.id}"},
            valueQuantity={"value": kg, "unit": "kg"},
        )
        await observation.save()
    pages = fhir.resources("Observation").search(patient=patient.id).limit(1)
    values = sorted([o["valueQuantity"]["value"] async for o in pages])
    assert values == [70.0, 71.5]
    read = await fhir.reference("Patient", patient.id).to_resource()
    assert read["gender"] == "female"
    await read.delete()
    with pytest.raises(ResourceNotFound):
        await fhir.get("Patient", patient.id)
