"""The web view's session: a signed cookie (a JWT under the gateway's own key, joserfc).

The cookie is ``Secure``, ``HttpOnly`` and ``SameSite=Strict``; it names the participant, the
staff member and a per-session CSRF secret that every form must echo (compared in constant
time). Its ``typ`` differs from an access token's, so it is never accepted at /fhir. The
session is stateless (any gateway process verifies it) and lasts ``SESSION_SECONDS``.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key

from gateway.auth.keys import ACCESS_TOKEN_ALGORITHM
from gateway.web._staff import StaffIdentity

SESSION_COOKIE = "brobygger_web"
LOGIN_CSRF_COOKIE = "brobygger_login_csrf"
SESSION_TYPE = "brobygger-web-session+jwt"
SESSION_SECONDS = 8 * 3600


@dataclass(frozen=True, slots=True)
class Session:
    staff: StaffIdentity
    csrf: str


class SessionService:
    def __init__(self, key: Key, issuer: str) -> None:
        self.key = key
        self.issuer = issuer

    def issue(self, staff: StaffIdentity, *, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": self.issuer,
            "aud": f"{self.issuer}/web",
            "sub": staff.participant,
            "staff": staff.username,
            "name": staff.display,
            "csrf": secrets.token_urlsafe(24),
            "iat": issued,
            "exp": issued + SESSION_SECONDS,
        }
        header = {"alg": ACCESS_TOKEN_ALGORITHM, "typ": SESSION_TYPE}
        return jwt.encode(header, claims, self.key, algorithms=[ACCESS_TOKEN_ALGORITHM])

    def verify(self, cookie: str | None, *, now: float | None = None) -> Session | None:
        if not cookie or cookie.count(".") != 2 or len(cookie) > 4096:
            return None
        try:
            decoded = jwt.decode(cookie, self.key, algorithms=[ACCESS_TOKEN_ALGORITHM])
        except (JoseError, ValueError):
            return None
        claims = decoded.claims
        if decoded.header.get("typ") != SESSION_TYPE:
            return None
        if claims.get("iss") != self.issuer or claims.get("aud") != f"{self.issuer}/web":
            return None
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= (now if now is not None else time.time()):
            return None
        values = [claims.get(k) for k in ("sub", "staff", "name", "csrf")]
        if not all(isinstance(v, str) for v in values):
            return None
        sub, staff, name, csrf = (str(v) for v in values)
        return Session(StaffIdentity(sub, staff, name), csrf)


def same_secret(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def new_csrf() -> str:
    return secrets.token_urlsafe(24)
