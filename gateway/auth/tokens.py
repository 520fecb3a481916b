"""Access tokens: what the token endpoint grants and what every FHIR request presents.

An access token is a JWT (RFC 9068 ``typ: at+jwt``) signed ES256 with the gateway's key from
``keys_dir``: iss = base URL, aud = FHIR base, sub = participant, plus ``kind``, ``org``,
``scope``, ``purpose`` and (the citizen portal's) ``patient``. What may be granted to whom is
gateway/auth/policy.py. Verifying needs only that key, so any number of gateway processes
sharing the key file accept each other's tokens without touching the database. The claims are
signed, so a token cannot be re-labelled as another participant's.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import Key

from gateway.auth.assertions import InvalidRequest
from gateway.auth.keys import ACCESS_TOKEN_ALGORITHM, load_gateway_signing_key
from gateway.auth.principal import Principal, parse_scope
from gateway.errors import Unauthorized
from gateway.settings import Settings
from gateway.store.database import Database

ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a JWT typ, not a secret
INVALID_TOKEN_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="brobygger", error="invalid_token"'}

# --- purposes of use ------------------------------------------------------------------------

PURPOSE_OF_USE_SYSTEM = "http://brobygger.dk/fhir/CodeSystem/purpose-of-use"
ACT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
# code → system. The codes are unique across both systems, so the bare code names a purpose.
PURPOSES: dict[str, str] = {
    "sickness-benefit-follow-up": PURPOSE_OF_USE_SYSTEM,
    "rehabilitation-planning": PURPOSE_OF_USE_SYSTEM,
    "round-table-meeting": PURPOSE_OF_USE_SYSTEM,
    "medical-statement": PURPOSE_OF_USE_SYSTEM,
    "citizen-access": PURPOSE_OF_USE_SYSTEM,
    "TREAT": ACT_REASON_SYSTEM,
    "HOPERAT": ACT_REASON_SYSTEM,
}


def parse_purpose(value: str | None) -> str | None:
    """``code`` or ``system|code`` → the bare code; None when absent; InvalidRequest if unknown."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    system, sep, code = text.rpartition("|")
    if not sep:
        code, system = text, ""
    if code not in PURPOSES or (system and PURPOSES[code] != system):
        raise InvalidRequest(
            "unknown purpose of use; use a code of "
            f"{PURPOSE_OF_USE_SYSTEM} or v3-ActReason TREAT / HOPERAT"
        )
    return code


def purpose_coding(code: str) -> dict[str, str]:
    """The FHIR Coding for a purpose code (for AuditEvent.purposeOfEvent and Consent)."""
    return {"system": PURPOSES[code], "code": code}


# --- scopes ---------------------------------------------------------------------------------


def is_well_formed_scope(scope: str) -> bool:
    """``<system|patient>/<Type or *>.<read|write|*|cruds>`` (which kind may hold it: policy)."""
    return parse_scope(scope) is not None


# --- the service ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    expires_in: int
    scope: str
    purpose: str | None
    token_id: str
    # ``Patient/<id>`` of a citizen-bound token (the citizen portal's).
    patient: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.purpose is not None:
            body["purpose"] = self.purpose
        if self.patient is not None:
            # SMART's launch-context parameter: the bare id of the Patient the token is for.
            body["patient"] = self.patient.removeprefix("Patient/")
        return body


_VERIFIED_MAX = 10_000


def _invalid(text: str) -> Unauthorized:
    return Unauthorized(text, headers=INVALID_TOKEN_CHALLENGE)


