"""Transaction and batch Bundles through the guard: many writes, all-or-nothing or each alone.

A transaction resolves ``urn:uuid:`` fullUrls to the ids it assigns and conditional
references (``Patient?identifier=…``) to the one resource they match *among those the caller
may see*, then runs the entries in FHIR's order (DELETE, POST, PUT, GET) in one transaction.
Every row read on the way (conditional matches, references, GET entries, the current version
of what is changed) passes the consent gate in ``GuardedWriter``; a hidden match is no match.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.data.entries import METHODS, EntryRequest, parse_entry
from gateway.data.writer import GuardedWriter, Match
from gateway.errors import BadRequest, GatewayError, PreconditionFailed
from gateway.search.dates import format_instant, utc_now
from gateway.store.repository import WriteResult, new_id

_ORDER = {method: position for position, method in enumerate(METHODS)}

# Opens one guarded write transaction (``DataPath.write``): a batch runs each entry in its own.
OpenWriter = Callable[[], Any]


def rewrite_references(node: Any, targets: dict[str, str]) -> Any:
    """A copy of ``node`` with every ``reference`` found in ``targets`` replaced by its target."""
    if isinstance(node, dict):
        out = {k: rewrite_references(v, targets) for k, v in node.items()}
        ref = out.get("reference")
        if isinstance(ref, str) and ref in targets:
            out["reference"] = targets[ref]
        return out
    if isinstance(node, list):
        return [rewrite_references(v, targets) for v in node]
    return node


def _conditional_references(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and "?" in value:
                found.add(value)
            else:
                _conditional_references(value, found)
    elif isinstance(node, list):
        for value in node:
            _conditional_references(value, found)


def _response(result: WriteResult, status: str) -> dict[str, Any]:
    return {
        "status": status,
        "location": f"{result.resource_type}/{result.id}/_history/{result.version}",
        "etag": f'W/"{result.version}"',
        "lastModified": result.resource["meta"]["lastUpdated"],
    }


def _parse_all(bundle: dict[str, Any], fhir_base: str) -> list[EntryRequest]:
    entries = [parse_entry(i, e, fhir_base) for i, e in enumerate(bundle.get("entry", []))]
    targets: set[str] = set()
    for e in entries:
        if e.rid is not None and e.method in ("PUT", "DELETE"):
            key = f"{e.rtype}/{e.rid}"
            if key in targets:
                raise BadRequest(f"{key} is the target of more than one entry", expression=e.where)
            targets.add(key)
    return entries


def _linked_entry(rtype: str, match: Match) -> dict[str, Any]:
    """The response entry of a conditional create that matched instead of creating."""
    if match.resource is not None:
        resource = match.resource
        version = resource["meta"]["versionId"]
        return {
            "response": {
                "status": "200 OK",
                "location": f"{rtype}/{match.id}/_history/{version}",
                "etag": f'W/"{version}"',
                "lastModified": resource["meta"]["lastUpdated"],
            },
            "resource": resource,
        }
    # Linked without disclosure: the id the sender's resources now point at, nothing more.
    return {"response": {"status": "200 OK", "location": f"{rtype}/{match.id}"}}


async def _resolve(writer: GuardedWriter, e: EntryRequest, criteria: str) -> Match | None:
    return await writer.match(e.rtype, criteria, e.where)


async def run_transaction_in(writer: GuardedWriter, bundle: dict[str, Any]) -> dict[str, Any]:
    """Run a transaction Bundle inside an open guarded transaction (``DataPath.write()``).

    The caller owns the transaction: more writes may follow in it (the ingest pipeline's
    post-processing), and any error raised before it commits leaves nothing stored.
    """
    entries = _parse_all(bundle, writer.store.fhir_base)
    mapping: dict[str, str] = {}
    linked: dict[int, Match] = {}
    # Pass 1: decide every id, so references between entries can be rewritten. Every
    # conditional match (entries and conditional references) is one search, in order.
    conditional: set[str] = set()
    for e in entries:
        if e.resource is not None:
            _conditional_references(e.resource, conditional)
    wanted: list[tuple[str, str, str]] = []
    for e in entries:
        if e.method == "POST" and e.if_none_exist:
            wanted.append((e.rtype, e.if_none_exist, e.where))
        elif e.method in ("PUT", "DELETE") and e.rid is None and e.criteria:
            wanted.append((e.rtype, e.criteria, e.where))
    references = sorted(conditional)
    for ref in references:
        rtype, _, criteria = ref.partition("?")
        wanted.append((rtype, criteria, rtype))
    matches = iter(await writer.match_many(wanted))
    for e in entries:
        if e.method == "POST":
            if e.if_none_exist:
                found = next(matches)
                if found is not None:
                    linked[e.index] = found
                    e.rid = found.id
            e.rid = e.rid or new_id()
        elif e.method in ("PUT", "DELETE") and e.rid is None and e.criteria:
            found = next(matches)
            if found is not None and found.resource is None:
                found = None  # only the pipelines link identities, and never to change them
            e.rid = found.id if found is not None else (new_id() if e.method == "PUT" else None)
        if e.full_url and e.rid and e.method in ("POST", "PUT"):
            mapping[e.full_url] = f"{e.rtype}/{e.rid}"
    for ref in references:
        rtype, _, criteria = ref.partition("?")
        found = next(matches)
        if found is None:
            # Nothing the caller may see: exactly what an unknown resource gets.
            raise PreconditionFailed(
                f"conditional reference {rtype}?… matches nothing", expression=rtype
            )
        mapping[ref] = f"{rtype}/{found.id}"
    # The current rows of everything written, read (and locked) in one query per type.
    await writer.raw.prefetch(
        [(e.rtype, e.rid) for e in entries if e.rid and e.method in ("POST", "PUT", "DELETE")]
    )
    # Pass 2: write in FHIR's order.
    responses: dict[int, dict[str, Any]] = {}
    for e in sorted(entries, key=lambda x: (_ORDER[x.method], x.index)):
        responses[e.index] = await _run_entry(writer, e, mapping, linked)
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [responses[i] for i in range(len(entries))],
    }


async def _run_entry(
    writer: GuardedWriter,
    e: EntryRequest,
    mapping: dict[str, str],
    linked: dict[int, Match],
) -> dict[str, Any]:
    if e.method == "DELETE":
        version = None if e.rid is None else await writer.delete(e.rtype, e.rid)
        response: dict[str, Any] = {"status": "204 No Content"}
        if version is not None:
            response["etag"] = f'W/"{version}"'
        return {"response": response}
    if e.method == "GET":
        assert e.rid is not None  # noqa: S101 - parse_entry allows GET Type/id only
        return {"response": {"status": "200 OK"}, "resource": await writer.reveal(e.rtype, e.rid)}
    assert e.resource is not None and e.rid is not None  # noqa: S101 - set in pass 1
    if e.index in linked:
        found = linked[e.index]
        if found.resource is not None:
            writer.disclose(found.resource)
        return _linked_entry(e.rtype, found)
    resource = rewrite_references({**e.resource, "id": e.rid}, mapping)
    result = await writer.put(resource, if_match=e.if_match)
    return {
        "response": _response(result, "201 Created" if result.created else "200 OK"),
        "resource": result.resource,
    }


async def run_batch(
    open_writer: OpenWriter, bundle: dict[str, Any], fhir_base: str
) -> dict[str, Any]:
    """Run each entry of a batch Bundle in its own guarded transaction; failures per entry."""
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(bundle.get("entry", [])):
        try:
            e = parse_entry(i, raw, fhir_base)
            async with open_writer() as writer:
                linked: dict[int, Match] = {}
                if e.method == "POST":
                    found = None
                    if e.if_none_exist:
                        found = await _resolve(writer, e, e.if_none_exist)
                    if found is not None:
                        linked[i] = found
                    e.rid = found.id if found is not None else new_id()
                elif e.method in ("PUT", "DELETE") and e.rid is None and e.criteria:
                    found = await _resolve(writer, e, e.criteria)
                    if found is not None and found.resource is None:
                        found = None
                    e.rid = found.id if found else (new_id() if e.method == "PUT" else None)
                out.append(await _run_entry(writer, e, {}, linked))
        except GatewayError as exc:
            out.append(
                {
                    "response": {
                        "status": f"{exc.status} {type(exc).__name__}",
                        "outcome": exc.outcome(),
                    }
                }
            )
    return {
        "resourceType": "Bundle",
        "type": "batch-response",
        "timestamp": format_instant(utc_now()),
        "entry": out,
    }


__all__ = ["rewrite_references", "run_batch", "run_transaction_in"]
