"""Keeping stored facts true across documents, inside the ingest transaction.

- A statement answering a request points at it (``basedOn``) and completes the request's Task
  (gp-statement.md: "the answer sets the Task completed with output → the
  QuestionnaireResponse"), whichever of the two arrives first.
- A newer version of a document that no longer holds something an earlier version made marks
  it ``entered-in-error`` (jobcentre-case.md: "never deleted"); the earlier original is
  ``superseded``.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any
from urllib.parse import quote

from consent import is_addressed_to
from gateway.data import GuardedWriter
from mappings import SourceDocument
from mappings.gp_statement import complete_request_task

SOURCE_DOCUMENT_TAG_SYSTEM = "http://brobygger.dk/fhir/sid/source-document"
REQUEST_ID_SYSTEM = "http://brobygger.dk/fhir/sid/statement-request"
CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
DEADLINE_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/deadline"
STATEMENT_DUE = "statement-due"
RETRACTED = "entered-in-error"


def token_criteria(name: str, system: str, value: str) -> str:
    escaped = value.replace("\\", "\\\\")
    for ch in ",|$":
        escaped = escaped.replace(ch, "\\" + ch)
    return f"{name}=" + quote(f"{system}|{escaped}", safe="")


async def read_or_none(writer: GuardedWriter, rtype: str, rid: str) -> dict[str, Any] | None:
    """The current version if the sender may see it (the pipeline reads as its sender)."""
    return await writer.read(rtype, rid)


async def read_all(writer: GuardedWriter, rtype: str, criteria: str) -> list[dict[str, Any]]:
    """What matches ``criteria`` among the resources the sender may see."""
    return await writer.find(rtype, criteria, limit=10_000)


def _entries(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = bundle.get("entry", [])
    return [e for e in entries if e.get("resource", {}).get("resourceType") == rtype]


def _written(response: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [
        e["resource"]
        for e in response.get("entry", [])
        if isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == rtype
    ]


# --- statement ↔ request ------------------------------------------------------------------


def addressed_to(resource: dict[str, Any], writer: GuardedWriter) -> bool:
    """Whether ``resource`` (a request) is addressed to the writer's participant."""
    return is_addressed_to(resource, writer.requester.participant, writer.requester.organization)


async def link_statement_to_request(
    writer: GuardedWriter, bundle: dict[str, Any], answers: tuple[str, str]
) -> str | None:
    """Point the statement's ``basedOn`` at the stored request; its id (None: not stored).

    A statement answers only a request addressed to its sender: a request the sender may not
    see, or one addressed to another clinic, is no request (nothing is linked or completed,
    and nothing about it is revealed).
    """
    found = [
        r
        for r in await writer.find("ServiceRequest", token_criteria("identifier", *answers))
        if addressed_to(r, writer)
    ]
    if len(found) != 1:
        return None
    request = found[0]
    for entry in _entries(bundle, "QuestionnaireResponse"):
        for based_on in entry["resource"].get("basedOn", []):
            if based_on.get("identifier") == {"system": answers[0], "value": answers[1]}:
                based_on["reference"] = f"ServiceRequest/{request['id']}"
    return str(request["id"])


async def complete_answered_tasks(
    writer: GuardedWriter, request_id: str, response: dict[str, Any], *, now: datetime
) -> None:
    """The request's Tasks: ``completed``, output → the statement just stored."""
    statements = _written(response, "QuestionnaireResponse")
    if not statements:
        return
    reference = f"QuestionnaireResponse/{statements[0]['id']}"
    for task in await read_all(writer, "Task", f"based-on=ServiceRequest/{request_id}"):
        outputs = [o.get("valueReference", {}).get("reference") for o in task.get("output", [])]
        if task.get("status") == "completed" and reference in outputs:
            continue
        # The Task stays the request's: its author (meta.source) is kept; the statement's
        # sender may complete it because it is addressed to it (a gateway-defined step).
        await writer.put(complete_request_task(task, reference, now=now), transition=True)


async def answering_statement(
    writer: GuardedWriter, bundle: dict[str, Any], source: SourceDocument, *, now: datetime
) -> dict[str, Any] | None:
    """A request whose statement is stored already: its Task goes in ``completed``.

    Returns the stored statement (to link back to the request after the transaction).
    """
    tasks = [
        e
        for e in _entries(bundle, "Task")
        if any(
            c.get("system") == DEADLINE_SYSTEM and c.get("code") == STATEMENT_DUE
            for c in e["resource"].get("code", {}).get("coding", [])
        )
    ]
    patients = _entries(bundle, "Patient")
    if not tasks or not patients:
        return None
    cpr = next(
        (
            i["value"]
            for i in patients[0]["resource"].get("identifier", [])
            if i.get("system") == CPR_SYSTEM
        ),
        None,
    )
    if cpr is None:
        return None
    criteria = token_criteria("identifier", CPR_SYSTEM, cpr)
    patient = await writer.match("Patient", criteria, "Patient")
    if patient is None:
        return None
    wanted = {"system": REQUEST_ID_SYSTEM, "value": source.value}
    # Only a statement addressed to the requester can answer its request; one from the
    # health side reaches the job centre on this legal basis even before it is linked.
    statements = await writer.addressed("QuestionnaireResponse", f"subject=Patient/{patient.id}")
    for statement in statements:
        if statement.get("status") != "completed":
            continue
        if any(b.get("identifier") == wanted for b in statement.get("basedOn", [])):
            reference = f"QuestionnaireResponse/{statement['id']}"
            for entry in tasks:
                entry["resource"] = complete_request_task(entry["resource"], reference, now=now)
            return statement
    return None


