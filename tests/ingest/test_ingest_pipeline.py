"""The ingest pipeline on SQLite and PostgreSQL: nothing lost, nothing doubled, facts kept true."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from ingest_support import all_samples, row_counts, sample

from gateway.errors import Forbidden, UnprocessableResource
from gateway.ingest import StaleDocument, ingest
from gateway.store.repository import Store

NOW = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CASE = "jobcentre-case/sag-ole-aarhus.xml"
REQUEST = "gp-statement/lae285-request-ole.xml"
STATEMENT = "gp-statement/lae285-statement-ole.xml"
DEADLINE = "http://brobygger.dk/fhir/CodeSystem/deadline"


async def _all(store: Store, rtype: str, *params: tuple[str, str]) -> list[dict[str, Any]]:
    result = await store.search(store.parse(rtype, [*params, ("_count", "500")]))
    return result.matches


def _deadline(tasks: list[dict[str, Any]], code: str) -> dict[str, Any]:
    return next(
        t
        for t in tasks
        if any(c["code"] == code for c in t["code"]["coding"] if c["system"] == DEADLINE)
    )


async def test_importing_all_samples_twice_stores_each_resource_once(store: Store) -> None:
    first = [
        await ingest(store, p.read_bytes(), sender_participant=None, now=NOW) for p in all_samples()
    ]
    assert {r.status for r in first} == {"accepted"}
    # Every sample's sender is a (demo) participant: no warnings at all.
    assert [w for r in first for w in r.warnings] == []
    after_first = await row_counts(store)
    second = [
        await ingest(store, p.read_bytes(), sender_participant=None, now=NOW) for p in all_samples()
    ]
    assert {r.status for r in second} == {"unchanged"}
    assert all(r.counts.created == r.counts.updated == 0 for r in second)
    assert await row_counts(store) == after_first
    # The original is kept, hashed, and linked by Provenance to what was derived from it.
    documents = await _all(store, "DocumentReference")
    assert len(documents) == len(all_samples())
    for document in documents:
        provenance = await _all(
            store, "Provenance", ("entity", f"DocumentReference/{document['id']}")
        )
        assert len(provenance) == 1 and len(provenance[0]["target"]) > 3


async def test_every_stored_resource_is_stamped_with_the_sender(store: Store) -> None:
    await ingest(store, sample(CASE), sender_participant=None, now=NOW)
    for rtype in ("EpisodeOfCare", "Encounter", "Task", "DocumentReference", "Provenance"):
        for resource in await _all(store, rtype):
            assert resource["meta"]["source"] == "urn:brobygger:participant:jobcenter-aarhus"


async def test_case_deadlines_are_tasks_kept_true_by_newer_exports(store: Store) -> None:
    original = sample(CASE).decode()
    await ingest(store, original.encode(), sender_participant=None, now=NOW)
    tasks = await _all(store, "Task")
    assert _deadline(tasks, "first-follow-up")["status"] == "completed"
    assert _deadline(tasks, "follow-ups-six-months")["status"] == "in-progress"
    assert _deadline(tasks, "reassessment")["status"] == "requested"
    versions_before = await row_counts(store)

    newer = original.replace("2026-11-03T12:00:00+01:00", "2026-11-10T12:00:00+01:00").replace(
        "</Opfoelgninger>",
        '<Opfoelgning dato="2026-11-09" form="telefonisk" type="loebende">'
        '<Deltager rolle="borger"/></Opfoelgning></Opfoelgninger>',
    )
    result = await ingest(store, newer.encode(), sender_participant=None, now=NOW)
    assert result.status == "updated"
    assert result.counts.created >= 3  # the Encounter, the new original and its Provenance
    tasks = await _all(store, "Task")
    six_months = _deadline(tasks, "follow-ups-six-months")
    assert six_months["status"] == "in-progress" and len(six_months["output"]) == 2
    assert six_months["meta"]["versionId"] == "2"
    assert len(await _all(store, "Encounter")) == 2
    documents = await _all(store, "DocumentReference")
    assert sorted(d["status"] for d in documents) == ["current", "superseded"]
    assert (await row_counts(store))[0] > versions_before[0]

    # A yet newer export without that follow-up and closed: retracted, never deleted.
    closed = original.replace("2026-11-03T12:00:00+01:00", "2026-11-17T12:00:00+01:00").replace(
        "</Sygedagpengesag>",
        '<Afslutning dato="2026-11-16" aarsag="raskmeldt-job"/></Sygedagpengesag>',
    )
    await ingest(store, closed.encode(), sender_participant=None, now=NOW)
    statuses = sorted(e["status"] for e in await _all(store, "Encounter"))
    assert statuses == ["entered-in-error", "finished"]
    tasks = await _all(store, "Task")
    assert _deadline(tasks, "reassessment")["status"] == "cancelled"
    assert _deadline(tasks, "first-follow-up")["status"] == "completed"


async def test_an_older_export_is_refused_and_nothing_changes(store: Store) -> None:
    original = sample(CASE).decode()
    newer = original.replace("2026-11-03T12:00:00+01:00", "2026-11-10T12:00:00+01:00")
    await ingest(store, newer.encode(), sender_participant=None, now=NOW)
    before = await row_counts(store)
    with pytest.raises(StaleDocument) as refused:
        await ingest(store, original.encode(), sender_participant=None, now=NOW)
    assert refused.value.status == 409
    assert refused.value.issues[0].severity == "warning"
    assert await row_counts(store) == before


@pytest.mark.parametrize("order", ["request-first", "statement-first"])
async def test_a_statement_answering_a_request_completes_its_task(store: Store, order: str) -> None:
    documents = [REQUEST, STATEMENT] if order == "request-first" else [STATEMENT, REQUEST]
    for name in documents:
        await ingest(store, sample(name), sender_participant=None, now=NOW)
    (request,) = await _all(store, "ServiceRequest")
    (task,) = await _all(store, "Task")
    statement = next(
        q
        for q in await _all(store, "QuestionnaireResponse")
        if q["identifier"]["value"].startswith("yder")
    )
    assert task["status"] == "completed"
    assert (
        task["output"][0]["valueReference"]["reference"]
        == f"QuestionnaireResponse/{statement['id']}"
    )
    assert task["restriction"]["period"]["end"] == "2026-10-20"
    assert statement["basedOn"][0]["reference"] == f"ServiceRequest/{request['id']}"
    # The Task stays the job centre's; the GP's step on it is recorded, and grants nothing.
    assert task["meta"]["source"] == "urn:brobygger:participant:jobcenter-aarhus"
    writers = [
        p["agent"][0]["who"]["display"]
        for p in await _all(store, "Provenance")
        if any(t["reference"].startswith(f"Task/{task['id']}/") for t in p["target"])
    ]
    if order == "request-first":  # else the job centre's own request arrives completed
        assert "laegerne-soendergade" in writers
    # The Task stays the job centre's (it is the request's), though the GP's statement closed it.
    assert task["meta"]["source"] == "urn:brobygger:participant:jobcenter-aarhus"


async def test_the_authenticated_sender_must_be_the_documents_sender(store: Store) -> None:
    before = await row_counts(store)
    with pytest.raises(Forbidden) as refused:
        await ingest(store, sample(CASE), sender_participant="auh-ortopaedi", now=NOW)
    assert refused.value.issues[0].expression == "/Sygedagpengesag/Jobcenter"
    assert await row_counts(store) == before
    ok = await ingest(store, sample(CASE), sender_participant="jobcenter-aarhus", now=NOW)
    assert ok.status == "accepted"


async def test_unregistered_senders_are_imported_with_a_warning(
    database: Any, settings: Any
) -> None:
    bare = Store(database, fhir_base=settings.fhir_base)  # no participants registered
    result = await ingest(bare, sample(CASE), sender_participant=None, now=NOW)
    assert result.status == "accepted"
    assert [w.expression for w in result.warnings] == ["/Sygedagpengesag/Jobcenter"]
    (episode,) = await _all(bare, "EpisodeOfCare")
    assert episode["meta"]["source"] == "urn:brobygger:participant:operator-import"


async def test_a_broken_document_is_an_outcome_naming_the_element(store: Store) -> None:
    broken = sample(CASE).replace(b"<CPR>1507791235", b"<CPR>3307791235")
    with pytest.raises(UnprocessableResource) as refused:
        await ingest(store, broken, sender_participant=None, now=NOW)
    assert refused.value.issues[0].expression == "/Sygedagpengesag/Borger/CPR"
    assert await row_counts(store) == (await row_counts(store))


async def test_a_statement_answers_only_a_request_addressed_to_its_sender(store: Store) -> None:
    """Another clinic's LÆ 285 carrying the job centre's AnmodningId completes nothing and
    learns nothing about the request (addressed to Lægerne Søndergade)."""
    await ingest(store, sample(REQUEST), sender_participant=None, now=NOW)
    other = (
        sample(STATEMENT)
        .decode()
        .replace("YDER045612-LAE285-2026-0331", "YDER033001-LAE285-2026-0099")
        .replace(
            "<Afsender><Ydernummer>045612</Ydernummer><EAN>5790000987658</EAN>"
            "<Navn>Lægerne Søndergade</Navn></Afsender>",
            "<Afsender><Ydernummer>033001</Ydernummer><Navn>Lægehuset Roskilde Bymidte</Navn>"
            "</Afsender>",
        )
    )
    assert "033001" in other
    result = await ingest(store, other.encode(), sender_participant="laegehuset-roskilde", now=NOW)
    (request,) = await _all(store, "ServiceRequest")
    (task,) = await _all(store, "Task")
    assert task["status"] == "requested"
    assert request["id"] not in str(result.response)
    statement = next(
        e["resource"]
        for e in result.response["entry"]
        if e.get("resource", {}).get("resourceType") == "QuestionnaireResponse"
    )
    assert all("reference" not in b for b in statement.get("basedOn", []))
