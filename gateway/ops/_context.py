"""The current request as logs and metrics see it: request id, method, route template, caller.

Only the route *template* (``/fhir/{resource_type}/{resource_id}``) is ever exposed, never the
raw path or query string: those carry ids and CPR numbers.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar, Token
from dataclasses import dataclass

from starlette.types import Scope

REQUEST_ID_HEADER = "X-Request-ID"
UNMATCHED_ROUTE = "<unmatched>"

_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def sane_request_id(candidate: str | None) -> str:
    """The caller's request id when it is a short plain token, else a fresh uuid4."""
    if candidate and _SANE_REQUEST_ID.fullmatch(candidate):
        return candidate
    return str(uuid.uuid4())


def route_template(scope: Scope) -> str | None:
    """The matched route's full path template, or None before routing / when none matched.

    Recent FastAPI (0.16x) no longer flattens included routers: ``scope["route"]`` is the route
    as declared (no ``/fhir`` prefix) and the prefixed template is on the "effective route
    context" it records in ``scope["fastapi"]``. Older FastAPI flattens, so there
    ``scope["route"]`` is whole. tests/ops pins the ``/fhir/...`` result.
    """
    fastapi_scope = scope.get("fastapi")
    effective = (
        fastapi_scope.get("effective_route_context") if isinstance(fastapi_scope, dict) else None
    )
    candidates = (getattr(effective, "starlette_route", None), effective, scope.get("route"))
    for candidate in candidates:
        template = getattr(candidate, "path_format", None)
        if isinstance(template, str) and template:
            return template
    return None


def participant_of(scope: Scope) -> str | None:
    """The authenticated participant's name, once ``gateway.deps`` has set the principal."""
    state = scope.get("state")
    principal = state.get("principal") if isinstance(state, dict) else None
    participant = getattr(principal, "participant", None)
    return participant if isinstance(participant, str) else None


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One HTTP request; route and participant are read from the scope when asked.

    They are only known after routing and authentication, which happen inside the app, so
    the context keeps the (mutable) scope instead of copies.
    """

    request_id: str
    method: str
    scope: Scope

    @property
    def route(self) -> str | None:
        return route_template(self.scope)

    @property
    def participant(self) -> str | None:
        return participant_of(self.scope)


_current: ContextVar[RequestContext | None] = ContextVar("brobygger_request", default=None)


def enter_request(context: RequestContext) -> Token[RequestContext | None]:
    return _current.set(context)


def leave_request(token: Token[RequestContext | None]) -> None:
    _current.reset(token)


def current_request() -> RequestContext | None:
    return _current.get()


def current_request_id() -> str | None:
    """The id of the request being handled (for outbound headers, audit records), or None."""
    context = _current.get()
    return context.request_id if context else None