async def link_back(
    writer: GuardedWriter, statement: dict[str, Any], response: dict[str, Any]
) -> None:
    """The earlier statement's ``basedOn`` now names the request just stored."""
    requests = _written(response, "ServiceRequest")
    if not requests:
        return
    linked = copy.deepcopy(statement)
    for based_on in linked.get("basedOn", []):
        if based_on.get("identifier", {}).get("system") == REQUEST_ID_SYSTEM:
            based_on["reference"] = f"ServiceRequest/{requests[0]['id']}"
    # The statement stays its sender's; its addressee links it to its own request.
    await writer.put(linked, transition=True)


# --- newer versions -----------------------------------------------------------------------


def _retracted(resource: dict[str, Any]) -> dict[str, Any] | None:
    """``resource`` marked entered-in-error (None: already, or a type that has no such mark)."""
    rtype = resource["resourceType"]
    out = copy.deepcopy(resource)
    if rtype == "Condition":
        verification = out.get("verificationStatus", {}).get("coding", [{}])[0].get("code")
        if verification == RETRACTED:
            return None
        out["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": RETRACTED,
                }
            ]
        }
        out.pop("clinicalStatus", None)  # con-5: none when entered-in-error
        return out
    if rtype == "DocumentReference":
        # An earlier original: kept as it was sent, superseded by the newer one.
        if out.get("status") == "superseded":
            return None
        out["status"] = "superseded"
        return out
    if rtype not in RETRACTABLE or out.get("status") == RETRACTED:
        return None
    out["status"] = RETRACTED
    return out


RETRACTABLE = frozenset(
    {
        "CarePlan",
        "Encounter",
        "EpisodeOfCare",
        "Observation",
        "QuestionnaireResponse",
        "ServiceRequest",
        "Task",
    }
)
_SWEPT = (*sorted(RETRACTABLE), "Condition", "DocumentReference")


async def retract_missing(
    writer: GuardedWriter, source: SourceDocument, response: dict[str, Any], author: str
) -> None:
    """Mark what earlier versions of the document made and this one no longer holds."""
    kept = {
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in response.get("entry", [])
        if isinstance(e.get("resource"), dict)
    }
    criteria = token_criteria("_tag", SOURCE_DOCUMENT_TAG_SYSTEM, source.key)
    for rtype in _SWEPT:
        for resource in await read_all(writer, rtype, criteria):
            if (rtype, resource["id"]) in kept:
                continue
            marked = _retracted(resource)
            if marked is not None:
                await writer.put(marked)


# --- shared parties ------------------------------------------------------------------------

PARTICIPANT_KIND_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/participant-kind"
UNIQUE_ORGANIZATION_SYSTEMS = (
    "urn:oid:1.2.208.176.1.1",  # SOR
    "urn:oid:1.2.208.176.1.4",  # YDER
    "http://cvr.dk",
    "https://www.gs1.org/gln",  # EAN
)


def _kind(resource: dict[str, Any]) -> str | None:
    return next(
        (
            c.get("code")
            for t in resource.get("type", [])
            for c in t.get("coding", [])
            if c.get("system") == PARTICIPANT_KIND_SYSTEM
        ),
        None,
    )


async def disambiguate_organizations(writer: GuardedWriter, bundle: dict[str, Any]) -> None:
    """Make each shared Organization's conditional create match one stored Organization.

    The adapters match an organisation by its strongest identifier, and a municipality code
    ranks above EAN; but a municipality's departments (job centre, rehabilitation unit) share
    the code. When that matches several, the document's unique identifiers (SOR, YDER, CVR,
    EAN) decide, then the participant kind; the entry then names its match by ``_id``.
    """
    for entry in _entries(bundle, "Organization"):
        request = entry.get("request", {})
        criteria = request.get("ifNoneExist")
        if request.get("method") != "POST" or not criteria:
            continue
        candidates = await writer.visible_ids("Organization", criteria, limit=50)
        if len(candidates) < 2:
            continue
        resource = entry["resource"]
        chosen: str | None = None
        for ident in resource.get("identifier", []):
            if ident.get("system") not in UNIQUE_ORGANIZATION_SYSTEMS:
                continue
            found = await writer.visible_ids(
                "Organization", token_criteria("identifier", ident["system"], ident["value"])
            )
            if len(found) == 1 and found[0] in candidates:
                chosen = found[0]
                break
        if chosen is None and _kind(resource) is not None:
            same_kind = []
            for rid in candidates:
                stored = await read_or_none(writer, "Organization", rid)
                if stored is not None and _kind(stored) == _kind(resource):
                    same_kind.append(rid)
            chosen = same_kind[0] if len(same_kind) == 1 else None
        if chosen is not None:
            request["ifNoneExist"] = f"_id={chosen}"
