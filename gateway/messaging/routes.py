"""HTTP: ``POST /fhir/$process-message`` and the gateway's public keys.

The answer to a message is the gateway's Acknowledgement, a compact JWS signed with the
gateway's key (``Content-Type: application/jose``): 200 for ``ok`` and ``fatal-error``, 503
(with ``Retry-After``) for ``transient-error``. A client that wants to read it without JOSE
may send ``Accept: application/fhir+json`` and gets the Acknowledgement Bundle as JSON; a
participant sending plain FHIR (its registered transport) gets JSON unless it asks for JOSE.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from gateway.api.responses import fhir_response
from gateway.deps import PrincipalDep, SettingsDep, StoreDep
from gateway.errors import PayloadTooLarge
from gateway.messaging.envelope import MEDIA_TYPE, canonical_json, sign
from gateway.messaging.inbound import PLAIN_MEDIA_TYPES, process_message
from gateway.messaging.keys import gateway_jwks, gateway_signing_key

router = APIRouter(tags=["messaging"])
fhir_router = APIRouter(tags=["messaging"])


@router.get("/.well-known/jwks.json", summary="The gateway's public keys (sign, encrypt)")
async def jwks(settings: SettingsDep) -> JSONResponse:
    """Verify the gateway's acknowledgements and forwarded messages with the ``sig`` key;
    encrypt messages to the gateway with the ``enc`` key."""
    return JSONResponse(gateway_jwks(settings), headers={"Cache-Control": "max-age=300"})


@fhir_router.post("/$process-message", summary="Receive a signed and encrypted FHIR message")
async def process(
    request: Request, principal: PrincipalDep, store: StoreDep, settings: SettingsDep
) -> Response:
    limit = min(settings.max_message_bytes, settings.max_body_bytes)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the message is larger than {limit} bytes")
    body = await request.body()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    answer = await process_message(store, settings, principal, body, media)
    headers: dict[str, str] = {"X-Acknowledgement-Code": answer.code}
    if answer.status == 503:
        headers["Retry-After"] = "5"
    if answer.message_key is not None:
        headers["X-Message-Key"] = answer.message_key
    accept = request.headers.get("accept", "")
    plain = media in PLAIN_MEDIA_TYPES and MEDIA_TYPE not in accept
    if plain or ("application/fhir+json" in accept and MEDIA_TYPE not in accept):
        # A plain (MedCom) sender gets the Acknowledgement as FHIR JSON; a JOSE sender asks.
        return fhir_response(answer.ack, status_code=answer.status, headers=headers)
    signed = sign(canonical_json(answer.ack), gateway_signing_key(settings))
    return Response(signed, status_code=answer.status, media_type=MEDIA_TYPE, headers=headers)
