"""The store on SQLite and PostgreSQL: versions, history, tombstones, atomic transactions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.data import DataPath
from gateway.errors import Gone, NotFound, PreconditionFailed
from gateway.store.database import Database, head_revision
from gateway.store.repository import Store

CPR = "urn:oid:1.2.208.176.1.2"


def patient(cpr: str, family: str = "Hansen") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": CPR, "value": cpr}],
        "name": [{"family": family}],
    }


@pytest.fixture
def store(database: Database) -> Store:
    return Store(database, fhir_base="http://testserver/fhir")


async def test_migrations_are_current(database: Database) -> None:
    assert await database.current_revision() == head_revision()
    await database.migrate()  # idempotent
    assert await database.current_revision() == head_revision()


async def test_every_write_is_a_version_and_delete_is_a_tombstone(store: Store) -> None:
    created = await store.create(patient("0101801234"))
    assert created.created and created.version == "1"
    pid = created.id
    updated = await store.update("Patient", pid, patient("0101801234", "Jensen"))
    assert updated.version == "2" and not updated.created
    assert (await store.read("Patient", pid))["name"][0]["family"] == "Jensen"
    assert (await store.vread("Patient", pid, "1"))["name"][0]["family"] == "Hansen"
    assert await store.delete("Patient", pid) == 3
    with pytest.raises(Gone):
        await store.read("Patient", pid)
    entries, total = await store.history("Patient", pid)
    assert total == 3
    assert [(e.version, e.method) for e in entries] == [(3, "DELETE"), (2, "PUT"), (1, "POST")]
    assert entries[0].resource is None
    # Deleting again changes nothing; a delete of something unknown is not an error either.
    assert await store.delete("Patient", pid) is None
    assert (await store.history("Patient", pid))[1] == 3
    # Re-creating a deleted id continues its history.
    again = await store.update("Patient", pid, patient("0101801234"))
    assert again.version == "4" and again.created


async def test_if_match_mismatch_leaves_data_unchanged(store: Store) -> None:
    pid = (await store.create(patient("0101801234"))).id
    with pytest.raises(PreconditionFailed):
        await store.update("Patient", pid, patient("0101801234", "X"), if_match='W/"7"')
    current = await store.read("Patient", pid)
    assert current["meta"]["versionId"] == "1" and current["name"][0]["family"] == "Hansen"
    ok = await store.update("Patient", pid, patient("0101801234", "X"), if_match='W/"1"')
    assert ok.version == "2"


async def test_index_follows_the_current_version(store: Store) -> None:
    pid = (await store.create(patient("0101801234", "Hansen"))).id
    await store.update("Patient", pid, patient("0101801234", "Jensen"))

    async def ids(**params: str) -> list[str]:
        result = await store.search(store.parse("Patient", list(params.items())))
        return [r["id"] for r in result.matches]

    assert await ids(family="Jensen") == [pid]
    assert await ids(family="Hansen") == []
    await store.delete("Patient", pid)
    assert await ids(family="Jensen") == []


async def test_conditional_create_is_idempotent(store: Store) -> None:
    first = await store.create(patient("0101801234"), if_none_exist=f"identifier={CPR}|0101801234")
    second = await store.create(patient("0101801234"), if_none_exist=f"identifier={CPR}|0101801234")
    assert first.created and second.matched_existing and second.id == first.id
    result = await store.search(store.parse("Patient", []))
    assert result.total == 1


async def test_unknown_resource_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.read("Patient", "nope")
    with pytest.raises(NotFound):
        await store.vread("Patient", "nope", "1")
    with pytest.raises(NotFound):
        await store.history("Patient", "nope")


def _transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


async def test_transaction_resolves_placeholders_and_conditions(store: Store) -> None:
    bundle = _transaction(
        {
            "fullUrl": "urn:uuid:7f1c1d2e-0000-4000-8000-000000000001",
            "resource": patient("0101801234"),
            "request": {
                "method": "POST",
                "url": "Patient",
                "ifNoneExist": f"identifier={CPR}|0101801234",
            },
        },
        {
            "resource": {
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "hours per week"},
                "identifier": [{"system": "urn:test", "value": "obs-1"}],
                "subject": {"reference": "urn:uuid:7f1c1d2e-0000-4000-8000-000000000001"},
            },
            "request": {"method": "PUT", "url": "Observation?identifier=urn:test|obs-1"},
        },
    )
    response = await DataPath.for_operator(store).bundle(bundle)
    assert [e["response"]["status"] for e in response["entry"]] == ["201 Created", "201 Created"]
    patient_id = response["entry"][0]["resource"]["id"]
    observation = response["entry"][1]["resource"]
    assert observation["subject"]["reference"] == f"Patient/{patient_id}"
    # The same transaction again: the patient is matched, the observation found and unchanged.
    again = await DataPath.for_operator(store).bundle(bundle)
    assert again["entry"][0]["resource"]["id"] == patient_id
    assert again["entry"][1]["resource"]["id"] == observation["id"]
    assert again["entry"][1]["resource"]["meta"]["versionId"] == "1"
    changed = {**bundle, "entry": [bundle["entry"][0], {**bundle["entry"][1]}]}
    changed["entry"][1]["resource"] = {**bundle["entry"][1]["resource"], "status": "amended"}
    third = await DataPath.for_operator(store).bundle(changed)
    assert third["entry"][1]["resource"]["id"] == observation["id"]
    assert third["entry"][1]["resource"]["meta"]["versionId"] == "2"
    assert (await store.search(store.parse("Patient", []))).total == 1
    assert (await store.search(store.parse("Observation", []))).total == 1


async def test_transaction_is_all_or_nothing(store: Store) -> None:
    existing = (await store.create(patient("0101801234"))).id
    bundle = _transaction(
        {"resource": patient("0202802345"), "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": {**patient("0101801234", "Changed"), "id": existing},
            "request": {"method": "PUT", "url": f"Patient/{existing}", "ifMatch": 'W/"9"'},
        },
    )
    with pytest.raises(PreconditionFailed):
        await DataPath.for_operator(store).bundle(bundle)
    result = await store.search(store.parse("Patient", []))
    assert result.total == 1
    assert result.matches[0]["name"][0]["family"] == "Hansen"
    assert (await store.history("Patient"))[1] == 1


async def test_concurrent_updates_make_contiguous_versions(store: Store) -> None:
    pid = (await store.create(patient("0101801234"))).id
    await asyncio.gather(
        *[store.update("Patient", pid, patient("0101801234", f"N{i}")) for i in range(10)]
    )
    entries, total = await store.history("Patient", pid, count=100)
    assert total == 11
    assert sorted(e.version for e in entries) == list(range(1, 12))


async def test_concurrent_conditional_creates_make_one_resource(store: Store) -> None:
    criteria = f"identifier={CPR}|0303803456"
    results = await asyncio.gather(
        *[store.create(patient("0303803456"), if_none_exist=criteria) for _ in range(8)]
    )
    assert len({r.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert (await store.search(store.parse("Patient", []))).total == 1


async def test_an_identical_update_makes_no_new_version(store: Store) -> None:
    pid = (await store.create(patient("0101801234"))).id
    same = await store.update("Patient", pid, patient("0101801234"))
    assert same.unchanged and same.version == "1" and not same.created
    assert (await store.history("Patient", pid))[1] == 1
    changed = await store.update("Patient", pid, patient("0101801234", "Jensen"))
    assert not changed.unchanged and changed.version == "2"