class TokenService:
    """Issues and verifies the gateway's access tokens (stateless apart from the key)."""

    def __init__(
        self,
        key: Key,
        *,
        issuer: str,
        audience: str,
        lifetime_seconds: int,
        clock_skew_seconds: int = 60,
    ) -> None:
        self.key = key
        self.kid = key.kid or key.thumbprint()
        self.issuer = issuer
        self.audience = audience
        self.lifetime_seconds = lifetime_seconds
        self.clock_skew_seconds = clock_skew_seconds
        # Verified tokens: token -> (principal, exp, iat). A token is a pure function of its
        # bytes and the key: its signature and claims need checking once; its time window is
        # checked on every use. Bounded; the oldest go first.
        self._verified: dict[str, tuple[Principal, int, int | None]] = {}

    @classmethod
    def from_settings(cls, settings: Settings, database: Database | None = None) -> TokenService:
        """Load (or, outside production, create) ``keys_dir/gateway-signing.jwk.json``."""
        del database  # verification never needs it; kept for the app factory's call
        return cls(
            load_gateway_signing_key(settings),
            issuer=settings.base_url,
            audience=settings.fhir_base,
            lifetime_seconds=settings.access_token_lifetime_seconds,
            clock_skew_seconds=settings.clock_skew_seconds,
        )

    def issue(
        self,
        *,
        participant: str,
        kind: str,
        organization_id: str | None,
        scopes: list[str],
        purpose: str | None,
        patient: str | None = None,
        now: float | None = None,
    ) -> IssuedToken:
        issued = int(now if now is not None else time.time())
        token_id = str(uuid.uuid4())
        scope = " ".join(scopes)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": participant,
            "client_id": participant,
            "kind": kind,
            "scope": scope,
            "iat": issued,
            "exp": issued + self.lifetime_seconds,
            "jti": token_id,
        }
        if organization_id is not None:
            claims["org"] = organization_id
        if purpose is not None:
            claims["purpose"] = purpose
        if patient is not None:
            claims["patient"] = patient
        header = {"alg": ACCESS_TOKEN_ALGORITHM, "typ": ACCESS_TOKEN_TYPE, "kid": self.kid}
        token = jwt.encode(header, claims, self.key, algorithms=[ACCESS_TOKEN_ALGORITHM])
        return IssuedToken(token, self.lifetime_seconds, scope, purpose, token_id, patient)

    def verify_access_token(self, token: str, *, now: float | None = None) -> Principal:
        """Signature, type, issuer, audience and expiry → the Principal; else Unauthorized."""
        current = now if now is not None else time.time()
        known = self._verified.get(token)
        if known is not None:
            principal, exp, iat = known
            if exp <= current:
                del self._verified[token]
                raise _invalid("the access token has expired")
            if iat is not None and iat - self.clock_skew_seconds > current:
                raise _invalid("the access token is not valid yet")
            return principal
        principal, exp, iat = self._verify(token, current)
        if len(self._verified) >= _VERIFIED_MAX:
            for old in list(self._verified)[: _VERIFIED_MAX // 4]:
                del self._verified[old]
        self._verified[token] = (principal, exp, iat)
        return principal

    def _verify(self, token: str, current: float) -> tuple[Principal, int, int | None]:
        if token.count(".") != 2:
            raise _invalid("the access token is not a JWT")
        try:
            decoded = jwt.decode(token, self.key, algorithms=[ACCESS_TOKEN_ALGORITHM])
        except (JoseError, ValueError) as exc:
            raise _invalid("the access token does not verify") from exc
        header, claims = decoded.header, decoded.claims
        if header.get("typ") != ACCESS_TOKEN_TYPE or header.get("kid") != self.kid:
            raise _invalid("the access token was not issued by this gateway")
        if claims.get("iss") != self.issuer or claims.get("aud") != self.audience:
            raise _invalid("the access token was not issued for this server")
        exp = claims.get("exp")
        if not isinstance(exp, int) or isinstance(exp, bool) or exp <= current:
            raise _invalid("the access token has expired")
        iat = claims.get("iat")
        if isinstance(iat, int) and iat - self.clock_skew_seconds > current:
            raise _invalid("the access token is not valid yet")
        subject, kind, scope = claims.get("sub"), claims.get("kind"), claims.get("scope")
        if not isinstance(subject, str) or not isinstance(kind, str) or not isinstance(scope, str):
            raise _invalid("the access token lacks sub, kind or scope")
        purpose, org, jti = claims.get("purpose"), claims.get("org"), claims.get("jti")
        patient = claims.get("patient")
        principal = Principal(
            participant=subject,
            kind=kind,
            client_id=str(claims.get("client_id", subject)),
            scopes=frozenset(scope.split()),
            purpose=purpose if isinstance(purpose, str) else None,
            organization_id=org if isinstance(org, str) else None,
            token_id=jti if isinstance(jti, str) else None,
            patient=patient if isinstance(patient, str) else None,
        )
        return principal, exp, iat if isinstance(iat, int) else None
