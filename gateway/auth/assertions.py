"""SMART Backend Services client assertions (RFC 7523 JWTs): making and checking them.

``make_client_assertion`` is what a client (our CLI, the tests, the messaging CLI) signs;
``check_client_assertion`` is the pure half of the token endpoint's check: signature with a
key of the claimed client's registered JWKS, then the claims. ``AssertionLedger`` is the other
half: every ``jti`` is recorded in ``used_assertions``, so a replay fails in any process.

OAuth errors (RFC 6749 §5.2) form their own branch of the error tree::

    GatewayError
    └── OAuthError                 error, error_description; JSON, not an OperationOutcome
        ├── InvalidRequest         400 invalid_request
        ├── InvalidClient          401 invalid_client
        ├── UnsupportedGrantType   400 unsupported_grant_type
        ├── InvalidScope           400 invalid_scope
        └── TemporarilyUnavailable 503 temporarily_unavailable
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey, import_key
from sqlalchemy import delete, insert
from sqlalchemy.exc import DBAPIError, IntegrityError

from gateway.auth.keys import SIGNING_ALGORITHMS, algorithm_fits, signing_keys
from gateway.errors import GatewayError
from gateway.store.database import Database
from gateway.store.schema import used_assertions

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# The citizen portal's assertion vouches for its logged-in citizen: the CPR number in this claim
# (gateway/auth/citizens.py). Other clients' assertions must not carry it.
CPR_CLAIM = "cpr"
DEFAULT_ASSERTION_LIFETIME = 300
_MAX_CLIENT_ID = 64
_MAX_JTI = 255


class OAuthError(GatewayError):
    """An error answered as RFC 6749 §5.2 JSON by the token endpoint."""

    status = 400
    error: ClassVar[str] = "invalid_request"

    def to_json(self) -> dict[str, str]:
        return {"error": self.error, "error_description": str(self)}


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    status = 401
    code = "login"
    error = "invalid_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class TemporarilyUnavailable(OAuthError):
    status = 503
    code = "transient"
    error = "temporarily_unavailable"


@dataclass(frozen=True, slots=True)
class VerifiedAssertion:
    """A client assertion whose signature and claims passed; its jti is not yet recorded."""

    client_id: str
    jti: str
    expires_at: float
    kid: str
    alg: str
    # Every verified claim (the citizen portal's ``cpr`` among them).
    claims: dict[str, Any] = field(default_factory=dict)


def _default_alg(key: Key) -> str:
    alg = key.get("alg")
    if isinstance(alg, str) and alg in SIGNING_ALGORITHMS:
        return alg
    if isinstance(key, ECKey):
        return "ES384" if key.curve_name == "P-384" else "ES256"
    if isinstance(key, RSAKey):
        return "RS384"
    raise ValueError("client assertions are signed with EC or RSA keys")


def make_client_assertion(
    private_jwk: Key | dict[str, Any],
    client_id: str,
    token_url: str,
    lifetime: int = DEFAULT_ASSERTION_LIFETIME,
    *,
    jti: str | None = None,
    now: float | None = None,
    alg: str | None = None,
    cpr: str | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """A signed client assertion: iss = sub = ``client_id``, aud = ``token_url``.

    ``alg`` defaults to the key's (ES256 for P-256, ES384 for P-384, RS384 for RSA); the
    header carries ``kid`` (the key's, or its RFC 7638 thumbprint) and ``typ: JWT``.
    ``cpr``: the citizen portal vouches for its logged-in citizen (claim ``cpr``).
    ``extra_claims`` override the standard ones (tests use it to build bad assertions).
    """
    key = private_jwk if not isinstance(private_jwk, dict) else import_key(private_jwk)
    algorithm = alg or _default_alg(key)
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": issued,
        "exp": issued + lifetime,
        "jti": jti or str(uuid.uuid4()),
    }
    if cpr is not None:
        claims[CPR_CLAIM] = cpr
    claims.update(extra_claims or {})
    header = {"alg": algorithm, "typ": "JWT", "kid": key.kid or key.thumbprint()}
    return jwt.encode(header, claims, key, algorithms=[algorithm])


def _b64json(segment: str) -> dict[str, Any]:
    padded = segment + "=" * (-len(segment) % 4)
    value = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def unverified_parts(assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, *before* any check (to find the issuer's keys)."""
    segments = assertion.split(".")
    if len(segments) != 3:
        raise InvalidClient("client_assertion must be a compact JWS (header.payload.signature)")
    try:
        return _b64json(segments[0]), _b64json(segments[1])
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise InvalidClient("client_assertion is not a readable JWT") from exc


def claimed_client(assertion: str) -> str:
    """The ``iss`` of an assertion (unverified), checked to equal ``sub``."""
    _header, claims = unverified_parts(assertion)
    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not iss or len(iss) > _MAX_CLIENT_ID:
        raise InvalidClient("client assertion needs an 'iss' naming the client")
    if sub != iss:
        raise InvalidClient("client assertion 'iss' and 'sub' must both be the client_id")
    return iss


def _number(claims: dict[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidClient(f"client assertion '{name}' must be a NumericDate")
    return float(value)


def check_client_assertion(
    assertion: str,
    *,
    jwks: dict[str, Any],
    token_url: str,
    now: float,
    max_lifetime: int,
    clock_skew: int,
    client_id: str | None = None,
) -> VerifiedAssertion:
    """Verify an assertion against the claimed client's registered ``jwks``.

    Pure: the caller looked the client up (by :func:`claimed_client`) and records the jti.
    Raises InvalidClient with a description that names the failed rule, never the content.
    """
    header, _ = unverified_parts(assertion)
    issuer = claimed_client(assertion)
    if client_id is not None and client_id != issuer:
        raise InvalidClient("client_id does not match the client assertion's issuer")
    alg, kid = header.get("alg"), header.get("kid")
    if not isinstance(alg, str) or alg not in SIGNING_ALGORITHMS:
        raise InvalidClient(f"client assertion alg must be one of {', '.join(SIGNING_ALGORITHMS)}")
    if not isinstance(kid, str) or not kid:
        raise InvalidClient("client assertion header needs the 'kid' of a registered key")
    key = signing_keys(jwks).get(kid)
    if key is None:
        raise InvalidClient("client assertion 'kid' is not a registered key of this client")
    if not algorithm_fits(key, alg):
        raise InvalidClient("client assertion alg does not fit the registered key")
    try:
        claims = jwt.decode(assertion, key, algorithms=[alg]).claims
    except (JoseError, ValueError) as exc:
        raise InvalidClient("client assertion signature does not verify") from exc

    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if token_url not in audiences:
        raise InvalidClient("client assertion 'aud' must be this server's token endpoint")
    exp = _number(claims, "exp")
    if exp is None:
        raise InvalidClient("client assertion needs 'exp'")
    if exp + clock_skew <= now:
        raise InvalidClient("client assertion has expired")
    iat = _number(claims, "iat")
    if iat is not None and iat - clock_skew > now:
        raise InvalidClient("client assertion 'iat' is in the future")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf - clock_skew > now:
        raise InvalidClient("client assertion is not valid yet ('nbf')")
    # With iat both ends come from the client's clock; without it our clock meets theirs.
    lifetime = exp - iat if iat is not None else exp - now - clock_skew
    if lifetime > max_lifetime:
        raise InvalidClient(f"client assertion may live at most {max_lifetime} seconds")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > _MAX_JTI:
        raise InvalidClient("client assertion needs a 'jti' (a unique id, at most 255 chars)")
    return VerifiedAssertion(
        client_id=issuer, jti=jti, expires_at=exp, kid=kid, alg=alg, claims=dict(claims)
    )


def _naive_utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


class AssertionLedger:
    """The ``used_assertions`` table: a jti is accepted once per client, in any process.

    The insert itself is the check (a primary-key violation is a replay), so two processes
    racing with the same assertion cannot both win, on SQLite and on PostgreSQL alike.
    Rows are kept until the assertion could no longer pass the expiry check, then pruned.
    """

    def __init__(self, database: Database, *, prune_interval_seconds: float = 60.0) -> None:
        self.database = database
        self.prune_interval_seconds = prune_interval_seconds
        self._last_pruned = 0.0

    async def record(self, verified: VerifiedAssertion, *, clock_skew: int, now: float) -> None:
        """Record the assertion's jti; raise InvalidClient if it was used before."""
        prune = now - self._last_pruned >= self.prune_interval_seconds
        try:
            async with self.database.engine.begin() as conn:
                if prune:
                    await conn.execute(
                        delete(used_assertions).where(
                            used_assertions.c.expires_at < _naive_utc(now)
                        )
                    )
                await conn.execute(
                    insert(used_assertions).values(
                        client_id=verified.client_id,
                        jti=verified.jti,
                        expires_at=_naive_utc(verified.expires_at + clock_skew),
                    )
                )
        except IntegrityError as exc:
            raise InvalidClient("client assertion 'jti' has been used before") from exc
        except DBAPIError as exc:
            raise TemporarilyUnavailable("the token service cannot reach its database") from exc
        if prune:
            self._last_pruned = now
