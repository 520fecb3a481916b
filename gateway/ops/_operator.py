"""The operator endpoints and who may read them.

``/metrics`` answers only the **operator token**: ``Authorization: Bearer <token>``, where the
token is ``BROBYGGER_OPERATOR_TOKEN`` or, when that is unset, the content of
``<keys_dir>/operator-token`` (generated on first start outside production, mode 0600, like the
gateway's signing key; in production it must be put there or set, else ``/metrics`` refuses
everyone). ``/openapi.json`` and ``/docs`` (Swagger UI, with the document inlined so the page
makes no second, unauthenticated request) answer the operator token or any valid participant
access token. Anything else is ``401`` with an OperationOutcome and ``WWW-Authenticate``.
``/redoc`` is not served; ``/healthz`` and ``/readyz`` stay open for probes.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import JSONResponse, Response

from gateway.api.responses import fhir_response
from gateway.errors import Issue, Unauthorized, operation_outcome
from gateway.settings import MIN_OPERATOR_TOKEN_LENGTH, Settings

OPERATOR_TOKEN_FILE: Final = "operator-token"  # noqa: S105 - a file name
OPENAPI_PATH: Final = "/openapi.json"
DOCS_PATH: Final = "/docs"
_OPERATOR_REALM: Final = 'Bearer realm="brobygger-operator"'
_REALM: Final = 'Bearer realm="brobygger"'
_NO_STORE: Final = {"Cache-Control": "no-store"}

log = logging.getLogger("gateway.ops")
docs_router = APIRouter(include_in_schema=False)


class OperatorTokenUnavailable(Exception):
    """The operator token file exists but cannot be used."""


def operator_token_path(settings: Settings) -> Path:
    return settings.keys_dir / OPERATOR_TOKEN_FILE


def _write_new_secret(path: Path) -> None:
    """Write a fresh token with mode 0600; an existing file wins (several workers starting)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def load_operator_token(settings: Settings) -> str | None:
    """The operator token: the setting, else the key-dir file (created outside production).

    None in production when neither is there (``/metrics`` then refuses every request).
    """
    if settings.operator_token is not None:
        return settings.operator_token.get_secret_value().strip()
    path = operator_token_path(settings)
    if not path.exists():
        if settings.environment == "production":
            log.warning(
                "no operator token (BROBYGGER_OPERATOR_TOKEN or %s): /metrics refuses everyone",
                path,
            )
            return None
        _write_new_secret(path)
        log.info("operator token for /metrics written to %s", path)
    try:
        token = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeError) as exc:
        raise OperatorTokenUnavailable(f"the operator token file {path} is unreadable") from exc
    if len(token) < MIN_OPERATOR_TOKEN_LENGTH:
        raise OperatorTokenUnavailable(
            f"the operator token in {path} must be at least {MIN_OPERATOR_TOKEN_LENGTH} characters"
        )
    return token


# --- checking a request ---------------------------------------------------------------------


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _is_operator(request: Request, token: str) -> bool:
    expected = getattr(request.app.state, "operator_token", None)
    return isinstance(expected, str) and hmac.compare_digest(
        token.encode("utf-8"), expected.encode("utf-8")
    )


def _refusal(text: str, realm: str, *, presented: bool) -> Response:
    challenge = f'{realm}, error="invalid_token"' if presented else realm
    outcome = operation_outcome([Issue(Unauthorized.code, text)])
    return fhir_response(
        outcome,
        status_code=Unauthorized.status,
        headers={"WWW-Authenticate": challenge, **_NO_STORE},
    )


def refuse_unless_operator(request: Request) -> Response | None:
    """None when the request carries the operator token; else the 401 to answer."""
    token = _bearer(request)
    if token is None:
        return _refusal("the operator token is required", _OPERATOR_REALM, presented=False)
    if not _is_operator(request, token):
        return _refusal("not the operator token", _OPERATOR_REALM, presented=True)
    return None


def refuse_unless_authenticated(request: Request) -> Response | None:
    """None for the operator token or a valid participant access token; else the 401."""
    token = _bearer(request)
    if token is None:
        return _refusal(
            "a bearer access token (or the operator token) is required", _REALM, presented=False
        )
    if _is_operator(request, token):
        return None
    tokens = getattr(request.app.state, "tokens", None)
    if tokens is None:  # start-up has not finished
        return _refusal("the access token cannot be checked yet", _REALM, presented=True)
    try:
        request.state.principal = tokens.verify_access_token(token)
    except Unauthorized as exc:
        return _refusal(str(exc), _REALM, presented=True)
    return None


# --- /openapi.json and /docs ------------------------------------------------------------------


@docs_router.get(OPENAPI_PATH)
async def openapi_document(request: Request) -> Response:
    refused = refuse_unless_authenticated(request)
    if refused is not None:
        return refused
    app: FastAPI = request.app
    return JSONResponse(app.openapi(), headers=_NO_STORE)


@docs_router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> Response:
    refused = refuse_unless_authenticated(request)
    if refused is not None:
        return refused
    app: FastAPI = request.app
    # The document is inlined (no url), so the browser needs no token for a second request.
    page = get_swagger_ui_html(
        openapi_url="",
        title=f"{app.title} - API",
        swagger_ui_parameters={"spec": app.openapi()},
    )
    page.headers.update(_NO_STORE)
    return page
