"""SMART Backend Services endpoints: discovery and the client_credentials token endpoint.

The token endpoint answers errors as OAuth JSON (RFC 6749 §5.2), not as OperationOutcome:
that is OAuth's contract with every client library.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from gateway.auth.assertions import (
    CLIENT_ASSERTION_TYPE,
    AssertionLedger,
    InvalidClient,
    InvalidRequest,
    OAuthError,
    TemporarilyUnavailable,
    UnsupportedGrantType,
    check_client_assertion,
    claimed_client,
)
from gateway.auth.citizens import citizen_cpr, patient_reference, resolve_patient
from gateway.auth.keys import SIGNING_ALGORITHMS
from gateway.auth.policy import TOKEN_POLICIES, grant
from gateway.auth.tokens import PURPOSES, TokenService
from gateway.errors import GatewayError
from gateway.participants.directory import ParticipantDirectory
from gateway.settings import Settings

log = logging.getLogger(__name__)
router = APIRouter(tags=["auth"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FORM_FIELDS = (
    "grant_type",
    "client_assertion_type",
    "client_assertion",
    "scope",
    "purpose",
    "patient",
)
_OAUTH_ERROR_SCHEMA: dict[str, Any] = {
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string"},
                    "error_description": {"type": "string"},
                },
            }
        }
    }
}


def smart_configuration_document(settings: Settings) -> dict[str, Any]:
    return {
        "issuer": settings.base_url,
        "token_endpoint": settings.token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        # Each participant kind may hold only some of them (gateway/auth/policy.py).
        "scopes_supported": _scopes_supported(),
        "capabilities": ["client-confidential-asymmetric"],
        # Not part of SMART: the purposes a token request may name (form field ``purpose``).
        "purposes_supported": [f"{system}|{code}" for code, system in PURPOSES.items()],
    }


def _scopes_supported() -> list[str]:
    scopes: dict[str, None] = {}
    for policy in TOKEN_POLICIES.values():
        scopes.update((str(p), None) for p in policy.permissions)
    return list(scopes)


@router.get("/.well-known/smart-configuration", summary="SMART discovery document")
async def smart_configuration(request: Request) -> JSONResponse:
    settings: Settings = request.app.state.settings
    return JSONResponse(smart_configuration_document(settings))


def _oauth_error(error: OAuthError) -> JSONResponse:
    return JSONResponse(error.to_json(), status_code=error.status, headers=_NO_STORE)


def _ledger(request: Request) -> AssertionLedger:
    ledger: AssertionLedger | None = getattr(request.app.state, "assertion_ledger", None)
    if ledger is None:
        ledger = AssertionLedger(request.app.state.database)
        request.app.state.assertion_ledger = ledger
    return ledger


async def _read_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise InvalidRequest("the token request must be application/x-www-form-urlencoded")
    try:
        form = await request.form()
    except Exception as exc:  # a malformed body is the client's error, whatever the parser says
        raise InvalidRequest("the token request body is not a readable form") from exc
    fields: dict[str, str] = {}
    for name in (*_FORM_FIELDS, "client_id"):
        values = form.getlist(name)
        if len(values) > 1:
            raise InvalidRequest(f"parameter {name!r} given more than once")
        if values and isinstance(values[0], str):
            fields[name] = values[0]
    return fields


@router.post(
    "/auth/token",
    summary="SMART Backend Services token endpoint (client_credentials + private_key_jwt)",
    responses={400: _OAUTH_ERROR_SCHEMA, 401: _OAUTH_ERROR_SCHEMA, 503: _OAUTH_ERROR_SCHEMA},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type", "client_assertion_type", "client_assertion"],
                        "properties": {name: {"type": "string"} for name in _FORM_FIELDS},
                    }
                }
            },
        }
    },
)
async def token(request: Request) -> JSONResponse:
    try:
        body = await _issue(request)
    except OAuthError as error:
        log.info("token request refused: %s (%s)", error.error, error)
        return _oauth_error(error)
    except GatewayError as error:  # the directory or database is down
        log.warning("token request failed: %s", error)
        return _oauth_error(TemporarilyUnavailable("the token service is unavailable; retry"))
    return JSONResponse(body, headers=_NO_STORE)


async def _issue(request: Request) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    tokens: TokenService = request.app.state.tokens
    form = await _read_form(request)

    grant_type = form.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required")
    if grant_type != "client_credentials":
        raise UnsupportedGrantType("only grant_type=client_credentials is supported")
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise InvalidClient(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
    assertion = form.get("client_assertion", "").strip()
    if not assertion:
        raise InvalidClient("client_assertion is required (private_key_jwt)")

    client_id = claimed_client(assertion)
    participant = await ParticipantDirectory(request.app.state.database).find(client_id)
    if participant is None:
        raise InvalidClient("unknown client")
    now = time.time()
    verified = check_client_assertion(
        assertion,
        jwks=participant.jwks,
        token_url=settings.token_url,
        now=now,
        max_lifetime=settings.max_assertion_lifetime_seconds,
        clock_skew=settings.clock_skew_seconds,
        client_id=form.get("client_id"),
    )
    granted = grant(participant.kind, form.get("scope"), form.get("purpose"))
    cpr = citizen_cpr(verified.claims, citizen_bound=granted.policy.citizen_bound)
    if cpr is None:
        if form.get("patient"):
            raise InvalidRequest("only the citizen portal may ask for a patient context")
        patient = None
    else:
        requested = patient_reference(form.get("patient"))
        patient = await resolve_patient(request.app.state.database, cpr, requested)
    # Last: the jti is spent only by a request that is otherwise good.
    await _ledger(request).record(verified, clock_skew=settings.clock_skew_seconds, now=now)

    issued = tokens.issue(
        participant=participant.name,
        kind=participant.kind,
        organization_id=participant.organization_id,
        scopes=granted.scopes,
        purpose=granted.purpose,
        patient=patient,
    )
    log.info(
        "issued access token %s to %s (scope %r, purpose %s, key %s)",
        issued.token_id,
        participant.name,
        issued.scope,
        granted.purpose or "-",
        verified.kid,
    )
    return issued.to_json()
