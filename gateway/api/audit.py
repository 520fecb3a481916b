"""The audit trail over FHIR: ``GET /fhir/AuditEvent?patient=…`` and ``GET /fhir/AuditEvent/{id}``.

AuditEvents live in their own append-only table (``gateway/store/audit_log.py``). They name
resources and who asked for them, hidden ones included, so only the citizen portal reads them,
and only about the citizen its token was issued for. For everyone else the trail is empty
and an event id is unknown (404), like any resource they may not see.

Search parameters: ``patient``, ``date`` (with prefixes), ``outcome``, ``_sort`` (``date`` or
``-date``, newest first by default), ``_count``, ``_offset``, ``_summary=count``, ``_total``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from sqlalchemy import or_
from starlette.responses import Response

from gateway.api.responses import fhir_response
from gateway.auth.principal import Principal
from gateway.errors import BadRequest, NotFound, UnknownSearchParameter
from gateway.search.dates import date_range
from gateway.search.query import date_condition, split_values
from gateway.settings import Settings
from gateway.store import audit_log
from gateway.store.repository import Store
from gateway.store.schema import audit_events

_PARAMS = {"patient", "date", "outcome", "_sort", "_count", "_offset", "_summary", "_total"}
_IGNORED = {"_format", "_pretty"}
_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def _reader_patient(principal: Principal) -> str | None:
    """The patient whose trail this caller may read (only the citizen portal has one)."""
    if principal.kind == "citizen-portal" and principal.patient:
        return principal.patient.split("/", 1)[1]
    return None


async def audit_read(store: Store, principal: Principal, event_id: str) -> dict[str, Any]:
    async with store.read_connection() as conn:
        event = await audit_log.read(conn, event_id)
    patient = _reader_patient(principal)
    if event is None or patient is None or audit_log.patient_id_of(event) != patient:
        raise NotFound(f"AuditEvent/{event_id} is not known")
    return event


def _int(name: str, raw: str, default: int, maximum: int | None = None) -> int:
    if raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9:
        raise BadRequest(f"'{name}' needs a non-negative whole number", expression=name)
    value = int(raw)
    return min(value, maximum) if maximum is not None else value


async def audit_search(
    request: Request,
    store: Store,
    settings: Settings,
    principal: Principal,
    items: list[tuple[str, str]],
) -> Response:
    lenient = "handling=lenient" in request.headers.get("prefer", "")
    query = audit_log.AuditQuery(count=settings.default_page_size, recorded=[])
    asked_patient: str | None = None
    summary_count = False
    want_total = True
    link_params: list[tuple[str, str]] = []
    for key, raw in items:
        if key in _IGNORED:
            continue
        if key not in _PARAMS:
            if lenient:
                continue
            raise UnknownSearchParameter(
                f"the audit trail is searched by {', '.join(sorted(_PARAMS))}", expression=key
            )
        if key == "patient":
            asked_patient = raw.split("/")[-1]
        elif key == "date":
            alternatives = []
            for value in split_values(raw):
                prefix = value[:2] if value[:2] in _PREFIXES else "eq"
                moment = value[2:] if value[:2] in _PREFIXES else value
                try:
                    low, high = date_range(moment)
                except ValueError as exc:
                    raise BadRequest("'date' needs a FHIR date or instant", expression=key) from exc
                recorded = audit_events.c.recorded
                alternatives.append(
                    date_condition(
                        recorded, recorded + timedelta(milliseconds=1), prefix, low, high
                    )
                )
            assert query.recorded is not None  # noqa: S101 - set above
            query.recorded.append(or_(*alternatives))
        elif key == "outcome":
            query.outcome = raw
        elif key == "_sort":
            if raw not in ("date", "-date"):
                raise BadRequest("the audit trail sorts by date or -date", expression=key)
            query.newest_first = raw == "-date"
        elif key == "_count":
            query.count = _int(key, raw, settings.default_page_size, settings.max_page_size)
            continue
        elif key == "_offset":
            query.offset = _int(key, raw, 0)
            continue
        elif key == "_summary":
            if raw not in ("count", "false"):
                raise BadRequest("_summary supports count and false", expression=key)
            summary_count = raw == "count"
        elif key == "_total":
            want_total = raw != "none"
        link_params.append((key, raw))

    own = _reader_patient(principal)
    events: list[dict[str, Any]] = []
    total = 0
    if own is not None and asked_patient in (None, own):
        query.patient_id = own
        if summary_count:
            query.count = 0
        async with store.read_connection() as conn:
            events, total = await audit_log.search(conn, query)
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if want_total or summary_count:
        bundle["total"] = total

    def url(at: int) -> str:
        params = [*link_params, ("_count", str(query.count)), ("_offset", str(at))]
        return f"{settings.fhir_base}/AuditEvent?{urlencode(params)}"

    links = [{"relation": "self", "url": url(query.offset)}]
    if query.count and query.offset + query.count < total:
        links.append({"relation": "next", "url": url(query.offset + query.count)})
    if query.offset > 0 and query.count:
        links.append({"relation": "previous", "url": url(max(0, query.offset - query.count))})
    bundle["link"] = links
    if events and not summary_count:
        bundle["entry"] = [
            {
                "fullUrl": f"{settings.fhir_base}/AuditEvent/{e['id']}",
                "resource": e,
                "search": {"mode": "match"},
            }
            for e in events
        ]
    return fhir_response(bundle)
