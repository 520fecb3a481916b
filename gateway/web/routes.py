"""The caseworker's web view (server-rendered, Danish): sign-in, worklist, timeline, figures.

One more client of the guarded data path: every page reads through the signed-in
participant's ``DataPath`` (the same principal its own token would make it), never the store.
The key figures page uses ``gateway.figures`` (aggregates, suppressed) like the REST API.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import RedirectResponse, Response

from consent import Decision
from gateway.clock import Clock, today
from gateway.coordination.worklist import row as worklist_row
from gateway.coordination.worklist import worklist
from gateway.data.path import DataPath, principal_for
from gateway.errors import Gone, NotFound
from gateway.figures import Month, all_reports, municipality_subject
from gateway.figures._table import rows_of, shown
from gateway.figures.chart import chart_svg
from gateway.participants.directory import Participant, ParticipantDirectory
from gateway.participants.identifiers import MUNICIPALITY
from gateway.search.parameters import SEARCH_PARAMS
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.repository import Store
from gateway.web._session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    SessionService,
    new_csrf,
    same_secret,
)
from gateway.web._staff import IdentityProvider
from gateway.web._timeline import timeline

router = APIRouter(prefix="/web", include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

SECURITY_HEADERS = {
    # Inline styles only (the page's own CSS and the charts' SVG); no scripts at all.
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
STAFF_KINDS = ("jobcentre", "rehab-unit", "hospital", "gp")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class SignInRequired(Exception):
    """No valid session: the handler answers with a redirect to the sign-in page."""


def _sessions(request: Request) -> SessionService:
    service: SessionService = request.app.state.web_sessions
    return service


def _identity(request: Request) -> IdentityProvider:
    provider: IdentityProvider = request.app.state.web_identity
    return provider


def current_session(request: Request) -> Session:
    session = _sessions(request).verify(request.cookies.get(SESSION_COOKIE))
    if session is None:
        raise SignInRequired
    return session


SessionDep = Annotated[Session, Depends(current_session)]


def _page(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> Response:
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


async def _viewer(request: Request, session: Session) -> tuple[Participant, DataPath]:
    database: Database = request.app.state.database
    store: Store = request.app.state.store
    settings: Settings = request.app.state.settings
    participant = await ParticipantDirectory(database).get(session.staff.participant)
    return participant, DataPath(
        store, principal_for(participant), enforce=settings.enforce_consent
    )


def _today(request: Request) -> date:
    clock: Clock = request.app.state.clock
    return today(clock)


# --- sign-in ------------------------------------------------------------------------------


@router.get("/")
async def home(request: Request) -> Response:
    if _sessions(request).verify(request.cookies.get(SESSION_COOKIE)) is None:
        return RedirectResponse("/web/login", status_code=303)
    return RedirectResponse("/web/arbejdsliste", status_code=303)


async def _login_page(request: Request, error: str | None, status_code: int = 200) -> Response:
    database: Database = request.app.state.database
    participants = [p for p in await ParticipantDirectory(database).list() if p.kind in STAFF_KINDS]
    csrf = new_csrf()
    response = _page(
        request,
        "login.html",
        {"participants": participants, "csrf": csrf, "error": error, "session": None},
        status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        csrf,
        max_age=1800,
        secure=True,
        httponly=True,
        samesite="strict",
        path="/web",
    )
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    return await _login_page(request, None)


@router.post("/login")
async def login(
    request: Request,
    participant: Annotated[str, Form(max_length=64)],
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf: Annotated[str, Form(max_length=128)],
) -> Response:
    if not same_secret(request.cookies.get(LOGIN_CSRF_COOKIE), csrf):
        return await _login_page(request, "Formularen er udløbet. Prøv igen.", 403)
    staff = await _identity(request).authenticate(participant, username, password)
    if staff is None:
        return await _login_page(
            request, "Forkert organisation, brugernavn eller adgangskode.", 401
        )
    response = RedirectResponse("/web/arbejdsliste", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        _sessions(request).issue(staff),
        max_age=SESSION_SECONDS,
        secure=True,
        httponly=True,
        samesite="strict",
        path="/web",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/web")
    return response


@router.post("/logout")
async def logout(
    request: Request, session: SessionDep, csrf: Annotated[str, Form(max_length=128)]
) -> Response:
    if not same_secret(session.csrf, csrf):
        return _page(
            request, "error.html", {"session": session, "message": "Ugyldig formular."}, 403
        )
    response = RedirectResponse("/web/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/web", secure=True, httponly=True, samesite="strict"
    )
    return response


# --- worklist -----------------------------------------------------------------------------


def _name(patient: dict[str, Any]) -> str:
    for name in patient.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*(name.get("given") or []), str(name.get("family") or "")]
        if any(parts):
            return " ".join(p for p in parts if p)
    return f"Patient/{patient.get('id')}"


@router.get("/arbejdsliste")
async def worklist_page(request: Request, session: SessionDep) -> Response:
    participant, data = await _viewer(request, session)
    settings: Settings = request.app.state.settings
    day = _today(request)
    owned = await worklist(data.store, participant, today=day, enforce=settings.enforce_consent)
    waiting = await worklist(
        data.store, participant, today=day, waiting=True, enforce=settings.enforce_consent
    )
    refs = sorted(
        {
            str((t.get("for") or {}).get("reference"))
            for t in owned + waiting
            if str((t.get("for") or {}).get("reference", "")).startswith("Patient/")
        }
    )
    names = {f"Patient/{p['id']}": _name(p) for p in await data.read_many(refs, interaction="read")}

    def rows(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        found = []
        for task in tasks:
            due, status, state, what, whom, ref = worklist_row(task, day)
            found.append(
                {
                    "due": due,
                    "status": status,
                    "state": state,
                    "what": str(task.get("description") or what),
                    "patient": whom if whom.startswith("Patient/") else None,
                    "name": names.get(whom, "Borger"),
                    "ref": ref,
                }
            )
        return found

    return _page(
        request,
        "worklist.html",
        {
            "session": session,
            "participant": participant,
            "today": day,
            "owned": rows(owned),
            "waiting": rows(waiting),
        },
    )


# --- the citizen's timeline ---------------------------------------------------------------


# Resource types a citizen's timeline shows: those with a ``patient`` search parameter
# (Provenance and the audit trail are not the caseworker's business here).
TIMELINE_TYPES = tuple(
    sorted(
        t
        for t, params in SEARCH_PARAMS.items()
        if "patient" in params and t not in ("Provenance", "AuditEvent", "Patient")
    )
)
TIMELINE_LIMIT = 500


async def visible_record(data: DataPath, patient_id: str) -> list[dict[str, Any]]:
    """What the viewer may see of a citizen: one guarded search per type (as a client would
    send to /fhir/<type>?patient=…), the Patient itself first when it is visible."""
    found: list[dict[str, Any]] = []
    try:
        found.append(await data.read("Patient", patient_id))
    except (NotFound, Gone):
        pass
    for rtype in TIMELINE_TYPES:
        page = await data.search(
            rtype,
            [("patient", f"Patient/{patient_id}"), ("_count", str(TIMELINE_LIMIT))],
            max_count=TIMELINE_LIMIT,
        )
        found.extend(page.result.matches)
    return found


@router.get("/borger/{patient_id}")
async def citizen_page(request: Request, session: SessionDep, patient_id: str) -> Response:
    participant, data = await _viewer(request, session)
    if not _ID.fullmatch(patient_id):
        return _nothing(request, session)
    found = await visible_record(data, patient_id)
    if not found:
        # The same answer whether the citizen is unknown or hidden from this viewer.
        return _nothing(request, session)
    if data.enforce:
        gate = data.gate("read", audit=False)
        decisions = await gate.decide(found, record_denials=False)
    else:
        decisions = [Decision("permit", "not-enforced", "consent not enforced") for _ in found]
    patient = found[0] if found[0].get("resourceType") == "Patient" else None
    return _page(
        request,
        "citizen.html",
        {
            "session": session,
            "participant": participant,
            "name": _name(patient) if patient else "Borger",
            "patient": f"Patient/{patient_id}",
            "items": timeline(found, decisions),
        },
    )


def _nothing(request: Request, session: Session) -> Response:
    return _page(
        request,
        "error.html",
        {"session": session, "message": "Ingen oplysninger om denne borger."},
        404,
    )


# --- key figures --------------------------------------------------------------------------


@router.get("/noegletal")
async def figures_page(
    request: Request, session: SessionDep, maaned: str | None = None, kommune: bool = False
) -> Response:
    participant, data = await _viewer(request, session)
    database: Database = request.app.state.database
    try:
        month = (
            Month.parse(maaned)
            if maaned
            else Month(_today(request).year, _today(request).month).shift(-1)
        )
    except ValueError:
        return _page(request, "error.html", {"session": session, "message": "Ugyldig måned."}, 400)
    code = participant.identifier(MUNICIPALITY)
    municipal = kommune and code is not None and participant.kind in ("jobcentre", "rehab-unit")
    subject = municipality_subject(code) if municipal and code else None
    reports = await all_reports(
        data.store, ParticipantDirectory(database), participant, month, subject
    )
    rows = [row for report in reports for row in rows_of(report)]
    scope = f"Kommune {code}" if municipal else participant.display
    title = f"Nøgletal {month} - {scope}"
    return _page(
        request,
        "figures.html",
        {
            "session": session,
            "participant": participant,
            "month": str(month),
            "previous": str(month.shift(-1)),
            "next": str(month.shift(1)),
            "municipal": municipal,
            "can_municipal": code is not None and participant.kind in ("jobcentre", "rehab-unit"),
            "title": title,
            "rows": [{"row": r, "shown": shown(r)} for r in rows],
            "chart": chart_svg(rows, title),
        },
    )
