"""The FHIR REST API at ``/fhir`` (application/fhir+json)."""

from __future__ import annotations

import re
from importlib.metadata import version as package_version
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.audit import audit_read, audit_search
from gateway.api.capability import capability_statement
from gateway.api.responses import fhir_response
from gateway.auth.principal import Action, Principal
from gateway.coordination.plan import plan_view
from gateway.data import DataPath, parse_entry_url
from gateway.deps import DataDep, PrincipalDep, SettingsDep
from gateway.errors import (
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from gateway.jobs import entry_requests, offload_for, read_resource, resource_object
from gateway.limits import json_limits
from gateway.search.dates import date_range, format_instant
from gateway.settings import Settings
from gateway.store.repository import HistoryEntry, WriteResult
from mappings.coordination import plan_summary
from profiles import ValidationReport, outcome
from profiles.fhir_release import SUPPORTED_TYPES

router = APIRouter(tags=["FHIR"])

_ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_JSON_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")
_SUPPORTED = frozenset(SUPPORTED_TYPES)
# The body the routes read themselves, described for /openapi.json (clients and API fuzzers).
RESOURCE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {
                "schema": {
                    "type": "object",
                    "description": "A FHIR R4 resource (a Bundle for POST /fhir)",
                    "properties": {"resourceType": {"type": "string"}},
                    "required": ["resourceType"],
                    "additionalProperties": True,
                }
            }
        },
    }
}


def _check_type(rtype: str) -> None:
    if rtype not in _SUPPORTED:
        raise NotFound(f"resource type '{rtype}' is not supported here", expression=rtype)


def _check_id(rid: str) -> None:
    if not _ID_RE.match(rid):
        raise BadRequest("not a valid resource id (1-64 of A-Z a-z 0-9 - .)", expression="id")


def _authorize(principal: Principal, rtype: str, action: Action) -> None:
    if not principal.allows(rtype, action):
        raise Forbidden(f"the access token has no scope to {action} {rtype}")


