"""``POST /ingest/{format}``: a legacy XML document from an authenticated sender → the store."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.api.responses import fhir_response
from gateway.clock import SYSTEM_CLOCK
from gateway.deps import DataDep, PrincipalDep, SettingsDep
from gateway.errors import Forbidden, NotFound, PayloadTooLarge, UnsupportedMediaType
from gateway.ingest.pipeline import RECORD_TYPES, ingest
from gateway.jobs import offload_for
from gateway.limits import xml_limits
from mappings import FORMATS, MAX_DOCUMENT_BYTES

router = APIRouter(tags=["ingest"])

_XML_TYPES = ("application/xml", "text/xml")
AUTO = "auto"


@router.post("/ingest/{format}")
async def ingest_document(
    format: str,
    request: Request,
    principal: PrincipalDep,
    data: DataDep,
    settings: SettingsDep,
) -> Response:
    """Map, validate and store one document; the caller must be the document's sender.

    Returns the transaction-response Bundle (201 when new, 200 when updated or unchanged;
    ``X-Ingest-Status`` says which; warnings ride on the DocumentReference entry's
    ``response.outcome``) or an OperationOutcome.
    """
    if format != AUTO and format not in FORMATS:
        raise NotFound(
            f"unknown format; use one of {', '.join((*FORMATS, AUTO))}", expression="format"
        )
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media not in _XML_TYPES:
        raise UnsupportedMediaType("send application/xml", expression="Content-Type")

    def authorize(types: set[str]) -> None:
        missing = sorted(t for t in types if not principal.allows(t, "write"))
        if missing:
            raise Forbidden(f"the access token has no scope to write {', '.join(missing)}")

    # Scope before the body is even read: reading a document is the expensive part.
    authorize(set(RECORD_TYPES))
    limit = min(settings.max_body_bytes, MAX_DOCUMENT_BYTES)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the document is larger than {limit} bytes")
    body = await request.body()
    if len(body) > limit:
        raise PayloadTooLarge(f"the document is larger than {limit} bytes")

    result = await ingest(
        data.store,
        body,
        format=None if format == AUTO else format,
        sender_participant=principal.participant,
        principal=principal,
        # The gateway's clock: the mapping judges open deadlines against today.
        now=getattr(request.app.state, "clock", SYSTEM_CLOCK).now(),
        max_bytes=limit,
        authorize=authorize,
        limits=xml_limits(settings, limit),
        offload=offload_for(settings),
    )
    response = result.response
    if result.warnings:
        for entry in response.get("entry", []):
            if entry.get("resource", {}).get("resourceType") == "DocumentReference":
                entry["response"]["outcome"] = result.outcome()
                break
    return fhir_response(
        response,
        status_code=201 if result.status == "accepted" else 200,
        headers={"X-Ingest-Status": result.status},
    )
