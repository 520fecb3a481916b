"""The caseworker's web view: server-rendered pages on the guarded data path (docs/web.md).

``routes`` the pages; ``_staff`` staff users and the identity-provider seam; ``_session``
the signed session cookie and CSRF; ``_timeline`` a citizen's timeline (pure); ``cli``
``brobygger web add-user``. ``install_web`` wires them into the app.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from starlette.responses import RedirectResponse, Response

from gateway.web._session import SessionService
from gateway.web._staff import IdentityProvider, StaffDirectory, StaffIdentity, ensure_demo_staff
from gateway.web.routes import SignInRequired, router


def install_web(app: FastAPI) -> None:
    async def sign_in(_request: Request, _exc: Exception) -> Response:
        return RedirectResponse("/web/login", status_code=303)

    app.add_exception_handler(SignInRequired, sign_in)
    app.include_router(router)


__all__ = [
    "IdentityProvider",
    "SessionService",
    "StaffDirectory",
    "StaffIdentity",
    "ensure_demo_staff",
    "install_web",
]