async def _raw_body(request: Request, settings: Settings) -> bytes:
    """The body's bytes, refused (415/413) before it is read when the headers tell enough."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _JSON_TYPES:
        raise UnsupportedMediaType(
            "send application/fhir+json", expression="Content-Type", headers={}
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise PayloadTooLarge(f"the body is larger than {settings.max_body_bytes} bytes")
    raw = await request.body()
    if len(raw) > settings.max_body_bytes:
        raise PayloadTooLarge(f"the body is larger than {settings.max_body_bytes} bytes")
    return raw


async def _body(request: Request, settings: Settings) -> dict[str, Any]:
    """The body as a JSON object within the JSON limits (a large one parsed in a worker)."""
    raw = await _raw_body(request, settings)
    return await offload_for(settings).run(len(raw), resource_object, raw, json_limits(settings))


async def _resource(
    request: Request, settings: Settings, expected: str
) -> tuple[dict[str, Any], ValidationReport]:
    """The body parsed and checked as an ``expected`` (base R4 and every profile it claims
    that we know: ``profiles.validate_incoming``), with the report's warnings; a large body
    in a worker."""
    raw = await _raw_body(request, settings)
    return await offload_for(settings).run(
        len(raw), read_resource, raw, json_limits(settings), expected
    )


def _write_headers(result: WriteResult, settings: Settings) -> dict[str, str]:
    return {
        "ETag": f'W/"{result.version}"',
        "Last-Modified": result.resource["meta"]["lastUpdated"],
        "Location": (
            f"{settings.fhir_base}/{result.resource_type}/{result.id}/_history/{result.version}"
        ),
    }


def _read_headers(resource: dict[str, Any]) -> dict[str, str]:
    meta = resource.get("meta", {})
    return {
        "ETag": f'W/"{meta.get("versionId", "")}"',
        "Last-Modified": meta.get("lastUpdated", ""),
    }


def _prefer(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in request.headers.get("prefer", "").split(";"):
        for item in part.split(","):
            key, _, value = item.strip().partition("=")
            if key:
                out[key.lower()] = value.strip().strip('"')
    return out


def _write_response(
    request: Request,
    result: WriteResult,
    settings: Settings,
    report: ValidationReport | None = None,
) -> Response:
    status = 201 if result.created else 200
    headers = _write_headers(result, settings)
    wanted = _prefer(request).get("return")
    if wanted == "minimal":
        return Response(status_code=status, headers=headers)
    if wanted == "OperationOutcome":
        # What validation said about the stored resource: warnings such as a claimed profile
        # that is not known here ("not checked"), or "All OK".
        return fhir_response(
            outcome(report or ValidationReport()), status_code=status, headers=headers
        )
    return fhir_response(result.resource, status_code=status, headers=headers)


# --- whole system --------------------------------------------------------------------------


@router.get("/metadata")
async def metadata(settings: SettingsDep) -> Response:
    """The CapabilityStatement (no token needed)."""
    return fhir_response(capability_statement(settings, package_version("brobygger")))


@router.post("", openapi_extra=RESOURCE_BODY)
@router.post("/", openapi_extra=RESOURCE_BODY)
async def transaction_or_batch(
    request: Request, principal: PrincipalDep, data: DataDep, settings: SettingsDep
) -> Response:
    """Run a transaction (all or nothing) or a batch Bundle."""
    raw = await _raw_body(request, settings)
    offload, limits = offload_for(settings), json_limits(settings)
    # Scopes first, from the entries' requests alone: validating the Bundle is the costly part.
    for i, method, url in await offload.run(len(raw), entry_requests, raw, limits):
        try:
            rtype = parse_entry_url(url, settings.fhir_base, f"Bundle.entry[{i}]")[0]
        except BadRequest:
            continue  # the entry itself is refused when it runs, naming its URL
        if rtype not in _SUPPORTED:
            raise NotFound(
                f"resource type '{rtype}' is not supported here",
                expression=f"Bundle.entry[{i}].request.url",
            )
        _authorize(principal, rtype, "read" if method == "GET" else "write")
    bundle, _report = await offload.run(len(raw), read_resource, raw, limits, "Bundle")
    return fhir_response(await data.bundle(bundle))


@router.get("/_history")
async def system_history(
    request: Request, principal: PrincipalDep, data: DataDep, settings: SettingsDep
) -> Response:
    """Every change, newest first."""
    _authorize(principal, "*", "read")
    return await _history(request, data, settings, None, None)


# --- type level ----------------------------------------------------------------------------


@router.get("/{resource_type}")
async def search_type(
    resource_type: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
    settings: SettingsDep,
) -> Response:
    """Search (GET)."""
    _check_type(resource_type)
    _authorize(principal, resource_type, "read")
    items = request.query_params.multi_items()
    if resource_type == "AuditEvent":
        return await audit_search(request, data.store, settings, principal, items)
    return await _search(request, data, settings, resource_type, items)


@router.post("/{resource_type}/_search")
async def search_type_post(
    resource_type: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
    settings: SettingsDep,
) -> Response:
    """Search (POST, form-encoded parameters)."""
    _check_type(resource_type)
    _authorize(principal, resource_type, "read")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    items = list(request.query_params.multi_items())
    if media == "application/x-www-form-urlencoded":
        items += parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True)
    elif media:
        raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded")
    if resource_type == "AuditEvent":
        return await audit_search(request, data.store, settings, principal, items)
    return await _search(request, data, settings, resource_type, items)


@router.post("/{resource_type}", openapi_extra=RESOURCE_BODY)
async def create(
    resource_type: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
    settings: SettingsDep,
) -> Response:
    """Create (the server assigns the id); conditional with If-None-Exist.

    A conditional create whose match the caller may not see creates, exactly as if nothing
    matched: hidden means absent.
    """
    _check_type(resource_type)
    _authorize(principal, resource_type, "write")
    resource, report = await _resource(request, settings, resource_type)
    result = await data.create(resource, if_none_exist=request.headers.get("if-none-exist"))
    if result.matched_existing:
        return fhir_response(
            result.resource, status_code=200, headers=_read_headers(result.resource)
        )
    return _write_response(request, result, settings, report)


@router.get("/{resource_type}/_history")
async def type_history(
    resource_type: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
    settings: SettingsDep,
) -> Response:
    """Every version of every resource of the type, newest first."""
    _check_type(resource_type)
    _authorize(principal, resource_type, "read")
    return await _history(request, data, settings, resource_type, None)


# --- instance level ------------------------------------------------------------------------


@router.get("/{resource_type}/{resource_id}")
async def read(
    resource_type: str,
    resource_id: str,
    principal: PrincipalDep,
    data: DataDep,
) -> Response:
    """Read the current version."""
    _check_type(resource_type)
    _check_id(resource_id)
    _authorize(principal, resource_type, "read")
    if resource_type == "AuditEvent":
        resource = await audit_read(data.store, principal, resource_id)
        return fhir_response(resource, headers=_read_headers(resource))
    resource = await data.read(resource_type, resource_id)
    return fhir_response(resource, headers=_read_headers(resource))


@router.put("/{resource_type}/{resource_id}", openapi_extra=RESOURCE_BODY)
async def update(
    resource_type: str,
    resource_id: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
    settings: SettingsDep,
) -> Response:
    """Update (or create with a client id); If-Match checks the version.

    Only the author changes a resource (directory resources: the participant they describe);
    one the caller may not see is unknown to it (404).
    """
    _check_type(resource_type)
    _check_id(resource_id)
    _authorize(principal, resource_type, "write")
    resource, report = await _resource(request, settings, resource_type)
    if resource.get("id") != resource_id:
        raise BadRequest("the resource's id must equal the id in the URL", expression="id")
    result = await data.update(
        resource_type, resource_id, resource, if_match=request.headers.get("if-match")
    )
    return _write_response(request, result, settings, report)


@router.delete("/{resource_type}/{resource_id}")
async def delete(
    resource_type: str,
    resource_id: str,
    principal: PrincipalDep,
    data: DataDep,
) -> Response:
    """Delete (a tombstone version; history stays)."""
    _check_type(resource_type)
    _check_id(resource_id)
    _authorize(principal, resource_type, "write")
    version = await data.delete(resource_type, resource_id)
    headers = {"ETag": f'W/"{version}"'} if version is not None else {}
    return Response(status_code=204, headers=headers)


@router.get("/{resource_type}/{resource_id}/_history")
async def instance_history(
    resource_type: str,
    resource_id: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
    settings: SettingsDep,
) -> Response:
    """Every version of one resource, newest first."""
    _check_type(resource_type)
    _check_id(resource_id)
    _authorize(principal, resource_type, "read")
    return await _history(request, data, settings, resource_type, resource_id)


@router.get("/{resource_type}/{resource_id}/_history/{version_id}")
async def vread(
    resource_type: str,
    resource_id: str,
    version_id: str,
    principal: PrincipalDep,
    data: DataDep,
) -> Response:
    """Read one version."""
    _check_type(resource_type)
    _check_id(resource_id)
    _authorize(principal, resource_type, "read")
    if resource_type == "AuditEvent":
        if version_id != "1":
            raise NotFound(f"AuditEvent/{resource_id} has only version 1")
        resource = await audit_read(data.store, principal, resource_id)
        return fhir_response(resource, headers=_read_headers(resource))
    resource = await data.vread(resource_type, resource_id, version_id)
    return fhir_response(resource, headers=_read_headers(resource))


# --- bundles -------------------------------------------------------------------------------


def _page_url(settings: Settings, path: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    return f"{settings.fhir_base}/{path}" + (f"?{query}" if query else "")


def _paging_links(
    settings: Settings,
    path: str,
    params: list[tuple[str, str]],
    count: int,
    offset: int,
    has_next: bool,
    total: int | None,
) -> list[dict[str, str]]:
    def url(at: int) -> str:
        return _page_url(settings, path, [*params, ("_count", str(count)), ("_offset", str(at))])

    links = [{"relation": "self", "url": url(offset)}, {"relation": "first", "url": url(0)}]
    if offset > 0 and count > 0:
        links.append({"relation": "previous", "url": url(max(0, offset - count))})
    if count > 0 and has_next:
        links.append({"relation": "next", "url": url(offset + count)})
    if total is not None and count > 0:
        last = max(0, (total - 1) // count * count)
        links.append({"relation": "last", "url": url(last)})
    return links


async def _search(
    request: Request,
    data: DataPath,
    settings: Settings,
    rtype: str,
    items: list[tuple[str, str]],
) -> Response:
    page = await data.search(
        rtype,
        list(items),
        lenient=_prefer(request).get("handling") == "lenient",
        default_count=settings.default_page_size,
        max_count=settings.max_page_size,
    )
    query, result = page.query, page.result
    params = [(k, v) for k, v in page.request.link_params if k != "_count"]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if result.total is not None:
        bundle["total"] = result.total
    bundle["link"] = _paging_links(
        settings, rtype, params, query.count, query.offset, result.has_more, result.total
    )
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"{settings.fhir_base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "match"},
        }
        for r in result.matches
    ]
    entries += [
        {
            "fullUrl": f"{settings.fhir_base}/{r['resourceType']}/{r['id']}",
            "resource": r,
            "search": {"mode": "include"},
        }
        for r in result.included
    ]
    if query.warnings:
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [w.to_fhir() for w in query.warnings],
                },
                "search": {"mode": "outcome"},
            }
        )
    if entries:
        bundle["entry"] = entries
    return fhir_response(bundle)


def _history_entry(settings: Settings, entry: HistoryEntry) -> dict[str, Any]:
    url = f"{entry.resource_type}/{entry.id}"
    out: dict[str, Any] = {"fullUrl": f"{settings.fhir_base}/{url}"}
    if entry.resource is not None:
        out["resource"] = entry.resource
    status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[entry.method]
    out["request"] = {
        "method": entry.method,
        "url": url if entry.method != "POST" else entry.resource_type,
    }
    out["response"] = {
        "status": status,
        "etag": f'W/"{entry.version}"',
        "lastModified": format_instant(entry.last_updated),
    }
    return out


async def _history(
    request: Request,
    data: DataPath,
    settings: Settings,
    rtype: str | None,
    rid: str | None,
) -> Response:
    params = request.query_params
    count = min(
        _int_param(params.get("_count"), settings.default_page_size, "_count"),
        settings.max_page_size,
    )
    offset = _int_param(params.get("_offset"), 0, "_offset")
    since = None
    if params.get("_since"):
        try:
            since = date_range(params["_since"])[0]
        except ValueError as exc:
            raise BadRequest("_since needs a FHIR instant", expression="_since") from exc
    if rtype == "AuditEvent":
        raise MethodNotAllowed("the audit trail has no history: each event is written once")
    unknown = set(params) - {"_count", "_offset", "_since", "_format", "_pretty"}
    if unknown and _prefer(request).get("handling") != "lenient":
        raise BadRequest(
            f"unknown history parameter {sorted(unknown)[0]}", expression=sorted(unknown)[0]
        )
    entries, total = await data.history(rtype, rid, since=since, count=count, offset=offset)
    path = "/".join(p for p in (rtype, rid, "_history") if p)
    link_params = [("_since", params["_since"])] if since else []
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "history",
        "total": total,
        "link": _paging_links(
            settings, path, link_params, count, offset, offset + len(entries) < total, total
        ),
    }
    if entries:
        bundle["entry"] = [_history_entry(settings, e) for e in entries]
    return fhir_response(bundle)


def _int_param(raw: str | None, default: int, name: str) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise BadRequest(f"'{name}' needs a non-negative whole number", expression=name)
    return int(raw)


@router.get("/CarePlan/{resource_id}/$summary")
async def care_plan_summary(
    resource_id: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
) -> Response:
    """The shared plan as the caller may see it: a plain-Danish summary (``text/plain``
    asked for in Accept) or a Parameters resource with the summary and the visible parts."""
    _check_id(resource_id)
    _authorize(principal, "CarePlan", "read")
    view = await plan_view(data, resource_id)
    text = plan_summary(view)
    if "text/plain" in request.headers.get("accept", ""):
        return Response(text, media_type="text/plain; charset=utf-8")
    parameters: dict[str, Any] = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "summary", "valueString": text},
            *({"name": "part", "resource": part} for part in view.resources()),
        ],
    }
    return fhir_response(parameters)


@router.get("/Patient/{resource_id}/$everything")
async def patient_everything(
    resource_id: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
    settings: SettingsDep,
) -> Response:
    """The patient and every resource that refers to it, as far as the caller may see."""
    _check_id(resource_id)
    _authorize(principal, "Patient", "read")
    params = request.query_params
    count = min(
        _int_param(params.get("_count"), settings.default_page_size, "_count"),
        settings.max_page_size,
    )
    offset = _int_param(params.get("_offset"), 0, "_offset")
    page, total = await data.everything(resource_id, count=count, offset=offset)
    path = f"Patient/{resource_id}/$everything"
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": _paging_links(settings, path, [], count, offset, offset + count < total, total),
    }
    if page:
        bundle["entry"] = [
            {
                "fullUrl": f"{settings.fhir_base}/{r['resourceType']}/{r['id']}",
                "resource": r,
                "search": {"mode": "match"},
            }
            for r in page
        ]
    return fhir_response(bundle)
