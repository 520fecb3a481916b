"""Writes in bulk: a transaction is a handful of statements per table, whatever its size,
and every reader inside the transaction still sees each write at once (both stores)."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from gateway.data import DataPath
from gateway.store.database import Database
from gateway.store.repository import Store

CPR = "urn:oid:1.2.208.176.1.2"


@pytest.fixture
def store(database: Database) -> Store:
    return Store(database, fhir_base="http://testserver/fhir")


@contextmanager
def statements(database: Database) -> Iterator[collections.Counter[str]]:
    """Statements sent to the database, by their first two words (executemany: one each)."""
    seen: collections.Counter[str] = collections.Counter()

    def count(*args: Any) -> None:
        statement = str(args[2])
        seen[" ".join(statement.split()[:3])] += 1

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def bundle(first: int, patients: int) -> dict[str, Any]:
    entries: list[dict[str, Any]] = []
    for n in range(first, first + patients):
        cpr = f"{n:010d}"
        full_url = f"urn:uuid:00000000-0000-0000-0000-{n:012d}"
        entries.append(
            {
                "fullUrl": full_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": CPR, "value": cpr}],
                    "name": [{"family": f"F{n}"}],
                },
                "request": {
                    "method": "POST",
                    "url": "Patient",
                    "ifNoneExist": f"identifier={CPR}|{cpr}",
                },
            }
        )
        for day in (1, 2):
            entries.append(
                {
                    "resource": {
                        "resourceType": "Observation",
                        "status": "final",
                        "code": {"text": "weight"},
                        "subject": {"reference": full_url},
                        "effectiveDateTime": f"2026-01-0{day}",
                    },
                    "request": {"method": "POST", "url": "Observation"},
                }
            )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def test_a_transaction_is_a_handful_of_statements_whatever_its_size(
    database: Database, store: Store
) -> None:
    path = DataPath.for_operator(store)
    await path.bundle(bundle(0, 2))  # warm: the tables exist, nothing else differs
    with statements(database) as small:
        await path.bundle(bundle(100, 3))
    with statements(database) as large:
        await path.bundle(bundle(200, 60))

    # 60 patients (180 resources, 60 conditional creates) cost no more statements than 3,
    # apart from the patient_identities look-ups of each new Patient.
    def without_identities(seen: collections.Counter[str]) -> int:
        return sum(v for k, v in seen.items() if "patient_identities" not in k)

    assert without_identities(large) == without_identities(small), (small, large)
    inserts = {k: v for k, v in large.items() if k.startswith("INSERT INTO") and "identit" not in k}
    assert inserts and all(v == 1 for v in inserts.values()), large
    # Every conditional create of the Bundle was one search statement together.
    assert sum(v for k, v in large.items() if k.startswith("SELECT anon_1.n")) == 1, large


async def test_readers_inside_the_transaction_see_each_write_at_once(store: Store) -> None:
    async with DataPath.for_operator(store).write() as writer:
        created = await writer.create(
            {
                "resourceType": "Patient",
                "identifier": [{"system": CPR, "value": "0101011234"}],
                "name": [{"family": "Nielsen"}],
            }
        )
        # Kept back by the writer, yet found by a conditional match in the same transaction.
        assert await writer.visible_ids("Patient", f"identifier={CPR}|0101011234") == [created.id]
        changed = await writer.put({**created.resource, "name": [{"family": "Juhl"}]})
        assert changed.version == "2"
        assert await writer.visible_ids("Patient", "family=Juhl") == [created.id]
        assert await writer.visible_ids("Patient", "family=Nielsen") == []
        assert await writer.delete("Patient", created.id) == 3
        assert await writer.visible_ids("Patient", "family=Juhl") == []
    entries, total = await store.history("Patient", created.id)
    assert total == 3
    assert [(e.version, e.method) for e in entries] == [(3, "DELETE"), (2, "PUT"), (1, "POST")]


async def test_a_failed_transaction_leaves_nothing_of_its_kept_back_rows(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with DataPath.for_operator(store).write() as writer:
            await writer.create({"resourceType": "Patient", "name": [{"family": "Holm"}]})
            raise RuntimeError("after the write, before the commit")
    assert (await store.search(store.parse("Patient", [("family", "Holm")]))).matches == []
    assert (await store.history("Patient"))[1] == 0
