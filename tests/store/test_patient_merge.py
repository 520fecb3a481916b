"""One Patient per CPR-system identifier (database rule) and merging older duplicates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from gateway.cli import app
from gateway.errors import Conflict
from gateway.store import audit_log, patient_merge
from gateway.store.database import Database
from gateway.store.identities import X_ECPR
from gateway.store.repository import Store
from gateway.store.schema import patient_identities, resources

CPR = "urn:oid:1.2.208.176.1.2"


def patient(*identifiers: tuple[str, str], family: str = "Hansen") -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": s, "value": v} for s, v in identifiers],
        "name": [{"family": family}],
    }


@pytest.fixture
def store(database: Database) -> Store:
    return Store(database, fhir_base="http://testserver/fhir")


async def _identities(store: Store) -> dict[tuple[str, str], str]:
    async with store.read_connection() as conn:
        rows = await conn.execute(select(patient_identities))
        return {(r.system, r.value): r.patient_id for r in rows}


async def test_a_second_patient_with_a_held_identifier_is_refused(store: Store) -> None:
    first = await store.create(patient((CPR, "0101801234")))
    with pytest.raises(Conflict, match="another Patient already holds this CPR"):
        await store.create(patient((X_ECPR, "0101801VJ5"), (CPR, "0101801234")))
    # The identifier follows the Patient's versions: dropped, it is free again.
    await store.update("Patient", first.id, patient((X_ECPR, "0101801VJ5")))
    second = await store.create(patient((CPR, "0101801234")))
    assert await _identities(store) == {
        (X_ECPR, "0101801VJ5"): first.id,
        (CPR, "0101801234"): second.id,
    }
    # The database itself refuses, not only the code: a raw insert breaks the primary key.
    with pytest.raises(IntegrityError):
        async with store.database.engine.begin() as conn:
            await conn.execute(
                patient_identities.insert().values(
                    system=CPR, value="0101801234", patient_id=first.id
                )
            )
    # A deleted Patient holds nothing.
    await store.delete("Patient", second.id)
    assert (CPR, "0101801234") not in await _identities(store)


async def _legacy_duplicate(store: Store) -> tuple[str, str, str]:
    """Two Patients with one CPR, as stored before the identity table existed."""
    keep = await store.create(patient((CPR, "0202802345")))
    other = await store.create(patient((X_ECPR, "0202802VJ5"), family="Hansen-Old"))
    observation = await store.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "ODI"},
            "subject": {"reference": f"Patient/{other.id}"},
        }
    )
    legacy = patient((X_ECPR, "0202802VJ5"), (CPR, "0202802345"), family="Hansen-Old")
    legacy = {"id": other.id, **legacy, "meta": other.resource["meta"]}
    async with store.database.engine.begin() as conn:
        await conn.execute(
            update(resources)
            .where(resources.c.type == "Patient", resources.c.id == other.id)
            .values(content=json.dumps(legacy))
        )
    return keep.id, other.id, observation.id


async def test_duplicates_are_listed_and_merged_with_history_and_audit(store: Store) -> None:
    keep, other, observation = await _legacy_duplicate(store)
    found = await patient_merge.duplicates(store)
    assert [(d.system, d.masked, sorted(d.patient_ids)) for d in found] == [
        ("CPR", "020280-****", sorted([keep, other]))
    ]
    done = await patient_merge.merge(store, keep, other, operator="operator:test")
    assert done["repointed"] == [f"Observation/{observation}"]
    kept = await store.read("Patient", keep)
    assert {(i["system"], i["value"]) for i in kept["identifier"]} == {
        (CPR, "0202802345"),
        (X_ECPR, "0202802VJ5"),
    }
    retired = await store.read("Patient", other)
    assert retired["active"] is False
    assert retired["link"] == [{"other": {"reference": f"Patient/{keep}"}, "type": "replaced-by"}]
    assert "identifier" not in retired
    _, versions = await store.history("Patient", other)
    assert versions == 2  # the duplicate's history is kept
    moved = await store.read("Observation", observation)
    assert moved["subject"]["reference"] == f"Patient/{keep}"
    assert moved["meta"]["versionId"] == "2"
    assert await patient_merge.duplicates(store) == []
    assert await _identities(store) == {(CPR, "0202802345"): keep, (X_ECPR, "0202802VJ5"): keep}
    async with store.read_connection() as conn:
        events, _ = await audit_log.search(conn, audit_log.AuditQuery(patient_id=keep))
    merges = [e for e in events if e["subtype"][0]["code"] == "merge"]
    assert len(merges) == 1
    assert merges[0]["agent"][0]["who"]["display"] == "operator:test"


def test_the_patients_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROBYGGER_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/cli.db")
    monkeypatch.setenv("BROBYGGER_KEYS_DIR", str(tmp_path / "keys"))
    runner = CliRunner()
    listed = runner.invoke(app, ["patients", "duplicates"])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.strip() == "no duplicates"

    async def seed() -> tuple[str, str, str]:
        database = Database(f"sqlite+aiosqlite:///{tmp_path}/cli.db")
        await database.migrate()
        try:
            return await _legacy_duplicate(Store(database))
        finally:
            await database.dispose()

    import asyncio

    keep, other, _ = asyncio.run(seed())
    listed = runner.invoke(app, ["patients", "duplicates"])
    assert listed.stdout.strip() == f"CPR 020280-****: {' '.join(sorted([keep, other]))}"
    merged = runner.invoke(app, ["patients", "merge", keep, other])
    assert merged.exit_code == 0, merged.output
    assert merged.stdout.startswith(f"merged Patient/{other} into Patient/{keep}")
    refused = runner.invoke(app, ["patients", "merge", keep, keep])
    assert refused.exit_code == 1
