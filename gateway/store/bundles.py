"""Transaction and batch Bundles: many writes, all-or-nothing (transaction) or each alone.

A transaction resolves ``urn:uuid:`` fullUrls to the ids it assigns and conditional
references (``Patient?identifier=…``) to the one resource they match, then runs the entries
in the order FHIR prescribes (DELETE, POST, PUT, GET) inside one store transaction.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.errors import BadRequest, GatewayError, PreconditionFailed
from gateway.search.dates import format_instant, utc_now
from gateway.store.repository import Store, Writer, WriteResult, new_id

_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


@dataclass(slots=True)
class _Entry:
    index: int
    method: str
    rtype: str
    rid: str | None
    criteria: str | None
    full_url: str | None
    resource: dict[str, Any] | None
    if_match: str | None
    if_none_exist: str | None


def _parse_entry(index: int, entry: dict[str, Any], fhir_base: str) -> _Entry:
    where = f"Bundle.entry[{index}]"
    request = entry.get("request")
    if not isinstance(request, dict):
        raise BadRequest("each entry needs request.method and request.url", expression=where)
    method = str(request.get("method", "")).upper()
    if method not in _ORDER:
        raise BadRequest(
            f"request.method {method or '(none)'} is not supported (GET, POST, PUT, DELETE)",
            expression=f"{where}.request.method",
        )
    url = str(request.get("url", ""))
    if url.startswith(fhir_base + "/"):
        url = url[len(fhir_base) + 1 :]
    parts = urlsplit(url)
    path = parts.path.strip("/").split("/")
    rtype = path[0]
    rid = path[1] if len(path) > 1 else None
    criteria = parts.query or None
    resource = entry.get("resource")
    if method in ("POST", "PUT"):
        if not isinstance(resource, dict):
            raise BadRequest(f"{method} needs a resource", expression=f"{where}.resource")
        if resource.get("resourceType") != rtype:
            raise BadRequest(
                f"request.url names {rtype} but the resource is {resource.get('resourceType')}",
                expression=f"{where}.request.url",
            )
    if method == "PUT" and rid is None and criteria is None:
        raise BadRequest("PUT needs Type/id or Type?criteria", expression=f"{where}.request.url")
    if rid is not None and not _ID_RE.match(rid):
        raise BadRequest("not a valid resource id", expression=f"{where}.request.url")
    if method == "DELETE" and rid is None:
        raise BadRequest("conditional delete is not supported", expression=f"{where}.request.url")
    return _Entry(
        index,
        method,
        rtype,
        rid,
        criteria,
        entry.get("fullUrl"),
        resource,
        request.get("ifMatch"),
        request.get("ifNoneExist"),
    )


def _rewrite_references(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "reference" and isinstance(value, str) and value in mapping:
                out[key] = mapping[value]
            else:
                out[key] = _rewrite_references(value, mapping)
        return out
    if isinstance(node, list):
        return [_rewrite_references(v, mapping) for v in node]
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


async def _resolve_one(writer: Writer, rtype: str, criteria: str, where: str) -> str | None:
    found = await writer.search_ids(rtype, criteria)
    if len(found) > 1:
        raise PreconditionFailed(f"{rtype}?{criteria} matches more than one", expression=where)
    return found[0] if found else None


# Applied to what a GET entry reads (the consent gate: returns the visible form or raises).
Reveal = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def _as_is(resource: dict[str, Any]) -> dict[str, Any]:
    return resource


async def run_transaction(
    store: Store, bundle: dict[str, Any], *, reveal: Reveal = _as_is
) -> dict[str, Any]:
    """Run a transaction Bundle atomically; return the transaction-response Bundle."""
    async with store.write("transaction") as writer:
        return await run_transaction_in(writer, bundle, reveal=reveal)


async def run_transaction_in(
    writer: Writer, bundle: dict[str, Any], *, reveal: Reveal = _as_is
) -> dict[str, Any]:
    """Run a transaction Bundle inside an open store transaction (``Store.write()``).

    The caller owns the transaction: more writes may follow in it (the ingest pipeline's
    post-processing), and any error raised before it commits leaves nothing stored.
    """
    store = writer.store
    entries = [_parse_entry(i, e, store.fhir_base) for i, e in enumerate(bundle.get("entry", []))]
    targets: set[str] = set()
    for e in entries:
        if e.rid is not None and e.method in ("PUT", "DELETE"):
            key = f"{e.rtype}/{e.rid}"
            if key in targets:
                raise BadRequest(
                    f"{key} is the target of more than one entry",
                    expression=f"Bundle.entry[{e.index}]",
                )
            targets.add(key)
    responses: dict[int, dict[str, Any]] = {}
    mapping: dict[str, str] = {}
    existing: dict[int, WriteResult] = {}
    # Pass 1: decide every id, so references between entries can be rewritten.
    for e in entries:
        where = f"Bundle.entry[{e.index}]"
        if e.method == "POST":
            if e.if_none_exist:
                found = await _resolve_one(writer, e.rtype, e.if_none_exist, where)
                if found is not None:
                    e.rid = found
                    existing[e.index] = WriteResult(
                        await store.read(e.rtype, found, conn=writer.conn), created=False
                    )
            e.rid = e.rid or new_id()
        elif e.method == "PUT" and e.rid is None and e.criteria:
            e.rid = await _resolve_one(writer, e.rtype, e.criteria, where) or new_id()
        if e.full_url and e.rid and e.method in ("POST", "PUT"):
            mapping[e.full_url] = f"{e.rtype}/{e.rid}"
    conditional: set[str] = set()
    for e in entries:
        if e.resource is not None:
            _conditional_references(e.resource, conditional)
    for ref in sorted(conditional):
        rtype, _, criteria = ref.partition("?")
        found = await _resolve_one(writer, rtype, criteria, ref)
        if found is None:
            # Perhaps it names a resource this transaction creates: not resolvable here.
            raise PreconditionFailed(
                f"conditional reference {rtype}?… matches nothing", expression=rtype
            )
        mapping[ref] = f"{rtype}/{found}"
    # Pass 2: write in FHIR's order.
    for e in sorted(entries, key=lambda x: (_ORDER[x.method], x.index)):
        responses[e.index] = await _run_entry(writer, store, e, mapping, existing, reveal)
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [
            {"response": responses[i]["response"], **_resource_of(responses[i])}
            for i in range(len(entries))
        ],
    }


def _resource_of(result: dict[str, Any]) -> dict[str, Any]:
    return {"resource": result["resource"]} if result.get("resource") is not None else {}


async def _run_entry(
    writer: Writer,
    store: Store,
    e: _Entry,
    mapping: dict[str, str],
    existing: dict[int, WriteResult],
    reveal: Reveal = _as_is,
) -> dict[str, Any]:
    assert e.rid is not None or e.method == "GET"  # noqa: S101 - set in pass 1
    if e.method == "DELETE":
        assert e.rid is not None  # noqa: S101
        version = await writer.delete(e.rtype, e.rid)
        response: dict[str, Any] = {"status": "204 No Content"}
        if version is not None:
            response["etag"] = f'W/"{version}"'
        return {"response": response}
    if e.method == "GET":
        if e.rid is None or e.criteria:
            raise BadRequest(
                "only reads (GET Type/id) are supported inside a transaction",
                expression=f"Bundle.entry[{e.index}].request.url",
            )
        resource = await reveal(await store.read(e.rtype, e.rid, conn=writer.conn))
        return {"response": {"status": "200 OK"}, "resource": resource}
    assert e.resource is not None and e.rid is not None  # noqa: S101
    if e.index in existing:
        result = existing[e.index]
        return {"response": _response(result, "200 OK"), "resource": result.resource}
    resource = _rewrite_references({**e.resource, "id": e.rid}, mapping)
    result = await writer.put(resource, if_match=e.if_match)
    return {
        "response": _response(result, "201 Created" if result.created else "200 OK"),
        "resource": result.resource,
    }


async def run_batch(
    store: Store, bundle: dict[str, Any], *, reveal: Reveal = _as_is
) -> dict[str, Any]:
    """Run each entry of a batch Bundle on its own; failures are reported per entry."""
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(bundle.get("entry", [])):
        try:
            e = _parse_entry(i, raw, store.fhir_base)
            if e.method == "GET":
                if e.rid is None:
                    raise BadRequest(
                        "search inside a batch is not supported",
                        expression=f"Bundle.entry[{i}].request.url",
                    )
                resource = await reveal(await store.read(e.rtype, e.rid))
                out.append({"response": {"status": "200 OK"}, "resource": resource})
                continue
            async with store.write("batch") as writer:
                existing: dict[int, WriteResult] = {}
                if e.method == "POST":
                    found = None
                    if e.if_none_exist:
                        found = await _resolve_one(
                            writer, e.rtype, e.if_none_exist, f"Bundle.entry[{i}]"
                        )
                    if found is not None:
                        existing[i] = WriteResult(
                            await store.read(e.rtype, found, conn=writer.conn), created=False
                        )
                    e.rid = found or new_id()
                elif e.method == "PUT" and e.rid is None and e.criteria:
                    where = f"Bundle.entry[{i}]"
                    e.rid = await _resolve_one(writer, e.rtype, e.criteria, where) or new_id()
                out.append(await _run_entry(writer, store, e, {}, existing))
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


__all__ = ["run_batch", "run_transaction", "run_transaction_in"]
